/*
 * xm_zc_cache.c - zero-copy: the registration cache for adapters that have
 * none of their own (the MPICH netmod; the UCX transport uses UCX's rcache).
 *
 * A registration is kept after its last put, so the next message from the
 * same buffer gets the same id and the grants its peers hold for it keep
 * hitting: no grant request, no fresh grant, no withdrawal per message.
 *
 * What makes that safe is the backend's stale report
 * (xm_hv_grant_mem_stale): on Xen a grant pins the pages that were mapped
 * when it was made, and a buffer unmapped and mapped again (free, then
 * malloc of the same addresses) would have peers read the old pages.
 * Every get first takes the reports: each stale grant is withdrawn, and a
 * cached registration that had one is deregistered, so its id is never
 * handed out again and the next get registers anew.  The new id matters:
 * a peer learns of the withdrawal over the channel the grant went out on,
 * which need not be the one the adapter sends the id on, so only an id the
 * peer has never seen is sure to miss its cache.  Where the backend cannot
 * tell (-ENOTSUP: an old module), nothing is kept.
 *
 * Entries are found by (address, length, access); in use (between get and
 * put) they stay; unused ones are kept up to max_unused, the least recently
 * used deregistered first.  All state is under zlock, like the rest of
 * zero-copy.
 */
#include "xm_zc_int.h"
#include "xm_log.h"

#include <errno.h>
#include <stdlib.h>

#define CACHE_BUCKETS 64u
#define STALE_BATCH 64u

struct zc_centry {
    struct zc_centry *hnext;             /* bucket */
    struct zc_centry *prev, *next;       /* unused entries, least recently used first */
    uint64_t base, len, id;
    unsigned access;
    unsigned users;
    int dead;                            /* stale: deregistered at the last put */
};

struct xm_zc_regcache {
    xm_hv_t *hv;
    unsigned max_unused, nunused;
    int keep;                            /* 0: the backend cannot report stale grants */
    struct zc_centry *head, *tail;       /* unused */
    struct zc_centry *bucket[CACHE_BUCKETS];
    uint64_t hits, misses, stale;
};

static unsigned bucket_of(uint64_t base)
{
    return (unsigned)((base >> 12) ^ (base >> 24)) % CACHE_BUCKETS;
}

static struct zc_centry **entry_slot(xm_zc_regcache_t *c, uint64_t base, uint64_t len,
                                     unsigned access)
{
    struct zc_centry **pp = &c->bucket[bucket_of(base)];

    while (*pp && ((*pp)->base != base || (*pp)->len != len || (*pp)->access != access))
        pp = &(*pp)->hnext;
    return pp;
}

static struct zc_centry *entry_of_id(xm_zc_regcache_t *c, uint64_t id)
{
    for (unsigned b = 0; b < CACHE_BUCKETS; b++)
        for (struct zc_centry *e = c->bucket[b]; e; e = e->hnext)
            if (e->id == id)
                return e;
    return NULL;
}

/* Deregister e's id and forget e (users 0, not on the unused list). */
static void entry_drop(xm_zc_regcache_t *c, struct zc_centry *e)
{
    struct zc_centry **pp = &c->bucket[bucket_of(e->base)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    zc_dereg_locked(e->id);
    free(e);
}

static void unused_unlink(xm_zc_regcache_t *c, struct zc_centry *e)
{
    LIST_UNLINK(c->head, c->tail, e);
    c->nunused--;
}

/* Deregister an unused entry and forget it. */
static void unused_drop(xm_zc_regcache_t *c, struct zc_centry *e)
{
    unused_unlink(c, e);
    entry_drop(c, e);
}

/* The backend's reports: withdraw each stale grant; a cached registration
 * that had one dies.  Under zlock.  -ENOTSUP: the backend cannot tell. */
static int take_stale(xm_zc_regcache_t *c)
{
    uint64_t h[STALE_BATCH];
    int n;

    do {
        n = xm_hv_grant_mem_stale(c->hv, h, STALE_BATCH);
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) {
            for (struct zc_owner_grant *o = ohead; o; o = o->next) {
                struct zc_centry *e;

                if (o->hv != c->hv || o->g->handle != h[i])
                    continue;
                zc_revoke(o);   /* every channel sharing the grant */
                e = entry_of_id(c, o->id);
                if (e && !e->dead) {
                    e->dead = 1;
                    c->stale++;
                    xm_debug("zero-copy: registration %llu at %#llx (%llu bytes) "
                             "changed under a grant: registered anew at next use",
                             (unsigned long long)e->id, (unsigned long long)e->base,
                             (unsigned long long)e->len);
                    if (!e->users) {
                        unused_drop(c, e);
                    }
                }
            }
        }
    } while (n == (int)STALE_BATCH);
    return 0;
}

int xm_zc_regcache_open(xm_endpoint_t *ep, unsigned max_unused, xm_zc_regcache_t **out)
{
    xm_zc_regcache_t *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->hv = xm_endpoint_hv(ep);
    c->max_unused = max_unused;
    c->keep = 1;
    *out = c;
    return 0;
}

void xm_zc_regcache_close(xm_zc_regcache_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&zlock);
    for (unsigned b = 0; b < CACHE_BUCKETS; b++) {
        for (struct zc_centry *e = c->bucket[b], *nx; e; e = nx) {
            nx = e->hnext;
            if (e->users)
                xm_warn("zero-copy: registration %llu still in use (%u) when its "
                        "cache closed", (unsigned long long)e->id, e->users);
            zc_dereg_locked(e->id);
            free(e);
        }
    }
    pthread_mutex_unlock(&zlock);
    free(c);
}

int xm_zc_regcache_get(xm_zc_regcache_t *c, const void *addr, size_t len, unsigned access,
                       uint64_t *id)
{
    const uint64_t base = (uintptr_t)addr;
    struct zc_centry **pp, *e;
    int rc;

    if (base > UINT64_MAX - len || !access || (access & ~3u))
        return -EINVAL;
    pthread_mutex_lock(&zlock);
    if (c->keep && c->max_unused && take_stale(c) == -ENOTSUP) {
        xm_info("zero-copy: the backend cannot report stale grants: registrations "
                "are not kept across messages");
        c->keep = 0;
        /* what was kept can no longer be trusted */
        while (c->head)
            unused_drop(c, c->head);
        for (unsigned b = 0; b < CACHE_BUCKETS; b++)
            for (e = c->bucket[b]; e; e = e->hnext)
                e->dead = 1;
    }
    pp = entry_slot(c, base, len, access);
    e = *pp;
    if (e && !e->dead) {
        struct zc_region *r = zc_reg_live(e->id);

        /* its memory went away (xm_zc_invalidate), all of it or pages */
        if (!r || __atomic_load_n(&r->nholes, __ATOMIC_ACQUIRE))
            e->dead = 1;
    }
    if (e && !e->dead) {
        if (!e->users++)
            unused_unlink(c, e);
        c->hits++;
        *id = e->id;
        pthread_mutex_unlock(&zlock);
        return 0;
    }
    c->misses++;
    /* a dead one in use stays until its put; this one goes in front of it */
    e = calloc(1, sizeof(*e));
    rc = e ? zc_reg_locked(base, len, access, &e->id) : -ENOMEM;
    if (rc) {
        free(e);
        pthread_mutex_unlock(&zlock);
        return rc;
    }
    e->base = base;
    e->len = len;
    e->access = access;
    e->users = 1;
    e->hnext = c->bucket[bucket_of(base)];
    c->bucket[bucket_of(base)] = e;
    *id = e->id;
    pthread_mutex_unlock(&zlock);
    return 0;
}

int xm_zc_regcache_put(xm_zc_regcache_t *c, uint64_t id)
{
    struct zc_centry *e;

    pthread_mutex_lock(&zlock);
    e = entry_of_id(c, id);
    if (!e || !e->users) {
        pthread_mutex_unlock(&zlock);
        return -ENOENT;
    }
    if (--e->users == 0) {
        if (e->dead || !c->keep || !c->max_unused) {
            entry_drop(c, e);
        } else {
            LIST_APPEND(c->head, c->tail, e);
            if (++c->nunused > c->max_unused) {
                struct zc_centry *old = c->head;

                unused_drop(c, old);
            }
        }
    }
    pthread_mutex_unlock(&zlock);
    return 0;
}

void xm_zc_regcache_stats(xm_zc_regcache_t *c, xm_zc_regcache_stats_t *st)
{
    pthread_mutex_lock(&zlock);
    st->hits = c->hits;
    st->misses = c->misses;
    st->stale = c->stale;
    st->unused = c->nunused;
    st->keeps = c->keep;
    pthread_mutex_unlock(&zlock);
}
