/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Interface of the test_xinterface module, shared with
 * tools/testing/selftests/kvm/xinterface_test.c.
 */
#ifndef _LIB_TEST_XINTERFACE_UAPI_H
#define _LIB_TEST_XINTERFACE_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The byte the tests expect at guest physical @addr for pattern @seed. */
static inline __u8 xi_test_pat(__u64 addr, __u64 seed)
{
	return (__u8)(addr * 131 + seed * 7 + (addr >> 9));
}

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

/* One guest range (struct kvm_xrange). */
struct xi_test_range {
	__u64 gpa;
	__u64 len;
};

/* xi_test_copyv.flags */
#define XI_TEST_F_CACHE		0x1	/* use the file's translation cache */
#define XI_TEST_F_USE_MM	0x2	/* inside kvm_xinterface_use_mm() */
/* Use the module's one cache, shared by every file (and so every VM). */
#define XI_TEST_F_SHARED_CACHE	0x4
/* XI_TEST_MUTATE may change the ranges while the call runs. */
#define XI_TEST_F_MUTABLE	0x8

/**
 * struct xi_test_copyv - scatter/gather copy (kvm_xinterface_copyv)
 * @ranges: user address of struct xi_test_range[@nr].
 * @nr: number of ranges (at most 64).
 * @ctx: one of XI_TEST_CTX_*.
 * @buf: user buffer of @len bytes, the sum of the ranges' lengths.
 * @len: bytes.
 * @write: 1 scatters @buf into the ranges, 0 gathers them into it.
 * @flags: XI_TEST_F_*.
 */
struct xi_test_copyv {
	__u64 ranges;
	__u32 nr;
	__u32 ctx;
	__u64 buf;
	__u64 len;
	__u32 write;
	__u32 flags;
};

/* Statistics of the file's translation cache, read and reset. */
struct xi_test_cache_stats {
	__u64 hits;
	__u64 misses;
};

/**
 * struct xi_test_vmap - create the file's mapping (replaces an old one)
 * @gpa: first byte.
 * @len: bytes.
 * @flags: kvm_xinterface_vmap() flags (1: writable).
 * @pad: zero.
 */
struct xi_test_vmap {
	__u64 gpa;
	__u64 len;
	__u32 flags;
	__u32 pad;
};

/**
 * struct xi_test_vmap_rw - access through the file's mapping
 * @offset: from the mapping's first byte.
 * @buf: user buffer.
 * @len: bytes.
 * @write: 1 writes @buf through the mapping (and marks it dirty).
 * @ctx: one of XI_TEST_CTX_*.
 * @refreshes: out: kvm_xvmap_refresh() calls the access needed.
 * @pad: zero.
 */
struct xi_test_vmap_rw {
	__u64 offset;
	__u64 buf;
	__u64 len;
	__u32 write;
	__u32 ctx;
	__u32 refreshes;
	__u32 pad;
};

/**
 * struct xi_test_sg - build an sg table over guest ranges and copy
 * @ranges: user address of struct xi_test_range[@nr].
 * @nr: number of ranges (at most 64).
 * @dir: 1 DMA_TO_DEVICE (gathers the ranges into @buf), 2
 *	DMA_FROM_DEVICE (scatters @buf into them), 0 DMA_BIDIRECTIONAL
 *	(scatters).
 * @buf: user buffer of @len bytes, the sum of the ranges' lengths.
 * @len: bytes.
 * @ctx: one of XI_TEST_CTX_*.
 * @nents: out: entries in the table.
 * @flags: 0 or XI_TEST_F_MUTABLE.
 * @pad: zero.
 */
struct xi_test_sg {
	__u64 ranges;
	__u32 nr;
	__u32 dir;
	__u64 buf;
	__u64 len;
	__u32 ctx;
	__u32 nents;
	__u32 flags;
	__u32 pad;
};

/**
 * struct xi_test_mutate - change a range of the call in flight
 * @index: which range of the XI_TEST_F_MUTABLE call running on the file.
 * @pad: zero.
 * @gpa: its new address.
 * @len: its new length.
 *
 * Plays a caller that changes its ranges array while the API uses it
 * (e.g. from a userfaultfd handler while the call waits for a page).
 * Fails with ENOENT when no such call is in flight.
 */
struct xi_test_mutate {
	__u32 index;
	__u32 pad;
	__u64 gpa;
	__u64 len;
};

/**
 * struct xi_test_vmap_probe - the kernel alias of the file's mapping
 * @mapped: out: the kernel address the last access used still maps the
 *	page it mapped then.
 * @writable: out: that kernel mapping is writable.
 */
struct xi_test_vmap_probe {
	__u32 mapped;
	__u32 writable;
};

/**
 * struct xi_test_fail_nth - fault injection in the next operation
 * @nth: in: make the nth fault-injectable call (allocation, page
 *	allocation, user copy) of the next operation on this file fail, in
 *	whichever task runs it (caller, kthread, workqueue worker); 0 arms
 *	nothing.  The operations are XI_TEST_BIND, XI_TEST_COPY,
 *	XI_TEST_COPYV, XI_TEST_VMAP, XI_TEST_VMAP_RW and XI_TEST_SG; only
 *	the API's calls are counted, not the module's own allocations.
 * @left: out: for the last armed operation, what was left of the count:
 *	0 when the nth call was reached (and failed), > 0 when the operation
 *	made fewer calls, -1 when no operation was armed since.
 */
struct xi_test_fail_nth {
	__u32 nth;
	__s32 left;
};

/**
 * struct xi_test_vmap_nest - begin sections inside a section
 * @same: out: kvm_xvmap_begin() of the file's mapping inside its own
 *	section (a cookie >= 0 if it was allowed, or a negative errno).
 * @other: out: the same with a second mapping of the same range.
 */
struct xi_test_vmap_nest {
	__s32 same;
	__s32 other;
};

#define XI_TEST_STRESS_MAX	4

/**
 * struct xi_test_stress - kthreads using vmap, sg and copies together
 * @gpa: first thread's region; thread i uses [@gpa + i * @stride, +@len).
 * @len: bytes per region.
 * @stride: distance between regions.
 * @nr_threads: 1 to XI_TEST_STRESS_MAX.
 * @ms: how long they run.
 * @churn_gpa: a range userspace keeps deleting and re-adding, holding
 *	pat() with seed @churn_seed whenever present; read by one more
 *	kthread.  0 for none.
 * @churn_len: its length.
 * @churn_seed: its pattern seed.
 * @ops: out: verified write+read pairs, all threads.
 * @errors: out: failed operations that should not fail.
 * @bad: out: reads that returned wrong bytes.
 * @churn_ok: out: churn reads that succeeded (and were verified).
 * @churn_gone: out: churn reads refused because the range was a hole.
 * @seed: out: each thread's last written seed (its region holds pat()
 *	with it).
 */
struct xi_test_stress {
	__u64 gpa;
	__u64 len;
	__u64 stride;
	__u32 nr_threads;
	__u32 ms;
	__u64 churn_gpa;
	__u64 churn_len;
	__u64 churn_seed;
	__u64 ops;
	__u64 errors;
	__u64 bad;
	__u64 churn_ok;
	__u64 churn_gone;
	__u64 seed[XI_TEST_STRESS_MAX];
};

#define XI_TEST_COPYV		_IOW('x', 3, struct xi_test_copyv)
#define XI_TEST_CACHE_STATS	_IOR('x', 4, struct xi_test_cache_stats)
#define XI_TEST_VMAP		_IOW('x', 5, struct xi_test_vmap)
#define XI_TEST_VMAP_PUT	_IO('x', 6)
#define XI_TEST_VMAP_RW		_IOWR('x', 7, struct xi_test_vmap_rw)
#define XI_TEST_SG		_IOWR('x', 8, struct xi_test_sg)
#define XI_TEST_STRESS		_IOWR('x', 9, struct xi_test_stress)
#define XI_TEST_MUTATE		_IOW('x', 10, struct xi_test_mutate)
#define XI_TEST_VMAP_PROBE	_IOR('x', 11, struct xi_test_vmap_probe)
#define XI_TEST_VMAP_NEST	_IOR('x', 12, struct xi_test_vmap_nest)
#define XI_TEST_FAIL_NTH	_IOWR('x', 13, struct xi_test_fail_nth)

/* Longest mapping XI_TEST_VMAP makes. */
#define XI_TEST_VMAP_MAX	(16u << 20)

#endif /* _LIB_TEST_XINTERFACE_UAPI_H */
