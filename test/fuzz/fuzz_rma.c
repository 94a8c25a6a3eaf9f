/* libFuzzer target: an RMA record (PUT, GET_REQ, GET_REP, PUSH_REQ,
 * PUSH_REP) as a peer may send it.  Input: 1 byte choosing the type, then
 * the record.  An accepted record's payload length is what its header says
 * it carries, and a PUSH_REQ's payload parses as its body. */
#include "xm_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xm_rma_hdr h;
    uint16_t type;
    uint8_t *rec;
    size_t plen;

    if (size < 1)
        return 0;
    type = (uint16_t)(XM_REC_RMA_FIRST + data[0] % 6);   /* and one past the range */
    rec = malloc(size - 1 ? size - 1 : 1);
    if (!rec)
        return 0;
    memcpy(rec, data + 1, size - 1);
    if (xm_rma_parse(type, rec, size - 1, &h, &plen) == 0) {
        if (type > XM_REC_RMA_LAST || plen != size - 1 - sizeof(h) || h.status > 0 ||
            (type == XM_REC_RMA_PUT && (plen != h.len || h.status || h.req)) ||
            (type == XM_REC_RMA_GET_REQ && (plen || h.status)) ||
            (type == XM_REC_RMA_GET_REP && plen != (h.status ? 0 : h.len)) ||
            (type == XM_REC_RMA_PUSH_REQ && (plen != sizeof(struct xm_rma_push) || h.status)) ||
            (type == XM_REC_RMA_PUSH_REP && plen))
            abort();
        if (type == XM_REC_RMA_PUSH_REQ) {
            struct xm_rma_push b;

            if (xm_rma_parse_push(rec + sizeof(h), plen, &b) ||
                memcmp(&b, rec + sizeof(h), sizeof(b)))
                abort();
        }
    }
    free(rec);
    return 0;
}
