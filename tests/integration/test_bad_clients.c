/* test_bad_clients: clients that misbehave at the HTTP level, spoken to over
 * raw sockets. Malformed, oversized and pipelined-garbage requests get the
 * right 4xx in cloro's envelope (never libevent's HTML page); slowloris heads
 * and bodies get a 408 within client_request_timeout; thousands of idle
 * connections cannot lock others out of max_connections; and through all of
 * it the proxy keeps serving everyone else, and reaches the upstream only for
 * what a client really asked. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- raw sockets ------------------------------------------------------------ */

static void send_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return; /* the proxy may close first; the answer tells */
        p += k;
        n -= (size_t)k;
    }
}

/* Reads until the peer closes or timeout_ms passes; returns the bytes read
 * (NUL-terminated, caller frees) and sets *closed. */
static char *read_until_close(int fd, int timeout_ms, bool *closed)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    long long deadline = now_ms() + timeout_ms;
    *closed = false;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            break;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t k = recv(fd, buf + len, cap - len, 0);
        if (k <= 0) {
            *closed = true;
            break;
        }
        len += (size_t)k;
    }
    buf[len] = '\0';
    return buf;
}

/* One raw exchange on a new connection: sends data, reads to the close. */
static char *exchange(const struct proc *p, const void *data, size_t n, int timeout_ms)
{
    int fd = proc_connect(p);
    send_all(fd, data, n);
    bool closed;
    char *reply = read_until_close(fd, timeout_ms, &closed);
    close(fd);
    return reply;
}

static int status_of(const char *reply)
{
    int status = 0;
    if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* Checks that reply (one answer) is status with cloro's envelope carrying
 * code, an X-Request-ID and a JSON Content-Type. */
static void assert_envelope(const char *what, const char *reply, int status, const char *code)
{
    if (status_of(reply) != status)
        fail_msg("%s: expected %d, got:\n%.600s", what, status, reply);
    const char *end = strstr(reply, "\r\n\r\n");
    assert_non_null(end);
    if (strstr(reply, "X-Request-ID: ") == NULL || strstr(reply, "application/json") == NULL)
        fail_msg("%s: headers lack X-Request-ID or the JSON type:\n%.600s", what, reply);
    assert_null(strstr(reply, "<HTML>"));
    json_error_t err;
    json_t *body = json_loadb(end + 4, strcspn(end + 4, "\n") + 1, JSON_DISABLE_EOF_CHECK, &err);
    if (body == NULL)
        fail_msg("%s: body is not JSON (%s):\n%.600s", what, err.text, reply);
    assert_true(json_is_false(json_object_get(body, "success")));
    json_t *error = json_object_get(body, "error");
    const char *got = json_string_value(json_object_get(error, "code"));
    if (got == NULL || strcmp(got, code) != 0)
        fail_msg("%s: expected code %s, got %s", what, code, got != NULL ? got : "(none)");
    assert_non_null(json_string_value(json_object_get(error, "message")));
    assert_non_null(json_string_value(json_object_get(error, "timestamp")));
    json_decref(body);
}

static void assert_serving(const struct proc *proxy)
{
    struct http_reply r;
    http_get(proxy, "/_proxy/healthz", &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    assert_true(vasprintf(&out, fmt, ap) >= 0);
    va_end(ap);
    return out;
}

static int count_fds(pid_t pid)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "ls /proc/%d/fd | wc -l", (int)pid);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    int n = -1;
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    return n;
}

static void start_pair(struct proc *fake, struct proc *proxy, const char *const extra[])
{
    assert_int_equal(
        proc_start_fake(fake, (const char *[]){"--api-key", "sk_bad_clients_key", NULL}), 0);
    assert_int_equal(proc_start_proxy(proxy, fake->url, extra,
                                      (const char *[]){"CLORO_API_KEY=sk_bad_clients_key", NULL}),
                     0);
}

/* ---- malformed and oversized requests -------------------------------------- */

static void test_http_errors_in_envelope(void **state)
{
    (void)state;
    struct proc fake, proxy;
    start_pair(&fake, &proxy,
               (const char *[]){"--max-header-bytes", "2KiB", "--max-body-bytes", "4KiB", NULL});
    char *big = repeat('a', 5000);
    char *req;
    char *reply;

    req = format("GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", big);
    reply = exchange(&proxy, req, strlen(req), 5000);
    assert_envelope("request line over max_header_bytes", reply, 414, "URI_TOO_LONG");
    free(reply);
    free(req);

    req = format("GET /_proxy/healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    reply = exchange(&proxy, req, strlen(req), 5000);
    assert_envelope("headers over max_header_bytes", reply, 431, "HEADERS_TOO_LARGE");
    free(reply);
    free(req);

    /* Many small headers add up the same way. */
    char many[8192] = "GET /_proxy/healthz HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 400; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "X-H%d: v\r\n", i);
    strcat(many, "\r\n");
    reply = exchange(&proxy, many, strlen(many), 5000);
    assert_envelope("many headers", reply, 431, "HEADERS_TOO_LARGE");
    free(reply);

    /* A body over evhttp's cap (twice max_body_bytes) and one just over
     * max_body_bytes (forward.c's check): both 413 in the envelope. */
    const char *sizes[] = {"9000", "5000"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = (size_t)atoi(sizes[i]);
        char *body = repeat('[', n);
        req = format("POST /v1/monitor/chatgpt HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     n, body);
        reply = exchange(&proxy, req, strlen(req), 5000);
        assert_envelope("body over max_body_bytes", reply, 413, "PAYLOAD_TOO_LARGE");
        free(reply);
        free(req);
        free(body);
    }
    char *chunk = repeat('{', 4096);
    req = format("POST /v1/monitor/chatgpt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n1000\r\n%s\r\n1000\r\n%s\r\n1000\r\n%s\r\n0\r\n\r\n",
                 chunk, chunk, chunk);
    reply = exchange(&proxy, req, strlen(req), 5000);
    assert_envelope("chunked body over the cap", reply, 413, "PAYLOAD_TOO_LARGE");
    free(reply);
    free(req);
    free(chunk);

    const char *garbage[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", /* a TLS hello */
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        reply = exchange(&proxy, garbage[i], strlen(garbage[i]), 5000);
        char what[64];
        snprintf(what, sizeof what, "garbage #%zu", i);
        /* Either the envelope's 400, or a close without an answer. */
        if (reply[0] != '\0')
            assert_envelope(what, reply, 400, "BAD_REQUEST");
        free(reply);
    }

    /* A method that is not HTTP's. */
    const char odd[] = "G\xc3\x28T /\xff\xfe HTTP/1.1\r\n\r\n";
    reply = exchange(&proxy, odd, sizeof odd - 1, 5000);
    assert_envelope("unknown method", reply, 405, "METHOD_NOT_ALLOWED");
    free(reply);

    /* Pipelined: a good request, then garbage: the first is answered, the
     * garbage gets its 400, and the connection closes. */
    const char pipelined[] = "GET /_proxy/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                             "\x01\x02\x03 NONSENSE \x7f\r\n\r\n"
                             "GET /_proxy/healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    reply = exchange(&proxy, pipelined, sizeof pipelined - 1, 5000);
    assert_int_equal(status_of(reply), 200);
    const char *second = strstr(reply + 4, "HTTP/1.1 ");
    assert_non_null(second);
    assert_envelope("pipelined garbage", second, 400, "BAD_REQUEST");
    assert_null(strstr(second + 4, "HTTP/1.1 ")); /* nothing after: closed */
    free(reply);

    /* Invalid UTF-8 and a very deep JSON body: a clear 400, never a crash. */
    const char *bodies[] = {"{\"prompt\":\"caf\xc3\x28 \xff\",\"country\":\"US\"}", NULL};
    char *deep = repeat('[', 4000); /* past jansson's depth limit, within max_body_bytes */
    bodies[1] = deep;
    for (size_t i = 0; i < 2; i++) {
        struct http_reply r;
        http_post(&proxy, "/v1/monitor/chatgpt", bodies[i], NULL, &r);
        if (r.status != 400)
            fail_msg("body #%zu: status %ld: %.300s", i, r.status, r.body);
        assert_string_equal(http_error_code(&r), "VALIDATION_ERROR");
        assert_non_null(http_header(&r, "X-Request-ID"));
        http_reply_free(&r);
    }
    free(deep);
    /* An invalid UTF-8 path is only a route that does not exist. */
    const char bad_path[] = "GET /\xff\xfe/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    reply = exchange(&proxy, bad_path, sizeof bad_path - 1, 5000);
    assert_envelope("invalid UTF-8 path", reply, 404, "NOT_FOUND");
    free(reply);

    assert_serving(&proxy);
    /* 3 heads, 3 bodies, and at least the 4 garbage lines evhttp refused. */
    assert_true(proxy_counter(&proxy, "clients.bad_requests") >= 10);
    /* Only the two JSON bodies went upstream (cloro judges what the proxy
     * cannot vouch for); nothing else reached it. */
    assert_int_equal(fake_stat(&fake, "requests_total"), 2);
    char *log = proc_log(&proxy);
    assert_non_null(strstr(log, "event=bad_request"));
    free(log);
    free(big);
    proc_stop(&proxy);
    proc_stop(&fake);
}

/* ---- slow clients ------------------------------------------------------------ */

static void test_slow_clients_cut(void **state)
{
    (void)state;
    struct proc fake, proxy;
    start_pair(&fake, &proxy,
               (const char *[]){"--client-request-timeout", "1s", "--client-timeout", "3s", NULL});
    /* An idle connection that never sends a byte: closed at client_timeout. */
    int idle = proc_connect(&proxy);
    long long idle_since = now_ms();

    /* Slowloris head: one header byte every 100 ms, never the blank line. */
    int head = proc_connect(&proxy);
    send_all(head, "GET /_proxy/healthz HTTP/1.1\r\nHost: x\r\n", 40);
    /* Slow body: the head whole, then the body a byte at a time. */
    int body = proc_connect(&proxy);
    const char *post = "POST /v1/monitor/chatgpt HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       "application/json\r\nContent-Length: 1000\r\n\r\n{";
    send_all(body, post, strlen(post));
    long long started = now_ms();
    bool head_closed = false, body_closed = false;
    long long head_at = 0, body_at = 0;
    char head_reply[4096] = "", body_reply[4096] = "";
    size_t head_len = 0, body_len = 0;
    while (now_ms() - started < 5000 && !(head_closed && body_closed)) {
        if (!head_closed)
            send_all(head, "X", 1);
        if (!body_closed)
            send_all(body, " ", 1);
        /* Everyone else is served meanwhile. */
        assert_serving(&proxy);
        sleep_ms(100);
        int fds[2] = {head, body};
        for (int i = 0; i < 2; i++) {
            bool *closed = i == 0 ? &head_closed : &body_closed;
            char *buf = i == 0 ? head_reply : body_reply;
            size_t *len = i == 0 ? &head_len : &body_len;
            while (!*closed) {
                ssize_t k = recv(fds[i], buf + *len, 4095 - *len, MSG_DONTWAIT);
                if (k > 0) {
                    *len += (size_t)k;
                    buf[*len] = '\0';
                    continue;
                }
                if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                    *closed = true;
                    *(i == 0 ? &head_at : &body_at) = now_ms();
                }
                break;
            }
        }
    }
    assert_true(head_closed);
    assert_true(body_closed);
    assert_envelope("slowloris head", head_reply, 408, "REQUEST_TIMEOUT");
    assert_envelope("slow body", body_reply, 408, "REQUEST_TIMEOUT");
    /* Cut at client_request_timeout (1 s), not at client_timeout (3 s). */
    assert_true(head_at - started < 2500);
    assert_true(body_at - started < 2500);
    assert_int_equal(proxy_counter(&proxy, "clients.request_timeouts"), 2);
    /* The slow body never went upstream. */
    assert_int_equal(fake_stat(&fake, "requests_total"), 0);

    bool closed;
    char *rest = read_until_close(idle, 6000, &closed);
    assert_true(closed);
    assert_true(now_ms() - idle_since < 6000);
    free(rest);
    close(idle);
    close(head);
    close(body);
    assert_serving(&proxy);
    proc_stop(&proxy);
    proc_stop(&fake);
}

/* ---- thousands of idle connections ------------------------------------------ */

#define IDLE_CLIENTS    2000
#define MAX_CONNECTIONS 64

static void test_idle_connections_cannot_lock_out(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < IDLE_CLIENTS + 256) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    assert_true(rl.rlim_cur >= IDLE_CLIENTS + 256);
    struct proc fake, proxy;
    start_pair(&fake, &proxy,
               (const char *[]){"--max-connections", "64", "--client-request-timeout", "2s", NULL});
    assert_serving(&proxy);
    sleep_ms(200);
    int baseline_fds = count_fds(proxy.pid);

    static int idle[IDLE_CLIENTS];
    for (int i = 0; i < IDLE_CLIENTS; i++) {
        idle[i] = proc_connect(&proxy);
        if (i % 250 == 249)
            assert_serving(&proxy); /* served all along */
    }
    /* Real requests still go through, and the upstream sees them. */
    for (int i = 0; i < 20; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"prompt\":\"idle crowd %d\",\"country\":\"US\"}", i);
        struct http_reply r;
        http_post(&proxy, "/v1/monitor/chatgpt", body, NULL, &r);
        if (r.status != 200)
            fail_msg("request %d: %ld %.300s", i, r.status, r.body);
        http_reply_free(&r);
    }
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 20);
    long long open = proxy_counter(&proxy, "clients.open");
    assert_true(open >= 1 && open <= MAX_CONNECTIONS);
    assert_true(proxy_counter(&proxy, "clients.idle_closed") >= IDLE_CLIENTS - MAX_CONNECTIONS);
    assert_true(count_fds(proxy.pid) <= baseline_fds + MAX_CONNECTIONS + 2);
    for (int i = 0; i < IDLE_CLIENTS; i++)
        close(idle[i]);

    /* All 64 places taken by clients mid-request: a newcomer gets the 503
     * envelope with Retry-After at once, and is served again once the slow
     * ones are cut (client_request_timeout). */
    sleep_ms(300);
    static int busy[MAX_CONNECTIONS];
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        busy[i] = proc_connect(&proxy);
        send_all(busy[i], "GET /_proxy/healthz HTTP/1.1\r\n", 30);
    }
    sleep_ms(300);
    char *reply = exchange(&proxy, "GET /_proxy/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 40, 3000);
    assert_envelope("newcomer while full", reply, 503, "SERVICE_UNAVAILABLE");
    assert_non_null(strstr(reply, "Retry-After: 1"));
    free(reply);
    /* (Counters are read once the slow ones are cut: a stats call is a
     * newcomer too.) */
    long long deadline = now_ms() + 6000;
    long long timeouts = 0;
    while (now_ms() < deadline &&
           (timeouts = proxy_counter(&proxy, "clients.request_timeouts")) < MAX_CONNECTIONS)
        sleep_ms(100);
    assert_int_equal(timeouts, MAX_CONNECTIONS);
    assert_true(proxy_counter(&proxy, "clients.refused") >= 1);
    for (int i = 0; i < MAX_CONNECTIONS; i++)
        close(busy[i]);
    assert_serving(&proxy);

    /* Everything let go: only the stats call's own connection is open, and
     * the descriptors are back to where they were. */
    long long until = now_ms() + 5000;
    while (proxy_counter(&proxy, "clients.open") > 1 && now_ms() < until)
        sleep_ms(50);
    assert_int_equal(proxy_counter(&proxy, "clients.open"), 1);
    int fds = count_fds(proxy.pid);
    if (fds > baseline_fds + 1)
        fail_msg("fds: %d after, %d before", fds, baseline_fds);
    proc_stop(&proxy);
    assert_int_equal(proxy.exit_status, 0);
    proc_stop(&fake);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_errors_in_envelope),
        cmocka_unit_test(test_slow_clients_cut),
        cmocka_unit_test(test_idle_connections_cannot_lock_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
