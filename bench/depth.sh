#!/usr/bin/env bash
# Decode speed at context depth against llama.cpp: one sequence decodes after D positions of
# context, where every step's attention reads D keys and values per layer. Ours: bench-step
# --depth D (in process, forward pass + LM head + greedy pick) with the KV cache as f32 and
# as f16; llama.cpp: llama-bench -p 0 -n N -d D (its default f16 KV cache) on the source
# model requantized to TYPE. Interleaved round by round, so both see the same load.
# Also reported: the KV bytes one step reads at depth D, and what they are per second of the
# attention's share of the step (the step's time less the step's time at the smallest depth).
#
# Usage: bench/depth.sh [--depths LIST] [--threads LIST] [--n-gen N] [--reps R]
#                       [--type TYPE] SHIFTADD_MODEL.gguf
#   --depths LIST   context depths (default 0,1000,4000)
#   --threads LIST  thread counts (default 1,2)
#   --n-gen N       decode steps per measurement (default 32)
#   --reps R        rounds (default 3; the median is reported)
#   --type TYPE     the llama.cpp peer's quantization (default Q3_K_S)
# Environment: MODEL (the requantization source, default the Q4_1 SmolLM2 file), B, JOBS,
# LLAMACPP_DIR (bench/llamacpp_lib.sh). Output: bench/results/depth-<date>.{json,md}, or with
# REPORT=NAME bench/results/NAME.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/llamacpp_lib.sh
depths=0,1000,4000 threads=1,2 n_gen=32 reps=3 qtype=Q3_K_S
args="$*"
while [ $# -gt 0 ]; do
	case $1 in
	--depths) depths=$2; shift ;;
	--threads) threads=$2; shift ;;
	--n-gen) n_gen=$2; shift ;;
	--reps) reps=$2; shift ;;
	--type) qtype=$2; shift ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	-*) echo "depth.sh: unknown option '$1'" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 1 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
ours=$1
for m in "$ours" "$MODEL"; do
	[ -f "$m" ] || { echo "depth.sh: no such model '$m'" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

llamacpp_build llama-quantize llama-bench
peer="bench/tmp/$(basename "$MODEL" .gguf | sed 's/\.Q4_1$//').$qtype.gguf"
if [ ! -f "$peer" ]; then
	"$LLAMACPP_BIN/llama-quantize" --allow-requantize "$MODEL" "$peer.part" "$qtype" \
		>"$tmp/quantize.log" 2>&1 || { cat "$tmp/quantize.log" >&2; exit 1; }
	mv "$peer.part" "$peer"
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$tmp/runs.jsonl"
for r in $(seq "$reps"); do
	for th in ${threads//,/ }; do
		for d in ${depths//,/ }; do
			cmd="llama-bench -m $peer -p 0 -n $n_gen -d $d -t $th -r 1 -o jsonl"
			echo "$cmd  (round $r)" >&2
			"$LLAMACPP_BIN/llama-bench" -m "$peer" -p 0 -n "$n_gen" -d "$d" -t "$th" -r 1 \
				-o jsonl 2>"$tmp/err" | while read -r line; do
				printf '{"system": "llama.cpp", "kv": "f16", "threads": %d, "depth": %d, "round": %d, "cmd": "%s", "tok_s": %s}\n' \
					"$th" "$d" "$r" "$cmd" "$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["avg_ts"])')"
			done >>"$tmp/runs.jsonl" || { cat "$tmp/err" >&2; exit 1; }
			for kv in f32 f16; do
				cmd="bench-step -m $ours --seqs 1 -t $th -n $n_gen -r 1 --depth $d --kv-type $kv --json"
				echo "$cmd  (round $r)" >&2
				res=$("$B/bin/bench-step" -m "$ours" --seqs 1 -t "$th" -n "$n_gen" -r 1 \
					--depth "$d" --kv-type "$kv" --json 2>"$tmp/err" | tail -1)
				case $res in "{"*) ;; *) cat "$tmp/err" >&2; exit 1 ;; esac
				printf '{"system": "shiftadd", "kv": "%s", "threads": %d, "depth": %d, "round": %d, "cmd": "%s", "tok_s": %s, "result": %s}\n' \
					"$kv" "$th" "$d" "$r" "$cmd" \
					"$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')" \
					"$res" >>"$tmp/runs.jsonl"
			done
		done
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
bw=$("$B/bin/bench-kernels" --quick --no-blas 2>/dev/null | sed -n 's/^read bandwidth, \([0-9]*\) thread(s): \([0-9.]*\) GB\/s/\1 \2/p' | tr '\n' ' ')
info=$("$SA" info --json "$ours")

python3 - "$tmp/runs.jsonl" "bench/results/${REPORT:-depth-$DATE}" "$COMMIT" \
	"bench/depth.sh $args" "$CPU" "$NCPU" "$load_start" "$load_end" "$LLAMACPP_VERSION" \
	"$(llamacpp_commit)" "$ours" "$peer" "$bw" "$info" <<'PY'
import json, statistics, sys
(runs_f, out, commit, command, cpu, ncpu, l0, l1, lver, lcommit, ours, peer, bw, info) = sys.argv[1:15]
runs = [json.loads(l) for l in open(runs_f) if l.strip()]
meta = json.loads(info)["metadata"]
bw_of = {}
tok = bw.split()
for i in range(0, len(tok) - 1, 2):
    bw_of[int(tok[i])] = float(tok[i + 1])
# the model's attention shape, for the bytes a step reads
arch = meta.get("general.architecture", "llama")
n_layers = int(meta[f"{arch}.block_count"])
n_kv = int(meta.get(f"{arch}.attention.head_count_kv", meta[f"{arch}.attention.head_count"]))
hd = int(meta.get(f"{arch}.attention.key_length",
                  int(meta[f"{arch}.embedding_length"]) // int(meta[f"{arch}.attention.head_count"])))
kv_bytes = lambda d, elt: 2 * n_layers * n_kv * hd * d * elt

rows = {}
for r in runs:
    rows.setdefault((r["system"], r["kv"], r["threads"], r["depth"]), []).append(r["tok_s"])
med = {k: statistics.median(v) for k, v in rows.items()}
depths = sorted({k[3] for k in med})
ths = sorted({k[2] for k in med})
doc = {"bench": "depth", "command": command, "commit": commit, "machine": cpu,
       "cpus_online": int(ncpu), "loadavg_start": l0, "loadavg_end": l1,
       "llama_cpp": f"{lver}; {lcommit}", "ours": ours, "peer": peer,
       "read_bandwidth_gb_s": bw_of, "attention": {"layers": n_layers, "kv_heads": n_kv,
                                                   "head_dim": hd},
       "runs": runs, "median_tok_s": [{"system": k[0], "kv": k[1], "threads": k[2],
                                       "depth": k[3], "tok_s": v} for k, v in med.items()]}
json.dump(doc, open(out + ".json", "w"), indent=1)

f = open(out + ".md", "w")
f.write("# Decode at context depth: shiftadd vs llama.cpp\n\n")
f.write(f"- command: `{command}`\n- commit: {commit}; llama.cpp: {lver}, {lcommit}\n")
f.write(f"- machine: {cpu}, {ncpu} CPUs (load average {l0} at the start, {l1} at the end)\n")
f.write(f"- ours: `{ours}` (bench-step, one sequence, forward + LM head + greedy pick); "
        f"peer: `{peer}` (llama-bench tg, f16 KV cache)\n")
f.write(f"- attention: {n_layers} layers x {n_kv} KV heads x head dim {hd}; a step at depth D "
        f"reads 2 x {n_layers} x {n_kv} x {hd} x D elements of K and V\n")
f.write("- measured read bandwidth (bench-kernels): " +
        ", ".join(f"{v:.1f} GB/s at {k} thread(s)" for k, v in sorted(bw_of.items())) + "\n")
f.write(f"- medians of {max(len(v) for v in rows.values())} interleaved rounds\n\n")
f.write("| threads | depth | ours f32 KV tok/s | ours f16 KV tok/s | llama.cpp tok/s | "
        "f16 / llama.cpp | f16 / f32 | f16 attention GB/s | roof |\n")
f.write("|---|---|---|---|---|---|---|---|---|\n")
for th in ths:
    base = med.get(("shiftadd", "f16", th, depths[0]))
    for d in depths:
        a = med.get(("shiftadd", "f32", th, d))
        b = med.get(("shiftadd", "f16", th, d))
        p = med.get(("llama.cpp", "f16", th, d))
        gbs = roof = "-"
        if b and base and d > depths[0]:
            t_att = 1 / b - 1 / base  # seconds of a step spent on the extra depth
            if t_att > 0:
                g = kv_bytes(d - depths[0], 2) / t_att / 1e9
                gbs = f"{g:.1f}"
                if th in bw_of:
                    roof = f"{g / bw_of[th]:.2f}"
        fmt = lambda v: f"{v:.1f}" if v else "-"
        f.write(f"| {th} | {d} | {fmt(a)} | {fmt(b)} | {fmt(p)} | "
                f"{(b / p if b and p else 0):.2f} | {(b / a if a and b else 0):.2f} | {gbs} | {roof} |\n")
f.write("\nattention GB/s: the K/V bytes of the depth beyond the first row's, over the time a "
        "step takes beyond the first row's (so the LM head and the linears cancel out); roof: "
        "that over the measured read bandwidth at the same threads.\n")
print(open(out + ".md").read())
PY
