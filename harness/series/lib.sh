# Shared by the series scripts (sourced): a git with no user or system
# configuration, fixed identity and dates, so that the same inputs give
# the same series bytes.
# shellcheck shell=bash

export GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=kvm_xinterface-project
export GIT_AUTHOR_EMAIL=xinterface@localhost
export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME
export GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
# The base commit's date; patch N is dated N minutes later.
SERIES_EPOCH=1798761600		# 2027-01-01 00:00:00 UTC
export TZ=UTC
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE

g() { git -c gc.auto=0 -c core.abbrev=12 -c core.autocrlf=false \
	-c core.safecrlf=false -c advice.detachedHead=false "$@"; }

die() { echo "series: $*" >&2; exit 1; }

# base_repo BUILD SRC: make sure BUILD/series-git (bare) holds one commit,
# refs/heads/base, with exactly the files of the pristine source SRC.
# Made once (hashing 1.7 GB takes a minute or two); redone when SRC or
# its Makefile's mtime changes.
base_repo() {
	local src=$2 repo=$1/series-git key tree commit ver
	key="$src $(stat -c %Y "$src/Makefile")"
	if [ -f "$repo/xi-base-key" ] && [ "$(cat "$repo/xi-base-key")" = "$key" ] &&
	   g --git-dir="$repo" rev-parse -q --verify refs/heads/base >/dev/null; then
		return 0
	fi
	echo "  SERIES  base commit from $src (once)"
	rm -rf "$repo"
	g init -q --bare "$repo"
	GIT_INDEX_FILE=$repo/base.index g --git-dir="$repo" --work-tree="$src" \
		add -A -f .
	tree=$(GIT_INDEX_FILE=$repo/base.index g --git-dir="$repo" write-tree)
	rm -f "$repo/base.index"
	ver=$(awk '/^VERSION =/{v=$3} /^PATCHLEVEL =/{p=$3} /^SUBLEVEL =/{s=$3}
		END{print v "." p "." s}' "$src/Makefile")
	commit=$(GIT_AUTHOR_DATE="@$SERIES_EPOCH +0000" \
		GIT_COMMITTER_DATE="@$SERIES_EPOCH +0000" \
		g --git-dir="$repo" commit-tree "$tree" \
		-m "Linux $ver (pristine source, $(basename "$src"))")
	g --git-dir="$repo" update-ref refs/heads/base "$commit"
	echo "$key" > "$repo/xi-base-key"
}
