/* forward.c: the /v1/ pipeline, top to bottom:
 *   size check -> cache key -> request directives -> lookup (hit, stale)
 *   -> only-if-cached -> coalesce with an identical call in flight
 *   -> upstream call -> store a successful answer -> reply to the leader and
 *   every waiter; on an upstream failure, stale-if-error or the same error
 *   for all of them.
 * The upstream call carries the proxy's key in place of the client's
 * Authorization when the proxy holds one. Transport errors become the
 * proxy's own envelope (reply.c); the upstream's own answers pass unchanged.
 *
 * Modes (mode.h): offline answers from the store alone (stale or not) or
 * with 504 OFFLINE_CACHE_MISS, and send_attempt refuses to start any call
 * while offline (calls queued or waiting to retry when the mode switched);
 * refresh asks upstream as no-cache does; record pins what it stores
 * (cache_io.c). X-Cache-Sample: K makes the key that of sample K (key.h). */
#include "forward.h"
#include "answer.h"
#include "budget.h"
#include "cache_io.h"
#include "clock.h"
#include "coalescer.h"
#include "credit_saver.h"
#include "limiter.h"
#include "log.h"
#include "members.h"
#include "reply.h"
#include "request.h"
#include "retry.h"
#include "server.h"
#include "tasks.h"
#include "touches.h"
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FORWARDED_HEADERS_MAX 128

static bool name_in(const char *name, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strcasecmp(name, list[i]) == 0)
            return true;
    return false;
}

bool forward_relays_response_header(const char *name)
{
    static const char *const relayed[] = {"Content-Type", "Retry-After", "Deprecation", "Sunset",
                                          "Link"};
    if (strncasecmp(name, "X-Proxy-", 8) == 0)
        return false;
    if (strncasecmp(name, "X-", 2) == 0)
        return true;
    return name_in(name, relayed, sizeof relayed / sizeof relayed[0]);
}

bool forward_passes_request_header(const char *name)
{
    static const char *const dropped[] = {"Host",
                                          "Connection",
                                          "Keep-Alive",
                                          "Proxy-Connection",
                                          "TE",
                                          "Trailer",
                                          "Transfer-Encoding",
                                          "Upgrade",
                                          "Expect",
                                          "Proxy-Authorization",
                                          "Content-Length",
                                          "Accept-Encoding",
                                          "Authorization",
                                          "X-Cache-Sample"};
    if (strncasecmp(name, "X-Proxy-", 8) == 0)
        return false;
    return !name_in(name, dropped, sizeof dropped / sizeof dropped[0]);
}

/* True when the client's Connection header names this header as hop-by-hop. */
static bool named_by_connection(const char *connection, const char *name)
{
    if (connection == NULL)
        return false;
    size_t len = strlen(name);
    const char *p = connection;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *end = p;
        while (*end != '\0' && *end != ',' && *end != ' ' && *end != '\t')
            end++;
        if ((size_t)(end - p) == len && strncasecmp(p, name, len) == 0)
            return true;
        p = end;
    }
    return false;
}

struct header_list {
    struct upstream_header items[FORWARDED_HEADERS_MAX];
    size_t count;
    const char *connection;
};

static void collect_header(const char *name, const char *value, void *arg)
{
    struct header_list *list = arg;
    if (list->count == FORWARDED_HEADERS_MAX || !forward_passes_request_header(name) ||
        named_by_connection(list->connection, name))
        return;
    /* Borrowed from evhttp: alive until the reply, longer than the call setup. */
    list->items[list->count].name = name;
    list->items[list->count].value = value;
    list->count++;
}

/* Upstream failures come in bursts: one warning a second, with a count. */
static void warn_upstream_failure(struct server *srv, const struct request *r,
                                  const struct upstream_result *res)
{
    int64_t now = clock_mono_us();
    if (srv->upstream_warned_us != 0 && now - srv->upstream_warned_us < 1000000) {
        srv->upstream_warn_suppressed++;
        return;
    }
    char msg[300];
    log_warn("upstream_error", "rid=%s upstream=%s outcome=%s error=%s suppressed=%llu", r->id,
             srv->cfg->upstream, upstream_outcome_name(res->outcome),
             log_value(msg, sizeof msg, res->error),
             (unsigned long long)srv->upstream_warn_suppressed);
    srv->upstream_warned_us = now;
    srv->upstream_warn_suppressed = 0;
}

static void admit(struct request *r);
static void observe_limits(struct server *srv, const struct upstream_result *res);
static int64_t retry_delay(struct request *r, const struct upstream_result *res);
static void schedule_retry(struct request *r, int64_t delay_ms);
static bool is_submission(const struct request *r);
static bool submission_idempotent(const struct request *r);

void forward_reply_upstream_failure(struct request *r, const struct upstream_result *res)
{
    struct server *srv = r->server;
    json_t *details = json_pack("{s:s}", "reason", res->error);
    if (res->outcome == UPSTREAM_TIMEOUT) {
        char message[128];
        snprintf(message, sizeof message, "The cloro API did not answer within %lld ms",
                 (long long)srv->cfg->upstream_timeout_ms);
        reply_error(r, PROXY_ERROR_UPSTREAM_TIMEOUT, message, details);
        return;
    }
    const char *message = res->outcome == UPSTREAM_UNREACHABLE
                              ? "The cloro API could not be reached"
                          : res->outcome == UPSTREAM_TOO_LARGE
                              ? "The cloro API's response is larger than max_response_bytes"
                              : "The cloro API's response was cut off or malformed";
    reply_error(r, PROXY_ERROR_UPSTREAM_UNAVAILABLE, message, details);
}

/* Stale-if-error (RFC 5861): an expired answer recent enough, for everyone
 * who waited on a call that failed. Returns true when it answered them. */
static bool serve_stale_on_error(struct request *leader, struct flight *f, int upstream_status)
{
    struct server *srv = leader->server;
    if (!leader->keyed || srv->cfg->stale_if_error_ms == 0)
        return false;
    struct cache_entry stale;
    if (!cache_io_lookup(srv, &leader->key, &stale))
        return false;
    bool ok = cache_policy_stale_if_error(stale.expires_at_ms, clock_wall_ms(),
                                          srv->cfg->stale_if_error_ms);
    if (ok) {
        struct answer_context ctx = {.outcome = CACHE_OUTCOME_STALE,
                                     .after_error = true,
                                     .upstream_status = upstream_status};
        log_info("stale_if_error", "rid=%s key=%s upstream_status=%d waiters=%zu", leader->id,
                 leader->key.hex, upstream_status, f != NULL ? f->waiter_count : 0);
        for (struct request *w = f != NULL ? f->waiters : NULL, *next; w != NULL; w = next) {
            next = w->next_waiter;
            answer_send(w, &stale, &ctx, NULL);
        }
        answer_send(leader, &stale, &ctx, NULL);
    }
    cache_entry_free(&stale);
    return ok;
}

/* Answers a leader and the waiters of its flight (already out of the table)
 * with one answer, then frees the flight. */
static void answer_flight(struct request *r, struct flight *f, const struct cache_entry *answer,
                          const struct answer_context *ctx, struct evbuffer *body)
{
    struct answer_context waiter_ctx = *ctx;
    waiter_ctx.outcome = CACHE_OUTCOME_COALESCED;
    for (struct request *w = f != NULL ? f->waiters : NULL, *next; w != NULL; w = next) {
        next = w->next_waiter;
        answer_send(w, answer, &waiter_ctx, NULL);
    }
    answer_send(r, answer, ctx, body);
    coalescer_flight_free(f);
}

static void settle_upstream_result(struct request *r, const struct upstream_result *res);

static void on_upstream_done(const struct upstream_result *res, void *arg)
{
    struct request *r = arg;
    struct server *srv = r->server;
    r->transfer = NULL;
    /* libcurl's resend after a reused connection died is a call too (upstream.h). */
    if (res->sends > 1)
        srv->stats.upstream_calls += (uint64_t)(res->sends - 1);
    limiter_release(srv->limiter, &r->ticket);
    observe_limits(srv, res);
    int64_t delay_ms = retry_delay(r, res);
    if (delay_ms >= 0) {
        r->retries++;
        srv->stats.retries++;
        schedule_retry(r, delay_ms);
        return;
    }
    settle_upstream_result(r, res);
}

/* The answer (or failure) of r's last attempt goes to r, its hooks or every
 * request of its flight. */
static void settle_upstream_result(struct request *r, const struct upstream_result *res)
{
    struct server *srv = r->server;
    if (r->hooks != NULL) {
        if (res->outcome != UPSTREAM_OK)
            warn_upstream_failure(srv, r, res);
        r->hooks->answered(r, res);
        return;
    }
    struct flight *f = r->flight;
    r->flight = NULL;
    if (f != NULL)
        coalescer_end(srv->coalescer, f);

    if (res->outcome != UPSTREAM_OK) {
        warn_upstream_failure(srv, r, res);
        if (res->outcome == UPSTREAM_TIMEOUT)
            srv->stats.upstream_timeouts++;
        else
            srv->stats.upstream_unavailable++;
        int status = res->outcome == UPSTREAM_TIMEOUT ? 504 : 502;
        if (!serve_stale_on_error(r, f, status)) {
            for (struct request *w = f != NULL ? f->waiters : NULL, *next; w != NULL; w = next) {
                next = w->next_waiter;
                w->cache_outcome = CACHE_OUTCOME_COALESCED;
                srv->stats.cache_by_outcome[CACHE_OUTCOME_COALESCED]++;
                forward_reply_upstream_failure(w, res);
            }
            forward_reply_upstream_failure(r, res);
        }
        coalescer_flight_free(f);
        return;
    }
    if (res->status >= 500 && serve_stale_on_error(r, f, (int)res->status)) {
        coalescer_flight_free(f);
        return;
    }

    struct cache_header headers[CACHE_ENTRY_MAX_HEADERS];
    struct cache_entry answer;
    cache_io_entry_from_result(r, res, headers, &answer);
    struct answer_context ctx = {.outcome = r->cache_outcome, .upstream_status = (int)res->status};
    if (r->keyed && cache_io_storable(&answer)) {
        cache_io_store(srv, &r->key, &answer);
        ctx.stored = true;
    } else if (answer.status >= 200 && answer.status < 300) {
        cache_io_capture_artifacts(srv, &answer);
    }
    answer_flight(r, f, &answer, &ctx, res->body);
}

void forward_settle(struct request *r, const struct cache_entry *answer,
                    const struct answer_context *ctx)
{
    struct flight *f = r->flight;
    r->flight = NULL;
    if (f != NULL)
        coalescer_end(r->server->coalescer, f);
    answer_flight(r, f, answer, ctx, NULL);
}

/* Ends a leader and everyone waiting on its flight with one error. details
 * is stolen (each reply gets a copy). */
static void fail_flight(struct request *r, enum proxy_error err, const char *message,
                        json_t *details, const char *retry_after);

void forward_fail(struct request *r, enum proxy_error err, const char *message, json_t *details)
{
    fail_flight(r, err, message, details, NULL);
}

static void fail_flight(struct request *r, enum proxy_error err, const char *message,
                        json_t *details, const char *retry_after)
{
    struct server *srv = r->server;
    if (r->hooks != NULL && r->hooks->failed != NULL)
        r->hooks->failed(r);
    struct flight *f = r->flight;
    r->flight = NULL;
    if (f != NULL) {
        coalescer_end(srv->coalescer, f);
        for (struct request *w = f->waiters, *next; w != NULL; w = next) {
            next = w->next_waiter;
            if (retry_after != NULL)
                request_add_header(w, "Retry-After", retry_after);
            reply_error(w, err, message, details != NULL ? json_deep_copy(details) : NULL);
        }
        coalescer_flight_free(f);
    }
    if (retry_after != NULL)
        request_add_header(r, "Retry-After", retry_after);
    reply_error(r, err, message, details);
}

static json_t *offline_details(const struct request *r, const struct cache_key *key)
{
    if (key != NULL)
        return json_pack("{s:s, s:s}", "key", key->hex, "provider", key->provider);
    return json_pack("{s:s, s:s}", "path", r->path, "reason",
                     "the proxy cannot key this request: only stored answers are served");
}

void forward_reply_offline(struct request *r, const struct cache_key *key)
{
    struct server *srv = r->server;
    srv->stats.offline_misses++;
    if (srv->store != NULL) {
        r->cache_outcome = key != NULL ? CACHE_OUTCOME_MISS : CACHE_OUTCOME_BYPASS;
        srv->stats.cache_by_outcome[r->cache_outcome]++;
        request_add_header(r, "X-Cache", request_cache_outcome_name(r->cache_outcome));
        request_add_header(r, "Cache-Status", "cloro-proxy; detail=offline");
    }
    if (key != NULL)
        request_add_header(r, "X-Cache-Key", key->hex);
    reply_error(r, PROXY_ERROR_OFFLINE_CACHE_MISS, NULL, offline_details(r, key));
}

/* A call about to go upstream while the proxy is offline: r (and whoever
 * waits on its flight, and its hooks) end with OFFLINE_CACHE_MISS. */
static void fail_offline(struct request *r)
{
    if (r->hooks == NULL && r->flight == NULL) {
        forward_reply_offline(r, r->keyed ? &r->key : NULL);
        return;
    }
    r->server->stats.offline_misses++;
    fail_flight(r, PROXY_ERROR_OFFLINE_CACHE_MISS, NULL,
                offline_details(r, r->keyed ? &r->key : NULL), NULL);
}

/* Milliseconds left of the request's budget (upstream_timeout from its
 * arrival, queue waits and retries included); at least 1. */
static int64_t remaining_ms(const struct request *r)
{
    int64_t left = (r->deadline_us - clock_mono_us()) / 1000;
    return left > 0 ? left : 1;
}

/* An attempt needs at least this much of its request's budget: with less,
 * no answer could arrive in time. */
#define ATTEMPT_MIN_MS 10

/* The budget went to the queue or to backoff before an attempt could start:
 * r and its flight end as a call that got no answer in time would (504, or
 * stale-if-error), and nothing is sent (an attempt with a millisecond left
 * would only fail as "unreachable"). */
static void end_out_of_time(struct request *r)
{
    struct server *srv = r->server;
    limiter_release(srv->limiter, &r->ticket);
    struct evbuffer *empty = evbuffer_new();
    if (empty == NULL)
        abort();
    const struct upstream_result res = {
        .outcome = UPSTREAM_TIMEOUT,
        .body = empty,
        .error = "no time was left for an attempt: the request waited its budget in the queue "
                 "or between retries",
    };
    settle_upstream_result(r, &res);
    evbuffer_free(empty);
}

static void send_attempt(struct request *r)
{
    struct server *srv = r->server;
    const struct config *cfg = srv->cfg;
    if (srv->mode == PROXY_MODE_OFFLINE) {
        /* Queued (or waiting to retry) when the proxy went offline. */
        limiter_release(srv->limiter, &r->ticket);
        fail_offline(r);
        return;
    }
    /* Calls with hooks (task submissions) keep to their own ends. */
    if (r->hooks == NULL && (r->deadline_us - clock_mono_us()) / 1000 < ATTEMPT_MIN_MS) {
        end_out_of_time(r);
        return;
    }
    struct evbuffer *body = request_body(r);
    size_t body_len = r->upstream_body != NULL ? r->upstream_body_len : evbuffer_get_length(body);
    const void *body_bytes = r->upstream_body != NULL ? (const void *)r->upstream_body
                             : body_len > 0           ? (const void *)evbuffer_pullup(body, -1)
                                                      : NULL;

    char *url = NULL;
    bool own_path = r->upstream_path == NULL;
    if (asprintf(&url, "%s%s%s%s", cfg->upstream, own_path ? r->path : r->upstream_path,
                 own_path && r->query != NULL ? "?" : "",
                 own_path && r->query != NULL ? r->query : "") < 0)
        abort();

    struct header_list headers = {.connection = request_header(r, "Connection")};
    request_foreach_header(r, collect_header, &headers);
    const char *authorization = srv->authorization;
    /* A member's Authorization is its token for the proxy: never cloro's. */
    if (authorization == NULL && r->member[0] == '\0')
        authorization = request_header(r, "Authorization");
    if (authorization != NULL && headers.count < FORWARDED_HEADERS_MAX) {
        headers.items[headers.count].name = "Authorization";
        headers.items[headers.count].value = authorization;
        headers.count++;
    }

    struct upstream_call call = {
        .method = r->method,
        .url = url,
        .headers = headers.items,
        .header_count = headers.count,
        .body = body_bytes,
        .body_len = body_len,
        .timeout_ms = remaining_ms(r),
        /* A submission without idempotencyKey the upstream may have accepted
         * is never sent twice, not even by libcurl (retry.h). */
        .no_resend = is_submission(r) && !submission_idempotent(r),
    };
    srv->stats.upstream_calls++;
    r->upstream_attempts++;
    r->transfer = upstream_start(srv->upstream, &call, on_upstream_done, r);
    free(url);
    if (r->transfer != NULL)
        return;
    limiter_release(srv->limiter, &r->ticket);
    fail_flight(r, PROXY_ERROR_INTERNAL, "Could not start the upstream call", NULL, NULL);
}

/* --- limits and retries ------------------------------------------------ */

/* Monitor calls take a concurrency slot; goto does not (cloro-api.md 10.2). */
/* The path the upstream call goes to. */
static const char *upstream_path(const struct request *r)
{
    return r->upstream_path != NULL ? r->upstream_path : r->path;
}

static bool takes_slot(const struct request *r)
{
    const char *path = upstream_path(r);
    return strcmp(r->method, "POST") == 0 && strncmp(path, "/v1/monitor/", 12) == 0 &&
           strcmp(path, "/v1/monitor/google/goto") != 0;
}

static bool is_submission(const struct request *r)
{
    const char *path = upstream_path(r);
    return strcmp(r->method, "POST") == 0 &&
           (strcmp(path, "/v1/async/task") == 0 || strcmp(path, "/v1/async/task/batch") == 0);
}

/* An async submission's own priority (section 7.2), when X-Priority is absent. */
static int body_priority(const struct request *r)
{
    struct evbuffer *body = request_body(r);
    size_t len = evbuffer_get_length(body);
    if (len == 0 || !is_submission(r) || strcmp(r->path, "/v1/async/task") != 0 ||
        r->upstream_path != NULL)
        return 1;
    json_t *doc = json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, NULL);
    json_int_t p = json_integer_value(json_object_get(doc, "priority"));
    json_decref(doc);
    return p >= 1 && p <= 10 ? (int)p : 1;
}

/* True when every task of a submission carries an idempotencyKey: a retry
 * of it can never create a second task (section 7.8). */
static bool submission_idempotent(const struct request *r)
{
    struct evbuffer *body = request_body(r);
    size_t len = r->upstream_body != NULL ? r->upstream_body_len : evbuffer_get_length(body);
    const char *bytes = r->upstream_body != NULL ? r->upstream_body
                        : len > 0                ? (const char *)evbuffer_pullup(body, -1)
                                                 : NULL;
    json_t *doc = len > 0 ? json_loadb(bytes, len, 0, NULL) : NULL;
    bool ok = false;
    if (json_is_object(doc)) {
        ok = json_is_string(json_object_get(doc, "idempotencyKey"));
    } else if (json_is_array(doc) && json_array_size(doc) > 0) {
        ok = true;
        size_t i;
        json_t *task;
        json_array_foreach(doc, i, task) ok =
            ok && json_is_string(json_object_get(task, "idempotencyKey"));
    }
    json_decref(doc);
    return ok;
}

static void admit(struct request *r)
{
    struct server *srv = r->server;
    struct limiter_ticket *t = &r->ticket;
    t->owner = r;
    t->needs_slot = takes_slot(r);
    t->endpoint = limiter_endpoint(srv->limiter, upstream_path(r));
    t->priority = r->priority > 0 ? r->priority : body_priority(r);
    /* Turns and limits by member when auth knows one (auth.h), else by address. */
    const struct member *m =
        r->member[0] != '\0' && srv->members != NULL ? members_find(srv->members, r->member) : NULL;
    if (r->member[0] != '\0')
        snprintf(t->client, sizeof t->client, "member:%s", r->member);
    else
        snprintf(t->client, sizeof t->client, "%s", r->client_ip);
    t->client_rate = m != NULL ? (double)m->rate_limit : 0;
    t->client_max_concurrency = m != NULL ? (int)m->max_concurrency : 0;
    limiter_submit(srv->limiter, t);
}

static void on_granted(struct limiter_ticket *t)
{
    send_attempt(t->owner);
}

static void on_refused(struct limiter_ticket *t, enum limiter_refusal why)
{
    struct request *r = t->owner;
    struct server *srv = r->server;
    struct limiter_stats ls;
    limiter_stats(srv->limiter, &ls);
    /* Held back by the member's own limit (members.h) or by the shared ones. */
    bool own =
        t->waiting_for == LIMITER_WAIT_CLIENT_SLOT || t->waiting_for == LIMITER_WAIT_CLIENT_RATE;
    bool slot = t->waiting_for == LIMITER_WAIT_SLOT || t->waiting_for == LIMITER_WAIT_CLIENT_SLOT;
    srv->stats.limit_rejections++;
    json_int_t limit = t->waiting_for == LIMITER_WAIT_CLIENT_SLOT   ? t->client_max_concurrency
                       : t->waiting_for == LIMITER_WAIT_CLIENT_RATE ? (json_int_t)t->client_rate
                       : slot                                       ? ls.limit
                              : (json_int_t)(srv->cfg->rate_limit_per_endpoint > 0
                                                 ? srv->cfg->rate_limit_per_endpoint
                                                 : srv->cfg->rate_limit_global);
    json_t *details = json_pack("{s:I, s:I, s:I}", "limit", limit, "queued", (json_int_t)ls.queued,
                                "waited_ms", (json_int_t)t->waited_ms);
    if (own)
        json_object_set_new(details, "member", json_string(r->member));
    char message[200];
    snprintf(message, sizeof message, "%s%s: %s",
             slot ? "Concurrency limit exceeded" : "Rate limit exceeded",
             !own   ? ""
             : slot ? " (the member's max_concurrency)"
                    : " (the member's rate_limit)",
             why == LIMITER_REFUSED_QUEUE_FULL ? "the proxy's waiting queue is full"
                                               : "waited longer than queue_timeout");
    /* A retry a second later may fare better: a slot frees, a token drips. */
    fail_flight(r, slot ? PROXY_ERROR_CONCURRENCY_LIMIT : PROXY_ERROR_RATE_LIMIT, message, details,
                "1");
}

/* A queued call whose client left costs nothing: unless others wait on its
 * flight, it is dropped before it goes upstream. */
static bool on_alive(struct limiter_ticket *t)
{
    struct request *r = t->owner;
    return (r->flight != NULL && r->flight->waiter_count > 0) || !request_client_gone(r);
}

static void on_dropped(struct limiter_ticket *t)
{
    struct request *r = t->owner;
    r->server->stats.abandoned_in_queue++;
    fail_flight(r, PROXY_ERROR_CLIENT_CLOSED, NULL, NULL, NULL);
}

const struct limiter_callbacks *forward_limiter_callbacks(void)
{
    static const struct limiter_callbacks callbacks = {
        .granted = on_granted, .refused = on_refused, .alive = on_alive, .dropped = on_dropped};
    return &callbacks;
}

#define SWEEP_MAX 1024

struct sweep {
    struct limiter_ticket *gone[SWEEP_MAX];
    size_t count;
};

static void collect_departed(struct limiter_ticket *t, void *arg)
{
    struct sweep *sweep = arg;
    /* Background calls (task polls) carry callbacks of their own: no client. */
    if (t->callbacks == NULL && sweep->count < SWEEP_MAX && !on_alive(t))
        sweep->gone[sweep->count++] = t;
}

void forward_sweep_departed(struct server *srv)
{
    /* Collected first: the queue must not change while it is walked. At
     * most SWEEP_MAX a sweep; the rest go at the next, or at dequeue. */
    struct sweep *sweep = calloc(1, sizeof *sweep);
    if (sweep == NULL)
        abort();
    limiter_foreach_queued(srv->limiter, collect_departed, sweep);
    for (size_t i = 0; i < sweep->count; i++) {
        limiter_withdraw(srv->limiter, sweep->gone[i]);
        on_dropped(sweep->gone[i]);
    }
    free(sweep);
    if (srv->cfg->finish_abandoned_calls)
        return; /* paid for either way: let it finish, and cache it */
    for (struct request *r = srv->live, *next; r != NULL; r = next) {
        next = r->next;
        /* A submission (hooks) runs to its end: the task may exist upstream already. */
        if (r->transfer == NULL || r->hooks != NULL ||
            (r->flight != NULL && r->flight->waiter_count > 0) || !request_client_gone(r))
            continue;
        upstream_cancel(r->transfer);
        r->transfer = NULL;
        limiter_release(srv->limiter, &r->ticket);
        srv->stats.abandoned_in_flight++;
        fail_flight(r, PROXY_ERROR_CLIENT_CLOSED, NULL, NULL, NULL);
    }
}

/* Reads the concurrency limit the upstream advertises (both spellings,
 * cloro-api.md section 2) and counts its 429s. */
static void observe_limits(struct server *srv, const struct upstream_result *res)
{
    if (res->outcome != UPSTREAM_OK)
        return;
    if (res->status == 429)
        srv->stats.upstream_429++;
    for (size_t i = 0; i < res->header_count; i++) {
        const char *name = res->headers[i].name;
        if (strcasecmp(name, "X-Concurrency-Limit") != 0 &&
            strcasecmp(name, "X-Concurrent-Limit") != 0)
            continue;
        long advertised = strtol(res->headers[i].value, NULL, 10);
        int previous = limiter_learn_limit(srv->limiter, (int)advertised);
        if (previous > 0)
            log_info("limit_changed", "from=%d to=%ld max_concurrency=%lld source=upstream",
                     previous,
                     advertised < srv->cfg->max_concurrency ? advertised
                                                            : (long)srv->cfg->max_concurrency,
                     (long long)srv->cfg->max_concurrency);
        return;
    }
}

static const char *upstream_error_code(const struct upstream_result *res, char *out, size_t size)
{
    size_t len = evbuffer_get_length(res->body);
    json_t *doc =
        len > 0 ? json_loadb((const char *)evbuffer_pullup(res->body, -1), len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    snprintf(out, size, "%s", code != NULL ? code : "");
    json_decref(doc);
    return out[0] != '\0' ? out : NULL;
}

/* The delay before the next attempt, or -1 when this answer stands. */
static int64_t retry_delay(struct request *r, const struct upstream_result *res)
{
    const struct config *cfg = r->server->cfg;
    struct retry_policy policy = {.max_retries = (int)cfg->max_retries,
                                  .base_delay_ms = cfg->retry_base_delay_ms,
                                  .max_delay_ms = cfg->retry_max_delay_ms};
    char code[64];
    struct retry_attempt a = {
        .kind = !is_submission(r)          ? RETRY_CALL_SAFE
                : submission_idempotent(r) ? RETRY_CALL_IDEMPOTENT_SUBMISSION
                                           : RETRY_CALL_SUBMISSION,
        .failure = res->outcome == UPSTREAM_OK            ? RETRY_FAILURE_NONE
                   : res->outcome == UPSTREAM_UNREACHABLE ? RETRY_FAILURE_CONNECT
                   : res->outcome == UPSTREAM_TIMEOUT     ? RETRY_FAILURE_TIMEOUT
                                                          : RETRY_FAILURE_BROKEN,
        .status = (int)res->status,
        .error_code = NULL,
        .retry_after_ms = -1,
        .retries_done = r->retries,
        .remaining_ms = (r->deadline_us - clock_mono_us()) / 1000,
    };
    if (res->outcome == UPSTREAM_TOO_LARGE)
        return -1;
    if (res->outcome == UPSTREAM_OK) {
        if (res->status < 429 || (res->status > 429 && res->status < 502))
            return -1; /* the common case: no parsing */
        if (res->status == 429)
            a.error_code = upstream_error_code(res, code, sizeof code);
        for (size_t i = 0; i < res->header_count; i++)
            if (strcasecmp(res->headers[i].name, "Retry-After") == 0)
                a.retry_after_ms =
                    retry_parse_retry_after_ms(res->headers[i].value, clock_wall_ms());
    }
    uint64_t bits = ids_random(&r->server->ids);
    return retry_next_delay_ms(&policy, &a, (double)(bits >> 11) / 9007199254740992.0);
}

static void on_retry_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct request *r = arg;
    log_debug("retry", "rid=%s attempt=%d", r->id, r->retries + 1);
    admit(r);
}

static void schedule_retry(struct request *r, int64_t delay_ms)
{
    if (r->retry_timer == NULL)
        r->retry_timer = evtimer_new(r->server->base, on_retry_timer, r);
    if (r->retry_timer == NULL)
        abort();
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(r->retry_timer, &tv);
}

/* Answers from the cache when it may; returns true when it did. */
static bool answer_from_cache(struct request *r)
{
    struct server *srv = r->server;
    const struct cache_directives *d = &r->directives;
    if (d->no_cache)
        return false;
    struct cache_entry e;
    if (!cache_io_lookup(srv, &r->key, &e))
        return false;
    int64_t now = clock_wall_ms();
    enum cache_verdict verdict = cache_policy_judge(d, e.stored_at_ms, e.expires_at_ms, now);
    bool served = verdict != CACHE_VERDICT_MISS;
    if (served) {
        struct answer_context ctx = {
            .outcome = verdict == CACHE_VERDICT_FRESH ? CACHE_OUTCOME_HIT : CACHE_OUTCOME_STALE};
        if (touches_add(srv->touches, r->key.bytes, now))
            touches_flush(srv->touches, srv->writer);
        answer_send(r, &e, &ctx, NULL);
    }
    cache_entry_free(&e);
    return served;
}

/* Offline: whatever the store holds answers, fresh (HIT) or expired
 * (STALE), whatever the client's directives say; nothing else does. */
static void answer_offline(struct request *r)
{
    struct server *srv = r->server;
    struct cache_entry e;
    if (!r->keyed || !cache_io_lookup(srv, &r->key, &e)) {
        forward_reply_offline(r, r->keyed ? &r->key : NULL);
        return;
    }
    int64_t now = clock_wall_ms();
    struct answer_context ctx = {.outcome = e.expires_at_ms == 0 || now < e.expires_at_ms
                                                ? CACHE_OUTCOME_HIT
                                                : CACHE_OUTCOME_STALE};
    if (touches_add(srv->touches, r->key.bytes, now))
        touches_flush(srv->touches, srv->writer);
    answer_send(r, &e, &ctx, NULL);
    cache_entry_free(&e);
}

bool forward_check_request(struct request *r)
{
    const struct config *cfg = r->server->cfg;
    size_t body_len = evbuffer_get_length(request_body(r));
    if (body_len > cfg->max_body_bytes) {
        json_t *details = json_pack("{s:I, s:I}", "limit", (json_int_t)cfg->max_body_bytes,
                                    "received", (json_int_t)body_len);
        reply_error(r, PROXY_ERROR_PAYLOAD_TOO_LARGE, NULL, details);
        return false;
    }
    r->deadline_us = r->started_us + cfg->upstream_timeout_ms * 1000;
    const char *priority = request_header(r, "X-Priority");
    if (priority != NULL) {
        char *end;
        long p = strtol(priority, &end, 10);
        if (end == priority || *end != '\0' || p < 1 || p > 10) {
            json_t *details = json_pack("[{s:s, s:s}]", "field", "X-Priority", "message",
                                        "must be a whole number from 1 to 10");
            reply_error(r, PROXY_ERROR_VALIDATION, NULL, details);
            return false;
        }
        r->priority = (int)p;
    }
    const char *mode = request_header(r, "X-Proxy-Upstream-Mode");
    if (mode != NULL && strcasecmp(mode, "sync") != 0 && strcasecmp(mode, "async") != 0) {
        json_t *details = json_pack("[{s:s, s:s}]", "field", "X-Proxy-Upstream-Mode", "message",
                                    "must be sync or async");
        reply_error(r, PROXY_ERROR_VALIDATION, NULL, details);
        return false;
    }
    const char *sample = request_header(r, "X-Cache-Sample");
    if (sample != NULL) {
        /* Digits only: no sign, no blanks, no leading zero. */
        char *end;
        unsigned long k = strtoul(sample, &end, 10);
        if (sample[0] < '1' || sample[0] > '9' || *end != '\0' ||
            k > (unsigned long)cfg->max_samples) {
            char message[96];
            snprintf(message, sizeof message, "must be a whole number from 1 to %lld (max_samples)",
                     (long long)cfg->max_samples);
            json_t *details =
                json_pack("[{s:s, s:s}]", "field", "X-Cache-Sample", "message", message);
            reply_error(r, PROXY_ERROR_VALIDATION, NULL, details);
            return false;
        }
        r->sample = (uint32_t)k;
    }
    return true;
}

void forward_upstream(struct request *r)
{
    if (r->server->mode == PROXY_MODE_OFFLINE) {
        fail_offline(r);
        return;
    }
    admit(r);
}

/* A member past its daily credit budget makes no paid call (budget.h). */
static bool within_budget(struct request *r)
{
    return !takes_slot(r) || budget_admit(r);
}

void forward_request(struct request *r)
{
    struct server *srv = r->server;
    if (!forward_check_request(r))
        return;
    struct evbuffer *body = request_body(r);
    size_t body_len = evbuffer_get_length(body);
    bool offline = srv->mode == PROXY_MODE_OFFLINE;
    if (srv->store == NULL) {
        r->cache_outcome = CACHE_OUTCOME_NONE;
        if (offline)
            forward_reply_offline(r, NULL); /* no cache: nothing can answer */
        else if (within_budget(r))
            admit(r);
        return;
    }
    const void *bytes = body_len > 0 ? (const void *)evbuffer_pullup(body, -1) : "";
    /* Async calls reach here only with async_tasks off: passed through, since a
     * submission's answer is a task, never the answer its key names. */
    r->keyed = strncmp(r->path, "/v1/async/", 10) != 0 &&
               cache_key_compute(r->method, r->path, bytes, body_len, &r->key) == CACHE_KEY_OK;
    if (r->keyed)
        cache_key_sample(&r->key, r->sample);
    cache_policy_parse(request_header(r, "Cache-Control"), &r->directives);
    if (offline) {
        answer_offline(r);
        return;
    }
    /* Refresh mode asks upstream as no-cache does, but for a client that
     * asked never to go there. */
    if (srv->mode == PROXY_MODE_REFRESH && !r->directives.only_if_cached)
        r->directives.no_cache = true;
    if (!r->keyed || r->directives.no_store) {
        /* Not a cacheable call (or the client asked for no storing): pass it through. */
        r->keyed = false;
        r->cache_outcome = CACHE_OUTCOME_BYPASS;
        if (within_budget(r))
            admit(r);
        return;
    }
    if (answer_from_cache(r))
        return;
    if (r->directives.only_if_cached) {
        r->cache_outcome = CACHE_OUTCOME_MISS;
        srv->stats.cache_by_outcome[CACHE_OUTCOME_MISS]++;
        json_t *details = json_pack("{s:s}", "key", r->key.hex);
        reply_error(r, PROXY_ERROR_CACHE_MISS, NULL, details);
        return;
    }
    r->cache_outcome = r->directives.no_cache ? CACHE_OUTCOME_REFRESH : CACHE_OUTCOME_MISS;
    struct flight *f = coalescer_find(srv->coalescer, r->key.bytes);
    if (f != NULL) {
        r->cache_outcome = CACHE_OUTCOME_COALESCED;
        coalescer_join(srv->coalescer, f, r);
        return;
    }
    if (!within_budget(r))
        return;
    r->flight = coalescer_begin(srv->coalescer, r->key.bytes, r);
    if (credit_saver_wanted(r)) {
        credit_saver_ask(tasks_credit_saver(srv->tasks), r);
        return;
    }
    admit(r);
}
