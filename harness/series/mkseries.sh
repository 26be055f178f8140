#!/bin/bash
# mkseries.sh REPO BUILD: the kernel change as a git format-patch series.
#
# Commits, one per patch of harness/series/manifest, onto a base commit of
# the pristine source (BUILD/series-git, a bare repository made once from
# the source build/tree was copied from), then writes BUILD/series:
# 0000-cover-letter.patch and the numbered patches.  The inputs are the
# files harness/prepare-tree.sh uses: patches of patches/series (applied
# with git apply --cached) and the overlay files, read where the overlay
# reads them.  No work tree is checked out; author, committer and dates
# are fixed, so the same inputs give the same bytes.
set -euo pipefail

REPO=$1
BUILD=$2
# shellcheck source=harness/series/lib.sh
. "$REPO/harness/series/lib.sh"

MANIFEST=$REPO/harness/series/manifest
COVER=$REPO/harness/series/cover
GITREPO=$BUILD/series-git
# SERIES_OUT: write elsewhere (series-check regenerates to compare).
OUT=${SERIES_OUT:-$BUILD/series}
# SERIES_REF: the branch of build/series-git that gets the last commit.
REF=${SERIES_REF:-refs/heads/series}

[ -f "$BUILD/tree/.xi-source" ] || die "build/tree is not prepared: run make tree"
SRC=$(cat "$BUILD/tree/.xi-source")
base_repo "$BUILD" "$SRC"
G=(g --git-dir="$GITREPO")
base=$("${G[@]}" rev-parse refs/heads/base)

# The inputs, exactly as prepare-tree.sh takes them: its overlay
# directories (read from its own loop, not repeated here) and patches/series.
dirs=$(sed -n 's/^for d in \(.*\); do$/\1/p' "$REPO/harness/prepare-tree.sh")
[ -n "$dirs" ] || die "cannot find the overlay directories in harness/prepare-tree.sh"
declare -A owner=()
inputs=()
for d in $dirs; do
	[ -d "$REPO/$d" ] || continue
	while IFS= read -r f; do
		inputs+=("$f")
	done < <(cd "$REPO" && find "$d" -type f | LC_ALL=C sort)
done
mapfile -t series < <(grep -v '^\s*#' "$REPO/patches/series" | sed '/^\s*$/d')
for p in "${series[@]}"; do
	inputs+=("patches/$p")
done

# Parse the manifest into subjects, inputs and bodies.
subjects=() files=() bodies=()
n=-1
while IFS= read -r line || [ -n "$line" ]; do
	case $line in
	'=== '*)
		n=$((n + 1))
		subjects[n]=${line#=== }
		files[n]=
		bodies[n]=
		;;
	'+ '*)
		[ $n -ge 0 ] || die "manifest: input before the first === line: $line"
		pat=${line#+ }
		hit=0
		for f in "${inputs[@]}"; do
			# shellcheck disable=SC2053
			[[ $f == $pat ]] || continue
			[ -z "${owner[$f]:-}" ] ||
				die "manifest: $f is in patch $((owner[$f])) and in patch $((n + 1))"
			owner[$f]=$((n + 1))
			files[n]+="$f"$'\n'
			hit=1
		done
		[ $hit = 1 ] || die "manifest: '$pat' (patch $((n + 1))) matches no overlay file and no patch of patches/series"
		;;
	'#'*)
		[ $n -lt 0 ] || bodies[n]+="$line"$'\n'
		;;
	*)
		[ $n -lt 0 ] || bodies[n]+="$line"$'\n'
		;;
	esac
done < "$MANIFEST"
[ $n -ge 0 ] || die "manifest: no patch"
missing=0
for f in "${inputs[@]}"; do
	if [ -z "${owner[$f]:-}" ]; then
		echo "series: $f is in the tree (overlay or patches/series) but in no patch of harness/series/manifest" >&2
		missing=1
	fi
done
[ $missing = 0 ] || die "add each file above to a patch of harness/series/manifest"

# One commit per patch, built in a private index.
export GIT_INDEX_FILE=$GITREPO/series.index
"${G[@]}" read-tree "$base"
parent=$base
for ((i = 0; i <= n; i++)); do
	while IFS= read -r f; do
		[ -n "$f" ] || continue
		case $f in
		patches/*)
			"${G[@]}" apply --cached --whitespace=nowarn "$REPO/$f" ||
				die "patch $((i + 1)): $f does not apply with git apply"
			;;
		*)
			mode=100644
			[ -x "$REPO/$f" ] && mode=100755
			obj=$("${G[@]}" hash-object -w -- "$REPO/$f")
			"${G[@]}" update-index --add --cacheinfo "$mode,$obj,$f"
			;;
		esac
	done <<< "${files[i]}"
	tree=$("${G[@]}" write-tree)
	[ "$tree" != "$("${G[@]}" rev-parse "$parent^{tree}")" ] ||
		die "patch $((i + 1)) (${subjects[i]}) changes nothing"
	# The body without leading and trailing blank lines.
	body=$(printf '%s' "${bodies[i]}" | sed -e '/./,$!d' | sed -e ':a' -e '/^\n*$/{$d;N;ba' -e '}')
	date="@$((SERIES_EPOCH + 60 * (i + 1))) +0000"
	parent=$(printf '%s\n\n%s\n\nSigned-off-by: %s <%s>\n' "${subjects[i]}" \
		"$body" "$GIT_AUTHOR_NAME" "$GIT_AUTHOR_EMAIL" |
		GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date \
		"${G[@]}" commit-tree "$tree" -p "$parent" -F -)
done
"${G[@]}" update-ref "$REF" "$parent"
unset GIT_INDEX_FILE

# The series, with the cover letter's subject and text from harness/series/cover.
rm -rf "$OUT.tmp"
# No --base: the base commit exists only in build/series-git (it is the
# Debian source as unpacked, not an upstream commit); the cover letter
# names the source instead (@BASE@).
"${G[@]}" format-patch -q --cover-letter -o "$OUT.tmp" \
	"$base..$parent"
cover_subject=$(head -n 1 "$COVER")
cover_body=$(tail -n +3 "$COVER" |
	sed "s|@BASE@|$("${G[@]}" log -1 --format=%s "$base")|")
# git dates the cover letter now: give it the last patch's date instead.
cover_date=$("${G[@]}" log -1 --format=%aD "$parent")
cl=$OUT.tmp/0000-cover-letter.patch
awk -v subj="$cover_subject" -v body="$cover_body" -v date="$cover_date" '
	!d && /^Date: / { print "Date: " date; d = 1; next }
	/\*\*\* SUBJECT HERE \*\*\*/ { sub(/\*\*\* SUBJECT HERE \*\*\*/, subj) }
	/^\*\*\* BLURB HERE \*\*\*$/ { print body; next }
	{ print }' "$cl" > "$cl.new"
mv "$cl.new" "$cl"
grep -q '\*\*\*' "$cl" && die "cover letter still has a placeholder"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "  SERIES  $((n + 1)) patches and a cover letter in ${OUT#"$REPO"/}"
