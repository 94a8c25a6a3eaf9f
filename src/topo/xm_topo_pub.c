/*
 * xm_topo_pub.c - the dom0 side: build the host topology as hwloc XML,
 * collect vCPU affinities, and write both below each domain's home.
 *
 * Write order: chunks, then the meta that describes them, then stale chunks
 * are removed.  A guest reading meanwhile sees a checksum mismatch and reads
 * again.  Nodes are owned by dom0 and readable by the domain they describe.
 */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- host topology ---------------------------------------------------------------- */

static int load_and_export(hwloc_topology_t topo, const char *what, char **xml,
                           size_t *len)
{
    int rc;

    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_type_filter(topo, HWLOC_OBJ_MISC, HWLOC_TYPE_FILTER_KEEP_NONE);
    if (hwloc_topology_load(topo)) {
        hwloc_topology_destroy(topo);
        return xm_topo_fail(-EINVAL, XM_LOG_ERROR, "hwloc cannot load %s", what);
    }
    rc = xm_topo_export_xml(topo, xml, len);
    hwloc_topology_destroy(topo);
    return rc;
}

int xm_topo_xml_from_synthetic(const char *desc, char **xml, size_t *len)
{
    hwloc_topology_t topo;
    char what[320];

    if (hwloc_topology_init(&topo))
        return -ENOMEM;
    if (hwloc_topology_set_synthetic(topo, desc)) {
        hwloc_topology_destroy(topo);
        return xm_topo_fail(-EINVAL, XM_LOG_ERROR,
                            "\"%s\" is not an hwloc synthetic description "
                            "(e.g. \"pack:2 numa:2 core:4 pu:2\", see hwloc's "
                            "lstopo -i)", desc);
    }
    snprintf(what, sizeof(what), "the synthetic topology \"%s\"", desc);
    return load_and_export(topo, what, xml, len);
}

int xm_topo_xml_from_file(const char *path, char **xml, size_t *len)
{
    hwloc_topology_t topo;
    char what[320];

    if (hwloc_topology_init(&topo))
        return -ENOMEM;
    if (hwloc_topology_set_xml(topo, path)) {
        hwloc_topology_destroy(topo);
        return xm_topo_fail(-EINVAL, XM_LOG_ERROR,
                            "%s: not a readable hwloc XML file (make one with "
                            "'lstopo host.xml')", path);
    }
    snprintf(what, sizeof(what), "%s as hwloc XML", path);
    return load_and_export(topo, what, xml, len);
}

/* XML for hwloc from Xen's per-pCPU (core, socket, node).  Two layouts are
 * representable: NUMA nodes inside sockets (a socket with several nodes gets
 * one Group per node) or sockets inside NUMA nodes (a node with several
 * sockets gets a Group).  The text is loaded by hwloc and exported again, so
 * what is published is hwloc's own normalised form. */
static void xb_sets(struct xm_topo_sbuf *b, hwloc_const_bitmap_t cpus, hwloc_const_bitmap_t nodes)
{
    char c[4096], n[1024];

    hwloc_bitmap_snprintf(c, sizeof(c), cpus);
    hwloc_bitmap_snprintf(n, sizeof(n), nodes);
    xm_topo_sb_printf(b, " cpuset=\"%s\" complete_cpuset=\"%s\" nodeset=\"%s\""
                      " complete_nodeset=\"%s\"", c, c, n, n);
}

struct cpuinfo {
    const xm_topo_pcpu_t *c;
    unsigned n;
    const uint64_t *mem;
    unsigned nmem;
};

static int online(const struct cpuinfo *ci, unsigned i)
{
    return ci->c[i].core >= 0 && ci->c[i].socket >= 0;
}

static int node_of(const struct cpuinfo *ci, unsigned i)
{
    return ci->c[i].node < 0 ? 0 : ci->c[i].node;
}

/* pCPUs (and nodes) matching socket s (-1: any) and node nd (-1: any) */
static void select_cpus(const struct cpuinfo *ci, int s, int nd, hwloc_bitmap_t cpus,
                        hwloc_bitmap_t nodes)
{
    hwloc_bitmap_zero(cpus);
    hwloc_bitmap_zero(nodes);
    for (unsigned i = 0; i < ci->n; i++)
        if (online(ci, i) && (s < 0 || ci->c[i].socket == s) &&
            (nd < 0 || node_of(ci, i) == nd)) {
            hwloc_bitmap_set(cpus, i);
            hwloc_bitmap_set(nodes, (unsigned)node_of(ci, i));
        }
}

static void emit_numa(struct xm_topo_sbuf *b, const struct cpuinfo *ci, int nd)
{
    hwloc_bitmap_t c = hwloc_bitmap_alloc(), n = hwloc_bitmap_alloc();
    uint64_t mem = ci->mem && (unsigned)nd < ci->nmem ? ci->mem[nd] : 0;

    select_cpus(ci, -1, nd, c, n);
    xm_topo_sb_printf(b, "<object type=\"NUMANode\" os_index=\"%d\"", nd);
    xb_sets(b, c, n);
    xm_topo_sb_printf(b, " local_memory=\"%llu\"/>\n", (unsigned long long)mem);
    hwloc_bitmap_free(c);
    hwloc_bitmap_free(n);
}

/* cores and PUs of socket s restricted to node nd (-1: any) */
static void emit_cores(struct xm_topo_sbuf *b, const struct cpuinfo *ci, int s, int nd)
{
    hwloc_bitmap_t done = hwloc_bitmap_alloc(), c = hwloc_bitmap_alloc(),
                   n = hwloc_bitmap_alloc(), one = hwloc_bitmap_alloc();

    for (unsigned i = 0; i < ci->n; i++) {
        if (!online(ci, i) || ci->c[i].socket != s || hwloc_bitmap_isset(done, i) ||
            (nd >= 0 && node_of(ci, i) != nd))
            continue;
        hwloc_bitmap_zero(c);
        for (unsigned j = i; j < ci->n; j++)
            if (online(ci, j) && ci->c[j].socket == s && ci->c[j].core == ci->c[i].core &&
                (nd < 0 || node_of(ci, j) == nd))
                hwloc_bitmap_set(c, j);
        hwloc_bitmap_or(done, done, c);
        hwloc_bitmap_only(n, (unsigned)node_of(ci, i));
        xm_topo_sb_printf(b, "<object type=\"Core\" os_index=\"%d\"", ci->c[i].core);
        xb_sets(b, c, n);
        xm_topo_sb_printf(b, ">\n");
        for (unsigned j = i; j < ci->n; j++)
            if (hwloc_bitmap_isset(c, j)) {
                hwloc_bitmap_only(one, j);
                xm_topo_sb_printf(b, "<object type=\"PU\" os_index=\"%u\"", j);
                xb_sets(b, one, n);
                xm_topo_sb_printf(b, "/>\n");
            }
        xm_topo_sb_printf(b, "</object>\n");
    }
    hwloc_bitmap_free(done);
    hwloc_bitmap_free(c);
    hwloc_bitmap_free(n);
    hwloc_bitmap_free(one);
}

int xm_topo_xml_from_cpus(const xm_topo_pcpu_t *cpus, unsigned ncpus,
                          const uint64_t *node_mem, unsigned nnodes,
                          char **xml, size_t *len)
{
    struct cpuinfo ci = { cpus, ncpus, node_mem, nnodes };
    hwloc_bitmap_t sockets = hwloc_bitmap_alloc(), nodes = hwloc_bitmap_alloc();
    hwloc_bitmap_t c = hwloc_bitmap_alloc(), n = hwloc_bitmap_alloc();
    struct xm_topo_sbuf b = { 0 };
    int nodes_in_sockets = 1, sockets_in_nodes = 1, s, nd, rc;
    hwloc_topology_t topo;
    const char *why;

    if (!sockets || !nodes || !c || !n) {
        rc = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < ncpus; i++)
        if (online(&ci, i)) {
            if (cpus[i].socket >= (int)XM_TOPO_MAX_PCPU || cpus[i].core >= (int)XM_TOPO_MAX_PCPU ||
                node_of(&ci, i) >= 4096 || i >= XM_TOPO_MAX_PCPU) {
                rc = xm_topo_fail(-ERANGE, XM_LOG_ERROR, "pCPU %u: socket, core or node id "
                                  "out of range", i);
                goto out;
            }
            hwloc_bitmap_set(sockets, (unsigned)cpus[i].socket);
            hwloc_bitmap_set(nodes, (unsigned)node_of(&ci, i));
        }
    if (hwloc_bitmap_iszero(sockets)) {
        rc = xm_topo_fail(-EINVAL, XM_LOG_ERROR, "no online pCPU in Xen's CPU topology");
        goto out;
    }
    hwloc_bitmap_foreach_begin(nd, nodes)
        select_cpus(&ci, -1, nd, c, n);
        int first = -1;
        for (unsigned i = 0; i < ncpus; i++)
            if (hwloc_bitmap_isset(c, i)) {
                if (first < 0)
                    first = cpus[i].socket;
                else if (cpus[i].socket != first)
                    nodes_in_sockets = 0;
            }
    hwloc_bitmap_foreach_end();
    hwloc_bitmap_foreach_begin(s, sockets)
        select_cpus(&ci, s, -1, c, n);
        if (hwloc_bitmap_weight(n) > 1)
            sockets_in_nodes = 0;
    hwloc_bitmap_foreach_end();
    if (!nodes_in_sockets && !sockets_in_nodes) {
        rc = xm_topo_fail(-EINVAL, XM_LOG_ERROR,
                          "Xen's CPU topology has NUMA nodes spanning sockets and "
                          "sockets spanning NUMA nodes: not representable, give the "
                          "host topology with --xml");
        goto out;
    }

    select_cpus(&ci, -1, -1, c, n);
    xm_topo_sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n<topology version=\"2.0\">\n"
                      "<object type=\"Machine\" os_index=\"0\"");
    xb_sets(&b, c, n);
    {
        char cs[4096], ns[1024];
        hwloc_bitmap_snprintf(cs, sizeof(cs), c);
        hwloc_bitmap_snprintf(ns, sizeof(ns), n);
        xm_topo_sb_printf(&b, " allowed_cpuset=\"%s\" allowed_nodeset=\"%s\">\n", cs, ns);
    }
    xm_topo_sb_printf(&b, "<info name=\"Backend\" value=\"Xen\"/>\n");
    if (nodes_in_sockets) {
        hwloc_bitmap_foreach_begin(s, sockets)
            select_cpus(&ci, s, -1, c, n);
            int multi = hwloc_bitmap_weight(n) > 1, node;
            xm_topo_sb_printf(&b, "<object type=\"Package\" os_index=\"%d\"", s);
            xb_sets(&b, c, n);
            xm_topo_sb_printf(&b, ">\n");
            hwloc_bitmap_t sn = hwloc_bitmap_dup(n);
            hwloc_bitmap_foreach_begin(node, sn)
                if (multi) {
                    hwloc_bitmap_t gc = hwloc_bitmap_alloc(), gn = hwloc_bitmap_alloc();
                    select_cpus(&ci, s, node, gc, gn);
                    xm_topo_sb_printf(&b, "<object type=\"Group\"");
                    xb_sets(&b, gc, gn);
                    xm_topo_sb_printf(&b, ">\n");
                    hwloc_bitmap_free(gc);
                    hwloc_bitmap_free(gn);
                }
                emit_numa(&b, &ci, node);
                emit_cores(&b, &ci, s, multi ? node : -1);
                if (multi)
                    xm_topo_sb_printf(&b, "</object>\n");
            hwloc_bitmap_foreach_end();
            hwloc_bitmap_free(sn);
            xm_topo_sb_printf(&b, "</object>\n");
        hwloc_bitmap_foreach_end();
    } else {
        hwloc_bitmap_foreach_begin(nd, nodes)
            hwloc_bitmap_t ns = hwloc_bitmap_alloc();
            select_cpus(&ci, -1, nd, c, n);
            for (unsigned i = 0; i < ncpus; i++)
                if (hwloc_bitmap_isset(c, i))
                    hwloc_bitmap_set(ns, (unsigned)cpus[i].socket);
            xm_topo_sb_printf(&b, "<object type=\"Group\"");
            xb_sets(&b, c, n);
            xm_topo_sb_printf(&b, ">\n");
            emit_numa(&b, &ci, nd);
            int sk;
            hwloc_bitmap_foreach_begin(sk, ns)
                hwloc_bitmap_t pc = hwloc_bitmap_alloc(), pn = hwloc_bitmap_alloc();
                select_cpus(&ci, sk, -1, pc, pn);
                xm_topo_sb_printf(&b, "<object type=\"Package\" os_index=\"%d\"", sk);
                xb_sets(&b, pc, pn);
                xm_topo_sb_printf(&b, ">\n");
                emit_cores(&b, &ci, sk, -1);
                xm_topo_sb_printf(&b, "</object>\n");
                hwloc_bitmap_free(pc);
                hwloc_bitmap_free(pn);
            hwloc_bitmap_foreach_end();
            xm_topo_sb_printf(&b, "</object>\n");
            hwloc_bitmap_free(ns);
        hwloc_bitmap_foreach_end();
    }
    xm_topo_sb_printf(&b, "</object>\n</topology>\n");
    if (b.err) {
        rc = b.err;
        goto out;
    }
    rc = xm_topo_load_xml(b.s, b.len, &topo, &why);
    if (rc) {
        rc = xm_topo_fail(rc, XM_LOG_ERROR, "the host topology built from Xen's CPU "
                          "topology does not load in hwloc: %s", why);
        goto out;
    }
    rc = xm_topo_export_xml(topo, xml, len);
    hwloc_topology_destroy(topo);
out:
    free(b.s);
    hwloc_bitmap_free(sockets);
    hwloc_bitmap_free(nodes);
    hwloc_bitmap_free(c);
    hwloc_bitmap_free(n);
    return rc;
}

/* ---- affinities -------------------------------------------------------------------- */

struct aff_dom {
    uint32_t domid;
    unsigned nvcpus;
    char **lists;
};

struct xm_topo_aff {
    struct aff_dom *d;
    unsigned n;
};

xm_topo_aff_t *xm_topo_aff_new(void)
{
    return calloc(1, sizeof(xm_topo_aff_t));
}

void xm_topo_aff_free(xm_topo_aff_t *a)
{
    if (!a)
        return;
    for (unsigned i = 0; i < a->n; i++) {
        for (unsigned v = 0; v < a->d[i].nvcpus; v++)
            free(a->d[i].lists[v]);
        free(a->d[i].lists);
    }
    free(a->d);
    free(a);
}

unsigned xm_topo_aff_ndomains(const xm_topo_aff_t *a) { return a->n; }
uint32_t xm_topo_aff_domain_at(const xm_topo_aff_t *a, unsigned i)
{
    return i < a->n ? a->d[i].domid : XM_DOMID_INVALID;
}

int xm_topo_aff_add(xm_topo_aff_t *a, uint32_t domid, unsigned vcpu, const char *pcpus)
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    struct aff_dom *d = NULL;
    const char *why;
    char **lists, canon[4096];
    int rc;

    if (!set)
        return -ENOMEM;
    rc = xm_topo_list_parse(pcpus, strlen(pcpus), set, &why);
    if (rc == 0)
        hwloc_bitmap_list_snprintf(canon, sizeof(canon), set);
    hwloc_bitmap_free(set);
    if (rc)
        return xm_topo_fail(rc, XM_LOG_ERROR, "domain %u vCPU %u: %s: \"%s\"", domid, vcpu,
                            why, pcpus);
    if (domid >= XM_DOMID_FIRST_RESERVED)
        return xm_topo_fail(-ERANGE, XM_LOG_ERROR, "domain id %u out of range", domid);
    for (unsigned i = 0; i < a->n; i++)
        if (a->d[i].domid == domid)
            d = &a->d[i];
    if (!d) {
        struct aff_dom *g = realloc(a->d, (a->n + 1) * sizeof(*g));
        if (!g)
            return -ENOMEM;
        a->d = g;
        d = &a->d[a->n++];
        memset(d, 0, sizeof(*d));
        d->domid = domid;
    }
    if (vcpu != d->nvcpus)
        return xm_topo_fail(-EINVAL, XM_LOG_ERROR,
                            "domain %u: vCPU %u given after %u vCPUs: list vCPUs "
                            "0, 1, 2, ... in order", domid, vcpu, d->nvcpus);
    if (vcpu >= XM_TOPO_MAX_VCPUS)
        return xm_topo_fail(-ERANGE, XM_LOG_ERROR, "domain %u: vCPU %u out of range", domid, vcpu);
    lists = realloc(d->lists, (d->nvcpus + 1) * sizeof(*lists));
    if (!lists)
        return -ENOMEM;
    d->lists = lists;
    if (!(d->lists[d->nvcpus] = strdup(canon)))
        return -ENOMEM;
    d->nvcpus++;
    return 0;
}

int xm_topo_aff_parse_file(const char *path, xm_topo_aff_t **out)
{
    FILE *f = fopen(path, "r");
    xm_topo_aff_t *a;
    char line[4096];
    unsigned ln = 0;
    int rc = 0;

    *out = NULL;
    if (!f)
        return xm_topo_fail(-errno, XM_LOG_ERROR, "%s: %s", path, strerror(errno));
    a = xm_topo_aff_new();
    if (!a) {
        fclose(f);
        return -ENOMEM;
    }
    while (fgets(line, sizeof(line), f)) {
        char *p = line, *end;
        unsigned long dom, vcpu;
        char list[4096];
        ln++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = xm_topo_fail(-E2BIG, XM_LOG_ERROR, "%s:%u: line too long", path, ln);
            break;
        }
        if ((end = strchr(p, '#')))
            *end = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '\n')
            continue;
        if (sscanf(p, "%lu %lu %4095s", &dom, &vcpu, list) != 3 || dom >= XM_DOMID_FIRST_RESERVED ||
            vcpu >= XM_TOPO_MAX_VCPUS) {
            rc = xm_topo_fail(-EINVAL, XM_LOG_ERROR,
                              "%s:%u: expected \"<domid> <vcpu> <pCPU list>\" (e.g. \"3 0 0-3\")",
                              path, ln);
            break;
        }
        rc = xm_topo_aff_add(a, (uint32_t)dom, (unsigned)vcpu, list);
        if (rc) {
            char why[1024];
            snprintf(why, sizeof(why), "%s", xm_topo_last_error());
            xm_topo_fail(rc, XM_LOG_ERROR, "%s:%u: %s", path, ln, why);
            break;
        }
    }
    fclose(f);
    if (!rc && a->n == 0)
        rc = xm_topo_fail(-EINVAL, XM_LOG_ERROR, "%s: no vCPU affinity in it", path);
    if (rc) {
        xm_topo_aff_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* The blob every domain gets: all domains of aff, one line each. */
static int aff_blob(const xm_topo_aff_t *a, char **out, size_t *len)
{
    size_t cap = 1, off = 0;
    char *s;

    for (unsigned i = 0; i < a->n; i++) {
        cap += 16;
        for (unsigned v = 0; v < a->d[i].nvcpus; v++)
            cap += strlen(a->d[i].lists[v]) + 1;
    }
    if (!(s = malloc(cap)))
        return -ENOMEM;
    for (unsigned i = 0; i < a->n; i++) {
        off += (size_t)snprintf(s + off, cap - off, "%u:", a->d[i].domid);
        for (unsigned v = 0; v < a->d[i].nvcpus; v++)
            off += (size_t)snprintf(s + off, cap - off, " %s", a->d[i].lists[v]);
        off += (size_t)snprintf(s + off, cap - off, "\n");
    }
    *out = s;
    *len = off;
    return 0;
}

/* ---- writing the store -------------------------------------------------------------- */

static int write_node(xm_hv_t *hv, const char *path, const void *val, size_t len,
                      uint32_t domid, int domain_owns)
{
    xm_store_perm_t ro[2] = { { 0, XM_PERM_NONE }, { domid, XM_PERM_READ } };
    xm_store_perm_t own[1] = { { domid, XM_PERM_NONE } };
    int rc = xm_store_write(hv, path, val, len);

    if (rc)
        return xm_topo_fail(rc, XM_LOG_ERROR, "%s: cannot write it (%s)", path, strerror(-rc));
    rc = domain_owns ? xm_store_set_perms(hv, path, own, 1)
                     : xm_store_set_perms(hv, path, ro, 2);
    if (rc)
        return xm_topo_fail(rc, XM_LOG_ERROR, "%s: cannot set its permissions (%s)", path,
                            strerror(-rc));
    return 0;
}

/* 1 when written, 0 when the same content was already there */
static int write_blob(xm_hv_t *hv, const char *dir, const char *data, size_t len,
                      uint32_t domid)
{
    char path[XM_STORE_MAX_PATH], meta[64], *old = NULL;
    size_t olen, obytes;
    unsigned chunks = (unsigned)((len + XM_TOPO_CHUNK - 1) / XM_TOPO_CHUNK), ochunks = 0;
    uint64_t osum;
    int rc;

    xm_topo_meta_format(meta, sizeof(meta), len, xm_fnv1a64(data, len));
    snprintf(path, sizeof(path), "%s/meta", dir);
    if (xm_store_read(hv, path, &old, &olen) == 0) {
        int same = olen == strlen(meta) && !memcmp(old, meta, olen);
        if (xm_topo_meta_parse(old, olen, &obytes, &ochunks, &osum))
            ochunks = 0;
        free(old);
        if (same)
            return 0;
    }
    if ((rc = write_node(hv, dir, "", 0, domid, 0)))
        return rc;
    for (unsigned i = 0; i < chunks; i++) {
        size_t off = (size_t)i * XM_TOPO_CHUNK;
        size_t n = len - off < XM_TOPO_CHUNK ? len - off : XM_TOPO_CHUNK;
        snprintf(path, sizeof(path), "%s/%u", dir, i);
        if ((rc = write_node(hv, path, data + off, n, domid, 0)))
            return rc;
    }
    snprintf(path, sizeof(path), "%s/meta", dir);
    if ((rc = write_node(hv, path, meta, strlen(meta), domid, 0)))
        return rc;
    for (unsigned i = chunks; i < ochunks; i++) {
        snprintf(path, sizeof(path), "%s/%u", dir, i);
        xm_store_remove(hv, path);
    }
    return 1;
}

int xm_topo_publish(xm_hv_t *hv, const char *host_id, const char *xml, size_t xml_len,
                    const xm_topo_aff_t *aff, const uint32_t *domids, unsigned n,
                    FILE *report)
{
    char *blob = NULL, path[XM_STORE_MAX_PATH], *val;
    size_t blen, vlen;
    int rc, changed = 0;

    if (!host_id || !*host_id || strlen(host_id) >= 256)
        return xm_topo_fail(-EINVAL, XM_LOG_ERROR, "the host identity must be 1 to 255 characters");
    if ((rc = aff_blob(aff, &blob, &blen)))
        return rc;
    /* validate everything as a guest will before writing anything */
    for (unsigned i = 0; i < n; i++) {
        xm_topo_t *t;
        rc = xm_topo_from_data(xml, xml_len, blob, blen, domids[i], host_id,
                               "publisher input", &t);
        if (rc)
            goto out;
        xm_topo_free(t);
    }
    for (unsigned i = 0; i < n; i++) {
        uint32_t d = domids[i];
        int w1, w2, w3 = 0;
        snprintf(path, sizeof(path), "/local/domain/%u/domid", d);
        rc = xm_store_read(hv, path, &val, &vlen);
        if (rc == -ENOENT) {
            rc = xm_topo_fail(-ENOENT, XM_LOG_ERROR, "domain %u does not exist (no %s): "
                              "start it first", d, path);
            goto out;
        }
        if (rc) {
            xm_topo_fail(rc, XM_LOG_ERROR, "%s: cannot read it (%s): publish from dom0",
                         path, strerror(-rc));
            goto out;
        }
        free(val);
        /* the domain's own directory: its endpoints live there too */
        snprintf(path, sizeof(path), "/local/domain/%u/xenmpi", d);
        if (xm_store_read(hv, path, &val, &vlen) == 0)
            free(val);
        else if ((rc = write_node(hv, path, "", 0, d, 1)))
            goto out;
        snprintf(path, sizeof(path), "/local/domain/%u/" XM_HOSTID_KEY, d);
        if (xm_store_read(hv, path, &val, &vlen) == 0) {
            w3 = vlen != strlen(host_id) || memcmp(val, host_id, vlen);
            free(val);
        } else
            w3 = 1;
        if (w3 && (rc = write_node(hv, path, host_id, strlen(host_id), d, 0)))
            goto out;
        snprintf(path, sizeof(path), "/local/domain/%u/" XM_TOPO_DIR, d);
        if (xm_store_read(hv, path, &val, &vlen) == 0)
            free(val);
        else if ((rc = write_node(hv, path, "", 0, d, 0)))
            goto out;
        snprintf(path, sizeof(path), "/local/domain/%u/" XM_TOPO_DIR "/xml", d);
        if ((w1 = write_blob(hv, path, xml, xml_len, d)) < 0) {
            rc = w1;
            goto out;
        }
        snprintf(path, sizeof(path), "/local/domain/%u/" XM_TOPO_DIR "/affinity", d);
        if ((w2 = write_blob(hv, path, blob, blen, d)) < 0) {
            rc = w2;
            goto out;
        }
        changed += w1 || w2 || w3;
        if (report) {
            const struct aff_dom *ad = NULL;
            for (unsigned k = 0; k < aff->n; k++)
                if (aff->d[k].domid == d)
                    ad = &aff->d[k];
            fprintf(report, "domain %u: %s /local/domain/%u/" XM_TOPO_DIR
                    ": host-id %s%s, host XML %zu bytes in %zu chunks%s, "
                    "affinity of %u domains%s; its vCPUs on pCPUs",
                    d, w1 || w2 || w3 ? "published" : "unchanged", d, host_id,
                    w3 ? "" : " (same)", xml_len,
                    (xml_len + XM_TOPO_CHUNK - 1) / XM_TOPO_CHUNK, w1 ? "" : " (same)",
                    aff->n, w2 ? "" : " (same)");
            for (unsigned v = 0; ad && v < ad->nvcpus; v++)
                fprintf(report, " %s", ad->lists[v]);
            fprintf(report, "\n");
        }
    }
    rc = changed;
out:
    free(blob);
    return rc;
}

int xm_topo_unpublish(xm_hv_t *hv, uint32_t domid)
{
    char path[XM_STORE_MAX_PATH];
    int rc;

    snprintf(path, sizeof(path), "/local/domain/%u/" XM_TOPO_DIR, domid);
    rc = xm_store_remove(hv, path);
    return rc == -ENOENT ? 0 : rc;
}
