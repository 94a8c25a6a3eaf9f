/*
 * xen_am.c - active messages over the core's channels: the per-peer send
 * queue, fragmentation, reassembly and failure reporting (xen_impl.h).
 */
#include "mpidimpl.h"
#include "xen_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

MPIDI_XEN_global_t MPIDI_XEN_global;

/* A fragment smaller than this waits for more ring space instead (the
 * peer frees space in batches; tiny records only cost headers). */
#define MPIDI_XEN_MIN_FRAG 4096

static MPIDI_XEN_peer_t *peer_of_rank(MPIR_Comm * comm, int rank)
{
    int avtid = 0, lpid = 0;

    MPIDIU_comm_rank_to_pid(comm, rank, &lpid, &avtid);
    if (avtid != 0 || lpid < 0 || lpid >= MPIDI_XEN_global.size)
        return NULL;
    return &MPIDI_XEN_global.peers[lpid];
}

static MPIDI_XEN_peer_t *peer_of_chan(const xm_channel_t * ch)
{
    uint32_t dom = xm_chan_peer_dom(ch), ep = xm_chan_peer_ep(ch);

    for (int i = 0; i < MPIDI_XEN_global.size; i++) {
        MPIDI_XEN_peer_t *p = &MPIDI_XEN_global.peers[i];
        if (p->addr.domid == dom && p->addr.ep == ep)
            return p;
    }
    return NULL;
}

static void lost_peer(const xm_channel_t * ch, const char *what)
{
    MPIDI_XEN_peer_t *p = peer_of_chan(ch);
    char msg[512];

    snprintf(msg, sizeof(msg),
             "xen netmod: rank %d lost rank %d (domain %u endpoint %u): %s. "
             "Its process or its VM is gone; nothing it still owed can arrive",
             MPIDI_XEN_global.rank, p ? p->rank : -1, xm_chan_peer_dom(ch),
             xm_chan_peer_ep(ch), what);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
    MPID_Abort(NULL, MPI_ERR_OTHER, 1, msg);
}

/* ---------------- sending ---------------- */

/* Bytes [off, off + n) of the message (headers, then data) to dst. */
static int copy_out(const MPIDI_XEN_sendq_t * op, size_t off, char *dst, size_t n)
{
    if (off < op->hlen) {
        size_t k = MPL_MIN(n, op->hlen - off);
        memcpy(dst, op->hdr + off, k);
        dst += k;
        off += k;
        n -= k;
    }
    if (n == 0)
        return MPI_SUCCESS;
    off -= op->hlen;
    if (op->contig) {
        memcpy(dst, op->contig + off, n);
        return MPI_SUCCESS;
    }
    MPI_Aint actual = 0;
    int mpi_errno = MPIR_Typerep_pack(op->data, op->count, op->datatype, (MPI_Aint) off, dst,
                                      (MPI_Aint) n, &actual);
    if (mpi_errno == MPI_SUCCESS && (size_t) actual != n)
        mpi_errno = MPI_ERR_INTERN;
    return mpi_errno;
}

static void op_done(MPIDI_XEN_peer_t * p, MPIDI_XEN_sendq_t * op)
{
    MPIR_Request *sreq = op->sreq;
    int handler_id = op->handler_id;

    p->head = op->next;
    if (!p->head)
        p->tail = &p->head;
    if (sreq)
        sreq->dev.ch4.am.netmod_am.xen.op = NULL;
    MPL_free(op);
    /* after the queue is consistent: the callback may send again */
    if (sreq)
        MPIDIG_global.origin_cbs[handler_id] (sreq);
}

static int chan_error(MPIDI_XEN_peer_t * p, int err)
{
    if (err == -EPIPE || xm_chan_state(p->ch) >= XM_CH_PEER_GONE) {
        if (!p->said_bye)
            lost_peer(p->ch, "its channel is down");
        fprintf(stderr, "xen netmod: rank %d: send to rank %d after it finalized\n",
                MPIDI_XEN_global.rank, p->rank);
        return MPI_ERR_OTHER;
    }
    fprintf(stderr, "xen netmod: rank %d: send to rank %d failed: %s\n", MPIDI_XEN_global.rank,
            p->rank, strerror(-err));
    return MPI_ERR_OTHER;
}

static int connect_peer(MPIDI_XEN_peer_t * p)
{
    int rc;

    if (p->ch)
        return MPI_SUCCESS;
    rc = xm_endpoint_connect_addr(MPIDI_XEN_global.ep, &p->addr, &p->ch);
    if (rc < 0) {
        /* the core has said why (another host, no resources) */
        fprintf(stderr, "xen netmod: rank %d cannot connect to rank %d (domain %u endpoint %u): "
                "%s\n", MPIDI_XEN_global.rank, p->rank, p->addr.domid, p->addr.ep,
                strerror(-rc));
        return MPI_ERR_OTHER;
    }
    return MPI_SUCCESS;
}

/* Put as much of p's queue on the ring as fits; 1 when something waits. */
static int push(MPIDI_XEN_peer_t * p, int *mpi_errno)
{
    MPIDI_XEN_sendq_t *op;

    while ((op = p->head)) {
        while (op->off < op->total) {
            size_t left = op->total - op->off, space, n;
            char *dst;
            int err;

            if (xm_chan_state(p->ch) >= XM_CH_PEER_GONE) {
                *mpi_errno = chan_error(p, -EPIPE);
                return 0;
            }
            space = xm_chan_space(p->ch);
            n = MPL_MIN(left, space);
            if (n == 0 || (n < left && n < MPIDI_XEN_MIN_FRAG)) {
                if (xm_chan_state(p->ch) == XM_CH_CONNECTED)
                    xm_chan_want_space(p->ch, MPL_MIN(left, MPIDI_XEN_MIN_FRAG));
                return 1;
            }
            dst = xm_chan_reserve(p->ch, n, &err);
            if (!dst) {
                if (err == -EAGAIN)
                    return 1;
                *mpi_errno = chan_error(p, err);
                return 0;
            }
            *mpi_errno = copy_out(op, op->off, dst, n);
            if (*mpi_errno != MPI_SUCCESS)
                return 0;   /* the reservation is dropped: nothing sent */
            xm_chan_commit(p->ch, op->off == 0 ? MPIDI_XEN_REC_AM : MPIDI_XEN_REC_MORE, n);
            op->off += n;
        }
        MPIDI_XEN_global.msgs_sent++;
        MPIDI_XEN_global.bytes_sent += op->total;
        op_done(p, op);
    }
    return 0;
}

static void mark_busy(MPIDI_XEN_peer_t * p)
{
    if (!p->busy) {
        p->busy = 1;
        p->next_busy = MPIDI_XEN_global.busy;
        MPIDI_XEN_global.busy = p;
    }
}

int MPIDI_XEN_send(int rank, MPIR_Comm * comm, int handler_id, const void *am_hdr,
                   MPI_Aint am_hdr_sz, const void *data, MPI_Aint count,
                   MPI_Datatype datatype, int src_vci, int dst_vci, MPIR_Request * sreq)
{
    MPIDI_XEN_peer_t *p = peer_of_rank(comm, rank);
    MPIDI_XEN_hdr_t h;
    MPIDI_XEN_sendq_t *op;
    MPIR_Datatype *dt_ptr;
    MPI_Aint dt_true_lb;
    size_t data_sz = 0;
    int dt_contig = 1, mpi_errno = MPI_SUCCESS;

    MPIR_Assert(p != NULL);
    MPIR_Assert(am_hdr_sz >= 0 && am_hdr_sz <= MPIDI_XEN_AM_HDR_MAX);
    if (data && count > 0)
        MPIDI_Datatype_get_info(count, datatype, dt_contig, data_sz, dt_ptr, dt_true_lb);
    mpi_errno = connect_peer(p);
    if (mpi_errno != MPI_SUCCESS)
        return mpi_errno;

    h.handler_id = (uint16_t) handler_id;
    h.src_vci = (uint8_t) src_vci;
    h.dst_vci = (uint8_t) dst_vci;
    h.am_hdr_sz = (uint32_t) am_hdr_sz;
    h.data_sz = data_sz;

    op = MPL_malloc(sizeof(*op) + sizeof(h) + am_hdr_sz, MPL_MEM_BUFFER);
    MPIR_ERR_CHKANDJUMP1(op == NULL, mpi_errno, MPI_ERR_OTHER, "**nomem", "**nomem %s",
                         "xen netmod send");
    op->next = NULL;
    op->sreq = sreq;
    op->handler_id = handler_id;
    op->data = data;
    op->count = count;
    op->datatype = datatype;
    op->contig = (data_sz && dt_contig) ? (const char *) MPIR_get_contig_ptr(data, dt_true_lb)
                                        : NULL;
    op->hlen = sizeof(h) + (size_t) am_hdr_sz;
    op->total = op->hlen + data_sz;
    op->off = 0;
    memcpy(op->hdr, &h, sizeof(h));
    if (am_hdr_sz)
        memcpy(op->hdr + sizeof(h), am_hdr, (size_t) am_hdr_sz);
    if (sreq)
        sreq->dev.ch4.am.netmod_am.xen.op = op;
    *p->tail = op;
    p->tail = &op->next;
    if (p->head == op && push(p, &mpi_errno) == 0)
        return mpi_errno;   /* all of it left, or an error */
    mark_busy(p);
  fn_fail:
    return mpi_errno;
}

/* MPIDIG frees a request whose send is still queued only when the job is
 * being torn down: drop the queued send with it. */
void MPIDI_XEN_request_free_op(MPIR_Request * req)
{
    MPIDI_XEN_sendq_t *op = req->dev.ch4.am.netmod_am.xen.op;

    req->dev.ch4.am.netmod_am.xen.op = NULL;
    if (op)
        op->sreq = NULL;
}

/* ---------------- receiving ---------------- */

static MPIDI_XEN_rx_t *rx_of(xm_channel_t * ch)
{
    MPIDI_XEN_rx_t *r;

    for (r = MPIDI_XEN_global.rx; r; r = r->next)
        if (r->ch == ch)
            return r;
    r = MPL_calloc(1, sizeof(*r), MPL_MEM_BUFFER);
    if (r) {
        r->ch = ch;
        r->next = MPIDI_XEN_global.rx;
        MPIDI_XEN_global.rx = r;
    }
    return r;
}

static void rx_drop(MPIDI_XEN_rx_t * r, const char *why)
{
    fprintf(stderr, "xen netmod: rank %d: domain %u endpoint %u %s: message dropped\n",
            MPIDI_XEN_global.rank, xm_chan_peer_dom(r->ch), xm_chan_peer_ep(r->ch), why);
    MPL_free(r->buf);
    r->buf = NULL;
}

static void deliver(const MPIDI_XEN_hdr_t * h, char *p)
{
    uint32_t attr = 0;

    MPIDI_XEN_global.msgs_recv++;
    MPIDI_XEN_global.bytes_recv += sizeof(*h) + h->am_hdr_sz + h->data_sz;
    MPIDIG_AM_ATTR_SET_VCIS(attr, h->src_vci, h->dst_vci);
    MPIDIG_global.target_msg_cbs[h->handler_id] (p, p + h->am_hdr_sz, (MPI_Aint) h->data_sz,
                                                 attr, NULL);
}

void MPIDI_XEN_recv_cb(void *arg, xm_channel_t * ch, uint16_t type, const void *data,
                       size_t len)
{
    MPIDI_XEN_rx_t *r = rx_of(ch);
    MPIDI_XEN_hdr_t h;
    size_t body;

    if (!r) {
        fprintf(stderr, "xen netmod: out of memory receiving from domain %u\n",
                xm_chan_peer_dom(ch));
        return;
    }
    switch (type) {
    case MPIDI_XEN_REC_AM:
        if (r->buf)
            rx_drop(r, "started a message before finishing the last");
        if (len < sizeof(h)) {
            rx_drop(r, "sent a message shorter than its header");
            return;
        }
        memcpy(&h, data, sizeof(h));
        if (h.handler_id >= MPIDI_AM_HANDLERS_MAX ||
            !MPIDIG_global.target_msg_cbs[h.handler_id] || h.am_hdr_sz > MPIDI_XEN_AM_HDR_MAX ||
            h.data_sz > ((uint64_t) 1 << 46)) {
            rx_drop(r, "sent a malformed message header");
            return;
        }
        body = (size_t) h.am_hdr_sz + (size_t) h.data_sz;
        if (len - sizeof(h) > body) {
            rx_drop(r, "sent more than its header announced");
            return;
        }
        if (len - sizeof(h) == body) {
            deliver(&h, (char *) data + sizeof(h));   /* the core's copy: valid until we return */
            return;
        }
        r->buf = MPL_malloc(body, MPL_MEM_BUFFER);
        if (!r->buf) {
            fprintf(stderr, "xen netmod: out of memory for a %zu-byte message\n", body);
            return;
        }
        r->h = h;
        r->need = body;
        r->got = len - sizeof(h);
        memcpy(r->buf, (const char *) data + sizeof(h), r->got);
        return;
    case MPIDI_XEN_REC_MORE:
        if (!r->buf || len > r->need - r->got) {
            if (r->buf)
                rx_drop(r, "sent more than its header announced");
            else
                fprintf(stderr, "xen netmod: domain %u sent a fragment of no message: dropped\n",
                        xm_chan_peer_dom(ch));
            return;
        }
        memcpy(r->buf + r->got, data, len);
        r->got += len;
        if (r->got == r->need) {
            char *buf = r->buf;

            r->buf = NULL;   /* the callback may receive again */
            deliver(&r->h, buf);
            MPL_free(buf);
        }
        return;
    case MPIDI_XEN_REC_BYE:{
            MPIDI_XEN_peer_t *p = peer_of_chan(ch);
            if (p)
                p->said_bye = 1;
            return;
        }
    default:
        fprintf(stderr, "xen netmod: domain %u sent a record of type %u: dropped\n",
                xm_chan_peer_dom(ch), type);
    }
}

void MPIDI_XEN_event_cb(void *arg, xm_channel_t * ch, enum xm_chan_event ev)
{
    MPIDI_XEN_peer_t *p;

    switch (ev) {
    case XM_EV_CONNECTED:
        return;
    case XM_EV_ACCEPTED:
        (void) rx_of(ch);   /* remembered for BYE at finalize */
        return;
    case XM_EV_PEER_GONE:
    case XM_EV_FAILED:
        p = peer_of_chan(ch);
        if (MPIDI_XEN_global.closing || (p && p->said_bye))
            return;
        lost_peer(ch, ev == XM_EV_PEER_GONE ? "it went away without finalizing"
                  : "the channel failed");
    }
}

/* ---------------- progress and drain ---------------- */

static int push_busy(void)
{
    MPIDI_XEN_peer_t **pp = &MPIDI_XEN_global.busy, *p;
    int mpi_errno = MPI_SUCCESS;

    while ((p = *pp)) {
        if (push(p, &mpi_errno) == 0) {
            *pp = p->next_busy;
            p->busy = 0;
        } else {
            pp = &p->next_busy;
        }
        if (mpi_errno != MPI_SUCCESS)
            break;
    }
    return mpi_errno;
}

int MPIDI_XEN_progress(void)
{
    int rc = xm_endpoint_progress(MPIDI_XEN_global.ep);

    (void) rc;   /* a failed channel is reported through the event callback */
    if (MPIDI_XEN_global.busy)
        return push_busy();
    return MPI_SUCCESS;
}

static int send_bye(xm_channel_t * ch)
{
    for (;;) {
        int rc = xm_chan_send(ch, MPIDI_XEN_REC_BYE, NULL, 0, NULL, 0);
        if (rc != -EAGAIN)
            return rc;
        MPIDI_XEN_progress();
    }
}

static int all_consumed(void)
{
    for (int i = 0; i < MPIDI_XEN_global.size; i++) {
        MPIDI_XEN_peer_t *p = &MPIDI_XEN_global.peers[i];
        if (p->ch && !xm_chan_tx_reached(p->ch, xm_chan_tx_mark(p->ch)))
            return 0;
    }
    for (MPIDI_XEN_rx_t * r = MPIDI_XEN_global.rx; r; r = r->next)
        if (!xm_chan_tx_reached(r->ch, xm_chan_tx_mark(r->ch)))
            return 0;
    return 1;
}

int MPIDI_XEN_drain(void)
{
    int mpi_errno = MPI_SUCCESS;

    /* our queued sends, then the peers' reading of all of it (our rings
     * go when the endpoint closes) */
    while (MPIDI_XEN_global.busy && mpi_errno == MPI_SUCCESS)
        mpi_errno = MPIDI_XEN_progress();
    while (!all_consumed())
        MPIDI_XEN_progress();
    for (int i = 0; i < MPIDI_XEN_global.size; i++)
        if (MPIDI_XEN_global.peers[i].ch)
            send_bye(MPIDI_XEN_global.peers[i].ch);
    for (MPIDI_XEN_rx_t * r = MPIDI_XEN_global.rx; r; r = r->next)
        send_bye(r->ch);
    while (!all_consumed())
        MPIDI_XEN_progress();
    return mpi_errno;
}
