/* libFuzzer target: the meta value of a blob dom0 publishes for a guest
 * (topo/xml/meta, topo/affinity/meta: "<bytes> <chunks> <fnv1a64>").  What
 * the guest accepts is within bounds, its chunk count fits its size, and it
 * is spelled exactly as the publisher writes those numbers (one spelling
 * per value).  The input is copied to a buffer of its exact size: the
 * parser gets no terminating NUL, and ASan catches a read past it. */
#include "xm_topo_int.h"
#include "xm_log.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    xm_log_level = -1;   /* refusals are the normal case here */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1), again[64];
    size_t bytes = 0;
    unsigned chunks = 0;
    uint64_t sum = 0;

    if (!s)
        return 0;
    memcpy(s, data, size);
    if (xm_topo_meta_parse(s, size, &bytes, &chunks, &sum) == 0) {
        if (bytes == 0 || bytes > XM_TOPO_MAX_BLOB ||
            chunks != (bytes + XM_TOPO_CHUNK - 1) / XM_TOPO_CHUNK)
            abort();
        int n = xm_topo_meta_format(again, sizeof(again), bytes, sum);
        if (n < 0 || (size_t)n != size || memcmp(again, s, size))
            abort();
    }
    free(s);
    return 0;
}
