#!/bin/bash
# UCX's own conformance tests (gtest, test/gtest/uct of UCX 1.13.1) against
# the transport "xen" on the sim backend.
#   usage: test/ucx/run-gtest.sh <build dir>
# Builds the gtest binary or reuses it from the cache (test/ucx/gtest/build.sh),
# runs the generic uct test suites instantiated for each transport of
# XM_GTEST_TLS (default "xen"; "posix xen" adds UCX's shared-memory transport
# as a baseline), and prints one
#   "PASS|FAIL|SKIP: ucx-gtest/<tl>/<Suite.test/n> <resource>"
# line per test case (e.g. <xen/xen0/loopback>), with the gtest output of a
# failure or the reason for a skip on "#" lines.
#
# Each suite runs in a process of its own under a timeout, on a simulated
# host of its own (XENMPI_SIM_HOST); one gtest process holds both ends of
# every connection, each iface its own sim domain.  A process that crashes
# or hangs fails the test it was in, and the suite's remaining tests run in
# a new process.
#   XM_GTEST_SUITES   the suites to run (default: all of SUITES below)
#   XM_GTEST_ALL=1    also the cases of NOT_RUN below
#   XM_GTEST_TIMEOUT  seconds per process (default 300)
set -u

B=${1:-}
if [ -z "$B" ] || [ ! -d "$B" ]; then
    echo "usage: $0 <build dir>" >&2
    exit 2
fi
B=$(cd "$B" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
lib=$B/.libs/libuct_xen.so
ucx=$B/ucx-src/ucx-1.13.1
TMO=${XM_GTEST_TIMEOUT:-300}

[ -f "$lib" ] || { echo "FAIL: ucx-gtest/build ($lib not built)"; exit 1; }
[ -d "$ucx" ] || "$SRC/scripts/fetch-ucx-src.sh" "$B/ucx-src" >&2 ||
    { echo "FAIL: ucx-gtest/build (no UCX source)"; exit 1; }

tmp=$(mktemp -d /tmp/ucx-gtest.XXXXXX)
cleanup() { rm -rf /dev/shm/xenmpi-sim-ucxgtest-$$-* "$tmp"; }
trap cleanup EXIT

start=$(date +%s)
if ! "$SRC/test/ucx/gtest/build.sh" "$ucx" > "$tmp/build.log" 2>&1; then
    echo "FAIL: ucx-gtest/build"
    sed 's/^/#   /' "$tmp/build.log" | tail -30
    exit 1
fi
gtest=$(tail -1 "$tmp/build.log")
echo "# $(grep '^gtest-build:' "$tmp/build.log" | tail -1)"

# The generic uct suites: interface, endpoint, active messages, RMA, AMOs,
# pending queue, flush/cancel, fence, events, progress, peer failure,
# many-to-one, zero-copy completion, query and the memory domain.  Left out:
# test_mm (instantiated for posix/sysv/xpmem only), test_uct_mem (allocation
# methods, no transport), test_uct_perf (needs libucxperf, which Debian does
# not ship) and the transport-specific ones (ib, tcp, tag offload, cuda).
SUITES='uct_p2p_am_test uct_p2p_am_misc uct_p2p_am_tx_bufs uct_p2p_am_alignment
uct_p2p_rma_test test_p2p_rma_madvise uct_p2p_mix_test uct_p2p_err_test
uct_flush_test uct_cancel_test uct_fence_test test_uct_pending test_uct_event
test_uct_progress test_uct_ep test_uct_query test_zcopy_comp
test_many2one_am test_uct_peer_failure test_uct_peer_failure_multiple
test_uct_peer_failure_keepalive test_uct_keepalive
uct_amo_add_xor_test uct_amo_and_or_test uct_amo_cswap_test
uct_amo_fadd_fxor_test uct_amo_fand_for_test uct_amo_swap_test
test_md test_md_fork'

# Cases not run unless XM_GTEST_ALL=1, reported as SKIP with why (one
# "<case>|<reason>" per line).  None at present.
NOT_RUN=''
[ "${XM_GTEST_ALL:-0}" = 1 ] && NOT_RUN=

# suite_env <suite>: settings of one suite.
#  - every iface of the process is a sim domain of its own, except in
#    test_uct_peer_failure_multiple: its sender connects to 256 receivers and
#    the sim backend maps at most 64 peer domains per process
#    (src/core/sim/xm_hv_sim_int.h, foreign[]), so there all ifaces share a domain,
#    with rings of 8 pages: 256 channels of the default 64-page rings need
#    more grants than a domain's table holds when both ends are in it
#  - UCX_XEN_ZCOPY_MIN=0: zero-copy put/get at every size the tests try
#    (the default, auto, is 0 too; the tests assume min_zcopy is below
#    64 KiB, test_zcopy_comp asserts it); UCX_XEN_ZCOPY stays auto, so
#    each operation takes grant copy or the ring as its channel measured
suite_env() {
    echo UCX_XEN_ZCOPY_MIN=0
    case $1 in
    test_uct_peer_failure_multiple)
        echo XENMPI_SIM_DOMID=$(( 100 + $$ % 30000 )) UCX_XEN_RING_PAGES=8 ;;
    esac
}

# run_env <tl> <host> <suite> cmd...: the environment of a gtest process
run_env() {
    local tl=$1 host=$2 suite=$3; shift 3
    local pre=
    [ "$tl" = xen ] && pre=$lib
    env LD_PRELOAD="$pre" XENMPI_BACKEND=sim XENMPI_SIM_HOST="$host" \
        UCX_HANDLE_ERRORS=bt UCX_LOG_LEVEL=warn UCX_LOG_PRINT_ENABLE=y \
        $(suite_env "$suite") "$@"
}

npass=0 nfail=0 nskip=0
report() {  # status name [detail file]
    echo "$1: ucx-gtest/$2"
    case $1 in
    PASS) npass=$((npass + 1)) ;;
    SKIP) nskip=$((nskip + 1)) ;;
    FAIL) nfail=$((nfail + 1))
          [ -n "${3:-}" ] && [ -s "$3" ] && sed 's/^/#   /' "$3" | tail -25 ;;
    esac
}

# run_suite <tl> <suite>: one process for the suite's tests; again for the
# tests after one that crashed or hung
n=0
run_suite() {
    local tl=$1 suite=$2 done_filter= log cur status rc name why
    while IFS='|' read -r name why; do
        case $tl/$name in
        "xen/$suite".*)
            echo "SKIP: ucx-gtest/$tl/$name (not run: posix skips it; $why)"
            nskip=$((nskip + 1))
            done_filter="$done_filter${done_filter:+:}$tl/$name" ;;
        esac
    done <<< "$NOT_RUN"
    while :; do
        n=$((n + 1))
        log=$tmp/$n.log
        run_env "$tl" "ucxgtest-$$-$n" "$suite" timeout -k 10 "$TMO" stdbuf -oL -eL "$gtest" -t "$TMO" \
            "--gtest_filter=$tl/$suite.*${done_filter:+:-$done_filter}" \
            > "$log" 2>&1
        rc=$?
        cur= status=
        : > "$tmp/detail"
        while IFS= read -r line; do
            case $line in
            "[ RUN      ] "*)
                cur=${line#\[ RUN      \] }; param=; status=PASS
                case $cur in *" <"*">") param=" <${cur#* <}" ;; esac
                cur=${cur%% *}
                : > "$tmp/detail" ;;
            "[     SKIP ] "*)
                status=SKIP; echo "$line" >> "$tmp/detail" ;;
            "[       OK ] "*)
                [ -n "$cur" ] && report "$status" "$cur$param"
                [ "$status" = SKIP ] && sed 's/^/#   /' "$tmp/detail"
                done_filter="$done_filter${done_filter:+:}$cur"; cur= ;;
            "[  FAILED  ] "*", where GetParam()"*|"[  FAILED  ] "*" ("*" ms)")
                [ -n "$cur" ] && report FAIL "$cur$param" "$tmp/detail"
                done_filter="$done_filter${done_filter:+:}$cur"; cur= ;;
            *)
                [ -n "$cur" ] && echo "$line" >> "$tmp/detail" ;;
            esac
        done < "$log"
        if [ -n "$cur" ]; then
            # the process ended inside a test: it crashed or hung there
            case $rc in
            124|137) echo "timeout after ${TMO} s" >> "$tmp/detail" ;;
            *) echo "process ended with status $rc" >> "$tmp/detail" ;;
            esac
            report FAIL "$cur$param" "$tmp/detail"
            done_filter="$done_filter${done_filter:+:}$cur"
            continue
        fi
        if [ $rc -ne 0 ] && ! grep -q '^\[  FAILED  \]' "$log"; then
            # failed outside any test (start-up, a fixture, the exit)
            report FAIL "$tl/$suite (gtest exit $rc)" "$log"
        fi
        return
    done
}

for tl in ${XM_GTEST_TLS:-xen}; do
    # only the suites that have tests for this transport
    run_env "$tl" "ucxgtest-$$-list" - "$gtest" --gtest_list_tests "--gtest_filter=$tl/*" \
        > "$tmp/list" 2>&1
    have=$(sed -n "s|^$tl/\([A-Za-z0-9_]*\)\.$|\1|p" "$tmp/list" | sort -u)
    if [ -z "$have" ]; then
        report FAIL "$tl (no test instantiated: is the transport loaded?)" "$tmp/list"
        continue
    fi
    for suite in ${XM_GTEST_SUITES:-$SUITES}; do
        if echo "$have" | grep -qx "$suite"; then
            t0=$(date +%s)
            run_suite "$tl" "$suite"
            echo "# $tl/$suite: $(( $(date +%s) - t0 )) s"
        fi
    done
done

echo "# ucx-gtest: $npass passed, $nfail failed, $nskip skipped in $(( $(date +%s) - start )) s"
[ $nfail -eq 0 ]
