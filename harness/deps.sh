#!/bin/bash
# deps.sh [--no-install-recommends] PKG...: install the Debian packages
# that are missing; quiet when all are present.  As non-root, print the
# one command to run instead.  --no-install-recommends (make check-stock's
# packages): only what they depend on comes along.
opt=()
[ "${1:-}" != --no-install-recommends ] || { opt=("$1"); shift; }
missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing packages; as root run:"
	echo "  apt-get update && apt-get install -y ${opt[*]}${opt:+ }${missing[*]}"
	exit 1
fi
echo "  DEPS    installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null &&
	apt-get install -y -qq "${opt[@]}" "${missing[@]}" >/dev/null ||
	{ echo "apt-get install failed" >&2; exit 1; }
