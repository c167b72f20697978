#!/usr/bin/env bash
# `make bench`: every benchmark, results under bench/results/ (modules append their part).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release}
date=$(date +%F)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
mkdir -p bench/results

# Kernels: shift-add LUT gemv/gemm vs OpenBLAS and the measured read-bandwidth roofline.
"$B/bin/bench-kernels" --commit "$commit" --cmd "make bench (bench/run.sh)" \
	--json "bench/results/kernels-$date.json" --md "bench/results/kernels-$date.md"

# Serving: shiftaddd + shiftadd-bench sweeps (fake backend: daemon and IPC cost, empty-request
# round trip). `bench/serve.sh engine` profiles the real model (slow on small machines).
bench/serve.sh fake
