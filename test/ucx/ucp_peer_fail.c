/*
 * ucp_peer_fail.c - UCP over the xen transport: peer failure and several
 * interfaces in one process.  Run with LD_PRELOAD=libuct_xen.so and
 * UCX_TLS=xen,self (test/ucx/run-ucx-tests.sh does).
 *
 *   ucp_peer_fail kill         two processes stream tagged messages with
 *                              error mode PEER; the sender is killed with
 *                              SIGKILL; the survivor's error callback must
 *                              fire within 10 s, and its worker must still
 *                              send and receive (through self) and close
 *                              the failed endpoint.
 *   ucp_peer_fail two-workers  two workers in one process (two xen ifaces)
 *                              exchange messages both ways.
 *   ucp_peer_fail loopback     one worker sends tagged messages of 0 B to
 *                              4 MiB to itself (every byte checked, a burst
 *                              in order) and puts and gets its own memory:
 *                              with UCX_TLS=xen alone the iface reaches
 *                              itself.
 *   ucp_peer_fail refused-peer  the peer's domain cannot accept a channel
 *   ucp_peer_fail refused-none  (its grant table is full): with error mode
 *                              PEER the error callback fires within 10 s;
 *                              with NONE, the MPIs' default, the sending
 *                              process aborts within 10 s instead of
 *                              waiting for its connect timeout.
 *
 * Prints "ok: ..." lines and exits 0 on success; "FAIL: ..." and 1 if not.
 */
#include <ucp/api/ucp.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE  4096
#define TAG       0x42
#define FAIL_TMO  10.0   /* seconds the survivor may take to see the death */

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define DIE(...) do { printf("FAIL: " __VA_ARGS__); printf("\n"); exit(1); } while (0)

typedef struct {
    ucp_context_h ctx;
    ucp_worker_h  worker;
    ucp_address_t *addr;
    size_t        addr_len;
} node_t;

static volatile int err_seen;
static ucs_status_t err_status;

static void err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    err_seen   = 1;
    err_status = status;
}

static void node_init_features(node_t *n, uint64_t features)
{
    ucp_params_t p = {
        .field_mask = UCP_PARAM_FIELD_FEATURES,
        .features   = features
    };
    ucp_worker_params_t wp = {
        .field_mask  = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE
    };

    if (ucp_init(&p, NULL, &n->ctx) != UCS_OK ||
        ucp_worker_create(n->ctx, &wp, &n->worker) != UCS_OK ||
        ucp_worker_get_address(n->worker, &n->addr, &n->addr_len) != UCS_OK) {
        DIE("UCP init");
    }
}

static void node_init(node_t *n)
{
    node_init_features(n, UCP_FEATURE_TAG);
}

static ucp_ep_h ep_create(node_t *n, const ucp_address_t *peer, int err_mode)
{
    ucp_ep_params_t p = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
        .address    = peer,
        .err_mode   = err_mode ? UCP_ERR_HANDLING_MODE_PEER :
                                 UCP_ERR_HANDLING_MODE_NONE
    };
    ucp_ep_h ep;

    if (err_mode) {
        p.field_mask      |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
        p.err_handler.cb  = err_cb;
        p.err_handler.arg = NULL;
    }
    if (ucp_ep_create(n->worker, &p, &ep) != UCS_OK) {
        DIE("ucp_ep_create");
    }
    return ep;
}

/* Wait for a request on any number of workers; bounded. */
static ucs_status_t wait_req(void *req, ucp_worker_h *w, int nw, double tmo)
{
    double end = now() + tmo;
    ucs_status_t st;

    if (req == NULL) {
        return UCS_OK;
    }
    if (UCS_PTR_IS_ERR(req)) {
        return UCS_PTR_STATUS(req);
    }
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        for (int i = 0; i < nw; ++i) {
            ucp_worker_progress(w[i]);
        }
        if (now() > end) {
            ucp_request_cancel(w[0], req);
            return UCS_ERR_TIMED_OUT;
        }
    }
    ucp_request_free(req);
    return st;
}

static void *send_msg(ucp_ep_h ep, const void *buf, size_t len)
{
    ucp_request_param_t p = { .op_attr_mask = 0 };

    return ucp_tag_send_nbx(ep, buf, len, TAG, &p);
}

static void *recv_msg(ucp_worker_h w, void *buf, size_t len)
{
    ucp_request_param_t p = { .op_attr_mask = 0 };

    return ucp_tag_recv_nbx(w, buf, len, TAG, (ucp_tag_t)-1, &p);
}

static void write_all(int fd, const void *b, size_t n)
{
    if (write(fd, &n, sizeof(n)) != sizeof(n) || write(fd, b, n) != (ssize_t)n) {
        DIE("pipe write: %s", strerror(errno));
    }
}

static void *read_all(int fd)
{
    size_t n, got = 0;
    char *b;
    ssize_t r;

    if (read(fd, &n, sizeof(n)) != sizeof(n) || n > (1 << 20)) {
        DIE("pipe read");
    }
    b = malloc(n);
    while (got < n && (r = read(fd, b + got, n - got)) > 0) {
        got += r;
    }
    if (got != n) {
        DIE("pipe read: short");
    }
    return b;
}

/* The victim: connect back and send until killed. */
static void victim(int rfd, int wfd)
{
    static char buf[MSG_SIZE];
    node_t n;
    ucp_ep_h ep;
    void *peer;

    node_init(&n);
    write_all(wfd, n.addr, n.addr_len);
    peer = read_all(rfd);
    ep   = ep_create(&n, peer, 1);
    for (unsigned i = 0;; ++i) {
        memcpy(buf, &i, sizeof(i));
        if (wait_req(send_msg(ep, buf, sizeof(buf)), &n.worker, 1, 60) != UCS_OK) {
            _exit(3);
        }
    }
}

/* fork a peer process running fn(read fd, write fd): pipes both ways;
 * *rfd reads from it, *wfd writes to it */
static pid_t spawn_peer(void (*fn)(int rfd, int wfd), int *rfd, int *wfd)
{
    int to_child[2], from_child[2];
    pid_t pid;

    if (pipe(to_child) || pipe(from_child)) {
        DIE("pipe");
    }
    pid = fork();
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        fn(to_child[0], from_child[1]);
        _exit(0);
    }
    close(to_child[0]);
    close(from_child[1]);
    *rfd = from_child[0];
    *wfd = to_child[1];
    return pid;
}

static int test_kill(void)
{
    static char buf[MSG_SIZE];
    int from_fd, to_fd;
    node_t n;
    ucp_ep_h ep, self_ep;
    void *peer, *req, *sreq;
    ucs_status_t st;
    pid_t pid;
    double t0, t_err;
    unsigned got = 0, expect = 0;

    pid = spawn_peer(victim, &from_fd, &to_fd);

    node_init(&n);
    peer = read_all(from_fd);
    write_all(to_fd, n.addr, n.addr_len);
    ep = ep_create(&n, peer, 1);

    /* stream until 500 messages arrived in order, then kill the sender */
    while (got < 500) {
        st = wait_req(recv_msg(n.worker, buf, sizeof(buf)), &n.worker, 1, 20);
        if (st != UCS_OK) {
            DIE("receive %u: %s", got, ucs_status_string(st));
        }
        unsigned seq;
        memcpy(&seq, buf, sizeof(seq));
        if (seq != expect) {
            DIE("message %u carries sequence %u", expect, seq);
        }
        ++expect;
        ++got;
    }
    printf("ok: received %u messages, killing pid %d\n", got, (int)pid);
    fflush(stdout);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    t0 = now();

    /* keep a receive posted, as an application would, and progress */
    req = recv_msg(n.worker, buf, sizeof(buf));
    while (!err_seen && now() - t0 < FAIL_TMO) {
        ucp_worker_progress(n.worker);
        if (req != NULL && !UCS_PTR_IS_ERR(req) &&
            ucp_request_check_status(req) != UCS_INPROGRESS) {
            ucp_request_free(req);   /* a message sent before the kill */
            req = recv_msg(n.worker, buf, sizeof(buf));
        }
    }
    t_err = now() - t0;
    if (!err_seen) {
        DIE("no error callback within %.0f s of the peer's death", FAIL_TMO);
    }
    if (err_status != UCS_ERR_CONNECTION_RESET &&
        err_status != UCS_ERR_ENDPOINT_TIMEOUT) {
        DIE("error callback with %s", ucs_status_string(err_status));
    }
    printf("ok: error callback after %.3f s: %s\n", t_err,
           ucs_status_string(err_status));

    /* a send on the failed ep fails, it does not hang */
    st = wait_req(send_msg(ep, buf, 8), &n.worker, 1, 5);
    if (st == UCS_OK || st == UCS_ERR_TIMED_OUT) {
        DIE("send on the failed endpoint: %s", ucs_status_string(st));
    }
    printf("ok: send on the failed endpoint: %s\n", ucs_status_string(st));

    /* the worker still works: the posted receive matches a message to self */
    self_ep = ep_create(&n, n.addr, 0);
    memset(buf, 0, sizeof(buf));
    strcpy(buf + 64, "still alive");
    static char out[MSG_SIZE];
    memset(out, 0, sizeof(out));
    strcpy(out + 64, "still alive");
    sreq = send_msg(self_ep, out, sizeof(out));
    st   = wait_req(req, &n.worker, 1, 5);
    if (st != UCS_OK || strcmp(buf + 64, "still alive") ||
        wait_req(sreq, &n.worker, 1, 5) != UCS_OK) {
        DIE("loopback after the failure: %s", ucs_status_string(st));
    }
    printf("ok: worker still sends and receives\n");

    /* closing the failed ep completes */
    ucp_request_param_t cp = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags        = UCP_EP_CLOSE_FLAG_FORCE
    };
    st = wait_req(ucp_ep_close_nbx(ep, &cp), &n.worker, 1, 5);
    if (st != UCS_OK && st != UCS_ERR_CONNECTION_RESET &&
        st != UCS_ERR_ENDPOINT_TIMEOUT) {
        DIE("closing the failed endpoint: %s", ucs_status_string(st));
    }
    st = wait_req(ucp_ep_close_nbx(self_ep, &cp), &n.worker, 1, 5);
    printf("ok: endpoints closed\n");
    ucp_worker_release_address(n.worker, n.addr);
    ucp_worker_destroy(n.worker);
    ucp_cleanup(n.ctx);
    free(peer);
    return 0;
}

static int test_two_workers(void)
{
    static char a_buf[MSG_SIZE], b_buf[MSG_SIZE];
    node_t a, b;
    ucp_worker_h both[2];
    ucp_ep_h ab, ba;
    ucs_status_t st;

    node_init(&a);
    node_init(&b);
    both[0] = a.worker;
    both[1] = b.worker;
    ab = ep_create(&a, b.addr, 0);
    ba = ep_create(&b, a.addr, 0);
    for (unsigned i = 0; i < 1000; ++i) {
        void *r1, *s1;

        snprintf(a_buf, sizeof(a_buf), "a->b %u", i);
        r1 = recv_msg(b.worker, b_buf, sizeof(b_buf));
        s1 = send_msg(ab, a_buf, (i % 2) ? sizeof(a_buf) : 64);
        if ((st = wait_req(s1, both, 2, 10)) != UCS_OK ||
            (st = wait_req(r1, both, 2, 10)) != UCS_OK || strcmp(a_buf, b_buf)) {
            DIE("a->b message %u: %s", i, ucs_status_string(st));
        }
        snprintf(b_buf, sizeof(b_buf), "b->a %u", i);
        r1 = recv_msg(a.worker, a_buf, sizeof(a_buf));
        s1 = send_msg(ba, b_buf, 64);
        if (wait_req(s1, both, 2, 10) != UCS_OK ||
            wait_req(r1, both, 2, 10) != UCS_OK || strcmp(a_buf, b_buf)) {
            DIE("b->a message %u", i);
        }
    }
    printf("ok: 1000 round trips between two workers of one process\n");
    ucp_request_param_t cp = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags        = UCP_EP_CLOSE_FLAG_FORCE
    };
    wait_req(ucp_ep_close_nbx(ab, &cp), both, 2, 5);
    wait_req(ucp_ep_close_nbx(ba, &cp), both, 2, 5);
    ucp_worker_release_address(a.worker, a.addr);
    ucp_worker_release_address(b.worker, b.addr);
    ucp_worker_destroy(a.worker);
    ucp_worker_destroy(b.worker);
    ucp_cleanup(a.ctx);
    ucp_cleanup(b.ctx);
    return 0;
}

/* pattern byte i of message seq */
static unsigned char pat(unsigned seq, size_t i)
{
    return (unsigned char)((i * 131u) + (i >> 12) + seq * 7u + 1u);
}

static void fill(unsigned char *b, size_t len, unsigned seq)
{
    for (size_t i = 0; i < len; ++i) {
        b[i] = pat(seq, i);
    }
}

/* the first wrong byte, or len when all are right */
static size_t check(const unsigned char *b, size_t len, unsigned seq)
{
    for (size_t i = 0; i < len; ++i) {
        if (b[i] != pat(seq, i)) {
            return i;
        }
    }
    return len;
}

/* a tag receive that reports its length: UCX 1.13 fills recv_info on no
 * immediate completion, so there is always a request to test */
typedef struct {
    void                *req;
    ucp_tag_recv_info_t info;
} recv_t;

static void recv_start(recv_t *r, ucp_worker_h w, void *buf, size_t len)
{
    ucp_request_param_t p = {
        .op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL
    };

    r->info.length = (size_t)-1;
    r->req = ucp_tag_recv_nbx(w, buf, len, TAG, (ucp_tag_t)-1, &p);
}

static ucs_status_t recv_wait(recv_t *r, ucp_worker_h w, size_t *len)
{
    double end = now() + 20;
    ucs_status_t st = UCS_OK;

    if (UCS_PTR_IS_ERR(r->req)) {
        return UCS_PTR_STATUS(r->req);
    }
    if (r->req == NULL) {
        return UCS_ERR_NO_MESSAGE;   /* not asked for: never a request-less completion */
    }
    while ((st = ucp_tag_recv_request_test(r->req, &r->info)) == UCS_INPROGRESS) {
        ucp_worker_progress(w);
        if (now() > end) {
            ucp_request_cancel(w, r->req);
            return UCS_ERR_TIMED_OUT;
        }
    }
    ucp_request_free(r->req);
    *len = r->info.length;
    return st;
}

static int test_loopback(void)
{
    static const size_t sizes[] = {
        0, 1, 7, 8, 63, 64, 4095, 4096, 8193, 65536 + 3, 262144,
        1048576 + 5, 4194304
    };
    enum { BURST = 200, BURST_LEN = 1000, RMA_LEN = 200000 };
    size_t max = sizes[sizeof(sizes) / sizeof(sizes[0]) - 1];
    unsigned char *out = malloc(max), *in = malloc(max);
    node_t n;
    ucp_ep_h ep;
    ucs_status_t st;
    unsigned seq = 0;
    size_t len, bad;

    if (out == NULL || in == NULL) {
        DIE("malloc");
    }
    node_init_features(&n, UCP_FEATURE_TAG | UCP_FEATURE_RMA);
    ep = ep_create(&n, n.addr, 0);

    /* every size twice (the second time through the channel already up),
     * receive posted first and posted after the send (unexpected) */
    for (unsigned round = 0; round < 2; ++round) {
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); ++k, ++seq) {
            size_t sz = sizes[k];
            recv_t r;
            void *s;

            fill(out, sz, seq);
            memset(in, 0, sz);
            if (round == 0) {
                recv_start(&r, n.worker, in, max);
                s = send_msg(ep, out, sz);
            } else {
                s = send_msg(ep, out, sz);
                ucp_worker_progress(n.worker);
                recv_start(&r, n.worker, in, max);
            }
            len = (size_t)-1;
            if ((st = recv_wait(&r, n.worker, &len)) != UCS_OK ||
                (st = wait_req(s, &n.worker, 1, 20)) != UCS_OK) {
                DIE("message %u of %zu bytes to self: %s", seq, sz,
                    ucs_status_string(st));
            }
            if (len != sz) {
                DIE("message %u of %zu bytes to self arrived with %zu", seq, sz,
                    len);
            }
            if ((bad = check(in, sz, seq)) != sz) {
                DIE("message %u of %zu bytes to self: byte %zu is %#x, not %#x",
                    seq, sz, bad, in[bad], pat(seq, bad));
            }
        }
    }
    printf("ok: %u tagged messages of 0 B to %zu B to self, every byte right\n",
           seq, max);

    /* a burst of sends before any receive: they match in the order sent */
    static unsigned char burst[BURST][BURST_LEN];
    void *sreq[BURST];
    for (unsigned i = 0; i < BURST; ++i) {
        fill(burst[i], BURST_LEN, seq + i);
        sreq[i] = send_msg(ep, burst[i], BURST_LEN);
    }
    for (unsigned i = 0; i < BURST; ++i) {
        recv_t r;

        memset(in, 0, BURST_LEN);
        recv_start(&r, n.worker, in, max);
        if ((st = recv_wait(&r, n.worker, &len)) != UCS_OK ||
            len != BURST_LEN) {
            DIE("burst message %u: %s, %zu bytes", i, ucs_status_string(st), len);
        }
        if ((bad = check(in, BURST_LEN, seq + i)) != BURST_LEN) {
            DIE("burst message %u: byte %zu wrong (out of order?)", i, bad);
        }
    }
    for (unsigned i = 0; i < BURST; ++i) {
        if ((st = wait_req(sreq[i], &n.worker, 1, 20)) != UCS_OK) {
            DIE("burst send %u: %s", i, ucs_status_string(st));
        }
    }
    seq += BURST;
    printf("ok: %u messages sent before any receive matched in order\n", BURST);

    /* RMA on our own memory: the owner and the requester are one iface */
    ucp_mem_map_params_t mp = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS |
                      UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS,
        .address    = NULL,
        .length     = RMA_LEN,
        .flags      = UCP_MEM_MAP_ALLOCATE
    };
    ucp_mem_attr_t ma = { .field_mask = UCP_MEM_ATTR_FIELD_ADDRESS };
    ucp_mem_h memh;
    ucp_rkey_h rkey;
    void *rkey_buf;
    size_t rkey_len;
    ucp_request_param_t rp = { .op_attr_mask = 0 };
    if (ucp_mem_map(n.ctx, &mp, &memh) != UCS_OK ||
        ucp_mem_query(memh, &ma) != UCS_OK ||
        ucp_rkey_pack(n.ctx, memh, &rkey_buf, &rkey_len) != UCS_OK ||
        ucp_ep_rkey_unpack(ep, rkey_buf, &rkey) != UCS_OK) {
        DIE("registering memory for RMA to self");
    }
    unsigned char *win = ma.address;
    uint64_t raddr = (uint64_t)(uintptr_t)win;
    static const size_t rma_sizes[] = { 8, 4096, 5000, RMA_LEN };
    for (size_t k = 0; k < sizeof(rma_sizes) / sizeof(rma_sizes[0]); ++k, ++seq) {
        size_t sz = rma_sizes[k], off = (RMA_LEN - sz) / 3;

        memset(win, 0, RMA_LEN);
        fill(out, sz, seq);
        st = wait_req(ucp_put_nbx(ep, out, sz, raddr + off, rkey, &rp), &n.worker, 1, 20);
        if (st == UCS_OK) {
            st = wait_req(ucp_ep_flush_nbx(ep, &rp), &n.worker, 1, 20);
        }
        if (st != UCS_OK) {
            DIE("put of %zu bytes to self: %s", sz, ucs_status_string(st));
        }
        if ((bad = check(win + off, sz, seq)) != sz) {
            DIE("put of %zu bytes to self: byte %zu wrong", sz, bad);
        }
        for (size_t i = 0; i < off; ++i) {
            if (win[i] != 0) {
                DIE("put of %zu bytes at %zu wrote byte %zu before it", sz, off, i);
            }
        }
        memset(in, 0, sz);
        st = wait_req(ucp_get_nbx(ep, in, sz, raddr + off, rkey, &rp), &n.worker, 1, 20);
        if (st == UCS_OK) {
            st = wait_req(ucp_ep_flush_nbx(ep, &rp), &n.worker, 1, 20);
        }
        if (st != UCS_OK) {
            DIE("get of %zu bytes from self: %s", sz, ucs_status_string(st));
        }
        if ((bad = check(in, sz, seq)) != sz) {
            DIE("get of %zu bytes from self: byte %zu wrong", sz, bad);
        }
    }
    printf("ok: put and get of 8 B to %u B on our own memory, every byte right\n",
           (unsigned)RMA_LEN);

    ucp_rkey_destroy(rkey);
    ucp_rkey_buffer_release(rkey_buf);
    ucp_mem_unmap(n.ctx, memh);
    ucp_request_param_t cp = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags        = UCP_EP_CLOSE_FLAG_FORCE
    };
    wait_req(ucp_ep_close_nbx(ep, &cp), &n.worker, 1, 5);
    printf("ok: endpoint closed\n");
    ucp_worker_release_address(n.worker, n.addr);
    ucp_worker_destroy(n.worker);
    ucp_cleanup(n.ctx);
    free(out);
    free(in);
    return 0;
}

/* The refusing peer: its domain's grant table holds no channel, so it
 * refuses every connection; it progresses until the parent closes the pipe. */
static void refuser(int rfd, int wfd)
{
    node_t n;
    char c;

    setenv("XENMPI_SIM_DOMID", "29001", 1);
    setenv("XENMPI_SIM_GNTTAB_SIZE", "2", 1);   /* before the domain exists */
    node_init(&n);
    write_all(wfd, n.addr, n.addr_len);
    fcntl(rfd, F_SETFL, O_NONBLOCK);
    for (double end = now() + 60; now() < end && read(rfd, &c, 1) < 0;) {
        ucp_worker_progress(n.worker);
    }
    _exit(0);
}

/* A peer that refuses the channel (its grant table is full): with error
 * mode PEER the error callback fires, with NONE (the MPIs' default) the
 * process aborts, both within FAIL_TMO, long before the connect timeout. */
static int test_refused(int err_mode)
{
    static char buf[64];
    int from_fd, to_fd, status;
    node_t n;
    ucp_ep_h ep;
    void *peer, *req;
    pid_t pid, sender;
    double t0;

    pid = spawn_peer(refuser, &from_fd, &to_fd);
    peer = read_all(from_fd);
    t0   = now();
    if (err_mode) {
        node_init(&n);
        ep  = ep_create(&n, peer, 1);
        req = send_msg(ep, buf, sizeof(buf));
        while (!err_seen && now() - t0 < FAIL_TMO) {
            ucp_worker_progress(n.worker);
        }
        if (!err_seen) {
            DIE("no error callback within %.0f s of connecting to a refusing peer", FAIL_TMO);
        }
        if (err_status != UCS_ERR_ENDPOINT_TIMEOUT) {
            DIE("error callback with %s", ucs_status_string(err_status));
        }
        printf("ok: error callback after %.3f s: %s\n", now() - t0,
               ucs_status_string(err_status));
        wait_req(req, &n.worker, 1, 5);   /* buffered before the failure: either way */
        /* a send on the failed ep fails, it does not hang */
        ucs_status_t st = wait_req(send_msg(ep, buf, sizeof(buf)), &n.worker, 1, 5);
        if (st == UCS_OK || st == UCS_ERR_TIMED_OUT) {
            DIE("a send on the failed endpoint: %s", ucs_status_string(st));
        }
        printf("ok: a send on the failed endpoint: %s\n", ucs_status_string(st));
    } else {
        /* the sender in a process of its own: it must die, not wait */
        sender = fork();
        if (sender == 0) {
            node_init(&n);
            ep  = ep_create(&n, peer, 0);
            req = send_msg(ep, buf, sizeof(buf));
            while (now() - t0 < FAIL_TMO) {
                ucp_worker_progress(n.worker);
            }
            _exit(3);
        }
        while (waitpid(sender, &status, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
            DIE("the sender still ran %.0f s after connecting to a refusing peer", FAIL_TMO);
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            DIE("the sender exited 0");
        }
        printf("ok: the sender ended after %.3f s (%s %d)\n", now() - t0,
               WIFSIGNALED(status) ? "signal" : "exit",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
    close(to_fd);
    waitpid(pid, NULL, 0);
    free(peer);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && !strcmp(argv[1], "kill")) {
        return test_kill();
    }
    if (argc == 2 && !strcmp(argv[1], "two-workers")) {
        return test_two_workers();
    }
    if (argc == 2 && !strcmp(argv[1], "loopback")) {
        return test_loopback();
    }
    if (argc == 2 && !strcmp(argv[1], "refused-peer")) {
        return test_refused(1);
    }
    if (argc == 2 && !strcmp(argv[1], "refused-none")) {
        return test_refused(0);
    }
    fprintf(stderr, "usage: %s kill|two-workers|loopback|refused-peer|refused-none\n", argv[0]);
    return 2;
}
