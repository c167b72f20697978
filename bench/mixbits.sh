#!/usr/bin/env bash
# Mixed-bit allocation benchmark (issue 7): SmolLM2 converted at average budgets with the
# exact knapsack (objective: --alloc-weight rel, the default; one abs row for comparison) and
# the paper's proxy, beside uniform shiftadd-acc 2/3-bit and shiftadd-lat 3-bit; the same
# over shiftadd-rht --rht both (mixed and uniform 2/3-bit); WikiText-2 PPL, exact average
# bits, decode tokens/s.
#
#   bench/mixbits.sh convert NAME ARGS...   one conversion into $WORK/NAME.gguf (+ .log)
#   bench/mixbits.sh eval NAME...           PPL + decode speed of $WORK/NAME.gguf -> NAME.json
#   bench/mixbits.sh report                 bench/results/mixbits-<date>.{md,json}
#   bench/mixbits.sh all                    everything, in order (hours on a small box)
#
# Light protocol by default (a 2-core shared box): CALIB="--nsamples 16 --seqlen 512",
# ROUNDS=10, PPL on the first WINDOWS=8 windows of 2048 tokens. The mixed runs take their
# errors from one measuring pass at 3 bits per method (--alloc-save / --alloc-load), so all
# budgets and both allocators see the same measurement. Set the variables for the full protocol.
# BACKEND=dense|shiftadd picks the eval ppl path (same PPL within 0.03%, dense is faster);
# GEN=0 skips the decode-speed run (for a shared machine, where tok/s would mean nothing).
# bench/results/mixbits-<date>.notes.md, if present, is appended to the report.
# REPORT=NAME writes bench/results/NAME.{md,json} (and appends NAME.notes.md) instead, e.g.
# when a report of the same date exists.
# MIXBITS_CMD="..." is quoted in the report as the command (when rows were run one by one).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release}
SA=${SA:-$B/bin/shiftadd}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
WORK=${WORK:-/tmp/shiftadd-mixbits}
CALIB=${CALIB:---nsamples 16 --seqlen 512}
ROUNDS=${ROUNDS:-10}
WINDOWS=${WINDOWS:-8}
THREADS=${THREADS:-1}
NPRED=${NPRED:-64}
BACKEND=${BACKEND:-shiftadd}
GEN=${GEN:-1}
mkdir -p "$WORK"

convert() {
	local name=$1
	shift
	# shellcheck disable=SC2086
	"$SA" convert -m "$MODEL" -o "$WORK/$name.gguf" $CALIB --rounds "$ROUNDS" -j "$THREADS" \
		-q "$@" >"$WORK/$name.table" 2>"$WORK/$name.log"
	echo "$SA convert -m $MODEL -o $WORK/$name.gguf $CALIB --rounds $ROUNDS -j $THREADS -q $*" \
		>"$WORK/$name.cmd"
}

eval_one() {
	local name=$1 f=$WORK/$1.gguf
	[ "$name" = fp ] && f=$MODEL
	"$SA" eval ppl -m "$f" --limit-windows "$WINDOWS" -j "$THREADS" --backend "$BACKEND" \
		--json >"$WORK/$name.ppl.json"
	[ "$GEN" = 1 ] || return 0
	"$SA" generate -m "$f" -p "The history of the city begins" -n "$NPRED" --temp 0 \
		-j "$THREADS" --json >"$WORK/$name.gen.json" 2>/dev/null
}

report() {
	python3 - "$WORK" "$MODEL" "$WINDOWS" "$CALIB" "$ROUNDS" "$THREADS" "$BACKEND" "$GEN" <<'EOF'
import json, os, sys, subprocess, datetime, platform
work, model, windows, calib, rounds, threads, backend, gen = sys.argv[1:]
rows = [
    ("fp", "FP (Q4_1 dequantized)", None),
    ("acc2", "uniform shiftadd-acc 2-bit", None),
    ("acc3", "uniform shiftadd-acc 3-bit", None),
    ("lat3", "uniform shiftadd-lat 3-bit", None),
]
for b in ("2.2", "2.5", "3.0"):
    rows.append((f"exact-{b}", f"shiftadd-acc mixed, exact (rel), budget {b}", float(b)))
    rows.append((f"exact-abs-{b}", f"shiftadd-acc mixed, exact (abs), budget {b}", float(b)))
    rows.append((f"proxy-{b}", f"shiftadd-acc mixed, proxy, budget {b}", float(b)))
rows += [
    ("rht2", "uniform shiftadd-rht both 2-bit", None),
    ("rht3", "uniform shiftadd-rht both 3-bit", None),
]
for b in ("2.2", "2.5", "3.0"):
    rows.append((f"rht-exact-{b}", f"shiftadd-rht both mixed, exact (rel), budget {b}", float(b)))
    rows.append((f"rht-proxy-{b}", f"shiftadd-rht both mixed, proxy, budget {b}", float(b)))

def gguf_meta(path):
    """shiftadd.avg_bits (parameter-weighted over the linears, scales counted) and widths."""
    from gguf import GGUFReader
    r = GGUFReader(path)
    out = {}
    f = r.fields["shiftadd.avg_bits"]
    out["avg_bits"] = float(f.parts[f.data[0]][0])
    f = r.fields["shiftadd.tensor_bits"]
    out["bits"] = [int(f.parts[i][0]) for i in f.data]
    return out

res = []
for key, label, budget in rows:
    d = {"name": key, "label": label, "budget": budget}
    pj = os.path.join(work, key + ".ppl.json")
    if not os.path.exists(pj) or not os.path.getsize(pj):
        continue  # not run, or its eval still running
    d["ppl"] = json.load(open(pj)).get("ppl")
    gj = os.path.join(work, key + ".gen.json")
    if os.path.exists(gj) and os.path.getsize(gj):
        g = json.load(open(gj))
        d["decode_tok_s"] = g.get("decode_tok_s") or g.get("timings", {}).get("decode_tok_s")
    if key != "fp":
        path = os.path.join(work, key + ".gguf")
        m = gguf_meta(path)
        d["avg_bits"] = m["avg_bits"]
        d["widths"] = {w: m["bits"].count(w) for w in (2, 3, 4)}
        cmdf = os.path.join(work, key + ".cmd")
        d["command"] = open(cmdf).read().strip() if os.path.exists(cmdf) else None
        tab = os.path.join(work, key + ".table")
        if os.path.exists(tab):
            last = [l for l in open(tab) if l.startswith("widths:")]
            if last:
                d["summary"] = last[-1].strip()
    res.append(d)

fp = next((r["ppl"] for r in res if r["name"] == "fp"), None)
commit = os.environ.get("BENCH_COMMIT") or subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][:1]
date = datetime.date.today().isoformat()
name = os.environ.get("REPORT") or f"mixbits-{date}"
machine = f"{cpu[0] if cpu else '?'}, {os.cpu_count()} CPUs (shared with other jobs), {platform.system()} {platform.release()}"
meta = {"date": date, "commit": commit, "machine": machine, "model": model,
        "protocol": f"WikiText-2 test, first {windows} windows of 2048 tokens (light); calibration {calib}, BCQ rounds {rounds}, {threads} thread(s), eval ppl --backend {backend}",
        "rows": res}
os.makedirs("bench/results", exist_ok=True)
json.dump(meta, open(f"bench/results/{name}.json", "w"), indent=1)
with open(f"bench/results/{name}.md", "w") as f:
    f.write(f"# Mixed-bit allocation, SmolLM2-135M-Instruct ({date})\n\n")
    f.write(f"- commit `{commit}`, machine: {machine}\n- protocol: {meta['protocol']}\n")
    f.write(f"- command: `{os.environ.get('MIXBITS_CMD') or 'bench/mixbits.sh all'}` "
            "(per-row commands in the JSON)\n\n")
    f.write("| model | avg bits (exact) | widths 2/3/4 | PPL | PPL / FP | decode tok/s |\n|---|---|---|---|---|---|\n")
    for r in res:
        w = r.get("widths"); ws = f"{w[2]}/{w[3]}/{w[4]}" if w else "-"
        ab = f"{r['avg_bits']:.4f}" if "avg_bits" in r else "-"
        ratio = f"{r['ppl']/fp:.3f}" if fp and r.get("ppl") else "-"
        ts = f"{r['decode_tok_s']:.1f}" if r.get("decode_tok_s") else "-"
        f.write(f"| {r['label']} | {ab} | {ws} | {r['ppl']:.3f} | {ratio} | {ts} |\n")
    ppl = {r["name"]: r.get("ppl") for r in res}
    f.write("\nTargets (issue 7):\n\n")
    for pre, what in (("", "shiftadd-acc"), ("rht-", "shiftadd-rht both")):
        x = ppl.get(f"{pre}exact-2.5")
        if x and ppl.get("lat3"):
            ok = x < ppl["lat3"]
            f.write(f"- {what} exact @2.5 ({x:.3f}) vs uniform 3-bit shiftadd-lat "
                    f"({ppl['lat3']:.3f}): {'met' if ok else 'NOT met'}\n")
        for b in ("2.2", "2.5", "3.0"):
            x, y = ppl.get(f"{pre}exact-{b}"), ppl.get(f"{pre}proxy-{b}")
            if x and y:
                f.write(f"- {what} budget {b}: exact {x:.3f} vs proxy {y:.3f}: "
                        f"{'exact better' if x < y else 'proxy better or equal'}\n")
    f.write("\nNotes:\n\n"
            "- Light protocol (2-core shared box): 16 calibration windows of 512 tokens, 10 BCQ "
            "rounds (paper: 128 x 2048, 50 rounds), PPL on the first 8 of 147 windows. Compare "
            "rows with each other, not with full-protocol numbers.\n"
            "- All mixed rows of a method take their per-layer errors from one measuring pass at "
            "3 bits (`--alloc-save`, then `--alloc-load`); the budget counts the scales and is "
            "never exceeded (avg bits column, from `shiftadd.avg_bits`). exact (rel) minimizes "
            "the sum of relative output errors (`--alloc-weight rel`, the default), exact (abs) "
            "the sum of absolute ones (the objective of the 2026-11-22 run).\n"
            + ("- Decode tokens/s are from `shiftadd generate` (default backend) on this "
               "machine as it was during the run: compare them only with each other.\n"
               if gen == "1" else
               "- Decode tokens/s not measured (GEN=0: the machine was shared with timing "
               "runs).\n"))
notes = f"bench/results/{name}.notes.md"  # hand-written, survives re-reports
if os.path.exists(notes):
    with open(f"bench/results/{name}.md", "a") as f:
        f.write("\n" + open(notes).read())
print(open(f"bench/results/{name}.md").read())
EOF
}

case "${1:-all}" in
convert)
	shift
	convert "$@"
	;;
eval)
	shift
	for n in "$@"; do eval_one "$n"; done
	;;
report)
	report
	;;
all)
	convert acc2 -M shiftadd-acc -b 2
	convert acc3 -M shiftadd-acc -b 3
	convert lat3 -M shiftadd-lat -b 3
	convert rht2 -M shiftadd-rht --rht both -b 2
	convert rht3 -M shiftadd-rht --rht both -b 3
	convert exact-2.5 -M shiftadd-acc --bits auto --avg-bits 2.5 --alloc-base 3 \
		--alloc-save "$WORK/measure-3.json"
	convert rht-exact-2.5 -M shiftadd-rht --rht both --bits auto --avg-bits 2.5 \
		--alloc-base 3 --alloc-save "$WORK/measure-rht-3.json"
	convert exact-abs-2.5 -M shiftadd-acc --bits auto --avg-bits 2.5 --alloc-weight abs \
		--alloc-load "$WORK/measure-3.json"
	for b in 2.2 2.5 3.0; do
		for a in exact proxy; do
			[ "$b" = 2.5 ] && [ "$a" = exact ] && continue
			convert "$a-$b" -M shiftadd-acc --bits auto --avg-bits "$b" --alloc "$a" \
				--alloc-load "$WORK/measure-3.json"
			convert "rht-$a-$b" -M shiftadd-rht --rht both --bits auto --avg-bits "$b" \
				--alloc "$a" --alloc-load "$WORK/measure-rht-3.json"
		done
	done
	for n in fp acc2 acc3 lat3 rht2 rht3 exact-abs-2.5; do
		eval_one "$n"
	done
	for b in 2.2 2.5 3.0; do
		for a in exact proxy; do
			eval_one "$a-$b"
			eval_one "rht-$a-$b"
		done
	done
	report
	;;
*)
	echo "usage: bench/mixbits.sh [all | convert NAME ARGS... | eval NAME... | report]" >&2
	exit 2
	;;
esac
