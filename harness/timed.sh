#!/bin/bash
# timed.sh LABEL CMD...: run CMD, print what it is and how long it took.
label=$1
shift
echo "  START   $label"
t0=$(date +%s)
"$@"
rc=$?
echo "  DONE    $label: $(( $(date +%s) - t0 ))s${rc:+ (rc $rc)}" | sed 's/ (rc 0)//'
exit $rc
