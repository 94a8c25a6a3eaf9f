/*
 * xm_xfer.c - operations per channel, the zero-copy operation, remote
 * completion marks and the service (xm_xfer.h); RMA through the ring is
 * xm_xfer_rma.c.  One xm_xfer_t per endpoint, used from the
 * endpoint's thread only (as the endpoint itself): no lock.  Zero-copy
 * state below it is process-wide and has its own (xm_zc.c).
 */
#include "xm_xfer_int.h"
#include "xm_channel_int.h"   /* mono_now */
#include "xm_log.h"
#include "xm_zc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- path choice (XM_XFER_ZC_AUTO) ---------------- */

static unsigned size_class(size_t len)
{
    unsigned k = 0;

    for (size_t lim = (size_t)64 << 10; k < XF_SIZES - 1 && len >= lim; lim <<= 2)
        k++;
    return k;
}

static void meter_start(struct xf_meter *m)
{
    if (m->busy++ == 0) {
        m->since = mono_now();
        m->bytes = 0;
    }
}

/* An operation of m's path ends, having moved bytes (0: failed or
 * dropped).  The busy period that ends with it is one sample; the cost is
 * the least of the latest XF_SAMPLES, so one period the scheduler stretched
 * (a rank descheduled mid-transfer) does not turn the choice, while a path
 * that became slower is seen as such within XF_SAMPLES periods. */
static void meter_stop(struct xf_meter *m, size_t bytes)
{
    m->bytes += bytes;
    if (--m->busy > 0 || m->bytes == 0)
        return;
    m->sample[m->samples++ % XF_SAMPLES] = (mono_now() - m->since) / (double)m->bytes;
    m->cost = m->sample[0];
    for (unsigned i = 1; i < XF_SAMPLES && i < m->samples; i++)
        if (m->sample[i] < m->cost)
            m->cost = m->sample[i];
}

/* The path of a zero-copy operation of len bytes in direction dir on c:
 * grant copy unless the peer sent the adapter a record since our previous
 * operation here (xm_xfer.h); else a path not measured yet and idle (grant
 * copy first), else the measured one (grant copy while neither is), then
 * the cheaper one (the ring only below 3/4 of grant copy's cost), and now
 * and then the other: every XM_XFER_PROBE_EVERY-th operation, or less often
 * (up to every XF_PROBE_MAX-th) while the other costs more than twice as
 * much. */
static int path_choose(struct xf_chan *c, int dir, size_t len, struct xf_meter **meter)
{
    unsigned k = size_class(len);
    struct xf_meter *m = c->path.m[dir][k];
    unsigned *gap = &c->path.gap[dir][k];
    uint64_t recv = c->ch->st.adapter_recv;
    int best;

    if (recv == c->seen_recv)
        best = XF_GRANT;   /* the owner may not be progressing */
    else if (m[XF_GRANT].samples == 0 && m[XF_GRANT].busy == 0)
        best = XF_GRANT;
    else if (m[XF_RING].samples == 0 && m[XF_RING].busy == 0)
        best = XF_RING;
    else if (m[XF_RING].samples == 0 || m[XF_GRANT].samples == 0)
        best = m[XF_RING].samples ? XF_RING : XF_GRANT;   /* the measured one */
    else {
        best = m[XF_RING].cost * 4 < m[XF_GRANT].cost * 3 ? XF_RING : XF_GRANT;
        if (*gap == 0)
            *gap = XM_XFER_PROBE_EVERY;
        if (++c->path.n[dir][k] >= *gap) {
            c->path.n[dir][k] = 0;
            if (m[!best].cost > 2 * m[best].cost)
                *gap = *gap < XF_PROBE_MAX / 2 ? *gap * 2 : XF_PROBE_MAX;
            else
                *gap = XM_XFER_PROBE_EVERY;
            best = !best;
        }
    }
    c->seen_recv = recv;
    *meter = &m[best];
    meter_start(*meter);
    return best;
}

/* ---------------- channels and operations ---------------- */

static unsigned chan_bucket(const xm_channel_t *ch)
{
    return (unsigned)(((uintptr_t)ch >> 6) * 0x9E3779B1u >> 26) % XF_CHAN_BUCKETS;
}

struct xf_chan *xf_chan_find(xm_xfer_t *x, const xm_channel_t *ch)
{
    struct xf_chan *c = x->chans[chan_bucket(ch)];

    while (c && c->ch != ch)
        c = c->hnext;
    return c;
}

struct xf_chan *xf_chan_get(xm_xfer_t *x, xm_channel_t *ch)
{
    struct xf_chan *c = xf_chan_find(x, ch);
    unsigned b = chan_bucket(ch);

    if (c)
        return c;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ch = ch;
    c->next_seq = 1;
    c->ring_tail = &c->ring;
    c->hnext = x->chans[b];
    x->chans[b] = c;
    return c;
}

struct xf_op *xf_op_new(xm_xfer_t *x, xm_channel_t *ch, int kind, xm_xfer_cb_t cb,
                            void *arg, const void *tag)
{
    struct xf_chan *c = xf_chan_get(x, ch);
    struct xf_op *op = c ? calloc(1, sizeof(*op)) : NULL;

    if (!op)
        return NULL;
    op->x = x;
    op->c = c;
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    op->tag = tag;
    op->seq = c->next_seq++;
    op->prev = c->tail;
    if (c->tail)
        c->tail->next = op;
    else
        c->head = op;
    c->tail = op;
    return op;
}

static void get_unhash(xm_xfer_t *x, struct xf_op *op)
{
    struct xf_op **pp = &x->gets[op->req % XF_GET_BUCKETS];

    while (*pp && *pp != op)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = op->hnext;
}

static void range_get_done(void *arg, int status);
static void push_done(void *arg, int status);
static int ring_progress(xm_xfer_t *x);
void xf_op_free(xm_xfer_t *x, struct xf_op *op);

/* A zero-copy operation goes (done, failed or dropped): what still refers
 * to it goes too, without callbacks (none when it completed normally). */
/* Free op's ranges in the list at *pp; returns the list's last next. */
static struct xf_range **ranges_drop(struct xf_range **pp, const struct xf_op *op)
{
    struct xf_range *r;

    while ((r = *pp)) {
        if (r->op == op) {
            *pp = r->next;
            free(r);
        } else {
            pp = &r->next;
        }
    }
    return pp;
}

/* c has no ranges left for the ring: off x->ringchans */
static void ringchan_unlink(xm_xfer_t *x, struct xf_chan *c)
{
    struct xf_chan **cp;

    for (cp = &x->ringchans; *cp; cp = &(*cp)->gnext)
        if (*cp == c) {
            *cp = c->gnext;
            break;
        }
    c->gnext = NULL;
    c->ring = NULL;
    c->ring_tail = &c->ring;
}

static void zop_forget(xm_xfer_t *x, struct xf_op *op)
{
    struct xf_chan *c = op->c;
    struct xf_op *g, *next;

    for (unsigned i = 0; i < op->npieces; i++)
        xm_zc_cancel(&op->pieces[i]);
    if (c->ring) {
        c->ring_tail = ranges_drop(&c->ring, op);
        if (!c->ring)
            ringchan_unlink(x, c);
    }
    ranges_drop(&x->putwait, op);
    /* its gets through the ring, on the same channel; a push the owner
     * may be doing stays, without a callback, until its answer comes (or
     * the channel goes): until then the owner may write into our memory,
     * and a flush waits for it */
    for (g = c->head; g; g = next) {
        next = g->next;
        if (g->kind == XF_GET && g->cb == push_done && g->arg == op) {
            g->cb = NULL;
            g->arg = NULL;
        } else if (g->kind == XF_GET && g->cb == range_get_done && g->arg == op) {
            g->cb = NULL;
            xf_op_free(x, g);
        }
    }
}

/* Unlink op from everything and free it; its callback is the caller's. */
void xf_op_free(xm_xfer_t *x, struct xf_op *op)
{
    struct xf_chan *c = op->c;

    if (op->meter)
        meter_stop(op->meter, 0);
    if (op->kind == XF_ZOP)
        zop_forget(x, op);

    if (op->prev)
        op->prev->next = op->next;
    else
        c->head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        c->tail = op->prev;
    if (op->kind == XF_GET)
        get_unhash(x, op);
    free(op->pieces);
    free(op);
}

void xf_op_complete(xm_xfer_t *x, struct xf_op *op, int status)
{
    xm_xfer_cb_t cb = op->cb;
    void *arg = op->arg;

    xf_op_free(x, op);
    if (cb)
        cb(arg, status);
}

/* ---------------- the zero-copy operation ---------------- */

/* A measured operation is done: its bytes count if it succeeded. */
static void zop_meter(struct xf_op *op)
{
    if (op->meter) {
        meter_stop(op->meter, op->status ? 0 : op->len);
        op->meter = NULL;
    }
}

static void zop_release(xm_xfer_t *x, struct xf_op *op, int status)
{
    if (status && !op->status)
        op->status = status;
    if (--op->count == 0) {
        zop_meter(op);
        xf_op_complete(x, op, op->status);
    }
}

static void range_add(xm_xfer_t *x, struct xf_op *op, void *local, uint64_t raddr, size_t len)
{
    struct xf_range *r = malloc(sizeof(*r));

    if (!r) {
        xm_error("no memory for a copy-path range");
        if (!op->status)
            op->status = -ENOMEM;
        return;
    }
    r->next = NULL;
    r->op = op;
    r->local = local;
    r->raddr = raddr;
    r->left = len;
    op->count++;
    if (!op->c->ring) {
        op->c->gnext = x->ringchans;
        x->ringchans = op->c;
    }
    *op->c->ring_tail = r;
    op->c->ring_tail = &r->next;
}

/* Zero-copy is an optimisation; the ring is the authority.  A piece the
 * owner could not grant or refused, or whose copy failed, is done again
 * through the ring, where the owner checks the access against its record
 * and either serves or refuses it.  Only a channel that went down fails
 * the piece here. */
static int use_ring(int rc)
{
    return rc != 0 && rc != -EPIPE;
}

static void piece_done(void *arg, int rc)
{
    struct xf_piece *p = arg;
    struct xf_op *op = p->op;
    xm_xfer_t *x = op->x;

    if (use_ring(rc)) {
        range_add(x, op, p->local, p->raddr, p->len);
        rc = 0;
    }
    zop_release(x, op, rc);
}

static void range_get_done(void *arg, int status)
{
    struct xf_op *op = arg;

    zop_release(op->x, op, status);
}

static void range_unpack(void *arg, const void *data, size_t len)
{
    memcpy(arg, data, len);
}

/* The owner pushed the pages it was asked to (0), or could not: then we
 * copy them ourselves, by grant copy where we can. */
static void push_done(void *arg, int status)
{
    struct xf_op *op = arg;
    xm_xfer_t *x = op->x;

    if (status && status != -EPIPE) {
        uint8_t *l = op->push_local;
        uint64_t a = op->push_raddr;
        size_t left = op->push_len, n;
        int zc, rc;

        for (; left > 0; a += n, l += n, left -= n) {
            n = xm_zc_piece(op->rk.base, op->rk.len, a, left, &zc);
            struct xf_piece *p = &op->pieces[op->npieces++];
            p->op = op;
            p->local = l;
            p->raddr = a;
            p->len = n;
            rc = zc ? xm_zc_copy(op->c->ch, op->rk.id, op->rk.base, op->rk.len, a, l, n,
                                 op->dir, piece_done, p)
                    : -EINVAL;
            if (rc == -EINPROGRESS)
                op->count++;
            else if (use_ring(rc))
                range_add(x, op, l, a, n);
        }
        if (x->ringchans)
            ring_progress(x);
        status = 0;
    } else if (!status) {
        xm_zc_count_pushed(op->push_len);
    }
    zop_release(x, op, status);
}

void xf_push_answer(xm_xfer_t *x, xm_channel_t *ch, const struct xm_rma_hdr *h)
{
    struct xf_op *op = x->gets[h->req % XF_GET_BUCKETS];

    while (op && op->req != h->req)
        op = op->hnext;
    if (!op || op->c->ch != ch || !op->push || h->len != op->len) {
        x->refused++;
        xm_peer_error("domain %u endpoint %u answered push %" PRIu64 ", which it was not "
                 "asked: dropped", xm_chan_peer_dom(ch), xm_chan_peer_ep(ch), h->req);
        return;
    }
    xf_op_complete(x, op, h->status);
}

/* Send the ranges that take the ring, per channel in order, until that
 * channel's ring is full; the other channels go on (a peer that stops
 * reading holds up only its own ranges).  After a range is done, the list
 * is walked afresh: its completion may have started or ended anything. */
static int ring_progress(xm_xfer_t *x)
{
    unsigned pass = ++x->ring_pass;
    struct xf_chan *c;
    int n = 0;

again:
    for (c = x->ringchans; c; c = c->gnext) {
        struct xf_range *r = c->ring;
        struct xf_op *op = r->op;
        xm_channel_t *ch = c->ch;
        int rc = 0;

        if (c->ring_pass == pass)
            continue;   /* full in this pass */
        size_t max = xf_rec_max(x, ch, op->dir == XM_ZC_GET);

        while (r->left > 0) {
            size_t len = r->left < max ? r->left : max;

            if (op->dir == XM_ZC_GET) {
                op->count++;
                rc = xm_xfer_get(x, ch, &op->rk, r->raddr, len, range_unpack, r->local,
                               range_get_done, op, op->tag);
                if (rc != -EINPROGRESS)
                    op->count--;
                else
                    rc = 0;
            } else {
                void *p = xm_xfer_put_reserve(x, ch, len, &rc);
                if (p) {
                    memcpy(p, r->local, len);
                    xm_xfer_put_commit(x, ch, p, &op->rk, r->raddr, len);
                }
            }
            if (rc == -EAGAIN)
                break;
            if (rc) {
                if (!op->status)
                    op->status = rc;
                break;
            }
            if (op->ring)
                xm_zc_count_ring(len);
            else
                xm_zc_count_fallback(len);
            r->local += len;
            r->raddr += len;
            r->left -= len;
            n++;
        }
        if (rc == -EAGAIN) {
            c->ring_pass = pass;   /* the rest of c's waits, in order */
            continue;
        }
        c->ring = r->next;
        if (!c->ring)
            ringchan_unlink(x, c);
        if (op->dir == XM_ZC_PUT && r->left == 0) {
            /* complete once the peer applied it */
            r->tx = xm_chan_tx_mark(ch);
            r->next = x->putwait;
            x->putwait = r;
        } else {
            free(r);
            zop_release(x, op, 0);
        }
        goto again;
    }
    return n;
}

static int putwait_progress(xm_xfer_t *x)
{
    struct xf_range **pp = &x->putwait, *r;
    int n = 0;

    while ((r = *pp)) {
        if (!xm_chan_tx_reached(r->op->c->ch, r->tx)) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        zop_release(x, r->op, 0);
        free(r);
        n++;
        pp = &x->putwait;   /* a completion may have changed the list */
    }
    return n;
}

/* The whole pages [*ps, *pe) of a get of [raddr, raddr+len) into local
 * that the owner could push into our registration lk instead of our
 * copying them: the second half of the pages that are whole in both
 * registrations, when the two buffers share their offset in a page.
 * 0: none. */
static size_t push_range(const xm_xfer_t *x, const xm_rkey_t *rk, uint64_t raddr,
                         const void *local, const xm_rkey_t *lk, size_t len,
                         uint64_t *ps)
{
    const uint64_t pg = XM_PAGE_SIZE;
    uint64_t l = (uintptr_t)local, ws, we;

    if (!lk || len < x->push_min || ((l ^ raddr) & (pg - 1)) ||
        l < lk->base || len > lk->len || l - lk->base > lk->len - len)
        return 0;
    /* pages whole in the transfer and in the owner's registration */
    ws = (raddr + pg - 1) & ~(pg - 1);
    if (ws < ((rk->base + pg - 1) & ~(pg - 1)))
        ws = (rk->base + pg - 1) & ~(pg - 1);
    we = (raddr + len) & ~(pg - 1);
    if (we > ((rk->base + rk->len) & ~(pg - 1)))
        we = (rk->base + rk->len) & ~(pg - 1);
    if (we <= ws + 2 * pg)
        return 0;
    *ps = ws + (((we - ws) / 2) & ~(pg - 1));
    return we - *ps;
}

/* left bytes from a, cut at ps or pe (a push range) when it crosses one */
static size_t cut(uint64_t a, size_t left, uint64_t ps, uint64_t pe)
{
    if (a < ps && left > ps - a)
        return ps - a;
    if (a >= ps && a < pe && left > pe - a)
        return pe - a;
    return left;
}

static int zcopy(xm_xfer_t *x, xm_channel_t *ch, const xm_rkey_t *rk, uint64_t raddr,
                 void *local, const xm_rkey_t *lk, size_t len, int dir, xm_xfer_cb_t cb,
                 void *arg, const void *tag)
{
    uint8_t *l = local;
    unsigned npieces = 0, npush = 0;
    struct xf_op *op;
    uint64_t a, ps = 0, pe = 0;
    size_t left, n, plen = 0;
    int zc, rc;

    if (len == 0)
        return 0;
    if (dir != XM_ZC_GET && dir != XM_ZC_PUT)
        return -EINVAL;
    if (len > UINT64_MAX - raddr)
        return -EINVAL;
    switch (xm_chan_state(ch)) {
    case XM_CH_CONNECTED:
        break;
    case XM_CH_CONNECTING:
        return -EAGAIN;
    default:
        return -EPIPE;
    }
    if (dir == XM_ZC_GET && x->zcopy != XM_XFER_ZC_OFF)
        plen = push_range(x, rk, raddr, local, lk, len, &ps);
    pe = ps + plen;
    /* pieces end at ps and pe: what we copy, what the owner pushes, what
     * we copy */
#define PIECE(a, left) xm_zc_piece(rk->base, rk->len, (a), cut(a, left, ps, pe), &zc)
    for (a = raddr, left = len; left > 0; a += n, left -= n) {
        n = PIECE(a, left);
        if (plen && a >= ps && a < pe)
            npush += zc;
        else
            npieces += zc;
    }
    op = xf_op_new(x, ch, XF_ZOP, cb, arg, tag);
    if (op && npieces + npush) {
        /* whole pages: grant copy, or the ring as configured or measured */
        if (x->zcopy == XM_XFER_ZC_AUTO)
            op->ring = path_choose(op->c, dir, len, &op->meter) == XF_RING;
        if (op->ring || x->zcopy == XM_XFER_ZC_OFF)
            npieces = npush = plen = 0;
        else if (plen && (op->c->head != op || op->c->npushes))
            npieces += npush, npush = plen = 0;   /* both CPUs are busy already */
    }
    if (!op || (npieces + npush &&
                !(op->pieces = calloc(npieces + npush, sizeof(*op->pieces))))) {
        if (op)
            xf_op_free(x, op);
        xm_error("no memory for a zero-copy operation");
        return -ENOMEM;
    }
    if (!plen)
        ps = pe = 0;
    op->count = 1;  /* ours, while issuing */
    op->rk = *rk;
    op->dir = dir;
    op->len = len;
    op->npieces = 0;
    /* the owner starts on its half first */
    if (plen) {
        /* no tag: cancelling op leaves it to its answer (zop_forget) */
        struct xf_op *q = xf_op_new(x, ch, XF_GET, push_done, op, NULL);
        uint8_t *p = q ? xm_chan_reserve(ch, XF_HDR + sizeof(struct xm_rma_push), &rc) : NULL;

        if (p) {
            struct xm_rma_hdr h = { rk->id, ps, (uint32_t)plen, 0, x->next_req++ };
            struct xm_rma_push b = { *lk, (uintptr_t)(l + (ps - raddr)) };

            q->push = 1;
            q->req = h.req;
            q->len = plen;
            q->hnext = x->gets[q->req % XF_GET_BUCKETS];
            x->gets[q->req % XF_GET_BUCKETS] = q;
            op->push_local = l + (ps - raddr);
            op->push_raddr = ps;
            op->push_len = plen;
            op->count++;
            memcpy(p, &h, sizeof(h));
            memcpy(p + XF_HDR, &b, sizeof(b));
            xm_chan_commit(ch, XM_REC_RMA_PUSH_REQ, XF_HDR + sizeof(b));
        } else {
            /* no room or memory to ask: we copy it all */
            if (q)
                xf_op_free(x, q);
            ps = pe = 0;
        }
    }
    /* The pieces that take the ring first (a malloc'ed buffer's partial
     * first and last pages): their requests then travel while the whole
     * pages are copied, instead of a round trip to the owner after it. */
    for (a = raddr, left = len; left > 0; a += n, left -= n) {
        n = PIECE(a, left);
        if (!zc || (!npieces && !npush))
            range_add(x, op, l + (a - raddr), a, n);
    }
    if (x->ringchans)
        ring_progress(x);
    for (a = raddr, left = len; left > 0 && npieces + npush; a += n, left -= n) {
        n = PIECE(a, left);
        if (!zc || (a >= ps && a < pe))
            continue;
        struct xf_piece *p = &op->pieces[op->npieces++];
        p->op = op;
        p->local = l + (a - raddr);
        p->raddr = a;
        p->len = n;
        rc = xm_zc_copy(ch, rk->id, rk->base, rk->len, a, p->local, n, dir, piece_done, p);
        if (rc == -EINPROGRESS)
            op->count++;
        else if (use_ring(rc))
            range_add(x, op, p->local, a, n);
        else if (rc && !op->status)
            op->status = rc;
    }
#undef PIECE
    if (x->ringchans)
        ring_progress(x);
    if (--op->count > 0)
        return -EINPROGRESS;
    /* everything done now (cache hits): no callback */
    rc = op->status;
    zop_meter(op);
    xf_op_free(x, op);
    return rc;
}

int xm_xfer_zcopy(xm_xfer_t *x, xm_channel_t *ch, const xm_rkey_t *rk, uint64_t raddr,
                  void *local, size_t len, int dir, xm_xfer_cb_t cb, void *arg,
                  const void *tag)
{
    return zcopy(x, ch, rk, raddr, local, NULL, len, dir, cb, arg, tag);
}

int xm_xfer_zcopy_reg(xm_xfer_t *x, xm_channel_t *ch, const xm_rkey_t *rk, uint64_t raddr,
                      void *local, const xm_rkey_t *lk, size_t len, int dir,
                      xm_xfer_cb_t cb, void *arg, const void *tag)
{
    return zcopy(x, ch, rk, raddr, local, lk, len, dir, cb, arg, tag);
}

/* ---------------- cancel, channel gone ---------------- */

static int op_matches(const struct xf_op *op, const void *tag, const struct xf_chan *c)
{
    return c ? op->c == c : op->tag == tag;
}

/* Drop the operations that match (with what refers to them), with -EPIPE
 * (channel gone) or silently (cancel). */
static void drop_ops(xm_xfer_t *x, const void *tag, struct xf_chan *c, int complete)
{
    /* one at a time, looking afresh: a completion may start new ones */
    for (;;) {
        struct xf_op *op = NULL;

        if (c) {
            op = c->head;
        } else {
            for (unsigned b = 0; b < XF_CHAN_BUCKETS && !op; b++)
                for (struct xf_chan *k = x->chans[b]; k && !op; k = k->hnext)
                    for (struct xf_op *o = k->head; o && !op; o = o->next)
                        if (op_matches(o, tag, NULL))
                            op = o;
        }
        if (!op)
            break;
        if (complete)
            xf_op_complete(x, op, -EPIPE);
        else
            xf_op_free(x, op);
    }
}

void xm_xfer_cancel(xm_xfer_t *x, const void *tag)
{
    drop_ops(x, tag, NULL, 0);
}

static void xfer_chan_gone(void *arg, xm_channel_t *ch)
{
    xm_xfer_t *x = arg;
    struct xf_chan *c = xf_chan_find(x, ch), **cp;

    if (!c)
        return;
    xf_drop_replies(x, c);
    xf_drop_pushes(x, c);
    drop_ops(x, NULL, c, 1);
    ringchan_unlink(x, c);   /* its ranges went with its operations */
    for (cp = &x->chans[chan_bucket(ch)]; *cp != c; cp = &(*cp)->hnext)
        ;
    *cp = c->hnext;
    free(c);
}

/* ---------------- progress, sleep, marks ---------------- */

static int xfer_progress(void *arg, xm_endpoint_t *ep)
{
    xm_xfer_t *x = arg;
    int n = 0;

    if (__builtin_expect(!x->rchans && !x->ringchans && !x->putwait, 1))
        return 0;
    if (x->rchans)
        n += xf_send_replies(x);
    if (x->ringchans)
        n += ring_progress(x);
    if (x->putwait)
        n += putwait_progress(x);
    return n;
}

/* Work our progress can do now, which no peer event would announce; a
 * full ring asks the peer to notify us when it frees space. */
static int xfer_busy(void *arg, xm_endpoint_t *ep)
{
    xm_xfer_t *x = arg;

    /* an answer some channel has room for (or whose channel went down) */
    for (struct xf_chan *c = x->rchans; c; c = c->rnext)
        if (xm_chan_state(c->ch) != XM_CH_CONNECTED ||
            !xm_chan_want_space(c->ch, XF_HDR + c->rq->hdr.len))
            return 1;
    /* a range whose channel has room for its next record */
    for (struct xf_chan *c = x->ringchans; c; c = c->gnext) {
        const struct xf_range *r = c->ring;
        size_t next = XF_HDR;

        if (r->op->dir == XM_ZC_PUT) {
            size_t max = xf_rec_max(x, c->ch, 0);
            next += r->left < max ? r->left : max;
        }
        if (xm_chan_state(c->ch) != XM_CH_CONNECTED || !xm_chan_want_space(c->ch, next))
            return 1;
    }
    for (struct xf_range *r = x->putwait; r; r = r->next)
        if (xm_chan_tx_reached(r->op->c->ch, r->tx))
            return 1;
    return 0;
}

xm_xfer_mark_t xm_xfer_mark(xm_xfer_t *x, xm_channel_t *ch)
{
    struct xf_chan *c = xf_chan_find(x, ch);
    xm_xfer_mark_t m = { c ? c->next_seq : 1, xm_chan_op_mark(ch) };

    return m;
}

int xm_xfer_reached(xm_xfer_t *x, xm_channel_t *ch, xm_xfer_mark_t mark)
{
    struct xf_chan *c = xf_chan_find(x, ch);

    if (c && c->head && c->head->seq < mark.op)
        return 0;
    return xm_chan_tx_reached(ch, mark.tx);
}

int xm_xfer_idle(xm_xfer_t *x, xm_channel_t *ch)
{
    return xm_xfer_reached(x, ch, xm_xfer_mark(x, ch));
}

/* ---------------- attach ---------------- */

int xm_xfer_attach(xm_endpoint_t *ep, const xm_xfer_params_t *p, xm_xfer_t **out)
{
    size_t max = xm_endpoint_max_msg(ep) - XF_HDR;
    xm_xfer_t *x = calloc(1, sizeof(*x));
    int rc;

    if (!x)
        return -ENOMEM;
    x->ep = ep;
    x->rma_max = p->rma_max && p->rma_max <= max ? p->rma_max : max;
    x->range_max = p->rma_max ? x->rma_max : SIZE_MAX;
    x->zcopy = p->zcopy;
    x->push_min = p->push_min ? p->push_min : XM_XFER_PUSH_MIN;
    x->next_req = 1;
    xm_service_t svc = {
        .first_type = XM_REC_RMA_FIRST,
        .last_type  = XM_REC_RMA_LAST,
        .recv       = xf_recv,
        .chan_gone  = xfer_chan_gone,
        .progress   = xfer_progress,
        .busy       = xfer_busy,
        .arg        = x,
    };
    /* zero-copy first: its waiting copies fail before our operations do */
    xm_zc_config_t zc = { p->grant_cache, p->peer_cache, !p->zcopy };
    rc = xm_zc_attach(ep, &zc);
    if (!rc)
        rc = xm_endpoint_add_service(ep, &svc);
    if (rc) {
        free(x);
        return rc;
    }
    *out = x;
    return 0;
}

void xm_xfer_detach(xm_xfer_t *x)
{
    if (!x)
        return;
    for (unsigned b = 0; b < XF_CHAN_BUCKETS; b++) {
        struct xf_chan *c;

        while ((c = x->chans[b])) {
            xf_drop_replies(x, c);
            xf_drop_pushes(x, c);
            drop_ops(x, NULL, c, 0);
            x->chans[b] = c->hnext;
            free(c);
        }
    }
    free(x);
}

size_t xm_xfer_rma_max(const xm_xfer_t *x) { return x->rma_max; }
uint64_t xm_xfer_refused(const xm_xfer_t *x) { return x->refused; }
size_t xm_xfer_push_min(const xm_xfer_t *x) { return x->push_min; }
