/*
 * xen_init.c - the xen netmod's init and finalize: the core endpoint, the
 * address exchange and the one-host check.
 */
#include "mpidimpl.h"
#include "xen_impl.h"
#include "xen_noinline.h"
#include "mpidu_bc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

int MPIDI_XEN_init_local(int *tag_bits)
{
    *tag_bits = MPIR_TAG_BITS_DEFAULT;   /* MPIDIG matches: no transport tag field */
    return MPI_SUCCESS;
}

/* Every rank this netmod serves (on another node in MPICH's view) must
 * be on our host: a Xen channel cannot leave it. */
static int check_one_host(void)
{
    const xm_ep_addr_t *me = &MPIDI_XEN_global.addr;
    int *node_map = MPIR_Process.node_map, bad = 0;

    for (int i = 0; i < MPIDI_XEN_global.size; i++) {
        const xm_ep_addr_t *a = &MPIDI_XEN_global.peers[i].addr;
        if (node_map[i] == node_map[MPIDI_XEN_global.rank] || a->host_hash == me->host_hash)
            continue;
        if (bad++ < 8)
            fprintf(stderr, "xen netmod: rank %d is on host %016" PRIx64 ", rank %d on host %016"
                    PRIx64 ": a Xen channel joins VMs of one host only\n", i, a->host_hash,
                    MPIDI_XEN_global.rank, me->host_hash);
    }
    if (!bad)
        return MPI_SUCCESS;
    fprintf(stderr, "xen netmod: %d rank(s) on other hosts. For a job across hosts use "
            "Debian's MPICH (ch4:ucx) with UCX_TLS=xen,tcp (xenmpi-run), which takes xen "
            "between the VMs of one host and tcp between hosts\n", bad);
    return MPI_ERR_OTHER;
}

/* An init error aborts the job, and hydra's mpiexec exits at the abort
 * without reading what the ranks wrote before it: the message naming the
 * cause was lost in about one failed start in ten.  Wait (2 s at most)
 * until the launcher has read our stderr; the launcher forwards what it
 * read before it handles the abort that follows.  Only a pipe is waited
 * on (a terminal or a file has nothing to lose). */
static void stderr_drain(void)
{
    struct stat st;

    fflush(stderr);
    if (fstat(STDERR_FILENO, &st) || !S_ISFIFO(st.st_mode))
        return;
    for (int i = 0; i < 2000; i++) {
        int unread = 0;

        if (ioctl(STDERR_FILENO, FIONREAD, &unread) || unread <= 0)
            return;
        usleep(1000);
    }
}

int MPIDI_XEN_init_world(void)
{
    int mpi_errno = MPI_SUCCESS, rc, len = 0;
    xm_ep_params_t ep_params = { 0 };
    void *table = NULL;

    MPIDI_XEN_global.rank = MPIR_Process.rank;
    MPIDI_XEN_global.size = MPIR_Process.size;
    if (MPIR_CVAR_CH4_ROOTS_ONLY_PMI) {
        fprintf(stderr, "xen netmod: MPIR_CVAR_CH4_ROOTS_ONLY_PMI is not supported: unset it\n");
        MPIR_ERR_SETANDJUMP1(mpi_errno, MPI_ERR_OTHER, "**notimpl", "**notimpl %s",
                             "xen netmod with MPIR_CVAR_CH4_ROOTS_ONLY_PMI");
    }
    rc = xm_hv_open(&MPIDI_XEN_global.hv);
    if (rc < 0) {
        /* the core has said which backend and why */
        fprintf(stderr, "xen netmod: rank %d: no hypervisor interface (XENMPI_BACKEND)\n",
                MPIDI_XEN_global.rank);
        MPIR_ERR_SETANDJUMP(mpi_errno, MPI_ERR_OTHER, "**other");
    }
    ep_params.recv_cb = MPIDI_XEN_recv_cb;
    ep_params.event_cb = MPIDI_XEN_event_cb;
    /* a ring the grant table or gntalloc's limit refuses falls back to a
     * smaller one that still holds a record */
    ep_params.min_msg = MPIDI_XEN_FRAG;
    rc = xm_endpoint_open(MPIDI_XEN_global.hv, &ep_params, &MPIDI_XEN_global.ep);
    if (rc == 0)
        rc = xm_endpoint_addr(MPIDI_XEN_global.ep, &MPIDI_XEN_global.addr);
    if (rc == 0)
        MPIDI_XEN_global.max_msg = xm_endpoint_max_msg(MPIDI_XEN_global.ep);
    if (rc < 0) {
        fprintf(stderr, "xen netmod: rank %d: opening the endpoint: %s\n",
                MPIDI_XEN_global.rank, strerror(-rc));
        MPIR_ERR_SETANDJUMP(mpi_errno, MPI_ERR_OTHER, "**other");
    }

    mpi_errno = MPIDU_bc_table_create(MPIDI_XEN_global.rank, MPIDI_XEN_global.size,
                                      MPIR_Process.node_map, &MPIDI_XEN_global.addr,
                                      (int) sizeof(xm_ep_addr_t), TRUE, 0, &table, &len);
    MPIR_ERR_CHECK(mpi_errno);
    MPIDI_XEN_global.peers = MPL_calloc(MPIDI_XEN_global.size, sizeof(MPIDI_XEN_peer_t),
                                        MPL_MEM_ADDRESS);
    MPIR_ERR_CHKANDJUMP1(!MPIDI_XEN_global.peers, mpi_errno, MPI_ERR_OTHER, "**nomem",
                         "**nomem %s", "xen netmod peers");
    for (int i = 0; i < MPIDI_XEN_global.size; i++) {
        MPIDI_XEN_peer_t *p = &MPIDI_XEN_global.peers[i];
        p->rank = i;
        memcpy(&p->addr, (char *) table + (size_t) i * sizeof(xm_ep_addr_t), sizeof(p->addr));
        p->tail = &p->head;
        MPIDIU_get_av(0, i).netmod.xen.peer = p;
    }
    MPIDU_bc_table_destroy();
    mpi_errno = check_one_host();
    MPIR_ERR_CHECK(mpi_errno);

    /* zero-copy for large contiguous messages (XENMPI_NETMOD_ZCOPY_MIN
     * bytes, default 32 KiB; "off": never); the core measures per channel
     * whether grant copy or the ring moves them faster (XM_XFER_ZC_AUTO),
     * unless XENMPI_NETMOD_ZCOPY_PATH says grant or ring */
    {
        xm_xfer_params_t xp = { .zcopy = XM_XFER_ZC_AUTO };
        const char *zmin = getenv("XENMPI_NETMOD_ZCOPY_MIN");
        const char *zpath = getenv("XENMPI_NETMOD_ZCOPY_PATH");
        char *end = NULL;

        if (zpath && !strcmp(zpath, "grant")) {
            xp.zcopy = XM_XFER_ZC_ON;
        } else if (zpath && !strcmp(zpath, "ring")) {
            xp.zcopy = XM_XFER_ZC_OFF;
        } else if (zpath && *zpath && strcmp(zpath, "auto")) {
            fprintf(stderr, "xen netmod: XENMPI_NETMOD_ZCOPY_PATH=%s: want auto, grant or "
                    "ring\n", zpath);
            MPIR_ERR_SETANDJUMP(mpi_errno, MPI_ERR_OTHER, "**other");
        }

        MPIDI_XEN_global.zcopy_min = MPIDI_XEN_ZCOPY_MIN_DEFAULT;
        if (zmin && !strcmp(zmin, "off")) {
            MPIDI_XEN_global.zcopy_min = SIZE_MAX;
        } else if (zmin && *zmin) {
            unsigned long long v = strtoull(zmin, &end, 0);
            if (*end || v < MPIDI_XEN_EAGER_LIMIT) {
                fprintf(stderr, "xen netmod: XENMPI_NETMOD_ZCOPY_MIN=%s: want a byte count of "
                        "at least %d, or \"off\"\n", zmin, MPIDI_XEN_EAGER_LIMIT);
                MPIR_ERR_SETANDJUMP(mpi_errno, MPI_ERR_OTHER, "**other");
            }
            MPIDI_XEN_global.zcopy_min = (size_t) v;
        }
        rc = xm_xfer_attach(MPIDI_XEN_global.ep, &xp, &MPIDI_XEN_global.xfer);
        if (rc < 0) {
            fprintf(stderr, "xen netmod: zero-copy on the endpoint: %s\n", strerror(-rc));
            MPIR_ERR_SETANDJUMP(mpi_errno, MPI_ERR_OTHER, "**other");
        }
        /* registrations kept across messages (XENMPI_NETMOD_REG_CACHE
         * unused ones, default 64; 0: deregister after each message) */
        {
            const char *rcs = getenv("XENMPI_NETMOD_REG_CACHE");
            unsigned long long keep = 64;

            if (rcs && *rcs) {
                keep = strtoull(rcs, &end, 0);
                if (*end || keep > 1u << 20) {
                    fprintf(stderr, "xen netmod: XENMPI_NETMOD_REG_CACHE=%s: want a number "
                            "of registrations from 0 to %u\n", rcs, 1u << 20);
                    MPIR_ERR_SETANDJUMP(mpi_errno, MPI_ERR_OTHER, "**other");
                }
            }
            rc = xm_zc_regcache_open(MPIDI_XEN_global.ep, (unsigned) keep,
                                     &MPIDI_XEN_global.regcache);
            if (rc < 0) {
                fprintf(stderr, "xen netmod: registration cache: %s\n", strerror(-rc));
                MPIR_ERR_SETANDJUMP(mpi_errno, MPI_ERR_OTHER, "**other");
            }
        }
        mpi_errno = MPIDI_XEN_rndv_init();
        MPIR_ERR_CHECK(mpi_errno);
    }
    if (MPIR_CVAR_DEBUG_SUMMARY && MPIDI_XEN_global.rank == 0)
        printf("==== xen netmod: host %016" PRIx64 ", %s backend, %zu-byte messages ====\n",
               MPIDI_XEN_global.addr.host_hash, xm_hv_backend_name(MPIDI_XEN_global.hv),
               xm_endpoint_max_msg(MPIDI_XEN_global.ep));
  fn_exit:
    return mpi_errno;
  fn_fail:
    stderr_drain();
    goto fn_exit;
}

int MPIDI_XEN_post_init(void)
{
    return MPI_SUCCESS;
}

int MPIDI_XEN_mpi_finalize_hook(void)
{
    int mpi_errno = MPIDI_XEN_drain();
    const char *st = getenv("XENMPI_NETMOD_STATS");

    if (st && *st && strcmp(st, "0")) {
        xm_zc_regcache_stats_t rs = { 0 };

        if (MPIDI_XEN_global.regcache)
            xm_zc_regcache_stats(MPIDI_XEN_global.regcache, &rs);
        fprintf(stderr, "xen netmod: rank %d (domain %u): sent %" PRIu64 " messages, %" PRIu64
                " bytes; zero-copy received %" PRIu64 " bytes in %" PRIu64 " messages, %"
                PRIu64 " more inline; pipelined %" PRIu64
                " bytes; received %" PRIu64 " messages, %" PRIu64 " bytes; registrations: %"
                PRIu64 " reused, %" PRIu64 " new, %" PRIu64 " stale%s\n",
                MPIDI_XEN_global.rank, MPIDI_XEN_global.addr.domid,
                MPIDI_XEN_global.msgs_sent, MPIDI_XEN_global.bytes_sent,
                MPIDI_XEN_global.zcopy_bytes, MPIDI_XEN_global.rndv_msgs,
                MPIDI_XEN_global.inline_bytes, MPIDI_XEN_global.piped_bytes,
                MPIDI_XEN_global.msgs_recv,
                MPIDI_XEN_global.bytes_recv, rs.hits, rs.misses, rs.stale,
                rs.keeps ? "" : " (not kept: the backend cannot report stale grants)");
    }

    MPIDI_XEN_global.closing = 1;   /* peers going away now is no failure */
    xm_endpoint_close(MPIDI_XEN_global.ep);
    MPIDI_XEN_global.ep = NULL;
    xm_zc_regcache_close(MPIDI_XEN_global.regcache);   /* nothing left to withdraw */
    MPIDI_XEN_global.regcache = NULL;
    xm_xfer_detach(MPIDI_XEN_global.xfer);
    MPIDI_XEN_global.xfer = NULL;
    MPIDI_XEN_rx_free();
    MPL_free(MPIDI_XEN_global.peers);
    MPIDI_XEN_global.peers = NULL;
    xm_hv_close(MPIDI_XEN_global.hv);
    MPIDI_XEN_global.hv = NULL;
    return mpi_errno;
}
