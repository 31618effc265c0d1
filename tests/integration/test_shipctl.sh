#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shipctl end to end against a real shipd and nats-server: outputs, --json,
# and a non-zero exit with a one-line reason on every kind of error.
# Usage: test_shipctl.sh SHIPD SHIPCTL NATS_SERVER
set -uo pipefail

SHIPD=$1 SHIPCTL=$2 NATS=$3
dir=$(mktemp -d /tmp/shiptest-ctl-XXXXXX)
pass=0 fail=0
cleanup() {
	[ -n "${shipd_pid:-}" ] && kill "$shipd_pid" 2>/dev/null
	[ -n "${nats_pid:-}" ] && kill "$nats_pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
# check NAME EXPECTED_STATUS PATTERN -- command...: status and output match
check() {
	local name=$1 want=$2 pattern=$3
	shift 4
	local out st
	out=$(timeout 20 "$@" 2>&1)
	st=$?
	if [ "$st" = "$want" ] && grep -qE -- "$pattern" <<<"$out"; then
		ok "$name"
	else
		bad "$name (status $st, output: $(head -c 300 <<<"$out"))"
	fi
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
	echo $((20000 + RANDOM % 20000)))
"$NATS" -js -a 127.0.0.1 -p "$port" -sd "$dir/js" >"$dir/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
export SHIP_SOCKET=$dir/shipd.sock
# Two limits unlike their defaults, for status to show.
"$SHIPD" -c /dev/null -s "$SHIP_SOCKET" --nats "nats://127.0.0.1:$port" \
	-o max_requests_total=123 -o client_memory_limit=2097152 >"$dir/shipd.log" 2>&1 &
shipd_pid=$!
for _ in $(seq 100); do [ -S "$SHIP_SOCKET" ] && "$SHIPCTL" status >/dev/null 2>&1 && break; sleep 0.05; done
# Until NATS is connected and the default streams exist.
for _ in $(seq 100); do "$SHIPCTL" events emit warmup >/dev/null 2>&1 && break; sleep 0.1; done

C=$SHIPCTL
check "status" 0 "nats: +connected" -- $C status
check "status --json" 0 '"nats":\{"state":"connected"' -- $C --json status
# The budget against its limits, as people and as scripts read it.
check "status clients of max" 0 '^clients: +[0-9]+ of [0-9]+$' -- $C status
check "status requests of max" 0 \
	'^requests: +[0-9]+ in flight of 123 \(per client [0-9]+\)$' -- $C status
size='[0-9.]+[BKMGT]'
check "status memory of max" 0 \
	"^memory: +$size held of $size \\(per client 2M, output $size\\)\$" -- $C status
check "status --json held" 0 '"held":[0-9]+,' -- $C --json status
check "status --json limits" 0 '"limits":\{"max_clients":[0-9]+,' -- $C --json status
for f in '"max_requests_total":123' '"memory_limit":[0-9]+' '"max_requests":[0-9]+' \
	'"max_subscriptions":[0-9]+' '"client_memory_limit":2097152' \
	'"client_output_limit":[0-9]+'; do
	check "status --json limits $f" 0 "\"limits\":\\{.*$f" -- $C --json status
done
if command -v python3 >/dev/null; then
	check "status --json parses" 0 '^ok$' -- python3 -c '
import json, subprocess, sys
s = json.loads(subprocess.check_output(sys.argv[1:]))
l = s["limits"]
assert s["held"] <= l["memory_limit"] and s["clients"] <= l["max_clients"]
print("ok")' $C --json status
fi
check "clients shows held" 0 ' HELD ' -- $C clients
check "clients --json held" 0 '"queued":[0-9]+,"held":[0-9]+,"denied":0,"user":"root","unit":' -- $C --json clients
check "help of a command" 0 "usage: shipctl pub" -- $C pub --help
check "unknown command" 2 "unknown command" -- $C frobnicate

# pub/sub: --raw prints payloads only and -c exits after N.
$C sub 'ctl.>' --raw -c 2 >"$dir/sub.out" 2>&1 &
sub=$!
sleep 0.3
check "pub" 0 "" -- $C pub ctl.a first
echo second | $C pub ctl.b -H 'X-Test: 1'
wait $sub
if [ "$(cat "$dir/sub.out")" = "first
second
" ] || [ "$(printf 'first\nsecond\n')" = "$(cat "$dir/sub.out")" ]; then
	ok "sub --raw -c 2"
else
	bad "sub --raw -c 2: $(cat "$dir/sub.out")"
fi

# monitor: a publish of another client, its payload, and what apps chose
# (here a subject with a C1 control, CSI) as printable ASCII only.
$C monitor 'mon.>' --payload -c 2 >"$dir/mon.out" 2>&1 &
mon=$!
sleep 0.3
$C pub mon.x hello >/dev/null 2>&1
$C pub "$(printf 'mon.\302\233y')" "$(printf 'a\033[2Jb')" >/dev/null 2>&1
wait $mon
if grep -q '^[0-9:.]* publish shipctl\[[0-9]*\] mon.x 5 B: hello$' "$dir/mon.out" &&
   grep -qF 'mon.\xc2\x9by 6 B: a\x1b[2Jb' "$dir/mon.out" &&
   ! LC_ALL=C grep -q "$(printf '[\200-\377\033]')" "$dir/mon.out"; then
	ok "monitor"
else
	bad "monitor: $(cat -v "$dir/mon.out")"
fi

# req/reply, no responders, timeout, bad subject.
$C reply ctl.echo pong -c 1 >/dev/null 2>&1 &
rep=$!
sleep 0.3
check "req answered" 0 "^pong$" -- $C req ctl.echo ping
wait $rep
check "req no responders" 1 "no responders" -- $C req ctl.nobody ping
$C sub ctl.silent -c 1 >/dev/null 2>&1 &
silent=$!
sleep 0.3
check "req timeout" 1 "timeout" -- $C req ctl.silent x --timeout 300
kill $silent 2>/dev/null
check "bad subject" 1 "invalid" -- $C pub 'a b' x

# KV.
check "kv add" 0 "robots" -- $C kv add robots --history 5
check "kv put" 0 "^1$" -- $C kv put robots r2.battery 87
check "kv get" 0 "^87$" -- $C kv get robots r2.battery
check "kv update conflict" 1 "wrong revision" -- $C kv update robots r2.battery 5 --revision 9
check "kv get missing" 1 "not found" -- $C kv get robots nope
check "kv get --json" 0 '"revision":1' -- $C --json kv get robots r2.battery

# EventBus and Channels.
check "events emit" 0 "^[0-9]+$" -- $C events emit item.created '{"id":1}' --id ctl-1
check "events emit duplicate" 0 "duplicate" -- $C events emit item.created '{"id":1}' --id ctl-1
check "events tail --json" 0 '"event_type":"item.created".*"version":"1.0"' -- \
	$C --json events tail 'item.*' --all -c 1
check "events emit bad payload" 1 "not JSON" -- $C events emit x '{nope'
check "chan send" 0 "^[0-9]+$" -- $C chan send ops hello --as alice
check "chan history" 0 "alice: hello" -- $C chan history ops --last 5

# Snapshots and artifacts, as noesis-ship stores them.
check "snapshot take" 0 '^r2_[0-9]{8}_[0-9]{6}(_[0-9]+)?$' -- \
	$C snapshot take r2 '{"battery": 87}' --reason boot
id=$($C snapshot take r2 --reason second '{ "n" : 2 }')
check "snapshot take stdin" 0 '^r2_[0-9]{8}_[0-9]{6}(_[0-9]+)?$' -- \
	bash -c "echo '[1, 2]' | '$C' snapshot take r2 -"
check "snapshot restore" 0 '^\{"n":2\}$' -- $C snapshot restore "$id"
check "snapshot restore --json" 0 "^\\{\"id\":\"$id\",\"state\":\\{\"n\":2\\}\\}\$" -- \
	$C --json snapshot restore "$id"
check "snapshot ls" 0 "^$id +r2 +[0-9T:Z-]+ +[0-9]+  second\$" -- $C snapshot ls r2
check "snapshot ls --json" 0 "\"id\":\"$id\",\"being_id\":\"r2\",\"reason\":\"second\"" -- \
	$C --json snapshot ls
check "snapshot take bad JSON" 1 "not valid JSON" -- $C snapshot take r2 '{nope'
check "snapshot restore missing" 1 "not found" -- $C snapshot restore r2_20000101_000000
check "snapshot cleanup nothing old" 0 "^0 deleted$" -- \
	$C snapshot cleanup r2 --older-than 1h
check "snapshot cleanup --keep 0" 0 '^\{"deleted":3\}$' -- \
	$C --json snapshot cleanup --older-than 0 --keep 0
check "snapshot cleanup needs an age" 2 "usage" -- $C snapshot cleanup r2
gone=$($C snapshot take r2 '{}')
check "snapshot rm" 0 "" -- $C snapshot rm "$gone"
check "snapshot rm missing" 1 "not found" -- $C snapshot rm "$gone"
printf 'hello' >"$dir/art"
check "artifact put" 0 '^map1 5 SHA-256=' -- \
	$C artifact put map1 "$dir/art" --type map --expedition e1
check "artifact put stdin --json" 0 '"name":"log1","type":"log","expedition":"","size":5' -- \
	bash -c "printf hello | '$C' --json artifact put log1 - --type log"
check "artifact get" 0 '^hello$' -- $C artifact get log1
check "artifact get -o" 0 '"name":"map1","size":5' -- $C --json artifact get map1 -o "$dir/art.out"
check "artifact get -o wrote it" 0 "" -- cmp "$dir/art" "$dir/art.out"
check "artifact ls" 0 '^map1 +map +e1 +5  ' -- $C artifact ls
check "artifact ls --json" 0 '"name":"map1","type":"map","expedition":"e1","size":5' -- \
	$C --json artifact ls
check "artifact description" 0 '"description":"type=map, expedition=e1"' -- \
	$C --json obj info artifacts map1
check "artifact put needs a type" 2 "usage" -- $C artifact put x "$dir/art"
check "artifact get missing" 1 "not found" -- $C artifact get nope

# JobQueue. A claim belongs to its shipctl: it goes back to the queue when
# that shipctl exits, so a claim runs its command while it holds the job.
check "jobs queue-add" 0 '^prefix: +BUILD$' -- \
	$C jobs queue-add builds --prefix BUILD --max-attempts 2 --backoff 100ms
check "jobs queue-add --json" 0 \
	'^\{"queue":"builds","max_attempts":2,"lease_ms":30000,"backoff_ms":100,' -- \
	$C --json jobs queue-add builds --prefix BUILD --max-attempts 2 --backoff 100ms
check "jobs queue-add other settings" 1 "other settings" -- \
	$C jobs queue-add builds --max-attempts 5
check "jobs queue-info" 0 '^max attempts: 2$' -- $C jobs queue-info builds
check "jobs submit" 0 '^BUILD-001$' -- $C jobs submit builds '{"target": "arm64"}'
check "jobs submit --json" 0 \
	'^\{"id":"BUILD-002","queue":"builds","payload":\{"n":2\},"status":"queued","worker":"dgx","queued_by":"shipctl",.*"priority":5,' -- \
	$C --json jobs submit builds '{"n":2}' --priority 5 --worker dgx
check "jobs submit --key" 0 '^BUILD-003$' -- $C jobs submit builds '"a"' --key k1
check "jobs submit --key again" 0 '^BUILD-003$' -- $C jobs submit builds '"b"' --key k1
check "jobs submit stdin" 0 '^BUILD-004$' -- \
	bash -c "echo '[1]' | '$C' jobs submit builds -"
check "jobs submit --delay" 0 '"not_before":[0-9]+' -- \
	$C --json jobs submit later '{}' --delay 1h
check "jobs submit bad JSON" 1 "not JSON" -- $C jobs submit builds '{nope'
check "jobs submit bad queue" 1 "invalid" -- $C jobs submit 'a.b' 1
check "jobs submit bad priority" 2 "usage" -- $C jobs submit builds 1 --priority x
check "jobs ls" 0 '^BUILD-001 +queued +- +0  [0-9T:.-]+Z  \{"target":"arm64"\}$' -- \
	$C jobs ls builds
check "jobs ls --worker" 0 '^\{"jobs":\[\{"id":"BUILD-002"[^[]*\],"truncated":false\}$' -- \
	$C --json jobs ls builds --worker dgx
check "jobs ls --limit" 0 '"truncated":true\}$' -- $C --json jobs ls builds --limit 1
check "jobs ls bad status" 1 "none of queued" -- $C jobs ls builds --status asleep
check "jobs counts" 0 '^queued: +4 \(0 delayed\)$' -- $C jobs counts builds
check "jobs counts --json" 0 \
	'^\{"queued":4,"running":0,"complete":0,"failed":0,"dead_letter":0,"delayed":0\}$' -- \
	$C --json jobs counts builds
check "jobs show" 0 '^payload: +\{"target":"arm64"\}$' -- $C jobs show builds BUILD-001
check "jobs show missing" 1 "not found" -- $C jobs show builds BUILD-999
check "jobs claim without a command" 0 '^id: +BUILD-002$' -- $C jobs claim builds --as dgx
# It went back when that shipctl exited, its attempt counted.
for _ in $(seq 50); do $C jobs show builds BUILD-002 | grep -q '^status: *queued' && break; sleep 0.1; done
check "jobs claim without a command requeues" 0 '^status: +queued \(attempt 1 of 2\)$' -- \
	$C jobs show builds BUILD-002
check "jobs complete of a job not held" 1 "not held by this connection" -- \
	$C jobs complete builds BUILD-001 '{}'
check "jobs fail of a job not held" 1 "not held by this connection" -- \
	$C jobs fail builds BUILD-001 oops --retry
check "jobs claim -- CMD (JSON out)" 0 '^BUILD-002 complete \(attempt 2 of 2\)$' -- \
	$C jobs claim builds --as dgx --wait 5s -- cat
check "jobs claim result" 0 '^result: +\{"n":2\}$' -- $C jobs show builds BUILD-002
check "jobs claim -- CMD (text out)" 0 \
	'^\{"id":"BUILD-001",.*"status":"complete",.*"result":"hello world",' -- \
	$C --json jobs claim builds --as w1 -- echo hello world
check "jobs claim -- CMD failing" 1 'BUILD-003: exit status 3: oops$' -- \
	$C jobs claim builds --as w1 -- sh -c 'echo oops >&2; exit 3'
check "jobs claim failed it" 0 '^error: +exit status 3: oops$' -- $C jobs show builds BUILD-003
check "jobs requeue" 0 '^BUILD-003 queued$' -- $C jobs requeue builds BUILD-003
# shipd takes an error as one line of UTF-8.
check "jobs claim -- CMD failing in binary" 1 'BUILD-003: exit status 1: bad \? byte$' -- \
	$C jobs claim builds --as w1 -- sh -c 'printf "bad \377 byte" >&2; exit 1'
check "jobs requeue again" 0 '^BUILD-003 queued$' -- $C jobs requeue builds BUILD-003
check "jobs cancel" 0 '^BUILD-003 failed \(cancelled\)$' -- $C jobs cancel builds BUILD-003
check "jobs cancel again" 1 "only a queued or running" -- $C jobs cancel builds BUILD-003
check "jobs claim --retry" 1 'BUILD-004: exit status 1' -- \
	$C jobs claim builds --as w1 --retry -- false
check "jobs claim --retry requeued it" 0 '^status: +queued \(attempt 1 of 2\)$' -- \
	$C jobs show builds BUILD-004
check "jobs claim on an empty queue" 1 "not found" -- $C jobs claim idle --as w
check "jobs claim needs a worker" 2 "usage" -- $C jobs claim builds
check "jobs counts after" 0 '^\{"queued":1,"running":0,"complete":2,"failed":1,"dead_letter":0,' -- \
	$C --json jobs counts builds
check "jobs queue-rm" 0 "" -- $C jobs queue-rm builds
check "jobs queue-info removed" 1 "not found" -- $C jobs queue-info builds

# NATS gone: a clear reason, not a hang.
kill "$nats_pid"
wait "$nats_pid" 2>/dev/null
nats_pid=
for _ in $(seq 100); do $C status | grep -q reconnecting && break; sleep 0.1; done
check "status shows the outage" 0 "reconnecting" -- $C status
check "req while NATS is down" 1 "NATS unavailable" -- $C req ctl.echo x
check "pub while NATS is down" 1 "NATS unavailable" -- $C pub ctl.a x

# shipd gone.
kill "$shipd_pid"
wait "$shipd_pid" 2>/dev/null
shipd_pid=
check "daemon not running" 1 "shipd is not running" -- $C status

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
