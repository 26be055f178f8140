/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Interface of the test_xinterface_bench module, shared with
 * tools/testing/selftests/kvm/xinterface_bench.c.
 */
#ifndef _LIB_TEST_XINTERFACE_BENCH_UAPI_H
#define _LIB_TEST_XINTERFACE_BENCH_UAPI_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* What one timed operation is. */
enum {
	XB_M_NULL,	/* nothing: the loop's own overhead */
	XB_M_MEMCPY,	/* memcpy between two kernel buffers */
	XB_M_REP_MOVSB,	/* x86 "rep movsb" between two kernel buffers */
	XB_M_KVM_READ,	/* kvm_read_guest() under kvm->srcu (reads only) */
	XB_M_USER,	/* copy_{from,to}_user() on the VMM's hva */
	XB_M_VFIO,	/* mmget_not_zero + kthread_use_mm + copy_*_user + unuse + mmput */
	XB_M_XI,	/* kvm_xinterface_copy_{from,to}[_cached]() */
	XB_M_XI_SCOPE,	/* as XB_M_XI, inside kvm_xinterface_use_mm() per batch */
	XB_M_VMAP,	/* kvm_xvmap_begin + memcpy (+ mark_dirty) + end */
	XB_M_COPYV,	/* kvm_xinterface_copyv() over a fragmented chain */
	XB_M_SG,	/* kvm_xinterface_sg + sg_copy_{to,from}_buffer + kvm_xsg_free */
	XB_M_SG_COPY,	/* sg_copy_{to,from}_buffer on a table built once */
	XB_M_SG_BUILD,	/* kvm_xinterface_sg + kvm_xsg_free, nothing copied */
	XB_M_PIN,	/* pin_user_pages_remote of the chain's pages + unpin */
	/* Pieces of the paths above, to see where their instructions go: */
	XB_M_SRCU,	/* srcu_read_lock + srcu_read_unlock of kvm->srcu */
	XB_M_RWLOCK,	/* read_lock + read_unlock of an rwlock */
	XB_M_VMAP_EMPTY, /* kvm_xvmap_begin + kvm_xvmap_end, no access */
	XB_M_OBJCHECK,	/* check_object_size() of the kernel buffer */
	XB_M_MMSWITCH,	/* mmget_not_zero + kthread_use_mm + unuse + mmput */
	XB_M_NR,
};

/* Where the timed loop runs. */
enum {
	XB_CTX_CALLER,	/* in the ioctl caller's context */
	XB_CTX_KTHREAD,	/* in kthreads, one per xb_run.threads */
	XB_CTX_WORKQUEUE, /* in a work item on system_unbound_wq */
	XB_CTX_NR,
};

#define XB_F_WRITE	_BITUL(0)	/* write the guest instead of reading it */
#define XB_F_CACHE	_BITUL(1)	/* pass a struct kvm_xcache */

#define XB_MAX_LEN	0x100000	/* largest size of one operation (1 MiB) */
#define XB_MAX_BATCHES	16
#define XB_MAX_THREADS	2
#define XB_FRAGS	8	/* ranges of a fragmented chain */
#define XB_MAX_ITERS	0x1000000	/* operations per batch, at most */

/**
 * struct xb_run - one benchmark row
 * @method: XB_M_*.
 * @ctx: XB_CTX_*.
 * @flags: XB_F_*.
 * @threads: number of concurrent kthreads (XB_CTX_KTHREAD), 1 or 2.
 * @len: bytes per operation, at most XB_MAX_LEN.
 * @gpa: guest physical address of the first byte.
 * @gpa2: when non-zero, odd operations use @gpa2 instead of @gpa.
 * @hva: the VMM's address of @gpa (XB_M_USER, XB_M_VFIO).
 * @hva2: the VMM's address of @gpa2.
 * @thread_stride: thread t accesses @gpa + t * @thread_stride (and the hvas
 *	likewise).
 * @batch_ns: target duration of one batch when calibrating.
 * @batches: number of timed batches, at most XB_MAX_BATCHES.
 * @pad: zero.
 * @iters: operations per batch.  In: 0 to calibrate (the smallest power
 *	of two whose batch lasts at least @batch_ns, found by running
 *	batches), or the count to use after a warm-up of an eighth of it.
 *	Out: the count used.
 * @ns: out: duration of each batch, thread-major
 *	(@ns[t * @batches + b]).
 * @hits: out: kvm_xcache hits over the whole row (thread 0).
 * @misses: out: kvm_xcache misses over the whole row (thread 0).
 *
 * The fragmented chain of XB_M_COPYV and XB_M_SG is XB_FRAGS ranges of
 * @len / XB_FRAGS bytes (the last takes the remainder), each starting one
 * page after the page-rounded end of the previous one.
 */
struct xb_run {
	__u32 method;
	__u32 ctx;
	__u32 flags;
	__u32 threads;
	__u64 len;
	__u64 gpa;
	__u64 gpa2;
	__u64 hva;
	__u64 hva2;
	__u64 thread_stride;
	__u64 batch_ns;
	__u32 batches;
	__u32 pad;
	__u64 iters;
	__u64 ns[XB_MAX_THREADS * XB_MAX_BATCHES];
	__u64 hits;
	__u64 misses;
};

/* Bind the open file to the VM whose fd is the argument (an int). */
#define XB_BIND		_IOW('x', 0x40, __s32)
/* Run one row; fails with the errno of the first failed operation. */
#define XB_RUN		_IOWR('x', 0x41, struct xb_run)

#endif /* _LIB_TEST_XINTERFACE_BENCH_UAPI_H */
