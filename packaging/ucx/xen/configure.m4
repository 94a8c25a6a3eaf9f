#
# The xen transport: MPI between Xen guests of one host through grant-table
# shared memory and event channels.  Needs libxenmpi (Debian: libxenmpi-dev).
#

xen_happy="no"

AC_ARG_WITH([xen],
            [AS_HELP_STRING([--with-xen=(DIR)],
                            [Enable the xen transport, built against libxenmpi
                             under DIR (default is guess).])],
            [], [with_xen=guess])

AS_IF([test "x$with_xen" != xno],
      [AS_IF([test "x$with_xen" = xguess -o "x$with_xen" = xyes -o "x$with_xen" = x],
             [XENMPI_CPPFLAGS="" XENMPI_LDFLAGS=""],
             [XENMPI_CPPFLAGS="-I$with_xen/include" XENMPI_LDFLAGS="-L$with_xen/lib"])

       save_CPPFLAGS="$CPPFLAGS"
       save_LDFLAGS="$LDFLAGS"
       CPPFLAGS="$XENMPI_CPPFLAGS $CPPFLAGS"
       LDFLAGS="$XENMPI_LDFLAGS $LDFLAGS"

       AC_CHECK_HEADER([xm_xfer.h],
                       [AC_CHECK_HEADER([xm_topo.h],
                                        [AC_CHECK_LIB([xenmpi], [xm_xfer_zcopy],
                                                      [xen_happy="yes"])])])

       CPPFLAGS="$save_CPPFLAGS"
       LDFLAGS="$save_LDFLAGS"

       AS_IF([test "x$xen_happy" = xyes],
             [AC_SUBST([XENMPI_CPPFLAGS])
              AC_SUBST([XENMPI_LDFLAGS])
              uct_modules="${uct_modules}:xen"],
             [AS_IF([test "x$with_xen" != xguess],
                    [AC_MSG_ERROR([xen transport requested but libxenmpi (xm_xfer.h, -lxenmpi) was not found: install libxenmpi-dev or pass --with-xen=DIR])],
                    [AC_MSG_WARN([libxenmpi not found: the xen transport is not built])])])
      ],
      [AC_MSG_WARN([the xen transport was explicitly disabled])]
)

AM_CONDITIONAL([HAVE_XEN], [test "x$xen_happy" != xno])
AC_CONFIG_FILES([src/uct/xen/Makefile])
