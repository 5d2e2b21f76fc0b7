/* prom.c: the Prometheus text format writer of prom.h. */
#include "prom.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char *prom_escape_label(const char *value, char *out, size_t size)
{
    size_t n = 0;
    for (const char *c = value; *c != '\0' && n + 3 <= size; c++) {
        if (*c == '\\' || *c == '"') {
            out[n++] = '\\';
            out[n++] = *c;
        } else if (*c == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *c;
        }
    }
    if (size > 0)
        out[n < size ? n : size - 1] = '\0';
    return out;
}

void prom_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s ", name);
    for (const char *c = help; *c != '\0'; c++) {
        if (*c == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*c == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, c, 1);
    }
    evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type);
}

static void add_labels(struct evbuffer *out, const struct prom_label *labels, size_t n,
                       const char *le)
{
    if (n == 0 && le == NULL)
        return;
    evbuffer_add(out, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char value[512];
        evbuffer_add_printf(out, "%s%s=\"%s\"", i > 0 ? "," : "", labels[i].name,
                            prom_escape_label(labels[i].value, value, sizeof value));
    }
    if (le != NULL)
        evbuffer_add_printf(out, "%sle=\"%s\"", n > 0 ? "," : "", le);
    evbuffer_add(out, "}", 1);
}

void prom_sample(struct evbuffer *out, const char *name, const struct prom_label *labels, size_t n,
                 uint64_t value)
{
    evbuffer_add_printf(out, "%s", name);
    add_labels(out, labels, n, NULL);
    evbuffer_add_printf(out, " %" PRIu64 "\n", value);
}

void prom_histogram(struct evbuffer *out, const char *name, const struct prom_label *labels,
                    size_t n, const char *const *bounds, const uint64_t *le, size_t bound_count,
                    uint64_t count, int64_t sum_us)
{
    for (size_t i = 0; i < bound_count; i++) {
        evbuffer_add_printf(out, "%s_bucket", name);
        add_labels(out, labels, n, bounds[i]);
        evbuffer_add_printf(out, " %" PRIu64 "\n", le[i]);
    }
    evbuffer_add_printf(out, "%s_bucket", name);
    add_labels(out, labels, n, "+Inf");
    evbuffer_add_printf(out, " %" PRIu64 "\n", count);
    if (sum_us < 0)
        sum_us = 0;
    evbuffer_add_printf(out, "%s_sum", name);
    add_labels(out, labels, n, NULL);
    evbuffer_add_printf(out, " %" PRId64 ".%06" PRId64 "\n", sum_us / 1000000, sum_us % 1000000);
    evbuffer_add_printf(out, "%s_count", name);
    add_labels(out, labels, n, NULL);
    evbuffer_add_printf(out, " %" PRIu64 "\n", count);
}
