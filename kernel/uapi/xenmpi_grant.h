/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * xenmpi_grant.h - user API of the xenmpi_grant module (/dev/xenmpi_grant):
 * grant pages a process already owns to one peer Xen domain.
 *
 * Shared by the kernel module (kernel/xenmpi_grant.c), user space (the xen
 * backend of src/core) and any stand-in that implements the same calls.
 * Layout rules: fixed-width fields only, explicit padding (must be 0), every
 * struct is a multiple of 8 bytes and the same on 32- and 64-bit ABIs
 * (pointers travel as __u64), and each struct starts with its own size,
 * which the kernel compares with the size it knows.  The sizes are also
 * encoded in the ioctl numbers (_IOWR), so a caller built against another
 * layout gets ENOTTY rather than a misread.  Static asserts at the end pin
 * every offset.  docs/kernel.md describes the semantics and the errors.
 */
#ifndef XENMPI_GRANT_UAPI_H
#define XENMPI_GRANT_UAPI_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define XENMPI_GRANT_API_VERSION 2u
#define XENMPI_GRANT_DEVICE "/dev/xenmpi_grant"
#define XENMPI_GRANT_IOC_MAGIC 0xB9

/* Granularity of everything below: Xen's 4 KiB page. */
#define XENMPI_GRANT_PAGE_SIZE 4096u
#define XENMPI_GRANT_REF_INVALID 0xffffffffu
/* Domain ids from here on are Xen's reserved ids (DOMID_SELF, ...). */
#define XENMPI_GRANT_DOMID_FIRST_RESERVED 0x7ff0u

/* xenmpi_grant_req.flags */
#define XENMPI_GRANT_READONLY  (1u << 0) /* the peer may only read */
#define XENMPI_GRANT_DIRECTORY (1u << 1) /* also build a grant directory */
#define XENMPI_GRANT_FLAGS_ALL (XENMPI_GRANT_READONLY | XENMPI_GRANT_DIRECTORY)

/*
 * XENMPI_IOC_GRANT: pin [addr, addr + len) of the calling process and grant
 * every page to domid.  addr and len are multiples of 4096, len > 0.
 * refs (if not 0) receives one grant ref per page, in order; nr_refs is its
 * capacity in entries on input and the number written on output.  With
 * XENMPI_GRANT_DIRECTORY the module also grants, read-only, a directory
 * (struct xenmpi_grant_dir below) and returns its root ref in dir_ref, so
 * the peer needs one ref for any size; refs may then be 0.
 */
struct xenmpi_grant_req {
	__u32 size;         /* IN: sizeof(struct xenmpi_grant_req) */
	__u32 flags;        /* IN: XENMPI_GRANT_* */
	__u32 domid;        /* IN: the one peer domain */
	__u32 nr_refs;      /* IN: capacity of refs[]; OUT: entries written */
	__u64 addr;         /* IN: start, page aligned */
	__u64 len;          /* IN: bytes, a multiple of 4096, > 0 */
	__u64 refs;         /* IN: user pointer to __u32[nr_refs], or 0 */
	__u64 handle;       /* OUT: names the grant for XENMPI_IOC_END */
	__u32 dir_ref;      /* OUT: root directory ref, or REF_INVALID */
	__u32 nr_pages;     /* OUT: len / 4096 */
	__u32 nr_dir_pages; /* OUT: directory pages granted (0 without) */
	__u32 pad;          /* IN: 0 */
};

/*
 * XENMPI_IOC_END: end a grant of this file.  Pages the peer no longer uses
 * are unpinned at once; refs the peer still maps stay valid and their pages
 * stay pinned until it unmaps them (the module retries in the background),
 * so no page is ever freed or reused under the peer.  The handle is gone
 * either way: ending it again fails with ENOENT.
 */
struct xenmpi_grant_end {
	__u32 size;         /* IN: sizeof(struct xenmpi_grant_end) */
	__u32 flags;        /* IN: 0 */
	__u64 handle;       /* IN */
	__u32 deferred;     /* OUT: refs still in use by the peer */
	__u32 pad;          /* IN: 0 */
};

/*
 * XENMPI_IOC_INFO: limits and counters.  "file_*" counts what this open
 * file granted (ended grants included while their release is deferred);
 * "total_*" all files, including files already closed whose release is
 * deferred.  Pages are user pages; dir pages are the module's own
 * directory pages.  Counters only go back to zero once the peers let go.
 */
struct xenmpi_grant_info {
	__u32 size;                 /* IN: sizeof(struct xenmpi_grant_info) */
	__u32 api_version;          /* XENMPI_GRANT_API_VERSION */
	__u32 max_pages_per_file;   /* module parameter (pages + dir pages) */
	__u32 max_pages;            /* module parameter, all files */
	__u32 dir_root_refs;        /* XENMPI_GRANT_DIR_ROOT_REFS */
	__u32 dir_leaf_refs;        /* XENMPI_GRANT_DIR_LEAF_REFS */
	__u64 memlock_limit;        /* caller's RLIMIT_MEMLOCK in bytes
	                               (~0 = unlimited) */
	__u64 mm_pinned_pages;      /* pinned_vm of the opener's mm (every
	                               long-term pin of it, not only ours) */
	__u64 file_grants;          /* live handles */
	__u64 file_pages;           /* user pages pinned */
	__u64 file_dir_pages;
	__u64 file_deferred_refs;   /* refs of ended grants the peer still uses */
	__u64 total_grants;
	__u64 total_pages;
	__u64 total_dir_pages;
	__u64 total_deferred_refs;
	__u64 total_deferred_done;  /* deferred refs released later, ever */
	__u64 total_granted;        /* grants made, ever */
};

/*
 * XENMPI_IOC_STALE (api 2): the live grants of this file whose range a
 * memory event of the opener's mm has touched since they were made:
 * munmap, mremap, madvise(MADV_DONTNEED), anything that may put other pages
 * at those addresses (write protection, as for fork or mprotect, does not
 * count).  The grant itself still holds the pages it pinned, so a peer
 * reads what was there, never what is mapped there now; the owner learns
 * here that the grant no longer shows its memory and should end it.  Each
 * grant is reported once: at most max handles are written to handles[]
 * (__u64 each), nr says how many, more is 1 when others wait for the next
 * call.  With nothing new since the last call, nr is 0 at the cost of one
 * atomic read.
 */
struct xenmpi_grant_stale {
	__u32 size;         /* IN: sizeof(struct xenmpi_grant_stale) */
	__u32 max;          /* IN: capacity of handles[], <= 1024 */
	__u64 handles;      /* IN: user pointer to __u64[max] */
	__u32 nr;           /* OUT: handles written */
	__u32 more;         /* OUT: 1: more stale grants wait */
};

#define XENMPI_IOC_GRANT _IOWR(XENMPI_GRANT_IOC_MAGIC, 1, struct xenmpi_grant_req)
#define XENMPI_IOC_END   _IOWR(XENMPI_GRANT_IOC_MAGIC, 2, struct xenmpi_grant_end)
#define XENMPI_IOC_INFO  _IOWR(XENMPI_GRANT_IOC_MAGIC, 3, struct xenmpi_grant_info)
#define XENMPI_IOC_STALE _IOWR(XENMPI_GRANT_IOC_MAGIC, 4, struct xenmpi_grant_stale)
#define XENMPI_GRANT_STALE_MAX 1024u

/*
 * The grant directory: what the peer reads through dir_ref.  Little-endian
 * (the byte order of every Xen guest ABI).  The root page holds the header
 * and either the data refs themselves (nr_pages <= DIR_ROOT_REFS,
 * nr_leaves == 0) or the refs of nr_leaves leaf pages, each a
 * __u32[DIR_LEAF_REFS] of data refs in order, the last one used only up to
 * nr_pages.  All directory pages are granted read-only to the same peer
 * and ended with the grant.  The peer must treat the page as hostile: copy
 * it once, check magic, version, nr_pages against what it expected and
 * nr_leaves == xenmpi_grant_dir_leaves(nr_pages) before using any ref.
 */
#define XENMPI_GRANT_DIR_MAGIC 0x44474d58u /* "XMGD" */
#define XENMPI_GRANT_DIR_VERSION 1u
#define XENMPI_GRANT_DIR_HEADER 32u
#define XENMPI_GRANT_DIR_ROOT_REFS \
	((XENMPI_GRANT_PAGE_SIZE - XENMPI_GRANT_DIR_HEADER) / 4u) /* 1016 */
#define XENMPI_GRANT_DIR_LEAF_REFS (XENMPI_GRANT_PAGE_SIZE / 4u) /* 1024 */
#define XENMPI_GRANT_DIR_MAX_PAGES \
	(XENMPI_GRANT_DIR_ROOT_REFS * XENMPI_GRANT_DIR_LEAF_REFS)

struct xenmpi_grant_dir {
	__u32 magic;        /* XENMPI_GRANT_DIR_MAGIC */
	__u16 version;      /* XENMPI_GRANT_DIR_VERSION */
	__u16 flags;        /* XENMPI_GRANT_READONLY when the data is read-only */
	__u32 nr_pages;     /* data pages */
	__u32 nr_leaves;    /* leaf pages, 0 when the root holds the data refs */
	__u64 len;          /* nr_pages * 4096 */
	__u64 reserved;     /* 0 */
	__u32 refs[XENMPI_GRANT_DIR_ROOT_REFS];
};

/* Leaf pages a directory of nr_pages data pages uses (0: refs in the root). */
static inline __u32 xenmpi_grant_dir_leaves(__u32 nr_pages)
{
	if (nr_pages <= XENMPI_GRANT_DIR_ROOT_REFS)
		return 0;
	return (nr_pages + XENMPI_GRANT_DIR_LEAF_REFS - 1) /
	       XENMPI_GRANT_DIR_LEAF_REFS;
}

/* Layout proofs: every field at the offset documented above. */
#ifdef __cplusplus
#define XENMPI_GRANT_ASSERT(c) static_assert(c, #c)
#else
#define XENMPI_GRANT_ASSERT(c) _Static_assert(c, #c)
#endif
#define XENMPI_GRANT_OFF(t, f, o) \
	XENMPI_GRANT_ASSERT(__builtin_offsetof(struct t, f) == (o))

XENMPI_GRANT_ASSERT(sizeof(struct xenmpi_grant_req) == 64);
XENMPI_GRANT_OFF(xenmpi_grant_req, size, 0);
XENMPI_GRANT_OFF(xenmpi_grant_req, flags, 4);
XENMPI_GRANT_OFF(xenmpi_grant_req, domid, 8);
XENMPI_GRANT_OFF(xenmpi_grant_req, nr_refs, 12);
XENMPI_GRANT_OFF(xenmpi_grant_req, addr, 16);
XENMPI_GRANT_OFF(xenmpi_grant_req, len, 24);
XENMPI_GRANT_OFF(xenmpi_grant_req, refs, 32);
XENMPI_GRANT_OFF(xenmpi_grant_req, handle, 40);
XENMPI_GRANT_OFF(xenmpi_grant_req, dir_ref, 48);
XENMPI_GRANT_OFF(xenmpi_grant_req, nr_pages, 52);
XENMPI_GRANT_OFF(xenmpi_grant_req, nr_dir_pages, 56);
XENMPI_GRANT_OFF(xenmpi_grant_req, pad, 60);

XENMPI_GRANT_ASSERT(sizeof(struct xenmpi_grant_end) == 24);
XENMPI_GRANT_OFF(xenmpi_grant_end, size, 0);
XENMPI_GRANT_OFF(xenmpi_grant_end, flags, 4);
XENMPI_GRANT_OFF(xenmpi_grant_end, handle, 8);
XENMPI_GRANT_OFF(xenmpi_grant_end, deferred, 16);
XENMPI_GRANT_OFF(xenmpi_grant_end, pad, 20);

XENMPI_GRANT_ASSERT(sizeof(struct xenmpi_grant_stale) == 24);
XENMPI_GRANT_OFF(xenmpi_grant_stale, size, 0);
XENMPI_GRANT_OFF(xenmpi_grant_stale, max, 4);
XENMPI_GRANT_OFF(xenmpi_grant_stale, handles, 8);
XENMPI_GRANT_OFF(xenmpi_grant_stale, nr, 16);
XENMPI_GRANT_OFF(xenmpi_grant_stale, more, 20);

XENMPI_GRANT_ASSERT(sizeof(struct xenmpi_grant_info) == 120);
XENMPI_GRANT_OFF(xenmpi_grant_info, size, 0);
XENMPI_GRANT_OFF(xenmpi_grant_info, api_version, 4);
XENMPI_GRANT_OFF(xenmpi_grant_info, max_pages_per_file, 8);
XENMPI_GRANT_OFF(xenmpi_grant_info, max_pages, 12);
XENMPI_GRANT_OFF(xenmpi_grant_info, dir_root_refs, 16);
XENMPI_GRANT_OFF(xenmpi_grant_info, dir_leaf_refs, 20);
XENMPI_GRANT_OFF(xenmpi_grant_info, memlock_limit, 24);
XENMPI_GRANT_OFF(xenmpi_grant_info, mm_pinned_pages, 32);
XENMPI_GRANT_OFF(xenmpi_grant_info, file_grants, 40);
XENMPI_GRANT_OFF(xenmpi_grant_info, file_pages, 48);
XENMPI_GRANT_OFF(xenmpi_grant_info, file_dir_pages, 56);
XENMPI_GRANT_OFF(xenmpi_grant_info, file_deferred_refs, 64);
XENMPI_GRANT_OFF(xenmpi_grant_info, total_grants, 72);
XENMPI_GRANT_OFF(xenmpi_grant_info, total_pages, 80);
XENMPI_GRANT_OFF(xenmpi_grant_info, total_dir_pages, 88);
XENMPI_GRANT_OFF(xenmpi_grant_info, total_deferred_refs, 96);
XENMPI_GRANT_OFF(xenmpi_grant_info, total_deferred_done, 104);
XENMPI_GRANT_OFF(xenmpi_grant_info, total_granted, 112);

XENMPI_GRANT_ASSERT(sizeof(struct xenmpi_grant_dir) == XENMPI_GRANT_PAGE_SIZE);
XENMPI_GRANT_OFF(xenmpi_grant_dir, magic, 0);
XENMPI_GRANT_OFF(xenmpi_grant_dir, version, 4);
XENMPI_GRANT_OFF(xenmpi_grant_dir, flags, 6);
XENMPI_GRANT_OFF(xenmpi_grant_dir, nr_pages, 8);
XENMPI_GRANT_OFF(xenmpi_grant_dir, nr_leaves, 12);
XENMPI_GRANT_OFF(xenmpi_grant_dir, len, 16);
XENMPI_GRANT_OFF(xenmpi_grant_dir, reserved, 24);
XENMPI_GRANT_OFF(xenmpi_grant_dir, refs, XENMPI_GRANT_DIR_HEADER);

#undef XENMPI_GRANT_OFF
#undef XENMPI_GRANT_ASSERT

#endif /* XENMPI_GRANT_UAPI_H */
