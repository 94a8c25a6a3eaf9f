#!/bin/bash
# Tests of the UCX transport "xen" with the stock UCX tools.
#   usage: test/ucx/run-ucx-tests.sh <path to libuct_xen.so>
# (XM_PRELOAD_FIRST: a library preloaded before it, e.g. libasan.so)
# Prints one "PASS: ucx/<name>" or "FAIL: ucx/<name>" line per test (details
# on "#" lines) and exits non-zero if any failed.  Two-process tests run two
# ucx_perftest processes on this machine; on the sim backend each process is
# its own domain of a private simulated host.
set -u

lib=${1:-}
if [ -z "$lib" ] || [ ! -f "$lib" ]; then
    echo "usage: $0 <path to libuct_xen.so>" >&2
    exit 2
fi
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
# what every process preloads: the transport, after XM_PRELOAD_FIRST (the
# sanitizer runtime, for a transport built with ASan)
pre="${XM_PRELOAD_FIRST:+$XM_PRELOAD_FIRST }$lib"
for tool in ucx_info ucx_perftest timeout; do
    command -v $tool >/dev/null || { echo "$0: $tool not found (install ucx-utils)" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/ucx-xen-test.XXXXXX)
cleanup() {
    rm -rf /dev/shm/xenmpi-sim-ucxtest-$$-* "$tmp"
}
trap cleanup EXIT

TMO=${UCX_TEST_TIMEOUT:-60}
port=$(( 20000 + ($$ % 20000) ))
failed=0

pass() { echo "PASS: ucx/$1"; }
fail() {
    echo "FAIL: ucx/$1${2:+ ($2)}"
    failed=$((failed + 1))
    [ -n "${3:-}" ] && [ -f "$3" ] && sed 's/^/#   /' "$3" | tail -20
}

# a fresh simulated host per test, so runs never see each other's domains
new_host() {
    echo "ucxtest-$$-$1"
}

run_info() {
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$(new_host info)" timeout "$TMO" ucx_info "$@"
}

# ---------------------------------------------------------------- ucx_info
t=info-devices
if run_info -d > "$tmp/$t" 2>&1 &&
   grep -q '^#  *Transport: xen$' "$tmp/$t" &&
   grep -A1 '^#  *Transport: xen$' "$tmp/$t" | grep -q 'Device: xen0'; then
    pass $t
else
    fail $t "ucx_info -d does not list transport xen on device xen0" "$tmp/$t"
fi

t=info-config
run_info -c -f > "$tmp/$t" 2>&1
missing=
for var in RING_PAGES SEG_SIZE MAX_SHORT BACKEND EVENTS NUMA_BIND; do
    # a description: a non-empty comment in the block above the variable
    awk -v v="UCX_XEN_$var=" '
        /^#/ { if ($0 !~ /^# *$/ && $0 !~ /^# (syntax|inherits):/) doc = 1; next }
        index($0, v) == 1 { found = doc; exit }
        { doc = 0 }
        END { exit !found }' "$tmp/$t" || missing="$missing $var"
done
if [ -z "$missing" ]; then
    pass $t
else
    fail $t "no UCX_XEN_ variable with a description for:$missing" "$tmp/$t"
fi

# ---------------------------------------------------------------- perftest
# run_pair <name> <extra env (space separated k=v)> <perftest args...>
# Server in the background on a private port, client to 127.0.0.1.
run_pair() {
    local name=$1 envs=$2; shift 2
    local host; host=$(new_host "$name")
    # SRV_ENV / CLI_ENV: extra settings for one side only
    port=$((port + 1))
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$host" $envs ${SRV_ENV:-} \
        timeout "$TMO" ucx_perftest -p "$port" "$@" > "$tmp/$name.srv" 2>&1 &
    local spid=$!
    local i
    # wait until the server listens (perftest prints nothing until then)
    for i in $(seq 1 50); do
        if ss -ltn 2>/dev/null | grep -q ":$port\b"; then break; fi
        sleep 0.1
    done
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$host" $envs ${CLI_ENV:-} \
        timeout "$TMO" ucx_perftest 127.0.0.1 -p "$port" "$@" > "$tmp/$name.cli" 2>&1
    local crc=$?
    wait $spid
    local src=$?
    [ $crc -eq 0 ] && [ $src -eq 0 ] && grep -q '^Final:' "$tmp/$name.cli"
}

final_line() { grep '^Final:' "$1" | tr -s ' '; }

uct_test() {
    local name=$1; shift
    if run_pair "$name" "" -d xen0 -x xen "$@"; then
        pass "$name"
        echo "#   $(final_line "$tmp/$name.cli")"
    else
        cat "$tmp/$name.srv" >> "$tmp/$name.cli"
        fail "$name" "ucx_perftest $*" "$tmp/$name.cli"
    fi
}

uct_test uct-am_lat-short -t am_lat -D short -s 8    -n 20000
uct_test uct-am_lat-bcopy -t am_lat -D bcopy -s 1024 -n 20000
uct_test uct-am_bw-short  -t am_bw  -D short -s 64   -n 200000
uct_test uct-am_bw-bcopy  -t am_bw  -D bcopy -s 8192 -n 100000
# emulated RMA: the owner of the memory applies puts and answers gets in its
# progress (perftest checks nothing but completion; the hostile-input test
# below checks contents and refusals)
uct_test uct-put_lat-short -t put_lat -D short -s 8    -n 20000
uct_test uct-put_bw-short  -t put_bw  -D short -s 64   -n 200000
uct_test uct-put_bw-bcopy  -t put_bw  -D bcopy -s 8192 -n 100000
uct_test uct-get-bcopy     -t get     -D bcopy -s 8192 -n 20000

# UCP over xen (self for loopback): the lanes UCP chose must name xen.
ucp_test() {
    local name=$1; shift
    if ! run_pair "$name" "UCX_TLS=xen,self UCX_LOG_LEVEL=info ${XEN_EVENTS:-}" "$@"; then
        cat "$tmp/$name.srv" >> "$tmp/$name.cli"
        fail "$name" "ucx_perftest $*" "$tmp/$name.cli"
        return
    fi
    local f ok=1
    for f in "$tmp/$name.srv" "$tmp/$name.cli"; do
        # e.g. "ep_cfg[0]: tag(xen/xen0)": every remote lane is on xen;
        # LANE narrows it, e.g. to an rma lane
        grep -q "ep_cfg\\[[0-9]*\\]:.*${LANE:-}xen/xen0" "$f" || ok=0
    done
    if [ $ok -eq 1 ]; then
        pass "$name"
        echo "#   $(grep -h -o 'ep_cfg\[[0-9]*\]:.*' "$tmp/$name.cli" | sort -u | head -3 | tr '\n' ' ')"
        echo "#   $(final_line "$tmp/$name.cli")"
    else
        fail "$name" "no ep_cfg ${LANE:-}lane on xen/xen0 in the UCX info log" "$tmp/$name.cli"
    fi
}

ucp_test ucp-tag_lat-8  -t tag_lat -s 8       -n 20000
ucp_test ucp-tag_lat-1m -t tag_lat -s 1048576 -n 200
ucp_test ucp-tag_bw-8   -t tag_bw  -s 8       -n 100000
ucp_test ucp-tag_bw-1m  -t tag_bw  -s 1048576 -n 200
ucp_test ucp-tag_bw-4m  -t tag_bw  -s 4194304 -n 50
ucp_test ucp-stream_lat-8  -t stream_lat -s 8     -n 20000
ucp_test ucp-stream_bw-64k -t stream_bw  -s 65536 -n 2000
ucp_test ucp-am_lat-8      -t ucp_am_lat -s 8     -n 20000
ucp_test ucp-am_bw-64k     -t ucp_am_bw  -s 65536 -n 2000
# different ring sizes per process: the sender (client) fragments into 64 KiB
# records in its 1 MiB ring, more than half of the receiver's 32 KiB ring
# (a receiver checks records against the sender's ring)
SRV_ENV="UCX_XEN_RING_PAGES=8 UCX_XEN_SEG_SIZE=8192" \
CLI_ENV="UCX_XEN_RING_PAGES=256 UCX_XEN_SEG_SIZE=65536" \
ucp_test ucp-tag_bw-1m-rings -t tag_bw -s 1048576 -n 200
# wakeup (events are on by default): UCP sleeps on the iface's event fd.
# 1 MiB needs the sender woken when the receiver frees ring space, and
# progress to count the pending requests it ran as work.
ucp_test ucp-tag_lat-8-sleep  -t tag_lat -s 8       -n 5000  -E sleep
ucp_test ucp-tag_bw-64k-sleep -t tag_bw  -s 65536   -n 2000  -E sleep
ucp_test tag_bw-1m-sleep      -t tag_bw  -s 1048576 -n 200   -E sleep
ucp_test ucp-tag_lat-1m-sleep -t tag_lat -s 1048576 -n 100   -E sleep
# RMA: UCP chooses an rma lane on xen (emulated put/get, "rma(xen/xen0)").
# The target applies puts and answers gets in its progress; perftest's
# ucp_get target only progresses in its final barrier, so gets wait for it
# there (slow, but each one is answered: that is what this checks).
LANE='rma[^ ]*(' ucp_test ucp-put_lat-8  -t ucp_put_lat -s 8    -n 20000
LANE='rma[^ ]*(' ucp_test ucp-put_bw-64k -t ucp_put_bw  -s 65536 -n 2000
LANE='rma[^ ]*(' ucp_test ucp-get-8k     -t ucp_get     -s 8192  -n 2000
# the switch still works: without events UCP polls

XEN_EVENTS="UCX_XEN_EVENTS=n"
ucp_test ucp-tag_lat-8-noevents -t tag_lat -s 8 -n 5000
XEN_EVENTS=

# ---------------------------------------------------------------- UCP program
# test/ucx/ucp_peer_fail (built by `make check`), next to the library's
# build directory unless UCP_PEER_FAIL names it.
prog=${UCP_PEER_FAIL:-$(dirname "$(dirname "$lib")")/test/ucx/ucp_peer_fail}
ucp_prog() {
    local name=$1 mode=$2
    if [ ! -x "$prog" ]; then
        fail "$name" "$prog not built (make -C build check or make test/ucx/ucp_peer_fail)"
        return
    fi
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$(new_host "$name")" UCX_TLS=${TLS:-xen,self} \
        UCX_LOG_LEVEL=${LOG:-error} timeout "$TMO" "$prog" "$mode" > "$tmp/$name" 2>&1
    local rc=$?
    if [ $rc -eq 0 ] && ! grep -q '^FAIL' "$tmp/$name"; then
        pass "$name"
        sed 's/^/#   /' "$tmp/$name" | grep '^#   ok' | tail -4
    else
        fail "$name" "rc $rc" "$tmp/$name"
    fi
}
# two xen ifaces in one process (two workers), messages both ways
ucp_prog ucp-two-workers two-workers
# error mode PEER: the streaming peer is killed with SIGKILL; the survivor's
# error callback fires within 10 s and its worker keeps working
ucp_prog ucp-peer-fail-kill kill
# a peer whose domain cannot accept the channel (grant table full): error
# mode PEER gets the error callback within 10 s, error mode NONE aborts the
# sender within 10 s (not a wait for the 60 s connect timeout)
ucp_prog ucp-refused-peer refused-peer
ucp_prog ucp-refused-none refused-none

# ---------------------------------------------------------------- xen alone
# UCX_TLS=xen without self: an iface reaches itself (the core connects the
# endpoint to itself, a pair of channels) and the other ifaces of its
# process.  Loopback tagged messages of 0 B to 4 MiB (every byte), a burst
# matched in order, put and get on our own memory; UCP's lanes to ourselves
# must be on xen (nothing else is allowed, so this checks it chose them).
t=xen-alone-loopback
if [ ! -x "$prog" ]; then
    fail "$t" "$prog not built (make -C build check or make test/ucx/ucp_peer_fail)"
else
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$(new_host "$t")" UCX_TLS=xen UCX_LOG_LEVEL=info \
        timeout "$TMO" "$prog" loopback > "$tmp/$t" 2>&1
    rc=$?
    if [ $rc -ne 0 ] || grep -q '^FAIL' "$tmp/$t" || ! grep -q '^ok: endpoint closed' "$tmp/$t"; then
        fail "$t" "rc $rc" "$tmp/$t"
    elif ! grep -q 'ep_cfg\[[0-9]*\]: tag(xen/xen0) rma(xen/xen0)' "$tmp/$t"; then
        fail "$t" "no ep_cfg with tag and rma lanes on xen/xen0" "$tmp/$t"
    else
        pass "$t"
        grep -h -o 'ep_cfg\[[0-9]*\]:.*' "$tmp/$t" | sort -u | sed 's/^/#   /'
        grep '^ok' "$tmp/$t" | sed 's/^/#   /'
    fi
fi
TLS=xen ucp_prog xen-alone-two-workers two-workers
# ucx_perftest's loopback mode (-l): one process talks to itself, UCT (an
# ep to its own iface) and UCP
uct_loop() {
    local name=$1; shift
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$(new_host "$name")" UCX_TLS=xen \
        timeout "$TMO" ucx_perftest -l "$@" > "$tmp/$name" 2>&1
    local rc=$?
    if [ $rc -eq 0 ] && grep -q '^Final:' "$tmp/$name"; then
        pass "$name"
        echo "#   $(final_line "$tmp/$name")"
    else
        fail "$name" "ucx_perftest -l $* (rc $rc)" "$tmp/$name"
    fi
}
uct_loop xen-alone-uct-am_lat  -d xen0 -x xen -t am_lat  -D bcopy -s 1024 -n 10000
uct_loop xen-alone-uct-put_bw  -d xen0 -x xen -t put_bw  -D bcopy -s 8192 -n 10000
uct_loop xen-alone-uct-get     -d xen0 -x xen -t get     -D bcopy -s 8192 -n 5000
uct_loop xen-alone-ucp-tag_lat -t tag_lat -s 8       -n 10000
uct_loop xen-alone-ucp-tag_bw  -t tag_bw  -s 1048576 -n 100

# ---------------------------------------------------------------- zero-copy
# Large messages go by UCP's rendezvous: the receiver gets the sender's
# pages with GET_ZCOPY, which the owner grants on demand (chunks of up to
# 1 MiB) and the peer grant-copies (process_vm_readv on sim); both sides
# cache.  XENMPI_ZC_STATS=1 makes every process print its counters at exit
# (test/zc-stats.sh reads them).
# test/ucx/ucp_zcopy (built by `make check`, or UCP_ZCOPY) checks every
# byte; its parent receives (and copies), its child sends (owns the pages).
zprog=${UCP_ZCOPY:-$(dirname "$(dirname "$lib")")/test/ucx/ucp_zcopy}

. "$(dirname "$0")/../zc-stats.sh"   # zc_sum
# zc_role_pid <file> <sender|receiver>
zc_role_pid() { sed -n "s/^$2 pid=\\([0-9]*\\)\$/\\1/p" "$1" | head -1; }
zc_show() { grep -h -o 'xenmpi-zc: pid=.*' "$@" | sed 's/^/#   /'; }

# zc_run <name> <mode> [env k=v ...]: run ucp_zcopy; 0 when it passed its
# own checks (exit 0, "ok: done", no FAIL line).  Grant copy for every
# rendezvous (UCX_XEN_ZCOPY=y): these tests count what it does (grants,
# revokes, releases, copies); which path the default takes is measured
# and tested in test_xfer (path_choice_*)
zc_run() {
    local name=$1 mode=$2; shift 2
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$(new_host "$name")" UCX_TLS=xen,self \
        UCX_LOG_LEVEL=error XENMPI_ZC_STATS=1 UCX_XEN_ZCOPY_MIN=0 UCX_XEN_ZCOPY=y "$@" \
        timeout "$ZTMO" "$zprog" "$mode" > "$tmp/$name" 2>&1
    zc_rc=$?
    [ $zc_rc -eq 0 ] && grep -q '^ok: done' "$tmp/$name" && ! grep -q '^FAIL' "$tmp/$name"
}
ZTMO=${UCX_ZCOPY_TIMEOUT:-180}

# the knobs are documented
t=zcopy-config
missing=
for var in ZCOPY GRANT_CACHE PEER_CACHE; do
    awk -v v="UCX_XEN_$var=" '
        /^#/ { if ($0 !~ /^# *$/ && $0 !~ /^# (syntax|inherits):/) doc = 1; next }
        index($0, v) == 1 { found = doc; exit }
        { doc = 0 }
        END { exit !found }' "$tmp/info-config" || missing="$missing $var"
done
if [ -z "$missing" ]; then
    pass $t
    grep -h -E '^UCX_XEN_(ZCOPY|GRANT_CACHE|PEER_CACHE)=' "$tmp/info-config" | sed 's/^/#   /'
else
    fail $t "no UCX_XEN_ variable with a description for:$missing"
fi

# zcopy-lane: UCP gives the xen lane the rma_bw role (rendezvous by get/put
# zcopy) when the transport advertises zero-copy, and not with
# UCX_XEN_ZCOPY=n.  UCX 1.13 prints lane roles only at debug level (wireup.c,
# ucp_wireup_print_config), e.g.
#   ... wireup.c:1094 UCX DEBUG ep 0x...: lane[0]:  1:xen/xen0.0 md[1] -> addr[1].md[1]/xen/sysdev[255] rma_bw#0 am am_bw#0
# (the info-level "ep_cfg[0]: tag(xen/xen0)" is the same either way).
t=zcopy-lane
lane_re='lane\[[0-9]+\]: +[0-9]+:xen/xen0\.[0-9]+ .*'
lane_line() { grep -h -o -E "ep 0x[0-9a-f]+: $lane_re" "$@" | head -1 | sed 's/^ep 0x[0-9a-f]*: //'; }
why=
run_pair $t-y "UCX_TLS=xen,self UCX_LOG_LEVEL=debug XENMPI_ZC_STATS=1" \
    -t tag_bw -s 16777216 -n 20 || why="ucx_perftest failed (zcopy on);"
run_pair $t-n "UCX_TLS=xen,self UCX_LOG_LEVEL=debug XENMPI_ZC_STATS=1 UCX_XEN_ZCOPY=n" \
    -t tag_bw -s 16777216 -n 20 || why="$why ucx_perftest failed (UCX_XEN_ZCOPY=n);"
for s in srv cli; do
    grep -q -E "$lane_re rma_bw#[0-9]" "$tmp/$t-y.$s" || why="$why $s: no xen lane with rma_bw;"
    grep -q -E "$lane_re" "$tmp/$t-n.$s" || why="$why $s (UCX_XEN_ZCOPY=n): no xen lane in the log;"
    ! grep -q -E "$lane_re rma_bw#" "$tmp/$t-n.$s" || why="$why $s (UCX_XEN_ZCOPY=n): xen lane with rma_bw;"
done
zy=$(zc_sum <(cat "$tmp/$t-y.srv" "$tmp/$t-y.cli") all zc_bytes)
zn=$(zc_sum <(cat "$tmp/$t-n.srv" "$tmp/$t-n.cli") all zc_bytes)
[ "$zy" != none ] && [ "$zy" -gt 0 ] || why="$why zc_bytes $zy with zero-copy on;"
[ "$zn" = none ] || [ "$zn" -eq 0 ] || why="$why zc_bytes $zn with UCX_XEN_ZCOPY=n;"
if [ -z "$why" ]; then
    pass $t
    echo "#   zcopy on:  $(lane_line "$tmp/$t-y.cli")"
    echo "#   UCX_XEN_ZCOPY=n: $(lane_line "$tmp/$t-n.cli")"
    echo "#   zc_bytes: $zy (on), $zn (UCX_XEN_ZCOPY=n); $(final_line "$tmp/$t-y.cli")"
else
    fail $t "$why"
    echo "#   zcopy on:  $(lane_line "$tmp/$t-y.cli" "$tmp/$t-y.srv")"
    echo "#   UCX_XEN_ZCOPY=n: $(lane_line "$tmp/$t-n.cli" "$tmp/$t-n.srv")"
    zc_show "$tmp/$t-y.srv" "$tmp/$t-y.cli"
    grep -h -v -E 'UCX +DEBUG|^$' "$tmp/$t-y.srv" "$tmp/$t-y.cli" | tail -8 | sed 's/^/#   /'
fi

zc_report() {  # name: the program's summary and the stats lines
    grep -h -E '^ok: (receiver|sender|reuse-va):' "$tmp/$1" | sed 's/^/#   /'
    zc_show "$tmp/$1"
}
zc_fail() {  # name why
    fail "$1" "$2" "$tmp/$1"
}

# zcopy-sizes: 0 B .. 64 MiB, aligned and odd offsets, 3 rounds over the
# same buffers: every byte right, zero-copy used, and the caches hit
t=zcopy-sizes
if [ ! -x "$zprog" ]; then
    fail $t "$zprog not built (make -C build check or make test/ucx/ucp_zcopy)"
elif ! zc_run $t sizes; then
    zc_fail $t "rc $zc_rc"
else
    z=$(zc_sum "$tmp/$t" all zc_bytes); h=$(zc_sum "$tmp/$t" all hits)
    if [ "$z" = none ]; then zc_fail $t "no xenmpi-zc statistics line (XENMPI_ZC_STATS=1)"
    elif [ "$z" -eq 0 ]; then zc_fail $t "contents right, but zc_bytes=0: zero-copy not used"
    elif [ "$h" -eq 0 ]; then zc_fail $t "contents right, zero-copy used, but no cache hit in 3 rounds"
    else pass $t; zc_report $t
    fi
fi
sizes_revokes=$(zc_sum "$tmp/$t" "$(zc_role_pid "$tmp/$t" sender)" revokes 2>/dev/null)

# ucp-net-only-address: the same transfers with the addresses Open MPI's pml
# ucx gives peers on other nodes (UCP_WORKER_ADDRESS_FLAG_NET_ONLY: network
# devices only); the VMs of one host are such nodes, so xen must be in it
t=ucp-net-only-address
if [ ! -x "$zprog" ]; then
    fail $t "$zprog not built (make -C build check or make test/ucx/ucp_zcopy)"
elif ! zc_run $t sizes UCP_ZCOPY_NET_ONLY=1 UCX_LOG_LEVEL=error; then
    zc_fail $t "rc $zc_rc"
else
    z=$(zc_sum "$tmp/$t" all zc_bytes)
    if [ "$z" = none ] || [ "$z" -eq 0 ]; then zc_fail $t "contents right, but zero-copy not used (zc_bytes $z)"
    else pass $t; zc_report $t
    fi
fi

# zcopy-reuse-va: a 4 MiB buffer sent, unmapped, mapped again at the same
# address with new data (and half untouched: zero pages), rewritten in
# place, sent as a sub-range: the receiver sees the new data each time.
# On sim the copy reads the owner's current mapping, so old pages cannot
# show up in the contents here; the owner's counters can: every new mapping
# is a new registration whose pages need grants of their own (chunks of at
# most 1 MiB: the program prints how many at least), or a peer on real Xen
# would read the old, still-granted pages.
t=zcopy-reuse-va
if [ ! -x "$zprog" ]; then
    fail $t "$zprog not built"
elif ! zc_run $t reuse-va; then
    zc_fail $t "rc $zc_rc"
else
    spid=$(zc_role_pid "$tmp/$t" sender)
    remaps=$(sed -n 's/^ok: reuse-va: .* \([0-9]*\) remaps at the same address.*/\1/p' "$tmp/$t")
    chunks=$(sed -n 's/^ok: reuse-va: new pages went out in at least \([0-9]*\) chunks.*/\1/p' "$tmp/$t")
    z=$(zc_sum "$tmp/$t" all zc_bytes); g=$(zc_sum "$tmp/$t" "$spid" grants)
    if [ "$z" = none ] || [ "$g" = none ]; then zc_fail $t "no xenmpi-zc statistics line of the sender (pid $spid)"
    elif [ "$z" -eq 0 ]; then zc_fail $t "contents right, but zc_bytes=0: zero-copy not used"
    elif [ "$g" -lt "${chunks:-1}" ]; then
        zc_fail $t "contents right, but the sender made $g grants for new pages needing at least $chunks: old grants reused for new pages"
    else pass $t; zc_report $t; echo "#   sender: $g grants; $((1 + remaps)) mappings of one address needed at least $chunks"
    fi
fi

# zcopy-eviction: a 2 MiB grant cache: the owner withdraws least recently
# used grants (more than with the default 64 MiB), contents stay right
t=zcopy-eviction
if [ ! -x "$zprog" ]; then
    fail $t "$zprog not built"
elif ! zc_run $t sizes UCX_XEN_GRANT_CACHE=2M; then
    zc_fail $t "rc $zc_rc (UCX_XEN_GRANT_CACHE=2M)"
else
    r=$(zc_sum "$tmp/$t" "$(zc_role_pid "$tmp/$t" sender)" revokes); z=$(zc_sum "$tmp/$t" all zc_bytes)
    if [ "$r" = none ]; then zc_fail $t "no xenmpi-zc statistics line of the sender"
    elif [ "$z" -eq 0 ]; then zc_fail $t "contents right, but zc_bytes=0: zero-copy not used"
    elif [ "$r" -eq 0 ]; then zc_fail $t "contents right, but the owner revoked nothing with UCX_XEN_GRANT_CACHE=2M"
    elif [ -n "$sizes_revokes" ] && [ "$sizes_revokes" != none ] && [ "$r" -le "$sizes_revokes" ]; then
        zc_fail $t "contents right, but the owner revoked $r grants with a 2 MiB cache, $sizes_revokes with the default"
    else pass $t; zc_report $t; echo "#   owner revokes: $r with UCX_XEN_GRANT_CACHE=2M (${sizes_revokes:-?} with the default)"
    fi
fi

# zcopy-peer-cache: a 2 MiB cache of peer refs: the copier releases grants
# (REL), contents stay right
t=zcopy-peer-cache
if [ ! -x "$zprog" ]; then
    fail $t "$zprog not built"
elif ! zc_run $t sizes UCX_XEN_PEER_CACHE=2M; then
    zc_fail $t "rc $zc_rc (UCX_XEN_PEER_CACHE=2M)"
else
    l=$(zc_sum "$tmp/$t" "$(zc_role_pid "$tmp/$t" receiver)" releases); z=$(zc_sum "$tmp/$t" all zc_bytes)
    if [ "$l" = none ]; then zc_fail $t "no xenmpi-zc statistics line of the receiver"
    elif [ "$z" -eq 0 ]; then zc_fail $t "contents right, but zc_bytes=0: zero-copy not used"
    elif [ "$l" -eq 0 ]; then zc_fail $t "contents right, but the receiver released nothing with UCX_XEN_PEER_CACHE=2M"
    else pass $t; zc_report $t
    fi
fi

# zcopy-exhaustion: a grant table of 512 entries per domain: the rings fit
# (a channel takes 2 x 64 ring pages + 2), one 1 MiB chunk (256 pages) at
# most, so most chunks of the 16 and 64 MiB messages are refused (ENOSPC)
# and go through the ring instead; contents stay right
t=zcopy-exhaustion
gsize=${UCX_ZCOPY_GNTTAB_SIZE:-512}
if [ ! -x "$zprog" ]; then
    fail $t "$zprog not built"
elif ! zc_run $t sizes XENMPI_SIM_GNTTAB_SIZE=$gsize; then
    zc_fail $t "rc $zc_rc (XENMPI_SIM_GNTTAB_SIZE=$gsize)"
else
    n=$(zc_sum "$tmp/$t" all nospc); f=$(zc_sum "$tmp/$t" all fallback_bytes)
    if [ "$n" = none ]; then zc_fail $t "no xenmpi-zc statistics line"
    elif [ "$n" -eq 0 ] || [ "$f" -eq 0 ]; then
        zc_fail $t "contents right, but nospc=$n fallback_bytes=$f with XENMPI_SIM_GNTTAB_SIZE=$gsize"
    else pass $t; zc_report $t
    fi
fi

# zcopy-same-domain: both processes in one domain (XENMPI_SIM_DOMID, as
# ranks sharing a VM): a grant to one's own domain is no way to reach the
# peer, and whatever the transport does instead, every byte must arrive
t=zcopy-same-domain
if [ ! -x "$zprog" ]; then
    fail $t "$zprog not built"
elif ! zc_run $t sizes XENMPI_SIM_DOMID=42; then
    zc_fail $t "rc $zc_rc (both processes in domain 42)"
else
    pass $t; zc_report $t
fi

# zcopy-hit-syscalls: one 1 MiB buffer sent 200 times after a warm-up, both
# processes under strace.  Between the markers the program writes
# (write(-1, "XM-BEGIN|XM-END <role> ...")), the thread that wrote them may
# make: the receiver process_vm_readv (its copies) and the sender
# process_vm_writev (the half of each message the receiver asks it to push,
# UCX_XEN_PUSH_MIN), together at least the bytes of the messages, each side
# some; both may make the core's
# idle-poll check, epoll_wait(<fd>, .., 0), which runs once per 256 progress
# calls without work (xm_channel.c, XM_SLOW_PATH_INTERVAL) whatever the
# transfer: at most progress/256 + 2 of them (progress: the program's count
# of ucp_worker_progress calls between its markers).  Anything else fails.
t=zcopy-hit-syscalls
# hs_count <strace log> <role>: "progress msgs pvr_calls pvr_bytes pvw_calls pvw_bytes
# idle_epoll other" and the other calls' names on a second line
hs_count() {
    awk -v role="$2" '
        {
            tid = $1; line = $0; sub(/^[0-9]+ +/, "", line)
            if (line ~ / <unfinished \.\.\.>$/) { sub(/ <unfinished \.\.\.>$/, "", line); part[tid] = line; next }
            if (line ~ /^<\.\.\. [a-z0-9_]+ resumed>/) { sub(/^<\.\.\. [a-z0-9_]+ resumed>/, "", line); line = part[tid] line; delete part[tid] }
            if (line ~ "^write\\(-1, \"XM-BEGIN " role " ") { mt = tid; inw = 1; next }
            if (inw && tid == mt && line ~ "^write\\(-1, \"XM-END " role " ") {
                inw = 0
                match(line, /progress=[0-9]+/); prog = substr(line, RSTART + 9, RLENGTH - 9)
                match(line, /msgs=[0-9]+/); msgs = substr(line, RSTART + 5, RLENGTH - 5)
                next
            }
            if (!inw || tid != mt) next
            if (line ~ /^process_vm_readv\(/) {
                pvr++
                if (match(line, /= [0-9]+$/)) bytes += substr(line, RSTART + 2)
            } else if (line ~ /^process_vm_writev\(/) {
                pvw++
                if (match(line, /= [0-9]+$/)) wbytes += substr(line, RSTART + 2)
            } else if (line ~ /^epoll_wait\([0-9]+, .*, 0\) += [0-9]+$/) {
                idle++
            } else {
                other++
                n = line; sub(/\(.*/, "", n); names[n]++
            }
        }
        END {
            printf "%s %s %d %d %d %d %d %d\n", prog == "" ? "none" : prog, msgs == "" ? "none" : msgs,
                   pvr, bytes, pvw, wbytes, idle, other
            s = ""; for (n in names) s = s (s == "" ? "" : ", ") n " x" names[n]; print s == "" ? "-" : s
        }' "$1"
}
if [ -n "${XM_PRELOAD_FIRST:-}" ]; then
    # the sanitizer's allocator maps memory of its own on the hit path
    echo "SKIP: ucx/$t (system calls counted only without $XM_PRELOAD_FIRST)"
elif [ ! -x "$zprog" ]; then
    fail $t "$zprog not built"
elif ! command -v strace >/dev/null; then
    fail $t "strace not installed (scripts/setup.sh installs it)"
else
    # the transport preloaded into the program only, not into strace
    env XENMPI_SIM_HOST="$(new_host "$t")" UCX_TLS=xen,self UCX_LOG_LEVEL=error XENMPI_ZC_STATS=1 UCX_XEN_ZCOPY_MIN=0 \
        UCX_XEN_ZCOPY=y timeout "$ZTMO" strace -f -qq -s 128 -o "$tmp/$t.strace" -E LD_PRELOAD="$pre" \
        "$zprog" hit-syscalls -n 200 > "$tmp/$t" 2>&1
    rc=$?
    { read -r rp rm rpvr rbytes rpvw rwbytes ridle rother; read -r rnames; } < <(hs_count "$tmp/$t.strace" receiver)
    { read -r sp sm spvr sbytes spvw swbytes sidle sother; read -r snames; } < <(hs_count "$tmp/$t.strace" sender)
    why=
    if [ $rc -ne 0 ] || ! grep -q '^ok: done' "$tmp/$t" || grep -q '^FAIL' "$tmp/$t"; then
        why="rc $rc"
    elif [ "$rp" = none ] || [ "$sp" = none ]; then
        why="markers missing in the strace log"
    else
        h=$(zc_sum "$tmp/$t" all hits)
        [ "$h" != none ] && [ "$h" -ge "$rm" ] || why="$why $h cache hits for $rm sends of one buffer;"
        [ "$rother" -eq 0 ] && [ "$rpvw" -eq 0 ] || why="$why receiver made: $rnames, process_vm_writev x$rpvw;"
        [ "$rpvr" -gt 0 ] && [ "$spvw" -gt 0 ] && [ $((rbytes + swbytes)) -ge $((rm * 1048576)) ] ||
            why="$why receiver copied $rbytes bytes with $rpvr process_vm_readv, sender $swbytes with $spvw process_vm_writev, for $rm MiB: zero-copy or the push not used;"
        p=$(zc_sum "$tmp/$t" all pushed_bytes)
        [ "$p" != none ] && [ "$p" -ge $((rm * 524288 - rm * 4096)) ] ||
            why="$why $p bytes pushed for $rm messages of 1 MiB (half each);"
        [ "$ridle" -le $((rp / 256 + 2)) ] || why="$why receiver: $ridle idle epoll_wait for $rp progress calls;"
        [ "$sother" -eq 0 ] && [ "$spvr" -eq 0 ] || why="$why sender made: $snames, process_vm_readv x$spvr;"
        [ "$sidle" -le $((sp / 256 + 2)) ] || why="$why sender: $sidle idle epoll_wait for $sp progress calls;"
    fi
    counts="receiver: $rpvr process_vm_readv ($rbytes bytes for $rm messages), $ridle idle epoll_wait (limit $((${rp/none/0} / 256 + 2)) for $rp progress calls), $rother other; sender: $spvw process_vm_writev ($swbytes bytes pushed), $spvr process_vm_readv, $sidle idle epoll_wait (limit $((${sp/none/0} / 256 + 2)) for $sp progress calls), $sother other"
    if [ -z "$why" ]; then
        pass $t
        echo "#   $counts"
    else
        fail $t "$why" "$tmp/$t"
        echo "#   $counts"
    fi
fi

# ---------------------------------------------------------------- RMA refusals
# test/ucx/uct_rma_hostile (built by `make check`, or UCT_RMA_HOSTILE): one
# process plays a peer that forges rkeys; the owner refuses every put and get
# outside a live registration (memory unchanged, gets complete with an error),
# logs refusals naming the peer's domain (at most 10 a second, xm_peer_error:
# the program's checks count every one), and keeps serving; the rkey of a
# buffer unmapped and mapped again reaches nothing (memory events), and
# inaccessible memory under a registration is refused without a fault.  Then an
# iface flush with a completion over a full ring and a queued put.
t=uct-rma-hostile
hostile=${UCT_RMA_HOSTILE:-$(dirname "$(dirname "$lib")")/test/ucx/uct_rma_hostile}
if [ ! -x "$hostile" ]; then
    fail "$t" "$hostile not built (make -C build check or make test/ucx/uct_rma_hostile)"
else
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$(new_host "$t")" UCX_LOG_LEVEL=error \
        timeout "$TMO" "$hostile" > "$tmp/$t" 2>&1
    rc=$?
    nput=$(grep -c 'error xm_xfer_rma.c:[0-9]* domain [0-9]* endpoint [0-9]*: put of .* refused' "$tmp/$t")
    nget=$(grep -c 'error xm_xfer_rma.c:[0-9]* domain [0-9]* endpoint [0-9]*: get of .* refused' "$tmp/$t")
    if [ $rc -eq 0 ] && ! grep -q '^FAIL' "$tmp/$t" && grep -q '^ok: done' "$tmp/$t" &&
       [ "$nput" -ge 1 ] && [ "$nget" -ge 1 ]; then
        pass "$t"
        grep '^ok' "$tmp/$t" | grep -v 'ok: done' | sed 's/^/#   /'
        echo "#   refusals logged: $nput puts, $nget gets; e.g."
        grep -m1 -o 'error xm_xfer_rma.c:[0-9]* domain.*' "$tmp/$t" | sed 's/^/#   /'
    else
        fail "$t" "rc $rc, refusals logged: $nput puts, $nget gets" "$tmp/$t"
    fi
fi

# ---------------------------------------------------------------- topology
# Placement (docs/topology.md): the estimates ucx_info prints follow dom0's
# host topology (nearest other domain: no data = same NUMA node 100 ns, same
# core 60 ns, another package 250 ns), and the rings and receive buffer an
# iface allocates are bound to its vCPU's NUMA node (policy in numa_maps).
t=estimates-from-topology
pub=$(dirname "$(dirname "$lib")")/tools/xenmpi-topo-publish
th=$(new_host "$t")
lat_of() {  # domid: latency (ns) of the xen iface per ucx_info -d
    env LD_PRELOAD="$pre" XENMPI_BACKEND=sim XENMPI_SIM_HOST="$th" XENMPI_SIM_DOMID=$1 \
        timeout "$TMO" ucx_info -d 2>&1 | awk '/Transport: xen$/ {x = 1} x && /latency:/ {print $3; exit}'
}
publish_aff() {  # offset of domain 12's pCPUs from domain 11's (vCPU v of 11 on pCPU 2v)
    local v n; n=$(getconf _NPROCESSORS_CONF)
    for v in $(seq 0 $((n - 1))); do echo "11 $v $((2 * v))"; echo "12 $v $((2 * v + $1))"; done > "$tmp/$t.aff"
    env XENMPI_BACKEND=sim XENMPI_SIM_HOST="$th" XENMPI_SIM_DOMID=0 "$pub" --host-id "$th" \
        --synthetic "pack:2 numa:2 core:4 pu:2" --affinity "$tmp/$t.aff" >> "$tmp/$t" 2>&1
}
if [ ! -x "$pub" ]; then
    fail "$t" "$pub not built"
else
    # both domains exist (ucx_info ran in them) before dom0 publishes
    none="$(lat_of 11) $(lat_of 12)"
    publish_aff 1;  core="$(lat_of 11) $(lat_of 12)"
    publish_aff 16; cross="$(lat_of 11) $(lat_of 12)"
    if [ "$none" = "100 100" ] && [ "$core" = "60 60" ] && [ "$cross" = "250 250" ]; then
        pass "$t"
        echo "#   latency estimate: no dom0 data $none ns, same core $core ns, other package $cross ns"
    else
        fail "$t" "latency estimates: none '$none' (100 100), same core '$core' (60 60), other package '$cross' (250 250)" "$tmp/$t"
    fi
fi

# bound_pages <name> <env>: a running am_lat pair; prints "<memfd> <anon>":
# the server's mappings of grant memory and anonymous memory that carry a
# NUMA policy other than the default
bound_pages() {
    local name=$1 envs=$2 h spid cpid pid
    h=$(new_host "$name"); port=$((port + 1))
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$h" $envs timeout "$TMO" ucx_perftest -p $port \
        -d xen0 -x xen -t am_lat -D short -s 8 -n 1000000000 > /dev/null 2>&1 &
    spid=$!
    for _ in $(seq 50); do ss -ltn 2>/dev/null | grep -q ":$port\b" && break; sleep 0.1; done
    env LD_PRELOAD="$pre" XENMPI_SIM_HOST="$h" $envs timeout "$TMO" ucx_perftest 127.0.0.1 -p $port \
        -d xen0 -x xen -t am_lat -D short -s 8 -n 1000000000 > /dev/null 2>&1 &
    cpid=$!
    sleep 1
    pid=$(pgrep -P $spid ucx_perftest)
    awk '$2 != "default" { if ($0 ~ /memfd:xenmpi-grant/) m++; else if ($0 ~ / anon=/) a++ }
         END { print m + 0, a + 0 }' "/proc/$pid/numa_maps" 2>/dev/null || echo "none none"
    kill $cpid $spid 2>/dev/null; wait $cpid $spid 2>/dev/null
}
t=numa-binding
on=$(bound_pages $t-on "")
off=$(bound_pages $t-off "UCX_XEN_NUMA_BIND=n")
read -r on_m on_a <<< "$on"
if [ "$on_m" != none ] && [ "$on_m" -ge 130 ] && [ "$on_a" -ge 1 ] && [ "$off" = "0 0" ]; then
    pass "$t"
    echo "#   mappings with a NUMA policy: $on_m grant pages and $on_a receive buffer (UCX_XEN_NUMA_BIND=n: $off)"
else
    fail "$t" "mappings with a NUMA policy (grant, anon): '$on' (>= 130 and >= 1), with UCX_XEN_NUMA_BIND=n '$off' (0 0)"
fi

# ---------------------------------------------------------------- errors
# Xen required where there is none: iface open fails with the core's
# message, nothing crashes.
t=backend-xen-missing
if [ -e /dev/xen/evtchn ]; then
    echo "SKIP: ucx/$t (/dev/xen exists here)"
else
    env LD_PRELOAD="$pre" UCX_XEN_BACKEND=xen timeout "$TMO" ucx_info -d > "$tmp/$t" 2>&1
    rc=$?
    if [ $rc -lt 128 ] && [ $rc -ne 124 ] &&
       grep -A6 'Transport: xen$' "$tmp/$t" | grep -q 'failed to open interface' &&
       grep -q 'error xm_hv_xen.c.*/dev/xen' "$tmp/$t"; then
        pass "$t"
        echo "#   $(grep -o -m1 'error xm_hv_xen.c.*' "$tmp/$t")"
    else
        fail "$t" "rc $rc" "$tmp/$t"
    fi
fi

[ $failed -eq 0 ]
