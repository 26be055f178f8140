#!/bin/sh
# check.sh WHAT [ARGS]: the checks of make check-stock that run in the
# stock guest, as entries of its check list (TAP on stdout).
#   identity     the booted kernel is the stock release; the loaded kvm,
#                kvm_amd are ours (package version, srcversion, our API's
#                symbols in /proc/kallsyms) and run in place of the stock
#                ones; the taint flags say so.
#   mismatch     the stock kernel refuses a kvm.ko built for another
#                kernel (/stock/mismatch/kvm.ko: module_layout CRC of
#                another struct module) with its own error; and what it
#                does with one whose vermagic only names another release
#                (kvm-release.ko): with modversions the release is not
#                compared, so it gets as far as "File exists" (our kvm
#                is loaded), which is why DKMS rebuilds per release.
#   skip REASON  a test that needs what the stock kernel lacks: a skip.
# /stock/stock.env holds what the build knows: release, version,
# srcversion, vermagic.
# shellcheck source=/dev/null disable=SC2154
. /stock/stock.env
n=0
fails=0
t() {	# t OK DESCRIPTION
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n $2"
	else
		echo "not ok $n $2"
		fails=$((fails + 1))
	fi
}

case "$1" in
identity)
	echo "1..6"
	r=$(uname -r)
	[ "$r" = "$release" ]
	t $? "uname -r is $r (expected the stock $release)"
	v=$(cat /sys/module/kvm/version 2>/dev/null)
	[ "$v" = "$version" ]
	t $? "/sys/module/kvm/version is '$v' (the package's $version; the stock kvm.ko has none)"
	s=$(cat /sys/module/kvm/srcversion 2>/dev/null)
	[ "$s" = "$srcversion" ]
	t $? "/sys/module/kvm/srcversion is $s (the DKMS-built kvm.ko's $srcversion)"
	k=$(grep -c ' kvm_xinterface_bind\(_file\)\?[[:space:]]*\[kvm\]$' /proc/kallsyms)
	[ "$k" = 2 ]
	t $? "/proc/kallsyms: kvm_xinterface_bind and _file in [kvm] ($k found)"
	a=$(cat /sys/module/kvm_amd/version 2>/dev/null)
	[ "$a" = "$version" ]
	t $? "/sys/module/kvm_amd/version is '$a'"
	# O: out-of-tree module, E: unsigned or signed by an unknown key.
	tf=$(cat /sys/module/kvm/taint)
	case "$tf" in *O*) true ;; *) false ;; esac
	t $? "kvm's taint flags are '$tf' (O: out-of-tree; the kernel taints for it and loads it)"
	;;
mismatch)
	echo "1..3"
	dmesg -c > /dev/null
	out=$(insmod /stock/mismatch/kvm.ko 2>&1)
	rc=$?
	msg=$(dmesg | grep -m1 'disagrees about version of symbol')
	echo "# insmod: $out"
	echo "# kernel: $msg"
	[ $rc != 0 ] && echo "$out" | grep -qi 'exec format error\|invalid module format'
	t $? "a kvm.ko built for another kernel is refused: insmod exit $rc, '$out'"
	[ -n "$msg" ]
	t $? "the kernel says why: '${msg#*] }'"
	out=$(insmod /stock/mismatch/kvm-release.ko 2>&1)
	rc=$?
	echo "# insmod: $out"
	[ $rc != 0 ] && echo "$out" | grep -qi 'file exists' &&
		! dmesg | grep -q 'version magic'
	t $? "vermagic of another release, same CRCs: not refused for it (modversions), stops at 'File exists': '$out'"
	;;
skip)
	shift
	echo "1..1"
	echo "ok 1 # SKIP $*"
	;;
*)
	echo "check.sh: unknown check $1" >&2
	exit 2
	;;
esac
[ $fails = 0 ]
