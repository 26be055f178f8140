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

#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/kvm_host.h>
#include <linux/kvm_xinterface.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

/*
 * No KVM architecture maps guest physical addresses at or beyond 2^52
 * (x86 and arm64 both top out there); a range ending beyond it is an
 * overflow, not a hole.
 */
#define XI_GPA_LIMIT		BIT_ULL(52)

/* Retries of one page when a private/shared conversion races a copy. */
#define XI_CONVERSION_RETRIES	16

struct xi_binding {
	struct kvm_xinterface intf;
	struct file *file;
};

/* How the copy reaches kvm->mm. */
enum xi_path {
	XI_PATH_OWN,		/* current->mm is kvm->mm: user access */
	XI_PATH_KTHREAD,	/* kthread_use_mm(kvm->mm), then user access */
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

/* Can this access go to @slot?  Maps each refusal to its errno. */
static int xi_slot_check(const struct kvm_memory_slot *slot, bool write,
			 bool dirty_ring)
{
	if (!slot || slot->id >= KVM_USER_MEM_SLOTS ||
	    (slot->flags & KVM_MEMSLOT_INVALID))
		return -ENXIO;
	if (!write)
		return 0;
	if (slot->flags & KVM_MEM_READONLY)
		return -EROFS;
	if (dirty_ring && kvm_slot_dirty_track_enabled(slot))
		return -EOPNOTSUPP;
	return 0;
}

static void xi_mark_dirty(struct kvm_memory_slot *slot, u64 gpa, size_t len)
{
	gfn_t gfn, last = (gpa + len - 1) >> PAGE_SHIFT;

	if (!kvm_slot_dirty_track_enabled(slot) || !slot->dirty_bitmap)
		return;
	for (gfn = gpa >> PAGE_SHIFT; gfn <= last; gfn++)
		set_bit_le(gfn - slot->base_gfn, slot->dirty_bitmap);
}

static int xi_copy_remote(struct mm_struct *mm, unsigned long hva, void *buf,
			  size_t len, bool write)
{
	int ret = 0;

	if (mmap_read_lock_killable(mm))
		return -EINTR;
	while (len) {
		size_t off = offset_in_page(hva);
		size_t n = min_t(size_t, len, PAGE_SIZE - off);
		struct page *page;
		void *p;

		if (get_user_pages_remote(mm, hva, 1, write ? FOLL_WRITE : 0,
					  &page, NULL) != 1) {
			ret = -EFAULT;
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
		len -= n;
	}
	mmap_read_unlock(mm);
	return ret;
}

static int xi_copy_hva(struct mm_struct *mm, enum xi_path path,
		       unsigned long hva, void *buf, size_t len, bool write)
{
	unsigned long left;

	if (path == XI_PATH_REMOTE)
		return xi_copy_remote(mm, hva, buf, len, write);
	if (write)
		left = copy_to_user((void __user *)hva, buf, len);
	else
		left = copy_from_user(buf, (void __user *)hva, len);
	return left ? -EFAULT : 0;
}

/* The locked half of the fault path's retry check, under mmu_lock. */
static bool xi_invalidate_retry(struct kvm *kvm, unsigned long seq, gfn_t gfn)
{
	bool retry;

#ifdef KVM_HAVE_MMU_RWLOCK
	read_lock(&kvm->mmu_lock);
	retry = mmu_invalidate_retry_gfn(kvm, seq, gfn);
	read_unlock(&kvm->mmu_lock);
#else
	spin_lock(&kvm->mmu_lock);
	retry = mmu_invalidate_retry_gfn(kvm, seq, gfn);
	spin_unlock(&kvm->mmu_lock);
#endif
	return retry;
}

/*
 * Copy within one page of a memslot that can hold private memory.  The
 * attribute check and the copy are bracketed like a vCPU fault: a private
 * <-> shared conversion adds its gfns to the invalidation range and bumps
 * mmu_invalidate_seq, so one that races the copy makes us redo the page,
 * and a page that became private is then refused.
 */
static int xi_copy_private_capable(struct kvm *kvm, struct mm_struct *mm,
				   enum xi_path path, gfn_t gfn,
				   unsigned long hva, void *buf, size_t len,
				   bool write)
{
	int tries, ret;

	for (tries = 0; tries < XI_CONVERSION_RETRIES; tries++) {
		unsigned long seq = kvm->mmu_invalidate_seq;

		/* Pairs with the smp_wmb() in kvm_mmu_invalidate_end(). */
		smp_rmb();
		if (mmu_invalidate_retry_gfn_unsafe(kvm, seq, gfn)) {
			cond_resched();
			continue;
		}
		if (kvm_mem_is_private(kvm, gfn))
			return -EPERM;
		ret = xi_copy_hva(mm, path, hva, buf, len, write);
		if (ret)
			return ret;
		if (!xi_invalidate_retry(kvm, seq, gfn))
			return 0;
		cond_resched();
	}
	return -EAGAIN;
}

static int xi_copy_slots(struct kvm *kvm, struct mm_struct *mm,
			 enum xi_path path, u64 gpa, void *buf, size_t len,
			 bool write)
{
	bool dirty_ring = READ_ONCE(kvm->dirty_ring_size);

	while (len) {
		struct kvm_memory_slot *slot;
		unsigned long hva;
		size_t run;
		int ret;

		slot = __gfn_to_memslot(kvm_memslots(kvm), gpa >> PAGE_SHIFT);
		ret = xi_slot_check(slot, write, dirty_ring);
		if (ret)
			return ret;

		run = xi_slot_run(slot->base_gfn, slot->npages, gpa, len);
		hva = __gfn_to_hva_memslot(slot, gpa >> PAGE_SHIFT) +
		      offset_in_page(gpa);
		if (kvm_slot_can_be_private(slot)) {
			run = min_t(size_t, run, PAGE_SIZE - offset_in_page(gpa));
			ret = xi_copy_private_capable(kvm, mm, path,
						      gpa >> PAGE_SHIFT, hva,
						      buf, run, write);
		} else {
			ret = xi_copy_hva(mm, path, hva, buf, run, write);
		}
		if (ret)
			return ret;
		if (write)
			xi_mark_dirty(slot, gpa, run);
		gpa += run;
		buf += run;
		len -= run;
	}
	return 0;
}

static int xi_copy(struct kvm_xinterface *intf, u64 gpa, void *buf,
		   size_t len, bool write)
{
	struct kvm *kvm = intf->kvm;
	struct mm_struct *mm = kvm->mm;
	enum xi_path path;
	int ret, idx;

	might_sleep();
	ret = xi_check_range(gpa, len);
	if (ret || !len)
		return ret;

	if (current->mm == mm)
		path = XI_PATH_OWN;
	else if (!current->mm && (current->flags & PF_KTHREAD))
		path = XI_PATH_KTHREAD;
	else
		path = XI_PATH_REMOTE;

	if (path != XI_PATH_OWN && !mmget_not_zero(mm))
		return -ESRCH;
	if (path == XI_PATH_KTHREAD)
		kthread_use_mm(mm);

	idx = srcu_read_lock(&kvm->srcu);
	ret = xi_copy_slots(kvm, mm, path, gpa, buf, len, write);
	srcu_read_unlock(&kvm->srcu, idx);

	if (path == XI_PATH_KTHREAD)
		kthread_unuse_mm(mm);
	if (path != XI_PATH_OWN)
		mmput(mm);
	return ret;
}

static int xi_copy_to(struct kvm_xinterface *intf, u64 gpa, const void *src,
		      size_t len)
{
	return xi_copy(intf, gpa, (void *)src, len, true);
}

static int xi_copy_from(struct kvm_xinterface *intf, void *dst, u64 gpa,
			size_t len)
{
	return xi_copy(intf, gpa, dst, len, false);
}

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
 * The binding holds a reference on @file, which keeps the VM and the
 * vendor module alive, and a reference on the VM.  Drop it with
 * kvm_xinterface_put().  May sleep.
 *
 * Return: the binding, ERR_PTR(-EINVAL) if @file is not a KVM VM, or
 * ERR_PTR(-ENOMEM).
 */
struct kvm_xinterface *kvm_xinterface_bind_file(struct file *file)
{
	struct xi_binding *b;
	struct kvm *kvm;

	if (!file_is_kvm(file))
		return ERR_PTR(-EINVAL);
	kvm = file->private_data;

	b = kzalloc(sizeof(*b), GFP_KERNEL_ACCOUNT);
	if (!b)
		return ERR_PTR(-ENOMEM);
	b->file = get_file(file);
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
 * ERR_PTR(-EINVAL) if it is not a KVM VM, or ERR_PTR(-ENOMEM).
 */
struct kvm_xinterface *kvm_xinterface_bind(int fd)
{
	CLASS(fd, f)(fd);

	if (fd_empty(f))
		return ERR_PTR(-EBADF);
	return kvm_xinterface_bind_file(fd_file(f));
}
EXPORT_SYMBOL_NS_GPL(kvm_xinterface_bind, KVM_XINTERFACE);

#ifdef CONFIG_KVM_XINTERFACE_KUNIT_TEST
#include "xinterface_test.c"
#endif
