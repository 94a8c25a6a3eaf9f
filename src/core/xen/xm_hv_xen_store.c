/*
 * xm_hv_xen_store.c - the xen backend's store: libxenstore, with
 * xenstored's limits checked before a request goes out, and the host
 * identity dom0 publishes there.
 */
#include "xm_hv_xen_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* xenstore wire protocol: payload of one request (XENSTORE_PAYLOAD_MAX). */
#define XM_XS_PAYLOAD_MAX 4096u

static int check_path(const char *path)
{
    if (!path || !*path) {
        xm_error("xenstore: empty path");
        return -EINVAL;
    }
    if (strlen(path) >= XM_STORE_MAX_PATH) {
        xm_error("xenstore: path %.64s... is longer than %u characters",
                 path, XM_STORE_MAX_PATH - 1);
        return -ENAMETOOLONG;
    }
    return 0;
}

static int xs_err(void)
{
    int e = errno;
    return e > 0 ? -e : -EIO;
}

int xm_xen_store_read(xm_hv_t *hv, const char *path, char **val,
                      size_t *len)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    unsigned int l = 0;
    char *v;
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    v = xs_read(x->xs, XBT_NULL, path, &l);
    if (!v) {
        rc = xs_err();
        /* ENOENT is the normal "not there yet"; callers decide. */
        if (rc != -ENOENT)
            xm_debug("xenstore read %s: %s", path, strerror(-rc));
        return rc;
    }
    *val = v;
    if (len)
        *len = l;
    return 0;
}

/* xenstored's limit is on the whole request: path, NUL and value */
static int check_size(const char *path, size_t len)
{
    if (len > XM_STORE_MAX_VALUE || len + strlen(path) + 1 > XM_XS_PAYLOAD_MAX) {
        xm_error("xenstore write %s: %zu bytes; a request (path + value) "
                 "may hold at most %u bytes", path, len, XM_XS_PAYLOAD_MAX);
        return -E2BIG;
    }
    return 0;
}

int xm_xen_store_write(xm_hv_t *hv, const char *path, const void *val,
                       size_t len)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    int rc = check_path(path);

    if (!rc)
        rc = check_size(path, len);
    if (rc)
        return rc;
    count_call(x);
    if (!xs_write(x->xs, XBT_NULL, path, val, (unsigned int)len)) {
        rc = xs_err();
        if (rc == -EACCES)
            xm_error("xenstore write %s: permission denied: the owner of the "
                     "node (or of its parent, to create it) must grant this "
                     "domain (%u) write access", path, hv->domid);
        else if (rc == -ENOSPC || rc == -EDQUOT)
            xm_error("xenstore write %s: %s: this domain's xenstore quota is "
                     "exhausted", path, strerror(-rc));
        else
            xm_error("xenstore write %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

int xm_xen_store_remove(xm_hv_t *hv, const char *path)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    if (!xs_rm(x->xs, XBT_NULL, path)) {
        rc = xs_err();
        if (rc != -ENOENT)
            xm_error("xenstore remove %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

int xm_xen_store_list(xm_hv_t *hv, const char *path, char ***names,
                      unsigned *count)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    unsigned int n = 0;
    char **dir, **out = NULL;
    int rc = check_path(path);

    *names = NULL;
    *count = 0;
    if (rc)
        return rc;
    count_call(x);
    dir = xs_directory(x->xs, XBT_NULL, path, &n);
    if (!dir) {
        rc = xs_err();
        if (rc != -ENOENT)
            xm_error("xenstore list %s: %s", path, strerror(-rc));
        return rc;
    }
    if (n) {
        /* libxenstore returns one block; the contract wants each name
         * malloc'ed on its own */
        out = calloc(n, sizeof(*out));
        for (unsigned i = 0; out && i < n; i++) {
            out[i] = strdup(dir[i]);
            if (!out[i]) {
                while (i--)
                    free(out[i]);
                free(out);
                out = NULL;
            }
        }
        if (!out) {
            free(dir);
            xm_error("xenstore list %s: out of memory", path);
            return -ENOMEM;
        }
    }
    free(dir);
    *names = out;
    *count = n;
    return 0;
}

/* xenstore's form of perms; -EINVAL (logged) for a bad list */
static int to_xs_perms(const char *path, const xm_store_perm_t *perms, unsigned count,
                       struct xs_permissions *xp)
{
    if (count == 0 || count > XM_STORE_MAX_PERMS) {
        xm_error("xenstore set perms %s: %u entries (1..%u allowed)", path,
                 count, XM_STORE_MAX_PERMS);
        return -EINVAL;
    }
    for (unsigned i = 0; i < count; i++) {
        unsigned p = 0;
        if (perms[i].perm & ~(unsigned)XM_PERM_BOTH) {
            xm_error("xenstore set perms %s: bad permission %#x for domain %u",
                     path, perms[i].perm, perms[i].domid);
            return -EINVAL;
        }
        if (perms[i].perm & XM_PERM_READ)
            p |= XS_PERM_READ;
        if (perms[i].perm & XM_PERM_WRITE)
            p |= XS_PERM_WRITE;
        xp[i].id = perms[i].domid;
        xp[i].perms = p;
    }
    return 0;
}

int xm_xen_store_set_perms(xm_hv_t *hv, const char *path,
                           const xm_store_perm_t *perms, unsigned count)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    struct xs_permissions xp[XM_STORE_MAX_PERMS];
    int rc = check_path(path);

    if (!rc)
        rc = to_xs_perms(path, perms, count, xp);
    if (rc)
        return rc;
    count_call(x);
    if (!xs_set_permissions(x->xs, XBT_NULL, path, xp, count)) {
        rc = xs_err();
        if (rc == -EACCES || rc == -EPERM)
            xm_error("xenstore set perms %s: %s: only the node's owner (or "
                     "dom0) may change its permissions", path, strerror(-rc));
        else
            xm_error("xenstore set perms %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

int xm_xen_store_create(xm_hv_t *hv, const char *path, const void *val, size_t len,
                        const xm_store_perm_t *perms, unsigned count)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    struct xs_permissions xp[XM_STORE_MAX_PERMS];
    int rc = check_path(path);

    if (!rc)
        rc = check_size(path, len);
    if (!rc)
        rc = to_xs_perms(path, perms, count, xp);
    if (rc)
        return rc;
    /* a transaction: the node appears with its permissions or not at all */
    for (int tries = 0; tries < 16; tries++) {
        count_call(x);
        xs_transaction_t t = xs_transaction_start(x->xs);
        if (t == XBT_NULL)
            return xs_err();
        count_call(x);
        if (!xs_write(x->xs, t, path, val, (unsigned)len) ||
            (count_call(x), !xs_set_permissions(x->xs, t, path, xp, count))) {
            rc = xs_err();
            xs_transaction_end(x->xs, t, true);
            xm_debug("xenstore create %s: %s", path, strerror(-rc));
            return rc;
        }
        count_call(x);
        if (xs_transaction_end(x->xs, t, false))
            return 0;
        if (errno != EAGAIN)
            return xs_err();
    }
    return -EAGAIN;
}

int xm_xen_store_owner(xm_hv_t *hv, const char *path, uint32_t *domid)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    struct xs_permissions *p;
    unsigned n = 0;
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    p = xs_get_permissions(x->xs, XBT_NULL, path, &n);
    if (!p)
        return xs_err();
    rc = n ? 0 : -EIO;
    if (n)
        *domid = p[0].id;
    free(p);
    return rc;
}

int xm_xen_store_watch(xm_hv_t *hv, const char *path, const char *token)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    if (!xs_watch(x->xs, path, token)) {
        rc = xs_err();
        if (rc == -E2BIG || rc == -ENOSPC)
            xm_error("xenstore watch %s: %s: too many watches for this domain "
                     "(xenstored's per-domain watch quota)", path,
                     strerror(-rc));
        else
            xm_error("xenstore watch %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

int xm_xen_store_unwatch(xm_hv_t *hv, const char *path, const char *token)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    int rc = check_path(path);

    if (rc)
        return rc;
    count_call(x);
    if (!xs_unwatch(x->xs, path, token)) {
        rc = xs_err();
        if (rc != -ENOENT)
            xm_error("xenstore unwatch %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

int xm_xen_store_watch_fd(xm_hv_t *hv)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    int fd = xs_fileno(x->xs);
    if (fd < 0) {
        int rc = xs_err();
        xm_error("xenstore: no watch fd: %s", strerror(-rc));
        return rc;
    }
    return fd;
}

int xm_xen_store_read_watch(xm_hv_t *hv, char **path, char **token)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    char **vec;
    int rc;

    errno = 0;
    vec = xs_check_watch(x->xs);
    if (!vec) {
        rc = xs_err();
        if (rc == -EAGAIN || errno == 0)
            return -EAGAIN;
        xm_error("xenstore: reading a watch event failed: %s", strerror(-rc));
        return rc;
    }
    count_call(x);
    *path = strdup(vec[XS_WATCH_PATH]);
    *token = strdup(vec[XS_WATCH_TOKEN]);
    free(vec);
    if (!*path || !*token) {
        free(*path);
        free(*token);
        *path = *token = NULL;
        xm_error("xenstore: out of memory reading a watch event");
        return -ENOMEM;
    }
    return 0;
}

int xm_xen_host_id(xm_hv_t *hv, char *buf, size_t len)
{
    char path[XM_STORE_MAX_PATH];
    char *v = NULL;
    size_t l = 0;
    int rc;

    snprintf(path, sizeof(path), "/local/domain/%u/%s", hv->domid,
             XM_HOSTID_KEY);
    rc = xm_xen_store_read(hv, path, &v, &l);
    if (rc)
        return rc; /* -ENOENT: the common layer explains how to provide it */
    if (l == 0) {
        free(v);
        return -ENOENT;
    }
    if (!buf || l + 1 > len) {
        xm_error("host identity at %s is %zu bytes, longer than the %zu "
                 "bytes available", path, l, len ? len - 1 : 0);
        free(v);
        return -ERANGE;
    }
    memcpy(buf, v, l);
    buf[l] = '\0';
    free(v);
    return 0;
}
