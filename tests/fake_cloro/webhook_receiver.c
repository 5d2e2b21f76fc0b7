/* webhook_receiver: a test endpoint for webhook deliveries (cloro-api.md §8), from
 * the fake cloro or the proxy. Owns its own evhttp server on 127.0.0.1: it records
 * every POST /hook/<anything> (path, X-Cloro-Timestamp/-Signature/-Webhook-Id, the
 * raw body, whether the signature verified, the status it answered), answers 200
 * {"ok":true} unless told to fail or delay, and serves the record as JSON.
 *
 *   webhook_receiver [--port N] [--secret S]
 *     --port 0 (default) picks a free port. Once bound it prints
 *     "listening on 127.0.0.1:PORT" on stdout (flushed) and the fake's harness line
 *     "... event=listening addr=127.0.0.1:PORT" on stderr.
 *   POST /hook/<anything>   recorded; answers the next scripted status, else 200
 *   POST /_recv/config      {"fail_next": N, "status": S, "delay_ms": D}, each optional:
 *                           the next N deliveries answer S (500 when S is not given
 *                           with fail_next); every delivery's answer waits D ms
 *   GET  /_recv/config      the current {fail_next, status, delay_ms}
 *   GET  /_recv/deliveries  {"count": n, "deliveries": [{path, status, timestamp,
 *                           signature, webhook_id, verified, received_ms, body}, ...]}
 *   POST /_recv/reset       forgets the deliveries (the config stays)
 * verified: null without --secret or when X-Cloro-Timestamp or X-Cloro-Signature is
 * missing, else whether the signature is "v1=" + hex HMAC-SHA256(secret,
 * "<ts>.<raw body>"). received_ms: ms since the receiver started. body: the parsed
 * JSON, or the raw text when it is not JSON. Exits 0 on SIGTERM/SIGINT. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "fake_log.h"
#include "fake_util.h"
#include "fake_webhooks.h"

#define RECV_MAX_BODY_BYTES (16u * 1024 * 1024)
#define RECV_MAX_DELAY_MS   600000

/* An answer held back by delay_ms. If the client leaves meanwhile, evhttp
 * detaches the unanswered request from its connection and the late
 * evhttp_send_reply frees it (libevent 2.1), so the timer stays safe. */
struct recv_pending {
    struct recv *r;
    struct evhttp_request *req;
    int status;
    struct event *timer;
    struct recv_pending *prev, *next;
};

struct recv {
    struct event_base *base;
    struct evhttp *http;
    char *secret; /* NULL: nothing is verified */
    int64_t start_ms;
    json_t *deliveries;
    int64_t fail_next;
    int fail_status;
    int64_t delay_ms;
    struct recv_pending *pending;
};

static const char *recv_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 200 && status < 300 ? "OK" : "Status";
    }
}

/* Sends body (stolen) as JSON. */
static void recv_reply(struct evhttp_request *req, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, s, strlen(s));
    evhttp_send_reply(req, status, recv_reason(status), buf);
    evbuffer_free(buf);
    free(s);
}

static void recv_reply_error(struct evhttp_request *req, int status, const char *message)
{
    recv_reply(req, status, json_pack("{s:b, s:s}", "ok", 0, "error", message));
}

static void recv_answer_hook(struct evhttp_request *req, int status)
{
    recv_reply(req, status, json_pack("{s:b}", "ok", status >= 200 && status < 300));
}

static void recv_pending_free(struct recv_pending *p)
{
    struct recv *r = p->r;
    if (p->prev)
        p->prev->next = p->next;
    else
        r->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    event_free(p->timer);
    free(p);
}

static void recv_on_delay(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct recv_pending *p = arg;
    struct evhttp_request *req = p->req;
    int status = p->status;
    recv_pending_free(p);
    recv_answer_hook(req, status);
}

static json_t *recv_header_json(struct evkeyvalq *h, const char *name)
{
    const char *v = evhttp_find_header(h, name);
    json_t *j = v ? json_string(v) : NULL;
    return j ? j : json_null();
}

static void recv_handle_hook(struct recv *r, struct evhttp_request *req, const char *path)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evbuffer *buf = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(buf);
    const char *raw = len ? (const char *)evbuffer_pullup(buf, -1) : "";
    const char *ts = evhttp_find_header(in, "X-Cloro-Timestamp");
    const char *sig = evhttp_find_header(in, "X-Cloro-Signature");

    json_t *verified = json_null();
    if (r->secret != NULL && ts != NULL && sig != NULL) {
        json_decref(verified);
        verified = json_boolean(fake_webhooks_verify(r->secret, ts, sig, raw, len));
    }
    int status = 200;
    if (r->fail_next > 0) {
        r->fail_next--;
        status = r->fail_status;
    }
    json_t *body = json_loadb(raw, len, JSON_DECODE_ANY, NULL);
    if (body == NULL)
        body = json_stringn(raw, len);
    if (body == NULL)
        body = json_null(); /* neither JSON nor UTF-8 */
    json_t *path_json = json_string(path);
    json_t *rec = json_pack(
        "{s:o, s:i, s:o, s:o, s:o, s:o, s:I, s:o}", "path", path_json ? path_json : json_null(),
        "status", status, "timestamp", recv_header_json(in, "X-Cloro-Timestamp"), "signature",
        recv_header_json(in, "X-Cloro-Signature"), "webhook_id",
        recv_header_json(in, "X-Cloro-Webhook-Id"), "verified", verified, "received_ms",
        (json_int_t)(fake_util_mono_ms() - r->start_ms), "body", body);
    json_array_append_new(r->deliveries, rec);
    const char *wid = evhttp_find_header(in, "X-Cloro-Webhook-Id");
    fake_log(FAKE_LOG_INFO, "delivery", "path=%s status=%d webhook_id=%s verified=%s bytes=%zu",
             path, status, wid ? wid : "-",
             json_is_null(verified) ? "null" : (json_is_true(verified) ? "true" : "false"), len);

    if (r->delay_ms <= 0) {
        recv_answer_hook(req, status);
        return;
    }
    struct recv_pending *p = fake_xcalloc(1, sizeof(*p));
    p->r = r;
    p->req = req;
    p->status = status;
    p->timer = evtimer_new(r->base, recv_on_delay, p);
    p->next = r->pending;
    if (r->pending)
        r->pending->prev = p;
    r->pending = p;
    struct timeval tv = {.tv_sec = (time_t)(r->delay_ms / 1000),
                         .tv_usec = (suseconds_t)(r->delay_ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
}

static json_t *recv_config_json(const struct recv *r)
{
    return json_pack("{s:I, s:i, s:I}", "fail_next", (json_int_t)r->fail_next, "status",
                     r->fail_status, "delay_ms", (json_int_t)r->delay_ms);
}

/* Applies {"fail_next", "status", "delay_ms"} all or nothing; NULL or a message. */
static const char *recv_apply_config(struct recv *r, const json_t *body)
{
    if (!json_is_object(body))
        return "body must be a JSON object";
    int64_t fail_next = r->fail_next, delay_ms = r->delay_ms;
    int status = r->fail_status;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (!json_is_integer(v))
            return "values must be integers";
        json_int_t n = json_integer_value(v);
        if (strcmp(key, "fail_next") == 0 && n >= 0)
            fail_next = n;
        else if (strcmp(key, "status") == 0 && n >= 200 && n <= 599)
            status = (int)n;
        else if (strcmp(key, "delay_ms") == 0 && n >= 0 && n <= RECV_MAX_DELAY_MS)
            delay_ms = n;
        else if (strcmp(key, "fail_next") == 0 || strcmp(key, "status") == 0 ||
                 strcmp(key, "delay_ms") == 0)
            return "out of range: fail_next >= 0, status 200..599, delay_ms 0..600000";
        else
            return "unknown key: only fail_next, status and delay_ms";
    }
    if (json_object_get(body, "fail_next") != NULL && json_object_get(body, "status") == NULL)
        status = 500;
    r->fail_next = fail_next;
    r->fail_status = status;
    r->delay_ms = delay_ms;
    return NULL;
}

static void recv_on_request(struct evhttp_request *req, void *arg)
{
    struct recv *r = arg;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || *path == '\0')
        path = "/";
    if (strncmp(path, "/hook/", 6) == 0) {
        if (m != EVHTTP_REQ_POST) {
            recv_reply_error(req, 405, "POST only");
            return;
        }
        recv_handle_hook(r, req, path);
        return;
    }
    if (strcmp(path, "/_recv/deliveries") == 0 && m == EVHTTP_REQ_GET) {
        recv_reply(req, 200,
                   json_pack("{s:I, s:O}", "count", (json_int_t)json_array_size(r->deliveries),
                             "deliveries", r->deliveries));
        return;
    }
    if (strcmp(path, "/_recv/reset") == 0 && m == EVHTTP_REQ_POST) {
        json_array_clear(r->deliveries);
        fake_log(FAKE_LOG_INFO, "reset", "%s", "");
        recv_reply(req, 200, json_pack("{s:b}", "ok", 1));
        return;
    }
    if (strcmp(path, "/_recv/config") == 0 && (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_POST)) {
        if (m == EVHTTP_REQ_POST) {
            struct evbuffer *in = evhttp_request_get_input_buffer(req);
            json_t *body =
                json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, NULL);
            const char *err = body ? recv_apply_config(r, body) : "invalid JSON";
            json_decref(body);
            if (err != NULL) {
                recv_reply_error(req, 400, err);
                return;
            }
            fake_log(FAKE_LOG_INFO, "config", "fail_next=%lld status=%d delay_ms=%lld",
                     (long long)r->fail_next, r->fail_status, (long long)r->delay_ms);
        }
        recv_reply(req, 200, recv_config_json(r));
        return;
    }
    recv_reply_error(req, 404, "not found");
}

static void recv_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    fake_log(FAKE_LOG_INFO, "shutdown", "signal=%d", (int)sig);
    event_base_loopexit(arg, NULL);
}

static void recv_usage(FILE *f)
{
    fputs("usage: webhook_receiver [--port N] [--secret S]\n"
          "  --port N     port on 127.0.0.1 (default 0 = a free one, printed)\n"
          "  --secret S   verify X-Cloro-Signature with this secret, as-is\n"
          "  --help       this text\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"secret", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long port = 0;
    const char *secret = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'p':
            port = strtoul(optarg, &end, 10);
            if (end == optarg || *end || port > 65535) {
                fprintf(stderr, "webhook_receiver: --port wants 0..65535, got %s\n", optarg);
                return 2;
            }
            break;
        case 's':
            secret = optarg;
            break;
        case 'h':
            recv_usage(stdout);
            return 0;
        default:
            recv_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "webhook_receiver: unexpected argument %s\n", argv[optind]);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    struct recv r = {.fail_status = 500, .start_ms = fake_util_mono_ms()};
    r.secret = secret && *secret ? fake_xstrdup(secret) : NULL;
    r.deliveries = json_array();
    r.base = event_base_new();
    r.http = r.base ? evhttp_new(r.base) : NULL;
    if (r.http == NULL) {
        fprintf(stderr, "webhook_receiver: libevent initialisation failed\n");
        return 1;
    }
    evhttp_set_max_body_size(r.http, RECV_MAX_BODY_BYTES);
    evhttp_set_timeout(r.http, 600);
    evhttp_set_gencb(r.http, recv_on_request, &r);
    int rc = 0;
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(r.http, "127.0.0.1", (uint16_t)port);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    if (bound == NULL ||
        getsockname((int)evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &sl) != 0) {
        fake_log(FAKE_LOG_ERROR, "listen_failed", "host=127.0.0.1 port=%lu", port);
        rc = 1;
    } else {
        struct event *sigterm = evsignal_new(r.base, SIGTERM, recv_on_signal, r.base);
        struct event *sigint = evsignal_new(r.base, SIGINT, recv_on_signal, r.base);
        evsignal_add(sigterm, NULL);
        evsignal_add(sigint, NULL);
        unsigned bound_port = ntohs(sin.sin_port);
        printf("listening on 127.0.0.1:%u\n", bound_port);
        fflush(stdout);
        /* The line the integration harness waits for (as fake_cloro's). */
        fake_log_always(FAKE_LOG_INFO, "listening", "addr=127.0.0.1:%u secret=%s", bound_port,
                        r.secret ? "set" : "none");
        event_base_dispatch(r.base);
        event_free(sigterm);
        event_free(sigint);
    }
    while (r.pending != NULL) /* evhttp_free closes their connections and requests */
        recv_pending_free(r.pending);
    evhttp_free(r.http);
    event_base_free(r.base);
    libevent_global_shutdown();
    json_decref(r.deliveries);
    free(r.secret);
    return rc;
}
