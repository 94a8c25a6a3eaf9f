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

/* A message a peer can make us print once per record or store node it
 * writes: each call site prints at most XM_LOG_BURST of them per second;
 * the next one printed says how many were left out. */
#define XM_LOG_BURST 10
struct xm_log_limit {
    unsigned long sec;
    unsigned n, dropped;
};
int xm_log_limited(struct xm_log_limit *l, unsigned *dropped);
#define xm_log_peer(lvl, ...)                                                     \
    do {                                                                          \
        static struct xm_log_limit xm_ll_;                                        \
        unsigned xm_dropped_;                                                     \
        if ((lvl) <= xm_log_level && xm_log_limited(&xm_ll_, &xm_dropped_)) {     \
            if (xm_dropped_)                                                      \
                xm_log((lvl), __FILE__, __LINE__, "%u messages like the next "    \
                       "were left out (at most %u a second)", xm_dropped_,        \
                       XM_LOG_BURST);                                             \
            xm_log((lvl), __FILE__, __LINE__, __VA_ARGS__);                       \
        }                                                                         \
    } while (0)
#define xm_peer_error(...) xm_log_peer(XM_LOG_ERROR, __VA_ARGS__)
#define xm_peer_warn(...)  xm_log_peer(XM_LOG_WARN, __VA_ARGS__)

#endif
