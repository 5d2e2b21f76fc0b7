/* cache_io.c: lookups, the storable test and stores, for forward.c. Reads
 * run on the loop (LMDB reads never wait on the writer); writes are queued.
 * Every answer stored goes through cache_io_store: it records the sample the
 * key names (key.h, entry.h) and, in record mode (mode.h), pins the answer
 * (expires_at_ms 0: never stale). */
#include "cache_io.h"
#include "artifacts.h"
#include "clock.h"
#include "forward.h"
#include "log.h"
#include "request.h"
#include "server.h"
#include "store.h"
#include "upstream.h"
#include "writer.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Finds the stored answer of key: first among puts not yet committed, then
 * in LMDB. A failure to read is counted and reads as a miss. */
bool cache_io_lookup(struct server *srv, const struct cache_key *key, struct cache_entry *out)
{
    unsigned char *record = NULL;
    size_t record_len = 0;
    if (cache_writer_pending(srv->writer, key->bytes, &record, &record_len)) {
        int rc = cache_entry_decode(record, record_len, out);
        free(record);
        if (rc == 0)
            return true;
    }
    switch (cache_store_get(srv->store, key->bytes, out, NULL)) {
    case CACHE_GET_FOUND:
        return true;
    case CACHE_GET_ABSENT:
        return false;
    case CACHE_GET_CORRUPT:
        srv->stats.cache_read_errors++;
        log_warn("cache_corrupt", "key=%s action=deleted", key->hex);
        cache_writer_delete(srv->writer, key->bytes);
        return false;
    case CACHE_GET_ERROR:
        break;
    }
    srv->stats.cache_read_errors++;
    return false;
}

/* True for an answer worth keeping: 2xx with "success": true (cloro-api.md
 * section 4), or goto's bare {"url": ...} (section 5.9). Never an error. */
bool cache_io_storable(const struct cache_entry *e)
{
    if (e->status < 200 || e->status >= 300)
        return false;
    json_t *doc = json_loadb((const char *)e->body, e->body_len, 0, NULL);
    bool ok =
        json_is_true(json_object_get(doc, "success")) ||
        (strcmp(e->provider, "google/goto") == 0 && json_is_string(json_object_get(doc, "url")));
    json_decref(doc);
    return ok;
}

#define ARTIFACTS_PER_ANSWER 16 /* Google: up to 10 pages */

/* Download jobs for the artifact URLs of an allowed host in an answer. */
static size_t artifact_jobs_of(struct server *srv, const struct cache_entry *e,
                               struct cache_job **out)
{
    struct artifact_url urls[ARTIFACTS_PER_ANSWER];
    size_t n = artifact_urls_find((const char *)e->body, e->body_len,
                                  artifacts_hosts(srv->artifacts), urls, ARTIFACTS_PER_ANSWER);
    struct cache_job *jobs = n > 0 ? calloc(n, sizeof *jobs) : NULL;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!urls[i].allowed)
            continue;
        struct cache_job *j = &jobs[count++];
        /* Same sizes on both sides (store.h): plain bounded copies. */
        memcpy(j->id, urls[i].id, sizeof j->id);
        memcpy(j->url, urls[i].url, sizeof j->url);
        j->id[sizeof j->id - 1] = '\0';
        j->url[sizeof j->url - 1] = '\0';
        j->state = CACHE_JOB_PENDING;
        j->created_ms = e->stored_at_ms;
        j->expires_ms = e->stored_at_ms + srv->cfg->artifact_ttl_ms;
    }
    if (count == 0) {
        free(jobs);
        jobs = NULL;
    }
    *out = jobs;
    return count;
}

void cache_io_store(struct server *srv, const struct cache_key *key, const struct cache_entry *e)
{
    struct cache_entry kept = *e; /* shallow: only the fields below change */
    kept.sample = key->sample >= 2 ? key->sample : 0;
    memcpy(kept.base_key, key->base, sizeof kept.base_key);
    if (srv->mode == PROXY_MODE_RECORD)
        kept.expires_at_ms = 0;
    e = &kept;
    unsigned char *record = NULL;
    size_t record_len = 0;
    if (cache_entry_encode(e, &record, &record_len) != 0) {
        srv->stats.cache_not_stored++;
        return;
    }
    /* The answer and the download jobs of its artifacts go in one txn: no
     * job is lost to a crash. The downloader starts at once; its captures are
     * queued after this put, so they land after the jobs exist. */
    struct cache_job *jobs = NULL;
    size_t job_count = srv->artifacts != NULL ? artifact_jobs_of(srv, e, &jobs) : 0;
    if (job_count > 0)
        artifacts_add(srv->artifacts, jobs, job_count);
    cache_writer_put(srv->writer, key->bytes, record, record_len, e->stored_at_ms, jobs, job_count);
}

void cache_io_capture_artifacts(struct server *srv, const struct cache_entry *e)
{
    struct cache_job *jobs = NULL;
    size_t count = srv->artifacts != NULL ? artifact_jobs_of(srv, e, &jobs) : 0;
    if (count == 0)
        return;
    artifacts_add(srv->artifacts, jobs, count);
    for (size_t i = 0; i < count; i++)
        cache_writer_new_job(srv->writer, &jobs[i]);
    free(jobs);
}

/* The canonical text of r's body (key.h), made once and owned by r; NULL
 * when it has none. */
static const char *canonical_of(struct request *r)
{
    if (r->canonical == NULL && r->keyed) {
        struct evbuffer *body = request_body(r);
        size_t len = body != NULL ? evbuffer_get_length(body) : 0;
        if (len > 0)
            r->canonical = cache_key_canonical(r->method, r->path, evbuffer_pullup(body, -1), len);
    }
    return r->canonical;
}

/* The answer the upstream just gave, as an entry (borrowing from res). */
void cache_io_entry_from_result(struct request *r, const struct upstream_result *res,
                                struct cache_header *headers, struct cache_entry *e)
{
    const struct config *cfg = r->server->cfg;
    memset(e, 0, sizeof *e);
    e->status = (int)res->status;
    e->stored_at_ms = clock_wall_ms();
    int64_t ttl = config_cache_ttl_ms(cfg, r->keyed ? r->key.provider : NULL);
    e->expires_at_ms = ttl == 0 || r->server->mode == PROXY_MODE_RECORD ? 0 : e->stored_at_ms + ttl;
    e->provider = (char *)(r->keyed ? r->key.provider : "");
    e->request_id = (char *)"";
    for (size_t i = 0; i < res->header_count && e->header_count < CACHE_ENTRY_MAX_HEADERS; i++) {
        const struct upstream_header *h = &res->headers[i];
        if (!forward_relays_response_header(h->name))
            continue;
        headers[e->header_count].name = (char *)h->name;
        headers[e->header_count].value = (char *)h->value;
        e->header_count++;
        if (strcasecmp(h->name, "X-Request-ID") == 0)
            e->request_id = (char *)h->value;
        if (strcasecmp(h->name, "X-Credits-Charged") == 0)
            e->credits_charged = strtoll(h->value, NULL, 10);
    }
    e->headers = headers;
    e->body_len = evbuffer_get_length(res->body);
    static unsigned char empty[1];
    e->body = e->body_len > 0 ? evbuffer_pullup(res->body, -1) : empty;
    if (e->status >= 200 && e->status < 300)
        e->request = (char *)canonical_of(r);
}
