/*
 * mpi_fresh: ping-pong between rank 0 and rank n/2 where every message
 * lives in memory allocated for it, the way programs that malloc a buffer
 * per message (and free it after) use MPI; beside it the same loop over
 * buffers allocated once, so the fall-off shows in one run.  Written for
 * this project.
 *
 *   mpi_fresh [max_bytes [iterations]]      (default 16 MiB, 2000)
 *
 * Sizes 64 KiB, 256 KiB, ... up to max_bytes; <iterations> at 64 KiB, as
 * many bytes' worth (at least 20) at the larger sizes.  Per iteration and side:
 * fresh: malloc the send buffer, fill it, malloc the receive buffer,
 * send / receive, check the first and last byte, free both;
 * reused: the same fill, send / receive and check over two buffers
 * allocated once (the fill stays in the loop so that both loops do the
 * same work but for the allocation).  Prints, per size, "fresh <bytes>
 * <us> <MB/s>" and "reused <bytes> <us> <MB/s>" (one-way time, best of 3
 * repetitions), then "mpi_fresh: OK".
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, peer;
static MPI_Comm pair;   /* rank 0 and rank n/2 */

static void die(const char *msg)
{
    fprintf(stderr, "mpi_fresh: rank %d: %s\n", rank, msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static uint8_t pat(size_t i, int sender, int it)
{
    return (uint8_t)(i * 131 + (size_t)sender * 17 + (size_t)it * 29 + 1);
}

static void fill(uint8_t *b, size_t n, int it)
{
    memset(b, pat(1, rank, it), n);
    b[0] = pat(0, rank, it);
    b[n - 1] = pat(n - 1, rank, it);
}

static void check(const uint8_t *b, size_t n, int it)
{
    if (b[0] != pat(0, peer, it) || b[n - 1] != pat(n - 1, peer, it) ||
        b[n / 2] != pat(1, peer, it)) {
        char m[96];
        snprintf(m, sizeof m, "%zu-byte message %d has wrong contents", n, it);
        die(m);
    }
}

/* one iteration: rank 0 sends first, the peer answers */
static void one(uint8_t *s, uint8_t *r, size_t n, int it)
{
    fill(s, n, it);
    if (rank == 0) {
        MPI_Send(s, (int)n, MPI_BYTE, peer, it, MPI_COMM_WORLD);
        MPI_Recv(r, (int)n, MPI_BYTE, peer, it, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(r, (int)n, MPI_BYTE, peer, it, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(s, (int)n, MPI_BYTE, peer, it, MPI_COMM_WORLD);
    }
    check(r, n, it);
}

static uint8_t *alloc(size_t n)
{
    uint8_t *b = malloc(n);

    if (!b)
        die("out of memory");
    return b;
}

/* one-way seconds, best of 3 */
static double timed(size_t n, int iters, int fresh)
{
    double best = 1e30;
    uint8_t *s = fresh ? NULL : alloc(n), *r = fresh ? NULL : alloc(n);

    for (int rep = 0; rep < 3; rep++) {
        MPI_Barrier(pair);
        double t0 = MPI_Wtime();
        for (int it = 0; it < iters; it++) {
            if (fresh) {
                s = alloc(n);
                r = alloc(n);
            }
            one(s, r, n, it);
            if (fresh) {
                free(s);
                free(r);
            }
        }
        double t = (MPI_Wtime() - t0) / iters / 2;
        if (t < best)
            best = t;
    }
    if (!fresh) {
        free(s);
        free(r);
    }
    return best;
}

int main(int argc, char **argv)
{
    int nranks;
    size_t maxb = argc > 1 ? strtoull(argv[1], NULL, 0) : (size_t)16 << 20;
    int iters = argc > 2 ? atoi(argv[2]) : 2000;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (nranks < 2)
        die("needs 2 ranks or more");
    if (maxb < 65536 || maxb > ((size_t)1 << 30) || iters < 1)
        die("usage: mpi_fresh [max_bytes: 64 KiB .. 1 GiB [iterations: >= 1]]");
    peer = rank == 0 ? nranks / 2 : rank == nranks / 2 ? 0 : -1;
    MPI_Comm_split(MPI_COMM_WORLD, peer >= 0 ? 0 : MPI_UNDEFINED, rank, &pair);
    if (peer >= 0) {
        for (size_t n = 65536; n <= maxb; n *= 4) {
            /* long enough at small sizes, bounded at large ones */
            int it = (int)((size_t)iters * 65536 / n);
            if (it < 20)
                it = 20;
            double tf = timed(n, it, 1), tr = timed(n, it, 0);
            if (rank == 0) {
                printf("fresh %zu %.2f %.1f\n", n, tf * 1e6, n / tf / 1e6);
                printf("reused %zu %.2f %.1f\n", n, tr * 1e6, n / tr / 1e6);
                fflush(stdout);
            }
        }
        MPI_Comm_free(&pair);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        printf("mpi_fresh: OK\n");
    MPI_Finalize();
    return 0;
}
