/*
 * xdom.h - what the programs the real-Xen harness runs in two domUs share:
 * one PASS/FAIL line per check, and stepping through nodes below a "home"
 * directory in the store (A's, which A writes and B reads).
 */
#ifndef XDOM_H
#define XDOM_H

#include "xm_hv.h"

#define WAIT_MS 120000 /* generous: everything runs under QEMU TCG */

extern struct xdom {
    const char *prog;   /* prefix of every line */
    char role;          /* 'a', 'b', or a child's letter */
    int passes, fails;
    xm_hv_t *hv;        /* for the store helpers */
    char home[128];     /* A's test directory */
} xdom;

void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long now_ms(void);

/* home/leaf into buf (XM_STORE_MAX_PATH bytes) */
void xdom_path(char *buf, const char *leaf);
/* home/leaf = the formatted value; 0 or the store's negative errno */
int xdom_put(const char *leaf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* home/leaf, malloc'ed; NULL if absent */
char *xdom_get(const char *leaf);
/* Poll home/leaf until it exists and starts with prefix (NULL: any value),
 * for WAIT_MS; NULL on timeout, or as soon as home/abort_leaf reads "abort"
 * (abort_leaf NULL: never). */
char *xdom_wait(const char *leaf, const char *prefix, const char *abort_leaf);

/* The last line ("<prog>[<role>] RESULT: PASS|FAIL (...)"); the exit status. */
int xdom_result(void);

#endif
