# Sourced by the MPI test scripts.
# san_report <log>: the first line of an ASan, LSan or UBSan report in a
# run's output; false if there is none
san_report() {
    grep -m1 -E '^==[0-9]+==ERROR: [A-Za-z]+Sanitizer|: runtime error: ' "$1"
}
