#!/usr/bin/env bash
# `make run`: convert the default model to shift-add form (cached), start shiftaddd on it in a
# private runtime directory, generate through the client library, stop the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release}
SRC=models/SmolLM2-135M-Instruct.Q4_1.gguf
# A light calibration keeps the demo within minutes (a 135M model at 3 bits needs the full
# calibration to stay coherent: see bench/results); `make bench` uses the full protocol.
DEMO=models/SmolLM2-135M-Instruct.shiftadd-acc-4bit.demo-v2.gguf
PROMPT=${PROMPT:-"What is the capital of France?"}

if [ ! -s "$DEMO" ] || ! "$B/bin/shiftadd" info "$DEMO" >/dev/null 2>&1; then
	echo "== converting $SRC to 4-bit shift-add form (light calibration: 8 x 256 tokens)"
	"$B/bin/shiftadd" convert --model "$SRC" --out "$DEMO" --method shiftadd-acc --bits 4 \
		--nsamples 8 --seqlen 256 --rounds 10 --quiet
else
	echo "== reusing $DEMO (delete it to convert again)"
fi

run=$(mktemp -d /tmp/shiftadd-demo-XXXXXX)
sock=$run/shiftaddd.sock
cleanup() {
	[ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$run"
}
trap cleanup EXIT

echo "== starting shiftaddd on $DEMO"
"$B/bin/shiftaddd" --backend engine --model "$DEMO" --socket-path "$sock" --n-slots 4 \
	--n-ctx 1024 --max-prompt-tokens 512 --log-level warn &
pid=$!
for _ in $(seq 1 600); do
	[ -S "$sock" ] && break
	kill -0 "$pid" 2>/dev/null || { echo "shiftaddd exited early" >&2; exit 1; }
	sleep 0.1
done
[ -S "$sock" ] || { echo "shiftaddd did not come up" >&2; exit 1; }

echo "== shiftadd-generate (client library -> shared-memory rings -> shift-add kernels)"
echo "> $PROMPT"
# printf -v keeps the trailing newline that $(...) would strip
printf -v chat '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n' "$PROMPT"
"$B/bin/shiftadd-generate" -s "$sock" -n 160 -t 0 "$chat"
echo
