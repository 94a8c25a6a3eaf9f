/*
 * xm_handshake.c - the store rendezvous that sets a channel up, and its
 * teardown.  The initiator shares its control page and ring with the peer
 * (read-only), writes a request node under the peer endpoint's req dir
 * and watches for the answer; the listener validates the request, binds
 * the event channel, maps the initiator's pages, shares its own and
 * answers.  Everything read from the store is parsed strictly
 * (xm_hs_parse) and checked against the node's name and the control page.
 */
#include "xm_channel_int.h"
#include "xm_settings.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---------------- channel setup ---------------- */

/* Share our control page and tx ring with the peer, read-only. */
static int chan_share_own(xm_channel_t *ch)
{
    xm_hv_t *hv = ch->ep->hv;
    void *p;
    int rc;

    rc = xm_hv_share(hv, ch->peer_dom, 1, 0, XM_CTRL_LIVE_OFFSET, (int)ch->port, &p, &ch->my_ref);
    if (rc) {
        xm_error("granting control page to domain %u: %s", ch->peer_dom, strerror(-rc));
        return rc;
    }
    ch->my = p;
    ep_place(ch->ep, ch->my, XM_PAGE_SIZE);
    /* a ring the grant table or gntalloc's limit refuses: half as large,
     * down to the smallest that holds the endpoint's max_msg; later
     * channels start at the size that was granted */
    ch->tx_pages = ch->ep->ring_now;
    for (;;) {
        rc = xm_hv_share(hv, ch->peer_dom, ch->tx_pages, 0, -1, -1, &p, ch->tx_refs);
        if (!rc || (rc != -ENOSPC && rc != -ENOMEM) || ch->tx_pages <= ch->ep->min_pages)
            break;
        ch->tx_pages /= 2;
        ch->ep->ring_now = ch->tx_pages;
        xm_warn("a %u-page ring to domain %u was refused (above): this and later channels "
                "of the endpoint use %u pages (at least %u; messages up to %zu bytes)",
                ch->tx_pages * 2, ch->peer_dom, ch->tx_pages, ch->ep->min_pages,
                ch->ep->max_msg);
    }
    ch->tx_size = ch->tx_pages * XM_PAGE_SIZE;
    if (rc) {
        if (ch->tx_pages < ch->ep->p.ring_pages)
            xm_error("granting a %u-page ring to domain %u: %s; no smaller ring holds the "
                     "endpoint's %zu-byte messages (rings fell back from %u pages)",
                     ch->tx_pages, ch->peer_dom, strerror(-rc), ch->ep->max_msg,
                     ch->ep->p.ring_pages);
        else
            xm_error("granting a %u-page ring to domain %u: %s", ch->tx_pages, ch->peer_dom,
                     strerror(-rc));
        return rc;
    }
    ch->tx = p;
    ep_place(ch->ep, ch->tx, ch->tx_size);
    ch->my->magic = XM_WIRE_MAGIC;
    ch->my->version = XM_WIRE_VERSION;
    ch->my->hdr_size = sizeof(struct xm_ctrl_page);
    ch->my->ring_pages = ch->tx_pages;
    ch->my->owner_domid = xm_hv_domid(hv);
    STORE(&ch->my->live, 1);
    return 0;
}

static void chan_own_record(xm_channel_t *ch, xm_hs_rec_t *r, uint32_t port)
{
    memset(r, 0, sizeof(*r));
    r->version = XM_WIRE_VERSION;
    r->domid = xm_hv_domid(ch->ep->hv);
    r->ep = ch->ep->id;
    /* a request carries the listener's key, an answer the listener's own */
    r->key = ch->initiator ? ch->peer_key : ch->ep->key;
    r->ctrl_ref = ch->my_ref;
    r->port = port;
    r->pages = ch->tx_pages;
    memcpy(r->refs, ch->tx_refs, ch->tx_pages * sizeof(uint32_t));
}

/* Map the peer's control page and ring; validate its identity once. */
static int chan_map_peer(xm_channel_t *ch, const xm_hs_rec_t *r)
{
    xm_hv_t *hv = ch->ep->hv;
    struct xm_ctrl_page id;
    void *p;
    int rc;

    rc = xm_hv_map(hv, ch->peer_dom, 1, &r->ctrl_ref, 0, (int)ch->port, &p);
    if (rc) {
        xm_error("mapping control page ref %u of domain %u: %s", r->ctrl_ref,
                 ch->peer_dom, strerror(-rc));
        return rc;
    }
    ch->peer = p;
    memcpy(&id, p, sizeof(id));   /* one copy, then checks on the copy */
    if (id.magic != XM_WIRE_MAGIC || id.version != XM_WIRE_VERSION ||
        id.hdr_size != sizeof(struct xm_ctrl_page) || id.ring_pages != r->pages ||
        id.owner_domid != ch->peer_dom) {
        xm_error("domain %u's control page is not a version %u channel page "
                 "(magic %#x version %u pages %u/%u)", ch->peer_dom, XM_WIRE_VERSION,
                 id.magic, id.version, id.ring_pages, r->pages);
        return -EPROTO;
    }
    rc = xm_hv_map(hv, ch->peer_dom, r->pages, r->refs, 0, -1, &p);
    if (rc) {
        xm_error("mapping %u ring pages of domain %u: %s", r->pages, ch->peer_dom,
                 strerror(-rc));
        return rc;
    }
    ch->rx = p;
    ch->rx_pages = r->pages;
    ch->rx_size = r->pages * XM_PAGE_SIZE;
    /* start from wherever the peer's indices are (0 for a fresh channel) */
    ch->cons = ch->released = 0;
    return 0;
}

/* initiator: the watch on our own request node (a refusal removes it) */
static void unwatch_req(xm_channel_t *ch)
{
    if (ch->req_watched) {
        xm_store_unwatch(ch->ep->hv, ch->req_path, "sent");
        ch->req_watched = 0;
    }
}

void chan_release(xm_channel_t *ch)
{
    xm_hv_t *hv = ch->ep->hv;

    /* the services drop what they hold for it (grants end, waiting
     * copies and gets fail) */
    for (unsigned i = 0; i < ch->ep->nservices; i++)
        if (ch->ep->services[i].chan_gone)
            ch->ep->services[i].chan_gone(ch->ep->services[i].arg, ch);

    if (ch->rx)
        xm_hv_unmap(hv, (void *)ch->rx, ch->rx_pages);
    if (ch->peer)
        xm_hv_unmap(hv, (void *)ch->peer, 1);
    if (ch->tx)
        xm_hv_unshare(hv, ch->tx, ch->tx_pages);
    /* ending the control page share clears our live byte and notifies */
    if (ch->my)
        xm_hv_unshare(hv, ch->my, 1);
    if (ch->port_open)
        xm_hv_evt_close(hv, ch->port);
    chan_unwatch_home(ch);
    unwatch_req(ch);
    if (ch->req_path[0])
        xm_store_remove(hv, ch->req_path);
    if (ch->resp_path[0]) {
        if (ch->initiator)
            xm_store_unwatch(hv, ch->resp_path, "resp");
        else
            xm_store_remove(hv, ch->resp_path);
    }
    ch->rx = NULL;
    ch->peer = NULL;
    ch->tx = NULL;
    ch->my = NULL;
    ch->port_open = 0;
    ch->req_path[0] = ch->resp_path[0] = 0;
}

int xm_endpoint_connect(xm_endpoint_t *ep, uint32_t peer_dom, uint32_t peer_ep,
                        uint64_t peer_key, xm_channel_t **out)
{
    xm_hv_t *hv = ep->hv;
    xm_store_perm_t perms[2] = { { xm_hv_domid(hv), XM_PERM_NONE }, { peer_dom, XM_PERM_BOTH } };
    xm_channel_t *ch = find_chan(ep, peer_dom, peer_ep, 1);
    xm_hs_rec_t *rec;
    char *buf;
    int rc, n;

    if (ch) {
        *out = ch;
        return 0;
    }
    ch = calloc(1, sizeof(*ch));
    if (!ch)
        return -ENOMEM;
    ch->ep = ep;   /* before any failure: chan_release needs it */
    rec = malloc(sizeof(*rec));
    buf = malloc(XM_HS_MAX_LEN + 1);
    rc = -ENOMEM;
    if (!rec || !buf)
        goto err;
    ch->peer_dom = peer_dom;
    ch->peer_ep = peer_ep;
    ch->peer_key = peer_key;
    ch->initiator = 1;
    ch->state = XM_CH_CONNECTING;
    rc = xm_hv_evt_alloc_unbound(hv, peer_dom, &ch->port);
    if (rc) {
        xm_error("event channel for domain %u: %s", peer_dom, strerror(-rc));
        goto err;
    }
    ch->port_open = 1;
    rc = chan_share_own(ch);
    if (rc)
        goto err;
    chan_own_record(ch, rec, ch->port);
    n = xm_hs_format(rec, buf, XM_HS_MAX_LEN + 1);
    if (n < 0) {
        rc = n;
        goto err;
    }
    snprintf(ch->resp_path, sizeof(ch->resp_path), "/local/domain/%u/xenmpi/ep%u/resp/%u-%u",
             peer_dom, peer_ep, xm_hv_domid(hv), ep->id);
    rc = xm_store_watch(hv, ch->resp_path, "resp");
    if (rc)
        goto err;
    snprintf(ch->req_path, sizeof(ch->req_path), "/local/domain/%u/xenmpi/ep%u/req/%u-%u",
             peer_dom, peer_ep, xm_hv_domid(hv), ep->id);
    /* created readable by D at once: D removes request nodes it cannot read */
    rc = xm_store_create(hv, ch->req_path, buf, (size_t)n, perms, 2);
    if (rc) {
        xm_error("connecting to endpoint %u of domain %u: cannot write %s (%s): is the "
                 "peer running and on this host?", peer_ep, peer_dom, ch->req_path,
                 strerror(-rc));
        if (rc == -EACCES)
            rc = -ECONNREFUSED;
        goto err;
    }
    /* A listener that cannot accept removes the request unanswered: the
     * watch hears it, so we fail now instead of at the deadline.  Without
     * the watch (the store's watch quota) the deadline still ends it. */
    if (xm_store_watch(hv, ch->req_path, "sent") == 0)
        ch->req_watched = 1;
    else
        xm_debug("no watch on %s: a refusal is seen at the connect deadline", ch->req_path);
    xm_debug("channel to %u:%u requested", peer_dom, peer_ep);
    ch->deadline = mono_now() + ep->connect_timeout;
    ep->connecting++;
    ch->next = ep->chans;
    ep->chans = ch;
    free(rec);
    free(buf);
    *out = ch;
    return 0;
err:
    chan_release(ch);
    free(ch);
    free(rec);
    free(buf);
    return rc;
}

/* Listener side: a request node appeared under our req dir. */
static void accept_request(xm_endpoint_t *ep, const char *name)
{
    xm_hv_t *hv = ep->hv;
    xm_store_perm_t perms[2] = { { xm_hv_domid(hv), XM_PERM_NONE }, { 0, XM_PERM_READ } };
    uint32_t dom, pep, owner = 0;
    char path[XM_STORE_MAX_PATH], *val = NULL, *buf = NULL, tail;
    xm_hs_rec_t *rec = NULL, *mine = NULL;
    xm_channel_t *ch = NULL;
    size_t len = 0;
    int rc, n;

    if (sscanf(name, "%u-%u%c", &dom, &pep, &tail) != 2) {
        /* not a request of ours (domid-endpoint): garbage a domain left in
         * our req dir, which it cannot take back from us */
        xm_peer_warn("removing malformed request node %s/%s", ep->req_dir, name);
        snprintf(path, sizeof(path), "%s/%s", ep->req_dir, name);
        xm_store_remove(hv, path);
        return;
    }
    /* Already accepted, unless that peer is gone and this is its new
     * request, written before our progress saw the old channel die (a
     * peer that closes and reconnects at once; always so for ourselves,
     * whose close and connect no progress of ours separates). */
    for (xm_channel_t *c = ep->chans; c; c = c->next)
        if (c->peer_dom == dom && c->peer_ep == pep && !c->initiator &&
            c->state <= XM_CH_CONNECTED && chan_check_live(c) == 0)
            return;
    snprintf(path, sizeof(path), "%s/%s", ep->req_dir, name);
    rc = xm_store_read(hv, path, &val, &len);
    if (rc == -ENOENT)
        return;  /* withdrawn */
    if (rc == -EACCES) {
        /* every real request is created readable by us (xm_store_create):
         * this one is somebody's garbage, and our req dir lets us remove it */
        xm_peer_warn("removing request node %s that this domain cannot read", path);
        xm_store_remove(hv, path);
        return;
    }
    rec = malloc(sizeof(*rec));
    mine = malloc(sizeof(*mine));
    buf = malloc(XM_HS_MAX_LEN + 1);
    ch = calloc(1, sizeof(*ch));
    if (rc || !rec || !mine || !buf || !ch)
        goto out;
    if (xm_hs_parse(val, len, rec) || rec->domid != dom || rec->ep != pep || rec->port == 0 ||
        dom >= XM_DOMID_FIRST_RESERVED) {
        xm_peer_error("rejecting malformed handshake from domain %u endpoint %u", dom, pep);
        xm_store_remove(hv, path);
        goto out;
    }
    /* The name is the requester's word; the node's owner is xenstored's
     * (the domain that created it, which no domain but dom0 can change). */
    rc = xm_store_owner(hv, path, &owner);
    if (rc == -EACCES || rc == -ENOENT) {
        rc = 0;
        goto out;   /* withdrawn meanwhile */
    }
    if (rc || owner != dom) {
        if (rc)
            xm_peer_error("refusing the request of domain %u endpoint %u: its node's owner "
                     "cannot be read (%s)", dom, pep, strerror(-rc));
        else
            xm_peer_error("refusing a request in the name of domain %u endpoint %u: domain %u "
                     "wrote it", dom, pep, owner);
        xm_store_remove(hv, path);
        goto out;
    }
    /* what one peer domain can make us hold: its channels to us */
    unsigned from_dom = 0, cap = xm_cfg_uint(XM_CFG_MAX_DOMAIN_CHANNELS);
    for (xm_channel_t *c = ep->chans; c; c = c->next)
        from_dom += !c->initiator && c->peer_dom == dom && c->state <= XM_CH_CONNECTED;
    if (from_dom >= cap) {
        xm_peer_error("refusing domain %u endpoint %u: domain %u has %u channels to this endpoint "
                 "already (XENMPI_MAX_DOMAIN_CHANNELS=%u)", dom, pep, dom, from_dom, cap);
        xm_store_remove(hv, path);
        goto out;
    }
    if (rec->key != ep->key) {
        /* only the job's members were given our address (the launcher's
         * exchange): anyone else is refused before we bind or map a thing */
        xm_peer_error("refusing domain %u endpoint %u: its request does not carry this "
                 "endpoint's key (it was not given our address)", dom, pep);
        xm_store_remove(hv, path);
        goto out;
    }
    ch->ep = ep;
    ch->peer_dom = dom;
    ch->peer_ep = pep;
    ch->state = XM_CH_CONNECTING;
    rc = xm_hv_evt_bind(hv, dom, rec->port, &ch->port);
    if (rc) {
        xm_error("binding event channel %u of domain %u: %s", rec->port, dom, strerror(-rc));
        goto fail;
    }
    ch->port_open = 1;
    if ((rc = chan_share_own(ch)) || (rc = chan_map_peer(ch, rec)))
        goto fail;
    chan_own_record(ch, mine, 0);
    n = xm_hs_format(mine, buf, XM_HS_MAX_LEN + 1);
    snprintf(ch->resp_path, sizeof(ch->resp_path), "%s/resp/%s", ep->dir, name);
    perms[1].domid = dom;
    rc = n < 0 ? n : xm_store_create(hv, ch->resp_path, buf, (size_t)n, perms, 2);
    if (rc) {
        xm_error("answering domain %u at %s: %s", dom, ch->resp_path, strerror(-rc));
        goto fail;
    }
    ch->state = XM_CH_CONNECTED;
    chan_watch_home(ch);
    ch->next = ep->chans;
    ep->chans = ch;
    ch = NULL;
    xm_debug("accepted channel from %u:%u", dom, pep);
    if (ep->p.event_cb)
        ep->p.event_cb(ep->p.cb_arg, ep->chans, XM_EV_ACCEPTED);
    goto out;
fail:
    xm_store_remove(hv, path);
    chan_release(ch);
out:
    free(ch);
    free(val);
    free(rec);
    free(mine);
    free(buf);
}

/* Initiator side: the listener's answer may be there. */
void complete_connect(xm_channel_t *ch)
{
    xm_hv_t *hv = ch->ep->hv;
    xm_hs_rec_t *rec;
    char *val = NULL;
    size_t len = 0;
    int rc;

    if (ch->state != XM_CH_CONNECTING || !ch->initiator)
        return;
    rc = xm_store_read(hv, ch->resp_path, &val, &len);
    if (rc)
        return;  /* not yet (or not readable yet) */
    rec = malloc(sizeof(*rec));
    if (!rec || xm_hs_parse(val, len, rec) || rec->domid != ch->peer_dom ||
        rec->ep != ch->peer_ep || rec->key != ch->peer_key) {
        xm_error("malformed handshake answer from domain %u endpoint %u",
                 ch->peer_dom, ch->peer_ep);
        free(rec);
        free(val);
        chan_fail(ch, XM_CH_FAILED);
        return;
    }
    free(val);
    rc = chan_map_peer(ch, rec);
    free(rec);
    if (rc) {
        chan_fail(ch, XM_CH_FAILED);
        return;
    }
    /* the answer is ours now: withdraw the request, the listener then
     * removes its answer */
    unwatch_req(ch);
    xm_store_unwatch(hv, ch->resp_path, "resp");
    xm_store_remove(hv, ch->req_path);
    ch->req_path[0] = ch->resp_path[0] = 0;
    ch->ep->connecting--;
    chan_connected(ch);
    xm_debug("channel to %u:%u connected", ch->peer_dom, ch->peer_ep);
    if (ch->ep->p.event_cb)
        ch->ep->p.event_cb(ch->ep->p.cb_arg, ch, XM_EV_CONNECTED);
}

/* Initiator side: our request node changed or went.  The listener removes a
 * request it cannot accept (its grant table or gntalloc's limit, a bad
 * record) after logging why; we only see that it is gone, unanswered. */
void check_refused(xm_channel_t *ch)
{
    char *val = NULL;
    int rc;

    if (ch->state != XM_CH_CONNECTING || !ch->initiator || !ch->req_path[0])
        return;
    rc = xm_store_read(ch->ep->hv, ch->req_path, &val, NULL);
    free(val);
    if (rc != -ENOENT)
        return;   /* still there (the watch also fires when set) */
    complete_connect(ch);   /* an answer written just before the removal */
    if (ch->state != XM_CH_CONNECTING)
        return;
    xm_error("endpoint %u of domain %u dropped our connection request unanswered: it "
             "could not accept it (its own log says why, e.g. its grant table is full, "
             "gntalloc's limit is reached or our domain has XENMPI_MAX_DOMAIN_CHANNELS channels "
             "to it) or it closed", ch->peer_ep, ch->peer_dom);
    chan_fail(ch, XM_CH_FAILED);
}

void scan_requests(xm_endpoint_t *ep)
{
    char **names = NULL;
    unsigned n = 0;

    if (xm_store_list(ep->hv, ep->req_dir, &names, &n))
        return;
    for (unsigned i = 0; i < n; i++) {
        accept_request(ep, names[i]);
        free(names[i]);
    }
    free(names);
    /* answers whose request was withdrawn are done with */
    for (xm_channel_t *c = ep->chans; c; c = c->next) {
        if (c->initiator || !c->resp_path[0])
            continue;
        char *v = NULL;
        char path[XM_STORE_MAX_PATH + 16];
        snprintf(path, sizeof(path), "%s/%u-%u", ep->req_dir, c->peer_dom, c->peer_ep);
        int rc = xm_store_read(ep->hv, path, &v, NULL);
        free(v);
        if (rc == -ENOENT) {
            xm_store_remove(ep->hv, c->resp_path);
            c->resp_path[0] = 0;
        }
    }
}

