// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvm_xinterface benchmark, through lib/test_xinterface_bench.c.
 *
 * Creates a VM with one data memslot, binds /dev/test_xinterface_bench to
 * it and times every way of touching guest memory the table lists, in the
 * same run: baselines (memcpy, kvm_read_guest(), copy_*_user() on the
 * VMM's mapping, the vfio_dma_rw() pattern, process_vm_readv/writev from a
 * second process) and the xinterface paths (VMM context, kthread, use_mm
 * scope, workqueue, foreign task, vmap, copyv and sg over a fragmented
 * chain), with and without the translation cache.  A second VM has 300
 * more small memslots, for the memslot rows.  No vCPU runs: only the
 * memslots matter.
 *
 * Every row is timed the same way: first its iteration count is
 * calibrated until one batch lasts at least the batch time (-t); then -b
 * rounds each time one batch of every row, in turn, so a burst of load on
 * the host spreads over all rows instead of spoiling one, and rows that
 * are compared (1 vs 301 memslots too) are measured at the same times.
 * A row reports the median and the 10th/90th percentile of its batches'
 * ns per operation (per thread).  Output: the table, the goals of
 * issue 6, then a JSON document, each between XI-BENCH-*-BEGIN/END lines.
 *
 * Usage: xinterface_bench [-t batch_ms] [-b rounds] [-q]
 *   -q  quick: sizes 64 B and 64 KiB only (for smoke runs)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvm_util.h"

#include "../../../../lib/test_xinterface_bench_uapi.h"

#define PG		4096ul
#define DATA_SLOT	1
#define DATA_GPA	0x10000000ull
#define THREAD_STRIDE	(4ul << 20)		/* per-thread data region */
#define DATA_SIZE	(2 * THREAD_STRIDE)
#define ALT_OFF		(2ul << 20)		/* second address, same slot */
/*
 * Buffers in the data slot start 5 pages past a 1 MiB boundary.  Kernel
 * buffers of 64 KiB and more are aligned to their size, and a guest buffer
 * with the same alignment made every page of a 1 MiB user copy collide
 * with its kernel counterpart in QEMU's software TLB (10x slower, both
 * ways); real TLBs are associative and do not care.
 */
#define BUF_OFF		(5 * PG)
#define SMALL_SLOT0	2			/* first of the small slots */
#define SMALL_GPA	0x20000000ull
#define SMALL_PAGES	4			/* 16 KiB each */
#define SMALL_STRIDE	(8 * PG)		/* not adjacent: 16 KiB holes */
#define NR_SMALL	300
#define SMALL_PICK	150			/* the slot the buffer is in */

static const uint64_t all_sizes[] = { 8, 64, 512, 4096, 65536, 1 << 20 };
static const uint64_t quick_sizes[] = { 64, 65536 };
static const uint64_t small_sizes[] = { 8, 64, 512, 4096 };
static const uint64_t mt_sizes[] = { 64, 4096, 65536 };
/* -I: one vCPU, so no two-thread rows; 512 B is the 8 x 64 B chain. */
static const uint64_t icount_sizes[] = { 8, 64, 512, 4096, 65536 };

/* Methods only the program knows: timed in userspace. */
#define M_PVM		100	/* process_vm_readv/writev, second process */

enum ctx_kind { C_VMM, C_KTHREAD, C_WQ, C_FOREIGN, C_PROC };

static const char * const ctx_name[] = {
	[C_VMM] = "vmm", [C_KTHREAD] = "kthread", [C_WQ] = "workqueue",
	[C_FOREIGN] = "foreign", [C_PROC] = "2nd-proc",
};

struct row {
	char name[48];
	int method;
	enum ctx_kind ctx;
	int cache, threads, write;
	int vmi;		/* which VM */
	int slots;		/* memslots in that VM */
	int alt;		/* alternate between two addresses */
	uint64_t len;
	/* results */
	int err;
	uint64_t iters;		/* per batch, from the calibration */
	unsigned int nsamples;
	__u64 samples[XB_MAX_THREADS * XB_MAX_BATCHES];	/* batch ns */
	double med, p10, p90;	/* ns per operation */
	uint64_t hits, misses;
};

static struct row *rows;
static unsigned int nrows, rows_cap;
static uint64_t batch_ns = 50 * 1000 * 1000;
static unsigned int batches = 7;
/* VM 0: the data memslot only.  VM 1: the same plus NR_SMALL small ones. */
static int bench_fd[2];
static struct kvm_vm *vms[2];
static int cur_vm;
static int failures;
/*
 * -I: the guest runs under QEMU's -icount shift=0,sleep=off, where guest
 * time advances one ns per guest instruction: every ns figure is then a
 * count of instructions, the same from run to run.
 */
static int icount;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void add_samples(struct row *r, const __u64 *ns, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n && r->nsamples < ARRAY_SIZE(r->samples); i++)
		r->samples[r->nsamples++] = ns[i];
}

/* Median and nearest-rank percentiles of the per-batch ns/op. */
static void stats(struct row *r)
{
	unsigned int i, n = r->nsamples;
	double v[ARRAY_SIZE(r->samples)];

	if (!n)
		return;
	for (i = 0; i < n; i++)
		v[i] = (double)r->samples[i] / r->iters;
	qsort(v, n, sizeof(v[0]), cmp_double);
	r->med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	r->p10 = v[(unsigned int)(0.1 * (n - 1) + 0.5)];
	r->p90 = v[(unsigned int)(0.9 * (n - 1) + 0.5)];
}

static uint64_t row_gpa(const struct row *r, int second)
{
	if (r->vmi)
		return SMALL_GPA + (SMALL_PICK + second) * SMALL_STRIDE;
	return DATA_GPA + BUF_OFF + (second ? ALT_OFF : 0);
}

static void *row_hva(const struct row *r, int second)
{
	return addr_gpa2hva(vms[r->vmi], row_gpa(r, second));
}

/*
 * One ioctl: calibrate (r->iters == 0) or time one batch of r->iters.
 * The calibration batch is not kept as a sample.
 */
static int kernel_row(struct row *r)
{
	struct xb_run run = {
		.method = r->method,
		.flags = (r->write ? XB_F_WRITE : 0) |
			 (r->cache ? XB_F_CACHE : 0),
		.threads = r->threads,
		.len = r->len,
		.gpa = row_gpa(r, 0),
		.gpa2 = r->alt ? row_gpa(r, 1) : 0,
		.thread_stride = THREAD_STRIDE,
		.batch_ns = batch_ns,
		.batches = 1,
		.iters = r->iters,
	};
	int calibrate = !r->iters;

	run.hva = (uint64_t)row_hva(r, 0);
	if (run.gpa2)
		run.hva2 = (uint64_t)row_hva(r, 1);
	switch (r->ctx) {
	case C_KTHREAD:
		run.ctx = XB_CTX_KTHREAD;
		break;
	case C_WQ:
		run.ctx = XB_CTX_WORKQUEUE;
		break;
	default:
		run.ctx = XB_CTX_CALLER;
	}
	if (ioctl(bench_fd[r->vmi], XB_RUN, &run))
		return errno;
	r->iters = run.iters;
	if (!calibrate)
		add_samples(r, run.ns, run.threads);
	r->hits += run.hits;
	r->misses += run.misses;
	return 0;
}

/* process_vm_readv/writev of the parent's mapping, timed like the module. */
static int pvm_batch(pid_t pid, struct row *r, void *buf, uint64_t n,
		     __u64 *ns)
{
	struct iovec local = { buf, r->len };
	struct iovec remote = { row_hva(r, 0), r->len };
	uint64_t i, t0 = now_ns();
	ssize_t got;

	for (i = 0; i < n; i++) {
		if (r->write)
			got = process_vm_writev(pid, &local, 1, &remote, 1, 0);
		else
			got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
		if (got != (ssize_t)r->len)
			return got < 0 ? errno : EIO;
	}
	*ns = now_ns() - t0;
	return 0;
}

/* As kernel_row(), for process_vm_readv/writev, in the same way. */
static int pvm_row(pid_t pid, struct row *r)
{
	uint64_t n = r->iters ? r->iters : 1;
	void *buf = malloc(r->len);
	__u64 ns = 0;
	int err;

	if (!buf)
		return errno;	/* ENOMEM; rows keep positive errnos */
	memset(buf, 0x5a, r->len);
	if (r->iters) {
		err = pvm_batch(pid, r, buf, n / 8 ? n / 8 : 1, &ns);
		if (!err)
			err = pvm_batch(pid, r, buf, n, &ns);
		if (!err)
			add_samples(r, &ns, 1);
	} else {
		for (;;) {
			err = pvm_batch(pid, r, buf, n, &ns);
			if (err || ns >= batch_ns || n >= XB_MAX_ITERS)
				break;
			n *= ns * 8 < batch_ns ? 8 : 2;
		}
		r->iters = n;
	}
	free(buf);
	return err;
}

/*
 * Rows of another process: a child forked for the row, with its own mm.
 * Its xinterface copies take the foreign-task path; process_vm_* reads or
 * writes the parent.  The result comes back through a shared mapping.
 */
static int child_row(struct row *r)
{
	struct row *shared;
	pid_t parent = getpid(), pid;
	int status, err;

	shared = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(shared != MAP_FAILED, "mmap");
	*shared = *r;
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		if (r->method == M_PVM)
			shared->err = pvm_row(parent, shared);
		else
			shared->err = kernel_row(shared);
		_exit(0);
	}
	TEST_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		shared->err = ECHILD;
	err = shared->err;
	*r = *shared;
	munmap(shared, sizeof(*r));
	return err;
}

static const char *method_name(const struct row *r)
{
	switch (r->method) {
	case XB_M_NULL:		return "null (loop overhead)";
	case XB_M_MEMCPY:	return "memcpy";
	case XB_M_REP_MOVSB:	return "rep movsb (kernel bufs)";
	case XB_M_KVM_READ:	return "kvm_read_guest";
	case XB_M_USER:		return "copy_user";
	case XB_M_VFIO:		return "vfio pattern";
	case XB_M_XI:		return "xi copy";
	case XB_M_XI_SCOPE:	return "xi copy in use_mm scope";
	case XB_M_VMAP:		return "xi vmap";
	case XB_M_COPYV:	return "xi copyv 8 frags";
	case XB_M_SG:		return "xi sg+copy+free 8 frags";
	case XB_M_SG_COPY:	return "sg copy (prebuilt) 8 frags";
	case XB_M_SG_BUILD:	return "xi sg+free 8 frags";
	case XB_M_PIN:		return "pin_user_pages_remote 8 frags";
	case XB_M_SRCU:		return "piece: srcu lock+unlock";
	case XB_M_RWLOCK:	return "piece: read_lock+unlock";
	case XB_M_VMAP_EMPTY:	return "piece: vmap begin+end";
	case XB_M_OBJCHECK:	return "piece: check_object_size";
	case XB_M_MMSWITCH:	return "piece: mm switch";
	case M_PVM:		return "process_vm_rw";
	}
	return "?";
}

static void add_row(int method, enum ctx_kind ctx, int cache, int threads,
		    int write, int alt, uint64_t len)
{
	struct row *r;

	if (nrows == rows_cap) {
		rows_cap = rows_cap ? 2 * rows_cap : 256;
		rows = realloc(rows, rows_cap * sizeof(*rows));
		TEST_ASSERT(rows, "realloc");
	}
	r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->ctx = ctx;
	r->cache = cache;
	r->threads = threads;
	r->write = write;
	r->alt = alt;
	r->len = len;
	r->vmi = cur_vm;
	r->slots = cur_vm ? 1 + NR_SMALL : 1;
	snprintf(r->name, sizeof(r->name), "%s%s", method_name(r),
		 cache ? " +cache" : "");
}

static void run_once(struct row *r)
{
	if (r->err)
		return;
	if (r->ctx == C_FOREIGN || r->ctx == C_PROC)
		r->err = child_row(r);
	else
		r->err = kernel_row(r);
	if (r->err) {
		failures++;
		fprintf(stderr, "row %s %s %s %lu: %s\n", r->name,
			ctx_name[r->ctx], r->write ? "write" : "read",
			(unsigned long)r->len, strerror(r->err));
	}
}

/* Calibrate rows [from, nrows), then time them in interleaved rounds. */
static void run_rows(unsigned int from)
{
	unsigned int i, round;

	for (i = from; i < nrows; i++)
		run_once(&rows[i]);
	for (round = 0; round < batches; round++)
		for (i = from; i < nrows; i++)
			run_once(&rows[i]);
	for (i = from; i < nrows; i++)
		stats(&rows[i]);
}

/* ---- reference lookups and output ---- */

static const struct row *find(int method, enum ctx_kind ctx, int cache,
			      int threads, int write, int slots, int alt,
			      uint64_t len)
{
	unsigned int i;

	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		if (r->method == method && r->ctx == ctx && r->cache == cache &&
		    r->threads == threads && r->write == write &&
		    r->slots == slots && r->alt == alt && r->len == len &&
		    !r->err)
			return r;
	}
	return NULL;
}

/* Throughput as a fraction of memcpy's, same size and direction. */
static double vs_memcpy(const struct row *r)
{
	const struct row *m = find(XB_M_MEMCPY, C_VMM, 0, 1, r->write, 1, 0,
				   r->len);

	return m && r->med > 0 ? m->med / r->med : 0;
}

/* Time as a multiple of kvm_read_guest()'s, same size (1 memslot). */
static double vs_kvm(const struct row *r)
{
	const struct row *k = find(XB_M_KVM_READ, C_VMM, 0, 1, 0, 1, 0,
				   r->len);

	return k && k->med > 0 ? r->med / k->med : 0;
}

static void fmt_size(char *s, size_t n, uint64_t len)
{
	if (len >= (1 << 20))
		snprintf(s, n, "%luM", (unsigned long)(len >> 20));
	else if (len >= 1024)
		snprintf(s, n, "%luK", (unsigned long)(len >> 10));
	else
		snprintf(s, n, "%lu", (unsigned long)len);
}

/* Which fast-string features the (emulated) CPU reports. */
static const char *cpu_flags(void)
{
	static char out[32];
	char line[4096];
	FILE *f = fopen("/proc/cpuinfo", "r");

	out[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		if (strstr(line, " erms"))
			strcat(out, "erms ");
		if (strstr(line, " fsrm"))
			strcat(out, "fsrm ");
		break;
	}
	if (f)
		fclose(f);
	return out;
}

static void print_table(void)
{
	unsigned int i;

	printf("XI-BENCH-%s-BEGIN\n", icount ? "ICOUNT" : "TABLE");
	printf("# guest CPU fast-string flags: %s\n", cpu_flags());
	printf("%-30s %-9s %2s %5s %-3s %-5s %5s %11s %11s %11s %8s %7s %7s\n",
	       "row", "context", "th", "slots", "acc", "dir", "size",
	       icount ? "instr/op" : "ns/op", "p10", "p90",
	       icount ? "B/instr" : "GB/s", "xMemcpy", "xKvmRd");
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char sz[16];

		fmt_size(sz, sizeof(sz), r->len);
		printf("%-30s %-9s %2d %5d %-3s %-5s %5s ", r->name,
		       ctx_name[r->ctx], r->threads, r->slots,
		       r->alt ? "alt" : "one", r->write ? "write" : "read",
		       sz);
		if (r->err) {
			printf("%11s (%s)\n", "error", strerror(r->err));
			continue;
		}
		printf("%11.1f %11.1f %11.1f %8.3f ", r->med, r->p10, r->p90,
		       r->threads * r->len / r->med);
		if (vs_memcpy(r) > 0)
			printf("%7.3f ", vs_memcpy(r));
		else
			printf("%7s ", "-");
		if (vs_kvm(r) > 0)
			printf("%7.2f\n", vs_kvm(r));
		else
			printf("%7s\n", "-");
	}
	printf("XI-BENCH-%s-END\n", icount ? "ICOUNT" : "TABLE");
}

/* Instructions of one row, or -1 when it is missing or failed. */
static double cnt(int method, enum ctx_kind ctx, int cache, int write,
		  uint64_t len)
{
	const struct row *r = find(method, ctx, cache, 1, write, 1, 0, len);

	return r ? r->med : -1;
}

/*
 * Per path: the instructions of an 8-byte call (what the path costs
 * beyond the copy), the same minus copy_{from,to}_user()'s 8-byte call
 * from the VMM (the path's own overhead), and the per-byte slope between
 * 4 KiB and 64 KiB (the copy instruction: a rep movsb counts once per
 * byte).
 */
static void print_overheads(void)
{
	unsigned int i, j;

	printf("XI-BENCH-OVERHEAD-BEGIN\n");
	printf("%-30s %-9s %-5s %10s %10s %10s %10s %10s %10s\n", "path",
	       "context", "dir", "8B", "64B", "4K", "64K", "8B-user",
	       "instr/B");
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		double c8, c64, c4k, c64k, u8;
		int seen = 0;

		if (r->threads != 1 || r->slots != 1 || r->alt ||
		    r->method == XB_M_NULL)
			continue;
		for (j = 0; j < i && !seen; j++)
			seen = rows[j].method == r->method &&
			       rows[j].ctx == r->ctx &&
			       rows[j].cache == r->cache &&
			       rows[j].write == r->write &&
			       rows[j].threads == 1 && rows[j].slots == 1 &&
			       !rows[j].alt;
		if (seen)
			continue;
		c8 = cnt(r->method, r->ctx, r->cache, r->write, 8);
		c64 = cnt(r->method, r->ctx, r->cache, r->write, 64);
		c4k = cnt(r->method, r->ctx, r->cache, r->write, 4096);
		c64k = cnt(r->method, r->ctx, r->cache, r->write, 65536);
		u8 = cnt(XB_M_USER, C_VMM, 0, r->write, 8);
		printf("%-30s %-9s %-5s %10.0f %10.0f %10.0f %10.0f ", r->name,
		       ctx_name[r->ctx], r->write ? "write" : "read", c8, c64,
		       c4k, c64k);
		if (c8 >= 0 && u8 >= 0)
			printf("%10.0f ", c8 - u8);
		else
			printf("%10s ", "-");
		if (c4k >= 0 && c64k >= 0)
			printf("%10.3f\n", (c64k - c4k) / (65536 - 4096));
		else
			printf("%10s\n", "-");
	}
	printf("XI-BENCH-OVERHEAD-END\n");
}

/*
 * The counts, one "key count" line per row, for harness/bench-icount.ref
 * and the change against it (harness/bench-report.sh).
 */
static void print_counts(void)
{
	unsigned int i;

	printf("XI-BENCH-COUNTS-BEGIN\n");
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char key[160], *c;

		if (r->err)
			continue;
		snprintf(key, sizeof(key), "%s/%s/th%d/slots%d/%s/%s/%lu",
			 r->name, ctx_name[r->ctx], r->threads, r->slots,
			 r->alt ? "alt" : "one", r->write ? "write" : "read",
			 (unsigned long)r->len);
		for (c = key; *c; c++)
			if (*c == ' ')
				*c = '_';
		printf("%s %.0f\n", key, r->med);
	}
	printf("XI-BENCH-COUNTS-END\n");
}

/* ---- goals of issue 6 ---- */

struct goal {
	char text[160];
	double value, limit;	/* limit 0: context for a goal, not a goal */
	int higher_better, known;
};

static struct goal goals[64];
static unsigned int ngoals;

static void goal(const char *text, const struct row *a, const struct row *b,
		 int mode, double limit, int higher_better)
{
	struct goal *g = &goals[ngoals++];

	snprintf(g->text, sizeof(g->text), "%s", text);
	g->limit = limit;
	g->higher_better = higher_better;
	g->known = a && b && a->med > 0 && b->med > 0;
	if (!g->known)
		return;
	/* mode 0: throughput of a relative to b; 1: time of a relative to b */
	g->value = mode ? a->med / b->med : b->med / a->med;
}

static const char *goal_status(const struct goal *g)
{
	if (!g->limit)
		return "INFO";
	if (!g->known)
		return "NOT";
	if (g->higher_better ? g->value >= g->limit : g->value <= g->limit)
		return "MET";
	return "NOT";
}

static int goal_met(const struct goal *g)
{
	if (!g->known || !g->limit)
		return 0;
	return g->higher_better ? g->value >= g->limit : g->value <= g->limit;
}

/* A goal on a value computed by the caller. */
static void goal_value(const char *text, double value, int known,
		       double limit, int higher_better)
{
	struct goal *g = &goals[ngoals++];

	snprintf(g->text, sizeof(g->text), "%s", text);
	g->limit = limit;
	g->higher_better = higher_better;
	g->known = known;
	g->value = value;
}

static void print_goals(void)
{
	unsigned int i;

	printf("XI-BENCH-GOALS-BEGIN\n");
	for (i = 0; i < ngoals; i++) {
		const struct goal *g = &goals[i];

		if (g->known)
			printf("%-4s %-88s %.3f\n", goal_status(g), g->text,
			       g->value);
		else
			printf("%-4s %-88s n/a\n", goal_status(g), g->text);
	}
	printf("XI-BENCH-GOALS-END\n");
}

#define ROW1(m, c, cache, w, len) find(m, c, cache, 1, w, 1, 0, len)

/* Instructions of a row beyond the benchmark loop's own (null row). */
static double net(const struct row *r)
{
	const struct row *n = find(XB_M_NULL, C_VMM, 0, 1, 0, 1, 0, 8);

	return r && n ? r->med - n->med : -1;
}

static void info_count(const char *text, double v)
{
	goal_value(text, v, v >= 0, 0, 0);
}

/*
 * Where the instructions of the paths with goals go: the pieces measured
 * alone (rows "piece: ..."), net of the benchmark loop.  Values are
 * instructions, not ratios.
 */
static void where_icount(void)
{
	const struct row *cv = ROW1(XB_M_COPYV, C_KTHREAD, 0, 0, 512);
	const struct row *cv8 = ROW1(XB_M_COPYV, C_KTHREAD, 0, 0, 8);
	double sw = net(ROW1(XB_M_MMSWITCH, C_KTHREAD, 0, 0, 8));
	double chk = net(ROW1(XB_M_OBJCHECK, C_VMM, 0, 0, 64));
	double srcu = net(ROW1(XB_M_SRCU, C_VMM, 0, 0, 8));

	info_count("  where: vmap 64B read minus memcpy 64B (begin + end, instructions)",
		   net(ROW1(XB_M_VMAP, C_KTHREAD, 0, 0, 64)) -
		   net(ROW1(XB_M_MEMCPY, C_VMM, 0, 0, 64)));
	info_count("  where: kvm_xvmap_begin + kvm_xvmap_end alone",
		   net(ROW1(XB_M_VMAP_EMPTY, C_KTHREAD, 0, 0, 64)));
	info_count("  where: of which srcu_read_lock + unlock (kvm->srcu)", srcu);
	info_count("  where: of which read_lock + read_unlock",
		   net(ROW1(XB_M_RWLOCK, C_VMM, 0, 0, 8)));
	info_count("  where: copyv 8 x 64B (kthread), all", net(cv));
	info_count("  where: of which the mm switch (mmget + use_mm + unuse + mmput)",
		   sw);
	info_count("  where: of which check_object_size() of the buffer", chk);
	info_count("  where: of which the 8 x 63 bytes more than copyv of 8 x 1 byte",
		   cv && cv8 ? cv->med - cv8->med : -1);
	if (cv8 && sw >= 0 && chk >= 0 && srcu >= 0)
		info_count("  where: the rest per range (copyv 8 x 1B - switch - check - srcu) / 8",
			   (net(cv8) - sw - chk - srcu) / 8);
}

/* Goals of issue 14, on instruction counts (-I). */
static void eval_goals_icount(void)
{
	const struct row *kr64 = ROW1(XB_M_KVM_READ, C_VMM, 0, 0, 64);
	const struct row *scope64 = ROW1(XB_M_XI_SCOPE, C_KTHREAD, 0, 0, 64);
	const struct row *kt64 = ROW1(XB_M_XI, C_KTHREAD, 0, 0, 64);
	const struct row *vfio64 = ROW1(XB_M_VFIO, C_KTHREAD, 0, 0, 64);
	const struct row *user64 = ROW1(XB_M_USER, C_VMM, 0, 0, 64);
	static const int bulk[][3] = {	/* method, context, cache */
		{ XB_M_XI, C_VMM, 0 }, { XB_M_XI, C_VMM, 1 },
		{ XB_M_XI, C_KTHREAD, 0 }, { XB_M_XI, C_KTHREAD, 1 },
		{ XB_M_XI_SCOPE, C_KTHREAD, 0 }, { XB_M_XI_SCOPE, C_KTHREAD, 1 },
		{ XB_M_XI, C_WQ, 0 }, { XB_M_XI, C_WQ, 1 },
		{ XB_M_XI, C_FOREIGN, 0 }, { XB_M_XI, C_FOREIGN, 1 },
		{ XB_M_COPYV, C_KTHREAD, 0 }, { XB_M_COPYV, C_KTHREAD, 1 },
		{ XB_M_SG, C_KTHREAD, 0 }, { XB_M_SG_COPY, C_KTHREAD, 0 },
	};
	char text[160];
	unsigned int i;
	int w;

	goal("64B copy_from in a use_mm scope +cache <= 1.1x kvm_read_guest 64B",
	     ROW1(XB_M_XI_SCOPE, C_KTHREAD, 1, 0, 64), kr64, 1, 1.1, 0);
	goal("  64B copy_from in a use_mm scope (no cache) vs kvm_read_guest 64B",
	     scope64, kr64, 1, 0, 0);
	goal("  64B copy_from from the VMM +cache vs kvm_read_guest 64B",
	     ROW1(XB_M_XI, C_VMM, 1, 0, 64), kr64, 1, 0, 0);
	goal_value("64B kthread mm switch (per call - scope) <= vfio's (vfio - copy_user)",
		   kt64 && scope64 && vfio64 && user64 &&
		   vfio64->med > user64->med ?
		   (kt64->med - scope64->med) / (vfio64->med - user64->med) : 0,
		   kt64 && scope64 && vfio64 && user64 &&
		   vfio64->med > user64->med, 1.0, 0);
	goal("vmap 64B read (begin + memcpy + end) <= 1.5x memcpy 64B",
	     ROW1(XB_M_VMAP, C_KTHREAD, 0, 0, 64),
	     ROW1(XB_M_MEMCPY, C_VMM, 0, 0, 64), 1, 1.5, 0);
	goal("vmap 64B write (begin + memcpy + mark_dirty + end) <= 1.5x memcpy 64B",
	     ROW1(XB_M_VMAP, C_KTHREAD, 0, 1, 64),
	     ROW1(XB_M_MEMCPY, C_VMM, 0, 1, 64), 1, 1.5, 0);
	goal("copyv 8 x 64B (kthread) <= 3.5x one 64B copy_from in a scope",
	     ROW1(XB_M_COPYV, C_KTHREAD, 0, 0, 512), scope64, 1, 3.5, 0);
	goal("  copyv 8 x 64B +cache (kthread) vs one 64B copy_from in a scope",
	     ROW1(XB_M_COPYV, C_KTHREAD, 1, 0, 512), scope64, 1, 0, 0);
	goal("  copyv 8 x 64B (kthread) vs 8 x one 64B copy_from in a scope",
	     ROW1(XB_M_COPYV, C_KTHREAD, 0, 0, 512), scope64, 1, 0, 0);
	if (scope64)
		goal_value("  8 x one 64B copy_from in a scope, for the line above",
			   8 * scope64->med, 1, 0, 0);
	where_icount();
	goal("sg build + free, 8 single-page ranges, read <= 2x pin_user_pages_remote + unpin",
	     ROW1(XB_M_SG_BUILD, C_KTHREAD, 0, 0, 64),
	     ROW1(XB_M_PIN, C_KTHREAD, 0, 0, 64), 1, 2.0, 0);
	goal("sg build + free, 8 single-page ranges, write <= 2x pin_user_pages_remote + unpin",
	     ROW1(XB_M_SG_BUILD, C_KTHREAD, 0, 1, 64),
	     ROW1(XB_M_PIN, C_KTHREAD, 0, 1, 64), 1, 2.0, 0);
	goal("301 vs 1 memslots, 64B copy_from +cache (vmm) <= 1.02x",
	     find(XB_M_XI, C_VMM, 1, 1, 0, 1 + NR_SMALL, 0, 64),
	     find(XB_M_XI, C_VMM, 1, 1, 0, 1, 0, 64), 1, 1.02, 0);
	goal("301 vs 1 memslots, 64B copy_from +cache (kthread scope) <= 1.02x",
	     find(XB_M_XI_SCOPE, C_KTHREAD, 1, 1, 0, 1 + NR_SMALL, 0, 64),
	     find(XB_M_XI_SCOPE, C_KTHREAD, 1, 1, 0, 1, 0, 64), 1, 1.02, 0);
	goal("  301 vs 1 memslots, 64B kvm_read_guest",
	     find(XB_M_KVM_READ, C_VMM, 0, 1, 0, 1 + NR_SMALL, 0, 64), kr64,
	     1, 0, 0);
	for (w = 0; w <= 1; w++) {
		const struct row *u = ROW1(XB_M_USER, C_VMM, 0, w, 65536);

		for (i = 0; i < ARRAY_SIZE(bulk); i++) {
			const struct row *r = ROW1(bulk[i][0], bulk[i][1],
						   bulk[i][2], w, 65536);

			if (!r)
				continue;
			snprintf(text, sizeof(text),
				 "64K %s (%s) %s >= 0.98x copy_%s_user 64K (vmm)",
				 r->name, ctx_name[r->ctx],
				 w ? "write" : "read", w ? "to" : "from");
			goal(text, r, u, 0, 0.98, 1);
		}
		snprintf(text, sizeof(text),
			 "64K xi vmap (kthread) %s >= 0.98x memcpy 64K",
			 w ? "write" : "read");
		goal(text, ROW1(XB_M_VMAP, C_KTHREAD, 0, w, 65536),
		     ROW1(XB_M_MEMCPY, C_VMM, 0, w, 65536), 0, 0.98, 1);
	}
	print_goals();
}

static void eval_goals(void)
{
	const struct row *mc64k = find(XB_M_MEMCPY, C_VMM, 0, 1, 0, 1, 0, 65536);
	const struct row *mc64kw = find(XB_M_MEMCPY, C_VMM, 0, 1, 1, 1, 0, 65536);
	const struct row *kr64 = find(XB_M_KVM_READ, C_VMM, 0, 1, 0, 1, 0, 64);
	const struct row *pvm4k = find(M_PVM, C_PROC, 0, 1, 0, 1, 0, 4096);
	const struct row *pvm4kw = find(M_PVM, C_PROC, 0, 1, 1, 1, 0, 4096);
	const struct row *mc1m = find(XB_M_MEMCPY, C_VMM, 0, 1, 0, 1, 0, 1 << 20);

	goal("kthread copy_from 64K, per call, >= 0.9x memcpy throughput",
	     find(XB_M_XI, C_KTHREAD, 0, 1, 0, 1, 0, 65536), mc64k, 0, 0.9, 1);
	goal("kthread copy_to 64K, per call, >= 0.9x memcpy throughput",
	     find(XB_M_XI, C_KTHREAD, 0, 1, 1, 1, 0, 65536), mc64kw, 0, 0.9, 1);
	goal("  kthread copy_from 64K vs copy_from_user in the VMM (same copy instruction)",
	     find(XB_M_XI, C_KTHREAD, 0, 1, 0, 1, 0, 65536),
	     find(XB_M_USER, C_VMM, 0, 1, 0, 1, 0, 65536), 0, 0, 1);
	goal("  rep movsb vs memcpy, 64K kernel buffers (TCG's copy_user instruction)",
	     find(XB_M_REP_MOVSB, C_VMM, 0, 1, 0, 1, 0, 65536), mc64k, 0, 0, 1);
	goal("kthread copy_from 64B, per call, <= 1.5x kvm_read_guest time",
	     find(XB_M_XI, C_KTHREAD, 0, 1, 0, 1, 0, 64), kr64, 1, 1.5, 0);
	goal("kthread copy_from 64B, use_mm scope, <= 1.5x kvm_read_guest time",
	     find(XB_M_XI_SCOPE, C_KTHREAD, 0, 1, 0, 1, 0, 64), kr64, 1, 1.5, 0);
	goal("kthread copy_from 64B, use_mm scope +cache, <= 1.5x kvm_read_guest time",
	     find(XB_M_XI_SCOPE, C_KTHREAD, 1, 1, 0, 1, 0, 64), kr64, 1, 1.5, 0);
	goal("vmap read 64K >= 0.95x memcpy throughput",
	     find(XB_M_VMAP, C_KTHREAD, 0, 1, 0, 1, 0, 65536), mc64k, 0, 0.95, 1);
	goal("vmap write 64K >= 0.95x memcpy throughput",
	     find(XB_M_VMAP, C_KTHREAD, 0, 1, 1, 1, 0, 65536), mc64kw, 0, 0.95, 1);
	goal("  vmap read 1M vs memcpy (begin/end amortized)",
	     find(XB_M_VMAP, C_KTHREAD, 0, 1, 0, 1, 0, 1 << 20), mc1m, 0, 0, 1);
	goal("  vmap read 8B time vs kvm_read_guest 8B (cost of begin/end)",
	     find(XB_M_VMAP, C_KTHREAD, 0, 1, 0, 1, 0, 8),
	     find(XB_M_KVM_READ, C_VMM, 0, 1, 0, 1, 0, 8), 1, 0, 0);
	goal("foreign task copy_from 4K >= 1.0x process_vm_readv throughput",
	     find(XB_M_XI, C_FOREIGN, 0, 1, 0, 1, 0, 4096), pvm4k, 0, 1.0, 1);
	goal("foreign task copy_to 4K >= 1.0x process_vm_writev throughput",
	     find(XB_M_XI, C_FOREIGN, 0, 1, 1, 1, 0, 4096), pvm4kw, 0, 1.0, 1);
	goal("301 vs 1 memslots, 64B copy_from +cache (vmm), <= 1.1x time",
	     find(XB_M_XI, C_VMM, 1, 1, 0, 1 + NR_SMALL, 0, 64),
	     find(XB_M_XI, C_VMM, 1, 1, 0, 1, 0, 64), 1, 1.1, 0);
	goal("301 vs 1 memslots, 64B copy_from +cache (kthread scope), <= 1.1x time",
	     find(XB_M_XI_SCOPE, C_KTHREAD, 1, 1, 0, 1 + NR_SMALL, 0, 64),
	     find(XB_M_XI_SCOPE, C_KTHREAD, 1, 1, 0, 1, 0, 64), 1, 1.1, 0);
	goal("301 vs 1 memslots, 64B copy_from +cache, alternating 2 slots (vmm), <= 1.1x time",
	     find(XB_M_XI, C_VMM, 1, 1, 0, 1 + NR_SMALL, 1, 64),
	     find(XB_M_XI, C_VMM, 1, 1, 0, 1, 1, 64), 1, 1.1, 0);

	print_goals();
}

/* The measurements of one row, as JSON members. */
static void print_row_json(const struct row *r)
{
	printf("\"iters_per_batch\": %lu, \"samples\": %u, ",
	       (unsigned long)r->iters, r->nsamples);
	printf("\"ns_median\": %.2f, \"ns_p10\": %.2f, \"ns_p90\": %.2f, ",
	       r->med, r->p10, r->p90);
	printf("\"gbps\": %.4f, \"x_memcpy\": %.4f, \"x_kvm_read_guest\": %.4f, ",
	       r->threads * r->len / r->med, vs_memcpy(r), vs_kvm(r));
	printf("\"cache_hits\": %lu, \"cache_misses\": %lu}",
	       (unsigned long)r->hits, (unsigned long)r->misses);
}

static void print_json(void)
{
	struct utsname u;
	unsigned int i;

	uname(&u);
	printf("XI-BENCH-JSON-BEGIN\n");
	printf("{\n  \"kernel\": \"%s\",\n  \"machine\": \"%s\",\n", u.release,
	       u.machine);
	printf("  \"cpu_flags\": \"%s\",\n", cpu_flags());
	printf("  \"cpus\": %ld,\n  \"batch_ns\": %lu,\n  \"rounds\": %u,\n",
	       sysconf(_SC_NPROCESSORS_ONLN), (unsigned long)batch_ns, batches);
	printf("  \"units\": {");
	printf("\"ns\": \"ns per operation (per thread)\", ");
	printf("\"gbps\": \"bytes per ns, all threads\", ");
	printf("\"x_memcpy\": \"memcpy ns / row ns, same size and direction\", ");
	printf("\"x_kvm_read_guest\": \"row ns / kvm_read_guest ns, same size\"},\n");
	printf("  \"rows\": [\n");
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		printf("    {\"name\": \"%s\", \"context\": \"%s\", ",
		       r->name, ctx_name[r->ctx]);
		printf("\"threads\": %d, \"cache\": %s, \"memslots\": %d, ",
		       r->threads, r->cache ? "true" : "false", r->slots);
		printf("\"access\": \"%s\", \"dir\": \"%s\", \"size\": %lu, ",
		       r->alt ? "alternating" : "one",
		       r->write ? "write" : "read", (unsigned long)r->len);
		if (r->err)
			printf("\"error\": \"%s\"}", strerror(r->err));
		else
			print_row_json(r);
		printf("%s\n", i + 1 < nrows ? "," : "");
	}
	printf("  ],\n  \"goals\": [\n");
	for (i = 0; i < ngoals; i++) {
		const struct goal *g = &goals[i];

		printf("    {\"goal\": \"%s\", \"limit\": %.2f, ", g->text,
		       g->limit);
		printf("\"status\": \"%s\", ", goal_status(g));
		if (g->known)
			printf("\"value\": %.4f, ", g->value);
		printf("\"met\": %s}%s\n", goal_met(g) ? "true" : "false",
		       i + 1 < ngoals ? "," : "");
	}
	printf("  ]\n}\n");
	printf("XI-BENCH-JSON-END\n");
}

/* ---- the run ---- */

static void add_memory(struct kvm_vm *vm, uint32_t slot, uint64_t gpa,
		       uint64_t npages)
{
	void *hva;

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, gpa, slot,
				    npages, 0);
	hva = addr_gpa2hva(vm, gpa);
	/* Present and private to the VMM: no COW after the forks. */
	TEST_ASSERT(!madvise(hva, npages * PG, MADV_DONTFORK), "madvise");
	memset(hva, 0x3c, npages * PG);
}

/* Every single-thread row at one size and direction, 1 memslot. */
static void add_main_rows(uint64_t len, int w)
{
	int c;

	add_row(XB_M_MEMCPY, C_VMM, 0, 1, w, 0, len);
	add_row(XB_M_REP_MOVSB, C_VMM, 0, 1, w, 0, len);
	if (!w)
		add_row(XB_M_KVM_READ, C_VMM, 0, 1, 0, 0, len);
	add_row(XB_M_USER, C_VMM, 0, 1, w, 0, len);
	add_row(XB_M_VFIO, C_KTHREAD, 0, 1, w, 0, len);
	add_row(M_PVM, C_PROC, 0, 1, w, 0, len);
	for (c = 0; c <= 1; c++) {
		add_row(XB_M_XI, C_VMM, c, 1, w, 0, len);
		add_row(XB_M_XI, C_KTHREAD, c, 1, w, 0, len);
		add_row(XB_M_XI_SCOPE, C_KTHREAD, c, 1, w, 0, len);
		add_row(XB_M_XI, C_WQ, c, 1, w, 0, len);
		add_row(XB_M_XI, C_FOREIGN, c, 1, w, 0, len);
	}
	add_row(XB_M_VMAP, C_KTHREAD, 0, 1, w, 0, len);
	add_row(XB_M_COPYV, C_KTHREAD, 0, 1, w, 0, len);
	add_row(XB_M_COPYV, C_KTHREAD, 1, 1, w, 0, len);
	add_row(XB_M_SG, C_KTHREAD, 0, 1, w, 0, len);
	add_row(XB_M_SG_COPY, C_KTHREAD, 0, 1, w, 0, len);
	if (len <= XB_FRAGS * PG) {
		add_row(XB_M_SG_BUILD, C_KTHREAD, 0, 1, w, 0, len);
		add_row(XB_M_PIN, C_KTHREAD, 0, 1, w, 0, len);
	}
}

/* Small reads, one address or two alternating: the memslot dimension. */
static void add_slot_rows(int alt)
{
	unsigned int i;
	int c;

	for (i = 0; i < ARRAY_SIZE(small_sizes); i++) {
		uint64_t len = small_sizes[i];

		add_row(XB_M_KVM_READ, C_VMM, 0, 1, 0, alt, len);
		for (c = 0; c <= 1; c++) {
			add_row(XB_M_XI, C_VMM, c, 1, 0, alt, len);
			add_row(XB_M_XI_SCOPE, C_KTHREAD, c, 1, 0, alt, len);
		}
	}
}

/* A VM, its memslots, and a benchmark file bound to it. */
static void setup_vm(int vmi)
{
	struct kvm_vm *vm = vm_create_barebones();
	unsigned int i;
	int fd;

	vms[vmi] = vm;
	add_memory(vm, DATA_SLOT, DATA_GPA, DATA_SIZE / PG);
	for (i = 0; vmi && i < NR_SMALL; i++)
		add_memory(vm, SMALL_SLOT0 + i, SMALL_GPA + i * SMALL_STRIDE,
			   SMALL_PAGES);
	bench_fd[vmi] = open("/dev/test_xinterface_bench", O_RDWR);
	TEST_ASSERT(bench_fd[vmi] >= 0,
		    "/dev/test_xinterface_bench: %s (module test_xinterface_bench loaded?)",
		    strerror(errno));
	fd = vm->fd;
	TEST_ASSERT(!ioctl(bench_fd[vmi], XB_BIND, &fd), "XB_BIND: %s",
		    strerror(errno));
}

int main(int argc, char *argv[])
{
	const uint64_t *sizes = all_sizes;
	unsigned int nsizes = ARRAY_SIZE(all_sizes), i;
	uint64_t t0 = now_ns();
	int opt, w;

	while ((opt = getopt(argc, argv, "t:b:qI")) != -1) {
		switch (opt) {
		case 'I':
			icount = 1;
			sizes = icount_sizes;
			nsizes = ARRAY_SIZE(icount_sizes);
			/* Deterministic: short batches are enough. */
			batch_ns = 4 * 1000 * 1000;
			batches = 3;
			break;
		case 't':
			batch_ns = strtoull(optarg, NULL, 0) * 1000 * 1000;
			break;
		case 'b':
			batches = atoi(optarg);
			break;
		case 'q':
			sizes = quick_sizes;
			nsizes = ARRAY_SIZE(quick_sizes);
			break;
		default:
			fprintf(stderr, "usage: %s [-t batch_ms] [-b rounds] [-q] [-I]\n",
				argv[0]);
			return 2;
		}
	}
	TEST_ASSERT(batches >= 1 && batches <= XB_MAX_BATCHES && batch_ns,
		    "bad -b or -t");
	setvbuf(stdout, NULL, _IOLBF, 0);

	setup_vm(0);
	setup_vm(1);

	cur_vm = 0;
	add_row(XB_M_NULL, C_VMM, 0, 1, 0, 0, 8);
	for (i = 0; i < nsizes; i++)
		for (w = 0; w <= 1; w++)
			add_main_rows(sizes[i], w);
	if (icount) {
		/* 64 B reads: one address or two, 1 or 301 memslots. */
		for (w = 0; w <= 1; w++) {
			cur_vm = w;
			add_row(XB_M_KVM_READ, C_VMM, 0, 1, 0, 1, 64);
			add_row(XB_M_XI, C_VMM, 1, 1, 0, 1, 64);
			add_row(XB_M_XI_SCOPE, C_KTHREAD, 1, 1, 0, 1, 64);
		}
		/* Pieces of the paths, where their instructions go. */
		cur_vm = 0;
		add_row(XB_M_SRCU, C_VMM, 0, 1, 0, 0, 8);
		add_row(XB_M_RWLOCK, C_VMM, 0, 1, 0, 0, 8);
		add_row(XB_M_VMAP_EMPTY, C_KTHREAD, 0, 1, 0, 0, 64);
		add_row(XB_M_OBJCHECK, C_VMM, 0, 1, 0, 0, 64);
		add_row(XB_M_MMSWITCH, C_KTHREAD, 0, 1, 0, 0, 8);
		cur_vm = 1;
		add_row(XB_M_KVM_READ, C_VMM, 0, 1, 0, 0, 64);
		add_row(XB_M_XI, C_VMM, 1, 1, 0, 0, 64);
		add_row(XB_M_XI_SCOPE, C_KTHREAD, 1, 1, 0, 0, 64);
		run_rows(0);
		print_table();
		print_overheads();
		eval_goals_icount();
		print_counts();
		print_json();
		goto out;
	}
	for (i = 0; i < ARRAY_SIZE(mt_sizes); i++) {
		for (w = 0; w <= 1; w++) {
			int th;

			for (th = 1; th <= 2; th++) {
				add_row(XB_M_VFIO, C_KTHREAD, 0, th, w, 0,
					mt_sizes[i]);
				add_row(XB_M_XI, C_KTHREAD, 1, th, w, 0,
					mt_sizes[i]);
				add_row(XB_M_XI_SCOPE, C_KTHREAD, 1, th, w, 0,
					mt_sizes[i]);
			}
		}
	}
	add_slot_rows(1);
	/* The buffer in one of 300 small memslots. */
	cur_vm = 1;
	add_slot_rows(0);
	add_slot_rows(1);
	run_rows(0);

	print_table();
	eval_goals();
	print_json();
out:
	printf("# %u rows, %d failed, %.1f s\n", nrows, failures,
	       (now_ns() - t0) / 1e9);
	for (i = 0; i < 2; i++) {
		close(bench_fd[i]);
		kvm_vm_free(vms[i]);
	}
	return failures ? 1 : 0;
}
