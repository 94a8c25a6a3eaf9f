// SPDX-License-Identifier: GPL-2.0
/*
 * xenmpi_grant.c - grant pages a process already owns to one peer domain.
 *
 * gntalloc can only share pages it allocates itself; zero-copy MPI needs the
 * application's own send and receive buffers.  This misc device pins a user
 * range (FOLL_LONGTERM, charged to RLIMIT_MEMLOCK through pinned_vm and
 * bounded by module parameters) and grants every page to one domain,
 * read-only or read-write, optionally with a read-only grant directory so
 * the peer needs a single ref.  The user API is uapi/xenmpi_grant.h;
 * docs/kernel.md has the whole story.
 *
 * Lifetimes.  A grant belongs to the open file that made it (struct
 * xmg_file).  Ending it, closing the file or the process dying ends every
 * ref the peer does not use and unpins that page at once.  A ref the peer
 * still maps cannot be ended: its page stays pinned (never freed, never
 * reused, so the peer can only ever see what it was given) and the grant
 * moves to a module-wide deferred list that a delayed work retries until
 * the peer lets go.  Deferred grants keep their file's accounting alive
 * (the xmg_file is reference counted, its mm is grabbed) and keep the
 * module loaded, so rmmod cannot pull the code from under them.
 *
 * Stale grants.  A grant pins the pages that were mapped when it was
 * made; if the process later unmaps or replaces them (munmap, mremap,
 * madvise(MADV_DONTNEED)), the peer keeps reading the old pages while
 * the process sees new ones at the same addresses.  Each live grant
 * therefore watches its range with an MMU interval notifier, marks itself
 * stale on such an event and bumps its file's stale generation;
 * XENMPI_IOC_STALE reports each stale grant once, so user space ends it
 * and never hands out its refs again.
 *
 * Everything from user space is hostile: each ioctl copies its struct in
 * once, validates it completely (sizes, flags, padding, alignment, overflow,
 * domid, limits) and only then acts; a failure leaves no trace.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/compat.h>
#include <linux/fs.h>
#include <linux/hugetlb.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include <xen/grant_table.h>
#include <xen/page.h>
#include <xen/xen.h>
#include <xen/xenbus.h>

#include "uapi/xenmpi_grant.h"
#include "xenmpi_grant_compat.h"

/* Hard ceiling for the parameters: the directory format's maximum. */
#define XMG_HARD_MAX_PAGES XENMPI_GRANT_DIR_MAX_PAGES

static unsigned int max_pages_per_file = 8192;
module_param(max_pages_per_file, uint, 0644);
MODULE_PARM_DESC(max_pages_per_file,
		 "pages (user pages plus directory pages) one open file may have granted, ended grants included until the peer lets go (default 8192 = 32 MiB)");

static unsigned int max_pages = 16384;
module_param(max_pages, uint, 0644);
MODULE_PARM_DESC(max_pages,
		 "pages all files together may have granted, including grants kept pinned because a peer still maps them (default 16384 = 64 MiB)");

static unsigned int max_pages_per_domain = 8192;
module_param(max_pages_per_domain, uint, 0644);
MODULE_PARM_DESC(max_pages_per_domain,
		 "pages all files together may have granted to one peer domain, ended grants it still maps included (default 8192 = 32 MiB): one peer cannot take all of max_pages");

static unsigned int table_reserve = 1024;
module_param(table_reserve, uint, 0644);
MODULE_PARM_DESC(table_reserve,
		 "grant refs of this domain's grant table that grants through this module leave free for gntalloc and the PV drivers (default 1024, gntalloc's default limit; 0: none). Keep it at least gntalloc's limit: on Linux 6.1 a gntalloc allocation that meets a full table leaves gntalloc unable to share until reboot");

static unsigned int retry_ms = 100;
module_param(retry_ms, uint, 0644);
MODULE_PARM_DESC(retry_ms,
		 "interval of the retries that end grants a peer still mapped when they were ended (default 100 ms)");

struct xmg_file {
	struct kref kref;          /* the open file + each grant */
	struct mutex lock;         /* grants; serialises GRANT and END */
	struct list_head grants;   /* live grants (handles) */
	struct mm_struct *mm;      /* the opener's, mmgrab()ed */
	atomic64_t charged;        /* pages + dir pages, for the limit */
	atomic64_t nr_grants;
	atomic64_t nr_pages;
	atomic64_t nr_dir_pages;
	atomic64_t nr_deferred;
	atomic64_t stale_gen;      /* bumped when a grant turns stale */
	u64 stale_seen;            /* stale_gen when all were reported (lock) */
};

struct xmg_grant {
	struct list_head node;     /* file->grants, then xmg_deferred */
	struct xmg_file *file;     /* holds a kref */
	u64 handle;
	unsigned long addr;
	unsigned long nr_pages;
	unsigned int nr_dir;
	domid_t domid;
	bool readonly;
	bool deferred;             /* on xmg_deferred (counted there) */
	unsigned long pending;     /* refs not yet ended */
	unsigned long warn_at;     /* jiffies: next "still mapped" warning */
	struct mmu_interval_notifier mn;
	bool mn_on;                /* mn is inserted */
	atomic_t stale;            /* a memory event touched the range */
	bool stale_told;           /* reported by XENMPI_IOC_STALE (lock) */
	struct page **pages;       /* NULL once unpinned */
	grant_ref_t *refs;         /* XENMPI_GRANT_REF_INVALID once ended */
	struct page **dir_pages;   /* NULL once freed */
	grant_ref_t *dir_refs;
};

static DEFINE_MUTEX(xmg_deferred_lock);
static LIST_HEAD(xmg_deferred);
static void xmg_retry(struct work_struct *work);
static DECLARE_DELAYED_WORK(xmg_retry_work, xmg_retry);

static atomic64_t xmg_charged = ATOMIC64_INIT(0);
/* what is charged per peer domain (domids below DOMID_FIRST_RESERVED) */
static atomic_long_t xmg_dom_charged[XENMPI_GRANT_DOMID_FIRST_RESERVED];
static atomic64_t xmg_grants = ATOMIC64_INIT(0);
static atomic64_t xmg_pages = ATOMIC64_INIT(0);
static atomic64_t xmg_dir_pages = ATOMIC64_INIT(0);
static atomic64_t xmg_deferred_refs = ATOMIC64_INIT(0);
static atomic64_t xmg_deferred_done = ATOMIC64_INIT(0);
static atomic64_t xmg_granted = ATOMIC64_INIT(0);
static atomic64_t xmg_next_handle = ATOMIC64_INIT(0);

static unsigned long xmg_limit(const unsigned int *param)
{
	return min_t(unsigned long, READ_ONCE(*param), XMG_HARD_MAX_PAGES);
}

/* ------------------------------------------------------------------ */
/* files */

static void xmg_file_free(struct kref *kref)
{
	struct xmg_file *f = container_of(kref, struct xmg_file, kref);

	WARN_ON(atomic64_read(&f->charged) || atomic64_read(&f->nr_pages));
	mmdrop(f->mm);
	kfree(f);
}

static void xmg_file_put(struct xmg_file *f)
{
	kref_put(&f->kref, xmg_file_free);
}

/* ------------------------------------------------------------------ */
/* ending refs */

/*
 * End every ref of g the peer does not use and release its page.  Runs
 * with g off any list other than xmg_deferred (and then under
 * xmg_deferred_lock), so nothing else touches g meanwhile.  Returns the
 * refs still pending.
 */
static unsigned long xmg_release(struct xmg_grant *g)
{
	struct xmg_file *f = g->file;
	unsigned long i, done = 0, pages = 0, dirs = 0;

	/* the directory first: it names the data refs */
	for (i = 0; i < g->nr_dir; i++) {
		if (g->dir_refs[i] != XENMPI_GRANT_REF_INVALID) {
			if (!xmg_try_end_foreign_access(g->dir_refs[i]))
				continue;
			g->dir_refs[i] = XENMPI_GRANT_REF_INVALID;
			done++;
		}
		if (g->dir_pages[i]) {
			__free_page(g->dir_pages[i]);
			g->dir_pages[i] = NULL;
			dirs++;
		}
	}
	for (i = 0; i < g->nr_pages; i++) {
		if (g->refs[i] != XENMPI_GRANT_REF_INVALID) {
			if (!xmg_try_end_foreign_access(g->refs[i]))
				continue;
			g->refs[i] = XENMPI_GRANT_REF_INVALID;
			done++;
		}
		if (g->pages[i]) {
			/* the peer may have written a read-write page */
			unpin_user_pages_dirty_lock(&g->pages[i], 1,
						    !g->readonly);
			g->pages[i] = NULL;
			pages++;
		}
	}
	g->pending -= done;
	if (pages) {
		atomic64_sub(pages, &f->mm->pinned_vm);
		atomic64_sub(pages, &f->nr_pages);
		atomic64_sub(pages, &xmg_pages);
	}
	if (dirs) {
		atomic64_sub(dirs, &f->nr_dir_pages);
		atomic64_sub(dirs, &xmg_dir_pages);
	}
	if (pages + dirs) {
		atomic64_sub(pages + dirs, &f->charged);
		atomic64_sub(pages + dirs, &xmg_charged);
		atomic_long_sub(pages + dirs, &xmg_dom_charged[g->domid]);
	}
	if (g->deferred && done) {
		atomic64_sub(done, &f->nr_deferred);
		atomic64_sub(done, &xmg_deferred_refs);
		atomic64_add(done, &xmg_deferred_done);
	}
	return g->pending;
}

/* Pages and dir pages of g that were charged but never pinned or
 * allocated (a grant that failed half way). */
static void xmg_uncharge_unused(struct xmg_grant *g, unsigned long n)
{
	if (!n)
		return;
	atomic64_sub(n, &g->file->charged);
	atomic64_sub(n, &xmg_charged);
	atomic_long_sub(n, &xmg_dom_charged[g->domid]);
}

/*
 * A memory event in a live grant's range.  Write protection (fork's
 * copy-on-write setup, mprotect, soft-dirty) leaves the pinned pages
 * where they are; anything else may put other pages at these addresses.
 * Never sleeps, takes no lock.
 */
static bool xmg_mn_invalidate(struct mmu_interval_notifier *mn,
			      const struct mmu_notifier_range *range,
			      unsigned long cur_seq)
{
	struct xmg_grant *g = container_of(mn, struct xmg_grant, mn);

	mmu_interval_set_seq(mn, cur_seq);
	switch (range->event) {
	case MMU_NOTIFY_PROTECTION_VMA:
	case MMU_NOTIFY_PROTECTION_PAGE:
	case MMU_NOTIFY_SOFT_DIRTY:
		return true;
	default:
		break;
	}
	if (!atomic_xchg(&g->stale, 1))
		atomic64_inc(&g->file->stale_gen);
	return true;
}

static const struct mmu_interval_notifier_ops xmg_mn_ops = {
	.invalidate = xmg_mn_invalidate,
};

/* Stop watching g's range; waits for a running invalidation. */
static void xmg_mn_remove(struct xmg_grant *g)
{
	if (g->mn_on) {
		mmu_interval_notifier_remove(&g->mn);
		g->mn_on = false;
	}
}

static void xmg_grant_free(struct xmg_grant *g)
{
	xmg_mn_remove(g);
	xmg_file_put(g->file);
	kvfree(g->pages);
	kvfree(g->refs);
	kfree(g->dir_pages);
	kfree(g->dir_refs);
	kfree(g);
}

/*
 * The grant is no longer reachable by its handle: release what the peer
 * lets go of now, hand the rest to the retry work.  Returns the refs
 * deferred.
 */
static unsigned long xmg_end(struct xmg_grant *g)
{
	unsigned long pending;

	xmg_mn_remove(g);
	pending = xmg_release(g);

	if (!pending) {
		xmg_grant_free(g);
		return 0;
	}
	/* Keep the code around for as long as pages are pinned for a peer. */
	__module_get(THIS_MODULE);
	mutex_lock(&xmg_deferred_lock);
	g->deferred = true;
	g->warn_at = jiffies + 60 * HZ;
	atomic64_add(pending, &g->file->nr_deferred);
	atomic64_add(pending, &xmg_deferred_refs);
	list_add_tail(&g->node, &xmg_deferred);
	mod_delayed_work(system_wq, &xmg_retry_work,
			 msecs_to_jiffies(max(READ_ONCE(retry_ms), 1u)));
	mutex_unlock(&xmg_deferred_lock);
	pr_debug("grant %llu to domain %u: %lu refs still mapped, deferred\n",
		 g->handle, g->domid, pending);
	return pending;
}

static void xmg_retry(struct work_struct *work)
{
	struct xmg_grant *g, *tmp;
	unsigned long freed = 0;

	mutex_lock(&xmg_deferred_lock);
	list_for_each_entry_safe(g, tmp, &xmg_deferred, node) {
		if (!xmg_release(g)) {
			list_del(&g->node);
			xmg_grant_free(g);
			freed++;
			continue;
		}
		if (time_after(jiffies, g->warn_at)) {
			pr_warn("domain %u still maps %lu pages of an ended grant; they stay pinned until it unmaps them\n",
				g->domid, g->pending);
			g->warn_at = jiffies + 600 * HZ;
		}
	}
	if (!list_empty(&xmg_deferred))
		mod_delayed_work(system_wq, &xmg_retry_work,
				 msecs_to_jiffies(max(READ_ONCE(retry_ms), 1u)));
	mutex_unlock(&xmg_deferred_lock);
	/*
	 * Drop the module references last: module_exit cancels this work
	 * synchronously, so the code stays until we return.
	 */
	while (freed--)
		module_put(THIS_MODULE);
}

/* ------------------------------------------------------------------ */
/* granting */

/* pinned_vm against RLIMIT_MEMLOCK, as RDMA and io_uring account. */
static int xmg_account_pinned(struct mm_struct *mm, unsigned long n)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	u64 now = atomic64_add_return(n, &mm->pinned_vm);

	if (now > limit && !capable(CAP_IPC_LOCK)) {
		atomic64_sub(n, &mm->pinned_vm);
		return -ENOMEM;
	}
	return 0;
}

/*
 * Every page of [start, end) must be mapped and readable; for a
 * read-write grant writable and anonymous, shmem or hugetlbfs memory (a
 * long-term writable pin of other file pages bypasses the filesystem's
 * dirty tracking).  Called with the mmap lock held.
 */
static int xmg_check_vmas(struct mm_struct *mm, unsigned long start,
			  unsigned long end, bool rw)
{
	unsigned long cur = start;

	while (cur < end) {
		struct vm_area_struct *vma = find_vma(mm, cur);

		if (!vma || vma->vm_start > cur)
			return -EFAULT;
		if (vma->vm_flags & (VM_IO | VM_PFNMAP))
			return -EOPNOTSUPP;
		if (!(vma->vm_flags & VM_READ))
			return -EACCES;
		if (rw && !(vma->vm_flags & VM_WRITE))
			return -EACCES;
		if (rw && vma->vm_file && !vma_is_anonymous(vma) &&
		    !shmem_mapping(vma->vm_file->f_mapping) &&
		    !is_vm_hugetlb_page(vma))
			return -EOPNOTSUPP;
		cur = vma->vm_end;
	}
	return 0;
}

static int xmg_pin(struct xmg_file *f, struct xmg_grant *g)
{
	unsigned int gup = FOLL_LONGTERM | (g->readonly ? 0 : FOLL_WRITE);
	unsigned long done = 0;
	int rc;

	mmap_read_lock(f->mm);
	rc = xmg_check_vmas(f->mm, g->addr,
			    g->addr + (g->nr_pages << PAGE_SHIFT), !g->readonly);
	while (!rc && done < g->nr_pages) {
		long n = xmg_pin_user_pages(g->addr + (done << PAGE_SHIFT),
					    g->nr_pages - done, gup,
					    g->pages + done);
		if (n <= 0)
			rc = n ? (int)n : -EFAULT;
		else
			done += n;
	}
	mmap_read_unlock(f->mm);
	if (rc) {
		unpin_user_pages(g->pages, done);
		memset(g->pages, 0, done * sizeof(*g->pages));
		return rc;
	}
	atomic64_add(done, &f->nr_pages);
	atomic64_add(done, &xmg_pages);
	return 0;
}

/*
 * Room in the domain's grant table for count refs plus table_reserve:
 * taken from the free list and given back at once, before any is granted
 * (a request that does not fit changes nothing).  Not atomic with the
 * grants that follow: an allocation elsewhere in between can still find
 * less than the reserve.  At most 65535 refs are checked
 * (gnttab_alloc_grant_references() counts in u16).
 */
static int xmg_table_room(unsigned long count)
{
	unsigned int reserve = READ_ONCE(table_reserve);	/* one value for both uses */
	unsigned long want = count + reserve;
	grant_ref_t head;

	if (!reserve)
		return 0;
	if (gnttab_alloc_grant_references((u16)min_t(unsigned long, want, U16_MAX),
					  &head))
		return -ENOSPC;
	gnttab_free_grant_references(head);
	return 0;
}

/* Grant the pinned pages, then build and grant the directory. */
static int xmg_grant_refs(struct xmg_grant *g)
{
	unsigned long i;
	unsigned int leaves = g->nr_dir ? g->nr_dir - 1 : 0;
	int ref;

	ref = xmg_table_room(g->nr_pages + g->nr_dir);
	if (ref)
		return ref;
	for (i = 0; i < g->nr_pages; i++) {
		ref = gnttab_grant_foreign_access(g->domid,
						  xen_page_to_gfn(g->pages[i]),
						  g->readonly);
		if (ref < 0)
			return ref;
		g->refs[i] = ref;
		g->pending++;
	}
	if (!g->nr_dir)
		return 0;

	for (i = 0; i < g->nr_dir; i++) {
		g->dir_pages[i] = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
		if (!g->dir_pages[i])
			return -ENOMEM;
		atomic64_inc(&g->file->nr_dir_pages);
		atomic64_inc(&xmg_dir_pages);
	}
	/* leaves: data refs in order; each granted before the root names it */
	for (i = 0; i < leaves; i++) {
		u32 *leaf = page_address(g->dir_pages[1 + i]);
		unsigned long first = i * XENMPI_GRANT_DIR_LEAF_REFS;
		unsigned long n = min_t(unsigned long, XENMPI_GRANT_DIR_LEAF_REFS,
					g->nr_pages - first);

		memcpy(leaf, g->refs + first, n * sizeof(u32));
		ref = gnttab_grant_foreign_access(g->domid,
					xen_page_to_gfn(g->dir_pages[1 + i]), 1);
		if (ref < 0)
			return ref;
		g->dir_refs[1 + i] = ref;
		g->pending++;
	}
	{
		struct xenmpi_grant_dir *root = page_address(g->dir_pages[0]);

		root->magic = XENMPI_GRANT_DIR_MAGIC;
		root->version = XENMPI_GRANT_DIR_VERSION;
		root->flags = g->readonly ? XENMPI_GRANT_READONLY : 0;
		root->nr_pages = g->nr_pages;
		root->nr_leaves = leaves;
		root->len = (u64)g->nr_pages * XENMPI_GRANT_PAGE_SIZE;
		if (leaves)
			memcpy(root->refs, g->dir_refs + 1, leaves * sizeof(u32));
		else
			memcpy(root->refs, g->refs, g->nr_pages * sizeof(u32));
	}
	ref = gnttab_grant_foreign_access(g->domid,
					  xen_page_to_gfn(g->dir_pages[0]), 1);
	if (ref < 0)
		return ref;
	g->dir_refs[0] = ref;
	g->pending++;
	return 0;
}

static struct xmg_grant *xmg_grant_alloc(unsigned long nr_pages,
					 unsigned int nr_dir)
{
	struct xmg_grant *g = kzalloc(sizeof(*g), GFP_KERNEL_ACCOUNT);
	unsigned long i;

	if (!g)
		return NULL;
	g->pages = kvcalloc(nr_pages, sizeof(*g->pages), GFP_KERNEL_ACCOUNT);
	g->refs = kvmalloc_array(nr_pages, sizeof(*g->refs), GFP_KERNEL_ACCOUNT);
	if (nr_dir) {
		g->dir_pages = kcalloc(nr_dir, sizeof(*g->dir_pages),
				       GFP_KERNEL_ACCOUNT);
		g->dir_refs = kmalloc_array(nr_dir, sizeof(*g->dir_refs),
					    GFP_KERNEL_ACCOUNT);
	}
	if (!g->pages || !g->refs || (nr_dir && (!g->dir_pages || !g->dir_refs))) {
		kvfree(g->pages);
		kvfree(g->refs);
		kfree(g->dir_pages);
		kfree(g->dir_refs);
		kfree(g);
		return NULL;
	}
	for (i = 0; i < nr_pages; i++)
		g->refs[i] = XENMPI_GRANT_REF_INVALID;
	for (i = 0; i < nr_dir; i++)
		g->dir_refs[i] = XENMPI_GRANT_REF_INVALID;
	g->nr_pages = nr_pages;
	g->nr_dir = nr_dir;
	return g;
}

/* This domain's id, read from the store on the first grant (not at load:
 * dom0 loads modules before xenstored runs, and a store read would wait for
 * it); DOMID_INVALID while unknown, and then only reserved ids are refused. */
static unsigned int xmg_self_domid = DOMID_INVALID;
static DEFINE_MUTEX(xmg_self_lock);

static unsigned int xmg_self(void)
{
	unsigned int id = READ_ONCE(xmg_self_domid);

	if (id != DOMID_INVALID)
		return id;
	mutex_lock(&xmg_self_lock);
	if (xmg_self_domid == DOMID_INVALID) {
		/* relative to this domain's home: /local/domain/<id>/domid */
		id = xenbus_read_unsigned("domid", "", DOMID_INVALID);
		if (id == DOMID_INVALID)
			pr_warn_once("cannot read this domain's id from the store: grants to it are not refused\n");
		WRITE_ONCE(xmg_self_domid, id);
	}
	id = xmg_self_domid;
	mutex_unlock(&xmg_self_lock);
	return id;
}

static long xmg_ioctl_grant(struct xmg_file *f, void __user *arg)
{
	struct xenmpi_grant_req req;
	struct xmg_grant *g, *o;
	unsigned long addr, len, nr_pages, end, charge;
	unsigned int nr_dir = 0;
	u32 __user *urefs;
	bool ro, dir;
	long rc;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.size != sizeof(req) || req.pad ||
	    (req.flags & ~XENMPI_GRANT_FLAGS_ALL))
		return -EINVAL;
	ro = req.flags & XENMPI_GRANT_READONLY;
	dir = req.flags & XENMPI_GRANT_DIRECTORY;
	if (req.domid >= XENMPI_GRANT_DOMID_FIRST_RESERVED ||
	    req.domid == xmg_self())
		return -EINVAL;	/* reserved, or ourselves: no peer to share with */
	if (!req.len || (req.addr | req.len) & (XENMPI_GRANT_PAGE_SIZE - 1))
		return -EINVAL;
	if (req.addr != (unsigned long)req.addr ||
	    req.len != (unsigned long)req.len)
		return -EINVAL;
	addr = req.addr;
	len = req.len;
	if (check_add_overflow(addr, len, &end) || end > TASK_SIZE_MAX)
		return -EINVAL;
	nr_pages = len >> PAGE_SHIFT;
	if (dir) {
		if (nr_pages > XENMPI_GRANT_DIR_MAX_PAGES)
			return -E2BIG;
		nr_dir = 1 + xenmpi_grant_dir_leaves(nr_pages);
	}
	charge = nr_pages + nr_dir;
	if (charge > xmg_limit(&max_pages_per_file) ||
	    charge > xmg_limit(&max_pages) ||
	    charge > xmg_limit(&max_pages_per_domain))
		return -E2BIG;
	urefs = u64_to_user_ptr(req.refs);
	if (!urefs && !dir)
		return -EINVAL;
	if (urefs) {
		if (req.nr_refs < nr_pages)
			return -ENOBUFS;
		if (!access_ok(urefs, nr_pages * sizeof(u32)))
			return -EFAULT;
	}

	mutex_lock(&f->lock);
	/* the pages and the RLIMIT_MEMLOCK charge are the opener's */
	if (current->mm != f->mm) {
		rc = -EPERM;
		goto out_unlock;
	}
	/* one live grant per page and peer */
	list_for_each_entry(o, &f->grants, node) {
		if (o->domid == req.domid && addr < o->addr +
		    (o->nr_pages << PAGE_SHIFT) && o->addr < end) {
			rc = -EEXIST;
			goto out_unlock;
		}
	}
	if (atomic64_add_return(charge, &f->charged) >
	    xmg_limit(&max_pages_per_file)) {
		atomic64_sub(charge, &f->charged);
		rc = -EDQUOT;
		goto out_unlock;
	}
	if (atomic64_add_return(charge, &xmg_charged) > xmg_limit(&max_pages)) {
		atomic64_sub(charge, &xmg_charged);
		atomic64_sub(charge, &f->charged);
		rc = -EDQUOT;
		goto out_unlock;
	}
	if (atomic_long_add_return(charge, &xmg_dom_charged[req.domid]) >
	    xmg_limit(&max_pages_per_domain)) {
		atomic_long_sub(charge, &xmg_dom_charged[req.domid]);
		atomic64_sub(charge, &xmg_charged);
		atomic64_sub(charge, &f->charged);
		rc = -EDQUOT;
		goto out_unlock;
	}
	rc = xmg_account_pinned(f->mm, nr_pages);
	if (rc)
		goto out_uncharge;
	g = xmg_grant_alloc(nr_pages, nr_dir);
	if (!g) {
		rc = -ENOMEM;
		goto out_unaccount;
	}
	g->addr = addr;
	g->domid = req.domid;
	g->readonly = ro;
	kref_get(&f->kref);
	g->file = f;

	/* watch before pinning: an event in between marks it stale, which
	 * only costs a new grant */
	rc = mmu_interval_notifier_insert(&g->mn, f->mm, addr, len, &xmg_mn_ops);
	if (rc) {
		xmg_grant_free(g);
		goto out_unaccount;
	}
	g->mn_on = true;
	rc = xmg_pin(f, g);
	if (rc) {
		xmg_grant_free(g);
		goto out_unaccount;
	}
	/* From here on xmg_end() undoes everything (pinned_vm included). */
	rc = xmg_grant_refs(g);
	if (rc)
		goto out_end;

	if (urefs && copy_to_user(urefs, g->refs, nr_pages * sizeof(u32))) {
		rc = -EFAULT;
		goto out_end;
	}
	g->handle = atomic64_inc_return(&xmg_next_handle);
	req.handle = g->handle;
	req.nr_refs = urefs ? nr_pages : 0;
	req.dir_ref = dir ? g->dir_refs[0] : XENMPI_GRANT_REF_INVALID;
	req.nr_pages = nr_pages;
	req.nr_dir_pages = nr_dir;
	if (copy_to_user(arg, &req, sizeof(req))) {
		rc = -EFAULT;
		goto out_end;
	}
	list_add_tail(&g->node, &f->grants);
	atomic64_inc(&f->nr_grants);
	atomic64_inc(&xmg_grants);
	atomic64_inc(&xmg_granted);
	mutex_unlock(&f->lock);
	return 0;

out_end:
	/* Refs the peer could not have learnt, unless it guessed them: ending
	 * them is immediate, or deferred like any other. */
	{
		unsigned long unused = 0, i;

		for (i = 0; i < g->nr_dir; i++)
			unused += !g->dir_pages[i];
		xmg_uncharge_unused(g, unused);
	}
	xmg_end(g);
	mutex_unlock(&f->lock);
	return rc;
out_unaccount:
	atomic64_sub(nr_pages, &f->mm->pinned_vm);
out_uncharge:
	atomic_long_sub(charge, &xmg_dom_charged[req.domid]);
	atomic64_sub(charge, &xmg_charged);
	atomic64_sub(charge, &f->charged);
out_unlock:
	mutex_unlock(&f->lock);
	return rc;
}

static long xmg_ioctl_end(struct xmg_file *f, void __user *arg)
{
	struct xenmpi_grant_end req;
	struct xmg_grant *g, *found = NULL;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.size != sizeof(req) || req.flags || req.pad)
		return -EINVAL;
	/* fail on an unwritable result before ending anything */
	req.deferred = 0;
	if (copy_to_user(arg, &req, sizeof(req)))
		return -EFAULT;

	mutex_lock(&f->lock);
	list_for_each_entry(g, &f->grants, node) {
		if (g->handle == req.handle) {
			found = g;
			break;
		}
	}
	if (found) {
		list_del(&found->node);
		atomic64_dec(&f->nr_grants);
		atomic64_dec(&xmg_grants);
	}
	mutex_unlock(&f->lock);
	if (!found)
		return -ENOENT;

	req.deferred = min_t(unsigned long, xmg_end(found), U32_MAX);
	/* the grant is ended whatever happens to this copy */
	if (copy_to_user(arg, &req, sizeof(req)))
		return -EFAULT;
	return 0;
}

static long xmg_ioctl_stale(struct xmg_file *f, void __user *arg)
{
	struct xenmpi_grant_stale req;
	struct xmg_grant *g, **gs;
	u64 *found, gen;
	u32 nr = 0, more = 0, i;
	u64 __user *uh;
	long rc = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.size != sizeof(req) || req.max > XENMPI_GRANT_STALE_MAX)
		return -EINVAL;
	uh = u64_to_user_ptr(req.handles);
	if (req.max && (!uh || !access_ok(uh, req.max * sizeof(u64))))
		return -EFAULT;
	req.nr = req.more = 0;
	/* the common case: nothing turned stale since the last report */
	gen = atomic64_read(&f->stale_gen);
	if (!req.max || gen == READ_ONCE(f->stale_seen))
		return copy_to_user(arg, &req, sizeof(req)) ? -EFAULT : 0;
	found = kmalloc_array(req.max, sizeof(*found), GFP_KERNEL);
	gs = kmalloc_array(req.max, sizeof(*gs), GFP_KERNEL);
	if (!found || !gs) {
		rc = -ENOMEM;
		goto out;
	}
	mutex_lock(&f->lock);
	list_for_each_entry(g, &f->grants, node) {
		if (!atomic_read(&g->stale) || g->stale_told)
			continue;
		if (nr == req.max) {
			more = 1;
			break;
		}
		gs[nr] = g;
		found[nr++] = g->handle;
	}
	req.nr = nr;
	req.more = more;
	/* reported only once the caller has them: a failed copy changes nothing */
	if ((nr && copy_to_user(uh, found, nr * sizeof(u64))) ||
	    copy_to_user(arg, &req, sizeof(req))) {
		rc = -EFAULT;
	} else {
		for (i = 0; i < nr; i++)
			gs[i]->stale_told = true;
		/* a grant turning stale from here on bumps stale_gen past gen */
		if (!more)
			WRITE_ONCE(f->stale_seen, gen);
	}
	mutex_unlock(&f->lock);
out:
	kfree(found);
	kfree(gs);
	return rc;
}

static long xmg_ioctl_info(struct xmg_file *f, void __user *arg)
{
	struct xenmpi_grant_info info;
	unsigned long memlock = rlimit(RLIMIT_MEMLOCK);

	if (copy_from_user(&info, arg, sizeof(info)))
		return -EFAULT;
	if (info.size != sizeof(info))
		return -EINVAL;
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.api_version = XENMPI_GRANT_API_VERSION;
	info.max_pages_per_file = xmg_limit(&max_pages_per_file);
	info.max_pages = xmg_limit(&max_pages);
	info.dir_root_refs = XENMPI_GRANT_DIR_ROOT_REFS;
	info.dir_leaf_refs = XENMPI_GRANT_DIR_LEAF_REFS;
	info.memlock_limit = memlock == RLIM_INFINITY ? ~0ULL : memlock;
	info.mm_pinned_pages = atomic64_read(&f->mm->pinned_vm);
	info.file_grants = atomic64_read(&f->nr_grants);
	info.file_pages = atomic64_read(&f->nr_pages);
	info.file_dir_pages = atomic64_read(&f->nr_dir_pages);
	info.file_deferred_refs = atomic64_read(&f->nr_deferred);
	info.total_grants = atomic64_read(&xmg_grants);
	info.total_pages = atomic64_read(&xmg_pages);
	info.total_dir_pages = atomic64_read(&xmg_dir_pages);
	info.total_deferred_refs = atomic64_read(&xmg_deferred_refs);
	info.total_deferred_done = atomic64_read(&xmg_deferred_done);
	info.total_granted = atomic64_read(&xmg_granted);
	if (copy_to_user(arg, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

static long xmg_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct xmg_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case XENMPI_IOC_GRANT:
		return xmg_ioctl_grant(f, uarg);
	case XENMPI_IOC_END:
		return xmg_ioctl_end(f, uarg);
	case XENMPI_IOC_INFO:
		return xmg_ioctl_info(f, uarg);
	case XENMPI_IOC_STALE:
		return xmg_ioctl_stale(f, uarg);
	default:
		return -ENOIOCTLCMD;
	}
}

static int xmg_open(struct inode *inode, struct file *file)
{
	struct xmg_file *f;

	if (!current->mm)
		return -EINVAL;
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	kref_init(&f->kref);
	mutex_init(&f->lock);
	INIT_LIST_HEAD(&f->grants);
	mmgrab(current->mm);
	f->mm = current->mm;
	file->private_data = f;
	return 0;
}

/* Last close, also when the process dies: end everything it granted. */
static int xmg_release_file(struct inode *inode, struct file *file)
{
	struct xmg_file *f = file->private_data;
	struct xmg_grant *g, *tmp;
	LIST_HEAD(grants);

	mutex_lock(&f->lock);
	list_splice_init(&f->grants, &grants);
	mutex_unlock(&f->lock);
	list_for_each_entry_safe(g, tmp, &grants, node) {
		list_del(&g->node);
		atomic64_dec(&f->nr_grants);
		atomic64_dec(&xmg_grants);
		xmg_end(g);
	}
	xmg_file_put(f);
	return 0;
}

static const struct file_operations xmg_fops = {
	.owner = THIS_MODULE,
	.open = xmg_open,
	.release = xmg_release_file,
	.unlocked_ioctl = xmg_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice xmg_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "xenmpi_grant",
	.fops = &xmg_fops,
};

static int __init xmg_init(void)
{
	int rc;

	BUILD_BUG_ON(PAGE_SIZE != XENMPI_GRANT_PAGE_SIZE);
	BUILD_BUG_ON(XEN_PAGE_SIZE != XENMPI_GRANT_PAGE_SIZE);
	BUILD_BUG_ON(sizeof(grant_ref_t) != sizeof(u32));

	if (!xen_domain()) {
		pr_err("not running on Xen: there is no grant table to grant pages through; not loading\n");
		return -ENODEV;
	}
	rc = misc_register(&xmg_misc);
	if (rc) {
		pr_err("cannot register /dev/%s: %d\n", xmg_misc.name, rc);
		return rc;
	}
	pr_info("/dev/%s ready (api %u, max_pages_per_file %u, max_pages %u, max_pages_per_domain %u, table_reserve %u)\n",
		xmg_misc.name, XENMPI_GRANT_API_VERSION, max_pages_per_file,
		max_pages, max_pages_per_domain, table_reserve);
	return 0;
}

static void __exit xmg_exit(void)
{
	misc_deregister(&xmg_misc);
	/* Deferred grants hold module references: the list is empty here. */
	cancel_delayed_work_sync(&xmg_retry_work);
	WARN_ON(!list_empty(&xmg_deferred));
}

module_init(xmg_init);
module_exit(xmg_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Grant existing user pages to one peer Xen domain (xenmpi zero-copy)");
MODULE_VERSION("0.1.0");
