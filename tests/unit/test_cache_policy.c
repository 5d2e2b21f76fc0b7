/* test_cache_policy.c: freshness (policy.h). Request Cache-Control parsing
 * (RFC 9111 section 5.2.1: names in any case, token or quoted arguments,
 * malformed parts ignored, huge numbers clamped), the verdict at each
 * boundary of max-age, expiry and max-stale, age and TTL rounding, and
 * stale-if-error. Times are plain numbers: nothing reads a clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy.h"

#include <stdio.h>

#define CLAMP (INT64_MAX / 1000)
#define T0    1767225600000 /* an arbitrary wall-clock time in ms */

static struct cache_directives parse(const char *value)
{
    struct cache_directives d;
    d.no_cache = true; /* parse must reset everything */
    d.no_store = true;
    d.only_if_cached = true;
    d.max_age_s = 123;
    d.max_stale_s = 456;
    cache_policy_parse(value, &d);
    return d;
}

static void assert_none(const char *value)
{
    struct cache_directives d = parse(value);
    if (d.no_cache || d.no_store || d.only_if_cached || d.max_age_s != CACHE_POLICY_UNSET ||
        d.max_stale_s != CACHE_POLICY_UNSET)
        fail_msg("'%s' gave directives", value ? value : "(null)");
}

static void assert_max_age(const char *value, int64_t want)
{
    struct cache_directives d = parse(value);
    if (d.max_age_s != want)
        fail_msg("'%s': max-age %lld, want %lld", value, (long long)d.max_age_s, (long long)want);
}

static void assert_max_stale(const char *value, int64_t want)
{
    struct cache_directives d = parse(value);
    if (d.max_stale_s != want)
        fail_msg("'%s': max-stale %lld, want %lld", value, (long long)d.max_stale_s,
                 (long long)want);
}

static void test_parse_nothing(void **state)
{
    (void)state;
    assert_none(NULL);
    assert_none("");
    assert_none("   ");
    assert_none(",,, ,");
    assert_none("no-transform, min-fresh=5, private, x-ext=\"max-age=5, no-store\"");
    assert_none("nocache");
    assert_none("no-cache-x");
    assert_none("max-agex=5");
}

static void test_parse_flags(void **state)
{
    (void)state;
    struct cache_directives d = parse("no-cache");
    assert_true(d.no_cache);
    assert_false(d.no_store);
    assert_false(d.only_if_cached);
    assert_int_equal(d.max_age_s, CACHE_POLICY_UNSET);
    assert_int_equal(d.max_stale_s, CACHE_POLICY_UNSET);

    d = parse("No-Store");
    assert_true(d.no_store);
    assert_false(d.no_cache);
    d = parse("ONLY-IF-CACHED");
    assert_true(d.only_if_cached);
    d = parse(" \tno-cache ,\tno-store,only-if-cached\t");
    assert_true(d.no_cache && d.no_store && d.only_if_cached);
    d = parse("no-cache,,,no-store,");
    assert_true(d.no_cache && d.no_store);
    /* An argument on a flag is unexpected; the flag still counts. */
    d = parse("no-cache=\"Set-Cookie\"");
    assert_true(d.no_cache);
}

static void test_parse_max_age(void **state)
{
    (void)state;
    assert_max_age("max-age=0", 0);
    assert_max_age("max-age=60", 60);
    assert_max_age("MAX-AGE=60", 60);
    assert_max_age("Max-Age=007", 7);
    assert_max_age("max-age=\"60\"", 60);
    assert_max_age("max-age = 60", 60);
    assert_max_age("no-cache, max-age=5, no-store", 5);
    assert_max_age("x=\"a,max-age=1\", max-age=9", 9);
    assert_max_age("x=\"a\\\"b,max-age=1\", max-age=9", 9);
    /* Malformed: ignored. */
    assert_max_age("max-age", CACHE_POLICY_UNSET);
    assert_max_age("max-age=", CACHE_POLICY_UNSET);
    assert_max_age("max-age=\"\"", CACHE_POLICY_UNSET);
    assert_max_age("max-age=abc", CACHE_POLICY_UNSET);
    assert_max_age("max-age=5s", CACHE_POLICY_UNSET);
    assert_max_age("max-age=-5", CACHE_POLICY_UNSET);
    assert_max_age("max-age=+5", CACHE_POLICY_UNSET);
    assert_max_age("max-age=1.5", CACHE_POLICY_UNSET);
    assert_max_age("max-age=5 6", CACHE_POLICY_UNSET);
    assert_max_age("max-age=\"5", CACHE_POLICY_UNSET);
    assert_max_age("max-age=\" 5\"", CACHE_POLICY_UNSET);
    /* The first valid occurrence wins; an invalid one does not block it. */
    assert_max_age("max-age=5, max-age=10", 5);
    assert_max_age("max-age=abc, max-age=10", 10);
    /* Huge values clamp without overflow. */
    assert_max_age("max-age=9223372036854775", CLAMP);
    assert_max_age("max-age=9223372036854774", CLAMP - 1);
    assert_max_age("max-age=9223372036854776", CLAMP);
    assert_max_age("max-age=9223372036854775807", CLAMP);
    assert_max_age("max-age=99999999999999999999999999999999999999999999", CLAMP);
    assert_max_age("max-age=2147483648", 2147483648);
    /* A malformed neighbour does not hide a good directive. */
    struct cache_directives d = parse("max-age=\"1, no-store");
    assert_int_equal(d.max_age_s, CACHE_POLICY_UNSET);
    assert_false(d.no_store); /* inside the unterminated quote */
    d = parse("max-age=1 junk, no-store");
    assert_int_equal(d.max_age_s, CACHE_POLICY_UNSET);
    assert_true(d.no_store);
    d = parse("=5, no-cache");
    assert_true(d.no_cache);
}

static void test_parse_max_stale(void **state)
{
    (void)state;
    assert_max_stale("max-stale", CACHE_POLICY_ANY);
    assert_max_stale("Max-Stale", CACHE_POLICY_ANY);
    assert_max_stale("max-stale , no-cache", CACHE_POLICY_ANY);
    assert_max_stale("max-stale=0", 0);
    assert_max_stale("max-stale=30", 30);
    assert_max_stale("max-stale=\"30\"", 30);
    assert_max_stale("max-stale=99999999999999999999", CLAMP);
    assert_max_stale("max-stale=abc", CACHE_POLICY_UNSET);
    assert_max_stale("max-stale=-1", CACHE_POLICY_UNSET);
    assert_max_stale("max-stale=", CACHE_POLICY_UNSET);
    assert_max_stale("max-stale=10, max-stale", 10);
    assert_max_stale("max-stale, max-stale=10", CACHE_POLICY_ANY);
    struct cache_directives d = parse("max-age=10, max-stale=20");
    assert_int_equal(d.max_age_s, 10);
    assert_int_equal(d.max_stale_s, 20);
}

static struct cache_directives none(void)
{
    struct cache_directives d;
    cache_policy_parse(NULL, &d);
    return d;
}

static void test_judge_freshness(void **state)
{
    (void)state;
    struct cache_directives d = none();
    const int64_t exp = T0 + 60000;
    assert_int_equal(cache_policy_judge(&d, T0, exp, T0), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp - 1), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp), CACHE_VERDICT_MISS);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp + 1), CACHE_VERDICT_MISS);
    /* expires_at 0: never expires. */
    assert_int_equal(cache_policy_judge(&d, T0, 0, INT64_MAX), CACHE_VERDICT_FRESH);
    /* NULL directives: as none. */
    assert_int_equal(cache_policy_judge(NULL, T0, exp, T0), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(NULL, T0, exp, exp), CACHE_VERDICT_MISS);
    /* only-if-cached does not change what an entry may answer. */
    d = parse("only-if-cached");
    assert_int_equal(cache_policy_judge(&d, T0, exp, T0), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp), CACHE_VERDICT_MISS);
}

static void test_judge_no_cache_no_store(void **state)
{
    (void)state;
    const char *values[] = {"no-cache", "no-store", "no-cache, max-stale", "no-store, max-age=99"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct cache_directives d = parse(values[i]);
        assert_int_equal(cache_policy_judge(&d, T0, 0, T0), CACHE_VERDICT_MISS);
        assert_int_equal(cache_policy_judge(&d, T0, T0 + 60000, T0 + 1), CACHE_VERDICT_MISS);
        assert_int_equal(cache_policy_judge(&d, T0, T0 + 1, T0 + 2), CACHE_VERDICT_MISS);
    }
}

static void test_judge_max_age(void **state)
{
    (void)state;
    struct cache_directives d = parse("max-age=10");
    /* Age is whole seconds rounded down: 10.999 s is age 10, still accepted. */
    assert_int_equal(cache_policy_judge(&d, T0, 0, T0 + 10999), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, 0, T0 + 11000), CACHE_VERDICT_MISS);
    d = parse("max-age=0");
    assert_int_equal(cache_policy_judge(&d, T0, 0, T0), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, 0, T0 + 999), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, 0, T0 + 1000), CACHE_VERDICT_MISS);
    /* Clock skew: stored in the future is age 0. */
    assert_int_equal(cache_policy_judge(&d, T0 + 5000, 0, T0), CACHE_VERDICT_FRESH);
    /* max-age applies to stale entries too: max-stale cannot rescue them. */
    d = parse("max-age=10, max-stale");
    assert_int_equal(cache_policy_judge(&d, T0, T0 + 5000, T0 + 9000), CACHE_VERDICT_STALE);
    assert_int_equal(cache_policy_judge(&d, T0, T0 + 5000, T0 + 11000), CACHE_VERDICT_MISS);
    /* A huge max-age never overflows. */
    d = parse("max-age=99999999999999999999");
    assert_int_equal(cache_policy_judge(&d, INT64_MIN, 0, INT64_MAX), CACHE_VERDICT_FRESH);
}

static void test_judge_max_stale(void **state)
{
    (void)state;
    const int64_t exp = T0 + 60000;
    struct cache_directives d = parse("max-stale");
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp - 1), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp), CACHE_VERDICT_STALE);
    assert_int_equal(cache_policy_judge(&d, T0, exp, INT64_MAX), CACHE_VERDICT_STALE);

    d = parse("max-stale=30");
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp - 1), CACHE_VERDICT_FRESH);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp), CACHE_VERDICT_STALE);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp + 30000), CACHE_VERDICT_STALE);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp + 30999), CACHE_VERDICT_STALE);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp + 31000), CACHE_VERDICT_MISS);

    d = parse("max-stale=0");
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp), CACHE_VERDICT_STALE);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp + 999), CACHE_VERDICT_STALE);
    assert_int_equal(cache_policy_judge(&d, T0, exp, exp + 1000), CACHE_VERDICT_MISS);

    /* A never-expiring entry is never stale. */
    assert_int_equal(cache_policy_judge(&d, T0, 0, INT64_MAX), CACHE_VERDICT_FRESH);
    /* Extremes saturate rather than overflow. */
    d = parse("max-stale=99999999999999999999");
    assert_int_equal(cache_policy_judge(&d, INT64_MIN, INT64_MIN, INT64_MAX), CACHE_VERDICT_STALE);
    d = parse("max-stale=5");
    assert_int_equal(cache_policy_judge(&d, INT64_MIN, INT64_MIN, INT64_MAX), CACHE_VERDICT_MISS);
}

static void test_age(void **state)
{
    (void)state;
    assert_int_equal(cache_policy_age_s(T0, T0), 0);
    assert_int_equal(cache_policy_age_s(T0, T0 + 999), 0);
    assert_int_equal(cache_policy_age_s(T0, T0 + 1000), 1);
    assert_int_equal(cache_policy_age_s(T0, T0 + 61999), 61);
    assert_int_equal(cache_policy_age_s(T0, T0 - 1), 0);
    assert_int_equal(cache_policy_age_s(T0, T0 - 100000), 0);
    assert_true(cache_policy_age_s(INT64_MIN, INT64_MAX) == INT64_MAX / 1000);
    assert_int_equal(cache_policy_age_s(INT64_MAX, INT64_MIN), 0);
}

static void test_ttl(void **state)
{
    (void)state;
    assert_true(cache_policy_ttl_s(0, T0) == INT64_MAX);
    assert_true(cache_policy_ttl_s(0, INT64_MAX) == INT64_MAX);
    assert_int_equal(cache_policy_ttl_s(T0 + 60000, T0), 60);
    assert_int_equal(cache_policy_ttl_s(T0 + 60999, T0), 60);
    assert_int_equal(cache_policy_ttl_s(T0 + 1000, T0), 1);
    assert_int_equal(cache_policy_ttl_s(T0 + 999, T0), 0);
    assert_int_equal(cache_policy_ttl_s(T0 + 1, T0), 0);
    /* Negative from the moment the entry expires (now >= expires). */
    assert_int_equal(cache_policy_ttl_s(T0, T0), -1);
    assert_int_equal(cache_policy_ttl_s(T0, T0 + 999), -1);
    assert_int_equal(cache_policy_ttl_s(T0, T0 + 1000), -2);
    assert_int_equal(cache_policy_ttl_s(T0, T0 + 60000), -61);
    assert_true(cache_policy_ttl_s(INT64_MAX, INT64_MIN) == INT64_MAX / 1000);
    assert_true(cache_policy_ttl_s(INT64_MIN, INT64_MAX) == -(INT64_MAX / 1000) - 1);
    /* The sign agrees with the verdict at every millisecond near expiry. */
    struct cache_directives d = none();
    for (int64_t now = T0 - 2500; now <= T0 + 2500; now++) {
        bool fresh = cache_policy_judge(&d, T0 - 10000, T0, now) == CACHE_VERDICT_FRESH;
        assert_int_equal(fresh, cache_policy_ttl_s(T0, now) >= 0);
    }
}

static void test_stale_if_error(void **state)
{
    (void)state;
    const int64_t exp = T0 + 60000;
    assert_true(cache_policy_stale_if_error(0, T0, 0));
    assert_true(cache_policy_stale_if_error(0, INT64_MAX, -1));
    assert_true(cache_policy_stale_if_error(exp, T0, 0));
    assert_true(cache_policy_stale_if_error(exp, exp - 1, 0));
    assert_true(cache_policy_stale_if_error(exp, exp, 0));
    assert_false(cache_policy_stale_if_error(exp, exp + 1, 0));
    assert_true(cache_policy_stale_if_error(exp, exp + 300000, 300000));
    assert_false(cache_policy_stale_if_error(exp, exp + 300001, 300000));
    /* A negative window: only fresh entries. */
    assert_true(cache_policy_stale_if_error(exp, exp - 1, -1));
    assert_false(cache_policy_stale_if_error(exp, exp, -1));
    /* No overflow at the extremes. */
    assert_true(cache_policy_stale_if_error(INT64_MIN, INT64_MAX, INT64_MAX));
    assert_false(cache_policy_stale_if_error(INT64_MIN, INT64_MAX, INT64_MAX - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_nothing),
        cmocka_unit_test(test_parse_flags),
        cmocka_unit_test(test_parse_max_age),
        cmocka_unit_test(test_parse_max_stale),
        cmocka_unit_test(test_judge_freshness),
        cmocka_unit_test(test_judge_no_cache_no_store),
        cmocka_unit_test(test_judge_max_age),
        cmocka_unit_test(test_judge_max_stale),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_stale_if_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
