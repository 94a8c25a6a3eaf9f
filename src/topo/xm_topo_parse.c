/*
 * xm_topo_parse.c - the parsers of what dom0 publishes, and the helpers the
 * rest of src/topo shares: errors, the blob framing ("<bytes> <chunks>
 * <fnv1a64>"), pCPU lists, hwloc XML, the affinity blob, text buffers.
 *
 * Trust: everything under /local/domain/<id>/xenmpi/topo is written by dom0,
 * but the guest treats it like any store data: it is copied once, checked
 * (framing, checksum, XML, every vCPU and pCPU id against the host's PUs)
 * and only then used.  A failed check names the store path and changes
 * nothing: the caller gets the fallback or the error.
 */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---------------------------------------------------------------- */

static __thread char g_err[1024];

int xm_topo_fail(int rc, int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(g_err, sizeof(g_err), fmt, ap);
    va_end(ap);
    xm_log_at(level, "%s", g_err);
    return rc;
}

void xm_topo_clear_error(void) { g_err[0] = 0; }
const char *xm_topo_last_error(void) { return g_err; }

/* ---- shared helpers ---------------------------------------------------------- */


int xm_topo_meta_format(char *buf, size_t len, size_t bytes, uint64_t sum)
{
    unsigned chunks = (unsigned)((bytes + XM_TOPO_CHUNK - 1) / XM_TOPO_CHUNK);
    int n = snprintf(buf, len, "%zu %u %016llx", bytes, chunks,
                     (unsigned long long)sum);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

static int parse_uint(const char **p, const char *end, unsigned long long max,
                      unsigned long long *v)
{
    const char *s = *p;
    unsigned long long x = 0;

    if (s >= end || !isdigit((unsigned char)*s))
        return -EINVAL;
    if (*s == '0' && s + 1 < end && isdigit((unsigned char)s[1]))
        return -EINVAL;   /* no leading zeros: one spelling per number */
    while (s < end && isdigit((unsigned char)*s)) {
        x = x * 10 + (unsigned)(*s - '0');
        if (x > max)
            return -ERANGE;
        s++;
    }
    *p = s;
    *v = x;
    return 0;
}

int xm_topo_meta_parse(const char *s, size_t slen, size_t *bytes,
                       unsigned *chunks, uint64_t *sum)
{
    const char *p = s, *end = s + slen;
    unsigned long long b, c;
    uint64_t h = 0;

    if (parse_uint(&p, end, XM_TOPO_MAX_BLOB, &b) || b == 0 ||
        p >= end || *p++ != ' ' ||
        parse_uint(&p, end, XM_TOPO_MAX_BLOB / XM_TOPO_CHUNK + 1, &c) ||
        p >= end || *p++ != ' ' || end - p != 16)
        return -EINVAL;
    for (; p < end; p++) {
        int d = isdigit((unsigned char)*p) ? *p - '0'
              : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        h = h << 4 | (unsigned)d;
    }
    if (c != (b + XM_TOPO_CHUNK - 1) / XM_TOPO_CHUNK)
        return -EINVAL;
    *bytes = b;
    *chunks = (unsigned)c;
    *sum = h;
    return 0;
}

int xm_topo_list_parse(const char *s, size_t len, hwloc_bitmap_t set,
                       const char **why)
{
    const char *p = s, *end = s + len;
    long last = -1;

    hwloc_bitmap_zero(set);
    if (len == 0) {
        *why = "empty pCPU list";
        return -EINVAL;
    }
    for (;;) {
        unsigned long long a, b;
        int rc = parse_uint(&p, end, XM_TOPO_MAX_PCPU - 1, &a);
        if (rc) {
            *why = rc == -ERANGE ? "pCPU id too large" : "not a pCPU list";
            return rc;
        }
        b = a;
        if (p < end && *p == '-') {
            p++;
            rc = parse_uint(&p, end, XM_TOPO_MAX_PCPU - 1, &b);
            if (rc) {
                *why = rc == -ERANGE ? "pCPU id too large" : "not a pCPU list";
                return rc;
            }
        }
        if (b < a || (long)a <= last) {
            *why = "pCPU ranges not ascending";
            return -EINVAL;
        }
        hwloc_bitmap_set_range(set, (unsigned)a, (int)b);
        last = (long)b;
        if (p == end)
            return 0;
        if (*p++ != ',') {
            *why = "not a pCPU list";
            return -EINVAL;
        }
    }
}

/* hwloc allocates bitmaps as large as the largest index it reads: refuse
 * absurd os_index values before handing the text to it. */
static int xml_indexes_sane(const char *xml, size_t len)
{
    static const char key[] = "os_index=\"";
    const char *p = xml, *end = xml + len;

    while ((p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1))) {
        unsigned long long v;
        p += sizeof(key) - 1;
        if (parse_uint(&p, end, XM_TOPO_MAX_PCPU - 1, &v) == -ERANGE)
            return 0;
    }
    return 1;
}

int xm_topo_load_xml(const char *xml, size_t len, hwloc_topology_t *out,
                     const char **why)
{
    hwloc_topology_t topo;
    char *copy;

    *why = "";
    if (len == 0 || len > XM_TOPO_MAX_BLOB || memchr(xml, 0, len)) {
        *why = "empty, too large or not text";
        return -EINVAL;
    }
    if (!xml_indexes_sane(xml, len)) {
        *why = "an os_index is out of range";
        return -ERANGE;
    }
    copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, xml, len);
    copy[len] = 0;
    if (hwloc_topology_init(&topo)) {
        free(copy);
        return -ENOMEM;
    }
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_type_filter(topo, HWLOC_OBJ_MISC, HWLOC_TYPE_FILTER_KEEP_ALL);
    if (hwloc_topology_set_xmlbuffer(topo, copy, (int)len + 1) ||
        hwloc_topology_load(topo)) {
        *why = "hwloc cannot parse it (truncated or not hwloc XML)";
        hwloc_topology_destroy(topo);
        free(copy);
        return -EBADMSG;
    }
    free(copy);
    if (hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU) < 1 ||
        hwloc_bitmap_last(hwloc_topology_get_topology_cpuset(topo)) < 0) {
        *why = "it has no PU";
        hwloc_topology_destroy(topo);
        return -EINVAL;
    }
    *out = topo;
    return 0;
}

int xm_topo_export_xml(hwloc_topology_t topo, char **xml, size_t *len)
{
    char *buf, *copy;
    int blen;

    if (hwloc_topology_export_xmlbuffer(topo, &buf, &blen,
                                        0 /* v2, the default */))
        return xm_topo_fail(-EIO, XM_LOG_ERROR, "hwloc cannot export the topology as XML");
    /* blen counts the terminating NUL */
    copy = malloc((size_t)blen);
    if (!copy) {
        hwloc_free_xmlbuffer(topo, buf);
        return -ENOMEM;
    }
    memcpy(copy, buf, (size_t)blen);
    hwloc_free_xmlbuffer(topo, buf);
    *xml = copy;
    *len = strlen(copy);
    return 0;
}

/* ---- text buffers --------------------------------------------------------------- */

void xm_topo_sb_printf(struct xm_topo_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->err)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = -EINVAL;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap : 256);
        while (cap <= b->len + (size_t)n)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->err = -ENOMEM;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

int xm_topo_sb_done(struct xm_topo_sbuf *b, char **out)
{
    if (b->err || !b->s) {
        free(b->s);
        return b->err ? b->err : -ENOMEM;
    }
    *out = b->s;
    return 0;
}

/* ---- the published affinity blob ----------------------------------------------
 *
 * One line per domain: "<domid>:" then " <pCPU list>" per vCPU, '\n'. */

int xm_topo_parse_affinity(xm_topo_t *t, const char *s, size_t len, const char *origin)
{
    hwloc_const_bitmap_t host = hwloc_topology_get_topology_cpuset(t->topo);
    const char *p = s, *end = s + len, *why;
    char hostlist[128];
    int rc;

    hwloc_bitmap_list_snprintf(hostlist, sizeof(hostlist), host);
    if (len == 0 || memchr(s, 0, len))
        return xm_topo_fail(-EINVAL, XM_LOG_ERROR, "%s: empty or not text", origin);
    if (s[len - 1] != '\n')
        return xm_topo_fail(-EBADMSG, XM_LOG_ERROR,
                            "%s: truncated (the last line has no newline)", origin);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        unsigned long long domid;
        struct xm_topo_dom *d;
        unsigned line = t->ndoms + 1;

        if (t->ndoms >= XM_TOPO_MAX_DOMAINS)
            return xm_topo_fail(-E2BIG, XM_LOG_ERROR, "%s: more than %u domains",
                                origin, XM_TOPO_MAX_DOMAINS);
        rc = parse_uint(&p, eol, 0x7fef, &domid);
        if (rc || p >= eol || *p++ != ':')
            return xm_topo_fail(rc == -ERANGE ? -ERANGE : -EINVAL, XM_LOG_ERROR,
                                "%s: line %u: expected \"<domid>: <pCPU list>...\" "
                                "with a domid below 32752", origin, line);
        for (unsigned i = 0; i < t->ndoms; i++)
            if (t->doms[i].domid == domid)
                return xm_topo_fail(-EINVAL, XM_LOG_ERROR, "%s: line %u: domain %llu twice",
                                    origin, line, domid);
        d = &t->doms[t->ndoms];
        memset(d, 0, sizeof(*d));
        d->domid = (uint32_t)domid;
        t->ndoms++;
        while (p < eol) {
            const char *tok;
            hwloc_bitmap_t set, *grown;

            if (*p++ != ' ' || p >= eol)
                return xm_topo_fail(-EINVAL, XM_LOG_ERROR,
                                    "%s: line %u (domain %u): vCPU lists must be "
                                    "separated by one space", origin, line, d->domid);
            if (d->nvcpus >= XM_TOPO_MAX_VCPUS)
                return xm_topo_fail(-ERANGE, XM_LOG_ERROR,
                                    "%s: domain %u: more than %u vCPUs (vCPU id out "
                                    "of range)", origin, d->domid, XM_TOPO_MAX_VCPUS);
            tok = p;
            while (p < eol && *p != ' ')
                p++;
            set = hwloc_bitmap_alloc();
            grown = realloc(d->set, (d->nvcpus + 1) * sizeof(*d->set));
            if (!set || !grown) {
                hwloc_bitmap_free(set);
                return -ENOMEM;
            }
            d->set = grown;
            d->set[d->nvcpus++] = set;
            rc = xm_topo_list_parse(tok, (size_t)(p - tok), set, &why);
            if (rc)
                return xm_topo_fail(rc, XM_LOG_ERROR, "%s: domain %u vCPU %u: %s: \"%.*s\"",
                                    origin, d->domid, d->nvcpus - 1, why,
                                    (int)(p - tok > 40 ? 40 : p - tok), tok);
            if (!hwloc_bitmap_isincluded(set, host)) {
                char l[128];
                hwloc_bitmap_list_snprintf(l, sizeof(l), set);
                return xm_topo_fail(-ERANGE, XM_LOG_ERROR,
                                    "%s: domain %u vCPU %u runs on pCPUs %s, out of "
                                    "range: the host's pCPUs are %s", origin,
                                    d->domid, d->nvcpus - 1, l, hostlist);
            }
        }
        if (d->nvcpus == 0)
            return xm_topo_fail(-EINVAL, XM_LOG_ERROR, "%s: domain %u has no vCPU",
                                origin, d->domid);
        p = eol + 1;
    }
    return 0;
}
