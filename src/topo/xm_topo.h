/*
 * xm_topo.h - where this VM's vCPUs really run.
 *
 * Inside a domU, hwloc sees vCPUs and a made-up topology.  dom0 knows the
 * host topology and each domain's vCPU hard affinity; its publisher
 * (xenmpi-topo-publish) writes them below each domain's home in the store:
 *
 *   /local/domain/<id>/xenmpi/host-id          the transport's host identity
 *   /local/domain/<id>/xenmpi/topo/xml/meta     "<bytes> <chunks> <fnv1a64>"
 *   /local/domain/<id>/xenmpi/topo/xml/<i>      the host's hwloc XML (v2), split
 *   /local/domain/<id>/xenmpi/topo/affinity/... vCPU -> pCPU lists, same framing
 *
 * (docs/topology.md has the formats).  The guest side reads them through the
 * store API, validates everything once (lengths, checksum, XML, pCPU ids
 * against the host's PUs, vCPU ids) and answers from its private copy.
 * Without dom0's data, or with bad data, it says what is missing or wrong
 * (naming the store path) and falls back to what hwloc sees in the VM.
 *
 * Conventions as in the core: 0 or a negative errno; the failing function
 * logs once, and also keeps the message for xm_topo_last_error().
 */
#ifndef XM_TOPO_H
#define XM_TOPO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "xm_hv.h"
#include "xm_wire.h"   /* xm_fnv1a64 */

#ifdef __cplusplus
extern "C" {
#endif

#define XM_TOPO_DIR "xenmpi/topo"      /* below /local/domain/<id>/ */
#define XM_TOPO_CHUNK 3072u            /* bytes per store value of a blob */
#define XM_TOPO_MAX_BLOB (8u << 20)    /* larger published data is refused */
#define XM_TOPO_MAX_VCPUS 4096u
#define XM_TOPO_MAX_DOMAINS 1024u

/* How close two sets of physical CPUs are, nearest first.  Between sets of
 * several pCPUs (floating vCPUs) it is the farthest over all pairs: what
 * holds wherever Xen's scheduler puts them. */
typedef enum xm_topo_class {
    XM_TOPO_SAME_PU = 0,       /* one physical CPU: they time-share it */
    XM_TOPO_SAME_CORE,         /* SMT siblings of one physical core */
    XM_TOPO_SAME_NUMA,         /* one NUMA node of one package */
    XM_TOPO_SAME_PACKAGE,      /* one package, different NUMA nodes */
    XM_TOPO_CROSS_PACKAGE,     /* different packages */
} xm_topo_class_t;

/* "pu", "core", "numa", "package", "cross-package" */
const char *xm_topo_class_name(xm_topo_class_t c);

enum xm_topo_source {
    XM_TOPO_SRC_DOM0 = 0,      /* published by dom0: the real host */
    XM_TOPO_SRC_LOCAL = 1,     /* fallback: hwloc's view inside this VM */
};

typedef struct xm_topo xm_topo_t;

/* One vCPU.  A field is -1 when its pCPUs are not all inside one object of
 * that kind ("floating" at that level). */
typedef struct xm_topo_vcpu {
    int pcpu;      /* its pCPU (OS index) when pinned to exactly one */
    int core;      /* logical index of the physical core holding its pCPUs */
    int package;   /* logical index of the package */
    int numa;      /* OS index of the NUMA node */
    int npcpus;    /* how many pCPUs it may run on */
} xm_topo_vcpu_t;

/* ---- guest side ---------------------------------------------------------- */

enum { XM_TOPO_REQUIRE_DOM0 = 1 };  /* flags of xm_topo_open */

/* This domain's topology: dom0's data when present and valid, else (unless
 * XM_TOPO_REQUIRE_DOM0) hwloc's view of this VM after an error or warning
 * that says what is missing or wrong and how to publish it. */
int xm_topo_open(xm_hv_t *hv, unsigned flags, xm_topo_t **out);

/* Strictly dom0's data for domain domid (no fallback): -ENOENT when nothing
 * is published, -EBADMSG/-ERANGE/-EINVAL/-E2BIG for bad data. */
int xm_topo_read_store(xm_hv_t *hv, uint32_t domid, xm_topo_t **out);

/* For one endpoint (xm_topo_bind.c).  The NUMA node(s) of the calling
 * thread's CPU, as this VM sees them, to bind the memory the core
 * allocates for the endpoint: pass xm_topo_bind_place as its place_cb and
 * the handle as cb_arg.  NULL when there is nothing to bind to (said at
 * debug level); place with a NULL handle does nothing.  The count is of
 * the blocks bound. */
typedef struct xm_topo_bind xm_topo_bind_t;
xm_topo_bind_t *xm_topo_bind_local(void);
void xm_topo_bind_place(void *arg, void *addr, size_t len);
unsigned xm_topo_bind_count(const xm_topo_bind_t *b);
void xm_topo_bind_free(xm_topo_bind_t *b);

/* Validate published data (as read from the store) for domain self.
 * origin names where it came from, for error messages. */
int xm_topo_from_data(const char *xml, size_t xml_len, const char *aff,
                      size_t aff_len, uint32_t self, const char *host_id,
                      const char *origin, xm_topo_t **out);

/* hwloc's view of this VM: vCPU i is the PU with OS index i. */
int xm_topo_local(uint32_t self, xm_topo_t **out);

void xm_topo_free(xm_topo_t *t);

/* The message of this thread's last failure in this module ("" if none). */
const char *xm_topo_last_error(void);

int xm_topo_source(const xm_topo_t *t);
/* Why the fallback was taken ("" when the data is dom0's). */
const char *xm_topo_fallback_reason(const xm_topo_t *t);
uint32_t xm_topo_domid(const xm_topo_t *t);
const char *xm_topo_host_id(const xm_topo_t *t);   /* "" when unknown */
unsigned xm_topo_nvcpus(const xm_topo_t *t);
unsigned xm_topo_npcpus(const xm_topo_t *t);       /* PUs of the host */

int xm_topo_vcpu(const xm_topo_t *t, unsigned vcpu, xm_topo_vcpu_t *out);
/* Its pCPUs as a list ("0-3,8"); -ENOSPC when buf is too small. */
int xm_topo_vcpu_pcpus(const xm_topo_t *t, unsigned vcpu, char *buf, size_t len);
/* NUMA node (host OS index) of a local vCPU, -1 when it floats over several
 * or vcpu is out of range. */
int xm_topo_vcpu_numa(const xm_topo_t *t, unsigned vcpu);
/* Between two local vCPUs (SMT siblings: XM_TOPO_SAME_CORE). */
int xm_topo_vcpu_class(const xm_topo_t *t, unsigned a, unsigned b,
                       xm_topo_class_t *c);

/* Other domains whose placement dom0 published to this one. */
unsigned xm_topo_ndomains(const xm_topo_t *t);      /* including self */
uint32_t xm_topo_domain_at(const xm_topo_t *t, unsigned i);
/* vCPUs of domain domid, -ENOENT when it was not published. */
int xm_topo_domain_nvcpus(const xm_topo_t *t, uint32_t domid);
/* pCPU list of vCPU vcpu of domain domid (-ENOENT, -ERANGE, -ENOSPC). */
int xm_topo_domain_vcpu_pcpus(const xm_topo_t *t, uint32_t domid, unsigned vcpu,
                              char *buf, size_t len);
/* Between local vCPU vcpu and vCPU peer_vcpu of domain peer (-1: any of
 * its vCPUs).  -ENOENT: peer not published here (another host, or not
 * named to the publisher); -ERANGE: a vCPU out of range. */
int xm_topo_peer_class(const xm_topo_t *t, unsigned vcpu, uint32_t peer,
                       int peer_vcpu, xm_topo_class_t *c);
/* The nearest other domain to vCPU cpu of the calling domain, by dom0's
 * published data: its distance class and id; -ENOENT without any other
 * domain, or the reader's error (xm_topo_last_error says why). */
int xm_topo_nearest(xm_hv_t *hv, int cpu, xm_topo_class_t *cls, uint32_t *domid);

/* The mapping as a text table (malloc'ed, caller frees). */
int xm_topo_format_table(const xm_topo_t *t, char **out);
/* Distance classes between every local vCPU and every vCPU of peer. */
int xm_topo_format_peer(const xm_topo_t *t, uint32_t peer, char **out);

/* The host topology as hwloc XML with this VM's pCPUs marked for lstopo
 * (lstopoStyle colours, a Misc object "vCPU n" under each pinned vCPU's
 * PU).  malloc'ed, NUL-terminated. */
int xm_topo_export_marked_xml(const xm_topo_t *t, char **xml, size_t *len);

/* ---- placement ----------------------------------------------------------- */

typedef struct xm_topo_plan xm_topo_plan_t;

/* A cpu list (local vCPUs) per local rank.  peer[r] is the domain rank r
 * talks to across VMs, or XM_DOMID_INVALID (peer may be NULL).  Ranks get
 * distinct physical cores while there are enough (all of this VM's vCPUs on
 * that core), then single vCPUs spread over cores; a rank with a peer gets
 * one on a NUMA node where that peer's vCPUs run when one is free.
 * -E2BIG when there are more ranks than vCPUs. */
int xm_topo_propose(const xm_topo_t *t, unsigned nranks, const uint32_t *peer,
                    xm_topo_plan_t **out);
void xm_topo_plan_free(xm_topo_plan_t *p);
unsigned xm_topo_plan_nranks(const xm_topo_plan_t *p);

enum {
    XM_TOPO_FMT_LIST = 0,   /* one rank: "0-1,4" */
    XM_TOPO_FMT_MPICH,      /* all ranks: "user:0+1,4" for -bind-to */
    XM_TOPO_FMT_HWLOC,      /* one rank: "pu:0 pu:1 pu:4" for hwloc-bind -p */
};
int xm_topo_plan_format(const xm_topo_plan_t *p, int fmt, unsigned rank,
                        char *buf, size_t len);
/* Human-readable notes: per rank its cores and NUMA node, and where a peer's
 * node could not be honoured ("" when nothing to say).  Not owned. */
const char *xm_topo_plan_notes(const xm_topo_plan_t *p);

/* ---- dom0 side (the publisher) ------------------------------------------- */

/* Host topology as compact hwloc XML v2 (no I/O, no Misc objects):
 * from an hwloc synthetic description ("pack:2 numa:2 core:4 pu:2"), from
 * an XML file, or from per-pCPU (core, socket, node) ids as Xen reports
 * them (ids < 0: that pCPU is offline and left out; node_mem[n] bytes of
 * node n, may be NULL). */
int xm_topo_xml_from_synthetic(const char *desc, char **xml, size_t *len);
int xm_topo_xml_from_file(const char *path, char **xml, size_t *len);
typedef struct xm_topo_pcpu {
    int core, socket, node;
} xm_topo_pcpu_t;
int xm_topo_xml_from_cpus(const xm_topo_pcpu_t *cpus, unsigned ncpus,
                          const uint64_t *node_mem, unsigned nnodes,
                          char **xml, size_t *len);

/* vCPU affinities of several domains. */
typedef struct xm_topo_aff xm_topo_aff_t;
xm_topo_aff_t *xm_topo_aff_new(void);
void xm_topo_aff_free(xm_topo_aff_t *a);
/* pcpus as a list ("0-3,8"); vCPUs of a domain must be added 0, 1, 2, ... */
int xm_topo_aff_add(xm_topo_aff_t *a, uint32_t domid, unsigned vcpu,
                    const char *pcpus);
/* The sim affinity file: lines "<domid> <vcpu> <pcpu list>", '#' comments. */
int xm_topo_aff_parse_file(const char *path, xm_topo_aff_t **out);
unsigned xm_topo_aff_ndomains(const xm_topo_aff_t *a);
uint32_t xm_topo_aff_domain_at(const xm_topo_aff_t *a, unsigned i);

/* Write the host-id, the XML and the affinities of every domain in aff for
 * each of domids (n of them), readable by that domain only (owner dom0).
 * Everything is validated as the guest would first.  A blob already
 * published with the same content is left alone.  One line per domain on
 * report (may be NULL) says what was published.  Returns the number of
 * domains whose data changed, or a negative errno. */
int xm_topo_publish(xm_hv_t *hv, const char *host_id, const char *xml,
                    size_t xml_len, const xm_topo_aff_t *aff,
                    const uint32_t *domids, unsigned n, FILE *report);

/* Remove what xm_topo_publish wrote for domid (not the host-id). */
int xm_topo_unpublish(xm_hv_t *hv, uint32_t domid);

#ifdef __cplusplus
}
#endif
#endif
