# Sourced by the netmod's test scripts: reading the statistics lines every
# rank prints at exit with XENMPI_NETMOD_STATS=1
#   xen netmod: rank R (domain D): sent ... received M messages, B bytes
#   xen netmod: rank R ... zero-copy received Z bytes in R messages, I more inline; ...
#   xen netmod: rank R ... pipelined P bytes; ...
#   xen netmod: rank R ... registrations: U reused, N new, S stale

# netmod_lines <log>: the log with every statistics line on a line of its
# own: mpiexec merges the ranks' stdout and stderr, so one rank's line may
# follow another's output that has no newline yet ("pingpong: OKxen netmod:
# rank 1 ...")
netmod_lines() { sed 's/xen netmod: rank [0-9]* /\n&/g' "$1"; }

# netmod_ranks <log>: how many ranks printed their statistics
netmod_ranks() { netmod_lines "$1" | grep -c '^xen netmod: rank [0-9]* (domain'; }

# netmod_bytes <log>: bytes all ranks received through the netmod
netmod_bytes() {
    netmod_lines "$1" | sed -n 's/^xen netmod: rank [0-9]* (domain [0-9]*): .*received [0-9]* messages, \([0-9]*\) bytes; registrations.*/\1/p' |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# zcopy_bytes <log>: data bytes all ranks copied from their senders' registrations
zcopy_bytes() {
    netmod_lines "$1" | sed -n 's/^xen netmod: rank .* zero-copy received \([0-9]*\) bytes in .*/\1/p' |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# rndv_msgs <log>: rendezvous (zero-copy) messages all ranks received
rndv_msgs() {
    netmod_lines "$1" | sed -n 's/^xen netmod: rank .* zero-copy received [0-9]* bytes in \([0-9]*\) messages,.*/\1/p' |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# inline_bytes <log>: data bytes of those messages that came with their
# descriptors (what lies outside whole pages of the sender's registration)
inline_bytes() {
    netmod_lines "$1" | sed -n 's/^xen netmod: rank .* messages, \([0-9]*\) more inline;.*/\1/p' |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# piped_bytes <log>: data bytes of multi-record messages all ranks received
# straight into MPIDIG's buffers (pipelined)
piped_bytes() {
    netmod_lines "$1" | sed -n 's/^xen netmod: rank .* pipelined \([0-9]*\) bytes;.*/\1/p' |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# regs_reused <log>: zero-copy sends all ranks made from a registration
# kept from an earlier message (the registration cache's hits)
regs_reused() {
    netmod_lines "$1" | sed -n 's/^xen netmod: rank .* registrations: \([0-9]*\) reused,.*/\1/p' |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# regs_stale <log>: registrations all ranks dropped because the memory
# under one of their grants changed (munmap, MADV_DONTNEED: real Xen only;
# a sim grant follows the mapping)
regs_stale() {
    netmod_lines "$1" | sed -n 's/^xen netmod: rank .* registrations: [0-9]* reused, [0-9]* new, \([0-9]*\) stale.*/\1/p' |
        awk '{ s += $1 } END { printf "%.0f\n", s }'
}
