/*
 * xm_hv_sim_store.c - the sim backend's xenstore: one file per host with
 * a lock a process takes over when its holder died, nodes with
 * permissions, and watches with small queues.
 */
#include "xm_hv_sim_int.h"
#include "xm_log.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void xm_sim_store_lock(sim_hv_t *s)
{
    int32_t want = 0;
    unsigned spins = 0;

    while (!atomic_compare_exchange_weak(&s->store->lock_pid, &want, s->pid)) {
        if (want && !pid_alive(want)) {
            /* holder died: take it over */
            if (atomic_compare_exchange_strong(&s->store->lock_pid, &want, s->pid))
                return;
        }
        want = 0;
        if (++spins > 100)
            usleep(50);
        else
            sched_yield();
    }
}

void xm_sim_store_unlock(sim_hv_t *s)
{
    atomic_store(&s->store->lock_pid, 0);
}

static int path_ok(const char *path)
{
    size_t n = strlen(path);
    return path[0] == '/' && n < XM_STORE_MAX_PATH && (n == 1 || path[n - 1] != '/') &&
           !strstr(path, "//");
}

static struct sim_node *node_find(sim_hv_t *s, const char *path)
{
    for (unsigned i = 0; i < SIM_STORE_NODES; i++)
        if (s->store->n[i].used && !strcmp(s->store->n[i].path, path))
            return &s->store->n[i];
    return NULL;
}

static uint32_t node_perm(const struct sim_node *n, uint32_t domid)
{
    if (domid == 0 || n->perms[0].domid == domid)
        return XM_PERM_BOTH;   /* dom0 and the owner */
    for (unsigned i = 1; i < n->nperms; i++)
        if (n->perms[i].domid == domid)
            return n->perms[i].perm;
    return n->perms[0].perm;
}

/* is `path` equal to or below `top`? */
static int path_under(const char *path, const char *top)
{
    size_t n = strlen(top);
    if (n == 1)
        return 1;
    return !strncmp(path, top, n) && (path[n] == 0 || path[n] == '/');
}

/* queue `fired` for watch w (collapsed when its queue is full) and wake it */
static void watch_deliver(sim_hv_t *s, struct sim_watch *w, const char *fired)
{
    if (w->head - w->tail >= SIM_WATCH_QUEUE) {
        w->overflow = 1;  /* collapse: the watched path itself fires */
    } else {
        snprintf(w->q[w->head % SIM_WATCH_QUEUE], XM_STORE_MAX_PATH, "%s", fired);
        w->head++;
    }
    xm_sim_signal_fd(s, w->pid, w->efd);
}

/* a live watch that domain may hear of n (NULL: no node to check) */
static int watch_hears(struct sim_watch *w, const struct sim_node *n)
{
    if (!pid_alive(w->pid)) {
        w->used = 0;
        return 0;
    }
    /* watchers only hear of nodes they may read */
    return !n || (node_perm(n, w->domid) & XM_PERM_READ);
}

static void watch_fire(sim_hv_t *s, const char *path, const struct sim_node *n)
{
    for (unsigned i = 0; i < SIM_STORE_WATCHES; i++) {
        struct sim_watch *w = &s->store->w[i];
        if (!w->used)
            continue;
        if (!path_under(path, w->path) && !path_under(w->path, path))
            continue;
        if (watch_hears(w, n))
            watch_deliver(s, w, path_under(path, w->path) ? path : w->path);
    }
}

/* a subtree goes: as xenstored does node by node, each node below `top`
 * fires the watches on exactly it, with its own permissions (a node a
 * watcher may read can sit below one it may not, as in a domain's home
 * that the toolstack removes when the domain is destroyed) */
static void watch_fire_below(sim_hv_t *s, const char *top)
{
    for (unsigned i = 0; i < SIM_STORE_NODES; i++) {
        const struct sim_node *n = &s->store->n[i];
        if (!n->used || !path_under(n->path, top) || !strcmp(n->path, top))
            continue;
        for (unsigned j = 0; j < SIM_STORE_WATCHES; j++) {
            struct sim_watch *w = &s->store->w[j];
            if (w->used && !strcmp(w->path, n->path) && watch_hears(w, n))
                watch_deliver(s, w, n->path);
        }
    }
}

/* the first unused node slot, or NULL when the store is full */
static struct sim_node *node_free_slot(sim_hv_t *s)
{
    for (unsigned i = 0; i < SIM_STORE_NODES; i++)
        if (!s->store->n[i].used)
            return &s->store->n[i];
    return NULL;
}

static struct sim_node *node_create(sim_hv_t *s, const char *path)
{
    char parent[XM_STORE_MAX_PATH];
    struct sim_node *p = NULL, *n = NULL;
    char *slash;

    /* nearest existing ancestor decides, xenstored-style */
    snprintf(parent, sizeof(parent), "%s", path);
    while ((slash = strrchr(parent, '/')) && slash != parent) {
        *slash = 0;
        if ((p = node_find(s, parent)))
            break;
    }
    if (!p && !(p = node_find(s, "/")))
        return NULL;
    if (!(node_perm(p, s->base.domid) & XM_PERM_WRITE)) {
        errno = EACCES;
        return NULL;
    }
    if (!(n = node_free_slot(s))) {
        errno = ENOSPC;
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    memcpy(n->perms, p->perms, sizeof(n->perms));
    n->nperms = p->nperms;
    n->perms[0].domid = s->base.domid;   /* creator owns it */
    snprintf(n->path, sizeof(n->path), "%s", path);
    n->used = 1;
    /* intermediate nodes exist too, as in xenstore */
    snprintf(parent, sizeof(parent), "%s", path);
    while ((slash = strrchr(parent, '/')) && slash != parent) {
        *slash = 0;
        if (node_find(s, parent))
            break;
        struct sim_node *m = node_free_slot(s);
        if (!m)
            break;
        memset(m, 0, sizeof(*m));
        memcpy(m->perms, n->perms, sizeof(m->perms));
        m->nperms = n->nperms;
        snprintf(m->path, sizeof(m->path), "%s", parent);
        m->used = 1;
    }
    return n;
}

/* The node at path if hv may read it (else NULL and *rc -ENOENT or
 * -EACCES).  Under the store lock. */
static struct sim_node *node_readable(sim_hv_t *s, xm_hv_t *hv, const char *path, int *rc)
{
    struct sim_node *n = node_find(s, path);

    if (!n)
        *rc = -ENOENT;
    else if (!(node_perm(n, hv->domid) & XM_PERM_READ))
        *rc = -EACCES;
    else
        return n;
    return NULL;
}

int xm_sim_store_read(xm_hv_t *hv, const char *path, char **val, size_t *len)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    xm_sim_store_lock(s);
    n = node_readable(s, hv, path, &rc);
    if (n && !(*val = malloc(n->len + 1)))
        rc = -ENOMEM;
    else if (n) {
        memcpy(*val, n->value, n->len);
        (*val)[n->len] = 0;
        if (len)
            *len = n->len;
    }
    xm_sim_store_unlock(s);
    return rc;
}

static int perms_ok(const xm_store_perm_t *perms, unsigned count)
{
    if (count == 0 || count > XM_STORE_MAX_PERMS)
        return 0;
    for (unsigned i = 0; i < count; i++)
        if (perms[i].perm > XM_PERM_BOTH)
            return 0;
    return 1;
}

/* May hv give n these permissions?  Only its owner (or dom0) sets them,
 * and only dom0 gives a node away, as in xenstored. */
static int perms_allowed(const struct sim_node *n, xm_hv_t *hv, const xm_store_perm_t *perms)
{
    if (hv->domid != 0 && n->perms[0].domid != hv->domid)
        return -EACCES;
    if (hv->domid != 0 && perms[0].domid != n->perms[0].domid)
        return -EPERM;
    return 0;
}

/* Write a node and, with perms, set its permissions in the same step:
 * nobody sees it in between (xenstored: one transaction).  Nothing
 * changes on an error. */
static int store_put(xm_hv_t *hv, const char *path, const void *val, size_t len,
                     const xm_store_perm_t *perms, unsigned count)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path) || (perms && !perms_ok(perms, count)))
        return -EINVAL;
    if (strlen(path) + 1 + len > XM_STORE_MAX_VALUE)
        return -E2BIG;   /* xenstored's limit covers path, NUL and value */
    xm_sim_store_lock(s);
    n = node_find(s, path);
    if (n && !(node_perm(n, hv->domid) & XM_PERM_WRITE))
        rc = -EACCES;
    else if (n && perms)
        rc = perms_allowed(n, hv, perms);
    else if (!n && perms && hv->domid != 0 && perms[0].domid != hv->domid)
        rc = -EPERM;   /* the creator owns a new node and cannot give it away */
    else if (!n && !(n = node_create(s, path)))
        rc = -errno;
    if (!rc) {
        memcpy(n->value, val, len);
        n->len = (uint32_t)len;
        if (perms) {
            memset(n->perms, 0, sizeof(n->perms));
            memcpy(n->perms, perms, count * sizeof(*perms));
            n->nperms = count;
        }
        watch_fire(s, path, n);
    }
    xm_sim_store_unlock(s);
    return rc;
}

int xm_sim_store_write(xm_hv_t *hv, const char *path, const void *val, size_t len)
{
    return store_put(hv, path, val, len, NULL, 0);
}

int xm_sim_store_create(xm_hv_t *hv, const char *path, const void *val, size_t len,
                        const xm_store_perm_t *perms, unsigned count)
{
    return store_put(hv, path, val, len, perms, count);
}

int xm_sim_store_remove(xm_hv_t *hv, const char *path)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    xm_sim_store_lock(s);
    n = node_find(s, path);
    if (!n)
        rc = -ENOENT;
    else if (!(node_perm(n, hv->domid) & XM_PERM_WRITE))
        rc = -EACCES;
    else {
        /* fire while the permissions can still be seen, as xenstored does */
        watch_fire_below(s, path);
        watch_fire(s, path, n);
        for (unsigned i = 0; i < SIM_STORE_NODES; i++)
            if (s->store->n[i].used && path_under(s->store->n[i].path, path))
                s->store->n[i].used = 0;
    }
    xm_sim_store_unlock(s);
    return rc;
}

int xm_sim_store_list(xm_hv_t *hv, const char *path, char ***names, unsigned *count)
{
    sim_hv_t *s = to_sim_hv(hv);
    size_t plen = strlen(path) == 1 ? 0 : strlen(path);
    char **v = NULL;
    unsigned k = 0;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    xm_sim_store_lock(s);
    node_readable(s, hv, path, &rc);
    for (unsigned i = 0; !rc && i < SIM_STORE_NODES; i++) {
        const char *c = s->store->n[i].path;
        if (!s->store->n[i].used || strncmp(c, path, plen) || c[plen] != '/' ||
            !c[plen + 1] || strchr(c + plen + 1, '/'))
            continue;
        char **nv = realloc(v, (k + 1) * sizeof(*v));
        if (!nv || !(nv[k] = strdup(c + plen + 1))) {
            v = nv ? nv : v;
            rc = -ENOMEM;
            break;
        }
        v = nv;
        k++;
    }
    xm_sim_store_unlock(s);
    if (rc) {
        while (k--)
            free(v[k]);
        free(v);
        return rc;
    }
    *names = v;
    *count = k;
    return 0;
}

int xm_sim_store_owner(xm_hv_t *hv, const char *path, uint32_t *domid)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    xm_sim_store_lock(s);
    n = node_readable(s, hv, path, &rc);
    if (n)
        *domid = n->perms[0].domid;
    xm_sim_store_unlock(s);
    return rc;
}

int xm_sim_store_set_perms(xm_hv_t *hv, const char *path,
                           const xm_store_perm_t *perms, unsigned count)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path) || !perms_ok(perms, count))
        return -EINVAL;
    xm_sim_store_lock(s);
    n = node_find(s, path);
    if (!n)
        rc = -ENOENT;
    else
        rc = perms_allowed(n, hv, perms);
    if (!rc) {
        memset(n->perms, 0, sizeof(n->perms));
        memcpy(n->perms, perms, count * sizeof(*perms));
        n->nperms = count;
        watch_fire(s, path, n);
    }
    xm_sim_store_unlock(s);
    return rc;
}

int xm_sim_store_watch(xm_hv_t *hv, const char *path, const char *token)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_watch *w = NULL;

    if (!path_ok(path) || strlen(token) >= SIM_TOKEN_MAX)
        return -EINVAL;
    xm_sim_store_lock(s);
    for (unsigned i = 0; i < SIM_STORE_WATCHES; i++) {
        struct sim_watch *c = &s->store->w[i];
        if (!c->used || !pid_alive(c->pid)) {
            w = c;
            break;
        }
    }
    if (w) {
        memset(w, 0, sizeof(*w));
        w->pid = s->pid;
        w->efd = s->wfd_id;
        w->domid = hv->domid;
        snprintf(w->path, sizeof(w->path), "%s", path);
        snprintf(w->token, sizeof(w->token), "%s", token);
        /* xenstore fires every new watch once */
        snprintf(w->q[0], XM_STORE_MAX_PATH, "%s", path);
        w->head = 1;
        w->used = 1;
        xm_sim_signal_fd(s, s->pid, s->wfd_id);
    }
    xm_sim_store_unlock(s);
    return w ? 0 : -ENOSPC;
}

int xm_sim_store_unwatch(xm_hv_t *hv, const char *path, const char *token)
{
    sim_hv_t *s = to_sim_hv(hv);
    int rc = -ENOENT;

    xm_sim_store_lock(s);
    for (unsigned i = 0; i < SIM_STORE_WATCHES; i++) {
        struct sim_watch *w = &s->store->w[i];
        if (w->used && w->pid == s->pid && w->efd == s->wfd_id && !strcmp(w->path, path) &&
            !strcmp(w->token, token)) {
            w->used = 0;
            rc = 0;
        }
    }
    xm_sim_store_unlock(s);
    return rc;
}

int xm_sim_store_watch_fd(xm_hv_t *hv) { return to_sim_hv(hv)->wfd; }

int xm_sim_store_read_watch(xm_hv_t *hv, char **path, char **token)
{
    sim_hv_t *s = to_sim_hv(hv);
    char c;
    int rc = -EAGAIN, more = 0;

    if (recv(s->wfd, &c, 1, MSG_DONTWAIT) < 0)
        return -EAGAIN;   /* nothing fired */
    xm_sim_wake_drain(s->wfd);
    xm_sim_store_lock(s);
    for (unsigned i = 0; i < SIM_STORE_WATCHES; i++) {
        struct sim_watch *w = &s->store->w[i];
        /* this handle's watches only: a process may open several */
        if (!w->used || w->pid != s->pid || w->efd != s->wfd_id ||
            (w->head == w->tail && !w->overflow))
            continue;
        if (rc == 0) {
            more = 1;
            break;
        }
        const char *p;
        if (w->head != w->tail)
            p = w->q[w->tail++ % SIM_WATCH_QUEUE];
        else {
            p = w->path;
            w->overflow = 0;
        }
        *path = strdup(p);
        *token = strdup(w->token);
        if (!*path || !*token) {
            free(*path);
            free(*token);
            rc = -ENOMEM;
            break;
        }
        rc = 0;
        if (w->head != w->tail || w->overflow)
            more = 1;
    }
    xm_sim_store_unlock(s);
    if (more)
        xm_sim_signal_fd(s, s->pid, s->wfd_id);
    return rc;
}

void xm_sim_store_ensure_home(sim_hv_t *s)
{
    char path[64], val[16];
    struct sim_node *n;

    xm_sim_store_lock(s);
    if (!node_find(s, "/")) {
        if (!(n = node_free_slot(s)))
            n = &s->store->n[0];
        memset(n, 0, sizeof(*n));
        snprintf(n->path, sizeof(n->path), "/");
        n->nperms = 1;     /* owned by dom0, others none */
        n->used = 1;
    }
    /* the toolstack's job on Xen: a home the domain owns, others can't read */
    snprintf(path, sizeof(path), "/local/domain/%u", s->base.domid);
    if (!node_find(s, path)) {
        uint32_t me = s->base.domid;
        s->base.domid = 0;    /* created as the toolstack would */
        n = node_create(s, path);
        s->base.domid = me;
        if (n) {
            n->nperms = 1;
            n->perms[0].domid = me;
            n->perms[0].perm = XM_PERM_NONE;
            snprintf(path, sizeof(path), "/local/domain/%u/domid", me);
            struct sim_node *d = node_create(s, path);
            if (d) {
                d->len = (uint32_t)snprintf(val, sizeof(val), "%u", me);
                memcpy(d->value, val, d->len);
            }
        }
    }
    xm_sim_store_unlock(s);
}
