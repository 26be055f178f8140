#!/bin/bash
# report.sh BUILD QEMU_RC: make check-stock's verdict.  The checks made on
# the build machine (BUILD/stock/host.results: the DKMS install and
# remove, the consumer build, the struct kvm layout) and the stock guest's
# run (parse-results.sh on BUILD/stock/results.log and console.log, names
# prefixed "stock: ") add up to "N passed, N failed[, N skipped]"; the
# skips are listed with their reasons just before it.
set -u
B=$1
QRC=$2
S=$B/stock
H=$(dirname "$0")/..
p=0 f=0 s=0
if [ -s "$S/host.results" ]; then
	cat "$S/host.results"
	p=$(grep -c '^PASS' "$S/host.results")
	f=$(grep -c '^FAIL' "$S/host.results")
else
	echo "FAIL host: no results from harness/stock/dkms-build.sh"
	f=1
fi
# make check-stock removes the results first: none means no guest run
# (a step before it failed).
if [ -f "$S/results.log" ]; then
	out=$(XI_PREFIX="stock: " "$H/parse-results.sh" "$S/results.log" "$S/console.log" "$QRC")
else
	out=$(printf '%s\n' "FAIL stock: the stock guest did not run" "0 passed, 1 failed")
fi
last=$(printf '%s\n' "$out" | tail -n 1)
printf '%s\n' "$out" | sed '$d'
if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
	p=$((p + BASH_REMATCH[1]))
	f=$((f + BASH_REMATCH[2]))
	s=$((s + ${BASH_REMATCH[4]:-0}))
else
	echo "FAIL report: no summary line from parse-results.sh"
	f=$((f + 1))
fi
[ ! -s "$S/unselected" ] ||
	echo "not in the stock run (STOCK_SELECT): $(tr '\n' ' ' < "$S/unselected")"
if [ $s -gt 0 ]; then
	echo "skipped on the stock kernel:"
	printf '%s\n' "$out" | sed -n 's/^SKIP /  /p'
	echo "$p passed, $f failed, $s skipped"
else
	echo "$p passed, $f failed"
fi
[ $f = 0 ]
