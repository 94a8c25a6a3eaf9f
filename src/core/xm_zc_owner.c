/*
 * xm_zc_owner.c - zero-copy, the owner's half: grants of our registered
 * pages made on a peer's request, cached per (registration, channel,
 * chunk), withdrawn (INVAL) and ended on the peer's ACK or REL.
 */
#include "xm_zc_int.h"
#include "xm_log.h"
#include "xm_settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- owner ---- */

void owner_grant_end(struct zc_owner_grant *o)
{
    if (o->state == O_INVAL_SENT)
        inval_sent--;
    if (--o->g->users == 0) {
        int rc = xm_hv_grant_mem_end(o->hv, o->g->handle);

        if (rc)
            xm_warn("zero-copy: ending grant of chunk %u of registration %llu: %s",
                    o->chunk, (unsigned long long)o->id, strerror(-rc));
        free(o->g);
    }
    if (o->state == O_LIVE)
        o->zep->owner_live_pages -= o->npages;
    zst.owner_pages -= o->npages;
    LIST_UNLINK(ohead, otail, o);
    free(o);
}

void zc_revoke(struct zc_owner_grant *o)
{
    if (o->state != O_LIVE)
        return;
    o->state = O_INVAL_OWED;
    o->zep->owner_live_pages -= o->npages;
    revoke_owed = 1;
    __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
}

/* Withdraw the least recently used live grants until want pages are on their way out
 * (want: exhaustion), or until the live ones fit the cap.  On exhaustion
 * the grants of the registration being asked for stay: withdrawing them
 * for its own next chunk would make a message larger than the table
 * cycle through it, every chunk granted and withdrawn again each time;
 * keeping them, the chunks that fit keep hitting and the rest take the
 * ring.  keep_id 0: no exception.  The cap is z's own and takes only
 * z's grants; the grant table is the domain's, so exhaustion takes any. */
static void owner_shrink(struct zc_ep *z, uint64_t want, const struct zc_owner_grant *keep,
                         uint64_t keep_id)
{
    uint64_t cap = z->cfg.owner_cache_bytes / XM_PAGE_SIZE, freed = 0;

    for (struct zc_owner_grant *o = ohead; o; o = o->next) {
        if (o == keep || o->state != O_LIVE || (keep_id && o->id == keep_id))
            continue;
        if (freed >= want && z->owner_live_pages <= cap)
            break;
        if (freed >= want && o->zep != z)
            continue;
        freed += o->npages;
        zc_revoke(o);
    }
}

double zc_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

void send_revokes(xm_endpoint_t *ep)
{
    int left = 0;
    double deadline = zc_now() + xm_cfg_double(XM_CFG_ZC_INVAL_TIMEOUT);

    for (struct zc_owner_grant *o = ohead; o; o = o->next) {
        if (o->state != O_INVAL_OWED)
            continue;
        if (xm_chan_endpoint(o->ch) != ep) {
            left = 1;
            continue;
        }
        struct xm_zc_grant_ref m = { o->id, o->chunk, o->gen };
        zsend(o->ch, XM_REC_ZC_INVAL, &m, sizeof(m));
        o->state = O_INVAL_SENT;
        o->deadline = deadline;
        o->overdue = 0;
        if (!inval_sent++ || deadline < inval_next)
            inval_next = deadline;
        zst.revokes++;
    }
    revoke_owed = left;
}

static void owner_unpark(xm_channel_t *ch);

/* The grant is the owner's: one the peer has not acknowledged by its
 * deadline after INVAL ends anyway.  Its refs fail for the peer from then
 * on (a ref the peer still maps stays until it unmaps: docs/kernel.md,
 * XENMPI_IOC_END); a late ACK is a stale one.
 * Nothing else about the channel changes: an honest peer that did not
 * poll for a while asks again.  The ACK may already be in our ring, unread
 * because this progress was busy for long: a grant past its deadline is
 * only marked overdue, and ended by ep's next progress, which polls ep's
 * channels before it comes here.  Under zlock, with inval_sent > 0; only
 * ep's channels (another endpoint's have not been polled). */
void owner_expire(xm_endpoint_t *ep, double now)
{
    double next = 0;

    if (now < inval_next)
        return;
    for (struct zc_owner_grant *o = ohead, *nx; o; o = nx) {
        nx = o->next;
        if (o->state != O_INVAL_SENT)
            continue;
        int late = o->deadline <= now && xm_chan_endpoint(o->ch) == ep;
        if (!late || !o->overdue) {
            o->overdue |= late;
            double d = o->deadline > now ? o->deadline : now;
            if (!next || d < next)
                next = d;
            continue;
        }
        xm_peer_warn("zero-copy: domain %u did not acknowledge the withdrawal of chunk %u of "
                "registration %llu within %g s (XENMPI_ZC_INVAL_TIMEOUT): grant ended",
                xm_chan_peer_dom(o->ch), o->chunk, (unsigned long long)o->id,
                xm_cfg_double(XM_CFG_ZC_INVAL_TIMEOUT));
        zst.expired++;
        xm_channel_t *ch = o->ch;
        owner_grant_end(o);
        owner_unpark(ch);
    }
    inval_next = next;
}

/* Does o's grant cover any page of [addr, end)? */
static int owner_grant_overlaps(const struct zc_owner_grant *o, uint64_t addr, uint64_t end)
{
    return addr < o->addr + (uint64_t)o->npages * XM_PAGE_SIZE && o->addr < end;
}

/* Take ch's zc_parked requests off the list, oldest first: all of them,
 * or (all 0) those waiting for a withdrawal of their own (-EEXIST). */
struct zc_park *park_take(xm_channel_t *ch, int all)
{
    struct zc_park *mine = NULL, **pp = &zc_parked, *p;

    while ((p = *pp)) {
        if (p->ch == ch && (all || !p->nospc)) {
            *pp = p->next;
            p->next = mine;   /* reverses: zc_parked is newest first */
            mine = p;
            zst.parked--;
        } else {
            pp = &p->next;
        }
    }
    return mine;
}

/* Park p: as the newest request, or (oldest) behind every other. */
static void park_add(struct zc_park *p, int oldest)
{
    struct zc_park **pp = &zc_parked;

    if (oldest)
        while (*pp)
            pp = &(*pp)->next;
    p->next = *pp;
    *pp = p;
    zst.parked++;
}

/* The grant for q over [addr, +np pages) was refused because one of ours
 * to the same domain covers some of those addresses (one live grant per
 * page and peer domain).  When those are over this same channel, withdraw
 * them (a read-only grant the peer now wants writable; an old registration
 * of addresses mapped again) and park q: the last one's end (ACK) retries
 * it.  -EEXIST: the overlap is over another channel to that domain (refuse:
 * the copy path), or too many zc_parked on ch already. */
static int owner_park(xm_channel_t *ch, const struct zc_greq *q, uint64_t addr, uint32_t np)
{
    const uint64_t end = addr + (uint64_t)np * XM_PAGE_SIZE;
    struct zc_park *p;
    unsigned n = 0;
    int mine = 0, others = 0;

    for (struct zc_owner_grant *o = ohead; o; o = o->next) {
        if (owner_grant_overlaps(o, addr, end) && xm_chan_peer_dom(o->ch) == xm_chan_peer_dom(ch)) {
            mine += o->ch == ch;
            others += o->ch != ch;
        }
    }
    for (p = zc_parked; p; p = p->next)
        n += p->ch == ch;
    if (!mine || others || n >= ZC_MAX_PARKED)
        return -EEXIST;
    p = malloc(sizeof(*p));
    if (!p)
        return -EEXIST;
    for (struct zc_owner_grant *o = ohead; o; o = o->next)
        if (o->ch == ch && owner_grant_overlaps(o, addr, end))
            zc_revoke(o);
    p->ch = ch;
    p->q = *q;
    p->np = np;
    p->nospc = 0;
    park_add(p, 0);
    return 0;
}

static int owner_greq_q(xm_channel_t *ch, const struct zc_greq *q, int retry);

/* Grants over ep's channels ended (or a channel of ep went down): the
 * table has room again.  Ask again for the oldest request parked for a
 * full table over ep's channels, and the next, until one parks again (as
 * the oldest still): those behind it wait for the next end. */
void owner_retry_nospc(xm_endpoint_t *ep)
{
    for (;;) {
        struct zc_park **pp, **oldest = NULL, *p;

        for (pp = &zc_parked; *pp; pp = &(*pp)->next)   /* newest first */
            if ((*pp)->nospc && xm_chan_endpoint((*pp)->ch) == ep)
                oldest = pp;
        if (!oldest)
            return;
        p = *oldest;
        *oldest = p->next;
        zst.parked--;
        int again = owner_greq_q(p->ch, &p->q, 1);
        free(p);
        if (again)
            return;
    }
}

/* A grant over ch ended: ask again for what waited on it (in arrival order;
 * each may park again behind another withdrawal), then for what waited for
 * room in the table. */
static void owner_unpark(xm_channel_t *ch)
{
    struct zc_park *mine = park_take(ch, 0), *p;

    while ((p = mine)) {
        mine = p->next;
        owner_greq_q(ch, &p->q, 0);
        free(p);
    }
    owner_retry_nospc(xm_chan_endpoint(ch));
}

/* Pages of grants over ep's channels being withdrawn whose end frees
 * table entries (not those another channel's user still holds). */
static uint64_t owner_going(xm_endpoint_t *ep)
{
    uint64_t n = 0;

    for (struct zc_owner_grant *o = ohead; o; o = o->next)
        if ((o->state == O_INVAL_OWED || o->state == O_INVAL_SENT) && o->g->users == 1 &&
            xm_chan_endpoint(o->ch) == ep)
            n += o->npages;
    return n;
}

/* The grant table is full.  Withdraw least recently used grants of other
 * registrations (of any endpoint: the table is the domain's) until what
 * is being withdrawn over ep's own channels frees q's np pages beyond
 * what the requests parked before it need, and park q until those end:
 * their ACK (or XENMPI_ZC_INVAL_TIMEOUT) ends them in ep's progress, which
 * asks again.  A chunk copied through the ring instead costs the peer a
 * round trip per ring record and the owner's CPU for the copy.  -ENOSPC:
 * nothing of ep's will come free (the table is held by other processes of
 * the domain, or by q's own registration), or too many parked on ch: the
 * peer copies this chunk through the ring. */
static int owner_park_nospc(xm_channel_t *ch, const struct zc_greq *q, uint32_t np, int retry)
{
    xm_endpoint_t *ep = xm_chan_endpoint(ch);
    uint64_t promised = 0, going;
    unsigned n = 0;
    struct zc_park *p;

    for (p = zc_parked; p; p = p->next) {
        n += p->ch == ch;
        if (p->nospc && xm_chan_endpoint(p->ch) == ep)
            promised += p->np;
    }
    going = owner_going(ep);
    if (going < promised + np) {
        owner_shrink(zep_of(ch), promised + np - going, NULL, q->id);
        going = owner_going(ep);
    }
    if (going < promised + np || n >= ZC_MAX_PARKED)
        return -ENOSPC;
    p = malloc(sizeof(*p));
    if (!p)
        return -ENOSPC;
    p->ch = ch;
    p->q = *q;
    p->np = np;
    p->nospc = 1;
    park_add(p, retry);
    return 0;
}

void owner_greq(xm_channel_t *ch, const void *data, size_t len)
{
    struct zc_greq q;

    if (xm_zc_parse_greq(data, len, &q)) {
        zst.rejected++;
        xm_peer_warn("zero-copy: grant request of %zu bytes from domain %u ignored",
                len, xm_chan_peer_dom(ch));
        return;
    }
    owner_greq_q(ch, &q, 0);
}

/* Answer the grant request q (checked) over ch, or park it: 1 when parked
 * (retry: asked again for a request parked before, which keeps its place
 * among the parked if it parks again). */
static int owner_greq_q(xm_channel_t *ch, const struct zc_greq *qp, int retry)
{
    const struct zc_greq q = *qp;
    struct {
        struct zc_grep h;
        uint32_t refs[XM_ZC_CHUNK_PAGES];
    } rep;
    struct zc_region *r;
    struct zc_owner_grant *o = NULL;
    uint64_t gs, ge;
    uint32_t np;
    int rw, rc;

    memset(&rep.h, 0, sizeof(rep.h));
    rep.h.id = q.id;
    rep.h.chunk = q.chunk;
    rep.h.flags = q.flags;
    rw = !!(q.flags & ZC_F_WRITE);
    r = zc_reg_live(q.id);
    if (q.flags & ~ZC_F_WRITE) {
        rc = -EINVAL;
    } else if (!r) {
        rc = -ENOENT;   /* never registered, deregistered or invalidated */
    } else if (!zc_reg_serves(r, xm_chan_peer_dom(ch))) {
        rc = -EACCES;   /* bound to other domains (xm_zc_bind) */
    } else if (!(r->access & (rw ? XM_ZC_REMOTE_WRITE : XM_ZC_REMOTE_READ))) {
        rc = -EACCES;
    } else {
        zc_span(r->base, r->len, &gs, &ge);
        np = zc_chunk_pages(gs, ge, q.chunk);
        rc = !np ? -EINVAL
             : zc_reg_hole_meets(r, gs + (uint64_t)q.chunk * XM_ZC_CHUNK_BYTES,
                                 (uint64_t)np * XM_PAGE_SIZE)
                 ? -ENOENT   /* pages of it went away (xm_zc_invalidate) */
                 : 0;
    }
    if (rc)
        goto reply;
    /* the peer asks again only after it dropped its copy (REL came first,
     * in order): an entry still here is one we are withdrawing */
    o = calloc(1, sizeof(*o));
    if (!o) {
        rc = -ENOMEM;
        goto reply;
    }
    o->ch = ch;
    o->zep = zep_of(ch);
    o->hv = xm_endpoint_hv(xm_chan_endpoint(ch));
    o->id = q.id;
    o->chunk = q.chunk;
    o->rw = rw;
    o->npages = np;
    o->addr = gs + (uint64_t)q.chunk * XM_ZC_CHUNK_BYTES;
    /* another process of the peer's domain holds this chunk already */
    for (struct zc_owner_grant *x = ohead; x; x = x->next) {
        if (x->state == O_LIVE && x->id == q.id && x->chunk == q.chunk && x->ch != ch &&
            x->hv == o->hv && (x->rw || !rw) && x->npages == np &&
            xm_chan_peer_dom(x->ch) == xm_chan_peer_dom(ch)) {
            o->g = x->g;
            o->g->users++;
            memcpy(o->refs, x->refs, np * sizeof(uint32_t));
            zst.shared++;
            goto granted;
        }
    }
    o->g = malloc(sizeof(*o->g));
    rc = o->g ? xm_hv_grant_mem(o->hv, xm_chan_peer_dom(ch), (void *)(uintptr_t)o->addr,
                                np, rw, &o->g->handle, o->refs)
              : -ENOMEM;
    if (rc) {
        uint64_t addr = o->addr;

        free(o->g);
        free(o);
        o = NULL;
        if (rc == -ENOSPC)
            zst.nospc++;
        if ((rc == -EEXIST && owner_park(ch, &q, addr, np) == 0) ||
            (rc == -ENOSPC && owner_park_nospc(ch, &q, np, retry) == 0)) {
            if (revoke_owed)
                send_revokes(xm_chan_endpoint(ch));
            return 1;
        }
        goto reply;
    }
    o->g->users = 1;
    zst.grants++;
    zst.granted_pages += np;
granted:
    o->gen = zc_next_gen++;
    o->state = O_LIVE;
    LIST_APPEND(ohead, otail, o);
    o->zep->owner_live_pages += np;
    zst.owner_pages += np;
    owner_shrink(o->zep, 0, o, 0);
    rep.h.gen = o->gen;
    rep.h.npages = np;
    memcpy(rep.refs, o->refs, np * sizeof(uint32_t));
reply:
    rep.h.status = rc;
    zsend(ch, XM_REC_ZC_GREP, &rep, sizeof(rep.h) + rep.h.npages * sizeof(uint32_t));
    if (revoke_owed)
        send_revokes(xm_chan_endpoint(ch));
    return 0;
}

/* ACK (after our INVAL) or REL (the peer evicted it): end the grant. */
void owner_end(xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct xm_zc_grant_ref m;
    struct zc_owner_grant *o;

    if (xm_zc_parse_grant_ref(data, len, &m)) {
        zst.rejected++;
        return;
    }
    for (o = ohead; o; o = o->next)
        if (o->ch == ch && o->gen == m.gen && o->id == m.id && o->chunk == m.chunk)
            break;
    /* an ACK for a grant we did not withdraw is a confused or hostile peer */
    if (!o || (type == XM_REC_ZC_ACK && o->state == O_LIVE)) {
        zst.rejected++;
        xm_debug("zero-copy: stale %s for grant %u from domain %u ignored",
                 type == XM_REC_ZC_ACK ? "ACK" : "REL", m.gen, xm_chan_peer_dom(ch));
        return;
    }
    owner_grant_end(o);
    owner_unpark(ch);
}

