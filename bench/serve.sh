#!/usr/bin/env bash
# Serving profile: start shiftaddd on a private socket, run shiftadd-bench sweeps over clients
# and workers, keep the JSON/CSV/plots under bench/results/serve-<backend>-<date>*.
#   bench/serve.sh fake     the fake backend with step_delay_us 0: the daemon's own cost
#                           (rings, io_uring loop, protobuf, scheduler) and the IPC round trip,
#                           next to a plain Unix-socket round trip (bench/sockrtt.c: two
#                           processes ping-ponging over a SOCK_SEQPACKET socketpair), same run
#   bench/serve.sh engine   the real model through the engine backend (MODEL=..., default the
#                           Q4_1 SmolLM2 file, served dense f32; a converted shift-add GGUF is
#                           served on the LUT kernels), then the same load (clients, prompt,
#                           max tokens, duration) against llama.cpp's llama-server (one server
#                           per point: -np = clients, --cont-batching, -t = workers) with
#                           bench/llama_load.py, and the ratio ours / llama-server
# DURATION, WARMUP, CLIENTS, WORKERS, MAX_TOKENS, PROMPT override the sweep (defaults below);
# PROMPT_FILE=F sends F's lines round-robin instead of PROMPT (both servers; e.g.
# bench/prompts/shared-system.txt: one long system prompt, then a different question a line);
# REQUESTS=N measures N requests per point instead of a duration (slow backends); RTT=N
# empty requests (and N plain-socket ping-pongs) for the round trip, SOCKRTT_BYTES their size.
# LLAMA=0 skips llama-server; LLAMA_MODEL (default MODEL; when MODEL is a shift-add GGUF
# llama.cpp cannot read, bench/tmp's Q4_0 requantization from bench/llamacpp_e2e.sh, else the
# Q4_1 file), LLAMA_CTX positions per slot (default 512),
# LLAMACPP_DIR (bench/llamacpp_lib.sh builds llama-server there, outside the repo).
# PROMPT_CACHE=1 (default) lets both servers reuse a slot's KV for a prompt prefix a previous
# request left there (shiftaddd --prompt-cache, llama-server's cache_prompt); 0 prefills every
# prompt in full on both sides.
# REPORT=NAME writes bench/results/serve-<backend>-NAME* instead of the date. ROUNDS=N (engine)
# alternates the whole sweep, ours then llama-server, N times: this VM's speed drifts by 10-20%
# over minutes, so the ratio of each point is the median of its N same-round ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
kind=${1:-fake}
BIN=$B/bin
run=$(mktemp -d /tmp/shiftadd-serve-XXXXXX)
sock=$run/shiftaddd.sock
dpid= lpid=
trap '[ -n "$dpid" ] && kill $dpid 2>/dev/null; [ -n "$lpid" ] && kill $lpid 2>/dev/null; wait 2>/dev/null; rm -rf "$run"' EXIT

# max_of LIST: the largest number in a comma-separated list
max_of() { tr ',' '\n' <<<"$1" | sort -n | tail -1; }

case $kind in
fake)
	CLIENTS=${CLIENTS:-1,2,4,8,16,32,64} DURATION=${DURATION:-3} MAX_TOKENS=${MAX_TOKENS:-32}
	args=(--backend fake --step-delay-us 0 --n-slots 64)
	RTT=${RTT:-2000} LLAMA=0
	label="fake backend, step_delay_us 0, n_slots 64: daemon + IPC cost only"
	;;
engine)
	CLIENTS=${CLIENTS:-1,4,16} DURATION=${DURATION:-8} MAX_TOKENS=${MAX_TOKENS:-16}
	slots=$(max_of "$CLIENTS")
	[ "$slots" -ge 16 ] || slots=16
	args=(--backend engine --model "$MODEL" --n-slots "$slots")
	RTT=${RTT:-0} LLAMA=${LLAMA:-1}
	label="engine backend, $(basename "$MODEL"), n_slots $slots"
	;;
*)
	echo "usage: bench/serve.sh fake|engine" >&2
	exit 2
	;;
esac
# Engine warm-up 3 s: at 16 clients the first wave prefills 16 prompts at once, and on the
# 2-core VM it ended 1.2-2.2 s after the start, inside a 1-s warm-up's window, where it
# cost this side 10-15% of the steady-state rate (llama-server's batched prefill is faster);
# both servers get the same warm-up.
[ "$kind" = engine ] && WARMUP=${WARMUP:-3}
WORKERS=${WORKERS:-1,2} WARMUP=${WARMUP:-1} PROMPT=${PROMPT:-Once upon a time}
PROMPT_CACHE=${PROMPT_CACHE:-1}
prompt=(-p "$PROMPT") prompt_text="-p '$PROMPT'"
if [ -n "${PROMPT_FILE:-}" ]; then prompt=(-f "$PROMPT_FILE") prompt_text="-f $PROMPT_FILE"; fi
args+=(--prompt-cache "$PROMPT_CACHE")
label="$label, prompt_cache $PROMPT_CACHE"
measure=(-d "$DURATION")
[ -n "${REQUESTS:-}" ] && measure=(-n "$REQUESTS")
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# Plain Unix-socket baseline for the ring round trip, measured just before it.
if [ "$RTT" -gt 0 ]; then
	mkdir -p "$B/bench"
	cc -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow -o "$B/bench/sockrtt" \
		bench/sockrtt.c
	"$B/bench/sockrtt" -n "$RTT" -s "${SOCKRTT_BYTES:-64}" >"$run/sockrtt.json"
fi

"$BIN/shiftaddd" "${args[@]}" --socket-path "$sock" --config /dev/null --log-level warn \
	--max-new-tokens 256 --max-inflight 64 &
dpid=$!
for _ in $(seq 600); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "shiftaddd did not come up" >&2; exit 1; }

out=bench/results/serve-$kind-${REPORT:-$DATE}
ROUNDS=${ROUNDS:-1}

# Our sweep of round $1 (round 1 writes the report's own files, later rounds go to $run).
ours_round() {
	local prefix=$out extra=()
	if [ "$1" -gt 1 ]; then
		prefix=$run/ours-r$1
		extra=(--no-plot)
	fi
	echo "round $1/$ROUNDS: shiftaddd" >&2
	SHIFTADD_COMMIT=$COMMIT "$BIN/shiftadd-bench" -s "$sock" --sweep "clients=$CLIENTS" \
		--sweep "workers=$WORKERS" "${measure[@]}" -w "$WARMUP" -m "$MAX_TOKENS" "${prompt[@]}" \
		--rtt "$([ "$1" = 1 ] && echo "$RTT" || echo 0)" --label "$label; $CPU, $NCPU CPUs" \
		-o "$prefix" "${extra[@]}" | tee "$run/table-r$1.txt"
}

# The same load against llama-server, round $1: one server per point so -np equals the clients.
llama_round() {
	for w in ${WORKERS//,/ }; do
		for c in ${CLIENTS//,/ }; do
			"$LLAMACPP_BIN/llama-server" -m "$LLAMA_MODEL" -t "$w" -tb "$w" -np "$c" \
				--cont-batching -c $((c * ctx)) -cram 0 --no-webui --host 127.0.0.1 \
				--port "$port" >"$run/llama-server.log" 2>&1 &
			lpid=$!
			for _ in $(seq 600); do
				curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
				kill -0 "$lpid" 2>/dev/null || break
				sleep 0.1
			done
			curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 ||
				{ tail -20 "$run/llama-server.log" >&2; echo "llama-server did not come up" >&2; exit 1; }
			echo "round $1/$ROUNDS: llama-server: threads $w, clients $c" >&2
			python3 bench/llama_load.py --port "$port" -c "$c" "${lmeasure[@]}" -w "$WARMUP" \
				-m "$MAX_TOKENS" "${prompt[@]}" --threads "$w" \
				--cache-prompt "$PROMPT_CACHE" >>"$run/llama-r$1.jsonl" ||
				{ tail -20 "$run/llama-server.log" >&2; exit 1; }
			kill "$lpid"
			wait "$lpid" 2>/dev/null || true
			lpid=
		done
	done
}

lcmd=
if [ "$LLAMA" = 1 ]; then
	. bench/llamacpp_lib.sh
	llamacpp_build llama-server
	if [ -z "${LLAMA_MODEL:-}" ]; then
		LLAMA_MODEL=$MODEL
		# our own reader: PyPI gguf need not be installed
		if "$SA" info --json "$MODEL" 2>/dev/null | python3 -c \
			'import json,sys; sys.exit("shiftadd.method" not in json.load(sys.stdin)["metadata"])'; then
			# the nearest llama.cpp gets to our bits on SmolLM2 (its K-quants fall back to
			# Q4_0 on 576-wide rows), as in bench/llamacpp_e2e.sh; else the Q4_1 source
			LLAMA_MODEL=bench/tmp/SmolLM2-135M-Instruct.Q4_0.gguf
			[ -f "$LLAMA_MODEL" ] || LLAMA_MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
		fi
	fi
	ctx=${LLAMA_CTX:-512}
	port=${LLAMA_PORT:-$((20000 + RANDOM % 20000))}
	lmeasure=(-d "$DURATION")
	[ -n "${REQUESTS:-}" ] && lmeasure=(-n "$REQUESTS")
	lcmd="llama-server -m $LLAMA_MODEL -t W -tb W -np C --cont-batching -c C*$ctx -cram 0 --no-webui; bench/llama_load.py -c C ${lmeasure[*]} -w $WARMUP -m $MAX_TOKENS $prompt_text --cache-prompt $PROMPT_CACHE"
	lversion="$LLAMACPP_VERSION (vendored llama.cpp, CPU, GGML_NATIVE, no OpenMP); $(llamacpp_commit)"
fi
for r in $(seq "$ROUNDS"); do
	ours_round "$r"
	if [ "$LLAMA" = 1 ]; then llama_round "$r"; fi
done
cp "$run/table-r1.txt" "$run/table.txt"
"$BIN/shiftaddctl" -s "$sock" stats > "$run/stats.txt"
kill "$dpid"
wait "$dpid" 2>/dev/null || true
dpid=
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# Merge the baselines into shiftadd-bench's JSON; tables for the markdown.
python3 - "$out.json" "$run" "$load_start" "$load_end" "$lcmd" "${LLAMA_MODEL:-}" \
	"${lversion:-}" "${SOCKRTT_BYTES:-64}" "$ROUNDS" <<'PY' >"$run/extra.md"
import json, os, statistics, sys
path, run, load_start, load_end, lcmd, lmodel, lversion, sbytes, rounds = sys.argv[1:10]
rounds = int(rounds)
doc = json.load(open(path))
doc["loadavg_start"], doc["loadavg_end"] = load_start, load_end
md = []
sr = os.path.join(run, "sockrtt.json")
if os.path.exists(sr):
    s = json.load(open(sr))
    doc["unix_socket_rtt_us"] = {"what": "SOCK_SEQPACKET socketpair ping-pong between two "
                                 "processes (bench/sockrtt.c), blocking send/recv", **s}
    ring = doc.get("empty_request_rtt_us")
    md += ["Round trip, same run (us):", "",
           "| path | n | p50 | p90 | p99 |", "|---|---|---|---|---|"]
    if ring:
        md.append(f"| shiftaddd rings, empty request (max_tokens 1) | {ring['n']} | "
                  f"{ring['p50']:.1f} | {ring['p90']:.1f} | {ring['p99']:.1f} |")
    md.append(f"| plain Unix socket ping-pong ({s['bytes']} B, SOCK_SEQPACKET) | {s['n']} | "
              f"{s['p50_us']:.1f} | {s['p90_us']:.1f} | {s['p99_us']:.1f} |")
    if ring:
        doc["ring_over_socket_p50"] = ring["p50"] / s["p50_us"]
        md += ["", f"Ring round trip / plain socket round trip at p50: "
               f"{doc['ring_over_socket_p50']:.2f}x (the ring figure is a whole request through "
               "the daemon: submission ring, doorbell, io_uring loop, protobuf, scheduler, one "
               "fake-backend step, completion ring; the socket figure is only two wake-ups)."]
    md.append("")
ours = [doc["points"]] + [json.load(open(os.path.join(run, f"ours-r{r}.json")))["points"]
                          for r in range(2, rounds + 1)]
lrounds = []
for r in range(1, rounds + 1):
    lf = os.path.join(run, f"llama-r{r}.jsonl")
    lrounds.append([dict(json.loads(l), round=r) for l in open(lf) if l.strip()]
                   if os.path.exists(lf) else [])
lp = [p for rp in lrounds for p in rp]
if rounds > 1:
    doc["rounds"] = rounds
    doc["points_by_round"] = ours
if lp:
    doc["llama_server"] = {"command": lcmd, "model": lmodel, "llama_cpp": lversion, "points": lp}
    rat = []
    # None: no request of that point both started and finished inside its window
    med = lambda v: statistics.median([x for x in v if x is not None]) if any(
        x is not None for x in v) else None
    for p in lrounds[0]:
        key = lambda q: q["workers"] == p["workers"] and q["clients"] == p["clients"]
        per = []
        for r in range(rounds):
            o = [q for q in ours[r] if key(q)]
            l = [q for q in lrounds[r] if key(q)]
            if o and l and l[0]["tokens_per_s"]:
                per.append((o[0], l[0]))
        if per:
            rat.append({"workers": p["workers"], "clients": p["clients"],
                        "ours_tokens_per_s": med([o["tokens_per_s"] for o, _ in per]),
                        "llama_tokens_per_s": med([l["tokens_per_s"] for _, l in per]),
                        "ratio": med([o["tokens_per_s"] / l["tokens_per_s"] for o, l in per]),
                        "ratio_by_round": [o["tokens_per_s"] / l["tokens_per_s"] for o, l in per],
                        "ours_e2e_p50_ms": med([o["e2e_ms"].get("p50") for o, _ in per]),
                        "llama_e2e_p50_ms": med([l["e2e_ms"].get("p50") for _, l in per])})
    doc["vs_llama_server"] = rat
    f = lambda v, n=1: "-" if v is None else f"{v:.{n}f}"
    md += [f"Same load against llama-server ({lversion}), model {os.path.basename(lmodel)}:",
           "", f"`{lcmd}`", "",
           "| round | threads | clients | requests | tokens/s | req/s | tok/req | ttft_p50 | "
           "ttft_p99 | itl_p50 | itl_p99 | e2e_p50 | e2e_p99 | failed |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in lp:
        t, i, e = p["ttft_ms"], p["itl_ms"], p["e2e_ms"]
        md.append(f"| {p['round']} | {p['workers']} | {p['clients']} | {p['requests_ok']} | "
                  f"{p['tokens_per_s']:.1f} | {p['requests_per_s']:.2f} | "
                  f"{p['mean_tokens_per_request']:.1f} | {f(t.get('p50'), 2)} | "
                  f"{f(t.get('p99'), 2)} | {f(i.get('p50'), 3)} | {f(i.get('p99'), 3)} | "
                  f"{f(e.get('p50'), 2)} | {f(e.get('p99'), 2)} | {p['requests_failed']} |")
    md += ["", "Aggregate tokens/s, shiftaddd / llama-server (> 1: we are faster); end-to-end "
           "request latency p50 (ms)" + (f"; medians over {rounds} alternating rounds (ours, "
           "then llama-server), the ratio the median of the rounds' own ratios" if rounds > 1
           else "") + ":", "",
           "| workers = threads | clients | shiftaddd tok/s | llama-server tok/s | ratio | "
           "ratio by round | shiftaddd e2e p50 | llama-server e2e p50 |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rat:
        md.append(f"| {r['workers']} | {r['clients']} | {r['ours_tokens_per_s']:.1f} | "
                  f"{r['llama_tokens_per_s']:.1f} | {f(r['ratio'], 2)} | "
                  + " / ".join(f"{v:.2f}" for v in r["ratio_by_round"]) + " | "
                  f"{f(r['ours_e2e_p50_ms'], 1)} | {f(r['llama_e2e_p50_ms'], 1)} |")
    if rounds > 1:
        md += ["", "shiftaddd tokens/s by round (round 1 is the table above):", "",
               "| round | workers | clients | tokens/s | itl_p50 |", "|---|---|---|---|---|"]
        for r, pts in enumerate(ours, 1):
            for q in pts:
                md.append(f"| {r} | {q['workers']} | {q['clients']} | {q['tokens_per_s']:.1f} | "
                          f"{f(q['itl_ms'].get('p50'), 3)} |")
    md.append("")
json.dump(doc, open(path, "w"), indent=1)
print("\n".join(md))
PY
{
	header "shiftaddd serving profile ($kind)" \
		"ROUNDS=$ROUNDS bench/serve.sh $kind (shiftaddd ${args[*]}; shiftadd-bench --sweep clients=$CLIENTS --sweep workers=$WORKERS ${measure[*]} -w $WARMUP -m $MAX_TOKENS $prompt_text --rtt $RTT)"
	echo "$label. Load average $load_start at the start, $load_end at the end (shared machine:" \
		"timings are noisy)."
	echo
	echo '```'
	cat "$run/table.txt"
	echo '```'
	echo
	cat "$run/extra.md"
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
