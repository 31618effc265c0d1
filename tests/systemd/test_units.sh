#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks the shipped systemd files: both units pass systemd-analyze verify
# (man pages included, against the ones this build renders), they keep the
# settings the design relies on, and the sysusers.d and tmpfiles.d entries
# give the socket's directory and group in a scratch root.
#
# Usage: test_units.sh SHIPD SERVICE SOCKET SYSUSERS TMPFILES MANPAGE...
# SERVICE is the configured shipd.service; its ExecStart is pointed at the
# built SHIPD in a copy, as verify wants an executable there.
# Exit status 77 (skipped) without systemd-analyze.

# The checks run bash -c '...' _ ARGS: the inner shell expands $1, $2.
# shellcheck disable=SC2016
set -euo pipefail

if [ $# -lt 6 ]; then
	echo "usage: $0 SHIPD SERVICE SOCKET SYSUSERS TMPFILES MANPAGE..." >&2
	exit 2
fi
shipd=$(realpath "$1")
service=$2
socket=$3
sysusers=$(realpath "$4")
tmpfiles=$(realpath "$5")
shift 5

if ! command -v systemd-analyze >/dev/null; then
	echo "skip - systemd-analyze not found"
	exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
# check DESCRIPTION COMMAND...: pass if the command succeeds, else show
# its output.
check() {
	local what=$1
	shift
	if "$@" >"$tmp/log" 2>&1; then
		pass "$what"
	else
		fail "$what"
		sed 's/^/    /' "$tmp/log"
	fi
}

# The rendered pages, laid out as man(1) looks for them, so that verify
# checks Documentation= against the pages this build installs.
for page in "$@"; do
	section=${page##*.}
	mkdir -p "$tmp/man/man$section"
	cp "$page" "$tmp/man/man$section/"
done

units=$tmp/units
mkdir "$units"
cp "$service" "$units/shipd.service"
cp "$socket" "$units/shipd.socket"
sed -i "s|^ExecStart=[^ ]*shipd|ExecStart=$shipd|" "$units/shipd.service"
check "the copy's ExecStart is the built shipd" \
	grep -qxF "ExecStart=$shipd" "$units/shipd.service"

# verify: clean means exit status 0 and nothing printed; an unknown key or
# a bad value is only a warning, with status 0.
verify() {
	local out rc=0
	out=$(cd "$units" && MANPATH=$tmp/man SYSTEMD_LOG_COLOR=0 \
		timeout 60 systemd-analyze verify --man=yes "$@" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
		printf 'systemd-analyze verify exited %d\n%s\n' "$rc" "$out"
		return 1
	fi
}
check "systemd-analyze verify shipd.socket shipd.service" \
	verify "$units/shipd.socket" "$units/shipd.service"

# The check itself must catch what it is for.
cp -r "$units" "$tmp/broken"
sed -i 's/^ProtectSystem=strict$/ProtectSystem=stirct/' \
	"$tmp/broken/shipd.service"
check "verify reports a bad value (the check can fail)" \
	bash -c '(cd "$1" && MANPATH=$2 systemd-analyze verify \
		"$1/shipd.socket" "$1/shipd.service" 2>&1) | grep -q stirct' \
	_ "$tmp/broken" "$tmp/man"
sed -i "s|^ExecStart=.*|ExecStart=$tmp/no-such-shipd|" \
	"$tmp/broken/shipd.service"
check "verify reports a missing ExecStart binary" \
	bash -c '! (cd "$1" && MANPATH=$2 systemd-analyze verify \
		"$1/shipd.socket" "$1/shipd.service" >/dev/null 2>&1)' \
	_ "$tmp/broken" "$tmp/man"

# ---- what the design relies on ----

# has UNIT KEY=VALUE...: each line is in the unit, exactly.
has() {
	local unit=$1 line
	shift
	for line in "$@"; do
		grep -qxF "$line" "$unit" || {
			echo "missing: $line"
			return 1
		}
	done
}
check "service: notify, watchdog, restart" has "$units/shipd.service" \
	Type=notify WatchdogSec=30s Restart=on-failure Requires=shipd.socket
check "service: runs as ship with its directories" has "$units/shipd.service" \
	User=ship Group=ship RuntimeDirectory=ship RuntimeDirectoryMode=0750 \
	RuntimeDirectoryPreserve=yes StateDirectory=ship UMask=0077 \
	LimitNOFILE=65536
check "service: sandbox" has "$units/shipd.service" \
	NoNewPrivileges=yes CapabilityBoundingSet= ProtectSystem=strict \
	ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
	"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
	ProtectKernelTunables=yes ProtectKernelModules=yes \
	ProtectKernelLogs=yes ProtectControlGroups=yes RestrictNamespaces=yes \
	LockPersonality=yes MemoryDenyWriteExecute=yes RestrictRealtime=yes \
	SystemCallArchitectures=native SystemCallFilter=@system-service
check "service: no PrivateUsers (SO_PEERCRED needs the real uids)" \
	bash -c '! grep -q "^PrivateUsers=" "$1"' _ "$units/shipd.service"
check "socket: /run/ship/shipd.sock, 0660 group ship, directory 0750" \
	has "$units/shipd.socket" ListenStream=/run/ship/shipd.sock \
	SocketGroup=ship SocketMode=0660 DirectoryMode=0750

# ---- the user, group and directory, in a scratch root ----

root=$tmp/root
mkdir -p "$root/etc"
if [ "$(id -u)" -ne 0 ]; then
	# tmpfiles must chown to ship, and only root can.
	echo "skip - sysusers.d and tmpfiles.d entries (not root)"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
fi
check "systemd-sysusers creates user and group ship" \
	bash -c 'systemd-sysusers --root="$1" "$2" &&
		grep -q "^ship:" "$1/etc/passwd" &&
		grep -q "^ship:" "$1/etc/group"' _ "$root" "$sysusers"
check "systemd-tmpfiles creates /run/ship 0750 ship:ship" \
	bash -c 'systemd-tmpfiles --root="$1" --create "$2" &&
		uid=$(awk -F: "\$1 == \"ship\" {print \$3}" "$1/etc/passwd") &&
		gid=$(awk -F: "\$1 == \"ship\" {print \$3}" "$1/etc/group") &&
		st=$(stat -c "%a %u %g %F" "$1/run/ship") &&
		echo "$st" && [ "$st" = "750 $uid $gid directory" ]' \
	_ "$root" "$tmpfiles"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
