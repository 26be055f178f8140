# make series, make series-check: the kernel change as a git format-patch
# series against the pristine source (harness/series/manifest says which
# files go into which patch).
#
#   make series        build/series/: 0000-cover-letter.patch and the
#                      numbered patches, generated from the files the
#                      overlay and patches/ use (harness/series/mkseries.sh)
#   make series-check  make the series again (same bytes?), git am it
#                      onto a fresh pristine tree and
#                      compare the result with build/tree; then, per
#                      patch, build what it affects (W=1, build/obj-series,
#                      the debug config of make check: allnoconfig plus
#                      harness/kernel.config) and run checkpatch
#                      --strict; ends with "N passed, N failed"
#                      (harness/series/check.sh)
#
# SERIES_JOBS=<n> sets the per-patch build parallelism (default 2).

SERIES_JOBS ?= 2

.PHONY: series series-check

series: tree
	@$(TIME) "make series" $(H)/series/mkseries.sh $(REPO) $(BUILD)

series-check: series
	@$(TIME) "series check" $(H)/series/check.sh $(REPO) $(BUILD) $(SERIES_JOBS)
