/*
 * xm_hv_sim_memcopy.c - the sim backend's grant_mem and grant copy.
 *
 * grant_mem entries name existing pages of their owner (pid, start time,
 * address).  Grant copy reads and writes memfd pages with pread/pwrite and
 * existing pages with process_vm_readv/writev, one call per run of
 * segments on one owner; the owner is held as a pidfd the liveness thread
 * watches (xm_hv_sim_reaper.c).
 */
#include "xm_hv_sim_int.h"
#include "xm_log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

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

int xm_sim_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr, unsigned count,
                     int writable, uint64_t *handle, uint32_t *refs)
{
    sim_hv_t *s = to_sim_hv(hv);
    uintptr_t a = (uintptr_t)addr;
    uint32_t nr = atomic_load(&s->gnt->nr_entries);
    struct sim_memgrant *mg;
    size_t len = (size_t)count * XM_PAGE_SIZE;
    unsigned i;
    int rc;

    if (count == 0 || count > nr || a % XM_PAGE_SIZE || a + len < a) {
        /* a peer's grant request sizes it: rate-limited, as the xen
         * backend's report of the module's limits */
        xm_peer_error("sim: grant_mem of %u page(s) at %p: %s", count, addr,
                 a % XM_PAGE_SIZE ? "address not page aligned"
                 : count ? "more pages than the grant table holds (XENMPI_SIM_GNTTAB_SIZE)"
                         : "no pages");
        return -EINVAL;
    }
    if (peer >= XM_DOMID_FIRST_RESERVED || peer == s->base.domid) {
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
        rc = xm_sim_gnt_alloc_entry(s, &v, &mg->refs[i]);
        if (rc) {
            xm_debug("sim: grant table of domain %u is full (%u entries, "
                     "XENMPI_SIM_GNTTAB_SIZE): grant_mem of %u page(s) refused",
                     s->base.domid, nr, count);
            while (i-- > 0)
                xm_sim_gnt_end(s, mg->refs[i]);
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
                xm_sim_gnt_end(s, mg->refs[i]);
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

int xm_sim_grant_mem_end(xm_hv_t *hv, uint64_t handle)
{
    sim_hv_t *s = to_sim_hv(hv);
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
        xm_sim_gnt_end(s, mg->refs[i]);
    free(mg);
    return 0;
}

/* A sim grant names addresses, not pages: a copy reads whatever is mapped
 * there now, so no grant ever shows other memory than its owner's. */
int xm_sim_grant_mem_stale(xm_hv_t *hv, uint64_t *handles, unsigned max)
{
    (void)hv;
    (void)handles;
    (void)max;
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
void xm_sim_owner_died(sim_hv_t *s, uint32_t key)
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

int xm_sim_copy(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned count)
{
    sim_hv_t *s = to_sim_hv(hv);
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

    if (s->copy_delay_us)
        usleep(s->copy_delay_us);
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
            rc = xm_sim_foreign_tables(s, g->domid, &t, NULL);
            pthread_mutex_unlock(&s->lock);
            if (rc) {
                g->status = (int16_t)rc;
                t = NULL;
                continue;
            }
            m_domid = g->domid;
        }
        rc = xm_sim_gnt_snapshot(t, g->ref, &snap);
        if (!rc)
            rc = xm_sim_gnt_check(s, &snap, to);
        if (rc) {
            g->status = (int16_t)rc;
            continue;
        }
        if (snap.kind != SIM_GNT_USER) {
            /* a memfd page: pread/pwrite on the owner's file, in order */
            if (run.n)
                run_flush(segs, &run);
            fd = xm_sim_gnt_open_snap(t, g->ref, to, 0, &snap);
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
