// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvm_xinterface: access to a VM's guest physical memory for kernel
 * modules other than KVM.  See Documentation/virt/kvm/xinterface.rst.
 *
 * Rules this file follows (Linux 6.12):
 *  - Memslots are looked up and used under kvm->srcu.  A memslot delete or
 *    move waits for the SRCU readers, so a copy done inside the read
 *    section never touches memory the guest no longer maps.
 *  - kvm->mm is only borrowed, with mmget_not_zero() around each access.
 *  - User copies run only when current->mm is kvm->mm: directly in the VM
 *    owner's context, after kthread_use_mm() in a kthread, and never
 *    through a lazily borrowed active_mm.  Any other task takes the remote
 *    path (get_user_pages_remote() + kmap_local_page()).
 *  - Dirty logging is done on the memslot's bitmap directly, because
 *    mark_page_dirty_in_slot() WARNs without a running vCPU.
 */

#include <linux/fault-inject-usercopy.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/instrumented.h>
#include <linux/kthread.h>
#include <linux/kvm_host.h>
#include <linux/kvm_xinterface.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "kvm_mm.h"

/*
 * No KVM architecture maps guest physical addresses at or beyond 2^52
 * (x86 and arm64 both top out there); a range ending beyond it is an
 * overflow, not a hole.
 */
#define XI_GPA_LIMIT		BIT_ULL(52)

/* Bounds of one copyv and of one scatter-gather table. */
#define XI_MAX_RANGES		1024

/* copyv snapshots up to this many caller ranges on the stack. */
#define XI_STACK_RANGES		8

struct xi_binding {
	struct kvm_xinterface intf;
	struct file *file;
	u64 id;			/* unique for the kernel's lifetime */
};

/* Binding ids, so a kvm_xcache can tell which binding it belongs to. */
static atomic64_t xi_next_id = ATOMIC64_INIT(0);

static u64 xi_binding_id(struct kvm_xinterface *intf)
{
	return container_of(intf, struct xi_binding, intf)->id;
}

/*
 * KVM updates its invalidation state (mmu_invalidate_seq, _in_progress,
 * _range_start/_end, mn_active_invalidate_count) with plain accesses under
 * mmu_lock or mn_invalidate_lock, and reads it without them where a stale
 * value only costs a retry (mmu_invalidate_retry_gfn_unsafe(), pfncache).
 * So does this file: the race is intended, and data_race() says so.
 */
#define xi_racy(x)	data_race(READ_ONCE(x))

/* How the copy reaches kvm->mm. */
enum xi_path {
	/* current->mm is kvm->mm (the owner, a kthread after use_mm) */
	XI_PATH_OWN,
	XI_PATH_REMOTE,		/* another mm: look up and kmap page by page */
};

/*
 * Range check done before anything is touched.  MAX_RW_COUNT bounds a
 * single call like read()/write() do.
 */
static int xi_check_range(u64 gpa, size_t len)
{
	u64 end;

	if (len > MAX_RW_COUNT)
		return -EOVERFLOW;
	if (check_add_overflow(gpa, (u64)len, &end))
		return -EOVERFLOW;
	if (end > XI_GPA_LIMIT)
		return -EOVERFLOW;
	return 0;
}

/*
 * Number of bytes of [gpa, gpa + len) that lie in the memslot covering
 * [base_gfn, base_gfn + npages); gpa must be inside the memslot.
 */
static size_t xi_slot_run(gfn_t base_gfn, unsigned long npages, u64 gpa,
			  size_t len)
{
	u64 slot_end = (u64)(base_gfn + npages) << PAGE_SHIFT;

	return min_t(u64, len, slot_end - gpa);
}

/*
 * Does the VM log dirty pages only in per-vCPU rings, with no bitmap for
 * writes made outside a vCPU?  KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP gives
 * such a VM a bitmap, which is where this API's writes then go.
 */
static bool xi_ring_only(struct kvm *kvm)
{
	return READ_ONCE(kvm->dirty_ring_size) &&
	       !READ_ONCE(kvm->dirty_ring_with_bitmap);
}

/*
 * Can this access go to @slot?  Maps each refusal to its errno.
 * @ring_only: the VM has a dirty ring and no dirty bitmap.
 */
static int xi_slot_check(const struct kvm_memory_slot *slot, bool write,
			 bool ring_only)
{
	if (!slot || slot->id >= KVM_USER_MEM_SLOTS ||
	    (slot->flags & KVM_MEMSLOT_INVALID))
		return -ENXIO;
	if (!write)
		return 0;
	if (slot->flags & KVM_MEM_READONLY)
		return -EROFS;
	if (ring_only && kvm_slot_dirty_track_enabled(slot))
		return -EOPNOTSUPP;
	return 0;
}

static __always_inline void xi_mark_dirty(struct kvm_memory_slot *slot, u64 gpa,
					  size_t len)
{
	gfn_t gfn, last = (gpa + len - 1) >> PAGE_SHIFT;

	if (!kvm_slot_dirty_track_enabled(slot) || !slot->dirty_bitmap)
		return;
	for (gfn = gpa >> PAGE_SHIFT; gfn <= last; gfn++)
		set_bit_le(gfn - slot->base_gfn, slot->dirty_bitmap);
}

/*
 * Look up (@pin: pin) @nr pages of kvm->mm at @hva, passing @locked so that
 * a page of a userfaultfd range waits for its handler as a fault in the
 * VM's mm would, instead of failing.  Takes mmap_lock when *@locked says
 * it is not held; *@locked tells whether it is held on return.  Returns
 * what get_user_pages_remote() / pin_user_pages_remote() return.
 */
static long xi_gup_remote(struct mm_struct *mm, unsigned long hva,
			  unsigned long nr, unsigned int gup,
			  struct page **pages, bool pin, int *locked)
{
	if (!*locked) {
		if (mmap_read_lock_killable(mm))
			return -EINTR;
		*locked = 1;
	}
	if (pin)
		return pin_user_pages_remote(mm, hva, nr, gup, pages, locked);
	return get_user_pages_remote(mm, hva, nr, gup, pages, locked);
}

/*
 * The errno of a failed lookup: a fatal signal stays -EINTR and a failed
 * allocation (of a page or a page table) -ENOMEM; the rest is -EFAULT.
 */
static int xi_gup_errno(long n)
{
	return n == -EINTR || n == -ENOMEM ? n : -EFAULT;
}

static int xi_copy_remote(struct mm_struct *mm, unsigned long hva, void *buf,
			  size_t len, bool write, size_t *done)
{
	int locked = 0, ret = 0;

	while (*done < len) {
		size_t off = offset_in_page(hva);
		size_t n = min_t(size_t, len - *done, PAGE_SIZE - off);
		struct page *page;
		long got;
		void *p;

		got = xi_gup_remote(mm, hva, 1, write ? FOLL_WRITE : 0, &page,
				    false, &locked);
		if (got != 1) {
			ret = xi_gup_errno(got);
			break;
		}
		p = kmap_local_page(page);
		if (write) {
			memcpy(p + off, buf, n);
			flush_dcache_page(page);
			set_page_dirty_lock(page);
		} else {
			memcpy(buf, p + off, n);
		}
		kunmap_local(p);
		put_page(page);
		hva += n;
		buf += n;
		*done += n;
	}
	if (locked)
		mmap_read_unlock(mm);
	return ret;
}

/*
 * A user copy between @buf and @hva, with the VM's mm current.  What
 * copy_{to,from}_user() does, less two checks: access_ok(), which the
 * memslot's hva range passed when KVM created the memslot (as
 * kvm_read_guest()'s __copy_from_user() relies on too), and the
 * hardened-usercopy check of the kernel buffer, which the callers
 * (xi_copy_checked(), xi_copy_fast_mm()) make once for the whole buffer
 * rather than again for each piece of it.  The address is still masked
 * where the architecture can, as copy_from_user() does, so that a
 * mispredicted memslot check cannot steer even a speculative access into
 * kernel memory.  Returns the bytes not copied; @buf's bytes beyond the
 * ones copied are left as they were.
 */
static unsigned long xi_user_copy(unsigned long hva, void *buf, size_t len,
				  bool write)
{
	void __user *p = (void __user *)hva;
	unsigned long left;

	might_fault();
	if (should_fail_usercopy())
		return len;
	if (can_do_masked_user_access())
		p = mask_user_address(p);
	if (write) {
		instrument_copy_to_user(p, buf, len);
		return raw_copy_to_user(p, buf, len);
	}
	instrument_copy_from_user_before(buf, p, len);
	left = raw_copy_from_user(buf, p, len);
	instrument_copy_from_user_after(buf, p, len, left);
	return left;
}

/*
 * Copy @len bytes between @buf and @hva in kvm->mm.  *@done is set to the
 * bytes that reached their destination, also on error (a user copy that
 * faults part-way, a remote lookup that fails on a later page), so that a
 * write's dirty logging covers exactly what was written.
 */
static int xi_copy_hva(struct mm_struct *mm, enum xi_path path,
		       unsigned long hva, void *buf, size_t len, bool write,
		       size_t *done)
{
	unsigned long left;

	*done = 0;
	if (path == XI_PATH_REMOTE)
		return xi_copy_remote(mm, hva, buf, len, write, done);
	left = xi_user_copy(hva, buf, len, write);
	*done = len - left;
	return left ? -EFAULT : 0;
}

/*
 * Is an invalidation that covers @gfn in progress?  Passing the current
 * sequence makes KVM's retry helper look only at the range in progress:
 * invalidations of other gfns that complete meanwhile do not matter to a
 * copy through the VMM's mapping, which faults its pages in again.
 */
static bool xi_gfn_invalidating(struct kvm *kvm, gfn_t gfn)
{
	bool busy;

#ifdef KVM_HAVE_MMU_RWLOCK
	read_lock(&kvm->mmu_lock);
	busy = mmu_invalidate_retry_gfn(kvm, kvm->mmu_invalidate_seq, gfn);
	read_unlock(&kvm->mmu_lock);
#else
	spin_lock(&kvm->mmu_lock);
	busy = mmu_invalidate_retry_gfn(kvm, kvm->mmu_invalidate_seq, gfn);
	spin_unlock(&kvm->mmu_lock);
#endif
	return busy;
}

/*
 * Whether a wait for racing invalidations should end: on a fatal signal,
 * or when the calling kthread (a consumer's worker) is being stopped.
 */
static bool xi_give_up(void)
{
	return fatal_signal_pending(current) ||
	       ((current->flags & PF_KTHREAD) && kthread_should_stop());
}

/*
 * The unlocked look of mmu_invalidate_retry_gfn_unsafe(), at the range in
 * progress only.  Its loads race with kvm_mmu_invalidate_begin() and _end()
 * on purpose: a stale answer only makes the copy wait a little longer or
 * go on to xi_gfn_invalidating(), which decides under mmu_lock.
 */
static bool xi_gfn_invalidating_unsafe(struct kvm *kvm, gfn_t gfn)
{
	return xi_racy(kvm->mmu_invalidate_in_progress) &&
	       gfn >= xi_racy(kvm->mmu_invalidate_range_start) &&
	       gfn < xi_racy(kvm->mmu_invalidate_range_end);
}

/*
 * Copy within one page of a memslot that can hold private memory.  The
 * page must be shared, and no private/shared conversion of it may be in
 * progress, both before and after the copy: a conversion marks its gfns
 * as being invalidated (mmu_invalidate_in_progress and range) while it
 * changes their attributes.  A conversion in progress is waited out, as
 * the vCPU fault path does; one that made the page private meanwhile
 * fails the copy with -EPERM.  Only a fatal signal ends the wait (-EINTR).
 * Invalidations of other gfns (NUMA balancing, KSM, THP, a conversion of
 * another page) do not make the copy retry.  A conversion to private and
 * back within the copy is not detected: the guest, which could not see
 * the shared page in between, then sees the copy as made after it.
 *
 * *@done is the most bytes an attempt wrote, so a write that then fails
 * is still dirty-logged.
 */
static int xi_copy_private_capable(struct kvm *kvm, struct mm_struct *mm,
				   enum xi_path path, gfn_t gfn,
				   unsigned long hva, void *buf, size_t len,
				   bool write, size_t *done)
{
	size_t n;
	int ret;

	*done = 0;
	for (;;) {
		/* Unlocked look first, so a conversion is waited out cheaply. */
		if (!xi_gfn_invalidating_unsafe(kvm, gfn)) {
			if (kvm_mem_is_private(kvm, gfn))
				return -EPERM;
			ret = xi_copy_hva(mm, path, hva, buf, len, write, &n);
			*done = max(*done, n);
			if (ret)
				return ret;
			if (!xi_gfn_invalidating(kvm, gfn))
				return kvm_mem_is_private(kvm, gfn) ? -EPERM : 0;
		}
		if (xi_give_up())
			return -EINTR;
		cond_resched();
	}
}

/*
 * The memslot holding @gfn, from @cache when it holds it for the current
 * memslot generation.  Under kvm->srcu: an unchanged generation means the
 * same memslot set is still the active one, so the cached pointer is live.
 */
static struct kvm_memory_slot *xi_lookup(struct kvm *kvm, u64 id, gfn_t gfn,
					 struct kvm_xcache *cache)
{
	struct kvm_memslots *slots = kvm_memslots(kvm);
	struct kvm_memory_slot *slot;

	if (cache) {
		slot = cache->slot;
		/*
		 * The generation alone does not identify a memslot set: two
		 * VMs can be at the same one.  The binding id does, and ids
		 * are never reused, so a cache filled through a binding
		 * that is gone cannot match either.
		 */
		if (slot && cache->binding == id &&
		    cache->generation == slots->generation &&
		    gfn - slot->base_gfn < slot->npages) {
			cache->hits++;
			return slot;
		}
		cache->misses++;
	}
	slot = __gfn_to_memslot(slots, gfn);
	if (cache) {
		cache->slot = slot;
		cache->generation = slots->generation;
		cache->binding = id;
	}
	return slot;
}

static int xi_copy_slots(struct kvm *kvm, u64 id, struct mm_struct *mm,
			 enum xi_path path, u64 gpa, void *buf, size_t len,
			 bool write, struct kvm_xcache *cache)
{
	bool ring_only = xi_ring_only(kvm);

	while (len) {
		struct kvm_memory_slot *slot;
		unsigned long hva;
		size_t run, done;
		int ret;

		slot = xi_lookup(kvm, id, gpa >> PAGE_SHIFT, cache);
		ret = xi_slot_check(slot, write, ring_only);
		if (ret)
			return ret;

		run = xi_slot_run(slot->base_gfn, slot->npages, gpa, len);
		hva = __gfn_to_hva_memslot(slot, gpa >> PAGE_SHIFT) +
		      offset_in_page(gpa);
		if (kvm_slot_can_be_private(slot)) {
			run = min_t(size_t, run, PAGE_SIZE - offset_in_page(gpa));
			ret = xi_copy_private_capable(kvm, mm, path,
						      gpa >> PAGE_SHIFT, hva,
						      buf, run, write, &done);
		} else {
			ret = xi_copy_hva(mm, path, hva, buf, run, write,
					  &done);
		}
		/* Whatever reached guest memory is logged, also on error. */
		if (write && done)
			xi_mark_dirty(slot, gpa, done);
		if (ret)
			return ret;
		gpa += run;
		buf += run;
		len -= run;
	}
	return 0;
}

/* Does [gpa, gpa + len) lie in @slot?  @len is not 0. */
static __always_inline bool xi_in_slot(const struct kvm_memory_slot *slot,
				       u64 gpa, size_t len)
{
	return (gpa >> PAGE_SHIFT) - slot->base_gfn < slot->npages &&
	       ((gpa + len - 1) >> PAGE_SHIFT) - slot->base_gfn < slot->npages;
}

/*
 * The memslot of the fast path for [gpa, gpa + len), under kvm->srcu: the
 * one @cache holds (without a cache: the one holding @gpa), if the whole
 * range lies in it and it takes the access as it is (a user memslot, no
 * private memory, no refusal).  NULL when the fast path does not apply:
 * xi_copy_slots() then does the copy the general way.
 */
static __always_inline struct kvm_memory_slot *
xi_fast_slot(struct kvm *kvm, u64 id, struct kvm_memslots *slots, u64 gpa,
	     size_t len, bool write, struct kvm_xcache *cache)
{
	struct kvm_memory_slot *slot;

	if (cache) {
		slot = cache->slot;
		if (unlikely(!slot || cache->binding != id ||
			     cache->generation != slots->generation))
			return NULL;
	} else {
		slot = __gfn_to_memslot(slots, gpa >> PAGE_SHIFT);
		if (unlikely(!slot))
			return NULL;
	}
	if (unlikely(!xi_in_slot(slot, gpa, len) ||
		     slot->id >= KVM_USER_MEM_SLOTS ||
		     (slot->flags & (KVM_MEMSLOT_INVALID | KVM_MEM_GUEST_MEMFD))))
		return NULL;
	if (write && unlikely((slot->flags & KVM_MEM_READONLY) ||
			      (xi_ring_only(kvm) &&
			       kvm_slot_dirty_track_enabled(slot))))
		return NULL;
	return slot;
}

/*
 * Copy [gpa, gpa + len) of @slot, which xi_fast_slot() returned for this
 * access, with the VM's mm current.  The kernel buffer was checked by the
 * caller (check_object_size()).
 */
static __always_inline int xi_copy_in_slot(struct kvm_memory_slot *slot,
					   u64 gpa, void *buf, size_t len,
					   bool write)
{
	unsigned long left;

	left = xi_user_copy(__gfn_to_hva_memslot(slot, gpa >> PAGE_SHIFT) +
			    offset_in_page(gpa), buf, len, write);
	if (write && left != len)
		xi_mark_dirty(slot, gpa, len - left);
	return left ? -EFAULT : 0;
}

/* One range with the VM's mm current; 1: take the general path. */
static __always_inline int xi_copy_fast_mm(struct kvm_xinterface *intf,
					   u64 gpa, void *buf, size_t len,
					   bool write,
					   struct kvm_xcache *cache)
{
	struct kvm *kvm = intf->kvm;
	struct kvm_memory_slot *slot;
	int idx, ret;

	check_object_size(buf, len, write);
	idx = srcu_read_lock(&kvm->srcu);
	slot = xi_fast_slot(kvm, xi_binding_id(intf), kvm_memslots(kvm), gpa,
			    len, write, cache);
	if (likely(slot)) {
		if (cache)
			cache->hits++;
		ret = xi_copy_in_slot(slot, gpa, buf, len, write);
	} else {
		ret = 1;
	}
	srcu_read_unlock(&kvm->srcu, idx);
	return ret;
}

/*
 * The fast path of a one-range copy (copy_to/copy_from, copyv of one
 * range): from the VM owner's context, or from a kthread, which switches
 * to the VM's mm for the copy.  Returns 1 when it does not apply (another
 * task, an empty or overflowing range, a range the fast path does not
 * take): xi_copy() then does the copy.
 */
static __always_inline int xi_copy_fast(struct kvm_xinterface *intf, u64 gpa,
					void *buf, size_t len, bool write,
					struct kvm_xcache *cache)
{
	struct mm_struct *mm = intf->kvm->mm;
	int ret;

	if (unlikely(!len || xi_check_range(gpa, len)))
		return 1;
	if (likely(current->mm == mm))
		return xi_copy_fast_mm(intf, gpa, buf, len, write, cache);
	if (current->mm || !(current->flags & PF_KTHREAD))
		return 1;
	if (!mmget_not_zero(mm))
		return -ESRCH;
	kthread_use_mm(mm);
	ret = xi_copy_fast_mm(intf, gpa, buf, len, write, cache);
	kthread_unuse_mm(mm);
	mmput(mm);
	return ret;
}

/* Copy through @ranges in kvm->mm, the way @path reaches it. */
static int xi_copy_mm(struct kvm_xinterface *intf, enum xi_path path,
		      const struct kvm_xrange *ranges, unsigned int nr,
		      void *buf, bool write, struct kvm_xcache *cache)
{
	struct kvm *kvm = intf->kvm;
	u64 id = xi_binding_id(intf);
	struct kvm_memory_slot *slot = NULL;
	struct kvm_memslots *slots;
	unsigned int i;
	int ret = 0, idx;

	idx = srcu_read_lock(&kvm->srcu);
	slots = kvm_memslots(kvm);
	for (i = 0; i < nr && !ret; i++) {
		u64 gpa = ranges[i].gpa;
		size_t n = ranges[i].len;

		/*
		 * With the VM's mm current, a range in the memslot the last
		 * one went to (checked for this access already), or in one
		 * the fast path takes, is copied directly.
		 */
		if (path == XI_PATH_OWN && n) {
			if (!slot || !xi_in_slot(slot, gpa, n))
				slot = xi_fast_slot(kvm, id, slots, gpa, n,
						    write, cache);
			if (slot) {
				if (cache)
					cache->hits++;
				ret = xi_copy_in_slot(slot, gpa, buf, n, write);
				buf += n;
				continue;
			}
		}
		ret = xi_copy_slots(kvm, id, kvm->mm, path, gpa, buf, n, write,
				    cache);
		buf += n;
	}
	srcu_read_unlock(&kvm->srcu, idx);
	return ret;
}

/* Copy through @ranges, checked already: they add up to @len. */
static int xi_copy_checked(struct kvm_xinterface *intf,
			   const struct kvm_xrange *ranges, unsigned int nr,
			   void *buf, size_t len, bool write,
			   struct kvm_xcache *cache)
{
	struct mm_struct *mm = intf->kvm->mm;
	int ret;

	if (!len)
		return 0;
	/* The pieces are user copies: check the kernel buffer once. */
	if (likely(current->mm == mm)) {
		check_object_size(buf, len, write);
		return xi_copy_mm(intf, XI_PATH_OWN, ranges, nr, buf, write,
				  cache);
	}
	if (!mmget_not_zero(mm))
		return -ESRCH;
	if (!current->mm && (current->flags & PF_KTHREAD)) {
		check_object_size(buf, len, write);
		kthread_use_mm(mm);
		ret = xi_copy_mm(intf, XI_PATH_OWN, ranges, nr, buf, write,
				 cache);
		kthread_unuse_mm(mm);
	} else {
		ret = xi_copy_mm(intf, XI_PATH_REMOTE, ranges, nr, buf, write,
				 cache);
	}
	mmput(mm);
	return ret;
}

/* Copy through @ranges, which the caller cannot change under us. */
static int xi_copy(struct kvm_xinterface *intf,
		   const struct kvm_xrange *ranges, unsigned int nr, void *buf,
		   size_t len, bool write, struct kvm_xcache *cache)
{
	unsigned int i;
	size_t total = 0;
	int ret;

	might_sleep();
	for (i = 0; i < nr; i++) {
		ret = xi_check_range(ranges[i].gpa, ranges[i].len);
		if (ret)
			return ret;
		total += ranges[i].len;
		if (total > MAX_RW_COUNT)
			return -EOVERFLOW;
	}
	if (total != len)
		return -EINVAL;
	return xi_copy_checked(intf, ranges, nr, buf, len, write, cache);
}

/*
 * A one-range copy: the fast path, else the general one.  Inlined into
 * each entry point, so that each is specialised for its direction.  As in
 * copy_from_user(), a debug kernel checks that the caller may sleep (the
 * copy may fault), and there is no preemption point.
 */
static __always_inline int xi_copy_one(struct kvm_xinterface *intf,
				       struct kvm_xcache *cache, u64 gpa,
				       void *buf, size_t len, bool write)
{
	struct kvm_xrange r = { .gpa = gpa, .len = len };
	int ret;

	might_fault();
	ret = xi_copy_fast(intf, gpa, buf, len, write, cache);
	if (likely(ret <= 0))
		return ret;
	return xi_copy(intf, &r, 1, buf, len, write, cache);
}

static int xi_copy_to(struct kvm_xinterface *intf, u64 gpa, const void *src,
		      size_t len)
{
	return xi_copy_one(intf, NULL, gpa, (void *)src, len, true);
}

static int xi_copy_from(struct kvm_xinterface *intf, void *dst, u64 gpa,
			size_t len)
{
	return xi_copy_one(intf, NULL, gpa, dst, len, false);
}

/* copyv of more than one range: a snapshot of the array first. */
static noinline int xi_copyv_array(struct kvm_xinterface *intf,
				   const struct kvm_xrange *ranges,
				   unsigned int nr, void *buf, size_t len,
				   bool write, struct kvm_xcache *cache)
{
	/* Filled before it is read: no need to zero it first. */
	struct kvm_xrange stack[XI_STACK_RANGES] __uninitialized;
	struct kvm_xrange *snap = stack;
	size_t total = 0;
	unsigned int i;
	int ret = 0;

	if (nr > XI_MAX_RANGES)
		return -EINVAL;
	/*
	 * Read the caller's ranges once, and check them as they are read:
	 * the lengths that were checked against @len are the ones copied,
	 * even if the array changes.
	 */
	if (nr > ARRAY_SIZE(stack)) {
		snap = kmalloc_array(nr, sizeof(*snap), GFP_KERNEL);
		if (!snap)
			return -ENOMEM;
	}
	for (i = 0; i < nr; i++) {
		snap[i] = ranges[i];
		ret = xi_check_range(snap[i].gpa, snap[i].len);
		if (ret)
			goto out;
		total += snap[i].len;
		if (total > MAX_RW_COUNT) {
			ret = -EOVERFLOW;
			goto out;
		}
	}
	ret = total == len ? xi_copy_checked(intf, snap, nr, buf, len, write,
					     cache) : -EINVAL;
out:
	if (snap != stack)
		kfree(snap);
	return ret;
}

/**
 * kvm_xinterface_copyv() - copy between a kernel buffer and guest ranges
 * @intf: the binding.
 * @ranges: the guest ranges, in buffer order (a descriptor chain).
 * @nr: number of ranges.
 * @buf: the kernel buffer; @len bytes.
 * @len: buffer length; must equal the sum of the ranges' lengths.
 * @write: true to scatter @buf into the ranges, false to gather them.
 * @cache: translation cache, or NULL.
 *
 * One call moves a whole chain: the switch to the VM's mm (from a kthread)
 * or the mm reference (from another task) is taken once, the memslots are
 * searched once per contiguous run rather than per page, and not at all
 * when @cache already holds the memslot.  Contexts, dirty logging and
 * partial results as for kvm_xinterface_copy_to().  May sleep.
 *
 * @ranges is read once, before anything is copied: a caller that changes
 * it during the call gets the ranges as they were on entry.
 *
 * Return: 0 on success, -EINVAL if @nr exceeds 1024 or @len is not the
 * total length of the ranges, -EOVERFLOW if a range overflows or the total
 * exceeds MAX_RW_COUNT, -ENOMEM (more than 8 ranges need a kernel copy of
 * the array), or the errors of kvm_xinterface_copy_to() (write) and
 * kvm_xinterface_copy_from() (read).
 */
int kvm_xinterface_copyv(struct kvm_xinterface *intf,
			 const struct kvm_xrange *ranges, unsigned int nr,
			 void *buf, size_t len, bool write,
			 struct kvm_xcache *cache)
{
	struct kvm_xrange one;

	if (nr != 1) {
		might_fault();
		return xi_copyv_array(intf, ranges, nr, buf, len, write, cache);
	}
	/* One range: read it once; a length mismatch gets xi_copy()'s errors. */
	one = *ranges;
	if (one.len == len)
		return xi_copy_one(intf, cache, one.gpa, buf, len, write);
	return xi_copy(intf, &one, 1, buf, len, write, cache);
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_copyv, KVM_XINTERFACE);

/**
 * kvm_xinterface_copy_to_cached() - kvm_xinterface_copy_to() with a cache
 * @intf: the binding.
 * @cache: translation cache, or NULL.
 * @gpa: guest physical address of the first byte to write.
 * @src: kernel buffer to copy from.
 * @len: number of bytes.
 *
 * The one-range kvm_xinterface_copyv() (the cache as described there).
 *
 * Return: as kvm_xinterface_copy_to().
 */
int kvm_xinterface_copy_to_cached(struct kvm_xinterface *intf,
				  struct kvm_xcache *cache, u64 gpa,
				  const void *src, size_t len)
{
	return xi_copy_one(intf, cache, gpa, (void *)src, len, true);
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_copy_to_cached, KVM_XINTERFACE);

/**
 * kvm_xinterface_copy_from_cached() - kvm_xinterface_copy_from() with a cache
 * @intf: the binding.
 * @cache: translation cache, or NULL.
 * @dst: kernel buffer to copy to.
 * @gpa: guest physical address of the first byte to read.
 * @len: number of bytes.
 *
 * The one-range kvm_xinterface_copyv() (the cache as described there).
 *
 * Return: as kvm_xinterface_copy_from().
 */
int kvm_xinterface_copy_from_cached(struct kvm_xinterface *intf,
				    struct kvm_xcache *cache, void *dst,
				    u64 gpa, size_t len)
{
	return xi_copy_one(intf, cache, gpa, dst, len, false);
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_copy_from_cached, KVM_XINTERFACE);

/**
 * kvm_xinterface_use_mm() - stay in the VM's mm for a batch of copies
 * @intf: the binding.
 *
 * For a kthread or workqueue item that makes many small copies: takes a
 * reference on the VM's mm and switches to it, so the copies until
 * kvm_xinterface_unuse_mm() run as in the VM owner's context instead of
 * switching mm on every call.  The reference keeps the owner's address
 * space alive even if the owner exits, so keep the scope short (one
 * batch), as vhost does per work item.  May sleep.
 *
 * Return: 0, -EINVAL if the caller is not a kthread without an mm, or
 * -ESRCH if the VM's owner exited.
 */
int kvm_xinterface_use_mm(struct kvm_xinterface *intf)
{
	struct mm_struct *mm = intf->kvm->mm;

	might_sleep();
	if (!(current->flags & PF_KTHREAD) || current->mm)
		return -EINVAL;
	if (!mmget_not_zero(mm))
		return -ESRCH;
	kthread_use_mm(mm);
	return 0;
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_use_mm, KVM_XINTERFACE);

/**
 * kvm_xinterface_unuse_mm() - end a kvm_xinterface_use_mm() scope
 * @intf: the binding passed to kvm_xinterface_use_mm().
 *
 * May sleep (the last reference to the mm may be dropped here).
 */
void kvm_xinterface_unuse_mm(struct kvm_xinterface *intf)
{
	struct mm_struct *mm = intf->kvm->mm;

	might_sleep();
	if (WARN_ON_ONCE(current->mm != mm))
		return;
	kthread_unuse_mm(mm);
	mmput(mm);
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_unuse_mm, KVM_XINTERFACE);

static void xi_release(struct kvm_xinterface *intf)
{
	struct xi_binding *b = container_of(intf, struct xi_binding, intf);

	kvm_put_kvm(intf->kvm);
	fput(b->file);
	kfree(b);
}

static const struct kvm_xinterface_ops xi_ops = {
	.copy_to = xi_copy_to,
	.copy_from = xi_copy_from,
	.release = xi_release,
};

/**
 * kvm_xinterface_bind_file() - bind to the VM behind a file
 * @file: a KVM VM file (from KVM_CREATE_VM).
 *
 * Must be called by the VM's owner, the process that created the VM
 * (current->mm is the VM's mm), as KVM requires of every VM ioctl: in the
 * VMM's context, typically in an ioctl of the consumer's device that
 * passes the VM fd.  The binding may then be used from any context the
 * copy functions allow (kthreads, workqueues, other tasks).
 *
 * The binding holds a reference on @file, which keeps the VM and the
 * vendor module alive, and a reference on the VM.  Drop it with
 * kvm_xinterface_put().  May sleep.
 *
 * Return: the binding, ERR_PTR(-EINVAL) if @file is not a KVM VM,
 * ERR_PTR(-EIO) if the caller is not the VM's owner or the VM is dead
 * (KVM's errno for both), or ERR_PTR(-ENOMEM).
 */
struct kvm_xinterface *kvm_xinterface_bind_file(struct file *file)
{
	struct xi_binding *b;
	struct kvm *kvm;

	if (!file_is_kvm(file))
		return ERR_PTR(-EINVAL);
	kvm = file->private_data;
	/*
	 * KVM's own rule for VM ioctls: only the VM's owner may use it, and
	 * not once it is dead.  A process that merely holds the fd (a forked
	 * child, a receiver of SCM_RIGHTS) must not reach guest memory
	 * through a consumer module either.
	 */
	if (kvm->mm != current->mm || READ_ONCE(kvm->vm_dead))
		return ERR_PTR(-EIO);

	b = kzalloc(sizeof(*b), GFP_KERNEL_ACCOUNT);
	if (!b)
		return ERR_PTR(-ENOMEM);
	b->file = get_file(file);
	b->id = atomic64_inc_return(&xi_next_id);
	kvm_get_kvm(kvm);
	b->intf.kvm = kvm;
	b->intf.ops = &xi_ops;
	kref_init(&b->intf.kref);
	return &b->intf;
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_bind_file, KVM_XINTERFACE);

/**
 * kvm_xinterface_bind() - bind to the VM behind a file descriptor
 * @fd: a KVM VM file descriptor of the calling process.
 *
 * As kvm_xinterface_bind_file(), for the file @fd refers to in the
 * calling task.  The binding does not depend on @fd afterwards: closing
 * the descriptor does not end it.
 *
 * Return: the binding, ERR_PTR(-EBADF) if @fd is not an open descriptor,
 * or the errors of kvm_xinterface_bind_file().
 */
struct kvm_xinterface *kvm_xinterface_bind(int fd)
{
	CLASS(fd, f)(fd);

	if (fd_empty(f))
		return ERR_PTR(-EBADF);
	return kvm_xinterface_bind_file(fd_file(f));
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_bind, KVM_XINTERFACE);

/*
 * vmap: a kernel mapping of guest pages that holds no page reference, in
 * the manner of virt/kvm/pfncache.c.  The pages are looked up and mapped
 * by a refresh; the MMU notifier (kvm_xinterface_invalidate()) marks the
 * mapping invalid, under the write side of xi_vmap.lock, before the pages
 * can be unmapped from the VM's mm and freed.  Accesses run between
 * kvm_xvmap_begin() and kvm_xvmap_end() under the read side of that lock
 * and under kvm->srcu, so neither an invalidation nor a memslot update can
 * complete in the middle of one.
 */

/* Part of a mapping that lies in one memslot. */
struct xi_vmap_run {
	unsigned long hva;		/* first byte, page aligned */
	unsigned long hva_end;		/* exclusive */
	struct kvm_memory_slot *slot;
	u64 gpa;			/* first byte, page aligned */
	size_t offset;			/* from the mapping's first page */
};

struct xi_vmap {
	struct kvm_xvmap map;
	struct kref kref;
	struct kvm_xinterface *intf;
	struct list_head link;		/* on kvm->xi_vmaps, under xi_lock */
	struct mutex refresh_lock;	/* one refresh at a time */
	/*
	 * Write side: refresh and invalidation.  Read side: accesses, which
	 * may also read the fields below.
	 */
	rwlock_t lock;
	bool valid;
	void *vaddr;			/* vmap() of the pages; NULL if !valid */
	void *stale;			/* invalidated vmap(), for unmap_work */
	struct work_struct unmap_work;	/* vunmap()s @stale, holds a ref */
	u64 generation;			/* memslot generation at refresh */
	unsigned long inval_seq;	/* bumped by every overlapping hook */
	unsigned int nr_runs;
	/* Constant after creation. */
	u64 gpa;
	bool write;
	unsigned long npages;
	struct page **pages;		/* refresh scratch */
	struct xi_vmap_run *runs;	/* npages entries */
};

static struct xi_vmap *to_xi_vmap(struct kvm_xvmap *map)
{
	return container_of(map, struct xi_vmap, map);
}

static bool xi_vmap_overlaps(struct xi_vmap *m, unsigned long start,
			     unsigned long end)
{
	unsigned int i;

	for (i = 0; i < m->nr_runs; i++)
		if (m->runs[i].hva < end && start < m->runs[i].hva_end)
			return true;
	return false;
}

/*
 * Tear down the kernel alias of an invalidated mapping: its pages may be
 * freed as soon as the notifier returns, and no kernel PTE should point
 * at them after that.  vunmap() sleeps and the notifier may not, so the
 * unmap runs from a work item holding a reference on the mapping.  Under
 * the write side of m->lock.  A mapping whose last reference is going
 * away is left to xi_vmap_release(), which unmaps it.
 *
 * A retire happens only to a valid mapping, and a refresh takes (and
 * unmaps) both @vaddr and @stale before it makes the mapping valid again,
 * so @stale is free here; the work, when it runs, unmaps whatever @stale
 * holds then and drops the reference it was queued with.
 */
static void xi_vmap_release(struct kref *kref);

static void xi_vmap_retire(struct xi_vmap *m)
{
	if (!m->vaddr || WARN_ON_ONCE(m->stale) ||
	    !kref_get_unless_zero(&m->kref))
		return;
	m->stale = m->vaddr;
	m->vaddr = NULL;
	m->map.addr = NULL;
	/*
	 * Still pending from an earlier retire: that queueing's reference
	 * is held until the work runs (it takes m->lock first), so this
	 * put cannot be the last.
	 */
	if (!queue_work(system_unbound_wq, &m->unmap_work))
		kref_put(&m->kref, xi_vmap_release);
}

/* An invalidation hit the mapping; under the write side of m->lock. */
static void xi_vmap_invalidate(struct xi_vmap *m)
{
	m->inval_seq++;
	if (m->valid) {
		m->valid = false;
		xi_vmap_retire(m);
	}
}

/*
 * Hook of kvm_mmu_invalidate_range_add(), under mmu_lock: the gfns
 * [start, end) are being invalidated, by the MMU notifier (for a memslot's
 * hva range) or by a private/shared conversion, which does not go through
 * the notifier.  The gfn span of a mapping is constant, so no lock is
 * needed to test it.
 */
void kvm_xinterface_invalidate_gfn(struct kvm *kvm, gfn_t start, gfn_t end)
{
	struct xi_vmap *m;

	spin_lock(&kvm->xi_lock);
	list_for_each_entry(m, &kvm->xi_vmaps, link) {
		gfn_t first = m->gpa >> PAGE_SHIFT;

		if (end <= first || start >= first + m->npages)
			continue;
		write_lock(&m->lock);
		xi_vmap_invalidate(m);
		write_unlock(&m->lock);
	}
	spin_unlock(&kvm->xi_lock);
}

/*
 * MMU-notifier hook (invalidate_range_start and release): called before
 * the pages of [start, end) of the VM's mm are unmapped.  Waits for the
 * accesses in progress and makes the next kvm_xvmap_begin() fail.
 */
void kvm_xinterface_invalidate(struct kvm *kvm, unsigned long start,
			       unsigned long end)
{
	struct xi_vmap *m;

	spin_lock(&kvm->xi_lock);
	list_for_each_entry(m, &kvm->xi_vmaps, link) {
		bool hit;

		/*
		 * Most invalidations miss a given mapping: look under the
		 * read lock so its accesses are not stalled, as pfncache does.
		 * A hit also counts while a refresh is under way (the runs
		 * are written under the write lock), so the refresh retries.
		 */
		read_lock(&m->lock);
		hit = xi_vmap_overlaps(m, start, end);
		read_unlock(&m->lock);
		if (!hit)
			continue;
		write_lock(&m->lock);
		if (xi_vmap_overlaps(m, start, end))
			xi_vmap_invalidate(m);
		write_unlock(&m->lock);
	}
	spin_unlock(&kvm->xi_lock);
}

/*
 * Did something that could change the pages of the mapping happen while a
 * refresh looked them up?  Under m->lock (write) and kvm->srcu.
 *  - A hook hit the mapping (@inval_seq moved): an invalidation of its
 *    hva ranges or of its gfns (including a private/shared conversion).
 *  - The memslots changed: a deleted memslot's hva range can be unmapped
 *    without any hook seeing the mapping's gfns.
 *  - An hva invalidation is in progress: its hook may have run before the
 *    refresh wrote the runs, and it may still be zapping the pages the
 *    lookup found.  As pfncache's mmu_notifier_retry_cache(), the
 *    notifier's mn_active_invalidate_count stands for it.
 *  - A conversion (or any gfn invalidation) of the mapping's gfns is in
 *    progress: its attributes may be changing under the lookup.
 * The last two (xi_vmap_busy()) are also waited out before the lookup: an
 * invalidation whose hook ran before the refresh took @inval_seq, and that
 * ended before the final check, would otherwise go unseen.
 */
static bool xi_vmap_busy(struct xi_vmap *m)
{
	struct kvm *kvm = m->intf->kvm;
	gfn_t first = m->gpa >> PAGE_SHIFT, last = first + m->npages;

	if (xi_racy(kvm->mn_active_invalidate_count))
		return true;
	return xi_racy(kvm->mmu_invalidate_in_progress) &&
	       first < xi_racy(kvm->mmu_invalidate_range_end) &&
	       xi_racy(kvm->mmu_invalidate_range_start) < last;
}

static bool xi_vmap_raced(struct xi_vmap *m, unsigned long inval_seq,
			  u64 generation)
{
	return m->inval_seq != inval_seq ||
	       kvm_memslots(m->intf->kvm)->generation != generation ||
	       xi_vmap_busy(m);
}

/*
 * Fill m->runs for the current memslots, refusing what a copy would
 * refuse.  Under kvm->srcu and the write side of m->lock (the MMU-notifier
 * hook reads the runs), with m->valid false.  On error no run is left.
 */
static int xi_vmap_lookup(struct xi_vmap *m, u64 *generation)
{
	struct kvm *kvm = m->intf->kvm;
	struct kvm_memslots *slots = kvm_memslots(kvm);
	bool ring_only = xi_ring_only(kvm);
	u64 gpa = m->gpa & PAGE_MASK;
	size_t len = m->npages << PAGE_SHIFT, off = 0;
	unsigned int nr = 0;

	*generation = slots->generation;
	m->nr_runs = 0;
	while (len) {
		struct kvm_memory_slot *slot;
		gfn_t gfn = gpa >> PAGE_SHIFT;
		size_t run;
		int ret;

		slot = __gfn_to_memslot(slots, gfn);
		ret = xi_slot_check(slot, m->write, ring_only);
		if (ret)
			return ret;
		run = xi_slot_run(slot->base_gfn, slot->npages, gpa, len);
		m->runs[nr].hva = __gfn_to_hva_memslot(slot, gfn);
		m->runs[nr].hva_end = m->runs[nr].hva + run;
		m->runs[nr].slot = slot;
		m->runs[nr].gpa = gpa;
		m->runs[nr].offset = off;
		nr++;
		gpa += run;
		off += run;
		len -= run;
	}
	m->nr_runs = nr;
	return 0;
}

/*
 * Refuse private gfns.  Under kvm->srcu only: the runs change only in a
 * refresh (under refresh_lock), and a conversion that races this scan is
 * caught by xi_vmap_raced(); the scan is kept out of m->lock, which the
 * gfn hook takes with mmu_lock held.
 */
static int xi_vmap_check_private(struct xi_vmap *m)
{
	struct kvm *kvm = m->intf->kvm;
	unsigned int i;
	gfn_t gfn;

	for (i = 0; i < m->nr_runs; i++) {
		struct xi_vmap_run *r = &m->runs[i];
		gfn_t first = r->gpa >> PAGE_SHIFT;

		if (!kvm_slot_can_be_private(r->slot))
			continue;
		for (gfn = first; gfn < first + ((r->hva_end - r->hva) >>
						  PAGE_SHIFT); gfn++)
			if (kvm_mem_is_private(kvm, gfn))
				return -EPERM;
	}
	return 0;
}

/* Look up the pages of every run; on success each holds a reference. */
static int xi_vmap_get_pages(struct xi_vmap *m, struct mm_struct *mm)
{
	unsigned int gup = m->write ? FOLL_WRITE : 0;
	unsigned long done = 0;
	int locked = 0, ret = 0;
	unsigned int i;

	for (i = 0; i < m->nr_runs && !ret; i++) {
		struct xi_vmap_run *r = &m->runs[i];
		unsigned long hva = r->hva;

		while (hva < r->hva_end) {
			long n = xi_gup_remote(mm, hva,
					       (r->hva_end - hva) >> PAGE_SHIFT,
					       gup, m->pages + done, false,
					       &locked);
			if (n <= 0) {
				ret = xi_gup_errno(n);
				break;
			}
			done += n;
			hva += n << PAGE_SHIFT;
		}
	}
	if (locked)
		mmap_read_unlock(mm);
	if (ret)
		release_pages(m->pages, done);
	return ret;
}

/*
 * Is the mapping usable now?  Under m->lock and kvm->srcu.  The hooks
 * clear m->valid on every invalidation of its hvas or gfns, conversions
 * included; memslot changes show in the generation.
 */
static bool xi_vmap_usable(struct xi_vmap *m)
{
	return m->valid &&
	       kvm_memslots(m->intf->kvm)->generation == m->generation;
}

/*
 * Like a vCPU fault, retries for as long as invalidations race it; gives
 * up on a fatal signal, or when the calling kthread is being stopped.
 * Whatever happens, nothing of the old mapping survives: its alias is
 * unmapped before the lookup, so a failed refresh leaves no kernel PTE
 * to pages the notifier no longer protects.
 */
static int xi_vmap_refresh_locked(struct xi_vmap *m, struct mm_struct *mm)
{
	struct kvm *kvm = m->intf->kvm;
	pgprot_t prot = m->write ? PAGE_KERNEL : PAGE_KERNEL_RO;

	for (;;) {
		unsigned long inval_seq;
		void *vaddr, *old, *stale;
		u64 generation;
		int ret, idx;

		write_lock(&m->lock);
		m->valid = false;
		old = m->vaddr;
		stale = m->stale;
		m->vaddr = NULL;
		m->stale = NULL;
		m->map.addr = NULL;
		inval_seq = m->inval_seq;
		write_unlock(&m->lock);
		if (old)
			vunmap(old);
		if (stale)
			vunmap(stale);
		/* Wait out invalidations in progress, see xi_vmap_raced(). */
		if (xi_vmap_busy(m)) {
			if (xi_give_up())
				return -EINTR;
			cond_resched();
			continue;
		}
		/*
		 * The lookup reads memory attributes after seeing no
		 * conversion in progress: order it after those loads.
		 */
		smp_rmb();

		idx = srcu_read_lock(&kvm->srcu);
		write_lock(&m->lock);
		ret = xi_vmap_lookup(m, &generation);
		write_unlock(&m->lock);
		if (!ret)
			ret = xi_vmap_check_private(m);
		srcu_read_unlock(&kvm->srcu, idx);
		if (ret)
			return ret;

		ret = xi_vmap_get_pages(m, mm);
		if (ret)
			return ret;
		/*
		 * A read-only lookup may return the shared zero page, a KSM
		 * page or a page-cache page: map it read-only, so that a
		 * stray write faults in the caller instead of corrupting it.
		 */
		vaddr = vmap(m->pages, m->npages, VM_MAP, prot);
		if (!vaddr) {
			release_pages(m->pages, m->npages);
			return -ENOMEM;
		}

		idx = srcu_read_lock(&kvm->srcu);
		write_lock(&m->lock);
		if (xi_vmap_raced(m, inval_seq, generation)) {
			write_unlock(&m->lock);
			srcu_read_unlock(&kvm->srcu, idx);
			vunmap(vaddr);
			release_pages(m->pages, m->npages);
			if (xi_give_up())
				return -EINTR;
			cond_resched();
			continue;
		}
		m->vaddr = vaddr;
		m->map.addr = vaddr + offset_in_page(m->gpa);
		m->generation = generation;
		m->valid = true;
		write_unlock(&m->lock);
		srcu_read_unlock(&kvm->srcu, idx);

		/*
		 * No reference is kept: from now on the hooks invalidate the
		 * mapping before any of these pages can go away.
		 */
		release_pages(m->pages, m->npages);
		return 0;
	}
}

/*
 * The task inside an access section on each CPU.  A section runs with
 * preemption disabled (read_lock), so the task cannot change CPU inside
 * it and this CPU's entry is current exactly while current is inside one.
 */
static DEFINE_PER_CPU(struct task_struct *, xi_section_task);

static bool xi_in_section(void)
{
	return this_cpu_read(xi_section_task) == current;
}

/* Take a mapping's locks if it is usable; the bookkeeping is the caller's. */
static bool xi_vmap_lock_usable(struct xi_vmap *m, int *idx)
{
	struct kvm *kvm = m->intf->kvm;

	*idx = srcu_read_lock(&kvm->srcu);
	read_lock(&m->lock);
	if (xi_vmap_usable(m)) {
		/*
		 * The section stays open across the return.  sparse cannot
		 * express a lock that is taken only when a function returns
		 * >= 0, so it is told the section is balanced here and in
		 * xi_vmap_unlock(); lockdep checks the real sections.
		 */
		__release(&m->lock);
		__release(&kvm->srcu);
		return true;
	}
	read_unlock(&m->lock);
	srcu_read_unlock(&kvm->srcu, *idx);
	return false;
}

static void xi_vmap_unlock(struct xi_vmap *m, int idx)
{
	__acquire(&m->intf->kvm->srcu);
	__acquire(&m->lock);
	read_unlock(&m->lock);
	srcu_read_unlock(&m->intf->kvm->srcu, idx);
}

/**
 * kvm_xvmap_refresh() - (re)build a mapping after kvm_xvmap_begin() failed
 * @map: the mapping.
 *
 * Looks the range up in the current memslots and maps its pages again,
 * waiting, as a vCPU fault would, for pages of a userfaultfd range to be
 * provided and for invalidations that race it to end.  Must not be called
 * between kvm_xvmap_begin() and kvm_xvmap_end().  May sleep.
 *
 * Return: 0 when the mapping is usable again (call kvm_xvmap_begin()), or
 *  * -ENXIO: part of the range is no longer in a user memslot;
 *  * -EROFS: a writable mapping's range is now in a read-only memslot;
 *  * -EPERM: part of the range is now private memory;
 *  * -EOPNOTSUPP: a writable mapping's range is in a memslot with dirty
 *    logging on and the VM uses the dirty ring without a bitmap;
 *  * -ESRCH: the VM's owner exited;
 *  * -EFAULT: the memslot's userspace mapping is gone (munmap);
 *  * -ENOMEM;
 *  * -EINTR: a fatal signal arrived while waiting (for another refresh of
 *    the mapping, a userfaultfd page, or racing invalidations to end); a
 *    wait for racing invalidations also ends when the calling kthread is
 *    being stopped, the other two do not;
 *  * -EDEADLK: called inside an access section (a bug of the caller).
 *
 * A mapping that failed to refresh stays unusable, but it may be refreshed
 * again later, e.g. after the memslot is added back.
 */
int kvm_xvmap_refresh(struct kvm_xvmap *map)
{
	struct xi_vmap *m = to_xi_vmap(map);
	struct mm_struct *mm = m->intf->kvm->mm;
	int ret, idx;

	if (xi_in_section())
		return -EDEADLK;
	might_sleep();
	if (!mmget_not_zero(mm))
		return -ESRCH;
	if (mutex_lock_killable(&m->refresh_lock)) {
		mmput(mm);
		return -EINTR;
	}
	/* Another thread may have refreshed it while we waited. */
	if (xi_vmap_lock_usable(m, &idx)) {
		xi_vmap_unlock(m, idx);
		ret = 0;
	} else {
		ret = xi_vmap_refresh_locked(m, mm);
	}
	mutex_unlock(&m->refresh_lock);
	mmput(mm);
	return ret;
}
EXPORT_SYMBOL_NS_GPL(kvm_xvmap_refresh, KVM_XINTERFACE);

/**
 * kvm_xvmap_begin() - start an access through a mapping
 * @map: the mapping.
 *
 * On success @map->addr may be read (and written, for a writable mapping)
 * until kvm_xvmap_end().  The section is atomic: no sleeping, no user
 * access, no page faults; keep it short, since it delays memslot updates
 * and the VM's MMU notifier.  Not for interrupt context.
 *
 * Sections do not nest: a task inside a section (of any mapping) must end
 * it before it begins another.  A nested begin would wait behind an MMU
 * notifier that waits for the outer section, so it is refused.
 *
 * Return: a cookie (>= 0) for kvm_xvmap_end(), or
 *  * -EAGAIN: the mapping was invalidated (memslot change, MMU-notifier
 *    invalidation of the backing, the VM's mm exiting, private/shared
 *    conversion): call kvm_xvmap_refresh() and begin again;
 *  * -EDEADLK: the calling task is already inside a section.
 */
int kvm_xvmap_begin(struct kvm_xvmap *map)
{
	struct xi_vmap *m = to_xi_vmap(map);
	int idx;

	if (unlikely(xi_in_section()))
		return -EDEADLK;
	if (!xi_vmap_lock_usable(m, &idx))
		return -EAGAIN;
	this_cpu_write(xi_section_task, current);
	return idx;
}
EXPORT_SYMBOL_NS_GPL(kvm_xvmap_begin, KVM_XINTERFACE);

/**
 * kvm_xvmap_end() - end an access begun by kvm_xvmap_begin()
 * @map: the mapping.
 * @idx: the cookie kvm_xvmap_begin() returned.
 */
void kvm_xvmap_end(struct kvm_xvmap *map, int idx)
{
	struct xi_vmap *m = to_xi_vmap(map);

	lockdep_assert_held_read(&m->lock);
	this_cpu_write(xi_section_task, NULL);
	xi_vmap_unlock(m, idx);
}
EXPORT_SYMBOL_NS_GPL(kvm_xvmap_end, KVM_XINTERFACE);

/**
 * kvm_xvmap_mark_dirty() - report writes made through a mapping
 * @map: a mapping created with KVM_XVMAP_WRITE.
 * @offset: offset of the first byte written, from @map->addr.
 * @len: number of bytes written.
 *
 * Marks the pages in the memslots' dirty bitmaps, as kvm_xinterface_copy_to()
 * does.  Call it inside the access section that wrote, before
 * kvm_xvmap_end().  A range beyond the mapping is clipped to it.
 */
void kvm_xvmap_mark_dirty(struct kvm_xvmap *map, size_t offset, size_t len)
{
	struct xi_vmap *m = to_xi_vmap(map);
	size_t start, end;
	unsigned int i;

	lockdep_assert_held_read(&m->lock);
	if (WARN_ON_ONCE(!m->write) || offset >= map->len)
		return;
	len = min(len, map->len - offset);
	start = offset_in_page(m->gpa) + offset;
	end = start + len;
	for (i = 0; i < m->nr_runs; i++) {
		struct xi_vmap_run *r = &m->runs[i];
		size_t rs = r->offset, re = r->offset + (r->hva_end - r->hva);
		size_t s = max(rs, start), e = min(re, end);

		if (s < e)
			xi_mark_dirty(r->slot, r->gpa + (s - rs), e - s);
	}
}
EXPORT_SYMBOL_NS_GPL(kvm_xvmap_mark_dirty, KVM_XINTERFACE);

static void xi_vmap_unmap_work(struct work_struct *work)
{
	struct xi_vmap *m = container_of(work, struct xi_vmap, unmap_work);
	void *stale;

	write_lock(&m->lock);
	stale = m->stale;
	m->stale = NULL;
	write_unlock(&m->lock);
	if (stale)
		vunmap(stale);
	kvm_xvmap_put(&m->map);
}

static void xi_vmap_release(struct kref *kref)
{
	struct xi_vmap *m = container_of(kref, struct xi_vmap, kref);
	struct kvm *kvm = m->intf->kvm;

	spin_lock(&kvm->xi_lock);
	list_del(&m->link);
	spin_unlock(&kvm->xi_lock);
	if (m->vaddr)
		vunmap(m->vaddr);
	kvfree(m->runs);
	kvfree(m->pages);
	mutex_destroy(&m->refresh_lock);
	kvm_xinterface_put(m->intf);
	kfree(m);
}

/**
 * kvm_xvmap_get() - take a reference on a mapping
 * @map: the mapping; the caller must already hold a reference.
 *
 * Return: @map.
 */
struct kvm_xvmap *kvm_xvmap_get(struct kvm_xvmap *map)
{
	kref_get(&to_xi_vmap(map)->kref);
	return map;
}
EXPORT_SYMBOL_NS_GPL(kvm_xvmap_get, KVM_XINTERFACE);

/**
 * kvm_xvmap_put() - drop a reference on a mapping
 * @map: the mapping.
 *
 * The last put unmaps it and drops its reference on the binding.  May
 * sleep; not inside an access section.
 */
void kvm_xvmap_put(struct kvm_xvmap *map)
{
	might_sleep();
	kref_put(&to_xi_vmap(map)->kref, xi_vmap_release);
}
EXPORT_SYMBOL_NS_GPL(kvm_xvmap_put, KVM_XINTERFACE);

/**
 * kvm_xinterface_vmap() - map a guest physical range into the kernel
 * @intf: the binding.
 * @gpa: guest physical address of the first byte; any alignment.
 * @len: length in bytes, at least 1; may span pages and adjacent memslots.
 * @flags: 0 for a read-only mapping, or KVM_XVMAP_WRITE.
 *
 * The mapping holds a reference on the binding but none on the pages: they
 * stay movable (migration, compaction, KSM, THP) and the mapping is
 * invalidated instead, see struct kvm_xvmap for the access protocol.  A
 * read-only mapping of a range the guest has never written may map the
 * zero page until the guest writes it; a read-only mapping is mapped
 * read-only in the kernel (PAGE_KERNEL_RO), so a write through it faults.
 * An invalidated mapping's kernel alias is torn down soon after the
 * notifier returns (from a work item), not kept until the next refresh.
 * Works from any context that may sleep.
 *
 * Return: the mapping (drop it with kvm_xvmap_put()), or ERR_PTR() of
 * -EINVAL (bad @flags or @len 0), -EOVERFLOW (as for copies), -ENOMEM, or
 * an error of kvm_xvmap_refresh().
 */
struct kvm_xvmap *kvm_xinterface_vmap(struct kvm_xinterface *intf, u64 gpa,
				      size_t len, unsigned int flags)
{
	struct kvm *kvm = intf->kvm;
	struct xi_vmap *m;
	int ret;

	might_sleep();
	if ((flags & ~KVM_XVMAP_WRITE) || !len)
		return ERR_PTR(-EINVAL);
	ret = xi_check_range(gpa, len);
	if (ret)
		return ERR_PTR(ret);

	m = kzalloc(sizeof(*m), GFP_KERNEL_ACCOUNT);
	if (!m)
		return ERR_PTR(-ENOMEM);
	m->npages = (offset_in_page(gpa) + len + PAGE_SIZE - 1) >> PAGE_SHIFT;
	/* Sized by the caller: a failure is its -ENOMEM, not a warning. */
	m->pages = kvmalloc_array(m->npages, sizeof(*m->pages),
				  GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	m->runs = kvmalloc_array(m->npages, sizeof(*m->runs),
				 GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	if (!m->pages || !m->runs) {
		kvfree(m->pages);
		kvfree(m->runs);
		kfree(m);
		return ERR_PTR(-ENOMEM);
	}
	kref_init(&m->kref);
	INIT_WORK(&m->unmap_work, xi_vmap_unmap_work);
	mutex_init(&m->refresh_lock);
	rwlock_init(&m->lock);
	m->gpa = gpa;
	m->write = flags & KVM_XVMAP_WRITE;
	m->map.len = len;
	m->intf = kvm_xinterface_get(intf);

	spin_lock(&kvm->xi_lock);
	list_add(&m->link, &kvm->xi_vmaps);
	spin_unlock(&kvm->xi_lock);

	ret = kvm_xvmap_refresh(&m->map);
	if (ret) {
		kvm_xvmap_put(&m->map);
		return ERR_PTR(ret);
	}
	return &m->map;
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_vmap, KVM_XINTERFACE);

/*
 * sg: guest ranges as a scatter-gather table, pages pinned with FOLL_PIN
 * for the life of the table (the pin a DMA target needs: pinned pages are
 * not migrated, and a COW break cannot move the guest's view away from
 * them, see Documentation/core-api/pin_user_pages.rst).
 */
struct xi_sg {
	struct kvm_xsg xsg;
	struct kvm_xinterface *intf;
	bool write;
	unsigned long npages;
	struct page **pages;
	unsigned int nr;
	struct kvm_xrange ranges[] __counted_by(nr);
};

static unsigned long xi_range_pages(const struct kvm_xrange *r)
{
	return (offset_in_page(r->gpa) + r->len + PAGE_SIZE - 1) >> PAGE_SHIFT;
}

/* Entries for @n pages: physically contiguous pages share one. */
static unsigned int xi_sg_segments(struct page **pages, unsigned long n)
{
	unsigned int segs = 1;
	unsigned long i;

	for (i = 1; i < n; i++)
		if (page_to_pfn(pages[i]) != page_to_pfn(pages[i - 1]) + 1)
			segs++;
	return segs;
}

/* Describe the pinned pages of one range; returns the next entry. */
static struct scatterlist *xi_sg_fill(struct scatterlist *sg,
				      struct page **pages,
				      const struct kvm_xrange *r)
{
	unsigned long n = xi_range_pages(r), i = 0;
	size_t off = offset_in_page(r->gpa), left = r->len;

	while (i < n) {
		unsigned long first = i;
		size_t seg;

		while (i + 1 < n &&
		       page_to_pfn(pages[i + 1]) == page_to_pfn(pages[i]) + 1)
			i++;
		i++;
		seg = min_t(size_t, left, ((i - first) << PAGE_SHIFT) - off);
		sg_set_page(sg, pages[first], seg, off);
		off = 0;
		left -= seg;
		sg = sg_next(sg);
	}
	return sg;
}

/*
 * Pin the pages of one range; under kvm->srcu.  mmap_lock is taken as
 * needed and may be dropped while a page is waited for (*@locked).
 */
static int xi_sg_pin(struct kvm *kvm, struct mm_struct *mm,
		     const struct kvm_xrange *r, bool write,
		     struct page **pages, unsigned long *pinned, int *locked)
{
	bool ring_only = xi_ring_only(kvm);
	unsigned int gup = write ? FOLL_WRITE : 0;
	u64 gpa = r->gpa & PAGE_MASK;
	size_t len = xi_range_pages(r) << PAGE_SHIFT;
	int ret = 0;

	while (len && !ret) {
		struct kvm_memory_slot *slot;
		gfn_t gfn = gpa >> PAGE_SHIFT;
		unsigned long hva, end;
		size_t run, i;

		slot = __gfn_to_memslot(kvm_memslots(kvm), gfn);
		ret = xi_slot_check(slot, write, ring_only);
		if (ret)
			break;
		run = xi_slot_run(slot->base_gfn, slot->npages, gpa, len);
		if (kvm_slot_can_be_private(slot))
			for (i = 0; i < run >> PAGE_SHIFT && !ret; i++)
				if (kvm_mem_is_private(kvm, gfn + i))
					ret = -EPERM;
		hva = __gfn_to_hva_memslot(slot, gfn);
		end = hva + run;
		while (hva < end && !ret) {
			long n = xi_gup_remote(mm, hva,
					       (end - hva) >> PAGE_SHIFT, gup,
					       pages + *pinned, true, locked);
			if (n <= 0) {
				ret = xi_gup_errno(n);
				break;
			}
			*pinned += n;
			hva += n << PAGE_SHIFT;
		}
		gpa += run;
		len -= run;
	}
	return ret;
}

/**
 * kvm_xinterface_sg() - pin guest ranges and describe them as an sg_table
 * @intf: the binding.
 * @ranges: the guest ranges, in order; each 1 byte or more, any alignment,
 *	may span pages and adjacent memslots.
 * @nr: number of ranges, 1 to 1024.
 * @dir: DMA_TO_DEVICE (the device reads guest memory), DMA_FROM_DEVICE or
 *	DMA_BIDIRECTIONAL (the device writes it: the ranges must be
 *	writable, as for kvm_xinterface_copy_to()).
 *
 * The pages are pinned with FOLL_PIN until kvm_xsg_free(), so the table
 * can be handed to dma_map_sgtable() or the sg_copy_*() helpers; adjacent
 * physically contiguous pages share an entry.  The pins are short-term
 * (no FOLL_LONGTERM): use the table for one I/O and free it, since pinned
 * pages block migration and compaction.  A private/shared conversion or a
 * memslot change after this call does not affect the pinned pages: the
 * table describes the guest memory as it was when it was built.  Works
 * from any context that may sleep.
 *
 * Return: the table, or ERR_PTR() of -EINVAL (bad @nr, @dir or an empty
 * range), -EOVERFLOW (a range overflows, or the total exceeds MAX_RW_COUNT),
 * -ENOMEM, -EOPNOTSUPP (a writable table for a VM with a dirty ring and no
 * dirty bitmap, whatever its memslots' flags: logging could be switched on
 * while the device writes), or the errors of kvm_xinterface_copy_to()
 * (writable) or kvm_xinterface_copy_from() (read-only).
 */
struct kvm_xsg *kvm_xinterface_sg(struct kvm_xinterface *intf,
				  const struct kvm_xrange *ranges,
				  unsigned int nr, enum dma_data_direction dir)
{
	struct kvm *kvm = intf->kvm;
	struct mm_struct *mm = kvm->mm;
	unsigned long npages = 0, pinned = 0;
	unsigned int i, nents = 0;
	struct scatterlist *sg;
	int ret, idx, locked = 0;
	size_t total = 0;
	struct xi_sg *s;

	might_sleep();
	if (!nr || nr > XI_MAX_RANGES || !valid_dma_direction(dir))
		return ERR_PTR(-EINVAL);

	/*
	 * Everything below works on this copy of @ranges: the caller's
	 * array is read once, so the lengths that size pages[] and the
	 * table are the ones pinned and described.
	 */
	s = kzalloc(struct_size(s, ranges, nr), GFP_KERNEL_ACCOUNT);
	if (!s)
		return ERR_PTR(-ENOMEM);
	s->nr = nr;
	memcpy(s->ranges, ranges, nr * sizeof(*ranges));
	for (i = 0; i < nr; i++) {
		const struct kvm_xrange *r = &s->ranges[i];

		ret = r->len ? xi_check_range(r->gpa, r->len) : -EINVAL;
		if (!ret && r->len > MAX_RW_COUNT - total)
			ret = -EOVERFLOW;
		if (ret)
			goto err_free;
		total += r->len;
		npages += xi_range_pages(r);
	}
	s->write = dir != DMA_TO_DEVICE;
	/*
	 * A table outlives the check: dirty logging may be switched on
	 * while the device writes, and a ring-only VM would have nowhere to
	 * record those writes at kvm_xsg_free().
	 */
	if (s->write && xi_ring_only(kvm)) {
		ret = -EOPNOTSUPP;
		goto err_free;
	}
	s->npages = npages;
	s->pages = kvmalloc_array(npages, sizeof(*s->pages),
				  GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	if (!s->pages) {
		ret = -ENOMEM;
		goto err_free;
	}

	if (!mmget_not_zero(mm)) {
		ret = -ESRCH;
		goto err_free;
	}
	/* The order of the fault path: kvm->srcu, then mmap_lock. */
	idx = srcu_read_lock(&kvm->srcu);
	for (i = 0, ret = 0; i < nr && !ret; i++)
		ret = xi_sg_pin(kvm, mm, &s->ranges[i], s->write, s->pages,
				&pinned, &locked);
	if (locked)
		mmap_read_unlock(mm);
	srcu_read_unlock(&kvm->srcu, idx);
	mmput(mm);
	if (ret)
		goto err_unpin;

	for (i = 0, pinned = 0; i < nr; i++) {
		unsigned long n = xi_range_pages(&s->ranges[i]);

		nents += xi_sg_segments(s->pages + pinned, n);
		pinned += n;
	}
	ret = sg_alloc_table(&s->xsg.sgt, nents, GFP_KERNEL_ACCOUNT);
	if (ret)
		goto err_unpin;
	sg = s->xsg.sgt.sgl;
	for (i = 0, pinned = 0; i < nr; i++) {
		sg = xi_sg_fill(sg, s->pages + pinned, &s->ranges[i]);
		pinned += xi_range_pages(&s->ranges[i]);
	}
	s->intf = kvm_xinterface_get(intf);
	return &s->xsg;

err_unpin:
	unpin_user_pages(s->pages, pinned);
err_free:
	kvfree(s->pages);
	kfree(s);
	return ERR_PTR(ret);
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_sg, KVM_XINTERFACE);

/* Report a writable table's pages to dirty logging, in today's memslots. */
static void xi_sg_mark_dirty(struct xi_sg *s)
{
	struct kvm *kvm = s->intf->kvm;
	unsigned int i;
	int idx;

	idx = srcu_read_lock(&kvm->srcu);
	for (i = 0; i < s->nr; i++) {
		u64 gpa = s->ranges[i].gpa;
		size_t len = s->ranges[i].len;

		while (len) {
			struct kvm_memory_slot *slot;
			size_t run;

			slot = __gfn_to_memslot(kvm_memslots(kvm),
						gpa >> PAGE_SHIFT);
			if (xi_slot_check(slot, true, false)) {
				run = min_t(size_t, len,
					    PAGE_SIZE - offset_in_page(gpa));
			} else {
				run = xi_slot_run(slot->base_gfn,
						  slot->npages, gpa, len);
				xi_mark_dirty(slot, gpa, run);
			}
			gpa += run;
			len -= run;
		}
	}
	srcu_read_unlock(&kvm->srcu, idx);
}

/**
 * kvm_xsg_free() - release a table from kvm_xinterface_sg()
 * @sg: the table; unmap it from any device first.
 *
 * Unpins the pages.  For a table built for DMA_FROM_DEVICE or
 * DMA_BIDIRECTIONAL the pages are marked dirty, both for the kernel
 * (set_page_dirty) and in the memslots' dirty bitmaps, since the device
 * may have written them.  May sleep.
 */
void kvm_xsg_free(struct kvm_xsg *sg)
{
	struct xi_sg *s = container_of(sg, struct xi_sg, xsg);

	might_sleep();
	if (s->write)
		xi_sg_mark_dirty(s);
	sg_free_table(&sg->sgt);
	unpin_user_pages_dirty_lock(s->pages, s->npages, s->write);
	kvm_xinterface_put(s->intf);
	kvfree(s->pages);
	kfree(s);
}
EXPORT_SYMBOL_NS_GPL(kvm_xsg_free, KVM_XINTERFACE);

#ifdef CONFIG_KVM_XINTERFACE_KUNIT_TEST
#include "xinterface_test.c"
#endif
