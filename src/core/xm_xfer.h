/*
 * xm_xfer.h - remote memory operations over an endpoint's channels: the
 * protocol both adapters (the UCX transport, the MPICH netmod) use.
 *
 *  - Emulated RMA through the ring (docs/wire.md, "RMA messages"): a put is
 *    one record the owner of the memory applies in its progress; a get is a
 *    request record answered by a reply.  The owner checks every access
 *    against its own registry (xm_zc_reg: id, range, rights) and refuses,
 *    logs and counts anything outside a live registration.  Records share
 *    the ring, and its order, with the adapter's messages.
 *  - The zero-copy operation (xm_xfer_zcopy): a transfer cut into pieces;
 *    the whole pages of the owner's registration go by grant copy through
 *    the software I/O TLB (xm_zc.h), everything else, and every piece
 *    zero-copy cannot serve (grant table full, no xenmpi_grant module in the
 *    owner's VM, the owner in our own domain, a refusal), through the ring
 *    as emulated gets and puts, in order.  It completes when every piece has.
 *  - Remote completion per channel: a mark of everything started on a
 *    channel (ring sends, gets, zero-copy operations) and the predicate
 *    "all of it completed" that ep and iface flush both build on.
 *
 * Statuses are 0 or a negative errno: -EAGAIN (ring full or connecting:
 * retry, the peer is asked to notify a sleeper), -EPIPE (the channel is
 * down), -EACCES (the owner refused: outside a registration, no right,
 * unknown id), -EIO (a malformed answer), -EMSGSIZE, -ENOMEM, -EINVAL.
 * Completion callbacks run from the endpoint's progress, never inside the
 * call that started the operation; an operation of a channel that goes
 * down completes with -EPIPE.
 */
#ifndef XM_XFER_H
#define XM_XFER_H

#include "xm_channel.h"
#include "xm_wire.h"
#include "xm_zc.h"   /* XM_ZC_GET, XM_ZC_PUT */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xm_xfer xm_xfer_t;

typedef void (*xm_xfer_cb_t)(void *arg, int status);
typedef void (*xm_xfer_unpack_t)(void *arg, const void *data, size_t len);

/* How xm_xfer_zcopy moves whole pages.  With XM_XFER_ZC_AUTO each channel
 * measures both paths, per direction and size class (below 64 KiB, 256 KiB,
 * 1 MiB, 4 MiB, larger): the time its operations of that path and class were
 * outstanding over the bytes they moved, the least of the latest few such
 * busy periods.  An operation takes grant copy unless the ring costs less
 * than 3/4 of it, and every XM_XFER_PROBE_EVERY-th of a class (less often
 * while the other costs more than twice as much) the other path, so the
 * choice follows a host whose copy speeds change (where the scheduler puts
 * the two vCPUs).  Grant copy is measured first.  The ring path needs the
 * owner's progress for every record, grant copy only for a grant it does
 * not hold yet: the ring is taken only when the peer sent the adapter a
 * record since our previous operation on the channel (a rendezvous's
 * request: the owner is progressing), never for a passive target.  Bytes a
 * chosen ring path moved count as ring_bytes in the zero-copy statistics,
 * not as fallback_bytes. */
enum { XM_XFER_ZC_OFF = 0, XM_XFER_ZC_ON = 1, XM_XFER_ZC_AUTO = 2 };
#define XM_XFER_PROBE_EVERY 32u

typedef struct xm_xfer_params {
    size_t rma_max;  /* largest put or get payload in one record; 0 or too
                      * large: what one record of every channel holds
                      * (xm_endpoint_max_msg).  With 0 the ring path of
                      * xm_xfer_zcopy cuts each channel's ranges by what
                      * that channel's rings hold (xm_chan_max_msg, and
                      * xm_chan_peer_max_msg for the answers to gets). */
    int zcopy;       /* XM_XFER_ZC_OFF: xm_xfer_zcopy takes the ring only;
                      * _ON: grant copy wherever the owner grants; _AUTO:
                      * per operation, the path measured faster (below) */
    uint64_t grant_cache, peer_cache;   /* this endpoint's zero-copy caches
                                         * (xm_zc_config_t); 0: the defaults */
    size_t push_min; /* xm_xfer_zcopy_reg: the smallest get split with the
                      * owner (0: XM_XFER_PUSH_MIN; SIZE_MAX: never) */
} xm_xfer_params_t;
#define XM_XFER_PUSH_MIN ((size_t)192 << 10)

/* Serve and issue remote memory operations on ep: claims the RMA record
 * types and attaches zero-copy (xm_zc_attach).  Detach after closing the
 * endpoint (closing it fails what is still outstanding, with -EPIPE). */
int xm_xfer_attach(xm_endpoint_t *ep, const xm_xfer_params_t *p, xm_xfer_t **out);
void xm_xfer_detach(xm_xfer_t *x);
/* The put and get payload every channel takes (rma_max as attached);
 * xm_xfer_put_reserve and xm_xfer_get take up to what ch's rings hold
 * (-EMSGSIZE beyond), at most rma_max when it was given. */
size_t xm_xfer_rma_max(const xm_xfer_t *x);
/* The smallest get xm_xfer_zcopy_reg splits with the owner (push_min as
 * attached; SIZE_MAX: never). */
size_t xm_xfer_push_min(const xm_xfer_t *x);
/* Remote accesses this owner refused so far (hostile or stale). */
uint64_t xm_xfer_refused(const xm_xfer_t *x);

/* Put: reserve ring room for a record of up to max payload bytes (the
 * caller writes the data at the returned pointer), then commit it with its
 * target and real length (or drop the reservation: nothing is sent).
 * Complete once committed: the ring is the transport's buffer and its
 * order the owner's order.  NULL and *err on failure. */
void *xm_xfer_put_reserve(xm_xfer_t *x, xm_channel_t *ch, size_t max, int *err);
void xm_xfer_put_commit(xm_xfer_t *x, xm_channel_t *ch, void *payload, const xm_rkey_t *rk,
                        uint64_t raddr, size_t len);

/* Get len bytes from [raddr, raddr+len) of the owner's registration:
 * -EINPROGRESS, then unpack (on success) and cb from progress; or an error
 * now.  tag groups operations for xm_xfer_cancel (the adapter's ep). */
int xm_xfer_get(xm_xfer_t *x, xm_channel_t *ch, const xm_rkey_t *rk, uint64_t raddr,
                size_t len, xm_xfer_unpack_t unpack, void *uarg,
                xm_xfer_cb_t cb, void *arg, const void *tag);

/* Copy len bytes between local and [raddr, raddr+len) of the owner's
 * registration (dir XM_ZC_GET: from it, XM_ZC_PUT: into it).  0 when done
 * now (no callback), -EINPROGRESS (cb later), or an error now. */
int xm_xfer_zcopy(xm_xfer_t *x, xm_channel_t *ch, const xm_rkey_t *rk, uint64_t raddr,
                  void *local, size_t len, int dir, xm_xfer_cb_t cb, void *arg,
                  const void *tag);

/* xm_xfer_zcopy into local memory inside our registration lk (a get):
 * the owner may be asked to push part of the pages into it (docs/wire.md,
 * PUSH_REQ) while we copy the rest. */
int xm_xfer_zcopy_reg(xm_xfer_t *x, xm_channel_t *ch, const xm_rkey_t *rk, uint64_t raddr,
                      void *local, const xm_rkey_t *lk, size_t len, int dir,
                      xm_xfer_cb_t cb, void *arg, const void *tag);

/* Drop the operations started with tag without calling them back. */
void xm_xfer_cancel(xm_xfer_t *x, const void *tag);

/* Everything started on ch so far, and whether all of it has completed:
 * operation records (xm_rec_is_op: not the answers and zero-copy control
 * messages the core sends on its own) processed by the peer, gets answered,
 * zero-copy operations done.  Reached is also true for a channel that is
 * down. */
typedef struct xm_xfer_mark {
    uint64_t op;
    uint32_t tx;
} xm_xfer_mark_t;
xm_xfer_mark_t xm_xfer_mark(xm_xfer_t *x, xm_channel_t *ch);
int xm_xfer_reached(xm_xfer_t *x, xm_channel_t *ch, xm_xfer_mark_t mark);
/* xm_xfer_reached(x, ch, xm_xfer_mark(x, ch)) */
int xm_xfer_idle(xm_xfer_t *x, xm_channel_t *ch);

#ifdef __cplusplus
}
#endif
#endif
