/*
 * xm_channel.h - connection handshake, per-peer rings, notification.
 *
 * An endpoint is one process's presence on the store (what a UCT iface or a
 * netmod instance owns).  A channel joins two endpoints in two domains (or
 * one: an endpoint may connect to itself, and then holds both sides): each
 * side grants the peer, read-only, a control page and a tx ring, and the two
 * sides share one interdomain event channel.  The handshake goes through the
 * store once per endpoint pair; the data path never touches the store and
 * makes no system call unless the peer asked to be woken.
 */
#ifndef XM_CHANNEL_H
#define XM_CHANNEL_H

#include "xm_hv.h"
#include "xm_wire.h"

#include <stddef.h>
#include <stdint.h>

typedef struct xm_endpoint xm_endpoint_t;
typedef struct xm_channel xm_channel_t;

enum xm_chan_state {
    XM_CH_CONNECTING = 0,
    XM_CH_CONNECTED,
    XM_CH_PEER_GONE, /* the peer process died or closed: resources released */
    XM_CH_FAILED,    /* handshake failed or the peer broke the protocol */
};

enum xm_chan_event {
    XM_EV_CONNECTED,  /* a channel we asked for is up */
    XM_EV_ACCEPTED,   /* a peer connected to us */
    XM_EV_PEER_GONE,
    XM_EV_FAILED,
};

typedef struct xm_ep_params {
    unsigned ring_pages; /* power of two, 1..XM_RING_MAX_PAGES; 0: XENMPI_RING_PAGES or 64 */
    /* The largest record payload the endpoint's users need on every
     * channel.  A channel whose ring_pages cannot be granted (gntalloc's
     * limit, a full grant table) falls back to a ring half as large, down
     * to the smallest one that holds min_msg; xm_endpoint_max_msg is then
     * what that smallest ring holds.  0, or more than ring_pages hold: no
     * fallback, every ring is ring_pages. */
    size_t min_msg;
    void (*recv_cb)(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len);
    void (*event_cb)(void *arg, xm_channel_t *ch, enum xm_chan_event ev);
    void *cb_arg;
    /* Optional: called once on each block of memory the endpoint allocates
     * for itself (the receive copy buffer, its own control pages and rings)
     * right after allocation, to place it (NUMA binding; xm_topo_bind_place
     * with its handle as place_arg does that).  Best effort. */
    void (*place_cb)(void *place_arg, void *addr, size_t len);
    void *place_arg;
} xm_ep_params_t;

int xm_endpoint_open(xm_hv_t *hv, const xm_ep_params_t *params, xm_endpoint_t **out);

/* A protocol of the core (zero-copy grants, emulated RMA) on the
 * endpoint: it claims the record types [first_type, last_type] (outside
 * the adapter range and PAD; xm_wire.h has the registry).  recv gets
 * every record of those types (a private copy, valid until it returns);
 * chan_gone is called when a channel is released (down or closed), before
 * its pages go; progress, if set, runs in every xm_endpoint_progress and
 * returns the work it did; busy, if set, says progress has work now that
 * no peer event will announce (xm_endpoint_arm then answers -EBUSY).
 * Callbacks run in the endpoint's progress, never inside a send; they may
 * send.  -EINVAL bad range, -EEXIST overlap, -ENOSPC too many. */
typedef struct xm_service {
    uint16_t first_type, last_type;
    void (*recv)(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len);
    void (*chan_gone)(void *arg, xm_channel_t *ch);
    int (*progress)(void *arg, xm_endpoint_t *ep);
    int (*busy)(void *arg, xm_endpoint_t *ep);
    void (*close)(void *arg);   /* the endpoint closed, its channels released */
    void *arg;
} xm_service_t;
int xm_endpoint_add_service(xm_endpoint_t *ep, const xm_service_t *svc);
/* Records dropped because no service claimed their type. */
uint64_t xm_endpoint_unclaimed(const xm_endpoint_t *ep);
void xm_endpoint_close(xm_endpoint_t *ep);
uint32_t xm_endpoint_id(const xm_endpoint_t *ep);
/* Its key: part of its address; a peer must present it to connect. */
uint64_t xm_endpoint_key(const xm_endpoint_t *ep);
/* This endpoint's address (xm_wire.h); -ENOENT (logged, with the fix)
 * when the host has no identity. */
int xm_endpoint_addr(const xm_endpoint_t *ep, xm_ep_addr_t *out);
/* Connect to the endpoint at addr: -EHOSTUNREACH (logged) when it is on
 * another host, else as xm_endpoint_connect. */
int xm_endpoint_connect_addr(xm_endpoint_t *ep, const xm_ep_addr_t *addr, xm_channel_t **out);
xm_hv_t *xm_endpoint_hv(const xm_endpoint_t *ep);
/* Largest payload one message may carry on every channel of this
 * endpoint, including one whose ring fell back to the smallest size
 * (xm_ep_params_t.min_msg); a channel's own limit is xm_chan_max_msg. */
size_t xm_endpoint_max_msg(const xm_endpoint_t *ep);

/* Start (or find) the channel to endpoint peer_ep of domain peer_dom,
 * whose key (from its address, xm_endpoint_addr) is peer_key: a listener
 * refuses a request without its key, so only those who were given its
 * address connect.  Returns at once; the channel is CONNECTING until
 * progress completes it.
 * Our own endpoint is a peer too: progress then accepts the request as well
 * (XM_EV_ACCEPTED, a second channel that reads this one's ring and the
 * other way round), and connecting again finds the channel we initiated. */
int xm_endpoint_connect(xm_endpoint_t *ep, uint32_t peer_dom, uint32_t peer_ep,
                        uint64_t peer_key, xm_channel_t **out);

/* Handle handshakes, events and incoming messages; returns the number of
 * messages delivered (>= 0) or a negative errno. */
int xm_endpoint_progress(xm_endpoint_t *ep);

/* One pollable fd for the endpoint (events and store watches). */
int xm_endpoint_fd(const xm_endpoint_t *ep);
/* Drain events and store watches (never delivers messages), then ask every
 * channel's peer to notify us on new data; -EBUSY when something is already
 * waiting (do not sleep then). */
int xm_endpoint_arm(xm_endpoint_t *ep);
/* Withdraw the arm (progress does this by itself: call it when deciding not
 * to sleep after a successful arm). */
void xm_endpoint_disarm(xm_endpoint_t *ep);
/* The same after a successful arm when deciding not to sleep after all;
 * counts it (xm_endpoint_withdrawn_arms, process-wide): a peer may have
 * notified in between, a notification no sleep receives. */
void xm_endpoint_withdraw(xm_endpoint_t *ep);
uint64_t xm_endpoint_withdrawn_arms(void);
/* progress, then arm and sleep up to timeout_ms until something happens */
int xm_endpoint_wait(xm_endpoint_t *ep, int timeout_ms);

/* Send one message; -EAGAIN when the ring is full (the peer is then asked
 * to notify when it frees space; while connecting, the answer wakes us)
 * or a channel the peer started is not connected yet.  A channel we
 * started takes messages while it is connecting: the peer reads them once
 * it maps our ring.  -EMSGSIZE when larger
 * than xm_chan_max_msg, -EPIPE when the channel is down.  A send that
 * finds the peer broke the protocol marks the channel FAILED and returns
 * -EPIPE; the event callback runs from the next progress. */
int xm_chan_send(xm_channel_t *ch, uint16_t type, const void *hdr, size_t hlen,
                 const void *data, size_t len);
/* Two-step form for packing in place: reserve room for up to max bytes,
 * write them, commit the real length (<= max).  A reservation may be
 * dropped instead of committed: the peer then sees nothing of it (a PAD
 * it wrote is published with the next commit). */
void *xm_chan_reserve(xm_channel_t *ch, size_t max, int *err);
void xm_chan_commit(xm_channel_t *ch, uint16_t type, size_t len);
/* Whether a send of len bytes must wait for ring space: 1 (and then the
 * peer is asked, when we sleep, to notify us when it frees space), or 0
 * (room now, or the channel is not connected: sending tells why). */
int xm_chan_want_space(xm_channel_t *ch, size_t len);

enum xm_chan_state xm_chan_state(const xm_channel_t *ch);
/* Non-zero when the channel went down because its peer's domain is gone
 * (destroyed or crashed: its store home was removed), not its process. */
int xm_chan_domain_gone(const xm_channel_t *ch);
uint32_t xm_chan_peer_dom(const xm_channel_t *ch);
/* pages of our ring to the peer: fewer than the endpoint's ring_pages when
 * the grants for those ran out (xm_ep_params_t.min_msg) */
unsigned xm_chan_ring_pages(const xm_channel_t *ch);
/* Largest payload of one record on ch: ours (what our ring holds, at
 * least xm_endpoint_max_msg), and the peer's to us (what its ring holds;
 * xm_endpoint_max_msg until the channel knows it).  An answer the peer
 * sends in one record must fit the latter. */
size_t xm_chan_max_msg(const xm_channel_t *ch);
size_t xm_chan_peer_max_msg(const xm_channel_t *ch);
uint32_t xm_chan_peer_ep(const xm_channel_t *ch);
xm_endpoint_t *xm_chan_endpoint(const xm_channel_t *ch);
void xm_chan_set_user(xm_channel_t *ch, void *user);
void *xm_chan_user(const xm_channel_t *ch);
/* Remote completion.  The receiver releases a record only after its
 * callback returned, so once the peer consumed everything before a mark it
 * has processed it.  xm_chan_tx_reached() also asks the peer to notify us
 * when it releases more (for sleepers); it is true for a channel that is
 * down (its failure is reported separately). */
uint32_t xm_chan_tx_mark(const xm_channel_t *ch);
/* the tx mark as far as the last record xm_rec_is_op() counts: what a
 * flush of the operations sent so far waits for */
uint32_t xm_chan_op_mark(const xm_channel_t *ch);
int xm_chan_tx_reached(xm_channel_t *ch, uint32_t mark);
/* Largest payload xm_chan_send would accept right now (0 when full or not
 * connected). */
size_t xm_chan_space(xm_channel_t *ch);
/* Bytes sent but not yet released by the peer (0 = everything consumed). */
uint32_t xm_chan_inflight(xm_channel_t *ch);
/* Orderly close: the peer sees PEER_GONE.  Also frees a FAILED or
 * PEER_GONE channel (not from inside a callback). */
void xm_chan_close(xm_channel_t *ch);

/* The pages this side grants its peer (control page and tx ring), for
 * tests and tools that need to play a misbehaving peer. */
struct xm_ctrl_page;
void xm_chan_own_pages(xm_channel_t *ch, struct xm_ctrl_page **ctrl, uint8_t **ring,
                       uint32_t *ring_size);

/* Counters for tests and benchmarks. */
typedef struct xm_chan_stats {
    uint64_t msgs_sent, msgs_recv, notifies_sent, ring_full, releases;
    uint64_t adapter_recv;   /* records of the adapter's types delivered */
} xm_chan_stats_t;
void xm_chan_get_stats(const xm_channel_t *ch, xm_chan_stats_t *st);

#endif
