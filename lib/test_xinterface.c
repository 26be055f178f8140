// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test module for kvm_xinterface: /dev/test_xinterface binds an open file
 * to a VM and copies guest memory from the context the test asks for.
 * Driven by tools/testing/selftests/kvm/xinterface_test.c.
 */

#include <linux/completion.h>
#include <linux/fs.h>
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

struct xit_file {
	struct mutex lock;		/* protects intf */
	struct kvm_xinterface *intf;
};

/* One copy, run in the context the test asked for. */
struct xit_req {
	struct kvm_xinterface *intf;
	void *buf;
	u64 gpa;
	size_t len;
	bool write;
	int ret;
	struct work_struct work;	/* XI_TEST_CTX_WORKQUEUE */
	struct completion done;		/* XI_TEST_CTX_KTHREAD */
};

static void xit_do(struct xit_req *r)
{
	if (r->write)
		r->ret = kvm_xinterface_copy_to(r->intf, r->gpa, r->buf, r->len);
	else
		r->ret = kvm_xinterface_copy_from(r->intf, r->buf, r->gpa,
						  r->len);
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

static long xit_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct xit_file *xf = file->private_data;
	struct kvm_xinterface *intf;
	int fd;

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
		mutex_unlock(&xf->lock);
		if (!intf)
			return -ENOTCONN;
		kvm_xinterface_put(intf);
		return 0;
	case XI_TEST_COPY:
		return xit_copy(xf, (void __user *)arg);
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
