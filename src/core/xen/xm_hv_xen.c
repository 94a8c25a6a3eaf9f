/*
 * xm_hv_xen.c - the xen backend of the hv ops table (see xm_hv.h): open,
 * close and the call counters here; xm_hv_xen_int.h says where the rest is.
 *
 * Grants go through libxengnttab (gntalloc to share, gntdev to map and to
 * grant-copy), doorbells through libxenevtchn, rendezvous through
 * libxenstore.  Every call that reaches /dev/xen or xenstored is counted in
 * the handle so tests can assert that the fast path makes none.  Existing
 * memory is granted by our kernel module, /dev/xenmpi_grant (kernel/,
 * docs/kernel.md), opened on first use; its calls are counted alike.
 */
#include "xm_hv_xen_int.h"
#include "xm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xentoollog.h>

uint64_t xm_xen_total_calls;
int xm_xen_trace;

uint64_t xm_hv_xen_total_calls(void)
{
    return __atomic_load_n(&xm_xen_total_calls, __ATOMIC_RELAXED);
}

void xm_hv_xen_trace_calls(int on)
{
    __atomic_store_n(&xm_xen_trace, !!on, __ATOMIC_RELAXED);
}

void xm_xen_trace_call(const char *fn)
{
    xm_warn("a counted call while traced (xm_hv_xen_trace_calls): %s", fn);
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
    xm_hv_xen_t *x = to_xen_hv(hv);
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
        if (end == dom || *end || v >= XM_DOMID_FIRST_RESERVED) {
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

const xm_hv_ops_t xm_hv_xen_ops = {
    .name = "xen",
    .open = xen_open,
    .close = xen_close,
    .self_domid = xen_self_domid,
    .host_id = xm_xen_host_id,
    .share = xm_xen_share,
    .unshare = xm_xen_unshare,
    .map = xm_xen_map,
    .unmap = xm_xen_unmap,
    .copy = xm_xen_copy,
    .grant_mem = xm_xen_grant_mem,
    .grant_mem_end = xm_xen_grant_mem_end,
    .grant_mem_stale = xm_xen_grant_mem_stale,
    .evt_alloc_unbound = xm_xen_evt_alloc_unbound,
    .evt_bind = xm_xen_evt_bind,
    .evt_notify = xm_xen_evt_notify,
    .evt_fd = xm_xen_evt_fd,
    .evt_pending = xm_xen_evt_pending,
    .evt_unmask = xm_xen_evt_unmask,
    .evt_close = xm_xen_evt_close,
    .store_read = xm_xen_store_read,
    .store_write = xm_xen_store_write,
    .store_remove = xm_xen_store_remove,
    .store_list = xm_xen_store_list,
    .store_set_perms = xm_xen_store_set_perms,
    .store_owner = xm_xen_store_owner,
    .store_create = xm_xen_store_create,
    .store_watch = xm_xen_store_watch,
    .store_unwatch = xm_xen_store_unwatch,
    .store_watch_fd = xm_xen_store_watch_fd,
    .store_read_watch = xm_xen_store_read_watch,
};
