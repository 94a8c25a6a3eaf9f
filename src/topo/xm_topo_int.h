/* xm_topo_int.h - shared between the files of src/topo (the guest side:
 * xm_topo_parse.c, xm_topo.c, xm_topo_store.c, xm_topo_fmt.c,
 * xm_topo_place.c; the publisher: xm_topo_pub.c), its tests and fuzz
 * targets; not installed.  Everything here has hidden visibility: it is not
 * part of libxenmpi's interface. */
#ifndef XM_TOPO_INT_H
#define XM_TOPO_INT_H

#include "xm_topo.h"

#include <hwloc.h>

#pragma GCC visibility push(hidden)

/* Record a failure for xm_topo_last_error() and log it at the given level
 * (XM_LOG_*); returns rc so callers can `return xm_topo_fail(...)`. */
int xm_topo_fail(int rc, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void xm_topo_clear_error(void);


/* "<bytes> <chunks> <fnv1a64 as 16 hex digits>" */
int xm_topo_meta_format(char *buf, size_t len, size_t bytes, uint64_t sum);
int xm_topo_meta_parse(const char *s, size_t slen, size_t *bytes, unsigned *chunks,
                       uint64_t *sum);

/* A strict pCPU list "0-3,8": digits, ',' and '-', ascending ranges, each
 * id < XM_TOPO_MAX_PCPU.  0, or -EINVAL with a reason in why. */
#define XM_TOPO_MAX_PCPU (1u << 16)
int xm_topo_list_parse(const char *s, size_t len, hwloc_bitmap_t set,
                       const char **why);

/* Load hwloc XML held in memory (no NUL needed) with this module's filters:
 * no I/O objects, Misc kept.  why gets hwloc's or our reason on failure. */
int xm_topo_load_xml(const char *xml, size_t len, hwloc_topology_t *out,
                     const char **why);

/* A growing text buffer: xm_topo_sb_printf appends (NUL-terminated; the
 * first failure sticks in err, later calls do nothing).  xm_topo_sb_done
 * hands the text to *out, or frees it and returns the error. */
struct xm_topo_sbuf {
    char *s;
    size_t len, cap;
    int err;
};
void xm_topo_sb_printf(struct xm_topo_sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int xm_topo_sb_done(struct xm_topo_sbuf *b, char **out);

/* Export compact XML v2 into a malloc'ed NUL-terminated buffer. */
int xm_topo_export_xml(hwloc_topology_t topo, char **xml, size_t *len);

/* ---- the guest's handle ---------------------------------------------------- */

struct xm_topo_dom {
    uint32_t domid;
    unsigned nvcpus;
    hwloc_bitmap_t *set;     /* pCPUs per vCPU */
};

struct xm_topo {
    hwloc_topology_t topo;
    int source;
    char reason[1024];
    uint32_t self;
    char host_id[256];
    struct xm_topo_dom *doms;
    unsigned ndoms;
    struct xm_topo_dom *me;
    xm_topo_vcpu_t *info;    /* per local vCPU */
};

/* The published affinity blob (what dom0 writes under topo/affinity): one
 * line per domain, "<domid>:" then " <pCPU list>" per vCPU, '\n'.  Appends
 * to t->doms, which has room for one more domain than the blob has lines
 * (at most XM_TOPO_MAX_DOMAINS); every pCPU must be one of t->topo's.
 * origin names the data in error messages. */
int xm_topo_parse_affinity(xm_topo_t *t, const char *s, size_t len,
                           const char *origin);

/* A handle from a host topology already validated (taken over, also on
 * failure) and an affinity blob as published, for domain self: what
 * xm_topo_from_data does after loading the XML. */
int xm_topo_build(hwloc_topology_t topo, const char *aff, size_t aff_len,
                  uint32_t self, const char *host_id, const char *origin,
                  xm_topo_t **out);

const struct xm_topo_dom *xm_topo_find_dom(const xm_topo_t *t, uint32_t domid);
/* Where the pCPUs of set are (the fields of xm_topo_vcpu_t). */
void xm_topo_vcpu_info(hwloc_topology_t topo, hwloc_const_bitmap_t set,
                       xm_topo_vcpu_t *v);
/* An index as text, or none when it is negative. */
void xm_topo_fmt_idx(char *buf, size_t len, int v, const char *none);

#pragma GCC visibility pop

#endif
