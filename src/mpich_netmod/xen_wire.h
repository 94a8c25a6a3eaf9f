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

struct MPIDI_XEN_wire_hdr {
    uint16_t handler_id;
    uint8_t src_vci, dst_vci;
    uint32_t am_hdr_sz;
    uint64_t data_sz;
};

struct MPIDI_XEN_wire_rndv {
    uint64_t id, base, len, cookie;
};

/* The first record of a message: its header, handler below nhandlers,
 * sizes in bounds, no more bytes than announced.  *body is what follows
 * the header in all records of the message: the MPIDIG header, then the
 * data or (rendezvous) the descriptor.  0, or -1: malformed. */
static inline int MPIDI_XEN_wire_first(const void *rec, size_t len, unsigned nhandlers,
                                       struct MPIDI_XEN_wire_hdr *h, size_t *body)
{
    if (len < sizeof(*h))
        return -1;
    memcpy(h, rec, sizeof(*h));
    if ((h->handler_id & ~MPIDI_XEN_WIRE_RNDV) >= nhandlers ||
        h->am_hdr_sz > MPIDI_XEN_WIRE_HDR_MAX || h->data_sz > MPIDI_XEN_WIRE_DATA_MAX)
        return -1;
    *body = (size_t) h->am_hdr_sz + ((h->handler_id & MPIDI_XEN_WIRE_RNDV)
                                     ? sizeof(struct MPIDI_XEN_wire_rndv)
                                     : (size_t) h->data_sz);
    return len - sizeof(*h) > *body ? -1 : 0;
}

/* A rendezvous descriptor (after the MPIDIG header of h's message): the
 * sender's registration of exactly the data, not wrapping around. */
static inline int MPIDI_XEN_wire_rndv(const struct MPIDI_XEN_wire_hdr *h, const void *desc,
                                      struct MPIDI_XEN_wire_rndv *rv)
{
    memcpy(rv, desc, sizeof(*rv));
    if (rv->len != h->data_sz || rv->len == 0 || rv->base + rv->len < rv->base)
        return -1;
    return 0;
}

#endif /* XEN_WIRE_H_INCLUDED */
