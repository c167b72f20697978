# Shared by the bench scripts: where results go and what they record about the run.
B=${B:-build/release}
SA="$B/bin/shiftadd"
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DATE=$(date +%F)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT-dirty"
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
# Cloud hosts often report only "AMD EPYC": family, model and L3 tell the core generation
# (AMD family 23 = Zen 1/2, 25 = Zen 3/4, 26 = Zen 5), which decides the kernels' speed.
cpu_field() { grep -m1 "^$1" /proc/cpuinfo | cut -d: -f2 | tr -d ' '; }
CPU="$CPU (family $(cpu_field 'cpu family'), model $(cpu_field model), L3 $(lscpu 2>/dev/null |
	sed -n 's/^L3 cache: *\([0-9.]* [KMG]i\?B\).*/\1/p'))"
NCPU=$(nproc)
mkdir -p bench/results bench/tmp

# header TITLE COMMAND: the first lines of a results markdown file
header() {
	printf '# %s\n\n- command: `%s`\n- commit: %s\n- machine: %s, %s CPUs, %s\n- date: %s\n\n' \
		"$1" "$2" "$COMMIT" "$CPU" "$NCPU" "$(uname -r)" "$(date -Is)"
}

# json_get FILE KEY: a top-level number or string from a one-object JSON file
json_get() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
