/* prom.h: a writer of the Prometheus text exposition format 0.0.4: a
 * family's HELP and TYPE lines, then its samples, label values escaped
 * (backslash, double quote, newline) and HELP text escaped (backslash,
 * newline). Pure: appends to an evbuffer; knows no metric of the proxy
 * (metrics.c does). Values are integers, or decimal seconds written exactly
 * from microseconds: no floating point. */
#ifndef CLORO_PROM_H
#define CLORO_PROM_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct prom_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not "le" (histograms add it) */
    const char *value; /* any UTF-8 */
};

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void prom_family(struct evbuffer *out, const char *name, const char *type, const char *help);

/* name{labels} value. labels may be NULL when n is 0. */
void prom_sample(struct evbuffer *out, const char *name, const struct prom_label *labels, size_t n,
                 uint64_t value);

/* A histogram's samples: name_bucket{labels,le="bound"} for every bound
 * (cumulative counts le[i], bounds as text), le="+Inf" (count), name_sum
 * (sum_us written in seconds) and name_count. */
void prom_histogram(struct evbuffer *out, const char *name, const struct prom_label *labels,
                    size_t n, const char *const *bounds, const uint64_t *le, size_t bound_count,
                    uint64_t count, int64_t sum_us);

/* Writes value escaped for a label value into out (size bytes, NUL
 * terminated, cut short if needed). Returns out. */
const char *prom_escape_label(const char *value, char *out, size_t size);

#endif
