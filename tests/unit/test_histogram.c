/* test_histogram.c: histogram.h. Empty and single-value histograms, exact
 * buckets below 64 µs, p50/p99 of uniform data within 1/32, every power of two
 * up to the last bucket, max, negatives and huge values, and the quantile
 * edges (0, 1, out of range). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "histogram.h"

#include <inttypes.h>
#include <math.h>

#define LAST_BUCKET_US (INT64_C(1) << HISTOGRAM_MAX_POW2)

static struct histogram h; /* 7 KiB: kept off the test stack */

static void eq64(int64_t want, int64_t got, const char *what)
{
    if (want != got)
        fail_msg("%s: expected %" PRId64 ", got %" PRId64, what, want, got);
}

/* got is an upper bound of want within the histogram's relative error. */
static void near(int64_t want, int64_t got, const char *what)
{
    if (got < want || (double)(got - want) >= (double)want / 32)
        fail_msg("%s: expected %" PRId64 " within +1/32, got %" PRId64, what, want, got);
}

static void test_empty(void **state)
{
    (void)state;
    histogram_init(&h);
    eq64(0, (int64_t)h.total, "total");
    eq64(0, h.max_us, "max");
    eq64(0, histogram_quantile(&h, 0.0), "q0");
    eq64(0, histogram_quantile(&h, 0.5), "p50");
    eq64(0, histogram_quantile(&h, 1.0), "q1");
}

static void test_single_value(void **state)
{
    (void)state;
    const int64_t values[] = {0, 1, 63, 64, 65, 1000, 123456, 3600000000, LAST_BUCKET_US - 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        histogram_init(&h);
        histogram_record(&h, values[i]);
        eq64(1, (int64_t)h.total, "total");
        eq64(values[i], h.max_us, "max");
        /* One value: every quantile is it (the bucket bound is capped by max). */
        eq64(values[i], histogram_quantile(&h, 0.0), "q0");
        eq64(values[i], histogram_quantile(&h, 0.5), "p50");
        eq64(values[i], histogram_quantile(&h, 1.0), "q1");
    }
}

static void test_exact_below_64(void **state)
{
    (void)state;
    histogram_init(&h);
    for (int64_t v = 0; v < 64; v++)
        histogram_record(&h, v);
    histogram_record(&h, 1000); /* so max does not cap what is below */
    for (int64_t v = 0; v < 64; v++)
        eq64(v, histogram_quantile(&h, (double)(v + 1) / 65), "exact");
}

static void test_uniform_1_to_10000(void **state)
{
    (void)state;
    histogram_init(&h);
    for (int64_t v = 1; v <= 10000; v++)
        histogram_record(&h, v);
    eq64(10000, (int64_t)h.total, "total");
    near(5000, histogram_quantile(&h, 0.5), "p50");
    near(9900, histogram_quantile(&h, 0.99), "p99");
    near(9990, histogram_quantile(&h, 0.999), "p99.9");
    near(1000, histogram_quantile(&h, 0.1), "p10");
    eq64(1, histogram_quantile(&h, 0.0), "q0: the smallest");
    eq64(10000, histogram_quantile(&h, 1.0), "q1: max");
    /* Every percentile, and not only the chosen ones. */
    for (int p = 1; p <= 100; p++)
        near(100 * p, histogram_quantile(&h, p / 100.0), "percentile");
}

static void test_whole_range(void **state)
{
    (void)state;
    /* One value just inside each edge of every power of two: each quantile
     * lands on its value within 1/32, in order. */
    int64_t values[2 * HISTOGRAM_MAX_POW2];
    size_t n = 0;
    for (int pow2 = 6; pow2 < HISTOGRAM_MAX_POW2; pow2++) {
        values[n++] = INT64_C(1) << pow2;
        values[n++] = (INT64_C(3) << pow2) / 2 + 7;
    }
    histogram_init(&h);
    for (size_t i = 0; i < n; i++)
        histogram_record(&h, values[i]);
    for (size_t i = 0; i < n; i++)
        near(values[i], histogram_quantile(&h, (double)(i + 1) / (double)n), "range");

    /* Every value from 0 to 2^20 and a sample above: the bucket found is the
     * upper bound of the value, within 1/32. */
    for (int64_t v = 0; v < LAST_BUCKET_US; v = v < 1 << 20 ? v + 1 : v + v / 97 + 1) {
        histogram_init(&h);
        histogram_record(&h, v);
        histogram_record(&h, LAST_BUCKET_US - 1);
        int64_t got = histogram_quantile(&h, 0.5);
        if (v < 64)
            eq64(v, got, "exact");
        else
            near(v, got, "log-linear");
    }
}

static void test_max_and_huge(void **state)
{
    (void)state;
    histogram_init(&h);
    histogram_record(&h, 10);
    histogram_record(&h, 5000000000); /* past 2^32 µs: the last bucket */
    eq64(5000000000, h.max_us, "max keeps the value");
    eq64(10, histogram_quantile(&h, 0.5), "p50");
    eq64(5000000000, histogram_quantile(&h, 1.0), "last bucket reports max");
    histogram_record(&h, INT64_MAX);
    eq64(INT64_MAX, h.max_us, "INT64_MAX");
    eq64(INT64_MAX, histogram_quantile(&h, 0.99), "p99");
    eq64(INT64_MAX, histogram_quantile(&h, 1.0), "q1");
    eq64(3, (int64_t)h.total, "total");

    /* 1 hour (3.6e9 µs) is below 2^32 µs: in range, within 1/32. */
    histogram_init(&h);
    histogram_record(&h, 3600000000);
    histogram_record(&h, 3700000000);
    near(3600000000, histogram_quantile(&h, 0.5), "1 hour");
}

static void test_negatives_and_q_edges(void **state)
{
    (void)state;
    histogram_init(&h);
    histogram_record(&h, -5);
    histogram_record(&h, INT64_MIN);
    eq64(0, h.max_us, "negatives are 0");
    eq64(2, (int64_t)h.total, "counted");
    eq64(0, histogram_quantile(&h, 1.0), "all 0");

    histogram_init(&h);
    for (int64_t v = 1; v <= 100; v++)
        histogram_record(&h, v);
    eq64(1, histogram_quantile(&h, -1.0), "q < 0");
    eq64(1, histogram_quantile(&h, (double)NAN), "NaN");
    eq64(100, histogram_quantile(&h, 2.0), "q > 1");
    eq64(50, histogram_quantile(&h, 0.5), "p50 of 1..100");
    eq64(51, histogram_quantile(&h, 0.501), "rank rounds up");
    eq64(99, histogram_quantile(&h, 0.99), "p99 of 1..100");
    /* q * total a hair above a whole number in doubles: no extra rank. */
    for (int p = 1; p < 64; p++)
        eq64(p, histogram_quantile(&h, p / 100.0), "p of 1..100, exact buckets");
}

static void test_many_counts(void **state)
{
    (void)state;
    histogram_init(&h);
    h.counts[0] = UINT64_C(1) << 62; /* totals past 2^53: rank must stay in range */
    h.counts[100] = UINT64_C(1) << 62;
    h.total = UINT64_C(1) << 63;
    h.max_us = 1000;
    eq64(0, histogram_quantile(&h, 0.5), "half");
    eq64(147, histogram_quantile(&h, 0.5000001), "above half: bucket [144, 147]");
    eq64(histogram_quantile(&h, 1.0), histogram_quantile(&h, 0.9999999999999999), "q1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_single_value),
        cmocka_unit_test(test_exact_below_64),
        cmocka_unit_test(test_uniform_1_to_10000),
        cmocka_unit_test(test_whole_range),
        cmocka_unit_test(test_max_and_huge),
        cmocka_unit_test(test_negatives_and_q_edges),
        cmocka_unit_test(test_many_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
