#!/usr/bin/env bash
# tools/chord-cluster end to end: 4 hosts (network namespaces as root, loopback otherwise),
# a key written, then every fault the script makes and undoes — kill -9, restart on the data
# dir, link cut and restore, partition and heal, a join and a graceful leave — with the key
# read back after each, and nothing the script made left behind by `stop`.
#   chord_cluster_test.sh CHORD_CLUSTER CHORDD CHORDCTL
set -euo pipefail
CC="$1"
export CHORDD="$2"
CTL="$3"
STATE="$(mktemp -d)/cluster"
export SUBNET=10.214.7 PORT=7500
cc() { "$CC" --state "$STATE" "$@"; }
trap 'cc stop >/dev/null 2>&1 || true; rm -rf "$(dirname "$STATE")"' EXIT
fail() { echo "FAIL: $*" >&2; cc status >&2 || true; exit 1; }

# Polls a command until it succeeds, for at most $1 seconds.
eventually() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}
get_is() {  # get_is HOST KEY VALUE: the key reads back VALUE through host HOST
    [[ "$("$CTL" --timeout 2000 --node "$(cc addr "$1")" get "$2")" == "$3" ]]
}
ring_has() {  # ring_has HOST N: a ring walk from HOST meets N processes
    "$CTL" --timeout 2000 --node "$(cc addr "$1")" ring | grep -q "on $2 processes"
}

cc start 4 -- --repair-interval 200 || fail "start"
"$CTL" --node "$(cc addr 0)" put greeting hello || fail "put"
eventually 10 get_is 3 greeting hello || fail "get after put"

cc kill 1 || fail "kill"
eventually 20 ring_has 0 3 || fail "ring after kill -9"
eventually 10 get_is 0 greeting hello || fail "get after kill -9"
cc restart 1 || fail "restart"
eventually 20 ring_has 0 4 || fail "ring after restart"

cc add >/dev/null || fail "add"
eventually 20 ring_has 0 5 || fail "ring after add"
cc leave 4 || fail "leave"
eventually 20 ring_has 0 4 || fail "ring after leave"
eventually 10 get_is 2 greeting hello || fail "get after leave"

if [[ "$(id -u)" == 0 ]]; then
    cc cut 2 || fail "cut"
    if cc exec 0 "$CTL" --timeout 500 --node "$(cc addr 2)" ring >/dev/null 2>&1; then
        fail "host 2 still reachable after cut"
    fi
    cc restore 2 || fail "restore"
    eventually 20 ring_has 0 4 || fail "ring after restore"

    cc partition 0,1 2,3 || fail "partition"
    if cc exec 0 "$CTL" --timeout 500 --node "$(cc addr 3)" ring >/dev/null 2>&1; then
        fail "host 3 reachable from host 0 across the partition"
    fi
    cc exec 0 "$CTL" --timeout 2000 --node "$(cc addr 1)" stats >/dev/null ||
        fail "host 1 unreachable from host 0 inside its group"
    cc heal || fail "heal"
    eventually 30 ring_has 0 4 || fail "ring after heal"
    eventually 10 get_is 3 greeting hello || fail "get after heal"
    made="$(ip netns list | grep -c "^ckv" || true)"
    [[ "$made" -ge 4 ]] || fail "expected the hosts' namespaces, found $made"
else
    code=0
    cc cut 2 2>/dev/null || code=$?
    [[ "$code" == 3 ]] || fail "cut without root exited $code, not 3"
fi

pids="$(cc status | sed -n 's/.*pid=\([0-9]*\).*/\1/p')"
cc stop || fail "stop"
for pid in $pids; do
    if kill -0 "$pid" 2>/dev/null; then fail "process $pid still running after stop"; fi
done
[[ ! -e "$STATE" ]] || fail "state dir left behind"
if [[ "$(id -u)" == 0 ]]; then
    # The names chord-cluster made for this state dir start with ckv + its tag.
    tag="$(printf '%s' "$STATE" | sha1sum | cut -c1-4)"
    if ip netns list | grep -q "ckv$tag"; then fail "namespaces left behind"; fi
    if ip -o link | grep -q "ckv$tag"; then fail "links left behind"; fi
fi
echo "chord-cluster: every fault made and undone; nothing left behind"
