#!/usr/bin/env bash
# `make run`: the default model answering a question, streamed to the terminal.
# (Later: convert to shift-add form, start shiftaddd, and generate through a client.)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT=${PROMPT:-"What are three good reasons to learn the C programming language?"}

echo "== shiftadd generate --chat on $MODEL"
echo "> $PROMPT"
"$B/bin/shiftadd" generate --model "$MODEL" --chat --prompt "$PROMPT" -n 160 --temp 0.3 --seed 1
