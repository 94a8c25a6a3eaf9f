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
  linux-headers-amd64 dkms  # the kernel module (kernel/, docs/kernel.md)
  strace  # ucx/zcopy-hit-syscalls: the system calls of the zero-copy hit path
  gdb  # test/mpi: the stacks of ranks that hang, in the run's log
  ccache  # scripts/build-mpich.sh: MPICH rebuilds from the compiler cache
  dropbear-bin openssh-client  # the real-Xen MPI jobs: sshd and ssh in the domUs
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

# The kernel module is built for the kernel the real-Xen harness boots (the
# newest /boot/vmlinuz-* with modules, as test/xen/run.sh picks it), which is
# not necessarily the running one.  linux-headers-amd64 follows the archive's
# newest ABI; when the installed linux-image is older, get its own headers,
# or move image and headers to the newest ABI together.
kver=""
for k in $(ls -v /boot/vmlinuz-* 2>/dev/null); do
  v=${k#/boot/vmlinuz-}
  [ -d "/lib/modules/$v" ] && kver=$v
done
if [ -n "$kver" ] && [ ! -d "/lib/modules/$kver/build" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing kernel headers for $kver; run this as root (apt-get install linux-headers-$kver)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "installing: linux-headers-$kver"
  apt-get install -y -q --no-install-recommends "linux-headers-$kver" ||
    apt-get install -y -q --no-install-recommends linux-image-amd64 linux-headers-amd64
fi
