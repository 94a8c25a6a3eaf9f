/*
 * xm_channel_int.h - the endpoint and channel structures and what
 * xm_channel.c (endpoint, data path, progress) and xm_handshake.c (the
 * store rendezvous, setup and teardown of a channel's grants) share.
 * Nothing here is exported.
 */
#ifndef XM_CHANNEL_INT_H
#define XM_CHANNEL_INT_H

#include "xm_channel.h"
#include "xm_log.h"
#include "xm_wire.h"

#pragma GCC visibility push(hidden)

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* the receive copy buffer: a peer's ring may be larger than ours, so it
 * holds the largest message any ring allows */
#define XM_RXBUF_SIZE XM_MAX_MSG((size_t)XM_RING_MAX_PAGES * XM_PAGE_SIZE)
#define XM_MAX_SERVICES 4
/* events drained per slow progress: a peer that keeps notifying cannot
 * hold progress (the fd stays readable, the next slow path goes on) */
#define XM_EVT_DRAIN_MAX 64

#ifdef XM_TEST_SEAMS
/* test builds only (test/unit/test_channel): a peer acting between two of
 * our loads */
extern void (*xm_test_seam)(xm_channel_t *ch, int point);
#define SEAM(ch, point) do { if (xm_test_seam) xm_test_seam((ch), (point)); } while (0)
#else
#define SEAM(ch, point) do { } while (0)
#endif

struct xm_channel {
    xm_endpoint_t *ep;
    xm_channel_t *next;
    enum xm_chan_state state;
    int initiator;
    uint32_t peer_dom, peer_ep;
    uint64_t peer_key;    /* initiator: the listener's key, as its address gave it */
    uint32_t port;
    int port_open;
    void *user;

    /* ours, granted read-only to the peer */
    struct xm_ctrl_page *my;
    uint32_t my_ref;
    uint8_t *tx;
    uint32_t tx_refs[XM_RING_MAX_PAGES];
    uint32_t tx_pages, tx_size;

    /* the peer's, mapped read-only */
    const struct xm_ctrl_page *peer;
    const uint8_t *rx;
    uint32_t rx_pages, rx_size;

    /* fast-path state, private */
    uint32_t prod, cached_cons;
    uint32_t published;   /* prod as the peer sees it (a PAD may be ahead) */
    uint32_t op_published; /* published as far as the last record a flush waits for */
    int down_owed;        /* failed or gone: release and report in progress */
    uint32_t cons, released;
    uint32_t rx_pf;       /* ring lines chan_poll prefetches: 5 after a record of up to 256 B, else 1 */
    uint32_t notified;    /* the peer's last sleep generation we notified */
    uint32_t arm_seq;     /* our sleep generation */
    size_t reserved;
    double deadline;      /* CONNECTING: give up after this (monotonic s) */
    int tx_awaiting;          /* waiting for the peer to consume (space, completion) */
    uint32_t tx_await_cons; /* the peer's consumer index when we started waiting */
    xm_chan_stats_t st;
    uint32_t home_watch;  /* non-zero: the watch on the peer domain's presence node */
    int home_seen;        /* that node was read once (a peer that publishes one) */
    int home_gone;        /* that node was removed: the peer's domain is gone */
    int req_watched;      /* initiator: our request node is watched (refusal) */
    char req_path[XM_STORE_MAX_PATH];  /* initiator: our request node */
    char resp_path[XM_STORE_MAX_PATH]; /* response node (ours or the peer's) */
    /* the zero-copy service's messages queued for this channel, not yet
     * in its ring (xm_zc.c, under zlock); over its cap the channel fails */
    unsigned zc_queued;
    int zc_over;
    /* pages of the grant requests (GREQ) sent on it and not yet answered
     * (xm_zc_peer.c, under zlock) */
    uint64_t zc_asked;
};

struct xm_endpoint {
    xm_hv_t *hv;
    xm_ep_params_t p;
    uint32_t id;
    uint64_t key;        /* random: a connection request must carry it */
    char dir[128];
    char req_dir[160];
    int epfd;
    xm_channel_t *chans;
    uint8_t *rxbuf;
    size_t max_msg;      /* what the smallest ring we fall back to holds */
    unsigned min_pages;  /* that ring (p.ring_pages: no fallback) */
    unsigned ring_now;   /* ring size new channels try first: p.ring_pages,
                          * halved each time one was refused */
    unsigned idle;       /* progress calls since the slow path last ran */
    unsigned connecting; /* channels waiting for a handshake answer */
    int armed;           /* some channel's rx_arm has the armed bit set */
    int down_owed;       /* some channel has down_owed set */
    double connect_timeout;
    unsigned nservices;
    xm_service_t services[XM_MAX_SERVICES];
    uint64_t unclaimed;  /* records of a type no service claimed */
    uint32_t home_watches; /* tokens given out for peer domains' presence nodes */
};

double mono_now(void);
/* memory the endpoint allocated for itself: the owner may place it */
void ep_place(xm_endpoint_t *ep, void *addr, size_t len);
xm_channel_t *find_chan(xm_endpoint_t *ep, uint32_t dom, uint32_t pep, int live_only);
/* undo a channel's grants, mappings, port and store nodes (idempotent) */
void chan_release(xm_channel_t *ch);
/* a domain's presence node, below its home: readable by all, written by its
 * first endpoint, removed only with the home (docs/wire.md) */
#define XM_ALIVE_KEY "xenmpi/alive"
/* watch the connected peer domain's presence node: its removal ends the
 * channel (xm_channel.c); the watch goes with the domain's last channel */
void chan_watch_home(xm_channel_t *ch);
void chan_unwatch_home(xm_channel_t *ch);
/* mark down; released and reported from progress (ep_reap) */
void chan_fail(xm_channel_t *ch, enum xm_chan_state st);
int chan_poll(xm_channel_t *ch);
/* the initiator's handshake completed: CONNECTED, the peer told of what
 * was written meanwhile */
void chan_connected(xm_channel_t *ch);
int chan_check_live(xm_channel_t *ch);
void scan_requests(xm_endpoint_t *ep);
void complete_connect(xm_channel_t *ch);
/* initiator: the listener removed our request without answering it */
void check_refused(xm_channel_t *ch);

#pragma GCC visibility pop

#endif
