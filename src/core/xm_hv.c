/* xm_hv.c - backend selection. */
#include "xm_hv.h"
#include "xm_settings.h"
#include "xm_log.h"
#include "xm_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static int xen_present(void)
{
    return access("/dev/xen/evtchn", F_OK) == 0 ||
           access("/proc/xen/capabilities", F_OK) == 0;
}

int xm_hv_open(xm_hv_t **out)
{
    return xm_hv_open_named(xm_cfg_str(XM_CFG_BACKEND), out);
}

int xm_hv_open_named(const char *want, xm_hv_t **out)
{
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
    if (!strcmp(want, "xen"))
        return xm_hv_xen_ops.open(out);
    xm_error("backend %s is not one of auto, xen, sim (XENMPI_BACKEND)", want);
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

int xm_hv_host_hash(xm_hv_t *hv, uint64_t *hash)
{
    char host[256];
    int rc = xm_hv_host_id(hv, host, sizeof(host));

    if (rc == 0)
        *hash = xm_fnv1a64(host, strlen(host));
    return rc;
}

int xm_hv_host_id(xm_hv_t *hv, char *buf, size_t len)
{
    const char *env = xm_cfg_str(XM_CFG_HOST_ID);
    int rc;

    if (env && *env) {
        if (strlen(env) >= len) {
            xm_error("XENMPI_HOST_ID is longer than %zu characters", len - 1);
            return -ENAMETOOLONG;
        }
        strcpy(buf, env);
        return 0;
    }
    rc = hv->ops->host_id(hv, buf, len);
    if (rc == -ENOENT)
        xm_error("no host identity for domain %u: in dom0 run "
                 "'xenstore-write /local/domain/%u/" XM_HOSTID_KEY " <host name>' and "
                 "'xenstore-chmod /local/domain/%u/" XM_HOSTID_KEY " n0 r%u', or set "
                 "XENMPI_HOST_ID=<host name> in every VM of this host",
                 hv->domid, hv->domid, hv->domid, hv->domid);
    return rc;
}

int xm_random_bytes(void *buf, size_t len)
{
    uint8_t tmp[256];
    ssize_t n;

    if (len > sizeof(tmp))
        return -EINVAL;
    n = getrandom(tmp, len, GRND_NONBLOCK);
#ifdef GRND_INSECURE
    if (n < 0 && errno == EAGAIN)   /* early boot: the pool is not ready yet */
        n = getrandom(tmp, len, GRND_INSECURE);
#endif
    if (n < 0)
        return -errno;
    if ((size_t)n != len)
        return -EIO;
    memcpy(buf, tmp, len);
    return 0;
}
