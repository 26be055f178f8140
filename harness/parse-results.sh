#!/bin/bash
# Turn one guest run into one line per test and "N passed, N failed".
#
#   parse-results.sh RESULTS_LOG CONSOLE_LOG QEMU_RC
#
# XI_PREFIX, if set, is put before every test name (one run of several).
#
# Tests come from two places:
#  - RESULTS_LOG (the guest's ttyS1): blocks "XI-BEGIN name" ... "XI-END
#    name rc".  A block holding TAP lines ("ok N desc", "not ok N desc")
#    gives one test per TAP line; a block without TAP is one test judged by
#    its exit code (0 pass, 4 = KSFT_SKIP skip, else fail).  A non-zero,
#    non-skip exit code fails the block even when its TAP lines passed.
#  - CONSOLE_LOG: KUnit's KTAP ("# Subtest: suite", indented "ok N case").
# The run fails when any test fails, when the guest never printed XI-DONE
# (hang, crash, timeout), when QEMU did not exit cleanly, or when the
# kernel log holds a splat; each of these is one failed test in the count.
set -u
RES=$1
CON=$2
QRC=${3:-0}

# Splats: any of these in the kernel log fails the run.
SPLAT='WARNING:|BUG:|Oops|Kernel panic|cut here|general protection fault|detected stall|self-detected stall|sleeping function called from invalid context|UBSAN:|possible circular locking|inconsistent lock state|refcount_t:|Call Trace:'
SPLAT_LINES=$(grep -nE "$SPLAT" "$CON" | head -20)
export SPLAT_LINES

awk -v qrc="$QRC" '
function report(st, name) {
	printf "%-4s %s%s\n", st, ENVIRON["XI_PREFIX"], name
	if (st == "PASS") pass++; else if (st == "SKIP") skip++; else fail++
}
function tap(line, prefix,    st, d) {
	st = "PASS"
	if (line ~ /^not ok/) { st = "FAIL"; sub(/^not ok [0-9]+ ?-? ?/, "", line) }
	else sub(/^ok [0-9]+ ?-? ?/, "", line)
	if (line ~ /# *[Ss][Kk][Ii][Pp]/) st = "SKIP"
	d = line; sub(/ *# *[Ss][Kk][Ii][Pp].*/, "", d)
	# kselftest.h puts the description of a skip after "# SKIP".
	if (d == "" && st == "SKIP") { d = line; sub(/^# *[Ss][Kk][Ii][Pp] */, "", d) }
	if (d == "") d = "#" (++anon)
	report(st, prefix ": " d)
	return st
}
FNR == 1 { file++ }
# ---- results log ----
file == 1 && /^XI-BEGIN / { cur = $2; ntap = 0; nfail = 0; inblk = 1; next }
file == 1 && /^XI-END / {
	if ($3 == 0 && ntap == 0) report("PASS", $2)
	else if ($3 == 4 && nfail == 0) { if (ntap == 0) report("SKIP", $2) }
	else if ($3 == 137) report("FAIL", $2 ": killed by the per-test timeout")
	else if ($3 != 0 && nfail == 0) report("FAIL", $2 ": exit code " $3)
	if ($5 != "" && $4 != "") times = times sprintf("  %7.1fs  %s\n", $5 - $4, $2)
	inblk = 0; cur = ""; next
}
file == 1 && /^XI-DONE/ { done = 1; next }
file == 1 && inblk && /^XI-RETRY / { retried[cur] = $2; next }
file == 1 && inblk && /^(not )?ok [0-9]+/ {
	ntap++
	if (tap($0, cur) == "FAIL") nfail++
	next
}
# ---- console log: KUnit KTAP ----
file == 2 {
	line = $0
	sub(/\r$/, "", line)
	sub(/^\[ *[0-9.]+\] /, "", line)
	if (line ~ /^    # Subtest: /) { suite = line; sub(/^    # Subtest: /, "", suite); ncase = 0; cfail = 0; next }
	if (suite != "" && line ~ /^    (not )?ok [0-9]+ /) {
		l = line; sub(/^    /, "", l)
		ncase++
		if (tap(l, "kunit: " suite) == "FAIL") cfail++
		next
	}
	if (suite != "" && line ~ /^(not )?ok [0-9]+ /) {
		if (line ~ /^not ok/ && cfail == 0) report("FAIL", "kunit: " suite ": suite failed")
		if (ncase == 0 && line ~ /^ok/) report("PASS", "kunit: " suite)
		suite = ""
		next
	}
}
END {
	if (cur != "") report("FAIL", cur ": did not finish (guest hung or crashed)")
	if (!done) report("FAIL", "guest: did not reach the end of its tests")
	if (ENVIRON["SPLAT_LINES"] != "") {
		report("FAIL", "kernel log: splat found:")
		n = split(ENVIRON["SPLAT_LINES"], sl, "\n")
		for (i = 1; i <= n; i++) print "     " sl[i]
	}
	if (qrc != 0) report("FAIL", "qemu: exit code " qrc " (137: killed by the hard timeout)")
	if (times != "") printf "time per test:\n%s", times > "/dev/stderr"
	if (fail) {
		print "---- last lines of the console (" ARGV[2] ") ----"
		while ((getline l2 < ARGV[2]) > 0) tail[++nl] = l2
		for (i = (nl > 25 ? nl - 24 : 1); i <= nl; i++) print tail[i]
		print "---- full console log: " ARGV[2]
		print "---- results log: " ARGV[1]
	}
	for (n in retried)
		printf "RETRY %s: the first run failed (exit code %s); run again alone (first output kept in %s)\n", n, retried[n], ARGV[1]
	printf "%d passed, %d failed", pass, fail
	if (skip) printf ", %d skipped", skip
	printf "\n"
	exit fail ? 1 : 0
}
' "$RES" "$CON"
