/*
 * xen_wire.h - the netmod's records as a peer sends them (docs/wire.md,
 * "MPICH netmod messages"), and their parsers.  Free of MPICH so that a
 * fuzz target builds it alone; xen_am.c checks its layout against
 * xen_impl.h's.
 */
#ifndef XEN_WIRE_H_INCLUDED
#define XEN_WIRE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MPIDI_XEN_WIRE_RNDV      0x8000u             /* in handler_id */
#define MPIDI_XEN_WIRE_HDR_MAX   (64u * 1024)        /* MPIDIG header bytes */
#define MPIDI_XEN_WIRE_DATA_MAX  ((uint64_t) 1 << 46)
#define MPIDI_XEN_WIRE_PAGE      4096u               /* the grant page */

struct MPIDI_XEN_wire_hdr {
    uint16_t handler_id;
    uint8_t src_vci, dst_vci;
    uint32_t am_hdr_sz;
    uint64_t data_sz;
};

struct MPIDI_XEN_wire_rndv {
    uint64_t id, base, len;      /* the sender's registration */
    uint64_t cookie;
    uint64_t addr, size;         /* the data, inside it */
};

/* The bytes of a rendezvous's data that travel inline, after its
 * descriptor: those outside the whole pages of the registration (the
 * partial pages at its ends), which zero-copy could only fetch through the
 * ring, one round trip later.  *head is how many come before the first
 * whole page (all of them when the data reaches none); the rest are the
 * bytes after the last one.  Less than a page each. */
static inline uint64_t MPIDI_XEN_wire_inline(const struct MPIDI_XEN_wire_rndv *rv,
                                             uint64_t *head)
{
    const uint64_t pm = MPIDI_XEN_WIRE_PAGE - 1;
    uint64_t gs = (rv->base + pm) & ~pm, ge = (rv->base + rv->len) & ~pm;
    uint64_t end = rv->addr + rv->size;

    if (ge <= gs || end <= gs || rv->addr >= ge) {
        *head = rv->size;
        return rv->size;
    }
    *head = rv->addr < gs ? gs - rv->addr : 0;
    return *head + (end > ge ? end - ge : 0);
}

/* The first record of a message: its header, handler below nhandlers,
 * sizes in bounds, no more bytes than announced.  *body is what follows
 * the header in all records of the message: the MPIDIG header, then
 * (rendezvous) the descriptor, then data_sz bytes of data.  0, or -1:
 * malformed. */
static inline int MPIDI_XEN_wire_first(const void *rec, size_t len, unsigned nhandlers,
                                       struct MPIDI_XEN_wire_hdr *h, size_t *body)
{
    if (len < sizeof(*h))
        return -1;
    memcpy(h, rec, sizeof(*h));
    if ((h->handler_id & ~MPIDI_XEN_WIRE_RNDV) >= nhandlers ||
        h->am_hdr_sz > MPIDI_XEN_WIRE_HDR_MAX || h->data_sz > MPIDI_XEN_WIRE_DATA_MAX ||
        ((h->handler_id & MPIDI_XEN_WIRE_RNDV) && h->data_sz > 2 * MPIDI_XEN_WIRE_PAGE))
        return -1;
    *body = (size_t) h->am_hdr_sz + (size_t) h->data_sz +
        ((h->handler_id & MPIDI_XEN_WIRE_RNDV) ? sizeof(struct MPIDI_XEN_wire_rndv) : 0);
    return len - sizeof(*h) > *body ? -1 : 0;
}

/* A rendezvous descriptor (after the MPIDIG header of h's message): a
 * registration not wrapping around, the data nonempty and inside it, and
 * h's data_sz the bytes of it that come inline (MPIDI_XEN_wire_inline). */
static inline int MPIDI_XEN_wire_rndv(const struct MPIDI_XEN_wire_hdr *h, const void *desc,
                                      struct MPIDI_XEN_wire_rndv *rv)
{
    uint64_t head;

    memcpy(rv, desc, sizeof(*rv));
    if (rv->base + rv->len < rv->base || rv->size == 0 ||
        rv->size > MPIDI_XEN_WIRE_DATA_MAX || rv->addr < rv->base ||
        rv->addr - rv->base > rv->len || rv->size > rv->len - (rv->addr - rv->base) ||
        MPIDI_XEN_wire_inline(rv, &head) != h->data_sz)
        return -1;
    return 0;
}

#endif /* XEN_WIRE_H_INCLUDED */
