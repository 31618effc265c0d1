#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the build into a temporary DESTDIR and checks what a packager and
# an app developer get: every file in its usual place, a library exporting
# only shipc_*, an app (README.md's example) built against the installed
# header and library with pkg-config, a header that is pedantic C99 and
# C++, and an example configuration that parses and round-trips.
#
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
# The environment (set by meson.build) gives the install directories:
# BINDIR SBINDIR LIBDIR INCLUDEDIR MANDIR SYSCONFDIR (absolute), VERSION,
# CC (the build's C compiler) and SANITIZE (the build's b_sanitize).

# The checks run bash -c '...' _ ARGS: the inner shell expands $1, $2.
# shellcheck disable=SC2016
set -euo pipefail

build=$(realpath "$1")
src=$(realpath "$2")
: "${BINDIR:?}" "${SBINDIR:?}" "${LIBDIR:?}" "${INCLUDEDIR:?}" "${MANDIR:?}"
: "${SYSCONFDIR:?}" "${VERSION:?}"
CC=${CC:-cc}
CXX=${CXX:-c++}
san=()
if [ -n "${SANITIZE:-}" ] && [ "$SANITIZE" != none ]; then
	# The library carries the sanitizer runtime; its users must too.
	san=(-fsanitize="$SANITIZE")
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest

. "$(dirname "$0")/../testlib.sh"

echo "# meson install --destdir $dest"
if ! timeout 120 meson install -C "$build" --no-rebuild --quiet \
	--destdir "$dest" >"$tmp/install.log" 2>&1; then
	fail "meson install"
	sed 's/^/    /' "$tmp/install.log"
	echo "$passed passed, $failed failed"
	exit 1
fi
pass "meson install"
(cd "$dest" && find . ! -type d | sort | sed 's/^\./# /')

# ---- files in their places ----

check "shipd in sbindir" test -x "$dest$SBINDIR/shipd"
check "shipctl in bindir" test -x "$dest$BINDIR/shipctl"
lib=$dest$LIBDIR/libshipc.so.0
check "libshipc.so.0 in libdir" test -f "$lib"
check "libshipc.so.0 is a symlink to the versioned file" \
	test -L "$lib" -a -f "$dest$LIBDIR/$(readlink "$lib")"
check "libshipc.so (for linking) points to libshipc.so.0*" \
	bash -c '[ -L "$1" ] && [ -f "$1" ] && case $(readlink "$1") in
		libshipc.so.0*) ;; *) exit 1;; esac' _ "$dest$LIBDIR/libshipc.so"
check "libshipc's soname is libshipc.so.0" \
	bash -c 'readelf -d "$1" | grep -F "(SONAME)" | grep -qF "[libshipc.so.0]"' \
	_ "$lib"
check "shipc.h in includedir" cmp "$src/client/shipc.h" \
	"$dest$INCLUDEDIR/shipc.h"
check "libshipc.pc in libdir/pkgconfig" test -f "$dest$LIBDIR/pkgconfig/libshipc.pc"
for page in man8/shipd.8 man5/shipd.conf.5 man1/shipctl.1 man3/libshipc.3; do
	check "manual $page" grep -q '^\.TH' "$dest$MANDIR/$page"
done
conf=$dest$SYSCONFDIR/ship/shipd.conf
check "example configuration in sysconfdir/ship" cmp "$src/conf/shipd.conf" "$conf"

# The units, if the build installs them: each in a systemd unit directory.
units=0
for u in "$src"/units/*.service "$src"/units/*.socket \
	"$src"/units/*.service.in "$src"/units/*.socket.in; do
	[ -e "$u" ] || continue
	name=$(basename "${u%.in}")
	find "$dest" -name "$name" >"$tmp/found"
	if [ ! -s "$tmp/found" ]; then
		echo "skip - unit $name (not installed)"
		continue
	fi
	units=$((units + 1))
	check "unit $name in a systemd unit directory" \
		grep -q '/systemd/system/[^/]*$' "$tmp/found"
done
[ "$units" -gt 0 ] || echo "skip - systemd units (none installed)"

# ---- the library's ABI ----

nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' |
	sort -u >"$tmp/exported"
grep -v '^shipc_' "$tmp/exported" >"$tmp/stray" || true
if [ -s "$tmp/exported" ] && [ ! -s "$tmp/stray" ]; then
	pass "libshipc exports only shipc_* ($(wc -l <"$tmp/exported") symbols)"
else
	fail "libshipc exports symbols other than shipc_*:"
	sed 's/^/    /' "$tmp/stray"
fi
# Every function the header declares is exported, and nothing else.
grep -v '^typedef' "$dest$INCLUDEDIR/shipc.h" | grep -oE '\bshipc_[a-z_]+\(' |
	tr -d '(' |
	sort -u >"$tmp/declared"
check "libshipc exports exactly the header's functions" \
	diff -u "$tmp/declared" "$tmp/exported"

# The manuals keep up: a prototype for every function of the header, an
# entry for every command shipctl lists.
missing=
while read -r fn; do
	grep -qF "$fn(" "$dest$MANDIR/man3/libshipc.3" || missing="$missing $fn"
done <"$tmp/declared"
if [ -z "$missing" ]; then pass "libshipc(3) has every function"; else
	fail "libshipc(3) lacks:$missing"
fi
LD_LIBRARY_PATH=$dest$LIBDIR timeout 10 "$dest$BINDIR/shipctl" --help |
	awk 'on && NF { print $1 } /^commands:/ { on = 1 }' | sort -u \
	>"$tmp/commands" ||
	true
missing=
while read -r cmd; do
	# An entry starts a line with the command in bold: \fBname\fR, or
	# \fBname sub\fR for a two-word command ("kv put").
	awk -v c="$cmd" 'index($0, "\\fB" c "\\fR") == 1 { f = 1 }
		index($0, "\\fB" c " ") == 1 { f = 1 }
		END { exit !f }' "$dest$MANDIR/man1/shipctl.1" ||
		missing="$missing $cmd"
done <"$tmp/commands"
if [ -s "$tmp/commands" ] && [ -z "$missing" ]; then
	pass "shipctl(1) has every command ($(tr '\n' ' ' <"$tmp/commands"))"
else
	fail "shipctl(1) lacks commands:${missing:- (none listed by --help)}"
fi

# ---- an app against the installed header and library ----

export PKG_CONFIG_LIBDIR=$dest$LIBDIR/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$dest
# Keep -I/-L even when they are the system's directories (prefix=/usr):
# inside the DESTDIR they are not.
export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
cflags=()
libs=()
if pkg-config --exists libshipc 2>"$tmp/log"; then
	read -r -a cflags <<<"$(pkg-config --cflags libshipc)"
	read -r -a libs <<<"$(pkg-config --libs libshipc)"
	pass "pkg-config finds libshipc: ${cflags[*]} ${libs[*]}"
	check "pkg-config points into the DESTDIR" bash -c \
		'case "$1" in *"-L$2$3"*) ;; *) exit 1;; esac
		 case "$4" in *"-I$2$5"*) ;; *) exit 1;; esac' _ \
		"${libs[*]}" "$dest" "$LIBDIR" "${cflags[*]}" "$INCLUDEDIR"
else
	fail "pkg-config finds libshipc"
	sed 's/^/    /' "$tmp/log"
fi

awk '$0 == "```c" { on = 1; next } on && $0 == "```" { exit } on' \
	"$src/README.md" >"$tmp/example.c"
check "README.md has a C example" test -s "$tmp/example.c"
check "README.md's example compiles and links (C99, pedantic)" \
	"$CC" -std=c99 -pedantic -Wall -Wextra -Wno-unused-parameter -Werror \
	${san[@]+"${san[@]}"} ${cflags[@]+"${cflags[@]}"} "$tmp/example.c" \
	-o "$tmp/example" ${libs[@]+"${libs[@]}"}
if [ -x "$tmp/example" ]; then
	export LD_LIBRARY_PATH=$dest$LIBDIR
	check "the example loads the installed libshipc.so.0" bash -c \
		'ldd "$1" | grep -F "libshipc.so.0 => $2/libshipc.so.0"' _ \
		"$tmp/example" "$dest$LIBDIR"
	# No shipd on this socket: the example must say so and exit 1.
	status=0
	SHIP_SOCKET=$tmp/no-shipd.sock timeout 10 "$tmp/example" \
		>"$tmp/out" 2>"$tmp/err" || status=$?
	if [ "$status" -eq 1 ] &&
		grep -qx 'shipc_connect: No such file or directory' "$tmp/err"; then
		pass "the example runs and reports that shipd is not there"
	else
		fail "the example: exit $status, expected 1 and a shipc_connect error"
		sed 's/^/    /' "$tmp/out" "$tmp/err"
	fi
	unset LD_LIBRARY_PATH
fi

# The service of README.md's "Services" compiles against the installed
# library too.
awk '$0 == "## Services" { sec = 1 } sec && $0 == "```c" { on = 1; next }
     on && $0 == "```" { exit } on' "$src/README.md" >"$tmp/service.c"
check "README.md has a service in C" test -s "$tmp/service.c"
check "README.md's service compiles and links (C99, pedantic)" \
	"$CC" -std=c99 -pedantic -Wall -Wextra -Wno-unused-parameter -Werror \
	${san[@]+"${san[@]}"} ${cflags[@]+"${cflags[@]}"} "$tmp/service.c" \
	-o "$tmp/service" ${libs[@]+"${libs[@]}"}

printf '#include <shipc.h>\n#include <shipc.h>\n' >"$tmp/header.c"
check "shipc.h is pedantic C99" "$CC" -std=c99 -pedantic -Werror -Wall \
	-Wextra -fsyntax-only ${cflags[@]+"${cflags[@]}"} -x c "$tmp/header.c"
check "shipc.h is pedantic C++11" "$CXX" -std=c++11 -pedantic -Werror -Wall \
	-Wextra -fsyntax-only ${cflags[@]+"${cflags[@]}"} -x c++ "$tmp/header.c"
# C linkage, not just syntax: a C++ program links and calls the library.
cat >"$tmp/app.cc" <<'CXX'
#include <shipc.h>
#include <cstdio>
int main()
{
	std::printf("%s\n", shipc_default_socket());
	return shipc_connect("/nonexistent/shipd.sock", "c++") ? 1 : 0;
}
CXX
check "a C++ program links with libshipc" "$CXX" -std=c++11 -Wall -Werror \
	${san[@]+"${san[@]}"} ${cflags[@]+"${cflags[@]}"} "$tmp/app.cc" \
	-o "$tmp/app" ${libs[@]+"${libs[@]}"}
if [ -x "$tmp/app" ]; then
	check "the C++ program runs" bash -c \
		'[ "$(SHIP_SOCKET=/x/y.sock LD_LIBRARY_PATH=$2 timeout 10 "$1")" = /x/y.sock ]' \
		_ "$tmp/app" "$dest$LIBDIR"
fi

# ---- the installed programs ----

shipd=$dest$SBINDIR/shipd
check "shipd -V says $VERSION" bash -c \
	'[ "$(timeout 10 "$1" -V)" = "shipd $2" ]' _ "$shipd" "$VERSION"
check "shipd -n accepts the installed configuration" \
	timeout 10 "$shipd" -n -c "$conf"
status=0
timeout 10 "$shipd" -n -v -c "$conf" >"$tmp/printed" 2>"$tmp/err" || status=$?
if [ "$status" -eq 0 ] && [ -s "$tmp/printed" ] && [ ! -s "$tmp/err" ]; then
	pass "shipd -nv prints the installed configuration"
	check "shipd -nv output parses again to the same text" bash -c \
		'timeout 10 "$1" -n -v -c "$2" | diff -u "$2" -' _ "$shipd" \
		"$tmp/printed"
else
	fail "shipd -nv on the installed configuration: exit $status"
	sed 's/^/    /' "$tmp/err"
fi
check "shipctl runs against the installed library" bash -c \
	'LD_LIBRARY_PATH=$2 timeout 10 "$1" --help | grep -q "^usage: shipctl"' \
	_ "$dest$BINDIR/shipctl" "$dest$LIBDIR"
status=0
LD_LIBRARY_PATH=$dest$LIBDIR timeout 10 "$dest$BINDIR/shipctl" \
	-s "$tmp/no-shipd.sock" status >"$tmp/out" 2>"$tmp/err" || status=$?
if [ "$status" -eq 1 ] && grep -q 'shipd is not running' "$tmp/err"; then
	pass "shipctl status without shipd fails with a reason"
else
	fail "shipctl status without shipd: exit $status"
	sed 's/^/    /' "$tmp/out" "$tmp/err"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
