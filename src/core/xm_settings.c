/* xm_settings.c - the core's settings table (xm_settings.h). */
#include "xm_settings.h"
#include "xm_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const xm_cfg_var_t vars[XM_CFG_COUNT] = {
    [XM_CFG_BACKEND] = { "XENMPI_BACKEND", XM_CFG_STRING, "auto", 0, 0,
        "auto, xen or sim: the hypervisor backend (auto: xen when /dev/xen exists)" },
    [XM_CFG_HOST_ID] = { "XENMPI_HOST_ID", XM_CFG_STRING, NULL, 0, 0,
        "this host's identity, instead of the one dom0 publishes in the store" },
    [XM_CFG_LOG_LEVEL] = { "XENMPI_LOG_LEVEL", XM_CFG_STRING, "warn", 0, 0,
        "error, warn, info, debug or trace: the core's log level" },
    [XM_CFG_RING_PAGES] = { "XENMPI_RING_PAGES", XM_CFG_UINT, "64", 1, 256,
        "pages of each channel's tx ring, a power of two (an adapter's own setting wins)" },
    [XM_CFG_CONNECT_TIMEOUT] = { "XENMPI_CONNECT_TIMEOUT", XM_CFG_DOUBLE, "60", 0.001, 86400,
        "seconds a connect waits for the peer's answer before the channel fails" },
    [XM_CFG_MAX_DOMAIN_CHANNELS] = { "XENMPI_MAX_DOMAIN_CHANNELS", XM_CFG_UINT, "1024", 1, 65536,
        "channels one endpoint accepts from the endpoints of one peer domain; more are refused" },
    [XM_CFG_ZC_INVAL_TIMEOUT] = { "XENMPI_ZC_INVAL_TIMEOUT", XM_CFG_DOUBLE, "1", 0.001, 3600,
        "seconds a peer has to acknowledge a withdrawn grant before the owner ends it anyway" },
    [XM_CFG_ZC_STATS] = { "XENMPI_ZC_STATS", XM_CFG_UINT, "0", 0, 1,
        "1: print the zero-copy counters when the process exits" },
    [XM_CFG_SIM_HOST] = { "XENMPI_SIM_HOST", XM_CFG_STRING, "default", 0, 0,
        "sim: the simulated host (a directory under /dev/shm) this process is on" },
    [XM_CFG_SIM_DOMID] = { "XENMPI_SIM_DOMID", XM_CFG_UINT, NULL, 0, 0x7fef,
        "sim: this process's domain id (processes with the same id share a domain)" },
    [XM_CFG_SIM_GNTTAB_SIZE] = { "XENMPI_SIM_GNTTAB_SIZE", XM_CFG_UINT, "32768", 2, 32768,
        "sim: grant table entries of a new domain (fault injection: exhaustion)" },
    [XM_CFG_SIM_DROP_NOTIFY] = { "XENMPI_SIM_DROP_NOTIFY", XM_CFG_UINT, "0", 0, 1000000,
        "sim: drop every n-th event notification (0: none)" },
    [XM_CFG_SIM_DELAY_NOTIFY_US] = { "XENMPI_SIM_DELAY_NOTIFY_US", XM_CFG_UINT, "0", 0, 10000000,
        "sim: delay every event notification by this many microseconds" },
    [XM_CFG_SIM_DELAY_COPY_US] = { "XENMPI_SIM_DELAY_COPY_US", XM_CFG_UINT, "0", 0, 10000000,
        "sim: delay every grant copy by this many microseconds (a slow copy path)" },
};

const xm_cfg_var_t *xm_cfg_var(enum xm_cfg id)
{
    return id < XM_CFG_COUNT ? &vars[id] : NULL;
}

/* the value as text if set and valid; *num its number.  A bad value is
 * reported once per variable. */
static const char *cfg_get(enum xm_cfg id, double *num)
{
    static unsigned char said[XM_CFG_COUNT];
    const xm_cfg_var_t *v = &vars[id];
    const char *s = getenv(v->name);
    char *end;

    if (!s || !*s)
        return NULL;
    if (v->type == XM_CFG_STRING)
        return s;
    errno = 0;
    *num = v->type == XM_CFG_UINT ? (double)strtoull(s, &end, 0) : strtod(s, &end);
    if (errno || *end || end == s || (v->type == XM_CFG_UINT && strchr(s, '-')) ||
        !isfinite(*num) || *num < v->min || *num > v->max) {
        if (!said[id]++)
            xm_error("%s=%s: must be %s between %g and %g (%s); %s%s", v->name, s,
                     v->type == XM_CFG_UINT ? "an integer" : "a number", v->min, v->max,
                     v->doc, v->dflt ? "using " : "ignored", v->dflt ? v->dflt : "");
        return NULL;
    }
    return s;
}

int xm_cfg_is_set(enum xm_cfg id)
{
    double n;

    return cfg_get(id, &n) != NULL;
}

static double cfg_num(enum xm_cfg id)
{
    double n;

    if (cfg_get(id, &n))
        return n;
    return vars[id].dflt ? strtod(vars[id].dflt, NULL) : 0;
}

unsigned xm_cfg_uint(enum xm_cfg id) { return (unsigned)cfg_num(id); }
double xm_cfg_double(enum xm_cfg id) { return cfg_num(id); }

const char *xm_cfg_str(enum xm_cfg id)
{
    double n;
    const char *s = cfg_get(id, &n);

    return s ? s : vars[id].dflt;
}
