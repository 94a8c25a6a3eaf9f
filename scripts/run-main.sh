#!/bin/bash
# Setup, build, and the main job: MPI between two simulated VMs over
# UCX_TLS=xen,self (MPICH ping-pong sweep beside UCX's posix, posix+cma and
# tcp; HPL through hpcc), then the core channel beside a pipe and memcpy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
bench/mpi-demo.sh build
echo
build/bench/chan_bench "${1:-5}"
