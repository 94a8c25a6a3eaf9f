/*
 * xen_am.c - active messages over the core's channels: the per-peer send
 * queue, fragmentation, reassembly and failure reporting (xen_impl.h).
 */
#include "mpidimpl.h"
#include "xen_impl.h"
#include "xen_wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* read by MPIDIG before the netmod's init (MPIDIG_am_init) */
MPIDI_XEN_global_t MPIDI_XEN_global = {
    .am_hdr_max = MPIDI_XEN_AM_HDR_MAX,
    .eager_limit = MPIDI_XEN_EAGER_LIMIT,
    .zcopy_min = SIZE_MAX,
};

static int rndv_slot_take(MPIR_Request * sreq, uint64_t * cookie);

/* xen_wire.h's parsers read what xen_impl.h's types write */
MPL_COMPILE_TIME_ASSERT(sizeof(MPIDI_XEN_hdr_t) == sizeof(struct MPIDI_XEN_wire_hdr));
MPL_COMPILE_TIME_ASSERT(offsetof(MPIDI_XEN_hdr_t, data_sz) ==
                        offsetof(struct MPIDI_XEN_wire_hdr, data_sz));
MPL_COMPILE_TIME_ASSERT(sizeof(MPIDI_XEN_rndv_t) == sizeof(struct MPIDI_XEN_wire_rndv));
MPL_COMPILE_TIME_ASSERT(MPIDI_XEN_HDR_RNDV == MPIDI_XEN_WIRE_RNDV);
MPL_COMPILE_TIME_ASSERT(MPIDI_XEN_AM_HDR_MAX == MPIDI_XEN_WIRE_HDR_MAX);
/* the inline split (xen_wire.h) follows the pages the core grants */
MPL_COMPILE_TIME_ASSERT(MPIDI_XEN_WIRE_PAGE == XM_PAGE_SIZE);

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

/* MPIDIG asks before a send: eager (data with the message) or RTS/CTS.
 * Small is eager; large and contiguous is eager too, as a zero-copy
 * rendezvous of our own (the data stays with the sender, see below). */
bool MPIDI_XEN_check_eager(MPI_Aint am_hdr_sz, MPI_Aint data_sz, MPI_Datatype datatype,
                           MPIR_Request * sreq)
{
    int dt_contig;

    if (am_hdr_sz + data_sz <= MPIDI_XEN_global.eager_limit)
        return true;
    MPIDI_Datatype_check_contig(datatype, dt_contig);
    if (dt_contig && sreq && (size_t) data_sz >= MPIDI_XEN_global.zcopy_min) {
        sreq->dev.ch4.am.netmod_am.xen.rndv[0] = 1;
        return true;
    }
    return false;
}

/* Bytes [off, off + n) of a message's data to dst: copied when it is
 * contiguous (contig its first byte), else packed from its datatype. */
static int data_out(const void *data, MPI_Aint count, MPI_Datatype datatype, const char *contig,
                    size_t off, char *dst, size_t n)
{
    MPI_Aint actual = 0;
    int mpi_errno;

    if (contig) {
        memcpy(dst, contig + off, n);
        return MPI_SUCCESS;
    }
    mpi_errno = MPIR_Typerep_pack(data, count, datatype, (MPI_Aint) off, dst, (MPI_Aint) n,
                                  &actual);
    if (mpi_errno == MPI_SUCCESS && (size_t) actual != n)
        mpi_errno = MPI_ERR_INTERN;
    return mpi_errno;
}

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
    return data_out(op->data, op->count, op->datatype, op->contig, off - op->hlen, dst, n);
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
            n = MPL_MIN(MPL_MIN(left, space), MPIDI_XEN_FRAG);
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
    MPIDI_XEN_rndv_t rv;
    MPIDI_XEN_sendq_t *op;
    MPIR_Datatype *dt_ptr;
    MPI_Aint dt_true_lb;
    size_t data_sz = 0, extra = 0;
    uint64_t head = 0, inl = 0;   /* rendezvous: the data bytes that go inline */
    int dt_contig = 1, rndv = 0, mpi_errno = MPI_SUCCESS;

    MPIR_Assert(p != NULL);
    MPIR_Assert(am_hdr_sz >= 0 && am_hdr_sz <= MPIDI_XEN_AM_HDR_MAX);
    if (count > 0)   /* data may be MPI_BOTTOM (NULL) with absolute displacements */
        MPIDI_Datatype_get_info(count, datatype, dt_contig, data_sz, dt_ptr, dt_true_lb);
    mpi_errno = connect_peer(p);
    if (mpi_errno != MPI_SUCCESS)
        return mpi_errno;

    h.handler_id = (uint16_t) handler_id;
    h.src_vci = (uint8_t) src_vci;
    h.dst_vci = (uint8_t) dst_vci;
    h.am_hdr_sz = (uint32_t) am_hdr_sz;
    h.data_sz = data_sz;

    /* chosen by am_check_eager: register the data, send where it is */
    if (sreq && sreq->dev.ch4.am.netmod_am.xen.rndv[0] == 1 && data_sz && dt_contig) {
        const void *buf = MPIR_get_contig_ptr(data, dt_true_lb);
        const uint64_t a = MPIDI_XEN_REG_ALIGN - 1;
        uint64_t id, cookie, rbase = (uintptr_t) buf & ~a;
        uint64_t rlen = (((uintptr_t) buf + data_sz + a) & ~a) - rbase;
        int rc = (uintptr_t) buf + data_sz + a < (uintptr_t) buf ? -EINVAL
            : xm_zc_regcache_get(MPIDI_XEN_global.regcache, (const void *) (uintptr_t) rbase,
                                 rlen, XM_ZC_REMOTE_READ, &id);

        /* only the receiver's domain may read it (and any other the same
         * buffer was sent to while it stayed registered) */
        if (rc == 0 && ((rc = xm_zc_bind(id, p->addr.domid)) != 0 ||
                        (rc = rndv_slot_take(sreq, &cookie)) != 0))
            xm_zc_regcache_put(MPIDI_XEN_global.regcache, id);
        if (rc == 0) {
            rv.rkey.id = id;
            rv.rkey.base = rbase;
            rv.rkey.len = rlen;
            rv.cookie = cookie;
            rv.addr = (uint64_t) (uintptr_t) buf;
            rv.size = data_sz;
            sreq->dev.ch4.am.netmod_am.xen.rndv[1] = id;
            sreq->dev.ch4.am.netmod_am.xen.rndv[2] = (uint64_t) handler_id;
            h.handler_id |= MPIDI_XEN_HDR_RNDV;
            /* the partial pages at the ends go with the descriptor */
            inl = MPIDI_XEN_wire_inline((const struct MPIDI_XEN_wire_rndv *) &rv, &head);
            h.data_sz = inl;
            extra = sizeof(rv) + inl;
            rndv = 1;
        } else {
            fprintf(stderr, "xen netmod: registering %zu bytes for zero-copy: %s; sending "
                    "through the ring\n", data_sz, strerror(-rc));
        }
        sreq->dev.ch4.am.netmod_am.xen.rndv[0] = rndv ? 2 : 0;
    }

    /* nothing queued and it fits one record (MPIDI_XEN_FRAG): straight
     * into the ring */
    if (!rndv && !p->head && xm_chan_state(p->ch) == XM_CH_CONNECTED &&
        sizeof(h) + (size_t) am_hdr_sz + data_sz <=
        MPL_MIN(MPIDI_XEN_global.max_msg, MPIDI_XEN_FRAG)) {
        size_t total = sizeof(h) + (size_t) am_hdr_sz + data_sz;
        int err;
        char *dst = xm_chan_reserve(p->ch, total, &err);

        if (dst) {
            memcpy(dst, &h, sizeof(h));
            if (am_hdr_sz)
                memcpy(dst + sizeof(h), am_hdr, (size_t) am_hdr_sz);
            if (data_sz) {
                mpi_errno = data_out(data, count, datatype,
                                     dt_contig ? (const char *) MPIR_get_contig_ptr(data, dt_true_lb)
                                               : NULL,
                                     0, dst + sizeof(h) + am_hdr_sz, data_sz);
                if (mpi_errno != MPI_SUCCESS)
                    return mpi_errno;   /* the reservation is dropped: nothing sent */
            }
            xm_chan_commit(p->ch, MPIDI_XEN_REC_AM, total);
            MPIDI_XEN_global.msgs_sent++;
            MPIDI_XEN_global.bytes_sent += total;
            if (sreq)
                MPIDIG_global.origin_cbs[handler_id] (sreq);
            return MPI_SUCCESS;
        }
        if (err != -EAGAIN)
            return chan_error(p, err);
    }

    op = MPL_malloc(sizeof(*op) + sizeof(h) + am_hdr_sz + extra, MPL_MEM_BUFFER);
    MPIR_ERR_CHKANDJUMP1(op == NULL, mpi_errno, MPI_ERR_OTHER, "**nomem", "**nomem %s",
                         "xen netmod send");
    op->next = NULL;
    op->sreq = rndv ? NULL : sreq;   /* a rendezvous completes on the acknowledgement */
    op->handler_id = handler_id;
    op->data = data;
    op->count = count;
    op->datatype = datatype;
    op->contig = (data_sz && dt_contig) ? (const char *) MPIR_get_contig_ptr(data, dt_true_lb)
                                        : NULL;
    op->hlen = sizeof(h) + (size_t) am_hdr_sz + extra;
    op->total = op->hlen + (rndv ? 0 : data_sz);
    op->off = 0;
    memcpy(op->hdr, &h, sizeof(h));
    if (am_hdr_sz)
        memcpy(op->hdr + sizeof(h), am_hdr, (size_t) am_hdr_sz);
    if (rndv) {
        char *d = op->hdr + sizeof(h) + am_hdr_sz;
        const char *buf = (const char *) (uintptr_t) rv.addr;

        memcpy(d, &rv, sizeof(rv));
        memcpy(d + sizeof(rv), buf, head);
        memcpy(d + sizeof(rv) + head, buf + data_sz - (inl - head), inl - head);
    }
    if (op->sreq)
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

/* What arrives on one channel a peer sends on.  A message of several
 * records whose first record holds the whole MPIDIG header is pipelined
 * the way posix shm does it: MPIDIG's callback (IS_ASYNC) gives the
 * request, each record's data is copied into its buffer as it arrives
 * (MPIDIG_recv_copy_seg).  Otherwise (a rendezvous descriptor or MPIDIG
 * header cut by a record boundary) the message is reassembled in buf. */
typedef struct MPIDI_XEN_rx {
    struct MPIDI_XEN_rx *next;
    xm_channel_t *ch;
    MPIDI_XEN_hdr_t h;
    int active;                  /* a message of several records in progress */
    char *buf;                   /* reassembly: MPIDIG header + data */
    MPIR_Request *rreq;          /* pipelined: MPIDIG's request (NULL: discarding) */
    int done;                    /* pipelined: MPIDIG has all of its data */
    size_t got, need;            /* message body bytes received, announced */
} MPIDI_XEN_rx_t;

static MPIDI_XEN_rx_t *rx_of(xm_channel_t * ch)
{
    MPIDI_XEN_rx_t *r = xm_chan_user(ch);

    if (r)
        return r;
    r = MPL_calloc(1, sizeof(*r), MPL_MEM_BUFFER);
    if (r) {
        r->ch = ch;
        r->next = MPIDI_XEN_global.rx;
        MPIDI_XEN_global.rx = r;
        xm_chan_set_user(ch, r);
    }
    return r;
}

void MPIDI_XEN_rx_free(void)
{
    for (MPIDI_XEN_rx_t * r = MPIDI_XEN_global.rx, *nx; r; r = nx) {
        nx = r->next;
        MPL_free(r->buf);
        MPL_free(r);
    }
    MPIDI_XEN_global.rx = NULL;
}

static void rx_end(MPIDI_XEN_rx_t * r)
{
    MPL_free(r->buf);
    r->buf = NULL;
    r->rreq = NULL;
    r->active = 0;
}

static void rx_fail_rreq(MPIR_Request * rreq)
{
    rreq->status.MPI_ERROR = MPIR_Err_create_code(MPI_SUCCESS, MPIR_ERR_RECOVERABLE, __func__,
                                                  __LINE__, MPI_ERR_OTHER, "**fail", 0);
    MPIDIG_REQUEST(rreq, req->target_cmpl_cb) (rreq);
}

/* The message in progress ends here: a pipelined receive completes with an
 * error instead of waiting for data that cannot come. */
static void rx_drop(MPIDI_XEN_rx_t * r, const char *why)
{
    MPIR_Request *rreq = r->active ? r->rreq : NULL;

    fprintf(stderr, "xen netmod: rank %d: domain %u endpoint %u %s: message dropped\n",
            MPIDI_XEN_global.rank, xm_chan_peer_dom(r->ch), xm_chan_peer_ep(r->ch), why);
    rx_end(r);
    if (rreq)
        rx_fail_rreq(rreq);
}

static void rndv_arrived(xm_channel_t * ch, const MPIDI_XEN_hdr_t * h, char *p);

static void deliver(xm_channel_t * ch, const MPIDI_XEN_hdr_t * h, char *p)
{
    uint32_t attr = 0;

    MPIDI_XEN_global.msgs_recv++;
    if (h->handler_id & MPIDI_XEN_HDR_RNDV) {
        MPIDI_XEN_global.bytes_recv += sizeof(*h) + h->am_hdr_sz + sizeof(MPIDI_XEN_rndv_t) +
            h->data_sz;
        rndv_arrived(ch, h, p);
        return;
    }
    MPIDI_XEN_global.bytes_recv += sizeof(*h) + h->am_hdr_sz + h->data_sz;
    MPIDIG_AM_ATTR_SET_VCIS(attr, h->src_vci, h->dst_vci);
    MPIDIG_global.target_msg_cbs[h->handler_id] (p, p + h->am_hdr_sz, (MPI_Aint) h->data_sz,
                                                 attr, NULL);
}

/* Data bytes of a pipelined message to MPIDIG's buffer; the message ends
 * with the last byte our header announced. */
static void pipe_data(MPIDI_XEN_rx_t * r, const char *data, size_t len)
{
    MPIR_Request *rreq = r->rreq;

    r->got += len;
    if (rreq && !r->done && len) {
        r->done = MPIDIG_recv_copy_seg((void *) data, (MPI_Aint) len, rreq);
        MPIDI_XEN_global.piped_bytes += len;
    }
    if (r->got < r->need)
        return;
    if (rreq && !r->done) {   /* by MPIDIG's count it never completes: fail it, don't hang */
        fprintf(stderr, "xen netmod: rank %d: domain %u sent less data than its MPIDIG header "
                "announced: the receive fails\n", MPIDI_XEN_global.rank,
                xm_chan_peer_dom(r->ch));
        rx_end(r);
        rx_fail_rreq(rreq);
        return;
    }
    rx_end(r);   /* the completion may receive again */
    if (rreq)
        MPIDIG_REQUEST(rreq, req->target_cmpl_cb) (rreq);
}

/* The first record of a message that does not fit one: pipelined when the
 * whole MPIDIG header is here, else reassembled. */
static void rx_begin(MPIDI_XEN_rx_t * r, const MPIDI_XEN_hdr_t * h, const char *p, size_t len,
                     size_t body)
{
    r->h = *h;
    r->need = body;
    r->active = 1;
    r->done = 0;
    if (!(h->handler_id & MPIDI_XEN_HDR_RNDV) && len >= h->am_hdr_sz) {
        MPIR_Request *rreq = NULL;
        uint32_t attr = MPIDIG_AM_ATTR__IS_ASYNC;

        MPIDI_XEN_global.msgs_recv++;
        MPIDI_XEN_global.bytes_recv += sizeof(*h) + h->am_hdr_sz + h->data_sz;
        MPIDIG_AM_ATTR_SET_VCIS(attr, h->src_vci, h->dst_vci);
        MPIDIG_global.target_msg_cbs[h->handler_id] ((void *) p, NULL, (MPI_Aint) h->data_sz,
                                                     attr, &rreq);
        r->got = h->am_hdr_sz;
        if (rreq)
            MPIDIG_recv_setup(rreq);
        else
            fprintf(stderr, "xen netmod: rank %d: no receive for a %" PRIu64 "-byte message "
                    "from domain %u (handler %u): its data dropped\n", MPIDI_XEN_global.rank,
                    h->data_sz, xm_chan_peer_dom(r->ch), h->handler_id);
        r->rreq = rreq;
        pipe_data(r, p + h->am_hdr_sz, len - h->am_hdr_sz);
        return;
    }
    r->buf = MPL_malloc(body, MPL_MEM_BUFFER);
    if (!r->buf) {
        fprintf(stderr, "xen netmod: out of memory for a %zu-byte message\n", body);
        r->active = 0;
        return;
    }
    r->got = len;
    memcpy(r->buf, p, len);
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
        if (r->active)
            rx_drop(r, "started a message before finishing the last");
        if (MPIDI_XEN_wire_first(data, len, MPIDI_AM_HANDLERS_MAX,
                                 (struct MPIDI_XEN_wire_hdr *) &h, &body) ||
            !MPIDIG_global.target_msg_cbs[h.handler_id & ~MPIDI_XEN_HDR_RNDV]) {
            rx_drop(r, "sent a malformed message header");
            return;
        }
        if (len - sizeof(h) == body) {
            deliver(ch, &h, (char *) data + sizeof(h));   /* the core's copy: valid until we return */
            return;
        }
        rx_begin(r, &h, (const char *) data + sizeof(h), len - sizeof(h), body);
        return;
    case MPIDI_XEN_REC_MORE:
        if (!r->active || len > r->need - r->got) {
            if (r->active)
                rx_drop(r, "sent more than its header announced");
            else
                fprintf(stderr, "xen netmod: domain %u sent a fragment of no message: dropped\n",
                        xm_chan_peer_dom(ch));
            return;
        }
        if (!r->buf) {
            pipe_data(r, data, len);
            return;
        }
        memcpy(r->buf + r->got, data, len);
        r->got += len;
        if (r->got == r->need) {
            char *buf = r->buf;

            r->buf = NULL;   /* the callback may receive again */
            r->active = 0;
            deliver(ch, &r->h, buf);
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

/* ---------------- zero-copy rendezvous ----------------
 *
 * The transport rendezvous of ch4:ofi's RDMA read: the sender registers a
 * large contiguous buffer (the core's registration cache: the same buffer
 * sent again keeps its id, and the peer its grants) and sends only the MPIDIG header and
 * where the data is; the receiver's MPIDIG matches it (IS_ASYNC | IS_RNDV)
 * and, once the receive buffer is known (now, or at match time through
 * MPIDI_XEN_rndv_recv_cb), the core copies the data from the sender's
 * registration (xm_xfer_zcopy: grant copy, or the ring where zero-copy
 * cannot serve), then an acknowledgement completes the send. */

typedef struct {
    uint64_t cookie;
} MPIDI_XEN_ack_t;

/* Sends waiting for their acknowledgement.  A cookie is a slot and its
 * generation: what a peer sends back is looked up, never dereferenced. */
static struct rndv_slot {
    MPIR_Request *sreq;
    uint32_t gen;
} *rndv_slots;
static uint32_t rndv_nslots;

static int rndv_slot_take(MPIR_Request * sreq, uint64_t * cookie)
{
    uint32_t i;

    for (i = 0; i < rndv_nslots && rndv_slots[i].sreq; i++)
        ;
    if (i == rndv_nslots) {
        uint32_t n = rndv_nslots ? 2 * rndv_nslots : 64;
        struct rndv_slot *s = MPL_realloc(rndv_slots, n * sizeof(*s), MPL_MEM_BUFFER);
        if (!s)
            return -ENOMEM;
        memset(s + rndv_nslots, 0, (n - rndv_nslots) * sizeof(*s));
        rndv_slots = s;
        rndv_nslots = n;
    }
    rndv_slots[i].sreq = sreq;
    *cookie = (uint64_t) ++rndv_slots[i].gen << 32 | i;
    return 0;
}

static MPIR_Request *rndv_slot_give(uint64_t cookie)
{
    uint32_t i = (uint32_t) cookie, gen = (uint32_t) (cookie >> 32);
    MPIR_Request *sreq;

    if (i >= rndv_nslots || !rndv_slots[i].sreq || rndv_slots[i].gen != gen)
        return NULL;
    sreq = rndv_slots[i].sreq;
    rndv_slots[i].sreq = NULL;
    return sreq;
}

static void rndv_arrived(xm_channel_t * ch, const MPIDI_XEN_hdr_t * h, char *p)
{
    MPIDI_XEN_peer_t *peer = peer_of_chan(ch);
    MPIDI_XEN_rndv_t rv;
    MPIR_Request *rreq = NULL;
    uint64_t *rv_of;
    uint32_t attr = MPIDIG_AM_ATTR__IS_ASYNC | MPIDIG_AM_ATTR__IS_RNDV;
    unsigned id = h->handler_id & ~MPIDI_XEN_HDR_RNDV;

    if (!peer || MPIDI_XEN_wire_rndv((const struct MPIDI_XEN_wire_hdr *) h, p + h->am_hdr_sz,
                                     (struct MPIDI_XEN_wire_rndv *) &rv)) {
        fprintf(stderr, "xen netmod: domain %u sent a malformed rendezvous: dropped\n",
                xm_chan_peer_dom(ch));
        return;
    }
    MPIDIG_AM_ATTR_SET_VCIS(attr, h->src_vci, h->dst_vci);
    MPIDIG_global.target_msg_cbs[id] (p, NULL, (MPI_Aint) rv.size, attr, &rreq);
    if (!rreq)
        return;
    MPIR_cc_inc(rreq->cc_ptr);   /* until the copy is done */
    rv_of = rreq->dev.ch4.am.netmod_am.xen.rndv;
    rv_of[0] = MPIDI_XEN_RNDV_TAG | (uint32_t) peer->rank;
    rv_of[1] = rv.rkey.id;
    rv_of[2] = rv.rkey.base;
    rv_of[3] = rv.rkey.len;
    rv_of[4] = rv.cookie;
    rv_of[5] = 0;
    rv_of[6] = (uint64_t) (uintptr_t) (p + h->am_hdr_sz + sizeof(rv));
    rv_of[7] = 0;
    rv_of[8] = rv.addr;
    rv_of[9] = rv.size;
    if (MPIDIG_recv_initialized(rreq)) {
        MPIDI_XEN_rndv_recv_cb(rreq);   /* the inline bytes are still in p */
        return;
    }
    /* MPIDIG calls MPIDI_XEN_rndv_recv_cb when a receive matches: keep
     * the inline bytes until then (none kept: the receive fails then) */
    rv_of[6] = 0;
    if (h->data_sz) {
        char *keep = MPL_malloc(h->data_sz, MPL_MEM_BUFFER);

        if (keep) {
            memcpy(keep, p + h->am_hdr_sz + sizeof(rv), h->data_sz);
            rv_of[6] = (uint64_t) (uintptr_t) keep;
            rv_of[7] = 1;
        }
    }
}

/* An unmatched rendezvous's inline bytes, when MPIDIG frees its request
 * unmatched (the job is being torn down). */
void MPIDI_XEN_request_free_rndv(MPIR_Request * req)
{
    uint64_t *rv = req->dev.ch4.am.netmod_am.xen.rndv;

    if (rv[7])
        MPL_free((void *) (uintptr_t) rv[6]);
    rv[0] = rv[6] = rv[7] = 0;
}

static void rndv_copied(void *arg, int status)
{
    MPIR_Request *rreq = arg;
    uint64_t *rv = rreq->dev.ch4.am.netmod_am.xen.rndv;
    int rank = (int) (uint32_t) rv[0];
    char *bounce = (char *) (uintptr_t) rv[5];
    MPIDI_XEN_ack_t ack = { rv[4] };

    if (status) {
        fprintf(stderr, "xen netmod: rank %d: copying %" PRIu64 " bytes from rank %d: %s\n",
                MPIDI_XEN_global.rank, rv[9], rank, strerror(-status));
        rreq->status.MPI_ERROR = MPI_ERR_OTHER;
    } else if (bounce) {
        MPIDIG_recv_copy(bounce, rreq);   /* unpacks, sets count and truncation */
    }
    MPL_free(bounce);
    rv[0] = rv[5] = 0;
    if (rv[2] == 1) {
        /* our registration of the destination (MPIDI_XEN_rndv_recv_cb) */
        int rc = xm_zc_regcache_put(MPIDI_XEN_global.regcache, rv[1]);

        if (rc)
            fprintf(stderr, "xen netmod: releasing the registration of a receive buffer: %s\n",
                    strerror(-rc));
        rv[2] = 0;
    }
    if (status == 0)
        MPIDI_XEN_global.zcopy_bytes += rv[6];
    /* to the sender's world rank: comm_world addresses it */
    MPIDI_XEN_send(rank, MPIR_Process.comm_world, MPIDI_XEN_global.ack_handler, &ack,
                   sizeof(ack), NULL, 0, MPI_BYTE, 0, 0, NULL);
    MPIDIG_REQUEST(rreq, req->target_cmpl_cb) (rreq);
    MPID_Request_complete(rreq);
}

/* The channel a rendezvous copy from p goes on: ours when it is up, else
 * the one p sent the rendezvous on.  When both ranks open their channels
 * to each other at once, ours may still be connecting when p's first
 * large message arrives on p's; the copy needs a connected channel (on a
 * connecting one xm_xfer_zcopy says -EAGAIN), and either direction of a
 * channel carries it. */
static xm_channel_t *rndv_chan(MPIDI_XEN_peer_t * p)
{
    if (xm_chan_state(p->ch) == XM_CH_CONNECTED)
        return p->ch;
    for (MPIDI_XEN_rx_t * r = MPIDI_XEN_global.rx; r; r = r->next)
        if (xm_chan_state(r->ch) == XM_CH_CONNECTED && peer_of_chan(r->ch) == p)
            return r->ch;
    return p->ch;
}

int MPIDI_XEN_rndv_recv_cb(MPIR_Request * rreq)
{
    uint64_t *rv = rreq->dev.ch4.am.netmod_am.xen.rndv;
    MPIDI_XEN_peer_t *p;
    xm_rkey_t rk, lk, *lkp;
    struct MPIDI_XEN_wire_rndv w;
    int is_contig = 0, is_gpu = 0, rc, mpi_errno;
    void *dst = NULL;
    const char *in;
    MPI_Aint dst_sz = 0, in_sz;
    uint64_t head, inl, mid;
    size_t n;

    MPIR_Assert((rv[0] & ~(uint64_t) 0xffffffffu) == MPIDI_XEN_RNDV_TAG);
    p = &MPIDI_XEN_global.peers[(uint32_t) rv[0]];
    mpi_errno = connect_peer(p);
    if (mpi_errno != MPI_SUCCESS)
        return mpi_errno;
    rk.id = rv[1];
    rk.base = rv[2];
    rk.len = rv[3];
    rv[2] = 0;   /* from here on: whether rv[1] is our registration (below) */
    w.base = rk.base;
    w.len = rk.len;
    w.addr = rv[8];
    w.size = rv[9];
    in_sz = (MPI_Aint) w.size;
    inl = MPIDI_XEN_wire_inline(&w, &head);
    mid = w.size - inl;
    MPIDIG_get_recv_data(&is_contig, &is_gpu, &dst, &dst_sz, rreq);
    if (is_contig && !is_gpu) {
        n = (size_t) MPL_MIN(dst_sz, in_sz);
        if (in_sz > dst_sz)
            rreq->status.MPI_ERROR = MPIDIG_ERR_TRUNCATE(dst_sz, in_sz);
        MPIR_STATUS_SET_COUNT(rreq->status, n);
    } else {
        /* into a bounce buffer, then MPIDIG unpacks it */
        dst = MPL_malloc(w.size, MPL_MEM_BUFFER);
        MPIR_ERR_CHKANDJUMP1(!dst, mpi_errno, MPI_ERR_OTHER, "**nomem", "**nomem %s",
                             "xen netmod rendezvous buffer");
        rv[5] = (uint64_t) (uintptr_t) dst;
        n = w.size;
    }
    /* the inline bytes (the partial pages at the ends), as far as they fit */
    in = (const char *) (uintptr_t) rv[6];
    if (inl && !in) {   /* no memory to keep them when the message came */
        rndv_copied(rreq, -ENOMEM);
        return MPI_SUCCESS;
    }
    if (inl) {
        memcpy(dst, in, MPL_MIN(head, n));
        if (n > head + mid)
            memcpy((char *) dst + head + mid, in + head, n - head - mid);
    }
    MPIDI_XEN_global.rndv_msgs++;
    MPIDI_XEN_global.inline_bytes += inl;
    if (rv[7])
        MPL_free((void *) (uintptr_t) rv[6]);
    rv[7] = 0;
    /* then the whole pages between them, copied from the registration */
    rv[6] = n > head ? MPL_MIN(mid, n - head) : 0;
    if (rv[6] == 0) {
        rndv_copied(rreq, 0);
        return MPI_SUCCESS;
    }
    /* A large copy into the user's buffer where the two buffers share
     * their offset in a page: that buffer registered (and bound to the
     * sender's domain), so the sender can push half of the pages into it
     * while we copy the rest (xm_xfer_zcopy_reg). */
    lkp = NULL;
    if (!rv[5] && rv[6] >= xm_xfer_push_min(MPIDI_XEN_global.xfer) &&
        !((((uintptr_t) dst + head) ^ (w.addr + head)) & (XM_PAGE_SIZE - 1)) &&
        xm_zc_regcache_get(MPIDI_XEN_global.regcache, (char *) dst + head, rv[6],
                           XM_ZC_REMOTE_WRITE, &lk.id) == 0) {
        if (xm_zc_bind(lk.id, p->addr.domid) == 0) {
            lk.base = (uint64_t) (uintptr_t) dst + head;
            lk.len = rv[6];
            lkp = &lk;
            rv[1] = lk.id;
            rv[2] = 1;
        } else {
            xm_zc_regcache_put(MPIDI_XEN_global.regcache, lk.id);
        }
    }
    rc = xm_xfer_zcopy_reg(MPIDI_XEN_global.xfer, rndv_chan(p), &rk, w.addr + head,
                           (char *) dst + head, lkp, rv[6], XM_ZC_GET, rndv_copied, rreq, rreq);
    if (rc == 0)
        rndv_copied(rreq, 0);
    else if (rc != -EINPROGRESS)
        rndv_copied(rreq, rc);
  fn_fail:
    return mpi_errno;
}

/* the sender's side: the receiver has the data */
static int rndv_ack_target_cb(void *am_hdr, void *data, MPI_Aint data_sz, uint32_t attr,
                              MPIR_Request ** req)
{
    MPIDI_XEN_ack_t ack;
    MPIR_Request *sreq;
    uint64_t *rv;
    int rc;

    if (!am_hdr) {
        fprintf(stderr, "xen netmod: a rendezvous acknowledgement without its header: dropped\n");
        return MPI_SUCCESS;
    }
    memcpy(&ack, am_hdr, sizeof(ack));
    sreq = rndv_slot_give(ack.cookie);
    if (!sreq) {
        fprintf(stderr, "xen netmod: rank %d: acknowledgement of no rendezvous of ours "
                "(cookie %#" PRIx64 "): dropped\n", MPIDI_XEN_global.rank, ack.cookie);
        return MPI_SUCCESS;
    }
    rv = sreq->dev.ch4.am.netmod_am.xen.rndv;
    rc = xm_zc_regcache_put(MPIDI_XEN_global.regcache, rv[1]);
    if (rc)
        fprintf(stderr, "xen netmod: releasing the registration of a sent buffer: %s\n",
                strerror(-rc));
    rv[0] = 0;
    return MPIDIG_global.origin_cbs[(int) rv[2]] (sreq);
}

int MPIDI_XEN_rndv_init(void)
{
    int id = MPIDIG_am_reg_cb_dynamic(NULL, rndv_ack_target_cb);

    if (id < 0)
        return MPI_ERR_OTHER;
    MPIDI_XEN_global.ack_handler = id;
    return MPI_SUCCESS;
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
        if (p->ch && !xm_chan_tx_reached(p->ch, xm_chan_op_mark(p->ch)))
            return 0;
    }
    for (MPIDI_XEN_rx_t * r = MPIDI_XEN_global.rx; r; r = r->next)
        if (!xm_chan_tx_reached(r->ch, xm_chan_op_mark(r->ch)))
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
