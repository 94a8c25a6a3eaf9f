/*
 * xen_md.c - component "xen", its memory domain and device, registration.
 *
 * Registration records regions in the core's process-wide registry
 * (xm_zc.h): the peer names a region by its registration id, never by a
 * pointer, and the owner checks every remote access against its own record
 * before touching memory (the core's RMA through the ring, xm_xfer) or
 * granting a page (zero-copy).  Ids are random 64-bit values (xm_zc_reg),
 * so a late put or grant request for a deregistered id is rejected even
 * when the memory has been reused, a peer's cached grants never outlive the
 * id, and a peer that was not given an id cannot guess one.
 */
#include "xen_iface.h"
#include "xm_zc.h"

#include <ucs/debug/log.h>
#include <ucs/debug/memtrack_int.h>
#include <ucs/memory/rcache.h>
#include <ucs/sys/sys.h>
#include <ucm/api/ucm.h>

#include <dlfcn.h>
#include <errno.h>
#include <sys/mman.h>
#include <stdio.h>
#include <string.h>

/* One registered region, recorded in the core's registry (xm_zc.h) under
 * its id: the emulated RMA path and the zero-copy grants both look it up
 * there, never through a peer's pointer. */
typedef struct uct_xen_mem {
    uint64_t  id;
    uintptr_t base;
    size_t    length;
} uct_xen_mem_t;

/* With the registration cache (UCX_XEN_RCACHE), the memh lives inside the
 * cache's region: a buffer sent again keeps its registration, so peers'
 * cached grants keep hitting; the cache deregisters (and the grants are
 * withdrawn) when the memory is unmapped or the cache evicts it. */
typedef struct uct_xen_rcache_region {
    ucs_rcache_region_t super;
    uct_xen_mem_t       mem;
} uct_xen_rcache_region_t;

typedef struct uct_xen_md {
    uct_md_t               super;
    ucs_rcache_t           *rcache;   /* NULL: register every time */
    ucs_linear_func_t      reg_cost;
    int                    unmap_events; /* uct_xen_vm_unmapped_cb installed */
} uct_xen_md_t;

typedef struct uct_xen_md_config {
    uct_md_config_t          super;
    ucs_ternary_auto_value_t rcache_enable;
    uct_md_rcache_config_t   rcache;
} uct_xen_md_config_t;

/* the order among UCM's VM_UNMAPPED handlers (the registration cache's
 * default is 1000): ours first, it does not depend on the cache */
#define UCT_XEN_UNMAP_EVENT_PRIO 900

/* UCT_MD_MEM_ACCESS_* -> the core's rights (none: no remote access) */
static unsigned uct_xen_mem_access(unsigned flags)
{
    unsigned access = 0;

    if (flags & UCT_MD_MEM_ACCESS_REMOTE_PUT) {
        access |= XM_ZC_REMOTE_WRITE;
    }
    if (flags & UCT_MD_MEM_ACCESS_REMOTE_GET) {
        access |= XM_ZC_REMOTE_READ;
    }
    return access;
}

static ucs_config_field_t uct_xen_md_config_table[] = {
    {"", "", NULL, ucs_offsetof(uct_xen_md_config_t, super),
     UCS_CONFIG_TYPE_TABLE(uct_md_config_table)},

    {"RCACHE", "try", "Cache registrations (needed for zero-copy grants to be reused).",
     ucs_offsetof(uct_xen_md_config_t, rcache_enable), UCS_CONFIG_TYPE_TERNARY},

    {"", "", NULL, ucs_offsetof(uct_xen_md_config_t, rcache),
     UCS_CONFIG_TYPE_TABLE(uct_md_config_rcache_table)},

    {NULL}
};

static ucs_status_t uct_xen_md_query(uct_md_h md, uct_md_attr_t *attr)
{
    memset(attr, 0, sizeof(*attr));
    /* NEED_RKEY: UCP must pack and unpack our rkeys for RMA (without it, it
     * hands the transport UCT_INVALID_RKEY) */
    attr->cap.flags            = UCT_MD_FLAG_REG | UCT_MD_FLAG_NEED_RKEY |
                                 UCT_MD_FLAG_NEED_MEMH;
    attr->cap.reg_mem_types    = UCS_BIT(UCS_MEMORY_TYPE_HOST);
    attr->cap.alloc_mem_types  = 0;
    attr->cap.detect_mem_types = 0;
    attr->cap.access_mem_types = UCS_BIT(UCS_MEMORY_TYPE_HOST);
    attr->cap.max_alloc        = 0;
    attr->cap.max_reg          = ULONG_MAX;
    attr->rkey_packed_size     = sizeof(xm_rkey_t);
    attr->reg_cost             = ucs_derived_of(md, uct_xen_md_t)->reg_cost;
    memset(&attr->local_cpus, 0xff, sizeof(attr->local_cpus));
    return UCS_OK;
}

static ucs_status_t uct_xen_mem_reg_internal(void *address, size_t length,
                                             unsigned flags, uct_xen_mem_t *mem)
{
    int rc;

    rc = xm_zc_reg(address, length, uct_xen_mem_access(flags), &mem->id);
    if (rc < 0) {
        uct_md_log_mem_reg_error(flags, "xen: failed to register %p..%p: %s",
                                 address, UCS_PTR_BYTE_OFFSET(address, length),
                                 strerror(-rc));
        return (rc == -ENOMEM) ? UCS_ERR_NO_MEMORY : UCS_ERR_INVALID_PARAM;
    }
    mem->base   = (uintptr_t)address;
    mem->length = length;
    ucs_trace("xen: registered %p..%p as id %" PRIu64, address,
              UCS_PTR_BYTE_OFFSET(address, length), mem->id);
    return UCS_OK;
}

/* after this the id is dead: lookups fail, and the
 * grants peers hold for it are withdrawn */
static void uct_xen_mem_dereg_internal(uct_xen_mem_t *mem)
{
    int rc = xm_zc_dereg(mem->id);

    ucs_assertv(rc == 0, "xen: memh %p (id %" PRIu64 ") not registered", mem,
                mem->id);
    (void)rc;
    ucs_trace("xen: deregistered id %" PRIu64, mem->id);
}

static ucs_status_t uct_xen_mem_reg(uct_md_h tl_md, void *address, size_t length,
                                    unsigned flags, uct_mem_h *memh_p)
{
    uct_xen_md_t *md = ucs_derived_of(tl_md, uct_xen_md_t);
    ucs_rcache_region_t *rregion;
    uct_xen_mem_t *mem;
    ucs_status_t status;

    if (md->rcache != NULL) {
        status = ucs_rcache_get(md->rcache, address, length,
                                PROT_READ | PROT_WRITE, &flags, &rregion);
        if (status == UCS_OK) {
            *memh_p = &ucs_derived_of(rregion, uct_xen_rcache_region_t)->mem;
        }
        return status;
    }
    mem = ucs_malloc(sizeof(*mem), "xen_mem");
    if (mem == NULL) {
        uct_md_log_mem_reg_error(flags, "xen: failed to allocate a registration");
        return UCS_ERR_NO_MEMORY;
    }
    status = uct_xen_mem_reg_internal(address, length, flags, mem);
    if (status != UCS_OK) {
        ucs_free(mem);
        return status;
    }
    *memh_p = mem;
    return UCS_OK;
}

static ucs_status_t uct_xen_mem_dereg(uct_md_h tl_md,
                                      const uct_md_mem_dereg_params_t *params)
{
    uct_xen_md_t *md = ucs_derived_of(tl_md, uct_xen_md_t);
    uct_xen_mem_t *mem;

    UCT_MD_MEM_DEREG_CHECK_PARAMS(params, 0);
    mem = params->memh;
    if (md->rcache != NULL) {
        ucs_rcache_region_put(md->rcache,
                              &ucs_container_of(mem, uct_xen_rcache_region_t,
                                                mem)->super);
        return UCS_OK;
    }
    uct_xen_mem_dereg_internal(mem);
    ucs_free(mem);
    return UCS_OK;
}

static ucs_status_t uct_xen_rcache_mem_reg_cb(void *context, ucs_rcache_t *rcache,
                                              void *arg, ucs_rcache_region_t *rregion,
                                              uint16_t rcache_mem_reg_flags)
{
    uct_xen_rcache_region_t *region = ucs_derived_of(rregion,
                                                     uct_xen_rcache_region_t);

    return uct_xen_mem_reg_internal((void*)region->super.super.start,
                                    region->super.super.end -
                                    region->super.super.start,
                                    *(unsigned*)arg, &region->mem);
}

static void uct_xen_rcache_mem_dereg_cb(void *context, ucs_rcache_t *rcache,
                                        ucs_rcache_region_t *rregion)
{
    uct_xen_mem_dereg_internal(&ucs_derived_of(rregion,
                                               uct_xen_rcache_region_t)->mem);
}

static void uct_xen_rcache_dump_region_cb(void *context, ucs_rcache_t *rcache,
                                          ucs_rcache_region_t *rregion,
                                          char *buf, size_t max)
{
    snprintf(buf, max, "id %" PRIu64,
             ucs_derived_of(rregion, uct_xen_rcache_region_t)->mem.id);
}

static ucs_rcache_ops_t uct_xen_rcache_ops = {
    .mem_reg     = uct_xen_rcache_mem_reg_cb,
    .mem_dereg   = uct_xen_rcache_mem_dereg_cb,
    .dump_region = uct_xen_rcache_dump_region_cb
};

static ucs_status_t uct_xen_mkey_pack(uct_md_h md, uct_mem_h memh,
                                      const uct_md_mkey_pack_params_t *params,
                                      void *rkey_buffer)
{
    const uct_xen_mem_t *mem = memh;
    xm_rkey_t packed;

    packed.id     = mem->id;
    packed.base   = mem->base;
    packed.len    = mem->length;
    memcpy(rkey_buffer, &packed, sizeof(packed));
    /* a rendezvous is about to use it: its grants are the last to go */
    xm_zc_touch(mem->id);
    return UCS_OK;
}

void uct_xen_memh_key(uct_mem_h memh, xm_rkey_t *key)
{
    const uct_xen_mem_t *mem = memh;

    key->id   = mem->id;
    key->base = mem->base;
    key->len  = mem->length;
}

/* UCM's VM_UNMAPPED (munmap, mremap, madvise DONTNEED, a MAP_FIXED
 * mapping over it, shmdt, brk), before the memory goes: every registration
 * that meets the range dies in the core now, not when the registration
 * cache gets round to deregistering it, so a peer's request under its id
 * never reaches the memory mapped there next.  The cache drops its region
 * on the same event, so the id is not handed out again. */
static void uct_xen_vm_unmapped_cb(ucm_event_type_t event_type, ucm_event_t *event,
                                   void *arg)
{
    xm_zc_invalidate(event->vm_unmapped.address, event->vm_unmapped.size);
}

static void uct_xen_md_close(uct_md_h tl_md)
{
    uct_xen_md_t *md = ucs_derived_of(tl_md, uct_xen_md_t);

    if (md->unmap_events) {
        ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, uct_xen_vm_unmapped_cb, md);
    }
    if (md->rcache != NULL) {
        ucs_rcache_destroy(md->rcache);
    }
    ucs_free(md);
}

static ucs_status_t uct_xen_md_open(uct_component_t *component,
                                    const char *md_name,
                                    const uct_md_config_t *config,
                                    uct_md_h *md_p)
{
    const uct_xen_md_config_t *md_config = ucs_derived_of(config,
                                                          uct_xen_md_config_t);
    ucs_rcache_params_t rcache_params;
    ucs_status_t status;
    static const uct_md_ops_t md_ops = {
        .close              = uct_xen_md_close,
        .query              = uct_xen_md_query,
        .mkey_pack          = uct_xen_mkey_pack,
        .mem_reg            = uct_xen_mem_reg,
        .mem_dereg          = uct_xen_mem_dereg,
        /* every op has an entry: UCT calls some without checking */
        .mem_alloc          = (uct_md_mem_alloc_func_t)ucs_empty_function_return_unsupported,
        .mem_free           = (uct_md_mem_free_func_t)ucs_empty_function_return_unsupported,
        .mem_advise         = (uct_md_mem_advise_func_t)ucs_empty_function_return_unsupported,
        .mem_query          = (uct_md_mem_query_func_t)ucs_empty_function_return_unsupported,
        .is_sockaddr_accessible = ucs_empty_function_return_zero_int,
        .detect_memory_type = ucs_empty_function_return_unsupported
    };
    uct_xen_md_t *md;

    md = ucs_calloc(1, sizeof(*md), "xen_md");
    if (md == NULL) {
        ucs_error("xen: failed to allocate the memory domain");
        return UCS_ERR_NO_MEMORY;
    }
    md->super.ops       = (uct_md_ops_t*)&md_ops;
    md->super.component = &uct_xen_component;
    md->reg_cost        = ucs_linear_func_make(50e-9, 0);
    md->rcache          = NULL;

    status = ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, UCT_XEN_UNMAP_EVENT_PRIO,
                                   uct_xen_vm_unmapped_cb, md);
    if (status == UCS_OK) {
        md->unmap_events = 1;
    } else {
        /* UCX_MEM_EVENTS=no, or UCM could not hook munmap */
        ucs_diag("xen: no memory events (%s): a registered buffer unmapped before "
                 "its deregistration stays reachable under its id until then "
                 "(copies for peers fail cleanly where nothing is mapped); "
                 "unset UCX_MEM_EVENTS=no to fix", ucs_status_string(status));
    }

    if (md_config->rcache_enable != UCS_NO) {
        uct_md_set_rcache_params(&rcache_params, &md_config->rcache);
        rcache_params.region_struct_size = sizeof(uct_xen_rcache_region_t);
        rcache_params.max_alignment      = ucs_get_page_size();
        rcache_params.ucm_events         = UCM_EVENT_VM_UNMAPPED;
        rcache_params.context            = md;
        rcache_params.ops                = &uct_xen_rcache_ops;
        status = ucs_rcache_create(&rcache_params, "xen", ucs_stats_get_root(),
                                   &md->rcache);
        if (status == UCS_OK) {
            md->reg_cost = ucs_linear_func_make(
                    uct_md_rcache_overhead(&md_config->rcache), 0);
        } else if (md_config->rcache_enable == UCS_YES) {
            ucs_error("xen: failed to create the registration cache: %s",
                      ucs_status_string(status));
            if (md->unmap_events) {
                ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, uct_xen_vm_unmapped_cb, md);
            }
            ucs_free(md);
            return status;
        } else {
            md->rcache = NULL;
            ucs_debug("xen: no registration cache (%s): zero-copy grants are "
                      "not reused across sends", ucs_status_string(status));
        }
    }
    *md_p = &md->super;
    return UCS_OK;
}

/* The requester keeps the peer's description of the region and nothing
 * else: it never forms a pointer to the peer's memory, and the owner checks
 * every access, so a forged or stale rkey can only earn a rejection. */
static ucs_status_t uct_xen_rkey_unpack(uct_component_t *component,
                                        const void *rkey_buffer,
                                        uct_rkey_t *rkey_p, void **handle_p)
{
    xm_rkey_t *rkey;

    rkey = ucs_malloc(sizeof(*rkey), "xen_rkey");
    if (rkey == NULL) {
        ucs_error("xen: failed to allocate an rkey");
        return UCS_ERR_NO_MEMORY;
    }
    memcpy(rkey, rkey_buffer, sizeof(*rkey));
    *rkey_p   = (uintptr_t)rkey;
    *handle_p = rkey;
    return UCS_OK;
}

static ucs_status_t uct_xen_rkey_release(uct_component_t *component,
                                         uct_rkey_t rkey, void *handle)
{
    ucs_free(handle);
    return UCS_OK;
}

static ucs_status_t uct_xen_query_tl_devices(uct_md_h md,
                                             uct_tl_device_resource_t **tl_devices_p,
                                             unsigned *num_tl_devices_p)
{
    /* one device per domain: the hypervisor's grant tables and event
     * channels; whether a host identity exists is checked at iface open,
     * where the error can say how to provide one.  A network device: it
     * reaches other VMs, which MPI launchers count as other nodes, and
     * UCP puts only network devices in the address a worker gives for
     * peers on other nodes (UCP_WORKER_ADDRESS_FLAG_NET_ONLY, which Open
     * MPI's pml ucx publishes for them): as shared memory, xen would be
     * missing from it and Open MPI could not reach a rank in another VM. */
    return uct_single_device_resource(md, UCT_XEN_DEV_NAME,
                                      UCT_DEVICE_TYPE_NET,
                                      UCS_SYS_DEVICE_ID_UNKNOWN, tl_devices_p,
                                      num_tl_devices_p);
}

uct_component_t uct_xen_component = {
    .query_md_resources = uct_md_query_single_md_resource,
    .md_open            = uct_xen_md_open,
    .cm_open            = ucs_empty_function_return_unsupported,
    .rkey_unpack        = uct_xen_rkey_unpack,
    .rkey_ptr           = ucs_empty_function_return_unsupported,
    .rkey_release       = uct_xen_rkey_release,
    .name               = UCT_XEN_TL_NAME,
    .md_config          = {
        .name           = "Xen memory domain",
        .prefix         = "XEN_",
        .table          = uct_xen_md_config_table,
        .size           = sizeof(uct_xen_md_config_t),
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

/*
 * One copy registers.  With the packages installed UCX opens its module
 * libuct_xen.so.0 itself; a process that also preloads a build tree's
 * libuct_xen.so would add a second component "xen" with its own memory
 * domain and ifaces.  The preloaded copy's constructor runs first (at
 * start-up, the module's when UCX loads its modules), so it is the one
 * kept; both share one libxenmpi (one soname).
 */
static int uct_xen_other_copy(void)
{
    uct_component_t *c;

    ucs_list_for_each(c, &uct_components_list, list) {
        if (!strcmp(c->name, "xen")) {
            Dl_info self;
            fprintf(stderr, "uct_xen: transport 'xen' is registered already (a "
                    "preloaded libuct_xen.so and UCX's module both loaded?): "
                    "this copy (%s) is not registered\n",
                    dladdr((void*)uct_xen_other_copy, &self) && self.dli_fname ?
                    self.dli_fname : "?");
            return 1;
        }
    }
    return 0;
}

static int uct_xen_registered;

UCS_F_CTOR static void uct_xen_load(void)
{
    if (uct_xen_version_ok() && !uct_xen_other_copy()) {
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
