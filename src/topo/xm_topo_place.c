/*
 * xm_topo_place.c - placement: a cpu list of local vCPUs per rank, from the
 * guest's handle (docs/topology.md).
 */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- placement ------------------------------------------------------------------- */

struct xm_topo_plan {
    unsigned nranks;
    hwloc_bitmap_t *cpus;   /* local vCPUs per rank */
    char *notes;
};

void xm_topo_plan_free(xm_topo_plan_t *p)
{
    if (!p)
        return;
    for (unsigned r = 0; r < p->nranks; r++)
        hwloc_bitmap_free(p->cpus[r]);
    free(p->cpus);
    free(p->notes);
    free(p);
}

unsigned xm_topo_plan_nranks(const xm_topo_plan_t *p) { return p->nranks; }
const char *xm_topo_plan_notes(const xm_topo_plan_t *p) { return p->notes ? p->notes : ""; }

struct slot {
    hwloc_bitmap_t vcpus;
    int core, numa, used;
};

int xm_topo_propose(const xm_topo_t *t, unsigned nranks, const uint32_t *peer,
                    xm_topo_plan_t **out)
{
    unsigned n = t->me->nvcpus, ngroups = 0, nslots = 0, usable = 0;
    int *group = malloc(n * sizeof(int));          /* vCPU -> group */
    int *first = malloc(n * sizeof(int));          /* group -> first vCPU */
    struct slot *slots = calloc(n ? n : 1, sizeof(*slots));
    xm_topo_plan_t *p = calloc(1, sizeof(*p));
    hwloc_bitmap_t want = hwloc_bitmap_alloc();
    struct xm_topo_sbuf notes = { 0 }, *rn = calloc(nranks ? nranks : 1, sizeof(*rn));
    int rc = -ENOMEM;

    *out = NULL;
    if (!group || !first || !slots || !p || !want || !rn)
        goto out;
    if (nranks == 0) {
        rc = xm_topo_fail(-EINVAL, XM_LOG_ERROR, "no ranks to place");
        goto out;
    }
    /* groups: one per physical core holding pinned vCPUs, in vCPU order,
     * then one per vCPU that floats over several cores */
    for (int pass = 0; pass < 2; pass++)
        for (unsigned v = 0; v < n; v++) {
            const xm_topo_vcpu_t *i = &t->info[v];
            if (i->npcpus == 0 || (pass == 0) != (i->core >= 0))
                continue;
            group[v] = -1;
            if (pass == 0)
                for (unsigned w = 0; w < v; w++)
                    if (t->info[w].npcpus && t->info[w].core == i->core) {
                        group[v] = group[w];
                        break;
                    }
            if (group[v] < 0)
                first[ngroups] = (int)v, group[v] = (int)ngroups++;
            usable++;
        }
    if (nranks > usable) {
        rc = xm_topo_fail(-E2BIG, XM_LOG_ERROR,
                          "%u ranks on %u vCPUs: one rank per vCPU at most "
                          "(start fewer ranks in this VM or give it more vCPUs)",
                          nranks, usable);
        goto out;
    }
    if (nranks <= ngroups) {
        /* a whole physical core per rank: every vCPU of this VM on it */
        for (unsigned g = 0; g < ngroups; g++) {
            struct slot *s = &slots[nslots++];
            s->vcpus = hwloc_bitmap_alloc();
            for (unsigned v = 0; v < n; v++)
                if (t->info[v].npcpus && group[v] == (int)g)
                    hwloc_bitmap_set(s->vcpus, v);
        }
    } else {
        /* single vCPUs: the first of every core, then the second, ... */
        for (unsigned round = 0; nslots < usable; round++)
            for (unsigned g = 0; g < ngroups; g++) {
                unsigned k = 0;
                for (unsigned v = 0; v < n; v++)
                    if (t->info[v].npcpus && group[v] == (int)g && k++ == round) {
                        struct slot *s = &slots[nslots++];
                        s->vcpus = hwloc_bitmap_alloc();
                        hwloc_bitmap_set(s->vcpus, v);
                    }
            }
    }
    for (unsigned s = 0; s < nslots; s++) {
        if (!slots[s].vcpus)
            goto out;
        int v = hwloc_bitmap_first(slots[s].vcpus);
        slots[s].core = t->info[v].core;
        slots[s].numa = t->info[v].numa;
    }
    p->nranks = nranks;
    p->cpus = calloc(nranks, sizeof(*p->cpus));
    if (!p->cpus)
        goto out;
    /* ranks that talk across VMs first, on their peer's NUMA nodes */
    for (int pass = 0; pass < 2; pass++)
        for (unsigned r = 0; r < nranks; r++) {
            uint32_t pd = peer ? peer[r] : XM_DOMID_INVALID;
            const struct xm_topo_dom *d =
                pd != XM_DOMID_INVALID ? xm_topo_find_dom(t, pd) : NULL;
            int pick = -1;
            char nodes[64] = "";
            if ((pass == 0) != (pd != XM_DOMID_INVALID))
                continue;
            hwloc_bitmap_zero(want);
            if (d)
                for (unsigned w = 0; w < d->nvcpus; w++) {
                    xm_topo_vcpu_t i;
                    xm_topo_vcpu_info(t->topo, d->set[w], &i);
                    if (i.numa >= 0)
                        hwloc_bitmap_set(want, (unsigned)i.numa);
                }
            for (unsigned s = 0; s < nslots && pick < 0; s++)
                if (!slots[s].used && slots[s].numa >= 0 &&
                    hwloc_bitmap_isset(want, (unsigned)slots[s].numa))
                    pick = (int)s;
            for (unsigned s = 0; s < nslots && pick < 0; s++)
                if (!slots[s].used)
                    pick = (int)s;
            slots[pick].used = 1;
            p->cpus[r] = hwloc_bitmap_dup(slots[pick].vcpus);
            {
                char l[256], core[16], numa[16];
                hwloc_bitmap_list_snprintf(l, sizeof(l), slots[pick].vcpus);
                xm_topo_fmt_idx(core, sizeof(core), slots[pick].core, "floating");
                xm_topo_fmt_idx(numa, sizeof(numa), slots[pick].numa, "floating");
                xm_topo_sb_printf(&rn[r], "rank %u: vCPUs %s (core %s, NUMA node %s)", r, l,
                                  core, numa);
            }
            hwloc_bitmap_list_snprintf(nodes, sizeof(nodes), want);
            if (pd == XM_DOMID_INVALID)
                xm_topo_sb_printf(&rn[r], "\n");
            else if (!d)
                xm_topo_sb_printf(&rn[r], "; domain %u's placement is not published here\n",
                                  pd);
            else if (hwloc_bitmap_iszero(want))
                xm_topo_sb_printf(&rn[r], "; domain %u floats over several NUMA nodes\n", pd);
            else if (slots[pick].numa >= 0 &&
                     hwloc_bitmap_isset(want, (unsigned)slots[pick].numa))
                xm_topo_sb_printf(&rn[r], ", with domain %u\n", pd);
            else
                xm_topo_sb_printf(&rn[r], "; no free vCPU on domain %u's NUMA node(s) %s\n",
                                  pd, nodes);
        }
    for (unsigned r = 0; r < nranks; r++) {
        if (!p->cpus[r] || rn[r].err || !rn[r].s)
            goto out;
        xm_topo_sb_printf(&notes, "%s", rn[r].s);
    }
    if (xm_topo_sb_done(&notes, &p->notes)) {
        notes.s = NULL;
        goto out;
    }
    notes.s = NULL;
    *out = p;
    p = NULL;
    rc = 0;
out:
    free(notes.s);
    for (unsigned r = 0; rn && r < nranks; r++)
        free(rn[r].s);
    free(rn);
    for (unsigned s = 0; s < nslots; s++)
        hwloc_bitmap_free(slots[s].vcpus);
    free(slots);
    free(group);
    free(first);
    hwloc_bitmap_free(want);
    xm_topo_plan_free(p);
    return rc;
}

int xm_topo_plan_format(const xm_topo_plan_t *p, int fmt, unsigned rank,
                        char *buf, size_t len)
{
    size_t off = 0;
    int n, id;

#define PUT(...) do { \
        n = snprintf(buf + off, off < len ? len - off : 0, __VA_ARGS__); \
        if (n < 0) return -EINVAL; \
        off += (size_t)n; \
    } while (0)
    if (len == 0)
        return -ENOSPC;
    buf[0] = 0;
    switch (fmt) {
    case XM_TOPO_FMT_LIST:
        if (rank >= p->nranks)
            return -ERANGE;
        n = hwloc_bitmap_list_snprintf(buf, len, p->cpus[rank]);
        off = n < 0 ? len : (size_t)n;
        break;
    case XM_TOPO_FMT_MPICH:
        PUT("user:");
        for (unsigned r = 0; r < p->nranks; r++) {
            const char *sep = r ? "," : "";
            hwloc_bitmap_foreach_begin(id, p->cpus[r])
                PUT("%s%d", sep, id);
                sep = "+";
            hwloc_bitmap_foreach_end();
        }
        break;
    case XM_TOPO_FMT_HWLOC:
        if (rank >= p->nranks)
            return -ERANGE;
        {
            const char *sep = "";
            hwloc_bitmap_foreach_begin(id, p->cpus[rank])
                PUT("%spu:%d", sep, id);
                sep = " ";
            hwloc_bitmap_foreach_end();
        }
        break;
    default:
        return -EINVAL;
    }
#undef PUT
    return off < len ? 0 : -ENOSPC;
}
