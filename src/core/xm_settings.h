/*
 * xm_settings.h - the core's settings: one table (name, type, default,
 * bounds, one line of documentation), read from the environment.  An
 * adapter's own settings (UCX_XEN_*) are passed in its parameters and fall
 * back to these where they say so (UCX_XEN_RING_PAGES=0, UCX_XEN_BACKEND=auto).
 * A value that does not parse or lies outside its bounds is reported once,
 * naming the variable and what it accepts, and the default is used.
 */
#ifndef XM_SETTINGS_H
#define XM_SETTINGS_H

#ifdef __cplusplus
extern "C" {
#endif

enum xm_cfg {
    XM_CFG_BACKEND,
    XM_CFG_HOST_ID,
    XM_CFG_LOG_LEVEL,
    XM_CFG_RING_PAGES,
    XM_CFG_CONNECT_TIMEOUT,
    XM_CFG_ZC_STATS,
    XM_CFG_ZC_INVAL_TIMEOUT,
    XM_CFG_MAX_DOMAIN_CHANNELS,
    XM_CFG_SIM_HOST,
    XM_CFG_SIM_DOMID,
    XM_CFG_SIM_GNTTAB_SIZE,
    XM_CFG_SIM_DROP_NOTIFY,
    XM_CFG_SIM_DELAY_NOTIFY_US,
    XM_CFG_SIM_DELAY_COPY_US,
    XM_CFG_COUNT
};

typedef enum { XM_CFG_UINT, XM_CFG_DOUBLE, XM_CFG_STRING } xm_cfg_type_t;

typedef struct xm_cfg_var {
    const char *name;     /* the environment variable */
    xm_cfg_type_t type;
    const char *dflt;     /* as text; NULL: unset means "not given" */
    double min, max;      /* numbers: inclusive bounds */
    const char *doc;      /* one line */
} xm_cfg_var_t;

/* The table entry of id (id < XM_CFG_COUNT), e.g. to list every setting. */
const xm_cfg_var_t *xm_cfg_var(enum xm_cfg id);
/* Whether the variable is set to a valid value. */
int xm_cfg_is_set(enum xm_cfg id);
/* The value (valid, else the default; 0 for a number without one). */
unsigned xm_cfg_uint(enum xm_cfg id);
double xm_cfg_double(enum xm_cfg id);
/* NULL when unset and without default. */
const char *xm_cfg_str(enum xm_cfg id);

#ifdef __cplusplus
}
#endif
#endif
