/*
 * xm_zc_peer.c - zero-copy, the peer's half: refs asked of an owner,
 * cached per (channel, registration, chunk), and the grant copies.
 */
#include "xm_zc_int.h"
#include "xm_channel_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- peer ---- */

void done_add(struct zc_donelist *dl, xm_zc_cb_t cb, void *arg, int status)
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
void done_run(struct zc_donelist *dl)
{
    for (unsigned i = 0; i < dl->n; i++)
        dl->d[i].cb(dl->d[i].arg, dl->d[i].status);
    free(dl->d);
}

/* [local, local+n) is still what registration src lent (under zlock, which
 * its deregistration and invalidation take): -ENOENT when not. */
static int src_live(uint64_t src, const void *local, size_t n)
{
    const struct zc_region *r = zc_reg_live(src);

    if (!r || zc_reg_range(r, (uintptr_t)local, n, XM_ZC_REMOTE_READ))
        return -ENOENT;
    return 0;
}

static int peer_refs_copy(xm_channel_t *ch, const struct zc_peer_refs *e, uint64_t raddr,
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

/* e's GREQ has its answer (or never will: the channel is going): it no
 * longer counts against the window. */
static void peer_answered(struct zc_peer_refs *e)
{
    if (e->asked) {
        e->ch->zc_asked -= e->npages;
        e->asked = 0;
    }
}

/* Pages a channel may have asked for and not yet been answered: half of
 * the grant cache we keep as an owner, which an owner configured like us
 * has too.  Asking for more at once (a window of large messages: 64 of
 * 4 MiB are 256 MiB) made the owner withdraw grants it had just made to
 * stay within its cache, before we had copied through them, and fill its
 * grant table with withdrawals waiting for our ACKs: the requests beyond
 * were refused (-ENOSPC) and those chunks went through the ring. */
static uint64_t peer_window(const struct zc_ep *z)
{
    return z->cfg.owner_cache_bytes / 2 / XM_PAGE_SIZE;
}

/* Send e's GREQ if the window of ch allows (always when nothing is asked
 * on ch: a chunk larger than the window still goes). */
static int peer_ask(struct zc_peer_refs *e)
{
    xm_channel_t *ch = e->ch;

    if (ch->zc_asked && ch->zc_asked + e->npages > peer_window(e->zep))
        return 0;
    struct zc_greq q = { e->id, e->chunk, e->rw ? ZC_F_WRITE : 0 };
    zsend(ch, XM_REC_ZC_GREQ, &q, sizeof(q));
    ch->zc_asked += e->npages;
    e->asked = 1;
    return 1;
}

/* An answer came on ch: ask for the chunks waiting their turn, oldest
 * first, as far as the window allows. */
static void peer_ask_more(xm_channel_t *ch)
{
    for (struct zc_peer_refs *e = phead; e; e = e->next)
        if (e->ch == ch && e->state == P_PENDING && !e->asked && !peer_ask(e))
            break;
}

void peer_refs_free(struct zc_peer_refs *e)
{
    peer_answered(e);
    if (e->state == P_LIVE) {
        zst.peer_pages -= e->npages;
        e->zep->peer_pages -= e->npages;
    }
    LIST_UNLINK(phead, ptail, e);
    free(e);
}

/* Evict z's least recently used entries beyond z's cap, telling the
 * owners: on z's channels, so from z's own thread. */
static void peer_shrink(struct zc_ep *z, const struct zc_peer_refs *keep)
{
    uint64_t cap = z->cfg.peer_cache_bytes / XM_PAGE_SIZE;
    struct zc_peer_refs *e = phead, *nx;

    for (; e && z->peer_pages > cap; e = nx) {
        nx = e->next;
        if (e == keep || e->state != P_LIVE || e->zep != z)
            continue;
        struct xm_zc_grant_ref m = { e->id, e->chunk, e->gen };
        zsend(e->ch, XM_REC_ZC_REL, &m, sizeof(m));
        zst.releases++;
        peer_refs_free(e);
    }
}

static int zc_copy(xm_channel_t *ch, uint64_t id, uint64_t base, uint64_t len,
                   uint64_t raddr, void *local, size_t n, int dir,
                   xm_zc_cb_t cb, void *arg, int has_src, uint64_t src)
{
    struct zc_peer_refs *e;
    struct zc_waiter *w;
    uint64_t gs, ge, chunk;
    int zc, rw = dir == XM_ZC_PUT, rc;

    /* a domain cannot grant to itself: two processes of one VM use the
     * ring (or, above us, the VM's own shared memory) */
    if (xm_chan_peer_dom(ch) == xm_hv_domid(xm_endpoint_hv(xm_chan_endpoint(ch))))
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
    struct zc_ep *z = zep_of(ch);
    if (!z || z->cfg.disable) {
        pthread_mutex_unlock(&zlock);
        return -ENOTSUP;   /* not attached, or switched off on this endpoint */
    }
    for (struct zc_nogrant *g = zc_nogrant_chans; g; g = g->next)
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
        rc = has_src ? src_live(src, local, n) : 0;
        if (rc) {
            pthread_mutex_unlock(&zlock);
            return rc;
        }
        rc = peer_refs_copy(ch, e, raddr, local, n, dir);
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
        peer_refs_free(e);
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
    w->has_src = has_src;
    w->src = src;
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
        e->zep = z;
        e->id = id;
        e->chunk = (uint32_t)chunk;
        e->rw = rw;
        e->state = P_PENDING;
        e->cstart = gs + chunk * XM_ZC_CHUNK_BYTES;
        e->npages = zc_chunk_pages(gs, ge, chunk);
        e->wait_tail = &e->wait;
        LIST_APPEND(phead, ptail, e);
        peer_ask(e);   /* or later, from peer_ask_more */
    }
    *e->wait_tail = w;
    e->wait_tail = &w->next;
    pthread_mutex_unlock(&zlock);
    outbox_flush(xm_chan_endpoint(ch));
    return -EINPROGRESS;
}

int xm_zc_copy(xm_channel_t *ch, uint64_t id, uint64_t base, uint64_t len,
               uint64_t raddr, void *local, size_t n, int dir,
               xm_zc_cb_t cb, void *arg)
{
    return zc_copy(ch, id, base, len, raddr, local, n, dir, cb, arg, 0, 0);
}

int xm_zc_copy_from_reg(xm_channel_t *ch, uint64_t id, uint64_t base, uint64_t len,
                        uint64_t raddr, void *local, size_t n, xm_zc_cb_t cb, void *arg,
                        uint64_t src)
{
    return zc_copy(ch, id, base, len, raddr, local, n, XM_ZC_PUT, cb, arg, 1, src);
}

/* Run (or fail) every waiter of e; the callbacks go to dl. */
void peer_refs_run_waiters(xm_channel_t *ch, struct zc_peer_refs *e, int status,
                             struct zc_donelist *dl)
{
    struct zc_waiter *w = e->wait, *nx;

    e->wait = NULL;
    e->wait_tail = &e->wait;
    for (; w; w = nx) {
        int rc = status;

        nx = w->next;
        if (!rc && w->has_src)
            rc = src_live(w->src, w->local, w->n);
        if (!rc)
            rc = peer_refs_copy(ch, e, w->raddr, w->local, w->n, w->dir);
        done_add(dl, w->cb, w->arg, rc);
        free(w);
    }
}

void peer_grep(xm_channel_t *ch, const void *data, size_t len,
                      struct zc_donelist *dl)
{
    uint32_t refs[XM_ZC_MAX_REFS];
    struct zc_grep h;
    struct zc_peer_refs *e;

    if (xm_zc_parse_grep(data, len, &h, refs)) {
        zst.rejected++;
        xm_peer_warn("zero-copy: malformed grant answer from domain %u ignored",
                xm_chan_peer_dom(ch));
        return;
    }
    for (e = phead; e; e = e->next)
        if (e->ch == ch && e->state == P_PENDING && e->asked && e->id == h.id &&
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
    peer_answered(e);
    if (h.status == 0 && h.npages != e->npages) {
        /* the owner's registration is not what its rkey described */
        xm_peer_warn("zero-copy: domain %u granted %u pages for chunk %u of registration "
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
            g->next = zc_nogrant_chans;
            zc_nogrant_chans = g;
        }
        xm_info("zero-copy: domain %u cannot grant (no xenmpi_grant module): "
                "copying through the ring", xm_chan_peer_dom(ch));
    }
    if (h.status) {
        peer_refs_run_waiters(ch, e, xm_zc_grep_status_known(h.status) ? h.status : -EPROTO, dl);
        peer_refs_free(e);
    } else {
        memcpy(e->refs, refs, h.npages * sizeof(uint32_t));
        e->gen = h.gen;
        e->state = P_LIVE;
        zst.peer_pages += e->npages;
        e->zep->peer_pages += e->npages;
        peer_refs_run_waiters(ch, e, 0, dl);
        peer_shrink(e->zep, e);
    }
    /* the window moves on: the next chunks' requests go out with this
     * record's other messages */
    peer_ask_more(ch);
}

void peer_inval(xm_channel_t *ch, const void *data, size_t len)
{
    struct xm_zc_grant_ref m;

    if (xm_zc_parse_grant_ref(data, len, &m)) {
        zst.rejected++;
        return;
    }
    for (struct zc_peer_refs *e = phead; e; e = e->next)
        if (e->ch == ch && e->state == P_LIVE && e->gen == m.gen) {
            peer_refs_free(e);
            break;
        }
    /* acknowledged even when unknown (already evicted): the owner may end it */
    zsend(ch, XM_REC_ZC_ACK, &m, sizeof(m));
}

