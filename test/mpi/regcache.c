/*
 * regcache.c - large sends from buffers that are reused, unmapped and
 * mapped again, partly discarded, freed and allocated anew: what a
 * registration cache must get right.  Rank 0 sends, rank 1 receives and
 * checks every byte.  Zero-copy transports keep the registration (and the
 * peer's grants) of a buffer sent before; after the memory under it
 * changed, a stale registration would deliver the old pages.
 *   mpiexec -n 2 ./regcache [bytes]   (default 4 MiB: above the zero-copy
 *                                      threshold of the transports here)
 * Prints "regcache: OK ..." or "regcache: FAIL ..."; exit status 0 only on
 * OK.
 */
#include <mpi.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static unsigned char pat(unsigned tag, size_t i)
{
    return (unsigned char)(i * 7u + tag * 13u + (i >> 12) + 1u);
}

static void fill(unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pat(tag, i);
}

/* first differing byte, or n */
static size_t check(const unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pat(tag, i))
            return i;
    return n;
}

static void *map(void *at, size_t n)
{
    void *p = mmap(at, n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED_NOREPLACE : 0), -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : (size_t)4 << 20;
    int rank, size, bad = 0, msgs = 0;
    unsigned tag = 0;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2 || n < 65536 || n % 4096) {
        if (rank == 0)
            fprintf(stderr, "regcache: FAIL: needs 2 ranks and a size of at least 64 KiB, "
                    "a multiple of 4096\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }

    if (rank == 1) {
        unsigned char *r = malloc(n);
        const char *what[] = { "reused", "reused", "reused", "reused", "unmapped and mapped again",
                               "partly discarded (MADV_DONTNEED) and rewritten",
                               "freed and allocated again", "freed and allocated again" };
        unsigned nwhat = sizeof(what) / sizeof(what[0]);

        if (!r)
            MPI_Abort(MPI_COMM_WORLD, 3);
        for (unsigned k = 0; k < nwhat; k++) {
            size_t at;

            memset(r, 0, n);
            MPI_Recv(r, (int)n, MPI_BYTE, 0, (int)k, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            at = check(r, n, k + 1);
            if (at != n) {
                fprintf(stderr, "regcache: FAIL: message %u (buffer %s): byte %zu is %u, "
                        "want %u\n", k, what[k], at, r[at], pat(k + 1, at));
                bad++;
            }
            msgs++;
        }
        free(r);
    } else {
        unsigned char *p = map(NULL, n), *q, *m;

        if (!p)
            MPI_Abort(MPI_COMM_WORLD, 3);
        /* the same buffer, new contents each time: one registration */
        for (int i = 0; i < 4; i++) {
            fill(p, n, ++tag);
            MPI_Send(p, (int)n, MPI_BYTE, 1, (int)tag - 1, MPI_COMM_WORLD);
        }
        /* other pages at the same addresses */
        munmap(p, n);
        q = map(p, n);
        if (q != p) {
            fprintf(stderr, "regcache: FAIL: cannot map %zu bytes at %p again\n", n, (void *)p);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        fill(q, n, ++tag);
        MPI_Send(q, (int)n, MPI_BYTE, 1, (int)tag - 1, MPI_COMM_WORLD);
        /* half of it discarded: fresh zero pages there, then written */
        madvise(q + n / 2, n / 2, MADV_DONTNEED);
        fill(q, n, ++tag);
        MPI_Send(q, (int)n, MPI_BYTE, 1, (int)tag - 1, MPI_COMM_WORLD);
        munmap(q, n);
        /* what applications do: malloc per message */
        for (int i = 0; i < 2; i++) {
            m = malloc(n);
            if (!m)
                MPI_Abort(MPI_COMM_WORLD, 3);
            fill(m, n, ++tag);
            MPI_Send(m, (int)n, MPI_BYTE, 1, (int)tag - 1, MPI_COMM_WORLD);
            free(m);
        }
        msgs = (int)tag;
    }
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("regcache: %s (%d messages of %zu bytes: a reused buffer, one mapped "
               "again, one partly discarded, fresh mallocs)\n", bad ? "FAIL" : "OK",
               msgs, n);
    MPI_Finalize();
    return bad ? 1 : 0;
}
