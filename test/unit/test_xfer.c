/*
 * Remote memory operations (src/core/xm_xfer.c) between two sim domains in
 * one process, each with its own hv handle, endpoint and xm_xfer_t, pumped
 * alternately: puts and gets through the ring with the owner's checks, the
 * zero-copy operation (grant copy and the ring for partial pages), remote
 * completion marks, a channel going down, cancel.  No adapter involved.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "xm_channel.h"
#include "xm_wire.h"
#include "xm_xfer.h"
#include "xm_zc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096u

struct node {
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    xm_xfer_t *x;
    xm_channel_t *last;
    int gone;
};

static void n_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *d, size_t len) {}
static void n_event(void *arg, xm_channel_t *ch, enum xm_chan_event ev)
{
    struct node *n = arg;

    n->last = ch;
    if (ev == XM_EV_PEER_GONE || ev == XM_EV_FAILED)
        n->gone++;
}

static void node_open_ring(struct node *n, size_t rma_max, int zcopy, unsigned pages,
                           size_t min_msg)
{
    xm_ep_params_t p = { .ring_pages = pages, .min_msg = min_msg, .recv_cb = n_recv,
                         .event_cb = n_event, .cb_arg = n };
    xm_xfer_params_t xp = { .rma_max = rma_max, .zcopy = zcopy };

    memset(n, 0, sizeof(*n));
    assert_int_equal(xm_hv_open(&n->hv), 0);
    assert_int_equal(xm_endpoint_open(n->hv, &p, &n->ep), 0);
    assert_int_equal(xm_xfer_attach(n->ep, &xp, &n->x), 0);
}

static void node_open(struct node *n, size_t rma_max, int zcopy)
{
    node_open_ring(n, rma_max, zcopy, 4, 0);
}

static void node_close(struct node *n)
{
    if (n->ep)
        xm_endpoint_close(n->ep);
    xm_xfer_detach(n->x);
    if (n->hv)
        xm_hv_close(n->hv);
    memset(n, 0, sizeof(*n));
}

static void pump(struct node *a, struct node *b, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        if (a)
            xm_endpoint_progress(a->ep);
        if (b)
            xm_endpoint_progress(b->ep);
    }
}

/* r (requester) connects to o (owner) */
static xm_channel_t *pair(struct node *o, struct node *r)
{
    xm_channel_t *ch;

    assert_int_equal(xm_endpoint_connect(r->ep, xm_hv_domid(o->hv), xm_endpoint_id(o->ep),
                                         xm_endpoint_key(o->ep), &ch), 0);
    for (int i = 0; i < 1000 && xm_chan_state(ch) == XM_CH_CONNECTING; i++)
        pump(o, r, 1);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTED);
    return ch;
}

struct done {
    int n, status;
};
static void done_cb(void *arg, int status)
{
    struct done *d = arg;
    d->n++;
    d->status = status;
}
static void copy_out(void *arg, const void *data, size_t len) { memcpy(arg, data, len); }

/* A zero-copy operation by req over ch that cannot finish at once: pumped
 * between the owner and req until its callback came (once); its status. */
static int zcopy_wait(struct node *owner, struct node *req, xm_channel_t *ch,
                      const xm_rkey_t *rk, uint64_t raddr, void *local, size_t len, int op)
{
    struct done d = { 0 };

    assert_int_equal(xm_xfer_zcopy(req->x, ch, rk, raddr, local, len, op, done_cb, &d, NULL),
                     -EINPROGRESS);
    for (int i = 0; i < 200 && !d.n; i++)
        pump(owner, req, 1);
    assert_int_equal(d.n, 1);
    return d.status;
}

static int setup(void **state)
{
    char host[64];
    snprintf(host, sizeof(host), "unit-xfer-%d", (int)getpid());
    setenv("XENMPI_BACKEND", "sim", 1);
    setenv("XENMPI_SIM_HOST", host, 1);
    unsetenv("XENMPI_SIM_DOMID");
    return 0;
}

/* the sim host's files go with the group */
static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf /dev/shm/xenmpi-sim-%s", getenv("XENMPI_SIM_HOST"));
    return system(cmd) ? -1 : 0;
}

/* puts and gets through the ring; the owner refuses what is not registered */
static void test_put_get_checked(void **state)
{
    static uint8_t mem[256], secret[64];
    struct node o, r;
    xm_channel_t *ch;
    uint64_t id;
    uint8_t buf[64];
    struct done d = { 0 };
    xm_rkey_t rk, forged;
    void *p;
    int err;

    node_open(&o, 0, 1);
    node_open(&r, 0, 1);
    ch = pair(&o, &r);
    memset(mem, 0x11, sizeof(mem));
    memset(secret, 0x5a, sizeof(secret));
    assert_int_equal(xm_zc_reg(mem, sizeof(mem), XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE, &id), 0);
    rk = (xm_rkey_t){ id, (uintptr_t)mem, sizeof(mem) };

    p = xm_xfer_put_reserve(r.x, ch, 8, &err);
    assert_non_null(p);
    memcpy(p, "ABCDEFGH", 8);
    xm_xfer_put_commit(r.x, ch, p, &rk, (uintptr_t)mem + 16, 8);
    xm_xfer_mark_t m = xm_xfer_mark(r.x, ch);
    assert_false(xm_xfer_reached(r.x, ch, m));   /* the owner has not run */
    pump(&o, &r, 3);
    assert_true(xm_xfer_reached(r.x, ch, m));
    assert_memory_equal(mem + 16, "ABCDEFGH", 8);

    assert_int_equal(xm_xfer_get(r.x, ch, &rk, (uintptr_t)mem + 12, 16, copy_out, buf, done_cb,
                                 &d, NULL), -EINPROGRESS);
    assert_false(xm_xfer_idle(r.x, ch));
    for (int i = 0; i < 20 && !d.n; i++)
        pump(&o, &r, 1);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.status, 0);
    assert_memory_equal(buf, mem + 12, 16);
    assert_true(xm_xfer_idle(r.x, ch));

    /* outside the registration (the same id, another address), and an
     * id never made: refused, memory unchanged, the get fails */
    forged = (xm_rkey_t){ id, (uintptr_t)secret, sizeof(secret) };
    p = xm_xfer_put_reserve(r.x, ch, 8, &err);
    assert_non_null(p);
    memset(p, 0, 8);
    xm_xfer_put_commit(r.x, ch, p, &forged, (uintptr_t)secret, 8);
    memset(&d, 0, sizeof(d));
    assert_int_equal(xm_xfer_get(r.x, ch, &forged, (uintptr_t)secret, 8, copy_out, buf, done_cb,
                                 &d, NULL), -EINPROGRESS);
    struct done d2 = { 0 };
    xm_rkey_t unknown = { id + 1000, (uintptr_t)mem, sizeof(mem) };
    assert_int_equal(xm_xfer_get(r.x, ch, &unknown, (uintptr_t)mem, 8, copy_out, buf, done_cb,
                                 &d2, NULL), -EINPROGRESS);
    for (int i = 0; i < 20 && !(d.n && d2.n); i++)
        pump(&o, &r, 1);
    assert_int_equal(d.status, -EACCES);
    assert_int_equal(d2.status, -EACCES);
    assert_int_equal(xm_xfer_refused(o.x), 3);
    for (unsigned i = 0; i < sizeof(secret); i++)
        assert_int_equal(secret[i], 0x5a);

    /* larger than one record: refused at the requester */
    assert_null(xm_xfer_put_reserve(r.x, ch, xm_xfer_rma_max(r.x) + 1, &err));
    assert_int_equal(err, -EMSGSIZE);
    assert_int_equal(xm_zc_dereg(id), 0);
    node_close(&r);
    node_close(&o);
}

/* b asks for gets and never reads the answers: they queue at the owner
 * once its ring to b is full; c's gets are answered all the while (one
 * requester's full ring holds up only its own answers); past the cap of
 * queued answers the owner fails b's channel, and c still works. */
static void test_get_flood_unread(void **state)
{
    static uint8_t mem[256];
    struct node o, b, c;
    xm_channel_t *chb, *chc, *ob;
    xm_rkey_t rk;
    uint64_t id;
    uint8_t buf[64];
    unsigned sent = 0, c_done = 0;
    int rc = 0;

    node_open(&o, 0, 1);
    node_open(&b, 0, 1);
    node_open(&c, 0, 1);
    chb = pair(&o, &b);
    ob = o.last;
    chc = pair(&o, &c);
    memset(mem, 0x22, sizeof(mem));
    assert_int_equal(xm_zc_reg(mem, sizeof(mem), XM_ZC_REMOTE_READ, &id), 0);
    rk = (xm_rkey_t){ id, (uintptr_t)mem, sizeof(mem) };

    /* up to 70000 requests (the cap is 65536 queued answers); every 5000,
     * one get of c's must complete */
    while (sent < 70000) {
        struct xm_rma_hdr q = { id, (uintptr_t)mem, 8, 0, 1000 + sent };

        rc = xm_chan_send(chb, XM_REC_RMA_GET_REQ, &q, sizeof(q), NULL, 0);
        if (rc == -EAGAIN) {
            if (o.gone)
                break;           /* failed: the owner reads no more */
            pump(&o, NULL, 1);   /* the owner reads; b never does */
            continue;
        }
        if (rc)
            break;
        if (++sent % 5000 == 0) {
            struct done d = { 0 };

            memset(buf, 0, sizeof(buf));
            assert_int_equal(xm_xfer_get(c.x, chc, &rk, (uintptr_t)mem, 16, copy_out, buf,
                                         done_cb, &d, NULL), -EINPROGRESS);
            for (int i = 0; i < 200 && !d.n; i++)
                pump(&o, &c, 1);
            assert_int_equal(d.n, 1);
            assert_int_equal(d.status, 0);
            assert_int_equal(buf[0], 0x22);
            c_done++;
        }
        if (o.gone)
            break;
    }
    for (int i = 0; i < 20 && !o.gone; i++)
        pump(&o, NULL, 1);
    print_message("%u requests sent, %u of c's gets answered meanwhile\n", sent, c_done);
    assert_ptr_equal(o.last, ob);   /* the event was b's channel's */
    assert_true(sent >= 65536 && c_done >= 13);
    assert_int_equal(o.gone, 1);
    /* c is untouched */
    {
        struct done d = { 0 };

        assert_int_equal(xm_xfer_get(c.x, chc, &rk, (uintptr_t)mem + 8, 8, copy_out, buf,
                                     done_cb, &d, NULL), -EINPROGRESS);
        for (int i = 0; i < 200 && !d.n; i++)
            pump(&o, &c, 1);
        assert_int_equal(d.status, 0);
        assert_int_equal(xm_chan_state(chc), XM_CH_CONNECTED);
    }
    assert_int_equal(xm_zc_dereg(id), 0);
    node_close(&c);
    node_close(&b);
    node_close(&o);
}

/* a zero-copy get and put over a registration with partial pages at both
 * ends: byte exact, by grant copy and through the ring */
static void zcopy_roundtrip(int zcopy)
{
    const size_t len = 3 * PG + 1000, off = 300;
    struct node o, r;
    xm_channel_t *ch;
    uint8_t *map, *mem, *local;
    uint64_t id;
    struct done d = { 0 };
    xm_zc_stats_t s0, s1;
    int rc;

    node_open(&o, 0, 1);
    node_open(&r, 2000, zcopy);   /* small records: several per partial page */
    ch = pair(&o, &r);
    map = mmap(NULL, 6 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    mem = map + off;
    local = malloc(len);
    assert_non_null(local);
    for (size_t i = 0; i < len; i++)
        mem[i] = (uint8_t)(i * 13 + 7);
    memset(local, 0, len);
    assert_int_equal(xm_zc_reg(mem, len, XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE, &id), 0);
    xm_rkey_t rk = { id, (uintptr_t)mem, len };
    xm_zc_get_stats(&s0);
    assert_int_equal(zcopy_wait(&o, &r, ch, &rk, (uintptr_t)mem, local, len, XM_ZC_GET), 0);
    assert_memory_equal(local, mem, len);
    xm_zc_get_stats(&s1);
    if (zcopy)
        assert_true(s1.zc_bytes - s0.zc_bytes >= 2 * PG);   /* the whole pages */
    else
        assert_int_equal(s1.zc_bytes - s0.zc_bytes, 0);

    /* and back: a put of other bytes, complete only once applied */
    for (size_t i = 0; i < len; i++)
        local[i] = (uint8_t)(i * 5 + 1);
    memset(&d, 0, sizeof(d));
    rc = xm_xfer_zcopy(r.x, ch, &rk, (uintptr_t)mem, local, len, XM_ZC_PUT, done_cb, &d, NULL);
    assert_true(rc == -EINPROGRESS || rc == 0);
    for (int i = 0; rc && i < 200 && !d.n; i++)
        pump(&o, &r, 1);
    assert_true(rc == 0 || (d.n == 1 && d.status == 0));
    assert_memory_equal(mem, local, len);
    assert_true(xm_xfer_idle(r.x, ch));
    node_close(&r);
    node_close(&o);
    assert_int_equal(xm_zc_dereg(id), 0);
    munmap(map, 6 * PG);
    free(local);
}
static void test_zcopy_grant_and_ring(void **state) { zcopy_roundtrip(1); }

/* A registration bound to one peer domain (xm_zc_bind): a requester in
 * another domain that holds the key gets nothing, neither by grant copy
 * (its grant request is answered -EACCES, no grant made) nor through the
 * ring (gets and puts refused, memory unchanged); the bound domain is
 * served; binding a second domain serves it too; an unknown id cannot be
 * bound. */
static void test_bound_registration(void **state)
{
    const size_t len = 4 * PG;
    struct node o, r1, r2;
    xm_channel_t *c1, *c2;
    uint8_t *mem, *local;
    uint64_t id;
    struct done d = { 0 };
    xm_zc_stats_t s0, s1;
    void *p;
    int err;

    node_open(&o, 0, XM_XFER_ZC_ON);
    node_open(&r1, 0, XM_XFER_ZC_ON);
    node_open(&r2, 0, XM_XFER_ZC_ON);
    assert_int_not_equal(xm_hv_domid(r1.hv), xm_hv_domid(r2.hv));
    c1 = pair(&o, &r1);
    c2 = pair(&o, &r2);
    mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    local = calloc(1, len);
    assert_non_null(local);
    for (size_t i = 0; i < len; i++)
        mem[i] = (uint8_t)(i * 11 + 3);
    assert_int_equal(xm_zc_reg(mem, len, XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE, &id), 0);
    assert_int_equal(xm_zc_bind(id, xm_hv_domid(r1.hv)), 0);
    assert_int_equal(xm_zc_bind(id, xm_hv_domid(r1.hv)), 0);   /* again: no change */
    assert_int_equal(xm_zc_bind(id + 1000, xm_hv_domid(r1.hv)), -ENOENT);
    xm_rkey_t rk = { id, (uintptr_t)mem, len };

    /* r2: a zero-copy get of whole pages, a ring get, a ring put */
    xm_zc_get_stats(&s0);
    assert_int_equal(zcopy_wait(&o, &r2, c2, &rk, (uintptr_t)mem, local, len, XM_ZC_GET),
                     -EACCES);
    xm_zc_get_stats(&s1);
    assert_int_equal(s1.grants - s0.grants, 0);
    assert_int_equal(s1.zc_bytes - s0.zc_bytes, 0);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(local[i], 0);
    memset(&d, 0, sizeof(d));
    assert_int_equal(xm_xfer_get(r2.x, c2, &rk, (uintptr_t)mem + 8, 16, copy_out, local,
                                 done_cb, &d, NULL), -EINPROGRESS);
    p = xm_xfer_put_reserve(r2.x, c2, 8, &err);
    assert_non_null(p);
    memset(p, 0xee, 8);
    xm_xfer_put_commit(r2.x, c2, p, &rk, (uintptr_t)mem + 100, 8);
    for (int i = 0; i < 20 && !d.n; i++)
        pump(&o, &r2, 1);
    pump(&o, &r2, 3);
    assert_int_equal(d.status, -EACCES);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(mem[i], (uint8_t)(i * 11 + 3));
    assert_true(xm_xfer_refused(o.x) >= 2);

    /* r1, bound: served by grant copy */
    xm_zc_get_stats(&s0);
    assert_int_equal(zcopy_wait(&o, &r1, c1, &rk, (uintptr_t)mem, local, len, XM_ZC_GET), 0);
    assert_memory_equal(local, mem, len);
    xm_zc_get_stats(&s1);
    assert_true(s1.zc_bytes - s0.zc_bytes >= len);

    /* r2 bound as well: served now */
    assert_int_equal(xm_zc_bind(id, xm_hv_domid(r2.hv)), 0);
    memset(local, 0, len);
    assert_int_equal(zcopy_wait(&o, &r2, c2, &rk, (uintptr_t)mem, local, len, XM_ZC_GET), 0);
    assert_memory_equal(local, mem, len);

    uint32_t d1 = xm_hv_domid(r1.hv);
    node_close(&r2);
    node_close(&r1);
    node_close(&o);
    assert_int_equal(xm_zc_dereg(id), 0);
    assert_int_equal(xm_zc_bind(id, d1), -ENOENT);
    munmap(mem, len);
    free(local);
}
static void test_zcopy_ring_only(void **state) { zcopy_roundtrip(0); }

/* XM_XFER_ZC_AUTO: each zero-copy operation takes the path measured
 * cheaper on its channel.  A grant copy made slow (sim: 20 ms a copy) loses
 * to the ring after one operation of each; an owner that answers the ring
 * slowly (pumped every 2 ms) loses to grant copy, which needs the owner
 * only for the first grant.  Either way the other path is still tried now
 * and then (measured, not dropped).  The owner sends an adapter record
 * before each operation, as a rendezvous request would; an owner that
 * sends nothing (a passive target, which may not be progressing) gets
 * grant copy only, however slow. */
static void path_choice(int slow_copy, int passive)
{
    const size_t len = 64 * PG;
    const unsigned nops = 40;
    struct node o, r;
    xm_channel_t *ch;
    uint8_t *mem, *local;
    uint64_t id;
    xm_zc_stats_t s0, s1;

    node_open_ring(&o, 0, XM_XFER_ZC_ON, 8, 0);
    if (slow_copy)
        setenv("XENMPI_SIM_DELAY_COPY_US", "20000", 1);
    node_open_ring(&r, 0, XM_XFER_ZC_AUTO, 8, 0);
    unsetenv("XENMPI_SIM_DELAY_COPY_US");
    ch = pair(&o, &r);
    xm_channel_t *och = o.last;   /* the owner's side, accepted */
    assert_non_null(och);
    mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    local = malloc(len);
    assert_non_null(local);
    assert_int_equal(xm_zc_reg(mem, len, XM_ZC_REMOTE_READ, &id), 0);
    xm_rkey_t rk = { id, (uintptr_t)mem, len };
    xm_zc_get_stats(&s0);
    for (unsigned k = 0; k < nops; k++) {
        struct done d = { 0 };
        int rc;

        memset(mem, (int)(k + 1), len);
        memset(local, 0, len);
        if (!passive) {
            xm_chan_stats_t st0, st1;

            xm_chan_get_stats(ch, &st0);
            assert_int_equal(xm_chan_send(och, 1, "rts", 3, NULL, 0), 0);
            for (int i = 0; i < 100; i++) {
                pump(&o, &r, 1);
                xm_chan_get_stats(ch, &st1);
                if (st1.adapter_recv > st0.adapter_recv)
                    break;
            }
            assert_int_equal(st1.adapter_recv, st0.adapter_recv + 1);
        }
        rc = xm_xfer_zcopy(r.x, ch, &rk, (uintptr_t)mem, local, len, XM_ZC_GET, done_cb, &d,
                           NULL);
        for (int i = 0; rc == -EINPROGRESS && i < 100000 && !d.n; i++) {
            if (!slow_copy)
                usleep(2000);
            pump(&o, &r, 1);
        }
        assert_true(rc == 0 || (rc == -EINPROGRESS && d.n == 1 && d.status == 0));
        assert_memory_equal(local, mem, len);
    }
    xm_zc_get_stats(&s1);
    uint64_t zc = s1.zc_bytes - s0.zc_bytes, ring = s1.ring_bytes - s0.ring_bytes;
    print_message("%s%s: %" PRIu64 " bytes by grant copy, %" PRIu64 " through the ring\n",
                  slow_copy ? "slow grant copy" : "slow ring", passive ? ", passive owner" : "",
                  zc, ring);
    assert_int_equal(zc + ring, (uint64_t)nops * len);
    assert_int_equal(s1.fallback_bytes - s0.fallback_bytes, 0);
    if (passive) {
        assert_int_equal(ring, 0);
    } else if (slow_copy) {
        assert_true(ring >= (uint64_t)(nops - 3) * len);
        assert_true(zc >= len);
    } else {
        assert_true(zc >= (uint64_t)(nops - 3) * len);
        assert_true(ring >= len);
    }
    node_close(&r);
    node_close(&o);
    assert_int_equal(xm_zc_dereg(id), 0);
    munmap(mem, len);
    free(local);
}
static void test_path_choice_slow_copy(void **state) { path_choice(1, 0); }
static void test_path_choice_slow_ring(void **state) { path_choice(0, 0); }
static void test_path_choice_passive(void **state) { path_choice(1, 1); }

/* The owner's ring to the requester fell back to 2 pages (its grant table
 * held no more); the requester's is 8.  With no rma_max (the netmod's
 * way) the ring path cuts gets by what the owner's ring holds (an answer
 * larger than that was refused: the get failed) and puts by what the
 * requester's own ring holds (a few large records, not the smallest
 * size every channel takes). */
static void test_ring_path_asymmetric(void **state)
{
    const size_t len = 64 * 1024;
    struct node o, r;
    uint8_t *mem = malloc(len), *local = malloc(len);
    uint64_t id;
    struct done d = { 0 };
    xm_chan_stats_t s0, s1;

    assert_non_null(mem);
    assert_non_null(local);
    setenv("XENMPI_SIM_GNTTAB_SIZE", "5", 1);   /* 4 entries: control page + 2 */
    node_open_ring(&o, 0, 0, 8, XM_MAX_MSG(2 * PG));
    unsetenv("XENMPI_SIM_GNTTAB_SIZE");
    node_open_ring(&r, 0, 0, 8, 0);
    xm_channel_t *ch = pair(&o, &r);
    assert_int_equal(xm_chan_peer_max_msg(ch), XM_MAX_MSG(2 * PG));
    assert_int_equal(xm_chan_max_msg(ch), XM_MAX_MSG(8 * PG));
    for (size_t i = 0; i < len; i++)
        mem[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(xm_zc_reg(mem, len, XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE, &id), 0);
    xm_rkey_t rk = { id, (uintptr_t)mem, len };

    memset(local, 0, len);
    assert_int_equal(xm_xfer_zcopy(r.x, ch, &rk, (uintptr_t)mem, local, len, XM_ZC_GET,
                                   done_cb, &d, NULL), -EINPROGRESS);
    for (int i = 0; i < 2000 && !d.n; i++)
        pump(&o, &r, 1);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.status, 0);
    assert_memory_equal(local, mem, len);
    assert_int_equal(xm_xfer_refused(o.x), 0);

    for (size_t i = 0; i < len; i++)
        local[i] = (uint8_t)(i * 11 + 5);
    memset(&d, 0, sizeof(d));
    xm_chan_get_stats(ch, &s0);
    int rc = xm_xfer_zcopy(r.x, ch, &rk, (uintptr_t)mem, local, len, XM_ZC_PUT, done_cb, &d,
                           NULL);
    assert_true(rc == -EINPROGRESS || rc == 0);
    for (int i = 0; rc && i < 2000 && !d.n; i++)
        pump(&o, &r, 1);
    assert_true(rc == 0 || (d.n == 1 && d.status == 0));
    for (int i = 0; i < 200 && !xm_xfer_idle(r.x, ch); i++)
        pump(&o, &r, 1);
    assert_memory_equal(mem, local, len);
    xm_chan_get_stats(ch, &s1);
    /* 64 KiB in records of up to 16 KiB: 5, not the 33 of 2 KiB */
    assert_true(s1.msgs_sent - s0.msgs_sent <= 6);
    node_close(&r);
    node_close(&o);
    assert_int_equal(xm_zc_dereg(id), 0);
    free(mem);
    free(local);
}

/* the owner goes away with a get outstanding: -EPIPE from progress; an
 * operation cancelled by tag is never called back */
static void test_gone_and_cancel(void **state)
{
    static uint8_t mem[64];
    struct node o, r;
    xm_channel_t *ch;
    uint64_t id;
    uint8_t buf[64];
    struct done d1 = { 0 }, d2 = { 0 };
    int tag;

    node_open(&o, 0, 1);
    node_open(&r, 0, 1);
    ch = pair(&o, &r);
    assert_int_equal(xm_zc_reg(mem, sizeof(mem), XM_ZC_REMOTE_READ, &id), 0);
    xm_rkey_t rk = { id, (uintptr_t)mem, sizeof(mem) };
    assert_int_equal(xm_xfer_get(r.x, ch, &rk, (uintptr_t)mem, 8, copy_out, buf, done_cb, &d1,
                                 NULL), -EINPROGRESS);
    assert_int_equal(xm_xfer_get(r.x, ch, &rk, (uintptr_t)mem, 8, copy_out, buf, done_cb, &d2,
                                 &tag), -EINPROGRESS);
    xm_xfer_cancel(r.x, &tag);
    assert_false(xm_xfer_idle(r.x, ch));   /* the first is still out */
    node_close(&o);
    for (int i = 0; i < 100 && !d1.n; i++)
        pump(NULL, &r, 1);
    assert_int_equal(d1.n, 1);
    assert_int_equal(d1.status, -EPIPE);
    assert_int_equal(d2.n, 0);
    assert_int_equal(r.gone, 1);
    assert_true(xm_xfer_idle(r.x, ch));
    assert_int_equal(xm_zc_dereg(id), 0);
    node_close(&r);
}

/* A flush waits for the peer to process our operations (adapter records,
 * puts, get requests), not the core's own control messages: a peer that
 * stopped reading after it processed our last operation (it finished and
 * waits in its launcher's barrier) leaves the channel idle however many
 * zero-copy withdrawals or get answers we wrote after. */
static void test_idle_ignores_control(void **state)
{
    struct node o, r;
    uint8_t b[64] = { 0 };

    node_open(&o, 0, 0);
    node_open(&r, 0, 0);
    xm_channel_t *ch = pair(&o, &r);
    assert_true(xm_xfer_idle(r.x, ch));
    assert_int_equal(xm_chan_send(ch, 7, NULL, 0, b, sizeof(b)), 0);   /* an adapter message */
    assert_false(xm_xfer_idle(r.x, ch));
    xm_xfer_mark_t m = xm_xfer_mark(r.x, ch);
    for (int i = 0; i < 200 && !xm_xfer_idle(r.x, ch); i++)
        pump(&o, &r, 1);
    assert_true(xm_xfer_idle(r.x, ch));   /* the owner processed it */
    /* the owner stops reading; we send it control messages only */
    uint32_t before = xm_chan_tx_mark(ch);
    for (uint16_t t = XM_REC_ZC_FIRST; t <= XM_REC_ZC_LAST; t++)
        assert_int_equal(xm_chan_send(ch, t, NULL, 0, b, 16), 0);
    assert_int_equal(xm_chan_send(ch, XM_REC_RMA_GET_REP, NULL, 0, b, 32), 0);
    for (int i = 0; i < 20; i++)
        xm_endpoint_progress(r.ep);
    assert_true(xm_chan_tx_mark(ch) != before);   /* written, unread */
    assert_false(xm_chan_tx_reached(ch, xm_chan_tx_mark(ch)));
    assert_true(xm_xfer_idle(r.x, ch));
    assert_true(xm_xfer_reached(r.x, ch, m));
    /* an operation after them is waited for, and with it what came before */
    assert_int_equal(xm_chan_send(ch, 8, NULL, 0, b, sizeof(b)), 0);
    assert_false(xm_xfer_idle(r.x, ch));
    for (int i = 0; i < 200 && !xm_xfer_idle(r.x, ch); i++)
        pump(&o, &r, 1);
    assert_true(xm_xfer_idle(r.x, ch));
    assert_true(xm_chan_tx_reached(ch, xm_chan_tx_mark(ch)));
    node_close(&r);
    node_close(&o);
}

/* The requester's ring to o1 fills with a copy-path put o1 never reads;
 * a copy-path get from o2 issued after it completes all the while (one
 * blocked peer holds up only its own ranges), and once o1 reads, its put
 * lands whole. */
static void test_ring_ranges_per_peer(void **state)
{
    const size_t big = 64 * 1024, small = 3 * PG;   /* the ring is 16 KiB */
    struct node o1, o2, r;
    xm_channel_t *c1, *c2;
    uint8_t *m1 = malloc(big), *m2 = malloc(small), *src = malloc(big), *dst = malloc(small);
    uint64_t id1, id2;
    struct done d1 = { 0 }, d2 = { 0 };
    int rc;

    assert_true(m1 && m2 && src && dst);
    node_open(&o1, 0, 1);
    node_open(&o2, 0, 1);
    node_open(&r, 2000, 0);   /* ring only */
    c1 = pair(&o1, &r);
    c2 = pair(&o2, &r);
    memset(m1, 0, big);
    for (size_t i = 0; i < big; i++)
        src[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < small; i++)
        m2[i] = (uint8_t)(i * 11 + 5);
    memset(dst, 0, small);
    assert_int_equal(xm_zc_reg(m1, big, XM_ZC_REMOTE_WRITE, &id1), 0);
    assert_int_equal(xm_zc_reg(m2, small, XM_ZC_REMOTE_READ, &id2), 0);
    xm_rkey_t k1 = { id1, (uintptr_t)m1, big }, k2 = { id2, (uintptr_t)m2, small };

    rc = xm_xfer_zcopy(r.x, c1, &k1, (uintptr_t)m1, src, big, XM_ZC_PUT, done_cb, &d1, NULL);
    assert_int_equal(rc, -EINPROGRESS);
    rc = xm_xfer_zcopy(r.x, c2, &k2, (uintptr_t)m2, dst, small, XM_ZC_GET, done_cb, &d2, NULL);
    assert_int_equal(rc, -EINPROGRESS);
    for (int i = 0; i < 500 && !d2.n; i++)
        pump(&o2, &r, 1);   /* o1 reads nothing */
    assert_int_equal(d2.n, 1);
    assert_int_equal(d2.status, 0);
    assert_memory_equal(dst, m2, small);
    assert_int_equal(d1.n, 0);
    assert_false(xm_xfer_idle(r.x, c1));

    for (int i = 0; i < 2000 && !d1.n; i++) {
        pump(&o1, &r, 1);
        pump(&o2, NULL, 1);
    }
    assert_int_equal(d1.n, 1);
    assert_int_equal(d1.status, 0);
    assert_memory_equal(m1, src, big);
    node_close(&r);
    node_close(&o2);
    node_close(&o1);
    assert_int_equal(xm_zc_dereg(id1), 0);
    assert_int_equal(xm_zc_dereg(id2), 0);
    free(m1);
    free(m2);
    free(src);
    free(dst);
}

/* ---------------- pushes: the owner copies half of a large get ---------------- */

static void node_open_push(struct node *n, size_t push_min)
{
    xm_ep_params_t p = { .ring_pages = 4, .recv_cb = n_recv, .event_cb = n_event, .cb_arg = n };
    xm_xfer_params_t xp = { .zcopy = XM_XFER_ZC_ON, .push_min = push_min };

    memset(n, 0, sizeof(*n));
    assert_int_equal(xm_hv_open(&n->hv), 0);
    assert_int_equal(xm_endpoint_open(n->hv, &p, &n->ep), 0);
    assert_int_equal(xm_xfer_attach(n->ep, &xp, &n->x), 0);
}

/* Buffers as glibc's malloc hands out large blocks: 16 bytes past a page. */
#define PUSH_PAGES 40u
#define PUSH_LEN ((size_t)PUSH_PAGES * PG)
#define PUSH_OFF 16u
/* Pages whole in [16, 16 + 40 pages): pages 1..39 (39); we keep 19, the
 * owner is asked for the last 20. */
#define PUSHED ((size_t)20 * PG)

struct pushbuf {
    uint8_t *mem, *lmem;   /* the owner's and the requester's mappings */
    uint64_t id, lid;
    xm_rkey_t rk, lk;
};

static void pushbuf_open(struct pushbuf *b, unsigned src_access, unsigned dst_access)
{
    size_t map = PUSH_LEN + 2 * PG;

    b->mem = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    b->lmem = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(b->mem != MAP_FAILED && b->lmem != MAP_FAILED);
    for (size_t i = 0; i < map; i++)
        b->mem[i] = (uint8_t)(i * 7 + 1);
    memset(b->lmem, 0x5a, map);
    /* registrations as UCX's cache makes them: from the page start */
    assert_int_equal(xm_zc_reg(b->mem, PUSH_LEN + PG, src_access, &b->id), 0);
    assert_int_equal(xm_zc_reg(b->lmem, PUSH_LEN + PG, dst_access, &b->lid), 0);
    b->rk = (xm_rkey_t){ b->id, (uintptr_t)b->mem, PUSH_LEN + PG };
    b->lk = (xm_rkey_t){ b->lid, (uintptr_t)b->lmem, PUSH_LEN + PG };
}

static void pushbuf_close(struct pushbuf *b)
{
    xm_zc_dereg(b->id);
    xm_zc_dereg(b->lid);
    munmap(b->mem, PUSH_LEN + 2 * PG);
    munmap(b->lmem, PUSH_LEN + 2 * PG);
}

/* the get of the whole buffer, pumped to its end: its status */
static int push_get(struct node *o, struct node *r, xm_channel_t *ch, struct pushbuf *b)
{
    struct done d = { 0 };

    assert_int_equal(xm_xfer_zcopy_reg(r->x, ch, &b->rk, (uintptr_t)b->mem + PUSH_OFF,
                                       b->lmem + PUSH_OFF, &b->lk, PUSH_LEN, XM_ZC_GET,
                                       done_cb, &d, NULL), -EINPROGRESS);
    for (int i = 0; i < 500 && !d.n; i++)
        pump(o, r, 1);
    assert_int_equal(d.n, 1);
    return d.status;
}

/* The requester copies the first half of the whole pages and the owner,
 * asked by PUSH_REQ, grant-copies the second half into the requester's
 * registration: every byte arrives, nothing around the buffer is touched,
 * and the owner's half counts as pushed.  Below push_min, or with another
 * operation to the same owner outstanding, nothing is pushed. */
static void test_push_split(void **state)
{
    struct node o, r;
    struct pushbuf b;
    xm_channel_t *ch;
    xm_zc_stats_t s0, s1;

    node_open_push(&o, 16 * PG);
    node_open_push(&r, 16 * PG);
    ch = pair(&o, &r);
    pushbuf_open(&b, XM_ZC_REMOTE_READ, XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE);

    xm_zc_get_stats(&s0);
    assert_int_equal(push_get(&o, &r, ch, &b), 0);
    xm_zc_get_stats(&s1);
    assert_memory_equal(b.lmem + PUSH_OFF, b.mem + PUSH_OFF, PUSH_LEN);
    for (size_t i = 0; i < PUSH_OFF; i++)
        assert_int_equal(b.lmem[i], 0x5a);
    for (size_t i = PUSH_OFF + PUSH_LEN; i < PUSH_LEN + 2 * PG; i++)
        assert_int_equal(b.lmem[i], 0x5a);
    assert_int_equal(s1.pushed_bytes - s0.pushed_bytes, PUSHED);
    /* the owner's grant copies and ours: every whole page once */
    assert_int_equal(s1.zc_bytes - s0.zc_bytes, PUSH_LEN - PG + (PG - PUSH_OFF) + PUSH_OFF);

    /* again: the grants are cached on both sides, the same split */
    memset(b.lmem, 0x5a, PUSH_LEN + 2 * PG);
    xm_zc_get_stats(&s0);
    assert_int_equal(push_get(&o, &r, ch, &b), 0);
    xm_zc_get_stats(&s1);
    assert_memory_equal(b.lmem + PUSH_OFF, b.mem + PUSH_OFF, PUSH_LEN);
    assert_int_equal(s1.pushed_bytes - s0.pushed_bytes, PUSHED);
    assert_int_equal(s1.misses - s0.misses, 0);

    /* two at once: the second is not split (the owner has the first) */
    struct done d1 = { 0 }, d2 = { 0 };
    memset(b.lmem, 0x5a, PUSH_LEN + 2 * PG);
    xm_zc_get_stats(&s0);
    assert_int_equal(xm_xfer_zcopy_reg(r.x, ch, &b.rk, (uintptr_t)b.mem + PUSH_OFF,
                                       b.lmem + PUSH_OFF, &b.lk, PUSH_LEN / 2, XM_ZC_GET,
                                       done_cb, &d1, NULL), -EINPROGRESS);
    int rc = xm_xfer_zcopy_reg(r.x, ch, &b.rk, (uintptr_t)b.mem + PUSH_OFF + PUSH_LEN / 2,
                               b.lmem + PUSH_OFF + PUSH_LEN / 2, &b.lk, PUSH_LEN / 2,
                               XM_ZC_GET, done_cb, &d2, NULL);
    assert_true(rc == -EINPROGRESS || rc == 0);
    for (int i = 0; i < 500 && (!d1.n || (rc && !d2.n)); i++)
        pump(&o, &r, 1);
    assert_int_equal(d1.status, 0);
    assert_int_equal(d2.status, 0);
    xm_zc_get_stats(&s1);
    assert_memory_equal(b.lmem + PUSH_OFF, b.mem + PUSH_OFF, PUSH_LEN);
    assert_int_equal(s1.pushed_bytes - s0.pushed_bytes, 10 * PG);   /* the first's half */

    /* below push_min (16 pages): all ours */
    memset(b.lmem, 0x5a, PUSH_LEN + 2 * PG);
    xm_zc_get_stats(&s0);
    struct done d3 = { 0 };
    rc = xm_xfer_zcopy_reg(r.x, ch, &b.rk, (uintptr_t)b.mem + PUSH_OFF, b.lmem + PUSH_OFF,
                           &b.lk, 15 * PG, XM_ZC_GET, done_cb, &d3, NULL);
    for (int i = 0; i < 500 && rc == -EINPROGRESS && !d3.n; i++)
        pump(&o, &r, 1);
    assert_int_equal(rc == -EINPROGRESS ? d3.status : rc, 0);
    xm_zc_get_stats(&s1);
    assert_memory_equal(b.lmem + PUSH_OFF, b.mem + PUSH_OFF, 15 * PG);
    assert_int_equal(s1.pushed_bytes - s0.pushed_bytes, 0);

    node_close(&r);
    node_close(&o);
    pushbuf_close(&b);
}

/* A push the owner cannot make (our registration is not writable by
 * peers: its grant request is refused) is answered with the error, and
 * we copy those pages ourselves: every byte arrives, none pushed. */
static void test_push_refused_falls_back(void **state)
{
    struct node o, r;
    struct pushbuf b;
    xm_channel_t *ch;
    xm_zc_stats_t s0, s1;

    node_open_push(&o, 16 * PG);
    node_open_push(&r, 16 * PG);
    ch = pair(&o, &r);
    pushbuf_open(&b, XM_ZC_REMOTE_READ, XM_ZC_REMOTE_READ);
    xm_zc_get_stats(&s0);
    assert_int_equal(push_get(&o, &r, ch, &b), 0);
    xm_zc_get_stats(&s1);
    assert_memory_equal(b.lmem + PUSH_OFF, b.mem + PUSH_OFF, PUSH_LEN);
    assert_int_equal(s1.pushed_bytes - s0.pushed_bytes, 0);
    assert_int_equal(xm_xfer_refused(r.x), 0);
    node_close(&r);
    node_close(&o);
    pushbuf_close(&b);
}

/* Hostile push requests, sent raw by a peer that captures the answers:
 * each is refused with its reason, counted, and writes nothing; an answer
 * to a push nobody asked for is dropped and counted. */
struct raw {
    int n;
    uint16_t type;
    struct xm_rma_hdr h;
};
static void raw_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct raw *w = arg;

    w->n++;
    w->type = type;
    assert_true(len >= sizeof(w->h));
    memcpy(&w->h, data, sizeof(w->h));
}

static void raw_send(xm_channel_t *ch, uint16_t type, const struct xm_rma_hdr *h,
                     const void *body, size_t blen)
{
    int err;
    uint8_t *p = xm_chan_reserve(ch, sizeof(*h) + blen, &err);

    assert_non_null(p);
    memcpy(p, h, sizeof(*h));
    if (blen)
        memcpy(p + sizeof(*h), body, blen);
    xm_chan_commit(ch, type, sizeof(*h) + blen);
}

/* a push request, pumped until its answer came (or not) */
static void raw_push(struct node *o, struct node *r, xm_channel_t *ch, struct raw *w,
                     const struct xm_rma_hdr *h, const void *body, size_t blen)
{
    raw_send(ch, XM_REC_RMA_PUSH_REQ, h, body, blen);
    w->n = 0;
    for (int i = 0; i < 200 && !w->n; i++)
        pump(o, r, 1);
}

/* the raw peer: an endpoint with zero-copy (it grants its registrations)
 * and a service of its own for the RMA records */
static void raw_open(struct node *r, struct raw *w)
{
    xm_ep_params_t p = { .ring_pages = 4, .recv_cb = n_recv, .event_cb = n_event, .cb_arg = r };
    xm_service_t svc = { .first_type = XM_REC_RMA_FIRST, .last_type = XM_REC_RMA_LAST,
                         .recv = raw_recv, .arg = w };

    memset(r, 0, sizeof(*r));
    assert_int_equal(xm_hv_open(&r->hv), 0);
    assert_int_equal(xm_endpoint_open(r->hv, &p, &r->ep), 0);
    assert_int_equal(xm_zc_attach(r->ep, NULL), 0);
    assert_int_equal(xm_endpoint_add_service(r->ep, &svc), 0);
}

static void test_push_hostile(void **state)
{
    struct node o, r;
    struct pushbuf b;
    xm_channel_t *ch;
    struct raw w = { 0 };
    xm_zc_stats_t s0, s1;

    node_open_push(&o, 16 * PG);
    raw_open(&r, &w);
    ch = pair(&o, &r);
    pushbuf_open(&b, XM_ZC_REMOTE_READ, XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE);

    uint64_t base = (uintptr_t)b.mem, lbase = (uintptr_t)b.lmem;
    struct xm_rma_push ok = { b.lk, lbase + PG };
    struct {
        const char *what;
        struct xm_rma_hdr h;
        struct xm_rma_push body;
        int status;
    } cases[] = {
        { "not whole pages", { b.id, base + 16, 4 * PG, 0, 1 }, ok, -EINVAL },
        { "length not pages", { b.id, base, 4 * PG + 8, 0, 2 }, ok, -EINVAL },
        { "no bytes", { b.id, base, 0, 0, 3 }, ok, -EINVAL },
        { "destination not pages", { b.id, base, 4 * PG, 0, 4 }, { b.lk, lbase + 8 }, -EINVAL },
        { "destination outside its registration", { b.id, base, 4 * PG, 0, 5 },
          { b.lk, lbase + PUSH_LEN - PG }, -EINVAL },
        { "destination below its registration", { b.id, base, 4 * PG, 0, 6 },
          { b.lk, lbase - PG }, -EINVAL },
        { "unknown registration", { b.id ^ 0x5555, base, 4 * PG, 0, 7 }, ok, -ENOENT },
        { "source outside the registration", { b.id, base + PUSH_LEN - PG, 4 * PG, 0, 8 }, ok,
          -EFAULT },
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ref = xm_xfer_refused(o.x);

        raw_push(&o, &r, ch, &w, &cases[i].h, &cases[i].body, sizeof(cases[i].body));
        if (w.n != 1 || w.type != XM_REC_RMA_PUSH_REP || w.h.req != cases[i].h.req ||
            w.h.status != cases[i].status)
            fail_msg("%s: %d answers, type 0x%x, req %" PRIu64 ", status %d (want %d)",
                     cases[i].what, w.n, w.type, w.h.req, w.h.status, cases[i].status);
        assert_int_equal(xm_xfer_refused(o.x), ref + 1);
    }
    /* a source the owner did not open to peers */
    uint64_t priv;
    assert_int_equal(xm_zc_reg(b.mem + PUSH_LEN, PG, 0, &priv), 0);
    struct xm_rma_hdr hp = { priv, base + PUSH_LEN, PG, 0, 20 };
    raw_push(&o, &r, ch, &w, &hp, &ok, sizeof(ok));
    assert_int_equal(w.h.status, -EACCES);
    xm_zc_dereg(priv);
    /* a malformed one (a short payload): dropped and counted, unanswered */
    uint64_t ref = xm_xfer_refused(o.x);
    struct xm_rma_hdr hm = { b.id, base, PG, 0, 21 };
    raw_push(&o, &r, ch, &w, &hm, &ok, 16);
    assert_int_equal(w.n, 0);
    assert_int_equal(xm_xfer_refused(o.x), ref + 1);
    for (size_t i = 0; i < PUSH_LEN + 2 * PG; i++)
        assert_int_equal(b.lmem[i], 0x5a);

    /* a good one is served: the pages arrive */
    xm_zc_get_stats(&s0);
    struct xm_rma_hdr hg = { b.id, base + PG, 4 * PG, 0, 22 };
    raw_push(&o, &r, ch, &w, &hg, &ok, sizeof(ok));
    assert_int_equal(w.h.status, 0);
    assert_int_equal(w.h.req, 22);
    assert_memory_equal(b.lmem + PG, b.mem + PG, 4 * PG);
    xm_zc_get_stats(&s1);
    assert_true(s1.zc_bytes - s0.zc_bytes >= 4 * PG);

    /* an answer to a push the owner never asked for */
    ref = xm_xfer_refused(o.x);
    raw_send(ch, XM_REC_RMA_PUSH_REP, &hg, NULL, 0);
    pump(&o, &r, 5);
    assert_int_equal(xm_xfer_refused(o.x), ref + 1);

    node_close(&r);
    node_close(&o);
    pushbuf_close(&b);
}

/* The owner's registration goes (deregistered, as a freed buffer's is)
 * after the owner took a push and while its copy waits for the peer's
 * grant: the push is answered -ENOENT and nothing of that memory is
 * written into the peer's. */
static void test_push_source_gone(void **state)
{
    struct node o, r;
    struct pushbuf b;
    xm_channel_t *ch;
    struct raw w = { 0 };

    node_open_push(&o, 16 * PG);
    raw_open(&r, &w);
    ch = pair(&o, &r);
    pushbuf_open(&b, XM_ZC_REMOTE_READ, XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE);
    struct xm_rma_hdr h = { b.id, (uintptr_t)b.mem, 4 * PG, 0, 7 };
    struct xm_rma_push body = { b.lk, (uintptr_t)b.lmem };
    raw_send(ch, XM_REC_RMA_PUSH_REQ, &h, &body, sizeof(body));
    pump(&o, NULL, 3);   /* the owner takes it and asks for the peer's grant */
    assert_int_equal(w.n, 0);
    assert_int_equal(xm_zc_dereg(b.id), 0);
    for (int i = 0; i < 200 && !w.n; i++)
        pump(&o, &r, 1);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.h.status, -ENOENT);
    for (size_t i = 0; i < PUSH_LEN + 2 * PG; i++)
        assert_int_equal(b.lmem[i], 0x5a);
    node_close(&r);
    node_close(&o);
    b.id = 0;
    pushbuf_close(&b);
}

/* A get whose push is outstanding when the channel goes down completes
 * with -EPIPE; a cancelled one leaves its push to its answer, which is
 * then taken without complaint, and the channel is idle after it. */
static void test_push_gone_and_cancel(void **state)
{
    struct node o, r;
    struct pushbuf b;
    xm_channel_t *ch;
    struct done d = { 0 };
    int tag;

    node_open_push(&o, 16 * PG);
    node_open_push(&r, 16 * PG);
    ch = pair(&o, &r);
    pushbuf_open(&b, XM_ZC_REMOTE_READ, XM_ZC_REMOTE_READ | XM_ZC_REMOTE_WRITE);

    assert_int_equal(xm_xfer_zcopy_reg(r.x, ch, &b.rk, (uintptr_t)b.mem + PUSH_OFF,
                                       b.lmem + PUSH_OFF, &b.lk, PUSH_LEN, XM_ZC_GET,
                                       done_cb, &d, &tag), -EINPROGRESS);
    xm_xfer_cancel(r.x, &tag);
    assert_false(xm_xfer_idle(r.x, ch));   /* the push is still the owner's */
    for (int i = 0; i < 500 && !xm_xfer_idle(r.x, ch); i++)
        pump(&o, &r, 1);
    assert_true(xm_xfer_idle(r.x, ch));
    pump(&o, &r, 20);   /* an answer still on its way would come now */
    assert_int_equal(d.n, 0);
    assert_int_equal(xm_xfer_refused(r.x), 0);

    memset(&d, 0, sizeof(d));
    assert_int_equal(xm_xfer_zcopy_reg(r.x, ch, &b.rk, (uintptr_t)b.mem + PUSH_OFF,
                                       b.lmem + PUSH_OFF, &b.lk, PUSH_LEN, XM_ZC_GET,
                                       done_cb, &d, NULL), -EINPROGRESS);
    node_close(&o);
    for (int i = 0; i < 100 && !d.n; i++)
        pump(NULL, &r, 1);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.status, -EPIPE);
    assert_true(xm_xfer_idle(r.x, ch));
    node_close(&r);
    pushbuf_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_checked),
        cmocka_unit_test(test_zcopy_grant_and_ring),
        cmocka_unit_test(test_zcopy_ring_only),
        cmocka_unit_test(test_bound_registration),
        cmocka_unit_test(test_path_choice_slow_copy),
        cmocka_unit_test(test_path_choice_slow_ring),
        cmocka_unit_test(test_path_choice_passive),
        cmocka_unit_test(test_ring_path_asymmetric),
        cmocka_unit_test(test_gone_and_cancel),
        cmocka_unit_test(test_get_flood_unread),
        cmocka_unit_test(test_ring_ranges_per_peer),
        cmocka_unit_test(test_idle_ignores_control),
        cmocka_unit_test(test_push_split),
        cmocka_unit_test(test_push_refused_falls_back),
        cmocka_unit_test(test_push_source_gone),
        cmocka_unit_test(test_push_hostile),
        cmocka_unit_test(test_push_gone_and_cancel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
