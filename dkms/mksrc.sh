#!/bin/bash
# Generate the source of the DKMS package kvm-xinterface (what `dkms add`
# takes) from the patched kernel tree:
#
#   mksrc.sh REPO TREE HEADERS OUT
#
# TREE is the patched tree (build/tree), HEADERS the kernel headers of the
# target release (/usr/src/linux-headers-<release>), whose .config decides
# the options; OUT is recreated.  OUT.kconfig is a scratch directory for
# Kconfig, OUT.layout receives the verdict of the struct kvm layout check.
#
# Nothing here is a second copy of a source file: arch/x86/kvm, virt/kvm,
# the KVM headers the project changes or adds, and the consumer modules
# are copied from TREE; what replaces the in-tree build wiring (Kconfig,
# lib/Makefile, samples/Makefile) is generated:
#  - xinterface.mk: the options of dkms/xinterface.config as Kconfig
#    resolves them on the target's .config, as make variables and -D
#    flags; the package's include/ ahead of the kernel's, so that its
#    kvm_host.h wins over the stock one.
#  - a Kbuild in each module directory: arch/x86/kvm's Makefile with its
#    $(srctree) paths made relative to the package, lib's xinterface
#    lines, samples/kvm/xinterface's Makefile.
# The package's include/linux/kvm_host.h is the tree's with one change:
# our fields at the end of struct kvm are hidden from genksyms, so that
# the stock kvm.ko's exports keep their CRCs (see below).  The top Kbuild
# and dkms.conf accept only kernels of the source's version.
# Every file the patch series touches is classified below; a file outside
# what an out-of-tree build can carry stops the generation (a finding).
#
# The single-quoted $(...) are make's, for the generated files:
# shellcheck disable=SC2016
set -euo pipefail
REPO=$(cd "$1" && pwd)
TREE=$(cd "$2" && pwd)
HDR=$(cd "$3" && pwd)
OUT=$(realpath -m "$4")
D=$REPO/dkms
KC=$OUT.kconfig
say() { echo "  DKMS    $*"; }
die() { echo "mksrc.sh: $*" >&2; exit 1; }

[ -f "$HDR/.config" ] || die "$HDR/.config missing (linux-headers not installed?)"
# The headers' include/ and arch/ live in the -common package; its
# top-level Makefile includes the common one.
COMMON=$(sed -n 's|^include \(/.*\)/Makefile$|\1|p' "$HDR/Makefile")
COMMON=${COMMON:-$HDR}

# Package version: the kernel version of the sources and the number of
# commits (it grows, as DKMS wants for upgrades); "+dirty" when the
# package's sources differ from the commit.  The commit is in commit.txt.
kv=$(awk '/^VERSION =/{v=$3} /^PATCHLEVEL =/{p=$3} /^SUBLEVEL =/{s=$3}
	END {print v "." p "." s}' "$TREE/Makefile")
ver="$kv.$(git -C "$REPO" rev-list --count HEAD)"
commit=$(git -C "$REPO" rev-parse --short=12 HEAD)
if [ -n "$(git -C "$REPO" status --porcelain -- virt include lib samples \
	patches dkms)" ]; then
	ver="$ver+dirty"
	commit="$commit+dirty"
fi

# ---- what the patch series touches ----
mapfile -t series < <(grep -v '^\s*#' "$REPO/patches/series" | sed '/^\s*$/d')
mapfile -t touched < <(cd "$REPO/patches" && sed -n 's|^+++ b/\([^\t ]*\).*|\1|p' \
	"${series[@]}" | sort -u)
headers=()
for f in "${touched[@]}"; do
	case "$f" in
	*/Kconfig | */Kconfig.*) ;;		# resolved into xinterface.mk
	arch/x86/kvm/* | virt/kvm/*) ;;		# carried whole
	include/linux/kvm_*.h) headers+=("$f") ;;
	lib/Makefile | samples/Makefile) ;;	# generated Kbuild files
	tools/* | Documentation/*) ;;		# not part of the modules
	*) die "FINDING: the series changes $f, which is built into the stock kernel, not into a module: it cannot be carried out of tree" ;;
	esac
done
# New files of the repository laid over the tree.
while read -r f; do
	case "$f" in
	include/linux/kvm_*.h) headers+=("$f") ;;
	include/*) die "FINDING: $f is a new header outside KVM's" ;;
	esac
done < <(git -C "$REPO" ls-files include)

# ---- copy ----
say "package source $ver in $OUT"
rm -rf "$OUT"
mkdir -p "$OUT/arch/x86" "$OUT/virt" "$OUT/include/linux" "$OUT/lib" \
	"$OUT/samples/kvm" "$OUT/include/trace"
cp -a "$TREE/arch/x86/kvm" "$OUT/arch/x86/"
cp -a "$TREE/virt/kvm" "$OUT/virt/"
for f in $(printf '%s\n' "${headers[@]}" | sort -u); do
	cp -a "$TREE/$f" "$OUT/$f"
done
for f in $(git -C "$REPO" ls-files lib); do
	cp -a "$TREE/$f" "$OUT/$f"
done
cp -a "$TREE/samples/kvm/xinterface" "$OUT/samples/kvm/"
# Kconfig files mean nothing out of tree.
find "$OUT" -name 'Kconfig*' -delete

# ---- options: dkms/xinterface.config, resolved by the tree's Kconfig ----
rm -rf "$KC"
mkdir -p "$KC"
# The stock .config without its "is not set" lines for our options, then
# ours.  The toolchain options must come out as in the stock .config: the
# compiler it names (as DKMS uses it), and no Rust (a rustc on PATH would
# set the RUSTC_* options).
syms=$(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=.*/\1/p' "$D/xinterface.config" | paste -sd'|')
grep -vE "^# ($syms) is not set" "$HDR/.config" | cat - "$D/xinterface.config" > "$KC/.config"
cc=$(sed -n 's|^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*"|\1|p' "$HDR/.config")
command -v "$cc" >/dev/null || cc=gcc
make -s -C "$TREE" O="$KC" CC="$cc" RUSTC=/bin/false olddefconfig >/dev/null
"$REPO/harness/check-config.sh" "$D/xinterface.config" "$KC/.config" ||
	die "an option of dkms/xinterface.config did not take on $HDR/.config"
grep '^CONFIG_' "$HDR/.config" | sort > "$KC/stock"
grep '^CONFIG_' "$KC/.config" | sort > "$KC/ours"
changed=$(comm -23 "$KC/stock" "$KC/ours")
[ -z "$changed" ] || die "FINDING: the options change stock ones (a stock kernel cannot follow): $changed"
mapfile -t added < <(comm -13 "$KC/stock" "$KC/ours")
# A selected option that a kernel header tests would make our modules see
# other types than the kernel's: only options no header reads may come.
for l in "${added[@]}"; do
	sym=${l%%=*}
	grep -qxF "$l" "$D/xinterface.config" && continue
	hits=$(grep -rlw "$sym" "$COMMON/include" "$COMMON/arch/x86/include" || true)
	[ -z "$hits" ] || die "FINDING: $l (selected by our options) is read by kernel headers: $hits"
done

{
	echo "# Generated by dkms/mksrc.sh from dkms/xinterface.config and the"
	echo "# Kconfig of the patched tree: the options of this package on top of"
	echo "# the target kernel's .config.  Included by every Kbuild file."
	for l in "${added[@]}"; do
		sym=${l%%=*} val=${l#*=}
		echo "$sym := $val"
		case "$val" in
		y) echo "ccflags-y += -D$sym=1" ;;
		m) echo "ccflags-y += -D${sym}_MODULE=1" ;;
		*) die "option $l is neither y nor m" ;;
		esac
	done
	echo "# The package's headers (kvm_host.h with kvm_xinterface's fields,"
	echo "# kvm_xinterface.h) go before the kernel's own include/."
	echo 'xi_inc := -I$(KBUILD_EXTMOD)/include'
	echo 'ifeq ($(filter $(xi_inc),$(LINUXINCLUDE)),)'
	echo 'LINUXINCLUDE := $(xi_inc) $(LINUXINCLUDE)'
	echo 'endif'
} > "$OUT/xinterface.mk"

# ---- Kbuild files ----
hdr='# Generated by dkms/mksrc.sh: do not edit.'
inc='include $(KBUILD_EXTMOD)/xinterface.mk'
# The sources are one kernel version's KVM (mksrc.sh's checks, and the
# asm/kvm_host.h and exports they were built against, are that version's):
# headers of another sublevel are refused, with DKMS (whose
# BUILD_EXCLUSIVE_KERNEL says the same) or without.
cat > "$OUT/Kbuild" <<EOF
$hdr
ifneq (\$(VERSION).\$(PATCHLEVEL).\$(SUBLEVEL),$kv)
\$(error kvm-xinterface $ver is the KVM of Linux $kv; these headers are \$(VERSION).\$(PATCHLEVEL).\$(SUBLEVEL): generate the package from their version's source (make dkms-src))
endif
obj-m += arch/x86/kvm/ lib/ samples/kvm/xinterface/
EOF
# arch/x86/kvm: the tree's Makefile, its two $(srctree) paths moved into
# the package (checked: a new $(srctree) use would break the build).
mk=$TREE/arch/x86/kvm/Makefile
sed -e 's|-I \$(srctree)/arch/x86/kvm|-I $(src)|' \
	-e 's|^include \$(srctree)/virt/kvm/Makefile.kvm|include $(src)/../../../virt/kvm/Makefile.kvm|' \
	"$mk" > "$OUT/arch/x86/kvm/Kbuild.body"
! grep -n 'srctree' "$OUT/arch/x86/kvm/Kbuild.body" ||
	die "$mk has a \$(srctree) path that mksrc.sh does not know"
{
	echo "$hdr"
	echo "$inc"
	echo "# trace.h's TRACE_INCLUDE_PATH (../../arch/x86/kvm) is relative to"
	echo "# include/trace, as in the kernel tree."
	echo 'ccflags-y += -I$(KBUILD_EXTMOD)/include/trace'
	cat "$OUT/arch/x86/kvm/Kbuild.body"
} > "$OUT/arch/x86/kvm/Kbuild"
rm "$OUT/arch/x86/kvm/Kbuild.body"
# The package version as each KVM module's modinfo "version": DKMS leaves
# a kernel's own module in place when the versions are equal (the stock
# ones have none), and /sys/module/kvm/version then says whose kvm.ko
# runs.
echo "# The package version (dkms/mksrc.sh)." >> "$OUT/arch/x86/kvm/Kbuild"
for m in kvm kvm-amd kvm-intel; do
	cat > "$OUT/arch/x86/kvm/xi-version-$m.c" <<EOF
// SPDX-License-Identifier: GPL-2.0-only
/* Generated by dkms/mksrc.sh: the version of the kvm-xinterface package. */
#include <linux/module.h>

MODULE_VERSION("$ver");
EOF
	echo "$m-y += xi-version-$m.o" >> "$OUT/arch/x86/kvm/Kbuild"
done
echo "TRACE_INCLUDE_PATH of arch/x86/kvm/trace.h resolves from here." \
	> "$OUT/include/trace/README"
# lib: the xinterface lines of the tree's lib/Makefile.
{
	echo "$hdr"
	echo "$inc"
	grep -i 'xinterface' "$TREE/lib/Makefile"
} > "$OUT/lib/Kbuild"
grep -q '^obj-' "$OUT/lib/Kbuild" || die "no xinterface module in $TREE/lib/Makefile"
printf '%s\n%s\n%s\n' "$hdr" "$inc" 'include $(src)/Makefile' \
	> "$OUT/samples/kvm/xinterface/Kbuild"

# ---- DKMS files ----
# BUILD_EXCLUSIVE_KERNEL: the releases of exactly this version, e.g.
# ^6\.12\.117([^0-9]|$) for 6.12.117+deb12-amd64, not 6.12.118's.
kre="^${kv//./\\.}([^0-9]|\$)"
sed -e "s|@VERSION@|$ver|" -e "s/@KERNEL_RE@/${kre//\\/\\\\}/" \
	"$D/dkms.conf.in" > "$OUT/dkms.conf"
grep -qxF "BUILD_EXCLUSIVE_KERNEL=\"$kre\"" "$OUT/dkms.conf" ||
	die "BUILD_EXCLUSIVE_KERNEL of $OUT/dkms.conf is not $kre"
cp "$D/dkms-post-build.sh" "$OUT/"
cp "$D/Makefile.pkg" "$OUT/Makefile"
echo "$commit" > "$OUT/commit.txt"
echo "$ver" > "$OUT.version"

# ---- struct kvm: the stock layout must be a prefix of ours ----
# Stock modules built against the stock kvm_host.h (vfio, kvmgt) share
# struct kvm with our kvm.ko: fields may only be added at its end.
body() { awk '/^struct kvm \{/,/^\};/' "$1"; }
body "$COMMON/include/linux/kvm_host.h" > "$KC/kvm.stock"
body "$OUT/include/linux/kvm_host.h" > "$KC/kvm.ours"
# Allowed: no change, or one insertion after line n, the last field
# (line n + 1 is the closing "};").
n=$(($(wc -l < "$KC/kvm.stock") - 1))
d=$(diff "$KC/kvm.stock" "$KC/kvm.ours" | grep -v '^[<>-]' || true)
if [ -z "$d" ] || [[ $d =~ ^${n}a$((n + 1))(,[0-9]+)?$ ]]; then
	echo "ok struct kvm: the stock fields keep their offsets (ours follow them)" > "$OUT.layout"
else
	echo "FINDING struct kvm: fields added before the end of the stock struct (diff $d)" > "$OUT.layout"
fi
say "$(cat "$OUT.layout")"

# ---- struct kvm: the stock symbol versions ----
# genksyms hashes every type an export's prototype reaches, and struct kvm
# is reached by most of KVM's (through struct kvm_vcpu, ...): with our
# fields in it, 196 of the stock kvm.ko's 364 exports got other CRCs (on
# 6.12.117), and stock modules that import them (kvmgt) would be refused
# ("disagrees about version of symbol").  The package's copy hides our fields from
# genksyms (it preprocesses with -D__GENKSYMS__), which is safe because
# they follow every stock field (checked above): the stock modules never
# see them.  dkms-build.sh compares the CRCs with the stock kvm.ko's.
if [ -n "$d" ] && [[ $d =~ ^${n}a$((n + 1))(,[0-9]+)?$ ]]; then
	awk -v n="$n" '
		/^struct kvm \{/ { in_kvm = 1 }
		in_kvm && /^\};/ { print "#endif /* __GENKSYMS__ (dkms/mksrc.sh) */"; in_kvm = 0 }
		{ print }
		in_kvm && ++line == n { print "#ifndef __GENKSYMS__ /* the stock CRCs: not hashed (dkms/mksrc.sh) */" }
	' "$OUT/include/linux/kvm_host.h" > "$KC/kvm_host.h"
	cp "$KC/kvm_host.h" "$OUT/include/linux/kvm_host.h"
	# Without our fields the struct is the stock one again.
	diff -q "$KC/kvm.stock" <(body "$OUT/include/linux/kvm_host.h" |
		sed '/^#ifndef __GENKSYMS__/,/^#endif \/\* __GENKSYMS__/d') >/dev/null ||
		die "struct kvm without the __GENKSYMS__ block differs from the stock one"
fi
