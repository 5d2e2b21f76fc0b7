/* test_members.c: team members on the wire. Members' tokens gate /v1/ (401
 * in cloro's envelope, nothing reaching the fake upstream or the cache), the
 * fake only ever sees the proxy's own key, the admin token gates /_proxy/,
 * 'cloro-proxy members add|ls|rm' keeps a members file that a proxy reads
 * at start and re-reads while it runs, a member's max_concurrency makes its
 * calls reach the upstream one at a time without holding anyone else back,
 * and no token ever shows in the proxy's log. */
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
#include <sys/stat.h>
#include <unistd.h>

#define KEY          "sk_live_memberstest01"
#define ADMIN        "adm_members_test_7c1f"
#define TOKEN_ALICE  "cpm_alice_test_token_0001"
#define TOKEN_BOB    "cpm_bob_test_token_0002"
#define TOKEN_NOBODY "cpm_nobody_test_token_0003"
#define PROMPT       "{\"prompt\":\"members %d\",\"country\":\"US\"}"

static struct proc fake;
static struct proc proxy;
static struct driver drv;
static char dir[64]; /* this run's members files */
static const char *const env_all[] = {"CLORO_API_KEY=" KEY, "CLORO_ADMIN_TOKEN=" ADMIN, NULL};

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    unsetenv("CLORO_ADMIN_TOKEN"); /* only what a test names reaches the proxy */
    snprintf(dir, sizeof dir, "/tmp/cloro-it-members-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    const char *fake_args[] = {"--api-key",           KEY,   "--log-level", "warn",
                               "--concurrency-limit", "100", NULL};
    return proc_start_fake(&fake, fake_args);
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&fake);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    curl_global_cleanup();
    return 0;
}

static int reset_fake(void **state)
{
    (void)state;
    fake_configure(&fake, "{\"latency_ms\":0,\"jitter_ms\":0,\"concurrency_limit\":100}");
    fake_reset(&fake);
    return 0;
}

static int stop_proxy(void **state)
{
    (void)state;
    if (drv.multi != NULL)
        driver_free(&drv);
    if (proxy.pid > 0 || proxy.dir[0] != '\0')
        proc_stop(&proxy);
    memset(&proxy, 0, sizeof proxy);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* dir/name, a static buffer per call site's use. */
static const char *path_in_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
    return out;
}

/* "[member NAME]\ntoken_sha256 = <sha of token>\n" + extra, appended to buf. */
static void add_section(char *buf, size_t size, const char *name, const char *token,
                        const char *extra)
{
    char hex[65];
    sha256_hex(token, hex);
    size_t used = strlen(buf);
    snprintf(buf + used, size - used, "[member %s]\ntoken_sha256 = %s\n%s\n", name, hex,
             extra != NULL ? extra : "");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The usual team: alice and bob, in a members file of this run. */
static const char *team_file(char *out, size_t size, const char *alice_extra)
{
    char text[1024] = "# the team\n";
    add_section(text, sizeof text, "alice", TOKEN_ALICE, alice_extra);
    add_section(text, sizeof text, "bob", TOKEN_BOB, NULL);
    path_in_dir(out, size, "team.ini");
    write_file(out, text);
    return out;
}

static void start_proxy(const char *const extra[], const char *const env[])
{
    if (proc_start_proxy(&proxy, fake.url, extra, env) != 0)
        fail_msg("the proxy did not start (see its log above)");
}

/* A call with an Authorization header (token NULL: none) and an optional raw one. */
static void call(const char *method, const char *path, const char *body, const char *auth_line,
                 struct http_reply *r)
{
    const char *headers[3] = {"Content-Type: application/json", auth_line, NULL};
    char *url = proc_url(&proxy, path);
    http_call(method, url, body, headers, r);
    free(url);
}

static void call_as(const char *token, const char *path, const char *body, struct http_reply *r)
{
    char line[256] = "";
    if (token != NULL)
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
    call(body != NULL ? "POST" : "GET", path, body, token != NULL ? line : NULL, r);
}

static void assert_error(const struct http_reply *r, long status, const char *code)
{
    if (r->status != status || strcmp(http_error_code(r), code) != 0)
        fail_msg("expected %ld %s, got %ld %s: %s", status, code, r->status, http_error_code(r),
                 r->body);
    json_t *j = http_json(r);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "success")));
    assert_non_null(json_string_value(json_dig(j, "error.message")));
    assert_non_null(json_string_value(json_dig(j, "error.timestamp")));
    json_decref(j);
    assert_true(is_uuid(http_header(r, "X-Request-ID")));
}

static void expect(const char *token, const char *path, const char *body, long status,
                   const char *code)
{
    struct http_reply r;
    call_as(token, path, body, &r);
    if (code != NULL)
        assert_error(&r, status, code);
    else if (r.status != status)
        fail_msg("%s: expected %ld, got %ld: %s", path, status, r.status, r.body);
    http_reply_free(&r);
}

static char *prompt(int i)
{
    char *body = NULL;
    if (asprintf(&body, PROMPT, i) < 0)
        abort();
    return body;
}

/* How many calls the fake saw with this exact Authorization. */
static long long auth_count(const char *authorization)
{
    char hex[65], path[96];
    sha256_hex(authorization, hex);
    snprintf(path, sizeof path, "auth.%s", hex);
    long long n = fake_stat(&fake, path);
    return n > 0 ? n : 0;
}

/* The fake's "auth" map holds one key: the proxy's own. */
static void assert_fake_saw_only_the_key(long long calls)
{
    json_t *stats = fake_stats(&fake);
    json_t *auth = json_object_get(stats, "auth");
    char key_hex[65];
    sha256_hex("Bearer " KEY, key_hex);
    const char *k;
    json_t *v;
    json_object_foreach(auth, k, v)
    {
        if (strcmp(k, key_hex) != 0)
            fail_msg("the fake saw another Authorization (sha256 %s, %lld times)", k,
                     (long long)json_integer_value(v));
    }
    assert_int_equal(json_integer_value(json_object_get(auth, key_hex)), calls);
    json_decref(stats);
    assert_int_equal(fake_stat(&fake, "auth_missing"), 0);
}

/* No secret in the proxy's log, whatever the workload was. */
static void assert_log_clean(const char *const secrets[])
{
    char *log = proc_log(&proxy);
    assert_non_null(log);
    for (size_t i = 0; secrets[i] != NULL; i++) {
        if (strstr(log, secrets[i]) != NULL)
            fail_msg("the proxy's log holds '%s':\n%s", secrets[i], log);
        char hex[65];
        sha256_hex(secrets[i], hex);
        if (strstr(log, hex) != NULL)
            fail_msg("the proxy's log holds the hash of '%s'", secrets[i]);
    }
    free(log);
}

static long long cache_stat(const char *name)
{
    struct http_reply r;
    call_as(ADMIN, "/_proxy/cache/stats", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = http_json(&r);
    long long v = (long long)json_integer_value(json_object_get(j, name));
    json_decref(j);
    http_reply_free(&r);
    return v;
}

/* ---- the tests ---------------------------------------------------------- */

/* Missing, malformed and unknown tokens: 401 in cloro's envelope, and the
 * call reaches neither the fake nor the cache. */
static void test_unknown_and_missing_tokens(void **state)
{
    (void)state;
    char file[128];
    start_proxy((const char *[]){"--members-file", team_file(file, sizeof file, NULL), NULL},
                env_all);
    char *body = prompt(1);
    struct http_reply r;
    call("POST", "/v1/monitor/chatgpt", body, NULL, &r);
    assert_error(&r, 401, "MISSING_API_KEY");
    assert_non_null(http_header(&r, "WWW-Authenticate"));
    http_reply_free(&r);
    /* cloro reads a lowercase "bearer" as no key. */
    call("POST", "/v1/monitor/chatgpt", body, "Authorization: bearer " TOKEN_ALICE, &r);
    assert_error(&r, 401, "MISSING_API_KEY");
    http_reply_free(&r);
    call("POST", "/v1/monitor/chatgpt", body, "Authorization: Bearer ", &r);
    assert_error(&r, 401, "MISSING_API_KEY");
    http_reply_free(&r);
    expect(TOKEN_NOBODY, "/v1/monitor/chatgpt", body, 401, "INVALID_OR_EXPIRED_API_KEY");
    /* cloro's own key is no member's token; nor is a member's hash. */
    expect(KEY, "/v1/monitor/chatgpt", body, 401, "INVALID_OR_EXPIRED_API_KEY");
    char hex[65];
    sha256_hex(TOKEN_ALICE, hex);
    expect(hex, "/v1/monitor/chatgpt", body, 401, "INVALID_OR_EXPIRED_API_KEY");
    expect(TOKEN_NOBODY, "/v1/async/task/00000000-0000-0000-0000-000000000000", NULL, 401,
           "INVALID_OR_EXPIRED_API_KEY");
    expect(NULL, "/v1/countries", NULL, 401, "MISSING_API_KEY");

    assert_int_equal(fake_stat(&fake, "requests_total"), 0);
    assert_int_equal(cache_stat("misses"), 0);
    assert_int_equal(cache_stat("hits"), 0);
    assert_int_equal(cache_stat("entries"), 0);
    free(body);
    assert_log_clean((const char *[]){TOKEN_ALICE, TOKEN_BOB, TOKEN_NOBODY, KEY, ADMIN, NULL});
}

/* A member's token works; upstream, only the proxy's key is ever seen. */
static void test_member_token_works_and_never_leaves(void **state)
{
    (void)state;
    char file[128];
    start_proxy((const char *[]){"--members-file", team_file(file, sizeof file, NULL), NULL},
                env_all);
    char *b1 = prompt(2), *b2 = prompt(3);
    expect(TOKEN_ALICE, "/v1/monitor/chatgpt", b1, 200, NULL);
    expect(TOKEN_BOB, "/v1/monitor/gemini", b2, 200, NULL);
    expect(TOKEN_BOB, "/v1/monitor/chatgpt", b1, 200, NULL); /* a hit: no upstream call */
    struct http_reply r;
    /* Headers that might smuggle a token further are dropped too. */
    const char *headers[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN_ALICE,
                             "Proxy-Authorization: Bearer " TOKEN_BOB, NULL};
    char *url = proc_url(&proxy, "/v1/monitor/perplexity");
    http_call("POST", url, b2, headers, &r);
    free(url);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests_total"), 3);
    assert_fake_saw_only_the_key(3);
    assert_int_equal(auth_count("Bearer " TOKEN_ALICE), 0);
    assert_int_equal(auth_count("Bearer " TOKEN_BOB), 0);
    free(b1);
    free(b2);
    /* The access log names the member, never the token. */
    char *log = proc_log(&proxy);
    assert_non_null(strstr(log, "path=/v1/monitor/chatgpt status=200"));
    assert_non_null(strstr(log, "member=alice"));
    assert_non_null(strstr(log, "member=bob"));
    free(log);
    assert_log_clean((const char *[]){TOKEN_ALICE, TOKEN_BOB, KEY, ADMIN, NULL});
}

/* With members, every /_proxy/ route but healthz and the artifacts needs
 * the admin token: none -> 401, another -> 403. */
static void test_admin_token(void **state)
{
    (void)state;
    char file[128];
    start_proxy((const char *[]){"--members-file", team_file(file, sizeof file, NULL), NULL},
                env_all);
    static const char *const routes[] = {"/_proxy/stats", "/_proxy/cache/stats", "/_proxy/metrics",
                                         "/_proxy/usage", "/_proxy/"};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        expect(NULL, routes[i], NULL, 401, "ADMIN_TOKEN_REQUIRED");
        expect("not-the-admin-token", routes[i], NULL, 403, "FORBIDDEN");
        expect(TOKEN_ALICE, routes[i], NULL, 403, "FORBIDDEN"); /* a member is no admin */
        expect(KEY, routes[i], NULL, 403, "FORBIDDEN");
        struct http_reply r;
        call_as(ADMIN, routes[i], NULL, &r);
        if (r.status == 401 || r.status == 403)
            fail_msg("%s with the admin token: %ld %s", routes[i], r.status, r.body);
        http_reply_free(&r);
    }
    expect(ADMIN, "/_proxy/stats", NULL, 200, NULL);
    struct http_reply r;
    call("POST", "/_proxy/cache/purge", "{\"all\":true}", NULL, &r);
    assert_error(&r, 401, "ADMIN_TOKEN_REQUIRED");
    http_reply_free(&r);
    call("POST", "/_proxy/cache/purge", "{\"all\":true}", "Authorization: Bearer " ADMIN, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    expect(NULL, "/_proxy/cache/entries/00", NULL, 401, "ADMIN_TOKEN_REQUIRED");
    expect(NULL, "/_proxy/no-such-route", NULL, 401, "ADMIN_TOKEN_REQUIRED");
    /* Open to all: the health check and the artifacts' links. */
    expect(NULL, "/_proxy/healthz", NULL, 200, NULL);
    expect(NULL, "/_proxy/artifacts/00000000-0000-0000-0000-000000000000/page-1.html", NULL, 404,
           "NOT_FOUND");
    /* ?token= opens the status page (a browser has no header), nothing else. */
    http_get(&proxy, "/_proxy/?token=" ADMIN, &r);
    if (r.status == 401 || r.status == 403)
        fail_msg("/_proxy/?token=: %ld %s", r.status, r.body);
    http_reply_free(&r);
    http_get(&proxy, "/_proxy/?token=wrong", &r);
    assert_error(&r, 403, "FORBIDDEN");
    http_reply_free(&r);
    http_get(&proxy, "/_proxy/stats?token=" ADMIN, &r);
    assert_error(&r, 401, "ADMIN_TOKEN_REQUIRED");
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests_total"), 0);
    assert_log_clean((const char *[]){TOKEN_ALICE, KEY, ADMIN, NULL});
}

/* Members but no admin token: admin routes say how to set one. Without
 * members and admin token, they stay open as before. */
static void test_admin_routes_without_admin_token(void **state)
{
    (void)state;
    char file[128];
    const char *const env_key[] = {"CLORO_API_KEY=" KEY, NULL};
    start_proxy((const char *[]){"--members-file", team_file(file, sizeof file, NULL), NULL},
                env_key);
    struct http_reply r;
    call_as(NULL, "/_proxy/stats", NULL, &r);
    assert_error(&r, 403, "ADMIN_TOKEN_NOT_CONFIGURED");
    assert_non_null(strstr(r.body, "CLORO_ADMIN_TOKEN"));
    http_reply_free(&r);
    expect("anything", "/_proxy/stats", NULL, 403, "ADMIN_TOKEN_NOT_CONFIGURED");
    expect(NULL, "/_proxy/healthz", NULL, 200, NULL);
    char *log = proc_log(&proxy);
    assert_non_null(strstr(log, "event=admin_token_unset"));
    free(log);
    proc_stop(&proxy);

    start_proxy(NULL, env_key); /* no member: open, as before */
    expect(NULL, "/_proxy/stats", NULL, 200, NULL);
    char *body = prompt(4);
    expect(NULL, "/v1/monitor/chatgpt", body, 200, NULL);
    free(body);
}

/* Members and no cloro key: a member's token would be all there is to send
 * upstream, so the proxy refuses to start. */
static void test_members_need_the_api_key(void **state)
{
    (void)state;
    char file[128], cache[128];
    team_file(file, sizeof file, NULL);
    struct cli_result r;
    cli_run(&r, (const char *[]){"serve", "--listen", "127.0.0.1:0", "--members-file", file,
                                 "--cache-dir", path_in_dir(cache, sizeof cache, "cache"),
                                 "--upstream", fake.url, NULL});
    if (r.status != 1 || strstr(r.output, "CLORO_API_KEY") == NULL)
        fail_msg("expected exit 1 naming CLORO_API_KEY, got %d:\n%s", r.status, r.output);
    free(r.output);
    cli_run(&r, (const char *[]){"serve", "--listen", "127.0.0.1:0", "--auth", "members",
                                 "--cache-dir", cache, "--upstream", fake.url, NULL});
    assert_int_equal(r.status, 1);
    free(r.output);
    /* check-config names a bad members file's line. */
    char bad[128];
    path_in_dir(bad, sizeof bad, "bad.ini");
    write_file(bad, "[member eve]\ntoken_sha256 = nothex\n");
    cli_run(&r, (const char *[]){"show-config", "--members-file", bad, NULL});
    assert_int_equal(r.status, 2);
    char where[160];
    snprintf(where, sizeof where, "%s:2: token_sha256", bad);
    if (strstr(r.output, where) == NULL)
        fail_msg("expected '%s' in:\n%s", where, r.output);
    free(r.output);
    assert_int_equal(fake_stat(&fake, "requests_total"), 0);
}

/* The token in 'members add' output: "cpm_" and 43 base64url characters. */
static void token_from(const char *output, char token[64])
{
    const char *at = strstr(output, "cpm_");
    if (at == NULL)
        fail_msg("no token in:\n%s", output);
    size_t len = strspn(at + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    if (len != 43)
        fail_msg("a token of %zu characters after cpm_:\n%s", len, output);
    snprintf(token, 64, "%.*s", (int)len + 4, at);
}

static bool works_within(const char *token, long status, int timeout_ms)
{
    char *body = prompt(99);
    long long deadline = now_ms() + timeout_ms;
    long got = 0;
    do {
        struct http_reply r;
        call_as(token, "/v1/monitor/chatgpt", body, &r);
        got = r.status;
        http_reply_free(&r);
        if (got == status)
            break;
        sleep_ms(100);
    } while (now_ms() < deadline);
    free(body);
    return got == status;
}

/* members add/ls/rm through the CLI; a token made by add works with a
 * proxy started afterwards and, added while it runs, within ~2 s. */
static void test_cli_members(void **state)
{
    (void)state;
    char file[128];
    path_in_dir(file, sizeof file, "cli.ini");
    unlink(file);
    struct cli_result r;
    cli_run(&r, (const char *[]){"members", "add", "carol", "--members-file", file,
                                 "--max-concurrency", "2", "--rate-limit", "7", NULL});
    if (r.status != 0)
        fail_msg("members add: %d\n%s", r.status, r.output);
    char carol[64];
    token_from(r.output, carol);
    assert_non_null(strstr(r.output, "cannot be shown again"));
    free(r.output);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = NULL;
    {
        FILE *f = fopen(file, "r");
        assert_non_null(f);
        text = calloc(1, 4096);
        size_t n = fread(text, 1, 4095, f);
        (void)n;
        fclose(f);
    }
    char hex[65];
    sha256_hex(carol, hex);
    assert_non_null(strstr(text, hex));
    assert_null(strstr(text, carol));
    assert_non_null(strstr(text, "[member carol]"));
    free(text);

    /* ls: names and limits, never a hash. */
    cli_run(&r, (const char *[]){"members", "ls", "--members-file", file, NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.output, "carol"));
    assert_non_null(strstr(r.output, " 7 "));
    assert_null(strstr(r.output, hex));
    assert_null(strstr(r.output, carol));
    free(r.output);
    /* Bad usage is 2; a member twice is refused. */
    cli_run(&r, (const char *[]){"members", "add", "carol", "--members-file", file, NULL});
    assert_int_equal(r.status, 1);
    free(r.output);
    cli_run(&r, (const char *[]){"members", "add", "no spaces", "--members-file", file, NULL});
    assert_int_equal(r.status, 2);
    free(r.output);
    cli_run(&r, (const char *[]){"members", "add", "dan", NULL});
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.output, "--members-file"));
    free(r.output);
    cli_run(&r, (const char *[]){"members", "add", "dan", "--members-file", file, "--rate-limit",
                                 "fast", NULL});
    assert_int_equal(r.status, 2);
    free(r.output);
    cli_run(&r, (const char *[]){"members", "frobnicate", NULL});
    assert_int_equal(r.status, 2);
    free(r.output);

    /* A proxy started afterwards knows carol. */
    start_proxy((const char *[]){"--members-file", file, "--cache", "false", NULL}, env_all);
    assert_true(works_within(carol, 200, 0));

    /* Added while it runs: works within ~2 s (the file is re-read on change). */
    cli_run(&r, (const char *[]){"members", "add", "dan", "--members-file", file, NULL});
    assert_int_equal(r.status, 0);
    char dan[64];
    token_from(r.output, dan);
    free(r.output);
    long long t0 = now_ms();
    if (!works_within(dan, 200, 2500))
        fail_msg("dan's token did not work within 2.5 s of 'members add'");
    long long took = now_ms() - t0;
    print_message("dan's token worked %lld ms after members add\n", took);

    /* A broken file is ignored (the table stays); rm takes a token away. */
    FILE *f = fopen(file, "a");
    assert_non_null(f);
    fputs("[member broken\n", f);
    fclose(f);
    sleep_ms(1500);
    assert_true(works_within(dan, 200, 0));
    cli_run(&r, (const char *[]){"members", "rm", "carol", "--members-file", file, NULL});
    assert_int_equal(r.status, 2); /* the file must be fixed first */
    free(r.output);
    f = fopen(file, "r+");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(file, size - (long)strlen("[member broken\n")), 0);
    cli_run(&r, (const char *[]){"members", "rm", "carol", "--members-file", file, NULL});
    if (r.status != 0)
        fail_msg("members rm: %d\n%s", r.status, r.output);
    free(r.output);
    if (!works_within(carol, 401, 2500))
        fail_msg("carol's token still worked 2.5 s after 'members rm'");
    assert_true(works_within(dan, 200, 0));
    cli_run(&r, (const char *[]){"members", "rm", "carol", "--members-file", file, NULL});
    assert_int_equal(r.status, 1);
    free(r.output);
    cli_run(&r, (const char *[]){"members", "ls", "--members-file", file, NULL});
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.output, "carol"));
    assert_non_null(strstr(r.output, "dan"));
    free(r.output);
    char *log = proc_log(&proxy);
    assert_non_null(strstr(log, "event=members_reloaded"));
    assert_non_null(strstr(log, "event=members_reload_failed"));
    free(log);
    assert_fake_saw_only_the_key(fake_stat(&fake, "requests_total"));
    assert_log_clean((const char *[]){carol, dan, KEY, ADMIN, NULL});
}

/* alice has max_concurrency 1: her 3 concurrent calls reach the fake one at
 * a time; bob, without a limit, is not held back by her. */
static void test_member_max_concurrency(void **state)
{
    (void)state;
    char file[128];
    start_proxy((const char *[]){"--members-file",
                                 team_file(file, sizeof file, "max_concurrency = 1"), "--cache",
                                 "false", NULL},
                env_all);
    fake_configure(&fake, "{\"latency_ms\":300}");
    const char *alice[] = {"Authorization: Bearer " TOKEN_ALICE, NULL};
    const char *bob[] = {"Authorization: Bearer " TOKEN_BOB, NULL};

    /* Alone: one at a time upstream. */
    driver_init(&drv, 3);
    for (int i = 0; i < 3; i++) {
        char *body = prompt(100 + i);
        driver_add_headers(&drv, &proxy, "/v1/monitor/chatgpt", body, 0, NULL, 30000L, alice);
        free(body);
    }
    assert_true(driver_finish(&drv, 30000));
    for (int i = 0; i < 3; i++)
        assert_int_equal(drv.calls[i].reply.status, 200);
    assert_int_equal(fake_stat(&fake, "max_in_flight"), 1);
    long long alone_ms = now_ms() - drv.t0;
    if (alone_ms < 850)
        fail_msg("3 calls of 300 ms, one at a time, took only %lld ms", alone_ms);
    driver_free(&drv);

    /* With bob: his 3 go at once while alice's wait their turns. */
    fake_reset(&fake);
    fake_configure(&fake, "{\"latency_ms\":300}");
    driver_init(&drv, 6);
    for (int i = 0; i < 3; i++) {
        char *body = prompt(200 + i);
        driver_add_headers(&drv, &proxy, "/v1/monitor/chatgpt", body, 0, NULL, 30000L, alice);
        free(body);
    }
    driver_pump(&drv, 50); /* alice's calls are queued first */
    for (int i = 0; i < 3; i++) {
        char *body = prompt(300 + i);
        driver_add_headers(&drv, &proxy, "/v1/monitor/gemini", body, 0, NULL, 30000L, bob);
        free(body);
    }
    assert_true(driver_finish(&drv, 30000));
    long long alice_last = 0, bob_last = 0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(drv.calls[i].reply.status, 200);
        long long *last = i < 3 ? &alice_last : &bob_last;
        if (drv.calls[i].done_ms > *last)
            *last = drv.calls[i].done_ms;
    }
    print_message("alice's last done at %lld ms, bob's at %lld ms\n", alice_last, bob_last);
    if (alice_last < 850 || bob_last > 700 || bob_last + 250 > alice_last)
        fail_msg("alice's last call done at %lld ms, bob's at %lld ms: bob should not wait "
                 "for alice",
                 alice_last, bob_last);
    long long max_in_flight = fake_stat(&fake, "max_in_flight");
    if (max_in_flight > 4 || max_in_flight < 2)
        fail_msg("the fake had %lld calls at once (alice 1 + bob's 3 at most)", max_in_flight);
    assert_int_equal(fake_stat(&fake, "requests_total"), 6);
    driver_free(&drv);
    assert_log_clean((const char *[]){TOKEN_ALICE, TOKEN_BOB, KEY, ADMIN, NULL});
}

/* Past queue_timeout, a call held back by its member's share is the
 * proxy's 429, naming the member and its limit. */
static void test_member_share_queue_timeout(void **state)
{
    (void)state;
    char file[128];
    start_proxy((const char *[]){"--members-file",
                                 team_file(file, sizeof file, "max_concurrency = 1"), "--cache",
                                 "false", "--queue-timeout", "300ms", NULL},
                env_all);
    fake_configure(&fake, "{\"latency_ms\":1200}");
    const char *alice[] = {"Authorization: Bearer " TOKEN_ALICE, NULL};
    driver_init(&drv, 2);
    char *b1 = prompt(400), *b2 = prompt(401);
    driver_add_headers(&drv, &proxy, "/v1/monitor/chatgpt", b1, 0, NULL, 30000L, alice);
    driver_pump(&drv, 100);
    driver_add_headers(&drv, &proxy, "/v1/monitor/chatgpt", b2, 0, NULL, 30000L, alice);
    free(b1);
    free(b2);
    assert_true(driver_finish(&drv, 30000));
    assert_int_equal(drv.calls[0].reply.status, 200);
    const struct http_reply *r = &drv.calls[1].reply;
    assert_error(r, 429, "CONCURRENCY_LIMIT_EXCEEDED");
    json_t *j = http_json(r);
    assert_string_equal(json_string_value(json_dig(j, "error.details.member")), "alice");
    assert_int_equal(json_integer_value(json_dig(j, "error.details.limit")), 1);
    assert_true(json_integer_value(json_dig(j, "error.details.waited_ms")) >= 300);
    json_decref(j);
    assert_non_null(http_header(r, "Retry-After"));
    assert_int_equal(fake_stat(&fake, "requests_total"), 1);
    driver_free(&drv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unknown_and_missing_tokens, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_member_token_works_and_never_leaves, reset_fake,
                                        stop_proxy),
        cmocka_unit_test_setup_teardown(test_admin_token, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_admin_routes_without_admin_token, reset_fake,
                                        stop_proxy),
        cmocka_unit_test_setup_teardown(test_members_need_the_api_key, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_cli_members, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_member_max_concurrency, reset_fake, stop_proxy),
        cmocka_unit_test_setup_teardown(test_member_share_queue_timeout, reset_fake, stop_proxy),
    };
    return cmocka_run_group_tests_name("integration_members", tests, group_setup, group_teardown);
}
