/* admin_cache.c: the /_proxy/cache/ endpoints. Counters come from the server (outcomes,
 * credits saved), the store (entries, bytes, evictions) and the writer
 * (queue, commits, drops); entry views never include a key or a token, only
 * what cloro answered. */
#include "admin_cache.h"
#include "clock.h"
#include "coalescer.h"
#include "config.h"
#include "entry.h"
#include "key.h"
#include "policy.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "store.h"
#include "writer.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool cache_on(struct request *r)
{
    if (r->server->store != NULL)
        return true;
    reply_error(r, PROXY_ERROR_CACHE_DISABLED, NULL, NULL);
    return false;
}

static json_t *iso_or_null(int64_t wall_ms)
{
    if (wall_ms == 0)
        return json_null();
    char ts[32];
    return json_string(clock_format_iso8601(ts, sizeof ts, wall_ms));
}

void admin_cache_stats(struct request *r)
{
    if (!cache_on(r))
        return;
    struct server *srv = r->server;
    const struct server_stats *s = &srv->stats;
    struct cache_store_stats st = {0};
    if (cache_store_stats(srv->store, &st) != 0)
        srv->stats.cache_read_errors++;
    struct cache_writer_stats ws;
    cache_writer_stats(srv->writer, &ws);
    uint64_t hits = s->cache_by_outcome[CACHE_OUTCOME_HIT];
    uint64_t stale = s->cache_by_outcome[CACHE_OUTCOME_STALE];
    uint64_t coalesced = s->cache_by_outcome[CACHE_OUTCOME_COALESCED];
    uint64_t misses = s->cache_by_outcome[CACHE_OUTCOME_MISS];
    uint64_t refresh = s->cache_by_outcome[CACHE_OUTCOME_REFRESH];
    uint64_t answered = hits + stale + coalesced;
    uint64_t lookups = answered + misses + refresh;
    json_t *body = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I,"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I}}",
        "entries", (json_int_t)st.entries, "bytes", (json_int_t)st.bytes, "max_bytes",
        (json_int_t)st.max_bytes, "map_bytes", (json_int_t)st.map_bytes, "hits", (json_int_t)hits,
        "misses", (json_int_t)misses, "stale", (json_int_t)stale, "coalesced",
        (json_int_t)coalesced, "bypass", (json_int_t)s->cache_by_outcome[CACHE_OUTCOME_BYPASS],
        "refresh", (json_int_t)refresh, "hit_ratio",
        lookups > 0 ? (double)answered / (double)lookups : 0.0, "credits_saved",
        (json_int_t)s->cache_credits_saved, "evictions", (json_int_t)st.evictions, "dropped",
        (json_int_t)(st.dropped + ws.dropped + s->cache_not_stored), "store_errors",
        (json_int_t)(s->cache_read_errors + ws.failed), "read_errors",
        (json_int_t)s->cache_read_errors, "writer", "queued", (json_int_t)ws.queued, "committed",
        (json_int_t)ws.committed, "dropped", (json_int_t)ws.dropped, "failed",
        (json_int_t)ws.failed, "evicted", (json_int_t)ws.evicted, "batches", (json_int_t)ws.batches,
        "in_flight", "calls", (json_int_t)coalescer_flights(srv->coalescer), "waiting",
        (json_int_t)coalescer_waiting(srv->coalescer));
    if (body == NULL)
        abort();
    /* The pages the store's file uses (its free pages left out). */
    json_object_set_new(body, "file_bytes", json_integer((json_int_t)st.file_bytes));
    reply_json(r, 200, body);
}

static json_t *entry_view(const struct cache_key *key, const struct cache_entry *e,
                          const struct cache_meta *m)
{
    int64_t now = clock_wall_ms();
    json_t *headers = json_object();
    for (size_t i = 0; i < e->header_count; i++)
        json_object_set_new(headers, e->headers[i].name, json_string(e->headers[i].value));
    json_t *view =
        json_pack("{s:s, s:s, s:i, s:o, s:o, s:I, s:o, s:I, s:I, s:o, s:s, s:I, s:o}", "key",
                  key->hex, "provider", e->provider, "status", e->status, "stored_at",
                  iso_or_null(e->stored_at_ms), "expires_at", iso_or_null(e->expires_at_ms),
                  "age_s", (json_int_t)cache_policy_age_s(e->stored_at_ms, now), "ttl_s",
                  e->expires_at_ms == 0 ? json_null()
                                        : json_integer(cache_policy_ttl_s(e->expires_at_ms, now)),
                  "hits", (json_int_t)m->hits, "credits_charged", (json_int_t)e->credits_charged,
                  "last_hit", iso_or_null(m->last_hit_ms), "request_id", e->request_id,
                  "body_bytes", (json_int_t)e->body_len, "headers", headers);
    if (view == NULL)
        abort();
    /* X-Cache-Sample (key.h): which sample, and the key of sample 1. */
    json_object_set_new(view, "sample", json_integer(e->sample >= 2 ? e->sample : 1));
    if (e->sample >= 2) {
        char base[CACHE_KEY_HEX_LEN + 1];
        for (int i = 0; i < CACHE_KEY_BYTES; i++)
            snprintf(base + 2 * i, 3, "%02x", e->base_key[i]);
        json_object_set_new(view, "base_key", json_string(base));
    }
    return view;
}

void admin_cache_entry(struct request *r)
{
    if (!cache_on(r))
        return;
    struct server *srv = r->server;
    const char *hex = r->path + strlen("/_proxy/cache/entries/");
    struct cache_key key;
    if (cache_key_parse_hex(hex, &key) != 0) {
        json_t *details = json_pack("[{s:s, s:s}]", "field", "key", "message",
                                    "a cache key is 64 hexadecimal digits");
        reply_error(r, PROXY_ERROR_VALIDATION, NULL, details);
        return;
    }
    struct cache_entry e;
    struct cache_meta m;
    enum cache_get_result got = cache_store_get(srv->store, key.bytes, &e, &m);
    if (got != CACHE_GET_FOUND) {
        json_t *details = json_pack("{s:s}", "id", key.hex);
        reply_error(r, PROXY_ERROR_NOT_FOUND, "No cache entry with this key", details);
        return;
    }
    json_t *view = entry_view(&key, &e, &m);
    cache_entry_free(&e);
    if (strcmp(r->method, "DELETE") == 0) {
        cache_writer_delete(srv->writer, key.bytes);
        json_object_set_new(view, "deleted", json_true());
    }
    reply_json(r, 200, view);
}

struct purge_scan {
    const char *provider;
    int64_t stored_before_ms;
    unsigned char (*keys)[CACHE_KEY_BYTES];
    size_t count, cap;
};

static int on_purge_candidate(const unsigned char *key, const struct cache_meta *m, void *arg)
{
    struct purge_scan *scan = arg;
    if (scan->provider != NULL && strcmp(scan->provider, m->provider) != 0)
        return 0;
    if (scan->stored_before_ms != 0 && m->stored_at_ms >= scan->stored_before_ms)
        return 0;
    if (scan->count == scan->cap) {
        scan->cap = scan->cap == 0 ? 256 : scan->cap * 2;
        scan->keys = realloc(scan->keys, scan->cap * sizeof *scan->keys);
        if (scan->keys == NULL)
            abort();
    }
    memcpy(scan->keys[scan->count++], key, CACHE_KEY_BYTES);
    return 0;
}

static void purge_invalid(struct request *r, const char *field, const char *message)
{
    json_t *details = json_pack("[{s:s, s:s}]", "field", field, "message", message);
    reply_error(r, PROXY_ERROR_VALIDATION, NULL, details);
}

void admin_cache_purge(struct request *r)
{
    if (!cache_on(r))
        return;
    struct server *srv = r->server;
    struct evbuffer *buf = request_body(r);
    size_t len = evbuffer_get_length(buf);
    json_error_t jerr;
    json_t *doc = json_loadb(len > 0 ? (const char *)evbuffer_pullup(buf, -1) : "{}",
                             len > 0 ? len : 2, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        purge_invalid(r, "body", "expected a JSON object such as {\"all\":true}");
        return;
    }
    struct purge_scan scan = {0};
    bool all = false;
    const char *field;
    json_t *value;
    json_object_foreach(doc, field, value)
    {
        if (strcmp(field, "all") == 0 && json_is_boolean(value)) {
            all = json_is_true(value);
        } else if (strcmp(field, "provider") == 0 && json_is_string(value)) {
            char path[64];
            snprintf(path, sizeof path, "/v1/monitor/%s", json_string_value(value));
            if (cache_key_provider("POST", path) == NULL) {
                json_decref(doc);
                purge_invalid(r, "provider",
                              "not a provider: chatgpt, gemini, grok, copilot, perplexity, "
                              "aimode, google, google/news or google/goto");
                return;
            }
            scan.provider = json_string_value(value);
        } else if (strcmp(field, "older_than") == 0 &&
                   (json_is_integer(value) || json_is_string(value))) {
            int64_t ms = 0;
            if (json_is_integer(value) && json_integer_value(value) >= 0)
                ms = json_integer_value(value) * 1000;
            else if (!json_is_string(value) ||
                     config_parse_duration_ms(json_string_value(value), &ms) != 0)
                ms = -1;
            if (ms < 0) {
                json_decref(doc);
                purge_invalid(r, "older_than", "expected seconds or a duration like 30m");
                return;
            }
            scan.stored_before_ms = clock_wall_ms() - ms;
        } else {
            char message[160];
            snprintf(message, sizeof message,
                     "unknown or mistyped field '%s'; use all (boolean), provider (string), "
                     "older_than (seconds or a duration)",
                     field);
            json_decref(doc);
            purge_invalid(r, "body", message);
            return;
        }
    }
    if (!all && scan.provider == NULL && scan.stored_before_ms == 0) {
        json_decref(doc);
        purge_invalid(r, "body", "say what to purge: {\"all\":true}, provider, or older_than");
        return;
    }
    if (cache_store_foreach(srv->store, on_purge_candidate, &scan) != 0)
        srv->stats.cache_read_errors++;
    for (size_t i = 0; i < scan.count; i++)
        cache_writer_delete(srv->writer, scan.keys[i]);
    json_t *body = json_pack("{s:b, s:I}", "success", 1, "purged", (json_int_t)scan.count);
    free(scan.keys);
    json_decref(doc);
    reply_json(r, 200, body);
}
