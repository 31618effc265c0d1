#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Golden tests of shipd's configuration parser, run from this directory.
#
# Each case is NAME.in, a configuration file, run as
#   shipd -n -v [ARGS from NAME.args] -c NAME.in
# NAME.ok is the expected standard output of a valid configuration: the
# effective configuration, which must also parse again to the same text.
# NAME.err is the expected standard error of an invalid one, followed by
# a line "[exit N]" with the expected exit status.
# The shipped conf/shipd.conf is a case too; then come consistency checks
# between it, shipd.conf(5) and the keys shipd knows, and its default
# profile of access rules.
#
# Usage: run.sh SHIPD [--update]   (--update rewrites the golden files)
set -euo pipefail

shipd=$(realpath "$1")
update=${2:-}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }

# run FILE ARGS...: shipd -nv on FILE; sets out, err, status.
run() {
	local file=$1
	shift
	status=0
	timeout 10 "$shipd" -n -v "$@" -c "$file" >"$tmp/out" 2>"$tmp/err" ||
		status=$?
}

# same NAME EXPECTED ACTUAL: compare two files, show the difference.
same() {
	if diff -u "$2" "$3" >"$tmp/diff"; then
		pass "$1"
	else
		fail "$1"
		sed 's/^/    /' "$tmp/diff"
	fi
}

# check NAME FILE: run one case against NAME.ok or NAME.err.
check() {
	local name=$1 file=$2 args=()
	if [ -f "$name.args" ]; then
		read -r -a args <"$name.args"
	fi
	run "$file" ${args[@]+"${args[@]}"}
	if [ -n "$update" ]; then
		if [ "$status" -eq 0 ]; then
			cp "$tmp/out" "$name.ok"
			rm -f "$name.err"
		else
			{ cat "$tmp/err"; echo "[exit $status]"; } >"$name.err"
			rm -f "$name.ok"
		fi
	fi
	if [ -f "$name.ok" ]; then
		if [ "$status" -ne 0 ] || [ -s "$tmp/err" ]; then
			fail "$name: exit $status"
			sed 's/^/    /' "$tmp/err"
			return
		fi
		same "$name" "$name.ok" "$tmp/out"
		# The printed configuration parses again, to itself.
		cp "$tmp/out" "$tmp/printed"
		run "$tmp/printed"
		if [ "$status" -ne 0 ]; then
			fail "$name: printed configuration: exit $status"
			sed 's/^/    /' "$tmp/err"
		else
			same "$name: printed configuration" "$tmp/printed" "$tmp/out"
		fi
	elif [ -f "$name.err" ]; then
		echo "[exit $status]" >>"$tmp/err"
		if [ -s "$tmp/out" ]; then
			fail "$name: output on stdout"
		else
			same "$name" "$name.err" "$tmp/err"
		fi
	else
		fail "$name: neither $name.ok nor $name.err"
	fi
}

for in in *.in; do
	check "${in%.in}" "$in"
done

shipped=../../conf/shipd.conf
check shipd.conf "$shipped"

# Every key shipd knows (it prints them all) is in the shipped file, with a
# comment above it, and in shipd.conf(5).
run empty.in
sed -E -n 's/^(# )?([a-z_]+) = .*/\2/p' "$tmp/out" >"$tmp/keys"
if [ "$(wc -l <"$tmp/keys")" -lt 20 ]; then
	fail "list of keys: only $(wc -l <"$tmp/keys") from shipd -nv"
fi
missing=
while read -r key; do
	awk -v k="$key" '
		$0 ~ "^#" k " = " { found = prev ~ /^# / }
		{ prev = $0 }
		END { exit !found }' "$shipped" || missing="$missing $key"
done <"$tmp/keys"
if [ -z "$missing" ]; then pass "shipd.conf: every key, after a comment"; else
	fail "shipd.conf: keys missing or without a comment:$missing"
fi
missing=
while read -r key; do
	grep -q "^\*$key\* = " ../../man/shipd.conf.5.scd || missing="$missing $key"
done <"$tmp/keys"
if [ -z "$missing" ]; then pass "shipd.conf.5: every key"; else
	fail "shipd.conf.5: keys missing:$missing"
fi

# The defaults the shipped file shows, uncommented, are shipd's defaults.
# (Keys without a default show examples, which are left commented.)
sed -n -E 's/^([a-z_]+) = .*/\1/p' "$tmp/out" >"$tmp/defaulted"
awk 'NR == FNR { d[$1] = 1; next }
	match($0, /^#[a-z_]+ = /) && (substr($0, 2, RLENGTH - 4) in d) {
		print substr($0, 2); next }
	{ print }' "$tmp/defaulted" "$shipped" >"$tmp/uncommented"
if [ "$(grep -c -E '^[a-z_]+ = ' "$tmp/uncommented")" -ne \
	"$(wc -l <"$tmp/defaulted")" ]; then
	fail "shipd.conf: a default is not shown as '#key = value'"
fi
cp "$tmp/out" "$tmp/defaults"
run "$tmp/uncommented"
if [ "$status" -ne 0 ]; then
	fail "shipd.conf uncommented: exit $status"
	sed 's/^/    /' "$tmp/err"
else
	same "shipd.conf uncommented: the built-in defaults" "$tmp/defaults" \
		"$tmp/out"
fi

# The default profile of rules the shipped file shows, uncommented, parses
# and grants something.
sed -n 's/^#\(allow = \)/\1/p' "$shipped" >"$tmp/profile"
run "$tmp/profile"
if [ "$status" -ne 0 ]; then
	fail "shipd.conf: default profile: exit $status"
	sed 's/^/    /' "$tmp/err"
elif [ "$(grep -c '^allow = ' "$tmp/out")" -lt 3 ]; then
	fail "shipd.conf: default profile: fewer than 3 rules"
else
	pass "shipd.conf: default profile"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
