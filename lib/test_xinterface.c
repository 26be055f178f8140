// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test module for kvm_xinterface: /dev/test_xinterface binds an open file
 * to a VM and reaches guest memory (copies, a vmap, sg tables) from the
 * context the test asks for, and runs a stress of kthreads using them all.
 * Driven by tools/testing/selftests/kvm/xinterface_test.c.
 */

#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/dma-direction.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/kvm_xinterface.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "test_xinterface_uapi.h"

MODULE_IMPORT_NS(KVM_XINTERFACE);

#define XIT_MAX_RANGES		64
#define XIT_VMAP_TRIES		100
/* Bytes copied in one access section: sections run with preemption off. */
#define XIT_VMAP_CHUNK		SZ_64K

/* What the last access through a file's mapping used. */
struct xit_alias {
	unsigned long kaddr;		/* page of map->addr */
	unsigned long pfn;		/* the page it mapped */
};

struct xit_file {
	struct mutex lock;		/* protects everything below */
	struct kvm_xinterface *intf;
	struct kvm_xvmap *map;
	u64 map_gpa;
	u32 map_flags;
	struct xit_alias alias;
	struct kvm_xcache cache;
	/* XI_TEST_FAIL_NTH: armed for the next operation, and its result. */
	u32 fail_nth;
	s32 fail_left;
	/* The XI_TEST_F_MUTABLE call in flight, for XI_TEST_MUTATE. */
	spinlock_t mut_lock;
	struct kvm_xrange *mut_ranges;
	unsigned int mut_nr;
};

/* XI_TEST_F_SHARED_CACHE: one cache for every file, so for every VM. */
static DEFINE_MUTEX(xit_shared_lock);
static struct kvm_xcache xit_shared_cache;

/* One operation, run in the context the test asked for. */
struct xit_req {
	int (*fn)(struct xit_req *r);
	struct kvm_xinterface *intf;
	void *buf;
	u64 gpa;
	size_t len;
	bool write;
	/* copyv and sg */
	struct kvm_xrange *ranges;
	unsigned int nr;
	unsigned int flags;
	struct kvm_xcache *cache;
	enum dma_data_direction dir;
	unsigned int nents;
	/* vmap */
	struct kvm_xvmap *map;
	struct xit_alias *alias;
	u32 refreshes;
	int ret;
	/* XI_TEST_FAIL_NTH: arm the executing task, what was left of it. */
	u32 fail_nth;
	s32 fail_left;
	struct work_struct work;	/* XI_TEST_CTX_WORKQUEUE */
	struct completion done;		/* XI_TEST_CTX_KTHREAD */
};

static int xit_copy_fn(struct xit_req *r)
{
	if (r->write)
		return kvm_xinterface_copy_to(r->intf, r->gpa, r->buf, r->len);
	return kvm_xinterface_copy_from(r->intf, r->buf, r->gpa, r->len);
}

static int xit_copyv_fn(struct xit_req *r)
{
	int ret;

	if (r->flags & XI_TEST_F_USE_MM) {
		ret = kvm_xinterface_use_mm(r->intf);
		if (ret)
			return ret;
	}
	ret = kvm_xinterface_copyv(r->intf, r->ranges, r->nr, r->buf, r->len,
				   r->write, r->cache);
	if (r->flags & XI_TEST_F_USE_MM)
		kvm_xinterface_unuse_mm(r->intf);
	return ret;
}

/* The kernel PTE of @kaddr: present, its pfn and whether it is writable. */
static bool xit_kernel_pte(unsigned long kaddr, unsigned long *pfn,
			   bool *writable)
{
#ifdef CONFIG_X86
	unsigned int level;
	pte_t *pte = lookup_address(kaddr, &level);

	if (!pte || !pte_present(*pte))
		return false;
	*pfn = pte_pfn(*pte);
	*writable = pte_write(*pte);
	return true;
#else
	return false;
#endif
}

/* Enter a section with the documented begin/refresh protocol. */
static int xit_vmap_begin(struct kvm_xvmap *map, u32 *refreshes)
{
	int tries, idx, ret;

	for (tries = 0; tries < XIT_VMAP_TRIES; tries++) {
		idx = kvm_xvmap_begin(map);
		if (idx != -EAGAIN)
			return idx;
		(*refreshes)++;
		ret = kvm_xvmap_refresh(map);
		if (ret)
			return ret;
	}
	return -EAGAIN;
}

/*
 * Access through a mapping, one section per XIT_VMAP_CHUNK bytes so that
 * preemption is never off for long.  @alias, if not NULL, records the
 * kernel page the first section used.
 */
static int xit_vmap_rw(struct kvm_xvmap *map, size_t off, void *buf,
		       size_t len, bool write, u32 *refreshes,
		       struct xit_alias *alias)
{
	size_t done = 0;
	int idx;

	if (off > map->len || len > map->len - off)
		return -EINVAL;
	do {
		size_t n = min_t(size_t, len - done, XIT_VMAP_CHUNK);
		bool w;

		idx = xit_vmap_begin(map, refreshes);
		if (idx < 0)
			return idx;
		if (alias && !done) {
			alias->kaddr = (unsigned long)map->addr & PAGE_MASK;
			if (!xit_kernel_pte(alias->kaddr, &alias->pfn, &w))
				alias->pfn = 0;
		}
		if (write) {
			memcpy(map->addr + off + done, buf + done, n);
			kvm_xvmap_mark_dirty(map, off + done, n);
		} else {
			memcpy(buf + done, map->addr + off + done, n);
		}
		kvm_xvmap_end(map, idx);
		done += n;
		cond_resched();
	} while (done < len);
	return 0;
}

static int xit_vmap_fn(struct xit_req *r)
{
	return xit_vmap_rw(r->map, r->gpa, r->buf, r->len, r->write,
			   &r->refreshes, r->alias);
}

/* Build a table, move the data with the sg_copy helpers, free it. */
static int xit_sg_copy(struct kvm_xinterface *intf, struct kvm_xrange *ranges,
		       unsigned int nr, enum dma_data_direction dir,
		       void *buf, size_t len, unsigned int *nents)
{
	struct scatterlist *sg;
	struct kvm_xsg *xsg;
	size_t done, total = 0;
	unsigned int i;

	xsg = kvm_xinterface_sg(intf, ranges, nr, dir);
	if (IS_ERR(xsg))
		return PTR_ERR(xsg);
	for_each_sgtable_sg(&xsg->sgt, sg, i)
		total += sg->length;
	if (dir == DMA_TO_DEVICE)
		done = sg_copy_to_buffer(xsg->sgt.sgl, xsg->sgt.orig_nents,
					 buf, len);
	else
		done = sg_copy_from_buffer(xsg->sgt.sgl, xsg->sgt.orig_nents,
					   buf, len);
	if (nents)
		*nents = xsg->sgt.orig_nents;
	kvm_xsg_free(xsg);
	/* The table must describe exactly the ranges. */
	return total == len && done == len ? 0 : -EIO;
}

static int xit_sg_fn(struct xit_req *r)
{
	return xit_sg_copy(r->intf, r->ranges, r->nr, r->dir, r->buf, r->len,
			   &r->nents);
}

/*
 * Fault injection (XI_TEST_FAIL_NTH): the task that runs the operation,
 * caller, kthread or workqueue worker alike, makes the n-th injectable
 * call inside it fail, as /proc/<tid>/fail-nth would; fail_left is what
 * remained of the countdown (0: the n-th point was reached and failed).
 */
static void xit_arm(u32 nth)
{
#ifdef CONFIG_FAULT_INJECTION
	if (nth)
		WRITE_ONCE(current->fail_nth, nth);
#endif
}

static s32 xit_disarm(u32 nth)
{
	s32 left = -1;

#ifdef CONFIG_FAULT_INJECTION
	if (nth) {
		left = READ_ONCE(current->fail_nth);
		WRITE_ONCE(current->fail_nth, 0);
	}
#endif
	return left;
}

/* Take what XI_TEST_FAIL_NTH armed for the next operation; xf->lock. */
static u32 xit_take_arm(struct xit_file *xf)
{
	u32 nth = xf->fail_nth;

	lockdep_assert_held(&xf->lock);
	xf->fail_nth = 0;
	xf->fail_left = -1;
	return nth;
}

static void xit_do(struct xit_req *r)
{
	xit_arm(r->fail_nth);
	r->ret = r->fn(r);
	r->fail_left = xit_disarm(r->fail_nth);
}

static int xit_thread(void *data)
{
	struct xit_req *r = data;

	/* A kthread has no mm: the copy must not use a borrowed one. */
	if (WARN_ON_ONCE(current->mm))
		r->ret = -EINVAL;
	else
		xit_do(r);
	kthread_complete_and_exit(&r->done, 0);
}

static void xit_work(struct work_struct *work)
{
	xit_do(container_of(work, struct xit_req, work));
}

static int xit_run(struct xit_req *r, u32 ctx)
{
	struct task_struct *t;

	switch (ctx) {
	case XI_TEST_CTX_CALLER:
		xit_do(r);
		return 0;
	case XI_TEST_CTX_KTHREAD:
		init_completion(&r->done);
		t = kthread_run(xit_thread, r, "xi-test");
		if (IS_ERR(t))
			return PTR_ERR(t);
		wait_for_completion(&r->done);
		return 0;
	case XI_TEST_CTX_WORKQUEUE:
		INIT_WORK_ONSTACK(&r->work, xit_work);
		queue_work(system_unbound_wq, &r->work);
		flush_work(&r->work);
		destroy_work_on_stack(&r->work);
		return 0;
	}
	return -EINVAL;
}

static long xit_copy(struct xit_file *xf, void __user *argp)
{
	struct xi_test_copy c;
	struct xit_req r = {};
	int ret;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.ctx >= XI_TEST_CTX_NR || c.len > SZ_16M)
		return -EINVAL;

	mutex_lock(&xf->lock);
	if (xf->intf)
		r.intf = kvm_xinterface_get(xf->intf);
	r.fail_nth = xit_take_arm(xf);
	mutex_unlock(&xf->lock);
	if (!r.intf)
		return -ENOTCONN;

	ret = -ENOMEM;
	r.buf = kvzalloc(c.len ? c.len : 1, GFP_KERNEL);
	if (!r.buf)
		goto out;
	r.fn = xit_copy_fn;
	r.gpa = c.gpa;
	r.len = c.len;
	r.write = c.write;
	ret = -EFAULT;
	if (r.write && copy_from_user(r.buf, u64_to_user_ptr(c.buf), c.len))
		goto out;
	ret = xit_run(&r, c.ctx);
	if (!ret)
		ret = r.ret;
	if (r.fail_nth) {
		mutex_lock(&xf->lock);
		xf->fail_left = r.fail_left;
		mutex_unlock(&xf->lock);
	}
	if (!ret && !r.write &&
	    copy_to_user(u64_to_user_ptr(c.buf), r.buf, c.len))
		ret = -EFAULT;
out:
	kvfree(r.buf);
	kvm_xinterface_put(r.intf);
	return ret;
}

/* Run @r in @ctx on a kernel copy of the user buffer; under xf->lock. */
static int xit_run_locked(struct xit_file *xf, struct xit_req *r, u32 ctx,
			  u64 ubuf, u64 len, bool to_guest)
{
	int ret;

	lockdep_assert_held(&xf->lock);
	if (ctx >= XI_TEST_CTX_NR || len > SZ_16M)
		return -EINVAL;
	if (!xf->intf)
		return -ENOTCONN;
	r->intf = xf->intf;
	r->len = len;
	r->buf = kvzalloc(len ? len : 1, GFP_KERNEL);
	if (!r->buf)
		return -ENOMEM;
	ret = -EFAULT;
	if (to_guest && copy_from_user(r->buf, u64_to_user_ptr(ubuf), len))
		goto out;
	r->fail_nth = xit_take_arm(xf);
	ret = xit_run(r, ctx);
	if (!ret)
		ret = r->ret;
	if (r->fail_nth)
		xf->fail_left = r->fail_left;
	if (!ret && !to_guest &&
	    copy_to_user(u64_to_user_ptr(ubuf), r->buf, len))
		ret = -EFAULT;
out:
	kvfree(r->buf);
	return ret;
}

static_assert(sizeof(struct xi_test_range) == sizeof(struct kvm_xrange));

static struct kvm_xrange *xit_get_ranges(u64 uptr, u32 nr)
{
	if (!nr || nr > XIT_MAX_RANGES)
		return ERR_PTR(-EINVAL);
	return memdup_array_user(u64_to_user_ptr(uptr), nr,
				 sizeof(struct kvm_xrange));
}

/* Make @ranges the target of XI_TEST_MUTATE, or none with NULL. */
static void xit_publish(struct xit_file *xf, struct kvm_xrange *ranges,
			unsigned int nr)
{
	spin_lock(&xf->mut_lock);
	xf->mut_ranges = ranges;
	xf->mut_nr = nr;
	spin_unlock(&xf->mut_lock);
}

/* Not under xf->lock: the call it changes holds that. */
static long xit_mutate(struct xit_file *xf, void __user *argp)
{
	struct xi_test_mutate c;
	int ret = -ENOENT;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	spin_lock(&xf->mut_lock);
	if (xf->mut_ranges && c.index < xf->mut_nr) {
		WRITE_ONCE(xf->mut_ranges[c.index].gpa, c.gpa);
		WRITE_ONCE(xf->mut_ranges[c.index].len, c.len);
		ret = 0;
	}
	spin_unlock(&xf->mut_lock);
	return ret;
}

static long xit_copyv(struct xit_file *xf, void __user *argp)
{
	struct xi_test_copyv c;
	struct xit_req r = {};
	int ret;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if ((c.flags & ~(XI_TEST_F_CACHE | XI_TEST_F_USE_MM |
			 XI_TEST_F_SHARED_CACHE | XI_TEST_F_MUTABLE)) ||
	    ((c.flags & XI_TEST_F_CACHE) && (c.flags & XI_TEST_F_SHARED_CACHE)))
		return -EINVAL;
	r.ranges = xit_get_ranges(c.ranges, c.nr);
	if (IS_ERR(r.ranges))
		return PTR_ERR(r.ranges);
	r.fn = xit_copyv_fn;
	r.nr = c.nr;
	r.write = c.write;
	r.flags = c.flags;
	if (c.flags & XI_TEST_F_SHARED_CACHE) {
		mutex_lock(&xit_shared_lock);
		r.cache = &xit_shared_cache;
	}
	mutex_lock(&xf->lock);
	if (c.flags & XI_TEST_F_CACHE)
		r.cache = &xf->cache;
	if (c.flags & XI_TEST_F_MUTABLE)
		xit_publish(xf, r.ranges, r.nr);
	ret = xit_run_locked(xf, &r, c.ctx, c.buf, c.len, c.write);
	if (c.flags & XI_TEST_F_MUTABLE)
		xit_publish(xf, NULL, 0);
	mutex_unlock(&xf->lock);
	if (c.flags & XI_TEST_F_SHARED_CACHE)
		mutex_unlock(&xit_shared_lock);
	kfree(r.ranges);
	return ret;
}

static long xit_vmap(struct xit_file *xf, void __user *argp)
{
	struct xi_test_vmap c;
	struct kvm_xvmap *map;
	int ret = 0;
	u32 nth;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.len > XI_TEST_VMAP_MAX)
		return -EINVAL;
	mutex_lock(&xf->lock);
	if (!xf->intf) {
		ret = -ENOTCONN;
		goto out;
	}
	nth = xit_take_arm(xf);
	xit_arm(nth);
	map = kvm_xinterface_vmap(xf->intf, c.gpa, c.len, c.flags);
	xf->fail_left = xit_disarm(nth);
	if (IS_ERR(map)) {
		ret = PTR_ERR(map);
		goto out;
	}
	if (xf->map)
		kvm_xvmap_put(xf->map);
	xf->map = map;
	xf->map_gpa = c.gpa;
	xf->map_flags = c.flags;
	xf->alias = (struct xit_alias){};
out:
	mutex_unlock(&xf->lock);
	return ret;
}

static long xit_vmap_access(struct xit_file *xf, void __user *argp)
{
	struct xi_test_vmap_rw c;
	struct xit_req r = {};
	int ret;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	r.fn = xit_vmap_fn;
	r.gpa = c.offset;
	r.write = c.write;
	mutex_lock(&xf->lock);
	r.map = xf->map;
	r.alias = &xf->alias;
	if (!r.map)
		ret = -ENOENT;
	else if (c.write && !(xf->map_flags & KVM_XVMAP_WRITE))
		ret = -EPERM;	/* the mapping is read-only: never write it */
	else
		ret = xit_run_locked(xf, &r, c.ctx, c.buf, c.len, c.write);
	mutex_unlock(&xf->lock);
	c.refreshes = r.refreshes;
	if (copy_to_user(argp, &c, sizeof(c)))
		return -EFAULT;
	return ret;
}

static long xit_vmap_probe(struct xit_file *xf, void __user *argp)
{
	struct xi_test_vmap_probe c = {};
	unsigned long pfn;
	bool writable;

	if (!IS_ENABLED(CONFIG_X86))
		return -EOPNOTSUPP;
	mutex_lock(&xf->lock);
	if (!xf->alias.kaddr || !xf->alias.pfn) {
		mutex_unlock(&xf->lock);
		return -ENOENT;
	}
	if (xit_kernel_pte(xf->alias.kaddr, &pfn, &writable) &&
	    pfn == xf->alias.pfn) {
		c.mapped = 1;
		c.writable = writable;
	}
	mutex_unlock(&xf->lock);
	return copy_to_user(argp, &c, sizeof(c)) ? -EFAULT : 0;
}

/* Begin sections inside a section of the file's mapping. */
static long xit_vmap_nest(struct xit_file *xf, void __user *argp)
{
	struct xi_test_vmap_nest c = {};
	struct kvm_xvmap *other;
	u32 refreshes = 0;
	int idx, ret = 0;

	mutex_lock(&xf->lock);
	if (!xf->map) {
		ret = -ENOENT;
		goto out;
	}
	other = kvm_xinterface_vmap(xf->intf, xf->map_gpa, xf->map->len, 0);
	if (IS_ERR(other)) {
		ret = PTR_ERR(other);
		goto out;
	}
	idx = xit_vmap_begin(xf->map, &refreshes);
	if (idx >= 0) {
		c.same = kvm_xvmap_begin(xf->map);
		if (c.same >= 0)
			kvm_xvmap_end(xf->map, c.same);
		c.other = kvm_xvmap_begin(other);
		if (c.other >= 0)
			kvm_xvmap_end(other, c.other);
		kvm_xvmap_end(xf->map, idx);
	} else {
		ret = idx;
	}
	kvm_xvmap_put(other);
out:
	mutex_unlock(&xf->lock);
	if (!ret && copy_to_user(argp, &c, sizeof(c)))
		ret = -EFAULT;
	return ret;
}

static long xit_sg(struct xit_file *xf, void __user *argp)
{
	struct xi_test_sg c;
	struct xit_req r = {};
	int ret;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.dir > DMA_NONE || (c.flags & ~XI_TEST_F_MUTABLE))
		return -EINVAL;
	r.ranges = xit_get_ranges(c.ranges, c.nr);
	if (IS_ERR(r.ranges))
		return PTR_ERR(r.ranges);
	r.fn = xit_sg_fn;
	r.nr = c.nr;
	r.dir = c.dir;
	mutex_lock(&xf->lock);
	if (c.flags & XI_TEST_F_MUTABLE)
		xit_publish(xf, r.ranges, r.nr);
	ret = xit_run_locked(xf, &r, c.ctx, c.buf, c.len,
			     c.dir != DMA_TO_DEVICE);
	if (c.flags & XI_TEST_F_MUTABLE)
		xit_publish(xf, NULL, 0);
	mutex_unlock(&xf->lock);
	kfree(r.ranges);
	c.nents = r.nents;
	if (copy_to_user(argp, &c, sizeof(c)))
		return -EFAULT;
	return ret;
}

/* ---- stress: kthreads using copies, a vmap and sg tables at once ---- */

struct xit_stress_thr {
	struct kvm_xinterface *intf;
	unsigned long deadline;
	struct completion done;
	unsigned int id;
	bool churn;		/* read-only, on the range userspace churns */
	u64 gpa;
	size_t len;
	u64 churn_seed;
	u64 seed, ops, errors, bad, ok, gone;
	struct kvm_xcache cache;
	struct kvm_xvmap *map;
	u8 *wbuf, *rbuf;
};

static void xit_fill(u8 *buf, u64 gpa, size_t len, u64 seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = xi_test_pat(gpa + i, seed);
}

static bool xit_matches(const u8 *buf, u64 gpa, size_t len, u64 seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != xi_test_pat(gpa + i, seed))
			return false;
	return true;
}

/* Method 0: copy with the cache; 1: the vmap; 2: an sg table of 2 parts. */
static int xit_stress_op(struct xit_stress_thr *t, unsigned int method,
			 bool write, void *buf)
{
	size_t half = t->len / 2 - 13;
	struct kvm_xrange r[2] = {
		{ .gpa = t->gpa, .len = half },
		{ .gpa = t->gpa + half, .len = t->len - half },
	};
	u32 refreshes = 0;

	switch (method) {
	case 0:
		if (write)
			return kvm_xinterface_copy_to_cached(t->intf, &t->cache,
							     t->gpa, buf,
							     t->len);
		return kvm_xinterface_copy_from_cached(t->intf, &t->cache, buf,
						       t->gpa, t->len);
	case 1:
		if (!t->map) {
			struct kvm_xvmap *map;

			map = kvm_xinterface_vmap(t->intf, t->gpa, t->len,
						  t->churn ? 0 :
						  KVM_XVMAP_WRITE);
			if (IS_ERR(map))
				return PTR_ERR(map);
			t->map = map;
		}
		return xit_vmap_rw(t->map, 0, buf, t->len, write, &refreshes,
				   NULL);
	default:
		return xit_sg_copy(t->intf, r, 2,
				   write ? DMA_FROM_DEVICE : DMA_TO_DEVICE,
				   buf, t->len, NULL);
	}
}

static void xit_stress_churn_step(struct xit_stress_thr *t, u64 seq)
{
	int ret = xit_stress_op(t, seq % 3, false, t->rbuf);

	if (ret == -ENXIO)
		t->gone++;
	else if (ret)
		t->errors++;
	else if (!xit_matches(t->rbuf, t->gpa, t->len, t->churn_seed))
		t->bad++;
	else
		t->ok++;
}

static void xit_stress_step(struct xit_stress_thr *t, u64 seq)
{
	u64 seed = ((u64)(t->id + 1) << 32) | seq;
	int ret;

	/* Write with one method, read back with another. */
	xit_fill(t->wbuf, t->gpa, t->len, seed);
	ret = xit_stress_op(t, seq % 3, true, t->wbuf);
	if (ret) {
		t->errors++;
		t->seed = 0;	/* region contents unknown */
		return;
	}
	t->seed = seed;
	memset(t->rbuf, 0, t->len);
	ret = xit_stress_op(t, (seq + 1) % 3, false, t->rbuf);
	if (ret)
		t->errors++;
	else if (memcmp(t->rbuf, t->wbuf, t->len))
		t->bad++;
	else
		t->ops++;
}

static int xit_stress_thread(void *data)
{
	struct xit_stress_thr *t = data;
	u64 seq = 0;

	while (time_before(jiffies, t->deadline)) {
		seq++;
		if (t->churn)
			xit_stress_churn_step(t, seq);
		else
			xit_stress_step(t, seq);
		cond_resched();
	}
	kthread_complete_and_exit(&t->done, 0);
}

static long xit_stress(struct xit_file *xf, void __user *argp)
{
	struct xit_stress_thr *thr;
	struct xi_test_stress c;
	unsigned int i, n;
	int ret = 0;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (!c.nr_threads || c.nr_threads > XI_TEST_STRESS_MAX ||
	    c.len < 64 || c.len > SZ_1M || c.stride < c.len ||
	    c.ms > 60000 || (c.churn_gpa && (c.churn_len < 64 ||
					     c.churn_len > SZ_1M)))
		return -EINVAL;
	n = c.nr_threads + !!c.churn_gpa;
	thr = kcalloc(n, sizeof(*thr), GFP_KERNEL);
	if (!thr)
		return -ENOMEM;

	mutex_lock(&xf->lock);
	if (!xf->intf) {
		ret = -ENOTCONN;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct xit_stress_thr *t = &thr[i];

		t->intf = xf->intf;
		t->id = i;
		t->churn = i == c.nr_threads;
		t->gpa = t->churn ? c.churn_gpa : c.gpa + i * c.stride;
		t->len = t->churn ? c.churn_len : c.len;
		t->churn_seed = c.churn_seed;
		t->deadline = jiffies + msecs_to_jiffies(c.ms);
		init_completion(&t->done);
		kvm_xcache_init(&t->cache);
		t->wbuf = kvmalloc(t->len, GFP_KERNEL);
		t->rbuf = kvmalloc(t->len, GFP_KERNEL);
		if (!t->wbuf || !t->rbuf) {
			ret = -ENOMEM;
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		struct task_struct *task;

		task = kthread_run(xit_stress_thread, &thr[i], "xi-stress/%u",
				   i);
		if (IS_ERR(task)) {
			ret = PTR_ERR(task);
			break;
		}
	}
	n = i;
	for (i = 0; i < n; i++)
		wait_for_completion(&thr[i].done);
	for (i = 0; i < n; i++) {
		struct xit_stress_thr *t = &thr[i];

		c.errors += t->errors;
		c.bad += t->bad;
		if (t->churn) {
			c.churn_ok = t->ok;
			c.churn_gone = t->gone;
		} else {
			c.ops += t->ops;
			c.seed[i] = t->seed;
		}
	}
out:
	mutex_unlock(&xf->lock);
	for (i = 0; i < c.nr_threads + !!c.churn_gpa; i++) {
		if (thr[i].map)
			kvm_xvmap_put(thr[i].map);
		kvfree(thr[i].wbuf);
		kvfree(thr[i].rbuf);
	}
	kfree(thr);
	if (!ret && copy_to_user(argp, &c, sizeof(c)))
		ret = -EFAULT;
	return ret;
}

static long xit_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct xi_test_cache_stats stats;
	struct xit_file *xf = file->private_data;
	struct xi_test_fail_nth fn;
	struct kvm_xinterface *intf;
	int fd, ret;
	u32 nth;

	switch (cmd) {
	case XI_TEST_FAIL_NTH:
		if (!IS_ENABLED(CONFIG_FAULT_INJECTION))
			return -EOPNOTSUPP;
		if (copy_from_user(&fn, (void __user *)arg, sizeof(fn)))
			return -EFAULT;
		mutex_lock(&xf->lock);
		xf->fail_nth = fn.nth;
		fn.left = xf->fail_left;
		mutex_unlock(&xf->lock);
		return copy_to_user((void __user *)arg, &fn, sizeof(fn)) ?
			-EFAULT : 0;
	case XI_TEST_BIND:
		if (get_user(fd, (int __user *)arg))
			return -EFAULT;
		mutex_lock(&xf->lock);
		nth = xit_take_arm(xf);
		xit_arm(nth);
		intf = kvm_xinterface_bind(fd);
		xf->fail_left = xit_disarm(nth);
		ret = PTR_ERR_OR_ZERO(intf);
		if (!ret && xf->intf) {
			kvm_xinterface_put(intf);
			ret = -EBUSY;
		} else if (!ret) {
			xf->intf = intf;
		}
		mutex_unlock(&xf->lock);
		return ret;
	case XI_TEST_UNBIND:
		mutex_lock(&xf->lock);
		intf = xf->intf;
		xf->intf = NULL;
		if (xf->map)
			kvm_xvmap_put(xf->map);
		xf->map = NULL;
		kvm_xcache_init(&xf->cache);
		mutex_unlock(&xf->lock);
		if (!intf)
			return -ENOTCONN;
		kvm_xinterface_put(intf);
		return 0;
	case XI_TEST_COPY:
		return xit_copy(xf, (void __user *)arg);
	case XI_TEST_COPYV:
		return xit_copyv(xf, (void __user *)arg);
	case XI_TEST_CACHE_STATS:
		mutex_lock(&xf->lock);
		stats.hits = xf->cache.hits;
		stats.misses = xf->cache.misses;
		xf->cache.hits = 0;
		xf->cache.misses = 0;
		mutex_unlock(&xf->lock);
		return copy_to_user((void __user *)arg, &stats, sizeof(stats)) ?
			-EFAULT : 0;
	case XI_TEST_VMAP:
		return xit_vmap(xf, (void __user *)arg);
	case XI_TEST_VMAP_PUT:
		mutex_lock(&xf->lock);
		if (xf->map)
			kvm_xvmap_put(xf->map);
		ret = xf->map ? 0 : -ENOENT;
		xf->map = NULL;
		mutex_unlock(&xf->lock);
		return ret;
	case XI_TEST_VMAP_RW:
		return xit_vmap_access(xf, (void __user *)arg);
	case XI_TEST_SG:
		return xit_sg(xf, (void __user *)arg);
	case XI_TEST_STRESS:
		return xit_stress(xf, (void __user *)arg);
	case XI_TEST_MUTATE:
		return xit_mutate(xf, (void __user *)arg);
	case XI_TEST_VMAP_PROBE:
		return xit_vmap_probe(xf, (void __user *)arg);
	case XI_TEST_VMAP_NEST:
		return xit_vmap_nest(xf, (void __user *)arg);
	}
	return -ENOTTY;
}

static int xit_open(struct inode *inode, struct file *file)
{
	struct xit_file *xf = kzalloc(sizeof(*xf), GFP_KERNEL);

	if (!xf)
		return -ENOMEM;
	mutex_init(&xf->lock);
	spin_lock_init(&xf->mut_lock);
	xf->fail_left = -1;
	file->private_data = xf;
	return 0;
}

static int xit_release(struct inode *inode, struct file *file)
{
	struct xit_file *xf = file->private_data;

	if (xf->map)
		kvm_xvmap_put(xf->map);
	if (xf->intf)
		kvm_xinterface_put(xf->intf);
	mutex_destroy(&xf->lock);
	kfree(xf);
	return 0;
}

static const struct file_operations xit_fops = {
	.owner = THIS_MODULE,
	.open = xit_open,
	.release = xit_release,
	.unlocked_ioctl = xit_ioctl,
};

static struct miscdevice xit_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "test_xinterface",
	.fops = &xit_fops,
};

module_misc_device(xit_dev);

MODULE_DESCRIPTION("Test module for kvm_xinterface");
MODULE_LICENSE("GPL");
