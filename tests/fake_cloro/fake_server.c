/* fake_server: evhttp routes, auth (§15 item 2), headers (§2), rate limit and
 * concurrency (§10), latency and fault injection, client-disconnect detection,
 * artifact serving (§12) and /_fake/{stats,reset,config}.
 *
 * DESIGN. Every request gets a struct fake_call; fake_server_call_finish() is its
 * only exit (stats, log, slot release, free). A monitor call that passes auth,
 * rate limit, validation, credits and concurrency becomes *pending*: it sits in
 * srv->pending with an evtimer for its latency, a read event that peeks the socket
 * (evhttp 2.1.12 stops reading after the request, so it never reports a client
 * that leaves, libevent#78) and a close callback for connections libevent frees
 * itself (write errors while a slow body is going out). The timer then sends the
 * 200 (possibly slowly), the injected error, resets the connection, writes
 * garbage and closes it, or stalls: a stalled call keeps its connection (and
 * slot) until the peek or the close callback sees the client leave. */
#include "fake_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "fake_artifacts.h"
#include "fake_envelope.h"
#include "fake_geo.h"
#include "fake_log.h"
#include "fake_pricing.h"
#include "fake_ratelimit.h"
#include "fake_results.h"
#include "fake_stats.h"
#include "fake_task_script.h"
#include "fake_tasks.h"
#include "fake_util.h"
#include "fake_validate.h"
#include "fake_webhooks.h"

#define FAKE_SERVER_MAX_BODY_BYTES   (4u * 1024 * 1024)
#define FAKE_SERVER_MAX_HEADER_BYTES (64u * 1024)
#define FAKE_SERVER_ARTIFACTS        4096
#define FAKE_SERVER_SLOW_CHUNKS      5
#define FAKE_SERVER_MARKER_SLOW_MS   1000
#define FAKE_SERVER_RESET_GRACE_MS   20
#define FAKE_SERVER_BATCH_MAX        500

struct fake_server {
    struct event_base *base;
    struct evhttp *http;
    struct fake_knobs knobs; /* knobs.credits is the live balance */
    char **api_keys;
    size_t n_api_keys;
    char *host;
    uint16_t port;
    char *artifact_base; /* NULL until bound when not configured */
    int64_t per_cycle;   /* GET /v1/credits perCycle: the starting balance */
    struct fake_stats stats;
    struct fake_ratelimit *ratelimit;
    struct fake_artifacts *artifacts;
    struct fake_rng rng;
    int64_t slots_used; /* in-flight sync calls + PROCESSING tasks */
    struct fake_tasks *tasks;
    struct fake_webhooks *webhooks;
    struct fake_call *pending; /* doubly linked: calls with a response still to send */
};

enum fake_call_state {
    FAKE_CALL_NEW,
    FAKE_CALL_DELAY,     /* waiting for latency to pass */
    FAKE_CALL_SLOW,      /* 200 headers sent, body chunks going out */
    FAKE_CALL_MID_FLUSH, /* partial body queued, waiting for it to drain */
    FAKE_CALL_MID_CLOSE, /* partial body drained, reset after a short grace */
    FAKE_CALL_STALLED,   /* never answered: waits for the client to leave */
};

struct fake_call {
    struct fake_server *srv;
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    char request_id[37];
    int64_t start_us;
    char *path; /* without the query string */
    const char *method;
    bool is_v1;     /* counted in requests_total and in_flight */
    bool log_debug; /* control endpoints log at debug */
    enum fake_call_state state;
    /* response headers decided on the way */
    bool emit_ratelimit;
    int64_t rl_limit, rl_remaining;
    bool emit_concurrency;
    int64_t conc_limit, conc_current, conc_remaining;
    bool emit_credits;
    int64_t credits_charged, credits_remaining;
    int64_t retry_after_s; /* > 0: Retry-After (503 only) */
    /* monitor work */
    bool holds_slot;
    enum fake_fault fault;
    json_t *body_json; /* owns the strings vreq borrows */
    struct fake_validate_req vreq;
    int64_t cost;
    struct event *timer;
    struct event *peek;
    char *out; /* serialized 200 body while it is sent in pieces */
    size_t out_len, out_sent;
    int chunks_left;
    int64_t chunk_interval_ms;
    struct fake_call *prev, *next;
};

struct fake_route {
    enum evhttp_cmd_type method;
    const char *path;
    void (*handler)(struct fake_call *c, const struct fake_route *r);
    enum fake_endpoint endpoint; /* monitor routes only */
};

static void fake_server_handle_monitor(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_countries(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_states(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_credits(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_task_create(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_task_batch(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_task_get(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_async_status(struct fake_call *c, const struct fake_route *r);
static void fake_server_handle_async_queue(struct fake_call *c, const struct fake_route *r);

/* The /v1 route table (§3). A path ending in '/' matches one more non-empty
 * segment (GET /v1/async/task/{id}). */
static const struct fake_route fake_server_routes[] = {
    {EVHTTP_REQ_POST, "/v1/monitor/chatgpt", fake_server_handle_monitor, FAKE_EP_CHATGPT},
    {EVHTTP_REQ_POST, "/v1/monitor/gemini", fake_server_handle_monitor, FAKE_EP_GEMINI},
    {EVHTTP_REQ_POST, "/v1/monitor/grok", fake_server_handle_monitor, FAKE_EP_GROK},
    {EVHTTP_REQ_POST, "/v1/monitor/copilot", fake_server_handle_monitor, FAKE_EP_COPILOT},
    {EVHTTP_REQ_POST, "/v1/monitor/perplexity", fake_server_handle_monitor, FAKE_EP_PERPLEXITY},
    {EVHTTP_REQ_POST, "/v1/monitor/aimode", fake_server_handle_monitor, FAKE_EP_AIMODE},
    {EVHTTP_REQ_POST, "/v1/monitor/google", fake_server_handle_monitor, FAKE_EP_GOOGLE},
    {EVHTTP_REQ_POST, "/v1/monitor/google/news", fake_server_handle_monitor, FAKE_EP_GOOGLE_NEWS},
    {EVHTTP_REQ_POST, "/v1/monitor/google/goto", fake_server_handle_monitor, FAKE_EP_GOOGLE_GOTO},
    {EVHTTP_REQ_GET, "/v1/countries", fake_server_handle_countries, FAKE_EP_COUNT},
    {EVHTTP_REQ_GET, "/v1/states", fake_server_handle_states, FAKE_EP_COUNT},
    {EVHTTP_REQ_GET, "/v1/credits", fake_server_handle_credits, FAKE_EP_COUNT},
    {EVHTTP_REQ_POST, "/v1/async/task", fake_server_handle_task_create, FAKE_EP_COUNT},
    {EVHTTP_REQ_POST, "/v1/async/task/batch", fake_server_handle_task_batch, FAKE_EP_COUNT},
    {EVHTTP_REQ_GET, "/v1/async/task/", fake_server_handle_task_get, FAKE_EP_COUNT},
    {EVHTTP_REQ_GET, "/v1/async/status", fake_server_handle_async_status, FAKE_EP_COUNT},
    {EVHTTP_REQ_DELETE, "/v1/async/queue", fake_server_handle_async_queue, FAKE_EP_COUNT},
};

static bool fake_server_route_matches(const struct fake_route *r, const char *path)
{
    size_t n = strlen(r->path);
    if (r->path[n - 1] != '/')
        return strcmp(r->path, path) == 0;
    return strncmp(r->path, path, n) == 0 && path[n] != '\0' && strchr(path + n, '/') == NULL;
}

static const char *fake_server_method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "UNKNOWN";
}

static const char *fake_server_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

/* ---- call lifecycle ---------------------------------------------------- */

static struct fake_call *fake_server_call_new(struct fake_server *srv, struct evhttp_request *req)
{
    struct fake_call *c = fake_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->req = req;
    c->conn = evhttp_request_get_connection(req);
    c->start_us = fake_util_mono_us();
    fake_util_uuid4(c->request_id);
    c->method = fake_server_method_name(evhttp_request_get_command(req));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    c->path = fake_xstrdup(path && *path ? path : "/");
    return c;
}

static void fake_server_release_slot(struct fake_call *c)
{
    if (c->holds_slot) {
        c->srv->slots_used--;
        c->holds_slot = false;
        fake_tasks_pump(c->srv->tasks); /* §10.2: a freed slot can start a queued task */
    }
}

/* Stops every event the call registered; after this no callback will see c. */
static void fake_server_call_detach(struct fake_call *c)
{
    if (c->timer) {
        event_free(c->timer);
        c->timer = NULL;
    }
    if (c->peek) {
        event_free(c->peek);
        c->peek = NULL;
    }
    if (c->conn && (c->state != FAKE_CALL_NEW))
        evhttp_connection_set_closecb(c->conn, NULL, NULL);
}

/* The only exit of a call: status 0 means no response was sent (reset/cancel). */
static void fake_server_call_finish(struct fake_call *c, int status, const char *outcome)
{
    struct fake_server *srv = c->srv;
    fake_server_call_detach(c);
    fake_server_release_slot(c);
    if (c->prev)
        c->prev->next = c->next;
    else if (srv->pending == c)
        srv->pending = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->is_v1) {
        fake_stats_in_flight_add(&srv->stats, -1);
        if (status > 0)
            fake_stats_count_status(&srv->stats, status);
    }
    int64_t ms = (fake_util_mono_us() - c->start_us) / 1000;
    int logged = status == 0 && strcmp(outcome, "REQUEST_CANCELED") == 0 ? 499 : status;
    fake_log(c->log_debug ? FAKE_LOG_DEBUG : FAKE_LOG_INFO, "request",
             "req_id=%s method=%s path=%s status=%d outcome=%s latency_ms=%lld", c->request_id,
             c->method, c->path, logged, outcome, (long long)ms);
    json_decref(c->body_json);
    free(c->out);
    free(c->path);
    free(c);
}

static void fake_server_add_int_header(struct evkeyvalq *h, const char *name, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    evhttp_add_header(h, name, buf);
}

static void fake_server_add_headers(struct fake_call *c, const char *content_type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    const struct fake_knobs *k = &c->srv->knobs;
    if (content_type)
        evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-Request-ID", c->request_id);
    fake_server_add_int_header(h, "X-Latency-Ms", (fake_util_mono_us() - c->start_us) / 1000);
    if (c->emit_ratelimit) {
        fake_server_add_int_header(h, "X-RateLimit-Limit", c->rl_limit);
        fake_server_add_int_header(h, "X-RateLimit-Remaining", c->rl_remaining);
    }
    if (c->emit_concurrency) {
        static const char *const names[2][3] = {
            {"X-Concurrency-Limit", "X-Concurrency-Current", "X-Concurrency-Remaining"},
            {"X-Concurrent-Limit", "X-Concurrent-Current", "X-Concurrent-Remaining"},
        };
        for (int v = 0; v < 2; v++) {
            if (k->concurrency_headers != FAKE_CONC_HDR_BOTH &&
                k->concurrency_headers !=
                    (v == 0 ? FAKE_CONC_HDR_CONCURRENCY : FAKE_CONC_HDR_CONCURRENT))
                continue;
            fake_server_add_int_header(h, names[v][0], c->conc_limit);
            fake_server_add_int_header(h, names[v][1], c->conc_current);
            fake_server_add_int_header(h, names[v][2], c->conc_remaining);
        }
    }
    if (c->emit_credits) {
        fake_server_add_int_header(h, "X-Credits-Charged", c->credits_charged);
        fake_server_add_int_header(h, "X-Credits-Remaining", c->credits_remaining);
    }
    if (c->retry_after_s > 0)
        fake_server_add_int_header(h, "Retry-After", c->retry_after_s);
}

static void fake_server_reply_raw(struct fake_call *c, int status, const char *content_type,
                                  const char *data, size_t len, const char *outcome)
{
    fake_server_call_detach(c);
    fake_server_add_headers(c, content_type);
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, data, len);
    evhttp_send_reply(c->req, status, fake_server_reason(status), buf);
    evbuffer_free(buf);
    fake_server_call_finish(c, status, outcome);
}

/* Sends body (stolen) as JSON. */
static void fake_server_reply_json(struct fake_call *c, int status, json_t *body,
                                   const char *outcome)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    fake_server_reply_raw(c, status, "application/json", s, strlen(s), outcome);
    free(s);
}

static void fake_server_reply_error(struct fake_call *c, int status, const char *code,
                                    const char *message, json_t *details)
{
    fake_server_reply_json(c, status,
                           fake_envelope_error(code, message, details, fake_util_real_ms()), code);
}

static void fake_server_reply_not_found(struct fake_call *c)
{
    fake_server_reply_error(c, 404, "RESOURCE_NOT_FOUND", NULL, json_pack("{s:s}", "id", c->path));
}

/* ---- pending monitor responses ---------------------------------------- */

static int fake_server_call_fd(struct fake_call *c)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->conn);
    return bev ? (int)bufferevent_getfd(bev) : -1;
}

/* Closes the connection without a (complete) response; SO_LINGER 0 makes the
 * close send a RST so the client sees a reset rather than a clean EOF. */
static void fake_server_call_reset(struct fake_call *c, const char *outcome)
{
    struct evhttp_connection *conn = c->conn;
    int fd = fake_server_call_fd(c);
    if (fd >= 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    fake_server_call_finish(c, 0, outcome);
    evhttp_connection_free(conn); /* frees the attached request too */
}

/* Answers with bytes that are not HTTP (never starting with "HTTP/"), then
 * closes the connection normally so they arrive before the EOF. */
static void fake_server_call_garbage(struct fake_call *c)
{
    struct fake_server *srv = c->srv;
    struct evhttp_connection *conn = c->conn;
    unsigned char junk[512];
    size_t n = 16 + (size_t)fake_rng_below(&srv->rng, sizeof(junk) - 16);
    for (size_t i = 0; i < n; i++)
        junk[i] = (unsigned char)fake_rng_below(&srv->rng, 256);
    junk[0] = (unsigned char)('\x01' + fake_rng_below(&srv->rng, 31)); /* a control byte */
    int fd = fake_server_call_fd(c);
    srv->stats.faults[FAKE_FAULT_GARBAGE]++;
    if (fd >= 0)
        (void)send(fd, junk, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    fake_server_call_finish(c, 0, "garbage");
    evhttp_connection_free(conn);
}

/* The client went away while we held its response (§15 item 15: 499, not charged). */
static void fake_server_call_canceled(struct fake_call *c, bool libevent_frees_conn)
{
    struct fake_server *srv = c->srv;
    srv->stats.canceled++;
    fake_log(FAKE_LOG_INFO, "canceled", "req_id=%s path=%s status=499 code=REQUEST_CANCELED",
             c->request_id, c->path);
    struct evhttp_connection *conn = c->conn;
    fake_server_call_finish(c, 0, "REQUEST_CANCELED");
    if (!libevent_frees_conn)
        evhttp_connection_free(conn);
}

static void fake_server_on_peek(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct fake_call *c = arg;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        /* A pipelined request, not a close: stop watching (the close callback
         * still catches write errors). */
        event_del(c->peek);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    fake_server_call_canceled(c, false);
}

/* libevent is freeing the connection (write error, timeout). A request whose
 * reply was not finished is detached from it first and then ours to free. */
static void fake_server_on_conn_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct fake_call *c = arg;
    struct evhttp_request *req = c->req;
    bool detached = evhttp_request_get_connection(req) == NULL;
    fake_server_call_canceled(c, true);
    if (detached)
        evhttp_request_free(req);
}

static void fake_server_on_timer(evutil_socket_t fd, short what, void *arg);

static void fake_server_arm_timer(struct fake_call *c, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void fake_server_on_mid_flushed(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct fake_call *c = arg;
    if (c->state != FAKE_CALL_MID_FLUSH)
        return;
    c->state = FAKE_CALL_MID_CLOSE;
    fake_server_arm_timer(c, FAKE_SERVER_RESET_GRACE_MS);
}

static void fake_server_send_next_chunk(struct fake_call *c)
{
    size_t left = c->out_len - c->out_sent;
    size_t n = c->chunks_left <= 1 ? left : left / (size_t)c->chunks_left;
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, c->out + c->out_sent, n);
    evhttp_send_reply_chunk(c->req, buf);
    evbuffer_free(buf);
    c->out_sent += n;
    c->chunks_left--;
    if (c->chunks_left <= 0 || c->out_sent >= c->out_len) {
        fake_server_call_detach(c);
        evhttp_send_reply_end(c->req);
        fake_server_call_finish(c, 200, "ok_slow");
        return;
    }
    fake_server_arm_timer(c, c->chunk_interval_ms);
}

/* The {success, result} body of vr, with its HTML artifacts minted. */
static json_t *fake_server_build_result(struct fake_server *srv, const struct fake_validate_req *vr,
                                        int *clusters_out)
{
    char uuid[37];
    char *html_base = NULL;
    int pages = fake_results_page_count(vr);
    if ((vr->include & FAKE_INC_HTML) && pages > 0) {
        fake_util_uuid4(uuid);
        html_base = fake_xasprintf("%s/results/%s", srv->artifact_base, uuid);
    }
    char *text = NULL;
    int clusters = 0;
    json_t *body = fake_results_build(vr, html_base, &text, &clusters);
    if (html_base) {
        const char *title = vr->text ? vr->text : (vr->url ? vr->url : "");
        fake_artifacts_add(srv->artifacts, uuid, pages, title, text, fake_util_mono_ms());
    }
    free(text);
    free(html_base);
    *clusters_out = clusters;
    return body;
}

/* Produces the 200: results, artifact, credits (charged only now, §9.4). */
static json_t *fake_server_build_success(struct fake_call *c)
{
    struct fake_server *srv = c->srv;
    const struct fake_validate_req *vr = &c->vreq;
    int clusters = 0;
    json_t *body = fake_server_build_result(srv, vr, &clusters);
    if (vr->endpoint != FAKE_EP_GOOGLE_GOTO) {
        int64_t charged = c->cost + srv->knobs.prices.expand_product * clusters;
        srv->knobs.credits = srv->knobs.credits > charged ? srv->knobs.credits - charged : 0;
        srv->stats.credits_charged_total += charged;
        c->emit_credits = true;
        c->credits_charged = charged;
        c->credits_remaining = srv->knobs.credits;
        c->emit_concurrency = true;
        /* The plan's limit as it is now: a change through /_fake/config shows at
         * once (and a lowered one leaves no more free slots than it allows). */
        c->conc_limit = srv->knobs.concurrency_limit;
        if (c->conc_remaining > c->conc_limit - c->conc_current)
            c->conc_remaining =
                c->conc_limit > c->conc_current ? c->conc_limit - c->conc_current : 0;
    }
    return body;
}

/* Sends the 200's headers and starts its body: dripped in chunks over
 * drip_ms when drip_ms >= 0, else half of it and then a reset. */
static void fake_server_start_partial(struct fake_call *c, json_t *body, int64_t drip_ms)
{
    c->out = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    c->out_len = strlen(c->out);
    c->out_sent = 0;
    fake_server_add_headers(c, "application/json");
    /* An explicit Content-Length keeps evhttp from chunking, so the client sees
     * one plain body arriving slowly (or cut short). */
    fake_server_add_int_header(evhttp_request_get_output_headers(c->req), "Content-Length",
                               (int64_t)c->out_len);
    evhttp_send_reply_start(c->req, 200, "OK");
    if (drip_ms >= 0) {
        c->state = FAKE_CALL_SLOW;
        c->chunks_left = FAKE_SERVER_SLOW_CHUNKS;
        c->chunk_interval_ms = drip_ms / (FAKE_SERVER_SLOW_CHUNKS - 1);
        fake_server_send_next_chunk(c);
        return;
    }
    c->state = FAKE_CALL_MID_FLUSH;
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, c->out, c->out_len / 2 ? c->out_len / 2 : 1);
    evhttp_send_reply_chunk_with_cb(c->req, buf, fake_server_on_mid_flushed, c);
    evbuffer_free(buf);
}

static void fake_server_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fake_call *c = arg;
    struct fake_server *srv = c->srv;
    switch (c->state) {
    case FAKE_CALL_SLOW:
        fake_server_send_next_chunk(c);
        return;
    case FAKE_CALL_MID_CLOSE:
        srv->stats.faults[FAKE_FAULT_RESET_MID_BODY]++;
        fake_server_call_reset(c, "reset_mid_body");
        return;
    case FAKE_CALL_MID_FLUSH:
    case FAKE_CALL_NEW:
    case FAKE_CALL_STALLED:
        return;
    case FAKE_CALL_DELAY:
        break;
    }
    switch (c->fault) {
    case FAKE_FAULT_500:
        srv->stats.faults[FAKE_FAULT_500]++;
        fake_server_reply_error(c, 500, "INTERNAL_SERVER_ERROR", "Maximum retries exceeded", NULL);
        return;
    case FAKE_FAULT_503:
        srv->stats.faults[FAKE_FAULT_503]++;
        c->retry_after_s = srv->knobs.retry_after_s > 0 ? srv->knobs.retry_after_s : 1;
        fake_server_reply_error(c, 503, "SERVICE_UNAVAILABLE", NULL, NULL);
        return;
    case FAKE_FAULT_RESET:
        srv->stats.faults[FAKE_FAULT_RESET]++;
        fake_server_call_reset(c, "reset");
        return;
    case FAKE_FAULT_RESET_MID_BODY:
        fake_server_start_partial(c, fake_server_build_success(c), -1);
        return;
    case FAKE_FAULT_SLOW:
        srv->stats.faults[FAKE_FAULT_SLOW]++;
        fake_server_start_partial(c, fake_server_build_success(c),
                                  srv->knobs.slow_body_ms > 0 ? srv->knobs.slow_body_ms
                                                              : FAKE_SERVER_MARKER_SLOW_MS);
        return;
    case FAKE_FAULT_SLOW_DRIP:
        srv->stats.faults[FAKE_FAULT_SLOW_DRIP]++;
        fake_server_start_partial(c, fake_server_build_success(c), srv->knobs.slow_drip_ms);
        return;
    case FAKE_FAULT_GARBAGE:
        fake_server_call_garbage(c);
        return;
    case FAKE_FAULT_STALL:
        srv->stats.faults[FAKE_FAULT_STALL]++;
        c->state = FAKE_CALL_STALLED;
        return;
    case FAKE_FAULT_429: /* answered at once, never pending */
    case FAKE_FAULT_NONE:
    case FAKE_FAULT_COUNT:
        break;
    }
    fake_server_reply_json(c, 200, fake_server_build_success(c), "ok");
}

/* Magic markers in prompt/query (deterministic fault tests); else the random knobs. */
static enum fake_fault fake_server_pick_fault(struct fake_call *c, int64_t *latency_ms)
{
    struct fake_server *srv = c->srv;
    const struct fake_knobs *k = &srv->knobs;
    const char *t = c->vreq.text ? c->vreq.text : (c->vreq.url ? c->vreq.url : "");
    const char *lat = strstr(t, "[fake:latency=");
    if (lat != NULL) {
        char *end = NULL;
        long long v = strtoll(lat + 14, &end, 10);
        if (end && *end == ']' && v >= 0)
            *latency_ms = v;
    }
    static const struct {
        const char *marker;
        enum fake_fault fault;
    } markers[] = {
        {"[fake:500]", FAKE_FAULT_500},
        {"[fake:503]", FAKE_FAULT_503},
        {"[fake:reset]", FAKE_FAULT_RESET},
        {"[fake:reset-mid-body]", FAKE_FAULT_RESET_MID_BODY},
        {"[fake:slow]", FAKE_FAULT_SLOW},
        {"[fake:429]", FAKE_FAULT_429},
        {"[fake:garbage]", FAKE_FAULT_GARBAGE},
        {"[fake:stall]", FAKE_FAULT_STALL},
        {"[fake:slow-drip]", FAKE_FAULT_SLOW_DRIP},
    };
    for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++) {
        if (strstr(t, markers[i].marker))
            return markers[i].fault;
    }
    /* One draw against the fractions laid end to end (their sum past 1 leaves
     * the later ones less than asked). */
    const struct {
        double fraction;
        enum fake_fault fault;
    } random_faults[] = {
        {k->fail_500, FAKE_FAULT_500},
        {k->fail_503, FAKE_FAULT_503},
        {k->reset, FAKE_FAULT_RESET},
        {k->fail_429, FAKE_FAULT_429},
        {k->reset_mid_body, FAKE_FAULT_RESET_MID_BODY},
        {k->garbage, FAKE_FAULT_GARBAGE},
        {k->stall, FAKE_FAULT_STALL},
        {k->slow_drip, FAKE_FAULT_SLOW_DRIP},
    };
    double u = fake_rng_unit(&srv->rng);
    double edge = 0;
    for (size_t i = 0; i < sizeof(random_faults) / sizeof(random_faults[0]); i++) {
        edge += random_faults[i].fraction;
        if (u < edge)
            return random_faults[i].fault;
    }
    if (k->slow_body_ms > 0)
        return FAKE_FAULT_SLOW;
    return FAKE_FAULT_NONE;
}

static void fake_server_make_pending(struct fake_call *c, int64_t delay_ms)
{
    struct fake_server *srv = c->srv;
    c->state = FAKE_CALL_DELAY;
    c->next = srv->pending;
    if (srv->pending)
        srv->pending->prev = c;
    srv->pending = c;
    c->timer = evtimer_new(srv->base, fake_server_on_timer, c);
    int fd = fake_server_call_fd(c);
    if (fd >= 0) {
        c->peek = event_new(srv->base, fd, EV_READ | EV_PERSIST, fake_server_on_peek, c);
        event_add(c->peek, NULL);
    }
    evhttp_connection_set_closecb(c->conn, fake_server_on_conn_close, c);
    fake_server_arm_timer(c, delay_ms);
}

/* ---- /v1 handlers ------------------------------------------------------- */

/* An injected 429 (fail_429, [fake:429]) is answered at once like cloro's own
 * (§10.2: not queued): no latency, no slot kept, never a Retry-After. The
 * concurrency codes look like a real concurrency 429: details {limit} and the
 * X-Concurrency-* headers with nothing remaining. goto takes no slot, so it
 * always gets the rate-limit code. */
static void fake_server_reply_injected_429(struct fake_call *c, const struct fake_route *r)
{
    struct fake_server *srv = c->srv;
    srv->stats.faults[FAKE_FAULT_429]++;
    fake_server_release_slot(c);
    int code = srv->knobs.fail_429_code;
    if (code == FAKE_429_RATE_LIMIT || r->endpoint == FAKE_EP_GOOGLE_GOTO) {
        c->rl_remaining = 0;
        fake_server_reply_error(c, 429, "RATE_LIMIT_EXCEEDED", NULL, NULL);
        return;
    }
    c->emit_concurrency = true;
    c->conc_remaining = 0;
    fake_server_reply_error(c, 429,
                            code == FAKE_429_CONCURRENT ? "CONCURRENT_LIMIT_EXCEEDED"
                                                        : "CONCURRENCY_LIMIT_EXCEEDED",
                            NULL, json_pack("{s:I}", "limit", (json_int_t)c->conc_limit));
}

static void fake_server_handle_monitor(struct fake_call *c, const struct fake_route *r)
{
    struct fake_server *srv = c->srv;
    struct fake_knobs *k = &srv->knobs;
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    c->body_json = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
    if (c->body_json == NULL) {
        char msg[256];
        if (len == 0)
            snprintf(msg, sizeof(msg), "Expected object, received nothing");
        else
            snprintf(msg, sizeof(msg), "Invalid JSON body: %s", jerr.text);
        fake_server_reply_error(c, 400, "VALIDATION_ERROR", NULL,
                                json_pack("[{s:s, s:s}]", "field", "body", "message", msg));
        return;
    }
    struct fake_validate_opts opts = {.country_default_us = k->country_default_us};
    json_t *errs = fake_validate_monitor(r->endpoint, c->body_json, &opts, &c->vreq);
    if (errs != NULL) {
        fake_server_reply_error(c, 400, "VALIDATION_ERROR", NULL, errs);
        return;
    }
    if (r->endpoint != FAKE_EP_GOOGLE_GOTO) {
        c->cost = fake_pricing_cost(&k->prices, &c->vreq);
        if (k->credits < c->cost) {
            fake_server_reply_error(c, 403, "INSUFFICIENT_CREDITS", NULL, NULL);
            return;
        }
        /* §10.2: an (N+1)th simultaneous request fails at once; Current counts it. */
        c->conc_limit = k->concurrency_limit;
        c->conc_current = srv->slots_used + 1;
        c->conc_remaining =
            c->conc_limit - c->conc_current > 0 ? c->conc_limit - c->conc_current : 0;
        if (c->conc_current > c->conc_limit) {
            c->emit_concurrency = true;
            const char *code = k->concurrency_code == FAKE_CONC_CODE_CONCURRENT
                                   ? "CONCURRENT_LIMIT_EXCEEDED"
                                   : "CONCURRENCY_LIMIT_EXCEEDED";
            fake_server_reply_error(c, 429, code, NULL,
                                    json_pack("{s:I}", "limit", (json_int_t)c->conc_limit));
            return;
        }
        srv->slots_used++;
        c->holds_slot = true;
    }
    int64_t latency = -1;
    c->fault = fake_server_pick_fault(c, &latency);
    if (c->fault == FAKE_FAULT_429) {
        fake_server_reply_injected_429(c, r);
        return;
    }
    if (latency < 0) {
        latency = k->latency_ms;
        if (k->jitter_ms > 0)
            latency += (int64_t)fake_rng_below(&srv->rng, (uint64_t)k->jitter_ms + 1);
    }
    fake_server_make_pending(c, latency);
}

static char *fake_server_query_param(struct fake_call *c, const char *name, bool *present)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(c->req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    *present = false;
    if (query == NULL)
        return NULL;
    struct evkeyvalq kv;
    TAILQ_INIT(&kv);
    char *value = NULL;
    if (evhttp_parse_query_str(query, &kv) == 0) {
        const char *v = evhttp_find_header(&kv, name);
        if (v != NULL) {
            *present = true;
            value = fake_xstrdup(v);
        }
    }
    evhttp_clear_headers(&kv);
    return value;
}

static void fake_server_handle_countries(struct fake_call *c, const struct fake_route *r)
{
    (void)r;
    bool present;
    char *model = fake_server_query_param(c, "model", &present);
    if (present && !fake_validate_countries_model(model)) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "Invalid enum value. Expected aimode | aioverview | chatgpt | copilot | gemini "
                 "| google | grok | perplexity, received '%.32s'",
                 model);
        free(model);
        fake_server_reply_error(c, 400, "VALIDATION_ERROR", NULL,
                                json_pack("[{s:s, s:s}]", "field", "model", "message", msg));
        return;
    }
    free(model);
    json_t *arr = json_array();
    for (size_t i = 0; i < fake_geo_country_count(); i++)
        json_array_append_new(arr, json_string(fake_geo_country_at(i)));
    fake_server_reply_json(c, 200, arr, "ok");
}

static void fake_server_handle_states(struct fake_call *c, const struct fake_route *r)
{
    (void)r;
    bool present;
    char *country = fake_server_query_param(c, "country", &present);
    const char *problem = NULL;
    if (!present)
        problem = "Required";
    else if (strlen(country) != 2 || !fake_geo_is_country(country))
        problem = "Expected an uppercase ISO 3166-1 alpha-2 country code";
    if (problem != NULL) {
        free(country);
        fake_server_reply_error(c, 400, "VALIDATION_ERROR", NULL,
                                json_pack("[{s:s, s:s}]", "field", "country", "message", problem));
        return;
    }
    json_t *arr = json_array();
    if (strcmp(country, "US") == 0) {
        for (size_t i = 0; i < fake_geo_state_count(); i++)
            json_array_append_new(arr, json_pack("{s:s, s:s}", "code", fake_geo_state_code_at(i),
                                                 "name", fake_geo_state_name_at(i)));
    }
    free(country);
    fake_server_reply_json(c, 200, arr, "ok");
}

static void fake_server_handle_credits(struct fake_call *c, const struct fake_route *r)
{
    (void)r;
    /* The cycle resets at the start of next month (UTC). */
    time_t now = (time_t)(fake_util_real_ms() / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    struct tm next = {
        .tm_year = tm.tm_year + (tm.tm_mon == 11), .tm_mon = (tm.tm_mon + 1) % 12, .tm_mday = 1};
    char resets[32];
    strftime(resets, sizeof(resets), "%Y-%m-01T00:00:00.000Z", &next);
    fake_server_reply_json(c, 200,
                           json_pack("{s:I, s:I, s:s}", "remaining",
                                     (json_int_t)c->srv->knobs.credits, "perCycle",
                                     (json_int_t)c->srv->per_cycle, "cycleResetsAt", resets),
                           "ok");
}

/* ---- async API (§7) and webhooks (§8) ------------------------------------ */

static bool fake_server_task_slot_take(void *arg)
{
    struct fake_server *srv = arg;
    if (srv->slots_used >= srv->knobs.concurrency_limit)
        return false;
    srv->slots_used++;
    return true;
}

static void fake_server_task_slot_release(void *arg)
{
    struct fake_server *srv = arg;
    srv->slots_used--;
}

static int64_t fake_server_task_duration(void *arg)
{
    struct fake_server *srv = arg;
    return srv->knobs.task_duration_ms;
}

static int64_t fake_server_task_retry_delay(void *arg)
{
    struct fake_server *srv = arg;
    return srv->knobs.task_retry_delay_ms;
}

/* Ends t FAILED with {error:{code, message}}, never charged. */
static void fake_server_task_fail(struct fake_task *t, const char *code)
{
    t->status = FAKE_TASK_FAILED;
    t->credits_charged = 0;
    t->response =
        json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", fake_envelope_message(code));
}

/* §7.7: a task is re-checked against the live balance when it is picked up (the
 * code of a short balance is undocumented: INSUFFICIENT_CREDITS, charged 0). */
static bool fake_server_task_pickup(void *arg, struct fake_task *t)
{
    struct fake_server *srv = arg;
    if (srv->knobs.credits >= t->credits_to_charge)
        return true;
    fake_server_task_fail(t, "INSUFFICIENT_CREDITS");
    fake_log(FAKE_LOG_INFO, "task_short_balance", "task_id=%s credits=%lld to_charge=%lld", t->id,
             (long long)srv->knobs.credits, (long long)t->credits_to_charge);
    return false;
}

/* The outcome of an attempt: the payload's script ([task-fail], [task-retry:N],
 * fake_task_script.h), then task_fail decides FAILED (never charged), else the
 * result the sync endpoint would give, charged without the sync surcharge. */
static void fake_server_task_run(void *arg, struct fake_task *t)
{
    struct fake_server *srv = arg;
    struct fake_task_script script;
    fake_task_script_parse(t->req.text ? t->req.text : t->req.url, &script);
    switch (fake_task_script_attempt(&script, t->attempts)) {
    case FAKE_TASK_SCRIPT_RETRY:
        srv->stats.async.retries++;
        t->status = FAKE_TASK_QUEUED;
        fake_log(FAKE_LOG_INFO, "task_retry", "task_id=%s attempt=%d", t->id, t->attempts);
        return;
    case FAKE_TASK_SCRIPT_FAIL:
        fake_server_task_fail(t, "INTERNAL_SERVER_ERROR");
        return;
    case FAKE_TASK_SCRIPT_RUN:
        break;
    }
    if (srv->knobs.task_fail > 0 && fake_rng_unit(&srv->rng) < srv->knobs.task_fail) {
        fake_server_task_fail(t, "INTERNAL_SERVER_ERROR");
        return;
    }
    int clusters = 0;
    json_t *body = fake_server_build_result(srv, &t->req, &clusters);
    t->response = json_incref(json_object_get(body, "result"));
    json_decref(body);
    int64_t charged = t->credits_to_charge + srv->knobs.prices.expand_product * clusters;
    srv->knobs.credits = srv->knobs.credits > charged ? srv->knobs.credits - charged : 0;
    srv->stats.credits_charged_total += charged;
    t->credits_charged = charged;
    t->status = FAKE_TASK_COMPLETED;
}

static void fake_server_task_terminal(void *arg, struct fake_task *t)
{
    struct fake_server *srv = arg;
    if (t->status == FAKE_TASK_COMPLETED)
        srv->stats.async.completed++;
    else
        srv->stats.async.failed++;
    fake_log(FAKE_LOG_INFO, "task_done", "task_id=%s status=%s latency_ms=%lld", t->id,
             t->status == FAKE_TASK_COMPLETED ? "COMPLETED" : "FAILED", (long long)t->latency_ms);
    if (t->webhook_url == NULL)
        return;
    json_t *body = fake_tasks_status_json(t, false);
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    fake_webhooks_send(srv->webhooks, t->id, t->webhook_url, s, srv->knobs.webhook_secret,
                       srv->knobs.webhook_time_scale);
    free(s);
}

static void fake_server_on_webhook(void *arg, const char *task_id, int attempt, bool ok)
{
    (void)attempt;
    struct fake_server *srv = arg;
    srv->stats.async.webhook_attempts++;
    if (!ok)
        return;
    srv->stats.async.webhook_delivered++;
    struct fake_task *t = fake_tasks_find(srv->tasks, task_id);
    if (t != NULL && !t->webhook_delivered) {
        t->webhook_delivered = true;
        t->webhook_delivered_real_ms = fake_util_real_ms();
    }
}

/* Parses the request body into c->body_json; on failure answers status
 * (VALIDATION_ERROR) and returns false. */
static bool fake_server_load_body(struct fake_call *c, int status)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    c->body_json = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
    if (c->body_json != NULL)
        return true;
    char msg[256];
    if (len == 0)
        snprintf(msg, sizeof(msg), "Expected object, received nothing");
    else
        snprintf(msg, sizeof(msg), "Invalid JSON body: %s", jerr.text);
    fake_server_reply_error(c, status, "VALIDATION_ERROR", NULL,
                            json_pack("[{s:s, s:s}]", "field", "body", "message", msg));
    return false;
}

/* submitted_keys: a task object that carries a string idempotencyKey, valid or not. */
static void fake_server_count_key(struct fake_server *srv, const json_t *task)
{
    if (json_is_string(json_object_get(task, "idempotencyKey")))
        srv->stats.async.submitted_keys++;
}

static void fake_server_tasks_expire(struct fake_server *srv)
{
    fake_tasks_expire(srv->tasks, fake_util_mono_ms(), srv->knobs.task_retention_s * 1000);
}

static json_t *fake_server_queue_limit_details(struct fake_server *srv)
{
    return json_pack("{s:I}", "limit", (json_int_t)srv->knobs.queue_limit);
}

/* Async price: the sync cost without the sync surcharge (§11). */
static int64_t fake_server_task_cost(struct fake_server *srv, const struct fake_validate_req *vr)
{
    int64_t cost = fake_pricing_cost(&srv->knobs.prices, vr) - srv->knobs.prices.sync_surcharge;
    return cost > 0 ? cost : 0;
}

static void fake_server_handle_task_create(struct fake_call *c, const struct fake_route *r)
{
    (void)r;
    struct fake_server *srv = c->srv;
    int bad_status = (int)srv->knobs.async_validation_status;
    srv->stats.async.creates++;
    if (!fake_server_load_body(c, bad_status))
        return;
    fake_server_count_key(srv, c->body_json);
    fake_server_tasks_expire(srv);
    struct fake_validate_opts opts = {.country_default_us = srv->knobs.country_default_us};
    struct fake_validate_task vt;
    json_t *errs = fake_validate_task(c->body_json, &opts, &vt);
    if (errs != NULL) {
        fake_server_reply_error(c, bad_status, "VALIDATION_ERROR", NULL, errs);
        return;
    }
    if (vt.idempotency_key && fake_tasks_key_used(srv->tasks, vt.idempotency_key)) {
        srv->stats.async.idempotency_conflicts++;
        if (srv->knobs.idempotency_code == FAKE_IDEM_CONFLICT)
            fake_server_reply_error(c, 409, "RESOURCE_CONFLICT", "Resource conflict", NULL);
        else
            fake_server_reply_error(
                c, 409, "RESOURCE_ALREADY_EXISTS", NULL,
                json_pack("{s:s, s:s}", "field", "idempotencyKey", "value", vt.idempotency_key));
        return;
    }
    int64_t cost = fake_server_task_cost(srv, &vt.req);
    if (srv->knobs.credits < cost) {
        fake_server_reply_error(c, 403, "INSUFFICIENT_CREDITS", NULL, NULL);
        return;
    }
    if ((int64_t)fake_tasks_queued(srv->tasks) >= srv->knobs.queue_limit) {
        fake_server_reply_error(c, 429, "QUEUE_LIMIT_EXCEEDED", NULL,
                                fake_server_queue_limit_details(srv));
        return;
    }
    struct fake_task *t = fake_tasks_add(srv->tasks, &vt, c->body_json, cost);
    srv->stats.async.tasks_created++;
    json_t *body = json_pack("{s:b, s:o, s:o}", "success", 1, "task", fake_tasks_summary_json(t),
                             "credits", fake_tasks_credits_json(t));
    fake_tasks_pump(srv->tasks);
    /* [fake:reset] in the payload: the task exists, but its creator never
     * hears of it (the connection is reset instead of the 200). */
    if (vt.req.text != NULL && strstr(vt.req.text, "[fake:reset]") != NULL) {
        json_decref(body);
        srv->stats.faults[FAKE_FAULT_RESET]++;
        fake_server_call_reset(c, "reset_after_create");
        return;
    }
    fake_server_reply_json(c, 200, body, "ok");
}

/* {success:false, index, error{code, message, details?, timestamp}}. */
static json_t *fake_server_batch_failure(size_t index, const char *code, const char *message,
                                         json_t *details)
{
    json_t *env = fake_envelope_error(code, message, details, fake_util_real_ms());
    json_t *item = json_pack("{s:b, s:I, s:O}", "success", 0, "index", (json_int_t)index, "error",
                             json_object_get(env, "error"));
    json_decref(env);
    return item;
}

static void fake_server_handle_task_batch(struct fake_call *c, const struct fake_route *r)
{
    (void)r;
    struct fake_server *srv = c->srv;
    int bad_status = (int)srv->knobs.async_validation_status;
    if (!fake_server_load_body(c, bad_status))
        return;
    json_t *arr = c->body_json;
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    if (json_is_array(arr)) {
        fake_stats_count_batch(&srv->stats, n);
        for (size_t i = 0; i < n; i++)
            fake_server_count_key(srv, json_array_get(arr, i));
    }
    if (n < 1 || n > FAKE_SERVER_BATCH_MAX) {
        const char *msg = !json_is_array(arr) ? "Expected array"
                          : n == 0            ? "Array must contain at least 1 element(s)"
                                              : "Array must contain at most 500 element(s)";
        fake_server_reply_error(c, bad_status, "VALIDATION_ERROR", NULL,
                                json_pack("[{s:s, s:s}]", "field", "body", "message", msg));
        return;
    }
    srv->stats.async.batch_calls++;
    fake_server_tasks_expire(srv);
    /* §7.3: all-or-nothing queue check before any task is looked at. */
    if ((int64_t)(fake_tasks_queued(srv->tasks) + n) > srv->knobs.queue_limit) {
        fake_server_reply_error(c, 429, "QUEUE_LIMIT_EXCEEDED", NULL,
                                fake_server_queue_limit_details(srv));
        return;
    }
    struct fake_validate_opts opts = {.country_default_us = srv->knobs.country_default_us};
    json_t *results = json_array();
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(arr, i);
        struct fake_validate_task vt;
        json_t *errs = fake_validate_task(item, &opts, &vt);
        if (errs != NULL) {
            char msg[64];
            snprintf(msg, sizeof(msg), "Invalid task at index %zu", i);
            json_t *details = NULL;
            if (srv->knobs.batch_error_details == FAKE_BATCH_DETAILS_FLAT) {
                details = json_deep_copy(json_array_get(errs, 0));
                json_decref(errs);
            } else {
                details = json_pack("{s:o}", "errors", errs);
            }
            json_array_append_new(results,
                                  fake_server_batch_failure(i, "VALIDATION_ERROR", msg, details));
            continue;
        }
        if (vt.idempotency_key && fake_tasks_key_used(srv->tasks, vt.idempotency_key)) {
            srv->stats.async.idempotency_conflicts++;
            json_array_append_new(results, fake_server_batch_failure(
                                               i, "RESOURCE_ALREADY_EXISTS", NULL,
                                               json_pack("{s:s, s:s}", "field", "idempotencyKey",
                                                         "value", vt.idempotency_key)));
            continue;
        }
        int64_t cost = fake_server_task_cost(srv, &vt.req);
        if (srv->knobs.credits < cost) {
            json_array_append_new(results,
                                  fake_server_batch_failure(i, "INSUFFICIENT_CREDITS", NULL, NULL));
            continue;
        }
        struct fake_task *t = fake_tasks_add(srv->tasks, &vt, item, cost);
        srv->stats.async.tasks_created++;
        ok++;
        json_array_append_new(results, json_pack("{s:b, s:I, s:o, s:o}", "success", 1, "index",
                                                 (json_int_t)i, "task", fake_tasks_summary_json(t),
                                                 "credits", fake_tasks_credits_json(t)));
    }
    json_t *body =
        json_pack("{s:b, s:{s:I, s:I, s:I}, s:o}", "success", 1, "summary", "total", (json_int_t)n,
                  "succeeded", (json_int_t)ok, "failed", (json_int_t)(n - ok), "results", results);
    fake_tasks_pump(srv->tasks);
    fake_server_reply_json(c, 200, body, "ok");
}

static void fake_server_handle_task_get(struct fake_call *c, const struct fake_route *r)
{
    struct fake_server *srv = c->srv;
    const char *id = c->path + strlen(r->path);
    srv->stats.async.task_polls++;
    fake_server_tasks_expire(srv);
    struct fake_task *t =
        fake_util_is_uuid(id, strlen(id)) ? fake_tasks_find(srv->tasks, id) : NULL;
    if (t == NULL) {
        fake_server_reply_error(c, 404, "RESOURCE_NOT_FOUND", "Task not found",
                                json_pack("{s:s}", "id", id));
        return;
    }
    fake_server_reply_json(c, 200, fake_tasks_status_json(t, true), "ok");
}

static void fake_server_handle_async_status(struct fake_call *c, const struct fake_route *r)
{
    (void)r;
    struct fake_server *srv = c->srv;
    fake_server_reply_json(c, 200,
                           json_pack("{s:I, s:I, s:o, s:{s:I, s:I}}", "queuedTasks",
                                     (json_int_t)fake_tasks_queued(srv->tasks), "processingTasks",
                                     (json_int_t)fake_tasks_processing(srv->tasks),
                                     "priorityBreakdown", fake_tasks_priority_breakdown(srv->tasks),
                                     "concurrency", "used", (json_int_t)srv->slots_used, "max",
                                     (json_int_t)srv->knobs.concurrency_limit),
                           "ok");
}

static void fake_server_handle_async_queue(struct fake_call *c, const struct fake_route *r)
{
    (void)r;
    struct fake_server *srv = c->srv;
    size_t n = fake_tasks_clear_queue(srv->tasks);
    fake_server_reply_json(c, 200, json_pack("{s:b, s:I}", "success", 1, "cleared", (json_int_t)n),
                           "ok");
}

/* ---- /v1 pipeline ------------------------------------------------------- */

static json_t *fake_server_snapshot(struct fake_call *c, const char *auth_sha)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(c->req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(c->req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    json_t *headers = json_object();
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, in, next)
    {
        char name[128];
        size_t i = 0;
        for (; kv->key[i] && i < sizeof(name) - 1; i++)
            name[i] =
                (char)((kv->key[i] >= 'A' && kv->key[i] <= 'Z') ? kv->key[i] + 32 : kv->key[i]);
        name[i] = '\0';
        const char *value = strcmp(name, "authorization") == 0 ? auth_sha : kv->value;
        json_t *prev = json_object_get(headers, name);
        json_t *v = NULL;
        if (prev && json_is_string(prev)) {
            char *joined = fake_xasprintf("%s, %s", json_string_value(prev), value);
            v = json_string(joined);
            free(joined);
        } else {
            v = json_string(value);
        }
        json_object_set_new(headers, name, v ? v : json_string("(invalid utf-8)"));
    }
    const char *xrid = evhttp_find_header(in, "X-Request-ID");
    const char *ctype = evhttp_find_header(in, "Content-Type");
    const char *ua = evhttp_find_header(in, "User-Agent");
    json_t *last = json_object();
    json_object_set_new(last, "method", json_string(c->method));
    json_object_set_new(last, "path", json_string(c->path));
    json_object_set_new(last, "query", query ? json_string(query) : json_null());
    json_object_set_new(last, "x_request_id", xrid ? json_string(xrid) : json_null());
    json_object_set_new(last, "content_type", ctype ? json_string(ctype) : json_null());
    json_object_set_new(last, "user_agent", ua ? json_string(ua) : json_null());
    json_object_set_new(
        last, "body_bytes",
        json_integer((json_int_t)evbuffer_get_length(evhttp_request_get_input_buffer(c->req))));
    json_object_set_new(last, "authorization_sha256",
                        auth_sha ? json_string(auth_sha) : json_null());
    json_object_set_new(last, "headers", headers);
    return last;
}

static bool fake_server_token_format_ok(const char *t)
{
    if (strncmp(t, "sk_", 3) != 0)
        return false;
    size_t n = 0;
    for (const char *p = t + 3; *p; p++, n++) {
        char ch = *p;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return n >= 4;
}

static void fake_server_handle_v1(struct fake_call *c)
{
    struct fake_server *srv = c->srv;
    struct evkeyvalq *in = evhttp_request_get_input_headers(c->req);
    const char *authz = evhttp_find_header(in, "Authorization");
    char auth_sha[65];
    if (authz)
        fake_util_sha256_hex(authz, strlen(authz), auth_sha);

    c->is_v1 = true;
    fake_stats_count_request(&srv->stats, c->path);
    fake_stats_count_auth(&srv->stats, authz ? auth_sha : NULL);
    fake_stats_set_last(&srv->stats, fake_server_snapshot(c, authz ? auth_sha : NULL));
    fake_stats_in_flight_add(&srv->stats, 1);

    /* §15 item 2: scheme must be exactly "Bearer " (lowercase bearer = no key). */
    if (authz == NULL || strncmp(authz, "Bearer ", 7) != 0 || authz[7] == '\0') {
        fake_server_reply_error(c, 401, "MISSING_API_KEY", NULL, NULL);
        return;
    }
    const char *token = authz + 7;
    if (!fake_server_token_format_ok(token)) {
        fake_server_reply_error(c, 401, "INVALID_API_KEY_FORMAT", NULL, NULL);
        return;
    }
    bool known = false;
    for (size_t i = 0; i < srv->n_api_keys; i++)
        known = known || strcmp(token, srv->api_keys[i]) == 0;
    if (!known) {
        fake_server_reply_error(c, 401, "INVALID_OR_EXPIRED_API_KEY", NULL, NULL);
        return;
    }

    enum evhttp_cmd_type method = evhttp_request_get_command(c->req);
    const struct fake_route *route = NULL;
    for (size_t i = 0; i < sizeof(fake_server_routes) / sizeof(fake_server_routes[0]); i++) {
        if (fake_server_routes[i].method == method &&
            fake_server_route_matches(&fake_server_routes[i], c->path))
            route = &fake_server_routes[i];
    }

    /* §10.1: fixed 1-second window per (key, route), or per key when shared. */
    char *bucket = srv->knobs.rate_limit_scope == FAKE_SCOPE_SHARED
                       ? fake_xasprintf("%s", token)
                       : fake_xasprintf("%s\n%s", token, route ? route->path : c->path);
    c->emit_ratelimit = true;
    c->rl_limit = srv->knobs.rate_limit;
    bool allowed = fake_ratelimit_take(srv->ratelimit, bucket, fake_util_mono_ms(),
                                       srv->knobs.rate_limit, &c->rl_remaining);
    free(bucket);
    if (!allowed) {
        fake_server_reply_error(c, 429, "RATE_LIMIT_EXCEEDED", NULL, NULL);
        return;
    }
    if (route == NULL) {
        fake_server_reply_not_found(c);
        return;
    }
    route->handler(c, route);
}

/* ---- artifacts and control --------------------------------------------- */

static void fake_server_handle_artifact(struct fake_call *c)
{
    struct fake_server *srv = c->srv;
    enum evhttp_cmd_type m = evhttp_request_get_command(c->req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        fake_server_reply_not_found(c);
        return;
    }
    srv->stats.artifact_fetches++;
    char *html = NULL;
    enum fake_artifacts_status st = fake_artifacts_lookup(
        srv->artifacts, c->path, fake_util_mono_ms(), srv->knobs.artifact_ttl_s * 1000,
        (size_t)srv->knobs.artifact_bytes, &html);
    switch (st) {
    case FAKE_ARTIFACT_FOUND:
        /* artifact_fail: only a page that would be served fails (expired and
         * unknown ones keep their own answers). */
        if (srv->knobs.artifact_fail > 0 && fake_rng_unit(&srv->rng) < srv->knobs.artifact_fail) {
            free(html);
            srv->stats.artifact_failures++;
            fake_server_reply_error(c, 500, "INTERNAL_SERVER_ERROR", "Internal server error", NULL);
            return;
        }
        if (srv->knobs.artifact_redirect[0] != '\0') {
            free(html);
            evhttp_add_header(evhttp_request_get_output_headers(c->req), "Location",
                              srv->knobs.artifact_redirect);
            fake_server_reply_raw(c, 302, "text/html; charset=utf-8", "", 0, "artifact_redirect");
            return;
        }
        fake_server_reply_raw(c, 200, "text/html; charset=utf-8", html, strlen(html), "artifact");
        free(html);
        return;
    case FAKE_ARTIFACT_EXPIRED:
        srv->stats.artifact_expired++;
        fake_server_reply_error(c, (int)srv->knobs.artifact_expired_status, "ARTIFACT_EXPIRED",
                                NULL, json_pack("{s:s}", "id", c->path));
        return;
    case FAKE_ARTIFACT_UNKNOWN:
        break;
    }
    fake_server_reply_not_found(c);
}

static void fake_server_handle_control(struct fake_call *c)
{
    struct fake_server *srv = c->srv;
    enum evhttp_cmd_type m = evhttp_request_get_command(c->req);
    c->log_debug = true;
    if (m == EVHTTP_REQ_GET && strcmp(c->path, "/_fake/stats") == 0) {
        fake_server_reply_json(c, 200, fake_stats_to_json(&srv->stats, srv->knobs.credits), "ok");
        return;
    }
    if (m == EVHTTP_REQ_POST && strcmp(c->path, "/_fake/reset") == 0) {
        fake_stats_reset(&srv->stats);
        fake_ratelimit_reset(srv->ratelimit);
        fake_log(FAKE_LOG_INFO, "stats_reset", "req_id=%s", c->request_id);
        fake_server_reply_json(c, 200, json_pack("{s:b}", "ok", 1), "ok");
        return;
    }
    if (strcmp(c->path, "/_fake/config") == 0 && (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_POST)) {
        if (m == EVHTTP_REQ_POST) {
            struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
            json_error_t jerr;
            json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1),
                                      evbuffer_get_length(in), 0, &jerr);
            char err[256] = "";
            int rc = -1;
            if (body == NULL)
                snprintf(err, sizeof(err), "invalid JSON: %s", jerr.text);
            else
                rc = fake_knobs_apply_json(&srv->knobs, body, err, sizeof(err));
            json_decref(body);
            if (rc != 0) {
                fake_server_reply_error(c, 400, "VALIDATION_ERROR", err, NULL);
                return;
            }
            fake_log(FAKE_LOG_INFO, "config_updated", "req_id=%s", c->request_id);
        }
        fake_server_reply_json(c, 200, fake_knobs_to_json(&srv->knobs), "ok");
        return;
    }
    fake_server_reply_not_found(c);
}

static void fake_server_on_request(struct evhttp_request *req, void *arg)
{
    struct fake_server *srv = arg;
    struct fake_call *c = fake_server_call_new(srv, req);
    if (strncmp(c->path, "/v1/", 4) == 0 || strcmp(c->path, "/v1") == 0)
        fake_server_handle_v1(c);
    else if (strncmp(c->path, "/_fake/", 7) == 0)
        fake_server_handle_control(c);
    else if (strncmp(c->path, "/results/", 9) == 0)
        fake_server_handle_artifact(c);
    else
        fake_server_reply_not_found(c);
}

/* ---- lifecycle ------------------------------------------------------------ */

/* evhttp asks for a bufferevent once per accepted connection: counted here. */
static struct bufferevent *fake_server_on_connection(struct event_base *base, void *arg)
{
    struct fake_server *srv = arg;
    srv->stats.connections_total++;
    return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

struct fake_server *fake_server_new(struct event_base *base, const struct fake_server_config *cfg)
{
    struct fake_server *srv = fake_xcalloc(1, sizeof(*srv));
    srv->base = base;
    srv->knobs = cfg->knobs;
    srv->per_cycle = cfg->knobs.credits;
    srv->host = fake_xstrdup(cfg->host ? cfg->host : "127.0.0.1");
    srv->port = cfg->port;
    srv->n_api_keys = cfg->n_api_keys;
    srv->api_keys = fake_xcalloc(cfg->n_api_keys ? cfg->n_api_keys : 1, sizeof(char *));
    for (size_t i = 0; i < cfg->n_api_keys; i++)
        srv->api_keys[i] = fake_xstrdup(cfg->api_keys[i]);
    if (cfg->artifact_base) {
        srv->artifact_base = fake_xstrdup(cfg->artifact_base);
        size_t n = strlen(srv->artifact_base);
        while (n > 0 && srv->artifact_base[n - 1] == '/')
            srv->artifact_base[--n] = '\0';
    }
    fake_stats_init(&srv->stats);
    srv->ratelimit = fake_ratelimit_new();
    srv->artifacts = fake_artifacts_new(FAKE_SERVER_ARTIFACTS);
    fake_rng_seed(&srv->rng, cfg->seed);
    const struct fake_tasks_hooks hooks = {
        .arg = srv,
        .slot_take = fake_server_task_slot_take,
        .slot_release = fake_server_task_slot_release,
        .duration_ms = fake_server_task_duration,
        .pickup = fake_server_task_pickup,
        .run = fake_server_task_run,
        .retry_delay_ms = fake_server_task_retry_delay,
        .terminal = fake_server_task_terminal,
    };
    srv->tasks = fake_tasks_new(base, &hooks);
    srv->webhooks = fake_webhooks_new(base, fake_server_on_webhook, srv);
    srv->http = evhttp_new(base);
    if (srv->http == NULL) {
        fputs("fake_cloro: evhttp_new failed\n", stderr);
        abort();
    }
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(srv->http, FAKE_SERVER_MAX_BODY_BYTES);
    evhttp_set_max_headers_size(srv->http, FAKE_SERVER_MAX_HEADER_BYTES);
    evhttp_set_timeout(srv->http, 600);
    evhttp_set_gencb(srv->http, fake_server_on_request, srv);
    evhttp_set_bevcb(srv->http, fake_server_on_connection, srv);
    return srv;
}

int fake_server_listen(struct fake_server *srv, char *addr, size_t addrlen)
{
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(srv->http, srv->host, srv->port);
    if (bound == NULL)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname((int)evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    char host[INET6_ADDRSTRLEN] = "";
    unsigned port = 0;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(addr, addrlen, "[%s]:%u", host, port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(addr, addrlen, "%s:%u", host, port);
    }
    srv->port = (uint16_t)port;
    if (srv->artifact_base == NULL)
        srv->artifact_base = fake_xasprintf("http://%s", addr);
    return 0;
}

void fake_server_free(struct fake_server *srv)
{
    if (srv == NULL)
        return;
    /* Pending calls: drop our events and callbacks; evhttp_free below closes the
     * connections and frees the requests still attached to them. */
    while (srv->pending != NULL) {
        struct fake_call *c = srv->pending;
        srv->pending = c->next;
        fake_server_call_detach(c);
        json_decref(c->body_json);
        free(c->out);
        free(c->path);
        free(c);
    }
    evhttp_free(srv->http);
    fake_webhooks_free(srv->webhooks);
    fake_tasks_free(srv->tasks);
    fake_artifacts_free(srv->artifacts);
    fake_ratelimit_free(srv->ratelimit);
    fake_stats_deinit(&srv->stats);
    for (size_t i = 0; i < srv->n_api_keys; i++)
        free(srv->api_keys[i]);
    free(srv->api_keys);
    free(srv->artifact_base);
    free(srv->host);
    free(srv);
}
