/*
 * xen_ep.c - the send side: one UCT ep sends on one core channel.
 *
 * Channels belong to the iface's core endpoint, not to the ep: connecting
 * twice to the same peer endpoint returns the same channel (one handshake
 * per endpoint pair), so eps that come and go during UCP wireup reuse it.
 * The endpoint closes every channel when the iface closes.
 */
#include "xen_iface.h"

#include <uct/base/uct_iov.inl>
#include <ucs/debug/log.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

ucs_status_t uct_xen_chan_status(xm_channel_t *ch)
{
    switch (xm_chan_state(ch)) {
    case XM_CH_CONNECTED:
        return UCS_OK;
    case XM_CH_CONNECTING:
        return UCS_ERR_NO_RESOURCE;
    case XM_CH_PEER_GONE:
        return UCS_ERR_CONNECTION_RESET;
    default:
        return UCS_ERR_ENDPOINT_TIMEOUT;
    }
}

static UCS_F_ALWAYS_INLINE ucs_status_t
uct_xen_ep_send_error(uct_xen_ep_t *ep, int err)
{
    if (ucs_likely(err == -EAGAIN)) {
        return UCS_ERR_NO_RESOURCE;   /* connecting, or the ring is full */
    }
    if (err == -EPIPE) {
        ucs_debug("xen: ep %p: channel to %u:%u is down", ep,
                  xm_chan_peer_dom(ep->ch), xm_chan_peer_ep(ep->ch));
        return uct_xen_chan_status(ep->ch);
    }
    return (err == -EMSGSIZE) ? UCS_ERR_INVALID_PARAM : UCS_ERR_IO_ERROR;
}

static UCS_CLASS_INIT_FUNC(uct_xen_ep_t, const uct_ep_params_t *params)
{
    uct_xen_iface_t *iface = ucs_derived_of(params->iface, uct_xen_iface_t);
    xm_ep_addr_t peer;
    int rc;

    UCS_CLASS_CALL_SUPER_INIT(uct_base_ep_t, &iface->super);

    UCT_EP_PARAMS_CHECK_DEV_IFACE_ADDRS(params);
    peer = uct_xen_peer_addr(params->dev_addr, params->iface_addr);
    rc   = xm_endpoint_connect_addr(iface->xep, &peer, &self->ch);
    if (rc < 0) {
        /* the core has logged the cause (another host, no resources) */
        return UCS_ERR_UNREACHABLE;
    }
    xm_chan_set_user(self->ch, iface);   /* marks channels we initiated */
    ucs_queue_head_init(&self->pending_q);
    self->in_dispatch = 0;
    self->err_reported = 0;
    ucs_queue_head_init(&self->flush_q);
    ucs_list_add_tail(&iface->ep_list, &self->list);
    ucs_debug("xen: ep %p to domain %u endpoint %u (%s)", self, peer.domid,
              peer.ep, (xm_chan_state(self->ch) == XM_CH_CONNECTED) ?
              "connected" : "connecting");
    return UCS_OK;
}

static UCS_CLASS_CLEANUP_FUNC(uct_xen_ep_t)
{
    uct_xen_iface_t *iface = ucs_derived_of(self->super.super.iface,
                                            uct_xen_iface_t);

    ucs_assertv(ucs_queue_is_empty(&self->pending_q),
                "xen: ep %p destroyed with pending requests", self);
    /* UCT: destroying an ep cancels its operations without completions */
    xm_xfer_cancel(iface->xfer, self);
    uct_xen_ep_flush_drop(self);
    ucs_list_del(&self->list);
}

UCS_CLASS_DEFINE(uct_xen_ep_t, uct_base_ep_t);
UCS_CLASS_DEFINE_NEW_FUNC(uct_xen_ep_t, uct_ep_t, const uct_ep_params_t*);
UCS_CLASS_DEFINE_DELETE_FUNC(uct_xen_ep_t, uct_ep_t);

static UCS_F_ALWAYS_INLINE void *
uct_xen_ep_reserve(uct_xen_ep_t *ep, size_t max, ucs_status_t *status_p)
{
    void *p;
    int err;

    if (ucs_unlikely(UCT_XEN_EP_MUST_QUEUE(ep))) {
        *status_p = UCS_ERR_NO_RESOURCE;
        return NULL;
    }
    p = xm_chan_reserve(ep->ch, max, &err);
    if (ucs_unlikely(p == NULL)) {
        *status_p = uct_xen_ep_send_error(ep, err);
    }
    return p;
}

ucs_status_t uct_xen_ep_am_short(uct_ep_h tl_ep, uint8_t id, uint64_t header,
                                 const void *payload, unsigned length)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    size_t total           = length + UCT_XEN_AM_HDR;
    ucs_status_t status;
    void *p;

    UCT_CHECK_AM_ID(id);
    UCT_CHECK_LENGTH(total, 0, iface->config.max_short, "am_short");

    p = uct_xen_ep_reserve(ep, total, &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    if (length != 0) {
        uct_am_short_fill_data(p, header, payload, length);
    } else {
        /* UCP sends an empty payload (an MPI message of 0 bytes) as NULL:
         * the helper's memcpy from it, even of 0 bytes, is undefined */
        memcpy(p, &header, sizeof(header));
    }
    xm_chan_commit(ep->ch, id, total);
    uct_iface_trace_am(&iface->super, UCT_AM_TRACE_TYPE_SEND, id, p, total,
                       "TX: AM_SHORT");
    UCT_TL_EP_STAT_OP(&ep->super, AM, SHORT, total);
    return UCS_OK;
}

ucs_status_t uct_xen_ep_am_short_iov(uct_ep_h tl_ep, uint8_t id,
                                     const uct_iov_t *iov, size_t iovcnt)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    size_t total           = uct_iov_total_length(iov, iovcnt);
    ucs_iov_iter_t iov_iter;
    ucs_status_t status;
    void *p;

    UCT_CHECK_AM_ID(id);
    UCT_CHECK_LENGTH(total, 0, iface->config.max_short, "am_short_iov");

    p = uct_xen_ep_reserve(ep, total, &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    ucs_iov_iter_init(&iov_iter);
    uct_iov_to_buffer(iov, iovcnt, &iov_iter, p, SIZE_MAX);
    xm_chan_commit(ep->ch, id, total);
    uct_iface_trace_am(&iface->super, UCT_AM_TRACE_TYPE_SEND, id, p, total,
                       "TX: AM_SHORT_IOV");
    UCT_TL_EP_STAT_OP(&ep->super, AM, SHORT, total);
    return UCS_OK;
}

ssize_t uct_xen_ep_am_bcopy(uct_ep_h tl_ep, uint8_t id,
                            uct_pack_callback_t pack_cb, void *arg,
                            unsigned flags)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    ucs_status_t status;
    size_t length;
    void *p;

    UCT_CHECK_AM_ID(id);

    /* reserve a whole segment: the packed length is known only afterwards */
    p = uct_xen_ep_reserve(ep, iface->config.seg_size, &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    length = pack_cb(p, arg);
    ucs_assertv(length <= iface->config.seg_size, "am_bcopy packed %zu > %zu",
                length, iface->config.seg_size);
    xm_chan_commit(ep->ch, id, length);
    uct_iface_trace_am(&iface->super, UCT_AM_TRACE_TYPE_SEND, id, p, length,
                       "TX: AM_BCOPY");
    UCT_TL_EP_STAT_OP(&ep->super, AM, BCOPY, length);
    return length;
}

/* Whether any send up to seg_size would succeed now (the core accounts for
 * the padding a record that does not fit at the ring's tail needs). */
static int uct_xen_ep_can_send(uct_xen_ep_t *ep, uct_xen_iface_t *iface)
{
    return xm_chan_space(ep->ch) >= iface->config.seg_size;
}

ucs_status_t uct_xen_ep_pending_add(uct_ep_h tl_ep, uct_pending_req_t *req,
                                    unsigned flags)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);

    if (ucs_queue_is_empty(&ep->pending_q)) {
        /* BUSY only when the retry is sure to succeed: the caller retries
         * without progressing us, so a false BUSY would spin forever on a
         * channel that needs our progress to connect.  A connecting
         * channel's ring takes sends, but RMA and zero-copy wait for the
         * handshake: only a connected channel with room is sure. */
        if ((xm_chan_state(ep->ch) == XM_CH_CONNECTED) &&
            uct_xen_ep_can_send(ep, iface)) {
            return UCS_ERR_BUSY;
        }
        ++iface->pending_eps;
    }
    uct_pending_req_queue_push(&ep->pending_q, req);
    UCT_TL_EP_STAT_PEND(&ep->super);
    return UCS_OK;
}

static int uct_xen_ep_is_iface_flush(uct_pending_req_priv_queue_t *priv)
{
    return ucs_container_of(priv, uct_pending_req_t, priv)->func ==
           uct_xen_iface_flush_pending;
}

static void uct_xen_ep_cancel_iface_flush(uct_pending_req_t *req, void *arg)
{
    uct_xen_iface_flush_cancel(req);
}

void uct_xen_ep_pending_purge(uct_ep_h tl_ep, uct_pending_purge_callback_t cb,
                              void *arg)
{
    uct_xen_ep_t *ep = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_pending_req_priv_queue_t *priv;

    /* iface flushes of ours are not the caller's to see: they fail here */
    uct_pending_queue_purge(priv, &ep->pending_q,
                            uct_xen_ep_is_iface_flush(priv),
                            uct_xen_ep_cancel_iface_flush, NULL);
    uct_pending_queue_purge(priv, &ep->pending_q, 1, cb, arg);
}

int uct_xen_ep_arm_pending(uct_xen_ep_t *ep, uct_xen_iface_t *iface)
{
    switch (xm_chan_state(ep->ch)) {
    case XM_CH_CONNECTING:
        return 1;   /* the store watch wakes us when the answer comes */
    case XM_CH_CONNECTED:
        break;
    default:
        /* progress reports the failure; once reported, the requests have
         * seen the error and nothing here will change */
        return ep->err_reported;
    }
    if (uct_xen_ep_can_send(ep, iface)) {
        return 0;
    }
    /* The send that queued the request asked the peer for a space
     * notification, but a later send may have cleared that request: ask
     * again (0 when room appeared meanwhile) */
    return xm_chan_want_space(ep->ch, iface->config.seg_size);
}

unsigned uct_xen_ep_dispatch_pending(uct_xen_ep_t *ep, uct_xen_iface_t *iface)
{
    uct_pending_req_t *req;
    ucs_status_t status;
    unsigned count = 0;

    if (xm_chan_state(ep->ch) == XM_CH_CONNECTING) {
        return 0;
    }
    /* Connected: run requests while the ring has room for any of them (a
     * request that re-queues itself would otherwise spin here on a full
     * ring).  Down: they see the error and complete with it. */
    ep->in_dispatch = 1;
    while (!ucs_queue_is_empty(&ep->pending_q)) {
        if ((xm_chan_state(ep->ch) == XM_CH_CONNECTED) &&
            !uct_xen_ep_can_send(ep, iface)) {
            break;
        }
        req = ucs_container_of(ucs_queue_pull_non_empty(&ep->pending_q),
                               uct_pending_req_t, priv);
        status = req->func(req);
        ++count;
        if (status == UCS_OK) {
            continue;   /* done, or queued itself again through pending_add */
        }
        /* not done: back to the head, its place in the order */
        ucs_queue_push_head(&ep->pending_q,
                            &((uct_pending_req_priv_queue_t*)req->priv)->queue_elem);
        if (UCS_STATUS_IS_ERR(status)) {
            break;
        }
    }
    ep->in_dispatch = 0;
    /* the caller counts this as work done: UCP sleeps after a progress call
     * that returns 0, even if a request we ran completed a user operation */
    return count;
}

/* ---------------- RMA and zero-copy: the core's (xm_xfer.h) ----------------
 *
 * A put is one record the owner applies in its progress; like an AM, it is
 * complete once copied into the ring.  A get, and a zero-copy operation,
 * complete from progress through the core's callback, which is the UCT
 * completion itself.
 */

/* A flush that waits until everything started on the channel before it
 * completed (the core's mark). */
typedef struct uct_xen_flush_wait {
    ucs_queue_elem_t queue;
    xm_xfer_mark_t   mark;
    uct_completion_t *comp;
} uct_xen_flush_wait_t;

static uct_xen_iface_t *uct_xen_ep_iface(uct_xen_ep_t *ep)
{
    return ucs_derived_of(ep->super.super.iface, uct_xen_iface_t);
}

static ucs_status_t uct_xen_xfer_status(int rc)
{
    switch (rc) {
    case 0:         return UCS_OK;
    case -EAGAIN:   return UCS_ERR_NO_RESOURCE;
    case -EPIPE:    return UCS_ERR_CONNECTION_RESET;
    case -EACCES:   return UCS_ERR_INVALID_ADDR;   /* refused by the owner */
    case -ENOMEM:   return UCS_ERR_NO_MEMORY;
    case -EMSGSIZE:
    case -EINVAL:   return UCS_ERR_INVALID_PARAM;
    default:        return UCS_ERR_IO_ERROR;
    }
}

/* A transfer of nothing: complete at once while the channel is up (or
 * coming up), else the channel's error. */
static ucs_status_t uct_xen_ep_empty_op(uct_xen_ep_t *ep)
{
    return (xm_chan_state(ep->ch) == XM_CH_CONNECTING) ? UCS_OK :
           uct_xen_chan_status(ep->ch);
}

/* the core completed a get or a zero-copy operation */
static void uct_xen_xfer_done(void *arg, int rc)
{
    uct_invoke_completion(arg, uct_xen_xfer_status(rc));
}

static void *uct_xen_ep_put_reserve(uct_xen_ep_t *ep, size_t max,
                                    ucs_status_t *status_p)
{
    void *p;
    int err;

    if (ucs_unlikely(UCT_XEN_EP_MUST_QUEUE(ep))) {
        *status_p = UCS_ERR_NO_RESOURCE;
        return NULL;
    }
    p = xm_xfer_put_reserve(uct_xen_ep_iface(ep)->xfer, ep->ch, max, &err);
    if (ucs_unlikely(p == NULL)) {
        *status_p = uct_xen_ep_send_error(ep, err);
    }
    return p;
}

ucs_status_t uct_xen_ep_put_short(uct_ep_h tl_ep, const void *buffer,
                                  unsigned length, uint64_t remote_addr,
                                  uct_rkey_t rkey)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    ucs_status_t status;
    void *p;

    UCT_CHECK_LENGTH(length, 0, ucs_min(iface->config.max_short,
                                        iface->config.rma_max), "put_short");
    if (length == 0) {
        /* nothing to move, and the rkey of an empty buffer may be
         * UCT_INVALID_RKEY: only the channel's state is news */
        return uct_xen_ep_empty_op(ep);
    }
    p = uct_xen_ep_put_reserve(ep, length, &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    memcpy(p, buffer, length);
    xm_xfer_put_commit(iface->xfer, ep->ch, p, (const xm_rkey_t*)rkey,
                       remote_addr, length);
    ucs_trace_data("xen: ep %p PUT_SHORT %u bytes to 0x%" PRIx64, ep, length,
                   remote_addr);
    UCT_TL_EP_STAT_OP(&ep->super, PUT, SHORT, length);
    return UCS_OK;
}

ssize_t uct_xen_ep_put_bcopy(uct_ep_h tl_ep, uct_pack_callback_t pack_cb,
                             void *arg, uint64_t remote_addr, uct_rkey_t rkey)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    ucs_status_t status;
    size_t length;
    void *p;

    p = uct_xen_ep_put_reserve(ep, iface->config.rma_max, &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    length = pack_cb(p, arg);
    ucs_assertv(length <= iface->config.rma_max, "put_bcopy packed %zu > %zu",
                length, iface->config.rma_max);
    if (length == 0) {
        return 0;   /* the reservation is dropped: nothing sent */
    }
    xm_xfer_put_commit(iface->xfer, ep->ch, p, (const xm_rkey_t*)rkey,
                       remote_addr, length);
    ucs_trace_data("xen: ep %p PUT_BCOPY %zu bytes to 0x%" PRIx64, ep, length,
                   remote_addr);
    UCT_TL_EP_STAT_OP(&ep->super, PUT, BCOPY, length);
    return length;
}

ucs_status_t uct_xen_ep_get_bcopy(uct_ep_h tl_ep, uct_unpack_callback_t unpack_cb,
                                  void *arg, size_t length, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    int rc;

    UCT_CHECK_LENGTH(length, 0, iface->config.rma_max, "get_bcopy");
    if (ucs_unlikely(UCT_XEN_EP_MUST_QUEUE(ep))) {
        return UCS_ERR_NO_RESOURCE;
    }
    if (length == 0) {
        return uct_xen_ep_empty_op(ep);   /* done now: no completion */
    }
    rc = xm_xfer_get(iface->xfer, ep->ch, (const xm_rkey_t*)rkey, remote_addr,
                     length, unpack_cb, arg, (comp != NULL) ? uct_xen_xfer_done : NULL,
                     comp, ep);
    if (rc != -EINPROGRESS) {
        return uct_xen_ep_send_error(ep, rc);
    }
    ucs_trace_data("xen: ep %p GET_BCOPY %zu bytes from 0x%" PRIx64, ep, length,
                   remote_addr);
    UCT_TL_EP_STAT_OP(&ep->super, GET, BCOPY, length);
    return UCS_INPROGRESS;
}

static ucs_status_t
uct_xen_ep_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov, size_t iovcnt,
                 uint64_t remote_addr, uct_rkey_t rkey, uct_completion_t *comp,
                 int dir)
{
    uct_xen_ep_t *ep       = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    size_t length          = uct_iov_total_length(iov, iovcnt);
    xm_rkey_t lk;
    int rc;

    UCT_CHECK_IOV_SIZE(iovcnt, 1ul, (dir == XM_ZC_GET) ? "get_zcopy" :
                       "put_zcopy");
    if (UCT_XEN_EP_MUST_QUEUE(ep)) {
        return UCS_ERR_NO_RESOURCE;
    }
    /* a get into registered memory: the owner may push part of it */
    if ((length > 0) && (iov[0].memh != UCT_MEM_HANDLE_NULL)) {
        uct_xen_memh_key(iov[0].memh, &lk);
    }
    rc = xm_xfer_zcopy_reg(iface->xfer, ep->ch, (const xm_rkey_t*)rkey, remote_addr,
                           (length > 0) ? iov[0].buffer : NULL,
                           ((length > 0) && (iov[0].memh != UCT_MEM_HANDLE_NULL)) ?
                           &lk : NULL, length, dir,
                           (comp != NULL) ? uct_xen_xfer_done : NULL, comp, ep);
    if (rc == 0) {
        return UCS_OK;   /* done now (cache hits): no completion */
    }
    if (rc != -EINPROGRESS) {
        return (rc == -EPIPE) ? uct_xen_chan_status(ep->ch) :
               uct_xen_xfer_status(rc);
    }
    if (dir == XM_ZC_GET) {
        UCT_TL_EP_STAT_OP(&ep->super, GET, ZCOPY, length);
    } else {
        UCT_TL_EP_STAT_OP(&ep->super, PUT, ZCOPY, length);
    }
    return UCS_INPROGRESS;
}

ucs_status_t uct_xen_ep_get_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov,
                                  size_t iovcnt, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp)
{
    return uct_xen_ep_zcopy(tl_ep, iov, iovcnt, remote_addr, rkey, comp,
                            XM_ZC_GET);
}

ucs_status_t uct_xen_ep_put_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov,
                                  size_t iovcnt, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp)
{
    return uct_xen_ep_zcopy(tl_ep, iov, iovcnt, remote_addr, rkey, comp,
                            XM_ZC_PUT);
}

/* ---------------- flush ---------------- */

static int uct_xen_flush_wait_done(uct_xen_ep_t *ep, uct_xen_flush_wait_t *fw)
{
    return xm_xfer_reached(uct_xen_ep_iface(ep)->xfer, ep->ch, fw->mark);
}

int uct_xen_ep_flush_ready(uct_xen_ep_t *ep)
{
    return !ucs_queue_is_empty(&ep->flush_q) &&
           uct_xen_flush_wait_done(ep, ucs_queue_head_elem_non_empty(&ep->flush_q,
                                                                   uct_xen_flush_wait_t,
                                                                   queue));
}

unsigned uct_xen_ep_flush_progress(uct_xen_ep_t *ep, ucs_status_t status)
{
    uct_xen_flush_wait_t *fw;
    unsigned n = 0;

    while (!ucs_queue_is_empty(&ep->flush_q)) {
        fw = ucs_queue_head_elem_non_empty(&ep->flush_q, uct_xen_flush_wait_t,
                                           queue);
        if ((status == UCS_OK) && !uct_xen_flush_wait_done(ep, fw)) {
            break;
        }
        ucs_queue_pull_non_empty(&ep->flush_q);
        --uct_xen_ep_iface(ep)->flush_waits;
        uct_invoke_completion(fw->comp, status);
        ucs_free(fw);
        ++n;
    }
    return n;
}

void uct_xen_ep_flush_drop(uct_xen_ep_t *ep)
{
    uct_xen_flush_wait_t *fw;

    while (!ucs_queue_is_empty(&ep->flush_q)) {
        fw = ucs_queue_pull_elem_non_empty(&ep->flush_q, uct_xen_flush_wait_t,
                                           queue);
        --uct_xen_ep_iface(ep)->flush_waits;
        ucs_free(fw);
    }
}

int uct_xen_ep_outstanding(uct_xen_ep_t *ep)
{
    return !ucs_queue_is_empty(&ep->flush_q) ||
           !xm_xfer_idle(uct_xen_ep_iface(ep)->xfer, ep->ch);
}

ucs_status_t uct_xen_ep_flush(uct_ep_h tl_ep, unsigned flags,
                              uct_completion_t *comp)
{
    uct_xen_ep_t *ep = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_flush_wait_t *fw;

    /* Requests still waiting for a connection or for ring space are
     * outstanding.  A flush dispatched from the pending queue was taken off
     * it: the requests behind it came later and are not its business
     * (answering NO_RESOURCE there would requeue it ahead of them forever). */
    if (UCT_XEN_EP_MUST_QUEUE(ep)) {
        UCT_TL_EP_STAT_FLUSH_WAIT(&ep->super);
        return UCS_ERR_NO_RESOURCE;
    }
    /* Remote completion: puts and AMs once the peer processed them (it
     * releases ring space only after that), gets and zero-copy operations
     * once complete. */
    if (uct_xen_ep_outstanding(ep)) {
        if (comp != NULL) {
            fw = ucs_malloc(sizeof(*fw), "xen_flush_wait");
            if (fw == NULL) {
                ucs_error("xen: failed to allocate a flush request");
                return UCS_ERR_NO_MEMORY;
            }
            fw->mark = xm_xfer_mark(uct_xen_ep_iface(ep)->xfer, ep->ch);
            fw->comp = comp;
            ucs_queue_push(&ep->flush_q, &fw->queue);
            ++uct_xen_ep_iface(ep)->flush_waits;
        }
        UCT_TL_EP_STAT_FLUSH_WAIT(&ep->super);
        return UCS_INPROGRESS;
    }
    UCT_TL_EP_STAT_FLUSH(&ep->super);
    return UCS_OK;
}
