/*
 * xm_hv_sim_gnttab.c - the sim backend's grant tables: entries under a
 * seqlock, share (a memfd per share) and map (the owner's memfd reopened
 * through /proc/<pid>/fd, its inode and the entry's sequence checked).
 */
#include "xm_hv_sim_int.h"
#include "xm_log.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read a grant entry as a consistent snapshot (seqlock). */
int xm_sim_gnt_snapshot(struct sim_gnttab *t, uint32_t ref, struct sim_gnt *out)
{
    uint32_t nr = atomic_load(&t->nr_entries);

    if (ref == 0 || ref >= nr)
        return -ENOENT;
    for (;;) {
        uint32_t s1 = atomic_load_explicit(&t->e[ref].seq, memory_order_acquire);
        if (s1 & 1) {
            sched_yield();
            continue;
        }
        memcpy(out, (const void *)&t->e[ref], sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&t->e[ref].seq, memory_order_relaxed) == s1) {
            out->seq = s1;
            return 0;
        }
    }
}

/* Claim a free entry and fill it from v (all but seq, active and pid). */
int xm_sim_gnt_alloc_entry(sim_hv_t *s, const struct sim_gnt *v, uint32_t *ref)
{
    struct sim_gnttab *t = s->gnt;
    uint32_t nr = atomic_load(&t->nr_entries);
    uint32_t start = atomic_fetch_add(&t->hint, 1);

    for (uint32_t k = 0; k < nr; k++) {
        uint32_t r = 1 + (start + k) % (nr - 1);
        struct sim_gnt *e = &t->e[r];
        uint32_t sq = atomic_load(&e->seq);

        if (sq & 1)
            continue;
        if (e->active && (e->pid == s->pid || pid_alive(e->pid)))
            continue;
        /* free, or left behind by a dead process (Xen ends those too) */
        if (!atomic_compare_exchange_strong(&e->seq, &sq, sq + 1))
            continue;
        e->active = 1;
        e->peer = v->peer;
        e->readonly = !!v->readonly;
        e->pid = s->pid;
        e->fd = v->fd;
        e->ino = v->ino;
        e->page = v->page;
        e->notify_off = v->notify_off;
        e->kind = v->kind;
        e->pad = 0;
        e->vaddr = v->vaddr;
        e->start = v->start;
        atomic_store_explicit(&e->seq, sq + 2, memory_order_release);
        /* next fit: the next allocation starts after this one, so n of
         * them in a nearly full table scan it about once, not n times */
        atomic_store(&t->hint, r);
        *ref = r;
        return 0;
    }
    return -ENOSPC;
}

static int gnt_alloc(sim_hv_t *s, uint32_t peer, int ro, int fd, uint64_t ino,
                     uint32_t page, int notify_off, uint32_t *ref)
{
    struct sim_gnt v = {
        .peer = peer, .readonly = (uint32_t)!!ro, .fd = fd, .ino = ino,
        .page = page, .notify_off = notify_off + 1, .kind = SIM_GNT_MEMFD,
    };

    return xm_sim_gnt_alloc_entry(s, &v, ref);
}

void xm_sim_gnt_end(sim_hv_t *s, uint32_t ref)
{
    struct sim_gnt *e = &s->gnt->e[ref];
    uint32_t sq = atomic_load(&e->seq);

    /* only this process writes its own entries; odd while changing */
    atomic_store(&e->seq, sq + 1);
    e->active = 0;
    atomic_store_explicit(&e->seq, sq + 2, memory_order_release);
}

int xm_sim_share(xm_hv_t *hv, uint32_t peer, unsigned count, int writable,
                 int notify_off, int notify_port, void **addr, uint32_t *refs)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct xm_sim_share *sh;
    struct stat st;
    unsigned i;
    int fd, rc;

    if (count == 0 || count > SIM_MAX_GRANTS ||
        ((notify_off >= 0 || notify_port >= 0) && count != 1) ||
        notify_off >= (int)XM_PAGE_SIZE)
        return -EINVAL;
    sh = calloc(1, sizeof(*sh) + count * sizeof(uint32_t));
    if (!sh)
        return -ENOMEM;
    fd = memfd_create("xenmpi-grant", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)count * XM_PAGE_SIZE) || fstat(fd, &st)) {
        rc = -errno;
        xm_error("sim: memfd for %u pages: %m", count);
        goto err_fd;
    }
    sh->addr = mmap(NULL, (size_t)count * XM_PAGE_SIZE, PROT_READ | PROT_WRITE,
                    MAP_SHARED, fd, 0);
    if (sh->addr == MAP_FAILED) {
        rc = -errno;
        xm_error("sim: mmap %u shared pages: %m", count);
        goto err_fd;
    }
    sh->count = count;
    sh->fd = fd;
    sh->notify_off = notify_off;
    sh->notify_port = notify_port;
    for (i = 0; i < count; i++) {
        rc = gnt_alloc(s, peer, !writable, fd, st.st_ino, i, notify_off, &sh->refs[i]);
        if (rc) {
            xm_error("sim: grant table of domain %u is full (%u entries, "
                     "XENMPI_SIM_GNTTAB_SIZE)", s->base.domid,
                     atomic_load(&s->gnt->nr_entries));
            goto err_refs;
        }
    }
    memcpy(refs, sh->refs, count * sizeof(uint32_t));
    pthread_mutex_lock(&s->lock);
    sh->next = s->shares;
    s->shares = sh;
    pthread_mutex_unlock(&s->lock);
    *addr = sh->addr;
    return 0;

err_refs:
    while (i-- > 0)
        xm_sim_gnt_end(s, sh->refs[i]);
    munmap(sh->addr, (size_t)count * XM_PAGE_SIZE);
err_fd:
    if (fd >= 0)
        close(fd);
    free(sh);
    return rc;
}

int xm_sim_unshare(xm_hv_t *hv, void *addr, unsigned count)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct xm_sim_share **pp, *sh;

    pthread_mutex_lock(&s->lock);
    for (pp = &s->shares; (sh = *pp); pp = &sh->next)
        if (sh->addr == addr && sh->count == count)
            break;
    if (sh)
        *pp = sh->next;
    pthread_mutex_unlock(&s->lock);
    if (!sh)
        return -EINVAL;
    for (unsigned i = 0; i < count; i++)
        xm_sim_gnt_end(s, sh->refs[i]);
    if (sh->notify_off >= 0)
        ((volatile uint8_t *)sh->addr)[sh->notify_off] = 0;
    if (sh->notify_port >= 0)
        hv->ops->evt_notify(hv, (uint32_t)sh->notify_port);
    munmap(sh->addr, (size_t)count * XM_PAGE_SIZE);
    close(sh->fd);
    free(sh);
    return 0;
}

/* The rules every access to a foreign grant entry passes. */
int xm_sim_gnt_check(const sim_hv_t *s, const struct sim_gnt *snap, int write)
{
    if (!snap->active || snap->peer != s->base.domid)
        return -EPERM;   /* not granted to us, or ended */
    if (write && snap->readonly)
        return -EACCES;
    return 0;
}

/* Open the memfd behind a checked snapshot of entry ref of table t. */
int xm_sim_gnt_open_snap(struct sim_gnttab *t, uint32_t ref, int write, int internal_rw,
                         const struct sim_gnt *snap)
{
    struct stat st;
    char path[64];
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/fd/%d", snap->pid, snap->fd);
    /* a read-only grant gets a read-only file: no mprotect can undo it */
    fd = open(path, (write || internal_rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -EPERM;   /* owner gone: its grants died with it */
    if (fstat(fd, &st) || st.st_ino != snap->ino ||
        atomic_load_explicit(&t->e[ref].seq, memory_order_acquire) != snap->seq) {
        close(fd);
        return -EPERM;   /* ended (and the fd reused) while we looked */
    }
    return fd;
}

/* Open the file behind a foreign grant after checking the rules.  Returns
 * an fd the caller owns, and the entry snapshot.  grant_mem entries have no
 * file: -EOPNOTSUPP (only grant copy reaches them). */
static int gnt_open_foreign(sim_hv_t *s, uint32_t owner, uint32_t ref, int write,
                            int internal_rw, struct sim_gnt *snap)
{
    struct sim_gnttab *t;
    int rc;

    rc = xm_sim_foreign_tables(s, owner, &t, NULL);
    if (rc)
        return rc;
    rc = xm_sim_gnt_snapshot(t, ref, snap);
    if (rc)
        return rc;
    rc = xm_sim_gnt_check(s, snap, write);
    if (rc)
        return rc;
    if (snap->kind != SIM_GNT_MEMFD)
        return -EOPNOTSUPP;
    return xm_sim_gnt_open_snap(t, ref, write, internal_rw, snap);
}

int xm_sim_map(xm_hv_t *hv, uint32_t owner, unsigned count, const uint32_t *refs,
               int writable, int notify_port, void **addr)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_mapping *m;
    struct sim_gnt snap;
    int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    uint8_t *base;
    int rc = 0;

    if (count == 0 || count > SIM_MAX_GRANTS || (notify_port >= 0 && count != 1))
        return -EINVAL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    base = mmap(NULL, (size_t)count * XM_PAGE_SIZE, PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        free(m);
        return -ENOMEM;
    }
    m->fd0 = -1;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < count; i++) {
        int fd = gnt_open_foreign(s, owner, refs[i], writable, 0, &snap);
        if (fd < 0) {
            rc = fd;
            if (rc == -EOPNOTSUPP)
                xm_error("sim: ref %u of domain %u grants existing memory (grant_mem): "
                         "the sim backend reaches such refs by grant copy only",
                         refs[i], owner);
            else
                xm_debug("sim: map of ref %u from domain %u refused: %d", refs[i], owner, rc);
            break;
        }
        if (mmap(base + (size_t)i * XM_PAGE_SIZE, XM_PAGE_SIZE, prot,
                 MAP_SHARED | MAP_FIXED, fd, (off_t)snap.page * XM_PAGE_SIZE) == MAP_FAILED) {
            rc = -errno;
            close(fd);
            break;
        }
        close(fd);
        if (i == 0) {
            m->off0 = (uint64_t)snap.page * XM_PAGE_SIZE;
            m->owner_pid = snap.pid;
            m->notify_off = snap.notify_off - 1;
            /* the sim's own handle for clearing the owner's notify byte
             * when the owner dies: the kernel's job on Xen */
            if (m->notify_off >= 0)
                m->fd0 = gnt_open_foreign(s, owner, refs[0], 0, 1, &snap);
        }
    }
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        if (m->fd0 >= 0)
            close(m->fd0);
        munmap(base, (size_t)count * XM_PAGE_SIZE);
        free(m);
        return rc;
    }
    m->addr = base;
    m->count = count;
    m->owner = owner;
    m->notify_port = notify_port;
    m->next = s->maps;
    s->maps = m;
    pthread_mutex_unlock(&s->lock);
    xm_sim_reaper_kick(s);
    *addr = base;
    return 0;
}

int xm_sim_unmap(xm_hv_t *hv, void *addr, unsigned count)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_mapping **pp, *m;

    pthread_mutex_lock(&s->lock);
    for (pp = &s->maps; (m = *pp); pp = &m->next)
        if (m->addr == addr && m->count == count)
            break;
    if (m)
        *pp = m->next;
    pthread_mutex_unlock(&s->lock);
    if (!m)
        return -EINVAL;
    munmap(m->addr, (size_t)count * XM_PAGE_SIZE);
    if (m->fd0 >= 0)
        close(m->fd0);
    if (m->notify_port >= 0)
        hv->ops->evt_notify(hv, (uint32_t)m->notify_port);
    free(m);
    return 0;
}
