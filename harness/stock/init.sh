#!/bin/busybox sh
# shellcheck shell=dash
# /stock-init: the first program of make check-stock's initramfs, started
# by the stock kernel with rdinit=/stock-init.  It loads the stock modules
# that our KVM modules need and harness/init.sh does not load (ccp, for
# kvm-amd; listed in /stock/preload.list), each reported as a test in the
# results log (ttyS1, XI-BEGIN/XI-END blocks as harness/init.sh writes
# them), then hands over to harness/init.sh (/init), which loads
# irqbypass, kvm, kvm-amd and the test modules and runs /tests/check.list
# (the stock list, see harness/stock/mkinitramfs.sh).
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
R=/dev/ttyS1
$B stty -F $R raw -echo 2>/dev/null
while read -r m; do
	[ -n "$m" ] || continue
	echo "XI-BEGIN modules/insmod-$m" > $R
	t0=$($B cut -d' ' -f1 /proc/uptime)
	$B insmod "/lib/modules/$m.ko" > $R 2>&1
	echo "XI-END modules/insmod-$m $? $t0 $($B cut -d' ' -f1 /proc/uptime)" > $R
done < /stock/preload.list
# /init mounts them again.
$B umount /dev
$B umount /proc
exec /init
