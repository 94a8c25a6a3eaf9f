/*
 * xen_zcopy.c - GET_ZCOPY and PUT_ZCOPY.
 *
 * One operation is cut into pieces (xm_zc_piece): the whole pages of the
 * owner's registration go by grant copy through the core's software I/O
 * TLB (xm_zc_copy: a cache hit copies at once, a miss asks the owner for
 * grants and completes from progress); the partial pages at the ends of
 * the registration, and pieces zero-copy could not serve (the owner's grant
 * table is full, it has no xenmpi_grant module, it is in our own domain,
 * it refused), take the copy path: emulated gets and puts through the
 * ring, which the owner checks and executes.  The operation completes when
 * every piece has.
 */
#include "xen_iface.h"
#include "xm_zc.h"

#include <uct/base/uct_iov.inl>
#include <ucs/debug/log.h>
#include <ucs/debug/memtrack_int.h>

#include <errno.h>
#include <string.h>

typedef struct uct_xen_zop uct_xen_zop_t;

/* A grant-copy piece, handed to the core as its callback argument. */
typedef struct uct_xen_zpiece {
    uct_xen_zop_t *op;
    void          *local;
    uint64_t      raddr;
    size_t        length;
} uct_xen_zpiece_t;

/* A range for the copy path, not yet wholly sent; holds one count of its
 * operation until it is.  A put range then waits in zput_q until the peer
 * has consumed its last record (tx mark): the operation counts for ep
 * flush until then, so a flush covers puts the ring still holds. */
typedef struct uct_xen_zfb {
    ucs_queue_elem_t queue;   /* in uct_xen_iface_t::zfb_q, then zput_q */
    uct_xen_zop_t    *op;
    uint8_t          *local;
    uint64_t         raddr;
    size_t           left;
    uint32_t         mark;    /* zput_q: tx mark after its last put */
} uct_xen_zfb_t;

struct uct_xen_zop {
    uct_completion_t  sub;      /* pieces and ranges outstanding (+1 while
                                 * being issued) */
    uct_completion_t  *comp;    /* the caller's */
    uct_xen_ep_t      *ep;
    ucs_list_link_t   list;     /* in uct_xen_ep_t::zops */
    uct_xen_rkey_t    rkey;
    int               dir;      /* XM_ZC_GET / XM_ZC_PUT */
    unsigned          npieces;
    uct_xen_zpiece_t  pieces[];
};

static ucs_status_t uct_xen_zc_status(int rc)
{
    switch (rc) {
    case 0:       return UCS_OK;
    case -ENOMEM: return UCS_ERR_NO_MEMORY;
    case -EPIPE:  return UCS_ERR_CONNECTION_RESET;
    case -ENOENT:
    case -EFAULT:
    case -EACCES:
    case -EINVAL: return UCS_ERR_INVALID_ADDR;   /* refused by the owner */
    default:      return UCS_ERR_IO_ERROR;
    }
}

/* every piece and range done: complete the caller's operation */
static void uct_xen_zop_done(uct_completion_t *self)
{
    uct_xen_zop_t *op = ucs_container_of(self, uct_xen_zop_t, sub);
    uct_xen_ep_t *ep  = op->ep;

    ucs_list_del(&op->list);
    ++ep->rops_done;
    if (op->comp != NULL) {
        uct_invoke_completion(op->comp, self->status);
    }
    ucs_free(op);
}

static void uct_xen_zfb_add(uct_xen_iface_t *iface, uct_xen_zop_t *op,
                            void *local, uint64_t raddr, size_t length)
{
    uct_xen_zfb_t *fb = ucs_malloc(sizeof(*fb), "xen_zfb");

    if (fb == NULL) {
        ucs_error("xen: failed to allocate a copy-path range");
        uct_completion_update_status(&op->sub, UCS_ERR_NO_MEMORY);
        return;
    }
    fb->op    = op;
    fb->local = local;
    fb->raddr = raddr;
    fb->left  = length;
    ++op->sub.count;
    ucs_queue_push(&iface->zfb_q, &fb->queue);
}

/* Zero-copy is an optimisation; the ring path is the authority.  A piece
 * the owner could not grant (table full, no xenmpi_grant module, same
 * domain, no memory) or refused, or whose copy failed, is done again
 * through the ring, where the owner checks the access against its record
 * and either serves it or refuses it (UCS_ERR_INVALID_ADDR).  Only a
 * channel that went down fails the piece here. */
static int uct_xen_zc_use_ring(int rc)
{
    return (rc != 0) && (rc != -EPIPE);
}

/* the core finished a grant-copy piece (from progress) */
static void uct_xen_zpiece_done(void *arg, int rc)
{
    uct_xen_zpiece_t *p = arg;
    uct_xen_zop_t *op   = p->op;

    if (uct_xen_zc_use_ring(rc)) {
        uct_xen_zfb_add(ucs_derived_of(op->ep->super.super.iface,
                                       uct_xen_iface_t),
                        op, p->local, p->raddr, p->length);
        rc = 0;
    }
    uct_invoke_completion(&op->sub, uct_xen_zc_status(rc));
}

static void uct_xen_zfb_unpack(void *arg, const void *data, size_t length)
{
    memcpy(arg, data, length);
}

typedef struct {
    const void *src;
    size_t     length;
} uct_xen_zfb_pack_arg_t;

static size_t uct_xen_zfb_pack(void *dest, void *arg)
{
    uct_xen_zfb_pack_arg_t *pa = arg;

    memcpy(dest, pa->src, pa->length);
    return pa->length;
}

/* Send what the copy path owes, in order, until a ring is full. */
unsigned uct_xen_zfb_progress(uct_xen_iface_t *iface)
{
    unsigned count = 0;
    uct_xen_zfb_t *fb;
    uct_xen_zop_t *op;
    ucs_status_t status;
    ssize_t packed;
    size_t n;

    while (!ucs_queue_is_empty(&iface->zfb_q)) {
        fb = ucs_queue_head_elem_non_empty(&iface->zfb_q, uct_xen_zfb_t, queue);
        op = fb->op;
        while (fb->left > 0) {
            n = ucs_min(fb->left, iface->config.rma_max);
            if (op->dir == XM_ZC_GET) {
                ++op->sub.count;
                status = uct_xen_ep_get_bcopy(&op->ep->super.super,
                                              uct_xen_zfb_unpack, fb->local, n,
                                              fb->raddr, (uintptr_t)&op->rkey,
                                              &op->sub);
                if (status != UCS_INPROGRESS) {
                    --op->sub.count;
                }
            } else {
                uct_xen_zfb_pack_arg_t pa = { fb->local, n };

                packed = uct_xen_ep_put_bcopy(&op->ep->super.super,
                                              uct_xen_zfb_pack, &pa, fb->raddr,
                                              (uintptr_t)&op->rkey);
                status = (packed < 0) ? (ucs_status_t)packed : UCS_OK;
            }
            if (status == UCS_ERR_NO_RESOURCE) {
                return count;   /* ring full: the rest waits, in order */
            }
            if (UCS_STATUS_IS_ERR(status)) {
                uct_completion_update_status(&op->sub, status);
                break;
            }
            xm_zc_count_fallback(n);
            fb->local += n;
            fb->raddr += n;
            fb->left  -= n;
            ++count;
        }
        ucs_queue_pull_non_empty(&iface->zfb_q);
        if ((op->dir == XM_ZC_PUT) && (fb->left == 0)) {
            fb->mark = xm_chan_tx_mark(op->ep->ch);
            ucs_queue_push(&iface->zput_q, &fb->queue);
            continue;   /* the count is released when the peer applied it */
        }
        ucs_free(fb);
        uct_invoke_completion(&op->sub, UCS_OK);   /* the range's count */
    }
    return count;
}

int uct_xen_zput_ready(uct_xen_iface_t *iface)
{
    uct_xen_zfb_t *fb;

    ucs_queue_for_each(fb, &iface->zput_q, queue) {
        if (xm_chan_tx_reached(fb->op->ep->ch, fb->mark)) {
            return 1;
        }
    }
    return 0;
}

unsigned uct_xen_zput_progress(uct_xen_iface_t *iface)
{
    unsigned count = 0;
    ucs_queue_iter_t iter;
    uct_xen_zfb_t *fb;
    uct_xen_zop_t *op;

    ucs_queue_for_each_safe(fb, iter, &iface->zput_q, queue) {
        op = fb->op;
        if (!xm_chan_tx_reached(op->ep->ch, fb->mark)) {
            continue;
        }
        ucs_queue_del_iter(&iface->zput_q, iter);
        ucs_free(fb);
        uct_invoke_completion(&op->sub, UCS_OK);
        ++count;
    }
    return count;
}

static ucs_status_t
uct_xen_ep_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov, size_t iovcnt,
                 uint64_t remote_addr, uct_rkey_t rkey, uct_completion_t *comp,
                 int dir)
{
    uct_xen_ep_t *ep             = ucs_derived_of(tl_ep, uct_xen_ep_t);
    uct_xen_iface_t *iface       = ucs_derived_of(tl_ep->iface, uct_xen_iface_t);
    const uct_xen_rkey_t *rk     = (const uct_xen_rkey_t*)rkey;
    size_t length                = uct_iov_total_length(iov, iovcnt);
    uint8_t *local;
    unsigned npieces             = 0;
    uct_xen_zop_t *op;
    ucs_status_t status;
    uint64_t raddr;
    size_t left, n;
    int zc, rc;

    UCT_CHECK_IOV_SIZE(iovcnt, 1ul, (dir == XM_ZC_GET) ? "get_zcopy" :
                       "put_zcopy");
    if (length == 0) {
        return UCS_OK;
    }
    local = iov[0].buffer;
    if (UCT_XEN_EP_MUST_QUEUE(ep)) {
        return UCS_ERR_NO_RESOURCE;
    }
    status = uct_xen_chan_status(ep->ch);
    if (status != UCS_OK) {
        return status;
    }
    if (length > UINT64_MAX - remote_addr) {
        return UCS_ERR_INVALID_PARAM;
    }

    for (raddr = remote_addr, left = length; left > 0; raddr += n, left -= n) {
        n        = xm_zc_piece(rk->base, rk->length, raddr, left, &zc);
        npieces += zc;
    }
    op = ucs_malloc(sizeof(*op) + npieces * sizeof(op->pieces[0]), "xen_zop");
    if (op == NULL) {
        ucs_error("xen: failed to allocate a zero-copy operation");
        return UCS_ERR_NO_MEMORY;
    }
    op->sub.func   = uct_xen_zop_done;
    op->sub.count  = 1;   /* ours, while issuing */
    op->sub.status = UCS_OK;
    op->comp       = comp;
    op->ep         = ep;
    op->rkey       = *rk;
    op->dir        = dir;
    op->npieces    = npieces;
    ucs_list_add_tail(&ep->zops, &op->list);
    ++ep->rops_issued;

    npieces = 0;
    for (raddr = remote_addr, left = length; left > 0;
         raddr += n, local += n, left -= n) {
        n = xm_zc_piece(rk->base, rk->length, raddr, left, &zc);
        if (!zc) {
            uct_xen_zfb_add(iface, op, local, raddr, n);
            continue;
        }
        uct_xen_zpiece_t *p = &op->pieces[npieces++];
        p->op     = op;
        p->local  = local;
        p->raddr  = raddr;
        p->length = n;
        rc = xm_zc_copy(ep->ch, rk->id, rk->base, rk->length, raddr, local, n,
                        dir, uct_xen_zpiece_done, p);
        if (rc == -EINPROGRESS) {
            ++op->sub.count;
        } else if (uct_xen_zc_use_ring(rc)) {
            uct_xen_zfb_add(iface, op, local, raddr, n);
        } else if (rc != 0) {
            uct_completion_update_status(&op->sub, uct_xen_zc_status(rc));
        }
    }
    if (!ucs_queue_is_empty(&iface->zfb_q)) {
        uct_xen_zfb_progress(iface);
    }

    if (--op->sub.count > 0) {
        if (dir == XM_ZC_GET) {
            UCT_TL_EP_STAT_OP(&ep->super, GET, ZCOPY, length);
        } else {
            UCT_TL_EP_STAT_OP(&ep->super, PUT, ZCOPY, length);
        }
        return UCS_INPROGRESS;
    }
    /* everything done now (cache hits): no completion callback */
    status = op->sub.status;
    ucs_list_del(&op->list);
    ++ep->rops_done;
    ucs_free(op);
    return status;
}

ucs_status_t uct_xen_ep_get_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov,
                                  size_t iovcnt, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp)
{
    return uct_xen_ep_zcopy(tl_ep, iov, iovcnt, remote_addr, rkey, comp,
                            XM_ZC_GET);
}

ucs_status_t uct_xen_ep_put_zcopy(uct_ep_h tl_ep, const uct_iov_t *iov,
                                  size_t iovcnt, uint64_t remote_addr,
                                  uct_rkey_t rkey, uct_completion_t *comp)
{
    return uct_xen_ep_zcopy(tl_ep, iov, iovcnt, remote_addr, rkey, comp,
                            XM_ZC_PUT);
}

void uct_xen_ep_cancel_zops(uct_xen_ep_t *ep, uct_xen_iface_t *iface)
{
    uct_xen_zop_t *op, *tmp;
    uct_xen_zfb_t *fb;
    ucs_queue_iter_t iter;
    unsigned i;

    ucs_list_for_each_safe(op, tmp, &ep->zops, list) {
        for (i = 0; i < op->npieces; ++i) {
            xm_zc_cancel(&op->pieces[i]);
        }
        ucs_queue_for_each_safe(fb, iter, &iface->zfb_q, queue) {
            if (fb->op == op) {
                ucs_queue_del_iter(&iface->zfb_q, iter);
                ucs_free(fb);
            }
        }
        ucs_queue_for_each_safe(fb, iter, &iface->zput_q, queue) {
            if (fb->op == op) {
                ucs_queue_del_iter(&iface->zput_q, iter);
                ucs_free(fb);
            }
        }
        ucs_list_del(&op->list);
        ucs_free(op);
    }
}
