#!/bin/bash
# Debian's MPICH over the xen transport beside UCX's own transports, in one
# run, with the project's own programs: ping-pong 8 B..64 MiB
# (test/mpi/pingpong.c, every byte checked), windowed and bidirectional
# streaming with 64 messages in flight, ping-pong 64 KiB..16 MiB with a
# fresh malloc per message beside the same loop over reused buffers
# (bench/mpi_fresh.c), the 8-byte message rate, and an
# 8-byte MPI_Allreduce over 2 and 4 ranks (bench/mpi_stream.c; with more
# polling ranks than cores, as 4 ranks on 2 cores, it measures the
# scheduler more than the transport: milliseconds per call).  Ranks are
# split into two simulated VMs (MPIR_CVAR_NUM_CLIQUES=2, by block): with 4
# ranks, the two of one VM use MPICH's shared memory and only the pairs
# across VMs use UCX.
#   bench/mpi-bench.sh [build dir [reps]]     (default ./build, 5)
# Configurations: xen (the default: UCX_XEN_ZCOPY=auto), xen-ring (no
# zero-copy: UCX_XEN_ZCOPY=n), xen-grant (grant copy for every rendezvous:
# UCX_XEN_ZCOPY=y), posix+cma and tcp, interleaved run by run.  Prints the
# medians, then the targets with pass/fail: ratios of xen to posix+cma, the
# median and the worst run (a ratio that must hold in every run uses the
# worst), and draws a PNG when gnuplot is there.  Not a test: run it on an
# otherwise idle machine.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/bench/plot.sh"   # plot_preamble
B=$(cd "${1:-$SRC/build}" && pwd)
REPS=${2:-5}
LIB=$B/.libs/libuct_xen.so
[ -f "$LIB" ] || { echo "no $LIB: run scripts/build.sh first" >&2; exit 2; }
OUT=$B/mpi-bench
mkdir -p "$OUT"
RAW=$OUT/raw.txt      # config rep metric size value
: >"$RAW"
HOST=mpibench-$$
trap 'rm -rf /dev/shm/xenmpi-sim-$HOST' EXIT
CONFIGS="xen xen-ring xen-grant posix+cma tcp"
MAXPP=${XM_BENCH_MAX:-67108864}

mpicc.mpich -O2 -o "$OUT/pingpong" "$SRC/test/mpi/pingpong.c" || exit 1
mpicc.mpich -O2 -o "$OUT/mpi_stream" "$SRC/bench/mpi_stream.c" || exit 1
mpicc.mpich -O2 -o "$OUT/mpi_fresh" "$SRC/bench/mpi_fresh.c" || exit 1

# run <config> <ranks> <log> prog args...: ranks split over two sim VMs
run() {
    local c=$1 np=$2 log=$3 tls env=()
    shift 3
    case $c in
    xen*)      tls=xen,self
               env=(-genv LD_PRELOAD "$LIB" -genv XENMPI_SIM_HOST "$HOST") ;;
    posix+cma) tls=posix,cma,self ;;
    tcp)       tls=tcp,self ;;
    esac
    case $c in
    xen-ring)  env+=(-genv UCX_XEN_ZCOPY n) ;;
    xen-grant) env+=(-genv UCX_XEN_ZCOPY y) ;;
    esac
    # more polling ranks than cores: give way sooner (each collective step
    # otherwise waits for a scheduler tick)
    [ "$np" -gt "$(nproc)" ] && env+=(-genv MPIR_CVAR_POLLS_BEFORE_YIELD 100)
    timeout 300 mpiexec.mpich -genv UCX_TLS "$tls" -genv MPIR_CVAR_NUM_CLIQUES 2 \
        -genv MPIR_CVAR_CLIQUES_BY_BLOCK 1 "${env[@]}" \
        -n $((np / 2)) -env XENMPI_SIM_DOMID 201 "$@" : \
        -n $((np / 2)) -env XENMPI_SIM_DOMID 202 "$@" >"$log" 2>&1
}

echo "MPICH between two simulated VMs: $REPS runs of each configuration ($CONFIGS)..."
fails=0
for r in $(seq "$REPS"); do
    for c in $CONFIGS; do
        log=$OUT/pp-$c-$r.txt
        if run "$c" 2 "$log" "$OUT/pingpong" 1000 "$MAXPP" && grep -q '^pingpong: OK' "$log"; then
            awk -v c="$c" -v r="$r" 'NF == 5 && $1 ~ /^[0-9]+$/ && $1 > 0 {
                    print c, r, "pp_lat", $1, $3; print c, r, "pp_bw", $1, $4 }' "$log" >>"$RAW"
        else
            echo "ping-pong over $c failed (run $r):"; tail -3 "$log"; fails=$((fails + 1))
        fi
        log=$OUT/stream-$c-$r.txt
        if run "$c" 2 "$log" "$OUT/mpi_stream" 4194304 64 && grep -q '^mpi_stream: OK' "$log"; then
            awk -v c="$c" -v r="$r" '$1 ~ /^(bw|bibw|rate)$/ { print c, r, "st_" $1, $2, $3 }
                $1 == "allreduce" { print c, r, "allreduce2", 8, $3 }' "$log" >>"$RAW"
        else
            echo "streaming over $c failed (run $r):"; tail -3 "$log"; fails=$((fails + 1))
        fi
        log=$OUT/fresh-$c-$r.txt
        if run "$c" 2 "$log" "$OUT/mpi_fresh" 16777216 && grep -q '^mpi_fresh: OK' "$log"; then
            awk -v c="$c" -v r="$r" '$1 ~ /^(fresh|reused)$/ { print c, r, $1 "_bw", $2, $4 }' "$log" >>"$RAW"
        else
            echo "fresh-buffer ping-pong over $c failed (run $r):"; tail -3 "$log"; fails=$((fails + 1))
        fi
        log=$OUT/allreduce4-$c-$r.txt
        # (4 ranks over tcp on 2 cores did not finish 200 calls in 300 s)
        if [ "$c" = tcp ]; then
            :
        elif run "$c" 4 "$log" "$OUT/mpi_stream" 0 1 200 && grep -q '^mpi_stream: OK' "$log"; then
            awk -v c="$c" -v r="$r" '$1 == "allreduce" { print c, r, "allreduce4", 8, $3 }' "$log" >>"$RAW"
        else
            echo "4-rank allreduce over $c failed (run $r):"; tail -3 "$log"; fails=$((fails + 1))
        fi
    done
done

# med <config> <metric> <size>: the median over the runs
med() {
    awk -v c="$1" -v m="$2" -v s="$3" '$1 == c && $3 == m && $4 == s { print $5 }' "$RAW" |
        sort -g | awk '{ v[NR] = $1 } END { if (!NR) print "nan";
            else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# worst <metric> <size> <hi|lo>: the worst run of xen against posix+cma's median
# (hi: larger is better, so the least; lo: the largest)
worst() {
    local b; b=$(med posix+cma "$1" "$2")
    awk -v m="$1" -v s="$2" -v b="$b" -v d="$3" '$1 == "xen" && $3 == m && $4 == s && b > 0 {
            x = $5 / b; if (!n++ || (d == "hi" ? x < w : x > w)) w = x }
        END { if (n) printf "%.2f", w; else print "nan" }' "$RAW"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.2f", a / b }'; }

table() {  # title metric sizes...
    local title=$1 m=$2 c s; shift 2
    printf '\n%-24s' "$title"
    for c in $CONFIGS; do printf ' %11s' "$c"; done
    printf '  xen/posix+cma\n'
    for s in "$@"; do
        printf '%24s' "$s"
        for c in $CONFIGS; do printf ' %11s' "$(med "$c" "$m" "$s")"; done
        printf '  %13s\n' "$(ratio "$(med xen "$m" "$s")" "$(med posix+cma "$m" "$s")")"
    done
}
table "ping-pong latency (us)" pp_lat 8 64 512 4096 16384
table "ping-pong MB/s" pp_bw 65536 262144 1048576 4194304 16777216 67108864
table "streaming MB/s (64)" st_bw 65536 262144 1048576 4194304
table "bidirectional MB/s" st_bibw 65536 262144 1048576 4194304
table "fresh buffers MB/s" fresh_bw 65536 262144 1048576 4194304 16777216
table "reused buffers MB/s" reused_bw 65536 262144 1048576 4194304 16777216
table "messages/s (8 B)" st_rate 8
table "allreduce 8 B, 2 ranks" allreduce2 8
table "allreduce 8 B, 4 ranks" allreduce4 8

# target <what> <metric> <size> <hi|lo> <bound> <median|every>
met=0 missed=0
target() {
    local what=$1 m=$2 s=$3 d=$4 bound=$5 how=$6 r ok
    if [ "$how" = every ]; then r=$(worst "$m" "$s" "$d")
    else r=$(ratio "$(med xen "$m" "$s")" "$(med posix+cma "$m" "$s")"); fi
    ok=$(awk -v r="$r" -v b="$bound" -v d="$d" 'BEGIN { if (r == "nan") print 0;
            else print (d == "hi" ? r >= b : r <= b) }')
    if [ "$ok" = 1 ]; then met=$((met + 1)); ok=met; else missed=$((missed + 1)); ok=MISSED; fi
    printf '  %-44s %6s %-6s (%s %s, %s)\n' "$what" "$r" "$ok" "$([ "$d" = hi ] && echo '>=' || echo '<=')" \
        "$bound" "$([ "$how" = every ] && echo "worst of $REPS runs" || echo median)"
}
echo
echo "targets: xen / posix+cma"
target "ping-pong latency 8 B" pp_lat 8 lo 0.8 median
target "ping-pong latency 4 KiB" pp_lat 4096 lo 1.0 median
target "ping-pong bandwidth 64 KiB" pp_bw 65536 hi 1.1 every
for s in 1048576 4194304 16777216; do
    target "ping-pong bandwidth $((s >> 20)) MiB" pp_bw $s hi 1.2 every
done
target "streaming 64 KiB" st_bw 65536 hi 1.0 median
target "bidirectional 64 KiB" st_bibw 65536 hi 1.0 median
for s in 1048576 4194304; do
    target "streaming $((s >> 20)) MiB" st_bw $s hi 1.2 median
    target "bidirectional $((s >> 20)) MiB" st_bibw $s hi 1.2 median
done
target "message rate 8 B" st_rate 8 hi 1.0 median
target "allreduce 8 B, 2 ranks" allreduce2 8 lo 1.0 median
target "allreduce 8 B, 4 ranks" allreduce4 8 lo 1.0 median
# the whole sweep: the size where xen stands worst against posix+cma
wr=; ws=
for s in $(awk '$1 == "xen" && $3 == "pp_bw" { print $4 }' "$RAW" | sort -un); do
    r=$(ratio "$(med xen pp_bw "$s")" "$(med posix+cma pp_bw "$s")")
    [ "$r" = nan ] && continue
    if [ -z "$wr" ] || awk -v a="$r" -v b="$wr" 'BEGIN { exit !(a < b) }'; then wr=$r ws=$s; fi
done
[ -n "$ws" ] && echo "  worst ping-pong size: $ws B at ${wr}x posix+cma (median bandwidth)"
echo "targets: $met met, $missed missed; raw runs in $RAW"

if command -v gnuplot >/dev/null; then
    for c in $CONFIGS; do
        for m in pp_lat pp_bw; do
            awk -v c="$c" -v m="$m" '$1 == c && $3 == m { print $4 }' "$RAW" | sort -un |
                while read -r s; do echo "$s $(med "$c" "$m" "$s")"; done >"$OUT/$m-$c.dat"
        done
    done
    { plot_preamble "$OUT/mpi-bench.png"; cat <<EOF
set title "MPICH ping-pong latency (median of $REPS runs, us)"
set logscale y
plot for [c in "$CONFIGS"] "$OUT/pp_lat-".c.".dat" using 1:2 with linespoints title c
set title "MPICH ping-pong bandwidth (median of $REPS runs, MB/s)"
unset logscale y
plot for [c in "$CONFIGS"] "$OUT/pp_bw-".c.".dat" using 1:2 with linespoints title c
unset multiplot
EOF
    } | gnuplot
    echo "plot: $OUT/mpi-bench.png"
fi
[ "$fails" -eq 0 ]
