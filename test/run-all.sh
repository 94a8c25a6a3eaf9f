#!/bin/bash
# The whole test suite: unit (cmocka), multi-process on the sim backend,
# libFuzzer targets for a bounded time, and the real-Xen tests under QEMU.
# Ends with one line "N passed, N failed, N skipped"; exits non-zero on any
# failure.  XM_BUILD_DIR: the configured build tree (default ./build).
#   XM_FUZZ_SECONDS  time per fuzz target (default 20)
#   XM_SKIP_XEN=1    leave out the QEMU run (counted as skipped)
#   XM_SKIP_MPICH=1  leave out the MPICH netmod runs (counted as skipped)
#   XM_SKIP_DEBS=1   leave out the Debian packages (counted as skipped)
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${XM_BUILD_DIR:-$SRC/build}" && pwd)
PASS=0 FAIL=0 SKIP=0
FAILED=()
LOGDIR=$B/test-logs
mkdir -p "$LOGDIR"

result() {  # name status(PASS|FAIL|SKIP)
    case $2 in
    PASS) PASS=$((PASS + 1)) ;;
    FAIL) FAIL=$((FAIL + 1)); FAILED+=("$1") ;;
    SKIP) SKIP=$((SKIP + 1)) ;;
    esac
    echo "$2: $1"
}

# cmocka programs: one result per test case, from their TAP output
run_cmocka() {
    local name=$1 bin=$2 log=$LOGDIR/$1.log n=0
    CMOCKA_MESSAGE_OUTPUT=TAP timeout 600 "$bin" >"$log" 2>&1
    local rc=$?
    while read -r line; do
        case $line in
        "not ok "*) result "$name/${line#* - }" FAIL; n=$((n + 1)) ;;
        "ok "*"# SKIP"*) result "$name/${line#* - }" SKIP; n=$((n + 1)) ;;
        "ok "*) result "$name/${line#* - }" PASS; n=$((n + 1)) ;;
        esac
    done < <(grep -E '^(not )?ok [0-9]+' "$log")
    # a crash or a missing plan is a failure of its own
    if [ $n -eq 0 ] || { [ $rc -ne 0 ] && ! grep -q '^not ok' "$log"; }; then
        result "$name (exit $rc, see $log)" FAIL
        tail -20 "$log"
    fi
}

# a harness printing "PASS|FAIL|SKIP: <name>" lines: one result each; a
# harness that printed none failed itself
run_suite() {  # tag command...
    local tag=$1 log=$LOGDIR/$1.log status name
    shift
    while read -r status name; do
        case $status in
        PASS:) result "$name" PASS ;;
        FAIL:) result "$name" FAIL ;;
        SKIP:) result "$name" SKIP ;;
        esac
    done < <("$@" 2>&1 | tee "$log" | grep -E '^(PASS|FAIL|SKIP): ')
    grep -qE '^(PASS|FAIL): ' "$log" || { result "$tag/harness (see $log)" FAIL; tail -30 "$log"; }
    grep -q '^FAIL: ' "$log" && grep -A25 '^FAIL: ' "$log" | head -60
}

run_cmd() {  # name command...
    local name=$1 log=$LOGDIR/${1//\//_}.log
    shift
    if timeout 900 "$@" >"$log" 2>&1; then result "$name" PASS
    else result "$name" FAIL; tail -20 "$log"; fi
}

echo "== unit tests (cmocka, sim backend)"
run_cmocka sim "$B/test/unit/test_sim"
run_cmocka channel "$B/test/unit/test_channel"
run_cmocka zc "$B/test/unit/test_zc"
run_cmocka xfer "$B/test/unit/test_xfer"
run_cmocka settings "$B/test/unit/test_settings"

echo "== host topology: cmocka, then publisher and CLI on sim domains (test/topo)"
run_cmocka topo-unit "$B/test/unit/test_topo"
run_suite topo-sim "$SRC/test/topo/run-topo-tests.sh" "$B"

echo "== two sim domains, two processes"
export XENMPI_BACKEND=sim
run_cmd multi/stream-1e6 "$B/test/multi/chan_xdom" sim stream 1000000
run_cmd multi/block-2e5 "$B/test/multi/chan_xdom" sim block 50000
run_cmd multi/block-drop-every-3rd-notify env XENMPI_SIM_DROP_NOTIFY=3 \
    "$B/test/multi/chan_xdom" sim block 5000
run_cmd multi/kill-9 env XM_ASSERT_TIME=1 "$B/test/multi/chan_xdom" sim kill
# scripts/soak.sh runs it at any size (10^8 by default)
run_cmd multi/soak-1e6-2-threads "$B/test/multi/soak" sim 1000000 2
unset XENMPI_BACKEND

echo "== the UCX transport (ucx_info, ucx_perftest, two sim domains)"
if [ -f "$B/.libs/libuct_xen.so" ]; then
    run_suite ucx "$SRC/test/ucx/run-ucx-tests.sh" "$B/.libs/libuct_xen.so"
else
    result "ucx (libuct_xen not built: configure --with-ucx-src)" SKIP
fi

echo "== UCX's own uct conformance tests (gtest, cached build) on the transport"
if [ -f "$B/.libs/libuct_xen.so" ]; then
    run_suite ucx-gtest "$SRC/test/ucx/run-gtest.sh" "$B"
else
    result "ucx-gtest (libuct_xen not built: configure --with-ucx-src)" SKIP
fi

echo "== the libraries: one core per process"
# libxenmpi.so exports the xm_* interface only; libuct_xen.so takes the core
# from it (one endpoint registry and one set of counters in a process that
# loads both) and finds it from the build tree as installed ($ORIGIN)
lib_exports_xm_only() {
    local syms
    syms=$(nm -D --defined-only "$B/.libs/libxenmpi.so" | awk '{ print $NF }') || return 1
    echo "$syms" | grep -q '^xm_hv_open$' || { echo "xm_hv_open is not exported"; return 1; }
    ! echo "$syms" | grep -v '^xm_'
}
uct_needs_libxenmpi() {
    readelf -d "$B/.libs/libuct_xen.so" | grep -q 'NEEDED.*\[libxenmpi\.so\.0\]' ||
        { echo "libuct_xen.so does not link libxenmpi.so.0"; return 1; }
    env -u LD_LIBRARY_PATH ldd "$B/.libs/libuct_xen.so" | grep 'libxenmpi\.so\.0 => /'
}
uct_defines_no_xm() {  # neither exported nor local: no copy of the core
    local f=$B/.libs/libuct_xen.so
    ! { nm -D --defined-only "$f"; nm --defined-only "$f"; } | grep -E ' (xm_|topo_|sb_printf)'
}
lib_check() {  # name function
    local log=$LOGDIR/${1//\//_}.log
    if "$2" >"$log" 2>&1; then result "$1" PASS
    else result "$1" FAIL; tail -20 "$log"; fi
}
lib_check lib/libxenmpi-exports-xm-only lib_exports_xm_only
if [ -f "$B/.libs/libuct_xen.so" ]; then
    lib_check lib/libuct_xen-needs-libxenmpi uct_needs_libxenmpi
    lib_check lib/libuct_xen-defines-no-xm-symbol uct_defines_no_xm
else
    result "lib/libuct_xen (libuct_xen not built)" SKIP
fi

echo "== make install and the launcher"
install_check() {
    local d; d=$(mktemp -d)
    make -C "$B" -s install DESTDIR="$d" >"$LOGDIR/install.log" 2>&1 || return 1
    local p; p=$(sed -n 's/^prefix = //p' "$B/Makefile")
    for f in lib/libxenmpi.so include/xm_channel.h include/xm_zc.h include/xm_xfer.h \
             lib/libuct_xen.so \
             bin/xenmpi-run; do
        [ -e "$d$p/$f" ] || { echo "missing $p/$f" >>"$LOGDIR/install.log"; return 1; }
    done
    # the installed transport takes the installed core, next to it
    env -u LD_LIBRARY_PATH ldd "$d$p/lib/libuct_xen.so" | grep -q "libxenmpi.so.0 => $d$p/lib/" ||
        { echo "libuct_xen.so does not find $p/lib/libxenmpi.so.0" >>"$LOGDIR/install.log"; return 1; }
    # the launcher as installed, pointed at the staged copy of the library
    sed "s|^lib=\"|lib=\"$d|" "$d$p/bin/xenmpi-run" >"$d/run" && chmod +x "$d/run"
    "$d/run" ucx_info -d 2>&1 | grep -q 'Transport: xen' || return 1
    "$d/run" sh -c 'test "$UCX_TLS" = xen,self' || return 1
    rm -rf "$d"
}
if [ -f "$B/.libs/libuct_xen.so" ]; then
    if install_check; then result install/xenmpi-run PASS
    else result install/xenmpi-run FAIL; tail -5 "$LOGDIR/install.log"; fi
else
    result "install/xenmpi-run (libuct_xen not built)" SKIP
fi

echo "== MPI over the UCX transport (Debian MPICH and Open MPI, HPL via hpcc)"
if [ -f "$B/.libs/libuct_xen.so" ]; then
    run_suite mpi "$SRC/test/mpi/run-mpi-tests.sh" "$B/.libs/libuct_xen.so" "$B"
else
    result "mpi (libuct_xen not built: configure --with-ucx-src)" SKIP
fi

# mpich_run <name> <script>: a suite over the MPICH built with the netmod
mpich_run() {
    if [ "${XM_SKIP_MPICH:-0}" = 1 ]; then
        result "$1 (XM_SKIP_MPICH=1)" SKIP
    elif [ -x "$B/mpich/bin/mpiexec" ]; then
        run_suite "$1" "$2" "$B/mpich" "$B"
    else
        result "$1 (no MPICH with the netmod in $B/mpich: scripts/build-mpich.sh)" FAIL
    fi
}
echo "== MPI over the MPICH ch4 netmod xen (MPICH built from Debian's source)"
mpich_run mpi-netmod "$SRC/test/mpi/run-netmod-tests.sh"

echo "== MPICH's own test suite over the netmod, beside Debian's MPICH (posix)"
mpich_run mpich-suite "$SRC/test/mpich-suite/run.sh"

echo "== Debian packages: built (UCX rebuilt with the transport), lintian, installed in a scratch root, MPI over them, purged"
if [ "${XM_SKIP_DEBS:-0}" = 1 ]; then
    result "debs (XM_SKIP_DEBS=1)" SKIP
elif [ "$(id -u)" != 0 ]; then
    result "debs (not root: the packages are installed in a scratch root, which mounts)" SKIP
else
    run_suite debs "$SRC/test/debs/run-deb-tests.sh" "$B"
fi

echo "== sanitizers: unit, multi-process, UCX, MPI and MPICH netmod tests under ASan+UBSan, the threaded soak under TSan"
# Each is a build tree of its own beside $B, configured with the
# sanitizer's flags (and, for ASan, the UCX source $B was configured with).
# A report makes the program exit non-zero (UBSan does not recover), so it
# fails its test.  The UCX and MPI tests preload the ASan runtime before the
# transport into UCX's own tools and the MPI ranks (uninstrumented).
SAN_TESTS="libxenmpi.la test/unit/test_sim test/unit/test_channel test/unit/test_zc test/unit/test_xfer
           test/unit/test_settings test/multi/chan_xdom test/multi/soak"
UCX_SRC_DIR=$(sed -n 's/^UCX_SRC = //p' "$B/Makefile")
if [ -n "$UCX_SRC_DIR" ]; then
    SAN_TESTS="$SAN_TESTS ucx-config/config.h libuct_xen.la test/ucx/ucp_peer_fail
               test/ucx/ucp_zcopy test/ucx/uct_rma_hostile tools/xenmpi-topo-publish"
fi
san_build() {  # dir flags configure-args targets...
    local d=$1 f=$2 c=$3
    shift 3
    mkdir -p "$d" && (cd "$d" &&
        { [ -f Makefile ] || "$SRC/configure" -q $c CFLAGS="-O1 -g $f" LDFLAGS="$f"; } &&
        make -s -j"$(nproc)" "$@") >"$d.log" 2>&1
}
if san_build "$B/san-asan" "-fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
        "${UCX_SRC_DIR:+--with-ucx-src=$UCX_SRC_DIR}" $SAN_TESTS; then
    S=$B/san-asan
    mkdir -p "$LOGDIR/asan"
    for t in sim channel zc xfer settings; do run_cmocka "asan/$t" "$S/test/unit/test_$t"; done
    export XENMPI_BACKEND=sim
    run_cmd asan/multi/stream-2e5 "$S/test/multi/chan_xdom" sim stream 200000
    run_cmd asan/multi/block-2e4 "$S/test/multi/chan_xdom" sim block 20000
    run_cmd asan/multi/kill-9 "$S/test/multi/chan_xdom" sim kill
    run_cmd asan/multi/soak-2e5-2-threads "$S/test/multi/soak" sim 200000 2
    unset XENMPI_BACKEND
    if [ -f "$S/.libs/libuct_xen.so" ]; then
        # UCX's own leaks at exit are not ours to report
        run_suite asan-ucx env XM_PRELOAD_FIRST="$(gcc -print-file-name=libasan.so)" \
            ASAN_OPTIONS=detect_leaks=0 bash -c '"$0" "$1" | sed -E "s/^(PASS|FAIL|SKIP): /\1: asan\//"' \
            "$SRC/test/ucx/run-ucx-tests.sh" "$S/.libs/libuct_xen.so"
        # MPI programs over the ASan transport, the same way (Debian's MPICH
        # and Open MPI leak at exit too), programs and logs in $S/test/mpi:
        # MPICH's ping-pong to 64 MiB by zero-copy, collectives with 4 ranks
        # in 2 VMs, one-sided (fence, lock) with both MPIs, the registration
        # cache, one grant read by two ranks, Open MPI's ping-pong, and
        # ping-pong with UCX_TLS=xen alone (each rank reaches itself over xen)
        run_suite asan-mpi env XM_PRELOAD_FIRST="$(gcc -print-file-name=libasan.so)" \
            ASAN_OPTIONS=detect_leaks=0 \
            MPI_TEST_ONLY='^(mpich-(pingpong64m-2x1|collectives-4x2|onesided-2x1|regcache-2x1|fanout-4x2|pingpong-2x1-xen)|ompi-(pingpong|onesided)-2x1)$' \
            bash -c '"$0" "$1" "$2" | sed -E "s/^(PASS|FAIL|SKIP): /\1: asan\//"' \
            "$SRC/test/mpi/run-mpi-tests.sh" "$S/.libs/libuct_xen.so" "$S"
    else
        result "asan/ucx and asan/mpi (libuct_xen not built: configure --with-ucx-src)" SKIP
    fi
    # The MPICH netmod, which is compiled into MPICH: a second MPICH from
    # the same source and scripts/build-mpich.sh, with MPICH's own
    # --enable-g=asan,ubsan (the library, hydra and the mpicc wrapper's
    # flags, so the test programs link the runtime first) against this
    # tree's core, kept beside the first in the cache.  The whole netmod
    # suite runs on it with leak detection on and UBSan halting; hwloc's
    # PCI plugin is not loaded (it leaks, and once unloaded ASan cannot
    # name it).
    if [ "${XM_SKIP_MPICH:-0}" = 1 ]; then
        result "asan/mpi-netmod (XM_SKIP_MPICH=1)" SKIP
    elif XM_BUILD_DIR=$S XM_MPICH_CONFIGURE_EXTRA=--enable-g=asan,ubsan \
            "$SRC/scripts/build-mpich.sh" >"$S/mpich-asan.out" 2>&1; then
        cat "$S/mpich-asan.out"
        run_suite asan-mpi-netmod env HWLOC_PLUGINS_BLACKLIST=hwloc_pci ASAN_OPTIONS=detect_leaks=1 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            bash -c '"$0" "$1" "$2" | sed -E "s/^(PASS|FAIL|SKIP): /\1: asan\//"' \
            "$SRC/test/mpi/run-netmod-tests.sh" "$S/mpich" "$S"
    else
        result "asan/mpi-netmod/build (see $S/mpich-asan.out and $S/mpich-build.log)" FAIL
        tail -20 "$S/mpich-asan.out"
    fi
else
    result "asan/build (see $B/san-asan.log)" FAIL
    tail -20 "$B/san-asan.log"
fi
if san_build "$B/san-tsan" "-fsanitize=thread" "" test/multi/soak; then
    run_cmd tsan/multi/soak-1e5-2-threads "$B/san-tsan/test/multi/soak" sim 100000 2
else
    result "tsan/build (see $B/san-tsan.log)" FAIL
    tail -20 "$B/san-tsan.log"
fi

echo "== fuzzing peer-written formats (libFuzzer)"
if make -C "$B" -s fuzz >"$LOGDIR/fuzz-build.log" 2>&1; then
    for f in ring handshake zc_greq zc_grep zc_grant_ref rma topo_meta topo_affinity netmod; do
        work=$(mktemp -d)
        run_cmd "fuzz/$f" "$B/test/fuzz/fuzz_$f" -max_total_time="${XM_FUZZ_SECONDS:-20}" \
            -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$LOGDIR/fuzz_$f-" \
            "$work" "$SRC/test/fuzz/corpus/$f"
        rm -rf "$work"
    done
else
    result "fuzz/build (see $LOGDIR/fuzz-build.log)" FAIL
fi

# ---------------------------------------------------------------------------
# The kernel module xenmpi_grant (kernel/, docs/kernel.md).  It is built here
# against the headers of the kernel the real-Xen harness boots, so the QEMU
# run below loads it in every domain and runs its test there (xen/kgrant).
echo "== kernel module xenmpi_grant: build, uapi header, dkms, refusal without Xen"
KMOD_KVER=$(make -s --no-print-directory -C "$SRC/kernel" kver 2>/dev/null)
if make -C "$B" kmod >"$LOGDIR/kmod-build.log" 2>&1; then
    if grep -qiE '(^|[^[:alnum:]_-])warning' "$LOGDIR/kmod-build.log"; then
        result "kernel/build for ${KMOD_KVER:-?} (warnings, see $LOGDIR/kmod-build.log)" FAIL
        grep -iE 'warning' "$LOGDIR/kmod-build.log" | head -20
    else
        result "kernel/build for ${KMOD_KVER:-?}, warning-free" PASS
    fi
else
    result "kernel/build for ${KMOD_KVER:-?} (see $LOGDIR/kmod-build.log)" FAIL
    tail -20 "$LOGDIR/kmod-build.log"
fi
run_suite kernel-uapi "$B/test/kernel/uapi_check"
if command -v g++ >/dev/null; then
    run_cmd kernel/uapi-header-in-c++ sh -c "echo '#include \"$SRC/kernel/uapi/xenmpi_grant.h\"' |
        g++ -std=c++11 -Wall -Wextra -pedantic -Werror -x c++ -fsyntax-only -"
else
    result "kernel/uapi-header-in-c++ (no g++)" SKIP
fi
if [ -n "$KMOD_KVER" ]; then
    run_suite kernel-dkms "$SRC/test/kernel/dkms-check.sh" "$SRC/kernel" "$KMOD_KVER"
else
    result "kernel/dkms-install (no kernel headers)" FAIL
fi
if [ "${XM_SKIP_XEN:-0}" = 1 ]; then
    result kernel/refuses-without-xen SKIP
elif [ -f "$B/kernel/xenmpi_grant.ko" ]; then
    run_suite kernel-bare "$SRC/test/kernel/run-bare.sh" "$B/kernel/xenmpi_grant.ko"
else
    result "kernel/refuses-without-xen (module not built)" FAIL
fi
# ---------------------------------------------------------------------------

# skip_list <tests file> <names regex> <why>: each listed real-Xen test whose
# name matches, counted as skipped
skip_list() {
    local name
    while IFS='|' read -r name _; do
        case $name in ''|'#'*) continue ;; esac
        [[ $name =~ ^($2)$ ]] && result "xen/$name${3:+ ($3)}" SKIP
    done <"$1"
    return 0
}

echo "== real Xen 4.17 under QEMU (two PV domUs)"
if [ "${XM_SKIP_XEN:-0}" = 1 ]; then
    skip_list "$SRC/test/xen/tests.list" '.*' ""
else
    # the netmod's jobs need the MPICH built with it (build-mpich.sh)
    xskip=
    if [ "${XM_SKIP_MPICH:-0}" = 1 ]; then
        xskip='mpi-netmod-.*'
        skip_list "$SRC/test/xen/tests.list" "$xskip" "XM_SKIP_MPICH=1"
    fi
    XENTEST_SKIP=$xskip run_suite xen "$SRC/test/xen/run.sh" "$B" "$SRC/test/xen/tests.list"
fi

echo "== real Xen 4.17 under QEMU on the Debian packages (UCX's own xen module, nothing preloaded)"
if [ "${XM_SKIP_XEN:-0}" = 1 ] || [ "${XM_SKIP_DEBS:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
    skip_list "$SRC/test/xen/tests-debs.list" '.*' "XM_SKIP_XEN, XM_SKIP_DEBS or not root"
else
    XENTEST_DEBS=$B/debs XENTEST_WORK=$SRC/test/xen/work-debs \
        run_suite xen-debs "$SRC/test/xen/run.sh" "$B" "$SRC/test/xen/tests-debs.list"
fi

[ ${#FAILED[@]} -eq 0 ] || { echo "failed:"; printf '  %s\n' "${FAILED[@]}"; }
if [ $SKIP -gt 0 ]; then echo "$PASS passed, $FAIL failed, $SKIP skipped"
else echo "$PASS passed, $FAIL failed"; fi
[ $FAIL -eq 0 ]
