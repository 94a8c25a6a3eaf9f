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

/* New sends must not overtake queued requests; a request being dispatched
 * from that queue must be allowed to send (the dispatcher has already taken
 * it off the queue, so "not empty" would refer to the ones behind it). */
#define UCT_XEN_EP_MUST_QUEUE(_ep) \
    (!ucs_queue_is_empty(&(_ep)->pending_q) && !(_ep)->in_dispatch)

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
    const uct_xen_dev_addr_t *dev_addr;
    uint32_t peer_ep;
    int rc;

    UCS_CLASS_CALL_SUPER_INIT(uct_base_ep_t, &iface->super);

    UCT_EP_PARAMS_CHECK_DEV_IFACE_ADDRS(params);
    dev_addr = (const uct_xen_dev_addr_t*)params->dev_addr;
    peer_ep  = *(const uct_xen_iface_addr_t*)params->iface_addr;

    if (dev_addr->host_hash != iface->dev_addr.host_hash) {
        ucs_error("xen: domain %u endpoint %u is on another host", dev_addr->domid,
                  peer_ep);
        return UCS_ERR_UNREACHABLE;
    }
    rc = xm_endpoint_connect(iface->xep, dev_addr->domid, peer_ep, &self->ch);
    if (rc < 0) {
        /* the core has logged the cause */
        return UCS_ERR_UNREACHABLE;
    }
    xm_chan_set_user(self->ch, iface);   /* marks channels we initiated */
    ucs_queue_head_init(&self->pending_q);
    self->in_dispatch = 0;
    self->err_reported = 0;
    ucs_list_add_tail(&iface->ep_list, &self->list);
    ucs_debug("xen: ep %p to domain %u endpoint %u (%s)", self, dev_addr->domid,
              peer_ep, (xm_chan_state(self->ch) == XM_CH_CONNECTED) ?
              "connected" : "connecting");
    return UCS_OK;
}

static UCS_CLASS_CLEANUP_FUNC(uct_xen_ep_t)
{
    ucs_assertv(ucs_queue_is_empty(&self->pending_q),
                "xen: ep %p destroyed with pending requests", self);
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
    uct_am_short_fill_data(p, header, payload, length);
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
         * channel that needs our progress to connect */
        if (uct_xen_ep_can_send(ep, iface)) {
            return UCS_ERR_BUSY;
        }
        ++iface->pending_eps;
    }
    uct_pending_req_queue_push(&ep->pending_q, req);
    UCT_TL_EP_STAT_PEND(&ep->super);
    return UCS_OK;
}

void uct_xen_ep_pending_purge(uct_ep_h tl_ep, uct_pending_purge_callback_t cb,
                              void *arg)
{
    uct_xen_ep_t *ep = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_pending_req_priv_queue_t *priv;

    uct_pending_queue_purge(priv, &ep->pending_q, 1, cb, arg);
}

int uct_xen_ep_arm_pending(uct_xen_ep_t *ep, uct_xen_iface_t *iface)
{
    void *p;
    int err;

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
     * notification, but a later send may have cleared that request.  Ask
     * again: a reservation that fails with -EAGAIN sets the ring's tx_wait
     * and re-checks the peer's consumer index after it; one that succeeds
     * (room appeared meanwhile) is simply not committed. */
    p = xm_chan_reserve(ep->ch, iface->config.seg_size, &err);
    return (p == NULL) && (err == -EAGAIN);
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

ucs_status_t uct_xen_ep_flush(uct_ep_h tl_ep, unsigned flags,
                              uct_completion_t *comp)
{
    uct_xen_ep_t *ep = ucs_derived_of(tl_ep, uct_xen_ep_t);

    /* Sends copy into the ring and complete at once; only requests still
     * waiting for a connection or for ring space are outstanding. */
    if (!ucs_queue_is_empty(&ep->pending_q)) {
        UCT_TL_EP_STAT_FLUSH_WAIT(&ep->super);
        return UCS_ERR_NO_RESOURCE;
    }
    UCT_TL_EP_STAT_FLUSH(&ep->super);
    return UCS_OK;
}
