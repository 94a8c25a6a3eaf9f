/*
 * hv_xdom.c - cross-domain test of the hv layer on the xen backend.
 *
 *   hv_xdom a <domid of B>     (in domU A: the owner side)
 *   hv_xdom b <domid of A>     (in domU B: the peer side)
 *
 * A shares 2 rw pages and 1 ro page to B, offers an unbound event channel
 * and publishes refs and port below its home (readable by B only).  B maps
 * and verifies them, writes into the rw pages, checks that the ro page cannot
 * be mapped writable, grant-copies both ways, binds the port and notifies.
 * A checks that it saw the event and B's writes.  Then a child of A shares a
 * page with an unmap notify (clear byte 0 + event) and is killed with SIGKILL:
 * B must see the byte cleared and an event.  B also writes a node in A's home
 * that A opened to it, and both compare the host identity dom0 published.
 * Prints one PASS/FAIL line per check; exit status 0 only if all passed.
 */
#include "xm_hv.h"
#include "xm_log.h"
#include "xdom.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


static uint8_t pat(unsigned page, unsigned i)
{
    return (uint8_t)(page * 31u + i * 7u + 1u);
}

static void fill(uint8_t *p, unsigned page)
{
    for (unsigned i = 0; i < XM_PAGE_SIZE; i++)
        p[i] = pat(page, i);
}

/* Offsets B writes to in A's pages. */
#define B_MARK_OFF 100
#define B_MARK "written by B through a mapping"
#define B_MARK2_OFF 4000
#define B_MARK2 "B at page end"
#define B_COPY_OFF 2048
#define B_COPY_LEN 256
static uint8_t bcopy_pat(unsigned i) { return (uint8_t)(0xa5u ^ i); }

/* Wait up to ms for events; returns how many arrived on want (others are
 * acknowledged and counted in *other).  Stops early once done() holds. */
static int wait_events(xm_hv_t *hv, uint32_t want, int ms, int *other,
                       int (*done)(void *), void *arg)
{
    long end = now_ms() + ms;
    int got = 0;
    struct pollfd pfd = { .fd = xm_hv_evt_fd(hv), .events = POLLIN };

    for (;;) {
        uint32_t port;
        while (xm_hv_evt_pending(hv, &port) == 0) {
            if (port == want)
                got++;
            else if (other)
                (*other)++;
            xm_hv_evt_unmask(hv, port);
        }
        if (done && done(arg) && got)
            break;
        long left = end - now_ms();
        if (left <= 0)
            break;
        poll(&pfd, 1, left > 500 ? 500 : (int)left);
    }
    return got;
}

static int drain_events(xm_hv_t *hv, uint32_t port)
{
    int n = 0;
    uint32_t p;
    while (xm_hv_evt_pending(hv, &p) == 0) {
        if (p == port)
            n++;
        xm_hv_evt_unmask(hv, p);
    }
    return n;
}

/* ------------------------------------------------------------------ */

static uint8_t *a_rw;

static int a_saw_b_writes(void *arg)
{
    (void)arg;
    return !memcmp(a_rw + B_MARK_OFF, B_MARK, sizeof(B_MARK)) &&
           !memcmp(a_rw + XM_PAGE_SIZE + B_MARK2_OFF, B_MARK2, sizeof(B_MARK2));
}

static int perms_b(xm_hv_t *hv, uint32_t self, uint32_t peer, uint32_t what,
                   const char *leaf)
{
    char p[XM_STORE_MAX_PATH];
    xm_store_perm_t perms[2] = { { self, XM_PERM_NONE }, { peer, what } };
    if (leaf)
        xdom_path(p, leaf);
    else
        snprintf(p, sizeof(p), "%s", xdom.home);
    return xm_store_set_perms(hv, p, perms, 2);
}

/* The child: share one page with an unmap notify, then wait to be killed. */
static void child_main(uint32_t peer)
{
    xm_hv_t *hv;
    uint32_t port, ref;
    void *page;
    char buf[64];
    int rc;

    xdom.role = 'c';
    rc = xm_hv_open(&hv);
    if (rc) {
        note("child: open failed: %s", strerror(-rc));
        _exit(1);
    }
    xdom.hv = hv;   /* its own store connection, not the parent's */
    rc = xm_hv_evt_alloc_unbound(hv, peer, &port);
    if (!rc)
        rc = xm_hv_share(hv, peer, 1, 0, 0, (int)port, &page, &ref);
    if (rc) {
        note("child: share with notify failed: %s", strerror(-rc));
        xdom_put("child", "error");
        _exit(1);
    }
    fill(page, 9);
    ((uint8_t *)page)[0] = 1; /* the notify byte: alive */
    snprintf(buf, sizeof(buf), "%u %u", ref, port);
    xdom_put("child", "%s", buf);
    note("child %d: shared ref %u with notify byte 0 and port %u, waiting "
         "to be killed", (int)getpid(), ref, port);
    for (;;)
        pause();
}

static int run_a(xm_hv_t *hv, uint32_t self, uint32_t peer)
{
    uint32_t refs[3], port;
    void *rw = NULL, *ro = NULL;
    char buf[XM_STORE_MAX_PATH], *v;
    int rc, other = 0;

    xm_store_remove(hv, xdom.home);
    rc = xm_store_write(hv, xdom.home, "", 0);
    check(rc == 0, "create %s (rc %d)", xdom.home, rc);
    rc = perms_b(hv, self, peer, XM_PERM_READ, NULL);
    check(rc == 0, "set perms of %s: owner %u, domain %u read (rc %d)", xdom.home,
          self, peer, rc);

    rc = xm_hv_share(hv, peer, 2, 1, -1, -1, &rw, refs);
    check(rc == 0, "share 2 pages rw to domain %u (rc %d)", peer, rc);
    rc = xm_hv_share(hv, peer, 1, 0, -1, -1, &ro, refs + 2);
    check(rc == 0, "share 1 page ro to domain %u (rc %d)", peer, rc);
    if (!rw || !ro)
        return 1;
    a_rw = rw;
    {
        int zero = 1;
        for (unsigned i = 0; i < 2 * XM_PAGE_SIZE; i++)
            zero &= ((uint8_t *)rw)[i] == 0;
        check(zero, "shared pages start zeroed");
    }
    fill(rw, 0);
    fill((uint8_t *)rw + XM_PAGE_SIZE, 1);
    fill(ro, 2);
    rc = xm_hv_evt_alloc_unbound(hv, peer, &port);
    check(rc == 0, "allocate unbound event channel for domain %u (port %u, "
          "rc %d)", peer, port, rc);
    if (rc)
        return 1;

    /* The inbox B may write (read and write for B, nothing for others). */
    rc = xdom_put("inbox", "%s", "");
    if (!rc)
        rc = perms_b(hv, self, peer, XM_PERM_BOTH, "inbox");
    check(rc == 0, "create inbox writable by domain %u (rc %d)", peer, rc);
    /* a directory B may create nodes in */
    rc = xdom_put("mailbox", "%s", "");
    if (!rc)
        rc = perms_b(hv, self, peer, XM_PERM_BOTH, "mailbox");
    check(rc == 0, "create mailbox dir writable by domain %u (rc %d)", peer,
          rc);
    xdom_path(buf, "inbox");
    rc = xm_store_watch(hv, buf, "inbox");
    check(rc == 0, "watch %s (rc %d)", buf, rc);

    snprintf(buf, sizeof(buf), "%u %u %u", refs[0], refs[1], refs[2]);
    rc = xdom_put("refs", "%s", buf);
    snprintf(buf, sizeof(buf), "%u", port);
    rc = rc ? rc : xdom_put("port", "%s", buf);
    {
        char hid[256] = "";
        int hr = xm_hv_host_id(hv, hid, sizeof(hid));
        check(hr == 0 && hid[0], "host_id = \"%s\" (rc %d)", hid, hr);
        rc = rc ? rc : xdom_put("hostid", "%s", hid);
    }
    if (!rc) {
        /* a node only A can read (for B's watch on it) */
        rc = xdom_put("private", "0");
        xm_store_perm_t own[1] = { { self, XM_PERM_NONE } };
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "private");
        rc = rc ? rc : xm_store_set_perms(hv, p, own, 1);
    }
    rc = rc ? rc : xdom_put("ready", "1");
    check(rc == 0, "publish refs %u %u %u, port %u in %s (rc %d)", refs[0],
          refs[1], refs[2], port, xdom.home, rc);

    /* The watch fires once when set. */
    {
        char *wp = NULL, *wt = NULL;
        struct pollfd pfd = { .fd = xm_store_watch_fd(hv), .events = POLLIN };
        int got = 0;
        long end = now_ms() + 30000;
        while (!got && now_ms() < end) {
            if (xm_store_read_watch(hv, &wp, &wt) == 0) {
                got = !strcmp(wt, "inbox");
                free(wp);
                free(wt);
                continue;
            }
            poll(&pfd, 1, 500);
        }
        check(got, "watch on inbox fired once when set");
    }

    /* B maps, writes, copies, binds and notifies. */
    int n = wait_events(hv, port, WAIT_MS, &other, a_saw_b_writes, NULL);
    check(n >= 1, "event from B on port %u (%d events, %d on other ports)",
          port, n, other);
    check(a_saw_b_writes(NULL), "B's writes through its mapping are visible "
          "in both rw pages");
    {
        int ok = 1;
        const uint8_t *p = (uint8_t *)rw + XM_PAGE_SIZE + B_COPY_OFF;
        for (unsigned i = 0; i < B_COPY_LEN; i++)
            ok &= p[i] == bcopy_pat(i);
        check(ok, "B's grant copy into rw page 1 at offset %u arrived",
              B_COPY_OFF);
        int ro_ok = 1;
        for (unsigned i = 0; i < XM_PAGE_SIZE; i++)
            ro_ok &= ((uint8_t *)ro)[i] == pat(2, i);
        check(ro_ok, "ro page unchanged after B's attempts to write it");
    }

    /* B writes the inbox before it notifies. */
    {
        char *wp, *wt;
        int fired = 0;
        struct pollfd pfd = { .fd = xm_store_watch_fd(hv), .events = POLLIN };
        long end = now_ms() + 30000;
        v = NULL;
        while (now_ms() < end) {
            while (xm_store_read_watch(hv, &wp, &wt) == 0) {
                fired++;
                free(wp);
                free(wt);
            }
            v = xdom_get("inbox");
            if (v && fired && !strcmp(v, "hello from B"))
                break;
            free(v);
            v = NULL;
            poll(&pfd, 1, 500);
        }
        check(v != NULL, "B wrote \"hello from B\" into A's inbox and A's "
              "watch fired (%d events)", fired);
        free(v);
    }

    /* Changes B watches: one B can read, one it cannot. */
    rc = xdom_put("private", "1");
    rc = rc ? rc : xdom_put("mailbox/by-a", "x");
    check(rc == 0, "A changes private and creates mailbox/by-a (rc %d)", rc);

    /* Unmap notify: a child shares a page, B maps it, the child dies. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        child_main(peer);
    check(pid > 0, "fork child for the unmap-notify test");
    if (pid > 0) {
        v = xdom_wait("inbox", "child-mapped", NULL);
        check(v != NULL, "B mapped the child's page (inbox: %s)",
              v ? v : "(timeout)");
        free(v);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        note("child %d killed with SIGKILL", (int)pid);
    }

    v = xdom_wait("inbox", "b-unmapped", NULL);
    check(v != NULL, "B unmapped A's pages (inbox: %s)", v ? v : "(timeout)");
    free(v);
    rc = xm_hv_unshare(hv, rw, 2);
    check(rc == 0, "unshare rw pages (rc %d)", rc);
    rc = xm_hv_unshare(hv, ro, 1);
    check(rc == 0, "unshare ro page (rc %d)", rc);
    xdom_put("unshared", "1");

    v = xdom_wait("inbox", "b-done", NULL);
    check(v != NULL, "B finished (inbox: %s)", v ? v : "(timeout)");
    free(v);

    {
        char **names = NULL;
        unsigned nn = 0, want = 0;
        rc = xm_store_list(hv, xdom.home, &names, &nn);
        for (unsigned i = 0; i < nn; i++) {
            want += !strcmp(names[i], "inbox") || !strcmp(names[i], "mailbox")
                    || !strcmp(names[i], "refs");
            free(names[i]);
        }
        free(names);
        check(rc == 0 && want == 3, "list %s: %u children incl. inbox, "
              "mailbox, refs (rc %d)", xdom.home, nn, rc);
    }

    {
        /* A node B creates below A's home is owned by B: A reads it only
         * if B lists A in its permissions. */
        char p[XM_STORE_MAX_PATH];
        size_t l;
        v = NULL;
        xdom_path(p, "mailbox/from-b");
        rc = xm_store_read(hv, p, &v, &l);
        note("node B created without giving A access: A's read -> rc %d "
             "%s%s%s", rc, rc ? strerror(-rc) : "value ", rc ? "" : v,
             "");
        free(v);
        v = NULL;
        xdom_path(p, "mailbox/from-b-shared");
        rc = xm_store_read(hv, p, &v, &l);
        check(rc == 0 && v && !strcmp(v, "created by B"), "A reads the node "
              "B created in A's mailbox and opened to A (rc %d, %s)", rc,
              v ? v : "-");
        free(v);
        rc = xdom_put("mailbox/from-b-shared", "overwritten by A");
        check(rc == 0, "A overwrites that node (rc %d)", rc);
    }
    xdom_path(buf, "inbox");
    xm_store_unwatch(hv, buf, "inbox");
    rc = xm_hv_evt_close(hv, port);
    check(rc == 0, "close event channel (rc %d)", rc);
    rc = xm_store_remove(hv, xdom.home);
    check(rc == 0, "remove %s including B's nodes (rc %d)", xdom.home, rc);
    return 0;
}

/* ------------------------------------------------------------------ */

static volatile uint8_t *b_child_page;
static int b_child_dead(void *arg)
{
    (void)arg;
    return b_child_page[0] == 0;
}

static int run_b(xm_hv_t *hv, uint32_t self, uint32_t peer)
{
    uint32_t refs[3], aport, port;
    char *v;
    void *rw = NULL, *ro = NULL;
    int rc;

    v = xdom_wait("ready", "1", NULL);
    check(v != NULL, "A published %s/ready", xdom.home);
    free(v);
    if (!v)
        return 1;
    v = xdom_get("refs");
    check(v && sscanf(v, "%u %u %u", &refs[0], &refs[1], &refs[2]) == 3,
          "read refs from A's home: %s", v ? v : "(none)");
    free(v);
    v = xdom_get("port");
    check(v && sscanf(v, "%u", &aport) == 1, "read port from A's home: %s",
          v ? v : "(none)");
    free(v);
    {
        char hid[256] = "";
        int hr = xm_hv_host_id(hv, hid, sizeof(hid));
        v = xdom_get("hostid");
        check(hr == 0 && hid[0] && v && !strcmp(v, hid),
              "host_id = \"%s\", same as A's \"%s\" (rc %d)", hid,
              v ? v : "?", hr);
        free(v);
    }

    /* watches on A's nodes: mailbox (B may read), private (B may not) */
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "mailbox");
        rc = xm_store_watch(hv, p, "mb");
        check(rc == 0, "watch A's %s (rc %d)", p, rc);
        xdom_path(p, "private");
        rc = xm_store_watch(hv, p, "priv");
        note("watch on A's %s (not readable by B): rc %d %s", p, rc,
             rc ? strerror(-rc) : "");
    }

    /* map the two rw pages */
    rc = xm_hv_map(hv, peer, 2, refs, 1, -1, &rw);
    check(rc == 0, "map 2 rw grants from domain %u (rc %d)", peer, rc);
    if (rc)
        return 1;
    {
        int ok = 1;
        for (unsigned i = 0; i < XM_PAGE_SIZE; i++)
            ok &= ((uint8_t *)rw)[i] == pat(0, i) &&
                  ((uint8_t *)rw)[XM_PAGE_SIZE + i] == pat(1, i);
        check(ok, "content of the 2 mapped rw pages");
    }
    {
        uint64_t c0 = xm_hv_xen_call_count(hv);
        memcpy((uint8_t *)rw + B_MARK_OFF, B_MARK, sizeof(B_MARK));
        uint64_t c1 = xm_hv_xen_call_count(hv);
        check(c0 > 0 && c1 == c0, "writing a mapped page makes no hypervisor "
              "call (%llu calls so far)", (unsigned long long)c0);
    }

    /* the ro page: writable mapping must fail, read-only must work */
    void *bad = NULL;
    rc = xm_hv_map(hv, peer, 1, refs + 2, 1, -1, &bad);
    check(rc < 0 && bad == NULL, "map of the ro grant writable refused (rc %d "
          "%s)", rc, rc < 0 ? strerror(-rc) : "mapped!");
    if (rc == 0)
        xm_hv_unmap(hv, bad, 1);
    rc = xm_hv_map(hv, peer, 1, refs + 2, 0, -1, &ro);
    check(rc == 0, "map ro grant read-only (rc %d)", rc);
    if (!rc) {
        int ok = 1;
        for (unsigned i = 0; i < XM_PAGE_SIZE; i++)
            ok &= ((uint8_t *)ro)[i] == pat(2, i);
        check(ok, "content of the ro page");
    }

    /* grant copy */
    {
        uint8_t a[200], b[96], c[B_COPY_LEN], d[16] = { 0 }, e[8];
        xm_copy_seg_t s[3] = {
            { a, peer, refs[2], 10, sizeof(a), XM_COPY_FROM_FOREIGN, 1 },
            { b, peer, refs[1], 3990, sizeof(b) - 90, XM_COPY_FROM_FOREIGN, 1 },
            { b + 6, peer, refs[0], 0, 90, XM_COPY_FROM_FOREIGN, 1 },
        };
        rc = xm_hv_copy(hv, s, 3);
        int ok = rc == 0 && !s[0].status && !s[1].status && !s[2].status;
        for (unsigned i = 0; i < sizeof(a); i++)
            ok &= a[i] == pat(2, 10 + i);
        for (unsigned i = 0; i < 6; i++)
            ok &= b[i] == pat(1, 3990 + i);
        for (unsigned i = 0; i < 90; i++)
            ok &= b[6 + i] ==
                  (i >= B_MARK_OFF && i < B_MARK_OFF + sizeof(B_MARK)
                       ? (uint8_t)B_MARK[i - B_MARK_OFF] : pat(0, i));
        check(ok, "grant copy from A (3 segments, ro and rw grants) with data "
              "(rc %d, status %d %d %d)", rc, s[0].status, s[1].status,
              s[2].status);

        for (unsigned i = 0; i < sizeof(c); i++)
            c[i] = bcopy_pat(i);
        xm_copy_seg_t t = { c, peer, refs[1], B_COPY_OFF, sizeof(c),
                            XM_COPY_TO_FOREIGN, 1 };
        rc = xm_hv_copy(hv, &t, 1);
        check(rc == 0 && t.status == 0, "grant copy to A's rw page (rc %d)",
              rc);
        ok = rc == 0;
        for (unsigned i = 0; i < sizeof(c); i++)
            ok &= ((uint8_t *)rw)[XM_PAGE_SIZE + B_COPY_OFF + i] == c[i];
        check(ok, "grant-copied data visible through B's mapping");

        xm_copy_seg_t u = { d, peer, refs[2], 0, sizeof(d),
                            XM_COPY_TO_FOREIGN, 1 };
        rc = xm_hv_copy(hv, &u, 1);
        check(rc < 0 && u.status == rc, "grant copy to the ro page refused "
              "(rc %d %s)", rc, rc < 0 ? strerror(-rc) : "copied!");

        xm_copy_seg_t w[2] = {
            { e, peer, refs[0], 0, sizeof(e), XM_COPY_FROM_FOREIGN, 1 },
            { e, peer, refs[0], 4090, 8, XM_COPY_FROM_FOREIGN, 1 },
        };
        rc = xm_hv_copy(hv, w, 2);
        check(rc == -EINVAL && w[0].status == 0 && w[1].status == -EINVAL,
              "segment crossing the page end rejected with -EINVAL, the other "
              "one copied (rc %d, status %d %d)", rc, w[0].status,
              w[1].status);

        xm_copy_seg_t x = { e, peer, 7777, 0, sizeof(e),
                            XM_COPY_FROM_FOREIGN, 1 };
        rc = xm_hv_copy(hv, &x, 1);
        check(rc < 0, "grant copy of a ref never granted fails (rc %d %s)",
              rc, rc < 0 ? strerror(-rc) : "copied!");
        xm_copy_seg_t y = { e, 4000, refs[0], 0, sizeof(e),
                            XM_COPY_FROM_FOREIGN, 1 };
        rc = xm_hv_copy(hv, &y, 1);
        check(rc < 0, "grant copy naming a domain that does not exist fails "
              "(rc %d %s)", rc, rc < 0 ? strerror(-rc) : "copied!");
    }
    memcpy((uint8_t *)rw + XM_PAGE_SIZE + B_MARK2_OFF, B_MARK2,
           sizeof(B_MARK2));

    /* store: write A's inbox (granted), not A's refs (read-only for B) */
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        rc = xm_store_write(hv, p, "hello from B", 12);
        check(rc == 0, "write %s (A granted write) (rc %d)", p, rc);
        xdom_path(p, "refs");
        rc = xm_store_write(hv, p, "0 0 0", 5);
        check(rc == -EACCES, "write %s (read-only for B) refused with "
              "-EACCES (rc %d)", p, rc);
        xdom_path(p, "newnode");
        rc = xm_store_write(hv, p, "x", 1);
        note("creating %s (parent read-only for B): rc %d %s", p, rc,
             rc ? strerror(-rc) : "");
        check(rc < 0, "creating a node below A's read-only dir refused");
        xdom_path(p, "mailbox/from-b");
        rc = xm_store_write(hv, p, "created by B", 12);
        check(rc == 0, "create %s (parent writable for B) (rc %d)", p, rc);
        xdom_path(p, "mailbox/from-b-shared");
        rc = xm_store_write(hv, p, "created by B", 12);
        check(rc == 0, "create %s (rc %d)", p, rc);
        xm_store_perm_t op[2] = { { self, XM_PERM_NONE },
                                  { peer, XM_PERM_BOTH } };
        rc = rc ? rc : xm_store_set_perms(hv, p, op, 2);
        check(rc == 0, "B (its owner) gives A read/write on it (rc %d)", rc);
    }

    /* event channel */
    rc = xm_hv_evt_bind(hv, peer, aport, &port);
    check(rc == 0, "bind to A's port %u -> local port %u (rc %d)", aport, port,
          rc);
    if (rc)
        return 1;
    {
        usleep(100000);
        int n = drain_events(hv, port);
        note("events pending right after bind: %d (Xen marks a new "
             "interdomain port pending)", n);
    }
    rc = xm_hv_evt_notify(hv, port);
    check(rc == 0, "notify A (rc %d)", rc);

    /* unmap notify */
    v = xdom_wait("child", NULL, NULL);
    uint32_t cref = 0, cport = 0, clocal = 0;
    check(v && sscanf(v, "%u %u", &cref, &cport) == 2, "A's child published "
          "its notify page: %s", v ? v : "(timeout)");
    free(v);
    void *cp = NULL;
    rc = xm_hv_map(hv, peer, 1, &cref, 0, -1, &cp);
    check(rc == 0, "map the child's page (rc %d)", rc);
    if (!rc) {
        b_child_page = cp;
        check(b_child_page[0] == 1 && b_child_page[1] == pat(9, 1),
              "child page alive byte is 1 and content matches");
        rc = xm_hv_evt_bind(hv, peer, cport, &clocal);
        check(rc == 0, "bind to the child's port %u -> %u (rc %d)", cport,
              clocal, rc);
        usleep(100000);
        drain_events(hv, clocal);
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "child-mapped", 12);
        int other = 0;
        int n = wait_events(hv, clocal, WAIT_MS, &other, b_child_dead, NULL);
        check(b_child_page[0] == 0, "child killed: notify byte cleared in "
              "the mapped page");
        check(n >= 1, "child killed: unmap-notify event arrived (%d)", n);
        check(b_child_page[1] == pat(9, 1), "rest of the child's page still "
              "readable after its death");
        xm_hv_evt_close(hv, clocal);
        rc = xm_hv_unmap(hv, cp, 1);
        check(rc == 0, "unmap the dead child's page (rc %d)", rc);
    }

    {
        int mb = 0, priv = 0, mb_bya = 0;
        char *wp, *wt;
        long end = now_ms() + 10000;
        struct pollfd pfd = { .fd = xm_store_watch_fd(hv), .events = POLLIN };
        while (now_ms() < end && !mb_bya) {
            while (xm_store_read_watch(hv, &wp, &wt) == 0) {
                note("watch event: token %s path %s", wt, wp);
                if (!strcmp(wt, "mb")) {
                    mb++;
                    mb_bya |= strstr(wp, "mailbox/by-a") != NULL;
                } else if (!strcmp(wt, "priv"))
                    priv++;
                free(wp);
                free(wt);
            }
            if (!mb_bya)
                poll(&pfd, 1, 500);
        }
        check(mb >= 1 && mb_bya, "watch on A's mailbox fired (%d events, "
              "incl. A's new mailbox/by-a)", mb);
        note("watch on A's private node (unreadable by B): %d events "
             "(set-time event plus any change B was allowed to see)", priv);
    }

    rc = xm_hv_evt_close(hv, port);
    check(rc == 0, "close event channel (rc %d)", rc);
    rc = xm_hv_unmap(hv, rw, 2);
    check(rc == 0, "unmap rw pages (rc %d)", rc);
    if (ro) {
        rc = xm_hv_unmap(hv, ro, 1);
        check(rc == 0, "unmap ro page (rc %d)", rc);
    }
    {
        char p[XM_STORE_MAX_PATH], **names = NULL;
        unsigned nn = 0, want = 0;
        xdom_path(p, "mailbox");
        rc = xm_store_list(hv, p, &names, &nn);
        for (unsigned i = 0; i < nn; i++) {
            want += !strcmp(names[i], "from-b") ||
                    !strcmp(names[i], "from-b-shared") ||
                    !strcmp(names[i], "by-a");
            free(names[i]);
        }
        free(names);
        check(rc == 0 && want == 3, "list A's mailbox: %u children incl. "
              "from-b, from-b-shared, by-a (rc %d)", nn, rc);
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "b-unmapped", 10);
    }
    /* refs A has revoked must fail cleanly */
    v = xdom_wait("unshared", "1", NULL);
    check(v != NULL, "A revoked its grants");
    free(v);
    {
        uint8_t e[16];
        xm_copy_seg_t z[2] = {
            { e, peer, refs[0], 0, sizeof(e), XM_COPY_FROM_FOREIGN, 1 },
            { e, peer, refs[2], 0, sizeof(e), XM_COPY_TO_FOREIGN, 1 },
        };
        rc = xm_hv_copy(hv, z, 2);
        check(rc < 0 && z[0].status < 0 && z[1].status < 0, "grant copy with "
              "revoked refs fails (rc %d, status %d %d)", rc, z[0].status,
              z[1].status);
        void *m = NULL;
        rc = xm_hv_map(hv, peer, 1, refs, 0, -1, &m);
        check(rc < 0 && !m, "map of a revoked ref fails (rc %d %s)", rc,
              rc < 0 ? strerror(-rc) : "mapped!");
    }
    {
        char p[XM_STORE_MAX_PATH], msg[32];
        xdom_path(p, "inbox");
        snprintf(msg, sizeof(msg), "b-done %d", xdom.fails);
        xm_store_write(hv, p, msg, strlen(msg));
    }
    return 0;
}

/* "hv_xdom free <peer> <max>": how many grant refs this domain can still
 * share, up to max, counted by sharing one page at a time to peer until
 * the table or gntalloc's limit refuses, then ending them all.  The
 * harness runs it before each test with a max well below the table's
 * size: a probe that met a full table would itself leave gntalloc unable
 * to share (docs/kernel.md). */
#define FREE_PROBE_MAX 65536
static int free_probe(uint32_t peer, unsigned max)
{
    xm_hv_t *hv = NULL;
    void **pages;
    unsigned n = 0, i;
    uint32_t ref;
    int rc;

    if (max > FREE_PROBE_MAX)
        max = FREE_PROBE_MAX;
    pages = calloc(max + 1, sizeof(*pages));   /* + 1: never calloc(0) */
    if (!pages || xm_hv_open(&hv)) {
        fprintf(stderr, "hv_xdom free: cannot open the xen backend\n");
        free(pages);
        return 1;
    }
    while (n < max) {
        rc = xm_hv_share(hv, peer, 1, 0, -1, -1, &pages[n], &ref);
        if (rc)
            break;
        n++;
    }
    for (i = 0; i < n; i++)
        xm_hv_unshare(hv, pages[i], 1);
    printf("grant refs free: %u\n", n);
    xm_hv_close(hv);
    free(pages);
    return 0;
}

int main(int argc, char **argv)
{
    xm_hv_t *hv = NULL;
    uint32_t peer, self, a;
    int rc;

    if (argc == 4 && !strcmp(argv[1], "free")) {
        setenv("XENMPI_BACKEND", "xen", 0);
        return free_probe((uint32_t)strtoul(argv[2], NULL, 10),
                          (unsigned)strtoul(argv[3], NULL, 10));
    }
    if (argc != 3 || (strcmp(argv[1], "a") && strcmp(argv[1], "b"))) {
        fprintf(stderr, "usage: %s a|b <peer domid> | free <peer domid> <max>\n", argv[0]);
        return 2;
    }
    xdom.prog = "hv_xdom";
    xdom.role = argv[1][0];
    peer = (uint32_t)strtoul(argv[2], NULL, 10);
    setenv("XENMPI_BACKEND", "xen", 0);
    setvbuf(stdout, NULL, _IOLBF, 0);

    rc = xm_hv_open(&hv);
    check(rc == 0, "open the %s backend (rc %d)",
          getenv("XENMPI_BACKEND"), rc);
    if (rc)
        return 1;
    xdom.hv = hv;
    check(!strcmp(xm_hv_backend_name(hv), "xen"), "backend is %s",
          xm_hv_backend_name(hv));
    self = xm_hv_domid(hv);
    check(self != XM_DOMID_INVALID && self != 0 && self != peer,
          "own domid %u, peer %u", self, peer);
    a = xdom.role == 'a' ? self : peer;
    snprintf(xdom.home, sizeof(xdom.home), "/local/domain/%u/xenmpi-test/hv_xdom", a);

    rc = xdom.role == 'a' ? run_a(hv, self, peer) : run_b(hv, self, peer);
    if (rc)
        check(0, "stopped early");
    xm_hv_close(hv);
    return xdom_result();
}
