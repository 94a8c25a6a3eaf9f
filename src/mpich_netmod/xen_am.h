/*
 * xen_am.h - the active-message contract of ch4 (ch4_api.txt), over
 * MPIDI_XEN_send (xen_am.c).
 */
#ifndef XEN_AM_H_INCLUDED
#define XEN_AM_H_INCLUDED

#include "xen_impl.h"

MPL_STATIC_INLINE_PREFIX int MPIDI_NM_am_isend(int rank, MPIR_Comm * comm, int handler_id,
                                               const void *am_hdr, MPI_Aint am_hdr_sz,
                                               const void *data, MPI_Aint count,
                                               MPI_Datatype datatype, int src_vci, int dst_vci,
                                               MPIR_Request * sreq)
{
    return MPIDI_XEN_send(rank, comm, handler_id, am_hdr, am_hdr_sz, data, count, datatype,
                          src_vci, dst_vci, sreq);
}

MPL_STATIC_INLINE_PREFIX int MPIDI_NM_am_isend_reply(MPIR_Comm * comm, int src_rank,
                                                     int handler_id, const void *am_hdr,
                                                     MPI_Aint am_hdr_sz, const void *data,
                                                     MPI_Aint count, MPI_Datatype datatype,
                                                     int src_vci, int dst_vci,
                                                     MPIR_Request * sreq)
{
    return MPIDI_XEN_send(src_rank, comm, handler_id, am_hdr, am_hdr_sz, data, count, datatype,
                          src_vci, dst_vci, sreq);
}

MPL_STATIC_INLINE_PREFIX int MPIDI_NM_am_send_hdr(int rank, MPIR_Comm * comm, int handler_id,
                                                  const void *am_hdr, MPI_Aint am_hdr_sz,
                                                  int src_vci, int dst_vci)
{
    return MPIDI_XEN_send(rank, comm, handler_id, am_hdr, am_hdr_sz, NULL, 0, MPI_BYTE,
                          src_vci, dst_vci, NULL);
}

MPL_STATIC_INLINE_PREFIX int MPIDI_NM_am_send_hdr_reply(MPIR_Comm * comm, int src_rank,
                                                        int handler_id, const void *am_hdr,
                                                        MPI_Aint am_hdr_sz, int src_vci,
                                                        int dst_vci)
{
    return MPIDI_XEN_send(src_rank, comm, handler_id, am_hdr, am_hdr_sz, NULL, 0, MPI_BYTE,
                          src_vci, dst_vci, NULL);
}

/* The limits are the netmod's globals (xen_am.c), its choices in
 * MPIDI_XEN_check_eager: kept out of this header, which most of MPICH
 * includes. */
MPL_STATIC_INLINE_PREFIX MPI_Aint MPIDI_NM_am_hdr_max_sz(void)
{
    return MPIDI_XEN_global.am_hdr_max;
}

MPL_STATIC_INLINE_PREFIX MPI_Aint MPIDI_NM_am_eager_limit(void)
{
    return MPIDI_XEN_global.eager_limit;
}

MPL_STATIC_INLINE_PREFIX MPI_Aint MPIDI_NM_am_eager_buf_limit(void)
{
    return MPIDI_XEN_global.eager_limit;
}

MPL_STATIC_INLINE_PREFIX bool MPIDI_NM_am_check_eager(MPI_Aint am_hdr_sz, MPI_Aint data_sz,
                                                      const void *data, MPI_Aint count,
                                                      MPI_Datatype datatype, MPIR_Request * sreq)
{
    return MPIDI_XEN_check_eager(am_hdr_sz, data_sz, datatype, sreq);
}

MPL_STATIC_INLINE_PREFIX MPIDIG_recv_data_copy_cb MPIDI_NM_am_get_data_copy_cb(uint32_t attr)
{
    return MPIDI_XEN_rndv_recv_cb;   /* a rendezvous matched after it arrived */
}

MPL_STATIC_INLINE_PREFIX void MPIDI_NM_am_request_init(MPIR_Request * req)
{
    req->dev.ch4.am.netmod_am.xen.op = NULL;
    req->dev.ch4.am.netmod_am.xen.rndv[0] = 0;
}

MPL_STATIC_INLINE_PREFIX void MPIDI_NM_am_request_finalize(MPIR_Request * req)
{
    if (req->dev.ch4.am.netmod_am.xen.op)
        MPIDI_XEN_request_free_op(req);
    if ((req->dev.ch4.am.netmod_am.xen.rndv[0] & ~(uint64_t) 0xffffffffu) == MPIDI_XEN_RNDV_TAG)
        MPIDI_XEN_request_free_rndv(req);
}

#endif /* XEN_AM_H_INCLUDED */
