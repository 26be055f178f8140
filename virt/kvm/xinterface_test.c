// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the logic of kvm_xinterface that does not need a VM:
 * range and overflow checks, splitting a range at memslot ends, the
 * mapping of memslot properties to error codes, and dirty bitmap marking.
 * Included from xinterface.c so that the static helpers are reachable.
 */

#include <kunit/test.h>

static void xi_test_check_range(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, xi_check_range(0, 0), 0);
	KUNIT_EXPECT_EQ(test, xi_check_range(0x1000, PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, xi_check_range(0x123, 3 * PAGE_SIZE + 7), 0);
	/* gpa + len wraps around. */
	KUNIT_EXPECT_EQ(test, xi_check_range(U64_MAX, 2), -EOVERFLOW);
	KUNIT_EXPECT_EQ(test, xi_check_range(U64_MAX - 10, 11), -EOVERFLOW);
	/* Beyond any gfn KVM can hold. */
	KUNIT_EXPECT_EQ(test, xi_check_range(1ULL << 63, 1), -EOVERFLOW);
	KUNIT_EXPECT_EQ(test, xi_check_range(XI_GPA_LIMIT, 1), -EOVERFLOW);
	KUNIT_EXPECT_EQ(test, xi_check_range(XI_GPA_LIMIT - 1, 1), 0);
	/* Longer than one read()/write() may be. */
	KUNIT_EXPECT_EQ(test, xi_check_range(0, (size_t)MAX_RW_COUNT + 1),
			-EOVERFLOW);
	KUNIT_EXPECT_EQ(test, xi_check_range(0, SIZE_MAX), -EOVERFLOW);
}

static void xi_test_slot_run(struct kunit *test)
{
	/* Slot of 4 pages at gfn 0x10: [0x10000, 0x14000). */
	KUNIT_EXPECT_EQ(test, xi_slot_run(0x10, 4, 0x10000, 0x100), 0x100);
	KUNIT_EXPECT_EQ(test, xi_slot_run(0x10, 4, 0x10000, 0x4000), 0x4000);
	/* Range runs past the slot: cut at its end. */
	KUNIT_EXPECT_EQ(test, xi_slot_run(0x10, 4, 0x10000, 0x5000), 0x4000);
	KUNIT_EXPECT_EQ(test, xi_slot_run(0x10, 4, 0x13ff8, 0x10), 8);
	/* Unaligned start inside the last page. */
	KUNIT_EXPECT_EQ(test, xi_slot_run(0x10, 4, 0x13001, 0x2000), 0xfff);
}

static void xi_test_slot_check(struct kunit *test)
{
	struct kvm_memory_slot slot = { .id = 0, .npages = 1 };

	KUNIT_EXPECT_EQ(test, xi_slot_check(NULL, false, false), -ENXIO);
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, false, false), 0);
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, true, false), 0);

	/* x86-internal slots are not guest RAM for other users. */
	slot.id = KVM_USER_MEM_SLOTS;
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, false, false), -ENXIO);
	slot.id = 0;

	/* A slot being deleted or moved is a hole. */
	slot.flags = KVM_MEMSLOT_INVALID;
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, false, false), -ENXIO);

	/* Read-only: reads pass, writes are refused. */
	slot.flags = KVM_MEM_READONLY;
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, false, false), 0);
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, true, false), -EROFS);

	/* Dirty logging: bitmap fine, dirty ring refuses writes only. */
	slot.flags = KVM_MEM_LOG_DIRTY_PAGES;
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, true, false), 0);
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, true, true), -EOPNOTSUPP);
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, false, true), 0);
	slot.flags = 0;
	KUNIT_EXPECT_EQ(test, xi_slot_check(&slot, true, true), 0);
}

static void xi_test_mark_dirty(struct kunit *test)
{
	unsigned long *bitmap = kunit_kzalloc(test, 64, GFP_KERNEL);
	struct kvm_memory_slot slot = {
		.base_gfn = 0x100,
		.npages = 64,
		.dirty_bitmap = bitmap,
	};

	KUNIT_ASSERT_NOT_NULL(test, bitmap);

	/* Logging off: nothing is marked. */
	xi_mark_dirty(&slot, 0x100000, 1);
	KUNIT_EXPECT_EQ(test, bitmap[0], 0UL);

	slot.flags = KVM_MEM_LOG_DIRTY_PAGES;
	/* 2 bytes straddling pages 1 and 2 of the slot. */
	xi_mark_dirty(&slot, 0x101fff, 2);
	KUNIT_EXPECT_TRUE(test, test_bit_le(1, bitmap));
	KUNIT_EXPECT_TRUE(test, test_bit_le(2, bitmap));
	KUNIT_EXPECT_FALSE(test, test_bit_le(0, bitmap));
	KUNIT_EXPECT_FALSE(test, test_bit_le(3, bitmap));
	/* The last page of the slot. */
	xi_mark_dirty(&slot, 0x13f000, PAGE_SIZE);
	KUNIT_EXPECT_TRUE(test, test_bit_le(63, bitmap));
	KUNIT_EXPECT_FALSE(test, test_bit_le(62, bitmap));
}

static void xi_test_bind_not_kvm(struct kunit *test)
{
	/* Files that are not KVM VMs are refused before anything is held. */
	KUNIT_EXPECT_EQ(test, PTR_ERR(kvm_xinterface_bind_file(NULL)),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(kvm_xinterface_bind(-1)), -EBADF);
}

static void xi_test_vmap_overlaps(struct kunit *test)
{
	struct xi_vmap_run runs[2] = {
		{ .hva = 0x10000, .hva_end = 0x12000 },
		{ .hva = 0x40000, .hva_end = 0x41000 },
	};
	struct xi_vmap m = { .runs = runs, .nr_runs = 2 };

	/* The notifier's [start, end) against each run's [hva, hva_end). */
	KUNIT_EXPECT_TRUE(test, xi_vmap_overlaps(&m, 0x11fff, 0x12000));
	KUNIT_EXPECT_TRUE(test, xi_vmap_overlaps(&m, 0x0, 0x10001));
	KUNIT_EXPECT_TRUE(test, xi_vmap_overlaps(&m, 0x40fff, 0x50000));
	KUNIT_EXPECT_TRUE(test, xi_vmap_overlaps(&m, 0, ULONG_MAX));
	KUNIT_EXPECT_FALSE(test, xi_vmap_overlaps(&m, 0x12000, 0x40000));
	KUNIT_EXPECT_FALSE(test, xi_vmap_overlaps(&m, 0x0, 0x10000));
	KUNIT_EXPECT_FALSE(test, xi_vmap_overlaps(&m, 0x41000, ULONG_MAX));
	m.nr_runs = 0;
	KUNIT_EXPECT_FALSE(test, xi_vmap_overlaps(&m, 0, ULONG_MAX));
}

static void xi_test_sg_fill(struct kunit *test)
{
	struct page *quad = alloc_pages(GFP_KERNEL, 2);
	struct kvm_xrange r = { .gpa = 0x1000 + 100, .len = 3 * PAGE_SIZE };
	struct page *pages[4];
	struct scatterlist sg[4], *end;

	KUNIT_ASSERT_NOT_NULL(test, quad);
	/* 4 pages: two contiguous, then two that are not (descending). */
	pages[0] = quad;
	pages[1] = quad + 1;
	pages[2] = quad + 3;
	pages[3] = quad + 2;
	KUNIT_EXPECT_EQ(test, xi_range_pages(&r), 4);
	KUNIT_EXPECT_EQ(test, xi_sg_segments(pages, 4), 3);

	sg_init_table(sg, 4);
	end = xi_sg_fill(sg, pages, &r);
	KUNIT_EXPECT_PTR_EQ(test, end, &sg[3]);
	KUNIT_EXPECT_PTR_EQ(test, sg_page(&sg[0]), quad);
	KUNIT_EXPECT_EQ(test, sg[0].offset, 100);
	KUNIT_EXPECT_EQ(test, sg[0].length, 2 * PAGE_SIZE - 100);
	KUNIT_EXPECT_PTR_EQ(test, sg_page(&sg[1]), quad + 3);
	KUNIT_EXPECT_EQ(test, sg[1].offset, 0);
	KUNIT_EXPECT_EQ(test, sg[1].length, PAGE_SIZE);
	KUNIT_EXPECT_PTR_EQ(test, sg_page(&sg[2]), quad + 2);
	KUNIT_EXPECT_EQ(test, sg[2].length, 100);
	__free_pages(quad, 2);
}

static struct kunit_case xi_test_cases[] = {
	KUNIT_CASE(xi_test_check_range),
	KUNIT_CASE(xi_test_slot_run),
	KUNIT_CASE(xi_test_slot_check),
	KUNIT_CASE(xi_test_mark_dirty),
	KUNIT_CASE(xi_test_bind_not_kvm),
	KUNIT_CASE(xi_test_vmap_overlaps),
	KUNIT_CASE(xi_test_sg_fill),
	{}
};

static struct kunit_suite xi_test_suite = {
	.name = "kvm_xinterface",
	.test_cases = xi_test_cases,
};

kunit_test_suite(xi_test_suite);
