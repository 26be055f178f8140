/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm_xinterface: access to a KVM guest's memory for kernel modules other
 * than KVM.  See Documentation/virt/kvm/xinterface.rst.
 */
#ifndef __LINUX_KVM_XINTERFACE_H
#define __LINUX_KVM_XINTERFACE_H

#include <linux/container_of.h>
#include <linux/dma-direction.h>
#include <linux/kernel.h>
#include <linux/kref.h>
#include <linux/scatterlist.h>
#include <linux/string.h>
#include <linux/types.h>

struct file;
struct kvm;
struct kvm_memory_slot;
struct kvm_xinterface;

/**
 * struct kvm_xinterface_ops - operations on a binding
 * @copy_to: copy @len bytes from the kernel buffer @src to guest physical
 *	address @gpa.  Returns 0 or a negative errno (see kvm_xinterface_copy_to()).
 * @copy_from: copy @len bytes from guest physical address @gpa to the kernel
 *	buffer @dst.  Returns 0 or a negative errno.
 * @release: called by the last kvm_xinterface_put(); frees the binding.
 *
 * Callers use the kvm_xinterface_*() wrappers below rather than the table.
 * Calling through the table means a consumer module needs only one symbol
 * from kvm.ko, kvm_xinterface_bind().
 */
struct kvm_xinterface_ops {
	int (*copy_to)(struct kvm_xinterface *intf, u64 gpa, const void *src,
		       size_t len);
	int (*copy_from)(struct kvm_xinterface *intf, void *dst, u64 gpa,
			 size_t len);
	void (*release)(struct kvm_xinterface *intf);
};

/**
 * struct kvm_xinterface - a kernel module's binding to one VM
 * @ops: the operations; constant for the life of the binding.
 * @kref: reference count; the binding is freed by the last put.
 * @kvm: the VM.  Opaque to consumers.
 *
 * A binding holds the VM's file, so the VM and the vendor module
 * (kvm_amd or kvm_intel) stay alive, and a reference on the VM.  It does
 * not hold the VM's address space: when the process that created the VM
 * exits, the binding stays valid but every access fails with -ESRCH.
 */
struct kvm_xinterface {
	const struct kvm_xinterface_ops *ops;
	struct kref kref;
	struct kvm *kvm;
};

struct kvm_xinterface *kvm_xinterface_bind(int fd);
struct kvm_xinterface *kvm_xinterface_bind_file(struct file *file);

/**
 * kvm_xinterface_get() - take a reference on a binding
 * @intf: the binding; the caller must already hold a reference.
 *
 * Return: @intf.
 */
static inline struct kvm_xinterface *
kvm_xinterface_get(struct kvm_xinterface *intf)
{
	kref_get(&intf->kref);
	return intf;
}

static inline void __kvm_xinterface_release(struct kref *kref)
{
	struct kvm_xinterface *intf =
		container_of(kref, struct kvm_xinterface, kref);

	intf->ops->release(intf);
}

/**
 * kvm_xinterface_put() - drop a reference on a binding
 * @intf: the binding.
 *
 * The last put releases the VM file and may destroy the VM, which sleeps:
 * call it only where sleeping is allowed.
 */
static inline void kvm_xinterface_put(struct kvm_xinterface *intf)
{
	might_sleep();
	kref_put(&intf->kref, __kvm_xinterface_release);
}

/**
 * kvm_xinterface_copy_to() - write guest physical memory
 * @intf: the binding.
 * @gpa: guest physical address of the first byte to write.
 * @src: kernel buffer to copy from.
 * @len: number of bytes; any alignment, may span pages and adjacent memslots.
 *
 * Works from the VM owner's context, from a kthread or workqueue item (the
 * function switches to the VM's mm itself), and from any other task (slower:
 * the pages are looked up remotely).  In every context a page of a
 * userfaultfd-registered range is waited for, as a vCPU fault would wait.
 * May sleep.  Pages written are marked in the memslot's dirty bitmap when
 * dirty logging is enabled.
 *
 * On error a prefix of the range may have been written; every page that
 * received bytes of it is marked dirty all the same, so a failed write is
 * never lost to migration.
 *
 * Return: 0 on success, or
 *  * -EOVERFLOW: @gpa + @len wraps or is beyond the guest physical space;
 *  * -ENXIO: part of the range is not in a user memslot (a hole, an
 *    x86-internal slot, or a slot being deleted or moved);
 *  * -EROFS: part of the range is in a read-only memslot;
 *  * -EPERM: part of the range is private guest memory;
 *  * -EOPNOTSUPP: part of the range is in a memslot with dirty logging on
 *    and the VM uses the dirty ring without a bitmap: the ring cannot take
 *    writes from outside a vCPU, the write would be lost to migration, so
 *    it is refused.  A VM that enabled KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP
 *    gets such writes in its memslots' dirty bitmaps instead;
 *  * -ESRCH: the VM's owner exited, its address space is gone;
 *  * -EFAULT: the memslot's userspace mapping could not be accessed (also
 *    when a page of it could not be allocated, on the VM owner's and the
 *    kthread paths, as for copy_to_user());
 *  * -ENOMEM: a page of the memslot's mapping could not be allocated
 *    (other-task path);
 *  * -EINTR: a fatal signal arrived while the copy waited for the VM's mm
 *    lock or a userfaultfd page on the other-task path; or a fatal signal
 *    arrived, or the calling kthread is being stopped, while a
 *    private/shared conversion raced the copy of a memslot that can hold
 *    private memory (such a copy otherwise retries until the conversion
 *    is over).
 */
static inline int kvm_xinterface_copy_to(struct kvm_xinterface *intf,
					 u64 gpa, const void *src, size_t len)
{
	return intf->ops->copy_to(intf, gpa, src, len);
}

/**
 * kvm_xinterface_copy_from() - read guest physical memory
 * @intf: the binding.
 * @dst: kernel buffer to copy to.
 * @gpa: guest physical address of the first byte to read.
 * @len: number of bytes; any alignment, may span pages and adjacent memslots.
 *
 * Contexts as for kvm_xinterface_copy_to().  May sleep.  Reading a
 * read-only memslot is allowed.  On error the contents of @dst are
 * undefined: bytes not copied keep whatever they held (they are not
 * zeroed as copy_from_user() zeroes them).
 *
 * Return: 0 on success, or -EOVERFLOW, -ENXIO, -EPERM, -ESRCH, -EFAULT,
 * -ENOMEM or -EINTR with the meanings given for kvm_xinterface_copy_to().
 */
static inline int kvm_xinterface_copy_from(struct kvm_xinterface *intf,
					   void *dst, u64 gpa, size_t len)
{
	return intf->ops->copy_from(intf, dst, gpa, len);
}

/**
 * struct kvm_xrange - one guest physical range
 * @gpa: guest physical address of the first byte.
 * @len: length in bytes.
 */
struct kvm_xrange {
	u64 gpa;
	u64 len;
};

/**
 * struct kvm_xcache - caller-embedded guest translation cache
 * @hits: accesses that used the cached memslot (no memslot search).
 * @misses: accesses that had to search the memslots.
 * @generation: memslot generation the cached entry is valid for; private.
 * @binding: the binding the entry was filled through; private.
 * @slot: the cached memslot; private.
 *
 * Remembers the last memslot an access went through, so repeated access to
 * the same region (a ring, a buffer pool) skips the memslot search.  The
 * entry is used only through the binding it was filled through, and only
 * while the VM's memslot generation is the one it was filled at: any
 * memslot change (add, delete, move, flags) makes the next access search
 * again, and so does an access through another binding (a cache never
 * hands one VM's memslot to another, even after the first VM is gone).
 * Only the memslot (and with it the gfn -> hva translation) is cached;
 * pages are never cached here, so MMU-notifier invalidation does not
 * concern it.  See kvm_xvmap for cached mappings.
 *
 * Initialize with kvm_xcache_init().  One cache must not be used by two
 * accesses at the same time: embed one per ring or per thread, or
 * serialize.  @hits and @misses may be read and reset by the owner.
 */
struct kvm_xcache {
	u64 hits;
	u64 misses;
	u64 generation;
	u64 binding;
	struct kvm_memory_slot *slot;
};

/**
 * kvm_xcache_init() - initialize (or flush) a translation cache
 * @cache: the cache.
 */
static inline void kvm_xcache_init(struct kvm_xcache *cache)
{
	memset(cache, 0, sizeof(*cache));
}

int kvm_xinterface_copyv(struct kvm_xinterface *intf,
			 const struct kvm_xrange *ranges, unsigned int nr,
			 void *buf, size_t len, bool write,
			 struct kvm_xcache *cache);

int kvm_xinterface_copy_to_cached(struct kvm_xinterface *intf,
				  struct kvm_xcache *cache, u64 gpa,
				  const void *src, size_t len);
int kvm_xinterface_copy_from_cached(struct kvm_xinterface *intf,
				    struct kvm_xcache *cache, void *dst,
				    u64 gpa, size_t len);

int kvm_xinterface_use_mm(struct kvm_xinterface *intf);
void kvm_xinterface_unuse_mm(struct kvm_xinterface *intf);

/* kvm_xinterface_vmap() flags */
#define KVM_XVMAP_WRITE		BIT(0)	/* the mapping will be written */

/**
 * struct kvm_xvmap - a kernel mapping of a guest physical range
 * @addr: kernel address of the range's first byte.  Valid only between
 *	kvm_xvmap_begin() and kvm_xvmap_end().
 * @len: length of the range in bytes.
 *
 * Returned by kvm_xinterface_vmap().  The pages are not pinned: the
 * mapping is torn down whenever the guest may stop mapping them, and is
 * rebuilt by kvm_xvmap_refresh().  The access protocol is::
 *
 *	idx = kvm_xvmap_begin(map);
 *	while (idx == -EAGAIN) {
 *		err = kvm_xvmap_refresh(map);	// may sleep
 *		if (err)
 *			return err;		// -ENXIO, -EPERM, -ESRCH, ...
 *		idx = kvm_xvmap_begin(map);
 *	}
 *	if (idx < 0)
 *		return idx;			// -EDEADLK: nested section
 *	memcpy(buf, map->addr + off, n);	// no sleeping, no faults
 *	kvm_xvmap_mark_dirty(map, off, n);	// after writes only
 *	kvm_xvmap_end(map, idx);
 *
 * Sections do not nest, not even on different mappings: end one before
 * beginning the next.  A read-only mapping (no KVM_XVMAP_WRITE) is mapped
 * read-only: writing through it faults.
 */
struct kvm_xvmap {
	void *addr;
	size_t len;
};

struct kvm_xvmap *kvm_xinterface_vmap(struct kvm_xinterface *intf, u64 gpa,
				      size_t len, unsigned int flags);
int kvm_xvmap_begin(struct kvm_xvmap *map);
void kvm_xvmap_end(struct kvm_xvmap *map, int idx);
void kvm_xvmap_mark_dirty(struct kvm_xvmap *map, size_t offset, size_t len);
int kvm_xvmap_refresh(struct kvm_xvmap *map);
struct kvm_xvmap *kvm_xvmap_get(struct kvm_xvmap *map);
void kvm_xvmap_put(struct kvm_xvmap *map);

/**
 * struct kvm_xsg - guest ranges as a scatter-gather table
 * @sgt: the table; one or more entries per range, in range order.  The
 *	pages are pinned (FOLL_PIN) until kvm_xsg_free().
 *
 * Returned by kvm_xinterface_sg().
 */
struct kvm_xsg {
	struct sg_table sgt;
};

struct kvm_xsg *kvm_xinterface_sg(struct kvm_xinterface *intf,
				  const struct kvm_xrange *ranges,
				  unsigned int nr, enum dma_data_direction dir);
void kvm_xsg_free(struct kvm_xsg *sg);

#endif /* __LINUX_KVM_XINTERFACE_H */
