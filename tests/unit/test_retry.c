/* test_retry.c: retry_next_delay_ms, the upstream retry policy (every status
 * and transport failure for each call kind, max_retries, the deadline, full
 * jitter bounds and the exponent cap, Retry-After use), and
 * retry_parse_retry_after_ms (delta-seconds, the three HTTP-date forms
 * against a fixed now, garbage, negative and huge values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "retry.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>

/* Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date, in ms. */
#define RFC_DATE_MS INT64_C(784111777000)
#define HOUR_MS     INT64_C(3600000)

static const struct retry_policy policy = {
    .max_retries = 3, .base_delay_ms = 100, .max_delay_ms = 2000};

static const enum retry_call_kind kinds[] = {RETRY_CALL_SAFE, RETRY_CALL_SUBMISSION,
                                             RETRY_CALL_IDEMPOTENT_SUBMISSION};
#define KIND_COUNT (sizeof kinds / sizeof kinds[0])

static void eq64(int64_t want, int64_t got, const char *what)
{
    if (want != got)
        fail_msg("%s: expected %" PRId64 ", got %" PRId64, what, want, got);
}

static struct retry_attempt answer(enum retry_call_kind kind, int status, const char *code)
{
    return (struct retry_attempt){.kind = kind,
                                  .failure = RETRY_FAILURE_NONE,
                                  .status = status,
                                  .error_code = code,
                                  .retry_after_ms = -1,
                                  .retries_done = 0,
                                  .remaining_ms = 60000};
}

static struct retry_attempt transport(enum retry_call_kind kind, enum retry_failure failure)
{
    struct retry_attempt a = answer(kind, 0, NULL);
    a.failure = failure;
    return a;
}

/* random01 = 0 gives delay 0 whenever the policy retries. */
static bool retried(const struct retry_attempt *a)
{
    return retry_next_delay_ms(&policy, a, 0.0) >= 0;
}

static void expect_status(enum retry_call_kind kind, int status, const char *code, bool want)
{
    struct retry_attempt a = answer(kind, status, code);
    if (retried(&a) != want)
        fail_msg("kind %d, status %d %s: expected %s", (int)kind, status, code ? code : "(null)",
                 want ? "a retry" : "no retry");
}

static void test_429_any_code_every_kind(void **state)
{
    (void)state;
    const char *codes[] = {"RATE_LIMIT_EXCEEDED",
                           "CONCURRENCY_LIMIT_EXCEEDED",
                           "CONCURRENT_LIMIT_EXCEEDED",
                           "QUEUE_LIMIT_EXCEEDED",
                           "SOMETHING_NEW",
                           "",
                           NULL};
    for (size_t k = 0; k < KIND_COUNT; k++)
        for (size_t c = 0; c < sizeof codes / sizeof codes[0]; c++)
            expect_status(kinds[k], 429, codes[c], true);
}

static void test_5xx_gateway_errors(void **state)
{
    (void)state;
    const int statuses[] = {502, 503, 504};
    for (size_t s = 0; s < 3; s++) {
        expect_status(RETRY_CALL_SAFE, statuses[s], NULL, true);
        expect_status(RETRY_CALL_IDEMPOTENT_SUBMISSION, statuses[s], NULL, true);
        /* The upstream may have created the task before the gateway failed. */
        expect_status(RETRY_CALL_SUBMISSION, statuses[s], NULL, false);
    }
    expect_status(RETRY_CALL_SAFE, 502, "EXTERNAL_SERVICE_ERROR", true);
    expect_status(RETRY_CALL_SAFE, 503, "SERVICE_UNAVAILABLE", true);
}

static void test_final_statuses(void **state)
{
    (void)state;
    const int statuses[] = {100, 200, 201, 202, 204, 301, 304, 400, 401, 403,
                            404, 405, 408, 409, 413, 422, 428, 431, 499, 500,
                            501, 505, 507, 511, 0,   -1,  599, 600, 999};
    for (size_t k = 0; k < KIND_COUNT; k++)
        for (size_t s = 0; s < sizeof statuses / sizeof statuses[0]; s++)
            expect_status(kinds[k], statuses[s], NULL, false);
    /* A known code does not make a final status retryable. */
    expect_status(RETRY_CALL_SAFE, 500, "INTERNAL_SERVER_ERROR", false);
    expect_status(RETRY_CALL_SAFE, 400, "RATE_LIMIT_EXCEEDED", false);
    expect_status(RETRY_CALL_SAFE, 409, "RESOURCE_ALREADY_EXISTS", false);
}

static void test_transport_failures(void **state)
{
    (void)state;
    for (size_t k = 0; k < KIND_COUNT; k++) {
        struct retry_attempt a = transport(kinds[k], RETRY_FAILURE_CONNECT);
        assert_true(retried(&a)); /* the upstream saw nothing */
        bool repeatable = kinds[k] != RETRY_CALL_SUBMISSION;
        a = transport(kinds[k], RETRY_FAILURE_BROKEN);
        assert_true(retried(&a) == repeatable);
        a = transport(kinds[k], RETRY_FAILURE_TIMEOUT);
        assert_true(retried(&a) == repeatable);
    }
    /* The status is ignored on a transport failure. */
    struct retry_attempt a = transport(RETRY_CALL_SUBMISSION, RETRY_FAILURE_TIMEOUT);
    a.status = 429;
    assert_false(retried(&a));
    a = transport(RETRY_CALL_SAFE, RETRY_FAILURE_CONNECT);
    a.status = 400;
    assert_true(retried(&a));
}

static void test_max_retries(void **state)
{
    (void)state;
    struct retry_attempt a = answer(RETRY_CALL_SAFE, 503, NULL);
    for (int done = 0; done < 3; done++) {
        a.retries_done = done;
        assert_true(retried(&a));
    }
    a.retries_done = 3;
    assert_false(retried(&a));
    a.retries_done = 1000;
    assert_false(retried(&a));
    a.retry_after_ms = 10; /* Retry-After does not lift the limit */
    assert_false(retried(&a));

    struct retry_policy none = {.max_retries = 0, .base_delay_ms = 100, .max_delay_ms = 1000};
    a = transport(RETRY_CALL_SAFE, RETRY_FAILURE_CONNECT);
    eq64(-1, retry_next_delay_ms(&none, &a, 0.5), "max_retries 0");
    none.max_retries = -5;
    eq64(-1, retry_next_delay_ms(&none, &a, 0.5), "max_retries < 0");
}

static void test_deadline(void **state)
{
    (void)state;
    struct retry_attempt a = answer(RETRY_CALL_SAFE, 503, NULL);
    a.retry_after_ms = 1000;
    a.remaining_ms = 1001;
    eq64(1000, retry_next_delay_ms(&policy, &a, 0.0), "fits");
    a.remaining_ms = 1000;
    eq64(-1, retry_next_delay_ms(&policy, &a, 0.0), "delay == remaining");
    a.remaining_ms = 999;
    eq64(-1, retry_next_delay_ms(&policy, &a, 0.0), "delay > remaining");

    /* Backoff: base 100, first retry drawn from [0, 100]. */
    a = transport(RETRY_CALL_SAFE, RETRY_FAILURE_BROKEN);
    a.remaining_ms = 51;
    eq64(50, retry_next_delay_ms(&policy, &a, 0.5), "jitter fits");
    a.remaining_ms = 50;
    eq64(-1, retry_next_delay_ms(&policy, &a, 0.5), "jitter does not fit");
    eq64(0, retry_next_delay_ms(&policy, &a, 0.0), "delay 0 fits");
    a.remaining_ms = 0;
    eq64(-1, retry_next_delay_ms(&policy, &a, 0.0), "deadline reached");
    a.remaining_ms = -5;
    eq64(-1, retry_next_delay_ms(&policy, &a, 0.0), "deadline passed");
}

static void test_full_jitter_bounds(void **state)
{
    (void)state;
    struct retry_attempt a = transport(RETRY_CALL_SAFE, RETRY_FAILURE_TIMEOUT);
    struct retry_policy p = {.max_retries = 100, .base_delay_ms = 100, .max_delay_ms = 2000};
    a.remaining_ms = INT64_MAX;
    /* ceiling = min(2000, 100 * 2^n): 100, 200, 400, 800, 1600, 2000, 2000 ... */
    const int64_t ceilings[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
    for (int n = 0; n < 8; n++) {
        a.retries_done = n;
        eq64(0, retry_next_delay_ms(&p, &a, 0.0), "random 0 -> 0");
        int64_t high = retry_next_delay_ms(&p, &a, 0.999);
        if (high > ceilings[n] || high < ceilings[n] * 998 / 1000)
            fail_msg("retry %d: random 0.999 gave %" PRId64 ", ceiling %" PRId64, n, high,
                     ceilings[n]);
        /* The largest double below 1 reaches the ceiling, never passes it. */
        eq64(ceilings[n], retry_next_delay_ms(&p, &a, 0.99999999999999989), "top");
        eq64(ceilings[n] / 2, retry_next_delay_ms(&p, &a, 0.5 - 0.1 / (double)ceilings[n]),
             "middle");
    }
    /* Out-of-range random values are clamped into [0, 1). */
    a.retries_done = 0;
    eq64(0, retry_next_delay_ms(&p, &a, -3.0), "negative random");
    eq64(100, retry_next_delay_ms(&p, &a, 1.0), "random 1");
    eq64(100, retry_next_delay_ms(&p, &a, 7.5), "random > 1");
    eq64(0, retry_next_delay_ms(&p, &a, (double)NAN), "NaN");
}

static void test_exponent_cap(void **state)
{
    (void)state;
    struct retry_attempt a = transport(RETRY_CALL_SAFE, RETRY_FAILURE_CONNECT);
    a.remaining_ms = INT64_MAX;
    struct retry_policy p = {
        .max_retries = 2147483647, .base_delay_ms = 1000, .max_delay_ms = INT64_MAX};
    /* 1000 * 2^62 overflows: the ceiling stops at max_delay_ms. */
    const int dones[] = {53, 54, 62, 63, 64, 1000, 2147483646};
    for (size_t i = 0; i < sizeof dones / sizeof dones[0]; i++) {
        a.retries_done = dones[i];
        int64_t d = retry_next_delay_ms(&p, &a, 0.99999999999999989);
        if (d < INT64_MAX / 2 || d < 0)
            fail_msg("retries_done %d: %" PRId64, dones[i], d);
        eq64(0, retry_next_delay_ms(&p, &a, 0.0), "low end");
    }
    a.retries_done = 40; /* 1000 * 2^40 fits */
    int64_t d = retry_next_delay_ms(&p, &a, 0.5);
    if (d < INT64_C(1000) << 39 || d > (INT64_C(1000) << 39) + 1)
        fail_msg("2^40: %" PRId64, d);

    /* A small max with a huge retry count, and degenerate settings. */
    p = (struct retry_policy){.max_retries = 2147483647, .base_delay_ms = 3, .max_delay_ms = 10};
    a.retries_done = 2147483646;
    eq64(10, retry_next_delay_ms(&p, &a, 0.99999999999999989), "capped at 10");
    p.base_delay_ms = 0; /* no backoff: always 0, however many retries */
    eq64(0, retry_next_delay_ms(&p, &a, 0.9), "base 0");
    p = (struct retry_policy){.max_retries = 5, .base_delay_ms = 500, .max_delay_ms = 100};
    a.retries_done = 0;
    eq64(100, retry_next_delay_ms(&p, &a, 0.99999999999999989), "base > max: max");
    p = (struct retry_policy){.max_retries = 5, .base_delay_ms = -5, .max_delay_ms = -1};
    eq64(0, retry_next_delay_ms(&p, &a, 0.9), "negative settings: 0");
}

static void test_retry_after(void **state)
{
    (void)state;
    /* Honoured on 503 and 429, even past max_delay_ms (2000). */
    struct retry_attempt a = answer(RETRY_CALL_SAFE, 503, "SERVICE_UNAVAILABLE");
    a.retry_after_ms = 30000;
    eq64(30000, retry_next_delay_ms(&policy, &a, 0.7), "503 Retry-After 30 s");
    a.retry_after_ms = 0;
    eq64(0, retry_next_delay_ms(&policy, &a, 0.7), "503 Retry-After 0");
    a.retry_after_ms = 30000;
    a.remaining_ms = 30000;
    eq64(-1, retry_next_delay_ms(&policy, &a, 0.7), "past the deadline");

    a = answer(RETRY_CALL_SUBMISSION, 429, "QUEUE_LIMIT_EXCEEDED");
    a.retry_after_ms = 5000;
    eq64(5000, retry_next_delay_ms(&policy, &a, 0.7), "429 Retry-After");

    /* Without Retry-After, 503 and 429 back off. */
    a = answer(RETRY_CALL_SAFE, 503, NULL);
    eq64(50, retry_next_delay_ms(&policy, &a, 0.5), "503 backoff");
    a = answer(RETRY_CALL_SAFE, 429, "RATE_LIMIT_EXCEEDED");
    a.retries_done = 2;
    eq64(200, retry_next_delay_ms(&policy, &a, 0.5), "429 backoff, ceiling 400");

    /* 502 and 504 do not define Retry-After: backoff. */
    a = answer(RETRY_CALL_SAFE, 502, NULL);
    a.retry_after_ms = 30000;
    eq64(50, retry_next_delay_ms(&policy, &a, 0.5), "502 ignores it");
    a.status = 504;
    eq64(50, retry_next_delay_ms(&policy, &a, 0.5), "504 ignores it");
    a = transport(RETRY_CALL_SAFE, RETRY_FAILURE_CONNECT);
    a.retry_after_ms = 30000;
    eq64(50, retry_next_delay_ms(&policy, &a, 0.5), "transport ignores it");

    /* A submission's 503 stays final even with Retry-After. */
    a = answer(RETRY_CALL_SUBMISSION, 503, NULL);
    a.retry_after_ms = 10;
    eq64(-1, retry_next_delay_ms(&policy, &a, 0.5), "submission 503");
}

static void expect_parse(const char *value, int64_t now_ms, int64_t want)
{
    int64_t got = retry_parse_retry_after_ms(value, now_ms);
    if (got != want)
        fail_msg("'%s': expected %" PRId64 ", got %" PRId64, value ? value : "(null)", want, got);
}

static void test_parse_seconds(void **state)
{
    (void)state;
    expect_parse("0", 0, 0);
    expect_parse("1", 0, 1000);
    expect_parse("120", RFC_DATE_MS, 120000);
    expect_parse("007", 0, 7000);
    expect_parse("  5\t", 0, 5000);
    expect_parse("2147483647", 0, INT64_C(2147483647000));
    /* RFC 9111 section 1.2.2: too large counts as 2^31 seconds. */
    expect_parse("2147483648", 0, RETRY_AFTER_MAX_MS);
    expect_parse("2147483649", 0, RETRY_AFTER_MAX_MS);
    expect_parse("99999999999999999999999999999999999999", 0, RETRY_AFTER_MAX_MS);
    expect_parse("9223372036854775808", 0, RETRY_AFTER_MAX_MS);
}

static void test_parse_garbage(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "   ",
                         "-1",
                         "-0",
                         "+5",
                         "1.5",
                         "5s",
                         "5 6",
                         "0x10",
                         "1e3",
                         "soon",
                         "Sun, 06 Nov 1994 08:49:37",
                         "Sun, 06 Nov 1994 08:49:37 UTC",
                         "Sun, 06 Nov 1994 08:49:37 GMT x",
                         "Sun, 6 Nov 1994 08:49:37 GMT",
                         "Sun, 06 November 1994 08:49:37 GMT",
                         "Sun, 06 Nov 94 08:49:37 GMT",
                         "Sun, 06 Nov 1994 8:49:37 GMT",
                         "Sun, 06 Nov 1994 24:00:00 GMT",
                         "Sun, 06 Nov 1994 08:60:00 GMT",
                         "Sun, 06 Nov 1994 08:49:61 GMT",
                         "Sun, 31 Nov 1994 08:49:37 GMT",
                         "Sun, 00 Nov 1994 08:49:37 GMT",
                         "Tue, 29 Feb 2100 00:00:00 GMT",
                         "Xyz, 06 Nov 1994 08:49:37 GMT",
                         "Sunday, 06 Nov 1994 08:49:37 GMT",
                         "Sun,06 Nov 1994 08:49:37 GMT",
                         "Sun, 06-Nov-94 08:49:37 GMT",
                         "Sunday, 06-Nov-1994 08:49:37 GMT",
                         "Sun Nov 6 08:49:37 1994",
                         "Sun Nov  6 08:49:37 94",
                         "Sun Nov  6 08:49:37 1994 GMT",
                         "Sun, 06 Nov 1994 08:49:37 GMT\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_parse(bad[i], RFC_DATE_MS - HOUR_MS, -1);
    expect_parse(NULL, 0, -1);
}

static void test_parse_dates(void **state)
{
    (void)state;
    const int64_t now = RFC_DATE_MS - HOUR_MS; /* one hour before the date */
    expect_parse("Sun, 06 Nov 1994 08:49:37 GMT", now, HOUR_MS);
    expect_parse("Sunday, 06-Nov-94 08:49:37 GMT", now, HOUR_MS);
    expect_parse("Sun Nov  6 08:49:37 1994", now, HOUR_MS);
    expect_parse("sun, 06 NOV 1994 08:49:37 gmt", now, HOUR_MS); /* names in any case */
    expect_parse(" Sun, 06 Nov 1994 08:49:37 GMT ", now, HOUR_MS);
    expect_parse("Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE_MS - 1500, 1500);
    /* Now or past: retry at once. */
    expect_parse("Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE_MS, 0);
    expect_parse("Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE_MS + HOUR_MS, 0);
    expect_parse("Thu, 01 Jan 1970 00:00:00 GMT", 0, 0);
    expect_parse("Thu, 01 Jan 1970 00:00:01 GMT", 0, 1000);
    /* Calendar edges. */
    expect_parse("Thu, 29 Feb 2024 00:00:00 GMT", INT64_C(1709164800000) - 1, 1);
    expect_parse("Fri, 31 Dec 1999 23:59:59 GMT", INT64_C(946684799000) - 2000, 2000);
    expect_parse("Tue, 29 Feb 2000 12:00:00 GMT", INT64_C(951825600000) - 1, 1);
    expect_parse("Sat, 01 Jan 2000 00:00:00 GMT", INT64_C(946684800000) - 10, 10);
    expect_parse("Wed Mar  1 00:00:00 2100", INT64_C(4107542400000) - 5, 5);
    /* The weekday is not checked against the date. */
    expect_parse("Mon, 06 Nov 1994 08:49:37 GMT", now, HOUR_MS);
    /* A far future date is capped; a far past now cannot overflow. */
    expect_parse("Fri, 31 Dec 9999 23:59:59 GMT", 0, RETRY_AFTER_MAX_MS);
    expect_parse("Fri, 31 Dec 9999 23:59:59 GMT", INT64_MIN, RETRY_AFTER_MAX_MS);
    expect_parse("Mon, 01 Jan 0001 00:00:00 GMT", INT64_MAX, 0);
}

static void test_parse_rfc850_century(void **state)
{
    (void)state;
    /* Two-digit years: more than 50 years ahead means the previous century
     * (RFC 9110 section 5.6.7). now = 2025-01-01T00:00:00Z. */
    const int64_t now = INT64_C(1735689600000);
    expect_parse("Wednesday, 01-Jan-25 00:00:10 GMT", now, 10000);
    expect_parse("Thursday, 01-Jan-26 00:00:00 GMT", now, INT64_C(365) * 86400000);
    /* 2075 is 50 years ahead, still this century; 2076 would be 51: 1976. */
    expect_parse("Tuesday, 01-Jan-75 00:00:00 GMT", now, INT64_C(1577836800000));
    expect_parse("Thursday, 01-Jan-76 00:00:00 GMT", now, 0);
    expect_parse("Friday, 31-Dec-99 23:59:59 GMT", now, 0); /* 1999, in the past */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_429_any_code_every_kind),
        cmocka_unit_test(test_5xx_gateway_errors),
        cmocka_unit_test(test_final_statuses),
        cmocka_unit_test(test_transport_failures),
        cmocka_unit_test(test_max_retries),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_full_jitter_bounds),
        cmocka_unit_test(test_exponent_cap),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_parse_seconds),
        cmocka_unit_test(test_parse_garbage),
        cmocka_unit_test(test_parse_dates),
        cmocka_unit_test(test_parse_rfc850_century),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
