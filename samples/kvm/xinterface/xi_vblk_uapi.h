/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * Interface of the xi_vblk sample (samples/kvm/xinterface/xi_vblk.c): a
 * RAM-backed block device served to a KVM guest through kvm_xinterface, by
 * a kthread or by a thread of the VMM (xi_vblk_config.worker).  Shared
 * with tools/testing/selftests/kvm/xinterface_sample.c.
 */
#ifndef _SAMPLES_KVM_XI_VBLK_UAPI_H
#define _SAMPLES_KVM_XI_VBLK_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Largest queue and largest request (all data descriptors together). */
#define XI_VBLK_MAX_QUEUE	1024
#define XI_VBLK_MAX_REQUEST	0x400000u
/* Largest disk, in 512-byte sectors (256 MiB). */
#define XI_VBLK_MAX_SECTORS	0x80000ull

/* xi_vblk_config.flags */
#define XI_VBLK_F_SG		0x1u		/* move data with kvm_xinterface_sg() */

/*
 * xi_vblk_config.worker: who serves the queue.  See "Choosing a worker" in
 * Documentation/virt/kvm/xinterface.rst.
 */
/* A kthread; one kvm_xinterface_use_mm() scope per batch (the default). */
#define XI_VBLK_WORKER_KTHREAD_SCOPE	0u
/* A kthread without a scope: every copy switches to the VM's mm and back. */
#define XI_VBLK_WORKER_KTHREAD		1u
/*
 * A thread of the VMM (vhost_task): runs in the VM's mm, no switch at all;
 * accounted to the VMM; ends when the VMM exits or is killed.
 */
#define XI_VBLK_WORKER_VMM_TASK		2u

/**
 * struct xi_vblk_config - the queue and the disk, for XI_VBLK_START
 * @vm_fd: the VM's file descriptor, in the caller's file table.
 * @kick_fd: eventfd the guest's notifications arrive on (the VMM registers
 *	it with KVM_IOEVENTFD), or -1: the worker polls the ring every tick.
 * @call_fd: eventfd signalled after a batch of completions (for KVM_IRQFD
 *	or the VMM), or -1: the guest polls the used ring.
 * @num: queue size, a power of two from 1 to XI_VBLK_MAX_QUEUE.
 * @desc_gpa: guest physical address of the descriptor table.
 * @avail_gpa: guest physical address of the available ring.
 * @used_gpa: guest physical address of the used ring.  The three parts
 *	must lie within 1 MiB of each other (one mapping covers them).
 * @sectors: disk size in 512-byte sectors, at most XI_VBLK_MAX_SECTORS.
 *	The disk is zero-filled at the first start and kept across stop and
 *	start while the size stays the same.  It is charged to the memory
 *	cgroup of the task that starts the queue.
 * @flags: XI_VBLK_F_*.
 * @worker: XI_VBLK_WORKER_*; 0 (what this field, formerly padding that had
 *	to be 0, holds for older callers) is a kthread with use_mm scopes.
 *
 * The device starts at the used ring's current index, so a queue can be
 * stopped and started again without losing requests.
 *
 * XI_VBLK_START must be called by the VM's owner (the process that created
 * the VM), in every mode: -EIO otherwise (kvm_xinterface_bind()'s errno).
 * With XI_VBLK_WORKER_VMM_TASK the worker becomes a thread of the calling
 * process: -EPERM when the caller is a kernel thread or worker that
 * borrowed the VM's mm rather than a thread of the VMM, -EOPNOTSUPP in a
 * kernel without CONFIG_VHOST_TASK, -EAGAIN when the VMM may not create
 * another thread (RLIMIT_NPROC, pids cgroup).  An unknown @worker: -EINVAL.
 */
struct xi_vblk_config {
	__s32 vm_fd;
	__s32 kick_fd;
	__s32 call_fd;
	__u32 num;
	__u64 desc_gpa;
	__u64 avail_gpa;
	__u64 used_gpa;
	__u64 sectors;
	__u32 flags;
	__u32 worker;
};

/* xi_vblk_stats.state */
enum {
	XI_VBLK_IDLE,		/* never started, or stopped by XI_VBLK_STOP */
	XI_VBLK_RUNNING,	/* the worker serves the queue */
	XI_VBLK_DEAD,		/* the worker stopped by itself: see @error */
};

/**
 * struct xi_vblk_stats - what the device did, for XI_VBLK_GET_STATS
 * @state: XI_VBLK_IDLE, XI_VBLK_RUNNING or XI_VBLK_DEAD.
 * @error: why the worker stopped by itself (a positive errno: ESRCH when
 *	the VMM exited or was killed, in every worker mode), or 0.
 * @requests: requests completed (put in the used ring), good or bad.
 * @bad_requests: requests failed because the guest's ring or buffers were
 *	malformed (bad index, loop, overflow, hole, read-only memory, ...).
 * @bytes_read: data bytes moved from the disk to the guest.
 * @bytes_written: data bytes moved from the guest to the disk.
 * @wakeups: times the worker woke up (kicks or polling ticks).
 * @batches: batches served (up to 256 requests each).
 * @calls: call eventfd signals.
 * @ring_refreshes: times the ring mapping had to be rebuilt.
 * @cache_hits: translation cache hits of the buffer copies.
 * @cache_misses: translation cache misses of the buffer copies.
 * @ring_errors: times the ring itself could not be read (not a request).
 * @worker: the XI_VBLK_WORKER_* mode of the last start.
 * @pad: 0.
 * @mm_scopes: kvm_xinterface_use_mm() scopes entered (one per batch with
 *	XI_VBLK_WORKER_KTHREAD_SCOPE, none in the other modes).
 * @copies_own_mm: buffer copies (kvm_xinterface_copyv() calls) made with
 *	current->mm already the VM's mm: the API's own-context path, no mm
 *	switch (inside a scope, or in the VMM's thread).
 * @copies_mm_switch: copies made from a kthread without an mm: each
 *	switches to the VM's mm and back (XI_VBLK_WORKER_KTHREAD).
 * @copies_remote: copies made from another mm (the remote path); 0 unless
 *	something is wrong.
 *
 * The fields from @worker on were added later: a caller built with the
 * older, shorter structure gets its part (the ioctl's size tells which).
 */
struct xi_vblk_stats {
	__u32 state;
	__u32 error;
	__u64 requests;
	__u64 bad_requests;
	__u64 bytes_read;
	__u64 bytes_written;
	__u64 wakeups;
	__u64 batches;
	__u64 calls;
	__u64 ring_refreshes;
	__u64 cache_hits;
	__u64 cache_misses;
	__u64 ring_errors;
	__u32 worker;
	__u32 pad;
	__u64 mm_scopes;
	__u64 copies_own_mm;
	__u64 copies_mm_switch;
	__u64 copies_remote;
};

/**
 * struct xi_vblk_disk_io - a range of the disk, for XI_VBLK_READ_DISK
 * @offset: byte offset into the disk, a multiple of 512.
 * @len: bytes, a multiple of 512, at most XI_VBLK_MAX_REQUEST; the range
 *	must lie within the disk (-EINVAL otherwise, -ENODEV when the device
 *	has no disk yet).
 * @buf: user address the bytes are copied to.
 *
 * The disk is read as it is at the time of the call: a VMM that wants a
 * consistent image (to check the guest's file system, say) reads it after
 * the guest stopped using the device.
 */
struct xi_vblk_disk_io {
	__u64 offset;
	__u64 len;
	__u64 buf;
};

/* Bind to the VM and start serving; -EBUSY if already running. */
#define XI_VBLK_START		_IOW('X', 0, struct xi_vblk_config)
/* Stop the worker and drop the VM; the disk is kept. */
#define XI_VBLK_STOP		_IO('X', 1)
#define XI_VBLK_GET_STATS	_IOR('X', 2, struct xi_vblk_stats)
/* Copy part of the disk to the caller; running or not. */
#define XI_VBLK_READ_DISK	_IOW('X', 3, struct xi_vblk_disk_io)

#endif /* _SAMPLES_KVM_XI_VBLK_UAPI_H */
