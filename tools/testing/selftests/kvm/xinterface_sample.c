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
 *                     [-p] [-g]     # one run and a readable report
 *   xinterface_sample -T            # the kselftest: TAP
 *
 * -p: the kthread polls the ring instead of waiting for kicks; -g: data
 * moves through kvm_xinterface_sg() instead of kvm_xinterface_copyv().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* ---- shared with the guest ---- */

enum { G_TRAFFIC = 1, G_MALFORMED, G_BAD_INDEX, G_POST_NOWAIT, G_WAIT_ONE };

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

/* Write a batch of sectors, read them back elsewhere, check every byte. */
static void g_traffic(uint64_t nreq)
{
	uint64_t spr = P.req_size / SECTOR, words = P.req_size / 8;
	uint64_t target = R.requests + nreq;
	unsigned int k, n;

	while (R.requests < target) {
		n = (target - R.requests + 1) / 2;
		if (n > P.depth)
			n = P.depth;
		gen++;
		for (k = 0; k < n; k++) {
			uint64_t buf = GPA_WBUF + k * P.req_size;

			fill(GV(buf), cursor + k * spr, words);
			post_req(k, VIRTIO_BLK_T_OUT, cursor + k * spr, buf);
		}
		kick();
		if (!complete(n, 1))
			return;
		for (k = 0; k < n; k++)
			post_req(k, VIRTIO_BLK_T_IN, cursor + k * spr,
				 GPA_RBUF + k * P.req_size);
		kick();
		if (!complete(n, P.req_size + 1))
			return;
		for (k = 0; k < n; k++)
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
			g_traffic(C.arg);
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
		}
	}
}

/* ---- the VMM ---- */

struct opts {
	uint64_t requests, req_size, num;
	bool poll, sg;
};

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

	printf("xi_vblk: a RAM disk served to a KVM guest by a kthread through kvm_xinterface\n");
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
	printf("  kthread         %lu wakeups, %lu batches, %lu calls (VMM read %lu),",
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
	    "device: XI_VBLK_STOP stops the kthread and drops the VM");
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

static void test_traffic(const char *what, struct opts o)
{
	struct xi_vblk_stats s;
	struct vmm m = {};
	uint64_t calls;
	int ret;

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
	tap(!ioctl(m.dev, XI_VBLK_STOP) &&
	    dev_stats(m.dev).state == XI_VBLK_IDLE,
	    "%s: XI_VBLK_STOP stops the kthread", what);
out:
	close(m.dev);
	vmm_destroy(&m);
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
	tap(ioctl(m.dev, XI_VBLK_STOP) == -1 && errno == ENOTCONN,
	    "stop: not started gives ENOTCONN");
	tap(dev_start(m.dev, &m.cfg) == 0, "start: good configuration");
	tap(dev_start(m.dev, &m.cfg) == -EBUSY, "start: second start gives EBUSY");
	close(nul);
	close(m.dev);
	vmm_destroy(&m);
}

static void test_malformed(void)
{
	struct opts o = { .requests = 64, .req_size = 4096, .num = 64 };
	struct xi_vblk_stats s;
	struct vmm m = {};
	unsigned int c, bad = 0;

	m.dev = dev_open();
	vmm_create(&m, &o);
	TEST_ASSERT(!dev_start(m.dev, &m.cfg), "start");
	for (c = 0; c < NR_BAD_CASES; c++) {
		guest_exec(&m, G_MALFORMED, c);
		tap(R.case_ok[c] && !R.timeouts,
		    "malformed: %s: rejected alone (used len %lu, status %#lx)",
		    bad_case_name[c], R.case_got[c] >> 8, R.case_got[c] & 0xff);
		bad++;
	}
	guest_exec(&m, G_TRAFFIC, o.requests);
	tap(!guest_errors() && R.requests == o.requests,
	    "malformed: the device goes on serving: %lu requests, every byte right",
	    R.requests);
	guest_exec(&m, G_BAD_INDEX, 0);
	tap(!R.completed, "malformed: garbage available index completes nothing");
	guest_exec(&m, G_TRAFFIC, o.requests);
	s = dev_stats(m.dev);
	tap(!guest_errors() && R.requests == 2 * o.requests && s.ring_errors >= 1,
	    "malformed: after a garbage index the ring works again (%lu ring errors)",
	    (unsigned long)s.ring_errors);
	tap(s.bad_requests == bad && s.requests == R.requests + bad &&
	    s.state == XI_VBLK_RUNNING,
	    "malformed: device counted %lu bad requests of %lu (want %u), still running",
	    (unsigned long)s.bad_requests, (unsigned long)s.requests, bad);
	close(m.dev);
	vmm_destroy(&m);
}

static void test_stop_restart(void)
{
	struct opts o = { .requests = 32, .req_size = 4096, .num = 64 };
	struct vmm m = {};

	m.dev = dev_open();
	vmm_create(&m, &o);
	TEST_ASSERT(!dev_start(m.dev, &m.cfg), "start");
	guest_exec(&m, G_TRAFFIC, o.requests);
	tap(!ioctl(m.dev, XI_VBLK_STOP) && dev_stats(m.dev).state == XI_VBLK_IDLE,
	    "stop ioctl: kthread stopped (state idle)");
	guest_exec(&m, G_POST_NOWAIT, 300);
	tap(!R.completed, "stop ioctl: a request posted after stop is not served");
	tap(!dev_start(m.dev, &m.cfg), "stop ioctl: start again");
	guest_exec(&m, G_WAIT_ONE, 0);
	tap(R.completed, "stop ioctl: the pending request is served after restart");
	guest_exec(&m, G_TRAFFIC, o.requests);
	tap(!guest_errors() && R.requests == 2 * o.requests,
	    "stop ioctl: data written before the stop reads back after restart (%lu errors)",
	    guest_errors());
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
static void child_vmm(int dev, bool close_vm_fd)
{
	struct opts o = { .requests = 1 << 30, .req_size = 4096, .num = 64 };
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

static void test_vmm_exit(void)
{
	struct xi_vblk_stats s;
	struct refs r;
	int dev, st;
	pid_t pid;
	bool ok;

	/* The device outlives the VMM: the kthread sees ESRCH and stops. */
	r.vendor = module_refcnt(vendor());
	dev = dev_open();
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid)
		child_vmm(dev, false);
	ok = wait_for(dev_busy, &dev, 60);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	tap(ok && WIFSIGNALED(st), "VMM exit: child VMM killed mid-traffic after %lu requests",
	    (unsigned long)dev_stats(dev).requests);
	ok = wait_for(dev_dead, &dev, 30);
	s = dev_stats(dev);
	tap(ok && s.error == ESRCH,
	    "VMM exit: the kthread stopped by itself with ESRCH (state %u, error %u)",
	    s.state, s.error);
	r.sample = module_refcnt("xi_vblk");
	tap(wait_for(refs_back, &r, 30),
	    "VMM exit: the orphaned VM is freed (%s refcnt %ld)", vendor(),
	    module_refcnt(vendor()));
	tap(!ioctl(dev, XI_VBLK_STOP) && dev_stats(dev).state == XI_VBLK_IDLE,
	    "VMM exit: stop after the kthread died");
	close(dev);

	/* The VMM owns the device and closed its VM fd: release stops all. */
	r.sample = module_refcnt("xi_vblk");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid)
		child_vmm(-1, true);
	/* No handle on the device here: give the child time to serve. */
	sleep(3);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	tap(WIFSIGNALED(st) && wait_for(refs_back, &r, 30),
	    "VMM exit: VMM with closed VM fd killed; device released, VM freed (xi_vblk refcnt %ld, %s refcnt %ld)",
	    module_refcnt("xi_vblk"), vendor(), module_refcnt(vendor()));
}

int main(int argc, char *argv[])
{
	struct opts o = { .requests = 16384, .req_size = 4096, .num = 256 };
	bool kselftest = false;
	int c;

	while ((c = getopt(argc, argv, "n:s:q:pgTh")) != -1) {
		switch (c) {
		case 'n':
			o.requests = strtoull(optarg, NULL, 0);
			break;
		case 's':
			o.req_size = strtoull(optarg, NULL, 0);
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
		case 'T':
			kselftest = true;
			break;
		default:
			printf("usage: %s [-n requests] [-s request_bytes]", argv[0]);
			printf(" [-q queue_size] [-p] [-g] | -T\n");
			return c == 'h' ? 0 : 1;
		}
	}
	TEST_ASSERT(o.req_size && o.req_size % SECTOR == 0 &&
		    o.req_size <= XI_VBLK_MAX_REQUEST,
		    "-s: a multiple of 512 up to %u", XI_VBLK_MAX_REQUEST);
	TEST_ASSERT(o.num >= DESC_PER_SLOT && o.num <= XI_VBLK_MAX_QUEUE &&
		    !(o.num & (o.num - 1)), "-q: a power of 2 from 4 to %u",
		    XI_VBLK_MAX_QUEUE);
	o.requests += o.requests & 1;	/* writes and reads come in pairs */

	ksft_print_header();
	if (!kselftest)
		return run_report(&o);

	test_start_errors();
	test_traffic("kick", (struct opts){ 2048, 4096, 256, false, false });
	test_traffic("large", (struct opts){ 64, 256 << 10, 64, false, false });
	test_traffic("polling", (struct opts){ 512, 4096, 64, true, false });
	test_traffic("sg", (struct opts){ 512, 8192, 64, false, true });
	test_malformed();
	test_stop_restart();
	test_churn_dirty();
	test_vmm_exit();
	ksft_set_plan(ksft_test_num());	/* the plan comes last */
	ksft_finished();
}
