/* libFuzzer target: the first record of an MPICH netmod message, and a
 * rendezvous descriptor, as a peer may send them (src/mpich_netmod/xen_wire.h).
 * An accepted record never holds more than its header announced, names a
 * handler below the count, and a descriptor covers exactly the data. */
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
            MPIDI_XEN_wire_rndv(&h, rec + sizeof(h) + h.am_hdr_sz, &rv) == 0 &&
            (rv.len != h.data_sz || !rv.len || rv.base + rv.len < rv.base))
            abort();
    }
    free(rec);
    return 0;
}
