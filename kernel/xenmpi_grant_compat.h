/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xenmpi_grant_compat.h - every kernel-version difference the module meets,
 * in one place.  Built and run on Debian 12's 6.1; the other branches follow
 * the upstream signatures and are compile-untested.
 */
#ifndef XENMPI_GRANT_COMPAT_H
#define XENMPI_GRANT_COMPAT_H

#include <linux/version.h>
#include <linux/mm.h>
#include <xen/grant_table.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 10, 0)
#error "xenmpi_grant needs Linux 5.10 or later (pin_user_pages, FOLL_LONGTERM)"
#endif
#if !IS_ENABLED(CONFIG_MMU_NOTIFIER)
#error "xenmpi_grant needs CONFIG_MMU_NOTIFIER (it watches granted ranges for munmap)"
#endif

/*
 * gnttab_try_end_foreign_access() (end a ref only if the peer does not use
 * it, and free the ref) came with the XSA-396 fixes: 5.17, backported to
 * 5.16.11, 5.15.25 and 5.10.102.  Without it, the same is built from
 * gnttab_end_foreign_access_ref(), whose "readonly" argument went away in
 * 5.18 (as did gnttab_end_foreign_access()'s, which now takes a struct
 * page; the module never uses that one: it hands the page to the grant
 * core to free, and pinned user pages must be unpinned, not freed).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 17, 0) || \
	(LINUX_VERSION_CODE >= KERNEL_VERSION(5, 16, 11) && \
	 LINUX_VERSION_CODE < KERNEL_VERSION(5, 17, 0)) || \
	(LINUX_VERSION_CODE >= KERNEL_VERSION(5, 15, 25) && \
	 LINUX_VERSION_CODE < KERNEL_VERSION(5, 16, 0)) || \
	(LINUX_VERSION_CODE >= KERNEL_VERSION(5, 10, 102) && \
	 LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0))
#define XMG_HAVE_TRY_END 1
#endif

/* true: the ref is ended and freed; false: the peer still uses it. */
static inline bool xmg_try_end_foreign_access(grant_ref_t ref)
{
#ifdef XMG_HAVE_TRY_END
	return gnttab_try_end_foreign_access(ref);
#else
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 18, 0)
	if (!gnttab_end_foreign_access_ref(ref))
		return false;
#else
	if (!gnttab_end_foreign_access_ref(ref, 0))
		return false;
#endif
	gnttab_free_grant_reference(ref);
	return true;
#endif
}

/* pin_user_pages() lost its vmas argument in 6.5. */
static inline long xmg_pin_user_pages(unsigned long start,
				      unsigned long nr_pages,
				      unsigned int gup_flags,
				      struct page **pages)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	return pin_user_pages(start, nr_pages, gup_flags, pages);
#else
	return pin_user_pages(start, nr_pages, gup_flags, pages, NULL);
#endif
}

#endif /* XENMPI_GRANT_COMPAT_H */
