#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks the shipped systemd files: both units pass systemd-analyze verify
# (man pages included, against the ones this build renders), they keep the
# settings the design relies on, and the sysusers.d and tmpfiles.d entries
# give the socket's directory and group in a scratch root.
#
# Usage: test_units.sh SHIPD SHIPCTL SERVICE SOCKET SYSUSERS TMPFILES MANPAGE...
# SERVICE is the configured shipd.service; in a copy its ExecStart and
# ExecReload are pointed at the built SHIPD and SHIPCTL, as verify wants
# executables there.
# Exit status 77 (skipped) without systemd-analyze.
#
# With NATS_UNIT (the configured ship-nats.service), FLEET_DROPIN
# (shipd-fleet-robot.conf), NATS_SERVER (its binary) and ROBOT_NATS_CONF
# (conf/fleet/robot/nats-server.conf) in the environment, the fleet
# robot's unit and shipd drop-in are verified with them.
#
# Needs no man(1): verify checks each man: URL of Documentation= by running
# "man SECTION PAGE", and gets a stand-in that finds exactly the pages this
# build renders (a container image has no man-db; a real man would also
# find, or miss, the system's pages).

# The checks run bash -c '...' _ ARGS: the inner shell expands $1, $2.
# shellcheck disable=SC2016
set -euo pipefail

if [ $# -lt 7 ]; then
	echo "usage: $0 SHIPD SHIPCTL SERVICE SOCKET SYSUSERS TMPFILES MANPAGE..." >&2
	exit 2
fi
shipd=$(realpath "$1")
shipctl=$(realpath "$2")
service=$3
socket=$4
sysusers=$(realpath "$5")
tmpfiles=$(realpath "$6")
shift 6

if ! command -v systemd-analyze >/dev/null; then
	echo "skip - systemd-analyze not found"
	exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

. "$(dirname "$0")/../testlib.sh"

# The rendered pages, laid out as man(1) looks for them, so that verify
# checks Documentation= against the pages this build installs.
for page in "$@"; do
	section=${page##*.}
	mkdir -p "$tmp/man/man$section"
	cp "$page" "$tmp/man/man$section/"
done

# The man verify runs: "man SECTION PAGE" (or "man PAGE") succeeds only if
# $MANPATH/manSECTION/PAGE.SECTION is a page whose .TH names it.
mkdir "$tmp/bin"
cat >"$tmp/bin/man" <<'MAN'
#!/bin/sh
case $# in
1) page=$1 section='*' ;;
2) page=$2 section=$1 ;;
*) echo "man: usage: man [SECTION] PAGE" >&2; exit 2 ;;
esac
for f in "$MANPATH"/man$section/"$page".$section; do
	[ -f "$f" ] || continue
	s=${f##*.}
	grep -m 1 '^\.TH' "$f" | grep -qiF ".TH \"$page\" \"$s\"" && exit 0
done
[ "$section" = '*' ] || page="$page($section)"
echo "No manual entry for $page" >&2
exit 16
MAN
chmod +x "$tmp/bin/man"
check "the man stand-in finds shipd(8) and only built pages" \
	bash -c 'export MANPATH=$1 PATH=$2:$PATH; man 8 shipd && man shipd &&
		! man 1 shipd && ! man 8 no-such-page' _ "$tmp/man" "$tmp/bin"

units=$tmp/units
mkdir "$units"
cp "$service" "$units/shipd.service"
cp "$socket" "$units/shipd.socket"
sed -i -e "s|^ExecStart=[^ ]*/shipd$|ExecStart=$shipd|" \
	-e "s|^ExecReload=[^ ]*/shipctl |ExecReload=$shipctl |" \
	"$units/shipd.service"
check "the copy's ExecStart is the built shipd" \
	grep -qxF "ExecStart=$shipd" "$units/shipd.service"
# Reloads go through shipctl on the socket shipd.socket listens on: nothing
# outside what shipd installs (no kill(1)), and the same path in both.
listen=$(sed -n 's/^ListenStream=//p' "$units/shipd.socket")
check "ExecReload is the built shipctl reload on $listen" \
	grep -qxF "ExecReload=$shipctl -s $listen reload" "$units/shipd.service"

# The fleet robot: ship-nats.service, and shipd.service.d/fleet-robot.conf
# as -Dfleet_profile=robot installs them. Verify wants executables: the
# copy runs NATS_SERVER.
fleet=
if [ -n "${NATS_UNIT:-}" ]; then
	fleet=ship-nats.service
	cp "$NATS_UNIT" "$units/ship-nats.service"
	mkdir "$units/shipd.service.d"
	cp "$FLEET_DROPIN" "$units/shipd.service.d/fleet-robot.conf"
	sed -i -e "s|^ExecStart=[^ ]*/nats-server |ExecStart=$NATS_SERVER |" \
		-e "s|^ExecReload=[^ ]*/nats-server |ExecReload=$NATS_SERVER |" \
		"$units/ship-nats.service"
	check "the copy of ship-nats.service runs $NATS_SERVER" \
		grep -q "^ExecStart=$NATS_SERVER -c /.*/ship/nats-server.conf$" \
		"$units/ship-nats.service"
fi

# verify_in DIR: systemd-analyze verify on DIR's two units, with the pages
# and the man stand-in; prints what verify says, exits with its status.
verify_in() (
	cd "$1" && MANPATH=$tmp/man PATH=$tmp/bin:$PATH SYSTEMD_LOG_COLOR=0 \
		timeout 60 systemd-analyze verify --man=yes \
		"$1/shipd.socket" "$1/shipd.service" ${fleet:+"$1/$fleet"} 2>&1
)
# verify: clean means exit status 0 and nothing printed; an unknown key or
# a bad value is only a warning, with status 0.
verify() {
	local out rc=0
	out=$(verify_in "$1") || rc=$?
	if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
		printf 'systemd-analyze verify exited %d\n%s\n' "$rc" "$out"
		return 1
	fi
}
check "systemd-analyze verify shipd.socket shipd.service $fleet" verify "$units"

# The check itself must catch what it is for: each broken copy fails, for
# the reason it was broken.
# broken NAME SED_SCRIPT [FILE]: a copy of the units with SED_SCRIPT
# applied to FILE (shipd.service); sets dir.
broken() {
	dir=$tmp/broken-$1
	cp -r "$units" "$dir"
	sed -i "$2" "$dir/${3:-shipd.service}"
}
# warns DIR TEXT: verify names TEXT (it may still exit 0); fails DIR TEXT:
# verify fails, naming TEXT.
warns() {
	local out rc=0
	out=$(verify_in "$1") || rc=$?
	printf 'systemd-analyze verify exited %d\n%s\n' "$rc" "$out"
	grep -qF -- "$2" <<<"$out"
}
fails() {
	local rc=0
	verify "$1" >/dev/null && rc=1
	warns "$@" || rc=1
	return "$rc"
}
broken value 's/^ProtectSystem=strict$/ProtectSystem=stirct/'
check "verify reports a bad value (the check can fail)" warns "$dir" stirct
broken exec "s|^ExecStart=.*|ExecStart=$tmp/no-such-shipd|"
check "verify reports a missing ExecStart binary" fails "$dir" no-such-shipd
broken reload "s|^ExecReload=[^ ]*|ExecReload=$tmp/no-such-shipctl|"
check "verify reports a missing ExecReload binary" \
	fails "$dir" no-such-shipctl
broken man 's/^Documentation=.*/Documentation=man:no-such-page(8)/'
check "verify reports a Documentation= page the build lacks" \
	fails "$dir" 'no-such-page(8)'
if [ -n "$fleet" ]; then
	broken nats-exec "s|^ExecStart=[^ ]*|ExecStart=$tmp/no-such-nats-server|" \
		ship-nats.service
	check "verify reports a missing nats-server in ship-nats.service" \
		fails "$dir" no-such-nats-server
	broken dropin 's/^Wants=/Wantz=/' shipd.service.d/fleet-robot.conf
	check "verify reads shipd.service.d/fleet-robot.conf" \
		warns "$dir" "fleet-robot.conf:"
fi

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

if [ -n "$fleet" ]; then
	nats=$units/ship-nats.service
	check "ship-nats: runs the robot's conf, as ship, stops cleanly" has "$nats" \
		Type=exec Before=shipd.service Conflicts=nats-server.service \
		KillSignal=SIGINT Restart=on-failure User=ship Group=ship \
		StateDirectory=ship/nats
	check "ship-nats: sandbox" has "$nats" \
		NoNewPrivileges=yes CapabilityBoundingSet= ProtectSystem=strict \
		ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
		SystemCallFilter=@system-service MemoryDenyWriteExecute=yes
	# The drop-in wants, not requires: shipd rides out a NATS restart.
	check "drop-in: shipd wants ship-nats and starts after it" \
		has "$units/shipd.service.d/fleet-robot.conf" \
		Wants=ship-nats.service After=ship-nats.service
	check "drop-in: shipd does not require ship-nats" \
		bash -c '! grep -qE "^(Requires|BindsTo|PartOf)=" "$1"' _ \
		"$units/shipd.service.d/fleet-robot.conf"
	# The unit and the robot profile agree: the port it waits for is the
	# server's client listener, its state directory the server's store.
	listen=$(sed -n 's/^listen: *//p' "$ROBOT_NATS_CONF")
	check "ship-nats waits for the profile's listener ($listen)" \
		grep -qF "/dev/tcp/${listen%:*}/${listen##*:})" "$nats"
	check "ship-nats' StateDirectory= is the profile's store_dir" \
		grep -qE '^\s*store_dir: "/var/lib/ship/nats"$' "$ROBOT_NATS_CONF"
fi

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
