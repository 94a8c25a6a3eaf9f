#!/bin/bash
# Fetch the Debian source of UCX 1.13.1 (headers the xen transport builds
# against; libucx-dev ships only the public ones).  Nothing is built.
#   usage: scripts/fetch-ucx-src.sh <dest-dir>
set -euo pipefail

die() { echo "fetch-ucx-src: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 <dest-dir>"
dest=$1
src_list=/etc/apt/sources.list.d/debian.sources
our_list=/etc/apt/sources.list.d/xenmpi-src.sources
marker=ucx-1.13.1/src/uct/base/uct_iface.h

mkdir -p "$dest" || die "cannot create $dest"
dest=$(cd "$dest" && pwd)

if [ -f "$dest/$marker" ]; then
    echo "UCX source: $dest/ucx-1.13.1 (already present)"
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
    echo "fetch-ucx-src: added $our_list"
fi

if ! command -v dpkg-source >/dev/null; then
    $sudo apt-get update -q || die "apt-get update failed"
    added=0
    $sudo apt-get install -y -q dpkg-dev || die "cannot install dpkg-dev"
fi

if [ "$added" -eq 1 ]; then
    $sudo apt-get update -q || die "apt-get update failed (check $our_list)"
fi

# apt-get source takes no version wildcard: pick the exact 1.13.1 revision.
version=$(apt-cache showsrc ucx 2>/dev/null | awk '/^Version: 1\.13\.1([-+~]|$)/ { print $2; exit }')
[ -n "$version" ] || die "no source package ucx 1.13.1* known to apt (is $our_list right?)"
cd "$dest"
apt-get source -q "ucx=$version" || die "apt-get source ucx=$version failed"
[ -f "$dest/$marker" ] || die "source unpacked but $dest/$marker is missing"
echo "UCX source: $dest/ucx-1.13.1"
