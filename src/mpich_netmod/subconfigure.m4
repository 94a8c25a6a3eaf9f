[#] start of __file__
dnl MPICH_SUBCFG_AFTER=src/mpid/ch4
dnl The xen netmod: MPI between Xen domains of one host over the xenmpi
dnl core (libxenmpi: channels, zero-copy, remote memory operations).

AC_DEFUN([PAC_SUBCFG_PREREQ_]PAC_SUBCFG_AUTO_SUFFIX,[
    AM_COND_IF([BUILD_CH4],[
        for net in $ch4_netmods ; do
            AS_CASE([$net],[xen],[build_ch4_netmod_xen=yes])
            if test $net = "xen" ; then
                AC_DEFINE(HAVE_CH4_NETMOD_XEN,1,[xen netmod is built])
                if test "$build_ch4_locality_info" != "yes" ; then
                    AC_DEFINE(MPIDI_BUILD_CH4_LOCALITY_INFO, 1, [CH4 should build locality info])
                    build_ch4_locality_info="yes"
                fi
            fi
        done
    ])
    AM_CONDITIONAL([BUILD_CH4_NETMOD_XEN],[test "X$build_ch4_netmod_xen" = "Xyes"])
])dnl

AC_DEFUN([PAC_SUBCFG_BODY_]PAC_SUBCFG_AUTO_SUFFIX,[
AM_COND_IF([BUILD_CH4_NETMOD_XEN],[
    AC_MSG_NOTICE([RUNNING CONFIGURE FOR ch4:xen])
    AC_ARG_WITH([xenmpi],
                AS_HELP_STRING([--with-xenmpi=<prefix>],[where libxenmpi and its headers are installed]),
                [],[with_xenmpi=/usr])
    PAC_APPEND_FLAG([-I${with_xenmpi}/include], [CPPFLAGS])
    PAC_APPEND_FLAG([-L${with_xenmpi}/lib -Wl,-rpath,${with_xenmpi}/lib], [LDFLAGS])
    AC_CHECK_HEADER([xm_xfer.h],[],[AC_MSG_ERROR([xm_xfer.h not found under ${with_xenmpi}/include: install the xenmpi core (make install) and pass --with-xenmpi=<its prefix>])])
    PAC_LIBS_ADD([-lxenmpi])
])dnl end AM_COND_IF(BUILD_CH4_NETMOD_XEN,...)
])dnl end _BODY

[#] end of __file__
