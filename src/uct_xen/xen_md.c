/*
 * xen_md.c - component "xen", its memory domain and device, registration.
 *
 * Registration is a no-op handle for now (zero-copy over grants comes
 * later); UCP and perftest need UCT_MD_FLAG_REG and an rkey_unpack that
 * succeeds even on transports without RMA.
 */
#include "xen_iface.h"

#include <ucs/debug/log.h>

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define UCT_XEN_MEMH_DUMMY ((uct_mem_h)0x7865006d656d68ul)

static ucs_config_field_t uct_xen_md_config_table[] = {
    {"", "", NULL, 0, UCS_CONFIG_TYPE_TABLE(uct_md_config_table)},
    {NULL}
};

static ucs_status_t uct_xen_md_query(uct_md_h md, uct_md_attr_t *attr)
{
    memset(attr, 0, sizeof(*attr));
    attr->cap.flags            = UCT_MD_FLAG_REG;
    attr->cap.reg_mem_types    = UCS_BIT(UCS_MEMORY_TYPE_HOST);
    attr->cap.alloc_mem_types  = 0;
    attr->cap.detect_mem_types = 0;
    attr->cap.access_mem_types = UCS_BIT(UCS_MEMORY_TYPE_HOST);
    attr->cap.max_alloc        = 0;
    attr->cap.max_reg          = ULONG_MAX;
    attr->rkey_packed_size     = 0;
    attr->reg_cost             = ucs_linear_func_make(0, 0);
    memset(&attr->local_cpus, 0xff, sizeof(attr->local_cpus));
    return UCS_OK;
}

static ucs_status_t uct_xen_mem_reg(uct_md_h md, void *address, size_t length,
                                    unsigned flags, uct_mem_h *memh_p)
{
    *memh_p = UCT_XEN_MEMH_DUMMY;
    return UCS_OK;
}

static ucs_status_t uct_xen_mem_dereg(uct_md_h md,
                                      const uct_md_mem_dereg_params_t *params)
{
    UCT_MD_MEM_DEREG_CHECK_PARAMS(params, 0);
    ucs_assert(params->memh == UCT_XEN_MEMH_DUMMY);
    return UCS_OK;
}

static ucs_status_t uct_xen_md_open(uct_component_t *component,
                                    const char *md_name,
                                    const uct_md_config_t *config,
                                    uct_md_h *md_p)
{
    static uct_md_ops_t md_ops = {
        .close              = ucs_empty_function,
        .query              = uct_xen_md_query,
        .mkey_pack          = ucs_empty_function_return_success,
        .mem_reg            = uct_xen_mem_reg,
        .mem_dereg          = uct_xen_mem_dereg,
        .detect_memory_type = ucs_empty_function_return_unsupported
    };
    /* stateless: one md serves every open */
    static uct_xen_md_t md = {
        .super = {
            .ops       = &md_ops,
            .component = &uct_xen_component
        }
    };

    *md_p = &md.super;
    return UCS_OK;
}

static ucs_status_t uct_xen_rkey_unpack(uct_component_t *component,
                                        const void *rkey_buffer,
                                        uct_rkey_t *rkey_p, void **handle_p)
{
    *rkey_p   = 0;
    *handle_p = NULL;
    return UCS_OK;
}

static ucs_status_t uct_xen_query_tl_devices(uct_md_h md,
                                             uct_tl_device_resource_t **tl_devices_p,
                                             unsigned *num_tl_devices_p)
{
    /* one device per domain: the hypervisor's grant tables and event
     * channels; whether a host identity exists is checked at iface open,
     * where the error can say how to provide one */
    return uct_single_device_resource(md, UCT_XEN_DEV_NAME,
                                      UCT_DEVICE_TYPE_SHM,
                                      UCS_SYS_DEVICE_ID_UNKNOWN, tl_devices_p,
                                      num_tl_devices_p);
}

uct_component_t uct_xen_component = {
    .query_md_resources = uct_md_query_single_md_resource,
    .md_open            = uct_xen_md_open,
    .cm_open            = ucs_empty_function_return_unsupported,
    .rkey_unpack        = uct_xen_rkey_unpack,
    .rkey_ptr           = ucs_empty_function_return_unsupported,
    .rkey_release       = ucs_empty_function_return_success,
    .name               = UCT_XEN_TL_NAME,
    .md_config          = {
        .name           = "Xen memory domain",
        .prefix         = "XEN_",
        .table          = uct_xen_md_config_table,
        .size           = sizeof(uct_md_config_t),
    },
    .cm_config          = UCS_CONFIG_EMPTY_GLOBAL_LIST_ENTRY,
    .tl_list            = UCT_COMPONENT_TL_LIST_INITIALIZER(&uct_xen_component),
    .flags              = 0,
    .md_vfs_init        = (uct_component_md_vfs_init_func_t)ucs_empty_function
};

UCT_TL_DEFINE_ENTRY(&uct_xen_component, xen, uct_xen_query_tl_devices,
                    uct_xen_iface_t, "XEN_", uct_xen_iface_config_table,
                    uct_xen_iface_config_t);

/*
 * Version guard.  This module uses UCT's internal structures (base iface,
 * md, config and class layouts), which change between UCX minor releases
 * without a soname change: registering into another release would corrupt
 * memory silently.  UCX 1.13 exports no UCT version function; libucp, which
 * always comes from the same release as libuct, exports ucp_get_version().
 * A process without libucp (UCT-only) cannot be checked: the package
 * dependency pins the release there.
 */
static int uct_xen_version_ok(void)
{
    void (*get_version)(unsigned*, unsigned*, unsigned*);
    unsigned major, minor, release;

    get_version = (void (*)(unsigned*, unsigned*, unsigned*))
                  dlsym(RTLD_DEFAULT, "ucp_get_version");
    if (get_version == NULL) {
        return 1;
    }
    get_version(&major, &minor, &release);
    if ((major != UCT_VERNO_MAJOR) || (minor != UCT_VERNO_MINOR)) {
        /* ucs logging may not be initialized this early in a constructor */
        fprintf(stderr, "uct_xen: built for UCX %d.%d.x, but the loaded UCX is "
                "%u.%u.%u: transport 'xen' not registered (rebuild it against "
                "this UCX)\n", UCT_VERNO_MAJOR, UCT_VERNO_MINOR, major, minor,
                release);
        return 0;
    }
    return 1;
}

/* uct_xen_init() and uct_xen_cleanup() add the component and transport to
 * libuct's lists and remove them.  They run from our own constructor and
 * destructor rather than UCT_SINGLE_TL_INIT's ctor scope, whose destructor
 * would unlink list entries that were never linked when the guard refused. */
void uct_xen_init(void);
void uct_xen_cleanup(void);
UCT_SINGLE_TL_INIT(&uct_xen_component, xen, , , )

static int uct_xen_registered;

UCS_F_CTOR static void uct_xen_load(void)
{
    if (uct_xen_version_ok()) {
        uct_xen_init();
        uct_xen_registered = 1;
    }
}

UCS_F_DTOR static void uct_xen_unload(void)
{
    if (uct_xen_registered) {
        uct_xen_cleanup();
    }
}
