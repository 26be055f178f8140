// SPDX-License-Identifier: GPL-2.0-only
/*
 * xinterface_sample: a VMM for the xi_vblk sample back-end
 * (samples/kvm/xinterface/xi_vblk.c).
 *
 * The guest runs a tiny virtio-blk driver: it lays out a split virtqueue
 * in its memory, posts write and read requests with data patterns, kicks
 * the device through a port registered with KVM_IOEVENTFD (so the kick
 * goes straight to the module's kthread, not to this VMM), polls the used
 * ring, and checks every completion, status byte and data byte itself.
 * The VMM only builds the VM, hands the VM fd and the ring to
 * /dev/xi_vblk, runs the vCPU and reports.
 *
 *   xinterface_sample [-n requests] [-s request_bytes] [-q queue_size]
 *                     [-p] [-g] [-w worker]  # one run and a readable report
 *   xinterface_sample -T            # the kselftest: TAP
 *   xinterface_sample -B [-n requests] [-s request_bytes] [-q queue_size]
 *                                   # the worker modes compared
 *
 * -p: the worker polls the ring instead of waiting for kicks; -g: data
 * moves through kvm_xinterface_sg() instead of kvm_xinterface_copyv();
 * -w: the device's worker, kthread-scope (a kthread with one use_mm scope
 * per batch, the default), kthread (every copy switches mm itself) or
 * vmm-task (a thread of this process, a vhost_task: no mm switch).  -T
 * runs the main cases with each worker.  With CONFIG_FAULT_INJECTION, -T
 * ends with fail-nth sweeps: every allocation and user copy of start,
 * serve and stop failed in turn.
 *
 * -B times -n requests (default 16384) of -s bytes (default 512: the
 * per-request cost, not the copy, dominates) with each worker, the three
 * VMs taking turns in 8 rounds so that host load spreads over all, and
 * prints one line per worker:
 *   XI-SAMPLE-BENCH mode=M reqs=N bytes=B ns=T reqs_per_s=X ns_per_req=Y
 * T is CLOCK_MONOTONIC time in this (the test) kernel around the guest's
 * runs: under QEMU -icount shift=0,sleep=off, one ns per instruction the
 * emulated CPU executed (the worker, KVM, and the guest's driver and
 * polling), so ns_per_req is instructions per request.  The guest neither
 * fills nor checks the data in -B (the TAP lines check the counts).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"

#include "../../../../samples/kvm/xinterface/xi_vblk_uapi.h"

#define PG		4096ul
#define GVA_OFF		BIT_ULL(40)	/* guest virtual = gpa + GVA_OFF */
#define KICK_PORT	0x6000
#define SECTOR		512ul

/* Guest physical layout: one memslot per region. */
#define SLOT_RING	10
#define GPA_RING	0x10000000ull
#define PAGES_RING	16
#define SLOT_HDR	11
#define GPA_HDR		0x10100000ull	/* 16-byte headers, one per slot */
#define STATUS_OFF	0x8000ull	/* then the status bytes */
#define PAGES_HDR	16
#define SLOT_RO		12
#define GPA_RO		0x10200000ull	/* read-only memslot */
#define PAGES_RO	2
#define GPA_HOLE	0x10300000ull	/* no memslot */
#define SLOT_CHURN	13
#define GPA_CHURN	0x10400000ull	/* added and removed mid-traffic */
#define PAGES_CHURN	16
#define SLOT_WBUF	14
#define GPA_WBUF	0x20000000ull	/* data of writes (guest-written) */
#define SLOT_RBUF	15
#define GPA_RBUF	0x40000000ull	/* data of reads (device-written) */
#define SPARE_PAGES	16		/* unused pages after the buffers */
#define MAX_BUF_BYTES	(64ul << 20)

#define DESC_PER_SLOT	4		/* header, data (1 or 2), status */
#define RO_BYTE		0x5a
#define FAULT_PAIRS	2		/* writes, then reads, of a faulted batch */

/* ---- shared with the guest ---- */

enum {
	G_TRAFFIC = 1, G_MALFORMED, G_BAD_INDEX, G_POST_NOWAIT, G_WAIT_ONE,
	G_FAULT_BATCH, G_BENCH,
};

struct gparams {
	uint64_t num, depth, req_size, disk_sectors;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint64_t tsc_per_ms, timeout_ms, kick, split;
};

struct gcmd {
	uint64_t op, arg;
};

#define NR_BAD_CASES	18

struct gresult {
	uint64_t requests, writes, reads, bytes;
	uint64_t bad_bytes, bad_status, bad_used, timeouts;
	uint64_t completed;			/* G_POST_NOWAIT, G_WAIT_ONE */
	uint64_t case_ok[NR_BAD_CASES];
	uint64_t case_got[NR_BAD_CASES];	/* len << 8 | status */
	/* G_FAULT_BATCH: its completions by outcome, and what was wrong. */
	uint64_t fault_ok, fault_ioerr, fault_nostatus, fault_bad;
	uint64_t fault_bad_bytes;
};

static struct gparams P;
static struct gcmd C;
static struct gresult R;

/* Guest driver state. */
static uint16_t avail_idx, used_seen;
static uint64_t gen, cursor;

#define GV(gpa)		((void *)((gpa) + GVA_OFF))

static uint64_t pat(uint64_t sector, uint64_t word, uint64_t g)
{
	return ((sector * 64 + word + 1) * 0x9e3779b97f4a7c15ull) ^ (g << 40) ^ g;
}

static void pio_write16(uint16_t port, uint16_t value)
{
	__asm__ __volatile__("outw %%ax, %%dx" : : "d"(port), "a"(value));
}

static struct vring_desc *g_desc(void)
{
	return GV(P.desc_gpa);
}

static struct vring_avail *g_avail(void)
{
	return GV(P.avail_gpa);
}

static struct vring_used *g_used(void)
{
	return GV(P.used_gpa);
}

static uint8_t *g_status(unsigned int slot)
{
	return GV(GPA_HDR + STATUS_OFF + slot);
}

static void set_desc(uint16_t i, uint64_t gpa, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vring_desc *d = &g_desc()[i];

	d->addr = gpa;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static void set_hdr(unsigned int slot, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr *h = GV(GPA_HDR + slot * 16);

	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	*g_status(slot) = 0xff;
}

static void post(uint16_t head)
{
	struct vring_avail *a = g_avail();

	a->ring[avail_idx & (P.num - 1)] = head;
	/* The entry (and the descriptors) before the index: x86 is TSO. */
	__asm__ __volatile__("" : : : "memory");
	WRITE_ONCE(a->idx, ++avail_idx);
}

static void kick(void)
{
	if (P.kick)
		pio_write16(KICK_PORT, 0);
}

/* Wait for the next used element; false on timeout. */
static bool get_used(struct vring_used_elem *e, uint64_t timeout_ms)
{
	struct vring_used *u = g_used();
	uint64_t t0 = rdtsc(), lim = timeout_ms * P.tsc_per_ms;

	while (READ_ONCE(u->idx) == used_seen) {
		if (rdtsc() - t0 > lim)
			return false;
		cpu_relax();
	}
	__asm__ __volatile__("" : : : "memory");
	*e = u->ring[used_seen & (P.num - 1)];
	used_seen++;
	return true;
}

/* Post request @slot: header, data at @data (split in two if asked), status. */
static void post_req(unsigned int slot, uint32_t type, uint64_t sector,
		     uint64_t data)
{
	uint16_t d = slot * DESC_PER_SLOT;
	uint16_t dw = type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0;
	uint32_t len = P.req_size, first = P.split ? len / 2 - 100 : len;

	set_hdr(slot, type, sector);
	set_desc(d, GPA_HDR + slot * 16, 16, VRING_DESC_F_NEXT, d + 1);
	set_desc(d + 1, data, first, dw | VRING_DESC_F_NEXT, d + 2);
	if (first != len) {
		set_desc(d + 2, data + first, len - first,
			 dw | VRING_DESC_F_NEXT, d + 3);
		set_desc(d + 3, GPA_HDR + STATUS_OFF + slot, 1,
			 VRING_DESC_F_WRITE, 0);
	} else {
		set_desc(d + 2, GPA_HDR + STATUS_OFF + slot, 1,
			 VRING_DESC_F_WRITE, 0);
	}
	post(d);
}

/* Wait for @n completions of slots [0, n); false on timeout. */
static bool complete(unsigned int n, uint32_t want_len)
{
	struct vring_used_elem e;
	unsigned int i, slot;

	for (i = 0; i < n; i++) {
		if (!get_used(&e, P.timeout_ms)) {
			R.timeouts++;
			return false;
		}
		slot = e.id / DESC_PER_SLOT;
		if (e.id % DESC_PER_SLOT || slot >= n || e.len != want_len)
			R.bad_used++;
		else if (*g_status(slot) != VIRTIO_BLK_S_OK)
			R.bad_status++;
	}
	return true;
}

static void fill(uint64_t *p, uint64_t sector, uint64_t words)
{
	uint64_t j;

	for (j = 0; j < words; j++)
		p[j] = pat(sector + j / 64, j % 64, gen);
}

static uint64_t verify(const uint64_t *p, uint64_t sector, uint64_t words)
{
	uint64_t j, bad = 0, x;

	for (j = 0; j < words; j++) {
		for (x = READ_ONCE(p[j]) ^ pat(sector + j / 64, j % 64, gen);
		     x; x >>= 8)
			bad += (x & 0xff) != 0;
	}
	return bad;
}

/*
 * Post @n writes of the pattern of the sectors at the cursor and @n reads
 * of the same sectors into the read buffers; @write picks which half.
 * @check false (G_BENCH): the write buffers are posted as they are.
 */
static void g_post_batch(unsigned int n, bool write, bool check)
{
	uint64_t spr = P.req_size / SECTOR, words = P.req_size / 8;
	unsigned int k;

	if (write)
		gen++;
	for (k = 0; k < n; k++) {
		uint64_t wbuf = GPA_WBUF + k * P.req_size;

		if (write) {
			if (check)
				fill(GV(wbuf), cursor + k * spr, words);
			post_req(k, VIRTIO_BLK_T_OUT, cursor + k * spr, wbuf);
		} else {
			post_req(k, VIRTIO_BLK_T_IN, cursor + k * spr,
				 GPA_RBUF + k * P.req_size);
		}
	}
	kick();
}

/*
 * Write a batch of sectors, read them back elsewhere, check every byte
 * (only the completions with @check false).
 */
static void g_traffic(uint64_t nreq, bool check)
{
	uint64_t spr = P.req_size / SECTOR, words = P.req_size / 8;
	uint64_t target = R.requests + nreq;
	unsigned int k, n;

	while (R.requests < target) {
		n = (target - R.requests + 1) / 2;
		if (n > P.depth)
			n = P.depth;
		g_post_batch(n, true, check);
		if (!complete(n, 1))
			return;
		g_post_batch(n, false, check);
		if (!complete(n, P.req_size + 1))
			return;
		for (k = 0; k < n && check; k++)
			R.bad_bytes += verify(GV(GPA_RBUF + k * P.req_size),
					      cursor + k * spr, words);
		R.requests += 2 * n;
		R.writes += n;
		R.reads += n;
		R.bytes += 2 * n * P.req_size;
		cursor = (cursor + P.depth * spr) % P.disk_sectors;
	}
}

/*
 * One malformed request built from descriptors 0..3 of slot 0; the device
 * must complete it with the expected used length and status byte.
 */
static void g_bad_case(unsigned int c)
{
	const uint16_t N = VRING_DESC_F_NEXT, W = VRING_DESC_F_WRITE;
	uint64_t hdr = GPA_HDR, st = GPA_HDR + STATUS_OFF;
	uint8_t want_status = VIRTIO_BLK_S_IOERR, got_status;
	uint32_t want_len = 1;
	struct vring_used_elem e;
	uint16_t head = 0;
	bool ok;

	set_hdr(0, VIRTIO_BLK_T_OUT, 0);
	switch (c) {
	case 0:		/* head index out of the table */
		head = P.num + 7;
		want_len = 0;
		want_status = 0xff;
		break;
	case 1:		/* next index out of the table */
		set_desc(0, hdr, 16, N, P.num + 3);
		want_len = 0;
		want_status = 0xff;
		break;
	case 2:		/* a loop of two descriptors */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_WBUF, 512, N, 0);
		want_len = 0;
		want_status = 0xff;
		break;
	case 3:		/* a descriptor pointing at itself */
		set_desc(0, hdr, 16, N, 0);
		want_len = 0;
		want_status = 0xff;
		break;
	case 4:		/* data address + length wraps */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, ~0ull - 0xfff, 0x2000, N, 2);
		set_desc(2, st, 1, W, 0);
		break;
	case 5:		/* write data in a hole */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_HOLE, 512, N, 2);
		set_desc(2, st, 1, W, 0);
		break;
	case 6:		/* read data into read-only memory */
		set_hdr(0, VIRTIO_BLK_T_IN, 0);
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_RO, 512, W | N, 2);
		set_desc(2, st, 1, W, 0);
		break;
	case 7:		/* header in a hole */
		set_desc(0, GPA_HOLE + 64, 16, N, 1);
		set_desc(1, st, 1, W, 0);
		break;
	case 8:		/* read beyond the end of the disk */
		set_hdr(0, VIRTIO_BLK_T_IN, P.disk_sectors - 1);
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_RBUF, 1024, W | N, 2);
		set_desc(2, st, 1, W, 0);
		break;
	case 9:		/* data not a whole number of sectors */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_WBUF, 700, N, 2);
		set_desc(2, st, 1, W, 0);
		break;
	case 10:	/* readable part shorter than a header */
		set_desc(0, hdr, 8, N, 1);
		set_desc(1, st, 1, W, 0);
		break;
	case 11:	/* readable descriptor after a writable one */
		set_desc(0, st, 1, W | N, 1);
		set_desc(1, hdr, 16, 0, 0);
		break;
	case 12:	/* unknown request type */
		set_hdr(0, 99, 0);
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, st, 1, W, 0);
		want_status = VIRTIO_BLK_S_UNSUPP;
		break;
	case 13:	/* indirect descriptor (not offered) */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_WBUF, 512, VRING_DESC_F_INDIRECT | N, 2);
		set_desc(2, st, 1, W, 0);
		break;
	case 14:	/* status byte in read-only memory */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_WBUF, 512, N, 2);
		set_desc(2, GPA_RO + 100, 1, W, 0);
		want_len = 0;
		want_status = 0xff;
		break;
	case 15:	/* status descriptor wraps */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, ~0ull - 0xff, 0x200, W, 0);
		want_len = 0;
		want_status = 0xff;
		break;
	case 16:	/* huge data length */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_WBUF, 0xfffffe00u, N, 2);
		set_desc(2, st, 1, W, 0);
		break;
	case 17:	/* no writable descriptor at all */
		set_desc(0, hdr, 16, N, 1);
		set_desc(1, GPA_WBUF, 512, 0, 0);
		want_len = 0;
		want_status = 0xff;
		break;
	}
	post(head);
	kick();
	if (!get_used(&e, P.timeout_ms)) {
		R.timeouts++;
		return;
	}
	got_status = *g_status(0);
	ok = e.id == head && e.len == want_len && got_status == want_status;
	/* Read-only memory stays as the VMM filled it. */
	if (c == 6 || c == 14)
		ok = ok && *(uint8_t *)GV(GPA_RO) == RO_BYTE &&
		     *(uint8_t *)GV(GPA_RO + 100) == RO_BYTE;
	R.case_ok[c] = ok;
	R.case_got[c] = (uint64_t)e.len << 8 | got_status;
}

/* How a request of a batch that may meet injected faults ended. */
enum { FB_PENDING, FB_OK, FB_IOERR, FB_NOSTATUS, FB_BAD };

/*
 * Collect the @n completions of slots [0, n) of a batch the device may
 * fail in part.  Each request completes exactly once: done (used length
 * @want_len, status VIRTIO_BLK_S_OK), failed (used length 1, status
 * VIRTIO_BLK_S_IOERR) or, when not even its status byte could be written,
 * with a used length of 0 and the status byte as the driver left it.
 * Anything else is counted in R.fault_bad.  False on timeout.
 */
static bool collect_faulted(unsigned int n, uint32_t want_len, uint8_t *out)
{
	struct vring_used_elem e;
	unsigned int i, slot;
	uint8_t st;

	for (i = 0; i < n; i++)
		out[i] = FB_PENDING;
	for (i = 0; i < n; i++) {
		if (!get_used(&e, P.timeout_ms)) {
			R.timeouts++;
			return false;
		}
		slot = e.id / DESC_PER_SLOT;
		if (e.id % DESC_PER_SLOT || slot >= n || out[slot] != FB_PENDING) {
			R.fault_bad++;
			continue;
		}
		st = *g_status(slot);
		if (e.len == want_len && st == VIRTIO_BLK_S_OK) {
			out[slot] = FB_OK;
			R.fault_ok++;
		} else if (e.len == 1 && st == VIRTIO_BLK_S_IOERR) {
			out[slot] = FB_IOERR;
			R.fault_ioerr++;
		} else if (!e.len && st == 0xff) {
			out[slot] = FB_NOSTATUS;
			R.fault_nostatus++;
		} else {
			out[slot] = FB_BAD;
			R.fault_bad++;
		}
	}
	return true;
}

/*
 * @n writes, then @n reads of the same sectors, while the VMM has armed a
 * fault in the kthread.  The data of a read is checked, every byte, when
 * both it and the write before it were done; a failed write leaves its
 * sectors undefined.
 */
static void g_fault_batch(uint64_t n)
{
	uint64_t spr = P.req_size / SECTOR, words = P.req_size / 8;
	uint8_t wr[FAULT_PAIRS], rd[FAULT_PAIRS];
	unsigned int k;

	R.fault_ok = 0;
	R.fault_ioerr = 0;
	R.fault_nostatus = 0;
	R.fault_bad = 0;
	R.fault_bad_bytes = 0;
	if (n > FAULT_PAIRS || n > P.depth) {
		R.fault_bad++;
		return;
	}
	g_post_batch(n, true, true);
	if (!collect_faulted(n, 1, wr))
		return;
	g_post_batch(n, false, true);
	if (!collect_faulted(n, P.req_size + 1, rd))
		return;
	for (k = 0; k < n; k++)
		if (wr[k] == FB_OK && rd[k] == FB_OK)
			R.fault_bad_bytes +=
				verify(GV(GPA_RBUF + k * P.req_size),
				       cursor + k * spr, words);
	cursor = (cursor + P.depth * spr) % P.disk_sectors;
}

/* A garbage available index: no completion; then the ring works again. */
static void g_bad_index(void)
{
	struct vring_avail *a = g_avail();
	struct vring_used_elem e;

	WRITE_ONCE(a->idx, avail_idx + P.num + 5);
	kick();
	R.completed = get_used(&e, 200);
	WRITE_ONCE(a->idx, avail_idx);
}

static void guest_code(void)
{
	struct vring_used_elem e;

	for (;;) {
		GUEST_SYNC(0);
		switch (READ_ONCE(C.op)) {
		case G_TRAFFIC:
			g_traffic(C.arg, true);
			break;
		case G_BENCH:
			g_traffic(C.arg, false);
			break;
		case G_MALFORMED:
			g_bad_case(C.arg);
			break;
		case G_BAD_INDEX:
			g_bad_index();
			break;
		case G_POST_NOWAIT:
			/* Post a write; see whether it completes within arg ms. */
			fill(GV(GPA_WBUF), 0, P.req_size / 8);
			post_req(0, VIRTIO_BLK_T_OUT, 0, GPA_WBUF);
			kick();
			R.completed = READ_ONCE(g_used()->idx) != used_seen;
			if (!R.completed) {
				uint64_t t0 = rdtsc();

				while (rdtsc() - t0 < C.arg * P.tsc_per_ms)
					cpu_relax();
				R.completed = READ_ONCE(g_used()->idx) != used_seen;
			}
			break;
		case G_WAIT_ONE:
			kick();
			R.completed = get_used(&e, P.timeout_ms) && e.id == 0 &&
				      e.len == 1 && *g_status(0) == VIRTIO_BLK_S_OK;
			break;
		case G_FAULT_BATCH:
			g_fault_batch(C.arg);
			break;
		}
	}
}

/* ---- the VMM ---- */

struct opts {
	uint64_t requests, req_size, num;
	bool poll, sg;
	uint32_t worker;	/* XI_VBLK_WORKER_* */
};

static const char * const worker_name[] = {
	[XI_VBLK_WORKER_KTHREAD_SCOPE] = "kthread-scope",
	[XI_VBLK_WORKER_KTHREAD] = "kthread",
	[XI_VBLK_WORKER_VMM_TASK] = "vmm-task",
};

#define NR_WORKERS	3

/* What -T adds to the names of its cases: nothing for the default worker. */
static const char *wtag(uint32_t worker)
{
	static char tag[NR_WORKERS][32];

	if (worker == XI_VBLK_WORKER_KTHREAD_SCOPE)
		return "";
	snprintf(tag[worker], sizeof(tag[worker]), " [%s]", worker_name[worker]);
	return tag[worker];
}

struct vmm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int dev, kick, call;
	struct xi_vblk_config cfg;
	uint64_t buf_pages;
};

/* One TAP result through kselftest.h, which counts and ends the plan. */
static __printf(2, 3) void tap(int ok, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ksft_test_result(ok, "%s\n", msg);
	fflush(stdout);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int dev_open(void)
{
	int fd = open("/dev/xi_vblk", O_RDWR);

	if (fd < 0)
		ksft_exit_skip("/dev/xi_vblk: %s (load xi_vblk.ko)\n",
			       strerror(errno));
	return fd;
}

static struct xi_vblk_stats dev_stats(int dev)
{
	struct xi_vblk_stats s;

	TEST_ASSERT(!ioctl(dev, XI_VBLK_GET_STATS, &s), "XI_VBLK_GET_STATS");
	return s;
}

static int dev_start(int dev, struct xi_vblk_config *cfg)
{
	return ioctl(dev, XI_VBLK_START, cfg) ? -errno : 0;
}

/* Run one guest command; the results are in R. */
static void guest_exec(struct vmm *m, uint64_t op, uint64_t arg)
{
	struct ucall uc;

	C = (struct gcmd){ op, arg };
	sync_global_to_guest(m->vm, C);
	for (;;) {
		vcpu_run(m->vcpu);
		/* Without an ioeventfd (polling) the kick comes here. */
		if (m->vcpu->run->exit_reason == KVM_EXIT_IO &&
		    m->vcpu->run->io.port == KICK_PORT)
			continue;
		break;
	}
	switch (get_ucall(m->vcpu, &uc)) {
	case UCALL_SYNC:
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected exit %d", m->vcpu->run->exit_reason);
	}
	sync_global_from_guest(m->vm, R);
}

static void map_region(struct kvm_vm *vm, uint64_t gpa, int slot,
		       uint64_t pages, uint32_t flags)
{
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, gpa, slot, pages,
				    flags);
	virt_map(vm, gpa + GVA_OFF, gpa, pages);
}

/* Build the VM and the guest's view of the queue; does not start the device. */
static void vmm_create(struct vmm *m, const struct opts *o)
{
	uint64_t depth = o->num / DESC_PER_SLOT, bufs, avail_end, tsc_khz;

	if (depth * o->req_size > MAX_BUF_BYTES)
		depth = MAX_BUF_BYTES / o->req_size;
	TEST_ASSERT(depth >= 1, "queue too small for the request size");
	bufs = (depth * o->req_size + PG - 1) / PG + SPARE_PAGES;
	m->buf_pages = bufs;

	m->vm = __vm_create_with_one_vcpu(&m->vcpu, 2 * bufs / 512 + 64,
					  guest_code);
	map_region(m->vm, GPA_RING, SLOT_RING, PAGES_RING, 0);
	map_region(m->vm, GPA_HDR, SLOT_HDR, PAGES_HDR, 0);
	map_region(m->vm, GPA_RO, SLOT_RO, PAGES_RO, KVM_MEM_READONLY);
	memset(addr_gpa2hva(m->vm, GPA_RO), RO_BYTE, PAGES_RO * PG);
	map_region(m->vm, GPA_WBUF, SLOT_WBUF, bufs, 0);
	map_region(m->vm, GPA_RBUF, SLOT_RBUF, bufs, 0);

	/* The legacy layout: descriptors, available ring, used ring aligned. */
	avail_end = GPA_RING + 16 * o->num + 6 + 2 * o->num;
	P = (struct gparams){
		.num = o->num,
		.depth = depth,
		.req_size = o->req_size,
		.disk_sectors = depth * (o->req_size / SECTOR) * 4,
		.desc_gpa = GPA_RING,
		.avail_gpa = GPA_RING + 16 * o->num,
		.used_gpa = (avail_end + PG - 1) & ~(PG - 1),
		.timeout_ms = 20000,
		.kick = !o->poll,
		.split = o->req_size >= 1024 && o->sg,
	};
	tsc_khz = __vcpu_ioctl(m->vcpu, KVM_GET_TSC_KHZ, NULL);
	P.tsc_per_ms = (int64_t)tsc_khz > 0 ? tsc_khz : 1000000;
	sync_global_to_guest(m->vm, P);

	m->kick = -1;
	m->call = eventfd(0, EFD_NONBLOCK);
	TEST_ASSERT(m->call >= 0, "eventfd");
	if (!o->poll) {
		struct kvm_ioeventfd ioev = {
			.addr = KICK_PORT,
			.len = 2,
			.flags = KVM_IOEVENTFD_FLAG_PIO,
		};

		m->kick = eventfd(0, EFD_NONBLOCK);
		TEST_ASSERT(m->kick >= 0, "eventfd");
		ioev.fd = m->kick;
		vm_ioctl(m->vm, KVM_IOEVENTFD, &ioev);
	}
	m->cfg = (struct xi_vblk_config){
		.vm_fd = m->vm->fd,
		.kick_fd = m->kick,
		.call_fd = m->call,
		.num = o->num,
		.desc_gpa = P.desc_gpa,
		.avail_gpa = P.avail_gpa,
		.used_gpa = P.used_gpa,
		.sectors = P.disk_sectors,
		.flags = o->sg ? XI_VBLK_F_SG : 0,
		.worker = o->worker,
	};
	/* To the guest's first GUEST_SYNC. */
	guest_exec(m, 0, 0);
}

static void vmm_destroy(struct vmm *m)
{
	if (m->kick >= 0)
		close(m->kick);
	close(m->call);
	kvm_vm_free(m->vm);
}

static uint64_t call_count(struct vmm *m)
{
	uint64_t v = 0;

	if (read(m->call, &v, sizeof(v)) != sizeof(v))
		v = 0;
	return v;
}

static uint64_t guest_errors(void)
{
	return R.bad_bytes + R.bad_status + R.bad_used + R.timeouts;
}

/* ---- the worker ---- */

static int cg_read(const char *dir, const char *file, char *buf, size_t size);
static bool wait_for(bool (*cond)(void *), void *arg, double secs);

/*
 * The device's VMM thread (XI_VBLK_WORKER_VMM_TASK), named after the thread
 * that started it, among this process's threads: its tid, or 0.
 */
static pid_t worker_thread(void)
{
	char want[32], dir[300], buf[32];
	struct dirent *d;
	pid_t tid = 0;
	DIR *task;

	snprintf(want, sizeof(want), "xi_vblk/%d", gettid());
	task = opendir("/proc/self/task");
	TEST_ASSERT(task, "opendir /proc/self/task");
	while ((d = readdir(task))) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "/proc/self/task/%s", d->d_name);
		if (cg_read(dir, "comm", buf, sizeof(buf)))
			continue;	/* gone meanwhile */
		buf[strcspn(buf, "\n")] = 0;
		if (!strcmp(buf, want))
			tid = atoi(d->d_name);
	}
	closedir(task);
	return tid;
}

/* CPU time (ns) of a thread of this process, from schedstat; -1: unknown. */
static int64_t thread_runtime(pid_t tid)
{
	char dir[64], buf[128];

	snprintf(dir, sizeof(dir), "/proc/self/task/%d", tid);
	if (cg_read(dir, "schedstat", buf, sizeof(buf)))
		return -1;
	return strtoll(buf, NULL, 10);
}

static bool no_worker_thread(void *arg)
{
	return !worker_thread();
}

/*
 * Do the device's counters show the mm path its worker promises?  Every
 * copy is counted by the path the API takes for it (current->mm compared
 * with the VM's), so this checks rather than assumes that the VMM thread
 * needs no mm switch and no scope.  Describes them in @why.
 */
static bool paths_ok(const struct xi_vblk_stats *s, uint32_t worker,
		     char *why, size_t size)
{
	bool ok = s->worker == worker && !s->copies_remote;

	snprintf(why, size,
		 "%s worker: %lu use_mm scopes for %lu batches; copies: %lu in the VM's mm, %lu switching mm, %lu remote",
		 worker_name[worker], (unsigned long)s->mm_scopes,
		 (unsigned long)s->batches, (unsigned long)s->copies_own_mm,
		 (unsigned long)s->copies_mm_switch,
		 (unsigned long)s->copies_remote);
	switch (worker) {
	case XI_VBLK_WORKER_KTHREAD_SCOPE:
		return ok && s->mm_scopes == s->batches && s->copies_own_mm &&
		       !s->copies_mm_switch;
	case XI_VBLK_WORKER_KTHREAD:
		return ok && !s->mm_scopes && !s->copies_own_mm &&
		       s->copies_mm_switch;
	case XI_VBLK_WORKER_VMM_TASK:
		return ok && !s->mm_scopes && s->copies_own_mm &&
		       !s->copies_mm_switch;
	}
	return false;
}

/*
 * Is the worker where its mode puts it?  The VMM thread is a thread of
 * this process that has run (its CPU time is this process's); the
 * kthreads are not.
 */
static bool where_ok(uint32_t worker, char *why, size_t size)
{
	pid_t tid = worker_thread();
	int64_t rt = tid ? thread_runtime(tid) : -1;

	if (worker != XI_VBLK_WORKER_VMM_TASK) {
		snprintf(why, size, "no thread of the VMM serves it (%d)", tid);
		return !tid;
	}
	snprintf(why, size,
		 "served by thread %d of the VMM, xi_vblk/%d, %ld us of CPU time charged to the VMM",
		 tid, gettid(), (long)(rt / 1000));
	return tid && rt > 0;
}

/* ---- make run: one run, a readable report ---- */

static int run_report(const struct opts *o)
{
	struct xi_vblk_stats s;
	struct vmm m = {};
	double t0, t;
	uint64_t calls;
	int ret;

	m.dev = dev_open();
	vmm_create(&m, o);
	ret = dev_start(m.dev, &m.cfg);
	TEST_ASSERT(!ret, "XI_VBLK_START: %s", strerror(-ret));

	t0 = now();
	guest_exec(&m, G_TRAFFIC, o->requests);
	t = now() - t0;
	s = dev_stats(m.dev);
	calls = call_count(&m);

	printf("xi_vblk: a RAM disk served to a KVM guest by a %s through kvm_xinterface\n",
	       o->worker == XI_VBLK_WORKER_VMM_TASK ? "thread of the VMM" : "kthread");
	printf("  queue           %lu entries, %lu requests in flight, %lu-byte requests,",
	       o->num, P.depth, o->req_size);
	printf(" %lu KiB disk\n", P.disk_sectors * SECTOR / 1024);
	printf("  notification    kick: %s, completion: call eventfd + guest polls the used ring\n",
	       o->poll ? "none (kthread polls every tick)" : "KVM_IOEVENTFD");
	printf("  data path       %s\n", o->sg ? "kvm_xinterface_sg (pinned scatterlist)" :
	       "kvm_xinterface_copyv with a kvm_xcache; ring through kvm_xvmap");
	printf("  requests        %lu served by the device, %lu completed in the guest",
	       (unsigned long)s.requests, R.requests);
	printf(" (%lu writes, %lu reads)\n", R.writes, R.reads);
	printf("  bytes moved     %lu (%.1f MiB guest->disk, %.1f MiB disk->guest)\n",
	       (unsigned long)(s.bytes_written + s.bytes_read),
	       s.bytes_written / 1048576.0, s.bytes_read / 1048576.0);
	printf("  guest errors    %lu (bad data bytes %lu, bad status %lu,",
	       guest_errors(), R.bad_bytes, R.bad_status);
	printf(" bad used entries %lu, timeouts %lu)\n", R.bad_used, R.timeouts);
	printf("  bad requests    %lu (the device's count of malformed requests)\n",
	       (unsigned long)s.bad_requests);
	printf("  time            %.3f s\n", t);
	printf("  throughput      %.0f requests/s, %.2f MiB/s\n",
	       R.requests / t, R.bytes / t / 1048576.0);
	printf("  worker          %s: %lu use_mm scopes; copies %lu in the VM's mm,",
	       worker_name[o->worker], (unsigned long)s.mm_scopes,
	       (unsigned long)s.copies_own_mm);
	printf(" %lu switching mm, %lu remote\n",
	       (unsigned long)s.copies_mm_switch, (unsigned long)s.copies_remote);
	printf("  wakeups         %lu wakeups, %lu batches, %lu calls (VMM read %lu),",
	       (unsigned long)s.wakeups, (unsigned long)s.batches,
	       (unsigned long)s.calls, calls);
	printf(" %lu ring refreshes\n", (unsigned long)s.ring_refreshes);
	printf("  xcache          %lu hits, %lu misses\n",
	       (unsigned long)s.cache_hits, (unsigned long)s.cache_misses);

	tap(R.requests == o->requests && guest_errors() == 0,
	    "guest: %lu requests completed, every byte checked, 0 errors expected (%lu)",
	    R.requests, guest_errors());
	tap(s.requests == R.requests && s.bad_requests == 0 &&
	    s.bytes_read + s.bytes_written == R.bytes,
	    "device: %lu requests, %lu bytes, %lu bad",
	    (unsigned long)s.requests,
	    (unsigned long)(s.bytes_read + s.bytes_written),
	    (unsigned long)s.bad_requests);
	tap(!ioctl(m.dev, XI_VBLK_STOP) && dev_stats(m.dev).state == XI_VBLK_IDLE,
	    "device: XI_VBLK_STOP stops the worker and drops the VM");
	close(m.dev);
	vmm_destroy(&m);
	ksft_set_plan(ksft_test_num());	/* the plan comes last */
	ksft_finished();
}

/* ---- the kselftest ---- */

static const char * const bad_case_name[NR_BAD_CASES] = {
	"head index out of the table",
	"next index out of the table",
	"loop of two descriptors",
	"descriptor chained to itself",
	"data address + length wraps",
	"write data in a hole",
	"read data into a read-only memslot",
	"header in a hole",
	"read beyond the end of the disk",
	"data not a whole number of sectors",
	"readable part shorter than the header",
	"readable descriptor after a writable one",
	"unknown request type",
	"indirect descriptor",
	"status byte in a read-only memslot",
	"status descriptor wraps",
	"4 GiB data length",
	"no writable descriptor",
};

static void test_traffic(const char *name, struct opts o)
{
	char what[64], why[256];
	struct xi_vblk_stats s;
	struct vmm m = {};
	uint64_t calls;
	int ret;

	snprintf(what, sizeof(what), "%s%s", name, wtag(o.worker));
	m.dev = dev_open();
	vmm_create(&m, &o);
	ret = dev_start(m.dev, &m.cfg);
	tap(!ret, "%s: XI_VBLK_START (%s)", what, strerror(-ret));
	if (ret)
		goto out;
	guest_exec(&m, G_TRAFFIC, o.requests);
	s = dev_stats(m.dev);
	calls = call_count(&m);
	tap(R.requests == o.requests && !guest_errors(),
	    "%s: guest wrote and read back %lu requests of %lu bytes, %lu errors",
	    what, R.requests, o.req_size, guest_errors());
	tap(s.requests == R.requests && !s.bad_requests &&
	    s.bytes_read + s.bytes_written == R.bytes && calls == s.calls &&
	    (o.poll || s.calls > 0),
	    "%s: device counted %lu requests, %lu bytes, %lu calls (VMM read %lu), %lu cache hits, %lu misses",
	    what, (unsigned long)s.requests,
	    (unsigned long)(s.bytes_read + s.bytes_written),
	    (unsigned long)s.calls, calls, (unsigned long)s.cache_hits,
	    (unsigned long)s.cache_misses);
	tap(paths_ok(&s, o.worker, why, sizeof(why)), "%s: %s", what, why);
	tap(where_ok(o.worker, why, sizeof(why)), "%s: %s", what, why);
	tap(!ioctl(m.dev, XI_VBLK_STOP) &&
	    dev_stats(m.dev).state == XI_VBLK_IDLE &&
	    wait_for(no_worker_thread, NULL, 5),
	    "%s: XI_VBLK_STOP stops the worker", what);
out:
	close(m.dev);
	vmm_destroy(&m);
}

/*
 * XI_VBLK_START from a forked child, which holds the VM fd and the device
 * but not the VM's mm: its errno.
 */
static int start_not_owner(int dev, struct xi_vblk_config *c)
{
	int st, ret;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid)
		_exit(-dev_start(dev, c));
	TEST_ASSERT(waitpid(pid, &st, 0) == pid && WIFEXITED(st), "child");
	ret = -WEXITSTATUS(st);
	/* It must not have started a queue that the parent would then see. */
	if (!ret)
		ioctl(dev, XI_VBLK_STOP);
	return ret;
}

static void test_start_errors(void)
{
	struct opts o = { .requests = 0, .req_size = 4096, .num = 64 };
	struct xi_vblk_config c;
	struct vmm m = {};
	int nul = open("/dev/null", O_RDWR);

	m.dev = dev_open();
	vmm_create(&m, &o);
	c = m.cfg;
	c.vm_fd = -1;
	tap(dev_start(m.dev, &c) == -EBADF, "start: VM fd -1 gives EBADF");
	c.vm_fd = nul;
	tap(dev_start(m.dev, &c) == -EINVAL, "start: /dev/null as VM gives EINVAL");
	c = m.cfg;
	c.num = 48;
	tap(dev_start(m.dev, &c) == -EINVAL, "start: queue size not a power of 2 gives EINVAL");
	c = m.cfg;
	c.desc_gpa = GPA_HOLE;
	c.avail_gpa = GPA_HOLE + 0x1000;
	c.used_gpa = GPA_HOLE + 0x2000;
	tap(dev_start(m.dev, &c) == -ENXIO, "start: ring in a hole gives ENXIO");
	c = m.cfg;
	c.used_gpa = GPA_RING + (4ul << 20);
	tap(dev_start(m.dev, &c) == -E2BIG, "start: ring parts 4 MiB apart give E2BIG");
	c = m.cfg;
	c.kick_fd = nul;
	tap(dev_start(m.dev, &c) == -EINVAL, "start: kick fd not an eventfd gives EINVAL");
	c = m.cfg;
	c.worker = NR_WORKERS;
	tap(dev_start(m.dev, &c) == -EINVAL, "start: unknown worker gives EINVAL");
	c = m.cfg;
	c.worker = XI_VBLK_WORKER_VMM_TASK;
	tap(start_not_owner(m.dev, &c) == -EIO,
	    "start: vmm-task worker from a process that does not own the VM gives EIO");
	tap(ioctl(m.dev, XI_VBLK_STOP) == -1 && errno == ENOTCONN,
	    "stop: not started gives ENOTCONN");
	tap(dev_start(m.dev, &m.cfg) == 0, "start: good configuration");
	tap(dev_start(m.dev, &m.cfg) == -EBUSY, "start: second start gives EBUSY");
	close(nul);
	close(m.dev);
	vmm_destroy(&m);
}

static void test_malformed(uint32_t worker)
{
	struct opts o = { .requests = 64, .req_size = 4096, .num = 64,
			  .worker = worker };
	const char *w = wtag(worker);
	struct xi_vblk_stats s;
	struct vmm m = {};
	unsigned int c, bad = 0;

	m.dev = dev_open();
	vmm_create(&m, &o);
	TEST_ASSERT(!dev_start(m.dev, &m.cfg), "start");
	for (c = 0; c < NR_BAD_CASES; c++) {
		guest_exec(&m, G_MALFORMED, c);
		tap(R.case_ok[c] && !R.timeouts,
		    "malformed%s: %s: rejected alone (used len %lu, status %#lx)",
		    w, bad_case_name[c], R.case_got[c] >> 8,
		    R.case_got[c] & 0xff);
		bad++;
	}
	guest_exec(&m, G_TRAFFIC, o.requests);
	tap(!guest_errors() && R.requests == o.requests,
	    "malformed%s: the device goes on serving: %lu requests, every byte right",
	    w, R.requests);
	guest_exec(&m, G_BAD_INDEX, 0);
	tap(!R.completed, "malformed%s: garbage available index completes nothing",
	    w);
	guest_exec(&m, G_TRAFFIC, o.requests);
	s = dev_stats(m.dev);
	tap(!guest_errors() && R.requests == 2 * o.requests && s.ring_errors >= 1,
	    "malformed%s: after a garbage index the ring works again (%lu ring errors)",
	    w, (unsigned long)s.ring_errors);
	tap(s.bad_requests == bad && s.requests == R.requests + bad &&
	    s.state == XI_VBLK_RUNNING,
	    "malformed%s: device counted %lu bad requests of %lu (want %u), still running",
	    w, (unsigned long)s.bad_requests, (unsigned long)s.requests, bad);
	close(m.dev);
	vmm_destroy(&m);
}

static void test_stop_restart(uint32_t worker)
{
	struct opts o = { .requests = 32, .req_size = 4096, .num = 64,
			  .worker = worker };
	const char *w = wtag(worker);
	struct vmm m = {};

	m.dev = dev_open();
	vmm_create(&m, &o);
	TEST_ASSERT(!dev_start(m.dev, &m.cfg), "start");
	guest_exec(&m, G_TRAFFIC, o.requests);
	tap(!ioctl(m.dev, XI_VBLK_STOP) && dev_stats(m.dev).state == XI_VBLK_IDLE,
	    "stop ioctl%s: worker stopped (state idle)", w);
	guest_exec(&m, G_POST_NOWAIT, 300);
	tap(!R.completed, "stop ioctl%s: a request posted after stop is not served",
	    w);
	tap(!dev_start(m.dev, &m.cfg), "stop ioctl%s: start again", w);
	guest_exec(&m, G_WAIT_ONE, 0);
	tap(R.completed, "stop ioctl%s: the pending request is served after restart",
	    w);
	guest_exec(&m, G_TRAFFIC, o.requests);
	tap(!guest_errors() && R.requests == 2 * o.requests,
	    "stop ioctl%s: data written before the stop reads back after restart (%lu errors)",
	    w, guest_errors());
	close(m.dev);
	vmm_destroy(&m);
}

/* ---- memslot churn and dirty logging mid-traffic ---- */

struct churn {
	struct kvm_vm *vm;
	void *back;
	struct kvm_userspace_memory_region log[2];
	int stop, logging;
	unsigned long changes;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	struct kvm_userspace_memory_region r = {
		.slot = SLOT_CHURN,
		.guest_phys_addr = GPA_CHURN,
		.userspace_addr = (uintptr_t)c->back,
	};
	int i;

	while (!READ_ONCE(c->stop)) {
		r.memory_size = c->changes & 1 ? 0 : PAGES_CHURN * PG;
		vm_ioctl(c->vm, KVM_SET_USER_MEMORY_REGION, &r);
		c->changes++;
		/* Dirty logging goes on in the middle of the traffic. */
		if (c->changes == 20) {
			for (i = 0; i < 2; i++) {
				c->log[i].flags |= KVM_MEM_LOG_DIRTY_PAGES;
				vm_ioctl(c->vm, KVM_SET_USER_MEMORY_REGION,
					 &c->log[i]);
			}
			WRITE_ONCE(c->logging, 1);
		}
		usleep(2000);
	}
	if (c->changes & 1) {
		r.memory_size = 0;
		vm_ioctl(c->vm, KVM_SET_USER_MEMORY_REGION, &r);
	}
	return NULL;
}

static bool test_bit_ul(const unsigned long *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static void test_churn_dirty(void)
{
	struct opts o = { .requests = 4096, .req_size = 4096, .num = 64 };
	uint64_t used_page, pages, want, set, stray;
	struct churn c = {};
	struct xi_vblk_stats s0, s;
	unsigned long *bm;
	struct vmm m = {};
	pthread_t th;
	uint64_t i;

	m.dev = dev_open();
	vmm_create(&m, &o);
	TEST_ASSERT(!dev_start(m.dev, &m.cfg), "start");
	c.vm = m.vm;
	c.back = mmap(NULL, PAGES_CHURN * PG, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(c.back != MAP_FAILED, "mmap");
	c.log[0] = (struct kvm_userspace_memory_region){
		.slot = SLOT_RBUF, .guest_phys_addr = GPA_RBUF,
		.memory_size = m.buf_pages * PG,
		.userspace_addr = (uintptr_t)addr_gpa2hva(m.vm, GPA_RBUF),
	};
	c.log[1] = (struct kvm_userspace_memory_region){
		.slot = SLOT_RING, .guest_phys_addr = GPA_RING,
		.memory_size = PAGES_RING * PG,
		.userspace_addr = (uintptr_t)addr_gpa2hva(m.vm, GPA_RING),
	};

	s0 = dev_stats(m.dev);
	pthread_create(&th, NULL, churn_thread, &c);
	/* Traffic until the churn has run and logging is on, then more. */
	do {
		guest_exec(&m, G_TRAFFIC, o.requests / 8);
	} while (!READ_ONCE(c.logging) && !guest_errors() && R.requests < 100000);
	guest_exec(&m, G_TRAFFIC, o.requests / 8);
	WRITE_ONCE(c.stop, 1);
	pthread_join(th, NULL);
	s = dev_stats(m.dev);
	tap(!guest_errors() && c.logging && c.changes > 20 &&
	    s.state == XI_VBLK_RUNNING,
	    "memslot churn: %lu requests, every byte right across %lu memslot changes (cache misses %lu, ring refreshes %lu)",
	    R.requests, c.changes,
	    (unsigned long)(s.cache_misses - s0.cache_misses),
	    (unsigned long)s.ring_refreshes);

	/* Now with logging on: only the device writes the read buffers. */
	pages = m.buf_pages;
	bm = calloc(pages / 64 + 1, sizeof(*bm));
	kvm_vm_get_dirty_log(m.vm, SLOT_RBUF, bm);
	kvm_vm_get_dirty_log(m.vm, SLOT_RING, bm);
	memset(bm, 0, (pages / 64 + 1) * sizeof(*bm));
	guest_exec(&m, G_TRAFFIC, 2 * P.depth);
	kvm_vm_get_dirty_log(m.vm, SLOT_RBUF, bm);
	want = (P.depth * o.req_size + PG - 1) / PG;
	for (i = 0, set = 0, stray = 0; i < pages; i++) {
		if (i < want)
			set += test_bit_ul(bm, i);
		else
			stray += test_bit_ul(bm, i);
	}
	tap(!guest_errors() && set == want && !stray,
	    "dirty log: the %lu pages the device wrote are dirty (%lu set, %lu stray)",
	    want, set, stray);
	memset(bm, 0, (pages / 64 + 1) * sizeof(*bm));
	kvm_vm_get_dirty_log(m.vm, SLOT_RING, bm);
	used_page = (P.used_gpa - GPA_RING) / PG;
	tap(test_bit_ul(bm, used_page),
	    "dirty log: the used ring page (written through the kvm_xvmap) is dirty");
	free(bm);
	munmap(c.back, PAGES_CHURN * PG);
	close(m.dev);
	vmm_destroy(&m);
}

/* ---- memory cgroup accounting ---- */

#define CG2_MNT		"/sys/fs/cgroup"
#define MEMCG_DISK	(64ul << 20)	/* of the 256 MiB the device allows */
/* Pages a memcg keeps charged ahead per CPU (MEMCG_CHARGE_BATCH). */
#define MEMCG_STOCK	64

struct cg2 {
	char root[PATH_MAX];	/* where cgroup2 is mounted */
	char dir[PATH_MAX + 32];	/* the test's cgroup, under root */
	bool mounted;		/* by the test, which unmounts it */
	bool enabled;		/* +memory written by the test, undone */
	bool created;
};

/* Read the cgroup file @dir/@file into @buf; 0 or -errno. */
static int cg_read(const char *dir, const char *file, char *buf, size_t size)
{
	char path[PATH_MAX + 64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return n;
	buf[n] = 0;
	return 0;
}

/* Write @str to the cgroup file @dir/@file; 0 or -errno. */
static int cg_write(const char *dir, const char *file, const char *str)
{
	char path[PATH_MAX + 64];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, str, strlen(str)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* memory.current of @dir in bytes, or -1. */
static int64_t cg_memory_current(const char *dir)
{
	char buf[64];

	if (cg_read(dir, "memory.current", buf, sizeof(buf)))
		return -1;
	return strtoll(buf, NULL, 10);
}

/* Is @word one of the blank-separated words of @list? */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	const char *p;

	for (p = strstr(list, word); p; p = strstr(p + 1, word))
		if ((p == list || p[-1] == ' ') &&
		    (!p[n] || p[n] == ' ' || p[n] == '\n'))
			return true;
	return false;
}

static bool is_cgroup2(const char *path)
{
	struct statfs sfs;

	return !statfs(path, &sfs) && sfs.f_type == CGROUP2_SUPER_MAGIC;
}

/*
 * Find cgroup2 with the memory controller, mounting it at /sys/fs/cgroup
 * if nothing is mounted there (the test's initramfs mounts no cgroup).
 * False, with the reason in @why, when the kernel has none to offer.
 */
static bool cg2_mount(struct cg2 *cg, char *why, size_t size)
{
	const char *root = CG2_MNT;
	struct statfs sfs;
	char buf[512];

	/* systemd's hybrid layout: cgroup2 beside v1 hierarchies. */
	if (!is_cgroup2(root) && is_cgroup2(CG2_MNT "/unified"))
		root = CG2_MNT "/unified";
	if (!is_cgroup2(root)) {
		if (statfs(root, &sfs)) {
			snprintf(why, size, "no %s (CONFIG_CGROUPS off?): %s",
				 root, strerror(errno));
			return false;
		}
		/* Not over something else, such as v1's tmpfs. */
		if (sfs.f_type != SYSFS_MAGIC) {
			snprintf(why, size, "%s is not cgroup2 (fs type %#lx)",
				 root, (unsigned long)sfs.f_type);
			return false;
		}
		if (mount("cgroup2", root, "cgroup2", 0, NULL)) {
			snprintf(why, size, "cannot mount cgroup2 at %s: %s",
				 root, strerror(errno));
			return false;
		}
		cg->mounted = true;
	}
	snprintf(cg->root, sizeof(cg->root), "%s", root);
	if (cg_read(cg->root, "cgroup.controllers", buf, sizeof(buf)) ||
	    !has_word(buf, "memory")) {
		snprintf(why, size, "no memory controller in %s (CONFIG_MEMCG off?)",
			 cg->root);
		if (cg->mounted)
			umount(cg->root);
		cg->mounted = false;
		return false;
	}
	return true;
}

/* A child cgroup of the root with the memory controller; 0 or -errno. */
static int cg2_create(struct cg2 *cg)
{
	char buf[512];
	int ret;

	ret = cg_read(cg->root, "cgroup.subtree_control", buf, sizeof(buf));
	if (ret)
		return ret;
	if (!has_word(buf, "memory")) {
		ret = cg_write(cg->root, "cgroup.subtree_control", "+memory");
		if (ret)
			return ret;
		cg->enabled = true;
	}
	snprintf(cg->dir, sizeof(cg->dir), "%s/xi_vblk_memcg.%d", cg->root,
		 getpid());
	if (mkdir(cg->dir, 0755))
		return -errno;
	cg->created = true;
	return 0;
}

/* Undo cg2_mount() and cg2_create(); the cgroup must be empty. */
static int cg2_destroy(struct cg2 *cg)
{
	int ret = 0;

	if (cg->created && rmdir(cg->dir))
		ret = -errno;
	/* Best effort: put the hierarchy back as it was found. */
	if (cg->enabled)
		cg_write(cg->root, "cgroup.subtree_control", "-memory");
	if (cg->mounted)
		umount(cg->root);
	return ret;
}

/*
 * Parent and child step through the test over two pipes (the test kernel
 * has no sockets): @up carries the child's reports, @down the parent's go.
 */
struct steps {
	int up[2];
	int down[2];
};

/* The child's side of a step: report @val, wait for the parent's go. */
static void child_step(struct steps *p, int val)
{
	char c;

	if (write(p->up[1], &val, sizeof(val)) != sizeof(val) ||
	    read(p->down[0], &c, 1) != 1)
		_exit(1);
}

/* The parent's side: the child's report, false if it died. */
static bool parent_wait(struct steps *p, int *val)
{
	return read(p->up[0], val, sizeof(*val)) == sizeof(*val);
}

/* SIGPIPE is ignored in the test: a dead child shows as a missing report. */
static void parent_go(struct steps *p)
{
	if (write(p->down[1], "g", 1) != 1)
		return;
}

/*
 * Child VMM of the memcg test: builds its VM before it is moved into the
 * cgroup, so only what the device allocates is charged there; then opens
 * /dev/xi_vblk and starts a queue with a MEMCG_DISK disk, then stops and
 * closes.  The parent measures between the steps.
 */
static void child_memcg(struct steps *sock)
{
	struct opts o = { .requests = 0, .req_size = 4096, .num = 256 };
	struct vmm m = {};
	int ret;

	vmm_create(&m, &o);
	m.cfg.sectors = MEMCG_DISK / SECTOR;
	child_step(sock, 0);
	/* Now in the test's cgroup. */
	m.dev = open("/dev/xi_vblk", O_RDWR);
	ret = m.dev < 0 ? -errno : dev_start(m.dev, &m.cfg);
	child_step(sock, ret);
	if (m.dev >= 0) {
		ret = ioctl(m.dev, XI_VBLK_STOP) ? -errno : 0;
		/* The last reference: the device and its disk are freed. */
		close(m.dev);
	}
	child_step(sock, ret);
	_exit(0);
}

/*
 * The disk (vmalloc), the queue's arrays and the device are charged to the
 * memory cgroup of the VMM that opens and starts it, and uncharged when it
 * is closed.  Measured with memory.current of a cgroup that holds only the
 * child VMM.
 */
static void test_memcg(void)
{
	int64_t before = -1, started = -1, closed = -1, slack;
	struct steps sv;
	int val = 0, st = 0, ret;
	bool ok, started_ok = false;
	struct cg2 cg = {};
	char why[PATH_MAX + 128], pid_str[16];
	pid_t pid;

	if (!cg2_mount(&cg, why, sizeof(why))) {
		ksft_test_result_skip("memcg: %s\n", why);
		return;
	}
	ret = cg2_create(&cg);
	tap(!ret, "memcg: a child cgroup with the memory controller (%s)",
	    strerror(-ret));
	if (ret)
		goto out;

	TEST_ASSERT(!pipe(sv.up) && !pipe(sv.down), "pipe");
	signal(SIGPIPE, SIG_IGN);
	fflush(stdout);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		close(sv.up[0]);
		close(sv.down[1]);
		child_memcg(&sv);
	}
	close(sv.up[1]);
	close(sv.down[0]);

	/*
	 * A move into a cgroup takes no charges along, so @before holds
	 * nothing the child charged ahead on a CPU (memcg's per-CPU stock
	 * only ever adds to memory.current): the rise is at least what
	 * START allocated, the disk alone being MEMCG_DISK.
	 */
	ret = parent_wait(&sv, &val) ? val : -ECHILD;
	if (!ret) {
		snprintf(pid_str, sizeof(pid_str), "%d", pid);
		ret = cg_write(cg.dir, "cgroup.procs", pid_str);
	}
	tap(!ret, "memcg: child VMM moved into the cgroup (%s)", strerror(-ret));
	if (ret)
		goto reap;
	before = cg_memory_current(cg.dir);
	parent_go(&sv);

	ok = parent_wait(&sv, &val);
	started = cg_memory_current(cg.dir);
	started_ok = ok && !val;
	tap(started_ok, "memcg: XI_VBLK_START with a %lu MiB disk in the cgroup (%s)",
	    MEMCG_DISK >> 20, ok ? strerror(-val) : "the child died");
	tap(started_ok && before >= 0 && started - before >= (int64_t)MEMCG_DISK,
	    "memcg: the disk is charged to the VMM's cgroup: memory.current rose by %ld KiB for a %lu KiB disk",
	    (long)(started - before) / 1024, MEMCG_DISK / 1024);
	if (!ok)
		goto reap;
	parent_go(&sv);

	/*
	 * Uncharged pages go back to the per-CPU stock first, which is
	 * returned once it holds more than MEMCG_STOCK pages: up to that
	 * many per CPU may still show.
	 */
	ok = parent_wait(&sv, &val);
	closed = cg_memory_current(cg.dir);
	slack = MEMCG_STOCK * PG * sysconf(_SC_NPROCESSORS_CONF);
	tap(started_ok && ok && !val && closed >= 0 &&
	    started - closed >= (int64_t)MEMCG_DISK - slack,
	    "memcg: stop and close uncharge it: memory.current fell by %ld KiB (%s)",
	    (long)(started - closed) / 1024,
	    ok ? strerror(-val) : "the child died");
	if (ok)
		parent_go(&sv);
reap:
	/* A child still waiting for a go sees the pipe close and exits. */
	close(sv.up[0]);
	close(sv.down[1]);
	ok = waitpid(pid, &st, 0) == pid;
	ret = cg2_destroy(&cg);
	tap(ok && WIFEXITED(st) && !WEXITSTATUS(st) && !ret,
	    "memcg: child VMM exited (status %#x), cgroup removed (%s)", st,
	    strerror(-ret));
	return;
out:
	cg2_destroy(&cg);
}

/* ---- the VMM goes away mid-traffic ---- */

static long module_refcnt(const char *mod)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", mod);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static const char *vendor(void)
{
	return module_refcnt("kvm_amd") >= 0 ? "kvm_amd" : "kvm_intel";
}

/* Child VMM: traffic until killed.  @dev < 0: open its own device. */
static void child_vmm(int dev, bool close_vm_fd, uint32_t worker)
{
	struct opts o = { .requests = 1 << 30, .req_size = 4096, .num = 64,
			  .worker = worker };
	struct vmm m = {};

	m.dev = dev >= 0 ? dev : dev_open();
	vmm_create(&m, &o);
	if (dev_start(m.dev, &m.cfg))
		_exit(1);
	if (close_vm_fd)
		close(m.vm->fd);	/* the binding holds the VM */
	guest_exec(&m, G_TRAFFIC, o.requests);
	_exit(2);
}

static bool wait_for(bool (*cond)(void *), void *arg, double secs)
{
	double t0 = now();

	while (!cond(arg)) {
		if (now() - t0 > secs)
			return false;
		usleep(10000);
	}
	return true;
}

static bool dev_busy(void *arg)
{
	return dev_stats(*(int *)arg).requests >= 256;
}

static bool dev_dead(void *arg)
{
	return dev_stats(*(int *)arg).state == XI_VBLK_DEAD;
}

struct refs {
	long vendor, sample;
};

static bool refs_back(void *arg)
{
	struct refs *r = arg;

	return module_refcnt(vendor()) == r->vendor &&
	       module_refcnt("xi_vblk") == r->sample;
}

/*
 * No test here for a kick waking the kthread before XI_VBLK_START marked
 * the queue RUNNING, the kthread then stopping with ESRCH and START
 * overwriting its DEAD.  Binding requires the caller to own the VM, so the
 * VM's mm lives until START returns and the kthread cannot stop during it;
 * before that rule, the window was the few instructions between vfs_poll()
 * and the state store, which no timing from userspace hits on purpose.  A
 * test could only ever pass.
 */
/*
 * The kthreads see -ESRCH once the VMM's mm is gone; the VMM thread gets
 * the SIGKILL of its thread group and stops through vhost_task's
 * handle_kill.  Both end DEAD with ESRCH and free the VM.
 */
static void test_vmm_exit(uint32_t worker)
{
	const char *w = wtag(worker);
	struct xi_vblk_stats s;
	struct refs r;
	int dev, st;
	pid_t pid;
	bool ok;

	/* The device outlives the VMM: the worker stops by itself. */
	r.vendor = module_refcnt(vendor());
	dev = dev_open();
	fflush(stdout);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid)
		child_vmm(dev, false, worker);
	ok = wait_for(dev_busy, &dev, 60);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	tap(ok && WIFSIGNALED(st), "VMM exit%s: child VMM killed mid-traffic after %lu requests",
	    w, (unsigned long)dev_stats(dev).requests);
	ok = wait_for(dev_dead, &dev, 30);
	s = dev_stats(dev);
	tap(ok && s.error == ESRCH && s.worker == worker,
	    "VMM exit%s: the worker stopped by itself with ESRCH (state %u, error %u)",
	    w, s.state, s.error);
	r.sample = module_refcnt("xi_vblk");
	tap(wait_for(refs_back, &r, 30),
	    "VMM exit%s: the orphaned VM is freed (%s refcnt %ld)", w, vendor(),
	    module_refcnt(vendor()));
	tap(!ioctl(dev, XI_VBLK_STOP) && dev_stats(dev).state == XI_VBLK_IDLE,
	    "VMM exit%s: stop after the worker died", w);
	close(dev);

	/* The VMM owns the device and closed its VM fd: release stops all. */
	r.sample = module_refcnt("xi_vblk");
	fflush(stdout);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid)
		child_vmm(-1, true, worker);
	/* No handle on the device here: give the child time to serve. */
	sleep(3);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	tap(WIFSIGNALED(st) && wait_for(refs_back, &r, 30),
	    "VMM exit%s: VMM with closed VM fd killed; device released, VM freed (xi_vblk refcnt %ld, %s refcnt %ld)",
	    w, module_refcnt("xi_vblk"), vendor(), module_refcnt(vendor()));
}

/* ---- -B: the worker modes compared ---- */

#define BENCH_ROUNDS	8

/* Bench order: the three workers, cheapest switch last. */
static const uint32_t bench_order[NR_WORKERS] = {
	XI_VBLK_WORKER_KTHREAD, XI_VBLK_WORKER_KTHREAD_SCOPE,
	XI_VBLK_WORKER_VMM_TASK,
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000ull + t.tv_nsec;
}

/*
 * One VM and device per worker, all in this process (the VMM thread must
 * be started by the VM's owner); after a warm-up, BENCH_ROUNDS rounds in
 * which each VM serves its share in turn.  Only the guest's runs are
 * timed.
 */
static int run_bench(const struct opts *base)
{
	uint64_t ns[NR_WORKERS] = {}, done[NR_WORKERS] = {}, t0, per, want;
	struct xi_vblk_stats s;
	struct vmm m[NR_WORKERS] = {};
	struct gresult res[NR_WORKERS];
	struct opts o = *base;
	char why[256];
	int i, r, ret;

	per = (o.requests / BENCH_ROUNDS + 1) & ~1ull;
	for (i = 0; i < NR_WORKERS; i++) {
		o.worker = bench_order[i];
		m[i].dev = dev_open();
		vmm_create(&m[i], &o);
		ret = dev_start(m[i].dev, &m[i].cfg);
		TEST_ASSERT(!ret, "XI_VBLK_START (%s): %s",
			    worker_name[o.worker], strerror(-ret));
		/* Warm-up: the disk, the buffers and the caches. */
		guest_exec(&m[i], G_BENCH, 2 * P.depth);
		res[i] = R;
	}
	for (r = 0; r < BENCH_ROUNDS; r++) {
		for (i = 0; i < NR_WORKERS; i++) {
			t0 = now_ns();
			guest_exec(&m[i], G_BENCH, per);
			ns[i] += now_ns() - t0;
			done[i] += R.requests - res[i].requests;
			res[i] = R;
		}
	}
	for (i = 0; i < NR_WORKERS; i++) {
		uint32_t w = bench_order[i];

		s = dev_stats(m[i].dev);
		want = 2 * P.depth + BENCH_ROUNDS * per;
		tap(done[i] == BENCH_ROUNDS * per && !res[i].timeouts &&
		    !res[i].bad_status && !res[i].bad_used &&
		    s.requests == want && !s.bad_requests &&
		    paths_ok(&s, w, why, sizeof(why)),
		    "bench %s: %lu requests timed, %lu served in all; %s",
		    worker_name[w], done[i], (unsigned long)s.requests, why);
		printf("XI-SAMPLE-BENCH mode=%s reqs=%lu bytes=%lu ns=%lu",
		       worker_name[w], done[i], done[i] * o.req_size, ns[i]);
		printf(" reqs_per_s=%.1f ns_per_req=%.1f\n",
		       ns[i] ? done[i] * 1e9 / ns[i] : 0.0,
		       done[i] ? (double)ns[i] / done[i] : 0.0);
		fflush(stdout);
		ioctl(m[i].dev, XI_VBLK_STOP);
		close(m[i].dev);
		vmm_destroy(&m[i]);
	}
	ksft_set_plan(ksft_test_num());	/* the plan comes last */
	ksft_finished();
}

/* ---- fault injection: fail-nth sweeps of start, serve and stop ---- */

#define DEBUGFS		"/sys/kernel/debug"
/*
 * Points swept per operation, at most.  As in iommufd_fail_nth, the limit
 * only reflects how many allocation and user-copy sites the paths have
 * today (kmemleak doubles the slab ones): a sweep that reaches it needs a
 * bigger one, or loops.
 */
#define FAIL_NTH_MAX	200
/* How long a stopped kthread may take to leave /proc. */
#define KTHREAD_GONE_SECS	5

/*
 * The injection set up as iommufd_fail_nth does: allocations that may
 * sleep and highmem pages fail too, from order 0 on.  An injection prints
 * nothing: a verbose one dumps a stack, and a stack in the kernel log
 * fails the run.  Each value is written back after the sweeps.
 */
struct fault_knob {
	const char *file;	/* under DEBUGFS */
	const char *value;
	char saved[32];
	bool changed;
};

static struct fault_knob fault_knobs[] = {
	{ "failslab/verbose", "0" },
	{ "fail_page_alloc/verbose", "0" },
	{ "fail_usercopy/verbose", "0" },
	{ "failslab/ignore-gfp-wait", "N" },
	{ "fail_page_alloc/ignore-gfp-wait", "N" },
	{ "fail_page_alloc/ignore-gfp-highmem", "N" },
	{ "fail_page_alloc/min-order", "0" },
};

static bool fault_debugfs_mounted;

/* Undo fault_setup(), in reverse order. */
static void fault_restore(void)
{
	int i;

	for (i = ARRAY_SIZE(fault_knobs) - 1; i >= 0; i--) {
		struct fault_knob *k = &fault_knobs[i];

		if (k->changed && cg_write(DEBUGFS, k->file, k->saved))
			ksft_print_msg("fail-nth: cannot restore %s/%s to %s\n",
				       DEBUGFS, k->file, k->saved);
		k->changed = false;
	}
	if (fault_debugfs_mounted)
		umount(DEBUGFS);
	fault_debugfs_mounted = false;
}

/*
 * Configure every kind of injection the kernel has (a kind it lacks has
 * no directory in debugfs).  0, or -ENOENT when there is none at all, or
 * another -errno; @why says what.
 */
static int fault_setup(char *why, size_t size)
{
	unsigned int i, found = 0;
	char dir[64];
	struct statfs sfs;
	int ret;

	if (statfs(DEBUGFS, &sfs) || sfs.f_type != DEBUGFS_MAGIC) {
		if (mount("debugfs", DEBUGFS, "debugfs", 0, NULL)) {
			ret = -errno;
			snprintf(why, size, "cannot mount debugfs at %s: %s",
				 DEBUGFS, strerror(errno));
			return ret;
		}
		fault_debugfs_mounted = true;
	}
	for (i = 0; i < ARRAY_SIZE(fault_knobs); i++) {
		struct fault_knob *k = &fault_knobs[i];

		snprintf(dir, sizeof(dir), "%s/%.*s", DEBUGFS,
			 (int)strcspn(k->file, "/"), k->file);
		if (access(dir, F_OK))
			continue;
		ret = cg_read(DEBUGFS, k->file, k->saved, sizeof(k->saved));
		if (!ret) {
			k->saved[strcspn(k->saved, "\n")] = 0;
			ret = cg_write(DEBUGFS, k->file, k->value);
		}
		if (ret) {
			snprintf(why, size, "cannot set %s/%s to %s: %s",
				 DEBUGFS, k->file, k->value, strerror(-ret));
			fault_restore();
			return ret;
		}
		k->changed = true;
		found++;
	}
	if (!found) {
		snprintf(why, size,
			 "no failslab, fail_page_alloc or fail_usercopy in %s (FAILSLAB, FAIL_PAGE_ALLOC, FAULT_INJECTION_USERCOPY or FAULT_INJECTION_DEBUG_FS off?)",
			 DEBUGFS);
		fault_restore();
		return -ENOENT;
	}
	return 0;
}

/* Arm the fail-nth file @fd to fail the task's @n-th point; 0 disarms. */
static int nth_write(int fd, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	if (pwrite(fd, buf, len, 0) == len)
		return 0;
	/*
	 * Disarming our own task: the write's copy of "0" may be the armed
	 * point itself.  It failed, so nothing is armed now; say it again.
	 */
	if (!n && errno == EFAULT && pwrite(fd, buf, len, 0) == len)
		return 0;
	return -errno;
}

/*
 * Was the armed point reached?  The file reads 0 once the n-th point has
 * failed, the points still to go otherwise.  1, 0, or -errno.  Reading our
 * own file is a point too (the copy of the number to the buffer): when
 * that copy is the one that fails, the number was not 0.
 */
static int nth_fired(int fd)
{
	char buf[16];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n < 0)
		return errno == EFAULT ? 0 : -errno;
	buf[n] = 0;
	return strtoul(buf, NULL, 10) == 0;
}

/* How many tasks are called @comm; the pid of one of them in *@pid. */
static int tasks_named(const char *comm, pid_t *pid)
{
	char dir[32], buf[32], *end;
	struct dirent *d;
	int n = 0;
	DIR *proc;
	long p;

	proc = opendir("/proc");
	TEST_ASSERT(proc, "opendir /proc");
	while ((d = readdir(proc))) {
		p = strtol(d->d_name, &end, 10);
		if (*end || p <= 0)
			continue;
		snprintf(dir, sizeof(dir), "/proc/%ld", p);
		if (cg_read(dir, "comm", buf, sizeof(buf)))
			continue;	/* gone meanwhile */
		buf[strcspn(buf, "\n")] = 0;
		if (!strcmp(buf, comm)) {
			if (pid)
				*pid = p;
			n++;
		}
	}
	closedir(proc);
	return n;
}

/* A stopped kthread has left /proc (it exits after kthread_stop() returns). */
static bool kthread_gone(const char *comm)
{
	double t0 = now();

	while (tasks_named(comm, NULL)) {
		if (now() - t0 > KTHREAD_GONE_SECS)
			return false;
		usleep(10000);
	}
	return true;
}

/* Drop the VMM's pages of a guest range: the next access faults them in. */
static void zap(struct kvm_vm *vm, uint64_t gpa, size_t len)
{
	TEST_ASSERT(!madvise(addr_gpa2hva(vm, gpa), len, MADV_DONTNEED),
		    "MADV_DONTNEED");
}

/* One operation's sweep: the points reached, what they did, what broke. */
struct sweep {
	unsigned int points;	/* points injected (the n-th was reached) */
	unsigned int failed;	/* ... that made the operation fail */
	unsigned int absorbed;	/* ... that it survived unharmed */
	unsigned int nomem, fault;	/* START: ENOMEM and EFAULT returns */
	uint64_t ioerr, nostatus;	/* serve: requests failed */
	bool done;		/* a run reached no armed point */
	char why[256];		/* the first thing that went wrong, or "" */
};

static __printf(2, 3) void sweep_fail(struct sweep *sw, const char *fmt, ...)
{
	va_list ap;

	if (sw->why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(sw->why, sizeof(sw->why), fmt, ap);
	va_end(ap);
}

/*
 * XI_VBLK_START with its n-th point failed, for n = 1, 2, ... until a
 * start reaches no armed point.  Each run has a new device (its disk is
 * allocated again) and the ring's pages dropped (the lookup faults them
 * in again), so every run takes the same path.  A failed start returns
 * ENOMEM (the disk, the queue's arrays, the binding, the mapping, the
 * kthread) or EFAULT (the copy of the configuration, or the ring's page
 * lookup when its fault cannot allocate), leaves the device idle without
 * a kthread, and the next start works.
 */
static void sweep_start(struct vmm *m, int nth, const char *kname,
			struct sweep *sw)
{
	struct xi_vblk_stats s;
	int dev, ret, fired;
	unsigned int n;

	for (n = 1; n <= FAIL_NTH_MAX && !sw->done && !sw->why[0]; n++) {
		dev = dev_open();
		zap(m->vm, GPA_RING, PAGES_RING * PG);
		TEST_ASSERT(!nth_write(nth, n), "arm fail-nth");
		ret = dev_start(dev, &m->cfg);
		fired = nth_fired(nth);
		TEST_ASSERT(!nth_write(nth, 0), "disarm fail-nth");
		TEST_ASSERT(fired >= 0, "read fail-nth: %s", strerror(-fired));
		s = dev_stats(dev);
		if (!fired) {
			sw->done = true;
			if (ret || s.state != XI_VBLK_RUNNING)
				sweep_fail(sw, "run %u, no point reached: %s, state %u",
					   n, strerror(-ret), s.state);
		} else if (!ret) {
			sw->points++;
			sw->absorbed++;
			if (s.state != XI_VBLK_RUNNING ||
			    tasks_named(kname, NULL) != 1)
				sweep_fail(sw, "point %u absorbed: state %u, %d kthreads",
					   n, s.state, tasks_named(kname, NULL));
		} else {
			sw->points++;
			sw->failed++;
			sw->nomem += ret == -ENOMEM;
			sw->fault += ret == -EFAULT;
			if (ret != -ENOMEM && ret != -EFAULT)
				sweep_fail(sw, "point %u: %s, not ENOMEM or EFAULT",
					   n, strerror(-ret));
			else if (s.state != XI_VBLK_IDLE || !kthread_gone(kname))
				sweep_fail(sw, "point %u: %s left state %u, %d kthreads",
					   n, strerror(-ret), s.state,
					   tasks_named(kname, NULL));
			ret = dev_start(dev, &m->cfg);
			if (ret)
				sweep_fail(sw, "point %u: the next start: %s",
					   n, strerror(-ret));
		}
		ioctl(dev, XI_VBLK_STOP);
		close(dev);
		if (!kthread_gone(kname))
			sweep_fail(sw, "run %u: kthread %s still there after stop and close",
				   n, kname);
	}
	if (!sw->done)
		sweep_fail(sw, "not done after %u points", FAIL_NTH_MAX);
}

/*
 * The kthread serving a queue with its n-th point failed, for n = 1, 2,
 * ... until a batch of FAULT_PAIRS writes and reads reaches no armed
 * point.  The read buffers' pages are dropped before each batch, so the
 * kthread's copies fault them in again.  The guest sees every request
 * complete, done or failed alone (VIRTIO_BLK_S_IOERR, or a used length of
 * 0 when its status byte could not be written), one request at most per
 * injected fault, the data of every done read right; the device keeps
 * running, and once disarmed a clean batch is all done, every byte right.
 */
static void sweep_serve(struct vmm *m, const char *kname, struct sweep *sw)
{
	uint64_t reqs, errs, bad;
	struct xi_vblk_stats s;
	int dev, kfd = -1, ret, fired;
	char path[64];
	unsigned int n;
	pid_t kpid;

	dev = dev_open();
	ret = dev_start(dev, &m->cfg);
	if (ret) {
		sweep_fail(sw, "XI_VBLK_START: %s", strerror(-ret));
		goto out;
	}
	ret = tasks_named(kname, &kpid);
	if (ret != 1) {
		sweep_fail(sw, "%d kthreads named %s", ret, kname);
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/%d/fail-nth", kpid);
	kfd = open(path, O_RDWR);
	if (kfd < 0) {
		sweep_fail(sw, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (n = 1; n <= FAIL_NTH_MAX && !sw->done && !sw->why[0]; n++) {
		zap(m->vm, GPA_RBUF, FAULT_PAIRS * P.req_size);
		ret = nth_write(kfd, n);
		if (ret) {
			sweep_fail(sw, "arm %s: %s", path, strerror(-ret));
			break;
		}
		guest_exec(m, G_FAULT_BATCH, FAULT_PAIRS);
		fired = nth_fired(kfd);
		ret = nth_write(kfd, 0);
		if (fired < 0 || ret) {
			sweep_fail(sw, "%s: %s", path,
				   strerror(fired < 0 ? -fired : -ret));
			break;
		}
		s = dev_stats(dev);
		bad = R.fault_ioerr + R.fault_nostatus;
		sw->ioerr += R.fault_ioerr;
		sw->nostatus += R.fault_nostatus;
		if (fired) {
			sw->points++;
			sw->failed += !!bad;
			sw->absorbed += !bad;
		} else {
			sw->done = true;
		}
		if (R.timeouts || R.fault_bad || R.fault_bad_bytes ||
		    R.fault_ok + bad != 2 * FAULT_PAIRS || bad > !!fired ||
		    s.state != XI_VBLK_RUNNING) {
			sweep_fail(sw,
				   "%s %u: %lu done, %lu failed, %lu without status, %lu bad, %lu bad bytes, %lu timeouts, state %u",
				   fired ? "point" : "run", n, R.fault_ok,
				   R.fault_ioerr, R.fault_nostatus, R.fault_bad,
				   R.fault_bad_bytes, R.timeouts, s.state);
			break;
		}
		reqs = R.requests;
		errs = guest_errors();
		guest_exec(m, G_TRAFFIC, 2 * FAULT_PAIRS);
		if (R.requests != reqs + 2 * FAULT_PAIRS || guest_errors() != errs)
			sweep_fail(sw,
				   "%s %u: the clean batch after: %lu of %u requests, %lu errors",
				   fired ? "point" : "run", n, R.requests - reqs,
				   2 * FAULT_PAIRS, guest_errors() - errs);
	}
	if (!sw->done)
		sweep_fail(sw, "not done after %u points", FAIL_NTH_MAX);
out:
	if (kfd >= 0)
		close(kfd);
	ioctl(dev, XI_VBLK_STOP);
	close(dev);
	if (!kthread_gone(kname))
		sweep_fail(sw, "kthread %s still there after stop and close",
			   kname);
}

/*
 * XI_VBLK_STOP with its n-th point failed (it may have none).  It cannot
 * fail: it returns 0 and leaves the device idle without a kthread each
 * time, and the next start works; after the sweep, a started queue serves
 * a clean batch.
 */
static void sweep_stop(struct vmm *m, int nth, const char *kname,
		       struct sweep *sw)
{
	struct xi_vblk_stats s;
	int dev, ret, fired;
	uint64_t reqs, errs;
	unsigned int n;

	dev = dev_open();
	for (n = 1; n <= FAIL_NTH_MAX && !sw->done && !sw->why[0]; n++) {
		ret = dev_start(dev, &m->cfg);
		if (ret) {
			sweep_fail(sw, "the start before run %u: %s", n,
				   strerror(-ret));
			break;
		}
		TEST_ASSERT(!nth_write(nth, n), "arm fail-nth");
		ret = ioctl(dev, XI_VBLK_STOP) ? -errno : 0;
		fired = nth_fired(nth);
		TEST_ASSERT(!nth_write(nth, 0), "disarm fail-nth");
		TEST_ASSERT(fired >= 0, "read fail-nth: %s", strerror(-fired));
		s = dev_stats(dev);
		sw->points += fired;
		sw->absorbed += fired;
		sw->done = !fired;
		if (ret || s.state != XI_VBLK_IDLE || !kthread_gone(kname))
			sweep_fail(sw, "%s %u: %s, state %u, %d kthreads",
				   fired ? "point" : "run", n, strerror(-ret),
				   s.state, tasks_named(kname, NULL));
	}
	if (!sw->done)
		sweep_fail(sw, "not done after %u points", FAIL_NTH_MAX);
	if (!sw->why[0]) {
		ret = dev_start(dev, &m->cfg);
		reqs = R.requests;
		errs = guest_errors();
		if (!ret)
			guest_exec(m, G_TRAFFIC, 2 * FAULT_PAIRS);
		if (ret || R.requests != reqs + 2 * FAULT_PAIRS ||
		    guest_errors() != errs)
			sweep_fail(sw, "start and a clean batch after: %s, %lu errors",
				   strerror(-ret), guest_errors() - errs);
	}
	ioctl(dev, XI_VBLK_STOP);
	close(dev);
	if (!kthread_gone(kname))
		sweep_fail(sw, "kthread %s still there after stop and close",
			   kname);
}

/*
 * fail-nth (Documentation/fault-injection/fault-injection.rst), as in
 * tools/testing/selftests/iommu/iommufd_fail_nth.c: every allocation and
 * user copy on the paths of start, serve and stop is failed in turn, one
 * per run; each failure must be reported and leave the device usable.
 */
static void test_fail_nth(void)
{
	struct opts o = { .requests = 0, .req_size = 4096, .num = 64 };
	struct sweep start = {}, serve = {}, stop = {};
	char path[64], kname[32], why[256];
	struct vmm m = {};
	int nth, ret;

	snprintf(path, sizeof(path), "/proc/self/task/%d/fail-nth", gettid());
	nth = open(path, O_RDWR);
	if (nth < 0 && errno == ENOENT) {
		ksft_test_result_skip("fail-nth: no %s (CONFIG_FAULT_INJECTION off?)\n",
				      path);
		return;
	}
	if (nth < 0) {
		tap(0, "fail-nth: %s: %s", path, strerror(errno));
		return;
	}
	ret = fault_setup(why, sizeof(why));
	if (ret == -ENOENT) {
		ksft_test_result_skip("fail-nth: %s\n", why);
		goto out;
	}
	if (ret) {
		tap(0, "fail-nth: %s", why);
		goto out;
	}
	/* The device's kthread is named after the thread that starts it. */
	snprintf(kname, sizeof(kname), "xi_vblk/%d", gettid());
	vmm_create(&m, &o);

	sweep_start(&m, nth, kname, &start);
	tap(!start.why[0],
	    "fail-nth: XI_VBLK_START: %u points injected, %u failed with a documented errno (ENOMEM %u, EFAULT %u) and left the device idle, %u absorbed; start works after each%s%s",
	    start.points, start.failed, start.nomem, start.fault,
	    start.absorbed, start.why[0] ? ": " : "", start.why);

	sweep_serve(&m, kname, &serve);
	tap(!serve.why[0],
	    "fail-nth: serve: %u points injected in the kthread, %u failed one request (%lu IOERR, %lu without status), %u absorbed; no hang, no bad data, still running, a clean batch all OK after each%s%s",
	    serve.points, serve.failed, serve.ioerr, serve.nostatus,
	    serve.absorbed, serve.why[0] ? ": " : "", serve.why);

	sweep_stop(&m, nth, kname, &stop);
	tap(!stop.why[0],
	    "fail-nth: XI_VBLK_STOP: %u points injected, stop returned 0 and left the device idle each time; start works after; %u (operation, n) points injected in all%s%s",
	    stop.points, start.points + serve.points + stop.points,
	    stop.why[0] ? ": " : "", stop.why);

	vmm_destroy(&m);
	fault_restore();
out:
	close(nth);
}

static uint32_t parse_worker(const char *name)
{
	uint32_t w;

	for (w = 0; w < NR_WORKERS; w++) {
		if (!strcmp(name, worker_name[w]))
			return w;
	}
	TEST_FAIL("-w: kthread-scope, kthread or vmm-task, not %s", name);
	return 0;
}

int main(int argc, char *argv[])
{
	struct opts o = { .requests = 16384, .req_size = 4096, .num = 256 };
	bool kselftest = false, bench = false, n_set = false, s_set = false;
	uint32_t w;
	int c;

	while ((c = getopt(argc, argv, "n:s:q:pgw:TBh")) != -1) {
		switch (c) {
		case 'n':
			o.requests = strtoull(optarg, NULL, 0);
			n_set = true;
			break;
		case 's':
			o.req_size = strtoull(optarg, NULL, 0);
			s_set = true;
			break;
		case 'q':
			o.num = strtoull(optarg, NULL, 0);
			break;
		case 'p':
			o.poll = true;
			break;
		case 'g':
			o.sg = true;
			break;
		case 'w':
			o.worker = parse_worker(optarg);
			break;
		case 'T':
			kselftest = true;
			break;
		case 'B':
			bench = true;
			break;
		default:
			printf("usage: %s [-n requests] [-s request_bytes]", argv[0]);
			printf(" [-q queue_size] [-p] [-g]");
			printf(" [-w kthread-scope|kthread|vmm-task] | -T | -B\n");
			return c == 'h' ? 0 : 1;
		}
	}
	if (bench) {
		if (!n_set)
			o.requests = 16384;
		if (!s_set)
			o.req_size = 512;
	}
	TEST_ASSERT(o.req_size && o.req_size % SECTOR == 0 &&
		    o.req_size <= XI_VBLK_MAX_REQUEST,
		    "-s: a multiple of 512 up to %u", XI_VBLK_MAX_REQUEST);
	TEST_ASSERT(o.num >= DESC_PER_SLOT && o.num <= XI_VBLK_MAX_QUEUE &&
		    !(o.num & (o.num - 1)), "-q: a power of 2 from 4 to %u",
		    XI_VBLK_MAX_QUEUE);
	o.requests += o.requests & 1;	/* writes and reads come in pairs */

	ksft_print_header();
	if (bench)
		return run_bench(&o);
	if (!kselftest)
		return run_report(&o);

	test_start_errors();
	/* The main cases with each worker; the default one first. */
	for (w = 0; w < NR_WORKERS; w++) {
		test_traffic("kick", (struct opts){ 2048, 4096, 256, false, false, w });
		test_traffic("large", (struct opts){ 64, 256 << 10, 64, false, false, w });
		test_traffic("polling", (struct opts){ 512, 4096, 64, true, false, w });
		test_traffic("sg", (struct opts){ 512, 8192, 64, false, true, w });
		test_malformed(w);
		test_stop_restart(w);
		test_vmm_exit(w);
	}
	test_memcg();
	test_churn_dirty();
	test_fail_nth();
	ksft_set_plan(ksft_test_num());	/* the plan comes last */
	ksft_finished();
}
