#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The fleet profiles of conf/fleet, for real: nats-server -t takes every
# file; the three hub nodes, on free loopback ports (rewritten by sed into
# a scratch directory), form the cluster in domain hub; the robot profile
# comes up as a leaf of it (/leafz) with shipd on the robot's shipd.conf;
# the hub streams of FLEET_EVENTS.json and FLEET_CHANNELS.json source two
# robots (one added as fleet-streams.md says), and shipctl fleet check
# passes on the profile and fails, each for its reason, on broken copies,
# a server running another file, and the hub or shipd gone.
#
# Usage: run.sh SHIPD SHIPCTL CONF_FLEET_DIR JSREQ
# NATS_SERVER in the environment is nats-server (default: from PATH).
# Every wait is bounded; every process started is stopped at the end.

# The checks run bash -c '...' _ ARGS: the inner shell expands $1, $2.
# shellcheck disable=SC2016
set -euo pipefail

if [ $# -ne 4 ]; then
	echo "usage: $0 SHIPD SHIPCTL CONF_FLEET_DIR JSREQ" >&2
	exit 2
fi
shipd=$(realpath "$1")
shipctl=$(realpath "$2")
profiles=$(realpath "$3")
jsreq=$(realpath "$4")
nats_server=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}

tmp=$(mktemp -d)
pids=()
stop_all() {
	local p n
	for p in ${pids[@]+"${pids[@]}"}; do
		kill -INT "$p" 2>/dev/null || true
	done
	for p in ${pids[@]+"${pids[@]}"}; do
		for ((n = 0; n < 50; n++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}
trap 'stop_all; rm -rf "$tmp"' EXIT

. "$(dirname "$0")/../testlib.sh"
# give_up WHAT [LOG...]: a step the rest depends on failed.
give_up() {
	fail "$1"
	shift
	for f in "$@"; do
		echo "    --- $f"
		tail -n 20 "$f" | sed 's/^/    /'
	done
	echo "$passed passed, $failed failed"
	exit 1
}

# wait_for SECONDS COMMAND...: until the command succeeds, at most that long.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.2
	done
}

used_ports=" "
# A free loopback port, none handed out before.
free_port() {
	local p
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		p=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
		case $used_ports in *" $p "*) continue ;; esac
		used_ports="$used_ports$p "
		echo "$p"
		return 0
	done
	return 1
}

# http_get PORT PATH: the monitoring endpoint's JSON.
http_get() {
	python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]),
      timeout=2).read().decode())' "$1" "$2"
}

# json_get EXPR: evaluate EXPR on the JSON on stdin (as j) and print it.
json_get() {
	python3 -c 'import json, sys
j = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$1"
}

# rewrite SRC DST SED_ARG...: a profile file with its ports, addresses
# and directories rewritten; none of the profile's fixed ports or
# placeholders may be left outside comments.
rewrite() {
	local src=$1 dst=$2
	shift 2
	sed "$@" "$src" >"$dst"
	if grep -v '^[[:space:]]*#' "$dst" |
		grep -nE ':(4222|6222|7422|8222)\b|HUB[0-9]_HOST|ROBOT_NAME|HUB_LEAF_URLS'; then
		echo "rewrite left the above in $dst" >&2
		return 1
	fi
}

# start NAME COMMAND...: run it in the background, logging to NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	eval "pid_${name//-/_}=$!"
}

# stop NAME: stop what start NAME ran.
stop() {
	local var="pid_${1//-/_}" n
	local p=${!var}
	kill -INT "$p" 2>/dev/null || true
	for ((n = 0; n < 50; n++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

jsreq() { timeout 15 python3 "$jsreq" "$@"; }

# ---- nats-server -t takes every profile file (placeholders filled) ----

robot_src=$profiles/robot/nats-server.conf
for i in 1 2 3; do
	sed -e 's/HUB\([0-9]\)_HOST/hub\1.example.net/g' \
		"$profiles/hub/hub$i.conf" >"$tmp/t-hub$i.conf"
	check "nats-server -t: hub$i.conf" "$nats_server" -t -c "$tmp/t-hub$i.conf"
done
sed -e 's/ROBOT_NAME/robot-17/' -e 's|HUB_LEAF_URLS|"nats-leaf://hub1.example.net:7422", "nats-leaf://hub2.example.net:7422"|' \
	"$robot_src" >"$tmp/t-robot.conf"
check "nats-server -t: robot/nats-server.conf" \
	"$nats_server" -t -c "$tmp/t-robot.conf"
check "nats-server -t refuses a broken copy (the check can fail)" \
	bash -c '! "$1" -t -c <(sed "s/^ping_max:/ping_maxx:/" "$2")' _ \
	"$nats_server" "$tmp/t-robot.conf"
check "shipd -n takes robot/shipd.conf" \
	"$shipd" -n -c "$profiles/robot/shipd.conf"
for s in FLEET_EVENTS FLEET_CHANNELS; do
	check "$s.json is JSON naming $s" bash -c \
		'python3 -c "import json,sys; assert json.load(open(sys.argv[1]))[\"name\"] == sys.argv[2]" "$1" "$2"' \
		_ "$profiles/hub/$s.json" "$s"
done

# ---- the hub: three nodes on free ports form the cluster ----

declare -A client route leaf http
for i in 1 2 3; do
	client[$i]=$(free_port) route[$i]=$(free_port) leaf[$i]=$(free_port)
	http[$i]=$(free_port)
done
for i in 1 2 3; do
	mkdir "$tmp/hub$i"
	rewrite "$profiles/hub/hub$i.conf" "$tmp/hub$i.conf" \
		-e "s|0.0.0.0:4222|127.0.0.1:${client[$i]}|" \
		-e "s|0.0.0.0:6222|127.0.0.1:${route[$i]}|" \
		-e "s|0.0.0.0:7422|127.0.0.1:${leaf[$i]}|" \
		-e "s|127.0.0.1:8222|127.0.0.1:${http[$i]}|" \
		-e "s|HUB1_HOST:6222|127.0.0.1:${route[1]}|" \
		-e "s|HUB2_HOST:6222|127.0.0.1:${route[2]}|" \
		-e "s|HUB3_HOST:6222|127.0.0.1:${route[3]}|" \
		-e "s|HUB${i}_HOST:7422|127.0.0.1:${leaf[$i]}|" \
		-e "s|/var/lib/nats/hub|$tmp/hub$i|" ||
		give_up "hub$i.conf rewritten to free ports"
done
for i in 1 2 3; do
	start "hub$i" "$nats_server" -c "$tmp/hub$i.conf"
done
# One meta leader, the same for every node, and each routed to both others.
cluster_formed() {
	local i leader='' l
	for i in 1 2 3; do
		l=$(http_get "${http[$i]}" /jsz | json_get 'j["meta_cluster"].get("leader", "")')
		[ -n "$l" ] && { [ -z "$leader" ] || [ "$leader" = "$l" ]; } || return 1
		leader=$l
		[ "$(http_get "${http[$i]}" /routez | json_get 'j["num_routes"]')" -ge 2 ] ||
			return 1
	done
}
wait_for 40 cluster_formed ||
	give_up "the hub forms its cluster" "$tmp/hub1.log" "$tmp/hub2.log"
pass "the hub forms its cluster (3 nodes, routes, a JetStream meta leader)"
check "the hub's JetStream domain is hub" bash -c \
	'[ "$(python3 -c "import json,sys; print(json.load(sys.stdin)[\"config\"][\"domain\"])" <<<"$1")" = hub ]' \
	_ "$(http_get "${http[1]}" /jsz)"
hub_url=nats://127.0.0.1:${client[1]}
leaf_urls="\"nats-leaf://127.0.0.1:${leaf[1]}\", \"nats-leaf://127.0.0.1:${leaf[2]}\", \"nats-leaf://127.0.0.1:${leaf[3]}\""

# ---- robots: the robot profile as leaf servers of it ----

declare -A rport rhttp
# robot NAME: its nats-server.conf, rewritten, in $tmp/NAME.conf.
robot_conf() {
	rport[$1]=$(free_port) rhttp[$1]=$(free_port)
	mkdir -p "$tmp/$1"
	rewrite "$robot_src" "$tmp/$1.conf" \
		-e "s/ROBOT_NAME/$1/g" -e "s|HUB_LEAF_URLS|$leaf_urls|" \
		-e "s|127.0.0.1:4222|127.0.0.1:${rport[$1]}|" \
		-e "s|127.0.0.1:8222|127.0.0.1:${rhttp[$1]}|" \
		-e "s|/var/lib/ship/nats|$tmp/$1/nats|"
}
leaf_up() {
	[ "$(http_get "${rhttp[$1]}" /leafz | json_get 'j["leafnodes"]')" -ge 1 ]
}
robot_conf robot-a || give_up "robot-a's nats-server.conf rewritten"
start robot-a "$nats_server" -c "$tmp/robot-a.conf"
wait_for 20 leaf_up robot-a ||
	give_up "robot-a's server comes up as a leaf of the hub" "$tmp/robot-a.log"
pass "robot-a's server comes up as a leaf of the hub (/leafz)"

# shipd on the robot's shipd.conf; only its socket and state go elsewhere.
sock=$tmp/shipd.sock
mkdir "$tmp/state"
sed -e "s|^nats = .*|nats = nats://127.0.0.1:${rport[robot-a]}|" \
	"$profiles/robot/shipd.conf" >"$tmp/shipd.conf"
printf 'socket = %s\nstate_dir = %s\nuplink_probe_ms = 500\n' "$sock" "$tmp/state" \
	>>"$tmp/shipd.conf"
"$shipd" -n -c "$tmp/shipd.conf" >/dev/null 2>&1 ||
	sed -i '/^uplink_probe_ms/d' "$tmp/shipd.conf" # a shipd without it
start shipd "$shipd" -c "$tmp/shipd.conf"
ctl() { timeout 20 "$shipctl" -s "$sock" "$@"; }
uplink_up() { ctl --json status | json_get 'j["uplink"]["state"]' | grep -qx up; }
wait_for 20 ctl status || give_up "shipd starts" "$tmp/shipd.log"
wait_for 20 uplink_up || echo "# shipd does not say the uplink is up"

fleet_check() {
	ctl fleet check --config "$1" --leaf-conf "$2"
}
status=0
fleet_check "$tmp/shipd.conf" "$tmp/robot-a.conf" >"$tmp/good.out" 2>&1 || status=$?
if [ "$status" -eq 0 ] && ! grep -qv '^ok ' "$tmp/good.out" &&
	[ "$(wc -l <"$tmp/good.out")" -eq 13 ]; then
	pass "fleet check: the robot profile passes all 13 checks"
else
	fail "fleet check: the robot profile: exit $status"
fi
sed 's/^/    /' "$tmp/good.out"
check "fleet check --json says ok" bash -c \
	'[ "$("$1" -s "$2" --json fleet check --config "$3" --leaf-conf "$4" |
		python3 -c "import json,sys; j = json.load(sys.stdin); print(j[\"ok\"], len(j[\"checks\"]))")" = "True 13" ]' \
	_ "$shipctl" "$sock" "$tmp/shipd.conf" "$tmp/robot-a.conf"
check "fleet status: up, from robot-a, jobs and buckets on the hub" bash -c \
	'out=$("$1" -s "$2" fleet status) &&
	 grep -q "^uplink: *up to hub .hub. from .robot-a." <<<"$out" &&
	 grep -q "on the hub:  jobs, buckets beings_status" <<<"$out"' \
	_ "$shipctl" "$sock"
check "fleet robots: answers from the hub's registry" bash -c \
	'"$1" -s "$2" fleet robots >/dev/null' _ "$shipctl" "$sock"

# Through the profile's leaf server, the hub's buckets and queues (shipd
# writes them as $JS.hub.API.$KV...: the deny lists must not stop that).
check "config set and get: ship_config, on the hub" bash -c \
	'"$1" -s "$2" config set fleet.mode "\"patrol\"" &&
	 [ "$("$1" -s "$2" config get fleet.mode)" = "\"patrol\"" ]' \
	_ "$shipctl" "$sock"
check "ship_config is the hub's, not the robot's" bash -c \
	'python3 "$1" "$2" "\$JS.API.STREAM.INFO.KV_ship_config" | grep -q "\"messages\":1," &&
	 python3 "$1" "$3" "\$JS.API.STREAM.INFO.KV_ship_config" | grep -q "\"err_code\":10059"' \
	_ "$jsreq" "$hub_url" "nats://127.0.0.1:${rport[robot-a]}"
check "jobs: a queue on the hub takes a job" bash -c \
	'"$1" -s "$2" jobs queue-add fleetq && "$1" -s "$2" jobs submit fleetq "{\"x\":1}" &&
	 "$1" -s "$2" jobs counts fleetq' _ "$shipctl" "$sock"

# ---- the hub's streams source the robots' ----

# FLEET_EVENTS and FLEET_CHANNELS from their files for robot-a, then
# robot-b added as fleet-streams.md says: STREAM.INFO, a source more in
# its config, STREAM.UPDATE. robot-b is not up yet.
for s in FLEET_EVENTS FLEET_CHANNELS; do
	sed 's/ROBOT_NAME/robot-a/' "$profiles/hub/$s.json" >"$tmp/$s.json"
	jsreq "$hub_url" "\$JS.API.STREAM.CREATE.$s" "@$tmp/$s.json" >"$tmp/out" || true
	check "$s created on the hub from $s.json" \
		grep -q '"did_create":true' "$tmp/out"
	src=$(json_get 'j["sources"][0]["name"]' <"$tmp/$s.json")
	jsreq "$hub_url" "\$JS.API.STREAM.INFO.$s" |
		python3 -c 'import json, sys
c = json.load(sys.stdin)["config"]
c["sources"].append({"name": sys.argv[1], "external": {"api": "$JS.robot-b.API"}})
print(json.dumps(c))' "$src" >"$tmp/$s.update.json"
	jsreq "$hub_url" "\$JS.API.STREAM.UPDATE.$s" "@$tmp/$s.update.json" >"$tmp/out" || true
	check "$s: robot-b's source added (STREAM.UPDATE)" bash -c \
		'python3 -c "import json,sys; c = json.load(sys.stdin)[\"config\"]; assert len(c[\"sources\"]) == 2 and c[\"num_replicas\"] == 3 and not c.get(\"subjects\")" <"$1"' \
		_ "$tmp/out"
done

robot_conf robot-b || give_up "robot-b's nats-server.conf rewritten"
start robot-b "$nats_server" -c "$tmp/robot-b.conf"
wait_for 20 leaf_up robot-b ||
	give_up "robot-b's server comes up as a leaf of the hub" "$tmp/robot-b.log"
pass "robot-b's server comes up as a leaf of the hub"
rb=nats://127.0.0.1:${rport[robot-b]}
# robot-b has no shipd: its SHIP_EVENTS as shipd declares it.
jsreq "$rb" '$JS.API.STREAM.CREATE.SHIP_EVENTS' '{"name":"SHIP_EVENTS","subjects":["ship.events.>"],"max_age":86400000000000,"max_msgs":100000,"storage":"file","discard":"old"}' >/dev/null
# ... and a local bucket named as one of robot-a's.
jsreq "$rb" '$JS.API.STREAM.CREATE.KV_robots' '{"name":"KV_robots","subjects":["$KV.robots.>"],"max_msgs_per_subject":1,"storage":"file"}' >/dev/null
for i in 1 2; do
	jsreq "$rb" ship.events.test.b "{\"i\":$i}" --header "Nats-Msg-Id:robot-b-$i" >/dev/null
done
for i in 1 2 3; do
	ctl events emit test.a "{\"i\":$i}" --source robot-a >/dev/null
done
ctl chan send ops "hello from robot-a" --as robot-a >/dev/null
ctl kv add robots >/dev/null
ctl kv put robots r.battery 87 >/dev/null
stream_msgs() {
	jsreq "$hub_url" "\$JS.API.STREAM.INFO.$1" | json_get 'j["state"]["messages"]'
}
has_msgs() { [ "$(stream_msgs "$1")" -eq "$2" ]; }
# has_subjects URL STREAM WANT: the stream's test.* subjects and counts.
has_subjects() {
	[ "$(jsreq "$1" "\$JS.API.STREAM.INFO.$2" '{"subjects_filter":"ship.events.test.>"}' |
		json_get 'sorted(j["state"].get("subjects", {}).items())')" = "$3" ]
}
check "FLEET_EVENTS sources both robots' SHIP_EVENTS (3 + 2 events)" \
	wait_for 30 has_subjects "$hub_url" FLEET_EVENTS \
	"[('ship.events.test.a', 3), ('ship.events.test.b', 2)]"
check "FLEET_CHANNELS sources robot-a's CHANNELS" \
	wait_for 30 has_msgs FLEET_CHANNELS 1
# Nothing crosses between the robots' own streams (the deny lists).
check "robot-b's SHIP_EVENTS holds only robot-b's events" \
	has_subjects "$rb" SHIP_EVENTS "[('ship.events.test.b', 2)]"
check "robot-a's SHIP_EVENTS holds only robot-a's events" \
	has_subjects "nats://127.0.0.1:${rport[robot-a]}" SHIP_EVENTS \
	"[('ship.events.test.a', 3)]"
check "robot-a's bucket write reaches neither robot-b's bucket nor the hub" bash -c \
	'python3 "$1" "$2" "\$JS.API.STREAM.INFO.KV_robots" | grep -q "\"messages\":0," &&
	 python3 "$1" "$3" "\$JS.API.STREAM.INFO.KV_robots" | grep -q "\"err_code\":10059"' \
	_ "$jsreq" "$rb" "$hub_url"
# Every message of a hub stream, one line each: its subject and data, a
# tab, the robot stream and sequence it came from.
stream_dump() {
	local last seq
	last=$(jsreq "$hub_url" "\$JS.API.STREAM.INFO.$1" | json_get 'j["state"]["last_seq"]')
	for ((seq = 1; seq <= last; seq++)); do
		jsreq "$hub_url" "\$JS.API.STREAM.MSG.GET.$1" "{\"seq\":$seq}" |
			python3 -c 'import base64, json, sys
m = json.load(sys.stdin).get("message")
if m:
    h = base64.b64decode(m.get("hdrs", "")).decode()
    src = [l[20:] for l in h.split("\r\n") if l.startswith("Nats-Stream-Source: ")]
    print(m["subject"], base64.b64decode(m["data"]).decode(), "\t", *src)'
	done
}
stream_dump FLEET_EVENTS >"$tmp/fleet-events"
check "FLEET_EVENTS holds each event once" bash -c \
	'[ -z "$(cut -f1 "$1" | sort | uniq -d)" ]' _ "$tmp/fleet-events"
sed 's/^/    /' "$tmp/fleet-events"

# ---- fleet check fails, each for its reason ----

# fails NAME CHECK SHIPD_CONF LEAF_CONF: fleet check exits 1 with a FAIL
# line for CHECK.
fails() {
	local name=$1 what=$2 rc=0
	fleet_check "$3" "$4" >"$tmp/$name.out" 2>&1 || rc=$?
	if [ "$rc" -eq 1 ] && grep -q "^FAIL $what " "$tmp/$name.out"; then
		pass "fleet check: $name: FAIL $what"
		grep '^FAIL' "$tmp/$name.out" | sed 's/^/    /'
	else
		fail "fleet check: $name: exit $rc, expected 1 and FAIL $what"
		sed 's/^/    /' "$tmp/$name.out"
	fi
}
# broken NAME SED FILE: a copy of FILE with SED applied, as $tmp/NAME.conf.
broken() {
	sed "$2" "$3" >"$tmp/$1.conf"
	if cmp -s "$3" "$tmp/$1.conf"; then
		echo "# $1: the sed changed nothing" >&2
		return 1
	fi
}

# The shipped file, its placeholders left.
sed -e "s|127.0.0.1:4222|127.0.0.1:${rport[robot-a]}|" "$robot_src" \
	>"$tmp/shipped.conf"
fails "placeholders left" placeholders "$tmp/shipd.conf" "$tmp/shipped.conf"
broken same-domain 's/^\(\s*domain:\) robot-a$/\1 hub/' "$tmp/robot-a.conf"
fails "the robot's domain is the hub's" domain "$tmp/shipd.conf" "$tmp/same-domain.conf"
broken no-deny '/deny_exports:/d' "$tmp/robot-a.conf"
fails "events and channels cross the leafnode" subjects "$tmp/shipd.conf" "$tmp/no-deny.conf"
# A second remote without the deny lists carries them all the same.
broken two-remotes 's|^\(\s*remotes: \[\)$|\1\n\t\t{ urls: [ "nats-leaf://127.0.0.1:9" ] }|' "$tmp/robot-a.conf"
fails "a second remote without the deny lists" subjects "$tmp/shipd.conf" "$tmp/two-remotes.conf"
broken hub-events 's/^events_domain = local$/events_domain = hub/' "$tmp/shipd.conf"
fails "events on the hub, kept from it" subjects "$tmp/hub-events.conf" "$tmp/robot-a.conf"
# With limits on the uplink, the other robots' sourcing must stay out.
broken no-js-s 's/, "\$JS\.S\.>" \]/ ]/' "$tmp/robot-a.conf"
fails "uplink limits, \$JS.S.> let in" subjects "$tmp/shipd.conf" "$tmp/no-js-s.conf"
broken no-js-event 's/ "\$JS\.EVENT\.>",//' "$tmp/robot-a.conf"
fails "uplink limits, \$JS.EVENT.> let in" subjects "$tmp/shipd.conf" "$tmp/no-js-event.conf"
broken no-ping '/^ping_interval:/d' "$tmp/robot-a.conf"
fails "no ping_interval" ping "$tmp/shipd.conf" "$tmp/no-ping.conf"
broken no-remote '/urls:/d' "$tmp/robot-a.conf"
fails "no leafnode remote" remote "$tmp/shipd.conf" "$tmp/no-remote.conf"
broken no-hub '/^hub_domain/d' "$tmp/shipd.conf"
fails "no hub_domain" hub_domain "$tmp/no-hub.conf" "$tmp/robot-a.conf"
broken bad-hub 's/^hub_domain = .*/hub_domain = hub.x/' "$tmp/shipd.conf"
fails "hub_domain not a domain" hub_domain "$tmp/bad-hub.conf" "$tmp/robot-a.conf"
broken to-hub "s|^nats = .*|nats = $hub_url|" "$tmp/shipd.conf"
fails "shipd's nats is a hub node" listen "$tmp/to-hub.conf" "$tmp/robot-a.conf"
# The file says robot-z; the server runs robot-a.
broken other-file 's/robot-a/robot-z/g' "$tmp/robot-a.conf"
fails "the server runs another file" server-domain "$tmp/shipd.conf" "$tmp/other-file.conf"
fails "a leaf conf that is not there" leaf-conf "$tmp/shipd.conf" "$tmp/no-such.conf"

# The hub gone: the leaf loses its uplink, shipd's probe says so.
for i in 1 2 3; do
	stop "hub$i"
done
uplink_down() { ctl --json status | json_get 'j["uplink"]["state"]' | grep -qx down; }
wait_for 20 uplink_down || echo "# shipd does not say the uplink is down"
fails "the hub stopped" hub "$tmp/shipd.conf" "$tmp/robot-a.conf"
stop shipd
fails "shipd stopped" shipd "$tmp/shipd.conf" "$tmp/robot-a.conf"
stop robot-a
fails "the robot's server stopped" server "$tmp/shipd.conf" "$tmp/robot-a.conf"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
