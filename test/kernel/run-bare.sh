#!/bin/bash
# xenmpi_grant refuses to load outside Xen: boot the module's kernel with no
# hypervisor under QEMU (TCG), insmod the module from a busybox initramfs
# (test/kernel/bare-init) and expect the refusal: insmod fails, no device,
# not in /proc/modules, and the module's own "not running on Xen" message.
#
#   test/kernel/run-bare.sh <xenmpi_grant.ko>
#
# The kernel is /boot/vmlinuz-<the module's vermagic>.  Prints
# "PASS: kernel/refuses-without-xen" or "FAIL: ..." and exits accordingly;
# the console log is kept next to the module as bare-serial.log.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
KO=${1:-}
[ -f "$KO" ] || { echo "usage: $0 <xenmpi_grant.ko>" >&2; exit 2; }
KO=$(cd "$(dirname "$KO")" && pwd)/$(basename "$KO")
NAME=kernel/refuses-without-xen
fail() { echo "run-bare: $*" >&2; echo "FAIL: $NAME"; exit 1; }

KVER=$(modinfo -F vermagic "$KO" 2>/dev/null | cut -d' ' -f1)
[ -n "$KVER" ] && [ -f "/boot/vmlinuz-$KVER" ] ||
    fail "no /boot/vmlinuz-$KVER for $KO (apt-get install linux-image-$KVER)"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 not found"
[ -x /bin/busybox ] || fail "no /bin/busybox (apt-get install busybox-static)"

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
LOG=$(dirname "$KO")/bare-serial.log
mkdir -p "$W/root"/{bin,proc,sys,dev}
cp /bin/busybox "$W/root/bin/busybox"
for a in $(/bin/busybox --list); do
    [ -e "$W/root/bin/$a" ] || ln -s busybox "$W/root/bin/$a"
done
cp "$KO" "$W/root/xenmpi_grant.ko"
cp "$HERE/bare-init" "$W/root/init"
chmod +x "$W/root/init"
(cd "$W/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$W/initrd.gz" ||
    fail "building the initramfs failed"

timeout "${XENTEST_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg -machine q35 \
    -cpu qemu64 -m 512 -smp 1 -nographic -no-reboot -monitor none \
    -serial "file:$LOG" -kernel "/boot/vmlinuz-$KVER" -initrd "$W/initrd.gz" \
    -append "console=ttyS0 panic=-1 loglevel=4 rdinit=/init" </dev/null
qrc=$?
tr -d '\r' <"$LOG" | grep -a '^BARE\|xenmpi_grant' >&2
if tr -d '\r' <"$LOG" | grep -qa '^BARE RESULT PASS'; then
    echo "PASS: $NAME"
    exit 0
fi
echo "run-bare: qemu status $qrc; tail of $LOG:" >&2
tr -d '\r' <"$LOG" | tail -30 >&2
echo "FAIL: $NAME"
exit 1
