/*
 * mpi_stream: streaming MPI measurements between rank 0 and rank n/2 (with
 * 2 ranks in 2 VMs: across the VMs), the way the common MPI bandwidth
 * benchmarks measure, written for this project.
 *
 *   mpi_stream [max_bytes [window [allreduce calls]]]   (default 4 MiB, 64, 20000;
 *                                                         max_bytes 0: allreduce only)
 *
 *  - bw: rank 0 posts <window> non-blocking sends of one size, rank n/2
 *    <window> receives, both wait, then a 4-byte acknowledgement goes back;
 *    repeated, bandwidth = bytes / time;
 *  - bibw: both ranks post <window> receives and <window> sends to each
 *    other at once, bandwidth = bytes both ways / time;
 *  - rate: bw's loop at 8 bytes, messages per second;
 *  - allreduce: MPI_Allreduce of 8 bytes (one double) over all ranks,
 *    microseconds per call.
 * The first and last bytes of every received message are checked against
 * the pattern of its sender, size and index in the window (the whole
 * payload is checked once per size outside the timed loop).  Prints one
 * line per measurement: "bw <bytes> <MB/s>", "bibw <bytes> <MB/s>",
 * "rate 8 <msgs/s>", "allreduce 8 <us>", then "mpi_stream: OK".  Best of 3
 * repetitions of each timed loop.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, nranks, peer;
static MPI_Comm pair_comm;   /* rank 0 and rank n/2 */

static void die(const char *msg)
{
    fprintf(stderr, "mpi_stream: rank %d: %s\n", rank, msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static uint8_t pat(size_t i, int sender, size_t size, int k)
{
    return (uint8_t)(i * 131 + (size_t)sender * 17 + size * 7 + (size_t)k * 29 + 1);
}

static void fill(uint8_t *b, size_t n, int sender, int k)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(i, sender, n, k);
}

static void check(const uint8_t *b, size_t n, int sender, int k, int whole)
{
    if (!n)
        return;
    if (whole) {
        for (size_t i = 0; i < n; i++)
            if (b[i] != pat(i, sender, n, k))
                goto bad;
    } else if (b[0] != pat(0, sender, n, k) || b[n - 1] != pat(n - 1, sender, n, k)) {
        goto bad;
    }
    return;
bad:
    {
        char m[128];
        snprintf(m, sizeof m, "%zu-byte message %d from rank %d has wrong contents", n, k, sender);
        die(m);
    }
}

/* one window of each direction; dir 0: 0 -> peer, 1: peer -> 0, 2: both */
static void window(uint8_t **sbuf, uint8_t **rbuf, size_t n, int w, int dir, int whole)
{
    static MPI_Request req[2 * 256];
    static MPI_Status st[2 * 256];
    int nr = 0, me0 = rank == 0, send = dir == 2 || (dir == 0) == me0;
    int recv = dir == 2 || !send;
    int ack = 0;

    if (recv)
        for (int k = 0; k < w; k++)
            MPI_Irecv(rbuf[k], (int)n, MPI_BYTE, peer, k, MPI_COMM_WORLD, &req[nr++]);
    if (send)
        for (int k = 0; k < w; k++)
            MPI_Isend(sbuf[k], (int)n, MPI_BYTE, peer, k, MPI_COMM_WORLD, &req[nr++]);
    MPI_Waitall(nr, req, st);
    if (recv)
        for (int k = 0; k < w; k++)
            check(rbuf[k], n, peer, k, whole);
    if (dir != 2) {   /* the receiver says it has everything */
        if (recv)
            MPI_Send(&ack, 1, MPI_INT, peer, 999, MPI_COMM_WORLD);
        else
            MPI_Recv(&ack, 1, MPI_INT, peer, 999, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
}

/* best of 3 repetitions of iters windows, seconds per window */
static double timed(uint8_t **sbuf, uint8_t **rbuf, size_t n, int w, int dir, int iters)
{
    double best = 1e30;

    window(sbuf, rbuf, n, w, dir, 1);   /* warm-up, every byte checked */
    for (int rep = 0; rep < 3; rep++) {
        MPI_Barrier(pair_comm);
        double t0 = MPI_Wtime();
        for (int i = 0; i < iters; i++)
            window(sbuf, rbuf, n, w, dir, 0);
        double t = (MPI_Wtime() - t0) / iters;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    size_t maxb = argc > 1 ? (size_t)strtoull(argv[1], NULL, 0) : (size_t)4 << 20;
    int w = argc > 2 ? atoi(argv[2]) : 64;
    int calls = argc > 3 ? atoi(argv[3]) : 20000;

    if (nranks < 2 || nranks % 2)
        die("needs an even number of ranks (>= 2)");
    if (w < 1 || w > 256)
        die("window: 1 .. 256");
    if (calls < 1)
        die("allreduce calls: at least 1");
    if ((maxb && maxb < 8) || maxb > ((size_t)1 << 28))
        die("max_bytes: 0 (allreduce only) or 8 .. 256 MiB");
    peer = rank == 0 ? nranks / 2 : rank == nranks / 2 ? 0 : -1;
    MPI_Comm_split(MPI_COMM_WORLD, peer >= 0 ? 0 : MPI_UNDEFINED, rank, &pair_comm);

    uint8_t *sbuf[256], *rbuf[256];
    if (!maxb)
        w = 0;   /* no streaming: nothing to allocate */
    if (peer >= 0) {
        for (int k = 0; k < w; k++) {
            sbuf[k] = malloc(maxb);
            rbuf[k] = malloc(maxb);
            if (!sbuf[k] || !rbuf[k])
                die("out of memory (max_bytes x window x 2)");
        }
    }
    for (size_t n = 8; maxb && n <= maxb; n *= 4) {
        if (n == 32)
            n = 64;   /* 8, 64, 256 B, 1 KiB, ... */
        size_t total = (size_t)256 << 20;   /* bytes per repetition, about */
        int iters = (int)(total / (n * (size_t)w));
        if (iters < 4)
            iters = 4;
        if (iters > 2000)
            iters = 2000;
        MPI_Barrier(MPI_COMM_WORLD);
        if (peer < 0)
            continue;
        for (int k = 0; k < w; k++)
            fill(sbuf[k], n, rank, k);
        double t = timed(sbuf, rbuf, n, w, 0, iters);
        double tb = timed(sbuf, rbuf, n, w, 2, iters);
        if (rank == 0) {
            printf("bw %zu %.1f\n", n, (double)n * w / t / 1e6);
            printf("bibw %zu %.1f\n", n, 2.0 * n * w / tb / 1e6);
            if (n == 8)
                printf("rate 8 %.0f\n", w / t);
            fflush(stdout);
        }
    }
    /* 8-byte allreduce over everyone: best of 3 of <calls> calls */
    {
        double in = rank + 1, out = 0, best = 1e30;

        for (int rep = 0; rep < 3; rep++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            for (int i = 0; i < calls; i++)
                MPI_Allreduce(&in, &out, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            double t = (MPI_Wtime() - t0) / calls;
            if (t < best)
                best = t;
            if (out != (double)nranks * (nranks + 1) / 2)
                die("allreduce: wrong sum");
        }
        double worst;
        MPI_Reduce(&best, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        if (rank == 0)
            printf("allreduce 8 %.3f\n", worst * 1e6);
    }
    if (peer >= 0)
        for (int k = 0; k < w; k++) {
            free(sbuf[k]);
            free(rbuf[k]);
        }
    if (pair_comm != MPI_COMM_NULL)
        MPI_Comm_free(&pair_comm);
    if (rank == 0)
        printf("mpi_stream: OK\n");
    MPI_Finalize();
    return 0;
}
