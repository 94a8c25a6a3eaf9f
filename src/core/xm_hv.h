/*
 * xm_hv.h - the hypervisor interface: one ops table, two backends.
 *
 * Everything above this header (channel, zero-copy, topology, the UCX and
 * MPICH adapters) talks to Xen only through these calls.  The xen backend
 * (xen/) maps them onto libxengnttab, libxenevtchn and libxenstore; the sim
 * backend (sim/) reproduces the same semantics between plain Linux
 * processes so every layer above runs unchanged on a laptop or in CI.
 *
 * Conventions: every call returns 0 (or a non-negative value where stated)
 * on success and a negative errno on failure.  The place that first detects
 * an error logs it; callers propagate.
 */
#ifndef XM_HV_H
#define XM_HV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XM_PAGE_SIZE 4096u
#define XM_DOMID_INVALID 0xffffffffu
/* Xen's DOMID_FIRST_RESERVED: ids from here on (DOMID_SELF, DOMID_IO, ...)
 * name no domain. */
#define XM_DOMID_FIRST_RESERVED 0x7ff0u

typedef struct xm_hv xm_hv_t;

/* len bytes from the kernel's generator (getrandom, not blocking: before
 * the pool is ready, its early output).  0, or -errno (ENOSYS: no
 * getrandom; EPERM: a seccomp filter) with buf unchanged.  For secrets a
 * peer must not guess: endpoint keys, registration ids. */
int xm_random_bytes(void *buf, size_t len);

/* Grant copy: one side is memory of this process, the other a page that a
 * foreign domain granted us.  A segment may not cross a page boundary on the
 * foreign side (offset + len <= XM_PAGE_SIZE), exactly as GNTTABOP_copy. */
enum {
    XM_COPY_FROM_FOREIGN = 0, /* foreign page -> local */
    XM_COPY_TO_FOREIGN = 1,   /* local -> foreign page (needs a rw grant) */
};

typedef struct xm_copy_seg {
    void *local;
    uint32_t domid;  /* owner of the foreign page */
    uint32_t ref;    /* grant ref of the foreign page */
    uint16_t offset; /* offset inside the foreign page */
    uint16_t len;
    uint8_t dir;     /* XM_COPY_* */
    int16_t status;  /* out: 0 or -errno for this segment */
} xm_copy_seg_t;

/* Store permissions, xenstore's model: perms[0] names the owner and the
 * access of every domain not listed; further entries grant one domain. */
enum { XM_PERM_NONE = 0, XM_PERM_READ = 1, XM_PERM_WRITE = 2, XM_PERM_BOTH = 3 };
typedef struct xm_store_perm {
    uint32_t domid;
    uint32_t perm;
} xm_store_perm_t;

#define XM_STORE_MAX_PERMS 8
#define XM_STORE_MAX_VALUE 4096 /* xenstore payload: path + NUL + value */
#define XM_STORE_MAX_PATH 256

typedef struct xm_hv_ops {
    const char *name;
    int (*open)(xm_hv_t **out);
    void (*close)(xm_hv_t *hv);

    int (*self_domid)(xm_hv_t *hv, uint32_t *domid);
    int (*host_id)(xm_hv_t *hv, char *buf, size_t len);

    /* Owner side: allocate count zeroed pages, grant each to peer.
     * notify_off >= 0 (only with count == 1): when this process unmaps the
     * share or dies, the byte at notify_off is cleared; notify_port != -1:
     * an event is sent on that local port at the same moment. */
    int (*share)(xm_hv_t *hv, uint32_t peer, unsigned count, int writable,
                 int notify_off, int notify_port, void **addr, uint32_t *refs);
    int (*unshare)(xm_hv_t *hv, void *addr, unsigned count);

    /* Peer side: map refs granted by owner (contiguous).  notify_port != -1
     * (only with count == 1): an event is sent on that local port when this
     * process unmaps or dies. */
    int (*map)(xm_hv_t *hv, uint32_t owner, unsigned count,
               const uint32_t *refs, int writable, int notify_port,
               void **addr);
    int (*unmap)(xm_hv_t *hv, void *addr, unsigned count);

    /* Batched grant copy; returns 0 when every segment succeeded, else
     * the first failing segment's status (all statuses are filled in). */
    int (*copy)(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned count);

    /* Owner side: grant count existing pages of this process, starting at
     * addr (page aligned), to peer; read-only unless writable.  Nothing is
     * copied or moved: the peer's grant copies read and write these very
     * pages.  refs[count] receives one ref per page; *handle names the grant
     * for grant_mem_end.  Errors: -EINVAL (count 0 or too large, unaligned
     * addr, peer invalid or ourselves), -EFAULT (range not mapped, or not
     * writable for a writable grant), -ENOSPC (grant table full), -EEXIST
     * (a live grant_mem grant to the same peer covers one of these
     * addresses, even if other pages are mapped there now), -ENOMEM,
     * -ENODEV (xen: the xenmpi_grant module is not loaded).  On error
     * nothing stays granted.
     * The refs are ordinary grant refs: segments of copy work on them
     * exactly as on refs from share.  Closing the handle, or the process's
     * death, ends every grant_mem grant it made.  Keep the pages mapped
     * until grant_mem_end (xen: the module pins them, docs/kernel.md; sim: a
     * copy of a page its owner unmapped fails with -EIO).  Backend notes:
     * xen passes the module's other errors through as negative errno
     * (-EOPNOTSUPP, -EPERM, ...; its EACCES becomes -EFAULT, E2BIG
     * -EINVAL and EDQUOT -ENOSPC); sim reaches these refs by grant copy
     * only (map fails with -EOPNOTSUPP). */
    int (*grant_mem)(xm_hv_t *hv, uint32_t peer, void *addr, unsigned count,
                     int writable, uint64_t *handle, uint32_t *refs);
    /* End a grant_mem grant: -ENOENT for an unknown handle. */
    int (*grant_mem_end)(xm_hv_t *hv, uint64_t handle);
    /* Live grant_mem grants whose pages no longer show this process's
     * memory: since they were made, pages of their range were unmapped or
     * replaced (munmap, mremap, madvise(MADV_DONTNEED)); the peer would
     * read the old pages.  Writes up to max handles, each reported once,
     * and returns how many (0: nothing new).  xen: the module's MMU
     * notifiers (XENMPI_IOC_STALE, docs/kernel.md); -ENOTSUP when the
     * loaded module predates them and cannot tell.  sim: always 0, its
     * grants follow the mapping (a copy reads what is mapped there now). */
    int (*grant_mem_stale)(xm_hv_t *hv, uint64_t *handles, unsigned max);

    int (*evt_alloc_unbound)(xm_hv_t *hv, uint32_t remote, uint32_t *port);
    int (*evt_bind)(xm_hv_t *hv, uint32_t remote, uint32_t remote_port,
                    uint32_t *local_port);
    int (*evt_notify)(xm_hv_t *hv, uint32_t port);
    int (*evt_fd)(xm_hv_t *hv);
    /* 0 and *port when an event is pending (the port stays masked until
     * evt_unmask), -EAGAIN when none. */
    int (*evt_pending)(xm_hv_t *hv, uint32_t *port);
    int (*evt_unmask)(xm_hv_t *hv, uint32_t port);
    int (*evt_close)(xm_hv_t *hv, uint32_t port);

    /* Store: absolute paths.  read returns a malloc'ed NUL-terminated copy. */
    int (*store_read)(xm_hv_t *hv, const char *path, char **val, size_t *len);
    int (*store_write)(xm_hv_t *hv, const char *path, const void *val,
                       size_t len);
    int (*store_remove)(xm_hv_t *hv, const char *path);
    /* Names of the direct children of path: a malloc'ed array of malloc'ed
     * strings (free each, then the array). */
    int (*store_list)(xm_hv_t *hv, const char *path, char ***names, unsigned *count);
    int (*store_set_perms)(xm_hv_t *hv, const char *path,
                           const xm_store_perm_t *perms, unsigned count);
    /* Write a node with these permissions in one step: no domain sees it
     * with others (xenstored: a transaction; the creator must be the
     * owner, perms[0]). */
    int (*store_create)(xm_hv_t *hv, const char *path, const void *val, size_t len,
                        const xm_store_perm_t *perms, unsigned count);
    /* The node's owner: the domain that created it (xenstored records the
     * writer; only dom0 can give a node away).  Needs read permission. */
    int (*store_owner)(xm_hv_t *hv, const char *path, uint32_t *domid);
    /* A watch fires once when set, then on every change of path or of a
     * node below it. */
    int (*store_watch)(xm_hv_t *hv, const char *path, const char *token);
    int (*store_unwatch)(xm_hv_t *hv, const char *path, const char *token);
    int (*store_watch_fd)(xm_hv_t *hv);
    /* 0 with malloc'ed path/token of one fired watch, -EAGAIN when none. */
    int (*store_read_watch)(xm_hv_t *hv, char **path, char **token);
} xm_hv_ops_t;

/* Every backend's handle starts with this. */
struct xm_hv {
    const xm_hv_ops_t *ops;
    uint32_t domid;
};

extern const xm_hv_ops_t xm_hv_sim_ops;
#ifdef XM_HAVE_XEN
extern const xm_hv_ops_t xm_hv_xen_ops;
/* Calls that reached /dev/xen or xenstored through this xen handle. */
uint64_t xm_hv_xen_call_count(const xm_hv_t *hv);
/* The same over every xen handle of the process, and event notifications. */
uint64_t xm_hv_xen_total_calls(void);
uint64_t xm_hv_xen_total_notifies(void);
/* While on, every counted call logs a warning naming the backend function
 * that made it: what reached Xen in a stretch that should make none. */
void xm_hv_xen_trace_calls(int on);
#endif

/* Open the backend chosen by XENMPI_BACKEND (auto|xen|sim; auto picks xen
 * when /dev/xen/evtchn exists, else sim and says so once at info level). */
int xm_hv_open(xm_hv_t **out);
/* The same with the choice given (NULL or "auto": detect), as an adapter's
 * own setting names it; -EINVAL for another name, with an error. */
int xm_hv_open_named(const char *backend, xm_hv_t **out);
void xm_hv_close(xm_hv_t *hv);
const char *xm_hv_backend_name(const xm_hv_t *hv);

/* Thin dispatchers so callers read naturally. */
static inline uint32_t xm_hv_domid(const xm_hv_t *hv) { return hv->domid; }
static inline int xm_hv_share(xm_hv_t *hv, uint32_t peer, unsigned count,
                              int writable, int notify_off, int notify_port,
                              void **addr, uint32_t *refs)
{ return hv->ops->share(hv, peer, count, writable, notify_off, notify_port, addr, refs); }
static inline int xm_hv_unshare(xm_hv_t *hv, void *addr, unsigned count)
{ return hv->ops->unshare(hv, addr, count); }
static inline int xm_hv_map(xm_hv_t *hv, uint32_t owner, unsigned count,
                            const uint32_t *refs, int writable,
                            int notify_port, void **addr)
{ return hv->ops->map(hv, owner, count, refs, writable, notify_port, addr); }
static inline int xm_hv_unmap(xm_hv_t *hv, void *addr, unsigned count)
{ return hv->ops->unmap(hv, addr, count); }
static inline int xm_hv_copy(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned n)
{ return hv->ops->copy(hv, segs, n); }
static inline int xm_hv_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr,
                                  unsigned count, int writable,
                                  uint64_t *handle, uint32_t *refs)
{ return hv->ops->grant_mem(hv, peer, addr, count, writable, handle, refs); }
static inline int xm_hv_grant_mem_end(xm_hv_t *hv, uint64_t handle)
{ return hv->ops->grant_mem_end(hv, handle); }
static inline int xm_hv_grant_mem_stale(xm_hv_t *hv, uint64_t *handles, unsigned max)
{ return hv->ops->grant_mem_stale(hv, handles, max); }
static inline int xm_hv_evt_alloc_unbound(xm_hv_t *hv, uint32_t r, uint32_t *p)
{ return hv->ops->evt_alloc_unbound(hv, r, p); }
static inline int xm_hv_evt_bind(xm_hv_t *hv, uint32_t r, uint32_t rp, uint32_t *lp)
{ return hv->ops->evt_bind(hv, r, rp, lp); }
static inline int xm_hv_evt_notify(xm_hv_t *hv, uint32_t port)
{ return hv->ops->evt_notify(hv, port); }
static inline int xm_hv_evt_fd(xm_hv_t *hv) { return hv->ops->evt_fd(hv); }
static inline int xm_hv_evt_pending(xm_hv_t *hv, uint32_t *port)
{ return hv->ops->evt_pending(hv, port); }
static inline int xm_hv_evt_unmask(xm_hv_t *hv, uint32_t port)
{ return hv->ops->evt_unmask(hv, port); }
static inline int xm_hv_evt_close(xm_hv_t *hv, uint32_t port)
{ return hv->ops->evt_close(hv, port); }
static inline int xm_store_read(xm_hv_t *hv, const char *path, char **val, size_t *len)
{ return hv->ops->store_read(hv, path, val, len); }
static inline int xm_store_write(xm_hv_t *hv, const char *path, const void *val, size_t len)
{ return hv->ops->store_write(hv, path, val, len); }
static inline int xm_store_remove(xm_hv_t *hv, const char *path)
{ return hv->ops->store_remove(hv, path); }
static inline int xm_store_list(xm_hv_t *hv, const char *path, char ***names, unsigned *n)
{ return hv->ops->store_list(hv, path, names, n); }
static inline int xm_store_set_perms(xm_hv_t *hv, const char *path,
                                     const xm_store_perm_t *p, unsigned n)
{ return hv->ops->store_set_perms(hv, path, p, n); }
static inline int xm_store_create(xm_hv_t *hv, const char *path, const void *val, size_t len,
                                  const xm_store_perm_t *p, unsigned n)
{ return hv->ops->store_create(hv, path, val, len, p, n); }
static inline int xm_store_owner(xm_hv_t *hv, const char *path, uint32_t *domid)
{ return hv->ops->store_owner(hv, path, domid); }
static inline int xm_store_watch(xm_hv_t *hv, const char *path, const char *token)
{ return hv->ops->store_watch(hv, path, token); }
static inline int xm_store_unwatch(xm_hv_t *hv, const char *path, const char *token)
{ return hv->ops->store_unwatch(hv, path, token); }
static inline int xm_store_watch_fd(xm_hv_t *hv) { return hv->ops->store_watch_fd(hv); }
static inline int xm_store_read_watch(xm_hv_t *hv, char **path, char **token)
{ return hv->ops->store_read_watch(hv, path, token); }

/* Host identity: XENMPI_HOST_ID overrides; otherwise the backend's source
 * (xen: the store key XM_HOSTID_KEY below the domain's home, written by
 * dom0).  Missing -> -ENOENT with an error naming both ways to provide it. */
#define XM_HOSTID_KEY "xenmpi/host-id"
int xm_hv_host_id(xm_hv_t *hv, char *buf, size_t len);
/* Its 64-bit FNV-1a hash (xm_fnv1a64, xm_wire.h), what addresses carry:
 * endpoints reach each other only when their hosts' hashes are equal. */
int xm_hv_host_hash(xm_hv_t *hv, uint64_t *hash);

#ifdef __cplusplus
}
#endif
#endif
