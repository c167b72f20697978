#!/usr/bin/env bash
# `make lint`: layering (a lower layer never includes a higher one), formatting, and a man
# page for every exported client call.
set -u
cd "$(dirname "$0")/.."
fail=0

# module -> modules it must not include
declare -A banned=(
	[common]="kernels engine reparam proto daemon client_lib tools"
	[kernels]="engine reparam proto daemon client_lib tools"
	[engine]="reparam proto daemon client_lib tools"
	[reparam]="proto daemon client_lib tools"
	[proto]="kernels engine reparam daemon client_lib tools"
	[daemon]="reparam client_lib tools"
	[client_lib]="kernels engine reparam daemon tools"
)
for mod in "${!banned[@]}"; do
	for b in ${banned[$mod]}; do
		hits=$(git ls-files "$mod/*.c" "$mod/*.h" | xargs -r grep -ln "#include \"$b/" 2>/dev/null)
		if [ -n "$hits" ]; then
			echo "lint: $mod/ includes $b/: $hits"
			fail=1
		fi
	done
done

if ! git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror 2>/dev/null; then
	echo "lint: files not clang-formatted (run 'make format')"
	fail=1
fi

for sym in $(grep -E '^SHIFTADD_API' include/shiftadd.h | grep -oE 'shiftadd_[a-z_]+\(' | tr -d '(' | sort -u); do
	[ -f "man/$sym.3" ] || { echo "lint: exported $sym has no man/$sym.3"; fail=1; }
done

[ $fail -eq 0 ] && echo "lint: ok"
exit $fail
