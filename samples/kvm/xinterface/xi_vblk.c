// SPDX-License-Identifier: GPL-2.0-only
/*
 * xi_vblk: a RAM-backed block device served to a KVM guest by a kthread or
 * by a thread of the VMM, using only the kvm_xinterface API.
 *
 * The guest drives a split virtqueue (include/uapi/linux/virtio_ring.h)
 * with virtio-blk requests: a device-readable header (type, sector), data
 * buffers (device-readable for writes, device-writable for reads) and a
 * device-writable status byte at the end.  The VMM opens /dev/xi_vblk and
 * hands the device its VM fd, the ring's guest addresses, a kick eventfd
 * (registered with KVM_IOEVENTFD) and a call eventfd (KVM_IRQFD, or read by
 * the VMM), see xi_vblk_uapi.h.
 *
 * The worker sleeps until a kick, enters the VM's address space for one
 * batch (kvm_xinterface_use_mm()), reads the available ring and the
 * descriptors through a kernel mapping of the ring (kvm_xvmap), moves the
 * data between the disk and the guest's buffers with
 * kvm_xinterface_copyv() and a translation cache (or, with XI_VBLK_F_SG,
 * through a pinned scatterlist), publishes completions in the used ring
 * and signals the call eventfd.  Requests: VIRTIO_BLK_T_IN, _OUT, _FLUSH
 * (nothing to do: a write is on the RAM disk when it completes) and
 * _GET_ID (the serial "xi_vblk"); others complete VIRTIO_BLK_S_UNSUPP.
 *
 * Everything in the ring comes from the guest and is checked: descriptor
 * indexes, chain loops, lengths, addresses.  A malformed request fails
 * alone with VIRTIO_BLK_S_IOERR (or, when even its status byte cannot be
 * found or written, with a used length of 0); the device goes on serving.
 * An access that raced an invalidation of guest memory (-EAGAIN) is
 * retried, not failed.  The disk and the queue's arrays are charged to the
 * memory cgroup of the VMM that starts the queue.
 *
 * When the VMM exits, every access fails with -ESRCH: the kthread drops
 * the VM and stops by itself.  Nothing signals that exit (the binding
 * keeps the VM and its eventfds alive), so an idle kthread also looks at
 * the ring once a second; that also covers a lost kick.
 *
 * Three workers (xi_vblk_config.worker, see "Choosing a worker" in
 * Documentation/virt/kvm/xinterface.rst):
 *  - XI_VBLK_WORKER_KTHREAD_SCOPE, the default: the kthread above.
 *  - XI_VBLK_WORKER_KTHREAD: the same kthread without the scope, so every
 *    copy switches to the VM's mm and back by itself (the API's kthread
 *    path); there to show what the scope saves.
 *  - XI_VBLK_WORKER_VMM_TASK: a vhost_task, a thread of the VMM created by
 *    XI_VBLK_START (as vhost's workers are since 6.4).  It runs in the
 *    VMM's mm, so the copies take the API's own-context path with no mm
 *    switch at all and no scope; it is charged to the VMM (CPU time,
 *    cgroups, RLIMIT_NPROC) and shows in its /proc/PID/task.  It cannot
 *    outlive the VMM: when the VMM exits, execs or is killed, the worker
 *    gets the SIGKILL of its thread group, and vhost_task's handle_kill
 *    callback drops the VM and marks the queue DEAD (ESRCH), as the
 *    kthread does when it sees -ESRCH.  While it lives, the VMM's address
 *    space cannot go away (the worker is one of its users), so -ESRCH does
 *    not happen in this mode.
 */

#include <linux/atomic.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/kvm_xinterface.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/vhost_task.h>
#include <linux/scatterlist.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_byteorder.h>
#include <linux/virtio_ring.h>
#include <linux/wait.h>

#include "xi_vblk_uapi.h"

MODULE_IMPORT_NS(KVM_XINTERFACE);

#define XVB_SECTOR_SHIFT	9
/* Requests served in one kvm_xinterface_use_mm() scope, at most. */
#define XVB_BATCH		256
/* An idle kthread looks at the ring (and whether the VMM lives) this often. */
#define XVB_IDLE_PROBE		HZ
/* The ring's descriptor table, available and used rings share a mapping. */
#define XVB_MAX_RING_SPAN	SZ_1M

/* Virtqueues are little-endian (VIRTIO_F_VERSION_1, and legacy on x86). */
#define vq16_to_cpu(v)		__virtio16_to_cpu(true, v)
#define vq32_to_cpu(v)		__virtio32_to_cpu(true, v)
#define vq64_to_cpu(v)		__virtio64_to_cpu(true, v)
#define cpu_to_vq16(v)		__cpu_to_virtio16(true, v)
#define cpu_to_vq32(v)		__cpu_to_virtio32(true, v)

/**
 * struct xvb_req - one request, parsed from its descriptor chain
 * @nr_rd: device-readable ranges (header, then data of a write).
 * @nr_wr: device-writable ranges (data of a read, then the status byte).
 * @rd_len: bytes in the readable ranges.
 * @wr_len: bytes in the writable ranges.
 * @status_gpa: guest address of the status byte (last writable byte).
 * @has_status: @status_gpa is valid and can be written.
 */
struct xvb_req {
	unsigned int nr_rd;
	unsigned int nr_wr;
	u64 rd_len;
	u64 wr_len;
	u64 status_gpa;
	bool has_status;
};

/**
 * struct xvb_dev - one open /dev/xi_vblk: a disk and, while started, a queue
 * @lock: serializes start, stop and release.
 * @thread: the kthread serving the queue, or NULL.
 * @vtsk: the VMM thread serving the queue (XI_VBLK_WORKER_VMM_TASK), or NULL.
 * @stopping: xvb_stop() is stopping @vtsk: give up waits and retries.
 * @vtsk_done: @vtsk saw -ESRCH and dropped the VM: nothing left to serve.
 * @retry: the ring was unusable at the last look: look again next tick.
 * @state: XI_VBLK_IDLE, XI_VBLK_RUNNING or XI_VBLK_DEAD.
 * @error: positive errno the worker stopped on by itself, or 0.
 * @vm_mm: the VM's mm (the starter's, which binding checked), grabbed:
 *	only compared with current->mm, to count which path copies take.
 * @intf: the VM binding; owned by the worker while it runs.
 * @ring: mapping of the ring's span; owned by the worker while it runs.
 * @ring_gpa: guest address of the mapping's first byte.
 * @cfg: the configuration the queue was started with.
 * @last_avail: next available ring entry to serve.
 * @last_used: used ring index published so far.
 * @kick_file: the kick eventfd, or NULL (polling).
 * @kick_wqh: the kick eventfd's wait queue, once @kick_wait is on it.
 * @kick_wait: wakes the worker when the kick eventfd is signalled.
 * @kick_pt: poll table used to find @kick_wqh.
 * @kicked: a kick (or work left over) is pending.
 * @call: the call eventfd, or NULL.
 * @meta_cache: translation cache of the headers and status bytes.
 * @data_cache: translation cache of the data buffers.
 * @chain: the current descriptor chain, copied out of the ring.
 * @rd: readable ranges of the current request.
 * @wr: writable ranges of the current request.
 * @tmp: a sub-range list handed to the copy helpers.
 * @disk: the disk, @sectors sectors of vmalloc memory, charged (like the
 *	rest of the device) to the memory cgroup of the task that started it.
 * @sectors: disk size.
 * @st: counters, written by the worker, read by XI_VBLK_GET_STATS.
 */
struct xvb_dev {
	struct mutex lock;	/* start, stop and release */
	struct task_struct *thread;
	struct vhost_task *vtsk;
	bool stopping;
	bool vtsk_done;
	bool retry;
	u32 state;
	u32 error;
	struct mm_struct *vm_mm;

	struct kvm_xinterface *intf;
	struct kvm_xvmap *ring;
	u64 ring_gpa;
	struct xi_vblk_config cfg;
	u16 last_avail;
	u16 last_used;

	struct file *kick_file;
	wait_queue_head_t *kick_wqh;
	wait_queue_entry_t kick_wait;
	poll_table kick_pt;
	atomic_t kicked;
	struct eventfd_ctx *call;

	struct kvm_xcache meta_cache;
	struct kvm_xcache data_cache;
	struct vring_desc *chain;
	struct kvm_xrange *rd;
	struct kvm_xrange *wr;
	struct kvm_xrange *tmp;

	u8 *disk;
	u64 sectors;

	struct xi_vblk_stats st;
};

/* Counters have one writer, the worker; XI_VBLK_GET_STATS reads them. */
static void xvb_add(u64 *counter, u64 n)
{
	WRITE_ONCE(*counter, *counter + n);
}

/* ---- ring access through the mapping ---- */

/*
 * Whether to stop retrying an access that raced an invalidation, or to end
 * a batch: the kthread gives up when it is being stopped; the VMM thread
 * (a user worker, where kthread_should_stop() must not be called) when it
 * is being stopped or has a signal to handle (SIGKILL, SIGSTOP, the
 * freezer's: vhost_task_fn() handles them between two calls of
 * xvb_task_fn()); xvb_start() (the VMM's ioctl) on a fatal signal.
 */
static bool xvb_give_up(struct xvb_dev *v)
{
	if (current->flags & PF_KTHREAD)
		return kthread_should_stop();
	if (current->flags & PF_USER_WORKER)
		return READ_ONCE(v->stopping) || signal_pending(current);
	return fatal_signal_pending(current);
}

/*
 * Enter the ring mapping, rebuilding it for as long as the guest's memory
 * changes under it: an invalidation racing the refresh (-EAGAIN) is
 * nobody's error, so it is retried, not reported.  No caller is inside a
 * section already, and none may be: sections do not nest, and
 * kvm_xvmap_begin() refuses a nested one with -EDEADLK.  Returns the index
 * for xvb_ring_end() or a negative errno: -ESRCH when the VMM is gone,
 * -ENXIO when the ring is not in guest memory right now, -EINTR when the
 * caller gave up (xvb_give_up()), or any other error of kvm_xvmap_begin()
 * or kvm_xvmap_refresh().
 */
static int xvb_ring_begin(struct xvb_dev *v)
{
	int idx, err;

	for (;;) {
		idx = kvm_xvmap_begin(v->ring);
		if (idx != -EAGAIN) {
			/* A nested section is a bug here, not the guest's. */
			WARN_ON_ONCE(idx == -EDEADLK);
			return idx;
		}
		xvb_add(&v->st.ring_refreshes, 1);
		err = kvm_xvmap_refresh(v->ring);
		if (err && err != -EAGAIN)
			return err;
		if (xvb_give_up(v))
			return -EINTR;
		cond_resched();
	}
}

static void xvb_ring_end(struct xvb_dev *v, int idx)
{
	kvm_xvmap_end(v->ring, idx);
}

/* Pointers into the mapping; valid between xvb_ring_begin() and _end(). */
static struct vring_desc *xvb_desc(struct xvb_dev *v)
{
	return v->ring->addr + (v->cfg.desc_gpa - v->ring_gpa);
}

static struct vring_avail *xvb_avail(struct xvb_dev *v)
{
	return v->ring->addr + (v->cfg.avail_gpa - v->ring_gpa);
}

static struct vring_used *xvb_used(struct xvb_dev *v)
{
	return v->ring->addr + (v->cfg.used_gpa - v->ring_gpa);
}

/*
 * Copy the chain starting at @head out of the descriptor table, checking
 * indexes and loops.  Called between xvb_ring_begin() and _end().
 * Returns the number of descriptors or -ERANGE (index out of the table) or
 * -ELOOP (longer than the table: the chain loops).
 */
static int xvb_read_chain(struct xvb_dev *v, u16 head)
{
	const struct vring_desc *table = xvb_desc(v);
	unsigned int num = v->cfg.num, n = 0;
	u16 i = head;

	for (;;) {
		if (i >= num)
			return -ERANGE;
		if (n == num)
			return -ELOOP;
		memcpy(&v->chain[n], &table[i], sizeof(v->chain[n]));
		if (!(vq16_to_cpu(v->chain[n].flags) & VRING_DESC_F_NEXT))
			return n + 1;
		i = vq16_to_cpu(v->chain[n].next);
		n++;
	}
}

/*
 * Take the next available request.  Returns 1 with *head and *ndesc set
 * (*ndesc negative when the chain is malformed), 0 when the ring is empty,
 * or a negative errno when the ring cannot be read.
 */
static int xvb_next(struct xvb_dev *v, u16 *head, int *ndesc)
{
	struct vring_avail *avail;
	u16 avail_idx;
	int idx;

	idx = xvb_ring_begin(v);
	if (idx < 0)
		return idx;
	avail = xvb_avail(v);
	avail_idx = vq16_to_cpu(READ_ONCE(avail->idx));
	if (avail_idx == v->last_avail) {
		xvb_ring_end(v, idx);
		return 0;
	}
	if ((u16)(avail_idx - v->last_avail) > v->cfg.num) {
		/* Not a request that could fail alone: the index is garbage. */
		xvb_ring_end(v, idx);
		return -EPROTO;
	}
	/* Read the entry and the descriptors after the index. */
	smp_rmb();
	*head = vq16_to_cpu(READ_ONCE(avail->ring[v->last_avail & (v->cfg.num - 1)]));
	*ndesc = xvb_read_chain(v, *head);
	xvb_ring_end(v, idx);
	return 1;
}

/* Publish one completion; the request's data writes are done already. */
static int xvb_push_used(struct xvb_dev *v, u16 head, u32 len)
{
	struct vring_used *used;
	unsigned int slot;
	int idx;

	idx = xvb_ring_begin(v);
	if (idx < 0)
		return idx;
	used = xvb_used(v);
	slot = v->last_used & (v->cfg.num - 1);
	used->ring[slot].id = cpu_to_vq32(head);
	used->ring[slot].len = cpu_to_vq32(len);
	kvm_xvmap_mark_dirty(v->ring, (void *)&used->ring[slot] - v->ring->addr,
			     sizeof(used->ring[slot]));
	/* The element and the buffers before the index the guest polls. */
	smp_wmb();
	WRITE_ONCE(used->idx, cpu_to_vq16(v->last_used + 1));
	kvm_xvmap_mark_dirty(v->ring, (void *)&used->idx - v->ring->addr,
			     sizeof(used->idx));
	xvb_ring_end(v, idx);
	v->last_used++;
	return 0;
}

/* ---- requests ---- */

/* Sort the chain into readable and writable ranges; find the status byte. */
static int xvb_parse(struct xvb_dev *v, int ndesc, struct xvb_req *req)
{
	int i, ret = 0;

	memset(req, 0, sizeof(*req));
	for (i = 0; i < ndesc; i++) {
		u16 flags = vq16_to_cpu(v->chain[i].flags);
		u64 addr = vq64_to_cpu(v->chain[i].addr);
		u32 len = vq32_to_cpu(v->chain[i].len);

		if (flags & VRING_DESC_F_INDIRECT)
			ret = -EOPNOTSUPP;
		/* Lengths that wrap the guest physical address space. */
		if (len && addr + len - 1 < addr)
			ret = -EOVERFLOW;
		if (flags & VRING_DESC_F_WRITE) {
			v->wr[req->nr_wr++] = (struct kvm_xrange){ addr, len };
			req->wr_len += len;
			if (len) {
				req->status_gpa = addr + len - 1;
				req->has_status = addr + len - 1 >= addr;
			}
		} else {
			/* Readable after writable breaks the virtio rules. */
			if (req->nr_wr)
				ret = -EINVAL;
			v->rd[req->nr_rd++] = (struct kvm_xrange){ addr, len };
			req->rd_len += len;
		}
	}
	if (req->rd_len < sizeof(struct virtio_blk_outhdr) || !req->wr_len)
		ret = ret ?: -EINVAL;
	return ret;
}

/*
 * Fill v->tmp with @len bytes of @ranges starting @skip bytes in; the
 * caller made sure the ranges hold @skip + @len bytes.
 */
static unsigned int xvb_subranges(struct xvb_dev *v,
				  const struct kvm_xrange *ranges,
				  unsigned int nr, u64 skip, u64 len)
{
	unsigned int i, n = 0;

	for (i = 0; i < nr && len; i++) {
		u64 l = ranges[i].len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l = min(l - skip, len);
		v->tmp[n++] = (struct kvm_xrange){ ranges[i].gpa + skip, l };
		len -= l;
		skip = 0;
	}
	return n;
}

/* Move data through a pinned scatterlist instead of copyv. */
static int xvb_copy_sg(struct xvb_dev *v, unsigned int n, void *buf,
		       size_t len, bool to_guest)
{
	struct kvm_xsg *sg;
	size_t done;

	sg = kvm_xinterface_sg(v->intf, v->tmp, n,
			       to_guest ? DMA_FROM_DEVICE : DMA_TO_DEVICE);
	if (IS_ERR(sg))
		return PTR_ERR(sg);
	if (to_guest)
		done = sg_copy_from_buffer(sg->sgt.sgl, sg->sgt.orig_nents, buf,
					   len);
	else
		done = sg_copy_to_buffer(sg->sgt.sgl, sg->sgt.orig_nents, buf,
					 len);
	kvm_xsg_free(sg);
	return done == len ? 0 : -EFAULT;
}

/*
 * Count which path of the API a copy from here takes, by the test the API
 * makes (current->mm against the VM's): the proof, rather than the
 * assumption, that a worker mode does or does not switch mm.
 */
static void xvb_count_copy(struct xvb_dev *v)
{
	if (current->mm == v->vm_mm)
		xvb_add(&v->st.copies_own_mm, 1);
	else if (!current->mm && (current->flags & PF_KTHREAD))
		xvb_add(&v->st.copies_mm_switch, 1);
	else
		xvb_add(&v->st.copies_remote, 1);
}

/*
 * Copy @len bytes between @buf and @ranges from byte @skip on.  A copy
 * that raced an invalidation (-EAGAIN) is done again: the guest did
 * nothing wrong, and block reads and writes can be repeated.  Returns 0,
 * -EINTR when the worker is stopped (xvb_give_up()) before the copy could
 * be done, or the copy's error.
 */
static int xvb_copy(struct xvb_dev *v, const struct kvm_xrange *ranges,
		    unsigned int nr, u64 skip, void *buf, size_t len,
		    bool to_guest, bool data)
{
	unsigned int n = xvb_subranges(v, ranges, nr, skip, len);
	/*
	 * One cache per kind of buffer: headers and status bytes live in one
	 * region, data in others, and a cache remembers one memslot.
	 */
	struct kvm_xcache *cache = data ? &v->data_cache : &v->meta_cache;
	int ret;

	if (!len)
		return 0;
	for (;;) {
		if (data && (v->cfg.flags & XI_VBLK_F_SG)) {
			ret = xvb_copy_sg(v, n, buf, len, to_guest);
		} else {
			xvb_count_copy(v);
			ret = kvm_xinterface_copyv(v->intf, v->tmp, n, buf, len,
						   to_guest, cache);
		}
		if (ret != -EAGAIN)
			return ret;
		if (xvb_give_up(v))
			return -EINTR;
		cond_resched();
	}
}

/*
 * Check a read or write against the disk; return the disk address of the
 * data or NULL.
 */
static u8 *xvb_disk(struct xvb_dev *v, u64 sector, u64 len)
{
	if (len & ((1 << XVB_SECTOR_SHIFT) - 1) || len > XI_VBLK_MAX_REQUEST)
		return NULL;
	if (sector > v->sectors ||
	    (len >> XVB_SECTOR_SHIFT) > v->sectors - sector)
		return NULL;
	return v->disk + (sector << XVB_SECTOR_SHIFT);
}

/*
 * Serve the request whose chain is in v->chain.  Returns the used length
 * (bytes written to the guest's buffers, status included; 0 when not even
 * the status could be written), -ESRCH when the VMM is gone, or -EINTR
 * when the worker gave up (xvb_give_up()): then the request is not
 * completed, it stays in the ring and is served again later.
 */
static int xvb_serve_req(struct xvb_dev *v, int ndesc)
{
	struct virtio_blk_outhdr hdr;
	struct kvm_xrange status_range;
	struct xvb_req req;
	char id[VIRTIO_BLK_ID_BYTES];
	u8 status = VIRTIO_BLK_S_IOERR, *p;
	u64 len, sector;
	u32 used_len = 1;
	int ret;

	if (ndesc < 0)
		return 0;
	ret = xvb_parse(v, ndesc, &req);
	if (ret)
		goto out;

	ret = xvb_copy(v, v->rd, req.nr_rd, 0, &hdr, sizeof(hdr), false, false);
	if (ret)
		goto out;
	sector = vq64_to_cpu(hdr.sector);
	switch (vq32_to_cpu(hdr.type)) {
	case VIRTIO_BLK_T_IN:
		len = req.wr_len - 1;
		p = xvb_disk(v, sector, len);
		if (!p) {
			ret = -EINVAL;
			break;
		}
		ret = xvb_copy(v, v->wr, req.nr_wr, 0, p, len, true, true);
		if (!ret) {
			xvb_add(&v->st.bytes_read, len);
			used_len += len;
		}
		break;
	case VIRTIO_BLK_T_OUT:
		len = req.rd_len - sizeof(hdr);
		p = xvb_disk(v, sector, len);
		if (!p) {
			ret = -EINVAL;
			break;
		}
		ret = xvb_copy(v, v->rd, req.nr_rd, sizeof(hdr), p, len, false,
			       true);
		if (!ret)
			xvb_add(&v->st.bytes_written, len);
		break;
	case VIRTIO_BLK_T_FLUSH:
		break;
	case VIRTIO_BLK_T_GET_ID:
		/* The serial number, NUL-padded to what the guest gave. */
		len = min_t(u64, req.wr_len - 1, VIRTIO_BLK_ID_BYTES);
		memset(id, 0, sizeof(id));
		strscpy(id, "xi_vblk", sizeof(id));
		ret = xvb_copy(v, v->wr, req.nr_wr, 0, id, len, true, false);
		if (!ret)
			used_len += len;
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		ret = -EOPNOTSUPP;
		break;
	}
	if (!ret)
		status = VIRTIO_BLK_S_OK;
out:
	if (ret == -ESRCH || ret == -EINTR)
		return ret;
	if (ret)
		xvb_add(&v->st.bad_requests, 1);
	if (!req.has_status)
		return 0;
	status_range = (struct kvm_xrange){ req.status_gpa, 1 };
	ret = xvb_copy(v, &status_range, 1, 0, &status, 1, true, false);
	if (ret == -ESRCH || ret == -EINTR)
		return ret;
	if (ret) {
		/* Counted once: the request may have failed already. */
		if (status == VIRTIO_BLK_S_OK)
			xvb_add(&v->st.bad_requests, 1);
		return 0;
	}
	return used_len;
}

/*
 * Serve up to XVB_BATCH requests, inside the VM's address space: in a
 * kvm_xinterface_use_mm() scope (the default kthread), already there (the
 * VMM thread), or entering it per copy (the kthread without a scope).
 * Returns 1 when requests may be left (also when the worker gave up in the
 * middle: it looks again once it may), 0 when the ring is empty, or a
 * negative errno when the ring cannot be used.
 */
static int xvb_serve(struct xvb_dev *v)
{
	bool scope = v->cfg.worker == XI_VBLK_WORKER_KTHREAD_SCOPE;
	unsigned int n;
	int ret, ndesc;
	u16 head;

	if (scope) {
		ret = kvm_xinterface_use_mm(v->intf);
		if (ret)
			return ret;
		xvb_add(&v->st.mm_scopes, 1);
	}
	xvb_add(&v->st.batches, 1);
	for (n = 0; n < XVB_BATCH; n++) {
		if (xvb_give_up(v)) {
			ret = -EINTR;
			break;
		}
		ret = xvb_next(v, &head, &ndesc);
		if (ret <= 0)
			break;
		ret = xvb_serve_req(v, ndesc);
		if (ret < 0)
			break;
		if (ndesc < 0)
			xvb_add(&v->st.bad_requests, 1);
		/*
		 * The entry is consumed only once its completion is out: if
		 * the ring cannot be written now, the request is served again
		 * later (block reads and writes can be repeated).
		 */
		ret = xvb_push_used(v, head, ret);
		if (ret)
			break;
		v->last_avail++;
		xvb_add(&v->st.requests, 1);
		ret = 1;
	}
	if (scope)
		kvm_xinterface_unuse_mm(v->intf);
	WRITE_ONCE(v->st.cache_hits, v->meta_cache.hits + v->data_cache.hits);
	WRITE_ONCE(v->st.cache_misses,
		   v->meta_cache.misses + v->data_cache.misses);
	if (n && v->call) {
		eventfd_signal(v->call);
		xvb_add(&v->st.calls, 1);
	}
	/* Gave up in the middle: not a ring error, nothing was lost. */
	return ret == -EINTR ? 1 : ret;
}

/* ---- the workers ---- */

static void xvb_put_vm(struct xvb_dev *v)
{
	if (v->ring) {
		kvm_xvmap_put(v->ring);
		v->ring = NULL;
	}
	if (v->intf) {
		kvm_xinterface_put(v->intf);
		v->intf = NULL;
	}
}

/* How long an idle worker sleeps without a kick. */
static long xvb_idle_timeout(struct xvb_dev *v)
{
	return v->retry || !v->kick_file ? 1 : XVB_IDLE_PROBE;
}

/*
 * One wakeup's work, the same for every worker: serve a batch and decide
 * when to look again.  Returns -ESRCH when the VMM is gone, else 0.
 */
static int xvb_work(struct xvb_dev *v)
{
	int ret;

	xvb_add(&v->st.wakeups, 1);
	ret = xvb_serve(v);
	v->retry = false;
	if (ret == -ESRCH)
		return ret;
	if (ret > 0) {
		atomic_set(&v->kicked, 1);
	} else if (ret < 0) {
		xvb_add(&v->st.ring_errors, 1);
		/*
		 * The ring unusable for now (its memslot being moved, say):
		 * look again next tick.
		 */
		v->retry = ret != -EPROTO;
	}
	return 0;
}

/*
 * The VMM is gone: do not keep an orphaned VM alive until the device is
 * closed, and say why the queue stopped.  In the worker, which owns the
 * VM while it runs.
 */
static void xvb_vmm_gone(struct xvb_dev *v)
{
	xvb_put_vm(v);
	WRITE_ONCE(v->error, ESRCH);
	WRITE_ONCE(v->state, XI_VBLK_DEAD);
	pr_info("xi_vblk: the VMM exited; stopped after %llu requests\n",
		v->st.requests);
}

static int xvb_thread(void *data)
{
	struct xvb_dev *v = data;
	int ret = 0;

	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!atomic_xchg(&v->kicked, 0) && !kthread_should_stop())
			schedule_timeout(xvb_idle_timeout(v));
		__set_current_state(TASK_RUNNING);
		if (kthread_should_stop())
			break;
		ret = xvb_work(v);
		if (ret == -ESRCH)
			break;
		cond_resched();
	}

	if (ret == -ESRCH)
		xvb_vmm_gone(v);
	else
		xvb_put_vm(v);
	/* kthread_stop() needs the thread alive. */
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (kthread_should_stop())
			break;
		schedule();
	}
	__set_current_state(TASK_RUNNING);
	return 0;
}

/*
 * The VMM thread's work function, called by vhost_task_fn() in a loop that
 * handles signals and vhost_task_stop() between calls.  It is called in
 * TASK_INTERRUPTIBLE, so a kick (vhost_task_wake()), vhost_task_stop() or a
 * signal since the loop's checks makes the sleep below return at once:
 * none is lost.  It sleeps itself, with a timeout, instead of returning
 * false (which sleeps until woken): polling and retries need the tick.
 * Returns true to be called again, false to sleep until woken.
 */
static bool xvb_task_fn(void *data)
{
	struct xvb_dev *v = data;

	if (v->vtsk_done)
		return false;
	if (!atomic_xchg(&v->kicked, 0))
		schedule_timeout(xvb_idle_timeout(v));
	__set_current_state(TASK_RUNNING);
	if (xvb_give_up(v)) {
		/* Serve once the signal is handled (SIGSTOP, the freezer). */
		atomic_set(&v->kicked, 1);
		return true;
	}
	if (xvb_work(v) == -ESRCH) {
		/* Not expected: the worker keeps the VMM's mm alive. */
		xvb_vmm_gone(v);
		v->vtsk_done = true;
	}
	cond_resched();
	return true;
}

/*
 * vhost_task's handle_kill: the VMM thread got a fatal signal (the VMM
 * exits, execs or is killed) before vhost_task_stop().  Called in the
 * worker, after its last xvb_task_fn(), before it exits; must not take
 * v->lock, which xvb_stop() holds while it waits for the worker.
 */
static void xvb_task_killed(void *data)
{
	struct xvb_dev *v = data;

	if (!v->vtsk_done)
		xvb_vmm_gone(v);
}

/*
 * Whether a VMM thread serves the queue.  Constant false without
 * CONFIG_VHOST_TASK, so the calls of the vhost_task API it guards are
 * compiled out there (and XI_VBLK_START refuses the mode).
 */
static bool xvb_is_vtsk(struct xvb_dev *v)
{
	return IS_ENABLED(CONFIG_VHOST_TASK) && v->vtsk;
}

static void xvb_wake(struct xvb_dev *v)
{
	if (xvb_is_vtsk(v))
		vhost_task_wake(v->vtsk);
	else
		wake_up_process(v->thread);
}

static int xvb_kick_wake(wait_queue_entry_t *wait, unsigned int mode,
			 int sync, void *key)
{
	struct xvb_dev *v = container_of(wait, struct xvb_dev, kick_wait);

	if (!(key_to_poll(key) & EPOLLIN))
		return 0;
	atomic_set(&v->kicked, 1);
	xvb_wake(v);
	return 0;
}

static void xvb_kick_queue(struct file *file, wait_queue_head_t *wqh,
			   poll_table *pt)
{
	struct xvb_dev *v = container_of(pt, struct xvb_dev, kick_pt);

	v->kick_wqh = wqh;
	add_wait_queue(wqh, &v->kick_wait);
}

/* ---- start and stop ---- */

/* Stop the worker and release the queue; called with v->lock held. */
static void xvb_stop(struct xvb_dev *v)
{
	if (v->kick_wqh) {
		remove_wait_queue(v->kick_wqh, &v->kick_wait);
		v->kick_wqh = NULL;
	}
	if (v->thread) {
		kthread_stop(v->thread);
		v->thread = NULL;
	}
	if (xvb_is_vtsk(v)) {
		/*
		 * Waits for the worker to exit, also when it was killed (then
		 * it ran xvb_task_killed() already) or is being killed.
		 */
		WRITE_ONCE(v->stopping, true);
		vhost_task_stop(v->vtsk);
		v->vtsk = NULL;
	}
	/* The worker may not have run at all. */
	xvb_put_vm(v);
	if (v->vm_mm) {
		mmdrop(v->vm_mm);
		v->vm_mm = NULL;
	}
	if (v->kick_file) {
		fput(v->kick_file);
		v->kick_file = NULL;
	}
	if (v->call) {
		eventfd_ctx_put(v->call);
		v->call = NULL;
	}
	kvfree(v->chain);
	kvfree(v->rd);
	kvfree(v->wr);
	kvfree(v->tmp);
	v->chain = NULL;
	v->rd = NULL;
	v->wr = NULL;
	v->tmp = NULL;
}

static int xvb_check_config(const struct xi_vblk_config *c, u64 *lo, u64 *hi)
{
	const u64 start[] = { c->desc_gpa, c->avail_gpa, c->used_gpa };
	const u64 size[] = {
		16ull * c->num,
		struct_size_t(struct vring_avail, ring, c->num) + 2,
		struct_size_t(struct vring_used, ring, c->num) + 2,
	};
	int i;

	if (!c->num || c->num > XI_VBLK_MAX_QUEUE || !is_power_of_2(c->num) ||
	    !c->sectors || c->sectors > XI_VBLK_MAX_SECTORS ||
	    c->flags & ~XI_VBLK_F_SG || c->worker > XI_VBLK_WORKER_VMM_TASK)
		return -EINVAL;
	if (c->desc_gpa % 16 || c->avail_gpa % 2 || c->used_gpa % 4)
		return -EINVAL;
	*lo = U64_MAX;
	*hi = 0;
	for (i = 0; i < ARRAY_SIZE(start); i++) {
		if (start[i] + size[i] < start[i])
			return -EOVERFLOW;
		*lo = min(*lo, start[i]);
		*hi = max(*hi, start[i] + size[i]);
	}
	return *hi - *lo > XVB_MAX_RING_SPAN ? -E2BIG : 0;
}

/*
 * Create the worker, asleep, as the last step of a start that can fail:
 * a vhost_task cannot be stopped before vhost_task_start(), and nothing
 * after this fails.
 */
static int xvb_create_worker(struct xvb_dev *v)
{
	char name[TASK_COMM_LEN];
	struct vhost_task *vtsk;
	struct task_struct *t;

	/* Both named after the thread that starts them. */
	snprintf(name, sizeof(name), "xi_vblk/%d", task_pid_nr(current));
	if (v->cfg.worker != XI_VBLK_WORKER_VMM_TASK) {
		t = kthread_create(xvb_thread, v, "%s", name);
		if (IS_ERR(t))
			return PTR_ERR(t);
		v->thread = t;
		return 0;
	}
	/*
	 * A thread of the caller's process, sharing its mm: a kernel thread
	 * or a worker that borrowed the VM's mm (and so passed the owner
	 * check of the bind) has no process to add it to.
	 */
	if (!IS_ENABLED(CONFIG_VHOST_TASK))
		return -EOPNOTSUPP;
	if (current->flags & (PF_KTHREAD | PF_USER_WORKER))
		return -EPERM;
	vtsk = vhost_task_create(xvb_task_fn, xvb_task_killed, v, name);
	if (IS_ERR(vtsk))
		return PTR_ERR(vtsk);
	v->vtsk = vtsk;
	return 0;
}

static int xvb_start(struct xvb_dev *v, const struct xi_vblk_config *c)
{
	unsigned int num = c->num;
	u64 lo, hi;
	int ret, idx;

	ret = xvb_check_config(c, &lo, &hi);
	if (ret)
		return ret;
	if (c->worker == XI_VBLK_WORKER_VMM_TASK &&
	    !IS_ENABLED(CONFIG_VHOST_TASK))
		return -EOPNOTSUPP;
	if (v->thread || v->vtsk)
		return -EBUSY;

	if (v->sectors != c->sectors) {
		vfree(v->disk);
		v->sectors = 0;
		/*
		 * Up to XI_VBLK_MAX_SECTORS of the caller's choosing: charged
		 * to its memory cgroup, and a failure is its -ENOMEM, not a
		 * warning in the kernel log.
		 */
		v->disk = __vmalloc(c->sectors << XVB_SECTOR_SHIFT,
				    GFP_KERNEL_ACCOUNT | __GFP_ZERO |
				    __GFP_NOWARN);
		if (!v->disk)
			return -ENOMEM;
		v->sectors = c->sectors;
	}
	v->cfg = *c;
	v->ring_gpa = lo;
	memset(&v->st, 0, sizeof(v->st));
	kvm_xcache_init(&v->meta_cache);
	kvm_xcache_init(&v->data_cache);
	v->st.worker = c->worker;
	v->error = 0;
	v->stopping = false;
	v->vtsk_done = false;
	v->retry = false;
	atomic_set(&v->kicked, 1);	/* serve what is already posted */

	/* Sized by the VMM: a failure is its -ENOMEM, not a warning. */
	v->chain = kvcalloc(num, sizeof(*v->chain),
			    GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	v->rd = kvcalloc(num, sizeof(*v->rd), GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	v->wr = kvcalloc(num, sizeof(*v->wr), GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	v->tmp = kvcalloc(num, sizeof(*v->tmp),
			  GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	ret = -ENOMEM;
	if (!v->chain || !v->rd || !v->wr || !v->tmp)
		goto err;

	v->intf = kvm_xinterface_bind(c->vm_fd);
	if (IS_ERR(v->intf)) {
		ret = PTR_ERR(v->intf);
		v->intf = NULL;
		goto err;
	}
	/* The bind succeeded, so the caller owns the VM: this is its mm. */
	v->vm_mm = current->mm;
	mmgrab(v->vm_mm);
	v->ring = kvm_xinterface_vmap(v->intf, lo, hi - lo, KVM_XVMAP_WRITE);
	if (IS_ERR(v->ring)) {
		ret = PTR_ERR(v->ring);
		v->ring = NULL;
		goto err;
	}
	/* Start where the used ring is: a stopped queue resumes. */
	idx = xvb_ring_begin(v);
	if (idx < 0) {
		ret = idx;
		goto err;
	}
	v->last_used = vq16_to_cpu(READ_ONCE(xvb_used(v)->idx));
	v->last_avail = v->last_used;
	xvb_ring_end(v, idx);

	if (c->call_fd >= 0) {
		v->call = eventfd_ctx_fdget(c->call_fd);
		if (IS_ERR(v->call)) {
			ret = PTR_ERR(v->call);
			v->call = NULL;
			goto err;
		}
	}
	if (c->kick_fd >= 0) {
		v->kick_file = eventfd_fget(c->kick_fd);
		if (IS_ERR(v->kick_file)) {
			ret = PTR_ERR(v->kick_file);
			v->kick_file = NULL;
			goto err;
		}
	}

	ret = xvb_create_worker(v);
	if (ret)
		goto err;
	/*
	 * RUNNING before anything can wake the worker.  kthread_create()
	 * leaves it asleep, but from vfs_poll() on a kick wakes it, and once
	 * it runs it may stop by itself and write DEAD: stored after that,
	 * RUNNING would report a queue that nobody serves any more.  Nothing
	 * below can fail, so a failed start never leaves RUNNING behind.  The
	 * kthread's DEAD is ordered after this store by the wakeup it must
	 * get first.  (A vhost_task ignores wakeups until vhost_task_start();
	 * it writes DEAD only once started, and killed.)
	 *
	 * Binding requires the caller to be the VM's owner, so the VM's mm
	 * lives until this ioctl returns and the kthread cannot yet see the
	 * -ESRCH that makes it stop.  The order matters all the same: that
	 * rule belongs to kvm_xinterface_bind(), not to this state machine,
	 * and DEAD must not be overwritten whatever made the kthread stop,
	 * now or in the future.
	 */
	WRITE_ONCE(v->state, XI_VBLK_RUNNING);
	if (v->kick_file) {
		init_waitqueue_func_entry(&v->kick_wait, xvb_kick_wake);
		init_poll_funcptr(&v->kick_pt, xvb_kick_queue);
		vfs_poll(v->kick_file, &v->kick_pt);
	}
	if (xvb_is_vtsk(v))
		vhost_task_start(v->vtsk);
	else
		wake_up_process(v->thread);
	return 0;
err:
	xvb_stop(v);
	return ret;
}

/* ---- the character device ---- */

static void xvb_get_stats(struct xvb_dev *v, struct xi_vblk_stats *s)
{
	s->state = READ_ONCE(v->state);
	s->error = READ_ONCE(v->error);
	s->requests = READ_ONCE(v->st.requests);
	s->bad_requests = READ_ONCE(v->st.bad_requests);
	s->bytes_read = READ_ONCE(v->st.bytes_read);
	s->bytes_written = READ_ONCE(v->st.bytes_written);
	s->wakeups = READ_ONCE(v->st.wakeups);
	s->batches = READ_ONCE(v->st.batches);
	s->calls = READ_ONCE(v->st.calls);
	s->ring_refreshes = READ_ONCE(v->st.ring_refreshes);
	s->cache_hits = READ_ONCE(v->st.cache_hits);
	s->cache_misses = READ_ONCE(v->st.cache_misses);
	s->ring_errors = READ_ONCE(v->st.ring_errors);
	s->worker = READ_ONCE(v->st.worker);
	s->pad = 0;
	s->mm_scopes = READ_ONCE(v->st.mm_scopes);
	s->copies_own_mm = READ_ONCE(v->st.copies_own_mm);
	s->copies_mm_switch = READ_ONCE(v->st.copies_mm_switch);
	s->copies_remote = READ_ONCE(v->st.copies_remote);
}

/*
 * Copy part of the disk to userspace.  v->lock keeps the disk from being
 * reallocated by a start with another size; the kthread may be writing
 * the same sectors (see struct xi_vblk_disk_io).
 */
static int xvb_read_disk(struct xvb_dev *v, const struct xi_vblk_disk_io *io)
{
	u64 size = v->sectors << XVB_SECTOR_SHIFT;

	if (!v->disk)
		return -ENODEV;
	if ((io->offset | io->len) & ((1 << XVB_SECTOR_SHIFT) - 1) ||
	    io->len > XI_VBLK_MAX_REQUEST || io->offset > size ||
	    io->len > size - io->offset)
		return -EINVAL;
	if (copy_to_user(u64_to_user_ptr(io->buf), v->disk + io->offset,
			 io->len))
		return -EFAULT;
	return 0;
}

/* XI_VBLK_GET_STATS of callers built before the worker fields. */
#define XVB_GET_STATS_V0 \
	_IOC(_IOC_READ, 'X', 2, offsetofend(struct xi_vblk_stats, ring_errors))

static long xvb_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct xvb_dev *v = file->private_data;
	void __user *argp = (void __user *)arg;
	struct xi_vblk_config c;
	struct xi_vblk_disk_io io;
	struct xi_vblk_stats s;
	int ret;

	switch (cmd) {
	case XI_VBLK_START:
		if (copy_from_user(&c, argp, sizeof(c)))
			return -EFAULT;
		mutex_lock(&v->lock);
		ret = xvb_start(v, &c);
		mutex_unlock(&v->lock);
		return ret;
	case XI_VBLK_STOP:
		mutex_lock(&v->lock);
		ret = v->thread || v->vtsk ? 0 : -ENOTCONN;
		xvb_stop(v);
		WRITE_ONCE(v->state, XI_VBLK_IDLE);
		mutex_unlock(&v->lock);
		return ret;
	case XI_VBLK_GET_STATS:
	case XVB_GET_STATS_V0:
		xvb_get_stats(v, &s);
		return copy_to_user(argp, &s, _IOC_SIZE(cmd)) ? -EFAULT : 0;
	case XI_VBLK_READ_DISK:
		if (copy_from_user(&io, argp, sizeof(io)))
			return -EFAULT;
		mutex_lock(&v->lock);
		ret = xvb_read_disk(v, &io);
		mutex_unlock(&v->lock);
		return ret;
	}
	return -ENOTTY;
}

static int xvb_open(struct inode *inode, struct file *file)
{
	struct xvb_dev *v = kzalloc(sizeof(*v), GFP_KERNEL_ACCOUNT);

	if (!v)
		return -ENOMEM;
	mutex_init(&v->lock);
	file->private_data = v;
	return 0;
}

static int xvb_release(struct inode *inode, struct file *file)
{
	struct xvb_dev *v = file->private_data;

	mutex_lock(&v->lock);
	xvb_stop(v);
	mutex_unlock(&v->lock);
	mutex_destroy(&v->lock);
	vfree(v->disk);
	kfree(v);
	return 0;
}

static const struct file_operations xvb_fops = {
	.owner = THIS_MODULE,
	.open = xvb_open,
	.release = xvb_release,
	.unlocked_ioctl = xvb_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice xvb_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "xi_vblk",
	.fops = &xvb_fops,
};

module_misc_device(xvb_misc);

MODULE_DESCRIPTION("kvm_xinterface sample: a RAM disk served to a KVM guest from a kthread or a VMM thread");
MODULE_LICENSE("GPL");
