// SPDX-License-Identifier: GPL-2.0-only
/*
 * Benchmark module for kvm_xinterface: /dev/test_xinterface_bench binds an
 * open file to a VM and times one way of touching guest memory per ioctl
 * (one row of the table), next to the baselines a back-end author would
 * otherwise use: memcpy, kvm_read_guest(), copy_from_user() on the VMM's
 * mapping and the vfio_dma_rw() pattern.
 * Driven by tools/testing/selftests/kvm/xinterface_bench.c.
 *
 * A row runs in the caller's context, in one or two kthreads, or in a work
 * item.  Its iteration count is calibrated first (doubling, at least one
 * warm-up batch), then it runs a fixed number of timed batches; the caller
 * gets each batch's duration and computes the median and spread.
 */

#include <linux/completion.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/kvm_host.h>
#include <linux/kvm_xinterface.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "test_xinterface_bench_uapi.h"

MODULE_IMPORT_NS(KVM_XINTERFACE);

struct xb_file {
	struct mutex lock;		/* protects intf */
	struct kvm_xinterface *intf;
};

/* Two threads step through the batches together. */
struct xb_barrier {
	spinlock_t lock;		/* protects count and gen */
	unsigned int parties;
	unsigned int count;
	unsigned int gen;
	wait_queue_head_t wq;
};

struct xb_row;

/* One timing thread of a row, with everything its operations touch. */
struct xb_thread {
	struct xb_row *row;
	unsigned int id;
	void *buf;			/* kernel side of every copy */
	void *src;			/* second kernel buffer (memcpy) */
	u64 gpa[2];			/* operation i uses [i & alt] */
	u64 hva[2];
	struct kvm_xrange ranges[2][XB_FRAGS];
	u64 hva_frag[2][XB_FRAGS];	/* the VMM's address of each range */
	struct kvm_xvmap *map[2];
	struct kvm_xsg *sg[2];
	struct kvm_xcache cache;
	u64 iters;
	u64 ns[XB_MAX_BATCHES];
	int ret;
	struct completion done;
	struct work_struct work;
};

struct xb_row {
	struct xb_run p;
	struct kvm_xinterface *intf;
	struct kvm *kvm;
	unsigned int alt;		/* 1 when gpa2 is used, else 0 */
	struct xb_barrier bar;
	u64 iters[XB_MAX_THREADS];	/* calibrated count of each thread */
	struct xb_thread t[XB_MAX_THREADS];
};

static void xb_barrier_wait(struct xb_barrier *bar)
{
	unsigned int gen;

	spin_lock(&bar->lock);
	gen = bar->gen;
	if (++bar->count == bar->parties) {
		bar->count = 0;
		WRITE_ONCE(bar->gen, gen + 1);
		spin_unlock(&bar->lock);
		wake_up_all(&bar->wq);
		return;
	}
	spin_unlock(&bar->lock);
	wait_event(bar->wq, READ_ONCE(bar->gen) != gen);
}

/* The lock of the XB_M_RWLOCK row: what a vmap section takes. */
static DEFINE_RWLOCK(xb_rwlock);

/* The mm switch of the vfio pattern and of a per-call kthread copy. */
static int xb_mm_switch(struct mm_struct *mm)
{
	if (!mmget_not_zero(mm))
		return -ESRCH;
	kthread_use_mm(mm);
	kthread_unuse_mm(mm);
	mmput(mm);
	return 0;
}

/* The vfio_dma_rw() pattern: the mm switch is paid on every call. */
static int xb_vfio(struct xb_thread *t, unsigned long hva, bool write)
{
	struct mm_struct *mm = t->row->kvm->mm;
	unsigned long left;

	if (!mmget_not_zero(mm))
		return -ESRCH;
	kthread_use_mm(mm);
	if (write)
		left = copy_to_user((void __user *)hva, t->buf, t->row->p.len);
	else
		left = copy_from_user(t->buf, (void __user *)hva,
				      t->row->p.len);
	kthread_unuse_mm(mm);
	mmput(mm);
	return left ? -EFAULT : 0;
}

static int xb_vmap(struct xb_thread *t, struct kvm_xvmap *map, bool write)
{
	size_t len = t->row->p.len;
	int idx, ret;

	idx = kvm_xvmap_begin(map);
	while (idx == -EAGAIN) {
		ret = kvm_xvmap_refresh(map);
		if (ret)
			return ret;
		idx = kvm_xvmap_begin(map);
	}
	if (write) {
		memcpy(map->addr, t->buf, len);
		kvm_xvmap_mark_dirty(map, 0, len);
	} else {
		memcpy(t->buf, map->addr, len);
	}
	kvm_xvmap_end(map, idx);
	return 0;
}

static int xb_sg(struct xb_thread *t, unsigned int k, bool write)
{
	size_t len = t->row->p.len, n;
	struct kvm_xsg *sg;

	sg = kvm_xinterface_sg(t->row->intf, t->ranges[k], XB_FRAGS,
			       write ? DMA_FROM_DEVICE : DMA_TO_DEVICE);
	if (IS_ERR(sg))
		return PTR_ERR(sg);
	if (write)
		n = sg_copy_from_buffer(sg->sgt.sgl, sg->sgt.orig_nents, t->buf,
					len);
	else
		n = sg_copy_to_buffer(sg->sgt.sgl, sg->sgt.orig_nents, t->buf,
				      len);
	kvm_xsg_free(sg);
	return n == len ? 0 : -EIO;
}

static int xb_sg_build(struct xb_thread *t, unsigned int k, bool write)
{
	struct kvm_xsg *sg;

	sg = kvm_xinterface_sg(t->row->intf, t->ranges[k], XB_FRAGS,
			       write ? DMA_FROM_DEVICE : DMA_TO_DEVICE);
	if (IS_ERR(sg))
		return PTR_ERR(sg);
	kvm_xsg_free(sg);
	return 0;
}

/*
 * What kvm_xinterface_sg() does for the pages, done directly: pin the
 * page of each range of the chain (one page each: the chain of a row of
 * up to XB_FRAGS * PAGE_SIZE bytes) and unpin them.  The baseline of the
 * sg rows.
 */
static int xb_pin(struct xb_thread *t, unsigned int k, bool write)
{
	struct mm_struct *mm = t->row->kvm->mm;
	struct page *pages[XB_FRAGS];
	unsigned int gup = write ? FOLL_WRITE : 0;
	int i, locked = 1, ret = 0;
	long got;

	if (!mmget_not_zero(mm))
		return -ESRCH;
	mmap_read_lock(mm);
	for (i = 0; i < XB_FRAGS; i++) {
		got = pin_user_pages_remote(mm, t->hva_frag[k][i], 1, gup,
					    &pages[i], &locked);
		if (got != 1 || !locked) {
			ret = got < 0 ? got : -EFAULT;
			break;
		}
	}
	if (locked)
		mmap_read_unlock(mm);
	if (i)
		unpin_user_pages_dirty_lock(pages, i, write);
	mmput(mm);
	return ret;
}

static int xb_sg_copy(struct xb_thread *t, unsigned int k, bool write)
{
	struct sg_table *sgt = &t->sg[k]->sgt;
	size_t len = t->row->p.len, n;

	if (write)
		n = sg_copy_from_buffer(sgt->sgl, sgt->orig_nents, t->buf, len);
	else
		n = sg_copy_to_buffer(sgt->sgl, sgt->orig_nents, t->buf, len);
	return n == len ? 0 : -EIO;
}

/*
 * The instruction copy_{from,to}_user() uses on CPUs with ERMS or FSRM,
 * on kernel buffers: it tells how much of a user copy's cost is the copy
 * instruction itself (emulated one byte at a time by QEMU's TCG).
 */
static void xb_rep_movsb(void *dst, const void *src, size_t len)
{
#ifdef CONFIG_X86
	asm volatile("rep movsb"
		     : "+D" (dst), "+S" (src), "+c" (len)
		     : : "memory");
#else
	memcpy(dst, src, len);
#endif
}

/* One timed operation; k selects the address (0: gpa, 1: gpa2). */
static int xb_op(struct xb_thread *t, unsigned int k)
{
	struct xb_row *row = t->row;
	struct kvm_xinterface *intf = row->intf;
	bool write = row->p.flags & XB_F_WRITE;
	struct kvm_xcache *cache = row->p.flags & XB_F_CACHE ? &t->cache : NULL;
	size_t len = row->p.len;
	u64 gpa = t->gpa[k];
	unsigned long left;
	int ret, idx;

	switch (row->p.method) {
	case XB_M_NULL:
		return 0;
	case XB_M_MEMCPY:
		if (write)
			memcpy(t->src, t->buf, len);
		else
			memcpy(t->buf, t->src, len);
		return 0;
	case XB_M_REP_MOVSB:
		if (write)
			xb_rep_movsb(t->src, t->buf, len);
		else
			xb_rep_movsb(t->buf, t->src, len);
		return 0;
	case XB_M_KVM_READ:
		idx = srcu_read_lock(&row->kvm->srcu);
		ret = kvm_read_guest(row->kvm, gpa, t->buf, len);
		srcu_read_unlock(&row->kvm->srcu, idx);
		return ret;
	case XB_M_USER:
		if (write)
			left = copy_to_user(u64_to_user_ptr(t->hva[k]), t->buf,
					    len);
		else
			left = copy_from_user(t->buf,
					      u64_to_user_ptr(t->hva[k]), len);
		return left ? -EFAULT : 0;
	case XB_M_VFIO:
		return xb_vfio(t, t->hva[k], write);
	case XB_M_XI:
	case XB_M_XI_SCOPE:
		if (cache && write)
			return kvm_xinterface_copy_to_cached(intf, cache, gpa,
							     t->buf, len);
		if (cache)
			return kvm_xinterface_copy_from_cached(intf, cache,
							       t->buf, gpa, len);
		if (write)
			return kvm_xinterface_copy_to(intf, gpa, t->buf, len);
		return kvm_xinterface_copy_from(intf, t->buf, gpa, len);
	case XB_M_VMAP:
		return xb_vmap(t, t->map[k], write);
	case XB_M_COPYV:
		return kvm_xinterface_copyv(intf, t->ranges[k], XB_FRAGS,
					    t->buf, len, write, cache);
	case XB_M_SG:
		return xb_sg(t, k, write);
	case XB_M_SG_COPY:
		return xb_sg_copy(t, k, write);
	case XB_M_SG_BUILD:
		return xb_sg_build(t, k, write);
	case XB_M_PIN:
		return xb_pin(t, k, write);
	case XB_M_SRCU:
		idx = srcu_read_lock(&row->kvm->srcu);
		srcu_read_unlock(&row->kvm->srcu, idx);
		return 0;
	case XB_M_RWLOCK:
		read_lock(&xb_rwlock);
		read_unlock(&xb_rwlock);
		return 0;
	case XB_M_VMAP_EMPTY:
		idx = kvm_xvmap_begin(t->map[k]);
		if (idx < 0)
			return idx;
		kvm_xvmap_end(t->map[k], idx);
		return 0;
	case XB_M_OBJCHECK:
		check_object_size(t->buf, len, write);
		return 0;
	case XB_M_MMSWITCH:
		return xb_mm_switch(row->kvm->mm);
	}
	return -EINVAL;
}

/* Run @n operations; *@ns is their wall time. */
static int xb_batch(struct xb_thread *t, u64 n, u64 *ns)
{
	struct xb_row *row = t->row;
	bool scope = row->p.method == XB_M_XI_SCOPE;
	u64 i, t0;
	int ret = 0;

	t0 = ktime_get_ns();
	/* The scope is entered and left once per batch, inside the timing. */
	if (scope) {
		ret = kvm_xinterface_use_mm(row->intf);
		if (ret)
			return ret;
	}
	for (i = 0; i < n && !ret; i++) {
		ret = xb_op(t, i & row->alt);
		/* cond_resched() itself costs more than a small copy. */
		if (need_resched())
			cond_resched();
	}
	if (scope)
		kvm_xinterface_unuse_mm(row->intf);
	*ns = ktime_get_ns() - t0;
	return ret;
}

/*
 * Calibrate (or, when the caller gives the count, warm up with an eighth
 * of it), then time the batches.  With two threads both calibrate at the
 * same time, agree on the larger count, and start every batch together; a
 * thread that failed keeps stepping through the barriers so the other one
 * is not left waiting.
 */
static void xb_measure(struct xb_thread *t)
{
	struct xb_row *row = t->row;
	u64 n = 1, ns = 0;
	unsigned int b, i;

	if (row->p.iters) {
		n = row->p.iters;
		t->ret = xb_batch(t, max(n / 8, 1ull), &ns);
	} else {
		for (;;) {
			t->ret = xb_batch(t, n, &ns);
			if (t->ret || ns >= row->p.batch_ns ||
			    n >= XB_MAX_ITERS)
				break;
			n *= ns * 8 < row->p.batch_ns ? 8 : 2;
		}
	}
	row->iters[t->id] = n;
	xb_barrier_wait(&row->bar);
	for (i = 0; i < row->p.threads; i++)
		n = max(n, row->iters[i]);
	t->iters = n;
	for (b = 0; b < row->p.batches; b++) {
		xb_barrier_wait(&row->bar);
		if (!t->ret)
			t->ret = xb_batch(t, n, &t->ns[b]);
	}
}

static int xb_thread_fn(void *data)
{
	struct xb_thread *t = data;

	/* A kthread has no mm: nothing may run on a borrowed one. */
	if (WARN_ON_ONCE(current->mm)) {
		t->ret = -EINVAL;
		kthread_complete_and_exit(&t->done, 0);
	}
	xb_measure(t);
	kthread_complete_and_exit(&t->done, 0);
}

static void xb_work_fn(struct work_struct *work)
{
	xb_measure(container_of(work, struct xb_thread, work));
}

static void xb_thread_free(struct xb_thread *t)
{
	unsigned int k;

	for (k = 0; k < 2; k++) {
		if (!IS_ERR_OR_NULL(t->map[k]))
			kvm_xvmap_put(t->map[k]);
		if (!IS_ERR_OR_NULL(t->sg[k]))
			kvm_xsg_free(t->sg[k]);
	}
	kvfree(t->buf);
	kvfree(t->src);
}

/* The fragmented chain: XB_FRAGS pieces, one page apart. */
static void xb_fill_ranges(struct kvm_xrange *r, u64 gpa, u64 len)
{
	u64 frag = len / XB_FRAGS;
	unsigned int i;

	for (i = 0; i < XB_FRAGS; i++) {
		r[i].gpa = gpa;
		r[i].len = i == XB_FRAGS - 1 ? len - frag * i : frag;
		gpa = PAGE_ALIGN(gpa + r[i].len) + PAGE_SIZE;
	}
}

static int xb_thread_init(struct xb_row *row, unsigned int id)
{
	struct xb_thread *t = &row->t[id];
	const struct xb_run *p = &row->p;
	u64 off = id * p->thread_stride;
	bool write = p->flags & XB_F_WRITE;
	unsigned int i, k;

	t->row = row;
	t->id = id;
	kvm_xcache_init(&t->cache);
	init_completion(&t->done);
	t->buf = kvmalloc(p->len, GFP_KERNEL);
	t->src = kvmalloc(p->len, GFP_KERNEL);
	if (!t->buf || !t->src)
		return -ENOMEM;
	memset(t->buf, 0x5a, p->len);
	memset(t->src, 0xa5, p->len);

	for (k = 0; k <= row->alt; k++) {
		t->gpa[k] = (k ? p->gpa2 : p->gpa) + off;
		t->hva[k] = (k ? p->hva2 : p->hva) + off;
		xb_fill_ranges(t->ranges[k], t->gpa[k], p->len);
		for (i = 0; i < XB_FRAGS; i++)
			t->hva_frag[k][i] = t->hva[k] + t->ranges[k][i].gpa -
					    t->gpa[k];
		if (p->method == XB_M_VMAP || p->method == XB_M_VMAP_EMPTY) {
			t->map[k] = kvm_xinterface_vmap(row->intf, t->gpa[k],
							p->len,
							write ? KVM_XVMAP_WRITE : 0);
			if (IS_ERR(t->map[k]))
				return PTR_ERR(t->map[k]);
		}
		if (p->method == XB_M_SG_COPY) {
			t->sg[k] = kvm_xinterface_sg(row->intf, t->ranges[k],
						     XB_FRAGS,
						     write ? DMA_FROM_DEVICE :
							     DMA_TO_DEVICE);
			if (IS_ERR(t->sg[k]))
				return PTR_ERR(t->sg[k]);
		}
	}
	return 0;
}

static int xb_check(const struct xb_run *p)
{
	if (p->method >= XB_M_NR || p->ctx >= XB_CTX_NR ||
	    (p->flags & ~(XB_F_WRITE | XB_F_CACHE)))
		return -EINVAL;
	if (!p->len || p->len > XB_MAX_LEN || !p->batches ||
	    p->batches > XB_MAX_BATCHES || !p->threads ||
	    p->threads > XB_MAX_THREADS || !p->batch_ns || p->pad ||
	    p->iters > XB_MAX_ITERS)
		return -EINVAL;
	if (p->threads > 1 && p->ctx != XB_CTX_KTHREAD)
		return -EINVAL;
	/* The vfio pattern and the use_mm scope are for kthreads only. */
	if ((p->method == XB_M_VFIO || p->method == XB_M_XI_SCOPE) &&
	    p->ctx == XB_CTX_CALLER)
		return -EINVAL;
	/* The mm switch is a kthread's. */
	if (p->method == XB_M_MMSWITCH && p->ctx != XB_CTX_KTHREAD)
		return -EINVAL;
	/* The pin baseline pins one page per range: a chain of pages. */
	if (p->method == XB_M_PIN &&
	    (p->len > XB_FRAGS * PAGE_SIZE || p->ctx != XB_CTX_KTHREAD))
		return -EINVAL;
	/* KVM's accessor and copy_*_user() on the hva need the VMM's mm. */
	if ((p->method == XB_M_USER || p->method == XB_M_KVM_READ) &&
	    p->ctx != XB_CTX_CALLER)
		return -EINVAL;
	/*
	 * kvm_write_guest() is not offered: outside a running vCPU it WARNs
	 * on x86 (mark_page_dirty_in_slot() with a dirty ring capable arch).
	 */
	if (p->method == XB_M_KVM_READ && (p->flags & XB_F_WRITE))
		return -EOPNOTSUPP;
	return 0;
}

static int xb_start(struct xb_row *row)
{
	struct task_struct *task[XB_MAX_THREADS];
	unsigned int i;

	switch (row->p.ctx) {
	case XB_CTX_CALLER:
		xb_measure(&row->t[0]);
		return 0;
	case XB_CTX_WORKQUEUE:
		INIT_WORK(&row->t[0].work, xb_work_fn);
		queue_work(system_unbound_wq, &row->t[0].work);
		flush_work(&row->t[0].work);
		return 0;
	}
	/* Create every thread before starting any, so none waits alone. */
	for (i = 0; i < row->p.threads; i++) {
		task[i] = kthread_create(xb_thread_fn, &row->t[i], "xi-bench/%u",
					 i);
		if (IS_ERR(task[i])) {
			while (i--)
				kthread_stop(task[i]);
			return PTR_ERR(task[i]);
		}
	}
	for (i = 0; i < row->p.threads; i++)
		wake_up_process(task[i]);
	for (i = 0; i < row->p.threads; i++)
		wait_for_completion(&row->t[i].done);
	return 0;
}

static long xb_run_row(struct xb_file *xf, void __user *argp)
{
	struct xb_row *row;
	unsigned int i, b;
	int ret;

	row = kzalloc(sizeof(*row), GFP_KERNEL);
	if (!row)
		return -ENOMEM;
	ret = -EFAULT;
	if (copy_from_user(&row->p, argp, sizeof(row->p)))
		goto out_free;
	ret = xb_check(&row->p);
	if (ret)
		goto out_free;

	mutex_lock(&xf->lock);
	if (xf->intf)
		row->intf = kvm_xinterface_get(xf->intf);
	mutex_unlock(&xf->lock);
	ret = -ENOTCONN;
	if (!row->intf)
		goto out_free;
	row->kvm = row->intf->kvm;
	row->alt = row->p.gpa2 ? 1 : 0;
	spin_lock_init(&row->bar.lock);
	init_waitqueue_head(&row->bar.wq);
	row->bar.parties = row->p.threads;

	/* KVM's own accessors and user copies need the VMM's mm. */
	ret = -EINVAL;
	if ((row->p.method == XB_M_KVM_READ || row->p.method == XB_M_USER) &&
	    current->mm != row->kvm->mm)
		goto out;

	for (i = 0; i < row->p.threads; i++) {
		ret = xb_thread_init(row, i);
		if (ret)
			goto out;
	}
	ret = xb_start(row);
	if (ret)
		goto out;

	for (i = 0; i < row->p.threads; i++) {
		ret = row->t[i].ret;
		if (ret)
			goto out;
		for (b = 0; b < row->p.batches; b++)
			row->p.ns[i * row->p.batches + b] = row->t[i].ns[b];
	}
	row->p.iters = row->t[0].iters;
	row->p.hits = row->t[0].cache.hits;
	row->p.misses = row->t[0].cache.misses;
	if (copy_to_user(argp, &row->p, sizeof(row->p)))
		ret = -EFAULT;
out:
	for (i = 0; i < row->p.threads; i++)
		xb_thread_free(&row->t[i]);
	kvm_xinterface_put(row->intf);
out_free:
	kfree(row);
	return ret;
}

static long xb_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct xb_file *xf = file->private_data;
	struct kvm_xinterface *intf;
	int fd;

	switch (cmd) {
	case XB_BIND:
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
	case XB_RUN:
		return xb_run_row(xf, (void __user *)arg);
	}
	return -ENOTTY;
}

static int xb_open(struct inode *inode, struct file *file)
{
	struct xb_file *xf = kzalloc(sizeof(*xf), GFP_KERNEL);

	if (!xf)
		return -ENOMEM;
	mutex_init(&xf->lock);
	file->private_data = xf;
	return 0;
}

static int xb_release(struct inode *inode, struct file *file)
{
	struct xb_file *xf = file->private_data;

	if (xf->intf)
		kvm_xinterface_put(xf->intf);
	mutex_destroy(&xf->lock);
	kfree(xf);
	return 0;
}

static const struct file_operations xb_fops = {
	.owner = THIS_MODULE,
	.open = xb_open,
	.release = xb_release,
	.unlocked_ioctl = xb_ioctl,
};

static struct miscdevice xb_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "test_xinterface_bench",
	.fops = &xb_fops,
};

module_misc_device(xb_dev);

MODULE_DESCRIPTION("Benchmark module for kvm_xinterface");
MODULE_LICENSE("GPL");
