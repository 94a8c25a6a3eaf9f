/*
 * chan_bench - channel latency and bandwidth between two domains, beside a
 * pipe and a plain memcpy on the same machine.  Medians of repetitions.
 *
 *   chan_bench [reps]        (two sim domains, forked here)
 *   chan_bench peers N [reps]  8-byte ping-pong latency with 1 and with 1+N
 *                            connected peers (N idle), to show polling cost
 *
 * One-way latency = half the median round trip of a ping-pong;
 * bandwidth = bytes / time of a one-way stream with a final ack.
 */
#include "xm_channel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T_PING 1
#define T_DATA 2
#define T_ACK 3

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const size_t lat_sizes[] = { 8, 64, 512, 4096 };
static const size_t bw_sizes[] = { 4096, 65536, 1 << 20, 4 << 20 };
#define NLAT (sizeof(lat_sizes) / sizeof(lat_sizes[0]))
#define NBW (sizeof(bw_sizes) / sizeof(bw_sizes[0]))
#define LAT_ITERS 20000
#define BW_BYTES (256u << 20)

struct st {
    uint64_t got, bytes;
    int acks;
    xm_channel_t *ch;
};

/* an endpoint's address, as the two processes exchange it */
struct who {
    uint32_t dom, ep;
    uint64_t key;
};

static struct who who_of(xm_hv_t *hv, xm_endpoint_t *ep)
{
    struct who w = { xm_hv_domid(hv), xm_endpoint_id(ep), xm_endpoint_key(ep) };
    return w;
}

static void on_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *d, size_t len)
{
    struct st *s = arg;
    s->ch = ch;
    if (type == T_ACK)
        s->acks++;
    else {
        s->got++;
        s->bytes += len;
    }
}

static void on_event(void *arg, xm_channel_t *ch, enum xm_chan_event ev)
{
    struct st *s = arg;
    if (ev == XM_EV_ACCEPTED || ev == XM_EV_CONNECTED)
        s->ch = ch;
}

static void send_all(xm_endpoint_t *ep, xm_channel_t *ch, uint16_t type, const void *buf, size_t len)
{
    size_t max = xm_endpoint_max_msg(ep), off = 0;
    do {
        size_t n = len - off < max ? len - off : max;
        int rc;
        while ((rc = xm_chan_send(ch, type, NULL, 0, (const char *)buf + off, n)) == -EAGAIN)
            xm_endpoint_progress(ep);
        if (rc) {
            fprintf(stderr, "send: %s\n", strerror(-rc));
            exit(1);
        }
        off += n;
    } while (off < len);
}

/* both roles run the same schedule; the client measures */
static void run_role(int client, uint32_t peer_dom, uint32_t peer_ep, int to_fd, int from_fd,
                     int reps, FILE *out)
{
    struct st s = { 0 };
    xm_ep_params_t p = { .recv_cb = on_recv, .event_cb = on_event, .cb_arg = &s };
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    static char buf[4 << 20];
    struct who me;

    if (xm_hv_open(&hv) || xm_endpoint_open(hv, &p, &ep))
        exit(1);
    me = who_of(hv, ep);
    if (write(to_fd, &me, sizeof(me)) != sizeof(me) || read(from_fd, &me, sizeof(me)) != sizeof(me))
        exit(1);
    if (client) {
        if (xm_endpoint_connect(ep, me.dom, me.ep, me.key, &s.ch))
            exit(1);
        while (xm_chan_state(s.ch) == XM_CH_CONNECTING)
            xm_endpoint_progress(ep);
    } else
        while (!s.ch)
            xm_endpoint_progress(ep);
    (void)peer_dom;
    (void)peer_ep;

    for (unsigned k = 0; k < NLAT; k++) {
        double rep_med[64];
        for (int r = 0; r < reps; r++) {
            static double rtt[LAT_ITERS];
            for (int i = 0; i < LAT_ITERS; i++) {
                double t0 = now();
                if (client) {
                    uint64_t want = s.got + 1;
                    send_all(ep, s.ch, T_PING, buf, lat_sizes[k]);
                    while (s.got < want)
                        xm_endpoint_progress(ep);
                } else {
                    uint64_t want = s.got + 1;
                    while (s.got < want)
                        xm_endpoint_progress(ep);
                    send_all(ep, s.ch, T_PING, buf, lat_sizes[k]);
                }
                rtt[i] = now() - t0;
            }
            rep_med[r] = median(rtt, LAT_ITERS);
        }
        if (client)
            fprintf(out, "lat %zu %.3f\n", lat_sizes[k], median(rep_med, reps) / 2 * 1e6);
    }
    for (unsigned k = 0; k < NBW; k++) {
        double bw[64];
        size_t n = bw_sizes[k];
        uint64_t count = BW_BYTES / n;
        for (int r = 0; r < reps; r++) {
            if (client) {
                int acks = s.acks;
                double t0 = now();
                for (uint64_t i = 0; i < count; i++)
                    send_all(ep, s.ch, T_DATA, buf, n);
                while (s.acks == acks)
                    xm_endpoint_progress(ep);
                bw[r] = (double)count * n / (now() - t0) / 1e6;
            } else {
                uint64_t want = s.bytes + count * n;
                while (s.bytes < want)
                    xm_endpoint_progress(ep);
                send_all(ep, s.ch, T_ACK, buf, 0);
            }
        }
        if (client)
            fprintf(out, "bw %zu %.0f\n", n, median(bw, reps));
    }
    xm_endpoint_close(ep);
    xm_hv_close(hv);
}

/* the same ping-pong and stream through a pair of pipes */
static void pipe_bench(int reps, FILE *out)
{
    int ab[2], ba[2];
    static char buf[4 << 20];
    if (pipe(ab) || pipe(ba))
        exit(1);
    pid_t c = fork();
    if (c == 0) {
        close(ab[1]);
        close(ba[0]);
        for (;;) {
            size_t hdr[2];
            if (read(ab[0], hdr, sizeof(hdr)) != sizeof(hdr))
                _exit(0);
            size_t left = hdr[0] * hdr[1];
            while (left) {
                ssize_t r = read(ab[0], buf, left < sizeof(buf) ? left : sizeof(buf));
                if (r <= 0)
                    _exit(1);
                left -= (size_t)r;
                if (hdr[0] == 1 && left == 0)
                    break;
            }
            if (write(ba[1], "k", 1) != 1)
                _exit(1);
        }
    }
    for (unsigned k = 0; k < NLAT; k++) {
        double rep_med[64];
        static double rtt[LAT_ITERS];
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < LAT_ITERS; i++) {
                size_t hdr[2] = { 1, lat_sizes[k] };
                double t0 = now();
                char x;
                if (write(ab[1], hdr, sizeof(hdr)) < 0 || write(ab[1], buf, lat_sizes[k]) < 0 ||
                    read(ba[0], &x, 1) != 1)
                    exit(1);
                rtt[i] = now() - t0;
            }
            rep_med[r] = median(rtt, LAT_ITERS);
        }
        fprintf(out, "pipelat %zu %.3f\n", lat_sizes[k], median(rep_med, reps) / 2 * 1e6);
    }
    for (unsigned k = 0; k < NBW; k++) {
        double bw[64];
        size_t n = bw_sizes[k], count = BW_BYTES / n;
        for (int r = 0; r < reps; r++) {
            size_t hdr[2] = { count, n };
            double t0 = now();
            char x;
            if (write(ab[1], hdr, sizeof(hdr)) < 0)
                exit(1);
            for (size_t i = 0; i < count; i++)
                for (size_t off = 0; off < n;) {
                    ssize_t w = write(ab[1], buf + off, n - off);
                    if (w <= 0)
                        exit(1);
                    off += (size_t)w;
                }
            if (read(ba[0], &x, 1) != 1)
                exit(1);
            bw[r] = (double)count * n / (now() - t0) / 1e6;
        }
        fprintf(out, "pipebw %zu %.0f\n", n, median(bw, reps));
    }
    close(ab[1]);
    waitpid(c, NULL, 0);
}

static void memcpy_bench(int reps, FILE *out)
{
    static char src[4 << 20], dst[4 << 20];
    memset(src, 1, sizeof(src));
    for (unsigned k = 0; k < NBW; k++) {
        double bw[64];
        size_t n = bw_sizes[k], count = BW_BYTES / n;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            for (size_t i = 0; i < count; i++) {
                memcpy(dst, src, n);
                __asm__ volatile("" ::"r"(dst) : "memory");
            }
            bw[r] = (double)count * n / (now() - t0) / 1e6;
        }
        fprintf(out, "memcpybw %zu %.0f\n", n, median(bw, reps));
    }
}

/* ---- polling cost with idle peers ---- */

static void serve_forever(int addr_fd)
{
    struct st s = { 0 };
    xm_ep_params_t p = { .recv_cb = on_recv, .event_cb = on_event, .cb_arg = &s };
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    struct who me;
    uint64_t answered = 0;

    if (xm_hv_open(&hv) || xm_endpoint_open(hv, &p, &ep))
        _exit(1);
    me = who_of(hv, ep);
    if (write(addr_fd, &me, sizeof(me)) != sizeof(me))
        _exit(1);
    for (;;) {
        xm_endpoint_progress(ep);
        if (s.got > answered) {   /* reply on the channel the ping came in on */
            answered = s.got;
            send_all(ep, s.ch, T_PING, "pongpong", 8);
        }
    }
}

static double ping_median(xm_endpoint_t *ep, struct st *s, int reps)
{
    double rep_med[64];
    static double rtt[LAT_ITERS];
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < LAT_ITERS; i++) {
            uint64_t want = s->got + 1;
            double t0 = now();
            send_all(ep, s->ch, T_PING, "pingping", 8);
            while (s->got < want)
                xm_endpoint_progress(ep);
            rtt[i] = now() - t0;
        }
        rep_med[r] = median(rtt, LAT_ITERS);
    }
    return median(rep_med, reps) / 2 * 1e6;
}

static int connect_to(const struct who *addr, xm_hv_t **hv, xm_endpoint_t **ep, struct st *s)
{
    xm_ep_params_t p = { .recv_cb = on_recv, .event_cb = on_event, .cb_arg = s };
    xm_channel_t *ch;
    if (xm_hv_open(hv) || xm_endpoint_open(*hv, &p, ep) ||
        xm_endpoint_connect(*ep, addr->dom, addr->ep, addr->key, &ch))
        return -1;
    while (xm_chan_state(ch) == XM_CH_CONNECTING)
        xm_endpoint_progress(*ep);
    s->ch = ch;
    return xm_chan_state(ch) == XM_CH_CONNECTED ? 0 : -1;
}

static int peers_bench(int npeers, int reps)
{
    int ap[2], done[2], hold[2];
    struct who addr;
    struct st s = { 0 };
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    pid_t srv, idle[256];

    if (npeers < 1 || npeers > 256 || pipe(ap) || pipe(done) || pipe(hold))
        return 1;
    if ((srv = fork()) == 0) {
        close(hold[1]);   /* the idle peers wait for the parent's end only */
        serve_forever(ap[1]);
    }
    if (read(ap[0], &addr, sizeof(addr)) != sizeof(addr) || connect_to(&addr, &hv, &ep, &s))
        return 1;
    double one = ping_median(ep, &s, reps);
    for (int i = 0; i < npeers; i++) {
        if ((idle[i] = fork()) == 0) {
            struct st is = { 0 };
            xm_hv_t *ihv;
            xm_endpoint_t *iep;
            char x;
            close(hold[1]);
            if (connect_to(&addr, &ihv, &iep, &is) || write(done[1], "c", 1) != 1)
                _exit(1);
            if (read(hold[0], &x, 1) < 0)   /* idle until the parent is done */
                _exit(1);
            _exit(0);
        }
        char x;
        if (read(done[0], &x, 1) != 1)
            return 1;
    }
    close(hold[0]);
    double many = ping_median(ep, &s, reps);
    close(hold[1]);
    for (int i = 0; i < npeers; i++)
        waitpid(idle[i], NULL, 0);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    printf("8-byte one-way latency, median of %d runs, server polling all its channels:\n", reps);
    printf("  1 connected peer:              %.3f us\n", one);
    printf("  1 busy + %d idle peers:        %.3f us\n", npeers, many);
    printf("  ratio:                         %.2fx (target <= 1.2)\n", many / one);
    xm_endpoint_close(ep);
    xm_hv_close(hv);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "peers")) {
        char host[64], cmd[128];
        snprintf(host, sizeof(host), "bench-peers-%d", (int)getpid());
        setenv("XENMPI_BACKEND", "sim", 1);
        setenv("XENMPI_SIM_HOST", host, 1);
        int rc = peers_bench(argc > 2 ? atoi(argv[2]) : 32, argc > 3 ? atoi(argv[3]) : 5);
        snprintf(cmd, sizeof(cmd), "rm -rf /dev/shm/xenmpi-sim-%s", host);
        return system(cmd) || rc;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    char host[64], line[128];
    int p1[2], p2[2];
    FILE *res = tmpfile();

    if (reps < 1 || reps > 64)
        reps = 5;
    snprintf(host, sizeof(host), "bench-%d", (int)getpid());
    setenv("XENMPI_BACKEND", "sim", 1);
    setenv("XENMPI_SIM_HOST", host, 1);
    if (pipe(p1) || pipe(p2) || !res)
        return 1;
    pid_t srv = fork();
    if (srv == 0) {
        run_role(0, 0, 0, p1[1], p2[0], reps, NULL);
        _exit(0);
    }
    run_role(1, 0, 0, p2[1], p1[0], reps, res);
    waitpid(srv, NULL, 0);
    snprintf(line, sizeof(line), "rm -rf /dev/shm/xenmpi-sim-%s", host);
    if (system(line))
        return 1;
    pipe_bench(reps, res);
    memcpy_bench(reps, res);

    /* table */
    double lat[2][NLAT] = { { 0 } }, bw[3][NBW] = { { 0 } };
    rewind(res);
    while (fgets(line, sizeof(line), res)) {
        char k[16];
        size_t sz;
        double v;
        if (sscanf(line, "%15s %zu %lf", k, &sz, &v) != 3)
            continue;
        for (unsigned i = 0; i < NLAT; i++)
            if (sz == lat_sizes[i]) {
                if (!strcmp(k, "lat")) lat[0][i] = v;
                if (!strcmp(k, "pipelat")) lat[1][i] = v;
            }
        for (unsigned i = 0; i < NBW; i++)
            if (sz == bw_sizes[i]) {
                if (!strcmp(k, "bw")) bw[0][i] = v;
                if (!strcmp(k, "pipebw")) bw[1][i] = v;
                if (!strcmp(k, "memcpybw")) bw[2][i] = v;
            }
    }
    printf("xenmpi channel between two sim domains (median of %d runs)\n\n", reps);
    printf("one-way latency (us)  %10s %10s %8s\n", "channel", "pipe", "ratio");
    for (unsigned i = 0; i < NLAT; i++)
        printf("  %8zu B           %10.2f %10.2f %7.2fx\n", lat_sizes[i], lat[0][i], lat[1][i],
               lat[0][i] > 0 ? lat[1][i] / lat[0][i] : 0);
    printf("\nstreaming bandwidth (MB/s) %9s %10s %10s\n", "channel", "pipe", "memcpy");
    for (unsigned i = 0; i < NBW; i++)
        printf("  %8zu B           %10.0f %10.0f %10.0f\n", bw_sizes[i], bw[0][i], bw[1][i], bw[2][i]);
    return 0;
}
