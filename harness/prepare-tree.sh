#!/bin/bash
# Prepare the kernel tree the harness builds: a copy of the pristine 6.12
# source with the project's patch series applied and its files laid over it.
#
#   prepare-tree.sh REPO BUILD [KSRC]
#
# The pristine source is Debian's linux-source-6.12 tarball, unpacked once
# into BUILD/src, or the 6.12.y tree named by KSRC.  The working copy is
# BUILD/tree.  Patches are applied idempotently: the applied series is
# recorded in BUILD/tree/.xi-applied, and when the wanted series differs,
# only the patches after the common prefix are reverted and re-applied.
# Overlay files are copied only when their content changed, so kbuild
# rebuilds only what changed.
set -euo pipefail

REPO=$1
BUILD=$2
KSRC=${3:-}
TARBALL=/usr/src/linux-source-6.12.tar.xz
TREE=$BUILD/tree
APPLIED=$TREE/.xi-applied

say() { echo "  TREE    $*"; }

if [ -n "$KSRC" ]; then
	SRC=$(cd "$KSRC" && pwd)
	grep -q '^PATCHLEVEL = 12$' "$SRC/Makefile" ||
		{ echo "KSRC=$SRC is not a 6.12 tree" >&2; exit 1; }
else
	SRC=$BUILD/src/linux-source-6.12
	if [ ! -f "$BUILD/src/.unpacked" ]; then
		[ -f "$TARBALL" ] || { echo "$TARBALL missing: run make deps" >&2; exit 1; }
		say "unpacking $TARBALL"
		rm -rf "$BUILD/src"
		mkdir -p "$BUILD/src"
		tar -C "$BUILD/src" -xf "$TARBALL"
		touch "$BUILD/src/.unpacked"
	fi
fi

if [ ! -f "$TREE/.xi-source" ] || [ "$(cat "$TREE/.xi-source")" != "$SRC" ]; then
	say "copying $SRC"
	rm -rf "$TREE" "$BUILD/obj"
	mkdir -p "$TREE"
	cp -a "$SRC/." "$TREE/"
	: > "$APPLIED"
	echo "$SRC" > "$TREE/.xi-source"
fi

# Wanted series: patches/series lists the patch files in order.
mapfile -t want < <(grep -v '^\s*#' "$REPO/patches/series" 2>/dev/null | sed '/^\s*$/d')
mapfile -t have < "$APPLIED"
mkdir -p "$TREE/.xi-patches"

# Length of the common prefix (same name and same content).
n=0
while [ $n -lt ${#have[@]} ] && [ $n -lt ${#want[@]} ] &&
      [ "${have[$n]}" = "${want[$n]}" ] &&
      cmp -s "$TREE/.xi-patches/${have[$n]}" "$REPO/patches/${want[$n]}"; do
	n=$((n + 1))
done

# Revert what was applied past the prefix, newest first.
for ((i = ${#have[@]} - 1; i >= n; i--)); do
	p=${have[$i]}
	say "reverting $p"
	patch -d "$TREE" -p1 -R -s < "$TREE/.xi-patches/$p" ||
		{ echo "cannot revert $p; remove $TREE to start over" >&2; exit 1; }
	rm -f "$TREE/.xi-patches/$p"
	printf '%s\n' "${have[@]:0:$i}" | sed '/^$/d' > "$APPLIED"
done

for ((i = n; i < ${#want[@]}; i++)); do
	p=${want[$i]}
	if ! out=$(patch -d "$TREE" -p1 --dry-run -N < "$REPO/patches/$p" 2>&1); then
		echo "patch $p does not apply to $SRC:" >&2
		echo "$out" | grep -E 'patching file|FAILED|failed|not found|Reversed' >&2
		exit 1
	fi
	say "applying $p"
	patch -d "$TREE" -p1 -s -N < "$REPO/patches/$p"
	cp "$REPO/patches/$p" "$TREE/.xi-patches/$p"
	echo "$p" >> "$APPLIED"
done

# Overlay: the project's files at their kernel paths.
for d in virt include samples tools Documentation lib arch mm; do
	[ -d "$REPO/$d" ] || continue
	rsync -rc "$REPO/$d/" "$TREE/$d/"
done
