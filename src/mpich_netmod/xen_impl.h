/*
 * xen_impl.h - the xen netmod's internals: active messages over the
 * xenmpi core's channels (xm_channel.h).
 *
 * Every rank opens one core endpoint; addresses (host hash, domain,
 * endpoint id: xm_ep_addr_t) are exchanged through PMI at init.  A rank
 * sends to a peer on the channel it started itself (connected on the first
 * send) and receives on the channels its peers started, so each direction
 * is one ordered ring.  A message is the netmod header, the MPIDIG header
 * and the data, cut into records of at most the ring's message size:
 * MPIDI_XEN_REC_AM first, MPIDI_XEN_REC_MORE for the rest, contiguous on
 * the ring because a peer's sends leave in order from one queue.
 */
#ifndef XEN_IMPL_H_INCLUDED
#define XEN_IMPL_H_INCLUDED

#include "mpidimpl.h"
#include <xm_channel.h>
#include <xm_xfer.h>

/* Record types of the netmod (xm_wire.h's adapter range). */
enum {
    MPIDI_XEN_REC_AM = 1,    /* MPIDI_XEN_hdr_t, then the first bytes of header and data */
    MPIDI_XEN_REC_MORE = 2,  /* the next bytes of the message being received */
    MPIDI_XEN_REC_BYE = 3,   /* the sender finalizes: its channels close in order */
};

/* handler_id's top bit: the data stays with the sender, registered for
 * zero-copy; the record carries MPIDI_XEN_rndv_t, then data_sz bytes of
 * the data: the partial pages at its ends (xen_wire.h). */
#define MPIDI_XEN_HDR_RNDV 0x8000

typedef struct MPIDI_XEN_hdr {
    uint16_t handler_id;
    uint8_t src_vci, dst_vci;
    uint32_t am_hdr_sz;      /* MPIDIG header bytes that follow */
    uint64_t data_sz;        /* data bytes after them */
} MPIDI_XEN_hdr_t;

/* Where a rendezvous message's data is: the sender's registration
 * (xm_zc_reg) and the sender's handle for the acknowledgement. */
typedef struct MPIDI_XEN_rndv {
    xm_rkey_t rkey;              /* the registration */
    uint64_t cookie;
    uint64_t addr, size;         /* the data, inside it */
} MPIDI_XEN_rndv_t;

/* A rendezvous buffer is registered from the 64-byte boundary at or below
 * its start to the one at or above its end, as UCX's registration cache
 * does for the UCX transport (UCX_XEN_RCACHE_ADDR_ALIGN): a buffer that
 * starts a few bytes past a page boundary (large mallocs do) then has no
 * partial page at its start, and the peer may read at most 63 bytes on
 * either side of it. */
#define MPIDI_XEN_REG_ALIGN 64

/* The request fields (xen_pre.h) in each role:
 * send: rndv[0] 1 when zero-copy was chosen, rndv[1] its registration id,
 *       rndv[2] the MPIDIG handler to call back on the acknowledgement;
 * receive of a rendezvous: rndv[0] MPIDI_XEN_RNDV_TAG | sender's world
 *       rank, rndv[1..3] the rkey, rndv[4] the cookie, rndv[5] a bounce
 *       buffer for a non-contiguous receive, rndv[6] the data bytes that
 *       came inline (then, once they are placed, the bytes the core's
 *       zero-copy moves), rndv[7] 1 when rndv[6] is a copy of ours,
 *       rndv[8..9] where the data is in the registration and its size. */
#define MPIDI_XEN_RNDV_TAG ((uint64_t) 0x58524e44u << 32)

/* Largest MPIDIG header, and the eager limit MPIDIG asks about: messages
 * (header and data) up to it are sent at once and buffered by the receiver
 * if unexpected (MPIR_CVAR_CH4_AM_PACK_BUFFER_SIZE, 69632 by default,
 * bounds that buffer and is checked at init). */
#define MPIDI_XEN_AM_HDR_MAX  (64 * 1024)
#define MPIDI_XEN_EAGER_LIMIT (16 * 1024)
/* XENMPI_NETMOD_ZCOPY_MIN's default: contiguous messages from 32 KiB go
 * by the zero-copy rendezvous (ping-pong between two sim VMs: 64 KiB 11.9
 * GB/s that way against 8.4 through MPIDIG's RTS/CTS and the rings; at 16
 * KiB the rendezvous gained nothing) */
#define MPIDI_XEN_ZCOPY_MIN_DEFAULT (32 * 1024)

/* Records carry at most this much of a message (and the endpoint's
 * rings may fall back to the smallest that holds it), so that the receiver
 * copies one record out while the sender writes the next: a 64 KiB
 * message in one record is copied three times one after the other (into
 * the ring, out of it, into the receive buffer), in 8 KiB records the
 * copies overlap. Measured on the sim backend, 2 ranks in 2 VMs: 64 KiB
 * ping-pong 7.2-9.4 GB/s with 8 KiB records against 3.2-4.2 GB/s in one
 * record; 4 KiB records were no better, 16 and 32 KiB worse. */
#define MPIDI_XEN_FRAG (8 * 1024)

/* A send in the queue of its peer: the netmod and MPIDIG headers copied,
 * the data still in the user's buffer (packed as it goes onto the ring). */
typedef struct MPIDI_XEN_sendq {
    struct MPIDI_XEN_sendq *next;
    MPIR_Request *sreq;          /* completed (origin callback) once all of it left */
    int handler_id;
    const void *data;
    MPI_Aint count;
    MPI_Datatype datatype;
    const char *contig;          /* the data's first byte when contiguous, else NULL */
    size_t hlen, total;          /* headers, headers + data */
    size_t off;                  /* bytes of the message on the ring */
    char hdr[];                  /* MPIDI_XEN_hdr_t, then the MPIDIG header */
} MPIDI_XEN_sendq_t;

typedef struct MPIDI_XEN_peer {
    int rank;                    /* in MPI_COMM_WORLD */
    xm_ep_addr_t addr;
    xm_channel_t *ch;            /* the channel we send on (ours), NULL until the first send */
    MPIDI_XEN_sendq_t *head, **tail;   /* queued sends, in order */
    struct MPIDI_XEN_peer *next_busy;
    int busy;                    /* on the busy list */
    int said_bye;                /* it finalized: its channels going down is no failure */
} MPIDI_XEN_peer_t;

/* What arrives on one channel a peer sends on (xen_am.c). */
struct MPIDI_XEN_rx;

typedef struct {
    xm_hv_t *hv;
    xm_endpoint_t *ep;
    xm_ep_addr_t addr;
    int rank, size;
    MPIDI_XEN_peer_t *peers;     /* one per world rank */
    MPIDI_XEN_peer_t *busy;      /* peers with queued sends */
    struct MPIDI_XEN_rx *rx;     /* the channels peers send to us on */
    int closing;
    xm_xfer_t *xfer;             /* zero-copy (and its ring fallback) on ep */
    xm_zc_regcache_t *regcache;  /* registrations of sent buffers, kept across messages */
    int ack_handler;             /* MPIDIG handler id of the rendezvous acknowledgement */
    MPI_Aint am_hdr_max, eager_limit;   /* what MPIDIG is told (xen_am.h) */
    size_t zcopy_min;            /* contiguous sends from this size go zero-copy */
    size_t max_msg;              /* largest record payload (xm_endpoint_max_msg) */
    /* messages and bytes (headers included) through this netmod; of them,
     * data bytes the receivers copied from our registrations */
    uint64_t msgs_sent, bytes_sent, msgs_recv, bytes_recv, zcopy_bytes;
    uint64_t piped_bytes;        /* data bytes received straight into MPIDIG's buffer */
    uint64_t rndv_msgs, inline_bytes;   /* rendezvous received, their data that came inline */
} MPIDI_XEN_global_t;

extern MPIDI_XEN_global_t MPIDI_XEN_global;

void MPIDI_XEN_recv_cb(void *arg, xm_channel_t * ch, uint16_t type, const void *data,
                       size_t len);
void MPIDI_XEN_event_cb(void *arg, xm_channel_t * ch, enum xm_chan_event ev);
/* Send everything queued and see it consumed, then BYE on every channel. */
int MPIDI_XEN_drain(void);

int MPIDI_XEN_send(int rank, MPIR_Comm * comm, int handler_id, const void *am_hdr,
                   MPI_Aint am_hdr_sz, const void *data, MPI_Aint count,
                   MPI_Datatype datatype, int src_vci, int dst_vci, MPIR_Request * sreq);
int MPIDI_XEN_progress(void);
bool MPIDI_XEN_check_eager(MPI_Aint am_hdr_sz, MPI_Aint data_sz, MPI_Datatype datatype,
                           MPIR_Request * sreq);
int MPIDI_XEN_rndv_recv_cb(MPIR_Request * rreq);
void MPIDI_XEN_request_free_rndv(MPIR_Request * req);
int MPIDI_XEN_rndv_init(void);
void MPIDI_XEN_request_free_op(MPIR_Request * req);
void MPIDI_XEN_rx_free(void);

#endif /* XEN_IMPL_H_INCLUDED */
