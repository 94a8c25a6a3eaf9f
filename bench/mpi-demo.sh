#!/bin/bash
# The main job: MPI between two simulated VMs over UCX_TLS=xen,self, beside
# UCX's own posix, posix+cma and tcp transports on the same machine.
#   1. MPICH ping-pong sweep (2 ranks, one per VM): latency and bandwidth
#      per size for each transport, every byte checked by the program;
#   2. HPL through Debian's hpcc (Open MPI, 2 ranks in 2 VMs, N=2000) over
#      xen: residual check and Gflops.
#   bench/mpi-demo.sh [build dir]      (default ./build)
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$SRC/build}" && pwd)
LIB=$B/.libs/libuct_xen.so
[ -f "$LIB" ] || { echo "no $LIB: run scripts/build.sh first" >&2; exit 2; }
OUT=$B/mpi-demo
mkdir -p "$OUT"
HOST=demo-$$
trap 'rm -rf /dev/shm/xenmpi-sim-$HOST' EXIT

mpicc.mpich -O2 -o "$OUT/pingpong-mpich" "$SRC/test/mpi/pingpong.c" || exit 1

# run <label> <UCX_TLS>: the table lines "bytes iters latency_us MB/s xen_calls/msg"
run() {
    local label=$1 tls=$2 extra=()
    [ "$label" = xen ] && extra=(-genv LD_PRELOAD "$LIB" -genv XENMPI_SIM_HOST "$HOST")
    # every rank remote for MPICH, so its own shared memory carries nothing
    timeout 300 mpiexec.mpich -genv UCX_TLS "$tls" -genv MPIR_CVAR_NOLOCAL 1 "${extra[@]}" \
        -n 2 "$OUT/pingpong-mpich" >"$OUT/pingpong-$label.txt" 2>&1 ||
        { echo "pingpong over $label failed:" >&2; tail -5 "$OUT/pingpong-$label.txt" >&2; return 1; }
    grep -q '^pingpong: OK' "$OUT/pingpong-$label.txt"
}

echo "MPICH ping-pong between two simulated VMs (every byte checked)..."
ok=1
for t in "xen xen,self" "posix posix,self" "posix+cma posix,cma,self" "tcp tcp,self"; do
    set -- $t
    run "$1" "$2" || ok=0
done
col() {  # label size field(3=lat,4=bw)
    awk -v s="$2" -v f="$3" '$1==s && NF==5 {print $f}' "$OUT/pingpong-$1.txt" | tail -1
}
printf '\n%10s | %-40s | %-40s\n' "" "one-way latency (us)" "bandwidth (MB/s)"
printf '%10s | %9s %9s %9s %9s | %9s %9s %9s %9s\n' bytes xen posix posix+cma tcp xen posix posix+cma tcp
for s in 8 64 512 4096 65536 1048576 4194304; do
    printf '%10s |' "$s"
    for l in xen posix posix+cma tcp; do printf ' %9s' "$(col $l $s 3)"; done
    printf ' |'
    for l in xen posix posix+cma tcp; do printf ' %9s' "$(col $l $s 4)"; done
    printf '\n'
done

echo
echo "HPL (Debian hpcc, Open MPI, 2 ranks in 2 simulated VMs, N=2000 NB=96 1x2) over xen..."
dir=$OUT/hpcc
rm -rf "$dir"; mkdir -p "$dir"
sed -e 's/@N@/2000/' -e 's/@NB@/96/' -e 's/@P@/1/' -e 's/@Q@/2/' \
    "$SRC/test/mpi/hpccinf.txt.in" >"$dir/hpccinf.txt"
X=(-x LD_PRELOAD="$LIB" -x UCX_TLS=xen,self -x XENMPI_SIM_HOST="$HOST")
if (cd "$dir" && timeout 600 mpirun.openmpi --allow-run-as-root --oversubscribe \
        --mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any --mca osc ucx \
        --mca btl self -np 1 "${X[@]}" hpcc : -np 1 "${X[@]}" hpcc >"$dir/run.log" 2>&1); then
    grep -E '^\|\|Ax-b\|\|_oo/\(eps' "$dir/hpccoutf.txt"
    grep -E '^T/V +N|^WR' "$dir/hpccoutf.txt" | head -2
    grep -q '1 tests completed and passed residual checks' "$dir/hpccoutf.txt" || ok=0
else
    echo "hpcc over xen failed:"; tail -10 "$dir/run.log"; ok=0
fi
[ $ok = 1 ] && echo "main job: OK" || { echo "main job: FAILED"; exit 1; }
