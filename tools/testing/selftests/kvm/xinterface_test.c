// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvm_xinterface end-to-end test, through lib/test_xinterface.c.
 *
 * The guest runs a small command loop (fill a range with a pattern, or
 * verify a range against one) so every host write is checked by what the
 * guest itself reads, and every host read is compared with what the guest
 * wrote.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"

#include "../../../../lib/test_xinterface_uapi.h"

#define PG		4096ul
#define GVA_OFF		BIT_ULL(40)	/* guest virtual = gpa + GVA_OFF */

#define SLOT_A		10		/* SLOT_A and SLOT_B are adjacent */
#define GPA_A		0x10000000ull
#define PAGES_A		16
#define SLOT_B		11
#define GPA_B		(GPA_A + PAGES_A * PG)
#define PAGES_B		16
#define GPA_HOLE	(GPA_B + PAGES_B * PG)
#define SLOT_RO		12
#define GPA_RO		0x10100000ull
#define PAGES_RO	4
#define SLOT_DIRTY	13
#define GPA_DIRTY	0x10200000ull
#define PAGES_DIRTY	16
#define SLOT_THP	14
#define GPA_THP		0x10400000ull
#define PAGES_THP	512
#define SLOT_RACE	20
#define GPA_RACE	0x11000000ull
#define PAGES_RACE	2
#define SLOT_PRIV	10
#define GPA_PRIV	0x10000000ull
#define PAGES_PRIV	4

enum { G_FILL = 1, G_VERIFY = 2, G_ZERO = 3 };

struct guest_cmd {
	uint64_t op, gpa, len, seed;
};

static struct guest_cmd cmd;

static uint8_t pat(uint64_t addr, uint64_t seed)
{
	return xi_test_pat(addr, seed);
}

static void guest_code(void)
{
	uint64_t res = 0;

	for (;;) {
		uint8_t *p;
		uint64_t i;

		GUEST_SYNC(res);
		p = (uint8_t *)(READ_ONCE(cmd.gpa) + GVA_OFF);
		res = 0;
		for (i = 0; i < cmd.len; i++) {
			if (READ_ONCE(cmd.op) == G_FILL)
				WRITE_ONCE(p[i], pat(cmd.gpa + i, cmd.seed));
			else if (READ_ONCE(cmd.op) == G_ZERO)
				res += READ_ONCE(p[i]) != 0;
			else if (READ_ONCE(p[i]) != pat(cmd.gpa + i, cmd.seed))
				res++;
		}
	}
}

/* ---- TAP ---- */

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

static void tap_skip(const char *what, const char *why)
{
	ksft_test_result_skip("%s: %s\n", what, why);
	fflush(stdout);
}

/* ---- guest and module helpers ---- */

static struct kvm_vcpu *vcpu_main;

/* Run one guest command; returns the guest's result (mismatches). */
static uint64_t guest_exec(struct kvm_vm *vm, struct kvm_vcpu *vcpu,
			   uint64_t op, uint64_t gpa, uint64_t len,
			   uint64_t seed)
{
	struct ucall uc;

	cmd = (struct guest_cmd){ op, gpa, len, seed };
	sync_global_to_guest(vm, cmd);
	vcpu_run(vcpu);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		return uc.args[1];
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected exit %d", vcpu->run->exit_reason);
	}
	return ~0ull;
}

static int xi_open(void)
{
	int fd = open("/dev/test_xinterface", O_RDWR);

	if (fd < 0)
		ksft_exit_skip("/dev/test_xinterface: %s (load test_xinterface.ko)\n",
			       strerror(errno));
	return fd;
}

static int xi_bind(int xf, int vmfd)
{
	return ioctl(xf, XI_TEST_BIND, &vmfd) ? -errno : 0;
}

static int xi_unbind(int xf)
{
	return ioctl(xf, XI_TEST_UNBIND) ? -errno : 0;
}

static int xi_copy(int xf, int ctx, int write, uint64_t gpa, void *buf,
		   size_t len)
{
	struct xi_test_copy c = {
		.gpa = gpa, .buf = (uintptr_t)buf, .len = len,
		.write = write, .ctx = ctx,
	};

	return ioctl(xf, XI_TEST_COPY, &c) ? -errno : 0;
}

/*
 * The foreign-mm context: a forked child (its own mm, not the VM's) makes
 * the call in its own ioctl context; the buffer is shared with the parent.
 */
#define CTX_FOREIGN	XI_TEST_CTX_NR
static const char * const ctx_name[] = {
	"caller", "kthread", "workqueue", "foreign-process",
};

static int xi_copy_any(int xf, int ctx, int write, uint64_t gpa, void *buf,
		       size_t len)
{
	int *shared_ret;
	void *shared;
	pid_t pid;
	int ret;

	if (ctx != CTX_FOREIGN)
		return xi_copy(xf, ctx, write, gpa, buf, len);

	shared = mmap(NULL, len + PG, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(shared != MAP_FAILED, "mmap");
	shared_ret = shared + len;
	memcpy(shared, buf, len);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		*shared_ret = xi_copy(xf, XI_TEST_CTX_CALLER, write, gpa,
				      shared, len);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	ret = *shared_ret;
	memcpy(buf, shared, len);
	munmap(shared, len + PG);
	return ret;
}

static void fill(uint8_t *buf, uint64_t gpa, size_t len, uint64_t seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = pat(gpa + i, seed);
}

static size_t mismatches(const uint8_t *buf, uint64_t gpa, size_t len,
			 uint64_t seed)
{
	size_t i, bad = 0;

	for (i = 0; i < len; i++)
		bad += buf[i] != pat(gpa + i, seed);
	return bad;
}

/* ---- the cases ---- */

static int xi_vmap(int xf, uint64_t gpa, uint64_t len, uint32_t flags);
static int xi_vmap_rw(int xf, int ctx, int write, uint64_t off, void *buf,
		      size_t len, uint32_t *refreshes);
static int xi_sg(int xf, int ctx, int dir, struct xi_test_range *r, int nr,
		 void *buf, size_t len, uint32_t *nents);
enum { DIR_BIDI, DIR_TO_DEV, DIR_FROM_DEV, DIR_NONE };

static void test_bind_errors(int xf, int vmfd)
{
	int nul = open("/dev/null", O_RDWR);
	int kvm = open("/dev/kvm", O_RDWR);
	int closed = dup(nul);
	uint8_t b;

	close(closed);
	tap(xi_bind(xf, closed) == -EBADF, "bind: closed fd gives EBADF");
	tap(xi_bind(xf, -1) == -EBADF, "bind: fd -1 gives EBADF");
	tap(xi_bind(xf, nul) == -EINVAL, "bind: /dev/null gives EINVAL");
	tap(xi_bind(xf, kvm) == -EINVAL,
	    "bind: /dev/kvm (not a VM) gives EINVAL");
	tap(xi_copy(xf, 0, 0, GPA_A, &b, 1) == -ENOTCONN,
	    "copy before bind gives ENOTCONN");
	tap(xi_bind(xf, vmfd) == 0, "bind: VM fd");
	tap(xi_bind(xf, vmfd) == -EBUSY, "bind: second bind gives EBUSY");
	close(nul);
	close(kvm);
}

/*
 * Every context: read what the guest wrote, write what the guest checks,
 * on an unaligned multi-page range crossing from SLOT_A into SLOT_B.
 */
static void test_contexts(struct kvm_vm *vm, int xf)
{
	size_t len = 3 * PG + 1234;
	uint8_t *buf = malloc(len);
	int ctx;

	for (ctx = 0; ctx <= CTX_FOREIGN; ctx++) {
		uint64_t gpa = GPA_B - 2 * PG + 77 + ctx * 13;
		uint64_t s1 = 100 + ctx, s2 = 200 + ctx;
		int ret;

		/* The guest writes s1 over a wider range, the host reads. */
		guest_exec(vm, vcpu_main, G_FILL, gpa - 64, len + 128, s1);
		memset(buf, 0, len);
		ret = xi_copy_any(xf, ctx, 0, gpa, buf, len);
		tap(ret == 0 && !mismatches(buf, gpa, len, s1),
		    "copy_from %s: slot-crossing read matches the guest's writes (ret %d)",
		    ctx_name[ctx], ret);

		/* The host writes s2, the guest checks it and its borders. */
		fill(buf, gpa, len, s2);
		ret = xi_copy_any(xf, ctx, 1, gpa, buf, len);
		tap(ret == 0 && !guest_exec(vm, vcpu_main, G_VERIFY, gpa, len, s2),
		    "copy_to %s: guest sees the slot-crossing write (ret %d)",
		    ctx_name[ctx], ret);
		tap(!guest_exec(vm, vcpu_main, G_VERIFY, gpa - 64, 64, s1) &&
		    !guest_exec(vm, vcpu_main, G_VERIFY, gpa + len, 64, s1),
		    "copy_to %s: bytes around the range untouched",
		    ctx_name[ctx]);
	}
	free(buf);
}

static void test_sizes(struct kvm_vm *vm, int xf)
{
	static const size_t sizes[] = { 1, 7, 8, 64, PG - 1, PG, PG + 1, 1 << 20 };
	uint8_t *buf = malloc(1 << 20);
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		uint64_t gpa = GPA_THP + (i & 1 ? PG - 3 : 0) + i * 8;
		size_t len = sizes[i];
		int ret;

		fill(buf, gpa, len, 300 + i);
		ret = xi_copy(xf, XI_TEST_CTX_KTHREAD, 1, gpa, buf, len);
		tap(ret == 0 && !guest_exec(vm, vcpu_main, G_VERIFY, gpa, len, 300 + i),
		    "THP-backed slot: %zu-byte write at +%#lx seen by guest (ret %d)",
		    len, (unsigned long)(gpa - GPA_THP), ret);
		guest_exec(vm, vcpu_main, G_FILL, gpa, len, 400 + i);
		ret = xi_copy(xf, XI_TEST_CTX_KTHREAD, 0, gpa, buf, len);
		tap(ret == 0 && !mismatches(buf, gpa, len, 400 + i),
		    "THP-backed slot: %zu-byte read matches guest (ret %d)",
		    len, ret);
	}
	free(buf);
}

static void test_bad_ranges(struct kvm_vm *vm, int xf)
{
	uint8_t buf[64] = {};

	tap(xi_copy(xf, 0, 0, GPA_HOLE, buf, 8) == -ENXIO,
	    "hole: read gives ENXIO");
	tap(xi_copy(xf, 1, 1, GPA_HOLE + 100, buf, 8) == -ENXIO,
	    "hole: write gives ENXIO");
	tap(xi_copy(xf, 0, 0, GPA_HOLE - 16, buf, 32) == -ENXIO,
	    "range running from a slot into a hole gives ENXIO");
	tap(xi_copy(xf, 0, 0, ~0ull - 8, buf, 64) == -EOVERFLOW,
	    "gpa + len wrapping gives EOVERFLOW");
	tap(xi_copy(xf, 2, 1, ~0ull - 8, buf, 64) == -EOVERFLOW,
	    "write with gpa + len wrapping gives EOVERFLOW");
	tap(xi_copy(xf, 0, 0, 1ull << 62, buf, 8) == -EOVERFLOW,
	    "gpa beyond the guest physical space gives EOVERFLOW");
	tap(xi_copy(xf, 0, 0, GPA_A, buf, 0) == 0, "zero-length copy is a no-op");
}

static void test_readonly(struct kvm_vm *vm, int xf)
{
	uint8_t *hva = addr_gpa2hva(vm, GPA_RO);
	size_t len = PAGES_RO * PG;
	uint8_t *buf = malloc(len);

	fill(hva, GPA_RO, len, 500);
	tap(!guest_exec(vm, vcpu_main, G_VERIFY, GPA_RO, len, 500),
	    "read-only slot: guest sees the VMM's contents");
	tap(xi_copy(xf, 1, 0, GPA_RO, buf, len) == 0 &&
	    !mismatches(buf, GPA_RO, len, 500),
	    "read-only slot: copy_from allowed and correct");
	fill(buf, GPA_RO, len, 501);
	tap(xi_copy(xf, 1, 1, GPA_RO + 10, buf, 100) == -EROFS,
	    "read-only slot: copy_to gives EROFS");
	tap(!guest_exec(vm, vcpu_main, G_VERIFY, GPA_RO, len, 500),
	    "read-only slot: guest contents unchanged after refused writes");
	free(buf);
}

static void test_dirty_log(struct kvm_vm *vm, int xf)
{
	unsigned long bmap[PAGES_DIRTY / 64 + 1] = {};
	unsigned long want = (1ul << 3) | (1ul << 4) | (1ul << 9) | (1ul << 12);
	uint8_t buf[16];
	int r1, r2, r3;

	kvm_vm_get_dirty_log(vm, SLOT_DIRTY, bmap);	/* clear */
	memset(bmap, 0, sizeof(bmap));
	fill(buf, GPA_DIRTY + 3 * PG + PG - 5, 10, 600);
	r1 = xi_copy(xf, XI_TEST_CTX_KTHREAD, 1, GPA_DIRTY + 3 * PG + PG - 5,
		     buf, 10);
	fill(buf, GPA_DIRTY + 9 * PG, 1, 600);
	r2 = xi_copy(xf, XI_TEST_CTX_CALLER, 1, GPA_DIRTY + 9 * PG, buf, 1);
	fill(buf, GPA_DIRTY + 12 * PG + 100, 16, 600);
	r3 = xi_copy(xf, XI_TEST_CTX_WORKQUEUE, 1, GPA_DIRTY + 12 * PG + 100,
		     buf, 16);
	/* Reads must not dirty anything. */
	xi_copy(xf, XI_TEST_CTX_KTHREAD, 0, GPA_DIRTY + 14 * PG, buf, 16);
	kvm_vm_get_dirty_log(vm, SLOT_DIRTY, bmap);
	tap(!r1 && !r2 && !r3 && bmap[0] == want,
	    "dirty log: host writes set exactly their pages (%#lx, want %#lx)",
	    bmap[0], want);
	tap(!guest_exec(vm, vcpu_main, G_VERIFY, GPA_DIRTY + 4 * PG - 5, 10, 600) &&
	    !guest_exec(vm, vcpu_main, G_VERIFY, GPA_DIRTY + 9 * PG, 1, 600) &&
	    !guest_exec(vm, vcpu_main, G_VERIFY, GPA_DIRTY + 12 * PG + 100, 16, 600),
	    "dirty log: guest sees the logged writes");
}

static void test_dirty_ring(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint8_t buf[32];
	int xf, r;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING) &&
	    !kvm_has_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL)) {
		tap_skip("dirty ring", "KVM_CAP_DIRTY_LOG_RING not supported");
		return;
	}
	/* The ring must be enabled before the vCPU exists. */
	vm = vm_create(1);
	vm_enable_dirty_ring(vm, 0x10000);
	vcpu = vm_vcpu_add(vm, 0, guest_code);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_A, SLOT_A, 4,
				    KVM_MEM_LOG_DIRTY_PAGES);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_B, SLOT_B, 4, 0);
	virt_map(vm, GPA_A + GVA_OFF, GPA_A, 4);
	virt_map(vm, GPA_B + GVA_OFF, GPA_B, 4);
	guest_exec(vm, vcpu, 0, 0, 0, 0);		/* to the first sync */
	guest_exec(vm, vcpu, G_FILL, GPA_A + 0x10, sizeof(buf), 900);

	xf = xi_open();
	TEST_ASSERT(!xi_bind(xf, vm->fd), "bind dirty-ring VM");
	fill(buf, GPA_A + 0x10, sizeof(buf), 901);
	r = xi_copy(xf, XI_TEST_CTX_KTHREAD, 1, GPA_A + 0x10, buf, sizeof(buf));
	tap(r == -EOPNOTSUPP &&
	    !guest_exec(vm, vcpu, G_VERIFY, GPA_A + 0x10, sizeof(buf), 900),
	    "dirty ring: write to a logging slot refused with EOPNOTSUPP, guest memory untouched (ret %d)",
	    r);
	r = xi_copy(xf, XI_TEST_CTX_KTHREAD, 0, GPA_A + 0x10, buf, sizeof(buf));
	tap(r == 0 && !mismatches(buf, GPA_A + 0x10, sizeof(buf), 900),
	    "dirty ring: read of a logging slot matches the guest (ret %d)", r);
	fill(buf, GPA_B + 0x10, sizeof(buf), 902);
	r = xi_copy(xf, XI_TEST_CTX_KTHREAD, 1, GPA_B + 0x10, buf, sizeof(buf));
	tap(r == 0 && !guest_exec(vm, vcpu, G_VERIFY, GPA_B + 0x10, sizeof(buf), 902),
	    "dirty ring: write to a slot without logging seen by the guest (ret %d)",
	    r);
	xi_unbind(xf);
	close(xf);
	kvm_vm_free(vm);
}

static void test_private(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint8_t buf[2 * PG];
	int xf, r;

	if (!(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM))) {
		tap_skip("private memory", "KVM_X86_SW_PROTECTED_VM not supported");
		return;
	}
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};

	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code);
	vm_mem_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_PRIV, SLOT_PRIV, PAGES_PRIV,
		   KVM_MEM_GUEST_MEMFD, -1, 0);
	virt_map(vm, GPA_PRIV + GVA_OFF, GPA_PRIV, PAGES_PRIV);
	vm_mem_set_private(vm, GPA_PRIV, PG);		/* page 0 private */
	guest_exec(vm, vcpu, 0, 0, 0, 0);		/* to the first sync */

	xf = xi_open();
	TEST_ASSERT(!xi_bind(xf, vm->fd), "bind protected VM");
	guest_exec(vm, vcpu, G_FILL, GPA_PRIV, PG, 700);
	tap(!guest_exec(vm, vcpu, G_VERIFY, GPA_PRIV, PG, 700),
	    "private: guest uses its private page");
	tap(xi_copy(xf, XI_TEST_CTX_KTHREAD, 0, GPA_PRIV, buf, 16) == -EPERM,
	    "private: copy_from a private gfn gives EPERM");
	tap(xi_copy(xf, XI_TEST_CTX_CALLER, 1, GPA_PRIV + 8, buf, 16) == -EPERM,
	    "private: copy_to a private gfn gives EPERM");
	tap(xi_copy(xf, XI_TEST_CTX_CALLER, 1, GPA_PRIV + PG - 8, buf, 16) == -EPERM,
	    "private: range from private into shared gives EPERM");
	tap(!guest_exec(vm, vcpu, G_VERIFY, GPA_PRIV, PG, 700),
	    "private: guest's private data unchanged by refused writes");

	fill(buf, GPA_PRIV + PG + 33, PG, 701);
	r = xi_copy(xf, XI_TEST_CTX_WORKQUEUE, 1, GPA_PRIV + PG + 33, buf, PG);
	tap(r == 0 && !guest_exec(vm, vcpu, G_VERIFY, GPA_PRIV + PG + 33, PG, 701),
	    "private: shared gfns of the same slot: guest sees the write (ret %d)",
	    r);
	guest_exec(vm, vcpu, G_FILL, GPA_PRIV + 2 * PG, PG, 702);
	r = xi_copy(xf, XI_TEST_CTX_KTHREAD, 0, GPA_PRIV + 2 * PG, buf, PG);
	tap(r == 0 && !mismatches(buf, GPA_PRIV + 2 * PG, PG, 702),
	    "private: shared gfns of the same slot: read matches guest (ret %d)",
	    r);

	/* vmap and sg follow the same rules. */
	tap(xi_vmap(xf, GPA_PRIV + PG - 8, 16, 0) == -EPERM,
	    "private: vmap of a range with a private gfn gives EPERM");
	tap(xi_sg(xf, 0, DIR_TO_DEV,
		  (struct xi_test_range[]){ { GPA_PRIV + 8, 8 } }, 1, buf, 8,
		  NULL) == -EPERM,
	    "private: sg over a private gfn gives EPERM");
	r = xi_vmap(xf, GPA_PRIV + 2 * PG, PG, 1);
	guest_exec(vm, vcpu, G_FILL, GPA_PRIV + 2 * PG, PG, 704);
	r |= xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, PG, NULL);
	tap(r == 0 && !mismatches(buf, GPA_PRIV + 2 * PG, PG, 704),
	    "private: vmap of shared gfns reads the guest's data (ret %d)", r);
	vm_mem_set_private(vm, GPA_PRIV + 2 * PG, PG);
	r = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, PG, NULL);
	tap(r == -EPERM, "private: vmap after conversion to private gives EPERM (ret %d)", r);
	guest_exec(vm, vcpu, G_FILL, GPA_PRIV + 2 * PG, PG, 705);
	vm_mem_set_shared(vm, GPA_PRIV + 2 * PG, PG);
	guest_exec(vm, vcpu, G_FILL, GPA_PRIV + 2 * PG, PG, 706);
	r = xi_vmap_rw(xf, XI_TEST_CTX_WORKQUEUE, 0, 0, buf, PG, NULL);
	tap(r == 0 && !mismatches(buf, GPA_PRIV + 2 * PG, PG, 706),
	    "private: vmap after conversion back to shared reads the guest's new data (ret %d)",
	    r);
	TEST_ASSERT(!ioctl(xf, XI_TEST_VMAP_PUT), "vmap put");

	/* Converted to shared, page 0 is reachable again. */
	vm_mem_set_shared(vm, GPA_PRIV, PG);
	fill(buf, GPA_PRIV, PG, 703);
	r = xi_copy(xf, XI_TEST_CTX_KTHREAD, 1, GPA_PRIV, buf, PG);
	tap(r == 0 && !guest_exec(vm, vcpu, G_VERIFY, GPA_PRIV, PG, 703),
	    "private: after conversion to shared, guest sees the write (ret %d)",
	    r);
	xi_unbind(xf);
	close(xf);
	kvm_vm_free(vm);
}

/* ---- memslot churn racing copies ---- */

struct race {
	struct kvm_vm *vm;
	uint8_t *back[2];
	int stop;
	unsigned long changes;
};

static void race_set(struct race *r, int which, uint64_t size)
{
	struct kvm_userspace_memory_region m = {
		.slot = SLOT_RACE,
		.guest_phys_addr = GPA_RACE,
		.memory_size = size,
		.userspace_addr = (uintptr_t)r->back[which],
	};

	vm_ioctl(r->vm, KVM_SET_USER_MEMORY_REGION, &m);
}

/*
 * A read during the churn must come whole from one backing: every byte
 * from backing 0 or every byte from backing 1.  The concurrent writes put
 * bytes of either pattern into [WIN, WIN + WIN_LEN) of whichever backing
 * is mapped, so inside that window either pattern is accepted.
 */
#define WIN		(PG - 32)	/* crosses into the second page */
#define WIN_LEN		64

static bool race_read_ok(const uint8_t *buf, size_t len)
{
	int which;
	size_t i;

	for (which = 0; which < 2; which++) {
		for (i = 0; i < len; i++) {
			if (i >= WIN && i < WIN + WIN_LEN) {
				if (buf[i] != pat(GPA_RACE + i, 800) &&
				    buf[i] != pat(GPA_RACE + i, 801))
					break;
			} else if (buf[i] != pat(GPA_RACE + i, 800 + which)) {
				break;
			}
		}
		if (i == len)
			return true;
	}
	return false;
}

static void *race_churn(void *arg)
{
	struct race *r = arg;

	while (!READ_ONCE(r->stop)) {
		race_set(r, 0, 0);
		race_set(r, r->changes & 1, PAGES_RACE * PG);
		r->changes++;
	}
	return NULL;
}

static void test_memslot_race(struct kvm_vm *vm, int xf)
{
	size_t len = PAGES_RACE * PG;
	unsigned long ok = 0, hole = 0, bad = 0, wok = 0, wbad = 0;
	struct race r = { .vm = vm };
	uint8_t *buf = malloc(len), wbuf[WIN_LEN];
	struct timespec t0, t;
	pthread_t th;
	int i;

	for (i = 0; i < 2; i++) {
		r.back[i] = mmap(NULL, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		TEST_ASSERT(r.back[i] != MAP_FAILED, "mmap");
		fill(r.back[i], GPA_RACE, len, 800 + i);
	}
	race_set(&r, 0, len);
	pthread_create(&th, NULL, race_churn, &r);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		int ctx = (ok + hole) % 3;
		int ret = xi_copy(xf, ctx, 0, GPA_RACE, buf, len);

		if (ret == -ENXIO)
			hole++;
		else if (ret == 0 && race_read_ok(buf, len))
			ok++;
		else
			bad++;
		/* Writes of either pattern: success or hole only. */
		fill(wbuf, GPA_RACE + WIN, WIN_LEN, 800 + (ok & 1));
		ret = xi_copy(xf, XI_TEST_CTX_CALLER, 1, GPA_RACE + WIN, wbuf,
			      WIN_LEN);
		if (ret == 0 || ret == -ENXIO)
			wok++;
		else
			wbad++;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 4);
	WRITE_ONCE(r.stop, 1);
	pthread_join(th, NULL);
	race_set(&r, 0, 0);
	tap(!bad && !wbad && ok > 0 && r.changes > 10,
	    "memslot delete/re-add race: %lu reads whole from one backing, %lu holes, %lu torn or wrong, %lu/%lu writes ok, %lu slot changes",
	    ok, hole, bad, wok, wok + wbad, r.changes);
	munmap(r.back[0], len);
	munmap(r.back[1], len);
	free(buf);
}

/* ---- lifetime ---- */

static void test_vmm_exit(void)
{
	uint8_t buf[64];
	int xf = xi_open(), st, ctx;
	pid_t pid;

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		struct kvm_vm *vm = vm_create_barebones();
		uint8_t *h;

		vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, 0x100000,
					    1, 4, 0);
		h = addr_gpa2hva(vm, 0x100000);
		memset(h, 0x5a, 4 * PG);
		if (xi_bind(xf, vm->fd) ||
		    xi_copy(xf, XI_TEST_CTX_CALLER, 0, 0x100000, buf, 64) ||
		    buf[0] != 0x5a || buf[63] != 0x5a)
			_exit(1);
		/* A valid mapping, left behind when the mm goes away. */
		memset(buf, 0, sizeof(buf));
		if (xi_vmap(xf, 0x100000 + 8, 2 * PG, 1) ||
		    xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 64, NULL) ||
		    buf[0] != 0x5a || buf[63] != 0x5a)
			_exit(2);
		_exit(0);	/* the VMM exits with the binding alive */
	}
	waitpid(pid, &st, 0);
	tap(WIFEXITED(st) && !WEXITSTATUS(st),
	    "VMM exit: child VMM bound, copied and read through a vmap before exiting (status %d)",
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	for (ctx = 0; ctx < XI_TEST_CTX_NR; ctx++)
		tap(xi_copy(xf, ctx, ctx & 1, 0x100000, buf, 64) == -ESRCH,
		    "VMM exit: copy from %s gives ESRCH", ctx_name[ctx]);
	for (ctx = 0; ctx < XI_TEST_CTX_NR; ctx++)
		tap(xi_vmap_rw(xf, ctx, ctx & 1, 0, buf, 64, NULL) == -ESRCH,
		    "VMM exit: the mapping made before the exit was invalidated; access from %s gives ESRCH",
		    ctx_name[ctx]);
	tap(xi_vmap(xf, 0x100000, 64, 0) == -ESRCH,
	    "VMM exit: new vmap gives ESRCH");
	tap(xi_sg(xf, XI_TEST_CTX_KTHREAD, DIR_TO_DEV,
		  (struct xi_test_range[]){ { 0x100000, 64 } }, 1, buf, 64,
		  NULL) == -ESRCH,
	    "VMM exit: sg gives ESRCH");
	tap(xi_unbind(xf) == 0, "VMM exit: last put destroys the orphaned VM");
	close(xf);
}

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

/* Runs with no other VM or /dev/kvm fd open in this process. */
static void test_module_pinning(void)
{
	const char *vendor = module_refcnt("kvm_amd") >= 0 ? "kvm_amd" : "kvm_intel";
	long r0 = module_refcnt(vendor), r1, r2;
	int kvm, vmfd, xf, ret, err;

	if (r0 < 0) {
		tap_skip("module pinning", "kvm_amd/kvm_intel are not modules");
		return;
	}
	kvm = open("/dev/kvm", O_RDWR);
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	close(kvm);
	TEST_ASSERT(vmfd >= 0, "KVM_CREATE_VM");
	xf = xi_open();
	TEST_ASSERT(!xi_bind(xf, vmfd), "bind");
	close(vmfd);		/* only the binding holds the VM now */
	r1 = module_refcnt(vendor);
	tap(r1 == r0 + 1, "module pinning: binding holds %s (refcnt %ld -> %ld)",
	    vendor, r0, r1);
	if (r0 == 0) {
		ret = syscall(__NR_delete_module, vendor, O_NONBLOCK);
		err = errno;
		tap(ret == -1 && err == EWOULDBLOCK,
		    "module pinning: %s cannot unload under a binding (errno %d)",
		    vendor, err);
	} else {
		tap_skip("module pinning: unload refused", "other users hold the vendor module");
	}
	ret = syscall(__NR_delete_module, "kvm", O_NONBLOCK);
	err = errno;
	tap(ret == -1 && err == EWOULDBLOCK,
	    "module pinning: kvm cannot unload while a consumer uses it (errno %d)",
	    err);
	tap(xi_unbind(xf) == 0, "module pinning: unbind");
	r2 = module_refcnt(vendor);
	tap(r2 == r0, "module pinning: last put releases %s (refcnt %ld)",
	    vendor, r2);
	close(xf);
}

/* ---- copyv, the translation cache, vmap, sg ---- */

#define SLOT_V		15		/* vmap tests: deleted, moved, re-added */
#define GPA_V		0x10600000ull
#define PAGES_V		8
#define GPA_V_MOVED	0x10700000ull
#define SLOT_S		16		/* stress regions */
#define GPA_S		0x10800000ull
#define PAGES_S		32
#define SLOT_C		21		/* churned under the stress */
#define GPA_C		0x11100000ull
#define PAGES_C		2
#define SEED_C		1700

static int xi_copyv(int xf, int ctx, int write, struct xi_test_range *r,
		    int nr, void *buf, size_t len, uint32_t flags)
{
	struct xi_test_copyv c = {
		.ranges = (uintptr_t)r, .nr = nr, .ctx = ctx,
		.buf = (uintptr_t)buf, .len = len, .write = write,
		.flags = flags,
	};

	return ioctl(xf, XI_TEST_COPYV, &c) ? -errno : 0;
}

static struct xi_test_cache_stats xi_stats(int xf)
{
	struct xi_test_cache_stats s = {};

	TEST_ASSERT(!ioctl(xf, XI_TEST_CACHE_STATS, &s), "cache stats");
	return s;
}

static int xi_vmap(int xf, uint64_t gpa, uint64_t len, uint32_t flags)
{
	struct xi_test_vmap v = { .gpa = gpa, .len = len, .flags = flags };

	return ioctl(xf, XI_TEST_VMAP, &v) ? -errno : 0;
}

/* Access through the mapping; *refreshes (if set) gets the refresh count. */
static int xi_vmap_rw(int xf, int ctx, int write, uint64_t off, void *buf,
		      size_t len, uint32_t *refreshes)
{
	struct xi_test_vmap_rw v = {
		.offset = off, .buf = (uintptr_t)buf, .len = len,
		.write = write, .ctx = ctx,
	};
	int ret = ioctl(xf, XI_TEST_VMAP_RW, &v) ? -errno : 0;

	if (refreshes)
		*refreshes = v.refreshes;
	return ret;
}

static int xi_sg_flags(int xf, int ctx, int dir, struct xi_test_range *r,
		       int nr, void *buf, size_t len, uint32_t flags,
		       uint32_t *nents)
{
	struct xi_test_sg s = {
		.ranges = (uintptr_t)r, .nr = nr, .dir = dir,
		.buf = (uintptr_t)buf, .len = len, .ctx = ctx, .flags = flags,
	};
	int ret = ioctl(xf, XI_TEST_SG, &s) ? -errno : 0;

	if (nents)
		*nents = s.nents;
	return ret;
}

static int xi_sg(int xf, int ctx, int dir, struct xi_test_range *r, int nr,
		 void *buf, size_t len, uint32_t *nents)
{
	return xi_sg_flags(xf, ctx, dir, r, nr, buf, len, 0, nents);
}

static size_t ranges_len(const struct xi_test_range *r, int nr)
{
	size_t len = 0;

	while (nr--)
		len += r[nr].len;
	return len;
}

static void fill_ranges(uint8_t *buf, const struct xi_test_range *r, int nr,
			uint64_t seed)
{
	for (; nr--; buf += r->len, r++)
		fill(buf, r->gpa, r->len, seed);
}

static size_t mismatches_ranges(const uint8_t *buf,
				const struct xi_test_range *r, int nr,
				uint64_t seed)
{
	size_t bad = 0;

	for (; nr--; buf += r->len, r++)
		bad += mismatches(buf, r->gpa, r->len, seed);
	return bad;
}

static uint64_t guest_ranges(struct kvm_vm *vm, int op,
			     const struct xi_test_range *r, int nr,
			     uint64_t seed)
{
	uint64_t bad = 0;

	for (; nr--; r++)
		bad += guest_exec(vm, vcpu_main, op, r->gpa, r->len, seed);
	return bad;
}

/* A descriptor chain: unaligned, page-crossing, and crossing A -> B. */
static struct xi_test_range chain[] = {
	{ GPA_A + 100, 700 },
	{ GPA_B - 300, 900 },
	{ GPA_A + 5 * PG + 4000, 200 },
};

static void test_copyv(struct kvm_vm *vm, int xf)
{
	static const uint32_t flags[] = {
		XI_TEST_F_CACHE, XI_TEST_F_CACHE | XI_TEST_F_USE_MM,
		XI_TEST_F_USE_MM,
	};
	size_t len = ranges_len(chain, 3);
	uint8_t *buf = malloc(len);
	struct xi_test_range hole[2] = { chain[0], { GPA_HOLE + 8, 8 } };
	int ctx, ret;

	for (ctx = 0; ctx < XI_TEST_CTX_NR; ctx++) {
		fill_ranges(buf, chain, 3, 1000 + ctx);
		ret = xi_copyv(xf, ctx, 1, chain, 3, buf, len, flags[ctx]);
		tap(ret == 0 && !guest_ranges(vm, G_VERIFY, chain, 3, 1000 + ctx),
		    "copyv %s (flags %#x): 3-range chain scattered, guest verifies (ret %d)",
		    ctx_name[ctx], flags[ctx], ret);
		guest_ranges(vm, G_FILL, chain, 3, 1010 + ctx);
		memset(buf, 0, len);
		ret = xi_copyv(xf, ctx, 0, chain, 3, buf, len, flags[ctx]);
		tap(ret == 0 && !mismatches_ranges(buf, chain, 3, 1010 + ctx),
		    "copyv %s (flags %#x): chain gathered matches guest (ret %d)",
		    ctx_name[ctx], flags[ctx], ret);
	}
	tap(xi_copyv(xf, XI_TEST_CTX_CALLER, 0, chain, 3, buf, len,
		     XI_TEST_F_USE_MM) == -EINVAL,
	    "use_mm outside a kthread gives EINVAL");
	tap(xi_copyv(xf, XI_TEST_CTX_KTHREAD, 0, chain, 3, buf, len - 1, 0) == -EINVAL,
	    "copyv: buffer length not the chain's length gives EINVAL");
	tap(xi_copyv(xf, XI_TEST_CTX_KTHREAD, 1, hole, 2, buf,
		     ranges_len(hole, 2), XI_TEST_F_CACHE) == -ENXIO,
	    "copyv: a range in a hole gives ENXIO");
	free(buf);
}

static void test_cache(struct kvm_vm *vm, int xf)
{
	struct xi_test_cache_stats s;
	struct xi_test_range r = { GPA_DIRTY + 7 * PG + 5, 64 };
	uint8_t buf[64];
	int i, ret = 0;

	xi_stats(xf);
	guest_exec(vm, vcpu_main, G_FILL, r.gpa, r.len, 1100);
	ret |= xi_copyv(xf, XI_TEST_CTX_KTHREAD, 0, &r, 1, buf, 64, XI_TEST_F_CACHE);
	s = xi_stats(xf);
	tap(!ret && s.misses == 1 && s.hits == 0 && !mismatches(buf, r.gpa, 64, 1100),
	    "cache: first access to a slot is a miss (%llu hits, %llu misses)",
	    s.hits, s.misses);
	for (i = 0; i < 100; i++)
		ret |= xi_copyv(xf, i % 3, 0, &r, 1, buf, 64, XI_TEST_F_CACHE);
	s = xi_stats(xf);
	tap(!ret && s.misses == 0 && s.hits == 100 && !mismatches(buf, r.gpa, 64, 1100),
	    "cache: 100 repeated accesses from 3 contexts all hit (%llu hits, %llu misses)",
	    s.hits, s.misses);

	/* Any memslot change, even of another slot, bumps the generation. */
	vm_mem_region_set_flags(vm, SLOT_B, KVM_MEM_LOG_DIRTY_PAGES);
	guest_exec(vm, vcpu_main, G_FILL, r.gpa, r.len, 1101);
	ret |= xi_copyv(xf, XI_TEST_CTX_WORKQUEUE, 0, &r, 1, buf, 64, XI_TEST_F_CACHE);
	ret |= xi_copyv(xf, XI_TEST_CTX_CALLER, 0, &r, 1, buf, 64, XI_TEST_F_CACHE);
	s = xi_stats(xf);
	tap(!ret && s.misses == 1 && s.hits == 1 && !mismatches(buf, r.gpa, 64, 1101),
	    "cache: miss after a memslot change, then hit, data current (%llu hits, %llu misses)",
	    s.hits, s.misses);
	vm_mem_region_set_flags(vm, SLOT_B, 0);
}

static uint64_t vmap_gen;	/* seeds for the vmap cases */

/* The guest fills the mapped range; the host must read exactly that. */
static bool vmap_guest_to_host(struct kvm_vm *vm, int xf, uint64_t gpa,
			       size_t len, int ctx, uint32_t *refreshes)
{
	uint8_t *buf = malloc(len);
	uint64_t seed = 1200 + vmap_gen++;
	bool ok;

	guest_exec(vm, vcpu_main, G_FILL, gpa, len, seed);
	ok = !xi_vmap_rw(xf, ctx, 0, 0, buf, len, refreshes) &&
	     !mismatches(buf, gpa, len, seed);
	free(buf);
	return ok;
}

static bool vmap_host_to_guest(struct kvm_vm *vm, int xf, uint64_t gpa,
			       size_t len, int ctx)
{
	uint8_t *buf = malloc(len);
	uint64_t seed = 1200 + vmap_gen++;
	bool ok;

	fill(buf, gpa, len, seed);
	ok = !xi_vmap_rw(xf, ctx, 1, 0, buf, len, NULL) &&
	     !guest_exec(vm, vcpu_main, G_VERIFY, gpa, len, seed);
	free(buf);
	return ok;
}

static void test_vmap(struct kvm_vm *vm, int xf)
{
	uint64_t gpa = GPA_V + 300;
	size_t len = 3 * PG, zlen = 64;
	unsigned long bmap[1] = {};
	uint8_t *hva = addr_gpa2hva(vm, GPA_V), zero[64] = {}, buf[64];
	uint32_t rf = 0;
	int ctx, ret;

	tap(xi_vmap(xf, gpa, len, 1) == 0, "vmap: 3-page unaligned ring mapped");
	for (ctx = 0; ctx < XI_TEST_CTX_NR; ctx++) {
		tap(vmap_guest_to_host(vm, xf, gpa, len, ctx, &rf) && rf == 0,
		    "vmap %s: host reads what the guest wrote, no refresh needed",
		    ctx_name[ctx]);
		tap(vmap_host_to_guest(vm, xf, gpa, len, ctx),
		    "vmap %s: guest reads what the host wrote", ctx_name[ctx]);
	}

	/* Enabling dirty logging changes the memslot generation. */
	vm_mem_region_set_flags(vm, SLOT_V, KVM_MEM_LOG_DIRTY_PAGES);
	kvm_vm_get_dirty_log(vm, SLOT_V, bmap);
	fill(buf, gpa + PG + 10, 20, 1250);
	ret = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 1, PG + 10, buf, 20, &rf);
	kvm_vm_get_dirty_log(vm, SLOT_V, bmap);
	tap(ret == 0 && rf >= 1 && bmap[0] == 2 &&
	    !guest_exec(vm, vcpu_main, G_VERIFY, gpa + PG + 10, 20, 1250),
	    "vmap: after logging is enabled the write refreshes, lands and dirties page 1 only (bitmap %#lx, %u refreshes)",
	    bmap[0], rf);
	vm_mem_region_set_flags(vm, SLOT_V, 0);

	/*
	 * MADV_DONTNEED frees the pages: the mapping must not show them.
	 * First bring the mapping up to date, so only the notifier can
	 * tell it the pages went away.
	 */
	tap(vmap_guest_to_host(vm, xf, gpa, len, XI_TEST_CTX_KTHREAD, &rf),
	    "vmap: valid again after logging is disabled (%u refreshes)", rf);
	TEST_ASSERT(!madvise(hva, PAGES_V * PG, MADV_DONTNEED), "madvise");
	ret = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, zlen, &rf);
	tap(ret == 0 && rf >= 1 && !memcmp(buf, zero, zlen),
	    "vmap: after MADV_DONTNEED the host reads the new zero pages (%u refreshes)",
	    rf);
	tap(vmap_guest_to_host(vm, xf, gpa, len, XI_TEST_CTX_WORKQUEUE, NULL),
	    "vmap: after MADV_DONTNEED host reads the guest's new writes");

	/* munmap: the slot's userspace mapping is gone. */
	TEST_ASSERT(!munmap(hva, PAGES_V * PG), "munmap");
	ret = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, zlen, NULL);
	tap(ret == -EFAULT, "vmap: backing munmapped gives EFAULT (ret %d)", ret);
	TEST_ASSERT(mmap(hva, PAGES_V * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == hva,
		    "mmap back");
	tap(vmap_guest_to_host(vm, xf, gpa, len, XI_TEST_CTX_CALLER, NULL) &&
	    vmap_host_to_guest(vm, xf, gpa, len, XI_TEST_CTX_KTHREAD),
	    "vmap: backing mapped again: recovers both ways");

	/* Memslot move and delete: the range becomes a hole. */
	vm_mem_region_move(vm, SLOT_V, GPA_V_MOVED);
	ret = xi_vmap_rw(xf, XI_TEST_CTX_CALLER, 0, 0, buf, zlen, NULL);
	tap(ret == -ENXIO, "vmap: memslot moved away gives ENXIO (ret %d)", ret);
	vm_mem_region_move(vm, SLOT_V, GPA_V);
	tap(vmap_guest_to_host(vm, xf, gpa, len, XI_TEST_CTX_KTHREAD, NULL),
	    "vmap: memslot moved back: recovers");
	vm_mem_region_delete(vm, SLOT_V);
	ret = xi_vmap_rw(xf, XI_TEST_CTX_WORKQUEUE, 1, 0, buf, zlen, NULL);
	tap(ret == -ENXIO, "vmap: memslot deleted gives ENXIO (ret %d)", ret);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_V, SLOT_V,
				    PAGES_V, 0);
	tap(vmap_guest_to_host(vm, xf, gpa, len, XI_TEST_CTX_KTHREAD, NULL) &&
	    vmap_host_to_guest(vm, xf, gpa, len, XI_TEST_CTX_WORKQUEUE),
	    "vmap: memslot re-added with new memory: recovers both ways");

	/* A mapping across adjacent slots. */
	tap(xi_vmap(xf, GPA_B - 1000, 2 * PG, 1) == 0 &&
	    vmap_host_to_guest(vm, xf, GPA_B - 1000, 2 * PG, XI_TEST_CTX_KTHREAD) &&
	    vmap_guest_to_host(vm, xf, GPA_B - 1000, 2 * PG, XI_TEST_CTX_CALLER, NULL),
	    "vmap: range across adjacent memslots works both ways");

	tap(xi_vmap(xf, GPA_RO + 8, PG, 0) == 0 &&
	    xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 64, NULL) == 0 &&
	    !mismatches(buf, GPA_RO + 8, 64, 500),
	    "vmap: read-only mapping of a read-only slot reads its contents");
	tap(xi_vmap(xf, GPA_RO, PG, 1) == -EROFS,
	    "vmap: writable mapping of a read-only slot gives EROFS");
	tap(xi_vmap(xf, GPA_HOLE - 8, 16, 0) == -ENXIO,
	    "vmap: range into a hole gives ENXIO");
	tap(xi_vmap(xf, ~0ull - 8, 64, 0) == -EOVERFLOW,
	    "vmap: wrapping range gives EOVERFLOW");
	tap(xi_vmap(xf, GPA_A, 0, 0) == -EINVAL &&
	    xi_vmap(xf, GPA_A, 8, 0x80) == -EINVAL,
	    "vmap: zero length or unknown flags give EINVAL");
	TEST_ASSERT(!ioctl(xf, XI_TEST_VMAP_PUT), "vmap put");
}

static void test_sg(struct kvm_vm *vm, int xf)
{
	size_t len = ranges_len(chain, 3);
	uint8_t *buf = malloc(len);
	struct xi_test_range dr[2] = {
		{ GPA_DIRTY + 2 * PG + 8, 100 },
		{ GPA_DIRTY + 5 * PG + PG - 50, 100 },	/* pages 5 and 6 */
	};
	struct xi_test_range ro = { GPA_RO + 16, 64 };
	unsigned long bmap[1];
	uint32_t nents = 0;
	int ctx, ret;

	for (ctx = 0; ctx < XI_TEST_CTX_NR; ctx++) {
		fill_ranges(buf, chain, 3, 1300 + ctx);
		ret = xi_sg(xf, ctx, ctx == 1 ? DIR_BIDI : DIR_FROM_DEV, chain,
			    3, buf, len, &nents);
		tap(ret == 0 && nents >= 3 &&
		    !guest_ranges(vm, G_VERIFY, chain, 3, 1300 + ctx),
		    "sg %s: scatter into a fragmented chain, guest verifies (%u entries, ret %d)",
		    ctx_name[ctx], nents, ret);
		guest_ranges(vm, G_FILL, chain, 3, 1310 + ctx);
		memset(buf, 0, len);
		ret = xi_sg(xf, ctx, DIR_TO_DEV, chain, 3, buf, len, NULL);
		tap(ret == 0 && !mismatches_ranges(buf, chain, 3, 1310 + ctx),
		    "sg %s: gather of the chain matches the guest (ret %d)",
		    ctx_name[ctx], ret);
	}

	kvm_vm_get_dirty_log(vm, SLOT_DIRTY, bmap);	/* clear */
	fill_ranges(buf, dr, 2, 1320);
	ret = xi_sg(xf, XI_TEST_CTX_KTHREAD, DIR_FROM_DEV, dr, 2, buf, 200, NULL);
	ret |= xi_sg(xf, XI_TEST_CTX_KTHREAD, DIR_TO_DEV,
		     (struct xi_test_range[]){ { GPA_DIRTY + 10 * PG, 64 } }, 1,
		     buf, 64, NULL);
	kvm_vm_get_dirty_log(vm, SLOT_DIRTY, bmap);
	tap(ret == 0 && bmap[0] == ((1ul << 2) | (1ul << 5) | (1ul << 6)) &&
	    !guest_ranges(vm, G_VERIFY, dr, 2, 1320),
	    "sg: device writes dirty exactly their pages, reads none (bitmap %#lx)",
	    bmap[0]);

	tap(xi_sg(xf, 0, DIR_TO_DEV, &ro, 1, buf, 64, NULL) == 0 &&
	    !mismatches(buf, ro.gpa, 64, 500),
	    "sg: DMA_TO_DEVICE from a read-only slot allowed and correct");
	tap(xi_sg(xf, 0, DIR_FROM_DEV, &ro, 1, buf, 64, NULL) == -EROFS &&
	    xi_sg(xf, 0, DIR_BIDI, &ro, 1, buf, 64, NULL) == -EROFS,
	    "sg: FROM_DEVICE or BIDIRECTIONAL on a read-only slot gives EROFS");
	tap(xi_sg(xf, 0, DIR_NONE, chain, 1, buf, chain[0].len, NULL) == -EINVAL,
	    "sg: DMA_NONE gives EINVAL");
	tap(xi_sg(xf, 0, DIR_TO_DEV,
		  (struct xi_test_range[]){ chain[0], { GPA_HOLE, 8 } }, 2,
		  buf, chain[0].len + 8, NULL) == -ENXIO,
	    "sg: a range in a hole gives ENXIO");
	tap(xi_sg(xf, 0, DIR_TO_DEV,
		  (struct xi_test_range[]){ { ~0ull - 8, 64 } }, 1,
		  buf, 64, NULL) == -EOVERFLOW,
	    "sg: wrapping range gives EOVERFLOW");
	free(buf);
}

/* ---- stress: module kthreads vs memslot churn and dirty logging ---- */

struct churn {
	struct kvm_vm *vm;
	uint8_t *back;
	int stop;
	unsigned long changes, logs;
};

static void churn_set(struct churn *c, uint64_t size)
{
	struct kvm_userspace_memory_region m = {
		.slot = SLOT_C,
		.guest_phys_addr = GPA_C,
		.memory_size = size,
		.userspace_addr = (uintptr_t)c->back,
	};

	vm_ioctl(c->vm, KVM_SET_USER_MEMORY_REGION, &m);
}

static void *churn_thread(void *arg)
{
	unsigned long bmap[PAGES_S / 64 + 1];
	struct churn *c = arg;

	while (!READ_ONCE(c->stop)) {
		churn_set(c, 0);
		churn_set(c, PAGES_C * PG);
		if (!(c->changes++ & 7)) {
			vm_mem_region_set_flags(c->vm, SLOT_S,
						c->logs & 1 ? 0 : KVM_MEM_LOG_DIRTY_PAGES);
			if (!(c->logs & 1))
				kvm_vm_get_dirty_log(c->vm, SLOT_S, bmap);
			c->logs++;
		}
	}
	return NULL;
}

static void test_stress(struct kvm_vm *vm, int xf)
{
	struct xi_test_stress s = {
		.gpa = GPA_S + 123, .len = 3 * PG + 517, .stride = 4 * PG,
		.nr_threads = 4, .ms = 3000,
		.churn_gpa = GPA_C + 77, .churn_len = PG + 300,
		.churn_seed = SEED_C,
	};
	struct churn c = { .vm = vm };
	uint64_t bad = 0;
	pthread_t th;
	unsigned int i;
	int ret;

	c.back = mmap(NULL, PAGES_C * PG, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(c.back != MAP_FAILED, "mmap");
	fill(c.back, GPA_C, PAGES_C * PG, SEED_C);
	churn_set(&c, PAGES_C * PG);
	pthread_create(&th, NULL, churn_thread, &c);
	ret = ioctl(xf, XI_TEST_STRESS, &s) ? -errno : 0;
	WRITE_ONCE(c.stop, 1);
	pthread_join(th, NULL);
	vm_mem_region_set_flags(vm, SLOT_S, 0);

	for (i = 0; i < s.nr_threads; i++)
		bad += !s.seed[i] ||
		       guest_exec(vm, vcpu_main, G_VERIFY, s.gpa + i * s.stride,
				  s.len, s.seed[i]);
	tap(ret == 0 && s.ops > 0 && s.errors == 0 && s.bad == 0,
	    "stress: 4 kthreads x (copy, vmap, sg), %llu verified write+read pairs, %llu errors, %llu bad reads, over %lu memslot changes and %lu logging toggles (ret %d)",
	    s.ops, s.errors, s.bad, c.changes, c.logs, ret);
	tap(ret == 0 && s.churn_ok > 0 && s.churn_gone > 0,
	    "stress: reader on the churned slot: %llu whole correct reads, %llu refused as holes, 0 wrong",
	    s.churn_ok, s.churn_gone);
	tap(ret == 0 && !bad, "stress: guest verifies every region's last write");
	churn_set(&c, 0);
	munmap(c.back, PAGES_C * PG);
}

/* ---- the review's defects (issue 10) ---- */

/* Take a copy of another process's file descriptor, as SCM_RIGHTS would. */
static int grab_fd(pid_t pid, int fd)
{
	int pidfd = syscall(__NR_pidfd_open, pid, 0), ret;

	if (pidfd < 0)
		return -1;
	ret = syscall(__NR_pidfd_getfd, pidfd, fd, 0);
	close(pidfd);
	return ret;
}

/*
 * Only the VM's owner binds (item 2): not a forked child that inherited
 * the fd, not a process that was handed the file (pidfd_getfd(), the way
 * SCM_RIGHTS hands it; the test kernel has no sockets), not anyone once
 * the owner exited.  Each child reports the errno its bind got.
 */
static void test_bind_owner(struct kvm_vm *vm)
{
	int up[2], down[2], st, xf, fd = -1, ret;
	uint8_t b = 0;
	char c = 0;
	pid_t pid;

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		xf = xi_open();
		_exit(-xi_bind(xf, vm->fd));
	}
	waitpid(pid, &st, 0);
	tap(WIFEXITED(st) && WEXITSTATUS(st) == EIO,
	    "bind: a forked child holding the VM fd gets EIO (errno %d)",
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		int vmfd = vm->fd;

		close(vm->fd);	/* only what it is handed */
		fd = grab_fd(getppid(), vmfd);
		xf = xi_open();
		ret = fd < 0 ? -EBADF : xi_bind(xf, fd);
		/* A binding made anyway must not reach guest memory. */
		if (!ret && xi_copy(xf, XI_TEST_CTX_CALLER, 0, GPA_A, &b, 1) == 0)
			_exit(200);
		_exit(-ret);
	}
	waitpid(pid, &st, 0);
	tap(WIFEXITED(st) && WEXITSTATUS(st) == EIO,
	    "bind: a process handed the VM file (pidfd_getfd) gets EIO (status %d)",
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	/* A VM whose owner exited, its file taken before the exit. */
	TEST_ASSERT(!pipe(up) && !pipe(down), "pipe");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		struct kvm_vm *cvm = vm_create_barebones();

		vm_userspace_mem_region_add(cvm, VM_MEM_SRC_ANONYMOUS, 0x100000,
					    1, 1, 0);
		if (write(up[1], &cvm->fd, sizeof(int)) != sizeof(int) ||
		    read(down[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	if (read(up[0], &ret, sizeof(int)) == sizeof(int))
		fd = grab_fd(pid, ret);
	if (write(down[1], "x", 1) != 1)
		fd = -1;
	waitpid(pid, &st, 0);
	xf = xi_open();
	ret = fd < 0 ? -EBADF : xi_bind(xf, fd);
	tap(ret == -EIO, "bind: the fd of a VM whose owner exited gives EIO (ret %d)",
	    ret);
	close(xf);
	if (fd >= 0)
		close(fd);
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);
}

/*
 * Item 3: a write that fails part-way is dirty-logged for what it wrote.
 * The second page of a page-crossing write is made read-only in the VMM:
 * the write fails with EFAULT after its first part reached guest memory,
 * and exactly that page must be in the dirty log.
 */
static void test_partial_dirty(struct kvm_vm *vm, int xf)
{
	unsigned long bmap[PAGES_DIRTY / 64 + 1];
	uint8_t *hva = addr_gpa2hva(vm, GPA_DIRTY);
	uint8_t buf[32];
	int ctx;

	for (ctx = 0; ctx <= CTX_FOREIGN; ctx++) {
		unsigned int pg = 2 + 2 * ctx;	/* pages 2, 4, 6, 8 */
		uint64_t gpa = GPA_DIRTY + (pg + 1) * PG - 16;
		uint64_t seed = 1800 + ctx;
		int ret;

		guest_exec(vm, vcpu_main, G_FILL, gpa - 16, 64, seed);
		kvm_vm_get_dirty_log(vm, SLOT_DIRTY, bmap);	/* clear */
		memset(bmap, 0, sizeof(bmap));
		TEST_ASSERT(!mprotect(hva + (pg + 1) * PG, PG, PROT_READ),
			    "mprotect");
		fill(buf, gpa, sizeof(buf), seed + 100);
		ret = xi_copy_any(xf, ctx, 1, gpa, buf, sizeof(buf));
		TEST_ASSERT(!mprotect(hva + (pg + 1) * PG, PG,
				      PROT_READ | PROT_WRITE), "mprotect");
		kvm_vm_get_dirty_log(vm, SLOT_DIRTY, bmap);
		tap(ret == -EFAULT && bmap[0] == 1ul << pg &&
		    !guest_exec(vm, vcpu_main, G_VERIFY, gpa, 16, seed + 100) &&
		    !guest_exec(vm, vcpu_main, G_VERIFY, gpa + 16, 16, seed),
		    "partial write from %s: EFAULT, the guest sees the first page's part, and exactly that page is dirty (ret %d, bitmap %#lx, want %#lx)",
		    ctx_name[ctx], ret, bmap[0], 1ul << pg);
	}
}

/*
 * Item 4: one cache used through bindings of two VMs at the same memslot
 * generation (same layout, made by the same calls) must not hand the
 * first VM's memslot to the second.
 */
static void test_cache_two_vms(void)
{
	struct kvm_vm *va = vm_create_barebones(), *vb = vm_create_barebones();
	struct xi_test_range r = { 0x100000 + 40, 64 };
	uint8_t buf[64];
	int xa = xi_open(), xb = xi_open(), ra, rb;

	vm_userspace_mem_region_add(va, VM_MEM_SRC_ANONYMOUS, 0x100000, 1, 4, 0);
	vm_userspace_mem_region_add(vb, VM_MEM_SRC_ANONYMOUS, 0x100000, 1, 4, 0);
	fill(addr_gpa2hva(va, 0x100000), 0x100000, 4 * PG, 1900);
	fill(addr_gpa2hva(vb, 0x100000), 0x100000, 4 * PG, 1901);
	TEST_ASSERT(!xi_bind(xa, va->fd) && !xi_bind(xb, vb->fd), "bind");

	ra = xi_copyv(xa, XI_TEST_CTX_KTHREAD, 0, &r, 1, buf, 64,
		      XI_TEST_F_SHARED_CACHE);
	tap(!ra && !mismatches(buf, r.gpa, 64, 1900),
	    "cache across VMs: VM A read through the shared cache (ret %d)", ra);
	rb = xi_copyv(xb, XI_TEST_CTX_KTHREAD, 0, &r, 1, buf, 64,
		      XI_TEST_F_SHARED_CACHE);
	tap(!rb && !mismatches(buf, r.gpa, 64, 1901),
	    "cache across VMs: the same cache then reads VM B's memory, not A's (ret %d, %zu bytes of A)",
	    rb, 64 - mismatches(buf, r.gpa, 64, 1900));
	/* A is destroyed; its slot must not be used through B either. */
	xi_unbind(xa);
	kvm_vm_free(va);
	rb = xi_copyv(xb, XI_TEST_CTX_CALLER, 1, &r, 1, buf, 64,
		      XI_TEST_F_SHARED_CACHE);
	rb |= xi_copyv(xb, XI_TEST_CTX_WORKQUEUE, 0, &r, 1, buf, 64,
		       XI_TEST_F_SHARED_CACHE);
	tap(!rb && !mismatches(buf, r.gpa, 64, 1901),
	    "cache across VMs: after A is destroyed, B's accesses still reach B (ret %d)",
	    rb);
	close(xa);
	xi_unbind(xb);
	close(xb);
	kvm_vm_free(vb);
}

/*
 * Items 1, 6, 8 and 10 (test module): a read-only vmap is a read-only
 * kernel mapping, sections do not nest, an invalidated mapping's kernel
 * alias goes away without a refresh, and the test module caps its maps.
 */
#define SLOT_Z		17		/* never written by guest or VMM */
#define GPA_Z		0x10a00000ull
#define PAGES_Z		4
#define SLOT_W		19		/* deleted under a mapping */
#define GPA_W		0x10e00000ull

static int xi_probe(int xf, struct xi_test_vmap_probe *p)
{
	return ioctl(xf, XI_TEST_VMAP_PROBE, p) ? -errno : 0;
}

static void test_vmap_defects(struct kvm_vm *vm, int xf)
{
	struct xi_test_vmap_probe p = {};
	struct xi_test_vmap_nest n = {};
	uint8_t *hva, buf[64], zero[64] = {}, *fresh, *w;
	int ret, i;

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_Z, SLOT_Z,
				    PAGES_Z, 0);
	virt_map(vm, GPA_Z + GVA_OFF, GPA_Z, PAGES_Z);
	hva = addr_gpa2hva(vm, GPA_Z);
	/* The VMM reads the page: it maps the shared zero page. */
	TEST_ASSERT(!madvise(hva, PAGES_Z * PG, MADV_DONTNEED), "madvise");
	TEST_ASSERT(hva[100] == 0, "zero");

	ret = xi_vmap(xf, GPA_Z + 100, 64, 0);
	ret |= xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 64, NULL);
	ret |= xi_probe(xf, &p);
	tap(!ret && !memcmp(buf, zero, 64) && p.mapped && !p.writable,
	    "vmap read-only: a never-written page reads zeros through a read-only kernel mapping (ret %d, mapped %u, writable %u)",
	    ret, p.mapped, p.writable);
	memset(buf, 0xa5, sizeof(buf));
	ret = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 1, 0, buf, 64, NULL);
	fresh = mmap(NULL, PG, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(fresh != MAP_FAILED, "mmap");
	tap(ret == -EPERM && !memcmp(fresh + 100, zero, 64) &&
	    !guest_exec(vm, vcpu_main, G_ZERO, GPA_Z, PG, 0),
	    "vmap read-only: a write is refused (EPERM); a fresh mapping and the guest still read zeros (ret %d)",
	    ret);
	munmap(fresh, PG);

	ret = xi_vmap(xf, GPA_Z, 2 * PG, 1);
	ret = ret ?: xi_vmap_rw(xf, XI_TEST_CTX_CALLER, 1, 0, buf, 64, NULL);
	ret = ret ?: xi_probe(xf, &p);
	tap(!ret && p.mapped && p.writable,
	    "vmap writable: mapped writable (ret %d, mapped %u, writable %u)",
	    ret, p.mapped, p.writable);

	/* Item 6: nested sections are refused, on any mapping. */
	ret = ioctl(xf, XI_TEST_VMAP_NEST, &n) ? -errno : 0;
	tap(!ret && n.same == -EDEADLK && n.other == -EDEADLK,
	    "vmap: begin inside a section gives EDEADLK, on the same and on another mapping (same %d, other %d)",
	    n.same, n.other);

	/* Item 8: the notifier invalidates; the alias must go by itself. */
	guest_exec(vm, vcpu_main, G_FILL, GPA_Z, 2 * PG, 1950);
	ret = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 64, NULL);
	ret |= xi_probe(xf, &p);
	TEST_ASSERT(!ret && p.mapped, "vmap alias before invalidation");
	TEST_ASSERT(!madvise(hva, 2 * PG, MADV_DONTNEED), "madvise");
	for (i = 0; i < 200; i++) {
		TEST_ASSERT(!xi_probe(xf, &p), "probe");
		if (!p.mapped)
			break;
		usleep(5000);
	}
	tap(!p.mapped,
	    "vmap: after an invalidation the kernel alias of the freed pages is gone without a refresh (%d ms)",
	    i * 5);
	ret = xi_vmap_rw(xf, XI_TEST_CTX_WORKQUEUE, 0, 0, buf, 64, NULL);
	tap(!ret && !memcmp(buf, zero, 64) &&
	    vmap_guest_to_host(vm, xf, GPA_Z, 2 * PG, XI_TEST_CTX_KTHREAD, NULL),
	    "vmap: the next access refreshes and reads the new pages (ret %d)",
	    ret);

	tap(xi_vmap(xf, GPA_A, XI_TEST_VMAP_MAX + 1, 0) == -EINVAL,
	    "test module: a map longer than %u bytes is refused", XI_TEST_VMAP_MAX);
	TEST_ASSERT(!ioctl(xf, XI_TEST_VMAP_PUT), "vmap put");

	/*
	 * A refresh that fails must not leave the old alias behind: delete
	 * the memslot (no notifier runs), fail an access (-ENXIO), then free
	 * the backing pages.  Nothing may map them any more.
	 */
	w = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(w != MAP_FAILED, "mmap");
	memset(w, 0x3c, 2 * PG);
	vm_set_user_memory_region(vm, SLOT_W, 0, GPA_W, 2 * PG, w);
	ret = xi_vmap(xf, GPA_W + 8, 64, 0);
	ret = ret ?: xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 64, NULL);
	ret = ret ?: xi_probe(xf, &p);
	TEST_ASSERT(!ret && p.mapped && buf[0] == 0x3c, "vmap of SLOT_W");
	vm_set_user_memory_region(vm, SLOT_W, 0, GPA_W, 0, w);
	ret = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 64, NULL);
	TEST_ASSERT(!madvise(w, 2 * PG, MADV_DONTNEED), "madvise");
	TEST_ASSERT(!xi_probe(xf, &p), "probe");
	tap(ret == -ENXIO && !p.mapped,
	    "vmap: a refresh that failed (memslot deleted, ret %d) left no alias to the pages freed after it (mapped %u)",
	    ret, p.mapped);
	TEST_ASSERT(!ioctl(xf, XI_TEST_VMAP_PUT), "vmap put");
	munmap(w, 2 * PG);
}

/*
 * Items 5 and 9, with a userfaultfd-backed memslot: every path waits for
 * the page as a vCPU fault would (item 9), and a caller that changes its
 * ranges while the call waits for a page changes nothing (item 5): the
 * userfaultfd handler changes them through XI_TEST_MUTATE before it
 * provides the page.
 */
#define SLOT_U		18
#define GPA_U		0x10c00000ull
#define PAGES_U		16
#define SEED_U		2000

static struct {
	int uffd, xf, stop;
	uint8_t *mem;
	int mutate;			/* do it at the next fault */
	struct xi_test_mutate mut;
	int mut_ret;
	int faults;
} uf;

static void *uffd_thread(void *arg)
{
	static uint8_t page[PG] __aligned(4096);

	while (!READ_ONCE(uf.stop)) {
		struct pollfd pfd = { .fd = uf.uffd, .events = POLLIN };
		struct uffdio_copy copy;
		struct uffd_msg msg;
		uint64_t addr;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if (read(uf.uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		addr = msg.arg.pagefault.address & ~(PG - 1);
		if (READ_ONCE(uf.mutate)) {
			uf.mut_ret = ioctl(uf.xf, XI_TEST_MUTATE, &uf.mut) ?
				     -errno : 0;
			WRITE_ONCE(uf.mutate, 0);
		}
		fill(page, GPA_U + (addr - (uint64_t)uf.mem), PG, SEED_U);
		copy = (struct uffdio_copy){
			.dst = addr, .src = (uintptr_t)page, .len = PG,
		};
		ioctl(uf.uffd, UFFDIO_COPY, &copy);
		__atomic_add_fetch(&uf.faults, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

static void test_uffd(struct kvm_vm *vm, int xf)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	uint8_t buf[PG], w[64];
	pthread_t thr;
	int ret, f0;

	uf.uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uf.uffd < 0) {
		tap_skip("userfaultfd", strerror(errno));
		return;
	}
	TEST_ASSERT(!ioctl(uf.uffd, UFFDIO_API, &api), "UFFDIO_API");
	uf.mem = mmap(NULL, PAGES_U * PG, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(uf.mem != MAP_FAILED, "mmap");
	reg = (struct uffdio_register){
		.range = { (uintptr_t)uf.mem, PAGES_U * PG },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	TEST_ASSERT(!ioctl(uf.uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER");
	vm_set_user_memory_region(vm, SLOT_U, 0, GPA_U, PAGES_U * PG, uf.mem);
	virt_map(vm, GPA_U + GVA_OFF, GPA_U, PAGES_U);
	uf.xf = xf;
	pthread_create(&thr, NULL, uffd_thread, NULL);

	/* Item 9: each page below is missing until the handler copies it. */
	f0 = uf.faults;
	ret = xi_copy_any(xf, CTX_FOREIGN, 0, GPA_U + 100, buf, 64);
	tap(!ret && !mismatches(buf, GPA_U + 100, 64, SEED_U) && uf.faults > f0,
	    "userfaultfd: copy_from from another process waits for the page (ret %d)",
	    ret);
	fill(w, GPA_U + PG + 8, 64, SEED_U + 1);
	ret = xi_copy_any(xf, CTX_FOREIGN, 1, GPA_U + PG + 8, w, 64);
	tap(!ret && !guest_exec(vm, vcpu_main, G_VERIFY, GPA_U + PG + 8, 64, SEED_U + 1) &&
	    !guest_exec(vm, vcpu_main, G_VERIFY, GPA_U + PG + 72, 64, SEED_U),
	    "userfaultfd: copy_to from another process waits for the page; the guest sees both (ret %d)",
	    ret);
	ret = xi_copy(xf, XI_TEST_CTX_KTHREAD, 0, GPA_U + 2 * PG, buf, 64);
	tap(!ret && !mismatches(buf, GPA_U + 2 * PG, 64, SEED_U),
	    "userfaultfd: copy_from from a kthread waits for the page (ret %d)",
	    ret);
	ret = xi_vmap(xf, GPA_U + 3 * PG + 5, 64, 0);
	ret |= xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 64, NULL);
	tap(!ret && !mismatches(buf, GPA_U + 3 * PG + 5, 64, SEED_U),
	    "userfaultfd: a read-only vmap waits for the page (ret %d)", ret);
	ret = xi_vmap(xf, GPA_U + 4 * PG, PG, 1);
	tap(!ret && vmap_host_to_guest(vm, xf, GPA_U + 4 * PG, PG,
				       XI_TEST_CTX_WORKQUEUE),
	    "userfaultfd: a writable vmap waits for the page; the guest sees its write (ret %d)",
	    ret);
	ret = xi_sg(xf, XI_TEST_CTX_KTHREAD, DIR_TO_DEV,
		    (struct xi_test_range[]){ { GPA_U + 5 * PG + 10, 64 } }, 1,
		    buf, 64, NULL);
	tap(!ret && !mismatches(buf, GPA_U + 5 * PG + 10, 64, SEED_U),
	    "userfaultfd: an sg table waits for the page (ret %d)", ret);
	ioctl(xf, XI_TEST_VMAP_PUT);	/* none if the vmaps failed */

	/* Item 5: copyv, range 1 grows to 8 KiB while range 0 waits. */
	{
		struct xi_test_range r[2] = {
			{ GPA_U + 6 * PG + 100, 200 }, { GPA_A + 64, 64 },
		};
		uint8_t *big = calloc(1, 2 * PG);

		guest_exec(vm, vcpu_main, G_FILL, GPA_A, 4 * PG, 2100);
		uf.mut = (struct xi_test_mutate){ .index = 1,
						  .gpa = GPA_A, .len = 2 * PG };
		uf.mut_ret = -1;
		WRITE_ONCE(uf.mutate, 1);
		ret = xi_copyv(xf, XI_TEST_CTX_KTHREAD, 0, r, 2, big, 264,
			       XI_TEST_F_MUTABLE);
		tap(uf.mut_ret == 0 && !ret &&
		    !mismatches(big, r[0].gpa, 200, SEED_U) &&
		    !mismatches(big + 200, r[1].gpa, 64, 2100),
		    "copyv: ranges changed by the caller mid-call are read once: the checked lengths are copied (mutate %d, ret %d)",
		    uf.mut_ret, ret);
		free(big);
	}
	/* Item 5: sg, range 0 grows to 3 pages while it is being pinned. */
	{
		struct xi_test_range r[2] = {
			{ GPA_U + 7 * PG + 8, 100 }, { GPA_A + 500, 100 },
		};

		uf.mut = (struct xi_test_mutate){ .index = 0,
						  .gpa = GPA_U + 7 * PG,
						  .len = 3 * PG };
		uf.mut_ret = -1;
		WRITE_ONCE(uf.mutate, 1);
		ret = xi_sg_flags(xf, XI_TEST_CTX_KTHREAD, DIR_TO_DEV, r, 2, buf,
				  200, XI_TEST_F_MUTABLE, NULL);
		tap(uf.mut_ret == 0 && !ret &&
		    !mismatches(buf, r[0].gpa, 100, SEED_U) &&
		    !mismatches(buf + 100, r[1].gpa, 100, 2100),
		    "sg: ranges changed by the caller while pinning are read once: the table describes the checked ranges (mutate %d, ret %d)",
		    uf.mut_ret, ret);
	}

	WRITE_ONCE(uf.stop, 1);
	pthread_join(thr, NULL);
	vm_set_user_memory_region(vm, SLOT_U, 0, GPA_U, 0, uf.mem);
	munmap(uf.mem, PAGES_U * PG);
	close(uf.uffd);
}

/*
 * Item 7: copies on a memslot that can hold private memory must not fail
 * with EAGAIN because unrelated invalidations keep completing.  The slot's
 * shared memory is shmem, so MADV_DONTNEED only zaps the VMM's page
 * tables (an MMU-notifier invalidation, as NUMA balancing or KSM make)
 * and the data stays.
 */
struct zapper {
	uint8_t *hva;
	int stop;
	unsigned long zaps;
};

static void *zap_thread(void *arg)
{
	struct zapper *z = arg;

	while (!READ_ONCE(z->stop)) {
		madvise(z->hva + PG, PG, MADV_DONTNEED);
		z->zaps++;
	}
	return NULL;
}

static void test_private_churn(void)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	struct zapper z = {};
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	unsigned int i, fails = 0, bad = 0, n = 400, refreshes = 0;
	int xf, r, first = 0;
	uint32_t rf = 0;
	uint8_t buf[PG];
	pthread_t thr;

	if (!(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM))) {
		tap_skip("private memory churn", "KVM_X86_SW_PROTECTED_VM not supported");
		return;
	}
	vm = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_code);
	vm_mem_add(vm, VM_MEM_SRC_SHMEM, GPA_PRIV, SLOT_PRIV, PAGES_PRIV,
		   KVM_MEM_GUEST_MEMFD, -1, 0);
	virt_map(vm, GPA_PRIV + GVA_OFF, GPA_PRIV, PAGES_PRIV);
	guest_exec(vm, vcpu, 0, 0, 0, 0);
	guest_exec(vm, vcpu, G_FILL, GPA_PRIV, PAGES_PRIV * PG, 2200);
	xf = xi_open();
	TEST_ASSERT(!xi_bind(xf, vm->fd), "bind");

	z.hva = addr_gpa2hva(vm, GPA_PRIV);
	pthread_create(&thr, NULL, zap_thread, &z);

	/*
	 * A mapping of page 2 is made and read while page 1 is zapped over
	 * and over: those invalidations are not its own, it must neither
	 * spin in its refresh nor refresh on access.
	 */
	r = xi_vmap(xf, GPA_PRIV + 2 * PG + 16, 256, 0);
	for (i = 0; i < 100 && !r; i++) {
		r = xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, buf, 256, &rf);
		refreshes += rf;
		if (!r && mismatches(buf, GPA_PRIV + 2 * PG + 16, 256, 2200))
			bad++;
	}
	tap(!r && !refreshes && !bad,
	    "private-capable slot: a mapping of page 2 made and read 100 times beside invalidations of page 1: %u refreshes, %u wrong reads (ret %d)",
	    refreshes, bad, r);
	ioctl(xf, XI_TEST_VMAP_PUT);
	bad = 0;

	for (i = 0; i < n; i++) {
		int ctx = i % 3;

		if (i & 1) {
			fill(buf, GPA_PRIV + PG, PG, 2200);
			r = xi_copy(xf, ctx, 1, GPA_PRIV + PG, buf, PG);
		} else {
			r = xi_copy(xf, ctx, 0, GPA_PRIV + PG, buf, PG);
			if (!r && mismatches(buf, GPA_PRIV + PG, PG, 2200))
				bad++;
		}
		if (r) {
			if (!fails)
				first = r;
			fails++;
		}
	}
	WRITE_ONCE(z.stop, 1);
	pthread_join(thr, NULL);
	tap(z.zaps > 0 && !fails && !bad &&
	    !guest_exec(vm, vcpu, G_VERIFY, GPA_PRIV, PAGES_PRIV * PG, 2200),
	    "private-capable slot: %u copies beside %lu invalidations of the page: %u failed (first %d), %u read wrong data",
	    n, z.zaps, fails, first, bad);
	xi_unbind(xf);
	close(xf);
	kvm_vm_free(vm);
}

/*
 * Issue 11: a dirty-ring VM with KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP.  The
 * capability needs the ring and no memslot yet, before any the selftest
 * library would add, so this VM is built with plain ioctls: a real-mode
 * vCPU writes pages of a dirty-logged memslot (they go to its ring) while
 * a kthread writes others through the API (they go to the bitmap).  After
 * collecting the ring and the bitmap, every page either side wrote must be
 * reported and nothing else.
 */
#define RB_SLOT		1
#define RB_GPA		0x10000ull	/* real mode: ds = 0x1000 */
#define RB_PAGES	16
#define RB_RING		4096		/* entries */

struct rb_vcpu {
	int fd;
	struct kvm_run *run;
	int exit;
};

static void *rb_run(void *arg)
{
	struct rb_vcpu *v = arg;

	v->exit = ioctl(v->fd, KVM_RUN, 0) ? -errno : (int)v->run->exit_reason;
	return NULL;
}

static void test_dirty_ring_bitmap(void)
{
	/* mov ax,0x1000; mov ds,ax; mov byte [0x1000+i*0x1000],0x5a...; hlt */
	static const uint8_t code[] = {
		0xb8, 0x00, 0x10, 0x8e, 0xd8,
		0xc6, 0x06, 0x10, 0x10, 0x5a,	/* page 1 */
		0xc6, 0x06, 0xff, 0x2f, 0x5b,	/* page 2 */
		0xc6, 0x06, 0x08, 0x60, 0x5c,	/* page 6 */
		0xf4,
	};
	struct kvm_userspace_memory_region r0, r1;
	struct kvm_enable_cap cap = {};
	unsigned long bmap[1] = {}, ring_pages = 0, want;
	struct kvm_dirty_log log = {};
	struct kvm_dirty_gfn *ring;
	struct kvm_sregs sregs;
	struct kvm_regs regs = {};
	struct rb_vcpu v = {};
	uint8_t *low, *mem, buf[64];
	int kvm, vm, xf, ret, r[4], i, mmap_size;
	pthread_t thr;

	if (!kvm_has_cap(KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP) ||
	    !(kvm_has_cap(KVM_CAP_DIRTY_LOG_RING) ||
	      kvm_has_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL))) {
		tap_skip("dirty ring with bitmap",
			 "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP not supported");
		return;
	}
	kvm = open("/dev/kvm", O_RDWR);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	TEST_ASSERT(vm >= 0, "KVM_CREATE_VM");
	cap.cap = kvm_has_cap(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) ?
		  KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
	cap.args[0] = RB_RING * sizeof(struct kvm_dirty_gfn);
	TEST_ASSERT(!ioctl(vm, KVM_ENABLE_CAP, &cap), "enable the dirty ring");
	cap = (struct kvm_enable_cap){ .cap = KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP };
	ret = ioctl(vm, KVM_ENABLE_CAP, &cap);
	tap(!ret, "dirty ring with bitmap: KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP enabled (errno %d)",
	    ret ? errno : 0);

	low = mmap(NULL, RB_GPA, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mem = mmap(NULL, RB_PAGES * PG, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(low != MAP_FAILED && mem != MAP_FAILED, "mmap");
	memcpy(low, code, sizeof(code));
	r0 = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = RB_GPA,
		.userspace_addr = (uintptr_t)low,
	};
	r1 = (struct kvm_userspace_memory_region){
		.slot = RB_SLOT, .flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = RB_GPA, .memory_size = RB_PAGES * PG,
		.userspace_addr = (uintptr_t)mem,
	};
	TEST_ASSERT(!ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r0) &&
		    !ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r1), "memslots");

	v.fd = ioctl(vm, KVM_CREATE_VCPU, 0);
	TEST_ASSERT(v.fd >= 0, "KVM_CREATE_VCPU");
	mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	v.run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		     v.fd, 0);
	ring = mmap(NULL, RB_RING * sizeof(*ring), PROT_READ | PROT_WRITE,
		    MAP_SHARED, v.fd, KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
	TEST_ASSERT(v.run != MAP_FAILED && ring != MAP_FAILED, "vcpu mmap");
	TEST_ASSERT(!ioctl(v.fd, KVM_GET_SREGS, &sregs), "sregs");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	TEST_ASSERT(!ioctl(v.fd, KVM_SET_SREGS, &sregs), "sregs");
	regs.rip = 0;
	regs.rflags = 2;
	TEST_ASSERT(!ioctl(v.fd, KVM_SET_REGS, &regs), "regs");

	xf = xi_open();
	TEST_ASSERT(!xi_bind(xf, vm), "bind");
	/* The vCPU writes pages 1, 2, 6 while the kthread writes 4, 9-10, 12. */
	pthread_create(&thr, NULL, rb_run, &v);
	fill(buf, RB_GPA + 4 * PG + 8, 16, 2300);
	r[0] = xi_copy(xf, XI_TEST_CTX_KTHREAD, 1, RB_GPA + 4 * PG + 8, buf, 16);
	r[1] = xi_copy(xf, XI_TEST_CTX_WORKQUEUE, 1, RB_GPA + 10 * PG - 8, buf, 16);
	r[2] = xi_vmap(xf, RB_GPA + 12 * PG, 64, 1);
	r[2] |= xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 1, 0, buf, 64, NULL);
	r[3] = xi_copy(xf, XI_TEST_CTX_KTHREAD, 0, RB_GPA + 14 * PG, buf, 64);
	pthread_join(thr, NULL);
	ioctl(xf, XI_TEST_VMAP_PUT);	/* none if the vmap failed */

	/* Collect the ring, then the bitmap, as a migrating VMM does. */
	for (i = 0; i < RB_RING; i++) {
		struct kvm_dirty_gfn *e = &ring[i];

		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
		      KVM_DIRTY_GFN_F_DIRTY))
			break;
		if (e->slot == RB_SLOT && e->offset < 64)
			ring_pages |= 1ul << e->offset;
		else if (e->slot == RB_SLOT)
			ring_pages |= 1ul << 63;	/* out of range */
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
				 __ATOMIC_RELEASE);
	}
	ioctl(vm, KVM_RESET_DIRTY_RINGS, 0);
	log.slot = RB_SLOT;
	log.dirty_bitmap = bmap;
	ret = ioctl(vm, KVM_GET_DIRTY_LOG, &log);
	want = (1ul << 1) | (1ul << 2) | (1ul << 6);
	tap(v.exit == KVM_EXIT_HLT && ring_pages == want &&
	    mem[PG + 0x10] == 0x5a && mem[2 * PG + 0xfff] == 0x5b,
	    "dirty ring with bitmap: the vCPU's writes are in its ring (%#lx, want %#lx, exit %d)",
	    ring_pages, want, v.exit);
	want = (1ul << 4) | (1ul << 9) | (1ul << 10) | (1ul << 12);
	tap(!r[0] && !r[1] && !r[2] && !r[3] && !ret && bmap[0] == want &&
	    !mismatches(mem + 4 * PG + 8, RB_GPA + 4 * PG + 8, 16, 2300),
	    "dirty ring with bitmap: the API's writes are accepted and in the bitmap, reads are not (%#lx, want %#lx, ret %d/%d/%d/%d/%d)",
	    bmap[0], want, r[0], r[1], r[2], r[3], ret);
	xi_unbind(xf);
	close(xf);
	munmap(ring, RB_RING * sizeof(*ring));
	munmap(v.run, mmap_size);
	close(v.fd);
	close(vm);
	close(kvm);
	munmap(low, RB_GPA);
	munmap(mem, RB_PAGES * PG);
}

/* ---- fault injection (issue 11): every failure path of the API ---- */

/* Arm the next operation on @xf; returns what was left of the last one. */
static int xi_fail_nth(int xf, uint32_t nth)
{
	struct xi_test_fail_nth f = { .nth = nth };

	TEST_ASSERT(!ioctl(xf, XI_TEST_FAIL_NTH, &f), "XI_TEST_FAIL_NTH");
	return f.left;
}

/* Write @val to a debugfs fault-injection knob; returns the old value. */
static int knob(const char *path, int val)
{
	char old[32] = "";
	FILE *f = fopen(path, "r+");
	int o = -1;

	if (!f)
		return -1;
	if (fgets(old, sizeof(old), f))
		o = atoi(old);
	rewind(f);
	fprintf(f, "%d\n", val);
	fclose(f);
	return o;
}

static const char * const fi_knobs[] = {
	"/sys/kernel/debug/failslab/ignore-gfp-wait",
	"/sys/kernel/debug/failslab/verbose",
	"/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait",
	"/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem",
	"/sys/kernel/debug/fail_page_alloc/min-order",
	"/sys/kernel/debug/fail_page_alloc/verbose",
	"/sys/kernel/debug/fail_usercopy/verbose",
};

static int fi_saved[ARRAY_SIZE(fi_knobs)];

/*
 * Inject into every allocation and user copy, quietly: a verbose injection
 * prints a stack trace, and the run fails on any in the kernel log.
 */
static bool fi_setup(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(fi_knobs); i++) {
		fi_saved[i] = knob(fi_knobs[i], 0);
		if (fi_saved[i] < 0)
			return false;
	}
	return true;
}

static void fi_restore(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(fi_knobs); i++)
		knob(fi_knobs[i], fi_saved[i]);
}

/* One operation of the sweep. */
struct fi_op {
	const char *name;
	int ctx;
	/* Runs the operation once (armed by the caller); returns 0 or -errno. */
	int (*run)(struct kvm_vm *vm, int xf, const struct fi_op *op);
	/* Whatever the operation needs before each try (or NULL). */
	void (*prepare)(struct kvm_vm *vm, int xf, const struct fi_op *op);
	/* After a try that succeeded: did it do its job, as the guest sees? */
	bool (*check)(struct kvm_vm *vm, int xf, const struct fi_op *op);
	/* After every try: put back what it made. */
	void (*undo)(struct kvm_vm *vm, int xf, const struct fi_op *op);
	const int *errnos;	/* the documented ones, 0-terminated */
};

static const int fi_err_alloc[] = { ENOMEM, 0 };
static const int fi_err_copy[] = { ENOMEM, EFAULT, 0 };

#define FI_GPA		(GPA_A + 3 * PG + 123)
#define FI_LEN		(2 * PG + 300)
#define FI_SEED		2400
static uint64_t fi_seed;
static int fi_xf2 = -1;
static uint8_t fi_buf[FI_LEN + PG];

static int fi_bind(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_bind(fi_xf2, vm->fd);
}

static bool fi_bind_check(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	uint8_t b[64];

	guest_exec(vm, vcpu_main, G_FILL, FI_GPA, 64, FI_SEED);
	return !xi_copy(fi_xf2, XI_TEST_CTX_KTHREAD, 0, FI_GPA, b, 64) &&
	       !mismatches(b, FI_GPA, 64, FI_SEED);
}

static void fi_bind_undo(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	xi_unbind(fi_xf2);
}

/* Reads: the guest fills the range first, the read must match. */
static void fi_read_prepare(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	fi_seed = FI_SEED + 1 + (fi_seed + 1) % 50;
	guest_exec(vm, vcpu_main, G_FILL, FI_GPA, FI_LEN, fi_seed);
	memset(fi_buf, 0, sizeof(fi_buf));
}

static int fi_copy_from(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_copy_any(xf, op->ctx, 0, FI_GPA, fi_buf, FI_LEN);
}

static bool fi_read_check(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return !mismatches(fi_buf, FI_GPA, FI_LEN, fi_seed);
}

/* Writes: a new pattern each try; the guest must see the last one. */
static void fi_write_prepare(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	fi_seed = FI_SEED + 100 + (fi_seed + 1) % 50;
	fill(fi_buf, FI_GPA, FI_LEN, fi_seed);
}

static int fi_copy_to(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_copy_any(xf, op->ctx, 1, FI_GPA, fi_buf, FI_LEN);
}

static bool fi_write_check(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return !guest_exec(vm, vcpu_main, G_VERIFY, FI_GPA, FI_LEN, fi_seed);
}

/* copyv with the cache, 12 ranges: more than fit on the stack. */
static struct xi_test_range fi_chain[12];

static void fi_chain_init(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(fi_chain); i++)
		fi_chain[i] = (struct xi_test_range){
			GPA_A + i * 700 + 13, 100 + i };
}

static void fi_copyv_prepare(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	fi_seed = FI_SEED + 200 + (fi_seed + 1) % 50;
	fill_ranges(fi_buf, fi_chain, ARRAY_SIZE(fi_chain), fi_seed);
}

static int fi_copyv(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_copyv(xf, op->ctx, 1, fi_chain, ARRAY_SIZE(fi_chain), fi_buf,
			ranges_len(fi_chain, ARRAY_SIZE(fi_chain)),
			XI_TEST_F_CACHE | XI_TEST_F_USE_MM);
}

static bool fi_copyv_check(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return !guest_ranges(vm, G_VERIFY, fi_chain, ARRAY_SIZE(fi_chain),
			     fi_seed);
}

/* vmap: create; refresh after an invalidation; access. */
static int fi_vmap(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_vmap(xf, FI_GPA, FI_LEN, 1);
}

static bool fi_vmap_check(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	fi_read_prepare(vm, xf, op);
	return !xi_vmap_rw(xf, XI_TEST_CTX_KTHREAD, 0, 0, fi_buf, FI_LEN, NULL) &&
	       fi_read_check(vm, xf, op);
}

static void fi_vmap_undo(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	ioctl(xf, XI_TEST_VMAP_PUT);
}

/* The mapping exists; MADV_DONTNEED invalidates it, the guest refills. */
static void fi_refresh_prepare(struct kvm_vm *vm, int xf,
			       const struct fi_op *op)
{
	uint8_t *hva = addr_gpa2hva(vm, FI_GPA & ~(PG - 1));

	TEST_ASSERT(!madvise(hva, 4 * PG, MADV_DONTNEED), "madvise");
	fi_read_prepare(vm, xf, op);
}

static int fi_vmap_read(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_vmap_rw(xf, op->ctx, 0, 0, fi_buf, FI_LEN, NULL);
}

static int fi_vmap_write(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_vmap_rw(xf, op->ctx, 1, 0, fi_buf, FI_LEN, NULL);
}

/* sg: scatter into the chain (DMA_FROM_DEVICE), build and free. */
static int fi_sg(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	return xi_sg(xf, op->ctx, DIR_FROM_DEV, fi_chain, ARRAY_SIZE(fi_chain),
		     fi_buf, ranges_len(fi_chain, ARRAY_SIZE(fi_chain)), NULL);
}

static const struct fi_op fi_ops[] = {
	{ "bind", 0, fi_bind, NULL, fi_bind_check, fi_bind_undo, fi_err_alloc },
	{ "copy_from caller", XI_TEST_CTX_CALLER, fi_copy_from, fi_read_prepare,
	  fi_read_check, NULL, fi_err_copy },
	{ "copy_from kthread", XI_TEST_CTX_KTHREAD, fi_copy_from,
	  fi_read_prepare, fi_read_check, NULL, fi_err_copy },
	{ "copy_from workqueue", XI_TEST_CTX_WORKQUEUE, fi_copy_from,
	  fi_read_prepare, fi_read_check, NULL, fi_err_copy },
	{ "copy_from foreign-process", CTX_FOREIGN, fi_copy_from,
	  fi_read_prepare, fi_read_check, NULL, fi_err_copy },
	{ "copy_to caller", XI_TEST_CTX_CALLER, fi_copy_to, fi_write_prepare,
	  fi_write_check, NULL, fi_err_copy },
	{ "copy_to kthread", XI_TEST_CTX_KTHREAD, fi_copy_to, fi_write_prepare,
	  fi_write_check, NULL, fi_err_copy },
	{ "copy_to workqueue", XI_TEST_CTX_WORKQUEUE, fi_copy_to,
	  fi_write_prepare, fi_write_check, NULL, fi_err_copy },
	{ "copy_to foreign-process", CTX_FOREIGN, fi_copy_to, fi_write_prepare,
	  fi_write_check, NULL, fi_err_copy },
	{ "copyv 12 ranges with a cache, kthread in use_mm",
	  XI_TEST_CTX_KTHREAD, fi_copyv, fi_copyv_prepare, fi_copyv_check,
	  NULL, fi_err_copy },
	{ "vmap create", 0, fi_vmap, NULL, fi_vmap_check, fi_vmap_undo,
	  fi_err_copy },
	{ "sg build and free, kthread", XI_TEST_CTX_KTHREAD, fi_sg,
	  fi_copyv_prepare, fi_copyv_check, NULL, fi_err_copy },
};

/* After the table: these need a mapping made once, outside the sweep. */
static const struct fi_op fi_map_ops[] = {
	{ "vmap refresh after an invalidation, kthread", XI_TEST_CTX_KTHREAD,
	  fi_vmap_read, fi_refresh_prepare, fi_read_check, NULL, fi_err_copy },
	{ "vmap access, workqueue", XI_TEST_CTX_WORKQUEUE, fi_vmap_write,
	  fi_write_prepare, fi_write_check, NULL, fi_err_copy },
};

#define FI_MAX_POINTS	400

static bool fi_errno_ok(const struct fi_op *op, int ret)
{
	const int *e;

	for (e = op->errnos; *e; e++)
		if (ret == -*e)
			return true;
	return false;
}

/*
 * The iommufd_fail_nth sweep for one operation: make its nth injectable
 * call fail, for n = 1, 2, ... until it completes without reaching n.
 * Each try must succeed (an injection the API absorbed) or fail with a
 * documented errno; the try without injection must do the job.
 */
static unsigned int fi_sweep(struct kvm_vm *vm, int xf, const struct fi_op *op)
{
	unsigned int n, injected = 0, failed = 0, bad = 0;
	int ret = 0, left = 0, bad_ret = 0;
	bool done = false, ok = false;

	for (n = 1; n <= FI_MAX_POINTS && !done; n++) {
		if (op->prepare)
			op->prepare(vm, xf, op);
		xi_fail_nth(op->run == fi_bind ? fi_xf2 : xf, n);
		ret = op->run(vm, xf, op);
		left = xi_fail_nth(op->run == fi_bind ? fi_xf2 : xf, 0);
		if (left != 0) {
			/* Nothing was injected: the operation must work. */
			done = true;
			ok = !ret && (!op->check || op->check(vm, xf, op));
		} else {
			injected++;
			if (ret && !fi_errno_ok(op, ret)) {
				bad++;
				bad_ret = ret;
			} else if (ret) {
				failed++;
			} else if (op->check && !op->check(vm, xf, op)) {
				/* Absorbed, so it must have done its job. */
				bad++;
				bad_ret = 0;
			}
		}
		if (op->undo)
			op->undo(vm, xf, op);
	}
	tap(done && ok && !bad,
	    "fail-nth %s: %u points injected, %u failed with a documented errno, %u absorbed, %u with another (%d); then it works (ret %d, left %d)",
	    op->name, injected, failed, injected - failed - bad, bad, bad_ret,
	    ret, left);
	return injected;
}

static void test_fail_nth(void)
{
	unsigned int i, points = 0;
	struct kvm_vm *vm;
	int xf;

	if (access("/sys/kernel/debug/failslab", F_OK) ||
	    access("/proc/self/fail-nth", F_OK)) {
		tap_skip("fail-nth", "no CONFIG_FAILSLAB / CONFIG_FAULT_INJECTION_DEBUG_FS");
		return;
	}
	TEST_ASSERT(fi_setup(), "fault-injection knobs");
	vm = vm_create_with_one_vcpu(&vcpu_main, guest_code);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_A, SLOT_A,
				    PAGES_A, 0);
	virt_map(vm, GPA_A + GVA_OFF, GPA_A, PAGES_A);
	guest_exec(vm, vcpu_main, 0, 0, 0, 0);
	xf = xi_open();
	fi_xf2 = xi_open();
	TEST_ASSERT(!xi_bind(xf, vm->fd), "bind");
	fi_chain_init();

	for (i = 0; i < ARRAY_SIZE(fi_ops); i++)
		points += fi_sweep(vm, xf, &fi_ops[i]);
	TEST_ASSERT(!xi_vmap(xf, FI_GPA, FI_LEN, 1), "vmap");
	for (i = 0; i < ARRAY_SIZE(fi_map_ops); i++)
		points += fi_sweep(vm, xf, &fi_map_ops[i]);
	ioctl(xf, XI_TEST_VMAP_PUT);

	tap(xi_unbind(xf) == 0 && points > 0,
	    "fail-nth: %u (operation, n) points injected over %zu operations",
	    points, ARRAY_SIZE(fi_ops) + ARRAY_SIZE(fi_map_ops));
	close(fi_xf2);
	close(xf);
	kvm_vm_free(vm);
	fi_restore();
}

int main(int argc, char *argv[])
{
	struct kvm_vm *vm;
	int xf;

	ksft_print_header();
	/* -F: the fault-injection sweep alone (its own entry in make check). */
	if (argc > 1 && !strcmp(argv[1], "-F")) {
		test_fail_nth();
		ksft_set_plan(ksft_test_num());
		ksft_finished();
	}
	xf = xi_open();

	vm = vm_create_with_one_vcpu(&vcpu_main, guest_code);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_A, SLOT_A, PAGES_A, 0);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_B, SLOT_B, PAGES_B, 0);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_RO, SLOT_RO, PAGES_RO,
				    KVM_MEM_READONLY);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_DIRTY, SLOT_DIRTY,
				    PAGES_DIRTY, KVM_MEM_LOG_DIRTY_PAGES);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS_THP, GPA_THP, SLOT_THP,
				    PAGES_THP, 0);
	virt_map(vm, GPA_A + GVA_OFF, GPA_A, PAGES_A + PAGES_B);
	virt_map(vm, GPA_RO + GVA_OFF, GPA_RO, PAGES_RO);
	virt_map(vm, GPA_DIRTY + GVA_OFF, GPA_DIRTY, PAGES_DIRTY);
	virt_map(vm, GPA_THP + GVA_OFF, GPA_THP, PAGES_THP);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_V, SLOT_V, PAGES_V, 0);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, GPA_S, SLOT_S, PAGES_S, 0);
	virt_map(vm, GPA_V + GVA_OFF, GPA_V, PAGES_V);
	virt_map(vm, GPA_S + GVA_OFF, GPA_S, PAGES_S);
	guest_exec(vm, vcpu_main, 0, 0, 0, 0);	/* to the first sync */

	test_bind_errors(xf, vm->fd);
	test_contexts(vm, xf);
	test_sizes(vm, xf);
	test_bad_ranges(vm, xf);
	test_readonly(vm, xf);
	test_dirty_log(vm, xf);
	test_memslot_race(vm, xf);
	test_copyv(vm, xf);
	test_cache(vm, xf);
	test_vmap(vm, xf);
	test_sg(vm, xf);
	test_stress(vm, xf);
	test_bind_owner(vm);
	test_partial_dirty(vm, xf);
	test_vmap_defects(vm, xf);
	test_uffd(vm, xf);
	test_cache_two_vms();
	test_dirty_ring();
	test_dirty_ring_bitmap();
	test_private();
	test_private_churn();
	test_vmm_exit();

	tap(xi_unbind(xf) == 0, "unbind the first VM");
	close(xf);
	kvm_vm_free(vm);
	test_module_pinning();

	ksft_set_plan(ksft_test_num());	/* the plan comes last */
	ksft_finished();
}
