# kvm_xinterface: build, boot and test harness.
#
#   make            build the kernel, modules and test programs
#   make run        the main job: a Linux guest on the sample back-end
#   make run-sample the sample back-end and this project's own guest driver
#   make check      every test; ends with "N passed, N failed"
#   make bench      the benchmark on the production kernel: wall time and
#                   instruction counts, in build/bench.txt and
#                   build/bench*.json
#   make bench-record  keep the last make bench: recorded counts, the
#                   documentation page, the README summary
#   make series     the change as a git format-patch series (build/series)
#   make series-check  it applies, equals the tested tree, each patch
#                   builds and passes checkpatch
#   make deps       install the Debian packages the harness needs
#   make clean      remove build output (keeps the unpacked source)
#   make distclean  remove all of build/
#
# KSRC=<path> builds your own 6.12.y tree instead of Debian's
# linux-source-6.12.  JOBS=<n> sets the build parallelism.
# CHECK_TIMEOUT/RUN_TIMEOUT/BENCH_TIMEOUT=<s> bound one guest run.
# BENCH_ARGS=<a,b,...> appends arguments to every program of the wall-time
# bench list (commas for spaces).

REPO    := $(CURDIR)
BUILD   := $(REPO)/build
TREE    := $(BUILD)/tree
OBJ     := $(BUILD)/obj
# The second test kernel of make check: KCSAN instead of KASAN.
OBJ_KCSAN := $(BUILD)/obj-kcsan
# The nested guest of make run: Linux booted by xinterface_linux.
OBJ_GUEST := $(BUILD)/obj-guest
# The kernel of make bench: configured like a distribution kernel.
OBJ_PROD := $(BUILD)/obj-prod
TESTS   := $(BUILD)/tests
KSRC    ?=
JOBS    ?= $(shell echo $$(( $$(nproc) + 1 )))
export CCACHE_BASEDIR := $(BUILD)
KMAKE   := $(MAKE) -s -C $(TREE) O=$(OBJ) CC="ccache gcc" HOSTCC="ccache gcc"
KMAKE_KCSAN := $(MAKE) -s -C $(TREE) O=$(OBJ_KCSAN) CC="ccache gcc" \
	HOSTCC="ccache gcc"
KMAKE_GUEST := $(MAKE) -s -C $(TREE) O=$(OBJ_GUEST) CC="ccache gcc" \
	HOSTCC="ccache gcc"
KMAKE_PROD := $(MAKE) -s -C $(TREE) O=$(OBJ_PROD) CC="ccache gcc" \
	HOSTCC="ccache gcc"
H       := $(REPO)/harness
# Hard limits for one guest run, in seconds (a hung guest is killed and
# fails the run).
CHECK_TIMEOUT ?= 2400
RUN_TIMEOUT   ?= 900
BENCH_TIMEOUT ?= 1800
BENCH_ARGS    ?=
TIME     = $(H)/timed.sh

# Packages the harness needs (Debian 12).
PKGS := linux-source-6.12 qemu-system-x86 busybox-static ccache flex bison \
	bc libelf-dev libssl-dev cpio dwarves kmod rsync gcc make libc6-dev \
	patch xz-utils lz4 e2fsprogs e2fsck-static

# KVM selftests from the same tree, run unmodified (harness/check.list
# gives their arguments), plus the project's own.
KVM_SELFTESTS := set_memory_region_test memslot_modification_stress_test \
	dirty_log_test kvm_create_max_vcpus x86_64/sync_regs_test
SELFTESTS := $(KVM_SELFTESTS) xinterface_test xinterface_sample xinterface_bench \
	xinterface_linux

.PHONY: all deps tree config kernel selftests initramfs run check bench clean \
	distclean kcsan lint guest run-sample prod bench-record

all: kernel selftests initramfs

deps:
	@$(H)/deps.sh $(PKGS)

tree:
	@$(TIME) "prepare tree" $(H)/prepare-tree.sh $(REPO) $(BUILD) $(KSRC)

# The config is allnoconfig plus harness/kernel.config; regenerated when
# the fragment changes, and checked: every option the fragment asks for
# must have reached .config.
$(OBJ)/.config: $(H)/kernel.config | tree
	@mkdir -p $(OBJ)
	@$(KMAKE) KCONFIG_ALLCONFIG=$(H)/kernel.config allnoconfig
	@$(H)/check-config.sh $(H)/kernel.config $(OBJ)/.config

config: tree $(OBJ)/.config

# The KCSAN kernel's fragment: the debug one less KASAN, plus
# harness/kcsan.config; its own O= directory, the same tree and ccache.
$(BUILD)/kcsan.config: $(H)/kernel.config $(H)/kcsan.config
	@mkdir -p $(BUILD)
	@sed '/^CONFIG_KASAN/d' $(H)/kernel.config > $@.tmp
	@cat $(H)/kcsan.config >> $@.tmp
	@mv $@.tmp $@

$(OBJ_KCSAN)/.config: $(BUILD)/kcsan.config | tree
	@mkdir -p $(OBJ_KCSAN)
	@$(KMAKE_KCSAN) KCONFIG_ALLCONFIG=$(BUILD)/kcsan.config allnoconfig
	@$(H)/check-config.sh $(BUILD)/kcsan.config $(OBJ_KCSAN)/.config

# Build the KCSAN kernel and its initramfs (the test programs are the
# debug build's).
kcsan: tree $(OBJ_KCSAN)/.config selftests guest
	@$(TIME) "build KCSAN kernel" $(KMAKE_KCSAN) -j$(JOBS) bzImage modules
	@$(H)/mkinitramfs.sh $(REPO) $(BUILD) $(OBJ_KCSAN) \
		$(BUILD)/initramfs-kcsan.cpio

# The production kernel of make bench: the debug fragment without its
# debug-begin/debug-end blocks, plus harness/prod.config (Debian's
# settings on the benchmarked paths); its own O= directory, the same tree
# and ccache.
$(BUILD)/prod.config: $(H)/kernel.config $(H)/prod.config
	@mkdir -p $(BUILD)
	@sed '/^# debug-begin/,/^# debug-end/d' $(H)/kernel.config > $@.tmp
	@cat $(H)/prod.config >> $@.tmp
	@mv $@.tmp $@

$(OBJ_PROD)/.config: $(BUILD)/prod.config | tree
	@mkdir -p $(OBJ_PROD)
	@$(KMAKE_PROD) KCONFIG_ALLCONFIG=$(BUILD)/prod.config allnoconfig
	@$(H)/check-config.sh $(BUILD)/prod.config $(OBJ_PROD)/.config

prod: tree $(OBJ_PROD)/.config selftests guest
	@$(TIME) "build production kernel" $(KMAKE_PROD) -j$(JOBS) bzImage modules
	@$(H)/mkinitramfs.sh $(REPO) $(BUILD) $(OBJ_PROD) \
		$(BUILD)/initramfs-prod.cpio

# The guest kernel: allnoconfig plus harness/guest/kernel.config, its own
# O= directory; its initramfs (harness/guest/mkinitramfs.sh) needs the
# tree's uapi headers, installed by the selftests step.
$(OBJ_GUEST)/.config: $(H)/guest/kernel.config | tree
	@mkdir -p $(OBJ_GUEST)
	@$(KMAKE_GUEST) KCONFIG_ALLCONFIG=$(H)/guest/kernel.config allnoconfig
	@$(H)/check-config.sh $(H)/guest/kernel.config $(OBJ_GUEST)/.config

guest: tree $(OBJ_GUEST)/.config selftests
	@$(TIME) "build guest kernel" $(KMAKE_GUEST) -j$(JOBS) bzImage
	@$(H)/guest/mkinitramfs.sh $(REPO) $(BUILD) $(OBJ_GUEST) $(OBJ)/usr/include

kernel: config
	@$(TIME) "build kernel" $(KMAKE) -j$(JOBS) bzImage modules

selftests: kernel
	@$(TIME) "install headers" $(KMAKE) headers_install
	@mkdir -p $(TESTS)
	@$(TIME) "build selftests" $(MAKE) -s -C $(TREE)/tools/testing/selftests/kvm \
		-j$(JOBS) OUTPUT=$(TESTS)/kvm \
		KHDR_INCLUDES="-isystem $(OBJ)/usr/include" \
		LDFLAGS="-static -pthread -no-pie" \
		$(addprefix $(TESTS)/kvm/,$(SELFTESTS))

initramfs: kernel selftests guest
	@$(H)/mkinitramfs.sh $(REPO) $(BUILD)

# make run ARGS="-g -v": options of the real guest's VMM
# (tools/testing/selftests/kvm/xinterface_linux.c: -g sg data path, -v the
# whole guest console, -j jobs).  make run-sample ARGS="-n 8192 -s 16384":
# the guest driver this project wrote (xinterface_sample.c: -n requests,
# -s request bytes, -q queue size, -p kthread polls, -g sg data path).
ARGS    ?=
comma   := ,
empty   :=
space   := $(empty) $(empty)
XI_ARGS := $(subst $(space),$(comma),$(strip $(ARGS)))

# run-one MODE: boot the test kernel in MODE, show what the list printed.
define run-one
	@$(TIME) "boot and run" $(H)/run-qemu.sh $(BUILD) $(1) $(RUN_TIMEOUT) "$(XI_ARGS)"; \
	rc=$$?; \
	sed -n '/^XI-BEGIN run\//,/^XI-END /{/^XI-/d;/^Random seed/d;/^TAP version/d;/^1\.\./d;/^\(not \)\{0,1\}ok [0-9]/d;p}' \
		$(BUILD)/results.log; \
	$(H)/parse-results.sh $(BUILD)/results.log $(BUILD)/console.log $$rc
endef

run: deps all
	@echo "  RUN     boot the test kernel, load kvm, kvm_amd and the sample back-end"
	@echo "          (xi_vblk.ko); a VMM boots a Linux guest whose virtio-blk disk"
	@echo "          is a RAM disk that the xi_vblk kthread serves through kvm_xinterface"
	$(call run-one,run)

run-sample: deps all
	@echo "  RUN     the sample back-end serving this project's own guest driver"
	$(call run-one,run-sample)

# Two guest runs: every test on the debug kernel (KASAN, lockdep), then
# the project's tests on the KCSAN kernel; one verdict for both.
check: deps all kcsan
	@$(TIME) "boot and test" $(H)/run-qemu.sh $(BUILD) check $(CHECK_TIMEOUT); \
	echo $$? > $(BUILD)/check.rc; \
	XI_OBJ=$(OBJ_KCSAN) XI_CPIO=$(BUILD)/initramfs-kcsan.cpio XI_LOG=-kcsan \
		$(TIME) "boot and test (KCSAN)" $(H)/run-qemu.sh $(BUILD) kcsan \
		$(CHECK_TIMEOUT); \
	$(H)/check-report.sh $(BUILD) $$(cat $(BUILD)/check.rc) $$?

# The benchmark runs alone in the production kernel, twice: wall time
# with 2 vCPUs (multi-threaded TCG), then instruction counts with one vCPU
# under -icount shift=0,sleep=off (guest time advances one ns per guest
# instruction).  bench-report.sh fails the target on a hang, a splat or a
# failed row, like make check, and compares the counts with
# harness/bench-icount.ref.
BENCH_PROD = XI_OBJ=$(OBJ_PROD) XI_CPIO=$(BUILD)/initramfs-prod.cpio
bench: deps prod
	@$(BENCH_PROD) XI_LOG=-bench $(TIME) "boot and bench (wall time)" \
		$(H)/run-qemu.sh $(BUILD) bench $(BENCH_TIMEOUT) "$(BENCH_ARGS)"; \
	echo $$? > $(BUILD)/bench.rc; \
	$(BENCH_PROD) XI_LOG=-icount XI_SMP=1 XI_TCG=tcg,thread=single \
		XI_QEMU_EXTRA="-icount shift=0,sleep=off" \
		$(TIME) "boot and bench (instructions)" \
		$(H)/run-qemu.sh $(BUILD) bench-icount $(BENCH_TIMEOUT); \
	echo $$? > $(BUILD)/bench-icount.rc; \
	$(H)/bench-report.sh $(BUILD) $$(cat $(BUILD)/bench.rc) \
		$$(cat $(BUILD)/bench-icount.rc)

# make bench-record: keep the last make bench in the repository: its
# instruction counts (harness/bench-icount.ref, what the next runs compare
# with), the documentation page and the README's summary lines.
bench-record:
	@test -s $(BUILD)/bench-icount.counts -a -s $(BUILD)/xinterface-bench.rst || \
		{ echo "no make bench output in $(BUILD): run make bench"; exit 1; }
	@{ echo "# Instructions per call of every make bench row (harness/bench-report.sh)."; \
	   echo "# Recorded by make bench-record from the run of build/bench.txt."; \
	   cat $(BUILD)/bench-icount.counts; } > $(H)/bench-icount.ref
	@cp $(BUILD)/xinterface-bench.rst $(REPO)/Documentation/virt/kvm/xinterface-bench.rst
	@grep -q '^<!-- bench-summary-end -->' README.md || \
		{ echo "README.md: no <!-- bench-summary --> ... <!-- bench-summary-end --> lines"; exit 1; }
	@awk -v f=$(BUILD)/bench-summary.md \
		'/^<!-- bench-summary -->/ {print; while ((getline l < f) > 0) print l; skip = 1; next} \
		 /^<!-- bench-summary-end -->/ {skip = 0} !skip' README.md > README.md.tmp
	@mv README.md.tmp README.md
	@echo "recorded: harness/bench-icount.ref, Documentation/virt/kvm/xinterface-bench.rst, README.md"

clean:
	rm -rf $(OBJ) $(OBJ_KCSAN) $(OBJ_GUEST) $(OBJ_PROD) $(BUILD)/guest \
		$(TESTS) \
		$(BUILD)/initramfs* \
		$(BUILD)/*.log $(BUILD)/*.summary $(BUILD)/bench.* \
		$(BUILD)/*.config $(BUILD)/*.rc

distclean:
	rm -rf $(BUILD)

# make check-stock, make dkms-src: DKMS package and Debian stock kernel run.
include $(H)/stock.mk
# make series, make series-check: the change as a git format-patch series.
-include $(H)/series.mk
