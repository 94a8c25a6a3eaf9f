/* One-sided communication with every window element checked.
 *
 * On a window of MAXC+8 ints per rank (MPI_Win_allocate), for several counts
 * and unaligned displacements:
 *   fence:       MPI_Put to the right neighbour, MPI_Get from the right
 *                neighbour, MPI_Accumulate(MPI_SUM) from every rank to every
 *                rank, MPI_Accumulate(MPI_MAX) likewise;
 *   lock/unlock: the same with MPI_Win_lock(EXCLUSIVE) for puts and
 *                MPI_Win_lock(SHARED) for gets and accumulates, separated
 *                by barriers; local window memory is written and read only
 *                under a lock of the own rank;
 *   strided:     MPI_Put, MPI_Get and MPI_Accumulate(MPI_SUM) with fence,
 *                whose target datatype has NBLK blocks of 1-3 ints with gaps
 *                (MPI_Type_indexed): MPICH 4.0.2 sends its flattened form
 *                in the active message's header (16616 bytes), so a
 *                transport with smaller records carries one header in
 *                several.
 * Exits non-zero naming the test, rank and element on a mismatch. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXC 262144
#define WLEN (MAXC + 8)

static int rank, nranks;
static int *win_mem;
static MPI_Win win;
static long nchecked;

static void die(const char *test, long idx, long got, long exp)
{
    fprintf(stderr, "onesided: rank %d: %s: MISMATCH at element %ld: got %ld, expected %ld\n",
            rank, test, idx, got, exp);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static int val(int r, long k, int t) { return (int)((uint32_t)r * 2654435761u ^ (uint32_t)(k * 40503 + t * 977)); }
static int aval(int r, long k, int t) { return (int)((r + 1) * ((k % 997) - 400) + t); }

/* check win_mem[disp .. disp+count) against f, and the guards around it */
#define CHECK_RANGE(test, disp, count, expr) do {                              \
        for (long k_ = 0; k_ < (count); k_++) {                                \
            long k = k_; long e_ = (expr);                                     \
            if (win_mem[(disp) + k_] != (int)e_)                               \
                die(test, k_, win_mem[(disp) + k_], (int)e_);                  \
        }                                                                      \
        if ((disp) > 0 && win_mem[(disp) - 1] != GUARD)                        \
            die(test " (guard before)", -1, win_mem[(disp) - 1], GUARD);       \
        if ((disp) + (count) < WLEN && win_mem[(disp) + (count)] != GUARD)     \
            die(test " (guard after)", (count), win_mem[(disp) + (count)], GUARD); \
        nchecked += (count);                                                   \
    } while (0)
#define GUARD ((int)0x5eadbeef)

static void set_guard(void) { for (long i = 0; i < WLEN; i++) win_mem[i] = GUARD; }
static void lock_self(void) { MPI_Win_lock(MPI_LOCK_EXCLUSIVE, rank, 0, win); }
static void unlock_self(void) { MPI_Win_unlock(rank, win); }

static void fence_tests(long count, int disp, int t, int *buf)
{
    int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;

    /* put */
    MPI_Win_fence(0, win);
    set_guard();
    MPI_Win_fence(0, win);
    for (long k = 0; k < count; k++) buf[k] = val(rank, k, t);
    MPI_Put(buf, (int)count, MPI_INT, right, disp, (int)count, MPI_INT, win);
    MPI_Win_fence(0, win);
    CHECK_RANGE("fence MPI_Put", disp, count, val(left, k, t));

    /* get: each rank's window holds val(rank+100) */
    set_guard();
    for (long k = 0; k < count; k++) win_mem[disp + k] = val(rank + 100, k, t);
    MPI_Win_fence(0, win);
    memset(buf, 0xa5, count * sizeof(int));
    MPI_Get(buf, (int)count, MPI_INT, right, disp, (int)count, MPI_INT, win);
    MPI_Win_fence(0, win);
    for (long k = 0; k < count; k++)
        if (buf[k] != val(right + 100, k, t)) die("fence MPI_Get", k, buf[k], val(right + 100, k, t));
    nchecked += count;

    /* accumulate SUM from every rank, then MAX from every rank */
    set_guard();
    for (long k = 0; k < count; k++) win_mem[disp + k] = 0;
    MPI_Win_fence(0, win);
    for (long k = 0; k < count; k++) buf[k] = aval(rank, k, t);
    for (int q = 0; q < nranks; q++)
        MPI_Accumulate(buf, (int)count, MPI_INT, (rank + q) % nranks, disp, (int)count, MPI_INT, MPI_SUM, win);
    MPI_Win_fence(0, win);
    CHECK_RANGE("fence MPI_Accumulate SUM", disp, count,
                ({ long s = 0; for (int q = 0; q < nranks; q++) s += aval(q, k, t); s; }));
    MPI_Win_fence(0, win);
    for (int q = 0; q < nranks; q++)
        MPI_Accumulate(buf, (int)count, MPI_INT, (rank + q) % nranks, disp, (int)count, MPI_INT, MPI_MAX, win);
    MPI_Win_fence(0, win);
    CHECK_RANGE("fence MPI_Accumulate MAX", disp, count,
                ({ long s = 0, m; for (int q = 0; q < nranks; q++) s += aval(q, k, t);
                   m = s; for (int q = 0; q < nranks; q++) if (aval(q, k, t) > m) m = aval(q, k, t); m; }));
    MPI_Win_fence(0, win);
}

static void lock_tests(long count, int disp, int t, int *buf)
{
    int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;

    /* put under an exclusive lock of the target */
    lock_self(); set_guard(); unlock_self();
    MPI_Barrier(MPI_COMM_WORLD);
    for (long k = 0; k < count; k++) buf[k] = val(rank, k, t + 50);
    MPI_Win_lock(MPI_LOCK_EXCLUSIVE, right, 0, win);
    MPI_Put(buf, (int)count, MPI_INT, right, disp, (int)count, MPI_INT, win);
    MPI_Win_unlock(right, win);
    MPI_Barrier(MPI_COMM_WORLD);
    lock_self();
    CHECK_RANGE("lock/unlock MPI_Put", disp, count, val(left, k, t + 50));
    unlock_self();

    /* get under a shared lock */
    MPI_Barrier(MPI_COMM_WORLD);
    lock_self();
    set_guard();
    for (long k = 0; k < count; k++) win_mem[disp + k] = val(rank + 200, k, t);
    unlock_self();
    MPI_Barrier(MPI_COMM_WORLD);
    memset(buf, 0xa5, count * sizeof(int));
    MPI_Win_lock(MPI_LOCK_SHARED, right, 0, win);
    MPI_Get(buf, (int)count, MPI_INT, right, disp, (int)count, MPI_INT, win);
    MPI_Win_unlock(right, win);
    for (long k = 0; k < count; k++)
        if (buf[k] != val(right + 200, k, t)) die("lock/unlock MPI_Get", k, buf[k], val(right + 200, k, t));
    nchecked += count;

    /* accumulate SUM from every rank under shared locks (atomic per element) */
    MPI_Barrier(MPI_COMM_WORLD);
    lock_self();
    set_guard();
    for (long k = 0; k < count; k++) win_mem[disp + k] = 1000;
    unlock_self();
    MPI_Barrier(MPI_COMM_WORLD);
    for (long k = 0; k < count; k++) buf[k] = aval(rank, k, t + 7);
    for (int q = 0; q < nranks; q++) {
        int tgt = (rank + q) % nranks;
        MPI_Win_lock(MPI_LOCK_SHARED, tgt, 0, win);
        MPI_Accumulate(buf, (int)count, MPI_INT, tgt, disp, (int)count, MPI_INT, MPI_SUM, win);
        MPI_Win_unlock(tgt, win);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    lock_self();
    CHECK_RANGE("lock/unlock MPI_Accumulate SUM", disp, count,
                ({ long s = 1000; for (int q = 0; q < nranks; q++) s += aval(q, k, t + 7); s; }));
    unlock_self();
    MPI_Barrier(MPI_COMM_WORLD);
}

#define NBLK 1024

/* the strided target: block i holds 1 + i % 3 ints at 5 * i + i % 2 */
static void strided_tests(int t, int *buf)
{
    int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
    static int len[NBLK], at[NBLK];
    long total = 0;
    MPI_Datatype dt;

    for (int i = 0; i < NBLK; i++) {
        len[i] = 1 + i % 3;
        at[i] = 5 * i + i % 2;
        total += len[i];
    }
    MPI_Type_indexed(NBLK, len, at, MPI_INT, &dt);
    MPI_Type_commit(&dt);

/* each block's elements against expr (k counting over all blocks), and
 * every element between and after the blocks still GUARD */
#define CHECK_STRIDED(test, expr) do {                                                 long k = 0, w = 0;                                                             for (int i_ = 0; i_ < NBLK; i_++) {                                                for (; w < at[i_]; w++)                                                            if (win_mem[w] != GUARD) die(test " (gap)", w, win_mem[w], GUARD);             for (int j_ = 0; j_ < len[i_]; j_++, k++, w++) {                                   long e_ = (expr);                                                              if (win_mem[w] != (int)e_) die(test, k, win_mem[w], (int)e_);              }                                                                          }                                                                              for (; w < 5 * NBLK + 8; w++)                                                      if (win_mem[w] != GUARD) die(test " (after)", w, win_mem[w], GUARD);         nchecked += k;                                                             } while (0)

    /* put */
    MPI_Win_fence(0, win);
    set_guard();
    MPI_Win_fence(0, win);
    for (long k = 0; k < total; k++) buf[k] = val(rank, k, t);
    MPI_Put(buf, (int)total, MPI_INT, right, 0, 1, dt, win);
    MPI_Win_fence(0, win);
    CHECK_STRIDED("strided MPI_Put", val(left, k, t));

    /* get: the blocks of each rank's window hold val(rank+100) */
    {
        long k = 0;
        for (int i = 0; i < NBLK; i++)
            for (int j = 0; j < len[i]; j++, k++) win_mem[at[i] + j] = val(rank + 100, k, t);
    }
    MPI_Win_fence(0, win);
    memset(buf, 0xa5, total * sizeof(int));
    MPI_Get(buf, (int)total, MPI_INT, right, 0, 1, dt, win);
    MPI_Win_fence(0, win);
    for (long k = 0; k < total; k++)
        if (buf[k] != val(right + 100, k, t)) die("strided MPI_Get", k, buf[k], val(right + 100, k, t));
    nchecked += total;

    /* accumulate SUM from every rank */
    set_guard();
    {
        long k = 0;
        for (int i = 0; i < NBLK; i++)
            for (int j = 0; j < len[i]; j++, k++) win_mem[at[i] + j] = 0;
    }
    MPI_Win_fence(0, win);
    for (long k = 0; k < total; k++) buf[k] = aval(rank, k, t);
    for (int q = 0; q < nranks; q++)
        MPI_Accumulate(buf, (int)total, MPI_INT, (rank + q) % nranks, 0, 1, dt, MPI_SUM, win);
    MPI_Win_fence(0, win);
    CHECK_STRIDED("strided MPI_Accumulate SUM",
                  ({ long s = 0; for (int q = 0; q < nranks; q++) s += aval(q, k, t); s; }));
    MPI_Win_fence(0, win);
    MPI_Type_free(&dt);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    MPI_Win_allocate((MPI_Aint)WLEN * sizeof(int), sizeof(int), MPI_INFO_NULL, MPI_COMM_WORLD,
                     &win_mem, &win);
    int *buf = malloc(WLEN * sizeof(int));
    if (!buf) { fprintf(stderr, "onesided: out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 1); }

    static const long counts[] = {1, 13, 1024, 65537, MAXC};
    int t = 0;
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
        for (int d = 0; d < 2; d++, t++) {
            int disp = d ? (int)(WLEN - counts[i]) - (int)(i % 3) : (int)(i % 5);
            fence_tests(counts[i], disp, t, buf);
        }
    if (rank == 0) printf("onesided: fence: MPI_Put, MPI_Get, MPI_Accumulate SUM/MAX ok\n");
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
        for (int d = 0; d < 2; d++, t++) {
            int disp = d ? (int)(WLEN - counts[i]) - (int)(i % 3) : (int)(i % 5);
            lock_tests(counts[i], disp, t, buf);
        }
    if (rank == 0) printf("onesided: lock/unlock: MPI_Put, MPI_Get, MPI_Accumulate SUM ok\n");
    strided_tests(t++, buf);
    if (rank == 0) printf("onesided: strided (%d-block target datatype): MPI_Put, MPI_Get, "
                          "MPI_Accumulate SUM ok\n", NBLK);

    long total = 0;
    MPI_Reduce(&nchecked, &total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("onesided: OK (%d ranks, %ld window elements checked)\n", nranks, total);
        fflush(stdout);
    }
    MPI_Win_free(&win);
    free(buf);
    MPI_Finalize();
    return 0;
}
