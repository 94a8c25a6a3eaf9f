/*
 * xm_hv_sim.c - the sim backend: Xen's grant, event-channel and xenstore
 * semantics between plain Linux processes.
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
#include "xm_hv.h"
#include "xm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SIM_MAX_GRANTS 32768u     /* Xen default: 64 frames of v1 entries */
#define SIM_MAX_PORTS 4096u
#define SIM_STORE_NODES 4096u
#define SIM_STORE_WATCHES 512u
#define SIM_WATCH_QUEUE 16u
#define SIM_TOKEN_MAX 64u
#define SIM_MAX_OWNERS 1024u      /* grant_mem owners one process copies from */
#define SIM_OWNER_TAG 0x80000000u /* liveness thread: an owner's pidfd */
#define SIM_RUN_IOV 1024u         /* IOV_MAX: iovecs per side of one call */
#define SIM_RUN_SEGS 1024u        /* segments in one process_vm_* call */

/* ---- shared layouts (all-zero = empty) ---- */

enum { SIM_GNT_MEMFD = 0, SIM_GNT_USER = 1 };

struct sim_gnt {
    _Atomic uint32_t seq; /* odd while being changed */
    uint32_t active;
    uint32_t peer;
    uint32_t readonly;
    int32_t pid;          /* owning process */
    int32_t fd;           /* memfd kind: its memfd */
    uint64_t ino;         /* memfd kind: identity of that memfd */
    uint32_t page;        /* memfd kind: page inside the memfd */
    int32_t notify_off;   /* byte cleared on unshare/death, -1 none (stored +1) */
    uint32_t kind;        /* SIM_GNT_*; all-zero is the memfd kind */
    uint32_t pad;
    uint64_t vaddr;       /* user kind: the page's address in pid */
    uint64_t start;       /* user kind: pid's start time (against pid reuse) */
};

struct sim_gnttab {
    _Atomic uint32_t nr_entries; /* fixed by the domain's first process */
    _Atomic uint32_t hint;
    uint32_t pad[14];
    struct sim_gnt e[SIM_MAX_GRANTS];
};

enum { PORT_FREE = 0, PORT_CLAIMED, PORT_UNBOUND, PORT_BINDING, PORT_INTERDOMAIN };

struct sim_port {
    _Atomic uint32_t state;
    uint32_t remote_dom;
    _Atomic uint32_t remote_port;
    int32_t pid;
    int32_t efd;
    _Atomic uint32_t pending;
    _Atomic uint32_t masked;
    uint32_t pad;
};

struct sim_evtab {
    struct sim_port p[SIM_MAX_PORTS];
};

struct sim_node {
    uint32_t used;
    uint32_t len;
    uint32_t nperms;
    uint32_t pad;
    xm_store_perm_t perms[XM_STORE_MAX_PERMS];
    char path[XM_STORE_MAX_PATH];
    char value[XM_STORE_MAX_VALUE];
};

struct sim_watch {
    uint32_t used;
    int32_t pid;
    int32_t efd;
    uint32_t domid;
    uint32_t head, tail; /* queue of fired paths */
    uint32_t overflow;
    uint32_t pad;
    char path[XM_STORE_MAX_PATH];
    char token[SIM_TOKEN_MAX];
    char q[SIM_WATCH_QUEUE][XM_STORE_MAX_PATH];
};

struct sim_store {
    _Atomic int32_t lock_pid;
    uint32_t pad[15];
    struct sim_node n[SIM_STORE_NODES];
    struct sim_watch w[SIM_STORE_WATCHES];
};

struct sim_domains {
    _Atomic uint32_t next_domid;
};

/* ---- per-process state ---- */

struct sim_share {
    struct sim_share *next;
    void *addr;
    unsigned count;
    int fd;
    int notify_off;
    int notify_port;
    uint32_t refs[];
};

/* one grant_mem grant of this process */
struct sim_memgrant {
    struct sim_memgrant *next;
    uint64_t id;
    uintptr_t addr;
    uint32_t peer;
    unsigned count;
    uint32_t refs[];
};

/* A process whose grant_mem pages this process copies: its pidfd is
 * watched by the liveness thread, which sets dead when it exits. */
struct sim_owner {
    int32_t pid;
    int pidfd;            /* -1 when pidfds are unavailable */
    uint64_t start;       /* its start time, as the grant entries record it */
    _Atomic uint32_t gen; /* bumped whenever the slot is (re)filled */
    _Atomic uint32_t dead;
};

struct sim_mapping {
    struct sim_mapping *next;
    void *addr;
    unsigned count;
    uint32_t owner;
    int32_t owner_pid;
    int fd0;          /* page 0's file, kept for notify-byte clearing */
    uint64_t off0;
    int notify_off;   /* owner's registered byte, -1 none */
    int notify_port;  /* my port to raise when I unmap, -1 none */
};

typedef struct sim_hv {
    struct xm_hv base;
    char dir[PATH_MAX];
    char host[128];
    struct sim_gnttab *gnt;        /* my domain's grant table */
    struct sim_evtab *ev;          /* my domain's ports */
    struct sim_store *store;
    int efd;                       /* event channel fd */
    int wfd;                       /* store watch fd */
    pid_t pid;
    pthread_mutex_t lock;          /* local lists, fd cache, foreign tables */
    struct sim_share *shares;
    struct sim_mapping *maps;
    struct sim_memgrant *memgrants;
    uint64_t memgrant_ids;         /* last handle issued: ids start at 1 */
    uint64_t start;                /* this process's start time, 0 unknown */
    struct sim_owner owners[SIM_MAX_OWNERS];
    unsigned nowners;
    struct { uint32_t domid; struct sim_gnttab *gnt; struct sim_evtab *ev; } foreign[64];
    unsigned nforeign;
    int32_t efd_id, wfd_id;        /* wakeup socket names */
    int sendsock;
    /* reaper */
    pthread_t reaper;
    int reaper_ep, reaper_wake;
    int reaper_started;
    struct { int32_t pid; int pidfd; } watched[256];
    unsigned nwatched;
    /* fault injection */
    unsigned drop_every, notify_count;
    uint32_t max_port;             /* highest port this handle claimed */
    unsigned delay_us;
} sim_hv_t;

static sim_hv_t *sim(xm_hv_t *hv) { return (sim_hv_t *)hv; }

static int env_uint(const char *name, unsigned dflt)
{
    const char *s = getenv(name);
    char *end;
    unsigned long v;

    if (!s || !*s)
        return (int)dflt;
    v = strtoul(s, &end, 0);
    if (*end || v > INT_MAX) {
        xm_warn("%s=%s is not a number, using %u", name, s, dflt);
        return (int)dflt;
    }
    return (int)v;
}

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

static int pid_alive(int32_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/* Foreign domain tables, mapped on first use and kept. */
static int foreign_tables(sim_hv_t *s, uint32_t domid, struct sim_gnttab **g,
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

static void wake_drain(int fd)
{
    char buf[64];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

static void signal_fd(sim_hv_t *s, int32_t pid, int32_t id)
{
    struct sockaddr_un a;
    socklen_t len;

    wake_addr(s, pid, id, &a, &len);
    if (sendto(s->sendsock, "", 1, MSG_DONTWAIT, (struct sockaddr *)&a, len) < 0 &&
        errno != EAGAIN && errno != ECONNREFUSED && errno != ENOENT)
        xm_debug("sim: wakeup of pid %d: %m", pid);
}

/* new peers to watch: let the liveness thread look now, not in 100 ms */
static void reaper_kick(sim_hv_t *s)
{
    uint64_t one = 1;

    if (s->reaper_started && write(s->reaper_wake, &one, sizeof(one)) < 0)
        xm_debug("sim: reaper wake: %m");
}

/* ---- grants ---- */

/* Read a grant entry as a consistent snapshot (seqlock). */
static int gnt_snapshot(struct sim_gnttab *t, uint32_t ref, struct sim_gnt *out)
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
static int gnt_alloc_entry(sim_hv_t *s, const struct sim_gnt *v, uint32_t *ref)
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

    return gnt_alloc_entry(s, &v, ref);
}

static void gnt_end(sim_hv_t *s, uint32_t ref)
{
    struct sim_gnt *e = &s->gnt->e[ref];
    uint32_t sq = atomic_load(&e->seq);

    /* only this process writes its own entries; odd while changing */
    atomic_store(&e->seq, sq + 1);
    e->active = 0;
    atomic_store_explicit(&e->seq, sq + 2, memory_order_release);
}

static int sim_share(xm_hv_t *hv, uint32_t peer, unsigned count, int writable,
                     int notify_off, int notify_port, void **addr, uint32_t *refs)
{
    sim_hv_t *s = sim(hv);
    struct sim_share *sh;
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
        gnt_end(s, sh->refs[i]);
    munmap(sh->addr, (size_t)count * XM_PAGE_SIZE);
err_fd:
    if (fd >= 0)
        close(fd);
    free(sh);
    return rc;
}

static int sim_unshare(xm_hv_t *hv, void *addr, unsigned count)
{
    sim_hv_t *s = sim(hv);
    struct sim_share **pp, *sh;

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
        gnt_end(s, sh->refs[i]);
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
static int gnt_check(const sim_hv_t *s, const struct sim_gnt *snap, int write)
{
    if (!snap->active || snap->peer != s->base.domid)
        return -EPERM;   /* not granted to us, or ended */
    if (write && snap->readonly)
        return -EACCES;
    return 0;
}

/* Open the memfd behind a checked snapshot of entry ref of table t. */
static int gnt_open_snap(struct sim_gnttab *t, uint32_t ref, int write, int internal_rw,
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

    rc = foreign_tables(s, owner, &t, NULL);
    if (rc)
        return rc;
    rc = gnt_snapshot(t, ref, snap);
    if (rc)
        return rc;
    rc = gnt_check(s, snap, write);
    if (rc)
        return rc;
    if (snap->kind != SIM_GNT_MEMFD)
        return -EOPNOTSUPP;
    return gnt_open_snap(t, ref, write, internal_rw, snap);
}

static int sim_map(xm_hv_t *hv, uint32_t owner, unsigned count, const uint32_t *refs,
                   int writable, int notify_port, void **addr)
{
    sim_hv_t *s = sim(hv);
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
    reaper_kick(s);
    *addr = base;
    return 0;
}

static int sim_unmap(xm_hv_t *hv, void *addr, unsigned count)
{
    sim_hv_t *s = sim(hv);
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

/* ---- grant_mem: existing pages of this process ---- */

/* Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot,
 * which tells a process from a later one that got the same pid. */
static int proc_start_time(int32_t pid, uint64_t *out)
{
    char path[64], buf[1024], *p, *end;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return n < 0 ? -errno : -EIO;
    buf[n] = 0;
    p = strrchr(buf, ')');   /* the command name may hold anything */
    if (!p)
        return -EIO;
    p++;
    for (int f = 3;; f++) {   /* p is at the space before field f */
        if (*p != ' ')
            return -EIO;
        p++;
        if (f == 22)
            break;
        while (*p && *p != ' ')
            p++;
    }
    *out = strtoull(p, &end, 10);
    return end == p ? -EIO : 0;
}

/* Is every page of [a, a + len) mapped?  mincore fails with ENOMEM on a
 * hole; it works on whole system pages. */
static int range_mapped(uintptr_t a, size_t len)
{
    uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = a & ~(ps - 1), hi = (a + len + ps - 1) & ~(ps - 1);
    unsigned char vec[256];

    while (lo < hi) {
        size_t n = (hi - lo) / ps;
        if (n > sizeof(vec))
            n = sizeof(vec);
        if (mincore((void *)lo, n * ps, vec))
            return errno == ENOMEM ? -EFAULT : -errno;
        lo += n * ps;
    }
    return 0;
}

/* Does [a, end) lie in writable mappings without a hole?  /proc/self/maps
 * lists them in address order. */
static int range_writable(uintptr_t a, uintptr_t end)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    int cont = 0;

    if (!f) {
        int rc = -errno;
        xm_error("sim: /proc/self/maps: %m");
        return rc;
    }
    while (a < end && fgets(line, sizeof(line), f)) {
        size_t l = strlen(line);
        int tail = cont;   /* the rest of a line longer than the buffer */
        unsigned long lo, hi;
        char perms[8];

        cont = l && line[l - 1] != '\n';
        if (tail || sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
            continue;
        if (hi <= a)
            continue;
        if (lo > a || perms[1] != 'w')
            break;   /* a hole, or not writable */
        a = hi;
    }
    fclose(f);
    return a >= end ? 0 : -EFAULT;
}

/* Peers copy with process_vm_readv/writev, which needs ptrace access to
 * this process; Yama's ptrace_scope=1 limits that to ancestors unless the
 * process names its tracers.  The sim lets any process of the same user in
 * (without Yama the call fails with EINVAL and nothing changes). */
static void allow_peer_copies(void)
{
    static atomic_int done;

    if (!atomic_exchange(&done, 1) &&
        prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) && errno != EINVAL)
        xm_debug("sim: prctl(PR_SET_PTRACER): %m: peers may fail to copy");
}

static int sim_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr, unsigned count,
                         int writable, uint64_t *handle, uint32_t *refs)
{
    sim_hv_t *s = sim(hv);
    uintptr_t a = (uintptr_t)addr;
    uint32_t nr = atomic_load(&s->gnt->nr_entries);
    struct sim_memgrant *mg;
    size_t len = (size_t)count * XM_PAGE_SIZE;
    unsigned i;
    int rc;

    if (count == 0 || count > nr || a % XM_PAGE_SIZE || a + len < a) {
        xm_error("sim: grant_mem of %u page(s) at %p: %s", count, addr,
                 a % XM_PAGE_SIZE ? "address not page aligned"
                 : count ? "more pages than the grant table holds (XENMPI_SIM_GNTTAB_SIZE)"
                         : "no pages");
        return -EINVAL;
    }
    if (peer >= 0x7ff0 || peer == s->base.domid) {
        xm_error("sim: grant_mem to domain %u: %s", peer,
                 peer == s->base.domid ? "that is this domain" : "not a domain id");
        return -EINVAL;
    }
    rc = range_mapped(a, len);
    if (!rc && writable)
        rc = range_writable(a, a + len);
    if (rc) {
        xm_error("sim: grant_mem of %u page(s) at %p: %s", count, addr,
                 rc == -EFAULT ? (writable ? "not all mapped writable" : "not all mapped")
                               : strerror(-rc));
        return rc;
    }
    pthread_mutex_lock(&s->lock);
    if (!s->start)
        rc = proc_start_time(s->pid, &s->start);
    pthread_mutex_unlock(&s->lock);
    if (rc) {
        xm_error("sim: reading /proc/self/stat: %s", strerror(-rc));
        return rc;
    }
    allow_peer_copies();
    mg = malloc(sizeof(*mg) + count * sizeof(uint32_t));
    if (!mg)
        return -ENOMEM;
    mg->count = count;
    for (i = 0; i < count; i++) {
        struct sim_gnt v = {
            .peer = peer, .readonly = !writable, .fd = -1, .kind = SIM_GNT_USER,
            .vaddr = a + (uintptr_t)i * XM_PAGE_SIZE, .start = s->start,
        };
        rc = gnt_alloc_entry(s, &v, &mg->refs[i]);
        if (rc) {
            xm_debug("sim: grant table of domain %u is full (%u entries, "
                     "XENMPI_SIM_GNTTAB_SIZE): grant_mem of %u page(s) refused",
                     s->base.domid, nr, count);
            while (i-- > 0)
                gnt_end(s, mg->refs[i]);
            free(mg);
            return rc;
        }
    }
    memcpy(refs, mg->refs, count * sizeof(uint32_t));
    mg->addr = a;
    mg->peer = peer;
    pthread_mutex_lock(&s->lock);
    /* as xenmpi_grant: one live grant per page (address) and peer; the
     * check and the insertion are one step under the lock */
    for (struct sim_memgrant *o = s->memgrants; o; o = o->next) {
        if (o->peer == peer && a < o->addr + (uintptr_t)o->count * XM_PAGE_SIZE &&
            o->addr < a + len) {
            pthread_mutex_unlock(&s->lock);
            xm_debug("sim: grant_mem of %u page(s) at %p to domain %u overlaps "
                     "live grant %llu", count, addr, peer, (unsigned long long)o->id);
            for (i = 0; i < count; i++)
                gnt_end(s, mg->refs[i]);
            free(mg);
            return -EEXIST;
        }
    }
    mg->id = ++s->memgrant_ids;
    mg->next = s->memgrants;
    s->memgrants = mg;
    pthread_mutex_unlock(&s->lock);
    *handle = mg->id;
    return 0;
}

static int sim_grant_mem_end(xm_hv_t *hv, uint64_t handle)
{
    sim_hv_t *s = sim(hv);
    struct sim_memgrant **pp, *mg;

    pthread_mutex_lock(&s->lock);
    for (pp = &s->memgrants; (mg = *pp); pp = &mg->next)
        if (mg->id == handle)
            break;
    if (mg)
        *pp = mg->next;
    pthread_mutex_unlock(&s->lock);
    if (!mg)
        return -ENOENT;
    for (unsigned i = 0; i < mg->count; i++)
        gnt_end(s, mg->refs[i]);
    free(mg);
    return 0;
}

/* The slot of owner process (pid, start), found or filled now: filling
 * makes system calls, once per owner process.  -EPERM when that process is
 * gone.  Under s->lock. */
static int owner_get(sim_hv_t *s, int32_t pid, uint64_t start, struct sim_owner **out,
                     uint32_t *gen)
{
    struct sim_owner *o;
    unsigned i, slot = UINT_MAX;
    uint64_t st;
    uint32_t g;
    int pfd;

    for (i = 0; i < s->nowners; i++) {
        o = &s->owners[i];
        if (o->pid == pid && o->start == start) {
            if (atomic_load(&o->dead))
                return -EPERM;
            *out = o;
            *gen = atomic_load(&o->gen);
            return 0;
        }
        if (slot == UINT_MAX && atomic_load(&o->dead))
            slot = i;
    }
    if (s->nowners < SIM_MAX_OWNERS)
        slot = s->nowners;
    if (slot == UINT_MAX) {
        xm_error("sim: grant copies from more than %u live processes", SIM_MAX_OWNERS);
        return -ENOSPC;
    }
    pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int perr = pfd < 0 ? errno : 0;
    if (perr == ESRCH)
        return -EPERM;   /* the owner is gone: its grants died with it */
    /* the pidfd names whoever has the pid now: the start time proves it is
     * the owner (which had the pid before we looked, so it had it then) */
    if (proc_start_time(pid, &st) || st != start) {
        if (pfd >= 0)
            close(pfd);
        return -EPERM;
    }
    o = &s->owners[slot];
    if (o->pidfd >= 0 && slot < s->nowners) {
        epoll_ctl(s->reaper_ep, EPOLL_CTL_DEL, o->pidfd, NULL);
        close(o->pidfd);
    }
    o->pid = pid;
    o->start = start;
    o->pidfd = pfd;
    g = atomic_fetch_add(&o->gen, 1) + 1;
    atomic_store(&o->dead, 0);
    if (slot == s->nowners)
        s->nowners++;
    if (pfd < 0)
        xm_debug("sim: no pidfd for process %d (%s): a reuse of its pid goes unnoticed",
                 pid, strerror(perr));
    else {
        struct epoll_event ev = {
            .events = EPOLLIN, .data.u32 = SIM_OWNER_TAG | (g & 0x7fffu) << 16 | slot,
        };
        if (epoll_ctl(s->reaper_ep, EPOLL_CTL_ADD, pfd, &ev)) {
            xm_debug("sim: watching process %d: %m", pid);
            close(pfd);
            o->pidfd = -1;
        }
    }
    *out = o;
    *gen = g;
    return 0;
}

/* The liveness thread saw an owner's pidfd fire (key from owner_get). */
static void owner_died(sim_hv_t *s, uint32_t key)
{
    unsigned idx = key & 0xffffu;

    pthread_mutex_lock(&s->lock);
    if (idx < s->nowners) {
        struct sim_owner *o = &s->owners[idx];
        if ((atomic_load(&o->gen) & 0x7fffu) == ((key >> 16) & 0x7fffu) && o->pidfd >= 0) {
            atomic_store(&o->dead, 1);
            epoll_ctl(s->reaper_ep, EPOLL_CTL_DEL, o->pidfd, NULL);
            close(o->pidfd);
            o->pidfd = -1;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* Segments on grant_mem entries of one owner process in one direction,
 * waiting to go out as one process_vm_readv/writev. */
struct copy_run {
    unsigned n;
    int to;
    int32_t pid;
    struct sim_gnttab *t;
    struct sim_owner *o;
    uint32_t ogen;
    struct { uint32_t idx, seq; uintptr_t raddr; } seg[SIM_RUN_SEGS];
};

static void run_flush(xm_copy_seg_t *segs, struct copy_run *run)
{
    struct iovec l[SIM_RUN_IOV], r[SIM_RUN_IOV];
    unsigned k = 0, j, end;

    while (k < run->n) {
        unsigned nl = 0, nr = 0;
        size_t total = 0, off = 0;
        ssize_t n = 0;
        int err = 0;

        /* as many segments as fit in IOV_MAX iovecs a side, merging those
         * that continue the previous one's memory */
        for (end = k; end < run->n; end++) {
            xm_copy_seg_t *g = &segs[run->seg[end].idx];
            uintptr_t la = (uintptr_t)g->local, ra = run->seg[end].raddr;
            int jl = nl && (uintptr_t)l[nl - 1].iov_base + l[nl - 1].iov_len == la;
            int jr = nr && (uintptr_t)r[nr - 1].iov_base + r[nr - 1].iov_len == ra;

            if (!g->len)
                continue;
            if ((!jl && nl == SIM_RUN_IOV) || (!jr && nr == SIM_RUN_IOV))
                break;
            if (jl)
                l[nl - 1].iov_len += g->len;
            else
                l[nl++] = (struct iovec){ .iov_base = g->local, .iov_len = g->len };
            if (jr)
                r[nr - 1].iov_len += g->len;
            else
                r[nr++] = (struct iovec){ .iov_base = (void *)ra, .iov_len = g->len };
            total += g->len;
        }
        if (total) {
            n = run->to ? process_vm_writev(run->pid, l, nl, r, nr, 0)
                        : process_vm_readv(run->pid, l, nl, r, nr, 0);
            if (n < 0) {
                err = errno;
                n = 0;
            }
        }
        /* the first n bytes went across, in segment order */
        for (j = k; j < end; j++) {
            xm_copy_seg_t *g = &segs[run->seg[j].idx];
            if (off + g->len > (size_t)n)
                break;
            off += g->len;
            g->status = 0;
        }
        if (j == end) {
            k = end;
            continue;
        }
        if (err && err != EFAULT) {
            /* ESRCH: the owner is gone, its grants died with it; EPERM: we
             * may not reach it (ptrace rules); anything else fails alike */
            int st = err == ESRCH || err == EPERM ? -EPERM : err == ENOMEM ? -ENOMEM : -EIO;
            if (err == ESRCH)
                atomic_store(&run->o->dead, 1);
            else
                xm_debug("sim: %s of process %d: %s", run->to ? "process_vm_writev"
                         : "process_vm_readv", run->pid, strerror(err));
            for (; j < run->n; j++)
                segs[run->seg[j].idx].status = (int16_t)st;
            break;
        }
        /* a fault inside segment j (an owner page no longer mapped, or a
         * bad local buffer): it fails, the others go again */
        segs[run->seg[j].idx].status = -EIO;
        k = j + 1;
    }
    /* ended or reused while we copied, or the owner died: no valid copy */
    for (j = 0; j < run->n; j++) {
        xm_copy_seg_t *g = &segs[run->seg[j].idx];
        if (!g->status &&
            (atomic_load_explicit(&run->t->e[g->ref].seq, memory_order_acquire) !=
                 run->seg[j].seq ||
             atomic_load(&run->o->dead) || atomic_load(&run->o->gen) != run->ogen))
            g->status = -EPERM;
    }
    run->n = 0;
}

static int sim_copy(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned count)
{
    sim_hv_t *s = sim(hv);
    struct sim_gnt snap;
    struct copy_run run;
    /* the last table and owner looked up: the lock only on a change */
    uint32_t m_domid = XM_DOMID_INVALID;
    struct sim_gnttab *t = NULL;
    struct sim_owner *o = NULL;
    int32_t m_pid = 0;
    uint64_t m_start = 0;
    uint32_t ogen = 0;
    int rc;

    run.n = 0;
    for (unsigned i = 0; i < count; i++) {
        xm_copy_seg_t *g = &segs[i];
        int to = g->dir == XM_COPY_TO_FOREIGN;
        int fd;
        ssize_t n;

        if (g->dir > XM_COPY_TO_FOREIGN || (unsigned)g->offset + g->len > XM_PAGE_SIZE) {
            g->status = -EINVAL;
            continue;
        }
        if (g->domid != m_domid || !t) {
            pthread_mutex_lock(&s->lock);
            rc = foreign_tables(s, g->domid, &t, NULL);
            pthread_mutex_unlock(&s->lock);
            if (rc) {
                g->status = (int16_t)rc;
                t = NULL;
                continue;
            }
            m_domid = g->domid;
        }
        rc = gnt_snapshot(t, g->ref, &snap);
        if (!rc)
            rc = gnt_check(s, &snap, to);
        if (rc) {
            g->status = (int16_t)rc;
            continue;
        }
        if (snap.kind != SIM_GNT_USER) {
            /* a memfd page: pread/pwrite on the owner's file, in order */
            if (run.n)
                run_flush(segs, &run);
            fd = gnt_open_snap(t, g->ref, to, 0, &snap);
            if (fd < 0) {
                g->status = (int16_t)fd;
                continue;
            }
            off_t off = (off_t)snap.page * XM_PAGE_SIZE + g->offset;
            n = to ? pwrite(fd, g->local, g->len, off) : pread(fd, g->local, g->len, off);
            g->status = n == (ssize_t)g->len ? 0 : -EIO;
            close(fd);
            continue;
        }
        /* existing memory of the owner process */
        if (!o || snap.pid != m_pid || snap.start != m_start) {
            pthread_mutex_lock(&s->lock);
            rc = owner_get(s, snap.pid, snap.start, &o, &ogen);
            pthread_mutex_unlock(&s->lock);
            if (rc) {
                g->status = (int16_t)rc;
                o = NULL;
                continue;
            }
            m_pid = snap.pid;
            m_start = snap.start;
        }
        if (atomic_load(&o->dead) || atomic_load(&o->gen) != ogen) {
            g->status = -EPERM;
            continue;
        }
        if (run.n && (run.n == SIM_RUN_SEGS || run.to != to || run.o != o ||
                      run.ogen != ogen || run.t != t))
            run_flush(segs, &run);
        if (!run.n) {
            run.to = to;
            run.pid = snap.pid;
            run.t = t;
            run.o = o;
            run.ogen = ogen;
        }
        run.seg[run.n].idx = i;
        run.seg[run.n].seq = snap.seq;
        run.seg[run.n].raddr = (uintptr_t)snap.vaddr + g->offset;
        run.n++;
        g->status = -EIO;   /* until the copy says otherwise */
    }
    if (run.n)
        run_flush(segs, &run);
    for (unsigned i = 0; i < count; i++)
        if (segs[i].status)
            return segs[i].status;
    return 0;
}

/* ---- event channels ---- */

static int port_claim(sim_hv_t *s, uint32_t *port)
{
    for (uint32_t p = 1; p < SIM_MAX_PORTS; p++) {
        struct sim_port *e = &s->ev->p[p];
        uint32_t st = atomic_load(&e->state);

        if (st != PORT_FREE && pid_alive(e->pid))
            continue;
        if (!atomic_compare_exchange_strong(&e->state, &st, PORT_CLAIMED))
            continue;
        e->pid = s->pid;
        e->efd = s->efd_id;
        if (p > s->max_port)
            s->max_port = p;
        atomic_store(&e->pending, 0);
        atomic_store(&e->masked, 0);
        *port = p;
        return 0;
    }
    xm_error("sim: no free event channel port in domain %u", s->base.domid);
    return -ENOSPC;
}

static struct sim_port *my_port(sim_hv_t *s, uint32_t port)
{
    if (port == 0 || port >= SIM_MAX_PORTS || s->ev->p[port].pid != s->pid ||
        atomic_load(&s->ev->p[port].state) == PORT_FREE)
        return NULL;
    return &s->ev->p[port];
}

static int sim_evt_alloc_unbound(xm_hv_t *hv, uint32_t remote, uint32_t *port)
{
    sim_hv_t *s = sim(hv);
    int rc = port_claim(s, port);

    if (rc)
        return rc;
    s->ev->p[*port].remote_dom = remote;
    atomic_store(&s->ev->p[*port].state, PORT_UNBOUND);
    return 0;
}

/* raise a port of some domain: pending, then a wakeup unless masked */
static void port_raise(sim_hv_t *s, struct sim_port *e)
{
    atomic_store(&e->pending, 1);
    if (!atomic_load(&e->masked))
        signal_fd(s, e->pid, e->efd);
}

static int sim_evt_bind(xm_hv_t *hv, uint32_t remote, uint32_t rport, uint32_t *lport)
{
    sim_hv_t *s = sim(hv);
    struct sim_evtab *rt;
    struct sim_port *r;
    uint32_t st = PORT_UNBOUND;
    int rc;

    if (rport == 0 || rport >= SIM_MAX_PORTS)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    rc = foreign_tables(s, remote, NULL, &rt);
    pthread_mutex_unlock(&s->lock);
    if (rc)
        return rc;
    r = &rt->p[rport];
    if (r->remote_dom != s->base.domid || !pid_alive(r->pid) ||
        !atomic_compare_exchange_strong(&r->state, &st, PORT_BINDING))
        return -EINVAL;  /* not unbound for us: Xen says EINVAL too */
    rc = port_claim(s, lport);
    if (rc) {
        atomic_store(&r->state, PORT_UNBOUND);
        return rc;
    }
    struct sim_port *l = &s->ev->p[*lport];
    l->remote_dom = remote;
    atomic_store(&l->remote_port, rport);
    atomic_store(&l->state, PORT_INTERDOMAIN);
    atomic_store(&r->remote_port, *lport);
    atomic_store(&r->state, PORT_INTERDOMAIN);
    /* Xen marks a freshly bound port pending at once. */
    port_raise(s, l);
    reaper_kick(s);
    return 0;
}

static int sim_evt_notify(xm_hv_t *hv, uint32_t port)
{
    sim_hv_t *s = sim(hv);
    struct sim_port *l = my_port(s, port), *r;
    struct sim_evtab *rt;
    uint32_t rp;

    if (!l)
        return -EINVAL;
    if (atomic_load(&l->state) != PORT_INTERDOMAIN)
        return 0;  /* unbound: Xen drops it silently */
    if (s->drop_every && ++s->notify_count % s->drop_every == 0)
        return 0;  /* fault injection: lost notification */
    if (s->delay_us)
        usleep(s->delay_us);
    pthread_mutex_lock(&s->lock);
    if (foreign_tables(s, l->remote_dom, NULL, &rt)) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    rp = atomic_load(&l->remote_port);
    r = rp && rp < SIM_MAX_PORTS ? &rt->p[rp] : NULL;
    if (r && atomic_load(&r->state) == PORT_INTERDOMAIN &&
        r->remote_dom == s->base.domid && atomic_load(&r->remote_port) == port)
        port_raise(s, r);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int sim_evt_fd(xm_hv_t *hv) { return sim(hv)->efd; }

static int sim_evt_pending(xm_hv_t *hv, uint32_t *port)
{
    sim_hv_t *s = sim(hv);
    int found = 0, more = 0;

    wake_drain(s->efd);
    for (uint32_t p = 1; p <= s->max_port; p++) {
        struct sim_port *e = &s->ev->p[p];
        if (e->pid != s->pid || !atomic_load(&e->pending) || atomic_load(&e->masked))
            continue;
        if (found) {
            more = 1;
            break;
        }
        /* delivered: masked until unmask, as the evtchn driver does */
        atomic_store(&e->masked, 1);
        atomic_store(&e->pending, 0);
        *port = p;
        found = 1;
    }
    if (more)
        signal_fd(s, s->pid, s->efd_id);
    return found ? 0 : -EAGAIN;
}

static int sim_evt_unmask(xm_hv_t *hv, uint32_t port)
{
    sim_hv_t *s = sim(hv);
    struct sim_port *l = my_port(s, port);

    if (!l)
        return -EINVAL;
    atomic_store(&l->masked, 0);
    if (atomic_load(&l->pending))
        signal_fd(s, s->pid, s->efd_id);
    return 0;
}

static int sim_evt_close(xm_hv_t *hv, uint32_t port)
{
    sim_hv_t *s = sim(hv);
    struct sim_port *l = my_port(s, port);
    struct sim_evtab *rt;

    if (!l)
        return -EINVAL;
    if (atomic_load(&l->state) == PORT_INTERDOMAIN) {
        uint32_t rp = atomic_load(&l->remote_port);
        pthread_mutex_lock(&s->lock);
        if (!foreign_tables(s, l->remote_dom, NULL, &rt) && rp && rp < SIM_MAX_PORTS) {
            struct sim_port *r = &rt->p[rp];
            uint32_t st = PORT_INTERDOMAIN;
            /* the remote end falls back to unbound, as in Xen */
            if (r->remote_dom == s->base.domid && atomic_load(&r->remote_port) == port)
                atomic_compare_exchange_strong(&r->state, &st, PORT_UNBOUND);
        }
        pthread_mutex_unlock(&s->lock);
    }
    l->pid = 0;
    atomic_store(&l->state, PORT_FREE);
    return 0;
}

/* ---- store ---- */

static void store_lock(sim_hv_t *s)
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

static void store_unlock(sim_hv_t *s)
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

static void watch_fire(sim_hv_t *s, const char *path, const struct sim_node *n)
{
    for (unsigned i = 0; i < SIM_STORE_WATCHES; i++) {
        struct sim_watch *w = &s->store->w[i];
        if (!w->used)
            continue;
        if (!path_under(path, w->path) && !path_under(w->path, path))
            continue;
        if (!pid_alive(w->pid)) {
            w->used = 0;
            continue;
        }
        if (n && !(node_perm(n, w->domid) & XM_PERM_READ))
            continue;   /* watchers only hear of nodes they may read */
        const char *fired = path_under(path, w->path) ? path : w->path;
        if (w->head - w->tail >= SIM_WATCH_QUEUE) {
            w->overflow = 1;  /* collapse: the watched path itself fires */
        } else {
            snprintf(w->q[w->head % SIM_WATCH_QUEUE], XM_STORE_MAX_PATH, "%s", fired);
            w->head++;
        }
        signal_fd(s, w->pid, w->efd);
    }
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
    for (unsigned i = 0; i < SIM_STORE_NODES; i++)
        if (!s->store->n[i].used) {
            n = &s->store->n[i];
            break;
        }
    if (!n) {
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
        struct sim_node *m = NULL;
        for (unsigned i = 0; i < SIM_STORE_NODES; i++)
            if (!s->store->n[i].used) {
                m = &s->store->n[i];
                break;
            }
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

static int sim_store_read(xm_hv_t *hv, const char *path, char **val, size_t *len)
{
    sim_hv_t *s = sim(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    store_lock(s);
    n = node_find(s, path);
    if (!n)
        rc = -ENOENT;
    else if (!(node_perm(n, hv->domid) & XM_PERM_READ))
        rc = -EACCES;
    else if (!(*val = malloc(n->len + 1)))
        rc = -ENOMEM;
    else {
        memcpy(*val, n->value, n->len);
        (*val)[n->len] = 0;
        if (len)
            *len = n->len;
    }
    store_unlock(s);
    return rc;
}

static int sim_store_write(xm_hv_t *hv, const char *path, const void *val, size_t len)
{
    sim_hv_t *s = sim(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    if (strlen(path) + 1 + len > XM_STORE_MAX_VALUE)
        return -E2BIG;   /* xenstored's limit covers path, NUL and value */
    store_lock(s);
    n = node_find(s, path);
    if (n && !(node_perm(n, hv->domid) & XM_PERM_WRITE))
        rc = -EACCES;
    else if (!n && !(n = node_create(s, path)))
        rc = -errno;
    if (!rc) {
        memcpy(n->value, val, len);
        n->len = (uint32_t)len;
        watch_fire(s, path, n);
    }
    store_unlock(s);
    return rc;
}

static int sim_store_remove(xm_hv_t *hv, const char *path)
{
    sim_hv_t *s = sim(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    store_lock(s);
    n = node_find(s, path);
    if (!n)
        rc = -ENOENT;
    else if (!(node_perm(n, hv->domid) & XM_PERM_WRITE))
        rc = -EACCES;
    else {
        /* fire while the permissions can still be seen, as xenstored does */
        watch_fire(s, path, n);
        for (unsigned i = 0; i < SIM_STORE_NODES; i++)
            if (s->store->n[i].used && path_under(s->store->n[i].path, path))
                s->store->n[i].used = 0;
    }
    store_unlock(s);
    return rc;
}

static int sim_store_list(xm_hv_t *hv, const char *path, char ***names, unsigned *count)
{
    sim_hv_t *s = sim(hv);
    struct sim_node *n;
    size_t plen = strlen(path) == 1 ? 0 : strlen(path);
    char **v = NULL;
    unsigned k = 0;
    int rc = 0;

    if (!path_ok(path))
        return -EINVAL;
    store_lock(s);
    n = node_find(s, path);
    if (!n)
        rc = -ENOENT;
    else if (!(node_perm(n, hv->domid) & XM_PERM_READ))
        rc = -EACCES;
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
    store_unlock(s);
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

static int sim_store_set_perms(xm_hv_t *hv, const char *path,
                               const xm_store_perm_t *perms, unsigned count)
{
    sim_hv_t *s = sim(hv);
    struct sim_node *n;
    int rc = 0;

    if (!path_ok(path) || count == 0 || count > XM_STORE_MAX_PERMS)
        return -EINVAL;
    for (unsigned i = 0; i < count; i++)
        if (perms[i].perm > XM_PERM_BOTH)
            return -EINVAL;
    store_lock(s);
    n = node_find(s, path);
    if (!n)
        rc = -ENOENT;
    else if (hv->domid != 0 && n->perms[0].domid != hv->domid)
        rc = -EACCES;   /* only the owner (or dom0) changes permissions */
    else {
        memset(n->perms, 0, sizeof(n->perms));
        memcpy(n->perms, perms, count * sizeof(*perms));
        n->nperms = count;
        watch_fire(s, path, n);
    }
    store_unlock(s);
    return rc;
}

static int sim_store_watch(xm_hv_t *hv, const char *path, const char *token)
{
    sim_hv_t *s = sim(hv);
    struct sim_watch *w = NULL;

    if (!path_ok(path) || strlen(token) >= SIM_TOKEN_MAX)
        return -EINVAL;
    store_lock(s);
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
        signal_fd(s, s->pid, s->wfd_id);
    }
    store_unlock(s);
    return w ? 0 : -ENOSPC;
}

static int sim_store_unwatch(xm_hv_t *hv, const char *path, const char *token)
{
    sim_hv_t *s = sim(hv);
    int rc = -ENOENT;

    store_lock(s);
    for (unsigned i = 0; i < SIM_STORE_WATCHES; i++) {
        struct sim_watch *w = &s->store->w[i];
        if (w->used && w->pid == s->pid && w->efd == s->wfd_id && !strcmp(w->path, path) &&
            !strcmp(w->token, token)) {
            w->used = 0;
            rc = 0;
        }
    }
    store_unlock(s);
    return rc;
}

static int sim_store_watch_fd(xm_hv_t *hv) { return sim(hv)->wfd; }

static int sim_store_read_watch(xm_hv_t *hv, char **path, char **token)
{
    sim_hv_t *s = sim(hv);
    char c;
    int rc = -EAGAIN, more = 0;

    if (recv(s->wfd, &c, 1, MSG_DONTWAIT) < 0)
        return -EAGAIN;   /* nothing fired */
    wake_drain(s->wfd);
    store_lock(s);
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
    store_unlock(s);
    if (more)
        signal_fd(s, s->pid, s->wfd_id);
    return rc;
}

static void store_ensure_home(sim_hv_t *s)
{
    char path[64], val[16];
    struct sim_node *n;

    store_lock(s);
    if (!node_find(s, "/")) {
        n = &s->store->n[0];
        for (unsigned i = 0; i < SIM_STORE_NODES; i++)
            if (!s->store->n[i].used) {
                n = &s->store->n[i];
                break;
            }
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
    store_unlock(s);
}

/* ---- reaper: process death as unmap-notify ---- */

static void reaper_watch_pid(sim_hv_t *s, int32_t pid)
{
    if (pid <= 0 || pid == s->pid)
        return;
    for (unsigned i = 0; i < s->nwatched; i++)
        if (s->watched[i].pid == pid)
            return;
    if (s->nwatched == sizeof(s->watched) / sizeof(s->watched[0]))
        return;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return;
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = s->nwatched + 1 };
    if (epoll_ctl(s->reaper_ep, EPOLL_CTL_ADD, pfd, &ev)) {
        close(pfd);
        return;
    }
    s->watched[s->nwatched].pid = pid;
    s->watched[s->nwatched].pidfd = pfd;
    s->nwatched++;
}

static void reaper_rescan(sim_hv_t *s)
{
    pthread_mutex_lock(&s->lock);
    for (uint32_t p = 1; p <= s->max_port; p++) {
        struct sim_port *e = &s->ev->p[p];
        struct sim_evtab *rt;
        if (e->pid != s->pid || atomic_load(&e->state) != PORT_INTERDOMAIN)
            continue;
        uint32_t rp = atomic_load(&e->remote_port);
        if (rp && rp < SIM_MAX_PORTS && !foreign_tables(s, e->remote_dom, NULL, &rt))
            reaper_watch_pid(s, rt->p[rp].pid);
    }
    for (struct sim_mapping *m = s->maps; m; m = m->next)
        reaper_watch_pid(s, m->owner_pid);
    pthread_mutex_unlock(&s->lock);
}

static void reaper_death(sim_hv_t *s, int32_t pid)
{
    static const uint8_t zero;

    pthread_mutex_lock(&s->lock);
    xm_debug("sim: process %d died: firing its unmap notifications", pid);
    for (struct sim_mapping *m = s->maps; m; m = m->next)
        if (m->owner_pid == pid && m->notify_off >= 0 && m->fd0 >= 0 &&
            pwrite(m->fd0, &zero, 1, (off_t)(m->off0 + (uint64_t)m->notify_off)) != 1)
            xm_debug("sim: clearing notify byte: %m");
    for (uint32_t p = 1; p <= s->max_port; p++) {
        struct sim_port *e = &s->ev->p[p];
        struct sim_evtab *rt;
        if (e->pid != s->pid || atomic_load(&e->state) != PORT_INTERDOMAIN)
            continue;
        uint32_t rp = atomic_load(&e->remote_port);
        if (rp && rp < SIM_MAX_PORTS && !foreign_tables(s, e->remote_dom, NULL, &rt) &&
            rt->p[rp].pid == pid)
            port_raise(s, e);
    }
    pthread_mutex_unlock(&s->lock);
}

static void *reaper_main(void *arg)
{
    sim_hv_t *s = arg;
    struct epoll_event evs[16];
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        int n = epoll_wait(s->reaper_ep, evs, 16, 100);
        for (int i = 0; i < n; i++) {
            uint32_t k = evs[i].data.u32;
            if (k & SIM_OWNER_TAG) {
                owner_died(s, k);
                continue;
            }
            if (k == 0) {
                uint64_t v;
                if (read(s->reaper_wake, &v, sizeof(v)) < 0)
                    continue;
                if (v >= (1ull << 62))
                    return NULL;     /* close() asked us to stop */
                continue;
            }
            k--;
            if (k >= s->nwatched || s->watched[k].pidfd < 0)
                continue;
            epoll_ctl(s->reaper_ep, EPOLL_CTL_DEL, s->watched[k].pidfd, NULL);
            close(s->watched[k].pidfd);
            s->watched[k].pidfd = -1;
            reaper_death(s, s->watched[k].pid);
        }
        reaper_rescan(s);
    }
}

/* ---- open/close ---- */

static int sim_self_domid(xm_hv_t *hv, uint32_t *domid)
{
    *domid = hv->domid;
    return 0;
}

static int sim_host_id(xm_hv_t *hv, char *buf, size_t len)
{
    int n = snprintf(buf, len, "sim:%s", sim(hv)->host);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void sim_close(xm_hv_t *hv);

static int sim_open(xm_hv_t **out)
{
    const char *host = getenv("XENMPI_SIM_HOST");
    struct sim_domains *doms;
    sim_hv_t *s;
    char name[64];
    int rc = -EIO, want;

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
    want = env_uint("XENMPI_SIM_DOMID", UINT_MAX);
    if (want >= 0 && want < 0x7ff0)
        s->base.domid = (uint32_t)want;   /* several processes, one domain */
    else
        s->base.domid = 1 + atomic_fetch_add(&doms->next_domid, 1) % 0x7fe0;
    munmap(doms, 4096);

    snprintf(name, sizeof(name), "gnttab-%u", s->base.domid);
    if (!(s->gnt = map_file(s, name, sizeof(struct sim_gnttab))))
        goto err;
    uint32_t zero = 0, nr = (uint32_t)env_uint("XENMPI_SIM_GNTTAB_SIZE", SIM_MAX_GRANTS);
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
    s->drop_every = (unsigned)env_uint("XENMPI_SIM_DROP_NOTIFY", 0);
    s->delay_us = (unsigned)env_uint("XENMPI_SIM_DELAY_NOTIFY_US", 0);
    store_ensure_home(s);

    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
    if (epoll_ctl(s->reaper_ep, EPOLL_CTL_ADD, s->reaper_wake, &ev) ||
        pthread_create(&s->reaper, NULL, reaper_main, s)) {
        xm_error("sim: starting the liveness thread: %m");
        goto err;
    }
    s->reaper_started = 1;
    xm_debug("sim: domain %u on host %s (pid %d)", s->base.domid, s->host, s->pid);
    *out = &s->base;
    return 0;
err:
    sim_close(&s->base);
    return rc;
}

static void sim_close(xm_hv_t *hv)
{
    sim_hv_t *s = sim(hv);

    if (!s)
        return;
    if (s->reaper_started) {
        uint64_t stop = 1ull << 62;
        if (write(s->reaper_wake, &stop, sizeof(stop)) == sizeof(stop))
            pthread_join(s->reaper, NULL);
        s->reaper_started = 0;
    }
    while (s->maps)
        sim_unmap(hv, s->maps->addr, s->maps->count);
    while (s->shares)
        sim_unshare(hv, s->shares->addr, s->shares->count);
    while (s->memgrants)
        sim_grant_mem_end(hv, s->memgrants->id);
    for (unsigned i = 0; i < s->nowners; i++)
        if (s->owners[i].pidfd >= 0)
            close(s->owners[i].pidfd);
    if (s->ev)
        for (uint32_t p = 1; p < SIM_MAX_PORTS; p++)
            if (s->ev->p[p].pid == s->pid)
                sim_evt_close(hv, p);
    if (s->store) {
        store_lock(s);
        for (unsigned i = 0; i < SIM_STORE_WATCHES; i++)
            if (s->store->w[i].used && s->store->w[i].pid == s->pid)
                s->store->w[i].used = 0;
        store_unlock(s);
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
    for (int *fd = &s->efd; fd <= &s->wfd; fd++)
        if (*fd >= 0)
            close(*fd);
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
    .share = sim_share,
    .unshare = sim_unshare,
    .map = sim_map,
    .unmap = sim_unmap,
    .copy = sim_copy,
    .grant_mem = sim_grant_mem,
    .grant_mem_end = sim_grant_mem_end,
    .evt_alloc_unbound = sim_evt_alloc_unbound,
    .evt_bind = sim_evt_bind,
    .evt_notify = sim_evt_notify,
    .evt_fd = sim_evt_fd,
    .evt_pending = sim_evt_pending,
    .evt_unmask = sim_evt_unmask,
    .evt_close = sim_evt_close,
    .store_read = sim_store_read,
    .store_write = sim_store_write,
    .store_remove = sim_store_remove,
    .store_list = sim_store_list,
    .store_set_perms = sim_store_set_perms,
    .store_watch = sim_store_watch,
    .store_unwatch = sim_store_unwatch,
    .store_watch_fd = sim_store_watch_fd,
    .store_read_watch = sim_store_read_watch,
};
