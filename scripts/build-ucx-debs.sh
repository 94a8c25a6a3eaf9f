#!/bin/bash
# Rebuild Debian's UCX 1.13.1 with the xen transport as an in-tree module
# (src/uct/xen, module "xen" in UCX's module list) and put its packages in
# <out-dir>: libucx0, libucx-dev, ucx-utils at version 1.13.1-1+xenmpi1,
# which replace Debian's 1.13.1-1, and libucx0-xen, which holds the module.
#   usage: scripts/build-ucx-debs.sh <out-dir>
# <out-dir> must hold this tree's libxenmpi0 and libxenmpi-dev packages
# (scripts/build-debs.sh builds them, then calls this).
#
# What changes in Debian's source (packaging/ucx/):
#   debian/patches/uct-xen-transport.patch  the upstream-style change: the
#       module's configure.m4 and Makefile.am, one m4_include and one SUBDIRS
#       entry, and the transport's sources (src/uct_xen/ of this tree)
#   debian/ (debian.diff, changelog-entry)  the libucx0-xen package,
#       --with-xen, the changelog entry; doxygen, texlive and the JDK, which
#       the rules never use, under the build profiles pkg.ucx.noapidoc and
#       nojava (with nojava configure skips the Java bindings, whose Maven
#       build would fetch from the network); --without-fuse3, as Debian's
#       1.13.1-1 binaries have no VFS module
# The build runs in a scratch root (scripts/scratch-root.sh) where
# libxenmpi-dev and UCX's build dependencies are installed (apt-get
# build-dep), so this machine's packages do not change.
#
# The packages are cached in <cache>/ucx-debs-1.13.1-<key> (<cache>:
# $XM_MPICH_CACHE, default /var/cache/xenmpi); <key> hashes what the build
# reads of this tree: this script, packaging/ucx, the transport's sources
# and the core's installed headers and symbol map.  A change elsewhere (the core's .c
# files) reuses them.  The build's time is in <cache dir>/build-seconds.
set -euo pipefail
die() { echo "build-ucx-debs: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 <out-dir>"
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
[ "$(id -u)" = 0 ] || die "run as root: the build runs in a scratch root (mount, chroot)"
. "$SRC/scripts/scratch-root.sh"

UPSTREAM=1.13.1
DEBVER=$UPSTREAM-1
XENVER=$(sed -n '1s/^ucx (\(.*\)).*/\1/p' "$SRC/packaging/ucx/changelog-entry")
[ -n "$XENVER" ] || die "no version in packaging/ucx/changelog-entry"
arch=$(dpkg --print-architecture)

xm_debs=()
for p in libxenmpi0 libxenmpi-dev; do
    f=$(ls "$OUT"/${p}_*_"$arch".deb 2>/dev/null | tail -1)
    [ -n "$f" ] || die "no ${p} package in $OUT: run scripts/build-debs.sh"
    xm_debs+=("$f")
done

base=${XM_MPICH_CACHE:-/var/cache/xenmpi}
mkdir -p "$base" || die "cannot create $base"
key=$( { cat "$0"; find "$SRC/packaging/ucx" -type f | LC_ALL=C sort | xargs cat; cat "$SRC"/src/uct_xen/*.[ch];
         cat "$SRC"/src/core/xm_{hv,channel,zc,wire,xfer}.h "$SRC"/src/topo/xm_topo.h \
             "$SRC"/src/libxenmpi.map; } | sha256sum | cut -c1-12)
cache=$base/ucx-debs-$UPSTREAM-$key
names=(libucx0 libucx-dev ucx-utils libucx0-xen)

have_all() {
    local n
    for n in "${names[@]}"; do
        ls "$cache"/${n}_"$XENVER"_"$arch".deb >/dev/null 2>&1 || return 1
    done
}

if ! have_all; then
    # Debian's source, as scripts/fetch-ucx-src.sh leaves it
    "$SRC/scripts/fetch-ucx-src.sh" "$SRC/build/ucx-src" >/dev/null
    dsc=$SRC/build/ucx-src/ucx_$DEBVER.dsc
    [ -f "$dsc" ] || die "$dsc missing: scripts/fetch-ucx-src.sh did not leave Debian's source package"
    for t in dpkg-source dpkg-buildpackage patch; do
        command -v $t >/dev/null || die "$t not found (apt-get install dpkg-dev debhelper)"
    done
    start=$SECONDS
    work=$base/ucx-debs-build
    rm -rf "$work"
    mkdir -p "$work"
    echo "build-ucx-debs: unpacking Debian's UCX $DEBVER in $work"
    dpkg-source -q -x "$dsc" "$work/ucx-$UPSTREAM" >/dev/null 2>"$work/unpack.log" ||
        { cat "$work/unpack.log" >&2; die "dpkg-source -x $dsc failed"; }
    tree=$work/ucx-$UPSTREAM

    # the upstream-style patch: the module's build files and its sources
    mkdir -p "$work/a/src/uct" "$work/b/src/uct/xen"
    cp "$tree"/src/uct/{configure.m4,Makefile.am} "$work/a/src/uct/"
    cp "$tree"/src/uct/{configure.m4,Makefile.am} "$work/b/src/uct/"
    sed -i 's|^m4_include(\[src/uct/ugni/configure.m4\])$|&\nm4_include([src/uct/xen/configure.m4])|' \
        "$work/b/src/uct/configure.m4"
    sed -i 's/^SUBDIRS = \. cuda ib rocm sm ugni$/& xen/' "$work/b/src/uct/Makefile.am"
    cmp -s "$work"/{a,b}/src/uct/configure.m4 && die "UCX's src/uct/configure.m4 changed: cannot add the xen module"
    cmp -s "$work"/{a,b}/src/uct/Makefile.am && die "UCX's src/uct/Makefile.am changed: cannot add the xen module"
    cp "$SRC"/packaging/ucx/xen/{configure.m4,Makefile.am} "$SRC"/src/uct_xen/*.[ch] "$work/b/src/uct/xen/"
    {
        cat "$SRC/packaging/ucx/uct-xen-transport.header"
        (cd "$work" && diff -ruN a b || [ $? -eq 1 ]) |
            sed -E 's/^(---|\+\+\+) ([ab]\/[^[:space:]]*)[[:space:]].*/\1 \2/'
    } > "$tree/debian/patches/uct-xen-transport.patch"
    rm -rf "$work/a" "$work/b"
    echo uct-xen-transport.patch >> "$tree/debian/patches/series"
    # the packaging: debian.diff (the new package, rules, control) and the
    # changelog entry, which comes first
    (cd "$tree" && patch -s -p1 < "$SRC/packaging/ucx/debian.diff") ||
        die "packaging/ucx/debian.diff does not apply to Debian's UCX $DEBVER"
    cat "$SRC/packaging/ucx/changelog-entry" "$tree/debian/changelog" > "$work/changelog"
    mv "$work/changelog" "$tree/debian/changelog"

    # build in a scratch root that has libxenmpi-dev
    cp "${xm_debs[@]}" "$work/"
    sroot=$work.root
    trap 'scratch_down "$sroot"' EXIT
    scratch_up "$sroot"
    scratch_bind "$sroot" "$work"
    echo "build-ucx-debs: building (dpkg-buildpackage, log in $work/build.log)"
    # UCX's build dependencies go into the scratch root too (apt-get
    # build-dep reads the tree's debian/control, libxenmpi-dev installed)
    profiles='nojava pkg.ucx.noapidoc'
    if ! scratch_run "$sroot" sh -c "cd '$work' && dpkg -i ./libxenmpi*.deb >install.log 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q --no-install-recommends \
                -P '$(echo $profiles | tr ' ' ,)' '$tree' >>install.log 2>&1 &&
            cd '$tree' && DEB_BUILD_PROFILES='$profiles' DEB_BUILD_OPTIONS='parallel=$(nproc)' \
            dpkg-buildpackage -b -us -uc" >"$work/build.log" 2>&1; then
        tail -40 "$work/build.log" >&2
        [ -f "$work/install.log" ] && tail -15 "$work/install.log" >&2
        die "the UCX build failed (whole log: $work/build.log)"
    fi
    scratch_down "$sroot"
    trap - EXIT
    grep -q 'UCT modules:.* xen ' "$work/build.log" ||
        die "UCX was configured without the xen module (see $work/build.log)"
    rm -rf "$cache.tmp"
    mkdir -p "$cache.tmp"
    for n in "${names[@]}"; do
        cp "$work"/${n}_"$XENVER"_"$arch".deb "$cache.tmp/" || die "the build made no $n package"
    done
    cp "$work/build.log" "$work"/*.buildinfo "$work"/*.changes "$cache.tmp/"
    echo $((SECONDS - start)) > "$cache.tmp/build-seconds"
    # older builds go: only the newest is kept
    for d in "$base"/ucx-debs-$UPSTREAM-*; do
        [ "$d" = "$cache.tmp" ] || rm -rf "$d"
    done
    mv "$cache.tmp" "$cache"
    rm -rf "$work"
    echo "build-ucx-debs: built in $(cat "$cache/build-seconds") s, kept in $cache"
else
    echo "build-ucx-debs: $cache (built before in $(cat "$cache/build-seconds" 2>/dev/null || echo '?') s)"
fi
for n in "${names[@]}"; do
    cp "$cache"/${n}_"$XENVER"_"$arch".deb "$OUT/"
done
