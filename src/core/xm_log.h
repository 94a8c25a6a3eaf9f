/* xm_log.h - leveled logging for the core: error, warn, info, debug, trace.
 * XENMPI_LOG_LEVEL=error|warn|info|debug|trace (default warn). */
#ifndef XM_LOG_H
#define XM_LOG_H

enum { XM_LOG_ERROR = 0, XM_LOG_WARN, XM_LOG_INFO, XM_LOG_DEBUG, XM_LOG_TRACE };

extern int xm_log_level;
void xm_log_init(void);
void xm_log(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define xm_log_at(l, ...) \
    do { if ((l) <= xm_log_level) xm_log((l), __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define xm_error(...) xm_log_at(XM_LOG_ERROR, __VA_ARGS__)
#define xm_warn(...)  xm_log_at(XM_LOG_WARN, __VA_ARGS__)
#define xm_info(...)  xm_log_at(XM_LOG_INFO, __VA_ARGS__)
#define xm_debug(...) xm_log_at(XM_LOG_DEBUG, __VA_ARGS__)
#define xm_trace(...) xm_log_at(XM_LOG_TRACE, __VA_ARGS__)

#endif
