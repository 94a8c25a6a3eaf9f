/*
 * test_sim.c - the sim backend's rules, checked through the public hv API.
 *
 * Every "domain" is a forked child that opens the hv after the fork and then
 * serves commands from the parent over a SOCK_SEQPACKET socketpair: share,
 * map, copy, event-channel and store operations.  The parent drives each
 * scenario and asserts on the results, so every check runs in the cmocka
 * process; a child only reports what the API returned and exits 0 on QUIT
 * (checked by the parent).
 *
 * Each test runs on its own simulated host (XENMPI_SIM_HOST=ut<pid>-<n>) and
 * removes /dev/shm/xenmpi-sim-<host> in its teardown.  Every wait is bounded.
 *
 * grant_mem tests: a child owns plain buffers (OP_BUF_*) it grants with
 * grant_mem, and copies with up to GSEGS_MAX segments between a 2 MiB local
 * buffer and foreign refs (OP_GCOPY).  This file defines process_vm_readv,
 * process_vm_writev, open and kill itself (forwarding to the kernel) so a
 * child can report which of them a copy made.
 */
#undef _FORTIFY_SOURCE   /* open() is defined below */
#include "xm_hv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define CALL_TIMEOUT_MS 10000
#define EXIT_TIMEOUT_MS 5000
#define MAX_SEGS 16
#define MAX_HANDLES 64
#define DATA_MAX 8192
#define GSEGS_MAX 2048             /* segments of one OP_GCOPY */
#define GREFS_MAX 512              /* pages of one OP_GMEM */
#define GBUFS 16                   /* OP_BUF_MAP buffers per child */
#define LBUF 0xffffu               /* "buffer" index of the local copy buffer */
#define LBUF_SIZE (2u << 20)

enum {
    OP_QUIT = 1,
    OP_SHARE, OP_UNSHARE, OP_MAP, OP_UNMAP, OP_FILL, OP_PEEK, OP_COPY,
    OP_WAIT_BYTE, OP_MPROTECT_W,
    OP_EVT_ALLOC, OP_EVT_BIND, OP_EVT_NOTIFY, OP_EVT_POLL, OP_EVT_PENDING,
    OP_EVT_UNMASK, OP_EVT_CLOSE, OP_EVT_TAKE,
    OP_ST_READ, OP_ST_WRITE, OP_ST_REMOVE, OP_ST_LIST, OP_ST_PERMS,
    OP_ST_WATCH, OP_ST_UNWATCH, OP_ST_WPOLL, OP_ST_RWATCH,
    OP_HOST_ID,
    OP_BUF_MAP, OP_BUF_UNMAP, OP_BUF_PROT, OP_BUF_PEEK, OP_PAT_FILL, OP_PAT_CHECK, OP_GMEM, OP_GMEM_END,
    OP_GCOPY,
};

struct gseg {
    uint32_t domid, ref;
    uint16_t offset, len;
    uint32_t loff;   /* in the child's local buffer */
    uint8_t dir;
};

struct seg {
    uint32_t domid, ref;
    uint16_t offset, len, loff;
    uint8_t dir;
};

struct req {
    int op;
    uint32_t a, b, c;
    int32_t d, e;
    uint32_t n;
    uint32_t refs[64];
    struct seg segs[MAX_SEGS];
    xm_store_perm_t perms[XM_STORE_MAX_PERMS];
    char s1[XM_STORE_MAX_PATH], s2[XM_STORE_MAX_PATH];
    uint32_t dlen;
    unsigned char data[DATA_MAX];
    /* grant_mem ops; left out of req_init's clearing */
    uint64_t h64;
    struct gseg gsegs[GSEGS_MAX];
};

struct rep {
    int rc;
    uint32_t n;
    uint32_t v[64];
    int16_t st[MAX_SEGS];
    int64_t t_us;
    char s1[XM_STORE_MAX_PATH], s2[XM_STORE_MAX_PATH];
    uint32_t dlen;
    unsigned char data[DATA_MAX];
    uint64_t h64;
    uint32_t grefs[GREFS_MAX];
    int16_t gst[GSEGS_MAX];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ */
/* calls the sim backend makes, counted (this program's definitions win  */
/* over libc's for the statically linked core)                          */
/* ------------------------------------------------------------------ */

static unsigned long n_pvm, n_pvm_liov, n_pvm_riov, n_open, n_kill;
static int g_pvm_delay_ms;   /* sleep before each process_vm_* call */
static int g_child_fd = -1;  /* a child's command socket */

static void pvm_count(unsigned long nl, unsigned long nr)
{
    if (g_pvm_delay_ms) {
        /* tell the driver the copy is past its checks, once */
        if (g_child_fd >= 0 && send(g_child_fd, "E", 1, 0) != 1)
            _exit(4);
        g_child_fd = -1;
        usleep((useconds_t)g_pvm_delay_ms * 1000);
    }
    n_pvm++;
    if (nl > n_pvm_liov)
        n_pvm_liov = nl;
    if (nr > n_pvm_riov)
        n_pvm_riov = nr;
}

ssize_t process_vm_readv(pid_t pid, const struct iovec *l, unsigned long nl,
                         const struct iovec *r, unsigned long nr, unsigned long flags)
{
    pvm_count(nl, nr);
    return syscall(SYS_process_vm_readv, pid, l, nl, r, nr, flags);
}

ssize_t process_vm_writev(pid_t pid, const struct iovec *l, unsigned long nl,
                          const struct iovec *r, unsigned long nr, unsigned long flags)
{
    pvm_count(nl, nr);
    return syscall(SYS_process_vm_writev, pid, l, nl, r, nr, flags);
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    int mode = 0;

    n_open++;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int kill(pid_t pid, int sig)
{
    n_kill++;
    return (int)syscall(SYS_kill, pid, sig);
}

/* Pattern byte at position p of the stream "seed": differs between
 * neighbouring bytes, pages and seeds. */
static uint8_t gpat(uint32_t seed, size_t p)
{
    return (uint8_t)(seed * 37u + p * 7u + (p >> 12) * 13u + (p >> 8));
}

/* ------------------------------------------------------------------ */
/* the domain side: a forked child serving commands                    */
/* ------------------------------------------------------------------ */

static int poll_in(int fd, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r;

    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : (r > 0 && (p.revents & POLLIN)) ? 1 : 0;
}

struct handle {
    void *addr;
    unsigned count;
};

static struct { unsigned char *addr; size_t len; } g_bufs[GBUFS];
static int g_serve_fd = -1;
static unsigned char *g_lbuf;
static xm_copy_seg_t g_hvsegs[GSEGS_MAX];

/* buffer b (LBUF: the local copy buffer) from off for len, or NULL */
static unsigned char *child_buf(uint32_t b, size_t off, size_t len)
{
    unsigned char *base = b == LBUF ? g_lbuf : b < GBUFS ? g_bufs[b].addr : NULL;
    size_t size = b == LBUF ? LBUF_SIZE : b < GBUFS ? g_bufs[b].len : 0;

    return base && off <= size && len <= size - off ? base + off : NULL;
}

static void child_serve_gmem(xm_hv_t *hv, struct req *rq, struct rep *rp)
{
    unsigned char *p;
    unsigned k;

    switch (rq->op) {
    case OP_BUF_MAP:   /* a pages, prot b, pattern seed c (base 0) */
        for (k = 0; k < GBUFS && g_bufs[k].addr; k++)
            ;
        if (k == GBUFS) {
            rp->rc = -E2BIG;
            break;
        }
        p = mmap(NULL, (size_t)rq->a * XM_PAGE_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            rp->rc = -errno;
            break;
        }
        for (size_t i = 0; i < (size_t)rq->a * XM_PAGE_SIZE; i++)
            p[i] = gpat(rq->c, i);
        if (rq->b != (PROT_READ | PROT_WRITE) && mprotect(p, (size_t)rq->a * XM_PAGE_SIZE,
                                                          (int)rq->b)) {
            rp->rc = -errno;
            break;
        }
        g_bufs[k].addr = p;
        g_bufs[k].len = (size_t)rq->a * XM_PAGE_SIZE;
        rp->n = k;
        break;
    case OP_BUF_UNMAP:   /* buffer a: pages b..b+c-1 go; the buffer stays known */
        p = child_buf(rq->a, (size_t)rq->b * XM_PAGE_SIZE, (size_t)rq->c * XM_PAGE_SIZE);
        rp->rc = !p || rq->a == LBUF ? -ERANGE
                 : munmap(p, (size_t)rq->c * XM_PAGE_SIZE) ? -errno : 0;
        break;
    case OP_BUF_PROT:   /* buffer a: pages b..b+c-1 get protection d */
        p = child_buf(rq->a, (size_t)rq->b * XM_PAGE_SIZE, (size_t)rq->c * XM_PAGE_SIZE);
        rp->rc = !p || rq->a == LBUF ? -ERANGE
                 : mprotect(p, (size_t)rq->c * XM_PAGE_SIZE, rq->d) ? -errno : 0;
        break;
    case OP_BUF_PEEK:   /* buffer a from b for c bytes */
        p = child_buf(rq->a, rq->b, rq->c);
        if (!p || rq->c > DATA_MAX)
            rp->rc = -ERANGE;
        else
            memcpy(rp->data, p, rq->c);
        break;
    case OP_PAT_FILL:    /* buffer a from b for c: pattern seed d from position e */
    case OP_PAT_CHECK:   /* rc 1 and n = first wrong byte when it differs */
        p = child_buf(rq->a, rq->b, rq->c);
        if (!p) {
            rp->rc = -ERANGE;
            break;
        }
        for (size_t i = 0; i < rq->c; i++) {
            uint8_t v = gpat((uint32_t)rq->d, (size_t)(uint32_t)rq->e + i);
            if (rq->op == OP_PAT_FILL)
                p[i] = v;
            else if (p[i] != v) {
                rp->rc = 1;
                rp->n = (uint32_t)i;
                rp->v[0] = p[i];
                rp->v[1] = v;
                break;
            }
        }
        break;
    case OP_GMEM:   /* peer a, buffer b + byte offset d, e pages, writable c */
        if (rq->b >= GBUFS || !g_bufs[rq->b].addr || rq->e < 0 || rq->e > GREFS_MAX) {
            rp->rc = -ERANGE;
            break;
        }
        rp->rc = xm_hv_grant_mem(hv, rq->a, g_bufs[rq->b].addr + rq->d, (unsigned)rq->e,
                                 (int)rq->c, &rp->h64, rp->grefs);
        break;
    case OP_GMEM_END:
        rp->rc = xm_hv_grant_mem_end(hv, rq->h64);
        break;
    case OP_GCOPY:   /* n segments; v[]: process_vm calls, their most iovecs
                      * (local, remote), opens and kills the copy made; d > 0:
                      * sleep d ms before each process_vm call, and send "E"
                      * before the first */
        if (rq->n > GSEGS_MAX) {
            rp->rc = -E2BIG;
            break;
        }
        for (k = 0; k < rq->n; k++) {
            const struct gseg *s = &rq->gsegs[k];
            if ((size_t)s->loff + s->len > LBUF_SIZE) {
                rp->rc = -ERANGE;
                return;
            }
            g_hvsegs[k] = (xm_copy_seg_t){ .local = g_lbuf + s->loff, .domid = s->domid,
                                           .ref = s->ref, .offset = s->offset, .len = s->len,
                                           .dir = s->dir, .status = 0x7fff };
        }
        n_pvm = n_pvm_liov = n_pvm_riov = n_open = n_kill = 0;
        g_pvm_delay_ms = rq->d > 0 ? rq->d : 0;
        g_child_fd = rq->d > 0 ? g_serve_fd : -1;
        rp->rc = xm_hv_copy(hv, g_hvsegs, rq->n);
        g_pvm_delay_ms = 0;
        g_child_fd = -1;
        rp->v[0] = (uint32_t)n_pvm;
        rp->v[1] = (uint32_t)n_pvm_liov;
        rp->v[2] = (uint32_t)n_pvm_riov;
        rp->v[3] = (uint32_t)n_open;
        rp->v[4] = (uint32_t)n_kill;
        for (k = 0; k < rq->n; k++)
            rp->gst[k] = g_hvsegs[k].status;
        break;
    }
}

static void child_serve(xm_hv_t *hv, int fd, struct req *rq, struct rep *rp)
{
    struct handle h[MAX_HANDLES] = { { 0 } };

    g_serve_fd = fd;

    for (;;) {
        ssize_t n = recv(fd, rq, sizeof(*rq), 0);
        if (n != (ssize_t)sizeof(*rq))
            _exit(3);   /* parent gone or protocol error */
        memset(rp, 0, offsetof(struct rep, data));
        int64_t t0;
        void *addr = NULL;
        unsigned k;

        switch (rq->op) {
        case OP_QUIT:
            xm_hv_close(hv);
            rp->rc = 0;
            if (send(fd, rp, sizeof(*rp), 0) != (ssize_t)sizeof(*rp))
                _exit(4);
            _exit(0);
        case OP_SHARE:
            for (k = 0; k < MAX_HANDLES && h[k].addr; k++)
                ;
            if (k == MAX_HANDLES || rq->b > 64) {
                rp->rc = -E2BIG;
                break;
            }
            rp->rc = xm_hv_share(hv, rq->a, rq->b, (int)rq->c, rq->d, rq->e, &addr, rp->v);
            if (rp->rc == 0) {
                h[k].addr = addr;
                h[k].count = rq->b;
                rp->n = k;
            }
            break;
        case OP_MAP:
            for (k = 0; k < MAX_HANDLES && h[k].addr; k++)
                ;
            if (k == MAX_HANDLES || rq->b > 64) {
                rp->rc = -E2BIG;
                break;
            }
            rp->rc = xm_hv_map(hv, rq->a, rq->b, rq->refs, (int)rq->c, rq->e, &addr);
            if (rp->rc == 0) {
                h[k].addr = addr;
                h[k].count = rq->b;
                rp->n = k;
            }
            break;
        case OP_UNSHARE:
        case OP_UNMAP:
            if (rq->a >= MAX_HANDLES || !h[rq->a].addr) {
                rp->rc = -EBADF;
                break;
            }
            rp->rc = rq->op == OP_UNSHARE ? xm_hv_unshare(hv, h[rq->a].addr, h[rq->a].count)
                                          : xm_hv_unmap(hv, h[rq->a].addr, h[rq->a].count);
            if (rp->rc == 0)
                h[rq->a].addr = NULL;
            break;
        case OP_FILL:
        case OP_PEEK:
        case OP_WAIT_BYTE:
        case OP_MPROTECT_W: {
            if (rq->a >= MAX_HANDLES || !h[rq->a].addr) {
                rp->rc = -EBADF;
                break;
            }
            volatile unsigned char *base = h[rq->a].addr;
            size_t size = (size_t)h[rq->a].count * XM_PAGE_SIZE;
            if (rq->op == OP_FILL) {
                if ((size_t)rq->b + rq->dlen > size || rq->dlen > DATA_MAX)
                    rp->rc = -ERANGE;
                else
                    memcpy((void *)(base + rq->b), rq->data, rq->dlen);
            } else if (rq->op == OP_PEEK) {
                if ((size_t)rq->b + rq->c > size || rq->c > DATA_MAX)
                    rp->rc = -ERANGE;
                else {
                    memcpy(rp->data, (const void *)(base + rq->b), rq->c);
                    rp->dlen = rq->c;
                }
            } else if (rq->op == OP_WAIT_BYTE) {
                t0 = now_us();
                rp->rc = -ETIMEDOUT;
                while (now_us() - t0 < (int64_t)rq->d * 1000) {
                    if (base[rq->b] == (unsigned char)rq->c) {
                        rp->rc = 0;
                        break;
                    }
                    usleep(1000);
                }
                rp->t_us = now_us() - t0;
                rp->data[0] = base[rq->b];
            } else {
                /* try to turn a mapping writable behind the API's back */
                if (mprotect((void *)base, size, PROT_READ | PROT_WRITE))
                    rp->rc = -errno;
                else {
                    rp->rc = 0;
                    base[rq->b] = rq->data[0];
                }
            }
            break;
        }
        case OP_COPY: {
            xm_copy_seg_t segs[MAX_SEGS];
            if (rq->n > MAX_SEGS) {
                rp->rc = -E2BIG;
                break;
            }
            for (k = 0; k < rq->n; k++) {
                const struct seg *s = &rq->segs[k];
                if ((size_t)s->loff + s->len > DATA_MAX) {
                    rp->rc = -ERANGE;
                    break;
                }
                segs[k].local = s->dir == XM_COPY_TO_FOREIGN ? (void *)(rq->data + s->loff)
                                                             : (void *)(rp->data + s->loff);
                segs[k].domid = s->domid;
                segs[k].ref = s->ref;
                segs[k].offset = s->offset;
                segs[k].len = s->len;
                segs[k].dir = s->dir;
                segs[k].status = 0x7fff;   /* must be overwritten */
            }
            if (rp->rc)
                break;
            rp->rc = xm_hv_copy(hv, segs, rq->n);
            for (k = 0; k < rq->n; k++)
                rp->st[k] = segs[k].status;
            rp->dlen = DATA_MAX;
            break;
        }
        case OP_EVT_ALLOC:
            rp->rc = xm_hv_evt_alloc_unbound(hv, rq->a, &rp->v[0]);
            break;
        case OP_EVT_BIND:
            rp->rc = xm_hv_evt_bind(hv, rq->a, rq->b, &rp->v[0]);
            break;
        case OP_EVT_NOTIFY:
            t0 = now_us();
            rp->rc = xm_hv_evt_notify(hv, rq->a);
            rp->t_us = now_us() - t0;
            break;
        case OP_EVT_POLL:
            rp->rc = poll_in(xm_hv_evt_fd(hv), rq->d);
            break;
        case OP_EVT_PENDING:
            rp->rc = xm_hv_evt_pending(hv, &rp->v[0]);
            break;
        case OP_EVT_UNMASK:
            rp->rc = xm_hv_evt_unmask(hv, rq->a);
            break;
        case OP_EVT_CLOSE:
            rp->rc = xm_hv_evt_close(hv, rq->a);
            break;
        case OP_EVT_TAKE:
            rp->rc = poll_in(xm_hv_evt_fd(hv), rq->d);
            if (rp->rc == 0) {
                rp->rc = -ETIMEDOUT;
                break;
            }
            if (rp->rc < 0)
                break;
            rp->rc = xm_hv_evt_pending(hv, &rp->v[0]);
            if (rp->rc == 0)
                rp->rc = xm_hv_evt_unmask(hv, rp->v[0]);
            break;
        case OP_ST_READ: {
            char *val = NULL;
            size_t len = 0;
            rp->rc = xm_store_read(hv, rq->s1, &val, &len);
            if (rp->rc == 0) {
                if (len >= DATA_MAX || val[len] != 0)
                    rp->rc = -EPROTO;
                else {
                    memcpy(rp->data, val, len + 1);
                    rp->dlen = (uint32_t)len;
                }
                free(val);
            }
            break;
        }
        case OP_ST_WRITE:
            rp->rc = xm_store_write(hv, rq->s1, rq->data, rq->dlen);
            break;
        case OP_ST_REMOVE:
            rp->rc = xm_store_remove(hv, rq->s1);
            break;
        case OP_ST_LIST: {
            char **names = NULL;
            unsigned cnt = 0;
            size_t off = 1;
            rp->rc = xm_store_list(hv, rq->s1, &names, &cnt);
            if (rp->rc)
                break;
            rp->data[0] = '\n';
            for (k = 0; k < cnt; k++) {
                size_t l = strlen(names[k]);
                if (off + l + 2 < DATA_MAX) {
                    memcpy(rp->data + off, names[k], l);
                    off += l;
                    rp->data[off++] = '\n';
                }
                free(names[k]);
            }
            free(names);
            rp->data[off] = 0;
            rp->n = cnt;
            rp->dlen = (uint32_t)off;
            break;
        }
        case OP_ST_PERMS:
            rp->rc = xm_store_set_perms(hv, rq->s1, rq->perms, rq->n);
            break;
        case OP_ST_WATCH:
            rp->rc = xm_store_watch(hv, rq->s1, rq->s2);
            break;
        case OP_ST_UNWATCH:
            rp->rc = xm_store_unwatch(hv, rq->s1, rq->s2);
            break;
        case OP_ST_WPOLL:
            rp->rc = poll_in(xm_store_watch_fd(hv), rq->d);
            break;
        case OP_ST_RWATCH: {
            char *p = NULL, *t = NULL;
            rp->rc = xm_store_read_watch(hv, &p, &t);
            if (rp->rc == 0) {
                snprintf(rp->s1, sizeof(rp->s1), "%s", p);
                snprintf(rp->s2, sizeof(rp->s2), "%s", t);
                free(p);
                free(t);
            }
            break;
        }
        case OP_BUF_MAP:
        case OP_BUF_UNMAP:
        case OP_BUF_PROT:
        case OP_BUF_PEEK:
        case OP_PAT_FILL:
        case OP_PAT_CHECK:
        case OP_GMEM:
        case OP_GMEM_END:
        case OP_GCOPY:
            child_serve_gmem(hv, rq, rp);
            break;
        case OP_HOST_ID: {
            char buf[XM_STORE_MAX_PATH];
            size_t len = rq->b ? rq->b : sizeof(buf);
            rp->rc = xm_hv_host_id(hv, buf, len > sizeof(buf) ? sizeof(buf) : len);
            if (rp->rc == 0)
                snprintf(rp->s1, sizeof(rp->s1), "%s", buf);
            break;
        }
        default:
            rp->rc = -ENOSYS;
        }
        if (send(fd, rp, sizeof(*rp), 0) != (ssize_t)sizeof(*rp))
            _exit(4);
    }
}

static void child_main(int fd, const char *const *env)
{
    struct req *rq = malloc(sizeof(*rq));
    struct rep *rp = calloc(1, sizeof(*rp));
    xm_hv_t *hv = NULL;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    g_lbuf = malloc(LBUF_SIZE);
    if (getppid() == 1 || !rq || !rp || !g_lbuf)
        _exit(5);
    for (; env && *env; env++) {
        const char *eq = strchr(*env, '=');
        if (eq) {
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)(eq - *env), *env);
            setenv(name, eq + 1, 1);
        } else
            unsetenv(*env);
    }
    rp->rc = xm_hv_open(&hv);
    rp->v[0] = rp->rc == 0 ? xm_hv_domid(hv) : XM_DOMID_INVALID;
    if (send(fd, rp, sizeof(*rp), 0) != (ssize_t)sizeof(*rp))
        _exit(4);
    if (rp->rc)
        _exit(0);
    child_serve(hv, fd, rq, rp);
    _exit(6);
}

/* ------------------------------------------------------------------ */
/* the driver side                                                     */
/* ------------------------------------------------------------------ */

typedef struct dom {
    pid_t pid;
    int fd;
    uint32_t domid;
    int open_rc;
} dom_t;

static struct req *RQ;
static struct rep *RP;
static char g_host[64], g_host2[80];
static struct { pid_t pid; int fd; } g_kids[16];

static int recv_timeout(int fd, struct rep *rp, int timeout_ms)
{
    if (poll_in(fd, timeout_ms) != 1)
        return -ETIMEDOUT;
    return recv(fd, rp, sizeof(*rp), 0) == (ssize_t)sizeof(*rp) ? 0 : -EPIPE;
}

static void dom_start(dom_t *d, const char *const *env)
{
    int sv[2];
    pid_t pid;
    unsigned slot;

    for (slot = 0; slot < 16 && g_kids[slot].pid; slot++)
        ;
    assert_true(slot < 16);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (unsigned i = 0; i < 16; i++)
            if (g_kids[i].pid)
                close(g_kids[i].fd);
        close(sv[0]);
        child_main(sv[1], env);
        _exit(7);
    }
    close(sv[1]);
    g_kids[slot].pid = pid;
    g_kids[slot].fd = sv[0];
    d->pid = pid;
    d->fd = sv[0];
    assert_int_equal(recv_timeout(d->fd, RP, CALL_TIMEOUT_MS), 0);
    d->open_rc = RP->rc;
    d->domid = RP->v[0];
}

static int wait_exit(pid_t pid, int *status, int timeout_ms)
{
    int64_t t0 = now_us();

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0)
            return -errno;
        if (now_us() - t0 > (int64_t)timeout_ms * 1000)
            return -ETIMEDOUT;
        usleep(2000);
    }
}

static void kid_forget(pid_t pid)
{
    for (unsigned i = 0; i < 16; i++)
        if (g_kids[i].pid == pid) {
            close(g_kids[i].fd);
            g_kids[i].pid = 0;
        }
}

/* a domain must open; start it and check */
static void dom_up(dom_t *d, const char *const *env)
{
    dom_start(d, env);
    assert_int_equal(d->open_rc, 0);
    assert_true(d->domid != XM_DOMID_INVALID);
}

static void req_init(int op)
{
    memset(RQ, 0, offsetof(struct req, data));
    RQ->op = op;
    RQ->d = RQ->e = -1;
}

static int call(dom_t *d)
{
    assert_int_equal(send(d->fd, RQ, sizeof(*RQ), 0), (ssize_t)sizeof(*RQ));
    assert_int_equal(recv_timeout(d->fd, RP, CALL_TIMEOUT_MS), 0);
    return RP->rc;
}

static void dom_quit(dom_t *d)
{
    int status = 0;

    req_init(OP_QUIT);
    assert_int_equal(call(d), 0);
    assert_int_equal(wait_exit(d->pid, &status, EXIT_TIMEOUT_MS), 0);
    kid_forget(d->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void dom_kill(dom_t *d)
{
    int status = 0;

    assert_int_equal(kill(d->pid, SIGKILL), 0);
    assert_int_equal(wait_exit(d->pid, &status, EXIT_TIMEOUT_MS), 0);
    kid_forget(d->pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
}

/* grants */
static int d_share(dom_t *d, uint32_t peer, unsigned count, int wr, int noff, int nport,
                   uint32_t *refs, int *h)
{
    req_init(OP_SHARE);
    RQ->a = peer;
    RQ->b = count;
    RQ->c = (uint32_t)wr;
    RQ->d = noff;
    RQ->e = nport;
    int rc = call(d);
    if (rc == 0) {
        memcpy(refs, RP->v, count * sizeof(uint32_t));
        *h = (int)RP->n;
    }
    return rc;
}

static int d_hop(dom_t *d, int op, int h)
{
    req_init(op);
    RQ->a = (uint32_t)h;
    return call(d);
}
#define d_unshare(d, h) d_hop((d), OP_UNSHARE, (h))
#define d_unmap(d, h) d_hop((d), OP_UNMAP, (h))

static int d_map(dom_t *d, uint32_t owner, unsigned count, const uint32_t *refs, int wr,
                 int nport, int *h)
{
    req_init(OP_MAP);
    RQ->a = owner;
    RQ->b = count;
    RQ->c = (uint32_t)wr;
    RQ->e = nport;
    memcpy(RQ->refs, refs, count * sizeof(uint32_t));
    int rc = call(d);
    if (rc == 0)
        *h = (int)RP->n;
    return rc;
}

static void d_fill(dom_t *d, int h, unsigned off, const void *buf, unsigned len)
{
    req_init(OP_FILL);
    RQ->a = (uint32_t)h;
    RQ->b = off;
    RQ->dlen = len;
    memcpy(RQ->data, buf, len);
    assert_int_equal(call(d), 0);
}

static void d_fills(dom_t *d, int h, unsigned off, const char *s)
{
    d_fill(d, h, off, s, (unsigned)strlen(s) + 1);
}

static void d_peek(dom_t *d, int h, unsigned off, unsigned len, void *out)
{
    req_init(OP_PEEK);
    RQ->a = (uint32_t)h;
    RQ->b = off;
    RQ->c = len;
    assert_int_equal(call(d), 0);
    memcpy(out, RP->data, len);
}

/* one-segment copy; FROM: result into out; TO: data from in */
static int d_copy1(dom_t *d, uint32_t domid, uint32_t ref, unsigned off, unsigned len,
                   int dir, const void *in, void *out)
{
    req_init(OP_COPY);
    RQ->n = 1;
    RQ->segs[0] = (struct seg){ .domid = domid, .ref = ref, .offset = (uint16_t)off,
                                .len = (uint16_t)len, .loff = 0, .dir = (uint8_t)dir };
    if (in)
        memcpy(RQ->data, in, len);
    int rc = call(d);
    assert_int_equal(RP->st[0], rc);   /* single segment: rc is its status */
    if (out)
        memcpy(out, RP->data, len);
    return rc;
}

/* grant_mem: buffers of a child, grants of them, big copies */
static int d_bufmap(dom_t *d, unsigned pages, int prot, unsigned seed)
{
    req_init(OP_BUF_MAP);
    RQ->a = pages;
    RQ->b = (uint32_t)prot;
    RQ->c = seed;
    assert_int_equal(call(d), 0);
    return (int)RP->n;
}

static void d_bufunmap(dom_t *d, int b, unsigned first, unsigned n)
{
    req_init(OP_BUF_UNMAP);
    RQ->a = (uint32_t)b;
    RQ->b = first;
    RQ->c = n;
    assert_int_equal(call(d), 0);
}

static void d_bufprot(dom_t *d, int b, unsigned first, unsigned n, int prot)
{
    req_init(OP_BUF_PROT);
    RQ->a = (uint32_t)b;
    RQ->b = first;
    RQ->c = n;
    RQ->d = prot;
    assert_int_equal(call(d), 0);
}

static void d_bufpeek(dom_t *d, unsigned b, size_t off, size_t len, void *out)
{
    req_init(OP_BUF_PEEK);
    RQ->a = b;
    RQ->b = (uint32_t)off;
    RQ->c = (uint32_t)len;
    assert_int_equal(call(d), 0);
    memcpy(out, RP->data, len);
}

static void d_pat(dom_t *d, int op, unsigned b, size_t off, size_t len, unsigned seed,
                  size_t base, int line)
{
    req_init(op);
    RQ->a = b;
    RQ->b = (uint32_t)off;
    RQ->c = (uint32_t)len;
    RQ->d = (int32_t)seed;
    RQ->e = (int32_t)base;
    int rc = call(d);
    if (rc == 1)
        fail_msg("line %d: buffer %u byte %zu is %u, expected %u (seed %u)", line, b,
                 off + RP->n, RP->v[0], RP->v[1], seed);
    assert_int_equal(rc, 0);
}
/* fill / check buffer b's [off, off + len) with pattern seed from position base */
#define d_patfill(d, b, off, len, seed, base) \
    d_pat((d), OP_PAT_FILL, (b), (off), (len), (seed), (base), __LINE__)
#define d_patcheck(d, b, off, len, seed, base) \
    d_pat((d), OP_PAT_CHECK, (b), (off), (len), (seed), (base), __LINE__)

static int d_gmem(dom_t *d, uint32_t peer, int b, unsigned byte_off, unsigned count, int wr,
                  uint64_t *h, uint32_t *refs)
{
    req_init(OP_GMEM);
    RQ->a = peer;
    RQ->b = (uint32_t)b;
    RQ->c = (uint32_t)wr;
    RQ->d = (int32_t)byte_off;
    RQ->e = (int32_t)count;
    int rc = call(d);
    if (rc == 0) {
        *h = RP->h64;
        if (refs)
            memcpy(refs, RP->grefs, count * sizeof(uint32_t));
    }
    return rc;
}

static int d_gmem_end(dom_t *d, uint64_t h)
{
    req_init(OP_GMEM_END);
    RQ->h64 = h;
    return call(d);
}

/* build an OP_GCOPY request segment by segment, then d_gcopy() */
static unsigned g_nseg;
static void gcopy_init(void)
{
    req_init(OP_GCOPY);
    g_nseg = 0;
}

static void gseg(uint32_t domid, uint32_t ref, unsigned off, unsigned len, size_t loff, int dir)
{
    assert_true(g_nseg < GSEGS_MAX);
    RQ->gsegs[g_nseg++] = (struct gseg){ .domid = domid, .ref = ref, .offset = (uint16_t)off,
                                         .len = (uint16_t)len, .loff = (uint32_t)loff,
                                         .dir = (uint8_t)dir };
}

struct gstats {
    unsigned pvm, liov, riov, opens, kills;
    int16_t st[GSEGS_MAX];
};

/* the copy; statuses and what it cost in *gs (may be NULL) */
static int d_gcopy_reply(struct gstats *gs)
{
    int rc = RP->rc;
    for (unsigned i = 0; i < g_nseg; i++)
        assert_true(RP->gst[i] != 0x7fff);   /* every status written */
    if (gs) {
        gs->pvm = RP->v[0];
        gs->liov = RP->v[1];
        gs->riov = RP->v[2];
        gs->opens = RP->v[3];
        gs->kills = RP->v[4];
        memcpy(gs->st, RP->gst, g_nseg * sizeof(int16_t));
    }
    return rc;
}

static int d_gcopy(dom_t *d, struct gstats *gs)
{
    RQ->n = g_nseg;
    call(d);
    return d_gcopy_reply(gs);
}

/* start the copy with delay_ms before each system call and return once it
 * is past its checks, in the first call's delay; d_gcopy_end() collects it
 * (other domains may be driven meanwhile) */
static void d_gcopy_start(dom_t *d, int delay_ms)
{
    char e = 0;

    RQ->n = g_nseg;
    RQ->d = delay_ms;
    assert_int_equal(send(d->fd, RQ, sizeof(*RQ), 0), (ssize_t)sizeof(*RQ));
    assert_int_equal(poll_in(d->fd, CALL_TIMEOUT_MS), 1);
    assert_int_equal(recv(d->fd, &e, 1, 0), 1);
    assert_int_equal(e, 'E');
}

static int d_gcopy_end(dom_t *d, struct gstats *gs)
{
    assert_int_equal(recv_timeout(d->fd, RP, CALL_TIMEOUT_MS), 0);
    return d_gcopy_reply(gs);
}

/* one segment through OP_GCOPY; local buffer offset loff */
static int d_gcopy1(dom_t *d, uint32_t domid, uint32_t ref, unsigned off, unsigned len,
                    size_t loff, int dir)
{
    struct gstats gs;

    gcopy_init();
    gseg(domid, ref, off, len, loff, dir);
    int rc = d_gcopy(d, &gs);
    assert_int_equal(gs.st[0], rc);
    return rc;
}

/* events */
static int d_evt(dom_t *d, int op, uint32_t a, uint32_t b, uint32_t *port)
{
    req_init(op);
    RQ->a = a;
    RQ->b = b;
    int rc = call(d);
    if (port && rc == 0)
        *port = RP->v[0];
    return rc;
}
#define d_alloc(d, remote, port) d_evt((d), OP_EVT_ALLOC, (remote), 0, (port))
#define d_bind(d, remote, rport, port) d_evt((d), OP_EVT_BIND, (remote), (rport), (port))
#define d_notify(d, port) d_evt((d), OP_EVT_NOTIFY, (port), 0, NULL)
#define d_pending(d, port) d_evt((d), OP_EVT_PENDING, 0, 0, (port))
#define d_unmask(d, port) d_evt((d), OP_EVT_UNMASK, (port), 0, NULL)
#define d_close(d, port) d_evt((d), OP_EVT_CLOSE, (port), 0, NULL)

static int d_timed(dom_t *d, int op, int timeout_ms, uint32_t *port)
{
    req_init(op);
    RQ->d = timeout_ms;
    int rc = call(d);
    if (port)
        *port = RP->v[0];
    return rc;
}
#define d_evpoll(d, ms) d_timed((d), OP_EVT_POLL, (ms), NULL)
#define d_take(d, ms, port) d_timed((d), OP_EVT_TAKE, (ms), (port))
#define d_wpoll(d, ms) d_timed((d), OP_ST_WPOLL, (ms), NULL)

/* store */
static int d_spath(dom_t *d, int op, const char *path, const char *s2)
{
    req_init(op);
    snprintf(RQ->s1, sizeof(RQ->s1), "%s", path);
    if (s2)
        snprintf(RQ->s2, sizeof(RQ->s2), "%s", s2);
    return call(d);
}
#define d_remove(d, p) d_spath((d), OP_ST_REMOVE, (p), NULL)
#define d_watch(d, p, t) d_spath((d), OP_ST_WATCH, (p), (t))
#define d_unwatch(d, p, t) d_spath((d), OP_ST_UNWATCH, (p), (t))

/* returns rc; on success the value is in RP->data (NUL-terminated) */
#define d_read(d, p) d_spath((d), OP_ST_READ, (p), NULL)
/* on success RP->data is "\nname1\nname2\n" */
#define d_list(d, p) d_spath((d), OP_ST_LIST, (p), NULL)

static int d_write(dom_t *d, const char *path, const char *val)
{
    req_init(OP_ST_WRITE);
    snprintf(RQ->s1, sizeof(RQ->s1), "%s", path);
    RQ->dlen = (uint32_t)strlen(val);
    memcpy(RQ->data, val, RQ->dlen);
    return call(d);
}

static int d_perms(dom_t *d, const char *path, unsigned n, const xm_store_perm_t *p)
{
    req_init(OP_ST_PERMS);
    snprintf(RQ->s1, sizeof(RQ->s1), "%s", path);
    RQ->n = n;
    memcpy(RQ->perms, p, n * sizeof(*p));
    return call(d);
}

/* next fired watch within timeout: 0 and path/token, or -ETIMEDOUT/-EAGAIN */
static int d_next_watch(dom_t *d, int timeout_ms, char *path, char *token)
{
    int64_t t0 = now_us();

    for (;;) {
        int rc = d_timed(d, OP_ST_RWATCH, 0, NULL);
        if (rc == 0) {
            strcpy(path, RP->s1);
            strcpy(token, RP->s2);
            return 0;
        }
        if (rc != -EAGAIN)
            return rc;
        int left = timeout_ms - (int)((now_us() - t0) / 1000);
        if (left <= 0)
            return -ETIMEDOUT;
        if (d_wpoll(d, left) != 1)
            return -ETIMEDOUT;
    }
}

static void expect_watch(dom_t *d, const char *path, const char *token)
{
    char p[XM_STORE_MAX_PATH], t[XM_STORE_MAX_PATH];

    assert_int_equal(d_next_watch(d, 2000, p, t), 0);
    assert_string_equal(p, path);
    assert_string_equal(t, token);
}

static void expect_no_watch_at(dom_t *d, int wait_ms, int line)
{
    char p[XM_STORE_MAX_PATH], t[XM_STORE_MAX_PATH];
    int rc = d_next_watch(d, wait_ms, p, t);

    if (rc == 0)
        fail_msg("line %d: unexpected watch event path=%s token=%s", line, p, t);
    assert_int_equal(rc, -ETIMEDOUT);
}
#define expect_no_watch(d, ms) expect_no_watch_at((d), (ms), __LINE__)

/* drain everything queued (bounded) */
static void drain_watches(dom_t *d)
{
    char p[XM_STORE_MAX_PATH], t[XM_STORE_MAX_PATH];
    for (int i = 0; i < 64 && d_next_watch(d, 100, p, t) == 0; i++)
        ;
}

static void home(char *buf, size_t len, uint32_t domid, const char *rest)
{
    snprintf(buf, len, "/local/domain/%u%s%s", domid, rest[0] ? "/" : "", rest);
}

static uint8_t pat(unsigned page, unsigned i)
{
    return (uint8_t)(page * 31 + i * 7 + 1);
}

/* ------------------------------------------------------------------ */
/* fixtures                                                            */
/* ------------------------------------------------------------------ */

static void rm_host(const char *host)
{
    char dir[PATH_MAX], path[PATH_MAX + 300];
    DIR *dp;
    struct dirent *de;

    if (!host[0])
        return;
    snprintf(dir, sizeof(dir), "/dev/shm/xenmpi-sim-%s", host);
    if (!(dp = opendir(dir)))
        return;
    while ((de = readdir(dp)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
    closedir(dp);
    rmdir(dir);
}

static int host_exists(const char *host)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "/dev/shm/xenmpi-sim-%s", host);
    return access(dir, F_OK) == 0;
}

static int setup(void **state)
{
    static int n;

    (void)state;
    snprintf(g_host, sizeof(g_host), "ut%d-%d", (int)getpid(), ++n);
    g_host2[0] = 0;
    rm_host(g_host);
    setenv("XENMPI_BACKEND", "sim", 1);
    setenv("XENMPI_SIM_HOST", g_host, 1);
    unsetenv("XENMPI_SIM_DOMID");
    unsetenv("XENMPI_SIM_GNTTAB_SIZE");
    unsetenv("XENMPI_SIM_DROP_NOTIFY");
    unsetenv("XENMPI_SIM_DELAY_NOTIFY_US");
    unsetenv("XENMPI_HOST_ID");
    memset(g_kids, 0, sizeof(g_kids));
    return 0;
}

static int teardown(void **state)
{
    int status;

    (void)state;
    for (unsigned i = 0; i < 16; i++)
        if (g_kids[i].pid) {
            kill(g_kids[i].pid, SIGKILL);
            wait_exit(g_kids[i].pid, &status, EXIT_TIMEOUT_MS);
            close(g_kids[i].fd);
            g_kids[i].pid = 0;
        }
    rm_host(g_host);
    rm_host(g_host2);
    if (host_exists(g_host) || (g_host2[0] && host_exists(g_host2)))
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* 1. a ref works only for the domain it was granted to                */
/* ------------------------------------------------------------------ */
static void test_grant_only_to_peer(void **state)
{
    dom_t a, b, c;
    uint32_t ref;
    int ha, hb, hc;
    char buf[64];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    dom_up(&c, NULL);
    assert_true(a.domid != b.domid && b.domid != c.domid && a.domid != c.domid);

    assert_int_equal(d_share(&a, b.domid, 1, 1, -1, -1, &ref, &ha), 0);
    d_fills(&a, ha, 100, "hello-from-A");

    /* the third domain: neither map nor copy, either direction */
    assert_true(d_map(&c, a.domid, 1, &ref, 0, -1, &hc) < 0);
    assert_true(d_map(&c, a.domid, 1, &ref, 1, -1, &hc) < 0);
    assert_true(d_copy1(&c, a.domid, ref, 100, 13, XM_COPY_FROM_FOREIGN, NULL, buf) < 0);
    assert_true(d_copy1(&c, a.domid, ref, 100, 5, XM_COPY_TO_FOREIGN, "EVIL", NULL) < 0);
    /* the owner's own ref, named with the wrong owner, is nothing */
    assert_true(d_map(&b, c.domid, 1, &ref, 0, -1, &hb) < 0);

    /* the granted peer: both map and copy, correct content */
    assert_int_equal(d_copy1(&b, a.domid, ref, 100, 13, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
    assert_string_equal(buf, "hello-from-A");
    assert_int_equal(d_map(&b, a.domid, 1, &ref, 1, -1, &hb), 0);
    d_peek(&b, hb, 100, 13, buf);
    assert_string_equal(buf, "hello-from-A");
    /* writes through the mapping land in the owner's page */
    d_fills(&b, hb, 200, "B-was-here");
    d_peek(&a, ha, 200, 11, buf);
    assert_string_equal(buf, "B-was-here");
    assert_int_equal(d_copy1(&b, a.domid, ref, 300, 6, XM_COPY_TO_FOREIGN, "copy!", NULL), 0);
    d_peek(&a, ha, 300, 6, buf);
    assert_string_equal(buf, "copy!");
    /* C's failed write left nothing behind */
    d_peek(&a, ha, 100, 13, buf);
    assert_string_equal(buf, "hello-from-A");

    assert_int_equal(d_unmap(&b, hb), 0);
    assert_int_equal(d_unshare(&a, ha), 0);
    dom_quit(&a);
    dom_quit(&b);
    dom_quit(&c);
}

/* ------------------------------------------------------------------ */
/* 2. read-only grants                                                 */
/* ------------------------------------------------------------------ */
static void test_grant_readonly(void **state)
{
    dom_t a, b;
    uint32_t ref;
    int ha, hb;
    char buf[64];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    assert_int_equal(d_share(&a, b.domid, 1, 0, -1, -1, &ref, &ha), 0);
    d_fills(&a, ha, 0, "read-only-content");

    assert_true(d_map(&b, a.domid, 1, &ref, 1, -1, &hb) < 0);
    assert_true(d_copy1(&b, a.domid, ref, 0, 6, XM_COPY_TO_FOREIGN, "XXXXX", NULL) < 0);
    d_peek(&a, ha, 0, 18, buf);
    assert_string_equal(buf, "read-only-content");

    assert_int_equal(d_map(&b, a.domid, 1, &ref, 0, -1, &hb), 0);
    d_peek(&b, hb, 0, 18, buf);
    assert_string_equal(buf, "read-only-content");
    assert_int_equal(d_copy1(&b, a.domid, ref, 5, 4, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
    assert_memory_equal(buf, "only", 4);
    /* the owner's later writes are visible through the read-only mapping */
    d_fills(&a, ha, 0, "updated-by-owner");
    d_peek(&b, hb, 0, 17, buf);
    assert_string_equal(buf, "updated-by-owner");

    assert_int_equal(d_unmap(&b, hb), 0);
    assert_int_equal(d_unshare(&a, ha), 0);
    dom_quit(&a);
    dom_quit(&b);
}

/* 2b. a read-only mapping cannot be turned writable with mprotect: on Xen
 * the page-table entry of a read-only grant mapping can never be writable. */
static void test_grant_readonly_mprotect(void **state)
{
    dom_t a, b;
    uint32_t ref;
    int ha = -1, hb = -1;
    char buf[64];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    assert_int_equal(d_share(&a, b.domid, 1, 0, -1, -1, &ref, &ha), 0);
    d_fills(&a, ha, 0, "read-only-content");
    assert_int_equal(d_map(&b, a.domid, 1, &ref, 0, -1, &hb), 0);

    req_init(OP_MPROTECT_W);
    RQ->a = (uint32_t)hb;
    RQ->b = 0;
    RQ->data[0] = 'X';
    int rc = call(&b);
    d_peek(&a, ha, 0, 18, buf);
    assert_string_equal(buf, "read-only-content");   /* the owner's page is intact */
    assert_true(rc < 0);                              /* and mprotect was refused */

    assert_int_equal(d_unmap(&b, hb), 0);
    assert_int_equal(d_unshare(&a, ha), 0);
    dom_quit(&a);
    dom_quit(&b);
}

/* ------------------------------------------------------------------ */
/* 3. ended grants                                                     */
/* ------------------------------------------------------------------ */
static void test_grant_ended(void **state)
{
    dom_t a, b;
    uint32_t refs[2];
    int ha, hb;
    char buf[64];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    assert_int_equal(d_share(&a, b.domid, 2, 1, -1, -1, refs, &ha), 0);
    d_fills(&a, ha, 0, "before-end");
    assert_int_equal(d_map(&b, a.domid, 2, refs, 1, -1, &hb), 0);
    assert_int_equal(d_unmap(&b, hb), 0);
    assert_int_equal(d_copy1(&b, a.domid, refs[1], 0, 4, XM_COPY_FROM_FOREIGN, NULL, buf), 0);

    assert_int_equal(d_unshare(&a, ha), 0);

    for (int i = 0; i < 2; i++) {
        assert_true(d_map(&b, a.domid, 1, &refs[i], 0, -1, &hb) < 0);
        assert_true(d_map(&b, a.domid, 1, &refs[i], 1, -1, &hb) < 0);
        assert_true(d_copy1(&b, a.domid, refs[i], 0, 4, XM_COPY_FROM_FOREIGN, NULL, buf) < 0);
        assert_true(d_copy1(&b, a.domid, refs[i], 0, 4, XM_COPY_TO_FOREIGN, "abc", NULL) < 0);
    }
    assert_true(d_map(&b, a.domid, 2, refs, 0, -1, &hb) < 0);
    /* still ended after the owner shares other pages */
    uint32_t r2;
    int ha2;
    assert_int_equal(d_share(&a, b.domid, 1, 1, -1, -1, &r2, &ha2), 0);
    if (r2 != refs[0] && r2 != refs[1])
        for (int i = 0; i < 2; i++)
            assert_true(d_copy1(&b, a.domid, refs[i], 0, 4, XM_COPY_FROM_FOREIGN, NULL, buf) < 0);
    assert_int_equal(d_unshare(&a, ha2), 0);
    dom_quit(&a);
    dom_quit(&b);
}

/* ------------------------------------------------------------------ */
/* 4. grant copy: page boundary and batches                            */
/* ------------------------------------------------------------------ */
static void test_grant_copy_segments(void **state)
{
    dom_t a, b;
    uint32_t refs[2];
    int ha;
    unsigned char page[2 * XM_PAGE_SIZE], buf[256];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    assert_int_equal(d_share(&a, b.domid, 2, 1, -1, -1, refs, &ha), 0);
    for (unsigned p = 0; p < 2; p++)
        for (unsigned i = 0; i < XM_PAGE_SIZE; i++)
            page[p * XM_PAGE_SIZE + i] = pat(p, i);
    d_fill(&a, ha, 0, page, sizeof(page));

    /* crossing the foreign page boundary: -EINVAL, both directions */
    assert_int_equal(d_copy1(&b, a.domid, refs[0], 4000, 200, XM_COPY_FROM_FOREIGN, NULL, buf),
                     -EINVAL);
    assert_int_equal(d_copy1(&b, a.domid, refs[0], 4095, 2, XM_COPY_FROM_FOREIGN, NULL, buf),
                     -EINVAL);
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(d_copy1(&b, a.domid, refs[0], 4000, 200, XM_COPY_TO_FOREIGN, buf, NULL),
                     -EINVAL);
    /* exactly up to the boundary is fine */
    assert_int_equal(d_copy1(&b, a.domid, refs[0], 4080, 16, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
    assert_memory_equal(buf, page + 4080, 16);
    /* the refused write wrote nothing */
    unsigned char chk[256];
    d_peek(&a, ha, 4000, 96, chk);
    assert_memory_equal(chk, page + 4000, 96);

    /* 16 good segments across both pages */
    req_init(OP_COPY);
    RQ->n = MAX_SEGS;
    for (unsigned i = 0; i < MAX_SEGS; i++)
        RQ->segs[i] = (struct seg){ .domid = a.domid, .ref = refs[i % 2],
                                    .offset = (uint16_t)(i * 250), .len = (uint16_t)(100 + i),
                                    .loff = (uint16_t)(i * 256), .dir = XM_COPY_FROM_FOREIGN };
    assert_int_equal(call(&b), 0);
    for (unsigned i = 0; i < MAX_SEGS; i++) {
        assert_int_equal(RP->st[i], 0);
        assert_memory_equal(RP->data + i * 256, page + (i % 2) * XM_PAGE_SIZE + i * 250, 100 + i);
    }

    /* one batch, two bad segments: all statuses filled, rc = first failure */
    req_init(OP_COPY);
    RQ->n = MAX_SEGS;
    for (unsigned i = 0; i < MAX_SEGS; i++)
        RQ->segs[i] = (struct seg){ .domid = a.domid, .ref = refs[i % 2],
                                    .offset = (uint16_t)(i * 250), .len = (uint16_t)(100 + i),
                                    .loff = (uint16_t)(i * 256), .dir = XM_COPY_FROM_FOREIGN };
    RQ->segs[5].offset = 4050;   /* crosses */
    RQ->segs[9].ref = refs[0] + 1000;   /* never granted */
    assert_int_equal(call(&b), -EINVAL);
    for (unsigned i = 0; i < MAX_SEGS; i++) {
        if (i == 5)
            assert_int_equal(RP->st[i], -EINVAL);
        else if (i == 9)
            assert_true(RP->st[i] < 0);
        else {
            assert_int_equal(RP->st[i], 0);
            assert_memory_equal(RP->data + i * 256, page + (i % 2) * XM_PAGE_SIZE + i * 250,
                                100 + i);
        }
    }

    /* 16 writes, one bad: the good ones land, the bad one does not */
    req_init(OP_COPY);
    RQ->n = MAX_SEGS;
    for (unsigned i = 0; i < MAX_SEGS; i++) {
        RQ->segs[i] = (struct seg){ .domid = a.domid, .ref = refs[i % 2],
                                    .offset = (uint16_t)(i * 200 + 7), .len = 64,
                                    .loff = (uint16_t)(i * 64), .dir = XM_COPY_TO_FOREIGN };
        memset(RQ->data + i * 64, 0xa0 + i, 64);
    }
    RQ->segs[3].offset = 4064;   /* 4064 + 64 > 4096 */
    assert_int_equal(call(&b), -EINVAL);
    int16_t st[MAX_SEGS];
    memcpy(st, RP->st, sizeof(st));   /* RP is reused by the peeks below */
    for (unsigned i = 0; i < MAX_SEGS; i++) {
        unsigned char exp[64];
        assert_int_equal(st[i], i == 3 ? -EINVAL : 0);
        if (i == 3)
            continue;
        memset(exp, 0xa0 + i, 64);
        d_peek(&a, ha, (i % 2) * XM_PAGE_SIZE + i * 200 + 7, 64, chk);
        assert_memory_equal(chk, exp, 64);
    }
    d_peek(&a, ha, 4032, 64, chk);
    assert_memory_equal(chk, page + 4032, 64);

    assert_int_equal(d_unshare(&a, ha), 0);
    dom_quit(&a);
    dom_quit(&b);
}

/* ------------------------------------------------------------------ */
/* 5. a stale ref never reaches memory it no longer covers             */
/* ------------------------------------------------------------------ */
static void test_grant_stale_ref(void **state)
{
    /* 4 entries: refs 1..3, so a fourth share must reuse a number */
    static const char *const small[] = { "XENMPI_SIM_GNTTAB_SIZE=4", NULL };
    dom_t a, b, c;
    uint32_t r0 = 0, r = 0;
    int h0, h[4], hb;
    char buf[XM_PAGE_SIZE], exp[64];
    unsigned nh = 0, reused = 0;

    (void)state;
    dom_up(&a, small);
    dom_up(&b, NULL);
    dom_up(&c, NULL);

    assert_int_equal(d_share(&a, b.domid, 1, 1, -1, -1, &r0, &h0), 0);
    d_fills(&a, h0, 0, "OLD-CONTENT");
    assert_int_equal(d_copy1(&b, a.domid, r0, 0, 12, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
    assert_string_equal(buf, "OLD-CONTENT");
    assert_int_equal(d_unshare(&a, h0), 0);

    /* new pages to the same peer until r0's number comes back */
    for (unsigned k = 0; k < 3 && !reused; k++) {
        int rc = d_share(&a, b.domid, 1, 1, -1, -1, &r, &h[nh]);
        assert_int_equal(rc, 0);
        snprintf(exp, sizeof(exp), "NEW-%u", k);
        d_fills(&a, h[nh++], 0, exp);
        if (r != r0) {
            /* still ended: no access at all */
            assert_true(d_copy1(&b, a.domid, r0, 0, 12, XM_COPY_FROM_FOREIGN, NULL, buf) < 0);
            continue;
        }
        reused = 1;
        /* the same number granted anew: exactly the new grant's page */
        assert_int_equal(d_copy1(&b, a.domid, r0, 0, XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN, NULL,
                                 buf), 0);
        assert_string_equal(buf, exp);
        for (unsigned i = strlen(exp) + 1; i < XM_PAGE_SIZE; i++)
            assert_int_equal(buf[i], 0);   /* fresh zeroed page, nothing of the old one */
        assert_int_equal(d_map(&b, a.domid, 1, &r0, 1, -1, &hb), 0);
        d_peek(&b, hb, 0, sizeof(exp), buf);
        assert_string_equal(buf, exp);
        /* and writes through it reach the new page only */
        d_fills(&b, hb, 64, "via-stale-number");
        d_peek(&a, h[nh - 1], 64, 17, buf);
        assert_string_equal(buf, "via-stale-number");
        assert_int_equal(d_unmap(&b, hb), 0);
    }
    assert_true(reused);

    /* now reuse the number for a different peer: B's copy must fail */
    while (nh)
        assert_int_equal(d_unshare(&a, h[--nh]), 0);
    reused = 0;
    for (unsigned k = 0; k < 3 && !reused; k++) {
        assert_int_equal(d_share(&a, c.domid, 1, 1, -1, -1, &r, &h[nh]), 0);
        d_fills(&a, h[nh++], 0, "FOR-C-ONLY");
        if (r == r0)
            reused = 1;
        assert_true(d_copy1(&b, a.domid, r0, 0, 12, XM_COPY_FROM_FOREIGN, NULL, buf) < 0);
        assert_true(d_map(&b, a.domid, 1, &r0, 0, -1, &hb) < 0);
    }
    assert_true(reused);
    assert_int_equal(d_copy1(&c, a.domid, r0, 0, 11, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
    assert_string_equal(buf, "FOR-C-ONLY");
    while (nh)
        assert_int_equal(d_unshare(&a, h[--nh]), 0);

    dom_quit(&a);
    dom_quit(&b);
    dom_quit(&c);
}

/* ------------------------------------------------------------------ */
/* 6. grant table size                                                 */
/* ------------------------------------------------------------------ */
static void test_grant_table_size(void **state)
{
    static const char *const small[] = { "XENMPI_SIM_GNTTAB_SIZE=8", NULL };
    dom_t a, b;
    uint32_t refs[16], r3[3];
    int h[16], hx, rc;
    unsigned ok = 0;
    char buf[16];

    (void)state;
    dom_up(&a, small);
    dom_up(&b, NULL);
    for (;;) {
        assert_true(ok < 16);
        rc = d_share(&a, b.domid, 1, 1, -1, -1, &refs[ok], &h[ok]);
        if (rc)
            break;
        snprintf(buf, sizeof(buf), "page-%u", ok);
        d_fills(&a, h[ok], 0, buf);
        ok++;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_true(ok <= 8);        /* never more than the table holds */
    assert_true(ok >= 7);        /* at most ref 0 reserved */
    /* a multi-page share fails as a whole */
    assert_int_equal(d_share(&a, b.domid, 2, 1, -1, -1, r3, &hx), -ENOSPC);
    /* the failure left earlier shares working */
    for (unsigned i = 0; i < ok; i++) {
        char exp[16];
        snprintf(exp, sizeof(exp), "page-%u", i);
        assert_int_equal(d_copy1(&b, a.domid, refs[i], 0, 8, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
        assert_string_equal(buf, exp);
    }
    /* free two entries: three pages still don't fit, and the partial
     * allocation is rolled back so two pages do */
    assert_int_equal(d_unshare(&a, h[ok - 1]), 0);
    assert_int_equal(d_unshare(&a, h[ok - 2]), 0);
    ok -= 2;
    assert_int_equal(d_share(&a, b.domid, 3, 1, -1, -1, r3, &hx), -ENOSPC);
    assert_int_equal(d_share(&a, b.domid, 2, 1, -1, -1, r3, &hx), 0);
    d_fills(&a, hx, XM_PAGE_SIZE, "second");
    assert_int_equal(d_copy1(&b, a.domid, r3[1], 0, 7, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
    assert_string_equal(buf, "second");
    assert_int_equal(d_share(&a, b.domid, 1, 1, -1, -1, &refs[15], &h[15]), -ENOSPC);
    for (unsigned i = 0; i < ok; i++) {
        char exp[16];
        snprintf(exp, sizeof(exp), "page-%u", i);
        assert_int_equal(d_copy1(&b, a.domid, refs[i], 0, 8, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
        assert_string_equal(buf, exp);
    }
    /* ending frees entries for reuse, again and again */
    for (int k = 0; k < 20; k++) {
        assert_int_equal(d_unshare(&a, hx), 0);
        assert_int_equal(d_share(&a, b.domid, 2, 1, -1, -1, r3, &hx), 0);
    }
    assert_int_equal(d_unshare(&a, hx), 0);
    for (unsigned i = 0; i < ok; i++)
        assert_int_equal(d_unshare(&a, h[i]), 0);
    dom_quit(&a);
    dom_quit(&b);
}

/* ------------------------------------------------------------------ */
/* 7. event channels                                                   */
/* ------------------------------------------------------------------ */
static void test_evtchn_rules(void **state)
{
    dom_t a, b, c;
    uint32_t pa = 0, pb = 0, pc = 0, p = 0, pb2 = 0, pa2 = 0;

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    dom_up(&c, NULL);

    assert_int_equal(d_alloc(&a, b.domid, &pa), 0);
    /* only the named remote can bind */
    assert_int_equal(d_bind(&c, a.domid, pa, &pc), -EINVAL);
    assert_int_equal(d_bind(&b, a.domid, pa + 1, &pb), -EINVAL);   /* not allocated */
    assert_int_equal(d_bind(&b, a.domid, pa, &pb), 0);
    /* bound ports are not unbound any more */
    assert_int_equal(d_bind(&b, a.domid, pa, &p), -EINVAL);
    assert_int_equal(d_bind(&c, a.domid, pa, &pc), -EINVAL);

    /* freshly bound: pending at once on the binder's side */
    assert_int_equal(d_evpoll(&b, 1000), 1);
    assert_int_equal(d_pending(&b, &p), 0);
    assert_int_equal(p, pb);
    assert_int_equal(d_pending(&b, &p), -EAGAIN);
    assert_int_equal(d_unmask(&b, pb), 0);
    assert_int_equal(d_evpoll(&b, 0), 0);
    /* ... and not on the allocator's */
    assert_int_equal(d_evpoll(&a, 0), 0);
    assert_int_equal(d_pending(&a, &p), -EAGAIN);

    /* notify crosses B -> A */
    assert_int_equal(d_notify(&b, pb), 0);
    assert_int_equal(d_evpoll(&a, 1000), 1);
    assert_int_equal(d_pending(&a, &p), 0);
    assert_int_equal(p, pa);
    assert_int_equal(d_pending(&a, &p), -EAGAIN);
    /* pa is masked now: a second notify is recorded but wakes nobody */
    assert_int_equal(d_notify(&b, pb), 0);
    assert_int_equal(d_evpoll(&a, 0), 0);
    assert_int_equal(d_evpoll(&a, 50), 0);
    assert_int_equal(d_pending(&a, &p), -EAGAIN);
    /* unmask with the event pending re-raises it */
    assert_int_equal(d_unmask(&a, pa), 0);
    assert_int_equal(d_evpoll(&a, 1000), 1);
    assert_int_equal(d_pending(&a, &p), 0);
    assert_int_equal(p, pa);
    assert_int_equal(d_unmask(&a, pa), 0);
    assert_int_equal(d_evpoll(&a, 0), 0);
    assert_int_equal(d_pending(&a, &p), -EAGAIN);
    /* and A -> B; C hears nothing of it */
    assert_int_equal(d_notify(&a, pa), 0);
    assert_int_equal(d_take(&b, 1000, &p), 0);
    assert_int_equal(p, pb);
    assert_int_equal(d_evpoll(&c, 0), 0);
    /* nobody but the port's process can use it */
    assert_int_equal(d_notify(&c, pa), -EINVAL);
    assert_int_equal(d_unmask(&c, pb), -EINVAL);

    /* B closes: A's end falls back to unbound for B */
    assert_int_equal(d_close(&b, pb), 0);
    assert_int_equal(d_notify(&a, pa), 0);   /* dropped, not an error */
    assert_int_equal(d_evpoll(&b, 50), 0);
    assert_int_equal(d_bind(&c, a.domid, pa, &pc), -EINVAL);
    assert_int_equal(d_bind(&b, a.domid, pa, &pb2), 0);
    assert_int_equal(d_take(&b, 1000, &p), 0);   /* fresh bind pending */
    assert_int_equal(p, pb2);
    assert_int_equal(d_notify(&a, pa), 0);
    assert_int_equal(d_take(&b, 1000, &p), 0);
    assert_int_equal(p, pb2);
    assert_int_equal(d_notify(&b, pb2), 0);
    assert_int_equal(d_take(&a, 1000, &p), 0);
    assert_int_equal(p, pa);

    /* A closes: B's end falls back to unbound for A, A can bind it */
    assert_int_equal(d_close(&a, pa), 0);
    assert_int_equal(d_bind(&c, b.domid, pb2, &pc), -EINVAL);
    assert_int_equal(d_bind(&a, b.domid, pb2, &pa2), 0);
    assert_int_equal(d_take(&a, 1000, &p), 0);
    assert_int_equal(p, pa2);
    assert_int_equal(d_notify(&a, pa2), 0);
    assert_int_equal(d_take(&b, 1000, &p), 0);
    assert_int_equal(p, pb2);

    assert_int_equal(d_close(&a, pa2), 0);
    assert_int_equal(d_close(&a, pa2), -EINVAL);
    assert_int_equal(d_close(&b, pb2), 0);
    dom_quit(&a);
    dom_quit(&b);
    dom_quit(&c);
}

/* ------------------------------------------------------------------ */
/* 8. store                                                            */
/* ------------------------------------------------------------------ */
/* Two threads of one domain claim ports at once (two endpoints opening):
 * no port is ever handed to both.  Each thread marks the ports it holds in
 * a shared table; a claim of a port the other holds is a double claim. */
#define CLAIM_ROUNDS 20000
static _Atomic int claim_owner[4096];
static _Atomic int claim_dups;
struct claimer {
    xm_hv_t *hv;
    int id;
};
static void *claim_loop(void *arg)
{
    struct claimer *c = arg;
    uint32_t held[4];

    for (int r = 0; r < CLAIM_ROUNDS; r++) {
        for (int k = 0; k < 4; k++) {
            int zero = 0;
            if (xm_hv_evt_alloc_unbound(c->hv, 0, &held[k])) {
                held[k] = 0;
                continue;
            }
            if (!atomic_compare_exchange_strong(&claim_owner[held[k] % 4096], &zero, c->id))
                atomic_fetch_add(&claim_dups, 1);
        }
        for (int k = 0; k < 4; k++)
            if (held[k]) {
                atomic_compare_exchange_strong(&claim_owner[held[k] % 4096], &c->id, 0);
                xm_hv_evt_close(c->hv, held[k]);
            }
    }
    return NULL;
}
static void test_evtchn_claim_threads(void **state)
{
    struct claimer c[2];
    pthread_t t[2];

    (void)state;
    setenv("XENMPI_SIM_DOMID", "29184", 1);   /* 0x7200: both handles one domain */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(xm_hv_open(&c[i].hv), 0);
        c[i].id = i + 1;
    }
    assert_int_equal(xm_hv_domid(c[0].hv), xm_hv_domid(c[1].hv));
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, claim_loop, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&claim_dups), 0);
    for (int i = 0; i < 2; i++)
        xm_hv_close(c[i].hv);
}

static void test_store_basic_perms(void **state)
{
    dom_t a, b, c;
    char p1[128], p2[128], p3[128];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    dom_up(&c, NULL);

    /* read / write / remove in one's own home */
    home(p1, sizeof(p1), a.domid, "k");
    assert_int_equal(d_read(&a, p1), -ENOENT);
    assert_int_equal(d_write(&a, p1, "v1"), 0);
    assert_int_equal(d_read(&a, p1), 0);
    assert_string_equal((char *)RP->data, "v1");
    assert_int_equal(d_write(&a, p1, "value-two"), 0);
    assert_int_equal(d_read(&a, p1), 0);
    assert_string_equal((char *)RP->data, "value-two");
    assert_int_equal(RP->dlen, 9);
    home(p2, sizeof(p2), a.domid, "domid");
    assert_int_equal(d_read(&a, p2), 0);
    char dom_s[16];
    snprintf(dom_s, sizeof(dom_s), "%u", a.domid);
    assert_string_equal((char *)RP->data, dom_s);

    /* another domain's home is closed by default */
    assert_int_equal(d_read(&b, p1), -EACCES);
    assert_int_equal(d_write(&b, p1, "x"), -EACCES);
    assert_int_equal(d_remove(&b, p1), -EACCES);
    home(p2, sizeof(p2), a.domid, "");
    assert_int_equal(d_read(&b, p2), -EACCES);
    assert_int_equal(d_list(&b, p2), -EACCES);
    home(p2, sizeof(p2), a.domid, "new");
    assert_int_equal(d_write(&b, p2, "x"), -EACCES);   /* no creating either */
    assert_int_equal(d_read(&a, p2), -ENOENT);
    assert_int_equal(d_remove(&a, p1), 0);
    assert_int_equal(d_read(&a, p1), -ENOENT);

    /* set_perms by the owner: read for B only */
    home(p1, sizeof(p1), a.domid, "shared");
    assert_int_equal(d_write(&a, p1, "s"), 0);
    xm_store_perm_t rb[2] = { { a.domid, XM_PERM_NONE }, { b.domid, XM_PERM_READ } };
    assert_int_equal(d_perms(&a, p1, 2, rb), 0);
    assert_int_equal(d_read(&b, p1), 0);
    assert_string_equal((char *)RP->data, "s");
    assert_int_equal(d_read(&c, p1), -EACCES);
    /* write needs write permission */
    assert_int_equal(d_write(&b, p1, "b-wrote"), -EACCES);
    assert_int_equal(d_remove(&b, p1), -EACCES);
    home(p2, sizeof(p2), a.domid, "shared/child");
    assert_int_equal(d_write(&b, p2, "b-child"), -EACCES);
    assert_int_equal(d_write(&c, p2, "c-child"), -EACCES);
    assert_int_equal(d_read(&a, p1), 0);
    assert_string_equal((char *)RP->data, "s");
    /* non-owners can't change permissions */
    xm_store_perm_t open_all[1] = { { b.domid, XM_PERM_BOTH } };
    assert_int_equal(d_perms(&b, p1, 1, open_all), -EACCES);
    assert_int_equal(d_perms(&c, p1, 1, open_all), -EACCES);
    assert_int_equal(d_read(&c, p1), -EACCES);
    /* the owner grants B write too */
    xm_store_perm_t wb[2] = { { a.domid, XM_PERM_NONE }, { b.domid, XM_PERM_BOTH } };
    assert_int_equal(d_perms(&a, p1, 2, wb), 0);
    assert_int_equal(d_write(&b, p1, "b-wrote"), 0);
    assert_int_equal(d_read(&a, p1), 0);
    assert_string_equal((char *)RP->data, "b-wrote");
    assert_int_equal(d_write(&c, p1, "c"), -EACCES);

    /* a node others may write: children can be created, the creator owns them */
    home(p1, sizeof(p1), a.domid, "dir");
    assert_int_equal(d_write(&a, p1, ""), 0);
    xm_store_perm_t ow[1] = { { a.domid, XM_PERM_WRITE } };
    assert_int_equal(d_perms(&a, p1, 1, ow), 0);
    home(p2, sizeof(p2), a.domid, "dir/from-b");
    assert_int_equal(d_write(&b, p2, "bb"), 0);
    xm_store_perm_t bc[2] = { { b.domid, XM_PERM_NONE }, { c.domid, XM_PERM_READ } };
    assert_int_equal(d_perms(&a, p2, 2, bc), -EACCES);   /* parent's owner isn't its owner */
    assert_int_equal(d_perms(&c, p2, 2, bc), -EACCES);
    assert_int_equal(d_perms(&b, p2, 2, bc), 0);         /* the creator is */
    assert_int_equal(d_read(&b, p2), 0);
    assert_string_equal((char *)RP->data, "bb");
    assert_int_equal(d_read(&c, p2), 0);
    assert_string_equal((char *)RP->data, "bb");
    assert_int_equal(d_write(&c, p2, "cc"), -EACCES);
    /* a deeper path creates the intermediate nodes too */
    home(p3, sizeof(p3), a.domid, "dir/from-c/x/y");
    assert_int_equal(d_write(&c, p3, "deep"), 0);
    assert_int_equal(d_read(&c, p3), 0);
    assert_string_equal((char *)RP->data, "deep");
    home(p3, sizeof(p3), a.domid, "dir/from-c");
    xm_store_perm_t cn[1] = { { c.domid, XM_PERM_NONE } };
    assert_int_equal(d_perms(&c, p3, 1, cn), 0);

    /* remove removes the subtree */
    home(p1, sizeof(p1), a.domid, "t/x/y");
    assert_int_equal(d_write(&a, p1, "1"), 0);
    home(p1, sizeof(p1), a.domid, "t/z");
    assert_int_equal(d_write(&a, p1, "2"), 0);
    home(p1, sizeof(p1), a.domid, "t");
    assert_int_equal(d_list(&a, p1), 0);
    assert_int_equal(RP->n, 2);
    assert_non_null(strstr((char *)RP->data, "\nx\n"));
    assert_non_null(strstr((char *)RP->data, "\nz\n"));
    home(p1, sizeof(p1), a.domid, "");
    assert_int_equal(d_list(&a, p1), 0);
    assert_non_null(strstr((char *)RP->data, "\nt\n"));
    home(p1, sizeof(p1), a.domid, "t");
    assert_int_equal(d_remove(&a, p1), 0);
    assert_int_equal(d_read(&a, p1), -ENOENT);
    home(p1, sizeof(p1), a.domid, "t/x");
    assert_int_equal(d_read(&a, p1), -ENOENT);
    home(p1, sizeof(p1), a.domid, "t/x/y");
    assert_int_equal(d_read(&a, p1), -ENOENT);
    home(p1, sizeof(p1), a.domid, "t/z");
    assert_int_equal(d_read(&a, p1), -ENOENT);
    home(p1, sizeof(p1), a.domid, "");
    assert_int_equal(d_list(&a, p1), 0);
    assert_null(strstr((char *)RP->data, "\nt\n"));
    assert_non_null(strstr((char *)RP->data, "\ndir\n"));
    home(p1, sizeof(p1), a.domid, "t");
    assert_int_equal(d_remove(&a, p1), -ENOENT);
    /* bad paths */
    assert_int_equal(d_read(&a, "relative"), -EINVAL);
    assert_int_equal(d_write(&a, "/trailing/", "x"), -EINVAL);

    dom_quit(&a);
    dom_quit(&b);
    dom_quit(&c);
}

static void test_store_watches(void **state)
{
    dom_t a, b;
    char w[128], p[128];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);

    home(w, sizeof(w), a.domid, "w");
    /* fires once at registration, even before the node exists */
    assert_int_equal(d_wpoll(&a, 0), 0);
    assert_int_equal(d_watch(&a, w, "tok1"), 0);
    assert_int_equal(d_wpoll(&a, 1000), 1);
    expect_watch(&a, w, "tok1");
    expect_no_watch(&a, 50);
    assert_int_equal(d_timed(&a, OP_ST_RWATCH, 0, NULL), -EAGAIN);

    /* writes to the path and below */
    assert_int_equal(d_write(&a, w, "1"), 0);
    expect_watch(&a, w, "tok1");
    home(p, sizeof(p), a.domid, "w/sub/leaf");
    assert_int_equal(d_write(&a, p, "2"), 0);
    expect_watch(&a, p, "tok1");
    expect_no_watch(&a, 30);
    /* not on siblings, nor on a name that merely starts the same */
    home(p, sizeof(p), a.domid, "wx");
    assert_int_equal(d_write(&a, p, "3"), 0);
    home(p, sizeof(p), a.domid, "other");
    assert_int_equal(d_write(&a, p, "4"), 0);
    expect_no_watch(&a, 50);

    /* remove of the path itself, and of a node below */
    home(p, sizeof(p), a.domid, "w/sub/leaf");
    assert_int_equal(d_remove(&a, p), 0);
    expect_watch(&a, p, "tok1");
    assert_int_equal(d_remove(&a, w), 0);
    expect_watch(&a, w, "tok1");
    expect_no_watch(&a, 30);

    /* removing an ancestor fires a watch below it */
    home(p, sizeof(p), a.domid, "anc/deep/node");
    assert_int_equal(d_write(&a, p, "x"), 0);
    assert_int_equal(d_watch(&a, p, "tok2"), 0);
    expect_watch(&a, p, "tok2");
    home(p, sizeof(p), a.domid, "anc");
    assert_int_equal(d_remove(&a, p), 0);
    home(p, sizeof(p), a.domid, "anc/deep/node");
    expect_watch(&a, p, "tok2");
    assert_int_equal(d_unwatch(&a, p, "tok2"), 0);

    /* two watches on one path: each fires with its own token */
    assert_int_equal(d_watch(&a, w, "tok3"), 0);
    expect_watch(&a, w, "tok3");
    assert_int_equal(d_write(&a, w, "5"), 0);
    char p1[XM_STORE_MAX_PATH], t1[XM_STORE_MAX_PATH], p2[XM_STORE_MAX_PATH],
        t2[XM_STORE_MAX_PATH];
    assert_int_equal(d_next_watch(&a, 1000, p1, t1), 0);
    assert_int_equal(d_next_watch(&a, 1000, p2, t2), 0);
    assert_string_equal(p1, w);
    assert_string_equal(p2, w);
    assert_true((!strcmp(t1, "tok1") && !strcmp(t2, "tok3")) ||
                (!strcmp(t1, "tok3") && !strcmp(t2, "tok1")));
    expect_no_watch(&a, 30);

    /* unwatch stops them */
    assert_int_equal(d_unwatch(&a, w, "tok1"), 0);
    assert_int_equal(d_unwatch(&a, w, "tok3"), 0);
    assert_int_equal(d_unwatch(&a, w, "tok3"), -ENOENT);
    assert_int_equal(d_write(&a, w, "6"), 0);
    assert_int_equal(d_wpoll(&a, 50), 0);
    expect_no_watch(&a, 30);

    /* across domains: B watches a node of A's it may read */
    home(p, sizeof(p), a.domid, "pub");
    assert_int_equal(d_write(&a, p, "0"), 0);
    xm_store_perm_t rb[2] = { { a.domid, XM_PERM_NONE }, { b.domid, XM_PERM_READ } };
    assert_int_equal(d_perms(&a, p, 2, rb), 0);
    assert_int_equal(d_watch(&b, p, "pubtok"), 0);
    expect_watch(&b, p, "pubtok");
    assert_int_equal(d_write(&a, p, "1"), 0);
    expect_watch(&b, p, "pubtok");
    assert_int_equal(d_remove(&a, p), 0);
    expect_watch(&b, p, "pubtok");
    assert_int_equal(d_unwatch(&b, p, "pubtok"), 0);
    drain_watches(&a);

    dom_quit(&a);
    dom_quit(&b);
}

static void test_store_watch_needs_read(void **state)
{
    dom_t a, b;
    char s[128], hm[128];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);

    home(s, sizeof(s), a.domid, "secret");
    home(hm, sizeof(hm), a.domid, "");
    assert_int_equal(d_write(&a, s, "0"), 0);
    /* B watches A's node and A's whole home, reading neither */
    assert_int_equal(d_watch(&b, s, "s"), 0);
    assert_int_equal(d_watch(&b, hm, "h"), 0);
    drain_watches(&b);   /* the registration events */

    assert_int_equal(d_write(&a, s, "1"), 0);
    home(s, sizeof(s), a.domid, "secret/below");
    assert_int_equal(d_write(&a, s, "2"), 0);
    home(s, sizeof(s), a.domid, "secret");
    expect_no_watch(&b, 100);

    /* once A lets B read it, B hears of it */
    xm_store_perm_t rb[2] = { { a.domid, XM_PERM_NONE }, { b.domid, XM_PERM_READ } };
    assert_int_equal(d_perms(&a, s, 2, rb), 0);
    drain_watches(&b);
    assert_int_equal(d_write(&a, s, "3"), 0);
    {
        /* the node is readable: both watches fire, in either order */
        char p1[XM_STORE_MAX_PATH], t1[XM_STORE_MAX_PATH], p2[XM_STORE_MAX_PATH],
            t2[XM_STORE_MAX_PATH];
        assert_int_equal(d_next_watch(&b, 2000, p1, t1), 0);
        assert_int_equal(d_next_watch(&b, 2000, p2, t2), 0);
        assert_string_equal(p1, s);
        assert_string_equal(p2, s);
        assert_true((!strcmp(t1, "s") && !strcmp(t2, "h")) ||
                    (!strcmp(t1, "h") && !strcmp(t2, "s")));
    }
    expect_no_watch(&b, 30);

    /* take it back: B hears nothing more, removal included */
    xm_store_perm_t none[1] = { { a.domid, XM_PERM_NONE } };
    assert_int_equal(d_perms(&a, s, 1, none), 0);
    drain_watches(&b);
    assert_int_equal(d_write(&a, s, "4"), 0);
    expect_no_watch(&b, 50);
    assert_int_equal(d_remove(&a, s), 0);
    expect_no_watch(&b, 100);

    assert_int_equal(d_unwatch(&b, s, "s"), 0);
    assert_int_equal(d_unwatch(&b, hm, "h"), 0);
    dom_quit(&a);
    dom_quit(&b);
}

/* ------------------------------------------------------------------ */
/* 9. unmap-notify                                                     */
/* ------------------------------------------------------------------ */
struct notify_pair {
    dom_t a, b;
    uint32_t pa, pb, ref;
    int ha, hb;
};

static void notify_setup(struct notify_pair *n)
{
    uint32_t p;
    unsigned char page[200];

    dom_up(&n->a, NULL);
    dom_up(&n->b, NULL);
    assert_int_equal(d_alloc(&n->a, n->b.domid, &n->pa), 0);
    assert_int_equal(d_bind(&n->b, n->a.domid, n->pa, &n->pb), 0);
    assert_int_equal(d_take(&n->b, 1000, &p), 0);   /* the fresh-bind event */
    assert_int_equal(p, n->pb);
    assert_int_equal(d_share(&n->a, n->b.domid, 1, 1, 100, (int)n->pa, &n->ref, &n->ha), 0);
    memset(page, 0x5a, sizeof(page));
    d_fill(&n->a, n->ha, 0, page, sizeof(page));
    assert_int_equal(d_map(&n->b, n->a.domid, 1, &n->ref, 0, -1, &n->hb), 0);
    d_peek(&n->b, n->hb, 99, 3, page);
    assert_memory_equal(page, "\x5a\x5a\x5a", 3);
    assert_int_equal(d_evpoll(&n->b, 0), 0);
}

static void notify_check(struct notify_pair *n)
{
    uint32_t p;
    unsigned char bytes[3];

    req_init(OP_WAIT_BYTE);
    RQ->a = (uint32_t)n->hb;
    RQ->b = 100;
    RQ->c = 0;
    RQ->d = 2000;
    assert_int_equal(call(&n->b), 0);
    assert_true(RP->t_us < 2000000);
    /* only that byte */
    d_peek(&n->b, n->hb, 99, 3, bytes);
    assert_memory_equal(bytes, "\x5a\x00\x5a", 3);
    assert_int_equal(d_evpoll(&n->b, 2000), 1);
    assert_int_equal(d_pending(&n->b, &p), 0);
    assert_int_equal(p, n->pb);
    assert_int_equal(d_unmask(&n->b, n->pb), 0);
}

static void test_unmap_notify_on_death(void **state)
{
    struct notify_pair n;

    (void)state;
    notify_setup(&n);
    dom_kill(&n.a);
    notify_check(&n);
    /* the dead owner's grant is gone for new maps */
    int h;
    assert_true(d_map(&n.b, n.a.domid, 1, &n.ref, 0, -1, &h) < 0);
    assert_int_equal(d_unmap(&n.b, n.hb), 0);
    dom_quit(&n.b);
}

static void test_unmap_notify_on_unshare(void **state)
{
    struct notify_pair n;
    uint32_t p;

    (void)state;
    notify_setup(&n);
    assert_int_equal(d_unshare(&n.a, n.ha), 0);
    notify_check(&n);
    assert_int_equal(d_unmap(&n.b, n.hb), 0);

    /* the mapper's side: B maps with its port; unmapping notifies A */
    assert_int_equal(d_share(&n.a, n.b.domid, 1, 1, -1, -1, &n.ref, &n.ha), 0);
    assert_int_equal(d_map(&n.b, n.a.domid, 1, &n.ref, 0, (int)n.pb, &n.hb), 0);
    assert_int_equal(d_evpoll(&n.a, 0), 0);
    assert_int_equal(d_unmap(&n.b, n.hb), 0);
    assert_int_equal(d_take(&n.a, 2000, &p), 0);
    assert_int_equal(p, n.pa);
    assert_int_equal(d_unshare(&n.a, n.ha), 0);
    dom_quit(&n.a);
    dom_quit(&n.b);
}

/* ------------------------------------------------------------------ */
/* 10. fault injection                                                 */
/* ------------------------------------------------------------------ */
static void test_fault_injection(void **state)
{
    static const char *const drop[] = { "XENMPI_SIM_DROP_NOTIFY=2", NULL };
    static const char *const delay[] = { "XENMPI_SIM_DELAY_NOTIFY_US=150000", NULL };
    dom_t a, b, c;
    uint32_t pa = 0, pb = 0, pa2 = 0, pc = 0, p = 0;
    unsigned delivered = 0;

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, drop);
    assert_int_equal(d_alloc(&a, b.domid, &pa), 0);
    assert_int_equal(d_bind(&b, a.domid, pa, &pb), 0);
    for (unsigned i = 0; i < 10; i++) {
        assert_int_equal(d_notify(&b, pb), 0);
        int rc = d_take(&a, 100, &p);
        if (rc == 0) {
            assert_int_equal(p, pa);
            assert_int_equal(i % 2, 0);   /* the 2nd, 4th, ... are the lost ones */
            delivered++;
        } else
            assert_int_equal(rc, -ETIMEDOUT);
    }
    assert_int_equal(delivered, 5);

    dom_up(&c, delay);
    assert_int_equal(d_alloc(&a, c.domid, &pa2), 0);
    assert_int_equal(d_bind(&c, a.domid, pa2, &pc), 0);
    int64_t t0 = now_us();
    assert_int_equal(d_notify(&c, pc), 0);
    assert_true(RP->t_us >= 150000);
    assert_int_equal(d_take(&a, 2000, &p), 0);
    assert_true(now_us() - t0 >= 150000);
    assert_int_equal(p, pa2);
    /* without the knob, notify is immediate */
    assert_int_equal(d_notify(&a, pa2), 0);
    assert_true(RP->t_us < 100000);

    dom_quit(&a);
    dom_quit(&b);
    dom_quit(&c);
}

/* ------------------------------------------------------------------ */
/* 11. domains, backends, hosts                                        */
/* ------------------------------------------------------------------ */
static void test_sim_domid_shared(void **state)
{
    static const char *const d7100[] = { "XENMPI_SIM_DOMID=28928", NULL };   /* 0x7100 */
    static const char *const d7101[] = { "XENMPI_SIM_DOMID=28929", NULL };
    dom_t o, d1, d2, x;
    uint32_t ref;
    int ho, h1, h2, hx;
    char buf[32];

    (void)state;
    dom_up(&o, NULL);
    dom_up(&d1, d7100);
    dom_up(&d2, d7100);
    dom_up(&x, d7101);
    assert_int_equal(d1.domid, 0x7100);
    assert_int_equal(d2.domid, 0x7100);
    assert_int_equal(x.domid, 0x7101);
    assert_true(o.domid != 0x7100);

    assert_int_equal(d_share(&o, 0x7100, 1, 1, -1, -1, &ref, &ho), 0);
    d_fills(&o, ho, 0, "for-domain-7100");
    assert_int_equal(d_map(&d1, o.domid, 1, &ref, 1, -1, &h1), 0);
    assert_int_equal(d_map(&d2, o.domid, 1, &ref, 0, -1, &h2), 0);
    d_peek(&d2, h2, 0, 16, buf);
    assert_string_equal(buf, "for-domain-7100");
    d_fills(&d1, h1, 20, "d1");
    d_peek(&d2, h2, 20, 3, buf);
    assert_string_equal(buf, "d1");
    assert_true(d_map(&x, o.domid, 1, &ref, 0, -1, &hx) < 0);
    /* one domain, one store home */
    char path[128];
    home(path, sizeof(path), 0x7100, "k");
    assert_int_equal(d_write(&d1, path, "one-home"), 0);
    assert_int_equal(d_read(&d2, path), 0);
    assert_string_equal((char *)RP->data, "one-home");
    assert_int_equal(d_read(&x, path), -EACCES);

    assert_int_equal(d_unmap(&d1, h1), 0);
    assert_int_equal(d_unmap(&d2, h2), 0);
    assert_int_equal(d_unshare(&o, ho), 0);
    dom_quit(&o);
    dom_quit(&d1);
    dom_quit(&d2);
    dom_quit(&x);
}

static void test_open_errors(void **state)
{
    static const char *const bogus[] = { "XENMPI_BACKEND=bogus", NULL };
    static const char *const slash[] = { "XENMPI_SIM_HOST=a/b", NULL };
    static const char *const dots[] = { "XENMPI_SIM_HOST=../../tmp/x", NULL };
    dom_t d;
    int status;

    (void)state;
    dom_start(&d, bogus);
    assert_int_equal(d.open_rc, -EINVAL);
    assert_int_equal(wait_exit(d.pid, &status, EXIT_TIMEOUT_MS), 0);
    kid_forget(d.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    dom_start(&d, slash);
    assert_int_equal(d.open_rc, -EINVAL);
    assert_int_equal(wait_exit(d.pid, &status, EXIT_TIMEOUT_MS), 0);
    kid_forget(d.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    dom_start(&d, dots);
    assert_int_equal(d.open_rc, -EINVAL);
    assert_int_equal(wait_exit(d.pid, &status, EXIT_TIMEOUT_MS), 0);
    kid_forget(d.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(access("/dev/shm/xenmpi-sim-a", F_OK), -1);
    /* nothing of the test's own host was created either */
    assert_false(host_exists(g_host));
}

static void test_hosts_isolated(void **state)
{
    static const char *o_env[] = { "XENMPI_SIM_DOMID=29185", NULL };   /* 0x7201 */
    static const char *p_env[] = { "XENMPI_SIM_DOMID=29186", NULL };   /* 0x7202 */
    char h2[96];
    const char *q_env[] = { "XENMPI_SIM_DOMID=29186", h2, NULL };
    dom_t o, p, q;
    uint32_t ref = 0, po = 0, pp = 0, pq = 0, port = 0;
    int ho, hp, hq;
    char buf[XM_STORE_MAX_PATH], path[128];

    (void)state;
    snprintf(g_host2, sizeof(g_host2), "%s-other", g_host);
    snprintf(h2, sizeof(h2), "XENMPI_SIM_HOST=%s", g_host2);
    rm_host(g_host2);
    dom_up(&o, o_env);
    dom_up(&p, p_env);
    dom_up(&q, q_env);
    assert_int_equal(p.domid, q.domid);   /* same number, different hosts */
    assert_true(host_exists(g_host) && host_exists(g_host2));

    /* grants */
    assert_int_equal(d_share(&o, 0x7202, 1, 1, -1, -1, &ref, &ho), 0);
    d_fills(&o, ho, 0, "host-one");
    assert_true(d_map(&q, 0x7201, 1, &ref, 0, -1, &hq) < 0);
    assert_true(d_copy1(&q, 0x7201, ref, 0, 9, XM_COPY_FROM_FOREIGN, NULL, buf) < 0);
    assert_int_equal(d_map(&p, 0x7201, 1, &ref, 0, -1, &hp), 0);
    d_peek(&p, hp, 0, 9, buf);
    assert_string_equal(buf, "host-one");

    /* event channels */
    assert_int_equal(d_alloc(&o, 0x7202, &po), 0);
    assert_int_equal(d_bind(&q, 0x7201, po, &pq), -EINVAL);
    assert_int_equal(d_bind(&p, 0x7201, po, &pp), 0);
    assert_int_equal(d_take(&p, 1000, &port), 0);
    assert_int_equal(d_notify(&o, po), 0);
    assert_int_equal(d_take(&p, 1000, &port), 0);
    assert_int_equal(port, pp);
    assert_int_equal(d_evpoll(&q, 50), 0);

    /* store */
    home(path, sizeof(path), 0x7202, "mark");
    assert_int_equal(d_write(&p, path, "on-host-one"), 0);
    assert_int_equal(d_read(&q, path), -ENOENT);
    home(path, sizeof(path), 0x7201, "");
    assert_int_equal(d_read(&q, path), -ENOENT);

    /* host ids differ */
    req_init(OP_HOST_ID);
    assert_int_equal(call(&p), 0);
    snprintf(buf, sizeof(buf), "%s", RP->s1);
    req_init(OP_HOST_ID);
    assert_int_equal(call(&q), 0);
    assert_string_not_equal(buf, RP->s1);

    assert_int_equal(d_unmap(&p, hp), 0);
    assert_int_equal(d_unshare(&o, ho), 0);
    dom_quit(&o);
    dom_quit(&p);
    dom_quit(&q);
}

/* ------------------------------------------------------------------ */
/* 12. host identity                                                   */
/* ------------------------------------------------------------------ */
static void test_host_id(void **state)
{
    static const char *const over[] = { "XENMPI_HOST_ID=rack7-node3", NULL };
    dom_t a, b;
    char exp[128];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, over);
    snprintf(exp, sizeof(exp), "sim:%s", g_host);
    req_init(OP_HOST_ID);
    assert_int_equal(call(&a), 0);
    assert_string_equal(RP->s1, exp);
    req_init(OP_HOST_ID);
    assert_int_equal(call(&b), 0);
    assert_string_equal(RP->s1, "rack7-node3");
    /* a buffer too small is an error, not a truncation */
    req_init(OP_HOST_ID);
    RQ->b = 4;
    assert_int_equal(call(&a), -ENAMETOOLONG);
    req_init(OP_HOST_ID);
    RQ->b = 4;
    assert_int_equal(call(&b), -ENAMETOOLONG);
    dom_quit(&a);
    dom_quit(&b);
}

/* ------------------------------------------------------------------ */
/* 13. grant_mem: a process's existing pages                           */
/* ------------------------------------------------------------------ */
#define RW (PROT_READ | PROT_WRITE)

static void test_gmem_rw(void **state)
{
    dom_t a, b;
    uint32_t refs[3];
    uint64_t h;
    int ba, hb;
    struct gstats gs;

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    ba = d_bufmap(&a, 3, RW, 5);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 3, 1, &h, refs), 0);
    assert_int_equal(h, 1);   /* a process's first handle */
    assert_true(refs[0] != refs[1] && refs[1] != refs[2] && refs[0] != refs[2]);

    /* the peer reads the owner's three pages: one call for the lot */
    gcopy_init();
    for (unsigned i = 0; i < 3; i++)
        gseg(a.domid, refs[i], 0, XM_PAGE_SIZE, i * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(gs.st[i], 0);
    assert_int_equal(gs.pvm, 1);
    assert_int_equal(gs.liov, 1);
    assert_int_equal(gs.riov, 1);
    d_patcheck(&b, LBUF, 0, 3 * XM_PAGE_SIZE, 5, 0);

    /* the very pages, not a copy: the owner's later writes are what the
     * peer reads */
    d_patfill(&a, ba, XM_PAGE_SIZE + 10, 100, 77, 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[1], 10, 100, 0x10000, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0x10000, 100, 77, 0);

    /* the peer writes page 1 from 100 for 2000 bytes and all of page 2 */
    d_patfill(&b, LBUF, 0x20000, 2000 + XM_PAGE_SIZE, 9, 0);
    gcopy_init();
    gseg(a.domid, refs[1], 100, 2000, 0x20000, XM_COPY_TO_FOREIGN);
    gseg(a.domid, refs[2], 0, XM_PAGE_SIZE, 0x20000 + 2000, XM_COPY_TO_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), 0);
    assert_int_equal(gs.st[0], 0);
    assert_int_equal(gs.st[1], 0);
    /* known owner: the copy is one process_vm_writev and nothing else */
    assert_int_equal(gs.pvm, 1);
    assert_int_equal(gs.liov, 1);
    assert_int_equal(gs.riov, 2);
    assert_int_equal(gs.opens, 0);
    assert_int_equal(gs.kills, 0);
    /* ... and it landed in the owner's own buffer, nowhere else */
    d_patcheck(&a, ba, 0, XM_PAGE_SIZE + 10, 5, 0);
    d_patcheck(&a, ba, XM_PAGE_SIZE + 10, 90, 77, 0);
    d_patcheck(&a, ba, XM_PAGE_SIZE + 100, 2000, 9, 0);
    d_patcheck(&a, ba, XM_PAGE_SIZE + 2100, XM_PAGE_SIZE - 2100, 5, XM_PAGE_SIZE + 2100);
    d_patcheck(&a, ba, 2 * XM_PAGE_SIZE, XM_PAGE_SIZE, 9, 2000);
    /* and reads back through the grant */
    assert_int_equal(d_gcopy1(&b, a.domid, refs[2], 0, XM_PAGE_SIZE, 0x30000,
                              XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0x30000, XM_PAGE_SIZE, 9, 2000);

    /* the sim reaches such refs by grant copy only */
    assert_int_equal(d_map(&b, a.domid, 1, refs, 0, -1, &hb), -EOPNOTSUPP);

    assert_int_equal(d_gmem_end(&a, h), 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[0], 0, 8, 0, XM_COPY_FROM_FOREIGN), -EPERM);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[2], 0, 8, 0, XM_COPY_TO_FOREIGN), -EPERM);
    d_patcheck(&a, ba, 2 * XM_PAGE_SIZE, XM_PAGE_SIZE, 9, 2000);
    dom_quit(&a);
    dom_quit(&b);
}

static void test_gmem_readonly(void **state)
{
    dom_t a, b, c;
    uint32_t refs[2];
    uint64_t h;
    int ba;
    struct gstats gs;

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    dom_up(&c, NULL);
    ba = d_bufmap(&a, 2, RW, 11);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 2, 0, &h, refs), 0);

    assert_int_equal(d_gcopy1(&b, a.domid, refs[0], 0, XM_PAGE_SIZE, 0, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0, XM_PAGE_SIZE, 11, 0);
    /* writes are refused, reads in the same batch go through */
    d_patfill(&b, LBUF, 0x1000, XM_PAGE_SIZE, 99, 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[0], 0, 64, 0x1000, XM_COPY_TO_FOREIGN), -EACCES);
    gcopy_init();
    gseg(a.domid, refs[1], 0, 64, 0x1000, XM_COPY_TO_FOREIGN);
    gseg(a.domid, refs[1], 0, XM_PAGE_SIZE, 0x3000, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, refs[0], 4000, 96, 0x1000, XM_COPY_TO_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), -EACCES);
    assert_int_equal(gs.st[0], -EACCES);
    assert_int_equal(gs.st[1], 0);
    assert_int_equal(gs.st[2], -EACCES);
    d_patcheck(&b, LBUF, 0x3000, XM_PAGE_SIZE, 11, XM_PAGE_SIZE);
    d_patcheck(&a, ba, 0, 2 * XM_PAGE_SIZE, 11, 0);   /* nothing written */

    /* a third domain gets nothing, either way */
    d_patfill(&c, LBUF, 0, 64, 99, 0);
    assert_int_equal(d_gcopy1(&c, a.domid, refs[0], 0, 64, 0, XM_COPY_FROM_FOREIGN), -EPERM);
    assert_int_equal(d_gcopy1(&c, a.domid, refs[1], 0, 64, 0, XM_COPY_TO_FOREIGN), -EPERM);
    d_patcheck(&c, LBUF, 0, 64, 99, 0);   /* its buffer untouched */
    d_patcheck(&a, ba, 0, 2 * XM_PAGE_SIZE, 11, 0);

    /* ended: the grantee gets nothing either */
    assert_int_equal(d_gmem_end(&a, h), 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[0], 0, 64, 0x5000, XM_COPY_FROM_FOREIGN), -EPERM);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[1], 0, 64, 0x1000, XM_COPY_TO_FOREIGN), -EPERM);
    assert_int_equal(d_gmem_end(&a, h), -ENOENT);
    /* a new grant to c does not revive them for b */
    uint32_t r2[2];
    uint64_t h2;
    assert_int_equal(d_gmem(&a, c.domid, ba, 0, 2, 0, &h2, r2), 0);
    assert_true(h2 > h);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[0], 0, 64, 0x5000, XM_COPY_FROM_FOREIGN), -EPERM);
    assert_int_equal(d_gcopy1(&b, a.domid, r2[0], 0, 64, 0x5000, XM_COPY_FROM_FOREIGN), -EPERM);
    assert_int_equal(d_gcopy1(&c, a.domid, r2[1], 0, 64, 0x100, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&c, LBUF, 0x100, 64, 11, XM_PAGE_SIZE);
    assert_int_equal(d_gmem_end(&a, h2), 0);
    dom_quit(&a);
    dom_quit(&b);
    dom_quit(&c);
}

static void test_gmem_bad_input(void **state)
{
    static const char *const small[] = { "XENMPI_SIM_GNTTAB_SIZE=16", NULL };
    dom_t a, b;
    uint32_t refs[16];
    uint64_t h, h1;
    int big, ro, holes, gone, split;

    (void)state;
    dom_up(&a, small);
    dom_up(&b, NULL);
    big = d_bufmap(&a, 17, RW, 1);
    ro = d_bufmap(&a, 2, PROT_READ, 2);
    holes = d_bufmap(&a, 3, RW, 3);
    gone = d_bufmap(&a, 2, RW, 4);
    split = d_bufmap(&a, 4, RW, 5);
    d_bufunmap(&a, holes, 1, 1);
    d_bufunmap(&a, gone, 0, 2);

    /* handles count from 1 and are never reused */
    assert_int_equal(d_gmem(&a, b.domid, big, 0, 1, 1, &h1, refs), 0);
    assert_int_equal(h1, 1);
    assert_int_equal(d_gmem_end(&a, h1), 0);
    assert_int_equal(d_gmem(&a, b.domid, big, 0, 1, 1, &h, refs), 0);
    assert_int_equal(h, 2);
    assert_int_equal(d_gmem_end(&a, h1), -ENOENT);
    assert_int_equal(d_gmem_end(&a, h), 0);

    /* -EINVAL */
    assert_int_equal(d_gmem(&a, b.domid, big, 100, 1, 0, &h, refs), -EINVAL);
    assert_int_equal(d_gmem(&a, b.domid, big, 2048, 2, 1, &h, refs), -EINVAL);
    assert_int_equal(d_gmem(&a, b.domid, big, 0, 0, 0, &h, refs), -EINVAL);
    assert_int_equal(d_gmem(&a, b.domid, big, 0, 17, 0, &h, refs), -EINVAL);   /* > table */
    assert_int_equal(d_gmem(&a, a.domid, big, 0, 1, 0, &h, refs), -EINVAL);
    assert_int_equal(d_gmem(&a, XM_DOMID_INVALID, big, 0, 1, 0, &h, refs), -EINVAL);
    assert_int_equal(d_gmem(&a, 0x7ff0, big, 0, 1, 0, &h, refs), -EINVAL);
    /* -EFAULT: not mapped, wholly or in part */
    assert_int_equal(d_gmem(&a, b.domid, gone, 0, 2, 0, &h, refs), -EFAULT);
    assert_int_equal(d_gmem(&a, b.domid, gone, XM_PAGE_SIZE, 1, 1, &h, refs), -EFAULT);
    assert_int_equal(d_gmem(&a, b.domid, holes, 0, 3, 0, &h, refs), -EFAULT);
    assert_int_equal(d_gmem(&a, b.domid, holes, 0, 2, 1, &h, refs), -EFAULT);
    assert_int_equal(d_gmem(&a, b.domid, holes, XM_PAGE_SIZE, 2, 0, &h, refs), -EFAULT);
    /* -EFAULT: a writable grant of memory not mapped writable */
    assert_int_equal(d_gmem(&a, b.domid, ro, 0, 2, 1, &h, refs), -EFAULT);
    assert_int_equal(d_gmem(&a, b.domid, ro, XM_PAGE_SIZE, 1, 1, &h, refs), -EFAULT);
    d_bufprot(&a, split, 2, 1, PROT_READ);   /* rw rw r rw */
    assert_int_equal(d_gmem(&a, b.domid, split, 0, 4, 1, &h, refs), -EFAULT);
    assert_int_equal(d_gmem(&a, b.domid, split, XM_PAGE_SIZE, 2, 1, &h, refs), -EFAULT);
    assert_int_equal(d_gmem(&a, b.domid, split, 2 * XM_PAGE_SIZE, 2, 1, &h, refs), -EFAULT);
    /* -ENOENT */
    assert_int_equal(d_gmem_end(&a, 0), -ENOENT);
    assert_int_equal(d_gmem_end(&a, 12345), -ENOENT);
    assert_int_equal(d_gmem_end(&a, UINT64_MAX), -ENOENT);

    /* what is fine: the mapped parts, read-only memory read-only, writable
     * ranges over several mappings */
    assert_int_equal(d_gmem(&a, b.domid, holes, 2 * XM_PAGE_SIZE, 1, 1, &h, refs), 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[0], 0, XM_PAGE_SIZE, 0, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0, XM_PAGE_SIZE, 3, 2 * XM_PAGE_SIZE);
    assert_int_equal(d_gmem_end(&a, h), 0);
    assert_int_equal(d_gmem(&a, b.domid, ro, 0, 2, 0, &h, refs), 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[1], 0, XM_PAGE_SIZE, 0, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0, XM_PAGE_SIZE, 2, XM_PAGE_SIZE);
    assert_int_equal(d_gmem_end(&a, h), 0);
    assert_int_equal(d_gmem(&a, b.domid, split, 0, 4, 0, &h, refs), 0);
    assert_int_equal(d_gmem_end(&a, h), 0);
    d_bufprot(&a, split, 2, 1, PROT_READ | PROT_WRITE | PROT_EXEC);   /* rw rwx rw: 3 mappings */
    assert_int_equal(d_gmem(&a, b.domid, split, 0, 4, 1, &h, refs), 0);
    d_patfill(&b, LBUF, 0, 64, 42, 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[2], 8, 64, 0, XM_COPY_TO_FOREIGN), 0);
    d_patcheck(&a, split, 2 * XM_PAGE_SIZE + 8, 64, 42, 0);
    assert_int_equal(d_gmem_end(&a, h), 0);

    /* none of the failures kept an entry: all 15 usable entries are free */
    assert_int_equal(d_gmem(&a, b.domid, big, 0, 15, 1, &h, refs), 0);
    for (unsigned i = 0; i < 15; i++)
        assert_true(refs[i] >= 1 && refs[i] < 16);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[14], 0, XM_PAGE_SIZE, 0, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0, XM_PAGE_SIZE, 1, 14 * XM_PAGE_SIZE);
    assert_int_equal(d_gmem(&a, b.domid, big, 15 * XM_PAGE_SIZE, 1, 1, &h1, refs), -ENOSPC);
    assert_int_equal(d_gmem_end(&a, h), 0);
    dom_quit(&a);
    dom_quit(&b);
}

static void test_gmem_exhaustion(void **state)
{
    static const char *const small[] = { "XENMPI_SIM_GNTTAB_SIZE=64", NULL };
    dom_t a, b;
    uint32_t refs[64], sref, r1;
    uint64_t h, h1, hx;
    int ba, hs, hs2;
    char buf[16];

    (void)state;
    dom_up(&a, small);
    dom_up(&b, NULL);
    ba = d_bufmap(&a, 64, RW, 7);
    /* 63 usable entries (ref 0 is reserved); a memfd share takes one */
    assert_int_equal(d_share(&a, b.domid, 1, 1, -1, -1, &sref, &hs), 0);
    d_fills(&a, hs, 0, "shared");
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 63, 1, &hx, refs), -ENOSPC);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 64, 0, &hx, refs), -ENOSPC);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 63, 0, &hx, refs), -ENOSPC);
    /* the failures rolled back: exactly the 62 free entries still fit */
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 62, 1, &h, refs), 0);
    for (unsigned i = 0; i < 62; i++) {
        assert_true(refs[i] >= 1 && refs[i] < 64 && refs[i] != sref);
        for (unsigned j = 0; j < i; j++)
            assert_true(refs[i] != refs[j]);
    }
    assert_int_equal(d_gcopy1(&b, a.domid, refs[61], 0, XM_PAGE_SIZE, 0, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0, XM_PAGE_SIZE, 7, 61 * XM_PAGE_SIZE);
    /* full now, for either kind */
    assert_int_equal(d_gmem(&a, b.domid, ba, 62 * XM_PAGE_SIZE, 1, 0, &hx, &r1), -ENOSPC);
    assert_int_equal(d_share(&a, b.domid, 1, 1, -1, -1, &r1, &hs2), -ENOSPC);
    assert_int_equal(d_copy1(&b, a.domid, sref, 0, 7, XM_COPY_FROM_FOREIGN, NULL, buf), 0);
    assert_string_equal(buf, "shared");
    /* ending frees every entry of the grant; unsharing frees its one */
    assert_int_equal(d_gmem_end(&a, h), 0);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[61], 0, 8, 0, XM_COPY_FROM_FOREIGN), -EPERM);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 62, 0, &h, refs), 0);
    assert_int_equal(d_unshare(&a, hs), 0);
    assert_int_equal(d_gmem(&a, b.domid, ba, 62 * XM_PAGE_SIZE, 2, 0, &hx, refs), -ENOSPC);
    assert_int_equal(d_gmem(&a, b.domid, ba, 62 * XM_PAGE_SIZE, 1, 0, &h1, &r1), 0);
    assert_int_equal(d_gcopy1(&b, a.domid, r1, 0, XM_PAGE_SIZE, 0, XM_COPY_FROM_FOREIGN), 0);
    d_patcheck(&b, LBUF, 0, XM_PAGE_SIZE, 7, 62 * XM_PAGE_SIZE);
    assert_int_equal(d_gmem_end(&a, h1), 0);
    assert_int_equal(d_gmem_end(&a, h), 0);
    dom_quit(&a);
    dom_quit(&b);
}

static void test_gmem_coalesce(void **state)
{
    dom_t a, b;
    uint32_t refs1[8], refs2[8], refs3[256], sref;
    uint64_t h1, h2, h3;
    int r1, r2, r3, hs;
    struct gstats gs;
    size_t loff;
    static unsigned char got[3 * DATA_MAX];

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    r1 = d_bufmap(&a, 8, RW, 1);
    r2 = d_bufmap(&a, 8, RW, 2);
    r3 = d_bufmap(&a, 256, RW, 3);
    assert_int_equal(d_gmem(&a, b.domid, r1, 0, 8, 1, &h1, refs1), 0);
    assert_int_equal(d_gmem(&a, b.domid, r2, 0, 8, 1, &h2, refs2), 0);
    assert_int_equal(d_gmem(&a, b.domid, r3, 0, 256, 1, &h3, refs3), 0);

    /* segments alternating between two grants, inside pages */
    gcopy_init();
    for (unsigned i = 0, l = 0; i < 16; l += 1000 + i * 13, i++)
        gseg(a.domid, (i % 2 ? refs2 : refs1)[i / 2], (i * 97) % 1500, 1000 + i * 13, l,
             XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), 0);
    assert_int_equal(gs.pvm, 1);
    assert_int_equal(gs.liov, 1);
    assert_int_equal(gs.riov, 16);
    loff = 0;
    for (unsigned i = 0; i < 16; i++) {
        assert_int_equal(gs.st[i], 0);
        d_patcheck(&b, LBUF, loff, 1000 + i * 13, i % 2 ? 2 : 1,
                   (i / 2) * XM_PAGE_SIZE + (i * 97) % 1500);
        loff += 1000 + i * 13;
    }

    /* pieces of pages that continue each other remotely, scattered locally */
    static const unsigned cut[] = { 0, 1000, 3000, XM_PAGE_SIZE };
    gcopy_init();
    loff = 0x40000;
    for (unsigned p = 0; p < 8; p++)
        for (unsigned k = 0; k < 3; k++) {
            gseg(a.domid, refs1[p], cut[k], cut[k + 1] - cut[k], loff, XM_COPY_FROM_FOREIGN);
            loff += cut[k + 1] - cut[k] + 16;
        }
    assert_int_equal(d_gcopy(&b, &gs), 0);
    assert_int_equal(gs.pvm, 1);
    assert_int_equal(gs.riov, 1);
    assert_int_equal(gs.liov, 24);
    loff = 0x40000;
    for (unsigned p = 0; p < 8; p++)
        for (unsigned k = 0; k < 3; k++) {
            d_patcheck(&b, LBUF, loff, cut[k + 1] - cut[k], 1, p * XM_PAGE_SIZE + cut[k]);
            loff += cut[k + 1] - cut[k] + 16;
        }

    /* 1 MiB, 256 page segments, both sides contiguous: one system call */
    gcopy_init();
    for (unsigned p = 0; p < 256; p++)
        gseg(a.domid, refs3[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), 0);
    assert_int_equal(gs.pvm, 1);
    assert_int_equal(gs.liov, 1);
    assert_int_equal(gs.riov, 1);
    assert_int_equal(gs.opens, 0);
    assert_int_equal(gs.kills, 0);
    for (unsigned p = 0; p < 256; p++)
        assert_int_equal(gs.st[p], 0);
    d_patcheck(&b, LBUF, 0, 256 * XM_PAGE_SIZE, 3, 0);
    /* and back */
    d_patfill(&b, LBUF, 0, 256 * XM_PAGE_SIZE, 4, 0);
    gcopy_init();
    for (unsigned p = 0; p < 256; p++)
        gseg(a.domid, refs3[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_TO_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), 0);
    assert_int_equal(gs.pvm, 1);
    assert_int_equal(gs.liov, 1);
    assert_int_equal(gs.riov, 1);
    d_patcheck(&a, r3, 0, 256 * XM_PAGE_SIZE, 4, 0);

    /* batch order holds across directions: write, then read the same bytes */
    d_patfill(&b, LBUF, 0x100000, 512, 21, 0);
    gcopy_init();
    gseg(a.domid, refs1[0], 0, 512, 0x110000, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, refs1[0], 0, 512, 0x100000, XM_COPY_TO_FOREIGN);
    gseg(a.domid, refs1[0], 0, 512, 0x120000, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), 0);
    assert_int_equal(gs.pvm, 3);
    d_patcheck(&b, LBUF, 0x110000, 512, 1, 0);
    d_patcheck(&b, LBUF, 0x120000, 512, 21, 0);

    /* 1500 scattered pieces: more remote iovecs than one call takes */
    gcopy_init();
    for (unsigned i = 0; i < 1500; i++) {
        unsigned k = i / 2;
        gseg(a.domid, (i % 2 ? refs3 : refs2)[k % 8], (k / 8) * 32, 16, i * 16,
             XM_COPY_FROM_FOREIGN);
    }
    assert_int_equal(d_gcopy(&b, &gs), 0);
    assert_int_equal(gs.pvm, 2);
    assert_int_equal(gs.liov, 1);
    assert_int_equal(gs.riov, 1024);
    for (unsigned i = 0; i < 1500; i++)
        assert_int_equal(gs.st[i], 0);
    for (unsigned part = 0; part < 3; part++)
        d_bufpeek(&b, LBUF, part * DATA_MAX, DATA_MAX, got + part * DATA_MAX);
    for (unsigned i = 0; i < 1500; i++) {
        unsigned k = i / 2;
        size_t pos = (size_t)(k % 8) * XM_PAGE_SIZE + (k / 8) * 32;
        for (unsigned j = 0; j < 16; j++)
            if (got[i * 16 + j] != gpat(i % 2 ? 4 : 2, pos + j))
                fail_msg("piece %u byte %u: %u, expected %u", i, j, got[i * 16 + j],
                         gpat(i % 2 ? 4 : 2, pos + j));
    }

    /* a batch of both kinds and bad segments: order and statuses */
    assert_int_equal(d_share(&a, b.domid, 1, 1, -1, -1, &sref, &hs), 0);
    d_fills(&a, hs, 0, "memfd-page");
    gcopy_init();
    gseg(a.domid, refs1[1], 0, 100, 0x1000, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, sref, 0, 11, 0x2000, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, refs1[1], 100, 100, 0x1064, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, refs1[1], 4000, 200, 0x3000, XM_COPY_FROM_FOREIGN);   /* crosses */
    gseg(a.domid, refs1[0] + 5000, 0, 100, 0x3000, XM_COPY_FROM_FOREIGN);   /* not granted */
    gseg(a.domid, refs1[1], 200, 100, 0x10c8, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), -EINVAL);
    assert_int_equal(gs.st[0], 0);
    assert_int_equal(gs.st[1], 0);
    assert_int_equal(gs.st[2], 0);
    assert_int_equal(gs.st[3], -EINVAL);
    assert_true(gs.st[4] < 0);
    assert_int_equal(gs.st[5], 0);
    assert_int_equal(gs.pvm, 2);   /* before the memfd page, and after it */
    d_patcheck(&b, LBUF, 0x1000, 300, 1, XM_PAGE_SIZE);
    d_bufpeek(&b, LBUF, 0x2000, 11, got);
    assert_string_equal((char *)got, "memfd-page");

    assert_int_equal(d_unshare(&a, hs), 0);
    assert_int_equal(d_gmem_end(&a, h1), 0);
    assert_int_equal(d_gmem_end(&a, h2), 0);
    assert_int_equal(d_gmem_end(&a, h3), 0);
    dom_quit(&a);
    dom_quit(&b);
}

static void test_gmem_owner_exit(void **state)
{
    static const char *const aenv[] = { "XENMPI_SIM_GNTTAB_SIZE=8", "XENMPI_SIM_DOMID=29440",
                                        NULL };   /* 0x7300 */
    char benv_s[64];
    const char *benv[] = { benv_s, NULL };
    dom_t a, a2, b, b2, c;
    uint32_t refs[7], refs2[7];
    uint64_t h, h2;
    int ba, ba2;
    struct gstats gs;

    (void)state;
    dom_up(&a, aenv);
    dom_up(&b, NULL);
    dom_up(&c, NULL);
    ba = d_bufmap(&a, 7, RW, 6);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 7, 1, &h, refs), 0);   /* the whole table */
    gcopy_init();
    for (unsigned p = 0; p < 7; p++)
        gseg(a.domid, refs[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), 0);
    d_patcheck(&b, LBUF, 0, 7 * XM_PAGE_SIZE, 6, 0);

    /* the owner dies without ending anything */
    dom_kill(&a);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[0], 0, 64, 0, XM_COPY_FROM_FOREIGN), -EPERM);
    assert_int_equal(d_gcopy1(&b, a.domid, refs[1], 0, 64, 0, XM_COPY_TO_FOREIGN), -EPERM);
    gcopy_init();
    for (unsigned p = 0; p < 7; p++)
        gseg(a.domid, refs[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), -EPERM);
    for (unsigned p = 0; p < 7; p++)
        assert_int_equal(gs.st[p], -EPERM);
    /* a process of the grantee domain that never met the owner: the same */
    snprintf(benv_s, sizeof(benv_s), "XENMPI_SIM_DOMID=%u", b.domid);
    dom_up(&b2, benv);
    assert_int_equal(b2.domid, b.domid);
    assert_int_equal(d_gcopy1(&b2, a.domid, refs[3], 0, 64, 0, XM_COPY_FROM_FOREIGN), -EPERM);

    /* its domain reclaims the dead process's entries */
    dom_up(&a2, aenv);
    assert_int_equal(a2.domid, a.domid);
    ba2 = d_bufmap(&a2, 7, RW, 8);
    assert_int_equal(d_gmem(&a2, c.domid, ba2, 0, 7, 1, &h2, refs2), 0);
    gcopy_init();
    for (unsigned p = 0; p < 7; p++)
        gseg(a.domid, refs2[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&c, &gs), 0);
    d_patcheck(&c, LBUF, 0, 7 * XM_PAGE_SIZE, 8, 0);
    /* the old refs name the new grants now: not b's */
    for (unsigned p = 0; p < 7; p++)
        assert_int_equal(d_gcopy1(&b, a.domid, refs[p], 0, 64, 0, XM_COPY_FROM_FOREIGN), -EPERM);

    /* an orderly exit ends the grants too */
    dom_quit(&a2);
    assert_int_equal(d_gcopy1(&c, a.domid, refs2[0], 0, 64, 0, XM_COPY_FROM_FOREIGN), -EPERM);
    dom_quit(&b);
    dom_quit(&b2);
    dom_quit(&c);
}

/* sim: a page the owner unmapped under its grant fails alone */
static void test_gmem_owner_unmapped(void **state)
{
    dom_t a, b;
    uint32_t refs[3];
    uint64_t h;
    int ba;
    struct gstats gs;

    (void)state;
    dom_up(&a, NULL);
    dom_up(&b, NULL);
    ba = d_bufmap(&a, 3, RW, 12);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 3, 1, &h, refs), 0);
    d_bufunmap(&a, ba, 1, 1);

    gcopy_init();
    for (unsigned p = 0; p < 3; p++)
        gseg(a.domid, refs[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), -EIO);
    assert_int_equal(gs.st[0], 0);
    assert_int_equal(gs.st[1], -EIO);
    assert_int_equal(gs.st[2], 0);
    assert_int_equal(gs.pvm, 2);   /* the rest goes again after the fault */
    d_patcheck(&b, LBUF, 0, XM_PAGE_SIZE, 12, 0);
    d_patcheck(&b, LBUF, 2 * XM_PAGE_SIZE, XM_PAGE_SIZE, 12, 2 * XM_PAGE_SIZE);

    d_patfill(&b, LBUF, 0, 3 * XM_PAGE_SIZE, 13, 0);
    gcopy_init();
    for (unsigned p = 0; p < 3; p++)
        gseg(a.domid, refs[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_TO_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), -EIO);
    assert_int_equal(gs.st[0], 0);
    assert_int_equal(gs.st[1], -EIO);
    assert_int_equal(gs.st[2], 0);
    d_patcheck(&a, ba, 0, XM_PAGE_SIZE, 13, 0);
    d_patcheck(&a, ba, 2 * XM_PAGE_SIZE, XM_PAGE_SIZE, 13, 2 * XM_PAGE_SIZE);

    /* pieces around the hole */
    d_patfill(&b, LBUF, 0x10000, 256, 0, 0);
    gcopy_init();
    gseg(a.domid, refs[0], 4000, 96, 0x10000, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, refs[1], 0, 10, 0x10060, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, refs[1], 10, 10, 0x1006a, XM_COPY_FROM_FOREIGN);
    gseg(a.domid, refs[2], 0, 50, 0x10074, XM_COPY_FROM_FOREIGN);
    assert_int_equal(d_gcopy(&b, &gs), -EIO);
    assert_int_equal(gs.st[0], 0);
    assert_int_equal(gs.st[1], -EIO);
    assert_int_equal(gs.st[2], -EIO);
    assert_int_equal(gs.st[3], 0);
    assert_int_equal(gs.pvm, 3);
    d_patcheck(&b, LBUF, 0x10000, 96, 13, 4000);
    d_patcheck(&b, LBUF, 0x10074, 50, 13, 2 * XM_PAGE_SIZE);

    assert_int_equal(d_gmem_end(&a, h), 0);
    dom_quit(&a);
    dom_quit(&b);
}


/* a grant ended (or ended and granted anew) while a copy is in flight:
 * the copy went through, but its segments report -EPERM */
static void test_gmem_end_during_copy(void **state)
{
    static const char *const small[] = { "XENMPI_SIM_GNTTAB_SIZE=5", NULL };   /* 4 usable */
    dom_t a, b;
    uint32_t refs[4], r2[4];
    uint64_t h, h2;
    int ba;
    struct gstats gs;

    (void)state;
    dom_up(&a, small);
    dom_up(&b, NULL);
    ba = d_bufmap(&a, 4, RW, 14);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 4, 1, &h, refs), 0);

    /* control: the same slow copy with nothing ended succeeds */
    gcopy_init();
    for (unsigned p = 0; p < 4; p++)
        gseg(a.domid, refs[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    d_gcopy_start(&b, 300);
    assert_int_equal(d_gcopy_end(&b, &gs), 0);
    assert_int_equal(gs.pvm, 1);

    /* ended during the copy: every segment -EPERM */
    gcopy_init();
    for (unsigned p = 0; p < 4; p++)
        gseg(a.domid, refs[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_FROM_FOREIGN);
    d_gcopy_start(&b, 300);   /* b has checked the entries and sleeps */
    assert_int_equal(d_gmem_end(&a, h), 0);
    assert_int_equal(d_gcopy_end(&b, &gs), -EPERM);
    assert_int_equal(gs.pvm, 1);
    for (unsigned p = 0; p < 4; p++)
        assert_int_equal(gs.st[p], -EPERM);

    /* ended and its entries granted anew (same pages, same peer: the table
     * holds only these four) during the copy: still not the grant the copy
     * was checked against */
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 4, 1, &h, refs), 0);
    gcopy_init();
    for (unsigned p = 0; p < 4; p++)
        gseg(a.domid, refs[p], 0, XM_PAGE_SIZE, p * XM_PAGE_SIZE, XM_COPY_TO_FOREIGN);
    d_gcopy_start(&b, 300);
    assert_int_equal(d_gmem_end(&a, h), 0);
    assert_int_equal(d_gmem(&a, b.domid, ba, 0, 4, 1, &h2, r2), 0);
    for (unsigned p = 0; p < 4; p++)
        assert_true(r2[p] == refs[0] || r2[p] == refs[1] || r2[p] == refs[2] ||
                    r2[p] == refs[3]);
    assert_int_equal(d_gcopy_end(&b, &gs), -EPERM);
    for (unsigned p = 0; p < 4; p++)
        assert_int_equal(gs.st[p], -EPERM);
    /* the new grant works */
    assert_int_equal(d_gcopy1(&b, a.domid, r2[3], 0, 64, 0, XM_COPY_FROM_FOREIGN), 0);
    assert_int_equal(d_gmem_end(&a, h2), 0);
    dom_quit(&a);
    dom_quit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grant_only_to_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_readonly_mprotect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_ended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_copy_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_stale_ref, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_table_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evtchn_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evtchn_claim_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_basic_perms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_watches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_watch_needs_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmap_notify_on_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmap_notify_on_unshare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_injection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sim_domid_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hosts_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_rw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_exhaustion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_coalesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_owner_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_owner_unmapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gmem_end_during_copy, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    RQ = calloc(1, sizeof(*RQ));
    RP = calloc(1, sizeof(*RP));
    if (!RQ || !RP)
        return 1;
    return cmocka_run_group_tests_name("sim backend", tests, NULL, NULL);
}
