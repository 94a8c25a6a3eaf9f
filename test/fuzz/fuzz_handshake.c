/* libFuzzer target: the handshake record a peer writes into the store. */
#include "xm_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static xm_hs_rec_t rec, back;
    static char buf[XM_HS_MAX_LEN + 1];

    if (xm_hs_parse((const char *)data, size, &rec))
        return 0;
    /* whatever parses is within bounds and survives a round trip */
    if (rec.pages < XM_RING_MIN_PAGES || rec.pages > XM_RING_MAX_PAGES ||
        (rec.pages & (rec.pages - 1)))
        abort();
    int n = xm_hs_format(&rec, buf, sizeof(buf));
    if (n < 0 || xm_hs_parse(buf, (size_t)n, &back) || memcmp(&rec, &back, sizeof(rec)))
        abort();
    return 0;
}
