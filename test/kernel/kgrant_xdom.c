/*
 * kgrant_xdom.c - the xenmpi_grant module between two real domUs.
 *
 *   kgrant_xdom a <domid of B>   (domU A: grants its own user memory)
 *   kgrant_xdom b <domid of A>   (domU B: grant-copies and maps it)
 *
 * Both domUs have the module loaded (/dev/xenmpi_grant).  A first feeds the
 * device hostile input and checks that every call fails with the documented
 * errno and changes no counter; then the memory-lock limit, the module
 * limits, the data path (A grants user buffers read-write, read-only and
 * through a two-level grant directory; B copies, maps, writes, and A sees
 * B's writes in its own buffers), ending (refs fail afterwards), ending
 * while B still maps (deferred: the pages survive A's munmap and later
 * complete), a process killed with outstanding grants (counters back to
 * zero), stale grants (memory events in a granted range reported once,
 * write protection not), rmmod refused while pages are pinned for a peer, and finally
 * unload and reload.  B also grants a page of its own that A copies.
 * The two sides step through the store below A's home.  One PASS/FAIL line
 * per check; exit status 0 only if all passed.
 */
#include "xm_hv.h"
#include "../xen/xdom.h"
#include "../../kernel/uapi/xenmpi_grant.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG XENMPI_GRANT_PAGE_SIZE
#define MODNAME "xenmpi_grant"
#define PARAM_DIR "/sys/module/" MODNAME "/parameters/"

static xm_hv_t *hv;
static uint32_t self, peer;

static uint8_t pat(unsigned tag, unsigned page, unsigned i)
{
    return (uint8_t)(tag * 131u + page * 31u + i * 7u + 1u);
}

static void fill(uint8_t *p, unsigned tag, unsigned pages)
{
    for (unsigned pg = 0; pg < pages; pg++)
        for (unsigned i = 0; i < PG; i++)
            p[(size_t)pg * PG + i] = pat(tag, pg, i);
}

static int same(const uint8_t *p, unsigned tag, unsigned page)
{
    for (unsigned i = 0; i < PG; i++)
        if (p[i] != pat(tag, page, i))
            return 0;
    return 1;
}

static void *pages_map(unsigned n, int prot)
{
    void *p = mmap(NULL, (size_t)n * PG, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* ------------------------------------------------------------------ */
/* store plumbing (A's home: A writes, B reads; B writes only "inbox") */

/* B also gives up when A wrote "abort" to home/a */
static char *wait_node(const char *leaf, const char *prefix)
{
    return xdom_wait(leaf, prefix, xdom.role == 'b' ? "a" : NULL);
}

static int wait_step(const char *leaf, const char *prefix)
{
    char *v = wait_node(leaf, prefix);
    free(v);
    return v != NULL;
}

/* ------------------------------------------------------------------ */
/* the device */

static int dev_open(void)
{
    return open(XENMPI_GRANT_DEVICE, O_RDWR | O_CLOEXEC);
}

static int info(int fd, struct xenmpi_grant_info *in)
{
    memset(in, 0, sizeof(*in));
    in->size = sizeof(*in);
    return ioctl(fd, XENMPI_IOC_INFO, in) ? -errno : 0;
}

static int grant(int fd, void *addr, uint64_t len, uint32_t domid,
                 uint32_t flags, uint32_t *refs, uint32_t nr_refs,
                 struct xenmpi_grant_req *out)
{
    struct xenmpi_grant_req r;
    memset(&r, 0, sizeof(r));
    r.size = sizeof(r);
    r.flags = flags;
    r.domid = domid;
    r.addr = (uintptr_t)addr;
    r.len = len;
    r.refs = (uintptr_t)refs;
    r.nr_refs = nr_refs;
    int rc = ioctl(fd, XENMPI_IOC_GRANT, &r) ? -errno : 0;
    if (out)
        *out = r;
    return rc;
}

static int end_grant(int fd, uint64_t handle, uint32_t *deferred)
{
    struct xenmpi_grant_end e;
    memset(&e, 0, sizeof(e));
    e.size = sizeof(e);
    e.handle = handle;
    int rc = ioctl(fd, XENMPI_IOC_END, &e) ? -errno : 0;
    if (deferred)
        *deferred = e.deferred;
    return rc;
}

/* The counters a failed call must not change. */
static int counters_equal(const struct xenmpi_grant_info *a,
                          const struct xenmpi_grant_info *b)
{
    return a->mm_pinned_pages == b->mm_pinned_pages &&
           a->file_grants == b->file_grants && a->file_pages == b->file_pages &&
           a->file_dir_pages == b->file_dir_pages &&
           a->file_deferred_refs == b->file_deferred_refs &&
           a->total_grants == b->total_grants &&
           a->total_pages == b->total_pages &&
           a->total_dir_pages == b->total_dir_pages &&
           a->total_deferred_refs == b->total_deferred_refs &&
           a->total_granted == b->total_granted;
}

static const char *counters(const struct xenmpi_grant_info *i)
{
    static char buf[4][256];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof(buf[0]), "file: %llu grants, %llu pages, %llu dir, "
             "%llu deferred; total: %llu grants, %llu pages, %llu dir, %llu "
             "deferred, %llu done; pinned_vm %llu",
             (unsigned long long)i->file_grants, (unsigned long long)i->file_pages,
             (unsigned long long)i->file_dir_pages,
             (unsigned long long)i->file_deferred_refs,
             (unsigned long long)i->total_grants, (unsigned long long)i->total_pages,
             (unsigned long long)i->total_dir_pages,
             (unsigned long long)i->total_deferred_refs,
             (unsigned long long)i->total_deferred_done,
             (unsigned long long)i->mm_pinned_pages);
    return b;
}

static int all_zero(const struct xenmpi_grant_info *i)
{
    return !i->total_grants && !i->total_pages && !i->total_dir_pages &&
           !i->total_deferred_refs;
}

/* Poll until the module-wide counters are zero (deferred work done). */
static int wait_zero(int fd, struct xenmpi_grant_info *in, int ms)
{
    long end = now_ms() + ms;
    do {
        if (info(fd, in) == 0 && all_zero(in))
            return 1;
        usleep(50000);
    } while (now_ms() < end);
    return 0;
}

/* One hostile call: the expected errno and no counter moved. */
static void expect(int fd, const char *what, int want, int rc,
                   const struct xenmpi_grant_info *before)
{
    struct xenmpi_grant_info after;
    int irc = info(fd, &after);
    check(rc == want && irc == 0 && counters_equal(before, &after),
          "%s -> %s (want %s), counters unchanged: %s", what,
          rc ? strerror(-rc) : "success", strerror(-want),
          irc ? "info failed" : counters(&after));
}

static int set_param(const char *name, unsigned long v)
{
    char p[256];
    snprintf(p, sizeof(p), PARAM_DIR "%s", name);
    FILE *f = fopen(p, "w");
    if (!f)
        return -errno;
    int rc = fprintf(f, "%lu\n", v) > 0 ? 0 : -EIO;
    if (fclose(f))
        rc = -errno;
    return rc;
}

static long get_param(const char *name)
{
    char p[256];
    long v = -1;
    snprintf(p, sizeof(p), PARAM_DIR "%s", name);
    FILE *f = fopen(p, "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void show_dmesg(void)
{
    fflush(stdout);
    if (system("dmesg | grep -i " MODNAME " | tail -20") < 0)
        note("dmesg failed");
}

/* ------------------------------------------------------------------ */
/* A: hostile input */

static void a_bad_input(int fd)
{
    struct xenmpi_grant_info b, t;
    struct xenmpi_grant_req r;
    uint32_t refs[64];
    unsigned long per_file;
    uint8_t *buf = pages_map(8, PROT_READ | PROT_WRITE);
    uint8_t *ro = pages_map(2, PROT_READ);
    uint8_t *none = pages_map(1, PROT_NONE);
    uint8_t *hole = pages_map(3, PROT_READ | PROT_WRITE);
    uint32_t *ro_refs = pages_map(1, PROT_READ);
    int rc;

    if (!buf || !ro || !none || !hole || !ro_refs) {
        check(0, "mmap test buffers");
        return;
    }
    fill(buf, 1, 8);
    fill(hole, 2, 3);
    munmap(hole + PG, PG);

    rc = info(fd, &b);
    check(rc == 0 && b.api_version == XENMPI_GRANT_API_VERSION &&
          b.dir_root_refs == XENMPI_GRANT_DIR_ROOT_REFS &&
          b.dir_leaf_refs == XENMPI_GRANT_DIR_LEAF_REFS && all_zero(&b),
          "info: api %u, limits %u per file / %u total, memlock %llu, "
          "counters zero: %s (rc %d)", b.api_version, b.max_pages_per_file,
          b.max_pages, (unsigned long long)b.memlock_limit, counters(&b), rc);
    per_file = b.max_pages_per_file;

    /* sizes: the size field, and sizes encoded in the ioctl number */
    memset(&r, 0, sizeof(r));
    r.domid = peer; r.addr = (uintptr_t)buf; r.len = PG;
    r.refs = (uintptr_t)refs; r.nr_refs = 64;
    r.size = sizeof(r) - 8;
    rc = ioctl(fd, XENMPI_IOC_GRANT, &r) ? -errno : 0;
    expect(fd, "grant with size field sizeof-8", -EINVAL, rc, &b);
    r.size = sizeof(r) + 8;
    rc = ioctl(fd, XENMPI_IOC_GRANT, &r) ? -errno : 0;
    expect(fd, "grant with size field sizeof+8", -EINVAL, rc, &b);
    r.size = 0;
    rc = ioctl(fd, XENMPI_IOC_GRANT, &r) ? -errno : 0;
    expect(fd, "grant with size field 0", -EINVAL, rc, &b);
    r.size = sizeof(r);
    rc = ioctl(fd, _IOWR(XENMPI_GRANT_IOC_MAGIC, 1, char[56]), &r) ? -errno : 0;
    expect(fd, "grant ioctl number encoding 56 bytes", -ENOTTY, rc, &b);
    rc = ioctl(fd, _IOW(XENMPI_GRANT_IOC_MAGIC, 1, struct xenmpi_grant_req), &r) ? -errno : 0;
    expect(fd, "grant ioctl number with direction _IOW", -ENOTTY, rc, &b);
    rc = ioctl(fd, _IOWR(XENMPI_GRANT_IOC_MAGIC, 9, struct xenmpi_grant_req), &r) ? -errno : 0;
    expect(fd, "unknown ioctl number 9", -ENOTTY, rc, &b);
    {
        struct xenmpi_grant_info in;
        memset(&in, 0, sizeof(in));
        in.size = sizeof(in) - 8;
        rc = ioctl(fd, XENMPI_IOC_INFO, &in) ? -errno : 0;
        expect(fd, "info with size field sizeof-8", -EINVAL, rc, &b);
        struct xenmpi_grant_end e = { .size = 16, .handle = 1 };
        rc = ioctl(fd, XENMPI_IOC_END, &e) ? -errno : 0;
        expect(fd, "end with size field 16", -EINVAL, rc, &b);
        rc = ioctl(fd, XENMPI_IOC_GRANT, (void *)16) ? -errno : 0;
        expect(fd, "grant with a bad struct pointer", -EFAULT, rc, &b);
    }

    /* flags and padding */
    rc = grant(fd, buf, PG, peer, 1u << 5, refs, 64, NULL);
    expect(fd, "grant with unknown flag bit 5", -EINVAL, rc, &b);
    r.size = sizeof(r); r.flags = 0; r.pad = 1;
    rc = ioctl(fd, XENMPI_IOC_GRANT, &r) ? -errno : 0;
    expect(fd, "grant with pad != 0", -EINVAL, rc, &b);

    /* alignment and length */
    rc = grant(fd, buf + 1, PG, peer, 0, refs, 64, NULL);
    expect(fd, "grant at an unaligned address", -EINVAL, rc, &b);
    rc = grant(fd, buf, PG + 1, peer, 0, refs, 64, NULL);
    expect(fd, "grant of 4097 bytes", -EINVAL, rc, &b);
    rc = grant(fd, buf, 100, peer, 0, refs, 64, NULL);
    expect(fd, "grant of 100 bytes", -EINVAL, rc, &b);
    rc = grant(fd, buf, 0, peer, 0, refs, 64, NULL);
    expect(fd, "grant of 0 bytes", -EINVAL, rc, &b);
    rc = grant(fd, buf, 0xfffffffffffff000ull, peer, 0, refs, 64, NULL);
    expect(fd, "grant whose end wraps around (len 2^64-4096)", -EINVAL, rc, &b);
    rc = grant(fd, (void *)0xffff800000000000ull, PG, peer, 0, refs, 64, NULL);
    expect(fd, "grant of a kernel address", -EINVAL, rc, &b);
    rc = grant(fd, (void *)0x10000, 1ull << 40, peer, 0, refs, 64, NULL);
    expect(fd, "grant of 1 TiB", -E2BIG, rc, &b);
    rc = grant(fd, (void *)0x10000, (uint64_t)(per_file + 1) * PG, peer,
               XENMPI_GRANT_DIRECTORY, NULL, 0, NULL);
    expect(fd, "grant of max_pages_per_file + 1 pages", -E2BIG, rc, &b);

    /* domid */
    rc = grant(fd, buf, PG, 0x7ff0, 0, refs, 64, NULL);
    expect(fd, "grant to DOMID_SELF (0x7ff0)", -EINVAL, rc, &b);
    rc = grant(fd, buf, PG, self, 0, refs, 64, NULL);
    expect(fd, "grant to our own domid", -EINVAL, rc, &b);
    rc = grant(fd, buf, PG, 0xffff, 0, refs, 64, NULL);
    expect(fd, "grant to domid 0xffff", -EINVAL, rc, &b);
    rc = grant(fd, buf, PG, 0x10000, 0, refs, 64, NULL);
    expect(fd, "grant to domid 0x10000", -EINVAL, rc, &b);
    rc = grant(fd, buf, PG, 0xffffffffu, 0, refs, 64, NULL);
    expect(fd, "grant to domid 0xffffffff", -EINVAL, rc, &b);

    /* memory the caller may not grant that way */
    rc = grant(fd, ro, 2 * PG, peer, 0, refs, 64, NULL);
    expect(fd, "read-write grant of PROT_READ memory", -EACCES, rc, &b);
    rc = grant(fd, none, PG, peer, XENMPI_GRANT_READONLY, refs, 64, NULL);
    expect(fd, "read-only grant of PROT_NONE memory", -EACCES, rc, &b);
    rc = grant(fd, hole, 3 * PG, peer, XENMPI_GRANT_READONLY, refs, 64, NULL);
    expect(fd, "grant of a range with an unmapped page in the middle",
           -EFAULT, rc, &b);
    /* privcmd mappings are VM_IO | VM_PFNMAP: no struct pages to pin */
    {
        int pfd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
        void *pm = pfd >= 0 ? mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, 0)
                            : MAP_FAILED;
        if (pm == MAP_FAILED) {
            check(0, "map /dev/xen/privcmd: %s", strerror(errno));
        } else {
            rc = grant(fd, pm, PG, peer, XENMPI_GRANT_READONLY, refs, 64, NULL);
            expect(fd, "grant of a /dev/xen/privcmd (VM_IO|VM_PFNMAP) mapping",
                   -EOPNOTSUPP, rc, &b);
            munmap(pm, PG);
        }
        if (pfd >= 0)
            close(pfd);
    }

    /* where the refs go */
    rc = grant(fd, buf, PG, peer, 0, NULL, 0, NULL);
    expect(fd, "grant without refs array or directory", -EINVAL, rc, &b);
    rc = grant(fd, buf, 4 * PG, peer, 0, refs, 3, NULL);
    expect(fd, "grant of 4 pages with room for 3 refs", -ENOBUFS, rc, &b);
    rc = grant(fd, buf, 4 * PG, peer, 0, ro_refs, 64, NULL);
    expect(fd, "grant whose refs array is read-only (pages pinned and "
           "granted, then rolled back)", -EFAULT, rc, &b);
    rc = grant(fd, buf, 4 * PG, peer, XENMPI_GRANT_DIRECTORY, ro_refs, 64, NULL);
    expect(fd, "same with a directory", -EFAULT, rc, &b);

    /* a process that did not open the file may not grant through it */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(grant(fd, buf, PG, peer, 0, refs, 64, NULL) == -EPERM ? 0 : 1);
    int st = -1;
    waitpid(pid, &st, 0);
    {
        struct xenmpi_grant_info a;
        info(fd, &a);
        check(WIFEXITED(st) && WEXITSTATUS(st) == 0 && counters_equal(&b, &a),
              "grant through an inherited fd from a forked child -> EPERM, "
              "counters unchanged");
    }

    /* positive controls, overlap, foreign and ended handles */
    struct xenmpi_grant_req g1, g2, g3, g4, g5;
    uint32_t d = 99;
    rc = grant(fd, ro, 2 * PG, peer, XENMPI_GRANT_READONLY, refs, 64, &g1);
    check(rc == 0 && g1.nr_refs == 2 && g1.nr_pages == 2 &&
          g1.dir_ref == XENMPI_GRANT_REF_INVALID && g1.handle,
          "read-only grant of PROT_READ memory works (rc %d, handle %llu)",
          rc, (unsigned long long)g1.handle);
    rc = end_grant(fd, g1.handle, &d);
    check(rc == 0 && d == 0, "end it: nothing deferred (rc %d, deferred %u)",
          rc, d);

    rc = grant(fd, buf, 4 * PG, peer, 0, refs, 64, &g1);
    check(rc == 0 && g1.nr_refs == 4, "grant pages 0-3 read-write (rc %d)", rc);
    info(fd, &t);
    check(t.file_grants == 1 && t.file_pages == 4 && t.mm_pinned_pages ==
          b.mm_pinned_pages + 4, "counters after it: %s", counters(&t));
    rc = grant(fd, buf + 2 * PG, 4 * PG, peer, 0, refs, 64, NULL);
    expect(fd, "grant pages 2-5 to the same peer (overlap)", -EEXIST, rc, &t);
    rc = grant(fd, buf + 3 * PG, PG, peer, XENMPI_GRANT_READONLY, refs, 64, NULL);
    expect(fd, "read-only grant of page 3 to the same peer (overlap)",
           -EEXIST, rc, &t);
    rc = grant(fd, buf, 8 * PG, peer, XENMPI_GRANT_DIRECTORY, NULL, 0, NULL);
    expect(fd, "grant pages 0-7 to the same peer (contains it)", -EEXIST, rc, &t);
    rc = grant(fd, buf + 4 * PG, 2 * PG, peer, 0, refs, 64, &g2);
    check(rc == 0, "adjacent pages 4-5 to the same peer are fine (rc %d)", rc);
    rc = grant(fd, buf, 4 * PG, 0, 0, refs, 64, &g3);
    check(rc == 0, "pages 0-3 to another domain (0) are fine (rc %d)", rc);
    rc = grant(fd, buf + 6 * PG, 2 * PG, peer, XENMPI_GRANT_DIRECTORY, NULL, 0, &g5);
    check(rc == 0 && g5.nr_refs == 0 && g5.nr_dir_pages == 1 &&
          g5.dir_ref != XENMPI_GRANT_REF_INVALID, "directory-only grant of "
          "pages 6-7: dir ref %u, no refs array (rc %d)", g5.dir_ref, rc);

    int fd2 = dev_open();
    rc = fd2 >= 0 ? grant(fd2, buf + 6 * PG, PG, 0, 0, refs, 64, &g4) : -errno;
    check(rc == 0, "a second open file grants page 6 to domain 0 (rc %d)", rc);
    info(fd, &t);
    rc = end_grant(fd, g4.handle, NULL);
    expect(fd, "end another file's handle", -ENOENT, rc, &t);
    rc = end_grant(fd, 0, NULL);
    expect(fd, "end handle 0", -ENOENT, rc, &t);
    rc = end_grant(fd, 0x123456789ull, NULL);
    expect(fd, "end a handle never issued", -ENOENT, rc, &t);
    {
        struct xenmpi_grant_end e = { .size = sizeof(e), .flags = 1,
                                      .handle = g1.handle };
        rc = ioctl(fd, XENMPI_IOC_END, &e) ? -errno : 0;
        expect(fd, "end with flags != 0", -EINVAL, rc, &t);
        e.flags = 0;
        e.pad = 7;
        rc = ioctl(fd, XENMPI_IOC_END, &e) ? -errno : 0;
        expect(fd, "end with pad != 0", -EINVAL, rc, &t);
        rc = ioctl(fd, XENMPI_IOC_END, (void *)16) ? -errno : 0;
        expect(fd, "end with a bad struct pointer", -EFAULT, rc, &t);
    }
    rc = end_grant(fd2, g4.handle, &d);
    check(rc == 0 && d == 0, "the second file ends its own handle (rc %d)", rc);
    close(fd2);
    rc = end_grant(fd, g1.handle, &d);
    check(rc == 0 && d == 0, "end pages 0-3 (rc %d, deferred %u)", rc, d);
    info(fd, &t);
    rc = end_grant(fd, g1.handle, NULL);
    expect(fd, "end the same handle again", -ENOENT, rc, &t);
    rc = grant(fd, buf + 2 * PG, 2 * PG, peer, 0, refs, 64, &g1);
    check(rc == 0, "once 0-3 is ended, pages 2-3 can be granted to the same "
          "peer again (rc %d)", rc);
    if (!rc)
        end_grant(fd, g1.handle, NULL);
    end_grant(fd, g2.handle, NULL);
    end_grant(fd, g3.handle, NULL);
    end_grant(fd, g5.handle, NULL);

    /* shmem (memfd) can be granted read-write */
    {
        int mfd = (int)syscall(SYS_memfd_create, "kgrant", 0);
        void *m = MAP_FAILED;
        if (mfd >= 0 && ftruncate(mfd, 2 * PG) == 0)
            m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        rc = m != MAP_FAILED ? grant(fd, m, 2 * PG, peer, 0, refs, 64, &g1) : -errno;
        check(rc == 0, "read-write grant of shared memfd (shmem) pages (rc %d)", rc);
        if (!rc)
            end_grant(fd, g1.handle, NULL);
        if (m != MAP_FAILED)
            munmap(m, 2 * PG);
        if (mfd >= 0)
            close(mfd);
    }

    /* other file pages (ramfs): a long-term writable pin would bypass the
     * filesystem's dirty tracking, so read-write is refused; read-only is
     * fine */
    {
        char dir[] = "/kgrant-ramfs-XXXXXX", path[64];
        struct xenmpi_grant_info rb;
        int ffd = -1, mounted = 0;
        void *m = MAP_FAILED;

        if (mkdtemp(dir) && mount("none", dir, "ramfs", 0, NULL) == 0) {
            mounted = 1;
            snprintf(path, sizeof(path), "%s/f", dir);
            ffd = open(path, O_RDWR | O_CREAT, 0600);
        }
        if (ffd >= 0 && ftruncate(ffd, 2 * PG) == 0)
            m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0);
        if (m == MAP_FAILED) {
            check(0, "map 2 pages of a ramfs file at %s: %s", dir, strerror(errno));
        } else {
            memset(m, 0x33, 2 * PG);
            rc = info(fd, &rb);
            if (!rc)
                rc = grant(fd, m, 2 * PG, peer, 0, refs, 64, NULL);
            expect(fd, "read-write grant of a shared ramfs file mapping",
                   -EOPNOTSUPP, rc, &rb);
            rc = grant(fd, m, 2 * PG, peer, XENMPI_GRANT_READONLY, refs, 64, &g1);
            check(rc == 0 && g1.nr_refs == 2,
                  "read-only grant of the same ramfs pages (rc %d)", rc);
            if (!rc)
                end_grant(fd, g1.handle, NULL);
            munmap(m, 2 * PG);
        }
        if (ffd >= 0) {
            close(ffd);
            unlink(path);
        }
        if (mounted)
            umount(dir);
        rmdir(dir);
    }

    munmap(buf, 8 * PG);
    munmap(ro, 2 * PG);
    munmap(none, PG);
    munmap(hole, PG);
    munmap(hole + 2 * PG, PG);
    munmap(ro_refs, PG);
}

/* ------------------------------------------------------------------ */
/* A: RLIMIT_MEMLOCK and the module limits */

static int drop_ipc_lock(void)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d))
        return -errno;
    d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    d[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
    d[CAP_IPC_LOCK / 32].inheritable &= ~(1u << (CAP_IPC_LOCK % 32));
    return syscall(SYS_capset, &h, d) ? -errno : 0;
}

/* In a child: without CAP_IPC_LOCK and with RLIMIT_MEMLOCK = 4 pages. */
static int memlock_child(void)
{
    struct rlimit rl = { 4 * PG, 4 * PG };
    struct xenmpi_grant_info in, in2;
    struct xenmpi_grant_req g;
    uint32_t refs[8];
    uint8_t *buf = pages_map(8, PROT_READ | PROT_WRITE);
    int fd, rc, bad = 0;

    xdom.role = 'm';
    xdom.fails = xdom.passes = 0;
    if (!buf || drop_ipc_lock() || setrlimit(RLIMIT_MEMLOCK, &rl)) {
        check(0, "drop CAP_IPC_LOCK and set RLIMIT_MEMLOCK to 4 pages");
        return 1;
    }
    fill(buf, 3, 8);
    fd = dev_open();
    if (fd < 0 || info(fd, &in)) {
        check(0, "open %s: %s", XENMPI_GRANT_DEVICE, strerror(errno));
        return 1;
    }
    check(in.memlock_limit == 4 * PG, "info reports RLIMIT_MEMLOCK %llu",
          (unsigned long long)in.memlock_limit);
    rc = grant(fd, buf, 8 * PG, peer, 0, refs, 8, NULL);
    info(fd, &in2);
    bad |= !(rc == -ENOMEM && counters_equal(&in, &in2));
    check(rc == -ENOMEM && counters_equal(&in, &in2), "8 pages over a 4-page "
          "RLIMIT_MEMLOCK -> %s, counters unchanged", strerror(-rc));
    rc = grant(fd, buf, 4 * PG, peer, 0, refs, 8, &g);
    info(fd, &in2);
    bad |= !(rc == 0 && in2.mm_pinned_pages == in.mm_pinned_pages + 4);
    check(rc == 0 && in2.mm_pinned_pages == in.mm_pinned_pages + 4,
          "4 pages fit (rc %d), pinned_vm %llu", rc,
          (unsigned long long)in2.mm_pinned_pages);
    rc = grant(fd, buf + 4 * PG, PG, peer, 0, refs, 8, NULL);
    bad |= rc != -ENOMEM;
    check(rc == -ENOMEM, "a 5th page -> %s", strerror(-rc));
    rc = end_grant(fd, g.handle, NULL);
    info(fd, &in2);
    bad |= !(rc == 0 && in2.mm_pinned_pages == in.mm_pinned_pages);
    check(rc == 0 && in2.mm_pinned_pages == in.mm_pinned_pages,
          "ending returns the pages to the limit (pinned_vm %llu)",
          (unsigned long long)in2.mm_pinned_pages);
    rc = grant(fd, buf + 4 * PG, 4 * PG, peer, 0, refs, 8, &g);
    bad |= rc != 0;
    check(rc == 0, "then 4 other pages fit again (rc %d)", rc);
    close(fd);
    return bad || xdom.fails;
}

static void a_limits(int fd)
{
    struct xenmpi_grant_info b, t;
    struct xenmpi_grant_req g1, g2;
    uint32_t refs[16];
    uint8_t *buf = pages_map(16, PROT_READ | PROT_WRITE);
    long old_file = get_param("max_pages_per_file"), old_all = get_param("max_pages");
    long old_dom = get_param("max_pages_per_domain");
    int rc, st = -1;

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(memlock_child());
    waitpid(pid, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "RLIMIT_MEMLOCK is enforced "
          "for a process without CAP_IPC_LOCK (child status %d)", st);
    info(fd, &t);
    check(all_zero(&t), "the child's exit left nothing: %s", counters(&t));

    check(old_file > 0 && old_all > 0, "module parameters readable: "
          "max_pages_per_file %ld, max_pages %ld", old_file, old_all);
    if (!buf || old_file <= 0 || old_all <= 0)
        return;
    fill(buf, 4, 16);
    rc = set_param("max_pages_per_file", 6);
    check(rc == 0, "set max_pages_per_file = 6 (rc %d)", rc);
    info(fd, &b);
    check(b.max_pages_per_file == 6, "info reports it (%u)", b.max_pages_per_file);
    rc = grant(fd, buf, 7 * PG, peer, 0, refs, 16, NULL);
    expect(fd, "7 pages with a 6-page file limit", -E2BIG, rc, &b);
    rc = grant(fd, buf, 4 * PG, peer, 0, refs, 16, &g1);
    check(rc == 0, "4 pages (rc %d)", rc);
    info(fd, &t);
    rc = grant(fd, buf + 4 * PG, 4 * PG, peer, 0, refs, 16, NULL);
    expect(fd, "4 more pages: 8 > 6", -EDQUOT, rc, &t);
    rc = grant(fd, buf + 4 * PG, 2 * PG, peer, XENMPI_GRANT_DIRECTORY, NULL, 0, NULL);
    expect(fd, "2 pages + 1 directory page: 7 > 6", -EDQUOT, rc, &t);
    rc = grant(fd, buf + 4 * PG, 2 * PG, peer, 0, refs, 16, &g2);
    check(rc == 0, "2 pages: exactly 6 (rc %d)", rc);
    end_grant(fd, g1.handle, NULL);
    end_grant(fd, g2.handle, NULL);
    set_param("max_pages_per_file", (unsigned long)old_file);

    rc = set_param("max_pages", 6);
    check(rc == 0, "set max_pages = 6 (rc %d)", rc);
    int fd2 = dev_open();
    rc = grant(fd, buf, 4 * PG, peer, 0, refs, 16, &g1);
    check(rc == 0 && fd2 >= 0, "file 1: 4 pages (rc %d)", rc);
    info(fd, &t);
    rc = grant(fd2, buf + 8 * PG, 4 * PG, peer, 0, refs, 16, NULL);
    expect(fd, "file 2: 4 pages: 8 > 6 in total", -EDQUOT, rc, &t);
    rc = grant(fd2, buf + 8 * PG, 2 * PG, peer, 0, refs, 16, NULL);
    check(rc == 0, "file 2: 2 pages fit (rc %d)", rc);
    close(fd2); /* ends its grant */
    end_grant(fd, g1.handle, NULL);
    set_param("max_pages", (unsigned long)old_all);

    /* one peer domain's share: both files to the peer count together,
     * dom0 (another domain) has a share of its own */
    check(old_dom > 0, "max_pages_per_domain readable (%ld)", old_dom);
    rc = set_param("max_pages_per_domain", 6);
    check(rc == 0, "set max_pages_per_domain = 6 (rc %d)", rc);
    fd2 = dev_open();
    rc = grant(fd, buf, 4 * PG, peer, 0, refs, 16, &g1);
    check(rc == 0 && fd2 >= 0, "file 1: 4 pages to the peer (rc %d)", rc);
    info(fd, &t);
    rc = grant(fd2, buf + 8 * PG, 4 * PG, peer, 0, refs, 16, NULL);
    expect(fd, "file 2: 4 more pages to the peer: 8 > 6 for that domain", -EDQUOT, rc, &t);
    rc = grant(fd2, buf + 8 * PG, 4 * PG, 0, 0, refs, 16, NULL);
    check(rc == 0, "file 2: 4 pages to dom0 fit (rc %d)", rc);
    rc = grant(fd2, buf + 12 * PG, 2 * PG, peer, 0, refs, 16, NULL);
    check(rc == 0, "file 2: 2 pages to the peer: exactly 6 (rc %d)", rc);
    close(fd2);
    end_grant(fd, g1.handle, NULL);
    set_param("max_pages_per_domain", (unsigned long)old_dom);
    info(fd, &t);
    check(all_zero(&t) && t.max_pages == old_all &&
          t.max_pages_per_file == old_file, "limits restored, counters zero: %s",
          counters(&t));
    munmap(buf, 16 * PG);
}

/* Grant 1024-page ranges until the module refuses for the grant table (the
 * domUs run with max_grant_frames = 32, 16384 refs, see run.sh; the
 * module's own page limits are lifted above that for the time of the
 * test, so the table is what refuses).  The one that does not fit fails
 * with ENOSPC, leaves every counter as it was, and gives back the refs it
 * had taken: after ending one range, the same request fits.  The module
 * leaves table_reserve refs free: with the module refused, gntalloc still
 * shares EX_GNTALLOC pages (without the reserve it would meet a full table,
 * which on Linux 6.1 leaves gntalloc unable to share until reboot). */
#define EX_STEP 1024u
#define EX_MAX 17u          /* 16 ranges overflow 16384 refs */
#define EX_RESERVE 2048u
#define EX_GNTALLOC 512u
static void a_exhaust(int fd)
{
    static const char *const lim[] = { "max_pages_per_file", "max_pages",
                                       "max_pages_per_domain", "table_reserve" };
    const unsigned long want[] = { EX_STEP * (EX_MAX + 1), EX_STEP * (EX_MAX + 1),
                                   EX_STEP * (EX_MAX + 1), EX_RESERVE };
    long old[4];
    struct xenmpi_grant_req g[EX_MAX];
    struct xenmpi_grant_info b, t;
    uint32_t *refs = calloc(EX_STEP, sizeof(uint32_t));
    uint8_t *buf = pages_map(EX_STEP * EX_MAX, PROT_READ | PROT_WRITE);
    void *shared = NULL;
    unsigned n = 0, i;
    int rc = 0;

    if (!refs || !buf) {
        check(0, "buffers for the grant table exhaustion");
        free(refs);
        return;
    }
    for (i = 0; i < 4; i++) {
        old[i] = get_param(lim[i]);
        rc = set_param(lim[i], want[i]);
        check(old[i] >= 0 && rc == 0, "%s %ld set to %lu for the exhaustion (rc %d)",
              lim[i], old[i], want[i], rc);
    }
    memset(buf, 0x5a, (size_t)EX_STEP * EX_MAX * PG);
    for (; n < EX_MAX; n++) {
        info(fd, &b);
        rc = grant(fd, buf + (size_t)n * EX_STEP * PG, (uint64_t)EX_STEP * PG,
                   peer, XENMPI_GRANT_READONLY, refs, EX_STEP, &g[n]);
        if (rc)
            break;
    }
    expect(fd, "grant table full up to table_reserve", -ENOSPC, rc, &b);
    check(n >= 1 && n < EX_MAX, "%u ranges of %u pages fit before it",
          n, EX_STEP);
    {
        uint32_t *srefs = calloc(EX_GNTALLOC, sizeof(uint32_t));
        rc = srefs ? xm_hv_share(hv, peer, EX_GNTALLOC, 0, -1, -1, &shared, srefs) : -ENOMEM;
        check(rc == 0, "with the module refused, gntalloc still shares %u pages "
              "(table_reserve %u left free) (rc %d)", EX_GNTALLOC, EX_RESERVE, rc);
        if (rc == 0)
            xm_hv_unshare(hv, shared, EX_GNTALLOC);
        free(srefs);
    }
    if (n >= 1) {
        end_grant(fd, g[n - 1].handle, NULL);
        rc = grant(fd, buf + (size_t)n * EX_STEP * PG, (uint64_t)EX_STEP * PG,
                   peer, XENMPI_GRANT_READONLY, refs, EX_STEP, &g[n - 1]);
        check(rc == 0, "after ending one, the refused range fits (rc %d): "
              "the refused call returned what it took", rc);
        if (rc)
            n--;
    }
    while (n)
        end_grant(fd, g[--n].handle, NULL);
    for (i = 0; i < 4; i++)
        if (old[i] >= 0)
            set_param(lim[i], (unsigned long)old[i]);
    info(fd, &t);
    check(all_zero(&t), "all ended: %s", counters(&t));
    munmap(buf, (size_t)EX_STEP * EX_MAX * PG);
    free(refs);
}

/* ------------------------------------------------------------------ */
/* B: reading a grant directory (hostile data: checked before use) */

static int b_read_dir(uint32_t dref, uint32_t nr_pages, uint16_t flags,
                      uint32_t *out)
{
    struct xenmpi_grant_dir root;
    xm_copy_seg_t s = { &root, peer, dref, 0, PG, XM_COPY_FROM_FOREIGN, 1 };
    int rc = xm_hv_copy(hv, &s, 1);
    if (rc) {
        note("copy of directory root ref %u: %s", dref, strerror(-rc));
        return rc;
    }
    uint32_t leaves = xenmpi_grant_dir_leaves(nr_pages);
    if (root.magic != XENMPI_GRANT_DIR_MAGIC ||
        root.version != XENMPI_GRANT_DIR_VERSION || root.flags != flags ||
        root.nr_pages != nr_pages || root.nr_leaves != leaves ||
        root.len != (uint64_t)nr_pages * PG || root.reserved) {
        note("directory header: magic %#x version %u flags %u pages %u "
             "leaves %u len %llu", root.magic, root.version, root.flags,
             root.nr_pages, root.nr_leaves, (unsigned long long)root.len);
        return -EPROTO;
    }
    if (!leaves) {
        memcpy(out, root.refs, nr_pages * sizeof(uint32_t));
        return 0;
    }
    for (uint32_t l = 0; l < leaves; l++) {
        uint32_t leaf[XENMPI_GRANT_DIR_LEAF_REFS];
        xm_copy_seg_t t = { leaf, peer, root.refs[l], 0, PG,
                            XM_COPY_FROM_FOREIGN, 1 };
        rc = xm_hv_copy(hv, &t, 1);
        if (rc)
            return rc;
        uint32_t first = l * XENMPI_GRANT_DIR_LEAF_REFS;
        uint32_t n = nr_pages - first < XENMPI_GRANT_DIR_LEAF_REFS
                         ? nr_pages - first : XENMPI_GRANT_DIR_LEAF_REFS;
        memcpy(out + first, leaf, n * sizeof(uint32_t));
    }
    return 0;
}

/* Copy n pages by ref into buf; 0 when every segment succeeded. */
static int b_copy_in(const uint32_t *refs, unsigned n, uint8_t *buf)
{
    xm_copy_seg_t *s = calloc(n, sizeof(*s));
    if (!s)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        s[i].local = buf + (size_t)i * PG;
        s[i].domid = peer;
        s[i].ref = refs[i];
        s[i].len = PG;
        s[i].dir = XM_COPY_FROM_FOREIGN;
    }
    int rc = xm_hv_copy(hv, s, n);
    free(s);
    return rc;
}

static int b_copy_byte(uint32_t ref, int to)
{
    uint8_t x = 0x5a;
    xm_copy_seg_t s = { &x, peer, ref, 0, 1,
                        to ? XM_COPY_TO_FOREIGN : XM_COPY_FROM_FOREIGN, 1 };
    return xm_hv_copy(hv, &s, 1);
}

static int parse_refs(const char *v, uint32_t *refs, unsigned n)
{
    unsigned i = 0;
    const char *p = v;
    char *e;
    while (v && i < n) {
        unsigned long x = strtoul(p, &e, 10);
        if (e == p)
            break;
        refs[i++] = (uint32_t)x;
        p = e;
    }
    return i == n ? 0 : -1;
}

static void refs_str(char *buf, size_t len, const uint32_t *refs, unsigned n)
{
    size_t o = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < n && o < len; i++)
        o += snprintf(buf + o, len - o, "%s%u", i ? " " : "", refs[i]);
}

/* ------------------------------------------------------------------ */

#define RW_PAGES 3
#define RO_PAGES 2
#define BIG_PAGES 1500 /* > DIR_ROOT_REFS: a two-level directory */
#define MARK "B wrote this through its mapping"
#define MARK_OFF 100
#define COPY_OFF 2048
#define COPY_LEN 300
static uint8_t copy_pat(unsigned i) { return (uint8_t)(0xc3u ^ (i * 13u)); }

static int xm_delete_module(const char *name)
{
    return syscall(SYS_delete_module, name, O_NONBLOCK) ? -errno : 0;
}

/* ------------------------------------------------------------------ */
/* A: stale grants (XENMPI_IOC_STALE) */

static int stale(int fd, uint64_t *h, uint32_t max, uint32_t *nr, uint32_t *more)
{
    struct xenmpi_grant_stale q;
    memset(&q, 0, sizeof(q));
    q.size = sizeof(q);
    q.max = max;
    q.handles = (uintptr_t)h;
    int rc = ioctl(fd, XENMPI_IOC_STALE, &q) ? -errno : 0;
    *nr = q.nr;
    *more = q.more;
    return rc;
}

/* Memory events in granted ranges: write protection (mprotect, fork) is
 * not stale; madvise(DONTNEED) and munmap are, each reported once; bad
 * calls fail and report nothing. */
static void a_stale(int fd)
{
    struct xenmpi_grant_req g1, g2;
    uint64_t h[4] = { 0 };
    uint32_t refs[4], nr = 9, more = 9;
    uint8_t *p = pages_map(4, PROT_READ | PROT_WRITE);
    uint8_t *q = pages_map(2, PROT_READ | PROT_WRITE);
    int rc;

    if (!p || !q) {
        check(0, "stale: mmap buffers");
        return;
    }
    fill(p, 20, 4);
    fill(q, 21, 2);
    rc = grant(fd, p, 4 * PG, peer, XENMPI_GRANT_READONLY, refs, 4, &g1);
    rc = rc ? rc : grant(fd, q, 2 * PG, peer, XENMPI_GRANT_READONLY, refs, 4, &g2);
    check(rc == 0, "stale: grant two buffers (rc %d)", rc);
    rc = stale(fd, h, 4, &nr, &more);
    check(rc == 0 && nr == 0 && more == 0, "stale: none after granting (rc %d, nr %u)",
          rc, nr);
    rc = mprotect(p, 4 * PG, PROT_READ) || mprotect(p, 4 * PG, PROT_READ | PROT_WRITE)
             ? -errno : 0;
    pid_t c = rc ? -1 : fork();
    if (c == 0)
        _exit(p[5] == pat(20, 0, 5) ? 0 : 1);
    int st = -1;
    if (c > 0)
        waitpid(c, &st, 0);
    rc = rc ? rc : stale(fd, h, 4, &nr, &more);
    check(rc == 0 && nr == 0 && c > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "stale: mprotect and a fork are not memory changes (rc %d, nr %u)", rc, nr);
    /* bad calls: nothing is reported by them */
    struct xenmpi_grant_stale bad;
    madvise(p + PG, PG, MADV_DONTNEED);
    memset(&bad, 0, sizeof(bad));
    bad.size = sizeof(bad) - 8;
    bad.max = 4;
    bad.handles = (uintptr_t)h;
    rc = ioctl(fd, XENMPI_IOC_STALE, &bad) ? -errno : 0;
    check(rc == -EINVAL, "stale: wrong size -> %s", strerror(-rc));
    rc = stale(fd, h, XENMPI_GRANT_STALE_MAX + 1, &nr, &more);
    check(rc == -EINVAL, "stale: max over %u -> %s", XENMPI_GRANT_STALE_MAX, strerror(-rc));
    rc = stale(fd, NULL, 4, &nr, &more);
    check(rc == -EFAULT, "stale: no handle buffer -> %s", strerror(-rc));
    rc = stale(fd, (uint64_t *)(uintptr_t)8, 4, &nr, &more);
    check(rc == -EFAULT, "stale: unwritable handle buffer -> %s", strerror(-rc));
    h[0] = 0;
    rc = stale(fd, h, 4, &nr, &more);
    check(rc == 0 && nr == 1 && more == 0 && h[0] == g1.handle,
          "stale: madvise(DONTNEED) of one page makes that grant stale, reported "
          "after the failed calls (rc %d, nr %u, handle %llu, want %llu)", rc, nr,
          (unsigned long long)h[0], (unsigned long long)g1.handle);
    rc = stale(fd, h, 4, &nr, &more);
    check(rc == 0 && nr == 0, "stale: reported once (rc %d, nr %u)", rc, nr);
    munmap(q, 2 * PG);
    madvise(p, PG, MADV_DONTNEED);   /* the stale one again: told already */
    h[0] = 0;
    rc = stale(fd, h, 1, &nr, &more);
    check(rc == 0 && nr == 1 && more == 0 && h[0] == g2.handle,
          "stale: munmap makes the other stale (rc %d, nr %u, handle %llu)", rc, nr,
          (unsigned long long)h[0]);
    rc = end_grant(fd, g1.handle, NULL);
    rc = rc ? rc : end_grant(fd, g2.handle, NULL);
    check(rc == 0, "stale: stale grants end (rc %d)", rc);
    munmap(p, 4 * PG);
    rc = stale(fd, h, 4, &nr, &more);
    check(rc == 0 && nr == 0, "stale: an ended grant is not watched (rc %d, nr %u)", rc, nr);
}

static int run_a(void)
{
    struct xenmpi_grant_info in, t;
    struct xenmpi_grant_req grw, gro, gbig;
    uint32_t rw_refs[RW_PAGES], ro_refs[RO_PAGES];
    char s[256];
    int fd, rc;

    xm_store_remove(hv, xdom.home);
    rc = xm_store_write(hv, xdom.home, "", 0);
    xm_store_perm_t perms[2] = { { self, XM_PERM_NONE }, { peer, XM_PERM_READ } };
    rc = rc ? rc : xm_store_set_perms(hv, xdom.home, perms, 2);
    rc = rc ? rc : xdom_put("inbox", "%s", "");
    {
        char p[XM_STORE_MAX_PATH];
        xm_store_perm_t ib[2] = { { self, XM_PERM_NONE }, { peer, XM_PERM_BOTH } };
        xdom_path(p, "inbox");
        rc = rc ? rc : xm_store_set_perms(hv, p, ib, 2);
    }
    check(rc == 0, "create %s readable by %u with an inbox it may write (rc %d)",
          xdom.home, peer, rc);

    fd = dev_open();
    check(fd >= 0, "open %s (%s)", XENMPI_GRANT_DEVICE,
          fd >= 0 ? "ok" : strerror(errno));
    if (fd < 0) {
        show_dmesg();
        xdom_put("a", "abort");
        return 1;
    }
    a_bad_input(fd);
    a_limits(fd);
    a_exhaust(fd);
    a_stale(fd);
    info(fd, &in);
    check(all_zero(&in), "after the hostile input: %s", counters(&in));

    /* ---- data path ---- */
    uint8_t *rw = pages_map(RW_PAGES, PROT_READ | PROT_WRITE);
    uint8_t *ro = pages_map(RO_PAGES, PROT_READ | PROT_WRITE);
    uint8_t *big = pages_map(BIG_PAGES, PROT_READ | PROT_WRITE);
    if (!rw || !ro || !big) {
        check(0, "mmap buffers");
        xdom_put("a", "abort");
        return 1;
    }
    fill(rw, 10, RW_PAGES);
    fill(ro, 11, RO_PAGES);
    fill(big, 12, BIG_PAGES);
    rc = grant(fd, rw, RW_PAGES * PG, peer, 0, rw_refs, RW_PAGES, &grw);
    check(rc == 0, "grant %u pages read-write to domain %u (rc %d)", RW_PAGES,
          peer, rc);
    rc = grant(fd, ro, RO_PAGES * PG, peer,
               XENMPI_GRANT_READONLY | XENMPI_GRANT_DIRECTORY, ro_refs,
               RO_PAGES, &gro);
    check(rc == 0 && gro.nr_dir_pages == 1, "grant %u pages read-only with a "
          "one-page directory (rc %d, dir ref %u)", RO_PAGES, rc, gro.dir_ref);
    rc = grant(fd, big, (uint64_t)BIG_PAGES * PG, peer, XENMPI_GRANT_DIRECTORY,
               NULL, 0, &gbig);
    check(rc == 0 && gbig.nr_pages == BIG_PAGES &&
          gbig.nr_dir_pages == 1 + xenmpi_grant_dir_leaves(BIG_PAGES),
          "grant %u pages read-write through a directory of %u pages, one "
          "ref (%u) (rc %d)", BIG_PAGES, gbig.nr_dir_pages, gbig.dir_ref, rc);
    info(fd, &t);
    check(t.file_grants == 3 && t.file_pages == RW_PAGES + RO_PAGES + BIG_PAGES &&
          t.file_dir_pages == 1 + gbig.nr_dir_pages &&
          t.mm_pinned_pages >= RW_PAGES + RO_PAGES + BIG_PAGES,
          "counters: %s", counters(&t));
    refs_str(s, sizeof(s), rw_refs, RW_PAGES);
    xdom_put("rw", "%s", s);
    refs_str(s, sizeof(s), ro_refs, RO_PAGES);
    xdom_put("ro", "%s", s);
    xdom_put("ro_dir", "%u", gro.dir_ref);
    xdom_put("big_dir", "%u", gbig.dir_ref);
    xdom_put("a", "granted");

    /* B's own grant, copied here */
    char *v = wait_node("inbox", "b-granted ");
    uint32_t bref = 0;
    check(v && sscanf(v, "b-granted %u", &bref) == 1, "B granted a page of "
          "its own: %s", v ? v : "(timeout)");
    free(v);
    {
        uint8_t page[PG];
        xm_copy_seg_t cs = { page, peer, bref, 0, PG, XM_COPY_FROM_FOREIGN, 1 };
        rc = xm_hv_copy(hv, &cs, 1);
        check(rc == 0 && same(page, 20, 0), "grant copy of B's page has B's "
              "content (rc %d)", rc);
    }
    xdom_put("a", "copied-b");

    v = wait_node("inbox", "b-checked ");
    check(v != NULL, "B checked the grants: %s", v ? v : "(timeout)");
    free(v);
    check(!memcmp(rw + MARK_OFF, MARK, sizeof(MARK)),
          "B's write through its mapping is in A's own buffer");
    {
        int ok = 1;
        for (unsigned i = 0; i < COPY_LEN; i++)
            ok &= rw[2 * PG + COPY_OFF + i] == copy_pat(i);
        check(ok, "B's grant copy into rw page 2 is in A's own buffer");
        check(big[(size_t)(BIG_PAGES - 1) * PG] == 0x5a &&
              same(big, 12, 0), "B's grant copy through the directory reached "
              "the last page of A's big buffer");
        check(same(ro, 11, 0) && same(ro + PG, 11, 1), "read-only pages "
              "unchanged by B's attempts to write them");
    }

    /* ---- ending: refs fail afterwards ---- */
    uint32_t d = 99;
    rc = end_grant(fd, gro.handle, &d);
    check(rc == 0 && d == 0, "end the read-only grant (B only copied): "
          "immediate (rc %d, deferred %u)", rc, d);
    rc = end_grant(fd, gbig.handle, &d);
    check(rc == 0 && d == 0, "end the directory grant: immediate (rc %d, "
          "deferred %u)", rc, d);
    rc = end_grant(fd, gro.handle, NULL);
    check(rc == -ENOENT, "ending it again -> %s", strerror(-rc));
    info(fd, &t);
    check(t.file_grants == 1 && t.file_pages == RW_PAGES && !t.file_dir_pages &&
          !t.total_deferred_refs, "counters: %s", counters(&t));
    xdom_put("a", "ended-1");
    check(wait_step("inbox", "b-ended-1"), "B saw the ended refs fail");

    /* ---- ending while B maps: deferred, pages kept ---- */
    uint64_t done0 = t.total_deferred_done;
    rc = end_grant(fd, grw.handle, &d);
    check(rc == 0 && d == RW_PAGES, "end the read-write grant B still maps: "
          "%u refs deferred (rc %d)", d, rc);
    info(fd, &t);
    check(!t.file_grants && t.file_pages == RW_PAGES &&
          t.file_deferred_refs == RW_PAGES && t.total_deferred_refs == RW_PAGES,
          "pages stay pinned while deferred: %s", counters(&t));
    rc = end_grant(fd, grw.handle, NULL);
    check(rc == -ENOENT, "its handle is gone all the same (%s)", strerror(-rc));
    munmap(rw, RW_PAGES * PG);
    {
        /* churn: freed pages would be reused and overwritten now */
        size_t n = 48u << 20;
        uint8_t *c = mmap(NULL, n, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c != MAP_FAILED) {
            memset(c, 0xee, n);
            munmap(c, n);
        }
    }
    usleep(3 * 100000 * 3); /* several retry periods */
    info(fd, &t);
    check(t.total_deferred_refs == RW_PAGES && t.total_pages == RW_PAGES,
          "after munmap and 48 MiB of churn, still deferred: %s", counters(&t));
    xdom_put("a", "ended-rw");
    check(wait_step("inbox", "b-unmapped"), "B unmapped the pages");
    rc = wait_zero(fd, &t, 30000);
    check(rc && t.total_deferred_done == done0 + RW_PAGES && !t.file_pages,
          "the deferred end completed after B unmapped: %s", counters(&t));
    xdom_put("a", "released");
    check(wait_step("inbox", "b-released"), "B saw those refs fail");

    /* ---- a process killed with outstanding grants ---- */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        xdom.role = 'c';
        if (xm_hv_open(&hv)) /* never share the parent's store connection */
            _exit(3);
        xdom.hv = hv;
        uint8_t *cb = pages_map(8, PROT_READ | PROT_WRITE);
        uint32_t crefs[8];
        struct xenmpi_grant_req cg;
        int cfd = dev_open();
        if (!cb || cfd < 0)
            _exit(1);
        fill(cb, 30, 8);
        if (grant(cfd, cb, 4 * PG, peer, 0, crefs, 8, &cg) ||
            grant(cfd, cb + 4 * PG, 3 * PG, peer, XENMPI_GRANT_DIRECTORY,
                  NULL, 0, &cg) ||
            grant(cfd, cb + 7 * PG, PG, peer, 0, crefs + 4, 4, &cg))
            _exit(2);
        xdom_put("child", "%u %u", crefs[0], crefs[4]);
        for (;;)
            pause();
    }
    v = wait_node("child", "");
    check(pid > 0 && v != NULL, "a child granted 3 ranges (8 pages, one "
          "directory): refs %s", v ? v : "(none)");
    free(v);
    xdom_put("a", "child-granted");
    check(wait_step("inbox", "b-child-mapped"), "B maps one of the child's pages");
    info(fd, &t);
    check(t.total_grants == 3 && t.total_pages == 8 && t.total_dir_pages == 1,
          "the child's grants counted module-wide: %s", counters(&t));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    usleep(300000);
    info(fd, &t);
    check(!t.total_grants && t.total_pages == 1 && !t.total_dir_pages &&
          t.total_deferred_refs == 1, "child killed: everything ended but "
          "the page B maps (deferred): %s", counters(&t));
    close(fd);
    /* busy: EWOULDBLOCK with O_NONBLOCK (EBUSY on kernels before 3.x) */
    rc = xm_delete_module(MODNAME);
    check(rc == -EWOULDBLOCK || rc == -EBUSY, "rmmod while a peer maps a "
          "pinned page is refused (%s)", rc ? strerror(-rc) : "unloaded!");
    fd = dev_open();
    if (fd < 0) {
        check(0, "reopen %s: %s", XENMPI_GRANT_DEVICE, strerror(errno));
        xdom_put("a", "abort");
        return 1;
    }
    xdom_put("a", "child-killed");
    check(wait_step("inbox", "b-child-unmapped"), "B unmapped the dead child's page");
    rc = wait_zero(fd, &t, 30000);
    check(rc, "all counters back to zero: %s", counters(&t));
    xdom_put("a", "child-released");
    check(wait_step("inbox", "b-child-released"), "B saw the dead child's "
          "refs fail");

    /* ---- unload and reload ---- */
    close(fd);
    rc = xm_delete_module(MODNAME);
    check(rc == 0 && access(XENMPI_GRANT_DEVICE, F_OK) != 0,
          "rmmod with nothing outstanding unloads it (rc %d)", rc);
    {
        struct utsname u;
        char ko[300];
        uname(&u);
        snprintf(ko, sizeof(ko), "/lib/modules/%s/extra/" MODNAME ".ko", u.release);
        int kfd = open(ko, O_RDONLY | O_CLOEXEC);
        rc = kfd >= 0 ? (syscall(SYS_finit_module, kfd, "", 0) ? -errno : 0) : -errno;
        if (kfd >= 0)
            close(kfd);
        fd = rc ? -1 : dev_open();
        check(rc == 0 && fd >= 0 && info(fd, &t) == 0 && all_zero(&t) &&
              t.total_granted == 0, "insmod %s again: device back, counters "
              "zero (rc %d)", ko, rc);
        if (fd >= 0)
            close(fd);
    }
    munmap(ro, RO_PAGES * PG);
    munmap(big, (size_t)BIG_PAGES * PG);
    if (xdom.fails)
        show_dmesg();
    xdom_put("a", "done");
    return 0;
}

static int run_b(void)
{
    struct xenmpi_grant_info in;
    uint32_t rw_refs[RW_PAGES], ro_refs[RO_PAGES], ro_dir, big_dir;
    uint32_t *big_refs = calloc(BIG_PAGES, sizeof(uint32_t));
    uint8_t *buf = malloc((size_t)BIG_PAGES * PG);
    char *v;
    int rc, fd;

    /* the module is loaded here too: B grants A a page of its own */
    fd = dev_open();
    check(fd >= 0 && info(fd, &in) == 0 && all_zero(&in), "open %s in domU B, "
          "counters zero (%s)", XENMPI_GRANT_DEVICE, fd >= 0 ? "ok" : strerror(errno));
    if (fd < 0)
        show_dmesg();

    v = wait_node("a", "granted");
    check(v != NULL, "A granted");
    free(v);
    if (!v || !big_refs || !buf)
        return 1;
    v = xdom_get("rw");
    check(parse_refs(v, rw_refs, RW_PAGES) == 0, "rw refs: %s", v ? v : "-");
    free(v);
    v = xdom_get("ro");
    check(parse_refs(v, ro_refs, RO_PAGES) == 0, "ro refs: %s", v ? v : "-");
    free(v);
    v = xdom_get("ro_dir");
    check(parse_refs(v, &ro_dir, 1) == 0, "ro dir ref: %s", v ? v : "-");
    free(v);
    v = xdom_get("big_dir");
    check(parse_refs(v, &big_dir, 1) == 0, "big dir ref: %s", v ? v : "-");
    free(v);

    uint8_t *bpage = pages_map(1, PROT_READ | PROT_WRITE);
    struct xenmpi_grant_req bg = { 0 };
    fill(bpage, 20, 1);
    rc = fd >= 0 ? grant(fd, bpage, PG, peer, XENMPI_GRANT_READONLY, ro_refs + 0,
                         0, &bg) : -EBADF;
    check(rc == -ENOBUFS, "B: refs array of 0 entries -> %s", strerror(-rc));
    uint32_t bref = XENMPI_GRANT_REF_INVALID;
    rc = fd >= 0 ? grant(fd, bpage, PG, peer, XENMPI_GRANT_READONLY, &bref, 1,
                         &bg) : -EBADF;
    check(rc == 0, "B grants one page read-only to A (ref %u, rc %d)", bref, rc);
    {
        char m[64];
        snprintf(m, sizeof(m), "b-granted %u", bref);
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, m, strlen(m));
    }
    check(wait_step("a", "copied-b"), "A copied B's page");

    /* read-write pages: copy, map, write */
    rc = b_copy_in(rw_refs, RW_PAGES, buf);
    check(rc == 0 && same(buf, 10, 0) && same(buf + PG, 10, 1) &&
          same(buf + 2 * PG, 10, 2), "grant copy of A's %u rw pages: A's "
          "user data (rc %d)", RW_PAGES, rc);
    void *map = NULL;
    rc = xm_hv_map(hv, peer, RW_PAGES, rw_refs, 1, -1, &map);
    check(rc == 0 && map, "map A's rw pages writable (rc %d)", rc);
    if (map) {
        uint8_t *m = map;
        check(same(m, 10, 0) && same(m + 2 * PG, 10, 2), "mapped content is "
              "A's user data");
        memcpy(m + MARK_OFF, MARK, sizeof(MARK));
    }
    {
        uint8_t c[COPY_LEN];
        for (unsigned i = 0; i < COPY_LEN; i++)
            c[i] = copy_pat(i);
        xm_copy_seg_t s = { c, peer, rw_refs[2], COPY_OFF, COPY_LEN,
                            XM_COPY_TO_FOREIGN, 1 };
        rc = xm_hv_copy(hv, &s, 1);
        check(rc == 0, "grant copy into A's rw page 2 (rc %d)", rc);
    }

    /* read-only pages and their directory */
    uint32_t dref[RO_PAGES];
    rc = b_read_dir(ro_dir, RO_PAGES, XENMPI_GRANT_READONLY, dref);
    check(rc == 0 && !memcmp(dref, ro_refs, sizeof(dref)), "one-page "
          "directory lists the same %u refs (rc %d)", RO_PAGES, rc);
    rc = b_copy_in(ro_refs, RO_PAGES, buf);
    check(rc == 0 && same(buf, 11, 0) && same(buf + PG, 11, 1),
          "grant copy of the ro pages (rc %d)", rc);
    void *bad = NULL;
    rc = xm_hv_map(hv, peer, 1, ro_refs, 1, -1, &bad);
    check(rc < 0 && !bad, "map of a ro page writable refused (rc %d)", rc);
    if (!rc)
        xm_hv_unmap(hv, bad, 1);
    rc = b_copy_byte(ro_refs[1], 1);
    check(rc < 0, "grant copy into a ro page refused (rc %d)", rc);
    rc = b_copy_byte(ro_dir, 1);
    check(rc < 0, "grant copy into the directory page refused (rc %d)", rc);

    /* the big one through its two-level directory */
    rc = b_read_dir(big_dir, BIG_PAGES, 0, big_refs);
    check(rc == 0, "two-level directory of %u pages read and validated (rc %d)",
          BIG_PAGES, rc);
    if (!rc) {
        rc = b_copy_in(big_refs, BIG_PAGES, buf);
        int ok = rc == 0;
        for (unsigned p = 0; ok && p < BIG_PAGES; p++)
            ok &= same(buf + (size_t)p * PG, 12, p);
        check(ok, "grant copy of all %u pages through the directory: A's data "
              "(rc %d)", BIG_PAGES, rc);
        rc = b_copy_byte(big_refs[BIG_PAGES - 1], 1);
        check(rc == 0, "grant copy into the last big page (rc %d)", rc);
    }
    {
        char p[XM_STORE_MAX_PATH], m[64];
        snprintf(m, sizeof(m), "b-checked %d", xdom.fails);
        xdom_path(p, "inbox");
        xm_store_write(hv, p, m, strlen(m));
    }

    /* ended grants: every ref fails */
    check(wait_step("a", "ended-1"), "A ended the ro and big grants");
    rc = b_copy_byte(ro_refs[0], 0);
    check(rc < 0, "copy from an ended ro ref fails (rc %d)", rc);
    rc = b_copy_byte(ro_dir, 0);
    check(rc < 0, "copy from an ended directory ref fails (rc %d)", rc);
    rc = b_copy_byte(big_dir, 0);
    check(rc < 0, "copy from the ended big root ref fails (rc %d)", rc);
    rc = b_copy_byte(big_refs[0], 0);
    int rc2 = b_copy_byte(big_refs[BIG_PAGES - 1], 0);
    check(rc < 0 && rc2 < 0, "copies from ended big data refs fail (rc %d %d)",
          rc, rc2);
    bad = NULL;
    rc = xm_hv_map(hv, peer, 1, ro_refs, 0, -1, &bad);
    check(rc < 0 && !bad, "map of an ended ref fails (rc %d)", rc);
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "b-ended-1", 9);
    }

    /* A ends the rw grant while we map it */
    check(wait_step("a", "ended-rw"), "A ended the rw grant, unmapped and "
          "churned its memory");
    if (map) {
        uint8_t *m = map;
        int ok = !memcmp(m + MARK_OFF, MARK, sizeof(MARK)) && same(m + PG, 10, 1);
        for (unsigned i = 0; i < COPY_LEN; i++)
            ok &= m[2 * PG + COPY_OFF + i] == copy_pat(i);
        check(ok, "the pages under our mapping were neither freed nor reused");
        rc = xm_hv_unmap(hv, map, RW_PAGES);
        check(rc == 0, "unmap them (rc %d)", rc);
    }
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "b-unmapped", 10);
    }
    check(wait_step("a", "released"), "A saw the deferred end complete");
    rc = b_copy_byte(rw_refs[0], 0);
    rc2 = b_copy_byte(rw_refs[2], 1);
    check(rc < 0 && rc2 < 0, "the completed refs fail now (rc %d %d)", rc, rc2);
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "b-released", 10);
    }

    /* a process killed with outstanding grants */
    check(wait_step("a", "child-granted"), "A's child granted");
    v = xdom_get("child");
    uint32_t cref[2] = { 0, 0 };
    check(v && sscanf(v, "%u %u", &cref[0], &cref[1]) == 2, "child refs %s",
          v ? v : "-");
    free(v);
    void *cmap = NULL;
    rc = xm_hv_map(hv, peer, 1, &cref[1], 0, -1, &cmap);
    check(rc == 0, "map the child's last page (rc %d)", rc);
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "b-child-mapped", 14);
    }
    check(wait_step("a", "child-killed"), "A killed its child");
    if (cmap) {
        check(same(cmap, 30, 7), "the dead child's page is intact under our "
              "mapping");
        rc = b_copy_byte(cref[0], 0);
        check(rc < 0, "the dead child's unmapped refs already fail (rc %d)", rc);
        xm_hv_unmap(hv, cmap, 1);
    }
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "b-child-unmapped", 16);
    }
    check(wait_step("a", "child-released"), "A's counters are back to zero");
    rc = b_copy_byte(cref[1], 0);
    check(rc < 0, "the page we mapped is ended too (rc %d)", rc);
    {
        char p[XM_STORE_MAX_PATH];
        xdom_path(p, "inbox");
        xm_store_write(hv, p, "b-child-released", 16);
    }

    check(wait_step("a", "done"), "A finished");
    if (fd >= 0) {
        uint32_t d = 99;
        rc = end_grant(fd, bg.handle, &d);
        check(rc == 0 && d == 0, "B ends its own grant (rc %d)", rc);
        check(info(fd, &in) == 0 && all_zero(&in), "B's counters zero: %s",
              counters(&in));
        close(fd);
    }
    free(big_refs);
    free(buf);
    if (xdom.fails)
        show_dmesg();
    return 0;
}

int main(int argc, char **argv)
{
    int rc;

    if (argc != 3 || (strcmp(argv[1], "a") && strcmp(argv[1], "b"))) {
        fprintf(stderr, "usage: %s a|b <peer domid>\n", argv[0]);
        return 2;
    }
    xdom.prog = "kgrant";
    xdom.role = argv[1][0];
    peer = (uint32_t)strtoul(argv[2], NULL, 10);
    setenv("XENMPI_BACKEND", "xen", 0);
    setvbuf(stdout, NULL, _IOLBF, 0);

    rc = xm_hv_open(&hv);
    check(rc == 0, "open the xen backend (rc %d)", rc);
    if (rc)
        return 1;
    xdom.hv = hv;
    self = xm_hv_domid(hv);
    check(self != XM_DOMID_INVALID && self != peer, "own domid %u, peer %u",
          self, peer);
    snprintf(xdom.home, sizeof(xdom.home), "/local/domain/%u/xenmpi-test/kgrant",
             xdom.role == 'a' ? self : peer);

    rc = xdom.role == 'a' ? run_a() : run_b();
    if (rc)
        check(0, "stopped early");
    xm_hv_close(hv);
    return xdom_result();
}
