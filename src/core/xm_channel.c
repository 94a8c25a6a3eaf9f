/*
 * xm_channel.c - handshake through the store, per-pair rings, notification.
 *
 * Trust: the peer's control page and ring are mapped read-only and may
 * change under us at any time.  Indices are loaded once per use into
 * locals and checked against what is possible; record headers and payloads
 * are copied into private memory before they are validated or delivered.
 * A peer that breaks the rules fails its own channel, nothing else.
 *
 * Memory ordering: producer writes the record, then store-release prod;
 * consumer load-acquires prod, copies, then store-releases cons.  Arming is
 * Dekker-style: write our arm word, full fence, re-read the peer's index;
 * the other side publishes its index, full fence, reads our arm word.
 *
 * Failure and callbacks: a failure noticed on a send path (an impossible
 * consumer index) only marks the channel FAILED; its resources are
 * released, the services told and the adapter's event callback run from
 * the endpoint's next progress (ep_reap), never inside a send.  So a
 * service may send while it holds its own lock: nothing re-enters it.
 *
 * Services (xm_endpoint_add_service): the core protocols above the
 * channel claim ranges of record types; the channel knows none of them by
 * name.  Records in the adapter range go to the endpoint's recv_cb, a type
 * nobody claimed is dropped and counted.
 */
#include "xm_channel_int.h"
#include "xm_settings.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef XM_TEST_SEAMS
void (*xm_test_seam)(xm_channel_t *ch, int point);
#endif

double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* memory the endpoint allocated for itself: the owner may place it */
void ep_place(xm_endpoint_t *ep, void *addr, size_t len)
{
    if (ep->p.place_cb)
        ep->p.place_cb(ep->p.place_arg, addr, len);
}

/* ---------------- endpoint ---------------- */

/* Endpoint ids: (pid << 10) | slot, a slot free in this process (pids
 * have at most 22 bits on Linux), so ids are unique in a domain while the
 * endpoints live, however many come and go. */
#define XM_EP_SLOTS 1024u
static pthread_mutex_t ep_slot_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t ep_slots[XM_EP_SLOTS / 64];

static int ep_id_take(uint32_t *id)
{
    int rc = -EMFILE;

    pthread_mutex_lock(&ep_slot_lock);
    for (unsigned i = 0; i < XM_EP_SLOTS; i++) {
        if (!(ep_slots[i / 64] & (1ull << (i % 64)))) {
            ep_slots[i / 64] |= 1ull << (i % 64);
            *id = ((uint32_t)getpid() << 10) | i;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&ep_slot_lock);
    if (rc)
        xm_error("more than %u endpoints open in this process: close some first", XM_EP_SLOTS);
    return rc;
}

static void ep_id_give(uint32_t id)
{
    unsigned i = id & (XM_EP_SLOTS - 1);

    pthread_mutex_lock(&ep_slot_lock);
    ep_slots[i / 64] &= ~(1ull << (i % 64));
    pthread_mutex_unlock(&ep_slot_lock);
}

static int home_publish(xm_endpoint_t *ep);

/* the pid namespace our pids belong to: endpoint ids carry a pid, which
 * means something only to processes of the same namespace */
static unsigned long pidns_id(void)
{
    struct stat st;

    return stat("/proc/self/ns/pid", &st) ? 0 : (unsigned long)st.st_ino;
}

/* A process killed before it closed its endpoints left their store nodes
 * behind (the store knows nothing of processes).  Each endpoint opened in
 * the domain removes those of endpoints whose process, of our pid
 * namespace, no longer exists; a pid reused since keeps its nodes until
 * that process is gone too, and nodes without a namespace record (an
 * endpoint still opening) are left alone. */
static void sweep_dead_endpoints(xm_endpoint_t *ep, unsigned long ns)
{
    char dir[64], path[XM_STORE_MAX_PATH], *val = NULL, **names = NULL, tail;
    unsigned n = 0, id;
    pid_t self = getpid();

    snprintf(dir, sizeof(dir), "/local/domain/%u/xenmpi", xm_hv_domid(ep->hv));
    if (!ns || xm_store_list(ep->hv, dir, &names, &n))
        return;
    for (unsigned i = 0; i < n; i++) {
        pid_t pid;

        if (sscanf(names[i], "ep%u%c", &id, &tail) != 1 ||
            (pid = (pid_t)(id / XM_EP_SLOTS)) == self || pid <= 0)
            goto next;
        snprintf(path, sizeof(path), "%s/%s/pidns", dir, names[i]);
        if (xm_store_read(ep->hv, path, &val, NULL) == 0 && strtoul(val, NULL, 10) == ns &&
            kill(pid, 0) < 0 && errno == ESRCH) {
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
            xm_store_remove(ep->hv, path);
            xm_debug("removed %s: its process %d is gone", path, (int)pid);
        }
        free(val);
        val = NULL;
next:
        free(names[i]);
    }
    free(names);
}

int xm_endpoint_open(xm_hv_t *hv, const xm_ep_params_t *params, xm_endpoint_t **out)
{
    xm_store_perm_t perm_req = { xm_hv_domid(hv), XM_PERM_WRITE };
    xm_endpoint_t *ep;
    unsigned pages = params->ring_pages;
    int rc;

    if (!pages)
        pages = xm_cfg_uint(XM_CFG_RING_PAGES);
    if (pages < XM_RING_MIN_PAGES || pages > XM_RING_MAX_PAGES || (pages & (pages - 1))) {
        xm_error("ring of %u pages: must be a power of two between %u and %u "
                 "(XENMPI_RING_PAGES)", pages, XM_RING_MIN_PAGES, XM_RING_MAX_PAGES);
        return -EINVAL;
    }
    ep = calloc(1, sizeof(*ep));
    if (!ep)
        return -ENOMEM;
    ep->hv = hv;
    ep->p = *params;
    ep->p.ring_pages = pages;
    ep->epfd = -1;
    rc = xm_random_bytes(&ep->key, sizeof(ep->key));
    if (rc) {
        xm_error("no random bytes from the kernel for the endpoint's key (%s): without "
                 "one any domain could connect; allow getrandom (a seccomp filter?)",
                 strerror(-rc));
        free(ep);
        return rc;
    }
    rc = ep_id_take(&ep->id);
    if (rc) {
        free(ep);
        return rc;
    }
    ep->connect_timeout = xm_cfg_double(XM_CFG_CONNECT_TIMEOUT);
    ep->min_pages = ep->ring_now = pages;
    if (params->min_msg)
        while (ep->min_pages > XM_RING_MIN_PAGES &&
               XM_MAX_MSG((size_t)ep->min_pages / 2 * XM_PAGE_SIZE) >= params->min_msg)
            ep->min_pages /= 2;
    ep->max_msg = XM_MAX_MSG((size_t)ep->min_pages * XM_PAGE_SIZE);
    /* a peer's ring may be larger than ours: size for the largest allowed */
    ep->rxbuf = mmap(NULL, XM_RXBUF_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ep->rxbuf == MAP_FAILED)
        ep->rxbuf = NULL;
    else
        ep_place(ep, ep->rxbuf, XM_RXBUF_SIZE);
    snprintf(ep->dir, sizeof(ep->dir), "/local/domain/%u/xenmpi/ep%u", xm_hv_domid(hv), ep->id);
    snprintf(ep->req_dir, sizeof(ep->req_dir), "%s/req", ep->dir);
    rc = -ENOMEM;
    if (!ep->rxbuf)
        goto err;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e1 = { .events = EPOLLIN }, e2 = { .events = EPOLLIN };
    if (ep->epfd < 0 ||
        epoll_ctl(ep->epfd, EPOLL_CTL_ADD, xm_hv_evt_fd(hv), &e1) ||
        epoll_ctl(ep->epfd, EPOLL_CTL_ADD, xm_store_watch_fd(hv), &e2)) {
        rc = -errno;
        xm_error("endpoint epoll: %m");
        goto err;
    }
    /* a previous process with our pid may have left its tree behind */
    xm_store_remove(hv, ep->dir);
    rc = xm_store_write(hv, ep->req_dir, "", 0);
    /* the domain's presence node: readable by every domain, never removed
     * by us, so that a peer's watch hears when the toolstack removes this
     * domain's home (destroyed or crashed); it holds nothing */
    if (!rc)
        rc = home_publish(ep);
    if (!rc)
        rc = xm_store_set_perms(hv, ep->req_dir, &perm_req, 1);
    if (!rc) {
        char path[sizeof(ep->dir) + 8], val[24];
        unsigned long ns = pidns_id();

        snprintf(path, sizeof(path), "%s/pidns", ep->dir);
        rc = xm_store_write(hv, path, val, (size_t)snprintf(val, sizeof(val), "%lu", ns));
        if (!rc)
            sweep_dead_endpoints(ep, ns);
    }
    if (!rc)
        rc = xm_store_watch(hv, ep->req_dir, "req");
    if (rc) {
        xm_error("publishing endpoint at %s: %s", ep->req_dir, strerror(-rc));
        goto err;
    }
    xm_debug("endpoint %u:%u listening at %s", xm_hv_domid(hv), ep->id, ep->dir);
    *out = ep;
    return 0;
err:
    xm_endpoint_close(ep);
    return rc;
}

void xm_endpoint_close(xm_endpoint_t *ep)
{
    if (!ep)
        return;
    while (ep->chans) {
        xm_channel_t *ch = ep->chans;
        ep->chans = ch->next;
        chan_release(ch);
        free(ch);
    }
    for (unsigned i = 0; i < ep->nservices; i++)
        if (ep->services[i].close)
            ep->services[i].close(ep->services[i].arg);
    xm_store_unwatch(ep->hv, ep->req_dir, "req");
    xm_store_remove(ep->hv, ep->dir);
    if (ep->epfd >= 0)
        close(ep->epfd);
    if (ep->rxbuf)
        munmap(ep->rxbuf, XM_RXBUF_SIZE);
    ep_id_give(ep->id);
    free(ep);
}

uint32_t xm_endpoint_id(const xm_endpoint_t *ep) { return ep->id; }
uint64_t xm_endpoint_key(const xm_endpoint_t *ep) { return ep->key; }

int xm_endpoint_addr(const xm_endpoint_t *ep, xm_ep_addr_t *out)
{
    int rc = xm_hv_host_hash(ep->hv, &out->host_hash);

    out->domid = xm_hv_domid(ep->hv);
    out->ep = ep->id;
    out->key = ep->key;
    return rc;
}

int xm_endpoint_connect_addr(xm_endpoint_t *ep, const xm_ep_addr_t *addr, xm_channel_t **out)
{
    xm_ep_addr_t self;
    int rc = xm_endpoint_addr(ep, &self);

    if (rc)
        return rc;
    if (!xm_ep_addr_reachable(&self, addr)) {
        xm_error("domain %u endpoint %u is on another host (host hash %016llx, ours "
                 "%016llx): endpoints reach each other on one host only",
                 addr->domid, addr->ep, (unsigned long long)addr->host_hash,
                 (unsigned long long)self.host_hash);
        return -EHOSTUNREACH;
    }
    return xm_endpoint_connect(ep, addr->domid, addr->ep, addr->key, out);
}
xm_hv_t *xm_endpoint_hv(const xm_endpoint_t *ep) { return ep->hv; }
xm_endpoint_t *xm_chan_endpoint(const xm_channel_t *ch) { return ch->ep; }
size_t xm_endpoint_max_msg(const xm_endpoint_t *ep) { return ep->max_msg; }
int xm_endpoint_fd(const xm_endpoint_t *ep) { return ep->epfd; }

/* An endpoint connected to itself (loopback) holds two channels with the
 * same peer, each the other's peer: the one it initiated is the one that
 * connecting finds, so every connect to ourselves gets the same ring. */
xm_channel_t *find_chan(xm_endpoint_t *ep, uint32_t dom, uint32_t pep, int live_only)
{
    int self = dom == xm_hv_domid(ep->hv) && pep == ep->id;

    for (xm_channel_t *c = ep->chans; c; c = c->next)
        if (c->peer_dom == dom && c->peer_ep == pep && (!self || c->initiator) &&
            (!live_only || c->state <= XM_CH_CONNECTED))
            return c;
    return NULL;
}

static inline void tx_kick(xm_channel_t *ch);

static void home_path(uint32_t dom, char *buf, size_t len)
{
    snprintf(buf, len, "/local/domain/%u/" XM_ALIVE_KEY, dom);
}

/* the presence node of dom and the token of watch id on it */
static void home_watch_names(uint32_t dom, uint32_t id, char path[XM_STORE_MAX_PATH],
                             char token[32])
{
    home_path(dom, path, XM_STORE_MAX_PATH);
    snprintf(token, 32, "home-%u", id);
}

static int home_publish(xm_endpoint_t *ep)
{
    char path[XM_STORE_MAX_PATH];
    xm_store_perm_t perm = { xm_hv_domid(ep->hv), XM_PERM_READ };
    int rc;

    home_path(xm_hv_domid(ep->hv), path, sizeof(path));
    rc = xm_store_write(ep->hv, path, "", 0);
    if (!rc)
        rc = xm_store_set_perms(ep->hv, path, &perm, 1);
    return rc;
}

/* A process that dies clears its live byte (the unmap notification), but a
 * domain that is destroyed or crashes clears nothing: its pages stay mapped
 * here, frozen.  The toolstack removes a destroyed domain's store home, and
 * with it the domain's presence node, which every domain may read: a watch
 * on it tells us.  One watch per peer domain, shared by the endpoint's
 * channels to it; without one (the store's watch quota) only process death
 * is seen. */
void chan_watch_home(xm_channel_t *ch)
{
    xm_endpoint_t *ep = ch->ep;
    char path[XM_STORE_MAX_PATH], token[32];
    int rc;

    if (ch->home_watch || ch->peer_dom == xm_hv_domid(ep->hv))
        return;   /* watching already, or our own domain */
    for (xm_channel_t *c = ep->chans; c; c = c->next)
        if (c != ch && c->peer_dom == ch->peer_dom && c->home_watch) {
            ch->home_watch = c->home_watch;
            ch->home_seen = c->home_seen;
            return;
        }
    if (!++ep->home_watches)
        ++ep->home_watches;   /* 0 means none */
    ch->home_watch = ep->home_watches;
    home_watch_names(ch->peer_dom, ch->home_watch, path, token);
    rc = xm_store_watch(ep->hv, path, token);
    if (rc) {
        xm_info("cannot watch %s (%s): channels to domain %u see its processes die, "
                "but not the domain", path, strerror(-rc), ch->peer_dom);
        ch->home_watch = 0;
    }
}

void chan_unwatch_home(xm_channel_t *ch)
{
    char path[XM_STORE_MAX_PATH], token[32];
    uint32_t id = ch->home_watch;

    if (!id)
        return;
    ch->home_watch = 0;
    for (xm_channel_t *c = ch->ep->chans; c; c = c->next)
        if (c != ch && c->home_watch == id)
            return;   /* another channel to that domain still uses it */
    home_watch_names(ch->peer_dom, id, path, token);
    xm_store_unwatch(ch->ep->hv, path, token);
}

/* A peer domain's presence node fired.  Seen once, then unreadable: the
 * domain is gone.  (xenstored answers EACCES, not ENOENT, for a node that
 * is gone below a parent we may not read, as a removed domain home is.)
 * Never seen: a peer that does not publish one; nothing is concluded. */
static void home_fired(xm_endpoint_t *ep, const char *token)
{
    char path[XM_STORE_MAX_PATH], *val = NULL;
    size_t len;
    uint32_t id = (uint32_t)strtoul(token + 5, NULL, 10), dom = 0;
    int rc = 0, found = 0, seen = 0;

    for (xm_channel_t *c = ep->chans; c; c = c->next)
        if (id && c->home_watch == id) {
            found = 1;
            dom = c->peer_dom;
            seen |= c->home_seen;
        }
    if (!found)
        return;
    home_path(dom, path, sizeof(path));
    rc = xm_store_read(ep->hv, path, &val, &len);
    free(val);
    if (rc && !seen)
        return;
    if (!rc)
        xm_debug("domain %u: presence node %s is there", dom, path);
    else
        xm_error("domain %u is gone (%s was removed: the domain was destroyed or "
                 "crashed): its channels fail", dom, path);
    for (xm_channel_t *c = ep->chans; c; c = c->next)
        if (c->home_watch == id) {
            c->home_seen = 1;
            if (rc && c->state == XM_CH_CONNECTED)
                c->home_gone = 1;
        }
}

/* The handshake completed: what we wrote meanwhile is the peer's to read. */
void chan_connected(xm_channel_t *ch)
{
    ch->state = XM_CH_CONNECTED;
    chan_watch_home(ch);
    if (ch->published)
        tx_kick(ch);
}

/* Mark the channel down; ep_reap releases it and reports it from progress
 * (this may run inside a send, under a service's lock). */
void chan_fail(xm_channel_t *ch, enum xm_chan_state st)
{
    xm_endpoint_t *ep = ch->ep;

    if (ch->state >= XM_CH_PEER_GONE)
        return;
    if (ch->state == XM_CH_CONNECTING && ch->initiator)
        ep->connecting--;
    ch->state = st;
    ch->down_owed = 1;
    ep->down_owed = 1;
}

/* Release and report the channels that went down since the last call. */
static void ep_reap(xm_endpoint_t *ep)
{
    for (;;) {
        xm_channel_t *c = ep->chans;

        /* from the head each time: a callback may connect anew or make
         * more channels fail; each is reported once */
        while (c && !c->down_owed)
            c = c->next;
        if (!c)
            break;
        c->down_owed = 0;
        chan_release(c);
        if (ep->p.event_cb)
            ep->p.event_cb(ep->p.cb_arg, c,
                           c->state == XM_CH_PEER_GONE ? XM_EV_PEER_GONE : XM_EV_FAILED);
    }
    ep->down_owed = 0;
}

/* 0 while the peer of ch runs; else what it published is delivered, ch is
 * marked gone (reported from progress) and -EPIPE returned. */
int chan_check_live(xm_channel_t *ch)
{
    if (LOAD(&ch->peer->live) && !ch->home_gone)
        return 0;
    while (ch->state == XM_CH_CONNECTED && chan_poll(ch) > 0)
        ;
    chan_fail(ch, XM_CH_PEER_GONE);
    return -EPIPE;
}

/* ---------------- data path ---------------- */

/* Refresh our view of how far the peer consumed our ring; validate. */
static int tx_refresh_cons(xm_channel_t *ch)
{
    uint32_t c = LOAD(&ch->peer->cons);

    /* it can only have consumed what we published, and never goes back */
    if ((uint32_t)(ch->published - c) > ch->tx_size ||
        (uint32_t)(c - ch->cached_cons) > (uint32_t)(ch->published - ch->cached_cons)) {
        xm_error("domain %u moved its consumer index to %u (ours: published %u, released %u): "
                 "closing the channel", ch->peer_dom, c, ch->published, ch->cached_cons);
        chan_fail(ch, XM_CH_FAILED);
        return -EPROTO;
    }
    ch->cached_cons = c;
    return 0;
}

static void notify_peer(xm_channel_t *ch)
{
    ch->st.notifies_sent++;
    xm_hv_evt_notify(ch->ep->hv, ch->port);
}

/* We wait for the peer to consume (ring space, remote completion): a
 * sleeper then asks it for a notification (tx_wait, xm_endpoint_arm). */
static void tx_await_peer(xm_channel_t *ch)
{
    ch->tx_awaiting = 1;
    ch->tx_await_cons = ch->cached_cons;
}

/* after publishing: wake the peer if it sleeps on this ring */
static inline void tx_kick(xm_channel_t *ch)
{
    uint32_t arm;

    if (__builtin_expect(!ch->peer, 0))
        return;   /* connecting: chan_connected kicks */
    FENCE();
    arm = LOAD(&ch->peer->rx_arm);
    if ((arm & 1) && arm != ch->notified) {
        ch->notified = arm;
        notify_peer(ch);
    }
}

/* Connected, or connecting with our ring already shared: a channel we
 * initiated carries records before the peer answers, which it reads from
 * index 0 once it maps the ring. */
static inline int chan_writable(const xm_channel_t *ch)
{
    return ch->state == XM_CH_CONNECTED || (ch->state == XM_CH_CONNECTING && ch->tx);
}

void *xm_chan_reserve(xm_channel_t *ch, size_t max, int *err)
{
    uint32_t need, off, room, pad;

    if (__builtin_expect(!chan_writable(ch), 0)) {
        *err = ch->state == XM_CH_CONNECTING ? -EAGAIN : -EPIPE;
        return NULL;
    }
    if (max > XM_MAX_MSG(ch->tx_size)) {
        *err = -EMSGSIZE;
        return NULL;
    }
    need = (uint32_t)XM_REC_SIZE(max);
    off = ch->prod & (ch->tx_size - 1);
    pad = off + need > ch->tx_size ? ch->tx_size - off : 0;
    room = ch->tx_size - (ch->prod - ch->cached_cons);
    if (room < need + pad) {
        if (!ch->peer) {
            /* connecting, ring full: the answer (a store watch) wakes us */
            ch->st.ring_full++;
            *err = -EAGAIN;
            return NULL;
        }
        if (tx_refresh_cons(ch)) {
            *err = -EPIPE;
            return NULL;
        }
        room = ch->tx_size - (ch->prod - ch->cached_cons);
        if (room < need + pad) {
            /* a sleeper arms tx_wait (xm_endpoint_arm) to hear of space */
            ch->st.ring_full++;
            tx_await_peer(ch);
            *err = -EAGAIN;
            return NULL;
        }
    }
    ch->tx_awaiting = 0;
    if (pad) {
        /* written now, published with the next commit: a reservation that
         * is never committed leaves the peer's view (and every tx mark)
         * where it was */
        struct xm_rec_hdr h = { .len = pad - (uint32_t)sizeof(h), .type = XM_REC_PAD };
        memcpy(ch->tx + off, &h, sizeof(h));
        ch->prod += pad;
        off = 0;
    }
    ch->reserved = max;
    *err = 0;
    return ch->tx + off + sizeof(struct xm_rec_hdr);
}

void xm_chan_commit(xm_channel_t *ch, uint16_t type, size_t len)
{
    uint32_t off = ch->prod & (ch->tx_size - 1);
    struct xm_rec_hdr h = { .len = (uint32_t)len, .type = type };

    if (len > ch->reserved) {
        /* an adapter bug: it wrote past what it reserved */
        xm_error("commit of %zu bytes after reserving %zu: truncated", len, ch->reserved);
        len = h.len = (uint32_t)ch->reserved;
    }
    memcpy(ch->tx + off, &h, sizeof(h));
    ch->prod += (uint32_t)XM_REC_SIZE(len);
    ch->published = ch->prod;
    if (xm_rec_is_op(type))
        ch->op_published = ch->published;
    STORE(&ch->my->prod, ch->prod);
    ch->st.msgs_sent++;
    tx_kick(ch);
}

int xm_chan_send(xm_channel_t *ch, uint16_t type, const void *hdr, size_t hlen,
                 const void *data, size_t len)
{
    int err;
    uint8_t *p;

    if (type == XM_REC_PAD)
        return -EINVAL;
    p = xm_chan_reserve(ch, hlen + len, &err);
    if (!p)
        return err;
    if (hlen)
        memcpy(p, hdr, hlen);
    if (len)
        memcpy(p + hlen, data, len);
    xm_chan_commit(ch, type, hlen + len);
    return 0;
}

/* publish how far we consumed; wake the peer if it waits for space */
static void rx_release(xm_channel_t *ch)
{
    uint32_t w;

    if (ch->released == ch->cons)
        return;
    STORE(&ch->my->cons, ch->cons);
    ch->released = ch->cons;
    ch->st.releases++;
    FENCE();
    w = LOAD(&ch->peer->tx_wait);
    if ((w & 1) && w != ch->notified) {
        ch->notified = w;
        notify_peer(ch);
    }
}

static const xm_service_t *find_service(const xm_endpoint_t *ep, uint16_t type)
{
    for (unsigned i = 0; i < ep->nservices; i++)
        if (type >= ep->services[i].first_type && type <= ep->services[i].last_type)
            return &ep->services[i];
    return NULL;
}

static void deliver(xm_channel_t *ch, uint16_t type, const void *data, size_t len)
{
    xm_endpoint_t *ep = ch->ep;
    const xm_service_t *svc;

    if (type <= XM_REC_ADAPTER_LAST) {
        ch->st.adapter_recv++;
        ep->p.recv_cb(ep->p.cb_arg, ch, type, data, len);
    } else if ((svc = find_service(ep, type))) {
        svc->recv(svc->arg, ch, type, data, len);
    } else {
        if (!ep->unclaimed++)
            xm_warn("domain %u sent a record of type 0x%x, which nothing here "
                    "handles: dropped (and any more such)", ch->peer_dom, type);
    }
}

/* A record of up to four lines spans at most five (records are 8-aligned). */
#define XM_PF_SMALL_REC (4 * XM_CACHELINE)
#define XM_PF_LINES_MAX 5

int chan_poll(xm_channel_t *ch)
{
    xm_endpoint_t *ep = ch->ep;
    uint32_t prod, avail;
    int n = 0;

    /* The next record's first lines, requested together with the
     * producer index: the two cross-CPU misses overlap instead of
     * following each other (docs/architecture.md, "Small-message
     * latency").  Only as many lines as a small record takes: the lines of
     * a large one the hardware prefetcher streams, and touching them while
     * the sender writes them only costs it ownership transfers. */
    for (uint32_t i = 0; i < ch->rx_pf; i++)
        __builtin_prefetch(ch->rx + ((ch->cons + XM_CACHELINE * i) & (ch->rx_size - 1)));
    prod = LOAD(&ch->peer->prod);
    if (prod == ch->cons) {
        if (LOAD(&ch->peer->live) && !ch->home_gone)
            return 0;
        /* It died, but may have published more between our two loads: its
         * live byte is cleared after its last store, so what it published
         * is visible now.  Deliver that first; the next poll ends it. */
        SEAM(ch, 1);
        prod = LOAD(&ch->peer->prod);
        if (prod == ch->cons) {
            xm_info("domain %u endpoint %u is gone", ch->peer_dom, ch->peer_ep);
            chan_fail(ch, XM_CH_PEER_GONE);
            return -EPIPE;
        }
    }
    avail = prod - ch->cons;
    if (avail > ch->rx_size) {
        xm_error("domain %u published producer index %u past its %u-byte ring "
                 "(consumed %u): closing the channel", ch->peer_dom, prod, ch->rx_size, ch->cons);
        chan_fail(ch, XM_CH_FAILED);
        return -EPROTO;
    }
    while (avail) {
        uint32_t off = ch->cons & (ch->rx_size - 1), rec;
        struct xm_rec_hdr h;

        /* the limit is the sender's: half of its ring */
        if (xm_ring_next(ch->rx, ch->rx_size, ch->cons, avail, XM_MAX_MSG(ch->rx_size), &h, &rec))
            goto bad;
        if (h.type != XM_REC_PAD)
            memcpy(ep->rxbuf, ch->rx + off + sizeof(h), h.len);
        ch->cons += rec;
        avail -= rec;
        ch->rx_pf = rec <= XM_PF_SMALL_REC ? XM_PF_LINES_MAX : 1;
        if (h.type != XM_REC_PAD) {
            ch->st.msgs_recv++;
            n++;
            deliver(ch, h.type, ep->rxbuf, h.len);
            if (ch->state != XM_CH_CONNECTED)
                return n;   /* failed meanwhile (callbacks must not close) */
        }
        /* released only after the callback ran: a sender that sees its
         * record consumed knows it was processed (remote completion) */
        if (ch->cons - ch->released >= ch->rx_size / 4)
            rx_release(ch);   /* batched: not per message */
    }
    rx_release(ch);
    return n;
bad:
    xm_error("domain %u wrote a malformed record at ring offset %u: closing the channel",
             ch->peer_dom, ch->cons & (ch->rx_size - 1));
    chan_fail(ch, XM_CH_FAILED);
    return -EPROTO;
}

#define XM_SLOW_PATH_INTERVAL 256

/* Store watches and event drain: system calls, so not on every poll. */
static void progress_slow(xm_endpoint_t *ep)
{
    xm_hv_t *hv = ep->hv;
    char *path, *token;
    uint32_t port;
    int scan = 0;
    struct epoll_event ev;

    ep->idle = 0;
    /* Nothing fired (the epoll set holds the event and watch fds): then no
     * call reaches the hypervisor or the store.  A pending handshake needs
     * its deadline checked, so it always goes on. */
    if (!ep->connecting && epoll_wait(ep->epfd, &ev, 1, 0) <= 0)
        return;
    while (xm_store_read_watch(hv, &path, &token) == 0) {
        if (!strcmp(token, "req"))
            scan = 1;
        else if (!strncmp(token, "home-", 5))
            home_fired(ep, token);
        else
            for (xm_channel_t *c = ep->chans; c; c = c->next) {
                if (!c->initiator || c->state != XM_CH_CONNECTING)
                    continue;
                if (!strcmp(path, c->resp_path))
                    complete_connect(c);
                else if (!strcmp(token, "sent") && !strcmp(path, c->req_path))
                    check_refused(c);
            }
        free(path);
        free(token);
    }
    if (scan)
        scan_requests(ep);
    if (ep->connecting) {
        double t = mono_now();
        for (xm_channel_t *c = ep->chans; c; c = c->next)
            if (c->initiator && c->state == XM_CH_CONNECTING && t > c->deadline) {
                xm_error("no answer from endpoint %u of domain %u within %.1f s: is it "
                         "running and making progress? (XENMPI_CONNECT_TIMEOUT)",
                         c->peer_ep, c->peer_dom, ep->connect_timeout);
                chan_fail(c, XM_CH_FAILED);
            }
    }
    /* events are hints: unmask, the rings are the truth */
    for (unsigned i = 0; i < XM_EVT_DRAIN_MAX && xm_hv_evt_pending(hv, &port) == 0; i++) {
        xm_hv_evt_unmask(hv, port);
        SEAM(NULL, 2);
    }
}

static int progress(xm_endpoint_t *ep, int slow)
{
    int n = 0;

    if (ep->armed)
        xm_endpoint_disarm(ep);   /* awake: no notifications wanted */
    if (slow || ep->connecting || ++ep->idle >= XM_SLOW_PATH_INTERVAL)
        progress_slow(ep);
    for (xm_channel_t *c = ep->chans; c; c = c->next) {
        if (c->state != XM_CH_CONNECTED)
            continue;
        int r = chan_poll(c);
        if (r > 0)
            n += r;
    }
    for (unsigned i = 0; i < ep->nservices; i++)
        if (ep->services[i].progress)
            n += ep->services[i].progress(ep->services[i].arg, ep);
    if (__builtin_expect(ep->down_owed, 0))
        ep_reap(ep);
    if (n)
        ep->idle = 0;
    return n;
}

int xm_endpoint_progress(xm_endpoint_t *ep)
{
    return progress(ep, 0);
}

/* Peers notify only while we are armed: clear the flags as soon as we are
 * awake again (or did not go to sleep), so a notification always meets a
 * sleeper, at most one per channel and sleep. */
static uint64_t withdrawn_arms;   /* process-wide, for tests */

uint64_t xm_endpoint_withdrawn_arms(void)
{
    return __atomic_load_n(&withdrawn_arms, __ATOMIC_RELAXED);
}

void xm_endpoint_disarm(xm_endpoint_t *ep)
{
    ep->armed = 0;
    for (xm_channel_t *c = ep->chans; c; c = c->next) {
        if (c->state != XM_CH_CONNECTED)
            continue;
        if (c->my->rx_arm & 1)
            STORE(&c->my->rx_arm, c->my->rx_arm & ~1u);
        if (c->my->tx_wait & 1)
            STORE(&c->my->tx_wait, c->my->tx_wait & ~1u);
    }
}

/* An arm taken back without sleeping: a peer that saw the flag in between
 * may have notified; that notification met no sleeper (an inherent race,
 * counted so tests can tell it from a real excess). */
static void withdraw(xm_endpoint_t *ep)
{
    __atomic_fetch_add(&withdrawn_arms, 1, __ATOMIC_RELAXED);
    xm_endpoint_disarm(ep);
}

void xm_endpoint_withdraw(xm_endpoint_t *ep)
{
    withdraw(ep);
}

int xm_endpoint_arm(xm_endpoint_t *ep)
{
    /* drain the event fd and handle the store first: after this the fd is
     * readable again only for something new */
    progress_slow(ep);
    /* channels to release and report, or services with work only our
     * progress can do: don't sleep */
    if (ep->down_owed)
        return -EBUSY;
    for (unsigned i = 0; i < ep->nservices; i++)
        if (ep->services[i].busy && ep->services[i].busy(ep->services[i].arg, ep))
            return -EBUSY;
    ep->armed = 1;
    for (xm_channel_t *c = ep->chans; c; c = c->next) {
        if (c->state != XM_CH_CONNECTED)
            continue;
        /* arming twice for one sleep (ucp_worker_arm, then ucp_worker_wait
         * arms again) keeps the generation: the peer notifies once per sleep */
        if (!(c->my->rx_arm & 1))
            STORE(&c->my->rx_arm, (++c->arm_seq << 1) | 1);
        /* both words carry the same generation: the peer, remembering the
         * last one it served, notifies once per sleep for data or space */
        if (c->tx_awaiting && !(c->my->tx_wait & 1))
            STORE(&c->my->tx_wait, (c->arm_seq << 1) | 1);
        FENCE();
        /* re-check after arming: data, a dead peer, or progress on what
         * we wait for means "don't sleep" */
        if (LOAD(&c->peer->prod) != c->cons || !LOAD(&c->peer->live) ||
            (c->tx_awaiting && (tx_refresh_cons(c) || c->cached_cons != c->tx_await_cons))) {
            withdraw(ep);
            return -EBUSY;
        }
    }
    return 0;
}

int xm_endpoint_wait(xm_endpoint_t *ep, int timeout_ms)
{
    struct epoll_event ev;
    int n = progress(ep, 1);

    if (n)
        return n;
    if (xm_endpoint_arm(ep) == 0 && epoll_wait(ep->epfd, &ev, 1, timeout_ms) < 0 &&
        errno != EINTR)
        return -errno;
    return progress(ep, 1);
}

/* ---------------- small accessors ---------------- */

enum xm_chan_state xm_chan_state(const xm_channel_t *ch) { return ch->state; }
int xm_chan_domain_gone(const xm_channel_t *ch) { return ch->home_gone; }
unsigned xm_chan_ring_pages(const xm_channel_t *ch) { return ch->tx_pages; }
size_t xm_chan_max_msg(const xm_channel_t *ch)
{
    return ch->tx ? XM_MAX_MSG(ch->tx_size) : ch->ep->max_msg;
}
size_t xm_chan_peer_max_msg(const xm_channel_t *ch)
{
    return ch->rx ? XM_MAX_MSG(ch->rx_size) : ch->ep->max_msg;
}
uint32_t xm_chan_peer_dom(const xm_channel_t *ch) { return ch->peer_dom; }
uint32_t xm_chan_peer_ep(const xm_channel_t *ch) { return ch->peer_ep; }
void xm_chan_set_user(xm_channel_t *ch, void *user) { ch->user = user; }
void *xm_chan_user(const xm_channel_t *ch) { return ch->user; }
void xm_chan_get_stats(const xm_channel_t *ch, xm_chan_stats_t *st) { *st = ch->st; }

void xm_chan_own_pages(xm_channel_t *ch, struct xm_ctrl_page **ctrl, uint8_t **ring,
                       uint32_t *ring_size)
{
    *ctrl = ch->my;
    *ring = ch->tx;
    *ring_size = ch->tx_size;
}

uint32_t xm_chan_tx_mark(const xm_channel_t *ch)
{
    return ch->published;
}

uint32_t xm_chan_op_mark(const xm_channel_t *ch)
{
    return ch->op_published;
}

int xm_chan_tx_reached(xm_channel_t *ch, uint32_t mark)
{
    if ((int32_t)(mark - ch->cached_cons) <= 0)
        return 1;
    if (ch->state == XM_CH_CONNECTING)
        return 0;   /* records wait in our ring for the peer to map it */
    if (ch->state != XM_CH_CONNECTED)
        return 1;   /* nothing more will be processed; the failure is reported */
    if (tx_refresh_cons(ch))
        return 1;
    if ((int32_t)(mark - ch->cached_cons) <= 0)
        return 1;
    tx_await_peer(ch);   /* a sleeper asks the peer to tell it of progress */
    return 0;
}

size_t xm_chan_space(xm_channel_t *ch)
{
    uint32_t off, room, tail;

    if (!chan_writable(ch) || (ch->peer && tx_refresh_cons(ch)))
        return 0;
    room = ch->tx_size - (ch->prod - ch->cached_cons);
    off = ch->prod & (ch->tx_size - 1);
    tail = ch->tx_size - off;
    /* a record never wraps: it goes at the tail or, after a PAD, at 0 */
    if (tail < room) {
        uint32_t after_pad = room - tail;
        room = tail > after_pad ? tail : after_pad;
    }
    if (room < XM_REC_SIZE(0))
        return 0;
    size_t n = (room - sizeof(struct xm_rec_hdr)) & ~(size_t)(XM_REC_ALIGN - 1);
    return n < XM_MAX_MSG(ch->tx_size) ? n : XM_MAX_MSG(ch->tx_size);
}

uint32_t xm_chan_inflight(xm_channel_t *ch)
{
    if (!chan_writable(ch))
        return 0;
    if (ch->peer && tx_refresh_cons(ch))
        return 0;
    return ch->published - ch->cached_cons;
}

int xm_chan_want_space(xm_channel_t *ch, size_t len)
{
    if (ch->state != XM_CH_CONNECTED)
        return 0;   /* connecting: the answer wakes us; down: sending says so */
    if (len > XM_MAX_MSG(ch->tx_size))
        len = XM_MAX_MSG(ch->tx_size);
    if (xm_chan_space(ch) >= len)
        return 0;
    ch->st.ring_full++;
    tx_await_peer(ch);
    return 1;
}

int xm_endpoint_add_service(xm_endpoint_t *ep, const xm_service_t *svc)
{
    if (!svc->recv || svc->first_type > svc->last_type ||
        svc->first_type <= XM_REC_ADAPTER_LAST || svc->last_type >= XM_REC_PAD)
        return -EINVAL;
    for (unsigned i = 0; i < ep->nservices; i++) {
        const xm_service_t *o = &ep->services[i];
        if (svc->first_type <= o->last_type && o->first_type <= svc->last_type)
            return -EEXIST;
    }
    if (ep->nservices == XM_MAX_SERVICES)
        return -ENOSPC;
    ep->services[ep->nservices++] = *svc;
    return 0;
}

uint64_t xm_endpoint_unclaimed(const xm_endpoint_t *ep)
{
    return ep->unclaimed;
}

void xm_chan_close(xm_channel_t *ch)
{
    xm_endpoint_t *ep = ch->ep;
    xm_channel_t **pp;

    if (ch->state == XM_CH_CONNECTING && ch->initiator)
        ep->connecting--;
    for (pp = &ep->chans; *pp; pp = &(*pp)->next)
        if (*pp == ch) {
            *pp = ch->next;
            break;
        }
    chan_release(ch);
    free(ch);
}
