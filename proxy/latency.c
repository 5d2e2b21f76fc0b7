/* latency.c: the fixed bounds of latency.h and the observation. */
#include "latency.h"

#include <string.h>

static const int64_t bounds_us[LATENCY_BOUNDS] = {
    1000,    2500,    5000,    10000,    25000,    50000,    100000,    250000,   500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 120000000, 300000000};

static const char *const bounds_text[LATENCY_BOUNDS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1",     "2.5",    "5",     "10",   "30",    "60",   "120", "300"};

void latency_init(struct latency *l)
{
    memset(l, 0, sizeof *l);
    histogram_init(&l->q);
}

void latency_observe(struct latency *l, int64_t value_us)
{
    if (value_us < 0)
        value_us = 0;
    for (size_t i = LATENCY_BOUNDS; i > 0 && value_us <= bounds_us[i - 1]; i--)
        l->le[i - 1]++;
    l->count++;
    l->sum_us += value_us;
    histogram_record(&l->q, value_us);
}

int64_t latency_bound_us(size_t i)
{
    return bounds_us[i];
}

const char *latency_bound_text(size_t i)
{
    return bounds_text[i];
}
