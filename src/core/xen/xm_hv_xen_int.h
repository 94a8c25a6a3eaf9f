/*
 * xm_hv_xen_int.h - the xen backend's insides, shared by its files, one per
 * thing it wraps:
 *
 *   xm_hv_xen.c         open/close, the call counters, the libraries' log
 *   xm_hv_xen_gnttab.c  libxengnttab: share, map, grant copy, and Xen's
 *                       grant statuses as errno values
 *   xm_hv_xen_kgrant.c  the xenmpi_grant module: grant_mem and the causes
 *                       behind its errno values
 *   xm_hv_xen_evtchn.c  libxenevtchn
 *   xm_hv_xen_store.c   libxenstore, and the host identity read from it
 */
#ifndef XM_HV_XEN_INT_H
#define XM_HV_XEN_INT_H

#include "xm_hv.h"

#include <stddef.h>
#include <stdint.h>

#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>

typedef struct xm_hv_xen {
    struct xm_hv base;
    xengnttab_handle *gnttab;
    xengntshr_handle *gntshr;
    xenevtchn_handle *evtchn;
    struct xs_handle *xs;
    uint64_t calls;
    int kgrant_old;  /* the module answered STALE with ENOTTY (api 1) */
    int kgrant_fd;   /* /dev/xenmpi_grant, -1 until the first grant_mem */
    int kgrant_err;  /* its open failed: the negative errno, sticky */
} xm_hv_xen_t;

static inline xm_hv_xen_t *to_xen_hv(xm_hv_t *hv) { return (xm_hv_xen_t *)hv; }

/* Shared by the backend's files only: not exported from libxenmpi. */
#pragma GCC visibility push(hidden)

/* process-wide total of counted calls (xm_hv_xen.c), for programs that
 * cannot reach the handle (a UCP application under the UCX transport) */
extern uint64_t xm_xen_total_calls;
/* xm_hv_xen_trace_calls: log each counted call, by the function making it */
extern int xm_xen_trace;
void xm_xen_trace_call(const char *fn);

static inline void count_call_in(xm_hv_xen_t *x, const char *fn)
{
    __atomic_fetch_add(&x->calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&xm_xen_total_calls, 1, __ATOMIC_RELAXED);
    if (__builtin_expect(__atomic_load_n(&xm_xen_trace, __ATOMIC_RELAXED), 0))
        xm_xen_trace_call(fn);
}
#define count_call(x) count_call_in((x), __func__)

/* xm_hv_xen_gnttab.c */
int xm_xen_share(xm_hv_t *hv, uint32_t peer, unsigned count, int writable,
                 int notify_off, int notify_port, void **addr,
                 uint32_t *refs);
int xm_xen_unshare(xm_hv_t *hv, void *addr, unsigned count);
int xm_xen_map(xm_hv_t *hv, uint32_t owner, unsigned count,
               const uint32_t *refs, int writable, int notify_port,
               void **addr);
int xm_xen_unmap(xm_hv_t *hv, void *addr, unsigned count);
int xm_xen_copy(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned count);

/* xm_hv_xen_kgrant.c */
int xm_xen_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr,
                     unsigned count, int writable, uint64_t *handle,
                     uint32_t *refs);
int xm_xen_grant_mem_end(xm_hv_t *hv, uint64_t handle);
int xm_xen_grant_mem_stale(xm_hv_t *hv, uint64_t *handles, unsigned max);

/* xm_hv_xen_evtchn.c */
int xm_xen_evt_alloc_unbound(xm_hv_t *hv, uint32_t remote, uint32_t *port);
int xm_xen_evt_bind(xm_hv_t *hv, uint32_t remote, uint32_t remote_port,
                    uint32_t *local_port);
int xm_xen_evt_notify(xm_hv_t *hv, uint32_t port);
int xm_xen_evt_fd(xm_hv_t *hv);
int xm_xen_evt_pending(xm_hv_t *hv, uint32_t *port);
int xm_xen_evt_unmask(xm_hv_t *hv, uint32_t port);
int xm_xen_evt_close(xm_hv_t *hv, uint32_t port);

/* xm_hv_xen_store.c */
int xm_xen_store_read(xm_hv_t *hv, const char *path, char **val,
                      size_t *len);
int xm_xen_store_write(xm_hv_t *hv, const char *path, const void *val,
                       size_t len);
int xm_xen_store_remove(xm_hv_t *hv, const char *path);
int xm_xen_store_list(xm_hv_t *hv, const char *path, char ***names,
                      unsigned *count);
int xm_xen_store_create(xm_hv_t *hv, const char *path, const void *val, size_t len,
                        const xm_store_perm_t *perms, unsigned count);
int xm_xen_store_owner(xm_hv_t *hv, const char *path, uint32_t *domid);
int xm_xen_store_set_perms(xm_hv_t *hv, const char *path,
                           const xm_store_perm_t *perms, unsigned count);
int xm_xen_store_watch(xm_hv_t *hv, const char *path, const char *token);
int xm_xen_store_unwatch(xm_hv_t *hv, const char *path, const char *token);
int xm_xen_store_watch_fd(xm_hv_t *hv);
int xm_xen_store_read_watch(xm_hv_t *hv, char **path, char **token);
int xm_xen_host_id(xm_hv_t *hv, char *buf, size_t len);

#pragma GCC visibility pop

#endif
