/*
 * Channel unit tests: two (or three) sim domains inside one process, each
 * with its own hv handle and endpoint, pumped alternately.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "xm_channel.h"
#include "xm_wire.h"
#include "xm_log.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

/* malloc, as the core sees it (linked with -Wl,--wrap=malloc): the nth
 * call from now fails when malloc_fail_in is n */
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
static int malloc_fail_in;
void *__wrap_malloc(size_t n)
{
    if (malloc_fail_in > 0 && --malloc_fail_in == 0)
        return NULL;
    return __real_malloc(n);
}

/* the core's test seams (xm_channel.c built with XM_TEST_SEAMS) */
extern void (*xm_test_seam)(xm_channel_t *ch, int point);

#define MAXMSG 64
struct msg {
    xm_channel_t *ch;
    uint16_t type;
    size_t len;
    uint8_t data[40000];
};

struct side {
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    struct msg *log;
    unsigned nlog;
    int accepted, connected, gone, failed;
    xm_channel_t *last_ch, *accepted_ch, *gone_ch;
};

static void on_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct side *s = arg;
    if (s->nlog < MAXMSG) {
        struct msg *m = &s->log[s->nlog];
        m->ch = ch;
        m->type = type;
        m->len = len;
        memcpy(m->data, data, len < sizeof(m->data) ? len : sizeof(m->data));
    }
    s->nlog++;
}

static void on_event(void *arg, xm_channel_t *ch, enum xm_chan_event ev)
{
    struct side *s = arg;
    s->last_ch = ch;
    switch (ev) {
    case XM_EV_ACCEPTED: s->accepted++; s->accepted_ch = ch; break;
    case XM_EV_CONNECTED: s->connected++; break;
    case XM_EV_PEER_GONE: s->gone++; s->gone_ch = ch; break;
    case XM_EV_FAILED: s->failed++; break;
    }
}

static void side_open(struct side *s, unsigned pages)
{
    xm_ep_params_t p = { .ring_pages = pages, .recv_cb = on_recv, .event_cb = on_event,
                         .cb_arg = s };
    memset(s, 0, sizeof(*s));
    s->log = calloc(MAXMSG, sizeof(struct msg));
    assert_non_null(s->log);
    assert_int_equal(xm_hv_open(&s->hv), 0);
    assert_int_equal(xm_endpoint_open(s->hv, &p, &s->ep), 0);
}

static void side_close(struct side *s)
{
    if (s->ep)
        xm_endpoint_close(s->ep);
    if (s->hv)
        xm_hv_close(s->hv);
    free(s->log);
    memset(s, 0, sizeof(*s));
}

static void pump(struct side **sides, unsigned n, unsigned rounds)
{
    for (unsigned r = 0; r < rounds; r++)
        for (unsigned i = 0; i < n; i++)
            xm_endpoint_wait(sides[i]->ep, 0);
}

/* b connects to a; returns b's channel and sets *a_ch to a's */
static xm_channel_t *connect_pair(struct side *a, struct side *b, xm_channel_t **a_ch)
{
    xm_channel_t *ch;
    struct side *v[2] = { a, b };

    assert_int_equal(xm_endpoint_connect(b->ep, xm_hv_domid(a->hv), xm_endpoint_id(a->ep),
                                         xm_endpoint_key(a->ep), &ch), 0);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTING);
    for (int i = 0; i < 1000 && xm_chan_state(ch) == XM_CH_CONNECTING; i++)
        pump(v, 2, 1);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTED);
    assert_int_equal(a->accepted, 1);
    assert_int_equal(b->connected, 1);
    if (a_ch)
        *a_ch = a->last_ch;
    return ch;
}

/* s's endpoint directory <dir> (req, resp) has no children */
static void assert_no_nodes(struct side *s, const char *dir)
{
    char path[160], **names = NULL;
    unsigned n = 99;

    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/%s", xm_hv_domid(s->hv),
             xm_endpoint_id(s->ep), dir);
    assert_int_equal(xm_store_list(s->hv, path, &names, &n), 0);
    assert_int_equal(n, 0);
    free(names);
}

static int setup(void **state)
{
    char host[64];
    snprintf(host, sizeof(host), "unit-chan-%d", (int)getpid());
    setenv("XENMPI_BACKEND", "sim", 1);
    setenv("XENMPI_SIM_HOST", host, 1);
    unsetenv("XENMPI_SIM_DOMID");
    *state = NULL;
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf /dev/shm/xenmpi-sim-unit-chan-%d", (int)getpid());
    return system(cmd);
}

static void test_handshake_and_both_directions(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;
    struct side *v[2] = { &a, &b };

    side_open(&a, 4);
    side_open(&b, 4);
    ba = connect_pair(&a, &b, &ab);
    assert_int_equal(xm_chan_peer_dom(ab), xm_hv_domid(b.hv));
    assert_int_equal(xm_chan_send(ba, 7, "hd", 2, "hello", 5), 0);
    assert_int_equal(xm_chan_send(ab, 9, NULL, 0, "world!", 6), 0);
    pump(v, 2, 2);
    assert_int_equal(a.nlog, 1);
    assert_int_equal(a.log[0].type, 7);
    assert_int_equal(a.log[0].len, 7);
    assert_memory_equal(a.log[0].data, "hdhello", 7);
    assert_int_equal(b.nlog, 1);
    assert_int_equal(b.log[0].type, 9);
    assert_memory_equal(b.log[0].data, "world!", 6);
    /* connecting again finds the same channel: one handshake per pair */
    xm_channel_t *again;
    assert_int_equal(xm_endpoint_connect(b.ep, xm_hv_domid(a.hv), xm_endpoint_id(a.ep),
                                         xm_endpoint_key(a.ep), &again), 0);
    assert_ptr_equal(again, ba);
    /* the handshake nodes are cleaned up once connected */
    assert_no_nodes(&a, "req");
    side_close(&b);
    side_close(&a);
}

static void test_connect_refused(void **state)
{
    struct side a;
    xm_channel_t *ch;

    side_open(&a, 1);
    /* domain 0x7000 endpoint 1 does not exist */
    assert_int_equal(xm_endpoint_connect(a.ep, 0x7000, 1, 0, &ch), -ECONNREFUSED);
    side_close(&a);
}

static void test_bad_ring_size(void **state)
{
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    xm_ep_params_t p = { .ring_pages = 3, .recv_cb = on_recv };

    assert_int_equal(xm_hv_open(&hv), 0);
    assert_int_equal(xm_endpoint_open(hv, &p, &ep), -EINVAL);
    p.ring_pages = 512;
    assert_int_equal(xm_endpoint_open(hv, &p, &ep), -EINVAL);
    xm_hv_close(hv);
}

/* one-page ring: full, wrap with PAD records, batched release, order */
static void test_wrap_full_and_batched_release(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;
    xm_chan_stats_t st;
    uint8_t buf[2048];
    struct side *v[1] = { &a };

    side_open(&a, 1);
    side_open(&b, 1);
    ba = connect_pair(&a, &b, &ab);
    assert_int_equal(xm_endpoint_max_msg(b.ep), 4096 / 2 - 8);
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, buf, 4096), -EMSGSIZE);

    /* fill: 1000-byte records (1008 on the ring) fit 4 times in 4096 */
    int sent = 0, rc;
    assert_int_equal(xm_chan_space(ba), 4096 / 2 - 8);
    memset(buf, 0xab, sizeof(buf));
    while ((rc = xm_chan_send(ba, 1, NULL, 0, buf, 1000)) == 0)
        sent++;
    assert_int_equal(rc, -EAGAIN);
    assert_int_equal(sent, 4);
    assert_true(xm_chan_space(ba) < 1000);   /* agrees with the refusal */
    xm_chan_get_stats(ba, &st);
    assert_true(st.ring_full >= 1);
    assert_true(xm_chan_inflight(ba) == 4 * 1008);
    pump(v, 1, 1);
    assert_int_equal(a.nlog, 4);
    assert_int_equal(xm_chan_inflight(ba), 0);

    /* many small messages in one progress call: released in batches */
    a.nlog = 0;
    for (int i = 0; i < 60; i++)
        assert_int_equal(xm_chan_send(ba, 2, NULL, 0, &i, sizeof(i)), 0);
    pump(v, 1, 1);
    assert_int_equal(a.nlog, 60);
    xm_chan_stats_t ast;
    xm_chan_get_stats(ab, &ast);
    assert_true(ast.releases < 10);   /* 60 messages, 960 bytes: far fewer releases */

    /* wrap many times with odd sizes; order and content survive PAD records */
    a.nlog = 0;
    unsigned next = 0, got = 0;
    for (unsigned i = 0; i < 3000;) {
        size_t len = 8 + (i * 37) % 1500;
        memset(buf, (int)(i & 0xff), len);
        memcpy(buf, &i, sizeof(i));
        rc = xm_chan_send(ba, 3, NULL, 0, buf, len);
        if (rc == -EAGAIN) {
            a.nlog = 0;
            pump(v, 1, 1);
            for (unsigned k = 0; k < a.nlog && k < MAXMSG; k++) {
                unsigned seq;
                memcpy(&seq, a.log[k].data, sizeof(seq));
                assert_int_equal(seq, next);
                assert_int_equal(a.log[k].len, 8 + (seq * 37) % 1500);
                assert_int_equal(a.log[k].data[a.log[k].len - 1], seq & 0xff);
                next++;
            }
            got += a.nlog;
            continue;
        }
        assert_int_equal(rc, 0);
        i++;
    }
    a.nlog = 0;
    pump(v, 1, 1);
    got += a.nlog;
    assert_int_equal(got, 3000);
    side_close(&b);
    side_close(&a);
}

static int fd_readable(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, ms) == 1;
}

static void test_notify_only_when_armed(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;
    xm_chan_stats_t st;
    struct side *v[2] = { &a, &b };

    side_open(&a, 2);
    side_open(&b, 2);
    ba = connect_pair(&a, &b, &ab);
    pump(v, 2, 3);   /* drain the bind-time events */
    /* receiver polling, not armed: no notification */
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, "a", 1), 0);
    xm_chan_get_stats(ba, &st);
    assert_int_equal(st.notifies_sent, 0);
    /* arm with data waiting: refuse to sleep */
    assert_int_equal(xm_endpoint_arm(a.ep), -EBUSY);
    pump(v, 1, 1);
    /* empty ring: armed; two sends make exactly one notification */
    while (fd_readable(xm_endpoint_fd(a.ep), 0))
        xm_endpoint_wait(a.ep, 0);
    assert_int_equal(xm_endpoint_arm(a.ep), 0);
    assert_false(fd_readable(xm_endpoint_fd(a.ep), 0));
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, "b", 1), 0);
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, "c", 1), 0);
    xm_chan_get_stats(ba, &st);
    assert_int_equal(st.notifies_sent, 1);
    assert_true(fd_readable(xm_endpoint_fd(a.ep), 2000));
    a.nlog = 0;
    pump(v, 1, 1);
    assert_int_equal(a.nlog, 2);
    side_close(&b);
    side_close(&a);
}

/* a sender that found the ring full is woken when the receiver frees space */
static void test_space_wakeup(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;
    xm_chan_stats_t st;
    struct side *v[2] = { &a, &b };
    uint8_t buf[1000] = { 0 };

    side_open(&a, 1);
    side_open(&b, 1);
    ba = connect_pair(&a, &b, &ab);
    pump(v, 2, 3);
    while (fd_readable(xm_endpoint_fd(b.ep), 0))
        xm_endpoint_wait(b.ep, 0);
    while (xm_chan_send(ba, 1, NULL, 0, buf, sizeof(buf)) == 0)
        ;
    /* awake and polling: a must not notify */
    pump(v, 1, 1);
    xm_chan_get_stats(ab, &st);
    assert_int_equal(st.notifies_sent, 0);
    while (xm_chan_send(ba, 1, NULL, 0, buf, sizeof(buf)) == 0)
        ;
    /* b goes to sleep waiting for space */
    assert_int_equal(xm_endpoint_arm(b.ep), 0);
    assert_false(fd_readable(xm_endpoint_fd(b.ep), 0));
    pump(v, 1, 1);  /* a consumes and must notify b once */
    xm_chan_get_stats(ab, &st);
    assert_int_equal(st.notifies_sent, 1);
    /* data for the same sleeper: no second notification for one sleep */
    assert_int_equal(xm_chan_send(ab, 2, NULL, 0, "d", 1), 0);
    xm_chan_get_stats(ab, &st);
    assert_int_equal(st.notifies_sent, 1);
    assert_true(fd_readable(xm_endpoint_fd(b.ep), 2000));
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, buf, sizeof(buf)), 0);
    side_close(&b);
    side_close(&a);
}

/* a hostile peer breaks only its own channel */
enum corruption { BAD_PROD, BAD_LEN, BAD_PAD, BAD_CONS, BAD_FLAGS };

static void hostile(enum corruption how)
{
    struct side a, b, c;
    xm_channel_t *ab, *ba, *ca, *ac;
    struct xm_ctrl_page *ctrl;
    uint8_t *ring;
    uint32_t size;
    struct side *v[3] = { &a, &b, &c };

    side_open(&a, 1);
    side_open(&b, 1);
    side_open(&c, 1);
    ba = connect_pair(&a, &b, &ab);
    a.accepted = 0;
    ca = connect_pair(&a, &c, &ac);
    xm_chan_own_pages(ba, &ctrl, &ring, &size);
    switch (how) {
    case BAD_PROD:
        __atomic_store_n(&ctrl->prod, size + 64, __ATOMIC_RELEASE);
        break;
    case BAD_LEN: {
        struct xm_rec_hdr h = { .len = 100000, .type = 1 };
        memcpy(ring, &h, sizeof(h));
        __atomic_store_n(&ctrl->prod, 64, __ATOMIC_RELEASE);
        break;
    }
    case BAD_PAD: {
        struct xm_rec_hdr h = { .len = 8, .type = XM_REC_PAD };
        memcpy(ring, &h, sizeof(h));
        __atomic_store_n(&ctrl->prod, 16, __ATOMIC_RELEASE);
        break;
    }
    case BAD_FLAGS: {
        struct xm_rec_hdr h = { .len = 8, .type = 1, .flags = 0x8000 };
        memcpy(ring, &h, sizeof(h));
        __atomic_store_n(&ctrl->prod, 16, __ATOMIC_RELEASE);
        break;
    }
    case BAD_CONS:
        /* b claims to have consumed data a never sent */
        __atomic_store_n(&ctrl->cons, 12345, __ATOMIC_RELEASE);
        break;
    }
    if (how == BAD_CONS) {
        /* a notices when it next looks at b's consumer index */
        uint8_t buf[1000] = { 0 };
        int rc;
        while ((rc = xm_chan_send(ab, 1, NULL, 0, buf, sizeof(buf))) == 0)
            ;
        assert_int_equal(rc, -EPIPE);
        assert_int_equal(xm_chan_state(ab), XM_CH_FAILED);
        /* found inside a send: reported from progress, not from the send */
        assert_int_equal(a.failed, 0);
    }
    pump(v, 1, 1);
    assert_int_equal(xm_chan_state(ab), XM_CH_FAILED);
    assert_int_equal(a.failed, 1);
    assert_int_equal(a.nlog, 0);   /* nothing from the bad ring was delivered */
    assert_int_equal(xm_chan_send(ab, 1, NULL, 0, "x", 1), -EPIPE);
    /* c's channel to a is untouched */
    assert_int_equal(xm_chan_send(ca, 5, NULL, 0, "fine", 4), 0);
    pump(v, 1, 1);
    assert_int_equal(a.nlog, 1);
    assert_memory_equal(a.log[0].data, "fine", 4);
    assert_int_equal(xm_chan_state(ac), XM_CH_CONNECTED);
    side_close(&c);
    side_close(&b);
    side_close(&a);
}

/* A peer that rewrites a published record's header while we poll: each
 * record is judged on one copy of its header (xm_ring_next's single
 * load).  The header flips between a good one (8 bytes) and one that
 * claims 100000; whichever copy we took, what is delivered is the 8 bytes
 * the good one names, or the channel fails: never a message of another
 * length, never a read past the record. */
struct flipper {
    volatile uint64_t *hdr;
    uint64_t good, bad;
    int stop, started;
};

static void *flip(void *arg)
{
    struct flipper *f = arg;

    __atomic_store_n(&f->started, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        *f->hdr = f->bad;
        *f->hdr = f->good;
    }
    return NULL;
}

static void test_hostile_rewriter(void **state)
{
    struct xm_rec_hdr good = { .len = 8, .type = 1 }, bad = { .len = 100000, .type = 1 };
    unsigned delivered = 0, failed = 0;

    for (int it = 0; it < 60; it++) {
        struct side a, b;
        struct side *v[1] = { &a };
        struct xm_ctrl_page *ctrl;
        struct flipper f = { 0 };
        xm_channel_t *ab, *ba;
        pthread_t t;
        uint8_t *ring;
        uint32_t size;

        side_open(&a, 1);
        side_open(&b, 1);
        ba = connect_pair(&a, &b, &ab);
        xm_chan_own_pages(ba, &ctrl, &ring, &size);
        memcpy(ring + 8, "ABCDEFGH", 8);
        memcpy(&f.good, &good, 8);
        memcpy(&f.bad, &bad, 8);
        f.hdr = (volatile uint64_t *)(void *)ring;
        *f.hdr = f.good;
        assert_int_equal(pthread_create(&t, NULL, flip, &f), 0);
        while (!__atomic_load_n(&f.started, __ATOMIC_ACQUIRE))
            ;
        __atomic_store_n(&ctrl->prod, 16, __ATOMIC_RELEASE);
        pump(v, 1, 1);
        __atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
        pthread_join(t, NULL);
        if (a.nlog) {
            assert_int_equal(a.nlog, 1);
            assert_int_equal(a.log[0].len, 8);
            assert_memory_equal(a.log[0].data, "ABCDEFGH", 8);
            assert_int_equal(xm_chan_state(ab), XM_CH_CONNECTED);
            delivered++;
        } else {
            assert_int_equal(xm_chan_state(ab), XM_CH_FAILED);
            assert_int_equal(a.failed, 1);
            failed++;
        }
        side_close(&b);
        side_close(&a);
    }
    print_message("rewritten header: %u delivered whole, %u failed the channel\n",
                  delivered, failed);
    assert_int_equal(delivered + failed, 60);
}

static void test_hostile_prod(void **state) { hostile(BAD_PROD); }
static void test_hostile_len(void **state) { hostile(BAD_LEN); }
static void test_hostile_pad(void **state) { hostile(BAD_PAD); }
static void test_hostile_cons(void **state) { hostile(BAD_CONS); }
static void test_hostile_flags(void **state) { hostile(BAD_FLAGS); }

/* a listener that never answers: the connect gives up after the timeout */
static void test_connect_timeout(void **state)
{
    struct side a, b;
    xm_channel_t *ch;

    setenv("XENMPI_CONNECT_TIMEOUT", "0.3", 1);
    side_open(&a, 1);
    side_open(&b, 1);
    unsetenv("XENMPI_CONNECT_TIMEOUT");
    assert_int_equal(xm_endpoint_connect(b.ep, xm_hv_domid(a.hv), xm_endpoint_id(a.ep),
                                         xm_endpoint_key(a.ep), &ch), 0);
    /* only b makes progress */
    for (int i = 0; i < 200 && xm_chan_state(ch) == XM_CH_CONNECTING; i++) {
        xm_endpoint_progress(b.ep);
        usleep(10000);
    }
    assert_int_equal(xm_chan_state(ch), XM_CH_FAILED);
    assert_int_equal(b.failed, 1);
    assert_int_equal(xm_chan_send(ch, 1, NULL, 0, "x", 1), -EPIPE);
    /* a new attempt starts a new handshake, which succeeds once a answers */
    b.connected = 0;
    a.accepted = 0;
    xm_channel_t *ok = connect_pair(&a, &b, NULL);
    assert_ptr_not_equal(ok, ch);
    side_close(&b);
    side_close(&a);
}

/* A listener that cannot accept (its grant table is full) removes the
 * request: the initiator fails at once, not at its connect deadline. */
static void test_listener_refuses(void **state)
{
    struct side a, b;
    xm_channel_t *ch;
    struct side *v[2] = { &a, &b };

    setenv("XENMPI_SIM_GNTTAB_SIZE", "2", 1);   /* a's domain: 1 usable entry, a channel needs 2 */
    side_open(&a, 1);
    unsetenv("XENMPI_SIM_GNTTAB_SIZE");
    setenv("XENMPI_CONNECT_TIMEOUT", "3600", 1);
    side_open(&b, 1);
    unsetenv("XENMPI_CONNECT_TIMEOUT");
    assert_int_equal(xm_endpoint_connect(b.ep, xm_hv_domid(a.hv), xm_endpoint_id(a.ep),
                                         xm_endpoint_key(a.ep), &ch), 0);
    for (int i = 0; i < 1000 && xm_chan_state(ch) == XM_CH_CONNECTING; i++)
        pump(v, 2, 1);
    assert_int_equal(xm_chan_state(ch), XM_CH_FAILED);
    assert_int_equal(b.failed, 1);
    assert_int_equal(a.accepted, 0);
    assert_int_equal(xm_chan_send(ch, 1, NULL, 0, "x", 1), -EPIPE);
    pump(v, 2, 5);
    assert_no_nodes(&a, "req");
    side_close(&b);
    side_close(&a);
}

/* A ring the grant table refuses falls back to half its size, down to the
 * smallest that holds min_msg; later channels start at the size that was
 * granted; below that the connect fails with the error.  Records of
 * xm_endpoint_max_msg go through a fallen-back ring both ways, and the
 * fallback's grants are released with its channel. */
static void test_ring_fallback(void **state)
{
    struct side L[5], b;
    xm_channel_t *ch[5];
    xm_ep_params_t p = { .ring_pages = 8, .min_msg = XM_MAX_MSG(4 * XM_PAGE_SIZE) - 5,
                         .recv_cb = on_recv, .event_cb = on_event, .cb_arg = &b };
    static uint8_t big[4 * XM_PAGE_SIZE];
    const unsigned want[5] = { 8, 4, 0, 4, 0 };

    /* b's domain: 16 usable entries: 1+8, 1+4 (8 refused), then 1 +
     * nothing (4 refused, and 2 pages hold no min_msg record) */
    setenv("XENMPI_SIM_GNTTAB_SIZE", "17", 1);
    side_open(&b, 1);
    unsetenv("XENMPI_SIM_GNTTAB_SIZE");
    /* one endpoint: its later channels start where the last one fell to */
    xm_endpoint_t *ep;
    assert_int_equal(xm_endpoint_open(b.hv, &p, &ep), 0);
    assert_int_equal(xm_endpoint_max_msg(ep), XM_MAX_MSG(4 * XM_PAGE_SIZE));
    /* each listener in a domain of its own */
    for (int i = 0; i < 5; i++) {
        struct side *a = &L[i];
        side_open(a, 8);
        xm_endpoint_t *l = a->ep;
        int rc = xm_endpoint_connect(ep, xm_hv_domid(a->hv), xm_endpoint_id(l),
                                     xm_endpoint_key(l), &ch[i]);
        if (!want[i]) {
            assert_int_equal(rc, -ENOSPC);   /* said why, nothing left behind */
            if (i == 2) {
                /* the 4-page channel goes: its 5 entries hold the next one */
                xm_endpoint_close(L[1].ep);
                L[1].ep = NULL;
                for (int k = 0; k < 100 && xm_chan_state(ch[1]) == XM_CH_CONNECTED; k++)
                    xm_endpoint_progress(ep);
                assert_int_not_equal(xm_chan_state(ch[1]), XM_CH_CONNECTED);
            }
            continue;
        }
        assert_int_equal(rc, 0);
        for (int k = 0; k < 300 && xm_chan_state(ch[i]) == XM_CH_CONNECTING; k++) {
            xm_endpoint_progress(l);
            xm_endpoint_progress(ep);
        }
        assert_int_equal(xm_chan_state(ch[i]), XM_CH_CONNECTED);
        assert_int_equal(xm_chan_ring_pages(ch[i]), want[i]);
        /* the largest record this ring holds, then one byte more is
         * refused; the listener knows the limit of what it receives */
        size_t max = xm_chan_max_msg(ch[i]);
        assert_int_equal(max, XM_MAX_MSG(want[i] * XM_PAGE_SIZE));
        assert_true(max >= xm_endpoint_max_msg(ep));
        assert_int_equal(xm_chan_peer_max_msg(ch[i]), XM_MAX_MSG(8 * XM_PAGE_SIZE));
        memset(big, 'a' + i, sizeof(big));
        b.nlog = a->nlog = 0;
        for (int k = 0; k < 3; k++) {
            int s;
            while ((s = xm_chan_send(ch[i], 5, NULL, 0, big, max)) == -EAGAIN) {
                xm_endpoint_progress(l);
                xm_endpoint_progress(ep);
            }
            assert_int_equal(s, 0);
        }
        assert_int_equal(xm_chan_send(ch[i], 5, NULL, 0, big, max + 1), -EMSGSIZE);
        for (int k = 0; k < 100 && a->nlog < 3; k++)
            xm_endpoint_progress(l);
        assert_int_equal(a->nlog, 3);
        assert_int_equal(a->log[2].len, max);
        assert_int_equal(a->log[2].data[0], 'a' + i);
        assert_int_equal(xm_chan_peer_max_msg(a->last_ch), max);
        assert_int_equal(xm_chan_send(a->last_ch, 6, NULL, 0, big, 100), 0);
        for (int k = 0; k < 100 && b.nlog < 1; k++)
            xm_endpoint_progress(ep);
        assert_int_equal(b.nlog, 1);
        assert_int_equal(b.log[0].type, 6);
        /* L[i] stays open: its channel holds b's grants */
    }
    xm_endpoint_close(ep);
    side_close(&b);
    for (int i = 0; i < 5; i++)
        side_close(&L[i]);
}

/* garbage or lies in a handshake request: rejected, removed, nothing else hurt */
static void test_hostile_handshake(void **state)
{
    struct side a, b, c;
    xm_channel_t *ba;
    struct side *v[3] = { &a, &b, &c };
    char path[200], rec[200];
    xm_store_perm_t perms[2];

    side_open(&a, 1);
    side_open(&b, 1);
    side_open(&c, 1);
    ba = connect_pair(&a, &b, NULL);
    uint32_t cd = xm_hv_domid(c.hv), ad = xm_hv_domid(a.hv), ae = xm_endpoint_id(a.ep);
    perms[0].domid = cd;
    perms[0].perm = XM_PERM_NONE;
    perms[1].domid = ad;
    perms[1].perm = XM_PERM_BOTH;
    static const char *const lies[] = {
        "garbage",
        /* well formed, but the refs were never granted to a */
        "v=2 dom=%u ep=%u key=%016llx ctrl=777 port=3 pages=1 refs=778",
        /* claims to be another domain */
        "v=2 dom=1 ep=%u key=%016llx ctrl=1 port=1 pages=1 refs=2",
    };
    unsigned long long ak = (unsigned long long)xm_endpoint_key(a.ep);
    for (unsigned i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%u-%u", ad, ae, cd, 100 + i);
        if (i == 1)
            snprintf(rec, sizeof(rec), lies[i], cd, 100 + i, ak);
        else if (i == 2)
            snprintf(rec, sizeof(rec), lies[i], 100 + i, ak);
        else
            snprintf(rec, sizeof(rec), "%s", lies[i]);
        assert_int_equal(xm_store_write(c.hv, path, rec, strlen(rec)), 0);
        assert_int_equal(xm_store_set_perms(c.hv, path, perms, 2), 0);
        pump(v, 1, 300);
        assert_int_equal(a.accepted, 1);   /* only b's, from connect_pair */
        /* a removed the bad request */
        char *val = NULL;
        assert_int_equal(xm_store_read(c.hv, path, &val, NULL), -ENOENT);
    }
    /* a real endpoint that was not given a's address: without the key
     * (here: one bit off) it is refused, and sees the refusal */
    xm_channel_t *cc;
    assert_int_equal(xm_endpoint_connect(c.ep, ad, ae, xm_endpoint_key(a.ep) ^ 1, &cc), 0);
    for (int i = 0; i < 300 && xm_chan_state(cc) == XM_CH_CONNECTING; i++)
        pump(v, 3, 1);
    assert_int_equal(a.accepted, 1);
    assert_int_equal(xm_chan_state(cc), XM_CH_FAILED);
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%u-%u", ad, ae, cd,
             xm_endpoint_id(c.ep));
    char *left = NULL;
    assert_int_equal(xm_store_read(c.hv, path, &left, NULL), -ENOENT);
    /* b's channel still works */
    assert_int_equal(xm_chan_send(ba, 4, NULL, 0, "still", 5), 0);
    a.nlog = 0;
    pump(v, 1, 1);
    assert_int_equal(a.nlog, 1);
    side_close(&c);
    side_close(&b);
    side_close(&a);
}

/* A request in another domain's name: c writes, under a name and a record
 * of b's, b's real port and refs (b had asked to connect and withdrew, or
 * c guessed them).  The node's owner is c, so a refuses it: without that
 * check a would bind b's port and map b's pages for a channel b never
 * asked for. */
static void test_impersonated_request(void **state)
{
    struct side a, b, c;
    struct side *v[1] = { &a };
    xm_channel_t *bc;
    char path[200], fake[200], rec[400], *val = NULL, *at;
    xm_store_perm_t perms[2];

    side_open(&a, 1);
    side_open(&b, 1);
    side_open(&c, 1);
    uint32_t ad = xm_hv_domid(a.hv), ae = xm_endpoint_id(a.ep), bd = xm_hv_domid(b.hv);
    uint32_t be = xm_endpoint_id(b.ep), cd = xm_hv_domid(c.hv);
    assert_int_equal(xm_endpoint_connect(b.ep, ad, ae, xm_endpoint_key(a.ep), &bc), 0);
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%u-%u", ad, ae, bd, be);
    assert_int_equal(xm_store_read(b.hv, path, &val, NULL), 0);
    assert_int_equal(xm_store_remove(b.hv, path), 0);
    /* b's record, as endpoint 999 of b */
    char epfield[32];
    snprintf(epfield, sizeof(epfield), " ep=%u ", be);
    at = strstr(val, epfield);
    assert_non_null(at);
    snprintf(rec, sizeof(rec), "%.*s ep=999 %s", (int)(at - val), val, at + strlen(epfield));
    free(val);
    snprintf(fake, sizeof(fake), "/local/domain/%u/xenmpi/ep%u/req/%u-999", ad, ae, bd);
    perms[0] = (xm_store_perm_t){ cd, XM_PERM_NONE };
    perms[1] = (xm_store_perm_t){ ad, XM_PERM_BOTH };
    assert_int_equal(xm_store_write(c.hv, fake, rec, strlen(rec)), 0);
    assert_int_equal(xm_store_set_perms(c.hv, fake, perms, 2), 0);
    /* c cannot make the node b's either: only dom0 gives a node away */
    perms[0].domid = bd;
    assert_int_equal(xm_store_set_perms(c.hv, fake, perms, 2), -EPERM);
    pump(v, 1, 300);
    assert_int_equal(a.accepted, 0);
    assert_int_equal(xm_store_read(c.hv, fake, &val, NULL), -ENOENT);   /* removed */
    side_close(&c);
    side_close(&b);
    side_close(&a);
}

/* Store garbage under req/: a node the listener cannot read (written
 * without permissions for it) is removed, not left for ever; a node is
 * created with its permissions in one step or not at all. */
static void test_request_garbage(void **state)
{
    struct side a, b, c;
    struct side *v[1] = { &a };
    char path[200], *val = NULL;

    side_open(&a, 1);
    side_open(&b, 1);
    side_open(&c, 1);
    uint32_t ad = xm_hv_domid(a.hv), ae = xm_endpoint_id(a.ep), cd = xm_hv_domid(c.hv);
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%u-77", ad, ae, cd);
    assert_int_equal(xm_store_write(c.hv, path, "junk", 4), 0);   /* a may not read it */
    assert_int_equal(xm_store_read(a.hv, path, &val, NULL), -EACCES);
    pump(v, 1, 50);
    assert_int_equal(xm_store_read(c.hv, path, &val, NULL), -ENOENT);
    assert_int_equal(a.accepted, 0);
    /* created with a's right to read at once; never given away */
    xm_store_perm_t perms[2] = { { cd, XM_PERM_NONE }, { ad, XM_PERM_READ } };
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%u-78", ad, ae, cd);
    assert_int_equal(xm_store_create(c.hv, path, "x", 1, perms, 2), 0);
    assert_int_equal(xm_store_read(a.hv, path, &val, NULL), 0);
    free(val);
    uint32_t owner = 0;
    assert_int_equal(xm_store_owner(a.hv, path, &owner), 0);
    assert_int_equal(owner, cd);
    perms[0].domid = xm_hv_domid(b.hv);
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%u-79", ad, ae, cd);
    assert_int_equal(xm_store_create(c.hv, path, "x", 1, perms, 2), -EPERM);
    assert_int_equal(xm_store_read(c.hv, path, &val, NULL), -ENOENT);
    /* b still connects */
    connect_pair(&a, &b, NULL);
    side_close(&c);
    side_close(&b);
    side_close(&a);
}

/* A flood of request nodes under malformed names (not domid-endpoint):
 * every one is removed, and the listener's log says so at most
 * XM_LOG_BURST times a second, the rest counted in the next message. */
static void test_request_name_flood(void **state)
{
    struct side a, b, c;
    struct side *v[1] = { &a };
    char path[200], *val = NULL, line[512];
    enum { N = 200 };

    side_open(&a, 1);
    side_open(&b, 1);
    side_open(&c, 1);
    uint32_t ad = xm_hv_domid(a.hv), ae = xm_endpoint_id(a.ep), cd = xm_hv_domid(c.hv);
    /* the rights a real request gives the listener (a node that denies it
     * write stays, charged to its writer's store quota, until the
     * endpoint's req dir goes) */
    xm_store_perm_t perms[2] = { { cd, XM_PERM_NONE }, { ad, XM_PERM_BOTH } };
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%s%d", ad, ae,
                 i % 2 ? "junk-" : "7-7-", i);
        assert_int_equal(xm_store_create(c.hv, path, "x", 1, perms, 2), 0);
    }
    /* the listener's stderr, counted */
    FILE *log = tmpfile();
    assert_non_null(log);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fileno(log), 2), 2);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pump(v, 1, 50);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unsigned said = 0, other = 0;
    rewind(log);
    while (fgets(line, sizeof(line), log)) {
        if (strstr(line, "removing malformed request node"))
            said++;
        else if (!strstr(line, "were left out"))
            other++;
    }
    fclose(log);
    /* XM_LOG_BURST in each second the flood was read, and far from one a node */
    long secs = t1.tv_sec - t0.tv_sec;
    assert_true(said >= 1);
    assert_true(said <= (unsigned)XM_LOG_BURST * (secs + 2));
    assert_true(said < N / 2);
    assert_int_equal(other, 0);
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/local/domain/%u/xenmpi/ep%u/req/%s%d", ad, ae,
                 i % 2 ? "junk-" : "7-7-", i);
        if (xm_store_read(c.hv, path, &val, NULL) != -ENOENT)
            fail_msg("%s is still there", path);   /* removed */
    }
    assert_int_equal(a.accepted, 0);
    connect_pair(&a, &b, NULL);   /* and the listener still serves the rest */
    side_close(&c);
    side_close(&b);
    side_close(&a);
}

/* One peer domain gets at most XENMPI_MAX_DOMAIN_CHANNELS (2 here) of an
 * endpoint's channels; another domain still connects, and a closed one
 * makes room. */
static void test_domain_channel_cap(void **state)
{
    struct side a, b, c;
    struct side *v[3] = { &a, &b, &c };
    xm_endpoint_t *more[3];
    xm_channel_t *ch[3];
    xm_ep_params_t p = { .ring_pages = 1, .recv_cb = on_recv, .event_cb = on_event,
                         .cb_arg = &b };

    setenv("XENMPI_MAX_DOMAIN_CHANNELS", "2", 1);
    side_open(&a, 1);
    side_open(&b, 1);
    side_open(&c, 1);
    uint32_t ad = xm_hv_domid(a.hv), ae = xm_endpoint_id(a.ep);
    uint64_t ak = xm_endpoint_key(a.ep);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(xm_endpoint_open(b.hv, &p, &more[i]), 0);
        assert_int_equal(xm_endpoint_connect(more[i], ad, ae, ak, &ch[i]), 0);
        for (int k = 0; k < 300 && xm_chan_state(ch[i]) == XM_CH_CONNECTING; k++) {
            pump(v, 1, 1);
            xm_endpoint_progress(more[i]);
        }
    }
    assert_int_equal(xm_chan_state(ch[0]), XM_CH_CONNECTED);
    assert_int_equal(xm_chan_state(ch[1]), XM_CH_CONNECTED);
    assert_int_equal(xm_chan_state(ch[2]), XM_CH_FAILED);   /* refused, and told */
    assert_int_equal(a.accepted, 2);
    a.accepted = 0;
    connect_pair(&a, &c, NULL);   /* c's domain has its own share */
    /* one of b's goes: b's domain may connect once more */
    xm_endpoint_close(more[0]);
    for (int k = 0; k < 100 && a.gone == 0; k++)
        pump(v, 1, 1);
    xm_endpoint_close(more[2]);
    assert_int_equal(xm_endpoint_open(b.hv, &p, &more[2]), 0);
    assert_int_equal(xm_endpoint_connect(more[2], ad, ae, ak, &ch[2]), 0);
    for (int k = 0; k < 300 && xm_chan_state(ch[2]) == XM_CH_CONNECTING; k++) {
        pump(v, 1, 1);
        xm_endpoint_progress(more[2]);
    }
    assert_int_equal(xm_chan_state(ch[2]), XM_CH_CONNECTED);
    unsetenv("XENMPI_MAX_DOMAIN_CHANNELS");
    xm_endpoint_close(more[1]);
    xm_endpoint_close(more[2]);
    side_close(&c);
    side_close(&b);
    side_close(&a);
}

/* remote completion: a record counts as consumed only after its callback */
static xm_channel_t *rc_sender;
static uint32_t rc_marks[64];
static int rc_seen, rc_early;

static void rc_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    if (xm_chan_tx_reached(rc_sender, rc_marks[rc_seen]))
        rc_early++;
    rc_seen++;
}

static void test_remote_completion(void **state)
{
    struct side a, b;
    xm_channel_t *ab;
    uint8_t buf[400] = { 0 };
    struct side *v[1] = { &a };
    xm_ep_params_t p = { .ring_pages = 1, .recv_cb = rc_recv, .event_cb = on_event, .cb_arg = &a };

    side_open(&a, 1);
    side_open(&b, 1);
    /* a's endpoint with the checking callback */
    xm_endpoint_close(a.ep);
    assert_int_equal(xm_endpoint_open(a.hv, &p, &a.ep), 0);
    rc_sender = connect_pair(&a, &b, &ab);
    /* 9 records of 408 bytes: the quarter-ring release fires mid-batch */
    for (int i = 0; i < 9; i++) {
        assert_int_equal(xm_chan_send(rc_sender, 1, NULL, 0, buf, sizeof(buf)), 0);
        rc_marks[i] = xm_chan_tx_mark(rc_sender);
    }
    assert_false(xm_chan_tx_reached(rc_sender, rc_marks[0]));
    rc_seen = rc_early = 0;
    pump(v, 1, 1);
    assert_int_equal(rc_seen, 9);
    assert_int_equal(rc_early, 0);   /* never released before processed */
    assert_true(xm_chan_tx_reached(rc_sender, rc_marks[8]));
    side_close(&b);
    side_close(&a);
}

static void test_peer_close_is_seen(void **state)
{
    struct side a, b;
    xm_channel_t *ab;
    struct side *v[1] = { &a };

    side_open(&a, 1);
    side_open(&b, 1);
    connect_pair(&a, &b, &ab);
    side_close(&b);
    for (int i = 0; i < 100 && !a.gone; i++)
        pump(v, 1, 1);
    assert_int_equal(a.gone, 1);
    assert_int_equal(xm_chan_state(ab), XM_CH_PEER_GONE);
    assert_int_equal(xm_chan_send(ab, 1, NULL, 0, "x", 1), -EPIPE);
    side_close(&a);
}

/* a failed allocation in connect gives -ENOMEM and leaves nothing behind */
static void test_connect_nomem(void **state)
{
    struct side a, b;
    xm_channel_t *ch = NULL;
    struct side *v[2] = { &a, &b };

    side_open(&a, 1);
    side_open(&b, 1);
    for (int k = 1; k <= 2; k++) {
        malloc_fail_in = k;   /* the handshake record, then its text buffer */
        assert_int_equal(xm_endpoint_connect(b.ep, xm_hv_domid(a.hv), xm_endpoint_id(a.ep),
                                         xm_endpoint_key(a.ep), &ch),
                         -ENOMEM);
        malloc_fail_in = 0;
    }
    pump(v, 2, 5);
    assert_int_equal(a.accepted, 0);
    /* and the next attempt works */
    connect_pair(&a, &b, NULL);
    side_close(&b);
    side_close(&a);
}

/* A reservation that needed a PAD and was never committed (a probe, or an
 * adapter that changed its mind) must not move the remote-completion mark
 * past what the peer can ever consume. */
static void test_uncommitted_pad(void **state)
{
    struct side a, b;
    xm_channel_t *ba;
    struct side *v[2] = { &a, &b };
    uint8_t buf[1500] = { 0 };
    uint32_t mark;
    int err;

    side_open(&a, 1);
    side_open(&b, 1);
    ba = connect_pair(&a, &b, NULL);
    /* 2 x 1512 bytes: 1072 left at the ring's tail */
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, buf, sizeof(buf)), 0);
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, buf, sizeof(buf)), 0);
    pump(v, 2, 2);
    assert_int_equal(a.nlog, 2);
    /* 1500 bytes do not fit at the tail: the reservation writes a PAD */
    assert_non_null(xm_chan_reserve(ba, sizeof(buf), &err));
    assert_int_equal(err, 0);
    mark = xm_chan_tx_mark(ba);   /* not committed: nothing new */
    for (int i = 0; i < 20 && !xm_chan_tx_reached(ba, mark); i++)
        pump(v, 2, 1);
    assert_true(xm_chan_tx_reached(ba, mark));
    assert_int_equal(xm_chan_inflight(ba), 0);
    /* the PAD goes out with the next record, which arrives intact */
    assert_int_equal(xm_chan_send(ba, 2, NULL, 0, "next", 4), 0);
    pump(v, 2, 2);
    assert_int_equal(a.nlog, 3);
    assert_int_equal(a.log[2].type, 2);
    assert_memory_equal(a.log[2].data, "next", 4);
    side_close(&b);
    side_close(&a);
}

/* xm_chan_want_space: a probe that neither writes nor publishes */
static void test_want_space(void **state)
{
    struct side a, b;
    xm_channel_t *ba;
    struct side *v[2] = { &a, &b };
    uint8_t buf[1500] = { 0 };
    xm_chan_stats_t st;

    side_open(&a, 1);
    side_open(&b, 1);
    ba = connect_pair(&a, &b, NULL);
    assert_int_equal(xm_chan_want_space(ba, sizeof(buf)), 0);
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, buf, sizeof(buf)), 0);
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, buf, sizeof(buf)), 0);
    assert_int_equal(xm_chan_want_space(ba, sizeof(buf)), 1);
    xm_chan_get_stats(ba, &st);
    assert_int_equal(st.msgs_sent, 2);
    assert_int_equal(xm_chan_tx_mark(ba), 2 * 1512);
    pump(v, 2, 2);
    assert_int_equal(xm_chan_want_space(ba, sizeof(buf)), 0);
    side_close(&b);
    side_close(&a);
}

/* The peer publishes its last records and dies between our load of its
 * producer index and our load of its live byte: those records still
 * arrive, then PEER_GONE. */
static struct {
    struct xm_ctrl_page *ctrl;
    uint8_t *ring;
    int fired;
} late;

static void seam_publish_and_die(xm_channel_t *ch, int point)
{
    struct xm_rec_hdr h = { .len = 5, .type = 7 };

    if (point != 1 || late.fired++)
        return;   /* once: the peer is dead after this */
    memcpy(late.ring, &h, sizeof(h));
    memcpy(late.ring + sizeof(h), "last!", 5);
    __atomic_store_n(&late.ctrl->prod, (uint32_t)XM_REC_SIZE(5), __ATOMIC_RELEASE);
    __atomic_store_n(&late.ctrl->live, 0, __ATOMIC_RELEASE);
}

static void test_peer_dies_after_publishing(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;
    struct side *v[1] = { &a };
    uint32_t size;

    side_open(&a, 1);
    side_open(&b, 1);
    ba = connect_pair(&a, &b, &ab);
    xm_chan_own_pages(ba, &late.ctrl, &late.ring, &size);
    __atomic_store_n(&late.ctrl->live, 0, __ATOMIC_RELEASE);   /* b "dies" ... */
    late.fired = 0;
    xm_test_seam = seam_publish_and_die;   /* ... right after a saw nothing new */
    for (int i = 0; i < 10 && !a.gone; i++)
        pump(v, 1, 1);
    xm_test_seam = NULL;
    assert_true(late.fired >= 1);
    assert_int_equal(a.nlog, 1);
    assert_int_equal(a.log[0].type, 7);
    assert_memory_equal(a.log[0].data, "last!", 5);
    assert_int_equal(a.gone, 1);
    assert_int_equal(xm_chan_state(ab), XM_CH_PEER_GONE);
    side_close(&b);
    side_close(&a);
}

/* A destroyed domain clears nothing (its pages stay mapped here, its live
 * byte set): the toolstack removing its store home must end the channel,
 * after what it had published is delivered. */
static void test_peer_domain_destroyed(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;
    struct side *v[1] = { &a };
    xm_hv_t *dom0;
    char home[64], *val = NULL;
    size_t len;

    side_open(&a, 1);
    side_open(&b, 1);
    ba = connect_pair(&a, &b, &ab);
    /* the presence node is there, readable by the peer */
    snprintf(home, sizeof(home), "/local/domain/%u/xenmpi/alive", xm_hv_domid(b.hv));
    assert_int_equal(xm_store_read(a.hv, home, &val, &len), 0);
    free(val);
    assert_int_equal(xm_chan_send(ba, 7, NULL, 0, "last!", 5), 0);
    pump(v, 1, 50);
    assert_int_equal(a.gone, 0);   /* a live peer that just went quiet */
    assert_int_equal(a.nlog, 1);
    assert_int_equal(xm_chan_send(ba, 7, NULL, 0, "more", 4), 0);
    /* dom0's toolstack removes the home of the (frozen) domain b */
    setenv("XENMPI_SIM_DOMID", "0", 1);
    assert_int_equal(xm_hv_open(&dom0), 0);
    unsetenv("XENMPI_SIM_DOMID");
    snprintf(home, sizeof(home), "/local/domain/%u", xm_hv_domid(b.hv));
    assert_int_equal(xm_store_remove(dom0, home), 0);
    for (int i = 0; i < 1000 && !a.gone; i++)
        pump(v, 1, 1);
    assert_int_equal(a.nlog, 2);   /* what it published came first */
    assert_memory_equal(a.log[1].data, "more", 4);
    assert_int_equal(a.gone, 1);
    assert_int_equal(xm_chan_state(ab), XM_CH_PEER_GONE);
    assert_int_equal(xm_chan_send(ab, 1, NULL, 0, "x", 1), -EPIPE);
    xm_hv_close(dom0);
    side_close(&b);
    side_close(&a);
}

/* A peer domain without a presence node (one that does not publish it):
 * its absence at the watch's first event concludes nothing. */
static void test_peer_without_presence_node(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;
    struct side *v[2] = { &a, &b };
    char home[64];

    side_open(&a, 1);
    side_open(&b, 1);
    snprintf(home, sizeof(home), "/local/domain/%u/xenmpi/alive", xm_hv_domid(b.hv));
    assert_int_equal(xm_store_remove(b.hv, home), 0);
    ba = connect_pair(&a, &b, &ab);
    pump(v, 2, 600);   /* past the slow path, which reads the watch */
    assert_int_equal(a.gone, 0);
    assert_int_equal(xm_chan_state(ab), XM_CH_CONNECTED);
    assert_int_equal(xm_chan_send(ba, 7, NULL, 0, "hi", 2), 0);
    pump(v, 2, 50);
    assert_int_equal(a.nlog, 1);
    side_close(&b);
    side_close(&a);
}

/* A peer that notifies again every time we unmask cannot hold progress. */
static struct side *flooder;
static unsigned flood_count;

static void seam_flood(xm_channel_t *ch, int point)
{
    if (point != 2)
        return;
    flood_count++;
    if (flood_count > 100000)
        fail_msg("the event drain did not stop");   /* the loop is unbounded */
    for (uint32_t port = 1; port < 64; port++)
        xm_hv_evt_notify(flooder->hv, port);   /* whichever is b's */
}

static void test_notify_flood_bounded(void **state)
{
    struct side a, b;
    xm_channel_t *ab, *ba;

    side_open(&a, 1);
    side_open(&b, 1);
    ba = connect_pair(&a, &b, &ab);
    flooder = &b;
    flood_count = 0;
    xm_hv_evt_notify(b.hv, 1);
    xm_test_seam = seam_flood;
    for (int i = 0; i < 3; i++)
        xm_endpoint_wait(a.ep, 0);   /* each returns */
    xm_test_seam = NULL;
    assert_true(flood_count > 0);
    /* each wait drains at most three times (progress, arm, progress) */
    assert_true(flood_count <= 3 * 3 * 64);
    /* the channel still works */
    assert_int_equal(xm_chan_send(ba, 1, NULL, 0, "ok", 2), 0);
    assert_int_equal(xm_chan_state(ab), XM_CH_CONNECTED);
    side_close(&b);
    side_close(&a);
}

/* Services: a range of record types goes to the service that claimed
 * it; a type nobody claimed is dropped and counted; bad claims refused. */
static unsigned svc_seen, svc_gone;
static uint16_t svc_type;
static void svc_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *d, size_t len)
{
    svc_seen++;
    svc_type = type;
}
static void svc_chan_gone(void *arg, xm_channel_t *ch) { svc_gone++; }

static void test_services(void **state)
{
    struct side a, b;
    xm_channel_t *ba;
    struct side *v[2] = { &a, &b };
    xm_service_t svc = { .first_type = 0x5000, .last_type = 0x5003, .recv = svc_recv,
                         .chan_gone = svc_chan_gone };

    side_open(&a, 1);
    side_open(&b, 1);
    assert_int_equal(xm_endpoint_add_service(a.ep, &svc), 0);
    xm_service_t bad = svc;
    assert_int_equal(xm_endpoint_add_service(a.ep, &bad), -EEXIST);
    bad.first_type = 0x0010; bad.last_type = 0x0200;   /* into the adapter range */
    assert_int_equal(xm_endpoint_add_service(a.ep, &bad), -EINVAL);
    bad.first_type = 0xfff0; bad.last_type = XM_REC_PAD;
    assert_int_equal(xm_endpoint_add_service(a.ep, &bad), -EINVAL);
    bad.first_type = 0x6001; bad.last_type = 0x6000;
    assert_int_equal(xm_endpoint_add_service(a.ep, &bad), -EINVAL);
    ba = connect_pair(&a, &b, NULL);
    svc_seen = svc_gone = 0;
    assert_int_equal(xm_chan_send(ba, 0x5002, NULL, 0, "s", 1), 0);
    assert_int_equal(xm_chan_send(ba, 0x5004, NULL, 0, "u", 1), 0);  /* unclaimed */
    assert_int_equal(xm_chan_send(ba, 0x00ff, NULL, 0, "a", 1), 0);  /* the adapter's */
    pump(v, 2, 2);
    assert_int_equal(svc_seen, 1);
    assert_int_equal(svc_type, 0x5002);
    assert_int_equal(a.nlog, 1);
    assert_int_equal(a.log[0].type, 0x00ff);
    assert_int_equal(xm_endpoint_unclaimed(a.ep), 1);
    side_close(&b);
    for (int i = 0; i < 100 && !a.gone; i++)
        pump(v, 1, 1);
    assert_int_equal(a.gone, 1);
    assert_int_equal(svc_gone, 1);   /* told before the channel's pages went */
    side_close(&a);
}

/* one loopback round: n messages each way, sequence numbers in the payload,
 * sizes up to a quarter ring so a 1-page ring wraps and fills */
static void loopback_round(struct side *a, xm_channel_t *out, xm_channel_t *back,
                           unsigned n, uint32_t *seq_out, uint32_t *seq_back)
{
    struct side *v[1] = { a };
    uint8_t buf[1024];
    unsigned sent_out = 0, sent_back = 0, got_out = 0, got_back = 0;

    a->nlog = 0;
    for (int spin = 0; spin < 10000 && (got_out < n || got_back < n); spin++) {
        while (sent_out < n || sent_back < n) {
            int back_turn = sent_back < n && (sent_out == n || (sent_out + sent_back) % 2);
            xm_channel_t *ch = back_turn ? back : out;
            uint32_t s = back_turn ? seq_back[0] + sent_back : seq_out[0] + sent_out;
            size_t len = 4 + (s * 37) % (sizeof(buf) - 4);
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)(s + i);
            memcpy(buf, &s, 4);
            int rc = xm_chan_send(ch, back_turn ? 3 : 2, NULL, 0, buf, len);
            if (rc == -EAGAIN)
                break;   /* ring full: let the receiver (ourselves) drain it */
            assert_int_equal(rc, 0);
            if (back_turn)
                sent_back++;
            else
                sent_out++;
        }
        a->nlog = 0;
        pump(v, 1, 1);
        assert_true(a->nlog <= MAXMSG);
        for (unsigned k = 0; k < a->nlog; k++) {
            struct msg *m = &a->log[k];
            uint32_t s;
            /* what was sent on one half arrives on the other, in order */
            int is_back = m->type == 3;
            assert_ptr_equal(m->ch, is_back ? out : back);
            assert_int_equal(m->type, is_back ? 3 : 2);
            memcpy(&s, m->data, 4);
            assert_int_equal(s, is_back ? seq_back[0] + got_back : seq_out[0] + got_out);
            assert_int_equal(m->len, 4 + (s * 37) % (sizeof(buf) - 4));
            for (size_t i = 4; i < m->len; i++)
                assert_int_equal(m->data[i], (uint8_t)(s + i));
            if (is_back)
                got_back++;
            else
                got_out++;
        }
    }
    assert_int_equal(got_out, n);
    assert_int_equal(got_back, n);
    seq_out[0] += n;
    seq_back[0] += n;
}

/* connect to ourselves; returns the initiator half, *acc the acceptor half */
static xm_channel_t *connect_self(struct side *a, xm_channel_t **acc)
{
    struct side *v[1] = { a };
    int accepted = a->accepted, connected = a->connected;
    xm_channel_t *ch;

    assert_int_equal(xm_endpoint_connect(a->ep, xm_hv_domid(a->hv), xm_endpoint_id(a->ep),
                                         xm_endpoint_key(a->ep), &ch), 0);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTING);
    for (int i = 0; i < 1000 && xm_chan_state(ch) == XM_CH_CONNECTING; i++)
        pump(v, 1, 1);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTED);
    assert_int_equal(a->accepted, accepted + 1);
    assert_int_equal(a->connected, connected + 1);
    *acc = a->accepted_ch;
    assert_non_null(*acc);
    assert_ptr_not_equal(*acc, ch);
    assert_int_equal(xm_chan_state(*acc), XM_CH_CONNECTED);
    assert_int_equal(xm_chan_peer_dom(*acc), xm_hv_domid(a->hv));
    assert_int_equal(xm_chan_peer_ep(*acc), xm_endpoint_id(a->ep));
    return ch;
}

/* An endpoint connected to itself (a UCT iface reaching its own address):
 * two channels of one endpoint with the same peer, each the other's peer. */
static void test_loopback(void **state)
{
    struct side a;
    struct side *v[1] = { &a };
    xm_channel_t *out, *back, *again;
    uint32_t seq_out = 0, seq_back = 1000000;

    side_open(&a, 1);
    out = connect_self(&a, &back);
    /* connecting again finds the half we initiated, every time */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(xm_endpoint_connect(a.ep, xm_hv_domid(a.hv), xm_endpoint_id(a.ep),
                                         xm_endpoint_key(a.ep),
                                             &again), 0);
        assert_ptr_equal(again, out);
    }
    loopback_round(&a, out, back, 200, &seq_out, &seq_back);
    /* the handshake nodes are gone */
    assert_no_nodes(&a, "req");

    /* closing the initiated half: the other half sees its peer gone, and a
     * connect made at once (no progress in between) gets a new pair */
    xm_chan_close(out);
    xm_channel_t *out2, *back2;
    assert_int_equal(xm_endpoint_connect(a.ep, xm_hv_domid(a.hv), xm_endpoint_id(a.ep),
                                         xm_endpoint_key(a.ep), &out2), 0);
    assert_int_equal(xm_chan_state(out2), XM_CH_CONNECTING);
    for (int i = 0; i < 1000 && xm_chan_state(out2) == XM_CH_CONNECTING; i++)
        pump(v, 1, 1);
    assert_int_equal(xm_chan_state(out2), XM_CH_CONNECTED);
    assert_int_equal(a.gone, 1);
    assert_ptr_equal(a.gone_ch, back);
    assert_int_equal(xm_chan_state(back), XM_CH_PEER_GONE);
    assert_int_equal(xm_chan_send(back, 1, NULL, 0, "x", 1), -EPIPE);
    back2 = a.accepted_ch;
    assert_ptr_not_equal(back2, back);
    assert_int_equal(xm_chan_state(back2), XM_CH_CONNECTED);
    xm_chan_close(back);
    loopback_round(&a, out2, back2, 50, &seq_out, &seq_back);

    /* closing the accepted half: the initiated half goes, and connecting
     * again starts over instead of returning the dead half */
    xm_chan_close(back2);
    for (int i = 0; i < 100 && a.gone < 2; i++)
        pump(v, 1, 1);
    assert_int_equal(a.gone, 2);
    assert_ptr_equal(a.gone_ch, out2);
    assert_int_equal(xm_chan_state(out2), XM_CH_PEER_GONE);
    xm_channel_t *out3, *back3;
    out3 = connect_self(&a, &back3);
    loopback_round(&a, out3, back3, 50, &seq_out, &seq_back);
    xm_chan_close(out2);
    /* the endpoint closes a live pair */
    side_close(&a);
}

/* Sends to a peer that has not answered yet go into our ring, which it
 * reads from the start once it maps it: nothing lost, in order, and not
 * complete (tx mark) until the peer processed them. */
static void test_send_while_connecting(void **state)
{
    struct side a, b;
    xm_channel_t *ch;
    struct side *v[2] = { &a, &b };
    uint8_t big[1500] = { 0 };
    uint32_t mark;
    int n = 0, rc;

    side_open(&a, 1);
    side_open(&b, 1);
    assert_int_equal(xm_endpoint_connect(b.ep, xm_hv_domid(a.hv), xm_endpoint_id(a.ep),
                                         xm_endpoint_key(a.ep), &ch), 0);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTING);
    assert_int_equal(xm_chan_send(ch, 1, NULL, 0, "first", 5), 0);
    assert_int_equal(xm_chan_send(ch, 2, NULL, 0, "second", 6), 0);
    mark = xm_chan_tx_mark(ch);
    assert_false(xm_chan_tx_reached(ch, mark));
    /* until the ring is full: then "try again", nothing written */
    while ((rc = xm_chan_send(ch, 3, NULL, 0, big, sizeof(big))) == 0)
        n++;
    assert_int_equal(rc, -EAGAIN);
    assert_int_equal(n, 2);   /* 4096 - 16 - 16 leaves room for two of 1508 */
    for (int i = 0; i < 1000 && !(xm_chan_state(ch) == XM_CH_CONNECTED && a.nlog == 4); i++)
        pump(v, 2, 1);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTED);
    assert_int_equal(a.nlog, 4);
    assert_int_equal(a.log[0].type, 1);
    assert_memory_equal(a.log[0].data, "first", 5);
    assert_int_equal(a.log[1].type, 2);
    assert_memory_equal(a.log[1].data, "second", 6);
    assert_int_equal(a.log[2].type, 3);
    assert_int_equal(a.log[3].type, 3);
    assert_true(xm_chan_tx_reached(ch, mark));
    assert_int_equal(xm_chan_send(ch, 4, NULL, 0, "after", 5), 0);
    pump(v, 2, 2);
    assert_int_equal(a.nlog, 5);
    side_close(&b);
    side_close(&a);
}

/* more than 256 endpoints of one process at once: every id distinct
 * (they named each other's store directories once the count wrapped),
 * and a closed endpoint's id is free again */
static void test_many_endpoints(void **state)
{
    enum { N = 300 };
    xm_ep_params_t p = { .ring_pages = 1, .recv_cb = on_recv, .event_cb = on_event };
    static xm_endpoint_t *eps[N];
    xm_hv_t *hv;
    uint32_t id;

    assert_int_equal(xm_hv_open(&hv), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(xm_endpoint_open(hv, &p, &eps[i]), 0);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(xm_endpoint_id(eps[i]), xm_endpoint_id(eps[j]));
    }
    id = xm_endpoint_id(eps[7]);
    xm_endpoint_close(eps[7]);
    assert_int_equal(xm_endpoint_open(hv, &p, &eps[7]), 0);
    assert_int_equal(xm_endpoint_id(eps[7]), id);
    for (int i = 0; i < N; i++)
        xm_endpoint_close(eps[i]);
    xm_hv_close(hv);
}

/* a child process in domain 29500 that opens an endpoint, reports its id
 * on fd and waits to be killed */
static pid_t ep_child(int *id_out)
{
    int fds[2];
    pid_t pid;
    uint32_t id = 0;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
        xm_ep_params_t p = { .ring_pages = 1, .recv_cb = on_recv, .event_cb = on_event };
        xm_endpoint_t *ep;
        xm_hv_t *hv;

        close(fds[0]);
        if (xm_hv_open(&hv) || xm_endpoint_open(hv, &p, &ep))
            _exit(1);
        id = xm_endpoint_id(ep);
        if (write(fds[1], &id, sizeof(id)) != sizeof(id))
            _exit(1);
        pause();
        _exit(0);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &id, sizeof(id)), sizeof(id));
    close(fds[0]);
    *id_out = (int)id;
    return pid;
}

/* A process killed without closing its endpoint left its store nodes: the
 * next endpoint opened in the domain removes them, and only them. */
static void test_killed_process_nodes_removed(void **state)
{
    xm_ep_params_t p = { .ring_pages = 1, .recv_cb = on_recv, .event_cb = on_event };
    xm_endpoint_t *ep;
    xm_hv_t *hv;
    char path[128], *val = NULL;
    int dead, live;
    pid_t pd, pl;

    setenv("XENMPI_SIM_DOMID", "29500", 1);
    pd = ep_child(&dead);
    pl = ep_child(&live);
    kill(pd, SIGKILL);
    assert_int_equal(waitpid(pd, NULL, 0), pd);
    snprintf(path, sizeof(path), "/local/domain/29500/xenmpi/ep%u/req", (unsigned)dead);
    assert_int_equal(xm_hv_open(&hv), 0);
    unsetenv("XENMPI_SIM_DOMID");
    assert_int_equal(xm_store_read(hv, path, &val, NULL), 0);   /* left behind */
    free(val);
    int rc_open = xm_endpoint_open(hv, &p, &ep);
    int rc_req = xm_store_read(hv, path, &val, NULL);
    snprintf(path, sizeof(path), "/local/domain/29500/xenmpi/ep%u", (unsigned)dead);
    int rc_dir = xm_store_read(hv, path, &val, NULL);
    snprintf(path, sizeof(path), "/local/domain/29500/xenmpi/ep%u/req", (unsigned)live);
    int rc_live = xm_store_read(hv, path, &val, NULL);
    free(val);
    kill(pl, SIGKILL);   /* before any assertion: it holds our stdout */
    waitpid(pl, NULL, 0);
    assert_int_equal(rc_open, 0);
    assert_int_equal(rc_req, -ENOENT);
    assert_int_equal(rc_dir, -ENOENT);
    assert_int_equal(rc_live, 0);   /* a live one stays */
    xm_endpoint_close(ep);
    xm_hv_close(hv);
}

/* addresses: the endpoint's own, and a peer on another host refused
 * before any handshake starts */
static void test_addresses(void **state)
{
    struct side a, b;
    struct side *v[2] = { &a, &b };
    xm_ep_addr_t aa, ba, other;
    xm_channel_t *ch = NULL;

    side_open(&a, 1);
    side_open(&b, 1);
    assert_int_equal(xm_endpoint_addr(a.ep, &aa), 0);
    assert_int_equal(xm_endpoint_addr(b.ep, &ba), 0);
    assert_int_equal(aa.domid, xm_hv_domid(a.hv));
    assert_int_equal(aa.ep, xm_endpoint_id(a.ep));
    assert_true(aa.host_hash == ba.host_hash);   /* one sim host */
    assert_true(xm_ep_addr_reachable(&ba, &aa));
    other = aa;
    other.host_hash ^= 1;
    assert_false(xm_ep_addr_reachable(&ba, &other));
    assert_int_equal(xm_endpoint_connect_addr(b.ep, &other, &ch), -EHOSTUNREACH);
    assert_null(ch);
    pump(v, 2, 5);
    assert_int_equal(a.accepted, 0);
    assert_int_equal(xm_endpoint_connect_addr(b.ep, &aa, &ch), 0);
    for (int i = 0; i < 1000 && xm_chan_state(ch) == XM_CH_CONNECTING; i++)
        pump(v, 2, 1);
    assert_int_equal(xm_chan_state(ch), XM_CH_CONNECTED);
    /* the hash is of the host identity */
    setenv("XENMPI_HOST_ID", "another-host", 1);
    assert_int_equal(xm_endpoint_addr(b.ep, &ba), 0);
    unsetenv("XENMPI_HOST_ID");
    assert_true(ba.host_hash == xm_fnv1a64("another-host", strlen("another-host")));
    side_close(&b);
    side_close(&a);
}

static void test_handshake_parser(void **state)
{
    xm_hs_rec_t r, back;
    char buf[XM_HS_MAX_LEN + 1];
    const char *good = "v=2 dom=3 ep=77 key=0123456789abcdef ctrl=9 port=5 pages=2 refs=10,11";

    assert_int_equal(xm_hs_parse(good, strlen(good), &r), 0);
    assert_int_equal(r.domid, 3);
    assert_int_equal(r.ep, 77);
    assert_true(r.key == 0x0123456789abcdefull);
    assert_int_equal(r.ctrl_ref, 9);
    assert_int_equal(r.port, 5);
    assert_int_equal(r.pages, 2);
    assert_int_equal(r.refs[1], 11);
    int n = xm_hs_format(&r, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(good));
    assert_memory_equal(buf, good, (size_t)n);
    assert_int_equal(xm_hs_parse(buf, (size_t)n, &back), 0);
    assert_memory_equal(&r, &back, sizeof(r));

#define K " key=0000000000000001"
    static const char *const bad[] = {
        "",
        "v=1 dom=3 ep=77" K " ctrl=9 port=5 pages=2 refs=10,11",   /* version */
        "v=1 dom=3 ep=77 ctrl=9 port=5 pages=2 refs=10,11",        /* version 1, no key */
        "v=2 dom=3 ep=77 ctrl=9 port=5 pages=2 refs=10,11",        /* no key */
        "v=2 dom=3 ep=77 key=123456789abcdef ctrl=9 port=5 pages=1 refs=1",   /* 15 digits */
        "v=2 dom=3 ep=77 key=0123456789abcdef0 ctrl=9 port=5 pages=1 refs=1", /* 17 */
        "v=2 dom=3 ep=77 key=0123456789ABCDEF ctrl=9 port=5 pages=1 refs=1",  /* case */
        "v=2 dom=3 ep=77 key=0x23456789abcdef ctrl=9 port=5 pages=1 refs=1",
        "v=2 dom=3 key=0000000000000001 ep=77 ctrl=9 port=5 pages=1 refs=1",  /* order */
        "v=2 dom=3 ep=77" K " ctrl=9 port=5 pages=3 refs=10,11,12", /* not a power of 2 */
        "v=2 dom=3 ep=77" K " ctrl=9 port=5 pages=0 refs=",
        "v=2 dom=3 ep=77" K " ctrl=9 port=5 pages=512 refs=1",      /* too many */
        "v=2 dom=3 ep=77" K " ctrl=9 port=5 pages=2 refs=10",       /* too few refs */
        "v=2 dom=3 ep=77" K " ctrl=9 port=5 pages=2 refs=10,11,12", /* trailing */
        "v=2 dom=99999999999 ep=77" K " ctrl=9 port=5 pages=1 refs=1", /* overflow */
        "v=2 dom=-3 ep=77" K " ctrl=9 port=5 pages=1 refs=1",
        "v=2 ep=77 dom=3" K " ctrl=9 port=5 pages=1 refs=1",        /* order */
        "v=2 dom=3 ep=77" K " ctrl=9 port=5 pages=1 refs=1junk",
        "v=2  dom=3 ep=77" K " ctrl=9 port=5 pages=1 refs=1",
    };
#undef K
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(xm_hs_parse(bad[i], strlen(bad[i]), &r), -EINVAL);
    /* a truncated record never parses (dropping only the last digit leaves a
     * valid record with ref 1, so stop before that) */
    for (size_t k = 0; k < strlen(good) - 1; k++)
        assert_int_equal(xm_hs_parse(good, k, &r), -EINVAL);
    /* too long */
    assert_int_equal(xm_hs_parse(good, XM_HS_MAX_LEN + 1, &r), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_both_directions),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_bad_ring_size),
        cmocka_unit_test(test_wrap_full_and_batched_release),
        cmocka_unit_test(test_notify_only_when_armed),
        cmocka_unit_test(test_space_wakeup),
        cmocka_unit_test(test_hostile_prod),
        cmocka_unit_test(test_hostile_len),
        cmocka_unit_test(test_hostile_pad),
        cmocka_unit_test(test_hostile_cons),
        cmocka_unit_test(test_hostile_flags),
        cmocka_unit_test(test_hostile_rewriter),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_hostile_handshake),
        cmocka_unit_test(test_impersonated_request),
        cmocka_unit_test(test_request_garbage),
        cmocka_unit_test(test_request_name_flood),
        cmocka_unit_test(test_domain_channel_cap),
        cmocka_unit_test(test_remote_completion),
        cmocka_unit_test(test_peer_close_is_seen),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_handshake_parser),
        cmocka_unit_test(test_connect_nomem),
        cmocka_unit_test(test_uncommitted_pad),
        cmocka_unit_test(test_want_space),
        cmocka_unit_test(test_peer_dies_after_publishing),
        cmocka_unit_test(test_peer_domain_destroyed),
        cmocka_unit_test(test_peer_without_presence_node),
        cmocka_unit_test(test_notify_flood_bounded),
        cmocka_unit_test(test_services),
        cmocka_unit_test(test_send_while_connecting),
        cmocka_unit_test(test_listener_refuses),
        cmocka_unit_test(test_ring_fallback),
        cmocka_unit_test(test_killed_process_nodes_removed),
        cmocka_unit_test(test_many_endpoints),
        cmocka_unit_test(test_addresses),
    };
    return cmocka_run_group_tests_name("channel", tests, setup, teardown);
}
