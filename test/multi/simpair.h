/*
 * simpair.h - run two roles as two sim domains of a private sim host, the
 * way test/multi's programs test between two VMs without Xen.
 */
#ifndef XM_TEST_SIMPAIR_H
#define XM_TEST_SIMPAIR_H

#include "xm_hv.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct simpair {
    int ok;             /* both roles exited 0 */
    double b_end, a_end; /* CLOCK_MONOTONIC when each was reaped (b first) */
};

static inline double simpair_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* role(0, 0, arg) runs in domain A; role(1, A's domid, arg) in domain B,
 * started once A has its domain.  The host's files are removed after. */
static inline int simpair_run(const char *name, int (*role)(int is_b, uint32_t peer, void *arg),
                              void *arg, struct simpair *r)
{
    char host[64], cmd[128];
    int p2c[2], sa, sb;
    uint32_t ad;

    snprintf(host, sizeof(host), "%s-%d", name, (int)getpid());
    setenv("XENMPI_BACKEND", "sim", 1);
    setenv("XENMPI_SIM_HOST", host, 1);
    if (pipe(p2c))
        return -1;
    pid_t a = fork();
    if (a == 0) {
        /* learn our domid first: open/close a handle, hand the id to b */
        xm_hv_t *hv;
        if (xm_hv_open(&hv))
            _exit(1);
        uint32_t d = xm_hv_domid(hv);
        xm_hv_close(hv);
        char env[16];
        snprintf(env, sizeof(env), "%u", d);
        setenv("XENMPI_SIM_DOMID", env, 1);
        if (write(p2c[1], &d, sizeof(d)) != sizeof(d))
            _exit(1);
        _exit(role(0, 0, arg));
    }
    if (a < 0 || read(p2c[0], &ad, sizeof(ad)) != sizeof(ad))
        return -1;
    pid_t b = fork();
    if (b == 0)
        _exit(role(1, ad, arg));
    waitpid(b, &sb, 0);
    r->b_end = simpair_now();
    waitpid(a, &sa, 0);
    r->a_end = simpair_now();
    close(p2c[0]);
    close(p2c[1]);
    snprintf(cmd, sizeof(cmd), "rm -rf /dev/shm/xenmpi-sim-%s", host);
    if (system(cmd))
        return -1;
    r->ok = WIFEXITED(sa) && !WEXITSTATUS(sa) && WIFEXITED(sb) && !WEXITSTATUS(sb);
    return 0;
}

#endif
