/*
 * xm_zc.h - zero-copy: registrations, on-demand grants of user pages, and
 * the software I/O TLB.
 *
 * The owner of memory registers it here and hands peers a description
 * (id, base, length: the adapter's rkey).  A peer that wants to read or
 * write it asks the owner, over their channel, for grants of one chunk at a
 * time; the owner grants the pages in place (xm_hv_grant_mem) and answers
 * with the refs; the peer moves the data with batched grant copies.  Both
 * sides cache: the owner its grants per (registration, channel, chunk), the
 * peer the refs it received.  That pair of caches is the software I/O TLB:
 *
 *  - a peer entry is used only under the registration id it was granted
 *    for, and ids are random 64-bit values (a repeat has odds of 2^-64),
 *    so a new registration of the same addresses never meets old refs;
 *  - the owner withdraws a grant (deregistration, its cache cap, grant
 *    table exhaustion) by sending INVAL and ends it only when the peer has
 *    acknowledged: refs are never reused while a peer may still use them;
 *  - a peer that evicts an entry says so (REL), and the owner ends it.
 *
 * Only pages lying wholly inside a registration are ever granted; the
 * partial pages at its ends, and chunks the owner cannot grant (-ENOSPC),
 * are for the caller's copy path through the ring.
 *
 * Messages (docs/wire.md, "Zero-copy messages") travel on the channel as
 * record types XM_REC_ZC_*, which the endpoint hands to this service
 * (xm_zc_attach).  Everything a peer sends is copied and validated before
 * use.  One process-wide mutex guards all state; the copy itself runs
 * under it (copies are synchronous).  It is never held across a call into
 * the channel: messages made under it are queued and sent after it is
 * dropped, by the thread of the endpoint that owns their channel.
 */
#ifndef XM_ZC_H
#define XM_ZC_H

#include "xm_channel.h"
#include "xm_hv.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XM_ZC_CHUNK_PAGES 256u
#define XM_ZC_CHUNK_BYTES ((uint64_t)XM_ZC_CHUNK_PAGES * XM_PAGE_SIZE)

/* Its messages travel on the channel as record types XM_REC_ZC_*
 * (xm_wire.h, with their parsers). */

/* Access rights given at registration. */
enum { XM_ZC_REMOTE_READ = 1, XM_ZC_REMOTE_WRITE = 2 };

/* Directions of xm_zc_copy. */
enum { XM_ZC_GET = 0, XM_ZC_PUT = 1 };

/* Per endpoint (xm_zc_attach, xm_zc_configure). */
typedef struct xm_zc_config {
    uint64_t owner_cache_bytes; /* soft cap on what the endpoint's channels keep
                                 * granted to peers; 0: 64 MiB */
    uint64_t peer_cache_bytes;  /* cap on peers' refs its channels keep; 0: 64 MiB */
    int disable;                /* refuse xm_zc_copy (-ENOTSUP): copy path only */
} xm_zc_config_t;

/* ---- registry (owner) ---- */

/* Register [addr, addr+len) with XM_ZC_REMOTE_* rights; *id is 64 random
 * bits, never 0, unlike every live one (and, with odds of 2^-64 per pair,
 * every earlier one): a peer that was not given it cannot guess it. */
int xm_zc_reg(const void *addr, size_t len, unsigned access, uint64_t *id);
/* Forget a registration: no grant is made for it again, and the grants
 * peers hold are withdrawn (from progress).  -ENOENT when unknown. */
int xm_zc_dereg(uint64_t id);
/* The owner is about to hand out registration id again (a rendezvous
 * packs its key): its grants become the most recently used, the last the
 * owner cache withdraws.  A peer's cache hits never reach the owner; this
 * is how the owner's order follows use rather than grant time.  Unknown
 * ids are ignored. */
void xm_zc_touch(uint64_t id);
/* The memory [addr, addr+len) is going away or being replaced (munmap,
 * madvise DONTNEED, mremap, a MAP_FIXED mapping over it, brk): from the
 * next lookup on, before any later peer request is served, nothing of
 * any registration that meets it is reachable in those pages.  A
 * registration all of whose pages it covers dies: copies and grant
 * requests for its id are refused (-ENOENT), the grants peers hold for
 * it are withdrawn, and only its deregistration is still accepted.  One
 * it covers only in part keeps the rest: the pages it met (rounded out
 * to whole pages) become a hole, accesses meeting a hole are refused
 * (-ENOENT) and the grants over it withdrawn; after ZC_MAX_HOLES holes
 * the next kills it.  (A registration cache's region can outgrow the
 * buffer now in use: merged with a neighbour's, which is freed and
 * trimmed while the transfer of the live part goes on.)  For a
 * memory-event hook (the UCT md calls it from UCM's VM_UNMAPPED, before
 * the memory goes): it takes only the registry list's own lock,
 * allocates nothing, and may run inside any munmap, the core's own
 * included.  It walks every registration. */
void xm_zc_invalidate(const void *addr, size_t len);
/* Owner side of the copy path: copy between buf and [addr, addr+len) of
 * registration id.  XM_ZC_REMOTE_WRITE: buf -> memory; READ: memory -> buf.
 * -ENOENT no such registration (or invalidated), -EFAULT outside it or not
 * mapped with the rights asked (a fault in the copy is caught and ends
 * it: the owner never dies of a peer's request), -EACCES not allowed.
 * Registering puts the core's SIGSEGV/SIGBUS handler in front of the
 * current one; faults outside a copy go on to that one. */
int xm_zc_reg_copy(uint64_t id, uint64_t addr, uint64_t len, unsigned access,
                   void *buf);
/* Bind registration id to peer domain dom.  From its first binding on, it
 * serves only channels whose peer is one of the domains it was bound to:
 * grant requests for it over any other channel are answered -EACCES, and
 * so are gets and puts through the ring (xm_zc_reg_copy_from).  An id
 * never bound serves every channel of the process.  Bindings only add up
 * (a registration cache hands one buffer to several peers in turn).  For
 * adapters that know whom they give an id to: the MPICH netmod binds each
 * rendezvous buffer to the receiver's domain; UCT's mkey_pack is not told
 * the peer, so the UCX transport's ids stay unbound.  -ENOENT no such live
 * registration, -ENOMEM. */
int xm_zc_bind(uint64_t id, uint32_t dom);
/* xm_zc_reg_copy for a request that came from domain dom (the xfer layer
 * serving a peer's get or put): -EACCES, before any other check, when id
 * is bound (xm_zc_bind) and not to dom. */
int xm_zc_reg_copy_from(uint32_t dom, uint64_t id, uint64_t addr, uint64_t len,
                        unsigned access, void *buf);
/* Its checks without the copy: 0 when a request from dom may access
 * [addr, addr+len) of id so (the xfer layer serving a peer's push). */
int xm_zc_reg_check_from(uint32_t dom, uint64_t id, uint64_t addr, uint64_t len,
                         unsigned access);

/* ---- registration cache (owner; for adapters without one of their own) ----
 *
 * A registration kept across uses: get returns the id of a live
 * registration of exactly [addr, addr+len) with these rights, or registers
 * one; put ends the use.  Unused registrations are kept (the grants peers
 * hold for them keep hitting) up to max_unused, least recently used
 * deregistered first.  Before handing out an id, get takes the backend's
 * stale-grant reports (xm_hv_grant_mem_stale): a registration whose pages
 * were unmapped or replaced under a grant is deregistered and registered
 * anew, so no peer reads old pages under an id handed out after the
 * change.  A backend that cannot tell (-ENOTSUP) keeps nothing: each last
 * put deregisters.  max_unused 0: the same.  The cache polls the hv of ep. */
typedef struct xm_zc_regcache xm_zc_regcache_t;
int xm_zc_regcache_open(xm_endpoint_t *ep, unsigned max_unused, xm_zc_regcache_t **out);
/* Deregisters everything (call before closing ep). */
void xm_zc_regcache_close(xm_zc_regcache_t *c);
/* -EINVAL (bad range or rights), -ENOMEM. */
int xm_zc_regcache_get(xm_zc_regcache_t *c, const void *addr, size_t len, unsigned access,
                       uint64_t *id);
/* -ENOENT: not an id of c in use. */
int xm_zc_regcache_put(xm_zc_regcache_t *c, uint64_t id);
typedef struct xm_zc_regcache_stats {
    uint64_t hits, misses;   /* gets */
    uint64_t stale;          /* registrations dropped for a stale grant */
    unsigned unused;         /* kept now, unused */
    int keeps;               /* 0: the backend cannot report stale grants */
} xm_zc_regcache_stats_t;
void xm_zc_regcache_stats(xm_zc_regcache_t *c, xm_zc_regcache_stats_t *st);

/* ---- peer ---- */

/* The next piece of [raddr, raddr+n) of the registration the peer
 * described as (base, len): its length, and in *zc whether it can go by
 * grant copy (1: wholly inside one chunk of the registration's whole
 * pages) or must take the copy path (0).  n > 0. */
size_t xm_zc_piece(uint64_t base, uint64_t len, uint64_t raddr, size_t n, int *zc);

typedef void (*xm_zc_cb_t)(void *arg, int status);

/* Copy n bytes between local and [raddr, raddr+n) of the peer's
 * registration (id, base, len) as seen over ch; the range must be one
 * piece xm_zc_piece() called zero-copy.  Returns 0 when done now (cache
 * hit), -EINPROGRESS when cb will be called from progress (0, -ENOSPC: the
 * owner could not grant, use the copy path; or another error), or a
 * negative errno now (-ENOTSUP: zero-copy disabled, or the owner is in
 * this same domain, which cannot grant to itself; -ENODEV: this
 * channel's owner answered earlier that it cannot grant at all, no
 * xenmpi_grant module; -EPIPE: the channel is down; -EINVAL: not one
 * zero-copy piece).  cb is never
 * called from inside xm_zc_copy. */
int xm_zc_copy(xm_channel_t *ch, uint64_t id, uint64_t base, uint64_t len,
               uint64_t raddr, void *local, size_t n, int dir,
               xm_zc_cb_t cb, void *arg);

/* xm_zc_copy into the peer's registration (XM_ZC_PUT) from local memory
 * that our registration src lent (serving a peer's push, xm_xfer): each
 * copy is made only while [local, local+n) is still live in src, checked
 * under the lock its deregistration and invalidation take, so memory that
 * went away meanwhile is never sent; -ENOENT (now or to cb) otherwise. */
int xm_zc_copy_from_reg(xm_channel_t *ch, uint64_t id, uint64_t base, uint64_t len,
                        uint64_t raddr, void *local, size_t n, xm_zc_cb_t cb, void *arg,
                        uint64_t src);

/* Drop every waiting copy whose cb argument is arg (an adapter tearing down
 * an operation); their cb is not called. */
void xm_zc_cancel(void *arg);

/* ---- on an endpoint ---- */

/* Serve and use zero-copy on this endpoint's channels, with its own
 * settings (NULL: the defaults): claims the XM_REC_ZC_* records
 * (xm_endpoint_add_service).  The state goes when the endpoint closes. */
int xm_zc_attach(xm_endpoint_t *ep, const xm_zc_config_t *cfg);
/* Change an attached endpoint's settings; applies to what is granted or
 * cached from now on.  -ENOENT: not attached. */
int xm_zc_configure(xm_endpoint_t *ep, const xm_zc_config_t *cfg);
/* The service xm_zc_attach adds, for a test that stands in front of it:
 * fills *svc for ep; svc->close(svc->arg) frees it if it is never added. */
int xm_zc_service(xm_endpoint_t *ep, const xm_zc_config_t *cfg, xm_service_t *svc);
extern int xm_zc_work __attribute__((visibility("hidden")));

/* ---- counters (process-wide) ---- */
typedef struct xm_zc_stats {
    uint64_t hits, misses;          /* peer cache lookups, per chunk */
    uint64_t grants, granted_pages; /* owner grants made */
    uint64_t shared;                /* owner grants handed to one more channel to the same domain */
    uint64_t revokes;               /* owner withdrawals (INVAL sent) */
    uint64_t releases;              /* peer evictions (REL sent) */
    uint64_t nospc;                 /* grant requests refused: table full */
    uint64_t zc_bytes;              /* moved by grant copy */
    uint64_t rejected;              /* malformed or stale peer messages */
    uint64_t owner_pages, peer_pages; /* granted (per channel) / cached now */
    uint64_t parked;                /* grant requests waiting for a withdrawal, now */
    uint64_t invalidated;           /* registrations killed by xm_zc_invalidate */
    uint64_t holed;                 /* pages of live registrations it took (holes) */
    uint64_t expired;               /* owner grants ended unacknowledged after INVAL */
    uint64_t fallback_bytes;        /* xm_zc_count_fallback */
    uint64_t ring_bytes;            /* xm_zc_count_ring */
    uint64_t pushed_bytes;          /* xm_zc_count_pushed: owners copied them in for us */
} xm_zc_stats_t;
void xm_zc_get_stats(xm_zc_stats_t *st);
/* Adapters add what they moved through the ring instead: because grant
 * copy could not serve it (fallback), or because the ring was measured
 * faster (ring, xm_xfer.h's XM_XFER_ZC_AUTO). */
void xm_zc_count_fallback(uint64_t bytes);
void xm_zc_count_ring(uint64_t bytes);
/* bytes an owner pushed into our memory at our request (xm_xfer_zcopy_reg) */
void xm_zc_count_pushed(uint64_t bytes);

#ifdef __cplusplus
}
#endif
#endif
