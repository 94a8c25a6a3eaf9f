#!/bin/bash
# Topology end to end on the sim backend: the publisher in a "dom0" process,
# the CLI in "domU" processes, outputs compared exactly with the files
# next to this script.  Prints "PASS|FAIL: topo/<name>" per check.
#
#   test/topo/run-topo-tests.sh <build-dir>
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
B=$(cd "${1:?usage: $0 <build-dir>}" && pwd)
PUB=$B/tools/xenmpi-topo-publish
CLI=$B/tools/xenmpi-topo
W=$(mktemp -d)
PUBPID=""
export XENMPI_BACKEND=sim XENMPI_SIM_HOST=topo-e2e-$$
unset XENMPI_HOST_ID XENMPI_SIM_DOMID
cleanup() {
    [ -n "$PUBPID" ] && kill "$PUBPID" 2>/dev/null
    rm -rf "$W" "/dev/shm/xenmpi-sim-$XENMPI_SIM_HOST"
}
trap cleanup EXIT

check() { # name: the command's status says pass or fail
    local name=$1; shift
    if "$@" >"$W/check.log" 2>&1; then echo "PASS: topo/$name"
    else echo "FAIL: topo/$name"; sed 's/^/    /' "$W/check.log"; fi
}
in_dom() { local d=$1; shift; XENMPI_SIM_DOMID=$d "$@"; }
same() { # expected-file actual-file
    diff -u "$1" "$2"
}
SYN="pack:2 numa:2 core:4 pu:2"
AFF=$W/aff.txt
cp "$HERE/host4-affinity.txt" "$AFF"

# domUs 3 and 5 exist before dom0 publishes; nothing is published yet
fallback() {
    in_dom 5 "$CLI" >/dev/null 2>&1 || return 1
    in_dom 3 "$CLI" >"$W/out" 2>"$W/err" || return 1
    grep -q '^source: hwloc inside this VM (no host data: no host topology from dom0 for domain 3 (/local/domain/3/xenmpi/topo/xml/meta is missing): in dom0 run .xenmpi-topo-publish.' "$W/out" &&
        grep -q "meanwhile domain 3 uses the topology hwloc sees inside this VM" "$W/err" || return 1
    # strict mode fails with the same reason
    ! in_dom 3 "$CLI" --require-dom0 >/dev/null 2>"$W/err" &&
        grep -q 'xenmpi-topo: no host topology from dom0 for domain 3' "$W/err"
}
check fallback-without-dom0-data fallback

not_dom0() {
    ! in_dom 3 "$PUB" --synthetic "$SYN" --affinity "$AFF" 2>"$W/err" &&
        grep -q "this is domain 3, not dom0" "$W/err"
}
check publisher-refuses-outside-dom0 not_dom0
sim_needs_sources() {
    ! in_dom 0 "$PUB" --synthetic "$SYN" 2>"$W/err" &&
        grep -q "on the sim backend give the host topology (--synthetic or --xml) and --affinity FILE" "$W/err"
}
check publisher-sim-needs-sources sim_needs_sources

publish() {
    # the XML's size depends on hwloc's version and the process name it records
    in_dom 0 "$PUB" --host-id e2e-host --synthetic "$SYN" --affinity "$AFF" >"$W/raw" &&
        sed -E 's/host XML [0-9]+ bytes in 4 chunks/host XML <n> bytes in 4 chunks/' "$W/raw" >"$W/out" &&
        same "$HERE/expected-publish.txt" "$W/out"
}
check publish publish
show() { in_dom 3 "$CLI" --require-dom0 show >"$W/out" && same "$HERE/expected-show.txt" "$W/out"; }
check show-domain3 show
peer() { in_dom 3 "$CLI" peer 5 >"$W/out" && same "$HERE/expected-peer.txt" "$W/out"; }
check peer-distance peer
propose() {
    { in_dom 3 "$CLI" propose 2 && in_dom 3 "$CLI" propose 3 --peer 1=5 &&
      in_dom 3 "$CLI" propose 5; } >"$W/out" && same "$HERE/expected-propose.txt" "$W/out"
}
check propose propose
propose_bad() {
    ! in_dom 3 "$CLI" propose 7 2>"$W/err" && grep -q "7 ranks on 6 vCPUs" "$W/err" &&
    ! in_dom 3 "$CLI" propose 2 --peer 2=5 2>"$W/err" && grep -q "rank must be below 2" "$W/err"
}
check propose-errors propose_bad
# the proposed binding is accepted by hwloc-bind (this machine's PU 0 exists)
hwloc_bind_accepts() {
    local cmd
    cmd=$(in_dom 3 "$CLI" propose 1 | sed -n 's/^rank 0: hwloc-bind \(.*\) -- <program>$/\1/p')
    [ "$cmd" = "-p pu:0 pu:1" ] && hwloc-bind -p pu:0 -- true
}
check hwloc-bind-form hwloc_bind_accepts
draw() {
    in_dom 3 "$CLI" draw "$W/host.png" >/dev/null &&
        [ "$(head -c 8 "$W/host.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
        in_dom 3 "$CLI" draw "$W/host.svg" >/dev/null &&
        grep -q '>vCPU 0<' "$W/host.svg" && grep -q '>vCPU 4 (floating)<' "$W/host.svg" &&
        grep -q "id='PU_0_rect' .*fill='rgb(232,89,12)'" "$W/host.svg" &&
        grep -q "id='PU_8_rect' .*fill='rgb(232,89,12)'" "$W/host.svg" &&
        grep -q "id='PU_9_rect' .*fill='rgb(255,192,120)'" "$W/host.svg" &&
        [ "$(grep -c "fill='rgb(232,89,12)'" "$W/host.svg")" = 4 ] &&
        ! in_dom 3 "$CLI" draw "$W/host.gif" 2>/dev/null
}
check draw-png-svg draw

# bad input at the publisher: refused, nothing changes for the domain
bad_input() {
    echo "3 6 99" >>"$AFF"
    ! in_dom 0 "$PUB" --host-id e2e-host --synthetic "$SYN" --affinity "$AFF" >/dev/null 2>"$W/err" &&
        grep -q "domain 3 vCPU 6 runs on pCPUs 99, out of range: the host's pCPUs are 0-31" "$W/err" &&
        in_dom 3 "$CLI" --require-dom0 show >"$W/out" && same "$HERE/expected-show.txt" "$W/out"
}
check bad-affinity-refused bad_input
cp "$HERE/host4-affinity.txt" "$AFF"

# --interval: a re-pin reaches the domain without restarting the publisher
refresh() {
    # not through in_dom: $! must be the publisher, not a subshell around it
    XENMPI_SIM_DOMID=0 "$PUB" --host-id e2e-host --synthetic "$SYN" --affinity "$AFF" \
        --interval 1 >"$W/pub.log" 2>&1 &
    PUBPID=$!
    for _ in $(seq 50); do   # its first round: everything is already there
        [ "$(grep -c '^domain [35]: unchanged' "$W/pub.log")" = 2 ] && break
        sleep 0.2
    done
    sed -i 's/^3 2 2 /3 2 20/' "$AFF"
    for _ in $(seq 50); do
        in_dom 3 "$CLI" show | grep -q '^2     20 ' && break
        sleep 0.2
    done
    kill "$PUBPID"; wait "$PUBPID"; PUBPID=""
    in_dom 3 "$CLI" show | grep -q '^2     20         10        1         2         -             -$' &&
        grep -q '^domain 3: published .*its vCPUs on pCPUs 0 1 20 8 0-31 2$' "$W/pub.log" &&
        grep -q '^domain 5: published .*its vCPUs on pCPUs 18 19$' "$W/pub.log" &&
        [ "$(grep -c '^domain [35]: unchanged' "$W/pub.log")" = 2 ] &&
        [ "$(wc -l <"$W/pub.log")" = 4 ]   # rounds without change say nothing
}
check refresh-interval refresh
