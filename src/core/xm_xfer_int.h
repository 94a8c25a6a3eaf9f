/*
 * xm_xfer_int.h - what xm_xfer.c (operations, the zero-copy operation,
 * marks, the service) and xm_xfer_rma.c (RMA through the ring: the
 * owner's side and gets) share.  Nothing here is exported.
 */
#ifndef XM_XFER_INT_H
#define XM_XFER_INT_H

#include "xm_xfer.h"

#pragma GCC visibility push(hidden)

#define XF_HDR sizeof(struct xm_rma_hdr)
#define XF_CHAN_BUCKETS 64u
#define XF_GET_BUCKETS 256u

enum { XF_GET, XF_ZOP };

/* Path choice (XM_XFER_ZC_AUTO, xm_xfer.h): one meter per direction, size
 * class and path of each channel. */
enum { XF_GRANT = 0, XF_RING = 1 };
#define XF_SIZES 5
#define XF_SAMPLES 4     /* a path's cost: the least of its last 4 samples */
#define XF_PROBE_MAX 1024u
struct xf_meter {
    unsigned busy;        /* its operations outstanding */
    unsigned samples;     /* busy periods measured so far */
    double since;         /* when busy last went from 0 to 1 (s) */
    uint64_t bytes;       /* moved by operations done in this busy period */
    double sample[XF_SAMPLES];   /* seconds per byte of the latest periods */
    double cost;          /* the least of them; valid once samples > 0 */
};
struct xf_path {
    struct xf_meter m[2][XF_SIZES][2];   /* [dir][size class][path] */
    unsigned n[2][XF_SIZES];             /* operations since the last probe */
    unsigned gap[2][XF_SIZES];           /* operations between probes */
};

struct xf_chan;

/* A grant-copy piece of a zero-copy operation (xm_zc_copy's cb argument). */
struct xf_piece {
    struct xf_op *op;
    void *local;
    uint64_t raddr;
    size_t len;
};

/* An outstanding get or zero-copy operation, in its channel's list (oldest
 * first: the channel's remote completion is the oldest one's). */
struct xf_op {
    struct xf_op *prev, *next;
    xm_xfer_t *x;
    struct xf_chan *c;
    uint64_t seq;
    int kind;
    const void *tag;
    xm_xfer_cb_t cb;
    void *arg;
    /* XF_GET */
    struct xf_op *hnext;          /* in the request table */
    uint64_t req;
    size_t len;
    xm_xfer_unpack_t unpack;
    void *uarg;
    int push;                     /* a push request (XF_GET kind, answered by PUSH_REP) */
    /* XF_ZOP */
    unsigned count;               /* pieces and ranges outstanding, +1 while issuing */
    int status;
    int dir;
    xm_rkey_t rk;
    unsigned npieces;
    struct xf_piece *pieces;
    struct xf_meter *meter;       /* XM_XFER_ZC_AUTO: the path's, while outstanding */
    int ring;                     /* the ring path was chosen (not a fallback) */
    /* the whole pages the owner was asked to push (0 bytes: none) */
    uint8_t *push_local;
    uint64_t push_raddr;
    size_t push_len;
};

/* A peer's push request we serve: its pages go by grant copy into the
 * peer's grants (xm_zc_copy, XM_ZC_PUT), then PUSH_REP. */
struct xf_push {
    struct xf_push *next;
    xm_xfer_t *x;
    struct xf_chan *c;
    struct xm_rma_hdr hdr;   /* the request; its status answers */
    unsigned count;          /* copies outstanding, +1 while issuing */
};
#define XF_PUSH_CAP 64u      /* served at once per channel; beyond: refused */

/* Per channel: its operations and the next sequence number. */
struct xf_chan {
    struct xf_chan *hnext;
    xm_channel_t *ch;
    struct xf_op *head, *tail;
    uint64_t next_seq;
    /* get answers our full ring to it could not take yet, in order */
    struct xf_reply *rq, **rq_tail;
    unsigned nreplies;
    struct xf_chan *rnext;  /* in x->rchans while rq is not empty */
    /* ranges of its zero-copy operations for the ring, in order; a full
     * ring to this peer holds up only these */
    struct xf_range *ring, **ring_tail;
    struct xf_chan *gnext;  /* in x->ringchans while ring is not empty */
    unsigned ring_pass;     /* the ring_progress pass that found its ring full */
    struct xf_path path;    /* XM_XFER_ZC_AUTO */
    uint64_t seen_recv;     /* the peer's adapter records at our last zero-copy op */
    struct xf_push *pushes; /* the peer's push requests we serve */
    unsigned npushes;
};

/* A range of a zero-copy operation for the ring, not yet wholly sent; a put
 * range then waits until the peer consumed its last record (tx). */
struct xf_range {
    struct xf_range *next;
    struct xf_op *op;
    uint8_t *local;
    uint64_t raddr;
    size_t left;
    uint32_t tx;
};

/* A get request we could not answer yet (our ring to the requester was
 * full): answered, and only then checked and read, from progress.  Per
 * channel in order; a channel with a full ring holds up only its own.  A
 * requester that keeps asking and never reads has its channel failed past
 * XF_REPLY_CAP queued answers (48 bytes each: 3 MiB). */
#define XF_REPLY_CAP 65536u
struct xf_reply {
    struct xf_reply *next;
    xm_channel_t *ch;
    uint16_t type;           /* GET_REP or PUSH_REP */
    struct xm_rma_hdr hdr;
};

struct xm_xfer {
    xm_endpoint_t *ep;
    size_t rma_max;
    size_t range_max;   /* ring-path ranges: rma_max as asked, or unbounded */
    int zcopy;
    size_t push_min;    /* gets of at least this many bytes split the copy */
    uint64_t next_req;
    uint64_t refused;
    struct xf_chan *chans[XF_CHAN_BUCKETS];
    struct xf_op *gets[XF_GET_BUCKETS];
    struct xf_chan *rchans;   /* the channels with queued get answers */
    struct xf_chan *ringchans;   /* the channels with ranges for the ring */
    unsigned ring_pass;
    struct xf_range *putwait;    /* put ranges waiting for the peer */
};

/* Largest payload of one put (PUT: our ring) or one get's answer (GET:
 * the peer's ring to us) on ch: what that ring holds, at most range_max. */
static inline size_t xf_rec_max(const xm_xfer_t *x, const xm_channel_t *ch, int get)
{
    size_t m = (get ? xm_chan_peer_max_msg(ch) : xm_chan_max_msg(ch)) - XF_HDR;

    return m < x->range_max ? m : x->range_max;
}

struct xf_chan *xf_chan_find(xm_xfer_t *x, const xm_channel_t *ch);
struct xf_chan *xf_chan_get(xm_xfer_t *x, xm_channel_t *ch);   /* find or make; NULL: no memory */
struct xf_op *xf_op_new(xm_xfer_t *x, xm_channel_t *ch, int kind, xm_xfer_cb_t cb,
                        void *arg, const void *tag);
/* unlink and free (a zero-copy operation with what refers to it); its
 * callback is the caller's */
void xf_op_free(xm_xfer_t *x, struct xf_op *op);
void xf_op_complete(xm_xfer_t *x, struct xf_op *op, int status);
int xf_send_replies(xm_xfer_t *x);
void xf_drop_replies(xm_xfer_t *x, struct xf_chan *c);
void xf_drop_pushes(xm_xfer_t *x, struct xf_chan *c);
/* a PUSH_REP: its request completes */
void xf_push_answer(xm_xfer_t *x, xm_channel_t *ch, const struct xm_rma_hdr *h);
/* the service's receive callback: RMA records */
void xf_recv(void *arg, xm_channel_t *ch, uint16_t type, const void *data, size_t len);

#pragma GCC visibility pop

#endif
