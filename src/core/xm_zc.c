/*
 * xm_zc.c - zero-copy: the registry, counters, geometry, the outbox (the
 * locking rule) and the service on each endpoint.  The protocol and its
 * invariants are described in xm_zc.h; the message layouts in
 * docs/wire.md; the owner's half is xm_zc_owner.c, the peer's
 * xm_zc_peer.c.
 */
#include "xm_zc_int.h"
#include "xm_channel_int.h"   /* chan_fail, the channel's outbox count */
#include "xm_settings.h"
#include "xm_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

pthread_mutex_t zlock = PTHREAD_MUTEX_INITIALIZER;
struct zc_ep *zc_eps;
xm_zc_stats_t zst;
uint64_t zc_fallback_bytes;
static uint64_t zc_ring_bytes;   /* xm_zc_count_ring */
static uint64_t zc_pushed_bytes; /* xm_zc_count_pushed */
uint64_t zc_next_id = 1;   /* only where the kernel gives no random bytes */
uint32_t zc_next_gen = 1;
struct zc_region *zc_regions[ZC_REG_BUCKETS];
struct zc_owner_grant *ohead, *otail;
struct zc_peer_refs *phead, *ptail;
struct zc_msg *outbox, **outbox_tail = &outbox;
struct zc_nogrant *zc_nogrant_chans;
struct zc_park *zc_parked;
int revoke_owed; /* some owner grant is O_INVAL_OWED */
unsigned inval_sent;
double inval_next;
static uint64_t reg_invalidated;   /* atomic: regions killed by xm_zc_invalidate */
static uint64_t reg_holed;         /* atomic: holes it made in regions that stay */
int xm_zc_work;         /* outbox, revoke_owed or a memory event: progress has work (racy hint) */

/* under zlock */
struct zc_ep *zep_of(const xm_channel_t *ch)
{
    const xm_endpoint_t *ep = xm_chan_endpoint(ch);

    for (struct zc_ep *z = zc_eps; z; z = z->next)
        if (z->ep == ep)
            return z;
    return NULL;
}

static void zep_set(struct zc_ep *z, const xm_zc_config_t *cfg)
{
    static const xm_zc_config_t none;

    if (!cfg)
        cfg = &none;
    z->cfg.owner_cache_bytes = cfg->owner_cache_bytes ? cfg->owner_cache_bytes : ZC_DEFAULT_CACHE;
    z->cfg.peer_cache_bytes = cfg->peer_cache_bytes ? cfg->peer_cache_bytes : ZC_DEFAULT_CACHE;
    z->cfg.disable = cfg->disable;
}

int xm_zc_configure(xm_endpoint_t *ep, const xm_zc_config_t *cfg)
{
    int rc = -ENOENT;

    pthread_mutex_lock(&zlock);
    for (struct zc_ep *z = zc_eps; z; z = z->next)
        if (z->ep == ep) {
            zep_set(z, cfg);
            rc = 0;
        }
    pthread_mutex_unlock(&zlock);
    return rc;
}

void xm_zc_get_stats(xm_zc_stats_t *st)
{
    pthread_mutex_lock(&zlock);
    *st = zst;
    pthread_mutex_unlock(&zlock);
    st->invalidated = __atomic_load_n(&reg_invalidated, __ATOMIC_RELAXED);
    st->holed = __atomic_load_n(&reg_holed, __ATOMIC_RELAXED);
    st->fallback_bytes = __atomic_load_n(&zc_fallback_bytes, __ATOMIC_RELAXED);
    st->ring_bytes = __atomic_load_n(&zc_ring_bytes, __ATOMIC_RELAXED);
    st->pushed_bytes = __atomic_load_n(&zc_pushed_bytes, __ATOMIC_RELAXED);
}

void xm_zc_count_fallback(uint64_t bytes)
{
    __atomic_fetch_add(&zc_fallback_bytes, bytes, __ATOMIC_RELAXED);
}

void xm_zc_count_ring(uint64_t bytes)
{
    __atomic_fetch_add(&zc_ring_bytes, bytes, __ATOMIC_RELAXED);
}

void xm_zc_count_pushed(uint64_t bytes)
{
    __atomic_fetch_add(&zc_pushed_bytes, bytes, __ATOMIC_RELAXED);
}

__attribute__((destructor)) static void zc_print_stats(void)
{
    if (!xm_cfg_uint(XM_CFG_ZC_STATS))
        return;
    fprintf(stderr, "xenmpi-zc: pid=%d hits=%llu misses=%llu grants=%llu "
            "granted_pages=%llu shared=%llu revokes=%llu releases=%llu nospc=%llu "
            "fallback_bytes=%llu zc_bytes=%llu ring_bytes=%llu pushed_bytes=%llu\n", (int)getpid(),
            (unsigned long long)zst.hits, (unsigned long long)zst.misses,
            (unsigned long long)zst.grants, (unsigned long long)zst.granted_pages,
            (unsigned long long)zst.shared,
            (unsigned long long)zst.revokes, (unsigned long long)zst.releases,
            (unsigned long long)zst.nospc,
            (unsigned long long)__atomic_load_n(&zc_fallback_bytes, __ATOMIC_RELAXED),
            (unsigned long long)zst.zc_bytes,
            (unsigned long long)__atomic_load_n(&zc_ring_bytes, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&zc_pushed_bytes, __ATOMIC_RELAXED));
}

/* ---- geometry ---- */

/* The whole pages of [base, base+len): [*gs, *ge), empty when *ge <= *gs. */
void zc_span(uint64_t base, uint64_t len, uint64_t *gs, uint64_t *ge)
{
    if (len > UINT64_MAX - base || base > UINT64_MAX - (XM_PAGE_SIZE - 1)) {
        *gs = *ge = 0;
        return;
    }
    *gs = (base + XM_PAGE_SIZE - 1) & ~(uint64_t)(XM_PAGE_SIZE - 1);
    *ge = (base + len) & ~(uint64_t)(XM_PAGE_SIZE - 1);
    if (*ge < *gs)
        *ge = *gs;
}

/* Pages in chunk c of the span, 0 when c is past it. */
uint32_t zc_chunk_pages(uint64_t gs, uint64_t ge, uint64_t c)
{
    uint64_t total = (ge - gs) / XM_PAGE_SIZE, first;

    if (c >= (total + XM_ZC_CHUNK_PAGES - 1) / XM_ZC_CHUNK_PAGES)
        return 0;
    first = c * XM_ZC_CHUNK_PAGES;
    return (uint32_t)(total - first < XM_ZC_CHUNK_PAGES ? total - first : XM_ZC_CHUNK_PAGES);
}

size_t xm_zc_piece(uint64_t base, uint64_t len, uint64_t raddr, size_t n, int *zc)
{
    uint64_t gs, ge, lim;

    zc_span(base, len, &gs, &ge);
    *zc = 0;
    if (n > UINT64_MAX - raddr || ge <= gs || raddr >= ge || raddr + n <= gs)
        return n;
    if (raddr < gs)
        return (size_t)(gs - raddr);
    /* room left in the chunk, and before the end of the whole pages: as
     * lengths, so nothing wraps near the top of the address space */
    lim = XM_ZC_CHUNK_BYTES - (raddr - gs) % XM_ZC_CHUNK_BYTES;
    if (lim > ge - raddr)
        lim = ge - raddr;
    *zc = 1;
    return (size_t)(lim < n ? lim : n);
}

/* ---- registry ---- */

struct zc_region **reg_slot(uint64_t id)
{
    struct zc_region **pp = &zc_regions[id % ZC_REG_BUCKETS];

    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    return pp;
}

/* ---- memory events ----
 *
 * xm_zc_invalidate may run inside any munmap, including one made while
 * this thread or another holds zlock (free() of the core's own state, a
 * grant unmapped): it must not take zlock.  The registry's list has a
 * lock of its own, reg_lock: whoever changes the list holds zlock and
 * reg_lock, and reg_lock is held for list steps only, never across a
 * call that may unmap (free, munmap, an hv op).  The hook takes reg_lock
 * alone and marks what it meets dead, before the memory goes: a lookup
 * after it (under zlock) sees the mark.  Withdrawing the grants peers hold
 * needs zlock; progress and lookups do it (reg_revoke_dead). */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static int reg_dead_owed;          /* atomic: some dead region's grants are not withdrawn */

/* under reg_lock: [s, e) went away and meets r, which is not dead.  A
 * range over all of r's pages kills it; one over some of them makes a
 * hole (whole pages: grants are), and the rest stays reachable: a
 * registration cache's region may have grown over a neighbour that was
 * freed since, while the buffer in flight is still in use.  1 if r died. */
static int reg_hit(struct zc_region *r, uint64_t s, uint64_t e)
{
    const uint64_t pm = XM_PAGE_SIZE - 1;
    uint64_t end = r->base + r->len;
    uint64_t hs = s & ~pm, he = e > UINT64_MAX - pm ? UINT64_MAX : (e + pm) & ~pm;
    unsigned n = __atomic_load_n(&r->nholes, __ATOMIC_RELAXED);

    uint64_t pos = r->base & ~pm;

    if (n == ZC_MAX_HOLES) {
        /* more pieces gone than we keep track of: all of it goes */
        __atomic_store_n(&r->dead, 1, __ATOMIC_RELEASE);
        return 1;
    }
    r->hole[n][0] = hs;
    r->hole[n][1] = he;
    /* do the holes, this one too, cover all of it?  (a 0-length one is
     * the point base: its page) */
    for (unsigned i = 0; i <= n && pos < (r->len ? end : r->base + 1); ) {
        if (r->hole[i][0] <= pos && pos < r->hole[i][1]) {
            pos = r->hole[i][1];
            i = 0;
        } else {
            i++;
        }
    }
    if (pos >= (r->len ? end : r->base + 1)) {
        __atomic_store_n(&r->dead, 1, __ATOMIC_RELEASE);
        return 1;
    }
    __atomic_store_n(&r->nholes, n + 1, __ATOMIC_RELEASE);
    return 0;
}

int zc_reg_hole_meets(const struct zc_region *r, uint64_t addr, uint64_t len)
{
    unsigned n = __atomic_load_n(&r->nholes, __ATOMIC_ACQUIRE);
    /* a 0-length access is the point addr */
    uint64_t e = len ? addr + len : addr + 1;

    for (unsigned i = 0; i < n; i++)
        if (r->hole[i][0] < e && addr < r->hole[i][1])
            return 1;
    return 0;
}

void xm_zc_invalidate(const void *addr, size_t len)
{
    uint64_t s = (uintptr_t)addr, e;
    unsigned n = 0, holes = 0;

    if (!len)
        return;
    e = len > UINT64_MAX - s ? UINT64_MAX : s + len;
    pthread_mutex_lock(&reg_lock);
    for (unsigned b = 0; b < ZC_REG_BUCKETS; b++)
        for (struct zc_region *r = zc_regions[b]; r; r = r->next) {
            /* no overflow: zc_reg_locked checked base + len */
            uint64_t end = r->base + r->len;

            /* [base, end) meets [s, e); a 0-length one is the point base */
            if (__atomic_load_n(&r->dead, __ATOMIC_RELAXED) ||
                !(r->len ? r->base < e && s < end : s <= r->base && r->base < e))
                continue;
            if (reg_hit(r, s, e))
                n++;
            else
                holes++;
        }
    pthread_mutex_unlock(&reg_lock);
    if (!n && !holes)
        return;
    __atomic_fetch_add(&reg_invalidated, n, __ATOMIC_RELAXED);
    __atomic_fetch_add(&reg_holed, holes, __ATOMIC_RELAXED);
    __atomic_store_n(&reg_dead_owed, 1, __ATOMIC_RELEASE);
    /* progress withdraws the grants peers hold (zc_progress) */
    __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
}

/* under zlock: the grants of dead registrations, and those over their
 * holes, are withdrawn */
static void reg_revoke_dead(void)
{
    if (!__atomic_exchange_n(&reg_dead_owed, 0, __ATOMIC_ACQUIRE))
        return;
    for (unsigned b = 0; b < ZC_REG_BUCKETS; b++)
        for (struct zc_region *r = zc_regions[b]; r; r = r->next) {
            unsigned nh = __atomic_load_n(&r->nholes, __ATOMIC_ACQUIRE);

            if (r->revoked)
                continue;
            if (__atomic_load_n(&r->dead, __ATOMIC_ACQUIRE)) {
                r->revoked = 1;
                for (struct zc_owner_grant *o = ohead; o; o = o->next)
                    if (o->id == r->id)
                        zc_revoke(o);
                continue;
            }
            if (r->holes_revoked == nh)
                continue;
            r->holes_revoked = nh;
            for (struct zc_owner_grant *o = ohead; o; o = o->next)
                if (o->id == r->id && o->state == O_LIVE &&
                    zc_reg_hole_meets(r, o->addr, (uint64_t)o->npages * XM_PAGE_SIZE))
                    zc_revoke(o);
        }
}

struct zc_region *zc_reg_live(uint64_t id)
{
    struct zc_region *r = *reg_slot(id);

    reg_revoke_dead();
    return r && !__atomic_load_n(&r->dead, __ATOMIC_ACQUIRE) ? r : NULL;
}

/* under zlock: a registration id a peer cannot guess (a peer that was
 * never given one must not reach memory by trying): 64 bits from the
 * kernel's generator, never 0 and never one live now.  Taken 32 at a
 * time.  Without the generator (no getrandom: a kernel before 3.17, or a
 * seccomp filter), one error and the old counter. */
static uint64_t new_id(void)
{
    static uint64_t pool[32];
    static unsigned left;
    static int no_random;
    uint64_t id;

    for (;;) {
        if (!left && !no_random) {
            int rc = xm_random_bytes(pool, sizeof(pool));

            if (!rc) {
                left = 32;
            } else {
                no_random = 1;
                xm_error("zero-copy: no random bytes from the kernel (%s): registration "
                         "ids are a counter, which a connected peer can guess",
                         strerror(-rc));
            }
        }
        id = no_random ? zc_next_id++ : pool[--left];
        if (id && !*reg_slot(id))
            return id;
    }
}

static void copy_guard_install(void);

/* under zlock */
int zc_reg_locked(uint64_t base, uint64_t len, unsigned access, uint64_t *id)
{
    struct zc_region *r;

    if (base > UINT64_MAX - len || (access & ~3u))
        return -EINVAL;
    if (access)
        copy_guard_install();
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->base = base;
    r->len = len;
    r->access = access;
    r->id = new_id();
    pthread_mutex_lock(&reg_lock);
    r->next = zc_regions[r->id % ZC_REG_BUCKETS];
    zc_regions[r->id % ZC_REG_BUCKETS] = r;
    pthread_mutex_unlock(&reg_lock);
    *id = r->id;
    return 0;
}

/* under zlock */
int zc_dereg_locked(uint64_t id)
{
    struct zc_region **pp = reg_slot(id), *r = *pp;

    if (!r)
        return -ENOENT;
    pthread_mutex_lock(&reg_lock);
    *pp = r->next;
    pthread_mutex_unlock(&reg_lock);
    /* withdraw what peers hold; the grants end when they acknowledge */
    for (struct zc_owner_grant *o = ohead; o; o = o->next)
        if (o->id == id)
            zc_revoke(o);
    free(r->doms);
    free(r);
    return 0;
}

/* dom is one of those r was bound to (xm_zc_bind) */
static int zc_reg_bound_to(const struct zc_region *r, uint32_t dom)
{
    for (unsigned i = 0; i < r->ndoms; i++)
        if (r->doms[i] == dom)
            return 1;
    return 0;
}

int zc_reg_serves(const struct zc_region *r, uint32_t dom)
{
    return !r->ndoms || zc_reg_bound_to(r, dom);
}

int xm_zc_bind(uint64_t id, uint32_t dom)
{
    struct zc_region *r;
    int rc = 0;

    pthread_mutex_lock(&zlock);
    r = zc_reg_live(id);
    if (!r) {
        rc = -ENOENT;
    } else if (!zc_reg_bound_to(r, dom)) {
        if (r->ndoms == r->domcap) {
            unsigned cap = r->domcap ? 2 * r->domcap : 4;
            uint32_t *d = realloc(r->doms, cap * sizeof(*d));

            if (d) {
                r->doms = d;
                r->domcap = cap;
            } else {
                rc = -ENOMEM;
            }
        }
        if (!rc)
            r->doms[r->ndoms++] = dom;
    }
    pthread_mutex_unlock(&zlock);
    return rc;
}

int xm_zc_reg(const void *addr, size_t len, unsigned access, uint64_t *id)
{
    int rc;

    pthread_mutex_lock(&zlock);
    rc = zc_reg_locked((uintptr_t)addr, len, access, id);
    pthread_mutex_unlock(&zlock);
    return rc;
}

int xm_zc_dereg(uint64_t id)
{
    int rc;

    pthread_mutex_lock(&zlock);
    rc = zc_dereg_locked(id);
    pthread_mutex_unlock(&zlock);
    return rc;
}

void xm_zc_touch(uint64_t id)
{
    struct zc_owner_grant *o, *next, *mhead = NULL, *mtail = NULL;

    pthread_mutex_lock(&zlock);
    /* the registration's live grants, in their order, move behind the
     * others: owner_shrink withdraws from the front */
    for (o = ohead; o; o = next) {
        next = o->next;
        if (o->id != id || o->state != O_LIVE)
            continue;
        LIST_UNLINK(ohead, otail, o);
        LIST_APPEND(mhead, mtail, o);
    }
    if (mhead) {
        mhead->prev = otail;
        if (otail)
            otail->next = mhead;
        else
            ohead = mhead;
        otail = mtail;
    }
    pthread_mutex_unlock(&zlock);
}

/* ---- copies for peers that cannot fault the owner ----
 *
 * A peer's put or get is a memcpy into or out of a live registration; the
 * memory may still be inaccessible (the owner made it PROT_NONE or
 * read-only, or unmapped it with memory events off).  The copy runs with
 * this thread's copy_jb set; a SIGSEGV or SIGBUS then jumps back out of
 * it and the peer gets -EFAULT.  The kernel's process_vm_readv on
 * ourselves would do the same without a handler, but costs about 1.3 us
 * per call on the machine this was measured on (an 8-byte put: 0.15 us
 * with memcpy, 1.6 us with it).  The handler is put in front of whatever
 * handles these signals when a registration is made, if it is not there
 * already (a handler installed later, e.g. by the application, goes in
 * front of it); every fault outside a copy goes to the handler it
 * replaced, or the default action. */
static __thread sigjmp_buf *copy_jb __attribute__((tls_model("initial-exec")));
static struct sigaction prev_segv, prev_bus;

static void copy_fault(int sig, siginfo_t *si, void *uc)
{
    sigjmp_buf *jb = copy_jb;
    struct sigaction *prev = sig == SIGBUS ? &prev_bus : &prev_segv;

    if (jb) {
        copy_jb = NULL;
        siglongjmp(*jb, 1);
    }
    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, si, uc);
    } else if (prev->sa_handler == SIG_DFL || prev->sa_handler == SIG_IGN) {
        /* the faulting instruction runs again, and takes the default */
        signal(sig, SIG_DFL);
    } else {
        prev->sa_handler(sig);
    }
}

/* under zlock: our handler in front, once per handler that displaced it */
static void copy_guard_install(void)
{
    struct sigaction cur, mine;
    const int sigs[2] = { SIGSEGV, SIGBUS };

    for (int i = 0; i < 2; i++) {
        if (sigaction(sigs[i], NULL, &cur) || ((cur.sa_flags & SA_SIGINFO) &&
                                               cur.sa_sigaction == copy_fault))
            continue;
        memset(&mine, 0, sizeof(mine));
        mine.sa_sigaction = copy_fault;
        /* not blocked while it runs: the jump out leaves the mask alone */
        mine.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&mine.sa_mask);
        sigaction(sigs[i], &mine, i ? &prev_bus : &prev_segv);
    }
}

/* May [addr, addr+len) of live registration r be accessed so (one of
 * XM_ZC_REMOTE_READ, _WRITE)?  0, -EFAULT (outside it), -ENOENT (meets
 * pages that went away), -EACCES (no such right).  Under zlock. */
int zc_reg_range(const struct zc_region *r, uint64_t addr, uint64_t len, unsigned access)
{
    /* every subtraction is of a smaller value from a larger one */
    if (addr < r->base || len > r->len || addr - r->base > r->len - len)
        return -EFAULT;
    if (zc_reg_hole_meets(r, addr, len))
        return -ENOENT;   /* those pages went away: what is there now is not ours to give */
    if (!(r->access & access) || (access != XM_ZC_REMOTE_READ && access != XM_ZC_REMOTE_WRITE))
        return -EACCES;
    return 0;
}

static int guarded_copy(uint64_t addr, void *buf, uint64_t len, int to_mem)
{
    sigjmp_buf jb;

    if (sigsetjmp(jb, 0)) {
        return -EFAULT;   /* copy_jb was cleared by the handler */
    }
    copy_jb = &jb;
    if (to_mem)
        memcpy((void *)(uintptr_t)addr, buf, len);
    else
        memcpy(buf, (const void *)(uintptr_t)addr, len);
    copy_jb = NULL;
    return 0;
}

/* check_dom: a peer's request from domain dom, refused when r is bound
 * elsewhere (before the bounds: it learns nothing of the registration) */
static int reg_copy(int check_dom, uint32_t dom, uint64_t id, uint64_t addr, uint64_t len,
                    unsigned access, void *buf)
{
    struct zc_region *r;
    int rc = 0;

    pthread_mutex_lock(&zlock);
    r = zc_reg_live(id);
    if (!r)
        rc = -ENOENT;
    else if (check_dom && !zc_reg_serves(r, dom))
        rc = -EACCES;
    else
        rc = zc_reg_range(r, addr, len, access);
    if (!rc && len && buf)
        rc = guarded_copy(addr, buf, len, access == XM_ZC_REMOTE_WRITE);
    /* under the lock: a concurrent dereg waits until the copy is done */
    pthread_mutex_unlock(&zlock);
    return rc;
}

int xm_zc_reg_copy(uint64_t id, uint64_t addr, uint64_t len, unsigned access, void *buf)
{
    return reg_copy(0, 0, id, addr, len, access, buf);
}

int xm_zc_reg_copy_from(uint32_t dom, uint64_t id, uint64_t addr, uint64_t len,
                        unsigned access, void *buf)
{
    return reg_copy(1, dom, id, addr, len, access, buf);
}

int xm_zc_reg_check_from(uint32_t dom, uint64_t id, uint64_t addr, uint64_t len,
                         unsigned access)
{
    return reg_copy(1, dom, id, addr, len, access, NULL);
}

/* ---- sending: queued under zlock, sent after it is dropped ----
 *
 * Locking rule: zlock is never held across a call into the channel.  A
 * message made under the lock goes to the outbox (one list, in order);
 * the endpoint that owns the message's channel sends it from its own
 * thread (outbox_flush), after the lock is dropped, right after the call
 * that made it or from its progress.  Per channel the order is kept
 * however many channels are blocked on a full ring. */

void zsend(xm_channel_t *ch, uint16_t type, const void *p, size_t len)
{
    struct zc_msg *m;

    if (ch->zc_over)
        return;   /* failing: nothing more for it */
    if (ch->zc_queued >= ZC_OUTBOX_CAP) {
        /* a peer that asks and never consumes: it gets nothing more, and
         * its channel fails from the next flush (this thread may not be
         * the channel's) */
        xm_error("zero-copy: domain %u endpoint %u leaves %u answers unread while "
                 "it keeps asking: closing its channel", xm_chan_peer_dom(ch),
                 xm_chan_peer_ep(ch), ch->zc_queued);
        ch->zc_over = 1;
        __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
        return;
    }
    m = malloc(sizeof(*m) + len);
    if (!m) {
        /* cannot keep the promise to answer: the peer's request stays
         * pending until the channel closes; say so */
        xm_error("zero-copy: no memory to queue a message of type 0x%x to domain %u",
                 type, xm_chan_peer_dom(ch));
        return;
    }
    m->next = NULL;
    m->ch = ch;
    m->fail = 0;
    m->type = type;
    m->len = len;
    memcpy(m->data, p, len);
    ch->zc_queued++;
    *outbox_tail = m;
    outbox_tail = &m->next;
    __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
}

static int chan_in(xm_channel_t *const *v, unsigned n, const xm_channel_t *ch)
{
    for (unsigned i = 0; i < n; i++)
        if (v[i] == ch)
            return 1;
    return 0;
}

/* Send ep's queued messages; called without zlock, from ep's thread (the
 * only one that sends on ep's channels, and the only one that flushes
 * them: so taking them out and putting the unsent back keeps the order). */
int outbox_flush(xm_endpoint_t *ep)
{
    struct zc_msg *mine = NULL, **mt = &mine, **pp, *m, *unsent = NULL, **ut = &unsent;
    xm_channel_t **blocked = NULL;
    unsigned nblocked = 0, cap = 0;
    int sent = 0;

    pthread_mutex_lock(&zlock);
    for (pp = &outbox; (m = *pp);) {
        if (xm_chan_endpoint(m->ch) == ep) {
            *pp = m->next;
            m->next = NULL;
            m->ch->zc_queued--;
            m->fail = m->ch->zc_over;
            *mt = m;
            mt = &m->next;
        } else {
            pp = &m->next;
        }
    }
    outbox_tail = pp;
    pthread_mutex_unlock(&zlock);
    if (!mine)
        return 0;

    while ((m = mine)) {
        int rc = -EAGAIN;

        mine = m->next;
        m->next = NULL;
        if (m->fail) {
            chan_fail(m->ch, XM_CH_FAILED);   /* reported from progress */
            free(m);
            continue;
        }
        /* behind a message that did not fit, the rest of that channel waits */
        if (!chan_in(blocked, nblocked, m->ch))
            rc = xm_chan_send(m->ch, m->type, m->data, m->len, NULL, 0);
        if (rc != -EAGAIN) {
            sent += rc == 0;
            free(m);   /* sent, or the channel is down (chan_gone cleans up) */
            continue;
        }
        if (!chan_in(blocked, nblocked, m->ch)) {
            if (nblocked == cap) {
                xm_channel_t **b = realloc(blocked, (cap ? cap * 2 : 8) * sizeof(*b));
                if (!b) {
                    /* cannot remember the block: keep everything else
                     * queued too, so nothing overtakes it */
                    *ut = m;
                    ut = &m->next;
                    *ut = mine;
                    mine = NULL;
                    break;
                }
                blocked = b;
                cap = cap ? cap * 2 : 8;
            }
            blocked[nblocked++] = m->ch;
        }
        *ut = m;
        ut = &m->next;
    }
    free(blocked);
    if (unsent) {
        /* older than anything queued meanwhile: back to the front */
        pthread_mutex_lock(&zlock);
        for (m = unsent; m; m = m->next)
            m->ch->zc_queued++;
        while (*ut)
            ut = &(*ut)->next;
        *ut = outbox;
        if (!outbox)
            outbox_tail = ut;
        outbox = unsent;
        __atomic_store_n(&xm_zc_work, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&zlock);
    }
    return sent;
}

/* ---- the service on each endpoint ---- */

static void zc_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    struct zc_donelist dl = { 0 };

    pthread_mutex_lock(&zlock);
    switch (type) {
    case XM_REC_ZC_GREQ:  owner_greq(ch, data, len); break;
    case XM_REC_ZC_GREP:  peer_grep(ch, data, len, &dl); break;
    case XM_REC_ZC_INVAL: peer_inval(ch, data, len); break;
    case XM_REC_ZC_ACK:
    case XM_REC_ZC_REL:   owner_end(ch, type, data, len); break;
    default:              zst.rejected++; break;
    }
    pthread_mutex_unlock(&zlock);
    done_run(&dl);
    outbox_flush(xm_chan_endpoint(ch));
}

static void zc_chan_gone(void *arg, xm_channel_t *ch)
{
    struct zc_donelist dl = { 0 };
    struct zc_msg **pp = &outbox, *m;

    pthread_mutex_lock(&zlock);
    for (struct zc_nogrant **gp = &zc_nogrant_chans, *g; (g = *gp);) {
        if (g->ch == ch) {
            *gp = g->next;
            free(g);
        } else {
            gp = &g->next;
        }
    }
    outbox_tail = &outbox;
    while ((m = *pp)) {
        if (m->ch == ch) {
            *pp = m->next;
            free(m);
        } else {
            outbox_tail = &m->next;
            pp = &m->next;
        }
    }
    for (struct zc_park *p = park_take(ch, 1), *nx; p; p = nx) {
        nx = p->next;
        free(p);
    }
    /* the peer can no longer use what we granted over this channel */
    for (struct zc_owner_grant *o = ohead, *nx; o; o = nx) {
        nx = o->next;
        if (o->ch == ch)
            owner_grant_end(o);
    }
    /* their table entries are free: what waited for room may have it (its
     * answers go out from the endpoint's progress, xm_zc_work) */
    owner_retry_nospc(xm_chan_endpoint(ch));
    for (struct zc_peer_refs *e = phead, *nx; e; e = nx) {
        nx = e->next;
        if (e->ch == ch) {
            peer_refs_run_waiters(ch, e, -EPIPE, &dl);
            peer_refs_free(e);
        }
    }
    pthread_mutex_unlock(&zlock);
    done_run(&dl);
}

void xm_zc_cancel(void *arg)
{
    pthread_mutex_lock(&zlock);
    for (struct zc_peer_refs *e = phead; e; e = e->next) {
        struct zc_waiter **pp = &e->wait, *w;

        e->wait_tail = &e->wait;
        while ((w = *pp)) {
            if (w->arg == arg) {
                *pp = w->next;
                free(w);
            } else {
                e->wait_tail = &w->next;
                pp = &w->next;
            }
        }
    }
    pthread_mutex_unlock(&zlock);
}

static int zc_progress(void *arg, xm_endpoint_t *ep)
{
    int n;

    /* a hint read without the lock: the progress after a change sees it */
    if (__builtin_expect(!__atomic_load_n(&xm_zc_work, __ATOMIC_RELAXED), 1))
        return 0;
    pthread_mutex_lock(&zlock);
    reg_revoke_dead();
    if (revoke_owed)
        send_revokes(ep);
    if (inval_sent)
        owner_expire(ep, zc_now());
    /* a region killed after reg_revoke_dead keeps the hint; withdrawals
     * waiting for their ACK keep it too (their deadline) */
    __atomic_store_n(&xm_zc_work, revoke_owed || outbox || inval_sent ||
                     __atomic_load_n(&reg_dead_owed, __ATOMIC_ACQUIRE), __ATOMIC_RELAXED);
    pthread_mutex_unlock(&zlock);
    n = outbox_flush(ep);
    /* what stays queued waits for ring space: the peer's release wakes us */
    return n;
}

/* The endpoint closed: its channels are gone, and with them everything
 * counted against its settings. */
static void zc_close(void *arg)
{
    struct zc_ep *z = arg, **zp;

    pthread_mutex_lock(&zlock);
    for (zp = &zc_eps; *zp && *zp != z; zp = &(*zp)->next)
        ;
    if (*zp)
        *zp = z->next;
    pthread_mutex_unlock(&zlock);
    free(z);
}

int xm_zc_service(xm_endpoint_t *ep, const xm_zc_config_t *cfg, xm_service_t *svc)
{
    struct zc_ep *z = calloc(1, sizeof(*z));

    if (!z)
        return -ENOMEM;
    z->ep = ep;
    zep_set(z, cfg);
    pthread_mutex_lock(&zlock);
    z->next = zc_eps;
    zc_eps = z;
    pthread_mutex_unlock(&zlock);
    *svc = (xm_service_t){
        .first_type = XM_REC_ZC_FIRST,
        .last_type  = XM_REC_ZC_LAST,
        .recv       = zc_recv,
        .chan_gone  = zc_chan_gone,
        .progress   = zc_progress,
        .close      = zc_close,
        .arg        = z,
    };
    return 0;
}

int xm_zc_attach(xm_endpoint_t *ep, const xm_zc_config_t *cfg)
{
    xm_service_t svc;
    int rc = xm_zc_service(ep, cfg, &svc);

    if (!rc && (rc = xm_endpoint_add_service(ep, &svc)))
        zc_close(svc.arg);
    return rc;
}
