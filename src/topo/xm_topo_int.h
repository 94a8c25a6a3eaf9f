/* xm_topo_int.h - shared between the guest side (xm_topo.c) and the
 * publisher side (xm_topo_pub.c); not installed. */
#ifndef XM_TOPO_INT_H
#define XM_TOPO_INT_H

#include "xm_topo.h"

#include <hwloc.h>

/* Record a failure for xm_topo_last_error() and log it at the given level
 * (XM_LOG_*); returns rc so callers can `return topo_fail(...)`. */
int topo_fail(int rc, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void topo_clear_error(void);

uint64_t topo_fnv1a(const void *p, size_t n);

/* "<bytes> <chunks> <fnv1a64 as 16 hex digits>" */
int topo_meta_format(char *buf, size_t len, size_t bytes, uint64_t sum);
int topo_meta_parse(const char *s, size_t slen, size_t *bytes, unsigned *chunks,
                    uint64_t *sum);

/* A strict pCPU list "0-3,8": digits, ',' and '-', ascending ranges, each
 * id < XM_TOPO_MAX_PCPU.  0, or -EINVAL with a reason in why. */
#define XM_TOPO_MAX_PCPU (1u << 16)
int topo_list_parse(const char *s, size_t len, hwloc_bitmap_t set,
                    const char **why);

/* Load hwloc XML held in memory (no NUL needed) with this module's filters:
 * no I/O objects, Misc kept.  why gets hwloc's or our reason on failure. */
int topo_load_xml(const char *xml, size_t len, hwloc_topology_t *out,
                  const char **why);

/* A growing text buffer: sb_printf appends (NUL-terminated; the first
 * failure sticks in err, later calls do nothing). */
struct sbuf {
    char *s;
    size_t len, cap;
    int err;
};
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Export compact XML v2 into a malloc'ed NUL-terminated buffer. */
int topo_export(hwloc_topology_t topo, char **xml, size_t *len);

#endif
