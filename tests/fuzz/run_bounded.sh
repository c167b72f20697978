#!/usr/bin/env bash
# Run every libFuzzer binary under BUILD/tests/fuzz/ for SECONDS each, starting from a scratch
# copy of its seed corpus (the repository is never modified). Fails on the first crash, leak or
# timeout and prints the reproducer's path; keep it by adding it to tests/fuzz/corpus/<input>/.
# usage: tests/fuzz/run_bounded.sh BUILD_DIR [SECONDS]
set -u
build=${1:?usage: run_bounded.sh BUILD_DIR [SECONDS]}
secs=${2:-30}
cd "$(dirname "$0")/../.."
shopt -s nullglob
bins=("$build"/tests/fuzz/fuzz_*)
bins=($(for b in "${bins[@]}"; do [[ -x $b && $b != *.o && $b != *.d ]] && echo "$b"; done))
if [ ${#bins[@]} -eq 0 ]; then
	echo "fuzz: no fuzzers in $build/tests/fuzz (run make MODE=fuzz fuzz)" >&2
	exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for bin in "${bins[@]}"; do
	name=${bin##*/fuzz_}
	corpus=$work/corpus-$name
	art=$work/artifacts-$name
	mkdir -p "$corpus" "$art"
	if [ -d "tests/fuzz/corpus/$name" ]; then
		cp -r "tests/fuzz/corpus/$name/." "$corpus/"
	fi
	log=$work/$name.log
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$art/" "$corpus" >"$log" 2>&1
	rc=$?
	runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
	if [ $rc -ne 0 ]; then
		failed=$((failed + 1))
		echo "fuzz: $name FAILED (exit $rc) after ${runs:-?} runs"
		tail -n 40 "$log"
		for a in "$art"/*; do
			keep=/tmp/shiftadd-fuzz-$name-$(basename "$a")
			cp "$a" "$keep"
			echo "fuzz: reproducer saved as $keep"
		done
	else
		echo "fuzz: $name ok, ${runs:-?} runs in ${secs}s"
	fi
done
[ $failed -eq 0 ]
