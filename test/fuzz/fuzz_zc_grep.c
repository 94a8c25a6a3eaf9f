/* libFuzzer target: a zero-copy grant answer (GREP) as an owner may send
 * it.  An accepted answer has a length that matches its ref count, at most
 * one chunk of refs, a status of 0 with refs or a negative one without,
 * and only defined flags. */
#include "xm_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rec = malloc(size ? size : 1);
    uint32_t refs[XM_ZC_MAX_REFS + 1];
    struct xm_zc_grep h;

    if (!rec)
        return 0;
    memcpy(rec, data, size);
    refs[XM_ZC_MAX_REFS] = 0xdeadbeef;   /* a canary past the room given */
    if (xm_zc_parse_grep(rec, size, &h, refs) == 0) {
        if (size != sizeof(h) + (size_t)h.npages * sizeof(uint32_t) || h.status > 0 ||
            h.npages > XM_ZC_MAX_REFS || (h.status == 0) != (h.npages > 0) ||
            (h.flags & ~XM_ZC_F_WRITE) ||
            memcmp(refs, rec + sizeof(h), h.npages * sizeof(uint32_t)))
            abort();
    }
    if (refs[XM_ZC_MAX_REFS] != 0xdeadbeef)
        abort();
    free(rec);
    return 0;
}
