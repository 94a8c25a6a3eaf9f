/* One buffer sent to every rank of the other VM, again and again, with
 * every received byte checked.
 *
 *   fanout [iters [bytes]]      (default 8 iterations of 4 MiB)
 *
 * The ranks are laid out in two VMs, the first half in one and the second
 * half in the other.  Rank 0 sends the same buffer (new contents each
 * iteration, page aligned) to each rank of the other VM in turn; they poison their
 * receive buffer before each receive and compare every byte.  Large
 * messages go by rendezvous: the receivers grant-copy rank 0's pages, all
 * of them under one grant per chunk to their domain.  Rank 0 prints
 * "fanout: OK ..." when every receiver saw every byte right. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint8_t pat(size_t i, uint32_t seed)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 13;
    return (uint8_t)(x * 0x9e3779b1u >> 24);
}

int main(int argc, char **argv)
{
    int rank, n, bad = 0, allbad = 0;
    long iters = argc > 1 ? atol(argv[1]) : 8;
    size_t size = argc > 2 ? (size_t)atoll(argv[2]) : (size_t)4 << 20;
    uint8_t *buf;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    if (n < 4 || n % 2 || iters < 1 || size < 1) {
        if (rank == 0)
            fprintf(stderr, "fanout: needs an even number of ranks >= 4 (two per VM "
                    "or more), iters >= 1, bytes >= 1\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    /* page aligned: whole pages only, none of it through the ring */
    if (posix_memalign((void **)&buf, 4096, size))
        MPI_Abort(MPI_COMM_WORLD, 3);
    for (long it = 0; it < iters; it++) {
        uint32_t seed = (uint32_t)(it * 7919 + 13);
        if (rank == 0) {
            for (size_t i = 0; i < size; i++)
                buf[i] = pat(i, seed);
            for (int r = n / 2; r < n; r++)
                MPI_Send(buf, (int)size, MPI_BYTE, r, (int)it, MPI_COMM_WORLD);
        } else if (rank >= n / 2) {
            memset(buf, 0xa5, size);
            MPI_Recv(buf, (int)size, MPI_BYTE, 0, (int)it, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (size_t i = 0; i < size; i++) {
                if (buf[i] != pat(i, seed)) {
                    if (!bad)
                        fprintf(stderr, "fanout: rank %d: iteration %ld: byte %zu is 0x%02x, "
                                "want 0x%02x\n", rank, it, i, buf[i], pat(i, seed));
                    bad++;
                    break;
                }
            }
        }
    }
    MPI_Reduce(&bad, &allbad, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        if (allbad)
            printf("fanout: FAILED: %d receives wrong\n", allbad);
        else
            printf("fanout: OK: %ld x %zu B from rank 0 to each of ranks %d..%d, every byte "
                   "checked\n", iters, size, n / 2, n - 1);
    }
    free(buf);
    MPI_Finalize();
    return allbad ? 1 : 0;
}
