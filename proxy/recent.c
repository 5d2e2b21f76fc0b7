/* recent.c: the ring of the last requests and the per-minute counts of
 * recent.h. Fixed size: RECENT_MAX entries and RECENT_MINUTES buckets,
 * allocated once; recording is a copy into the next slot. */
#include "recent.h"
#include "clock.h"
#include "ids.h"
#include "reply.h"
#include "request.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest path and id kept; longer ones are cut (they are only labels). */
#define RECENT_PATH_MAX 256
#define RECENT_ID_MAX   129

struct recent_entry {
    int64_t at_ms;
    int64_t latency_us;
    int status;
    enum cache_outcome cache;
    const char *method; /* static */
    char path[RECENT_PATH_MAX];
    char id[IDS_UUID_LEN + 1];
    char upstream_id[RECENT_ID_MAX]; /* "" when none */
    char client_id[RECENT_ID_MAX];   /* "" when none */
    char member[64];                 /* "" when auth is open */
    char error[48];                  /* the proxy's own error code, "" when it relayed */
};

struct recent_minute {
    int64_t minute; /* wall minutes since the epoch this bucket counts */
    uint64_t requests, hits, errors;
};

struct recent {
    struct recent_entry ring[RECENT_MAX];
    size_t next;  /* slot of the next entry */
    size_t count; /* entries held, up to RECENT_MAX */
    uint64_t total;
    struct recent_minute minutes[RECENT_MINUTES];
};

struct recent *recent_new(void)
{
    struct recent *rc = calloc(1, sizeof *rc);
    if (rc == NULL)
        abort();
    for (size_t i = 0; i < RECENT_MINUTES; i++)
        rc->minutes[i].minute = -1;
    return rc;
}

void recent_free(struct recent *rc)
{
    free(rc);
}

bool recent_records_path(const char *path)
{
    static const char admin[] = "/_proxy";
    static const char artifacts[] = "/_proxy/artifacts/";
    if (strncmp(path, admin, sizeof admin - 1) != 0)
        return true;
    char after = path[sizeof admin - 1];
    if (after != '\0' && after != '/')
        return true; /* "/_proxyfoo": not the proxy's own */
    return strncmp(path, artifacts, sizeof artifacts - 1) == 0;
}

/* Copies s (may be NULL) as printable ASCII, cut to fit: what is shown and
 * turned into JSON strings must be valid text whatever a client sent. */
static void copy_label(char *out, size_t size, const char *s)
{
    size_t n = 0;
    for (; s != NULL && s[n] != '\0' && n + 1 < size; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
}

static bool answered_without_upstream(enum cache_outcome c)
{
    return c == CACHE_OUTCOME_HIT || c == CACHE_OUTCOME_STALE || c == CACHE_OUTCOME_COALESCED;
}

void recent_record(struct recent *rc, const struct request *r, int status, int64_t now_ms)
{
    if (rc == NULL || !recent_records_path(r->path))
        return;
    struct recent_entry *e = &rc->ring[rc->next];
    e->at_ms = now_ms;
    e->latency_us = clock_mono_us() - r->started_us;
    e->status = status;
    e->cache = r->cache_outcome;
    e->method = r->method;
    copy_label(e->path, sizeof e->path, r->path);
    copy_label(e->id, sizeof e->id, r->id);
    copy_label(e->upstream_id, sizeof e->upstream_id, r->upstream_request_id);
    copy_label(e->client_id, sizeof e->client_id, r->client_request_id);
    copy_label(e->member, sizeof e->member, r->member);
    copy_label(e->error, sizeof e->error, r->error_code);
    rc->next = (rc->next + 1) % RECENT_MAX;
    if (rc->count < RECENT_MAX)
        rc->count++;
    rc->total++;

    int64_t minute = now_ms / 60000;
    struct recent_minute *m = &rc->minutes[minute % RECENT_MINUTES];
    if (m->minute != minute)
        *m = (struct recent_minute){.minute = minute};
    m->requests++;
    if (answered_without_upstream(e->cache))
        m->hits++;
    if (status >= 400)
        m->errors++;
}

static json_t *string_or_null(const char *s)
{
    return s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *entry_json(const struct recent_entry *e)
{
    char at[32];
    clock_format_iso8601(at, sizeof at, e->at_ms);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:i, s:s, s:f, s:s, s:o, s:o, s:o, s:o}", "at", at, "method", e->method,
        "path", e->path, "status", e->status, "cache", request_cache_outcome_name(e->cache),
        "latency_ms", (double)e->latency_us / 1000.0, "id", e->id, "upstream_request_id",
        string_or_null(e->upstream_id), "client_request_id", string_or_null(e->client_id), "member",
        string_or_null(e->member), "error", string_or_null(e->error));
    if (o == NULL)
        abort();
    return o;
}

json_t *recent_json(const struct recent *rc, int64_t now_ms)
{
    char now[32];
    clock_format_iso8601(now, sizeof now, now_ms);
    json_t *requests = json_array();
    json_t *minutes = json_array();
    if (requests == NULL || minutes == NULL)
        abort();
    size_t count = rc != NULL ? rc->count : 0;
    for (size_t i = 0; i < count; i++) {
        size_t slot = (rc->next + RECENT_MAX - 1 - i) % RECENT_MAX;
        json_array_append_new(requests, entry_json(&rc->ring[slot]));
    }
    int64_t current = now_ms / 60000;
    for (int64_t minute = current - (RECENT_MINUTES - 1); minute <= current; minute++) {
        const struct recent_minute *m =
            rc != NULL && minute >= 0 ? &rc->minutes[minute % RECENT_MINUTES] : NULL;
        bool held = m != NULL && m->minute == minute;
        char at[32];
        clock_format_iso8601(at, sizeof at, minute * 60000);
        json_t *o = json_pack(
            "{s:s, s:I, s:I, s:I}", "minute", at, "requests", (json_int_t)(held ? m->requests : 0),
            "hits", (json_int_t)(held ? m->hits : 0), "errors", (json_int_t)(held ? m->errors : 0));
        if (o == NULL)
            abort();
        json_array_append_new(minutes, o);
    }
    json_t *body = json_pack("{s:s, s:I, s:i, s:o, s:o}", "now", now, "requests_total",
                             (json_int_t)(rc != NULL ? rc->total : 0), "capacity", RECENT_MAX,
                             "requests", requests, "per_minute", minutes);
    if (body == NULL)
        abort();
    return body;
}

void recent_serve(struct request *r)
{
    reply_json(r, 200, recent_json(r->server->recent, clock_wall_ms()));
}
