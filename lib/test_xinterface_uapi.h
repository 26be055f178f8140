/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Interface of the test_xinterface module, shared with
 * tools/testing/selftests/kvm/xinterface_test.c.
 */
#ifndef _LIB_TEST_XINTERFACE_UAPI_H
#define _LIB_TEST_XINTERFACE_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Where the module runs the copy. */
enum {
	XI_TEST_CTX_CALLER,	/* in the ioctl caller's context */
	XI_TEST_CTX_KTHREAD,	/* in a kthread (no mm of its own) */
	XI_TEST_CTX_WORKQUEUE,	/* in a workqueue item */
	XI_TEST_CTX_NR,
};

/**
 * struct xi_test_copy - one copy between a user buffer and guest memory
 * @gpa: guest physical address.
 * @buf: user address of the buffer (source for writes, destination for
 *	reads).
 * @len: bytes.
 * @write: 1 for a write to the guest (copy_to), 0 for a read (copy_from).
 * @ctx: one of XI_TEST_CTX_*.
 */
struct xi_test_copy {
	__u64 gpa;
	__u64 buf;
	__u64 len;
	__u32 write;
	__u32 ctx;
};

/* Bind the open file to the VM whose fd is the argument (an int). */
#define XI_TEST_BIND	_IOW('x', 0, __s32)
/* Drop the binding; the last reference may destroy the VM. */
#define XI_TEST_UNBIND	_IO('x', 1)
/* Copy; the ioctl fails with the errno the copy returned. */
#define XI_TEST_COPY	_IOW('x', 2, struct xi_test_copy)

#endif /* _LIB_TEST_XINTERFACE_UAPI_H */
