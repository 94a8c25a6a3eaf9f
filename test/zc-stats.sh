# Sourced by the test scripts: reading the zero-copy statistics line every
# process prints at exit with XENMPI_ZC_STATS=1
#   xenmpi-zc: pid=P hits=H misses=M grants=G granted_pages=GP shared=S revokes=R
#              releases=L nospc=N fallback_bytes=F zc_bytes=Z ring_bytes=R
#              pushed_bytes=P

# zc_sum <file> <pid|all> <field>: the field summed over the stats lines
# (of one process), "none" without a stats line.  A stats line (stderr) may
# start in the middle of a line of UCX's log (stdout, block-buffered).
zc_sum() {
    awk -v p="$2" -v f="$3" '
        match($0, /xenmpi-zc: pid=[0-9]+ .*/) {
            nf = split(substr($0, RSTART), w, " ")
            delete v
            for (i = 2; i <= nf; i++) { split(w[i], kv, "="); v[kv[1]] = kv[2] }
            if (p == "all" || v["pid"] == p) { s += v[f]; n++ }
        }
        END { if (n) printf "%.0f\n", s; else print "none" }' "$1"
}
