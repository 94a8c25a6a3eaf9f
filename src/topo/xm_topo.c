/*
 * xm_topo.c - the guest's handle: built from what dom0 published (validated
 * by xm_topo_parse.c) or from hwloc's view of the VM, and the queries on
 * it.  Reading the store: xm_topo_store.c; text output: xm_topo_fmt.c;
 * placement: xm_topo_place.c.
 */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the handle ---------------------------------------------------------------- */

static const char *const class_names[] = {
    "pu", "core", "numa", "package", "cross-package",
};

const char *xm_topo_class_name(xm_topo_class_t c)
{
    return (unsigned)c <= XM_TOPO_CROSS_PACKAGE ? class_names[c] : "?";
}

static void dom_free(struct xm_topo_dom *d)
{
    for (unsigned i = 0; i < d->nvcpus; i++)
        hwloc_bitmap_free(d->set[i]);
    free(d->set);
}

void xm_topo_free(xm_topo_t *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < t->ndoms; i++)
        dom_free(&t->doms[i]);
    free(t->doms);
    free(t->info);
    if (t->topo)
        hwloc_topology_destroy(t->topo);
    free(t);
}

/* The object of the given type whose cpuset holds all of set, or NULL.
 * A topology without cores has PUs as cores; without packages the machine
 * is the one package. */
static hwloc_obj_t container(hwloc_topology_t topo, hwloc_obj_type_t type,
                             hwloc_const_bitmap_t set)
{
    int n = hwloc_get_nbobjs_by_type(topo, type);

    if (hwloc_bitmap_iszero(set))
        return NULL;
    if (n <= 0) {
        if (type == HWLOC_OBJ_CORE)
            return container(topo, HWLOC_OBJ_PU, set);
        if (type == HWLOC_OBJ_PACKAGE)
            return hwloc_get_root_obj(topo);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, type, (unsigned)i);
        if (o->cpuset && !hwloc_bitmap_iszero(o->cpuset) &&
            hwloc_bitmap_isincluded(set, o->cpuset))
            return o;
    }
    return NULL;
}

static int package_index(hwloc_topology_t topo, hwloc_obj_t o)
{
    if (!o)
        return -1;
    return o->type == HWLOC_OBJ_PACKAGE ? (int)o->logical_index : 0;
}

void xm_topo_vcpu_info(hwloc_topology_t topo, hwloc_const_bitmap_t set,
                       xm_topo_vcpu_t *v)
{
    hwloc_obj_t o;

    v->npcpus = hwloc_bitmap_weight(set);
    v->pcpu = v->npcpus == 1 ? hwloc_bitmap_first(set) : -1;
    o = container(topo, HWLOC_OBJ_CORE, set);
    v->core = o ? (int)o->logical_index : -1;
    v->package = package_index(topo, container(topo, HWLOC_OBJ_PACKAGE, set));
    o = container(topo, HWLOC_OBJ_NUMANODE, set);
    v->numa = o ? (int)o->os_index : -1;
}

static xm_topo_class_t set_class(hwloc_topology_t topo, hwloc_const_bitmap_t a,
                                 hwloc_const_bitmap_t b)
{
    hwloc_bitmap_t u = hwloc_bitmap_alloc();
    xm_topo_class_t c;

    hwloc_bitmap_or(u, a, b);
    if (hwloc_bitmap_weight(u) == 1)
        c = XM_TOPO_SAME_PU;
    else if (container(topo, HWLOC_OBJ_CORE, u))
        c = XM_TOPO_SAME_CORE;
    else if (container(topo, HWLOC_OBJ_PACKAGE, u))
        c = container(topo, HWLOC_OBJ_NUMANODE, u) ? XM_TOPO_SAME_NUMA
                                                   : XM_TOPO_SAME_PACKAGE;
    else
        c = XM_TOPO_CROSS_PACKAGE;
    hwloc_bitmap_free(u);
    return c;
}

static int finish(xm_topo_t *t)
{
    t->me = NULL;
    for (unsigned i = 0; i < t->ndoms; i++)
        if (t->doms[i].domid == t->self)
            t->me = &t->doms[i];
    if (!t->me)
        return -ENOENT;
    t->info = calloc(t->me->nvcpus, sizeof(*t->info));
    if (!t->info)
        return -ENOMEM;
    for (unsigned v = 0; v < t->me->nvcpus; v++)
        xm_topo_vcpu_info(t->topo, t->me->set[v], &t->info[v]);
    return 0;
}

int xm_topo_build(hwloc_topology_t topo, const char *aff, size_t aff_len,
                  uint32_t self, const char *host_id, const char *origin,
                  xm_topo_t **out)
{
    xm_topo_t *t = calloc(1, sizeof(*t));
    size_t lines = 0;
    char o[320];
    int rc;

    *out = NULL;
    if (!t) {
        hwloc_topology_destroy(topo);
        return -ENOMEM;
    }
    t->topo = topo;
    t->self = self;
    t->source = XM_TOPO_SRC_DOM0;
    snprintf(t->host_id, sizeof(t->host_id), "%s", host_id ? host_id : "");
    /* at most one line per domain: count newlines for the array */
    for (size_t i = 0; i < aff_len; i++)
        lines += aff[i] == '\n';
    if (lines > XM_TOPO_MAX_DOMAINS)
        lines = XM_TOPO_MAX_DOMAINS;
    t->doms = calloc(lines + 1, sizeof(*t->doms));
    if (!t->doms) {
        rc = -ENOMEM;
        goto err;
    }
    snprintf(o, sizeof(o), "%s/affinity", origin);
    rc = xm_topo_parse_affinity(t, aff, aff_len, o);
    if (rc)
        goto err;
    rc = finish(t);
    if (rc == -ENOENT)
        xm_topo_fail(rc, XM_LOG_ERROR, "%s: no vCPU affinity for this domain (%u)",
                     o, self);
    if (rc)
        goto err;
    *out = t;
    return 0;
err:
    xm_topo_free(t);
    return rc;
}

int xm_topo_from_data(const char *xml, size_t xml_len, const char *aff,
                      size_t aff_len, uint32_t self, const char *host_id,
                      const char *origin, xm_topo_t **out)
{
    hwloc_topology_t topo;
    const char *why;
    int rc;

    *out = NULL;
    rc = xm_topo_load_xml(xml, xml_len, &topo, &why);
    if (rc)
        return xm_topo_fail(rc, XM_LOG_ERROR, "%s/xml: bad host topology (%zu bytes): %s",
                            origin, xml_len, why);
    return xm_topo_build(topo, aff, aff_len, self, host_id, origin, out);
}

int xm_topo_local(uint32_t self, xm_topo_t **out)
{
    xm_topo_t *t = calloc(1, sizeof(*t));
    hwloc_const_bitmap_t all;
    int last, rc;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    t->self = self;
    t->source = XM_TOPO_SRC_LOCAL;
    if (hwloc_topology_init(&t->topo)) {
        free(t);
        return -ENOMEM;
    }
    hwloc_topology_set_io_types_filter(t->topo, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_type_filter(t->topo, HWLOC_OBJ_MISC, HWLOC_TYPE_FILTER_KEEP_ALL);
    if (hwloc_topology_load(t->topo)) {
        hwloc_topology_destroy(t->topo);
        free(t);
        return xm_topo_fail(-EIO, XM_LOG_ERROR, "hwloc cannot load this VM's own topology");
    }
    all = hwloc_topology_get_topology_cpuset(t->topo);
    last = hwloc_bitmap_last(all);
    t->doms = calloc(1, sizeof(*t->doms));
    if (!t->doms || last < 0) {
        rc = last < 0 ? -EIO : -ENOMEM;
        goto err;
    }
    t->ndoms = 1;
    t->doms[0].domid = self;
    t->doms[0].set = calloc((size_t)last + 1, sizeof(hwloc_bitmap_t));
    if (!t->doms[0].set) {
        rc = -ENOMEM;
        goto err;
    }
    for (int v = 0; v <= last; v++) {
        hwloc_bitmap_t s = hwloc_bitmap_alloc();
        if (!s) {
            rc = -ENOMEM;
            goto err;
        }
        t->doms[0].set[t->doms[0].nvcpus++] = s;
        if (hwloc_bitmap_isset(all, (unsigned)v))
            hwloc_bitmap_set(s, (unsigned)v);   /* offline vCPUs stay empty */
    }
    rc = finish(t);
    if (rc)
        goto err;
    *out = t;
    return 0;
err:
    xm_topo_free(t);
    return rc;
}

/* ---- queries ------------------------------------------------------------------ */

int xm_topo_source(const xm_topo_t *t) { return t->source; }
const char *xm_topo_fallback_reason(const xm_topo_t *t) { return t->reason; }
uint32_t xm_topo_domid(const xm_topo_t *t) { return t->self; }
const char *xm_topo_host_id(const xm_topo_t *t) { return t->host_id; }
unsigned xm_topo_nvcpus(const xm_topo_t *t) { return t->me->nvcpus; }
unsigned xm_topo_ndomains(const xm_topo_t *t) { return t->ndoms; }

unsigned xm_topo_npcpus(const xm_topo_t *t)
{
    return (unsigned)hwloc_bitmap_weight(hwloc_topology_get_topology_cpuset(t->topo));
}

uint32_t xm_topo_domain_at(const xm_topo_t *t, unsigned i)
{
    return i < t->ndoms ? t->doms[i].domid : XM_DOMID_INVALID;
}

const struct xm_topo_dom *xm_topo_find_dom(const xm_topo_t *t, uint32_t domid)
{
    for (unsigned i = 0; i < t->ndoms; i++)
        if (t->doms[i].domid == domid)
            return &t->doms[i];
    return NULL;
}

int xm_topo_domain_nvcpus(const xm_topo_t *t, uint32_t domid)
{
    const struct xm_topo_dom *d = xm_topo_find_dom(t, domid);
    return d ? (int)d->nvcpus : -ENOENT;
}

int xm_topo_domain_vcpu_pcpus(const xm_topo_t *t, uint32_t domid, unsigned vcpu,
                              char *buf, size_t len)
{
    const struct xm_topo_dom *d = xm_topo_find_dom(t, domid);
    int n;

    if (!d)
        return -ENOENT;
    if (vcpu >= d->nvcpus)
        return -ERANGE;
    n = hwloc_bitmap_list_snprintf(buf, len, d->set[vcpu]);
    return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int xm_topo_vcpu(const xm_topo_t *t, unsigned vcpu, xm_topo_vcpu_t *out)
{
    if (vcpu >= t->me->nvcpus)
        return -ERANGE;
    *out = t->info[vcpu];
    return 0;
}

int xm_topo_vcpu_pcpus(const xm_topo_t *t, unsigned vcpu, char *buf, size_t len)
{
    int n;

    if (vcpu >= t->me->nvcpus)
        return -ERANGE;
    n = hwloc_bitmap_list_snprintf(buf, len, t->me->set[vcpu]);
    return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int xm_topo_vcpu_numa(const xm_topo_t *t, unsigned vcpu)
{
    return vcpu < t->me->nvcpus ? t->info[vcpu].numa : -1;
}

int xm_topo_vcpu_class(const xm_topo_t *t, unsigned a, unsigned b,
                       xm_topo_class_t *c)
{
    if (a >= t->me->nvcpus || b >= t->me->nvcpus)
        return -ERANGE;
    if (hwloc_bitmap_iszero(t->me->set[a]) || hwloc_bitmap_iszero(t->me->set[b]))
        return -ENOENT;   /* offline */
    *c = set_class(t->topo, t->me->set[a], t->me->set[b]);
    return 0;
}

int xm_topo_peer_class(const xm_topo_t *t, unsigned vcpu, uint32_t peer,
                       int peer_vcpu, xm_topo_class_t *c)
{
    const struct xm_topo_dom *d = xm_topo_find_dom(t, peer);
    hwloc_bitmap_t u;

    if (!d)
        return -ENOENT;
    if (vcpu >= t->me->nvcpus || peer_vcpu >= (int)d->nvcpus || peer_vcpu < -1)
        return -ERANGE;
    if (hwloc_bitmap_iszero(t->me->set[vcpu]))
        return -ENOENT;
    u = hwloc_bitmap_alloc();
    if (!u)
        return -ENOMEM;
    if (peer_vcpu >= 0)
        hwloc_bitmap_copy(u, d->set[peer_vcpu]);
    else
        for (unsigned i = 0; i < d->nvcpus; i++)
            hwloc_bitmap_or(u, u, d->set[i]);
    *c = set_class(t->topo, t->me->set[vcpu], u);
    hwloc_bitmap_free(u);
    return 0;
}
