#!/bin/bash
# Real-Xen test harness: Xen 4.17 + PV dom0 under QEMU TCG (no KVM), dom0
# starts two PV domUs (xm-a, xm-b) that run the listed tests against each
# other.
#
#   test/xen/run.sh <build-dir> <tests-file>
#
# tests file: one test per line, '#' comments:
#   name|command in domU A|command in domU B
# The first word of each command is a binary found in <build-dir> (copied to
# /test in the domU image with its libraries); @PEER@ is replaced by the other
# domU's domid, @SELF@ by the domU's own.  Both commands run concurrently;
# the test passes when both exit 0.
#
# XENTEST_DEBS=<dir> builds the MPI image from the Debian packages in <dir>
# (scripts/build-debs.sh) instead of the build tree: UCX, the transport as
# UCX's own module, libxenmpi and xenmpi-run from the packages, no
# preloadable copy of the transport, and the kernel module DKMS built
# (<dir>/dkms/xenmpi_grant.ko, kept by test/debs); tests-debs.list.
#
# A first word that is a file of test/xen/ (mpi-job) is taken from there, one
# that is a busybox applet (true) from busybox.  Tests named mpi-* are MPI
# jobs across the domUs: with one listed, the images also get a network (a
# bridge in dom0, a vif in each domU), ssh, the MPIs and the MPI programs
# (test/xen/mpi-image.sh), and the domUs more memory.
#
# Prints "PASS: xen/<name>" or "FAIL: xen/<name>" per test, keeps the serial
# log at test/xen/work/serial.log, exits non-zero on any failure.
#
# Environment: XENTEST_SMP (emulated CPUs, default 2: one per domU),
# XENTEST_TIMEOUT (whole run, default 1800 s), XENTEST_TEST_TIMEOUT
# (one test, default 600 s), XENTEST_KVER (kernel version, default: the
# installed linux-image), XENTEST_MODULES (extra .ko files loaded in the domUs),
# XENTEST_XENARGS (more Xen command-line options, e.g. sched=credit),
# XENTEST_WORK (the work directory, default test/xen/work),
# XENTEST_ONLY (run only the tests whose name matches this extended regex,
# e.g. 'kgrant|hv_xdom'; the others are not listed), XENTEST_SKIP (leave out
# the tests whose name matches this extended regex).
# The project's module <build-dir>/kernel/xenmpi_grant.ko (make kmod), when
# built, is loaded in every domain like XENTEST_MODULES.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
W=${XENTEST_WORK:-$HERE/work}
LOG=$W/serial.log

usage() { echo "usage: $0 <build-dir> <tests-file>" >&2; exit 2; }
[ $# -eq 2 ] || usage
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "no build dir $1" >&2; exit 2; }
TESTS=$(cd "$(dirname "$2")" 2>/dev/null && pwd)/$(basename "$2")
[ -f "$TESTS" ] || { echo "no tests file $2" >&2; exit 2; }

mkdir -p "$W"
rm -f "$LOG"

# --- the tests --------------------------------------------------------------
NAMES=()
NEED_MPI=0
BINS=()
HEREBINS=()
LINES=()
BADFMT=0
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|\#*) continue ;; esac
    [[ "$line" =~ ^[[:space:]]*$ ]] && continue
    IFS='|' read -r name ca cb <<<"$line"
    name=$(echo $name)
    if [ -z "$name" ] || [ -z "${cb:-}" ] || [[ "$cb" == *"|"* ]]; then
        echo "bad line in $TESTS: $line" >&2; BADFMT=1; continue
    fi
    if [ -n "${XENTEST_ONLY:-}" ] && ! [[ "$name" =~ ^(${XENTEST_ONLY})$ ]]; then
        continue
    fi
    if [ -n "${XENTEST_SKIP:-}" ] && [[ "$name" =~ ^(${XENTEST_SKIP})$ ]]; then
        continue
    fi
    NAMES+=("$name")
    LINES+=("$line")
    case $name in mpi-*) NEED_MPI=1 ;; esac
    for c in "$ca" "$cb"; do
        set -- $c
        b=$1
        if [ -f "$HERE/$b" ] && [ -x "$HERE/$b" ]; then   # a script of test/xen/
            case " ${HEREBINS[*]-} " in *" $b "*) ;; *) HEREBINS+=("$b") ;; esac
            continue
        fi
        /bin/busybox --list 2>/dev/null | grep -qx -- "$b" && continue
        case " ${BINS[*]-} " in *" $b "*) ;; *) BINS+=("$b") ;; esac
    done
done <"$TESTS"
[ ${#NAMES[@]} -gt 0 ] || { echo "no tests in $TESTS${XENTEST_ONLY:+ matching XENTEST_ONLY=$XENTEST_ONLY}" >&2; exit 2; }

fail_all() { # boot or image failure: every listed test fails
    echo "xen harness: $*" >&2
    for n in "${NAMES[@]}"; do echo "FAIL: xen/$n"; done
    if [ -f "$LOG" ]; then echo "--- tail of $LOG" >&2; tail -60 "$LOG" >&2; fi
    exit 1
}
[ $BADFMT = 0 ] || fail_all "malformed tests file"

# --- kernel, modules, binaries ----------------------------------------------
KVER=${XENTEST_KVER:-}
if [ -z "$KVER" ]; then
    for k in $(ls -v /boot/vmlinuz-* 2>/dev/null); do
        v=${k#/boot/vmlinuz-}
        [ -d /lib/modules/$v ] && KVER=$v
    done
fi
[ -n "$KVER" ] && [ -f /boot/vmlinuz-$KVER ] ||
    fail_all "no installed linux-image with modules (apt-get install linux-image-amd64)"
[ -f /boot/xen-4.17-amd64.gz ] ||
    fail_all "no /boot/xen-4.17-amd64.gz (apt-get install xen-hypervisor-4.17-amd64)"
XB=/usr/lib/xen-4.17/bin
for t in qemu-system-x86_64 cpio ldd modinfo xz; do
    command -v $t >/dev/null || fail_all "$t not found"
done
# the project's kernel module, when built for this kernel (make kmod); on
# the packages, the one DKMS built from xenmpi-dkms (test/debs)
KMOD=""
if [ -n "${XENTEST_DEBS:-}" ]; then
    KMOD=$XENTEST_DEBS/dkms/xenmpi_grant.ko
    [ -f "$KMOD" ] || fail_all "no $KMOD: test/debs/run-deb-tests.sh keeps the module DKMS built there"
fi
if [ -z "$KMOD" ] && [ -f "$BUILD/kernel/xenmpi_grant.ko" ]; then
    KMOD=$BUILD/kernel/xenmpi_grant.ko
fi
if [ -n "$KMOD" ]; then
    kv=$(modinfo -F vermagic "$KMOD" 2>/dev/null | cut -d' ' -f1)
    if [ "$kv" != "$KVER" ]; then
        echo "xen harness: $KMOD is built for '$kv', the domains boot $KVER:" \
             "make kmod KVER=$KVER; not loading it" >&2
        KMOD=""
    fi
fi
BUSYBOX=/bin/busybox  # busybox-static
[ -x $BUSYBOX ] || fail_all "no $BUSYBOX (apt-get install busybox-static)"

BINPATHS=()
for b in "${BINS[@]}"; do
    case $b in
    */*) fail_all "command '$b' must be a binary name, not a path" ;;
    esac
    if [ -x "$BUILD/$b" ] && [ -f "$BUILD/$b" ]; then
        p=$BUILD/$b
    else
        # not the sanitizer builds' copies (test/run-all.sh: $BUILD/san-*)
        # nor the package build's (scripts/build-debs.sh: $BUILD/debs)
        p=$(find "$BUILD" -maxdepth 4 \( -path "$BUILD/san-*" -o -path "$BUILD/debs" \) -prune -o \
                 -type f -name "$b" -perm -u+x -print 2>/dev/null | head -1)
    fi
    [ -n "$p" ] || fail_all "binary $b (named in $TESTS) not found under $BUILD"
    # libtool wrapper script: take the real program from .libs/
    if [ "$(head -c 2 "$p")" = "#!" ]; then
        for q in "$(dirname "$p")/.libs/$b" "$(dirname "$p")/.libs/lt-$b"; do
            [ -f "$q" ] && { p=$q; break; }
        done
    fi
    BINPATHS+=("$p")
done

# --- images -----------------------------------------------------------------

# libraries built in the build dir (libtool .libs) are found for ldd and go
# to the image's /lib/x86_64-linux-gnu, where the loader looks by default
# (not the sanitizer build trees' beside it, test/run-all.sh: $BUILD/san-*,
# nor the package build's, which may be of an older tree: $BUILD/debs)
BUILD_LIBS=$(find "$BUILD" -maxdepth 4 \( -path "$BUILD/san-*" -o -path "$BUILD/debs" \) -prune -o \
             -type d -name .libs -print 2>/dev/null | tr '\n' ':')
copy_with_libs() { # root file...: copy each file and every library ldd lists
    local root=$1 f l
    shift
    for f in "$@"; do
        if LD_LIBRARY_PATH="$BUILD_LIBS${LD_LIBRARY_PATH:-}" ldd "$f" 2>/dev/null | grep -q "not found"; then
            echo "$f: libraries not found:" >&2
            LD_LIBRARY_PATH="$BUILD_LIBS${LD_LIBRARY_PATH:-}" ldd "$f" | grep "not found" >&2
            return 1
        fi
        LD_LIBRARY_PATH="$BUILD_LIBS${LD_LIBRARY_PATH:-}" ldd "$f" 2>/dev/null |
            grep -o '/[^ ]*' | while read -r l; do
            case $l in
            "$BUILD"/*) cp -L "$l" "$root/lib/x86_64-linux-gnu/" ;;
            *) mkdir -p "$root$(dirname "$l")"; cp -Ln "$l" "$root$l" ;;
            esac
        done
    done
}

kmod_put() { # module dir: the installed kernel's module, uncompressed, as dir/<module>.ko
    local f
    f=$(modinfo -k "$KVER" -n "$1") || return 1
    case $f in
    *.ko) cp "$f" "$2/$1.ko" ;;
    *.ko.xz) xz -dc "$f" >"$2/$1.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$2/$1.ko" ;;
    *) echo "module $1: $f" >&2; return 1 ;;
    esac
}

base_rootfs() { # root
    local root=$1 a m f
    rm -rf "$root"
    # merged /usr, as on the host: packages install to /usr/lib, ldd names /lib
    mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,test,usr/bin,usr/sbin,usr/lib64}
    mkdir -p "$root/usr/lib/x86_64-linux-gnu"
    ln -s usr/lib "$root/lib"
    ln -s usr/lib64 "$root/lib64"
    mkdir -p "$root/lib/modules/$KVER/extra"
    mkdir -p "$root/var"
    ln -s ../run "$root/var/run"
    mkdir -p "$root"/var/{lib/xen,log/xen/console,lock} "$root"/run/{xen,xenstored}
    cp "$BUSYBOX" "$root/bin/busybox"
    for a in $("$BUSYBOX" --list); do
        [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
    done
    for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs; do
        kmod_put "$m" "$root/lib/modules/$KVER" || return 1
    done
    for f in ${XENTEST_MODULES:-}; do cp "$f" "$root/lib/modules/$KVER/extra/"; done
    [ -z "$KMOD" ] || cp "$KMOD" "$root/lib/modules/$KVER/extra/"
    # xenstore client (one multi-call binary)
    cp -L /usr/bin/xenstore "$root/usr/bin/xenstore"
    for a in read write rm ls chmod exists list watch; do
        ln -s xenstore "$root/usr/bin/xenstore-$a"
    done
    copy_with_libs "$root" /usr/bin/xenstore
    # glibc dlopen()s libgcc_s (pthread_cancel, xl); ldd does not list it
    cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$root/lib/x86_64-linux-gnu/"
    for i in "${!BINS[@]}"; do cp -L "${BINPATHS[$i]}" "$root/test/${BINS[$i]}"; done
    for b in "${HEREBINS[@]}"; do cp "$HERE/$b" "$root/test/$b"; done
    copy_with_libs "$root" "${BINPATHS[@]}" || return 1
    printf '%s\n' "${LINES[@]}" >"$root/test/tests.list"
    cp "$HERE/init" "$root/init"
    chmod +x "$root/init"
}
. "$HERE/mpi-image.sh"   # mpi_domu, net_dom0

build_images() {
    local d0=$W/rootfs-dom0 du=$W/rootfs-domu off
    zcat /boot/xen-4.17-amd64.gz >"$W/xen" || return 1
    cp /boot/vmlinuz-$KVER "$W/vmlinuz" || return 1
    # the domU kernel as an uncompressed ELF spares libxenguest an xz
    # decompression under TCG for each domU; fall back to the bzImage
    DOMU_KERNEL=$W/vmlinuz
    off=$(grep -abo $'\xfd7zXZ' "$W/vmlinuz" 2>/dev/null | head -1 | cut -d: -f1)
    if [ -n "$off" ] && tail -c +$((off + 1)) "$W/vmlinuz" | xz -dc 2>/dev/null >"$W/vmlinux" &&
        [ "$(head -c 4 "$W/vmlinux" | tail -c 3)" = ELF ]; then
        DOMU_KERNEL=$W/vmlinux
    fi

    base_rootfs "$du" || return 1
    if [ $NEED_MPI = 1 ]; then mpi_domu "$du" || return 1; fi
    (cd "$du" && find . | cpio -o -H newc --quiet | gzip -6) >"$W/domu.cpio.gz" || return 1

    base_rootfs "$d0" || return 1
    if [ $NEED_MPI = 1 ]; then net_dom0 "$d0" || return 1; fi
    # dom0 publishes the host topology (tools/xenmpi-topo-publish, libxenlight)
    # before the domU tests, when it was built
    p=$BUILD/tools/xenmpi-topo-publish
    [ -f "$BUILD/tools/.libs/xenmpi-topo-publish" ] && p=$BUILD/tools/.libs/xenmpi-topo-publish
    if [ -f "$p" ]; then
        cp -L "$p" "$d0/test/xenmpi-topo-publish" && copy_with_libs "$d0" "$p" || return 1
    fi
    mkdir -p "$d0/usr/lib/xen-4.17/bin" "$d0/etc/xen" "$d0/boot"
    for f in xl xenstored xenconsoled xen-init-dom0; do
        cp -L $XB/$f "$d0$XB/$f" || return 1
        copy_with_libs "$d0" $XB/$f
    done
    [ -f /etc/xen/xl.conf ] && cp /etc/xen/xl.conf "$d0/etc/xen/"
    # MPI jobs: the MPIs live in the domU's initramfs (RAM), and a vif each
    DOMU_MEM=256 DOMU_VIF=""
    if [ $NEED_MPI = 1 ]; then DOMU_MEM=1024 DOMU_VIF="vif = [ 'bridge=xenbr0' ]"; fi
    cat >"$d0/etc/xen/domu.cfg" <<EOF
type = "pv"
name = "xm-domu"
kernel = "/boot/vmlinuz"
ramdisk = "/boot/domu.cpio.gz"
extra = "console=hvc0 xenrole=domu quiet loglevel=4 xentest_tmo=${XENTEST_TEST_TIMEOUT:-600}"
memory = $DOMU_MEM
vcpus = 1
$DOMU_VIF
# 16384 grant refs: more than gntalloc's limit (at most 4096 here) and the
# module's per-domain limit (8192) together, so the MPI jobs never fill the
# table (the kgrant test fills it through the module, with the module's
# limits lifted). On Linux 6.1 a gntalloc allocation that meets a full
# table leaves the domain unable to share any page through gntalloc again
# (docs/kernel.md).
max_grant_frames = 32
on_crash = "preserve"
on_poweroff = "destroy"
EOF
    cp "$DOMU_KERNEL" "$d0/boot/vmlinuz"
    cp "$W/domu.cpio.gz" "$d0/boot/domu.cpio.gz"
    (cd "$d0" && find . | cpio -o -H newc --quiet | gzip -1) >"$W/dom0.cpio.gz" || return 1
}

T0=$(date +%s)
build_images >"$W/build.log" 2>&1 || { cat "$W/build.log" >&2; fail_all "building the images failed"; }

# --- boot ---------------------------------------------------------------------
# Two emulated CPUs (XENTEST_SMP, default 2) let the two domUs run at the same
# time, one pinned to each, so a polling ping-pong between them does not wait
# for Xen's scheduler to switch domains on a single CPU.
SMP=${XENTEST_SMP:-2}
XENARGS="${XENTEST_XENARGS:-} console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1 loglvl=all guest_loglvl=all noreboot console_timestamps=boot"
DOM0ARGS="console=hvc0 earlyprintk=xen xenrole=dom0 xentest_tmo=${XENTEST_TEST_TIMEOUT:-600} xentest_smp=$SMP"
timeout "${XENTEST_TIMEOUT:-1800}" qemu-system-x86_64 -accel tcg -machine q35 -cpu qemu64 \
    -m 4096 -smp "$SMP" -nographic -no-reboot -monitor none -serial "file:$LOG" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$W/xen" -append "$XENARGS" \
    -initrd "$W/vmlinuz $DOM0ARGS,$W/dom0.cpio.gz" </dev/null &
QPID=$!
T_INIT=""
while kill -0 $QPID 2>/dev/null; do
    if [ -z "$T_INIT" ] && grep -qa "XENTEST INIT role=dom0" "$LOG" 2>/dev/null; then
        T_INIT=$(($(date +%s) - T0))
    fi
    if grep -qaE "Dom0 crashed|Kernel panic" "$LOG" 2>/dev/null; then
        sleep 2; kill $QPID 2>/dev/null; break
    fi
    if grep -qa "XENTEST DOM0 DONE" "$LOG" 2>/dev/null; then
        # dom0 ends QEMU through isa-debug-exit; kill only if that failed
        for _ in $(seq 30); do kill -0 $QPID 2>/dev/null || break; sleep 0.5; done
        kill $QPID 2>/dev/null
        break
    fi
    sleep 1
done
wait $QPID
QRC=$?
T1=$(date +%s)

# --- results ------------------------------------------------------------------
FAILED=0
for n in "${NAMES[@]}"; do
    r=$(tr -d '\r' <"$LOG" | grep -a "^XENTEST $n \(PASS\|FAIL\)" | tail -1 | awk '{print $3}')
    if [ "$r" = PASS ]; then
        echo "PASS: xen/$n"
    else
        echo "FAIL: xen/$n"
        FAILED=1
    fi
done
grep -qa "XENTEST DOM0 DONE" "$LOG" || FAILED=1
echo "xen harness: dom0 /init after ${T_INIT:-?} s, total $((T1 - T0)) s, qemu status $QRC" >&2
if [ $FAILED != 0 ]; then
    # each failed test's own lines (from its first "--- XENTEST <name>:" to its
    # result), so a rare failure shows its cause in the suite's output
    for n in "${NAMES[@]}"; do
        tr -d '\r' <"$LOG" | grep -qa "^XENTEST $n PASS" && continue
        echo "--- $LOG, test $n (first 150 lines)" >&2
        tr -d '\r' <"$LOG" | awk -v n="$n" '
            index($0, "--- XENTEST " n ":") { on = 1 }
            on { print }
            on && index($0, "XENTEST " n " ") == 1 { exit }' | head -150 >&2
    done
    echo "--- tail of $LOG" >&2
    tr -d '\r' <"$LOG" | tail -80 >&2
fi
exit $FAILED
