#!/bin/sh
# /init of the nested guest that xinterface_linux boots
# (tools/testing/selftests/kvm/xinterface_linux.c).  Its disk, /dev/vda, is
# Linux's virtio-blk driver on a virtio-mmio device whose queue the xi_vblk
# kthread serves through kvm_xinterface.  Runs the jobs named by xi.job=
# (comma-separated) and reports on the console in lines "XI-GUEST ok ...",
# "XI-GUEST FAIL ..." and a final "XI-GUEST done", then powers off.
#   raw    patterns written to and read back from the raw disk, O_DIRECT
#   fs     mke2fs, files of known content, unmount, mount, checksums
#   reset  the driver unbound and bound again: reset and set-up of the
#          device; the files are still there
#   bad    xi-bad drives the device registers itself, wrongly (after
#          unbinding the driver), then the driver binds and works again
#   busy   reads and writes until the VMM stops the guest (never ends)
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /mnt /tmp

OK=0
BAD=0
say() { echo "XI-GUEST $*"; }
pass() { OK=$((OK + 1)); say "ok $*"; }
fail() { BAD=$((BAD + 1)); say "FAIL $*"; }
check() { # check WHAT CMD...: one verdict
	what=$1
	shift
	if "$@" >/tmp/out 2>&1; then
		pass "$what"
	else
		fail "$what: $(tail -n 3 /tmp/out | tr '\n' ' ')"
	fi
}

job=$(sed -n 's/.*xi\.job=\([a-z,]*\).*/\1/p' /proc/cmdline)
say "init uptime $(cut -d' ' -f1 /proc/uptime) s, jobs $job"

# The patterns: random bytes made once, checksummed once.
mkdir -p /data
dd if=/dev/urandom of=/data/pat bs=64k count=64 2>/dev/null	# 4 MiB

same() { # same FILE FILE: both readable, same bytes
	[ -r "$1" ] && [ -r "$2" ] && cmp -s "$1" "$2"
}

# Raw device, O_DIRECT both ways: 4 MiB at 40 MiB, 64 KiB blocks, then
# 1 MiB of 4 KiB blocks at an odd sector; the file system comes later.
job_raw() {
	check "raw: 4 MiB written with oflag=direct" \
		dd if=/data/pat of=/dev/vda bs=64k count=64 seek=640 oflag=direct
	check "raw: 4 MiB read back with iflag=direct" \
		dd if=/dev/vda of=/tmp/back bs=64k count=64 skip=640 iflag=direct
	check "raw: 4 MiB read back equal" same /data/pat /tmp/back
	dd if=/data/pat of=/tmp/pat1m bs=4k count=256 2>/dev/null
	check "raw: 1 MiB of 4 KiB blocks at sector 81921" \
		dd if=/tmp/pat1m of=/dev/vda bs=512 count=2048 seek=81921 oflag=direct
	dd if=/dev/vda of=/tmp/back bs=512 count=2048 skip=81921 iflag=direct 2>/dev/null
	check "raw: 1 MiB at an odd sector read back equal" same /tmp/pat1m /tmp/back
	rm -f /tmp/back /tmp/pat1m
}

# Files: sizes 0 to 4 MiB, and a directory of 200 small ones.
mkfiles() {
	mkdir -p /data/files/small
	for s in 0 1 511 4096 65537 1048576 3145728 4194304; do
		head -c "$s" /data/pat > /data/files/f$s
	done
	i=0
	while [ $i -lt 200 ]; do
		head -c $((i * 37 + 1)) /data/pat | tail -c $((i * 13 + 1)) > /data/files/small/s$i
		i=$((i + 1))
	done
	(cd /data/files && find . -type f | sort | xargs sha256sum) > /data/sums
}

mounted() {
	grep -q '^/dev/vda /mnt ext4 ' /proc/mounts
}

verify_files() { # the files on the mounted disk against /data/sums
	mounted || { echo "/dev/vda is not mounted" > /tmp/sumout; return 1; }
	(cd /mnt && sha256sum -c /data/sums) > /tmp/sumout 2>&1
	n=$(grep -c ': OK$' /tmp/sumout)
	# 8 files of given sizes and 200 small ones, as mkfiles made them.
	[ "$n" = 208 ] && [ "$(wc -l < /data/sums)" = 208 ]
}

job_fs() {
	mkfiles
	say "phase fs-start"
	# e2fsprogs' mke2fs, not busybox's applet of the same name.
	check "fs: mke2fs -t ext4 /dev/vda" /sbin/mke2fs -q -F -t ext4 /dev/vda
	check "fs: mount" mount -t ext4 /dev/vda /mnt
	mounted || { fail "fs: nothing to write to"; return; }
	cp -a /data/files/. /mnt/
	check "fs: sync" sync
	check "fs: umount" umount /mnt
	check "fs: mount again" mount -t ext4 /dev/vda /mnt
	if verify_files; then
		pass "fs: $(wc -l < /data/sums) files (0 B to 4 MiB) read back with matching sha256"
	else
		fail "fs: checksums: $(grep -v ': OK$' /tmp/sumout | head -n 3 | tr '\n' ' ')"
	fi
	check "fs: umount" umount /mnt
	say "phase fs-end"
	# VIRTIO_BLK_T_GET_ID, through the driver's sysfs file.
	check "fs: the disk's serial is xi_vblk" \
		sh -c '[ "$(cat /sys/block/vda/serial)" = xi_vblk ]'

}

job_reset() {
	d=$(ls /sys/bus/virtio/drivers/virtio_blk/ | grep '^virtio' | head -n 1)
	check "reset: virtio_blk unbound from $d" \
		sh -c "echo $d > /sys/bus/virtio/drivers/virtio_blk/unbind"
	[ -b /dev/vda ] && fail "reset: /dev/vda still there"
	check "reset: virtio_blk bound again" \
		sh -c "echo $d > /sys/bus/virtio/drivers/virtio_blk/bind"
	check "reset: mount after the re-initialisation" mount -t ext4 /dev/vda /mnt
	if verify_files; then
		pass "reset: the files read back after the reset"
	else
		fail "reset: checksums after the reset"
	fi
	check "reset: umount" umount /mnt
}

job_bad() {
	check "bad: virtio-mmio driver unbound" \
		sh -c 'echo virtio-mmio.0 > /sys/bus/platform/drivers/virtio-mmio/unbind'
	# xi-bad prints its own verdicts; they count here too.
	/bin/xi-bad 0xd0000000 0x7000000 > /tmp/bad.out 2>&1
	rc=$?
	cat /tmp/bad.out
	OK=$((OK + $(grep -c '^XI-GUEST ok ' /tmp/bad.out)))
	BAD=$((BAD + $(grep -c '^XI-GUEST FAIL ' /tmp/bad.out)))
	[ $rc = 0 ] || fail "bad: xi-bad exited with $rc"
	check "bad: virtio-mmio driver bound again" \
		sh -c 'echo virtio-mmio.0 > /sys/bus/platform/drivers/virtio-mmio/bind'
	sleep 1
	check "bad: 1 MiB written after recovery" \
		dd if=/data/pat of=/dev/vda bs=64k count=16 oflag=direct
	dd if=/dev/vda of=/tmp/back bs=64k count=16 iflag=direct 2>/dev/null
	head -c 1048576 /data/pat > /tmp/pat1m
	check "bad: the driver works after the bad set-ups" same /tmp/pat1m /tmp/back
}

job_busy() {
	for s in 0 4 8 12; do
		dd if=/data/pat of=/dev/vda bs=1M count=4 seek=$s oflag=direct 2>/dev/null
	done
	say "busy"
	echo 4 > /proc/sys/vm/drop_caches	# no log line for each drop
	i=0
	while :; do
		# Device writes into guest memory: 1 MiB direct reads (one
		# request each, long enough to be caught in flight) and
		# page-cache reads.
		dd if=/dev/vda of=/dev/null bs=1M count=2 skip=$((i % 15)) iflag=direct 2>/dev/null
		dd if=/dev/vda of=/dev/null bs=64k count=8 skip=$(((i * 7) % 120)) 2>/dev/null
		echo 1 > /proc/sys/vm/drop_caches 2>/dev/null
		dd if=/data/pat of=/dev/vda bs=4k count=4 seek=$((4096 + i % 1024)) oflag=direct 2>/dev/null
		i=$((i + 1))
	done
}

for j in $(echo "$job" | tr ',' ' '); do
	case $j in
	raw) job_raw ;;
	fs) job_fs ;;
	reset) job_reset ;;
	bad) job_bad ;;
	busy) job_busy ;;
	*) fail "unknown job $j" ;;
	esac
done
say "done $OK ok, $BAD failed"
sync
reboot -f
