#!/usr/bin/env bash
# Multiplication-free proof: disassemble the kernel objects of every ISA path (table build
# and lookup loops, randomized Hadamard transforms; whole files) and fail if any
# multiply-like instruction appears.
# Counted as multiplies: integer and x87/SSE/AVX multiplies (mul, imul, mulx, vmul*, pmul*),
# fused multiply-adds (vfmadd*, vfnmsub*, ...), multiply-accumulate and dot products
# (pmaddwd, pmaddubsw, vpmadd52*, vpdpbusd, vpdpwssd, vdpbf16ps, dpps, AMX tdp*, 4FMAPS),
# carry-less and Galois-field multiplies (pclmul*, vgf2p8*), complex FP16 multiplies,
# and, to be strict, divisions, square roots, reciprocals and vscalef*.
# There is no per-row-block scaling exception: alphas are folded into the activations.
# Usage: kernels/nomul.sh OBJ...   (kernels/module.mk runs it from `make test`)
set -euo pipefail

forbidden='^(f?i?mul[a-z]*|v?p?mul[a-z0-9]*|mulx|v?p?madd[a-z0-9]*|vf(n)?m(add|sub)[a-z0-9]*|vfmaddsub[a-z0-9]*|vfmsubadd[a-z0-9]*|v4fn?madd[a-z]*|vp4dpwssds?|vpdp[a-z]*|vdp[a-z0-9]*|v?dpp[sd]|vgf2p8[a-z0-9]*|v?pclmul[a-z]*|tdp[a-z0-9]*|vfc?mul[a-z]*|vfc?madd[a-z]*|vscalef[a-z]*|v?rcp[a-z0-9]*|v?rsqrt[a-z0-9]*|f?i?div[a-z]*|v?div[a-z]*|v?sqrt[a-z]*)$'

# The pattern itself must catch what it claims and let the lookup/add/shift set through.
for m in imul mull mulx fmul vmulps mulss vpmulld pmullw vpmulhrsw vpmuludq vfmadd231ps \
	vfnmsub132ss vfmaddsub213ps vpmaddubsw pmaddwd vpmadd52luq vpdpbusd vpdpwssds vdpbf16ps \
	dpps vgf2p8mulb pclmulqdq vpclmulqdq tdpbssd vfcmulcph vscalefps vdivps sqrtss vrcpps; do
	[[ $m =~ $forbidden ]] || { echo "nomul: self-test: pattern misses '$m'"; exit 1; }
done
for m in vpshufb vpermb vpermps vpaddw vpaddd vaddps vpsubw vpsrlw vpsllw vpsrad vpslld vpand \
	vpxor vpor vpblendvb vcvtdq2ps vcvtps2dq vpacksswb vpackssdw vpmaxsb vhaddps vmaxps lea shl \
	add sub vpbroadcastd vinserti128 vmovdqu vpmovmskb vpermd; do
	[[ $m =~ $forbidden ]] && { echo "nomul: self-test: pattern wrongly flags '$m'"; exit 1; }
done

status=0
for obj in "$@"; do
	[ -f "$obj" ] || { echo "nomul: missing object $obj"; exit 1; }
	dis=$(objdump -d --no-show-raw-insn "$obj")
	# the right code was disassembled: its kernel entry points are there
	funcs=$(grep -cE '^[0-9a-f]+ <(lut_(tiles|tables)|rht_rows)_[a-z0-9_]+>:' <<<"$dis" || true)
	[ "$funcs" -gt 0 ] || { echo "nomul: $obj has no lut_tiles_*/lut_tables_*/rht_rows_* function"; exit 1; }
	n=0 bad=0 fn=""
	while IFS= read -r line; do
		if [[ $line =~ ^[0-9a-f]+\ \<([^>]+)\>: ]]; then
			fn=${BASH_REMATCH[1]}
			continue
		fi
		[[ $line =~ ^\ +[0-9a-f]+:$'\t'(.*)$ ]] || continue
		insn=${BASH_REMATCH[1]}
		while [[ $insn =~ ^(\{[a-z0-9]+\}|rep[a-z]*|lock|data16|addr32|notrack|bnd|[c-gs]s)\ +(.*)$ ]]; do
			insn=${BASH_REMATCH[2]}
		done
		mn=${insn%% *}
		n=$((n + 1))
		if [[ $mn =~ $forbidden ]]; then
			echo "nomul: $obj <$fn>: $insn"
			bad=$((bad + 1))
		fi
	done <<<"$dis"
	echo "nomul: $obj: $n instructions, $bad multiply-like"
	[ "$bad" -eq 0 ] || status=1
done
exit $status
