/*
 * uapi_check.c - the module's user API header as user space sees it.
 *
 * Built with -std=c11 -pedantic -Werror and the header included first, so
 * it must stand alone; its static asserts pin every offset at compile time.
 * At run time: the directory helper's arithmetic at the boundaries, and the
 * ioctl numbers carry the struct sizes and the read-write direction.
 * Prints one PASS/FAIL line per check; exit status 0 only if all passed.
 */
#include "../../kernel/uapi/xenmpi_grant.h"

#include <stdio.h>

static int fails;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "PASS" : "FAIL", what);
    fails += !ok;
}

int main(void)
{
    check(XENMPI_GRANT_DIR_ROOT_REFS == 1016 && XENMPI_GRANT_DIR_LEAF_REFS == 1024,
          "kernel/uapi: directory holds 1016 refs in the root, 1024 per leaf");
    check(xenmpi_grant_dir_leaves(1) == 0 && xenmpi_grant_dir_leaves(1016) == 0 &&
          xenmpi_grant_dir_leaves(1017) == 1 && xenmpi_grant_dir_leaves(1024) == 1 &&
          xenmpi_grant_dir_leaves(1025) == 2 && xenmpi_grant_dir_leaves(1500) == 2 &&
          xenmpi_grant_dir_leaves(XENMPI_GRANT_DIR_MAX_PAGES) ==
              XENMPI_GRANT_DIR_ROOT_REFS,
          "kernel/uapi: leaves per directory size at the boundaries");
    check(_IOC_SIZE(XENMPI_IOC_GRANT) == sizeof(struct xenmpi_grant_req) &&
          _IOC_SIZE(XENMPI_IOC_END) == sizeof(struct xenmpi_grant_end) &&
          _IOC_SIZE(XENMPI_IOC_INFO) == sizeof(struct xenmpi_grant_info) &&
          _IOC_SIZE(XENMPI_IOC_STALE) == sizeof(struct xenmpi_grant_stale),
          "kernel/uapi: ioctl numbers encode the struct sizes");
    check(_IOC_DIR(XENMPI_IOC_GRANT) == (_IOC_READ | _IOC_WRITE) &&
          _IOC_TYPE(XENMPI_IOC_INFO) == XENMPI_GRANT_IOC_MAGIC &&
          _IOC_DIR(XENMPI_IOC_STALE) == (_IOC_READ | _IOC_WRITE) &&
          XENMPI_IOC_GRANT != XENMPI_IOC_END && XENMPI_IOC_END != XENMPI_IOC_INFO &&
          XENMPI_IOC_INFO != XENMPI_IOC_STALE,
          "kernel/uapi: _IOWR with the module's own magic, distinct numbers");
    return fails ? 1 : 0;
}
