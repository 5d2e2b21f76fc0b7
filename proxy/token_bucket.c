/* token_bucket.c: refill-on-check token bucket. Tokens are doubles; waits are
 * whole µs rounded up, so a caller sleeping exactly the returned wait always
 * finds its token. Owns no time source and no timers (see token_bucket.h). */
#include "token_bucket.h"

#include <assert.h>

#define US_PER_S 1e6
/* A take accepts a bucket this close below one token: refills sum many
 * products of doubles, and a wait rounded up to whole µs must always be
 * enough even when the sum lands one ulp short of 1. */
#define TOKEN_SLACK 1e-9

/* Adds the tokens for (last_us, now_us]. A now_us at or before last_us adds
 * nothing and leaves last_us alone, so a clock going back then forward again
 * cannot credit the same interval twice. */
static void refill(struct token_bucket *b, int64_t now_us)
{
    if (now_us <= b->last_us)
        return;
    /* In double: now_us - last_us may not fit in an int64_t. */
    double elapsed_us = (double)now_us - (double)b->last_us;
    double room = b->burst - b->tokens;
    double added = elapsed_us * b->rate_per_s / US_PER_S;
    b->tokens = added >= room ? b->burst : b->tokens + added;
    b->last_us = now_us;
}

static int64_t ceil_to_us(double us)
{
    /* 2^63 is exact in a double; anything at or above it (or inf) saturates. */
    if (!(us < 9223372036854775808.0))
        return INT64_MAX;
    if (us <= 0)
        return 0;
    int64_t whole = (int64_t)us;
    return (double)whole < us ? whole + 1 : whole;
}

/* µs from now_us until one token is there; 0 when one is there now. */
static int64_t wait_for_token(const struct token_bucket *b, int64_t now_us)
{
    /* Tokens held were earned up to last_us: usable even if time went back. */
    if (b->tokens + TOKEN_SLACK >= 1.0)
        return 0;
    /* Half the slack off the need: a product landing a few ulps above a
     * whole µs does not round up to the next one, and the token is still there
     * after the wait (take wants tokens + TOKEN_SLACK >= 1). */
    double need_us = (1.0 - TOKEN_SLACK / 2 - b->tokens) * US_PER_S / b->rate_per_s;
    if (need_us < 0)
        need_us = 0;
    /* Time went backwards: the token arrives need_us after last_us. */
    double behind_us = now_us < b->last_us ? (double)b->last_us - (double)now_us : 0.0;
    int64_t wait = ceil_to_us(behind_us + need_us);
    return wait < 1 ? 1 : wait;
}

void token_bucket_init(struct token_bucket *b, double rate_per_s, double burst, int64_t now_us)
{
    assert(rate_per_s > 0);
    assert(burst >= 1);
    b->rate_per_s = rate_per_s;
    b->burst = burst;
    b->tokens = burst;
    b->last_us = now_us;
}

int64_t token_bucket_take(struct token_bucket *b, int64_t now_us)
{
    refill(b, now_us);
    int64_t wait = wait_for_token(b, now_us);
    if (wait == 0)
        b->tokens -= 1.0;
    return wait;
}

int64_t token_bucket_wait_us(struct token_bucket *b, int64_t now_us)
{
    refill(b, now_us);
    return wait_for_token(b, now_us);
}

void token_bucket_set_rate(struct token_bucket *b, double rate_per_s, double burst, int64_t now_us)
{
    assert(rate_per_s > 0);
    assert(burst >= 1);
    refill(b, now_us);
    b->rate_per_s = rate_per_s;
    b->burst = burst;
    if (b->tokens > burst)
        b->tokens = burst;
}
