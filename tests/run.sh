#!/usr/bin/env bash
# Run each test program given; print its output, then one closing tally line.
# Every program must pass: a host that lacks what a test needs fails it (nothing is skipped).
set -u
export CMOCKA_MESSAGE_OUTPUT=${CMOCKA_MESSAGE_OUTPUT:-STDOUT}
passed=0 failed=0 failed_names=()
for t in "$@"; do
	[ -x "$t" ] || { echo "missing test program: $t"; failed=$((failed + 1)); failed_names+=("$t"); continue; }
	echo "== $t"
	"$t"
	rc=$?
	case $rc in
	0) passed=$((passed + 1)) ;;
	*) failed=$((failed + 1)); failed_names+=("$t (exit $rc)") ;;
	esac
done
for f in "${failed_names[@]+"${failed_names[@]}"}"; do echo "FAILED: $f"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
