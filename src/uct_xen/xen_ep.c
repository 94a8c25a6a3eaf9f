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
    self->rops_issued  = 0;
    self->rops_done    = 0;
    ucs_queue_head_init(&self->flush_q);
    ucs_list_head_init(&self->zops);
    ucs_list_add_tail(&iface->ep_list, &self->list);
    ucs_debug("xen: ep %p to domain %u endpoint %u (%s)", self, dev_addr->domid,
              peer_ep, (xm_chan_state(self->ch) == XM_CH_CONNECTED) ?
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
    uct_xen_ep_fail_gets(self, iface, UCS_ERR_CANCELED, 0);
    uct_xen_ep_cancel_zops(self, iface);
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

/* ---------------- emulated RMA: the requester side ----------------
 *
 * A put is one record (header + data) that the owner applies in its
 * progress; like an AM, it is complete once copied into the ring (the ring
 * is the transport's buffer, and its order is the target's order: a put
 * followed by an AM on the same channel is applied before the AM handler
 * runs).  A get is a request record answered by a reply record; it stays
 * outstanding, and keeps flush in progress, until the reply arrives or the
 * channel fails.
 */

/* A flush that waits until the peer processed everything sent before it
 * (its tx mark) and the gets issued before it were answered. */
typedef struct uct_xen_flush_wait {
    ucs_queue_elem_t queue;
    uint64_t         gets_target;
    uint32_t         tx_mark;
    uct_completion_t *comp;
} uct_xen_flush_wait_t;

static uct_xen_iface_t *uct_xen_ep_iface(uct_xen_ep_t *ep)
{
    return ucs_derived_of(ep->super.super.iface, uct_xen_iface_t);
}

static UCS_F_ALWAYS_INLINE void
uct_xen_rma_hdr_fill(uct_xen_rma_hdr_t *hdr, const uct_xen_rkey_t *rkey,
                     uint64_t remote_addr, size_t length, uint64_t req)
{
    uct_xen_rma_hdr_t h;

    h.rid    = rkey->id;
    h.addr   = remote_addr;
    h.len    = length;
    h.status = 0;
    h.req    = req;
    memcpy(hdr, &h, sizeof(h));   /* the ring is only 8-byte aligned */
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

    p = uct_xen_ep_reserve(ep, UCT_XEN_RMA_HDR + length, &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    uct_xen_rma_hdr_fill(p, (const uct_xen_rkey_t*)rkey, remote_addr, length, 0);
    memcpy(UCS_PTR_BYTE_OFFSET(p, UCT_XEN_RMA_HDR), buffer, length);
    xm_chan_commit(ep->ch, XM_REC_RMA_PUT, UCT_XEN_RMA_HDR + length);
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

    p = uct_xen_ep_reserve(ep, UCT_XEN_RMA_HDR + iface->config.rma_max,
                           &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    length = pack_cb(UCS_PTR_BYTE_OFFSET(p, UCT_XEN_RMA_HDR), arg);
    ucs_assertv(length <= iface->config.rma_max, "put_bcopy packed %zu > %zu",
                length, iface->config.rma_max);
    uct_xen_rma_hdr_fill(p, (const uct_xen_rkey_t*)rkey, remote_addr, length, 0);
    xm_chan_commit(ep->ch, XM_REC_RMA_PUT, UCT_XEN_RMA_HDR + length);
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
    uct_xen_get_req_t *req;
    ucs_status_t status;
    khiter_t it;
    void *p;
    int ret;

    UCT_CHECK_LENGTH(length, 0, iface->config.rma_max, "get_bcopy");

    p = uct_xen_ep_reserve(ep, UCT_XEN_RMA_HDR, &status);
    if (ucs_unlikely(p == NULL)) {
        return status;
    }
    /* an uncommitted reservation is simply dropped on the error paths */
    req = ucs_malloc(sizeof(*req), "xen_get_req");
    if (req == NULL) {
        ucs_error("xen: failed to allocate a get request");
        return UCS_ERR_NO_MEMORY;
    }
    req->id        = iface->next_get_id++;
    req->ep        = ep;
    req->unpack_cb = unpack_cb;
    req->arg       = arg;
    req->length    = length;
    req->comp      = comp;
    it = kh_put(uct_xen_get, &iface->gets, req->id, &ret);
    if (ret <= 0) {
        ucs_error("xen: failed to record a get request");
        ucs_free(req);
        return UCS_ERR_NO_MEMORY;
    }
    kh_value(&iface->gets, it) = req;

    uct_xen_rma_hdr_fill(p, (const uct_xen_rkey_t*)rkey, remote_addr, length,
                         req->id);
    xm_chan_commit(ep->ch, XM_REC_RMA_GET_REQ, UCT_XEN_RMA_HDR);
    ++ep->rops_issued;
    ucs_trace_data("xen: ep %p GET_BCOPY %zu bytes from 0x%" PRIx64 " req %"
                   PRIu64, ep, length, remote_addr, req->id);
    UCT_TL_EP_STAT_OP(&ep->super, GET, BCOPY, length);
    return UCS_INPROGRESS;
}

/* Complete the flushes whose gets have all finished. */
static int uct_xen_flush_wait_done(uct_xen_ep_t *ep, uct_xen_flush_wait_t *fw)
{
    return (fw->gets_target <= ep->rops_done) && xm_chan_tx_reached(ep->ch, fw->tx_mark);
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

void uct_xen_ep_get_done(uct_xen_iface_t *iface, uct_xen_get_req_t *req,
                         const void *data, ucs_status_t status)
{
    uct_xen_ep_t *ep = req->ep;
    khiter_t it;

    it = kh_get(uct_xen_get, &iface->gets, req->id);
    ucs_assert(it != kh_end(&iface->gets));
    kh_del(uct_xen_get, &iface->gets, it);

    if (status == UCS_OK) {
        req->unpack_cb(req->arg, data, req->length);
    }
    ++ep->rops_done;
    if (req->comp != NULL) {
        uct_invoke_completion(req->comp, status);
    }
    ucs_free(req);
    uct_xen_ep_flush_progress(ep, UCS_OK);
}

void uct_xen_ep_fail_gets(uct_xen_ep_t *ep, uct_xen_iface_t *iface,
                          ucs_status_t status, int complete)
{
    uct_xen_get_req_t *req, *found;
    uct_xen_flush_wait_t *fw;
    khiter_t it;

    /* one at a time, looking afresh: a completion may issue new gets, which
     * may resize the table */
    do {
        found = NULL;
        kh_foreach_value(&iface->gets, req, {
            if (req->ep == ep) {
                found = req;
                break;
            }
        });
        if (found == NULL) {
            break;
        }
        if (complete) {
            ucs_debug("xen: ep %p: get %" PRIu64 " failed: %s", ep, found->id,
                      ucs_status_string(status));
            uct_xen_ep_get_done(iface, found, NULL, status);
        } else {
            it = kh_get(uct_xen_get, &iface->gets, found->id);
            kh_del(uct_xen_get, &iface->gets, it);
            ucs_free(found);
            ++ep->rops_done;
        }
    } while (1);

    if (complete) {
        uct_xen_ep_flush_progress(ep, status);
    } else {
        while (!ucs_queue_is_empty(&ep->flush_q)) {
            fw = ucs_queue_pull_elem_non_empty(&ep->flush_q,
                                               uct_xen_flush_wait_t, queue);
            --uct_xen_ep_iface(ep)->flush_waits;
            ucs_free(fw);
        }
    }
}

int uct_xen_ep_outstanding(uct_xen_ep_t *ep)
{
    return (ep->rops_done != ep->rops_issued) || !ucs_queue_is_empty(&ep->flush_q) ||
           !xm_chan_tx_reached(ep->ch, xm_chan_tx_mark(ep->ch));
}

ucs_status_t uct_xen_ep_flush(uct_ep_h tl_ep, unsigned flags,
                              uct_completion_t *comp)
{
    uct_xen_ep_t *ep = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_flush_wait_t *fw;
    uint32_t mark;

    /* Sends and puts copy into the ring and complete at once; requests
     * still waiting for a connection or for ring space are outstanding,
     * and so are gets until their replies arrive. */
    /* A flush dispatched from the pending queue was taken off it: the
     * requests behind it came later and are not its business (answering
     * NO_RESOURCE there would requeue it ahead of them forever). */
    if (UCT_XEN_EP_MUST_QUEUE(ep)) {
        UCT_TL_EP_STAT_FLUSH_WAIT(&ep->super);
        return UCS_ERR_NO_RESOURCE;
    }
    /* Remote completion: puts and AMs are done once the peer processed
     * them (it releases ring space only after that), gets once answered. */
    mark = xm_chan_tx_mark(ep->ch);
    if (uct_xen_ep_outstanding(ep)) {
        if (comp != NULL) {
            fw = ucs_malloc(sizeof(*fw), "xen_flush_wait");
            if (fw == NULL) {
                ucs_error("xen: failed to allocate a flush request");
                return UCS_ERR_NO_MEMORY;
            }
            fw->gets_target = ep->rops_issued;
            fw->tx_mark     = mark;
            fw->comp        = comp;
            ucs_queue_push(&ep->flush_q, &fw->queue);
            ++uct_xen_ep_iface(ep)->flush_waits;
        }
        UCT_TL_EP_STAT_FLUSH_WAIT(&ep->super);
        return UCS_INPROGRESS;
    }
    UCT_TL_EP_STAT_FLUSH(&ep->super);
    return UCS_OK;
}
