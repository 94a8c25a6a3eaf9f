/* libFuzzer target: a zero-copy grant request (GREQ) as a peer may send it.
 * The parser must read exactly the record and accept only its size. */
#include "xm_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rec = malloc(size ? size : 1);   /* exact size: ASan catches overreads */
    struct xm_zc_greq q;

    if (!rec)
        return 0;
    memcpy(rec, data, size);
    if (xm_zc_parse_greq(rec, size, &q) == 0 &&
        (size != sizeof(q) || memcmp(&q, rec, sizeof(q))))
        abort();
    free(rec);
    return 0;
}
