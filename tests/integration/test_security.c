/* test_security.c: what keeps the proxy from being more open than its
 * configuration says: a listen address reachable from other machines needs
 * auth = members (serve and check-config refuse otherwise, exit 2). */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void assert_output_has(const struct cli_result *r, const char *needle)
{
    if (strstr(r->output, needle) == NULL)
        fail_msg("expected '%s' in:\n%s", needle, r->output);
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/cloro-it-sec-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* ---- binding ------------------------------------------------------------ */

static void test_public_listen_without_members_refused(void **state)
{
    (void)state;
    const char *listens[] = {"0.0.0.0:0", "[::]:0"};
    for (size_t i = 0; i < sizeof listens / sizeof listens[0]; i++) {
        struct cli_result r;
        cli_run(&r, (const char *[]){"serve", "--listen", listens[i], "--cache-dir",
                                     "/tmp/cloro-it-sec-never", NULL});
        assert_int_equal(r.status, 2);
        assert_output_has(&r, "listen");
        assert_output_has(&r, "auth = members");
        assert_true(strstr(r.output, "event=listening") == NULL);
        free(r.output);
        /* auth = open said outright is refused too. */
        cli_run(&r, (const char *[]){"serve", "--listen", listens[i], "--auth", "open",
                                     "--cache-dir", "/tmp/cloro-it-sec-never", NULL});
        assert_int_equal(r.status, 2);
        assert_output_has(&r, "auth = members");
        free(r.output);
    }
    assert_int_not_equal(access("/tmp/cloro-it-sec-never", F_OK), 0);

    char *conf = write_temp("listen = 0.0.0.0:8787\n");
    struct cli_result r;
    cli_run(&r, (const char *[]){"check-config", conf, NULL});
    assert_int_equal(r.status, 2);
    assert_output_has(&r, "listen");
    assert_output_has(&r, "0.0.0.0:8787");
    assert_output_has(&r, "auth = members");
    free(r.output);
    unlink(conf);
    free(conf);

    conf = write_temp("listen = 0.0.0.0:8787\nauth = members\n");
    cli_run(&r, (const char *[]){"check-config", conf, NULL});
    assert_int_equal(r.status, 0);
    free(r.output);
    unlink(conf);
    free(conf);

    conf = write_temp("listen = 127.0.0.1:8787\n");
    cli_run(&r, (const char *[]){"check-config", conf, NULL});
    assert_int_equal(r.status, 0);
    free(r.output);
    unlink(conf);
    free(conf);
}

static void test_public_listen_with_members_serves(void **state)
{
    (void)state;
    struct proc fake;
    assert_int_equal(proc_start_fake(&fake, NULL), 0);
    struct proc proxy;
    assert_int_equal(
        proc_start_proxy(&proxy, fake.url,
                         (const char *[]){"--listen", "0.0.0.0:0", "--auth", "members", NULL},
                         (const char *[]){"CLORO_API_KEY=sk_sec_bind", NULL}),
        0);
    /* Reached on loopback; with no token a /v1/ call is refused. */
    const char *port = strrchr(proxy.addr, ':');
    assert_non_null(port);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1%s/v1/monitor/chatgpt", port);
    struct http_reply r;
    assert_int_equal(http_call("POST", url, "{\"prompt\":\"x\",\"country\":\"US\"}",
                               (const char *[]){"Content-Type: application/json", NULL}, &r),
                     0);
    assert_int_equal(r.status, 401);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 0);
    proc_stop(&proxy);
    proc_stop(&fake);
}

static void test_default_listen_is_loopback(void **state)
{
    (void)state;
    struct cli_result r;
    cli_run(&r, (const char *[]){"show-config", NULL});
    assert_output_has(&r, "listen = 127.0.0.1:8787");
    free(r.output);
}

/* ---- no request outside artifact_hosts ------------------------------------ */

/* The artifact host answers 302 to another server: the downloader does not
 * follow (a failed attempt, retried), and the other server sees nothing, also
 * when a client fetches the rewritten link. */
static void test_artifact_redirect_not_followed(void **state)
{
    (void)state;
    struct proc other;
    assert_int_equal(proc_start_fake(&other, NULL), 0);
    struct proc fake;
    assert_int_equal(proc_start_fake(&fake, (const char *[]){"--api-key", "sk_sec_redirect",
                                                             "--artifact-ttl-s", "30", NULL}),
                     0);
    char knob[256];
    snprintf(knob, sizeof knob, "{\"artifact_redirect\":\"%s/v1/stolen\"}", other.url);
    fake_configure(&fake, knob);
    struct proc proxy;
    assert_int_equal(proc_start_proxy(&proxy, fake.url,
                                      (const char *[]){"--artifact-hosts", fake.addr, NULL},
                                      (const char *[]){"CLORO_API_KEY=sk_sec_redirect", NULL}),
                     0);
    struct http_reply r;
    http_post(&proxy, "/v1/monitor/chatgpt",
              "{\"prompt\":\"redirect me\",\"country\":\"US\",\"include\":{\"html\":true}}", NULL,
              &r);
    assert_int_equal(r.status, 200);
    /* The rewritten link to the proxy's copy. */
    const char *link = strstr(r.body, "/_proxy/artifacts/");
    assert_non_null(link);
    char path[200];
    size_t n = strcspn(link, "\"\\");
    assert_true(n < sizeof path);
    snprintf(path, sizeof path, "%.*s", (int)n, link);
    http_reply_free(&r);
    assert_true(proxy_wait_counter(&proxy, "artifacts.failures", 2, 10000) >= 2);
    assert_true(fake_stat(&fake, "artifact_fetches") >= 2);
    assert_int_equal(proxy_counter(&proxy, "artifacts.captured"), 0);
    http_get(&proxy, path, &r);
    assert_true(r.status != 200);
    const char *location = http_header(&r, "Location");
    assert_true(location == NULL || strstr(location, other.addr) == NULL);
    http_reply_free(&r);
    sleep_ms(300);
    /* The other server counts every /v1/ request it gets: none. */
    assert_int_equal(fake_stat(&other, "requests_total"), 0);
    char *log = proc_log(&proxy);
    assert_null(strstr(log, "event=artifact_captured"));
    free(log);
    proc_stop(&proxy);
    proc_stop(&fake);
    proc_stop(&other);
}

/* ---- paths cannot escape -------------------------------------------------- */

/* Sends "GET path" as is on a new connection; returns the status (0 when no
 * status line came) and the whole answer in reply. */
static int raw_get(const struct proc *p, const char *path, char *reply, size_t size)
{
    int fd = proc_connect(p);
    char req[1024];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < size && (k = recv(fd, reply + got, size - 1 - got, 0)) > 0)
        got += (size_t)k;
    reply[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

static void test_paths_cannot_escape(void **state)
{
    (void)state;
    struct proc fake;
    assert_int_equal(proc_start_fake(&fake, (const char *[]){"--api-key", "sk_sec_paths", NULL}),
                     0);
    struct proc proxy;
    assert_int_equal(proc_start_proxy(&proxy, fake.url,
                                      (const char *[]){"--artifact-hosts", fake.addr, NULL},
                                      (const char *[]){"CLORO_API_KEY=sk_sec_paths", NULL}),
                     0);
    const char *paths[] = {
        "/_proxy/artifacts/../../../../etc/passwd",
        "/_proxy/artifacts/../cache/data.mdb",
        "/_proxy/artifacts/%2e%2e/%2e%2e/etc/passwd",
        "/_proxy/artifacts/%2E%2E/cache/data.mdb",
        "/_proxy/artifacts/..%2f..%2f..%2fetc%2fpasswd.html",
        "/_proxy/artifacts/%2e%2e%2fcache%2fdata.mdb.html",
        "/_proxy/artifacts/..\\..\\etc\\passwd.html",
        "/_proxy/artifacts/x%00.html",
        "/_proxy/artifacts/00000000-0000-4000-8000-000000000000/page-1%00.html",
        "/_proxy/artifacts/00000000-0000-4000-8000-000000000000/../page-1.html",
        "/_proxy/artifacts/00000000-0000-4000-8000-000000000000/./page-1.html",
        "/_proxy/artifacts/./x/page-1.html",
        "/_proxy/artifacts//etc/passwd.html",
        "/_proxy/artifacts/x%2fpage-1.html",
        "/v1/../_proxy/stats",
        "/v1/%2e%2e/_proxy/stats",
        "/v1/monitor/../../etc/passwd",
        "/v1/monitor/%2e%2e/%2E%2E/etc/passwd",
        "/v1/./monitor/chatgpt",
        "/_proxy/../v1/monitor/chatgpt",
    };
    static char reply[65536];
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        int status = raw_get(&proxy, paths[i], reply, sizeof reply);
        if (status != 400 && status != 404)
            fail_msg("%s: status %d:\n%.500s", paths[i], status, reply);
        assert_null(strstr(reply, "root:"));
        assert_null(strstr(reply, "\"requests_total\""));
    }
    /* None of them reached cloro. */
    assert_int_equal(fake_stat(&fake, "requests_total"), 0);
    proc_stop(&proxy);
    proc_stop(&fake);
}

/* ---- secrets never appear -------------------------------------------------- */

#define SEC_KEY   "sk_live_SECRETKEY_7c1e93ab55"
#define SEC_ADMIN "adm_SECRETADMIN_4a8d02f1"
#define SEC_HOOK  "whs_SECRETHOOK_91be77c0"
#define SEC_ALICE "cpm_SECRETALICE_2f6b11aa"
#define SEC_BOB   "cpm_SECRETBOB_8e03cd4f"
static const char *const secrets[] = {SEC_KEY, SEC_ADMIN, SEC_HOOK, SEC_ALICE, SEC_BOB};

struct seen {
    char *text;
    size_t len;
};

static void seen_add(struct seen *s, const char *what, const char *data, size_t n)
{
    size_t w = strlen(what);
    s->text = realloc(s->text, s->len + w + n + 2);
    assert_non_null(s->text);
    memcpy(s->text + s->len, what, w);
    s->len += w;
    s->text[s->len++] = '\n';
    memcpy(s->text + s->len, data, n);
    s->len += n;
    s->text[s->len] = '\0';
}

static void seen_reply(struct seen *s, const char *what, const struct http_reply *r)
{
    for (size_t i = 0; i < r->header_count; i++) {
        char line[1024];
        int n = snprintf(line, sizeof line, "%s: %s", r->headers[i].name, r->headers[i].value);
        seen_add(s, what, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
    if (r->body != NULL)
        seen_add(s, what, r->body, r->body_len);
}

static void assert_no_secret(const char *where, const char *data, size_t n)
{
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        size_t k = strlen(secrets[i]);
        for (size_t at = 0; at + k <= n; at++)
            if (memcmp(data + at, secrets[i], k) == 0)
                fail_msg("%s holds the secret %s at byte %zu", where, secrets[i], at);
    }
}

static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            data = realloc(data, cap + 1);
            assert_non_null(data);
        }
        size_t k = fread(data + n, 1, cap - n, f);
        if (k == 0)
            break;
        n += k;
    }
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;
}

static void check_file(const char *path)
{
    size_t n = 0;
    char *data = read_whole(path, &n);
    assert_non_null(data);
    assert_no_secret(path, data, n);
    free(data);
}

static void call(struct seen *s, const struct proc *p, const char *method, const char *path,
                 const char *body, const char *auth)
{
    const char *headers[3] = {"Content-Type: application/json", auth, NULL};
    char *url = proc_url(p, path);
    struct http_reply r;
    http_call(method, url, body, headers, &r);
    free(url);
    char what[300];
    snprintf(what, sizeof what, "%s %s -> %ld", method, path, r.status);
    seen_reply(s, what, &r);
    http_reply_free(&r);
}

static void cli_seen(struct seen *s, const char *const args[])
{
    struct cli_result r;
    cli_run(&r, args);
    if (r.status != 0)
        fail_msg("cloro-proxy %s %s: exit %d:\n%s", args[0], args[1], r.status, r.output);
    seen_add(s, args[0], r.output, strlen(r.output));
    free(r.output);
}

/* A counter of /_proxy/stats read with the admin token, polled until it
 * reaches value or timeout_ms passes; the last value (-1: absent). */
static long long admin_wait(const struct proc *p, const char *dotted, long long value,
                            int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms, got = -1;
    do {
        char *url = proc_url(p, "/_proxy/stats");
        struct http_reply r;
        http_call("GET", url, NULL, (const char *[]){"Authorization: Bearer " SEC_ADMIN, NULL}, &r);
        free(url);
        json_t *j = http_json(&r);
        json_t *v = j != NULL ? json_dig(j, dotted) : NULL;
        got = v != NULL ? json_integer_value(v) : -1;
        json_decref(j);
        http_reply_free(&r);
        if (got >= value)
            break;
        sleep_ms(50);
    } while (now_ms() < deadline);
    return got;
}

static void test_secrets_never_appear(void **state)
{
    (void)state;
    char dir[] = "/tmp/cloro-it-secrets-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cache[96], members[96], bundle[96], unpacked[96], hash_a[65], hash_b[65], text[512];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(members, sizeof members, "%s/members.ini", dir);
    snprintf(bundle, sizeof bundle, "%s/all.bundle", dir);
    snprintf(unpacked, sizeof unpacked, "%s/all.raw", dir);
    sha256_hex(SEC_ALICE, hash_a);
    sha256_hex(SEC_BOB, hash_b);
    snprintf(text, sizeof text,
             "[member alice]\ntoken_sha256 = %s\n[member bob]\ntoken_sha256 = %s\n", hash_a,
             hash_b);
    FILE *f = fopen(members, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);

    struct proc receiver, fake, proxy;
    const char *recv_args[] = {WEBHOOK_RECEIVER_BIN, "--port", "0", "--secret", SEC_HOOK, NULL};
    assert_int_equal(proc_start(&receiver, "receiver", recv_args, NULL), 0);
    assert_int_equal(proc_start_fake(&fake, (const char *[]){"--api-key", SEC_KEY, NULL}), 0);
    const char *args[] = {"--cache-dir",
                          cache,
                          "--members-file",
                          members,
                          "--artifact-hosts",
                          fake.addr,
                          "--poll-initial",
                          "100ms",
                          "--poll-interval",
                          "200ms",
                          "--log-level",
                          "debug",
                          NULL};
    assert_int_equal(
        proc_start_proxy(&proxy, fake.url, args,
                         (const char *[]){"CLORO_API_KEY=" SEC_KEY, "CLORO_ADMIN_TOKEN=" SEC_ADMIN,
                                          "CLORO_WEBHOOK_SECRET=" SEC_HOOK, NULL}),
        0);
    struct seen s = {0};
    const char *alice = "Authorization: Bearer " SEC_ALICE;
    const char *bob = "Authorization: Bearer " SEC_BOB;
    const char *admin = "Authorization: Bearer " SEC_ADMIN;
    const char *q = "{\"prompt\":\"secret crm\",\"country\":\"US\",\"include\":{\"html\":true}}";
    call(&s, &proxy, "POST", "/v1/monitor/chatgpt", q, alice); /* miss */
    call(&s, &proxy, "POST", "/v1/monitor/chatgpt", q, bob);   /* hit */
    call(&s, &proxy, "POST", "/v1/monitor/google",
         "{\"query\":\"secret tools\",\"country\":\"US\",\"pages\":2,\"include\":{\"html\":true}}",
         bob);
    call(&s, &proxy, "POST", "/v1/monitor/perplexity", "{\"prompt\":\"p\",\"country\":\"US\"}",
         alice);
    /* Errors: bad body, no token, a wrong token, a token in the wrong place. */
    call(&s, &proxy, "POST", "/v1/monitor/chatgpt", "{not json", alice);
    call(&s, &proxy, "POST", "/v1/monitor/chatgpt", q, NULL);
    call(&s, &proxy, "POST", "/v1/monitor/chatgpt", q, "Authorization: Bearer " SEC_ALICE "x");
    call(&s, &proxy, "POST", "/v1/monitor/chatgpt", q, "Authorization: " SEC_BOB);
    call(&s, &proxy, "GET", "/_proxy/stats", NULL, "Authorization: Bearer " SEC_ADMIN "x");
    call(&s, &proxy, "GET", "/_proxy/stats", NULL, alice);
    /* An async task with a webhook, and a batch. */
    char task[512];
    snprintf(task, sizeof task,
             "{\"taskType\":\"GEMINI\",\"payload\":{\"prompt\":\"secret async\",\"country\":"
             "\"US\",\"include\":{\"html\":true}},\"webhook\":{\"url\":\"%s/hook/sec\"}}",
             receiver.url);
    call(&s, &proxy, "POST", "/v1/async/task", task, alice);
    call(&s, &proxy, "POST", "/v1/async/task/batch",
         "[{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"secret batch 1\","
         "\"country\":\"US\"}},{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"secret "
         "batch 2\",\"country\":\"US\"}}]",
         bob);
    assert_true(admin_wait(&proxy, "tasks.webhooks.delivered", 1, 10000) >= 1);
    assert_true(admin_wait(&proxy, "artifacts.captured", 3, 8000) >= 3);
    const char *expect[] = {"POST /v1/monitor/chatgpt -> 200",    "POST /v1/monitor/google -> 200",
                            "POST /v1/monitor/perplexity -> 200", "POST /v1/async/task -> 200",
                            "POST /v1/async/task/batch -> 200",   "POST /v1/monitor/chatgpt -> 401",
                            "POST /v1/monitor/chatgpt -> 400"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        if (strstr(s.text, expect[i]) == NULL)
            fail_msg("the workload missed '%s'", expect[i]);
    /* Every page of the proxy's own. */
    const char *admin_paths[] = {"/_proxy/stats",   "/_proxy/recent", "/_proxy/usage",
                                 "/_proxy/metrics", "/_proxy/",       "/_proxy/cache/stats",
                                 "/_proxy/healthz", "/_proxy/mode",   "/v1/async/tasks"};
    for (size_t i = 0; i < sizeof admin_paths / sizeof admin_paths[0]; i++) {
        call(&s, &proxy, "GET", admin_paths[i], NULL, admin);
        call(&s, &proxy, "GET", admin_paths[i], NULL, NULL);
    }
    /* The artifact copies the answers link to. */
    const char *pages[] = {"GET /_proxy/metrics -> 200", "GET /_proxy/ -> 200",
                           "GET /_proxy/usage -> 200", "GET /_proxy/recent -> 200",
                           "GET /_proxy/stats -> 200"};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
        if (strstr(s.text, pages[i]) == NULL)
            fail_msg("the workload missed '%s'", pages[i]);
    char link_paths[4][200];
    int links = 0;
    for (const char *at = s.text; links < 4 && (at = strstr(at, "/_proxy/artifacts/")) != NULL;) {
        size_t n = strcspn(at, "\"\\ \n");
        snprintf(link_paths[links++], sizeof link_paths[0], "%.*s",
                 (int)(n < sizeof link_paths[0] ? n : sizeof link_paths[0] - 1), at);
        at += n;
    }
    for (int k = 0; k < links; k++)
        call(&s, &proxy, "GET", link_paths[k], NULL, NULL);
    assert_true(links > 0);
    /* The proxy's log, whole: read after a clean stop, before its directory goes. */
    kill(proxy.pid, SIGTERM);
    assert_true(proc_wait_exit(&proxy, 15000));
    char *log = proc_log(&proxy);
    assert_non_null(log);
    assert_non_null(strstr(log, "event=listening"));
    assert_no_secret("the proxy's log", log, strlen(log));
    free(log);
    proc_stop(&proxy);

    cli_seen(&s, (const char *[]){"cache", "ls", "--cache-dir", cache, NULL});
    cli_seen(&s, (const char *[]){"usage", "--cache-dir", cache, NULL});
    cli_seen(
        &s, (const char *[]){"show-config", "--cache-dir", cache, "--members-file", members, NULL});
    cli_seen(&s, (const char *[]){"export", "-o", bundle, "--cache-dir", cache, NULL});
    /* cache show of every key cache ls listed. */
    struct cli_result ls;
    cli_run(&ls, (const char *[]){"cache", "ls", "--cache-dir", cache, NULL});
    for (char *line = strtok(ls.output, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char key[65];
        if (sscanf(line, "%64[0-9a-f]", key) == 1 && strlen(key) == 64)
            cli_seen(&s, (const char *[]){"cache", "show", key, "--cache-dir", cache, NULL});
    }
    free(ls.output);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' > '%s'", bundle, unpacked);
    assert_int_equal(system(cmd), 0);

    assert_no_secret("replies and command output", s.text, s.len);
    check_file(bundle);
    check_file(unpacked);
    /* The files under the cache directory, raw. */
    char list[160];
    snprintf(list, sizeof list, "%s/files.txt", dir);
    snprintf(cmd, sizeof cmd, "find '%s' -type f > '%s'", cache, list);
    assert_int_equal(system(cmd), 0);
    size_t n = 0;
    char *files = read_whole(list, &n);
    assert_non_null(files);
    int checked = 0;
    for (char *line = strtok(files, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        check_file(line);
        checked++;
    }
    assert_true(checked > 0);
    free(files);
    /* The members file holds the hashes, never the tokens. */
    check_file(members);
    size_t mlen = 0;
    char *mtext = read_whole(members, &mlen);
    assert_non_null(strstr(mtext, hash_a));
    free(mtext);
    free(s.text);
    proc_stop(&receiver);
    proc_stop(&fake);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_listen_is_loopback),
        cmocka_unit_test(test_public_listen_without_members_refused),
        cmocka_unit_test(test_public_listen_with_members_serves),
        cmocka_unit_test(test_artifact_redirect_not_followed),
        cmocka_unit_test(test_paths_cannot_escape),
        cmocka_unit_test(test_secrets_never_appear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
