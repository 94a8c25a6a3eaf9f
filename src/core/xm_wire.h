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
#define XM_WIRE_VERSION 1u
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

#define XM_REC_PAD 0xffffu
#define XM_REC_ALIGN 8u
#define XM_REC_SIZE(len) (sizeof(struct xm_rec_hdr) + (((len) + XM_REC_ALIGN - 1) & ~(XM_REC_ALIGN - 1)))

/* Validate the record at free-running index cons of a ring of size bytes
 * (a power of two) holding avail bytes the peer published.  The header is
 * copied once into *hdr; *rec gets the record's length on the ring.
 * Returns 0, or -EPROTO when the record is impossible. */
int xm_ring_next(const uint8_t *ring, uint32_t size, uint32_t cons, uint32_t avail,
                 size_t max_msg, struct xm_rec_hdr *hdr, uint32_t *rec);

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
