#!/bin/bash
# Setup, build, and the main job: two simulated VMs exchanging messages over
# the channel; prints latency and bandwidth beside a pipe and memcpy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/bench/chan_bench "${1:-5}"
