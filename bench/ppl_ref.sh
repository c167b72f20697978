#!/usr/bin/env bash
# Our WikiText-2 perplexity against PyPI transformers on the same token windows.
#   bench/ppl_ref.sh [WINDOWS]   (default 8; 0 = all 147, hours on a 2-core machine)
# MODEL=models/gemma-3-270m-q4_k_m.gguf for Gemma 3 (both sides put BOS before each window,
# as its tokenizer asks); PYTHON picks the interpreter that has the packages.
# Needs: pip install torch transformers gguf accelerate
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
W=${1:-8}
PYTHON=${PYTHON:-python3}
TAG=$(basename "$MODEL" .gguf | tr 'A-Z' 'a-z' | cut -d. -f1)
ids=bench/tmp/wikitext-ids.txt
ours=bench/tmp/ppl-ours.json
ref=bench/tmp/ppl-ref.json

"$SA" eval ppl --model "$MODEL" --limit-windows "$W" --dump-ids "$ids" --json > "$ours"
bos=$(json_get "$ours" bos)
"$PYTHON" tools/ref_ppl.py --model-dir "$(dirname "$MODEL")" --gguf "$(basename "$MODEL")" \
	--ids "$ids" --limit-windows "$W" $([ "$bos" = True ] && echo --bos) --json "$ref" > /dev/null
out=bench/results/ppl-ref-$TAG-$DATE
header "WikiText-2 perplexity of $(basename "$MODEL"): shiftadd vs transformers ($W windows)" \
	"MODEL=$MODEL bench/ppl_ref.sh $W" > "$out.md"
python3 - "$ours" "$ref" "$out" "$COMMIT" "$CPU" "$W" <<'PY'
import json, sys
ours, ref = (json.load(open(p)) for p in sys.argv[1:3])
out, commit, cpu, w = sys.argv[3:7]
rel = abs(ours["ppl"] - ref["ppl"]) / ref["ppl"]
res = dict(ours=ours, transformers=ref, rel_diff=rel, commit=commit, machine=cpu,
           command=f"bench/ppl_ref.sh {w}")
json.dump(res, open(out + ".json", "w"), indent=1)
with open(out + ".md", "a") as f:
    f.write(f"| windows | seqlen | BOS | our PPL | transformers PPL | rel. diff | our tok/s | ids sha256 |\n")
    f.write(f"|---|---|---|---|---|---|---|---|\n")
    f.write(f"| {ours['windows']} | {ours['seqlen']} | {ours['bos']} | {ours['ppl']:.6f} | "
            f"{ref['ppl']:.6f} | {100 * rel:.5f}% | {ours['tok_per_s']:.1f} | "
            f"{ref['ids_sha256'][:16]}... |\n")
print(f"ppl ours {ours['ppl']:.4f} transformers {ref['ppl']:.4f} rel diff {100 * rel:.4f}%")
PY
