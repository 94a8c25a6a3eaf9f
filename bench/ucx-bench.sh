#!/bin/bash
# UCX transports side by side in one run: ucx_perftest pairs over xen (two sim
# VMs), posix, sysv, cma and tcp (loopback).  Prints medians of the
# repetitions, the ratios the project targets, the zero-copy cache hit rate
# of the xen bandwidth runs (XENMPI_ZC_STATS), and draws a PNG.
#   bench/ucx-bench.sh [reps] [out dir]     (default 3, build/bench-out)
# Not a test: machines are noisy; read ratios from one run, not absolutes.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/bench/plot.sh"   # plot_preamble
REPS=${1:-3}
OUT=${2:-$SRC/build/bench-out}
LIB=${XM_UCT_LIB:-$SRC/build/.libs/libuct_xen.so}
[ -f "$LIB" ] || { echo "no $LIB: run scripts/build.sh first" >&2; exit 2; }
mkdir -p "$OUT"
RAW=$OUT/raw.txt
: >"$RAW"
ZC=$OUT/zc.txt      # per xen run: label size hits misses zc_bytes fallback_bytes ring_bytes
: >"$ZC"
ERR=$OUT/pair.err   # stderr of the last pair (both processes)
PORT=$((30000 + $$ % 20000))

# one client/server pair; prints the client's Final line; both processes'
# stderr (with XENMPI_ZC_STATS=1 the xen transport's zero-copy counters) in $ERR
pair() {  # env-string perftest-args...
    local envs=$1; shift
    local host=bench-$$-$PORT
    PORT=$((PORT + 1))
    env LD_PRELOAD="$LIB" XENMPI_SIM_HOST="$host" XENMPI_ZC_STATS=1 $envs \
        timeout 120 ucx_perftest -p $PORT "$@" >/dev/null 2>"$ERR.srv" &
    local spid=$!
    for _ in $(seq 50); do ss -ltn 2>/dev/null | grep -q ":$PORT\b" && break; sleep 0.1; done
    env LD_PRELOAD="$LIB" XENMPI_SIM_HOST="$host" XENMPI_ZC_STATS=1 $envs \
        timeout 120 ucx_perftest 127.0.0.1 -p $PORT "$@" 2>"$ERR.cli" | grep '^Final:' | tr -s ' '
    wait $spid 2>/dev/null
    cat "$ERR.srv" "$ERR.cli" >"$ERR" 2>/dev/null; rm -f "$ERR.srv" "$ERR.cli"
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
        # xenmpi-zc: pid=P hits=H misses=M ... fallback_bytes=F zc_bytes=Z
        case $label in xen|xen-zc) ;; *) false ;; esac && [ "$metric" = bw ] && awk -v l="$label" -v s="$size" '
            match($0, /xenmpi-zc: pid=.*/) {
                nf = split(substr($0, RSTART), w, " ")
                for (i = 2; i <= nf; i++) { split(w[i], kv, "="); v[kv[1]] += kv[2] }; n++
            }
            END { if (n) printf "%s %s %.0f %.0f %.0f %.0f %.0f\n", l, s, v["hits"], v["misses"], v["zc_bytes"], v["fallback_bytes"], v["ring_bytes"] }' \
            "$ERR" >>"$ZC"
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
# zero-copy territory beyond 4 MiB: xen against posix+cma (1 GiB a run)
for s in 16777216; do
    n=$(( (1 << 30) / s ))
    measure xen bw $s "UCX_TLS=xen,self" -t tag_bw -n $n
    measure posix+cma bw $s "UCX_TLS=posix,cma,self" -t tag_bw -n $n
done
# xen without zero-copy (eager through the rings), and with grant copy for
# every rendezvous (UCX_XEN_ZCOPY=y; by default each channel measures grant
# copy against the ring and takes the faster)
for s in 65536 1048576 4194304 16777216; do
    n=$(( (1 << 30) / s ))
    measure xen-ring bw $s "UCX_TLS=xen,self UCX_XEN_ZCOPY=n" -t tag_bw -n $n
    measure xen-zc bw $s "UCX_TLS=xen,self UCX_XEN_ZCOPY=y" -t tag_bw -n $n
done

echo
echo "== targets (ratios from this run)"
printf '  UCT am_lat 8 B   xen/posix      %s  (target <= 1.2)\n' "$(ratio "$(get uct-am-xen lat 8)" "$(get uct-am-posix lat 8)")"
printf '  UCP tag_lat 8 B  xen/posix      %s  (target <= 1.2)\n' "$(ratio "$(get xen lat 8)" "$(get posix lat 8)")"
printf '  UCP tag_lat 8 B  xen/posix+cma  %s  (target <= 1.2)\n' "$(ratio "$(get xen lat 8)" "$(get posix+cma lat 8)")"
printf '  UCP tag_bw 1 MiB xen/sysv       %s  (target >= 1.0)\n' "$(ratio "$(get xen bw 1048576)" "$(get sysv bw 1048576)")"
printf '  UCP tag_bw 1 MiB xen/tcp        %s  (target >= 2.0)\n' "$(ratio "$(get xen bw 1048576)" "$(get tcp bw 1048576)")"
printf '  UCP tag_bw 64 KiB xen/posix+cma %s  (target >= 0.9)\n' "$(ratio "$(get xen bw 65536)" "$(get posix+cma bw 65536)")"
printf '  UCP tag_bw 1 MiB xen/posix+cma  %s  (target >= 1.0)\n' "$(ratio "$(get xen bw 1048576)" "$(get posix+cma bw 1048576)")"
printf '  UCP tag_bw 16 MiB xen/posix+cma %s  (target >= 1.0)\n' "$(ratio "$(get xen bw 16777216)" "$(get posix+cma bw 16777216)")"
for s in 65536 1048576 4194304 16777216; do
    printf '  UCP tag_bw %8s B xen, grant copy always/posix+cma  %s\n' "$s" \
        "$(ratio "$(get xen-zc bw $s)" "$(get posix+cma bw $s)")"
    printf '  UCP tag_bw %8s B xen, grant copy always/rings only  %s\n' "$s" \
        "$(ratio "$(get xen-zc bw $s)" "$(get xen-ring bw $s)")"
done

echo
echo "== zero-copy cache of the xen tag_bw runs (XENMPI_ZC_STATS, all repetitions)"
for l in xen xen-zc; do
for s in 65536 1048576 16777216; do
    awk -v s="$s" -v l="$l" '$1 == l && $2 == s { h += $3; m += $4; z += $5; f += $6; r += $7; n++ }
        END {
            if (!n) { printf "  %-7s tag_bw %9s B  no xenmpi-zc statistics line\n", l, s; exit }
            rate = (h + m > 0) ? sprintf("%.3f", h / (h + m)) : "n/a"
            printf "  %-7s tag_bw %9s B  hit rate %-6s (hits %.0f, misses %.0f; %.0f MiB by grant copy, %.0f MiB through the ring as measured faster, %.0f MiB as fallback)\n",
                   l, s, rate, h, m, z / 1048576, r / 1048576, f / 1048576
        }' "$ZC"
done
done

if command -v gnuplot >/dev/null; then
    for l in xen posix posix+cma sysv tcp; do
        awk -v l="$l" '$1==l && $2=="lat" {print $3, $4}' "$RAW" >"$OUT/lat-$l.dat"
        awk -v l="$l" '$1==l && $2=="bw" {print $3, $4}' "$RAW" >"$OUT/bw-$l.dat"
    done
    { plot_preamble "$OUT/ucx-bench.png"; cat <<EOF
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
    } | gnuplot
    echo "plot: $OUT/ucx-bench.png"
fi
echo "raw medians: $RAW"
