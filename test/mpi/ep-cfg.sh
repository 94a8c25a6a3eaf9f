# Sourced (POSIX sh) by the MPI test scripts, on the host and in the real-Xen
# harness's domUs: which UCX transports carried an MPI job, read from UCX's
# info log (UCX_LOG_LEVEL=info prints one ep_cfg line per endpoint
# configuration, its lanes in parentheses, e.g. "tag(self/memory0 xen/xen0)").

# ep_cfg_check <log> <allowed lanes, extended regex> <required lane>: prints
# why and returns 1 unless some ep_cfg lane is <required lane> and every lane
# matches <allowed lanes>
ep_cfg_check() {
    grep -q "ep_cfg\[[0-9]*\]:.*($3)" "$1" ||
        { echo "no ep_cfg line naming $3 in the UCX info log"; return 1; }
    ep_cfg_other=$(grep -o 'ep_cfg\[[0-9]*\]:.*' "$1" | grep -o '([^()]*/[^()]*)' | tr -d '()' |
                   tr ' ' '\n' | sort -u | grep -v -x -E "$2" | tr '\n' ' ')
    [ -z "$ep_cfg_other" ] || { echo "ep_cfg lanes on other transports: $ep_cfg_other"; return 1; }
}

# ep_cfg_first <log> <lane>: the first ep_cfg line naming <lane>
ep_cfg_first() {
    grep -h -o "ep_cfg\[[0-9]*\]:.*($2).*" "$1" | head -1
}
