// SPDX-License-Identifier: GPL-2.0-only
/*
 * xi-bad BASE RESERVED: a malformed virtio-mmio driver, run inside the
 * nested guest of xinterface_linux (harness/guest/init.sh, job "bad") after
 * Linux's own driver was unbound from the device.
 *
 * It maps the device's registers (BASE) and a reserved 2 MiB of guest
 * RAM (RESERVED, memmap= on the command line) through /dev/mem, builds its
 * own split virtqueue there and sets the device up wrongly, one way at a
 * time: features without VERSION_1, queues in a hole or in MMIO space, a
 * queue size that is not a power of two or above QueueNumMax, DRIVER_OK
 * without QueueReady, a notification before DRIVER_OK, descriptors
 * pointing into MMIO space and into a hole.  After each, it checks what a
 * driver sees (the status register, DEVICE_NEEDS_RESET, the interrupt
 * status, the request's status byte), and at the end that a correct
 * set-up and correct requests still work.  Verdicts go to stdout as
 * "XI-GUEST ok ..." / "XI-GUEST FAIL ..." lines.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/types.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#define NUM		16
#define HOLE_GPA	0x20000000ull	/* above the guest's 128 MiB */
#define SECTOR		2048ull		/* 1 MiB into the disk */

/* Every access to these goes through __atomic builtins: MMIO, DMA. */
static __u8 *regs, *mem;
static __u64 mem_gpa, regs_gpa;
static int failures;

/* The queue in the reserved memory. */
#define DESC_OFF	0x0000
#define AVAIL_OFF	0x1000
#define USED_OFF	0x2000
#define HDR_OFF		0x3000
#define STATUS_OFF	0x3100
#define DATA_OFF	0x4000
#define DATA_LEN	4096
#define BACK_OFF	0x6000

static void verdict(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("XI-GUEST %s bad: ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		failures++;
}

static __u32 rd(unsigned int off)
{
	return __atomic_load_n((__u32 *)(regs + off), __ATOMIC_SEQ_CST);
}

static void wr(unsigned int off, __u32 v)
{
	__atomic_store_n((__u32 *)(regs + off), v, __ATOMIC_SEQ_CST);
}

static void wr64(unsigned int lo, __u64 v)
{
	wr(lo, (__u32)v);
	wr(lo + 4, v >> 32);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Reset, then negotiate @features; returns the status read back. */
static __u32 negotiate(__u64 features)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, features >> 32);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (__u32)features);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	   VIRTIO_CONFIG_S_FEATURES_OK);
	return rd(VIRTIO_MMIO_STATUS);
}

static void queue(__u32 num, __u64 desc, __u64 avail, __u64 used,
		  int ready)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	wr64(VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
	wr64(VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail);
	wr64(VIRTIO_MMIO_QUEUE_USED_LOW, used);
	if (ready)
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
}

static void driver_ok(void)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* A set-up the device must refuse with DEVICE_NEEDS_RESET. */
static void refused(const char *what, __u32 num, __u64 desc,
		    __u64 avail, __u64 used, int ready)
{
	__u32 st, isr;

	negotiate(1ull << VIRTIO_F_VERSION_1);
	queue(num, desc, avail, used, ready);
	driver_ok();
	st = rd(VIRTIO_MMIO_STATUS);
	isr = rd(VIRTIO_MMIO_INTERRUPT_STATUS);
	verdict((st & VIRTIO_CONFIG_S_NEEDS_RESET) && (isr & VIRTIO_MMIO_INT_CONFIG),
		"%s: DEVICE_NEEDS_RESET and a config interrupt (status 0x%x, interrupt status 0x%x)",
		what, st, isr);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, isr);
	wr(VIRTIO_MMIO_STATUS, 0);
	st = rd(VIRTIO_MMIO_STATUS);
	if (st)
		verdict(0, "%s: status 0x%x after reset", what, st);
}

static struct vring_desc *desc(void)
{
	return (struct vring_desc *)(mem + DESC_OFF);
}

static struct vring_avail *avail(void)
{
	return (struct vring_avail *)(mem + AVAIL_OFF);
}

static __u16 used_idx(void)
{
	return __atomic_load_n(&((struct vring_used *)(mem + USED_OFF))->idx,
			       __ATOMIC_ACQUIRE);
}

/* A clean, correct queue of NUM entries in the reserved memory. */
static void good_queue(int ready)
{
	memset(mem, 0, 0x3000);
	queue(NUM, mem_gpa + DESC_OFF, mem_gpa + AVAIL_OFF, mem_gpa + USED_OFF,
	      ready);
}

static __u16 avail_idx;

/* Post one request: header, data at @data_gpa (@len bytes), status. */
static void post(__u32 type, __u64 data_gpa, __u32 len)
{
	struct virtio_blk_outhdr *h = (void *)(mem + HDR_OFF);
	struct vring_desc *d = desc();

	h->type = type;
	h->ioprio = 0;
	h->sector = SECTOR;
	__atomic_store_n(&mem[STATUS_OFF], 0xff, __ATOMIC_RELAXED);
	d[0] = (struct vring_desc){ mem_gpa + HDR_OFF, sizeof(*h), VRING_DESC_F_NEXT, 1 };
	d[1] = (struct vring_desc){ data_gpa, len,
		VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0), 2 };
	d[2] = (struct vring_desc){ mem_gpa + STATUS_OFF, 1, VRING_DESC_F_WRITE, 0 };
	avail()->ring[avail_idx % NUM] = 0;
	__atomic_store_n(&avail()->idx, ++avail_idx, __ATOMIC_SEQ_CST);
}

static void kick(void)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

/* Wait for the used index to reach @idx; returns 1 if it did. */
static int wait_used(__u16 idx, long ms)
{
	while (ms-- > 0) {
		if (used_idx() == idx)
			return 1;
		sleep_ms(1);
	}
	return 0;
}

static __u8 status_byte(void)
{
	return __atomic_load_n(&mem[STATUS_OFF], __ATOMIC_ACQUIRE);
}

int main(int argc, char *argv[])
{
	__u32 st;
	int fd, i;

	if (argc != 3)
		return 2;
	regs_gpa = strtoull(argv[1], NULL, 0);
	mem_gpa = strtoull(argv[2], NULL, 0);
	fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0) {
		perror("/dev/mem");
		return 1;
	}
	regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, regs_gpa);
	mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, mem_gpa);
	if (regs == MAP_FAILED || mem == MAP_FAILED) {
		perror("mmap /dev/mem");
		return 1;
	}
	verdict(rd(VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976 &&
		rd(VIRTIO_MMIO_VERSION) == 2 && rd(VIRTIO_MMIO_DEVICE_ID) == 2,
		"the registers of a virtio 1.x block device (magic 0x%x, version %u, id %u)",
		rd(VIRTIO_MMIO_MAGIC_VALUE), rd(VIRTIO_MMIO_VERSION),
		rd(VIRTIO_MMIO_DEVICE_ID));

	/* Features. */
	st = negotiate(0);
	verdict(!(st & VIRTIO_CONFIG_S_FEATURES_OK),
		"features without VERSION_1: FEATURES_OK not accepted (status 0x%x)", st);
	st = negotiate(1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC);
	verdict(!(st & VIRTIO_CONFIG_S_FEATURES_OK),
		"a feature not offered (INDIRECT_DESC): FEATURES_OK refused (status 0x%x)",
		st);
	wr(VIRTIO_MMIO_STATUS, 0);

	/* Set-ups the device must refuse. */
	refused("queue in a hole", NUM, HOLE_GPA, HOLE_GPA + 0x1000,
		HOLE_GPA + 0x2000, 1);
	refused("queue in MMIO space", NUM, regs_gpa, regs_gpa + 0x400,
		regs_gpa + 0x800, 1);
	refused("queue size 100 (not a power of two)", 100, mem_gpa + DESC_OFF,
		mem_gpa + AVAIL_OFF, mem_gpa + USED_OFF, 1);
	refused("queue size 512 (above QueueNumMax)", 512, mem_gpa + DESC_OFF,
		mem_gpa + AVAIL_OFF, mem_gpa + USED_OFF, 1);
	refused("DRIVER_OK without QueueReady", NUM, mem_gpa + DESC_OFF,
		mem_gpa + AVAIL_OFF, mem_gpa + USED_OFF, 0);
	refused("misaligned descriptor table", NUM, mem_gpa + DESC_OFF + 8,
		mem_gpa + AVAIL_OFF, mem_gpa + USED_OFF, 1);

	/* A notification before DRIVER_OK is not acted upon. */
	avail_idx = 0;
	negotiate(1ull << VIRTIO_F_VERSION_1);
	good_queue(1);
	for (i = 0; i < DATA_LEN; i++)
		mem[DATA_OFF + i] = (__u8)(i * 7 + 3);
	post(VIRTIO_BLK_T_OUT, mem_gpa + DATA_OFF, DATA_LEN);
	kick();
	verdict(!wait_used(1, 300) && status_byte() == 0xff,
		"a notification before DRIVER_OK: nothing served (used idx %u)",
		used_idx());
	driver_ok();
	kick();
	verdict(wait_used(1, 5000) && status_byte() == VIRTIO_BLK_S_OK,
		"after DRIVER_OK the posted write is served (status %u)",
		status_byte());

	/* Requests whose buffers are not guest RAM fail alone. */
	post(VIRTIO_BLK_T_IN, regs_gpa, 512);
	kick();
	verdict(wait_used(2, 5000) && status_byte() == VIRTIO_BLK_S_IOERR,
		"a read into MMIO space: VIRTIO_BLK_S_IOERR (status %u)",
		status_byte());
	post(VIRTIO_BLK_T_OUT, HOLE_GPA, 4096);
	kick();
	verdict(wait_used(3, 5000) && status_byte() == VIRTIO_BLK_S_IOERR,
		"a write from a hole: VIRTIO_BLK_S_IOERR (status %u)",
		status_byte());
	st = rd(VIRTIO_MMIO_STATUS);
	verdict(!(st & VIRTIO_CONFIG_S_NEEDS_RESET),
		"bad requests fail alone: no DEVICE_NEEDS_RESET (status 0x%x)", st);

	/* And the queue still works: read back what the first write wrote. */
	memset(mem + BACK_OFF, 0, DATA_LEN);
	post(VIRTIO_BLK_T_IN, mem_gpa + BACK_OFF, DATA_LEN);
	kick();
	verdict(wait_used(4, 5000) && status_byte() == VIRTIO_BLK_S_OK &&
		!memcmp(mem + BACK_OFF, mem + DATA_OFF, DATA_LEN),
		"a good read after the bad requests returns the data written (status %u)",
		status_byte());
	wr(VIRTIO_MMIO_STATUS, 0);
	verdict(rd(VIRTIO_MMIO_STATUS) == 0, "reset at the end");
	return failures ? 1 : 0;
}
