#!/usr/bin/env bash
# End to end against llama.cpp: decode tokens/s (batch 1, 1 and 2 threads) of our engine on
# shift-add converted models next to llama.cpp's llama-bench (tg, no prompt) on the default
# model requantized to Q4_0, Q3_K_S and Q2_K, in one run, with the ratio ours / llama.cpp;
# and the perplexity of every file on OUR WikiText-2 protocol (shiftadd eval ppl: the llama.cpp
# quants through the dense path, which dequantizes their tensors; ours through the kernels).
#
# Usage: bench/llamacpp_e2e.sh [OPTIONS] SHIFTADD_MODEL.gguf...
#   --windows W     PPL windows (default 4; 0 skips PPL)   --seqlen N   window (default 2048)
#   --n-gen N       tokens decoded (default 128)           --reps R     repetitions (default 3)
#   --threads LIST  thread counts (default 1,2)            --types LIST llama.cpp quants
#                                                          (default Q4_0,Q3_K_S,Q2_K; TYPE+head=H
#                                                          also stores the LM head as H)
#   --note TEXT     recorded as is (e.g. the convert command of a model); repeatable
# Environment: MODEL (the requantization source, default the Q4_1 SmolLM2 file), B, JOBS,
# LLAMACPP_DIR (see bench/llamacpp_lib.sh). Requantized files go to bench/tmp/ (git-ignored)
# and are reused. Output: bench/results/e2e-llamacpp-<date>.{json,md}, or with REPORT=NAME
# bench/results/NAME.{json,md} (a second run of the day keeps the first).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/llamacpp_lib.sh
windows=4 seqlen=2048 n_gen=128 reps=3 threads=1,2 types=Q4_0,Q3_K_S,Q2_K notes=()
args="$*"
while [ $# -gt 0 ]; do
	case $1 in
	--windows) windows=$2; shift ;;
	--seqlen) seqlen=$2; shift ;;
	--n-gen) n_gen=$2; shift ;;
	--reps) reps=$2; shift ;;
	--threads) threads=$2; shift ;;
	--types) types=$2; shift ;;
	--note) notes+=("$2"); shift ;;
	-h|--help) sed -n '2,18p' "$0"; exit 0 ;;
	-*) echo "llamacpp_e2e.sh: unknown option '$1'" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -gt 0 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
for m in "$@" "$MODEL"; do
	[ -f "$m" ] || { echo "llamacpp_e2e.sh: no such model '$m'" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. llama.cpp tools, and the requantized files (same Q4_1 source, --allow-requantize).
llamacpp_build llama-quantize llama-bench
: >"$tmp/quants.jsonl"
for t in ${types//,/ }; do
	# TYPE+head=H: the embedding and output tensors (the LM head, tied or not) as H too
	qt=${t%%+*} head=()
	[ "$t" = "$qt" ] || head=(--token-embedding-type "${t#*+head=}" --output-tensor-type "${t#*+head=}")
	out="bench/tmp/$(basename "$MODEL" .gguf | sed 's/\.Q4_1$//').${t//[+=]/-}.gguf"
	cmd="llama-quantize --allow-requantize ${head[*]} $MODEL $out $qt"
	if [ ! -f "$out" ]; then
		echo "$cmd" >&2
		"$LLAMACPP_BIN/llama-quantize" --allow-requantize "${head[@]}" "$MODEL" "$out.part" "$qt" \
			>"$tmp/quantize-$t.log" 2>&1 || { cat "$tmp/quantize-$t.log" >&2; exit 1; }
		mv "$out.part" "$out"
	fi
	printf '{"type": "%s", "file": "%s", "quantize_cmd": "%s"}\n' "$t" "$out" "$cmd" \
		>>"$tmp/quants.jsonl"
done
quant_files=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["file"] for l in open(sys.argv[1])))' "$tmp/quants.jsonl")

# 2. Decode speed, interleaved per thread count so both systems see the same load.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
prompt="The history of the city begins"
: >"$tmp/llama.jsonl"
: >"$tmp/ours.jsonl"
# Repetition-major: every system runs once per round, so the VM's slow drift (10-20% over
# minutes) reaches all of them alike instead of whichever ran last.
for th in ${threads//,/ }; do
	for r in $(seq "$reps"); do
		for f in $quant_files; do
			cmd="llama-bench -m $f -p 0 -n $n_gen -t $th -r 1 -o jsonl"
			echo "$cmd  (rep $r)" >&2
			"$LLAMACPP_BIN/llama-bench" -m "$f" -p 0 -n "$n_gen" -t "$th" -r 1 -o jsonl \
				2>"$tmp/llama-bench.err" | while read -r line; do
				printf '{"cmd": "%s", "file": "%s", "rep": %d, "result": %s}\n' \
					"$cmd" "$f" "$r" "$line"
			done >>"$tmp/llama.jsonl" || { cat "$tmp/llama-bench.err" >&2; exit 1; }
		done
		for m in "$@"; do
			cmd="$SA generate --model $m --backend shiftadd -j $th -n $n_gen --temp 0 --json"
			echo "$cmd  (rep $r)" >&2
			res=$($cmd -p "$prompt" 2>"$tmp/gen.err" | tail -1)
			case $res in "{"*) ;; *) cat "$tmp/gen.err" >&2; exit 1 ;; esac
			printf '{"cmd": "%s", "model": "%s", "threads": %d, "rep": %d, "result": %s}\n' \
				"$cmd -p '$prompt'" "$m" "$th" "$r" "$res" >>"$tmp/ours.jsonl"
		done
	done
done

# 3. Perplexity on our protocol: every llama.cpp quant and the source through the dense path,
#    ours through the shift-add kernels.
: >"$tmp/ppl.jsonl"
if [ "$windows" -gt 0 ]; then
	for f in "$MODEL" $quant_files "$@"; do
		be=dense
		case " $* " in *" $f "*) be=shiftadd ;; esac
		cmd="$SA eval ppl --model $f --backend $be --seqlen $seqlen --limit-windows $windows -j 2 --json"
		echo "$cmd" >&2
		res=$($cmd 2>"$tmp/ppl.err" | tail -1)
		case $res in "{"*) ;; *) cat "$tmp/ppl.err" >&2; exit 1 ;; esac
		printf '{"cmd": "%s", "file": "%s", "result": %s}\n' "$cmd" "$f" "$res" \
			>>"$tmp/ppl.jsonl"
	done
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "${notes[@]}" >"$tmp/notes.txt"

# 4. One report.
SA="$SA" python3 - "$tmp" "bench/results/${REPORT:-e2e-llamacpp-$DATE}" "$COMMIT" "bench/llamacpp_e2e.sh $args" \
	"$load_start" "$load_end" "$LLAMACPP_VERSION" "$(llamacpp_commit)" "$MODEL" "$CPU" "$NCPU" \
	"$windows" "$seqlen" "$n_gen" "$reps" <<'PY'
import json, os, platform, statistics, sys
(tmp, out, commit, command, load_start, load_end, version, lcommit, source, cpu, ncpu,
 windows, seqlen, n_gen, reps) = sys.argv[1:16]
rd = lambda n: [json.loads(l) for l in open(os.path.join(tmp, n)) if l.strip()]
quants, llama, ours, ppl = rd("quants.jsonl"), rd("llama.jsonl"), rd("ours.jsonl"), rd("ppl.jsonl")
notes = [l.rstrip("\n") for l in open(os.path.join(tmp, "notes.txt")) if l.strip()]

def file_info(path):
    """Tensor type mix and bits per weight of the blocks' 2-D (linear) weights, read with our
    own `shiftadd info --json` (PyPI gguf need not be installed)."""
    info = {"file": path, "size_bytes": os.path.getsize(path)}
    try:
        import collections, math, subprocess
        sa = os.environ.get("SA", "build/release/bin/shiftadd")
        d = json.loads(subprocess.run([sa, "info", "--json", path], capture_output=True,
                                      text=True, check=True).stdout)
        meta, tens = d["metadata"], d["tensors"]
        if "shiftadd.avg_bits" in meta:
            info["kind"] = "shiftadd"
            info["method"] = meta["shiftadd.method"]
            info["bits"] = meta["shiftadd.bits"]
            info["linear_bpw"] = float(meta["shiftadd.avg_bits"])
        else:
            lin = [t for t in tens
                   if t["name"].startswith("blk.") and sum(x > 1 for x in t["shape"]) == 2]
            info["kind"] = "gguf"
            info["linear_types"] = dict(collections.Counter(t["type"] for t in lin))
            info["linear_bpw"] = (8 * sum(t["bytes"] for t in lin) /
                                  sum(math.prod(t["shape"]) for t in lin))
        info["all_types"] = dict(collections.Counter(t["type"] for t in tens))
    except Exception as e:  # no binary, or a file it cannot read
        info["error"] = repr(e)[:200]
    return info

ppl_of = {p["file"]: p["result"] for p in ppl}
systems = []
for q in quants:
    rows = [l for l in llama if l["file"] == q["file"]]
    speed = {}
    for th in dict.fromkeys(l["result"]["n_threads"] for l in rows):
        v = [l["result"]["avg_ts"] for l in rows if l["result"]["n_threads"] == th]
        speed[str(th)] = {"tok_s": statistics.mean(v),
                          "stddev": statistics.stdev(v) if len(v) > 1 else 0.0, "samples": v,
                          "cmd": next(l["cmd"] for l in rows if l["result"]["n_threads"] == th)}
    systems.append({"system": "llama.cpp", "name": q["type"], **q, **file_info(q["file"]),
                    "llama_type": rows[0]["result"].get("model_type") if rows else None,
                    "decode": speed, "ppl": ppl_of.get(q["file"])})
for m in dict.fromkeys(o["model"] for o in ours):
    speed = {}
    for th in dict.fromkeys(o["threads"] for o in ours if o["model"] == m):
        rs = [o for o in ours if o["model"] == m and o["threads"] == th]
        v = [o["result"]["decode_tok_s"] for o in rs]
        speed[str(th)] = {"tok_s": statistics.mean(v),
                          "stddev": statistics.stdev(v) if len(v) > 1 else 0.0, "samples": v,
                          "generated_tokens": [o["result"]["generated_tokens"] for o in rs],
                          "shiftadd_layers": rs[0]["result"].get("shiftadd_layers"),
                          "cmd": rs[0]["cmd"]}
    systems.append({"system": "shiftadd", "name": os.path.basename(m), **file_info(m),
                    "decode": speed, "ppl": ppl_of.get(m)})
ratios = []
for s in [x for x in systems if x["system"] == "shiftadd"]:
    for q in [x for x in systems if x["system"] == "llama.cpp"]:
        for th, d in s["decode"].items():
            p = q["decode"].get(th)
            if p and p["tok_s"]:
                ratios.append({"ours": s["name"], "llama_cpp": q["name"], "threads": int(th),
                               "ratio": d["tok_s"] / p["tok_s"]})
doc = {"bench": "e2e-llamacpp", "command": command, "commit": commit, "machine": platform.node(),
       "cpu": cpu, "cpus_online": int(ncpu), "loadavg_start": load_start, "loadavg_end": load_end,
       "llama_cpp": f"{version} (vendored llama.cpp, CPU, GGML_NATIVE, no OpenMP); {lcommit}",
       "source_model": source, "n_gen": int(n_gen), "reps": int(reps),
       "ppl_protocol": {"windows": int(windows), "seqlen": int(seqlen),
                        "data": "WikiText-2 test (shiftadd eval ppl default)"},
       "source_ppl": ppl_of.get(source), "notes": notes, "systems": systems, "ratios": ratios}
json.dump(doc, open(out + ".json", "w"), indent=1)

fmt = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"
ths = sorted({th for s in systems for th in s["decode"]}, key=int)
f = open(out + ".md", "w")
f.write(f"# Decode speed and PPL: shiftadd vs llama.cpp ({doc['llama_cpp'].split(';')[0]})\n\n")
f.write(f"- command: `{command}`\n- commit: {commit}; llama.cpp: {lcommit}\n")
f.write(f"- machine: {cpu}, {ncpu} CPUs online, **shared with other jobs** (load average "
        f"{load_start} at the start, {load_end} at the end): timings are noisy\n")
f.write(f"- decode: {n_gen} tokens, batch 1, mean of {reps} runs, interleaved (every system once "
        f"per round); llama.cpp `llama-bench -p 0 -n {n_gen} -r 1` (no prompt), ours `shiftadd generate --temp 0` (decode rate after a 6-token "
        "prompt; stops early at EOS, see 'generated' in the JSON)\n")
f.write(f"- llama.cpp files: `llama-quantize --allow-requantize` of {os.path.basename(source)}; "
        "K-quants need rows of a multiple of 256 columns, so on narrower ones (SmolLM2's 576, "
        "Gemma 3 270M's 640) llama-quantize falls back to Q4_0 for those tensors: the type mix is listed (Q3_K_S and Q2_K can come "
        "out as the same file)\n")
f.write("- llama.cpp runs ggml's spinning thread pool: on an oversubscribed machine its "
        "multi-thread figures collapse (threads spin while a preempted peer holds the barrier); "
        "compare multi-thread ratios only from a quiet machine\n")
if int(windows):
    f.write(f"- PPL: our protocol, WikiText-2 test, {windows} windows x {seqlen} tokens "
            f"(`shiftadd eval ppl`; llama.cpp files dequantized on our dense path)"
            + (f"; source {os.path.basename(source)}: {fmt(doc['source_ppl']['ppl'], 3)}"
               if doc["source_ppl"] else "") + "\n")
for n in notes:
    f.write(f"- `{n}`\n")
f.write("\n| system | file | linear bpw | size (MB) | " +
        " | ".join(f"tok/s {t} thr" for t in ths) + " | PPL | linear tensor types |\n")
f.write("|---|---|---|---|" + "---|" * len(ths) + "---|---|\n")
for s in systems:
    cells = [s["system"], s["name"] if s["system"] == "shiftadd" else
             f"{s['name']} ({os.path.basename(s['file'])})", fmt(s.get("linear_bpw")),
             fmt(s["size_bytes"] / 1e6, 1)]
    for t in ths:
        d = s["decode"].get(t)
        cells.append("-" if not d else f"{d['tok_s']:.1f} ± {d['stddev']:.1f}")
    cells.append(fmt(s["ppl"]["ppl"], 3) if s.get("ppl") else "-")
    if s["system"] == "shiftadd":
        cells.append(f"{s.get('method')}, {s.get('bits')}-bit")
    else:
        cells.append(", ".join(f"{k} {v}" for k, v in (s.get("linear_types") or {}).items()))
    f.write("| " + " | ".join(str(c) for c in cells) + " |\n")
if ratios:
    f.write("\nRatio ours / llama.cpp decode tokens/s (> 1: we are faster):\n\n")
    f.write("| ours | llama.cpp | " + " | ".join(f"{t} thr" for t in ths) + " |\n")
    f.write("|---|---|" + "---|" * len(ths) + "\n")
    for o in dict.fromkeys(r["ours"] for r in ratios):
        for q in dict.fromkeys(r["llama_cpp"] for r in ratios):
            cells = [o, q]
            for t in ths:
                r = [x["ratio"] for x in ratios if x["ours"] == o and x["llama_cpp"] == q
                     and x["threads"] == int(t)]
                cells.append(fmt(r[0]) if r else "-")
            f.write("| " + " | ".join(cells) + " |\n")
f.close()
print(open(out + ".md").read())
PY
