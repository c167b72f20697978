#!/usr/bin/env bash
# Ring round trip of an empty request (shiftadd-bench --rtt: prompt "a", max_tokens 1, one at a
# time) beside the plain Unix-socket round trip (bench/sockrtt.c), RUNS alternating runs of each
# configuration, medians over the runs. Configurations:
#   socket          bench/sockrtt: two processes ping-ponging 64 B over SOCK_SEQPACKET
#   fake            shiftaddd --backend fake --step-delay-us 0 (daemon + IPC cost), default spin
#   fake-nospin     the same with the spin off on both sides (--spin-us 0, SHIFTADD_SPIN_US=0)
#   engine          shiftaddd --backend engine on MODEL (one real forward pass per request)
#   BASE=DIR adds base-fake (and base-engine): the build in DIR (e.g. an older commit's
#   build/release) measured in the same runs, for before/after; BASE_LABEL names it in the table.
# N requests per run (default 2000; ENGINE_N for the engine, default 300), RUNS (default 3),
# ENGINE=0 skips the engine. Writes bench/results/ring-rtt-DATE.{md,json} (OUT=PREFIX: elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${N:-2000} ENGINE_N=${ENGINE_N:-300} RUNS=${RUNS:-3} ENGINE=${ENGINE:-1} BASE=${BASE:-}
run=$(mktemp -d /tmp/shiftadd-rtt-XXXXXX)
dpid=
trap '[ -n "$dpid" ] && kill $dpid 2>/dev/null; wait 2>/dev/null; rm -rf "$run"' EXIT

mkdir -p "$B/bench"
cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow -o "$B/bench/sockrtt" bench/sockrtt.c

# ring BUILD N LABEL [daemon args...]: one shiftadd-bench --rtt run, appends a JSON line
ring() {
	local bin=$1/bin n=$2 label=$3 sock=$run/d.sock
	shift 3
	rm -f "$sock"
	"$bin/shiftaddd" --socket-path "$sock" --config /dev/null --log-level warn "$@" &
	dpid=$!
	for _ in $(seq 600); do [ -S "$sock" ] && break; sleep 0.1; done
	[ -S "$sock" ] || { echo "shiftaddd did not come up" >&2; exit 1; }
	"$bin/shiftadd-bench" -s "$sock" --rtt "$n" -n 1 -w 0 -m 1 -q >"$run/out.txt"
	kill "$dpid"
	wait "$dpid" 2>/dev/null || true
	dpid=
	python3 - "$label" "$(cut -d' ' -f1 /proc/loadavg)" "$run/out.txt" >>"$run/runs.jsonl" <<'PY'
import re, sys, json
m = re.search(r"round trip \((\d+) requests.*p50 ([\d.]+) us, p90 ([\d.]+) us, p99 ([\d.]+) us",
              open(sys.argv[3]).read())
print(json.dumps({"config": sys.argv[1], "load1": float(sys.argv[2]), "n": int(m[1]),
                  "p50": float(m[2]), "p90": float(m[3]), "p99": float(m[4])}))
PY
	tail -1 "$run/runs.jsonl" >&2
}

sock() {
	"$B/bench/sockrtt" -n "$N" -s 64 | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(json.dumps({"config": "socket", "load1": float(sys.argv[1]), "n": s["n"],
                  "p50": s["p50_us"], "p90": s["p90_us"], "p99": s["p99_us"]}))' \
		"$(cut -d' ' -f1 /proc/loadavg)" >>"$run/runs.jsonl"
	tail -1 "$run/runs.jsonl" >&2
}

fake=(--backend fake --step-delay-us 0 --n-slots 64)
engine=(--backend engine --model "$MODEL" --n-slots 16)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$run/runs.jsonl"
for r in $(seq "$RUNS"); do
	echo "run $r/$RUNS" >&2
	sock
	[ -n "$BASE" ] && ring "$BASE" "$N" base-fake "${fake[@]}"
	ring "$B" "$N" fake "${fake[@]}"
	SHIFTADD_SPIN_US=0 ring "$B" "$N" fake-nospin "${fake[@]}" --spin-us 0
	if [ "$ENGINE" = 1 ]; then
		[ -n "$BASE" ] && ring "$BASE" "$ENGINE_N" base-engine "${engine[@]}"
		ring "$B" "$ENGINE_N" engine "${engine[@]}"
	fi
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

out=${OUT:-bench/results/ring-rtt-$DATE}
python3 - "$run/runs.jsonl" "$out.json" "$load_start" "$load_end" "${BASE_LABEL:-$BASE}" <<'PY' >"$run/table.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
order = ["socket", "base-fake", "fake", "fake-nospin", "base-engine", "engine"]
what = {
    "socket": "plain Unix socket ping-pong (64 B, SOCK_SEQPACKET, bench/sockrtt)",
    "base-fake": f"rings, fake backend, BASE build ({sys.argv[5]})",
    "fake": "rings, fake backend (step_delay_us 0), spin on (defaults)",
    "fake-nospin": "rings, fake backend, spin off (--spin-us 0, SHIFTADD_SPIN_US=0)",
    "base-engine": f"rings, engine backend, BASE build ({sys.argv[5]})",
    "engine": "rings, engine backend (one forward pass per request), spin on",
}
summary = {}
print("| path | runs | n | p50 (median of runs) | p99 (median of runs) | p50 of each run | load1 of each run |")
print("|---|---|---|---|---|---|---|")
for k in order:
    rs = [r for r in rows if r["config"] == k]
    if not rs:
        continue
    p50 = statistics.median(r["p50"] for r in rs)
    p99 = statistics.median(r["p99"] for r in rs)
    summary[k] = {"what": what[k], "p50_us": p50, "p99_us": p99, "runs": rs}
    each = ", ".join("%.1f" % r["p50"] for r in rs)
    loads = ", ".join("%.2f" % r["load1"] for r in rs)
    print(f"| {what[k]} | {len(rs)} | {rs[0]['n']} | {p50:.1f} | {p99:.1f} | {each} | {loads} |")
json.dump({"loadavg_start": sys.argv[3], "loadavg_end": sys.argv[4], "base": sys.argv[5],
           "summary": summary}, open(sys.argv[2], "w"), indent=1)
PY
{
	header "Ring round trip vs Unix socket" \
		"bench/ring_rtt.sh (N=$N ENGINE_N=$ENGINE_N RUNS=$RUNS${BASE:+ BASE=$BASE})"
	echo "Empty request = shiftadd-bench --rtt: prompt \"a\", max_tokens 1, submitted and waited for" \
		"one at a time on one connection (submission ring, doorbell or spin, io_uring loop," \
		"protobuf, scheduler, one backend step, completion ring). Microseconds. Load average" \
		"$load_start at the start, $load_end at the end (shared 2-CPU machine: other jobs ran)."
	echo
	cat "$run/table.md"
	echo
	echo "Every run in $(basename "$out").json."
} >"$out.md"
cat "$out.md"
