#!/bin/bash
# Turn a `make bench` guest run into build/bench.txt and build/bench.json,
# print the table, and fail when the run was not clean.
#
#   bench-report.sh BUILD QEMU_RC
#
# The run is judged by parse-results.sh first (the guest reached its end,
# QEMU exited cleanly, the benchmark exited 0, no splat in the kernel
# log); the numbers are only reported from a clean run.  The guest prints
# the table, the goals and the JSON between XI-BENCH-*-BEGIN/END lines.
set -u
BUILD=$1
QRC=${2:-0}
RES=$BUILD/results.log
CON=$BUILD/console.log
H=$(dirname "$0")

section() {
	sed -n "/^XI-BENCH-$1-BEGIN\$/,/^XI-BENCH-$1-END\$/p" "$RES" | sed '1d;$d'
}

check=$("$H/parse-results.sh" "$RES" "$CON" "$QRC" 2>&1)
rc=$?

table=$(section TABLE)
goals=$(section GOALS)
section JSON > "$BUILD/bench.json"
if [ -z "$table" ] || [ ! -s "$BUILD/bench.json" ]; then
	echo "FAIL bench: no table or no JSON in $RES"
	rc=1
elif command -v python3 >/dev/null &&
     ! python3 -m json.tool "$BUILD/bench.json" >/dev/null; then
	echo "FAIL bench: $BUILD/bench.json is not valid JSON"
	rc=1
fi

{
	echo "# make bench, $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) CPUs," \
		"$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown OS}");" \
		"guest: $(sed -n 's/.*accel=\([a-z]*\).*/\1/p' "$BUILD/bench.qemu" 2>/dev/null || echo tcg)" \
		"-cpu max, 2 vCPUs, debug kernel (KASAN, lockdep)"
	echo "# ns/op: median over batches (p10, p90 beside it), per thread;" \
		"GB/s: all threads;"
	echo "# xMemcpy: memcpy time / row time (throughput relative to memcpy," \
		"same size and direction); xKvmRd: row time / kvm_read_guest time" \
		"(same size, 1 memslot)"
	echo "$table"
	echo
	echo "# goals of issue 6 (MET / NOT, measured value)"
	echo "$goals"
} > "$BUILD/bench.txt"

cat "$BUILD/bench.txt"
echo
echo "$check" | grep -vE '^PASS '
echo "table: $BUILD/bench.txt  json: $BUILD/bench.json"
exit $rc
