/* test_token_bucket.c: token_bucket.h on simulated time. A full bucket gives
 * its burst at once, then one token per 1/rate; waits are exact whole µs and
 * always enough; time going backwards adds nothing; huge gaps and extreme
 * timestamps neither overflow nor overfill; set_rate keeps the tokens held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "token_bucket.h"

#include <inttypes.h>

static void eq64(int64_t want, int64_t got, const char *what)
{
    if (want != got)
        fail_msg("%s: expected %" PRId64 ", got %" PRId64, what, want, got);
}

/* Takes count tokens, sleeping exactly the wait returned each time. Returns
 * the simulated time after the last take. */
static int64_t drain(struct token_bucket *b, int64_t now_us, int count)
{
    for (int taken = 0; taken < count;) {
        int64_t wait = token_bucket_take(b, now_us);
        if (wait == 0) {
            taken++;
            continue;
        }
        if (wait < 1)
            fail_msg("take returned %" PRId64, wait);
        now_us += wait;
    }
    return now_us;
}

static void test_starts_full(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 10, 5, 1000);
    assert_true(b.tokens == 5);
    eq64(1000, b.last_us, "last_us");
    for (int i = 0; i < 5; i++)
        eq64(0, token_bucket_take(&b, 1000), "burst take");
    eq64(100000, token_bucket_take(&b, 1000), "empty: 1/10 s");
    eq64(100000, token_bucket_wait_us(&b, 1000), "wait does not take");
}

static void test_steady_rate_50_per_s(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 50, 1, 0);
    int64_t end = drain(&b, 0, 300);
    /* First token at once, then 299 at 20 ms each. */
    if (end < 5980000)
        fail_msg("300 takes in %" PRId64 " µs, less than 5.98 s", end);
    eq64(5980000, end, "no more than needed either");
}

static void test_burst_then_rate(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 1000, 100, 0);
    eq64(0, drain(&b, 0, 100), "burst of 100 at t=0");
    /* 1000 more need 1 s at 1000/s. */
    eq64(1000000, drain(&b, 0, 1000), "then 1/ms");
}

static void test_rates_that_do_not_divide(void **state)
{
    (void)state;
    const double rates[] = {3, 7, 0.3, 333.3, 999999.5, 1e7};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        struct token_bucket b;
        token_bucket_init(&b, rates[r], 1, 0);
        int64_t now = 0;
        for (int i = 0; i < 2000; i++) {
            eq64(0, token_bucket_take(&b, now), "burst");
            int64_t wait = token_bucket_take(&b, now);
            /* Sleeping exactly the wait must be enough, and 1 µs less not. */
            if (wait > 1)
                eq64(1, token_bucket_wait_us(&b, now + wait - 1), "1 µs short");
            eq64(0, token_bucket_wait_us(&b, now + wait), "wait was enough");
            now += wait;
        }
        /* 2000 tokens after the first: at least (2000-1)/rate seconds. */
        double min_us = 1999 / rates[r] * 1e6;
        if ((double)now < min_us - 1)
            fail_msg("rate %g: %" PRId64 " µs < %g", rates[r], now, min_us);
    }
}

static void test_exact_waits(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 4, 2, 0); /* one token per 250 ms */
    eq64(0, token_bucket_take(&b, 0), "1st");
    eq64(0, token_bucket_take(&b, 0), "2nd");
    eq64(250000, token_bucket_wait_us(&b, 0), "empty");
    eq64(150000, token_bucket_wait_us(&b, 100000), "after 100 ms");
    eq64(150000, token_bucket_take(&b, 100000), "take says the same");
    eq64(1, token_bucket_take(&b, 249999), "1 µs short");
    eq64(0, token_bucket_wait_us(&b, 250000), "there");
    eq64(0, token_bucket_take(&b, 250000), "taken");
    eq64(250000, token_bucket_wait_us(&b, 250000), "empty again");
    /* A long gap refills to the burst, not beyond. */
    eq64(0, token_bucket_take(&b, 10000000), "after 10 s");
    eq64(0, token_bucket_take(&b, 10000000), "second of the burst");
    eq64(250000, token_bucket_take(&b, 10000000), "burst is 2");
    /* Fractional rates round the wait up. */
    token_bucket_init(&b, 3, 1, 0);
    eq64(0, token_bucket_take(&b, 0), "1/3 s bucket");
    eq64(333334, token_bucket_take(&b, 0), "1e6/3 rounded up");
}

static void test_time_backwards(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 10, 2, 1000000);
    eq64(0, token_bucket_take(&b, 1000000), "1st");
    eq64(0, token_bucket_take(&b, 1000000), "2nd");
    /* 50 ms back: nothing added, and the token comes 100 ms after 1 s. */
    eq64(150000, token_bucket_take(&b, 950000), "wait from the past");
    eq64(1000000, b.last_us, "last_us does not move back");
    assert_true(b.tokens < 1e-9);
    /* Back and forth must not credit [0.95 s, 1 s] twice. */
    eq64(50000, token_bucket_take(&b, 1050000), "half refilled");
    eq64(200000, token_bucket_take(&b, 900000), "back again: 150 ms behind + 50 ms");
    eq64(50000, token_bucket_wait_us(&b, 1050000), "still half");
    eq64(0, token_bucket_take(&b, 1100000), "full token at 1.1 s");
    /* A token held is usable at an earlier time. */
    token_bucket_init(&b, 10, 1, 5000);
    eq64(0, token_bucket_take(&b, 0), "held token, earlier now");
    /* Far back: saturates, never wraps. */
    token_bucket_init(&b, 1, 1, INT64_MAX);
    eq64(0, token_bucket_take(&b, INT64_MAX), "take");
    eq64(INT64_MAX, token_bucket_take(&b, INT64_MIN), "far past saturates");
    eq64(INT64_MAX, b.last_us, "last_us kept");
}

static void test_huge_gaps(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 1e9, 1e6, INT64_MIN);
    eq64(INT64_MIN, drain(&b, INT64_MIN, 1000000), "the burst, at once");
    eq64(1, token_bucket_wait_us(&b, INT64_MIN), "1e9/s: 1 µs, at least 1");
    eq64(0, token_bucket_take(&b, INT64_MAX), "INT64_MIN -> INT64_MAX");
    assert_true(b.tokens == 1e6 - 1);
    eq64(INT64_MAX, b.last_us, "last_us");

    /* A tiny rate: the wait does not fit in int64 µs and saturates. */
    token_bucket_init(&b, 1e-15, 1, 0);
    eq64(0, token_bucket_take(&b, 0), "take the one");
    eq64(INT64_MAX, token_bucket_take(&b, 0), "1e21 µs saturates");
    eq64(INT64_MAX, token_bucket_wait_us(&b, INT64_MAX), "still > INT64_MAX µs away");
    assert_true(b.tokens >= 0 && b.tokens < 1);
}

static void test_set_rate(void **state)
{
    (void)state;
    struct token_bucket b;
    token_bucket_init(&b, 10, 10, 0);
    eq64(0, drain(&b, 0, 10), "empty it");
    /* 500 ms at the old rate (10/s) gives 5 tokens, then the rate changes. */
    token_bucket_set_rate(&b, 100, 10, 500000);
    assert_true(b.tokens > 4.999 && b.tokens < 5.001);
    eq64(500000, drain(&b, 500000, 5), "the 5 tokens held");
    eq64(10000, token_bucket_take(&b, 500000), "new rate: 10 ms");

    /* A smaller burst clamps the tokens held. */
    token_bucket_init(&b, 10, 10, 0);
    token_bucket_set_rate(&b, 10, 3, 0);
    assert_true(b.tokens == 3);
    eq64(0, drain(&b, 0, 3), "3 held");
    eq64(100000, token_bucket_take(&b, 0), "then empty");

    /* A larger burst does not add tokens; it raises the refill ceiling. */
    token_bucket_init(&b, 10, 2, 0);
    token_bucket_set_rate(&b, 10, 20, 0);
    assert_true(b.tokens == 2);
    token_bucket_wait_us(&b, 10000000);
    assert_true(b.tokens == 20);

    /* A slower rate lengthens the wait. */
    token_bucket_init(&b, 1000, 1, 0);
    eq64(0, token_bucket_take(&b, 0), "take");
    eq64(1000, token_bucket_wait_us(&b, 0), "1 ms at 1000/s");
    token_bucket_set_rate(&b, 1, 1, 0);
    eq64(1000000, token_bucket_wait_us(&b, 0), "1 s at 1/s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_full),     cmocka_unit_test(test_steady_rate_50_per_s),
        cmocka_unit_test(test_burst_then_rate), cmocka_unit_test(test_rates_that_do_not_divide),
        cmocka_unit_test(test_exact_waits),     cmocka_unit_test(test_time_backwards),
        cmocka_unit_test(test_huge_gaps),       cmocka_unit_test(test_set_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
