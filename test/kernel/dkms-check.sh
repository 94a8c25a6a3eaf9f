#!/bin/bash
# `dkms install` of kernel/ for one kernel version, into private trees: the
# module builds through kernel/dkms.conf and lands in updates/dkms.  Nothing
# under /var/lib/dkms, /usr/src or /lib/modules changes (no depmod), except
# the module-signing key dkms generates once in /var/lib/dkms.
#   test/kernel/dkms-check.sh <kernel/ source dir> <kernel version>
# Prints "PASS: kernel/dkms-install" or "FAIL: ..." and exits accordingly.
set -u
SRC=${1:-}
KVER=${2:-}
NAME=kernel/dkms-install
[ -f "$SRC/dkms.conf" ] && [ -n "$KVER" ] || { echo "usage: $0 <kernel dir> <kver>" >&2; exit 2; }
command -v dkms >/dev/null || { echo "dkms not found (apt-get install dkms)" >&2; echo "FAIL: $NAME"; exit 1; }
VER=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$SRC/dkms.conf")
PKG=$(sed -n 's/^PACKAGE_NAME="\(.*\)"/\1/p' "$SRC/dkms.conf")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/src/$PKG-$VER" "$T/dkms" "$T/inst/$KVER"
cp -r "$SRC"/. "$T/src/$PKG-$VER/"
# drop build products of an in-tree build, dkms builds from sources
rm -f "$T/src/$PKG-$VER"/{*.o,*.ko,*.mod,*.mod.c,Module.symvers,modules.order,.*.cmd}
if ! (cd "$T" && dkms install -j 1 --no-depmod -m "$PKG" -v "$VER" -k "$KVER" \
        --dkmstree "$T/dkms" --sourcetree "$T/src" --installtree "$T/inst") >"$T/log" 2>&1; then
    tail -30 "$T/log" >&2
    echo "FAIL: $NAME"; exit 1
fi
KO=$T/inst/$KVER/updates/dkms/xenmpi_grant.ko
for f in "$KO" "$KO".xz "$KO".zst; do [ -f "$f" ] && KO=$f && break; done
kv=$(modinfo -F vermagic "$KO" 2>/dev/null | cut -d' ' -f1)
if [ "$kv" = "$KVER" ]; then
    echo "dkms installed $(basename "$KO") for $kv" >&2
    echo "PASS: $NAME"
else
    echo "no module for $KVER under $T/inst (vermagic '$kv')" >&2
    tail -20 "$T/log" >&2
    echo "FAIL: $NAME"; exit 1
fi
