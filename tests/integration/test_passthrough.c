/* test_passthrough.c: cloro-proxy in front of the fake cloro upstream, both
 * real processes on loopback. Every provider passes through byte for byte,
 * headers are mirrored, the shared key replaces the client's, request ids
 * are traced, and the proxy's own errors speak cloro's envelope. Assertions
 * are on what the client got and on what the fake saw (/_fake/stats). */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARED_KEY "sk_live_teamshared01"
#define MEMBER_KEY "sk_live_memberown02"

struct fixture {
    struct proc fake;
    struct proc proxy; /* holds SHARED_KEY */
};

static struct fixture *fx;

/* These tests are about pass-through: the cache (test_cache.c) is off, so
 * every request must reach the fake. */
static int start_uncached(struct proc *p, const char *upstream, const char *const extra[],
                          const char *const env[])
{
    const char *args[16] = {"--cache", "false"};
    size_t n = 2;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return proc_start_proxy(p, upstream, args, env);
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fx = calloc(1, sizeof *fx);
    const char *fake_args[] = {"--api-key", SHARED_KEY, "--api-key", MEMBER_KEY, NULL};
    if (proc_start_fake(&fx->fake, fake_args) != 0)
        return -1;
    const char *env[] = {"CLORO_API_KEY=" SHARED_KEY, NULL};
    if (start_uncached(&fx->proxy, fx->fake.url, NULL, env) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&fx->proxy);
    proc_stop(&fx->fake);
    free(fx);
    curl_global_cleanup();
    return 0;
}

static int reset_fake(void **state)
{
    (void)state;
    fake_reset(&fx->fake);
    fake_configure(&fx->fake, "{\"concurrency_headers\":\"concurrency\",\"retry_after_s\":0}");
    return 0;
}

/* The proxy's own error: envelope, fresh UUID X-Request-ID, ISO timestamp. */
static void assert_proxy_error(const struct http_reply *r, long status, const char *code)
{
    assert_int_equal(r->status, status);
    json_t *j = http_json(r);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "success")));
    json_t *err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_non_null(json_string_value(json_object_get(err, "message")));
    const char *ts = json_string_value(json_object_get(err, "timestamp"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    json_decref(j);
    assert_true(is_uuid(http_header(r, "X-Request-ID")));
    assert_string_equal(http_header(r, "Content-Type"), "application/json");
}

struct provider_call {
    const char *path;
    const char *body;
};

static const struct provider_call providers[] = {
    {"/v1/monitor/chatgpt",
     "{\"prompt\":\"best running shoes\",\"country\":\"US\",\"include\":{\"markdown\":true}}"},
    {"/v1/monitor/gemini", "{\"prompt\":\"best running shoes\",\"country\":\"DE\"}"},
    {"/v1/monitor/grok", "{\"prompt\":\"best running shoes\",\"country\":\"US\"}"},
    {"/v1/monitor/copilot", "{\"prompt\":\"best running shoes\",\"country\":\"GB\"}"},
    {"/v1/monitor/perplexity", "{\"prompt\":\"best running shoes\",\"country\":\"US\"}"},
    {"/v1/monitor/aimode", "{\"prompt\":\"best running shoes\",\"country\":\"US\"}"},
    {"/v1/monitor/google", "{\"query\":\"running shoes\",\"country\":\"US\",\"pages\":2}"},
    {"/v1/monitor/google/news", "{\"query\":\"running shoes\",\"gl\":\"us\"}"},
    {"/v1/monitor/google/goto", "{\"url\":\"https://www.google.com/url?q=https://example.com/a\"}"},
};

static void test_every_provider_passes_through(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof providers / sizeof providers[0]; i++) {
        struct http_reply via_proxy, direct;
        http_post(&fx->proxy, providers[i].path, providers[i].body, NULL, &via_proxy);
        const char *auth[] = {"Content-Type: application/json", "Authorization: Bearer " SHARED_KEY,
                              NULL};
        http_post(&fx->fake, providers[i].path, providers[i].body, auth, &direct);
        if (via_proxy.status != 200)
            fprintf(stderr, "%s -> %ld %s\n", providers[i].path, via_proxy.status, via_proxy.body);
        assert_int_equal(via_proxy.status, 200);
        assert_int_equal(direct.status, 200);
        /* The fake answers deterministically: the proxy must relay it unchanged. */
        assert_int_equal(via_proxy.body_len, direct.body_len);
        assert_memory_equal(via_proxy.body, direct.body, direct.body_len);
        assert_string_equal(http_header(&via_proxy, "Content-Type"),
                            http_header(&direct, "Content-Type"));
        char key[128];
        snprintf(key, sizeof key, "requests.%s", providers[i].path);
        assert_int_equal(fake_stat(&fx->fake, key), 2); /* one via the proxy, one direct */
        http_reply_free(&via_proxy);
        http_reply_free(&direct);
    }
}

static void test_headers_are_mirrored(void **state)
{
    (void)state;
    struct http_reply r;
    http_post(&fx->proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"mirror me\",\"country\":\"US\"}",
              NULL, &r);
    assert_int_equal(r.status, 200);
    const char *mirrored[] = {"X-Request-ID",
                              "X-Latency-Ms",
                              "X-RateLimit-Limit",
                              "X-RateLimit-Remaining",
                              "X-Concurrency-Limit",
                              "X-Concurrency-Current",
                              "X-Concurrency-Remaining",
                              "X-Credits-Charged",
                              "X-Credits-Remaining",
                              "Content-Type"};
    for (size_t i = 0; i < sizeof mirrored / sizeof mirrored[0]; i++) {
        if (http_header(&r, mirrored[i]) == NULL)
            fprintf(stderr, "missing %s\n", mirrored[i]);
        assert_non_null(http_header(&r, mirrored[i]));
    }
    assert_true(is_uuid(http_header(&r, "X-Proxy-Request-ID")));
    assert_string_not_equal(http_header(&r, "X-Proxy-Request-ID"), http_header(&r, "X-Request-ID"));
    assert_string_equal(http_header(&r, "X-Credits-Charged"), "7"); /* chatgpt 5 + sync 2 */
    http_reply_free(&r);

    /* The older X-Concurrent-* spelling (cloro-api.md section 2) passes too. */
    fake_configure(&fx->fake, "{\"concurrency_headers\":\"both\"}");
    http_post(&fx->proxy, "/v1/monitor/gemini", "{\"prompt\":\"mirror me\",\"country\":\"US\"}",
              NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(http_header(&r, "X-Concurrent-Limit"));
    assert_non_null(http_header(&r, "X-Concurrent-Remaining"));
    assert_non_null(http_header(&r, "X-Concurrency-Limit"));
    http_reply_free(&r);

    /* 503 carries Retry-After, relayed with the upstream's own body. */
    http_post(&fx->proxy, "/v1/monitor/chatgpt",
              "{\"prompt\":\"busy [fake:503]\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(http_header(&r, "Retry-After"));
    assert_string_equal(http_error_code(&r), "SERVICE_UNAVAILABLE");
    assert_non_null(http_header(&r, "X-Proxy-Request-ID"));
    http_reply_free(&r);
}

static long long auth_count(const char *authorization)
{
    char hex[65], path[96];
    sha256_hex(authorization, hex);
    snprintf(path, sizeof path, "auth.%s", hex);
    return fake_stat(&fx->fake, path);
}

static void test_shared_key_replaces_client_key(void **state)
{
    (void)state;
    struct http_reply r;
    const char *member[] = {"Content-Type: application/json", "Authorization: Bearer " MEMBER_KEY,
                            NULL};
    http_post(&fx->proxy, "/v1/monitor/perplexity", "{\"prompt\":\"who pays\",\"country\":\"US\"}",
              member, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    const char *bogus[] = {"Content-Type: application/json", "Authorization: Bearer not-a-key",
                           NULL};
    http_post(&fx->proxy, "/v1/monitor/perplexity", "{\"prompt\":\"who pays\",\"country\":\"US\"}",
              bogus, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    http_post(&fx->proxy, "/v1/monitor/perplexity", "{\"prompt\":\"who pays\",\"country\":\"US\"}",
              NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);

    assert_int_equal(auth_count("Bearer " SHARED_KEY), 3);
    assert_int_equal(auth_count("Bearer " MEMBER_KEY), 0);
    assert_int_equal(auth_count("Bearer not-a-key"), 0);
    assert_int_equal(fake_stat(&fx->fake, "auth_missing"), 0);
}

static void test_client_key_forwarded_without_shared_key(void **state)
{
    (void)state;
    struct proc open_proxy;
    assert_int_equal(start_uncached(&open_proxy, fx->fake.url, NULL, NULL), 0);
    struct http_reply r;
    const char *member[] = {"Content-Type: application/json", "Authorization: Bearer " MEMBER_KEY,
                            NULL};
    http_post(&open_proxy, "/v1/monitor/copilot", "{\"prompt\":\"mine\",\"country\":\"US\"}",
              member, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    assert_int_equal(auth_count("Bearer " MEMBER_KEY), 1);

    /* The upstream's own 401s come back unchanged. */
    const char *unknown[] = {"Content-Type: application/json",
                             "Authorization: Bearer sk_live_revoked99", NULL};
    http_post(&open_proxy, "/v1/monitor/copilot", "{\"prompt\":\"mine\",\"country\":\"US\"}",
              unknown, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(http_error_code(&r), "INVALID_OR_EXPIRED_API_KEY");
    http_reply_free(&r);
    http_post(&open_proxy, "/v1/monitor/copilot", "{\"prompt\":\"mine\",\"country\":\"US\"}", NULL,
              &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(http_error_code(&r), "MISSING_API_KEY");
    http_reply_free(&r);
    proc_stop(&open_proxy);
}

static void test_request_ids_are_traced(void **state)
{
    (void)state;
    struct http_reply r;
    const char *headers[] = {"Content-Type: application/json", "X-Request-ID: client-trace-4711",
                             NULL};
    http_post(&fx->proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"trace me\",\"country\":\"US\"}",
              headers, &r);
    assert_int_equal(r.status, 200);
    json_t *stats = fake_stats(&fx->fake);
    const char *seen =
        json_string_value(json_object_get(json_object_get(stats, "last"), "x_request_id"));
    assert_non_null(seen);
    assert_string_equal(seen, "client-trace-4711");
    json_decref(stats);

    const char *upstream_id = http_header(&r, "X-Request-ID");
    const char *proxy_id = http_header(&r, "X-Proxy-Request-ID");
    assert_true(is_uuid(upstream_id));
    assert_true(is_uuid(proxy_id));
    /* The access log ties all three together on one line. */
    char *log = proc_log(&fx->proxy);
    char needle[128];
    snprintf(needle, sizeof needle, "rid=%s ", proxy_id);
    const char *line = strstr(log, needle);
    assert_non_null(line);
    const char *eol = strchr(line, '\n');
    char *access = strndup(line, (size_t)(eol - line));
    snprintf(needle, sizeof needle, "upstream_rid=%s", upstream_id);
    assert_non_null(strstr(access, needle));
    assert_non_null(strstr(access, "client_rid=client-trace-4711"));
    assert_non_null(strstr(access, "method=POST path=/v1/monitor/chatgpt status=200"));
    assert_non_null(strstr(access, "latency_ms="));
    assert_non_null(strstr(access, "cache="));
    free(access);
    free(log);
    http_reply_free(&r);
}

static void test_method_query_and_body_are_forwarded(void **state)
{
    (void)state;
    struct http_reply r;
    char *url = proc_url(&fx->proxy, "/v1/countries?model=chatgpt");
    http_call("GET", url, NULL, NULL, &r);
    free(url);
    assert_int_equal(r.status, 200);
    json_t *countries = http_json(&r);
    assert_true(json_is_array(countries));
    json_decref(countries);
    http_reply_free(&r);
    json_t *stats = fake_stats(&fx->fake);
    json_t *last = json_object_get(stats, "last");
    assert_string_equal(json_string_value(json_object_get(last, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(last, "path")), "/v1/countries");
    assert_string_equal(json_string_value(json_object_get(last, "query")), "model=chatgpt");
    json_decref(stats);

    url = proc_url(&fx->proxy, "/v1/async/queue");
    http_call("DELETE", url, NULL, NULL, &r);
    free(url);
    http_reply_free(&r);
    stats = fake_stats(&fx->fake);
    last = json_object_get(stats, "last");
    assert_string_equal(json_string_value(json_object_get(last, "method")), "DELETE");
    json_decref(stats);

    const char *body = "{ \"prompt\" : \"exact bytes\",\n  \"country\" : \"US\" }";
    http_post(&fx->proxy, "/v1/monitor/grok", body, NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    stats = fake_stats(&fx->fake);
    last = json_object_get(stats, "last");
    assert_int_equal(json_integer_value(json_object_get(last, "body_bytes")), strlen(body));
    assert_string_equal(json_string_value(json_object_get(last, "content_type")),
                        "application/json");
    json_decref(stats);
}

static void test_upstream_errors_are_relayed_unchanged(void **state)
{
    (void)state;
    struct http_reply r;
    http_post(&fx->proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 400);
    json_t *j = http_json(&r);
    json_t *details = json_object_get(json_object_get(j, "error"), "details");
    assert_true(json_is_array(details));
    assert_string_equal(http_error_code(&r), "VALIDATION_ERROR");
    json_decref(j);
    http_reply_free(&r);

    http_post(&fx->proxy, "/v1/monitor/chatgpt",
              "{\"prompt\":\"boom [fake:500]\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 500);
    assert_string_equal(http_error_code(&r), "INTERNAL_SERVER_ERROR");
    /* Relayed, not made by the proxy: the id is the upstream's, not the proxy's. */
    assert_string_not_equal(http_header(&r, "X-Request-ID"), http_header(&r, "X-Proxy-Request-ID"));
    http_reply_free(&r);
}

static void test_paths_outside_v1_are_not_found(void **state)
{
    (void)state;
    const char *paths[] = {"/", "/v2/monitor/chatgpt", "/monitor/chatgpt", "/_proxy/nope",
                           "/v1/../_fake/stats"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct http_reply r;
        http_post(&fx->proxy, paths[i], "{}", NULL, &r);
        assert_proxy_error(&r, 404, "NOT_FOUND");
        assert_string_equal(http_header(&r, "X-Request-ID"), http_header(&r, "X-Proxy-Request-ID"));
        http_reply_free(&r);
    }
    assert_int_equal(fake_stat(&fx->fake, "requests_total"), 0);
}

static void test_bad_priority_is_400(void **state)
{
    (void)state;
    const char *bad[] = {"X-Priority: 11", "X-Priority: 0", "X-Priority: high", "X-Priority: 5x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *headers[] = {"Content-Type: application/json", bad[i], NULL};
        struct http_reply r;
        http_post(&fx->proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"p\",\"country\":\"US\"}",
                  headers, &r);
        assert_proxy_error(&r, 400, "VALIDATION_ERROR");
        http_reply_free(&r);
    }
    assert_int_equal(fake_stat(&fx->fake, "requests_total"), 0);
    const char *good[] = {"Content-Type: application/json", "X-Priority: 10", NULL};
    struct http_reply r;
    http_post(&fx->proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"p\",\"country\":\"US\"}", good, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
}

static void test_healthz(void **state)
{
    (void)state;
    struct http_reply r;
    char *url = proc_url(&fx->proxy, "/_proxy/healthz");
    http_call("GET", url, NULL, NULL, &r);
    free(url);
    assert_int_equal(r.status, 200);
    json_t *j = http_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fx->fake, "requests_total"), 0);
}

static void test_body_over_limit_is_413(void **state)
{
    (void)state;
    struct proc small;
    const char *args[] = {"--max-body-bytes", "1KiB", NULL};
    const char *env[] = {"CLORO_API_KEY=" SHARED_KEY, NULL};
    assert_int_equal(start_uncached(&small, fx->fake.url, args, env), 0);
    char body[1500];
    memset(body, 'a', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    struct http_reply r;
    http_post(&small, "/v1/monitor/chatgpt", body, NULL, &r);
    assert_proxy_error(&r, 413, "PAYLOAD_TOO_LARGE");
    json_t *j = http_json(&r);
    json_t *details = json_object_get(json_object_get(j, "error"), "details");
    assert_int_equal(json_integer_value(json_object_get(details, "limit")), 1024);
    json_decref(j);
    http_reply_free(&r);
    /* Exactly at the limit still goes through (and the fake judges it). */
    char at_limit[1025];
    const int frame = (int)strlen("{\"prompt\":\"\",\"country\":\"US\"}");
    int n = snprintf(at_limit, sizeof at_limit, "{\"prompt\":\"%0*d\",\"country\":\"US\"}",
                     1024 - frame, 0);
    assert_int_equal(n, 1024);
    http_post(&small, "/v1/monitor/chatgpt", at_limit, NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fx->fake, "requests_total"), 1);
    proc_stop(&small);
}

static void test_upstream_unreachable_is_502(void **state)
{
    (void)state;
    struct proc lonely;
    /* Port 1 on loopback: nothing listens there, the connect is refused. */
    assert_int_equal(start_uncached(&lonely, "http://127.0.0.1:1", NULL, NULL), 0);
    struct http_reply r;
    http_post(&lonely, "/v1/monitor/chatgpt", "{\"prompt\":\"x\",\"country\":\"US\"}", NULL, &r);
    assert_proxy_error(&r, 502, "UPSTREAM_UNAVAILABLE");
    http_reply_free(&r);
    proc_stop(&lonely);

    /* A connection reset by the upstream is the same failure. */
    http_post(&fx->proxy, "/v1/monitor/chatgpt",
              "{\"prompt\":\"x [fake:reset]\",\"country\":\"US\"}", NULL, &r);
    assert_proxy_error(&r, 502, "UPSTREAM_UNAVAILABLE");
    http_reply_free(&r);
    http_post(&fx->proxy, "/v1/monitor/chatgpt",
              "{\"prompt\":\"x [fake:reset-mid-body]\",\"country\":\"US\"}", NULL, &r);
    assert_proxy_error(&r, 502, "UPSTREAM_UNAVAILABLE");
    http_reply_free(&r);
}

static void test_upstream_timeout_is_504(void **state)
{
    (void)state;
    struct proc impatient;
    const char *args[] = {"--upstream-timeout", "300ms", NULL};
    const char *env[] = {"CLORO_API_KEY=" SHARED_KEY, NULL};
    assert_int_equal(start_uncached(&impatient, fx->fake.url, args, env), 0);
    struct http_reply r;
    http_post(&impatient, "/v1/monitor/chatgpt",
              "{\"prompt\":\"slow [fake:latency=3000]\",\"country\":\"US\"}", NULL, &r);
    assert_proxy_error(&r, 504, "UPSTREAM_TIMEOUT");
    http_reply_free(&r);
    proc_stop(&impatient);
}

struct pending_call {
    struct proc *proxy;
    struct http_reply reply;
};

static void *call_in_background(void *arg)
{
    struct pending_call *c = arg;
    http_post(c->proxy, "/v1/monitor/chatgpt",
              "{\"prompt\":\"finish me [fake:latency=1500]\",\"country\":\"US\"}", NULL, &c->reply);
    return NULL;
}

static void test_graceful_shutdown_loses_nothing(void **state)
{
    (void)state;
    struct proc leaving;
    const char *env[] = {"CLORO_API_KEY=" SHARED_KEY, NULL};
    assert_int_equal(start_uncached(&leaving, fx->fake.url, NULL, env), 0);
    struct pending_call calls[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        calls[i].proxy = &leaving;
        pthread_create(&threads[i], NULL, call_in_background, &calls[i]);
    }
    assert_true(fake_wait_stat(&fx->fake, "in_flight", 3, 10000));
    kill(leaving.pid, SIGTERM);

    /* The listener closes at once: a new client is refused... */
    bool refused = false;
    for (int i = 0; i < 200 && !refused; i++) {
        struct http_reply r;
        char *url = proc_url(&leaving, "/_proxy/healthz");
        refused =
            http_call("GET", url, NULL, NULL, &r) != 0 && r.curl_code == CURLE_COULDNT_CONNECT;
        free(url);
        http_reply_free(&r);
        if (!refused)
            usleep(5000);
    }
    assert_true(refused);
    /* ...while every request in flight still gets its paid answer. */
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(calls[i].reply.status, 200);
        json_t *j = http_json(&calls[i].reply);
        assert_true(json_is_true(json_object_get(j, "success")));
        json_decref(j);
        http_reply_free(&calls[i].reply);
    }
    assert_true(proc_wait_exit(&leaving, 10000));
    assert_int_equal(leaving.exit_status, 0);
    char *log = proc_log(&leaving);
    assert_non_null(strstr(log, "event=shutdown"));
    assert_non_null(strstr(log, "event=stopped"));
    free(log);
    proc_stop(&leaving);
}

static void test_upstream_connections_are_reused(void **state)
{
    (void)state;
    struct proc fresh;
    const char *env[] = {"CLORO_API_KEY=" SHARED_KEY, NULL};
    assert_int_equal(start_uncached(&fresh, fx->fake.url, NULL, env), 0);
    long long before = fake_stat(&fx->fake, "connections_total");
    for (int i = 0; i < 20; i++) {
        struct http_reply r;
        http_post(&fresh, "/v1/monitor/gemini", "{\"prompt\":\"again\",\"country\":\"US\"}", NULL,
                  &r);
        assert_int_equal(r.status, 200);
        http_reply_free(&r);
    }
    /* One connection from the proxy for all 20 calls, one for this stats read. */
    assert_int_equal(fake_stat(&fx->fake, "connections_total") - before, 2);
    assert_int_equal(fake_stat(&fx->fake, "requests./v1/monitor/gemini"), 20);
    proc_stop(&fresh);
}

static void test_client_leaving_does_not_cancel_the_paid_call(void **state)
{
    (void)state;
    /* The client gives up after 200 ms; the upstream answers after 800 ms. */
    char *url = proc_url(&fx->proxy, "/v1/monitor/chatgpt");
    CURL *easy = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS,
                     "{\"prompt\":\"impatient [fake:latency=800]\",\"country\":\"US\"}");
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 200L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    assert_int_equal(curl_easy_perform(easy), CURLE_OPERATION_TIMEDOUT);
    curl_slist_free_all(h);
    curl_easy_cleanup(easy);
    free(url);
    /* The upstream call runs to completion (it is paid for either way)... */
    assert_true(fake_wait_stat(&fx->fake, "status.200", 1, 10000));
    assert_int_equal(fake_stat(&fx->fake, "canceled"), 0);
    /* ...and the proxy keeps serving. */
    struct http_reply r;
    http_post(&fx->proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"next\",\"country\":\"US\"}", NULL,
              &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
}

static void test_key_from_file_and_environment_precedence(void **state)
{
    (void)state;
    char dir[] = "/tmp/cloro-it-key-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/key", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("  " MEMBER_KEY "\n", f); /* surrounding blanks are trimmed */
    fclose(f);

    struct proc from_file;
    const char *args[] = {"--api-key-file", path, NULL};
    assert_int_equal(start_uncached(&from_file, fx->fake.url, args, NULL), 0);
    struct http_reply r;
    http_post(&from_file, "/v1/monitor/grok", "{\"prompt\":\"k\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    proc_stop(&from_file);
    assert_int_equal(auth_count("Bearer " MEMBER_KEY), 1);

    /* CLORO_API_KEY wins over api_key_file. */
    struct proc both;
    const char *env[] = {"CLORO_API_KEY=" SHARED_KEY, NULL};
    assert_int_equal(start_uncached(&both, fx->fake.url, args, env), 0);
    http_post(&both, "/v1/monitor/grok", "{\"prompt\":\"k\",\"country\":\"US\"}", NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    proc_stop(&both);
    assert_int_equal(auth_count("Bearer " SHARED_KEY), 1);
    assert_int_equal(auth_count("Bearer " MEMBER_KEY), 1);
    unlink(path);
    rmdir(dir);
}

static void test_no_secret_in_logs(void **state)
{
    (void)state;
    char *log = proc_log(&fx->proxy);
    assert_non_null(strstr(log, "event=access")); /* the log is the real one */
    assert_null(strstr(log, SHARED_KEY));
    assert_null(strstr(log, MEMBER_KEY));
    assert_null(strstr(log, "not-a-key"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_every_provider_passes_through, reset_fake),
        cmocka_unit_test_setup(test_headers_are_mirrored, reset_fake),
        cmocka_unit_test_setup(test_shared_key_replaces_client_key, reset_fake),
        cmocka_unit_test_setup(test_client_key_forwarded_without_shared_key, reset_fake),
        cmocka_unit_test_setup(test_request_ids_are_traced, reset_fake),
        cmocka_unit_test_setup(test_method_query_and_body_are_forwarded, reset_fake),
        cmocka_unit_test_setup(test_upstream_errors_are_relayed_unchanged, reset_fake),
        cmocka_unit_test_setup(test_paths_outside_v1_are_not_found, reset_fake),
        cmocka_unit_test_setup(test_healthz, reset_fake),
        cmocka_unit_test_setup(test_bad_priority_is_400, reset_fake),
        cmocka_unit_test_setup(test_body_over_limit_is_413, reset_fake),
        cmocka_unit_test_setup(test_upstream_unreachable_is_502, reset_fake),
        cmocka_unit_test_setup(test_upstream_timeout_is_504, reset_fake),
        cmocka_unit_test_setup(test_graceful_shutdown_loses_nothing, reset_fake),
        cmocka_unit_test_setup(test_upstream_connections_are_reused, reset_fake),
        cmocka_unit_test_setup(test_client_leaving_does_not_cancel_the_paid_call, reset_fake),
        cmocka_unit_test_setup(test_key_from_file_and_environment_precedence, reset_fake),
        cmocka_unit_test(test_no_secret_in_logs),
    };
    return cmocka_run_group_tests_name("integration_passthrough", tests, group_setup,
                                       group_teardown);
}
