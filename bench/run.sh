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

# Fused causal attention (prefill and calibration): one head of 2048 tokens, one thread.
(
	. bench/lib.sh
	{
		header "Fused attention: attend_rows, one head, 2048-token prefill" "$B/bin/bench-attn"
		"$B/bin/bench-attn"
	} > "bench/results/attn-$date.md"
)

# Batched decode steps in process (the engine's side of the daemon's batching): 1 and 16
# sequences at 1 and 2 threads on STEP_MODEL (default the `make run` demo conversion when
# it exists, else the source GGUF served dense).
(
	. bench/lib.sh
	demo=models/SmolLM2-135M-Instruct.shiftadd-acc-4bit.demo-v2.gguf
	[ -f "$demo" ] || demo=$MODEL
	model=${STEP_MODEL:-$demo}
	{
		header "Batched decode steps in process, $(basename "$model")" \
			"$B/bin/bench-step --model $model --seqs 1,4,16 --steps 16 --repeat 3 --threads T"
		echo '```'
		for t in 1 2; do "$B/bin/bench-step" --model "$model" --seqs 1,4,16 --steps 16 --repeat 3 --threads $t; done
		echo '```'
		echo
		echo "At 2000 positions of context, f32 and f16 KV cache (1 thread):"
		echo '```'
		for kv in f32 f16; do
			"$B/bin/bench-step" --model "$model" --seqs 1,16 --steps 16 --repeat 3 --depth 2000 --kv-type $kv
		done
		echo '```'
	} > "bench/results/step-$date.md"
)

# llama.cpp peer (Q4_0/Q3_K/Q2_K/TQ2_0 CPU mul_mat next to our kernels, one run): needs
# network once (pip download of the llama-cpp-python sdist) and a cmake build under /tmp,
# so it runs only when asked: `LLAMACPP=1 make bench`.
if [ "${LLAMACPP:-0}" = 1 ]; then
	bench/llamacpp.sh
	demo=models/SmolLM2-135M-Instruct.shiftadd-acc-4bit.demo-v2.gguf
	[ -f "$demo" ] && bench/depth.sh --type Q4_0 "$demo"
fi

# Serving: shiftaddd + shiftadd-bench sweeps (fake backend: daemon and IPC cost, empty-request
# round trip). `bench/serve.sh engine` profiles the real model (slow on small machines).
bench/serve.sh fake

# Foundation figures (tokenizers and logits against the Python references' fixtures).
bench/foundation.sh > /dev/null

# Slow, opt-in: perplexity against transformers (needs torch), the quality tables.
if [ "${QUALITY:-0}" = 1 ]; then
	bench/ppl_ref.sh 8
fi
