#!/bin/bash
# The Debian packages: scripts/build-debs.sh builds them (the UCX rebuild is
# cached), lintian checks them, their file lists are checked, and then they
# are installed in a scratch root (an overlay of /, scripts/scratch-root.sh:
# this machine's packages do not change) with `apt-get install ./*.deb`,
# where without any preload
#   - ucx_info -d lists the transport xen, loaded from UCX's module directory;
#   - Debian's MPICH and Open MPI ping-pong (test/mpi/pingpong.c, every byte
#     checked) between two simulated VMs with UCX_TLS=xen and xen,self, the
#     UCX info log showing the xen lanes;
#   - the same MPICH and Open MPI still run over UCX's own posix and tcp;
#   - xenmpi-run runs a command over xen with no preload;
#   - DKMS builds the kernel module for the kernel the real-Xen harness boots
#     (kept as <build dir>/debs/dkms/xenmpi_grant.ko for the harness's run on
#     the packages, test/xen/tests-debs.list);
# and purging the packages (and going back to Debian's UCX) leaves none of
# their files behind and UCX without xen.
#   test/debs/run-deb-tests.sh <build dir>
# Prints "PASS|FAIL: debs/<name>" lines; logs in <build dir>/test-logs/debs.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:?usage: $0 <build dir>}" && pwd)
DEBS=$B/debs
LOGS=$B/test-logs/debs
SROOT=$B/debs-scratch
TMO=120
. "$SRC/scripts/scratch-root.sh"
mkdir -p "$LOGS"
arch=$(dpkg --print-architecture)
mdir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/ucx

pass() { echo "PASS: debs/$1"; }
fail() {  # name why [log]
    echo "FAIL: debs/$1"
    echo "#   $2"
    [ -n "${3:-}" ] && [ -f "$3" ] && tail -25 "$3" | sed 's/^/#   | /'
    return 0
}
# in the scratch root; output to a log
inside() { scratch_run "$SROOT" "$@"; }

# ---------------------------------------------------------------- build
log=$LOGS/build.log
start=$SECONDS
if "$SRC/scripts/build-debs.sh" >"$log" 2>&1; then
    pass build
    echo "#   $((SECONDS - start)) s; $(grep -m1 '^build-ucx-debs: ' "$log" | tail -1)"
    grep -E '^ *[0-9.]+ [KM]i?B? ' "$log" | sed 's/^/#   /'
else
    fail build "scripts/build-debs.sh failed" "$log"
    exit 1
fi
XM_DEBS=(libxenmpi0 libxenmpi-dev xenmpi-tools xenmpi-dkms)
UCX_DEBS=(libucx0 libucx-dev ucx-utils libucx0-xen)
deb_of() { ls "$DEBS"/"$1"_*.deb 2>/dev/null | tail -1; }
for p in "${XM_DEBS[@]}" "${UCX_DEBS[@]}"; do
    [ -n "$(deb_of "$p")" ] || { fail "build-$p" "no $p package in $DEBS"; exit 1; }
done
# what README says to install: every package in build/debs (the debug
# symbols too); all of them but Debian's own three are purged at the end
all=("$DEBS"/*.deb)
ours=()
for f in "${all[@]}"; do
    p=$(dpkg-deb -f "$f" Package)
    case " ${UCX_DEBS[*]} " in *" $p "*) [ "$p" = libucx0-xen ] && ours+=("$p") ;; *) ours+=("$p") ;; esac
done

# ---------------------------------------------------------------- lintian
# The packaging of this tree and the transport's package: no error and no
# warning.  Debian's own UCX packages, rebuilt: no tag Debian's 1.13.1-1
# does not have already (their own tags are listed in the log).
log=$LOGS/lintian.log
lint=()
for p in "${XM_DEBS[@]}" libucx0-xen; do lint+=("$(deb_of "$p")"); done
if lintian --fail-on error,warning "${lint[@]}" >"$log" 2>&1; then
    pass lintian
    echo "#   $(grep -c . "$log") tags below warning (pedantic/info), see $log"
else
    fail lintian "lintian reports errors or warnings" "$log"
fi

# ---------------------------------------------------------------- contents
# contents <package> <path regex>...: every regex matches a file of the
# package, and every file (not directory) of the package matches one
contents() {
    local p=$1 f lst=$LOGS/contents-$1.txt miss=() extra
    shift
    dpkg-deb -c "$(deb_of "$p")" | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\./|/|' > "$lst"
    for re in "$@"; do
        grep -q -E "^$re\$" "$lst" || miss+=("$re")
    done
    extra=$(grep -v -E -x "$(printf '%s|' "$@" '/usr/share/doc/.*' '/usr/share/lintian/overrides/.*')" "$lst" | head -5 | tr '\n' ' ')
    if [ ${#miss[@]} -gt 0 ]; then
        fail "contents-$p" "missing: ${miss[*]}" "$lst"
    elif [ -n "$extra" ]; then
        fail "contents-$p" "files not in the list: $extra" "$lst"
    else
        pass "contents-$p"
    fi
}
L=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
contents libxenmpi0 "$L/libxenmpi\.so\.0" "$L/libxenmpi\.so\.0\.0\.0"
contents libxenmpi-dev "$L/libxenmpi\.so" "$L/pkgconfig/xenmpi\.pc" \
    /usr/include/xm_hv\.h /usr/include/xm_channel\.h /usr/include/xm_zc\.h \
    /usr/include/xm_wire\.h /usr/include/xm_xfer\.h /usr/include/xm_topo\.h
contents xenmpi-tools /usr/bin/xenmpi-topo /usr/bin/xenmpi-topo-publish /usr/bin/xenmpi-run \
    '/usr/share/man/man1/xenmpi-topo\.1\.gz' '/usr/share/man/man1/xenmpi-topo-publish\.1\.gz' \
    '/usr/share/man/man1/xenmpi-run\.1\.gz'
contents xenmpi-dkms '/usr/src/xenmpi-grant-0\.1\.0/.*' /usr/lib/modules-load\.d/xenmpi-grant\.conf
contents libucx0-xen "$mdir/libuct_xen\.so\.0" "$mdir/libuct_xen\.so\.0\.0\.0"
# no other package of the rebuild carries the module
log=$LOGS/contents-ucx.txt
for p in libucx0 libucx-dev ucx-utils; do dpkg-deb -c "$(deb_of "$p")"; done > "$log"
if grep -q 'libuct_xen' "$log"; then
    fail contents-ucx-no-module "libucx0, libucx-dev or ucx-utils holds libuct_xen" "$log"
else
    pass contents-ucx-no-module
fi

# The rebuilt libucx0, libucx-dev and ucx-utils hold what Debian's do (when
# Debian's are installed here to compare with), and only that
for p in libucx0 libucx-dev ucx-utils; do
    v=$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null)
    if [ -z "$v" ] || [ "${v%+xenmpi*}" != "$v" ]; then
        echo "SKIP: debs/contents-$p-as-debian (Debian's $p is not installed to compare with)"
        continue
    fi
    dpkg -L "$p" | grep -v -x '/\.' | sort > "$LOGS/debian-$p.txt"
    dpkg-deb -c "$(deb_of "$p")" | awk '{ print $6 }' | sed 's|^\./|/|; s|/$||' | grep . | sort > "$LOGS/rebuilt-$p.txt"
    if diff "$LOGS/debian-$p.txt" "$LOGS/rebuilt-$p.txt" > "$LOGS/diff-$p.txt"; then
        pass "contents-$p-as-debian"
    else
        fail "contents-$p-as-debian" "files differ from Debian's $v" "$LOGS/diff-$p.txt"
    fi
done

# ---------------------------------------------------------------- install
trap 'scratch_down "$SROOT"' EXIT
log=$LOGS/install.log
if ! scratch_up "$SROOT" >"$log" 2>&1; then
    fail install "no scratch root" "$log"
    exit 1
fi
if inside env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${all[@]}" >>"$log" 2>&1 &&
   inside dpkg-query -W -f '${Package} ${Version} ${Status}\n' "${ours[@]}" libucx0 libucx-dev ucx-utils \
        >"$LOGS/installed.txt" 2>&1 &&
   [ "$(grep -c 'install ok installed' "$LOGS/installed.txt")" -eq $((${#ours[@]} + 3)) ]; then
    pass install
    sed 's/^/#   /' "$LOGS/installed.txt"
else
    fail install "apt-get install of the packages failed" "$log"
    exit 1
fi

# ---------------------------------------------------------------- ucx_info
log=$LOGS/ucx_info.log
# scratch_run clears LD_PRELOAD; LD_DEBUG=files shows which file UCX loaded
inside env -u UCX_TLS LD_DEBUG=files ucx_info -d >"$log" 2>&1
# (/lib is /usr/lib on a merged-/usr system: either path)
loaded="file=(/usr)?${mdir#/usr}/libuct_xen\.so\.0 .*dynamically loaded by [^ ]*"
if grep -q 'Transport: xen$' "$log" && grep -q -E "$loaded" "$log"; then
    pass ucx_info-lists-xen
    grep -m1 -o -E "$loaded" "$log" | sed 's/^/#   /'
else
    fail ucx_info-lists-xen "ucx_info -d shows no xen transport loaded from $mdir" "$log"
fi

# A build tree's transport preloaded where the package is installed: one
# copy registers (the preloaded one, whose constructor runs first) and the
# other says why it did not
log=$LOGS/preload-and-module.log
if [ -f "$B/.libs/libuct_xen.so" ]; then
    inside env LD_PRELOAD="$B/.libs/libuct_xen.so" ucx_info -d >"$log" 2>&1
    n=$(grep -c 'Transport: xen$' "$log")
    if [ "$n" = 1 ] && grep -q "uct_xen: transport 'xen' is registered already.*(/.*ucx/libuct_xen.so.0) is not registered" "$log"; then
        pass preload-and-module-register-once
    else
        fail preload-and-module-register-once "xen listed $n times, or no message from the module's copy" "$log"
    fi
else
    echo "SKIP: debs/preload-and-module-register-once (no $B/.libs/libuct_xen.so)"
fi

# ---------------------------------------------------------------- MPI jobs
bin=$B/debs-bin
mkdir -p "$bin"
for m in mpich openmpi; do
    if ! mpicc.$m -O2 -o "$bin/pingpong-$m" "$SRC/test/mpi/pingpong.c" >"$LOGS/build-$m.log" 2>&1; then
        fail "build-pingpong-$m" "mpicc.$m failed" "$LOGS/build-$m.log"
    fi
done
dom=100
# lanes <log>: every lane of the ep_cfg lines of UCX's info log, one a line
lanes() {
    grep -o 'ep_cfg\[[0-9]*\]:.*' "$1" | grep -o '([^()]*/[^()]*)' | tr -d '()' | tr ' ' '\n' | sort -u
}
# job <mpi> <UCX_TLS> <name> <ep_cfg allowed> <ep_cfg required>: 2 ranks in
# 2 simulated VMs, ping-pong to 1 MiB, nothing preloaded
job() {
    local m=$1 tls=$2 name=$3 allowed=$4 need=$5 log=$LOGS/$3.log host=debtest-$$-$3 rc why
    local p=$bin/pingpong-$m
    [ -x "$p" ] || { fail "$name" "pingpong-$m not built"; return; }
    dom=$((dom + 2))
    case $m in
    mpich)
        inside timeout --kill-after=10 $TMO mpiexec.mpich -genv UCX_TLS "$tls" \
            -genv UCX_LOG_LEVEL info -genv MPIR_CVAR_NOLOCAL 1 -genv XENMPI_SIM_HOST "$host" \
            -n 1 -env XENMPI_SIM_DOMID $dom "$p" 200 1048576 : \
            -n 1 -env XENMPI_SIM_DOMID $((dom + 1)) "$p" 200 1048576 >"$log" 2>&1 ;;
    openmpi)
        local x=(-x UCX_TLS="$tls" -x UCX_LOG_LEVEL=info -x XENMPI_SIM_HOST="$host")
        inside timeout --kill-after=10 $TMO mpirun.openmpi --allow-run-as-root --oversubscribe \
            --mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any --mca btl self \
            -np 1 "${x[@]}" -x XENMPI_SIM_DOMID=$dom "$p" 200 1048576 : \
            -np 1 "${x[@]}" -x XENMPI_SIM_DOMID=$((dom + 1)) "$p" 200 1048576 >"$log" 2>&1 ;;
    esac
    rc=$?
    rm -rf "/dev/shm/xenmpi-sim-$host"
    if [ $rc -ne 0 ]; then
        fail "$name" "exit $rc" "$log"
    elif ! grep -q '^pingpong: OK' "$log"; then
        fail "$name" "no 'pingpong: OK' line" "$log"
    elif ! lanes "$log" | grep -q -x "$need"; then
        fail "$name" "no ep_cfg lane $need in the UCX info log" "$log"
    elif [ -n "$(lanes "$log" | grep -v -x -E "$allowed")" ]; then
        fail "$name" "ep_cfg lanes on other transports: $(lanes "$log" | grep -v -x -E "$allowed" | tr '\n' ' ')" "$log"
    else
        pass "$name"
        grep -E '^ +(8|1048576) +[0-9]+ ' "$log" | sed 's/^/#   /'
    fi
}
job mpich xen mpich-xen 'xen/xen0' 'xen/xen0'
job mpich xen,self mpich-xen-self 'xen/xen0|self/memory0?' 'xen/xen0'
job openmpi xen openmpi-xen 'xen/xen0' 'xen/xen0'
job openmpi xen,self openmpi-xen-self 'xen/xen0|self/memory0?' 'xen/xen0'
# UCX's own transports, from the rebuilt UCX
job mpich posix,cma,self mpich-posix 'posix/memory|cma/memory|self/memory0?' 'posix/memory'
job mpich tcp,self mpich-tcp 'tcp/[a-z0-9]+|self/memory0?' 'tcp/lo'
job openmpi posix,cma,self openmpi-posix 'posix/memory|cma/memory|self/memory0?' 'posix/memory'

# ---------------------------------------------------------------- xenmpi-run
log=$LOGS/xenmpi-run.log
if inside env -u UCX_TLS xenmpi-run sh -c 'echo "LD_PRELOAD=${LD_PRELOAD:-} UCX_TLS=$UCX_TLS"; ucx_info -d' \
        >"$log" 2>&1 &&
   grep -q '^LD_PRELOAD= UCX_TLS=xen,self$' "$log" && grep -q 'Transport: xen$' "$log"; then
    pass xenmpi-run
else
    fail xenmpi-run "xenmpi-run did not run the command over xen without a preload" "$log"
fi

# ---------------------------------------------------------------- dkms
kver=$(make -s -C "$SRC/kernel" kver 2>/dev/null)
log=$LOGS/dkms.log
rm -rf "$DEBS/dkms"
if [ -z "$kver" ]; then
    fail dkms-build "no kernel with headers for the harness (scripts/setup.sh installs them)"
else
    inside dkms status >"$log" 2>&1
    inside dkms build -m xenmpi-grant -v 0.1.0 -k "$kver" >>"$log" 2>&1
    ko=$(inside sh -c "ls /var/lib/dkms/xenmpi-grant/0.1.0/$kver/*/module/xenmpi_grant.ko*" 2>/dev/null | head -1)
    vm=$( [ -n "$ko" ] && inside modinfo -F vermagic "$ko" 2>/dev/null | cut -d' ' -f1)
    if [ "$vm" = "$kver" ] && inside test -f /usr/lib/modules-load.d/xenmpi-grant.conf &&
       inside grep -q -x xenmpi_grant /usr/lib/modules-load.d/xenmpi-grant.conf; then
        pass dkms-build
        echo "#   $ko for $kver"
        # kept for the real-Xen harness's run on the packages (XENTEST_DEBS)
        mkdir -p "$DEBS/dkms"
        case $ko in
        *.ko.xz) xz -dc "$SROOT/root$ko" > "$DEBS/dkms/xenmpi_grant.ko" ;;
        *.ko.zst) zstd -qdc "$SROOT/root$ko" > "$DEBS/dkms/xenmpi_grant.ko" ;;
        *) cp "$SROOT/root$ko" "$DEBS/dkms/xenmpi_grant.ko" ;;
        esac
    else
        fail dkms-build "no xenmpi_grant.ko for $kver from dkms (vermagic '${vm:-none}')" "$log"
    fi
fi

# ---------------------------------------------------------------- purge
log=$LOGS/purge.log
inside sh -c "dpkg -L ${ours[*]}" 2>/dev/null | sort -u > "$LOGS/files.txt"
inside env DEBIAN_FRONTEND=noninteractive apt-get purge -y "${ours[@]}" >"$log" 2>&1
left=$(while read -r f; do
           [ -f "$SROOT/root$f" ] && [ ! -d "$SROOT/root$f" ] && echo "$f"
       done < "$LOGS/files.txt" | head -5 | tr '\n' ' ')
dk=$(ls -d "$SROOT/root/var/lib/dkms/xenmpi-grant" 2>/dev/null)
if [ -n "$left" ] || [ -n "$dk" ] || inside dpkg -l "${ours[@]}" 2>/dev/null | grep -q '^[ir]'; then
    fail purge "left after purge: ${left}${dk}" "$log"
else
    pass purge
fi
# back to Debian's UCX: the rebuilt packages are replaced by the archive's
orig=$(apt-cache policy libucx0 | sed -n 's/^ *\(\*\*\* \)\?\([0-9][^ ]*\) [0-9]*$/\2/p' | grep -v xenmpi | head -1)
log=$LOGS/restore.log
if [ -n "$orig" ] &&
   inside env DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades \
        "libucx0=$orig" "libucx-dev=$orig" "ucx-utils=$orig" >"$log" 2>&1 &&
   inside ucx_info -d >>"$log" 2>&1 && ! grep -q 'Transport: xen' "$log" &&
   inside ucx_info -v | grep -q '1.13.1' && ! ls "$SROOT/root$mdir"/libuct_xen* >/dev/null 2>&1; then
    pass restore-debian-ucx
    echo "#   libucx0 $orig, no xen transport"
else
    fail restore-debian-ucx "could not go back to Debian's UCX ${orig:-(no archive version found)}" "$log"
fi
scratch_down "$SROOT"
trap - EXIT
