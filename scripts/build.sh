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
# The kernel module (kernel/): for the kernel the real-Xen harness boots.
# Not fatal: the main job does not use it, and the test suite reports a
# module that does not build as a failed test of its own.
make -s kmod >kmod-build.log 2>&1 ||
  { echo "warning: the kernel module did not build (see build/kmod-build.log);" \
         "scripts/setup.sh installs the kernel headers it needs" >&2; tail -5 kmod-build.log >&2; }
