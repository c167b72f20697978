#!/usr/bin/env bash
# Issue-2 acceptance figures from the test programs themselves (no Python needed):
# tokenizer ids vs HF tokenizers on WikiText-2, logits vs transformers, long-prefill consistency.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=bench/results/foundation-$DATE.md
T="$B/tests/unit-engine"
header "Foundation acceptance figures" "bench/foundation.sh" > "$out"
{
	echo "## Tokenizers: our ids vs PyPI tokenizers on the whole WikiText-2 test text"
	echo
	echo "Each line: exact match of count, sha256 and first/last 256 ids against the fixture"
	echo "made by tools/ref_tokenize.py (a failed match fails the test)."
	echo
	echo '```'
	"$T" 'test_*wikitext*' 2>&1 | grep -E 'tokens in|OK|FAIL'
	echo '```'
	echo
	echo "## Logits: dense engine vs PyPI transformers (CPU), max |difference| on probed logits"
	echo
	echo "References from tools/ref_model.py in float64 (tiny seeded models through the"
	echo "safetensors loader; SmolLM2 from its GGUF), and transformers' own float32 for SmolLM2."
	echo
	echo '```'
	"$T" 'test_*transformers*' 2>&1 | grep -E 'max \||OK|FAIL'
	"$T" 'test_long_prefill*' 2>&1 | grep -E 'max \||OK|FAIL'
	echo '```'
} >> "$out"
cat "$out"
