/* histogram.c: log-linear bucket arithmetic for histogram.h (the layout of
 * HdrHistogram with 5 bits of sub-bucket precision). Owns only the struct the
 * caller embeds; no allocation, no clock. */
#include "histogram.h"

#include <string.h>

#define SUB_BITS   5 /* log2(HISTOGRAM_SUB_BUCKETS) */
#define EXACT_BITS 6 /* log2(HISTOGRAM_EXACT) */

_Static_assert(HISTOGRAM_SUB_BUCKETS == 1 << SUB_BITS, "SUB_BITS");
_Static_assert(HISTOGRAM_EXACT == 1 << EXACT_BITS, "EXACT_BITS");

/* Position of the highest set bit of v > 0. */
static int high_bit(uint64_t v)
{
    int bit = 0;
    while (v >>= 1)
        bit++;
    return bit;
}

static int bucket_of(int64_t value_us)
{
    if (value_us < HISTOGRAM_EXACT)
        return value_us < 0 ? 0 : (int)value_us;
    if (value_us >= INT64_C(1) << HISTOGRAM_MAX_POW2)
        return HISTOGRAM_BUCKETS - 1;
    uint64_t v = (uint64_t)value_us;
    int pow2 = high_bit(v); /* EXACT_BITS .. HISTOGRAM_MAX_POW2 - 1 */
    int sub = (int)(v >> (pow2 - SUB_BITS)) & (HISTOGRAM_SUB_BUCKETS - 1);
    return HISTOGRAM_EXACT + (pow2 - EXACT_BITS) * HISTOGRAM_SUB_BUCKETS + sub;
}

/* The largest value that lands in bucket i. */
static int64_t bucket_upper_us(int i)
{
    if (i < HISTOGRAM_EXACT)
        return i;
    int pow2 = EXACT_BITS + (i - HISTOGRAM_EXACT) / HISTOGRAM_SUB_BUCKETS;
    int64_t sub = (i - HISTOGRAM_EXACT) % HISTOGRAM_SUB_BUCKETS;
    int64_t width = INT64_C(1) << (pow2 - SUB_BITS);
    return (INT64_C(1) << pow2) + (sub + 1) * width - 1;
}

void histogram_init(struct histogram *h)
{
    memset(h, 0, sizeof *h);
}

void histogram_record(struct histogram *h, int64_t value_us)
{
    if (value_us < 0)
        value_us = 0;
    h->counts[bucket_of(value_us)]++;
    h->total++;
    if (value_us > h->max_us)
        h->max_us = value_us;
}

int64_t histogram_quantile(const struct histogram *h, double q)
{
    if (h->total == 0)
        return 0;
    if (!(q > 0.0)) /* also NaN */
        q = 0.0;
    if (q > 1.0)
        q = 1.0;
    /* rank = ceil(q * total), in 1..total. The product is shaved by a relative
     * 1e-12 first: 0.07 * 100 is 7.000000000000001 in doubles and must stay
     * rank 7. The product may also round past total beyond 2^53. */
    double want = q * (double)h->total * (1.0 - 1e-12);
    uint64_t rank = want >= (double)h->total ? h->total : (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;

    uint64_t seen = 0;
    int i = 0;
    for (; i < HISTOGRAM_BUCKETS - 1; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            break;
    }
    int64_t upper = bucket_upper_us(i);
    /* The last bucket also holds everything past 2^32 µs: max_us bounds it. */
    return upper > h->max_us || i == HISTOGRAM_BUCKETS - 1 ? h->max_us : upper;
}
