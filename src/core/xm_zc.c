/*
 * xm_zc.c - zero-copy registrations, on-demand grants, the software I/O
 * TLB.  The protocol and its invariants are described in xm_zc.h; the
 * message layouts in docs/wire.md.
 */
#include "xm_zc.h"
#include "xm_log.h"
#include "xm_wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZC_DEFAULT_CACHE (64ull << 20)
#define ZC_REG_BUCKETS 256u
#define ZC_MAX_SEGS (XM_ZC_CHUNK_PAGES + 1)

/* the messages (xm_wire.h) */
#define zc_greq xm_zc_greq
#define zc_grep xm_zc_grep
#define ZC_F_WRITE XM_ZC_F_WRITE
_Static_assert(XM_ZC_MAX_REFS == XM_ZC_CHUNK_PAGES, "a GREP carries one chunk");

/* ---- state ---- */

struct zc_region {
    struct zc_region *next;
    uint64_t id;
    uint64_t base, len;
    unsigned access;
};

enum { O_LIVE, O_REVOKE_PENDING, O_REVOKING };

/* Owner: one grant of one chunk to one channel's peer. */
struct zc_oent {
    struct zc_oent *prev, *next;  /* least recently used first */
    xm_channel_t *ch;
    xm_hv_t *hv;
    uint64_t id;
    uint32_t chunk;
    uint32_t gen;
    int rw;
    int state;
    struct zc_grant *g;           /* the grant, maybe shared with other channels */
    uint64_t addr;                /* first granted page */
    uint32_t npages;
    uint32_t refs[XM_ZC_CHUNK_PAGES];
};

/* Owner: one xm_hv_grant_mem grant.  Grants are to a domain, so peers in
 * one domain (several ranks in a VM) asking for the same chunk over their
 * own channels share one: each channel has its own zc_oent (its own gen,
 * withdrawal and ACK), and the grant ends with the last of them. */
struct zc_grant {
    uint64_t handle;
    unsigned users;
};

/* Owner: a grant request that met one of our grants to the same peer still
 * covering those addresses (-EEXIST) while it is being withdrawn: the
 * memory was unmapped and mapped again, deregistered and registered anew.
 * Answered when the withdrawn grant ends (the peer's ACK). */
struct zc_park {
    struct zc_park *next;
    xm_channel_t *ch;
    struct zc_greq q;
};
#define ZC_MAX_PARKED 64u   /* per channel; beyond, the request is refused */

struct zc_waiter {
    struct zc_waiter *next;
    void *local;
    uint64_t raddr;
    size_t n;
    int dir;
    xm_zc_cb_t cb;
    void *arg;
};

enum { P_PENDING, P_LIVE };

/* Peer: refs of one chunk of one owner registration, seen over ch. */
struct zc_pent {
    struct zc_pent *prev, *next;  /* least recently used first */
    xm_channel_t *ch;
    uint64_t id;
    uint32_t chunk;
    uint32_t gen;
    int rw;
    int state;
    uint64_t cstart;              /* owner address of the chunk's first page */
    uint32_t npages;              /* expected, then granted */
    struct zc_waiter *wait, **wait_tail;
    uint32_t refs[XM_ZC_CHUNK_PAGES];
};

/* Channels whose owner answered -ENODEV (no xenmpi_grant module): not
 * asked again while the channel lives; copies there go the copy path at
 * once instead of after a round trip each. */
struct zc_nogrant {
    struct zc_nogrant *next;
    xm_channel_t *ch;
};

struct zc_msg {
    struct zc_msg *next;
    xm_channel_t *ch;
    uint16_t type;
    size_t len;
    uint8_t data[];
};

struct zc_list { void *head, *tail; };

static pthread_mutex_t zlock = PTHREAD_MUTEX_INITIALIZER;
static xm_zc_config_t zcfg = { ZC_DEFAULT_CACHE, ZC_DEFAULT_CACHE, 0 };
static xm_zc_stats_t zst;
static uint64_t zc_fallback_bytes;
static uint64_t next_id = 1;
static uint32_t next_gen = 1;
static struct zc_region *regions[ZC_REG_BUCKETS];
static struct zc_oent *ohead, *otail;
static struct zc_pent *phead, *ptail;
static struct zc_msg *outbox, **outbox_tail = &outbox;
static struct zc_nogrant *nogrant;
static struct zc_park *parked;
static uint64_t owner_live_pages;
static int revoke_owed; /* some oent is O_REVOKE_PENDING */
int xm_zc_work;         /* outbox or revoke_owed: progress has work (racy hint) */

/* generic doubly-linked list helpers for oent/pent (same prev/next layout) */
#define LIST_UNLINK(head, tail, e) do {                  \
        if ((e)->prev) (e)->prev->next = (e)->next;      \
        else (head) = (e)->next;                         \
        if ((e)->next) (e)->next->prev = (e)->prev;      \
        else (tail) = (e)->prev;                         \
        (e)->prev = (e)->next = NULL;                    \
    } while (0)
#define LIST_APPEND(head, tail, e) do {                  \
        (e)->prev = (tail);                              \
        (e)->next = NULL;                                \
        if (tail) (tail)->next = (e);                    \
        else (head) = (e);                               \
        (tail) = (e);                                    \
    } while (0)

void xm_zc_configure(const xm_zc_config_t *cfg)
{
    pthread_mutex_lock(&zlock);
    zcfg.owner_cache_bytes = cfg->owner_cache_bytes ? cfg->owner_cache_bytes : ZC_DEFAULT_CACHE;
    zcfg.peer_cache_bytes = cfg->peer_cache_bytes ? cfg->peer_cache_bytes : ZC_DEFAULT_CACHE;
    zcfg.disable = cfg->disable;
    pthread_mutex_unlock(&zlock);
}

void xm_zc_get_stats(xm_zc_stats_t *st)
{
    pthread_mutex_lock(&zlock);
    *st = zst;
    pthread_mutex_unlock(&zlock);
}

void xm_zc_count_fallback(uint64_t bytes)
{
    __atomic_fetch_add(&zc_fallback_bytes, bytes, __ATOMIC_RELAXED);
}

__attribute__((destructor)) static void zc_print_stats(void)
{
    const char *s = getenv("XENMPI_ZC_STATS");

    if (!s || !*s || !strcmp(s, "0"))
        return;
    fprintf(stderr, "xenmpi-zc: pid=%d hits=%llu misses=%llu grants=%llu "
            "granted_pages=%llu shared=%llu revokes=%llu releases=%llu nospc=%llu "
            "fallback_bytes=%llu zc_bytes=%llu\n", (int)getpid(),
            (unsigned long long)zst.hits, (unsigned long long)zst.misses,
            (unsigned long long)zst.grants, (unsigned long long)zst.granted_pages,
            (unsigned long long)zst.shared,
            (unsigned long long)zst.revokes, (unsigned long long)zst.releases,
            (unsigned long long)zst.nospc,
            (unsigned long long)__atomic_load_n(&zc_fallback_bytes, __ATOMIC_RELAXED),
            (unsigned long long)zst.zc_bytes);
}

/* ---- geometry ---- */

/* The whole pages of [base, base+len): [*gs, *ge), empty when *ge <= *gs. */
static void zc_span(uint64_t base, uint64_t len, uint64_t *gs, uint64_t *ge)
{
    if (len > UINT64_MAX - base || base > UINT64_MAX - (XM_PAGE_SIZE - 1)) {
        *gs = *ge = 0;
        return;
    }
    *gs = (base + XM_PAGE_SIZE - 1) & ~(uint64_t)(XM_PAGE_SIZE - 1);
    *ge = (base + len) & ~(uint64_t)(XM_PAGE_SIZE - 1);
    if (*ge < *gs)
        *ge = *gs;
}

/* Pages in chunk c of the span, 0 when c is past it. */
static uint32_t zc_chunk_pages(uint64_t gs, uint64_t ge, uint64_t c)
{
    uint64_t total = (ge - gs) / XM_PAGE_SIZE, first;

    if (c >= (total + XM_ZC_CHUNK_PAGES - 1) / XM_ZC_CHUNK_PAGES)
        return 0;
    first = c * XM_ZC_CHUNK_PAGES;
    return (uint32_t)(total - first < XM_ZC_CHUNK_PAGES ? total - first : XM_ZC_CHUNK_PAGES);
}

size_t xm_zc_piece(uint64_t base, uint64_t len, uint64_t raddr, size_t n, int *zc)
{
    uint64_t gs, ge, lim;

    zc_span(base, len, &gs, &ge);
    *zc = 0;
    if (n > UINT64_MAX - raddr || ge <= gs || raddr >= ge || raddr + n <= gs)
        return n;
    if (raddr < gs)
        return (size_t)(gs - raddr);
    /* room left in the chunk, and before the end of the whole pages: as
     * lengths, so nothing wraps near the top of the address space */
    lim = XM_ZC_CHUNK_BYTES - (raddr - gs) % XM_ZC_CHUNK_BYTES;
    if (lim > ge - raddr)
        lim = ge - raddr;
    *zc = 1;
    return (size_t)(lim < n ? lim : n);
}

/* ---- registry ---- */

static void zc_revoke(struct zc_oent *o);

static struct zc_region **reg_slot(uint64_t id)
{
    struct zc_region **pp = &regions[id % ZC_REG_BUCKETS];

    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    return pp;
}

int xm_zc_reg(const void *addr, size_t len, unsigned access, uint64_t *id)
{
    struct zc_region *r;

    if ((uintptr_t)addr > UINT64_MAX - len || (access & ~3u))
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->base = (uintptr_t)addr;
    r->len = len;
    r->access = access;
    pthread_mutex_lock(&zlock);
    r->id = next_id++;
    r->next = regions[r->id % ZC_REG_BUCKETS];
    regions[r->id % ZC_REG_BUCKETS] = r;
    pthread_mutex_unlock(&zlock);
    *id = r->id;
    return 0;
}

int xm_zc_dereg(uint64_t id)
{
    struct zc_region **pp, *r;

    pthread_mutex_lock(&zlock);
    pp = reg_slot(id);
    r = *pp;
    if (!r) {
        pthread_mutex_unlock(&zlock);
        return -ENOENT;
    }
    *pp = r->next;
    /* withdraw what peers hold; the grants end when they acknowledge */
    for (struct zc_oent *o = ohead; o; o = o->next)
        if (o->id == id)
            zc_revoke(o);
    pthread_mutex_unlock(&zlock);
    free(r);
    return 0;
}

void xm_zc_touch(uint64_t id)
{
    struct zc_oent *o, *next, *mhead = NULL, *mtail = NULL;

    pthread_mutex_lock(&zlock);
    /* the registration's live grants, in their order, move behind the
     * others: owner_shrink withdraws from the front */
    for (o = ohead; o; o = next) {
        next = o->next;
        if (o->id != id || o->state != O_LIVE)
            continue;
        LIST_UNLINK(ohead, otail, o);
        LIST_APPEND(mhead, mtail, o);
    }
    if (mhead) {
        mhead->prev = otail;
        if (otail)
            otail->next = mhead;
        else
            ohead = mhead;
        otail = mtail;
    }
    pthread_mutex_unlock(&zlock);
}

int xm_zc_reg_copy(uint64_t id, uint64_t addr, uint64_t len, unsigned access, void *buf)
{
    struct zc_region *r;
    int rc = 0;

    pthread_mutex_lock(&zlock);
    r = *reg_slot(id);
    if (!r)
        rc = -ENOENT;
    /* every subtraction is of a smaller value from a larger one */
    else if (addr < r->base || len > r->len || addr - r->base > r->len - len)
        rc = -EFAULT;
    else if (!(r->access & access) || (access != XM_ZC_REMOTE_READ && access != XM_ZC_REMOTE_WRITE))
        rc = -EACCES;
    else if (access == XM_ZC_REMOTE_WRITE)
        memcpy((void *)(uintptr_t)addr, buf, len);
    else
        memcpy(buf, (const void *)(uintptr_t)addr, len);
    /* under the lock: a concurrent dereg waits until the copy is done */
    pthread_mutex_unlock(&zlock);
    return rc;
}

/* ---- sending: queued under zlock, sent after it is dropped ----
 *
 * Locking rule: zlock is never held across a call into the channel.  A
 * message made under the lock goes to the outbox (one list, in order);
 * the endpoint that owns the message's channel sends it from its own
 * thread (outbox_flush), after the lock is dropped, right after the call
 * that made it or from its progress.  Per channel the order is kept
 * however many channels are blocked on a full ring. */

static void zsend(xm_channel_t *ch, uint16_t type, const void *p, size_t len)
{
    struct zc_msg *m;

    m = malloc(sizeof(*m) + len);
    if (!m) {
        /* cannot keep the promise to answer: the peer's request stays
         * pending until the channel closes; say so */
        xm_error("zero-copy: no memory to queue a message of type 0x%x to domain %u",
                 type, xm_chan_peer_dom(ch));
        return;
    }
    m->next = NULL;
    m->ch = ch;
    m->type = type;
    m->len = len;
    memcpy(m->data, p, len);
    *outbox_tail = m;
    outbox_tail = &m->next;
    __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
}

static int chan_in(xm_channel_t *const *v, unsigned n, const xm_channel_t *ch)
{
    for (unsigned i = 0; i < n; i++)
        if (v[i] == ch)
            return 1;
    return 0;
}

/* Send ep's queued messages; called without zlock, from ep's thread (the
 * only one that sends on ep's channels, and the only one that flushes
 * them: so taking them out and putting the unsent back keeps the order). */
static int outbox_flush(xm_endpoint_t *ep)
{
    struct zc_msg *mine = NULL, **mt = &mine, **pp, *m, *unsent = NULL, **ut = &unsent;
    xm_channel_t **blocked = NULL;
    unsigned nblocked = 0, cap = 0;
    int sent = 0;

    pthread_mutex_lock(&zlock);
    for (pp = &outbox; (m = *pp);) {
        if (xm_chan_endpoint(m->ch) == ep) {
            *pp = m->next;
            m->next = NULL;
            *mt = m;
            mt = &m->next;
        } else {
            pp = &m->next;
        }
    }
    outbox_tail = pp;
    pthread_mutex_unlock(&zlock);
    if (!mine)
        return 0;

    while ((m = mine)) {
        int rc = -EAGAIN;

        mine = m->next;
        m->next = NULL;
        /* behind a message that did not fit, the rest of that channel waits */
        if (!chan_in(blocked, nblocked, m->ch))
            rc = xm_chan_send(m->ch, m->type, m->data, m->len, NULL, 0);
        if (rc != -EAGAIN) {
            sent += rc == 0;
            free(m);   /* sent, or the channel is down (chan_gone cleans up) */
            continue;
        }
        if (!chan_in(blocked, nblocked, m->ch)) {
            if (nblocked == cap) {
                xm_channel_t **b = realloc(blocked, (cap ? cap * 2 : 8) * sizeof(*b));
                if (!b) {
                    /* cannot remember the block: keep everything else
                     * queued too, so nothing overtakes it */
                    *ut = m;
                    ut = &m->next;
                    *ut = mine;
                    mine = NULL;
                    break;
                }
                blocked = b;
                cap = cap ? cap * 2 : 8;
            }
            blocked[nblocked++] = m->ch;
        }
        *ut = m;
        ut = &m->next;
    }
    free(blocked);
    if (unsent) {
        /* older than anything queued meanwhile: back to the front */
        pthread_mutex_lock(&zlock);
        while (*ut)
            ut = &(*ut)->next;
        *ut = outbox;
        if (!outbox)
            outbox_tail = ut;
        outbox = unsent;
        __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&zlock);
    }
    return sent;
}

/* ---- owner ---- */

static void oent_end(struct zc_oent *o)
{
    if (--o->g->users == 0) {
        int rc = xm_hv_grant_mem_end(o->hv, o->g->handle);

        if (rc)
            xm_warn("zero-copy: ending grant of chunk %u of registration %llu: %s",
                    o->chunk, (unsigned long long)o->id, strerror(-rc));
        free(o->g);
    }
    if (o->state == O_LIVE)
        owner_live_pages -= o->npages;
    zst.owner_pages -= o->npages;
    LIST_UNLINK(ohead, otail, o);
    free(o);
}

static void zc_revoke(struct zc_oent *o)
{
    if (o->state != O_LIVE)
        return;
    o->state = O_REVOKE_PENDING;
    owner_live_pages -= o->npages;
    revoke_owed = 1;
    __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
}

/* Withdraw the least recently used live grants until want pages are on their way out
 * (want: exhaustion), or until the live ones fit the cap.  On exhaustion
 * the grants of the registration being asked for stay: withdrawing them
 * for its own next chunk would make a message larger than the table
 * cycle through it, every chunk granted and withdrawn again each time;
 * keeping them, the chunks that fit keep hitting and the rest take the
 * ring.  keep_id 0: no exception. */
static void owner_shrink(uint64_t want, const struct zc_oent *keep, uint64_t keep_id)
{
    uint64_t cap = zcfg.owner_cache_bytes / XM_PAGE_SIZE, freed = 0;

    for (struct zc_oent *o = ohead; o; o = o->next) {
        if (o == keep || o->state != O_LIVE || (keep_id && o->id == keep_id))
            continue;
        if (freed >= want && owner_live_pages <= cap)
            break;
        freed += o->npages;
        zc_revoke(o);
    }
}

static void send_revokes(xm_endpoint_t *ep)
{
    int left = 0;

    for (struct zc_oent *o = ohead; o; o = o->next) {
        if (o->state != O_REVOKE_PENDING)
            continue;
        if (xm_chan_endpoint(o->ch) != ep) {
            left = 1;
            continue;
        }
        struct xm_zc_grant_ref m = { o->id, o->chunk, o->gen };
        zsend(o->ch, XM_REC_ZC_INVAL, &m, sizeof(m));
        o->state = O_REVOKING;
        zst.revokes++;
    }
    revoke_owed = left;
}

/* Does o's grant cover any page of [addr, end)? */
static int oent_overlaps(const struct zc_oent *o, uint64_t addr, uint64_t end)
{
    return addr < o->addr + (uint64_t)o->npages * XM_PAGE_SIZE && o->addr < end;
}

/* Take ch's parked requests off the list, oldest first. */
static struct zc_park *park_take(xm_channel_t *ch)
{
    struct zc_park *mine = NULL, **pp = &parked, *p;

    while ((p = *pp)) {
        if (p->ch == ch) {
            *pp = p->next;
            p->next = mine;   /* reverses: parked is newest first */
            mine = p;
            zst.parked--;
        } else {
            pp = &p->next;
        }
    }
    return mine;
}

/* The grant for q over [addr, +np pages) was refused because one of ours
 * to the same domain covers some of those addresses (one live grant per
 * page and peer domain).  When those are over this same channel, withdraw
 * them (a read-only grant the peer now wants writable; an old registration
 * of addresses mapped again) and park q: the last one's end (ACK) retries
 * it.  -EEXIST: the overlap is over another channel to that domain (refuse:
 * the copy path), or too many parked on ch already. */
static int owner_park(xm_channel_t *ch, const struct zc_greq *q, uint64_t addr, uint32_t np)
{
    const uint64_t end = addr + (uint64_t)np * XM_PAGE_SIZE;
    struct zc_park *p;
    unsigned n = 0;
    int mine = 0, others = 0;

    for (struct zc_oent *o = ohead; o; o = o->next) {
        if (oent_overlaps(o, addr, end) && xm_chan_peer_dom(o->ch) == xm_chan_peer_dom(ch)) {
            mine += o->ch == ch;
            others += o->ch != ch;
        }
    }
    for (p = parked; p; p = p->next)
        n += p->ch == ch;
    if (!mine || others || n >= ZC_MAX_PARKED)
        return -EEXIST;
    p = malloc(sizeof(*p));
    if (!p)
        return -EEXIST;
    for (struct zc_oent *o = ohead; o; o = o->next)
        if (o->ch == ch && oent_overlaps(o, addr, end))
            zc_revoke(o);
    p->ch = ch;
    p->q = *q;
    p->next = parked;
    parked = p;
    zst.parked++;
    return 0;
}

static void owner_greq(xm_channel_t *ch, const void *data, size_t len);

/* A grant over ch ended: ask again for what waited on it (in arrival order;
 * each may park again behind another withdrawal). */
static void owner_unpark(xm_channel_t *ch)
{
    struct zc_park *mine = park_take(ch), *p;

    while ((p = mine)) {
        mine = p->next;
        owner_greq(ch, &p->q, sizeof(p->q));
        free(p);
    }
}

static void owner_greq(xm_channel_t *ch, const void *data, size_t len)
{
    struct zc_greq q;
    struct {
        struct zc_grep h;
        uint32_t refs[XM_ZC_CHUNK_PAGES];
    } rep;
    struct zc_region *r;
    struct zc_oent *o = NULL;
    uint64_t gs, ge;
    uint32_t np;
    int rw, rc;

    if (xm_zc_parse_greq(data, len, &q)) {
        zst.rejected++;
        xm_warn("zero-copy: grant request of %zu bytes from domain %u ignored",
                len, xm_chan_peer_dom(ch));
        return;
    }
    memset(&rep.h, 0, sizeof(rep.h));
    rep.h.id = q.id;
    rep.h.chunk = q.chunk;
    rep.h.flags = q.flags;
    rw = !!(q.flags & ZC_F_WRITE);
    r = *reg_slot(q.id);
    if (q.flags & ~ZC_F_WRITE) {
        rc = -EINVAL;
    } else if (!r) {
        rc = -ENOENT;   /* never registered, or deregistered */
    } else if (!(r->access & (rw ? XM_ZC_REMOTE_WRITE : XM_ZC_REMOTE_READ))) {
        rc = -EACCES;
    } else {
        zc_span(r->base, r->len, &gs, &ge);
        np = zc_chunk_pages(gs, ge, q.chunk);
        rc = np ? 0 : -EINVAL;
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
    o->hv = xm_endpoint_hv(xm_chan_endpoint(ch));
    o->id = q.id;
    o->chunk = q.chunk;
    o->rw = rw;
    o->npages = np;
    o->addr = gs + (uint64_t)q.chunk * XM_ZC_CHUNK_BYTES;
    /* another process of the peer's domain holds this chunk already */
    for (struct zc_oent *x = ohead; x; x = x->next) {
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
        if (rc == -EEXIST && owner_park(ch, &q, addr, np) == 0) {
            if (revoke_owed)
                send_revokes(xm_chan_endpoint(ch));
            return;
        }
        if (rc == -ENOSPC) {
            zst.nospc++;
            owner_shrink(np, NULL, q.id);   /* room for the next request */
        }
        goto reply;
    }
    o->g->users = 1;
    zst.grants++;
    zst.granted_pages += np;
granted:
    o->gen = next_gen++;
    o->state = O_LIVE;
    LIST_APPEND(ohead, otail, o);
    owner_live_pages += np;
    zst.owner_pages += np;
    owner_shrink(0, o, 0);
    rep.h.gen = o->gen;
    rep.h.npages = np;
    memcpy(rep.refs, o->refs, np * sizeof(uint32_t));
reply:
    rep.h.status = rc;
    zsend(ch, XM_REC_ZC_GREP, &rep, sizeof(rep.h) + rep.h.npages * sizeof(uint32_t));
    if (revoke_owed)
        send_revokes(xm_chan_endpoint(ch));
}

/* ACK (after our INVAL) or REL (the peer evicted it): end the grant. */
static void owner_end(xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct xm_zc_grant_ref m;
    struct zc_oent *o;

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
    oent_end(o);
    owner_unpark(ch);
}

/* ---- peer ---- */

struct zc_done {
    xm_zc_cb_t cb;
    void *arg;
    int status;
};

struct zc_donelist {
    struct zc_done *d;
    unsigned n, cap;
};

static void done_add(struct zc_donelist *dl, xm_zc_cb_t cb, void *arg, int status)
{
    if (dl->n == dl->cap) {
        unsigned cap = dl->cap ? dl->cap * 2 : 16;
        struct zc_done *d = realloc(dl->d, cap * sizeof(*d));
        if (!d) {
            xm_error("zero-copy: no memory for completions: an operation stays pending");
            return;
        }
        dl->d = d;
        dl->cap = cap;
    }
    dl->d[dl->n++] = (struct zc_done){ cb, arg, status };
}

/* Completion callbacks run after the lock is dropped: they may start new
 * copies. */
static void done_run(struct zc_donelist *dl)
{
    for (unsigned i = 0; i < dl->n; i++)
        dl->d[i].cb(dl->d[i].arg, dl->d[i].status);
    free(dl->d);
}

static int pent_copy(xm_channel_t *ch, const struct zc_pent *e, uint64_t raddr,
                     void *local, size_t n, int dir)
{
    xm_copy_seg_t segs[ZC_MAX_SEGS];
    uint64_t off = raddr - e->cstart;
    uint32_t dom = xm_chan_peer_dom(ch);
    unsigned k = 0;
    size_t done = 0;
    int rc;

    while (done < n) {
        uint64_t page = (off + done) / XM_PAGE_SIZE;
        uint32_t poff = (uint32_t)((off + done) % XM_PAGE_SIZE);
        size_t l = XM_PAGE_SIZE - poff;

        if (page >= e->npages || k == ZC_MAX_SEGS)
            return -EFAULT;   /* the caller's piece lies outside the chunk */
        if (l > n - done)
            l = n - done;
        segs[k].local = (uint8_t *)local + done;
        segs[k].domid = dom;
        segs[k].ref = e->refs[page];
        segs[k].offset = (uint16_t)poff;
        segs[k].len = (uint16_t)l;
        segs[k].dir = dir == XM_ZC_PUT ? XM_COPY_TO_FOREIGN : XM_COPY_FROM_FOREIGN;
        segs[k].status = 0;
        k++;
        done += l;
    }
    rc = xm_hv_copy(xm_endpoint_hv(xm_chan_endpoint(ch)), segs, k);
    if (!rc)
        zst.zc_bytes += n;
    return rc;
}

static void pent_free(struct zc_pent *e)
{
    if (e->state == P_LIVE)
        zst.peer_pages -= e->npages;
    LIST_UNLINK(phead, ptail, e);
    free(e);
}

/* Evict least recently used entries beyond the cap, telling the owners. */
static void peer_shrink(const struct zc_pent *keep)
{
    uint64_t cap = zcfg.peer_cache_bytes / XM_PAGE_SIZE;
    struct zc_pent *e = phead, *nx;

    for (; e && zst.peer_pages > cap; e = nx) {
        nx = e->next;
        if (e == keep || e->state != P_LIVE)
            continue;
        struct xm_zc_grant_ref m = { e->id, e->chunk, e->gen };
        zsend(e->ch, XM_REC_ZC_REL, &m, sizeof(m));
        zst.releases++;
        pent_free(e);
    }
}

int xm_zc_copy(xm_channel_t *ch, uint64_t id, uint64_t base, uint64_t len,
               uint64_t raddr, void *local, size_t n, int dir,
               xm_zc_cb_t cb, void *arg)
{
    struct zc_pent *e;
    struct zc_waiter *w;
    uint64_t gs, ge, chunk;
    int zc, rw = dir == XM_ZC_PUT, rc;

    /* a domain cannot grant to itself: two processes of one VM use the
     * ring (or, above us, the VM's own shared memory) */
    if (zcfg.disable || xm_chan_peer_dom(ch) == xm_hv_domid(xm_endpoint_hv(xm_chan_endpoint(ch))))
        return -ENOTSUP;
    if (n == 0 || dir > XM_ZC_PUT || xm_zc_piece(base, len, raddr, n, &zc) != n || !zc)
        return -EINVAL;
    /* a channel that went down already failed what waited on it; nothing
     * would answer a new request */
    if (xm_chan_state(ch) != XM_CH_CONNECTED)
        return -EPIPE;
    zc_span(base, len, &gs, &ge);
    chunk = (raddr - gs) / XM_ZC_CHUNK_BYTES;
    if (chunk > UINT32_MAX)
        return -EINVAL;

    pthread_mutex_lock(&zlock);
    for (struct zc_nogrant *g = nogrant; g; g = g->next)
        if (g->ch == ch) {
            pthread_mutex_unlock(&zlock);
            return -ENODEV;
        }
    for (e = phead; e; e = e->next)
        if (e->ch == ch && e->id == id && e->chunk == chunk && (e->rw || !rw))
            break;
    if (e && e->state == P_LIVE) {
        zst.hits++;
        LIST_UNLINK(phead, ptail, e);
        LIST_APPEND(phead, ptail, e);
        rc = pent_copy(ch, e, raddr, local, n, dir);
        if (rc == 0 || rc == -EFAULT) {
            pthread_mutex_unlock(&zlock);
            return rc;
        }
        /* the grant went away under us (the owner ended it without our
         * acknowledgement, or its process restarted): ask again */
        xm_debug("zero-copy: cached grant %u of domain %u failed (%d): asking again",
                 e->gen, xm_chan_peer_dom(ch), rc);
        struct xm_zc_grant_ref m = { e->id, e->chunk, e->gen };
        zsend(ch, XM_REC_ZC_REL, &m, sizeof(m));
        pent_free(e);
        e = NULL;
    }
    zst.misses++;
    w = calloc(1, sizeof(*w));
    if (!w) {
        pthread_mutex_unlock(&zlock);
        return -ENOMEM;
    }
    w->local = local;
    w->raddr = raddr;
    w->n = n;
    w->dir = dir;
    w->cb = cb;
    w->arg = arg;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e) {
            free(w);
            pthread_mutex_unlock(&zlock);
            return -ENOMEM;
        }
        e->ch = ch;
        e->id = id;
        e->chunk = (uint32_t)chunk;
        e->rw = rw;
        e->state = P_PENDING;
        e->cstart = gs + chunk * XM_ZC_CHUNK_BYTES;
        e->npages = zc_chunk_pages(gs, ge, chunk);
        e->wait_tail = &e->wait;
        LIST_APPEND(phead, ptail, e);
        struct zc_greq q = { id, (uint32_t)chunk, rw ? ZC_F_WRITE : 0 };
        zsend(ch, XM_REC_ZC_GREQ, &q, sizeof(q));
    }
    *e->wait_tail = w;
    e->wait_tail = &w->next;
    pthread_mutex_unlock(&zlock);
    outbox_flush(xm_chan_endpoint(ch));
    return -EINPROGRESS;
}

/* Run (or fail) every waiter of e; the callbacks go to dl. */
static void pent_run_waiters(xm_channel_t *ch, struct zc_pent *e, int status,
                             struct zc_donelist *dl)
{
    struct zc_waiter *w = e->wait, *nx;

    e->wait = NULL;
    e->wait_tail = &e->wait;
    for (; w; w = nx) {
        int rc = status;

        nx = w->next;
        if (!rc)
            rc = pent_copy(ch, e, w->raddr, w->local, w->n, w->dir);
        done_add(dl, w->cb, w->arg, rc);
        free(w);
    }
}

static void peer_grep(xm_channel_t *ch, const void *data, size_t len,
                      struct zc_donelist *dl)
{
    uint32_t refs[XM_ZC_MAX_REFS];
    struct zc_grep h;
    struct zc_pent *e;

    if (xm_zc_parse_grep(data, len, &h, refs)) {
        zst.rejected++;
        xm_warn("zero-copy: malformed grant answer from domain %u ignored",
                xm_chan_peer_dom(ch));
        return;
    }
    for (e = phead; e; e = e->next)
        if (e->ch == ch && e->state == P_PENDING && e->id == h.id &&
            e->chunk == h.chunk && e->rw == !!(h.flags & ZC_F_WRITE))
            break;
    if (!e) {
        zst.rejected++;
        if (h.status == 0) {   /* nobody wants it: let the owner end it */
            struct xm_zc_grant_ref m = { h.id, h.chunk, h.gen };
            zsend(ch, XM_REC_ZC_REL, &m, sizeof(m));
        }
        return;
    }
    if (h.status == 0 && h.npages != e->npages) {
        /* the owner's registration is not what its rkey described */
        xm_warn("zero-copy: domain %u granted %u pages for chunk %u of registration "
                "%llu, its key describes %u: not used", xm_chan_peer_dom(ch),
                h.npages, h.chunk, (unsigned long long)h.id, e->npages);
        zst.rejected++;
        struct xm_zc_grant_ref m = { h.id, h.chunk, h.gen };
        zsend(ch, XM_REC_ZC_REL, &m, sizeof(m));
        h.status = -EPROTO;
    }
    if (h.status == -ENODEV) {
        struct zc_nogrant *g = malloc(sizeof(*g));

        if (g) {
            g->ch = ch;
            g->next = nogrant;
            nogrant = g;
        }
        xm_info("zero-copy: domain %u cannot grant (no xenmpi_grant module): "
                "copying through the ring", xm_chan_peer_dom(ch));
    }
    if (h.status) {
        pent_run_waiters(ch, e, xm_zc_grep_status_known(h.status) ? h.status : -EPROTO, dl);
        pent_free(e);
        return;
    }
    memcpy(e->refs, refs, h.npages * sizeof(uint32_t));
    e->gen = h.gen;
    e->state = P_LIVE;
    zst.peer_pages += e->npages;
    pent_run_waiters(ch, e, 0, dl);
    peer_shrink(e);
}

static void peer_inval(xm_channel_t *ch, const void *data, size_t len)
{
    struct xm_zc_grant_ref m;

    if (xm_zc_parse_grant_ref(data, len, &m)) {
        zst.rejected++;
        return;
    }
    for (struct zc_pent *e = phead; e; e = e->next)
        if (e->ch == ch && e->state == P_LIVE && e->gen == m.gen) {
            pent_free(e);
            break;
        }
    /* acknowledged even when unknown (already evicted): the owner may end it */
    zsend(ch, XM_REC_ZC_ACK, &m, sizeof(m));
}

/* ---- the service on each endpoint ---- */

static void zc_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct zc_donelist dl = { 0 };

    pthread_mutex_lock(&zlock);
    switch (type) {
    case XM_REC_ZC_GREQ:  owner_greq(ch, data, len); break;
    case XM_REC_ZC_GREP:  peer_grep(ch, data, len, &dl); break;
    case XM_REC_ZC_INVAL: peer_inval(ch, data, len); break;
    case XM_REC_ZC_ACK:
    case XM_REC_ZC_REL:   owner_end(ch, type, data, len); break;
    default:              zst.rejected++; break;
    }
    pthread_mutex_unlock(&zlock);
    done_run(&dl);
    outbox_flush(xm_chan_endpoint(ch));
}

static void zc_chan_gone(void *arg, xm_channel_t *ch)
{
    struct zc_donelist dl = { 0 };
    struct zc_msg **pp = &outbox, *m;

    pthread_mutex_lock(&zlock);
    for (struct zc_nogrant **gp = &nogrant, *g; (g = *gp);) {
        if (g->ch == ch) {
            *gp = g->next;
            free(g);
        } else {
            gp = &g->next;
        }
    }
    outbox_tail = &outbox;
    while ((m = *pp)) {
        if (m->ch == ch) {
            *pp = m->next;
            free(m);
        } else {
            outbox_tail = &m->next;
            pp = &m->next;
        }
    }
    for (struct zc_park *p = park_take(ch), *nx; p; p = nx) {
        nx = p->next;
        free(p);
    }
    /* the peer can no longer use what we granted over this channel */
    for (struct zc_oent *o = ohead, *nx; o; o = nx) {
        nx = o->next;
        if (o->ch == ch)
            oent_end(o);
    }
    for (struct zc_pent *e = phead, *nx; e; e = nx) {
        nx = e->next;
        if (e->ch == ch) {
            pent_run_waiters(ch, e, -EPIPE, &dl);
            pent_free(e);
        }
    }
    pthread_mutex_unlock(&zlock);
    done_run(&dl);
}

void xm_zc_cancel(void *arg)
{
    pthread_mutex_lock(&zlock);
    for (struct zc_pent *e = phead; e; e = e->next) {
        struct zc_waiter **pp = &e->wait, *w;

        e->wait_tail = &e->wait;
        while ((w = *pp)) {
            if (w->arg == arg) {
                *pp = w->next;
                free(w);
            } else {
                e->wait_tail = &w->next;
                pp = &w->next;
            }
        }
    }
    pthread_mutex_unlock(&zlock);
}

static int zc_progress(void *arg, xm_endpoint_t *ep)
{
    int n;

    /* a hint read without the lock: the progress after a change sees it */
    if (__builtin_expect(!__atomic_load_n(&xm_zc_work, __ATOMIC_RELAXED), 1))
        return 0;
    pthread_mutex_lock(&zlock);
    if (revoke_owed)
        send_revokes(ep);
    __atomic_store_n(&xm_zc_work, revoke_owed || outbox, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&zlock);
    n = outbox_flush(ep);
    /* what stays queued waits for ring space: the peer's release wakes us */
    return n;
}

static const xm_service_t zc_service = {
    .first_type = XM_REC_ZC_FIRST,
    .last_type  = XM_REC_ZC_LAST,
    .recv       = zc_recv,
    .chan_gone  = zc_chan_gone,
    .progress   = zc_progress,
};

const xm_service_t *xm_zc_service(void)
{
    return &zc_service;
}

int xm_zc_attach(xm_endpoint_t *ep)
{
    return xm_endpoint_add_service(ep, &zc_service);
}
