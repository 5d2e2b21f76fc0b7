/* latency.h: a latency histogram of answers for /_proxy/metrics and
 * /_proxy/stats: cumulative counts over fixed bounds (Prometheus buckets,
 * exact), the sum and the count, plus the log-linear histogram (histogram.h)
 * for percentiles. Pure: no allocation, no clock; its owner (the server)
 * observes on the loop thread. */
#ifndef CLORO_LATENCY_H
#define CLORO_LATENCY_H

#include "histogram.h"

#include <stddef.h>
#include <stdint.h>

/* Bounds from 1 ms to 300 s (cloro's advised sync timeout); the +Inf
 * bucket is the count. */
#define LATENCY_BOUNDS 17

struct latency {
    uint64_t le[LATENCY_BOUNDS]; /* le[i]: observations <= bound i (cumulative) */
    uint64_t count;
    int64_t sum_us;
    struct histogram q; /* for p50, p99 */
};

void latency_init(struct latency *l);
/* Counts one answer of value_us microseconds (negatives count as 0). */
void latency_observe(struct latency *l, int64_t value_us);

/* Bound i in microseconds, and as Prometheus writes it in seconds ("0.005"). */
int64_t latency_bound_us(size_t i);
const char *latency_bound_text(size_t i);

#endif
