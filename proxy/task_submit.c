/* task_submit.c: POST /v1/async/task and /v1/async/task/batch (task_submit.h).
 *
 * Each task of a submission is sorted into one of:
 *   KEY_REUSED  its idempotencyKey is bound already (by an earlier task, a
 *               creation in flight, or an earlier item of the same batch):
 *               cloro's 409 / per-task RESOURCE_ALREADY_EXISTS, made here;
 *   CACHED      its prompt is answered in the cache: a task COMPLETED at once;
 *   ATTACHED    an identical task is open upstream: a task that follows it;
 *   DUPLICATE   an earlier item of the same batch is identical: it follows
 *               that item's task once created, or fails as that item did;
 *   UPSTREAM    the rest, and anything the proxy cannot vouch for (not a
 *               well-formed task): sent upstream, whose validation decides.
 * What goes upstream goes in one call; the merged batch answer keeps every
 * task at its index. When the upstream refuses a batch whole and nothing was
 * answered locally, its answer is relayed as is; when some tasks were,
 * those stand and the upstream's tasks fail with the upstream's code.
 *
 * Modes (mode.h): offline, what would go upstream is OFFLINE instead (a 504
 * OFFLINE_CACHE_MISS, or that code for the task in a merged batch) and any
 * stored answer, expired or not, completes a task; refresh asks upstream as
 * Cache-Control: no-cache does. X-Cache-Sample: K keys every task of the
 * submission as sample K (key.h). */
#include "task_submit.h"
#include "answer.h"
#include "batch_split.h"
#include "cache_io.h"
#include "clock.h"
#include "config.h"
#include "forward.h"
#include "policy.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "tasks.h"
#include "touches.h"
#include "upstream.h"
#include "writer.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BATCH_MAX 500 /* cloro-api.md 7.3 */

struct item {
    json_t *doc; /* borrowed from the submission */
    enum batch_item_kind kind;
    bool keyed;
    struct cache_key key;
    struct cache_entry hit; /* CACHED */
    struct task *leader;    /* ATTACHED: the open task; UPSTREAM: the task in creation */
    size_t first;           /* DUPLICATE: the identical item before it */
    char created_id[48];    /* UPSTREAM: the task id once created */
    json_t *error;          /* UPSTREAM: the error it failed with */
    json_t *result;         /* the merged result item */
};

struct batch {
    struct tasks *ts;
    json_t *doc;
    struct item *items;
    size_t count;
    struct batch_split split; /* the UPSTREAM items, in the order sent */
    int64_t credits_saved;
};

/* --- sorting ------------------------------------------------------------ */

static bool is_http_url(const char *url)
{
    return url != NULL &&
           (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) &&
           strlen(url) < 2048;
}

/* A task the proxy may answer itself: only known fields, with valid values
 * (cloro-api.md 7.2). The payload's own schema is the upstream's to judge;
 * a payload it rejects is never cached, so it never gets past a miss. */
static bool well_formed(const json_t *item)
{
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)item, name, value)
    {
        if (strcmp(name, "taskType") == 0 || strcmp(name, "payload") == 0)
            continue;
        if (strcmp(name, "priority") == 0) {
            if (!json_is_integer(value) || json_integer_value(value) < 1 ||
                json_integer_value(value) > 10)
                return false;
        } else if (strcmp(name, "idempotencyKey") == 0) {
            if (!json_is_string(value) || json_string_length(value) == 0)
                return false;
        } else if (strcmp(name, "webhook") == 0) {
            if (!json_is_object(value) || json_object_size(value) != 1 ||
                !is_http_url(json_string_value(json_object_get(value, "url"))))
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* True when the cache answers key under the client's directives (offline:
 * whenever it holds an answer); fills e. */
static bool cached_answer(struct server *srv, const struct cache_key *key,
                          const struct cache_directives *d, struct cache_entry *e)
{
    bool offline = srv->mode == PROXY_MODE_OFFLINE;
    if ((d->no_cache && !offline) || !cache_io_lookup(srv, key, e))
        return false;
    int64_t now = clock_wall_ms();
    if (offline ||
        cache_policy_judge(d, e->stored_at_ms, e->expires_at_ms, now) != CACHE_VERDICT_MISS) {
        srv->stats.cache_by_outcome[CACHE_OUTCOME_HIT]++;
        if (touches_add(srv->touches, key->bytes, now))
            touches_flush(srv->touches, srv->writer);
        return true;
    }
    cache_entry_free(e);
    return false;
}

/* Sorts item it. seen: idempotencyKeys earlier in the batch; firsts: content
 * keys of earlier UPSTREAM items -> their index (both NULL for a single);
 * sample: the submission's X-Cache-Sample (0: none). */
static void sort_item(struct tasks *ts, struct item *it, size_t index, json_t *seen, json_t *firsts,
                      const struct cache_directives *d, uint32_t sample)
{
    struct server *srv = tasks_server(ts);
    it->kind = BATCH_ITEM_UPSTREAM;
    if (!json_is_object(it->doc))
        return;
    const char *idem = json_string_value(json_object_get(it->doc, "idempotencyKey"));
    if (idem != NULL) {
        if (tasks_idempotency_used(ts, idem) ||
            (seen != NULL && json_object_get(seen, idem) != NULL)) {
            it->kind = BATCH_ITEM_KEY_REUSED;
            return;
        }
        if (seen != NULL)
            json_object_set_new(seen, idem, json_true());
    }
    if (!well_formed(it->doc))
        return;
    it->keyed = cache_key_compute_doc("POST", "/v1/async/task", it->doc, &it->key) == CACHE_KEY_OK;
    if (!it->keyed)
        return;
    cache_key_sample(&it->key, sample);
    if (cached_answer(srv, &it->key, d, &it->hit)) {
        it->kind = BATCH_ITEM_CACHED;
        return;
    }
    json_t *first = firsts != NULL ? json_object_get(firsts, it->key.hex) : NULL;
    if (first != NULL) {
        it->kind = BATCH_ITEM_DUPLICATE;
        it->first = (size_t)json_integer_value(first);
        return;
    }
    it->leader = d->no_cache ? NULL : tasks_open_for_key(ts, it->key.bytes);
    if (it->leader != NULL) {
        it->kind = BATCH_ITEM_ATTACHED;
        return;
    }
    if (firsts != NULL)
        json_object_set_new(firsts, it->key.hex, json_integer((json_int_t)index));
}

/* The item as it goes upstream: without its webhook when the proxy delivers
 * webhooks (cloro could not reach a URL on the client's machine). New ref. */
static json_t *upstream_item(struct server *srv, json_t *doc)
{
    const json_t *hook = json_object_get(doc, "webhook");
    /* An invalid webhook stays: it is the upstream's to reject. */
    if (!json_is_object(hook) || json_object_size(hook) != 1 ||
        !is_http_url(json_string_value(json_object_get(hook, "url"))) ||
        strcmp(srv->cfg->webhook_delivery, "proxy") != 0)
        return json_incref(doc);
    json_t *copy = json_copy(doc);
    json_object_del(copy, "webhook");
    return copy;
}

static json_t *upstream_item_cb(void *arg, json_t *doc)
{
    return upstream_item(arg, doc);
}

static struct task *begin_upstream(struct tasks *ts, struct item *it,
                                   const struct cache_directives *d)
{
    const char *idem = json_string_value(json_object_get(it->doc, "idempotencyKey"));
    if (idem != NULL)
        tasks_idempotency_reserve(ts, idem);
    return tasks_begin_upstream(ts, it->doc, it->keyed ? &it->key : NULL, !d->no_store);
}

static json_t *parse_body(struct request *r)
{
    struct evbuffer *body = request_body(r);
    size_t len = evbuffer_get_length(body);
    if (len == 0)
        return NULL;
    return json_loadb((const char *)evbuffer_pullup(body, -1), len, JSON_REJECT_DUPLICATES, NULL);
}

static void passthrough(struct request *r)
{
    r->cache_outcome = CACHE_OUTCOME_BYPASS;
    forward_upstream(r);
}

/* Relays the upstream's answer to a creation as it came. */
static void relay(struct request *r, const struct upstream_result *res)
{
    if (res->outcome != UPSTREAM_OK) {
        forward_reply_upstream_failure(r, res);
        return;
    }
    struct cache_header headers[CACHE_ENTRY_MAX_HEADERS];
    struct cache_entry e;
    cache_io_entry_from_result(r, res, headers, &e);
    struct answer_context ctx = {.outcome = r->cache_outcome, .upstream_status = (int)res->status};
    answer_send(r, &e, &ctx, res->body);
}

static json_t *key_reused_details(const char *idem)
{
    return json_pack("{s:s, s:s}", "field", "idempotencyKey", "value", idem);
}

/* --- a single task ----------------------------------------------------------- */

static void on_single_answered(struct request *r, const struct upstream_result *res)
{
    struct task *t = r->hook_arg;
    struct tasks *ts = t->tasks;
    json_t *doc = upstream_result_json(res);
    const json_t *summary = json_object_get(doc, "task");
    if (res->outcome == UPSTREAM_OK && res->status == 200 && json_is_object(summary)) {
        tasks_created(ts, t, summary, json_object_get(doc, "credits"),
                      upstream_result_header(res, "X-Request-ID"));
        /* cloro holds (and bills) the task now: its id leaves only once
         * the store has its record (durable.h). */
        r->durable_seq = cache_writer_last_queued(r->server->writer);
    } else {
        json_t *error = json_object_get(doc, "error");
        tasks_creation_failed(ts, t, json_is_object(error) ? json_incref(error) : NULL);
    }
    json_decref(doc);
    relay(r, res);
}

static void on_single_failed(struct request *r)
{
    struct task *t = r->hook_arg;
    tasks_creation_failed(t->tasks, t, NULL);
}

static const struct forward_hooks single_hooks = {.answered = on_single_answered,
                                                  .failed = on_single_failed};

/* The client's Cache-Control, and refresh mode's no-cache (mode.h). */
static void submission_directives(const struct request *r, struct cache_directives *d)
{
    cache_policy_parse(request_header(r, "Cache-Control"), d);
    if (r->server->mode == PROXY_MODE_REFRESH)
        d->no_cache = true;
}

/* Cache-Status of a task answered from the cache: the mode names itself
 * when it is not online. */
static const char *hit_status(const struct server *srv, char *out, size_t size)
{
    snprintf(out, size, "cloro-proxy; hit; detail=%s",
             srv->mode == PROXY_MODE_ONLINE ? "async-task" : proxy_mode_name(srv->mode));
    return out;
}

static void add_saved(struct request *r, const struct cache_entry *e)
{
    char number[32];
    snprintf(number, sizeof number, "%lld", (long long)e->credits_charged);
    request_add_header(r, "X-Credits-Charged", "0");
    request_add_header(r, "X-Credits-Saved", number);
    request_add_header(r, "X-Credits-Saved-By", "cache");
    r->server->stats.cache_credits_saved += (uint64_t)e->credits_charged;
}

/* Each task makes a few records (task, idempotency key, updates): refuse a
 * submission the writer could not keep, rather than lose its records. */
static bool store_has_room(struct request *r, size_t tasks)
{
    if (cache_writer_has_room(r->server->writer, 4 * tasks))
        return true;
    r->server->stats.store_busy++;
    request_add_header(r, "Retry-After", "1");
    reply_error(r, PROXY_ERROR_STORE_BUSY, NULL, NULL);
    return false;
}

void task_submit(struct tasks *ts, struct request *r)
{
    struct server *srv = tasks_server(ts);
    if (!forward_check_request(r) || !store_has_room(r, 1))
        return;
    json_t *doc = parse_body(r);
    if (!json_is_object(doc)) {
        json_decref(doc);
        passthrough(r); /* cloro's to reject, in its own words */
        return;
    }
    struct cache_directives d;
    submission_directives(r, &d);
    struct item it = {.doc = doc};
    sort_item(ts, &it, 0, NULL, NULL, &d, r->sample);
    if (it.kind == BATCH_ITEM_UPSTREAM && srv->mode == PROXY_MODE_OFFLINE) {
        forward_reply_offline(r, it.keyed ? &it.key : NULL);
        json_decref(doc);
        return;
    }
    const char *idem = json_string_value(json_object_get(doc, "idempotencyKey"));
    struct task *t;
    char status[64];
    switch (it.kind) {
    case BATCH_ITEM_KEY_REUSED:
        tasks_counters(ts)->key_reused++;
        reply_error(r, PROXY_ERROR_TASK_EXISTS, NULL, key_reused_details(idem));
        break;
    case BATCH_ITEM_CACHED:
        t = tasks_new_cached(ts, doc, &it.hit);
        r->cache_outcome = CACHE_OUTCOME_HIT;
        add_saved(r, &it.hit);
        request_add_header(r, "X-Cache-Key", it.key.hex);
        request_add_header(r, "Cache-Status", hit_status(srv, status, sizeof status));
        tasks_reply_view(r, tasks_creation_view(t->rec), "HIT");
        tasks_release(ts, t);
        cache_entry_free(&it.hit);
        break;
    case BATCH_ITEM_ATTACHED:
    case BATCH_ITEM_DUPLICATE: /* not in a single */
    case BATCH_ITEM_OFFLINE:   /* nor this: answered above */
        t = tasks_new_attached(ts, doc, it.leader);
        r->cache_outcome = CACHE_OUTCOME_COALESCED;
        srv->stats.cache_by_outcome[CACHE_OUTCOME_COALESCED]++;
        request_add_header(r, "X-Cache-Key", it.key.hex);
        request_add_header(r, "Cache-Status", "cloro-proxy; fwd=miss; collapsed");
        tasks_reply_view(r, tasks_creation_view(t->rec), "COALESCED");
        break;
    case BATCH_ITEM_UPSTREAM: {
        t = begin_upstream(ts, &it, &d);
        if (srv->authorization == NULL && request_header(r, "Authorization") != NULL) {
            t->authorization = strdup(request_header(r, "Authorization"));
            if (t->authorization == NULL)
                abort();
        }
        json_t *sent = upstream_item(srv, doc);
        if (sent != doc) {
            r->upstream_body = json_dumps(sent, JSON_COMPACT);
            if (r->upstream_body == NULL)
                abort();
            r->upstream_body_len = strlen(r->upstream_body);
        }
        json_decref(sent);
        r->cache_outcome = it.keyed ? CACHE_OUTCOME_MISS : CACHE_OUTCOME_BYPASS;
        r->hooks = &single_hooks;
        r->hook_arg = t;
        forward_upstream(r);
        break;
    }
    }
    json_decref(doc);
}

/* --- batches ------------------------------------------------------------------- */

static json_t *success_item(size_t index, const json_t *rec)
{
    return batch_item_success(index, json_object_get(rec, "task"), json_object_get(rec, "credits"));
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        struct item *it = &b->items[i];
        if (it->kind == BATCH_ITEM_CACHED)
            cache_entry_free(&it->hit);
        json_decref(it->error);
        json_decref(it->result);
    }
    free(b->items);
    batch_split_deinit(&b->split);
    json_decref(b->doc);
    free(b);
}

static void settle_local(struct batch *b, size_t i)
{
    struct tasks *ts = b->ts;
    struct item *it = &b->items[i];
    struct task *t;
    switch (it->kind) {
    case BATCH_ITEM_KEY_REUSED:
        tasks_counters(ts)->key_reused++;
        it->result = batch_item_failure(
            i, "RESOURCE_ALREADY_EXISTS", "Task already exists",
            key_reused_details(json_string_value(json_object_get(it->doc, "idempotencyKey"))));
        return;
    case BATCH_ITEM_CACHED:
        t = tasks_new_cached(ts, it->doc, &it->hit);
        b->credits_saved += it->hit.credits_charged;
        it->result = success_item(i, t->rec);
        tasks_release(ts, t);
        return;
    case BATCH_ITEM_ATTACHED:
        t = tasks_new_attached(ts, it->doc, it->leader);
        it->result = success_item(i, t->rec);
        return;
    case BATCH_ITEM_OFFLINE:
        it->result = batch_item_failure(
            i, "OFFLINE_CACHE_MISS", "The proxy is offline and has no stored answer for this task",
            it->keyed ? json_pack("{s:s, s:s}", "key", it->key.hex, "provider", it->key.provider)
                      : NULL);
        return;
    case BATCH_ITEM_DUPLICATE:
    case BATCH_ITEM_UPSTREAM:
        return;
    }
}

/* A duplicate follows its first item's task, or fails as it did. */
static void settle_duplicate(struct batch *b, size_t i)
{
    struct item *it = &b->items[i];
    const struct item *first = &b->items[it->first];
    struct task *leader =
        first->created_id[0] != '\0' ? tasks_find(b->ts, first->created_id) : NULL;
    if (leader != NULL && leader->origin == TASK_ORIGIN_UPSTREAM &&
        !tasks_record_terminal(leader->rec)) {
        struct task *t = tasks_new_attached(b->ts, it->doc, leader);
        it->result = success_item(i, t->rec);
        return;
    }
    const json_t *error = json_object_get(first->result, "error");
    if (json_is_object(error)) {
        it->result =
            json_pack("{s:b, s:I, s:O}", "success", 0, "index", (json_int_t)i, "error", error);
        return;
    }
    it->result = batch_item_failure(
        i, "INTERNAL_SERVER_ERROR",
        "The identical task of this batch ended before it could be followed", NULL);
}

static void reply_merged(struct request *r, struct batch *b, const char *rid)
{
    json_t *results = json_array();
    for (size_t i = 0; i < b->count; i++)
        json_array_append(results, b->items[i].result);
    json_t *doc = batch_merge(results);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        abort();
    char split[160];
    batch_split_describe(&b->split, split, sizeof split);
    char saved[32];
    snprintf(saved, sizeof saved, "%lld", (long long)b->credits_saved);
    r->server->stats.cache_credits_saved += (uint64_t)b->credits_saved;
    request_add_header(r, "Content-Type", "application/json");
    request_add_header(r, "X-Request-ID", rid != NULL ? rid : r->id);
    request_add_header(r, "X-Proxy-Batch", split);
    request_add_header(r, "X-Credits-Saved", saved);
    if (rid != NULL && r->upstream_request_id == NULL) {
        r->upstream_request_id = strdup(rid);
        if (r->upstream_request_id == NULL)
            abort();
    }
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL || evbuffer_add(buf, text, strlen(text)) != 0)
        abort();
    free(text);
    batch_free(b);
    request_send(r, 200, buf);
    evbuffer_free(buf);
}

struct settle_context {
    struct batch *b;
    const char *rid;
};

/* The upstream's answer for item i (batch_split_match). */
static void settle_upstream_item(void *arg, size_t i, const json_t *result)
{
    struct settle_context *ctx = arg;
    struct batch *b = ctx->b;
    struct item *it = &b->items[i];
    struct task *t = it->leader;
    it->leader = NULL;
    const json_t *summary = json_object_get(result, "task");
    if (json_is_true(json_object_get(result, "success")) && json_is_object(summary)) {
        snprintf(it->created_id, sizeof it->created_id, "%s",
                 json_string_value(json_object_get(summary, "id")) != NULL
                     ? json_string_value(json_object_get(summary, "id"))
                     : "");
        tasks_created(b->ts, t, summary, json_object_get(result, "credits"), ctx->rid);
    } else {
        json_t *error = json_object_get(result, "error");
        tasks_creation_failed(b->ts, t, json_is_object(error) ? json_incref(error) : NULL);
    }
    it->result = batch_item_from_upstream(result, i);
}

static void on_batch_answered(struct request *r, const struct upstream_result *res)
{
    struct batch *b = r->hook_arg;
    json_t *doc = upstream_result_json(res);
    const json_t *results = json_object_get(doc, "results");
    const char *rid =
        res->outcome == UPSTREAM_OK ? upstream_result_header(res, "X-Request-ID") : NULL;
    bool whole = res->outcome == UPSTREAM_OK && res->status == 200 && json_is_array(results);
    if (!whole && b->split.upstream_count == b->count) {
        /* Nothing was answered here: the upstream's answer stands as is. */
        json_t *error = json_object_get(doc, "error");
        for (size_t j = 0; j < b->split.upstream_count; j++) {
            struct item *it = &b->items[b->split.upstream[j]];
            tasks_creation_failed(b->ts, it->leader,
                                  json_is_object(error) ? json_incref(error) : NULL);
            it->leader = NULL;
        }
        json_decref(doc);
        batch_free(b);
        relay(r, res);
        return;
    }
    if (whole) {
        struct settle_context ctx = {.b = b, .rid = rid};
        batch_split_match(&b->split, results, settle_upstream_item, &ctx);
    }
    /* Tasks the upstream did not answer for (or a batch refused whole). */
    const json_t *error = json_object_get(doc, "error");
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    char fallback[160];
    if (code == NULL) {
        code = res->outcome == UPSTREAM_OK ? "INTERNAL_SERVER_ERROR" : "UPSTREAM_UNAVAILABLE";
        snprintf(fallback, sizeof fallback, "The cloro API did not create this task (%s %ld)",
                 upstream_outcome_name(res->outcome), res->status);
        message = fallback;
    }
    for (size_t j = 0; j < b->split.upstream_count; j++) {
        struct item *it = &b->items[b->split.upstream[j]];
        if (it->leader == NULL)
            continue;
        tasks_creation_failed(b->ts, it->leader,
                              json_is_object(error) ? json_incref((json_t *)error) : NULL);
        it->leader = NULL;
        it->result =
            batch_item_failure(b->split.upstream[j], code, message != NULL ? message : code, NULL);
    }
    json_decref(doc);
    for (size_t i = 0; i < b->count; i++)
        if (b->items[i].kind == BATCH_ITEM_DUPLICATE)
            settle_duplicate(b, i);
    /* Tasks cloro created leave only once the store has their records. */
    if (whole)
        r->durable_seq = cache_writer_last_queued(r->server->writer);
    reply_merged(r, b, rid);
}

static void on_batch_failed(struct request *r)
{
    struct batch *b = r->hook_arg;
    for (size_t j = 0; j < b->split.upstream_count; j++) {
        struct item *it = &b->items[b->split.upstream[j]];
        if (it->leader != NULL)
            tasks_creation_failed(b->ts, it->leader, NULL);
        it->leader = NULL;
    }
    batch_free(b);
}

static const struct forward_hooks batch_hooks = {.answered = on_batch_answered,
                                                 .failed = on_batch_failed};

/* Offline, and no task of the batch could be answered here. */
static bool offline_only(const struct batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        enum batch_item_kind k = b->items[i].kind;
        if (k != BATCH_ITEM_OFFLINE && k != BATCH_ITEM_DUPLICATE)
            return false;
    }
    return true;
}

/* 504 OFFLINE_CACHE_MISS for a whole batch, naming the keys it missed. Frees b. */
static void reply_batch_offline(struct request *r, struct batch *b)
{
    struct server *srv = r->server;
    json_t *keys = json_array();
    for (size_t i = 0; i < b->count; i++)
        if (b->items[i].kind == BATCH_ITEM_OFFLINE && b->items[i].keyed)
            json_array_append_new(keys, json_string(b->items[i].key.hex));
    batch_free(b);
    srv->stats.offline_misses++;
    r->cache_outcome = CACHE_OUTCOME_MISS;
    srv->stats.cache_by_outcome[CACHE_OUTCOME_MISS]++;
    request_add_header(r, "X-Cache", "MISS");
    request_add_header(r, "Cache-Status", "cloro-proxy; detail=offline");
    reply_error(r, PROXY_ERROR_OFFLINE_CACHE_MISS,
                "The proxy is offline and has no stored answer for any task of this batch",
                json_pack("{s:o}", "keys", keys));
}

void task_submit_batch(struct tasks *ts, struct request *r)
{
    struct server *srv = tasks_server(ts);
    if (!forward_check_request(r))
        return;
    json_t *doc = parse_body(r);
    if (!json_is_array(doc) || json_array_size(doc) == 0 || json_array_size(doc) > BATCH_MAX) {
        json_decref(doc);
        passthrough(r); /* cloro's 400 (or 422) to give */
        return;
    }
    if (!store_has_room(r, json_array_size(doc))) {
        json_decref(doc);
        return;
    }
    struct cache_directives d;
    submission_directives(r, &d);
    struct batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        abort();
    b->ts = ts;
    b->doc = doc;
    b->count = json_array_size(doc);
    b->items = calloc(b->count, sizeof *b->items);
    if (b->items == NULL)
        abort();
    batch_split_init(&b->split, b->count);
    tasks_counters(ts)->batches++;
    json_t *seen = json_object();
    json_t *firsts = json_object();
    for (size_t i = 0; i < b->count; i++) {
        struct item *it = &b->items[i];
        it->doc = json_array_get(doc, i);
        sort_item(ts, it, i, seen, firsts, &d, r->sample);
        if (it->kind == BATCH_ITEM_UPSTREAM && srv->mode == PROXY_MODE_OFFLINE)
            it->kind = BATCH_ITEM_OFFLINE;
        if (it->kind != BATCH_ITEM_UPSTREAM) {
            batch_split_add(&b->split, i, it->kind);
            settle_local(b, i);
            continue;
        }
        it->leader = begin_upstream(ts, it, &d);
        if (srv->authorization == NULL && request_header(r, "Authorization") != NULL) {
            it->leader->authorization = strdup(request_header(r, "Authorization"));
            if (it->leader->authorization == NULL)
                abort();
        }
        batch_split_add(&b->split, i, it->kind);
    }
    json_decref(seen);
    json_decref(firsts);
    if (b->split.upstream_count == 0) {
        for (size_t i = 0; i < b->count; i++)
            if (b->items[i].kind == BATCH_ITEM_DUPLICATE)
                settle_duplicate(b, i); /* of an OFFLINE item: fails as it did */
        if (offline_only(b)) {
            reply_batch_offline(r, b);
            return;
        }
        r->cache_outcome = CACHE_OUTCOME_HIT;
        reply_merged(r, b, NULL);
        return;
    }
    tasks_counters(ts)->upstream_batches++;
    json_t *sent = batch_split_body(&b->split, doc, upstream_item_cb, srv);
    r->upstream_body = json_dumps(sent, JSON_COMPACT);
    json_decref(sent);
    if (r->upstream_body == NULL)
        abort();
    r->upstream_body_len = strlen(r->upstream_body);
    r->cache_outcome = CACHE_OUTCOME_MISS;
    r->hooks = &batch_hooks;
    r->hook_arg = b;
    forward_upstream(r);
}
