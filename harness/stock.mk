# make check-stock: kvm_xinterface on Debian's unmodified kernel.
#
#   make dkms-src     the DKMS package source (what `dkms add` takes), in
#                     build/stock/dkms-src, generated from build/tree
#   make check-stock  build it with DKMS for the stock release, boot the
#                     stock kernel under QEMU with our modules and run the
#                     tests there; ends with "N passed, N failed"
#
# STOCK_REL=<release> targets another Debian release than the one of
# linux-source-6.12 (harness/stock/release.sh).  STOCK_TIMEOUT=<s> bounds
# the guest run.  STOCK_LIST=<file> replaces harness/check.list as the
# list the stock run starts from.  STOCK_PREREQ (default: tree) is what
# is prepared first; the test programs are make check's (build/tests),
# built if missing.
# Everything goes to build/stock.  The stock kernel's image and headers
# are fetched with apt-get download and unpacked there (dpkg-deb -x), not
# installed; DKMS builds and installs into build/stock too
# (harness/stock/dkms-build.sh).  What the build machine gets installed
# is dkms and what the headers' tools need (gcc-12, pahole), without
# Recommends (dkms's would pull linux-headers-amd64).

STOCK         := $(BUILD)/stock
STOCK_REL     ?=
STOCK_TIMEOUT ?= 2400
STOCK_PREREQ  ?= tree
STOCK_LIST    ?= $(H)/check.list
# The entries of the list the stock run takes (shell patterns of names):
# the upstream regression set and the project's kselftests, the real
# Linux guest on xi_vblk (xinterface_linux) among them.
STOCK_SELECT  ?= upstream/* xinterface/xinterface_test \
	xinterface/xinterface_sample xinterface/xinterface_fail_nth \
	xinterface/xinterface_linux kmemleak/*
# A test of the stock run is killed after STOCK_TEST_TIMEOUT seconds at
# most (check.list's timeouts are the debug kernel's; the longest stock
# test took 90 s).
STOCK_TEST_TIMEOUT ?= 360
# One TCG thread for both vCPUs.  The stock kernel patches its code at run
# time (jump labels: KVM flips static keys, e.g. the preempt notifiers',
# when a VM is created or destroyed), and under multi-threaded TCG (QEMU
# 7.2) a vCPU executed the int3 of a finished patch once in two runs:
# "Oops: int3" in finish_task_switch, a panic.  The debug kernels have no
# JUMP_LABEL.  Single-threaded, the run took 125 s instead of ~140 s.
STOCK_TCG     ?= tcg,thread=single
STOCK_RELEASE  = $$(cat $(STOCK)/release)
# The release's headers, unpacked by harness/stock/headers.sh.
STOCK_HDR      = $(STOCK)/headers/usr/src/linux-headers-$(STOCK_RELEASE)

.PHONY: deps-stock dkms-src check-stock stock-tests

# dkms, and the headers of the release unpacked into build/stock/headers
# (installing Debian's headers package would install its linux-image on
# the build machine: it depends on it).
deps-stock: deps
	@mkdir -p $(STOCK)
	@r="$(STOCK_REL)"; [ -n "$$r" ] || r=$$($(H)/stock/release.sh) || exit 1; \
		echo "$$r" > $(STOCK)/release
	@$(H)/deps.sh --no-install-recommends dkms
	@$(H)/stock/headers.sh $(STOCK_RELEASE) $(STOCK)/headers

dkms-src: deps-stock $(STOCK_PREREQ)
	@$(REPO)/dkms/mksrc.sh $(REPO) $(TREE) $(STOCK_HDR) $(STOCK)/dkms-src

# The programs the list runs are make check's: if one is missing, build
# what make check's initramfs needs (the debug kernel, the selftests, the
# nested guest); xinterface_linux needs the nested guest.
stock-tests:
	@for t in $$(sed -n 's|^[^#][^ ]* [0-9]* \(kvm/[^ ]*\).*|\1|p' \
		$(STOCK_LIST)); do \
		[ -x $(TESTS)/$$t ] || { $(MAKE) initramfs; break; }; done
	@[ -f $(BUILD)/guest/initramfs.cpio ] || $(MAKE) guest

# report.sh runs whatever failed before it (a failed step is one failed
# test in its summary); the previous run's results go first.
check-stock: deps-stock $(STOCK_PREREQ) stock-tests
	@rm -f $(STOCK)/host.results $(STOCK)/results.log $(STOCK)/console.log \
		$(STOCK)/unselected; \
	if ! $(TIME) "DKMS build for $(STOCK_RELEASE)" \
		$(H)/stock/dkms-build.sh $(REPO) $(BUILD) $(STOCK_RELEASE); then \
		echo "FAIL host: harness/stock/dkms-build.sh failed (see above)" \
			>> $(STOCK)/host.results; rc=1; \
	elif ! XI_STOCK_SELECT='$(STOCK_SELECT)' \
		XI_STOCK_TEST_TIMEOUT=$(STOCK_TEST_TIMEOUT) $(H)/stock/mkinitramfs.sh \
		$(REPO) $(BUILD) $(STOCK_RELEASE) $(STOCK_LIST); then \
		echo "FAIL host: harness/stock/mkinitramfs.sh failed (see above)" \
			>> $(STOCK)/host.results; rc=1; \
	else \
		XI_KERNEL=$(STOCK)/image/boot/vmlinuz-$(STOCK_RELEASE) \
		XI_CPIO=$(STOCK)/initramfs.cpio XI_APPEND=rdinit=/stock-init \
		XI_TCG=$(STOCK_TCG) \
		$(TIME) "boot the stock kernel and test" $(H)/run-qemu.sh \
			$(STOCK) check $(STOCK_TIMEOUT); \
		rc=$$?; \
	fi; \
	$(H)/stock/report.sh $(BUILD) $$rc
