#!/usr/bin/env bash
# `make install` into staging dirs (DESTDIR): the expected tree with the install's paths in the
# unit file, a program compiled and linked against the installed header + pkg-config file +
# libshiftadd, installed programs that find the installed library, the default PREFIX, then
# `make uninstall` leaving only the admin's config. Usage: tests/install_check.sh [MODE]
set -euo pipefail
mode=${1:-release}
tmp=$(mktemp -d /tmp/shiftadd-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install-check: FAILED: $*" >&2; exit 1; }
mk() { make --no-print-directory -s MODE="$mode" "$@" > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; fail "make $*"; }; }

d=$tmp/stage
mk install DESTDIR="$d" PREFIX=/usr
for f in bin/shiftadd bin/shiftaddd bin/shiftaddctl bin/shiftadd-bench bin/shiftadd-generate; do
	[ -x "$d/usr/$f" ] || fail "/usr/$f missing or not executable"
done
for f in lib/libshiftadd.so.1 lib/pkgconfig/shiftadd.pc include/shiftadd.h \
	lib/systemd/system/shiftaddd.service lib/systemd/system/shiftaddd.socket \
	lib/sysusers.d/shiftadd.conf share/doc/shiftadd/shiftaddd.conf.example; do
	[ -f "$d/usr/$f" ] || fail "/usr/$f missing"
done
[ "$(readlink "$d/usr/lib/libshiftadd.so")" = libshiftadd.so.1 ] || fail "libshiftadd.so link"
[ -f "$d/etc/shiftadd/shiftaddd.conf" ] || fail "/etc/shiftadd/shiftaddd.conf missing"
for m in man/*.[1-8]; do
	[ -f "$d/usr/share/man/man${m##*.}/${m##*/}" ] || fail "man page ${m##*/} missing"
done
grep -q '^ExecStart=/usr/bin/shiftaddd --config /etc/shiftadd/shiftaddd.conf$' \
	"$d/usr/lib/systemd/system/shiftaddd.service" || fail "ExecStart not rewritten for PREFIX=/usr"
grep -q '^libdir=/usr/lib$' "$d/usr/lib/pkgconfig/shiftadd.pc" || fail "pkg-config libdir"

# A client of the installed SDK: header, pkg-config flags, exported symbols.
export PKG_CONFIG_PATH=$d/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$d
cat > "$tmp/client.c" <<'C'
#include <errno.h>
#include <shiftadd.h>
#include <stdio.h>
int main(void)
{
	shiftadd_client *c;
	int r = shiftadd_connect("/nonexistent/shiftaddd.sock", "install-check", &c);

	printf("%s\n", shiftadd_strerror(r));
	return r == -ENOENT ? 0 : 1;
}
C
# shellcheck disable=SC2046
cc -std=c17 -Wall -Wextra -Werror $(pkg-config --cflags shiftadd) -o "$tmp/client" "$tmp/client.c" \
	$(pkg-config --libs shiftadd) || fail "cannot build a client against the installed SDK"
LD_LIBRARY_PATH=$d/usr/lib "$tmp/client" > /dev/null || fail "installed client did not run"
# Installed programs find the installed library (rpath $ORIGIN/../lib), not the build tree's.
so=$(ldd "$d/usr/bin/shiftadd-generate" | awk '/libshiftadd\.so\.1 =>/ { print $3 }')
[ -n "$so" ] && [ "$(realpath "$so")" = "$(realpath "$d/usr/lib/libshiftadd.so.1")" ] ||
	fail "shiftadd-generate resolves libshiftadd to '$so', not the installed one"
"$d/usr/bin/shiftaddd" --help > /dev/null || fail "installed shiftaddd --help"
"$d/usr/bin/shiftaddctl" --help > /dev/null || fail "installed shiftaddctl --help"

# An existing config is kept by install and by uninstall.
echo "# edited" >> "$d/etc/shiftadd/shiftaddd.conf"
mk install DESTDIR="$d" PREFIX=/usr
grep -q '^# edited$' "$d/etc/shiftadd/shiftaddd.conf" || fail "install overwrote the config"
mk uninstall DESTDIR="$d" PREFIX=/usr
left=$(cd "$d" && find . -type f -o -type l | sort)
[ "$left" = "./etc/shiftadd/shiftaddd.conf" ] || fail "uninstall left: $left"

# The default PREFIX is /usr/local.
mk install DESTDIR="$tmp/default"
[ -x "$tmp/default/usr/local/bin/shiftaddd" ] || fail "default PREFIX is not /usr/local"
echo "install-check: ok (make install/uninstall, DESTDIR, PREFIX, pkg-config client)"
