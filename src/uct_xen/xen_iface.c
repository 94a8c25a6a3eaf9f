/*
 * xen_iface.c - the receive side: one iface owns one core endpoint.
 *
 * Progress runs the core (handshakes, incoming records, liveness), turns
 * each delivered record into an active message, then lets eps whose
 * channel came up or got ring space dispatch their pending queues.
 */
#include "xen_iface.h"
#include "xm_zc.h"

#include <ucs/debug/log.h>
#include <ucs/sys/string.h>
#include <ucs/arch/cpu.h>

#include "xm_topo.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>

static uct_iface_ops_t uct_xen_iface_ops;

static const char *uct_xen_backend_names[] = {
    [UCT_XEN_BACKEND_AUTO] = "auto",
    [UCT_XEN_BACKEND_XEN]  = "xen",
    [UCT_XEN_BACKEND_SIM]  = "sim",
    [UCT_XEN_BACKEND_LAST] = NULL
};

ucs_config_field_t uct_xen_iface_config_table[] = {
    {"", "", NULL, ucs_offsetof(uct_xen_iface_config_t, super),
     UCS_CONFIG_TYPE_TABLE(uct_iface_config_table)},

    {"RING_PAGES", "0",
     "Pages in each per-peer ring, a power of two from 1 to 256 (0: XENMPI_RING_PAGES or 64);\n"
     "a ring the grant table or gntalloc's limit refuses falls back to a smaller one that\n"
     "still holds SEG_SIZE.",
     ucs_offsetof(uct_xen_iface_config_t, ring_pages), UCS_CONFIG_TYPE_UINT},

    {"SEG_SIZE", "auto",
     "Largest AM bcopy message; at most half a ring (UCX_XEN_RING_PAGES) minus 8 bytes\n"
     "(auto: 32 KiB + 64, or that limit on a smaller ring).",
     ucs_offsetof(uct_xen_iface_config_t, seg_size), UCS_CONFIG_TYPE_MEMUNITS},

    {"MAX_SHORT", "256",
     "Largest AM short message including its 8-byte header; at most SEG_SIZE.",
     ucs_offsetof(uct_xen_iface_config_t, max_short), UCS_CONFIG_TYPE_MEMUNITS},

    {"BACKEND", "auto",
     "Hypervisor backend: auto (XENMPI_BACKEND, else xen when /dev/xen exists, else sim), xen, sim.",
     ucs_offsetof(uct_xen_iface_config_t, backend),
     UCS_CONFIG_TYPE_ENUM(uct_xen_backend_names)},

    {"NUMA_BIND", "y",
     "Bind each ring and receive buffer this interface allocates to the NUMA node of the\n"
     "vCPU that opened it (as this VM sees its nodes).",
     ucs_offsetof(uct_xen_iface_config_t, numa_bind), UCS_CONFIG_TYPE_BOOL},

    {"ZCOPY", "auto",
     "Zero-copy gets and puts (UCP rendezvous): the owner grants the pages of a registered\n"
     "buffer to the peer on demand, which grant-copies them.  auto: each operation takes\n"
     "grant copy or the rings, whichever the channel measured faster for its size;\n"
     "y: grant copy always; n: no zero-copy, large messages go through the rings.",
     ucs_offsetof(uct_xen_iface_config_t, zcopy), UCS_CONFIG_TYPE_ON_OFF_AUTO},

    {"ZCOPY_MIN", "auto",
     "Smallest get or put UCP is told to do by zero-copy (the iface's min_zcopy): UCP's\n"
     "rendezvous threshold rises to it, and smaller messages go through the rings\n"
     "(auto: UCP's own threshold, at least the segment size).",
     ucs_offsetof(uct_xen_iface_config_t, zcopy_min), UCS_CONFIG_TYPE_MEMUNITS},

    {"GRANT_CACHE", "64m",
     "Soft cap on the memory this iface's channels keep granted to peers for zero-copy;\n"
     "over it, its least recently granted chunks are withdrawn. Half of it bounds the\n"
     "grants a channel asks a peer for at once.",
     ucs_offsetof(uct_xen_iface_config_t, grant_cache), UCS_CONFIG_TYPE_MEMUNITS},

    {"PEER_CACHE", "64m",
     "Cap on the peers' grants this iface keeps for reuse (its software I/O TLB); over\n"
     "it, its least recently used are released.",
     ucs_offsetof(uct_xen_iface_config_t, peer_cache), UCS_CONFIG_TYPE_MEMUNITS},

    {"PUSH_MIN", "192k",
     "Smallest zero-copy get that is split between the two processes: the owner of the data\n"
     "is asked to grant-copy the second half of its pages into ours while we copy the first,\n"
     "so both CPUs copy (when it is our only operation with that peer and the peer is not\n"
     "pushing to us).  inf: never; we copy everything.",
     ucs_offsetof(uct_xen_iface_config_t, push_min), UCS_CONFIG_TYPE_MEMUNITS},

    {"EVENTS", "y",
     "Advertise wakeup events (send completion, receive, event fd) for UCP's wakeup feature.",
     ucs_offsetof(uct_xen_iface_config_t, events), UCS_CONFIG_TYPE_BOOL},

    {NULL}
};

/* ---------------- core callbacks (run inside xm_endpoint_progress) -------- */

static void uct_xen_recv_cb(void *arg, xm_channel_t *ch, uint16_t type,
                            const void *data, size_t len)
{
    uct_xen_iface_t *iface = arg;

    if (ucs_unlikely(type >= UCT_AM_ID_MAX)) {
        ucs_warn("xen: domain %u sent a message of type 0x%x (no such AM id): "
                 "dropped", xm_chan_peer_dom(ch), type);
        return;
    }
    uct_iface_trace_am(&iface->super, UCT_AM_TRACE_TYPE_RECV, type,
                       (void*)data, len, "RX: AM");
    /* data is the core's private copy, valid until we return: no DESC flag */
    uct_iface_invoke_am(&iface->super, type, (void*)data, len, 0);
}

static void uct_xen_event_cb(void *arg, xm_channel_t *ch,
                             enum xm_chan_event ev)
{
    uct_xen_iface_t *iface = arg;

    switch (ev) {
    case XM_EV_CONNECTED:
        ucs_debug("xen: connected to domain %u endpoint %u",
                  xm_chan_peer_dom(ch), xm_chan_peer_ep(ch));
        break;
    case XM_EV_ACCEPTED:
        ucs_debug("xen: accepted domain %u endpoint %u", xm_chan_peer_dom(ch),
                  xm_chan_peer_ep(ch));
        break;
    case XM_EV_PEER_GONE:
    case XM_EV_FAILED:
        /* the core has logged the cause and released the channel's
         * resources; its eps fail in progress, outside this callback (the
         * error handler may destroy eps, and this may run inside a send) */
        iface->ep_err_pending = 1;
        ucs_debug("xen: channel to domain %u endpoint %u is %s",
                  xm_chan_peer_dom(ch), xm_chan_peer_ep(ch),
                  (ev == XM_EV_PEER_GONE) ? "gone" : "failed");
        break;
    }
}

/* ---------------- progress ---------------- */

unsigned uct_xen_iface_report_errors(uct_xen_iface_t *iface)
{
    uct_xen_ep_t *ep, *found;
    ucs_status_t status, err;
    unsigned count = 0;

    iface->ep_err_pending = 0;
    /* the handler may destroy any ep (UCP discards a failed ep's lanes):
     * look the list up afresh after each call */
    do {
        found = NULL;
        ucs_list_for_each(ep, &iface->ep_list, list) {
            if (!ep->err_reported &&
                (xm_chan_state(ep->ch) >= XM_CH_PEER_GONE)) {
                found = ep;
                break;
            }
        }
        if (found == NULL) {
            break;
        }
        found->err_reported = 1;
        status = uct_xen_chan_status(found->ch);
        ucs_debug("xen: ep %p to domain %u endpoint %u: %s", found,
                  xm_chan_peer_dom(found->ch), xm_chan_peer_ep(found->ch),
                  ucs_status_string(status));
        /* the core failed its operations when the channel went down; the
         * flushes waiting for them fail with the channel */
        uct_xen_ep_flush_progress(found, status);
        /* UCP's handler purges the ep's pending queue with the error; with
         * no handler, dispatch lets the queued requests see the error */
        err = uct_iface_handle_ep_err(&iface->super.super, &found->super.super,
                                      status);
        /* A peer process that exits is how every job ends, and UCP may
         * still hold an ep to it then.  A peer domain that vanished, or a
         * channel that failed (refused, timed out, a broken protocol), is
         * always a failure: as UCX's own transports treat a failure, it is
         * fatal when nothing handles it (UCP's error mode none, as MPICH
         * and Open MPI use by default), so the job ends instead of waiting
         * for messages that cannot come. */
        if (xm_chan_domain_gone(found->ch)) {
            ucs_log(uct_base_iface_failure_log_level(&iface->super, err, status),
                    "xen: domain %u is gone (destroyed or crashed): lost endpoint %u",
                    xm_chan_peer_dom(found->ch), xm_chan_peer_ep(found->ch));
        } else if (xm_chan_state(found->ch) == XM_CH_FAILED) {
            ucs_log(uct_base_iface_failure_log_level(&iface->super, err, status),
                    "xen: channel to domain %u endpoint %u failed (the error above "
                    "says why)", xm_chan_peer_dom(found->ch), xm_chan_peer_ep(found->ch));
        }
        ++count;
    } while (1);
    return count;
}

static unsigned uct_xen_iface_progress(uct_iface_h tl_iface)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);
    uct_xen_ep_t *ep, *tmp;
    unsigned waiting;
    int n;

    n = xm_endpoint_progress(iface->xep);
    if (ucs_unlikely(n < 0)) {
        n = 0;   /* logged by the core; a failed channel fails alone */
    }

    if (ucs_unlikely(iface->ep_err_pending)) {
        n += uct_xen_iface_report_errors(iface);
    }
    if (ucs_unlikely(iface->flush_waits > 0)) {
        ucs_list_for_each_safe(ep, tmp, &iface->ep_list, list) {
            n += uct_xen_ep_flush_progress(ep, UCS_OK);
        }
    }
    if (ucs_unlikely(iface->pending_eps > 0)) {
        waiting = 0;
        /* a pending callback may destroy its own ep */
        ucs_list_for_each_safe(ep, tmp, &iface->ep_list, list) {
            n += uct_xen_ep_dispatch_pending(ep, iface);
            waiting += !ucs_queue_is_empty(&ep->pending_q);
        }
        iface->pending_eps = waiting;
    }
    return n;
}

/* An iface flush with a completion: one ep flush per ep, counted on one
 * completion.  An ep with queued requests gets its flush queued behind them
 * (a pending request of ours), so it covers them too. */
typedef struct uct_xen_iface_flush uct_xen_iface_flush_t;

typedef struct uct_xen_flush_pend {
    uct_pending_req_t     req;
    uct_xen_ep_t          *ep;
    uct_xen_iface_flush_t *flush;
} uct_xen_flush_pend_t;

struct uct_xen_iface_flush {
    uct_completion_t      sub;     /* ep flushes outstanding, +1 while issuing */
    uct_completion_t      *comp;   /* the caller's */
    uct_xen_flush_pend_t  pend[];  /* one per ep that had queued requests */
};

static void uct_xen_iface_flush_done(uct_completion_t *sub)
{
    uct_xen_iface_flush_t *f = ucs_container_of(sub, uct_xen_iface_flush_t, sub);

    uct_invoke_completion(f->comp, sub->status);
    ucs_free(f);
}

/* Start one ep's flush on the iface flush's completion. */
static void uct_xen_iface_flush_ep(uct_xen_ep_t *ep, uct_xen_iface_flush_t *f)
{
    ucs_status_t status;

    ++f->sub.count;
    status = uct_xen_ep_flush(&ep->super.super, 0, &f->sub);
    if (status != UCS_INPROGRESS) {
        /* done (or failed) now: the ep flush will not complete it */
        uct_invoke_completion(&f->sub, status);
    }
}

/* Runs from the ep's pending queue once the requests ahead of it were sent. */
ucs_status_t uct_xen_iface_flush_pending(uct_pending_req_t *req)
{
    uct_xen_flush_pend_t *p = ucs_container_of(req, uct_xen_flush_pend_t, req);
    uct_xen_iface_flush_t *f = p->flush;

    uct_xen_iface_flush_ep(p->ep, f);
    uct_invoke_completion(&f->sub, UCS_OK);   /* the count taken when queued */
    return UCS_OK;
}

/* The ep goes away with our flush still queued: it fails, the rest goes on. */
void uct_xen_iface_flush_cancel(uct_pending_req_t *req)
{
    uct_xen_flush_pend_t *p = ucs_container_of(req, uct_xen_flush_pend_t, req);

    uct_invoke_completion(&p->flush->sub, UCS_ERR_CANCELED);
}

static ucs_status_t uct_xen_iface_flush_comp(uct_xen_iface_t *iface,
                                             uct_completion_t *comp)
{
    uct_xen_iface_flush_t *f;
    uct_xen_flush_pend_t *p;
    unsigned queued = 0;
    uct_xen_ep_t *ep;
    ucs_status_t status;

    ucs_list_for_each(ep, &iface->ep_list, list) {
        queued += !ucs_queue_is_empty(&ep->pending_q);
    }
    f = ucs_malloc(sizeof(*f) + queued * sizeof(*p), "xen_iface_flush");
    if (f == NULL) {
        ucs_error("xen: failed to allocate an iface flush");
        return UCS_ERR_NO_MEMORY;
    }
    f->sub.func   = uct_xen_iface_flush_done;
    f->sub.count  = 1;
    f->sub.status = UCS_OK;
    f->comp       = comp;
    p             = f->pend;
    ucs_list_for_each(ep, &iface->ep_list, list) {
        if (ucs_queue_is_empty(&ep->pending_q)) {
            uct_xen_iface_flush_ep(ep, f);
            continue;
        }
        p->req.func = uct_xen_iface_flush_pending;
        p->ep       = ep;
        p->flush    = f;
        ++f->sub.count;
        uct_pending_req_queue_push(&ep->pending_q, &p->req);
        ++p;
    }
    if (f->sub.count > 1) {
        --f->sub.count;   /* the ep flushes complete it */
        UCT_TL_IFACE_STAT_FLUSH_WAIT(&iface->super);
        return UCS_INPROGRESS;
    }
    status = f->sub.status;
    ucs_free(f);
    UCT_TL_IFACE_STAT_FLUSH(&iface->super);
    return status;
}

static ucs_status_t uct_xen_iface_flush(uct_iface_h tl_iface, unsigned flags,
                                        uct_completion_t *comp)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);
    uct_xen_ep_t *ep;

    if (comp != NULL) {
        return uct_xen_iface_flush_comp(iface, comp);
    }
    /* every ep's, by the predicate its own flush uses: gets waiting for
     * answers, zero-copy operations waiting for grants or for the ring */
    ucs_list_for_each(ep, &iface->ep_list, list) {
        if (!ucs_queue_is_empty(&ep->pending_q) || uct_xen_ep_outstanding(ep)) {
            UCT_TL_IFACE_STAT_FLUSH_WAIT(&iface->super);
            return UCS_INPROGRESS;   /* the only "not yet" uct.h allows here */
        }
    }
    UCT_TL_IFACE_STAT_FLUSH(&iface->super);
    return UCS_OK;
}

/* ---------------- wakeup ---------------- */

static ucs_status_t uct_xen_iface_event_fd_get(uct_iface_h tl_iface, int *fd_p)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);

    /* one epoll fd: our event channels (data, ring space, peer death) and
     * the store watches (handshakes) */
    *fd_p = xm_endpoint_fd(iface->xep);
    return UCS_OK;
}

/* Work only our progress can do, which must not wait for a peer's event. */
static int uct_xen_iface_must_stay_awake(uct_xen_iface_t *iface)
{
    uct_xen_ep_t *ep;

    if (iface->ep_err_pending) {
        return 1;   /* failed channels to report in progress */
    }
    if (iface->flush_waits > 0) {
        ucs_list_for_each(ep, &iface->ep_list, list) {
            if (uct_xen_ep_flush_ready(ep)) {
                return 1;   /* a flush can complete now */
            }
        }
    }
    /* the core's own work (get answers owed, zero-copy ranges for the
     * ring, puts to complete) makes xm_endpoint_arm answer -EBUSY */
    /* A queued request waits for a connection or for ring space; only
     * progress turns it into a send. */
    if (iface->pending_eps > 0) {
        ucs_list_for_each(ep, &iface->ep_list, list) {
            if (!ucs_queue_is_empty(&ep->pending_q) &&
                !uct_xen_ep_arm_pending(ep, iface)) {
                return 1;
            }
        }
    }
    return 0;
}

static ucs_status_t uct_xen_iface_event_arm(uct_iface_h tl_iface,
                                            unsigned events)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);

    /* First the core: it drains the event fd and the store watches (which
     * may complete handshakes or report dead peers, never deliver data),
     * then asks every peer to notify us; -EBUSY: data already waits.  Receive
     * is armed even when only send completions were asked for: a queued
     * request needs our progress, and a spurious wakeup costs little. */
    /* first our own work (failed reservations here mark the channels whose
     * peer must tell us of space), then the core arms, then look again:
     * arming drained the store, which may have connected a channel */
    if (uct_xen_iface_must_stay_awake(iface)) {
        return UCS_ERR_BUSY;
    }
    if (xm_endpoint_arm(iface->xep) == -EBUSY) {
        return UCS_ERR_BUSY;
    }
    if (uct_xen_iface_must_stay_awake(iface)) {
        /* not going to sleep: peers must not notify for nothing */
        xm_endpoint_withdraw(iface->xep);
        return UCS_ERR_BUSY;
    }
    return UCS_OK;
}

/* ---------------- query and addresses ---------------- */

static ucs_status_t uct_xen_iface_query(uct_iface_h tl_iface,
                                        uct_iface_attr_t *attr)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);

    uct_base_iface_query(&iface->super, attr);

    attr->iface_addr_len         = sizeof(uct_xen_iface_addr_t);
    attr->device_addr_len        = sizeof(uct_xen_dev_addr_t);
    attr->ep_addr_len            = 0;
    attr->max_conn_priv          = 0;
    attr->cap.flags              = UCT_IFACE_FLAG_CONNECT_TO_IFACE |
                                   UCT_IFACE_FLAG_AM_SHORT         |
                                   UCT_IFACE_FLAG_AM_BCOPY         |
                                   UCT_IFACE_FLAG_PENDING          |
                                   UCT_IFACE_FLAG_CB_SYNC          |
                                   /* the core sees a peer die (its live
                                    * byte, cleared by unmap-notify) and
                                    * progress fails the eps; UCP adds its
                                    * AM keepalive on top */
                                   UCT_IFACE_FLAG_ERRHANDLE_PEER_FAILURE;
    if (iface->config.rma_max > 0) {
        /* emulated: the owner of the memory copies in its progress */
        attr->cap.flags         |= UCT_IFACE_FLAG_PUT_SHORT |
                                   UCT_IFACE_FLAG_PUT_BCOPY |
                                   UCT_IFACE_FLAG_GET_BCOPY;
        attr->cap.put.max_short  = ucs_min(iface->config.max_short,
                                           iface->config.rma_max);
        attr->cap.put.max_bcopy  = iface->config.rma_max;
        attr->cap.get.max_bcopy  = iface->config.rma_max;
    }
    if ((iface->config.rma_max > 0) && iface->config.zcopy) {
        /* grant copy of the owner's pages (the ring for what cannot be
         * granted, hence rma_max above) */
        attr->cap.flags         |= UCT_IFACE_FLAG_GET_ZCOPY |
                                   UCT_IFACE_FLAG_PUT_ZCOPY;
        attr->cap.get.min_zcopy  = iface->config.zcopy_min;
        attr->cap.get.max_zcopy  = SIZE_MAX;
        attr->cap.put.min_zcopy  = iface->config.zcopy_min;
        attr->cap.put.max_zcopy  = SIZE_MAX;
    }
    attr->cap.put.opt_zcopy_align = 1;
    attr->cap.put.align_mtu      = 1;
    attr->cap.put.max_iov        = 1;
    attr->cap.get.opt_zcopy_align = 1;
    attr->cap.get.align_mtu      = 1;
    attr->cap.get.max_iov        = 1;
    attr->cap.event_flags        = !iface->config.events ? 0 :
                                   (UCT_IFACE_FLAG_EVENT_SEND_COMP |
                                    UCT_IFACE_FLAG_EVENT_RECV      |
                                    UCT_IFACE_FLAG_EVENT_FD);

    attr->cap.am.max_short       = iface->config.max_short;
    attr->cap.am.max_bcopy       = iface->config.seg_size;
    attr->cap.am.min_zcopy       = 0;
    attr->cap.am.max_zcopy       = 0;
    attr->cap.am.opt_zcopy_align = UCS_SYS_CACHE_LINE_SIZE;
    attr->cap.am.align_mtu       = attr->cap.am.opt_zcopy_align;
    attr->cap.am.max_hdr         = 0;
    attr->cap.am.max_iov         = SIZE_MAX;

    /* one copy into a shared ring, one out of it, like the posix mm
     * transport; polling with no system call on the data path; the
     * distance to the nearest other domain scales it */
    attr->latency                = ucs_linear_func_make(iface->config.latency, 0);
    attr->bandwidth.dedicated    = iface->config.bandwidth;
    attr->bandwidth.shared       = 0;
    attr->overhead               = 15e-9;
    attr->priority               = 0;
    return UCS_OK;
}

static ucs_status_t uct_xen_iface_get_device_address(uct_iface_h tl_iface,
                                                     uct_device_addr_t *addr)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);

    uct_xen_dev_addr_t d = { iface->addr.host_hash, iface->addr.domid };

    memcpy(addr, &d, sizeof(d));
    return UCS_OK;
}

static ucs_status_t uct_xen_iface_get_address(uct_iface_h tl_iface,
                                              uct_iface_addr_t *addr)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);

    uct_xen_iface_addr_t a = { iface->addr.ep, iface->addr.key };

    memcpy(addr, &a, sizeof(a));
    return UCS_OK;
}

static int uct_xen_iface_is_reachable(const uct_iface_h tl_iface,
                                      const uct_device_addr_t *dev_addr,
                                      const uct_iface_addr_t *iface_addr)
{
    uct_xen_iface_t *iface = ucs_derived_of(tl_iface, uct_xen_iface_t);
    xm_ep_addr_t peer;
    uct_xen_iface_addr_t any_ep = { 0, 0 };

    if (dev_addr == NULL) {
        return 0;
    }
    peer = uct_xen_peer_addr(dev_addr, (iface_addr != NULL) ? iface_addr :
                                       (const uct_iface_addr_t*)&any_ep);
    /* another host: grants and event channels cannot cross; on this host
     * every endpoint is reachable, our own too (the core's loopback pair) */
    return xm_ep_addr_reachable(&iface->addr, &peer);
}

/* ---------------- placement ---------------- */

/* Estimates by the distance to the nearest other domain, as dom0 published
 * it (docs/topology.md); without that data, the same NUMA node is assumed.
 * A peer time-sharing our pCPU must wait for the scheduler. */
static const struct {
    double latency;     /* seconds */
    double bandwidth;   /* MB/s */
} uct_xen_class_perf[] = {
    [XM_TOPO_SAME_PU]       = {2000e-9,  2000.0},
    [XM_TOPO_SAME_CORE]     = {  60e-9, 12000.0},
    [XM_TOPO_SAME_NUMA]     = { 100e-9, 10000.0},
    [XM_TOPO_SAME_PACKAGE]  = { 150e-9,  8000.0},
    [XM_TOPO_CROSS_PACKAGE] = { 250e-9,  6000.0},
};

static void uct_xen_iface_distance_init(uct_xen_iface_t *iface)
{
    int cpu = sched_getcpu(), cls = XM_TOPO_SAME_NUMA;
    xm_topo_class_t c;
    uint32_t nearest;

    iface->dist_class = -1;
    if (xm_topo_nearest(iface->hv, cpu, &c, &nearest) == 0) {
        iface->dist_class = cls = c;
        ucs_debug("xen: vCPU %d: nearest other domain %u is %s", cpu, nearest,
                  xm_topo_class_name(c));
    } else {
        ucs_debug("xen: no host topology from dom0 (%s): estimates for the same "
                  "NUMA node", (cpu < 0) ? "sched_getcpu failed" :
                  xm_topo_last_error());
    }
    iface->config.latency   = uct_xen_class_perf[cls].latency;
    iface->config.bandwidth = uct_xen_class_perf[cls].bandwidth * UCS_MBYTE;
}

/* ---------------- open and close ---------------- */

static ucs_status_t uct_xen_hv_open(int backend, xm_hv_t **hv_p)
{
    static const char *names[] = {
        [UCT_XEN_BACKEND_XEN]  = "xen",
        [UCT_XEN_BACKEND_SIM]  = "sim",
    };
    /* auto: the core's own setting (XENMPI_BACKEND), else detection */
    int rc = (backend == UCT_XEN_BACKEND_AUTO) ? xm_hv_open(hv_p) :
             xm_hv_open_named(names[backend], hv_p);

    return (rc < 0) ? UCS_ERR_NO_DEVICE : UCS_OK;
}

static ucs_status_t uct_xen_iface_check_config(uct_xen_iface_t *iface,
                                               const uct_xen_iface_config_t *cfg)
{
    size_t max_msg = xm_endpoint_max_msg(iface->xep);
    size_t seg_size = cfg->seg_size;

    /* UCP cuts large messages into segments and pays per segment (its
     * rendezvous fragments over AM): 32 KiB moves about 1.7x the bytes per
     * second of 8 KiB on a 2-core host (bench/ucx-bench.sh) */
    if (seg_size == UCS_MEMUNITS_AUTO) {
        seg_size = ucs_min(UCT_XEN_SEG_SIZE_AUTO, max_msg);
    }
    if ((seg_size < UCT_XEN_AM_HDR) || (seg_size > max_msg)) {
        ucs_error("xen: UCX_XEN_SEG_SIZE=%zu must be between %zu and %zu (half "
                  "a ring of this size minus 8; see UCX_XEN_RING_PAGES)",
                  seg_size, UCT_XEN_AM_HDR, max_msg);
        return UCS_ERR_INVALID_PARAM;
    }
    if ((cfg->max_short < UCT_XEN_AM_HDR) || (cfg->max_short > seg_size)) {
        ucs_error("xen: UCX_XEN_MAX_SHORT=%zu must be between %zu and "
                  "UCX_XEN_SEG_SIZE (%zu)", cfg->max_short, UCT_XEN_AM_HDR,
                  seg_size);
        return UCS_ERR_INVALID_PARAM;
    }
    iface->config.seg_size  = seg_size;
    iface->config.max_short = cfg->max_short;
    iface->config.events    = cfg->events;
    iface->config.zcopy     = (cfg->zcopy != UCS_CONFIG_OFF);
    iface->config.zcopy_min = (cfg->zcopy_min == UCS_MEMUNITS_AUTO) ?
                              UCT_XEN_ZCOPY_MIN_AUTO : cfg->zcopy_min;
    /* a put or a get answer is one record: header + data in one segment */
    iface->config.rma_max   = (seg_size > sizeof(struct xm_rma_hdr)) ?
                              (seg_size - sizeof(struct xm_rma_hdr)) : 0;
    return UCS_OK;
}

static UCS_CLASS_INIT_FUNC(uct_xen_iface_t, uct_md_h md, uct_worker_h worker,
                           const uct_iface_params_t *params,
                           const uct_iface_config_t *tl_config)
{
    const uct_xen_iface_config_t *cfg = ucs_derived_of(tl_config,
                                                       uct_xen_iface_config_t);
    xm_ep_params_t ep_params = {0};
    xm_xfer_params_t xfer_params = {0};
    ucs_status_t status;
    int rc;

    UCS_CLASS_CALL_SUPER_INIT(
            uct_base_iface_t, &uct_xen_iface_ops, &uct_base_iface_internal_ops,
            md, worker, params,
            tl_config UCS_STATS_ARG(
                    (params->field_mask & UCT_IFACE_PARAM_FIELD_STATS_ROOT) ?
                            params->stats_root : NULL)
            UCS_STATS_ARG(UCT_XEN_TL_NAME));

    UCT_CHECK_PARAM(params->field_mask & UCT_IFACE_PARAM_FIELD_OPEN_MODE,
                    "UCT_IFACE_PARAM_FIELD_OPEN_MODE is not defined");
    if (!(params->open_mode & UCT_IFACE_OPEN_MODE_DEVICE)) {
        ucs_error("xen: only UCT_IFACE_OPEN_MODE_DEVICE is supported");
        return UCS_ERR_UNSUPPORTED;
    }
    /* AM data reaches the handler as the core's private copy (no DESC
     * flag), so no alignment is promised for it; the parameters are still
     * checked as every transport checks them */
    if (params->field_mask & UCT_IFACE_PARAM_FIELD_AM_ALIGNMENT) {
        if (!ucs_is_pow2(params->am_alignment)) {
            ucs_error("xen: AM alignment %zu is not a power of two",
                      params->am_alignment);
            return UCS_ERR_INVALID_PARAM;
        }
    } else if (params->field_mask & UCT_IFACE_PARAM_FIELD_AM_ALIGN_OFFSET) {
        ucs_error("xen: AM alignment offset has no effect without alignment");
        return UCS_ERR_INVALID_PARAM;
    }

    ucs_list_head_init(&self->ep_list);
    self->pending_eps    = 0;
    self->flush_waits    = 0;
    self->ep_err_pending = 0;
    self->xfer           = NULL;

    status = uct_xen_hv_open(cfg->backend, &self->hv);
    if (status != UCS_OK) {
        return status;   /* the core has said why */
    }
    /* the core gives every endpoint its own id, so any number of ifaces
     * may share a process and a domain */
    ep_params.ring_pages = cfg->ring_pages;
    /* a channel whose ring cannot be granted in full falls back to a
     * smaller one that still holds a segment */
    ep_params.min_msg    = (cfg->seg_size == UCS_MEMUNITS_AUTO) ?
                           UCT_XEN_SEG_SIZE_AUTO : cfg->seg_size;
    ep_params.recv_cb    = uct_xen_recv_cb;
    ep_params.event_cb   = uct_xen_event_cb;
    ep_params.cb_arg     = self;
    /* the thread that opens the iface is the one that progresses it */
    self->bind           = cfg->numa_bind ? xm_topo_bind_local() : NULL;
    ep_params.place_cb   = self->bind ? xm_topo_bind_place : NULL;
    ep_params.place_arg  = self->bind;
    rc = xm_endpoint_open(self->hv, &ep_params, &self->xep);
    if (rc < 0) {
        status = UCS_ERR_NO_DEVICE;
        goto err_hv_close;
    }
    rc = xm_endpoint_addr(self->xep, &self->addr);
    if (rc < 0) {
        status = UCS_ERR_NO_DEVICE;   /* the core named both ways to fix it */
        goto err_ep_close;
    }
    uct_xen_iface_distance_init(self);

    status = uct_xen_iface_check_config(self, cfg);
    if (status != UCS_OK) {
        goto err_ep_close;
    }
    xfer_params.rma_max = self->config.rma_max;
    xfer_params.zcopy   = (cfg->zcopy == UCS_CONFIG_OFF) ? XM_XFER_ZC_OFF :
                          (cfg->zcopy == UCS_CONFIG_ON)  ? XM_XFER_ZC_ON :
                                                           XM_XFER_ZC_AUTO;
    xfer_params.grant_cache = cfg->grant_cache;
    xfer_params.peer_cache  = cfg->peer_cache;
    xfer_params.push_min    = (cfg->push_min == UCS_MEMUNITS_INF) ? SIZE_MAX :
                              (cfg->push_min == 0) ? 1 : cfg->push_min;
    rc = xm_xfer_attach(self->xep, &xfer_params, &self->xfer);
    if (rc < 0) {
        ucs_error("xen: RMA and zero-copy on the endpoint: %s", strerror(-rc));
        status = UCS_ERR_NO_DEVICE;
        goto err_ep_close;
    }

    ucs_debug("xen: iface %p: %s backend, host hash %016" PRIx64 ", domain %u "
              "endpoint %u, seg %zu short %zu", self, xm_hv_backend_name(self->hv),
              self->addr.host_hash, self->addr.domid, self->addr.ep,
              self->config.seg_size, self->config.max_short);
    return UCS_OK;

err_ep_close:
    xm_endpoint_close(self->xep);
    xm_xfer_detach(self->xfer);
err_hv_close:
    xm_topo_bind_free(self->bind);
    xm_hv_close(self->hv);
    return status;
}

static UCS_CLASS_CLEANUP_FUNC(uct_xen_iface_t)
{
    uct_base_iface_progress_disable(&self->super.super,
                                    UCT_PROGRESS_SEND | UCT_PROGRESS_RECV);
    if (xm_xfer_refused(self->xfer) > 0) {
        ucs_debug("xen: iface %p refused %" PRIu64 " remote accesses", self,
                  xm_xfer_refused(self->xfer));
    }
    /* closes every channel: peers see PEER_GONE; eps were destroyed before
     * their iface and cancelled their operations */
    xm_endpoint_close(self->xep);
    xm_xfer_detach(self->xfer);
    xm_hv_close(self->hv);
    xm_topo_bind_free(self->bind);
}

UCS_CLASS_DEFINE(uct_xen_iface_t, uct_base_iface_t);
UCS_CLASS_DEFINE_NEW_FUNC(uct_xen_iface_t, uct_iface_t, uct_md_h, uct_worker_h,
                          const uct_iface_params_t*, const uct_iface_config_t*);
static UCS_CLASS_DEFINE_DELETE_FUNC(uct_xen_iface_t, uct_iface_t);

static uct_iface_ops_t uct_xen_iface_ops = {
    .ep_am_short              = uct_xen_ep_am_short,
    .ep_am_short_iov          = uct_xen_ep_am_short_iov,
    .ep_am_bcopy              = uct_xen_ep_am_bcopy,
    .ep_am_zcopy              = (uct_ep_am_zcopy_func_t)ucs_empty_function_return_unsupported,
    .ep_put_short             = uct_xen_ep_put_short,
    .ep_put_bcopy             = uct_xen_ep_put_bcopy,
    .ep_put_zcopy             = uct_xen_ep_put_zcopy,
    .ep_get_bcopy             = uct_xen_ep_get_bcopy,
    .ep_get_zcopy             = uct_xen_ep_get_zcopy,
    .ep_pending_add           = uct_xen_ep_pending_add,
    .ep_pending_purge         = uct_xen_ep_pending_purge,
    .ep_flush                 = uct_xen_ep_flush,
    .ep_fence                 = uct_sm_ep_fence,
    .ep_check                 = (uct_ep_check_func_t)ucs_empty_function_return_unsupported,
    .ep_create                = UCS_CLASS_NEW_FUNC_NAME(uct_xen_ep_t),
    .ep_destroy               = UCS_CLASS_DELETE_FUNC_NAME(uct_xen_ep_t),
    .ep_get_address           = (uct_ep_get_address_func_t)ucs_empty_function_return_unsupported,
    .ep_connect_to_ep         = (uct_ep_connect_to_ep_func_t)ucs_empty_function_return_unsupported,
    .iface_flush              = uct_xen_iface_flush,
    .iface_fence              = uct_sm_iface_fence,
    .iface_progress_enable    = uct_base_iface_progress_enable,
    .iface_progress_disable   = uct_base_iface_progress_disable,
    .iface_progress           = uct_xen_iface_progress,
    .iface_event_fd_get       = uct_xen_iface_event_fd_get,
    .iface_event_arm          = uct_xen_iface_event_arm,
    .iface_close              = UCS_CLASS_DELETE_FUNC_NAME(uct_xen_iface_t),
    .iface_query              = uct_xen_iface_query,
    .iface_get_device_address = uct_xen_iface_get_device_address,
    .iface_get_address        = uct_xen_iface_get_address,
    .iface_is_reachable       = uct_xen_iface_is_reachable
};
