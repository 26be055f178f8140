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

struct xit_file {
	struct mutex lock;		/* protects everything below */
	struct kvm_xinterface *intf;
	struct kvm_xvmap *map;
	struct kvm_xcache cache;
};

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
	u32 refreshes;
	int ret;
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

/* Access through a mapping with the documented begin/refresh protocol. */
static int xit_vmap_rw(struct kvm_xvmap *map, size_t off, void *buf,
		       size_t len, bool write, u32 *refreshes)
{
	int tries, idx, ret;

	if (off > map->len || len > map->len - off)
		return -EINVAL;
	for (tries = 0; tries < XIT_VMAP_TRIES; tries++) {
		idx = kvm_xvmap_begin(map);
		if (idx >= 0)
			break;
		(*refreshes)++;
		ret = kvm_xvmap_refresh(map);
		if (ret)
			return ret;
	}
	if (idx < 0)
		return idx;
	if (write) {
		memcpy(map->addr + off, buf, len);
		kvm_xvmap_mark_dirty(map, off, len);
	} else {
		memcpy(buf, map->addr + off, len);
	}
	kvm_xvmap_end(map, idx);
	return 0;
}

static int xit_vmap_fn(struct xit_req *r)
{
	return xit_vmap_rw(r->map, r->gpa, r->buf, r->len, r->write,
			   &r->refreshes);
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

static void xit_do(struct xit_req *r)
{
	r->ret = r->fn(r);
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
	ret = xit_run(r, ctx);
	if (!ret)
		ret = r->ret;
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

static long xit_copyv(struct xit_file *xf, void __user *argp)
{
	struct xi_test_copyv c;
	struct xit_req r = {};
	int ret;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.flags & ~(XI_TEST_F_CACHE | XI_TEST_F_USE_MM))
		return -EINVAL;
	r.ranges = xit_get_ranges(c.ranges, c.nr);
	if (IS_ERR(r.ranges))
		return PTR_ERR(r.ranges);
	r.fn = xit_copyv_fn;
	r.nr = c.nr;
	r.write = c.write;
	r.flags = c.flags;
	mutex_lock(&xf->lock);
	if (c.flags & XI_TEST_F_CACHE)
		r.cache = &xf->cache;
	ret = xit_run_locked(xf, &r, c.ctx, c.buf, c.len, c.write);
	mutex_unlock(&xf->lock);
	kfree(r.ranges);
	return ret;
}

static long xit_vmap(struct xit_file *xf, void __user *argp)
{
	struct xi_test_vmap c;
	struct kvm_xvmap *map;
	int ret = 0;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	mutex_lock(&xf->lock);
	if (!xf->intf) {
		ret = -ENOTCONN;
		goto out;
	}
	map = kvm_xinterface_vmap(xf->intf, c.gpa, c.len, c.flags);
	if (IS_ERR(map)) {
		ret = PTR_ERR(map);
		goto out;
	}
	if (xf->map)
		kvm_xvmap_put(xf->map);
	xf->map = map;
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
	ret = r.map ? xit_run_locked(xf, &r, c.ctx, c.buf, c.len, c.write) :
		      -ENOENT;
	mutex_unlock(&xf->lock);
	c.refreshes = r.refreshes;
	if (copy_to_user(argp, &c, sizeof(c)))
		return -EFAULT;
	return ret;
}

static long xit_sg(struct xit_file *xf, void __user *argp)
{
	struct xi_test_sg c;
	struct xit_req r = {};
	int ret;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.dir > DMA_NONE)
		return -EINVAL;
	r.ranges = xit_get_ranges(c.ranges, c.nr);
	if (IS_ERR(r.ranges))
		return PTR_ERR(r.ranges);
	r.fn = xit_sg_fn;
	r.nr = c.nr;
	r.dir = c.dir;
	mutex_lock(&xf->lock);
	ret = xit_run_locked(xf, &r, c.ctx, c.buf, c.len,
			     c.dir != DMA_TO_DEVICE);
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
		return xit_vmap_rw(t->map, 0, buf, t->len, write, &refreshes);
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
	struct kvm_xinterface *intf;
	int fd, ret;

	switch (cmd) {
	case XI_TEST_BIND:
		if (get_user(fd, (int __user *)arg))
			return -EFAULT;
		intf = kvm_xinterface_bind(fd);
		if (IS_ERR(intf))
			return PTR_ERR(intf);
		mutex_lock(&xf->lock);
		if (xf->intf) {
			mutex_unlock(&xf->lock);
			kvm_xinterface_put(intf);
			return -EBUSY;
		}
		xf->intf = intf;
		mutex_unlock(&xf->lock);
		return 0;
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
	}
	return -ENOTTY;
}

static int xit_open(struct inode *inode, struct file *file)
{
	struct xit_file *xf = kzalloc(sizeof(*xf), GFP_KERNEL);

	if (!xf)
		return -ENOMEM;
	mutex_init(&xf->lock);
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
