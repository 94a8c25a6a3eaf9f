# Sourced, not run: a scratch root for installing packages without touching
# the machine.  An overlay of / (every write goes to <dir>/upper) with /proc,
# /sys and /dev bound in; commands run in it through chroot.  Root only.
#   scratch_up <dir>              mount it at <dir>/root
#   scratch_bind <dir> <path>     make host <path> (a directory) writable
#                                 at the same path inside
#   scratch_run <dir> <cmd...>    run a command inside
#   scratch_down <dir>            unmount and delete <dir> (what was
#                                 installed inside is gone)

scratch_up() {
    local d=$1 m
    [ "$(id -u)" = 0 ] || { echo "scratch root: needs root (mount, chroot)" >&2; return 1; }
    scratch_down "$d" 2>/dev/null
    mkdir -p "$d/upper" "$d/work" "$d/root" || return 1
    mount -t overlay overlay -o "lowerdir=/,upperdir=$d/upper,workdir=$d/work" "$d/root" || {
        echo "scratch root: cannot mount an overlay of / at $d/root (overlayfs missing, or $d on an overlay itself)" >&2
        return 1
    }
    for m in /proc /sys /dev /dev/pts /dev/shm; do
        mount --bind "$m" "$d/root$m" || { scratch_down "$d"; return 1; }
    done
}

scratch_bind() {
    local d=$1 p=$2
    mkdir -p "$d/root$p" && mount --bind "$p" "$d/root$p"
}

scratch_run() {
    local d=$1
    shift
    chroot "$d/root" /usr/bin/env -u LD_PRELOAD "$@"
}

scratch_down() {
    local d=$1
    [ -d "$d" ] || return 0
    if mountpoint -q "$d/root"; then
        # the deepest mounts first; lazily when a process still holds one
        umount -R "$d/root" 2>/dev/null || umount -R -l "$d/root"
    fi
    # never delete through a mount: below it are /dev, /proc or a bound
    # host directory
    if awk -v r="$d/root" '$2 == r || index($2, r "/") == 1 { f = 1 } END { exit !f }' /proc/mounts; then
        echo "scratch root: $d/root is still mounted; not deleting $d" >&2
        return 1
    fi
    rm -rf "$d"
}
