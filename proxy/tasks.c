/* tasks.c: the task records and their life (tasks.h): creation, the end of
 * an upstream task and what it settles (its attached tasks, the cache, the
 * webhooks), persistence through the cache writer, and the reload of live
 * tasks at start-up. Submissions are task_submit.c's; polling is
 * task_follow.c's.
 *
 * A record is a JSON object, stored as compact text under
 * cache_task_key("id", <task id>) in the store's "tasks" database, open while
 * the task has work left:
 *   task, credits        what cloro's GET answers (the client's view)
 *   response             once COMPLETED or FAILED
 *   origin               "upstream" | "cache" | "attached"
 *   key, provider        the content key (hex) and its provider, when keyed
 *   sample, base         the key's sample (X-Cache-Sample K >= 2) and the key of
 *                        sample 1 (hex), when it is one
 *   store                false: the result is not put in the cache
 *   request              upstream: the canonical request text (key.h) its
 *                        result is stored with, for `export --match`
 *   leader               attached: the id of the upstream task followed
 *   rid                  X-Request-ID of the upstream call that created it
 *   hook                 {url, mode: "proxy"|"upstream", attempts, delivered,
 *                         deliveredAt, nextMs}
 *   endedMs              wall ms of the first save as COMPLETED or FAILED: the
 *                        record is pruned task_retention after it
 *                        (task_retention.h)
 * An idempotencyKey is indexed under cache_task_key("idem", key) -> task id. */
#include "tasks.h"
#include "answer.h"
#include "cache_io.h"
#include "clock.h"
#include "config.h"
#include "credit_saver.h"
#include "entry.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "store.h"
#include "task_follow.h"
#include "task_retention.h"
#include "task_submit.h"
#include "webhooks.h"
#include "writer.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOKS_MAX_PENDING 100000

struct tasks {
    struct server *srv;
    json_t *by_id;    /* id -> integer(struct task *) of live tasks */
    json_t *by_key;   /* content key hex -> integer(struct task *) of open upstream tasks */
    json_t *reserved; /* idempotencyKeys of creations in flight -> true */
    json_t *gone;     /* ids deleted here: the store may hold them until the writer commits */
    struct webhooks *webhooks;
    struct credit_saver *saver;
    struct tasks_counters counters;
    int64_t last_prune_ms; /* wall time the last task_retention prune started; 0: none */
};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        abort();
    return p;
}

static json_t *ptr_value(struct task *t)
{
    return json_integer((json_int_t)(intptr_t)t);
}

static struct task *ptr_of(const json_t *v)
{
    return v != NULL ? (struct task *)(intptr_t)json_integer_value(v) : NULL;
}

struct server *tasks_server(struct tasks *ts)
{
    return ts->srv;
}

struct credit_saver *tasks_credit_saver(struct tasks *ts)
{
    return ts->saver;
}

struct tasks_counters *tasks_counters(struct tasks *ts)
{
    return &ts->counters;
}

/* --- records ------------------------------------------------------------ */

static const char *rec_status(const json_t *rec)
{
    const char *s = json_string_value(json_object_get(json_object_get(rec, "task"), "status"));
    return s != NULL ? s : "QUEUED";
}

bool tasks_record_terminal(const json_t *rec)
{
    const char *s = rec_status(rec);
    return strcmp(s, "COMPLETED") == 0 || strcmp(s, "FAILED") == 0;
}

static void set_status(json_t *rec, const char *status)
{
    json_object_set_new(json_object_get(rec, "task"), "status", json_string(status));
}

static bool hook_pending(const struct tasks *ts, const json_t *rec)
{
    const json_t *hook = json_object_get(rec, "hook");
    if (!json_is_object(hook))
        return false;
    const char *mode = json_string_value(json_object_get(hook, "mode"));
    return mode != NULL && strcmp(mode, "proxy") == 0 &&
           !json_is_true(json_object_get(hook, "delivered")) &&
           json_integer_value(json_object_get(hook, "attempts")) <
               ts->srv->cfg->webhook_max_attempts;
}

/* Work left: following upstream, or a webhook to deliver once it ends. */
static bool has_work(const struct tasks *ts, const struct task *t)
{
    return !tasks_record_terminal(t->rec) || hook_pending(ts, t->rec);
}

/* A record is its JSON text; a task answered from the cache appends a NUL
 * and the cached answer's body as it was stored ({"success":true,
 * "result":...}), whose result is the task's response: copied, never
 * parsed or printed again, since a 500-task batch of hits makes 500. */
static void save(struct tasks *ts, struct task *t)
{
    if (t->id[0] == '\0')
        return; /* in creation: nothing to keep yet */
    if (tasks_record_terminal(t->rec) && json_object_get(t->rec, "endedMs") == NULL)
        json_object_set_new(t->rec, "endedMs", json_integer((json_int_t)clock_wall_ms()));
    json_t *meta = t->rec;
    if (t->raw_answer != NULL && json_object_get(t->rec, "response") != NULL) {
        meta = json_copy(t->rec); /* the response goes as the raw answer */
        json_object_del(meta, "response");
    } else {
        json_incref(meta);
    }
    char *text = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    if (text == NULL)
        abort();
    size_t len = strlen(text);
    if (t->raw_answer != NULL) {
        char *joined = realloc(text, len + 1 + t->raw_answer_len);
        if (joined == NULL)
            abort();
        memcpy(joined + len + 1, t->raw_answer, t->raw_answer_len);
        text = joined;
        len += 1 + t->raw_answer_len;
    }
    unsigned char key[CACHE_KEY_BYTES];
    cache_task_key("id", t->id, key);
    cache_writer_task(ts->srv->writer, key, (unsigned char *)text, len, has_work(ts, t));
}

/* Parses a stored record (see save): the JSON, and the response from the
 * raw answer after a NUL when there is one. New reference, or NULL. */
static json_t *parse_record(const unsigned char *data, size_t len)
{
    const unsigned char *nul = memchr(data, '\0', len);
    size_t meta_len = nul != NULL ? (size_t)(nul - data) : len;
    json_t *rec = json_loadb((const char *)data, meta_len, 0, NULL);
    if (!json_is_object(rec)) {
        json_decref(rec);
        return NULL;
    }
    if (nul != NULL) {
        json_t *answer = json_loadb((const char *)nul + 1, len - meta_len - 1, 0, NULL);
        json_t *result = json_object_get(answer, "result");
        json_object_set_new(rec, "response", result != NULL ? json_incref(result) : json_object());
        json_decref(answer);
    }
    return rec;
}

/* Gives a cache-answered task's record its response (from the raw answer). */
static void ensure_response(struct task *t)
{
    if (t->raw_answer == NULL || json_object_get(t->rec, "response") != NULL)
        return;
    json_t *answer = json_loadb((const char *)t->raw_answer, t->raw_answer_len, 0, NULL);
    json_t *result = json_object_get(answer, "result");
    json_object_set_new(t->rec, "response", result != NULL ? json_incref(result) : json_object());
    json_decref(answer);
}

static void index_idempotency(struct tasks *ts, const struct task *t)
{
    const char *idem =
        json_string_value(json_object_get(json_object_get(t->rec, "task"), "idempotencyKey"));
    if (idem == NULL || t->id[0] == '\0')
        return;
    unsigned char key[CACHE_KEY_BYTES];
    cache_task_key("idem", idem, key);
    char *id = strdup(t->id);
    if (id == NULL)
        abort();
    cache_writer_task(ts->srv->writer, key, (unsigned char *)id, strlen(id), false);
}

/* The client's view of a new task: cloro's AsyncTaskSummary. */
static json_t *summary_of(const char *id, const json_t *item, const char *status)
{
    char created[40];
    clock_format_iso8601(created, sizeof created, clock_wall_ms());
    json_t *priority = json_object_get(item, "priority");
    json_t *idem = json_object_get(item, "idempotencyKey");
    json_t *task_type = json_object_get(item, "taskType");
    return json_pack("{s:s, s:o, s:s, s:o, s:s, s:n, s:o}", "id", id, "taskType",
                     json_is_string(task_type) ? json_incref(task_type) : json_null(), "status",
                     status, "priority",
                     json_is_integer(priority) ? json_incref(priority) : json_integer(1),
                     "createdAt", created, "latencyMs", "idempotencyKey",
                     json_is_string(idem) ? json_incref(idem) : json_null());
}

static json_t *new_record(struct tasks *ts, const char *id, const json_t *item,
                          enum task_origin origin, const struct cache_key *key)
{
    static const char *const origins[] = {"upstream", "cache", "attached"};
    json_t *rec = json_object();
    json_object_set_new(rec, "task", summary_of(id, item, "QUEUED"));
    json_object_set_new(rec, "credits",
                        json_pack("{s:i, s:n}", "creditsToCharge", 0, "creditsCharged"));
    json_object_set_new(rec, "origin", json_string(origins[origin]));
    if (key != NULL) {
        json_object_set_new(rec, "key", json_string(key->hex));
        json_object_set_new(rec, "provider", json_string(key->provider));
        if (key->sample >= 2) {
            char hex[CACHE_KEY_HEX_LEN + 1];
            for (size_t i = 0; i < CACHE_KEY_BYTES; i++)
                snprintf(hex + 2 * i, 3, "%02x", key->base[i]);
            json_object_set_new(rec, "sample", json_integer(key->sample));
            json_object_set_new(rec, "base", json_string(hex));
        }
    }
    const char *url = json_string_value(json_object_get(json_object_get(item, "webhook"), "url"));
    if (url != NULL) {
        bool upstream_delivers = origin == TASK_ORIGIN_UPSTREAM &&
                                 strcmp(ts->srv->cfg->webhook_delivery, "upstream") == 0;
        json_object_set_new(rec, "hook",
                            json_pack("{s:s, s:s, s:i, s:b, s:n, s:I}", "url", url, "mode",
                                      upstream_delivers ? "upstream" : "proxy", "attempts", 0,
                                      "delivered", 0, "deliveredAt", "nextMs", (json_int_t)0));
    }
    return rec;
}

json_t *tasks_creation_view(const json_t *rec)
{
    return json_pack("{s:b, s:O, s:O}", "success", 1, "task", json_object_get(rec, "task"),
                     "credits", json_object_get(rec, "credits"));
}

json_t *tasks_view(const json_t *rec, bool with_webhook)
{
    json_t *view = json_pack("{s:O, s:O}", "task", json_object_get(rec, "task"), "credits",
                             json_object_get(rec, "credits"));
    if (!tasks_record_terminal(rec))
        return view;
    const json_t *hook = json_object_get(rec, "hook");
    if (with_webhook && json_is_object(hook))
        json_object_set_new(view, "webhook",
                            json_pack("{s:O, s:O, s:O}", "url", json_object_get(hook, "url"),
                                      "deliveredAt", json_object_get(hook, "deliveredAt"),
                                      "delivered", json_object_get(hook, "delivered")));
    const json_t *response = json_object_get(rec, "response");
    if (response != NULL)
        json_object_set(view, "response", (json_t *)response);
    return view;
}

json_t *tasks_task_view(struct task *t, bool with_webhook)
{
    ensure_response(t);
    return tasks_view(t->rec, with_webhook);
}

void tasks_reply_view(struct request *r, json_t *view, const char *cache_status)
{
    char *text = json_dumps(view, JSON_COMPACT);
    json_decref(view);
    if (text == NULL)
        abort();
    size_t len = strlen(text);
    size_t out_len = 0;
    char *rewritten = answer_rewrite_artifacts(r->server, text, len, &out_len);
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL || evbuffer_add(buf, rewritten != NULL ? rewritten : text,
                                    rewritten != NULL ? out_len : len) != 0)
        abort();
    free(rewritten);
    free(text);
    request_add_header(r, "Content-Type", "application/json");
    request_add_header(r, "X-Request-ID", r->id);
    if (cache_status != NULL)
        request_add_header(r, "X-Cache", cache_status);
    request_send(r, 200, buf);
    evbuffer_free(buf);
}

/* --- live tasks ------------------------------------------------------------ */

struct task *tasks_find(struct tasks *ts, const char *id)
{
    return ptr_of(json_object_get(ts->by_id, id));
}

struct task *tasks_open_for_key(struct tasks *ts, const unsigned char *key)
{
    struct cache_key k;
    memset(&k, 0, sizeof k);
    memcpy(k.bytes, key, CACHE_KEY_BYTES);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < CACHE_KEY_BYTES; i++) {
        k.hex[2 * i] = digits[key[i] >> 4];
        k.hex[2 * i + 1] = digits[key[i] & 0x0f];
    }
    return ptr_of(json_object_get(ts->by_key, k.hex));
}

static void register_id(struct tasks *ts, struct task *t)
{
    if (t->id[0] != '\0')
        json_object_set_new(ts->by_id, t->id, ptr_value(t));
}

static void unregister_key(struct tasks *ts, struct task *t)
{
    if (t->by_key && ptr_of(json_object_get(ts->by_key, t->key.hex)) == t)
        json_object_del(ts->by_key, t->key.hex);
    t->by_key = false;
}

static void task_free(struct tasks *ts, struct task *t)
{
    if (t->id[0] != '\0' && tasks_find(ts, t->id) == t)
        json_object_del(ts->by_id, t->id);
    unregister_key(ts, t);
    task_follow_stop(ts, t);
    json_decref(t->rec);
    json_decref(t->failure_body);
    json_decref(t->saver_item);
    free(t->raw_answer);
    free(t->authorization);
    free(t);
}

/* Drops a task from memory once it has nothing left to do (its record stays
 * in the store). */
static void release_if_done(struct tasks *ts, struct task *t)
{
    if (has_work(ts, t) || t->followers != NULL || t->leader != NULL || t->polling ||
        t->waiters != NULL || t->awaiting != NULL)
        return;
    task_free(ts, t);
}

void tasks_release(struct tasks *ts, struct task *t)
{
    release_if_done(ts, t);
}

/* --- webhooks ----------------------------------------------------------- */

static void deliver(struct tasks *ts, struct task *t)
{
    if (ts->webhooks == NULL || !tasks_record_terminal(t->rec) || !hook_pending(ts, t->rec))
        return;
    json_t *hook = json_object_get(t->rec, "hook");
    ensure_response(t);
    json_t *view = tasks_view(t->rec, false);
    char *text = json_dumps(view, JSON_COMPACT);
    json_decref(view);
    if (text == NULL)
        abort();
    size_t len = strlen(text), out_len = 0;
    char *rewritten = answer_rewrite_artifacts(ts->srv, text, len, &out_len);
    int rc =
        webhooks_enqueue(ts->webhooks, t->id, json_string_value(json_object_get(hook, "url")),
                         rewritten != NULL ? rewritten : text, rewritten != NULL ? out_len : len,
                         (int)json_integer_value(json_object_get(hook, "attempts")),
                         json_integer_value(json_object_get(hook, "nextMs")));
    free(rewritten);
    free(text);
    if (rc != 0) {
        log_warn("webhook_not_queued", "task=%s reason=%s", t->id,
                 "queue full or the URL is not http(s)");
        json_object_set_new(hook, "attempts", json_integer(ts->srv->cfg->webhook_max_attempts));
        json_object_set_new(hook, "note", json_string("not queued"));
        save(ts, t);
    }
}

static void on_webhook_report(const struct webhooks_report *report, void *arg)
{
    struct tasks *ts = arg;
    struct task *t = tasks_find(ts, report->task_id);
    if (t == NULL)
        return;
    json_t *hook = json_object_get(t->rec, "hook");
    if (!json_is_object(hook))
        return;
    json_object_set_new(hook, "attempts", json_integer(report->attempt));
    json_object_set_new(hook, "nextMs", json_integer(report->next_attempt_ms));
    if (report->delivered) {
        char at[40];
        clock_format_iso8601(at, sizeof at, report->at_ms);
        json_object_set_new(hook, "delivered", json_true());
        json_object_set_new(hook, "deliveredAt", json_string(at));
    } else if (report->final) {
        /* Given up: attempts stays at its last, which equals the maximum
         * unless the configuration changed; make sure it is not retried. */
        json_object_set_new(hook, "attempts", json_integer(ts->srv->cfg->webhook_max_attempts));
    }
    save(ts, t);
    if (report->final)
        release_if_done(ts, t);
}

/* --- the end of a task ------------------------------------------------------ */

static json_t *local_credits(bool terminal)
{
    return terminal ? json_pack("{s:i, s:i}", "creditsToCharge", 0, "creditsCharged", 0)
                    : json_pack("{s:i, s:n}", "creditsToCharge", 0, "creditsCharged");
}

/* A follower ends as its leader did: same status, latency and response, but
 * charged nothing. */
static void settle_follower(struct tasks *ts, struct task *f, const json_t *leader_rec)
{
    json_t *task = json_object_get(f->rec, "task");
    const json_t *lt = json_object_get(leader_rec, "task");
    json_object_set_new(task, "status", json_string(rec_status(leader_rec)));
    json_object_set(task, "latencyMs", json_object_get(lt, "latencyMs"));
    json_object_set_new(f->rec, "credits", local_credits(true));
    const json_t *response = json_object_get(leader_rec, "response");
    if (response != NULL)
        json_object_set_new(f->rec, "response", json_deep_copy(response));
    f->leader = NULL;
    save(ts, f);
    deliver(ts, f);
    release_if_done(ts, f);
}

/* Stores a COMPLETED upstream result as the sync answer it stands for. */
static void store_result(struct tasks *ts, struct task *t)
{
    struct server *srv = ts->srv;
    const json_t *response = json_object_get(t->rec, "response");
    if (!json_is_object(response))
        return;
    json_t *body_doc = json_pack("{s:b, s:O}", "success", 1, "result", response);
    char *body = json_dumps(body_doc, JSON_COMPACT);
    json_decref(body_doc);
    if (body == NULL)
        abort();
    const char *rid = json_string_value(json_object_get(t->rec, "rid"));
    char credits_text[32];
    json_int_t credits =
        json_integer_value(json_object_get(json_object_get(t->rec, "credits"), "creditsCharged"));
    snprintf(credits_text, sizeof credits_text, "%lld", (long long)credits);
    struct cache_header headers[3] = {{(char *)"Content-Type", (char *)"application/json"},
                                      {(char *)"X-Credits-Charged", credits_text},
                                      {(char *)"X-Request-ID", (char *)(rid != NULL ? rid : "")}};
    struct cache_entry e;
    memset(&e, 0, sizeof e);
    e.status = 200;
    e.stored_at_ms = clock_wall_ms();
    e.headers = headers;
    e.header_count = rid != NULL ? 3 : 2;
    e.body = (unsigned char *)body;
    e.body_len = strlen(body);
    e.request_id = (char *)(rid != NULL ? rid : "");
    e.credits_charged = credits;
    e.request = (char *)json_string_value(json_object_get(t->rec, "request"));
    if (t->keyed && t->store_result) {
        int64_t ttl = config_cache_ttl_ms(srv->cfg, t->key.provider);
        e.expires_at_ms = ttl == 0 ? 0 : e.stored_at_ms + ttl;
        e.provider = t->key.provider;
        cache_io_store(srv, &t->key, &e);
    } else {
        e.provider = (char *)"";
        cache_io_capture_artifacts(srv, &e);
    }
    free(body);
}

/* The upstream task t ended: the cache, its followers, its webhook. */
static void finish(struct tasks *ts, struct task *t)
{
    bool completed = strcmp(rec_status(t->rec), "COMPLETED") == 0;
    if (completed) {
        ts->counters.completed++;
        store_result(ts, t);
    } else {
        ts->counters.failed++;
    }
    log_info("task_ended", "task=%s status=%s followers=%s", t->id, rec_status(t->rec),
             t->followers != NULL ? "yes" : "no");
    unregister_key(ts, t);
    credit_saver_settle(ts->saver, t);
    task_follow_stop(ts, t);
    struct task *f = t->followers;
    t->followers = NULL;
    while (f != NULL) {
        struct task *next = f->next_follower;
        f->next_follower = NULL;
        settle_follower(ts, f, t->rec);
        f = next;
    }
    save(ts, t);
    deliver(ts, t);
    release_if_done(ts, t);
}

void tasks_update(struct tasks *ts, struct task *t, const json_t *doc)
{
    bool was_terminal = tasks_record_terminal(t->rec);
    char before[16];
    snprintf(before, sizeof before, "%s", rec_status(t->rec));
    const json_t *summary = json_object_get(doc, "task");
    if (json_is_object(summary) && json_is_string(json_object_get(summary, "status")))
        json_object_set_new(t->rec, "task", json_deep_copy(summary));
    const json_t *credits = json_object_get(doc, "credits");
    if (json_is_object(credits))
        json_object_set_new(t->rec, "credits", json_deep_copy(credits));
    const json_t *response = json_object_get(doc, "response");
    if (response != NULL)
        json_object_set_new(t->rec, "response", json_deep_copy(response));
    const json_t *webhook = json_object_get(doc, "webhook");
    json_t *hook = json_object_get(t->rec, "hook");
    bool hook_changed = false;
    if (json_is_object(webhook) && json_is_object(hook)) {
        const char *mode = json_string_value(json_object_get(hook, "mode"));
        if (mode != NULL && strcmp(mode, "upstream") == 0) {
            json_object_set(hook, "delivered", json_object_get(webhook, "delivered"));
            json_object_set(hook, "deliveredAt", json_object_get(webhook, "deliveredAt"));
            hook_changed = true;
        }
    }
    if (!was_terminal && tasks_record_terminal(t->rec)) {
        finish(ts, t);
        return;
    }
    if (strcmp(before, rec_status(t->rec)) == 0 && !hook_changed)
        return;
    for (struct task *f = t->followers; f != NULL; f = f->next_follower) {
        set_status(f->rec, rec_status(t->rec));
        save(ts, f);
    }
    save(ts, t);
}

void tasks_vanished(struct tasks *ts, struct task *t)
{
    ts->counters.vanished++;
    log_info("task_vanished", "task=%s (not found upstream: deleted from its queue)", t->id);
    unregister_key(ts, t);
    credit_saver_settle(ts->saver, t);
    unsigned char key[CACHE_KEY_BYTES];
    struct task *f = t->followers;
    t->followers = NULL;
    while (f != NULL) {
        struct task *next = f->next_follower;
        cache_task_key("id", f->id, key);
        cache_writer_task(ts->srv->writer, key, NULL, 0, false);
        json_object_set_new(ts->gone, f->id, json_true());
        f->leader = NULL;
        task_free(ts, f);
        f = next;
    }
    cache_task_key("id", t->id, key);
    cache_writer_task(ts->srv->writer, key, NULL, 0, false);
    json_object_set_new(ts->gone, t->id, json_true());
    task_free(ts, t);
}

/* --- creation ------------------------------------------------------------- */

bool tasks_idempotency_used(struct tasks *ts, const char *key)
{
    if (json_object_get(ts->reserved, key) != NULL)
        return true;
    unsigned char k[CACHE_KEY_BYTES];
    cache_task_key("idem", key, k);
    unsigned char *data = NULL;
    size_t len = 0;
    if (cache_writer_pending(ts->srv->writer, k, &data, &len)) {
        free(data);
        return true;
    }
    if (cache_store_get_task(ts->srv->store, k, &data, &len) == CACHE_GET_FOUND) {
        free(data);
        return true;
    }
    return false;
}

void tasks_idempotency_reserve(struct tasks *ts, const char *key)
{
    json_object_set_new(ts->reserved, key, json_true());
}

static void release_reservation(struct tasks *ts, const struct task *t)
{
    const char *idem =
        json_string_value(json_object_get(json_object_get(t->rec, "task"), "idempotencyKey"));
    if (idem != NULL)
        json_object_del(ts->reserved, idem);
}

struct task *tasks_begin_upstream(struct tasks *ts, const json_t *item, const struct cache_key *key,
                                  bool store_result)
{
    struct task *t = xcalloc(1, sizeof *t);
    t->tasks = ts;
    t->origin = TASK_ORIGIN_UPSTREAM;
    t->creating = true;
    t->store_result = store_result;
    if (key != NULL) {
        t->keyed = true;
        t->key = *key;
    }
    t->rec = new_record(ts, "", item, TASK_ORIGIN_UPSTREAM, key);
    if (t->keyed && store_result) {
        /* The request its result is stored with (cache_io.h), kept in the
         * record so that it survives a restart while the task runs. */
        char *text = json_dumps(item, JSON_COMPACT);
        char *canonical =
            text != NULL ? cache_key_canonical("POST", "/v1/async/task", text, strlen(text)) : NULL;
        if (canonical != NULL)
            json_object_set_new(t->rec, "request", json_string(canonical));
        free(canonical);
        free(text);
    }
    if (t->keyed && tasks_open_for_key(ts, key->bytes) == NULL) {
        json_object_set_new(ts->by_key, key->hex, ptr_value(t));
        t->by_key = true;
    }
    ts->counters.submitted++;
    return t;
}

void tasks_created(struct tasks *ts, struct task *t, const json_t *summary, const json_t *credits,
                   const char *rid)
{
    const char *id = json_string_value(json_object_get(summary, "id"));
    release_reservation(ts, t);
    if (id == NULL || strlen(id) >= sizeof t->id || tasks_find(ts, id) != NULL) {
        tasks_creation_failed(ts, t, NULL);
        return;
    }
    snprintf(t->id, sizeof t->id, "%s", id);
    t->creating = false;
    t->created_us = clock_mono_us();
    json_object_set_new(t->rec, "task", json_deep_copy(summary));
    if (json_is_object(credits))
        json_object_set_new(t->rec, "credits", json_deep_copy(credits));
    if (rid != NULL)
        json_object_set_new(t->rec, "rid", json_string(rid));
    json_object_set_new(t->rec, "store", json_boolean(t->store_result));
    register_id(ts, t);
    ts->counters.created_upstream++;
    for (struct task *f = t->followers; f != NULL; f = f->next_follower) {
        json_object_set_new(f->rec, "leader", json_string(t->id));
        save(ts, f);
    }
    save(ts, t);
    index_idempotency(ts, t);
    if (tasks_record_terminal(t->rec))
        finish(ts, t);
    else
        task_follow_schedule(ts, t, ts->srv->cfg->poll_initial_ms);
}

void tasks_creation_failed(struct tasks *ts, struct task *t, json_t *error)
{
    if (error == NULL)
        error = json_pack("{s:s, s:s}", "code", "INTERNAL_SERVER_ERROR", "message",
                          "The upstream task could not be created");
    release_reservation(ts, t);
    unregister_key(ts, t);
    if (t->failure_body == NULL && t->awaiting != NULL) {
        /* Sync calls waiting on a client's submission that failed. */
        const char *message = json_string_value(json_object_get(error, "message"));
        t->failure_status = reply_error_status(PROXY_ERROR_UPSTREAM_UNAVAILABLE);
        t->failure_body = reply_envelope(
            PROXY_ERROR_UPSTREAM_UNAVAILABLE,
            message != NULL ? message : "The async task could not be created upstream",
            json_is_object(error) ? json_pack("{s:O}", "upstream_error", error) : NULL);
    }
    credit_saver_settle(ts->saver, t);
    struct task *f = t->followers;
    t->followers = NULL;
    while (f != NULL) {
        struct task *next = f->next_follower;
        f->next_follower = NULL;
        f->leader = NULL;
        set_status(f->rec, "FAILED");
        json_object_set_new(f->rec, "credits", local_credits(true));
        json_object_set_new(f->rec, "response", json_pack("{s:O}", "error", error));
        save(ts, f);
        deliver(ts, f);
        release_if_done(ts, f);
        f = next;
    }
    json_decref(error);
    task_free(ts, t);
}

static struct task *new_local(struct tasks *ts, const json_t *item, enum task_origin origin,
                              const struct cache_key *key)
{
    struct task *t = xcalloc(1, sizeof *t);
    t->tasks = ts;
    ids_uuid4(&ts->srv->ids, t->id);
    t->origin = origin;
    t->rec = new_record(ts, t->id, item, origin, key);
    register_id(ts, t);
    ts->counters.submitted++;
    return t;
}

struct task *tasks_new_cached(struct tasks *ts, const json_t *item, const struct cache_entry *e)
{
    struct task *t = new_local(ts, item, TASK_ORIGIN_CACHE, NULL);
    json_t *task = json_object_get(t->rec, "task");
    json_object_set_new(task, "status", json_string("COMPLETED"));
    json_object_set_new(task, "latencyMs", json_integer(0));
    json_object_set_new(t->rec, "credits", local_credits(true));
    t->raw_answer = malloc(e->body_len > 0 ? e->body_len : 1);
    if (t->raw_answer == NULL)
        abort();
    memcpy(t->raw_answer, e->body, e->body_len);
    t->raw_answer_len = e->body_len;
    if (e->request_id != NULL && e->request_id[0] != '\0')
        json_object_set_new(t->rec, "rid", json_string(e->request_id));
    ts->counters.from_cache++;
    save(ts, t);
    index_idempotency(ts, t);
    deliver(ts, t);
    return t;
}

struct task *tasks_new_attached(struct tasks *ts, const json_t *item, struct task *leader)
{
    struct task *t = new_local(ts, item, TASK_ORIGIN_ATTACHED, leader->keyed ? &leader->key : NULL);
    set_status(t->rec, rec_status(leader->rec));
    if (leader->id[0] != '\0')
        json_object_set_new(t->rec, "leader", json_string(leader->id));
    t->leader = leader;
    t->next_follower = leader->followers;
    leader->followers = t;
    ts->counters.attached++;
    save(ts, t);
    index_idempotency(ts, t);
    return t;
}

static int load_open(const unsigned char *key, const unsigned char *data, size_t len, void *arg);
static void follow_again(struct tasks *ts, struct task *t);

/* A stored record of an upstream task that has not ended, while the task
 * is not live here, is one whose later updates the store could not keep
 * (dropped when the disk or the map was full): the task would read as
 * running for good, its webhook never sent. It is taken back and followed
 * again, as at start-up, until its end is stored. */
static void adopt_stale(struct tasks *ts, const char *id, const json_t *rec,
                        const unsigned char *key, const unsigned char *data, size_t len)
{
    const char *origin = json_string_value(json_object_get(rec, "origin"));
    if (tasks_record_terminal(rec) || origin == NULL || strcmp(origin, "upstream") != 0 ||
        tasks_find(ts, id) != NULL)
        return;
    load_open(key, data, len, ts);
    struct task *t = tasks_find(ts, id);
    if (t == NULL)
        return;
    log_warn("task_record_stale", "task=%s action=followed_again", id);
    follow_again(ts, t);
}

json_t *tasks_load_record(struct tasks *ts, const char *id)
{
    if (json_object_get(ts->gone, id) != NULL)
        return NULL;
    unsigned char key[CACHE_KEY_BYTES];
    cache_task_key("id", id, key);
    unsigned char *data = NULL;
    size_t len = 0;
    if (!cache_writer_pending(ts->srv->writer, key, &data, &len) &&
        cache_store_get_task(ts->srv->store, key, &data, &len) != CACHE_GET_FOUND)
        return NULL;
    json_t *rec = parse_record(data, len);
    if (rec != NULL)
        adopt_stale(ts, id, rec, key, data, len);
    free(data);
    return rec;
}

/* --- start-up --------------------------------------------------------------- */

static int load_open(const unsigned char *key, const unsigned char *data, size_t len, void *arg)
{
    (void)key;
    struct tasks *ts = arg;
    json_t *rec = parse_record(data, len);
    const char *id = json_string_value(json_object_get(json_object_get(rec, "task"), "id"));
    const char *origin = json_string_value(json_object_get(rec, "origin"));
    if (id == NULL || origin == NULL || strlen(id) >= IDS_UUID_LEN + 8) {
        json_decref(rec);
        return 0;
    }
    struct task *t = xcalloc(1, sizeof *t);
    t->tasks = ts;
    t->created_us = clock_mono_us();
    snprintf(t->id, sizeof t->id, "%s", id);
    t->rec = rec;
    t->origin = strcmp(origin, "upstream") == 0   ? TASK_ORIGIN_UPSTREAM
                : strcmp(origin, "attached") == 0 ? TASK_ORIGIN_ATTACHED
                                                  : TASK_ORIGIN_CACHE;
    const char *hex = json_string_value(json_object_get(rec, "key"));
    if (hex != NULL && cache_key_parse_hex(hex, &t->key) == 0) {
        t->keyed = true;
        snprintf(t->key.provider, sizeof t->key.provider, "%s",
                 json_string_value(json_object_get(rec, "provider")) != NULL
                     ? json_string_value(json_object_get(rec, "provider"))
                     : "");
        struct cache_key base;
        json_int_t sample = json_integer_value(json_object_get(rec, "sample"));
        if (sample >= 2 && sample <= UINT32_MAX &&
            cache_key_parse_hex(json_string_value(json_object_get(rec, "base")), &base) == 0) {
            t->key.sample = (uint32_t)sample;
            memcpy(t->key.base, base.bytes, CACHE_KEY_BYTES);
        }
    }
    t->store_result = !json_is_false(json_object_get(rec, "store"));
    const unsigned char *nul = memchr(data, '\0', len);
    if (nul != NULL) {
        t->raw_answer_len = len - (size_t)(nul - data) - 1;
        t->raw_answer = malloc(t->raw_answer_len > 0 ? t->raw_answer_len : 1);
        if (t->raw_answer == NULL)
            abort();
        memcpy(t->raw_answer, nul + 1, t->raw_answer_len);
    }
    register_id(ts, t);
    return 0;
}

/* An upstream task not ended: it leads its key's identical tasks (unless
 * another does) and is polled from now on. */
static void follow_again(struct tasks *ts, struct task *t)
{
    if (t->keyed && tasks_open_for_key(ts, t->key.bytes) == NULL) {
        json_object_set_new(ts->by_key, t->key.hex, ptr_value(t));
        t->by_key = true;
    }
    task_follow_schedule(ts, t, 0);
}

/* Links attached tasks to their leaders, resumes follow-ups and deliveries. */
static void resume(struct tasks *ts)
{
    size_t count = json_object_size(ts->by_id);
    struct task **all = xcalloc(count + 1, sizeof *all);
    size_t n = 0;
    const char *id;
    json_t *v;
    json_object_foreach(ts->by_id, id, v) all[n++] = ptr_of(v);
    for (size_t i = 0; i < n; i++) {
        struct task *t = all[i];
        if (t->origin != TASK_ORIGIN_UPSTREAM || tasks_record_terminal(t->rec))
            continue;
        follow_again(ts, t);
    }
    for (size_t i = 0; i < n; i++) {
        struct task *t = all[i];
        if (t->origin != TASK_ORIGIN_ATTACHED || tasks_record_terminal(t->rec))
            continue;
        const char *leader_id = json_string_value(json_object_get(t->rec, "leader"));
        struct task *leader = leader_id != NULL ? tasks_find(ts, leader_id) : NULL;
        if (leader != NULL && !tasks_record_terminal(leader->rec)) {
            t->leader = leader;
            t->next_follower = leader->followers;
            leader->followers = t;
            continue;
        }
        json_t *leader_rec = leader_id != NULL ? tasks_load_record(ts, leader_id) : NULL;
        if (leader_rec != NULL && tasks_record_terminal(leader_rec)) {
            settle_follower(ts, t, leader_rec);
        } else {
            json_t *error = json_pack("{s:s, s:s}", "code", "INTERNAL_SERVER_ERROR", "message",
                                      "The upstream task this task followed was lost");
            set_status(t->rec, "FAILED");
            json_object_set_new(t->rec, "credits", local_credits(true));
            json_object_set_new(t->rec, "response", json_pack("{s:o}", "error", error));
            save(ts, t);
            deliver(ts, t);
            release_if_done(ts, t);
        }
        json_decref(leader_rec);
    }
    for (size_t i = 0; i < n; i++) {
        struct task *t = all[i];
        if (tasks_find(ts, t->id) != t)
            continue; /* settled and released above */
        if (tasks_record_terminal(t->rec)) {
            deliver(ts, t);
            release_if_done(ts, t);
        }
    }
    free(all);
}

struct tasks *tasks_new(struct server *srv)
{
    struct tasks *ts = xcalloc(1, sizeof *ts);
    ts->srv = srv;
    ts->by_id = json_object();
    ts->by_key = json_object();
    ts->reserved = json_object();
    ts->gone = json_object();
    const struct config *cfg = srv->cfg;
    struct webhooks_options wo = {.secret = cfg->webhook_secret,
                                  .max_attempts = (int)cfg->webhook_max_attempts,
                                  .retry_base_ms = cfg->webhook_retry_base_ms,
                                  .timeout_ms = cfg->webhook_timeout_ms,
                                  .max_pending = WEBHOOKS_MAX_PENDING};
    ts->webhooks = webhooks_new(srv->base, srv->upstream, &wo, on_webhook_report, ts);
    ts->saver = credit_saver_new(ts);
    if (cache_store_foreach_open_task(srv->store, load_open, ts) != 0)
        log_warn("tasks_load", "reason=%s", "the store could not list open tasks");
    size_t loaded = json_object_size(ts->by_id);
    resume(ts);
    if (loaded > 0)
        log_info("tasks_resumed", "tasks=%zu following=%zu", loaded, json_object_size(ts->by_key));
    return ts;
}

void tasks_free(struct tasks *ts)
{
    if (ts == NULL)
        return;
    webhooks_free(ts->webhooks);
    credit_saver_free(ts->saver);
    const char *id;
    json_t *v;
    void *tmp;
    /* Followers first: a leader's list points at them. */
    json_object_foreach_safe(ts->by_id, tmp, id, v)
    {
        struct task *t = ptr_of(v);
        t->followers = NULL;
        t->leader = NULL;
    }
    json_object_foreach_safe(ts->by_id, tmp, id, v) task_free(ts, ptr_of(v));
    /* Creations in flight are held by their requests, abandoned at shutdown. */
    json_object_foreach_safe(ts->by_key, tmp, id, v)
    {
        struct task *t = ptr_of(v);
        if (t->creating) {
            json_object_del(ts->by_key, id);
            t->by_key = false;
        }
    }
    json_decref(ts->by_id);
    json_decref(ts->by_key);
    json_decref(ts->reserved);
    json_decref(ts->gone);
    free(ts);
}

void tasks_resume_following(struct tasks *ts)
{
    const char *id;
    json_t *v;
    json_object_foreach(ts->by_id, id, v)
    {
        struct task *t = ptr_of(v);
        if (t->origin == TASK_ORIGIN_UPSTREAM && !t->creating && !t->polling &&
            !tasks_record_terminal(t->rec))
            task_follow_schedule(ts, t, 0);
    }
}

bool tasks_route(struct tasks *ts, struct request *r)
{
    static const char task_path[] = "/v1/async/task";
    if (strcmp(r->method, "POST") == 0 && strcmp(r->path, task_path) == 0) {
        task_submit(ts, r);
        return true;
    }
    if (strcmp(r->method, "POST") == 0 && strcmp(r->path, "/v1/async/task/batch") == 0) {
        task_submit_batch(ts, r);
        return true;
    }
    size_t n = sizeof task_path - 1;
    if ((strcmp(r->method, "GET") == 0) && strncmp(r->path, task_path, n) == 0 &&
        r->path[n] == '/' && r->path[n + 1] != '\0' && strchr(r->path + n + 1, '/') == NULL &&
        strcmp(r->path + n + 1, "batch") != 0) {
        task_get(ts, r, r->path + n + 1);
        return true;
    }
    return false;
}

void tasks_tick(struct tasks *ts, int64_t now_ms)
{
    const struct config *cfg = ts->srv->cfg;
    if (task_retention_tick(ts->srv->writer, cfg->task_retention_ms, cfg->webhook_max_attempts,
                            now_ms, &ts->last_prune_ms))
        log_info("tasks_prune_started", "retention_ms=%lld", (long long)cfg->task_retention_ms);
}

json_t *tasks_stats_json(struct tasks *ts)
{
    const struct tasks_counters *c = &ts->counters;
    struct webhooks_stats ws;
    memset(&ws, 0, sizeof ws);
    if (ts->webhooks != NULL)
        webhooks_stats(ts->webhooks, &ws);
    struct cache_store_stats st; /* records pruned past task_retention, since created */
    if (ts->srv->store == NULL || cache_store_stats(ts->srv->store, &st) != 0)
        st.tasks_pruned = 0;
    json_t *view = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
        "live", (json_int_t)json_object_size(ts->by_id), "following",
        (json_int_t)json_object_size(ts->by_key), "submitted", (json_int_t)c->submitted,
        "created_upstream", (json_int_t)c->created_upstream, "from_cache",
        (json_int_t)c->from_cache, "attached", (json_int_t)c->attached, "idempotency_reused",
        (json_int_t)c->key_reused, "batches", (json_int_t)c->batches, "upstream_batches",
        (json_int_t)c->upstream_batches, "polls", (json_int_t)c->polls, "client_polls_answered",
        (json_int_t)c->client_polls_answered, "completed", (json_int_t)c->completed, "failed",
        (json_int_t)c->failed, "vanished", (json_int_t)c->vanished, "refused_store_busy",
        (json_int_t)ts->srv->stats.store_busy, "credit_saver", credit_saver_stats(ts->saver),
        "webhooks",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "pending", (json_int_t)ws.pending, "in_flight",
                  (json_int_t)ws.in_flight, "attempts", (json_int_t)ws.attempts, "delivered",
                  (json_int_t)ws.delivered, "failed_attempts", (json_int_t)ws.failed_attempts,
                  "given_up", (json_int_t)ws.given_up));
    json_object_set_new(view, "pruned", json_integer((json_int_t)st.tasks_pruned));
    return view;
}
