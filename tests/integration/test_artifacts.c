/* test_artifacts.c: capture of cloro's expiring HTML artifacts on the wire.
 * Every html URL of an allowed host in a stored answer is downloaded once
 * before it expires upstream, survives a restart while pending, rides out a
 * flaky artifact host, and is served afterwards from the proxy's copy (gzip,
 * ETag, 304) under the rewritten link of fresh and cached answers. Other
 * hosts are never fetched nor rewritten; oversized pages are not kept; a
 * page never captured is 410 ARTIFACT_EXPIRED, an unknown one 404.
 *
 * The fake mints <fake>/results/<uuid>/page-<n>.html, serves it for its
 * artifact_ttl_s (short here) and then answers 404; every "fetched once" is
 * asserted on its artifact_fetches. Rewritten links carry the proxy's default
 * public_url (the test cannot know the port beforehand): their path is
 * fetched from the proxy's real address. */
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
#include <unistd.h>
#include <zlib.h>

#define KEY          "sk_live_artifacts01"
#define TTL_S        4 /* the fake's artifact lifetime and the main proxy's artifact_ttl */
#define TTL_MS       (TTL_S * 1000)
#define PUBLIC_URL   "http://127.0.0.1:8787" /* the proxy's default public_url */
#define LINK_PREFIX  PUBLIC_URL "/_proxy/artifacts/"
#define HTML_TYPE    "text/html; charset=utf-8" /* what the fake sends */
#define PATH_MAX_LEN 160

static struct proc fake;
static struct proc proxy; /* artifact_hosts = the fake, artifact_ttl = TTL_S */
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};
static char ttl_arg[16];

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(ttl_arg, sizeof ttl_arg, "%d", TTL_S);
    const char *fake_args[] = {
        "--api-key",        KEY,     "--log-level", "warn", "--concurrency-limit", "100",
        "--artifact-ttl-s", ttl_arg, NULL};
    if (proc_start_fake(&fake, fake_args) != 0)
        return -1;
    snprintf(ttl_arg, sizeof ttl_arg, "%ds", TTL_S);
    const char *args[] = {"--artifact-hosts", fake.addr, "--artifact-ttl", ttl_arg, NULL};
    return proc_start_proxy(&proxy, fake.url, args, proxy_env);
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&proxy);
    proc_stop(&fake);
    curl_global_cleanup();
    return 0;
}

/* A test's own proxies (and the restart test's cache directory): stopped and
 * removed after the test, also when it fails half-way. */
static struct proc own[2];
static char own_dir[64];

static int stop_own(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        if (own[i].pid > 0 || own[i].dir[0] != '\0')
            proc_stop(&own[i]);
        memset(&own[i], 0, sizeof own[i]);
    }
    if (own_dir[0] != '\0')
        remove_tree(own_dir);
    own_dir[0] = '\0';
    return 0;
}

static int reset_fake(void **state)
{
    (void)state;
    char knobs[160];
    snprintf(knobs, sizeof knobs,
             "{\"artifact_fail\":0,\"artifact_bytes\":0,\"artifact_ttl_s\":%d,"
             "\"artifact_expired_status\":404,\"fail_500\":0,\"latency_ms\":0}",
             TTL_S);
    fake_configure(&fake, knobs);
    fake_reset(&fake);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static json_t *dig(json_t *root, const char *dotted)
{
    json_t *node = root;
    char *copy = strdup(dotted);
    char *save = NULL;
    for (char *seg = strtok_r(copy, ".", &save); seg != NULL && node != NULL;
         seg = strtok_r(NULL, ".", &save))
        node = json_object_get(node, seg);
    free(copy);
    return node;
}

/* A counter of GET /_proxy/stats ("artifacts.captured"); -1 when absent. */
static long long proxy_stat(const struct proc *p, const char *dotted)
{
    struct http_reply r;
    http_get(p, "/_proxy/stats", &r);
    json_t *j = http_json(&r);
    json_t *node = dig(j, dotted);
    long long v = json_is_integer(node) ? (long long)json_integer_value(node) : -1;
    json_decref(j);
    http_reply_free(&r);
    return v;
}

/* Polls until proxy_stat(path) >= value or timeout_ms passed; the last value. */
static long long proxy_wait_stat(const struct proc *p, const char *dotted, long long value,
                                 long long timeout_ms)
{
    long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    long long v;
    for (;;) {
        v = proxy_stat(p, dotted);
        if (v >= value || now_ms() >= deadline)
            return v;
        sleep_ms(20);
    }
}

static void dump_artifact_stats(const struct proc *p, const char *why)
{
    struct http_reply r;
    http_get(p, "/_proxy/stats", &r);
    json_t *j = http_json(&r);
    char *s = json_dumps(json_object_get(j, "artifacts"), JSON_COMPACT);
    json_t *fs = fake_stats(&fake);
    fprintf(stderr,
            "%s: proxy artifacts %s; fake artifact_fetches %lld expired %lld failures %lld\n", why,
            s ? s : "(none)",
            (long long)json_integer_value(json_object_get(fs, "artifact_fetches")),
            (long long)json_integer_value(json_object_get(fs, "artifact_expired")),
            (long long)json_integer_value(json_object_get(fs, "artifact_failures")));
    json_decref(fs);
    free(s);
    json_decref(j);
    http_reply_free(&r);
}

static void ask(const struct proc *p, const char *endpoint, const char *body,
                struct http_reply *out)
{
    const char *headers[] = {"Content-Type: application/json", NULL};
    http_post(p, endpoint, body, headers, out);
}

static void assert_header(const struct http_reply *r, const char *name, const char *expected)
{
    const char *v = http_header(r, name);
    if (v == NULL || strcmp(v, expected) != 0)
        fail_msg("%s: expected '%s', got '%s' (status %ld, body %.300s)", name, expected,
                 v != NULL ? v : "(absent)", r->status, r->body);
}

/* result.html of an answer: one string (AI engines) or an array (Google). Copies
 * the URLs into out; returns how many. Fails on an answer without any. */
static int answer_links(const struct http_reply *r, char out[][PATH_MAX_LEN * 2], int max)
{
    json_t *j = http_json(r);
    json_t *html = dig(j, "result.html");
    int n = 0;
    if (json_is_string(html)) {
        snprintf(out[n++], PATH_MAX_LEN * 2, "%s", json_string_value(html));
    } else if (json_is_array(html)) {
        size_t i;
        json_t *v;
        json_array_foreach(html, i, v)
        {
            if (n < max && json_is_string(v))
                snprintf(out[n++], PATH_MAX_LEN * 2, "%s", json_string_value(v));
        }
    }
    json_decref(j);
    if (n == 0)
        fail_msg("no result.html in the answer (status %ld): %.400s", r->status, r->body);
    return n;
}

/* A rewritten link's path on the proxy: asserts the documented form
 * <public_url>/_proxy/artifacts/<uuid>/page-<page>.html. */
static const char *proxy_path_of(const char *link, int page)
{
    if (strncmp(link, LINK_PREFIX, strlen(LINK_PREFIX)) != 0)
        fail_msg("html URL not rewritten to the proxy: %s", link);
    const char *uuid = link + strlen(LINK_PREFIX);
    char id[37];
    snprintf(id, sizeof id, "%.36s", uuid);
    char tail[32];
    snprintf(tail, sizeof tail, "/page-%d.html", page);
    if (!is_uuid(id) || strcmp(uuid + 36, tail) != 0)
        fail_msg("rewritten URL not <uuid>%s: %s", tail, link);
    return link + strlen(PUBLIC_URL);
}

/* The fake's own URL of a proxy artifact path. */
static void fake_url_of(const char *proxy_path, char *out, size_t len)
{
    int n =
        snprintf(out, len, "%s/results/%s", fake.url, proxy_path + strlen("/_proxy/artifacts/"));
    assert_true(n > 0 && (size_t)n < len);
}

/* The marker every page of the fake carries: data-artifact="<uuid>" data-page="<n>". */
static void assert_is_page(const struct http_reply *r, const char *proxy_path)
{
    const char *uuid = proxy_path + strlen("/_proxy/artifacts/");
    int page = atoi(uuid + 36 + strlen("/page-"));
    char marker[96];
    snprintf(marker, sizeof marker, "data-artifact=\"%.36s\" data-page=\"%d\"", uuid, page);
    char *body = strndup(r->body, r->body_len);
    if (strstr(body, marker) == NULL)
        fail_msg("%s: the page served is not that artifact (status %ld): %.300s", proxy_path,
                 r->status, body);
    free(body);
}

static void get_url(const char *url, const char *const headers[], struct http_reply *out)
{
    http_call("GET", url, NULL, headers, out);
}

static void get_proxy(const struct proc *p, const char *path, const char *const headers[],
                      struct http_reply *out)
{
    char *url = proc_url(p, path);
    get_url(url, headers, out);
    free(url);
}

/* gunzip of a gzip member; new buffer, length in *out_len; NULL on a bad stream. */
static char *gunzip(const char *data, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return NULL;
    size_t cap = len * 4 + 1024, used = 0;
    char *out = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)len;
    int rc;
    do {
        if (used == cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
        zs.next_out = (Bytef *)out + used;
        zs.avail_out = (uInt)(cap - used);
        rc = inflate(&zs, Z_NO_FLUSH);
        used = cap - zs.avail_out;
    } while (rc == Z_OK);
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || zs.avail_in != 0) {
        free(out);
        return NULL;
    }
    *out_len = used;
    return out;
}

static void sleep_until(long long t_ms)
{
    long long left = t_ms - now_ms();
    if (left > 0)
        sleep_ms((int)left);
}

static void start_proxy(struct proc *p, const char *const extra[])
{
    if (proc_start_proxy(p, fake.url, extra, proxy_env) != 0)
        fail_msg("the proxy did not start with these flags (see its log above)");
}

/* A chatgpt question (one page) or a Google one with two pages, include.html. */
static void question(char *body, size_t len, const char *tag, int i, bool google)
{
    if (google)
        snprintf(body, len,
                 "{\"query\":\"%s %d\",\"country\":\"US\",\"pages\":2,\"include\":{\"html\":true}}",
                 tag, i);
    else
        snprintf(body, len, "{\"prompt\":\"%s %d\",\"country\":\"US\",\"include\":{\"html\":true}}",
                 tag, i);
}

/* Asks p the question and appends the proxy paths of its rewritten links. */
static int ask_and_collect(const struct proc *p, const char *tag, int i, bool google,
                           char paths[][PATH_MAX_LEN], int n, const char *expect_cache)
{
    char body[256];
    question(body, sizeof body, tag, i, google);
    struct http_reply r;
    ask(p, google ? "/v1/monitor/google" : "/v1/monitor/chatgpt", body, &r);
    if (r.status != 200)
        fail_msg("%s: status %ld: %.300s", body, r.status, r.body);
    if (expect_cache != NULL)
        assert_header(&r, "X-Cache", expect_cache);
    char links[4][PATH_MAX_LEN * 2];
    int got = answer_links(&r, links, 4);
    assert_int_equal(got, google ? 2 : 1);
    for (int k = 0; k < got; k++)
        snprintf(paths[n + k], PATH_MAX_LEN, "%s", proxy_path_of(links[k], k + 1));
    http_reply_free(&r);
    return n + got;
}

/* ---- tests ------------------------------------------------------------------ */

#define MANY_ANSWERS 200
static char many_paths[MANY_ANSWERS * 2][PATH_MAX_LEN];

/* 200 answers (chatgpt, and Google with 2 pages): every artifact captured
 * before it expires, each fetched once; after expiry upstream every link
 * still works, with the bytes the fake served. */
static void test_every_artifact_captured_once_before_expiry(void **state)
{
    (void)state;
    long long captured0 = proxy_stat(&proxy, "artifacts.captured");
    long long lost0 = proxy_stat(&proxy, "artifacts.lost");
    long long downloads0 = proxy_stat(&proxy, "artifacts.downloads");
    long long failures0 = proxy_stat(&proxy, "artifacts.failures");
    assert_true(captured0 >= 0); /* the stats have an "artifacts" object */

    long long t_first = now_ms();
    int n = 0;
    for (int i = 0; i < MANY_ANSWERS; i++)
        n = ask_and_collect(&proxy, "many", i, i % 2 == 1, many_paths, n, "MISS");
    long long t_last = now_ms();
    assert_int_equal(n, MANY_ANSWERS / 2 * 3);
    fprintf(stderr, "test_artifacts: %d answers (%d artifacts) in %lld ms\n", MANY_ANSWERS, n,
            t_last - t_first);

    /* A few pages straight from the fake while they are live: the newest
     * ones (on a loaded machine the first may be past the short ttl). */
    const int picks[] = {n - 4, n - 3, n - 2, n - 1};
    struct http_reply direct[4];
    int direct_fetches = 0;
    for (int k = 0; k < 4; k++) {
        char url[PATH_MAX_LEN * 2];
        fake_url_of(many_paths[picks[k]], url, sizeof url);
        get_url(url, NULL, &direct[k]);
        direct_fetches++;
        assert_int_equal(direct[k].status, 200);
        assert_is_page(&direct[k], many_paths[picks[k]]);
    }

    /* All captured before the last answer's artifacts expire upstream (the
     * fake serves nothing after its ttl, so a capture is one before expiry). */
    long long captured =
        proxy_wait_stat(&proxy, "artifacts.captured", captured0 + n, t_last + TTL_MS - now_ms());
    if (captured != captured0 + n)
        dump_artifact_stats(&proxy, "not all captured in time");
    assert_int_equal(captured - captured0, n);
    assert_int_equal(proxy_stat(&proxy, "artifacts.pending"), 0);
    assert_int_equal(proxy_stat(&proxy, "artifacts.lost") - lost0, 0);
    assert_int_equal(proxy_stat(&proxy, "artifacts.downloads") - downloads0, n);
    assert_int_equal(proxy_stat(&proxy, "artifacts.failures") - failures0, 0);
    assert_true(proxy_stat(&proxy, "artifacts.bytes") > 0);

    /* Expired upstream. */
    sleep_until(t_last + TTL_MS + 300);
    char url[PATH_MAX_LEN * 2];
    fake_url_of(many_paths[picks[3]], url, sizeof url);
    struct http_reply r;
    get_url(url, NULL, &r);
    direct_fetches++;
    assert_int_equal(r.status, 404);
    http_reply_free(&r);

    /* Every link, from the proxy's copy. */
    for (int i = 0; i < n; i++) {
        get_proxy(&proxy, many_paths[i], NULL, &r);
        if (r.status != 200)
            fail_msg("%s after expiry: %ld %.300s", many_paths[i], r.status, r.body);
        assert_header(&r, "Content-Type", HTML_TYPE);
        assert_is_page(&r, many_paths[i]);
        for (int k = 0; k < 4; k++) {
            if (picks[k] == i) {
                assert_int_equal(r.body_len, direct[k].body_len);
                assert_memory_equal(r.body, direct[k].body, r.body_len);
            }
        }
        http_reply_free(&r);
    }
    for (int k = 0; k < 4; k++)
        http_reply_free(&direct[k]);

    /* Each artifact went upstream exactly once (plus the test's own fetches). */
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), n + direct_fetches);
}

/* The local copy as HTTP: gzip when asked (the same bytes once inflated),
 * identity otherwise, ETag and 304 on If-None-Match. */
static void test_copy_served_gzip_with_etag(void **state)
{
    (void)state;
    char paths[2][PATH_MAX_LEN];
    long long captured0 = proxy_stat(&proxy, "artifacts.captured");
    ask_and_collect(&proxy, "gzip", 0, false, paths, 0, "MISS");
    assert_int_equal(proxy_wait_stat(&proxy, "artifacts.captured", captured0 + 1, TTL_MS - 500),
                     captured0 + 1);
    char url[PATH_MAX_LEN * 2];
    fake_url_of(paths[0], url, sizeof url);
    struct http_reply orig, plain, zipped, again;
    get_url(url, NULL, &orig);
    assert_int_equal(orig.status, 200);

    get_proxy(&proxy, paths[0], NULL, &plain);
    assert_int_equal(plain.status, 200);
    assert_header(&plain, "Content-Type", HTML_TYPE);
    const char *enc = http_header(&plain, "Content-Encoding");
    if (enc != NULL && strcmp(enc, "identity") != 0)
        fail_msg("Content-Encoding %s without Accept-Encoding", enc);
    assert_int_equal(plain.body_len, orig.body_len);
    assert_memory_equal(plain.body, orig.body, orig.body_len);
    const char *etag = http_header(&plain, "ETag");
    assert_non_null(etag);

    const char *gz[] = {"Accept-Encoding: gzip", NULL};
    get_proxy(&proxy, paths[0], gz, &zipped);
    assert_int_equal(zipped.status, 200);
    assert_header(&zipped, "Content-Encoding", "gzip");
    assert_header(&zipped, "Content-Type", HTML_TYPE);
    size_t inflated_len = 0;
    char *inflated = gunzip(zipped.body, zipped.body_len, &inflated_len);
    if (inflated == NULL)
        fail_msg("the gzip body does not inflate (%zu bytes)", zipped.body_len);
    assert_int_equal(inflated_len, orig.body_len);
    assert_memory_equal(inflated, orig.body, orig.body_len);
    free(inflated);
    const char *zetag = http_header(&zipped, "ETag");
    assert_non_null(zetag);

    /* Revalidation, for each representation with its own ETag. */
    char inm[200];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *h1[] = {inm, NULL};
    get_proxy(&proxy, paths[0], h1, &again);
    assert_int_equal(again.status, 304);
    assert_int_equal(again.body_len, 0);
    http_reply_free(&again);
    char zinm[200];
    snprintf(zinm, sizeof zinm, "If-None-Match: %s", zetag);
    const char *h2[] = {"Accept-Encoding: gzip", zinm, NULL};
    get_proxy(&proxy, paths[0], h2, &again);
    assert_int_equal(again.status, 304);
    assert_int_equal(again.body_len, 0);
    http_reply_free(&again);
    const char *h3[] = {"If-None-Match: \"not-this-one\"", NULL};
    get_proxy(&proxy, paths[0], h3, &again);
    assert_int_equal(again.status, 200);
    http_reply_free(&again);

    /* The CLI, on the running server's store: listed, and the same page. */
    char dir[400], id[PATH_MAX_LEN];
    snprintf(dir, sizeof dir, "%s/cache", proxy.dir);
    const char *prefix = "/_proxy/artifacts/";
    snprintf(id, sizeof id, "%.*s", (int)(strlen(paths[0]) - strlen(prefix) - 5),
             paths[0] + strlen(prefix));
    struct cli_result cli;
    cli_run(&cli, (const char *[]){"artifacts", "ls", "--cache-dir", dir, NULL});
    assert_int_equal(cli.status, 0);
    assert_non_null(strstr(cli.output, id));
    assert_non_null(strstr(cli.output, "captured"));
    free(cli.output);
    cli_run(&cli, (const char *[]){"artifacts", "get", id, "--cache-dir", dir, NULL});
    assert_int_equal(cli.status, 0);
    assert_non_null(strstr(cli.output, orig.body));
    free(cli.output);
    cli_run(&cli, (const char *[]){"artifacts", "get", "no-such/page-1", "--cache-dir", dir, NULL});
    assert_int_equal(cli.status, 1);
    free(cli.output);
    cli_run(&cli, (const char *[]){"artifacts", "retry", "--cache-dir", dir, NULL});
    assert_int_equal(cli.status, 2); /* says what to retry */
    free(cli.output);

    http_reply_free(&orig);
    http_reply_free(&plain);
    http_reply_free(&zipped);
    /* One fetch by the proxy, one by the test. */
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), 2);
}

/* Jobs still pending when the proxy stops resume on the next start. */
static void test_pending_jobs_resume_after_restart(void **state)
{
    (void)state;
    snprintf(own_dir, sizeof own_dir, "/tmp/cloro-it-artifacts-XXXXXX");
    assert_non_null(mkdtemp(own_dir));
    char cache_dir[96];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", own_dir);
    /* A longer window than the others: a stop and a start fit in it. */
    const char *args[] = {"--cache-dir", cache_dir, "--artifact-hosts", fake.addr, "--artifact-ttl",
                          "10s",         NULL};
    const long long window_ms = 10000;

    fake_configure(&fake, "{\"artifact_fail\":1.0,\"artifact_ttl_s\":10}");
    struct proc *first = &own[0];
    start_proxy(first, args);
    char paths[16][PATH_MAX_LEN];
    int n = 0;
    for (int i = 0; i < 6; i++)
        n = ask_and_collect(first, "resume", i, i % 3 == 2, paths, n, "MISS");
    long long t_last = now_ms();
    assert_int_equal(n, 8);
    /* Every job tried (and failed) at least once, none done. */
    if (proxy_wait_stat(first, "artifacts.failures", n, 2000) < n)
        dump_artifact_stats(first, "jobs not all attempted");
    assert_true(proxy_stat(first, "artifacts.failures") >= n);
    assert_int_equal(proxy_stat(first, "artifacts.captured"), 0);
    /* The job counters are the store's: committed by the writer a moment later. */
    long long pending = proxy_wait_stat(first, "artifacts.pending", n, 2000);
    if (pending != n)
        dump_artifact_stats(first, "jobs not all pending");
    assert_int_equal(pending, n);
    proc_stop(first);
    assert_int_equal(first->exit_status, 0);

    fake_configure(&fake, "{\"artifact_fail\":0}");
    long long failures_at_fake = fake_stat(&fake, "artifact_failures");
    struct proc *second = &own[1];
    start_proxy(second, args);
    long long captured =
        proxy_wait_stat(second, "artifacts.captured", n, t_last + window_ms - now_ms());
    if (captured != n)
        dump_artifact_stats(second, "pending jobs did not resume");
    assert_int_equal(captured, n);
    assert_int_equal(proxy_stat(second, "artifacts.pending"), 0);
    assert_int_equal(proxy_stat(second, "artifacts.lost"), 0);
    assert_int_equal(fake_stat(&fake, "artifact_failures"), failures_at_fake);
    /* The successful fetches: one per artifact. */
    assert_int_equal(fake_stat(&fake, "artifact_fetches") - failures_at_fake, n);
    struct http_reply r;
    get_proxy(second, paths[n - 1], NULL, &r);
    assert_int_equal(r.status, 200);
    assert_is_page(&r, paths[n - 1]);
    http_reply_free(&r);
}

/* Half of the artifact host's answers are 500s: retries still capture all
 * within their window. */
static void test_flaky_artifact_host_still_captured(void **state)
{
    (void)state;
    long long captured0 = proxy_stat(&proxy, "artifacts.captured");
    long long lost0 = proxy_stat(&proxy, "artifacts.lost");
    long long downloads0 = proxy_stat(&proxy, "artifacts.downloads");
    long long failures0 = proxy_stat(&proxy, "artifacts.failures");
    long long retries0 = proxy_stat(&proxy, "artifacts.retries");
    fake_configure(&fake, "{\"artifact_fail\":0.5}");
    char paths[32][PATH_MAX_LEN];
    int n = 0;
    for (int i = 0; i < 10; i++)
        n = ask_and_collect(&proxy, "flaky", i, i % 2 == 1, paths, n, "MISS");
    long long t_last = now_ms();
    assert_int_equal(n, 15);
    long long captured =
        proxy_wait_stat(&proxy, "artifacts.captured", captured0 + n, t_last + TTL_MS - now_ms());
    /* Settled one way or the other by now. */
    proxy_wait_stat(&proxy, "artifacts.lost", lost0 + (captured0 + n - captured), 1000);
    if (captured != captured0 + n)
        dump_artifact_stats(&proxy, "not all captured with artifact_fail 0.5");
    assert_int_equal(proxy_stat(&proxy, "artifacts.lost") - lost0, 0);
    assert_int_equal(captured - captured0, n);
    long long fake_failures = fake_stat(&fake, "artifact_failures");
    assert_true(fake_failures >= 1);
    /* The proxy counts what the host saw: every attempt, every failure. */
    assert_int_equal(proxy_stat(&proxy, "artifacts.failures") - failures0, fake_failures);
    assert_int_equal(proxy_stat(&proxy, "artifacts.downloads") - downloads0,
                     fake_stat(&fake, "artifact_fetches"));
    assert_int_equal(proxy_stat(&proxy, "artifacts.retries") - retries0, fake_failures);
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), n + fake_failures);
}

/* URLs of hosts not in artifact_hosts: never fetched, never rewritten. */
static void test_other_hosts_never_fetched_nor_rewritten(void **state)
{
    (void)state;
    const char *args[] = {"--artifact-hosts", "cdn.cloro.dev", "--artifact-ttl", ttl_arg, NULL};
    struct proc *strict = &own[0];
    start_proxy(strict, args);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/results/", fake.url);
    for (int i = 0; i < 2; i++) {
        char body[256];
        question(body, sizeof body, "elsewhere", i, i == 1);
        struct http_reply r;
        ask(strict, i == 1 ? "/v1/monitor/google" : "/v1/monitor/chatgpt", body, &r);
        assert_int_equal(r.status, 200);
        char links[4][PATH_MAX_LEN * 2];
        int got = answer_links(&r, links, 4);
        assert_int_equal(got, i == 1 ? 2 : 1);
        for (int k = 0; k < got; k++) {
            if (strncmp(links[k], prefix, strlen(prefix)) != 0)
                fail_msg("a URL of another host was changed: %s", links[k]);
            /* Unknown to the proxy too. */
            char path[PATH_MAX_LEN];
            snprintf(path, sizeof path, "/_proxy/artifacts/%s", links[k] + strlen(prefix));
            struct http_reply a;
            get_proxy(strict, path, NULL, &a);
            assert_int_equal(a.status, 404);
            assert_string_equal(http_error_code(&a), "NOT_FOUND");
            http_reply_free(&a);
        }
        http_reply_free(&r);
    }
    sleep_ms(1000);
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), 0);
    assert_int_equal(proxy_stat(strict, "artifacts.pending"), 0);
    assert_int_equal(proxy_stat(strict, "artifacts.captured"), 0);
    assert_int_equal(proxy_stat(strict, "artifacts.downloads"), 0);
}

/* rewrite_artifact_urls off: answers keep cloro's URLs, the copies are
 * still captured and served. */
static void test_rewrite_off_still_captures(void **state)
{
    (void)state;
    const char *args[] = {"--artifact-hosts",
                          fake.addr,
                          "--artifact-ttl",
                          ttl_arg,
                          "--rewrite-artifact-urls",
                          "false",
                          NULL};
    struct proc *plain = &own[0];
    start_proxy(plain, args);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/results/", fake.url);
    char body[256];
    question(body, sizeof body, "unrewritten", 0, false);
    struct http_reply r;
    char links[4][PATH_MAX_LEN * 2];
    for (int round = 0; round < 2; round++) {
        ask(plain, "/v1/monitor/chatgpt", body, &r);
        assert_int_equal(r.status, 200);
        assert_header(&r, "X-Cache", round == 0 ? "MISS" : "HIT");
        assert_int_equal(answer_links(&r, links, 4), 1);
        if (strncmp(links[0], prefix, strlen(prefix)) != 0)
            fail_msg("rewritten although rewrite_artifact_urls is false: %s", links[0]);
        http_reply_free(&r);
    }
    assert_int_equal(proxy_wait_stat(plain, "artifacts.captured", 1, TTL_MS - 500), 1);
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/_proxy/artifacts/%s", links[0] + strlen(prefix));
    get_proxy(plain, path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_is_page(&r, path);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), 1);
}

/* A cached answer replayed after the upstream copies expired links to
 * working local copies. */
static void test_cached_answer_links_to_local_copy(void **state)
{
    (void)state;
    char paths[4][PATH_MAX_LEN], again[4][PATH_MAX_LEN];
    long long captured0 = proxy_stat(&proxy, "artifacts.captured");
    int n = ask_and_collect(&proxy, "replayed", 0, false, paths, 0, "MISS");
    n = ask_and_collect(&proxy, "replayed", 1, true, paths, n, "MISS");
    long long t_last = now_ms();
    assert_int_equal(
        proxy_wait_stat(&proxy, "artifacts.captured", captured0 + n, t_last + TTL_MS - now_ms()),
        captured0 + n);
    sleep_until(t_last + TTL_MS + 300);
    char url[PATH_MAX_LEN * 2];
    fake_url_of(paths[0], url, sizeof url);
    struct http_reply r;
    get_url(url, NULL, &r);
    assert_int_equal(r.status, 404); /* gone upstream */
    http_reply_free(&r);

    int m = ask_and_collect(&proxy, "replayed", 0, false, again, 0, "HIT");
    m = ask_and_collect(&proxy, "replayed", 1, true, again, m, "HIT");
    assert_int_equal(m, n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(again[i], paths[i]);
        get_proxy(&proxy, again[i], NULL, &r);
        if (r.status != 200)
            fail_msg("%s from a cached answer: %ld %.300s", again[i], r.status, r.body);
        assert_is_page(&r, again[i]);
        http_reply_free(&r);
    }
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), n + 1);
    assert_int_equal(fake_stat(&fake, "requests_total"), 2); /* the replays were hits */
}

/* Oversized pages are not kept (the answer is unaffected); a page never
 * captured is 410 ARTIFACT_EXPIRED once gone; an unknown one 404. */
static void test_oversized_lost_and_unknown(void **state)
{
    (void)state;
    const char *args[] = {"--artifact-hosts",
                          fake.addr,
                          "--artifact-ttl",
                          ttl_arg,
                          "--max-artifact-bytes",
                          "1KiB",
                          NULL};
    struct proc *small = &own[0];
    start_proxy(small, args);
    fake_configure(&fake, "{\"artifact_bytes\":4096}");
    char body[256];
    question(body, sizeof body, "oversized", 0, false);
    struct http_reply r;
    ask(small, "/v1/monitor/chatgpt", body, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "MISS");
    json_t *answer = http_json(&r);
    assert_true(json_is_true(json_object_get(answer, "success")));
    assert_true(json_is_string(dig(answer, "result.text")));
    json_decref(answer);
    char links[4][PATH_MAX_LEN * 2];
    assert_int_equal(answer_links(&r, links, 4), 1);
    char big[PATH_MAX_LEN];
    snprintf(big, sizeof big, "%s", proxy_path_of(links[0], 1));
    http_reply_free(&r);
    long long oversized = proxy_wait_stat(small, "artifacts.oversized", 1, TTL_MS - 500);
    if (oversized < 1)
        dump_artifact_stats(small, "oversized not counted");
    assert_true(oversized >= 1);
    assert_int_equal(proxy_stat(small, "artifacts.captured"), 0);

    /* A page whose every fetch fails. */
    fake_configure(&fake, "{\"artifact_bytes\":0,\"artifact_fail\":1.0}");
    question(body, sizeof body, "never captured", 0, false);
    ask(small, "/v1/monitor/chatgpt", body, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(answer_links(&r, links, 4), 1);
    char never[PATH_MAX_LEN];
    snprintf(never, sizeof never, "%s", proxy_path_of(links[0], 1));
    http_reply_free(&r);
    long long t_last = now_ms();
    assert_true(fake_wait_stat(&fake, "artifact_failures", 1, 3000));

    sleep_until(t_last + TTL_MS + 300);
    get_proxy(small, big, NULL, &r);
    if (r.status == 200)
        fail_msg("an oversized artifact was served: %zu bytes", r.body_len);
    fprintf(stderr, "test_artifacts: oversized page after expiry: %ld %s\n", r.status,
            http_error_code(&r));
    assert_int_equal(r.status, 410);
    http_reply_free(&r);
    get_proxy(small, never, NULL, &r);
    assert_int_equal(r.status, 410);
    assert_string_equal(http_error_code(&r), "ARTIFACT_EXPIRED");
    json_t *env = http_json(&r);
    assert_true(json_is_false(json_object_get(env, "success")));
    json_decref(env);
    http_reply_free(&r);
    assert_true(proxy_stat(small, "artifacts.lost") >= 1);
    assert_int_equal(proxy_stat(small, "artifacts.pending"), 0);
    assert_int_equal(proxy_stat(small, "artifacts.captured"), 0);

    get_proxy(small, "/_proxy/artifacts/0b6e1c52-3f4a-4d7e-9c1b-2a5f6e7d8c9b/page-1.html", NULL,
              &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(http_error_code(&r), "NOT_FOUND");
    http_reply_free(&r);

    /* The CLI puts lost jobs back in the queue. */
    char dir[400];
    snprintf(dir, sizeof dir, "%s/cache", small->dir);
    struct cli_result cli;
    cli_run(&cli, (const char *[]){"artifacts", "retry", "--all-lost", "--cache-dir", dir, NULL});
    assert_int_equal(cli.status, 0);
    assert_non_null(strstr(cli.output, "requeued 2 artifacts"));
    free(cli.output);
    cli_run(&cli,
            (const char *[]){"artifacts", "ls", "--state", "pending", "--cache-dir", dir, NULL});
    assert_int_equal(cli.status, 0);
    assert_non_null(strstr(cli.output, "pending"));
    free(cli.output);
}

/* A request for a page still pending fetches it at once and waits for it. */
static void test_pending_page_fetched_on_request(void **state)
{
    (void)state;
    fake_configure(&fake, "{\"artifact_fail\":1.0}");
    char paths[2][PATH_MAX_LEN];
    ask_and_collect(&proxy, "on demand", 0, false, paths, 0, "MISS");
    /* Two failed attempts: the next retry is 1-2 s away. */
    assert_true(fake_wait_stat(&fake, "artifact_failures", 2, 3000));
    fake_configure(&fake, "{\"artifact_fail\":0}");
    long long t0 = now_ms();
    struct http_reply r;
    get_proxy(&proxy, paths[0], NULL, &r);
    long long waited = now_ms() - t0;
    fprintf(stderr, "test_artifacts: pending page answered in %lld ms\n", waited);
    if (r.status != 200)
        fail_msg("pending page: %ld %.300s", r.status, r.body);
    assert_is_page(&r, paths[0]);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "artifact_fetches"),
                     fake_stat(&fake, "artifact_failures") + 1);
}

/* A task the proxy created and followed: its result's artifact is captured
 * (the result is stored as the sync answer it stands for) and its link is
 * rewritten in the task's answer like a sync answer's. */
static void test_async_task_result_captured(void **state)
{
    (void)state;
    long long captured0 = proxy_stat(&proxy, "artifacts.captured");
    struct http_reply r;
    ask(&proxy, "/v1/async/task",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"async artifact\","
        "\"country\":\"US\",\"include\":{\"html\":true}}}",
        &r);
    assert_int_equal(r.status, 200);
    json_t *created = http_json(&r);
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(dig(created, "task.id")));
    json_decref(created);
    http_reply_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", id);
    const char *status = "";
    json_t *task = NULL;
    for (int i = 0; i < 300; i++) {
        json_decref(task);
        get_proxy(&proxy, path, NULL, &r);
        assert_int_equal(r.status, 200);
        task = http_json(&r);
        http_reply_free(&r);
        status = json_string_value(dig(task, "task.status"));
        if (status != NULL && strcmp(status, "COMPLETED") == 0)
            break;
        sleep_ms(20);
    }
    assert_string_equal(status, "COMPLETED");
    const char *link = json_string_value(dig(task, "response.html"));
    assert_non_null(link);
    assert_non_null(strstr(link, "/_proxy/artifacts/"));
    char local[PATH_MAX_LEN];
    snprintf(local, sizeof local, "%s", proxy_path_of(link, 1));
    json_decref(task);
    assert_int_equal(proxy_wait_stat(&proxy, "artifacts.captured", captured0 + 1, TTL_MS - 500),
                     captured0 + 1);
    get_proxy(&proxy, local, NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_artifact_captured_once_before_expiry, reset_fake,
                                        stop_own),
        cmocka_unit_test_setup_teardown(test_copy_served_gzip_with_etag, reset_fake, stop_own),
        cmocka_unit_test_setup_teardown(test_pending_jobs_resume_after_restart, reset_fake,
                                        stop_own),
        cmocka_unit_test_setup_teardown(test_flaky_artifact_host_still_captured, reset_fake,
                                        stop_own),
        cmocka_unit_test_setup_teardown(test_other_hosts_never_fetched_nor_rewritten, reset_fake,
                                        stop_own),
        cmocka_unit_test_setup_teardown(test_rewrite_off_still_captures, reset_fake, stop_own),
        cmocka_unit_test_setup_teardown(test_cached_answer_links_to_local_copy, reset_fake,
                                        stop_own),
        cmocka_unit_test_setup_teardown(test_oversized_lost_and_unknown, reset_fake, stop_own),
        cmocka_unit_test_setup_teardown(test_pending_page_fetched_on_request, reset_fake, stop_own),
        cmocka_unit_test_setup_teardown(test_async_task_result_captured, reset_fake, stop_own),
    };
    return cmocka_run_group_tests_name("integration_artifacts", tests, group_setup, group_teardown);
}
