#ifndef XEN_PROGRESS_H_INCLUDED
#define XEN_PROGRESS_H_INCLUDED

#include "xen_impl.h"

/* ch4 always polls (blocking is 0): the core's progress, then the queued sends */
MPL_STATIC_INLINE_PREFIX int MPIDI_NM_progress(int vci, int blocking)
{
    return vci == 0 ? MPIDI_XEN_progress() : MPI_SUCCESS;
}

#endif /* XEN_PROGRESS_H_INCLUDED */
