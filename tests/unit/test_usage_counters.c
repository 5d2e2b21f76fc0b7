/* test_usage_counters.c: usage accounting (usage.h). UTC days and their validation;
 * the row codec round trip and what it refuses (a shorter value of an older
 * version reads with zeros); aggregation per (member, provider, day) and
 * the members' totals since start; credits charged today per member; the
 * report (nesting, order, member filter with "-" for the anonymous one,
 * since); and the store round trip through the writer: flushed rows are in
 * the store, loaded back for today by a new table that counts on from them,
 * past days leave memory once written but stay in the report, a refused
 * flush is written at the next one, and retention prunes old days. Each
 * store test works in a fresh directory under /tmp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store.h"
#include "store_fixture.h"
#include "usage.h"
#include "writer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS  (INT64_C(86400000))
#define T0      (INT64_C(1767225600000)) /* 2026-01-01T00:00:00Z */
#define T0_NOON (T0 + DAY_MS / 2)

static void counters(uint64_t *c, uint64_t requests, uint64_t charged)
{
    memset(c, 0, USAGE_COUNTERS * sizeof *c);
    c[USAGE_REQUESTS] = requests;
    c[USAGE_CREDITS_CHARGED] = charged;
}

static json_int_t at(json_t *report, const char *path)
{
    /* A path of object keys separated by '|' (keys hold '/' and '-'). */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *node = report;
    for (char *save = NULL, *key = strtok_r(buf, "|", &save); key != NULL;
         key = strtok_r(NULL, "|", &save))
        node = json_object_get(node, key);
    if (!json_is_integer(node))
        fail_msg("no integer at %s", path);
    return json_integer_value(node);
}

static void test_days(void **state)
{
    (void)state;
    char day[USAGE_DAY_LEN + 1];
    usage_day(0, day);
    assert_string_equal(day, "1970-01-01");
    usage_day(T0 - 1, day);
    assert_string_equal(day, "2025-12-31");
    usage_day(T0, day);
    assert_string_equal(day, "2026-01-01");
    assert_int_equal(usage_day_start_ms("2026-01-01"), T0);
    assert_true(usage_day_valid("2024-02-29"));
    static const char *const bad[] = {"2023-02-29", "2026-13-01", "2026-00-10", "2026-1-01",
                                      "2026-01-1",  "20260101",   "1969-12-31", "2026-01-01x",
                                      "2026/01/01", "",           "abcd-ef-gh"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (usage_day_valid(bad[i]))
            fail_msg("'%s' accepted as a day", bad[i]);
}

static void test_codec(void **state)
{
    (void)state;
    unsigned char key[CACHE_USAGE_KEY_MAX];
    size_t n = usage_key_encode("2026-01-01", "alice", "google/news", key, sizeof key);
    assert_int_equal(n, 10 + 1 + 5 + 1 + 11);
    char day[16], member[USAGE_MEMBER_MAX], provider[USAGE_PROVIDER_MAX];
    assert_int_equal(usage_key_decode(key, n, day, member, provider), 0);
    assert_string_equal(day, "2026-01-01");
    assert_string_equal(member, "alice");
    assert_string_equal(provider, "google/news");
    n = usage_key_encode("2026-01-01", "", "chatgpt", key, sizeof key);
    assert_int_equal(usage_key_decode(key, n, day, member, provider), 0);
    assert_string_equal(member, "");
    assert_int_equal(usage_key_encode("2026-1-1", "a", "b", key, sizeof key), 0);
    assert_int_equal(usage_key_encode("2026-01-01", "a", "b", key, 5), 0);
    assert_int_equal(
        usage_key_decode((const unsigned char *)"2026-01-01", 10, day, member, provider), -1);
    assert_int_equal(
        usage_key_decode((const unsigned char *)"2026-13-01\0a\0b", 14, day, member, provider), -1);
    assert_int_equal(
        usage_key_decode((const unsigned char *)"2026-01-01\0a\0", 13, day, member, provider), -1);
    assert_int_equal(
        usage_key_decode((const unsigned char *)"2026-01-01\0ab", 13, day, member, provider), -1);

    uint64_t c[USAGE_COUNTERS], back[USAGE_COUNTERS];
    for (int i = 0; i < USAGE_COUNTERS; i++)
        c[i] = (uint64_t)i * 0x0102030405060708ULL + 1;
    unsigned char value[USAGE_VALUE_BYTES];
    assert_int_equal(usage_value_encode(c, value), USAGE_VALUE_BYTES);
    assert_int_equal(usage_value_decode(value, sizeof value, back), 0);
    assert_memory_equal(c, back, sizeof c);
    /* An older value with two counters: the rest read as 0. */
    unsigned char old[2 + 16] = {1, 2, 5, 0, 0, 0, 0, 0, 0, 0, 9};
    assert_int_equal(usage_value_decode(old, sizeof old, back), 0);
    assert_int_equal(back[0], 5);
    assert_int_equal(back[1], 9);
    assert_int_equal(back[USAGE_BYTES_OUT], 0);
    assert_int_equal(usage_value_decode(value, sizeof value - 1, back), -1);
    value[0] = 2;
    assert_int_equal(usage_value_decode(value, sizeof value, back), -1);
    assert_int_equal(usage_value_decode(value, 1, back), -1);
}

struct seen_members {
    char names[64];
    uint64_t requests;
};

static void on_member(const char *member, const uint64_t *counts, void *arg)
{
    struct seen_members *seen = arg;
    size_t n = strlen(seen->names);
    snprintf(seen->names + n, sizeof seen->names - n, "[%s],", member);
    seen->requests += counts[USAGE_REQUESTS];
}

static void test_aggregation_and_report(void **state)
{
    (void)state;
    struct usage *u = usage_new(90);
    uint64_t c[USAGE_COUNTERS];
    counters(c, 1, 7);
    usage_add(u, T0_NOON, "", "chatgpt", c);
    usage_add(u, T0_NOON + 1000, "", "chatgpt", c);
    counters(c, 1, 3);
    usage_add(u, T0_NOON, "", "google", c);
    counters(c, 2, 10);
    usage_add(u, T0_NOON, "bob", "chatgpt", c);
    counters(c, 1, 1);
    usage_add(u, T0_NOON + DAY_MS, "bob", "chatgpt", c); /* the next day */

    assert_int_equal(usage_charged_today(u, "", T0_NOON), 17);
    assert_int_equal(usage_charged_today(u, "bob", T0_NOON), 10);
    assert_int_equal(usage_charged_today(u, "bob", T0_NOON + DAY_MS), 1);
    assert_int_equal(usage_charged_today(u, "carol", T0_NOON), 0);

    json_t *r = usage_report(u, NULL, NULL, "2026-01-01", T0_NOON + DAY_MS);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "since")), "2026-01-01");
    assert_string_equal(json_string_value(json_object_get(r, "today")), "2026-01-02");
    assert_string_equal(json_string_value(json_object_get(r, "anonymous")), "-");
    assert_int_equal(at(r, "totals|requests"), 6);
    assert_int_equal(at(r, "totals|credits_charged"), 28);
    assert_int_equal(at(r, "members|-|totals|requests"), 3);
    assert_int_equal(at(r, "members|-|providers|chatgpt|totals|credits_charged"), 14);
    assert_int_equal(at(r, "members|-|providers|chatgpt|days|2026-01-01|requests"), 2);
    assert_int_equal(at(r, "members|-|days|2026-01-01|credits_charged"), 17);
    assert_int_equal(at(r, "members|bob|days|2026-01-02|requests"), 1);
    assert_int_equal(at(r, "members|bob|providers|chatgpt|totals|requests"), 3);
    assert_int_equal(at(r, "members|bob|totals|bytes_out"), 0);
    /* Every counter is there, in a row and in the totals. */
    json_t *row = json_object_get(json_object_get(json_object_get(r, "members"), "-"), "totals");
    assert_int_equal(json_object_size(row), USAGE_COUNTERS);
    /* Members, then days, in ascending order. */
    const char *name;
    json_t *v;
    const char *order[] = {"-", "bob"};
    size_t i = 0;
    json_object_foreach(json_object_get(r, "members"), name, v)
    {
        assert_true(i < 2);
        assert_string_equal(name, order[i++]);
    }
    json_t *bob_days =
        json_object_get(json_object_get(json_object_get(r, "members"), "bob"), "days");
    const char *days[] = {"2026-01-01", "2026-01-02"};
    i = 0;
    json_object_foreach(bob_days, name, v)
    {
        assert_string_equal(name, days[i++]);
    }
    json_decref(r);

    /* One member; "-" names the anonymous one; since cuts days. */
    r = usage_report(u, NULL, "bob", "2026-01-02", T0_NOON + DAY_MS);
    assert_int_equal(json_object_size(json_object_get(r, "members")), 1);
    assert_int_equal(at(r, "totals|requests"), 1);
    json_decref(r);
    r = usage_report(u, NULL, "-", "2026-01-01", T0_NOON + DAY_MS);
    assert_int_equal(json_object_size(json_object_get(r, "members")), 1);
    assert_int_equal(at(r, "members|-|totals|requests"), 3);
    json_decref(r);
    r = usage_report(u, NULL, "nobody", "2026-01-01", T0_NOON);
    assert_int_equal(json_object_size(json_object_get(r, "members")), 0);
    assert_int_equal(at(r, "totals|requests"), 0);
    json_decref(r);

    /* Totals since start, per member, in first-seen order. */
    struct seen_members seen = {"", 0};
    usage_foreach_member(u, on_member, &seen);
    assert_string_equal(seen.names, "[],[bob],");
    assert_int_equal(seen.requests, 6);
    usage_free(u);
}

static struct cache_writer *start_writer(struct cache_store *s)
{
    struct cache_writer *w = cache_writer_start(s, 1024);
    assert_non_null(w);
    return w;
}

static void test_store_round_trip(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = store_fixture_open(f->dir, 16u << 20);
    struct cache_writer *w = start_writer(s);
    struct usage *u = usage_new(90);
    uint64_t c[USAGE_COUNTERS];
    counters(c, 2, 7);
    c[USAGE_BYTES_OUT] = 1000;
    usage_add(u, T0_NOON - DAY_MS, "alice", "chatgpt", c); /* yesterday */
    usage_add(u, T0_NOON, "alice", "chatgpt", c);
    usage_add(u, T0_NOON, "", "gemini", c);
    usage_flush(u, w, T0_NOON);
    cache_writer_stop(w);

    /* The store alone gives the report (the CLI's view). */
    json_t *r = usage_report(NULL, s, NULL, "2025-12-31", T0_NOON);
    assert_non_null(r);
    assert_int_equal(at(r, "totals|requests"), 6);
    assert_int_equal(at(r, "members|alice|days|2025-12-31|bytes_out"), 1000);
    json_decref(r);
    /* Yesterday's row left memory once written; the report still has it. */
    r = usage_report(u, s, "alice", "2025-12-31", T0_NOON);
    assert_int_equal(at(r, "members|alice|totals|requests"), 4);
    json_decref(r);

    /* A restart: today's rows are loaded, and counting goes on from them. */
    usage_free(u);
    u = usage_new(90);
    counters(c, 1, 1);
    usage_add(u, T0_NOON + 5, "alice", "chatgpt", c); /* before the load: added to it */
    assert_int_equal(usage_load(u, s, T0_NOON), 0);
    assert_int_equal(usage_charged_today(u, "alice", T0_NOON), 8);
    usage_add(u, T0_NOON + 10, "alice", "chatgpt", c);
    assert_int_equal(usage_charged_today(u, "alice", T0_NOON), 9);
    w = start_writer(s);
    usage_flush(u, w, T0_NOON + 20);
    cache_writer_stop(w);
    r = usage_report(NULL, s, NULL, "2026-01-01", T0_NOON);
    assert_int_equal(at(r, "members|alice|providers|chatgpt|days|2026-01-01|requests"), 4);
    assert_int_equal(at(r, "members|alice|providers|chatgpt|days|2026-01-01|credits_charged"), 9);
    assert_int_equal(at(r, "members|-|totals|requests"), 2);
    json_decref(r);
    usage_free(u);
    cache_store_close(s);
}

static void test_refused_flush_and_retention(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = store_fixture_open(f->dir, 16u << 20);
    struct usage *u = usage_new(2); /* today and yesterday */
    uint64_t c[USAGE_COUNTERS];
    counters(c, 1, 1);
    usage_add(u, T0_NOON, "a", "chatgpt", c);
    /* A writer that refuses everything: the row stays to be written. */
    struct cache_writer *full = cache_writer_start(s, 0);
    assert_non_null(full);
    usage_flush(u, full, T0_NOON);
    cache_writer_stop(full);
    json_t *r = usage_report(NULL, s, NULL, "2026-01-01", T0_NOON);
    assert_int_equal(at(r, "totals|requests"), 0);
    json_decref(r);
    struct cache_writer *w = start_writer(s);
    usage_flush(u, w, T0_NOON);
    cache_writer_stop(w);
    r = usage_report(NULL, s, NULL, "2026-01-01", T0_NOON);
    assert_int_equal(at(r, "totals|requests"), 1);
    json_decref(r);

    /* Three days later, the first flush of the day prunes past retention. */
    usage_add(u, T0_NOON + DAY_MS, "a", "chatgpt", c);
    w = start_writer(s);
    usage_flush(u, w, T0_NOON + DAY_MS);
    cache_writer_stop(w);
    r = usage_report(NULL, s, NULL, "2026-01-01", T0_NOON + DAY_MS);
    assert_int_equal(at(r, "totals|requests"), 2); /* both days are within 2 */
    json_decref(r);
    usage_add(u, T0_NOON + 3 * DAY_MS, "a", "chatgpt", c);
    w = start_writer(s);
    usage_flush(u, w, T0_NOON + 3 * DAY_MS);
    cache_writer_stop(w);
    r = usage_report(NULL, s, NULL, "2026-01-01", T0_NOON + 3 * DAY_MS);
    assert_int_equal(at(r, "totals|requests"), 1); /* only 2026-01-04 is left */
    assert_int_equal(at(r, "members|a|days|2026-01-04|requests"), 1);
    json_decref(r);

    /* Without a writer (cache off), past days simply leave memory. */
    struct usage *mem = usage_new(90);
    usage_add(mem, T0_NOON, "a", "chatgpt", c);
    usage_flush(mem, NULL, T0_NOON + DAY_MS);
    r = usage_report(mem, NULL, NULL, "2026-01-01", T0_NOON + DAY_MS);
    assert_int_equal(at(r, "totals|requests"), 0);
    json_decref(r);
    usage_free(mem);
    usage_free(u);
    cache_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days),
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_aggregation_and_report),
        cmocka_unit_test_setup_teardown(test_store_round_trip, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_refused_flush_and_retention, store_fixture_setup,
                                        store_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
