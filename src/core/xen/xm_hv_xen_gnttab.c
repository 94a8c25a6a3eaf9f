/*
 * xm_hv_xen_gnttab.c - the xen backend's grants: libxengnttab's gntalloc
 * to share, gntdev to map and to grant-copy.  Xen's grant statuses become
 * errno values; a failed map, which gntdev reports as EINVAL whatever the
 * cause, is probed for the real one.
 */
#include "xm_hv_xen_int.h"
#include "xm_log.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

/* Grant-table ABI values (xen/grant_table.h), kept local so this file does
 * not depend on the public Xen headers' include order. */
#define XM_GNTST_okay              0
#define XM_GNTST_general_error    (-1)
#define XM_GNTST_bad_domain       (-2)
#define XM_GNTST_bad_gntref       (-3)
#define XM_GNTST_permission_denied (-8)
#define XM_GNTST_bad_copy_arg    (-10)
#define XM_GNTST_eagain          (-12)
#define XM_GNTCOPY_source_gref    (1u << 0)
#define XM_GNTCOPY_dest_gref      (1u << 1)

/* Segments handed to one gntdev grant-copy ioctl. */
#define XM_XEN_COPY_BATCH 16

static int gntst_errno(int st)
{
    switch (st) {
    case XM_GNTST_okay:              return 0;
    case XM_GNTST_bad_domain:        return -ESRCH;
    case XM_GNTST_bad_gntref:        return -ENOENT;
    case XM_GNTST_permission_denied: return -EPERM;
    case XM_GNTST_bad_copy_arg:      return -EINVAL;
    case XM_GNTST_eagain:            return -EAGAIN;
    default:                         return -EPERM;
    }
}

int xm_xen_share(xm_hv_t *hv, uint32_t peer, unsigned count, int writable,
                 int notify_off, int notify_port, void **addr,
                 uint32_t *refs)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    void *p;
    int err;

    *addr = NULL;
    if (count == 0) {
        xm_error("share to domain %u: zero pages requested", peer);
        return -EINVAL;
    }
    if (notify_off >= (int)XM_PAGE_SIZE) {
        xm_error("share to domain %u: notify offset %d outside the page",
                 peer, notify_off);
        return -EINVAL;
    }
    count_call(x);
    if (notify_off >= 0 || notify_port != -1) {
        if (count != 1) {
            xm_error("share to domain %u: unmap notify needs a single page, "
                     "%u requested", peer, count);
            return -EINVAL;
        }
        p = xengntshr_share_page_notify(
            x->gntshr, peer, refs, writable ? 1 : 0,
            notify_off >= 0 ? (uint32_t)notify_off : (uint32_t)-1,
            notify_port != -1 ? (evtchn_port_t)notify_port : (evtchn_port_t)-1);
    } else {
        p = xengntshr_share_pages(x->gntshr, peer, count, refs,
                                  writable ? 1 : 0);
    }
    if (!p) {
        err = errno ? errno : ENOMEM;
        if (err == ENOSPC || err == ENOMEM)
            xm_error("share %u page(s) to domain %u: %s: the grant table is "
                     "full or gntalloc's limit is reached; raise "
                     "/sys/module/xen_gntalloc/parameters/limit (default "
                     "1024) or Xen's gnttab_max_frames, or use fewer shared "
                     "pages", count, peer, strerror(err));
        else if (err == EINVAL && notify_port != -1)
            xm_error("share to domain %u: %s: notify port %d is not an event "
                     "channel bound by this process", peer, strerror(err),
                     notify_port);
        else
            xm_error("share %u page(s) to domain %u: %s", count, peer,
                     strerror(err));
        return -err;
    }
    *addr = p;
    return 0;
}

int xm_xen_unshare(xm_hv_t *hv, void *addr, unsigned count)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    if (!addr || count == 0)
        return -EINVAL;
    count_call(x);
    if (xengntshr_unshare(x->gntshr, addr, count)) {
        int err = errno ? errno : EINVAL;
        xm_error("unshare %u page(s) at %p: %s", count, addr, strerror(err));
        return -err;
    }
    return 0;
}

/* gntdev reports every failed map as EINVAL; ask Xen for the real reason
 * with a one-byte grant copy of each ref (error path only). */
static int diagnose_map(xm_hv_xen_t *x, uint32_t owner, unsigned count,
                        const uint32_t *refs, int writable, unsigned *bad)
{
    xengnttab_grant_copy_segment_t seg;
    unsigned char byte;

    for (unsigned i = 0; i < count; i++) {
        memset(&seg, 0, sizeof(seg));
        seg.source.foreign.ref = refs[i];
        seg.source.foreign.domid = (uint16_t)owner;
        seg.source.foreign.offset = 0;
        seg.dest.virt = &byte;
        seg.len = 1;
        seg.flags = XM_GNTCOPY_source_gref;
        count_call(x);
        if (xengnttab_grant_copy(x->gnttab, 1, &seg))
            return 0;
        if (seg.status != XM_GNTST_okay) {
            *bad = i;
            return gntst_errno(seg.status);
        }
    }
    /* every ref is readable: the writable mapping was what failed */
    return writable ? -EACCES : 0;
}

int xm_xen_map(xm_hv_t *hv, uint32_t owner, unsigned count,
               const uint32_t *refs, int writable, int notify_port,
               void **addr)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *p;
    int err, why;
    unsigned bad = 0;

    *addr = NULL;
    if (count == 0 || owner >= XM_DOMID_FIRST_RESERVED) {
        xm_error("map from domain %u: bad request (%u pages)", owner, count);
        return -EINVAL;
    }
    count_call(x);
    if (notify_port != -1) {
        if (count != 1) {
            xm_error("map from domain %u: unmap notify needs a single page, "
                     "%u requested", owner, count);
            return -EINVAL;
        }
        p = xengnttab_map_grant_ref_notify(x->gnttab, owner, refs[0], prot,
                                           (uint32_t)-1,
                                           (evtchn_port_t)notify_port);
    } else {
        p = xengnttab_map_domain_grant_refs(x->gnttab, count, owner,
                                            (uint32_t *)refs, prot);
    }
    if (p) {
        *addr = p;
        return 0;
    }
    err = errno ? errno : EINVAL;
    if (err == ENOMEM || err == ENOSPC) {
        xm_error("map %u grant(s) from domain %u: %s: gntdev or Xen's "
                 "maptrack table is full; unmap unused grants or raise "
                 "gnttab_max_maptrack_frames", count, owner, strerror(err));
        return -err;
    }
    why = diagnose_map(x, owner, count, refs, writable, &bad);
    switch (why) {
    case -ESRCH:
        xm_error("map grant %u from domain %u: no such domain (it is gone "
                 "or the domid is wrong)", refs[bad], owner);
        return why;
    case -ENOENT:
    case -EPERM:
        xm_error("map grant %u from domain %u: %s: the ref was not granted "
                 "to this domain (%u) or has been revoked", refs[bad], owner,
                 strerror(-why), hv->domid);
        return why;
    case -EACCES:
        xm_error("map %u grant(s) from domain %u writable: a grant is "
                 "read-only; map it read-only", count, owner);
        return why;
    case -EAGAIN:
        xm_error("map grant %u from domain %u: Xen says try again",
                 refs[bad], owner);
        return why;
    default:
        break;
    }
    if (err == EINVAL && notify_port != -1)
        xm_error("map grant %u from domain %u: %s: notify port %d may not be "
                 "an event channel bound by this process", refs[0], owner,
                 strerror(err), notify_port);
    else
        xm_error("map %u grant(s) from domain %u: %s", count, owner,
                 strerror(err));
    return -err;
}

int xm_xen_unmap(xm_hv_t *hv, void *addr, unsigned count)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    if (!addr || count == 0)
        return -EINVAL;
    count_call(x);
    if (xengnttab_unmap(x->gnttab, addr, count)) {
        int err = errno ? errno : EINVAL;
        xm_error("unmap %u page(s) at %p: %s", count, addr, strerror(err));
        return -err;
    }
    return 0;
}

int xm_xen_copy(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned count)
{
    xm_hv_xen_t *x = to_xen_hv(hv);
    xengnttab_grant_copy_segment_t xs[XM_XEN_COPY_BATCH];
    unsigned idx[XM_XEN_COPY_BATCH];
    unsigned i = 0, n;
    int first = 0;

    while (i < count) {
        n = 0;
        for (; i < count && n < XM_XEN_COPY_BATCH; i++) {
            xm_copy_seg_t *s = &segs[i];
            xengnttab_grant_copy_segment_t *g = &xs[n];

            if ((unsigned)s->offset + s->len > XM_PAGE_SIZE ||
                s->domid >= XM_DOMID_FIRST_RESERVED || !s->local ||
                (s->dir != XM_COPY_FROM_FOREIGN &&
                 s->dir != XM_COPY_TO_FOREIGN)) {
                s->status = -EINVAL;
                continue;
            }
            memset(g, 0, sizeof(*g));
            if (s->dir == XM_COPY_FROM_FOREIGN) {
                g->source.foreign.ref = s->ref;
                g->source.foreign.offset = s->offset;
                g->source.foreign.domid = (uint16_t)s->domid;
                g->dest.virt = s->local;
                g->flags = XM_GNTCOPY_source_gref;
            } else {
                g->source.virt = s->local;
                g->dest.foreign.ref = s->ref;
                g->dest.foreign.offset = s->offset;
                g->dest.foreign.domid = (uint16_t)s->domid;
                g->flags = XM_GNTCOPY_dest_gref;
            }
            g->len = s->len;
            idx[n++] = i;
        }
        if (n == 0)
            continue;
        count_call(x);
        if (xengnttab_grant_copy(x->gnttab, n, xs)) {
            int err = errno ? errno : EIO;
            /* the ioctl itself failed (bad local address, no gntdev) */
            for (unsigned k = 0; k < n; k++)
                segs[idx[k]].status = (int16_t)-err;
        } else {
            for (unsigned k = 0; k < n; k++)
                segs[idx[k]].status = (int16_t)gntst_errno(xs[k].status);
        }
    }
    for (i = 0; i < count; i++) {
        if (segs[i].status) {
            first = segs[i].status;
            xm_debug("grant copy segment %u (%s domain %u ref %u off %u len "
                     "%u): %s", i,
                     segs[i].dir == XM_COPY_TO_FOREIGN ? "to" : "from",
                     segs[i].domid, segs[i].ref, segs[i].offset, segs[i].len,
                     strerror(-first));
            break;
        }
    }
    if (first) {
        const xm_copy_seg_t *s = &segs[i];
        if (first == -EINVAL && (unsigned)s->offset + s->len > XM_PAGE_SIZE)
            xm_error("grant copy: segment %u crosses the foreign page "
                     "(offset %u + len %u > %u)", i, s->offset, s->len,
                     XM_PAGE_SIZE);
        else if (first == -ESRCH)
            xm_error("grant copy %s domain %u: no such domain (gone or wrong "
                     "domid)", s->dir == XM_COPY_TO_FOREIGN ? "to" : "from",
                     s->domid);
        else
            xm_error("grant copy %s domain %u ref %u: %s: the ref is not "
                     "granted to this domain%s, or was revoked",
                     s->dir == XM_COPY_TO_FOREIGN ? "to" : "from", s->domid,
                     s->ref, strerror(-first),
                     s->dir == XM_COPY_TO_FOREIGN ? " writable" : "");
    }
    return first;
}
