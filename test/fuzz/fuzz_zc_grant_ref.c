/* libFuzzer target: INVAL, ACK and REL (one grant of one chunk) as a peer
 * may send them: only the exact size is accepted, copied as it was. */
#include "xm_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rec = malloc(size ? size : 1);
    struct xm_zc_grant_ref m;

    if (!rec)
        return 0;
    memcpy(rec, data, size);
    if (xm_zc_parse_grant_ref(rec, size, &m) == 0 &&
        (size != sizeof(m) || memcmp(&m, rec, sizeof(m))))
        abort();
    free(rec);
    return 0;
}
