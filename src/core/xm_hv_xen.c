/*
 * xm_hv_xen.c - the xen backend of the hv ops table (see xm_hv.h).
 *
 * Grants go through libxengnttab (gntalloc to share, gntdev to map and to
 * grant-copy), doorbells through libxenevtchn, rendezvous through
 * libxenstore.  Every call that reaches /dev/xen or xenstored is counted in
 * the handle so tests can assert that the fast path makes none.  Existing
 * memory is granted by our kernel module, /dev/xenmpi_grant (kernel/,
 * docs/kernel.md), opened on first use; its calls are counted alike.
 */
#include "xm_hv.h"
#include "xm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>
#include <xentoollog.h>

#include "../../kernel/uapi/xenmpi_grant.h"

/* Grant-table ABI values (xen/grant_table.h), kept local so this file does
 * not depend on the public Xen headers' include order. */
#define XM_GNTST_okay              0
#define XM_GNTST_general_error    (-1)
#define XM_GNTST_bad_domain       (-2)
#define XM_GNTST_bad_gntref       (-3)
#define XM_GNTST_permission_denied (-8)
#define XM_GNTST_bad_copy_arg    (-10)
#define XM_GNTST_eagain          (-12)
#define XM_GNTCOPY_source_gref    (1u << 0)
#define XM_GNTCOPY_dest_gref      (1u << 1)

/* xenstore wire protocol: payload of one request (XENSTORE_PAYLOAD_MAX). */
#define XM_XS_PAYLOAD_MAX 4096u

/* Segments handed to one gntdev grant-copy ioctl. */
#define XM_XEN_COPY_BATCH 16

typedef struct xm_hv_xen {
    struct xm_hv base;
    xengnttab_handle *gnttab;
    xengntshr_handle *gntshr;
    xenevtchn_handle *evtchn;
    struct xs_handle *xs;
    uint64_t calls;
    int kgrant_fd;   /* /dev/xenmpi_grant, -1 until the first grant_mem */
    int kgrant_err;  /* its open failed: the negative errno, sticky */
} xm_hv_xen_t;

static inline xm_hv_xen_t *X(xm_hv_t *hv) { return (xm_hv_xen_t *)hv; }

/* process-wide totals, for programs that cannot reach the handle (a UCP
 * application under the UCX transport) */
static uint64_t total_calls, total_notifies;

static inline void count_call(xm_hv_xen_t *x)
{
    __atomic_fetch_add(&x->calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&total_calls, 1, __ATOMIC_RELAXED);
}

uint64_t xm_hv_xen_total_calls(void)
{
    return __atomic_load_n(&total_calls, __ATOMIC_RELAXED);
}

uint64_t xm_hv_xen_total_notifies(void)
{
    return __atomic_load_n(&total_notifies, __ATOMIC_RELAXED);
}

uint64_t xm_hv_xen_call_count(const xm_hv_t *hv)
{
    const xm_hv_xen_t *x = (const xm_hv_xen_t *)hv;
    return __atomic_load_n(&x->calls, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* The Xen libraries log to stderr by default; route them to our log at
 * debug level: the place that detects the error logs it once, with a fix. */

static void lib_vmessage(struct xentoollog_logger *lg, xentoollog_level level,
                         int errnoval, const char *context, const char *fmt,
                         va_list ap)
{
    char msg[512];
    (void)lg;
    (void)level;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (errnoval >= 0)
        xm_debug("%s: %s: %s", context ? context : "xen", msg,
                 strerror(errnoval));
    else
        xm_debug("%s: %s", context ? context : "xen", msg);
}

static void lib_destroy(struct xentoollog_logger *lg) { (void)lg; }

static xentoollog_logger lib_logger = {
    .vmessage = lib_vmessage,
    .progress = NULL,
    .destroy = lib_destroy,
};

/* ------------------------------------------------------------------ */

static const char *open_fix(int err, const char *module)
{
    static __thread char buf[160];
    switch (err) {
    case EACCES:
    case EPERM:
        return "run as root (the /dev/xen nodes are root-only)";
    case ENOENT:
    case ENODEV:
    case ENXIO:
        snprintf(buf, sizeof(buf),
                 "load %s (modprobe %s) or run inside a Xen guest; "
                 "XENMPI_BACKEND=sim runs without Xen", module, module);
        return buf;
    default:
        return "check that this is a Xen guest with the xen device modules loaded";
    }
}

static void xen_close(xm_hv_t *hv)
{
    xm_hv_xen_t *x = X(hv);
    if (!x)
        return;
    if (x->xs) {
        struct xs_handle *h = x->xs;
        x->xs = NULL;
        xs_close(h);
    }
    if (x->evtchn) {
        xenevtchn_handle *h = x->evtchn;
        x->evtchn = NULL;
        xenevtchn_close(h);
    }
    if (x->gntshr) {
        xengntshr_handle *h = x->gntshr;
        x->gntshr = NULL;
        xengntshr_close(h);
    }
    if (x->gnttab) {
        xengnttab_handle *h = x->gnttab;
        x->gnttab = NULL;
        xengnttab_close(h);
    }
    if (x->kgrant_fd >= 0) {
        /* the module ends every grant of the file (docs/kernel.md) */
        close(x->kgrant_fd);
        x->kgrant_fd = -1;
    }
    x->base.ops = NULL;
    free(x);
}

static int xen_open(xm_hv_t **out)
{
    xm_hv_xen_t *x;
    int err, fd, fl;
    char *dom;
    unsigned int len;

    *out = NULL;
    x = calloc(1, sizeof(*x));
    if (!x) {
        xm_error("xen backend: out of memory");
        return -ENOMEM;
    }
    x->base.ops = &xm_hv_xen_ops;
    x->base.domid = XM_DOMID_INVALID;
    x->kgrant_fd = -1;

    count_call(x);
    x->gnttab = xengnttab_open(&lib_logger, 0);
    if (!x->gnttab) {
        err = errno ? errno : ENODEV;
        xm_error("/dev/xen/gntdev: %s: %s", strerror(err),
                 open_fix(err, "xen-gntdev"));
        goto fail;
    }
    count_call(x);
    x->gntshr = xengntshr_open(&lib_logger, 0);
    if (!x->gntshr) {
        err = errno ? errno : ENODEV;
        xm_error("/dev/xen/gntalloc: %s: %s", strerror(err),
                 open_fix(err, "xen-gntalloc"));
        goto fail;
    }
    count_call(x);
    x->evtchn = xenevtchn_open(&lib_logger, 0);
    if (!x->evtchn) {
        err = errno ? errno : ENODEV;
        xm_error("/dev/xen/evtchn: %s: %s", strerror(err),
                 open_fix(err, "xen-evtchn"));
        goto fail;
    }
    fd = xenevtchn_fd(x->evtchn);
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        err = errno;
        xm_error("/dev/xen/evtchn: cannot set O_NONBLOCK: %s", strerror(err));
        goto fail;
    }
    count_call(x);
    x->xs = xs_open(0);
    if (!x->xs) {
        err = errno ? errno : ENODEV;
        xm_error("xenstore: cannot open (/dev/xen/xenbus or the xenstored "
                 "socket): %s: %s", strerror(err),
                 (err == EACCES || err == EPERM)
                     ? "run as root"
                     : "mount xenfs on /proc/xen (mount -t xenfs xenfs /proc/xen) "
                       "and check that xenstored runs in dom0");
        goto fail;
    }
    count_call(x);
    dom = xs_read(x->xs, XBT_NULL, "domid", &len);
    if (!dom) {
        err = errno ? errno : ENOENT;
        xm_error("xenstore: cannot read this domain's \"domid\" node: %s: "
                 "the toolstack writes it when it creates the domain "
                 "(xen-init-dom0 for dom0)", strerror(err));
        goto fail;
    } else {
        char *end;
        unsigned long v = strtoul(dom, &end, 10);
        if (end == dom || *end || v >= 0x7ff0) {
            xm_error("xenstore: \"domid\" node holds \"%s\", not a domain id",
                     dom);
            free(dom);
            err = EPROTO;
            goto fail;
        }
        x->base.domid = (uint32_t)v;
        free(dom);
    }
    xm_debug("xen backend open: domid %u", x->base.domid);
    *out = &x->base;
    return 0;

fail:
    xen_close(&x->base);
    return -err;
}

static int xen_self_domid(xm_hv_t *hv, uint32_t *domid)
{
    *domid = hv->domid;
    return 0;
}

/* ------------------------------------------------------------------ */
/* store */

static int check_path(const char *path)
{
    if (!path || !*path) {
        xm_error("xenstore: empty path");
        return -EINVAL;
    }
    if (strlen(path) >= XM_STORE_MAX_PATH) {
        xm_error("xenstore: path %.64s... is longer than %u characters",
                 path, XM_STORE_MAX_PATH - 1);
        return -ENAMETOOLONG;
    }
    return 0;
}

static int xs_err(void)
{
    int e = errno;
    return e > 0 ? -e : -EIO;
}

static int xen_store_read(xm_hv_t *hv, const char *path, char **val,
                          size_t *len)
{
    xm_hv_xen_t *x = X(hv);
    unsigned int l = 0;
    char *v;
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    v = xs_read(x->xs, XBT_NULL, path, &l);
    if (!v) {
        rc = xs_err();
        /* ENOENT is the normal "not there yet"; callers decide. */
        if (rc != -ENOENT)
            xm_debug("xenstore read %s: %s", path, strerror(-rc));
        return rc;
    }
    *val = v;
    if (len)
        *len = l;
    return 0;
}

static int xen_store_write(xm_hv_t *hv, const char *path, const void *val,
                           size_t len)
{
    xm_hv_xen_t *x = X(hv);
    int rc = check_path(path);

    if (rc)
        return rc;
    /* xenstored's limit is on the whole request: path, NUL and value */
    if (len > XM_STORE_MAX_VALUE ||
        len + strlen(path) + 1 > XM_XS_PAYLOAD_MAX) {
        xm_error("xenstore write %s: %zu bytes; a request (path + value) "
                 "may hold at most %u bytes", path, len, XM_XS_PAYLOAD_MAX);
        return -E2BIG;
    }
    count_call(x);
    if (!xs_write(x->xs, XBT_NULL, path, val, (unsigned int)len)) {
        rc = xs_err();
        if (rc == -EACCES)
            xm_error("xenstore write %s: permission denied: the owner of the "
                     "node (or of its parent, to create it) must grant this "
                     "domain (%u) write access", path, hv->domid);
        else if (rc == -ENOSPC || rc == -EDQUOT)
            xm_error("xenstore write %s: %s: this domain's xenstore quota is "
                     "exhausted", path, strerror(-rc));
        else
            xm_error("xenstore write %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

static int xen_store_remove(xm_hv_t *hv, const char *path)
{
    xm_hv_xen_t *x = X(hv);
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    if (!xs_rm(x->xs, XBT_NULL, path)) {
        rc = xs_err();
        if (rc != -ENOENT)
            xm_error("xenstore remove %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

static int xen_store_list(xm_hv_t *hv, const char *path, char ***names,
                          unsigned *count)
{
    xm_hv_xen_t *x = X(hv);
    unsigned int n = 0;
    char **dir, **out = NULL;
    int rc = check_path(path);

    *names = NULL;
    *count = 0;
    if (rc)
        return rc;
    count_call(x);
    dir = xs_directory(x->xs, XBT_NULL, path, &n);
    if (!dir) {
        rc = xs_err();
        if (rc != -ENOENT)
            xm_error("xenstore list %s: %s", path, strerror(-rc));
        return rc;
    }
    if (n) {
        /* libxenstore returns one block; the contract wants each name
         * malloc'ed on its own */
        out = calloc(n, sizeof(*out));
        for (unsigned i = 0; out && i < n; i++) {
            out[i] = strdup(dir[i]);
            if (!out[i]) {
                while (i--)
                    free(out[i]);
                free(out);
                out = NULL;
            }
        }
        if (!out) {
            free(dir);
            xm_error("xenstore list %s: out of memory", path);
            return -ENOMEM;
        }
    }
    free(dir);
    *names = out;
    *count = n;
    return 0;
}

static int xen_store_set_perms(xm_hv_t *hv, const char *path,
                               const xm_store_perm_t *perms, unsigned count)
{
    xm_hv_xen_t *x = X(hv);
    struct xs_permissions xp[XM_STORE_MAX_PERMS];
    int rc = check_path(path);

    if (rc)
        return rc;
    if (count == 0 || count > XM_STORE_MAX_PERMS) {
        xm_error("xenstore set perms %s: %u entries (1..%u allowed)", path,
                 count, XM_STORE_MAX_PERMS);
        return -EINVAL;
    }
    for (unsigned i = 0; i < count; i++) {
        unsigned p = 0;
        if (perms[i].perm & ~(unsigned)XM_PERM_BOTH) {
            xm_error("xenstore set perms %s: bad permission %#x for domain %u",
                     path, perms[i].perm, perms[i].domid);
            return -EINVAL;
        }
        if (perms[i].perm & XM_PERM_READ)
            p |= XS_PERM_READ;
        if (perms[i].perm & XM_PERM_WRITE)
            p |= XS_PERM_WRITE;
        xp[i].id = perms[i].domid;
        xp[i].perms = p;
    }
    count_call(x);
    if (!xs_set_permissions(x->xs, XBT_NULL, path, xp, count)) {
        rc = xs_err();
        if (rc == -EACCES || rc == -EPERM)
            xm_error("xenstore set perms %s: %s: only the node's owner (or "
                     "dom0) may change its permissions", path, strerror(-rc));
        else
            xm_error("xenstore set perms %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

static int xen_store_watch(xm_hv_t *hv, const char *path, const char *token)
{
    xm_hv_xen_t *x = X(hv);
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    if (!xs_watch(x->xs, path, token)) {
        rc = xs_err();
        if (rc == -E2BIG || rc == -ENOSPC)
            xm_error("xenstore watch %s: %s: too many watches for this domain "
                     "(xenstored's per-domain watch quota)", path,
                     strerror(-rc));
        else
            xm_error("xenstore watch %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

static int xen_store_unwatch(xm_hv_t *hv, const char *path, const char *token)
{
    xm_hv_xen_t *x = X(hv);
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    if (!xs_unwatch(x->xs, path, token)) {
        rc = xs_err();
        if (rc != -ENOENT)
            xm_error("xenstore unwatch %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

static int xen_store_watch_fd(xm_hv_t *hv)
{
    xm_hv_xen_t *x = X(hv);
    int fd = xs_fileno(x->xs);
    if (fd < 0) {
        int rc = xs_err();
        xm_error("xenstore: no watch fd: %s", strerror(-rc));
        return rc;
    }
    return fd;
}

static int xen_store_read_watch(xm_hv_t *hv, char **path, char **token)
{
    xm_hv_xen_t *x = X(hv);
    char **vec;
    int rc;

    errno = 0;
    vec = xs_check_watch(x->xs);
    if (!vec) {
        rc = xs_err();
        if (rc == -EAGAIN || errno == 0)
            return -EAGAIN;
        xm_error("xenstore: reading a watch event failed: %s", strerror(-rc));
        return rc;
    }
    count_call(x);
    *path = strdup(vec[XS_WATCH_PATH]);
    *token = strdup(vec[XS_WATCH_TOKEN]);
    free(vec);
    if (!*path || !*token) {
        free(*path);
        free(*token);
        *path = *token = NULL;
        xm_error("xenstore: out of memory reading a watch event");
        return -ENOMEM;
    }
    return 0;
}

static int xen_host_id(xm_hv_t *hv, char *buf, size_t len)
{
    char path[XM_STORE_MAX_PATH];
    char *v = NULL;
    size_t l = 0;
    int rc;

    snprintf(path, sizeof(path), "/local/domain/%u/%s", hv->domid,
             XM_HOSTID_KEY);
    rc = xen_store_read(hv, path, &v, &l);
    if (rc)
        return rc; /* -ENOENT: the common layer explains how to provide it */
    if (l == 0) {
        free(v);
        return -ENOENT;
    }
    if (!buf || l + 1 > len) {
        xm_error("host identity at %s is %zu bytes, longer than the %zu "
                 "bytes available", path, l, len ? len - 1 : 0);
        free(v);
        return -ERANGE;
    }
    memcpy(buf, v, l);
    buf[l] = '\0';
    free(v);
    return 0;
}

/* ------------------------------------------------------------------ */
/* grants */

static int gntst_errno(int st)
{
    switch (st) {
    case XM_GNTST_okay:              return 0;
    case XM_GNTST_bad_domain:        return -ESRCH;
    case XM_GNTST_bad_gntref:        return -ENOENT;
    case XM_GNTST_permission_denied: return -EPERM;
    case XM_GNTST_bad_copy_arg:      return -EINVAL;
    case XM_GNTST_eagain:            return -EAGAIN;
    default:                         return -EPERM;
    }
}

static int xen_share(xm_hv_t *hv, uint32_t peer, unsigned count, int writable,
                     int notify_off, int notify_port, void **addr,
                     uint32_t *refs)
{
    xm_hv_xen_t *x = X(hv);
    void *p;
    int err;

    *addr = NULL;
    if (count == 0) {
        xm_error("share to domain %u: zero pages requested", peer);
        return -EINVAL;
    }
    if (notify_off >= (int)XM_PAGE_SIZE) {
        xm_error("share to domain %u: notify offset %d outside the page",
                 peer, notify_off);
        return -EINVAL;
    }
    count_call(x);
    if (notify_off >= 0 || notify_port != -1) {
        if (count != 1) {
            xm_error("share to domain %u: unmap notify needs a single page, "
                     "%u requested", peer, count);
            return -EINVAL;
        }
        p = xengntshr_share_page_notify(
            x->gntshr, peer, refs, writable ? 1 : 0,
            notify_off >= 0 ? (uint32_t)notify_off : (uint32_t)-1,
            notify_port != -1 ? (evtchn_port_t)notify_port : (evtchn_port_t)-1);
    } else {
        p = xengntshr_share_pages(x->gntshr, peer, count, refs,
                                  writable ? 1 : 0);
    }
    if (!p) {
        err = errno ? errno : ENOMEM;
        if (err == ENOSPC || err == ENOMEM)
            xm_error("share %u page(s) to domain %u: %s: the grant table is "
                     "full or gntalloc's limit is reached; raise "
                     "/sys/module/xen_gntalloc/parameters/limit (default "
                     "1024) or Xen's gnttab_max_frames, or use fewer shared "
                     "pages", count, peer, strerror(err));
        else if (err == EINVAL && notify_port != -1)
            xm_error("share to domain %u: %s: notify port %d is not an event "
                     "channel bound by this process", peer, strerror(err),
                     notify_port);
        else
            xm_error("share %u page(s) to domain %u: %s", count, peer,
                     strerror(err));
        return -err;
    }
    *addr = p;
    return 0;
}

static int xen_unshare(xm_hv_t *hv, void *addr, unsigned count)
{
    xm_hv_xen_t *x = X(hv);
    if (!addr || count == 0)
        return -EINVAL;
    count_call(x);
    if (xengntshr_unshare(x->gntshr, addr, count)) {
        int err = errno ? errno : EINVAL;
        xm_error("unshare %u page(s) at %p: %s", count, addr, strerror(err));
        return -err;
    }
    return 0;
}

/* gntdev reports every failed map as EINVAL; ask Xen for the real reason
 * with a one-byte grant copy of each ref (error path only). */
static int diagnose_map(xm_hv_xen_t *x, uint32_t owner, unsigned count,
                        const uint32_t *refs, int writable, unsigned *bad)
{
    xengnttab_grant_copy_segment_t seg;
    unsigned char byte;

    for (unsigned i = 0; i < count; i++) {
        memset(&seg, 0, sizeof(seg));
        seg.source.foreign.ref = refs[i];
        seg.source.foreign.domid = (uint16_t)owner;
        seg.source.foreign.offset = 0;
        seg.dest.virt = &byte;
        seg.len = 1;
        seg.flags = XM_GNTCOPY_source_gref;
        count_call(x);
        if (xengnttab_grant_copy(x->gnttab, 1, &seg))
            return 0;
        if (seg.status != XM_GNTST_okay) {
            *bad = i;
            return gntst_errno(seg.status);
        }
    }
    /* every ref is readable: the writable mapping was what failed */
    return writable ? -EACCES : 0;
}

static int xen_map(xm_hv_t *hv, uint32_t owner, unsigned count,
                   const uint32_t *refs, int writable, int notify_port,
                   void **addr)
{
    xm_hv_xen_t *x = X(hv);
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *p;
    int err, why;
    unsigned bad = 0;

    *addr = NULL;
    if (count == 0 || owner >= 0x7ff0) {
        xm_error("map from domain %u: bad request (%u pages)", owner, count);
        return -EINVAL;
    }
    count_call(x);
    if (notify_port != -1) {
        if (count != 1) {
            xm_error("map from domain %u: unmap notify needs a single page, "
                     "%u requested", owner, count);
            return -EINVAL;
        }
        p = xengnttab_map_grant_ref_notify(x->gnttab, owner, refs[0], prot,
                                           (uint32_t)-1,
                                           (evtchn_port_t)notify_port);
    } else {
        p = xengnttab_map_domain_grant_refs(x->gnttab, count, owner,
                                            (uint32_t *)refs, prot);
    }
    if (p) {
        *addr = p;
        return 0;
    }
    err = errno ? errno : EINVAL;
    if (err == ENOMEM || err == ENOSPC) {
        xm_error("map %u grant(s) from domain %u: %s: gntdev or Xen's "
                 "maptrack table is full; unmap unused grants or raise "
                 "gnttab_max_maptrack_frames", count, owner, strerror(err));
        return -err;
    }
    why = diagnose_map(x, owner, count, refs, writable, &bad);
    switch (why) {
    case -ESRCH:
        xm_error("map grant %u from domain %u: no such domain (it is gone "
                 "or the domid is wrong)", refs[bad], owner);
        return why;
    case -ENOENT:
    case -EPERM:
        xm_error("map grant %u from domain %u: %s: the ref was not granted "
                 "to this domain (%u) or has been revoked", refs[bad], owner,
                 strerror(-why), hv->domid);
        return why;
    case -EACCES:
        xm_error("map %u grant(s) from domain %u writable: a grant is "
                 "read-only; map it read-only", count, owner);
        return why;
    case -EAGAIN:
        xm_error("map grant %u from domain %u: Xen says try again",
                 refs[bad], owner);
        return why;
    default:
        break;
    }
    if (err == EINVAL && notify_port != -1)
        xm_error("map grant %u from domain %u: %s: notify port %d may not be "
                 "an event channel bound by this process", refs[0], owner,
                 strerror(err), notify_port);
    else
        xm_error("map %u grant(s) from domain %u: %s", count, owner,
                 strerror(err));
    return -err;
}

static int xen_unmap(xm_hv_t *hv, void *addr, unsigned count)
{
    xm_hv_xen_t *x = X(hv);
    if (!addr || count == 0)
        return -EINVAL;
    count_call(x);
    if (xengnttab_unmap(x->gnttab, addr, count)) {
        int err = errno ? errno : EINVAL;
        xm_error("unmap %u page(s) at %p: %s", count, addr, strerror(err));
        return -err;
    }
    return 0;
}

static int xen_copy(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned count)
{
    xm_hv_xen_t *x = X(hv);
    xengnttab_grant_copy_segment_t xs[XM_XEN_COPY_BATCH];
    unsigned idx[XM_XEN_COPY_BATCH];
    unsigned i = 0, n;
    int first = 0;

    while (i < count) {
        n = 0;
        for (; i < count && n < XM_XEN_COPY_BATCH; i++) {
            xm_copy_seg_t *s = &segs[i];
            xengnttab_grant_copy_segment_t *g = &xs[n];

            if ((unsigned)s->offset + s->len > XM_PAGE_SIZE ||
                s->domid >= 0x7ff0 || !s->local ||
                (s->dir != XM_COPY_FROM_FOREIGN &&
                 s->dir != XM_COPY_TO_FOREIGN)) {
                s->status = -EINVAL;
                continue;
            }
            memset(g, 0, sizeof(*g));
            if (s->dir == XM_COPY_FROM_FOREIGN) {
                g->source.foreign.ref = s->ref;
                g->source.foreign.offset = s->offset;
                g->source.foreign.domid = (uint16_t)s->domid;
                g->dest.virt = s->local;
                g->flags = XM_GNTCOPY_source_gref;
            } else {
                g->source.virt = s->local;
                g->dest.foreign.ref = s->ref;
                g->dest.foreign.offset = s->offset;
                g->dest.foreign.domid = (uint16_t)s->domid;
                g->flags = XM_GNTCOPY_dest_gref;
            }
            g->len = s->len;
            idx[n++] = i;
        }
        if (n == 0)
            continue;
        count_call(x);
        if (xengnttab_grant_copy(x->gnttab, n, xs)) {
            int err = errno ? errno : EIO;
            /* the ioctl itself failed (bad local address, no gntdev) */
            for (unsigned k = 0; k < n; k++)
                segs[idx[k]].status = (int16_t)-err;
        } else {
            for (unsigned k = 0; k < n; k++)
                segs[idx[k]].status = (int16_t)gntst_errno(xs[k].status);
        }
    }
    for (i = 0; i < count; i++) {
        if (segs[i].status) {
            first = segs[i].status;
            xm_debug("grant copy segment %u (%s domain %u ref %u off %u len "
                     "%u): %s", i,
                     segs[i].dir == XM_COPY_TO_FOREIGN ? "to" : "from",
                     segs[i].domid, segs[i].ref, segs[i].offset, segs[i].len,
                     strerror(-first));
            break;
        }
    }
    if (first) {
        const xm_copy_seg_t *s = &segs[i];
        if (first == -EINVAL && (unsigned)s->offset + s->len > XM_PAGE_SIZE)
            xm_error("grant copy: segment %u crosses the foreign page "
                     "(offset %u + len %u > %u)", i, s->offset, s->len,
                     XM_PAGE_SIZE);
        else if (first == -ESRCH)
            xm_error("grant copy %s domain %u: no such domain (gone or wrong "
                     "domid)", s->dir == XM_COPY_TO_FOREIGN ? "to" : "from",
                     s->domid);
        else
            xm_error("grant copy %s domain %u ref %u: %s: the ref is not "
                     "granted to this domain%s, or was revoked",
                     s->dir == XM_COPY_TO_FOREIGN ? "to" : "from", s->domid,
                     s->ref, strerror(-first),
                     s->dir == XM_COPY_TO_FOREIGN ? " writable" : "");
    }
    return first;
}

/* ------------------------------------------------------------------ */
/* grants of existing memory: the xenmpi_grant module */

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

static int xen_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr,
                         unsigned count, int writable, uint64_t *handle,
                         uint32_t *refs)
{
    xm_hv_xen_t *x = X(hv);
    struct xenmpi_grant_req req;
    int fd, err;

    if (count == 0 || (uintptr_t)addr % XM_PAGE_SIZE) {
        xm_error("grant_mem of %u page(s) at %p: %s", count, addr,
                 count ? "address not page aligned" : "no pages");
        return -EINVAL;
    }
    if (peer >= XENMPI_GRANT_DOMID_FIRST_RESERVED || peer == hv->domid) {
        xm_error("grant_mem to domain %u: %s", peer,
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
        xm_error("grant_mem of %u page(s) at %p: part of the range is not "
                 "mapped", count, addr);
        return -EFAULT;
    case EACCES:
        xm_error("grant_mem of %u page(s) at %p: the range is mapped %s",
                 count, addr, writable ? "without PROT_WRITE (a read-write "
                 "grant needs it)" : "PROT_NONE");
        return -EFAULT;
    case E2BIG:
        xm_error("grant_mem of %u page(s): more than the module's limits "
                 "(max_pages_per_file, max_pages in "
                 "/sys/module/xenmpi_grant/parameters) ever allow", count);
        return -EINVAL;
    case EDQUOT:
        xm_error("grant_mem of %u page(s): the module's page limit is "
                 "reached (max_pages_per_file, max_pages in "
                 "/sys/module/xenmpi_grant/parameters); end grants or raise "
                 "it", count);
        return -ENOSPC;
    case ENOSPC:
        xm_error("grant_mem of %u page(s) to domain %u: this domain's grant "
                 "table is full (Xen's gnttab_max_frames)", count, peer);
        return -ENOSPC;
    case ENOMEM:
        xm_error("grant_mem of %u page(s): RLIMIT_MEMLOCK would be exceeded "
                 "(ulimit -l; or CAP_IPC_LOCK), or out of memory", count);
        return -ENOMEM;
    case EOPNOTSUPP:
        xm_error("grant_mem of %u page(s) at %p: the memory cannot be "
                 "granted%s (I/O or PFN mappings; docs/kernel.md)", count,
                 addr, writable ? " read-write: file-backed memory other "
                 "than shmem or hugetlbfs," : "");
        return -EOPNOTSUPP;
    case EEXIST:
        xm_error("grant_mem of %u page(s) at %p to domain %u: a page is "
                 "already in a live grant to that domain", count, addr, peer);
        return -EEXIST;
    case EPERM:
        xm_error("grant_mem: %s was opened by another process (a forked "
                 "child must open its own hv handle)", XENMPI_GRANT_DEVICE);
        return -EPERM;
    default:
        xm_error("grant_mem of %u page(s) at %p to domain %u: %s", count,
                 addr, peer, strerror(err));
        return -err;
    }
}

static int xen_grant_mem_end(xm_hv_t *hv, uint64_t handle)
{
    xm_hv_xen_t *x = X(hv);
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
    xm_error("grant_mem_end %llu: %s", (unsigned long long)handle,
             strerror(err));
    return -err;
}

/* ------------------------------------------------------------------ */
/* event channels */

static int evt_fail(const char *what, uint32_t a, int err)
{
    if (err == ENOSPC || err == EMFILE)
        xm_error("%s %u: %s: no free event channel ports in this domain",
                 what, a, strerror(err));
    else if (err == ESRCH)
        xm_error("%s %u: no such domain (gone or wrong domid)", what, a);
    else
        xm_error("%s %u: %s", what, a, strerror(err));
    return -err;
}

static int xen_evt_alloc_unbound(xm_hv_t *hv, uint32_t remote, uint32_t *port)
{
    xm_hv_xen_t *x = X(hv);
    xenevtchn_port_or_error_t p;

    count_call(x);
    p = xenevtchn_bind_unbound_port(x->evtchn, remote);
    if (p < 0)
        return evt_fail("allocate unbound event channel for domain", remote,
                        errno ? errno : EIO);
    *port = (uint32_t)p;
    return 0;
}

static int xen_evt_bind(xm_hv_t *hv, uint32_t remote, uint32_t remote_port,
                        uint32_t *local_port)
{
    xm_hv_xen_t *x = X(hv);
    xenevtchn_port_or_error_t p;

    count_call(x);
    p = xenevtchn_bind_interdomain(x->evtchn, remote, remote_port);
    if (p < 0) {
        int err = errno ? errno : EIO;
        if (err == EINVAL)
            xm_error("bind to port %u of domain %u: %s: the port is not an "
                     "unbound channel offered to this domain (%u)",
                     remote_port, remote, strerror(err), hv->domid);
        else
            evt_fail("bind event channel of domain", remote, err);
        return -err;
    }
    *local_port = (uint32_t)p;
    return 0;
}

static int xen_evt_notify(xm_hv_t *hv, uint32_t port)
{
    xm_hv_xen_t *x = X(hv);
    count_call(x);
    __atomic_fetch_add(&total_notifies, 1, __ATOMIC_RELAXED);
    if (xenevtchn_notify(x->evtchn, port)) {
        int err = errno ? errno : EIO;
        xm_error("notify event channel port %u: %s", port, strerror(err));
        return -err;
    }
    return 0;
}

static int xen_evt_fd(xm_hv_t *hv)
{
    return xenevtchn_fd(X(hv)->evtchn);
}

static int xen_evt_pending(xm_hv_t *hv, uint32_t *port)
{
    xm_hv_xen_t *x = X(hv);
    xenevtchn_port_or_error_t p;

    count_call(x);
    p = xenevtchn_pending(x->evtchn);
    if (p < 0) {
        int err = errno ? errno : EIO;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return -EAGAIN;
        xm_error("reading pending event channels: %s", strerror(err));
        return -err;
    }
    *port = (uint32_t)p;
    return 0;
}

static int xen_evt_unmask(xm_hv_t *hv, uint32_t port)
{
    xm_hv_xen_t *x = X(hv);
    count_call(x);
    if (xenevtchn_unmask(x->evtchn, port)) {
        int err = errno ? errno : EIO;
        xm_error("unmask event channel port %u: %s", port, strerror(err));
        return -err;
    }
    return 0;
}

static int xen_evt_close(xm_hv_t *hv, uint32_t port)
{
    xm_hv_xen_t *x = X(hv);
    count_call(x);
    if (xenevtchn_unbind(x->evtchn, port)) {
        int err = errno ? errno : EIO;
        xm_error("close event channel port %u: %s", port, strerror(err));
        return -err;
    }
    return 0;
}

const xm_hv_ops_t xm_hv_xen_ops = {
    .name = "xen",
    .open = xen_open,
    .close = xen_close,
    .self_domid = xen_self_domid,
    .host_id = xen_host_id,
    .share = xen_share,
    .unshare = xen_unshare,
    .map = xen_map,
    .unmap = xen_unmap,
    .copy = xen_copy,
    .grant_mem = xen_grant_mem,
    .grant_mem_end = xen_grant_mem_end,
    .evt_alloc_unbound = xen_evt_alloc_unbound,
    .evt_bind = xen_evt_bind,
    .evt_notify = xen_evt_notify,
    .evt_fd = xen_evt_fd,
    .evt_pending = xen_evt_pending,
    .evt_unmask = xen_evt_unmask,
    .evt_close = xen_evt_close,
    .store_read = xen_store_read,
    .store_write = xen_store_write,
    .store_remove = xen_store_remove,
    .store_list = xen_store_list,
    .store_set_perms = xen_store_set_perms,
    .store_watch = xen_store_watch,
    .store_unwatch = xen_store_unwatch,
    .store_watch_fd = xen_store_watch_fd,
    .store_read_watch = xen_store_read_watch,
};
