/*
 * xm_zc_int.h - zero-copy internals shared by xm_zc.c (registry, outbox,
 * the service), xm_zc_owner.c (grants we make) and xm_zc_peer.c (grants
 * we use).  Everything here is guarded by zlock; nothing is exported.
 */
#ifndef XM_ZC_INT_H
#define XM_ZC_INT_H

#include "xm_zc.h"
#include "xm_wire.h"

#include <pthread.h>

#pragma GCC visibility push(hidden)

#define ZC_DEFAULT_CACHE (64ull << 20)
#define ZC_REG_BUCKETS 256u
#define ZC_MAX_SEGS (XM_ZC_CHUNK_PAGES + 1)
#define ZC_MAX_HOLES 4u   /* per registration; one more kills it */

/* the messages (xm_wire.h) */
#define zc_greq xm_zc_greq
#define zc_grep xm_zc_grep
#define ZC_F_WRITE XM_ZC_F_WRITE

/* ---- state ---- */

struct zc_region {
    struct zc_region *next;
    uint64_t id;
    uint64_t base, len;
    unsigned access;
    int dead;       /* atomic: its memory went away (xm_zc_invalidate): refused */
    int revoked;    /* dead, and its grants withdrawn (under zlock) */
    /* Pages of it that went away while the rest stayed (a registration
     * cache's region that grew over a neighbour freed since): accesses
     * meeting one are refused, the rest works.  Written under reg_lock,
     * published by nholes (atomic, release); never removed. */
    unsigned nholes;
    unsigned holes_revoked;   /* holes whose grants are withdrawn (under zlock) */
    uint64_t hole[ZC_MAX_HOLES][2];   /* [start, end), whole pages */
    /* xm_zc_bind: the peer domains it serves, none: every one (under zlock) */
    uint32_t *doms;
    unsigned ndoms, domcap;
};
/* under zlock: 1 if r serves requests from domain dom (xm_zc_bind) */
int zc_reg_serves(const struct zc_region *r, uint32_t dom);
/* 1 if [addr, addr + len) meets a page of r that went away */
int zc_reg_hole_meets(const struct zc_region *r, uint64_t addr, uint64_t len);
int zc_reg_range(const struct zc_region *r, uint64_t addr, uint64_t len, unsigned access);

/* An owner grant: O_LIVE (the peer may use it) -> O_INVAL_OWED (withdrawn:
 * deregistration, the cache cap, a full table; INVAL not sent yet) ->
 * O_INVAL_SENT (INVAL queued; it ends on the peer's ACK).  The peer's REL
 * or the channel's end ends it in any state. */
enum { O_LIVE, O_INVAL_OWED, O_INVAL_SENT };

/* Owner: one grant of one chunk to one channel's peer. */
struct zc_owner_grant {
    struct zc_owner_grant *prev, *next;  /* least recently used first */
    xm_channel_t *ch;
    struct zc_ep *zep;            /* ch's endpoint's */
    xm_hv_t *hv;
    uint64_t id;
    uint32_t chunk;
    uint32_t gen;
    int rw;
    int state;
    double deadline;              /* O_INVAL_SENT: ended anyway at this time */
    int overdue;                  /* the deadline passed; ended at the next check
                                   * unless the ACK was in the ring meanwhile */
    struct zc_grant *g;           /* the grant, maybe shared with other channels */
    uint64_t addr;                /* first granted page */
    uint32_t npages;
    uint32_t refs[XM_ZC_CHUNK_PAGES];
};

/* Owner: one xm_hv_grant_mem grant.  Grants are to a domain, so peers in
 * one domain (several ranks in a VM) asking for the same chunk over their
 * own channels share one: each channel has its own zc_owner_grant (its own gen,
 * withdrawal and ACK), and the grant ends with the last of them. */
struct zc_grant {
    uint64_t handle;
    unsigned users;
};

/* Owner: a grant request that met one of our grants to the same peer still
 * covering those addresses (-EEXIST) while it is being withdrawn: the
 * memory was unmapped and mapped again, deregistered and registered anew.
 * Answered when the withdrawn grant ends (the peer's ACK).  Or (nospc) one
 * that met a full grant table while withdrawals over its endpoint's
 * channels were freeing enough for it: retried, oldest first, as grants of
 * that endpoint end. */
struct zc_park {
    struct zc_park *next;
    xm_channel_t *ch;
    struct zc_greq q;
    uint32_t np;     /* pages asked for */
    int nospc;
};
#define ZC_MAX_PARKED 64u   /* per channel; beyond, the request is refused */
/* Messages queued for one channel whose ring is full (answers to its
 * requests, withdrawals): a peer that keeps asking and never consumes gets
 * its channel failed past this many, about 16 MiB at most (the largest,
 * a GREP of 256 refs, is under 1.1 KiB).  An honest peer has at most a
 * few per chunk of its outstanding copies queued. */
#define ZC_OUTBOX_CAP 16384u

struct zc_waiter {
    struct zc_waiter *next;
    void *local;
    uint64_t raddr;
    size_t n;
    int dir;
    int has_src;      /* local is our registration src's (xm_zc_copy_from_reg) */
    uint64_t src;
    xm_zc_cb_t cb;
    void *arg;
};

/* Peer refs: P_PENDING (GREQ sent, or waiting for the channel's window of
 * requests to let it out: copies wait on it) -> P_LIVE (refs
 * cached).  Freed on the owner's INVAL (ACK sent), on eviction (REL sent),
 * when a copy through them fails (REL, ask again), on a refusal, or with
 * the channel. */
enum { P_PENDING, P_LIVE };

/* Peer: refs of one chunk of one owner registration, seen over ch. */
struct zc_peer_refs {
    struct zc_peer_refs *prev, *next;  /* least recently used first */
    xm_channel_t *ch;
    struct zc_ep *zep;            /* ch's endpoint's */
    uint64_t id;
    uint32_t chunk;
    uint32_t gen;
    int rw;
    int state;
    int asked;                    /* P_PENDING: its GREQ went out (else waits its turn) */
    uint64_t cstart;              /* owner address of the chunk's first page */
    uint32_t npages;              /* expected, then granted */
    struct zc_waiter *wait, **wait_tail;
    uint32_t refs[XM_ZC_CHUNK_PAGES];
};

/* Channels whose owner answered -ENODEV (no xenmpi_grant module): not
 * asked again while the channel lives; copies there go the copy path at
 * once instead of after a round trip each. */
struct zc_nogrant {
    struct zc_nogrant *next;
    xm_channel_t *ch;
};

struct zc_msg {
    struct zc_msg *next;
    xm_channel_t *ch;
    int fail;          /* its channel went over ZC_OUTBOX_CAP: fail it, drop this */
    uint16_t type;
    size_t len;
    uint8_t data[];
};

struct zc_list { void *head, *tail; };

struct zc_done {
    xm_zc_cb_t cb;
    void *arg;
    int status;
};

struct zc_donelist {
    struct zc_done *d;
    unsigned n, cap;
};

/* One per endpoint with zero-copy attached: its settings and what its
 * channels hold against them. */
struct zc_ep {
    struct zc_ep *next;
    xm_endpoint_t *ep;
    xm_zc_config_t cfg;           /* 0 caps replaced by the defaults */
    uint64_t owner_live_pages;    /* live grants over its channels */
    uint64_t peer_pages;          /* refs cached for its channels */
};

extern pthread_mutex_t zlock;
extern struct zc_ep *zc_eps;
extern xm_zc_stats_t zst;
extern uint64_t zc_fallback_bytes;
extern uint64_t zc_next_id;
extern uint32_t zc_next_gen;
extern struct zc_region *zc_regions[ZC_REG_BUCKETS];
extern struct zc_owner_grant *ohead, *otail;
extern struct zc_peer_refs *phead, *ptail;
extern struct zc_msg *outbox, **outbox_tail;
extern struct zc_nogrant *zc_nogrant_chans;
extern struct zc_park *zc_parked;
extern int revoke_owed;
/* owner grants O_INVAL_SENT, and the earliest of their deadlines */
extern unsigned inval_sent;
extern double inval_next;
void owner_expire(xm_endpoint_t *ep, double now);
double zc_now(void);   /* CLOCK_MONOTONIC, seconds */

/* doubly-linked list helpers for owner grants and peer refs (same prev/next layout) */
#define LIST_UNLINK(head, tail, e) do {                  \
        if ((e)->prev) (e)->prev->next = (e)->next;      \
        else (head) = (e)->next;                         \
        if ((e)->next) (e)->next->prev = (e)->prev;      \
        else (tail) = (e)->prev;                         \
        (e)->prev = (e)->next = NULL;                    \
    } while (0)
#define LIST_APPEND(head, tail, e) do {                  \
        (e)->prev = (tail);                              \
        (e)->next = NULL;                                \
        if (tail) (tail)->next = (e);                    \
        else (head) = (e);                               \
        (tail) = (e);                                    \
    } while (0)

/* shared between xm_zc.c, xm_zc_owner.c and xm_zc_peer.c, under zlock
 * unless said otherwise */
struct zc_ep *zep_of(const xm_channel_t *ch);   /* never NULL for a served channel */
void zsend(xm_channel_t *ch, uint16_t type, const void *p, size_t len);
int outbox_flush(xm_endpoint_t *ep);   /* without zlock */
void zc_span(uint64_t base, uint64_t len, uint64_t *gs, uint64_t *ge);
uint32_t zc_chunk_pages(uint64_t gs, uint64_t ge, uint64_t c);
struct zc_region **reg_slot(uint64_t id);
/* the live registration id (the memory-event reports taken first), or NULL */
struct zc_region *zc_reg_live(uint64_t id);
int zc_reg_locked(uint64_t base, uint64_t len, unsigned access, uint64_t *id);
int zc_dereg_locked(uint64_t id);
/* owner */
void zc_revoke(struct zc_owner_grant *o);
void send_revokes(xm_endpoint_t *ep);
void owner_greq(xm_channel_t *ch, const void *data, size_t len);
void owner_end(xm_channel_t *ch, uint16_t type, const void *data, size_t len);
struct zc_park *park_take(xm_channel_t *ch, int all);
void owner_retry_nospc(xm_endpoint_t *ep);
void owner_grant_end(struct zc_owner_grant *o);
/* peer */
void peer_grep(xm_channel_t *ch, const void *data, size_t len, struct zc_donelist *dl);
void peer_inval(xm_channel_t *ch, const void *data, size_t len);
void peer_refs_run_waiters(xm_channel_t *ch, struct zc_peer_refs *e, int status, struct zc_donelist *dl);
void peer_refs_free(struct zc_peer_refs *e);
void done_add(struct zc_donelist *dl, xm_zc_cb_t cb, void *arg, int status);
void done_run(struct zc_donelist *dl);   /* without zlock */

#pragma GCC visibility pop

#endif
