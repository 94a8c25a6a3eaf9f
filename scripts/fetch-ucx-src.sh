#!/bin/bash
# Fetch the Debian source of UCX 1.13.1 (headers the xen transport builds
# against; libucx-dev ships only the public ones).  Nothing is built.
#   usage: scripts/fetch-ucx-src.sh <dest-dir>
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <dest-dir>" >&2; exit 1; }
exec "$(dirname "$0")/fetch-deb-src.sh" ucx 1.13.1 "$1" ucx-1.13.1/src/uct/base/uct_iface.h
