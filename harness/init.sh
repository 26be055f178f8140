#!/bin/busybox sh
# /init of the test initramfs.  Kernel messages go to ttyS0 (the console
# log); test output goes to ttyS1 (the results log) between markers that
# parse-results.sh reads:
#   XI-BEGIN name / ...TAP or text... / XI-END name rc / XI-DONE
# The mode comes from the kernel command line: xi.mode=check|kcsan|run|run-sample|bench|bench-icount.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ulimit -n 8192

R=/dev/ttyS1
stty -F $R raw -echo 2>/dev/null
mode=$(sed -n 's/.*xi\.mode=\([a-z-]*\).*/\1/p' /proc/cmdline)
args=$(sed -n 's/.*xi\.args=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' ')
echo "xi-init: mode=$mode"

# timed STATUSFILE TIMEOUT CMD...: run CMD under a timeout; write
# "rc start end" (seconds since boot) to STATUSFILE.
timed() {
	st=$1; secs=$2; shift 2
	t0=$(cut -d' ' -f1 /proc/uptime)
	timeout -s KILL "$secs" "$@"
	echo "$? $t0 $(cut -d' ' -f1 /proc/uptime)" > "$st"
}

# run NAME TIMEOUT CMD...: one test, its output streamed to the results.
run() {
	name=$1; secs=$2; shift 2
	echo "xi-init: running $name"
	echo "XI-BEGIN $name" > $R
	timed /tmp/run.st "$secs" "$@" > $R 2>&1
	echo "XI-END $name $(cat /tmp/run.st)" > $R
}

# Loading the modules is a test of its own: the KUnit suites in them run
# at load time and print KTAP on the console.
for m in irqbypass kvm kvm-amd; do
	run "modules/insmod-$m" 300 insmod /lib/modules/$m.ko
done
# Test modules, and the sample back-end (xi_*.ko, samples/kvm/xinterface).
for m in /lib/modules/test_*.ko /lib/modules/xi_*.ko; do
	[ -e "$m" ] || continue
	run "modules/insmod-$(basename $m .ko)" 300 insmod "$m"
done

# The KCSAN kernel ignores reports in a short, documented list of core
# kernel functions (harness/kcsan-ignore.list); every other report counts.
if [ "$mode" = kcsan ] && [ -w /sys/kernel/debug/kcsan ]; then
	grep -v '^#' /tests/kcsan-ignore.list | while read -r f; do
		[ -n "$f" ] && echo "!$f" > /sys/kernel/debug/kcsan
	done
	echo "xi-init: KCSAN ignores: $(grep -v '^#' /tests/kcsan-ignore.list | tr '\n' ' ')"
fi

case "$mode" in
check)	list=/tests/check.list ;;
kcsan)	list=/tests/kcsan.list ;;
run)	list=/tests/run.list ;;
run-sample)	list=/tests/run-sample.list ;;
bench)	list=/tests/bench.list ;;
bench-icount)	list=/tests/bench-icount.list ;;
*)	list=/dev/null ;;
esac
# run_bg NAME TIMEOUT CMD...: like run, in the background; its output is
# kept in /tmp/par.N and emitted as a block by par_end.
npar=0
run_bg() {
	name=$1; secs=$2; shift 2
	npar=$((npar + 1))
	echo "xi-init: starting $name"
	echo "$name" > /tmp/par.$npar.name
	echo "$secs $*" > /tmp/par.$npar.cmd
	timed /tmp/par.$npar.rc "$secs" "$@" > /tmp/par.$npar.out 2>&1 &
}
# An upstream test that fails in the concurrent set runs once more, alone.
# Under TCG's nested SVM some of them fail rarely with a guest SHUTDOWN
# that is not ours (seen once in memslot_modification_stress_test).  The
# first run's output is kept as comments after an XI-RETRY line, and
# parse-results.sh reports the retry; the second run decides.
retry() {
	i=$1
	rc=$(cut -d' ' -f1 /tmp/par.$i.rc 2>/dev/null || echo 255)
	case "$(cat /tmp/par.$i.name)" in upstream/*) ;; *) return ;; esac
	[ "$rc" = 0 ] || [ "$rc" = 4 ] && return
	echo "xi-init: retrying $(cat /tmp/par.$i.name) (exit code $rc)"
	sed 's/^/# first run: /' /tmp/par.$i.out > /tmp/par.$i.first
	# shellcheck disable=SC2046
	timed /tmp/par.$i.rc "$(cut -d' ' -f1 /tmp/par.$i.cmd)" \
		$(cut -d' ' -f2- /tmp/par.$i.cmd) > /tmp/par.$i.out 2>&1
	{ echo "XI-RETRY $rc"; cat /tmp/par.$i.first /tmp/par.$i.out; } \
		> /tmp/par.$i.both
	mv /tmp/par.$i.both /tmp/par.$i.out
}
par_end() {
	wait
	i=1
	while [ $i -le $npar ]; do
		retry $i
		i=$((i + 1))
	done
	i=1
	while [ $i -le $npar ]; do
		name=$(cat /tmp/par.$i.name)
		echo "XI-BEGIN $name" > $R
		cat /tmp/par.$i.out > $R
		echo "XI-END $name $(cat /tmp/par.$i.rc 2>/dev/null || echo 255)" > $R
		rm -f /tmp/par.$i.*
		i=$((i + 1))
	done
	npar=0
}

# Each line: NAME TIMEOUT COMMAND [ARGS...].  Lines between PARALLEL and
# END run concurrently (the guest has 2 vCPUs); their output is reported
# in list order once all of them finished.
par=0
while read -r name secs cmd rest; do
	case "$name" in
	''|'#'*) continue ;;
	PARALLEL) par=1; continue ;;
	END) par_end; par=0; continue ;;
	esac
	# shellcheck disable=SC2086
	if [ $par = 1 ]; then
		run_bg "$name" "$secs" /tests/$cmd $rest $args
	else
		run "$name" "$secs" /tests/$cmd $rest $args
	fi
done < $list
[ $par = 1 ] && par_end

# Unloading is checked too: every module must go, in reverse order.
if [ "$mode" = check ] || [ "$mode" = kcsan ]; then
	for m in $(ls -r /lib/modules/test_*.ko /lib/modules/xi_*.ko 2>/dev/null) kvm-amd kvm irqbypass; do
		m=$(basename $m .ko | tr - _)
		run "modules/rmmod-$m" 120 rmmod $m
	done
fi
echo "XI-DONE" > $R
sync
echo "xi-init: done"
reboot -f
