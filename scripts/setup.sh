#!/bin/bash
# Install what is missing from Debian 12's packages (run as root).
set -euo pipefail
PKGS=(
  build-essential autoconf automake libtool pkg-config
  libxen-dev libhwloc-dev libcmocka-dev libucx-dev ucx-utils dpkg-dev
  clang libclang-rt-14-dev
  mpich libmpich-dev openmpi-bin libopenmpi-dev hpcc gnuplot-nox
  qemu-system-x86 xen-hypervisor-4.17-amd64 xen-utils-4.17 linux-image-amd64
  busybox-static cpio xz-utils bc
  hwloc  # lstopo with PNG output (xenmpi-topo draw); replaces hwloc-nox
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run this as root (apt-get install)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
