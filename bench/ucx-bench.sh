#!/bin/bash
# UCX transports side by side in one run: ucx_perftest pairs over xen (two sim
# VMs), posix, sysv, cma and tcp (loopback).  Prints medians of the
# repetitions, the ratios the project targets, and draws a PNG.
#   bench/ucx-bench.sh [reps] [out dir]     (default 3, build/bench-out)
# Not a test: machines are noisy; read ratios from one run, not absolutes.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
REPS=${1:-3}
OUT=${2:-$SRC/build/bench-out}
LIB=${XM_UCT_LIB:-$SRC/build/.libs/libuct_xen.so}
[ -f "$LIB" ] || { echo "no $LIB: run scripts/build.sh first" >&2; exit 2; }
mkdir -p "$OUT"
RAW=$OUT/raw.txt
: >"$RAW"
PORT=$((30000 + $$ % 20000))

# one client/server pair; prints the client's Final line
pair() {  # env-string perftest-args...
    local envs=$1; shift
    local host=bench-$$-$PORT
    PORT=$((PORT + 1))
    env LD_PRELOAD="$LIB" XENMPI_SIM_HOST="$host" $envs \
        timeout 120 ucx_perftest -p $PORT "$@" >/dev/null 2>&1 &
    local spid=$!
    for _ in $(seq 50); do ss -ltn 2>/dev/null | grep -q ":$PORT\b" && break; sleep 0.1; done
    env LD_PRELOAD="$LIB" XENMPI_SIM_HOST="$host" $envs \
        timeout 120 ucx_perftest 127.0.0.1 -p $PORT "$@" 2>/dev/null | grep '^Final:' | tr -s ' '
    wait $spid 2>/dev/null
    rm -rf "/dev/shm/xenmpi-sim-$host"
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# measure <label> <metric lat|bw> <size> <env> <perftest args...>
measure() {
    local label=$1 metric=$2 size=$3 envs=$4; shift 4
    local vals=() r line v
    for r in $(seq "$REPS"); do
        line=$(pair "$envs" "$@" -s "$size")
        # Final: iters p50-lat avg-lat overall-lat avg-bw overall-bw ...
        if [ "$metric" = lat ]; then v=$(echo "$line" | awk '{print $3}')
        else v=$(echo "$line" | awk '{print $7}'); fi
        [ -n "$v" ] && vals+=("$v")
    done
    v=$(printf '%s\n' "${vals[@]}" | median)
    echo "$label $metric $size $v" >>"$RAW"
    printf '  %-28s %-4s %9s B  %10s %s\n' "$label" "$metric" "$size" "$v" "$([ "$metric" = lat ] && echo us || echo MB/s)"
}

get() { awk -v l="$1" -v m="$2" -v s="$3" '$1==l && $2==m && $3==s {print $4}' "$RAW"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0>0 && b+0>0) printf "%.2f", a/b; else print "n/a" }'; }

N_LAT=20000
N_BW=2000
echo "== UCT am_lat (short)"
measure uct-am-xen lat 8 "" -t am_lat -D short -d xen0 -x xen -n $N_LAT
measure uct-am-posix lat 8 "" -t am_lat -D short -d memory -x posix -n $N_LAT
measure uct-am-tcp lat 8 "" -t am_lat -D short -d lo -x tcp -n $N_LAT

echo "== UCP tag_lat and tag_bw"
for s in 8 64 512 4096; do
    measure xen lat $s "UCX_TLS=xen,self" -t tag_lat -n $N_LAT
    measure posix lat $s "UCX_TLS=posix,self" -t tag_lat -n $N_LAT
    measure posix+cma lat $s "UCX_TLS=posix,cma,self" -t tag_lat -n $N_LAT
    measure tcp lat $s "UCX_TLS=tcp,self" -t tag_lat -n $N_LAT
done
for s in 4096 65536 1048576 4194304; do
    # at least 1 GiB per run: 2000 x 4 KiB lasts half a millisecond, and one
    # scheduling hiccup of the two processes then decides the result
    n=$(( (1 << 30) / s )); [ $n -lt $N_BW ] && n=$N_BW
    measure xen bw $s "UCX_TLS=xen,self" -t tag_bw -n $n
    measure posix bw $s "UCX_TLS=posix,self" -t tag_bw -n $n
    measure sysv bw $s "UCX_TLS=sysv,self" -t tag_bw -n $n
    measure posix+cma bw $s "UCX_TLS=posix,cma,self" -t tag_bw -n $n
    measure tcp bw $s "UCX_TLS=tcp,self" -t tag_bw -n $n
done

echo
echo "== targets (ratios from this run)"
printf '  UCT am_lat 8 B   xen/posix      %s  (target <= 1.2)\n' "$(ratio "$(get uct-am-xen lat 8)" "$(get uct-am-posix lat 8)")"
printf '  UCP tag_lat 8 B  xen/posix      %s  (target <= 1.2)\n' "$(ratio "$(get xen lat 8)" "$(get posix lat 8)")"
printf '  UCP tag_lat 8 B  xen/posix+cma  %s  (target <= 1.2)\n' "$(ratio "$(get xen lat 8)" "$(get posix+cma lat 8)")"
printf '  UCP tag_bw 1 MiB xen/sysv       %s  (target >= 1.0)\n' "$(ratio "$(get xen bw 1048576)" "$(get sysv bw 1048576)")"
printf '  UCP tag_bw 1 MiB xen/tcp        %s  (target >= 2.0)\n' "$(ratio "$(get xen bw 1048576)" "$(get tcp bw 1048576)")"
printf '  UCP tag_bw 1 MiB xen/posix+cma  %s\n' "$(ratio "$(get xen bw 1048576)" "$(get posix+cma bw 1048576)")"

if command -v gnuplot >/dev/null; then
    for l in xen posix posix+cma sysv tcp; do
        awk -v l="$l" '$1==l && $2=="lat" {print $3, $4}' "$RAW" >"$OUT/lat-$l.dat"
        awk -v l="$l" '$1==l && $2=="bw" {print $3, $4}' "$RAW" >"$OUT/bw-$l.dat"
    done
    gnuplot <<EOF
set terminal png size 1200,500 noenhanced
set output "$OUT/ucx-bench.png"
set multiplot layout 1,2
set logscale x 2
set format x "%.0s%cB"
set xlabel "message size (bytes)"
set grid
set key left top
set title "UCP tag_lat (median, us)"
set ylabel "latency (us)"
set logscale y
plot for [l in "xen posix posix+cma tcp"] "$OUT/lat-".l.".dat" using 1:2 with linespoints title l
set title "UCP tag_bw (median, MB/s)"
set ylabel "bandwidth (MB/s)"
unset logscale y
plot for [l in "xen posix sysv posix+cma tcp"] "$OUT/bw-".l.".dat" using 1:2 with linespoints title l
unset multiplot
EOF
    echo "plot: $OUT/ucx-bench.png"
fi
echo "raw medians: $RAW"
