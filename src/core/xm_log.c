#include "xm_log.h"
#include "xm_settings.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int xm_log_level = XM_LOG_WARN;

static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };

__attribute__((constructor)) void xm_log_init(void)
{
    const char *s = xm_cfg_str(XM_CFG_LOG_LEVEL);
    for (int i = 0; i <= XM_LOG_TRACE; i++)
        if (!strcasecmp(s, level_names[i]))
            xm_log_level = i;
}

void xm_log(int level, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    const char *base = strrchr(file, '/');

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "[xenmpi %d] %-5s %s:%d %s\n", (int)getpid(),
            level_names[level], base ? base + 1 : file, line, msg);
}

/* Several threads may share a call site: a count that races by one now and
 * then is harmless, a torn window is not (atomics, relaxed). */
int xm_log_limited(struct xm_log_limit *l, unsigned *dropped)
{
    struct timespec ts;
    unsigned long now, was;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    now = (unsigned long)ts.tv_sec;
    *dropped = 0;
    was = __atomic_load_n(&l->sec, __ATOMIC_RELAXED);
    if (now != was && __atomic_compare_exchange_n(&l->sec, &was, now, 0, __ATOMIC_RELAXED,
                                                  __ATOMIC_RELAXED)) {
        __atomic_store_n(&l->n, 0, __ATOMIC_RELAXED);
        *dropped = __atomic_exchange_n(&l->dropped, 0, __ATOMIC_RELAXED);
    }
    if (__atomic_fetch_add(&l->n, 1, __ATOMIC_RELAXED) < XM_LOG_BURST)
        return 1;
    __atomic_fetch_add(&l->dropped, 1, __ATOMIC_RELAXED);
    return 0;
}
