/*
 * uct_rma_hostile.c - the xen transport's emulated put/get refuse remote
 * accesses outside a live registration.
 *
 * One process, two xen ifaces: A plays the requester (and the hostile peer:
 * it forges rkeys through uct_rkey_unpack from hand-made buffers in the
 * packed layout of docs/wire.md), B owns the memory.  A put is never
 * visible to the caller, so each hostile put is followed by a legitimate
 * marker put on the same channel: puts are applied in ring order, so once
 * the marker landed the hostile put has been handled, and the memory it
 * aimed at must be unchanged.  Refused gets must complete with an error.
 * A buffer registered (with and without the registration cache), unmapped
 * and mapped again with other data: the old rkey reaches nothing, a new
 * registration gets a new id; PROT_NONE and read-only pages under a live
 * registration are refused, and the owner (this process) takes no signal.
 * Last, an iface flush with a completion: it covers puts still in the ring
 * and a request queued behind a full ring (completing only once both
 * landed), and fails with UCS_ERR_CANCELED when the queue is purged.
 * And a put_zcopy on a channel still connecting is queued, then lands.
 *
 *   usage: LD_PRELOAD=libuct_xen.so XENMPI_SIM_HOST=<name> uct_rma_hostile
 * Prints "ok: ..." per check and "FAIL: ..." on failure (exit status 1).
 */
#include <uct/api/uct.h>
#include <ucs/async/async_fwd.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define CHECK(_cond, ...) \
    do { \
        if (!(_cond)) { \
            printf("FAIL: " __VA_ARGS__); \
            printf("\n"); \
            exit(1); \
        } \
    } while (0)

#define CHECK_OK(_status, _what) \
    CHECK((_status) == UCS_OK, "%s: %s", _what, ucs_status_string(_status))

/* the packed rkey of the xen md: registration id, base, length */
typedef struct {
    uint64_t id, base, length;
} __attribute__((packed)) xen_rkey_t;

static uct_component_h cmpt;
static uct_md_h md;
static uct_worker_h worker;
static uct_iface_h iface_a, iface_b;
static uct_ep_h ep;

/* memory of the owner (B) */
static struct {
    uint8_t before[64];
    uint8_t good[64];     /* registered, remote put and get */
    uint8_t after[64];
} owner;
static uint8_t secret[64];   /* never registered */
static uint8_t stale[64];    /* registered, then deregistered */
static uint8_t rdonly[64];   /* registered for remote get only */
static uint64_t marker_val;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress_for(double sec)
{
    double end = now() + sec;

    while (now() < end) {
        uct_worker_progress(worker);
    }
}

static uct_rkey_bundle_t rkey_from(uint64_t id, uint64_t base, uint64_t length)
{
    xen_rkey_t packed = {id, base, length};
    uct_rkey_bundle_t b;

    CHECK_OK(uct_rkey_unpack(cmpt, &packed, &b), "rkey_unpack");
    return b;
}

static uct_rkey_bundle_t rkey_of(uct_mem_h memh, xen_rkey_t *packed)
{
    uct_md_attr_t attr;
    uct_rkey_bundle_t b;
    char buf[256];

    CHECK_OK(uct_md_query(md, &attr), "md_query");
    CHECK(attr.rkey_packed_size == sizeof(xen_rkey_t), "rkey size %zu",
          attr.rkey_packed_size);
    CHECK_OK(uct_md_mkey_pack(md, memh, buf), "mkey_pack");
    CHECK_OK(uct_rkey_unpack(cmpt, buf, &b), "rkey_unpack");
    memcpy(packed, buf, sizeof(*packed));
    return b;
}

static void put(const void *data, unsigned len, uint64_t addr, uct_rkey_t rkey)
{
    ucs_status_t status;
    double end = now() + 10;

    do {
        status = uct_ep_put_short(ep, data, len, addr, rkey);
        if (status != UCS_ERR_NO_RESOURCE) {
            break;
        }
        uct_worker_progress(worker);
    } while (now() < end);
    CHECK_OK(status, "put_short");
}

/* a legitimate put into owner.good[56..64), then wait until it landed */
static void marker(uct_rkey_t good_rkey)
{
    volatile uint64_t *p = (volatile uint64_t*)&owner.good[56];
    double end = now() + 10;
    uint64_t v = ++marker_val;

    put(&v, sizeof(v), (uintptr_t)&owner.good[56], good_rkey);
    while ((*p != v) && (now() < end)) {
        uct_worker_progress(worker);
    }
    CHECK(*p == v, "marker put did not land within 10 s");
}

typedef struct {
    uct_completion_t comp;
    int done;
    ucs_status_t status;
    void *dest;
} get_ctx_t;

static void get_comp(uct_completion_t *self)
{
    get_ctx_t *ctx = (get_ctx_t*)self;

    ctx->done   = 1;
    ctx->status = self->status;
}

static void get_unpack(void *arg, const void *data, size_t length)
{
    memcpy(((get_ctx_t*)arg)->dest, data, length);
}

static ucs_status_t get(void *dest, size_t len, uint64_t addr, uct_rkey_t rkey)
{
    get_ctx_t ctx = {{get_comp, 1, UCS_OK}, 0, UCS_OK, dest};
    double end = now() + 10;
    ucs_status_t status;

    do {
        status = uct_ep_get_bcopy(ep, get_unpack, &ctx, len, addr, rkey,
                                  &ctx.comp);
        if (status != UCS_ERR_NO_RESOURCE) {
            break;
        }
        uct_worker_progress(worker);
    } while (now() < end);
    if (status != UCS_INPROGRESS) {
        return status;
    }
    CHECK(uct_ep_flush(ep, 0, NULL) == UCS_INPROGRESS,
          "flush does not wait for an outstanding get");
    while (!ctx.done && (now() < end)) {
        uct_worker_progress(worker);
    }
    CHECK(ctx.done, "get not completed within 10 s");
    CHECK(uct_ep_flush(ep, 0, NULL) == UCS_OK, "flush after the get: busy");
    return ctx.status;
}

/* a put queued on the ep's pending queue (the ring was full) */
typedef struct {
    uct_pending_req_t req;
    int               ran;
    uint64_t          val;
    uct_rkey_t        rkey;
} pending_put_t;

static ucs_status_t pending_put(uct_pending_req_t *req)
{
    pending_put_t *pp = ucs_container_of(req, pending_put_t, req);
    ucs_status_t status;

    status = uct_ep_put_short(ep, &pp->val, sizeof(pp->val),
                              (uintptr_t)&owner.good[48], pp->rkey);
    pp->ran |= (status == UCS_OK);
    return status;
}

static void count_purged(uct_pending_req_t *req, void *arg)
{
    ++*(int*)arg;
}

/* Fill A's ring to B while only A progresses; returns the last value put
 * into owner.good[40..48). */
static uint64_t fill_ring(uct_rkey_t rkey)
{
    ucs_status_t status;
    uint64_t v = 0;

    for (;;) {
        ++v;
        status = uct_ep_put_short(ep, &v, sizeof(v), (uintptr_t)&owner.good[40],
                                  rkey);
        if (status != UCS_OK) {
            break;
        }
        CHECK(v < 1000000, "the ring never fills");
    }
    CHECK(status == UCS_ERR_NO_RESOURCE, "put on a full ring: %s",
          ucs_status_string(status));
    return v - 1;
}

/* A put_zcopy that cannot go by grant copy (here: the 64-byte region holds
 * no whole page) takes the ring, and may wait for ring room after the
 * caller's ep flush began: that flush still completes only once the put
 * landed. */
static void check_put_zcopy_flush(uct_rkey_t rkey)
{
    get_ctx_t pz = {{get_comp, 1, UCS_OK}, 0, UCS_OK, NULL};
    get_ctx_t fc = {{get_comp, 1, UCS_OK}, 0, UCS_OK, NULL};
    uint8_t data[16];
    uct_iov_t iov;
    ucs_status_t status;
    double end;
    int i;

    for (i = 0; i < 16; ++i) {
        data[i] = 0xc0 + i;
    }
    iov.buffer = data;
    iov.length = sizeof(data);
    iov.memh   = UCT_MEM_HANDLE_NULL;
    iov.stride = 0;
    iov.count  = 1;
    marker(rkey);
    fill_ring(rkey);
    status = uct_ep_put_zcopy(ep, &iov, 1, (uintptr_t)&owner.good[16], rkey,
                              &pz.comp);
    CHECK(status == UCS_INPROGRESS, "put_zcopy on a full ring: %s",
          ucs_status_string(status));
    status = uct_ep_flush(ep, 0, &fc.comp);
    CHECK(status == UCS_INPROGRESS, "ep flush behind a queued put_zcopy: %s",
          ucs_status_string(status));
    for (i = 0; i < 10000; ++i) {
        uct_iface_progress(iface_a);   /* B consumes nothing */
    }
    CHECK(!fc.done, "ep flush completed while the peer consumed nothing");
    /* B, then A, checked right after A: a flush that A completes in the
     * same progress call that sent the put would be seen before B runs */
    end = now() + 10;
    while (!fc.done && (now() < end)) {
        uct_iface_progress(iface_b);
        uct_iface_progress(iface_a);
    }
    CHECK(fc.done, "ep flush not completed within 10 s");
    CHECK_OK(fc.status, "ep flush completion");
    CHECK(pz.done && (pz.status == UCS_OK), "put_zcopy not completed (%d, %s) "
          "when the flush was", pz.done, ucs_status_string(pz.status));
    CHECK(!memcmp(&owner.good[16], data, sizeof(data)),
          "ep flush completed before the ring put_zcopy landed");
    printf("ok: a put_zcopy taking the ring behind a full ring is covered by "
           "the ep flush issued after it\n");
}

static void check_iface_flush(uct_rkey_t rkey)
{
    get_ctx_t fc = {{get_comp, 1, UCS_OK}, 0, UCS_OK, NULL};
    pending_put_t pp = {.req.func = pending_put, .val = 0x1122334455667788ull,
                        .rkey = rkey};
    double end;
    uint64_t last, got;
    int i, purged = 0;

    marker(rkey);
    CHECK(uct_iface_flush(iface_a, 0, &fc.comp) == UCS_OK,
          "iface flush with nothing outstanding is not done at once");
    CHECK(!fc.done, "an iface flush that returned UCS_OK called its completion");

    last = fill_ring(rkey);
    CHECK_OK(uct_ep_pending_add(ep, &pp.req, 0), "pending_add on a full ring");
    CHECK(uct_iface_flush(iface_a, 0, &fc.comp) == UCS_INPROGRESS,
          "iface flush with a full ring and a queued put is done at once");
    for (i = 0; i < 10000; ++i) {
        uct_iface_progress(iface_a);   /* B consumes nothing */
    }
    CHECK(!fc.done && !pp.ran, "iface flush completed (%d) or the queued put "
          "ran (%d) while the peer consumed nothing", fc.done, pp.ran);
    end = now() + 10;
    while (!fc.done && (now() < end)) {
        uct_worker_progress(worker);
    }
    CHECK(fc.done, "iface flush not completed within 10 s");
    CHECK_OK(fc.status, "iface flush completion");
    CHECK(pp.ran, "iface flush completed before the queued put was sent");
    memcpy(&got, &owner.good[48], sizeof(got));
    CHECK(got == pp.val, "iface flush completed before the queued put landed");
    memcpy(&got, &owner.good[40], sizeof(got));
    CHECK(got == last, "iface flush completed before the ring's last put "
          "landed (%llu, expected %llu)", (unsigned long long)got,
          (unsigned long long)last);
    printf("ok: iface flush with a completion covers %llu puts in the ring "
           "and one queued behind it\n", (unsigned long long)last);

    /* purged with our flush queued: the caller sees only its own request */
    fc.done = 0;
    fc.comp.count = 1;
    pp.ran = 0;
    fill_ring(rkey);
    CHECK_OK(uct_ep_pending_add(ep, &pp.req, 0), "pending_add on a full ring");
    CHECK(uct_iface_flush(iface_a, 0, &fc.comp) == UCS_INPROGRESS,
          "iface flush behind a queued put is done at once");
    uct_ep_pending_purge(ep, count_purged, &purged);
    CHECK(purged == 1, "purge handed %d requests to the caller, expected its "
          "own 1", purged);
    CHECK(fc.done && (fc.status == UCS_ERR_CANCELED), "purged iface flush: "
          "done %d, %s", fc.done, ucs_status_string(fc.status));
    marker(rkey);
    CHECK(uct_iface_flush(iface_a, 0, NULL) == UCS_OK, "iface flush after "
          "the ring drained");
    printf("ok: purging the queue fails the queued iface flush with %s\n",
           ucs_status_string(UCS_ERR_CANCELED));
}

/* uct_iface_flush(iface, 0, NULL) with a get_zcopy waiting for the owner's
 * grant (the owner consumed the request, its answer is not read yet): not
 * flushed.  UCP takes UCS_OK here as "worker flushed". */
static void check_get_zcopy_iface_flush(void)
{
    get_ctx_t gz = {{get_comp, 1, UCS_OK}, 0, UCS_OK, NULL};
    uct_iface_attr_t attr;
    uct_rkey_bundle_t rk;
    uct_mem_h memh;
    xen_rkey_t packed;
    uint8_t *mem, *local;
    uct_iov_t iov;
    ucs_status_t status;
    double end;
    int i;

    CHECK_OK(uct_iface_query(iface_a, &attr), "iface_query");
    CHECK(attr.cap.flags & UCT_IFACE_FLAG_GET_ZCOPY, "get_zcopy not advertised");
    CHECK(posix_memalign((void**)&mem, 4096, 2 * 4096) == 0, "posix_memalign");
    CHECK(posix_memalign((void**)&local, 4096, 4096) == 0, "posix_memalign");
    for (i = 0; i < 2 * 4096; ++i) {
        mem[i] = (uint8_t)(i * 7 + 3);
    }
    memset(local, 0, 4096);
    CHECK_OK(uct_md_mem_reg(md, mem, 2 * 4096, UCT_MD_MEM_ACCESS_ALL, &memh),
             "mem_reg");
    rk = rkey_of(memh, &packed);
    iov.buffer = local;
    iov.length = 4096;
    iov.memh   = UCT_MEM_HANDLE_NULL;
    iov.stride = 0;
    iov.count  = 1;
    status = uct_ep_get_zcopy(ep, &iov, 1, (uintptr_t)mem + 4096, rk.rkey,
                              &gz.comp);
    CHECK(status == UCS_INPROGRESS, "get_zcopy (a grant to ask for): %s",
          ucs_status_string(status));
    for (i = 0; i < 1000; ++i) {
        uct_iface_progress(iface_b);   /* B answers; A reads nothing */
    }
    CHECK(!gz.done, "get_zcopy completed without its requester's progress");
    status = uct_iface_flush(iface_a, 0, NULL);
    CHECK(status == UCS_INPROGRESS, "iface flush with a get_zcopy waiting for "
          "its grant: %s", ucs_status_string(status));
    end = now() + 10;
    while (!gz.done && (now() < end)) {
        uct_worker_progress(worker);
    }
    CHECK(gz.done && (gz.status == UCS_OK), "get_zcopy: %d, %s", gz.done,
          ucs_status_string(gz.status));
    CHECK(!memcmp(local, mem + 4096, 4096), "get_zcopy: wrong data");
    CHECK(uct_iface_flush(iface_a, 0, NULL) == UCS_OK,
          "iface flush after the get_zcopy completed");
    uct_rkey_release(cmpt, &rk);
    uct_md_mem_dereg(md, memh);
    free(mem);
    free(local);
    printf("ok: an iface flush covers a get_zcopy waiting for its grant\n");
}

/* A zero-copy operation on a channel still connecting: the transport says
 * NO_RESOURCE, and pending_add must queue the request (UCS_OK), not say
 * BUSY: UCP retries a BUSY at once without progressing the worker, and the
 * handshake needs that progress, so a BUSY here spun forever (UCP's
 * put_bw perftest hung when its first put went zero-copy).  Once the
 * channel is up the queued request runs and the put lands. */
static uct_iface_h open_iface(void);

/* an ep from iface `from` to iface `to` (both this process's) */
static uct_ep_h ep_to(uct_iface_h from, uct_iface_h to)
{
    uct_ep_params_t ep_params = {0};
    uint8_t dev_addr[64], iface_addr[64];
    uct_ep_h e;

    CHECK_OK(uct_iface_get_device_address(to, (uct_device_addr_t*)dev_addr),
             "get_device_address");
    CHECK_OK(uct_iface_get_address(to, (uct_iface_addr_t*)iface_addr),
             "get_address");
    ep_params.field_mask = UCT_EP_PARAM_FIELD_IFACE | UCT_EP_PARAM_FIELD_DEV_ADDR |
                           UCT_EP_PARAM_FIELD_IFACE_ADDR;
    ep_params.iface      = from;
    ep_params.dev_addr   = (uct_device_addr_t*)dev_addr;
    ep_params.iface_addr = (uct_iface_addr_t*)iface_addr;
    CHECK_OK(uct_ep_create(&ep_params, &e), "ep_create");
    return e;
}

typedef struct {
    uct_pending_req_t req;
    uct_ep_h          ep;
    uct_iov_t         iov;
    uint64_t          addr;
    uct_rkey_t        rkey;
    get_ctx_t         *comp;
    int               ran;
} pending_zput_t;

static ucs_status_t pending_zput(uct_pending_req_t *req)
{
    pending_zput_t *pz = ucs_container_of(req, pending_zput_t, req);
    ucs_status_t status;

    status = uct_ep_put_zcopy(pz->ep, &pz->iov, 1, pz->addr, pz->rkey,
                              &pz->comp->comp);
    pz->ran += (status == UCS_INPROGRESS) || (status == UCS_OK);
    if (status == UCS_OK) {
        pz->comp->done = 1;
    }
    return (status == UCS_INPROGRESS) ? UCS_OK : status;
}

static void check_zcopy_while_connecting(void)
{
    get_ctx_t zc = {{get_comp, 1, UCS_OK}, 0, UCS_OK, NULL};
    pending_zput_t pz = {0};
    uct_rkey_bundle_t rk;
    uct_mem_h memh;
    xen_rkey_t packed;
    uint8_t *mem, *data;
    ucs_status_t status;
    uct_iface_h iface_c = open_iface();   /* a peer A has no channel to */
    uct_ep_h ep2;
    double end;
    int i;

    CHECK(posix_memalign((void**)&mem, 4096, 4 * 4096) == 0, "posix_memalign");
    CHECK(posix_memalign((void**)&data, 4096, 4 * 4096) == 0, "posix_memalign");
    memset(mem, 0, 4 * 4096);
    for (i = 0; i < 4 * 4096; ++i) {
        data[i] = (uint8_t)(i * 11 + 5);
    }
    CHECK_OK(uct_md_mem_reg(md, mem, 4 * 4096, UCT_MD_MEM_ACCESS_ALL, &memh),
             "mem_reg");
    rk = rkey_of(memh, &packed);
    ep2 = ep_to(iface_a, iface_c);
    pz.req.func   = pending_zput;
    pz.ep         = ep2;
    pz.iov.buffer = data;
    pz.iov.length = 4 * 4096;
    pz.iov.memh   = UCT_MEM_HANDLE_NULL;
    pz.iov.stride = 0;
    pz.iov.count  = 1;
    pz.addr       = (uintptr_t)mem;
    pz.rkey       = rk.rkey;
    pz.comp       = &zc;
    /* nothing progressed since ep_create: C has not accepted yet (the
     * registration is A's md's, which every iface of the process serves) */
    status = uct_ep_put_zcopy(ep2, &pz.iov, 1, pz.addr, pz.rkey, &zc.comp);
    CHECK(status == UCS_ERR_NO_RESOURCE, "put_zcopy on a connecting channel: "
          "%s", ucs_status_string(status));
    status = uct_ep_pending_add(ep2, &pz.req, 0);
    CHECK(status == UCS_OK, "pending_add after a put_zcopy the connecting "
          "channel could not take: %s (a retry without progress fails again)",
          ucs_status_string(status));
    end = now() + 10;
    while (!zc.done && (now() < end)) {
        uct_worker_progress(worker);
    }
    CHECK(pz.ran == 1, "the queued put_zcopy ran %d times", pz.ran);
    CHECK(zc.done && (zc.status == UCS_OK), "queued put_zcopy: %d, %s",
          zc.done, ucs_status_string(zc.status));
    CHECK(!memcmp(mem, data, 4 * 4096), "queued put_zcopy: wrong data");
    uct_ep_destroy(ep2);
    progress_for(0.01);
    uct_iface_close(iface_c);
    uct_rkey_release(cmpt, &rk);
    uct_md_mem_dereg(md, memh);
    free(mem);
    free(data);
    printf("ok: a put_zcopy on a connecting channel is queued (pending_add "
           "UCS_OK) and lands once the channel is up\n");
}

static uct_iface_h open_iface(void)
{
    uct_iface_params_t params = {0};
    uct_iface_config_t *cfg;
    uct_iface_h iface;

    CHECK_OK(uct_md_iface_config_read(md, "xen", NULL, NULL, &cfg),
             "iface_config_read");
    params.field_mask           = UCT_IFACE_PARAM_FIELD_OPEN_MODE |
                                  UCT_IFACE_PARAM_FIELD_DEVICE;
    params.open_mode            = UCT_IFACE_OPEN_MODE_DEVICE;
    params.mode.device.tl_name  = "xen";
    params.mode.device.dev_name = "xen0";
    CHECK_OK(uct_iface_open(md, worker, &params, cfg, &iface), "iface_open");
    uct_config_release(cfg);
    uct_iface_progress_enable(iface, UCT_PROGRESS_SEND | UCT_PROGRESS_RECV);
    return iface;
}

static void setup(void)
{
    uct_component_h *cmpts;
    unsigned i, n;
    uct_component_attr_t cattr = {0};
    uct_md_config_t *md_cfg;
    ucs_async_context_t *async;
    uct_iface_attr_t attr;
    uint64_t needed = UCT_IFACE_FLAG_PUT_SHORT | UCT_IFACE_FLAG_PUT_BCOPY |
                      UCT_IFACE_FLAG_GET_BCOPY;

    CHECK_OK(uct_query_components(&cmpts, &n), "query_components");
    cmpt = NULL;
    for (i = 0; i < n; ++i) {
        cattr.field_mask = UCT_COMPONENT_ATTR_FIELD_NAME;
        CHECK_OK(uct_component_query(cmpts[i], &cattr), "component_query");
        if (!strcmp(cattr.name, "xen")) {
            cmpt = cmpts[i];
        }
    }
    CHECK(cmpt != NULL, "no component xen (LD_PRELOAD=libuct_xen.so?)");
    CHECK_OK(uct_md_config_read(cmpt, NULL, NULL, &md_cfg), "md_config_read");
    CHECK_OK(uct_md_open(cmpt, "xen", md_cfg, &md), "md_open");
    uct_config_release(md_cfg);
    CHECK_OK(ucs_async_context_create(UCS_ASYNC_MODE_THREAD_SPINLOCK, &async),
             "async_context_create");
    CHECK_OK(uct_worker_create(async, UCS_THREAD_MODE_SINGLE, &worker),
             "worker_create");

    iface_a = open_iface();
    iface_b = open_iface();
    CHECK_OK(uct_iface_query(iface_a, &attr), "iface_query");
    CHECK((attr.cap.flags & needed) == needed, "put/get not advertised");
    CHECK(attr.cap.get.max_bcopy >= 64, "get max_bcopy %zu",
          attr.cap.get.max_bcopy);
    ep = ep_to(iface_a, iface_b);
}

/* A registered buffer unmapped and mapped again at the same address with
 * other data, through memory domain m (with or without its registration
 * cache): a peer's put or get under the old id must not reach the new
 * memory, and a registration over memory made inaccessible must not
 * crash the owner (it is the same process here). */
static void check_unmapped(uct_md_h m, const char *which, uct_rkey_t good_rkey)
{
    const size_t pg = 4096, len = 2 * pg;
    uint8_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, buf[8];
    uct_mem_h memh, memh2;
    uct_rkey_bundle_t rk, rk2;
    xen_rkey_t packed, packed2;
    ucs_status_t status;
    uint8_t *p, *q;

    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap");
    memset(p, 0x11, len);
    CHECK_OK(uct_md_mem_reg(m, p, len, UCT_MD_MEM_ACCESS_ALL, &memh), "mem_reg");
    rk = rkey_of(memh, &packed);
    memset(buf, 0, sizeof(buf));
    CHECK_OK(get(buf, 8, (uintptr_t)p, rk.rkey), "get before the unmap");
    CHECK(buf[0] == 0x11 && buf[7] == 0x11, "get before the unmap: wrong data");

    CHECK(munmap(p, len) == 0, "munmap");
    q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(q == p, "mmap at the same address");
    memset(p, 0x99, len);   /* the new owner's secret */
    memset(buf, 0xee, sizeof(buf));
    status = get(buf, 8, (uintptr_t)p, rk.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "%s: get with the id of an unmapped buffer: %s%s",
          which, ucs_status_string(status),
          buf[0] == 0x99 ? " (it read the memory mapped there since)" : "");
    CHECK(buf[0] == 0xee && buf[7] == 0xee, "%s: refused get wrote its buffer", which);
    put(x, sizeof(x), (uintptr_t)p + 100, rk.rkey);
    marker(good_rkey);
    CHECK(p[100] == 0x99 && p[107] == 0x99, "%s: put with the id of an unmapped buffer "
          "wrote the memory mapped there since", which);

    /* registered again, the new mapping has a new id that works */
    CHECK_OK(uct_md_mem_reg(m, p, len, UCT_MD_MEM_ACCESS_ALL, &memh2), "mem_reg again");
    rk2 = rkey_of(memh2, &packed2);
    CHECK(packed2.id != packed.id, "%s: the unmapped buffer's id %llu handed out again", which,
          (unsigned long long)packed.id);
    CHECK_OK(get(buf, 8, (uintptr_t)p, rk2.rkey), "get with the new id");
    CHECK(buf[0] == 0x99, "%s: get with the new id: wrong data", which);

    /* memory made inaccessible under a live registration: refused, and the
     * owner survives */
    CHECK(mprotect(p, pg, PROT_NONE) == 0, "mprotect");
    CHECK(mprotect(p + pg, pg, PROT_READ) == 0, "mprotect");
    status = get(buf, 8, (uintptr_t)p, rk2.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "%s: get of PROT_NONE memory: %s", which,
          ucs_status_string(status));
    put(x, sizeof(x), (uintptr_t)p + pg, rk2.rkey);
    marker(good_rkey);
    CHECK(p[pg] == 0x99, "%s: put into read-only memory applied", which);
    CHECK_OK(get(buf, 8, (uintptr_t)p + pg, rk2.rkey), "get of read-only memory");
    CHECK(buf[0] == 0x99, "%s: get of read-only memory: wrong data", which);

    uct_rkey_release(cmpt, &rk);
    uct_rkey_release(cmpt, &rk2);
    CHECK_OK(uct_md_mem_dereg(m, memh), "mem_dereg of the unmapped buffer");
    CHECK_OK(uct_md_mem_dereg(m, memh2), "mem_dereg");
    munmap(p, len);
    printf("ok: %s: after munmap and a new mapping at the same address, put and get "
           "under the old id %llu refused (new id %llu works); PROT_NONE and "
           "read-only memory under a registration refused without a fault\n", which,
           (unsigned long long)packed.id, (unsigned long long)packed2.id);
}

/* Part of a registration unmapped while the rest is in use (a cache's
 * region grown over a neighbour that is freed since, as UCP's rendezvous
 * meets it): the pages that went away are refused, also once mapped again
 * with other data, and the rest keeps working under the same id. */
static void check_partly_unmapped(uct_md_h m, const char *which)
{
    const size_t pg = 4096, len = 4 * pg;
    uct_rkey_bundle_t rk;
    xen_rkey_t packed;
    ucs_status_t status;
    uct_mem_h memh;
    uint8_t *p, *q, buf[3 * 4096];

    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap");
    for (size_t i = 0; i < len; ++i) {
        p[i] = (uint8_t)(i * 7 + 3);
    }
    CHECK_OK(uct_md_mem_reg(m, p, len, UCT_MD_MEM_ACCESS_ALL, &memh), "mem_reg");
    rk = rkey_of(memh, &packed);

    CHECK(munmap(p + 3 * pg, pg) == 0, "munmap of the last page");
    q = mmap(p + 3 * pg, pg, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(q == p + 3 * pg, "mmap at the same address");
    memset(q, 0x99, pg);   /* the new owner's secret */

    memset(buf, 0, sizeof(buf));
    status = get(buf, sizeof(buf) / 2, (uintptr_t)p, rk.rkey);
    CHECK(status == UCS_OK, "%s: get of the pages still mapped, after another page of "
          "the registration was unmapped: %s", which, ucs_status_string(status));
    status = get(buf + sizeof(buf) / 2, sizeof(buf) / 2, (uintptr_t)p + sizeof(buf) / 2,
                 rk.rkey);
    CHECK_OK(status, "get of the rest of the mapped pages");
    for (size_t i = 0; i < sizeof(buf); ++i) {
        CHECK(buf[i] == (uint8_t)(i * 7 + 3), "%s: get of the mapped pages: wrong data "
              "at %zu", which, i);
    }
    memset(buf, 0xee, 64);
    status = get(buf, 64, (uintptr_t)p + 3 * pg - 32, rk.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "%s: get reaching into the unmapped page: %s%s",
          which, ucs_status_string(status),
          buf[40] == 0x99 ? " (it read the memory mapped there since)" : "");
    CHECK(buf[0] == 0xee && buf[63] == 0xee, "%s: refused get wrote its buffer", which);

    uct_rkey_release(cmpt, &rk);
    CHECK_OK(uct_md_mem_dereg(m, memh), "mem_dereg");
    munmap(p, len);
    printf("ok: %s: one page of a registration unmapped and mapped again: the other "
           "three still read under id %llu, the page is refused\n", which,
           (unsigned long long)packed.id);
}

/* The cache's own way to the above: a buffer registered over pages 1-2
 * while its neighbour over pages 0-1 is still registered gets one region
 * for pages 0-2 (the cache merges them); the neighbour is deregistered
 * and its page 0 unmapped (free() trimming the heap) while the buffer's
 * transfer goes on: the buffer must still read. */
static void check_merged_neighbour(uct_md_h m)
{
    const size_t pg = 4096;
    uct_mem_h left, buf_memh;
    uct_rkey_bundle_t rk;
    xen_rkey_t packed;
    ucs_status_t status;
    uint8_t *p, buf[64];

    p = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap");
    memset(p, 0x42, 3 * pg);
    CHECK_OK(uct_md_mem_reg(m, p, 2 * pg, UCT_MD_MEM_ACCESS_ALL, &left), "mem_reg left");
    CHECK_OK(uct_md_mem_reg(m, p + pg + 100, 2 * pg - 200, UCT_MD_MEM_ACCESS_ALL,
                            &buf_memh), "mem_reg buffer");
    rk = rkey_of(buf_memh, &packed);
    CHECK(packed.base == (uintptr_t)p, "the cache did not merge the two registrations "
          "(base 0x%llx, expected %p): this check needs it", (unsigned long long)packed.base,
          (void*)p);
    CHECK_OK(uct_md_mem_dereg(m, left), "mem_dereg left");
    CHECK(munmap(p, pg) == 0, "munmap of the neighbour's first page");
    memset(buf, 0, sizeof(buf));
    status = get(buf, sizeof(buf), (uintptr_t)p + 2 * pg, rk.rkey);
    CHECK(status == UCS_OK, "get of a buffer whose merged neighbour was unmapped: %s",
          ucs_status_string(status));
    CHECK(buf[0] == 0x42 && buf[63] == 0x42, "merged neighbour: wrong data");
    uct_rkey_release(cmpt, &rk);
    CHECK_OK(uct_md_mem_dereg(m, buf_memh), "mem_dereg buffer");
    munmap(p + pg, 2 * pg);
    printf("ok: registration cache: a buffer whose region the cache merged with a "
           "neighbour's (base %p) still reads after the neighbour's page is unmapped\n",
           (void*)p);
}

int main(void)
{
    uct_mem_h good_memh, stale_memh, stale2_memh, rdonly_memh;
    uct_rkey_bundle_t good, forged, stale_rk, stale2_rk, rdonly_rk;
    xen_rkey_t gp, sp, sp2, rp;
    uint8_t buf[64], pattern[64];
    uint8_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ucs_status_t status;
    int i;

    setvbuf(stdout, NULL, _IOLBF, 0);
    /* exact bounds: the registration cache (default) widens a registration
     * to 64-byte boundaries and merges overlapping ones, as in every UCX md
     * with a cache; the checks against the owner's record are the same */
    setenv("UCX_XEN_RCACHE", "n", 1);
    setup();
    for (i = 0; i < 64; ++i) {
        pattern[i] = 0xa0 + i;
    }
    memcpy(owner.good, pattern, sizeof(pattern));
    memset(owner.before, 0x5b, sizeof(owner.before));
    memset(owner.after, 0x5a, sizeof(owner.after));
    memset(secret, 0x77, sizeof(secret));

    CHECK_OK(uct_md_mem_reg(md, owner.good, sizeof(owner.good),
                            UCT_MD_MEM_ACCESS_ALL, &good_memh), "mem_reg");
    good = rkey_of(good_memh, &gp);
    CHECK((gp.base == (uintptr_t)owner.good) && (gp.length == 64) && gp.id,
          "packed rkey {%llu, 0x%llx, %llu}", (unsigned long long)gp.id,
          (unsigned long long)gp.base, (unsigned long long)gp.length);

    /* legitimate traffic works */
    marker(good.rkey);
    put(x, sizeof(x), (uintptr_t)&owner.good[8], good.rkey);
    marker(good.rkey);
    CHECK(!memcmp(&owner.good[8], x, 8), "legitimate put not applied");
    memset(buf, 0, sizeof(buf));
    status = get(buf, 56, (uintptr_t)owner.good, good.rkey);
    CHECK_OK(status, "legitimate get");
    CHECK(!memcmp(buf, owner.good, 56), "legitimate get: wrong data");
    printf("ok: legitimate put and get (registration id %llu)\n",
           (unsigned long long)gp.id);

    /* a forged rkey that claims the whole address space for a live id:
     * only the owner's own record counts */
    forged = rkey_from(gp.id, 0, UINT64_MAX);
    put(x, sizeof(x), (uintptr_t)secret, forged.rkey);
    put(x, sizeof(x), (uintptr_t)&owner.before[60], forged.rkey); /* straddles */
    put(x, sizeof(x), (uintptr_t)&owner.good[60], forged.rkey);   /* straddles */
    put(x, sizeof(x), (uintptr_t)&owner.after[0], forged.rkey);
    put(x, sizeof(x), UINT64_MAX - 3, forged.rkey);                /* wraps */
    put(x, 0, (uintptr_t)secret, forged.rkey);                    /* empty, outside */
    marker(good.rkey);
    for (i = 0; i < 64; ++i) {
        CHECK(secret[i] == 0x77, "put outside a registration applied: secret");
        CHECK(owner.before[i] == 0x5b, "put before the registration applied");
        CHECK(owner.after[i] == 0x5a, "put past the registration applied");
    }
    CHECK(!memcmp(&owner.good[16], &pattern[16], 40), "registration damaged");
    printf("ok: puts outside the registration (forged bounds, straddling, "
           "wrapping) refused, memory unchanged\n");

    status = get(buf, 8, (uintptr_t)secret, forged.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "get of unregistered memory: %s",
          ucs_status_string(status));
    status = get(buf, 8, (uintptr_t)&owner.good[60], forged.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "straddling get: %s",
          ucs_status_string(status));
    status = get(buf, 8, UINT64_MAX - 3, forged.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "wrapping get: %s",
          ucs_status_string(status));
    uct_rkey_release(cmpt, &forged);
    forged = rkey_from(gp.id + 1000000, (uintptr_t)secret, sizeof(secret));
    status = get(buf, 8, (uintptr_t)secret, forged.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "get with an unknown id: %s",
          ucs_status_string(status));
    put(x, sizeof(x), (uintptr_t)secret, forged.rkey);
    marker(good.rkey);
    CHECK(secret[0] == 0x77, "put with an unknown id applied");
    uct_rkey_release(cmpt, &forged);
    printf("ok: gets outside a registration or with an unknown id complete "
           "with %s\n", ucs_status_string(UCS_ERR_INVALID_ADDR));

    /* a deregistered id is dead, even when the same memory is registered
     * again */
    memset(stale, 0x33, sizeof(stale));
    CHECK_OK(uct_md_mem_reg(md, stale, sizeof(stale), UCT_MD_MEM_ACCESS_ALL,
                            &stale_memh), "mem_reg");
    stale_rk = rkey_of(stale_memh, &sp);
    put(x, sizeof(x), (uintptr_t)stale, stale_rk.rkey);
    marker(good.rkey);
    CHECK(stale[0] == 1, "put into a live registration not applied");
    memset(stale, 0x33, sizeof(stale));
    CHECK_OK(uct_md_mem_dereg(md, stale_memh), "mem_dereg");
    CHECK_OK(uct_md_mem_reg(md, stale, sizeof(stale), UCT_MD_MEM_ACCESS_ALL,
                            &stale2_memh), "mem_reg");
    stale2_rk = rkey_of(stale2_memh, &sp2);
    CHECK(sp2.id != sp.id, "registration id %llu reused",
          (unsigned long long)sp.id);
    put(x, sizeof(x), (uintptr_t)stale, stale_rk.rkey);
    marker(good.rkey);
    CHECK((stale[0] == 0x33) && (stale[7] == 0x33),
          "put with a deregistered id applied to re-registered memory");
    status = get(buf, 8, (uintptr_t)stale, stale_rk.rkey);
    CHECK(status == UCS_ERR_INVALID_ADDR, "get with a deregistered id: %s",
          ucs_status_string(status));
    put(x, sizeof(x), (uintptr_t)stale, stale2_rk.rkey);
    marker(good.rkey);
    CHECK(stale[0] == 1, "put with the new id not applied");
    printf("ok: deregistered id %llu refused for put and get; the same memory "
           "registered again has id %llu\n", (unsigned long long)sp.id,
           (unsigned long long)sp2.id);

    /* access rights recorded at registration */
    memset(rdonly, 0x44, sizeof(rdonly));
    CHECK_OK(uct_md_mem_reg(md, rdonly, sizeof(rdonly),
                            UCT_MD_MEM_ACCESS_REMOTE_GET, &rdonly_memh),
             "mem_reg");
    rdonly_rk = rkey_of(rdonly_memh, &rp);
    put(x, sizeof(x), (uintptr_t)rdonly, rdonly_rk.rkey);
    marker(good.rkey);
    CHECK(rdonly[0] == 0x44, "put into a get-only registration applied");
    status = get(buf, 8, (uintptr_t)rdonly, rdonly_rk.rkey);
    CHECK((status == UCS_OK) && (buf[0] == 0x44), "get of a get-only "
          "registration: %s", ucs_status_string(status));
    printf("ok: put into a get-only registration refused, get allowed\n");

    /* the owner is unaffected: legitimate traffic still works */
    put(pattern, 8, (uintptr_t)&owner.good[8], good.rkey);
    marker(good.rkey);
    status = get(buf, 64, (uintptr_t)owner.good, good.rkey);
    CHECK_OK(status, "get after the refusals");
    CHECK(!memcmp(buf, owner.good, 64) && !memcmp(&buf[8], pattern, 8),
          "get after the refusals: wrong data");
    printf("ok: owner still serves legitimate puts and gets\n");

    check_unmapped(md, "no registration cache", good.rkey);
    check_partly_unmapped(md, "no registration cache");
    {
        uct_md_config_t *md_cfg;
        uct_md_h md_rc;

        CHECK_OK(uct_md_config_read(cmpt, NULL, NULL, &md_cfg), "md_config_read");
        CHECK_OK(uct_config_modify(md_cfg, "RCACHE", "yes"), "config_modify RCACHE");
        CHECK_OK(uct_md_open(cmpt, "xen", md_cfg, &md_rc), "md_open with a cache");
        uct_config_release(md_cfg);
        check_unmapped(md_rc, "registration cache", good.rkey);
        check_partly_unmapped(md_rc, "registration cache");
        check_merged_neighbour(md_rc);
        uct_md_close(md_rc);
    }

    check_iface_flush(good.rkey);
    check_put_zcopy_flush(good.rkey);
    check_get_zcopy_iface_flush();
    check_zcopy_while_connecting();

    uct_rkey_release(cmpt, &good);
    uct_rkey_release(cmpt, &stale_rk);
    uct_rkey_release(cmpt, &stale2_rk);
    uct_rkey_release(cmpt, &rdonly_rk);
    uct_md_mem_dereg(md, good_memh);
    uct_md_mem_dereg(md, stale2_memh);
    uct_md_mem_dereg(md, rdonly_memh);
    uct_ep_destroy(ep);
    progress_for(0.01);
    uct_iface_close(iface_a);
    uct_iface_close(iface_b);
    uct_worker_destroy(worker);
    uct_md_close(md);
    printf("ok: done\n");
    return 0;
}
