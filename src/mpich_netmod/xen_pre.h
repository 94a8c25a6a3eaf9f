/*
 * xen_pre.h - the xen netmod's parts of MPICH's objects (spliced into
 * MPIR_Request, MPIR_Comm, the AV entries, ...: kept small).
 */
#ifndef XEN_PRE_H_INCLUDED
#define XEN_PRE_H_INCLUDED

#include <stdint.h>

/* Per active-message request: the netmod's operation in flight for it
 * (a queued or fragmented send, a zero-copy receive), and the descriptor
 * of a zero-copy message that arrived before its receive was posted. */
typedef struct {
    void *op;
    uint64_t rndv[10];
} MPIDI_XEN_am_request_t;

typedef struct {
    int dummy;
} MPIDI_XEN_request_t;

typedef struct {
    int dummy;
} MPIDI_XEN_comm_t;

typedef struct {
    int dummy;
} MPIDI_XEN_dt_t;

typedef struct {
    int dummy;
} MPIDI_XEN_op_t;

typedef struct {
    int dummy;
} MPIDI_XEN_win_t;

/* Per AV entry: the peer (xen_impl.h), NULL for a rank on our node. */
typedef struct {
    void *peer;
} MPIDI_XEN_addr_t;

typedef struct {
    int dummy;
} MPIDI_XEN_part_t;

#endif /* XEN_PRE_H_INCLUDED */
