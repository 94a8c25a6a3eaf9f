/*
 * copy_probe: what this host's CPUs charge for the two ways a message can
 * move between two processes, measured with two threads pinned to two CPUs.
 *
 *   bench/copy_probe [cpu_a cpu_b [reps]]     (default 0 1 5)
 *
 *  - line round trip: one cache line written by a, then by b, and back
 *    (what every ring record's index costs; it tells whether the two CPUs
 *    share a core's caches, a socket's, or neither);
 *  - ring: a writes 32 KiB records into a 256 KiB ring that b copies out
 *    (the ring path: two copies, every line handed from one CPU's cache to
 *    the other's);
 *  - one copy: b copies a 1 MiB buffer a wrote once and does not touch again
 *    (grant copy and CMA: the source lines, once fetched, stay valid in b's
 *    caches as long as a leaves the buffer alone, as a benchmark that sends
 *    the same buffer over and over does), and the same when a rewrites the
 *    buffer before every copy (fresh data: every line comes over);
 *  - local memcpy of 32 KiB on one CPU.
 * Prints the median of reps runs of each.  Not a test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING (256u << 10)
#define REC (32u << 10)
#define ONE (1u << 20)
#define TRIPS 100000L
#define RING_BYTES ((long)128 << 20)
#define FRESH 200L

static double fresh_s;   /* b's time copying fresh buffers */
static int cpu_b;
static _Alignas(64) _Atomic long ping;
static _Alignas(64) _Atomic long pong;
static _Alignas(64) _Atomic long prod;
static _Alignas(64) _Atomic long cons;
static char *ring, *src, *dst;
static int mode;

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void pin(int cpu)
{
    cpu_set_t s;

    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (pthread_setaffinity_np(pthread_self(), sizeof(s), &s)) {
        fprintf(stderr, "copy_probe: cannot run on cpu %d\n", cpu);
        exit(2);
    }
}

static void *peer(void *arg)
{
    (void)arg;
    pin(cpu_b);
    if (mode == 0) {
        for (long i = 1; i <= TRIPS; i++) {
            while (atomic_load_explicit(&ping, memory_order_acquire) != i)
                ;
            atomic_store_explicit(&pong, i, memory_order_release);
        }
    } else if (mode == 2) {
        double t = 0;

        for (long i = 1; i <= FRESH; i++) {
            while (atomic_load_explicit(&ping, memory_order_acquire) != i)
                ;
            double t0 = now();
            memcpy(dst, src, ONE);
            t += now() - t0;
            atomic_store_explicit(&pong, i, memory_order_release);
        }
        fresh_s = t;
    } else {
        for (long c = 0; c < RING_BYTES; c += REC) {
            while (atomic_load_explicit(&prod, memory_order_acquire) == c)
                ;
            memcpy(dst + c % (8 * RING), ring + c % RING, REC);
            atomic_store_explicit(&cons, c + REC, memory_order_release);
        }
    }
    return NULL;
}

static double run_peer(int m, void (*body)(void))
{
    pthread_t t;
    double t0;

    mode = m;
    ping = pong = prod = cons = 0;
    if (pthread_create(&t, NULL, peer, NULL)) {
        perror("copy_probe: pthread_create");
        exit(2);
    }
    t0 = now();
    body();
    t0 = now() - t0;
    pthread_join(t, NULL);
    return t0;
}

static void trips(void)
{
    for (long i = 1; i <= TRIPS; i++) {
        atomic_store_explicit(&ping, i, memory_order_release);
        while (atomic_load_explicit(&pong, memory_order_acquire) != i)
            ;
    }
}

static void ring_fill(void)
{
    for (long p = 0; p < RING_BYTES; p += REC) {
        while (p - atomic_load_explicit(&cons, memory_order_acquire) > (long)(RING - REC))
            ;
        memcpy(ring + p % RING, src + p % (8 * RING), REC);
        atomic_store_explicit(&prod, p + REC, memory_order_release);
    }
    while (atomic_load_explicit(&cons, memory_order_acquire) < RING_BYTES)
        ;
}

static void fresh(void)
{
    for (long i = 1; i <= FRESH; i++) {
        memset(src, (int)i, ONE);
        atomic_store_explicit(&ping, i, memory_order_release);
        while (atomic_load_explicit(&pong, memory_order_acquire) != i)
            ;
    }
}

static void *one_copy(void *arg)
{
    double *gbps = arg, t0;
    const int n = 200;

    pin(cpu_b);
    memcpy(dst, src, ONE);   /* first touch: the lines come over once */
    t0 = now();
    for (int i = 0; i < n; i++)
        memcpy(dst, src, ONE);
    *gbps = (double)n * ONE / (now() - t0) / 1e9;
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int cpu_a = argc > 2 ? atoi(argv[1]) : 0;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    double rt[64], rg[64], oc[64], of[64], lm[64];

    cpu_b = argc > 2 ? atoi(argv[2]) : 1;
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "usage: copy_probe [cpu_a cpu_b [reps 1..64]]\n");
        return 2;
    }
    ring = aligned_alloc(4096, RING);
    src = aligned_alloc(4096, 8 * RING);
    dst = aligned_alloc(4096, 8 * RING);
    if (!ring || !src || !dst)
        return 2;
    memset(ring, 1, RING);
    memset(dst, 1, 8 * RING);
    pin(cpu_a);
    for (int r = 0; r < reps; r++) {
        pthread_t t;
        double t0;

        rt[r] = run_peer(0, trips) / TRIPS * 1e9;
        memset(src, r + 2, 8 * RING);
        rg[r] = RING_BYTES / run_peer(1, ring_fill) / 1e9;
        memset(src, r + 3, ONE);   /* written by a, then left alone */
        if (pthread_create(&t, NULL, one_copy, &oc[r]))
            return 2;
        pthread_join(t, NULL);
        run_peer(2, fresh);
        of[r] = (double)FRESH * ONE / fresh_s / 1e9;
        t0 = now();
        for (int i = 0; i < 2000; i++)
            memcpy(dst + (i % 8) * REC, src + ((i + 3) % 8) * REC, REC);
        lm[r] = 2000.0 * REC / (now() - t0) / 1e9;
    }
    printf("cpus %d and %d, median of %d runs\n", cpu_a, cpu_b, reps);
    printf("  line round trip        %8.0f ns\n", median(rt, reps));
    printf("  ring (two copies)      %8.1f GB/s\n", median(rg, reps));
    printf("  one copy, same source  %8.1f GB/s\n", median(oc, reps));
    printf("  one copy, fresh source %8.1f GB/s\n", median(of, reps));
    printf("  local memcpy 32 KiB    %8.1f GB/s\n", median(lm, reps));
    return 0;
}
