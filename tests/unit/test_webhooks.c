/* test_webhooks.c: webhook delivery (webhooks.h). The pure helpers against
 * fixed vectors (the HMAC-SHA256 signature computed independently with
 * `openssl dgst -sha256 -hmac` and Python's hmac, the backoff schedule), and
 * the delivery itself on a real event loop against a tiny evhttp receiver on
 * 127.0.0.1 (same event base, port 0): a retry after a 500 with signed,
 * re-signed headers and the exact body; giving up after max_attempts
 * (unsigned: no X-Cloro-* headers); a connection error; the in-flight bound
 * and due order; replacement (also from inside a report); and the enqueue
 * refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "log.h"
#include "upstream.h"
#include "webhooks.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SECRET       "whsec_test"
#define MAX_REQUESTS 256
#define MAX_REPORTS  256
#define MAX_HELD     64
#define IN_FLIGHT    16 /* the bound webhooks.c documents */

/* --- the receiver ------------------------------------------------------ */

struct received {
    char *body;
    size_t body_len;
    char *content_type, *user_agent, *timestamp, *signature, *webhook_id;
    int64_t at_ms;
};

struct receiver {
    struct evhttp *http;
    int port;
    const int *statuses; /* answer of request i; past the end: last_status */
    size_t status_count;
    int last_status;
    struct received rx[MAX_REQUESTS];
    size_t count;
    /* Holding mode: requests are held, then answered 200 together once none
     * arrived for a tick (100 ms). */
    bool hold;
    struct evhttp_request *held[MAX_HELD];
    size_t held_count, max_held;
    size_t count_at_tick;
    struct event *release_timer;
};

static char *header_copy(struct evhttp_request *req, const char *name)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    return v != NULL ? strdup(v) : NULL;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct receiver *rv = arg;
    assert_true(rv->count < MAX_REQUESTS);
    struct received *r = &rv->rx[rv->count];
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    r->body_len = evbuffer_get_length(in);
    r->body = malloc(r->body_len + 1);
    assert_non_null(r->body);
    evbuffer_copyout(in, r->body, r->body_len);
    r->body[r->body_len] = '\0';
    r->content_type = header_copy(req, "Content-Type");
    r->user_agent = header_copy(req, "User-Agent");
    r->timestamp = header_copy(req, "X-Cloro-Timestamp");
    r->signature = header_copy(req, "X-Cloro-Signature");
    r->webhook_id = header_copy(req, "X-Cloro-Webhook-Id");
    r->at_ms = clock_wall_ms();
    size_t i = rv->count++;
    if (rv->hold) {
        assert_true(rv->held_count < MAX_HELD);
        rv->held[rv->held_count++] = req;
        if (rv->held_count > rv->max_held)
            rv->max_held = rv->held_count;
        return;
    }
    int status = i < rv->status_count ? rv->statuses[i] : rv->last_status;
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Nope", NULL);
}

static void on_release(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct receiver *rv = arg;
    bool quiet = rv->count == rv->count_at_tick;
    rv->count_at_tick = rv->count;
    if (!quiet)
        return;
    for (size_t i = 0; i < rv->held_count; i++)
        evhttp_send_reply(rv->held[i], 200, "OK", NULL);
    rv->held_count = 0;
}

static void receiver_start(struct receiver *rv, struct event_base *base)
{
    rv->http = evhttp_new(base);
    assert_non_null(rv->http);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(rv->http, "127.0.0.1", 0);
    assert_non_null(bound);
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr, &len),
                     0);
    rv->port = ntohs(addr.sin_port);
    evhttp_set_gencb(rv->http, on_request, rv);
    if (rv->hold) {
        rv->release_timer = event_new(base, -1, EV_PERSIST, on_release, rv);
        struct timeval tv = {0, 100 * 1000};
        event_add(rv->release_timer, &tv);
    }
}

static void receiver_stop(struct receiver *rv)
{
    if (rv->release_timer != NULL)
        event_free(rv->release_timer);
    evhttp_free(rv->http);
    for (size_t i = 0; i < rv->count; i++) {
        struct received *r = &rv->rx[i];
        free(r->body);
        free(r->content_type);
        free(r->user_agent);
        free(r->timestamp);
        free(r->signature);
        free(r->webhook_id);
    }
}

/* --- the delivering side ------------------------------------------------ */

struct seen_report {
    char task_id[64];
    char url[128];
    int attempt;
    bool delivered, final;
    long status;
    char error[256];
    bool has_error;
    int64_t at_ms, next_attempt_ms;
};

struct fixture {
    struct event_base *base;
    struct upstream *up;
    struct webhooks *wh;
    struct receiver rv;
    char url[64];
    struct seen_report reports[MAX_REPORTS];
    size_t report_count;
    size_t finals, finals_wanted;
    struct event *deadline;
    bool timed_out;
    bool requeue_in_report; /* test_requeue_from_report */
};

static void on_report(const struct webhooks_report *r, void *arg)
{
    struct fixture *f = arg;
    assert_true(f->report_count < MAX_REPORTS);
    struct seen_report *s = &f->reports[f->report_count++];
    snprintf(s->task_id, sizeof s->task_id, "%s", r->task_id);
    snprintf(s->url, sizeof s->url, "%s", r->url);
    s->attempt = r->attempt;
    s->delivered = r->delivered;
    s->final = r->final;
    s->status = r->status;
    s->has_error = r->error != NULL;
    snprintf(s->error, sizeof s->error, "%s", r->error != NULL ? r->error : "");
    s->at_ms = r->at_ms;
    s->next_attempt_ms = r->next_attempt_ms;
    if (f->requeue_in_report && !r->delivered && !r->final) {
        /* The caller re-enqueues the task itself, with a new body, due now. */
        f->requeue_in_report = false;
        assert_int_equal(webhooks_enqueue(f->wh, r->task_id, r->url, "{\"v\":2}", 7, r->attempt, 0),
                         0);
    }
    if (r->final && ++f->finals >= f->finals_wanted)
        event_base_loopbreak(f->base);
}

static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct fixture *f = arg;
    f->timed_out = true;
    event_base_loopbreak(f->base);
}

static void fixture_start(struct fixture *f, const struct webhooks_options *o)
{
    f->base = event_base_new();
    assert_non_null(f->base);
    receiver_start(&f->rv, f->base);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/hook", f->rv.port);
    struct upstream_options uo = {
        .connect_timeout_ms = 2000, .max_response_bytes = 1 << 20, .max_connections = 64};
    f->up = upstream_new(f->base, &uo);
    assert_non_null(f->up);
    f->wh = webhooks_new(f->base, f->up, o, on_report, f);
    assert_non_null(f->wh);
}

/* Runs the loop until `finals` final reports came (fails after 10 s). */
static void fixture_run(struct fixture *f, size_t finals)
{
    f->finals_wanted = finals;
    f->deadline = evtimer_new(f->base, on_deadline, f);
    struct timeval tv = {10, 0};
    evtimer_add(f->deadline, &tv);
    if (f->finals < finals)
        event_base_dispatch(f->base);
    event_free(f->deadline);
    f->deadline = NULL;
    if (f->timed_out)
        fail_msg("timed out: %zu of %zu final reports, %zu requests", f->finals, finals,
                 f->rv.count);
}

static void fixture_stop(struct fixture *f)
{
    webhooks_free(f->wh);
    upstream_free(f->up);
    receiver_stop(&f->rv);
    event_base_free(f->base);
}

static struct webhooks_stats stats_of(const struct fixture *f)
{
    struct webhooks_stats st;
    webhooks_stats(f->wh, &st);
    return st;
}

/* --- pure helpers --------------------------------------------------------- */

static void test_signature_vectors(void **state)
{
    (void)state;
    char out[68];
    /* printf '%s' '1748419200.{"a":1}' | openssl dgst -sha256 -hmac whsec_test */
    webhooks_signature(SECRET, "1748419200", "{\"a\":1}", 7, out, sizeof out);
    assert_string_equal(out, "v1=abd9ac27b456fe2fffd29146b7a6fa9a1c8afe8fac397688aed19fa21d21e557");
    /* Python: hmac.new(b'whsec_k', b'1700000000.', sha256) */
    webhooks_signature("whsec_k", "1700000000", NULL, 0, out, sizeof out);
    assert_string_equal(out, "v1=7708b5f4b4a539add7a7f2027635ccbbc7dccabf9c5412b49d9442488f3fc5f2");
    /* Raw bytes, NUL included: the MAC is over the body's length, not a C string. */
    static const unsigned char raw[] = {0x00, 0x01, 0xff, 0x0a};
    webhooks_signature("whsec_k", "1700000000", raw, sizeof raw, out, sizeof out);
    assert_string_equal(out, "v1=2f8f829d0f982a971e93bea593ecff3e371bd6c4a96859a1d4c087abaa309f6c");
    /* Too small a buffer: nothing but "". */
    char small[67];
    memset(small, 'x', sizeof small);
    webhooks_signature(SECRET, "1748419200", "{\"a\":1}", 7, small, sizeof small);
    assert_string_equal(small, "");
}

static void test_retry_delays(void **state)
{
    (void)state;
    assert_int_equal(webhooks_retry_delay_ms(120000, 1), 2 * 60000);
    assert_int_equal(webhooks_retry_delay_ms(120000, 2), 4 * 60000);
    assert_int_equal(webhooks_retry_delay_ms(120000, 3), 8 * 60000);
    assert_int_equal(webhooks_retry_delay_ms(120000, 4), 16 * 60000);
    assert_int_equal(webhooks_retry_delay_ms(50, 1), 50);
    assert_int_equal(webhooks_retry_delay_ms(50, 3), 200);
    assert_true(webhooks_retry_delay_ms(120000, 200) == INT64_MAX);
}

/* --- delivery on a real loop ------------------------------------------------ */

static void test_retry_then_delivered_signed(void **state)
{
    (void)state;
    static const int statuses[] = {500, 200};
    struct fixture f = {.rv = {.statuses = statuses, .status_count = 2, .last_status = 200}};
    struct webhooks_options o = {.secret = SECRET,
                                 .max_attempts = 5,
                                 .retry_base_ms = 50,
                                 .timeout_ms = 5000,
                                 .max_pending = 100};
    fixture_start(&f, &o);
    /* Bytes a naive sender would mangle: a newline, UTF-8, a quote. */
    static const char body[] = "{\"task\":{\"id\":\"task-abc\",\"status\":\"COMPLETED\"},\n "
                               "\"text\":\"caf\xc3\xa9 \\\"q\\\"\"}";
    int64_t start_s = clock_wall_ms() / 1000;
    assert_int_equal(
        webhooks_enqueue(f.wh, "task-abc", f.url, body, sizeof body - 1, 0, clock_wall_ms()), 0);
    fixture_run(&f, 1);
    int64_t end_s = clock_wall_ms() / 1000;

    assert_int_equal(f.report_count, 2);
    const struct seen_report *r1 = &f.reports[0], *r2 = &f.reports[1];
    assert_string_equal(r1->task_id, "task-abc");
    assert_string_equal(r1->url, f.url);
    assert_int_equal(r1->attempt, 1);
    assert_false(r1->delivered);
    assert_false(r1->final);
    assert_int_equal(r1->status, 500);
    assert_true(r1->has_error);
    assert_string_equal(r1->error, "status 500");
    assert_int_equal(r1->next_attempt_ms, r1->at_ms + 50);
    assert_int_equal(r2->attempt, 2);
    assert_true(r2->delivered);
    assert_true(r2->final);
    assert_int_equal(r2->status, 200);
    assert_false(r2->has_error);
    assert_int_equal(r2->next_attempt_ms, 0);
    assert_true(r2->at_ms >= r1->next_attempt_ms);

    assert_int_equal(f.rv.count, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct received *rx = &f.rv.rx[i];
        assert_int_equal(rx->body_len, sizeof body - 1);
        assert_memory_equal(rx->body, body, sizeof body - 1);
        assert_non_null(rx->content_type);
        assert_string_equal(rx->content_type, "application/json");
        assert_non_null(rx->user_agent);
        assert_string_equal(rx->user_agent, "cloro-proxy");
        assert_non_null(rx->webhook_id);
        assert_string_equal(rx->webhook_id, i == 0 ? "task-abc-1" : "task-abc-2");
        /* Unix seconds at send time. */
        assert_non_null(rx->timestamp);
        char *end = NULL;
        long long ts = strtoll(rx->timestamp, &end, 10);
        assert_true(end != rx->timestamp && *end == '\0');
        assert_true(ts >= start_s && ts <= end_s);
        /* Verifies over the bytes received. */
        char want[68];
        webhooks_signature(SECRET, rx->timestamp, rx->body, rx->body_len, want, sizeof want);
        assert_true(strlen(want) == 67);
        assert_non_null(rx->signature);
        assert_string_equal(rx->signature, want);
    }
    /* The retry waited its backoff. */
    assert_true(f.rv.rx[1].at_ms - f.rv.rx[0].at_ms >= 50);

    struct webhooks_stats st = stats_of(&f);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.attempts, 2);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.failed_attempts, 1);
    assert_int_equal(st.given_up, 0);
    fixture_stop(&f);
}

static void test_gives_up_unsigned(void **state)
{
    (void)state;
    struct fixture f = {.rv = {.last_status = 503}};
    struct webhooks_options o = {
        .secret = "", .max_attempts = 3, .retry_base_ms = 20, .timeout_ms = 5000, .max_pending = 8};
    fixture_start(&f, &o);
    assert_int_equal(webhooks_enqueue(f.wh, "t-gone", f.url, "{}", 2, 0, 0), 0);
    fixture_run(&f, 1);

    assert_int_equal(f.report_count, 3);
    for (int i = 0; i < 3; i++) {
        const struct seen_report *r = &f.reports[i];
        assert_int_equal(r->attempt, i + 1);
        assert_false(r->delivered);
        assert_int_equal(r->status, 503);
        assert_string_equal(r->error, "status 503");
        assert_int_equal(r->final, i == 2);
    }
    assert_int_equal(f.reports[0].next_attempt_ms, f.reports[0].at_ms + 20);
    assert_int_equal(f.reports[1].next_attempt_ms, f.reports[1].at_ms + 40);
    assert_int_equal(f.reports[2].next_attempt_ms, 0);

    assert_int_equal(f.rv.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_null(f.rv.rx[i].timestamp);
        assert_null(f.rv.rx[i].signature);
        assert_null(f.rv.rx[i].webhook_id);
        assert_string_equal(f.rv.rx[i].body, "{}");
    }
    struct webhooks_stats st = stats_of(&f);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.attempts, 3);
    assert_int_equal(st.failed_attempts, 3);
    assert_int_equal(st.given_up, 1);
    assert_int_equal(st.delivered, 0);
    fixture_stop(&f);
}

/* Resumed after a restart with 4 of 5 attempts made: one attempt is left. */
static void test_resume_and_connection_error(void **state)
{
    (void)state;
    struct fixture f = {.rv = {.last_status = 200}};
    struct webhooks_options o = {.secret = SECRET,
                                 .max_attempts = 5,
                                 .retry_base_ms = 20,
                                 .timeout_ms = 5000,
                                 .max_pending = 8};
    fixture_start(&f, &o);
    /* A port nobody listens on: bind one, note it, close it. */
    struct evhttp *tmp = evhttp_new(f.base);
    struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(tmp, "127.0.0.1", 0);
    assert_non_null(b);
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&addr, &len), 0);
    evhttp_free(tmp);
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d/hook", ntohs(addr.sin_port));

    assert_int_equal(webhooks_enqueue(f.wh, "t-dead", dead, "{}", 2, 4, 0), 0);
    fixture_run(&f, 1);
    assert_int_equal(f.report_count, 1);
    const struct seen_report *r = &f.reports[0];
    assert_int_equal(r->attempt, 5);
    assert_true(r->final);
    assert_false(r->delivered);
    assert_int_equal(r->status, 0);
    assert_true(r->has_error);
    assert_true(r->error[0] != '\0');
    assert_null(strstr(r->error, "status"));
    assert_int_equal(r->next_attempt_ms, 0);

    /* The same resumption against the live receiver: attempt 5, "-5" id. */
    assert_int_equal(webhooks_enqueue(f.wh, "t-live", f.url, "{}", 2, 4, 0), 0);
    fixture_run(&f, 2);
    assert_int_equal(f.report_count, 2);
    assert_int_equal(f.reports[1].attempt, 5);
    assert_true(f.reports[1].delivered);
    assert_int_equal(f.rv.count, 1);
    assert_string_equal(f.rv.rx[0].webhook_id, "t-live-5");
    fixture_stop(&f);
}

/* 16 blockers fill every slot; 24 more wait, enqueued in shuffled due order
 * (all already due). The receiver holds what it gets and answers a batch once
 * no request came for a tick: it never holds more than 16, and the second
 * batch is the 16 earliest due. */
static void test_in_flight_bound_and_due_order(void **state)
{
    (void)state;
    struct fixture f = {.rv = {.hold = true}};
    struct webhooks_options o = {.secret = SECRET,
                                 .max_attempts = 2,
                                 .retry_base_ms = 20,
                                 .timeout_ms = 5000,
                                 .max_pending = 40};
    fixture_start(&f, &o);
    int64_t now = clock_wall_ms();
    char id[32];
    for (int i = 0; i < IN_FLIGHT; i++) {
        snprintf(id, sizeof id, "block%02d", i);
        assert_int_equal(webhooks_enqueue(f.wh, id, f.url, "{}", 2, 0, now - 5000), 0);
    }
    struct webhooks_stats st = stats_of(&f);
    assert_int_equal(st.in_flight, IN_FLIGHT);
    for (int k = 0; k < 24; k++) {
        int offset = (k * 7) % 24; /* a permutation of 0..23 */
        snprintf(id, sizeof id, "due%02d", offset);
        assert_int_equal(webhooks_enqueue(f.wh, id, f.url, "{}", 2, 0, now - 1000 + offset), 0);
    }
    st = stats_of(&f);
    assert_int_equal(st.in_flight, IN_FLIGHT);
    assert_int_equal(st.pending, 40);
    /* Full: a 41st is refused. */
    assert_int_equal(webhooks_enqueue(f.wh, "extra", f.url, "{}", 2, 0, now), -1);

    fixture_run(&f, 40);
    assert_int_equal(f.rv.count, 40);
    assert_int_equal(f.rv.max_held, IN_FLIGHT);
    bool seen[24] = {false};
    for (size_t i = 0; i < 40; i++) {
        const char *wid = f.rv.rx[i].webhook_id;
        assert_non_null(wid);
        if (i < IN_FLIGHT) {
            assert_memory_equal(wid, "block", 5);
            continue;
        }
        int offset = -1;
        assert_int_equal(sscanf(wid, "due%d-1", &offset), 1);
        assert_true(offset >= 0 && offset < 24);
        assert_false(seen[offset]);
        seen[offset] = true;
        if (i < 2 * IN_FLIGHT) /* second batch: the earliest due */
            assert_true(offset < IN_FLIGHT);
    }
    st = stats_of(&f);
    assert_int_equal(st.delivered, 40);
    assert_int_equal(st.pending, 0);
    fixture_stop(&f);
}

/* A second enqueue for a task replaces the first, waiting or in flight. */
static void test_replace(void **state)
{
    (void)state;
    struct fixture f = {.rv = {.last_status = 200}};
    struct webhooks_options o = {.secret = SECRET,
                                 .max_attempts = 5,
                                 .retry_base_ms = 20,
                                 .timeout_ms = 5000,
                                 .max_pending = 1};
    fixture_start(&f, &o);
    int64_t later = clock_wall_ms() + 3600 * 1000;
    assert_int_equal(webhooks_enqueue(f.wh, "t-r", f.url, "{\"v\":1}", 7, 0, later), 0);
    /* max_pending is 1, yet replacing is allowed; another task is not. */
    assert_int_equal(webhooks_enqueue(f.wh, "t-other", f.url, "{}", 2, 0, 0), -1);
    assert_int_equal(webhooks_enqueue(f.wh, "t-r", f.url, "{\"v\":2}", 7, 0, 0), 0);
    /* In flight now: replaced again, the attempt cancelled unreported. */
    assert_int_equal(stats_of(&f).in_flight, 1);
    assert_int_equal(webhooks_enqueue(f.wh, "t-r", f.url, "{\"v\":3}", 7, 2, 0), 0);
    struct webhooks_stats st = stats_of(&f);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.replaced, 2);
    fixture_run(&f, 1);
    assert_int_equal(f.report_count, 1);
    assert_int_equal(f.reports[0].attempt, 3);
    assert_true(f.reports[0].delivered);
    assert_int_equal(f.rv.count, 1);
    assert_string_equal(f.rv.rx[0].body, "{\"v\":3}");
    assert_string_equal(f.rv.rx[0].webhook_id, "t-r-3");
    fixture_stop(&f);
}

/* The report callback enqueues the task being reported: that delivery wins
 * over the scheduled retry (no third request, no backoff wait). */
static void test_requeue_from_report(void **state)
{
    (void)state;
    static const int statuses[] = {500, 200};
    struct fixture f = {.rv = {.statuses = statuses, .status_count = 2, .last_status = 500},
                        .requeue_in_report = true};
    struct webhooks_options o = {.secret = SECRET,
                                 .max_attempts = 5,
                                 .retry_base_ms = 60000,
                                 .timeout_ms = 5000,
                                 .max_pending = 1};
    fixture_start(&f, &o);
    assert_int_equal(webhooks_enqueue(f.wh, "t-q", f.url, "{\"v\":1}", 7, 0, 0), 0);
    fixture_run(&f, 1);
    assert_int_equal(f.report_count, 2);
    assert_int_equal(f.reports[1].attempt, 2);
    assert_true(f.reports[1].delivered);
    assert_int_equal(f.rv.count, 2);
    assert_string_equal(f.rv.rx[0].body, "{\"v\":1}");
    assert_string_equal(f.rv.rx[1].body, "{\"v\":2}");
    assert_string_equal(f.rv.rx[1].webhook_id, "t-q-2");
    struct webhooks_stats st = stats_of(&f);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.replaced, 1);
    fixture_stop(&f);
}

static void test_enqueue_refusals(void **state)
{
    (void)state;
    struct fixture f = {.rv = {.last_status = 200}};
    struct webhooks_options o = {.secret = SECRET,
                                 .max_attempts = 5,
                                 .retry_base_ms = 20,
                                 .timeout_ms = 5000,
                                 .max_pending = 2};
    fixture_start(&f, &o);
    int64_t later = clock_wall_ms() + 3600 * 1000;
    static const char *const bad[] = {
        "ftp://example.com/hook", "not a url",          "", "http://", "mailto:a@example.com",
        "/relative/hook",         "file:///etc/passwd",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (webhooks_enqueue(f.wh, "t1", bad[i], "{}", 2, 0, later) != -1)
            fail_msg("accepted %s", bad[i]);
    assert_int_equal(webhooks_enqueue(f.wh, "t1", NULL, "{}", 2, 0, later), -1);
    /* No attempt left, or a nonsense count. */
    assert_int_equal(webhooks_enqueue(f.wh, "t1", "https://example.com/h", "{}", 2, 5, later), -1);
    assert_int_equal(webhooks_enqueue(f.wh, "t1", "https://example.com/h", "{}", 2, -1, later), -1);
    assert_int_equal(stats_of(&f).pending, 0);
    assert_int_equal(stats_of(&f).rejected, 10);
    /* Good ones, up to max_pending. */
    assert_int_equal(webhooks_enqueue(f.wh, "t1", "https://example.com/h", "{}", 2, 4, later), 0);
    assert_int_equal(
        webhooks_enqueue(f.wh, "t2", "HTTP://Example.com:8080/h?x=1", "{}", 2, 0, later), 0);
    assert_int_equal(webhooks_enqueue(f.wh, "t3", "https://example.com/h", "{}", 2, 0, later), -1);
    struct webhooks_stats st = stats_of(&f);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.attempts, 0);
    /* Out-of-range options. */
    struct webhooks_options zero = o;
    zero.max_attempts = 0;
    assert_null(webhooks_new(f.base, f.up, &zero, on_report, &f));
    fixture_stop(&f); /* frees the two waiting deliveries */
    assert_int_equal(f.report_count, 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    log_threshold = LOG_LEVEL_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_vectors),
        cmocka_unit_test(test_retry_delays),
        cmocka_unit_test(test_retry_then_delivered_signed),
        cmocka_unit_test(test_gives_up_unsigned),
        cmocka_unit_test(test_resume_and_connection_error),
        cmocka_unit_test(test_in_flight_bound_and_due_order),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_requeue_from_report),
        cmocka_unit_test(test_enqueue_refusals),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
