#!/bin/sh
# kmemleak.sh: after the project's tests, ask kmemleak for leaks and fail
# on any report whose allocation trace involves kvm_xinterface, its test
# modules, the sample or KVM.  Two scans: kmemleak reports an object only
# once it is older than its minimum age (5 s) and unreferenced in a scan.
K=/sys/kernel/debug/kmemleak
echo "1..1"
if [ ! -w "$K" ]; then
	echo "not ok 1 kmemleak: $K is missing (CONFIG_DEBUG_KMEMLEAK, debugfs)"
	exit 1
fi
echo scan > "$K"
sleep 6
echo scan > "$K"
cat "$K" > /tmp/kmemleak.txt
total=$(grep -c '^unreferenced object' /tmp/kmemleak.txt)
# One record per report; keep those that name our code or KVM's.
awk -v pat='xi_|xit_|xvb_|kvm_xinterface|kvm_xvmap|kvm_xsg|test_xinterface|xi_vblk|\\[kvm|kvm_' '
	/^unreferenced object/ { if (blk ~ pat) printf "%s", blk; blk = "" }
	{ blk = blk $0 "\n" }
	END { if (blk ~ pat) printf "%s", blk }' /tmp/kmemleak.txt > /tmp/kmemleak.ours
ours=$(grep -c '^unreferenced object' /tmp/kmemleak.ours)
cat /tmp/kmemleak.ours | sed 's/^/# /'
if [ "$ours" = 0 ]; then
	echo "ok 1 kmemleak: $total unreferenced objects in the kernel, none allocated by kvm_xinterface, its tests, the sample or KVM"
	exit 0
fi
echo "not ok 1 kmemleak: $ours of $total unreferenced objects were allocated by kvm_xinterface, its tests, the sample or KVM"
exit 1
