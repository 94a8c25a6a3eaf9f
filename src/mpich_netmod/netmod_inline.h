/*
 * netmod_inline.h - the xen netmod's inline part: active messages over
 * the xenmpi core's channels; pt2pt, RMA and collectives come from MPIDIG
 * (netmod_am_fallback.h).
 */
#ifndef NETMOD_INLINE_H_INCLUDED
#define NETMOD_INLINE_H_INCLUDED

#ifndef MPIDI_XEN_NETMOD_INLINE_SAID
#define MPIDI_XEN_NETMOD_INLINE_SAID
#pragma message "ch4 netmod: xen (src/mpid/ch4/netmod/xen/netmod_inline.h)"
#endif

#include "netmod_am_fallback.h"
#include "xen_progress.h"
#include "xen_am.h"
#include "xen_proc.h"
#include "xen_noinline.h"

#endif /* NETMOD_INLINE_H_INCLUDED */
