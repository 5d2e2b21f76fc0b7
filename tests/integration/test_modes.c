/* test_modes.c: the proxy's modes and samples on the wire (mode.h, key.h).
 *
 *   offline  a cache filled by an online run replays with the upstream
 *            unroutable: hits, stale entries (X-Cache: STALE), async task
 *            submissions and captured artifacts are served at once; misses
 *            are 504 OFFLINE_CACHE_MISS naming the key; nothing is asked of
 *            anyone: the fake counts no request and no connection, not even
 *            for an artifact still to capture;
 *   switch   GET/POST /_proxy/mode under the admin token: offline at run time
 *            stops every upstream call (task polls too) and online resumes
 *            them; bad bodies are 400; the mode shows in stats and metrics;
 *   record   answers stored are pinned: past cache_ttl they are still fresh
 *            hits; entries stored before stay as they were;
 *   refresh  every call goes upstream (coalesced all the same) and replaces
 *            the stored answer, seen by the fake's X-Request-ID of each;
 *   samples  X-Cache-Sample 1..3 of one prompt are three paid calls, then
 *            three hits; sample 1 is the key without the header; `cache ls`
 *            groups them, `cache show` names the sample; 0, 101 and other
 *            spellings are 400 without any upstream call; async submissions
 *            are keyed by sample too.
 * Every "asked upstream" or "not asked" is what the fake counted. */
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
#include <unistd.h>

#define KEY        "sk_live_modestest01"
#define ADMIN      "adm-modes-0123456789"
#define PUBLIC_URL "http://127.0.0.1:8787" /* the proxy's default public_url */
#define NOWHERE    "http://10.255.255.1:9" /* unroutable: a connect would hang */

static struct proc fake;
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};
static const char *const admin_env[] = {"CLORO_API_KEY=" KEY, "CLORO_ADMIN_TOKEN=" ADMIN, NULL};

/* Each test's own proxies and cache directory, removed after it, also when
 * it fails half-way. */
static struct proc own[3];
static char own_dir[64];

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *fake_args[] = {"--api-key",
                               KEY,
                               "--log-level",
                               "warn",
                               "--concurrency-limit",
                               "100",
                               "--artifact-ttl-s",
                               "3600",
                               "--task-duration-ms",
                               "1200",
                               NULL};
    return proc_start_fake(&fake, fake_args);
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&fake);
    curl_global_cleanup();
    return 0;
}

static int reset_fake(void **state)
{
    (void)state;
    fake_configure(&fake, "{\"latency_ms\":0,\"artifact_fail\":0,\"fail_503\":0}");
    fake_reset(&fake);
    return 0;
}

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

/* A fresh directory for a cache shared by two proxies: <own_dir>/cache. */
static void make_cache_dir(char *cache_dir, size_t size)
{
    snprintf(own_dir, sizeof own_dir, "/tmp/cloro-it-modes-XXXXXX");
    assert_non_null(mkdtemp(own_dir));
    snprintf(cache_dir, size, "%s/cache", own_dir);
}

/* ---- helpers ---------------------------------------------------------------- */

/* POSTs body to p's path with Content-Type and up to two more header lines
 * (h2 only after h1; NULL ends the list). */
static void ask_with(const struct proc *p, const char *path, const char *body, const char *h1,
                     const char *h2, struct http_reply *out)
{
    const char *headers[] = {"Content-Type: application/json", h1, h2, NULL};
    http_post(p, path, body, headers, out);
}

static void ask(const struct proc *p, const char *path, const char *body, struct http_reply *out)
{
    ask_with(p, path, body, NULL, NULL, out);
}

/* A call to an admin route with the admin token. */
static void admin_call(const struct proc *p, const char *method, const char *path, const char *body,
                       struct http_reply *out)
{
    char *url = proc_url(p, path);
    const char *headers[] = {"Content-Type: application/json", "Authorization: Bearer " ADMIN,
                             NULL};
    assert_int_equal(http_call(method, url, body, headers, out), 0);
    free(url);
}

static void assert_header(const struct http_reply *r, const char *name, const char *expected)
{
    const char *v = http_header(r, name);
    if (v == NULL || strcmp(v, expected) != 0)
        fail_msg("%s: expected '%s', got '%s' (status %ld, body %.300s)", name, expected,
                 v != NULL ? v : "(absent)", r->status, r->body);
}

static void assert_header_has(const struct http_reply *r, const char *name, const char *needle)
{
    const char *v = http_header(r, name);
    if (v == NULL || strstr(v, needle) == NULL)
        fail_msg("%s: expected it to hold '%s', got '%s' (status %ld)", name, needle,
                 v != NULL ? v : "(absent)", r->status);
}

static char *header_copy(const struct http_reply *r, const char *name)
{
    const char *v = http_header(r, name);
    if (v == NULL)
        fail_msg("no %s header (status %ld, body %.300s)", name, r->status, r->body);
    return strdup(v);
}

/* /_proxy/stats of p (with the admin token: it works with or without one). */
static json_t *stats_of(const struct proc *p)
{
    struct http_reply r;
    admin_call(p, "GET", "/_proxy/stats", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = http_json(&r);
    http_reply_free(&r);
    return j;
}

static long long stat_of(const struct proc *p, const char *dotted)
{
    json_t *j = stats_of(p);
    json_t *node = json_dig(j, dotted);
    long long v = json_is_integer(node) ? (long long)json_integer_value(node) : -1;
    json_decref(j);
    return v;
}

static long long wait_stat(const struct proc *p, const char *dotted, long long value,
                           int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    long long v;
    while ((v = stat_of(p, dotted)) < value && now_ms() < deadline)
        sleep_ms(20);
    return v;
}

static void assert_mode(const struct proc *p, const char *want)
{
    json_t *j = stats_of(p);
    const char *mode = json_string_value(json_object_get(j, "mode"));
    if (mode == NULL || strcmp(mode, want) != 0)
        fail_msg("stats mode: expected %s, got %s", want, mode != NULL ? mode : "(none)");
    json_decref(j);
}

/* What the fake saw, read in one call (so one connection of its own). */
struct seen {
    long long requests, connections, artifact_fetches, polls;
};

static struct seen fake_seen(void)
{
    json_t *s = fake_stats(&fake);
    struct seen v = {
        .requests = json_integer_value(json_object_get(s, "requests_total")),
        .connections = json_integer_value(json_object_get(s, "connections_total")),
        .artifact_fetches = json_integer_value(json_object_get(s, "artifact_fetches")),
        .polls = json_integer_value(json_dig(s, "async.task_polls")),
    };
    json_decref(s);
    return v;
}

/* Nothing reached the fake between two reads but the second read itself. */
static void assert_fake_untouched(const struct seen *before)
{
    struct seen now = fake_seen();
    if (now.requests != before->requests || now.connections != before->connections + 1 ||
        now.artifact_fetches != before->artifact_fetches)
        fail_msg("the fake was reached: requests %lld -> %lld, connections %lld -> %lld (+1 "
                 "is this read), artifact fetches %lld -> %lld",
                 before->requests, now.requests, before->connections, now.connections,
                 before->artifact_fetches, now.artifact_fetches);
}

/* Asserts an OFFLINE_CACHE_MISS that names key and provider (key NULL: one
 * that names none), answered within 2 s. */
static void assert_offline_miss(const struct http_reply *r, long long took_ms, bool keyed,
                                const char *provider)
{
    if (r->status != 504 || strcmp(http_error_code(r), "OFFLINE_CACHE_MISS") != 0)
        fail_msg("expected 504 OFFLINE_CACHE_MISS, got %ld %s: %.300s", r->status,
                 http_error_code(r), r->body);
    if (took_ms > 2000)
        fail_msg("an offline miss took %lld ms: something waited on the network", took_ms);
    json_t *j = http_json(r);
    const char *key = json_string_value(json_dig(j, "error.details.key"));
    if (keyed) {
        assert_non_null(key);
        assert_int_equal(strlen(key), 64);
        assert_header(r, "X-Cache-Key", key);
        assert_string_equal(json_string_value(json_dig(j, "error.details.provider")), provider);
    } else {
        assert_null(key);
        assert_null(http_header(r, "X-Cache-Key"));
    }
    json_decref(j);
}

/* The path of a rewritten artifact link (PUBLIC_URL + path), from result.html. */
static char *artifact_path(const struct http_reply *r)
{
    json_t *j = http_json(r);
    const char *link = json_string_value(json_dig(j, "result.html"));
    if (link == NULL || strncmp(link, PUBLIC_URL "/_proxy/artifacts/", 37) != 0)
        fail_msg("no rewritten result.html in %.300s", r->body);
    char *path = strdup(link + strlen(PUBLIC_URL));
    json_decref(j);
    return path;
}

/* ---- offline ------------------------------------------------------------------ */

/* A cache filled online, replayed offline with the upstream unroutable. */
static void test_offline_replays_a_cache_without_network(void **state)
{
    (void)state;
    char cache_dir[96], hosts[80];
    make_cache_dir(cache_dir, sizeof cache_dir);
    snprintf(hosts, sizeof hosts, "%s", fake.addr);
    const char *online_args[] = {"--cache-dir",      cache_dir, "--cache-ttl", "2s",
                                 "--artifact-hosts", hosts,     NULL};
    struct proc *a = &own[0];
    assert_int_equal(proc_start_proxy(a, fake.url, online_args, proxy_env), 0);

    /* Online: a chatgpt answer with its page (captured), a gemini answer,
     * and one whose page the fake refuses to serve (still pending). */
    const char *q_chat = "{\"prompt\":\"offline replay\",\"country\":\"US\",\"include\":"
                         "{\"html\":true}}";
    const char *q_gem = "{\"prompt\":\"offline task\",\"country\":\"US\"}";
    const char *q_pending = "{\"prompt\":\"page never captured\",\"country\":\"US\",\"include\":"
                            "{\"html\":true}}";
    struct http_reply r;
    ask(a, "/v1/monitor/chatgpt", q_chat, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "MISS");
    char *chat_rid = header_copy(&r, "X-Request-ID");
    char *chat_key = header_copy(&r, "X-Cache-Key");
    char *chat_body = strndup(r.body, r.body_len);
    size_t chat_len = r.body_len;
    char *page = artifact_path(&r);
    http_reply_free(&r);
    assert_true(wait_stat(a, "artifacts.captured", 1, 10000) >= 1);
    ask(a, "/v1/monitor/gemini", q_gem, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    fake_configure(&fake, "{\"artifact_fail\":1.0}");
    ask(a, "/v1/monitor/chatgpt", q_pending, &r);
    assert_int_equal(r.status, 200);
    char *pending_page = artifact_path(&r);
    http_reply_free(&r);
    proc_stop(a); /* graceful: everything committed */
    memset(a, 0, sizeof *a);
    sleep_ms(2100); /* every entry is now past its 2 s */

    /* Offline, upstream unroutable: start-up itself reaches nobody (the
     * pending page is not fetched, no task is polled). */
    struct seen before = fake_seen();
    const char *offline_args[] = {
        "--cache-dir",   cache_dir,     "--mode", "offline",          "--artifact-hosts",
        hosts,           "--cache-ttl", "2s",     "--stale-if-error", "0",
        "--max-retries", "0",           NULL};
    struct proc *b = &own[1];
    assert_int_equal(proc_start_proxy(b, NOWHERE, offline_args, proxy_env), 0);
    assert_mode(b, "offline");

    /* An expired entry: served, STALE, byte for byte, the billed call's id. */
    long long t0 = now_ms();
    ask(b, "/v1/monitor/chatgpt", q_chat, &r);
    assert_true(now_ms() - t0 < 2000);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "STALE");
    assert_header_has(&r, "Cache-Status", "detail=offline");
    assert_header(&r, "X-Request-ID", chat_rid);
    assert_header(&r, "X-Cache-Key", chat_key);
    assert_header(&r, "X-Credits-Charged", "0");
    assert_int_equal(r.body_len, chat_len);
    assert_memory_equal(r.body, chat_body, chat_len);
    http_reply_free(&r);
    /* Whatever the client's directives: there is no upstream to ask. */
    ask_with(b, "/v1/monitor/chatgpt", q_chat, "Cache-Control: no-cache, max-age=0", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "STALE");
    http_reply_free(&r);

    /* Misses name their key, at once. */
    t0 = now_ms();
    ask(b, "/v1/monitor/chatgpt", "{\"prompt\":\"never asked\",\"country\":\"US\"}", &r);
    assert_offline_miss(&r, now_ms() - t0, true, "chatgpt");
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    t0 = now_ms();
    ask(b, "/v1/monitor/google", "{\"query\":\"never asked\",\"country\":\"US\"}", &r);
    assert_offline_miss(&r, now_ms() - t0, true, "google");
    http_reply_free(&r);
    /* A call the proxy cannot key: a miss too, naming no key. */
    t0 = now_ms();
    http_get(b, "/v1/credits", &r);
    assert_offline_miss(&r, now_ms() - t0, false, NULL);
    http_reply_free(&r);

    /* An async submission of a stored prompt completes from the cache; a
     * client's poll of it is answered from its record. */
    ask(b, "/v1/async/task",
        "{\"taskType\":\"GEMINI\",\"payload\":{\"prompt\":\"offline task\",\"country\":\"US\"}}",
        &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "HIT");
    json_t *task = http_json(&r);
    assert_string_equal(json_string_value(json_dig(task, "task.status")), "COMPLETED");
    char path[160];
    snprintf(path, sizeof path, "/v1/async/task/%s", json_string_value(json_dig(task, "task.id")));
    json_decref(task);
    http_reply_free(&r);
    http_get(b, path, &r);
    assert_int_equal(r.status, 200);
    task = http_json(&r);
    assert_string_equal(json_string_value(json_dig(task, "task.status")), "COMPLETED");
    assert_non_null(json_dig(task, "response"));
    json_decref(task);
    http_reply_free(&r);
    t0 = now_ms();
    ask(b, "/v1/async/task",
        "{\"taskType\":\"GEMINI\",\"payload\":{\"prompt\":\"not stored\",\"country\":\"US\"}}", &r);
    assert_offline_miss(&r, now_ms() - t0, true, "gemini");
    http_reply_free(&r);
    /* A task the proxy never saw: nothing to answer it with. */
    t0 = now_ms();
    http_get(b, "/v1/async/task/00000000-0000-4000-8000-000000000000", &r);
    assert_offline_miss(&r, now_ms() - t0, false, NULL);
    http_reply_free(&r);

    /* The captured page is served; the one never captured is a miss at
     * once (no wait for artifact_wait, no fetch). */
    http_get(b, page, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "<html"));
    http_reply_free(&r);
    t0 = now_ms();
    http_get(b, pending_page, &r);
    long long took = now_ms() - t0;
    assert_int_equal(r.status, 504);
    assert_string_equal(http_error_code(&r), "OFFLINE_CACHE_MISS");
    assert_true(took < 2000);
    http_reply_free(&r);
    sleep_ms(300); /* time for a downloader that wrongly woke up */

    /* Nobody was asked: the fake saw nothing, the proxy made no call. */
    assert_fake_untouched(&before);
    assert_int_equal(stat_of(b, "upstream.calls"), 0);
    assert_true(stat_of(b, "offline_misses") >= 6);
    assert_int_equal(stat_of(b, "artifacts.downloads"), 0);
    char *log = proc_log(b);
    assert_non_null(strstr(log, "event=mode mode=offline"));
    assert_null(strstr(log, "event=upstream_error"));
    free(log);

    free(chat_rid);
    free(chat_key);
    free(chat_body);
    free(page);
    free(pending_page);
}

/* ---- switching at run time ------------------------------------------------------- */

static void set_mode(const struct proc *p, const char *mode, const char *previous)
{
    char body[64];
    snprintf(body, sizeof body, "{\"mode\":\"%s\"}", mode);
    struct http_reply r;
    admin_call(p, "POST", "/_proxy/mode", body, &r);
    if (r.status != 200)
        fail_msg("POST /_proxy/mode %s: %ld %.300s", mode, r.status, r.body);
    json_t *j = http_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), mode);
    if (previous != NULL)
        assert_string_equal(json_string_value(json_object_get(j, "previous")), previous);
    json_decref(j);
    http_reply_free(&r);
}

static void test_switching_modes_at_run_time(void **state)
{
    (void)state;
    const char *args[] = {"--poll-initial", "100ms", "--poll-interval", "200ms", NULL};
    struct proc *p = &own[0];
    assert_int_equal(proc_start_proxy(p, fake.url, args, admin_env), 0);

    /* The mode is an admin route: the admin token's rules hold. */
    struct http_reply r;
    http_get(p, "/_proxy/mode", &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(http_error_code(&r), "ADMIN_TOKEN_REQUIRED");
    http_reply_free(&r);
    const char *wrong[] = {"Content-Type: application/json", "Authorization: Bearer nope", NULL};
    char *url = proc_url(p, "/_proxy/mode");
    assert_int_equal(http_call("POST", url, "{\"mode\":\"offline\"}", wrong, &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(http_error_code(&r), "FORBIDDEN");
    http_reply_free(&r);
    free(url);
    admin_call(p, "GET", "/_proxy/mode", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = http_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "online");
    json_decref(j);
    http_reply_free(&r);

    /* Online: a miss goes upstream. A task is created and followed. */
    const char *q = "{\"prompt\":\"switch me\",\"country\":\"US\"}";
    ask(p, "/v1/monitor/chatgpt", q, &r);
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    ask(p, "/v1/async/task",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"followed\",\"country\":\"US\"}}", &r);
    assert_int_equal(r.status, 200);
    j = http_json(&r);
    char task_path[160];
    snprintf(task_path, sizeof task_path, "/v1/async/task/%s",
             json_string_value(json_dig(j, "task.id")));
    json_decref(j);
    http_reply_free(&r);

    /* Offline: nothing goes upstream, task polls included. */
    set_mode(p, "offline", "online");
    assert_mode(p, "offline");
    sleep_ms(300); /* a poll already in flight lands */
    struct seen before = fake_seen();
    ask(p, "/v1/monitor/chatgpt", q, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "HIT");
    assert_header_has(&r, "Cache-Status", "detail=offline");
    http_reply_free(&r);
    long long t0 = now_ms();
    ask(p, "/v1/monitor/chatgpt", "{\"prompt\":\"not yet\",\"country\":\"US\"}", &r);
    assert_offline_miss(&r, now_ms() - t0, true, "chatgpt");
    http_reply_free(&r);
    http_get(p, task_path, &r); /* answered from what the proxy knows */
    assert_int_equal(r.status, 200);
    j = http_json(&r);
    assert_string_not_equal(json_string_value(json_dig(j, "task.status")), "COMPLETED");
    json_decref(j);
    http_reply_free(&r);
    sleep_ms(1500); /* the task ends upstream meanwhile; polls were due every 200 ms */
    assert_fake_untouched(&before);
    http_get(p, task_path, &r);
    j = http_json(&r);
    assert_string_not_equal(json_string_value(json_dig(j, "task.status")), "COMPLETED");
    json_decref(j);
    http_reply_free(&r);

    /* Bad switches change nothing. */
    const char *bad[] = {"{",
                         "{}",
                         "{\"mode\":\"sideways\"}",
                         "{\"mode\":\"Offline\"}",
                         "{\"mode\":1}",
                         "[\"online\"]",
                         "{\"mode\":\"online\",\"x\":1}",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        admin_call(p, "POST", "/_proxy/mode", bad[i], &r);
        if (r.status != 400 || strcmp(http_error_code(&r), "VALIDATION_ERROR") != 0)
            fail_msg("POST /_proxy/mode '%s': %ld %s", bad[i], r.status, http_error_code(&r));
        http_reply_free(&r);
    }
    assert_mode(p, "offline");
    admin_call(p, "GET", "/_proxy/metrics", NULL, &r);
    assert_non_null(strstr(r.body, "cloro_proxy_mode{mode=\"offline\"} 1"));
    assert_non_null(strstr(r.body, "cloro_proxy_mode{mode=\"online\"} 0"));
    http_reply_free(&r);

    /* Online again: polls resume (the task completes), misses go upstream. */
    set_mode(p, "online", "offline");
    assert_true(wait_stat(p, "tasks.completed", 1, 10000) >= 1);
    http_get(p, task_path, &r);
    j = http_json(&r);
    assert_string_equal(json_string_value(json_dig(j, "task.status")), "COMPLETED");
    json_decref(j);
    http_reply_free(&r);
    long long calls = fake_stat(&fake, "requests./v1/monitor/chatgpt");
    ask(p, "/v1/monitor/chatgpt", "{\"prompt\":\"not yet\",\"country\":\"US\"}", &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), calls + 1);

    char *log = proc_log(p);
    assert_non_null(strstr(log, "event=mode_changed from=online to=offline by=admin"));
    assert_non_null(strstr(log, "event=mode_changed from=offline to=online by=admin"));
    free(log);
}

/* ---- record and refresh ------------------------------------------------------ */

static void wait_past(const struct proc *p, const char *key, long long age_s)
{
    char path[160];
    snprintf(path, sizeof path, "/_proxy/cache/entries/%s", key);
    for (int i = 0; i < 400; i++) {
        struct http_reply r;
        http_get(p, path, &r);
        json_t *j = http_json(&r);
        long long age = json_integer_value(json_object_get(j, "age_s"));
        long status = r.status;
        json_decref(j);
        http_reply_free(&r);
        if (status == 200 && age >= age_s)
            return;
        sleep_ms(25);
    }
    fail_msg("entry %s never reached age %lld s", key, age_s);
}

static json_t *entry_of(const struct proc *p, const char *key)
{
    char path[160];
    snprintf(path, sizeof path, "/_proxy/cache/entries/%s", key);
    for (int i = 0; i < 200; i++) { /* until the writer committed it */
        struct http_reply r;
        http_get(p, path, &r);
        json_t *j = r.status == 200 ? http_json(&r) : NULL;
        http_reply_free(&r);
        if (j != NULL)
            return j;
        sleep_ms(10);
    }
    fail_msg("no entry %s", key);
    return NULL;
}

static void test_record_pins_entries_past_their_ttl(void **state)
{
    (void)state;
    const char *args[] = {"--cache-ttl", "1s", "--mode", "record", NULL};
    struct proc *p = &own[0];
    assert_int_equal(proc_start_proxy(p, fake.url, args, proxy_env), 0);
    assert_mode(p, "record");

    const char *pinned = "{\"prompt\":\"a fixture\",\"country\":\"US\"}";
    const char *plain = "{\"prompt\":\"not a fixture\",\"country\":\"US\"}";
    struct http_reply r;
    ask(p, "/v1/monitor/perplexity", pinned, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "MISS");
    assert_header_has(&r, "Cache-Status", "detail=record");
    assert_null(strstr(http_header(&r, "Cache-Status"), "ttl="));
    char *pinned_key = header_copy(&r, "X-Cache-Key");
    char *pinned_rid = header_copy(&r, "X-Request-ID");
    http_reply_free(&r);
    json_t *e = entry_of(p, pinned_key);
    assert_true(json_is_null(json_object_get(e, "expires_at")));
    json_decref(e);

    /* An answer stored online is served as it is in record mode, unpinned. */
    set_mode(p, "online", "record");
    ask(p, "/v1/monitor/perplexity", plain, &r);
    assert_header(&r, "X-Cache", "MISS");
    char *plain_key = header_copy(&r, "X-Cache-Key");
    http_reply_free(&r);
    set_mode(p, "record", "online");
    ask(p, "/v1/monitor/perplexity", plain, &r);
    assert_header(&r, "X-Cache", "HIT");
    http_reply_free(&r);
    e = entry_of(p, plain_key);
    assert_false(json_is_null(json_object_get(e, "expires_at")));
    json_decref(e);

    /* Past the TTL, back online: the pinned answer is still a fresh hit,
     * the other expired and goes upstream again. */
    wait_past(p, pinned_key, 2);
    wait_past(p, plain_key, 2);
    set_mode(p, "online", "record");
    long long calls = fake_stat(&fake, "requests./v1/monitor/perplexity");
    ask(p, "/v1/monitor/perplexity", pinned, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "HIT");
    assert_header(&r, "X-Request-ID", pinned_rid);
    assert_null(strstr(http_header(&r, "Cache-Status"), "ttl="));
    http_reply_free(&r);
    ask(p, "/v1/monitor/perplexity", plain, &r);
    assert_header(&r, "X-Cache", "MISS");
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/perplexity"), calls + 1);

    /* cloro-proxy cache ls says so too. */
    char cache_dir[400];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", p->dir);
    struct cli_result out;
    cli_run(&out, (const char *[]){"cache", "ls", "--cache-dir", cache_dir, NULL});
    assert_int_equal(out.status, 0);
    char *line = strstr(out.output, pinned_key);
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    assert_non_null(eol);
    *eol = '\0';
    assert_non_null(strstr(line, "never"));
    free(out.output);
    free(pinned_key);
    free(pinned_rid);
    free(plain_key);
}

static void test_refresh_replaces_entries(void **state)
{
    (void)state;
    struct proc *p = &own[0];
    assert_int_equal(proc_start_proxy(p, fake.url, NULL, admin_env), 0);
    const char *q = "{\"prompt\":\"re-record me\",\"country\":\"US\"}";
    struct http_reply r;
    ask(p, "/v1/monitor/grok", q, &r);
    assert_header(&r, "X-Cache", "MISS");
    char *first = header_copy(&r, "X-Request-ID");
    http_reply_free(&r);

    set_mode(p, "refresh", "online");
    long long calls = fake_stat(&fake, "requests./v1/monitor/grok");
    char *latest = NULL;
    for (int i = 0; i < 2; i++) {
        ask(p, "/v1/monitor/grok", q, &r);
        assert_int_equal(r.status, 200);
        assert_header(&r, "X-Cache", "REFRESH");
        assert_header_has(&r, "Cache-Status", "stored");
        assert_header_has(&r, "Cache-Status", "detail=refresh");
        char *rid = header_copy(&r, "X-Request-ID");
        assert_string_not_equal(rid, first);
        if (latest != NULL)
            assert_string_not_equal(rid, latest);
        free(latest);
        latest = rid;
        http_reply_free(&r);
        assert_int_equal(fake_stat(&fake, "requests./v1/monitor/grok"), calls + i + 1);
    }

    /* Identical calls in flight still share one upstream call. */
    fake_configure(&fake, "{\"latency_ms\":400}");
    long long before = fake_stat(&fake, "requests./v1/monitor/grok");
    struct driver d;
    driver_init(&d, 3);
    for (int i = 0; i < 3; i++)
        driver_add(&d, p, "/v1/monitor/grok", q, 0, NULL, 10000);
    assert_true(driver_finish(&d, 10000));
    int refreshed = 0, coalesced = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d.calls[i].reply.status, 200);
        const char *x = http_header(&d.calls[i].reply, "X-Cache");
        refreshed += x != NULL && strcmp(x, "REFRESH") == 0;
        coalesced += x != NULL && strcmp(x, "COALESCED") == 0;
    }
    assert_int_equal(refreshed, 1);
    assert_int_equal(coalesced, 2);
    free(latest);
    latest = strdup(http_header(&d.calls[0].reply, "X-Request-ID"));
    driver_free(&d);
    fake_configure(&fake, "{\"latency_ms\":0}");
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/grok"), before + 1);

    /* Online again: the stored answer is the last one refreshed. */
    set_mode(p, "online", "refresh");
    ask(p, "/v1/monitor/grok", q, &r);
    assert_header(&r, "X-Cache", "HIT");
    assert_header(&r, "X-Request-ID", latest);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/grok"), before + 1);
    free(first);
    free(latest);
}

/* ---- samples ------------------------------------------------------------------ */

static void ask_sample(const struct proc *p, const char *body, const char *sample,
                       struct http_reply *out)
{
    char header[64];
    snprintf(header, sizeof header, "X-Cache-Sample: %s", sample);
    ask_with(p, "/v1/monitor/chatgpt", body, header, NULL, out);
}

static void test_samples_are_keys_of_their_own(void **state)
{
    (void)state;
    struct proc *p = &own[0];
    assert_int_equal(proc_start_proxy(p, fake.url, NULL, proxy_env), 0);
    const char *q = "{\"prompt\":\"Does Acme show up?\",\"country\":\"US\"}";
    long long calls = fake_stat(&fake, "requests./v1/monitor/chatgpt");

    /* Samples 1..3: three paid calls, three keys, three answers. */
    char *keys[3], *rids[3];
    struct http_reply r;
    for (int k = 1; k <= 3; k++) {
        char s[8];
        snprintf(s, sizeof s, "%d", k);
        ask_sample(p, q, s, &r);
        assert_int_equal(r.status, 200);
        assert_header(&r, "X-Cache", "MISS");
        keys[k - 1] = header_copy(&r, "X-Cache-Key");
        rids[k - 1] = header_copy(&r, "X-Request-ID");
        http_reply_free(&r);
    }
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), calls + 3);
    assert_string_not_equal(keys[0], keys[1]);
    assert_string_not_equal(keys[0], keys[2]);
    assert_string_not_equal(keys[1], keys[2]);
    /* Asked again: three hits, each its own answer; no header is sample 1. */
    for (int k = 1; k <= 3; k++) {
        char s[8];
        snprintf(s, sizeof s, "%d", k);
        ask_sample(p, q, s, &r);
        assert_header(&r, "X-Cache", "HIT");
        assert_header(&r, "X-Cache-Key", keys[k - 1]);
        assert_header(&r, "X-Request-ID", rids[k - 1]);
        http_reply_free(&r);
    }
    ask(p, "/v1/monitor/chatgpt", "{\"country\":\"US\",\"prompt\":\"Does Acme show up?\"}", &r);
    assert_header(&r, "X-Cache", "HIT");
    assert_header(&r, "X-Cache-Key", keys[0]);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), calls + 3);

    /* Out of 1..max_samples, or not a plain number: 400, nothing paid. */
    const char *bad[] = {"0", "101", "-1", "abc", "2.0", "+2", "02", "1e1", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ask_sample(p, q, bad[i], &r);
        if (r.status != 400 || strcmp(http_error_code(&r), "VALIDATION_ERROR") != 0)
            fail_msg("X-Cache-Sample: %s gave %ld %s", bad[i], r.status, http_error_code(&r));
        json_t *j = http_json(&r);
        json_t *detail = json_array_get(json_dig(j, "error.details"), 0);
        assert_string_equal(json_string_value(json_object_get(detail, "field")), "X-Cache-Sample");
        json_decref(j);
        http_reply_free(&r);
    }
    ask_sample(p, q, "100", &r); /* max_samples (100) itself is fine */
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "MISS");
    char *key100 = header_copy(&r, "X-Cache-Key");
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), calls + 4);

    /* An async submission of the prompt, as sample 2: answered from sample 2. */
    const char *task = "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"Does Acme show "
                       "up?\",\"country\":\"US\"}}";
    ask_with(p, "/v1/async/task", task, "X-Cache-Sample: 2", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "HIT");
    assert_header(&r, "X-Cache-Key", keys[1]);
    http_reply_free(&r);

    /* The entries know their sample and the key of sample 1. */
    json_t *e = entry_of(p, keys[1]);
    assert_int_equal(json_integer_value(json_object_get(e, "sample")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "base_key")), keys[0]);
    json_decref(e);
    e = entry_of(p, keys[0]);
    assert_int_equal(json_integer_value(json_object_get(e, "sample")), 1);
    assert_null(json_object_get(e, "base_key"));
    json_decref(e);
    json_decref(entry_of(p, key100));
    /* An unrelated entry, listed on its own. */
    ask(p, "/v1/monitor/chatgpt", "{\"prompt\":\"alone\",\"country\":\"US\"}", &r);
    char *alone = header_copy(&r, "X-Cache-Key");
    http_reply_free(&r);
    json_decref(entry_of(p, alone));

    /* cache ls: sample 1 first, its samples indented right after it. */
    char cache_dir[400];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", p->dir);
    struct cli_result out;
    cli_run(&out, (const char *[]){"cache", "ls", "--cache-dir", cache_dir, NULL});
    assert_int_equal(out.status, 0);
    assert_non_null(strstr(out.output, "SAMPLE"));
    char want[200];
    snprintf(want, sizeof want, "\n%s", keys[0]);
    char *at0 = strstr(out.output, want);
    snprintf(want, sizeof want, "\n  %s", keys[1]);
    char *at1 = strstr(out.output, want);
    snprintf(want, sizeof want, "\n  %s", keys[2]);
    char *at2 = strstr(out.output, want);
    snprintf(want, sizeof want, "\n  %s", key100);
    char *at100 = strstr(out.output, want);
    if (at0 == NULL || at1 == NULL || at2 == NULL || at100 == NULL)
        fail_msg("cache ls does not group the samples:\n%s", out.output);
    assert_true(at0 < at1 && at1 < at2 && at2 < at100);
    /* Adjacent: the line after sample 1 is sample 2, then 3, then 100. */
    assert_true(strchr(at0 + 1, '\n') == at1);
    assert_true(strchr(at1 + 1, '\n') == at2);
    assert_true(strchr(at2 + 1, '\n') == at100);
    assert_non_null(strstr(out.output, "1 of 4"));
    assert_non_null(strstr(out.output, "2 of 4"));
    assert_non_null(strstr(out.output, "100 of 4"));
    snprintf(want, sizeof want, "\n%s", alone);
    char *at_alone = strstr(out.output, want);
    assert_non_null(at_alone);
    char *end = strchr(at_alone + 1, '\n');
    assert_non_null(end);
    *end = '\0';
    assert_null(strstr(at_alone, " of ")); /* not a sample group */
    free(out.output);
    cli_run(&out, (const char *[]){"cache", "show", keys[2], "--cache-dir", cache_dir, NULL});
    assert_int_equal(out.status, 0);
    snprintf(want, sizeof want, "sample:          3 (sample 1: %s)", keys[0]);
    if (strstr(out.output, want) == NULL)
        fail_msg("cache show does not name the sample:\n%.600s", out.output);
    free(out.output);

    for (int i = 0; i < 3; i++) {
        free(keys[i]);
        free(rids[i]);
    }
    free(key100);
    free(alone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offline_replays_a_cache_without_network, reset_fake,
                                        stop_own),
        cmocka_unit_test_setup_teardown(test_switching_modes_at_run_time, reset_fake, stop_own),
        cmocka_unit_test_setup_teardown(test_record_pins_entries_past_their_ttl, reset_fake,
                                        stop_own),
        cmocka_unit_test_setup_teardown(test_refresh_replaces_entries, reset_fake, stop_own),
        cmocka_unit_test_setup_teardown(test_samples_are_keys_of_their_own, reset_fake, stop_own),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
