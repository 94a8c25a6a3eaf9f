/*
 * xenmpi-topo - in a domU: where this VM's vCPUs really run (as dom0
 * published it), a cpu list per local rank, and a drawing of the host.
 */
#include "xm_topo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char usage[] =
    "usage: xenmpi-topo [--require-dom0] [command]\n"
    "  show                      each vCPU's pCPUs, physical core, package, NUMA node\n"
    "                            and SMT siblings (the default)\n"
    "  peer DOMID                distance classes to another domain's vCPUs\n"
    "  propose NRANKS [--peer RANK=DOMID]... [--peer all=DOMID]\n"
    "                            a cpu list per local rank, for mpiexec.mpich -bind-to\n"
    "                            and hwloc-bind; a rank with a peer domain is kept on\n"
    "                            that domain's NUMA node when one is free\n"
    "  draw FILE.{png,svg,pdf}   the host topology with this VM's pCPUs marked (lstopo)\n"
    "  --require-dom0            fail instead of falling back when dom0 published nothing\n";

static int parse_uint(const char *s, unsigned long max, unsigned long *v)
{
    char *end;
    errno = 0;
    *v = strtoul(s, &end, 10);
    return *s && !*end && !errno && *v <= max && *s != '-' ? 0 : -1;
}

static int cmd_propose(xm_topo_t *t, int argc, char **argv)
{
    unsigned long n, r, d;
    uint32_t *peer;
    xm_topo_plan_t *p;
    char buf[8192];

    if (argc < 1 || parse_uint(argv[0], 65536, &n) || n == 0) {
        fprintf(stderr, "xenmpi-topo: propose needs a number of ranks\n");
        return 2;
    }
    peer = malloc(n * sizeof(*peer));
    if (!peer)
        return 1;
    for (unsigned i = 0; i < n; i++)
        peer[i] = XM_DOMID_INVALID;
    for (int i = 1; i < argc; i += 2) {
        char *eq = i + 1 < argc ? strchr(argv[i + 1], '=') : NULL;
        const char *rank = argv[i + 1 < argc ? i + 1 : i];
        if (strcmp(argv[i], "--peer") || !eq) {
            fprintf(stderr, "xenmpi-topo: expected --peer RANK=DOMID or --peer all=DOMID, "
                    "got \"%s\"\n", argv[i]);
            free(peer);
            return 2;
        }
        *eq = 0;
        if (parse_uint(eq + 1, 0x7fef, &d) ||
            (strcmp(rank, "all") && parse_uint(rank, n - 1, &r))) {
            fprintf(stderr, "xenmpi-topo: --peer %s=%s: the rank must be below %lu (or "
                    "all), the domain a domain id\n", rank, eq + 1, n);
            free(peer);
            return 2;
        }
        if (!strcmp(rank, "all"))
            for (unsigned k = 0; k < n; k++)
                peer[k] = (uint32_t)d;
        else
            peer[r] = (uint32_t)d;
    }
    if (xm_topo_propose(t, (unsigned)n, peer, &p)) {
        fprintf(stderr, "xenmpi-topo: %s\n", xm_topo_last_error());
        free(peer);
        return 1;
    }
    free(peer);
    printf("# %lu ranks in domain %u (%s)\n", n, xm_topo_domid(t),
           xm_topo_source(t) == XM_TOPO_SRC_DOM0 ? "host topology from dom0"
                                                 : "hwloc inside this VM only");
    if (xm_topo_plan_format(p, XM_TOPO_FMT_MPICH, 0, buf, sizeof(buf)) == 0)
        printf("mpiexec.mpich -bind-to %s -n %lu <program>\n", buf, n);
    for (unsigned i = 0; i < n; i++)
        if (xm_topo_plan_format(p, XM_TOPO_FMT_HWLOC, i, buf, sizeof(buf)) == 0)
            printf("rank %u: hwloc-bind -p %s -- <program>\n", i, buf);
    {
        const char *s = xm_topo_plan_notes(p);
        while (*s) {
            const char *e = strchr(s, '\n');
            int len = e ? (int)(e - s) : (int)strlen(s);
            printf("# %.*s\n", len, s);
            s += len + (e ? 1 : 0);
        }
    }
    xm_topo_plan_free(p);
    return 0;
}

static int cmd_draw(xm_topo_t *t, const char *out)
{
    const char *dot = strrchr(out, '.'), *fmt;
    char tmp[] = "/tmp/xenmpi-topo-XXXXXX", legend[512], *xml;
    size_t len;
    int fd, st;
    pid_t pid;

    if (!dot || (strcmp(dot, ".png") && strcmp(dot, ".svg") && strcmp(dot, ".pdf"))) {
        fprintf(stderr, "xenmpi-topo: draw: the file must end in .png, .svg or .pdf\n");
        return 2;
    }
    fmt = dot + 1;
    if (xm_topo_export_marked_xml(t, &xml, &len)) {
        fprintf(stderr, "xenmpi-topo: %s\n", xm_topo_last_error());
        return 1;
    }
    fd = mkstemp(tmp);
    if (fd < 0 || write(fd, xml, len) != (ssize_t)len) {
        fprintf(stderr, "xenmpi-topo: %s: %s\n", tmp, strerror(errno));
        free(xml);
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return 1;
    }
    close(fd);
    free(xml);
    snprintf(legend, sizeof(legend),
             "domain %u: pCPUs of pinned vCPUs dark orange, of floating vCPUs light orange%s",
             xm_topo_domid(t),
             xm_topo_source(t) == XM_TOPO_SRC_DOM0 ? "" : " (this VM's own view: no dom0 data)");
    pid = fork();
    if (pid == 0) {
        /* native SVG keeps the text (cairo draws glyphs) */
        execlp("lstopo", "lstopo", "--if", "xml", "-i", tmp, "--of",
               strcmp(fmt, "svg") ? fmt : "nativesvg", "-f",
               "--append-legend", legend, out, (char *)NULL);
        fprintf(stderr, "xenmpi-topo: cannot run lstopo (%s): install the Debian "
                "package hwloc\n", strerror(errno));
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        unlink(tmp);
        return 1;
    }
    unlink(tmp);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 127)
            fprintf(stderr, "xenmpi-topo: lstopo could not write %s as %s: the Debian "
                    "package hwloc has the graphical lstopo (hwloc-nox has no %s output)\n",
                    out, fmt, fmt);
        return 1;
    }
    printf("%s: host topology, domain %u's pCPUs marked\n", out, xm_topo_domid(t));
    return 0;
}

int main(int argc, char **argv)
{
    unsigned flags = 0;
    const char *cmd = "show";
    xm_hv_t *hv;
    xm_topo_t *t;
    char *text;
    int i = 1, rc = 0;

    if (i < argc && !strcmp(argv[i], "--require-dom0"))
        flags |= XM_TOPO_REQUIRE_DOM0, i++;
    if (i < argc)
        cmd = argv[i++];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "show") && strcmp(cmd, "peer") && strcmp(cmd, "propose") &&
        strcmp(cmd, "draw")) {
        fputs(usage, stderr);
        return 2;
    }
    if ((!strcmp(cmd, "peer") || !strcmp(cmd, "draw")) && i + 1 != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(cmd, "show") && i != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (xm_hv_open(&hv))
        return 1;
    if (xm_topo_open(hv, flags, &t)) {
        fprintf(stderr, "xenmpi-topo: %s\n", xm_topo_last_error());
        xm_hv_close(hv);
        return 1;
    }
    if (!strcmp(cmd, "show")) {
        if (xm_topo_format_table(t, &text) == 0) {
            fputs(text, stdout);
            free(text);
        } else
            rc = 1;
    } else if (!strcmp(cmd, "peer")) {
        unsigned long d;
        if (parse_uint(argv[i], 0x7fef, &d)) {
            fprintf(stderr, "xenmpi-topo: peer: \"%s\" is not a domain id\n", argv[i]);
            rc = 2;
        } else if (xm_topo_format_peer(t, (uint32_t)d, &text) == 0) {
            fputs(text, stdout);
            free(text);
        } else {
            fprintf(stderr, "xenmpi-topo: %s\n", xm_topo_last_error());
            rc = 1;
        }
    } else if (!strcmp(cmd, "propose"))
        rc = cmd_propose(t, argc - i, argv + i);
    else
        rc = cmd_draw(t, argv[i]);
    xm_topo_free(t);
    xm_hv_close(hv);
    return rc;
}
