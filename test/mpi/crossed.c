/* Crossed first sends: as its very first communication, every rank sends
 * one message to every other rank at once and then receives theirs, so
 * that the channels between two ranks are being set up from both ends
 * while the first (large: rendezvous) messages arrive.  Repeated for a few
 * sizes, each a new round of crossed sends; every byte checked.
 *
 *   crossed [bytes...]     (default 65536 1048576 100)
 * Prints "crossed: OK (...)"; exits non-zero naming rank, peer and offset
 * on a mismatch. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, nranks;

static void die(const char *msg)
{
    fprintf(stderr, "crossed: rank %d: %s\n", rank, msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static uint8_t pat(size_t i, int from, int to, size_t n)
{
    return (uint8_t)(i * 7 + (size_t)from * 31 + (size_t)to * 101 + n * 3 + 1);
}

int main(int argc, char **argv)
{
    size_t sizes[16] = {65536, 1048576, 100};
    int nsizes = 3;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc > 1) {
        nsizes = 0;
        for (int a = 1; a < argc && nsizes < 16; a++)
            sizes[nsizes++] = (size_t)strtoull(argv[a], NULL, 0);
    }
    MPI_Request *req = malloc(sizeof(*req) * 2 * (size_t)nranks);
    MPI_Status *st = malloc(sizeof(*st) * 2 * (size_t)nranks);
    uint8_t **sb = calloc((size_t)nranks, sizeof(*sb)), **rb = calloc((size_t)nranks, sizeof(*rb));
    if (!req || !st || !sb || !rb)
        die("out of memory");
    size_t total = 0;
    for (int si = 0; si < nsizes; si++) {
        size_t n = sizes[si];
        int nr = 0;

        for (int p = 0; p < nranks; p++) {
            if (p == rank)
                continue;
            sb[p] = malloc(n ? n : 1);
            rb[p] = malloc(n ? n : 1);
            if (!sb[p] || !rb[p])
                die("out of memory");
            for (size_t i = 0; i < n; i++)
                sb[p][i] = pat(i, rank, p, n);
            memset(rb[p], 0xa5, n);
        }
        /* sends first: no receive is posted when the first messages land */
        for (int p = 0; p < nranks; p++)
            if (p != rank)
                MPI_Isend(sb[p], (int)n, MPI_BYTE, p, si, MPI_COMM_WORLD, &req[nr++]);
        for (int p = 0; p < nranks; p++)
            if (p != rank)
                MPI_Irecv(rb[p], (int)n, MPI_BYTE, p, si, MPI_COMM_WORLD, &req[nr++]);
        MPI_Waitall(nr, req, st);
        for (int p = 0; p < nranks; p++) {
            if (p == rank)
                continue;
            for (size_t i = 0; i < n; i++)
                if (rb[p][i] != pat(i, p, rank, n)) {
                    char m[160];
                    snprintf(m, sizeof m, "%zu-byte message from rank %d wrong at offset %zu",
                             n, p, i);
                    die(m);
                }
            total += n;
            free(sb[p]);
            free(rb[p]);
        }
    }
    size_t all = 0;
    MPI_Reduce(&total, &all, 1, MPI_UNSIGNED_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("crossed: OK (%d ranks, %d rounds, %zu bytes received and checked)\n", nranks,
               nsizes, all);
    free(req);
    free(st);
    free(sb);
    free(rb);
    MPI_Finalize();
    return 0;
}
