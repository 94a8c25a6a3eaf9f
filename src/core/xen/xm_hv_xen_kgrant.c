/*
 * xm_hv_xen_kgrant.c - the xen backend's grant_mem: existing memory granted
 * by our kernel module, /dev/xenmpi_grant (kernel/, docs/kernel.md), opened
 * on first use; its calls are counted like the libraries'.  Each errno the
 * module returns is explained with its cause and fix.
 */
#include "xm_hv_xen_int.h"
#include "xm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../../../kernel/uapi/xenmpi_grant.h"

_Static_assert(XM_DOMID_FIRST_RESERVED == XENMPI_GRANT_DOMID_FIRST_RESERVED,
               "xm_hv.h and the xenmpi_grant uapi disagree on Xen's first "
               "reserved domain id");

/* The module's device, opened on first use (a failed open is remembered:
 * loading the module later needs a new handle). */
static int kgrant_fd(xm_hv_xen_t *x)
{
    int fd = __atomic_load_n(&x->kgrant_fd, __ATOMIC_ACQUIRE), expect = -1, err;

    if (fd >= 0)
        return fd;
    err = __atomic_load_n(&x->kgrant_err, __ATOMIC_RELAXED);
    if (err)
        return err;
    count_call(x);
    fd = open(XENMPI_GRANT_DEVICE, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        if (err == ENOENT || err == ENODEV || err == ENXIO) {
            xm_error("%s: %s: the xenmpi_grant module is not loaded: modprobe "
                     "xenmpi_grant (build it with `make kmod` or dkms, see "
                     "docs/kernel.md)", XENMPI_GRANT_DEVICE, strerror(err));
            err = ENODEV;
        } else if (err == EACCES || err == EPERM)
            xm_error("%s: %s: the device is root-only by default; give it to "
                     "this user's group with a udev rule (docs/kernel.md)",
                     XENMPI_GRANT_DEVICE, strerror(err));
        else
            xm_error("%s: %s", XENMPI_GRANT_DEVICE, strerror(err));
        __atomic_store_n(&x->kgrant_err, -err, __ATOMIC_RELAXED);
        return -err;
    }
    /* two threads may race here: one fd wins, the other is closed */
    if (!__atomic_compare_exchange_n(&x->kgrant_fd, &expect, fd, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        close(fd);
        fd = expect;
    }
    return fd;
}

int xm_xen_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr,
                     unsigned count, int writable, uint64_t *handle,
                     uint32_t *refs)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    struct xenmpi_grant_req req;
    int fd, err;

    if (count == 0 || (uintptr_t)addr % XM_PAGE_SIZE) {
        xm_peer_error("grant_mem of %u page(s) at %p: %s", count, addr,
                 count ? "address not page aligned" : "no pages");
        return -EINVAL;
    }
    if (peer >= XM_DOMID_FIRST_RESERVED || peer == hv->domid) {
        xm_peer_error("grant_mem to domain %u: %s", peer,
                 peer == hv->domid ? "that is this domain" : "not a domain id");
        return -EINVAL;
    }
    fd = kgrant_fd(x);
    if (fd < 0)
        return fd;
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.flags = writable ? 0 : XENMPI_GRANT_READONLY;
    req.domid = peer;
    req.nr_refs = count;
    req.addr = (uint64_t)(uintptr_t)addr;
    req.len = (uint64_t)count * XENMPI_GRANT_PAGE_SIZE;
    req.refs = (uint64_t)(uintptr_t)refs;
    count_call(x);
    if (ioctl(fd, XENMPI_IOC_GRANT, &req) == 0) {
        *handle = req.handle;
        return 0;
    }
    err = errno ? errno : EIO;
    switch (err) {
    case EFAULT:
        xm_peer_error("grant_mem of %u page(s) at %p: part of the range is not "
                 "mapped", count, addr);
        return -EFAULT;
    case EACCES:
        xm_peer_error("grant_mem of %u page(s) at %p: the range is mapped %s",
                 count, addr, writable ? "without PROT_WRITE (a read-write "
                 "grant needs it)" : "PROT_NONE");
        return -EFAULT;
    case E2BIG:
        xm_peer_error("grant_mem of %u page(s): more than the module's limits "
                 "(max_pages_per_file, max_pages, max_pages_per_domain in "
                 "/sys/module/xenmpi_grant/parameters) ever allow", count);
        return -EINVAL;
    case EDQUOT:
        xm_peer_error("grant_mem of %u page(s) to domain %u: the module's page limit is "
                 "reached (max_pages_per_file, max_pages, or max_pages_per_domain "
                 "for that domain, in /sys/module/xenmpi_grant/parameters); end "
                 "grants or raise it", count, peer);
        return -ENOSPC;
    case ENOSPC:
        xm_peer_error("grant_mem of %u page(s) to domain %u: this domain's grant "
                 "table is full (Xen's gnttab_max_frames)", count, peer);
        return -ENOSPC;
    case ENOMEM:
        xm_peer_error("grant_mem of %u page(s): RLIMIT_MEMLOCK would be exceeded "
                 "(ulimit -l; or CAP_IPC_LOCK), or out of memory", count);
        return -ENOMEM;
    case EOPNOTSUPP:
        xm_peer_error("grant_mem of %u page(s) at %p: the memory cannot be "
                 "granted%s (I/O or PFN mappings; docs/kernel.md)", count,
                 addr, writable ? " read-write: file-backed memory other "
                 "than shmem or hugetlbfs," : "");
        return -EOPNOTSUPP;
    case EEXIST:
        xm_peer_error("grant_mem of %u page(s) at %p to domain %u: a page is "
                 "already in a live grant to that domain", count, addr, peer);
        return -EEXIST;
    case EPERM:
        xm_error("grant_mem: %s was opened by another process (a forked "
                 "child must open its own hv handle)", XENMPI_GRANT_DEVICE);
        return -EPERM;
    default:
        xm_peer_error("grant_mem of %u page(s) at %p to domain %u: %s", count,
                 addr, peer, strerror(err));
        return -err;
    }
}

int xm_xen_grant_mem_end(xm_hv_t *hv, uint64_t handle)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    struct xenmpi_grant_end req;
    int fd = __atomic_load_n(&x->kgrant_fd, __ATOMIC_ACQUIRE), err;

    if (fd < 0)
        return -ENOENT;   /* nothing was ever granted through this handle */
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.handle = handle;
    count_call(x);
    if (ioctl(fd, XENMPI_IOC_END, &req) == 0) {
        if (req.deferred)
            xm_debug("grant_mem_end %llu: %u ref(s) still mapped by the "
                     "peer; the module ends them when it unmaps",
                     (unsigned long long)handle, req.deferred);
        return 0;
    }
    err = errno ? errno : EIO;
    if (err == ENOENT || err == EINVAL)
        return -ENOENT;
    xm_peer_error("grant_mem_end %llu: %s", (unsigned long long)handle,
             strerror(err));
    return -err;
}

int xm_xen_grant_mem_stale(xm_hv_t *hv, uint64_t *handles, unsigned max)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    struct xenmpi_grant_stale req;
    int fd = __atomic_load_n(&x->kgrant_fd, __ATOMIC_ACQUIRE), err;

    if (fd < 0 || max == 0)
        return 0;   /* nothing was ever granted through this handle */
    if (__atomic_load_n(&x->kgrant_old, __ATOMIC_RELAXED))
        return -ENOTSUP;
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.max = max < XENMPI_GRANT_STALE_MAX ? max : XENMPI_GRANT_STALE_MAX;
    req.handles = (uint64_t)(uintptr_t)handles;
    count_call(x);
    if (ioctl(fd, XENMPI_IOC_STALE, &req) == 0)
        return req.nr <= req.max ? (int)req.nr : -EIO;
    err = errno ? errno : EIO;
    if (err == ENOTTY) {
        xm_warn("%s predates stale-grant reports (module api < 2): zero-copy "
                "registrations are not kept across messages; load the module "
                "of this release", XENMPI_GRANT_DEVICE);
        __atomic_store_n(&x->kgrant_old, 1, __ATOMIC_RELAXED);
        return -ENOTSUP;
    }
    xm_error("%s: reading stale grants: %s", XENMPI_GRANT_DEVICE, strerror(err));
    return -err;
}
