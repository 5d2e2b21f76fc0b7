/* test_router.c: router_match, the (method, path) -> route table: /v1/ goes
 * upstream for any method, /_proxy/ is GET/HEAD only, dot segments never
 * match, everything else is 404. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "router.h"

#include <stdio.h>

static const char *const methods[] = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
                                      "PATCH", "OPTIONS", "TRACE", "CONNECT"};
#define METHOD_COUNT (sizeof methods / sizeof methods[0])

static const char *route_name(enum route r)
{
    switch (r) {
    case ROUTE_NOT_FOUND:
        return "ROUTE_NOT_FOUND";
    case ROUTE_METHOD_NOT_ALLOWED:
        return "ROUTE_METHOD_NOT_ALLOWED";
    case ROUTE_UPSTREAM:
        return "ROUTE_UPSTREAM";
    case ROUTE_ADMIN_HEALTHZ:
        return "ROUTE_ADMIN_HEALTHZ";
    case ROUTE_ADMIN_STATS:
        return "ROUTE_ADMIN_STATS";
    case ROUTE_CACHE_STATS:
        return "ROUTE_CACHE_STATS";
    case ROUTE_CACHE_ENTRY:
        return "ROUTE_CACHE_ENTRY";
    case ROUTE_CACHE_PURGE:
        return "ROUTE_CACHE_PURGE";
    case ROUTE_ARTIFACT:
        return "ROUTE_ARTIFACT";
    case ROUTE_ADMIN_METRICS:
        return "ROUTE_ADMIN_METRICS";
    case ROUTE_ADMIN_USAGE:
        return "ROUTE_ADMIN_USAGE";
    case ROUTE_STATUS_PAGE:
        return "ROUTE_STATUS_PAGE";
    case ROUTE_ADMIN_RECENT:
        return "ROUTE_ADMIN_RECENT";
    case ROUTE_ADMIN_MODE:
        return "ROUTE_ADMIN_MODE";
    }
    return "?";
}

static void expect(const char *method, const char *path, enum route want)
{
    enum route got = router_match(method, path);
    if (got != want)
        fail_msg("%s %s: expected %s, got %s", method, path, route_name(want), route_name(got));
}

static void expect_all_methods(const char *path, enum route want)
{
    for (size_t i = 0; i < METHOD_COUNT; i++)
        expect(methods[i], path, want);
}

static void test_v1_goes_upstream(void **state)
{
    (void)state;
    const char *paths[] = {"/v1/monitor/chatgpt",
                           "/v1/monitor/google/news",
                           "/v1/async/task/abc-123",
                           "/v1/countries",
                           "/v1/x",
                           "/v1/monitor/chatgpt/",
                           "/v1//double",
                           "/v1/_proxy/stats"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        expect_all_methods(paths[i], ROUTE_UPSTREAM);
}

static void test_outside_v1_not_found(void **state)
{
    (void)state;
    const char *paths[] = {"/v1",
                           "/v1/",
                           "/",
                           "/v2/x",
                           "/V1/x",
                           "/v10/x",
                           "/v1x",
                           "",
                           "v1/x",
                           "/_proxy/healthz/",
                           "/_proxy/stats/x",
                           "/_proxy/other",
                           "/_PROXY/stats",
                           "/_proxy/healthzz"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        expect_all_methods(paths[i], ROUTE_NOT_FOUND);
}

static void test_admin_routes(void **state)
{
    (void)state;
    expect("GET", "/_proxy", ROUTE_STATUS_PAGE);
    expect("GET", "/_proxy/", ROUTE_STATUS_PAGE);
    expect("HEAD", "/_proxy/", ROUTE_STATUS_PAGE);
    expect("POST", "/_proxy/", ROUTE_METHOD_NOT_ALLOWED);
    expect("GET", "/_proxy/metrics", ROUTE_ADMIN_METRICS);
    expect("DELETE", "/_proxy/metrics", ROUTE_METHOD_NOT_ALLOWED);
    expect("GET", "/_proxy/usage", ROUTE_ADMIN_USAGE);
    expect("GET", "/_proxy/recent", ROUTE_ADMIN_RECENT);
    expect("HEAD", "/_proxy/recent", ROUTE_ADMIN_RECENT);
    expect("POST", "/_proxy/recent", ROUTE_METHOD_NOT_ALLOWED);
    expect("GET", "/_proxy/recent/", ROUTE_NOT_FOUND);
    assert_string_equal(router_allowed_methods("/_proxy/recent"), "GET, HEAD");
    /* The mode: read with GET, switched with POST (mode.h). */
    expect("GET", "/_proxy/mode", ROUTE_ADMIN_MODE);
    expect("HEAD", "/_proxy/mode", ROUTE_ADMIN_MODE);
    expect("POST", "/_proxy/mode", ROUTE_ADMIN_MODE);
    expect("PUT", "/_proxy/mode", ROUTE_METHOD_NOT_ALLOWED);
    expect("DELETE", "/_proxy/mode", ROUTE_METHOD_NOT_ALLOWED);
    expect("POST", "/_proxy/mode/offline", ROUTE_NOT_FOUND);
    expect("GET", "/_proxy/mode/", ROUTE_NOT_FOUND);
    assert_string_equal(router_allowed_methods("/_proxy/mode"), "GET, HEAD, POST");
    assert_string_equal(router_allowed_methods("/_proxy/"), "GET, HEAD");
    expect("GET", "/_proxy/healthz", ROUTE_ADMIN_HEALTHZ);
    expect("HEAD", "/_proxy/healthz", ROUTE_ADMIN_HEALTHZ);
    expect("GET", "/_proxy/stats", ROUTE_ADMIN_STATS);
    expect("HEAD", "/_proxy/stats", ROUTE_ADMIN_STATS);
    const char *others[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        expect(others[i], "/_proxy/healthz", ROUTE_METHOD_NOT_ALLOWED);
        expect(others[i], "/_proxy/stats", ROUTE_METHOD_NOT_ALLOWED);
    }
}

static void test_dot_segments_never_match(void **state)
{
    (void)state;
    const char *paths[] = {
        "/v1/../_proxy/stats",
        "/v1/./x",
        "/v1/%2e%2e/x",
        "/v1/%2E/x",
        "/v1/%2E%2E/x",
        "/v1/.%2e/x",
        "/v1/%2e./x",
        "/v1/x/..",
        "/v1/x/.",
        "/v1/monitor/../../v2",
        "/./_proxy/stats",
        "/_proxy/../_proxy/stats",
        "/v1/..",
        "/v1/%2e",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        expect_all_methods(paths[i], ROUTE_NOT_FOUND);
}

static void test_dots_inside_segments_route(void **state)
{
    (void)state;
    const char *paths[] = {"/v1/a..b", "/v1/...x",      "/v1/...",       "/v1/.hidden",
                           "/v1/x..",  "/v1/file.json", "/v1/%2e%2e%2e", "/v1/a%2e%2eb"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        expect_all_methods(paths[i], ROUTE_UPSTREAM);
}

static void test_cache_routes(void **state)
{
    (void)state;
    const char *key = "/_proxy/cache/entries/"
                      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    expect("GET", "/_proxy/cache/stats", ROUTE_CACHE_STATS);
    expect("POST", "/_proxy/cache/stats", ROUTE_METHOD_NOT_ALLOWED);
    expect("GET", key, ROUTE_CACHE_ENTRY);
    expect("DELETE", key, ROUTE_CACHE_ENTRY);
    expect("POST", key, ROUTE_METHOD_NOT_ALLOWED);
    expect("GET", "/_proxy/cache/entries/", ROUTE_NOT_FOUND);
    expect("GET", "/_proxy/cache/entries/a/b", ROUTE_NOT_FOUND);
    expect("POST", "/_proxy/cache/purge", ROUTE_CACHE_PURGE);
    expect("GET", "/_proxy/cache/purge", ROUTE_METHOD_NOT_ALLOWED);
    assert_string_equal(router_allowed_methods("/_proxy/cache/purge"), "POST");
    assert_string_equal(router_allowed_methods(key), "GET, HEAD, DELETE");
    const char *artifact = "/_proxy/artifacts/c45a5081-808d-4ed3-9c86-e4baf16c8ab8/page-1.html";
    expect("GET", artifact, ROUTE_ARTIFACT);
    expect("HEAD", artifact, ROUTE_ARTIFACT);
    expect("POST", artifact, ROUTE_METHOD_NOT_ALLOWED);
    expect("GET", "/_proxy/artifacts/", ROUTE_NOT_FOUND);
    expect("GET", "/_proxy/artifacts/../stats", ROUTE_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_routes),
        cmocka_unit_test(test_v1_goes_upstream),
        cmocka_unit_test(test_outside_v1_not_found),
        cmocka_unit_test(test_admin_routes),
        cmocka_unit_test(test_dot_segments_never_match),
        cmocka_unit_test(test_dots_inside_segments_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
