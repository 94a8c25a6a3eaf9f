/* libFuzzer target: the first record of an MPICH netmod message, and a
 * rendezvous descriptor, as a peer may send them (src/mpich_netmod/xen_wire.h).
 * An accepted record never holds more than its header announced, names a
 * handler below the count; an accepted descriptor's data lies inside its
 * registration, and the bytes said to come inline are fewer than two
 * pages, with the rest whole pages of the registration. */
#include "../../src/mpich_netmod/xen_wire.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct MPIDI_XEN_wire_hdr h;
    struct MPIDI_XEN_wire_rndv rv;
    size_t body;
    uint8_t *rec = malloc(size ? size : 1);

    if (!rec)
        return 0;
    memcpy(rec, data, size);
    if (MPIDI_XEN_wire_first(rec, size, 64, &h, &body) == 0) {
        if (size < sizeof(h) || size - sizeof(h) > body ||
            (h.handler_id & ~MPIDI_XEN_WIRE_RNDV) >= 64 || h.am_hdr_sz > MPIDI_XEN_WIRE_HDR_MAX)
            abort();
        if ((h.handler_id & MPIDI_XEN_WIRE_RNDV) && size - sizeof(h) == body &&
            MPIDI_XEN_wire_rndv(&h, rec + sizeof(h) + h.am_hdr_sz, &rv) == 0) {
            uint64_t head, inl = MPIDI_XEN_wire_inline(&rv, &head), mid = rv.size - inl;
            uint64_t m0 = rv.addr + head;   /* the middle: inside whole pages of the registration */
            uint64_t gs = (rv.base + MPIDI_XEN_WIRE_PAGE - 1) / MPIDI_XEN_WIRE_PAGE * MPIDI_XEN_WIRE_PAGE;
            uint64_t ge = (rv.base + rv.len) / MPIDI_XEN_WIRE_PAGE * MPIDI_XEN_WIRE_PAGE;

            if (!rv.size || rv.base + rv.len < rv.base || rv.addr < rv.base ||
                rv.addr + rv.size > rv.base + rv.len || inl != h.data_sz || head > inl ||
                inl > rv.size || inl >= 2 * MPIDI_XEN_WIRE_PAGE ||
                (mid && (m0 < gs || m0 + mid > ge)))
                abort();
        }
    }
    free(rec);
    return 0;
}
