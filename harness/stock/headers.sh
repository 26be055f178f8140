#!/bin/bash
# headers.sh RELEASE DIR: the kernel headers of a Debian release, unpacked
# (dpkg-deb -x) into DIR, not installed: linux-headers-RELEASE depends on
# linux-image-RELEASE, which apt would install on the build machine
# (/boot, update-initramfs) for nothing.  The three packages that make the
# headers (linux-headers-RELEASE, its -common and linux-kbuild) are
# fetched with apt-get download into DIR/deb; their other dependencies
# (the compiler, pahole, libraries) are installed, without Recommends.
# The headers' Makefile, which includes the -common one by its absolute
# /usr/src path, is pointed at the unpacked copy.  Prints nothing when
# DIR already holds RELEASE's headers.
#   DIR/usr/src/linux-headers-RELEASE   what DKMS gets as --kernelsourcedir
set -euo pipefail
REL=$1
DIR=$(realpath -m "$2")
H=$(cd "$(dirname "$0")/.." && pwd)
HDR=$DIR/usr/src/linux-headers-$REL
[ ! -f "$DIR/.done-$REL" ] || exit 0

pkg=linux-headers-$REL
apt-cache show --no-all-versions "$pkg" > /dev/null 2>&1 || apt-get update -qq
deps=$(apt-cache show --no-all-versions "$pkg" | sed -n 's/^Depends: //p' | tr ',' '\n')
# The headers of the release, the -common ones, the kbuild tools.
mapfile -t pkgs < <(echo "$pkg"; echo "$deps" |
	grep -o 'linux-\(headers-[^ ]*-common\|kbuild-[^ ]*\)' | sort -u)
[ ${#pkgs[@]} = 3 ] || { echo "headers.sh: $pkg: expected a -common and a kbuild package among '$deps'" >&2; exit 1; }
# What the tools need, less linux-* (the image, linux-base, the above).
# shellcheck disable=SC2046
"$H/deps.sh" --no-install-recommends $(apt-cache show --no-all-versions "${pkgs[@]}" |
	sed -n 's/^Depends: //p' | tr ',' '\n' | sed 's/([^)]*)//g; s/|.*//; s/ //g' |
	grep -v '^linux-' | sed '/^$/d' | sort -u)

rm -rf "$DIR"
mkdir -p "$DIR/deb"
echo "  STOCK   apt-get download ${pkgs[*]}"
if ! (cd "$DIR/deb" && apt-get download -q "${pkgs[@]}") > "$DIR/deb/download.log" 2>&1; then
	cat "$DIR/deb/download.log" >&2
	echo "headers.sh: apt-get download ${pkgs[*]} failed" >&2
	exit 1
fi
for p in "${pkgs[@]}"; do
	deb=("$DIR"/deb/"$p"_*.deb)
	[ -f "${deb[0]}" ] || { echo "headers.sh: no $p .deb after apt-get download" >&2; exit 1; }
	dpkg-deb -x "${deb[0]}" "$DIR"
done
common=$(sed -n 's|^include /usr/src/\(linux-headers-[^/]*\)/Makefile$|\1|p' "$HDR/Makefile")
if [ -z "$common" ] || [ ! -f "$DIR/usr/src/$common/Makefile" ]; then
	echo "headers.sh: $HDR/Makefile does not include a -common Makefile" >&2
	exit 1
fi
echo "include $DIR/usr/src/$common/Makefile" > "$HDR/Makefile"
[ -x "$HDR/scripts/mod/modpost" ] ||
	{ echo "headers.sh: no scripts/mod/modpost under $HDR (kbuild not unpacked?)" >&2; exit 1; }
touch "$DIR/.done-$REL"
echo "  STOCK   headers of $REL unpacked in $HDR"
