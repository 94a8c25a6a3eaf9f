/* xm_hv.c - backend selection. */
#include "xm_hv.h"
#include "xm_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int xen_present(void)
{
    return access("/dev/xen/evtchn", F_OK) == 0 ||
           access("/proc/xen/capabilities", F_OK) == 0;
}

int xm_hv_open(xm_hv_t **out)
{
    const char *want = getenv("XENMPI_BACKEND");
    static int said_sim;

    if (!want || !*want || !strcmp(want, "auto")) {
        if (xen_present())
            want = "xen";
        else {
            if (!said_sim++)
                xm_info("no /dev/xen here: running on the sim backend "
                        "(set XENMPI_BACKEND=sim to silence, =xen to require Xen)");
            want = "sim";
        }
    }
    if (!strcmp(want, "sim"))
        return xm_hv_sim_ops.open(out);
    if (!strcmp(want, "xen")) {
#ifdef XM_HAVE_XEN
        return xm_hv_xen_ops.open(out);
#else
        xm_error("XENMPI_BACKEND=xen but this build has no xen backend: "
                 "install libxen-dev and rebuild");
        return -ENOTSUP;
#endif
    }
    xm_error("XENMPI_BACKEND=%s is not one of auto, xen, sim", want);
    return -EINVAL;
}

void xm_hv_close(xm_hv_t *hv)
{
    if (hv)
        hv->ops->close(hv);
}

const char *xm_hv_backend_name(const xm_hv_t *hv)
{
    return hv->ops->name;
}
