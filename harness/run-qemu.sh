#!/bin/bash
# Boot the test kernel with the test initramfs and wait for it to finish.
#
#   run-qemu.sh BUILD MODE TIMEOUT_SECONDS [EXTRA_ARGS]
#
# Console (kernel log) -> BUILD/console.log, test output -> BUILD/results.log.
# TCG with -cpu max (SVM with nested paging, so kvm_amd runs vCPUs) unless a
# probe shows that the host's /dev/kvm can run a nested hypervisor.
set -u
BUILD=$1
MODE=$2
TMO=$3
EXTRA=${4:-}
# XI_OBJ, XI_CPIO and XI_LOG name another kernel build, initramfs and log
# suffix (the KCSAN kernel of make check); the defaults are the debug one.
OBJ=${XI_OBJ:-$BUILD/obj}
CPIO=${XI_CPIO:-$BUILD/initramfs.cpio}
CON=$BUILD/console${XI_LOG:-}.log
RES=$BUILD/results${XI_LOG:-}.log
# XI_KERNEL names another kernel image and XI_APPEND adds to the command
# line (the stock Debian kernel of make check-stock); by default OBJ's.
KERNEL=${XI_KERNEL:-$OBJ/arch/x86/boot/bzImage}

# KVM acceleration only when the host can run it with nested virtualization;
# the probe starts QEMU with -accel kvm and counts it usable if it is still
# running (killed by timeout, 124) after 5 s.
probe_kvm() {
	[ -c /dev/kvm ] || return 1
	grep -qwE 'svm|vmx' /proc/cpuinfo || return 1
	timeout 5 qemu-system-x86_64 -accel kvm -M none -nodefaults \
		-display none -monitor none -serial none -S >/dev/null 2>&1
	[ $? = 124 ]
}
# XI_TCG is the -accel argument when TCG runs (make check-stock:
# tcg,thread=single); the default is tcg, multi-threaded.
accel=${XI_TCG:-tcg}
# XI_QEMU_EXTRA: more QEMU options (make bench: -icount shift=0,sleep=off,
# which needs TCG: no KVM acceleration then).  XI_SMP: vCPUs (default 2).
EXTRA_QEMU=${XI_QEMU_EXTRA:-}
SMP=${XI_SMP:-2}
[ -z "$EXTRA_QEMU" ] && probe_kvm && accel=kvm

append="console=ttyS0 panic=-1 xi.mode=$MODE${XI_APPEND:+ $XI_APPEND}"
[ -n "$EXTRA" ] && append="$append xi.args=$EXTRA"
: > "$CON"
: > "$RES"
echo "  QEMU    $MODE: accel=$accel, $SMP vCPUs, 4 GiB${EXTRA_QEMU:+, $EXTRA_QEMU}, timeout ${TMO}s"
# shellcheck disable=SC2086
timeout -s KILL "$TMO" qemu-system-x86_64 \
	-accel "$accel" -cpu max -smp "$SMP" -m 4G $EXTRA_QEMU \
	-kernel "$KERNEL" \
	-initrd "$CPIO" \
	-append "$append" \
	-display none -monitor none -nodefaults -no-reboot \
	-serial "file:$CON" -serial "file:$RES" \
	</dev/null
rc=$?
exit $rc
