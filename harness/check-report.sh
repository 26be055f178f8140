#!/bin/bash
# check-report.sh BUILD RC_DEBUG RC_KCSAN: make check's verdict over its
# two guest runs, the debug kernel (KASAN, lockdep) and the KCSAN kernel.
# Each run is parsed by parse-results.sh (the KCSAN one's tests prefixed
# "kcsan: "); the last line adds them up: "N passed, N failed[, N skipped]".
set -u
B=$1
H=$(dirname "$0")
p=0 f=0 s=0
one() {
	local out last
	out=$("$@")
	last=$(printf '%s\n' "$out" | tail -n 1)
	printf '%s\n' "$out" | sed '$d'
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
		p=$((p + BASH_REMATCH[1]))
		f=$((f + BASH_REMATCH[2]))
		s=$((s + ${BASH_REMATCH[4]:-0}))
	else
		echo "FAIL report: no summary line from $*"
		f=$((f + 1))
	fi
}
one "$H/parse-results.sh" "$B/results.log" "$B/console.log" "$2"
one env XI_PREFIX="kcsan: " "$H/parse-results.sh" "$B/results-kcsan.log" \
	"$B/console-kcsan.log" "$3"
if [ $s -gt 0 ]; then
	echo "$p passed, $f failed, $s skipped"
else
	echo "$p passed, $f failed"
fi
[ $f = 0 ]
