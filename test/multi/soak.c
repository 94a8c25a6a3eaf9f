/*
 * soak - many messages between two domains, every one checked.
 *
 *   soak sim <count> [threads]            fork both roles as two sim domains
 *   soak a <peer domid> <count> [threads] receiver (run in one VM)
 *   soak b <peer domid> <count> [threads] sender (run in the other)
 *
 * Each of the threads (default 2) of the sender has its own endpoint and
 * channel to the matching thread of the receiver and sends count/threads
 * messages.  Message i has a size and content that are functions of i:
 * most go through the ring (0 B to the ring's largest record); every 64th
 * is large (12 KiB to 1 MiB, at page offsets that vary) and goes the
 * way both adapters send large messages: the sender registers the buffer
 * read-only through the core's registration cache and sends a descriptor,
 * the receiver reads it with xm_xfer_zcopy (grant copy for whole pages, the
 * ring for the rest) and acks.  The sender's large buffers are a pool; one
 * in 16 uses replaces the buffer's mapping (xm_zc_invalidate, munmap, a new
 * mmap) so cached registrations die and come back under load.
 * The receiver checks that every message arrives once, in order, with
 * every byte right; the sender that the receiver's final count and its
 * own agree.  Exit 0 when every check passed; the last line gives the
 * messages, bytes and seconds.
 */
#include "xm_channel.h"
#include "xm_hv.h"
#include "xm_xfer.h"
#include "xm_zc.h"
#include "simpair.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { S_DATA = 1, S_RDV, S_ACK, S_DONE, S_FIN };

#define MAX_THREADS 8
#define POOL 8                     /* large buffers in flight per thread */
#define BUF_BYTES (1u << 20)
#define SLOT_BYTES (BUF_BYTES + 8192)
#define LARGE_EVERY 64
#define REMAP_EVERY 16             /* uses of a pool slot between remaps */

struct rdv {
    uint64_t seq;
    xm_rkey_t rk;
    uint64_t len;
};

struct fin {
    uint64_t received, bad, large;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int is_large(uint64_t i) { return i % LARGE_EVERY == LARGE_EVERY - 1; }

/* size of message i; ring messages fit the ring's largest record (max) */
static size_t msg_size(uint64_t i, size_t max)
{
    static const size_t small[] = { 0, 1, 8, 13, 64, 100, 256, 1000, 4096, 9000, 1u << 30 };
    static const size_t large[] = { 12288 + 100, 65536, 3 * 65536 + 4000, BUF_BYTES };
    size_t nsmall = sizeof(small) / sizeof(small[0]);

    if (is_large(i))
        return large[(i / LARGE_EVERY) % 4];
    size_t s = small[(i * 7 + (i >> 4)) % nsmall];
    return s > max ? max : s;
}

/* Where in its slot large message i starts.  A slot takes every 8th large
 * message, always of one size, at an offset of its own (so its range comes
 * back and the caches hit) except on every third use, when the range moves
 * by 512 bytes: a second registration over the same pages, whose grant
 * must wait until the first one's is withdrawn. */
static size_t msg_offset(uint64_t i)
{
    uint64_t k = i / LARGE_EVERY;
    return (k % POOL) * 1031 % 4096 + (k % (3 * POOL) >= 2 * POOL ? 512 : 0);
}

static uint64_t word(uint64_t seq, uint64_t k)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15ull + (k + 1) * 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29) ^ (x >> 47);
}

static void fill(uint8_t *p, size_t n, uint64_t seq)
{
    size_t k;
    for (k = 0; k + 8 <= n; k += 8) {
        uint64_t w = word(seq, k / 8);
        memcpy(p + k, &w, 8);
    }
    uint64_t w = word(seq, k / 8);
    memcpy(p + k, &w, n - k);
}

/* offset of the first wrong 8-byte word, or n when all n bytes are right */
static size_t check(const uint8_t *p, size_t n, uint64_t seq)
{
    size_t k;
    for (k = 0; k < n; k += 8) {
        uint64_t w = word(seq, k / 8);
        if (memcmp(p + k, &w, n - k < 8 ? n - k : 8))
            return k;
    }
    return n;
}

struct side {
    int thread;
    uint32_t peer;
    uint64_t count;
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    xm_xfer_t *x;
    xm_channel_t *ch;
    int gone, failed;
    char err[256];
    /* receiver */
    size_t max;                 /* largest ring message: both sides agree */
    uint64_t next, bad, large, done_count;
    int done;
    struct rx_op {
        struct rdv d;
        uint8_t *buf;
        int state;          /* 0 free, 1 to start, 2 in flight, 3 done, 4 to ack */
        int status;
        struct side *s;
    } ops[POOL];
    /* sender */
    struct slot {
        uint8_t *mem;
        uint64_t id, seq;
        int busy, uses;
    } slots[POOL];
    xm_zc_regcache_t *cache;
    xm_zc_regcache_stats_t rc_stats;
    struct fin fin;
    int got_fin;
    uint64_t remaps;
};

static void fail(struct side *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct side *s, const char *fmt, ...)
{
    va_list ap;
    if (s->failed++)
        return;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
}

static void on_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct side *s = arg;
    uint64_t seq;

    s->ch = ch;
    if (type == S_ACK && len == 8) {            /* sender: a large message read */
        memcpy(&seq, data, 8);
        for (int k = 0; k < POOL; k++)
            if (s->slots[k].busy && s->slots[k].seq == seq) {
                s->slots[k].busy = 0;
                return;
            }
        fail(s, "ack for %llu, not in flight", (unsigned long long)seq);
        return;
    }
    if (type == S_FIN && len == sizeof(struct fin)) {
        memcpy(&s->fin, data, sizeof(s->fin));
        s->got_fin = 1;
        return;
    }
    if (type == S_DONE && len == 8) {
        memcpy(&s->done_count, data, 8);
        s->done = 1;
        return;
    }
    if (type == S_RDV && len == sizeof(struct rdv)) {
        struct rdv d;
        memcpy(&d, data, sizeof(d));
        if (d.seq != s->next || !is_large(d.seq) || d.len != msg_size(d.seq, s->max) ||
            d.rk.len != d.len) {
            s->bad++;
            fail(s, "bad descriptor: seq %llu, expected %llu", (unsigned long long)d.seq,
                 (unsigned long long)s->next);
            s->next = d.seq + 1;
            return;
        }
        s->next++;
        for (int k = 0; k < POOL; k++)
            if (!s->ops[k].state) {
                s->ops[k].d = d;
                s->ops[k].state = 1;
                return;
            }
        fail(s, "more than %d large messages in flight (seq %llu)", POOL,
             (unsigned long long)d.seq);
        return;
    }
    if (type != S_DATA || len < 8) {
        fail(s, "unexpected record type %u, %zu bytes", type, len);
        return;
    }
    memcpy(&seq, data, 8);
    size_t n = len - 8;
    if (seq != s->next || is_large(seq) || n != msg_size(seq, s->max) ||
        check((const uint8_t *)data + 8, n, seq) != n) {
        s->bad++;
        fail(s, "bad message: seq %llu (expected %llu), %zu bytes", (unsigned long long)seq,
             (unsigned long long)s->next, n);
    }
    s->next = seq + 1;
}

static void on_event(void *arg, xm_channel_t *ch, enum xm_chan_event ev)
{
    struct side *s = arg;
    if (ev == XM_EV_ACCEPTED)
        s->ch = ch;
    if (ev == XM_EV_PEER_GONE || ev == XM_EV_FAILED)
        s->gone = 1;
}

static void rx_done(void *arg, int status)
{
    struct rx_op *op = arg;
    op->status = status;
    op->state = 3;
}

static int open_side(struct side *s)
{
    xm_ep_params_t p = { .recv_cb = on_recv, .event_cb = on_event, .cb_arg = s };
    xm_xfer_params_t xp = { .zcopy = 1 };
    int rc = xm_hv_open(&s->hv);

    if (!rc)
        rc = xm_endpoint_open(s->hv, &p, &s->ep);
    if (!rc)
        rc = xm_xfer_attach(s->ep, &xp, &s->x);
    if (rc)
        fail(s, "opening the endpoint: %s", strerror(-rc));
    else
        s->max = xm_endpoint_max_msg(s->ep) - 8 < 9000 ? xm_endpoint_max_msg(s->ep) - 8 : 9000;
    return rc;
}

static void close_side(struct side *s)
{
    if (s->cache)
        xm_zc_regcache_close(s->cache);
    if (s->ep)
        xm_endpoint_close(s->ep);
    if (s->x)
        xm_xfer_detach(s->x);
    if (s->hv)
        xm_hv_close(s->hv);
}

/* progress; after a while with nothing to do, sleep until notified */
static void pump(struct side *s, unsigned *idle)
{
    int n = xm_endpoint_progress(s->ep);
    if (n > 0) {
        *idle = 0;
    } else if (++*idle > 256) {
        xm_endpoint_wait(s->ep, 5);
        *idle = 0;
    }
}

static int send_retry(struct side *s, uint16_t type, const void *h, size_t hl, const void *d,
                      size_t dl)
{
    unsigned idle = 0;
    int rc;
    while ((rc = xm_chan_send(s->ch, type, h, hl, d, dl)) == -EAGAIN && !s->gone)
        pump(s, &idle);
    return rc;
}

static void *receiver(void *arg)
{
    struct side *s = arg;
    char path[128], val[64];
    unsigned idle = 0;

    if (open_side(s))
        return NULL;
    for (int k = 0; k < POOL; k++) {
        s->ops[k].buf = malloc(BUF_BYTES);
        s->ops[k].s = s;
    }
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi-test/soak-%d", xm_hv_domid(s->hv),
             s->thread);
    snprintf(val, sizeof(val), "%u %016llx", xm_endpoint_id(s->ep),
             (unsigned long long)xm_endpoint_key(s->ep));
    xm_store_perm_t perms[1] = { { xm_hv_domid(s->hv), XM_PERM_READ } };
    if (xm_store_write(s->hv, path, val, strlen(val)) || xm_store_set_perms(s->hv, path, perms, 1)) {
        fail(s, "publishing the endpoint");
        goto out;
    }
    double deadline = now() + 3600;
    for (;;) {
        int busy = 0;
        for (int k = 0; k < POOL; k++) {
            struct rx_op *op = &s->ops[k];
            if (op->state == 1) {
                int rc = xm_xfer_zcopy(s->x, s->ch, &op->d.rk, op->d.rk.base, op->buf,
                                       op->d.len, XM_ZC_GET, rx_done, op, NULL);
                if (rc == -EAGAIN)
                    continue;
                op->state = 2;
                if (rc != -EINPROGRESS)
                    rx_done(op, rc);
            }
            if (op->state == 3) {
                size_t at = op->status ? 0 : check(op->buf, op->d.len, op->d.seq);
                if (op->status || at != op->d.len)
                    s->bad++;
                if (op->status)
                    fail(s, "reading large message %llu: %s", (unsigned long long)op->d.seq,
                         strerror(-op->status));
                else if (at != op->d.len)
                    fail(s, "large message %llu (%llu bytes) wrong at byte %zu",
                         (unsigned long long)op->d.seq, (unsigned long long)op->d.len, at);
                s->large++;
                op->state = 4;
            }
            if (op->state == 4) {
                int rc = xm_chan_send(s->ch, S_ACK, &op->d.seq, 8, NULL, 0);
                if (rc == -EAGAIN)
                    continue;
                op->state = 0;
            }
            busy |= op->state != 0;
        }
        if (s->done && !busy)
            break;
        if (s->gone || s->failed > 3 || now() > deadline)
            break;
        pump(s, &idle);
    }
    if (!s->done)
        fail(s, "no end of stream after %llu messages", (unsigned long long)s->next);
    else if (s->next != s->done_count)
        fail(s, "received %llu of %llu messages", (unsigned long long)s->next,
             (unsigned long long)s->done_count);
    struct fin f = { s->next, s->bad, s->large };
    if (s->ch && !s->gone)
        send_retry(s, S_FIN, &f, sizeof(f), NULL, 0);
    /* the sender closes first: its close reaches us as PEER_GONE */
    deadline = now() + 60;
    while (!s->gone && now() < deadline)
        pump(s, &idle);
    xm_store_remove(s->hv, path);
out:
    for (int k = 0; k < POOL; k++)
        free(s->ops[k].buf);
    close_side(s);
    return NULL;
}

static uint8_t *slot_map(void)
{
    void *p = mmap(NULL, SLOT_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void *sender(void *arg)
{
    struct side *s = arg;
    char path[128], *v = NULL;
    unsigned idle = 0;
    uint32_t pep = 0;
    unsigned long long key = 0;
    uint8_t small[9000 + 8];
    double t0 = now();

    if (open_side(s))
        return NULL;
    if (xm_zc_regcache_open(s->ep, 4 * POOL, &s->cache)) {
        fail(s, "opening the registration cache");
        goto out;
    }
    for (int k = 0; k < POOL; k++)
        if (!(s->slots[k].mem = slot_map())) {
            fail(s, "mmap");
            goto out;
        }
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi-test/soak-%d", s->peer, s->thread);
    for (int i = 0; i < 600 && !pep; i++) {
        if (xm_store_read(s->hv, path, &v, NULL) == 0) {
            if (sscanf(v, "%u %llx", &pep, &key) != 2)
                pep = 0;
            free(v);
        }
        if (!pep)
            usleep(100000);
    }
    if (!pep || xm_endpoint_connect(s->ep, s->peer, pep, key, &s->ch)) {
        fail(s, "no endpoint of domain %u to connect to (thread %d)", s->peer, s->thread);
        goto out;
    }
    while (xm_chan_state(s->ch) == XM_CH_CONNECTING && now() - t0 < 60)
        pump(s, &idle);
    if (xm_chan_state(s->ch) != XM_CH_CONNECTED) {
        fail(s, "channel state %d after connecting", (int)xm_chan_state(s->ch));
        goto out;
    }
    uint64_t nlarge = 0;
    for (uint64_t i = 0; i < s->count && !s->failed && !s->gone; i++) {
        size_t n = msg_size(i, s->max);
        int rc;
        if (!is_large(i)) {
            fill(small, n, i);
            rc = send_retry(s, S_DATA, &i, 8, small, n);
        } else {
            struct slot *sl = &s->slots[nlarge++ % POOL];
            while (sl->busy && !s->gone && !s->failed)
                pump(s, &idle);
            if (sl->id)
                xm_zc_regcache_put(s->cache, sl->id);
            sl->id = 0;
            if (++sl->uses % REMAP_EVERY == 0) {
                /* what a memory-event hook does before the memory goes */
                xm_zc_invalidate(sl->mem, SLOT_BYTES);
                munmap(sl->mem, SLOT_BYTES);
                if (!(sl->mem = slot_map())) {
                    fail(s, "mmap");
                    break;
                }
                s->remaps++;
            }
            uint8_t *p = sl->mem + msg_offset(i);
            fill(p, n, i);
            rc = xm_zc_regcache_get(s->cache, p, n, XM_ZC_REMOTE_READ, &sl->id);
            if (rc) {
                fail(s, "registering large message %llu: %s", (unsigned long long)i,
                     strerror(-rc));
                break;
            }
            struct rdv d = { i, { sl->id, (uintptr_t)p, n }, n };
            sl->seq = i;
            sl->busy = 1;
            rc = send_retry(s, S_RDV, &d, sizeof(d), NULL, 0);
        }
        if (rc) {
            fail(s, "sending message %llu: %s", (unsigned long long)i, strerror(-rc));
            break;
        }
    }
    send_retry(s, S_DONE, &s->count, 8, NULL, 0);
    while (!s->got_fin && !s->gone && !s->failed && now() - t0 < 3600)
        pump(s, &idle);
    if (!s->got_fin)
        fail(s, "no final count from the receiver");
    else if (s->fin.received != s->count || s->fin.bad)
        fail(s, "the receiver took %llu of %llu messages, %llu bad",
             (unsigned long long)s->fin.received, (unsigned long long)s->count,
             (unsigned long long)s->fin.bad);
out:
    if (s->cache)
        xm_zc_regcache_stats(s->cache, &s->rc_stats);
    for (int k = 0; k < POOL; k++) {
        if (s->slots[k].id)
            xm_zc_regcache_put(s->cache, s->slots[k].id);
        if (s->slots[k].mem)
            munmap(s->slots[k].mem, SLOT_BYTES);
    }
    close_side(s);
    return NULL;
}

static int run_role(int is_sender, uint32_t peer, uint64_t count, int threads)
{
    struct side *sides = calloc(threads, sizeof(*sides));
    pthread_t tid[MAX_THREADS];
    double t0 = now();
    int bad = 0;
    uint64_t msgs = 0, large = 0, remaps = 0, rc_hits = 0, rc_misses = 0;

    for (int t = 0; t < threads; t++) {
        sides[t].thread = t;
        sides[t].peer = peer;
        sides[t].count = count / threads + (t < (int)(count % threads));
        pthread_create(&tid[t], NULL, is_sender ? sender : receiver, &sides[t]);
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        struct side *s = &sides[t];
        if (s->failed) {
            printf("FAIL: %s thread %d: %s (%d failed checks)\n", is_sender ? "sender" : "receiver",
                   t, s->err, s->failed);
            bad = 1;
        }
        msgs += is_sender ? s->fin.received : s->next;
        large += is_sender ? s->fin.large : s->large;
        remaps += s->remaps;
        rc_hits += s->rc_stats.hits;
        rc_misses += s->rc_stats.misses;
    }
    xm_zc_stats_t st;
    xm_zc_get_stats(&st);
    if (is_sender) {
        printf("sender: %llu messages (%llu large, %llu buffer remaps), %.2f s; "
               "registration cache %llu hits %llu misses, %llu grants, %llu withdrawn, "
               "%llu registrations invalidated\n",
               (unsigned long long)msgs, (unsigned long long)large, (unsigned long long)remaps,
               now() - t0, (unsigned long long)rc_hits, (unsigned long long)rc_misses,
               (unsigned long long)st.grants, (unsigned long long)st.revokes,
               (unsigned long long)st.invalidated);
        /* each remap kills at least the registration put just before it */
        if (!bad && st.invalidated < remaps) {
            printf("FAIL: sender: %llu remaps invalidated only %llu registrations\n",
                   (unsigned long long)remaps, (unsigned long long)st.invalidated);
            bad = 1;
        }
    } else {
        printf("receiver: %llu messages (%llu large) checked, %.2f s; %llu MB by grant copy, "
               "peer cache %llu hits %llu misses, %llu rejected\n",
               (unsigned long long)msgs, (unsigned long long)large, now() - t0,
               (unsigned long long)(st.zc_bytes >> 20), (unsigned long long)st.hits,
               (unsigned long long)st.misses, (unsigned long long)st.rejected);
        /* the large messages must have gone by grant copy, not all by the ring */
        if (!bad && large && (!st.zc_bytes || st.rejected)) {
            printf("FAIL: receiver: %llu bytes by grant copy, %llu peer messages rejected\n",
                   (unsigned long long)st.zc_bytes, (unsigned long long)st.rejected);
            bad = 1;
        }
    }
    free(sides);
    return bad;
}

struct soak_args {
    uint64_t count;
    int threads;
};

static int sim_role(int is_b, uint32_t peer, void *arg)
{
    const struct soak_args *a = arg;
    return run_role(is_b, peer, a->count, a->threads);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int sim = argc >= 3 && !strcmp(argv[1], "sim");
    if (!sim && argc < 4) {
        fprintf(stderr, "usage: soak sim <count> [threads] | soak a|b <peer domid> <count> [threads]\n");
        return 2;
    }
    uint64_t count = strtoull(argv[sim ? 2 : 3], NULL, 0);
    int threads = argc > (sim ? 3 : 4) ? atoi(argv[sim ? 3 : 4]) : 2;
    if (threads < 1 || threads > MAX_THREADS || count < (uint64_t)threads) {
        fprintf(stderr, "soak: threads 1..%d, count at least threads\n", MAX_THREADS);
        return 2;
    }
    if (!sim)
        return run_role(!strcmp(argv[1], "b"), (uint32_t)strtoul(argv[2], NULL, 10), count,
                        threads);

    struct soak_args sa = { count, threads };
    struct simpair r;
    double t0 = now();
    if (simpair_run("soak", sim_role, &sa, &r))
        return 1;
    int ok = r.ok;
    double dt = now() - t0;
    printf("soak: %s: %llu messages, %d threads, %.2f s (%.0f messages/s)\n", ok ? "PASS" : "FAIL",
           (unsigned long long)count, threads, dt, count / dt);
    return ok ? 0 : 1;
}
