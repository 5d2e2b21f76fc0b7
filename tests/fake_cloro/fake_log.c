/* fake_log: one logfmt line per event on stderr, flushed at once. Holds the only
 * process-wide setting of the fake (the level); never logs keys or tokens. */
#include "fake_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fake_util.h"

static enum fake_log_level fake_log_level = FAKE_LOG_INFO;
static const char *const fake_log_names[] = {"error", "warn", "info", "debug"};

void fake_log_set_level(enum fake_log_level level)
{
    fake_log_level = level;
}

int fake_log_parse_level(const char *name, enum fake_log_level *out)
{
    for (int i = 0; i <= FAKE_LOG_DEBUG; i++) {
        if (strcmp(name, fake_log_names[i]) == 0) {
            *out = (enum fake_log_level)i;
            return 0;
        }
    }
    return -1;
}

bool fake_log_enabled(enum fake_log_level level)
{
    return level <= fake_log_level;
}

static void fake_log_v(enum fake_log_level level, const char *event, const char *fmt, va_list ap)
{
    char ts[32];
    fake_util_iso8601_ms(fake_util_real_ms(), ts);
    char extra[1024];
    vsnprintf(extra, sizeof(extra), fmt, ap);
    fprintf(stderr, "ts=%s level=%s event=%s%s%s\n", ts, fake_log_names[level], event,
            extra[0] ? " " : "", extra);
    fflush(stderr);
}

void fake_log(enum fake_log_level level, const char *event, const char *fmt, ...)
{
    if (!fake_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    fake_log_v(level, event, fmt, ap);
    va_end(ap);
}

void fake_log_always(enum fake_log_level level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fake_log_v(level, event, fmt, ap);
    va_end(ap);
}
