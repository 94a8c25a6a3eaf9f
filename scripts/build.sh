#!/bin/bash
# Configure and build in ./build (an out-of-tree build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] || ./autogen.sh >/dev/null
mkdir -p build
scripts/fetch-ucx-src.sh build/ucx-src
cd build
[ -f Makefile ] && [ Makefile -nt ../Makefile.in ] || ../configure -q --with-ucx-src="$PWD/ucx-src/ucx-1.13.1"
make -j"$(nproc)" -s
