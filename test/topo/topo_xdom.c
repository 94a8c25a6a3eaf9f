/*
 * topo_xdom - the domU side of the real-Xen topology test (test/xen).
 *
 *   topo_xdom <self domid> <peer domid>
 *
 * dom0 ran xenmpi-topo-publish (libxenlight) before the test and wrote what
 * `xl info` and `xl vcpu-list` say into xenmpi-test/topo-expect:
 *   "<nr pCPUs> <own vCPU 0 hard affinity> <peer's vCPU 0 hard affinity>"
 * (affinity "all" stands for every pCPU).  This domain reads the published
 * data back through the store (strictly: no fallback) and compares.
 */
#include "xm_topo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) do { fprintf(stderr, "topo_xdom: " __VA_ARGS__); fputc('\n', stderr); \
                       return 1; } while (0)

static void expect_list(char *want, unsigned npcpus)
{
    if (!strcmp(want, "all"))
        snprintf(want, 64, npcpus > 1 ? "0-%u" : "0", npcpus - 1);
}

int main(int argc, char **argv)
{
    unsigned self, peer, npcpus;
    char path[128], *val, wself[64], wpeer[64], got[256], host[256], *text;
    size_t len;
    xm_hv_t *hv;
    xm_topo_t *t;
    xm_topo_class_t c;

    if (argc != 3 || sscanf(argv[1], "%u", &self) != 1 || sscanf(argv[2], "%u", &peer) != 1)
        FAIL("usage: topo_xdom <self domid> <peer domid>");
    if (xm_hv_open(&hv))
        FAIL("cannot open the hypervisor interface");
    if (xm_hv_domid(hv) != self)
        FAIL("this is domain %u, not %u", xm_hv_domid(hv), self);
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi-test/topo-expect", self);
    if (xm_store_read(hv, path, &val, &len) ||
        sscanf(val, "%u %63s %63s", &npcpus, wself, wpeer) != 3 || npcpus == 0)
        FAIL("no expectation at %s", path);
    free(val);
    expect_list(wself, npcpus);
    expect_list(wpeer, npcpus);

    if (xm_topo_read_store(hv, self, &t))
        FAIL("reading what dom0 published: %s", xm_topo_last_error());
    if (xm_topo_format_table(t, &text) == 0) {
        fputs(text, stdout);
        free(text);
    }
    if (xm_topo_source(t) != XM_TOPO_SRC_DOM0)
        FAIL("not dom0's data");
    if (xm_topo_npcpus(t) != npcpus)
        FAIL("host has %u pCPUs here, xl info says %u", xm_topo_npcpus(t), npcpus);
    if (xm_topo_nvcpus(t) != 1)
        FAIL("%u vCPUs published, the domU has 1", xm_topo_nvcpus(t));
    if (xm_topo_vcpu_pcpus(t, 0, got, sizeof(got)) || strcmp(got, wself))
        FAIL("vCPU 0 on pCPUs %s, xl vcpu-list says %s", got, wself);
    if (xm_topo_domain_nvcpus(t, peer) != 1)
        FAIL("peer domain %u not published here", peer);
    if (xm_topo_domain_vcpu_pcpus(t, peer, 0, got, sizeof(got)) || strcmp(got, wpeer))
        FAIL("domain %u's vCPU 0 on pCPUs %s, xl vcpu-list says %s", peer, got, wpeer);
    if (xm_hv_host_id(hv, host, sizeof(host)) || strcmp(host, xm_topo_host_id(t)))
        FAIL("host id \"%s\" differs from the transport's", xm_topo_host_id(t));
    /* the peer's vCPU 0 as the classes see it: same PU only if same list */
    if (xm_topo_peer_class(t, 0, peer, 0, &c))
        FAIL("no distance to domain %u", peer);
    if ((c == XM_TOPO_SAME_PU) != (!strcmp(wself, wpeer) && !strchr(wself, '-') &&
                                   !strchr(wself, ',')))
        FAIL("class %s to domain %u's vCPU 0 (pCPUs %s vs %s)", xm_topo_class_name(c),
             peer, wself, wpeer);
    if (xm_topo_vcpu_numa(t, 0) < 0 && !strchr(wself, '-') && !strchr(wself, ','))
        FAIL("pinned vCPU 0 has no NUMA node");
    printf("topo_xdom: domain %u: vCPU 0 on pCPUs %s, domain %u's vCPU 0 on %s: %s; "
           "host %s of %u pCPUs: OK\n", self, wself, peer, wpeer, xm_topo_class_name(c),
           host, npcpus);
    xm_topo_free(t);
    xm_hv_close(hv);
    return 0;
}
