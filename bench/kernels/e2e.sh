#!/usr/bin/env bash
# End to end: the same converted models through the dense dequantized path and through the
# shift-add kernels. Perplexity (shiftadd eval ppl --backend dense|shiftadd) and decode
# tokens/s (shiftadd generate, greedy, batch 1) at 1 and 2 threads.
#
# Usage: bench/kernels/e2e.sh [--seqlen N] [--windows N] [--n-predict N] [--note TEXT]...
#        MODEL.gguf...   (--note: e.g. the convert command of a model, recorded as is)
# Output: bench/results/kernels-e2e-<date>.{json,md}
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build/release}
seqlen=2048 windows=8 n_predict=128 notes=()
while [ $# -gt 0 ]; do
	case $1 in
	--seqlen) seqlen=$2; shift ;;
	--windows) windows=$2; shift ;;
	--n-predict) n_predict=$2; shift ;;
	--note) notes+=("$2"); shift ;;
	-h|--help) sed -n '2,8p' "$0"; exit 0 ;;
	*) break ;;
	esac
	shift
done
[ $# -gt 0 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
date=$(date +%F)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prompt="The history of the city begins"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for model in "$@"; do
	for be in dense shiftadd; do
		cmd="$B/bin/shiftadd eval ppl --model $model --backend $be --seqlen $seqlen --limit-windows $windows -j 2 --json"
		echo "$cmd" >&2
		printf '{"cmd": "%s", "result": %s}\n' "$cmd" "$($cmd)" >>"$tmp/ppl.jsonl"
		for th in 1 2; do
			cmd="$B/bin/shiftadd generate --model $model --backend $be -j $th -n $n_predict --temp 0 --json"
			echo "$cmd" >&2
			printf '{"cmd": "%s", "threads": %d, "result": %s}\n' "$cmd -p '$prompt'" "$th" \
				"$($cmd -p "$prompt")" >>"$tmp/gen.jsonl"
		done
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "${notes[@]}" >"$tmp/notes.txt"
mkdir -p bench/results
python3 - "$tmp" "bench/results/kernels-e2e-$date" "$commit" "$seqlen" "$windows" \
	"$load_start" "$load_end" <<'PY'
import json, os, platform, sys
tmp, out, commit, seqlen, windows, load_start, load_end = sys.argv[1:8]
ppl = [json.loads(l) for l in open(os.path.join(tmp, "ppl.jsonl"))]
gen = [json.loads(l) for l in open(os.path.join(tmp, "gen.jsonl"))]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
doc = {"bench": "kernels-e2e", "commit": commit, "machine": platform.node(), "cpu": cpu,
       "cpus_online": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": load_end,
       "notes": [l.rstrip("\n") for l in open(os.path.join(tmp, "notes.txt")) if l.strip()],
       "ppl": ppl, "decode": gen}
json.dump(doc, open(out + ".json", "w"), indent=1)
models = []
for p in ppl:
    if p["result"]["model"] not in models:
        models.append(p["result"]["model"])
f = open(out + ".md", "w")
f.write(f"# Shift-add kernels end to end\n\n- commit: {commit}\n- machine: {cpu}, {os.cpu_count()} CPUs "
        f"online, shared with other jobs (load average {load_start} at the start, {load_end} at the end): "
        "timings are noisy\n"
        f"- PPL: WikiText-2 test, {windows} windows x {seqlen} tokens; commands in the JSON\n\n")
for n in doc["notes"]:
    f.write(f"- `{n}`\n")
f.write("\n")
f.write("| model | PPL dense (dequantized) | PPL shift-add kernels | rel. diff | shift-add layers |\n|---|---|---|---|---|\n")
for m in models:
    d = next(p["result"] for p in ppl if p["result"]["model"] == m and p["result"]["backend"] == "dense")
    s = next(p["result"] for p in ppl if p["result"]["model"] == m and p["result"]["backend"] == "shiftadd")
    f.write(f"| {os.path.basename(m)} | {d['ppl']:.4f} | {s['ppl']:.4f} | {100 * (s['ppl'] / d['ppl'] - 1):+.3f}% | {s['shiftadd_layers']} |\n")
f.write("\n| model | backend | threads | decode tok/s | prefill tok/s | generated |\n|---|---|---|---|---|---|\n")
for g in gen:
    r = g["result"]
    m = next(x for x in models if x in g["cmd"])
    f.write(f"| {os.path.basename(m)} | {r['backend']} | {g['threads']} | {r['decode_tok_s']:.2f} | {r['prefill_tok_s']:.1f} | {r['generated_tokens']} |\n")
f.close()
print(open(out + ".md").read())
PY
