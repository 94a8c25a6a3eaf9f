/* Collectives with every result element checked against a computed value.
 *
 *   collectives [rounds]
 *
 * MPI_Alltoall (ints, several block sizes), MPI_Allreduce with MPI_SUM and
 * MPI_MAX on ints and doubles (small and large counts; the double inputs are
 * small multiples of 1/4 so every summation order gives the exact value),
 * MPI_Bcast from every root (bytes, several sizes).  Each test runs <rounds>
 * rounds (default 3) with different inputs.  Exits non-zero naming the test, rank and
 * element on a mismatch. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, nranks;
static long nchecked;

static void fail(const char *test, long idx, const char *got, const char *exp)
{
    fprintf(stderr, "collectives: rank %d: %s: MISMATCH at element %ld: got %s, expected %s\n",
            rank, test, idx, got, exp);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "collectives: out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 1); }
    return p;
}

/* value rank r sends to rank d at element k of round t */
static int a2a_val(int r, int d, int k, int t)
{
    return (int)((uint32_t)r * 1000003u + (uint32_t)d * 10007u + (uint32_t)k * 31u + (uint32_t)t * 7u);
}

static void test_alltoall(int count, int t)
{
    char name[64];
    snprintf(name, sizeof name, "MPI_Alltoall count=%d round=%d", count, t);
    int *s = xmalloc((size_t)count * nranks * sizeof(int));
    int *r = xmalloc((size_t)count * nranks * sizeof(int));
    for (int d = 0; d < nranks; d++)
        for (int k = 0; k < count; k++)
            s[(size_t)d * count + k] = a2a_val(rank, d, k, t);
    memset(r, 0xa5, (size_t)count * nranks * sizeof(int));
    MPI_Alltoall(s, count, MPI_INT, r, count, MPI_INT, MPI_COMM_WORLD);
    for (int src = 0; src < nranks; src++)
        for (int k = 0; k < count; k++) {
            int got = r[(size_t)src * count + k], exp = a2a_val(src, rank, k, t);
            if (got != exp) {
                char g[32], e[80];
                snprintf(g, sizeof g, "%d", got);
                snprintf(e, sizeof e, "%d (from rank %d, index %d)", exp, src, k);
                fail(name, (long)src * count + k, g, e);
            }
        }
    nchecked += (long)count * nranks;
    free(s);
    free(r);
}

static int ival(int r, long k, int t) { return (int)((r + 1) * ((k % 1013) - 500) + t * 3 + (int)(k & 7)); }
static double dval(int r, long k, int t) { return 0.25 * (double)(((r + 3) * (k % 4099) + t) % 8191) - 1000.0; }

static void test_allreduce(long count, int t)
{
    char name[96];
    int *ia = xmalloc(count * sizeof(int)), *ir = xmalloc(count * sizeof(int));
    double *da = xmalloc(count * sizeof(double)), *dr = xmalloc(count * sizeof(double));
    for (long k = 0; k < count; k++) {
        ia[k] = ival(rank, k, t);
        da[k] = dval(rank, k, t);
    }
    for (int op = 0; op < 2; op++) {
        MPI_Op mop = op ? MPI_MAX : MPI_SUM;
        const char *oname = op ? "MAX" : "SUM";
        memset(ir, 0xa5, count * sizeof(int));
        memset(dr, 0xa5, count * sizeof(double));
        MPI_Allreduce(ia, ir, (int)count, MPI_INT, mop, MPI_COMM_WORLD);
        MPI_Allreduce(da, dr, (int)count, MPI_DOUBLE, mop, MPI_COMM_WORLD);
        for (long k = 0; k < count; k++) {
            long ie = op ? (long)ival(0, k, t) : 0;
            double de = op ? dval(0, k, t) : 0;
            for (int q = 0; q < nranks; q++) {
                if (op) {
                    if (ival(q, k, t) > ie) ie = ival(q, k, t);
                    if (dval(q, k, t) > de) de = dval(q, k, t);
                } else {
                    ie += ival(q, k, t);
                    de += dval(q, k, t);
                }
            }
            char g[48], e[48];
            if (ir[k] != (int)ie) {
                snprintf(name, sizeof name, "MPI_Allreduce MPI_INT MPI_%s count=%ld round=%d", oname, count, t);
                snprintf(g, sizeof g, "%d", ir[k]);
                snprintf(e, sizeof e, "%ld", ie);
                fail(name, k, g, e);
            }
            if (dr[k] != de) {
                snprintf(name, sizeof name, "MPI_Allreduce MPI_DOUBLE MPI_%s count=%ld round=%d", oname, count, t);
                snprintf(g, sizeof g, "%.17g", dr[k]);
                snprintf(e, sizeof e, "%.17g", de);
                fail(name, k, g, e);
            }
        }
        nchecked += 2 * count;
    }
    free(ia); free(ir); free(da); free(dr);
}

static uint8_t bval(int root, size_t i, int t) { return (uint8_t)((i * 131u) ^ (i >> 9) ^ (uint32_t)(root * 29 + t * 17)); }

static void test_bcast(size_t n, int root, int t)
{
    uint8_t *b = xmalloc(n);
    if (rank == root)
        for (size_t i = 0; i < n; i++) b[i] = bval(root, i, t);
    else
        memset(b, 0xa5, n);
    MPI_Bcast(b, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
    for (size_t i = 0; i < n; i++)
        if (b[i] != bval(root, i, t)) {
            char name[96], g[16], e[16];
            snprintf(name, sizeof name, "MPI_Bcast %zu bytes root=%d round=%d", n, root, t);
            snprintf(g, sizeof g, "0x%02x", b[i]);
            snprintf(e, sizeof e, "0x%02x", bval(root, i, t));
            fail(name, (long)i, g, e);
        }
    nchecked += (long)n;
    free(b);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    if (rounds < 1)
        rounds = 1;

    static const int a2a_counts[] = {1, 7, 256, 4096, 65536, 262144};
    static const long red_counts[] = {1, 3, 1000, 65537, 524288};
    static const size_t bc_sizes[] = {1, 100, 8192, 65537, 1048576, 4194305};

    for (int t = 0; t < rounds; t++) {
        for (size_t i = 0; i < sizeof a2a_counts / sizeof *a2a_counts; i++)
            test_alltoall(a2a_counts[i], t);
        if (rank == 0 && t == 0) printf("collectives: MPI_Alltoall ok\n");
        for (size_t i = 0; i < sizeof red_counts / sizeof *red_counts; i++)
            test_allreduce(red_counts[i], t);
        if (rank == 0 && t == 0) printf("collectives: MPI_Allreduce SUM/MAX int/double ok\n");
        for (size_t i = 0; i < sizeof bc_sizes / sizeof *bc_sizes; i++)
            for (int root = 0; root < nranks; root++)
                test_bcast(bc_sizes[i], root, t);
        if (rank == 0 && t == 0) printf("collectives: MPI_Bcast ok\n");
    }
    long total = 0;
    MPI_Reduce(&nchecked, &total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("collectives: OK (%d ranks, %d rounds, %ld result elements checked)\n", nranks, rounds,
               total);
        fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}
