/* credit_saver.c: sync calls asked as async tasks (credit_saver.h).
 *
 * A call in async mode that misses the cache either waits on the task open
 * upstream for its key (created by the saver or by an async client), or
 * creates one: a task of the matching taskType with the call's body as its
 * payload. The creation goes upstream through the forward pipeline (limits,
 * retries) carried by the call itself, as POST /v1/async/task, or, with a
 * batch window, by the first call of the window as one POST
 * /v1/async/task/batch for every task of it. Then the task is followed like
 * any other (task_follow.c); when it ends, tasks.c calls
 * credit_saver_settle, which answers every call waiting on it in the sync
 * shape: the result as {"success":true,"result":...} with X-Request-ID of
 * the creation and X-Credits-Charged of the task, or the error the sync
 * endpoint would have given, in the envelope. */
#include "credit_saver.h"
#include "clock.h"
#include "config.h"
#include "entry.h"
#include "forward.h"
#include "key.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "tasks.h"
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BATCH_MAX 500

struct credit_saver {
    struct tasks *ts;
    struct server *srv;
    size_t open;                        /* saver tasks open upstream (in creation or followed) */
    struct request *queue, *queue_tail; /* calls waiting for an open place, via next_awaiting */
    size_t queued;
    struct task *pending, *pending_tail; /* tasks of the batch window, via next_pending */
    size_t pending_count;
    struct event *window;
    uint64_t asked, created, shared, answered, failed, timed_out, waited_turn, batches;
    uint64_t credits_saved;
};

struct saver_batch {
    struct credit_saver *cs;
    struct task **tasks;
    size_t count;
};

bool credit_saver_wanted(const struct request *r)
{
    const struct server *srv = r->server;
    if (srv->tasks == NULL || !r->keyed || strcmp(r->method, "POST") != 0 ||
        strncmp(r->path, "/v1/monitor/", 12) != 0 || cache_key_task_type(r->key.provider) == NULL)
        return false;
    const char *mode = request_header(r, "X-Proxy-Upstream-Mode");
    if (mode != NULL)
        return strcasecmp(mode, "async") == 0;
    return config_upstream_async(srv->cfg, r->key.provider);
}

/* --- waiting --------------------------------------------------------------- */

static void unlink_awaiting(struct request **head, struct request *r)
{
    for (struct request **p = head; *p != NULL; p = &(*p)->next_awaiting) {
        if (*p == r) {
            *p = r->next_awaiting;
            r->next_awaiting = NULL;
            return;
        }
    }
}

static void leave_queue(struct credit_saver *cs, struct request *r)
{
    struct request *prev = NULL;
    for (struct request *q = cs->queue; q != NULL; prev = q, q = q->next_awaiting) {
        if (q != r)
            continue;
        if (prev != NULL)
            prev->next_awaiting = r->next_awaiting;
        else
            cs->queue = r->next_awaiting;
        if (cs->queue_tail == r)
            cs->queue_tail = prev;
        r->next_awaiting = NULL;
        cs->queued--;
        return;
    }
}

static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct request *r = arg;
    struct credit_saver *cs = tasks_credit_saver(r->server->tasks);
    if (r->hooks != NULL) {
        /* It carries a creation: that call has its own timeout. */
        struct timeval second = {.tv_sec = 1};
        evtimer_add(r->deadline_timer, &second);
        return;
    }
    if (r->awaited != NULL)
        unlink_awaiting(&r->awaited->awaiting, r);
    else
        leave_queue(cs, r);
    r->awaited = NULL;
    cs->timed_out++;
    char message[200];
    snprintf(message, sizeof message,
             "The async task did not end within upstream_timeout (%lld ms); its answer is "
             "cached when it lands",
             (long long)r->server->cfg->upstream_timeout_ms);
    forward_fail(r, PROXY_ERROR_UPSTREAM_TIMEOUT, message, NULL);
}

static void arm_deadline(struct request *r)
{
    if (r->deadline_timer == NULL)
        r->deadline_timer = evtimer_new(r->server->base, on_deadline, r);
    if (r->deadline_timer == NULL)
        abort();
    int64_t left_us = r->deadline_us - clock_mono_us();
    if (left_us < 1000)
        left_us = 1000;
    struct timeval tv = {.tv_sec = left_us / 1000000, .tv_usec = left_us % 1000000};
    evtimer_add(r->deadline_timer, &tv);
}

static void await(struct task *t, struct request *r)
{
    r->awaited = t;
    r->next_awaiting = t->awaiting;
    t->awaiting = r;
    arm_deadline(r);
}

/* --- answers ----------------------------------------------------------------- */

static int status_of_code(const char *code)
{
    static const struct {
        const char *code;
        int status;
    } map[] = {{"VALIDATION_ERROR", 400},           {"MISSING_API_KEY", 401},
               {"INVALID_API_KEY_FORMAT", 401},     {"INVALID_OR_EXPIRED_API_KEY", 401},
               {"INSUFFICIENT_CREDITS", 403},       {"RESOURCE_NOT_FOUND", 404},
               {"RESOURCE_ALREADY_EXISTS", 409},    {"RATE_LIMIT_EXCEEDED", 429},
               {"CONCURRENCY_LIMIT_EXCEEDED", 429}, {"QUEUE_LIMIT_EXCEEDED", 429},
               {"EXTERNAL_SERVICE_ERROR", 502},     {"SERVICE_UNAVAILABLE", 503}};
    for (size_t i = 0; code != NULL && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].code, code) == 0)
            return map[i].status;
    return 500;
}

/* cloro's envelope around an error object, as the sync endpoint gives it:
 * a batch item's {errors:[...]} details become the array a sync 400 has. */
static json_t *sync_envelope(const json_t *error)
{
    char ts[40];
    clock_format_iso8601(ts, sizeof ts, clock_wall_ms());
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    json_t *out = json_pack("{s:s, s:s}", "code", code != NULL ? code : "INTERNAL_SERVER_ERROR",
                            "message", message != NULL ? message : "Internal server error");
    const json_t *details = json_object_get(error, "details");
    const json_t *errors = json_object_get(details, "errors");
    if (json_is_array(errors))
        details = errors;
    if (json_is_array(details)) {
        /* The task's fields are the payload's: "payload.country" is the
         * sync call's "country". */
        json_t *fields = json_deep_copy(details);
        size_t i;
        json_t *item;
        json_array_foreach(fields, i, item)
        {
            const char *field = json_string_value(json_object_get(item, "field"));
            if (field != NULL && strncmp(field, "payload.", 8) == 0)
                json_object_set_new(item, "field", json_string(field + 8));
        }
        json_object_set_new(out, "details", fields);
    } else if (details != NULL && !json_is_null(details)) {
        json_object_set(out, "details", (json_t *)details);
    }
    const json_t *stamp = json_object_get(error, "timestamp");
    json_object_set_new(out, "timestamp",
                        json_is_string(stamp) ? json_copy((json_t *)stamp) : json_string(ts));
    return json_pack("{s:b, s:o}", "success", 0, "error", out);
}

/* The creation of t failed: what the calls waiting on it are answered. */
static void set_failure(struct task *t, int status, json_t *body)
{
    json_decref(t->failure_body);
    t->failure_status = status == 422 ? 400 : status; /* legacy async validation status */
    t->failure_body = body;
}

static void set_failure_envelope(struct task *t, enum proxy_error err, const char *message,
                                 json_t *details)
{
    set_failure(t, reply_error_status(err), reply_envelope(err, message, details));
}

/* The sync answer t stands for. Fills e, borrowing from text and headers. */
static void sync_answer(const struct task *t, char **text, struct cache_header *headers,
                        char *credits, size_t credits_size, struct cache_entry *e)
{
    memset(e, 0, sizeof *e);
    e->stored_at_ms = clock_wall_ms();
    e->provider = (char *)(t->keyed ? t->key.provider : "");
    const char *rid = json_string_value(json_object_get(t->rec, "rid"));
    e->request_id = (char *)(rid != NULL ? rid : "");
    json_t *doc;
    const char *status =
        json_string_value(json_object_get(json_object_get(t->rec, "task"), "status"));
    if (t->failure_body != NULL) {
        e->status = t->failure_status;
        doc = json_incref(t->failure_body);
    } else if (status != NULL && strcmp(status, "COMPLETED") == 0) {
        e->status = 200;
        doc = json_pack("{s:b, s:O}", "success", 1, "result", json_object_get(t->rec, "response"));
        e->credits_charged = json_integer_value(
            json_object_get(json_object_get(t->rec, "credits"), "creditsCharged"));
    } else if (status != NULL && strcmp(status, "FAILED") == 0) {
        const json_t *error = json_object_get(json_object_get(t->rec, "response"), "error");
        e->status = status_of_code(json_string_value(json_object_get(error, "code")));
        doc = sync_envelope(error);
    } else {
        e->status = reply_error_status(PROXY_ERROR_UPSTREAM_UNAVAILABLE);
        doc = reply_envelope(PROXY_ERROR_UPSTREAM_UNAVAILABLE,
                             "The async task was deleted upstream before it ended", NULL);
    }
    *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (*text == NULL)
        abort();
    snprintf(credits, credits_size, "%lld", (long long)e->credits_charged);
    size_t n = 0;
    headers[n++] = (struct cache_header){(char *)"Content-Type", (char *)"application/json"};
    if (rid != NULL)
        headers[n++] = (struct cache_header){(char *)"X-Request-ID", (char *)rid};
    if (e->status == 200)
        headers[n++] = (struct cache_header){(char *)"X-Credits-Charged", credits};
    e->headers = headers;
    e->header_count = n;
    e->body = (unsigned char *)*text;
    e->body_len = strlen(*text);
}

static void create(struct credit_saver *cs, struct request *r);

/* Starts queued calls while places are free. */
static void take_turns(struct credit_saver *cs)
{
    while (cs->queue != NULL && cs->open < (size_t)cs->srv->cfg->max_open_tasks) {
        struct request *r = cs->queue;
        cs->queue = r->next_awaiting;
        if (cs->queue == NULL)
            cs->queue_tail = NULL;
        r->next_awaiting = NULL;
        cs->queued--;
        struct task *t = tasks_open_for_key(cs->ts, r->key.bytes);
        if (t != NULL) {
            cs->shared++;
            await(t, r);
        } else {
            create(cs, r);
        }
    }
}

void credit_saver_settle(struct credit_saver *cs, struct task *t)
{
    if (t->awaiting != NULL) {
        char *text = NULL;
        struct cache_header headers[3];
        char credits[32];
        struct cache_entry e;
        sync_answer(t, &text, headers, credits, sizeof credits, &e);
        bool completed = e.status == 200;
        char saved[32];
        snprintf(saved, sizeof saved, "%lld", (long long)cs->srv->cfg->sync_surcharge);
        for (struct request *w = t->awaiting, *next; w != NULL; w = next) {
            next = w->next_awaiting;
            w->next_awaiting = NULL;
            w->awaited = NULL;
            if (w->deadline_timer != NULL)
                evtimer_del(w->deadline_timer);
            struct answer_context ctx = {.outcome = w->asked_async ? CACHE_OUTCOME_MISS
                                                                   : CACHE_OUTCOME_COALESCED,
                                         .stored = completed && t->keyed && t->store_result,
                                         .upstream_status = e.status};
            request_add_header(w, "X-Proxy-Upstream-Mode", "async");
            if (w->asked_async && completed) {
                request_add_header(w, "X-Credits-Saved", saved);
                request_add_header(w, "X-Credits-Saved-By", "async");
                cs->credits_saved += (uint64_t)cs->srv->cfg->sync_surcharge;
            }
            if (completed)
                cs->answered++;
            else
                cs->failed++;
            forward_settle(w, &e, &ctx);
        }
        t->awaiting = NULL;
        free(text);
    }
    if (t->saver) {
        t->saver = false;
        cs->open--;
        take_turns(cs);
    }
}

/* --- creation ---------------------------------------------------------------- */

/* The creation of t failed with the whole answer res (doc parsed from it). */
static void fail_with_result(struct credit_saver *cs, struct task *t,
                             const struct upstream_result *res, json_t *doc)
{
    if (res->outcome != UPSTREAM_OK) {
        json_t *details = json_pack("{s:s}", "reason", res->error != NULL ? res->error : "");
        enum proxy_error err = res->outcome == UPSTREAM_TIMEOUT ? PROXY_ERROR_UPSTREAM_TIMEOUT
                                                                : PROXY_ERROR_UPSTREAM_UNAVAILABLE;
        set_failure_envelope(t, err, NULL, details);
    } else if (json_is_object(json_object_get(doc, "error"))) {
        set_failure(t, (int)res->status, sync_envelope(json_object_get(doc, "error")));
    } else {
        set_failure_envelope(t, PROXY_ERROR_UPSTREAM_UNAVAILABLE,
                             "The cloro API's answer to the task creation was not understood",
                             NULL);
    }
    json_t *error = json_object_get(json_object_get(t->failure_body, "error"), "code") != NULL
                        ? json_incref(json_object_get(t->failure_body, "error"))
                        : NULL;
    tasks_creation_failed(cs->ts, t, error);
}

static void on_created(struct request *r, const struct upstream_result *res)
{
    struct task *t = r->hook_arg;
    struct credit_saver *cs = tasks_credit_saver(t->tasks);
    r->hooks = NULL;
    r->hook_arg = NULL;
    json_t *doc = upstream_result_json(res);
    const json_t *summary = json_object_get(doc, "task");
    if (res->outcome == UPSTREAM_OK && res->status == 200 && json_is_object(summary))
        tasks_created(cs->ts, t, summary, json_object_get(doc, "credits"),
                      upstream_result_header(res, "X-Request-ID"));
    else
        fail_with_result(cs, t, res, doc);
    json_decref(doc);
}

/* forward.c answers r (and its flight) right after: r leaves t first. */
static void on_create_failed(struct request *r)
{
    struct task *t = r->hook_arg;
    struct credit_saver *cs = tasks_credit_saver(t->tasks);
    r->hooks = NULL;
    r->hook_arg = NULL;
    unlink_awaiting(&t->awaiting, r);
    r->awaited = NULL;
    set_failure_envelope(t, PROXY_ERROR_UPSTREAM_UNAVAILABLE,
                         "The async task could not be created upstream", NULL);
    tasks_creation_failed(cs->ts, t, NULL);
}

static const struct forward_hooks create_hooks = {.answered = on_created,
                                                  .failed = on_create_failed};

static void on_batch_created(struct request *r, const struct upstream_result *res)
{
    struct saver_batch *b = r->hook_arg;
    struct credit_saver *cs = b->cs;
    r->hooks = NULL;
    r->hook_arg = NULL;
    json_t *doc = upstream_result_json(res);
    const json_t *results = json_object_get(doc, "results");
    const char *rid = upstream_result_header(res, "X-Request-ID");
    bool whole = res->outcome == UPSTREAM_OK && res->status == 200 && json_is_array(results);
    for (size_t j = 0; j < b->count; j++) {
        struct task *t = b->tasks[j];
        json_t *item = whole ? json_array_get(results, j) : NULL;
        const json_t *summary = json_object_get(item, "task");
        if (json_is_true(json_object_get(item, "success")) && json_is_object(summary)) {
            tasks_created(cs->ts, t, summary, json_object_get(item, "credits"), rid);
        } else if (json_is_object(json_object_get(item, "error"))) {
            const json_t *error = json_object_get(item, "error");
            set_failure(t, status_of_code(json_string_value(json_object_get(error, "code"))),
                        sync_envelope(error));
            tasks_creation_failed(cs->ts, t, json_incref((json_t *)error));
        } else {
            fail_with_result(cs, t, res, whole ? NULL : doc);
        }
    }
    json_decref(doc);
    free(b->tasks);
    free(b);
}

static void on_batch_failed(struct request *r)
{
    struct saver_batch *b = r->hook_arg;
    r->hooks = NULL;
    r->hook_arg = NULL;
    if (r->awaited != NULL)
        unlink_awaiting(&r->awaited->awaiting, r);
    r->awaited = NULL;
    for (size_t j = 0; j < b->count; j++) {
        set_failure_envelope(b->tasks[j], PROXY_ERROR_UPSTREAM_UNAVAILABLE,
                             "The async tasks could not be created upstream", NULL);
        tasks_creation_failed(b->cs->ts, b->tasks[j], NULL);
    }
    free(b->tasks);
    free(b);
}

static const struct forward_hooks batch_hooks = {.answered = on_batch_created,
                                                 .failed = on_batch_failed};

/* Sends the window's tasks in one batch, carried by one of their calls. */
static void flush_window(struct credit_saver *cs)
{
    if (cs->window != NULL)
        evtimer_del(cs->window);
    if (cs->pending == NULL)
        return;
    struct saver_batch *b = calloc(1, sizeof *b);
    b->tasks = calloc(cs->pending_count, sizeof *b->tasks);
    if (b == NULL || b->tasks == NULL)
        abort();
    b->cs = cs;
    struct request *carrier = NULL;
    json_t *items = json_array();
    for (struct task *t = cs->pending, *next; t != NULL; t = next) {
        next = t->next_pending;
        t->next_pending = NULL;
        if (t->awaiting == NULL) {
            /* Every call on it gave up before it was sent: nobody pays. */
            set_failure_envelope(t, PROXY_ERROR_CLIENT_CLOSED, NULL, NULL);
            tasks_creation_failed(cs->ts, t, NULL);
            continue;
        }
        if (carrier == NULL)
            carrier = t->awaiting;
        b->tasks[b->count++] = t;
        json_array_append(items, t->saver_item);
    }
    cs->pending = cs->pending_tail = NULL;
    cs->pending_count = 0;
    if (b->count == 0) {
        json_decref(items);
        free(b->tasks);
        free(b);
        return;
    }
    cs->batches++;
    free(carrier->upstream_body);
    carrier->upstream_body = json_dumps(items, JSON_COMPACT);
    json_decref(items);
    if (carrier->upstream_body == NULL)
        abort();
    carrier->upstream_body_len = strlen(carrier->upstream_body);
    carrier->upstream_path = "/v1/async/task/batch";
    carrier->hooks = &batch_hooks;
    carrier->hook_arg = b;
    forward_upstream(carrier);
}

static void on_window(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    flush_window(arg);
}

static void create(struct credit_saver *cs, struct request *r)
{
    struct server *srv = cs->srv;
    struct evbuffer *body = request_body(r);
    size_t len = evbuffer_get_length(body);
    json_t *payload = json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, NULL);
    char idem[64];
    uint64_t bits = ids_random(&srv->ids);
    snprintf(idem, sizeof idem, "cloro-proxy-%.16s-%08llx", r->key.hex,
             (unsigned long long)(bits & 0xffffffffu));
    json_t *item =
        json_pack("{s:s, s:o, s:s}", "taskType", cache_key_task_type(r->key.provider), "payload",
                  payload != NULL ? payload : json_object(), "idempotencyKey", idem);
    struct task *t = tasks_begin_upstream(cs->ts, item, &r->key, !r->directives.no_store);
    t->saver = true;
    t->saver_item = item;
    if (srv->authorization == NULL && request_header(r, "Authorization") != NULL) {
        t->authorization = strdup(request_header(r, "Authorization"));
        if (t->authorization == NULL)
            abort();
    }
    cs->open++;
    cs->created++;
    r->asked_async = true;
    await(t, r);
    if (srv->cfg->async_batch_window_ms > 0) {
        if (cs->pending_tail != NULL)
            cs->pending_tail->next_pending = t;
        else
            cs->pending = t;
        cs->pending_tail = t;
        cs->pending_count++;
        if (cs->pending_count >= BATCH_MAX) {
            flush_window(cs);
        } else if (cs->pending_count == 1) {
            int64_t ms = srv->cfg->async_batch_window_ms;
            struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
            evtimer_add(cs->window, &tv);
        }
        return;
    }
    r->upstream_body = json_dumps(item, JSON_COMPACT);
    if (r->upstream_body == NULL)
        abort();
    r->upstream_body_len = strlen(r->upstream_body);
    r->upstream_path = "/v1/async/task";
    r->hooks = &create_hooks;
    r->hook_arg = t;
    forward_upstream(r);
}

void credit_saver_ask(struct credit_saver *cs, struct request *r)
{
    cs->asked++;
    struct task *t = tasks_open_for_key(cs->ts, r->key.bytes);
    if (t != NULL) {
        cs->shared++;
        await(t, r);
        return;
    }
    if (cs->open >= (size_t)cs->srv->cfg->max_open_tasks) {
        cs->waited_turn++;
        if (cs->queue_tail != NULL)
            cs->queue_tail->next_awaiting = r;
        else
            cs->queue = r;
        cs->queue_tail = r;
        cs->queued++;
        arm_deadline(r);
        return;
    }
    create(cs, r);
}

struct credit_saver *credit_saver_new(struct tasks *ts)
{
    struct credit_saver *cs = calloc(1, sizeof *cs);
    if (cs == NULL)
        abort();
    cs->ts = ts;
    cs->srv = tasks_server(ts);
    cs->window = evtimer_new(cs->srv->base, on_window, cs);
    if (cs->window == NULL)
        abort();
    return cs;
}

void credit_saver_free(struct credit_saver *cs)
{
    if (cs == NULL)
        return;
    event_free(cs->window);
    free(cs);
}

json_t *credit_saver_stats(const struct credit_saver *cs)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "asked",
                     (json_int_t)cs->asked, "created", (json_int_t)cs->created, "shared",
                     (json_int_t)cs->shared, "answered", (json_int_t)cs->answered, "failed",
                     (json_int_t)cs->failed, "timed_out", (json_int_t)cs->timed_out, "waited_turn",
                     (json_int_t)cs->waited_turn, "batches", (json_int_t)cs->batches, "open",
                     (json_int_t)cs->open, "queued", (json_int_t)cs->queued, "credits_saved",
                     (json_int_t)cs->credits_saved);
}
