#include "xm_log.h"
#include "xm_settings.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int xm_log_level = XM_LOG_WARN;

static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };

__attribute__((constructor)) void xm_log_init(void)
{
    const char *s = xm_cfg_str(XM_CFG_LOG_LEVEL);
    for (int i = 0; i <= XM_LOG_TRACE; i++)
        if (!strcasecmp(s, level_names[i]))
            xm_log_level = i;
}

void xm_log(int level, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    const char *base = strrchr(file, '/');

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "[xenmpi %d] %-5s %s:%d %s\n", (int)getpid(),
            level_names[level], base ? base + 1 : file, line, msg);
}
