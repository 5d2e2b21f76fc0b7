/* test_limits.c: the proxy's client-side limits on the wire. Concurrency
 * slots cap what the upstream sees at once, token buckets pace each endpoint,
 * the queue is bounded in length and wait (429 in cloro's envelope past
 * either), X-Priority and per-client turns order it, upstream 429/503 are
 * retried, a client that leaves while queued costs nothing upstream, and a
 * lower limit advertised by the upstream is adopted. Every "at most" is
 * asserted on what the fake upstream counted (/_fake/stats), the proxy's side
 * on /_proxy/stats "limits". The cache is off so every request goes upstream;
 * prompts are distinct so nothing coalesces. */
#include "driver.h"
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY "sk_live_limitstest01"

static struct proc fake;
static struct proc proxy; /* each test starts its own, with its flags */
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *fake_args[] = {"--api-key",           KEY,   "--log-level", "warn",
                               "--concurrency-limit", "100", NULL};
    return proc_start_fake(&fake, fake_args);
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&fake);
    curl_global_cleanup();
    return 0;
}

/* Every test starts from a quiet fake with room to spare: only the proxy's
 * limits can hold anything back. */
static int reset_fake(void **state)
{
    (void)state;
    fake_configure(&fake, "{\"latency_ms\":0,\"jitter_ms\":0,\"concurrency_limit\":100,"
                          "\"rate_limit\":1000,\"fail_500\":0,\"fail_503\":0,\"reset\":0,"
                          "\"fail_429\":0,\"fail_429_code\":\"RATE_LIMIT_EXCEEDED\","
                          "\"retry_after_s\":2,\"concurrency_headers\":\"concurrency\"}");
    fake_reset(&fake);
    return 0;
}

/* A proxy with the cache off and the given flags (NULL-terminated). */
static void start_proxy(struct proc *p, const char *const extra[])
{
    const char *args[24] = {"--cache", "false"};
    size_t n = 2;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (proc_start_proxy(p, fake.url, args, proxy_env) != 0)
        fail_msg("the proxy did not start with these flags (see its log above)");
}

static struct driver drv; /* the current test's concurrent calls (driver.h) */

static char *prompt_body(const char *tag, int i)
{
    char *body = NULL;
    if (asprintf(&body, "{\"prompt\":\"%s %d\",\"country\":\"US\"}", tag, i) < 0)
        abort();
    return body;
}

static int add_prompt(struct driver *d, const struct proc *p, const char *path, const char *tag,
                      int i, int priority, const char *iface)
{
    char *body = prompt_body(tag, i);
    int idx = driver_add(d, p, path, body, priority, iface, 60000L);
    free(body);
    return idx;
}

static void assert_all_ok(const struct driver *d)
{
    for (int i = 0; i < d->n; i++) {
        const struct call *c = &d->calls[i];
        if (c->reply.status != 200)
            fail_msg("call %d (%s): status %ld, curl %d, body %s", i, c->body, c->reply.status,
                     c->curl_code, c->reply.body);
    }
}

/* Stops what the test started, also when an assertion cut it short. */
static int stop_proxy(void **state)
{
    (void)state;
    if (drv.multi != NULL)
        driver_free(&drv);
    if (proxy.pid > 0 || proxy.dir[0] != '\0') {
        if (getenv("KEEP_TEST_LOGS") != NULL)
            fprintf(stderr, "proxy log kept: %s\n", proxy.log_path);
        proc_stop(&proxy);
    }
    memset(&proxy, 0, sizeof proxy);
    return 0;
}

/* ---- /_proxy/stats "limits" --------------------------------------------- */

static json_t *proxy_limits(const struct proc *p) /* new reference, or NULL */
{
    struct http_reply r;
    http_get(p, "/_proxy/stats", &r);
    json_t *stats = http_json(&r);
    http_reply_free(&r);
    json_t *limits = json_incref(json_object_get(stats, "limits"));
    json_decref(stats);
    return limits;
}

/* limits.name (a dotted path such as "queue_wait_ms.p99"), or -1 when absent. */
static long long limit_stat(const struct proc *p, const char *name)
{
    json_t *limits = proxy_limits(p);
    json_t *node = limits;
    char *copy = strdup(name);
    char *save = NULL;
    for (char *seg = strtok_r(copy, ".", &save); seg != NULL && node != NULL;
         seg = strtok_r(NULL, ".", &save))
        node = json_object_get(node, seg);
    free(copy);
    long long v = -1;
    if (json_is_integer(node))
        v = (long long)json_integer_value(node);
    else if (json_is_real(node))
        v = (long long)json_real_value(node);
    json_decref(limits);
    return v;
}

static void print_limits(const struct proc *p)
{
    json_t *limits = proxy_limits(p);
    char *text = limits != NULL ? json_dumps(limits, JSON_COMPACT) : strdup("(no \"limits\")");
    fprintf(stderr, "proxy /_proxy/stats limits: %s\n", text);
    free(text);
    json_decref(limits);
}

static void assert_limit(const struct proc *p, const char *name, long long expected)
{
    long long v = limit_stat(p, name);
    if (v != expected) {
        print_limits(p);
        fail_msg("limits.%s: expected %lld, got %lld", name, expected, v);
    }
}

/* Polls (driving d, if any) until limits.name >= at_least; false on timeout. */
static bool wait_limit_at_least(const struct proc *p, struct driver *d, const char *name,
                                long long at_least, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    do {
        if (limit_stat(p, name) >= at_least)
            return true;
        if (d != NULL)
            driver_pump(d, 10);
        else
            sleep_ms(10);
    } while (now_ms() < deadline);
    return false;
}

/* Polls until limits.name == value (a gauge settling); false on timeout. */
static bool wait_limit_equal(const struct proc *p, const char *name, long long value,
                             int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    do {
        if (limit_stat(p, name) == value)
            return true;
        sleep_ms(10);
    } while (now_ms() < deadline);
    return false;
}

/* Drives d until the fake has at least n calls in flight (a blocker holds its slot). */
static void wait_fake_in_flight(struct driver *d, long long n)
{
    long long deadline = now_ms() + 5000;
    while (fake_stat(&fake, "in_flight") < n) {
        if (now_ms() > deadline)
            fail_msg("the fake never had %lld calls in flight", n);
        driver_pump(d, 10);
    }
}

/* The proxy's own 429: cloro's envelope with details {limit, queued,
 * waited_ms}, Retry-After in seconds, a fresh UUID X-Request-ID. Returns
 * details (borrowed from *root, which the caller frees). */
static json_t *assert_proxy_429(const struct http_reply *r, const char *code, json_t **root)
{
    if (r->status != 429)
        fail_msg("expected the proxy's 429 %s, got %ld %s", code, r->status, r->body);
    json_t *j = http_json(r);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "success")));
    json_t *err = json_object_get(j, "error");
    const char *got = json_string_value(json_object_get(err, "code"));
    if (got == NULL || strcmp(got, code) != 0)
        fail_msg("error.code: expected %s, got %s (%s)", code, got ? got : "(none)", r->body);
    assert_non_null(json_string_value(json_object_get(err, "message")));
    const char *ts = json_string_value(json_object_get(err, "timestamp"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    json_t *details = json_object_get(err, "details");
    if (!json_is_integer(json_object_get(details, "limit")) ||
        !json_is_integer(json_object_get(details, "queued")) ||
        !json_is_integer(json_object_get(details, "waited_ms")))
        fail_msg("details must carry integer limit, queued, waited_ms: %s", r->body);
    const char *retry_after = http_header(r, "Retry-After");
    if (retry_after == NULL || *retry_after == '\0' ||
        strspn(retry_after, "0123456789") != strlen(retry_after))
        fail_msg("Retry-After must be whole seconds, got '%s'",
                 retry_after != NULL ? retry_after : "(absent)");
    assert_true(is_uuid(http_header(r, "X-Request-ID")));
    *root = j;
    return details;
}

static long long details_int(json_t *details, const char *name)
{
    return (long long)json_integer_value(json_object_get(details, name));
}

/* ---- the tests ------------------------------------------------------------ */

static void test_concurrency_is_capped(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-concurrency", "5", NULL});
    fake_configure(&fake, "{\"latency_ms\":100}");
    driver_init(&drv, 200);
    for (int i = 0; i < 200; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/chatgpt", "capped", i, 0, NULL);
    assert_true(driver_finish(&drv, 60000));
    assert_all_ok(&drv);
    /* Never more than 5 at the upstream, and the 5 slots stayed busy. */
    assert_int_equal(fake_stat(&fake, "max_in_flight"), 5);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 200);
    assert_int_equal(fake_stat(&fake, "status.429"), 0);

    assert_limit(&proxy, "max_concurrency", 5);
    assert_limit(&proxy, "concurrency_limit", 5); /* the fake's 100 is not adopted: above 5 */
    assert_true(wait_limit_equal(&proxy, "in_flight", 0, 2000));
    assert_limit(&proxy, "queued", 0);
    assert_limit(&proxy, "rejected", 0);
    assert_limit(&proxy, "retries", 0);
    assert_limit(&proxy, "upstream_429", 0);
    /* 200 calls of 100 ms through 5 slots: the last ones waited ~3.9 s. */
    long long p50 = limit_stat(&proxy, "queue_wait_ms.p50");
    long long p99 = limit_stat(&proxy, "queue_wait_ms.p99");
    if (!(p50 >= 0 && p99 >= 1000 && p50 <= p99)) {
        print_limits(&proxy);
        fail_msg("queue_wait_ms: p50 %lld, p99 %lld", p50, p99);
    }
    driver_free(&drv);
}

static long long last_done_ms(const struct driver *d, int from, int to)
{
    long long last = 0;
    for (int i = from; i < to; i++)
        if (d->calls[i].done_ms > last)
            last = d->calls[i].done_ms;
    return last;
}

static void test_rate_limit_per_endpoint(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--rate-limit-per-endpoint", "50", NULL});
    /* The fake's own window (per route) would refuse bursts above 60 a second. */
    fake_configure(&fake, "{\"rate_limit\":60}");
    driver_init(&drv, 300);
    for (int i = 0; i < 300; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/chatgpt", "paced", i, 0, NULL);
    assert_true(driver_finish(&drv, 60000));
    long long elapsed = now_ms() - drv.t0;
    assert_all_ok(&drv);
    /* 1 at once, then one every 20 ms: 299 * 20 ms. */
    if (elapsed < 5800)
        fail_msg("300 calls at 50/s took only %lld ms", elapsed);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 300);
    assert_int_equal(fake_stat(&fake, "status.429"), 0);
    assert_limit(&proxy, "upstream_429", 0);
    assert_limit(&proxy, "rejected", 0);
    driver_free(&drv);
}

/* Each endpoint has its own bucket: one that is saturated does not hold back
 * calls to another, even queued behind it. */
static void test_endpoints_have_their_own_buckets(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--rate-limit-per-endpoint", "50", NULL});
    driver_init(&drv, 150);
    for (int i = 0; i < 100; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/chatgpt", "busy endpoint", i, 0, NULL);
    driver_pump(&drv, 50); /* the chatgpt calls reach the proxy first */
    for (int i = 0; i < 50; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/gemini", "quiet endpoint", i, 0, NULL);
    assert_true(driver_finish(&drv, 60000));
    assert_all_ok(&drv);
    long long chatgpt_last = last_done_ms(&drv, 0, 100);  /* >= 99 * 20 ms */
    long long gemini_last = last_done_ms(&drv, 100, 150); /* >= 49 * 20 ms after its start */
    if (chatgpt_last < 1900 || gemini_last + 500 > chatgpt_last)
        fail_msg("chatgpt's 100 done at %lld ms, gemini's 50 at %lld ms: gemini should finish "
                 "~1 s before chatgpt",
                 chatgpt_last, gemini_last);
    driver_free(&drv);
}

/* --rate-limit-global: one bucket over every endpoint. */
static void test_global_rate_limit(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--rate-limit-per-endpoint", "0", "--rate-limit-global",
                                         "50", NULL});
    driver_init(&drv, 100);
    for (int i = 0; i < 50; i++) {
        add_prompt(&drv, &proxy, "/v1/monitor/chatgpt", "global", i, 0, NULL);
        add_prompt(&drv, &proxy, "/v1/monitor/perplexity", "global", i, 0, NULL);
    }
    assert_true(driver_finish(&drv, 60000));
    long long elapsed = now_ms() - drv.t0;
    assert_all_ok(&drv);
    if (elapsed < 1900)
        fail_msg("100 calls under a global 50/s took only %lld ms", elapsed);
    assert_int_equal(fake_stat(&fake, "requests_total"), 100);
    driver_free(&drv);
}

static void test_queue_overflow(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-concurrency", "1", "--max-queue", "2", NULL});
    fake_configure(&fake, "{\"latency_ms\":1000}");
    driver_init(&drv, 5);
    for (int i = 0; i < 5; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/grok", "overflow", i, 0, NULL);
    assert_true(driver_finish(&drv, 30000));
    int ok = 0, refused = 0;
    for (int i = 0; i < 5; i++) {
        const struct call *c = &drv.calls[i];
        if (c->reply.status == 200) {
            ok++;
            continue;
        }
        json_t *root = NULL;
        json_t *details = assert_proxy_429(&c->reply, "CONCURRENCY_LIMIT_EXCEEDED", &root);
        assert_int_equal(details_int(details, "queued"), 2);
        assert_int_equal(details_int(details, "limit"), 1);
        json_decref(root);
        /* Refused at once, not after waiting for anything. */
        if (c->done_ms >= 900)
            fail_msg("an overflow 429 came after %lld ms", c->done_ms);
        refused++;
    }
    assert_int_equal(ok, 3);
    assert_int_equal(refused, 2);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/grok"), 3);
    assert_limit(&proxy, "rejected", 2);
    assert_limit(&proxy, "queue_overflows", 2);
    assert_limit(&proxy, "queue_timeouts", 0);
    driver_free(&drv);
}

static void test_queue_timeout(void **state)
{
    (void)state;
    start_proxy(&proxy,
                (const char *[]){"--max-concurrency", "1", "--queue-timeout", "300ms", NULL});
    driver_init(&drv, 2);
    int blocker = driver_add(&drv, &proxy, "/v1/monitor/chatgpt",
                             "{\"prompt\":\"slot holder [fake:latency=1500]\",\"country\":\"US\"}",
                             0, NULL, 30000L);
    wait_fake_in_flight(&drv, 1);
    long long queued_at = now_ms() - drv.t0;
    int waiter = add_prompt(&drv, &proxy, "/v1/monitor/gemini", "waits too long", 0, 0, NULL);
    assert_true(driver_finish(&drv, 30000));
    assert_int_equal(drv.calls[blocker].reply.status, 200);
    json_t *root = NULL;
    json_t *details =
        assert_proxy_429(&drv.calls[waiter].reply, "CONCURRENCY_LIMIT_EXCEEDED", &root);
    long long waited = details_int(details, "waited_ms");
    json_decref(root);
    if (waited < 300)
        fail_msg("details.waited_ms %lld < the queue timeout of 300 ms", waited);
    /* Given up on at the timeout, not when the slot came free. */
    assert_int_equal(drv.calls[waiter].order, 1);
    if (drv.calls[waiter].done_ms - queued_at < 290)
        fail_msg("the queued call was refused after %lld ms",
                 drv.calls[waiter].done_ms - queued_at);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/gemini"), 0);
    assert_limit(&proxy, "queue_timeouts", 1);
    assert_limit(&proxy, "rejected", 1);
    driver_free(&drv);
}

static void test_priority_goes_first(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-concurrency", "1", NULL});
    fake_configure(&fake, "{\"latency_ms\":30}");
    driver_init(&drv, 102);
    int blocker = driver_add(&drv, &proxy, "/v1/monitor/chatgpt",
                             "{\"prompt\":\"slot holder [fake:latency=2500]\",\"country\":\"US\"}",
                             0, NULL, 60000L);
    wait_fake_in_flight(&drv, 1);
    /* Priority 1, half of them by default and half said explicitly. */
    for (int i = 0; i < 100; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/perplexity", "ordinary", i, i % 2 ? 1 : 0, NULL);
    if (!wait_limit_at_least(&proxy, &drv, "queued", 100, 10000)) {
        print_limits(&proxy);
        fail_msg("100 calls never queued behind the blocker");
    }
    int urgent = add_prompt(&drv, &proxy, "/v1/monitor/perplexity", "urgent", 0, 10, NULL);
    if (!wait_limit_at_least(&proxy, &drv, "queued", 101, 10000)) {
        print_limits(&proxy);
        fail_msg("the urgent call never queued");
    }
    if (drv.calls[blocker].order != 0)
        fail_msg("setup too slow: the blocker finished before the urgent call queued");
    assert_true(driver_finish(&drv, 60000));
    assert_all_ok(&drv);
    assert_int_equal(drv.calls[blocker].order, 1);
    if (drv.calls[urgent].order != 2)
        fail_msg("the X-Priority: 10 call completed #%d, expected #2 (right after the blocker)",
                 drv.calls[urgent].order);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/perplexity"), 101);
    driver_free(&drv);
}

static void test_clients_take_turns(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-concurrency", "1", NULL});
    fake_configure(&fake, "{\"latency_ms\":20}");
    driver_init(&drv, 301);
    for (int i = 0; i < 300; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/copilot", "client A", i, 0, "127.0.0.1");
    /* Every one of A's calls is at the proxy: in flight, queued or answered. */
    long long deadline = now_ms() + 15000;
    for (;;) {
        long long held = limit_stat(&proxy, "queued") + limit_stat(&proxy, "in_flight");
        if (held + drv.done >= 300)
            break;
        if (now_ms() > deadline) {
            print_limits(&proxy);
            fail_msg("client A's 300 calls never all reached the proxy (%d answered)", drv.done);
        }
        driver_pump(&drv, 10);
    }
    int b = add_prompt(&drv, &proxy, "/v1/monitor/copilot", "client B", 0, 0, "127.0.0.2");
    while (drv.calls[b].order == 0 && drv.done < drv.n)
        driver_pump(&drv, 20);
    assert_int_equal(drv.calls[b].reply.status, 200);
    int a_pending = 300 - (drv.calls[b].order - 1);
    if (a_pending < 250)
        fail_msg("client B's one call completed #%d, after %d of client A's (A had %d left)",
                 drv.calls[b].order, drv.calls[b].order - 1, a_pending);
    assert_true(driver_finish(&drv, 60000));
    assert_all_ok(&drv);
    driver_free(&drv);
}

/* Runs n concurrent chatgpt calls; returns the sum of X-Proxy-Retries seen and
 * how many replies carried it. */
static void retry_round(const char *tag, int n, long long *sum, int *carried)
{
    driver_init(&drv, n);
    for (int i = 0; i < n; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/chatgpt", tag, i, 0, NULL);
    assert_true(driver_finish(&drv, 60000));
    assert_all_ok(&drv);
    for (int i = 0; i < n; i++) {
        const char *h = http_header(&drv.calls[i].reply, "X-Proxy-Retries");
        if (h == NULL)
            continue;
        long long v = strtoll(h, NULL, 10);
        if (v < 1)
            fail_msg("X-Proxy-Retries: '%s'", h);
        *sum += v;
        (*carried)++;
    }
    driver_free(&drv);
}

static void test_upstream_failures_are_retried(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-retries", "8", "--retry-base-delay", "5ms",
                                         "--retry-max-delay", "50ms", NULL});
    fake_configure(&fake, "{\"fail_429\":0.15,\"fail_503\":0.15,\"retry_after_s\":0}");
    long long sum = 0;
    int carried = 0;
    retry_round("retried rate", 50, &sum, &carried);
    fake_configure(&fake, "{\"fail_429_code\":\"CONCURRENCY_LIMIT_EXCEEDED\"}");
    retry_round("retried concurrency", 50, &sum, &carried);

    long long f429 = fake_stat(&fake, "faults.429");
    long long f503 = fake_stat(&fake, "faults.503");
    fprintf(stderr,
            "retries: fake injected %lld 429 and %lld 503; %d replies carried "
            "X-Proxy-Retries, summing to %lld\n",
            f429, f503, carried, sum);
    assert_true(f429 > 0 && f503 > 0); /* the run exercised both */
    assert_int_equal(fake_stat(&fake, "requests_total"), 100 + f429 + f503);
    assert_limit(&proxy, "retries", f429 + f503);
    assert_limit(&proxy, "upstream_429", f429);
    assert_true(carried >= 1);
    assert_int_equal(sum, f429 + f503);
    assert_limit(&proxy, "rejected", 0);
}

/* A 503's Retry-After is waited out; when retries run out, the last answer is
 * what the client gets, with the retries counted. */
static void test_retry_after_is_honoured(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-retries", "1", "--retry-base-delay", "5ms",
                                         "--retry-max-delay", "50ms", NULL});
    fake_configure(&fake, "{\"fail_503\":1.0,\"retry_after_s\":1}");
    struct http_reply r;
    long long t0 = now_ms();
    http_post(&proxy, "/v1/monitor/aimode", "{\"prompt\":\"always busy\",\"country\":\"US\"}", NULL,
              &r);
    long long took = now_ms() - t0;
    assert_int_equal(r.status, 503);
    assert_string_equal(http_error_code(&r), "SERVICE_UNAVAILABLE");
    const char *retries = http_header(&r, "X-Proxy-Retries");
    if (retries == NULL || strcmp(retries, "1") != 0)
        fail_msg("X-Proxy-Retries: expected 1, got %s", retries ? retries : "(absent)");
    if (took < 950)
        fail_msg("retried after %lld ms despite Retry-After: 1", took);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/aimode"), 2);
    assert_limit(&proxy, "retries", 1);
}

static void test_client_gone_while_queued(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-concurrency", "1", NULL});
    driver_init(&drv, 2);
    int blocker = driver_add(&drv, &proxy, "/v1/monitor/chatgpt",
                             "{\"prompt\":\"slot holder [fake:latency=800]\",\"country\":\"US\"}",
                             0, NULL, 30000L);
    wait_fake_in_flight(&drv, 1);
    int leaver = driver_add(&drv, &proxy, "/v1/monitor/perplexity",
                            "{\"prompt\":\"impatient\",\"country\":\"US\"}", 0, NULL, 200L);
    assert_true(driver_finish(&drv, 30000));
    assert_int_equal(drv.calls[leaver].curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(drv.calls[blocker].reply.status, 200);
    assert_int_equal(drv.calls[blocker].order, 2);
    if (!wait_limit_at_least(&proxy, NULL, "abandoned_in_queue", 1, 5000)) {
        print_limits(&proxy);
        fail_msg("the departed client was never counted in abandoned_in_queue");
    }
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/perplexity"), 0);
    assert_true(wait_limit_equal(&proxy, "in_flight", 0, 2000));
    assert_limit(&proxy, "queued", 0);

    /* Nothing leaked: the slot serves the next caller. */
    struct http_reply r;
    http_post(&proxy, "/v1/monitor/perplexity", "{\"prompt\":\"patient\",\"country\":\"US\"}", NULL,
              &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/perplexity"), 1);
    driver_free(&drv);
}

static void test_lower_upstream_limit_is_adopted(void **state)
{
    (void)state;
    start_proxy(&proxy, (const char *[]){"--max-concurrency", "10", NULL});
    fake_configure(&fake, "{\"concurrency_limit\":10,\"latency_ms\":100}");
    assert_limit(&proxy, "concurrency_limit", 10);
    fake_configure(&fake, "{\"concurrency_limit\":3}");
    struct http_reply r;
    http_post(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"learn the limit\",\"country\":\"US\"}",
              NULL, &r);
    assert_int_equal(r.status, 200);
    const char *advertised = http_header(&r, "X-Concurrency-Limit");
    assert_non_null(advertised);
    assert_string_equal(advertised, "3");
    http_reply_free(&r);
    assert_true(wait_limit_equal(&proxy, "concurrency_limit", 3, 2000));

    fake_reset(&fake);
    driver_init(&drv, 30);
    for (int i = 0; i < 30; i++)
        add_prompt(&drv, &proxy, "/v1/monitor/chatgpt", "under the new limit", i, 0, NULL);
    assert_true(driver_finish(&drv, 30000));
    assert_all_ok(&drv);
    assert_int_equal(fake_stat(&fake, "max_in_flight"), 3);
    assert_int_equal(fake_stat(&fake, "status.429"), 0);
    assert_limit(&proxy, "concurrency_limit", 3);
    assert_limit(&proxy, "max_concurrency", 10);
    assert_limit(&proxy, "upstream_429", 0);
    char *log = proc_log(&proxy);
    if (strstr(log, "event=limit_changed") == NULL)
        fail_msg("no event=limit_changed in the proxy's log:\n%s", log);
    free(log);
    driver_free(&drv);

    /* The legacy spelling X-Concurrent-Limit is read too. */
    fake_configure(&fake, "{\"concurrency_headers\":\"concurrent\",\"concurrency_limit\":2}");
    http_post(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"legacy header\",\"country\":\"US\"}",
              NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(http_header(&r, "X-Concurrent-Limit"));
    http_reply_free(&r);
    assert_true(wait_limit_equal(&proxy, "concurrency_limit", 2, 2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrency_is_capped, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_rate_limit_per_endpoint, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_endpoints_have_their_own_buckets, reset_fake,
                                        stop_proxy),
        cmocka_unit_test_setup_teardown(test_global_rate_limit, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_queue_overflow, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_queue_timeout, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_priority_goes_first, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_clients_take_turns, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_upstream_failures_are_retried, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_retry_after_is_honoured, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_client_gone_while_queued, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_lower_upstream_limit_is_adopted, reset_fake,
                                        stop_proxy),
    };
    return cmocka_run_group_tests_name("integration_limits", tests, group_setup, group_teardown);
}
