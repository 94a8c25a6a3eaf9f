/*
 * xm_xfer_rma.c - emulated RMA through the ring (xm_xfer.h, docs/wire.md
 * "RMA messages"): the owner applies puts and answers gets after checking
 * each against its registry; the requester matches answers to its gets.
 */
#include "xm_xfer_int.h"
#include "xm_channel_int.h"   /* chan_fail */
#include "xm_log.h"
#include "xm_zc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- the owner: applying puts, answering gets ---------------- */

static void refuse(xm_xfer_t *x, xm_channel_t *ch, const char *what,
                   const struct xm_rma_hdr *h, int rc)
{
    x->refused++;
    xm_peer_error("domain %u endpoint %u: %s of %u bytes at 0x%" PRIx64 " in registration %"
             PRIu64 " refused (%s; %" PRIu64 " refused so far)", xm_chan_peer_dom(ch),
             xm_chan_peer_ep(ch), what, h->len, h->addr, h->rid, strerror(-rc), x->refused);
}

/* Send one answer: a get's (checked and read only now) or a push's.  0
 * when answered (or the requester is gone), -EAGAIN when our ring to it
 * is full. */
static int owner_reply(xm_xfer_t *x, xm_channel_t *ch, uint16_t type,
                       const struct xm_rma_hdr *req)
{
    size_t max = xm_chan_max_msg(ch) - XF_HDR, len;
    struct xm_rma_hdr rep = *req;
    uint8_t *p;
    int err, rc;

    if (xm_chan_state(ch) != XM_CH_CONNECTED)
        return 0;
    if (type == XM_REC_RMA_PUSH_REP) {
        p = xm_chan_reserve(ch, XF_HDR, &err);
        if (!p)
            return err == -EAGAIN ? -EAGAIN : 0;
        memcpy(p, &rep, sizeof(rep));
        xm_chan_commit(ch, XM_REC_RMA_PUSH_REP, XF_HDR);
        return 0;
    }
    len = req->len <= max ? req->len : 0;
    p = xm_chan_reserve(ch, XF_HDR + len, &err);
    if (!p)
        return err == -EAGAIN ? -EAGAIN : 0;
    /* larger than one record of our ring can answer: refused */
    rc = req->len > max ? -EMSGSIZE
                        : xm_zc_reg_copy_from(xm_chan_peer_dom(ch), req->rid, req->addr,
                                              req->len, XM_ZC_REMOTE_READ, p + XF_HDR);
    if (rc) {
        refuse(x, ch, "get", req, rc);
        len = 0;
    }
    rep.status = rc;
    memcpy(p, &rep, sizeof(rep));   /* the ring is only 8-byte aligned */
    xm_chan_commit(ch, XM_REC_RMA_GET_REP, XF_HDR + len);
    return 0;
}

/* Answer a get (type GET_REP) or a push (PUSH_REP) now, or queue the
 * answer behind the channel's earlier ones. */
static void owner_answer(xm_xfer_t *x, xm_channel_t *ch, uint16_t type,
                         const struct xm_rma_hdr *h)
{
    struct xf_chan *c = xf_chan_get(x, ch);
    struct xf_reply *r;

    if (!c) {
        xm_error("domain %u: no memory to answer a request", xm_chan_peer_dom(ch));
        return;
    }
    /* answers leave in the order the requests came, per channel */
    if (!c->nreplies && owner_reply(x, ch, type, h) == 0)
        return;
    if (c->nreplies >= XF_REPLY_CAP) {
        xm_error("domain %u endpoint %u leaves %u answers unread while it keeps "
                 "asking: closing its channel", xm_chan_peer_dom(ch), xm_chan_peer_ep(ch),
                 c->nreplies);
        chan_fail(ch, XM_CH_FAILED);   /* reported from progress; chan_gone drops the rest */
        xf_drop_replies(x, c);
        return;
    }
    r = malloc(sizeof(*r));
    if (!r) {
        /* the requester's operation stays outstanding until its channel closes */
        xm_error("domain %u: no memory to queue an answer", xm_chan_peer_dom(ch));
        return;
    }
    r->next = NULL;
    r->type = type;
    r->hdr = *h;
    if (!c->nreplies++) {
        c->rq_tail = &c->rq;
        c->rnext = x->rchans;
        x->rchans = c;
    }
    *c->rq_tail = r;
    c->rq_tail = &r->next;
}

/* ---------------- the owner: pushing pages into the requester's ---------------- */

static void push_end(struct xf_push *p)
{
    struct xf_chan *c = p->c;
    struct xf_push **pp;

    for (pp = &c->pushes; *pp && *pp != p; pp = &(*pp)->next)
        ;
    if (*pp) {
        *pp = p->next;
        c->npushes--;
    }
    if (p->hdr.status)
        xm_debug("push of %u bytes to domain %u failed (%d): the requester copies them",
                 p->hdr.len, xm_chan_peer_dom(c->ch), p->hdr.status);
    owner_answer(p->x, c->ch, XM_REC_RMA_PUSH_REP, &p->hdr);
    free(p);
}

static void push_piece_done(void *arg, int rc)
{
    struct xf_push *p = arg;

    if (rc && !p->hdr.status)
        p->hdr.status = rc;
    if (--p->count == 0)
        push_end(p);
}

/* A peer asks us to copy whole pages of our registration h->rid into its
 * registration (its rkey in the payload) by grant copy: what it could read
 * itself, written only into what it grants us. */
static void owner_push(xm_xfer_t *x, xm_channel_t *ch, const struct xm_rma_hdr *h,
                       const void *payload, size_t plen)
{
    struct xf_chan *c = xf_chan_get(x, ch);
    struct xm_rma_hdr rep = *h;
    struct xm_rma_push b;
    struct xf_push *p = NULL;
    uint64_t s, d;
    size_t left, n;
    int rc, zc;

    if (xm_rma_parse_push(payload, plen, &b))
        rc = -EPROTO;
    else if (!h->len || ((h->addr | h->len | b.daddr) & (XM_PAGE_SIZE - 1)))
        rc = -EINVAL;   /* whole pages only */
    else if (b.daddr < b.dst.base || h->len > b.dst.len ||
             b.daddr - b.dst.base > b.dst.len - h->len)
        rc = -EINVAL;   /* not inside the registration it names as ours to write */
    else if (c && c->npushes >= XF_PUSH_CAP)
        rc = -EBUSY;
    else
        rc = xm_zc_reg_check_from(xm_chan_peer_dom(ch), h->rid, h->addr, h->len,
                                  XM_ZC_REMOTE_READ);
    if (!rc && !(p = c ? calloc(1, sizeof(*p)) : NULL))
        rc = -ENOMEM;
    if (rc) {
        if (rc != -EBUSY && rc != -ENOMEM)
            refuse(x, ch, "push", h, rc);
        rep.status = rc;
        owner_answer(x, ch, XM_REC_RMA_PUSH_REP, &rep);
        return;
    }
    p->x = x;
    p->c = c;
    p->hdr = *h;
    p->count = 1;   /* ours, while issuing */
    p->next = c->pushes;
    c->pushes = p;
    c->npushes++;
    for (s = h->addr, d = b.daddr, left = h->len; left > 0; s += n, d += n, left -= n) {
        n = xm_zc_piece(b.dst.base, b.dst.len, d, left, &zc);
        rc = zc ? xm_zc_copy_from_reg(ch, b.dst.id, b.dst.base, b.dst.len, d,
                                      (void *)(uintptr_t)s, n, push_piece_done, p, h->rid)
                : -EINVAL;
        if (rc == -EINPROGRESS) {
            p->count++;
        } else if (rc) {
            p->hdr.status = rc;
            break;
        }
    }
    if (--p->count == 0)
        push_end(p);
}

/* The channel is going: the pushes we serve for it, without answers. */
void xf_drop_pushes(xm_xfer_t *x, struct xf_chan *c)
{
    struct xf_push *p;

    (void)x;
    while ((p = c->pushes)) {
        c->pushes = p->next;
        xm_zc_cancel(p);
        free(p);
    }
    c->npushes = 0;
}

/* Each channel's queued answers in order, until its ring is full: one
 * requester that does not read holds up only its own. */
int xf_send_replies(xm_xfer_t *x)
{
    struct xf_chan **cp = &x->rchans, *c;
    int n = 0;

    while ((c = *cp)) {
        struct xf_reply *r;

        while ((r = c->rq) && owner_reply(x, c->ch, r->type, &r->hdr) == 0) {
            c->rq = r->next;
            c->nreplies--;
            free(r);
            n++;
        }
        if (c->rq) {
            cp = &c->rnext;
        } else {
            *cp = c->rnext;
            c->rnext = NULL;
        }
    }
    return n;
}

/* The channel is going: its queued answers with it. */
void xf_drop_replies(xm_xfer_t *x, struct xf_chan *c)
{
    struct xf_reply *r;

    if (!c->nreplies)
        return;
    for (struct xf_chan **cp = &x->rchans; *cp; cp = &(*cp)->rnext)
        if (*cp == c) {
            *cp = c->rnext;
            break;
        }
    while ((r = c->rq)) {
        c->rq = r->next;
        free(r);
    }
    c->rnext = NULL;
    c->nreplies = 0;
}

/* ---------------- the requester: answers to our gets ---------------- */

static void get_answer(xm_xfer_t *x, xm_channel_t *ch, const struct xm_rma_hdr *h,
                       const void *data, size_t len)
{
    struct xf_op *op = x->gets[h->req % XF_GET_BUCKETS];
    int status = 0;

    while (op && op->req != h->req)
        op = op->hnext;
    if (!op || op->c->ch != ch) {
        /* not ours, or asked of another peer: that peer's answer counts */
        xm_peer_error("domain %u endpoint %u answered get %" PRIu64 ", which it was not "
                 "asked: dropped", xm_chan_peer_dom(ch), xm_chan_peer_ep(ch), h->req);
        return;
    }
    if (h->status) {
        /* refused (logged there too); its reason is only a hint.  Said
         * here as well: an MPI above may take the failed completion for
         * success (MPICH 4.0.2's ch4:ucx does) */
        status = -EACCES;
        xm_peer_error("domain %u endpoint %u refused our get of %zu bytes at 0x%" PRIx64
                 " in registration %" PRIu64 " (%s): the data did not arrive",
                 xm_chan_peer_dom(ch), xm_chan_peer_ep(ch), op->len, h->addr, h->rid,
                 strerror(h->status < 0 && h->status > -4096 ? -h->status : EPROTO));
    } else if (h->len != op->len || len != op->len) {
        xm_peer_error("domain %u answered get %" PRIu64 " of %zu bytes with %zu",
                 xm_chan_peer_dom(ch), h->req, op->len, len);
        status = -EIO;
    } else if (op->unpack) {
        op->unpack(op->uarg, data, len);
    }
    xf_op_complete(x, op, status);
}

void xf_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    xm_xfer_t *x = arg;
    struct xm_rma_hdr h;
    size_t plen;
    int rc;

    if (xm_rma_parse(type, data, len, &h, &plen)) {
        x->refused++;
        xm_peer_error("domain %u sent a malformed %zu-byte RMA record of type 0x%x: dropped",
                 xm_chan_peer_dom(ch), len, type);
        return;
    }
    switch (type) {
    case XM_REC_RMA_PUT:
        /* the payload is the channel's private copy: written from there */
        rc = xm_zc_reg_copy_from(xm_chan_peer_dom(ch), h.rid, h.addr, h.len,
                                 XM_ZC_REMOTE_WRITE, (uint8_t *)data + XF_HDR);
        if (rc)
            refuse(x, ch, "put", &h, rc);
        break;
    case XM_REC_RMA_GET_REQ:
        owner_answer(x, ch, XM_REC_RMA_GET_REP, &h);
        break;
    case XM_REC_RMA_PUSH_REQ:
        owner_push(x, ch, &h, (const uint8_t *)data + XF_HDR, plen);
        break;
    case XM_REC_RMA_PUSH_REP:
        xf_push_answer(x, ch, &h);
        break;
    default:
        get_answer(x, ch, &h, (const uint8_t *)data + XF_HDR, plen);
        break;
    }
}

/* ---------------- puts and gets ---------------- */

static void hdr_fill(void *p, const xm_rkey_t *rk, uint64_t raddr, size_t len, uint64_t req)
{
    struct xm_rma_hdr h = { rk->id, raddr, (uint32_t)len, 0, req };

    memcpy(p, &h, sizeof(h));
}

void *xm_xfer_put_reserve(xm_xfer_t *x, xm_channel_t *ch, size_t max, int *err)
{
    uint8_t *p;

    if (max > xf_rec_max(x, ch, 0)) {
        *err = -EMSGSIZE;
        return NULL;
    }
    p = xm_chan_reserve(ch, XF_HDR + max, err);
    return p ? p + XF_HDR : NULL;
}

void xm_xfer_put_commit(xm_xfer_t *x, xm_channel_t *ch, void *payload, const xm_rkey_t *rk,
                        uint64_t raddr, size_t len)
{
    hdr_fill((uint8_t *)payload - XF_HDR, rk, raddr, len, 0);
    xm_chan_commit(ch, XM_REC_RMA_PUT, XF_HDR + len);
}

int xm_xfer_get(xm_xfer_t *x, xm_channel_t *ch, const xm_rkey_t *rk, uint64_t raddr,
                size_t len, xm_xfer_unpack_t unpack, void *uarg,
                xm_xfer_cb_t cb, void *arg, const void *tag)
{
    struct xf_op *op;
    uint8_t *p;
    int err;

    if (len > xf_rec_max(x, ch, 1))
        return -EMSGSIZE;
    p = xm_chan_reserve(ch, XF_HDR, &err);
    if (!p)
        return err;
    /* an uncommitted reservation is simply dropped on the error path */
    op = xf_op_new(x, ch, XF_GET, cb, arg, tag);
    if (!op) {
        xm_error("no memory for a get request");
        return -ENOMEM;
    }
    op->req = x->next_req++;
    op->len = len;
    op->unpack = unpack;
    op->uarg = uarg;
    op->hnext = x->gets[op->req % XF_GET_BUCKETS];
    x->gets[op->req % XF_GET_BUCKETS] = op;
    hdr_fill(p, rk, raddr, len, op->req);
    xm_chan_commit(ch, XM_REC_RMA_GET_REQ, XF_HDR);
    return -EINPROGRESS;
}


