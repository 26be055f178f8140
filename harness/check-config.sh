#!/bin/bash
# check-config.sh FRAGMENT DOTCONFIG: every CONFIG_X=y/m of the fragment
# must be in .config with the same value; Kconfig silently drops options
# whose dependencies are missing, which would make the tests lie.
bad=0
while IFS= read -r l; do
	case "$l" in CONFIG_*=*) ;; *) continue ;; esac
	grep -qxF "$l" "$2" || { echo "config: $l did not take (see $2)" >&2; bad=1; }
done < "$1"
exit $bad
