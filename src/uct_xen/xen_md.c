/*
 * xen_md.c - component "xen", its memory domain and device, registration.
 *
 * Registration records regions in a per-md registry for the emulated RMA
 * operations: the peer names a region by its registration id, never by a
 * pointer, and the owner checks every remote access against its own record
 * (uct_xen_md_rma_copy) before touching memory.  Ids come from one 64-bit
 * process-wide counter and are never reused, so a late put for a
 * deregistered id is rejected even when the memory has been reused.
 */
#include "xen_iface.h"

#include <ucs/datastruct/khash.h>
#include <ucs/debug/log.h>
#include <ucs/debug/memtrack_int.h>
#include <ucs/type/spinlock.h>

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* One registered region: private memory of this process, never shared. */
typedef struct uct_xen_mem {
    uint64_t  id;
    uintptr_t base;
    size_t    length;
    unsigned  flags;   /* UCT_MD_MEM_ACCESS_* given at registration */
} uct_xen_mem_t;

KHASH_MAP_INIT_INT64(uct_xen_mem, uct_xen_mem_t*)

typedef struct uct_xen_md {
    uct_md_t               super;
    ucs_spinlock_t         lock;   /* mem_reg/dereg may run in another thread
                                    * than the progress that checks accesses */
    khash_t(uct_xen_mem)   regs;   /* id -> region */
} uct_xen_md_t;

static uint64_t uct_xen_next_reg_id = 1;   /* 0 is never a valid id */

static ucs_config_field_t uct_xen_md_config_table[] = {
    {"", "", NULL, 0, UCS_CONFIG_TYPE_TABLE(uct_md_config_table)},
    {NULL}
};

static ucs_status_t uct_xen_md_query(uct_md_h md, uct_md_attr_t *attr)
{
    memset(attr, 0, sizeof(*attr));
    /* NEED_RKEY: UCP must pack and unpack our rkeys for RMA (without it, it
     * hands the transport UCT_INVALID_RKEY) */
    attr->cap.flags            = UCT_MD_FLAG_REG | UCT_MD_FLAG_NEED_RKEY;
    attr->cap.reg_mem_types    = UCS_BIT(UCS_MEMORY_TYPE_HOST);
    attr->cap.alloc_mem_types  = 0;
    attr->cap.detect_mem_types = 0;
    attr->cap.access_mem_types = UCS_BIT(UCS_MEMORY_TYPE_HOST);
    attr->cap.max_alloc        = 0;
    attr->cap.max_reg          = ULONG_MAX;
    attr->rkey_packed_size     = sizeof(uct_xen_rkey_t);
    attr->reg_cost             = ucs_linear_func_make(50e-9, 0);
    memset(&attr->local_cpus, 0xff, sizeof(attr->local_cpus));
    return UCS_OK;
}

static ucs_status_t uct_xen_mem_reg(uct_md_h tl_md, void *address, size_t length,
                                    unsigned flags, uct_mem_h *memh_p)
{
    uct_xen_md_t *md = ucs_derived_of(tl_md, uct_xen_md_t);
    uct_xen_mem_t *mem;
    khiter_t it;
    int ret;

    mem = ucs_malloc(sizeof(*mem), "xen_mem");
    if (mem == NULL) {
        uct_md_log_mem_reg_error(flags, "xen: failed to allocate a registration");
        return UCS_ERR_NO_MEMORY;
    }
    mem->id     = __atomic_fetch_add(&uct_xen_next_reg_id, 1, __ATOMIC_RELAXED);
    mem->base   = (uintptr_t)address;
    mem->length = length;
    mem->flags  = flags;

    ucs_spin_lock(&md->lock);
    it = kh_put(uct_xen_mem, &md->regs, mem->id, &ret);
    if (ret > 0) {
        kh_value(&md->regs, it) = mem;
    }
    ucs_spin_unlock(&md->lock);
    if (ret <= 0) {
        /* cannot happen for a fresh id, except on allocation failure */
        uct_md_log_mem_reg_error(flags, "xen: failed to record registration");
        ucs_free(mem);
        return UCS_ERR_NO_MEMORY;
    }
    ucs_trace("xen: registered %p..%p as id %" PRIu64, address,
              UCS_PTR_BYTE_OFFSET(address, length), mem->id);
    *memh_p = mem;
    return UCS_OK;
}

static ucs_status_t uct_xen_mem_dereg(uct_md_h tl_md,
                                      const uct_md_mem_dereg_params_t *params)
{
    uct_xen_md_t *md = ucs_derived_of(tl_md, uct_xen_md_t);
    uct_xen_mem_t *mem;
    khiter_t it;

    UCT_MD_MEM_DEREG_CHECK_PARAMS(params, 0);
    mem = params->memh;

    /* after this the id is dead forever: lookups fail, and ids are unique */
    ucs_spin_lock(&md->lock);
    it = kh_get(uct_xen_mem, &md->regs, mem->id);
    ucs_assertv(it != kh_end(&md->regs), "xen: memh %p (id %" PRIu64 ") not "
                "registered", mem, mem->id);
    if (it != kh_end(&md->regs)) {
        kh_del(uct_xen_mem, &md->regs, it);
    }
    ucs_spin_unlock(&md->lock);
    ucs_trace("xen: deregistered id %" PRIu64, mem->id);
    ucs_free(mem);
    return UCS_OK;
}

static ucs_status_t uct_xen_mkey_pack(uct_md_h md, uct_mem_h memh,
                                      const uct_md_mkey_pack_params_t *params,
                                      void *rkey_buffer)
{
    const uct_xen_mem_t *mem = memh;
    uct_xen_rkey_t packed;

    packed.id     = mem->id;
    packed.base   = mem->base;
    packed.length = mem->length;
    memcpy(rkey_buffer, &packed, sizeof(packed));
    return UCS_OK;
}

ucs_status_t uct_xen_md_rma_copy(uct_md_h tl_md, uint64_t id, uint64_t addr,
                                 uint64_t len, unsigned access, void *buf)
{
    uct_xen_md_t *md = ucs_derived_of(tl_md, uct_xen_md_t);
    const uct_xen_mem_t *mem;
    ucs_status_t status;
    khiter_t it;

    ucs_spin_lock(&md->lock);
    it = kh_get(uct_xen_mem, &md->regs, id);
    if (it == kh_end(&md->regs)) {
        status = UCS_ERR_NO_ELEM;            /* never registered, or dead */
        goto out;
    }
    mem = kh_value(&md->regs, it);
    /* [addr, addr + len) inside [base, base + length), without overflow:
     * every subtraction is of a smaller value from a larger one */
    if ((addr < mem->base) || (len > mem->length) ||
        ((addr - mem->base) > (mem->length - len))) {
        status = UCS_ERR_INVALID_ADDR;
        goto out;
    }
    if (!(mem->flags & access)) {
        status = UCS_ERR_INVALID_ADDR;       /* registered without that right */
        goto out;
    }
    /* under the lock: a concurrent dereg waits until the copy is done */
    if (access == UCT_MD_MEM_ACCESS_REMOTE_PUT) {
        memcpy((void*)(uintptr_t)addr, buf, len);
    } else {
        memcpy(buf, (const void*)(uintptr_t)addr, len);
    }
    status = UCS_OK;
out:
    ucs_spin_unlock(&md->lock);
    return status;
}

static void uct_xen_md_close(uct_md_h tl_md)
{
    uct_xen_md_t *md = ucs_derived_of(tl_md, uct_xen_md_t);
    uct_xen_mem_t *mem;

    kh_foreach_value(&md->regs, mem, {
        ucs_debug("xen: md %p closed with id %" PRIu64 " registered", md,
                  mem->id);
        ucs_free(mem);
    });
    kh_destroy_inplace(uct_xen_mem, &md->regs);
    ucs_spinlock_destroy(&md->lock);
    ucs_free(md);
}

static ucs_status_t uct_xen_md_open(uct_component_t *component,
                                    const char *md_name,
                                    const uct_md_config_t *config,
                                    uct_md_h *md_p)
{
    static const uct_md_ops_t md_ops = {
        .close              = uct_xen_md_close,
        .query              = uct_xen_md_query,
        .mkey_pack          = uct_xen_mkey_pack,
        .mem_reg            = uct_xen_mem_reg,
        .mem_dereg          = uct_xen_mem_dereg,
        .detect_memory_type = ucs_empty_function_return_unsupported
    };
    uct_xen_md_t *md;
    ucs_status_t status;

    md = ucs_calloc(1, sizeof(*md), "xen_md");
    if (md == NULL) {
        ucs_error("xen: failed to allocate the memory domain");
        return UCS_ERR_NO_MEMORY;
    }
    status = ucs_spinlock_init(&md->lock, 0);
    if (status != UCS_OK) {
        ucs_free(md);
        return status;
    }
    kh_init_inplace(uct_xen_mem, &md->regs);
    md->super.ops       = (uct_md_ops_t*)&md_ops;
    md->super.component = &uct_xen_component;
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
    uct_xen_rkey_t *rkey;

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
    .rkey_release       = uct_xen_rkey_release,
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
