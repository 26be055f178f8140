#!/bin/bash
# Turn the two guest runs of `make bench` into build/bench.txt (the
# report), build/bench.json and build/bench-icount.json (every row),
# build/bench-icount.counts (instructions per call of every row, the
# format of harness/bench-icount.ref), build/xinterface-bench.rst (the
# documentation page) and build/bench-summary.md (the README's lines);
# print the report and fail when a run was not clean.
#
#   bench-report.sh BUILD WALL_QEMU_RC ICOUNT_QEMU_RC
#
# Each run is judged by parse-results.sh first (the guest reached its
# end, QEMU exited cleanly, every program exited 0, no splat in the
# kernel log).  The guest prints tables, goals, counts and JSON between
# XI-BENCH-*-BEGIN/END lines, and the sample's workers as XI-SAMPLE-BENCH
# lines.  make bench-record copies the counts, the page and the summary
# into the repository.
set -u
BUILD=$1
WRC=${2:-0}
IRC=${3:-0}
H=$(dirname "$0")
REF=$H/bench-icount.ref
WRES=$BUILD/results-bench.log
IRES=$BUILD/results-icount.log

section() {	# FILE NAME
	sed -n "/^XI-BENCH-$2-BEGIN\$/,/^XI-BENCH-$2-END\$/p" "$1" | sed '1d;$d'
}

rc=0
wcheck=$(XI_PREFIX=wall/ "$H/parse-results.sh" "$WRES" "$BUILD/console-bench.log" "$WRC" 2>&1) || rc=1
icheck=$(XI_PREFIX=icount/ "$H/parse-results.sh" "$IRES" "$BUILD/console-icount.log" "$IRC" 2>&1) || rc=1

section "$WRES" JSON > "$BUILD/bench.json"
section "$IRES" JSON > "$BUILD/bench-icount.json"
section "$IRES" COUNTS > "$BUILD/bench-icount.counts"
for f in bench.json bench-icount.json bench-icount.counts; do
	if [ ! -s "$BUILD/$f" ]; then
		echo "FAIL bench: no output for $f"
		rc=1
	elif [ "${f##*.}" = json ] && command -v python3 >/dev/null &&
	     ! python3 -m json.tool "$BUILD/$f" >/dev/null; then
		echo "FAIL bench: $BUILD/$f is not valid JSON"
		rc=1
	fi
done

kernel=$(sed -n 's/.*"kernel": "\([^"]*\)".*/\1/p' "$BUILD/bench-icount.json" | head -1)
# The change of every count against the recorded one.
change() {
	[ -s "$REF" ] || { echo "(no recorded counts: $REF; make bench-record records these)"; return; }
	awk -v ref_name="$(basename "$REF")" '
	NR == FNR { if ($1 !~ /^#/ && NF == 2) ref[$1] = $2; next }
	{
		n++
		if (!($1 in ref)) { new++; next }
		seen[$1] = 1
		d = ($2 - ref[$1]) / ref[$1] * 100
		if (d > 0.5 || d < -0.5) {
			ch++
			printf "  %-72s %9.0f -> %9.0f  %+6.1f%%\n", $1, ref[$1], $2, d
		}
		if (d > max) max = d
		if (d < min) min = d
	}
	END {
		for (k in ref) if (!(k in seen)) gone++
		printf "%d rows: %d within 0.5%% of %s, %d changed (largest %+.1f%%, %+.1f%%), %d new, %d recorded but not measured\n",
		       n, n - ch - new, ref_name, ch + 0, min, max, new + 0, gone + 0
	}' "$REF" "$BUILD/bench-icount.counts"
}

goal_line() {	# FILE PATTERN: the status and value of one goal
	grep -F -- "$2" "$1" | head -1 | awk '{print $1, $NF}'
}

{
	echo "# make bench, $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(nproc) CPUs," \
		"$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown OS}")"
	echo "# kernel: ${kernel:-?}, production config (harness/prod.config: the" \
		"debug fragment without its debug blocks, plus Debian's settings)"
	echo
	echo "## 1. Instructions (QEMU TCG, -icount shift=0,sleep=off, 1 vCPU)"
	echo "# instr/op: guest instructions per operation (guest ns under icount);" \
		"two boots of one build agree within 0.5% on all rows but memcpy 64 B (up to 4.4%, buffer alignment)"
	section "$IRES" ICOUNT
	echo
	echo "## Per path: instructions of a call at each size; 8B-user: the 8-byte call" \
		"minus copy_{from,to}_user's from the VMM; instr/B: slope 4K..64K"
	section "$IRES" OVERHEAD
	echo
	echo "## Goals of issue 14 (instructions; MET / NOT, measured ratio)"
	section "$IRES" GOALS
	echo
	echo "## The sample's workers (xinterface_sample -B, 512-byte requests;" \
		"ns/req = instructions per request, guest and host together)"
	grep '^XI-SAMPLE-BENCH' "$IRES" | sed 's/^XI-SAMPLE-BENCH /  /'
	echo
	echo "## Change against the recorded counts ($REF)"
	change
	echo
	echo "## 2. Wall time (QEMU TCG, multi-threaded, 2 vCPUs; noisy on a shared host)"
	echo "# ns/op: median over batches (p10, p90 beside it), per thread;" \
		"GB/s: all threads; xMemcpy: memcpy time / row time;" \
		"xKvmRd: row time / kvm_read_guest time"
	section "$WRES" TABLE
	echo
	echo "## Goals of issue 6 (wall time)"
	section "$WRES" GOALS
	echo
	echo "## The sample's workers, wall time"
	grep '^XI-SAMPLE-BENCH' "$WRES" | sed 's/^XI-SAMPLE-BENCH /  /'
} > "$BUILD/bench.txt"

# The README's lines: the headline ratios of this run.
ig=$(section "$IRES" GOALS)
{
	echo "$ig" | awk -v k="$kernel" '/^(MET|NOT) / {n++; if ($1 == "MET") m++}
		END {printf "Latest `make bench` (%s, production config, instruction counts): %d of %d goals met.\n", k, m, n}'
	echo "$ig" | grep -E '^(MET|NOT) +(64B copy_from in a use_mm|64B kthread mm switch|vmap 64B read|copyv 8|sg build \+ free, 8 single-page ranges, read|301 vs 1 memslots, 64B copy_from \+cache \(vmm\))' |
		sed -E 's/ +/ /g; s/^/- /'
	grep '^XI-SAMPLE-BENCH' "$IRES" | awk '{printf "- sample worker %s: %s instructions per 512-byte request\n", substr($2, 6), substr($NF, 12)}'
} > "$BUILD/bench-summary.md"

# The documentation page: the method, then this run's report.
{
	cat "$H/bench-page.rst"
	echo
	echo "Latest results"
	echo "=============="
	echo
	echo "Generated by \`\`make bench\`\` and copied here by \`\`make bench-record\`\`;"
	echo "the recorded counts are \`\`harness/bench-icount.ref\`\` from the same run."
	echo
	echo "::"
	echo
	sed 's/^/  /; s/[[:space:]]*$//' "$BUILD/bench.txt"
} > "$BUILD/xinterface-bench.rst"

cat "$BUILD/bench.txt"
echo
echo "$wcheck" | grep -vE '^PASS '
echo "$icheck" | grep -vE '^PASS '
echo "report: $BUILD/bench.txt  json: $BUILD/bench.json $BUILD/bench-icount.json"
echo "page: $BUILD/xinterface-bench.rst  (make bench-record puts it, the counts and the README summary in the repository)"
exit $rc
