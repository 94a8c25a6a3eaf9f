#!/bin/bash
# Configure and build in ./build (an out-of-tree build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] || ./autogen.sh >/dev/null
mkdir -p build
cd build
[ -f Makefile ] && [ Makefile -nt ../Makefile.in ] || ../configure -q
make -j"$(nproc)" -s
