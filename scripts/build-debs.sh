#!/bin/bash
# Build the Debian packages of this source tree (debian/) into build/debs/:
#   scripts/build-debs.sh
# The tracked files as they are in the working tree, plus new files git does
# not ignore, are copied to build/debs/src/xenmpi-<version>/ (nothing of
# build/, nothing generated), built there with dpkg-buildpackage -b, and the
# .deb, .buildinfo and .changes files moved to build/debs/.  lintian must
# report no error and no warning.  Run as root, it installs the build tools
# and build dependencies that are missing (apt-get); otherwise it names them.
# Then, if scripts/build-ucx-debs.sh is there and executable, it builds the
# UCX packages with the transport into build/debs/ too (XM_UCX_DEBS=0: not).
set -euo pipefail

die() { echo "build-debs: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/build/debs
[ -f debian/control ] && [ -f debian/changelog ] ||
    die "no debian/control or debian/changelog in $ROOT: run it from a xenmpi source tree"
command -v git >/dev/null || die "git not found (the files to package are git's): apt-get install git"
if ! err=$(git rev-parse --is-inside-work-tree 2>&1 >/dev/null); then
    die "git cannot read $ROOT as a work tree (the files to package are git's): ${err%%$'\n'*}"
fi

# Missing Debian packages: installed when root, named otherwise.
need_pkgs() {  # package...
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] ||
        die "missing Debian packages: ${missing[*]}; run this as root or apt-get install --no-install-recommends ${missing[*]}"
    echo "build-debs: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" || {
        apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } ||
        die "apt-get could not install ${missing[*]}: check the apt sources (apt-get update)"
}
need_pkgs dpkg-dev debhelper dh-autoreconf dh-dkms dkms lintian fakeroot build-essential

VERSION=$(dpkg-parsechangelog -S Version)
SOURCE=$(dpkg-parsechangelog -S Source)
AC_VERSION=$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' configure.ac)
[ "$VERSION" = "$AC_VERSION" ] ||
    die "debian/changelog says $SOURCE $VERSION, configure.ac's AC_INIT says $AC_VERSION: add a debian/changelog entry for $AC_VERSION (dch -v $AC_VERSION)"
ARCH=$(dpkg --print-architecture)
PKGS=$(sed -n 's/^Package: *//p' debian/control)

# A fresh copy of the sources.
WORK=$OUT/src
SRC=$WORK/$SOURCE-$VERSION
rm -rf "$WORK"
mkdir -p "$SRC"
untracked=$(git ls-files --others --exclude-standard -- . ':!build' ':!build/**')
[ -z "$untracked" ] || echo "build-debs: new files not yet in git, packaged too: $(echo "$untracked" | tr "\n" " ")"
git ls-files -z --cached --others --exclude-standard -- . ':!build' ':!build/**' |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$SRC"
[ -x "$SRC/debian/rules" ] || die "debian/rules is not in the copy or not executable (chmod +x debian/rules)"

# Build dependencies (debian/control's Build-Depends).
if ! deps=$(cd "$SRC" && dpkg-checkbuilddeps 2>&1); then
    [ "$(id -u)" = 0 ] ||
        die "unmet build dependencies: ${deps#*: }; run this as root or apt-get build-dep $SRC"
    echo "build-debs: installing the build dependencies: ${deps#*: }"
    export DEBIAN_FRONTEND=noninteractive
    apt-get build-dep -y -q --no-install-recommends "$SRC" ||
        die "apt-get build-dep could not install ${deps#*: }: check the apt sources (apt-get update)"
fi

# Outputs of an earlier build (these packages, their debug symbols, the UCX
# packages): `apt install ./build/debs/*.deb` must find only this build's.
rm -f "$OUT"/*.deb "$OUT"/*.buildinfo "$OUT"/*.changes

echo "build-debs: dpkg-buildpackage -b in $SRC (log: $OUT/build.log)"
start=$(date +%s)
if ! (cd "$SRC" && dpkg-buildpackage -b -us -uc -Jauto) >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log" >&2
    die "dpkg-buildpackage failed after $(( $(date +%s) - start )) s: see $OUT/build.log"
fi
echo "build-debs: built in $(( $(date +%s) - start )) s"
shopt -s nullglob
built=("$WORK"/*.deb "$WORK"/*.buildinfo "$WORK"/*.changes)
[ ${#built[@]} -gt 0 ] || die "dpkg-buildpackage left no .deb in $WORK: see $OUT/build.log"
mv "${built[@]}" "$OUT/"
CHANGES=$OUT/${SOURCE}_${VERSION}_${ARCH}.changes
[ -f "$CHANGES" ] || die "no $CHANGES after the build: see $OUT/build.log"

echo "build-debs: lintian $CHANGES"
if ! lintian --fail-on error,warning "$CHANGES"; then
    die "lintian reports errors or warnings (above): fix debian/, or, for a tag that is truly a false positive, override it in debian/<package>.lintian-overrides with the reason"
fi

# ---- hook: the UCX packages with the transport (scripts/build-ucx-debs.sh) ----
# XM_UCX_DEBS=0 skips it (the UCX build takes far longer than this one).
UCX_DEBS=$ROOT/scripts/build-ucx-debs.sh
if [ "${XM_UCX_DEBS:-1}" = 0 ]; then
    echo "build-debs: XM_UCX_DEBS=0: $UCX_DEBS not run"
elif [ -x "$UCX_DEBS" ]; then
    echo "build-debs: $UCX_DEBS $OUT"
    "$UCX_DEBS" "$OUT" || die "$UCX_DEBS failed: the xenmpi packages are in $OUT, the UCX ones are not"
elif [ -e "$UCX_DEBS" ]; then
    die "$UCX_DEBS is not executable: chmod +x it, or remove it to build the xenmpi packages only"
else
    echo "build-debs: no $UCX_DEBS: the UCX packages with the transport are not built"
fi
# ---- end of hook ----

echo "build-debs: packages in $OUT:"
for d in "$OUT"/*.deb; do
    printf '  %-50s %8s bytes, installed %6s KiB\n' "$(basename "$d")" "$(stat -c %s "$d")" \
        "$(dpkg-deb -f "$d" Installed-Size)"
done
