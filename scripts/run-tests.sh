#!/bin/bash
# Setup, build, and the whole test suite (ends with "N passed, N failed").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
[ "${XM_SKIP_MPICH:-0}" = 1 ] || scripts/build-mpich.sh
exec make -C build -s check
