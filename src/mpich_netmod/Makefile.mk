##
## The xen netmod (see its subconfigure.m4).
##

if BUILD_CH4_NETMOD_XEN

noinst_HEADERS     += src/mpid/ch4/netmod/xen/xen_pre.h \
                      src/mpid/ch4/netmod/xen/xen_impl.h \
                      src/mpid/ch4/netmod/xen/xen_am.h \
                      src/mpid/ch4/netmod/xen/xen_proc.h \
                      src/mpid/ch4/netmod/xen/xen_progress.h \
                      src/mpid/ch4/netmod/xen/xen_noinline.h \
                      src/mpid/ch4/netmod/xen/netmod_inline.h
mpi_core_sources   += src/mpid/ch4/netmod/xen/func_table.c \
                      src/mpid/ch4/netmod/xen/xen_init.c \
                      src/mpid/ch4/netmod/xen/xen_am.c \
                      src/mpid/ch4/netmod/xen/xen_hooks.c

endif
