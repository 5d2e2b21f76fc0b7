/* test_metrics.c: the Prometheus text of /_proxy/metrics. The writer
 * (prom.h) escapes label values and HELP text as the format says and writes
 * histograms cumulative and closed by +Inf; latency.h counts into the right
 * buckets; metrics_render of a snapshot parses with the strict parser
 * (promtext.h) into exactly the numbers the snapshot holds: answers by
 * route, status and cache result, both latency histograms, gauges, cache and
 * artifact numbers, credits in total and per member (an odd member name
 * escaped), task counters. And the parser itself refuses what a scraper
 * would: so passing it means something. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "latency.h"
#include "metrics.h"
#include "prom.h"
#include "promtext.h"
#include "usage.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text of buf, NUL terminated (caller frees). */
static char *text_of(struct evbuffer *buf)
{
    size_t n = evbuffer_get_length(buf);
    char *t = malloc(n + 1);
    assert_non_null(t);
    evbuffer_copyout(buf, t, n);
    t[n] = '\0';
    return t;
}

static void parse_ok(const char *text, struct promtext *doc)
{
    char err[512];
    if (promtext_parse(text, doc, err, sizeof err) != 0)
        fail_msg("not valid exposition text: %s\n%s", err, text);
}

static double value(const struct promtext *doc, const char *name, const char *const *labels)
{
    double v;
    if (!promtext_get(doc, name, labels, &v))
        fail_msg("no sample %s", name);
    return v;
}

static void test_escaping(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(prom_escape_label("a\\b\"c\nd", out, sizeof out), "a\\\\b\\\"c\\nd");
    assert_string_equal(prom_escape_label("plain", out, sizeof out), "plain");
    /* Cut short, never in the middle of an escape. */
    assert_string_equal(prom_escape_label("\"\"\"", out, 6), "\\\"\\\"");

    struct evbuffer *buf = evbuffer_new();
    prom_family(buf, "x_total", "counter", "help with \\ and\nnewline \"quoted\"");
    struct prom_label l[2] = {{"who", "a\\b\"c\nd"}, {"k", ""}};
    prom_sample(buf, "x_total", l, 2, 18446744073709551615ULL);
    prom_sample(buf, "x_total", NULL, 0, 0);
    char *text = text_of(buf);
    assert_non_null(strstr(text, "# HELP x_total help with \\\\ and\\nnewline \"quoted\"\n"));
    assert_non_null(strstr(text, "x_total{who=\"a\\\\b\\\"c\\nd\",k=\"\"} 18446744073709551615\n"));
    struct promtext doc;
    parse_ok(text, &doc);
    assert_string_equal(promtext_family(&doc, "x_total")->help,
                        "help with \\ and\nnewline \"quoted\"");
    assert_string_equal(promtext_family(&doc, "x_total")->type, "counter");
    const char *want[] = {"who", "a\\b\"c\nd", "k", "", NULL};
    assert_true(value(&doc, "x_total", want) > 1.8e19);
    assert_true(value(&doc, "x_total", NULL) == 0);
    promtext_free(&doc);
    free(text);
    evbuffer_free(buf);
}

static void test_latency_buckets(void **state)
{
    (void)state;
    struct latency l;
    latency_init(&l);
    latency_observe(&l, 1000);    /* on the first bound: counts in it */
    latency_observe(&l, 1001);    /* just past it */
    latency_observe(&l, -5);      /* as 0 */
    latency_observe(&l, 400e6);   /* past the last bound: only +Inf */
    latency_observe(&l, 2500000); /* 2.5 s */
    assert_int_equal(l.count, 5);
    assert_int_equal(l.le[0], 2);  /* le=0.001 */
    assert_int_equal(l.le[1], 3);  /* le=0.0025 */
    assert_int_equal(l.le[9], 3);  /* le=1 */
    assert_int_equal(l.le[10], 4); /* le=2.5 */
    assert_int_equal(l.le[LATENCY_BOUNDS - 1], 4);
    assert_int_equal(l.sum_us, 1000 + 1001 + 0 + 400000000 + 2500000);
    assert_string_equal(latency_bound_text(0), "0.001");
    assert_int_equal(latency_bound_us(LATENCY_BOUNDS - 1), 300000000);
    for (size_t i = 1; i < LATENCY_BOUNDS; i++)
        assert_true(latency_bound_us(i) > latency_bound_us(i - 1));

    struct evbuffer *buf = evbuffer_new();
    prom_family(buf, "h_seconds", "histogram", "a histogram");
    const char *bounds[LATENCY_BOUNDS];
    for (size_t i = 0; i < LATENCY_BOUNDS; i++)
        bounds[i] = latency_bound_text(i);
    struct prom_label lab = {"answer", "hit"};
    prom_histogram(buf, "h_seconds", &lab, 1, bounds, l.le, LATENCY_BOUNDS, l.count, l.sum_us);
    char *text = text_of(buf);
    struct promtext doc;
    parse_ok(text, &doc);
    const char *inf[] = {"answer", "hit", "le", "+Inf", NULL};
    assert_true(value(&doc, "h_seconds_bucket", inf) == 5);
    const char *ms[] = {"answer", "hit", "le", "0.001", NULL};
    assert_true(value(&doc, "h_seconds_bucket", ms) == 2);
    const char *hit[] = {"answer", "hit", NULL};
    assert_true(fabs(value(&doc, "h_seconds_sum", hit) - 402.502001) < 1e-9);
    assert_non_null(strstr(text, "h_seconds_sum{answer=\"hit\"} 402.502001\n"));
    assert_true(value(&doc, "h_seconds_count", hit) == 5);
    promtext_free(&doc);
    free(text);
    evbuffer_free(buf);
}

static void test_render_snapshot(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metrics_count(m, METRICS_ROUTE_UPSTREAM, 200, CACHE_OUTCOME_MISS);
    metrics_count(m, METRICS_ROUTE_UPSTREAM, 200, CACHE_OUTCOME_HIT);
    metrics_count(m, METRICS_ROUTE_UPSTREAM, 200, CACHE_OUTCOME_HIT);
    metrics_count(m, METRICS_ROUTE_UPSTREAM, 502, CACHE_OUTCOME_MISS);
    metrics_count(m, METRICS_ROUTE_ADMIN, 200, CACHE_OUTCOME_NONE);
    metrics_count(m, METRICS_ROUTE_ARTIFACT, 404, CACHE_OUTCOME_NONE);
    metrics_count(m, METRICS_ROUTE_OTHER, 404, CACHE_OUTCOME_NONE);
    struct latency hit, up;
    latency_init(&hit);
    latency_init(&up);
    latency_observe(&hit, 300);
    latency_observe(&hit, 700);
    latency_observe(&up, 1500000);
    struct usage *u = usage_new(90);
    uint64_t c[USAGE_COUNTERS] = {0};
    c[USAGE_REQUESTS] = 3;
    c[USAGE_CREDITS_CHARGED] = 7;
    c[USAGE_CREDITS_SAVED_CACHE] = 14;
    usage_add(u, 0, "", "chatgpt", c);
    c[USAGE_REQUESTS] = 2;
    c[USAGE_CREDITS_CHARGED] = 5;
    c[USAGE_CREDITS_SAVED_CACHE] = 0;
    c[USAGE_CREDITS_SAVED_ASYNC] = 2;
    usage_add(u, 0, "odd\"name\\", "gemini", c);

    struct metrics_snapshot s = {
        .version = "9.9.9",
        .mode = "offline",
        .uptime_s = 42,
        .answers = m,
        .latency_hit = &hit,
        .latency_upstream = &up,
        .in_flight = 1,
        .upstream_in_flight = 2,
        .upstream_calls = 11,
        .upstream_timeouts = 1,
        .upstream_unavailable = 2,
        .retries = 3,
        .upstream_429 = 4,
        .limit_rejections = 5,
        .max_concurrency = 10,
        .concurrency_limit = 8,
        .concurrency_in_use = 6,
        .queued = 7,
        .cache = true,
        .cache_entries = 12,
        .cache_bytes = 3456,
        .cache_max_bytes = 1 << 20,
        .cache_evictions = 9,
        .cache_by_outcome = {[CACHE_OUTCOME_HIT] = 2, [CACHE_OUTCOME_MISS] = 2},
        .artifacts_pending = 1,
        .artifacts_captured = 2,
        .artifacts_lost = 3,
        .usage = u,
        .tasks = true,
        .task_counters = {.submitted = 4, .completed = 3, .polls = 8},
        .tasks_live = 1,
    };
    struct evbuffer *buf = evbuffer_new();
    metrics_render(&s, buf);
    char *text = text_of(buf);
    struct promtext doc;
    parse_ok(text, &doc);

    /* Every family has HELP and TYPE. */
    for (size_t i = 0; i < doc.family_count; i++) {
        if (doc.families[i].help == NULL || strcmp(doc.families[i].type, "untyped") == 0)
            fail_msg("family %s lacks HELP or TYPE", doc.families[i].name);
        if (strncmp(doc.families[i].name, "cloro_proxy_", 12) != 0)
            fail_msg("family %s is not under cloro_proxy_", doc.families[i].name);
        const char *name = doc.families[i].name;
        size_t n = strlen(name);
        if (strcmp(doc.families[i].type, "counter") == 0 &&
            (n < 6 || strcmp(name + n - 6, "_total") != 0))
            fail_msg("counter %s does not end in _total", doc.families[i].name);
    }
    const char *miss[] = {"route", "upstream", "status", "200", "cache", "miss", NULL};
    const char *hits[] = {"route", "upstream", "status", "200", "cache", "hit", NULL};
    const char *bad[] = {"route", "upstream", "status", "502", "cache", "miss", NULL};
    const char *admin[] = {"route", "admin", "status", "200", "cache", "none", NULL};
    const char *art[] = {"route", "artifact", "status", "404", "cache", "none", NULL};
    const char *other[] = {"route", "other", "status", "404", "cache", "none", NULL};
    assert_true(value(&doc, "cloro_proxy_requests_total", miss) == 1);
    assert_true(value(&doc, "cloro_proxy_requests_total", hits) == 2);
    assert_true(value(&doc, "cloro_proxy_requests_total", bad) == 1);
    assert_true(value(&doc, "cloro_proxy_requests_total", admin) == 1);
    assert_true(value(&doc, "cloro_proxy_requests_total", art) == 1);
    assert_true(value(&doc, "cloro_proxy_requests_total", other) == 1);
    assert_true(promtext_sum(&doc, "cloro_proxy_requests_total") == 7);

    assert_string_equal(promtext_family(&doc, "cloro_proxy_request_duration_seconds")->type,
                        "histogram");
    const char *hit_l[] = {"answer", "hit", NULL};
    const char *up_l[] = {"answer", "upstream", NULL};
    const char *up_1[] = {"answer", "upstream", "le", "1", NULL};
    const char *up_25[] = {"answer", "upstream", "le", "2.5", NULL};
    assert_true(value(&doc, "cloro_proxy_request_duration_seconds_count", hit_l) == 2);
    assert_true(value(&doc, "cloro_proxy_request_duration_seconds_sum", hit_l) == 0.001);
    assert_true(value(&doc, "cloro_proxy_request_duration_seconds_count", up_l) == 1);
    assert_true(value(&doc, "cloro_proxy_request_duration_seconds_bucket", up_1) == 0);
    assert_true(value(&doc, "cloro_proxy_request_duration_seconds_bucket", up_25) == 1);

    const struct {
        const char *name;
        double want;
    } plain[] = {
        {"cloro_proxy_uptime_seconds", 42},
        {"cloro_proxy_requests_in_flight", 1},
        {"cloro_proxy_upstream_in_flight", 2},
        {"cloro_proxy_upstream_calls_total", 11},
        {"cloro_proxy_upstream_retries_total", 3},
        {"cloro_proxy_upstream_429_total", 4},
        {"cloro_proxy_limit_rejections_total", 5},
        {"cloro_proxy_concurrency_max", 10},
        {"cloro_proxy_concurrency_limit", 8},
        {"cloro_proxy_concurrency_in_use", 6},
        {"cloro_proxy_queue_depth", 7},
        {"cloro_proxy_cache_entries", 12},
        {"cloro_proxy_cache_bytes", 3456},
        {"cloro_proxy_cache_max_bytes", 1 << 20},
        {"cloro_proxy_cache_evictions_total", 9},
        {"cloro_proxy_credits_charged_total", 12},
        {"cloro_proxy_task_polls_total", 8},
        {"cloro_proxy_tasks_live", 1},
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (value(&doc, plain[i].name, NULL) != plain[i].want)
            fail_msg("%s: %g, expected %g", plain[i].name, value(&doc, plain[i].name, NULL),
                     plain[i].want);
    const char *version[] = {"version", "9.9.9", NULL};
    assert_true(value(&doc, "cloro_proxy_build_info", version) == 1);
    /* The mode: 1 for the one in force, 0 for the three others. */
    const char *offline[] = {"mode", "offline", NULL};
    const char *online[] = {"mode", "online", NULL};
    assert_true(value(&doc, "cloro_proxy_mode", offline) == 1);
    assert_true(value(&doc, "cloro_proxy_mode", online) == 0);
    assert_true(promtext_sum(&doc, "cloro_proxy_mode") == 1);
    const char *timeout[] = {"reason", "timeout", NULL};
    assert_true(value(&doc, "cloro_proxy_upstream_failures_total", timeout) == 1);
    const char *outcome_hit[] = {"outcome", "hit", NULL};
    assert_true(value(&doc, "cloro_proxy_cache_outcomes_total", outcome_hit) == 2);
    const char *lost[] = {"state", "lost", NULL};
    assert_true(value(&doc, "cloro_proxy_artifacts", lost) == 3);
    const char *by_cache[] = {"by", "cache", NULL};
    const char *by_async[] = {"by", "async", NULL};
    assert_true(value(&doc, "cloro_proxy_credits_saved_total", by_cache) == 14);
    assert_true(value(&doc, "cloro_proxy_credits_saved_total", by_async) == 2);
    const char *anon[] = {"member", "-", NULL};
    const char *odd[] = {"member", "odd\"name\\", NULL};
    assert_true(value(&doc, "cloro_proxy_member_requests_total", anon) == 3);
    assert_true(value(&doc, "cloro_proxy_member_credits_charged_total", odd) == 5);
    const char *odd_async[] = {"member", "odd\"name\\", "by", "async", NULL};
    assert_true(value(&doc, "cloro_proxy_member_credits_saved_total", odd_async) == 2);
    const char *submitted[] = {"event", "submitted", NULL};
    assert_true(value(&doc, "cloro_proxy_tasks_total", submitted) == 4);
    promtext_free(&doc);
    free(text);
    evbuffer_free(buf);

    /* Without cache, tasks or usage: fewer families, still valid. */
    struct metrics_snapshot bare = {.version = "1", .answers = NULL};
    buf = evbuffer_new();
    metrics_render(&bare, buf);
    text = text_of(buf);
    parse_ok(text, &doc);
    assert_null(promtext_family(&doc, "cloro_proxy_cache_entries"));
    assert_null(promtext_family(&doc, "cloro_proxy_tasks_total"));
    assert_true(value(&doc, "cloro_proxy_credits_charged_total", NULL) == 0);
    promtext_free(&doc);
    free(text);
    evbuffer_free(buf);
    usage_free(u);
    metrics_free(m);
}

/* The parser refuses what a scraper would. */
static void test_parser_is_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a 1", /* no final newline */
        "1a 1\n",
        "a{b=\"1\" 1\n",
        "a{b=1} 1\n",
        "a{b=\"\\t\"} 1\n",
        "a{__b=\"1\"} 1\n",
        "a{b=\"1\",b=\"2\"} 1\n",
        "a one\n",
        "a 1 x\n",
        "a 1\na 2\n",
        "# TYPE a counter\n# TYPE a counter\na 1\n",
        "# HELP a x\n# HELP a y\na 1\n",
        "a 1\n# TYPE a counter\n",
        "# TYPE a counter\na -1\n",
        "# TYPE a wat\n",
        "# HELP a bad \\t escape\n",
        "a{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n"
        "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
        "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket 1\n",
        "# TYPE h histogram\nh 1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct promtext doc;
        char err[256];
        if (promtext_parse(bad[i], &doc, err, sizeof err) == 0)
            fail_msg("accepted: %s", bad[i]);
        promtext_free(&doc);
    }
    struct promtext doc;
    parse_ok("# a comment\n\n# TYPE h histogram\nh_bucket{x=\"1\",le=\"0.5\"} 1\n"
             "h_bucket{x=\"1\",le=\"+Inf\"} 2\nh_sum{x=\"1\"} 1.5\nh_count{x=\"1\"} 2\n"
             "g{a=\"\\\"\\n\\\\\"} NaN 1700000000000\nz -Inf\nzz +Inf\n",
             &doc);
    assert_int_equal(doc.sample_count, 7);
    promtext_free(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_latency_buckets),
        cmocka_unit_test(test_render_snapshot),
        cmocka_unit_test(test_parser_is_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
