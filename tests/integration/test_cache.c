/* test_cache.c: the LMDB response cache on the wire. Identical questions are
 * answered once (however their JSON is written), identical calls in flight
 * share one upstream call, RFC 9111 request directives and stale-if-error
 * behave, entries survive restarts and kill -9, eviction bounds the store,
 * and the admin endpoints and the CLI see the same store as the server.
 * Every "answered once" is asserted on what the fake upstream counted. */
#include "driver.h"
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY "sk_live_cachetest01"

static struct proc fake;
static struct proc proxy; /* default settings, shared by most tests */
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *fake_args[] = {"--api-key", KEY, "--log-level", "warn", NULL};
    if (proc_start_fake(&fake, fake_args) != 0)
        return -1;
    return proc_start_proxy(&proxy, fake.url, NULL, proxy_env);
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&proxy);
    proc_stop(&fake);
    curl_global_cleanup();
    return 0;
}

static int reset_fake(void **state)
{
    (void)state;
    fake_reset(&fake);
    fake_configure(&fake, "{\"fail_503\":0,\"reset\":0,\"latency_ms\":0,\"retry_after_s\":0}");
    return 0;
}

static long long upstream_calls(void)
{
    return fake_stat(&fake, "requests_total");
}

static void ask(const struct proc *p, const char *path, const char *body, const char *cache_control,
                struct http_reply *out)
{
    char cc[128];
    snprintf(cc, sizeof cc, "Cache-Control: %s", cache_control != NULL ? cache_control : "");
    const char *headers[] = {"Content-Type: application/json", cache_control ? cc : NULL, NULL};
    http_post(p, path, body, headers, out);
}

static void assert_header(const struct http_reply *r, const char *name, const char *expected)
{
    const char *v = http_header(r, name);
    if (v == NULL || strcmp(v, expected) != 0)
        fail_msg("%s: expected '%s', got '%s' (status %ld, body %s)", name, expected,
                 v != NULL ? v : "(absent)", r->status, r->body);
}

static void test_identical_questions_are_answered_once(void **state)
{
    (void)state;
    struct http_reply first, second, third;
    ask(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"once only\",\"country\":\"US\"}", NULL,
        &first);
    assert_int_equal(first.status, 200);
    assert_header(&first, "X-Cache", "MISS");
    assert_non_null(strstr(http_header(&first, "Cache-Status"), "fwd=miss"));
    assert_non_null(strstr(http_header(&first, "Cache-Status"), "stored"));
    assert_header(&first, "X-Credits-Charged", "7");

    /* The same question, keys reordered, blanks added, a default made explicit. */
    ask(&proxy, "/v1/monitor/chatgpt",
        "{ \"include\" : {\"markdown\":false}, \"country\":\"US\",\n \"prompt\":\"once only\" }",
        NULL, &second);
    assert_int_equal(second.status, 200);
    assert_header(&second, "X-Cache", "HIT");
    assert_non_null(strstr(http_header(&second, "Cache-Status"), "cloro-proxy; hit"));
    assert_header(&second, "X-Credits-Charged", "0");
    assert_header(&second, "X-Credits-Saved", "7");
    assert_header(&second, "X-Credits-Saved-By", "cache");
    assert_non_null(http_header(&second, "Age"));
    /* Traceable to the call that was billed, and byte-identical. */
    assert_string_equal(http_header(&second, "X-Request-ID"), http_header(&first, "X-Request-ID"));
    assert_string_equal(http_header(&second, "X-Cache-Key"), http_header(&first, "X-Cache-Key"));
    assert_int_equal(second.body_len, first.body_len);
    assert_memory_equal(second.body, first.body, first.body_len);
    /* Headers of the moment are not replayed. */
    assert_null(http_header(&second, "X-Credits-Remaining"));
    assert_null(http_header(&second, "X-Concurrency-Remaining"));

    ask(&proxy, "/v1/monitor/chatgpt", "{\"country\":\"US\",\"prompt\":\"once only\"}", NULL,
        &third);
    assert_header(&third, "X-Cache", "HIT");
    assert_int_equal(upstream_calls(), 1);

    /* Hits are counted (gathered, and written once a second). */
    char path[160];
    snprintf(path, sizeof path, "/_proxy/cache/entries/%s", http_header(&first, "X-Cache-Key"));
    long long hits = 0;
    for (int i = 0; i < 300 && hits < 2; i++) {
        struct http_reply v;
        http_get(&proxy, path, &v);
        json_t *j = http_json(&v);
        hits = json_integer_value(json_object_get(j, "hits"));
        json_decref(j);
        http_reply_free(&v);
        if (hits < 2)
            sleep_ms(20);
    }
    assert_int_equal(hits, 2);

    char *log = proc_log(&proxy);
    assert_non_null(strstr(log, "cache=MISS"));
    assert_non_null(strstr(log, "cache=HIT"));
    free(log);
    http_reply_free(&first);
    http_reply_free(&second);
    http_reply_free(&third);
}

static void test_different_questions_stay_distinct(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"prompt\":\"distinct\",\"country\":\"US\"}",
        "{\"prompt\":\"distinct!\",\"country\":\"US\"}",
        "{\"prompt\":\"distinct\",\"country\":\"GB\"}",
        "{\"prompt\":\"distinct\",\"country\":\"US\",\"state\":\"CA\"}",
        "{\"prompt\":\"distinct\",\"country\":\"US\",\"include\":{\"markdown\":true}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct http_reply r;
        ask(&proxy, "/v1/monitor/perplexity", bodies[i], NULL, &r);
        assert_int_equal(r.status, 200);
        assert_header(&r, "X-Cache", "MISS");
        http_reply_free(&r);
    }
    assert_int_equal(upstream_calls(), 5);
}

static void test_errors_are_never_stored(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"prompt\":\"\",\"country\":\"US\"}",                /* cloro's 400 */
        "{\"prompt\":\"boom [fake:500]\",\"country\":\"US\"}", /* cloro's 500 */
        "{\"prompt\":\"not json\"",                            /* passes through: BYPASS */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int round = 0; round < 2; round++) {
            struct http_reply r;
            ask(&proxy, "/v1/monitor/gemini", bad[i], NULL, &r);
            assert_true(r.status >= 400);
            assert_string_not_equal(http_header(&r, "X-Cache"), "HIT");
            http_reply_free(&r);
        }
    }
    assert_int_equal(upstream_calls(), 6);
}

/* Sends n identical requests at once on n connections; waits for all. */
static void send_burst(struct driver *d, int n, const char *body)
{
    driver_init(d, n);
    for (int i = 0; i < n; i++)
        driver_add(d, &proxy, "/v1/monitor/copilot", body, 0, NULL, 30000L);
    assert_true(driver_finish(d, 60000));
}

static void test_identical_calls_in_flight_share_one(void **state)
{
    (void)state;
    struct driver d;
    send_burst(&d, 100, "{\"prompt\":\"stampede [fake:latency=1500]\",\"country\":\"US\"}");
    const struct http_reply *first = &d.calls[0].reply;
    int miss = 0, coalesced = 0, hit = 0;
    for (int i = 0; i < 100; i++) {
        const struct http_reply *r = &d.calls[i].reply;
        assert_int_equal(r->status, 200);
        assert_int_equal(r->body_len, first->body_len);
        assert_memory_equal(r->body, first->body, first->body_len);
        const char *x = http_header(r, "X-Cache");
        assert_non_null(x);
        miss += strcmp(x, "MISS") == 0;
        coalesced += strcmp(x, "COALESCED") == 0;
        hit += strcmp(x, "HIT") == 0;
        if (strcmp(x, "COALESCED") == 0) {
            assert_non_null(strstr(http_header(r, "Cache-Status"), "collapsed"));
            assert_string_equal(http_header(r, "X-Credits-Charged"), "0");
        }
    }
    driver_free(&d);
    assert_int_equal(miss, 1);
    assert_int_equal(miss + coalesced + hit, 100);
    assert_true(coalesced > 0);
    assert_int_equal(upstream_calls(), 1);

    /* A failing call fails every waiter the same way, and nothing is stored:
     * one call and its 3 retries (max_retries) for all 20. */
    send_burst(&d, 20, "{\"prompt\":\"stampede [fake:latency=800][fake:503]\",\"country\":\"US\"}");
    for (int i = 0; i < 20; i++) {
        assert_int_equal(d.calls[i].reply.status, 503);
        assert_string_equal(http_error_code(&d.calls[i].reply), "SERVICE_UNAVAILABLE");
    }
    driver_free(&d);
    assert_int_equal(upstream_calls(), 1 + 1 + 3);
}

/* Waits until the entry behind key is at least age_s old (cache age, whole s). */
static void wait_age(const struct proc *p, const char *key, int age_s)
{
    char path[160];
    snprintf(path, sizeof path, "/_proxy/cache/entries/%s", key);
    for (int i = 0; i < 500; i++) {
        struct http_reply r;
        http_get(p, path, &r);
        json_t *j = http_json(&r);
        long long age = json_integer_value(json_object_get(j, "age_s"));
        json_decref(j);
        http_reply_free(&r);
        if (age >= age_s)
            return;
        sleep_ms(20);
    }
    fail_msg("entry %s never reached age %d", key, age_s);
}

static void test_request_directives(void **state)
{
    (void)state;
    const char *q = "{\"prompt\":\"directives\",\"country\":\"US\"}";
    struct http_reply r;
    /* only-if-cached with nothing stored: 504 CACHE_MISS naming the key. */
    ask(&proxy, "/v1/monitor/grok", q, "only-if-cached", &r);
    assert_int_equal(r.status, 504);
    assert_string_equal(http_error_code(&r), "CACHE_MISS");
    assert_true(is_uuid(http_header(&r, "X-Request-ID")));
    json_t *j = http_json(&r);
    const char *missing = json_string_value(
        json_object_get(json_object_get(json_object_get(j, "error"), "details"), "key"));
    assert_non_null(missing);
    assert_int_equal(strlen(missing), 64);
    json_decref(j);
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), 0);

    /* no-store: goes upstream, stores nothing. */
    ask(&proxy, "/v1/monitor/grok", q, "no-store", &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "BYPASS");
    http_reply_free(&r);
    ask(&proxy, "/v1/monitor/grok", q, "only-if-cached", &r);
    assert_int_equal(r.status, 504);
    http_reply_free(&r);

    ask(&proxy, "/v1/monitor/grok", q, NULL, &r);
    assert_header(&r, "X-Cache", "MISS");
    char *key = strdup(http_header(&r, "X-Cache-Key"));
    char *first_id = strdup(http_header(&r, "X-Request-ID"));
    http_reply_free(&r);
    ask(&proxy, "/v1/monitor/grok", q, "only-if-cached", &r);
    assert_header(&r, "X-Cache", "HIT");
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), 2);

    /* no-cache: asks upstream again and stores the new answer. */
    ask(&proxy, "/v1/monitor/grok", q, "no-cache", &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "REFRESH");
    char *refreshed_id = strdup(http_header(&r, "X-Request-ID"));
    assert_string_not_equal(refreshed_id, first_id);
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), 3);
    ask(&proxy, "/v1/monitor/grok", q, NULL, &r);
    assert_header(&r, "X-Cache", "HIT");
    assert_string_equal(http_header(&r, "X-Request-ID"), refreshed_id);
    http_reply_free(&r);

    /* max-age: an entry older than the client accepts is not served. */
    wait_age(&proxy, key, 1);
    ask(&proxy, "/v1/monitor/grok", q, "max-age=3600", &r);
    assert_header(&r, "X-Cache", "HIT");
    http_reply_free(&r);
    ask(&proxy, "/v1/monitor/grok", q, "max-age=0", &r);
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), 4);
    free(key);
    free(first_id);
    free(refreshed_id);
}

static void test_expiry_max_stale_and_stale_if_error(void **state)
{
    (void)state;
    struct proc shortlived;
    const char *args[] = {"--cache-ttl", "1s", NULL};
    assert_int_equal(proc_start_proxy(&shortlived, fake.url, args, proxy_env), 0);
    const char *q = "{\"prompt\":\"short lived\",\"country\":\"US\"}";
    struct http_reply r;
    ask(&shortlived, "/v1/monitor/aimode", q, NULL, &r);
    assert_header(&r, "X-Cache", "MISS");
    char *key = strdup(http_header(&r, "X-Cache-Key"));
    char *billed = strdup(http_header(&r, "X-Request-ID"));
    http_reply_free(&r);
    wait_age(&shortlived, key, 2); /* expired: ttl 1 s */

    /* max-stale accepts it without asking upstream. */
    ask(&shortlived, "/v1/monitor/aimode", q, "max-stale=3600", &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "STALE");
    assert_non_null(strstr(http_header(&r, "Cache-Status"), "ttl=-"));
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), 1);

    /* The upstream fails (503, then resets): the expired answer is served. */
    fake_configure(&fake, "{\"fail_503\":1.0}");
    ask(&shortlived, "/v1/monitor/aimode", q, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "STALE");
    assert_non_null(strstr(http_header(&r, "Cache-Status"), "stale-if-error"));
    assert_non_null(strstr(http_header(&r, "Cache-Status"), "fwd-status=503"));
    assert_string_equal(http_header(&r, "X-Request-ID"), billed);
    http_reply_free(&r);
    fake_configure(&fake, "{\"fail_503\":0,\"reset\":1.0}");
    ask(&shortlived, "/v1/monitor/aimode", q, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "STALE");
    http_reply_free(&r);
    /* A question never answered before has nothing to fall back on. */
    ask(&shortlived, "/v1/monitor/aimode", "{\"prompt\":\"never seen\",\"country\":\"US\"}", NULL,
        &r);
    assert_int_equal(r.status, 502);
    assert_string_equal(http_error_code(&r), "UPSTREAM_UNAVAILABLE");
    http_reply_free(&r);
    fake_configure(&fake, "{\"reset\":0}");

    /* Back to normal: expired means a new upstream call. */
    ask(&shortlived, "/v1/monitor/aimode", q, NULL, &r);
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    proc_stop(&shortlived);

    /* stale_if_error = 0: the upstream's failure is what the client gets. */
    struct proc strict;
    const char *strict_args[] = {"--cache-ttl", "1s", "--stale-if-error", "0", NULL};
    assert_int_equal(proc_start_proxy(&strict, fake.url, strict_args, proxy_env), 0);
    ask(&strict, "/v1/monitor/aimode", "{\"prompt\":\"strict\",\"country\":\"US\"}", NULL, &r);
    char *strict_key = strdup(http_header(&r, "X-Cache-Key"));
    http_reply_free(&r);
    wait_age(&strict, strict_key, 2);
    fake_configure(&fake, "{\"fail_503\":1.0}");
    ask(&strict, "/v1/monitor/aimode", "{\"prompt\":\"strict\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 503);
    http_reply_free(&r);
    fake_configure(&fake, "{\"fail_503\":0}");
    proc_stop(&strict);
    free(strict_key);
    free(key);
    free(billed);
}

static void test_entries_survive_restart_and_kill9(void **state)
{
    (void)state;
    char dir[] = "/tmp/cloro-it-cachedir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cache_dir[96];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", dir);
    const char *args[] = {"--cache-dir", cache_dir, NULL};

    struct proc first;
    assert_int_equal(proc_start_proxy(&first, fake.url, args, proxy_env), 0);
    const char *q = "{\"query\":\"kept answers\",\"country\":\"US\"}";
    struct http_reply r;
    ask(&first, "/v1/monitor/google", q, NULL, &r);
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    proc_stop(&first); /* graceful: the writer commits before exit */

    struct proc second;
    assert_int_equal(proc_start_proxy(&second, fake.url, args, proxy_env), 0);
    ask(&second, "/v1/monitor/google", q, NULL, &r);
    assert_header(&r, "X-Cache", "HIT");
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), 1);

    /* A store loop, then kill -9 in the middle of it. */
    for (int i = 0; i < 40; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"query\":\"loop %d\",\"country\":\"US\"}", i);
        ask(&second, "/v1/monitor/google", body, NULL, &r);
        assert_int_equal(r.status, 200);
        http_reply_free(&r);
    }
    kill(second.pid, SIGKILL);
    assert_true(proc_wait_exit(&second, 5000));
    proc_stop(&second);

    struct proc third;
    assert_int_equal(proc_start_proxy(&third, fake.url, args, proxy_env), 0);
    ask(&third, "/v1/monitor/google", q, NULL, &r); /* committed long before the kill */
    assert_header(&r, "X-Cache", "HIT");
    http_reply_free(&r);
    http_get(&third, "/_proxy/cache/stats", &r);
    json_t *stats = http_json(&r);
    long long entries = json_integer_value(json_object_get(stats, "entries"));
    json_decref(stats);
    http_reply_free(&r);
    assert_true(entries >= 1 && entries <= 41);
    /* Whatever made it to disk reads back whole: every entry is a hit. */
    int hits = 0;
    for (int i = 0; i < 40; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"query\":\"loop %d\",\"country\":\"US\"}", i);
        ask(&third, "/v1/monitor/google", body, "only-if-cached", &r);
        assert_true(r.status == 200 || r.status == 504);
        hits += r.status == 200;
        http_reply_free(&r);
    }
    assert_int_equal(hits + 1, entries);
    proc_stop(&third);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_eviction_bounds_the_store(void **state)
{
    (void)state;
    struct proc small;
    const char *args[] = {"--max-cache-bytes", "1MiB", NULL};
    assert_int_equal(proc_start_proxy(&small, fake.url, args, proxy_env), 0);
    struct http_reply r;
    char body[160];
    /* ~3 KB answers: 700 of them are about twice the bound. */
    for (int i = 0; i < 700; i++) {
        snprintf(body, sizeof body,
                 "{\"query\":\"evict %d\",\"country\":\"US\",\"pages\":3,\"include\":{\"html\":"
                 "true}}",
                 i);
        ask(&small, "/v1/monitor/google", body, NULL, &r);
        assert_int_equal(r.status, 200);
        http_reply_free(&r);
    }
    /* The writer catches up, then the store is within its bound. */
    long long bytes = 0, evictions = 0, committed = 0;
    for (int i = 0; i < 500 && committed < 700; i++) {
        http_get(&small, "/_proxy/cache/stats", &r);
        json_t *s = http_json(&r);
        bytes = json_integer_value(json_object_get(s, "bytes"));
        evictions = json_integer_value(json_object_get(s, "evictions"));
        committed = json_integer_value(json_object_get(json_object_get(s, "writer"), "committed"));
        json_decref(s);
        http_reply_free(&r);
        sleep_ms(10);
    }
    assert_true(committed >= 700);
    assert_true(evictions > 0);
    assert_true(bytes <= 1024 * 1024);
    /* The oldest went first; the newest is still there. */
    ask(&small, "/v1/monitor/google",
        "{\"query\":\"evict 0\",\"country\":\"US\",\"pages\":3,\"include\":{\"html\":true}}",
        "only-if-cached", &r);
    assert_int_equal(r.status, 504);
    http_reply_free(&r);
    ask(&small, "/v1/monitor/google",
        "{\"query\":\"evict 699\",\"country\":\"US\",\"pages\":3,\"include\":{\"html\":true}}",
        "only-if-cached", &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    proc_stop(&small);
}

/* A client that gives up after 200 ms on a call the upstream answers after
 * 800 ms. Returns the curl result (a timeout). */
static int give_up_early(const struct proc *p, const char *body)
{
    char *url = proc_url(p, "/v1/monitor/gemini");
    CURL *easy = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 200L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    int rc = (int)curl_easy_perform(easy);
    curl_slist_free_all(h);
    curl_easy_cleanup(easy);
    free(url);
    return rc;
}

static void test_abandoned_calls_are_paid_for_and_kept(void **state)
{
    (void)state;
    const char *q = "{\"prompt\":\"left early [fake:latency=800]\",\"country\":\"US\"}";
    assert_int_equal(give_up_early(&proxy, q), CURLE_OPERATION_TIMEDOUT);
    /* The call runs to its end upstream and its answer is kept. */
    assert_true(fake_wait_stat(&fake, "status.200", 1, 10000));
    assert_int_equal(fake_stat(&fake, "canceled"), 0);
    struct http_reply r;
    for (int i = 0; i < 200; i++) { /* until the writer has it, or the flight ended */
        ask(&proxy, "/v1/monitor/gemini", q, "only-if-cached", &r);
        if (r.status == 200)
            break;
        http_reply_free(&r);
        sleep_ms(10);
    }
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "HIT");
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), 1);

    /* finish_abandoned_calls = false: the call is cancelled (the fake sees
     * its client, the proxy, leave) and nothing is stored. */
    struct proc thrifty;
    const char *args[] = {"--finish-abandoned-calls", "false", NULL};
    assert_int_equal(proc_start_proxy(&thrifty, fake.url, args, proxy_env), 0);
    const char *q2 = "{\"prompt\":\"left early, cancel [fake:latency=3000]\",\"country\":\"US\"}";
    assert_int_equal(give_up_early(&thrifty, q2), CURLE_OPERATION_TIMEDOUT);
    assert_true(fake_wait_stat(&fake, "canceled", 1, 5000));
    http_get(&thrifty, "/_proxy/stats", &r);
    json_t *stats = http_json(&r);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(stats, "limits"), "abandoned_in_flight")),
                     1);
    json_decref(stats);
    http_reply_free(&r);
    proc_stop(&thrifty);
}

static void test_admin_and_cli_share_the_store(void **state)
{
    (void)state;
    struct http_reply r;
    ask(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"operate me\",\"country\":\"US\"}", NULL, &r);
    char *key = strdup(http_header(&r, "X-Cache-Key"));
    char *body = strndup(r.body, r.body_len);
    http_reply_free(&r);
    ask(&proxy, "/v1/monitor/copilot", "{\"prompt\":\"operate me\",\"country\":\"US\"}", NULL, &r);
    http_reply_free(&r);
    char cache_dir[400];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", proxy.dir);

    /* The entry as the admin endpoint sees it. */
    char path[160];
    snprintf(path, sizeof path, "/_proxy/cache/entries/%s", key);
    for (int i = 0; i < 200; i++) { /* until the writer committed it */
        http_get(&proxy, path, &r);
        long status = r.status;
        if (status == 200)
            break;
        http_reply_free(&r);
        sleep_ms(10);
    }
    assert_int_equal(r.status, 200);
    json_t *view = http_json(&r);
    assert_string_equal(json_string_value(json_object_get(view, "provider")), "chatgpt");
    assert_int_equal(json_integer_value(json_object_get(view, "credits_charged")), 7);
    json_decref(view);
    http_reply_free(&r);

    /* The CLI, against the store of the running server. */
    struct cli_result out;
    cli_run(&out, (const char *[]){"cache", "stats", "--cache-dir", cache_dir, NULL});
    assert_int_equal(out.status, 0);
    assert_non_null(strstr(out.output, "entries:"));
    free(out.output);
    cli_run(&out, (const char *[]){"cache", "ls", "--cache-dir", cache_dir, NULL});
    assert_int_equal(out.status, 0);
    assert_non_null(strstr(out.output, key));
    free(out.output);
    cli_run(&out, (const char *[]){"cache", "show", key, "--cache-dir", cache_dir, NULL});
    assert_int_equal(out.status, 0);
    assert_non_null(strstr(out.output, body));
    assert_null(strstr(out.output, KEY)); /* never the API key */
    free(out.output);
    cli_run(&out, (const char *[]){"cache", "purge", "--cache-dir", cache_dir, NULL});
    assert_int_equal(out.status, 2); /* says what to purge */
    free(out.output);
    cli_run(&out, (const char *[]){"cache", "purge", "--provider", "chatgpt", "--cache-dir",
                                   cache_dir, NULL});
    assert_int_equal(out.status, 0);
    assert_non_null(strstr(out.output, "purged"));
    free(out.output);

    /* The server sees the purge: the next chatgpt question goes upstream. */
    long long before = upstream_calls();
    ask(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"operate me\",\"country\":\"US\"}", NULL, &r);
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    assert_int_equal(upstream_calls(), before + 1);

    /* DELETE one entry over HTTP, then purge all. */
    char *url = proc_url(&proxy, path);
    for (int i = 0; i < 200; i++) {
        http_call("DELETE", url, NULL, NULL, &r);
        if (r.status == 200)
            break;
        http_reply_free(&r);
        sleep_ms(10);
    }
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    free(url);
    http_post(&proxy, "/_proxy/cache/purge", "{\"everything\":1}", NULL, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(http_error_code(&r), "VALIDATION_ERROR");
    http_reply_free(&r);
    http_post(&proxy, "/_proxy/cache/purge", "{\"all\":true}", NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    http_get(&proxy, "/_proxy/cache/stats", &r);
    json_t *stats = http_json(&r);
    assert_non_null(json_object_get(stats, "hit_ratio"));
    assert_true(json_integer_value(json_object_get(stats, "credits_saved")) > 0);
    json_decref(stats);
    http_reply_free(&r);
    free(key);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_identical_questions_are_answered_once, reset_fake),
        cmocka_unit_test_setup(test_different_questions_stay_distinct, reset_fake),
        cmocka_unit_test_setup(test_errors_are_never_stored, reset_fake),
        cmocka_unit_test_setup(test_identical_calls_in_flight_share_one, reset_fake),
        cmocka_unit_test_setup(test_request_directives, reset_fake),
        cmocka_unit_test_setup(test_expiry_max_stale_and_stale_if_error, reset_fake),
        cmocka_unit_test_setup(test_entries_survive_restart_and_kill9, reset_fake),
        cmocka_unit_test_setup(test_eviction_bounds_the_store, reset_fake),
        cmocka_unit_test_setup(test_abandoned_calls_are_paid_for_and_kept, reset_fake),
        cmocka_unit_test_setup(test_admin_and_cli_share_the_store, reset_fake),
    };
    return cmocka_run_group_tests_name("integration_cache", tests, group_setup, group_teardown);
}
