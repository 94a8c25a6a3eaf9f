#!/bin/bash
# Fetch and unpack one Debian source package of a given upstream version
# (Debian's patches applied, as dpkg-source leaves them).  Nothing is built.
#   usage: scripts/fetch-deb-src.sh <package> <upstream-version> <dest-dir> <marker>
# <marker> is a file below <dest-dir> that exists once the source is
# unpacked (e.g. ucx-1.13.1/src/uct/base/uct_iface.h); when it is there
# already nothing is fetched.  apt needs a deb-src entry: the first run adds
# /etc/apt/sources.list.d/xenmpi-src.sources, a deb-src copy of every
# "Types: deb" stanza of debian.sources.
set -euo pipefail

die() { echo "fetch-deb-src: $*" >&2; exit 1; }

[ $# -eq 4 ] || die "usage: $0 <package> <upstream-version> <dest-dir> <marker>"
pkg=$1 upstream=$2 dest=$3 marker=$4
src_list=/etc/apt/sources.list.d/debian.sources
our_list=/etc/apt/sources.list.d/xenmpi-src.sources

mkdir -p "$dest" || die "cannot create $dest"
dest=$(cd "$dest" && pwd)
unpacked=$dest/${marker%%/*}

if [ -f "$dest/$marker" ]; then
    echo "$pkg source: $unpacked (already present)"
    exit 0
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot edit apt sources"
    sudo=sudo
fi

added=0
if [ ! -f "$our_list" ]; then
    [ -f "$src_list" ] || die "$src_list not found: add a deb-src entry for bookworm by hand"
    # Every "Types: deb" stanza again as "Types: deb-src"; other stanzas dropped.
    tmp=$(mktemp)
    awk 'BEGIN { RS = ""; ORS = "\n\n" }
         /(^|\n)Types:[ \t]*deb[ \t]*(\n|$)/ {
             sub(/(^|\n)Types:[ \t]*deb[ \t]*(\n|$)/, "\nTypes: deb-src\n");
             sub(/^\n/, ""); print }' "$src_list" > "$tmp"
    grep -q '^Types: deb-src' "$tmp" || { rm -f "$tmp"; die "no 'Types: deb' entry in $src_list"; }
    $sudo install -m 0644 "$tmp" "$our_list" || { rm -f "$tmp"; die "cannot write $our_list"; }
    rm -f "$tmp"
    added=1
    echo "fetch-deb-src: added $our_list"
fi

if ! command -v dpkg-source >/dev/null; then
    $sudo apt-get update -q || die "apt-get update failed"
    added=0
    $sudo apt-get install -y -q dpkg-dev || die "cannot install dpkg-dev"
fi

if [ "$added" -eq 1 ]; then
    $sudo apt-get update -q || die "apt-get update failed (check $our_list)"
fi

# apt-get source takes no version wildcard: pick the exact Debian revision
# of that upstream version.
re=$(printf '%s' "$upstream" | sed 's/[.]/\\./g')
version=$(apt-cache showsrc "$pkg" 2>/dev/null |
          awk -v re="^$re([-+~]|\$)" '/^Version: / && $2 ~ re { print $2; exit }')
[ -n "$version" ] || die "no source package $pkg $upstream* known to apt (is $our_list right?)"
cd "$dest"
apt-get source -q "$pkg=$version" || die "apt-get source $pkg=$version failed"
[ -f "$dest/$marker" ] || die "source unpacked but $dest/$marker is missing"
echo "$pkg source: $unpacked"
