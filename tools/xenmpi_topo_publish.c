/*
 * xenmpi-topo-publish - in dom0: publish the host topology, each domain's
 * vCPU -> pCPU affinity and the host identity where each domain can read
 * them (docs/topology.md).
 *
 * On Xen, the CPU topology and the affinities come from libxenlight
 * (libxl_get_cpu_topology, libxl_get_numainfo, libxl_list_domain,
    * libxl_list_vcpu); --xml/--synthetic and --affinity override them.  On the
 * sim backend both must be given.  --interval re-reads the sources and
 * rewrites what changed: Xen raises no store event when a vCPU is re-pinned.
 */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxl.h>
#include <libxl_utils.h>

static const char usage[] =
    "usage: xenmpi-topo-publish [options]   (in dom0)\n"
    "  --host-id NAME       host identity for the transport (default: XENMPI_HOST_ID,\n"
    "                       else the hostname; on sim the sim host's identity)\n"
    "  --synthetic DESC     host topology from an hwloc synthetic description,\n"
    "                       e.g. \"pack:2 numa:2 core:4 pu:2\"\n"
    "  --xml FILE           host topology from an hwloc XML file\n"
    "                       (default on Xen: libxenlight's CPU topology)\n"
    "  --affinity FILE      vCPU affinities, lines \"<domid> <vcpu> <pCPU list>\"\n"
    "                       (default on Xen: libxenlight's hard affinity)\n"
    "  --domains ID,ID...   publish to these domains only (default: every domain\n"
    "                       but dom0); each sees the placement of all of them\n"
    "  --interval SECONDS   keep running, re-read and republish what changed\n"
    "  --remove             remove what was published for --domains and exit\n";

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

struct opts {
    const char *host_id, *synthetic, *xml, *affinity, *domains;
    unsigned interval;
    int remove;
};

/* ---- libxenlight ------------------------------------------------------------ */

struct xl {
    libxl_ctx *ctx;
    xentoollog_logger_stdiostream *lg;
};

static int xl_open(struct xl *x)
{
    x->lg = xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
    if (!x->lg || libxl_ctx_alloc(&x->ctx, LIBXL_VERSION, 0, (xentoollog_logger *)x->lg)) {
        fprintf(stderr, "xenmpi-topo-publish: cannot open libxenlight: run it as root "
                "in dom0 with xenstored running, or give --xml/--synthetic and "
                "--affinity\n");
        return -1;
    }
    return 0;
}

static void xl_close(struct xl *x)
{
    if (x->ctx)
        libxl_ctx_free(x->ctx);
    if (x->lg)
        xtl_logger_destroy((xentoollog_logger *)x->lg);
}

static int xl_host_xml(struct xl *x, char **xml, size_t *len)
{
    int n = 0, nn = 0, rc;
    libxl_cputopology *ct = libxl_get_cpu_topology(x->ctx, &n);
    libxl_numainfo *ni = libxl_get_numainfo(x->ctx, &nn);
    xm_topo_pcpu_t *c;
    uint64_t *mem;

    if (!ct || n <= 0) {
        fprintf(stderr, "xenmpi-topo-publish: libxl_get_cpu_topology failed; give "
                "the host topology with --xml\n");
        if (ni)
            libxl_numainfo_list_free(ni, nn);
        return -1;
    }
    c = calloc((size_t)n, sizeof(*c));
    mem = calloc(nn > 0 ? (size_t)nn : 1, sizeof(*mem));
    for (int i = 0; c && i < n; i++) {
        c[i].core = ct[i].core == LIBXL_CPUTOPOLOGY_INVALID_ENTRY ? -1 : (int)ct[i].core;
        c[i].socket = ct[i].socket == LIBXL_CPUTOPOLOGY_INVALID_ENTRY ? -1 : (int)ct[i].socket;
        c[i].node = ct[i].node == LIBXL_CPUTOPOLOGY_INVALID_ENTRY ? -1 : (int)ct[i].node;
    }
    for (int i = 0; mem && i < nn; i++)
        mem[i] = ni[i].size == LIBXL_NUMAINFO_INVALID_ENTRY ? 0 : ni[i].size;
    rc = c && mem ? xm_topo_xml_from_cpus(c, (unsigned)n, mem, nn > 0 ? (unsigned)nn : 0,
                                          xml, len)
                  : -ENOMEM;
    free(c);
    free(mem);
    libxl_cputopology_list_free(ct, n);
    if (ni)
        libxl_numainfo_list_free(ni, nn);
    return rc ? -1 : 0;
}

static int xl_domains(struct xl *x, uint32_t **out, unsigned *n)
{
    int nd = 0;
    libxl_dominfo *di = libxl_list_domain(x->ctx, &nd);

    *n = 0;
    if (!di) {
        fprintf(stderr, "xenmpi-topo-publish: libxl_list_domain failed\n");
        return -1;
    }
    *out = calloc((size_t)nd + 1, sizeof(**out));
    for (int i = 0; *out && i < nd; i++)
        (*out)[(*n)++] = di[i].domid;
    libxl_dominfo_list_free(di, nd);
    return *out ? 0 : -1;
}

/* hard affinity of every vCPU of domid, restricted to the host's pCPUs */
static int xl_affinity(struct xl *x, uint32_t domid, hwloc_const_bitmap_t host,
                       xm_topo_aff_t *aff)
{
    int nv = 0, nr = 0, rc = 0;
    libxl_vcpuinfo *vi = libxl_list_vcpu(x->ctx, domid, &nv, &nr);
    hwloc_bitmap_t set = hwloc_bitmap_alloc();

    if (!vi) {
        fprintf(stderr, "xenmpi-topo-publish: libxl_list_vcpu(%u) failed\n", domid);
        hwloc_bitmap_free(set);
        return -1;
    }
    for (int v = 0; v < nv && rc == 0; v++) {
        const libxl_vcpuinfo *info = NULL;
        char list[4096];
        for (int k = 0; k < nv; k++)
            if (vi[k].vcpuid == (uint32_t)v)
                info = &vi[k];
        if (!info) {
            fprintf(stderr, "xenmpi-topo-publish: domain %u: no vCPU %d in libxl's list\n",
                    domid, v);
            rc = -1;
            break;
        }
        hwloc_bitmap_zero(set);
        for (int p = 0; p < nr && p < (int)XM_TOPO_MAX_PCPU; p++)
            if (libxl_bitmap_test(&info->cpumap, p))
                hwloc_bitmap_set(set, (unsigned)p);
        hwloc_bitmap_and(set, set, host);
        if (hwloc_bitmap_iszero(set)) {
            fprintf(stderr, "xenmpi-topo-publish: domain %u vCPU %d: hard affinity "
                    "holds no online pCPU\n", domid, v);
            rc = -1;
            break;
        }
        hwloc_bitmap_list_snprintf(list, sizeof(list), set);
        if (xm_topo_aff_add(aff, domid, (unsigned)v, list))
            rc = -1;
    }
    libxl_vcpuinfo_list_free(vi, nv);
    hwloc_bitmap_free(set);
    return rc;
}

/* ---- one round ----------------------------------------------------------------- */

static int parse_domains(const char *s, uint32_t **out, unsigned *n)
{
    char *copy = strdup(s), *tok, *save = NULL;
    unsigned cap = 0;

    *n = 0;
    *out = NULL;
    if (!copy)
        return -1;
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        unsigned long d = strtoul(tok, &end, 10);
        if (*end || end == tok || d >= XM_DOMID_FIRST_RESERVED) {
            fprintf(stderr, "xenmpi-topo-publish: --domains: \"%s\" is not a domain id\n", tok);
            free(copy);
            return -1;
        }
        if (*n == cap) {
            uint32_t *g = realloc(*out, (cap = cap ? cap * 2 : 8) * sizeof(**out));
            if (!g) {
                free(copy);
                return -1;
            }
            *out = g;
        }
        (*out)[(*n)++] = (uint32_t)d;
    }
    free(copy);
    return *n ? 0 : -1;
}

static int round_once(xm_hv_t *hv, const struct opts *o, const char *host_id,
                      int is_xen, int quiet_unchanged)
{
    struct xl x = { 0 };
    char *xml = NULL, *report = NULL;
    size_t xlen = 0, rlen = 0;
    xm_topo_aff_t *aff = NULL;
    uint32_t *doms = NULL, *all = NULL;
    unsigned ndoms = 0, nall = 0;
    hwloc_topology_t topo = NULL;
    const char *why;
    int rc = -1, failed = 0;

    if ((!o->xml && !o->synthetic) || !o->affinity)
        if (xl_open(&x))
            goto out;
    if (o->synthetic ? xm_topo_xml_from_synthetic(o->synthetic, &xml, &xlen)
        : o->xml ? xm_topo_xml_from_file(o->xml, &xml, &xlen)
        : xl_host_xml(&x, &xml, &xlen))
        goto out;
    if (xm_topo_load_xml(xml, xlen, &topo, &why)) {
        fprintf(stderr, "xenmpi-topo-publish: the host topology does not load: %s\n", why);
        goto out;
    }
    if (o->domains ? parse_domains(o->domains, &doms, &ndoms) : 0)
        goto out;
    if (o->affinity) {
        if (xm_topo_aff_parse_file(o->affinity, &aff))
            goto out;
    } else {
        /* the named domains, or every running domain but dom0 */
        if (!(aff = xm_topo_aff_new()))
            goto out;
        if (!o->domains && xl_domains(&x, &all, &nall))
            goto out;
        for (unsigned i = 0; i < (o->domains ? ndoms : nall); i++) {
            uint32_t d = o->domains ? doms[i] : all[i];
            if ((o->domains || d != 0) &&
                xl_affinity(&x, d, hwloc_topology_get_topology_cpuset(topo), aff))
                goto out;
        }
    }
    if (!o->domains) {
        doms = calloc(xm_topo_aff_ndomains(aff) + 1, sizeof(*doms));
        if (!doms)
            goto out;
        for (unsigned i = 0; i < xm_topo_aff_ndomains(aff); i++)
            if (xm_topo_aff_domain_at(aff, i) != 0)
                doms[ndoms++] = xm_topo_aff_domain_at(aff, i);
        if (ndoms == 0) {
            fprintf(stderr, "xenmpi-topo-publish: no domain besides dom0 to publish to\n");
            goto out;
        }
    }
    (void)is_xen;
    for (unsigned i = 0; i < ndoms; i++) {
        FILE *mem = open_memstream(&report, &rlen);
        int r = xm_topo_publish(hv, host_id, xml, xlen, aff, &doms[i], 1, mem);
        fclose(mem);
        if (r < 0) {
            fprintf(stderr, "xenmpi-topo-publish: domain %u: nothing published: %s\n",
                    doms[i], xm_topo_last_error());
            failed = 1;
        } else if (r > 0 || !quiet_unchanged)
            fputs(report, stdout);
        free(report);
        report = NULL;
    }
    fflush(stdout);
    rc = failed ? -1 : 0;
out:
    if (topo)
        hwloc_topology_destroy(topo);
    xm_topo_aff_free(aff);
    free(xml);
    free(doms);
    free(all);
    xl_close(&x);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "host-id", required_argument, 0, 'h' },
        { "synthetic", required_argument, 0, 's' },
        { "xml", required_argument, 0, 'x' },
        { "affinity", required_argument, 0, 'a' },
        { "domains", required_argument, 0, 'd' },
        { "interval", required_argument, 0, 'i' },
        { "remove", no_argument, 0, 'r' },
        { "help", no_argument, 0, 'H' },
        { 0, 0, 0, 0 },
    };
    struct opts o = { 0 };
    char host_id[256];
    xm_hv_t *hv;
    int c, is_xen, rc;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': o.host_id = optarg; break;
        case 's': o.synthetic = optarg; break;
        case 'x': o.xml = optarg; break;
        case 'a': o.affinity = optarg; break;
        case 'd': o.domains = optarg; break;
        case 'i': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 86400) {
                fprintf(stderr, "xenmpi-topo-publish: --interval takes 1 to 86400 seconds\n");
                return 2;
            }
            o.interval = (unsigned)v;
            break;
        }
        case 'r': o.remove = 1; break;
        case 'H': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc || (o.synthetic && o.xml)) {
        fputs(usage, stderr);
        return 2;
    }
    if (xm_hv_open(&hv))
        return 1;
    is_xen = strcmp(xm_hv_backend_name(hv), "sim") != 0;
    if (xm_hv_domid(hv) != 0) {
        fprintf(stderr, "xenmpi-topo-publish: this is domain %u, not dom0: run it in "
                "dom0 (on the sim backend with XENMPI_SIM_DOMID=0)\n", xm_hv_domid(hv));
        xm_hv_close(hv);
        return 1;
    }
    if (o.remove) {
        uint32_t *doms;
        unsigned n;
        rc = 0;
        if (!o.domains || parse_domains(o.domains, &doms, &n)) {
            fprintf(stderr, "xenmpi-topo-publish: --remove needs --domains\n");
            xm_hv_close(hv);
            return 2;
        }
        for (unsigned i = 0; i < n; i++)
            if (xm_topo_unpublish(hv, doms[i]))
                rc = 1;
            else
                printf("domain %u: removed /local/domain/%u/" XM_TOPO_DIR "\n", doms[i], doms[i]);
        free(doms);
        xm_hv_close(hv);
        return rc;
    }
    if (!is_xen && ((!o.synthetic && !o.xml) || !o.affinity)) {
        fprintf(stderr, "xenmpi-topo-publish: on the sim backend give the host topology "
                "(--synthetic or --xml) and --affinity FILE\n");
        xm_hv_close(hv);
        return 2;
    }
    if (o.host_id)
        snprintf(host_id, sizeof(host_id), "%s", o.host_id);
    else if (getenv("XENMPI_HOST_ID") && *getenv("XENMPI_HOST_ID"))
        snprintf(host_id, sizeof(host_id), "%s", getenv("XENMPI_HOST_ID"));
    else if (!is_xen)
        hv->ops->host_id(hv, host_id, sizeof(host_id));
    else if (gethostname(host_id, sizeof(host_id)) || !host_id[0]) {
        fprintf(stderr, "xenmpi-topo-publish: no hostname: give --host-id\n");
        xm_hv_close(hv);
        return 2;
    }
    host_id[sizeof(host_id) - 1] = 0;

    rc = round_once(hv, &o, host_id, is_xen, 0);
    if (o.interval) {
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        while (!g_stop) {
            for (unsigned s = 0; s < o.interval && !g_stop; s++)
                sleep(1);
            if (!g_stop)
                round_once(hv, &o, host_id, is_xen, 1);
        }
        rc = 0;
    }
    xm_hv_close(hv);
    return rc ? 1 : 0;
}
