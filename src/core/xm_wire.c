/* xm_wire.c - handshake record parsing: the record comes from a peer domain
 * through the store, so it is hostile input. */
#include "xm_wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* parse an unsigned decimal in [s, end); advance *s; -1 on anything else */
static int parse_u32(const char **s, const char *end, uint32_t *out)
{
    uint64_t v = 0;
    const char *p = *s;

    if (p >= end || *p < '0' || *p > '9')
        return -1;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -1;
        p++;
    }
    *s = p;
    *out = (uint32_t)v;
    return 0;
}

/* exactly 16 lowercase hex digits */
static int parse_key(const char **s, const char *end, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;

    if (end - p < 16)
        return -1;
    for (int i = 0; i < 16; i++, p++) {
        if (*p >= '0' && *p <= '9')
            v = v << 4 | (uint64_t)(*p - '0');
        else if (*p >= 'a' && *p <= 'f')
            v = v << 4 | (uint64_t)(*p - 'a' + 10);
        else
            return -1;
    }
    *s = p;
    *out = v;
    return 0;
}

int xm_hs_parse(const char *buf, size_t len, xm_hs_rec_t *out)
{
    enum { K_V, K_DOM, K_EP, K_KEY, K_CTRL, K_PORT, K_PAGES, K_REFS, K_N };
    static const char *const keys[K_N] = { "v=", "dom=", "ep=", "key=", "ctrl=", "port=",
                                           "pages=", "refs=" };
    const char *p = buf, *end = buf + len;
    uint32_t *fields[K_N] = { &out->version, &out->domid, &out->ep, NULL, &out->ctrl_ref,
                              &out->port, &out->pages, NULL };

    if (len == 0 || len > XM_HS_MAX_LEN)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    for (unsigned k = 0; k < K_N; k++) {
        size_t kl = strlen(keys[k]);
        if (k > 0) {
            if (p >= end || *p != ' ')
                return -EINVAL;
            p++;
        }
        if ((size_t)(end - p) < kl || memcmp(p, keys[k], kl))
            return -EINVAL;
        p += kl;
        if (k == K_KEY) {
            if (parse_key(&p, end, &out->key))
                return -EINVAL;
            continue;
        }
        if (k != K_REFS) {
            if (parse_u32(&p, end, fields[k]))
                return -EINVAL;
            continue;
        }
        if (out->version != XM_WIRE_VERSION || out->pages < XM_RING_MIN_PAGES ||
            out->pages > XM_RING_MAX_PAGES || (out->pages & (out->pages - 1)))
            return -EINVAL;
        for (uint32_t i = 0; i < out->pages; i++) {
            if (i && (p >= end || *p++ != ','))
                return -EINVAL;
            if (parse_u32(&p, end, &out->refs[i]))
                return -EINVAL;
        }
    }
    /* tolerate one trailing NUL or newline, nothing else */
    if (p < end && (*p == '\n' || *p == 0))
        p++;
    return p == end ? 0 : -EINVAL;
}

int xm_hs_format(const xm_hs_rec_t *rec, char *buf, size_t size)
{
    size_t n;
    int w;

    w = snprintf(buf, size, "v=%u dom=%u ep=%u key=%016" PRIx64 " ctrl=%u port=%u pages=%u "
                 "refs=", rec->version, rec->domid, rec->ep, rec->key, rec->ctrl_ref,
                 rec->port, rec->pages);
    if (w < 0 || (size_t)w >= size || rec->pages > XM_RING_MAX_PAGES)
        return -ENOSPC;
    n = (size_t)w;
    for (uint32_t i = 0; i < rec->pages; i++) {
        w = snprintf(buf + n, size - n, i ? ",%u" : "%u", rec->refs[i]);
        if (w < 0 || (size_t)w >= size - n)
            return -ENOSPC;
        n += (size_t)w;
    }
    return (int)n;
}

int xm_ring_next(const uint8_t *ring, uint32_t size, uint32_t cons, uint32_t avail,
                 size_t max_msg, struct xm_rec_hdr *hdr, uint32_t *rec)
{
    uint32_t off = cons & (size - 1);
    uint64_t w;

    if (avail > size || avail < sizeof(*hdr) || (off & (XM_REC_ALIGN - 1)))
        return -EPROTO;
    /* the only read of the header: one volatile 8-byte load, which the
     * compiler may neither repeat nor replace by reads of the ring later
     * (a memcpy it may turn into loads it makes again where the fields are
     * used, and the peer can rewrite the ring in between) */
    _Static_assert(sizeof(*hdr) == sizeof(w), "one load");
    w = *(const volatile uint64_t *)(const void *)(ring + off);
    memcpy(hdr, &w, sizeof(*hdr));
    if (hdr->flags != 0)
        return -EPROTO;   /* none defined in version 1 */
    if (hdr->type == XM_REC_PAD) {
        *rec = size - off;
        if (hdr->len != *rec - sizeof(*hdr) || *rec > avail)
            return -EPROTO;
        return 0;
    }
    if (hdr->len > max_msg)
        return -EPROTO;
    *rec = (uint32_t)XM_REC_SIZE(hdr->len);
    if (*rec > avail || off + *rec > size)
        return -EPROTO;
    return 0;
}

/* ---- zero-copy messages ---- */

int xm_zc_parse_greq(const void *data, size_t len, struct xm_zc_greq *out)
{
    if (len != sizeof(*out))
        return -EPROTO;
    memcpy(out, data, sizeof(*out));
    return 0;   /* flags, id and chunk are the owner's to judge: it answers why */
}

int xm_zc_grep_status_known(int32_t s)
{
    return s == 0 || s == -ENOSPC || s == -ENOENT || s == -EFAULT || s == -EACCES ||
           s == -EINVAL || s == -ENOMEM || s == -ENODEV || s == -EPERM || s == -EEXIST ||
           s == -EOPNOTSUPP;
}

int xm_zc_parse_grep(const void *data, size_t len, struct xm_zc_grep *out, uint32_t *refs)
{
    if (len < sizeof(*out))
        return -EPROTO;
    memcpy(out, data, sizeof(*out));
    if (out->status > 0 || (out->flags & ~XM_ZC_F_WRITE) ||
        (out->status == 0 && (out->npages == 0 || out->npages > XM_ZC_MAX_REFS)) ||
        (out->status != 0 && out->npages != 0) ||
        len != sizeof(*out) + (size_t)out->npages * sizeof(uint32_t))
        return -EPROTO;
    memcpy(refs, (const uint8_t *)data + sizeof(*out), out->npages * sizeof(uint32_t));
    return 0;
}

int xm_zc_parse_grant_ref(const void *data, size_t len, struct xm_zc_grant_ref *out)
{
    if (len != sizeof(*out))
        return -EPROTO;
    memcpy(out, data, sizeof(*out));
    return 0;
}

/* ---- emulated RMA ---- */

int xm_rma_parse(uint16_t type, const void *data, size_t len, struct xm_rma_hdr *out,
                 size_t *plen)
{
    if (len < sizeof(*out))
        return -EPROTO;
    memcpy(out, data, sizeof(*out));
    *plen = len - sizeof(*out);
    switch (type) {
    case XM_REC_RMA_PUT:
        return out->status == 0 && out->req == 0 && *plen == out->len ? 0 : -EPROTO;
    case XM_REC_RMA_GET_REQ:
        return out->status == 0 && *plen == 0 ? 0 : -EPROTO;
    case XM_REC_RMA_GET_REP:
        if (out->status > 0)
            return -EPROTO;
        return (out->status == 0 ? *plen == out->len : *plen == 0) ? 0 : -EPROTO;
    case XM_REC_RMA_PUSH_REQ:
        return out->status == 0 && *plen == sizeof(struct xm_rma_push) ? 0 : -EPROTO;
    case XM_REC_RMA_PUSH_REP:
        return out->status <= 0 && *plen == 0 ? 0 : -EPROTO;
    default:
        return -EPROTO;
    }
}

int xm_rma_parse_push(const void *payload, size_t plen, struct xm_rma_push *out)
{
    if (plen != sizeof(*out))
        return -EPROTO;
    memcpy(out, payload, sizeof(*out));
    return 0;
}

uint64_t xm_fnv1a64(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

int xm_ep_addr_reachable(const xm_ep_addr_t *self, const xm_ep_addr_t *peer)
{
    /* grants and event channels do not cross hosts */
    return self->host_hash == peer->host_hash;
}
