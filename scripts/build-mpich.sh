#!/bin/bash
# Build MPICH 4.0.2 (Debian's source, mpich 4.0.2-3) with the ch4 netmod
# "xen" (src/mpich_netmod/) and install it; fast when run again.
#   usage: scripts/build-mpich.sh        (after scripts/setup.sh && scripts/build.sh)
#
# Where things are (<cache> is $XM_MPICH_CACHE, default /var/cache/xenmpi,
# ~/.cache/xenmpi when that is not writable):
#   <cache>/mpich-src/mpich-4.0.2   the unpacked source, never changed
#   <cache>/mpich-4.0.2-<key>/      a copy of it, built in place; <key> hashes
#                                   the configure flags, scripts/mpich/*.patch
#                                   and this script's build recipe version
#   <cache>/mpich-4.0.2-<key>/prefix  where it installs (mpicc and mpiexec
#                                   hard-code it); build/mpich links to it
#   <cache>/ccache                  the compiler cache (CCACHE_DIR)
#   build/mpich-build.log           everything the steps printed, this run
#
# Each run: the netmod's files whose content changed are copied into the
# tree (unchanged ones keep their mtime, so make rebuilds only what changed),
# the generators and autoreconf run only when their inputs changed, configure
# only when the tree is new or configure or its flags changed, the core
# (libxenmpi and its headers, from build/) is installed into the prefix, then
# make and make install.
#
# Environment:
#   XM_MPICH_KEEP_GOING=1   make -k: build all that builds, report the failure
#                           at the end (install is skipped when make failed)
#   XM_MPICH_DATATYPE=yaksa MPICH's default datatype engine instead of
#                           dataloop (yaksa's generated code is ~100 MB of C)
#   XM_MPICH_CONFIGURE_EXTRA  more configure flags (they change <key>)
#   XM_BUILD_DIR            the project's build directory (default ./build)
set -euo pipefail

die() { echo "build-mpich: $*" >&2; exit 1; }

clone=$(cd "$(dirname "$0")/.." && pwd)
B=${XM_BUILD_DIR:-$clone/build}
[ -f "$B/libxenmpi.la" ] || die "no libxenmpi in $B: run scripts/build.sh first"
B=$(cd "$B" && pwd)
netmod_src=$clone/src/mpich_netmod
patchfile=$clone/scripts/mpich/netmod-xen.patch
log=$B/mpich-build.log
version=4.0.2
for tool in python3 perl patch sha256sum flock cmp autoreconf ccache make gcc; do
    command -v $tool >/dev/null || die "$tool not found (scripts/setup.sh installs what is needed)"
done

base=${XM_MPICH_CACHE:-/var/cache/xenmpi}
if ! mkdir -p "$base" 2>/dev/null || [ ! -w "$base" ]; then
    base=${XDG_CACHE_HOME:-$HOME/.cache}/xenmpi
    mkdir -p "$base" || die "cannot create a cache directory"
fi

# ccache through Debian's masquerade directory: configure records CC=gcc,
# so the installed mpicc runs plain gcc.  One base dir for every tree lets a
# new tree hit what another one compiled.
[ -x /usr/lib/ccache/gcc ] || die "/usr/lib/ccache/gcc missing (apt-get install ccache)"
export PATH=/usr/lib/ccache:$PATH
export CCACHE_DIR=${CCACHE_DIR:-$base/ccache}
export CCACHE_BASEDIR=$base CCACHE_NOHASHDIR=1
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-3G}
mkdir -p "$CCACHE_DIR"

datatype=${XM_MPICH_DATATYPE:-dataloop}
# Cut to what the netmod needs: C only, no MPI-IO, shared library only,
# system hwloc, posix shm for ranks of one VM (no xpmem).
flags=(--with-device=ch4:xen --with-pm=hydra --with-ch4-shmmods=posix
       --disable-fortran --disable-cxx --disable-romio --disable-static
       --with-hwloc --with-datatype-engine="$datatype"
       ${XM_MPICH_CONFIGURE_EXTRA:-})
recipe=1    # bump when a change here needs a fresh tree
key=$( { echo "$version $recipe"; printf '%s\n' "${flags[@]}"; cat "$patchfile"; } |
       sha256sum | cut -c1-12)
tree=$base/mpich-$version-$key
prefix=$tree/prefix
state=$tree/.xm

exec 9>"$tree.lock"
flock 9 || die "cannot lock $tree.lock"

: > "$log"
echo "build-mpich: $tree (log: $log)"
total_start=$(date +%s.%N)

# step NAME CMD...: run CMD with its output in the log, print the time.
step() {
    local name=$1 t0 rc=0; shift
    t0=$(date +%s.%N)
    echo "=== $name: $*" >> "$log"
    "$@" >> "$log" 2>&1 || rc=$?
    printf '  %-22s %6.1f s%s\n' "$name" "$(since "$t0")" \
           "$([ $rc -eq 0 ] || echo "  FAILED")"
    if [ $rc -ne 0 ]; then
        echo "--- last lines of $log:" >&2
        tail -25 "$log" >&2
        die "$name failed (exit $rc); the whole output is in $log"
    fi
}
since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
hash_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -c1-16; }
stamp_is() { [ "$(cat "$state/$1" 2>/dev/null || echo "${3:-}")" = "$2" ]; }

# sync_dir SRC DST MANIFEST: copy the files of SRC whose content differs
# from DST's, by rename so a changed file gets a new mtime and an unchanged
# one keeps its own; files listed in MANIFEST (the last sync) and gone from
# SRC are removed.  Prints what it changed.
sync_dir() {
    local src=$1 dst=$2 manifest=$3 f new
    new=$(mktemp)
    (cd "$src" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort) > "$new"
    while IFS= read -r f; do
        if [ -L "$src/$f" ]; then
            [ -L "$dst/$f" ] && [ "$(readlink "$src/$f")" = "$(readlink "$dst/$f")" ] && continue
            mkdir -p "$(dirname "$dst/$f")" && rm -f "$dst/$f" && cp -P "$src/$f" "$dst/$f"
        else
            [ -f "$dst/$f" ] && [ ! -L "$dst/$f" ] && cmp -s "$src/$f" "$dst/$f" && continue
            mkdir -p "$(dirname "$dst/$f")"
            cp "$src/$f" "$dst/$f.xm-new" && mv -f "$dst/$f.xm-new" "$dst/$f"
        fi
        echo "    updated $f"
    done < "$new"
    if [ -f "$manifest" ]; then
        comm -23 "$manifest" "$new" | while IFS= read -r f; do
            rm -f "$dst/$f" && echo "    removed $f"
        done
    fi
    mv -f "$new" "$manifest"
}

# The generators and autoreconf rewrite files whose content mostly stays the
# same; give those their old mtime back so make does not rebuild (or
# re-run configure in) everything below them.
snapshot_sources() {
    (cd "$tree" && find . \( -path ./prefix -o -path ./.xm -o -name .deps -o -name .libs \) -prune -o \
        -type f ! -name '*.o' ! -name '*.lo' ! -name '*.la' ! -name '*.log' -print0 |
        xargs -0 sha256sum) > "$state/snap.sum"
    (cd "$tree" && find . \( -path ./prefix -o -path ./.xm -o -name .deps -o -name .libs \) -prune -o \
        -type f ! -name '*.o' ! -name '*.lo' ! -name '*.la' ! -name '*.log' -printf '%T@ %p\n') > "$state/snap.time"
    touch "$state/snap.stamp"
}
restore_unchanged_mtimes() {
    local changed kept=0 rewritten=0 f t
    changed=$(cd "$tree" && find . \( -path ./prefix -o -path ./.xm -o -name .deps -o -name .libs \) -prune -o \
        -type f -newer "$state/snap.stamp" ! -name '*.o' ! -name '*.lo' ! -name '*.la' ! -name '*.log' -print)
    [ -n "$changed" ] || return 0
    while IFS=' ' read -r t f; do
        touch -d "@$t" "$tree/$f"; kept=$((kept + 1))
    done < <(cd "$tree" && printf '%s\n' "$changed" | tr '\n' '\0' | xargs -0 sha256sum |
             awk 'FILENAME == ARGV[1] { old[$2] = $1; next }
                  FILENAME == ARGV[2] { t[$2] = $1; next }
                  ($2 in old) && old[$2] == $1 { print t[$2], $2 }' \
                 "$state/snap.sum" "$state/snap.time" -)
    rewritten=$(printf '%s\n' "$changed" | wc -l)
    echo "prep: $rewritten files rewritten, $kept of them unchanged (old mtime kept)"
}

# 1. the source, once
step "fetch source" "$clone/scripts/fetch-deb-src.sh" mpich "$version" "$base/mpich-src" \
     "mpich-$version/maint/gen_ch4_api.py"
pristine=$base/mpich-src/mpich-$version

# 2. the tree, copied once per key (.xm/copied is written last)
if [ ! -f "$state/copied" ]; then
    rm -rf "$tree"
    step "copy source" cp -a "$pristine" "$tree"
    mkdir -p "$state"
    touch "$state/copied"
fi

# 3. the netmod and the generator patch
step "sync netmod" sync_dir "$netmod_src" "$tree/src/mpid/ch4/netmod/xen" "$state/netmod.files"
grep '    \(updated\|removed\)' <(sed -n '/^=== sync netmod/,$p' "$log") || true
apply_patch() {
    if patch -d "$tree" -p1 -R -s -f --dry-run < "$patchfile" >/dev/null 2>&1; then
        echo "netmod-xen.patch: already applied"
    else
        patch -d "$tree" -p1 -f --no-backup-if-mismatch < "$patchfile"
    fi
}
step "patch" apply_patch

# The prep steps, each when its inputs changed.  gen_ch4_api.py reads only
# ch4_api.txt and the (patched) generator, so once per tree.  The netmod's
# CVAR blocks and error names feed extractcvars and extracterrmsgs.
# The shipped mpir_cvars.[ch] and defmsg.h are right for a netmod with
# neither ("none"), so those two run only once the netmod has some.
cvars_in=$(sed -n '/BEGIN_MPI_T_CVAR_INFO_BLOCK/,/END_MPI_T_CVAR_INFO_BLOCK/p' "$netmod_src"/*.[ch] | sha256sum | cut -c1-16)
[ "$(grep -l BEGIN_MPI_T_CVAR_INFO_BLOCK "$netmod_src"/*.[ch] 2>/dev/null)" ] || cvars_in=none
errs_in=none
[ -f "$netmod_src/errnames.txt" ] && errs_in=$(hash_of "$netmod_src/errnames.txt")
auto_in=$(hash_of "$netmod_src/subconfigure.m4" "$netmod_src/Makefile.mk" "$patchfile")
prep=()
stamp_is prep.ch4api done || prep+=(ch4api)
stamp_is prep.autotools "$auto_in" || prep+=(autotools)
stamp_is prep.cvars "$cvars_in" none || prep+=(cvars)
stamp_is prep.errmsgs "$errs_in" none || prep+=(errmsgs)
gen_errmsgs() {
    (cd "$tree" && maint/extracterrmsgs -careful=unusederr.txt -skip=src/util/multichannel/mpi.c \
        $(cat maint/errmsgdirs) > .xm/defmsg.h 2> .xm/errmsgs.err) || return 1
    cat "$tree/.xm/errmsgs.err"
    if grep -v 'Warning:' "$tree/.xm/errmsgs.err" | grep -q .; then
        echo "extracterrmsgs reported errors (above)"; return 1
    fi
    [ -s "$tree/.xm/defmsg.h" ] && mv -f "$tree/.xm/defmsg.h" "$tree/src/mpi/errhan/defmsg.h"
}
if [ ${#prep[@]} -gt 0 ]; then
    [ -f "$state/prep.ch4api" ] && snapshot_sources
    cd "$tree"
    for p in "${prep[@]}"; do
        case $p in
        ch4api)    step "gen_ch4_api.py" python3 maint/gen_ch4_api.py ;;
        autotools) step "gen_subcfg_m4" ./maint/gen_subcfg_m4
                   step "autoreconf -if" autoreconf -if ;;
        cvars)     step "extractcvars" perl -I maint/local_perl/lib maint/extractcvars \
                       --dirs="src/mpi src/mpi_t src/nameserv src/util src/binding src/include src/mpid src/pmi" ;;
        errmsgs)   step "extracterrmsgs" gen_errmsgs ;;
        esac
    done
    cd "$clone"
    [ -f "$state/snap.stamp" ] && { restore_unchanged_mtimes >> "$log"; tail -1 "$log"; rm -f "$state"/snap.*; }
    echo done > "$state/prep.ch4api"
    echo "$auto_in" > "$state/prep.autotools"
    echo "$cvars_in" > "$state/prep.cvars"
    echo "$errs_in" > "$state/prep.errmsgs"
fi

# 4. the core, where the netmod's configure looks for it (--with-xenmpi):
# staged, then only changed files copied, so unchanged headers keep their
# mtime.  No .la: libtool would take the build tree's libdir from it.
install_core() {
    local stage=$state/core-stage
    rm -rf "$stage"
    make -C "$B" -s install-libLTLIBRARIES install-includeHEADERS \
        lib_LTLIBRARIES=libxenmpi.la prefix="$prefix" DESTDIR="$stage" || return 1
    rm -f "$stage$prefix"/lib/*.la
    mkdir -p "$prefix"
    sync_dir "$stage$prefix" "$prefix" "$state/core.files"
    rm -rf "$stage"
}
step "install core" install_core

# 5. configure: when the tree is new, or configure or the flags changed
conf_in=$( { printf '%s\n' "$prefix" "${flags[@]}"; cat "$tree/configure"; } | sha256sum | cut -c1-16)
if [ ! -f "$tree/config.status" ] || ! stamp_is configure "$conf_in"; then
    rm -f "$state/configure"
    cd "$tree"
    step "configure" ./configure --prefix="$prefix" "${flags[@]}" --with-xenmpi="$prefix" CC=gcc
    cd "$clone"
    echo "$conf_in" > "$state/configure"
fi
inline=$(grep -o -m1 -- '-DNETMOD_INLINE=[A-Za-z_]*' "$tree/Makefile" || echo "(none: not inlined)")

# 6. make and install
ccache_stats() { ccache --print-stats 2>/dev/null |
    awk '$1 ~ /^(direct_cache_hit|preprocessed_cache_hit|cache_miss)$/ { s[$1] = $2 }
         END { printf "%d %d\n", s["direct_cache_hit"] + s["preprocessed_cache_hit"], s["cache_miss"] }'; }
read -r hits0 miss0 < <(ccache_stats)
make_start=$(wc -l < "$log")
make_rc=0
if [ "${XM_MPICH_KEEP_GOING:-0}" = 1 ]; then
    ( step "make -k -j2" nice -n 10 make -k -j2 -C "$tree" ) || make_rc=$?
else
    step "make -j2" nice -n 10 make -j2 -C "$tree"
fi
read -r hits1 miss1 < <(ccache_stats)
compiled=$(tail -n +"$make_start" "$log" | grep -c '^  CC ' || true)
said=$(tail -n +"$make_start" "$log" | grep -c "pragma message: ch4 netmod: xen" || true)
echo "  compiled $compiled files (ccache: $((hits1 - hits0)) hits, $((miss1 - miss0)) misses)"
echo "  configure's netmod inline flag: $inline"
if [ "$compiled" -gt 0 ]; then
    echo "  lines of the xen netmod_inline.h's #pragma message in the log: $said"
    tail -n +"$make_start" "$log" | grep -m1 "pragma message: ch4 netmod: xen" | sed 's/^/    /' || true
fi
case $inline in *__netmod_inline_xen__) ;; *) die "MPICH is not configured with the xen netmod inline (see $log)" ;; esac
if [ $make_rc -ne 0 ]; then
    die "make failed, kept going (XM_MPICH_KEEP_GOING=1); errors in $log; not installed"
fi
step "make install" make -C "$tree" -s install
ln -sfn "$prefix" "$B/mpich"
printf '  %-22s %6.1f s\n' "total" "$(since "$total_start")"
echo "build-mpich: installed in $prefix; $B/mpich/bin/mpicc, $B/mpich/bin/mpiexec"
