/*
 * xm_hv_sim.c - the sim backend: Xen's grant, event-channel and xenstore
 * semantics between plain Linux processes.  This file opens and closes a
 * handle and the host's files; xm_hv_sim_int.h says where the rest is.
 *
 * A simulated host is a directory /dev/shm/xenmpi-sim-<XENMPI_SIM_HOST>.
 * Each domain has a grant table file and an event-channel port file there;
 * the host has one store file.  Every file is created by ftruncate and an
 * all-zero file is a valid empty table, so there is no initialisation race
 * between the processes of one host.
 *
 * Granted memory lives in a memfd per share.  A peer reaches it through
 * /proc/<owner pid>/fd/<n> and proves it opened the right file by comparing
 * the inode recorded in the grant entry; the entry's sequence number is
 * re-read after opening so a grant ended (and its fd number reused) in
 * between is refused.  A stale ref therefore never reaches memory it no
 * longer covers.
 *
 * grant_mem grants a process's existing pages: such an entry records the
 * owner's pid, its start time and the page's virtual address, and a peer's
 * grant copy is process_vm_readv/writev on the owner.  Consecutive segments
 * on one owner go out as one call; the entry's sequence number is re-read
 * afterwards, and the owner's pid is held as a pidfd the liveness thread
 * watches, so neither an ended grant nor a pid reused by another process is
 * reached unnoticed.
 *
 * Process death stands in for Xen's unmap-notify: a thread per process
 * watches (pidfd) the owners of its peers' ports and mappings; when one
 * dies it clears the registered notify bytes in the mappings it holds and
 * raises the local ends of the dead process's ports.
 */
#include "xm_hv_sim_int.h"
#include "xm_settings.h"
#include "xm_log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void *map_file(sim_hv_t *s, const char *name, size_t size)
{
    char path[PATH_MAX + 64];
    void *p;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", s->dir, name);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        xm_error("sim: open %s: %m (is /dev/shm writable?)", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size < size && ftruncate(fd, (off_t)size)) {
        xm_error("sim: ftruncate %s: %m", path);
        close(fd);
        return NULL;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        xm_error("sim: mmap %s: %m", path);
        return NULL;
    }
    return p;
}

/* Foreign domain tables, mapped on first use and kept. */
int xm_sim_foreign_tables(sim_hv_t *s, uint32_t domid, struct sim_gnttab **g,
                          struct sim_evtab **e)
{
    char name[64];
    unsigned i;

    if (domid == s->base.domid) {
        if (g) *g = s->gnt;
        if (e) *e = s->ev;
        return 0;
    }
    for (i = 0; i < s->nforeign; i++)
        if (s->foreign[i].domid == domid)
            goto found;
    if (s->nforeign == sizeof(s->foreign) / sizeof(s->foreign[0])) {
        xm_error("sim: more than %u peer domains in one process", i);
        return -ENOSPC;
    }
    snprintf(name, sizeof(name), "gnttab-%u", domid);
    s->foreign[i].gnt = map_file(s, name, sizeof(struct sim_gnttab));
    snprintf(name, sizeof(name), "evtchn-%u", domid);
    s->foreign[i].ev = map_file(s, name, sizeof(struct sim_evtab));
    if (!s->foreign[i].gnt || !s->foreign[i].ev)
        return -EIO;
    s->foreign[i].domid = domid;
    s->nforeign++;
found:
    if (g) *g = s->foreign[i].gnt;
    if (e) *e = s->foreign[i].ev;
    return 0;
}

/* Wakeups cross processes as datagrams to an abstract unix socket named
 * after the host, the owning pid and a per-process id: nothing to clean up
 * when a process dies, and a full queue simply means "already woken". */
static void wake_addr(const sim_hv_t *s, int32_t pid, int32_t id, struct sockaddr_un *a,
                      socklen_t *len)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "xenmpi-sim-%s-%d-%d",
                     s->host, pid, id);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int wake_open(sim_hv_t *s, int32_t *id)
{
    static _Atomic int32_t next_id;
    struct sockaddr_un a;
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    *id = atomic_fetch_add(&next_id, 1);
    wake_addr(s, s->pid, *id, &a, &len);
    if (bind(fd, (struct sockaddr *)&a, len)) {
        close(fd);
        return -1;
    }
    return fd;
}

void xm_sim_wake_drain(int fd)
{
    char buf[64];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

void xm_sim_signal_fd(sim_hv_t *s, int32_t pid, int32_t id)
{
    struct sockaddr_un a;
    socklen_t len;

    wake_addr(s, pid, id, &a, &len);
    if (sendto(s->sendsock, "", 1, MSG_DONTWAIT, (struct sockaddr *)&a, len) < 0 &&
        errno != EAGAIN && errno != ECONNREFUSED && errno != ENOENT)
        xm_debug("sim: wakeup of pid %d: %m", pid);
}

/* ---- open/close ---- */

static int sim_self_domid(xm_hv_t *hv, uint32_t *domid)
{
    *domid = hv->domid;
    return 0;
}

static int sim_host_id(xm_hv_t *hv, char *buf, size_t len)
{
    int n = snprintf(buf, len, "sim:%s", to_sim_hv(hv)->host);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void sim_close(xm_hv_t *hv);

static int sim_open(xm_hv_t **out)
{
    const char *host = xm_cfg_str(XM_CFG_SIM_HOST);
    struct sim_domains *doms;
    sim_hv_t *s;
    char name[64];
    int rc = -EIO;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->base.ops = &xm_hv_sim_ops;
    s->efd = s->wfd = s->reaper_ep = s->reaper_wake = s->sendsock = -1;
    s->pid = getpid();
    pthread_mutex_init(&s->lock, NULL);
    if (!host || !*host)
        host = "default";
    if (strchr(host, '/') || strlen(host) >= sizeof(s->host)) {
        xm_error("XENMPI_SIM_HOST=%s: must be a plain name (a directory under /dev/shm)", host);
        rc = -EINVAL;
        goto err;
    }
    snprintf(s->host, sizeof(s->host), "%s", host);
    snprintf(s->dir, sizeof(s->dir), "/dev/shm/xenmpi-sim-%s", host);
    if (mkdir(s->dir, 0700) && errno != EEXIST) {
        xm_error("sim: mkdir %s: %m", s->dir);
        goto err;
    }
    doms = map_file(s, "domains", 4096);
    if (!doms)
        goto err;
    if (xm_cfg_is_set(XM_CFG_SIM_DOMID))
        s->base.domid = xm_cfg_uint(XM_CFG_SIM_DOMID);   /* several processes, one domain */
    else
        s->base.domid = 1 + atomic_fetch_add(&doms->next_domid, 1) % 0x7fe0;
    munmap(doms, 4096);

    snprintf(name, sizeof(name), "gnttab-%u", s->base.domid);
    if (!(s->gnt = map_file(s, name, sizeof(struct sim_gnttab))))
        goto err;
    uint32_t zero = 0, nr = xm_cfg_uint(XM_CFG_SIM_GNTTAB_SIZE);
    if (nr < 2 || nr > SIM_MAX_GRANTS)
        nr = SIM_MAX_GRANTS;
    /* the domain's first process fixes the table size, as Xen does at boot */
    atomic_compare_exchange_strong(&s->gnt->nr_entries, &zero, nr);
    snprintf(name, sizeof(name), "evtchn-%u", s->base.domid);
    if (!(s->ev = map_file(s, name, sizeof(struct sim_evtab))))
        goto err;
    if (!(s->store = map_file(s, "store", sizeof(struct sim_store))))
        goto err;
    s->efd = wake_open(s, &s->efd_id);
    s->wfd = wake_open(s, &s->wfd_id);
    s->sendsock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    s->reaper_ep = epoll_create1(EPOLL_CLOEXEC);
    s->reaper_wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0 || s->wfd < 0 || s->sendsock < 0 || s->reaper_ep < 0 || s->reaper_wake < 0) {
        xm_error("sim: wakeup sockets/epoll: %m");
        goto err;
    }
    s->drop_every = xm_cfg_uint(XM_CFG_SIM_DROP_NOTIFY);
    s->delay_us = xm_cfg_uint(XM_CFG_SIM_DELAY_NOTIFY_US);
    s->copy_delay_us = xm_cfg_uint(XM_CFG_SIM_DELAY_COPY_US);
    xm_sim_store_ensure_home(s);

    if (xm_sim_reaper_start(s))
        goto err;
    xm_debug("sim: domain %u on host %s (pid %d)", s->base.domid, s->host, s->pid);
    *out = &s->base;
    return 0;
err:
    sim_close(&s->base);
    return rc;
}

static void sim_close(xm_hv_t *hv)
{
    sim_hv_t *s = to_sim_hv(hv);

    if (!s)
        return;
    xm_sim_reaper_stop(s);
    while (s->maps)
        xm_sim_unmap(hv, s->maps->addr, s->maps->count);
    while (s->shares)
        xm_sim_unshare(hv, s->shares->addr, s->shares->count);
    while (s->memgrants)
        xm_sim_grant_mem_end(hv, s->memgrants->id);
    for (unsigned i = 0; i < s->nowners; i++)
        if (s->owners[i].pidfd >= 0)
            close(s->owners[i].pidfd);
    if (s->ev)
        for (uint32_t p = 1; p < SIM_MAX_PORTS; p++)
            if (s->ev->p[p].pid == s->pid)
                xm_sim_evt_close(hv, p);
    if (s->store) {
        xm_sim_store_lock(s);
        for (unsigned i = 0; i < SIM_STORE_WATCHES; i++)
            if (s->store->w[i].used && s->store->w[i].pid == s->pid)
                s->store->w[i].used = 0;
        xm_sim_store_unlock(s);
    }
    for (unsigned i = 0; i < s->nwatched; i++)
        if (s->watched[i].pidfd >= 0)
            close(s->watched[i].pidfd);
    if (s->sendsock >= 0)
        close(s->sendsock);
    for (unsigned i = 0; i < s->nforeign; i++) {
        munmap(s->foreign[i].gnt, sizeof(struct sim_gnttab));
        munmap(s->foreign[i].ev, sizeof(struct sim_evtab));
    }
    if (s->gnt)
        munmap(s->gnt, sizeof(struct sim_gnttab));
    if (s->ev)
        munmap(s->ev, sizeof(struct sim_evtab));
    if (s->store)
        munmap(s->store, sizeof(struct sim_store));
    if (s->efd >= 0)
        close(s->efd);
    if (s->wfd >= 0)
        close(s->wfd);
    if (s->reaper_ep >= 0)
        close(s->reaper_ep);
    if (s->reaper_wake >= 0)
        close(s->reaper_wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const xm_hv_ops_t xm_hv_sim_ops = {
    .name = "sim",
    .open = sim_open,
    .close = sim_close,
    .self_domid = sim_self_domid,
    .host_id = sim_host_id,
    .share = xm_sim_share,
    .unshare = xm_sim_unshare,
    .map = xm_sim_map,
    .unmap = xm_sim_unmap,
    .copy = xm_sim_copy,
    .grant_mem = xm_sim_grant_mem,
    .grant_mem_end = xm_sim_grant_mem_end,
    .grant_mem_stale = xm_sim_grant_mem_stale,
    .evt_alloc_unbound = xm_sim_evt_alloc_unbound,
    .evt_bind = xm_sim_evt_bind,
    .evt_notify = xm_sim_evt_notify,
    .evt_fd = xm_sim_evt_fd,
    .evt_pending = xm_sim_evt_pending,
    .evt_unmask = xm_sim_evt_unmask,
    .evt_close = xm_sim_evt_close,
    .store_read = xm_sim_store_read,
    .store_write = xm_sim_store_write,
    .store_remove = xm_sim_store_remove,
    .store_list = xm_sim_store_list,
    .store_set_perms = xm_sim_store_set_perms,
    .store_owner = xm_sim_store_owner,
    .store_create = xm_sim_store_create,
    .store_watch = xm_sim_store_watch,
    .store_unwatch = xm_sim_store_unwatch,
    .store_watch_fd = xm_sim_store_watch_fd,
    .store_read_watch = xm_sim_store_read_watch,
};
