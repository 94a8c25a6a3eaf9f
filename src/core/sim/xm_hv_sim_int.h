/*
 * xm_hv_sim_int.h - the sim backend's insides, shared by its files:
 *
 *   xm_hv_sim.c          open/close, the host's files, wakeup sockets
 *   xm_hv_sim_gnttab.c   grant tables: share, map, the entry seqlock
 *   xm_hv_sim_memcopy.c  grant_mem and grant copy (the process_vm engine,
 *                        owner pidfds)
 *   xm_hv_sim_evtchn.c   event channels
 *   xm_hv_sim_store.c    the xenstore stand-in: lock, nodes, watches
 *   xm_hv_sim_reaper.c   the liveness thread: process death as unmap-notify
 *
 * The shared layouts below are the host's files in /dev/shm, mapped by
 * every process of the simulated host; an all-zero file is an empty table.
 */
#ifndef XM_HV_SIM_INT_H
#define XM_HV_SIM_INT_H

#include "xm_hv.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#define SIM_MAX_GRANTS 32768u     /* Xen default: 64 frames of v1 entries */
#define SIM_MAX_PORTS 4096u
#define SIM_STORE_NODES 4096u
#define SIM_STORE_WATCHES 512u
#define SIM_WATCH_QUEUE 16u
#define SIM_TOKEN_MAX 64u
#define SIM_MAX_OWNERS 1024u      /* grant_mem owners one process copies from */
#define SIM_OWNER_TAG 0x80000000u /* liveness thread: an owner's pidfd */
#define SIM_RUN_IOV 1024u         /* IOV_MAX: iovecs per side of one call */
#define SIM_RUN_SEGS 1024u        /* segments in one process_vm_* call */

/* ---- shared layouts (all-zero = empty) ---- */

enum { SIM_GNT_MEMFD = 0, SIM_GNT_USER = 1 };

struct sim_gnt {
    _Atomic uint32_t seq; /* odd while being changed */
    uint32_t active;
    uint32_t peer;
    uint32_t readonly;
    int32_t pid;          /* owning process */
    int32_t fd;           /* memfd kind: its memfd */
    uint64_t ino;         /* memfd kind: identity of that memfd */
    uint32_t page;        /* memfd kind: page inside the memfd */
    int32_t notify_off;   /* byte cleared on unshare/death, -1 none (stored +1) */
    uint32_t kind;        /* SIM_GNT_*; all-zero is the memfd kind */
    uint32_t pad;
    uint64_t vaddr;       /* user kind: the page's address in pid */
    uint64_t start;       /* user kind: pid's start time (against pid reuse) */
};

struct sim_gnttab {
    _Atomic uint32_t nr_entries; /* fixed by the domain's first process */
    _Atomic uint32_t hint;
    uint32_t pad[14];
    struct sim_gnt e[SIM_MAX_GRANTS];
};

enum { PORT_FREE = 0, PORT_CLAIMED, PORT_UNBOUND, PORT_BINDING, PORT_INTERDOMAIN };

struct sim_port {
    _Atomic uint32_t state;
    uint32_t remote_dom;
    _Atomic uint32_t remote_port;
    _Atomic int32_t pid;        /* the owner; claimed by compare-and-swap */
    int32_t efd;
    _Atomic uint32_t pending;
    _Atomic uint32_t masked;
    uint32_t pad;
};

struct sim_evtab {
    struct sim_port p[SIM_MAX_PORTS];
};

struct sim_node {
    uint32_t used;
    uint32_t len;
    uint32_t nperms;
    uint32_t pad;
    xm_store_perm_t perms[XM_STORE_MAX_PERMS];
    char path[XM_STORE_MAX_PATH];
    char value[XM_STORE_MAX_VALUE];
};

struct sim_watch {
    uint32_t used;
    int32_t pid;
    int32_t efd;
    uint32_t domid;
    uint32_t head, tail; /* queue of fired paths */
    uint32_t overflow;
    uint32_t pad;
    char path[XM_STORE_MAX_PATH];
    char token[SIM_TOKEN_MAX];
    char q[SIM_WATCH_QUEUE][XM_STORE_MAX_PATH];
};

struct sim_store {
    _Atomic int32_t lock_pid;
    uint32_t pad[15];
    struct sim_node n[SIM_STORE_NODES];
    struct sim_watch w[SIM_STORE_WATCHES];
};

struct sim_domains {
    _Atomic uint32_t next_domid;
};

/* ---- per-process state ---- */

struct xm_sim_share {
    struct xm_sim_share *next;
    void *addr;
    unsigned count;
    int fd;
    int notify_off;
    int notify_port;
    uint32_t refs[];
};

/* one grant_mem grant of this process */
struct sim_memgrant {
    struct sim_memgrant *next;
    uint64_t id;
    uintptr_t addr;
    uint32_t peer;
    unsigned count;
    uint32_t refs[];
};

/* A process whose grant_mem pages this process copies: its pidfd is
 * watched by the liveness thread, which sets dead when it exits. */
struct sim_owner {
    int32_t pid;
    int pidfd;            /* -1 when pidfds are unavailable */
    uint64_t start;       /* its start time, as the grant entries record it */
    _Atomic uint32_t gen; /* bumped whenever the slot is (re)filled */
    _Atomic uint32_t dead;
};

struct sim_mapping {
    struct sim_mapping *next;
    void *addr;
    unsigned count;
    uint32_t owner;
    int32_t owner_pid;
    int fd0;          /* page 0's file, kept for notify-byte clearing */
    uint64_t off0;
    int notify_off;   /* owner's registered byte, -1 none */
    int notify_port;  /* my port to raise when I unmap, -1 none */
};

typedef struct sim_hv {
    struct xm_hv base;
    char dir[PATH_MAX];
    char host[128];
    struct sim_gnttab *gnt;        /* my domain's grant table */
    struct sim_evtab *ev;          /* my domain's ports */
    struct sim_store *store;
    int efd;                       /* event channel fd */
    int wfd;                       /* store watch fd */
    pid_t pid;
    pthread_mutex_t lock;          /* local lists, fd cache, foreign tables */
    struct xm_sim_share *shares;
    struct sim_mapping *maps;
    struct sim_memgrant *memgrants;
    uint64_t memgrant_ids;         /* last handle issued: ids start at 1 */
    uint64_t start;                /* this process's start time, 0 unknown */
    struct sim_owner owners[SIM_MAX_OWNERS];
    unsigned nowners;
    struct { uint32_t domid; struct sim_gnttab *gnt; struct sim_evtab *ev; } foreign[64];
    unsigned nforeign;
    int32_t efd_id, wfd_id;        /* wakeup socket names */
    int sendsock;
    /* reaper */
    pthread_t reaper;
    int reaper_ep, reaper_wake;
    int reaper_started;
    struct { int32_t pid; int pidfd; } watched[256];
    unsigned nwatched;
    /* fault injection */
    unsigned drop_every, notify_count;
    uint32_t max_port;             /* highest port this handle claimed */
    unsigned delay_us;
    unsigned copy_delay_us;
} sim_hv_t;

static inline sim_hv_t *to_sim_hv(xm_hv_t *hv) { return (sim_hv_t *)hv; }

static inline int pid_alive(int32_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/* Shared by the backend's files only: not exported from libxenmpi. */
#pragma GCC visibility push(hidden)

/* xm_hv_sim.c */
int xm_sim_foreign_tables(sim_hv_t *s, uint32_t domid, struct sim_gnttab **g,
                          struct sim_evtab **e);
void xm_sim_wake_drain(int fd);
void xm_sim_signal_fd(sim_hv_t *s, int32_t pid, int32_t id);

/* xm_hv_sim_gnttab.c */
int xm_sim_gnt_snapshot(struct sim_gnttab *t, uint32_t ref, struct sim_gnt *out);
int xm_sim_gnt_alloc_entry(sim_hv_t *s, const struct sim_gnt *v, uint32_t *ref);
void xm_sim_gnt_end(sim_hv_t *s, uint32_t ref);
int xm_sim_gnt_check(const sim_hv_t *s, const struct sim_gnt *snap, int write);
int xm_sim_gnt_open_snap(struct sim_gnttab *t, uint32_t ref, int write, int internal_rw,
                         const struct sim_gnt *snap);
int xm_sim_share(xm_hv_t *hv, uint32_t peer, unsigned count, int writable,
                 int notify_off, int notify_port, void **addr, uint32_t *refs);
int xm_sim_unshare(xm_hv_t *hv, void *addr, unsigned count);
int xm_sim_map(xm_hv_t *hv, uint32_t owner, unsigned count, const uint32_t *refs,
               int writable, int notify_port, void **addr);
int xm_sim_unmap(xm_hv_t *hv, void *addr, unsigned count);

/* xm_hv_sim_memcopy.c */
int xm_sim_grant_mem(xm_hv_t *hv, uint32_t peer, void *addr, unsigned count,
                     int writable, uint64_t *handle, uint32_t *refs);
int xm_sim_grant_mem_end(xm_hv_t *hv, uint64_t handle);
int xm_sim_grant_mem_stale(xm_hv_t *hv, uint64_t *handles, unsigned max);
int xm_sim_copy(xm_hv_t *hv, xm_copy_seg_t *segs, unsigned count);
void xm_sim_owner_died(sim_hv_t *s, uint32_t key);

/* xm_hv_sim_evtchn.c */
void xm_sim_port_raise(sim_hv_t *s, struct sim_port *e);
int xm_sim_evt_alloc_unbound(xm_hv_t *hv, uint32_t remote, uint32_t *port);
int xm_sim_evt_bind(xm_hv_t *hv, uint32_t remote, uint32_t rport, uint32_t *lport);
int xm_sim_evt_notify(xm_hv_t *hv, uint32_t port);
int xm_sim_evt_fd(xm_hv_t *hv);
int xm_sim_evt_pending(xm_hv_t *hv, uint32_t *port);
int xm_sim_evt_unmask(xm_hv_t *hv, uint32_t port);
int xm_sim_evt_close(xm_hv_t *hv, uint32_t port);

/* xm_hv_sim_store.c */
void xm_sim_store_lock(sim_hv_t *s);
void xm_sim_store_unlock(sim_hv_t *s);
void xm_sim_store_ensure_home(sim_hv_t *s);
int xm_sim_store_read(xm_hv_t *hv, const char *path, char **val, size_t *len);
int xm_sim_store_write(xm_hv_t *hv, const char *path, const void *val, size_t len);
int xm_sim_store_remove(xm_hv_t *hv, const char *path);
int xm_sim_store_list(xm_hv_t *hv, const char *path, char ***names, unsigned *count);
int xm_sim_store_create(xm_hv_t *hv, const char *path, const void *val, size_t len,
                        const xm_store_perm_t *perms, unsigned count);
int xm_sim_store_owner(xm_hv_t *hv, const char *path, uint32_t *domid);
int xm_sim_store_set_perms(xm_hv_t *hv, const char *path,
                           const xm_store_perm_t *perms, unsigned count);
int xm_sim_store_watch(xm_hv_t *hv, const char *path, const char *token);
int xm_sim_store_unwatch(xm_hv_t *hv, const char *path, const char *token);
int xm_sim_store_watch_fd(xm_hv_t *hv);
int xm_sim_store_read_watch(xm_hv_t *hv, char **path, char **token);

/* xm_hv_sim_reaper.c */
int xm_sim_reaper_start(sim_hv_t *s);
void xm_sim_reaper_stop(sim_hv_t *s);
void xm_sim_reaper_kick(sim_hv_t *s);

#pragma GCC visibility pop

#endif
