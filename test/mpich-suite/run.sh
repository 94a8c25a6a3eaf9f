#!/bin/bash
# MPICH's own test suite (test/mpi of MPICH 4.0.2) over two MPIs in one run:
# Debian's MPICH (ch4:ucx, UCX_TLS=posix,self) as the baseline and an MPICH
# built with the netmod "xen", whose ranks are split into two simulated VMs
# (mpiexec-vms).
#   usage: test/mpich-suite/run.sh <netmod MPICH prefix> <build dir>
# The subsets are the lists <subset>.list beside this script, in runtests'
# format (program, ranks, key=value...), each run in MPICH's test directory
# of that name; a line's test name is the program's unless the line ends
# with "#= <name>".  test/mpi is copied to <work>/src and configured once
# per MPI in <work>/{baseline,netmod} (<work>: MPICH_SUITE_WORK, outside the
# build dir so that fresh clones reuse it), reused while the source, the
# MPI's compiler and mpi.h and this script's configuration stay the same;
# only the listed programs are built.
# Prints, per test, "PASS|FAIL: mpich-suite/<subset>/<test>" for the netmod
# where the baseline passes and "SKIP: ... (fails with Debian's MPICH too)"
# where it does not, then the baseline's failures as "#" lines; exits
# non-zero if a netmod result failed.  Logs (runtests output, TAP and JUnit
# files, build logs) stay in <build dir>/mpich-suite/logs/.
# A prefix of "-" runs the baseline alone, reported as
# "PASS|FAIL: mpich-suite-baseline/<subset>/<test>".
# Environment:
#   MPICH_SUITE_SUBSETS  subsets to run (default "pt2pt rma coll datatype comm")
#   MPICH_SUITE_SRC      MPICH's test/mpi (default: the unpacked 4.0.2 source
#                        in /var/cache/xenmpi/mpich-src)
#   MPICH_SUITE_TIMEOUT  seconds per test (default 60)
#   MPICH_SUITE_WORK     the configured trees (default
#                        /var/cache/xenmpi/mpich-suite, or
#                        ~/.cache/xenmpi/mpich-suite when that is not writable)
set -u

prefix=${1:-}
bdir=${2:-}
if [ -z "$prefix" ] || [ -z "$bdir" ] ||
        { [ "$prefix" != - ] && [ ! -x "$prefix/bin/mpiexec" ]; }; then
    echo "usage: $0 <MPICH prefix with bin/mpicc and bin/mpiexec | -> <build dir>" >&2
    exit 2
fi
[ "$prefix" != - ] && prefix=$(cd "$prefix" && pwd -P)   # the tree, not a clone's link to it
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$bdir/mpich-suite/logs" || exit 2
logs=$(cd "$bdir/mpich-suite/logs" && pwd)
top=${MPICH_SUITE_WORK:-/var/cache/xenmpi/mpich-suite}
if [ -z "${MPICH_SUITE_WORK:-}" ] && ! mkdir -p "$top" 2>/dev/null; then
    top=$HOME/.cache/xenmpi/mpich-suite
fi
mkdir -p "$top" || exit 2
top=$(cd "$top" && pwd)
# one run at a time per work tree
exec 9> "$top/.lock"
flock 9
tsrc=${MPICH_SUITE_SRC:-/var/cache/xenmpi/mpich-src/mpich-4.0.2/test/mpi}
subsets=${MPICH_SUITE_SUBSETS:-pt2pt rma coll datatype comm}
tmo=${MPICH_SUITE_TIMEOUT:-60}
cfgargs="--disable-fortran --disable-cxx --disable-romio --disable-spawn"
start=$SECONDS

die() { echo "mpich-suite: $*" >&2; exit 2; }
[ -f "$tsrc/runtests.in" ] && [ -x "$tsrc/configure" ] ||
    die "no MPICH test/mpi at $tsrc (MPICH_SUITE_SRC; apt-get source mpich unpacks it)"
command -v perl > /dev/null || die "runtests needs perl"

# ------------------------------------------------------------------ sources
srckey=$( { echo "$tsrc"; md5sum "$tsrc/configure" "$tsrc/runtests.in" "$tsrc/Makefile.in"; } | md5sum)
if [ "$(cat "$top/src/.suite-key" 2>/dev/null)" != "$srckey" ]; then
    rm -rf "$top/src" && mkdir -p "$top/src" && cp -a "$tsrc/." "$top/src/" ||
        die "cannot copy $tsrc to $top/src"
    echo "$srckey" > "$top/src/.suite-key"
fi

# configure <name> <mpicc> <mpiexec>: test/mpi configured for that MPI in
# $top/<name>, kept while its key (source, compiler, mpi.h, options) holds
configure() {
    local name=$1 cc=$2 mpiexec=$3 dir=$top/$1 key t0=$SECONDS
    key=$( { echo "$srckey $cc $mpiexec $cfgargs"; "$cc" -show
             printf '#include <mpi.h>\n' | "$cc" -E -dM -x c -; } 2>&1 | md5sum)
    if [ "$(cat "$dir/.suite-key" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    rm -rf "$dir" && mkdir -p "$dir" || return 1
    # shellcheck disable=SC2086 # the options are words
    if ! (cd "$dir" && nice -n 10 "$top/src/configure" MPICC="$cc" MPIEXEC="$mpiexec" \
            $cfgargs > "$logs/$name-configure.log" 2>&1 &&
          nice -n 10 make -C dtpools -j2 > "$logs/$name-support.log" 2>&1 &&
          nice -n 10 make -C util -j2 >> "$logs/$name-support.log" 2>&1); then
        echo "# $name: configure of test/mpi failed, see $logs/$name-configure.log, $name-support.log"
        return 1
    fi
    echo "$key" > "$dir/.suite-key"
    echo "# $name: test/mpi configured in $((SECONDS - t0)) s"
}

# entries <subset>: "<program> <ranks> <name>" per test of the list
entries() {
    awk '{ name = ""
           if (match($0, /#=[ \t]*[^ \t]+/)) { name = substr($0, RSTART + 2, RLENGTH - 2); gsub(/[ \t]/, "", name) }
           sub(/#.*/, ""); if (NF == 0) next
           print $1, (NF > 1 ? $2 : 1), (name == "" ? $1 : name) }' "$here/$1.list"
}

# build <name> <subset>: the list's programs only
build() {
    local dir=$top/$1/$2 progs t0=$SECONDS
    progs=$(entries "$2" | awk '{ print $1 }' | sort -u)
    # shellcheck disable=SC2086 # one word per program
    nice -n 10 make -k -j2 -C "$dir" $progs > "$logs/$1-$2-build.log" 2>&1 ||
        echo "# $1: some $2 programs did not build, see $logs/$1-$2-build.log"
    echo $((SECONDS - t0)) > "$logs/$1-$2.build-seconds"
}

# results <tap>: "<ok|fail|skip> <program> <seconds>" per test, in order
# (runtests 4.0.2 writes "ok  - ./prog np # time=s", without numbers)
results() {
    awk '/^(not )?ok *[0-9]* *- / {
            st = /^not/ ? "fail" : "ok"; if ($0 ~ /# SKIP/) st = "skip"
            s = $0; sub(/^(not )?ok *[0-9]* *- */, "", s); split(s, w, " ")
            p = w[1]; sub(/^\.\//, "", p)
            t = "-"; if (match($0, /time=[0-9.]+/)) t = sprintf("%.1f", substr($0, RSTART + 5, RLENGTH - 5))
            print st, p, t }' "$1" 2>/dev/null
}

# failure_output <tap> <k>: runtests' record of the k-th failure (of the
# first 10 failures of a run; the rest are in the logs)
shown=0
failure_output() {
    shown=$((shown + 1))
    [ $shown -le 10 ] || return 0
    awk -v k="$2" '/^not ok / { n++ } /^ok / { if (n == k) exit }
                   /^not ok / && n > k { exit }
                   n == k && /^## / { print "    " substr($0, 4) }' "$1" | head -8
}

# runsuite <name> <subset> <mpiexec> [env assignments...]
runsuite() {
    local name=$1 subset=$2 mpiexec=$3 t0=$SECONDS
    shift 3
    (cd "$top/$name/$subset" &&
        env -u MPIR_CVAR_NOLOCAL -u UCX_TLS MPITEST_TIMEOUT="$tmo" "$@" \
            nice -n 10 perl ../runtests -srcdir="$top/src/$subset" -tests="$here/$subset.list" \
            -mpiexec="$mpiexec" -maxnp=4 -tapfile="$logs/$name-$subset.tap" \
            -junitfile="$logs/$name-$subset.xml" > "$logs/$name-$subset.log" 2>&1)
    echo $((SECONDS - t0)) > "$logs/$name-$subset.seconds"
}

# the simulated hosts of the netmod's launches (mpiexec-vms removes its own;
# this is for launches that were killed)
export MPICH_SUITE_RUN=$$
trap 'rm -rf /dev/shm/xenmpi-sim-mpich-suite-$$-*' EXIT

mpis=(baseline)
[ "$prefix" != - ] && mpis+=(netmod)
declare -A cc mx
cc[baseline]=mpicc.mpich; mx[baseline]=mpiexec.mpich
cc[netmod]=$prefix/bin/mpicc; mx[netmod]=$prefix/bin/mpiexec
command -v mpicc.mpich > /dev/null && command -v mpiexec.mpich > /dev/null ||
    die "Debian's MPICH (mpicc.mpich, mpiexec.mpich: packages mpich, libmpich-dev) is missing"
declare -A ready
for m in "${mpis[@]}"; do
    configure "$m" "${cc[$m]}" "${mx[$m]}" && ready[$m]=1
done
[ -n "${ready[baseline]:-}" ] || die "the baseline cannot be configured"
if [ "$prefix" != - ] && [ -z "${ready[netmod]:-}" ]; then
    echo "FAIL: mpich-suite/configure (test/mpi does not configure with $prefix/bin/mpicc)"
    tail -20 "$logs/netmod-configure.log" "$logs/netmod-support.log" 2>/dev/null | sed 's/^/    /'
    exit 1
fi

failed=0
basefail=()
for subset in $subsets; do
    [ -f "$here/$subset.list" ] || die "no list $here/$subset.list"
    dups=$(entries "$subset" | awk '{ print $3 }' | sort | uniq -d)
    [ -z "$dups" ] || die "$subset.list: test names used twice: $dups (name them with #=)"
    for m in "${mpis[@]}"; do
        build "$m" "$subset"
        rm -f "$logs/$m-$subset.tap"
        if [ "$m" = baseline ]; then
            # split into the same two nodes as the netmod's two VMs, so that
            # both MPIs run the same shm/network mix
            runsuite baseline "$subset" mpiexec.mpich UCX_TLS=posix,self \
                MPIR_CVAR_NUM_CLIQUES=2 MPIR_CVAR_CLIQUES_BY_BLOCK=1
        else
            runsuite netmod "$subset" "$here/mpiexec-vms ${mx[netmod]}"
        fi
    done
    mapfile -t list < <(entries "$subset")
    mapfile -t base < <(results "$logs/baseline-$subset.tap")
    if [ "$prefix" != - ]; then mapfile -t nm < <(results "$logs/netmod-$subset.tap"); else nm=(); fi
    declare -A npass=([baseline]=0 [netmod]=0)
    bk=0 nk=0
    for i in "${!list[@]}"; do
        read -r prog _ tname <<< "${list[$i]}"
        t=mpich-suite/$subset/$tname
        read -r bst bprog btime <<< "${base[$i]:-none - -}"
        read -r nst nprog ntime <<< "${nm[$i]:-none - -}"
        # runtests stops a list after too many timeouts: what it did not
        # report did not run
        [ "$bprog" = "$prog" ] || bst=none
        [ "$nprog" = "$prog" ] || nst=none
        [ "$bst" = fail ] && bk=$((bk + 1))
        [ "$nst" = fail ] && nk=$((nk + 1))
        [ "$bst" = ok ] && npass[baseline]=$((npass[baseline] + 1))
        [ "$nst" = ok ] && npass[netmod]=$((npass[netmod] + 1))
        if [ "$prefix" = - ]; then
            if [ "$bst" = ok ]; then echo "PASS: mpich-suite-baseline/$subset/$tname"
            else
                echo "FAIL: mpich-suite-baseline/$subset/$tname ($bst)"
                [ "$bst" = fail ] && failure_output "$logs/baseline-$subset.tap" $bk
                failed=$((failed + 1))
            fi
            echo "#   ${btime} s"
        elif [ "$bst" != ok ]; then
            echo "SKIP: $t (fails with Debian's MPICH too)"
            basefail+=("$t ($bst${btime:+, $btime s}; netmod: $nst)")
        elif [ "$nst" = ok ]; then
            echo "PASS: $t"
            echo "#   baseline $btime s, netmod $ntime s"
        else
            if [ "$nst" = fail ]; then echo "FAIL: $t (netmod $ntime s)"
            else echo "FAIL: $t (not run: runtests stopped, see $logs/netmod-$subset.log)"; fi
            [ "$nst" = fail ] && failure_output "$logs/netmod-$subset.tap" $nk
            failed=$((failed + 1))
        fi
    done
    for m in "${mpis[@]}"; do
        echo "# $subset, $m: ${npass[$m]} of ${#list[@]} passed in $(cat "$logs/$m-$subset.seconds") s" \
            "(build $(cat "$logs/$m-$subset.build-seconds") s)"
    done
    unset npass
done

if [ "$prefix" != - ]; then
    if [ ${#basefail[@]} -gt 0 ]; then
        echo "# failing with Debian's MPICH (ch4:ucx, UCX_TLS=posix,self) too:"
        printf '#   %s\n' "${basefail[@]}"
    else
        echo "# no test failed with Debian's MPICH"
    fi
fi
echo "# mpich-suite: $((SECONDS - start)) s; logs in $logs"
exit $((failed > 0))
