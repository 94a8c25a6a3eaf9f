/*
 * xm_topo_fmt.c - the guest's handle as text (the CLI's tables) and as hwloc
 * XML marked for lstopo.
 */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- text output ---------------------------------------------------------------- */

void xm_topo_fmt_idx(char *buf, size_t len, int v, const char *none)
{
    if (v < 0)
        snprintf(buf, len, "%s", none);
    else
        snprintf(buf, len, "%d", v);
}

int xm_topo_format_table(const xm_topo_t *t, char **out)
{
    struct xm_topo_sbuf b = { 0 };
    hwloc_bitmap_t sib = hwloc_bitmap_alloc(), same = hwloc_bitmap_alloc();

    if (!sib || !same) {
        hwloc_bitmap_free(sib);
        hwloc_bitmap_free(same);
        return -ENOMEM;
    }
    xm_topo_sb_printf(&b, "domain %u on host %s: %u vCPUs, host of %u pCPUs\n", t->self,
                      t->host_id[0] ? t->host_id : "(unknown)", t->me->nvcpus,
                      xm_topo_npcpus(t));
    if (t->source == XM_TOPO_SRC_DOM0)
        xm_topo_sb_printf(&b, "source: dom0 (/local/domain/%u/" XM_TOPO_DIR ")\n", t->self);
    else
        xm_topo_sb_printf(&b, "source: hwloc inside this VM (no host data: %s)\n", t->reason);
    xm_topo_sb_printf(&b, "%-5s %-10s %-9s %-9s %-9s %-13s %s\n", "vcpu", "pcpus", "core",
                      "package", "numa", "smt-siblings", "same-pcpu");
    for (unsigned v = 0; v < t->me->nvcpus; v++) {
        const xm_topo_vcpu_t *i = &t->info[v];
        char pc[256], core[16], pkg[16], numa[16], s1[256], s2[256];
        if (i->npcpus == 0) {
            xm_topo_sb_printf(&b, "%-5u offline\n", v);
            continue;
        }
        hwloc_bitmap_zero(sib);
        hwloc_bitmap_zero(same);
        for (unsigned w = 0; w < t->me->nvcpus; w++) {
            xm_topo_class_t c;
            if (w == v || xm_topo_vcpu_class(t, v, w, &c))
                continue;
            if (c == XM_TOPO_SAME_CORE && i->core >= 0)
                hwloc_bitmap_set(sib, w);
            else if (c == XM_TOPO_SAME_PU)
                hwloc_bitmap_set(same, w);
        }
        hwloc_bitmap_list_snprintf(pc, sizeof(pc), t->me->set[v]);
        xm_topo_fmt_idx(core, sizeof(core), i->core, "floating");
        xm_topo_fmt_idx(pkg, sizeof(pkg), i->package, "floating");
        xm_topo_fmt_idx(numa, sizeof(numa), i->numa, "floating");
        if (hwloc_bitmap_iszero(sib))
            snprintf(s1, sizeof(s1), "-");
        else
            hwloc_bitmap_list_snprintf(s1, sizeof(s1), sib);
        if (hwloc_bitmap_iszero(same))
            snprintf(s2, sizeof(s2), "-");
        else
            hwloc_bitmap_list_snprintf(s2, sizeof(s2), same);
        xm_topo_sb_printf(&b, "%-5u %-10s %-9s %-9s %-9s %-13s %s\n", v, pc, core, pkg,
                          numa, s1, s2);
    }
    hwloc_bitmap_free(sib);
    hwloc_bitmap_free(same);
    return xm_topo_sb_done(&b, out);
}

int xm_topo_format_peer(const xm_topo_t *t, uint32_t peer, char **out)
{
    const struct xm_topo_dom *d = xm_topo_find_dom(t, peer);
    struct xm_topo_sbuf b = { 0 };

    if (!d)
        return xm_topo_fail(-ENOENT, XM_LOG_ERROR,
                            "domain %u's placement is not published to domain %u "
                            "(another host, or not named to xenmpi-topo-publish)",
                            peer, t->self);
    xm_topo_sb_printf(&b, "distance from domain %u's vCPUs (rows) to domain %u's vCPUs\n",
                      t->self, peer);
    xm_topo_sb_printf(&b, "%-5s", "vcpu");
    for (unsigned w = 0; w < d->nvcpus; w++) {
        char h[32];
        snprintf(h, sizeof(h), "%u:%u", peer, w);
        xm_topo_sb_printf(&b, " %-13s", h);
    }
    xm_topo_sb_printf(&b, " %s\n", "any");
    for (unsigned v = 0; v < t->me->nvcpus; v++) {
        xm_topo_class_t c;
        xm_topo_sb_printf(&b, "%-5u", v);
        for (int w = -1; w < (int)d->nvcpus; w++) {
            int k = w + 1 < (int)d->nvcpus ? w + 1 : -1;   /* "any" last */
            if (xm_topo_peer_class(t, v, peer, k, &c))
                xm_topo_sb_printf(&b, " %-13s", "offline");
            else
                xm_topo_sb_printf(&b, " %-13s", xm_topo_class_name(c));
        }
        /* drop the padding of the last column */
        while (!b.err && b.len && b.s[b.len - 1] == ' ')
            b.s[--b.len] = 0;
        xm_topo_sb_printf(&b, "\n");
    }
    return xm_topo_sb_done(&b, out);
}

int xm_topo_export_marked_xml(const xm_topo_t *t, char **xml, size_t *len)
{
    hwloc_topology_t dup;
    hwloc_bitmap_t pinned = hwloc_bitmap_alloc(), floating = hwloc_bitmap_alloc();
    hwloc_obj_t pu = NULL;
    int rc;

    if (!pinned || !floating || hwloc_topology_dup(&dup, t->topo)) {
        hwloc_bitmap_free(pinned);
        hwloc_bitmap_free(floating);
        return -ENOMEM;
    }
    for (unsigned v = 0; v < t->me->nvcpus; v++) {
        hwloc_const_bitmap_t s = t->me->set[v];
        char name[64];
        hwloc_obj_t at;
        if (hwloc_bitmap_iszero(s))
            continue;
        if (hwloc_bitmap_weight(s) == 1)
            hwloc_bitmap_or(pinned, pinned, s);
        else
            hwloc_bitmap_or(floating, floating, s);
        at = hwloc_get_obj_covering_cpuset(dup, s);
        if (!at)
            at = hwloc_get_root_obj(dup);
        snprintf(name, sizeof(name), "vCPU %u%s", v,
                 hwloc_bitmap_weight(s) == 1 ? "" : " (floating)");
        hwloc_topology_insert_misc_object(dup, at, name);
    }
    while ((pu = hwloc_get_next_obj_by_type(dup, HWLOC_OBJ_PU, pu))) {
        if (hwloc_bitmap_isset(pinned, pu->os_index))
            hwloc_obj_add_info(pu, "lstopoStyle", "Background=#e8590c;Text=#ffffff");
        else if (hwloc_bitmap_isset(floating, pu->os_index))
            hwloc_obj_add_info(pu, "lstopoStyle", "Background=#ffc078");
    }
    hwloc_bitmap_free(pinned);
    hwloc_bitmap_free(floating);
    rc = xm_topo_export_xml(dup, xml, len);
    hwloc_topology_destroy(dup);
    return rc;
}
