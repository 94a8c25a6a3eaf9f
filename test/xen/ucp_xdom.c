/*
 * ucp_xdom - UCP between two Xen domUs over UCX_TLS=xen,self.
 *
 *   ucp_xdom a|b <peer domid> [pingpongs]
 *   ucp_xdom loop
 *
 * Worker addresses are exchanged through xenstore (each side publishes its
 * own under its home, readable by everyone).  Then, with content checks on
 * every message:
 *   1. polling tag ping-pong: after a warm-up, <pingpongs> (default 10^5)
 *      round trips must make ZERO calls that reach /dev/xen or xenstored;
 *   2. bandwidth: 1 MiB messages a -> b, by grant copy (b copies half of
 *      each, a pushes the other half into b's buffer); then the same from
 *      an mmap'ed buffer that a unmaps and maps again at the same address
 *      with other data: b must get the new data, not the old pinned pages;
 *   3. blocking ping-pong (ucp_worker_arm + poll on the worker's fd): each
 *      side's event notifications must not exceed the other side's sleeps.
 * "loop": one worker sends tagged messages of 0 B to 4 MiB to itself over
 * UCX_TLS=xen alone (the transport's loopback channel pair, granted to and
 * mapped from its own domain), every byte checked.
 * Exit 0 when every check passed.  Times are printed, never asserted.
 */
#include "xm_channel.h"
#include "xm_hv.h"
#include "xm_zc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucp/api/ucp.h>
#include <unistd.h>
#include <xenstore.h>

#define TAG_PING 1
#define TAG_BW 2
#define TAG_CTL 3
#define BW_SIZE (1u << 20)
#define BW_COUNT 32
#define BLOCK_ITERS 500
#define REUSE_SENDS 4

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL: " __VA_ARGS__); printf("\n"); } } while (0)

static ucp_worker_h worker;
static int worker_fd;
static int blocking;
static uint64_t wakeups;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void progress_once(void)
{
    if (ucp_worker_progress(worker) || !blocking)
        return;
    /* the worker's fd: arm, and sleep only when nothing is there; a wakeup
     * is a return from a real sleep */
    if (ucp_worker_arm(worker) != UCS_OK)
        return;
    struct pollfd pfd = { .fd = worker_fd, .events = POLLIN };
    if (poll(&pfd, 1, -1) == 1)
        wakeups++;
}

static ucs_status_t wait_req(void *req)
{
    if (req == NULL)
        return UCS_OK;
    if (UCS_PTR_IS_ERR(req))
        return UCS_PTR_STATUS(req);
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS)
        progress_once();
    ucp_request_free(req);
    return st;
}

static ucs_status_t send_msg(ucp_ep_h ep, const void *buf, size_t len, ucp_tag_t tag)
{
    ucp_request_param_t p = { 0 };
    return wait_req(ucp_tag_send_nbx(ep, buf, len, tag, &p));
}

static ucs_status_t recv_msg(void *buf, size_t len, ucp_tag_t tag)
{
    ucp_request_param_t p = { 0 };
    return wait_req(ucp_tag_recv_nbx(worker, buf, len, tag, (ucp_tag_t)-1, &p));
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 9));
}

static char *xs_wait_read(struct xs_handle *xs, const char *path)
{
    unsigned len;
    for (int i = 0; i < 3000; i++) {
        char *v = xs_read(xs, XBT_NULL, path, &len);
        if (v)
            return v;
        usleep(100000);
    }
    return NULL;
}

/* tagged messages to ourselves, every byte checked */
static int loopback(void)
{
    static const size_t sizes[] = { 0, 8, 4096, 65536 + 3, 1u << 20, 4u << 20 };
    uint8_t *out = malloc(4u << 20), *in = malloc(4u << 20);
    ucp_context_h ctx;
    ucp_params_t cp = { .field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG };
    ucp_worker_params_t wp = { .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                               .thread_mode = UCS_THREAD_MODE_SINGLE };
    ucp_address_t *addr;
    size_t alen;
    ucp_ep_h ep;

    setenv("UCX_TLS", "xen", 0);
    if (!out || !in || ucp_init(&cp, NULL, &ctx) != UCS_OK ||
        ucp_worker_create(ctx, &wp, &worker) != UCS_OK ||
        ucp_worker_get_address(worker, &addr, &alen) != UCS_OK) {
        printf("FAIL: UCP init over UCX_TLS=%s\n", getenv("UCX_TLS"));
        return 1;
    }
    ucp_ep_params_t ep_params = { .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS,
                                  .address = addr };
    if (ucp_ep_create(worker, &ep_params, &ep) != UCS_OK) {
        printf("FAIL: an endpoint to our own worker over UCX_TLS=%s\n", getenv("UCX_TLS"));
        return 1;
    }
    double t0 = now();
    for (unsigned round = 0; round < 3; round++)
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            size_t n = sizes[k];
            ucp_request_param_t p = { 0 };
            fill(out, n, round * 100 + k);
            memset(in, 0xa5, n);
            void *r = ucp_tag_recv_nbx(worker, in, n, TAG_PING, (ucp_tag_t)-1, &p);
            ucs_status_t ss = wait_req(ucp_tag_send_nbx(ep, out, n, TAG_PING, &p));
            ucs_status_t rs = wait_req(r);
            CHECK(ss == UCS_OK && rs == UCS_OK, "loopback message of %zu bytes: send %s, receive %s",
                  n, ucs_status_string(ss), ucs_status_string(rs));
            CHECK(!memcmp(in, out, n), "loopback message of %zu bytes: wrong data", n);
        }
    printf("ok: loopback: %zu messages of 0 B to 4 MiB to ourselves in %.3f s\n",
           3 * sizeof(sizes) / sizeof(sizes[0]), now() - t0);
    ucp_request_param_t cl = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                               .flags = UCP_EP_CLOSE_FLAG_FORCE };
    wait_req(ucp_ep_close_nbx(ep, &cl));
    ucp_worker_release_address(worker, addr);
    ucp_worker_destroy(worker);
    ucp_cleanup(ctx);
    free(out);
    free(in);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && !strcmp(argv[1], "loop"))
        return loopback();
    if (argc < 3) {
        fprintf(stderr, "usage: ucp_xdom a|b <peer domid> [pingpongs] | ucp_xdom loop\n");
        return 2;
    }
    int is_a = !strcmp(argv[1], "a");
    unsigned peer = (unsigned)atoi(argv[2]);
    long iters = argc > 3 ? atol(argv[3]) : 100000;
    setenv("UCX_TLS", "xen,self", 0);
    /* the 1 MiB phase must go by grant copy: every rendezvous, and grant
     * copy rather than the ring whatever the channel measures */
    setenv("UCX_XEN_ZCOPY_MIN", "0", 0);
    setenv("UCX_XEN_ZCOPY", "y", 0);

    ucp_config_t *cfg;
    ucp_context_h ctx;
    ucp_params_t cp = { .field_mask = UCP_PARAM_FIELD_FEATURES,
                        .features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP };
    ucp_worker_params_t wp = { .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                               .thread_mode = UCS_THREAD_MODE_SINGLE };
    if (ucp_config_read(NULL, NULL, &cfg) != UCS_OK || ucp_init(&cp, cfg, &ctx) != UCS_OK ||
        ucp_worker_create(ctx, &wp, &worker) != UCS_OK) {
        printf("FAIL: UCP init over UCX_TLS=%s\n", getenv("UCX_TLS"));
        return 1;
    }
    ucp_config_release(cfg);
    if (ucp_worker_get_efd(worker, &worker_fd) != UCS_OK) {
        printf("FAIL: ucp_worker_get_efd\n");
        return 1;
    }

    /* publish our worker address, fetch the peer's */
    ucp_address_t *addr;
    size_t alen;
    if (ucp_worker_get_address(worker, &addr, &alen) != UCS_OK)
        return 1;
    struct xs_handle *xs = xs_open(0);
    if (!xs) {
        printf("FAIL: xs_open: %s\n", strerror(errno));
        return 1;
    }
    unsigned dlen;
    char *me = xs_read(xs, XBT_NULL, "domid", &dlen);
    char path[128], *hex = malloc(alen * 2 + 1);
    for (size_t i = 0; i < alen; i++)
        sprintf(hex + 2 * i, "%02x", ((uint8_t *)addr)[i]);
    snprintf(path, sizeof(path), "/local/domain/%s/xenmpi-test/ucp-addr", me);
    struct xs_permissions perm = { .id = (unsigned)atoi(me), .perms = XS_PERM_READ };
    if (!xs_write(xs, XBT_NULL, path, hex, strlen(hex)) || !xs_set_permissions(xs, XBT_NULL, path, &perm, 1)) {
        printf("FAIL: publishing the worker address at %s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof(path), "/local/domain/%u/xenmpi-test/ucp-addr", peer);
    char *phex = xs_wait_read(xs, path);
    if (!phex || strlen(phex) % 2) {
        printf("FAIL: no worker address from domain %u at %s\n", peer, path);
        return 1;
    }
    size_t plen = strlen(phex) / 2;
    uint8_t *paddr = malloc(plen);
    for (size_t i = 0; i < plen; i++)
        sscanf(phex + 2 * i, "%2hhx", &paddr[i]);
    ucp_ep_params_t ep_params = { .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS,
                                  .address = (ucp_address_t *)paddr };
    ucp_ep_h ep;
    if (ucp_ep_create(worker, &ep_params, &ep) != UCS_OK) {
        printf("FAIL: ucp_ep_create to domain %u\n", peer);
        return 1;
    }
    printf("%s: domain %s, peer %u, worker address %zu bytes\n", argv[1], me, peer, alen);

    /* 1. polling ping-pong; the steady state makes no hypervisor/store call */
    uint64_t ping[2], got[2];
    double t0 = 0;
    uint64_t calls0 = 0;
    long warm = 1000;
    for (long i = 0; i < warm + iters; i++) {
        if (i == warm) {
            calls0 = xm_hv_xen_total_calls();
            t0 = now();
            xm_hv_xen_trace_calls(1);   /* a call now says where it came from */
        }
        ping[0] = (uint64_t)i;
        ping[1] = ~(uint64_t)i;
        if (is_a) {
            CHECK(send_msg(ep, ping, sizeof(ping), TAG_PING) == UCS_OK, "send %ld", i);
            CHECK(recv_msg(got, sizeof(got), TAG_PING) == UCS_OK, "recv %ld", i);
        } else {
            CHECK(recv_msg(got, sizeof(got), TAG_PING) == UCS_OK, "recv %ld", i);
            CHECK(send_msg(ep, ping, sizeof(ping), TAG_PING) == UCS_OK, "send %ld", i);
        }
        if (got[0] != (uint64_t)i || got[1] != ~(uint64_t)i) {
            failures++;
            printf("FAIL: ping-pong %ld carried %llu\n", i, (unsigned long long)got[0]);
            break;
        }
    }
    uint64_t calls = xm_hv_xen_total_calls() - calls0;
    double dt = now() - t0;
    xm_hv_xen_trace_calls(0);
    printf("%s: %ld polling round trips, %.2f us each, %llu hypervisor/store calls\n", argv[1],
           iters, dt / iters * 1e6, (unsigned long long)calls);
    CHECK(calls == 0, "%llu calls reached /dev/xen or xenstored in the polling steady state",
          (unsigned long long)calls);

    /* 2. bandwidth a -> b, 1 MiB messages, every byte checked */
    uint8_t *big = malloc(BW_SIZE), *want = malloc(BW_SIZE);
    t0 = now();
    for (unsigned k = 0; k < BW_COUNT; k++) {
        if (is_a) {
            fill(big, BW_SIZE, k);
            CHECK(send_msg(ep, big, BW_SIZE, TAG_BW) == UCS_OK, "bw send %u", k);
        } else {
            CHECK(recv_msg(big, BW_SIZE, TAG_BW) == UCS_OK, "bw recv %u", k);
            fill(want, BW_SIZE, k);
            CHECK(memcmp(big, want, BW_SIZE) == 0, "1 MiB message %u corrupted", k);
        }
    }
    uint64_t ack = 0;
    if (is_a)
        CHECK(recv_msg(&ack, sizeof(ack), TAG_CTL) == UCS_OK && ack == BW_COUNT, "bw ack");
    else
        CHECK(send_msg(ep, &(uint64_t){ BW_COUNT }, sizeof(ack), TAG_CTL) == UCS_OK, "bw ack");
    dt = now() - t0;
    printf("%s: %u x 1 MiB in %.2f s: %.1f MB/s\n", argv[1], BW_COUNT, dt, BW_COUNT * (BW_SIZE / 1e6) / dt);
    /* the rendezvous went by grant copy: a granted the whole pages of its
     * buffer through xenmpi_grant, b copied the first half of each and
     * reused the grants; a pushed the second half into b's buffer, which
     * b granted writable (UCX_XEN_PUSH_MIN) */
    xm_zc_stats_t zs;
    xm_zc_get_stats(&zs);
    printf("%s: zero-copy: %llu grants (%llu pages), %llu hits, %llu misses, %llu bytes "
           "by grant copy, %llu pushed to us, %llu refused for lack of entries\n", argv[1],
           (unsigned long long)zs.grants, (unsigned long long)zs.granted_pages,
           (unsigned long long)zs.hits, (unsigned long long)zs.misses,
           (unsigned long long)zs.zc_bytes, (unsigned long long)zs.pushed_bytes,
           (unsigned long long)zs.nospc);
    if (is_a) {
        CHECK(zs.grants > 0 && zs.grants < BW_COUNT, "%llu grants for %u sends of one buffer",
              (unsigned long long)zs.grants, BW_COUNT);
        CHECK(zs.zc_bytes > 0, "a pushed nothing by grant copy");
    } else {
        CHECK(zs.zc_bytes + zs.pushed_bytes >= (uint64_t)BW_COUNT * (BW_SIZE - 2 * 4096),
              "only %llu bytes by grant copy and %llu pushed", (unsigned long long)zs.zc_bytes,
              (unsigned long long)zs.pushed_bytes);
        CHECK(zs.pushed_bytes > 0 && zs.zc_bytes > 0, "%llu bytes by grant copy, %llu pushed: "
              "the copy was not split", (unsigned long long)zs.zc_bytes,
              (unsigned long long)zs.pushed_bytes);
        CHECK(zs.hits > zs.misses, "grants not reused: %llu hits, %llu misses",
              (unsigned long long)zs.hits, (unsigned long long)zs.misses);
    }

    /* 2b. address reuse: a sends from an mmap'ed buffer, unmaps it, maps
     * other memory at the same address with other data and sends again.
     * The first grants pin the old pages, so a peer reading through them
     * would see the old data: b checks every byte, a checks the old grants
     * were withdrawn and new ones made. */
    xm_zc_stats_t z0, z1;
    xm_zc_get_stats(&z0);
    uint8_t *va = mmap(NULL, BW_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(va != MAP_FAILED, "mmap %u bytes: %s", BW_SIZE, strerror(errno));
    for (unsigned round = 0; round < 2 && va != MAP_FAILED; round++) {
        if (round == 1) {
            if (is_a) {
                CHECK(munmap(va, BW_SIZE) == 0, "munmap");
                void *again = mmap(va, BW_SIZE, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
                CHECK(again == va, "mmap at %p again: %s", (void *)va,
                      again == MAP_FAILED ? strerror(errno) : "another address");
                if (again != va)
                    break;
            }
        }
        for (unsigned k = 0; k < REUSE_SENDS; k++) {
            uint64_t seed = 1000 + round;
            if (is_a) {
                fill(va, BW_SIZE, seed);
                CHECK(send_msg(ep, va, BW_SIZE, TAG_BW) == UCS_OK, "reuse send %u.%u", round, k);
            } else {
                CHECK(recv_msg(big, BW_SIZE, TAG_BW) == UCS_OK, "reuse recv %u.%u", round, k);
                fill(want, BW_SIZE, seed);
                if (memcmp(big, want, BW_SIZE)) {
                    fill(want, BW_SIZE, 1000);   /* round 0's data */
                    CHECK(0, "after %s, message %u carried %s",
                          round ? "the address was mapped again" : "the first map", k,
                          round && !memcmp(big, want, BW_SIZE) ? "the old pages' data" : "wrong data");
                }
            }
        }
        if (is_a)
            CHECK(recv_msg(&ack, sizeof(ack), TAG_CTL) == UCS_OK && ack == REUSE_SENDS, "reuse ack");
        else
            CHECK(send_msg(ep, &(uint64_t){ REUSE_SENDS }, sizeof(ack), TAG_CTL) == UCS_OK, "reuse ack");
    }
    if (va != MAP_FAILED)
        munmap(va, BW_SIZE);
    xm_zc_get_stats(&z1);
    printf("%s: address reuse: %llu grants, %llu withdrawn, %llu hits, %llu misses, %llu bytes "
           "by grant copy\n", argv[1],
           (unsigned long long)(z1.grants - z0.grants), (unsigned long long)(z1.revokes - z0.revokes),
           (unsigned long long)(z1.hits - z0.hits), (unsigned long long)(z1.misses - z0.misses),
           (unsigned long long)(z1.zc_bytes - z0.zc_bytes));
    if (is_a) {
        /* one grant per mapping, the first withdrawn when it was unmapped */
        CHECK(z1.grants - z0.grants >= 2, "%llu grants for two mappings",
              (unsigned long long)(z1.grants - z0.grants));
        CHECK(z1.revokes - z0.revokes >= 1, "the unmapped buffer's grant was not withdrawn");
    } else {
        /* every message by grant copy: the new mapping's request waited
         * for the old grant's end instead of taking the ring */
        CHECK(z1.zc_bytes - z0.zc_bytes == 2ull * REUSE_SENDS * BW_SIZE,
              "%llu of %llu bytes by grant copy", (unsigned long long)(z1.zc_bytes - z0.zc_bytes),
              2ull * REUSE_SENDS * BW_SIZE);
        CHECK(z1.misses - z0.misses == 2 && z1.hits - z0.hits == 2 * (REUSE_SENDS - 1),
              "%llu misses, %llu hits over two mappings", (unsigned long long)(z1.misses - z0.misses),
              (unsigned long long)(z1.hits - z0.hits));
    }

    /* 3. blocking ping-pong: notifications only for sleepers */
    blocking = 1;
    uint64_t n0 = xm_hv_xen_total_notifies(), w0 = xm_endpoint_withdrawn_arms();
    wakeups = 0;
    for (long i = 0; i < BLOCK_ITERS; i++) {
        ping[0] = (uint64_t)i + 7;
        ping[1] = ~ping[0];
        if (is_a) {
            CHECK(send_msg(ep, ping, sizeof(ping), TAG_PING) == UCS_OK, "bsend %ld", i);
            CHECK(recv_msg(got, sizeof(got), TAG_PING) == UCS_OK, "brecv %ld", i);
        } else {
            CHECK(recv_msg(got, sizeof(got), TAG_PING) == UCS_OK, "brecv %ld", i);
            CHECK(send_msg(ep, ping, sizeof(ping), TAG_PING) == UCS_OK, "bsend %ld", i);
        }
        if (got[0] != (uint64_t)i + 7 || got[1] != ~got[0]) {
            failures++;
            printf("FAIL: blocking ping-pong %ld corrupted\n", i);
            break;
        }
    }
    uint64_t mine[3] = { xm_hv_xen_total_notifies() - n0, wakeups,
                         xm_endpoint_withdrawn_arms() - w0 }, theirs[3];
    /* exchange the counts (the exchange itself is not counted) */
    if (is_a) {
        CHECK(send_msg(ep, mine, sizeof(mine), TAG_CTL) == UCS_OK, "count send");
        CHECK(recv_msg(theirs, sizeof(theirs), TAG_CTL) == UCS_OK, "count recv");
    } else {
        CHECK(recv_msg(theirs, sizeof(theirs), TAG_CTL) == UCS_OK, "count recv");
        CHECK(send_msg(ep, mine, sizeof(mine), TAG_CTL) == UCS_OK, "count send");
    }
    printf("%s: blocking: %llu notifications sent, peer slept %llu times and took back "
           "%llu arms; %llu own sleeps\n", argv[1], (unsigned long long)mine[0],
           (unsigned long long)theirs[1], (unsigned long long)theirs[2],
           (unsigned long long)mine[1]);
    /* one notification per sleep; an arm taken back without sleeping (data
     * arrived as it was set) may have drawn one too */
    CHECK(mine[0] <= theirs[1] + theirs[2], "%llu notifications for %llu peer sleeps + %llu "
          "taken-back arms", (unsigned long long)mine[0], (unsigned long long)theirs[1],
          (unsigned long long)theirs[2]);
    CHECK(mine[1] > 0, "blocking mode never slept");

    /* orderly end: wait for both sides before tearing down */
    blocking = 0;
    uint64_t bye = 1;
    if (is_a) {
        send_msg(ep, &bye, sizeof(bye), TAG_CTL);
        recv_msg(&bye, sizeof(bye), TAG_CTL);
    } else {
        recv_msg(&bye, sizeof(bye), TAG_CTL);
        send_msg(ep, &bye, sizeof(bye), TAG_CTL);
    }
    ucp_request_param_t cp2 = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE };
    wait_req(ucp_ep_close_nbx(ep, &cp2));
    ucp_worker_release_address(worker, addr);
    ucp_worker_destroy(worker);
    ucp_cleanup(ctx);
    xs_close(xs);
    printf("%s: %s\n", argv[1], failures ? "FAILED" : "PASS");
    return failures ? 1 : 0;
}
