#!/bin/bash
# MPI programs over the MPICH ch4 netmod "xen" (an MPICH built by
# scripts/build-mpich.sh), ranks split into simulated VMs.
#   usage: test/mpi/run-netmod-tests.sh <MPICH prefix> <build dir>
# Compiles pingpong, collectives and onesided with <prefix>/bin/mpicc and
# runs each in three layouts:
#   netmod-<prog>-2x1: 2 ranks in 2 simulated VMs,
#   netmod-<prog>-4x2: 4 ranks in 2 VMs (ranks 0,1 | 2,3: MPICH's posix shm
#                      inside a VM, the netmod between them),
#   netmod-<prog>-4x1: 4 ranks in 4 VMs;
# then first sends crossing both ways at once (netmod-crossed-2x1, -4x2),
# ping-pong up to 64 MiB with zero-copy from 32 KiB
# (netmod-pingpong64m-2x1) and through the rings only
# (netmod-pingpong64m-ring-2x1), the registration cache (netmod-regcache-*,
# netmod-bad-reg-cache-2x1), rings that fall back to a smaller size when
# the grant table is short (netmod-ring-fallback-2x1), and a rank killed
# with SIGKILL in the middle of a ping-pong (netmod-peer-killed-2x1: the
# survivor must abort naming the lost rank within 2 s).  A VM is a group of
# the MPMD launch with its own XENMPI_SIM_DOMID; MPIR_CVAR_NUM_CLIQUES with
# CLIQUES_BY_BLOCK makes MPICH see one node per VM.  Every run must show,
# in the netmod's statistics (XENMPI_NETMOD_STATS=1), that the netmod
# carried the traffic between VMs.
# Prints one "PASS: mpi/<name>" or "FAIL: mpi/<name>" line per test and
# exits non-zero if any failed.  Logs stay in <build dir>/test/mpi/netmod-logs/.
# Environment: MPI_TEST_TIMEOUT (s per run, default 120), MPI_TEST_ONLY.
set -u

prefix=${1:-}
bdir=${2:-}
if [ -z "$prefix" ] || [ ! -x "$prefix/bin/mpiexec" ] || [ -z "$bdir" ]; then
    echo "usage: $0 <MPICH prefix with bin/mpiexec> <build dir>" >&2
    exit 2
fi
prefix=$(cd "$prefix" && pwd)
src=$(cd "$(dirname "$0")" && pwd)
. "$src/netmod-stats.sh"   # netmod_bytes, zcopy_bytes, rndv_msgs, inline_bytes, piped_bytes, netmod_ranks
. "$src/../zc-stats.sh"    # zc_sum
. "$src/san-report.sh"     # san_report, san_why, san_show
mkdir -p "$bdir/test/mpi/netmod-logs" || exit 2
bin=$(cd "$bdir/test/mpi" && pwd)
logs=$bin/netmod-logs
TMO=${MPI_TEST_TIMEOUT:-120}
ONLY=${MPI_TEST_ONLY:-.}
dom=$(( 10000 + ($$ % 1000) * 20 ))
hosts=()
failed=0

cleanup() { local h; for h in "${hosts[@]}"; do rm -rf "/dev/shm/xenmpi-sim-$h"; done; }
trap cleanup EXIT

pass() { echo "PASS: mpi/$1"; }
fail() {
    local why
    why=$(san_why "${2:-}" "${3:-}")
    echo "FAIL: mpi/$1${why:+ ($why)}"
    failed=$((failed + 1))
    [ -n "${3:-}" ] && [ -f "$3" ] || return 0
    san_show "$3"
    tail -25 "$3" | sed 's/^/    /'
}

declare -A built
for p in pingpong collectives onesided regcache crossed; do
    if timeout 120 "$prefix/bin/mpicc" -O2 -Wall -o "$bin/$p-netmod" "$src/$p.c" \
            > "$logs/build-$p.log" 2>&1; then
        built[$p]=1
    else
        fail "netmod-build-$p" "mpicc failed" "$logs/build-$p.log"
    fi
done

# launch <ranks> <vms> <log> <command...>: ranks split into vms groups of
# consecutive ranks, each group a simulated VM of its own domid.  A
# sanitizer report in the output (an MPICH built with ASan, see run-all.sh)
# makes it return 125 whatever the launcher's status, so the tests that
# expect a failing job fail too.
launch() {
    local n=$1 vms=$2 log=$3; shift 3
    local host="netmod-$$-$RANDOM" ppv=$((n / vms)) args=() i
    hosts+=("$host")
    for ((i = 0; i < vms; i++)); do
        [ $i -gt 0 ] && args+=(:)
        args+=(-n "$ppv" -env XENMPI_SIM_DOMID $((dom + i)))
        # SPLIT_HOSTS=1: every VM says it is on a host of its own
        [ "${SPLIT_HOSTS:-0}" = 1 ] && args+=(-env XENMPI_HOST_ID "netmod-host-$i")
        args+=("$@")
    done
    dom=$((dom + vms))
    # more busy-polling ranks than cores: yield sooner (see run-mpi-tests.sh)
    local yield=1000
    [ "$n" -gt "$(nproc)" ] && yield=100
    timeout --kill-after=10 "$TMO" "$prefix/bin/mpiexec" ${MPIEXEC_EXTRA:-} \
        -genv XENMPI_SIM_HOST "$host" -genv XENMPI_NETMOD_STATS 1 -genv XENMPI_ZC_STATS 1 \
        -genv MPIR_CVAR_NUM_CLIQUES "$vms" -genv MPIR_CVAR_CLIQUES_BY_BLOCK 1 \
        -genv MPIR_CVAR_POLLS_BEFORE_YIELD "$yield" \
        ${XENMPI_NETMOD_ZCOPY_MIN:+-genv XENMPI_NETMOD_ZCOPY_MIN "$XENMPI_NETMOD_ZCOPY_MIN"} \
        ${XENMPI_NETMOD_REG_CACHE+-genv XENMPI_NETMOD_REG_CACHE "$XENMPI_NETMOD_REG_CACHE"} \
        ${XENMPI_NETMOD_ZCOPY_PATH+-genv XENMPI_NETMOD_ZCOPY_PATH "$XENMPI_NETMOD_ZCOPY_PATH"} \
        "${args[@]}" > "$log" 2>&1
    local rc=$?
    if san_report "$log" >/dev/null; then
        echo "# a sanitizer report above (launcher exit $rc): counted as exit 125" >> "$log"
        return 125
    fi
    return $rc
}

# netmod-stats-joined-line: the statistics readers (netmod-stats.sh) find
# a rank's line that mpiexec joined to another rank's unfinished output, as
# it did once in netmod-pingpong-4x2 ("statistics from 3 of 4 ranks")
if [[ netmod-stats-joined-line =~ $ONLY ]]; then
    mkdir -p "$logs"
    j=$logs/netmod-stats-joined-line.log
    st() { printf 'xen netmod: rank %d (domain %d): sent 3 messages, 30 bytes; zero-copy received %d bytes in 2 messages, 5 more inline; pipelined 0 bytes; received 4 messages, %d bytes; registrations: 1 reused, 1 new, 0 stale' "$@"; }
    { st 0 7 100 1000; echo; printf 'pingpong: OK'; st 1 8 200 2000; echo; } >"$j"
    r=$(netmod_ranks "$j") b=$(netmod_bytes "$j") z=$(zcopy_bytes "$j") m=$(rndv_msgs "$j")
    if [ "$r" = 2 ] && [ "$b" = 3000 ] && [ "$z" = 300 ] && [ "$m" = 4 ]; then
        pass netmod-stats-joined-line
    else
        fail netmod-stats-joined-line "read $r ranks, $b bytes, $z zero-copy bytes, $m rendezvous from two lines (want 2, 3000, 300, 4)" "$j"
    fi
fi

run() {   # run <name> <ranks> <vms> <min netmod bytes> <prog> [args...]
    local name=$1 n=$2 vms=$3 min=$4 p=$5; shift 5
    [[ $name =~ $ONLY ]] || return 0
    [ -n "${built[$p]:-}" ] || { fail "$name" "not built"; return; }
    local log=$logs/$name.log start=$SECONDS rc nb ranks zc inl rm
    launch "$n" "$vms" "$log" "$bin/$p-netmod" "$@"
    rc=$?
    local t=$((SECONDS - start))
    ranks=$(netmod_ranks "$log")
    nb=$(netmod_bytes "$log")
    zc=$(zcopy_bytes "$log") inl=$(inline_bytes "$log") rm=$(rndv_msgs "$log")
    if [ $rc -ne 0 ]; then
        fail "$name" "exit $rc after $t s" "$log"
    elif ! grep -q "^$p: OK" "$log"; then
        fail "$name" "no '$p: OK' line" "$log"
    elif [ "$ranks" -ne "$n" ]; then
        fail "$name" "netmod statistics from $ranks of $n ranks" "$log"
    elif [ "$nb" -lt "$min" ]; then
        fail "$name" "the netmod carried $nb bytes, expected at least $min" "$log"
    elif [ $((zc + inl)) -lt "${MIN_ZCOPY:-0}" ]; then
        fail "$name" "rendezvous carried $((zc + inl)) bytes ($zc by zero-copy, $inl inline), expected at least $MIN_ZCOPY" "$log"
    elif [ "$inl" -gt $((rm * ${MAX_INLINE_PER:-8190})) ]; then
        fail "$name" "$inl bytes came inline with $rm rendezvous, expected at most ${MAX_INLINE_PER:-8190} each" "$log"
    elif [ "$(piped_bytes "$log")" -lt "${MIN_PIPED:-0}" ]; then
        fail "$name" "$(piped_bytes "$log") bytes pipelined, expected at least $MIN_PIPED" "$log"
    elif [ -n "${REQUIRE_LOG:-}" ] && ! grep -Eq "$REQUIRE_LOG" "$log"; then
        fail "$name" "no line matching '$REQUIRE_LOG' in the log" "$log"
    elif [ "$(regs_reused "$log")" -lt "${MIN_REUSED:-0}" ] ||
         [ "$(regs_reused "$log")" -gt "${MAX_REUSED:-999999999}" ]; then
        fail "$name" "$(regs_reused "$log") sends reused a registration, expected ${MIN_REUSED:-0}..${MAX_REUSED:-any}" "$log"
    else
        pass "$name"
        echo "#   $t s; the netmod carried $nb bytes through its rings ($(piped_bytes "$log") of them pipelined) and $zc by zero-copy ($rm rendezvous, $inl bytes of them inline)"
        echo "#   $(regs_reused "$log") zero-copy sends reused a kept registration"
        grep "^$p: OK" "$log" | sed 's/^/#   /'
        if [ "$p" = pingpong ]; then
            grep -E '^ +(8|4096|65536|1048576|4194304|67108864) +[0-9]+ ' "$log" | sed 's/^/#   /'
        fi
    fi
}

for layout in 2x1 4x2 4x1; do
    n=${layout%x*}; ppv=${layout#*x}; vms=$((n / ppv))
    iters=1000; [ "$n" -gt 2 ] && iters=10
    run netmod-pingpong-$layout "$n" "$vms" 4194304 pingpong "$iters"
    run netmod-collectives-$layout "$n" "$vms" 1 collectives
    run netmod-onesided-$layout "$n" "$vms" 1 onesided
done
# crossed first sends: both ends open their channels at once while the
# first rendezvous (64 KiB, 1 MiB) arrive; each must be copied on a
# connected channel (before: "copying 65536 bytes from rank 1: Resource
# temporarily unavailable" in 8 of 8 runs), every byte checked
MIN_ZCOPY=2228224 run netmod-crossed-2x1 2 2 1 crossed
run netmod-crossed-4x2 4 2 1 crossed
# from XENMPI_NETMOD_ZCOPY_MIN (32 KiB) the data goes by zero-copy: at
# least the 64 MiB messages, both ways.  Its buffers start 16 bytes past
# a page (pingpong.c, as glibc's large mallocs): registered from the
# 64-byte boundary below, their first page goes by zero-copy too, so only
# bytes after the last whole page come inline (16 for most sizes; 4096 or
# more with no widening)
MIN_ZCOPY=134217728 MIN_REUSED=4 MAX_INLINE_PER=256 run netmod-pingpong64m-2x1 2 2 1048576 pingpong 3 67108864
XENMPI_NETMOD_ZCOPY_MIN=off MIN_ZCOPY=0 MIN_PIPED=134217728 run netmod-pingpong64m-ring-2x1 2 2 134217728 pingpong 3 67108864
# the registration cache: a buffer sent again keeps its registration (the
# 64 MiB ping-pong above reuses its own), and buffers unmapped,
# mapped again, partly discarded or freed arrive as they are now; with the
# cache off nothing is reused
MIN_ZCOPY=33554432 MIN_REUSED=3 run netmod-regcache-2x1 2 2 1 regcache
XENMPI_NETMOD_REG_CACHE=0 MIN_ZCOPY=33554432 MAX_REUSED=0 run netmod-regcache-off-2x1 2 2 1 regcache

# a grant table that cannot hold the 64-page rings (on Xen: gntalloc's
# limit): each sim domain's table holds 49 grants, so the channels fall
# back to smaller rings (at least the 8 pages that hold an 8 KiB record),
# and zero-copy mostly to the rings; every byte still checked
MPIEXEC_EXTRA="-genv XENMPI_SIM_GNTTAB_SIZE 50" \
    REQUIRE_LOG="ring to domain [0-9]+ was refused \(above\): this and later channels of the endpoint use (32|16|8) pages" \
    run netmod-ring-fallback-2x1 2 2 4194304 pingpong 100

# ---------------------------------------------------------------- another host
# two VMs on two (simulated) hosts: init must fail, naming the other rank,
# both host identities and the fix (the launcher may stop the second rank
# before it says so too)
name=netmod-other-host-2x1
if [[ $name =~ $ONLY ]] && [ -n "${built[pingpong]:-}" ]; then
    log=$logs/$name.log
    SPLIT_HOSTS=1 launch 2 2 "$log" "$bin/pingpong-netmod" 10 1024
    rc=$?
    if [ $rc -eq 0 ]; then
        fail "$name" "the job ran across two hosts" "$log"
    elif [ $rc -eq 125 ]; then
        fail "$name" "sanitizer report" "$log"
    elif ! grep -q 'xen netmod: rank [01] is on host [0-9a-f]*, rank [01] on host [0-9a-f]*: a Xen channel joins VMs of one host only' "$log" ||
         ! grep -q 'UCX_TLS=xen,tcp' "$log"; then
        fail "$name" "exit $rc without the one-host message" "$log"
    else
        pass "$name"
        echo "#   $(grep -m1 'a Xen channel joins' "$log")"
    fi
fi

# ---------------------------------------------------------------- bad setting
# a registration cache size that does not parse: init fails naming it.
# The launcher exits at the abort that follows: what the ranks wrote
# before it must have been read by then (the netmod waits for it), so
# every one of 20 starts must show the message (without the wait about
# one in ten showed nothing at all)
# bad_setting <name> <prog> <starts> <VAR=value> <message>: every one of
# <starts> launches with the setting fails, and its log names it
bad_setting() {
    local name=$1 p=$2 starts=$3 set=$4 msg=$5 log i rc why=
    [[ $name =~ $ONLY ]] && [ -n "${built[$p]:-}" ] || return 0
    log=$logs/$name.log
    local "$set"   # seen by launch (dynamic scope), gone after the function
    for i in $(seq "$starts"); do
        launch 2 2 "$log" "$bin/$p-netmod"
        rc=$?
        if [ $rc -eq 0 ]; then
            why="start $i ran with $set"; break
        elif [ $rc -eq 125 ]; then
            why="start $i: sanitizer report"; break
        elif ! grep -q "$set: $msg" "$log"; then
            why="start $i: exit $rc without naming the setting"; break
        fi
    done
    if [ -n "$why" ]; then
        fail "$name" "$why" "$log"
    else
        pass "$name"
        echo "#   $starts of $starts starts: $(grep -m1 "$set" "$log")"
    fi
}
bad_setting netmod-bad-reg-cache-2x1 regcache 20 XENMPI_NETMOD_REG_CACHE=lots \
    'want a number of registrations from 0 to'

# the zero-copy path forced each way: the bytes go where it says, every
# byte checked; a value it does not know fails init naming it
XENMPI_NETMOD_ZCOPY_PATH=grant MIN_ZCOPY=2228224 run netmod-crossed-grant-2x1 2 2 1 crossed
XENMPI_NETMOD_ZCOPY_PATH=ring MIN_ZCOPY=2228224 run netmod-crossed-ring-2x1 2 2 1 crossed
for t in grant ring; do
    name=netmod-crossed-$t-2x1
    [[ $name =~ $ONLY ]] || continue
    log=$logs/$name.log
    zc=$(zc_sum "$log" all zc_bytes)
    # the 4 rendezvous messages (64 KiB and 1 MiB each way) but the partial
    # pages at both ends of each (malloc'ed buffers), which take the ring
    if [ $t = grant ] && { [ "$zc" = none ] || [ "$zc" -lt $((2228224 - 4 * 2 * 4096)) ]; }; then
        fail "$name-path" "zc_bytes=$zc with XENMPI_NETMOD_ZCOPY_PATH=grant: want the 2228224 rendezvous bytes by grant copy but partial pages" "$log"
    elif [ $t = ring ] && [ "$zc" != none ] && [ "$zc" -ne 0 ]; then
        fail "$name-path" "zc_bytes=$zc with XENMPI_NETMOD_ZCOPY_PATH=ring: want none by grant copy" "$log"
    else
        pass "$name-path"
        echo "#   zc_bytes=$zc over both ranks"
    fi
done
bad_setting netmod-bad-zcopy-path-2x1 crossed 3 XENMPI_NETMOD_ZCOPY_PATH=fast \
    'want auto, grant or ring'

# ---------------------------------------------------------------- peer killed
name=netmod-peer-killed-2x1
if [[ $name =~ $ONLY ]] && [ -n "${built[pingpong]:-}" ]; then
    log=$logs/$name.log
    # the launcher must not see the death (it would stop the survivor
    # itself): each rank runs under a shell that outlives it, so the netmod
    # is what must notice; the time is until the survivor's error is out
    launch 2 2 "$log" sh -c '"$@"; exec sleep 60' sh "$bin/pingpong-netmod" 100000000 65536 &
    lpid=$!
    # both ranks up, then into the timing loop (0 B, 10^8 iterations)
    for _ in $(seq 100); do
        [ "$(pgrep -c -x pingpong-netmod)" -ge 2 ] && break
        sleep 0.1
    done
    sleep 4
    victim=$(pgrep -n -x pingpong-netmod)
    if [ -z "$victim" ]; then
        pkill -x pingpong-netmod; wait $lpid
        fail "$name" "the ping-pong did not start" "$log"
    else
        shell=$(ps -o ppid= -p "$victim" | tr -d ' ')
        kill -9 "$victim"
        killed=$(date +%s.%N)
        seen=
        for _ in $(seq 200); do
            grep -q 'xen netmod: rank [01] lost rank [01]' "$log" && { seen=$(date +%s.%N); break; }
            sleep 0.05
        done
        # the victim's shell (now a sleep) goes too, and the job ends
        [ -n "$shell" ] && kill -9 "$shell" 2>/dev/null
        wait $lpid
        if [ -z "$seen" ]; then
            fail "$name" "no 'lost rank' error from the survivor within 10 s" "$log"
        elif san_report "$log" >/dev/null; then
            fail "$name" "sanitizer report" "$log"
        else
            dt=$(awk -v a="$killed" -v b="$seen" 'BEGIN { printf "%.2f", b - a }')
            if awk -v d="$dt" 'BEGIN { exit !(d > 2.0) }'; then
                fail "$name" "the survivor reported it $dt s after the kill (limit 2 s)" "$log"
            else
                pass "$name"
                echo "#   reported $dt s after the kill: $(grep -m1 'lost rank' "$log")"
            fi
        fi
    fi
fi

exit $((failed > 0))
