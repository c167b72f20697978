#!/usr/bin/env bash
# llama.cpp peer for the kernel benchmark: llama.cpp's CPU mul_mat (ggml) for Q4_0, Q3_K,
# Q2_K and TQ2_0 on the kernel benchmark's shapes, threads and M, next to our shift-add
# kernels (bench-kernels) run in the same invocation, with the ratio per row.
#
# llama.cpp comes from the source tree vendored in the PyPI llama-cpp-python sdist
# (`pip download --no-deps`), built CPU-only with cmake OUTSIDE this repository
# ($LLAMACPP_DIR, default /tmp/shiftadd-llamacpp). No llama.cpp code is committed: only our
# harness bench/llamacpp/ggml_mulmat.c, compiled against that build.
#
# Usage: bench/llamacpp.sh [--quick] [--min-time S] [--bits Q] [--layout col|block]
#   --quick      only the three SmolLM2 shapes (K-quants then need K % 256 == 0: skipped)
# Output: bench/results/llamacpp-<date>.{json,md}, or with REPORT=NAME bench/results/NAME.{json,md}
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release}
DIR=${LLAMACPP_DIR:-/tmp/shiftadd-llamacpp}
quick=0 min_time=0.3 bits=3 layout=col args="$*"
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--min-time) min_time=$2; shift ;;
	--bits) bits=$2; shift ;;
	--layout) layout=$2; shift ;;
	-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
	*) echo "llamacpp.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
	shift
done

# 1-2. Source (the sdist vendors llama.cpp) and the ggml static libraries, CPU only, tuned
#      for this host like our kernels' runtime dispatch picks the best ISA: bench/llamacpp_lib.sh.
. bench/llamacpp_lib.sh
llamacpp_fetch
llamacpp_build ggml
llama=$LLAMACPP_SRC
version=$LLAMACPP_VERSION
libs=$(find "$DIR/build" -name 'libggml*.a' | sort -r | tr '\n' ' ')
cc -O2 -I"$llama/ggml/include" -o "$DIR/ggml_mulmat" bench/llamacpp/ggml_mulmat.c \
	-Wl,--start-group $libs -Wl,--end-group -lstdc++ -lm -lpthread

# 3. Ours, same shapes and threads, same invocation.
date=$(date +%F)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
qflag=()
[ $quick = 1 ] && qflag=(--quick)
"$B/bin/bench-kernels" "${qflag[@]}" --no-blas --min-time "$min_time" --bits "$bits" \
	--layout "$layout" --commit "$commit" --json "$tmp/ours.json" >&2

# 4. llama.cpp on the same rows.
if [ $quick = 1 ]; then
	shapes="576x576 1536x576 576x1536"
else
	shapes="576x576 1536x576 576x1536 4096x4096 11008x4096 4096x11008"
fi
: >"$tmp/peer.jsonl"
for s in $shapes; do
	n=${s%x*} k=${s#*x}
	for th in 1 2; do
		for m in 1 8 16 32; do
			for t in q4_0 q3_K q2_K tq2_0; do
				"$DIR/ggml_mulmat" $t $n $k $m $th "$min_time" >>"$tmp/peer.jsonl" ||
					echo "{\"type\": \"$t\", \"n\": $n, \"k\": $k, \"m\": $m, \"threads\": $th, \"us\": null}" >>"$tmp/peer.jsonl"
			done
		done
	done
done

# 5. One table: our time, each peer's time, peer / ours (> 1: we are faster).
mkdir -p bench/results
python3 - "$tmp/ours.json" "$tmp/peer.jsonl" "bench/results/${REPORT:-llamacpp-$date}" "$version" \
	"$commit" "$args" <<'PY'
import json, sys, platform
ours = json.load(open(sys.argv[1]))
peer = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
out, version, commit, args = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
types = ["q4_0", "q3_K", "q2_K", "tq2_0"]
rows = []
for r in ours["results"]:
    row = {"n": r["n"], "k": r["k"], "threads": r["threads"], "m": r["m"], "ours_us": r["lut_us"]}
    for t in types:
        p = [x for x in peer if x["type"] == t and x["n"] == r["n"] and x["k"] == r["k"]
             and x["m"] == r["m"] and x["threads"] == r["threads"]]
        us = p[0]["us"] if p else None
        row[t + "_us"] = us
        row[t + "_over_ours"] = (us / r["lut_us"]) if us else None
    rows.append(row)
doc = {"bench": "llamacpp-peer", "commit": commit, "command": "bench/llamacpp.sh " + args,
       "llama_cpp": version + " (vendored llama.cpp, ggml CPU, GGML_NATIVE)",
       "cpu": ours.get("cpu"), "cpus_online": ours.get("cpus_online"), "isa": ours.get("isa"),
       "bits": ours["bits"], "layout": ours["layout"], "read_bw_gbs": ours.get("read_bw_gbs"),
       "machine": platform.node(), "date": ours.get("date"), "results": rows}
json.dump(doc, open(out + ".json", "w"), indent=1)
f = open(out + ".md", "w")
f.write(f"# llama.cpp CPU mul_mat vs shift-add kernels ({doc['date']})\n\n")
f.write(f"- command: `{doc['command']}`\n- commit: {commit}\n- peer: {doc['llama_cpp']}\n")
f.write(f"- cpu: {doc['cpu']}, {doc['cpus_online']} CPUs online (shared, noisy); our ISA {doc['isa']}, "
        f"q = {doc['bits']}, {doc['layout']} layout\n")
f.write("- x = llama.cpp time / our time (> 1: we are faster); '-' = K not a multiple of the "
        "type's 256-column block\n\n")
f.write("| N x K | thr | M | ours (us) | Q4_0 (us) | x | Q3_K (us) | x | Q2_K (us) | x | TQ2_0 (us) | x |\n")
f.write("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
fmt = lambda v, p: "-" if v is None else f"{v:.{p}f}"
for r in rows:
    cells = [f"{r['n']} x {r['k']}", str(r["threads"]), str(r["m"]), fmt(r["ours_us"], 1)]
    for t in types:
        cells += [fmt(r[t + "_us"], 1), fmt(r[t + "_over_ours"], 2)]
    f.write("| " + " | ".join(cells) + " |\n")
print(open(out + ".md").read())
PY
