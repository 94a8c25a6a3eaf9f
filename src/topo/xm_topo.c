/*
 * xm_topo.c - the guest side: read what dom0 published, validate it once,
 * answer from the private copy; fall back to hwloc's view of the VM.
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
#include <time.h>

/* ---- errors ---------------------------------------------------------------- */

static __thread char g_err[1024];

int topo_fail(int rc, int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(g_err, sizeof(g_err), fmt, ap);
    va_end(ap);
    xm_log_at(level, "%s", g_err);
    return rc;
}

void topo_clear_error(void) { g_err[0] = 0; }
const char *xm_topo_last_error(void) { return g_err; }

/* ---- shared helpers ---------------------------------------------------------- */

uint64_t topo_fnv1a(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int topo_meta_format(char *buf, size_t len, size_t bytes, uint64_t sum)
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

int topo_meta_parse(const char *s, size_t slen, size_t *bytes,
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

int topo_list_parse(const char *s, size_t len, hwloc_bitmap_t set,
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

int topo_load_xml(const char *xml, size_t len, hwloc_topology_t *out,
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

int topo_export(hwloc_topology_t topo, char **xml, size_t *len)
{
    char *buf, *copy;
    int blen;

    if (hwloc_topology_export_xmlbuffer(topo, &buf, &blen,
                                        0 /* v2, the default */))
        return topo_fail(-EIO, XM_LOG_ERROR, "hwloc cannot export the topology as XML");
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

/* ---- the handle ---------------------------------------------------------------- */

struct topo_dom {
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
    struct topo_dom *doms;
    unsigned ndoms;
    struct topo_dom *me;
    xm_topo_vcpu_t *info;    /* per local vCPU */
};

static const char *const class_names[] = {
    "pu", "core", "numa", "package", "cross-package",
};

const char *xm_topo_class_name(xm_topo_class_t c)
{
    return (unsigned)c <= XM_TOPO_CROSS_PACKAGE ? class_names[c] : "?";
}

static void dom_free(struct topo_dom *d)
{
    for (unsigned i = 0; i < d->nvcpus; i++)
        hwloc_bitmap_free(d->set[i]);
    free(d->set);
}

void xm_topo_free(xm_topo_t *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < t->ndoms; i++)
        dom_free(&t->doms[i]);
    free(t->doms);
    free(t->info);
    if (t->topo)
        hwloc_topology_destroy(t->topo);
    free(t);
}

/* The object of the given type whose cpuset holds all of set, or NULL.
 * A topology without cores has PUs as cores; without packages the machine
 * is the one package. */
static hwloc_obj_t container(hwloc_topology_t topo, hwloc_obj_type_t type,
                             hwloc_const_bitmap_t set)
{
    int n = hwloc_get_nbobjs_by_type(topo, type);

    if (hwloc_bitmap_iszero(set))
        return NULL;
    if (n <= 0) {
        if (type == HWLOC_OBJ_CORE)
            return container(topo, HWLOC_OBJ_PU, set);
        if (type == HWLOC_OBJ_PACKAGE)
            return hwloc_get_root_obj(topo);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, type, (unsigned)i);
        if (o->cpuset && !hwloc_bitmap_iszero(o->cpuset) &&
            hwloc_bitmap_isincluded(set, o->cpuset))
            return o;
    }
    return NULL;
}

static int package_index(hwloc_topology_t topo, hwloc_obj_t o)
{
    if (!o)
        return -1;
    return o->type == HWLOC_OBJ_PACKAGE ? (int)o->logical_index : 0;
}

static void vcpu_info(hwloc_topology_t topo, hwloc_const_bitmap_t set,
                      xm_topo_vcpu_t *v)
{
    hwloc_obj_t o;

    v->npcpus = hwloc_bitmap_weight(set);
    v->pcpu = v->npcpus == 1 ? hwloc_bitmap_first(set) : -1;
    o = container(topo, HWLOC_OBJ_CORE, set);
    v->core = o ? (int)o->logical_index : -1;
    v->package = package_index(topo, container(topo, HWLOC_OBJ_PACKAGE, set));
    o = container(topo, HWLOC_OBJ_NUMANODE, set);
    v->numa = o ? (int)o->os_index : -1;
}

static xm_topo_class_t set_class(hwloc_topology_t topo, hwloc_const_bitmap_t a,
                                 hwloc_const_bitmap_t b)
{
    hwloc_bitmap_t u = hwloc_bitmap_alloc();
    xm_topo_class_t c;

    hwloc_bitmap_or(u, a, b);
    if (hwloc_bitmap_weight(u) == 1)
        c = XM_TOPO_SAME_PU;
    else if (container(topo, HWLOC_OBJ_CORE, u))
        c = XM_TOPO_SAME_CORE;
    else if (container(topo, HWLOC_OBJ_PACKAGE, u))
        c = container(topo, HWLOC_OBJ_NUMANODE, u) ? XM_TOPO_SAME_NUMA
                                                   : XM_TOPO_SAME_PACKAGE;
    else
        c = XM_TOPO_CROSS_PACKAGE;
    hwloc_bitmap_free(u);
    return c;
}

static int finish(xm_topo_t *t)
{
    t->me = NULL;
    for (unsigned i = 0; i < t->ndoms; i++)
        if (t->doms[i].domid == t->self)
            t->me = &t->doms[i];
    if (!t->me)
        return -ENOENT;
    t->info = calloc(t->me->nvcpus, sizeof(*t->info));
    if (!t->info)
        return -ENOMEM;
    for (unsigned v = 0; v < t->me->nvcpus; v++)
        vcpu_info(t->topo, t->me->set[v], &t->info[v]);
    return 0;
}

/* ---- the published affinity blob ----------------------------------------------
 *
 * One line per domain: "<domid>:" then " <pCPU list>" per vCPU, '\n'. */

static int aff_parse(xm_topo_t *t, const char *s, size_t len, const char *origin)
{
    hwloc_const_bitmap_t host = hwloc_topology_get_topology_cpuset(t->topo);
    const char *p = s, *end = s + len, *why;
    char hostlist[128];
    int rc;

    hwloc_bitmap_list_snprintf(hostlist, sizeof(hostlist), host);
    if (len == 0 || memchr(s, 0, len))
        return topo_fail(-EINVAL, XM_LOG_ERROR, "%s: empty or not text", origin);
    if (s[len - 1] != '\n')
        return topo_fail(-EBADMSG, XM_LOG_ERROR,
                         "%s: truncated (the last line has no newline)", origin);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        unsigned long long domid;
        struct topo_dom *d;
        unsigned line = t->ndoms + 1;

        if (t->ndoms >= XM_TOPO_MAX_DOMAINS)
            return topo_fail(-E2BIG, XM_LOG_ERROR, "%s: more than %u domains",
                             origin, XM_TOPO_MAX_DOMAINS);
        rc = parse_uint(&p, eol, 0x7fef, &domid);
        if (rc || p >= eol || *p++ != ':')
            return topo_fail(rc == -ERANGE ? -ERANGE : -EINVAL, XM_LOG_ERROR,
                             "%s: line %u: expected \"<domid>: <pCPU list>...\" "
                             "with a domid below 32752", origin, line);
        for (unsigned i = 0; i < t->ndoms; i++)
            if (t->doms[i].domid == domid)
                return topo_fail(-EINVAL, XM_LOG_ERROR, "%s: line %u: domain %llu twice",
                                 origin, line, domid);
        d = &t->doms[t->ndoms];
        memset(d, 0, sizeof(*d));
        d->domid = (uint32_t)domid;
        t->ndoms++;
        while (p < eol) {
            const char *tok;
            hwloc_bitmap_t set, *grown;

            if (*p++ != ' ' || p >= eol)
                return topo_fail(-EINVAL, XM_LOG_ERROR,
                                 "%s: line %u (domain %u): vCPU lists must be "
                                 "separated by one space", origin, line, d->domid);
            if (d->nvcpus >= XM_TOPO_MAX_VCPUS)
                return topo_fail(-ERANGE, XM_LOG_ERROR,
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
            rc = topo_list_parse(tok, (size_t)(p - tok), set, &why);
            if (rc)
                return topo_fail(rc, XM_LOG_ERROR, "%s: domain %u vCPU %u: %s: \"%.*s\"",
                                 origin, d->domid, d->nvcpus - 1, why,
                                 (int)(p - tok > 40 ? 40 : p - tok), tok);
            if (!hwloc_bitmap_isincluded(set, host)) {
                char l[128];
                hwloc_bitmap_list_snprintf(l, sizeof(l), set);
                return topo_fail(-ERANGE, XM_LOG_ERROR,
                                 "%s: domain %u vCPU %u runs on pCPUs %s, out of "
                                 "range: the host's pCPUs are %s", origin,
                                 d->domid, d->nvcpus - 1, l, hostlist);
            }
        }
        if (d->nvcpus == 0)
            return topo_fail(-EINVAL, XM_LOG_ERROR, "%s: domain %u has no vCPU",
                             origin, d->domid);
        p = eol + 1;
    }
    return 0;
}

int xm_topo_from_data(const char *xml, size_t xml_len, const char *aff,
                      size_t aff_len, uint32_t self, const char *host_id,
                      const char *origin, xm_topo_t **out)
{
    xm_topo_t *t = calloc(1, sizeof(*t));
    const char *why;
    int rc;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    t->self = self;
    t->source = XM_TOPO_SRC_DOM0;
    snprintf(t->host_id, sizeof(t->host_id), "%s", host_id ? host_id : "");
    rc = topo_load_xml(xml, xml_len, &t->topo, &why);
    if (rc) {
        topo_fail(rc, XM_LOG_ERROR, "%s/xml: bad host topology (%zu bytes): %s",
                  origin, xml_len, why);
        goto err;
    }
    /* at most one line per domain: count newlines for the array */
    {
        size_t lines = 0;
        for (size_t i = 0; i < aff_len; i++)
            lines += aff[i] == '\n';
        if (lines > XM_TOPO_MAX_DOMAINS)
            lines = XM_TOPO_MAX_DOMAINS;
        t->doms = calloc(lines + 1, sizeof(*t->doms));
        if (!t->doms) {
            rc = -ENOMEM;
            goto err;
        }
    }
    {
        char o[320];
        snprintf(o, sizeof(o), "%s/affinity", origin);
        rc = aff_parse(t, aff, aff_len, o);
        if (rc)
            goto err;
        rc = finish(t);
        if (rc == -ENOENT)
            topo_fail(rc, XM_LOG_ERROR, "%s: no vCPU affinity for this domain (%u)",
                      o, self);
        if (rc)
            goto err;
    }
    *out = t;
    return 0;
err:
    xm_topo_free(t);
    return rc;
}

int xm_topo_local(uint32_t self, xm_topo_t **out)
{
    xm_topo_t *t = calloc(1, sizeof(*t));
    hwloc_const_bitmap_t all;
    int last, rc;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    t->self = self;
    t->source = XM_TOPO_SRC_LOCAL;
    if (hwloc_topology_init(&t->topo)) {
        free(t);
        return -ENOMEM;
    }
    hwloc_topology_set_io_types_filter(t->topo, HWLOC_TYPE_FILTER_KEEP_NONE);
    hwloc_topology_set_type_filter(t->topo, HWLOC_OBJ_MISC, HWLOC_TYPE_FILTER_KEEP_ALL);
    if (hwloc_topology_load(t->topo)) {
        hwloc_topology_destroy(t->topo);
        free(t);
        return topo_fail(-EIO, XM_LOG_ERROR, "hwloc cannot load this VM's own topology");
    }
    all = hwloc_topology_get_topology_cpuset(t->topo);
    last = hwloc_bitmap_last(all);
    t->doms = calloc(1, sizeof(*t->doms));
    if (!t->doms || last < 0) {
        rc = last < 0 ? -EIO : -ENOMEM;
        goto err;
    }
    t->ndoms = 1;
    t->doms[0].domid = self;
    t->doms[0].set = calloc((size_t)last + 1, sizeof(hwloc_bitmap_t));
    if (!t->doms[0].set) {
        rc = -ENOMEM;
        goto err;
    }
    for (int v = 0; v <= last; v++) {
        hwloc_bitmap_t s = hwloc_bitmap_alloc();
        if (!s) {
            rc = -ENOMEM;
            goto err;
        }
        t->doms[0].set[t->doms[0].nvcpus++] = s;
        if (hwloc_bitmap_isset(all, (unsigned)v))
            hwloc_bitmap_set(s, (unsigned)v);   /* offline vCPUs stay empty */
    }
    rc = finish(t);
    if (rc)
        goto err;
    *out = t;
    return 0;
err:
    xm_topo_free(t);
    return rc;
}

/* ---- reading the store --------------------------------------------------------- */

static int read_blob_once(xm_hv_t *hv, const char *dir, char **out, size_t *outlen)
{
    char path[XM_STORE_MAX_PATH];
    char *meta = NULL, *buf = NULL;
    size_t mlen, bytes, off = 0;
    unsigned chunks;
    uint64_t sum;
    int rc;

    snprintf(path, sizeof(path), "%s/meta", dir);
    rc = xm_store_read(hv, path, &meta, &mlen);
    if (rc == -ENOENT)
        return -ENOENT;
    if (rc)
        return topo_fail(rc, XM_LOG_ERROR, "%s: cannot read it (%s)", path, strerror(-rc));
    rc = topo_meta_parse(meta, mlen, &bytes, &chunks, &sum);
    if (rc) {
        topo_fail(-EBADMSG, XM_LOG_ERROR,
                  "%s: \"%.60s\" is not \"<bytes> <chunks> <fnv1a64>\" with "
                  "%u-byte chunks and at most %u bytes", path, meta,
                  XM_TOPO_CHUNK, XM_TOPO_MAX_BLOB);
        free(meta);
        return -EBADMSG;
    }
    free(meta);
    buf = malloc(bytes + 1);
    if (!buf)
        return -ENOMEM;
    for (unsigned i = 0; i < chunks; i++) {
        size_t want = i + 1 < chunks ? XM_TOPO_CHUNK : bytes - off, clen;
        char *c;
        snprintf(path, sizeof(path), "%s/%u", dir, i);
        rc = xm_store_read(hv, path, &c, &clen);
        if (rc) {
            free(buf);
            return topo_fail(-EBADMSG, XM_LOG_ERROR,
                             "%s: chunk %u of %u unreadable (%s): data truncated",
                             path, i, chunks, strerror(-rc));
        }
        if (clen != want) {
            free(c);
            free(buf);
            return topo_fail(-EBADMSG, XM_LOG_ERROR,
                             "%s: chunk %u is %zu bytes, the meta data says %zu",
                             path, i, clen, want);
        }
        memcpy(buf + off, c, clen);
        off += clen;
        free(c);
    }
    if (topo_fnv1a(buf, bytes) != sum) {
        free(buf);
        return topo_fail(-EBADMSG, XM_LOG_ERROR, "%s: checksum mismatch over %zu bytes "
                         "(%u chunks)", dir, bytes, chunks);
    }
    buf[bytes] = 0;
    *out = buf;
    *outlen = bytes;
    return 0;
}

/* dom0 writes the chunks before the meta: a reader racing an update sees a
 * checksum mismatch and reads again. */
static int read_blob(xm_hv_t *hv, const char *dir, char **out, size_t *outlen)
{
    int rc = -EBADMSG;

    for (int i = 0; i < 3 && rc == -EBADMSG; i++) {
        if (i) {
            struct timespec ts = { 0, 20 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        rc = read_blob_once(hv, dir, out, outlen);
    }
    return rc;
}

int xm_topo_read_store(xm_hv_t *hv, uint32_t domid, xm_topo_t **out)
{
    char base[64], dir[XM_STORE_MAX_PATH], host[256] = "";
    char *xml = NULL, *aff = NULL, *hid = NULL;
    size_t xlen, alen, hlen;
    int rc, rc2;

    *out = NULL;
    topo_clear_error();
    snprintf(base, sizeof(base), "/local/domain/%u/" XM_TOPO_DIR, domid);
    snprintf(dir, sizeof(dir), "%s/xml", base);
    rc = read_blob(hv, dir, &xml, &xlen);
    snprintf(dir, sizeof(dir), "%s/affinity", base);
    rc2 = rc == 0 ? read_blob(hv, dir, &aff, &alen) : 0;
    if (rc == -ENOENT || rc2 == -ENOENT) {
        free(xml);
        return topo_fail(-ENOENT, XM_LOG_DEBUG,
                         "no host topology from dom0 for domain %u (%s/%s/meta is "
                         "missing): in dom0 run 'xenmpi-topo-publish' (see "
                         "docs/topology.md)", domid, base,
                         rc == -ENOENT ? "xml" : "affinity");
    }
    if (rc || rc2) {
        free(xml);
        return rc ? rc : rc2;
    }
    snprintf(dir, sizeof(dir), "/local/domain/%u/" XM_HOSTID_KEY, domid);
    if (xm_store_read(hv, dir, &hid, &hlen) == 0) {
        if (hlen < sizeof(host) && !memchr(hid, 0, hlen))
            memcpy(host, hid, hlen + 1);
        free(hid);
    }
    rc = xm_topo_from_data(xml, xlen, aff, alen, domid, host, base, out);
    free(xml);
    free(aff);
    return rc;
}

int xm_topo_open(xm_hv_t *hv, unsigned flags, xm_topo_t **out)
{
    uint32_t self = xm_hv_domid(hv);
    char reason[1024];
    int rc = xm_topo_read_store(hv, self, out);

    if (rc == 0 || rc == -ENOMEM || (flags & XM_TOPO_REQUIRE_DOM0))
        return rc;
    snprintf(reason, sizeof(reason), "%s", xm_topo_last_error());
    xm_warn("%s; meanwhile domain %u uses the topology hwloc sees inside this "
            "VM, which does not show the host's cores, packages or NUMA nodes",
            reason, self);
    rc = xm_topo_local(self, out);
    if (rc == 0) {
        char h[256];
        snprintf((*out)->reason, sizeof((*out)->reason), "%s", reason);
        if (hv->ops->host_id(hv, h, sizeof(h)) == 0)
            snprintf((*out)->host_id, sizeof((*out)->host_id), "%s", h);
    }
    return rc;
}

/* ---- queries ------------------------------------------------------------------ */

int xm_topo_source(const xm_topo_t *t) { return t->source; }
const char *xm_topo_fallback_reason(const xm_topo_t *t) { return t->reason; }
uint32_t xm_topo_domid(const xm_topo_t *t) { return t->self; }
const char *xm_topo_host_id(const xm_topo_t *t) { return t->host_id; }
unsigned xm_topo_nvcpus(const xm_topo_t *t) { return t->me->nvcpus; }
unsigned xm_topo_ndomains(const xm_topo_t *t) { return t->ndoms; }

unsigned xm_topo_npcpus(const xm_topo_t *t)
{
    return (unsigned)hwloc_bitmap_weight(hwloc_topology_get_topology_cpuset(t->topo));
}

uint32_t xm_topo_domain_at(const xm_topo_t *t, unsigned i)
{
    return i < t->ndoms ? t->doms[i].domid : XM_DOMID_INVALID;
}

static const struct topo_dom *find_dom(const xm_topo_t *t, uint32_t domid)
{
    for (unsigned i = 0; i < t->ndoms; i++)
        if (t->doms[i].domid == domid)
            return &t->doms[i];
    return NULL;
}

int xm_topo_domain_nvcpus(const xm_topo_t *t, uint32_t domid)
{
    const struct topo_dom *d = find_dom(t, domid);
    return d ? (int)d->nvcpus : -ENOENT;
}

int xm_topo_domain_vcpu_pcpus(const xm_topo_t *t, uint32_t domid, unsigned vcpu,
                              char *buf, size_t len)
{
    const struct topo_dom *d = find_dom(t, domid);
    int n;

    if (!d)
        return -ENOENT;
    if (vcpu >= d->nvcpus)
        return -ERANGE;
    n = hwloc_bitmap_list_snprintf(buf, len, d->set[vcpu]);
    return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int xm_topo_vcpu(const xm_topo_t *t, unsigned vcpu, xm_topo_vcpu_t *out)
{
    if (vcpu >= t->me->nvcpus)
        return -ERANGE;
    *out = t->info[vcpu];
    return 0;
}

int xm_topo_vcpu_pcpus(const xm_topo_t *t, unsigned vcpu, char *buf, size_t len)
{
    int n;

    if (vcpu >= t->me->nvcpus)
        return -ERANGE;
    n = hwloc_bitmap_list_snprintf(buf, len, t->me->set[vcpu]);
    return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int xm_topo_vcpu_numa(const xm_topo_t *t, unsigned vcpu)
{
    return vcpu < t->me->nvcpus ? t->info[vcpu].numa : -1;
}

int xm_topo_vcpu_class(const xm_topo_t *t, unsigned a, unsigned b,
                       xm_topo_class_t *c)
{
    if (a >= t->me->nvcpus || b >= t->me->nvcpus)
        return -ERANGE;
    if (hwloc_bitmap_iszero(t->me->set[a]) || hwloc_bitmap_iszero(t->me->set[b]))
        return -ENOENT;   /* offline */
    *c = set_class(t->topo, t->me->set[a], t->me->set[b]);
    return 0;
}

int xm_topo_peer_class(const xm_topo_t *t, unsigned vcpu, uint32_t peer,
                       int peer_vcpu, xm_topo_class_t *c)
{
    const struct topo_dom *d = find_dom(t, peer);
    hwloc_bitmap_t u;

    if (!d)
        return -ENOENT;
    if (vcpu >= t->me->nvcpus || peer_vcpu >= (int)d->nvcpus || peer_vcpu < -1)
        return -ERANGE;
    if (hwloc_bitmap_iszero(t->me->set[vcpu]))
        return -ENOENT;
    u = hwloc_bitmap_alloc();
    if (!u)
        return -ENOMEM;
    if (peer_vcpu >= 0)
        hwloc_bitmap_copy(u, d->set[peer_vcpu]);
    else
        for (unsigned i = 0; i < d->nvcpus; i++)
            hwloc_bitmap_or(u, u, d->set[i]);
    *c = set_class(t->topo, t->me->set[vcpu], u);
    hwloc_bitmap_free(u);
    return 0;
}

/* ---- text output ---------------------------------------------------------------- */

void sb_printf(struct sbuf *b, const char *fmt, ...)
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

static int sb_done(struct sbuf *b, char **out)
{
    if (b->err || !b->s) {
        free(b->s);
        return b->err ? b->err : -ENOMEM;
    }
    *out = b->s;
    return 0;
}

static void fmt_idx(char *buf, size_t len, int v, const char *none)
{
    if (v < 0)
        snprintf(buf, len, "%s", none);
    else
        snprintf(buf, len, "%d", v);
}

int xm_topo_format_table(const xm_topo_t *t, char **out)
{
    struct sbuf b = { 0 };
    hwloc_bitmap_t sib = hwloc_bitmap_alloc(), same = hwloc_bitmap_alloc();

    if (!sib || !same) {
        hwloc_bitmap_free(sib);
        hwloc_bitmap_free(same);
        return -ENOMEM;
    }
    sb_printf(&b, "domain %u on host %s: %u vCPUs, host of %u pCPUs\n", t->self,
              t->host_id[0] ? t->host_id : "(unknown)", t->me->nvcpus,
              xm_topo_npcpus(t));
    if (t->source == XM_TOPO_SRC_DOM0)
        sb_printf(&b, "source: dom0 (/local/domain/%u/" XM_TOPO_DIR ")\n", t->self);
    else
        sb_printf(&b, "source: hwloc inside this VM (no host data: %s)\n", t->reason);
    sb_printf(&b, "%-5s %-10s %-9s %-9s %-9s %-13s %s\n", "vcpu", "pcpus", "core",
              "package", "numa", "smt-siblings", "same-pcpu");
    for (unsigned v = 0; v < t->me->nvcpus; v++) {
        const xm_topo_vcpu_t *i = &t->info[v];
        char pc[256], core[16], pkg[16], numa[16], s1[256], s2[256];
        if (i->npcpus == 0) {
            sb_printf(&b, "%-5u offline\n", v);
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
        fmt_idx(core, sizeof(core), i->core, "floating");
        fmt_idx(pkg, sizeof(pkg), i->package, "floating");
        fmt_idx(numa, sizeof(numa), i->numa, "floating");
        if (hwloc_bitmap_iszero(sib))
            snprintf(s1, sizeof(s1), "-");
        else
            hwloc_bitmap_list_snprintf(s1, sizeof(s1), sib);
        if (hwloc_bitmap_iszero(same))
            snprintf(s2, sizeof(s2), "-");
        else
            hwloc_bitmap_list_snprintf(s2, sizeof(s2), same);
        sb_printf(&b, "%-5u %-10s %-9s %-9s %-9s %-13s %s\n", v, pc, core, pkg,
                  numa, s1, s2);
    }
    hwloc_bitmap_free(sib);
    hwloc_bitmap_free(same);
    return sb_done(&b, out);
}

int xm_topo_format_peer(const xm_topo_t *t, uint32_t peer, char **out)
{
    const struct topo_dom *d = find_dom(t, peer);
    struct sbuf b = { 0 };

    if (!d)
        return topo_fail(-ENOENT, XM_LOG_ERROR,
                         "domain %u's placement is not published to domain %u "
                         "(another host, or not named to xenmpi-topo-publish)",
                         peer, t->self);
    sb_printf(&b, "distance from domain %u's vCPUs (rows) to domain %u's vCPUs\n",
              t->self, peer);
    sb_printf(&b, "%-5s", "vcpu");
    for (unsigned w = 0; w < d->nvcpus; w++) {
        char h[32];
        snprintf(h, sizeof(h), "%u:%u", peer, w);
        sb_printf(&b, " %-13s", h);
    }
    sb_printf(&b, " %s\n", "any");
    for (unsigned v = 0; v < t->me->nvcpus; v++) {
        xm_topo_class_t c;
        sb_printf(&b, "%-5u", v);
        for (int w = -1; w < (int)d->nvcpus; w++) {
            int k = w + 1 < (int)d->nvcpus ? w + 1 : -1;   /* "any" last */
            if (xm_topo_peer_class(t, v, peer, k, &c))
                sb_printf(&b, " %-13s", "offline");
            else
                sb_printf(&b, " %-13s", xm_topo_class_name(c));
        }
        /* drop the padding of the last column */
        while (!b.err && b.len && b.s[b.len - 1] == ' ')
            b.s[--b.len] = 0;
        sb_printf(&b, "\n");
    }
    return sb_done(&b, out);
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
    rc = topo_export(dup, xml, len);
    hwloc_topology_destroy(dup);
    return rc;
}

/* ---- placement ------------------------------------------------------------------- */

struct xm_topo_plan {
    unsigned nranks;
    hwloc_bitmap_t *cpus;   /* local vCPUs per rank */
    char *notes;
};

void xm_topo_plan_free(xm_topo_plan_t *p)
{
    if (!p)
        return;
    for (unsigned r = 0; r < p->nranks; r++)
        hwloc_bitmap_free(p->cpus[r]);
    free(p->cpus);
    free(p->notes);
    free(p);
}

unsigned xm_topo_plan_nranks(const xm_topo_plan_t *p) { return p->nranks; }
const char *xm_topo_plan_notes(const xm_topo_plan_t *p) { return p->notes ? p->notes : ""; }

struct slot {
    hwloc_bitmap_t vcpus;
    int core, numa, used;
};

int xm_topo_propose(const xm_topo_t *t, unsigned nranks, const uint32_t *peer,
                    xm_topo_plan_t **out)
{
    unsigned n = t->me->nvcpus, ngroups = 0, nslots = 0, usable = 0;
    int *group = malloc(n * sizeof(int));          /* vCPU -> group */
    int *first = malloc(n * sizeof(int));          /* group -> first vCPU */
    struct slot *slots = calloc(n ? n : 1, sizeof(*slots));
    xm_topo_plan_t *p = calloc(1, sizeof(*p));
    hwloc_bitmap_t want = hwloc_bitmap_alloc();
    struct sbuf notes = { 0 }, *rn = calloc(nranks ? nranks : 1, sizeof(*rn));
    int rc = -ENOMEM;

    *out = NULL;
    if (!group || !first || !slots || !p || !want || !rn)
        goto out;
    if (nranks == 0) {
        rc = topo_fail(-EINVAL, XM_LOG_ERROR, "no ranks to place");
        goto out;
    }
    /* groups: one per physical core holding pinned vCPUs, in vCPU order,
     * then one per vCPU that floats over several cores */
    for (int pass = 0; pass < 2; pass++)
        for (unsigned v = 0; v < n; v++) {
            const xm_topo_vcpu_t *i = &t->info[v];
            if (i->npcpus == 0 || (pass == 0) != (i->core >= 0))
                continue;
            group[v] = -1;
            if (pass == 0)
                for (unsigned w = 0; w < v; w++)
                    if (t->info[w].npcpus && t->info[w].core == i->core) {
                        group[v] = group[w];
                        break;
                    }
            if (group[v] < 0)
                first[ngroups] = (int)v, group[v] = (int)ngroups++;
            usable++;
        }
    if (nranks > usable) {
        rc = topo_fail(-E2BIG, XM_LOG_ERROR,
                       "%u ranks on %u vCPUs: one rank per vCPU at most "
                       "(start fewer ranks in this VM or give it more vCPUs)",
                       nranks, usable);
        goto out;
    }
    if (nranks <= ngroups) {
        /* a whole physical core per rank: every vCPU of this VM on it */
        for (unsigned g = 0; g < ngroups; g++) {
            struct slot *s = &slots[nslots++];
            s->vcpus = hwloc_bitmap_alloc();
            for (unsigned v = 0; v < n; v++)
                if (t->info[v].npcpus && group[v] == (int)g)
                    hwloc_bitmap_set(s->vcpus, v);
        }
    } else {
        /* single vCPUs: the first of every core, then the second, ... */
        for (unsigned round = 0; nslots < usable; round++)
            for (unsigned g = 0; g < ngroups; g++) {
                unsigned k = 0;
                for (unsigned v = 0; v < n; v++)
                    if (t->info[v].npcpus && group[v] == (int)g && k++ == round) {
                        struct slot *s = &slots[nslots++];
                        s->vcpus = hwloc_bitmap_alloc();
                        hwloc_bitmap_set(s->vcpus, v);
                    }
            }
    }
    for (unsigned s = 0; s < nslots; s++) {
        if (!slots[s].vcpus)
            goto out;
        int v = hwloc_bitmap_first(slots[s].vcpus);
        slots[s].core = t->info[v].core;
        slots[s].numa = t->info[v].numa;
    }
    p->nranks = nranks;
    p->cpus = calloc(nranks, sizeof(*p->cpus));
    if (!p->cpus)
        goto out;
    /* ranks that talk across VMs first, on their peer's NUMA nodes */
    for (int pass = 0; pass < 2; pass++)
        for (unsigned r = 0; r < nranks; r++) {
            uint32_t pd = peer ? peer[r] : XM_DOMID_INVALID;
            const struct topo_dom *d = pd != XM_DOMID_INVALID ? find_dom(t, pd) : NULL;
            int pick = -1;
            char nodes[64] = "";
            if ((pass == 0) != (pd != XM_DOMID_INVALID))
                continue;
            hwloc_bitmap_zero(want);
            if (d)
                for (unsigned w = 0; w < d->nvcpus; w++) {
                    xm_topo_vcpu_t i;
                    vcpu_info(t->topo, d->set[w], &i);
                    if (i.numa >= 0)
                        hwloc_bitmap_set(want, (unsigned)i.numa);
                }
            for (unsigned s = 0; s < nslots && pick < 0; s++)
                if (!slots[s].used && slots[s].numa >= 0 &&
                    hwloc_bitmap_isset(want, (unsigned)slots[s].numa))
                    pick = (int)s;
            for (unsigned s = 0; s < nslots && pick < 0; s++)
                if (!slots[s].used)
                    pick = (int)s;
            slots[pick].used = 1;
            p->cpus[r] = hwloc_bitmap_dup(slots[pick].vcpus);
            {
                char l[256], core[16], numa[16];
                hwloc_bitmap_list_snprintf(l, sizeof(l), slots[pick].vcpus);
                fmt_idx(core, sizeof(core), slots[pick].core, "floating");
                fmt_idx(numa, sizeof(numa), slots[pick].numa, "floating");
                sb_printf(&rn[r], "rank %u: vCPUs %s (core %s, NUMA node %s)", r, l,
                          core, numa);
            }
            hwloc_bitmap_list_snprintf(nodes, sizeof(nodes), want);
            if (pd == XM_DOMID_INVALID)
                sb_printf(&rn[r], "\n");
            else if (!d)
                sb_printf(&rn[r], "; domain %u's placement is not published here\n", pd);
            else if (hwloc_bitmap_iszero(want))
                sb_printf(&rn[r], "; domain %u floats over several NUMA nodes\n", pd);
            else if (slots[pick].numa >= 0 &&
                     hwloc_bitmap_isset(want, (unsigned)slots[pick].numa))
                sb_printf(&rn[r], ", with domain %u\n", pd);
            else
                sb_printf(&rn[r], "; no free vCPU on domain %u's NUMA node(s) %s\n",
                          pd, nodes);
        }
    for (unsigned r = 0; r < nranks; r++) {
        if (!p->cpus[r] || rn[r].err || !rn[r].s)
            goto out;
        sb_printf(&notes, "%s", rn[r].s);
    }
    if (sb_done(&notes, &p->notes)) {
        notes.s = NULL;
        goto out;
    }
    notes.s = NULL;
    *out = p;
    p = NULL;
    rc = 0;
out:
    free(notes.s);
    for (unsigned r = 0; rn && r < nranks; r++)
        free(rn[r].s);
    free(rn);
    for (unsigned s = 0; s < nslots; s++)
        hwloc_bitmap_free(slots[s].vcpus);
    free(slots);
    free(group);
    free(first);
    hwloc_bitmap_free(want);
    xm_topo_plan_free(p);
    return rc;
}

int xm_topo_plan_format(const xm_topo_plan_t *p, int fmt, unsigned rank,
                        char *buf, size_t len)
{
    size_t off = 0;
    int n, id;

#define PUT(...) do { \
        n = snprintf(buf + off, off < len ? len - off : 0, __VA_ARGS__); \
        if (n < 0) return -EINVAL; \
        off += (size_t)n; \
    } while (0)
    if (len == 0)
        return -ENOSPC;
    buf[0] = 0;
    switch (fmt) {
    case XM_TOPO_FMT_LIST:
        if (rank >= p->nranks)
            return -ERANGE;
        n = hwloc_bitmap_list_snprintf(buf, len, p->cpus[rank]);
        off = n < 0 ? len : (size_t)n;
        break;
    case XM_TOPO_FMT_MPICH:
        PUT("user:");
        for (unsigned r = 0; r < p->nranks; r++) {
            const char *sep = r ? "," : "";
            hwloc_bitmap_foreach_begin(id, p->cpus[r])
                PUT("%s%d", sep, id);
                sep = "+";
            hwloc_bitmap_foreach_end();
        }
        break;
    case XM_TOPO_FMT_HWLOC:
        if (rank >= p->nranks)
            return -ERANGE;
        {
            const char *sep = "";
            hwloc_bitmap_foreach_begin(id, p->cpus[rank])
                PUT("%spu:%d", sep, id);
                sep = " ";
            hwloc_bitmap_foreach_end();
        }
        break;
    default:
        return -EINVAL;
    }
#undef PUT
    return off < len ? 0 : -ENOSPC;
}
