#!/usr/bin/env bash
# Install the Debian packages the build and the tests need; silent when all are present.
set -euo pipefail

pkgs=(
	build-essential clang libclang-rt-14-dev clang-format pkg-config
	libcmocka-dev
	libopenblas-dev liblapacke-dev
	libpcre2-dev libcjson-dev
	liburing-dev libnuma-dev numactl libhwloc-dev hwloc
	libprotobuf-c-dev protobuf-c-compiler
	python3 python3-pip unzip binutils xxd
	gnuplot-nox
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
