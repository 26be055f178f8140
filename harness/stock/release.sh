#!/bin/bash
# release.sh: print the Debian kernel release that matches the installed
# linux-source-6.12, e.g. 6.12.117+deb12-amd64: the amd64 flavour of the
# linux-headers package built from the same source version.
set -euo pipefail
v=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null) ||
	{ echo "release.sh: linux-source-6.12 is not installed (make deps)" >&2; exit 1; }
up=${v%%-*}
# A fresh machine may have no package lists yet: fetch them once.
if [ -z "$(apt-cache pkgnames "linux-headers-$up+")" ] && [ "$(id -u)" = 0 ]; then
	apt-get update -qq >/dev/null
fi
for p in $(apt-cache pkgnames "linux-headers-$up+" | sort); do
	# linux-headers-<up>+<abi>-amd64, not -cloud-amd64, -rt-amd64, -common
	[[ $p =~ ^linux-headers-${up//./\\.}\+[a-z0-9.]+-amd64$ ]] || continue
	# ... of the same source version as linux-source-6.12.
	pv=$(apt-cache show --no-all-versions "$p" | sed -n 's/^Version: //p')
	[ "$pv" = "$v" ] || continue
	echo "${p#linux-headers-}"
	exit 0
done
echo "release.sh: no linux-headers-$up+*-amd64 package of version $v" >&2
exit 1
