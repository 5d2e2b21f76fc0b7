/* log.h: leveled logfmt logging to stderr, one line per event.
 * Owns the process-wide log level and the line format; it knows nothing of
 * requests or secrets, so callers must never pass a key or a token. */
#ifndef CLORO_LOG_H
#define CLORO_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* The level in force; lines above it are not even formatted. */
extern enum log_level log_threshold;

/* Parses "error", "warn", "info" or "debug". Returns false on anything else. */
bool log_level_parse(const char *text, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Writes "ts=<iso8601> level=<level> event=<event> <fields>\n" in one write.
 * fields is a printf format producing further logfmt pairs (may be NULL). */
void log_write(enum log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies text into out as a logfmt value: bare when safe, otherwise quoted
 * with \" \\ and control bytes escaped; truncated to fit. Returns out. */
const char *log_value(char *out, size_t out_size, const char *text);

#define log_at(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) <= log_threshold)                                                              \
            log_write((level), __VA_ARGS__);                                                       \
    } while (0)
#define log_error(...) log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
