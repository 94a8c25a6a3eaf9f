/*
 * xm_topo_store.c - the guest side's store reader: the framed blobs under
 * /local/domain/<id>/xenmpi/topo, copied once and checked (framing, chunk
 * sizes, checksum) before xm_topo_from_data validates their content.
 */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
        return xm_topo_fail(rc, XM_LOG_ERROR, "%s: cannot read it (%s)", path, strerror(-rc));
    rc = xm_topo_meta_parse(meta, mlen, &bytes, &chunks, &sum);
    if (rc) {
        xm_topo_fail(-EBADMSG, XM_LOG_ERROR,
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
            return xm_topo_fail(-EBADMSG, XM_LOG_ERROR,
                                "%s: chunk %u of %u unreadable (%s): data truncated",
                                path, i, chunks, strerror(-rc));
        }
        if (clen != want) {
            free(c);
            free(buf);
            return xm_topo_fail(-EBADMSG, XM_LOG_ERROR,
                                "%s: chunk %u is %zu bytes, the meta data says %zu",
                                path, i, clen, want);
        }
        memcpy(buf + off, c, clen);
        off += clen;
        free(c);
    }
    if (xm_fnv1a64(buf, bytes) != sum) {
        free(buf);
        return xm_topo_fail(-EBADMSG, XM_LOG_ERROR, "%s: checksum mismatch over %zu bytes "
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
    xm_topo_clear_error();
    snprintf(base, sizeof(base), "/local/domain/%u/" XM_TOPO_DIR, domid);
    snprintf(dir, sizeof(dir), "%s/xml", base);
    rc = read_blob(hv, dir, &xml, &xlen);
    snprintf(dir, sizeof(dir), "%s/affinity", base);
    rc2 = rc == 0 ? read_blob(hv, dir, &aff, &alen) : 0;
    if (rc == -ENOENT || rc2 == -ENOENT) {
        free(xml);
        return xm_topo_fail(-ENOENT, XM_LOG_DEBUG,
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
