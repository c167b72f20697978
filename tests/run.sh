#!/usr/bin/env bash
# Run each test program given; print its output, then one closing tally line.
# Exit status 77 from a program means "skipped: the host lacks a facility" and is reported by name.
set -u
export CMOCKA_MESSAGE_OUTPUT=${CMOCKA_MESSAGE_OUTPUT:-STDOUT}
passed=0 failed=0 skipped=0 failed_names=() skipped_names=()
for t in "$@"; do
	[ -x "$t" ] || { echo "missing test program: $t"; failed=$((failed + 1)); failed_names+=("$t"); continue; }
	echo "== $t"
	"$t"
	rc=$?
	case $rc in
	0) passed=$((passed + 1)) ;;
	77) skipped=$((skipped + 1)); skipped_names+=("$t") ;;
	*) failed=$((failed + 1)); failed_names+=("$t (exit $rc)") ;;
	esac
done
for s in "${skipped_names[@]+"${skipped_names[@]}"}"; do echo "SKIPPED: $s"; done
for f in "${failed_names[@]+"${failed_names[@]}"}"; do echo "FAILED: $f"; done
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
