#!/bin/bash
# Soak: messages between two sim domains, two threads a side, each one
# checked (test/multi/soak.c).  Usage: scripts/soak.sh [messages] [threads]
# (default 10^8 messages, 2 threads); the test suite runs 10^6.  Needs the
# build tree of scripts/build.sh (XM_BUILD_DIR, default ./build).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${XM_BUILD_DIR:-build}
make -C "$B" -s test/multi/soak
exec "$B/test/multi/soak" sim "${1:-100000000}" "${2:-2}"
