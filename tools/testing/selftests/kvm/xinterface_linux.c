// SPDX-License-Identifier: GPL-2.0-only
/*
 * xinterface_linux: a VMM that boots a real Linux guest whose virtio-blk
 * disk is served by the xi_vblk sample (samples/kvm/xinterface/xi_vblk.c),
 * a kthread that reaches guest memory only through kvm_xinterface.
 *
 * The VMM loads a bzImage and an initramfs with the Linux x86 boot protocol
 * (64-bit entry, boot_params with an e820 map and a command line), runs one
 * vCPU with KVM's in-kernel irqchip and PIT, emulates a 16550 serial port
 * (the guest's console) and the register window of a virtio-mmio device
 * (virtio 1.x, device ID 2).  The guest finds the device through
 * virtio_mmio.device= on its command line and drives it with Linux's own
 * virtio_mmio and virtio_blk drivers.  Queue notifications are a
 * KVM_IOEVENTFD on the QueueNotify register and interrupts a KVM_IRQFD:
 * once the driver sets DRIVER_OK, the VMM hands the VM fd, the queue's
 * guest addresses and both eventfds to /dev/xi_vblk and from then on only
 * runs the vCPU and answers register reads.  The data path never leaves
 * the kernel.
 *
 * The guest's /init (harness/guest/init.sh) runs the jobs named by
 * xi.job= and reports on the console in lines starting "XI-GUEST".  After
 * the guest powers off, the VMM reads the disk back (XI_VBLK_READ_DISK) and
 * runs e2fsck -fn on it.
 *
 *   xinterface_linux [-j jobs] [-g] [-v] [-t secs]  # one boot, a report
 *   xinterface_linux -T                    # the kselftest: TAP
 *
 * -g: data moves through kvm_xinterface_sg(); -v: the whole guest console;
 * -t: seconds the guest may take (300).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <asm/bootparam.h>
#include <linux/bits.h>
#include <linux/compiler.h>
#include <linux/kvm.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "../../../../samples/kvm/xinterface/xi_vblk_uapi.h"

#define KERNEL_PATH	"/guest/bzImage"
#define INITRD_PATH	"/guest/initramfs.cpio"
#define E2FSCK_PATH	"/sbin/e2fsck.static"
#define DISK_IMAGE	"/tmp/xi-disk.img"

#define MiB		BIT_ULL(20)
#define RAM_SIZE	(128 * MiB)
#define DISK_SECTORS	(64 * MiB / 512)

/* Guest physical layout of the boot (as the x86 boot protocol allows). */
#define GDT_GPA		0x500ull
#define BOOT_PARAMS_GPA	0x7000ull
#define STACK_TOP	0x8ff0ull
#define PML4_GPA	0x9000ull
#define PDPT_GPA	0xa000ull
#define PD_GPA		0xb000ull
#define CMDLINE_GPA	0x20000ull
#define CMDLINE_MAX	0x1000
#define KERNEL_GPA	0x100000ull
#define EBDA_START	0x9fc00ull
#define E820_RAM	1
#define E820_RESERVED	2

/* The devices. */
#define COM1		0x3f8
#define COM1_IRQ	4
#define KBD_CMD		0x64		/* 0xfe: reset (reboot=k) */
#define VMMIO_BASE	0xd0000000ull
#define VMMIO_SIZE	0x1000ull
#define VMMIO_GSI	5
#define QUEUE_MAX	256
/* Reserved for the malformed-driver job, which builds its own rings. */
#define RESERVED_GPA	0x7000000ull
#define RESERVED_SIZE	(2 * MiB)

/* What the device offers: only what xi_vblk serves. */
#define SEG_MAX		64
#define SIZE_MAX_BYTES	65536		/* SEG_MAX * this = XI_VBLK_MAX_REQUEST */
#define OFFERED		(BIT_ULL(VIRTIO_F_VERSION_1) |			\
			 BIT_ULL(VIRTIO_BLK_F_SIZE_MAX) |		\
			 BIT_ULL(VIRTIO_BLK_F_SEG_MAX) |		\
			 BIT_ULL(VIRTIO_BLK_F_BLK_SIZE) |		\
			 BIT_ULL(VIRTIO_BLK_F_FLUSH))

static bool verbose;
static double boot_timeout = 300;

static __noreturn __printf(1, 2) void die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	fprintf(stderr, "xinterface_linux: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (errno %d: %s)\n", e, strerror(e));
	va_end(ap);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the 16550 serial port: the guest's console ---- */

struct uart {
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thr_int;		/* THR empty, not yet reported by IIR */
	int line_irq;		/* level last set on COM1_IRQ */
};

/* ---- the virtio-mmio block device ---- */

struct vmmio {
	uint32_t status;
	uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
	uint64_t drv_features;
	uint32_t q_num, q_ready;
	uint64_t q_desc, q_driver, q_device;
	uint32_t int_config;	/* config-change interrupt not yet acked */
	bool started;
	/* From here on, kept across resets. */
	unsigned int starts, resets, setup_errors;
	int start_errno;	/* of the last refused set-up */
	/* Counters of the queues stopped so far (a start zeroes xi_vblk's). */
	uint64_t done_requests, done_bad, done_read, done_written;
	struct virtio_blk_config config;
};

struct vm {
	int kvm, fd, vcpu, dev, kick, call;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *ram;
	bool sg;
	uint32_t slot_flags;
	struct uart uart;
	struct vmmio mmio;
	pthread_mutex_t lock;	/* the device model and the console */
	/* The console, by lines, with the time each line was complete. */
	char line[512];
	size_t line_len;
	char *console;
	size_t console_len, console_size;
	double t_start, t_init, t_fs_start, t_fs_end, t_off;
	bool powered_off, shutdown;
	const char *fail;	/* why the vCPU loop stopped on its own */
	/* Pausing the vCPU from another thread (the dirty-log case). */
	pthread_t vcpu_thread;
	bool pause_req, paused, stop_req, vcpu_done;	/* READ/WRITE_ONCE */
	/* The nudger: see nudge_loop(). */
	pthread_t nudge_thread;
	uint64_t exits;		/* READ/WRITE_ONCE */
	bool nudged;
	uint64_t nudges;
	/* Guest notifications held back by the VMM (the dirty-log case). */
	bool hold_kicks;
	unsigned int held_kicks;
	struct xi_vblk_stats fs_start_stats, fs_end_stats;
};

static struct xi_vblk_stats fd_stats(int dev)
{
	struct xi_vblk_stats s;

	if (ioctl(dev, XI_VBLK_GET_STATS, &s))
		die("XI_VBLK_GET_STATS");
	return s;
}

static struct xi_vblk_stats dev_stats(struct vm *m)
{
	return fd_stats(m->dev);
}

/* The device's counters over every start of this VM's queue. */
static struct xi_vblk_stats total_stats(struct vm *m)
{
	struct xi_vblk_stats s = dev_stats(m);

	/* A stopped queue's counters are in done_* already. */
	if (!m->mmio.started)
		memset(&s.requests, 0, sizeof(s.requests) * 4);
	s.requests += m->mmio.done_requests;
	s.bad_requests += m->mmio.done_bad;
	s.bytes_read += m->mmio.done_read;
	s.bytes_written += m->mmio.done_written;
	return s;
}

static void irq_line(struct vm *m, int irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	if (ioctl(m->fd, KVM_IRQ_LINE, &l))
		die("KVM_IRQ_LINE");
}

static const char *stamp(struct vm *m, double t)
{
	static char buf[32];

	snprintf(buf, sizeof(buf), "+%6.2f ", t - m->t_start);
	return buf;
}

/* A console line is complete: keep it, time the guest's milestones. */
static void console_line(struct vm *m)
{
	const char *l = m->line;
	double t = now();
	size_t n = m->line_len;

	m->line[n] = 0;
	if (strstr(l, "XI-GUEST init"))
		m->t_init = t;
	if (strstr(l, "XI-GUEST phase fs-start")) {
		m->t_fs_start = t;
		m->fs_start_stats = total_stats(m);
	}
	if (strstr(l, "XI-GUEST phase fs-end")) {
		m->t_fs_end = t;
		m->fs_end_stats = total_stats(m);
	}
	if (verbose || strstr(l, "XI-GUEST") || strstr(l, "virtio") ||
	    strstr(l, "vda") || strstr(l, "EXT4-fs") ||
	    strstr(l, "Linux version") || strstr(l, "Run /init") ||
	    strstr(l, "Kernel panic") || strstr(l, "BUG") ||
	    strstr(l, "WARNING"))
		printf("  guest| %s%s\n", verbose ? stamp(m, t) : "", l);
	if (m->console_len + n + 2 > m->console_size) {
		m->console_size = (m->console_size + n + 2) * 2;
		m->console = realloc(m->console, m->console_size);
		if (!m->console)
			die("realloc");
	}
	memcpy(m->console + m->console_len, l, n);
	m->console_len += n;
	m->console[m->console_len++] = '\n';
	m->console[m->console_len] = 0;
	m->line_len = 0;
}

static void console_putc(struct vm *m, char c)
{
	if (c == '\r')
		return;
	if (c == '\n' || m->line_len == sizeof(m->line) - 1) {
		console_line(m);
		if (c == '\n')
			return;
	}
	m->line[m->line_len++] = c;
}

/* Interrupt line of the port: THR empty with the interrupt enabled. */
static void uart_update_irq(struct vm *m)
{
	struct uart *u = &m->uart;
	int level = (u->ier & 0x02) && u->thr_int;

	if (level != u->line_irq) {
		irq_line(m, COM1_IRQ, level);
		u->line_irq = level;
	}
}

static void uart_io(struct vm *m, uint16_t port, uint8_t *data, bool write)
{
	struct uart *u = &m->uart;
	bool dlab = u->lcr & 0x80;
	unsigned int reg = port - COM1;

	if (write) {
		uint8_t v = *data;

		switch (reg) {
		case 0:
			if (dlab) {
				u->dll = v;
				break;
			}
			console_putc(m, v);
			/* Sent at once: empty again. */
			u->thr_int = true;
			break;
		case 1:
			if (dlab) {
				u->dlm = v;
				break;
			}
			/* Enabling the THR interrupt with THR empty raises it. */
			if (!(u->ier & 0x02) && (v & 0x02))
				u->thr_int = true;
			u->ier = v & 0x0f;
			break;
		case 2:
			u->fcr = v;
			break;
		case 3:
			u->lcr = v;
			break;
		case 4:
			u->mcr = v & 0x1f;
			break;
		case 7:
			u->scr = v;
			break;
		}
	} else {
		uint8_t v = 0;

		switch (reg) {
		case 0:
			v = dlab ? u->dll : 0;
			break;
		case 1:
			v = dlab ? u->dlm : u->ier;
			break;
		case 2:
			/* FIFOs as a 16550A has them; THR empty, else none. */
			v = (u->fcr & 1) ? 0xc0 : 0;
			if ((u->ier & 0x02) && u->thr_int) {
				v |= 0x02;
				u->thr_int = false;
			} else {
				v |= 0x01;
			}
			break;
		case 3:
			v = u->lcr;
			break;
		case 4:
			v = u->mcr;
			break;
		case 5:
			v = 0x60;	/* THR and transmitter empty */
			break;
		case 6:
			if (u->mcr & 0x10)	/* loopback: outputs to inputs */
				v = (u->mcr & 0x01) << 5 | (u->mcr & 0x02) << 3 |
				    (u->mcr & 0x0c) << 4;
			else
				v = 0xb0;	/* DCD, DSR, CTS */
			break;
		case 7:
			v = u->scr;
			break;
		}
		*data = v;
	}
	uart_update_irq(m);
}

static void vmmio_reset(struct vm *m)
{
	struct vmmio *d = &m->mmio;

	if (d->started) {
		struct xi_vblk_stats st;

		if (ioctl(m->dev, XI_VBLK_STOP) ||
		    ioctl(m->dev, XI_VBLK_GET_STATS, &st))
			die("XI_VBLK_STOP");
		d->done_requests += st.requests;
		d->done_bad += st.bad_requests;
		d->done_read += st.bytes_read;
		d->done_written += st.bytes_written;
		d->started = false;
	}
	d->status = 0;
	/* Everything up to the counters, which outlive a reset. */
	memset(d, 0, offsetof(struct vmmio, starts));
}

/* The device cannot go on: tell the driver, as virtio 1.x 2.1.2 says. */
static void vmmio_needs_reset(struct vm *m, int err)
{
	struct vmmio *d = &m->mmio;
	uint64_t one = 1;

	d->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	d->start_errno = err;
	d->setup_errors++;
	if (d->status & VIRTIO_CONFIG_S_DRIVER_OK) {
		d->int_config |= VIRTIO_MMIO_INT_CONFIG;
		/* The irqfd's eventfd: the same line as the queue's. */
		if (write(m->call, &one, sizeof(one)) != sizeof(one))
			die("write call eventfd");
	}
}

/* DRIVER_OK: hand the queue to xi_vblk, or report why not. */
static void vmmio_start(struct vm *m)
{
	struct vmmio *d = &m->mmio;
	struct xi_vblk_config c = {
		.vm_fd = m->fd,
		.kick_fd = m->kick,
		.call_fd = m->call,
		.num = d->q_num,
		.desc_gpa = d->q_desc,
		.avail_gpa = d->q_driver,
		.used_gpa = d->q_device,
		.sectors = DISK_SECTORS,
		.flags = m->sg ? XI_VBLK_F_SG : 0,
	};

	if (!(d->status & VIRTIO_CONFIG_S_FEATURES_OK) || !d->q_ready ||
	    d->q_num > QUEUE_MAX) {
		vmmio_needs_reset(m, EINVAL);
		return;
	}
	/* The ring's layout is xi_vblk's to check (size, alignment, memory). */
	if (ioctl(m->dev, XI_VBLK_START, &c)) {
		vmmio_needs_reset(m, errno);
		return;
	}
	d->started = true;
	d->starts++;
}

static void vmmio_write_status(struct vm *m, uint32_t v)
{
	struct vmmio *d = &m->mmio;
	uint32_t was = d->status;

	if (!v) {
		vmmio_reset(m);
		d->resets++;
		return;
	}
	/* NEEDS_RESET is the device's; the driver cannot clear it. */
	d->status = v | (was & VIRTIO_CONFIG_S_NEEDS_RESET);
	if ((v & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !(was & VIRTIO_CONFIG_S_FEATURES_OK)) {
		/* Only what was offered, and a modern driver. */
		if ((d->drv_features & ~OFFERED) ||
		    !(d->drv_features & (1ull << VIRTIO_F_VERSION_1)))
			d->status &= ~VIRTIO_CONFIG_S_FEATURES_OK;
	}
	if ((v & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    !(was & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    !(was & VIRTIO_CONFIG_S_NEEDS_RESET))
		vmmio_start(m);
}

static void set_half(uint64_t *reg, bool high, uint32_t v)
{
	if (high)
		*reg = (*reg & 0xffffffffull) | (uint64_t)v << 32;
	else
		*reg = (*reg & ~0xffffffffull) | v;
}

static uint32_t vmmio_read(struct vm *m, uint64_t off)
{
	struct vmmio *d = &m->mmio;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return 0x74726976;		/* "virt" */
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return VIRTIO_ID_BLOCK;
	case VIRTIO_MMIO_VENDOR_ID:
		return 0x4958564b;		/* "KVXI" */
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return d->dev_feat_sel < 2 ? OFFERED >> (32 * d->dev_feat_sel) : 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return d->queue_sel ? 0 : QUEUE_MAX;
	case VIRTIO_MMIO_QUEUE_READY:
		return d->queue_sel ? 0 : d->q_ready;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		/*
		 * The queue's interrupts come from xi_vblk through the irqfd,
		 * unseen here: report a used buffer whenever the queue runs
		 * (the driver looks at the ring, spurious ones are harmless).
		 */
		return (d->started ? VIRTIO_MMIO_INT_VRING : 0) | d->int_config;
	case VIRTIO_MMIO_STATUS:
		return d->status;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return ~0u;			/* no shared memory regions */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return 0;
	}
	return 0;
}

static void vmmio_write(struct vm *m, uint64_t off, uint32_t v)
{
	struct vmmio *d = &m->mmio;
	/* Queue registers of queue 0 only, and only while it is not live. */
	bool q = !d->queue_sel && !d->q_ready;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->dev_feat_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->drv_feat_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (d->drv_feat_sel < 2 &&
		    !(d->status & VIRTIO_CONFIG_S_FEATURES_OK))
			set_half(&d->drv_features, d->drv_feat_sel, v);
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (q)
			d->q_num = v;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (d->queue_sel)
			break;
		/* No queue reset (VIRTIO_F_RING_RESET): a live queue stays. */
		if (d->started && !(v & 1)) {
			vmmio_needs_reset(m, EBUSY);
			break;
		}
		d->q_ready = v & 1;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (q)
			set_half(&d->q_desc, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (q)
			set_half(&d->q_driver, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (q)
			set_half(&d->q_device, off == VIRTIO_MMIO_QUEUE_USED_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/*
		 * A 4-byte write goes to the ioeventfd, never here, unless
		 * the dirty-log case took the ioeventfd away to hold kicks.
		 */
		if (m->hold_kicks)
			m->held_kicks++;
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		d->int_config &= ~v;
		break;
	case VIRTIO_MMIO_STATUS:
		vmmio_write_status(m, v);
		break;
	}
}

static void vmmio_access(struct vm *m, uint64_t off, uint8_t *data,
			 uint32_t len, bool write)
{
	uint8_t *cfg = (uint8_t *)&m->mmio.config;
	uint32_t v = 0;

	if (off >= VIRTIO_MMIO_CONFIG) {
		off -= VIRTIO_MMIO_CONFIG;
		/* Config space is read-only here (no CONFIG_WCE). */
		if (!write) {
			memset(data, 0, len);
			if (off < sizeof(m->mmio.config))
				memcpy(data, cfg + off,
				       len < sizeof(m->mmio.config) - off ?
				       len : sizeof(m->mmio.config) - off);
		}
		return;
	}
	/* Registers are 32-bit and aligned; anything else is ignored. */
	if (len != 4 || off % 4) {
		if (!write)
			memset(data, 0, len);
		return;
	}
	if (write) {
		memcpy(&v, data, 4);
		vmmio_write(m, off, v);
	} else {
		v = vmmio_read(m, off);
		memcpy(data, &v, 4);
	}
}

/* ---- the VM ---- */

static void *read_file(const char *path, size_t *size)
{
	struct stat st;
	void *p;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		die("open %s", path);
	p = malloc(st.st_size);
	if (!p || read(fd, p, st.st_size) != st.st_size)
		die("read %s", path);
	close(fd);
	*size = st.st_size;
	return p;
}

static void e820_add(struct boot_params *bp, uint64_t addr, uint64_t size,
		     uint32_t type)
{
	struct boot_e820_entry *e = &bp->e820_table[bp->e820_entries++];

	e->addr = addr;
	e->size = size;
	e->type = type;
}

/*
 * Linux x86 boot protocol, 64-bit entry (Documentation/arch/x86/boot.rst):
 * the protected-mode kernel at 1 MiB, boot_params with the kernel's own
 * setup header, identity-mapped page tables, flat segments.
 */
static void load_linux(struct vm *m, const char *kernel, const char *initrd,
		       const char *cmdline)
{
	struct boot_params *bp = (void *)(m->ram + BOOT_PARAMS_GPA);
	uint64_t *pml4 = (void *)(m->ram + PML4_GPA);
	uint64_t *pdpt = (void *)(m->ram + PDPT_GPA);
	uint64_t *pd = (void *)(m->ram + PD_GPA);
	uint64_t *gdt = (void *)(m->ram + GDT_GPA);
	struct setup_header *hdr;
	size_t ksize, isize, setup, hlen;
	uint64_t initrd_gpa, initrd_max;
	uint8_t *k, *ird;
	int i;

	k = read_file(kernel, &ksize);
	ird = read_file(initrd, &isize);
	if (ksize < 0x1000)
		die("%s: too small for a bzImage", kernel);
	hdr = (void *)(k + 0x1f1);
	if (hdr->header != 0x53726448 || hdr->version < 0x20c ||
	    !(hdr->xloadflags & XLF_KERNEL_64)) {
		errno = ENOEXEC;
		die("%s: not a bzImage with a 64-bit entry", kernel);
	}
	setup = (hdr->setup_sects ? hdr->setup_sects : 4) * 512 + 512;
	if (KERNEL_GPA + ksize - setup + hdr->init_size > RESERVED_GPA) {
		errno = EFBIG;
		die("%s: too big", kernel);
	}
	memcpy(m->ram + KERNEL_GPA, k + setup, ksize - setup);

	memset(bp, 0, sizeof(*bp));
	/* The setup header as the kernel has it, then the loader's fields. */
	hlen = 0x202 + k[0x201] - 0x1f1;
	memcpy(&bp->hdr, hdr, hlen < sizeof(bp->hdr) ? hlen : sizeof(bp->hdr));
	bp->hdr.type_of_loader = 0xff;
	bp->hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.cmd_line_ptr = CMDLINE_GPA;
	if (strlen(cmdline) >= CMDLINE_MAX ||
	    strlen(cmdline) > bp->hdr.cmdline_size) {
		errno = E2BIG;
		die("command line too long");
	}
	memcpy(m->ram + CMDLINE_GPA, cmdline, strlen(cmdline) + 1);

	/* The initramfs at the top of RAM, where the kernel may reach it. */
	initrd_max = hdr->initrd_addr_max < RAM_SIZE ? hdr->initrd_addr_max + 1 :
						       RAM_SIZE;
	initrd_gpa = (initrd_max - isize) & ~0xfffull;
	if (isize > initrd_max || initrd_gpa < RESERVED_GPA + RESERVED_SIZE) {
		errno = EFBIG;
		die("%s: too big", initrd);
	}
	memcpy(m->ram + initrd_gpa, ird, isize);
	bp->hdr.ramdisk_image = initrd_gpa;
	bp->hdr.ramdisk_size = isize;
	free(k);
	free(ird);

	e820_add(bp, 0, EBDA_START, E820_RAM);
	e820_add(bp, EBDA_START, KERNEL_GPA - EBDA_START, E820_RESERVED);
	e820_add(bp, KERNEL_GPA, RESERVED_GPA - KERNEL_GPA, E820_RAM);
	e820_add(bp, RESERVED_GPA, RESERVED_SIZE, E820_RESERVED);
	e820_add(bp, RESERVED_GPA + RESERVED_SIZE,
		 RAM_SIZE - RESERVED_GPA - RESERVED_SIZE, E820_RAM);

	/* The first GiB identity-mapped with 2 MiB pages. */
	pml4[0] = PDPT_GPA | 0x3;
	pdpt[0] = PD_GPA | 0x3;
	for (i = 0; i < 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffull;		/* __BOOT_CS: 64-bit code */
	gdt[3] = 0x00cf93000000ffffull;		/* __BOOT_DS */
}

static void setup_vcpu(struct vm *m)
{
	struct kvm_segment cs = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 11,
		.present = 1, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.base = 0, .limit = 0xffffffff, .selector = 0x18, .type = 3,
		.present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_cpuid2 *cpuid;
	struct kvm_sregs sregs;
	struct kvm_regs regs = {};
	int nent = 128;
	unsigned int i;

	cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
	if (!cpuid)
		die("calloc");
	cpuid->nent = nent;
	if (ioctl(m->kvm, KVM_GET_SUPPORTED_CPUID, cpuid))
		die("KVM_GET_SUPPORTED_CPUID");
	/*
	 * A VMM says it is one: with the hypervisor bit the guest finds
	 * KVM's leaves and takes the TSC frequency from kvmclock instead of
	 * calibrating against the PIT.
	 */
	for (i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function == 1) {
			e->ecx |= 1u << 31;
			/* The one vCPU's APIC ID is 0. */
			e->ebx &= 0x00ffffff;
		}
		/*
		 * No XSAVE: FXSAVE state (x87, SSE).  Under TCG's nested SVM
		 * the size KVM reports in CPUID(0xD,0).EBX once the guest
		 * enables AVX in XCR0 is 576 bytes, not the 832 the subleaves'
		 * offsets give: the guest warns of an XSAVE consistency
		 * problem, dumps CPUID and falls back to FXSAVE anyway.
		 */
		if (e->function == 1)
			e->ecx &= ~(1u << 26 | 1u << 27 | 1u << 28); /* XSAVE, OSXSAVE, AVX */
	}
	if (ioctl(m->vcpu, KVM_SET_CPUID2, cpuid))
		die("KVM_SET_CPUID2");
	free(cpuid);

	if (ioctl(m->vcpu, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS");
	sregs.cs = cs;
	sregs.ds = ds;
	sregs.es = ds;
	sregs.fs = ds;
	sregs.gs = ds;
	sregs.ss = ds;
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.cr0 = 0x80000011;			/* PG, ET, PE */
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 0x20;			/* PAE */
	sregs.efer = 0x500;			/* LMA, LME */
	if (ioctl(m->vcpu, KVM_SET_SREGS, &sregs))
		die("KVM_SET_SREGS");
	regs.rip = KERNEL_GPA + 0x200;		/* startup_64 */
	regs.rsi = BOOT_PARAMS_GPA;
	regs.rsp = STACK_TOP;
	regs.rflags = 2;
	if (ioctl(m->vcpu, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS");
}

static void set_slot(struct vm *m, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = 0, .flags = flags, .guest_phys_addr = 0,
		.memory_size = RAM_SIZE, .userspace_addr = (uintptr_t)m->ram,
	};

	if (ioctl(m->fd, KVM_SET_USER_MEMORY_REGION, &r))
		die("KVM_SET_USER_MEMORY_REGION");
	m->slot_flags = flags;
}

/* Guest notifications to xi_vblk through KVM (@direct) or to this VMM. */
static void kick_route(struct vm *m, bool direct)
{
	struct kvm_ioeventfd k = {
		.addr = VMMIO_BASE + VIRTIO_MMIO_QUEUE_NOTIFY,
		.len = 4,
		.fd = m->kick,
		.flags = direct ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	if (ioctl(m->fd, KVM_IOEVENTFD, &k))
		die("KVM_IOEVENTFD");
}

/* @dev: an open /dev/xi_vblk (kept by the caller) or -1 to open one. */
static void vm_create(struct vm *m, const char *jobs, int dev, bool sg)
{
	struct kvm_pit_config pit = {};
	struct kvm_irqfd irqfd = {};
	char cmdline[CMDLINE_MAX];

	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	m->sg = sg;
	m->t_start = now();
	m->dev = dev >= 0 ? dev : open("/dev/xi_vblk", O_RDWR | O_CLOEXEC);
	if (m->dev < 0)
		die("open /dev/xi_vblk (is xi_vblk.ko loaded?)");
	m->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->kvm < 0)
		die("open /dev/kvm");
	m->fd = ioctl(m->kvm, KVM_CREATE_VM, 0);
	if (m->fd < 0)
		die("KVM_CREATE_VM");
	/* Intel needs these below 4 GiB, out of RAM; AMD ignores them. */
	ioctl(m->fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	if (ioctl(m->fd, KVM_CREATE_IRQCHIP, 0))
		die("KVM_CREATE_IRQCHIP");
	if (ioctl(m->fd, KVM_CREATE_PIT2, &pit))
		die("KVM_CREATE_PIT2");

	m->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->ram == MAP_FAILED)
		die("mmap guest RAM");
	set_slot(m, 0);

	m->vcpu = ioctl(m->fd, KVM_CREATE_VCPU, 0);
	if (m->vcpu < 0)
		die("KVM_CREATE_VCPU");
	m->run_size = ioctl(m->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	m->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      m->vcpu, 0);
	if (m->run == MAP_FAILED)
		die("mmap kvm_run");

	/* Notifications straight to xi_vblk, interrupts straight to KVM. */
	m->kick = eventfd(0, EFD_CLOEXEC);
	m->call = eventfd(0, EFD_CLOEXEC);
	if (m->kick < 0 || m->call < 0)
		die("eventfd");
	kick_route(m, true);
	irqfd.fd = m->call;
	irqfd.gsi = VMMIO_GSI;
	if (ioctl(m->fd, KVM_IRQFD, &irqfd))
		die("KVM_IRQFD");

	m->mmio.config.capacity = DISK_SECTORS;
	m->mmio.config.size_max = SIZE_MAX_BYTES;
	m->mmio.config.seg_max = SEG_MAX;
	m->mmio.config.blk_size = 512;

	/*
	 * noapictimer: the PIT (in KVM) ticks; calibrating the APIC timer
	 * against it fails under nested emulation, with a warning.
	 */
	snprintf(cmdline, sizeof(cmdline),
		 "console=ttyS0 reboot=k panic=-1 rdinit=/init virtio_mmio.device=4K@0x%llx:%d memmap=%lluM$0x%llx 8250.nr_uarts=1 noapictimer xi.job=%s",
		 VMMIO_BASE, VMMIO_GSI, RESERVED_SIZE / MiB, RESERVED_GPA, jobs);
	load_linux(m, KERNEL_PATH, INITRD_PATH, cmdline);
	setup_vcpu(m);
}

static void vm_destroy(struct vm *m, bool close_dev)
{
	pthread_mutex_lock(&m->lock);
	vmmio_reset(m);
	pthread_mutex_unlock(&m->lock);
	close(m->kick);
	close(m->call);
	/* The mapping holds the vCPU file, hence the VM. */
	munmap(m->run, m->run_size);
	close(m->vcpu);
	close(m->fd);
	close(m->kvm);
	munmap(m->ram, RAM_SIZE);
	if (close_dev)
		close(m->dev);
	free(m->console);
	m->console = NULL;
}

static void on_sigusr1(int sig)
{
}

/* Run the vCPU until the guest powers off, fails, or a stop is asked. */
static void *vcpu_loop(void *arg)
{
	struct vm *m = arg;
	struct kvm_run *r = m->run;

	for (;;) {
		while (READ_ONCE(m->pause_req) && !READ_ONCE(m->stop_req)) {
			WRITE_ONCE(m->paused, true);
			usleep(1000);
		}
		WRITE_ONCE(m->paused, false);
		if (READ_ONCE(m->stop_req))
			break;
		if (ioctl(m->vcpu, KVM_RUN, 0)) {
			if (errno == EINTR && READ_ONCE(m->nudged)) {
				struct kvm_regs regs;

				/* Setting the registers makes KVM look at events. */
				WRITE_ONCE(m->nudged, false);
				if (ioctl(m->vcpu, KVM_GET_REGS, &regs) ||
				    ioctl(m->vcpu, KVM_SET_REGS, &regs))
					die("KVM_GET/SET_REGS");
			}
			WRITE_ONCE(r->immediate_exit, 0);
			if (errno == EINTR || errno == EAGAIN)
				continue;
			m->fail = "KVM_RUN failed";
			break;
		}
		WRITE_ONCE(m->exits, m->exits + 1);
		pthread_mutex_lock(&m->lock);
		switch (r->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *data = (uint8_t *)r + r->io.data_offset;
			bool wr = r->io.direction == KVM_EXIT_IO_OUT;
			uint32_t i;

			for (i = 0; i < r->io.count; i++, data += r->io.size) {
				if (r->io.port >= COM1 && r->io.port < COM1 + 8 &&
				    r->io.size == 1)
					uart_io(m, r->io.port, data, wr);
				else if (r->io.port == KBD_CMD && wr &&
					 *data == 0xfe)
					m->powered_off = true;
				else if (!wr)
					memset(data, 0, r->io.size);
			}
			break;
		}
		case KVM_EXIT_MMIO:
			if (r->mmio.phys_addr >= VMMIO_BASE &&
			    r->mmio.phys_addr < VMMIO_BASE + VMMIO_SIZE &&
			    r->mmio.len <= 8)
				vmmio_access(m, r->mmio.phys_addr - VMMIO_BASE,
					     r->mmio.data, r->mmio.len,
					     r->mmio.is_write);
			else if (!r->mmio.is_write)
				memset(r->mmio.data, 0, sizeof(r->mmio.data));
			break;
		case KVM_EXIT_SHUTDOWN:
			m->shutdown = true;
			break;
		case KVM_EXIT_INTR:
			break;
		default:
			m->fail = "unexpected exit";
			fprintf(stderr, "xinterface_linux: exit reason %u\n",
				r->exit_reason);
			break;
		}
		pthread_mutex_unlock(&m->lock);
		if (m->powered_off || m->shutdown || m->fail)
			break;
	}
	if (m->line_len)
		console_line(m);
	m->t_off = now();
	WRITE_ONCE(m->vcpu_done, true);
	return NULL;
}

/*
 * Under TCG's nested SVM an interrupt the in-kernel PIC holds can stay
 * undelivered: seen here with IRQ 5 (and the PIT's IRQ 0) pending and
 * unmasked in the PIC, ISR clear, LVT0 in ExtINT mode, the vCPU runnable
 * with IF set, the guest in its idle HLT for good (a stalled disk).  The
 * likely cause is the interrupt-window exit KVM asks for (V_IRQ with the
 * VINTR intercept) never coming from QEMU's emulation of nested SVM: a
 * HLT exit with events pending goes straight back into the guest without
 * KVM_REQ_EVENT, so KVM waits for that window exit.  A signal alone does
 * not help (KVM_RUN does not set KVM_REQ_EVENT); KVM_SET_REGS does, and
 * the interrupt is injected.  So when the vCPU made no exit to userspace
 * for 50 ms, it is sent a signal and its registers are set to what they
 * are; the report counts these nudges.  Nothing but latency depends on
 * them.
 */
static void *nudge_loop(void *arg)
{
	struct vm *m = arg;
	uint64_t seen = ~0ull;

	while (!READ_ONCE(m->vcpu_done)) {
		usleep(50000);
		if (READ_ONCE(m->exits) == seen && !READ_ONCE(m->paused) &&
		    !READ_ONCE(m->vcpu_done)) {
			WRITE_ONCE(m->nudged, true);
			pthread_kill(m->vcpu_thread, SIGUSR1);
			m->nudges++;
		}
		seen = READ_ONCE(m->exits);
	}
	return NULL;
}

static void vcpu_start(struct vm *m)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };

	sigaction(SIGUSR1, &sa, NULL);
	WRITE_ONCE(m->vcpu_done, false);
	if (pthread_create(&m->vcpu_thread, NULL, vcpu_loop, m) ||
	    pthread_create(&m->nudge_thread, NULL, nudge_loop, m))
		die("pthread_create");
}

static void vcpu_pause(struct vm *m, bool pause)
{
	WRITE_ONCE(m->pause_req, pause);
	/* Until the vCPU thread saw it: no stale acknowledgment. */
	while (READ_ONCE(m->paused) != pause && !READ_ONCE(m->vcpu_done)) {
		if (pause) {
			WRITE_ONCE(m->run->immediate_exit, 1);
			pthread_kill(m->vcpu_thread, SIGUSR1);
		}
		usleep(1000);
	}
}

static void vcpu_stop(struct vm *m)
{
	WRITE_ONCE(m->stop_req, true);
	/* A signal before KVM_RUN is entered would be lost without this. */
	WRITE_ONCE(m->run->immediate_exit, 1);
	pthread_kill(m->vcpu_thread, SIGUSR1);
	pthread_join(m->vcpu_thread, NULL);
	pthread_join(m->nudge_thread, NULL);
}

/* Where a guest that timed out stands: the vCPU, the PIC, the LAPIC. */
static void dump_stuck(struct vm *m)
{
	struct kvm_irqchip chip = { .chip_id = 0 };
	struct kvm_vcpu_events ev;
	struct kvm_lapic_state la;
	struct kvm_mp_state mp;
	struct kvm_regs regs;

	if (!ioctl(m->vcpu, KVM_GET_REGS, &regs))
		printf("  guest timed out at rip 0x%llx rflags 0x%llx\n",
		       (unsigned long long)regs.rip,
		       (unsigned long long)regs.rflags);
	if (!ioctl(m->vcpu, KVM_GET_MP_STATE, &mp) &&
	    !ioctl(m->vcpu, KVM_GET_VCPU_EVENTS, &ev))
		printf("  mp_state %u irq %u/%u shadow %u nmi %u\n",
		       mp.mp_state, ev.interrupt.injected, ev.interrupt.nr,
		       ev.interrupt.shadow, ev.nmi.pending);
	if (!ioctl(m->fd, KVM_GET_IRQCHIP, &chip))
		printf("  PIC: irr 0x%x imr 0x%x isr 0x%x elcr 0x%x\n",
		       chip.chip.pic.irr, chip.chip.pic.imr,
		       chip.chip.pic.isr, chip.chip.pic.elcr);
	if (!ioctl(m->vcpu, KVM_GET_LAPIC, &la))
		printf("  LAPIC: svr 0x%x lvt0 0x%x isr2 0x%x irr2 0x%x\n",
		       *(uint32_t *)(la.regs + 0xf0),
		       *(uint32_t *)(la.regs + 0x350),
		       *(uint32_t *)(la.regs + 0x120),
		       *(uint32_t *)(la.regs + 0x220));
}

/* Boot with @jobs and wait for the guest to power off (or @secs). */
static bool vm_boot_wait(struct vm *m, double secs)
{
	double t0 = now();

	vcpu_start(m);
	while (!READ_ONCE(m->vcpu_done)) {
		if (now() - t0 > secs) {
			vcpu_stop(m);
			m->fail = "timeout";
			dump_stuck(m);
			return false;
		}
		usleep(20000);
	}
	pthread_join(m->vcpu_thread, NULL);
	pthread_join(m->nudge_thread, NULL);
	return m->powered_off;
}

static unsigned int count_lines(const struct vm *m, const char *what)
{
	const char *p = m->console;
	unsigned int n = 0;

	while (p && (p = strstr(p, what))) {
		n++;
		p += strlen(what);
	}
	return n;
}

/*
 * The guest's verdict: exactly one "done N ok, M failed" line, M == 0, N
 * the number of "ok" lines seen, no "FAIL" line, and at least @min_ok.
 */
static bool guest_done(const struct vm *m, unsigned int min_ok)
{
	const char *p = m->console ? strstr(m->console, "XI-GUEST done ") : NULL;
	unsigned int ok, failed;

	if (!p || count_lines(m, "XI-GUEST done ") != 1 ||
	    sscanf(p, "XI-GUEST done %u ok, %u failed", &ok, &failed) != 2)
		return false;
	return !failed && !count_lines(m, "XI-GUEST FAIL") &&
	       ok == count_lines(m, "XI-GUEST ok ") && ok >= min_ok;
}

/* Read the disk back and let e2fsck judge it; returns e2fsck's status. */
static int check_fs(struct vm *m, char *summary, size_t size)
{
	static uint8_t buf[XI_VBLK_MAX_REQUEST];
	struct xi_vblk_disk_io io = { .len = sizeof(buf), .buf = (uintptr_t)buf };
	char cmd[256];
	FILE *p;
	int fd, st;

	fd = open(DISK_IMAGE, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("open %s", DISK_IMAGE);
	for (io.offset = 0; io.offset < DISK_SECTORS * 512; io.offset += io.len) {
		if (ioctl(m->dev, XI_VBLK_READ_DISK, &io))
			die("XI_VBLK_READ_DISK");
		if (write(fd, buf, io.len) != (ssize_t)io.len)
			die("write %s", DISK_IMAGE);
	}
	close(fd);
	snprintf(cmd, sizeof(cmd), "%s -fn %s 2>&1", E2FSCK_PATH, DISK_IMAGE);
	p = popen(cmd, "r");
	if (!p)
		die("popen %s", cmd);
	summary[0] = 0;
	while (fgets(cmd, sizeof(cmd), p)) {
		cmd[strcspn(cmd, "\n")] = 0;
		printf("  e2fsck| %s\n", cmd);
		/* The last line is the summary (files, blocks). */
		snprintf(summary, size, "%s", cmd);
	}
	st = pclose(p);
	unlink(DISK_IMAGE);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void report(struct vm *m)
{
	struct xi_vblk_stats s = total_stats(m), *a = &m->fs_start_stats,
			     *b = &m->fs_end_stats;
	double fs = m->t_fs_end - m->t_fs_start;

	printf("  guest: /init reached %.2f s after VMM start, powered off after %.2f s\n",
	       m->t_init ? m->t_init - m->t_start : -1, m->t_off - m->t_start);
	if (m->t_fs_start && m->t_fs_end > m->t_fs_start)
		printf("  file system round trip: %.2f s, %llu requests, %.2f MiB/s\n"
		       "    (%.1f MiB to the disk, %.1f MiB from it)\n",
		       fs, (unsigned long long)(b->requests - a->requests),
		       (b->bytes_written - a->bytes_written +
			b->bytes_read - a->bytes_read) / (double)MiB / fs,
		       (b->bytes_written - a->bytes_written) / (double)MiB,
		       (b->bytes_read - a->bytes_read) / (double)MiB);
	printf("  device: %llu requests (%llu bad), %llu B read, %llu B written\n",
	       (unsigned long long)s.requests,
	       (unsigned long long)s.bad_requests,
	       (unsigned long long)s.bytes_read,
	       (unsigned long long)s.bytes_written);
	printf("  virtio-mmio: %u queue starts, %u resets, %u set-ups refused\n",
	       m->mmio.starts, m->mmio.resets, m->mmio.setup_errors);
	printf("  VMM: %llu vCPU exits to userspace, %llu nudges of a quiet vCPU\n",
	       (unsigned long long)m->exits, (unsigned long long)m->nudges);
	printf("  kthread (last start): %llu wakeups, %llu batches, %llu calls, %llu refreshes\n",
	       (unsigned long long)s.wakeups, (unsigned long long)s.batches,
	       (unsigned long long)s.calls,
	       (unsigned long long)s.ring_refreshes);
	printf("  kthread: cache %llu/%llu hits/misses, %llu ring errors, state %u %u\n",
	       (unsigned long long)s.cache_hits,
	       (unsigned long long)s.cache_misses,
	       (unsigned long long)s.ring_errors, s.state, s.error);
}

/* ---- the main job: one boot, a report ---- */

static int run_once(const char *jobs, bool sg)
{
	char summary[256];
	struct vm m;
	bool ok;
	int fsck;

	printf("  VMM: booting %s with %s (xi.job=%s), disk %llu MiB served by xi_vblk%s\n",
	       KERNEL_PATH, INITRD_PATH, jobs, DISK_SECTORS * 512 / MiB,
	       sg ? " (sg data path)" : "");
	vm_create(&m, jobs, -1, sg);
	ok = vm_boot_wait(&m, boot_timeout);
	if (!ok)
		printf("  guest did not power off: %s\n", m.fail ? m.fail : "shutdown");
	ok = ok && guest_done(&m, 1);
	fsck = 0;
	if (strstr(jobs, "fs")) {
		fsck = m.mmio.starts ? check_fs(&m, summary, sizeof(summary)) : -1;
		printf("  e2fsck -fn: %s (exit %d)\n", fsck ? "ERRORS" : "clean", fsck);
	}
	report(&m);
	ok = ok && !fsck && !total_stats(&m).bad_requests;
	printf("  result: %s\n", ok ? "PASS" : "FAIL");
	vm_destroy(&m, true);
	return ok ? 0 : 1;
}

/* ---- the kselftest ---- */

static unsigned int tap_n, tap_fail;

static __printf(2, 3) void tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %u - ", ok ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		tap_fail++;
}

/* The guest's own verdicts, one TAP line each. */
static void tap_guest(const struct vm *m, const char *prefix)
{
	const char *p = m->console, *e;
	char line[512];

	while (p && (p = strstr(p, "XI-GUEST "))) {
		e = strchr(p, '\n');
		if (!e)
			e = p + strlen(p);
		snprintf(line, sizeof(line), "%.*s", (int)(e - p), p);
		if (!strncmp(line, "XI-GUEST ok ", 12))
			tap(true, "%s: guest: %s", prefix, line + 12);
		else if (!strncmp(line, "XI-GUEST FAIL ", 14))
			tap(false, "%s: guest: %s", prefix, line + 14);
		p = e;
	}
}

static void test_fs(bool sg)
{
	const char *what = sg ? "real guest (sg)" : "real guest";
	struct xi_vblk_stats s;
	char summary[256];
	struct vm m;
	bool off;
	int fsck;

	vm_create(&m, sg ? "raw,fs" : "raw,fs,reset", -1, sg);
	off = vm_boot_wait(&m, 300);
	tap(off, "%s: booted and powered off (%.1f s, %s)", what,
	    m.t_off - m.t_start, m.fail ? m.fail : "ok");
	tap(count_lines(&m, "virtio_blk virtio0: [vda]") == (sg ? 1u : 2u),
	    "%s: Linux's virtio_blk found the xi_vblk disk [vda]", what);
	tap_guest(&m, what);
	/* raw 5, fs 8, reset 5 verdicts */
	tap(guest_done(&m, sg ? 13 : 18), "%s: the guest's jobs all ran and passed", what);
	fsck = check_fs(&m, summary, sizeof(summary));
	tap(!fsck, "%s: e2fsck -fn of the disk: clean (exit %d: %s)", what,
	    fsck, summary);
	s = total_stats(&m);
	tap(s.requests && s.bytes_read && s.bytes_written && !s.bad_requests &&
	    !m.mmio.setup_errors,
	    "%s: device: %llu requests, %llu bad, %llu B read, %llu B written, %u setup errors",
	    what, (unsigned long long)s.requests,
	    (unsigned long long)s.bad_requests,
	    (unsigned long long)s.bytes_read,
	    (unsigned long long)s.bytes_written, m.mmio.setup_errors);
	if (!sg)
		tap(m.mmio.resets >= 2 && m.mmio.starts == 2,
		    "%s: the driver reset the device and set it up again (resets %u, starts %u)",
		    what, m.mmio.resets, m.mmio.starts);
	vm_destroy(&m, true);
}

/* A guest program drives the registers itself, wrongly, then recovers. */
static void test_malformed(void)
{
	const char *what = "malformed driver";
	struct xi_vblk_stats s;
	struct vm m;
	bool off;

	vm_create(&m, "bad", -1, false);
	off = vm_boot_wait(&m, 300);
	tap(off, "%s: guest powered off (%s)", what, m.fail ? m.fail : "ok");
	tap_guest(&m, what);
	/* 16 of xi-bad, 4 around it */
	tap(guest_done(&m, 20), "%s: the guest's cases all ran and passed", what);
	s = total_stats(&m);
	tap(m.mmio.setup_errors == 6 && s.bad_requests == 2 &&
	    m.mmio.starts == 3,
	    "%s: VMM: %u set-ups refused (last errno %d), %llu requests failed alone, %u queues started (the boot, xi-bad, the driver again)",
	    what, m.mmio.setup_errors, m.mmio.start_errno,
	    (unsigned long long)s.bad_requests, m.mmio.starts);
	vm_destroy(&m, true);
}

static long module_refcnt(const char *mod)
{
	char path[128];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", mod);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

static const char *vendor(void)
{
	return module_refcnt("kvm_amd") >= 0 ? "kvm_amd" : "kvm_intel";
}

static bool wait_stats(int dev, bool (*cond)(const struct xi_vblk_stats *),
		       double secs)
{
	double t0 = now();

	while (!cond((struct xi_vblk_stats[]){ fd_stats(dev) })) {
		if (now() - t0 > secs)
			return false;
		usleep(20000);
	}
	return true;
}

static bool busy(const struct xi_vblk_stats *s)
{
	return s->state == XI_VBLK_RUNNING && s->bytes_read > 4 * MiB;
}

static bool dead(const struct xi_vblk_stats *s)
{
	return s->state == XI_VBLK_DEAD;
}

/* The VMM is killed while its guest keeps the disk busy. */
static void test_vmm_exit(void)
{
	const char *what = "VMM exit mid-I/O";
	long vendor_refs = module_refcnt(vendor()), sample_refs;
	struct xi_vblk_stats s;
	double t0;
	int dev, st;
	pid_t pid;
	bool ok;

	dev = open("/dev/xi_vblk", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		die("open /dev/xi_vblk");
	sample_refs = module_refcnt("xi_vblk");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		struct vm m;

		vm_create(&m, "busy", dev, false);
		vm_boot_wait(&m, 600);
		_exit(2);
	}
	ok = wait_stats(dev, busy, 300);
	s = fd_stats(dev);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	tap(ok && WIFSIGNALED(st),
	    "%s: VMM killed while the guest's I/O ran (%llu requests, %llu B read)",
	    what, (unsigned long long)s.requests,
	    (unsigned long long)s.bytes_read);
	ok = wait_stats(dev, dead, 30);
	s = fd_stats(dev);
	tap(ok && s.error == ESRCH,
	    "%s: the kthread stopped by itself with ESRCH (state %u, error %u)",
	    what, s.state, s.error);
	t0 = now();
	while ((module_refcnt(vendor()) != vendor_refs ||
		module_refcnt("xi_vblk") != sample_refs) && now() - t0 < 30)
		usleep(20000);
	tap(module_refcnt(vendor()) == vendor_refs &&
	    module_refcnt("xi_vblk") == sample_refs,
	    "%s: the orphaned VM is freed (%s refcnt %ld, was %ld)", what,
	    vendor(), module_refcnt(vendor()), vendor_refs);
	tap(!ioctl(dev, XI_VBLK_STOP) && fd_stats(dev).state == XI_VBLK_IDLE,
	    "%s: stop after the kthread died", what);
	close(dev);
}

/* All requests the guest posted are completed and the device is idle. */
static bool quiesce(struct vm *m, double secs)
{
	struct vmmio *d = &m->mmio;
	double t0 = now();
	uint64_t last = ~0ull;

	for (;;) {
		struct xi_vblk_stats s = dev_stats(m);
		u16 *avail_idx, *used_idx;

		pthread_mutex_lock(&m->lock);
		if (!d->started) {
			pthread_mutex_unlock(&m->lock);
			return false;
		}
		avail_idx = (void *)(m->ram + d->q_driver + 2);
		used_idx = (void *)(m->ram + d->q_device + 2);
		pthread_mutex_unlock(&m->lock);
		if (READ_ONCE(*avail_idx) == READ_ONCE(*used_idx) &&
		    s.requests == last)
			return true;
		last = s.requests;
		if (now() - t0 > secs)
			return false;
		usleep(20000);
	}
}

static bool test_bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] & (1ull << (i % 64));
}

/* Pages that differ from @snap; *bad counts those not in the log. */
static uint64_t changed_pages(struct vm *m, const uint8_t *snap,
			      struct kvm_dirty_log *log, uint64_t *bad)
{
	const uint64_t *bm = log->dirty_bitmap;
	uint64_t i, changed = 0;

	if (ioctl(m->fd, KVM_GET_DIRTY_LOG, log))
		die("KVM_GET_DIRTY_LOG");
	for (i = 0; i < RAM_SIZE / 4096; i++) {
		if (!memcmp(snap + i * 4096, m->ram + i * 4096, 4096))
			continue;
		changed++;
		if (!test_bit(bm, i)) {
			if (!*bad)
				printf("# page 0x%llx changed, not in the log\n",
				       (unsigned long long)i * 4096);
			(*bad)++;
		}
	}
	return changed;
}

/*
 * The guest keeps the disk busy while dirty logging is switched on and
 * off.  Each round has two windows, both checked against a copy of guest
 * memory: the vCPU and the device together, then the device alone (the
 * guest's kicks held back by the VMM while it posts, the vCPU stopped,
 * then the kick let through: whatever changes was written by the xi_vblk
 * kthread).  Every changed page must be in KVM_GET_DIRTY_LOG, and the
 * device-only window must have caught device writes in some round.
 */
static void test_dirty_log(bool sg)
{
	const char *what = sg ? "dirty log (sg)" : "dirty log";
	uint64_t bad = 0, changed = 0, dev_changed = 0, dev_rounds = 0;
	uint64_t pages = RAM_SIZE / 4096, dev_bytes = 0;
	struct kvm_dirty_log log = { .slot = 0 };
	uint64_t *bm = calloc(pages / 64, 8);
	uint8_t *snap = malloc(RAM_SIZE);
	struct xi_vblk_stats a, b;
	int round, rounds_io = 0;
	bool ok = true;
	struct vm m;
	double t0;

	if (!bm || !snap)
		die("malloc");
	log.dirty_bitmap = bm;
	vm_create(&m, "busy", -1, sg);
	vcpu_start(&m);
	t0 = now();
	while (!busy((struct xi_vblk_stats[]){ dev_stats(&m) }) && !m.fail &&
	       now() - t0 < 300)
		usleep(20000);
	ok = busy((struct xi_vblk_stats[]){ dev_stats(&m) });
	tap(ok, "%s: the guest keeps the disk busy", what);
	/* At least 4 rounds; more until the device-only window caught one. */
	for (round = 0; ok && round < 16 && (round < 4 || !dev_rounds); round++) {
		uint64_t one = 1, c;

		/* The vCPU and the device, from a quiet point, logging on. */
		vcpu_pause(&m, true);
		ok = quiesce(&m, 10);
		set_slot(&m, KVM_MEM_LOG_DIRTY_PAGES);
		if (ioctl(m.fd, KVM_GET_DIRTY_LOG, &log))
			die("KVM_GET_DIRTY_LOG");
		memcpy(snap, m.ram, RAM_SIZE);
		a = dev_stats(&m);
		vcpu_pause(&m, false);
		usleep(1000 * 1000);
		vcpu_pause(&m, true);
		ok = ok && quiesce(&m, 10);
		b = dev_stats(&m);
		changed += changed_pages(&m, snap, &log, &bad);
		dev_bytes += b.bytes_read - a.bytes_read;
		rounds_io += b.bytes_read > a.bytes_read;

		/*
		 * The device alone: notifications come to this VMM for a
		 * while, the guest posts and waits; with the vCPU stopped and
		 * a copy of memory taken, the held kick goes to xi_vblk.
		 */
		pthread_mutex_lock(&m.lock);
		kick_route(&m, false);
		m.hold_kicks = true;
		m.held_kicks = 0;
		pthread_mutex_unlock(&m.lock);
		vcpu_pause(&m, false);
		usleep(200 * 1000);
		vcpu_pause(&m, true);
		if (ioctl(m.fd, KVM_GET_DIRTY_LOG, &log))
			die("KVM_GET_DIRTY_LOG");
		memcpy(snap, m.ram, RAM_SIZE);
		pthread_mutex_lock(&m.lock);
		m.hold_kicks = false;
		kick_route(&m, true);
		if (m.held_kicks && write(m.kick, &one, sizeof(one)) != sizeof(one))
			die("write kick eventfd");
		pthread_mutex_unlock(&m.lock);
		ok = ok && quiesce(&m, 10);
		c = changed_pages(&m, snap, &log, &bad);
		dev_changed += c;
		dev_rounds += c > 0;

		/* Logging off for a while, the guest still busy. */
		set_slot(&m, 0);
		vcpu_pause(&m, false);
		usleep(300 * 1000);
	}
	tap(ok && !bad && rounds_io == round,
	    "%s: %d rounds: %llu pages changed by vCPU and device, all logged; %llu B from the disk",
	    what, round, (unsigned long long)changed,
	    (unsigned long long)dev_bytes);
	tap(ok && !bad && dev_rounds,
	    "%s: %llu pages changed by the device alone (in %llu rounds), all logged",
	    what, (unsigned long long)dev_changed,
	    (unsigned long long)dev_rounds);
	vcpu_stop(&m);
	tap(!m.fail && !total_stats(&m).bad_requests,
	    "%s: no bad requests, no VMM error (%s)", what,
	    m.fail ? m.fail : "ok");
	vm_destroy(&m, true);
	free(bm);
	free(snap);
}

static int kselftest(void)
{
	long refs;
	double t0;

	printf("TAP version 13\n");
	refs = module_refcnt(vendor());
	test_fs(false);
	test_fs(true);
	test_malformed();
	test_vmm_exit();
	test_dirty_log(false);
	test_dirty_log(true);
	/* Every case's VM is gone (the VMs are freed asynchronously). */
	t0 = now();
	while (module_refcnt(vendor()) != refs && now() - t0 < 30)
		usleep(20000);
	tap(module_refcnt(vendor()) == refs,
	    "no VM left behind: %s refcnt %ld, %ld before the first case",
	    vendor(), module_refcnt(vendor()), refs);
	printf("1..%u\n", tap_n);
	printf("# %u passed, %u failed\n", tap_n - tap_fail, tap_fail);
	return tap_fail ? 1 : 0;
}

int main(int argc, char *argv[])
{
	const char *jobs = "raw,fs";
	bool sg = false, test = false;
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "j:gvt:T")) != -1) {
		switch (c) {
		case 'j':
			jobs = optarg;
			break;
		case 'g':
			sg = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 't':
			boot_timeout = atof(optarg);
			break;
		case 'T':
			test = true;
			break;
		default:
			fprintf(stderr, "usage: %s [-j jobs] [-g] [-v] [-t secs] | -T\n",
				argv[0]);
			return 2;
		}
	}
	return test ? kselftest() : run_once(jobs, sg);
}
