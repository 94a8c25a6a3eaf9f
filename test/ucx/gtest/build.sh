#!/bin/bash
# Build (or find already built) UCX 1.13.1's gtest with the generic uct tests
# and the transport "xen" instantiated, against Debian's installed UCX.
#   usage: test/ucx/gtest/build.sh <UCX 1.13.1 source dir>
# Prints the path of the gtest binary on its last line.
#
# The build lives outside the source tree, in
#   ${XM_GTEST_CACHE:-/var/cache/xenmpi}/ucx-gtest-<key>
# where <key> hashes the installed UCX (version and `ucx_info -b`, the
# config.h the library was built with), this script, gtest.mk and the
# patches: a second run with the same inputs reuses the binary.  The patches
# are applied to a copy of the source made there (ucx/); the source given is
# never changed.  Without write access to /var/cache it falls back to
# ~/.cache/xenmpi.
set -euo pipefail

die() { echo "gtest-build: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 <UCX 1.13.1 source dir>"
ucx=$(cd "$1" && pwd) || die "no such directory: $1"
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$ucx/test/gtest/uct/uct_test.h" ] || die "$ucx is not a UCX source tree"
for tool in ucx_info g++ make patch sha256sum flock; do
    command -v $tool >/dev/null || die "$tool not found"
done

version=$(ucx_info -v | sed -n 's/^# Version //p')
case $version in 1.13.1) ;; *) die "installed UCX is '$version', the gtest source is 1.13.1" ;; esac
config=$(ucx_info -b)

key=$( { echo "$version"; echo "$config"; cat "$here/build.sh" "$here/gtest.mk" "$here"/*.patch; } |
       sha256sum | cut -c1-16)
base=${XM_GTEST_CACHE:-/var/cache/xenmpi}
if ! mkdir -p "$base" 2>/dev/null || [ ! -w "$base" ]; then
    base=${XDG_CACHE_HOME:-$HOME/.cache}/xenmpi
    mkdir -p "$base" || die "cannot create a cache directory"
fi
dir=$base/ucx-gtest-$version-$key

# one build per key at a time; whoever comes second finds it done
exec 9>"$base/.ucx-gtest-$key.lock"
flock 9
if [ -x "$dir/gtest" ]; then
    echo "gtest-build: cached $dir"
    echo "$dir/gtest"
    exit 0
fi

# built in place (the paths compiled in are the ones that stay); the binary
# is renamed into place last, so a directory without it is an interrupted
# build and starts again
rm -rf "$dir"
mkdir -p "$dir/ucx/test" "$dir/conf"
start=$(date +%s)
# the headers (src/) and the tests; nothing else of UCX is built
cp -a "$ucx/src" "$dir/ucx/"
cp -a "$ucx/test/gtest" "$dir/ucx/test/"
for p in "$here"/*.patch; do
    patch -s -d "$dir/ucx" -p1 < "$p" || die "$(basename "$p") does not apply"
done
echo "$config" > "$dir/conf/config.h"
nice -n 10 make -s -j2 -f "$here/gtest.mk" UCX="$dir/ucx" CONF="$dir/conf" O="$dir/out" >"$dir/build.log" 2>&1 ||
    { tail -30 "$dir/build.log" >&2; die "build failed (see $dir/build.log)"; }
rm -rf "$dir/out/"{googletest,common,uct}
echo "built in $(( $(date +%s) - start )) s" >> "$dir/build.log"
mv "$dir/out/gtest" "$dir/gtest"
echo "gtest-build: built $dir in $(( $(date +%s) - start )) s"
echo "$dir/gtest"
