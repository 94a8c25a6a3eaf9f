# Sourced by test/xen/run.sh when a listed test is an MPI job (mpi-*): what
# a Xen host and its domUs need for MPI jobs across the domUs, set up the way
# a site sets up a real host.
#
# dom0: a bridge (xenbr0) with netback and Xen's own vif-bridge hotplug
#       script (from xen-utils, run by bash), so every domU gets a vif;
# domU: netfront (eth0 on xenbr0), Debian's MPICH, Open MPI, UCX and hpcc
#       with every library they load, dropbear (sshd) and the OpenSSH
#       client with one key pair that every domU accepts, /etc/hosts naming
#       the domUs, xenmpi-run (the transport preloaded; with XENTEST_DEBS
#       UCX, its xen module, libxenmpi and xenmpi-run from the packages
#       instead, nothing preloaded), the project's MPI
#       programs built with mpicc.mpich and mpicc.openmpi, and mpi-job;
#       with an MPICH built with the netmod in the build (build/mpich), its
#       launcher, libraries and the programs built with its mpicc.
#
# Network: dom0 10.0.0.1 on xenbr0, xm-a 10.0.0.11, xm-b 10.0.0.12 (init).

MPI_PKGS="mpich libmpich12 openmpi-bin libopenmpi3 openmpi-common libpmix2 libucx0 hpcc
          dropbear-bin openssh-client"
MPI_PROGS="pingpong collectives onesided regcache"

# kmod_copy <root> <module>...: the modules, uncompressed, in /lib/modules/$KVER/net
kmod_copy() {
    local root=$1 m
    shift
    mkdir -p "$root/lib/modules/$KVER/net"
    for m in "$@"; do
        kmod_put "$m" "$root/lib/modules/$KVER/net" || return 1
    done
    # load order for init: dependencies first
    printf '%s\n' "$@" >"$root/lib/modules/$KVER/net/order"
}

# pkg_copy <root> <package>...: the packages' files (no docs) and, for every
# ELF file among them, every library ldd finds, at the paths the loader uses
pkg_copy() {
    local root=$1 p f
    shift
    local list=$W/pkg-files
    : >"$list"
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            { echo "package $p is not installed (scripts/setup.sh installs it)" >&2; return 1; }
        dpkg -L "$p" | grep -vE '^/usr/share/(doc|man|info|locale|lintian|bug)(/|$)' >>"$list"
    done
    while read -r f; do
        if [ -L "$f" ] || [ -f "$f" ]; then
            cp -a --parents "$f" "$root" 2>/dev/null || cp -L "$f" "$root$f" || return 1
        fi
    done <"$list"
    # Debian's alternatives: the plain MPI names are not part of the closure
    ldd_closure "$root" <"$list"
}

# ldd_closure <root> [<tree>]: for each ELF file (not a link) named on stdin,
# every library ldd finds (<tree>/usr/lib/x86_64-linux-gnu searched first),
# copied into <root> at the path the loader uses, unless it is there already
# or lies inside <tree>
ldd_closure() {
    local root=$1 tree=${2:-} f
    while read -r f; do
        [ -f "$f" ] && [ ! -L "$f" ] && [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] || continue
        LD_LIBRARY_PATH="${tree:+$tree/usr/lib/x86_64-linux-gnu}" ldd "$f" 2>/dev/null
    done | grep -o '=> /[^ ]*\|^[[:space:]]*/[^ ]*' | grep -o '/[^ ]*' | sort -u |
    while read -r f; do
        [ -n "$tree" ] && case $f in "$tree"/*) continue ;; esac
        [ -e "$root$f" ] && continue
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f" || exit 1
    done
}

# mpi_progs <dir>: the project's MPI programs, <prog>-mpich and <prog>-openmpi
mpi_progs() {
    local dir=$1 m p
    rm -rf "$dir"
    mkdir -p "$dir"
    for m in mpich openmpi; do
        for p in $MPI_PROGS; do
            mpicc.$m -O2 -Wall -Wextra -o "$dir/$p-$m" "$HERE/../mpi/$p.c" ||
                { echo "mpicc.$m $p.c failed" >&2; return 1; }
        done
    done
}

# The MPICH built with the ch4 netmod xen (scripts/build-mpich.sh), when the
# build has one: its launcher, libraries and the MPI programs built with its
# mpicc (<prog>-netmod), at the prefix's own path (hydra starts its proxy
# from there in every domU; the programs' runpath names it).
netmod_prefix() { [ -x "$BUILD/mpich/bin/mpiexec" ] && readlink -f "$BUILD/mpich"; }

# mpi_netmod <root> <dir>
mpi_netmod() {
    local root=$1 dir=$2 pre p f
    pre=$(netmod_prefix) || return 0
    mkdir -p "$root$pre/bin" "$root$pre/lib"
    for f in mpiexec mpiexec.hydra hydra_pmi_proxy; do
        cp -a "$pre/bin/$f" "$root$pre/bin/" || return 1
    done
    cp -a "$pre"/lib/*.so* "$root$pre/lib/" || return 1
    for p in $MPI_PROGS; do
        "$pre/bin/mpicc" -O2 -Wall -Wextra -o "$dir/$p-netmod" "$HERE/../mpi/$p.c" ||
            { echo "$pre/bin/mpicc $p.c failed" >&2; return 1; }
    done
    copy_with_libs "$root" "$pre/bin/mpiexec.hydra" "$pre/bin/hydra_pmi_proxy" \
        "$dir/pingpong-netmod" || return 1
    echo "$pre" >"$root/test/netmod-prefix"
}

# deb_copy <root> <package>...: the files (no docs) of this tree's packages
# in $XENTEST_DEBS, and every library their ELF files need
deb_copy() {
    local root=$1 p f x=$W/debs-x
    shift
    rm -rf "$x"
    mkdir -p "$x"
    for p in "$@"; do
        f=$(ls "$XENTEST_DEBS/${p}"_*.deb 2>/dev/null | tail -1)
        [ -n "$f" ] || { echo "no $p package in $XENTEST_DEBS (scripts/build-debs.sh)" >&2; return 1; }
        dpkg-deb -x "$f" "$x" || return 1
    done
    rm -rf "$x/usr/share/doc" "$x/usr/share/man" "$x/usr/share/lintian"
    cp -a --remove-destination "$x/." "$root/" || return 1
    find "$x" -type f | ldd_closure "$root" "$x" || return 1
    rm -rf "$x"
}

# mpi_domu <root>: everything a domU needs for the MPI jobs
mpi_domu() {
    local root=$1 f
    kmod_copy "$root" xen-netfront || return 1
    if [ -n "${XENTEST_DEBS:-}" ]; then
        # UCX, the transport (UCX's module), libxenmpi and xenmpi-run from
        # the packages; nothing of the build tree's transport
        pkg_copy "$root" $(echo " $MPI_PKGS " | sed 's/ libucx0 / /') || return 1
        deb_copy "$root" libucx0 ucx-utils libucx0-xen libxenmpi0 xenmpi-tools || return 1
    else
        pkg_copy "$root" $MPI_PKGS || return 1
    fi
    mpi_progs "$W/mpi" || return 1
    mpi_netmod "$root" "$W/mpi" || return 1
    cp "$W"/mpi/* "$root/test/"
    cp "$HERE/../mpi/ep-cfg.sh" "$HERE/../zc-stats.sh" "$HERE/../mpi/netmod-stats.sh" \
        "$HERE/../mpi/hpccinf.txt.in" \
        "$root/test/" || return 1
    # the transport and its libraries from the build, and xenmpi-run to
    # preload it from where the image keeps them (the packages: UCX loads
    # its module, and the packages' xenmpi-run preloads nothing)
    if [ -z "${XENTEST_DEBS:-}" ]; then
        f=$(find "$BUILD" -maxdepth 3 \( -path "$BUILD/san-*" -o -path "$BUILD/debs" \) -prune -o \
                 -path '*/.libs/libuct_xen.so' -print | head -1)
        [ -n "$f" ] || { echo "no libuct_xen.so under $BUILD (make)" >&2; return 1; }
        cp -L "$f" "$root/lib/x86_64-linux-gnu/" && copy_with_libs "$root" "$f" || return 1
        sed 's|@libdir@|/lib/x86_64-linux-gnu|' "$HERE/../../scripts/xenmpi-run.in" >"$root/usr/bin/xenmpi-run"
        chmod +x "$root/usr/bin/xenmpi-run"
    fi
    # accounts, names, ssh: one key pair, accepted by every domU
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
    printf 'root:x:0:\n' >"$root/etc/group"
    printf '/bin/sh\n' >"$root/etc/shells"
    printf '127.0.0.1 localhost\n10.0.0.1 dom0\n10.0.0.11 xm-a\n10.0.0.12 xm-b\n' >"$root/etc/hosts"
    chmod 700 "$root/root"
    mkdir -p -m 700 "$root/root/.ssh" "$root/etc/dropbear"
    f=$W/ssh-key
    if [ ! -f "$f" ]; then
        ssh-keygen -q -t ed25519 -N '' -C xentest -f "$f" || return 1
        dropbearkey -t ed25519 -f "$W/dropbear-host-key" >/dev/null || return 1
    fi
    cp "$f" "$root/root/.ssh/id_ed25519"
    cp "$f.pub" "$root/root/.ssh/authorized_keys"
    cp "$W/dropbear-host-key" "$root/etc/dropbear/dropbear_ed25519_host_key"
    cat >"$root/root/.ssh/config" <<'EOF'
Host *
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    # a VM that is destroyed answers nothing, not even a reset: without
    # keepalives the launcher's ssh to it (and so mpiexec) waits for TCP's
    # retransmission timeout, many minutes
    ServerAliveInterval 2
    ServerAliveCountMax 3
EOF
    chmod 600 "$root/root/.ssh/"*
}

# net_dom0 <root>: bridge, netback and Xen's hotplug scripts for dom0
net_dom0() {
    local root=$1
    kmod_copy "$root" llc stp bridge xen-netback || return 1
    mkdir -p "$root/etc/xen/scripts"
    cp -a /etc/xen/scripts/. "$root/etc/xen/scripts/" || return 1
    rm -f "$root/bin/bash"
    cp -L /bin/bash "$root/bin/bash" && copy_with_libs "$root" /bin/bash
}
