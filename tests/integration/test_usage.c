/* test_usage.c: usage accounting and metrics on the wire, auth open. A
 * mixed workload (misses, hits, coalesced calls through the driver, the
 * fake's injected 500, a 400 of the fake, one of the proxy itself, a
 * no-store bypass, a pass-through GET) is tallied on the client side from
 * what the answers said (X-Cache, X-Credits-Charged, X-Credits-Saved, status,
 * bytes sent and received), and /_proxy/usage must say exactly that, per
 * provider and in total, for member "-". Bad parameters are 400s. The text
 * of /_proxy/metrics parses with a strict exposition-format parser
 * (promtext.h) and its numbers equal those of /_proxy/stats,
 * /_proxy/cache/stats and /_proxy/usage. The counters survive a restart on
 * the same cache directory and go on from there, and `cloro-proxy usage`
 * prints the same numbers from the store. In async upstream mode, the credit
 * saver's savings are counted by=async everywhere. With two members, one with a
 * daily_credit_budget: past it, 403 BUDGET_EXCEEDED before any upstream
 * call while its hits are still served, the other member unaffected, and
 * the refusal holds across a restart. With auth = members and three members,
 * a mixed workload (hits of each other's answers, calls coalesced across
 * members, errors) is counted for exactly the member who made each request,
 * in /_proxy/usage?member=NAME and the per-member metrics; refused 401s count
 * for no member (they go to "-"). */
#include "driver.h"
#include "harness.h"
#include "promtext.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define KEY "sk_live_usagetest01"

static struct proc fake;
static struct proc proxy;
static struct proc team_fake, team_proxy; /* test_members_counters_exact's */
static char base_dir[64];
static char cache_dir[128];
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};

/* The counters of a usage row, as the report names them. */
static const char *const counter_names[] = {"requests",
                                            "hits",
                                            "coalesced",
                                            "upstream_calls",
                                            "credits_charged",
                                            "credits_saved_cache",
                                            "credits_saved_async",
                                            "errors",
                                            "bytes_in",
                                            "bytes_out"};
#define COUNTERS (sizeof counter_names / sizeof counter_names[0])
enum {
    C_REQUESTS,
    C_HITS,
    C_COALESCED,
    C_UPSTREAM,
    C_CHARGED,
    C_SAVED_CACHE,
    C_SAVED_ASYNC,
    C_ERRORS,
    C_BYTES_IN,
    C_BYTES_OUT
};

/* What the client saw, per provider (the accounting names). */
#define PROVIDERS 4
static const char *const providers[PROVIDERS] = {"chatgpt", "google", "gemini", "other"};
static long long tally[PROVIDERS][COUNTERS];
static long long report_before_restart[COUNTERS];

static int provider_index(const char *name)
{
    for (int i = 0; i < PROVIDERS; i++)
        if (strcmp(providers[i], name) == 0)
            return i;
    fail_msg("no provider %s in the tally", name);
    return -1;
}

static long long header_number(const struct http_reply *r, const char *name)
{
    const char *v = http_header(r, name);
    return v != NULL ? atoll(v) : 0;
}

/* Counts one answer into a tally as the proxy should. upstream_calls: how
 * many calls it made upstream for it (known to the test from the fake's
 * counter). */
static void count_into(long long (*into)[COUNTERS], const char *provider, const char *body,
                       const struct http_reply *r, long long upstream_calls)
{
    long long *t = into[provider_index(provider)];
    const char *x = http_header(r, "X-Cache");
    t[C_REQUESTS]++;
    t[C_HITS] += x != NULL && (strcmp(x, "HIT") == 0 || strcmp(x, "STALE") == 0);
    t[C_COALESCED] += x != NULL && strcmp(x, "COALESCED") == 0;
    t[C_UPSTREAM] += upstream_calls;
    t[C_CHARGED] += header_number(r, "X-Credits-Charged");
    const char *by = http_header(r, "X-Credits-Saved-By");
    t[by != NULL && strcmp(by, "async") == 0 ? C_SAVED_ASYNC : C_SAVED_CACHE] +=
        header_number(r, "X-Credits-Saved");
    t[C_ERRORS] += r->status >= 400;
    t[C_BYTES_IN] += body != NULL ? (long long)strlen(body) : 0;
    t[C_BYTES_OUT] += (long long)r->body_len;
}

static void count(const char *provider, const char *body, const struct http_reply *r,
                  long long upstream_calls)
{
    count_into(tally, provider, body, r, upstream_calls);
}

static long long upstream_total(void)
{
    return fake_stat(&fake, "requests_total");
}

/* One POST, counted; returns the reply (caller frees). */
static void post(const char *path, const char *provider, const char *body,
                 const char *const headers[], struct http_reply *r)
{
    long long before = upstream_total();
    http_post(&proxy, path, body, headers, r);
    count(provider, body, r, upstream_total() - before);
}

static json_t *get_json(const struct proc *p, const char *path, long expect_status)
{
    struct http_reply r;
    http_get(p, path, &r);
    if (r.status != expect_status)
        fail_msg("GET %s: %ld, expected %ld: %s", path, r.status, expect_status, r.body);
    json_t *j = http_json(&r);
    http_reply_free(&r);
    assert_non_null(j);
    return j;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(base_dir, sizeof base_dir, "/tmp/cloro-it-usage-XXXXXX");
    if (mkdtemp(base_dir) == NULL)
        return -1;
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", base_dir);
    const char *fake_args[] = {"--api-key", KEY, "--log-level", "warn", NULL};
    if (proc_start_fake(&fake, fake_args) != 0)
        return -1;
    const char *args[] = {"--cache-dir", cache_dir, NULL};
    return proc_start_proxy(&proxy, fake.url, args, proxy_env);
}

static int group_teardown(void **state)
{
    (void)state;
    if (team_proxy.pid > 0)
        proc_stop(&team_proxy);
    if (team_fake.pid > 0)
        proc_stop(&team_fake);
    proc_stop(&proxy);
    proc_stop(&fake);
    if (getenv("KEEP_TEST_LOGS") == NULL)
        remove_tree(base_dir);
    curl_global_cleanup();
    return 0;
}

/* The report's counters object at members -> member -> providers -> p ->
 * totals (p NULL: the member's totals). */
static json_t *member_row(json_t *report, const char *member, const char *p)
{
    json_t *m = json_object_get(json_object_get(report, "members"), member);
    return p == NULL
               ? json_object_get(m, "totals")
               : json_object_get(json_object_get(json_object_get(m, "providers"), p), "totals");
}

static json_t *report_row(json_t *report, const char *p)
{
    return member_row(report, "-", p);
}

static void assert_row(json_t *row, const long long *want, const char *what)
{
    if (row == NULL)
        fail_msg("%s: no row in the report", what);
    for (size_t k = 0; k < COUNTERS; k++) {
        long long got = json_integer_value(json_object_get(row, counter_names[k]));
        if (got != want[k])
            fail_msg("%s: %s is %lld, the client saw %lld", what, counter_names[k], got, want[k]);
    }
}

/* Polls /_proxy/usage until its totals say requests (the flush is once a
 * second, the report reads memory too: at once in fact). */
static json_t *usage_report(const struct proc *p)
{
    return get_json(p, "/_proxy/usage", 200);
}

static void test_mixed_workload_counts_exact(void **state)
{
    (void)state;
    struct http_reply r;
    const char *q1 = "{\"prompt\":\"usage one\",\"country\":\"US\"}";
    post("/v1/monitor/chatgpt", "chatgpt", q1, NULL, &r); /* miss */
    assert_string_equal(http_header(&r, "X-Cache"), "MISS");
    assert_true(header_number(&r, "X-Credits-Charged") > 0);
    http_reply_free(&r);
    for (int i = 0; i < 2; i++) { /* hits, written otherwise */
        post("/v1/monitor/chatgpt", "chatgpt", "{ \"country\":\"US\", \"prompt\":\"usage one\" }",
             NULL, &r);
        assert_string_equal(http_header(&r, "X-Cache"), "HIT");
        http_reply_free(&r);
    }
    /* Coalesced: four identical calls at once, the fake slow. */
    const char *slow = "{\"prompt\":\"usage together [fake:latency=800]\",\"country\":\"US\"}";
    long long before = upstream_total();
    struct driver d;
    driver_init(&d, 4);
    for (int i = 0; i < 4; i++)
        driver_add(&d, &proxy, "/v1/monitor/chatgpt", slow, 0, NULL, 30000L);
    assert_true(driver_finish(&d, 30000));
    assert_int_equal(upstream_total() - before, 1);
    int coalesced = 0;
    for (int i = 0; i < 4; i++) {
        const char *x = http_header(&d.calls[i].reply, "X-Cache");
        assert_non_null(x);
        coalesced += strcmp(x, "COALESCED") == 0;
        count("chatgpt", slow, &d.calls[i].reply, strcmp(x, "MISS") == 0 ? 1 : 0);
    }
    assert_true(coalesced >= 2);
    driver_free(&d);
    /* Errors: the fake's 500 (not retried), the fake's own 400, the proxy's 400. */
    post("/v1/monitor/gemini", "gemini",
         "{\"prompt\":\"usage fails [fake:500]\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 500);
    http_reply_free(&r);
    post("/v1/monitor/gemini", "gemini", "{\"prompt\":\"\"}", NULL, &r);
    assert_int_equal(r.status, 400);
    http_reply_free(&r);
    const char *bad_priority[] = {"Content-Type: application/json", "X-Priority: 11", NULL};
    post("/v1/monitor/gemini", "gemini", "{\"prompt\":\"usage\",\"country\":\"US\"}", bad_priority,
         &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(http_error_code(&r), "VALIDATION_ERROR");
    http_reply_free(&r);
    /* Another provider, and a no-store bypass that still pays. */
    post("/v1/monitor/google", "google", "{\"query\":\"usage news\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    const char *no_store[] = {"Content-Type: application/json", "Cache-Control: no-store", NULL};
    post("/v1/monitor/google", "google", "{\"query\":\"usage news\",\"country\":\"US\"}", no_store,
         &r);
    assert_string_equal(http_header(&r, "X-Cache"), "BYPASS");
    assert_true(header_number(&r, "X-Credits-Charged") > 0);
    http_reply_free(&r);
    /* A pass-through GET: provider "other". */
    before = upstream_total();
    char *url = proc_url(&proxy, "/v1/credits");
    const char *auth[] = {NULL};
    http_call("GET", url, NULL, auth, &r);
    free(url);
    assert_int_equal(r.status, 200);
    count("other", NULL, &r, upstream_total() - before);
    http_reply_free(&r);

    json_t *report = usage_report(&proxy);
    long long total[COUNTERS] = {0};
    for (int p = 0; p < PROVIDERS; p++) {
        assert_row(report_row(report, providers[p]), tally[p], providers[p]);
        for (size_t k = 0; k < COUNTERS; k++)
            total[k] += tally[p][k];
    }
    assert_row(report_row(report, NULL), total, "member -");
    assert_row(json_object_get(report, "totals"), total, "totals");
    assert_int_equal(json_object_size(json_object_get(report, "members")), 1);
    char today[16];
    time_t now = time(NULL);
    strftime(today, sizeof today, "%Y-%m-%d", gmtime(&now));
    assert_string_equal(json_string_value(json_object_get(report, "since")), today);
    json_t *day = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(report, "members"), "-"), "days"),
            today),
        "requests");
    assert_int_equal(json_integer_value(day), total[C_REQUESTS]);
    json_decref(report);
    memcpy(report_before_restart, total, sizeof total);

    /* The filters: member "-" is everything here; another member is nothing;
     * a since after today is nothing. */
    report = get_json(&proxy, "/_proxy/usage?member=-", 200);
    assert_row(json_object_get(report, "totals"), total, "member=-");
    json_decref(report);
    report = get_json(&proxy, "/_proxy/usage?member=alice&since=2020-01-01", 200);
    assert_int_equal(json_object_size(json_object_get(report, "members")), 0);
    json_decref(report);
    report = get_json(&proxy, "/_proxy/usage?since=2999-01-01", 200);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(report, "totals"), "requests")), 0);
    json_decref(report);
}

static void test_bad_parameters_are_400(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "/_proxy/usage?since=2026-02-30", "/_proxy/usage?since=yesterday",
        "/_proxy/usage?member=",          "/_proxy/usage?member=a%20b",
        "/_proxy/usage?limit=5",          "/_proxy/usage?since=2026-01-01&since=2026-01-02",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct http_reply r;
        http_get(&proxy, bad[i], &r);
        if (r.status != 400 || strcmp(http_error_code(&r), "VALIDATION_ERROR") != 0)
            fail_msg("%s: %ld %s", bad[i], r.status, r.body);
        json_t *j = http_json(&r);
        assert_true(json_array_size(json_dig(j, "error.details")) >= 1);
        json_decref(j);
        http_reply_free(&r);
    }
}

static double metric(const struct promtext *doc, const char *name, const char *const *labels)
{
    double v;
    if (!promtext_get(doc, name, labels, &v))
        fail_msg("no sample %s", name);
    return v;
}

static void assert_equal_num(double got, long long want, const char *what)
{
    if (got != (double)want)
        fail_msg("%s: metrics say %.0f, the JSON %lld", what, got, want);
}

static void test_metrics_parse_and_agree(void **state)
{
    (void)state;
    struct http_reply r;
    http_get(&proxy, "/_proxy/metrics", &r);
    assert_int_equal(r.status, 200);
    const char *ct = http_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_true(strncmp(ct, "text/plain; version=0.0.4", 25) == 0);
    struct promtext doc;
    char err[512];
    if (promtext_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/_proxy/metrics is not valid exposition text: %s", err);
    for (size_t i = 0; i < doc.family_count; i++)
        if (doc.families[i].help == NULL || strcmp(doc.families[i].type, "untyped") == 0)
            fail_msg("family %s lacks HELP or TYPE", doc.families[i].name);
    json_t *stats = get_json(&proxy, "/_proxy/stats", 200);
    json_t *cache = get_json(&proxy, "/_proxy/cache/stats", 200);
    json_t *usage = usage_report(&proxy);
    json_t *totals = json_object_get(usage, "totals");
#define J(root, path) ((long long)json_integer_value(json_dig(root, path)))
    assert_equal_num(metric(&doc, "cloro_proxy_upstream_calls_total", NULL),
                     J(stats, "upstream.calls"), "upstream calls");
    assert_equal_num(metric(&doc, "cloro_proxy_concurrency_limit", NULL),
                     J(stats, "limits.concurrency_limit"), "concurrency limit");
    assert_equal_num(metric(&doc, "cloro_proxy_concurrency_max", NULL),
                     J(stats, "limits.max_concurrency"), "max concurrency");
    assert_equal_num(metric(&doc, "cloro_proxy_queue_depth", NULL), J(stats, "limits.queued"),
                     "queued");
    assert_equal_num(metric(&doc, "cloro_proxy_upstream_retries_total", NULL),
                     J(stats, "limits.retries"), "retries");
    assert_equal_num(metric(&doc, "cloro_proxy_cache_entries", NULL), J(cache, "entries"),
                     "entries");
    assert_equal_num(metric(&doc, "cloro_proxy_cache_bytes", NULL), J(cache, "bytes"), "bytes");
    assert_equal_num(metric(&doc, "cloro_proxy_cache_evictions_total", NULL), J(cache, "evictions"),
                     "evictions");
    const char *outcomes[][2] = {
        {"hit", "hits"},      {"miss", "misses"}, {"coalesced", "coalesced"},
        {"bypass", "bypass"}, {"stale", "stale"}, {"refresh", "refresh"}};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
        const char *l[] = {"outcome", outcomes[i][0], NULL};
        assert_equal_num(metric(&doc, "cloro_proxy_cache_outcomes_total", l),
                         J(cache, outcomes[i][1]), outcomes[i][1]);
    }
    const char *states[] = {"pending", "captured", "lost"};
    for (size_t i = 0; i < 3; i++) {
        const char *l[] = {"state", states[i], NULL};
        char path[32];
        snprintf(path, sizeof path, "artifacts.%s", states[i]);
        assert_equal_num(metric(&doc, "cloro_proxy_artifacts", l), J(stats, path), path);
    }
    const char *submitted[] = {"event", "submitted", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_tasks_total", submitted),
                     J(stats, "tasks.submitted"), "tasks submitted");
    /* Credits: the usage totals (one process, one day), and the cache's own count. */
    assert_equal_num(metric(&doc, "cloro_proxy_credits_charged_total", NULL),
                     J(totals, "credits_charged"), "credits charged");
    const char *by_cache[] = {"by", "cache", NULL}, *by_async[] = {"by", "async", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_credits_saved_total", by_cache),
                     J(totals, "credits_saved_cache"), "saved by the cache");
    assert_equal_num(metric(&doc, "cloro_proxy_credits_saved_total", by_cache),
                     J(cache, "credits_saved"), "saved by the cache (cache stats)");
    assert_equal_num(metric(&doc, "cloro_proxy_credits_saved_total", by_async),
                     J(totals, "credits_saved_async"), "saved by async");
    const char *anon[] = {"member", "-", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_member_requests_total", anon), J(totals, "requests"),
                     "member requests");
    assert_equal_num(metric(&doc, "cloro_proxy_member_credits_charged_total", anon),
                     J(totals, "credits_charged"), "member credits");
    /* Answers by route: every /v1/ request of the usage report. */
    double upstream_route = 0;
    for (size_t i = 0; i < doc.sample_count; i++) {
        const struct promtext_sample *s = &doc.samples[i];
        if (strcmp(s->name, "cloro_proxy_requests_total") != 0)
            continue;
        for (size_t k = 0; k < s->label_count; k++)
            if (strcmp(s->labels[k].name, "route") == 0 &&
                strcmp(s->labels[k].value, "upstream") == 0)
                upstream_route += s->value;
    }
    assert_equal_num(upstream_route, J(totals, "requests"), "upstream route answers");
    const char *hit200[] = {"route", "upstream", "status", "200", "cache", "hit", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_requests_total", hit200), J(totals, "hits"),
                     "hits by status");
    const char *err500[] = {"route", "upstream", "status", "500", "cache", "miss", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_requests_total", err500), 1, "the 500");
    /* The latency histograms: every hit, and every answer that went or waited upstream. */
    const char *hit[] = {"answer", "hit", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_request_duration_seconds_count", hit),
                     J(totals, "hits"), "hit latencies");
    const char *slow_bucket[] = {"answer", "upstream", "le", "0.5", NULL};
    const char *up[] = {"answer", "upstream", NULL};
    double up_count = metric(&doc, "cloro_proxy_request_duration_seconds_count", up);
    assert_equal_num(up_count, J(stats, "latency.upstream.count"), "upstream latencies");
    assert_equal_num(metric(&doc, "cloro_proxy_request_duration_seconds_count", hit),
                     J(stats, "latency.hit.count"), "hit latencies (stats)");
    assert_true(up_count >= 4 + 1); /* the coalesced burst, a miss at least */
    assert_true(metric(&doc, "cloro_proxy_request_duration_seconds_bucket", slow_bucket) <=
                up_count - 4); /* the burst took 800 ms */
#undef J
    json_decref(stats);
    json_decref(cache);
    json_decref(usage);
    promtext_free(&doc);
    http_reply_free(&r);

    /* HEAD answers the same headers with no body. */
    char *url = proc_url(&proxy, "/_proxy/metrics");
    http_call("HEAD", url, NULL, NULL, &r);
    free(url);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    http_reply_free(&r);
}

static void test_counters_survive_restart(void **state)
{
    (void)state;
    proc_stop(&proxy); /* graceful: the last flush is committed before exit */
    const char *args[] = {"--cache-dir", cache_dir, NULL};
    assert_int_equal(proc_start_proxy(&proxy, fake.url, args, proxy_env), 0);
    json_t *report = usage_report(&proxy);
    assert_row(json_object_get(report, "totals"), report_before_restart, "after restart");
    json_decref(report);

    /* Counting goes on from the loaded values. */
    struct http_reply r;
    post("/v1/monitor/chatgpt", "chatgpt", "{\"prompt\":\"usage one\",\"country\":\"US\"}", NULL,
         &r);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    long long saved = header_number(&r, "X-Credits-Saved");
    long long body_len = (long long)r.body_len;
    http_reply_free(&r);
    report = usage_report(&proxy);
    long long want[COUNTERS];
    memcpy(want, report_before_restart, sizeof want);
    want[C_REQUESTS]++;
    want[C_HITS]++;
    want[C_SAVED_CACHE] += saved;
    want[C_BYTES_IN] += (long long)strlen("{\"prompt\":\"usage one\",\"country\":\"US\"}");
    want[C_BYTES_OUT] += body_len;
    assert_row(json_object_get(report, "totals"), want, "after one more hit");
    json_decref(report);

    /* The CLI reads the store (written within a second) while the server runs. */
    long long deadline = now_ms() + 5000;
    json_t *cli = NULL;
    for (;;) {
        struct cli_result out;
        cli_run(&out, (const char *[]){"usage", "--cache-dir", cache_dir, "--json", NULL});
        assert_int_equal(out.status, 0);
        json_decref(cli);
        cli = json_loads(out.output, 0, NULL);
        free(out.output);
        assert_non_null(cli);
        if (json_integer_value(json_dig(cli, "totals.requests")) == want[C_REQUESTS] ||
            now_ms() > deadline)
            break;
        sleep_ms(200);
    }
    assert_row(json_object_get(cli, "totals"), want, "cloro-proxy usage --json");
    json_decref(cli);
    struct cli_result out;
    cli_run(&out, (const char *[]){"usage", "--cache-dir", cache_dir, "--member", "-", NULL});
    assert_int_equal(out.status, 0);
    assert_non_null(strstr(out.output, "DAY"));
    assert_non_null(strstr(out.output, "chatgpt"));
    assert_non_null(strstr(out.output, "TOTAL"));
    char requests[32];
    snprintf(requests, sizeof requests, " %lld ", want[C_REQUESTS]);
    assert_non_null(strstr(strstr(out.output, "TOTAL"), requests));
    free(out.output);
    cli_run(&out, (const char *[]){"usage", "--cache-dir", cache_dir, "--since", "2026-1-1", NULL});
    assert_int_equal(out.status, 2);
    free(out.output);
}

/* The credit saver: a sync call asked as an async task is charged the task's
 * credits and saves the surcharge, by=async, in usage, metrics and stats. */
static void test_credit_saver_counts_async_savings(void **state)
{
    (void)state;
    char dir[160];
    snprintf(dir, sizeof dir, "%s/saver-cache", base_dir);
    const char *args[] = {"--cache-dir", dir, "--upstream-mode", "async", "--poll-initial",
                          "50ms",        NULL};
    struct proc saver;
    assert_int_equal(proc_start_proxy(&saver, fake.url, args, proxy_env), 0);
    struct http_reply r;
    http_post(&saver, "/v1/monitor/chatgpt", "{\"prompt\":\"usage saver\",\"country\":\"US\"}",
              NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Credits-Saved-By"), "async");
    long long charged = header_number(&r, "X-Credits-Charged");
    long long saved = header_number(&r, "X-Credits-Saved");
    assert_true(charged > 0 && saved > 0);
    http_reply_free(&r);
    json_t *usage = usage_report(&saver);
    assert_int_equal(json_integer_value(json_dig(usage, "totals.credits_charged")), charged);
    assert_int_equal(json_integer_value(json_dig(usage, "totals.credits_saved_async")), saved);
    assert_int_equal(json_integer_value(json_dig(usage, "totals.credits_saved_cache")), 0);
    assert_int_equal(json_integer_value(json_dig(usage, "totals.upstream_calls")), 1);
    json_decref(usage);
    json_t *stats = get_json(&saver, "/_proxy/stats", 200);
    assert_int_equal(json_integer_value(json_dig(stats, "tasks.credit_saver.credits_saved")),
                     saved);
    json_decref(stats);
    http_get(&saver, "/_proxy/metrics", &r);
    struct promtext doc;
    char err[512];
    if (promtext_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/_proxy/metrics is not valid exposition text: %s", err);
    const char *by_async[] = {"by", "async", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_credits_saved_total", by_async), saved,
                     "saved by async");
    promtext_free(&doc);
    http_reply_free(&r);
    proc_stop(&saver);
}

/* ---- budgets: two members ------------------------------------------------- */

#define ADMIN       "adm_usage_test_41d2"
#define TOKEN_ALICE "cpm_usage_alice_0001"
#define TOKEN_BOB   "cpm_usage_bob_0002"

static void call_as(const struct proc *p, const char *token, const char *path, const char *body,
                    struct http_reply *r)
{
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    char *url = proc_url(p, path);
    http_call(body != NULL ? "POST" : "GET", url, body, headers, r);
    free(url);
}

/* alice (daily_credit_budget 10) gets 403 BUDGET_EXCEEDED once her charged
 * credits reach 10, without any upstream call, while her cache hits are
 * still served; bob (no budget) is unaffected; usage and metrics name both. */
static void test_budget_per_member(void **state)
{
    (void)state;
    char members[160], text[512], hex_a[65], hex_b[65];
    snprintf(members, sizeof members, "%s/team.ini", base_dir);
    sha256_hex(TOKEN_ALICE, hex_a);
    sha256_hex(TOKEN_BOB, hex_b);
    snprintf(text, sizeof text,
             "[member alice]\ntoken_sha256 = %s\ndaily_credit_budget = 10\n\n"
             "[member bob]\ntoken_sha256 = %s\n",
             hex_a, hex_b);
    FILE *f = fopen(members, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    char budget_cache[160];
    snprintf(budget_cache, sizeof budget_cache, "%s/budget-cache", base_dir);
    const char *args[] = {"--cache-dir", budget_cache, "--members-file", members, NULL};
    const char *env[] = {"CLORO_API_KEY=" KEY, "CLORO_ADMIN_TOKEN=" ADMIN, NULL};
    struct proc team;
    assert_int_equal(proc_start_proxy(&team, fake.url, args, env), 0);

    /* alice spends: misses until her charges reach the budget. */
    long long charged = 0;
    int n = 0;
    char body[128];
    struct http_reply r;
    while (charged < 10) {
        snprintf(body, sizeof body, "{\"prompt\":\"budget %d\",\"country\":\"US\"}", n++);
        call_as(&team, TOKEN_ALICE, "/v1/monitor/chatgpt", body, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(http_header(&r, "X-Cache"), "MISS");
        charged += header_number(&r, "X-Credits-Charged");
        http_reply_free(&r);
        assert_true(n < 10);
    }
    /* The next paid call is refused before it leaves. */
    long long before = upstream_total();
    call_as(&team, TOKEN_ALICE, "/v1/monitor/chatgpt",
            "{\"prompt\":\"budget over\",\"country\":\"US\"}", &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(http_error_code(&r), "BUDGET_EXCEEDED");
    json_t *j = http_json(&r);
    assert_int_equal(json_integer_value(json_dig(j, "error.details.budget")), 10);
    assert_int_equal(json_integer_value(json_dig(j, "error.details.charged")), charged);
    char tomorrow[32];
    time_t t = time(NULL) + 86400;
    strftime(tomorrow, sizeof tomorrow, "%Y-%m-%dT00:00:00.000Z", gmtime(&t));
    assert_string_equal(json_string_value(json_dig(j, "error.details.resets_at")), tomorrow);
    json_decref(j);
    http_reply_free(&r);
    assert_int_equal(upstream_total(), before);
    /* Her hits stay free and allowed. */
    call_as(&team, TOKEN_ALICE, "/v1/monitor/chatgpt",
            "{\"prompt\":\"budget 0\",\"country\":\"US\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    http_reply_free(&r);
    /* bob is unaffected, even asking what alice may not. */
    call_as(&team, TOKEN_BOB, "/v1/monitor/chatgpt",
            "{\"prompt\":\"budget over\",\"country\":\"US\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "MISS");
    long long bob_charged = header_number(&r, "X-Credits-Charged");
    http_reply_free(&r);
    assert_int_equal(upstream_total(), before + 1);
    /* Still refused for alice, now as a hit would be for bob's answer: a hit. */
    call_as(&team, TOKEN_ALICE, "/v1/monitor/chatgpt",
            "{\"prompt\":\"budget over\",\"country\":\"US\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    http_reply_free(&r);

    /* The usage report and the metrics name both members. */
    call_as(&team, ADMIN, "/_proxy/usage", NULL, &r);
    assert_int_equal(r.status, 200);
    j = http_json(&r);
    http_reply_free(&r);
    assert_int_equal(json_integer_value(json_dig(j, "members.alice.totals.credits_charged")),
                     charged);
    assert_int_equal(json_integer_value(json_dig(j, "members.alice.totals.requests")), n + 3);
    assert_int_equal(json_integer_value(json_dig(j, "members.alice.totals.hits")), 2);
    assert_int_equal(json_integer_value(json_dig(j, "members.alice.totals.errors")), 1);
    assert_int_equal(json_integer_value(json_dig(j, "members.alice.totals.upstream_calls")), n);
    assert_int_equal(json_integer_value(json_dig(j, "members.bob.totals.credits_charged")),
                     bob_charged);
    assert_null(json_dig(j, "members.-"));
    json_decref(j);
    call_as(&team, ADMIN, "/_proxy/usage?member=bob", NULL, &r);
    j = http_json(&r);
    http_reply_free(&r);
    assert_int_equal(json_object_size(json_object_get(j, "members")), 1);
    assert_int_equal(json_integer_value(json_dig(j, "totals.requests")), 1);
    json_decref(j);
    call_as(&team, ADMIN, "/_proxy/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    struct promtext doc;
    char err[512];
    if (promtext_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/_proxy/metrics is not valid exposition text: %s", err);
    const char *alice[] = {"member", "alice", NULL}, *bob[] = {"member", "bob", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_member_credits_charged_total", alice), charged,
                     "alice's credits");
    assert_equal_num(metric(&doc, "cloro_proxy_member_credits_charged_total", bob), bob_charged,
                     "bob's credits");
    assert_equal_num(metric(&doc, "cloro_proxy_credits_charged_total", NULL), charged + bob_charged,
                     "all credits");
    promtext_free(&doc);
    http_reply_free(&r);

    /* A restart keeps today's charges: alice stays refused. */
    proc_stop(&team);
    assert_int_equal(proc_start_proxy(&team, fake.url, args, env), 0);
    call_as(&team, TOKEN_ALICE, "/v1/monitor/chatgpt",
            "{\"prompt\":\"budget after restart\",\"country\":\"US\"}", &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(http_error_code(&r), "BUDGET_EXCEEDED");
    http_reply_free(&r);
    proc_stop(&team);
}

/* ---- members' counters after a mixed workload ----------------------------- */

#define TOKEN_CAROL   "cpm_usage_carol_0003"
#define TOKEN_UNKNOWN "cpm_usage_nobody_0004"
#define TEAM          3
#define REFUSED       TEAM /* the tally of the 401s: reported as member "-" */

static const char *const team_names[TEAM + 1] = {"alice", "bob", "carol", "-"};
static const char *const team_tokens[TEAM] = {TOKEN_ALICE, TOKEN_BOB, TOKEN_CAROL};
static long long team_tally[TEAM + 1][PROVIDERS][COUNTERS];

static long long team_upstream(void)
{
    return fake_stat(&team_fake, "requests_total");
}

/* One call to the team's proxy with auth as its Authorization line (NULL:
 * none) and one more header (NULL: none), counted into who's tally. */
static void team_call_auth(int who, const char *auth, const char *method, const char *path,
                           const char *provider, const char *body, const char *extra,
                           struct http_reply *r)
{
    const char *headers[4] = {"Content-Type: application/json"};
    size_t n = 1;
    if (auth != NULL)
        headers[n++] = auth;
    if (extra != NULL)
        headers[n++] = extra;
    headers[n] = NULL;
    long long before = team_upstream();
    char *url = proc_url(&team_proxy, path);
    http_call(method, url, body, headers, r);
    free(url);
    if (r->curl_code != 0)
        fail_msg("%s %s: no answer (curl %d)", method, path, r->curl_code);
    count_into(team_tally[who], provider, body, r, team_upstream() - before);
}

/* One call of member who with its own token (body NULL: a GET). */
static void team_call(int who, const char *path, const char *provider, const char *body,
                      const char *extra, struct http_reply *r)
{
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", team_tokens[who]);
    team_call_auth(who, auth, body != NULL ? "POST" : "GET", path, provider, body, extra, r);
}

/* The reply's status, and its X-Cache unless x_cache is NULL; frees it. */
static void expect_reply(struct http_reply *r, long status, const char *x_cache)
{
    const char *x = http_header(r, "X-Cache");
    if (r->status != status || (x_cache != NULL && (x == NULL || strcmp(x, x_cache) != 0)))
        fail_msg("expected %ld X-Cache %s, got %ld X-Cache %s: %s", status,
                 x_cache != NULL ? x_cache : "(any)", r->status, x != NULL ? x : "(none)", r->body);
    http_reply_free(r);
}

/* A refused call: 401 with code, no X-Cache, nothing upstream. */
static void expect_refused(struct http_reply *r, const char *code)
{
    if (r->status != 401 || strcmp(http_error_code(r), code) != 0)
        fail_msg("expected 401 %s, got %ld %s: %s", code, r->status, http_error_code(r), r->body);
    assert_null(http_header(r, "X-Cache"));
    http_reply_free(r);
}

/* A usage row the client tally says is empty may be absent from the report. */
static void assert_row_or_none(json_t *row, const long long *want, const char *what)
{
    bool empty = true;
    for (size_t k = 0; k < COUNTERS; k++)
        empty = empty && want[k] == 0;
    if (row != NULL || !empty)
        assert_row(row, want, what);
}

static json_t *team_admin_json(const char *path)
{
    struct http_reply r;
    call_as(&team_proxy, ADMIN, path, NULL, &r);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    json_t *j = http_json(&r);
    http_reply_free(&r);
    assert_non_null(j);
    return j;
}

/* Issue 8: with auth = members, three members' misses, hits of their own and
 * of each other's answers, calls coalesced across members, the fake's 500 and
 * 400, the proxy's own 400, a no-store bypass and a pass-through GET are
 * each counted for the member who made them, exactly as the client saw them
 * (per provider and in total, in /_proxy/usage?member=NAME, the whole report
 * and the per-member metrics). The workload gives every member different
 * numbers, so a request counted for the wrong member (a hit for the member
 * whose answer it replays, a coalesced call for the leader's member) fails.
 * Refused calls (401: an unknown token, none, the admin token) count for no
 * member: the implementation counts them, as any /v1/ request, under the
 * anonymous member "-" (requests and errors, provider of the path, nothing
 * upstream), which the README's "- when auth is open" does not spell out. */
static void test_members_counters_exact(void **state)
{
    (void)state;
    enum { ALICE, BOB, CAROL };
    char members[160], text[1024] = "", hex[65];
    for (int i = 0; i < TEAM; i++) {
        sha256_hex(team_tokens[i], hex);
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "[member %s]\ntoken_sha256 = %s\n\n",
                 team_names[i], hex);
    }
    snprintf(members, sizeof members, "%s/team3.ini", base_dir);
    FILE *f = fopen(members, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    /* A fake of its own: every answer 400 ms late, so that a burst really
     * coalesces, and its counter is this workload's upstream calls only. */
    const char *fake_args[] = {
        "--api-key",           KEY,   "--log-level", "warn", "--latency-ms", "400",
        "--concurrency-limit", "100", NULL};
    assert_int_equal(proc_start_fake(&team_fake, fake_args), 0);
    char team_cache[160];
    snprintf(team_cache, sizeof team_cache, "%s/team-cache", base_dir);
    const char *args[] = {"--cache-dir", team_cache, "--members-file", members, "--auth",
                          "members",     NULL};
    const char *env[] = {"CLORO_API_KEY=" KEY, "CLORO_ADMIN_TOKEN=" ADMIN, NULL};
    assert_int_equal(proc_start_proxy(&team_proxy, team_fake.url, args, env), 0);

    const char *chat = "{\"prompt\":\"team one\",\"country\":\"US\"}";
    const char *news = "{\"query\":\"team news\",\"country\":\"US\"}";
    const char *gem = "{\"prompt\":\"team gem\",\"country\":\"US\"}";
    struct http_reply r;
    /* Misses, and hits of one's own answers and of another member's. */
    team_call(ALICE, "/v1/monitor/chatgpt", "chatgpt", chat, NULL, &r);
    expect_reply(&r, 200, "MISS");
    team_call(ALICE, "/v1/monitor/chatgpt", "chatgpt", chat, NULL, &r);
    expect_reply(&r, 200, "HIT");
    team_call(BOB, "/v1/monitor/chatgpt", "chatgpt",
              "{ \"country\":\"US\", \"prompt\":\"team one\" }", NULL, &r); /* alice's answer */
    expect_reply(&r, 200, "HIT");
    team_call(BOB, "/v1/monitor/google", "google", news, NULL, &r);
    expect_reply(&r, 200, "MISS");
    for (int i = 0; i < 2; i++) { /* bob's answer */
        team_call(CAROL, "/v1/monitor/google", "google", news, NULL, &r);
        expect_reply(&r, 200, "HIT");
    }
    team_call(CAROL, "/v1/monitor/gemini", "gemini", gem, NULL, &r);
    expect_reply(&r, 200, "MISS");
    team_call(ALICE, "/v1/monitor/gemini", "gemini", gem, NULL, &r); /* carol's answer */
    expect_reply(&r, 200, "HIT");

    /* Coalesced: five identical calls at once, from all three members; one
     * goes upstream (whoever came first), the others wait on it. */
    static const int burst[] = {ALICE, BOB, CAROL, ALICE, CAROL};
    const int burst_n = (int)(sizeof burst / sizeof burst[0]);
    const char *slow = "{\"prompt\":\"team together\",\"country\":\"US\"}";
    long long before = team_upstream();
    struct driver d;
    driver_init(&d, burst_n);
    for (int i = 0; i < burst_n; i++) {
        char auth[128];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", team_tokens[burst[i]]);
        const char *headers[] = {auth, NULL};
        driver_add_headers(&d, &team_proxy, "/v1/monitor/chatgpt", slow, 0, NULL, 30000L, headers);
    }
    assert_true(driver_finish(&d, 30000));
    assert_int_equal(team_upstream() - before, 1);
    int misses = 0, coalesced = 0;
    for (int i = 0; i < burst_n; i++) {
        const struct http_reply *c = &d.calls[i].reply;
        const char *x = http_header(c, "X-Cache");
        if (c->status != 200 || x == NULL)
            fail_msg("burst call %d: %ld, X-Cache %s", i, c->status, x != NULL ? x : "(none)");
        misses += strcmp(x, "MISS") == 0;
        coalesced += strcmp(x, "COALESCED") == 0;
        count_into(team_tally[burst[i]], "chatgpt", slow, c, strcmp(x, "MISS") == 0 ? 1 : 0);
    }
    assert_int_equal(misses, 1);
    assert_true(coalesced >= 3);
    driver_free(&d);

    /* Errors: the fake's 500 (bob), the fake's own 400 (carol), the proxy's
     * 400 (alice, before anything goes upstream). */
    before = team_upstream();
    team_call(BOB, "/v1/monitor/gemini", "gemini",
              "{\"prompt\":\"team fails [fake:500]\",\"country\":\"US\"}", NULL, &r);
    expect_reply(&r, 500, NULL);
    team_call(CAROL, "/v1/monitor/gemini", "gemini", "{\"prompt\":\"\"}", NULL, &r);
    expect_reply(&r, 400, NULL);
    assert_int_equal(team_upstream() - before, 2);
    team_call(ALICE, "/v1/monitor/gemini", "gemini", "{\"prompt\":\"team\",\"country\":\"US\"}",
              "X-Priority: 11", &r);
    assert_string_equal(http_error_code(&r), "VALIDATION_ERROR");
    expect_reply(&r, 400, NULL);
    assert_int_equal(team_upstream() - before, 2);
    /* A no-store bypass that pays (carol, of an answer the cache holds), and
     * a pass-through GET (bob). */
    team_call(CAROL, "/v1/monitor/chatgpt", "chatgpt", chat, "Cache-Control: no-store", &r);
    assert_true(header_number(&r, "X-Credits-Charged") > 0);
    expect_reply(&r, 200, "BYPASS");
    team_call(BOB, "/v1/credits", "other", NULL, NULL, &r);
    expect_reply(&r, 200, NULL);
    /* Refused, even for an answer the cache holds: an unknown token, none,
     * and the admin token, which is no member's. */
    before = team_upstream();
    team_call_auth(REFUSED, "Authorization: Bearer " TOKEN_UNKNOWN, "POST", "/v1/monitor/chatgpt",
                   "chatgpt", chat, NULL, &r);
    expect_refused(&r, "INVALID_OR_EXPIRED_API_KEY");
    team_call_auth(REFUSED, NULL, "POST", "/v1/monitor/chatgpt", "chatgpt", chat, NULL, &r);
    expect_refused(&r, "MISSING_API_KEY");
    team_call_auth(REFUSED, "Authorization: Bearer " ADMIN, "POST", "/v1/monitor/google", "google",
                   news, NULL, &r);
    expect_refused(&r, "INVALID_OR_EXPIRED_API_KEY");
    assert_int_equal(team_upstream(), before);

    /* Each member's totals, and the workload's own check: every two of them
     * differ, so any request counted for another member shows. */
    long long totals[TEAM + 1][COUNTERS] = {{0}}, all[COUNTERS] = {0};
    for (int w = 0; w <= TEAM; w++)
        for (int p = 0; p < PROVIDERS; p++)
            for (size_t k = 0; k < COUNTERS; k++) {
                totals[w][k] += team_tally[w][p][k];
                all[k] += team_tally[w][p][k];
            }
    for (int a = 0; a <= TEAM; a++)
        for (int b = a + 1; b <= TEAM; b++)
            for (int p = 0; p < PROVIDERS; p++)
                if (team_tally[a][p][C_REQUESTS] == team_tally[b][p][C_REQUESTS] &&
                    team_tally[a][p][C_HITS] == team_tally[b][p][C_HITS] &&
                    team_tally[a][p][C_ERRORS] == team_tally[b][p][C_ERRORS] &&
                    team_tally[a][p][C_BYTES_IN] == team_tally[b][p][C_BYTES_IN] &&
                    (team_tally[a][p][C_REQUESTS] != 0 || team_tally[b][p][C_REQUESTS] != 0))
                    fail_msg("the workload does not tell %s from %s on %s", team_names[a],
                             team_names[b], providers[p]);
    assert_int_equal(totals[REFUSED][C_REQUESTS], 3);
    assert_int_equal(totals[REFUSED][C_ERRORS], 3);
    assert_int_equal(totals[REFUSED][C_UPSTREAM] + totals[REFUSED][C_HITS], 0);
    assert_int_equal(all[C_UPSTREAM], team_upstream()); /* every upstream call is someone's */

    /* /_proxy/usage?member=NAME: that member alone, exactly its tally. */
    char today[16];
    time_t now = time(NULL);
    strftime(today, sizeof today, "%Y-%m-%d", gmtime(&now));
    for (int w = 0; w <= TEAM; w++) {
        char path[64], what[64], day[64];
        snprintf(path, sizeof path, "/_proxy/usage?member=%s", team_names[w]);
        json_t *report = team_admin_json(path);
        json_t *ms = json_object_get(report, "members");
        if (json_object_size(ms) != 1 || json_object_get(ms, team_names[w]) == NULL)
            fail_msg("%s: not only member %s", path, team_names[w]);
        for (int p = 0; p < PROVIDERS; p++) {
            snprintf(what, sizeof what, "%s %s", team_names[w], providers[p]);
            assert_row_or_none(member_row(report, team_names[w], providers[p]), team_tally[w][p],
                               what);
        }
        snprintf(what, sizeof what, "%s in total", team_names[w]);
        assert_row(member_row(report, team_names[w], NULL), totals[w], what);
        assert_row(json_object_get(report, "totals"), totals[w], path);
        snprintf(day, sizeof day, "members.%s.days.%s.requests", team_names[w], today);
        assert_int_equal(json_integer_value(json_dig(report, day)), totals[w][C_REQUESTS]);
        json_decref(report);
    }
    /* The whole report: these four, and their sum. */
    json_t *report = team_admin_json("/_proxy/usage");
    assert_int_equal(json_object_size(json_object_get(report, "members")), TEAM + 1);
    for (int w = 0; w <= TEAM; w++)
        assert_row(member_row(report, team_names[w], NULL), totals[w], team_names[w]);
    assert_row(json_object_get(report, "totals"), all, "all members");
    json_decref(report);

    /* The metrics' per-member families say the same, for these four only. */
    call_as(&team_proxy, ADMIN, "/_proxy/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    struct promtext doc;
    char err[512];
    if (promtext_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/_proxy/metrics is not valid exposition text: %s", err);
    for (int w = 0; w <= TEAM; w++) {
        const char *who[] = {"member", team_names[w], NULL};
        const char *by_cache[] = {"member", team_names[w], "by", "cache", NULL};
        const char *by_async[] = {"member", team_names[w], "by", "async", NULL};
        char what[64];
        snprintf(what, sizeof what, "%s's requests", team_names[w]);
        assert_equal_num(metric(&doc, "cloro_proxy_member_requests_total", who),
                         totals[w][C_REQUESTS], what);
        snprintf(what, sizeof what, "%s's credits charged", team_names[w]);
        assert_equal_num(metric(&doc, "cloro_proxy_member_credits_charged_total", who),
                         totals[w][C_CHARGED], what);
        snprintf(what, sizeof what, "%s's credits saved by the cache", team_names[w]);
        assert_equal_num(metric(&doc, "cloro_proxy_member_credits_saved_total", by_cache),
                         totals[w][C_SAVED_CACHE], what);
        snprintf(what, sizeof what, "%s's credits saved by async", team_names[w]);
        assert_equal_num(metric(&doc, "cloro_proxy_member_credits_saved_total", by_async),
                         totals[w][C_SAVED_ASYNC], what);
    }
    size_t samples = 0;
    for (size_t i = 0; i < doc.sample_count; i++)
        samples += strcmp(doc.samples[i].name, "cloro_proxy_member_requests_total") == 0;
    assert_int_equal(samples, TEAM + 1);
    assert_equal_num(metric(&doc, "cloro_proxy_credits_charged_total", NULL), all[C_CHARGED],
                     "all credits charged");
    const char *by_cache[] = {"by", "cache", NULL};
    assert_equal_num(metric(&doc, "cloro_proxy_credits_saved_total", by_cache), all[C_SAVED_CACHE],
                     "all credits saved by the cache");
    promtext_free(&doc);
    http_reply_free(&r);
    proc_stop(&team_proxy);
    proc_stop(&team_fake);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_workload_counts_exact),
        cmocka_unit_test(test_bad_parameters_are_400),
        cmocka_unit_test(test_metrics_parse_and_agree),
        cmocka_unit_test(test_counters_survive_restart),
        cmocka_unit_test(test_credit_saver_counts_async_savings),
        cmocka_unit_test(test_budget_per_member),
        cmocka_unit_test(test_members_counters_exact),
    };
    return cmocka_run_group_tests_name("integration_usage", tests, group_setup, group_teardown);
}
