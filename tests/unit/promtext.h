/* promtext.h: a strict parser of the Prometheus text exposition format
 * 0.0.4, for tests (test_metrics, test_usage): it checks what a scraper
 * would refuse or misread, not just the shape of lines:
 *   - metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
 *     (not __-prefixed), label values quoted with only \\ \" \n escapes,
 *     HELP text with only \\ \n escapes, values as Go's ParseFloat reads
 *     them (NaN, +Inf, -Inf included), an optional integer timestamp;
 *   - at most one HELP and one TYPE per family, both before its samples;
 *     the samples of a family contiguous; no sample twice (name and label
 *     set); the text ends with a newline;
 *   - a sample belongs to its family: a counter's or a gauge's carries the
 *     family's name, a histogram's is NAME_bucket (with le), NAME_sum or
 *     NAME_count; counters are never negative;
 *   - per label set of a histogram: le values increasing, counts
 *     non-decreasing (cumulative), the last le +Inf, its count equal to
 *     NAME_count, and NAME_sum present. */
#ifndef CLORO_TEST_PROMTEXT_H
#define CLORO_TEST_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>

#define PROMTEXT_MAX_LABELS 8

struct promtext_label {
    char *name, *value; /* value unescaped */
};

struct promtext_sample {
    char *name;
    struct promtext_label labels[PROMTEXT_MAX_LABELS];
    size_t label_count;
    double value;
    size_t family; /* index into families */
};

struct promtext_family {
    char *name;
    char *type; /* "untyped" when no TYPE line */
    char *help; /* NULL when none; unescaped */
};

struct promtext {
    struct promtext_family *families;
    size_t family_count;
    struct promtext_sample *samples;
    size_t sample_count;
};

/* Parses text. Returns 0, or -1 with the first problem and its line number
 * in err. doc must be freed either way. */
int promtext_parse(const char *text, struct promtext *doc, char *err, size_t err_size);
void promtext_free(struct promtext *doc);

/* The value of the sample name whose label set is exactly labels (name,
 * value pairs then NULL; any order). Returns false when there is none. */
bool promtext_get(const struct promtext *doc, const char *name, const char *const *labels,
                  double *out);
/* The family of a name, or NULL. */
const struct promtext_family *promtext_family(const struct promtext *doc, const char *name);
/* The sum of every sample called name (any labels). */
double promtext_sum(const struct promtext *doc, const char *name);

#endif
