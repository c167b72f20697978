#!/usr/bin/env bash
# Serving profile: start shiftaddd on a private socket, run shiftadd-bench sweeps over clients
# and workers, keep the JSON/CSV/plots under bench/results/serve-<backend>-<date>*.
#   bench/serve.sh fake     the fake backend with step_delay_us 0: the daemon's own cost
#                           (rings, io_uring loop, protobuf, scheduler) and the IPC round trip
#   bench/serve.sh engine   the real model through the engine backend (MODEL=..., default the
#                           Q4_1 SmolLM2 file, served dense f32; a converted shift-add GGUF is
#                           served on the LUT kernels)
# DURATION, WARMUP, CLIENTS, WORKERS, MAX_TOKENS override the sweep (defaults below);
# REQUESTS=N measures N requests per point instead of a duration (slow backends).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
kind=${1:-fake}
BIN=$B/bin
run=$(mktemp -d /tmp/shiftadd-serve-XXXXXX)
sock=$run/shiftaddd.sock
trap 'kill $dpid 2>/dev/null; wait $dpid 2>/dev/null; rm -rf "$run"' EXIT

case $kind in
fake)
	args=(--backend fake --step-delay-us 0 --n-slots 64)
	CLIENTS=${CLIENTS:-1,2,4,8,16,32,64} DURATION=${DURATION:-3} MAX_TOKENS=${MAX_TOKENS:-32}
	RTT=${RTT:-2000}
	label="fake backend, step_delay_us 0, n_slots 64: daemon + IPC cost only"
	;;
engine)
	args=(--backend engine --model "$MODEL" --n-slots 16)
	CLIENTS=${CLIENTS:-1,2,4,8,16} DURATION=${DURATION:-8} MAX_TOKENS=${MAX_TOKENS:-16}
	RTT=${RTT:-0}
	label="engine backend, $(basename "$MODEL"), n_slots 16"
	;;
*)
	echo "usage: bench/serve.sh fake|engine" >&2
	exit 2
	;;
esac
WORKERS=${WORKERS:-1,2} WARMUP=${WARMUP:-1}
measure=(-d "$DURATION")
[ -n "${REQUESTS:-}" ] && measure=(-n "$REQUESTS")

"$BIN/shiftaddd" "${args[@]}" --socket-path "$sock" --config /dev/null --log-level warn \
	--max-new-tokens 256 --max-inflight 64 &
dpid=$!
for _ in $(seq 600); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "shiftaddd did not come up" >&2; exit 1; }

out=bench/results/serve-$kind-$DATE
SHIFTADD_COMMIT=$COMMIT "$BIN/shiftadd-bench" -s "$sock" --sweep "clients=$CLIENTS" \
	--sweep "workers=$WORKERS" "${measure[@]}" -w "$WARMUP" -m "$MAX_TOKENS" --rtt "$RTT" \
	--label "$label; $CPU, $NCPU CPUs" -o "$out" | tee "$run/table.txt"
"$BIN/shiftaddctl" -s "$sock" stats > "$run/stats.txt"
{
	header "shiftaddd serving profile ($kind)" \
		"bench/serve.sh $kind (shiftaddd ${args[*]}; shiftadd-bench --sweep clients=$CLIENTS --sweep workers=$WORKERS ${measure[*]} -w $WARMUP -m $MAX_TOKENS --rtt $RTT)"
	echo "$label."
	echo
	echo '```'
	cat "$run/table.txt"
	echo '```'
	echo
	echo "Plots: [throughput]($(basename "$out")-throughput.svg), [latency]($(basename "$out")-latency.svg)" \
		"(PNG next to them); every number in $(basename "$out").json / .csv."
	echo
	echo 'Daemon counters at the end (`shiftaddctl stats`):'
	echo
	echo '```'
	cat "$run/stats.txt"
	echo '```'
} > "$out.md"
echo "wrote $out.md"
