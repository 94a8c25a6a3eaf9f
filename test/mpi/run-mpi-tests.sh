#!/bin/bash
# MPI programs over the UCX transport "xen" with Debian's MPICH and Open MPI.
#   usage: test/mpi/run-mpi-tests.sh <path to libuct_xen.so> <build dir>
# Compiles pingpong, collectives, onesided and crossed (first sends both ways
# at once) with mpicc.mpich and
# mpicc.openmpi into <build dir>/test/mpi/ and runs each with both MPIs:
#   <mpi>-<prog>-2x1: 2 ranks in 2 simulated VMs (one rank per domain),
#   <mpi>-<prog>-4x2: 4 ranks in 2 simulated VMs (ranks 0,1 | ranks 2,3),
# then MPICH's ping-pong up to 64 MiB (mpich-pingpong64m-2x1, and its
# zero-copy statistics as mpich-pingpong64m-2x1-zcopy), one buffer sent to
# both ranks of the other VM (mpich-fanout-4x2), large sends from buffers
# reused, unmapped and mapped again, partly discarded and freed, through
# UCX's registration cache (mpich-regcache-2x1), then HPL through
# Debian's hpcc (hpcc-hpl-2x1) with the MPI hpcc is linked against.  Every
# run has UCX_TLS=xen,self (no other UCX transport may be used) and must
# show, in the UCX info log, an ep_cfg line with a lane on xen/xen0 and no
# ep_cfg lane on anything but xen and self.  Last, ping-pong and collectives
# with UCX_TLS=xen alone (<mpi>-<prog>-<layout>-xen, short runs): each rank
# reaches itself over xen too, and no lane may be on anything but xen.
# MPICH runs with MPIR_CVAR_NOLOCAL=1: the simulated VMs are processes of one
# Linux host, and MPICH would otherwise carry the traffic between them in its
# own ch4 shared memory (posix), never through UCX.  Open MPI runs with pml
# ucx, osc ucx and btl self only.
# Prints one "PASS: mpi/<name>" or "FAIL: mpi/<name>" line per test (details
# on "#" lines, a failure's log tail indented after it) and exits non-zero if
# any failed.  Logs stay in <build dir>/test/mpi/logs/.
# Environment: MPI_TEST_TIMEOUT (s per MPI run, default 120),
# HPCC_TIMEOUT (default 300), MPI_TEST_ONLY (regex on test names, e.g.
# '^(mpich-pingpong-2x1|ompi-collectives-4x2)$'), XM_PRELOAD_FIRST (a
# library every rank preloads before the transport: the sanitizer runtime,
# for a transport built with ASan).  A sanitizer report in a rank's output
# fails its test, whatever the exit status.
set -u

lib=${1:-}
bdir=${2:-}
if [ -z "$lib" ] || [ ! -f "$lib" ] || [ -z "$bdir" ]; then
    echo "usage: $0 <path to libuct_xen.so> <build dir>" >&2
    exit 2
fi
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
# what every rank preloads: the transport, after XM_PRELOAD_FIRST (the
# sanitizer runtime must come first in the process: the MPI programs and
# the MPIs are not instrumented)
pre="${XM_PRELOAD_FIRST:+$XM_PRELOAD_FIRST }$lib"
src=$(cd "$(dirname "$0")" && pwd)
. "$src/../zc-stats.sh"   # zc_sum
. "$src/ep-cfg.sh"        # ep_cfg_check, ep_cfg_first
mkdir -p "$bdir/test/mpi/logs" || exit 2
bin=$(cd "$bdir/test/mpi" && pwd)
logs=$bin/logs
for tool in mpicc.mpich mpiexec.mpich mpicc.openmpi mpirun.openmpi timeout; do
    command -v $tool >/dev/null || { echo "$0: $tool not found" >&2; exit 2; }
done

TMO=${MPI_TEST_TIMEOUT:-120}
HPCC_TMO=${HPCC_TIMEOUT:-300}
ONLY=${MPI_TEST_ONLY:-.}
# domids of the simulated VMs: 20000..29999, distinct per run of this script
dom=$(( 20000 + ($$ % 1000) * 10 ))
hosts=()
failed=0
passed=0

cleanup() {
    local h
    for h in "${hosts[@]}"; do rm -rf "/dev/shm/xenmpi-sim-$h"; done
    rm -rf "$bin/hpcc-run"
}
trap cleanup EXIT

. "$src/san-report.sh"   # san_report, san_why, san_show

pass() { echo "PASS: mpi/$1"; passed=$((passed + 1)); }
fail() {
    local why
    why=$(san_why "${2:-}" "${3:-}")
    echo "FAIL: mpi/$1${why:+ ($why)}"
    failed=$((failed + 1))
    [ -n "${3:-}" ] && [ -f "$3" ] || return 0
    san_show "$3"
    grep -v -E 'rdmacm|DIAG|^(#[0-9]|Thread )' "$3" | grep -v '^# stacks of' | tail -25 | sed 's/^/    /'
    # a hung run's stacks (stacks, below), each thread's innermost frames
    grep -E '^(# stacks of|Thread |#[0-9] )' "$3" | head -120 | sed 's/^/    /'
}

# a private simulated host per run, removed at exit
new_host() {
    local h="mpitest-$$-$1"
    hosts+=("$h")
    rm -rf "/dev/shm/xenmpi-sim-$h"
    echo "$h"
}

# The UCX transports of a run (TLS=xen: xen alone)
TLS=xen,self
# check_xen <log>: some ep_cfg lane on xen/xen0, none on another transport
# (nor on self when TLS has no self)
check_xen() {
    local allowed='xen/xen0|self/memory0?'
    [ "$TLS" = xen ] && allowed='xen/xen0'
    ep_cfg_check "$1" "$allowed" 'xen/xen0'
}

# ---------------------------------------------------------------- build
progs="pingpong collectives onesided crossed"
declare -A built
for m in mpich openmpi; do
    for p in $progs; do
        if timeout 120 mpicc.$m -O2 -Wall -Wextra -o "$bin/$p-$m" "$src/$p.c" > "$logs/build-$m-$p.log" 2>&1; then
            built[$m-$p]=1
        else
            fail "build-$m-$p" "mpicc.$m failed" "$logs/build-$m-$p.log"
        fi
    done
done

# ---------------------------------------------------------------- runs
# stacks <log>: every rank still running (a program of $bin) gets its
# threads' backtraces appended to the log (gdb), so a run that hangs shows
# where; called just before the run's timeout
stacks() {
    local q exe
    command -v gdb >/dev/null || { echo "# no gdb: no stacks of the hung ranks" >> "$1"; return; }
    for q in $(pgrep -d ' ' .); do
        exe=$(readlink "/proc/$q/exe" 2>/dev/null) || continue
        case $exe in "$bin"/*) ;; *) continue ;; esac
        echo "# stacks of pid $q ($exe)" >> "$1"
        timeout 20 gdb -q -batch -p "$q" -ex "thread apply all bt 30" 2>&1 |
            grep -E '^(#|Thread)' >> "$1"
    done
}

# launch <mpi> <ranks per VM> <host> <domid A> <domid B> <log> <command...>
# Two VMs: the first half of the ranks in domain A, the second in domain B.
launch() {
    local m=$1 ppv=$2 host=$3 a=$4 b=$5 log=$6; shift 6
    local start=$SECONDS rc
    # More busy-polling ranks than cores: MPICH yields the CPU only every
    # 1000 polls by default, and a ping-pong pair whose peers' idle ranks
    # spin then often meets only at scheduler ticks (about 4 ms a message,
    # the same over posix).  Open MPI yields when oversubscribed.
    local yield=1000
    [ $((2 * ppv)) -gt "$(nproc)" ] && yield=100
    # the watchdog ends its sleep with it and holds none of this script's
    # output open: a reader of the output (test/run-all.sh) would otherwise
    # wait for the last run's sleep, up to $TMO s after the script is done
    ( sleep $((TMO - 5)) & s=$!; trap 'kill $s; exit' TERM; wait $s; stacks "$log" ) \
        >/dev/null 2>&1 &
    local dog=$!
    case $m in
    mpich)
        timeout --kill-after=10 "$TMO" mpiexec.mpich \
            -genv MPIR_CVAR_POLLS_BEFORE_YIELD "$yield" -genv LD_PRELOAD "$pre" -genv UCX_TLS "$TLS" -genv UCX_LOG_LEVEL info \
            -genv MPIR_CVAR_NOLOCAL 1 -genv XENMPI_SIM_HOST "$host" \
            -n "$ppv" -env XENMPI_SIM_DOMID "$a" "$@" : \
            -n "$ppv" -env XENMPI_SIM_DOMID "$b" "$@" > "$log" 2>&1
        rc=$? ;;
    openmpi)
        # Open MPI gives -x to one app context only: repeat it in both
        local x=(-x LD_PRELOAD="$pre" -x UCX_TLS="$TLS" -x UCX_LOG_LEVEL=info
                 -x XENMPI_SIM_HOST="$host")
        timeout --kill-after=10 "$TMO" mpirun.openmpi --allow-run-as-root --oversubscribe \
            --mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any \
            --mca osc ucx --mca btl self \
            -np "$ppv" "${x[@]}" -x XENMPI_SIM_DOMID="$a" "$@" : \
            -np "$ppv" "${x[@]}" -x XENMPI_SIM_DOMID="$b" "$@" > "$log" 2>&1
        rc=$? ;;
    esac
    kill $dog 2>/dev/null
    wait $dog 2>/dev/null
    echo "# $(date +%T) exit $rc after $((SECONDS - start)) s" >> "$log"
    # a rank's sanitizer report makes the rank exit 1 and so the launcher
    # non-zero; should the status be lost on the way (ASAN_OPTIONS with
    # exitcode=0, a report from a process a rank started), the output decides
    if san_report "$log" >/dev/null && [ $rc -eq 0 ]; then
        echo "# a sanitizer report above: counted as exit 1" >> "$log"
        rc=1
    fi
    return $rc
}

# launch_new <mpi> <name> <ranks per VM> <command...>: launch on a private
# simulated host and two fresh domids, log in $logs/<name>.log; sets the
# caller's rc (exit status) and t (seconds)
launch_new() {
    local m=$1 name=$2 ppv=$3; shift 3
    local host; host=$(new_host "$name")
    local start=$SECONDS
    dom=$((dom + 2))
    launch "$m" "$ppv" "$host" $((dom)) $((dom + 1)) "$logs/$name.log" "$@"
    rc=$?
    t=$((SECONDS - start))
    rm -rf "/dev/shm/xenmpi-sim-$host"
}

run_prog() {
    local m=$1 p=$2 layout=$3
    local short; [ $m = mpich ] && short=mpich || short=ompi
    local name=$short-$p-$layout${SUFFIX:-}
    [[ $name =~ $ONLY ]] || return 0
    [ -n "${built[$m-$p]:-}" ] || { fail "$name" "not built"; return; }
    local ppv=1 args=()
    [ $layout = 4x2 ] && ppv=2
    # 4x2: the content check is the point; its timing phase (ranks 0 and 2
    # while 1 and 3 idle-spin, four busy ranks on two cores) hands each ring
    # of a large message over at the scheduler's pace, up to 80 ms a 2 MiB
    # message, so it runs the minimum of 10 iterations; 2x1 measures
    [ $p = pingpong ] && { [ $ppv = 1 ] && args=(1000) || args=(10); }
    # PP_ARGS: other ping-pong arguments (iterations, largest size);
    # COLL_ARGS: collectives arguments (rounds)
    [ $p = pingpong ] && [ -n "${PP_ARGS:-}" ] && read -r -a args <<< "$PP_ARGS"
    [ $p = collectives ] && [ -n "${COLL_ARGS:-}" ] && read -r -a args <<< "$COLL_ARGS"
    local log=$logs/$name.log rc t why
    launch_new $m "$name" $ppv "$bin/$p-$m" "${args[@]}"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        fail "$name" "timed out after $t s" "$log"; return
    elif [ $rc -ne 0 ]; then
        fail "$name" "exit $rc after $t s" "$log"; return
    elif ! grep -q "^$p: OK" "$log"; then
        fail "$name" "no '$p: OK' line" "$log"; return
    elif ! why=$(check_xen "$log"); then
        fail "$name" "$why" "$log"; return
    fi
    pass "$name"
    echo "#   $t s; $(ep_cfg_first "$log" xen/xen0)"
    grep "^$p: OK" "$log" | sed 's/^/#   /'
    if [ $p = pingpong ]; then
        echo "#   $(grep -m1 -E '^ +bytes +iters' "$log" | sed 's/^ *//')"
        grep -E '^ +(8|65536|1048576|4194304) +[0-9]+ ' "$log" | sed 's/^/#   /'
    fi
}

for layout in 2x1 4x2; do
    for m in mpich openmpi; do
        for p in $progs; do
            run_prog $m $p $layout
        done
    done
done

# ---------------------------------------------------------------- xen alone
# UCX_TLS=xen without self: a rank's endpoint to itself (MPICH connects
# every rank to itself at init) goes over xen, the loopback channel pair of
# the rank's own iface.  Short: ping-pong to 1 MiB with 10 timed
# iterations (every byte of the check phase), and one round of collectives.
TLS=xen
for layout in 2x1 4x2; do
    for m in mpich openmpi; do
        for p in pingpong collectives; do
            SUFFIX=-xen PP_ARGS="10 1048576" COLL_ARGS=1 run_prog $m $p $layout
        done
    done
done
TLS=xen,self

# ---------------------------------------------------------------- large messages
# MPICH ping-pong of 0 B .. 64 MiB (powers of two, odd sizes, 16 MiB+123,
# 64 MiB-1; every byte of both directions checked), 2 ranks in 2 simulated
# VMs, 10 timed iterations: large messages go by UCP's rendezvous, zero-copy
# over grants on xen.  Two results from one run: the contents and lanes
# (mpich-pingpong64m-2x1), and the zero-copy statistics every process prints
# with XENMPI_ZC_STATS=1 (mpich-pingpong64m-2x1-zcopy: bytes moved by grant
# copy, zc_bytes, must be > 0).
big_pingpong() {
    local name=mpich-pingpong64m-2x1 m=mpich p=pingpong
    [[ $name =~ $ONLY ]] || return 0
    [ -n "${built[$m-$p]:-}" ] || { fail "$name" "not built"; fail "$name-zcopy" "not built"; return; }
    local log=$logs/$name.log rc t why
    launch_new $m "$name" 1 env XENMPI_ZC_STATS=1 "$bin/$p-$m" 10 67108864
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        fail "$name" "timed out after $t s" "$log"
    elif [ $rc -ne 0 ]; then
        fail "$name" "exit $rc after $t s" "$log"
    elif ! grep -q "^$p: OK" "$log" || ! grep -q "^$p: content check passed: .* 0\.\.67108864 B" "$log"; then
        fail "$name" "no '$p: OK' line after a content check up to 64 MiB" "$log"
    elif ! why=$(check_xen "$log"); then
        fail "$name" "$why" "$log"
    else
        pass "$name"
        echo "#   $t s; $(ep_cfg_first "$log" xen/xen0)"
        grep "^$p: content check" "$log" | sed 's/^/#   /'
        echo "#   $(grep -m1 -E '^ +bytes +iters' "$log" | sed 's/^ *//')"
        grep -E '^ +(65536|1048576|16777216|67108864) +[0-9]+ ' "$log" | sed 's/^/#   /'
    fi
    local stats z
    stats=$(grep -h -o 'xenmpi-zc: pid=.*' "$log")
    z=$(zc_sum "$log" all zc_bytes)
    if [ $rc -ne 0 ]; then
        fail "$name-zcopy" "the run failed"
    elif [ "$z" = none ]; then
        fail "$name-zcopy" "no xenmpi-zc statistics line (XENMPI_ZC_STATS=1)"
    elif [ "$z" -eq 0 ]; then
        fail "$name-zcopy" "zc_bytes=0: no byte moved by grant copy"
        echo "$stats" | sed 's/^/#   /'
    else
        pass "$name-zcopy"
        echo "$stats" | sed 's/^/#   /'
    fi
}
big_pingpong

# ---------------------------------------------------------------- one grant, two ranks
# MPICH, 4 ranks in 2 simulated VMs (0,1 | 2,3): rank 0 sends one 4 MiB
# buffer to ranks 2 and 3 in turn, 8 times, every byte checked.  Grants are
# to a domain: the second of ranks 2 and 3 to ask for a chunk must get the
# grant the first got (shared=, counted by rank 0), not a refusal that
# sends it through the ring (fallback_bytes=0 everywhere).
fanout_test() {
    local name=mpich-fanout-4x2 m=mpich p=fanout
    [[ $name =~ $ONLY ]] || return 0
    if ! timeout 120 mpicc.$m -O2 -Wall -Wextra -o "$bin/$p-$m" "$src/$p.c" > "$logs/build-$m-$p.log" 2>&1; then
        fail "$name" "mpicc.$m failed" "$logs/build-$m-$p.log"; return
    fi
    local log=$logs/$name.log rc t why
    launch_new $m "$name" 2 env XENMPI_ZC_STATS=1 "$bin/$p-$m" 8 4194304
    local stats zc fb sh
    stats=$(grep -h -o 'xenmpi-zc: pid=.*' "$log")
    zc=$(zc_sum "$log" all zc_bytes); fb=$(zc_sum "$log" all fallback_bytes); sh=$(zc_sum "$log" all shared)
    if [ $rc -ne 0 ]; then
        fail "$name" "exit $rc after $t s" "$log"
    elif ! grep -q "^$p: OK" "$log"; then
        fail "$name" "no '$p: OK' line" "$log"
    elif ! why=$(check_xen "$log"); then
        fail "$name" "$why" "$log"
    elif [ "$(echo "$stats" | grep -c .)" -ne 4 ]; then
        fail "$name" "$(echo "$stats" | grep -c .) xenmpi-zc statistics lines, want 4" "$log"
    elif [ "$zc" -eq 0 ] || [ "$fb" -ne 0 ] || [ "$sh" -eq 0 ]; then
        fail "$name" "zc_bytes=$zc fallback_bytes=$fb shared=$sh: want bytes by grant copy, none through the ring, grants shared"
        echo "$stats" | sed 's/^/#   /'
    else
        pass "$name"
        echo "#   $t s; $(grep "^$p: OK" "$log")"
        echo "$stats" | sed 's/^/#   /'
    fi
}
fanout_test

# ---------------------------------------------------------------- registration cache
# MPICH, 2 ranks in 2 simulated VMs: rank 0 sends eight 4 MiB messages
# (above the zero-copy threshold) from a buffer reused four times, then
# unmapped and mapped again at the same address, partly discarded
# (MADV_DONTNEED), and from fresh mallocs; rank 1 checks every byte.  UCX
# keeps the transport's registrations in its cache, which must drop one
# when the memory under it changes, or the peer would read the old pages
# through the grants it still holds.  The data must have moved by grant
# copy (zc_bytes > 0).
regcache_test() {
    local name=mpich-regcache-2x1 m=mpich p=regcache
    [[ $name =~ $ONLY ]] || return 0
    if ! timeout 120 mpicc.$m -O2 -Wall -Wextra -o "$bin/$p-$m" "$src/$p.c" > "$logs/build-$m-$p.log" 2>&1; then
        fail "$name" "mpicc.$m failed" "$logs/build-$m-$p.log"; return
    fi
    local log=$logs/$name.log rc t why zc
    launch_new $m "$name" 1 env XENMPI_ZC_STATS=1 "$bin/$p-$m"
    zc=$(zc_sum "$log" all zc_bytes)
    if [ $rc -ne 0 ]; then
        fail "$name" "exit $rc after $t s" "$log"
    elif ! grep -q "^$p: OK" "$log"; then
        fail "$name" "no '$p: OK' line" "$log"
    elif ! why=$(check_xen "$log"); then
        fail "$name" "$why" "$log"
    elif [ "$zc" = none ] || [ "$zc" -eq 0 ]; then
        fail "$name" "zc_bytes=$zc: no byte moved by grant copy" "$log"
    else
        pass "$name"
        echo "#   $t s; $(grep "^$p: OK" "$log")"
        grep -h -o 'xenmpi-zc: pid=.*' "$log" | sed 's/^/#   /'
    fi
}
regcache_test

# ---------------------------------------------------------------- HPL (hpcc)
# Debian's hpcc reads hpccinf.txt from the working directory and writes
# hpccoutf.txt there; it runs every HPCC kernel (no HPL-only switch), so the
# problem is small.  Only the MPI it is linked against can launch it.
# hpcc_test <layout> <ranks per VM> <N> <NB> <P> <Q>
hpcc_test() {
    local name=hpcc-hpl-$1 ppv=$2 n=$3 nb=$4 p=$5 q=$6
    [[ $name =~ $ONLY ]] || return 0
    local hpcc; hpcc=$(command -v hpcc) || { fail $name "hpcc not installed"; return; }
    local m
    if ldd "$hpcc" | grep -q 'libmpi\.so\.40'; then m=openmpi
    elif ldd "$hpcc" | grep -q 'libmpich\.so'; then m=mpich
    else fail $name "hpcc linked against no known MPI: $(ldd "$hpcc" | grep -i mpi)"; return
    fi
    local dir=$bin/hpcc-run log=$logs/$name.log
    rm -rf "$dir"; mkdir -p "$dir"
    sed -e "s/@N@/$n/" -e "s/@NB@/$nb/" -e "s/@P@/$p/" -e "s/@Q@/$q/" \
        "$src/hpccinf.txt.in" > "$dir/hpccinf.txt"
    local host; host=$(new_host $name)
    dom=$((dom + 2))
    local start=$SECONDS rc
    ( cd "$dir" && TMO=$HPCC_TMO launch $m $ppv "$host" $dom $((dom + 1)) "$log" "$hpcc" )
    rc=$?
    local t=$((SECONDS - start)) why
    rm -rf "/dev/shm/xenmpi-sim-$host"
    cp -f "$dir/hpccoutf.txt" "$logs/$name.hpccoutf.txt" 2>/dev/null
    local out=$logs/$name.hpccoutf.txt
    if [ $rc -ne 0 ]; then
        fail $name "$m: exit $rc after $t s" "$log"
    elif [ ! -s "$out" ]; then
        fail $name "no hpccoutf.txt" "$log"
    elif ! grep -q 'HPL_Tflops' "$out" ||
         ! grep -E '^\|\|Ax-b\|\|_oo/\(eps' "$out" | grep -q 'PASSED' ||
         grep -E '^\|\|Ax-b\|\|_oo/\(eps' "$out" | grep -q 'FAILED' ||
         ! grep -q '1 tests completed and passed residual checks' "$out"; then
        fail $name "HPL residual check did not pass" "$out"
    elif ! why=$(check_xen "$log"); then
        fail $name "$why" "$log"
    else
        pass $name
        echo "#   $m, N=$n NB=$nb P x Q = $p x $q, $t s (all HPCC kernels), $(ep_cfg_first "$log" xen/xen0)"
        grep -E '^\|\|Ax-b\|\|_oo/\(eps' "$out" | sed 's/^/#   /'
        grep -E '^T/V +N' "$out" | head -1 | sed 's/^/#   /'
        grep -E '^WR' "$out" | head -1 | sed 's/^/#   /'
    fi
}
hpcc_test 2x1 1 2000 96 1 2
hpcc_test 4x2 2 2000 96 2 2

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
