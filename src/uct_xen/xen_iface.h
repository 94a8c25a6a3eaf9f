/*
 * xen_iface.h - the UCT transport "xen": types shared by the md, iface and
 * ep files.
 *
 * The transport is an adapter: one iface owns one core endpoint
 * (xm_endpoint_t), one UCT ep sends on one core channel (xm_channel_t) to a
 * peer endpoint.  Handshake, rings, validation of peer data, notification
 * and liveness all live in src/core; nothing here touches shared memory.
 */
#ifndef UCT_XEN_IFACE_H
#define UCT_XEN_IFACE_H

#ifdef HAVE_CONFIG_H
#  include "config.h"   /* UCX's own config.h (ucx_info -b), not the project's */
#endif

#include <uct/base/uct_iface.h>
#include <uct/base/uct_md.h>
#include <uct/sm/base/sm_iface.h>
#include <ucs/datastruct/khash.h>
#include <ucs/datastruct/list.h>
#include <ucs/datastruct/queue.h>
#include <ucs/type/class.h>

#include "xm_channel.h"
#include "xm_wire.h"
#include "xm_xfer.h"

#include "xm_topo.h"

#define UCT_XEN_TL_NAME   "xen"
#define UCT_XEN_DEV_NAME  "xen0"
#define UCT_XEN_AM_HDR    sizeof(uint64_t)  /* AM short: header, then payload */
#define UCT_XEN_SEG_SIZE_AUTO (32768 + 64)  /* UCX_XEN_SEG_SIZE=auto, room permitting */
/* UCX_XEN_ZCOPY_MIN=auto: UCP's own rendezvous threshold (never below the
 * segment); which of grant copy and the rings then moves a rendezvous is
 * measured per channel (xm_xfer.h, XM_XFER_ZC_AUTO) */
#define UCT_XEN_ZCOPY_MIN_AUTO 0

/* RMA and zero-copy are the core's (xm_xfer.h): puts and gets through the
 * ring, grant copy, remote completion.  The packed rkey is the core's
 * xm_rkey_t (docs/wire.md); rkey_unpack keeps it as the uct_rkey_t. */

/* Device address: which host (hash of the host identity) and which domain.
 * Two ifaces reach each other only on the same host. */
typedef struct uct_xen_dev_addr {
    uint64_t host_hash;
    uint32_t domid;
} UCS_S_PACKED uct_xen_dev_addr_t;

/* Iface address: the core endpoint id inside that domain, and its key
 * (which a connection request must carry: only those given the address
 * connect). */
typedef struct uct_xen_iface_addr {
    uint32_t ep;
    uint64_t key;
} UCS_S_PACKED uct_xen_iface_addr_t;

typedef enum {
    UCT_XEN_BACKEND_AUTO,
    UCT_XEN_BACKEND_XEN,
    UCT_XEN_BACKEND_SIM,
    UCT_XEN_BACKEND_LAST
} uct_xen_backend_t;

typedef struct uct_xen_iface_config {
    uct_iface_config_t super;
    unsigned           ring_pages;  /* 0: the core's default */
    size_t             seg_size;
    size_t             max_short;
    int                backend;     /* uct_xen_backend_t */
    int                events;      /* advertise wakeup events */
    int                numa_bind;   /* bind own rings and buffers locally */
    int                zcopy;       /* UCS_CONFIG_ON, _OFF or _AUTO (UCX_XEN_ZCOPY) */
    size_t             zcopy_min;   /* min_zcopy advertised for them */
    size_t             grant_cache; /* soft cap on pages kept granted (bytes) */
    size_t             peer_cache;  /* cap on peers' refs kept (bytes) */
    size_t             push_min;    /* smallest get split with the owner */
} uct_xen_iface_config_t;

typedef struct uct_xen_iface {
    uct_base_iface_t     super;
    xm_hv_t              *hv;
    xm_endpoint_t        *xep;
    xm_ep_addr_t         addr;         /* the core endpoint's address */
    ucs_list_link_t      ep_list;      /* every uct_xen_ep_t of this iface */
    unsigned             pending_eps;  /* eps with a non-empty pending queue */
    unsigned             flush_waits;  /* ep flushes waiting for completion */
    int                  ep_err_pending; /* a channel went down: report it */
    xm_xfer_t            *xfer;        /* RMA, zero-copy, remote completion */
    xm_topo_bind_t       *bind;        /* NUMA node(s) of the opening vCPU; NULL: no binding */
    int                  dist_class;   /* xm_topo_class_t to the nearest other
                                        * domain (dom0's data), -1: unknown */
    struct {
        size_t           seg_size;     /* max AM bcopy, validated */
        size_t           max_short;    /* max AM short incl. the 8-byte header */
        int              events;       /* advertise EVENT_* */
        size_t           rma_max;      /* max put/get payload; 0: no RMA */
        int              zcopy;        /* advertise GET/PUT_ZCOPY */
        size_t           zcopy_min;    /* their min_zcopy */
        double           latency;      /* estimates for iface query, from */
        double           bandwidth;    /* dist_class (bytes per second) */
    } config;
} uct_xen_iface_t;

typedef struct uct_xen_ep {
    uct_base_ep_t        super;
    xm_channel_t         *ch;
    ucs_queue_head_t     pending_q;
    int                  in_dispatch;  /* our pending queue is being dispatched */
    int                  err_reported; /* the channel's failure was reported */
    ucs_queue_head_t     flush_q;      /* flushes waiting for remote completion */
    ucs_list_link_t      list;         /* in uct_xen_iface_t::ep_list */
} uct_xen_ep_t;

/* New sends must not overtake queued requests; a request being dispatched
 * from that queue must be allowed to send (the dispatcher has already taken
 * it off the queue, so "not empty" would refer to the ones behind it). */
#define UCT_XEN_EP_MUST_QUEUE(_ep) \
    (!ucs_queue_is_empty(&(_ep)->pending_q) && !(_ep)->in_dispatch)

/* The core address of the peer behind a UCT device and iface address. */
static inline xm_ep_addr_t uct_xen_peer_addr(const uct_device_addr_t *dev_addr,
                                             const uct_iface_addr_t *iface_addr)
{
    uct_xen_dev_addr_t d;
    uct_xen_iface_addr_t i;
    xm_ep_addr_t a;

    memcpy(&d, dev_addr, sizeof(d));
    memcpy(&i, iface_addr, sizeof(i));
    a.host_hash = d.host_hash;
    a.domid     = d.domid;
    a.ep        = i.ep;
    a.key       = i.key;
    return a;
}

extern uct_component_t uct_xen_component;
extern ucs_config_field_t uct_xen_iface_config_table[];

UCS_CLASS_DECLARE_NEW_FUNC(uct_xen_iface_t, uct_iface_t, uct_md_h, uct_worker_h,
                           const uct_iface_params_t*, const uct_iface_config_t*);

UCS_CLASS_DECLARE_NEW_FUNC(uct_xen_ep_t, uct_ep_t, const uct_ep_params_t*);
UCS_CLASS_DECLARE_DELETE_FUNC(uct_xen_ep_t, uct_ep_t);

ucs_status_t uct_xen_ep_am_short(uct_ep_h tl_ep, uint8_t id, uint64_t header,
                                 const void *payload, unsigned length);
ucs_status_t uct_xen_ep_am_short_iov(uct_ep_h tl_ep, uint8_t id,
                                     const uct_iov_t *iov, size_t iovcnt);
ssize_t uct_xen_ep_am_bcopy(uct_ep_h tl_ep, uint8_t id,
                            uct_pack_callback_t pack_cb, void *arg,
                            unsigned flags);
ucs_status_t uct_xen_ep_pending_add(uct_ep_h tl_ep, uct_pending_req_t *req,
                                    unsigned flags);
void uct_xen_ep_pending_purge(uct_ep_h tl_ep, uct_pending_purge_callback_t cb,
                              void *arg);
ucs_status_t uct_xen_ep_flush(uct_ep_h tl_ep, unsigned flags,
                              uct_completion_t *comp);

ucs_status_t uct_xen_ep_put_short(uct_ep_h tl_ep, const void *buffer,
                                  unsigned length, uint64_t remote_addr,
                                  uct_rkey_t rkey);
ssize_t uct_xen_ep_put_bcopy(uct_ep_h tl_ep, uct_pack_callback_t pack_cb,
                             void *arg, uint64_t remote_addr, uct_rkey_t rkey);
ucs_status_t uct_xen_ep_get_bcopy(uct_ep_h tl_ep, uct_unpack_callback_t unpack_cb,
                                  void *arg, size_t length, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp);

ucs_status_t uct_xen_ep_get_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov,
                                  size_t iovcnt, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp);
ucs_status_t uct_xen_ep_put_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov,
                                  size_t iovcnt, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp);

/* Drop an ep's waiting flushes without completing them (ep destroy). */
void uct_xen_ep_flush_drop(uct_xen_ep_t *ep);
/* The core's description of a registration of ours (xen_md.c). */
void uct_xen_memh_key(uct_mem_h memh, xm_rkey_t *key);

/* An iface flush queued on an ep's pending queue (behind its requests):
 * run it, or (the ep's queue is purged) fail it. */
ucs_status_t uct_xen_iface_flush_pending(uct_pending_req_t *req);
void uct_xen_iface_flush_cancel(uct_pending_req_t *req);

/* Run the ep's pending queue once its channel is no longer connecting (a
 * failed channel's requests run too, and see the error). */
unsigned uct_xen_ep_dispatch_pending(uct_xen_ep_t *ep, uct_xen_iface_t *iface);

/* Whether the iface may sleep on behalf of this ep's queued requests: 0
 * when progress can dispatch them now (in which case UCP must not sleep);
 * on a full ring it asks the peer to notify us when it frees space. */
int uct_xen_ep_arm_pending(uct_xen_ep_t *ep, uct_xen_iface_t *iface);

/* Report every ep whose channel went down to the iface's error handler. */
unsigned uct_xen_iface_report_errors(uct_xen_iface_t *iface);

/* Channel state as a UCT status for the send path. */
ucs_status_t uct_xen_chan_status(xm_channel_t *ch);

/* Complete the ep's waiting flushes whose operations completed (with
 * status: all of them, the channel is down); returns how many completed. */
unsigned uct_xen_ep_flush_progress(uct_xen_ep_t *ep, ucs_status_t status);
/* Would the oldest waiting flush of this ep complete now? */
int uct_xen_ep_flush_ready(uct_xen_ep_t *ep);
/* Whether anything started on this ep's channel is not complete yet (the
 * core's remote completion, xm_xfer_idle) or a flush of it waits: the one
 * predicate ep and iface flush both use.  Queued requests are the caller's
 * to check. */
int uct_xen_ep_outstanding(uct_xen_ep_t *ep);

#endif
