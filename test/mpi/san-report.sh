# Sourced by the MPI test scripts.
# san_report <log>: the first line of an ASan, LSan or UBSan report in a
# run's output; false if there is none
san_report() {
    grep -m1 -E '^==[0-9]+==ERROR: [A-Za-z]+Sanitizer|: runtime error: ' "$1"
}

# san_why <why> <log>: why a test failed, with the first line of the log's
# sanitizer report after it when there is one
san_why() {
    local rep
    if [ -n "${2:-}" ] && [ -f "$2" ] && rep=$(san_report "$2"); then
        echo "${1:+$1: }$rep"
    else
        echo "$1"
    fi
}

# san_show <log>: the log's sanitizer report (what it found and where),
# indented; nothing without one
san_show() {
    local rep
    rep=$(san_report "$1") || return 0
    grep -m1 -A40 -F "$rep" "$1" | sed 's/^/    /'
}
