/* Ping-pong between MPI ranks with every received byte checked.
 *
 *   pingpong [max_iters [max_bytes]]
 *
 * Phase "check": for every size (0 B .. max_bytes, default 4 MiB: powers of
 * two and odd sizes; beyond 4 MiB also 16 MiB+123 and max_bytes-1)
 * and both directions, messages carry a pattern that depends on size,
 * iteration, sender and direction; the receive buffer is poisoned before
 * each receive and every byte is compared.  Pairs: first i <-> i^1, then
 * i <-> i+n/2 (with 2 ranks both are 0 <-> 1; with 4 ranks in 2 VMs laid out
 * 0,1 | 2,3 the first pairs are inside a VM and the second across VMs).
 * Phase "timing": rank 0 and rank n/2 ping-pong each size 256 MiB / size
 * times, at least 10 and at most max_iters (default 1000) (unchecked inside
 * the loop, poisoned before and checked after the loop; best of 3 repetitions)
 * and rank 0 prints a table: half round-trip latency and size / half round trip as bandwidth,
 * and, when the process has the xenmpi core loaded (libuct_xen or the netmod),
 * the calls into Xen (hypercalls, device ioctls, store requests) per message
 * in the timed loops, the larger of the two timing ranks' counts ("-" without
 * the core).
 * The buffers start 16 bytes past a page boundary, where glibc's malloc puts
 * large blocks, whatever allocator the program runs with (ASan's puts them
 * elsewhere).
 * Exits non-zero with a message naming rank, size and offset on a mismatch. */
#include <dlfcn.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXSZ_DEFAULT ((size_t)4 << 20)
#define POISON 0xa5

static size_t MAXSZ = MAXSZ_DEFAULT;   /* largest message: max_bytes */

static int rank, nranks;

static void die(const char *msg)
{
    fprintf(stderr, "pingpong: rank %d: %s\n", rank, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static inline uint8_t pat(size_t i, uint32_t seed)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 13;
    return (uint8_t)(x + (i >> 8) + (seed >> 5));
}

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(i, seed);
}

static void check(const uint8_t *b, size_t n, uint32_t seed, int from, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(i, seed)) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "%s: MISMATCH in %zu-byte message from rank %d at offset %zu: got 0x%02x, expected 0x%02x",
                     what, n, from, i, b[i], pat(i, seed));
            die(msg);
        }
}

static size_t sizes[128];
static int nsizes;

static void make_sizes(void)
{
    const size_t odd[] = {1, 3, 7, 13, 61, 127, 1000, 1023, 4095, 4097,
                          8191, 65537, 99999, 1048575, 1048577, 3000001, MAXSZ_DEFAULT - 1,
                          ((size_t)16 << 20) + 123, MAXSZ - 1};
    sizes[nsizes++] = 0;
    for (size_t s = 1; s <= MAXSZ; s <<= 1)
        sizes[nsizes++] = s;
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        if (odd[i] <= MAXSZ)
            sizes[nsizes++] = odd[i];
    /* sort */
    for (int i = 1; i < nsizes; i++)
        for (int j = i; j > 0 && sizes[j - 1] > sizes[j]; j--) {
            size_t t = sizes[j]; sizes[j] = sizes[j - 1]; sizes[j - 1] = t;
        }
    /* dedupe */
    int k = 0;
    for (int i = 0; i < nsizes; i++)
        if (k == 0 || sizes[k - 1] != sizes[i])
            sizes[k++] = sizes[i];
    nsizes = k;
}

static uint32_t seed_of(size_t size, int iter, int sender, int dir)
{
    return (uint32_t)(size * 31u + (uint32_t)iter * 1000003u + (uint32_t)sender * 7919u + (uint32_t)dir * 104729u + 1);
}

/* check phase for one pair: both directions, every size, a few iterations */
static void check_pair(int peer, uint8_t *sbuf, uint8_t *rbuf, const char *phase)
{
    int first = rank < peer;   /* the lower rank starts the ping */
    for (int si = 0; si < nsizes; si++) {
        size_t n = sizes[si];
        int iters = n <= 65536 ? 4 : 2;
        for (int it = 0; it < iters; it++)
            for (int dir = 0; dir < 2; dir++) {
                /* dir 0: lower rank pings; dir 1: higher rank pings */
                int ping = (dir == 0) == first;
                MPI_Status st;
                int cnt;
                if (ping) {
                    fill(sbuf, n, seed_of(n, it, rank, dir));
                    MPI_Send(sbuf, (int)n, MPI_BYTE, peer, si, MPI_COMM_WORLD);
                    memset(rbuf, POISON, n + 1);
                    MPI_Recv(rbuf, (int)n + 1, MPI_BYTE, peer, si, MPI_COMM_WORLD, &st);
                    MPI_Get_count(&st, MPI_BYTE, &cnt);
                    if ((size_t)cnt != n) die("pong has the wrong length");
                    check(rbuf, n, seed_of(n, it, peer, dir) ^ 0x5a5a5a5au, peer, phase);
                    if (rbuf[n] != POISON) die("pong wrote past its length");
                } else {
                    memset(rbuf, POISON, n + 1);
                    MPI_Recv(rbuf, (int)n + 1, MPI_BYTE, peer, si, MPI_COMM_WORLD, &st);
                    MPI_Get_count(&st, MPI_BYTE, &cnt);
                    if ((size_t)cnt != n) die("ping has the wrong length");
                    check(rbuf, n, seed_of(n, it, peer, dir), peer, phase);
                    if (rbuf[n] != POISON) die("ping wrote past its length");
                    fill(sbuf, n, seed_of(n, it, rank, dir) ^ 0x5a5a5a5au);
                    MPI_Send(sbuf, (int)n, MPI_BYTE, peer, si, MPI_COMM_WORLD);
                }
            }
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (nranks < 2 || nranks % 2)
        die("needs an even number of ranks (>= 2)");
    int max_iters = argc > 1 ? atoi(argv[1]) : 1000;
    if (max_iters < 1) max_iters = 1;
    if (argc > 2) {
        MAXSZ = (size_t)strtoull(argv[2], NULL, 0);
        if (MAXSZ < 1 || MAXSZ > ((size_t)1 << 30))
            die("max_bytes: 1 .. 1 GiB");
    }
    make_sizes();

    void *sblk = NULL, *rblk = NULL;
    if (posix_memalign(&sblk, 4096, MAXSZ + 1 + 16) || posix_memalign(&rblk, 4096, MAXSZ + 1 + 16))
        die("out of memory");
    uint8_t *sbuf = (uint8_t *)sblk + 16, *rbuf = (uint8_t *)rblk + 16;

    check_pair(rank ^ 1, sbuf, rbuf, "check (pairs i<->i^1)");
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0 && nranks > 2) {
        printf("pingpong: pairs i<->i^1 checked\n");
        fflush(stdout);   /* progress, for a launcher's log while the job runs */
    }
    if (nranks > 2)
        check_pair((rank + nranks / 2) % nranks, sbuf, rbuf, "check (pairs i<->i+n/2)");
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        printf("pingpong: content check passed: %d sizes 0..%zu B, both directions, %d ranks\n",
               nsizes, MAXSZ, nranks);
        fflush(stdout);   /* xen/mpi-destroy waits for this line */
    }

    /* timing between rank 0 and rank n/2 */
    int peer = rank == 0 ? nranks / 2 : rank == nranks / 2 ? 0 : -1;
    /* the xen backend's call counter, when the core is in this process:
     * global when preloaded or linked, local to UCX's module when UCX
     * opened the transport itself (the packages) */
    uint64_t (*xen_calls)(void) = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, "xm_hv_xen_total_calls");
    void *core = xen_calls ? NULL : dlopen("libxenmpi.so.0", RTLD_LAZY | RTLD_NOLOAD);
    if (core)
        xen_calls = (uint64_t (*)(void))dlsym(core, "xm_hv_xen_total_calls");
    if (rank == 0)
        printf("\n%10s %8s %12s %12s %14s\n", "bytes", "iters", "latency_us", "MB/s",
               "xen_calls/msg");
    for (int si = 0; si < nsizes; si++) {
        size_t n = sizes[si];
        size_t lim = (size_t)256 << 20;
        int iters = n ? (int)(lim / n) : max_iters;
        if (iters < 10) iters = 10;   /* large sizes: enough to time */
        if (iters > max_iters) iters = max_iters;   /* but never past the cap asked for */
        MPI_Barrier(MPI_COMM_WORLD);
        if (peer < 0)
            continue;
        uint32_t s0 = seed_of(n, 999, 0, 0), s1 = seed_of(n, 999, 1, 1);
        fill(sbuf, n, rank == 0 ? s0 : s1);
        memset(rbuf, POISON, n + 1);
        /* one warm-up round, then the timed loop; best of 3 repetitions */
        double t = 1e30;
        uint64_t c0 = xen_calls ? xen_calls() : 0;
        for (int rep = 0; rep < 3; rep++) {
        double t0 = 0;
        for (int it = -1; it < iters; it++) {
            if (it == 0) t0 = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(sbuf, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
                MPI_Recv(rbuf, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(rbuf, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(sbuf, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
            }
        }
        if (MPI_Wtime() - t0 < t) t = MPI_Wtime() - t0;
        }
        /* calls in the timed loops of this rank; the peer sends its own */
        long long calls = xen_calls ? (long long)(xen_calls() - c0) : -1, pcalls = -1;
        if (rank == 0)
            MPI_Recv(&pcalls, 1, MPI_LONG_LONG, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        else
            MPI_Send(&calls, 1, MPI_LONG_LONG, peer, 2, MPI_COMM_WORLD);
        check(rbuf, n, rank == 0 ? s1 : s0, peer, "timing (last message)");
        if (rbuf[n] != POISON) die("timed message wrote past its length");
        if (rank == 0) {
            double half = t / iters / 2;
            long long most = calls > pcalls ? calls : pcalls;
            char cs[32] = "-";
            if (most >= 0)   /* messages each rank sent or received: 2 per iteration */
                snprintf(cs, sizeof cs, "%.2f", (double)most / (3.0 * (iters + 1) * 2));
            printf("%10zu %8d %12.2f %12.1f %14s\n", n, iters, half * 1e6,
                   n ? n / half / 1e6 : 0.0, cs);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        printf("pingpong: OK\n");
        fflush(stdout);
    }
    free(sblk);
    free(rblk);
    MPI_Finalize();
    return 0;
}
