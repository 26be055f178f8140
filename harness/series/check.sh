#!/bin/bash
# check.sh REPO BUILD [JOBS]: check the series of make series.
#
# 1. git am: the series applies with git am to a fresh checkout of the
#    pristine source (BUILD/series-am: reset to the base commit and
#    cleaned first), and the result equals build/tree, the tree the tests
#    run on: every file, none missing, none extra (harness bookkeeping
#    excepted, see TREE_EXTRA below).  A mismatch prints the diff.
# 2. Per patch, on that patch's tree: build what it affects with W=1 in
#    BUILD/obj-series (kvm and its modules, the series' modules in lib/
#    and samples/, the kselftests it adds; make check's debug config) and
#    run checkpatch.pl --strict on it.
# One PASS/FAIL line per check, then "N passed, N failed"; exits non-zero
# if anything failed.
set -uo pipefail

REPO=$1
BUILD=$2
JOBS=${3:-2}
# shellcheck source=harness/series/lib.sh
. "$REPO/harness/series/lib.sh"

SERIES=$BUILD/series
GITREPO=$BUILD/series-git
AM=$BUILD/series-am
# SERIES_TREE: compare with another tree than build/tree (to test this).
TREE=${SERIES_TREE:-$BUILD/tree}
OBJS=$BUILD/obj-series
TESTS=$BUILD/series-tests
LOGS=$BUILD/series-logs
# Files of build/tree that are not the kernel's: prepare-tree.sh's records
# of what it applied (.xi-applied, .xi-patches/, .xi-source).
TREE_EXTRA=('/.xi-applied' '/.xi-patches/' '/.xi-source')
# checkpatch types accepted in every patch: FILE_PATH_CHANGES ("added,
# moved or deleted file(s), does MAINTAINERS need updating?") because the
# series adds files and does not change MAINTAINERS (virt/kvm/,
# include/linux/kvm*, tools/testing/selftests/kvm/ and
# Documentation/virt/kvm/ are KVM's entry already).
CHECKPATCH_IGNORE=FILE_PATH_CHANGES

npass=0 nfail=0
pass() { echo "PASS $*"; npass=$((npass + 1)); }
fail() { echo "FAIL $*"; nfail=$((nfail + 1)); }
finish() {
	echo "series-check: $npass passed, $nfail failed"
	[ $nfail = 0 ]
	exit
}

patches=()
for f in "$SERIES"/[0-9][0-9][0-9][0-9]-*.patch; do
	[ -e "$f" ] || continue
	f=${f##*/}
	[ "${f#0000-}" != "$f" ] || patches+=("$f")
done
[ ${#patches[@]} -gt 0 ] || die "no patches in $SERIES: run make series"
rm -rf "$LOGS"
mkdir -p "$LOGS"

# --- 0. the same inputs give the same bytes -------------------------------
if SERIES_OUT=$BUILD/series-again SERIES_REF=refs/heads/series-again \
	"$REPO/harness/series/mkseries.sh" "$REPO" "$BUILD" >/dev/null &&
   diff -r "$SERIES" "$BUILD/series-again" > "$LOGS/again.diff"; then
	pass "make series again gives the same bytes"
else
	head -n 40 "$LOGS/again.diff"
	fail "make series again gives the same bytes (inputs changed since make series?)"
fi
rm -rf "$BUILD/series-again"

# --- 1. git am onto a fresh pristine tree, compare with build/tree ---------
A=(g -C "$AM")
if [ ! -d "$AM/.git" ]; then
	echo "  SERIES  checking out the pristine source into ${AM#"$REPO"/} (once)"
	rm -rf "$AM"
	g clone -q --shared --no-checkout "$GITREPO" "$AM" || die "cannot clone $GITREPO"
fi
"${A[@]}" fetch -q "$GITREPO" +refs/heads/base:refs/heads/base
"${A[@]}" am --abort >/dev/null 2>&1
if ! "${A[@]}" checkout -q -f --detach base || ! "${A[@]}" clean -q -f -d -x; then
	die "cannot reset $AM to the base commit"
fi
[ -z "$("${A[@]}" status --porcelain --ignored)" ] || die "$AM is not pristine after reset"
if "${A[@]}" am -q --committer-date-is-author-date \
	"${patches[@]/#/$SERIES/}" > "$LOGS/am.log" 2>&1; then
	pass "git am: ${#patches[@]} patches apply to the pristine source"
else
	cat "$LOGS/am.log"
	"${A[@]}" am --abort >/dev/null 2>&1
	fail "git am: the series does not apply to the pristine source"
	finish
fi

# build/tree against the result, through a private index whose stat data
# stay valid between runs (no work-tree file is ever written by this).
T=(env GIT_INDEX_FILE="$BUILD/series-tree.index" git -c core.abbrev=12
	--git-dir="$AM/.git" --work-tree="$TREE")
# --reset: take HEAD, keeping the stat data of entries whose content is
# unchanged; never -u (that would write into build/tree).
"${T[@]}" read-tree --reset HEAD || die "cannot read HEAD into $BUILD/series-tree.index"
"${T[@]}" update-index -q --refresh >/dev/null
excl=()
for e in "${TREE_EXTRA[@]}"; do excl+=(--exclude="$e"); done
changed=$("${T[@]}" diff-files --name-status)
extra=$("${T[@]}" ls-files --others --directory "${excl[@]}")
if [ -z "$changed$extra" ]; then
	pass "git am result equals build/tree ($("${A[@]}" diff --name-only base HEAD | wc -l) files changed by the series)"
else
	echo "build/tree (b/) differs from the series applied to the pristine source (a/):"
	if [ -n "$changed" ]; then
		echo "$changed"
		"${T[@]}" diff --stat=120
		"${T[@]}" diff > "$LOGS/tree.diff"
		head -n 200 "$LOGS/tree.diff"
		echo "(the whole diff: ${LOGS#"$REPO"/}/tree.diff)"
	fi
	# shellcheck disable=SC2001
	[ -z "$extra" ] || { echo "only in build/tree:"; echo "$extra" | sed 's/^/  /'; }
	fail "git am result equals build/tree"
fi
if [ "$("${A[@]}" rev-parse HEAD)" = "$(g --git-dir="$GITREPO" rev-parse refs/heads/series)" ]; then
	pass "git am gives the commits of make series (same messages, authors, dates and trees)"
else
	fail "git am gives the commits of make series (HEAD $("${A[@]}" rev-parse --short HEAD))"
fi

# --- 2. each patch on its own: build (W=1) and checkpatch -------------------
KM=(make -s -C "$AM" O="$OBJS" CC="ccache gcc" HOSTCC="ccache gcc")
export CCACHE_BASEDIR=$BUILD
mkdir -p "$OBJS" "$TESTS"
# The exports a module of the series may use besides the series' own:
# those of every other module and of vmlinux in make check's kernel.
ours='^(arch/x86/kvm/|lib/test_xinterface|samples/kvm/)'
if [ -f "$BUILD/obj/Module.symvers" ]; then
	awk -v re="$ours" '$3 !~ re { print $2 }' "$BUILD/obj/Module.symvers" |
		LC_ALL=C sort -u > "$LOGS/kernel-exports"
else
	: > "$LOGS/kernel-exports"
	echo "  SERIES  no build/obj/Module.symvers (run make first): symbols not checked"
fi
mapfile -t commits < <("${A[@]}" rev-list --reverse base..HEAD)
end=$("${A[@]}" rev-parse HEAD)
i=0
for c in "${commits[@]}"; do
	i=$((i + 1))
	p=${patches[i - 1]}
	name=${p%.patch}
	subj=$("${A[@]}" log -1 --format=%s "$c")
	log=$LOGS/$name.log
	"${A[@]}" checkout -q --detach "$c" || die "cannot check out $c"
	t0=$(date +%s)
	# What exists at this patch: the series' new modules and kselftests.
	touched=$("${A[@]}" diff --name-only base "$c")
	# Modules as the objects modpost would link (kbuild builds the .ko
	# only with vmlinux; the symbols are checked below instead).
	mods=(arch/x86/kvm/kvm.o arch/x86/kvm/kvm-amd.o arch/x86/kvm/kvm-intel.o)
	dirs=(arch/x86/kvm/)
	tests=()
	while IFS= read -r f; do
		case $f in
		lib/*.c)	dirs+=("${f%.c}.o")
				mods+=("${f%.c}.o") ;;
		samples/*.c)	dirs+=("$(dirname "$f")/")
				mods+=("${f%.c}.o") ;;
		tools/testing/selftests/kvm/*.c)
				t=${f#tools/testing/selftests/kvm/}
				tests+=("$TESTS/${t%.c}") ;;
		esac
	done < <("${A[@]}" diff --name-only --diff-filter=A base "$c")
	ok=1
	{
		echo "== $subj"
		echo "== config: allnoconfig + harness/kernel.config"
		"${KM[@]}" KCONFIG_ALLCONFIG="$REPO/harness/kernel.config" allnoconfig 2>&1 |
			grep -v '^#' || true
		echo "== make W=1 ${dirs[*]}"
		"${KM[@]}" -j"$JOBS" W=1 "${dirs[@]}" 2>&1 ||
			echo "XI-SERIES-BUILD-FAILED"
	} > "$log"
	grep -q XI-SERIES-BUILD-FAILED "$log" && ok=0
	# Warnings count against the patch when they are in a file the series
	# touches; others (of the pristine kernel) are only shown in the log.
	warn=$(grep -E '(warning|error):' "$log" | grep -F -f <(echo "$touched") || true)
	[ -z "$warn" ] || ok=0
	# Every symbol a module needs must exist: exported by the kernel (as
	# make check's build has it) or by a module of the series at this patch.
	unres=
	if [ -s "$LOGS/kernel-exports" ] && [ $ok = 1 ]; then
		for m in "${mods[@]}"; do
			[ -f "$OBJS/$m" ] || unres+="$m: not built"$'\n'
		done
		for m in "${mods[@]}"; do
			[ -f "$OBJS/$m" ] || continue
			nm "$OBJS/$m" | sed -n 's/^[0-9a-f]* [A-Za-z] __export_symbol_//p'
		done | cat - "$LOGS/kernel-exports" | LC_ALL=C sort -u > "$LOGS/exports"
		for m in "${mods[@]}"; do
			o=$OBJS/$m
			[ -f "$o" ] || continue
			u=$(nm -u "$o" | awk '$2 != "__this_module" { print $2 }' | LC_ALL=C sort -u |
				LC_ALL=C comm -23 - "$LOGS/exports")
			[ -z "$u" ] || unres+="$m: undefined: ${u//$'\n'/ }"$'\n'
		done
		[ -z "$unres" ] || ok=0
	fi
	# kselftests: the programs the series has added so far.
	if [ $ok = 1 ] && [ ${#tests[@]} -gt 0 ]; then
		{
			echo "== headers_install"
			"${KM[@]}" headers_install 2>&1
			echo "== selftests: ${tests[*]##*/}"
			make -s -C "$AM/tools/testing/selftests/kvm" -j"$JOBS" \
				OUTPUT="$TESTS" KHDR_INCLUDES="-isystem $OBJS/usr/include" \
				LDFLAGS="-static -pthread -no-pie" "${tests[@]}" 2>&1 ||
				echo "XI-SERIES-BUILD-FAILED"
		} >> "$log"
		grep -q XI-SERIES-BUILD-FAILED "$log" && ok=0
		warn=$(grep -E '(warning|error):' "$log" | grep -F -f <(echo "$touched") || true)
		[ -z "$warn" ] || ok=0
	fi
	# kernel-doc on the headers and C files the patch adds (W=1 checks
	# only compiled .c files; the kernel's own files have their own
	# kernel-doc warnings, e.g. kvm_host.h).
	kdoc=$("${A[@]}" diff-tree --no-commit-id --name-only -r --diff-filter=A "$c" -- '*.h' '*.c' |
		grep -v '^tools/' || true)
	if [ -n "$kdoc" ]; then
		kd=$(cd "$AM" && echo "$kdoc" | xargs scripts/kernel-doc -none 2>&1)
		echo "== kernel-doc -none ${kdoc//$'\n'/ }" >> "$log"
		[ -z "$kd" ] || { echo "$kd" >> "$log"; warn+=$'\n'"$kd"; ok=0; }
	fi
	# A page the patch adds must be reachable from its directory's other
	# pages (a toctree entry or a :doc: link), or Sphinx warns about it.
	while IFS= read -r f; do
		[ -n "$f" ] || continue
		page=${f##*/}
		page=${page%.rst}
		if ! (cd "$AM/$(dirname "$f")" && grep -lw -e "$page" -- *.rst | grep -qvx "$page.rst"); then
			warn+=$'\n'"$f: in no toctree or :doc: link of $(dirname "$f")/"
			ok=0
		fi
	done < <("${A[@]}" diff-tree --no-commit-id --name-only -r --diff-filter=A "$c" -- 'Documentation/*.rst')
	secs=$(( $(date +%s) - t0 ))
	if [ $ok = 1 ]; then
		pass "$name: builds (W=1: ${dirs[*]}${tests[*]:+; kselftests: ${tests[*]##*/}}) in ${secs}s"
	else
		fail "$name: builds (W=1) in ${secs}s; see ${log#"$REPO"/}"
		[ -z "$warn" ] || echo "$warn" | sed '/^$/d; s/^/    /' | head -20
		[ -z "$unres" ] || echo "$unres" | sed '/^$/d; s/^/    /'
		grep -B5 XI-SERIES-BUILD-FAILED "$log" | grep -v XI-SERIES | sed 's/^/    /' | head -20
	fi
	if cp=$(cd "$AM" && scripts/checkpatch.pl --strict --no-tree --terse --show-types \
		--ignore "$CHECKPATCH_IGNORE" "$SERIES/$p" 2>&1); then
		echo "$cp" > "$LOGS/$name.checkpatch"
		pass "$name: checkpatch --strict"
	else
		echo "$cp" > "$LOGS/$name.checkpatch"
		fail "$name: checkpatch --strict"
		echo "$cp" | sed 's/^/    /' | head -20
	fi
done
"${A[@]}" checkout -q --detach "$end"
finish
