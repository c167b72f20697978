#!/usr/bin/env bash
# The prompt cache's effect on one daemon, A/B in one run: shiftaddd started with
# --prompt-cache 1, then 0, alternating PAIRS times (this VM's speed drifts by 10-40% over
# minutes, so only pairs taken back to back compare). Each start serves CLIENTS clients for
# DURATION s (shiftadd-bench, after a 1 s warm-up); the daemon's own counters
# (shiftaddctl stats --json) then give the steps, the loop time inside steps and the prompt
# tokens prefilled and reused. Writes bench/results/prompt-cache-ab-<date>.md.
#   MODEL (default bench/tmp/perf/acc-3.gguf, else the Q4_1 file), WORKERS (a CPU list,
#   default 0-1), CLIENTS (16), MAX_TOKENS (16), DURATION (8), PAIRS (2), PROMPT
#   ('Once upon a time') or PROMPT_FILE, REPORT=NAME instead of the date.
set -euo pipefail
cd "$(dirname "$0")/.."
user_model=${MODEL:-}
. bench/lib.sh
BIN=$B/bin
if [ -n "$user_model" ]; then
	MODEL=$user_model
elif [ -f bench/tmp/perf/acc-3.gguf ]; then
	MODEL=bench/tmp/perf/acc-3.gguf
fi
WORKERS=${WORKERS:-0-1} CLIENTS=${CLIENTS:-16} MAX_TOKENS=${MAX_TOKENS:-16}
DURATION=${DURATION:-8} PAIRS=${PAIRS:-2} PROMPT=${PROMPT:-Once upon a time}
prompt=(-p "$PROMPT") prompt_text="-p '$PROMPT'"
if [ -n "${PROMPT_FILE:-}" ]; then prompt=(-f "$PROMPT_FILE") prompt_text="-f $PROMPT_FILE"; fi
run=$(mktemp -d /tmp/shiftadd-pcab-XXXXXX)
sock=$run/shiftaddd.sock
dpid=
trap '[ -n "$dpid" ] && kill $dpid 2>/dev/null; wait 2>/dev/null; rm -rf "$run"' EXIT

# one_run PC: serve, then print "pc tok/s ttft_p50 steps step_ms prefilled cached"
one_run() {
	rm -f "$sock"
	"$BIN/shiftaddd" --backend engine --model "$MODEL" --n-slots "$CLIENTS" \
		--workers "$WORKERS" --socket-path "$sock" --config /dev/null --log-level warn \
		--max-new-tokens 256 --max-inflight 64 --prompt-cache "$1" &
	dpid=$!
	for _ in $(seq 600); do [ -S "$sock" ] && break; sleep 0.1; done
	[ -S "$sock" ] || { echo "shiftaddd did not come up" >&2; exit 1; }
	"$BIN/shiftadd-bench" -s "$sock" -c "$CLIENTS" -d "$DURATION" -w 1 -m "$MAX_TOKENS" \
		"${prompt[@]}" -q -o "$run/b" --no-plot >/dev/null
	"$BIN/shiftaddctl" -s "$sock" stats --json >"$run/stats.json"
	kill "$dpid"
	wait "$dpid" 2>/dev/null || true
	dpid=
	python3 - "$1" "$run/b.json" "$run/stats.json" <<'PY'
import json, sys
pc, b, s = sys.argv[1], json.load(open(sys.argv[2]))["points"][0], json.load(open(sys.argv[3]))
steps = max(s["steps"], 1)
print(pc, "%.1f" % b["tokens_per_s"], "%.1f" % b["ttft_ms"]["p50"], s["steps"],
      "%.2f" % (s["step_busy_ns"] / 1e6 / steps), s["tokens_prefilled"],
      s.get("tokens_cached", 0))
PY
}

rows=()
for p in $(seq "$PAIRS"); do
	for pc in 1 0; do
		echo "pair $p/$PAIRS: prompt_cache $pc" >&2
		rows+=("$p $(one_run "$pc")")
	done
done
out=bench/results/prompt-cache-ab-${REPORT:-$DATE}.md
{
	header "shiftaddd prompt cache A/B" "bench/prompt_cache_ab.sh (shiftaddd --backend engine --model $MODEL --n-slots $CLIENTS --workers $WORKERS --prompt-cache 1|0; shiftadd-bench -c $CLIENTS -d $DURATION -w 1 -m $MAX_TOKENS $prompt_text)"
	echo "Daemon counters over warm-up and window (shiftaddctl stats --json); tokens/s and TTFT from"
	echo "shiftadd-bench's window. Pairs ran back to back; compare within a pair."
	echo
	echo "| pair | prompt cache | tokens/s | ttft p50 (ms) | steps | ms per step | prompt tokens prefilled | reused | prefilled per step |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for r in "${rows[@]}"; do
		read -r p pc tps ttft steps ms pre cached <<<"$r"
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$p" "$pc" "$tps" "$ttft" \
			"$steps" "$ms" "$pre" "$cached" "$(python3 -c "print('%.2f' % ($pre / max($steps, 1)))")"
	done
} >"$out"
cat "$out"
echo "wrote $out" >&2
