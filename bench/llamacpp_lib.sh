# Sourced by the llama.cpp peer benchmarks (bench/llamacpp.sh, bench/llamacpp_e2e.sh,
# bench/serve.sh): fetch and build llama.cpp OUTSIDE this repository. No llama.cpp code is
# committed; only these scripts and our own harnesses.
#
# Source: the llama.cpp tree vendored in the PyPI llama-cpp-python sdist (pip download
# --no-deps --no-binary :all:), unpacked under $LLAMACPP_DIR (default /tmp/shiftadd-llamacpp).
# Build: one CPU-only, static, GGML_NATIVE cmake tree at $LLAMACPP_DIR/build, configured once
# with tools, server and tests enabled so any later target is just `cmake --build --target`.
LLAMACPP_DIR=${LLAMACPP_DIR:-/tmp/shiftadd-llamacpp}
LLAMACPP_JOBS=${JOBS:-2}
LLAMACPP_BUILD=$LLAMACPP_DIR/build
LLAMACPP_BIN=$LLAMACPP_BUILD/bin

# llamacpp_fetch: download/unpack the sdist if needed; sets LLAMACPP_SRC, LLAMACPP_VERSION.
llamacpp_fetch() {
	local sdist src
	mkdir -p "$LLAMACPP_DIR"
	sdist=$(ls "$LLAMACPP_DIR"/llama_cpp_python-*.tar.gz 2>/dev/null | head -1 || true)
	if [ -z "$sdist" ]; then
		pip download --no-deps --no-binary :all: llama-cpp-python -d "$LLAMACPP_DIR" >&2
		sdist=$(ls "$LLAMACPP_DIR"/llama_cpp_python-*.tar.gz | head -1)
	fi
	src="$LLAMACPP_DIR/$(basename "$sdist" .tar.gz)"
	[ -d "$src" ] || tar xzf "$sdist" -C "$LLAMACPP_DIR"
	LLAMACPP_SRC="$src/vendor/llama.cpp"
	LLAMACPP_VERSION=$(basename "$src")
}

# llamacpp_build TARGET...: configure (once) and build the named targets with -j $JOBS.
# Targets used here: ggml, llama-bench, llama-quantize, llama-server, llama-simple,
# test-backend-ops. No OpenMP (ggml's own thread pool, like ours), no network features, no
# web UI download: the machine may be offline.
llamacpp_build() {
	[ -n "${LLAMACPP_SRC:-}" ] || llamacpp_fetch
	if ! grep -q '^LLAMA_BUILD_SERVER:BOOL=ON' "$LLAMACPP_BUILD/CMakeCache.txt" 2>/dev/null; then
		cmake -S "$LLAMACPP_SRC" -B "$LLAMACPP_BUILD" -DCMAKE_BUILD_TYPE=Release \
			-DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DGGML_OPENMP=OFF -DGGML_CUDA=OFF \
			-DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
			-DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON \
			-DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >&2
	fi
	local t missing=()
	for t in "$@"; do
		case $t in
		ggml) [ -f "$LLAMACPP_BUILD/ggml/src/libggml.a" ] || missing+=("$t") ;;
		*) [ -x "$LLAMACPP_BIN/$t" ] || missing+=("$t") ;;
		esac
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	cmake --build "$LLAMACPP_BUILD" -j "$LLAMACPP_JOBS" --target "${missing[@]}" >&2
}

# llamacpp_commit: the vendored llama.cpp's build number/commit as its tools print it.
llamacpp_commit() {
	local v
	v=$("$LLAMACPP_BIN/llama-bench" --version 2>&1 || true)
	echo "${v%%$'\n'*}"
}
