/* libFuzzer target: the vCPU affinity blob dom0 publishes for a guest
 * (topo/affinity: "<domid>: <pCPU list> <pCPU list>...\n" per domain), on
 * the host of test/topo ("pack:2 numa:2 core:4 pu:2", 32 pCPUs) as the guest
 * loads it.  Input: the blob, copied to a buffer of its exact size.  The
 * guest is the first line's domain.  What is accepted is then used as the
 * CLI and the transport use it: every query, the tables, the marked XML and
 * placement.  Checked: a vCPU's pCPUs are the host's and read back as the
 * same list, distance classes are symmetric and in range, proposed ranks
 * get disjoint, non-empty sets of this domain's vCPUs. */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH "pack:2 numa:2 core:4 pu:2"
#define MAX_CHECK 24u   /* vCPUs, domains and ranks looked at per input */

static hwloc_topology_t host;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    hwloc_topology_t syn;
    const char *why;
    char *xml;
    size_t len;

    (void)argc;
    (void)argv;
    xm_log_level = -1;   /* refusals are the normal case here */
    /* the XML the publisher makes of the synthetic host, loaded as the
     * guest loads it */
    if (hwloc_topology_init(&syn) || hwloc_topology_set_synthetic(syn, SYNTH))
        abort();
    hwloc_topology_set_io_types_filter(syn, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_type_filter(syn, HWLOC_OBJ_MISC, HWLOC_TYPE_FILTER_KEEP_NONE);
    if (hwloc_topology_load(syn) || xm_topo_export_xml(syn, &xml, &len) ||
        xm_topo_load_xml(xml, len, &host, &why))
        abort();
    hwloc_topology_destroy(syn);
    free(xml);
    return 0;
}

static uint32_t first_domid(const char *s, size_t n)
{
    uint32_t d = 0;

    for (size_t i = 0; i < n && i < 6 && s[i] >= '0' && s[i] <= '9'; i++)
        d = d * 10 + (uint32_t)(s[i] - '0');
    return d;
}

/* the list a query printed parses back to the same set */
static void same_list(const char *buf, hwloc_const_bitmap_t want)
{
    hwloc_bitmap_t got = hwloc_bitmap_alloc();
    const char *why;

    if (!got)
        abort();
    if (xm_topo_list_parse(buf, strlen(buf), got, &why) ||
        !hwloc_bitmap_isequal(got, want))
        abort();
    hwloc_bitmap_free(got);
}

static void check_plan(const xm_topo_t *t, unsigned nranks, uint32_t peer)
{
    uint32_t *peers = malloc(nranks * sizeof(*peers));
    hwloc_bitmap_t all = hwloc_bitmap_alloc(), one = hwloc_bitmap_alloc();
    xm_topo_plan_t *p;
    char buf[4096];
    const char *why;

    if (!peers || !all || !one)
        abort();
    for (unsigned r = 0; r < nranks; r++)
        peers[r] = r % 2 ? peer : XM_DOMID_INVALID;
    if (xm_topo_propose(t, nranks, peers, &p) == 0) {
        if (xm_topo_plan_nranks(p) != nranks)
            abort();
        for (unsigned r = 0; r < nranks; r++) {
            if (xm_topo_plan_format(p, XM_TOPO_FMT_LIST, r, buf, sizeof(buf)) ||
                xm_topo_list_parse(buf, strlen(buf), one, &why) ||
                hwloc_bitmap_iszero(one) || hwloc_bitmap_intersects(one, all) ||
                hwloc_bitmap_last(one) >= (int)xm_topo_nvcpus(t))
                abort();
            hwloc_bitmap_or(all, all, one);
            if (xm_topo_plan_format(p, XM_TOPO_FMT_HWLOC, r, buf, sizeof(buf)))
                abort();
        }
        int rc = xm_topo_plan_format(p, XM_TOPO_FMT_MPICH, 0, buf, sizeof(buf));
        if (rc && rc != -ENOSPC)
            abort();
        (void)xm_topo_plan_notes(p);
        xm_topo_plan_free(p);
    }
    hwloc_bitmap_free(one);
    hwloc_bitmap_free(all);
    free(peers);
}

static void use(const xm_topo_t *t)
{
    const struct xm_topo_dom *me = xm_topo_find_dom(t, xm_topo_domid(t));
    unsigned nv = xm_topo_nvcpus(t), nd = xm_topo_ndomains(t);
    unsigned npu = xm_topo_npcpus(t);
    char buf[4096], *text;
    size_t len;

    if (!me || nv != me->nvcpus || nv == 0 || nd == 0)
        abort();
    for (unsigned v = 0; v < nv && v < MAX_CHECK; v++) {
        xm_topo_vcpu_t i;
        if (xm_topo_vcpu(t, v, &i) || i.npcpus < 1 || i.npcpus > (int)npu ||
            (i.pcpu >= 0) != (i.npcpus == 1) || i.pcpu >= (int)npu)
            abort();
        if (xm_topo_vcpu_pcpus(t, v, buf, sizeof(buf)))
            abort();
        same_list(buf, me->set[v]);
        for (unsigned w = 0; w < nv && w < MAX_CHECK; w++) {
            xm_topo_class_t a, b;
            if (xm_topo_vcpu_class(t, v, w, &a) || xm_topo_vcpu_class(t, w, v, &b) ||
                a != b || a > XM_TOPO_CROSS_PACKAGE)
                abort();
        }
    }
    if (xm_topo_vcpu(t, nv, &(xm_topo_vcpu_t){ 0 }) != -ERANGE)
        abort();
    for (unsigned k = 0; k < nd && k < MAX_CHECK; k++) {
        uint32_t d = xm_topo_domain_at(t, k);
        int n = xm_topo_domain_nvcpus(t, d);
        xm_topo_class_t c;
        if (n < 1 || xm_topo_peer_class(t, 0, d, -1, &c) || c > XM_TOPO_CROSS_PACKAGE ||
            xm_topo_peer_class(t, 0, d, n - 1, &c) ||
            xm_topo_peer_class(t, 0, d, n, &c) != -ERANGE ||
            xm_topo_domain_vcpu_pcpus(t, d, (unsigned)n - 1, buf, sizeof(buf)))
            abort();
        same_list(buf, xm_topo_find_dom(t, d)->set[n - 1]);
        if (k < 4) {
            if (xm_topo_format_peer(t, d, &text))
                abort();
            free(text);
        }
    }
    if (xm_topo_format_table(t, &text))
        abort();
    free(text);
    if (xm_topo_export_marked_xml(t, &text, &len))
        abort();
    free(text);
    check_plan(t, 1, xm_topo_domain_at(t, nd - 1));
    check_plan(t, nv < MAX_CHECK ? nv : MAX_CHECK, xm_topo_domain_at(t, nd - 1));
    if (nv > 2)
        check_plan(t, nv / 2 + 1, xm_topo_domain_at(t, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    hwloc_topology_t dup;
    xm_topo_t *t;

    if (!s)
        return 0;
    memcpy(s, data, size);
    if (hwloc_topology_dup(&dup, host))
        abort();
    if (xm_topo_build(dup, s, size, first_domid(s, size), "fuzz-host", "fuzz", &t) == 0) {
        use(t);
        xm_topo_free(t);
    }
    free(s);
    return 0;
}
