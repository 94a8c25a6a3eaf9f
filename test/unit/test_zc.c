/*
 * Zero-copy unit tests: src/core/xm_zc.c driven over real sim channels.
 *
 * The zero-copy state is process-wide (one registry, one pair of caches,
 * one set of counters per process), so owner and peer are two forked
 * processes, each its own sim domain.  The owner is a small server: it
 * keeps progressing its endpoint and executes what it is asked over a
 * socketpair (allocate and fill memory, register, deregister, check
 * contents, report its counters, send raw records, grant pages by hand).
 * The peer drives each test; between two peers this cmocka process asks
 * the owner directly.  Children report failures on stderr and through
 * their exit status, which the cmocka process asserts.
 *
 * The endpoint hands every XM_REC_ZC_* record to the zero-copy service.
 * Each role's endpoint gets a tap service instead, standing in front of
 * the real one (xm_zc_service): a role can record what arrives
 * (TAP_RECORD) and, to play a hostile owner, keep it from the core
 * altogether (TAP_SWALLOW).  Everything else is the real core.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "xm_channel.h"
#include "xm_hv.h"
#include "xm_wire.h"
#include "xm_zc.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB (1ull << 20)
#define PG ((uint64_t)XM_PAGE_SIZE)
#define CHUNK XM_ZC_CHUNK_BYTES
#define CPAGES XM_ZC_CHUNK_PAGES
#define RING_PAGES 4u
#define RD XM_ZC_REMOTE_READ
#define WR XM_ZC_REMOTE_WRITE
#define GET XM_ZC_GET
#define PUT XM_ZC_PUT

/* The wire layouts of docs/wire.md ("Zero-copy messages"), written out
 * here rather than taken from the implementation. */
struct w_greq { uint64_t id; uint32_t chunk, flags; };
struct w_grep { uint64_t id; uint32_t chunk, flags, gen; int32_t status; uint32_t npages, pad; };
struct w_ginv { uint64_t id; uint32_t chunk, gen; };
_Static_assert(sizeof(struct w_greq) == 16, "GREQ");
_Static_assert(sizeof(struct w_grep) == 32, "GREP header");
_Static_assert(sizeof(struct w_ginv) == 16, "INVAL/ACK/REL");

/* ---- failures in the children ---- */

static const char *role = "test";
static int failures;

#define FAILMSG(...) do {                                                    \
        failures++;                                                          \
        fprintf(stderr, "%s:%d: [%s, pid %d] ", __FILE__, __LINE__, role,    \
                (int)getpid());                                              \
        fprintf(stderr, __VA_ARGS__);                                        \
        fputc('\n', stderr);                                                 \
    } while (0)
#define CHECK(c) do { if (!(c)) FAILMSG("check failed: %s", #c); } while (0)
#define CHECK_EQ(a, b) do {                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_)                                                        \
            FAILMSG("%s == %s: %lld != %lld", #a, #b, a_, b_);               \
    } while (0)
#define CHECK_LE(a, b) do {                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ > b_)                                                         \
            FAILMSG("%s <= %s: %lld > %lld", #a, #b, a_, b_);                \
    } while (0)
#define REQUIRE(c) do {                                                      \
        if (!(c)) { FAILMSG("required: %s", #c); fflush(stderr); _exit(1); } \
    } while (0)
#define REQUIRE_EQ(a, b) do {                                                \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_) {                                                      \
            FAILMSG("required %s == %s: %lld != %lld", #a, #b, a_, b_);      \
            fflush(stderr);                                                  \
            _exit(1);                                                        \
        }                                                                    \
    } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Memory contents: a function of the owner's address and a seed, so any
 * byte read from the wrong place or the wrong generation shows. */
static uint8_t pat(uint64_t a, uint64_t seed)
{
    uint64_t x = (a ^ (seed * 0xA24BAED4963EE407ull)) * 0x9E3779B97F4A7C15ull;
    return (uint8_t)(x >> 56);
}

static void fill(uint8_t *p, uint64_t raddr, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pat(raddr + i, seed);
}

static size_t mism(const uint8_t *p, uint64_t raddr, size_t n, uint64_t seed)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += p[i] != pat(raddr + i, seed);
    return bad;
}

static size_t not_byte(const uint8_t *p, size_t n, uint8_t b)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += p[i] != b;
    return bad;
}

/* ---- the tap on the records the channel hands to the core ---- */

enum { TAP_OFF, TAP_RECORD, TAP_SWALLOW };
#define T_BUSY 1   /* an adapter message the owner takes ms (u32) to handle */
struct tapmsg {
    uint16_t type;
    uint32_t len;
    uint8_t data[2048];
};
#define TAPQ 64u
static struct {
    int mode;
    unsigned head, tail, lost;
    struct tapmsg q[TAPQ];
} tap;

static xm_service_t tap_real;   /* the zero-copy service behind the tap */

static void tap_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    const xm_service_t *real = &tap_real;

    if (tap.mode != TAP_OFF) {
        if (tap.tail - tap.head < TAPQ) {
            struct tapmsg *m = &tap.q[tap.tail++ % TAPQ];
            m->type = type;
            m->len = (uint32_t)len;
            memcpy(m->data, data, len < sizeof(m->data) ? len : sizeof(m->data));
        } else {
            tap.lost++;
        }
    }
    if (tap.mode != TAP_SWALLOW)
        real->recv(real->arg, ch, type, data, len);
}

/* the real service with the tap in front of its receive side */
static int tap_attach(xm_endpoint_t *ep)
{
    xm_service_t s;
    int rc = xm_zc_service(ep, NULL, &s);

    if (rc)
        return rc;
    tap_real = s;
    s.recv = tap_recv;
    return xm_endpoint_add_service(ep, &s);
}

/* ---- one role's endpoint ---- */

static struct {
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    xm_channel_t *ch;
    int accepted, connected, gone, failed;
    unsigned other;
} me;

static void n_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    uint32_t ms;

    if (type == T_BUSY && len == sizeof(ms)) {
        /* a message whose handling keeps this progress busy for ms */
        memcpy(&ms, data, sizeof(ms));
        usleep(ms * 1000u);
        return;
    }
    me.other++;   /* nothing else but zero-copy records is ever sent */
}

static void n_event(void *arg, xm_channel_t *ch, enum xm_chan_event ev)
{
    switch (ev) {
    case XM_EV_ACCEPTED: me.ch = ch; me.accepted++; break;
    case XM_EV_CONNECTED: me.connected++; break;
    case XM_EV_PEER_GONE: me.gone++; break;
    case XM_EV_FAILED: me.failed++; break;
    }
}

static void node_open(unsigned ring_pages)
{
    xm_ep_params_t p = { .ring_pages = ring_pages, .recv_cb = n_recv, .event_cb = n_event };

    REQUIRE_EQ(xm_hv_open(&me.hv), 0);
    REQUIRE_EQ(xm_endpoint_open(me.hv, &p, &me.ep), 0);
    REQUIRE_EQ(tap_attach(me.ep), 0);
}

static void node_close(void)
{
    if (me.ep)
        xm_endpoint_close(me.ep);
    if (me.hv)
        xm_hv_close(me.hv);
    me.ep = NULL;
    me.hv = NULL;
    me.ch = NULL;
}

/* ---- control requests to the owner ---- */

enum {
    OP_INFO = 1,  /* -> v0 domid, v1 endpoint id, v2 its key */
    OP_ALLOC,     /* a0 slot, a1 len, a2 offset from a page, a3 seed -> v0 base */
    OP_FILL,      /* a0 slot, a1 seed */
    OP_REMAP,     /* a0 slot, a1 seed: munmap, mmap MAP_FIXED at the same address, fill */
    OP_REG,       /* a0 slot, a1 access, a2 offset in slot, a3 len -> v0 id */
    OP_DEREG,     /* a0 id */
    OP_CHECK,     /* a0 lo, a1 hi, a2 seed -> rc -EIO, v0 first bad, v1 bad bytes */
    OP_STATS,     /* a0: reset the maximum of owner_pages -> st, max, v0 chan state, v1 gone, v3 ring_full */
    OP_CONFIG,    /* a0 owner_cache_bytes, a1 peer_cache_bytes, a2 disable */
    OP_WAIT_GONE, /* progress until the current channel is down */
    OP_HOLD,      /* stop progressing until the next request */
    OP_EXIT_NOW,  /* answer, then _exit(0) closing nothing */
    OP_QUIT,      /* close and exit */
    OP_TAP,       /* a0 mode */
    OP_TAPGET,    /* -> v0 type, v1 length, data (or -EAGAIN) */
    OP_RAWSEND,   /* a0 type, data: xm_chan_send */
    OP_GRANT,     /* a0 addr, a1 pages, a2 writable: xm_hv_grant_mem to the peer -> v0 handle, data refs */
    OP_GRANT_END, /* a0 handle */
    OP_TOUCH,     /* a0 id: xm_zc_touch */
    OP_PROGRESS,  /* a0 ms: progress that long before answering */
    OP_RC_GET,    /* a0 slot, a1 access, a2 offset in slot, a3 len, a4 max_unused: the
                     registration cache (opened on first use) -> v0 id */
    OP_RC_PUT,    /* a0 id */
    OP_RC_STATS,  /* -> v0 hits, v1 misses, v2 stale, v3 unused, v4 keeps */
    OP_STALE,     /* a0: 1 the backend reports every grant made so far stale at its next
                     report, 2 it cannot report (-ENOTSUP), 0 back to the real one */
    OP_INVALIDATE, /* a0 slot, a1 offset in slot, a2 len: xm_zc_invalidate (a memory event) */
};

struct cmd {
    uint64_t seq;
    int32_t op;
    uint32_t len;
    uint64_t a[6];
    uint8_t data[4096];
};

struct rep {
    uint64_t seq;
    int32_t rc;
    uint32_t len;
    uint64_t v[6];
    xm_zc_stats_t st;
    uint64_t max_owner_pages;
    uint8_t data[4096];
};

static int ctl = -1;
static uint64_t ctl_seq;
static struct rep R;

/* Ask the owner; progress (our endpoint) while waiting only when asked:
 * several tests depend on the peer not consuming the owner's messages
 * meanwhile. */
static int rpc_try(int op, const uint64_t a[6], const void *data, uint32_t len, int progress)
{
    struct cmd c;
    double end = now() + 60;

    memset(&c, 0, offsetof(struct cmd, data));
    c.seq = (uint64_t)getpid() << 32 | ++ctl_seq;
    c.op = op;
    c.len = len;
    memcpy(c.a, a, sizeof(c.a));
    if (len)
        memcpy(c.data, data, len);
    if (send(ctl, &c, offsetof(struct cmd, data) + len, MSG_NOSIGNAL) < 0)
        return -errno;
    for (;;) {
        struct pollfd p = { .fd = ctl, .events = POLLIN };
        if (poll(&p, 1, progress ? 0 : 10) == 1) {
            ssize_t n = recv(ctl, &R, sizeof(R), 0);
            if (n <= 0)
                return -EPIPE;
            if (R.seq == c.seq)
                return 0;
            continue;   /* an answer to someone gone */
        }
        if (progress && me.ep && xm_endpoint_progress(me.ep) <= 0)
            usleep(50);
        if (now() > end)
            return -ETIMEDOUT;
    }
}

static struct rep *rpc(int op, const uint64_t a[6], const void *data, uint32_t len)
{
    int rc = rpc_try(op, a, data, len, 0);

    if (rc) {
        FAILMSG("control request %d: %s", op, strerror(-rc));
        fflush(stderr);
        _exit(1);
    }
    return &R;
}

#define RPC(op, ...) rpc((op), (const uint64_t[6]){ __VA_ARGS__ }, NULL, 0)

/* ---- the owner server ---- */

struct owner_opts {
    const char *gnttab;   /* XENMPI_SIM_GNTTAB_SIZE for the owner's domain */
    unsigned ring_pages;
    const char *domid;    /* XENMPI_SIM_DOMID: a domain shared with the peer */
};

#define NSLOTS 4
static struct slot {
    uint8_t *map;
    size_t maplen;
    uint64_t base, len;
} slots[NSLOTS];
static uint64_t max_owner_pages;

/* The owner's backend with its stale reports under the test's control:
 * the sim's own grants follow the mapping and are never stale, so the
 * test plays the Xen module telling that pages changed under grants. */
static xm_hv_ops_t stale_ops;
static const xm_hv_ops_t *real_ops;
static int stale_mode;
#define MAX_HANDLES 256
static uint64_t handles[MAX_HANDLES];
static unsigned nhandles, nreported;
static xm_zc_regcache_t *rcache;

static int rec_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr, unsigned count, int writable,
                         uint64_t *handle, uint32_t *refs)
{
    int rc = real_ops->grant_mem(hv, peer, addr, count, writable, handle, refs);
    if (rc == 0 && nhandles < MAX_HANDLES)
        handles[nhandles++] = *handle;
    return rc;
}

static int fake_stale(xm_hv_t *hv, uint64_t *h, unsigned max)
{
    unsigned n = 0;

    if (stale_mode == 2)
        return -ENOTSUP;
    if (stale_mode != 1)
        return real_ops->grant_mem_stale(hv, h, max);
    while (nreported < nhandles && n < max)
        h[n++] = handles[nreported++];
    return (int)n;
}

static void owner_progress(void)
{
    xm_zc_stats_t s;

    xm_endpoint_progress(me.ep);
    xm_zc_get_stats(&s);
    if (s.owner_pages > max_owner_pages)
        max_owner_pages = s.owner_pages;
}

static void owner_cmd(const struct cmd *c, struct rep *r, int *hold)
{
    const uint64_t *a = c->a;
    struct slot *s = &slots[a[0] % NSLOTS];

    switch (c->op) {
    case OP_INFO:
        r->v[0] = xm_hv_domid(me.hv);
        r->v[1] = xm_endpoint_id(me.ep);
        r->v[2] = xm_endpoint_key(me.ep);
        break;
    case OP_ALLOC:
        s->maplen = ((a[2] + a[1] + PG - 1) & ~(PG - 1)) + PG;
        s->map = mmap(NULL, s->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (s->map == MAP_FAILED) {
            r->rc = -errno;
            break;
        }
        s->base = (uintptr_t)s->map + a[2];
        s->len = a[1];
        fill((uint8_t *)(uintptr_t)s->base, s->base, s->len, a[3]);
        r->v[0] = s->base;
        r->v[1] = s->len;
        break;
    case OP_FILL:
        fill((uint8_t *)(uintptr_t)s->base, s->base, s->len, a[1]);
        break;
    case OP_REMAP: {
        void *p;
        if (munmap(s->map, s->maplen)) {
            r->rc = -errno;
            break;
        }
        p = mmap(s->map, s->maplen, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p != s->map) {
            r->rc = -EADDRNOTAVAIL;
            break;
        }
        fill((uint8_t *)(uintptr_t)s->base, s->base, s->len, a[1]);
        break;
    }
    case OP_REG:
        r->rc = xm_zc_reg((void *)(uintptr_t)(s->base + a[2]), a[3], (unsigned)a[1], &r->v[0]);
        break;
    case OP_DEREG:
        r->rc = xm_zc_dereg(a[0]);
        break;
    case OP_INVALIDATE:
        xm_zc_invalidate((void *)(uintptr_t)(s->base + a[1]), a[2]);
        break;
    case OP_CHECK: {
        const uint8_t *p = (const uint8_t *)(uintptr_t)a[0];
        for (uint64_t i = 0; i < a[1] - a[0]; i++)
            if (p[i] != pat(a[0] + i, a[2])) {
                if (!r->v[1]++)
                    r->v[0] = a[0] + i;
            }
        r->rc = r->v[1] ? -EIO : 0;
        break;
    }
    case OP_STATS:
        xm_zc_get_stats(&r->st);
        r->max_owner_pages = max_owner_pages;
        if (a[0])
            max_owner_pages = r->st.owner_pages;
        r->v[0] = me.ch ? (uint64_t)xm_chan_state(me.ch) : UINT64_MAX;
        r->v[1] = (uint64_t)me.gone;
        r->v[2] = me.other;
        if (me.ch) {
            xm_chan_stats_t cs;
            xm_chan_get_stats(me.ch, &cs);
            r->v[3] = cs.ring_full;
        }
        break;
    case OP_CONFIG: {
        xm_zc_config_t cfg = { a[0], a[1], (int)a[2] };
        xm_zc_configure(me.ep, &cfg);
        break;
    }
    case OP_WAIT_GONE: {
        double end = now() + 20;
        while (me.ch && xm_chan_state(me.ch) == XM_CH_CONNECTED && now() < end) {
            owner_progress();
            usleep(200);
        }
        r->rc = me.ch && xm_chan_state(me.ch) != XM_CH_CONNECTED ? 0 : -ETIMEDOUT;
        break;
    }
    case OP_HOLD:
        *hold = 1;
        break;
    case OP_EXIT_NOW:
    case OP_QUIT:
        break;
    case OP_TAP:
        tap.mode = (int)a[0];
        tap.head = tap.tail = tap.lost = 0;
        break;
    case OP_TAPGET:
        if (tap.head == tap.tail) {
            r->rc = -EAGAIN;
        } else {
            const struct tapmsg *m = &tap.q[tap.head++ % TAPQ];
            r->v[0] = m->type;
            r->v[1] = m->len;
            r->len = m->len < sizeof(m->data) ? m->len : sizeof(m->data);
            memcpy(r->data, m->data, r->len);
        }
        break;
    case OP_RAWSEND:
        r->rc = me.ch ? xm_chan_send(me.ch, (uint16_t)a[0], NULL, 0, c->data, c->len) : -ENOTCONN;
        break;
    case OP_GRANT: {
        uint32_t refs[CPAGES + 8];
        if (!me.ch || a[1] > CPAGES + 8) {
            r->rc = -EINVAL;
            break;
        }
        r->rc = xm_hv_grant_mem(me.hv, xm_chan_peer_dom(me.ch), (void *)(uintptr_t)a[0],
                                (unsigned)a[1], (int)a[2], &r->v[0], refs);
        if (!r->rc) {
            r->len = (uint32_t)(a[1] * sizeof(uint32_t));
            memcpy(r->data, refs, r->len);
        }
        break;
    }
    case OP_GRANT_END:
        r->rc = xm_hv_grant_mem_end(me.hv, a[0]);
        break;
    case OP_TOUCH:
        xm_zc_touch(a[0]);
        break;
    case OP_PROGRESS:
        for (double end = now() + (double)a[0] / 1e3; now() < end;)
            owner_progress();
        break;
    case OP_RC_GET:
        if (!rcache && (r->rc = xm_zc_regcache_open(me.ep, (unsigned)a[4], &rcache)))
            break;
        r->rc = xm_zc_regcache_get(rcache, (void *)(uintptr_t)(s->base + a[2]), a[3],
                                   (unsigned)a[1], &r->v[0]);
        break;
    case OP_RC_PUT:
        r->rc = rcache ? xm_zc_regcache_put(rcache, a[0]) : -ENOENT;
        break;
    case OP_RC_STATS: {
        xm_zc_regcache_stats_t st = { 0 };
        if (rcache)
            xm_zc_regcache_stats(rcache, &st);
        r->v[0] = st.hits;
        r->v[1] = st.misses;
        r->v[2] = st.stale;
        r->v[3] = st.unused;
        r->v[4] = (uint64_t)st.keeps;
        break;
    }
    case OP_STALE:
        if (!real_ops) {
            real_ops = me.hv->ops;
            stale_ops = *real_ops;
            stale_ops.grant_mem = rec_grant_mem;
            stale_ops.grant_mem_stale = fake_stale;
            me.hv->ops = &stale_ops;
        }
        stale_mode = (int)a[0];
        break;
    default:
        r->rc = -ENOSYS;
    }
}

static int owner_fn(const void *arg)
{
    const struct owner_opts *o = arg;
    int hold = 0;

    role = "owner";
    if (o && o->gnttab)
        setenv("XENMPI_SIM_GNTTAB_SIZE", o->gnttab, 1);   /* before the domain exists */
    if (o && o->domid)
        setenv("XENMPI_SIM_DOMID", o->domid, 1);
    node_open(o && o->ring_pages ? o->ring_pages : RING_PAGES);
    for (;;) {
        struct pollfd p = { .fd = ctl, .events = POLLIN };
        static struct cmd c;
        static struct rep r;
        ssize_t n;

        if (!hold)
            owner_progress();
        if (poll(&p, 1, hold ? -1 : 1) != 1)
            continue;
        n = recv(ctl, &c, sizeof(c), 0);
        if (n <= 0)
            return 1;   /* everybody went away without saying goodbye */
        /* whatever the peer sent before this request is handled first */
        if (!hold)
            owner_progress();
        hold = 0;
        memset(&r, 0, offsetof(struct rep, data));
        r.seq = c.seq;
        owner_cmd(&c, &r, &hold);
        send(ctl, &r, offsetof(struct rep, data) + r.len, MSG_NOSIGNAL);
        if (c.op == OP_EXIT_NOW) {
            fflush(stderr);
            _exit(failures ? 1 : 0);
        }
        if (c.op == OP_QUIT) {
            CHECK_EQ(me.other, 0);
            xm_zc_regcache_close(rcache);
            rcache = NULL;
            node_close();
            return 0;
        }
    }
}

/* ---- the peer's side ---- */

struct op {
    int done, status;
};

static void op_cb(void *arg, int status)
{
    struct op *o = arg;
    o->done++;
    o->status = status;
}

static int ops_done(const struct op *o, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!o[i].done)
            return 0;
    return 1;
}

static void pump(unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        xm_endpoint_progress(me.ep);
        usleep(100);
    }
}

#define PUMP_UNTIL(cond, secs) do {                                          \
        double end_ = now() + (secs);                                        \
        while (!(cond)) {                                                    \
            if (xm_endpoint_progress(me.ep) <= 0)                            \
                usleep(50);                                                  \
            if (now() > end_) {                                              \
                FAILMSG("timed out waiting for %s", #cond);                  \
                break;                                                       \
            }                                                                \
        }                                                                    \
    } while (0)

static uint32_t owner_dom;

static void peer_connect(unsigned ring_pages)
{
    struct rep *r;
    double end;

    role = "peer";
    node_open(ring_pages);
    r = RPC(OP_INFO, 0);
    owner_dom = (uint32_t)r->v[0];
    REQUIRE_EQ(xm_endpoint_connect(me.ep, owner_dom, (uint32_t)r->v[1], r->v[2], &me.ch), 0);
    end = now() + 20;
    while (xm_chan_state(me.ch) == XM_CH_CONNECTING && now() < end) {
        xm_endpoint_progress(me.ep);
        usleep(100);
    }
    REQUIRE_EQ(xm_chan_state(me.ch), XM_CH_CONNECTED);
}

/* xm_zc_copy; a synchronous result is recorded in o as if called back */
static int zcopy(uint64_t id, uint64_t base, uint64_t len, uint64_t raddr, void *local,
                 size_t n, int dir, struct op *o)
{
    int rc;

    memset(o, 0, sizeof(*o));
    rc = xm_zc_copy(me.ch, id, base, len, raddr, local, n, dir, op_cb, o);
    CHECK_EQ(o->done, 0);   /* the callback never runs inside xm_zc_copy */
    if (rc != -EINPROGRESS) {
        o->done = 1;
        o->status = rc;
    }
    return rc;
}

/* one copy, waited for: its final status; *sync: it was done in the call */
static int copy1(uint64_t id, uint64_t base, uint64_t len, uint64_t raddr, void *local,
                 size_t n, int dir, int *sync)
{
    struct op o;
    int rc = zcopy(id, base, len, raddr, local, n, dir, &o);

    if (sync)
        *sync = rc != -EINPROGRESS;
    PUMP_UNTIL(o.done, 20);
    CHECK_EQ(o.done, 1);
    return o.status;
}

static xm_zc_stats_t zs(void)
{
    xm_zc_stats_t s;
    xm_zc_get_stats(&s);
    return s;
}

static uint64_t owner_max;

/* the owner's counters, after it handled everything we sent before */
static xm_zc_stats_t ozs(int reset_max)
{
    struct rep *r = RPC(OP_STATS, (uint64_t)reset_max);
    owner_max = r->max_owner_pages;
    return r->st;
}

static uint64_t alloc_slot(unsigned slot, uint64_t len, uint64_t off, uint64_t seed)
{
    struct rep *r = RPC(OP_ALLOC, slot, len, off, seed);
    REQUIRE_EQ(r->rc, 0);
    REQUIRE_EQ(r->v[0] % PG, off % PG);
    return r->v[0];
}

static uint64_t reg_slot(unsigned slot, unsigned access, uint64_t off, uint64_t len)
{
    struct rep *r = RPC(OP_REG, slot, access, off, len);
    REQUIRE_EQ(r->rc, 0);
    REQUIRE(r->v[0] != 0);
    return r->v[0];
}

/* bytes of [lo, hi) of the owner's memory that differ from seed's pattern */
static long long owner_check(uint64_t lo, uint64_t hi, uint64_t seed)
{
    struct rep *r = RPC(OP_CHECK, lo, hi, seed);
    if (r->rc)
        fprintf(stderr, "[peer] owner memory [%#llx, %#llx) seed %llu: %llu bad bytes from %#llx\n",
                (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)seed,
                (unsigned long long)r->v[1], (unsigned long long)r->v[0]);
    return (long long)r->v[1];
}

/* ======================================================================
 * 1. GET: pieces, misses then hits, byte-exact contents
 * ====================================================================== */

static int peer_basic(const void *arg)
{
    const uint64_t off = 100, len = 3 * MiB + 3 * PG + 777, seed = 11;
    uint64_t base, gs, ge, id, a;
    xm_zc_stats_t p0, p1, p2, o0, o1, o2;
    unsigned k;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, off, seed);
    gs = base - off + PG;               /* first whole page */
    ge = gs + 3 * MiB + 2 * PG;         /* end of the last whole page */
    id = reg_slot(0, RD, 0, len);

    /* the pieces of the whole registration, exactly: partial head page,
     * three full chunks counted from gs, a chunk of two pages, partial tail */
    const struct { uint64_t raddr; size_t n; int zc; } want[] = {
        { base, PG - off, 0 },
        { gs, CHUNK, 1 },
        { gs + CHUNK, CHUNK, 1 },
        { gs + 2 * CHUNK, CHUNK, 1 },
        { gs + 3 * CHUNK, 2 * PG, 1 },
        { ge, 877, 0 },
    };
    for (a = base, k = 0; a < base + len; k++) {
        int zc = -1;
        size_t n = xm_zc_piece(base, len, a, base + len - a, &zc);
        REQUIRE(k < 6);
        CHECK_EQ(a, want[k].raddr);
        CHECK_EQ(n, want[k].n);
        CHECK_EQ(zc, want[k].zc);
        REQUIRE(n > 0);
        a += n;
    }
    CHECK_EQ(k, 6);
    CHECK_EQ(a, base + len);

    uint8_t *lb = malloc(len);
    REQUIRE(lb);
#define L(ra) (lb + ((ra) - base))
    memset(lb, 0xEE, len);

    /* round 1: every zero-copy piece at once; chunk 1 in two copies that
     * wait for the same grant */
    const struct { uint64_t ra; size_t n; } cp[] = {
        { gs, CHUNK },
        { gs + CHUNK, CHUNK / 2 + 5 },
        { gs + CHUNK + CHUNK / 2 + 5, CHUNK / 2 - 5 },
        { gs + 2 * CHUNK, CHUNK },
        { gs + 3 * CHUNK, 2 * PG },
    };
    struct op ops[6];
    p0 = zs();
    o0 = ozs(0);
    for (unsigned i = 0; i < 5; i++)
        CHECK_EQ(zcopy(id, base, len, cp[i].ra, L(cp[i].ra), cp[i].n, GET, &ops[i]), -EINPROGRESS);
    PUMP_UNTIL(ops_done(ops, 5), 20);
    for (unsigned i = 0; i < 5; i++) {
        CHECK_EQ(ops[i].done, 1);
        CHECK_EQ(ops[i].status, 0);
    }
    CHECK_EQ(mism(L(gs), gs, ge - gs, seed), 0);
    CHECK_EQ(not_byte(lb, gs - base, 0xEE), 0);           /* partial pages untouched */
    CHECK_EQ(not_byte(L(ge), base + len - ge, 0xEE), 0);
    p1 = zs();
    o1 = ozs(0);
    CHECK_EQ(p1.misses - p0.misses, 5);
    CHECK_EQ(p1.hits - p0.hits, 0);
    CHECK_EQ(p1.zc_bytes - p0.zc_bytes, ge - gs);
    CHECK_EQ(p1.peer_pages, 3 * CPAGES + 2);
    CHECK_EQ(p1.rejected, p0.rejected);
    CHECK_EQ(o1.grants - o0.grants, 4);                    /* one per chunk, not per copy */
    CHECK_EQ(o1.granted_pages - o0.granted_pages, 3 * CPAGES + 2);
    CHECK_EQ(o1.owner_pages, 3 * CPAGES + 2);
    CHECK_EQ(o1.rejected, o0.rejected);

    /* round 2, same ranges: all hits, done inside the call */
    memset(lb, 0xEE, len);
    for (unsigned i = 0; i < 5; i++)
        CHECK_EQ(zcopy(id, base, len, cp[i].ra, L(cp[i].ra), cp[i].n, GET, &ops[i]), 0);
    CHECK_EQ(mism(L(gs), gs, ge - gs, seed), 0);
    /* an odd range across page boundaries writes exactly its bytes */
    uint8_t odd[4 * PG + 20];
    const uint64_t ora = gs + 2 * CHUNK + 5;
    const size_t on = 3 * PG + 10;
    memset(odd, 0xEE, sizeof(odd));
    CHECK_EQ(zcopy(id, base, len, ora, odd + 7, on, GET, &ops[5]), 0);
    CHECK_EQ(not_byte(odd, 7, 0xEE), 0);
    CHECK_EQ(mism(odd + 7, ora, on, seed), 0);
    CHECK_EQ(not_byte(odd + 7 + on, sizeof(odd) - 7 - on, 0xEE), 0);
    pump(20);
    for (unsigned i = 0; i < 6; i++)
        CHECK_EQ(ops[i].done, 1);                          /* no late callback */
    p2 = zs();
    o2 = ozs(0);
    CHECK_EQ(p2.hits - p1.hits, 6);
    CHECK_EQ(p2.misses - p1.misses, 0);
    CHECK_EQ(o2.grants - o1.grants, 0);

    /* refused at once: not one zero-copy piece, or no such direction */
    struct op e;
    uint8_t tmp[64];
    CHECK_EQ(zcopy(id, base, len, gs, tmp, 0, GET, &e), -EINVAL);
    CHECK_EQ(zcopy(id, base, len, base, tmp, 10, GET, &e), -EINVAL);              /* head page */
    CHECK_EQ(zcopy(id, base, len, gs - 5, tmp, 10, GET, &e), -EINVAL);            /* straddles gs */
    CHECK_EQ(zcopy(id, base, len, gs + CHUNK - 10, tmp, 20, GET, &e), -EINVAL);   /* two chunks */
    CHECK_EQ(zcopy(id, base, len, ge - 10, tmp, 20, GET, &e), -EINVAL);           /* into the tail */
    CHECK_EQ(zcopy(id, base, len, ge, tmp, 20, GET, &e), -EINVAL);                /* the tail */
    CHECK_EQ(zcopy(id, base, len, gs, tmp, 10, 2, &e), -EINVAL);
    CHECK_EQ(zcopy(id, 0, 1ull << 60, 1ull << 53, tmp, 10, GET, &e), -EINVAL);    /* chunk > 32 bits */
    xm_zc_config_t off_cfg = { 0, 0, 1 }, on_cfg = { 0, 0, 0 };
    xm_zc_configure(me.ep, &off_cfg);
    CHECK_EQ(zcopy(id, base, len, gs, tmp, 10, GET, &e), -ENOTSUP);
    xm_zc_configure(me.ep, &on_cfg);
    CHECK_EQ(zcopy(id, base, len, gs, tmp, 10, GET, &e), 0);
    CHECK_EQ(mism(tmp, gs, 10, seed), 0);
    xm_zc_stats_t p3 = zs();
    CHECK_EQ(p3.misses - p2.misses, 0);
    CHECK_EQ(p3.hits - p2.hits, 1);
#undef L
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * 2. PUT: refused on a read-only registration, writes a writable one
 * ====================================================================== */

static int peer_put(const void *arg)
{
    const uint64_t off = 3000, len = MiB + 2 * PG + 50;
    uint64_t base, gs, ge, idR, idRW, idW;
    xm_zc_stats_t o0, o1, p0, p1;
    int sync;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, off, 21);
    gs = base - off + PG;
    ge = gs + MiB + PG;                /* chunk 0: 256 pages, chunk 1: one page */
    idR = reg_slot(0, RD, 0, len);
    idRW = reg_slot(0, RD | WR, 0, len);
    idW = reg_slot(0, WR, 0, len);

    uint8_t *lb = malloc(len), *scratch = malloc(CHUNK);
    REQUIRE(lb && scratch);
#define L(ra) (lb + ((ra) - base))
    fill(lb, base, len, 22);

    o0 = ozs(0);
    CHECK_EQ(copy1(idR, base, len, gs, L(gs), CHUNK, PUT, &sync), -EACCES);
    CHECK(!sync);
    CHECK_EQ(copy1(idR, base, len, gs + CHUNK, L(gs + CHUNK), PG, PUT, &sync), -EACCES);
    /* and the other way round: a write-only registration cannot be read */
    memset(scratch, 0xEE, CHUNK);
    CHECK_EQ(copy1(idW, base, len, gs, scratch, CHUNK, GET, &sync), -EACCES);
    CHECK_EQ(not_byte(scratch, CHUNK, 0xEE), 0);
    CHECK_EQ(owner_check(base, base + len, 21), 0);        /* not a byte changed */
    o1 = ozs(0);
    CHECK_EQ(o1.grants - o0.grants, 0);
    CHECK_EQ(o1.owner_pages, 0);

    /* writable: the whole pages change, the partial ones do not */
    CHECK_EQ(copy1(idRW, base, len, gs, L(gs), CHUNK, PUT, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(copy1(idRW, base, len, gs + CHUNK, L(gs + CHUNK), PG, PUT, &sync), 0);
    CHECK_EQ(owner_check(gs, ge, 22), 0);
    CHECK_EQ(owner_check(base, gs, 21), 0);
    CHECK_EQ(owner_check(ge, base + len, 21), 0);
    o1 = ozs(0);
    CHECK_EQ(o1.grants - o0.grants, 2);
    /* a writable grant serves a GET too; the read-only id is another entry */
    memset(scratch, 0, CHUNK);
    CHECK_EQ(copy1(idRW, base, len, gs, scratch, CHUNK, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(scratch, gs, CHUNK, 22), 0);
    memset(scratch, 0, CHUNK);
    CHECK_EQ(copy1(idR, base, len, gs, scratch, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(scratch, gs, CHUNK, 22), 0);

    /* a read grant cached first does not serve a PUT: it asks for a
     * writable one */
    uint64_t b1 = alloc_slot(1, MiB, 0, 23), idB = reg_slot(1, RD | WR, 0, MiB);
    CHECK_EQ(copy1(idB, b1, MiB, b1, scratch, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(scratch, b1, MiB, 23), 0);
    fill(scratch, b1, MiB, 24);
    p0 = zs();
    CHECK_EQ(copy1(idB, b1, MiB, b1, scratch, CHUNK, PUT, &sync), 0);
    CHECK(!sync);
    p1 = zs();
    CHECK_EQ(p1.hits - p0.hits, 0);
    CHECK_EQ(p1.misses - p0.misses, 1);
    CHECK_EQ(owner_check(b1, b1 + MiB, 24), 0);
    /* a small PUT at an odd place writes exactly its bytes */
    uint8_t small[100];
    fill(small, b1 + 5, sizeof(small), 25);
    CHECK_EQ(copy1(idB, b1, MiB, b1 + 5, small, sizeof(small), PUT, &sync), 0);
    CHECK(sync);
    CHECK_EQ(owner_check(b1, b1 + 5, 24), 0);
    CHECK_EQ(owner_check(b1 + 5, b1 + 105, 25), 0);
    CHECK_EQ(owner_check(b1 + 105, b1 + MiB, 24), 0);
#undef L
    free(lb);
    free(scratch);
    node_close();
    return 0;
}

/* ======================================================================
 * 3. Invalidation: deregistration, reuse of the addresses under a new id
 * ====================================================================== */

/* the two whole chunks from gs of registration id, into lb, checked */
/* read the two whole chunks at gs; the owner's counters after it, which
 * hold two chunks granted */
static xm_zc_stats_t get_two_chunks(uint64_t id, uint64_t base, uint64_t len, uint64_t gs,
                                    uint8_t *lb, uint64_t seed)
{
    for (unsigned c = 0; c < 2; c++)
        CHECK_EQ(copy1(id, base, len, gs + c * CHUNK, lb + c * CHUNK, CHUNK, GET, NULL), 0);
    CHECK_EQ(mism(lb, gs, 2 * CHUNK, seed), 0);
    xm_zc_stats_t o = ozs(0);
    CHECK_EQ(o.owner_pages, 2 * CPAGES);
    return o;
}

/* Connected, two chunks of a registration of 2 MiB + a page granted to us
 * and read; then our zero-copy records are swallowed (no ACK from our
 * core) and the owner deregisters it.  The owner's counters from before. */
struct withdrawn {
    uint64_t base, gs, id, len;
    uint8_t *lb;
    double t;   /* when the deregistration was asked for */
};
static xm_zc_stats_t two_withdrawn(uint64_t seed, struct withdrawn *w)
{
    const uint64_t off = 300;
    xm_zc_stats_t o0;

    w->len = 2 * MiB + PG;
    peer_connect(RING_PAGES);
    w->base = alloc_slot(0, w->len, off, seed);
    w->gs = w->base - off + PG;
    w->id = reg_slot(0, RD, 0, w->len);
    w->lb = malloc(2 * CHUNK);
    REQUIRE(w->lb);
    o0 = get_two_chunks(w->id, w->base, w->len, w->gs, w->lb, seed);
    tap.mode = TAP_SWALLOW;
    tap.head = tap.tail = tap.lost = 0;
    w->t = now();
    CHECK_EQ(RPC(OP_DEREG, w->id)->rc, 0);
    return o0;
}

/* A peer that never acknowledges INVAL keeps nothing: XENMPI_ZC_INVAL_TIMEOUT
 * (0.3 s here) after the withdrawal the owner ends the grants itself, and
 * the refs the peer still holds reach nothing. */
static int peer_inval_ignored(const void *arg)
{
    struct withdrawn w;
    xm_zc_stats_t o0, o1;
    int sync;

    /* we swallow every zero-copy record from now on: no ACK ever */
    o0 = two_withdrawn(37, &w);
    double t0 = w.t;
    PUMP_UNTIL(ozs(0).owner_pages == 0, 10);
    double took = now() - t0;
    fprintf(stderr, "# the unacknowledged grants ended %.3f s after the withdrawal\n", took);
    o1 = ozs(0);
    CHECK_EQ(o1.revokes - o0.revokes, 2);
    CHECK_EQ(o1.expired - o0.expired, 2);
    CHECK(took >= 0.25);   /* not before the deadline */
    CHECK(took < 5);
    CHECK(tap.tail - tap.head >= 2);   /* the INVALs came, and were ignored */
    /* our cached refs: the copy through them fails, we ask again, and the
     * registration is gone: nothing is read */
    tap.mode = TAP_OFF;
    memset(w.lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(w.id, w.base, w.len, w.gs, w.lb, CHUNK, GET, &sync), -ENOENT);
    CHECK_EQ(not_byte(w.lb, CHUNK, 0xEE), 0);
    free(w.lb);
    node_close();
    return 0;
}

/* An ACK that reaches the owner's ring while the owner is busy in one long
 * progress call, after it polled that ring, is not a missing ACK: the
 * owner reads it before it would end the grant.  The INVALs are held back
 * from our core (the tap) and acknowledged by hand, behind a message whose
 * handling keeps the owner busy for 0.6 s, past its 0.3 s deadline. */
static int tap_pop(uint16_t *type, void *buf, size_t *len);
static int peer_inval_ack_late_read(const void *arg)
{
    struct withdrawn w;
    xm_zc_stats_t o0, o1;
    uint16_t type = 0;
    size_t n = 0;
    uint8_t inval[2][64];
    uint32_t busy = 600;

    o0 = two_withdrawn(38, &w);
    PUMP_UNTIL(tap.tail - tap.head >= 2, 10);   /* both INVALs sent: deadlines run */
    for (int k = 0; k < 2; k++) {
        n = sizeof(inval[k]);
        CHECK_EQ(tap_pop(&type, inval[k], &n), 1);
        CHECK_EQ(type, XM_REC_ZC_INVAL);
    }
    tap.mode = TAP_OFF;
    CHECK_EQ(xm_chan_send(me.ch, T_BUSY, NULL, 0, &busy, sizeof(busy)), 0);
    usleep(150 * 1000);   /* the owner is in that message's handler now */
    for (int k = 0; k < 2; k++)
        CHECK_EQ(xm_chan_send(me.ch, XM_REC_ZC_ACK, NULL, 0, inval[k], n), 0);
    PUMP_UNTIL(ozs(0).owner_pages == 0, 10);
    o1 = ozs(0);
    CHECK_EQ(o1.expired - o0.expired, 0);     /* ended by the ACKs */
    CHECK_EQ(o1.rejected - o0.rejected, 0);   /* which were not stale */
    free(w.lb);
    node_close();
    return 0;
}

static int peer_inval(const void *arg)
{
    const int remap = arg != NULL;
    const uint64_t off = 300, len = 2 * MiB + PG, s1 = 31, s2 = 32;
    uint64_t base, gs, id1, id2;
    xm_zc_stats_t p0, p1, o0, o1, o2;
    struct op ops[2];
    int sync;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, off, s1);
    gs = base - off + PG;              /* two whole chunks from gs */
    id1 = reg_slot(0, RD, 0, len);
    uint8_t *lb = malloc(2 * CHUNK);
    REQUIRE(lb);
    o0 = get_two_chunks(id1, base, len, gs, lb, s1);
    p0 = zs();
    CHECK_EQ(p0.peer_pages, 2 * CPAGES);
    CHECK_EQ(o0.owner_pages, 2 * CPAGES);

    /* the owner forgets id1 and reuses the addresses; we do not progress
     * meanwhile, so the old grants are still in our cache */
    CHECK_EQ(RPC(OP_DEREG, id1)->rc, 0);
    if (remap)
        CHECK_EQ(RPC(OP_REMAP, 0, s2)->rc, 0);
    else
        CHECK_EQ(RPC(OP_FILL, 0, s2)->rc, 0);
    id2 = reg_slot(0, RD, 0, len);
    CHECK(id2 != id1);

    /* the new id never meets the old refs: misses, new data */
    memset(lb, 0xEE, 2 * CHUNK);
    for (unsigned c = 0; c < 2; c++)
        CHECK_EQ(zcopy(id2, base, len, gs + c * CHUNK, lb + c * CHUNK, CHUNK, GET, &ops[c]),
                 -EINPROGRESS);
    p1 = zs();
    CHECK_EQ(p1.misses - p0.misses, 2);
    CHECK_EQ(p1.hits - p0.hits, 0);
    PUMP_UNTIL(ops_done(ops, 2), 20);
    CHECK_EQ(ops[0].status, 0);
    CHECK_EQ(ops[1].status, 0);
    CHECK_EQ(mism(lb, gs, 2 * CHUNK, s2), 0);

    /* the INVALs arrive, we drop the old grants and ACK; the owner ends them */
    PUMP_UNTIL(zs().peer_pages == 2 * CPAGES, 10);
    o1 = ozs(0);
    CHECK_EQ(o1.revokes - o0.revokes, 2);
    CHECK_EQ(o1.grants - o0.grants, 2);
    CHECK_EQ(o1.owner_pages, 2 * CPAGES);                  /* id2's grants only */
    CHECK_EQ(o1.rejected, o0.rejected);
    CHECK_EQ(zs().rejected, p0.rejected);

    /* the old id: an error through the callback, not a byte of anything */
    for (unsigned c = 0; c < 2; c++) {
        memset(lb, 0xEE, CHUNK);
        CHECK_EQ(copy1(id1, base, len, gs + c * CHUNK, lb, CHUNK, GET, &sync), -ENOENT);
        CHECK(!sync);
        CHECK_EQ(not_byte(lb, CHUNK, 0xEE), 0);
    }
    o2 = ozs(0);
    CHECK_EQ(o2.grants, o1.grants);
    CHECK_EQ(o2.owner_pages, 2 * CPAGES);
    CHECK_EQ(RPC(OP_DEREG, id1)->rc, -ENOENT);
    /* id2 is still cached */
    CHECK_EQ(copy1(id2, base, len, gs + CHUNK, lb, CHUNK, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, gs + CHUNK, CHUNK, s2), 0);
    free(lb);
    node_close();
    return 0;
}

/* A memory event (what the UCT md reports from UCM's VM_UNMAPPED) over
 * one page of a live registration takes that page only: the grant of its
 * chunk is withdrawn and asked for again in vain, and the other chunk's
 * grant still works: a registration cache's region that grew over a
 * neighbour freed since must not fail the transfer of the buffer in use.
 * One over all of it kills the registration before the owner deregisters
 * it: the addresses mapped again with other data are never reached under
 * the old id, and the grants the peer holds are withdrawn. */
static int peer_invalidate(const void *arg)
{
    const uint64_t off = 300, len = 2 * MiB + PG, s1 = 33, s2 = 34;
    uint64_t base, gs, id1, idother, bother;
    xm_zc_stats_t o0, o1, o2;
    int sync;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, off, s1);
    gs = base - off + PG;
    id1 = reg_slot(0, RD | WR, 0, len);
    bother = alloc_slot(1, PG, 0, 35);
    idother = reg_slot(1, RD, 0, PG);
    uint8_t *lb = malloc(2 * CHUNK);
    REQUIRE(lb);
    o0 = get_two_chunks(id1, base, len, gs, lb, s1);

    /* one byte of chunk 1's first page goes away: a hole of that page */
    CHECK_EQ(RPC(OP_INVALIDATE, 0, gs + CHUNK + 5 - base, 1)->rc, 0);
    PUMP_UNTIL(ozs(0).owner_pages == CPAGES, 10);
    o1 = ozs(0);
    CHECK_EQ(o1.revokes - o0.revokes, 1);
    CHECK_EQ(o1.invalidated - o0.invalidated, 0);
    CHECK_EQ(o1.holed - o0.holed, 1);
    /* chunk 0 is read through the grant we kept */
    memset(lb, 0, CHUNK);
    CHECK_EQ(copy1(id1, base, len, gs, lb, CHUNK, GET, &sync), 0);
    CHECK_EQ(mism(lb, gs, CHUNK, s1), 0);
    /* the hole's page is refused, alone or within its chunk */
    memset(lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(id1, base, len, gs + CHUNK, lb, CHUNK, GET, &sync), -ENOENT);
    CHECK_EQ(copy1(id1, base, len, gs + CHUNK + 100, lb, 8, GET, &sync), -ENOENT);
    CHECK_EQ(not_byte(lb, CHUNK, 0xEE), 0);
    fill(lb, gs + CHUNK, 8, 36);
    CHECK_EQ(copy1(id1, base, len, gs + CHUNK + 100, lb, 8, PUT, &sync), -ENOENT);
    /* no grant of chunk 1 for the rest of it either (the xfer layer
     * takes the ring there, where the owner serves what is not a hole:
     * uct_rma_hostile), and chunk 0's grant is still there */
    CHECK_EQ(copy1(id1, base, len, gs + CHUNK + PG, lb, CHUNK - PG, GET, &sync), -ENOENT);
    o2 = ozs(0);
    CHECK_EQ(o2.owner_pages, CPAGES);
    CHECK_EQ(o2.grants, o1.grants);
    CHECK_EQ(owner_check(base, base + len, s1), 0);

    /* all of it goes away; it is mapped anew with other data */
    CHECK_EQ(RPC(OP_INVALIDATE, 0, 0, len)->rc, 0);
    CHECK_EQ(RPC(OP_REMAP, 0, s2)->rc, 0);
    /* the INVALs come, we drop our refs and ACK: every grant of id1 ends */
    PUMP_UNTIL(ozs(0).owner_pages == 0, 10);
    o1 = ozs(0);
    CHECK_EQ(o1.revokes - o0.revokes, 2);
    CHECK_EQ(o1.invalidated - o0.invalidated, 1);
    CHECK_EQ(zs().peer_pages, 0);
    /* the old id reaches nothing: no grant, no ring copy, no write */
    for (unsigned c = 0; c < 2; c++) {
        memset(lb, 0xEE, CHUNK);
        CHECK_EQ(copy1(id1, base, len, gs + c * CHUNK, lb, CHUNK, GET, &sync), -ENOENT);
        CHECK_EQ(not_byte(lb, CHUNK, 0xEE), 0);
    }
    fill(lb, gs, CHUNK, 36);
    CHECK_EQ(copy1(id1, base, len, gs, lb, CHUNK, PUT, &sync), -ENOENT);
    CHECK_EQ(owner_check(base, base + len, s2), 0);
    CHECK_EQ(ozs(0).grants, o1.grants);
    /* another registration is untouched */
    memset(lb, 0, PG);
    CHECK_EQ(copy1(idother, bother, PG, bother, lb, PG, GET, &sync), 0);
    CHECK_EQ(mism(lb, bother, PG, 35), 0);
    /* the owner's own deregistration still works, once */
    CHECK_EQ(RPC(OP_DEREG, id1)->rc, 0);
    CHECK_EQ(RPC(OP_DEREG, id1)->rc, -ENOENT);
    CHECK_EQ(RPC(OP_DEREG, idother)->rc, 0);
    free(lb);
    node_close();
    return 0;
}

/* A connected peer that was never given an id cannot guess one: ids are
 * random (the review's proof of concept read id 1), and neither small
 * numbers nor the neighbours of a real id reach anything. */
static int peer_guess(const void *arg)
{
    enum { NREG = 32, NEAR = 4, SMALL = 256 };
    const uint64_t len = CHUNK;
    uint64_t base, ids[NREG];
    xm_zc_stats_t o0, o1;
    uint8_t *lb;
    unsigned reached = 0;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, 0, 91);
    lb = malloc(len);
    REQUIRE(lb);
    for (unsigned i = 0; i < NREG; i++) {
        ids[i] = reg_slot(0, RD | WR, 0, len);
        CHECK(ids[i] > UINT32_MAX);   /* odds 2^-32 of a false alarm */
        for (unsigned j = 0; j < i; j++) {
            uint64_t d = ids[i] > ids[j] ? ids[i] - ids[j] : ids[j] - ids[i];
            CHECK(d > (1u << 20));
        }
    }
    o0 = ozs(0);
    for (uint64_t g = 1; g <= SMALL; g++)
        reached += copy1(g, base, len, base, lb, len, GET, NULL) != -ENOENT;
    for (unsigned i = 0; i < NREG; i++)
        for (uint64_t k = 1; k <= NEAR; k++) {
            reached += copy1(ids[i] + k, base, len, base, lb, len, GET, NULL) != -ENOENT;
            reached += copy1(ids[i] - k, base, len, base, lb, len, PUT, NULL) != -ENOENT;
        }
    CHECK_EQ(reached, 0);
    o1 = ozs(0);
    CHECK_EQ(o1.grants, o0.grants);
    CHECK_EQ(owner_check(base, base + len, 91), 0);
    /* the real ones work */
    memset(lb, 0, len);
    CHECK_EQ(copy1(ids[NREG - 1], base, len, base, lb, len, GET, NULL), 0);
    CHECK_EQ(mism(lb, base, len, 91), 0);
    for (unsigned i = 0; i < NREG; i++)
        CHECK_EQ(RPC(OP_DEREG, ids[i])->rc, 0);
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * 3b. The registration cache: kept ids, stale grants, LRU, errors
 * ====================================================================== */

static uint64_t rc_get(unsigned slot, unsigned access, uint64_t off, uint64_t len, unsigned keep)
{
    struct rep *r = RPC(OP_RC_GET, slot, access, off, len, keep);
    REQUIRE_EQ(r->rc, 0);
    REQUIRE(r->v[0] != 0);
    return r->v[0];
}

static int peer_regcache(const void *arg)
{
    const uint64_t len = 64 * PG, s1 = 41, s2 = 42;
    uint64_t base, id1, id2, id3, a, b;
    xm_zc_stats_t p0, o0, o1;
    struct rep *r;
    uint8_t *lb;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, 0, s1);
    lb = malloc(len);
    REQUIRE(lb);
    CHECK_EQ(RPC(OP_STALE, 0)->rc, 0);   /* record the owner's grants */

    /* a kept registration: the same id again, and the peer's refs hit */
    id1 = rc_get(0, RD, 0, len, 2);
    CHECK_EQ(copy1(id1, base, len, base, lb, len, GET, NULL), 0);
    CHECK_EQ(mism(lb, base, len, s1), 0);
    CHECK_EQ(RPC(OP_RC_PUT, id1)->rc, 0);
    o0 = ozs(0);
    p0 = zs();
    CHECK_EQ(rc_get(0, RD, 0, len, 2), id1);
    CHECK_EQ(copy1(id1, base, len, base, lb, len, GET, NULL), 0);
    CHECK_EQ(zs().hits - p0.hits, 1);
    CHECK_EQ(ozs(0).grants, o0.grants);
    r = RPC(OP_RC_STATS, 0);
    CHECK_EQ(r->v[0], 1);   /* hits */
    CHECK_EQ(r->v[1], 1);   /* misses */
    CHECK_EQ(r->v[4], 1);   /* keeps */

    /* in use when its grant turns stale: a get hands out a new id at once,
     * the grant is withdrawn, the old id dies with its last put */
    CHECK_EQ(RPC(OP_STALE, 1)->rc, 0);
    CHECK_EQ(RPC(OP_FILL, 0, s2)->rc, 0);
    id2 = rc_get(0, RD, 0, len, 2);
    CHECK(id2 != id1);
    r = RPC(OP_RC_STATS, 0);
    CHECK_EQ(r->v[2], 1);   /* stale */
    PUMP_UNTIL(ozs(0).revokes > o0.revokes, 10);   /* INVAL of the stale grant */
    PUMP_UNTIL(zs().peer_pages == 0, 10);          /* we dropped the refs */
    CHECK_EQ(RPC(OP_RC_PUT, id1)->rc, 0);
    CHECK_EQ(RPC(OP_RC_PUT, id1)->rc, -ENOENT);    /* gone: deregistered */
    memset(lb, 0xEE, len);
    CHECK_EQ(copy1(id1, base, len, base, lb, len, GET, NULL), -ENOENT);
    CHECK_EQ(not_byte(lb, len, 0xEE), 0);
    CHECK_EQ(copy1(id2, base, len, base, lb, len, GET, NULL), 0);
    CHECK_EQ(mism(lb, base, len, s2), 0);
    CHECK_EQ(RPC(OP_RC_PUT, id2)->rc, 0);
    CHECK_EQ(RPC(OP_RC_STATS, 0)->v[3], 1);        /* id2 kept, unused */

    /* unused when its grant turns stale: deregistered at the next get */
    CHECK_EQ(RPC(OP_STALE, 1)->rc, 0);
    id3 = rc_get(0, RD, 0, len, 2);
    CHECK(id3 != id2);
    CHECK_EQ(RPC(OP_RC_STATS, 0)->v[2], 2);
    CHECK_EQ(RPC(OP_RC_PUT, id2)->rc, -ENOENT);
    CHECK_EQ(RPC(OP_RC_PUT, id3)->rc, 0);
    CHECK_EQ(RPC(OP_STALE, 0)->rc, 0);

    /* least recently used out beyond max_unused (2): id3, a, b kept in
     * that order, so id3 goes and comes back as a new id */
    a = rc_get(0, RD, PG, 8 * PG, 2);
    b = rc_get(0, RD, 2 * PG, 8 * PG, 2);
    CHECK_EQ(RPC(OP_RC_PUT, a)->rc, 0);
    CHECK_EQ(RPC(OP_RC_PUT, b)->rc, 0);
    CHECK_EQ(RPC(OP_RC_STATS, 0)->v[3], 2);
    CHECK_EQ(RPC(OP_DEREG, id3)->rc, -ENOENT);     /* evicted: deregistered */
    CHECK_EQ(rc_get(0, RD, PG, 8 * PG, 2), a);     /* still kept */
    CHECK_EQ(RPC(OP_RC_PUT, a)->rc, 0);
    /* other rights are another registration */
    id1 = rc_get(0, RD | WR, PG, 8 * PG, 2);
    CHECK(id1 != a);
    CHECK_EQ(RPC(OP_RC_PUT, id1)->rc, 0);

    /* bad calls change nothing */
    r = RPC(OP_RC_STATS, 0);
    uint64_t h0 = r->v[0], m0 = r->v[1], u0 = r->v[3];
    CHECK_EQ(RPC(OP_RC_GET, 0, 0, 0, len, 2)->rc, -EINVAL);    /* no rights */
    CHECK_EQ(RPC(OP_RC_GET, 0, 4, 0, len, 2)->rc, -EINVAL);    /* unknown rights */
    CHECK_EQ(RPC(OP_RC_GET, 0, RD, 0, UINT64_MAX - base + 1, 2)->rc, -EINVAL);   /* wraps */
    CHECK_EQ(RPC(OP_RC_PUT, 987654321)->rc, -ENOENT);
    CHECK_EQ(RPC(OP_RC_PUT, a)->rc, -ENOENT);                  /* kept, not in use */
    r = RPC(OP_RC_STATS, 0);
    CHECK_EQ(r->v[0], h0);
    CHECK_EQ(r->v[1], m0);
    CHECK_EQ(r->v[3], u0);

    /* a backend that cannot report stale grants: nothing is kept */
    CHECK_EQ(RPC(OP_STALE, 2)->rc, 0);
    id1 = rc_get(0, RD, 3 * PG, 8 * PG, 2);
    CHECK_EQ(RPC(OP_RC_STATS, 0)->v[4], 0);
    CHECK_EQ(RPC(OP_RC_PUT, id1)->rc, 0);
    CHECK_EQ(RPC(OP_DEREG, id1)->rc, -ENOENT);     /* deregistered at its put */
    id2 = rc_get(0, RD, 3 * PG, 8 * PG, 2);
    CHECK(id2 != id1);
    CHECK_EQ(RPC(OP_RC_PUT, id2)->rc, 0);
    CHECK_EQ(RPC(OP_STALE, 0)->rc, 0);
    o1 = ozs(0);
    CHECK_EQ(o1.rejected, o0.rejected);
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * 4. Eviction: the owner's cap (INVAL/ACK), the peer's cap (REL)
 * ====================================================================== */

static int peer_evict_owner(const void *arg)
{
    const uint64_t len = 8 * CHUNK, seed = 41;
    uint64_t base, id;
    xm_zc_stats_t p0, p1, o0, o1;
    int sync;

    peer_connect(RING_PAGES);
    RPC(OP_CONFIG, 2 * MiB, 0, 0);
    base = alloc_slot(0, len, 0, seed);
    id = reg_slot(0, RD, 0, len);
    uint8_t *lb = malloc(len);
    REQUIRE(lb);
    memset(lb, 0xEE, len);
    p0 = zs();
    o0 = ozs(1);
    for (unsigned c = 0; c < 8; c++) {
        CHECK_EQ(copy1(id, base, len, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, &sync), 0);
        CHECK(!sync);
        /* the owner withdrew what exceeds its cap: our ACK goes out before
         * the next request */
        PUMP_UNTIL(zs().peer_pages <= 2 * CPAGES, 10);
    }
    CHECK_EQ(mism(lb, base, len, seed), 0);
    o1 = ozs(0);
    p1 = zs();
    CHECK_EQ(o1.grants - o0.grants, 8);
    CHECK_EQ(o1.revokes - o0.revokes, 6);
    CHECK_EQ(o1.owner_pages, 2 * CPAGES);
    CHECK_LE(owner_max, 2 * CPAGES + CPAGES);              /* cap + one chunk at any time */
    CHECK(owner_max >= 2 * CPAGES);
    CHECK_EQ(p1.misses - p0.misses, 8);
    CHECK_EQ(p1.peer_pages, 2 * CPAGES);
    CHECK_EQ(p1.releases - p0.releases, 0);
    /* the newest is still there, the oldest comes back on demand */
    memset(lb, 0xEE, len);
    CHECK_EQ(copy1(id, base, len, base + 7 * CHUNK, lb, CHUNK, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, base + 7 * CHUNK, CHUNK, seed), 0);
    CHECK_EQ(copy1(id, base, len, base, lb, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(lb, base, CHUNK, seed), 0);
    free(lb);
    node_close();
    return 0;
}

/* The owner withdraws the least recently used grant: a registration it
 * handed out again (xm_zc_touch, a rendezvous packing its key) stays even
 * though it was granted first. */
static int peer_evict_owner_lru(const void *arg)
{
    const uint64_t seed = 43;
    uint64_t base[3], id[3];
    xm_zc_stats_t o0, o1;
    int sync;

    peer_connect(RING_PAGES);
    RPC(OP_CONFIG, 2 * MiB, 0, 0);
    for (unsigned i = 0; i < 3; i++) {
        base[i] = alloc_slot(i, CHUNK, 0, seed + i);
        id[i] = reg_slot(i, RD, 0, CHUNK);
    }
    uint8_t *lb = malloc(CHUNK);
    REQUIRE(lb);
    o0 = ozs(0);
    /* 0 then 1 granted: the cache is full */
    for (unsigned i = 0; i < 2; i++) {
        CHECK_EQ(copy1(id[i], base[i], CHUNK, base[i], lb, CHUNK, GET, &sync), 0);
        CHECK(!sync);
    }
    /* the owner hands out 0 again; a cache hit here tells it nothing */
    CHECK_EQ(RPC(OP_TOUCH, id[0])->rc, 0);
    RPC(OP_TOUCH, (uint64_t)999999);   /* unknown: ignored */
    CHECK_EQ(copy1(id[2], base[2], CHUNK, base[2], lb, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(lb, base[2], CHUNK, seed + 2), 0);
    PUMP_UNTIL(zs().peer_pages <= 2 * CPAGES, 10);
    o1 = ozs(0);
    CHECK_EQ(o1.grants - o0.grants, 3);
    CHECK_EQ(o1.revokes - o0.revokes, 1);
    CHECK_EQ(o1.owner_pages, 2 * CPAGES);
    /* 1 went, not 0 */
    memset(lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(id[0], base[0], CHUNK, base[0], lb, CHUNK, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, base[0], CHUNK, seed), 0);
    memset(lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(id[1], base[1], CHUNK, base[1], lb, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(lb, base[1], CHUNK, seed + 1), 0);
    free(lb);
    node_close();
    return 0;
}

static int peer_evict_peer(const void *arg)
{
    const uint64_t len = 8 * CHUNK, seed = 42;
    const xm_zc_config_t cfg = { 0, 2 * MiB, 0 };
    uint64_t base, id;
    xm_zc_stats_t p0, p1, p2, o0, o1;
    int sync;

    peer_connect(RING_PAGES);
    xm_zc_configure(me.ep, &cfg);
    base = alloc_slot(0, len, 0, seed);
    id = reg_slot(0, RD, 0, len);
    uint8_t *lb = malloc(len);
    REQUIRE(lb);
    memset(lb, 0xEE, len);
    p0 = zs();
    o0 = ozs(0);
    for (unsigned c = 0; c < 8; c++) {
        CHECK_EQ(copy1(id, base, len, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, &sync), 0);
        CHECK(!sync);
        CHECK_LE(zs().peer_pages, 2 * CPAGES);
    }
    CHECK_EQ(mism(lb, base, len, seed), 0);
    p1 = zs();
    o1 = ozs(0);                                           /* after our RELs */
    CHECK_EQ(p1.releases - p0.releases, 6);
    CHECK_EQ(p1.peer_pages, 2 * CPAGES);
    CHECK_EQ(p1.misses - p0.misses, 8);
    CHECK_EQ(o1.grants - o0.grants, 8);
    CHECK_EQ(o1.revokes - o0.revokes, 0);
    CHECK_EQ(o1.owner_pages, 2 * CPAGES);                  /* the owner ended what we released */
    CHECK_EQ(o1.rejected, o0.rejected);
    memset(lb, 0xEE, len);
    CHECK_EQ(copy1(id, base, len, base, lb, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(copy1(id, base, len, base + 7 * CHUNK, lb + CHUNK, CHUNK, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, base, CHUNK, seed), 0);
    CHECK_EQ(mism(lb + CHUNK, base + 7 * CHUNK, CHUNK, seed), 0);
    p2 = zs();
    CHECK_EQ(p2.releases - p0.releases, 7);
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * 5. Grant table exhaustion
 * ====================================================================== */

/* room for the channel (control page and a 4-page ring) and two chunks */
#define SMALL_GNTTAB "617"

static int peer_exhaust(const void *arg)
{
    const uint64_t len = 8 * CHUNK, seed = 51;
    uint64_t base, idA, b1, idB;
    xm_zc_stats_t o0, o1, o2, o3;
    struct op ops[8];
    int sync;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, 0, seed);
    idA = reg_slot(0, RD, 0, len);
    uint8_t *lb = malloc(len);
    REQUIRE(lb);
    memset(lb, 0xEE, len);
    o0 = ozs(0);
    for (unsigned c = 0; c < 8; c++)
        CHECK_EQ(zcopy(idA, base, len, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, &ops[c]),
                 -EINPROGRESS);
    PUMP_UNTIL(ops_done(ops, 8), 20);
    for (unsigned c = 0; c < 8; c++) {
        CHECK_EQ(ops[c].done, 1);
        CHECK_EQ(ops[c].status, c < 2 ? 0 : -ENOSPC);
    }
    CHECK_EQ(mism(lb, base, 2 * CHUNK, seed), 0);
    CHECK_EQ(not_byte(lb + 2 * CHUNK, 6 * CHUNK, 0xEE), 0);
    o1 = ozs(0);
    CHECK_EQ(o1.nospc - o0.nospc, 6);
    CHECK_EQ(o1.grants - o0.grants, 2);
    CHECK_EQ(o1.revokes - o0.revokes, 0);                  /* no grant of idA withdrawn for idA */
    CHECK_EQ(o1.owner_pages, 2 * CPAGES);
    pump(50);
    CHECK_EQ(zs().peer_pages, 2 * CPAGES);                 /* no INVAL came */
    /* the chunks that fit keep hitting */
    memset(lb, 0xEE, 2 * CHUNK);
    for (unsigned c = 0; c < 2; c++) {
        CHECK_EQ(copy1(idA, base, len, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, &sync), 0);
        CHECK(sync);
    }
    CHECK_EQ(mism(lb, base, 2 * CHUNK, seed), 0);
    /* a refused chunk is asked again, and refused again (nothing stuck) */
    CHECK_EQ(copy1(idA, base, len, base + 2 * CHUNK, lb, CHUNK, GET, &sync), -ENOSPC);
    CHECK(!sync);
    o2 = ozs(0);
    CHECK_EQ(o2.nospc - o0.nospc, 7);
    CHECK_EQ(o2.revokes - o0.revokes, 0);

    /* another registration: the owner makes room by withdrawing the
     * oldest grant of idA, and answers the request it parked once our ACK
     * ended that grant: granted, not refused */
    b1 = alloc_slot(1, CHUNK, 0, 52);
    idB = reg_slot(1, RD, 0, CHUNK);
    memset(lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(idB, b1, CHUNK, b1, lb, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(lb, b1, CHUNK, 52), 0);
    o3 = ozs(0);
    CHECK_EQ(o3.revokes - o0.revokes, 1);
    CHECK_EQ(o3.nospc - o0.nospc, 8);                      /* refused once, then parked */
    CHECK_EQ(o3.grants - o0.grants, 3);
    CHECK_EQ(o3.parked, 0);
    CHECK_EQ(zs().peer_pages, 2 * CPAGES);
    CHECK_EQ(copy1(idA, base, len, base + CHUNK, lb, CHUNK, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, base + CHUNK, CHUNK, seed), 0);
    CHECK_EQ(ozs(0).owner_pages, 2 * CPAGES);
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * 6a. A hostile peer: what the owner accepts
 * ====================================================================== */

static void raw(uint16_t type, const void *p, size_t len)
{
    CHECK_EQ(xm_chan_send(me.ch, type, NULL, 0, p, len), 0);
}

/* the owner handled what we sent; we handled what it answered */
static xm_zc_stats_t sync_owner(void)
{
    xm_zc_stats_t s = ozs(0);
    pump(3);
    return s;
}

/* pop the next record the tap saw */
static int tap_pop(uint16_t *type, void *buf, size_t *len)
{
    if (tap.head == tap.tail)
        return 0;
    struct tapmsg *m = &tap.q[tap.head++ % TAPQ];
    *type = m->type;
    *len = m->len;
    memcpy(buf, m->data, m->len < sizeof(m->data) ? m->len : sizeof(m->data));
    return 1;
}

static int peer_hostile_peer(const void *arg)
{
    const uint64_t len = 2 * CHUNK, seed = 81;
    uint64_t base, id, btiny, idTiny;
    xm_zc_stats_t o0, o1, p0, p1;
    uint8_t buf[2048];
    uint16_t type;
    size_t blen;
    int sync;

    peer_connect(RING_PAGES);
    tap.mode = TAP_RECORD;   /* see the answers; the core still handles them */
    base = alloc_slot(0, len, 0, seed);
    id = reg_slot(0, RD, 0, len);
    btiny = alloc_slot(1, 100, 50, 82);
    idTiny = reg_slot(1, RD, 0, 100);   /* no whole page */
    (void)btiny;
    o0 = ozs(0);
    p0 = zs();

    /* malformed lengths: ignored, counted, not answered */
    struct w_greq q = { id, 0, 0 };
    uint8_t big[17] = { 0 };
    memcpy(big, &q, sizeof(q));
    raw(XM_REC_ZC_GREQ, &q, 15);
    raw(XM_REC_ZC_GREQ, big, 17);
    raw(XM_REC_ZC_GREQ, NULL, 0);
    o1 = sync_owner();
    CHECK_EQ(o1.rejected - o0.rejected, 3);
    CHECK_EQ(o1.grants - o0.grants, 0);
    CHECK_EQ(tap.tail - tap.head, 0);

    /* well formed but wrong: answered with the reason, nothing granted */
    const struct { struct w_greq q; int status; } bad[] = {
        { { id, 0, 2 }, -EINVAL },            /* unknown flag */
        { { id, 0, 0x80000000u }, -EINVAL },
        { { id, 1, 3 }, -EINVAL },            /* unknown flag next to the write flag */
        { { id + 1000, 0, 0 }, -ENOENT },     /* never registered */
        { { 0, 0, 0 }, -ENOENT },
        { { id, 2, 0 }, -EINVAL },            /* chunk past the end */
        { { id, 0xffffffffu, 0 }, -EINVAL },
        { { idTiny, 0, 0 }, -EINVAL },        /* a registration without whole pages */
        { { id, 0, 1 }, -EACCES },            /* write to a read-only registration */
    };
    const unsigned nbad = sizeof(bad) / sizeof(bad[0]);
    for (unsigned i = 0; i < nbad; i++) {
        struct w_grep h;
        raw(XM_REC_ZC_GREQ, &bad[i].q, sizeof(bad[i].q));
        sync_owner();
        REQUIRE(tap_pop(&type, buf, &blen));
        CHECK_EQ(type, XM_REC_ZC_GREP);
        CHECK_EQ(blen, sizeof(h));
        memcpy(&h, buf, sizeof(h));
        CHECK_EQ(h.id, bad[i].q.id);
        CHECK_EQ(h.chunk, bad[i].q.chunk);
        CHECK_EQ(h.flags, bad[i].q.flags);
        CHECK_EQ(h.status, bad[i].status);
        CHECK_EQ(h.npages, 0);
        if (h.status != bad[i].status)
            fprintf(stderr, "[peer] bad GREQ %u answered %d\n", i, h.status);
        CHECK_EQ(tap.tail - tap.head, 0);
    }
    o1 = sync_owner();
    p1 = zs();
    CHECK_EQ(o1.grants - o0.grants, 0);
    CHECK_EQ(o1.owner_pages, 0);
    CHECK_EQ(o1.rejected - o0.rejected, 3);                /* so our core sent no REL either */
    CHECK_EQ(p1.rejected - p0.rejected, nbad);             /* answers to nothing we asked */

    /* a valid request our core never made: granted, answered; our core
     * counts the answer and returns the grant (REL), which the owner ends */
    struct w_grep gh;
    raw(XM_REC_ZC_GREQ, &q, sizeof(q));
    sync_owner();
    REQUIRE(tap_pop(&type, buf, &blen));
    CHECK_EQ(type, XM_REC_ZC_GREP);
    CHECK_EQ(blen, sizeof(gh) + CPAGES * sizeof(uint32_t));
    memcpy(&gh, buf, sizeof(gh));
    CHECK_EQ(gh.status, 0);
    CHECK_EQ(gh.npages, CPAGES);
    CHECK(gh.gen != 0);
    o1 = sync_owner();
    CHECK_EQ(o1.grants - o0.grants, 1);
    CHECK_EQ(o1.owner_pages, 0);
    CHECK_EQ(o1.rejected - o0.rejected, 3);
    CHECK_EQ(zs().rejected - p0.rejected, nbad + 1);

    /* a real grant through the core; learn its gen from the answer */
    uint8_t *lb = malloc(CHUNK);
    REQUIRE(lb);
    CHECK_EQ(copy1(id, base, len, base, lb, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(lb, base, CHUNK, seed), 0);
    struct w_grep g = { 0 };
    while (tap_pop(&type, buf, &blen))
        if (type == XM_REC_ZC_GREP && blen >= sizeof(g))
            memcpy(&g, buf, sizeof(g));
    CHECK_EQ(g.id, id);
    CHECK_EQ(g.status, 0);
    CHECK(g.gen != 0 && g.gen != gh.gen);
    o0 = sync_owner();
    CHECK_EQ(o0.owner_pages, CPAGES);

    /* ACK of a grant never withdrawn, RELs that name nothing: ignored */
    const struct { uint16_t type; struct w_ginv m; size_t len; } stale[] = {
        { XM_REC_ZC_ACK, { id, 0, g.gen }, 16 },
        { XM_REC_ZC_ACK, { id, 0, g.gen + 77 }, 16 },
        { XM_REC_ZC_REL, { id, 0, g.gen + 1 }, 16 },
        { XM_REC_ZC_REL, { id + 1, 0, g.gen }, 16 },
        { XM_REC_ZC_REL, { id, 1, g.gen }, 16 },
        { XM_REC_ZC_REL, { id, 0, g.gen }, 15 },
        { XM_REC_ZC_ACK, { id, 0, g.gen }, 17 },
    };
    const unsigned nstale = sizeof(stale) / sizeof(stale[0]);
    for (unsigned i = 0; i < nstale; i++) {
        uint8_t m[17] = { 0 };
        memcpy(m, &stale[i].m, sizeof(stale[i].m));
        raw(stale[i].type, m, stale[i].len);
        o1 = sync_owner();
        CHECK_EQ(o1.rejected - o0.rejected, i + 1);
        CHECK_EQ(o1.owner_pages, CPAGES);
    }
    /* the grant still works: a hit, the right bytes */
    memset(lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(id, base, len, base + 3, lb, 2 * PG, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, base + 3, 2 * PG, seed), 0);

    /* an INVAL sent to an owner is acknowledged as it is */
    struct w_ginv inv = { id, 0, 12345 };
    raw(XM_REC_ZC_INVAL, &inv, sizeof(inv));
    sync_owner();
    REQUIRE(tap_pop(&type, buf, &blen));
    CHECK_EQ(type, XM_REC_ZC_ACK);
    CHECK_EQ(blen, sizeof(inv));
    CHECK(!memcmp(buf, &inv, sizeof(inv)));

    /* the right REL ends the grant; the core then finds its cached refs
     * dead, returns them and asks again */
    struct w_ginv rel = { id, 0, g.gen };
    o0 = sync_owner();
    raw(XM_REC_ZC_REL, &rel, sizeof(rel));
    o1 = sync_owner();
    CHECK_EQ(o1.owner_pages, 0);
    CHECK_EQ(o1.rejected, o0.rejected);
    p0 = zs();
    memset(lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(id, base, len, base, lb, CHUNK, GET, &sync), 0);
    CHECK(!sync);
    CHECK_EQ(mism(lb, base, CHUNK, seed), 0);
    p1 = zs();
    CHECK_EQ(p1.misses - p0.misses, 1);
    o1 = sync_owner();
    CHECK_EQ(o1.owner_pages, CPAGES);
    CHECK_EQ(o1.grants - o0.grants, 1);
    CHECK_EQ(tap.lost, 0);
    free(lb);
    node_close();
    return 0;
}

/* send n copies of one record, waiting out a full ring (our progress reads
 * what the owner answers meanwhile) */
static void raw_flood(uint16_t type, const void *p, size_t len, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        double end = now() + 10;
        int rc;

        while ((rc = xm_chan_send(me.ch, type, NULL, 0, p, len)) == -EAGAIN && now() < end)
            if (xm_endpoint_progress(me.ep) <= 0)
                usleep(10);
        CHECK_EQ(rc, 0);
        if (rc)
            return;
    }
}

/* Floods of the other zero-copy kinds a peer can send, while it holds a
 * live grant: malformed GREQs, ACKs and RELs naming nothing, and INVALs,
 * which the owner acknowledges as they are (our core counts those ACKs of
 * nothing).  (GREQs for nothing, each answered: peer_flood_unread.)  Each is
 * counted and dropped; the grant, the channel and the bytes stay right. */
static int peer_flood_kinds(const void *arg)
{
    const uint64_t len = 2 * CHUNK, seed = 91;
    const unsigned n = 5000;
    xm_zc_stats_t o0, o1, p0;
    uint64_t base, id;
    int sync;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, 0, seed);
    id = reg_slot(0, RD, 0, len);
    uint8_t *lb = malloc(CHUNK);
    REQUIRE(lb);
    CHECK_EQ(copy1(id, base, len, base, lb, CHUNK, GET, &sync), 0);
    CHECK_EQ(mism(lb, base, CHUNK, seed), 0);
    o0 = sync_owner();
    CHECK_EQ(o0.owner_pages, CPAGES);
    p0 = zs();

    struct w_greq q = { id, 0, 0 };
    struct w_ginv none = { id, 0, 0x7fffffff }, other = { id + 1, 1, 1 };
    raw_flood(XM_REC_ZC_GREQ, &q, sizeof(q) - 1, n);
    raw_flood(XM_REC_ZC_ACK, &none, sizeof(none), n);
    raw_flood(XM_REC_ZC_REL, &other, sizeof(other), n);
    PUMP_UNTIL(ozs(0).rejected - o0.rejected >= 3 * n, 30);
    o1 = sync_owner();
    CHECK_EQ(o1.rejected - o0.rejected, 3 * n);
    CHECK_EQ(o1.grants, o0.grants);
    CHECK_EQ(o1.owner_pages, CPAGES);   /* the live grant is untouched */

    raw_flood(XM_REC_ZC_INVAL, &other, sizeof(other), n);
    PUMP_UNTIL(zs().rejected - p0.rejected >= n, 30);
    CHECK_EQ(zs().rejected - p0.rejected, n);   /* each ACK of nothing, counted once */
    o1 = sync_owner();
    CHECK_EQ(o1.rejected - o0.rejected, 3 * n);
    CHECK_EQ(o1.owner_pages, CPAGES);

    /* the grant still serves, from the cache, the right bytes */
    memset(lb, 0xEE, CHUNK);
    CHECK_EQ(copy1(id, base, len, base + 5, lb, 3 * PG, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, base + 5, 3 * PG, seed), 0);
    struct rep *r = RPC(OP_STATS, 0);
    CHECK_EQ(r->v[0], XM_CH_CONNECTED);
    CHECK_EQ(me.failed + me.gone, 0);
    free(lb);
    node_close();
    return 0;
}

/* Requests that overlap a grant being withdrawn wait for its ACK, at most
 * 64 per channel; a peer that never acknowledges gets the rest refused and
 * keeps nothing else busy.  Our core sees none of the owner's messages
 * (TAP_SWALLOW): every answer is ours to count. */
static int peer_park_cap(const void *arg)
{
    const unsigned extra = 3, nreq = 64 + extra;
    uint64_t base, id;
    xm_zc_stats_t o0, o1;
    uint8_t buf[2048];
    uint16_t type;
    size_t blen;
    struct w_grep h;
    struct w_ginv inv;
    unsigned ninval, nexist, ngrant, nother;
    uint32_t g1 = 0, g2 = 0;

    peer_connect(RING_PAGES);
    tap.mode = TAP_SWALLOW;
    base = alloc_slot(0, CHUNK, 0, 91);
    (void)base;
    id = reg_slot(0, RD | WR, 0, CHUNK);
    o0 = sync_owner();

    /* a read-only grant */
    struct w_greq ro = { id, 0, 0 }, rw = { id, 0, 1 };
    raw(XM_REC_ZC_GREQ, &ro, sizeof(ro));
    sync_owner();
    REQUIRE(tap_pop(&type, buf, &blen));
    CHECK_EQ(type, XM_REC_ZC_GREP);
    memcpy(&h, buf, sizeof(h));
    CHECK_EQ(h.status, 0);
    g1 = h.gen;

    /* writable ones for the same pages: the first withdraws the read-only
     * grant, 64 wait, the rest are refused */
    for (unsigned i = 0; i < nreq; i++)
        raw(XM_REC_ZC_GREQ, &rw, sizeof(rw));
    o1 = sync_owner();
    ninval = nexist = nother = 0;
    while (tap_pop(&type, buf, &blen)) {
        if (type == XM_REC_ZC_INVAL && blen == sizeof(inv)) {
            memcpy(&inv, buf, sizeof(inv));
            ninval += inv.id == id && inv.chunk == 0 && inv.gen == g1;
        } else if (type == XM_REC_ZC_GREP && blen == sizeof(h)) {
            memcpy(&h, buf, sizeof(h));
            nexist += h.status == -EEXIST && h.flags == 1 && h.npages == 0;
        } else {
            nother++;
        }
    }
    CHECK_EQ(ninval, 1);
    CHECK_EQ(nexist, extra);
    CHECK_EQ(nother, 0);
    CHECK_EQ(o1.grants - o0.grants, 1);
    CHECK_EQ(o1.revokes - o0.revokes, 1);
    CHECK_EQ(o1.owner_pages, CPAGES);   /* still granted until our ACK */
    CHECK_EQ(o1.parked, 64);

    /* the ACK ends it: the first waiting request is granted writable; the
     * next, a duplicate, withdraws that one in turn and waits again with
     * the others */
    inv.id = id;
    inv.chunk = 0;
    inv.gen = g1;
    raw(XM_REC_ZC_ACK, &inv, sizeof(inv));
    o1 = sync_owner();
    ninval = ngrant = nother = 0;
    while (tap_pop(&type, buf, &blen)) {
        if (type == XM_REC_ZC_GREP && blen == sizeof(h) + CPAGES * sizeof(uint32_t)) {
            memcpy(&h, buf, sizeof(h));
            ngrant += h.status == 0 && h.flags == 1 && h.npages == CPAGES;
            g2 = h.gen;
        } else if (type == XM_REC_ZC_INVAL && blen == sizeof(inv)) {
            struct w_ginv v;
            memcpy(&v, buf, sizeof(v));
            ninval += v.gen == g2 && g2 != 0;
        } else {
            nother++;
        }
    }
    CHECK_EQ(ngrant, 1);
    CHECK_EQ(ninval, 1);
    CHECK_EQ(nother, 0);
    CHECK(g2 != g1);
    CHECK_EQ(o1.grants - o0.grants, 2);
    CHECK_EQ(o1.revokes - o0.revokes, 2);
    CHECK_EQ(o1.owner_pages, CPAGES);
    CHECK_EQ(o1.parked, 63);
    CHECK_EQ(o1.rejected, o0.rejected);
    /* we leave without acknowledging: the channel's end ends the grant and
     * drops what waits (the owner's test checks its pages go to 0) */
    node_close();
    return 0;
}

/* ======================================================================
 * 6b. A hostile owner: what the peer accepts
 * ====================================================================== */

/* the owner sends a record we then receive */
static void owner_raw(uint16_t type, const void *p, size_t len)
{
    struct rep *r = rpc(OP_RAWSEND, (const uint64_t[6]){ type }, p, (uint32_t)len);
    CHECK_EQ(r->rc, 0);
    pump(3);
}

static size_t mk_grep(uint8_t *out, uint64_t id, uint32_t chunk, uint32_t flags, uint32_t gen,
                      int32_t status, uint32_t npages, unsigned nrefs, const uint32_t *refs)
{
    struct w_grep h = { id, chunk, flags, gen, status, npages, 0 };
    memcpy(out, &h, sizeof(h));
    for (unsigned i = 0; i < nrefs; i++) {
        uint32_t r = refs ? refs[i] : 1000 + i;
        memcpy(out + sizeof(h) + i * 4, &r, 4);
    }
    return sizeof(h) + nrefs * 4;
}

/* the next record the owner's tap holds: 0 when none */
static int owner_tap(uint16_t *type, void *buf, size_t *len)
{
    struct rep *r = RPC(OP_TAPGET, 0);
    if (r->rc == -EAGAIN)
        return 0;
    *type = (uint16_t)r->v[0];
    *len = r->v[1];
    memcpy(buf, r->data, r->len);
    return 1;
}

static void expect_owner_tap(uint16_t type, const void *payload, size_t len)
{
    uint8_t buf[2048];
    uint16_t t;
    size_t l;

    if (!owner_tap(&t, buf, &l)) {
        FAILMSG("the owner received nothing, expected type %#x", type);
        return;
    }
    CHECK_EQ(t, type);
    CHECK_EQ(l, len);
    if (l == len && memcmp(buf, payload, len))
        FAILMSG("record of type %#x has other contents", type);
}

static void expect_owner_tap_empty(void)
{
    uint8_t buf[2048];
    uint16_t t;
    size_t l;

    while (owner_tap(&t, buf, &l))
        FAILMSG("the owner received a record of type %#x (%zu bytes), expected none", t, l);
}

/* The requests in flight on a channel stay within half of the grant cache
 * an owner configured like us keeps (here 4 chunks: 2 in flight); the
 * rest go out in order, one per answer.  An answer to a request not sent
 * yet is not taken.  Before the window, a window of large messages asked
 * for every chunk at once, and an owner withdrew grants it had just made
 * (before they were used) to stay within its cache. */
static int peer_greq_window(const void *arg)
{
    const unsigned nch = 6;
    const uint64_t len = nch * CHUNK, fid = 4242;
    const xm_zc_config_t cfg = { 4 * CHUNK, 0, 0 };
    uint8_t g[256];
    struct op ops[6];
    xm_zc_stats_t p0, p1;
    uint64_t base;

    peer_connect(RING_PAGES);
    xm_zc_configure(me.ep, &cfg);
    base = alloc_slot(0, len, 0, 5);   /* not registered: the owner answers by hand */
    RPC(OP_TAP, TAP_SWALLOW);
    uint8_t *lb = malloc(len);
    REQUIRE(lb);
    for (unsigned c = 0; c < nch; c++)
        CHECK_EQ(zcopy(fid, base, len, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, &ops[c]),
                 -EINPROGRESS);
    pump(3);
    struct w_greq q = { fid, 0, 0 };
    expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
    q.chunk = 1;
    expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
    expect_owner_tap_empty();

    /* an answer for chunk 4, not asked for yet: not taken, nothing moves */
    p0 = zs();
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 4, 0, 0, -EACCES, 0, 0, NULL));
    p1 = zs();
    CHECK_EQ(p1.rejected - p0.rejected, 1);
    CHECK_EQ(ops[4].done, 0);
    expect_owner_tap_empty();

    /* each answer lets the next request out, in order */
    for (unsigned c = 0; c < nch; c++) {
        owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, c, 0, 0, -EACCES, 0, 0, NULL));
        CHECK_EQ(ops[c].done, 1);
        CHECK_EQ(ops[c].status, -EACCES);
        if (c + 2 < nch) {
            q.chunk = c + 2;
            expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
        }
        expect_owner_tap_empty();
    }
    CHECK_EQ(zs().rejected - p1.rejected, 0);
    free(lb);
    node_close();
    return 0;
}

static int peer_hostile_owner(const void *arg)
{
    const uint64_t len = 2 * CHUNK + 2 * PG, seed = 91, fid = 777;
    uint64_t base;
    uint8_t g[2048], *lb;
    uint32_t refs[CPAGES + 1];
    xm_zc_stats_t p0, p1;
    struct op A, B;
    int sync;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, len, 0, seed);   /* not registered: the owner answers by hand */
    RPC(OP_TAP, TAP_SWALLOW);
    lb = malloc(CHUNK);
    REQUIRE(lb);
    memset(lb, 0xEE, CHUNK);
    for (unsigned i = 0; i <= CPAGES; i++)
        refs[i] = 5000 + i;

    /* our request, as on the wire */
    CHECK_EQ(zcopy(fid, base, len, base, lb, 3 * PG, GET, &A), -EINPROGRESS);
    pump(3);
    struct w_greq q = { fid, 0, 0 };
    expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));

    /* malformed answers: ignored (the copy still waits), counted, not answered */
    p0 = zs();
    unsigned nmal = 0;
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 5, 0, CPAGES, CPAGES, refs) - 1 - 4 * CPAGES), nmal++;   /* 31 bytes */
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 5, 0, 2, 1, refs)), nmal++;        /* refs missing */
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 5, 0, CPAGES, CPAGES + 1, refs)), nmal++; /* one too many */
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 5, 0, CPAGES + 1, CPAGES + 1, refs)), nmal++; /* > 256 */
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 5, 5, 0, 0, NULL)), nmal++;        /* positive status */
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 5, -ENOSPC, 3, 3, refs)), nmal++;  /* error with refs */
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 5, 0, 0, 0, NULL)), nmal++;        /* success, no refs */
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 2, 5, 0, CPAGES, CPAGES, refs)), nmal++; /* unknown flag */
    p1 = zs();
    CHECK_EQ(p1.rejected - p0.rejected, nmal);
    CHECK_EQ(A.done, 0);
    CHECK_EQ(not_byte(lb, CHUNK, 0xEE), 0);
    CHECK_EQ(p1.peer_pages, 0);
    expect_owner_tap_empty();

    /* answers to nothing we asked: counted; a successful one is returned */
    struct w_ginv rel;
    p0 = zs();
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid + 1, 0, 0, 9, 0, CPAGES, CPAGES, refs));
    rel = (struct w_ginv){ fid + 1, 0, 9 };
    expect_owner_tap(XM_REC_ZC_REL, &rel, sizeof(rel));
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 1, 10, 0, CPAGES, CPAGES, refs));   /* we asked read-only */
    rel = (struct w_ginv){ fid, 0, 10 };
    expect_owner_tap(XM_REC_ZC_REL, &rel, sizeof(rel));
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 1, 0, 11, 0, CPAGES, CPAGES, refs));   /* chunk 1 */
    rel = (struct w_ginv){ fid, 1, 11 };
    expect_owner_tap(XM_REC_ZC_REL, &rel, sizeof(rel));
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid + 2, 0, 0, 0, -ENOSPC, 0, 0, NULL));
    expect_owner_tap_empty();
    p1 = zs();
    CHECK_EQ(p1.rejected - p0.rejected, 4);
    CHECK_EQ(p1.peer_pages, 0);
    CHECK_EQ(A.done, 0);

    /* the real answer: pages granted by hand */
    struct rep *r = RPC(OP_GRANT, base, CPAGES, 0);
    REQUIRE_EQ(r->rc, 0);
    uint64_t handle = r->v[0];
    uint32_t real[CPAGES];
    memcpy(real, r->data, sizeof(real));
    p0 = zs();
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 55, 0, CPAGES, CPAGES, real));
    PUMP_UNTIL(A.done, 5);
    CHECK_EQ(A.done, 1);
    CHECK_EQ(A.status, 0);
    CHECK_EQ(mism(lb, base, 3 * PG, seed), 0);
    CHECK_EQ(not_byte(lb + 3 * PG, CHUNK - 3 * PG, 0xEE), 0);
    p1 = zs();
    CHECK_EQ(p1.rejected, p0.rejected);
    CHECK_EQ(p1.peer_pages, CPAGES);
    CHECK_EQ(copy1(fid, base, len, base + CHUNK - PG - 1, lb, PG + 1, GET, &sync), 0);
    CHECK(sync);
    CHECK_EQ(mism(lb, base + CHUNK - PG - 1, PG + 1, seed), 0);
    expect_owner_tap_empty();

    /* a page count other than the key describes: -EPROTO, grant returned */
    p0 = zs();
    CHECK_EQ(zcopy(fid, base, len, base + 2 * CHUNK, lb, PG, GET, &B), -EINPROGRESS);   /* 2 pages */
    pump(3);
    q = (struct w_greq){ fid, 2, 0 };
    expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 2, 0, 66, 0, 3, 3, refs));
    PUMP_UNTIL(B.done, 5);
    CHECK_EQ(B.status, -EPROTO);
    rel = (struct w_ginv){ fid, 2, 66 };
    expect_owner_tap(XM_REC_ZC_REL, &rel, sizeof(rel));
    CHECK_EQ(zcopy(fid, base, len, base + CHUNK, lb, PG, GET, &B), -EINPROGRESS);       /* 256 pages */
    pump(3);
    q = (struct w_greq){ fid, 1, 0 };
    expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 1, 0, 67, 0, CPAGES - 1, CPAGES - 1, refs));
    PUMP_UNTIL(B.done, 5);
    CHECK_EQ(B.status, -EPROTO);
    rel = (struct w_ginv){ fid, 1, 67 };
    expect_owner_tap(XM_REC_ZC_REL, &rel, sizeof(rel));
    p1 = zs();
    CHECK_EQ(p1.rejected - p0.rejected, 2);

    /* errors: known ones as they are, unknown ones as -EPROTO; no REL */
    const struct { int32_t sent, seen; } errs[] = {
        { -E2BIG, -EPROTO }, { -ENOSPC, -ENOSPC }, { -ENOENT, -ENOENT }, { -EACCES, -EACCES },
        { INT32_MIN, -EPROTO },
    };
    for (unsigned i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        memset(lb, 0xEE, PG);
        CHECK_EQ(zcopy(fid, base, len, base + CHUNK, lb, PG, GET, &B), -EINPROGRESS);
        pump(3);
        expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
        owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 1, 0, 0, errs[i].sent, 0, 0, NULL));
        PUMP_UNTIL(B.done, 5);
        CHECK_EQ(B.status, errs[i].seen);
        CHECK_EQ(not_byte(lb, PG, 0xEE), 0);
    }
    expect_owner_tap_empty();

    /* INVAL: malformed ignored; unknown acknowledged; known dropped and
     * acknowledged, and the next copy asks again */
    struct w_ginv inv = { fid, 0, 55 };
    uint8_t m15[16];
    memcpy(m15, &inv, sizeof(inv));
    p0 = zs();
    owner_raw(XM_REC_ZC_INVAL, m15, 15);
    CHECK_EQ(zs().rejected - p0.rejected, 1);
    expect_owner_tap_empty();
    inv.gen = 99999;
    owner_raw(XM_REC_ZC_INVAL, &inv, sizeof(inv));
    expect_owner_tap(XM_REC_ZC_ACK, &inv, sizeof(inv));
    CHECK_EQ(zs().peer_pages, CPAGES);
    inv.gen = 55;
    owner_raw(XM_REC_ZC_INVAL, &inv, sizeof(inv));
    expect_owner_tap(XM_REC_ZC_ACK, &inv, sizeof(inv));
    CHECK_EQ(zs().peer_pages, 0);
    CHECK_EQ(zcopy(fid, base, len, base, lb, PG, GET, &B), -EINPROGRESS);
    pump(3);
    q = (struct w_greq){ fid, 0, 0 };
    expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 0, -ENOENT, 0, 0, NULL));
    PUMP_UNTIL(B.done, 5);
    CHECK_EQ(B.status, -ENOENT);
    CHECK_EQ(RPC(OP_GRANT_END, handle)->rc, 0);

    /* -ENODEV (the owner cannot grant at all) in answer to nothing asked
     * is only counted; in answer to our request it fails the copy and
     * marks the channel: no request goes out over it again */
    p0 = zs();
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid + 3, 0, 0, 0, -ENODEV, 0, 0, NULL));
    CHECK_EQ(zs().rejected - p0.rejected, 1);
    CHECK_EQ(zcopy(fid, base, len, base, lb, PG, GET, &B), -EINPROGRESS);
    pump(3);
    expect_owner_tap(XM_REC_ZC_GREQ, &q, sizeof(q));
    owner_raw(XM_REC_ZC_GREP, g, mk_grep(g, fid, 0, 0, 0, -ENODEV, 0, 0, NULL));
    PUMP_UNTIL(B.done, 5);
    CHECK_EQ(B.status, -ENODEV);
    p0 = zs();
    memset(lb, 0xEE, PG);
    CHECK_EQ(zcopy(fid, base, len, base + CHUNK, lb, PG, GET, &B), -ENODEV);
    CHECK_EQ(zcopy(fid + 5, base, len, base, lb, PG, GET, &B), -ENODEV);
    CHECK_EQ(zcopy(fid, base, len, base, lb, PG, PUT, &B), -ENODEV);
    pump(3);
    expect_owner_tap_empty();
    p1 = zs();
    CHECK_EQ(p1.misses, p0.misses);
    CHECK_EQ(p1.hits, p0.hits);
    CHECK_EQ(not_byte(lb, PG, 0xEE), 0);
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * 7. The channel goes away
 * ====================================================================== */

/* the peer dies holding grants (run under a small grant table) */
static int peer_gone_first(const void *arg)
{
    uint64_t base, id;
    uint8_t *lb;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, 2 * CHUNK, 0, 61);
    id = reg_slot(0, RD, 0, 2 * CHUNK);
    lb = malloc(2 * CHUNK);
    REQUIRE(lb);
    for (unsigned c = 0; c < 2; c++)
        CHECK_EQ(copy1(id, base, 2 * CHUNK, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, NULL), 0);
    CHECK_EQ(mism(lb, base, 2 * CHUNK, 61), 0);
    CHECK_EQ(ozs(0).owner_pages, 2 * CPAGES);
    /* exit closing nothing: the owner has to notice the death */
    fflush(stderr);
    _exit(failures ? 1 : 0);
}

/* the next peer finds the whole table free again, then closes politely */
static int peer_gone_second(const void *arg)
{
    uint64_t base, id;
    xm_zc_stats_t o0, o1;
    uint8_t *lb;

    peer_connect(RING_PAGES);
    base = alloc_slot(1, 2 * CHUNK, 0, 62);
    id = reg_slot(1, RD, 0, 2 * CHUNK);
    lb = malloc(2 * CHUNK);
    REQUIRE(lb);
    o0 = ozs(0);
    for (unsigned c = 0; c < 2; c++)
        CHECK_EQ(copy1(id, base, 2 * CHUNK, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, NULL), 0);
    CHECK_EQ(mism(lb, base, 2 * CHUNK, 62), 0);
    o1 = ozs(0);
    CHECK_EQ(o1.nospc - o0.nospc, 0);
    CHECK_EQ(o1.owner_pages, 2 * CPAGES);
    node_close();
    return 0;
}

/* the owner dies while we wait for its answer */
static int peer_owner_dies(const void *arg)
{
    const int copy_after = arg != NULL;
    uint64_t base, id;
    struct op a, b, c, d;
    uint8_t *lb;

    peer_connect(RING_PAGES);
    base = alloc_slot(0, 2 * CHUNK, 0, 71);
    id = reg_slot(0, RD, 0, 2 * CHUNK);
    lb = malloc(2 * CHUNK);
    REQUIRE(lb);
    memset(lb, 0xEE, 2 * CHUNK);
    RPC(OP_HOLD, 0);   /* the owner stops reading its ring */
    CHECK_EQ(zcopy(id, base, 2 * CHUNK, base, lb, CHUNK, GET, &a), -EINPROGRESS);
    CHECK_EQ(zcopy(id, base, 2 * CHUNK, base + CHUNK, lb + CHUNK, CHUNK, GET, &b), -EINPROGRESS);
    CHECK_EQ(zcopy(id, base, 2 * CHUNK, base + PG, lb + PG, PG, GET, &c), -EINPROGRESS);
    xm_zc_cancel(&c);   /* dropped: never called back */
    pump(20);
    CHECK_EQ(a.done + b.done + c.done, 0);
    RPC(OP_EXIT_NOW, 0);
    PUMP_UNTIL(a.done && b.done, 20);
    CHECK_EQ(a.done, 1);
    CHECK_EQ(b.done, 1);
    CHECK_EQ(a.status, -EPIPE);
    CHECK_EQ(b.status, -EPIPE);
    pump(20);
    CHECK_EQ(c.done, 0);
    CHECK_EQ(not_byte(lb, 2 * CHUNK, 0xEE), 0);
    CHECK_EQ(xm_chan_state(me.ch), XM_CH_PEER_GONE);
    CHECK_EQ(zs().peer_pages, 0);
    if (copy_after) {
        /* a copy on the dead channel fails, now or through the callback */
        int rc = zcopy(id, base, 2 * CHUNK, base, lb, CHUNK, GET, &d);
        CHECK(rc != 0);
        if (rc == -EINPROGRESS) {
            PUMP_UNTIL(d.done, 5);
            CHECK_EQ(d.done, 1);
        }
        if (d.done)
            CHECK(d.status < 0);
        CHECK_EQ(not_byte(lb, 2 * CHUNK, 0xEE), 0);
    }
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * Queued messages: a one-page ring on the owner's side
 * ====================================================================== */

static int peer_ring_full(const void *arg)
{
    const unsigned n = 32;
    const uint64_t len = n * CHUNK, seed = 101;
    uint64_t base, id;
    struct op ops[32];
    xm_zc_stats_t o0, o1;
    uint8_t *lb;

    peer_connect(1);
    RPC(OP_CONFIG, 2 * MiB, 0, 0);
    base = alloc_slot(0, len, 0, seed);
    id = reg_slot(0, RD, 0, len);
    lb = malloc(len);
    REQUIRE(lb);
    memset(lb, 0xEE, len);
    o0 = ozs(0);
    for (unsigned c = 0; c < n; c++)
        CHECK_EQ(zcopy(id, base, len, base + c * CHUNK, lb + c * CHUNK, CHUNK, GET, &ops[c]),
                 -EINPROGRESS);
    PUMP_UNTIL(ops_done(ops, n), 60);
    for (unsigned c = 0; c < n; c++)
        CHECK_EQ(ops[c].status, 0);
    CHECK_EQ(mism(lb, base, len, seed), 0);
    /* every withdrawal came after its grant: what we keep is what the
     * owner keeps */
    PUMP_UNTIL(zs().peer_pages == 2 * CPAGES, 10);
    double end = now() + 10;
    do {
        pump(5);
        o1 = ozs(0);
    } while (o1.owner_pages != 2 * CPAGES && now() < end);
    CHECK_EQ(o1.owner_pages, 2 * CPAGES);
    CHECK_EQ(o1.grants - o0.grants, n);
    CHECK_EQ(o1.revokes - o0.revokes, n - 2);
    CHECK(R.v[3] > 0);   /* the owner's ring was full at times: the queue was used */
    CHECK_EQ(o1.rejected, o0.rejected);
    CHECK_EQ(zs().rejected, 0);
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * Two processes of one domain: a domain cannot grant to itself
 * ====================================================================== */

#define SHARED_DOMID "20000"

static int peer_same_domain(const void *arg)
{
    uint64_t base, id;
    xm_zc_stats_t o0, o1, p0, p1;
    struct op o;
    uint8_t *lb;

    setenv("XENMPI_SIM_DOMID", SHARED_DOMID, 1);
    peer_connect(RING_PAGES);
    CHECK_EQ(xm_chan_peer_dom(me.ch), xm_hv_domid(me.hv));
    base = alloc_slot(0, CHUNK, 0, 111);
    id = reg_slot(0, RD | WR, 0, CHUNK);
    RPC(OP_TAP, TAP_RECORD);
    lb = malloc(CHUNK);
    REQUIRE(lb);
    memset(lb, 0xEE, CHUNK);
    o0 = ozs(0);
    p0 = zs();
    CHECK_EQ(zcopy(id, base, CHUNK, base, lb, CHUNK, GET, &o), -ENOTSUP);
    CHECK_EQ(zcopy(id, base, CHUNK, base + 5, lb, 10, PUT, &o), -ENOTSUP);
    pump(10);
    CHECK_EQ(o.done, 1);
    expect_owner_tap_empty();   /* not asked */
    o1 = ozs(0);
    p1 = zs();
    CHECK_EQ(o1.grants, o0.grants);
    CHECK_EQ(o1.rejected, o0.rejected);
    CHECK_EQ(p1.misses, p0.misses);
    CHECK_EQ(p1.hits, p0.hits);
    CHECK_EQ(not_byte(lb, CHUNK, 0xEE), 0);
    CHECK_EQ(owner_check(base, base + CHUNK, 111), 0);
    free(lb);
    node_close();
    return 0;
}

/* ======================================================================
 * the locking rule: nothing is sent under the zero-copy lock, in order
 * ====================================================================== */

/* A second endpoint of this peer process, connected to the owner; its
 * records go to svc (NULL: the real zero-copy service). */
static xm_endpoint_t *extra_endpoint(const xm_service_t *svc, xm_channel_t **ch)
{
    xm_ep_params_t p = { .ring_pages = RING_PAGES, .recv_cb = n_recv, .event_cb = n_event };
    xm_endpoint_t *ep;
    struct rep *r = RPC(OP_INFO, 0);
    double end = now() + 20;

    REQUIRE_EQ(xm_endpoint_open(me.hv, &p, &ep), 0);
    REQUIRE_EQ(svc ? xm_endpoint_add_service(ep, svc) : xm_zc_attach(ep, NULL), 0);
    REQUIRE_EQ(xm_endpoint_connect(ep, (uint32_t)r->v[0], (uint32_t)r->v[1], r->v[2], ch), 0);
    while (xm_chan_state(*ch) == XM_CH_CONNECTING && now() < end) {
        xm_endpoint_progress(ep);
        xm_endpoint_progress(me.ep);
        usleep(100);
    }
    REQUIRE_EQ(xm_chan_state(*ch), XM_CH_CONNECTED);
    return ep;
}

/* The owner's answers fill its ring to us while our control page claims
 * an impossible consumer index: the owner's send path finds it while
 * zero-copy holds its lock.  The channel fails; the owner keeps serving. */
static int peer_bad_cons_under_lock(const void *arg)
{
    struct xm_ctrl_page *ctrl;
    uint8_t *ring;
    uint32_t size;
    struct rep *r;

    peer_connect(RING_PAGES);
    tap.mode = TAP_SWALLOW;
    xm_chan_own_pages(me.ch, &ctrl, &ring, &size);
    __atomic_store_n(&ctrl->cons, 0x40000000u, __ATOMIC_RELEASE);
    /* 300 answers of 40 bytes: more than the owner's one-page ring */
    for (unsigned i = 0; i < 300; i++) {
        struct w_greq q = { 999999, i, 0 };
        raw(XM_REC_ZC_GREQ, &q, sizeof(q));
    }
    /* we consume nothing; the owner must still answer its controller */
    r = RPC(OP_STATS, 0);
    CHECK_EQ(r->v[0], XM_CH_FAILED);
    r = RPC(OP_STATS, 0);
    CHECK_EQ(r->v[1], 0);   /* failed, not gone */
    node_close();
    return 0;
}

/* A peer that keeps asking and never reads the answers: the owner queues
 * what does not fit in its ring up to its cap (16384 messages for the
 * channel), then fails the channel; below the cap every answer arrives
 * once the peer reads again.  Our requests name no registration (each is
 * answered -ENOENT); we never progress while sending, so nothing of the
 * owner's ring is consumed. */
static int peer_flood_unread(const void *arg)
{
    const unsigned n = arg ? 3000 : 16384 + 3000;
    xm_zc_stats_t p0, p1;
    struct rep *r;
    double end;

    peer_connect(RING_PAGES);
    p0 = zs();
    for (unsigned i = 0; i < n; i++) {
        struct w_greq q = { 0x5eed, i, 0 };
        int rc;

        end = now() + 10;
        while ((rc = xm_chan_send(me.ch, XM_REC_ZC_GREQ, NULL, 0, &q, sizeof(q))) == -EAGAIN &&
               now() < end)
            usleep(10);
        if (rc)
            break;   /* the owner failed the channel: our ring is gone too */
    }
    end = now() + 20;
    r = RPC(OP_STATS, 0);
    if (!arg) {
        while (r->v[0] != XM_CH_FAILED && now() < end)
            r = RPC(OP_STATS, 0);
        CHECK_EQ(r->v[0], XM_CH_FAILED);
        CHECK_EQ(r->v[1], 0);   /* failed by the owner, not gone */
    } else {
        CHECK_EQ(r->v[0], XM_CH_CONNECTED);
        /* we read again: every answer arrives, each a GREP for nothing of
         * ours (rejected, counted) */
        PUMP_UNTIL(zs().rejected - p0.rejected >= n, 20);
        p1 = zs();
        CHECK_EQ(p1.rejected - p0.rejected, n);
        CHECK_EQ(RPC(OP_STATS, 0)->v[0], XM_CH_CONNECTED);
    }
    node_close();
    return 0;
}

/* Each endpoint has its own caches and settings: me.ep keeps one chunk,
 * a second endpoint the default.  Caching on the second evicts nothing of
 * me.ep's (a REL from its progress would write me.ep's ring, which only
 * me.ep's thread does); me.ep over its own cap evicts its own, from its
 * own progress. */
static int peer_caps_per_endpoint(const void *arg)
{
    const uint64_t len = 2 * CHUNK, seed = 121;
    xm_zc_config_t cfg = { .peer_cache_bytes = CHUNK };
    xm_channel_t *ch2;
    xm_endpoint_t *ep2;
    xm_chan_stats_t c0, c1;
    uint64_t base, id;
    uint8_t *lb = malloc(CHUNK);
    xm_zc_stats_t p0, p1;

    REQUIRE(lb);
    peer_connect(RING_PAGES);
    CHECK_EQ(xm_zc_configure(me.ep, &cfg), 0);
    base = alloc_slot(0, len, 0, seed);
    id = reg_slot(0, RD, 0, len);
    CHECK_EQ(copy1(id, base, len, base, lb, CHUNK, GET, NULL), 0);   /* chunk 0, via me.ep */
    ep2 = extra_endpoint(NULL, &ch2);
    xm_chan_get_stats(me.ch, &c0);
    p0 = zs();
    for (unsigned k = 0; k < 2; k++) {   /* chunks 1 and 0 on ep2: both stay */
        struct op o = { 0 };
        uint64_t at = base + (1 - k) * CHUNK;

        CHECK_EQ(xm_zc_copy(ch2, id, base, len, at, lb, CHUNK, GET, op_cb, &o), -EINPROGRESS);
        for (double end = now() + 20; !o.done && now() < end;)
            if (xm_endpoint_progress(ep2) <= 0)
                usleep(50);
        CHECK_EQ(o.done, 1);
        CHECK_EQ(o.status, 0);
        CHECK_EQ(mism(lb, at, CHUNK, seed), 0);
    }
    p1 = zs();
    CHECK_EQ(p1.releases - p0.releases, 0);    /* ep2's cap is not me.ep's */
    CHECK_EQ(p1.peer_pages - p0.peer_pages, 2 * CPAGES);
    pump(3);
    xm_chan_get_stats(me.ch, &c1);
    CHECK_EQ(c1.msgs_sent, c0.msgs_sent);      /* nothing written on me.ch */
    CHECK_EQ(copy1(id, base, len, base, lb, CHUNK, GET, NULL), 0);
    CHECK_EQ(zs().hits - p1.hits, 1);          /* me.ep's chunk 0 is still there */
    CHECK_EQ(copy1(id, base, len, base + CHUNK, lb, CHUNK, GET, NULL), 0);
    CHECK_EQ(mism(lb, base + CHUNK, CHUNK, seed), 0);
    CHECK_EQ(zs().releases - p1.releases, 1);  /* me.ep over its own cap */
    pump(3);
    CHECK_EQ(ozs(0).owner_pages, 3 * CPAGES);  /* the owner ended that grant */
    xm_endpoint_close(ep2);
    pump(3);
    CHECK_EQ(zs().peer_pages, CPAGES);         /* ep2's went with it */
    free(lb);
    node_close();
    return 0;
}

/* Order per channel with many channels blocked: 18 endpoints each fill
 * the owner's one-page ring to them with small answers, then ask for a
 * grant (a large answer that no longer fits) and once more (a small one
 * that would).  Each must see the large answer before the small one. */
#define NORDER 18
static struct { unsigned n, big_at, small_after; } order_seen[NORDER];

static void order_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *d, size_t len)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    struct w_grep h;

    if (type != XM_REC_ZC_GREP || len < sizeof(h))
        return;
    memcpy(&h, d, sizeof(h));
    order_seen[i].n++;
    if (h.status == 0)
        order_seen[i].big_at = order_seen[i].n;
    else if (h.chunk == 7777)
        order_seen[i].small_after = order_seen[i].big_at;
}

static int peer_order_many_blocked(const void *arg)
{
    const uint64_t len = CHUNK, seed = 131;
    xm_endpoint_t *eps[NORDER];
    xm_channel_t *chs[NORDER];
    uint64_t id;

    peer_connect(RING_PAGES);
    alloc_slot(0, len, 0, seed);
    id = reg_slot(0, RD, 0, len);
    memset(order_seen, 0, sizeof(order_seen));
    for (unsigned i = 0; i < NORDER; i++) {
        xm_service_t svc = { .first_type = XM_REC_ZC_FIRST, .last_type = XM_REC_ZC_LAST,
                             .recv = order_recv, .arg = (void *)(uintptr_t)i };
        eps[i] = extra_endpoint(&svc, &chs[i]);
    }
    RPC(OP_HOLD, 0);   /* the owner reads all of it in one go */
    for (unsigned i = 0; i < NORDER; i++) {
        /* 4096-byte ring: 100 answers of 40 bytes leave 96 */
        for (unsigned k = 0; k < 100; k++) {
            struct w_greq q = { 999999, k, 0 };
            CHECK_EQ(xm_chan_send(chs[i], XM_REC_ZC_GREQ, NULL, 0, &q, sizeof(q)), 0);
        }
        struct w_greq big = { id, 0, 0 }, small = { 999999, 7777, 0 };
        CHECK_EQ(xm_chan_send(chs[i], XM_REC_ZC_GREQ, NULL, 0, &big, sizeof(big)), 0);
        CHECK_EQ(xm_chan_send(chs[i], XM_REC_ZC_GREQ, NULL, 0, &small, sizeof(small)), 0);
    }
    /* the owner handles all 18 * 102 requests while nobody reads its
     * answers: all 18 channels are blocked at once */
    RPC(OP_PROGRESS, 500);
    for (double end = now() + 20; now() < end;) {
        unsigned done = 0;
        for (unsigned i = 0; i < NORDER; i++) {
            xm_endpoint_progress(eps[i]);
            done += order_seen[i].n == 102;
        }
        if (done == NORDER)
            break;
        RPC(OP_INFO, 0);   /* let the owner send what waited */
    }
    for (unsigned i = 0; i < NORDER; i++) {
        CHECK_EQ(order_seen[i].n, 102);
        CHECK_EQ(order_seen[i].big_at, 101);
        CHECK_EQ(order_seen[i].small_after, 101);   /* the small one came after it */
        xm_endpoint_close(eps[i]);
    }
    node_close();
    return 0;
}

/* ======================================================================
 * the cmocka side: processes
 * ====================================================================== */

static pid_t spawn(int (*fn)(const void *), const void *arg, int keep, int drop)
{
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS };
        for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            signal(sigs[i], SIG_DFL);   /* not cmocka's handlers */
        alarm(150);
        if (drop >= 0)
            close(drop);
        ctl = keep;
        failures = 0;
        int rc = fn(arg);
        fflush(stderr);
        _exit(rc || failures ? 1 : 0);
    }
    return pid;
}

/* exit status, 128 + signal, or -2 after killing it at the deadline */
static int reap(pid_t pid, double secs)
{
    double end = now() + secs;
    int st;

    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        if (now() > end) {
            fprintf(stderr, "process %d did not finish in %.0f s: killed\n", (int)pid, secs);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -2;
        }
        usleep(2000);
    }
}

static const uint64_t noargs[6];

static int owner_quit(pid_t owner, int sock)
{
    ctl = sock;
    if (rpc_try(OP_QUIT, noargs, NULL, 0, 0))
        kill(owner, SIGKILL);
    return reap(owner, 30);
}

struct pair {
    pid_t owner;
    int sock;   /* our end; the owner has the other */
};

static void pair_start(struct pair *p, const struct owner_opts *oo)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    p->owner = spawn(owner_fn, oo, sv[0], sv[1]);
    assert_true(p->owner > 0);
    close(sv[0]);
    p->sock = sv[1];
}

static int pair_peer(struct pair *p, int (*fn)(const void *), const void *arg)
{
    pid_t pid = spawn(fn, arg, p->sock, -1);
    return pid > 0 ? reap(pid, 180) : -1;
}

static void run_pair(int (*fn)(const void *), const void *arg, const struct owner_opts *oo,
                     int owner_exits)
{
    struct pair p;
    int prc, orc;

    pair_start(&p, oo);
    prc = pair_peer(&p, fn, arg);
    orc = owner_exits ? reap(p.owner, 30) : owner_quit(p.owner, p.sock);
    close(p.sock);
    assert_int_equal(prc, 0);
    assert_int_equal(orc, 0);
}

static void test_get_basic(void **state) { run_pair(peer_basic, NULL, NULL, 0); }
static void test_regcache(void **state) { run_pair(peer_regcache, NULL, NULL, 0); }
static void test_put_rights(void **state) { run_pair(peer_put, NULL, NULL, 0); }
static void test_inval_reregister(void **state) { run_pair(peer_inval, NULL, NULL, 0); }
static void test_inval_remap(void **state) { run_pair(peer_inval, "remap", NULL, 0); }
static void test_inval_ack_late_read(void **state)
{
    setenv("XENMPI_ZC_INVAL_TIMEOUT", "0.3", 1);
    run_pair(peer_inval_ack_late_read, NULL, NULL, 0);
    unsetenv("XENMPI_ZC_INVAL_TIMEOUT");
}
static void test_inval_ignored(void **state)
{
    setenv("XENMPI_ZC_INVAL_TIMEOUT", "0.3", 1);   /* the owner forked next reads it */
    run_pair(peer_inval_ignored, NULL, NULL, 0);
    unsetenv("XENMPI_ZC_INVAL_TIMEOUT");
}
static void test_invalidate(void **state) { run_pair(peer_invalidate, NULL, NULL, 0); }
static void test_ids_unguessable(void **state) { run_pair(peer_guess, NULL, NULL, 0); }
static void test_flood_unread(void **state) { run_pair(peer_flood_unread, NULL, NULL, 0); }
static void test_flood_under_cap(void **state) { run_pair(peer_flood_unread, "under", NULL, 0); }
static void test_evict_owner_cap(void **state) { run_pair(peer_evict_owner, NULL, NULL, 0); }
static void test_evict_owner_lru(void **state) { run_pair(peer_evict_owner_lru, NULL, NULL, 0); }
static void test_evict_peer_cap(void **state) { run_pair(peer_evict_peer, NULL, NULL, 0); }

static void test_exhaustion(void **state)
{
    const struct owner_opts oo = { SMALL_GNTTAB, 0, NULL };
    run_pair(peer_exhaust, NULL, &oo, 0);
}

static void test_hostile_peer(void **state) { run_pair(peer_hostile_peer, NULL, NULL, 0); }
static void test_flood_kinds(void **state) { run_pair(peer_flood_kinds, NULL, NULL, 0); }
static void test_hostile_owner(void **state) { run_pair(peer_hostile_owner, NULL, NULL, 0); }
static void test_greq_window(void **state) { run_pair(peer_greq_window, NULL, NULL, 0); }

/* Run a peer; once it is done, wait until the owner sees its channel go
 * down and read the owner's counters.  0 when all three happened. */
struct gone {
    int prc, wait;
    xm_zc_stats_t st;
};

static int peer_until_gone(struct pair *p, int (*fn)(const void *), struct gone *g)
{
    g->prc = pair_peer(p, fn, NULL);
    ctl = p->sock;
    if (g->prc || rpc_try(OP_WAIT_GONE, noargs, NULL, 0, 0))
        return -1;
    g->wait = R.rc;
    if (rpc_try(OP_STATS, noargs, NULL, 0, 0))
        return -1;
    g->st = R.st;
    return 0;
}

/* a peer that never acknowledges: what waits is bounded, and its end ends
 * the grant and drops the waiting requests */
static void test_park_cap(void **state)
{
    struct pair p;
    struct gone g = { -1, -1, { 0 } };
    int orc;

    pair_start(&p, NULL);
    peer_until_gone(&p, peer_park_cap, &g);
    orc = owner_quit(p.owner, p.sock);
    close(p.sock);
    assert_int_equal(g.prc, 0);
    assert_int_equal(g.wait, 0);
    assert_int_equal(g.st.owner_pages, 0);
    assert_int_equal(g.st.parked, 0);
    assert_int_equal(orc, 0);
}

static void test_ring_full(void **state)
{
    const struct owner_opts oo = { NULL, 1, NULL };
    run_pair(peer_ring_full, NULL, &oo, 0);
}

/* the peer dies holding grants: they end, and the table has room again */
static void test_peer_gone(void **state)
{
    const struct owner_opts oo = { SMALL_GNTTAB, 0, NULL };
    struct pair p;
    struct gone g1 = { -1, -1, { 0 } }, g2 = { -1, -1, { 0 } };
    int orc;

    pair_start(&p, &oo);
    if (peer_until_gone(&p, peer_gone_first, &g1) == 0)
        peer_until_gone(&p, peer_gone_second, &g2);
    orc = owner_quit(p.owner, p.sock);
    close(p.sock);
    assert_int_equal(g1.prc, 0);
    assert_int_equal(g1.wait, 0);
    assert_int_equal(g1.st.owner_pages, 0);
    assert_int_equal(g1.st.granted_pages, 2 * CPAGES);
    assert_int_equal(g2.prc, 0);
    assert_int_equal(g2.wait, 0);
    assert_int_equal(g2.st.owner_pages, 0);
    assert_int_equal(orc, 0);
}

static void test_same_domain(void **state)
{
    const struct owner_opts oo = { NULL, 0, SHARED_DOMID };
    run_pair(peer_same_domain, NULL, &oo, 0);
}

static void test_bad_cons_under_lock(void **state)
{
    const struct owner_opts oo = { NULL, 1, NULL };
    run_pair(peer_bad_cons_under_lock, NULL, &oo, 0);
}
static void test_caps_per_endpoint(void **state) { run_pair(peer_caps_per_endpoint, NULL, NULL, 0); }
static void test_order_many_blocked(void **state)
{
    const struct owner_opts oo = { NULL, 1, NULL };
    run_pair(peer_order_many_blocked, NULL, &oo, 0);
}
static void test_owner_gone(void **state) { run_pair(peer_owner_dies, NULL, NULL, 1); }
static void test_copy_on_dead_channel(void **state) { run_pair(peer_owner_dies, "after", NULL, 1); }

/* ======================================================================
 * without a channel: geometry and the owner's copy path
 * ====================================================================== */

struct pc {
    uint64_t base, len, raddr;
    size_t n, want;
    int zc;
};

static void check_pieces(const struct pc *c, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int zc = -1;
        size_t got = xm_zc_piece(c[i].base, c[i].len, c[i].raddr, c[i].n, &zc);
        if (got != c[i].want || zc != c[i].zc)
            fprintf(stderr, "case %u: piece(%#llx, %#llx, %#llx, %#zx) = %#zx zc %d, want %#zx zc %d\n",
                    i, (unsigned long long)c[i].base, (unsigned long long)c[i].len,
                    (unsigned long long)c[i].raddr, c[i].n, got, zc, c[i].want, c[i].zc);
        assert_int_equal(got, c[i].want);
        assert_int_equal(zc, c[i].zc);
    }
}

static void test_piece_exact(void **state)
{
    const uint64_t M = 0x10000000, base = M + 100, len = 3 * MiB + 3 * PG + 777;
    const uint64_t gs = M + PG, ge = M + 3 * MiB + 3 * PG, end = base + len;
    const uint64_t top = 0xFFFFFFFFFFFFE000ull;   /* one page below the last */
    const struct pc c[] = {
        /* a registration with partial pages at both ends */
        { base, len, base, len, PG - 100, 0 },
        { base, len, base + 5, 10, 10, 0 },              /* inside the head page */
        { base, len, gs - 1, 2, 1, 0 },
        { base, len, gs, len, CHUNK, 1 },
        { base, len, gs, 1, 1, 1 },
        { base, len, gs + CHUNK - 100, 200, 100, 1 },    /* up to the chunk boundary */
        { base, len, gs + CHUNK, 200, 200, 1 },
        { base, len, gs + CHUNK - 1, CHUNK + 1, 1, 1 },
        { base, len, gs + 2 * CHUNK + 5, 3 * PG + 10, 3 * PG + 10, 1 },
        { base, len, gs + 3 * CHUNK, 100000, 2 * PG, 1 }, /* the last, short chunk */
        { base, len, ge - 1, 10, 1, 1 },
        { base, len, ge, 10, 10, 0 },                    /* the tail page */
        { base, len, ge, end - ge, 877, 0 },
        { base, len, M, PG, PG, 0 },                     /* before the registration */
        { base, len, M, PG + 1, PG, 0 },
        { base, len, M + 8 * MiB, 5, 5, 0 },             /* after it */
        { base, len, gs, UINT64_MAX - gs + 1, UINT64_MAX - gs + 1, 0 },   /* raddr + n wraps */
        /* no whole page at all */
        { 100, 4000, 100, 4000, 4000, 0 },
        { PG, PG - 1, PG, PG - 1, PG - 1, 0 },
        { PG + 1, 2 * PG - 2, PG + 1, 2 * PG - 2, 2 * PG - 2, 0 },
        { 0, 0, 0, 1, 1, 0 },
        { 5 * PG, 0, 5 * PG, 10, 10, 0 },
        /* page aligned */
        { PG, PG, PG, PG, PG, 1 },
        { PG, PG, PG, 2 * PG, PG, 1 },
        { 0, 2 * MiB, 0, 2 * MiB, MiB, 1 },
        { 0, 2 * MiB, MiB - PG, 2 * PG, PG, 1 },
        /* near the top of the address space */
        { top + PG, PG, top + PG, 100, 100, 0 },         /* base + len wraps: nothing */
        { UINT64_MAX - 10, 5, UINT64_MAX - 10, 5, 5, 0 },
        { UINT64_MAX - 10, 10, UINT64_MAX - 10, 5, 5, 0 },
        { top, PG, top, PG, PG, 1 },
        { top, PG, top + PG - 1, 1, 1, 1 },
        { top, PG, top - 1, 2, 1, 0 },
        { top, PG, top, 2 * PG, 2 * PG, 0 },             /* raddr + n wraps */
        { top + 1, PG, top + 1, 100, 100, 0 },
    };
    check_pieces(c, sizeof(c) / sizeof(c[0]));
}

/* A zero-copy piece never reaches past the last whole page, even where
 * the end of its chunk lies beyond 2^64. */
static void test_piece_top_of_address_space(void **state)
{
    const uint64_t top = 0xFFFFFFFFFFFFE000ull;
    const struct pc c[] = {
        { top, PG, top, PG + 1, PG, 1 },
        { top, PG, top + 10, PG, PG - 10, 1 },
        { 0, UINT64_MAX, top, PG + 1, PG, 1 },
        { 0xFFFFFFFFFFF00000ull, MiB - 1, 0xFFFFFFFFFFFFE000ull, PG + 1, PG, 1 },
    };
    check_pieces(c, sizeof(c) / sizeof(c[0]));
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random cases against an oracle in 128-bit arithmetic; the pieces of a
 * range also cover it exactly.  Registrations end at least a chunk below
 * 2^64 (test_piece_top_of_address_space covers the rest). */
static void test_piece_random(void **state)
{
    typedef unsigned __int128 u128;

    for (unsigned it = 0; it < 200000; it++) {
        uint64_t base, len, raddr, n;
        switch (rnd() % 4) {
        case 0: base = rnd() % (64 * MiB); break;
        case 1: base = (rnd() % (1ull << 47)) & ~(PG - 1); break;
        case 2: base = (rnd() % (1ull << 47)) | (rnd() % PG); break;
        default: base = UINT64_MAX - 2 * CHUNK - rnd() % (64 * MiB); break;
        }
        len = rnd() % 4 == 0 ? rnd() % (3 * PG) : rnd() % (6 * MiB);
        if ((u128)base + len + CHUNK > UINT64_MAX)
            len = UINT64_MAX - CHUNK - base;
        raddr = base >= 2 * PG ? base - 2 * PG + rnd() % (len + 4 * PG)
                               : rnd() % (base + len + 2 * PG);
        n = 1 + rnd() % (rnd() % 2 ? 3 * MiB : 3 * PG);
        if ((u128)raddr + n > UINT64_MAX)
            continue;

        /* the oracle */
        u128 gs = ((u128)base + PG - 1) / PG * PG, ge = ((u128)base + len) / PG * PG;
        size_t want;
        int wzc;
        if (ge <= gs || raddr >= ge || (u128)raddr + n <= gs) {
            want = n;
            wzc = 0;
        } else if (raddr < gs) {
            want = (size_t)(gs - raddr);
            wzc = 0;
        } else {
            u128 cend = gs + ((raddr - gs) / CHUNK + 1) * CHUNK;
            u128 lim = cend < ge ? cend : ge;
            want = (size_t)(lim - raddr < n ? lim - raddr : n);
            wzc = 1;
        }
        int zc = -1;
        size_t got = xm_zc_piece(base, len, raddr, n, &zc);
        if (got != want || zc != wzc)
            fprintf(stderr, "piece(%#llx, %#llx, %#llx, %#llx) = %#zx zc %d, want %#zx zc %d\n",
                    (unsigned long long)base, (unsigned long long)len,
                    (unsigned long long)raddr, (unsigned long long)n, got, zc, want, wzc);
        assert_int_equal(got, want);
        assert_int_equal(zc, wzc);

        /* walking a range piece by piece covers it exactly */
        if (it % 16 == 0) {
            uint64_t a = raddr, left = n;
            while (left) {
                size_t k = xm_zc_piece(base, len, a, left, &zc);
                assert_true(k > 0 && k <= left);
                if (zc) {
                    assert_true(a >= gs && (u128)a + k <= ge);
                    assert_true((a - gs) / CHUNK == (a + k - 1 - gs) / CHUNK);
                }
                a += k;
                left -= k;
            }
        }
    }
}

static void test_reg_copy_bounds(void **state)
{
    uint8_t *m = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    fill(m, (uintptr_t)m, 3 * PG, 1);
    const uint64_t base = (uintptr_t)m + 100, len = 5000;
    uint64_t idR = 0, idW = 0, idRW = 0, id;
    uint8_t buf[8192], src[64];

    assert_int_equal(xm_zc_reg((void *)(uintptr_t)base, len, RD, &idR), 0);
    assert_int_equal(xm_zc_reg((void *)(uintptr_t)base, len, WR, &idW), 0);
    assert_int_equal(xm_zc_reg((void *)(uintptr_t)base, len, RD | WR, &idRW), 0);
    assert_true(idR != 0 && idW != idR && idRW != idW && idRW != idR);

    /* inside */
    memset(buf, 0, sizeof(buf));
    assert_int_equal(xm_zc_reg_copy(idR, base, len, RD, buf), 0);
    assert_int_equal(mism(buf, base, len, 1), 0);
    assert_int_equal(xm_zc_reg_copy(idR, base + len - 1, 1, RD, buf), 0);
    assert_int_equal(buf[0], pat(base + len - 1, 1));
    assert_int_equal(xm_zc_reg_copy(idR, base, 0, RD, buf), 0);
    assert_int_equal(xm_zc_reg_copy(idR, base + len, 0, RD, buf), 0);
    assert_int_equal(xm_zc_reg_copy(idRW, base + 7, 100, RD, buf), 0);
    assert_int_equal(mism(buf, base + 7, 100, 1), 0);

    /* outside, and overflowing */
    const struct { uint64_t addr, len; } out[] = {
        { base - 1, 1 }, { base - 1, 2 }, { base + len - 1, 2 }, { base + len, 1 },
        { base + len + 1, 0 }, { base, len + 1 }, { 0, 1 }, { base - 100, len },
        { base + 1, UINT64_MAX }, { UINT64_MAX, 2 }, { UINT64_MAX - 5, 10 },
        { base + 2, UINT64_MAX - base }, { base + 10, UINT64_MAX - 9 },
        { base + len, UINT64_MAX }, { UINT64_MAX, 0 },
    };
    for (unsigned i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
        assert_int_equal(xm_zc_reg_copy(idR, out[i].addr, out[i].len, RD, buf), -EFAULT);
        assert_int_equal(xm_zc_reg_copy(idW, out[i].addr, out[i].len, WR, buf), -EFAULT);
    }

    /* rights: exactly one direction, one the registration allows */
    assert_int_equal(xm_zc_reg_copy(idR, base, 10, WR, buf), -EACCES);
    assert_int_equal(xm_zc_reg_copy(idW, base, 10, RD, buf), -EACCES);
    assert_int_equal(xm_zc_reg_copy(idRW, base, 10, RD | WR, buf), -EACCES);
    assert_int_equal(xm_zc_reg_copy(idRW, base, 10, 0, buf), -EACCES);
    assert_int_equal(xm_zc_reg_copy(idRW, base, 10, 4, buf), -EACCES);
    assert_int_equal(xm_zc_reg_copy(idR, base - 1, 10, WR, buf), -EFAULT);   /* bounds first */
    assert_int_equal(mism(m, (uintptr_t)m, 3 * PG, 1), 0);                  /* nothing written */

    /* a write changes exactly its bytes */
    fill(src, base + 10, sizeof(src), 2);
    assert_int_equal(xm_zc_reg_copy(idW, base + 10, sizeof(src), WR, src), 0);
    assert_int_equal(mism(m, (uintptr_t)m, 110, 1), 0);
    assert_int_equal(mism(m + 110, base + 10, sizeof(src), 2), 0);
    assert_int_equal(mism(m + 110 + sizeof(src), (uintptr_t)m + 110 + sizeof(src),
                          3 * PG - 110 - sizeof(src), 1), 0);
    fill(src, base + len - sizeof(src), sizeof(src), 3);
    assert_int_equal(xm_zc_reg_copy(idRW, base + len - sizeof(src), sizeof(src), WR, src), 0);
    assert_int_equal(mism(m + 100 + len - sizeof(src), base + len - sizeof(src), sizeof(src), 3), 0);
    assert_int_equal(m[100 + len], pat((uintptr_t)m + 100 + len, 1));

    /* unknown and forgotten ids */
    assert_int_equal(xm_zc_reg_copy(idRW + 1000, base, 10, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_reg_copy(0, base, 10, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_dereg(idR), 0);
    assert_int_equal(xm_zc_reg_copy(idR, base, 10, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_dereg(idR), -ENOENT);
    assert_int_equal(xm_zc_dereg(0), -ENOENT);
    assert_int_equal(xm_zc_reg_copy(idRW, base, 10, RD, buf), 0);   /* the others stay */

    /* registration arguments; ids are never reused */
    assert_int_equal(xm_zc_reg((void *)(uintptr_t)base, len, 4, &id), -EINVAL);
    assert_int_equal(xm_zc_reg((void *)(uintptr_t)(UINTPTR_MAX - 10), 100, RD, &id), -EINVAL);
    assert_int_equal(xm_zc_reg((void *)(uintptr_t)base, len, RD, &id), 0);
    assert_true(id != idR && id != idW && id != idRW && id != 0);
    assert_int_equal(xm_zc_dereg(id), 0);
    assert_int_equal(xm_zc_dereg(idW), 0);
    assert_int_equal(xm_zc_dereg(idRW), 0);
    munmap(m, 3 * PG);
}

static void fault_exit(int sig) { _exit(42); }

/* Copies for a peer into memory that went away or is not writable fail
 * with -EFAULT: the owner takes no signal (a memcpy would). */
static void test_reg_copy_fault(void **state)
{
    uint8_t *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const uint64_t base = (uintptr_t)m;
    uint8_t buf[4 * PG];
    uint64_t id;

    assert_true(m != MAP_FAILED);
    fill(m, base, 4 * PG, 5);
    assert_int_equal(xm_zc_reg(m, 4 * PG, RD | WR, &id), 0);
    assert_int_equal(mprotect(m + PG, PG, PROT_READ), 0);
    assert_int_equal(mprotect(m + 2 * PG, PG, PROT_NONE), 0);
    assert_int_equal(munmap(m + 3 * PG, PG), 0);

    /* page 0 is what it was: copies both ways */
    memset(buf, 0, PG);
    assert_int_equal(xm_zc_reg_copy(id, base, PG, RD, buf), 0);
    assert_int_equal(mism(buf, base, PG, 5), 0);
    fill(buf, base + 10, 20, 6);
    assert_int_equal(xm_zc_reg_copy(id, base + 10, 20, WR, buf), 0);
    assert_int_equal(mism(m + 10, base + 10, 20, 6), 0);
    /* page 1 is read-only now: read yes, write -EFAULT and unchanged */
    assert_int_equal(xm_zc_reg_copy(id, base + PG, PG, RD, buf), 0);
    assert_int_equal(mism(buf, base + PG, PG, 5), 0);
    fill(buf, base + PG, 64, 7);
    assert_int_equal(xm_zc_reg_copy(id, base + PG, 64, WR, buf), -EFAULT);
    assert_int_equal(mism(m + PG, base + PG, PG, 5), 0);
    /* page 2 has no access, page 3 is unmapped: -EFAULT both ways, also
     * for a copy that starts in good memory and runs into them */
    assert_int_equal(xm_zc_reg_copy(id, base + 2 * PG, 8, RD, buf), -EFAULT);
    assert_int_equal(xm_zc_reg_copy(id, base + 2 * PG, 8, WR, buf), -EFAULT);
    assert_int_equal(xm_zc_reg_copy(id, base + 3 * PG + 100, 8, RD, buf), -EFAULT);
    assert_int_equal(xm_zc_reg_copy(id, base + 3 * PG + 100, 8, WR, buf), -EFAULT);
    assert_int_equal(xm_zc_reg_copy(id, base + PG - 8, 2 * PG, RD, buf), -EFAULT);
    assert_int_equal(xm_zc_reg_copy(id, base, 4 * PG, RD, buf), -EFAULT);
    /* the registration itself is fine */
    assert_int_equal(xm_zc_reg_copy(id, base + 100, 8, RD, buf), 0);
    assert_int_equal(xm_zc_dereg(id), 0);

    /* a fault outside a copy is not ours: it reaches the handler that was
     * there before, or the default action */
    for (int with_handler = 0; with_handler < 2; with_handler++) {
        pid_t pid = fork();
        int st = 0;

        assert_true(pid >= 0);
        if (pid == 0) {
            uint64_t id2;

            signal(SIGSEGV, with_handler ? fault_exit : SIG_DFL);
            if (xm_zc_reg(m, PG, RD, &id2))
                _exit(3);
            *(volatile uint8_t *)(m + 2 * PG) = 1;   /* PROT_NONE */
            _exit(4);
        }
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (with_handler)
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 42);
        else
            assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    }
    munmap(m, 3 * PG);
}

/* xm_zc_invalidate kills exactly the registrations that meet the range;
 * deregistration works once after it. */
static void test_invalidate_ranges(void **state)
{
    uint8_t *m = mmap(NULL, 80 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const uint64_t base = (uintptr_t)m;
    uint64_t a, b, c, z, far[40], gap[40];
    xm_zc_stats_t s0, s1;
    uint8_t buf[64];

    assert_true(m != MAP_FAILED);
    fill(m, base, 80 * PG, 8);
    xm_zc_get_stats(&s0);
    assert_int_equal(xm_zc_reg(m, 2 * PG, RD, &a), 0);              /* [0, 2 PG) */
    assert_int_equal(xm_zc_reg(m + 2 * PG, PG, RD, &b), 0);         /* [2 PG, 3 PG) */
    assert_int_equal(xm_zc_reg(m + 3 * PG + 10, 50, RD, &c), 0);    /* inside page 3 */
    assert_int_equal(xm_zc_reg(m + 4 * PG, 0, RD, &z), 0);          /* the point 4 PG */

    /* ends where b starts: a's second page only, b untouched; a keeps
     * its first page */
    xm_zc_invalidate(m + PG, PG);
    assert_int_equal(xm_zc_reg_copy(a, base + PG, 8, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_reg_copy(a, base + PG - 4, 8, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_reg_copy(a, base + 2 * PG - 1, 0, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_reg_copy(a, base + PG - 8, 8, RD, buf), 0);
    assert_int_equal(mism(buf, base + PG - 8, 8, 8), 0);
    assert_int_equal(xm_zc_reg_copy(b, base + 2 * PG, 8, RD, buf), 0);
    /* one byte of it takes the whole page */
    xm_zc_invalidate(m + 10, 1);
    assert_int_equal(xm_zc_reg_copy(a, base + PG - 8, 8, RD, buf), -ENOENT);
    /* the byte after c and the one before it: nothing */
    xm_zc_invalidate(m + 3 * PG + 60, 1);
    xm_zc_invalidate(m + 3 * PG + 9, 1);
    xm_zc_invalidate(m + 3 * PG, 0);
    assert_int_equal(xm_zc_reg_copy(c, base + 3 * PG + 10, 50, RD, buf), 0);
    /* its last byte: c */
    xm_zc_invalidate(m + 3 * PG + 59, 1);
    assert_int_equal(xm_zc_reg_copy(c, base + 3 * PG + 10, 8, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_reg_copy(b, base + 2 * PG, 8, RD, buf), 0);
    /* a range up to the top of the address space takes the point z */
    xm_zc_invalidate(m + 4 * PG, SIZE_MAX);
    assert_int_equal(xm_zc_reg_copy(z, base + 4 * PG, 0, RD, buf), -ENOENT);
    assert_int_equal(xm_zc_reg_copy(b, base + 2 * PG, 8, RD, buf), 0);
    xm_zc_get_stats(&s1);
    /* a died of its two holes: they cover all of it */
    assert_int_equal(s1.invalidated - s0.invalidated, 3);
    assert_int_equal(s1.holed - s0.holed, 1);

    /* a registration over pages 50-59 loses pages one at a time: each is
     * a hole while the rest works, until one more than it keeps kills it */
    uint64_t h;
    assert_int_equal(xm_zc_reg(m + 50 * PG, 10 * PG, RD, &h), 0);
    for (unsigned i = 0; i < 4; i++) {
        xm_zc_invalidate(m + (51 + 2 * i) * PG + 7, 3);
        assert_int_equal(xm_zc_reg_copy(h, base + (51 + 2 * i) * PG, 8, RD, buf), -ENOENT);
        assert_int_equal(xm_zc_reg_copy(h, base + 50 * PG, 8, RD, buf), 0);
        assert_int_equal(xm_zc_reg_copy(h, base + (52 + 2 * i) * PG, 8, RD, buf), 0);
        assert_int_equal(mism(buf, base + (52 + 2 * i) * PG, 8, 8), 0);
    }
    xm_zc_get_stats(&s0);
    assert_int_equal(s0.holed - s1.holed, 4);
    assert_int_equal(s0.invalidated - s1.invalidated, 0);
    xm_zc_invalidate(m + 59 * PG, 1);
    assert_int_equal(xm_zc_reg_copy(h, base + 50 * PG, 8, RD, buf), -ENOENT);
    xm_zc_get_stats(&s1);
    assert_int_equal(s1.invalidated - s0.invalidated, 1);
    assert_int_equal(xm_zc_dereg(h), 0);

    /* 40 reports before a lookup: each takes its own, none what lies
     * between them */
    for (unsigned i = 0; i < 40; i++) {
        assert_int_equal(xm_zc_reg(m + (5 + i) * PG, 8, RD, &far[i]), 0);
        assert_int_equal(xm_zc_reg(m + (5 + i) * PG + 100, 8, RD, &gap[i]), 0);
    }
    for (unsigned i = 0; i < 40; i++)
        xm_zc_invalidate(m + (5 + i) * PG, 8);
    for (unsigned i = 0; i < 40; i++) {
        assert_int_equal(xm_zc_reg_copy(far[i], base + (5 + i) * PG, 8, RD, buf), -ENOENT);
        assert_int_equal(xm_zc_reg_copy(gap[i], base + (5 + i) * PG + 100, 8, RD, buf), 0);
    }
    xm_zc_get_stats(&s0);
    assert_int_equal(s0.invalidated - s1.invalidated, 40);
    /* over all of them: the 40 between die, the dead are not counted again */
    xm_zc_invalidate(m + 5 * PG, 40 * PG);
    xm_zc_get_stats(&s1);
    assert_int_equal(s1.invalidated - s0.invalidated, 40);

    /* dereg: once each, dead or alive */
    assert_int_equal(xm_zc_dereg(a), 0);
    assert_int_equal(xm_zc_dereg(a), -ENOENT);
    assert_int_equal(xm_zc_dereg(b), 0);
    assert_int_equal(xm_zc_dereg(c), 0);
    assert_int_equal(xm_zc_dereg(z), 0);
    for (unsigned i = 0; i < 40; i++) {
        assert_int_equal(xm_zc_dereg(far[i]), 0);
        assert_int_equal(xm_zc_dereg(gap[i]), 0);
    }
    munmap(m, 80 * PG);
}

static char host[64];

static int setup(void **state)
{
    snprintf(host, sizeof(host), "unit-zc-%d", (int)getpid());
    setenv("XENMPI_BACKEND", "sim", 1);
    setenv("XENMPI_SIM_HOST", host, 1);
    unsetenv("XENMPI_SIM_DOMID");
    unsetenv("XENMPI_SIM_GNTTAB_SIZE");
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf /dev/shm/xenmpi-sim-%s", host);
    return system(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piece_exact),
        cmocka_unit_test(test_piece_random),
        cmocka_unit_test(test_piece_top_of_address_space),
        cmocka_unit_test(test_reg_copy_bounds),
        cmocka_unit_test(test_get_basic),
        cmocka_unit_test(test_put_rights),
        cmocka_unit_test(test_inval_reregister),
        cmocka_unit_test(test_inval_remap),
        cmocka_unit_test(test_inval_ignored),
        cmocka_unit_test(test_inval_ack_late_read),
        cmocka_unit_test(test_invalidate),
        cmocka_unit_test(test_ids_unguessable),
        cmocka_unit_test(test_reg_copy_fault),
        cmocka_unit_test(test_invalidate_ranges),
        cmocka_unit_test(test_regcache),
        cmocka_unit_test(test_evict_owner_cap),
        cmocka_unit_test(test_evict_owner_lru),
        cmocka_unit_test(test_evict_peer_cap),
        cmocka_unit_test(test_exhaustion),
        cmocka_unit_test(test_hostile_peer),
        cmocka_unit_test(test_flood_kinds),
        cmocka_unit_test(test_hostile_owner),
        cmocka_unit_test(test_greq_window),
        cmocka_unit_test(test_park_cap),
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_same_domain),
        cmocka_unit_test(test_peer_gone),
        cmocka_unit_test(test_owner_gone),
        cmocka_unit_test(test_copy_on_dead_channel),
        cmocka_unit_test(test_bad_cons_under_lock),
        cmocka_unit_test(test_flood_unread),
        cmocka_unit_test(test_flood_under_cap),
        cmocka_unit_test(test_caps_per_endpoint),
        cmocka_unit_test(test_order_many_blocked),
    };
    return cmocka_run_group_tests_name("zc", tests, setup, teardown);
}
