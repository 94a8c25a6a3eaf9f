/*
 * xm_hv_xen_evtchn.c - the xen backend's event channels: libxenevtchn.
 */
#include "xm_hv_xen_int.h"
#include "xm_log.h"

#include <errno.h>
#include <string.h>

/* process-wide count of notifications, beside xm_xen_total_calls */
static uint64_t total_notifies;

uint64_t xm_hv_xen_total_notifies(void)
{
    return __atomic_load_n(&total_notifies, __ATOMIC_RELAXED);
}

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

int xm_xen_evt_alloc_unbound(xm_hv_t *hv, uint32_t remote, uint32_t *port)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    xenevtchn_port_or_error_t p;

    count_call(x);
    p = xenevtchn_bind_unbound_port(x->evtchn, remote);
    if (p < 0)
        return evt_fail("allocate unbound event channel for domain", remote,
                        errno ? errno : EIO);
    *port = (uint32_t)p;
    return 0;
}

int xm_xen_evt_bind(xm_hv_t *hv, uint32_t remote, uint32_t remote_port,
                    uint32_t *local_port)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
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

int xm_xen_evt_notify(xm_hv_t *hv, uint32_t port)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    count_call(x);
    __atomic_fetch_add(&total_notifies, 1, __ATOMIC_RELAXED);
    if (xenevtchn_notify(x->evtchn, port)) {
        int err = errno ? errno : EIO;
        xm_error("notify event channel port %u: %s", port, strerror(err));
        return -err;
    }
    return 0;
}

int xm_xen_evt_fd(xm_hv_t *hv)
{
    return xenevtchn_fd(to_xen_hv(hv)->evtchn);
}

int xm_xen_evt_pending(xm_hv_t *hv, uint32_t *port)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
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

int xm_xen_evt_unmask(xm_hv_t *hv, uint32_t port)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    count_call(x);
    if (xenevtchn_unmask(x->evtchn, port)) {
        int err = errno ? errno : EIO;
        xm_error("unmask event channel port %u: %s", port, strerror(err));
        return -err;
    }
    return 0;
}

int xm_xen_evt_close(xm_hv_t *hv, uint32_t port)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    count_call(x);
    if (xenevtchn_unbind(x->evtchn, port)) {
        int err = errno ? errno : EIO;
        xm_error("close event channel port %u: %s", port, strerror(err));
        return -err;
    }
    return 0;
}
