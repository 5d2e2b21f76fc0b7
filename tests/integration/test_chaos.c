/* test_chaos.c: upstream chaos. The real proxy (short timeouts, a few
 * retries, the cache on) in front of the fake upstream injecting about 20 %
 * faults of every kind (500, 503, 429, resets before and in the middle of a
 * body, garbage bytes, stalls past the timeout, slow drips), driven with
 * 10,000 sync monitor calls at a steady concurrency, mostly distinct prompts
 * and some repeated (hits and coalesced waiters in the mix). Asserted: every
 * client got either a 200 carrying the fake's deterministic answer to its own
 * request, or an error in cloro's envelope with an X-Request-ID and a
 * sensible status; nobody waited past the request budget the config gives;
 * the fake really injected each kind; the proxy's metrics and counters agree
 * with what the clients and the fake saw; afterwards the proxy's open fds
 * and anonymous memory are back near their warm-up baseline, and it stops on
 * SIGTERM with exit 0 (LeakSanitizer turns any leak into a failure). */
#include "driver.h"
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_results.h"
#include "fake_util.h"
#include "fake_validate.h"
#include "promtext.h"

#define KEY "sk_live_chaostest01"

#define REQUESTS         10000 /* the sum of the phases' */
#define CLIENTS          80
#define MAX_CONCURRENCY  "64"
#define UPSTREAM_TIMEOUT 1500 /* ms: the whole budget of a request (queue, retries) */
#define QUEUE_TIMEOUT    1500
#define MAX_RETRIES      2
#define TEXT_OF(x)       #x
#define TEXT(x)          TEXT_OF(x) /* the value of macro x, as text */
#define MS_TEXT(x)       TEXT(x) "ms"
#define SHARED_PROMPTS   200 /* a quarter of the calls pick one of these */
/* Short enough that shared prompts expire during the load: asked again, they
 * go upstream, and a failure there is answered stale (stale-if-error). */
#define CACHE_TTL         "3s"
#define CLIENT_TIMEOUT_MS 20000
/* Scheduling under ASan on 2 shared vCPUs: the loops' turns, accepts and
 * writes. */
#define BOUND_SLACK_MS 1000
#define BUDGET_BUCKET  "5"
/* Idle keep-alive connections libcurl may keep to the fake beyond those of
 * the warm-up (which ran at the same concurrency), and client sockets the
 * proxy has not seen close yet. */
#define FD_SLACK 8
/* Anonymous memory (ASan quarantine off). Under ASan it grows with the
 * store, about 0.5 kB per new entry (a release build: about 50 B, 4.2 to
 * 5.9 MB over 35,000 entries), and stays flat when nothing new is stored;
 * so the whole load is bounded loosely, and the no-store phase must leave
 * it flat but for allocator noise (seen from -12 kB to +1.1 MB; the bound,
 * 2 kB per call of the phase, still catches anything kept per request, and
 * LeakSanitizer at exit what is lost). */
#define RSS_GROWTH_MAX_KB      (48 * 1024)
#define RSS_NO_STORE_GROWTH_KB (4 * 1024)

/* The load: two rounds of mostly distinct prompts, a quarter of the calls on
 * shared ones (hits and coalesced waiters), then distinct prompts with
 * Cache-Control: no-store: every call goes upstream, nothing is stored. */
static const struct phase {
    int requests;
    bool share;
    bool no_store;
} phases[] = {{4000, true, false}, {4000, true, false}, {2000, false, true}};
#define PHASES (sizeof phases / sizeof phases[0])

/* What a call asked, for checking its answer. */
struct call_info {
    int provider;
    bool no_store;
};

static const char *const providers[] = {"chatgpt", "gemini", "perplexity", "copilot", "grok"};
#define PROVIDERS (sizeof providers / sizeof providers[0])

/* The faults, as fractions of the fake's monitor calls: 20 % in all. */
static const char *const chaos_knobs =
    "{\"fail_500\":0.02,\"fail_503\":0.02,\"fail_429\":0.03,\"reset\":0.02,"
    "\"reset_mid_body\":0.03,\"garbage\":0.03,\"stall\":0.02,\"slow_drip\":0.03,"
    "\"slow_drip_ms\":400,\"retry_after_s\":1}";
static const char *const calm_knobs =
    "{\"fail_500\":0,\"fail_503\":0,\"fail_429\":0,\"reset\":0,\"reset_mid_body\":0,"
    "\"garbage\":0,\"stall\":0,\"slow_drip\":0}";
static const char *const fault_kinds[] = {"500",     "503",   "429",      "reset", "reset_mid_body",
                                          "garbage", "stall", "slow_drip"};
#define FAULT_KINDS (sizeof fault_kinds / sizeof fault_kinds[0])

static struct proc fake, proxy;
static struct driver drv;       /* the chaos test's calls, freed at teardown */
static struct call_info *asked; /* what each of them asked */

/* What the clients saw, by status and error code or X-Cache. */
struct tally {
    long by_status[600];
    long hit, miss, coalesced, bypass, stale;
    long upstream_timeout, upstream_unavailable, proxy_429;
    long long max_ms;
    int slowest;
    long slowest_status;
};

static long long read_proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long long kb = -1;
    size_t n = strlen(field);
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtoll(line + n + 1, NULL, 10);
    if (f != NULL)
        fclose(f);
    return kb;
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return n;
}

/* The request body of call i: a distinct prompt or, when share is set, a
 * quarter of the time one of the shared ones. */
static char *call_body(struct fake_rng *rng, const char *tag, int i, bool share, int *provider)
{
    char *body = NULL;
    bool shared = share && fake_rng_below(rng, 4) == 0;
    int which = shared ? (int)fake_rng_below(rng, SHARED_PROMPTS) : i;
    *provider = which % (int)PROVIDERS;
    if (asprintf(&body, "{\"prompt\":\"%s %s %d about Acme\",\"country\":\"US\"}", tag,
                 shared ? "shared" : "own", which) < 0)
        abort();
    return body;
}

/* Runs count calls with at most CLIENTS in flight; every one must end. */
static void drive(struct driver *d, struct fake_rng *rng, struct call_info *info, int count,
                  const char *tag, bool share, bool no_store)
{
    const char *const no_store_header[] = {"Cache-Control: no-store", NULL};
    int target = d->n + count;
    long long deadline = now_ms() + 120000;
    while ((d->n < target || d->done < d->n) && now_ms() < deadline) {
        while (d->n < target && d->n - d->done < CLIENTS) {
            int provider;
            char *body = call_body(rng, tag, d->n, share, &provider);
            char path[64];
            snprintf(path, sizeof path, "/v1/monitor/%s", providers[provider]);
            info[d->n] = (struct call_info){.provider = provider, .no_store = no_store};
            driver_add_headers(d, &proxy, path, body, 0, NULL, CLIENT_TIMEOUT_MS,
                               no_store ? no_store_header : NULL);
            free(body);
        }
        driver_pump(d, 5);
    }
    if (d->done != target)
        fail_msg("%d of %d calls did not end within 120 s", target - d->done, count);
}

/* The fake's answer to this request, as it builds it (no html: no artifact). */
static json_t *expected_answer(int provider, const char *body)
{
    enum fake_endpoint ep;
    assert_true(fake_validate_endpoint_from_name(providers[provider], &ep));
    json_t *doc = json_loads(body, 0, NULL);
    struct fake_validate_opts opts = {.country_default_us = false};
    struct fake_validate_req vr;
    json_t *errs = fake_validate_monitor(ep, doc, &opts, &vr);
    assert_null(errs);
    json_t *answer = fake_results_build(&vr, NULL, NULL, NULL);
    json_decref(doc);
    return answer;
}

static void check_envelope(const struct call *c, int i)
{
    json_t *doc = http_json(&c->reply);
    const char *code = json_string_value(json_dig(doc, "error.code"));
    if (!json_is_false(json_object_get(doc, "success")) || code == NULL ||
        !json_is_string(json_dig(doc, "error.message")) ||
        !json_is_string(json_dig(doc, "error.timestamp")))
        fail_msg("call %d: %ld without cloro's envelope: %.300s", i, c->reply.status,
                 c->reply.body);
    const char *rid = http_header(&c->reply, "X-Request-ID");
    if (rid == NULL || rid[0] == '\0')
        fail_msg("call %d: %ld %s without an X-Request-ID", i, c->reply.status, code);
    json_decref(doc);
}

/* The errors a client may get here: the proxy's own (which carry its id as
 * X-Request-ID), the fake's relayed unchanged (with the fake's id), or a 429
 * of either (the fake's injected one, or the proxy's queue timeout). */
enum origin { OWN, RELAYED, EITHER };
static const struct {
    long status;
    const char *code;
    enum origin origin;
} expected_errors[] = {
    {502, "UPSTREAM_UNAVAILABLE", OWN},      {504, "UPSTREAM_TIMEOUT", OWN},
    {500, "INTERNAL_SERVER_ERROR", RELAYED}, {503, "SERVICE_UNAVAILABLE", RELAYED},
    {429, "RATE_LIMIT_EXCEEDED", EITHER},    {429, "CONCURRENCY_LIMIT_EXCEEDED", EITHER},
};

static void check_error_code(const struct call *c, int i, struct tally *t)
{
    const char *code = http_error_code(&c->reply);
    const char *proxy_rid = http_header(&c->reply, "X-Proxy-Request-ID");
    bool own = proxy_rid != NULL && strcmp(http_header(&c->reply, "X-Request-ID"), proxy_rid) == 0;
    size_t k = 0, n = sizeof expected_errors / sizeof expected_errors[0];
    while (k < n && (c->reply.status != expected_errors[k].status ||
                     strcmp(code, expected_errors[k].code) != 0))
        k++;
    if (k == n)
        fail_msg("call %d: status %ld with error.code %s", i, c->reply.status, code);
    if (expected_errors[k].origin != EITHER && (expected_errors[k].origin == OWN) != own)
        fail_msg("call %d: %ld %s %s by the proxy", i, c->reply.status, code,
                 own ? "made" : "not made");
    t->upstream_timeout += strcmp(code, "UPSTREAM_TIMEOUT") == 0;
    t->upstream_unavailable += strcmp(code, "UPSTREAM_UNAVAILABLE") == 0;
    t->proxy_429 += c->reply.status == 429 && own;
}

static void check_reply(const struct call *c, int i, const struct call_info *info, struct tally *t)
{
    if (c->curl_code != 0)
        fail_msg("call %d: no HTTP answer (curl %d) after %lld ms", i, c->curl_code, c->done_ms);
    curl_off_t total_us = 0;
    curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    long long ms = (long long)(total_us / 1000);
    if (ms > t->max_ms) {
        t->max_ms = ms;
        t->slowest = i;
        t->slowest_status = c->reply.status;
    }
    long status = c->reply.status;
    assert_true(status > 0 && status < 600);
    t->by_status[status]++;
    if (status != 200) {
        check_envelope(c, i);
        check_error_code(c, i, t);
        return;
    }
    json_t *got = http_json(&c->reply);
    json_t *want = expected_answer(info->provider, c->body);
    if (!json_equal(got, want))
        fail_msg("call %d: a 200 that is not the answer to %s: %.300s", i, c->body, c->reply.body);
    json_decref(got);
    json_decref(want);
    const char *cache = http_header(&c->reply, "X-Cache");
    if (info->no_store) {
        if (cache == NULL || strcmp(cache, "BYPASS") != 0)
            fail_msg("call %d: no-store answered with X-Cache %s", i, cache ? cache : "(none)");
        t->bypass++;
        return;
    }
    if (cache != NULL && strcmp(cache, "HIT") == 0)
        t->hit++;
    else if (cache != NULL && strcmp(cache, "MISS") == 0)
        t->miss++;
    else if (cache != NULL && strcmp(cache, "COALESCED") == 0)
        t->coalesced++;
    else if (cache != NULL && strcmp(cache, "STALE") == 0)
        t->stale++;
    else
        fail_msg("call %d: a 200 with X-Cache %s", i, cache != NULL ? cache : "(none)");
}

static struct promtext scrape(void)
{
    struct http_reply r;
    http_get(&proxy, "/_proxy/metrics", &r);
    assert_int_equal(r.status, 200);
    struct promtext doc;
    char err[256];
    if (promtext_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/_proxy/metrics does not parse: %s", err);
    http_reply_free(&r);
    return doc;
}

/* The sum of cloro_proxy_requests_total{route="upstream"} whose status (and
 * cache label, unless NULL) match. */
static double answered(const struct promtext *doc, int status, const char *cache)
{
    char want[16];
    snprintf(want, sizeof want, "%d", status);
    double sum = 0;
    for (size_t i = 0; i < doc->sample_count; i++) {
        const struct promtext_sample *s = &doc->samples[i];
        if (strcmp(s->name, "cloro_proxy_requests_total") != 0)
            continue;
        bool route = false, st = false, ca = cache == NULL;
        for (size_t l = 0; l < s->label_count; l++) {
            const struct promtext_label *lb = &s->labels[l];
            route = route || (strcmp(lb->name, "route") == 0 && strcmp(lb->value, "upstream") == 0);
            st = st || (strcmp(lb->name, "status") == 0 && strcmp(lb->value, want) == 0);
            ca = ca || (strcmp(lb->name, "cache") == 0 && strcmp(lb->value, cache) == 0);
        }
        if (route && st && ca)
            sum += s->value;
    }
    return sum;
}

static double metric(const struct promtext *doc, const char *name, const char *label,
                     const char *value)
{
    const char *labels[] = {label, value, NULL};
    double v = -1;
    if (!promtext_get(doc, name, label != NULL ? labels : (const char *const[]){NULL}, &v))
        fail_msg("no sample %s{%s=%s}", name, label ? label : "", value ? value : "");
    return v;
}

/* Waits until nothing is in flight in the proxy, upstream or in the fake. */
static void wait_quiet(void)
{
    long long deadline = now_ms() + 15000;
    while (now_ms() < deadline) {
        if (proxy_counter(&proxy, "in_flight") <= 1 &&
            proxy_counter(&proxy, "upstream.in_flight") == 0 && fake_stat(&fake, "in_flight") == 0)
            return;
        sleep_ms(50);
    }
    fail_msg("still busy 15 s after the load: proxy in_flight %lld, upstream %lld, fake %lld",
             proxy_counter(&proxy, "in_flight"), proxy_counter(&proxy, "upstream.in_flight"),
             fake_stat(&fake, "in_flight"));
}

/* The fd count once the closes of the last connections have been seen. */
static int settled_fds(int baseline)
{
    long long deadline = now_ms() + 5000;
    int n = count_fds(proxy.pid);
    while (n > baseline + FD_SLACK && now_ms() < deadline) {
        sleep_ms(50);
        n = count_fds(proxy.pid);
    }
    return n;
}

static void test_upstream_chaos(void **state)
{
    (void)state;
    long long t0 = now_ms();
    const char *fake_args[] = {"--api-key",
                               KEY,
                               "--log-level",
                               "warn",
                               "--concurrency-limit",
                               "1000",
                               "--rate-limit",
                               "1000000",
                               "--latency-ms",
                               "2",
                               "--jitter-ms",
                               "6",
                               NULL};
    assert_int_equal(proc_start_fake(&fake, fake_args), 0);
    const char *proxy_args[] = {"--upstream-timeout",
                                MS_TEXT(UPSTREAM_TIMEOUT),
                                "--max-retries",
                                TEXT(MAX_RETRIES),
                                "--retry-base-delay",
                                "50ms",
                                "--retry-max-delay",
                                "200ms",
                                "--queue-timeout",
                                MS_TEXT(QUEUE_TIMEOUT),
                                "--max-concurrency",
                                MAX_CONCURRENCY,
                                "--cache-ttl",
                                CACHE_TTL,
                                "--access-log",
                                "false",
                                NULL};
    const char *proxy_env[] = {"CLORO_API_KEY=" KEY,
                               "ASAN_OPTIONS=quarantine_size_mb=0:detect_leaks=1", NULL};
    assert_int_equal(proc_start_proxy(&proxy, fake.url, proxy_args, proxy_env), 0);

    driver_init(&drv, REQUESTS + 2 * CLIENTS);
    asked = calloc(REQUESTS + 2 * CLIENTS, sizeof *asked);
    struct fake_rng rng;
    fake_rng_seed(&rng, 10);

    /* Warm-up without faults at the load's concurrency: connections, caches
     * and allocator pools reach their working size. */
    fake_configure(&fake, calm_knobs);
    drive(&drv, &rng, asked, 2 * CLIENTS, "warm-up", false, false);
    /* No faults yet: answers (a 504 allowed to a machine too busy for the budget). */
    int warm_ok = 0;
    for (int i = 0; i < drv.n; i++)
        warm_ok += drv.calls[i].reply.status == 200;
    if (warm_ok < drv.n * 9 / 10)
        fail_msg("only %d of %d warm-up calls answered 200", warm_ok, drv.n);
    wait_quiet();
    int fds_before = settled_fds(count_fds(proxy.pid));
    long long rss_before = read_proc_kb(proxy.pid, "RssAnon");
    struct promtext m0 = scrape();
    long long proxy_429_before = proxy_counter(&proxy, "limits.upstream_429");

    fake_configure(&fake, chaos_knobs);
    fake_reset(&fake);
    int first = drv.n;
    long long rss_phase[PHASES];
    long long load_t0 = now_ms();
    for (size_t p = 0; p < PHASES; p++) {
        drive(&drv, &rng, asked, phases[p].requests, "chaos", phases[p].share, phases[p].no_store);
        wait_quiet();
        rss_phase[p] = read_proc_kb(proxy.pid, "RssAnon");
    }
    assert_int_equal(drv.n - first, REQUESTS);
    long long load_ms = now_ms() - load_t0;
    fake_configure(&fake, calm_knobs);

    struct tally t = {0};
    for (int i = first; i < drv.n; i++)
        check_reply(&drv.calls[i], i, &asked[i], &t);

    /* Nobody waited past the configured bound: every attempt's timeout,
     * the queue's, and slack for scheduling (a hang is curl's 20 s). */
    long long bound = (MAX_RETRIES + 1) * UPSTREAM_TIMEOUT + QUEUE_TIMEOUT + BOUND_SLACK_MS;
    if (t.max_ms > bound)
        fail_msg("call %d took %lld ms, past the bound of %lld ms", t.slowest, t.max_ms, bound);

    /* The fake injected every kind, about 20 % of its calls in all. */
    json_t *fs = fake_stats(&fake);
    long long fake_calls = (long long)json_integer_value(json_dig(fs, "requests_total"));
    long long injected = 0;
    printf("chaos: %d requests in %lld ms; the fake saw %lld calls, injected:", REQUESTS, load_ms,
           fake_calls);
    for (size_t k = 0; k < FAULT_KINDS; k++) {
        char path[64];
        snprintf(path, sizeof path, "faults.%s", fault_kinds[k]);
        long long n = (long long)json_integer_value(json_dig(fs, path));
        printf(" %s=%lld", fault_kinds[k], n);
        if (n < 20)
            fail_msg("the fake injected only %lld faults of kind %s", n, fault_kinds[k]);
        injected += n;
    }
    printf(" (%.1f %%)\n", 100.0 * (double)injected / (double)fake_calls);
    assert_true(injected * 100 >= fake_calls * 15 && injected * 100 <= fake_calls * 25);

    printf(
        "chaos: replies: 200=%ld (hit %ld, miss %ld, coalesced %ld, stale %ld, bypass %ld) 429=%ld "
        "(proxy %ld) 500=%ld 502=%ld 503=%ld 504=%ld; slowest %lld ms (a %ld; bound %lld ms)\n",
        t.by_status[200], t.hit, t.miss, t.coalesced, t.stale, t.bypass, t.by_status[429],
        t.proxy_429, t.by_status[500], t.by_status[502], t.by_status[503], t.by_status[504],
        t.max_ms, t.slowest_status, bound);
    long others = REQUESTS - t.by_status[200] - t.by_status[429] - t.by_status[500] -
                  t.by_status[502] - t.by_status[503] - t.by_status[504];
    assert_int_equal(others, 0);
    /* Retries absorb most faults: the clients see far fewer than injected. */
    assert_true(t.by_status[200] >= REQUESTS * 8 / 10);
    assert_true(t.hit > 0 && t.coalesced > 0 && t.miss > 0 && t.stale > 0);

    /* The proxy's numbers agree with the clients' and the fake's. */
    struct promtext m1 = scrape();
    static const int statuses[] = {200, 429, 500, 502, 503, 504};
    for (size_t s = 0; s < sizeof statuses / sizeof statuses[0]; s++) {
        double delta = answered(&m1, statuses[s], NULL) - answered(&m0, statuses[s], NULL);
        if ((long)delta != t.by_status[statuses[s]])
            fail_msg("metrics count %.0f answers %d, the clients got %ld", delta, statuses[s],
                     t.by_status[statuses[s]]);
    }
    assert_int_equal((long)(answered(&m1, 200, "hit") - answered(&m0, 200, "hit")), t.hit);
    assert_int_equal((long)(answered(&m1, 200, "coalesced") - answered(&m0, 200, "coalesced")),
                     t.coalesced);
    assert_int_equal((long)(answered(&m1, 200, "miss") - answered(&m0, 200, "miss")), t.miss);
    assert_int_equal((long)(answered(&m1, 200, "bypass") - answered(&m0, 200, "bypass")), t.bypass);
    assert_int_equal((long)(answered(&m1, 200, "stale") - answered(&m0, 200, "stale")), t.stale);
    /* By the proxy's own clock, it answered every request within its budget
     * (upstream_timeout from arrival covers queue waits, every attempt and
     * the backoffs between them; forward.c), give or take its loop's lag on
     * a shared machine (the histogram's bucket above 2.5 s is 5 s). */
    const char *const hists[] = {"hit", "upstream"};
    for (size_t h = 0; h < 2; h++) {
        const char *le[] = {"answer", hists[h], "le", BUDGET_BUCKET, NULL};
        const char *all[] = {"answer", hists[h], "le", "+Inf", NULL};
        double in_budget[2], total[2];
        const struct promtext *docs[2] = {&m0, &m1};
        for (int k = 0; k < 2; k++) {
            assert_true(promtext_get(docs[k], "cloro_proxy_request_duration_seconds_bucket", le,
                                     &in_budget[k]));
            assert_true(promtext_get(docs[k], "cloro_proxy_request_duration_seconds_bucket", all,
                                     &total[k]));
        }
        if (total[1] - total[0] != in_budget[1] - in_budget[0])
            fail_msg("%.0f %s answers took the proxy longer than %s s",
                     (total[1] - total[0]) - (in_budget[1] - in_budget[0]), hists[h],
                     BUDGET_BUCKET);
    }
    /* A stall ends in a timeout, never as "could not be reached" (502),
     * whether its connection was new or reused: its client gets a 504, or
     * the stale answer stale_if_error allows (200 STALE). */
    long long stalls = (long long)json_integer_value(json_dig(fs, "faults.stall"));
    long long timeouts =
        (long long)(metric(&m1, "cloro_proxy_upstream_failures_total", "reason", "timeout") -
                    metric(&m0, "cloro_proxy_upstream_failures_total", "reason", "timeout"));
    if (timeouts < stalls || t.upstream_timeout + t.stale < stalls)
        fail_msg("%lld stalls, but %lld upstream timeouts and %ld clients with UPSTREAM_TIMEOUT "
                 "(%ld stale answers)",
                 stalls, timeouts, t.upstream_timeout, t.stale);
    assert_true(timeouts <= t.upstream_timeout + t.stale); /* stale-if-error answers 200 */
    /* Every call the proxy counts reached the fake (libcurl's own resends
     * included), but for calls cut by their deadline before the fake read
     * them; and it saw the injected 429s, but for answers that came as the
     * deadline passed. */
    long long calls = (long long)(metric(&m1, "cloro_proxy_upstream_calls_total", NULL, NULL) -
                                  metric(&m0, "cloro_proxy_upstream_calls_total", NULL, NULL));
    if (calls < fake_calls || calls > fake_calls + timeouts)
        fail_msg("the proxy counts %lld upstream calls, the fake saw %lld (%lld timeouts)", calls,
                 fake_calls, timeouts);
    long long seen_429 = proxy_counter(&proxy, "limits.upstream_429") - proxy_429_before;
    long long injected_429 = (long long)json_integer_value(json_dig(fs, "faults.429"));
    if (seen_429 > injected_429 || seen_429 < injected_429 - timeouts)
        fail_msg("the proxy saw %lld upstream 429s, the fake injected %lld", seen_429,
                 injected_429);
    /* Stalled calls were freed when the proxy gave up on them. */
    assert_true(json_integer_value(json_dig(fs, "canceled")) >=
                json_integer_value(json_dig(fs, "faults.stall")));
    json_decref(fs);
    promtext_free(&m0);
    promtext_free(&m1);

    /* Back to baseline: fds, and anonymous memory that does not grow with
     * the requests served once the store stops growing. */
    int fds_after = settled_fds(fds_before);
    long long rss_after = rss_phase[PHASES - 1];
    long long rss_stored = rss_phase[PHASES - 2]; /* before the no-store phase */
    printf("chaos: fds %d -> %d; RssAnon %lld kB after the warm-up,", fds_before, fds_after,
           rss_before);
    for (size_t p = 0; p < PHASES; p++)
        printf(" %lld kB after phase %zu,", rss_phase[p], p + 1);
    printf(" %lld kB in the no-store phase\n", rss_after - rss_stored);
    if (fds_after > fds_before + FD_SLACK)
        fail_msg("the proxy holds %d fds, %d after the warm-up", fds_after, fds_before);
    assert_true(rss_before > 0 && rss_after > 0);
    if (rss_after - rss_before > RSS_GROWTH_MAX_KB)
        fail_msg("RssAnon grew by %lld kB", rss_after - rss_before);
    if (rss_after - rss_stored > RSS_NO_STORE_GROWTH_KB)
        fail_msg("RssAnon grew by %lld kB while nothing was stored", rss_after - rss_stored);

    /* A clean stop: exit 0, so LeakSanitizer found nothing. */
    kill(proxy.pid, SIGTERM);
    if (!proc_wait_exit(&proxy, 30000))
        fail_msg("the proxy did not stop within 30 s of SIGTERM");
    if (proxy.exit_status != 0) {
        char *log = proc_log(&proxy);
        size_t len = strlen(log);
        fail_msg("the proxy exited %d; its log ends:\n%s", proxy.exit_status,
                 log + (len > 4000 ? len - 4000 : 0));
    }
    printf("chaos: wall %lld ms\n", now_ms() - t0);
}

/* A call that leaves a connection to reuse, then body to path over it,
 * which the fake resets: a 502 for the client. */
static void reset_on_a_reused_connection(const char *path, const char *body)
{
    struct http_reply r;
    http_get(&proxy, "/v1/credits", &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    http_post(&proxy, path, body, NULL, &r);
    assert_int_equal(r.status, 502);
    assert_string_equal(http_error_code(&r), "UPSTREAM_UNAVAILABLE");
    http_reply_free(&r);
}

/* libcurl sends a request again on a fresh connection when the reused one
 * died before any answer. A monitor call may go twice (it is safe) but the
 * proxy counts both; a submission without idempotencyKey, which the
 * upstream may have accepted, is never sent twice: one task, and a 502. */
static void test_resend_on_a_dead_connection(void **state)
{
    (void)state;
    const char *fake_args[] = {"--api-key", KEY, NULL};
    assert_int_equal(proc_start_fake(&fake, fake_args), 0);
    const char *proxy_args[] = {"--cache", "false", "--max-retries", "0", NULL};
    const char *proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};
    assert_int_equal(proc_start_proxy(&proxy, fake.url, proxy_args, proxy_env), 0);

    reset_on_a_reused_connection("/v1/monitor/chatgpt",
                                 "{\"prompt\":\"a [fake:reset]\",\"country\":\"US\"}");
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 2);
    assert_int_equal(proxy_counter(&proxy, "upstream.calls"), 3);

    reset_on_a_reused_connection("/v1/async/task",
                                 "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"b "
                                 "[fake:reset]\",\"country\":\"US\"}}");
    assert_int_equal(fake_stat(&fake, "requests./v1/async/task"), 1);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);
    assert_int_equal(proxy_counter(&proxy, "upstream.calls"), 5);
}

/* A retry that waits in the queue past its request's budget is not sent
 * with a millisecond left (to fail as "could not be reached"): it ends at
 * once as the 504 it is, and the upstream sees nothing of it. One slot;
 * B's first attempt gets a 503 with Retry-After: 1, and while B waits that
 * second, A takes the slot and stalls until its own budget ends, after
 * B's. */
static void test_budget_spent_waiting(void **state)
{
    (void)state;
    const char *fake_args[] = {"--api-key", KEY, "--retry-after", "1", NULL};
    assert_int_equal(proc_start_fake(&fake, fake_args), 0);
    const char *proxy_args[] = {"--cache",
                                "false",
                                "--max-concurrency",
                                "1",
                                "--upstream-timeout",
                                "2s",
                                "--queue-timeout",
                                "5s",
                                "--max-retries",
                                "3",
                                NULL};
    const char *proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};
    assert_int_equal(proc_start_proxy(&proxy, fake.url, proxy_args, proxy_env), 0);
    struct driver d;
    driver_init(&d, 2);
    int b = driver_add(&d, &proxy, "/v1/monitor/chatgpt",
                       "{\"prompt\":\"b [fake:503]\",\"country\":\"US\"}", 0, NULL, 10000);
    /* A comes once the fake has answered B. */
    long long deadline = now_ms() + 10000;
    while (fake_stat(&fake, "faults.503") < 1 && now_ms() < deadline)
        driver_pump(&d, 5);
    int a = driver_add(&d, &proxy, "/v1/monitor/chatgpt",
                       "{\"prompt\":\"a [fake:stall]\",\"country\":\"US\"}", 0, NULL, 10000);
    assert_true(driver_finish(&d, 10000));
    assert_int_equal(d.calls[a].reply.status, 504);
    assert_int_equal(d.calls[b].reply.status, 504);
    assert_string_equal(http_error_code(&d.calls[b].reply), "UPSTREAM_TIMEOUT");
    /* B went out once, A once. */
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 2);
    assert_int_equal(proxy_counter(&proxy, "upstream.calls"), 2);
    driver_free(&d);
}

static int teardown(void **state)
{
    (void)state;
    if (drv.multi != NULL)
        driver_free(&drv);
    free(asked);
    asked = NULL;
    proc_stop(&proxy);
    proc_stop(&fake);
    return 0;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_resend_on_a_dead_connection, teardown),
        cmocka_unit_test_teardown(test_budget_spent_waiting, teardown),
        cmocka_unit_test_teardown(test_upstream_chaos, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
