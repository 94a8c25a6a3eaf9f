/*
 * xm_topo_bind.c - what an adapter needs from the topology for one
 * endpoint: the NUMA binding of the memory the core allocates for it (its
 * rings, control pages and receive buffer, through xm_ep_params_t's
 * place_cb) and the distance to the nearest other domain (for the
 * adapter's latency and bandwidth estimates).
 */
#include "xm_topo.h"
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <hwloc.h>
#include <stdlib.h>

struct xm_topo_bind {
    hwloc_topology_t topo;     /* this VM's own view */
    hwloc_nodeset_t nodeset;   /* NUMA node(s) of the binding thread's CPU */
    unsigned placed;
};

void xm_topo_bind_free(xm_topo_bind_t *b)
{
    if (!b)
        return;
    if (b->nodeset)
        hwloc_bitmap_free(b->nodeset);
    if (b->topo)
        hwloc_topology_destroy(b->topo);
    free(b);
}

xm_topo_bind_t *xm_topo_bind_local(void)
{
    xm_topo_bind_t *b = calloc(1, sizeof(*b));
    hwloc_cpuset_t cpus = NULL;
    char buf[64];

    if (!b)
        return NULL;
    if (hwloc_topology_init(&b->topo)) {
        b->topo = NULL;
        xm_debug("hwloc topology: %m; no NUMA binding");
        goto none;
    }
    if (hwloc_topology_load(b->topo)) {
        xm_debug("hwloc topology: %m; no NUMA binding");
        goto none;
    }
    cpus = hwloc_bitmap_alloc();
    b->nodeset = hwloc_bitmap_alloc();
    if (!cpus || !b->nodeset || hwloc_get_last_cpu_location(b->topo, cpus, HWLOC_CPUBIND_THREAD)) {
        xm_debug("no CPU location: no NUMA binding");
        goto none;
    }
    hwloc_cpuset_to_nodeset(b->topo, cpus, b->nodeset);
    hwloc_bitmap_free(cpus);
    if (hwloc_bitmap_iszero(b->nodeset))
        goto none_freed;
    hwloc_bitmap_list_snprintf(buf, sizeof(buf), b->nodeset);
    xm_debug("rings and buffers on NUMA node(s) %s", buf);
    return b;
none:
    hwloc_bitmap_free(cpus);
none_freed:
    xm_topo_bind_free(b);
    return NULL;
}

void xm_topo_bind_place(void *arg, void *addr, size_t len)
{
    xm_topo_bind_t *b = arg;

    if (!b)
        return;
    if (hwloc_set_area_membind(b->topo, addr, len, b->nodeset, HWLOC_MEMBIND_BIND,
                               HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE) == 0)
        b->placed++;
    else   /* e.g. grant mappings, whose pages the kernel already placed */
        xm_debug("binding %zu bytes at %p: %m", len, addr);
}

unsigned xm_topo_bind_count(const xm_topo_bind_t *b)
{
    return b ? b->placed : 0;
}

int xm_topo_nearest(xm_hv_t *hv, int cpu, xm_topo_class_t *cls, uint32_t *domid)
{
    uint32_t self = xm_hv_domid(hv);
    int found = 0, rc;
    xm_topo_t *t;

    if (cpu < 0)
        return -EINVAL;
    rc = xm_topo_read_store(hv, self, &t);
    if (rc)
        return rc;
    for (unsigned i = 0; i < xm_topo_ndomains(t); i++) {
        uint32_t d = xm_topo_domain_at(t, i);
        int n = d == self ? 0 : xm_topo_domain_nvcpus(t, d);
        xm_topo_class_t c;

        for (int pv = 0; pv < n; pv++)
            if (xm_topo_peer_class(t, cpu, d, pv, &c) == 0 && (!found || c < *cls)) {
                *cls = c;
                *domid = d;
                found = 1;
            }
    }
    xm_topo_free(t);
    return found ? 0 : -ENOENT;
}
