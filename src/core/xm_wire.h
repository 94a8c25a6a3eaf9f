/*
 * xm_wire.h - formats shared with a peer domain: the control page, ring
 * records and the handshake record.  docs/wire.md describes them.
 *
 * Ownership rule: each side writes only pages it owns and grants them to the
 * peer READ-ONLY.  A peer can therefore never write our memory; everything we
 * read from its pages is copied once into private memory and validated.
 */
#ifndef XM_WIRE_H
#define XM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define XM_WIRE_MAGIC 0x584d4348u /* "XMCH" */
#define XM_WIRE_VERSION 2u
#define XM_CACHELINE 64

/* Control page: one page per side per channel. */
struct xm_ctrl_page {
    /* line 0: identity, written once before the grant is published */
    uint32_t magic;
    uint16_t version;
    uint16_t hdr_size;         /* sizeof(struct xm_ctrl_page) */
    uint32_t ring_pages;       /* pages of the owner's tx ring */
    uint32_t owner_domid;
    uint8_t live;              /* 1 while the owner runs; unmap-notify clears it */
    uint8_t pad0[XM_CACHELINE - 17];
    /* line 1: producer index of the owner's tx ring (free-running bytes) */
    uint32_t prod;
    uint8_t pad1[XM_CACHELINE - 4];
    /* line 2: how far the owner consumed the peer's ring (free-running) */
    uint32_t cons;
    uint8_t pad2[XM_CACHELINE - 4];
    /* line 3: sleep/wake requests, (sequence << 1) | armed:
     * rx_arm  - the owner sleeps until the peer produces;
     * tx_wait - the owner waits for space in its tx ring. */
    uint32_t rx_arm;
    uint32_t tx_wait;
    uint8_t pad3[XM_CACHELINE - 8];
};

_Static_assert(offsetof(struct xm_ctrl_page, prod) == 1 * XM_CACHELINE, "prod line");
_Static_assert(offsetof(struct xm_ctrl_page, cons) == 2 * XM_CACHELINE, "cons line");
_Static_assert(offsetof(struct xm_ctrl_page, rx_arm) == 3 * XM_CACHELINE, "arm line");
_Static_assert(offsetof(struct xm_ctrl_page, live) == 16, "live byte offset is wire format");
_Static_assert(sizeof(struct xm_ctrl_page) == 4 * XM_CACHELINE, "ctrl size");

#define XM_CTRL_LIVE_OFFSET 16

/* Ring record: header then payload, padded to 8 bytes; never wraps.  A PAD
 * record fills the tail of the ring when the next record does not fit. */
struct xm_rec_hdr {
    uint32_t len;   /* payload bytes */
    uint16_t type;  /* user type, or XM_REC_PAD */
    uint16_t flags; /* 0 */
};
_Static_assert(sizeof(struct xm_rec_hdr) == 8, "record header");

#define XM_REC_ALIGN 8u
#define XM_REC_SIZE(len) (sizeof(struct xm_rec_hdr) + (((len) + XM_REC_ALIGN - 1) & ~(XM_REC_ALIGN - 1)))

/* Validate the record at free-running index cons of a ring of size bytes
 * (a power of two) holding avail bytes the peer published.  The header is
 * copied once into *hdr; *rec gets the record's length on the ring.
 * Returns 0, or -EPROTO when the record is impossible. */
int xm_ring_next(const uint8_t *ring, uint32_t size, uint32_t cons, uint32_t avail,
                 size_t max_msg, struct xm_rec_hdr *hdr, uint32_t *rec);

/* Record types: one registry for every protocol that shares a ring.
 *   [XM_REC_ADAPTER_FIRST, XM_REC_ADAPTER_LAST]  the adapter's own (UCT AM ids)
 *   XM_REC_RMA_*                                 emulated RMA (xm_xfer)
 *   XM_REC_ZC_*                                  zero-copy grants (xm_zc)
 *   XM_REC_PAD                                   ring padding
 * A service of the core claims a range on the endpoint
 * (xm_endpoint_add_service); a record of a type nobody claimed is
 * dropped and counted, never handed to the adapter. */
enum {
    XM_REC_ADAPTER_FIRST = 0x0000,
    XM_REC_ADAPTER_LAST  = 0x00ff,
    XM_REC_RMA_PUT       = 0x0100, /* xm_rma_hdr + data: write into a registration */
    XM_REC_RMA_GET_REQ   = 0x0101, /* xm_rma_hdr: read from a registration */
    XM_REC_RMA_GET_REP   = 0x0102, /* xm_rma_hdr (status) + data on success */
    XM_REC_RMA_PUSH_REQ  = 0x0103, /* xm_rma_hdr + xm_rma_push: copy a registration's
                                    * whole pages into the requester's */
    XM_REC_RMA_PUSH_REP  = 0x0104, /* xm_rma_hdr (status): the push is done */
    XM_REC_RMA_FIRST     = XM_REC_RMA_PUT,
    XM_REC_RMA_LAST      = XM_REC_RMA_PUSH_REP,
    XM_REC_ZC_GREQ       = 0x7f00, /* peer -> owner: grant me this chunk */
    XM_REC_ZC_GREP       = 0x7f01, /* owner -> peer: refs, or why not */
    XM_REC_ZC_INVAL      = 0x7f02, /* owner -> peer: stop using this grant */
    XM_REC_ZC_ACK        = 0x7f03, /* peer -> owner: INVAL done, end it */
    XM_REC_ZC_REL        = 0x7f04, /* peer -> owner: evicted, end it */
    XM_REC_ZC_FIRST      = XM_REC_ZC_GREQ,
    XM_REC_ZC_LAST       = XM_REC_ZC_REL,
    XM_REC_PAD           = 0xffff,
};

/* Records that carry an operation of the sender's (adapter messages, puts,
 * get requests): what a flush waits for the peer to have processed.  An
 * answer to the peer's get and the zero-copy control messages (grant
 * requests, answers, withdrawals and their ends) are not: a peer that
 * stopped reading them (it finished, and waits in its launcher's barrier)
 * must not hold up our flush; each has its own bound (docs/wire.md). */
static inline int xm_rec_is_op(uint16_t type)
{
    return type <= XM_REC_ADAPTER_LAST || type == XM_REC_RMA_PUT || type == XM_REC_RMA_GET_REQ ||
           type == XM_REC_RMA_PUSH_REQ;
}

/* ---- zero-copy messages (docs/wire.md, "Zero-copy messages") ---- */

#define XM_ZC_F_WRITE 1u            /* GREQ/GREP flags: a writable grant */
#define XM_ZC_MAX_REFS 256u         /* refs in one GREP: one chunk's pages */

struct xm_zc_greq {
    uint64_t id;     /* the owner's registration id */
    uint32_t chunk;  /* chunk of the registration's whole pages */
    uint32_t flags;  /* XM_ZC_F_WRITE */
};

struct xm_zc_grep {
    uint64_t id;
    uint32_t chunk;
    uint32_t flags;
    uint32_t gen;    /* the grant's generation, named by INVAL/ACK/REL */
    int32_t status;  /* 0 or -errno */
    uint32_t npages; /* refs that follow (0 unless status == 0) */
    uint32_t pad;
    /* uint32_t refs[npages] */
};

/* INVAL, ACK and REL: one grant of one chunk */
struct xm_zc_grant_ref {
    uint64_t id;
    uint32_t chunk;
    uint32_t gen;
};

_Static_assert(sizeof(struct xm_zc_greq) == 16, "GREQ is wire format");
_Static_assert(sizeof(struct xm_zc_grep) == 32, "GREP is wire format");
_Static_assert(sizeof(struct xm_zc_grant_ref) == 16, "INVAL/ACK/REL are wire format");

/* One parser per message: copy out of data (len bytes from a peer) and
 * validate; 0 or -EPROTO.  A GREP's refs are copied into refs (room for
 * XM_ZC_MAX_REFS); its status is 0 or negative (a status no owner sends,
 * xm_zc_grep_status_known() == 0, is the receiver's to turn into -EPROTO). */
int xm_zc_parse_greq(const void *data, size_t len, struct xm_zc_greq *out);
int xm_zc_parse_grep(const void *data, size_t len, struct xm_zc_grep *out, uint32_t *refs);
int xm_zc_parse_grant_ref(const void *data, size_t len, struct xm_zc_grant_ref *out);
/* the statuses a GREP may carry (docs/wire.md) */
int xm_zc_grep_status_known(int32_t status);

/* ---- emulated RMA (docs/wire.md, "RMA messages") ---- */

struct xm_rma_hdr {
    uint64_t rid;     /* registration id (the owner's) */
    uint64_t addr;    /* remote address, inside that registration */
    uint32_t len;     /* bytes to put or get */
    int32_t status;   /* GET_REP: 0 or the owner's -errno; else 0 */
    uint64_t req;     /* GET_REQ/GET_REP: the requester's request id; else 0 */
};
_Static_assert(sizeof(struct xm_rma_hdr) == 32, "RMA header is wire format");

/* The header of an RMA record of type (len bytes): copied into *out, with
 * the payload length that follows it in *plen.  PUT: payload == hdr len;
 * GET_REQ: no payload; GET_REP: payload == hdr len on success, none on a
 * refusal; PUSH_REQ: an xm_rma_push (xm_rma_parse_push); PUSH_REP: no
 * payload.  0 or -EPROTO. */
int xm_rma_parse(uint16_t type, const void *data, size_t len, struct xm_rma_hdr *out,
                 size_t *plen);

/* An rkey: the owner's description of a registration, packed by the owner
 * and unpacked by a peer, which never dereferences base. */
typedef struct xm_rkey {
    uint64_t id;
    uint64_t base;
    uint64_t len;
} xm_rkey_t;
_Static_assert(sizeof(xm_rkey_t) == 24, "rkey is wire format");

/* PUSH_REQ's payload: where the owner of [addr, addr+len) of registration
 * rid (the header) is asked to copy those pages: [daddr, daddr+len) of the
 * requester's registration dst, by grant copy into the requester's grants. */
struct xm_rma_push {
    xm_rkey_t dst;
    uint64_t daddr;
};
_Static_assert(sizeof(struct xm_rma_push) == 32, "PUSH_REQ is wire format");

/* A PUSH_REQ's payload (plen bytes, after the header): copied into *out.
 * 0 or -EPROTO; the ranges are the owner's to check (xm_xfer). */
int xm_rma_parse_push(const void *payload, size_t plen, struct xm_rma_push *out);

/* ---- addresses ---- */

/* 64-bit FNV-1a: the host identity's hash in addresses, the topology
 * blobs' checksum. */
uint64_t xm_fnv1a64(const void *p, size_t n);

/* Where an endpoint is, as adapters exchange it (the UCX transport: the
 * device address {host_hash, domid}, then the iface address {ep}): which
 * host (the hash of its identity, xm_hv_host_hash), which domain, which
 * endpoint.  The receiver of an address trusts none of it: it only
 * decides whether to try the handshake, which checks the rest. */
typedef struct xm_ep_addr {
    uint64_t host_hash;
    uint32_t domid;
    uint32_t ep;
    uint64_t key;   /* the endpoint's secret: a connection request must carry it */
} xm_ep_addr_t;
/* Whether self can connect to peer: the same host. */
int xm_ep_addr_reachable(const xm_ep_addr_t *self, const xm_ep_addr_t *peer);

/* Largest payload on a ring of ring_bytes: half the ring less a header, so
 * a record always fits once the ring drains (even after a PAD). */
#define XM_MAX_MSG(ring_bytes) ((size_t)(ring_bytes) / 2 - sizeof(struct xm_rec_hdr))

/* Ring sizes: a power of two number of pages in [XM_RING_MIN_PAGES, XM_RING_MAX_PAGES]. */
#define XM_RING_MIN_PAGES 1u
#define XM_RING_MAX_PAGES 256u

/* Handshake record, a text value in the store (one line, key=value pairs):
 *   v=1 dom=<domid> ep=<endpoint id> ctrl=<ref> port=<evtchn port or 0>
 *   pages=<n> refs=<ref>,<ref>,...
 * parsed by xm_hs_parse(), which rejects anything malformed. */
#define XM_HS_MAX_LEN 4000

typedef struct xm_hs_rec {
    uint32_t version;
    uint32_t domid;
    uint32_t ep;
    uint64_t key;       /* the listener's endpoint key (in a request: as given) */
    uint32_t ctrl_ref;
    uint32_t port;
    uint32_t pages;
    uint32_t refs[XM_RING_MAX_PAGES];
} xm_hs_rec_t;

/* 0 or -EINVAL; never reads past len. */
int xm_hs_parse(const char *buf, size_t len, xm_hs_rec_t *out);
/* returns the length written or -ENOSPC */
int xm_hs_format(const xm_hs_rec_t *rec, char *buf, size_t size);

#endif
