/* token_bucket.h: a rate limiter as a small struct refilled on check (the
 * shape of memcached's proxy_ratelim.c). Pure: no clock, no I/O, no globals;
 * the caller passes CLOCK_MONOTONIC time in and owns the struct. It knows
 * nothing of queues or timers: it only says "now" or "in this many µs". */
#ifndef CLORO_TOKEN_BUCKET_H
#define CLORO_TOKEN_BUCKET_H

#include <stdint.h>

/* Invariants: rate_per_s > 0; burst >= 1; tokens <= burst (tokens may sit a
 * hair under 0 after a take absorbed floating-point rounding); last_us is the
 * latest now_us seen, it never moves backwards. */
struct token_bucket {
    double rate_per_s; /* tokens added per second */
    double burst;      /* tokens the bucket holds at most */
    double tokens;     /* tokens held at last_us */
    int64_t last_us;   /* CLOCK_MONOTONIC µs of the last refill */
};

/* Fills b: rate_per_s > 0 tokens per second, burst >= 1 tokens at most, and
 * starts full (tokens = burst). now_us is CLOCK_MONOTONIC in µs. Other values
 * of rate_per_s or burst are a caller bug (assert). No errors. */
void token_bucket_init(struct token_bucket *b, double rate_per_s, double burst, int64_t now_us);

/* Refills for the time since last_us, then takes one token if there is one
 * and returns 0. Otherwise takes nothing and returns the µs until one token
 * will be there: >= 1, rounded up, saturated at INT64_MAX.
 * Time going backwards (now_us < last_us) adds no tokens and is otherwise
 * ignored: refilling resumes once now_us passes last_us again, and the wait
 * returned then counts from now_us to the moment the token arrives. */
int64_t token_bucket_take(struct token_bucket *b, int64_t now_us);

/* Like token_bucket_take, but only looks: refills, takes nothing, and returns
 * the µs until a token is there, 0 when there is one now (same rounding,
 * saturation and time-going-backwards rules as take). */
int64_t token_bucket_wait_us(struct token_bucket *b, int64_t now_us);

/* Changes the rate and burst (same constraints as init). The time up to
 * now_us is first refilled at the old rate; the tokens held are kept, clamped
 * to the new burst (a bucket does not refill because its burst grew). */
void token_bucket_set_rate(struct token_bucket *b, double rate_per_s, double burst, int64_t now_us);

#endif
