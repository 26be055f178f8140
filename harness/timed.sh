#!/bin/bash
# timed.sh LABEL CMD...: run CMD, print what it is and how long it took.
label=$1
shift
echo "  START   $label"
t0=$(date +%s)
"$@"
rc=$?
status=
[ $rc = 0 ] || status=" (rc $rc)"
echo "  DONE    $label: $(( $(date +%s) - t0 ))s$status"
exit $rc
