#!/usr/bin/env bash
# Conversion wall time and peak memory on the issue-3 protocol (calibration 128 x 2048 of
# ../shared/data/calib/wiki-passages.txt, seed 0, 2 threads), per calibration math, and
# optionally the WikiText-2 perplexity of each result (all windows unless WINDOWS is set).
#
#   bench/convert_time.sh                        shiftadd-acc 3-bit, --qep 0 and default, bf16
#   ROWS="shiftadd-acc:3:0 shiftadd-rht:3:auto" MATHS="bf16 f32" bench/convert_time.sh
#   PPL=1 WINDOWS=0 bench/convert_time.sh        score each conversion too (slow: ~7 min each)
#   NSAMPLES=12 ... a shorter calibration (say so when quoting it)
#
# A row is METHOD:BITS:QEP (QEP "auto" = convert's default). Conversions run one at a time
# with nothing else, all of them before any scoring: their wall time is the measurement.
# Results go to bench/results/convert-time-$TAG.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-2048}
THREADS=${THREADS:-2}
ROWS=${ROWS:-"shiftadd-acc:3:0 shiftadd-acc:3:auto"}
MATHS=${MATHS:-bf16}
PPL=${PPL:-0}
WINDOWS=${WINDOWS:-0}
tag=${TAG:-$DATE}
dir=bench/tmp/convert-time
out=bench/results/convert-time-$tag
mkdir -p "$dir"
: > "$dir/rows.jsonl"
header "Conversion time: $(basename "$MODEL"), $NSAMPLES x $SEQLEN calibration, $THREADS threads" \
	"ROWS=\"$ROWS\" MATHS=\"$MATHS\" NSAMPLES=$NSAMPLES SEQLEN=$SEQLEN PPL=$PPL WINDOWS=$WINDOWS bench/convert_time.sh" \
	> "$out.md"

for row in $ROWS; do
	IFS=: read -r method bits qep <<< "$row"
	extra=()
	[ "$qep" = auto ] || extra=(--qep "$qep")
	[ "$method" = shiftadd-rht ] && extra+=(--rht both)
	for math in $MATHS; do
		f=$dir/$method-$bits-qep$qep-$math.gguf
		log=${f%.gguf}.log
		rm -f "${f%.gguf}.ppl.json" # a score of an earlier file of this name is not this one's
		echo "== $method $bits-bit qep $qep, $math" >&2
		/usr/bin/time -v "$SA" convert --model "$MODEL" --out "$f" --method "$method" \
			--bits "$bits" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" --threads "$THREADS" \
			--calib-math "$math" --quiet "${extra[@]}" 2> "$log"
		python3 - "$method" "$bits" "$qep" "$math" "$log" "$f" >> "$dir/rows.jsonl" <<-'PY'
		import json, re, sys
		method, bits, qep, math, log, f = sys.argv[1:7]
		t = open(log).read()
		wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", t).group(1)
		parts = [float(x) for x in wall.split(":")]
		secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
		rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
		user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
		q = re.search(r"error propagation ([\d.]+)", t)
		print(json.dumps(dict(method=method, bits=int(bits), qep=q.group(1) if q else "0",
		                      math=math, wall_s=secs, user_s=user, peak_mib=rss / 1024,
		                      file=f, ppl=None)))
		PY
	done
done

if [ "$PPL" = 1 ]; then
	for f in $(python3 -c 'import json,sys; [print(json.loads(l)["file"]) for l in open(sys.argv[1])]' "$dir/rows.jsonl"); do
		echo "== scoring $f" >&2
		"$SA" eval ppl --model "$f" --limit-windows "$WINDOWS" --threads "$THREADS" \
			--backend dense --json > "${f%.gguf}.ppl.json"
	done
fi

python3 - "$dir/rows.jsonl" "$out" <<'PY' >> "$out.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    try:
        r["ppl"] = json.load(open(r["file"][:-5] + ".ppl.json"))["ppl"]
    except FileNotFoundError:
        pass
json.dump(dict(rows=rows), open(sys.argv[2] + ".json", "w"), indent=1)
print("| method | bits | qep | calib math | wall | user CPU s | peak MiB | PPL |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    m, s = divmod(r["wall_s"], 60)
    ppl = f"{r['ppl']:.3f}" if r["ppl"] is not None else ""
    print(f"| {r['method']} | {r['bits']} | {r['qep']} | {r['math']} | {int(m)}:{s:04.1f} | "
          f"{r['user_s']:.0f} | {r['peak_mib']:.0f} | {ppl} |")
PY
cat "$out.md"
