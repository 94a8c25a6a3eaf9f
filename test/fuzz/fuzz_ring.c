/* libFuzzer target: a ring as a peer may write it.  Input: 4 bytes of ring
 * size exponent and producer index, then the ring's bytes.  The consumer
 * must never read outside the ring or accept an impossible record. */
#include "xm_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t hdr[2], ring_size, cons = 0, prod;
    uint8_t *ring;

    if (size < sizeof(hdr))
        return 0;
    memcpy(hdr, data, sizeof(hdr));
    ring_size = 4096u << (hdr[0] % 3);          /* 1, 2 or 4 pages */
    prod = hdr[1];
    ring = malloc(ring_size);                   /* exact size: ASan catches overreads */
    if (!ring)
        return 0;
    memset(ring, 0, ring_size);
    memcpy(ring, data + sizeof(hdr), size - sizeof(hdr) < ring_size ? size - sizeof(hdr) : ring_size);
    size_t max_msg = ring_size / 2 - sizeof(struct xm_rec_hdr);
    uint32_t avail = prod - cons;
    for (int guard = 0; avail && guard < 100000; guard++) {
        struct xm_rec_hdr h;
        uint32_t rec;
        if (xm_ring_next(ring, ring_size, cons, avail, max_msg, &h, &rec))
            break;
        uint32_t off = cons & (ring_size - 1);
        if (rec == 0 || rec > avail || off + rec > ring_size)
            abort();
        if (h.type != XM_REC_PAD && h.len > max_msg)
            abort();
        volatile uint8_t sink = 0;
        for (uint32_t k = 0; h.type != XM_REC_PAD && k < h.len; k++)
            sink ^= ring[off + sizeof(h) + k];
        (void)sink;
        cons += rec;
        avail -= rec;
    }
    free(ring);
    return 0;
}
