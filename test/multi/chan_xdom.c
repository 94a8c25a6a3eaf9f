/*
 * chan_xdom - the channel between two domains, end to end.
 *
 *   chan_xdom sim <test> [count]        fork both roles as two sim domains
 *   chan_xdom a <peer domid> <test> [count]   listener (run in one VM)
 *   chan_xdom b <peer domid> <test> [count]   connector (run in the other)
 *
 * tests: stream (polling), block (event-driven, both sides sleep), kill
 * (b's streaming child is killed with SIGKILL; a must see the peer gone and
 * free everything).  Role a publishes its endpoint id in its store home,
 * readable by the peer; b reads it there, so the same code runs on Xen.
 * Exit 0 when every check passed.  Timing is asserted only when
 * XM_ASSERT_TIME=1 (the sim run), never under emulated Xen.
 */
#include "xm_channel.h"
#include "xm_hv.h"
#include "simpair.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T_DATA 1
#define T_DONE 2
#define T_ACK 3

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL: " __VA_ARGS__); printf("\n"); } } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* message i: size and content are functions of i, so the receiver checks
 * order, size and every byte */
static size_t msg_size(uint64_t i, size_t max)
{
    static const size_t sizes[] = { 0, 1, 7, 8, 64, 100, 512, 1500, 4096, 8000, 16384, 30000 };
    size_t s = sizes[(i * 7 + (i >> 3)) % (sizeof(sizes) / sizeof(sizes[0]))];
    return s + sizeof(uint64_t) > max ? max - sizeof(uint64_t) : s;
}

static void fill(uint8_t *p, size_t n, uint64_t i)
{
    for (size_t k = 0; k < n; k++)
        p[k] = (uint8_t)(i * 131 + k * 7 + (k >> 8));
}

struct rx_state {
    uint64_t next, bad;
    int done, acked, gone, accepted;
    xm_channel_t *ch;
};

static void on_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct rx_state *rs = arg;
    uint8_t expect[32768];
    uint64_t seq;

    rs->ch = ch;
    if (type == T_DONE) {
        rs->done = 1;
        return;
    }
    if (type == T_ACK) {
        rs->acked = 1;
        return;
    }
    if (len < sizeof(seq)) {
        rs->bad++;
        return;
    }
    memcpy(&seq, data, sizeof(seq));
    size_t n = len - sizeof(seq);
    fill(expect, n, seq);
    if (seq != rs->next || n != msg_size(seq, 1u << 30) || memcmp(expect, (const uint8_t *)data + 8, n)) {
        if (rs->bad++ < 5)
            printf("bad message: seq %llu (expected %llu) len %zu\n", (unsigned long long)seq,
                   (unsigned long long)rs->next, n);
    }
    rs->next = seq + 1;
}

static void on_event(void *arg, xm_channel_t *ch, enum xm_chan_event ev)
{
    struct rx_state *rs = arg;
    if (ev == XM_EV_ACCEPTED) {
        rs->accepted = 1;
        rs->ch = ch;
    }
    if (ev == XM_EV_PEER_GONE || ev == XM_EV_FAILED)
        rs->gone = 1;
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int open_ep(xm_hv_t **hv, xm_endpoint_t **ep, struct rx_state *rs)
{
    xm_ep_params_t p = { .recv_cb = on_recv, .event_cb = on_event, .cb_arg = rs };
    int rc = xm_hv_open(hv);
    if (rc) {
        printf("FAIL: xm_hv_open: %s\n", strerror(-rc));
        return rc;
    }
    rc = xm_endpoint_open(*hv, &p, ep);
    if (rc)
        printf("FAIL: xm_endpoint_open: %s\n", strerror(-rc));
    return rc;
}

static int pump(xm_endpoint_t *ep, int blocking)
{
    return blocking ? xm_endpoint_wait(ep, 100) : xm_endpoint_progress(ep);
}

/* listener: publish our endpoint id, receive, check */
static int role_a(uint32_t peer, const char *test, uint64_t count)
{
    struct rx_state rs = { 0 };
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    char path[128], val[32];
    int blocking = !strcmp(test, "block"), kill_test = !strcmp(test, "kill");
    int fds_before = count_fds();

    if (open_ep(&hv, &ep, &rs))
        return 1;
    /* readable by every domain: b may be any process of the peer VM */
    xm_store_perm_t perms[1] = { { xm_hv_domid(hv), XM_PERM_READ } };
    (void)peer;
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi-test/ep-%s", xm_hv_domid(hv), test);
    /* the endpoint and its key: what the MPI launcher's exchange gives */
    snprintf(val, sizeof(val), "%u %016llx", xm_endpoint_id(ep),
             (unsigned long long)xm_endpoint_key(ep));
    if (xm_store_write(hv, path, val, strlen(val)) || xm_store_set_perms(hv, path, perms, 1)) {
        printf("FAIL: publishing endpoint id at %s\n", path);
        return 1;
    }
    printf("a: domain %u endpoint %s waiting (%s)\n", xm_hv_domid(hv), val, test);
    fflush(stdout);
    double t0 = now(), deadline = t0 + 600;
    while (!rs.done && !rs.gone && now() < deadline)
        pump(ep, blocking);
    double t_gone = now();
    if (kill_test) {
        CHECK(rs.gone, "a: peer death not reported");
        CHECK(rs.next > 0, "a: nothing received before the kill");
        printf("a: peer gone reported after %llu messages\n", (unsigned long long)rs.next);
    } else {
        CHECK(rs.done, "a: no DONE from b");
        CHECK(rs.next == count, "a: received %llu of %llu", (unsigned long long)rs.next,
              (unsigned long long)count);
        if (rs.ch)
            while (xm_chan_send(rs.ch, T_ACK, NULL, 0, NULL, 0) == -EAGAIN)
                pump(ep, 0);
        /* wait for b to go away: its close must reach us as PEER_GONE */
        deadline = now() + 600;
        while (!rs.gone && now() < deadline)
            pump(ep, blocking);
        CHECK(rs.gone, "a: orderly close of b not seen");
    }
    CHECK(rs.bad == 0, "a: %llu bad messages", (unsigned long long)rs.bad);
    (void)t_gone;
    xm_store_remove(hv, path);
    xm_endpoint_close(ep);
    xm_hv_close(hv);
    CHECK(count_fds() == fds_before, "a: %d fds before, %d after", fds_before, count_fds());
    printf("a: %s %s (%.2f s)\n", test, failures ? "FAILED" : "passed", now() - t0);
    return failures ? 1 : 0;
}

static uint32_t lookup_ep(xm_hv_t *hv, uint32_t peer, const char *test, uint64_t *key)
{
    char path[128], *v = NULL;
    for (int i = 0; i < 6000; i++) {
        snprintf(path, sizeof(path), "/local/domain/%u/xenmpi-test/ep-%s", peer, test);
        if (xm_store_read(hv, path, &v, NULL) == 0) {
            unsigned long long k = 0;
            unsigned id = 0;

            if (sscanf(v, "%u %llx", &id, &k) != 2)
                id = 0;
            free(v);
            *key = k;
            return id;
        }
        usleep(100000);
    }
    return 0;
}

/* connector: stream count messages, then DONE, wait for ACK */
static int sender(uint32_t peer, const char *test, uint64_t count, int notify_fd)
{
    struct rx_state rs = { 0 };
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    xm_channel_t *ch;
    int blocking = !strcmp(test, "block");
    uint8_t buf[32768];

    if (open_ep(&hv, &ep, &rs))
        return 1;
    uint64_t key = 0;
    uint32_t pep = lookup_ep(hv, peer, test, &key);
    if (!pep) {
        printf("FAIL: b: domain %u never published its endpoint\n", peer);
        return 1;
    }
    int rc = xm_endpoint_connect(ep, peer, pep, key, &ch);
    if (rc) {
        printf("FAIL: b: connect: %s\n", strerror(-rc));
        return 1;
    }
    double t0 = now();
    while (xm_chan_state(ch) == XM_CH_CONNECTING && now() - t0 < 600)
        pump(ep, blocking);
    if (xm_chan_state(ch) != XM_CH_CONNECTED) {
        printf("FAIL: b: channel state %d\n", xm_chan_state(ch));
        return 1;
    }
    size_t max = xm_endpoint_max_msg(ep);
    for (uint64_t i = 0; i < count; i++) {
        size_t n = msg_size(i, max);
        fill(buf, n, i);
        while ((rc = xm_chan_send(ch, T_DATA, &i, sizeof(i), buf, n)) == -EAGAIN)
            pump(ep, blocking);
        if (rc) {
            printf("FAIL: b: send %llu: %s\n", (unsigned long long)i, strerror(-rc));
            return 1;
        }
        if (notify_fd >= 0 && i == 1000) {
            if (write(notify_fd, "s", 1) != 1)
                return 1;
        }
    }
    while ((rc = xm_chan_send(ch, T_DONE, NULL, 0, NULL, 0)) == -EAGAIN)
        pump(ep, blocking);
    while (!rs.acked && !rs.gone && now() - t0 < 900)
        pump(ep, blocking);
    CHECK(rs.acked, "b: no ACK");
    xm_chan_stats_t st;
    xm_chan_get_stats(ch, &st);
    printf("b: sent %llu msgs, %llu notifies, ring full %llu times, %.2f s\n",
           (unsigned long long)st.msgs_sent, (unsigned long long)st.notifies_sent,
           (unsigned long long)st.ring_full, now() - t0);
    xm_endpoint_close(ep);
    xm_hv_close(hv);
    return failures ? 1 : 0;
}

static int role_b(uint32_t peer, const char *test, uint64_t count)
{
    if (strcmp(test, "kill"))
        return sender(peer, test, count, -1);
    /* the streaming process is a child we kill mid-stream */
    int pfd[2];
    if (pipe(pfd))
        return 1;
    pid_t c = fork();
    if (c == 0) {
        close(pfd[0]);
        _exit(sender(peer, "kill", UINT64_MAX, pfd[1]));
    }
    close(pfd[1]);
    char x;
    if (read(pfd[0], &x, 1) != 1) {
        printf("FAIL: b: streaming child died before streaming\n");
        return 1;
    }
    kill(c, SIGKILL);
    int st;
    waitpid(c, &st, 0);
    printf("b: streaming child killed\n");
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : 1;
}

struct sim_args {
    const char *test;
    uint64_t count;
};

static int sim_role(int is_b, uint32_t peer, void *arg)
{
    const struct sim_args *a = arg;
    return is_b ? role_b(peer, a->test, a->count) : role_a(0, a->test, a->count);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "sim")) {
        struct sim_args sa = { argv[2], argc > 3 ? strtoull(argv[3], NULL, 0) : 1000000 };
        struct simpair r;
        double t0 = now();
        if (simpair_run("chan", sim_role, &sa, &r))
            return 1;
        int ok = r.ok;
        if (!strcmp(sa.test, "kill")) {
            printf("peer gone seen %.2f s after the kill\n", r.a_end - r.b_end);
            if (getenv("XM_ASSERT_TIME") && r.a_end - r.b_end > 2.0) {
                printf("FAIL: peer death took more than 2 s to report\n");
                ok = 0;
            }
        }
        printf("%s: %s (%.2f s)\n", sa.test, ok ? "PASS" : "FAIL", now() - t0);
        return ok ? 0 : 1;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: chan_xdom sim <test> [count] | chan_xdom a|b <peer domid> <test> [count]\n"
                        "tests: stream block kill\n");
        return 2;
    }
    uint32_t peer = (uint32_t)strtoul(argv[2], NULL, 10);
    uint64_t count = argc > 4 ? strtoull(argv[4], NULL, 0) : 1000000;
    if (!strcmp(argv[1], "a"))
        return role_a(peer, argv[3], count);
    return role_b(peer, argv[3], count);
}
