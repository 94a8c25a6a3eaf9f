/* xdom.c - see xdom.h. */
#include "xdom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct xdom xdom = { .prog = "xdom", .role = '?' };

void check(int ok, const char *fmt, ...)
{
    char msg[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("%s[%c] %s: %s\n", xdom.prog, xdom.role, ok ? "PASS" : "FAIL", msg);
    fflush(stdout);
    if (ok)
        xdom.passes++;
    else
        xdom.fails++;
}

void note(const char *fmt, ...)
{
    va_list ap;

    printf("%s[%c] ", xdom.prog, xdom.role);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void xdom_path(char *buf, const char *leaf)
{
    snprintf(buf, XM_STORE_MAX_PATH, "%s/%s", xdom.home, leaf);
}

int xdom_put(const char *leaf, const char *fmt, ...)
{
    char p[XM_STORE_MAX_PATH], v[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    xdom_path(p, leaf);
    return xm_store_write(xdom.hv, p, v, strlen(v));
}

char *xdom_get(const char *leaf)
{
    char p[XM_STORE_MAX_PATH], *v = NULL;
    size_t l;

    xdom_path(p, leaf);
    if (xm_store_read(xdom.hv, p, &v, &l))
        return NULL;
    return v;
}

char *xdom_wait(const char *leaf, const char *prefix, const char *abort_leaf)
{
    long end = now_ms() + WAIT_MS;
    char *v;

    do {
        v = xdom_get(leaf);
        if (v && (!prefix || !strncmp(v, prefix, strlen(prefix))))
            return v;
        free(v);
        v = NULL;
        if (abort_leaf && (v = xdom_get(abort_leaf)) && !strcmp(v, "abort")) {
            free(v);
            note("the other side aborted");
            return NULL;
        }
        free(v);
        usleep(50000);
    } while (now_ms() < end);
    note("timeout waiting for %s/%s = %s...", xdom.home, leaf, prefix ? prefix : "(any)");
    return NULL;
}

int xdom_result(void)
{
    printf("%s[%c] RESULT: %s (%d passed, %d failed)\n", xdom.prog, xdom.role,
           xdom.fails ? "FAIL" : "PASS", xdom.passes, xdom.fails);
    return xdom.fails ? 1 : 0;
}
