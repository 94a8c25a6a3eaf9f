/*
 * xm_hv_sim_evtchn.c - the sim backend's event channels: a port file per
 * domain, pending and masked bits, wakeups as datagrams (xm_hv_sim.c).
 */
#include "xm_hv_sim_int.h"
#include "xm_log.h"

#include <unistd.h>

/* A port belongs to the process whose pid it holds while that process
 * lives: claiming is one compare-and-swap of the pid, from 0 (free) or a
 * dead process's, to ours.  (Claiming by the state word and writing the
 * pid after it let a second claimer, seeing CLAIMED with no live pid yet,
 * take the same port: TSan found it with two threads opening endpoints.) */
static int port_claim(sim_hv_t *s, uint32_t *port)
{
    for (uint32_t p = 1; p < SIM_MAX_PORTS; p++) {
        struct sim_port *e = &s->ev->p[p];
        int32_t owner = atomic_load(&e->pid);

        if (pid_alive(owner))
            continue;
        if (!atomic_compare_exchange_strong(&e->pid, &owner, s->pid))
            continue;
        atomic_store(&e->state, PORT_CLAIMED);
        e->efd = s->efd_id;
        pthread_mutex_lock(&s->lock);   /* the reaper thread reads it */
        if (p > s->max_port)
            s->max_port = p;
        pthread_mutex_unlock(&s->lock);
        atomic_store(&e->pending, 0);
        atomic_store(&e->masked, 0);
        *port = p;
        return 0;
    }
    xm_error("sim: no free event channel port in domain %u", s->base.domid);
    return -ENOSPC;
}

static struct sim_port *my_port(sim_hv_t *s, uint32_t port)
{
    if (port == 0 || port >= SIM_MAX_PORTS || s->ev->p[port].pid != s->pid ||
        atomic_load(&s->ev->p[port].state) == PORT_FREE)
        return NULL;
    return &s->ev->p[port];
}

int xm_sim_evt_alloc_unbound(xm_hv_t *hv, uint32_t remote, uint32_t *port)
{
    sim_hv_t *s = to_sim_hv(hv);
    int rc = port_claim(s, port);

    if (rc)
        return rc;
    s->ev->p[*port].remote_dom = remote;
    atomic_store(&s->ev->p[*port].state, PORT_UNBOUND);
    return 0;
}

/* raise a port of some domain: pending, then a wakeup unless masked */
void xm_sim_port_raise(sim_hv_t *s, struct sim_port *e)
{
    atomic_store(&e->pending, 1);
    if (!atomic_load(&e->masked))
        xm_sim_signal_fd(s, e->pid, e->efd);
}

int xm_sim_evt_bind(xm_hv_t *hv, uint32_t remote, uint32_t rport, uint32_t *lport)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_evtab *rt;
    struct sim_port *r;
    uint32_t st = PORT_UNBOUND;
    int rc;

    if (rport == 0 || rport >= SIM_MAX_PORTS)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    rc = xm_sim_foreign_tables(s, remote, NULL, &rt);
    pthread_mutex_unlock(&s->lock);
    if (rc)
        return rc;
    r = &rt->p[rport];
    if (r->remote_dom != s->base.domid || !pid_alive(r->pid) ||
        !atomic_compare_exchange_strong(&r->state, &st, PORT_BINDING))
        return -EINVAL;  /* not unbound for us: Xen says EINVAL too */
    rc = port_claim(s, lport);
    if (rc) {
        atomic_store(&r->state, PORT_UNBOUND);
        return rc;
    }
    struct sim_port *l = &s->ev->p[*lport];
    l->remote_dom = remote;
    atomic_store(&l->remote_port, rport);
    atomic_store(&l->state, PORT_INTERDOMAIN);
    atomic_store(&r->remote_port, *lport);
    atomic_store(&r->state, PORT_INTERDOMAIN);
    /* Xen marks a freshly bound port pending at once. */
    xm_sim_port_raise(s, l);
    xm_sim_reaper_kick(s);
    return 0;
}

int xm_sim_evt_notify(xm_hv_t *hv, uint32_t port)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_port *l = my_port(s, port), *r;
    struct sim_evtab *rt;
    uint32_t rp;

    if (!l)
        return -EINVAL;
    if (atomic_load(&l->state) != PORT_INTERDOMAIN)
        return 0;  /* unbound: Xen drops it silently */
    if (s->drop_every && ++s->notify_count % s->drop_every == 0)
        return 0;  /* fault injection: lost notification */
    if (s->delay_us)
        usleep(s->delay_us);
    pthread_mutex_lock(&s->lock);
    if (xm_sim_foreign_tables(s, l->remote_dom, NULL, &rt)) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    rp = atomic_load(&l->remote_port);
    r = rp && rp < SIM_MAX_PORTS ? &rt->p[rp] : NULL;
    if (r && atomic_load(&r->state) == PORT_INTERDOMAIN &&
        r->remote_dom == s->base.domid && atomic_load(&r->remote_port) == port)
        xm_sim_port_raise(s, r);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int xm_sim_evt_fd(xm_hv_t *hv) { return to_sim_hv(hv)->efd; }

int xm_sim_evt_pending(xm_hv_t *hv, uint32_t *port)
{
    sim_hv_t *s = to_sim_hv(hv);
    int found = 0, more = 0;

    xm_sim_wake_drain(s->efd);
    for (uint32_t p = 1; p <= s->max_port; p++) {
        struct sim_port *e = &s->ev->p[p];
        if (e->pid != s->pid || !atomic_load(&e->pending) || atomic_load(&e->masked))
            continue;
        if (found) {
            more = 1;
            break;
        }
        /* delivered: masked until unmask, as the evtchn driver does */
        atomic_store(&e->masked, 1);
        atomic_store(&e->pending, 0);
        *port = p;
        found = 1;
    }
    if (more)
        xm_sim_signal_fd(s, s->pid, s->efd_id);
    return found ? 0 : -EAGAIN;
}

int xm_sim_evt_unmask(xm_hv_t *hv, uint32_t port)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_port *l = my_port(s, port);

    if (!l)
        return -EINVAL;
    atomic_store(&l->masked, 0);
    if (atomic_load(&l->pending))
        xm_sim_signal_fd(s, s->pid, s->efd_id);
    return 0;
}

int xm_sim_evt_close(xm_hv_t *hv, uint32_t port)
{
    sim_hv_t *s = to_sim_hv(hv);
    struct sim_port *l = my_port(s, port);
    struct sim_evtab *rt;

    if (!l)
        return -EINVAL;
    if (atomic_load(&l->state) == PORT_INTERDOMAIN) {
        uint32_t rp = atomic_load(&l->remote_port);
        pthread_mutex_lock(&s->lock);
        if (!xm_sim_foreign_tables(s, l->remote_dom, NULL, &rt) && rp && rp < SIM_MAX_PORTS) {
            struct sim_port *r = &rt->p[rp];
            uint32_t st = PORT_INTERDOMAIN;
            /* the remote end falls back to unbound, as in Xen */
            if (r->remote_dom == s->base.domid && atomic_load(&r->remote_port) == port)
                atomic_compare_exchange_strong(&r->state, &st, PORT_UNBOUND);
        }
        pthread_mutex_unlock(&s->lock);
    }
    /* free, then give up the pid: from then on it may be claimed again */
    atomic_store(&l->state, PORT_FREE);
    atomic_store(&l->pid, 0);
    return 0;
}
