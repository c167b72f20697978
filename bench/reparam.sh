#!/usr/bin/env bash
# The reparameterization results table (issues 3 and 8): every method on SmolLM2 (or MODEL)
# with one
# calibration set, WikiText-2 perplexity and its ratio to fp, bits per weight with scales,
# conversion wall time and peak memory.
#
#   bench/reparam.sh                      full protocol: calibration 128 x 2048, all windows
#   NSAMPLES=16 SEQLEN=512 WINDOWS=8 bench/reparam.sh    a light run (say so when quoting it)
#   ROWS="fp:3 shiftadd-acc:3" bench/reparam.sh           a subset of method:bits rows
#   REUSE=1 REDO="gptq:3" ROWS="gptq:3" bench/reparam.sh  redo a kept row (its file was deleted):
#                                                         reconverts and replaces the row
#   NOTE="..."                                            stored as "note" in each new row
#   MODEL=models/gemma-3-270m-q4_k_m.gguf TAG=gemma3-light ...   another model (its rows are
#                                                         kept apart from SmolLM2's)
# bench/results/reparam-$TAG.notes.md, if present, is appended below the table on every render
# (hand-written caveats survive re-renders).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-2048}
WINDOWS=${WINDOWS:-0}
THREADS=${THREADS:-2}
ALL_ROWS="fp:16 rtn:4 rtn:3 gptq:4 gptq:3 gptq-g128:4 gptq-g128:3 bcq:3 shiftadd-lat:3 shiftadd-lat:2 shiftadd-acc:4 shiftadd-acc:3 shiftadd-acc:2 shiftadd-acc-sim:4 shiftadd-acc-sim:3 shiftadd-acc-sim:2 shiftadd-rht:4 shiftadd-rht:3 shiftadd-rht:2 shiftadd-rht-both:4 shiftadd-rht-both:3 shiftadd-rht-both:2 shiftadd-rht-both-qep:3 shiftadd-rht-both-qep:2 shiftadd-acc-qep:3 shiftadd-rht-both-qep-head4:3"
ROWS=${ROWS:-$ALL_ROWS}
# Perplexity runs on the dense dequantized path (BLAS prefill, faster); the shift-add kernels
# give the same PPL within 0.03% (bench/results/kernels-e2e-*). BACKEND=shiftadd to check.
BACKEND=${BACKEND:-dense}
tag=${TAG:-$DATE}
case "$MODEL" in
*SmolLM2-135M*) dir=bench/tmp/reparam name="SmolLM2-135M" ;;
*) dir=bench/tmp/reparam-$(basename "$MODEL" .gguf) name=$(basename "$MODEL" .gguf) ;;
esac
mkdir -p "$dir"
out=bench/results/reparam-$tag
rows_json=$dir/rows.jsonl
# REUSE=1 keeps the rows already measured in $dir (same NSAMPLES/SEQLEN/WINDOWS!) and only
# runs the missing ones, so a long table can be built over several sittings.
[ "${REUSE:-0}" = 1 ] && [ -f "$rows_json" ] || : > "$rows_json"
header "Reparameterization results: $name on WikiText-2" \
	"MODEL=$MODEL NSAMPLES=$NSAMPLES SEQLEN=$SEQLEN WINDOWS=$WINDOWS bench/reparam.sh" \
	> "$dir/header.md"

# The table from the rows measured so far (rewritten after every row: a long run that is cut
# off still leaves its finished rows).
render() {
	cat "$dir/header.md" > "$out.md"
	python3 - "$rows_json" "$out" "$NSAMPLES" "$SEQLEN" "$WINDOWS" "$ALL_ROWS" <<-'PY'
	import json, sys
	rows = [json.loads(l) for l in open(sys.argv[1])]
	out, ns, sl, w, order = sys.argv[2:7]
	# Table order = the default ROWS order, whatever order the rows were measured in.
	order = order.split()
	rank = lambda r: order.index(f"{r['method']}:{r['bits']}") if f"{r['method']}:{r['bits']}" in order else len(order)
	rows.sort(key=rank)
	fp = next((r["ppl"] for r in rows if r["method"] == "fp"), None)
	json.dump(dict(rows=rows, nsamples=int(ns), seqlen=int(sl), windows=int(w)),
	          open(out + ".json", "w"), indent=1)
	with open(out + ".md", "a") as f:
	    f.write(f"Calibration {ns} x {sl} tokens of ../shared/data/calib/wiki-passages.txt, seed 0; "
	            f"WikiText-2 windows of 2048: {'all' if w == '0' else w}.\n\n")
	    f.write("| method | bits | PPL | x fp | bits/weight (with scales) | deployable | convert s | peak MiB |\n")
	    f.write("|---|---|---|---|---|---|---|---|\n")
	    for r in rows:
	        ratio = r["ppl"] / fp if fp else float("nan")
	        f.write(f"| {r['method']} | {r['bits']} | {r['ppl']:.3f} | {ratio:.3f} | "
	                f"{r['avg_bits'] or 0:.3f} | {r['deployable']} | {r['convert_s']:.0f} | "
	                f"{r['peak_rss_mib']:.0f} |\n")
	PY
	[ -f "$out.notes.md" ] && { echo; cat "$out.notes.md"; } >> "$out.md"
	cat "$out.md"
}

for row in $ROWS; do
	m=${row%%:*} bits=${row##*:} extra=()
	method=$m
	case $m in
	gptq-g128) method=gptq extra=(--group 128) ;;
	# the plain rows without error propagation, which convert turns on by default for acc
	# and rht at this calibration size; the -qep rows at its default strength
	shiftadd-acc) extra=(--qep 0) ;;
	shiftadd-rht) extra=(--rht input --qep 0) ;;
	shiftadd-rht-both) method=shiftadd-rht extra=(--rht both --qep 0) ;;
	shiftadd-acc-qep) method=shiftadd-acc extra=(--qep 0.3) ;;
	shiftadd-rht-both-qep) method=shiftadd-rht extra=(--rht both --qep 0.3) ;;
	# the same with the LM head converted too, at 4 bits (bits/weight then counts the head)
	shiftadd-rht-both-qep-head4) method=shiftadd-rht extra=(--rht both --qep 0.3 --head shiftadd) ;;
	esac
	f=$dir/$m-$bits.gguf
	log=$dir/$m-$bits.convert.log
	if [[ " ${REDO:-} " == *" $row "* ]]; then
		grep -v "\"method\": \"$m\", \"bits\": $bits," "$rows_json" > "$rows_json.tmp" || :
		mv "$rows_json.tmp" "$rows_json"
	fi
	if grep -q "\"method\": \"$m\", \"bits\": $bits," "$rows_json" 2>/dev/null; then
		echo "== $m $bits-bit: kept from $rows_json" >&2
		continue
	fi
	echo "== $m $bits-bit" >&2
	/usr/bin/time -v "$SA" convert --model "$MODEL" --out "$f" --method "$method" \
		--bits "$bits" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" --threads "$THREADS" \
		--quiet "${extra[@]}" 2> "$log"
	"$SA" eval ppl --model "$f" --limit-windows "$WINDOWS" --threads "$THREADS" \
		--backend "$BACKEND" --json \
		> "$dir/$m-$bits.ppl.json"
	python3 - "$m" "$bits" "$log" "$dir/$m-$bits.ppl.json" "$f" "${NOTE:-}" >> "$rows_json" <<'PY'
import json, re, subprocess, sys
m, bits, log, pj, f, note = sys.argv[1:7]
t = open(log).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", t).group(1)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
parts = [float(x) for x in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
info = json.loads(subprocess.run(["build/release/bin/shiftadd", "info", "--json", f],
                                 capture_output=True, text=True).stdout)
meta = info["metadata"]
row = dict(method=m, bits=int(bits), ppl=json.load(open(pj))["ppl"],
           avg_bits=meta.get("shiftadd.avg_bits"), deployable=meta.get("shiftadd.deployable"),
           convert_s=secs, peak_rss_mib=rss / 1024)
if note:
    row["note"] = note
print(json.dumps(row))
PY
	render > /dev/null
done

render
