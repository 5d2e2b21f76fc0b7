/* test_recent.c: the ring of recent requests and the per-minute counts
 * behind GET /_proxy/recent: newest first, bounded at RECENT_MAX, admin polls
 * not recorded, labels made printable, minutes outside the hour dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "recent.h"
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2026-01-01T10:00:30Z */
#define T0 1767261630000LL

static void fill(struct request *r, const char *method, const char *path, const char *id)
{
    memset(r, 0, sizeof *r);
    r->method = method;
    r->path = (char *)path;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->started_us = clock_mono_us();
}

static json_t *requests_of(json_t *body)
{
    json_t *list = json_object_get(body, "requests");
    assert_non_null(list);
    return list;
}

static void test_records_newest_first(void **state)
{
    (void)state;
    struct recent *rc = recent_new();
    struct request r;
    fill(&r, "POST", "/v1/monitor/chatgpt", "id-1");
    r.cache_outcome = CACHE_OUTCOME_MISS;
    r.upstream_request_id = "up-1";
    r.client_request_id = "mine-1";
    recent_record(rc, &r, 200, T0);
    fill(&r, "POST", "/v1/monitor/chatgpt", "id-2");
    r.cache_outcome = CACHE_OUTCOME_HIT;
    r.upstream_request_id = "up-1";
    snprintf(r.member, sizeof r.member, "alice");
    recent_record(rc, &r, 200, T0 + 1000);
    fill(&r, "GET", "/nope", "id-3");
    r.error_code = "NOT_FOUND";
    recent_record(rc, &r, 404, T0 + 2000);

    json_t *body = recent_json(rc, T0 + 3000);
    assert_int_equal(json_integer_value(json_object_get(body, "requests_total")), 3);
    assert_int_equal(json_integer_value(json_object_get(body, "capacity")), RECENT_MAX);
    assert_string_equal(json_string_value(json_object_get(body, "now")),
                        "2026-01-01T10:00:33.000Z");
    json_t *list = requests_of(body);
    assert_int_equal(json_array_size(list), 3);
    json_t *newest = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(newest, "id")), "id-3");
    assert_int_equal(json_integer_value(json_object_get(newest, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(newest, "cache")), "none");
    assert_true(json_is_null(json_object_get(newest, "upstream_request_id")));
    assert_true(json_is_null(json_object_get(newest, "member")));
    assert_string_equal(json_string_value(json_object_get(newest, "error")), "NOT_FOUND");
    json_t *hit = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(hit, "cache")), "HIT");
    assert_string_equal(json_string_value(json_object_get(hit, "member")), "alice");
    assert_true(json_is_null(json_object_get(hit, "error")));
    assert_string_equal(json_string_value(json_object_get(hit, "at")), "2026-01-01T10:00:31.000Z");
    json_t *oldest = json_array_get(list, 2);
    assert_string_equal(json_string_value(json_object_get(oldest, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(oldest, "path")), "/v1/monitor/chatgpt");
    assert_string_equal(json_string_value(json_object_get(oldest, "upstream_request_id")), "up-1");
    assert_string_equal(json_string_value(json_object_get(oldest, "client_request_id")), "mine-1");
    assert_true(json_is_real(json_object_get(oldest, "latency_ms")));
    assert_true(json_real_value(json_object_get(oldest, "latency_ms")) >= 0.0);

    json_t *minutes = json_object_get(body, "per_minute");
    assert_int_equal(json_array_size(minutes), RECENT_MINUTES);
    json_t *now = json_array_get(minutes, RECENT_MINUTES - 1);
    assert_string_equal(json_string_value(json_object_get(now, "minute")),
                        "2026-01-01T10:00:00.000Z");
    assert_int_equal(json_integer_value(json_object_get(now, "requests")), 3);
    assert_int_equal(json_integer_value(json_object_get(now, "hits")), 1);
    assert_int_equal(json_integer_value(json_object_get(now, "errors")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(minutes, 0), "requests")),
                     0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(minutes, 0), "minute")),
                        "2026-01-01T09:01:00.000Z");
    json_decref(body);
    recent_free(rc);
}

static void test_ring_keeps_the_last_hundred(void **state)
{
    (void)state;
    struct recent *rc = recent_new();
    struct request r;
    for (int i = 0; i < RECENT_MAX + 25; i++) {
        char id[16];
        snprintf(id, sizeof id, "id-%d", i);
        fill(&r, "POST", "/v1/monitor/chatgpt", id);
        recent_record(rc, &r, 200, T0);
    }
    json_t *body = recent_json(rc, T0);
    json_t *list = requests_of(body);
    assert_int_equal(json_array_size(list), RECENT_MAX);
    assert_int_equal(json_integer_value(json_object_get(body, "requests_total")), RECENT_MAX + 25);
    char want[16];
    snprintf(want, sizeof want, "id-%d", RECENT_MAX + 24);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "id")), want);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(list, RECENT_MAX - 1), "id")), "id-25");
    json_decref(body);
    recent_free(rc);
}

static void test_admin_paths_not_recorded(void **state)
{
    (void)state;
    assert_false(recent_records_path("/_proxy/"));
    assert_false(recent_records_path("/_proxy"));
    assert_false(recent_records_path("/_proxy/stats"));
    assert_false(recent_records_path("/_proxy/recent"));
    assert_false(recent_records_path("/_proxy/cache/stats"));
    assert_true(recent_records_path("/_proxy/artifacts/c45a5081/page-1.html"));
    assert_true(recent_records_path("/_proxyx"));
    assert_true(recent_records_path("/v1/monitor/chatgpt"));
    assert_true(recent_records_path("/favicon.ico"));
    struct recent *rc = recent_new();
    struct request r;
    fill(&r, "GET", "/_proxy/stats", "id-1");
    recent_record(rc, &r, 200, T0);
    recent_record(NULL, &r, 200, T0); /* no ring: nothing happens */
    json_t *body = recent_json(rc, T0);
    assert_int_equal(json_integer_value(json_object_get(body, "requests_total")), 0);
    assert_int_equal(json_array_size(requests_of(body)), 0);
    json_decref(body);
    recent_free(rc);
}

static void test_minutes_roll_over(void **state)
{
    (void)state;
    struct recent *rc = recent_new();
    struct request r;
    fill(&r, "POST", "/v1/monitor/chatgpt", "id");
    recent_record(rc, &r, 200, T0);                      /* minute 0 */
    recent_record(rc, &r, 500, T0 + 59 * 60000);         /* minute 59 */
    recent_record(rc, &r, 200, T0 + 60 * 60000);         /* minute 60: reuses minute 0's bucket */
    recent_record(rc, &r, 200, T0 + 60 * 60000 + 10000); /* same minute */
    json_t *body = recent_json(rc, T0 + 60 * 60000 + 20000);
    json_t *minutes = json_object_get(body, "per_minute");
    long long sum = 0;
    for (size_t i = 0; i < json_array_size(minutes); i++)
        sum += json_integer_value(json_object_get(json_array_get(minutes, i), "requests"));
    assert_int_equal(sum, 3); /* minute 0 fell out of the hour */
    json_t *last = json_array_get(minutes, RECENT_MINUTES - 1);
    assert_int_equal(json_integer_value(json_object_get(last, "requests")), 2);
    json_t *before = json_array_get(minutes, RECENT_MINUTES - 2);
    assert_int_equal(json_integer_value(json_object_get(before, "errors")), 1);
    json_decref(body);
    /* Two hours later nothing is left in the hour, but the total stays. */
    body = recent_json(rc, T0 + 180 * 60000);
    minutes = json_object_get(body, "per_minute");
    for (size_t i = 0; i < json_array_size(minutes); i++)
        assert_int_equal(
            json_integer_value(json_object_get(json_array_get(minutes, i), "requests")), 0);
    assert_int_equal(json_integer_value(json_object_get(body, "requests_total")), 4);
    json_decref(body);
    recent_free(rc);
}

static void test_labels_are_printable(void **state)
{
    (void)state;
    struct recent *rc = recent_new();
    struct request r;
    fill(&r, "POST", "/v1/\xff\x01x", "id");
    r.client_request_id = "caf\xc3\xa9";
    char long_id[400];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    r.upstream_request_id = long_id;
    recent_record(rc, &r, 200, T0);
    json_t *body = recent_json(rc, T0);
    json_t *e = json_array_get(requests_of(body), 0);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "path")), "/v1/??x");
    assert_string_equal(json_string_value(json_object_get(e, "client_request_id")), "caf??");
    assert_int_equal(strlen(json_string_value(json_object_get(e, "upstream_request_id"))), 128);
    json_decref(body);
    recent_free(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_newest_first),
        cmocka_unit_test(test_ring_keeps_the_last_hundred),
        cmocka_unit_test(test_admin_paths_not_recorded),
        cmocka_unit_test(test_minutes_roll_over),
        cmocka_unit_test(test_labels_are_printable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
