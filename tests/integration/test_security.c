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
    const char *colon = strrchr(p->addr, ':');
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_listen_is_loopback),
        cmocka_unit_test(test_public_listen_without_members_refused),
        cmocka_unit_test(test_public_listen_with_members_serves),
        cmocka_unit_test(test_artifact_redirect_not_followed),
        cmocka_unit_test(test_paths_cannot_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
