/*
 * xm_hv_sim_reaper.c - the sim backend's liveness thread: process death as
 * unmap-notify.  It holds pidfds of the processes on the other end of this
 * handle's ports and mappings; when one dies it clears the notify bytes
 * registered in the pages mapped from that process and raises the local
 * end of its ports.  It also watches the owners grant copy reaches
 * (xm_hv_sim_memcopy.c).
 */
#include "xm_hv_sim_int.h"
#include "xm_log.h"

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

static void reaper_watch_pid(sim_hv_t *s, int32_t pid)
{
    if (pid <= 0 || pid == s->pid)
        return;
    for (unsigned i = 0; i < s->nwatched; i++)
        if (s->watched[i].pid == pid)
            return;
    if (s->nwatched == sizeof(s->watched) / sizeof(s->watched[0]))
        return;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return;
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = s->nwatched + 1 };
    if (epoll_ctl(s->reaper_ep, EPOLL_CTL_ADD, pfd, &ev)) {
        close(pfd);
        return;
    }
    s->watched[s->nwatched].pid = pid;
    s->watched[s->nwatched].pidfd = pfd;
    s->nwatched++;
}

static void reaper_rescan(sim_hv_t *s)
{
    pthread_mutex_lock(&s->lock);
    for (uint32_t p = 1; p <= s->max_port; p++) {
        struct sim_port *e = &s->ev->p[p];
        struct sim_evtab *rt;
        if (e->pid != s->pid || atomic_load(&e->state) != PORT_INTERDOMAIN)
            continue;
        uint32_t rp = atomic_load(&e->remote_port);
        if (rp && rp < SIM_MAX_PORTS && !xm_sim_foreign_tables(s, e->remote_dom, NULL, &rt))
            reaper_watch_pid(s, rt->p[rp].pid);
    }
    for (struct sim_mapping *m = s->maps; m; m = m->next)
        reaper_watch_pid(s, m->owner_pid);
    pthread_mutex_unlock(&s->lock);
}

static void reaper_death(sim_hv_t *s, int32_t pid)
{
    static const uint8_t zero;

    pthread_mutex_lock(&s->lock);
    xm_debug("sim: process %d died: firing its unmap notifications", pid);
    for (struct sim_mapping *m = s->maps; m; m = m->next)
        if (m->owner_pid == pid && m->notify_off >= 0 && m->fd0 >= 0 &&
            pwrite(m->fd0, &zero, 1, (off_t)(m->off0 + (uint64_t)m->notify_off)) != 1)
            xm_debug("sim: clearing notify byte: %m");
    for (uint32_t p = 1; p <= s->max_port; p++) {
        struct sim_port *e = &s->ev->p[p];
        struct sim_evtab *rt;
        if (e->pid != s->pid || atomic_load(&e->state) != PORT_INTERDOMAIN)
            continue;
        uint32_t rp = atomic_load(&e->remote_port);
        if (rp && rp < SIM_MAX_PORTS && !xm_sim_foreign_tables(s, e->remote_dom, NULL, &rt) &&
            rt->p[rp].pid == pid)
            xm_sim_port_raise(s, e);
    }
    pthread_mutex_unlock(&s->lock);
}

static void *reaper_main(void *arg)
{
    sim_hv_t *s = arg;
    struct epoll_event evs[16];
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        int n = epoll_wait(s->reaper_ep, evs, 16, 100);
        for (int i = 0; i < n; i++) {
            uint32_t k = evs[i].data.u32;
            if (k & SIM_OWNER_TAG) {
                xm_sim_owner_died(s, k);
                continue;
            }
            if (k == 0) {
                uint64_t v;
                if (read(s->reaper_wake, &v, sizeof(v)) < 0)
                    continue;
                if (v >= (1ull << 62))
                    return NULL;     /* close() asked us to stop */
                continue;
            }
            k--;
            if (k >= s->nwatched || s->watched[k].pidfd < 0)
                continue;
            epoll_ctl(s->reaper_ep, EPOLL_CTL_DEL, s->watched[k].pidfd, NULL);
            close(s->watched[k].pidfd);
            s->watched[k].pidfd = -1;
            reaper_death(s, s->watched[k].pid);
        }
        reaper_rescan(s);
    }
}

int xm_sim_reaper_start(sim_hv_t *s)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };

    if (epoll_ctl(s->reaper_ep, EPOLL_CTL_ADD, s->reaper_wake, &ev) ||
        pthread_create(&s->reaper, NULL, reaper_main, s)) {
        xm_error("sim: starting the liveness thread: %m");
        return -1;
    }
    s->reaper_started = 1;
    return 0;
}

void xm_sim_reaper_stop(sim_hv_t *s)
{
    if (s->reaper_started) {
        uint64_t stop = 1ull << 62;
        if (write(s->reaper_wake, &stop, sizeof(stop)) == sizeof(stop))
            pthread_join(s->reaper, NULL);
        s->reaper_started = 0;
    }
}

/* new peers to watch: let the liveness thread look now, not in 100 ms */
void xm_sim_reaper_kick(sim_hv_t *s)
{
    uint64_t one = 1;

    if (s->reaper_started && write(s->reaper_wake, &one, sizeof(one)) < 0)
        xm_debug("sim: reaper wake: %m");
}
