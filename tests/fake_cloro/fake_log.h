/* fake_log: logfmt lines on stderr ("ts=... level=... event=... k=v ..."), flushed
 * per line so test harnesses can wait for them. The level is process-wide. */
#ifndef FAKE_LOG_H
#define FAKE_LOG_H

#include <stdbool.h>

enum fake_log_level { FAKE_LOG_ERROR, FAKE_LOG_WARN, FAKE_LOG_INFO, FAKE_LOG_DEBUG };

void fake_log_set_level(enum fake_log_level level);
/* Parses "error|warn|info|debug"; -1 when unknown. */
int fake_log_parse_level(const char *name, enum fake_log_level *out);
bool fake_log_enabled(enum fake_log_level level);
/* fmt carries the extra "k=v" pairs (may be ""); values are the caller's job. */
void fake_log(enum fake_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same line format, printed whatever the configured level (the listening line). */
void fake_log_always(enum fake_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
