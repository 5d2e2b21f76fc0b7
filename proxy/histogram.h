/* histogram.h: a fixed-size latency histogram for percentiles (queue wait
 * p50/p99 in /_proxy/stats). Pure: no allocation, no clock, no locking; the
 * owner records values and reads quantiles on one thread. */
#ifndef CLORO_HISTOGRAM_H
#define CLORO_HISTOGRAM_H

#include <stdint.h>

/* Log-linear buckets over microseconds: exact below 64 µs, then 32
 * sub-buckets per power of two from 2^6 up to 2^32 µs (~71.6 minutes, so past
 * one hour); values above go to the last bucket. A bucket starting at lo is at
 * most lo/32 wide, so the relative error of a percentile is under 1/32. */
#define HISTOGRAM_EXACT       64 /* values 0..63 have a bucket each */
#define HISTOGRAM_SUB_BUCKETS 32 /* buckets per power of two above that */
#define HISTOGRAM_MAX_POW2    32 /* the buckets end at 2^32 µs */
#define HISTOGRAM_BUCKETS     (HISTOGRAM_EXACT + (HISTOGRAM_MAX_POW2 - 6) * HISTOGRAM_SUB_BUCKETS)

/* Invariants: total is the sum of counts; max_us is the largest value
 * recorded (0 when none). Embedded by its owner (~7 KiB). */
struct histogram {
    uint64_t counts[HISTOGRAM_BUCKETS];
    uint64_t total;
    int64_t max_us;
};

/* Empties h. No errors. */
void histogram_init(struct histogram *h);

/* Counts one value in µs; negatives count as 0, values of 2^32 µs and more
 * go to the last bucket (max_us still keeps them exactly). No errors. */
void histogram_record(struct histogram *h, int64_t value_us);

/* The value at quantile q in [0,1] (0.5 = median, 0.99), in µs: the smallest
 * recorded value v with at least ceil(q * total) values <= v (at least 1;
 * q * total is first shaved by a relative 1e-12 against rounding: 0.07 * 100
 * is 7 values, not 8),
 * reported as the inclusive upper bound of v's bucket, but never above max_us
 * (so q = 1 gives max_us, and the last bucket reports max_us even for values
 * past 2^32 µs). q below 0 or NaN counts as 0, above 1 as 1. 0 when empty. */
int64_t histogram_quantile(const struct histogram *h, double q);

#endif
