/* log.c: logfmt lines on stderr. Each line is formatted into one buffer and
 * written with a single write(2), so lines from one process never interleave. */
#include "log.h"
#include "clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum log_level log_threshold = LOG_LEVEL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

bool log_level_parse(const char *text, enum log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

const char *log_level_name(enum log_level level)
{
    return level_names[level];
}

void log_write(enum log_level level, const char *event, const char *fields, ...)
{
    char line[4096];
    char ts[32];
    clock_format_iso8601(ts, sizeof ts, clock_wall_ms());
    int n = snprintf(line, sizeof line, "ts=%s level=%s event=%s", ts, level_names[level], event);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (fields != NULL && len < sizeof line - 2) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, fields);
        int m = vsnprintf(line + len, sizeof line - len, fields, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < sizeof line - len ? (size_t)m : sizeof line - len - 1;
    }
    if (len >= sizeof line - 1)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}

const char *log_value(char *out, size_t out_size, const char *text)
{
    if (out_size == 0)
        return out;
    if (text == NULL)
        text = "";
    bool needs_quotes = *text == '\0';
    for (const char *p = text; *p != '\0' && !needs_quotes; p++)
        needs_quotes = *p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f;
    if (!needs_quotes) {
        snprintf(out, out_size, "%s", text);
        return out;
    }
    if (out_size < 3) { /* not even "" fits */
        out[0] = '\0';
        return out;
    }
    size_t o = 0;
    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        char esc[8];
        size_t n;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p);
        } else {
            esc[0] = (char)*p;
            n = 1;
        }
        if (o + n + 2 > out_size)
            break;
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
