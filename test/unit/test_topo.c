/*
 * test_topo.c - the host topology module: mapping, distances and proposed
 * cpu lists on synthetic hosts (asserted exactly), the XML built from Xen's
 * per-pCPU ids, the store framing through the sim backend (dom0 publishes,
 * the domain reads back), and every kind of bad published data: a clear
 * error naming the path, and the fallback to the VM's own view.
 *
 * Store tests open two or three sim handles in this process (dom0, the
 * domain, a stranger) on a host of their own, removed in teardown.
 */
#include "xm_topo_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define HOST4 "pack:2 numa:2 core:4 pu:2"   /* 32 PUs, 16 cores, 4 nodes */
#define FLAT "numa:1 pu:8"                   /* no packages, no cores */

static char *synth(const char *desc, size_t *len)
{
    char *xml;
    assert_int_equal(xm_topo_xml_from_synthetic(desc, &xml, len), 0);
    return xml;
}

static xm_topo_t *load(const char *desc, const char *aff, uint32_t self)
{
    size_t len;
    char *xml = synth(desc, &len);
    xm_topo_t *t;
    int rc = xm_topo_from_data(xml, len, aff, strlen(aff), self, "h0", "test", &t);
    if (rc)
        print_error("from_data: %s\n", xm_topo_last_error());
    assert_int_equal(rc, 0);
    free(xml);
    return t;
}

static void assert_table(const xm_topo_t *t, const char *want)
{
    char *got;
    assert_int_equal(xm_topo_format_table(t, &got), 0);
    if (strcmp(got, want))
        print_error("table:\n%s\nwanted:\n%s\n", got, want);
    assert_string_equal(got, want);
    free(got);
}

static void assert_err_has(const char *a, const char *b)
{
    const char *e = xm_topo_last_error();
    if (!strstr(e, a) || (b && !strstr(e, b)))
        print_error("error \"%s\" lacks \"%s\" / \"%s\"\n", e, a, b ? b : "");
    assert_non_null(strstr(e, a));
    if (b)
        assert_non_null(strstr(e, b));
}

/* ---- the mapping on synthetic hosts ------------------------------------------ */

/* domain 3: SMT siblings (0,1), a lone core (2), other node (3), other
 * package (4), floating over everything (5), floating inside node 0 (6),
 * core 2 (7), overlapping vCPU 2 on pCPU 2 (8).  domain 5: three vCPUs. */
#define AFF3 "3: 0 1 2 8 16 0-31 0-7 4 2\n5: 3 9 24\n"

static void test_mapping_2pack_2numa(void **state)
{
    xm_topo_t *t = load(HOST4, AFF3, 3);
    xm_topo_vcpu_t v;
    xm_topo_class_t c;
    char buf[64];

    assert_table(t,
                 "domain 3 on host h0: 9 vCPUs, host of 32 pCPUs\n"
                 "source: dom0 (/local/domain/3/xenmpi/topo)\n"
                 "vcpu  pcpus      core      package   numa      smt-siblings  same-pcpu\n"
                 "0     0          0         0         0         1             -\n"
                 "1     1          0         0         0         0             -\n"
                 "2     2          1         0         0         -             8\n"
                 "3     8          4         0         1         -             -\n"
                 "4     16         8         1         2         -             -\n"
                 "5     0-31       floating  floating  floating  -             -\n"
                 "6     0-7        floating  0         0         -             -\n"
                 "7     4          2         0         0         -             -\n"
                 "8     2          1         0         0         -             2\n");
    assert_int_equal(xm_topo_nvcpus(t), 9);
    assert_int_equal(xm_topo_npcpus(t), 32);
    assert_int_equal(xm_topo_source(t), XM_TOPO_SRC_DOM0);
    assert_string_equal(xm_topo_host_id(t), "h0");
    assert_int_equal(xm_topo_vcpu(t, 4, &v), 0);
    assert_int_equal(v.pcpu, 16);
    assert_int_equal(v.core, 8);
    assert_int_equal(v.package, 1);
    assert_int_equal(v.numa, 2);
    assert_int_equal(v.npcpus, 1);
    assert_int_equal(xm_topo_vcpu(t, 5, &v), 0);
    assert_int_equal(v.pcpu, -1);
    assert_int_equal(v.core, -1);
    assert_int_equal(v.npcpus, 32);
    assert_int_equal(xm_topo_vcpu(t, 9, &v), -ERANGE);
    assert_int_equal(xm_topo_vcpu_pcpus(t, 6, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "0-7");
    assert_int_equal(xm_topo_vcpu_pcpus(t, 6, buf, 3), -ENOSPC);
    assert_int_equal(xm_topo_vcpu_numa(t, 3), 1);
    assert_int_equal(xm_topo_vcpu_numa(t, 5), -1);
    assert_int_equal(xm_topo_vcpu_numa(t, 99), -1);

    /* local pairs */
    assert_int_equal(xm_topo_vcpu_class(t, 0, 1, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_CORE);
    assert_int_equal(xm_topo_vcpu_class(t, 2, 8, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_PU);
    assert_int_equal(xm_topo_vcpu_class(t, 0, 2, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_NUMA);
    assert_int_equal(xm_topo_vcpu_class(t, 0, 3, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_PACKAGE);
    assert_int_equal(xm_topo_vcpu_class(t, 0, 4, &c), 0);
    assert_int_equal(c, XM_TOPO_CROSS_PACKAGE);
    assert_int_equal(xm_topo_vcpu_class(t, 6, 7, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_NUMA);
    assert_int_equal(xm_topo_vcpu_class(t, 0, 9, &c), -ERANGE);

    /* the peer domain */
    assert_int_equal(xm_topo_ndomains(t), 2);
    assert_int_equal(xm_topo_domain_at(t, 1), 5);
    assert_int_equal(xm_topo_domain_at(t, 2), XM_DOMID_INVALID);
    assert_int_equal(xm_topo_domain_nvcpus(t, 5), 3);
    assert_int_equal(xm_topo_domain_nvcpus(t, 6), -ENOENT);
    assert_int_equal(xm_topo_domain_vcpu_pcpus(t, 5, 2, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "24");
    assert_int_equal(xm_topo_domain_vcpu_pcpus(t, 5, 3, buf, sizeof(buf)), -ERANGE);
    assert_int_equal(xm_topo_domain_vcpu_pcpus(t, 6, 0, buf, sizeof(buf)), -ENOENT);
    assert_int_equal(xm_topo_domain_vcpu_pcpus(t, 3, 5, buf, 3), -ENOSPC);
    assert_int_equal(xm_topo_peer_class(t, 2, 5, 0, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_CORE);          /* pCPUs 2 and 3 */
    assert_int_equal(xm_topo_peer_class(t, 3, 5, 1, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_CORE);          /* 8 and 9: core 4 */
    assert_int_equal(xm_topo_peer_class(t, 7, 5, 1, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_PACKAGE);       /* 4 and 9: nodes 0 and 1 */
    assert_int_equal(xm_topo_peer_class(t, 4, 5, 2, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_PACKAGE);       /* 16 and 24 */
    assert_int_equal(xm_topo_peer_class(t, 0, 5, 2, &c), 0);
    assert_int_equal(c, XM_TOPO_CROSS_PACKAGE);
    assert_int_equal(xm_topo_peer_class(t, 6, 5, 0, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_NUMA);          /* 0-7 and 3 */
    assert_int_equal(xm_topo_peer_class(t, 2, 5, -1, &c), 0);
    assert_int_equal(c, XM_TOPO_CROSS_PACKAGE);      /* any of 3, 9, 24 */
    assert_int_equal(xm_topo_peer_class(t, 2, 5, 3, &c), -ERANGE);
    assert_int_equal(xm_topo_peer_class(t, 9, 5, 0, &c), -ERANGE);
    assert_int_equal(xm_topo_peer_class(t, 0, 7, 0, &c), -ENOENT);
    xm_topo_free(t);
}

static void test_peer_table(void **state)
{
    xm_topo_t *t = load(HOST4, "3: 2 0-31\n5: 3 9\n", 3);
    char *s;

    assert_int_equal(xm_topo_format_peer(t, 5, &s), 0);
    assert_string_equal(s,
        "distance from domain 3's vCPUs (rows) to domain 5's vCPUs\n"
        "vcpu  5:0           5:1           any\n"
        "0     core          package       package\n"
        "1     cross-package cross-package cross-package\n");
    free(s);
    assert_int_equal(xm_topo_format_peer(t, 6, &s), -ENOENT);
    assert_err_has("domain 6's placement is not published to domain 3", NULL);
    xm_topo_free(t);
}

static void test_mapping_flat(void **state)
{
    xm_topo_t *t = load(FLAT, "7: 0 1 2 3 0-7 5 5\n", 7);
    xm_topo_class_t c;

    assert_table(t,
                 "domain 7 on host h0: 7 vCPUs, host of 8 pCPUs\n"
                 "source: dom0 (/local/domain/7/xenmpi/topo)\n"
                 "vcpu  pcpus      core      package   numa      smt-siblings  same-pcpu\n"
                 "0     0          0         0         0         -             -\n"
                 "1     1          1         0         0         -             -\n"
                 "2     2          2         0         0         -             -\n"
                 "3     3          3         0         0         -             -\n"
                 "4     0-7        floating  0         0         -             -\n"
                 "5     5          5         0         0         -             6\n"
                 "6     5          5         0         0         -             5\n");
    assert_int_equal(xm_topo_vcpu_class(t, 0, 1, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_NUMA);
    assert_int_equal(xm_topo_vcpu_class(t, 5, 6, &c), 0);
    assert_int_equal(c, XM_TOPO_SAME_PU);
    xm_topo_free(t);
}

static void test_class_names(void **state)
{
    assert_string_equal(xm_topo_class_name(XM_TOPO_SAME_PU), "pu");
    assert_string_equal(xm_topo_class_name(XM_TOPO_SAME_CORE), "core");
    assert_string_equal(xm_topo_class_name(XM_TOPO_SAME_NUMA), "numa");
    assert_string_equal(xm_topo_class_name(XM_TOPO_SAME_PACKAGE), "package");
    assert_string_equal(xm_topo_class_name(XM_TOPO_CROSS_PACKAGE), "cross-package");
    assert_string_equal(xm_topo_class_name((xm_topo_class_t)9), "?");
}

/* ---- proposed cpu lists ---------------------------------------------------------- */

static void assert_plan(const xm_topo_t *t, unsigned n, const uint32_t *peer,
                        const char *mpich, const char *notes)
{
    xm_topo_plan_t *p;
    char buf[512];

    assert_int_equal(xm_topo_propose(t, n, peer, &p), 0);
    assert_int_equal(xm_topo_plan_nranks(p), n);
    assert_int_equal(xm_topo_plan_format(p, XM_TOPO_FMT_MPICH, 0, buf, sizeof(buf)), 0);
    if (strcmp(buf, mpich))
        print_error("plan %s, wanted %s\nnotes:\n%s", buf, mpich, xm_topo_plan_notes(p));
    assert_string_equal(buf, mpich);
    if (notes)
        assert_string_equal(xm_topo_plan_notes(p), notes);
    xm_topo_plan_free(p);
}

/* domain 3: cores 0 and 1 (node 0), 4 (node 1), 8 (node 2), both PUs each;
 * domain 5 on node 2, 6 on node 1, 8 on node 3 */
#define AFFP "3: 0 1 2 3 8 9 16 17\n5: 18 19\n6: 10\n8: 24\n"

static void test_propose_cores_and_peers(void **state)
{
    xm_topo_t *t = load(HOST4, AFFP, 3);
    uint32_t none[8], peer[8];
    xm_topo_plan_t *p;
    char buf[64];

    for (int i = 0; i < 8; i++)
        none[i] = peer[i] = XM_DOMID_INVALID;
    assert_plan(t, 4, none, "user:0+1,2+3,4+5,6+7",
                "rank 0: vCPUs 0-1 (core 0, NUMA node 0)\n"
                "rank 1: vCPUs 2-3 (core 1, NUMA node 0)\n"
                "rank 2: vCPUs 4-5 (core 4, NUMA node 1)\n"
                "rank 3: vCPUs 6-7 (core 8, NUMA node 2)\n");
    assert_plan(t, 4, NULL, "user:0+1,2+3,4+5,6+7", NULL);
    /* rank 0 talks to domain 5 (node 2): gets core 8 */
    peer[0] = 5;
    assert_plan(t, 2, peer, "user:6+7,0+1",
                "rank 0: vCPUs 6-7 (core 8, NUMA node 2), with domain 5\n"
                "rank 1: vCPUs 0-1 (core 0, NUMA node 0)\n");
    /* rank 1 with domain 6 (node 1), rank 2 with domain 8 (node 3: none here) */
    peer[0] = XM_DOMID_INVALID;
    peer[1] = 6;
    peer[2] = 8;
    assert_plan(t, 3, peer, "user:2+3,4+5,0+1",
                "rank 0: vCPUs 2-3 (core 1, NUMA node 0)\n"
                "rank 1: vCPUs 4-5 (core 4, NUMA node 1), with domain 6\n"
                "rank 2: vCPUs 0-1 (core 0, NUMA node 0); no free vCPU on domain 8's "
                "NUMA node(s) 3\n");
    /* a peer that was not published */
    peer[1] = 77;
    peer[2] = XM_DOMID_INVALID;
    assert_plan(t, 2, peer, "user:2+3,0+1",
                "rank 0: vCPUs 2-3 (core 1, NUMA node 0)\n"
                "rank 1: vCPUs 0-1 (core 0, NUMA node 0); domain 77's placement is "
                "not published here\n");
    /* more ranks than cores: single vCPUs, distinct cores first */
    assert_plan(t, 6, none, "user:0,2,4,6,1,3", NULL);
    assert_plan(t, 8, none, "user:0,2,4,6,1,3,5,7", NULL);
    peer[0] = 5;
    peer[1] = XM_DOMID_INVALID;
    assert_plan(t, 5, peer, "user:6,0,2,4,1", NULL);

    /* the other formats */
    assert_int_equal(xm_topo_propose(t, 2, NULL, &p), 0);
    assert_int_equal(xm_topo_plan_format(p, XM_TOPO_FMT_HWLOC, 1, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "pu:2 pu:3");
    assert_int_equal(xm_topo_plan_format(p, XM_TOPO_FMT_LIST, 1, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "2-3");
    assert_int_equal(xm_topo_plan_format(p, XM_TOPO_FMT_LIST, 2, buf, sizeof(buf)), -ERANGE);
    assert_int_equal(xm_topo_plan_format(p, XM_TOPO_FMT_HWLOC, 2, buf, sizeof(buf)), -ERANGE);
    assert_int_equal(xm_topo_plan_format(p, 42, 0, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(xm_topo_plan_format(p, XM_TOPO_FMT_MPICH, 0, buf, 8), -ENOSPC);
    xm_topo_plan_free(p);

    /* too many ranks, none */
    assert_int_equal(xm_topo_propose(t, 9, NULL, &p), -E2BIG);
    assert_null(p);
    assert_err_has("9 ranks on 8 vCPUs", "fewer ranks");
    assert_int_equal(xm_topo_propose(t, 0, NULL, &p), -EINVAL);
    xm_topo_free(t);
}

static void test_propose_floating(void **state)
{
    /* vCPU 1 floats over the host, vCPU 3 shares core 0 with vCPU 0 */
    xm_topo_t *t = load(HOST4, "4: 0 0-31 2 1\n", 4);

    assert_plan(t, 2, NULL, "user:0+3,2",
                "rank 0: vCPUs 0,3 (core 0, NUMA node 0)\n"
                "rank 1: vCPUs 2 (core 1, NUMA node 0)\n");
    assert_plan(t, 3, NULL, "user:0+3,2,1",
                "rank 0: vCPUs 0,3 (core 0, NUMA node 0)\n"
                "rank 1: vCPUs 2 (core 1, NUMA node 0)\n"
                "rank 2: vCPUs 1 (core floating, NUMA node floating)\n");
    /* four ranks: the floating vCPU before the SMT sibling */
    assert_plan(t, 4, NULL, "user:0,2,1,3", NULL);
    xm_topo_free(t);

    /* flat host: every PU its own core */
    t = load(FLAT, "9: 0 1 2 3\n", 9);
    assert_plan(t, 3, NULL, "user:0,1,2", NULL);
    xm_topo_free(t);
}

/* ---- XML from Xen's per-pCPU ids ------------------------------------------------ */

static void test_xml_from_cpus(void **state)
{
    xm_topo_pcpu_t c[32];
    uint64_t mem[4] = { 1ull << 30, 1ull << 30, 1ull << 30, 1ull << 30 };
    char *xml, *a, *b;
    size_t len, slen;
    xm_topo_t *t, *ts;

    /* the same host as HOST4, as Xen reports it: core ids per socket */
    for (int i = 0; i < 32; i++) {
        c[i].socket = i / 16;
        c[i].node = i / 8;
        c[i].core = (i % 16) / 2;
    }
    assert_int_equal(xm_topo_xml_from_cpus(c, 32, mem, 4, &xml, &len), 0);
    assert_int_equal(xm_topo_from_data(xml, len, AFF3, strlen(AFF3), 3, "h0", "x", &t), 0);
    free(xml);
    ts = load(HOST4, AFF3, 3);
    assert_int_equal(xm_topo_format_table(t, &a), 0);
    assert_int_equal(xm_topo_format_table(ts, &b), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    xm_topo_free(t);
    xm_topo_free(ts);

    /* sockets inside one NUMA node; pCPU 7 offline */
    for (int i = 0; i < 8; i++) {
        c[i].socket = i / 4;
        c[i].node = 0;
        c[i].core = i % 4;
    }
    c[7].core = c[7].socket = -1;
    assert_int_equal(xm_topo_xml_from_cpus(c, 8, NULL, 0, &xml, &len), 0);
    assert_int_equal(xm_topo_from_data(xml, len, "1: 0 4 1\n", 9, 1, "h", "x", &t), 0);
    assert_table(t,
                 "domain 1 on host h: 3 vCPUs, host of 7 pCPUs\n"
                 "source: dom0 (/local/domain/1/xenmpi/topo)\n"
                 "vcpu  pcpus      core      package   numa      smt-siblings  same-pcpu\n"
                 "0     0          0         0         0         -             -\n"
                 "1     4          4         1         0         -             -\n"
                 "2     1          1         0         0         -             -\n");
    xm_topo_free(t);
    /* pCPU 7 is not the host's */
    assert_int_equal(xm_topo_from_data(xml, len, "1: 7\n", 5, 1, "h", "x", &t), -ERANGE);
    free(xml);

    /* a node over two sockets and a socket over two nodes */
    for (int i = 0; i < 8; i++) {
        c[i].socket = i < 4 ? 0 : 1;
        c[i].node = i < 2 ? 0 : 1;
        c[i].core = i;
    }
    assert_int_equal(xm_topo_xml_from_cpus(c, 8, NULL, 0, &xml, &len), -EINVAL);
    assert_err_has("not representable", "--xml");
    for (int i = 0; i < 8; i++)
        c[i].core = c[i].socket = -1;
    assert_int_equal(xm_topo_xml_from_cpus(c, 8, NULL, 0, &xml, &len), -EINVAL);
    assert_err_has("no online pCPU", NULL);
    c[0].core = c[0].socket = 0;
    c[0].node = 1 << 20;
    assert_int_equal(xm_topo_xml_from_cpus(c, 1, NULL, 0, &xml, &len), -ERANGE);
    (void)slen;
}

static void test_xml_sources(void **state)
{
    char path[] = "/tmp/xm-topo-xml-XXXXXX", *xml, *again;
    size_t len, alen;
    int fd;

    xml = synth(HOST4, &len);
    assert_non_null(strstr(xml, "<topology version=\"2.0\">"));
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, xml, len), (ssize_t)len);
    close(fd);
    assert_int_equal(xm_topo_xml_from_file(path, &again, &alen), 0);
    assert_non_null(strstr(again, "os_index=\"31\""));
    free(again);
    free(xml);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "<topology", 9), 9);
    close(fd);
    assert_int_equal(xm_topo_xml_from_file(path, &again, &alen), -EINVAL);
    unlink(path);
    assert_int_equal(xm_topo_xml_from_file("/nonexistent/host.xml", &again, &alen), -EINVAL);
    assert_err_has("/nonexistent/host.xml", "lstopo host.xml");
    assert_int_equal(xm_topo_xml_from_synthetic("pack:2 bogus:3", &again, &alen), -EINVAL);
    assert_err_has("not an hwloc synthetic description", NULL);
}

/* ---- bad published data ---------------------------------------------------------- */

static void expect_bad(const char *xml, size_t xlen, const char *aff, int rc,
                       const char *msg1, const char *msg2)
{
    xm_topo_t *t = (xm_topo_t *)1;
    assert_int_equal(xm_topo_from_data(xml, xlen, aff, strlen(aff), 3, "h", "/p", &t), rc);
    assert_null(t);
    assert_err_has(msg1, msg2);
}

static void test_bad_data(void **state)
{
    size_t len;
    char *xml = synth(HOST4, &len), *big;

    /* XML */
    expect_bad(xml, len / 2, "3: 0\n", -EBADMSG, "/p/xml: bad host topology",
               "truncated or not hwloc XML");
    expect_bad("hello", 5, "3: 0\n", -EBADMSG, "/p/xml", NULL);
    expect_bad(xml, 0, "3: 0\n", -EINVAL, "/p/xml", "empty");
    big = strdup(xml);
    big[100] = 0;
    expect_bad(big, len, "3: 0\n", -EINVAL, "/p/xml", "not text");
    free(big);
    {
        const char *huge = "<topology version=\"2.0\"><object type=\"PU\" "
                           "os_index=\"4000000000\"/></topology>";
        expect_bad(huge, strlen(huge), "3: 0\n", -ERANGE, "/p/xml", "os_index");
    }
    /* vCPU and pCPU ids */
    expect_bad(xml, len, "3: 0 32\n", -ERANGE, "/p/affinity: domain 3 vCPU 1 runs on pCPUs 32",
               "the host's pCPUs are 0-31");
    expect_bad(xml, len, "3: 0 99999999\n", -ERANGE, "/p/affinity: domain 3 vCPU 1",
               "too large");
    expect_bad(xml, len, "3: 0-\n", -EINVAL, "/p/affinity: domain 3 vCPU 0", "not a pCPU list");
    expect_bad(xml, len, "3: 3-1\n", -EINVAL, "vCPU 0", "not ascending");
    expect_bad(xml, len, "3: 4,2\n", -EINVAL, "vCPU 0", "not ascending");
    expect_bad(xml, len, "3: 01\n", -EINVAL, "vCPU 0", "not a pCPU list");
    expect_bad(xml, len, "3: x\n", -EINVAL, "vCPU 0", "not a pCPU list");
    expect_bad(xml, len, "3: 0  1\n", -EINVAL, "/p/affinity: domain 3 vCPU 1", "empty pCPU list");
    expect_bad(xml, len, "3: 0 \n", -EINVAL, "/p/affinity: line 1", "one space");
    expect_bad(xml, len, "3:\n", -EINVAL, "domain 3 has no vCPU", NULL);
    expect_bad(xml, len, "3: 0", -EBADMSG, "/p/affinity: truncated", NULL);
    expect_bad(xml, len, "", -EINVAL, "/p/affinity: empty", NULL);
    expect_bad(xml, len, "3 0\n", -EINVAL, "/p/affinity: line 1", "<domid>:");
    expect_bad(xml, len, "40000: 0\n", -ERANGE, "line 1", "below 32752");
    expect_bad(xml, len, "3: 0\n3: 1\n", -EINVAL, "line 2: domain 3 twice", NULL);
    expect_bad(xml, len, "4: 0\n", -ENOENT, "/p/affinity: no vCPU affinity for this domain (3)",
               NULL);
    /* too many vCPUs: the vCPU id runs out of range */
    {
        size_t n = XM_TOPO_MAX_VCPUS + 1, off;
        char *s = malloc(4 + 2 * n + 2);
        off = (size_t)sprintf(s, "3:");
        for (size_t i = 0; i < n; i++)
            off += (size_t)sprintf(s + off, " 0");
        strcpy(s + off, "\n");
        expect_bad(xml, len, s, -ERANGE, "domain 3: more than 4096 vCPUs", "out of range");
        free(s);
    }
    free(xml);
}

static void test_meta_and_lists(void **state)
{
    size_t b;
    unsigned c;
    uint64_t h;
    char buf[64];
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    const char *why;

    assert_true(xm_topo_meta_format(buf, sizeof(buf), 6145, 0xabcdef) > 0);
    assert_string_equal(buf, "6145 3 0000000000abcdef");
    assert_int_equal(xm_topo_meta_parse(buf, strlen(buf), &b, &c, &h), 0);
    assert_int_equal(b, 6145);
    assert_int_equal(c, 3);
    assert_true(h == 0xabcdef);
    assert_int_equal(xm_topo_meta_parse("6145 2 0000000000abcdef", 23, &b, &c, &h), -EINVAL);
    assert_int_equal(xm_topo_meta_parse("06145 3 0000000000abcdef", 24, &b, &c, &h), -EINVAL);
    assert_int_equal(xm_topo_meta_parse("6145 3 0000000000ABCDEF", 23, &b, &c, &h), -EINVAL);
    assert_int_equal(xm_topo_meta_parse("6145 3 000000000abcdef", 22, &b, &c, &h), -EINVAL);
    assert_int_equal(xm_topo_meta_parse("0 0 0000000000000000", 20, &b, &c, &h), -EINVAL);
    assert_int_equal(xm_topo_meta_parse("99999999999 1 0000000000000000", 30, &b, &c, &h), -EINVAL);
    assert_int_equal(xm_topo_meta_parse("", 0, &b, &c, &h), -EINVAL);
    assert_int_equal(xm_topo_list_parse("0-3,8,10-11", 11, set, &why), 0);
    assert_int_equal(hwloc_bitmap_weight(set), 7);
    assert_int_equal(xm_topo_list_parse("", 0, set, &why), -EINVAL);
    assert_int_equal(xm_topo_list_parse("1,", 2, set, &why), -EINVAL);
    assert_int_equal(xm_topo_list_parse("65536", 5, set, &why), -ERANGE);
    assert_int_equal(xm_topo_list_parse("65535", 5, set, &why), 0);
    hwloc_bitmap_free(set);
    assert_true(xm_fnv1a64("", 0) == 0xcbf29ce484222325ull);
    assert_true(xm_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
}

/* ---- affinity files ------------------------------------------------------------- */

static char *write_tmp(const char *text)
{
    static char path[64];
    int fd;
    snprintf(path, sizeof(path), "/tmp/xm-topo-aff-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_affinity_file(void **state)
{
    xm_topo_aff_t *a;
    char *p;

    p = write_tmp("# domain vcpu pcpus\n3 0 0\n\n3 1 2-3  # two\n5 0 8\n");
    assert_int_equal(xm_topo_aff_parse_file(p, &a), 0);
    assert_int_equal(xm_topo_aff_ndomains(a), 2);
    assert_int_equal(xm_topo_aff_domain_at(a, 0), 3);
    assert_int_equal(xm_topo_aff_domain_at(a, 1), 5);
    assert_int_equal(xm_topo_aff_domain_at(a, 2), XM_DOMID_INVALID);
    xm_topo_aff_free(a);
    unlink(p);

    p = write_tmp("3 0 0\n3 2 1\n");
    assert_int_equal(xm_topo_aff_parse_file(p, &a), -EINVAL);
    assert_err_has(":2:", "list vCPUs 0, 1, 2, ... in order");
    unlink(p);
    p = write_tmp("3 0 0-\n");
    assert_int_equal(xm_topo_aff_parse_file(p, &a), -EINVAL);
    assert_err_has(":1:", "not a pCPU list");
    unlink(p);
    p = write_tmp("3 zero 0\n");
    assert_int_equal(xm_topo_aff_parse_file(p, &a), -EINVAL);
    assert_err_has(":1:", "<domid> <vcpu> <pCPU list>");
    unlink(p);
    p = write_tmp("# nothing\n");
    assert_int_equal(xm_topo_aff_parse_file(p, &a), -EINVAL);
    assert_err_has("no vCPU affinity in it", NULL);
    unlink(p);
    assert_int_equal(xm_topo_aff_parse_file("/nonexistent/aff", &a), -ENOENT);
    assert_err_has("/nonexistent/aff", NULL);
}

/* ---- the marked XML for lstopo --------------------------------------------------- */

static void test_marked_xml(void **state)
{
    xm_topo_t *t = load(HOST4, "3: 5 0-7\n", 3);
    hwloc_topology_t topo;
    char *xml;
    size_t len;
    const char *why;
    int pinned = 0, floating = 0, misc = 0;
    hwloc_obj_t o = NULL;

    assert_int_equal(xm_topo_export_marked_xml(t, &xml, &len), 0);
    assert_int_equal(xm_topo_load_xml(xml, len, &topo, &why), 0);
    while ((o = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PU, o))) {
        const char *s = hwloc_obj_get_info_by_name(o, "lstopoStyle");
        if (s && strstr(s, "#e8590c")) {
            pinned++;
            assert_int_equal(o->os_index, 5);
        } else if (s && strstr(s, "#ffc078")) {
            floating++;
            assert_true(o->os_index < 8);
        } else
            assert_null(s);
    }
    assert_int_equal(pinned, 1);
    assert_int_equal(floating, 7);
    while ((o = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_MISC, o))) {
        misc++;
        if (!strcmp(o->name, "vCPU 0"))
            assert_int_equal(o->parent->os_index, 5);
        else
            assert_string_equal(o->name, "vCPU 1 (floating)");
    }
    assert_int_equal(misc, 2);
    hwloc_topology_destroy(topo);
    free(xml);
    xm_topo_free(t);
}

static void test_local_view(void **state)
{
    xm_topo_t *t;
    xm_topo_vcpu_t v;

    assert_int_equal(xm_topo_local(12, &t), 0);
    assert_int_equal(xm_topo_source(t), XM_TOPO_SRC_LOCAL);
    assert_int_equal(xm_topo_domid(t), 12);
    assert_true(xm_topo_nvcpus(t) >= 1);
    assert_int_equal(xm_topo_vcpu(t, 0, &v), 0);
    assert_int_equal(v.pcpu, 0);
    assert_int_equal(v.npcpus, 1);
    xm_topo_free(t);
}

/* ---- through the store (sim backend) ---------------------------------------------- */

static char g_host[64];
static int g_n;

static xm_hv_t *open_dom(int domid)
{
    xm_hv_t *hv;
    char d[16];
    snprintf(d, sizeof(d), "%d", domid);
    setenv("XENMPI_SIM_DOMID", d, 1);
    assert_int_equal(xm_hv_open(&hv), 0);
    unsetenv("XENMPI_SIM_DOMID");
    return hv;
}

static int store_setup(void **state)
{
    snprintf(g_host, sizeof(g_host), "uttopo%d-%d", (int)getpid(), g_n++);
    setenv("XENMPI_BACKEND", "sim", 1);
    setenv("XENMPI_SIM_HOST", g_host, 1);
    unsetenv("XENMPI_HOST_ID");
    return 0;
}

static int store_teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf /dev/shm/xenmpi-sim-%s", g_host);
    return system(cmd) == 0 ? 0 : -1;
}

struct pub {
    xm_hv_t *d0, *d3, *d4;
    char *xml;
    size_t len;
    xm_topo_aff_t *aff;
};

static void pub_open(struct pub *p, const char *desc, const char *aff)
{
    const char *s = aff;
    p->d3 = open_dom(3);   /* the domains exist before dom0 publishes */
    p->d4 = open_dom(4);
    p->d0 = open_dom(0);
    p->xml = synth(desc, &p->len);
    p->aff = xm_topo_aff_new();
    while (*s) {   /* "dom vcpu list;" */
        unsigned d, v;
        char l[64];
        int n;
        assert_int_equal(sscanf(s, "%u %u %63[^;];%n", &d, &v, l, &n), 3);
        assert_int_equal(xm_topo_aff_add(p->aff, d, v, l), 0);
        s += n;
    }
}

static void pub_close(struct pub *p)
{
    xm_topo_aff_free(p->aff);
    free(p->xml);
    xm_hv_close(p->d0);
    xm_hv_close(p->d3);
    xm_hv_close(p->d4);
}

static void test_store_roundtrip(void **state)
{
    struct pub p;
    uint32_t doms[2] = { 3, 4 };
    xm_topo_t *t, *ref;
    char *a, *b, *val, *rep = NULL;
    size_t len, rlen;
    FILE *f;

    pub_open(&p, HOST4, "3 0 0;3 1 1;3 2 0-31;4 0 16;");
    f = open_memstream(&rep, &rlen);
    assert_int_equal(xm_topo_publish(p.d0, "host-a", p.xml, p.len, p.aff, doms, 2, f), 2);
    fclose(f);
    assert_non_null(strstr(rep, "domain 3: published /local/domain/3/xenmpi/topo: host-id "
                                "host-a, host XML"));
    assert_non_null(strstr(rep, "affinity of 2 domains; its vCPUs on pCPUs 0 1 0-31\n"));
    assert_non_null(strstr(rep, "domain 4: published"));
    free(rep);

    /* domain 3 reads back exactly what dom0 validated */
    assert_int_equal(xm_topo_open(p.d3, XM_TOPO_REQUIRE_DOM0, &t), 0);
    assert_int_equal(xm_topo_source(t), XM_TOPO_SRC_DOM0);
    assert_string_equal(xm_topo_host_id(t), "host-a");
    assert_int_equal(xm_topo_from_data(p.xml, p.len, "3: 0 1 0-31\n4: 16\n", 18, 3,
                                       "host-a", "x", &ref), 0);
    assert_int_equal(xm_topo_format_table(t, &a), 0);
    assert_int_equal(xm_topo_format_table(ref, &b), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_int_equal(xm_topo_domain_nvcpus(t, 4), 1);
    xm_topo_free(t);
    xm_topo_free(ref);

    /* permissions: dom0 owns, only the described domain reads */
    assert_int_equal(xm_store_read(p.d4, "/local/domain/3/xenmpi/topo/xml/meta", &val, &len),
                     -EACCES);
    assert_int_equal(xm_store_read(p.d4, "/local/domain/3/xenmpi/host-id", &val, &len), -EACCES);
    assert_int_equal(xm_store_write(p.d3, "/local/domain/3/xenmpi/topo/xml/0", "x", 1), -EACCES);
    assert_int_equal(xm_store_write(p.d3, "/local/domain/3/xenmpi/topo/affinity/meta", "x", 1),
                     -EACCES);
    assert_int_equal(xm_store_write(p.d3, "/local/domain/3/xenmpi/host-id", "x", 1), -EACCES);
    assert_int_equal(xm_store_read(p.d3, "/local/domain/3/xenmpi/host-id", &val, &len), 0);
    assert_string_equal(val, "host-a");
    free(val);
    /* ...and the domain still owns its xenmpi directory (its endpoints) */
    assert_int_equal(xm_store_write(p.d3, "/local/domain/3/xenmpi/ep1", "", 0), 0);

    /* the same again: nothing changes */
    rep = NULL;
    f = open_memstream(&rep, &rlen);
    assert_int_equal(xm_topo_publish(p.d0, "host-a", p.xml, p.len, p.aff, doms, 1, f), 0);
    fclose(f);
    assert_non_null(strstr(rep, "domain 3: unchanged"));
    free(rep);

    /* a re-pin is picked up; a smaller host leaves no stale chunk */
    xm_topo_aff_free(p.aff);
    p.aff = xm_topo_aff_new();
    assert_int_equal(xm_topo_aff_add(p.aff, 3, 0, "3"), 0);
    free(p.xml);
    p.xml = synth(FLAT, &p.len);
    assert_int_equal(xm_topo_publish(p.d0, "host-a", p.xml, p.len, p.aff, doms, 1, NULL), 1);
    assert_int_equal(xm_store_read(p.d3, "/local/domain/3/xenmpi/topo/xml/1", &val, &len),
                     -ENOENT);
    assert_int_equal(xm_topo_read_store(p.d3, 3, &t), 0);
    assert_int_equal(xm_topo_npcpus(t), 8);
    assert_int_equal(xm_topo_nvcpus(t), 1);
    assert_int_equal(xm_topo_vcpu_numa(t, 0), 0);
    xm_topo_free(t);

    assert_int_equal(xm_topo_unpublish(p.d0, 3), 0);
    assert_int_equal(xm_topo_unpublish(p.d0, 3), 0);
    assert_int_equal(xm_topo_read_store(p.d3, 3, &t), -ENOENT);
    pub_close(&p);
}

static void test_store_publish_refuses(void **state)
{
    struct pub p;
    uint32_t d3 = 3, d9 = 9, d4 = 4;
    char *val;
    size_t len;

    pub_open(&p, HOST4, "3 0 0;3 1 40;");
    /* pCPU 40 on a 32-pCPU host: nothing is written */
    assert_int_equal(xm_topo_publish(p.d0, "h", p.xml, p.len, p.aff, &d3, 1, NULL), -ERANGE);
    assert_err_has("publisher input/affinity: domain 3 vCPU 1 runs on pCPUs 40", NULL);
    assert_int_equal(xm_store_read(p.d0, "/local/domain/3/xenmpi/topo/xml/meta", &val, &len),
                     -ENOENT);
    xm_topo_aff_free(p.aff);
    p.aff = xm_topo_aff_new();
    assert_int_equal(xm_topo_aff_add(p.aff, 3, 0, "0"), 0);
    assert_int_equal(xm_topo_aff_add(p.aff, 9, 0, "1"), 0);
    /* a domain that is not running */
    assert_int_equal(xm_topo_publish(p.d0, "h", p.xml, p.len, p.aff, &d9, 1, NULL), -ENOENT);
    assert_err_has("domain 9 does not exist (no /local/domain/9/domid)", "start it first");
    /* a domain without affinity */
    assert_int_equal(xm_topo_publish(p.d0, "h", p.xml, p.len, p.aff, &d4, 1, NULL), -ENOENT);
    assert_err_has("no vCPU affinity for this domain (4)", NULL);
    assert_int_equal(xm_topo_publish(p.d0, "", p.xml, p.len, p.aff, &d3, 1, NULL), -EINVAL);
    assert_err_has("host identity", NULL);
    /* bad input to aff_add */
    assert_int_equal(xm_topo_aff_add(p.aff, 3, 5, "0"), -EINVAL);
    assert_int_equal(xm_topo_aff_add(p.aff, 3, 1, "0-"), -EINVAL);
    assert_int_equal(xm_topo_aff_add(p.aff, 40000, 0, "0"), -ERANGE);
    /* not dom0: the store refuses */
    assert_int_equal(xm_topo_publish(p.d4, "h", p.xml, p.len, p.aff, &d3, 1, NULL), -EACCES);
    pub_close(&p);
}

/* Write a framed blob as dom0 would, but with chosen (bad) content. */
static void put_blob(xm_hv_t *d0, const char *dir, const char *data, size_t len)
{
    char path[256], meta[64];
    xm_store_perm_t perm[2] = { { 0, XM_PERM_NONE }, { 3, XM_PERM_READ } };
    unsigned chunks = (unsigned)((len + XM_TOPO_CHUNK - 1) / XM_TOPO_CHUNK);

    for (unsigned i = 0; i < chunks; i++) {
        size_t off = (size_t)i * XM_TOPO_CHUNK;
        snprintf(path, sizeof(path), "%s/%u", dir, i);
        assert_int_equal(xm_store_write(d0, path, data + off,
                                        len - off < XM_TOPO_CHUNK ? len - off : XM_TOPO_CHUNK), 0);
        assert_int_equal(xm_store_set_perms(d0, path, perm, 2), 0);
    }
    xm_topo_meta_format(meta, sizeof(meta), len, xm_fnv1a64(data, len));
    snprintf(path, sizeof(path), "%s/meta", dir);
    assert_int_equal(xm_store_write(d0, path, meta, strlen(meta)), 0);
    assert_int_equal(xm_store_set_perms(d0, path, perm, 2), 0);
}

/* dom0's data is bad: strict read fails with rc naming what, open falls back */
static void expect_fallback(struct pub *p, int rc, const char *m1, const char *m2)
{
    xm_topo_t *t;

    t = (xm_topo_t *)1;
    assert_int_equal(xm_topo_read_store(p->d3, 3, &t), rc);
    assert_null(t);
    assert_err_has(m1, m2);
    assert_int_equal(xm_topo_open(p->d3, XM_TOPO_REQUIRE_DOM0, &t), rc);
    assert_int_equal(xm_topo_open(p->d3, 0, &t), 0);
    assert_int_equal(xm_topo_source(t), XM_TOPO_SRC_LOCAL);
    assert_non_null(strstr(xm_topo_fallback_reason(t), m1));
    assert_true(!strncmp(xm_topo_host_id(t), "sim:", 4));   /* the backend's */
    xm_topo_free(t);
}

static void test_store_bad_data(void **state)
{
    struct pub p;
    uint32_t d3 = 3;
    const char *X = "/local/domain/3/xenmpi/topo/xml", *A = "/local/domain/3/xenmpi/topo/affinity";
    char path[256];
    xm_topo_t *t;

    pub_open(&p, HOST4, "3 0 0;3 1 1;");
    /* nothing published */
    expect_fallback(&p, -ENOENT, "/local/domain/3/xenmpi/topo/xml/meta is missing",
                    "xenmpi-topo-publish");
    assert_int_equal(xm_topo_publish(p.d0, "h", p.xml, p.len, p.aff, &d3, 1, NULL), 1);
    assert_int_equal(xm_topo_read_store(p.d3, 3, &t), 0);
    xm_topo_free(t);

    /* a chunk shorter than the meta says (truncated) */
    snprintf(path, sizeof(path), "%s/1", X);
    assert_int_equal(xm_store_write(p.d0, path, "<x>", 3), 0);
    expect_fallback(&p, -EBADMSG, "/local/domain/3/xenmpi/topo/xml/1: chunk 1 is 3 bytes",
                    "says 3072");
    /* same length, other bytes: the checksum */
    {
        char *c = malloc(XM_TOPO_CHUNK);
        memcpy(c, p.xml + XM_TOPO_CHUNK, XM_TOPO_CHUNK);
        c[10] ^= 1;
        assert_int_equal(xm_store_write(p.d0, path, c, XM_TOPO_CHUNK), 0);
        free(c);
    }
    expect_fallback(&p, -EBADMSG, "/local/domain/3/xenmpi/topo/xml: checksum mismatch", NULL);
    /* a chunk gone */
    assert_int_equal(xm_store_remove(p.d0, path), 0);
    expect_fallback(&p, -EBADMSG, "/local/domain/3/xenmpi/topo/xml/1: chunk 1 of 4 unreadable",
                    "truncated");
    /* meta garbage */
    snprintf(path, sizeof(path), "%s/meta", X);
    assert_int_equal(xm_store_write(p.d0, path, "12 junk", 7), 0);
    expect_fallback(&p, -EBADMSG, "/local/domain/3/xenmpi/topo/xml/meta: \"12 junk\" is not",
                    NULL);
    /* well framed, but the XML itself is truncated */
    put_blob(p.d0, X, p.xml, p.len - 200);
    expect_fallback(&p, -EBADMSG, "/local/domain/3/xenmpi/topo/xml: bad host topology",
                    "truncated or not hwloc XML");
    /* good XML, vCPU on a pCPU the host does not have */
    put_blob(p.d0, X, p.xml, p.len);
    put_blob(p.d0, A, "3: 0 64\n", 8);
    expect_fallback(&p, -ERANGE, "/local/domain/3/xenmpi/topo/affinity: domain 3 vCPU 1 "
                    "runs on pCPUs 64, out of range", NULL);
    /* more vCPUs than any domain may have */
    {
        size_t n = XM_TOPO_MAX_VCPUS + 1, off;
        char *s = malloc(4 + 2 * n + 2);
        off = (size_t)sprintf(s, "3:");
        for (size_t i = 0; i < n; i++)
            off += (size_t)sprintf(s + off, " 1");
        strcpy(s + off, "\n");
        put_blob(p.d0, A, s, strlen(s));
        free(s);
    }
    expect_fallback(&p, -ERANGE, "/local/domain/3/xenmpi/topo/affinity: domain 3: more than "
                    "4096 vCPUs", NULL);
    /* affinity of another domain only */
    put_blob(p.d0, A, "4: 0\n", 5);
    expect_fallback(&p, -ENOENT, "no vCPU affinity for this domain (3)", NULL);
    /* affinity missing altogether */
    assert_int_equal(xm_store_remove(p.d0, A), 0);
    expect_fallback(&p, -ENOENT, "/local/domain/3/xenmpi/topo/affinity/meta is missing", NULL);
    /* republishing repairs everything */
    assert_int_equal(xm_topo_publish(p.d0, "h", p.xml, p.len, p.aff, &d3, 1, NULL), 1);
    assert_int_equal(xm_topo_read_store(p.d3, 3, &t), 0);
    assert_int_equal(xm_topo_nvcpus(t), 2);
    xm_topo_free(t);
    pub_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mapping_2pack_2numa),
        cmocka_unit_test(test_peer_table),
        cmocka_unit_test(test_mapping_flat),
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_propose_cores_and_peers),
        cmocka_unit_test(test_propose_floating),
        cmocka_unit_test(test_xml_from_cpus),
        cmocka_unit_test(test_xml_sources),
        cmocka_unit_test(test_bad_data),
        cmocka_unit_test(test_meta_and_lists),
        cmocka_unit_test(test_affinity_file),
        cmocka_unit_test(test_marked_xml),
        cmocka_unit_test(test_local_view),
        cmocka_unit_test_setup_teardown(test_store_roundtrip, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_publish_refuses, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_bad_data, store_setup, store_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
