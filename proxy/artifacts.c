/* artifacts.c: the download queue, the fetches and local serving.
 *
 * DESIGN: every job not yet captured or lost sits in `queue` (an array; a
 * few thousand at most, scanned linearly). dispatch() starts the ready job
 * (next_attempt due) that expires first while fewer than
 * artifact_concurrency fetches run; a timer wakes it for the next due job.
 * A fetch that succeeds is compressed and handed to the writer (job and
 * blob in one txn) and kept in memory until the writer has surely committed
 * it (RECENT_MS), so a request right after capture is served from memory. A
 * failed fetch is retried with doubling backoff until the job's expiry; then
 * it is lost. Requests for a queued job make it due at once and wait (at
 * most artifact_wait) on the job's waiting list.
 *
 * Offline (mode.h) the downloader is paused: dispatch starts no fetch
 * (fetches already running finish), captured copies are served as ever and a
 * page not captured yet is 504 OFFLINE_CACHE_MISS at once;
 * artifacts_resume dispatches again when the proxy is back online. */
#include "artifacts.h"
#include "clock.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "store.h"
#include "upstream.h"
#include "writer.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define RECENT_MS        5000  /* captured copies kept in memory this long */
#define FETCH_TIMEOUT_MS 60000 /* one download attempt */
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS   60000

struct job_slot {
    struct cache_job job;
    bool fetching;
    struct upstream_transfer *transfer;
    struct artifacts *owner;
    struct request *waiters; /* linked through next_waiter */
    /* Captured, not yet surely committed: served from here. */
    unsigned char *gzip;
    size_t gzip_len;
    int64_t captured_at_ms;
};

struct artifacts {
    struct server *srv;
    struct artifact_hosts hosts;
    struct job_slot **queue; /* pending and recently captured jobs */
    size_t count, cap;
    int in_flight;
    struct event *timer;
    uint64_t downloads, failures, retries, oversized;
    int64_t rescanned_ms;
};

static void dispatch(struct artifacts *a);

static struct job_slot *find(struct artifacts *a, const char *id)
{
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->queue[i]->job.id, id) == 0)
            return a->queue[i];
    return NULL;
}

static struct job_slot *enqueue(struct artifacts *a, const struct cache_job *job)
{
    struct job_slot *slot = find(a, job->id);
    if (slot != NULL)
        return slot;
    if (a->count == a->cap) {
        a->cap = a->cap == 0 ? 64 : a->cap * 2;
        a->queue = realloc(a->queue, a->cap * sizeof *a->queue);
        if (a->queue == NULL)
            abort();
    }
    slot = calloc(1, sizeof *slot);
    if (slot == NULL)
        abort();
    slot->job = *job;
    slot->owner = a;
    a->queue[a->count++] = slot;
    return slot;
}

static void drop(struct artifacts *a, struct job_slot *slot)
{
    for (size_t i = 0; i < a->count; i++) {
        if (a->queue[i] == slot) {
            a->queue[i] = a->queue[--a->count];
            break;
        }
    }
    free(slot->gzip);
    free(slot);
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    dispatch(arg);
}

static int load_pending(const struct cache_job *job, void *arg)
{
    if (job->state == CACHE_JOB_PENDING)
        enqueue(arg, job);
    return 0;
}

struct artifacts *artifacts_new(struct server *srv)
{
    struct artifacts *a = calloc(1, sizeof *a);
    if (a == NULL)
        abort();
    a->srv = srv;
    char err[256];
    if (artifact_hosts_parse(srv->cfg->artifact_hosts, &a->hosts, err, sizeof err) != 0) {
        log_error("artifacts", "error=\"artifact_hosts: %s\"", err);
        free(a);
        return NULL;
    }
    a->timer = evtimer_new(srv->base, on_timer, a);
    if (a->timer == NULL)
        abort();
    if (srv->store != NULL && cache_store_foreach_job(srv->store, load_pending, a) != 0)
        log_warn("artifacts", "error=\"could not read the pending jobs\"");
    if (a->count > 0)
        log_info("artifacts", "pending=%zu resumed=true", a->count);
    a->rescanned_ms = clock_wall_ms();
    dispatch(a);
    return a;
}

void artifacts_free(struct artifacts *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->count; i++) {
        struct job_slot *slot = a->queue[i];
        if (slot->transfer != NULL)
            upstream_cancel(slot->transfer);
        free(slot->gzip);
        free(slot);
    }
    free(a->queue);
    event_free(a->timer);
    artifact_hosts_free(&a->hosts);
    free(a);
}

const struct artifact_hosts *artifacts_hosts(const struct artifacts *a)
{
    return &a->hosts;
}

void artifacts_add(struct artifacts *a, const struct cache_job *jobs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        enqueue(a, &jobs[i]);
    dispatch(a);
}

/* gzip (RFC 1952) of data; returns 0 and a new buffer, or -1. */
static int gzip_compress(const unsigned char *data, size_t len, unsigned char **out,
                         size_t *out_len)
{
    z_stream z = {0};
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&z, (uLong)len) + 32;
    unsigned char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* Inflates a gzip buffer into out (appended). Returns 0, or -1. */
static int gzip_inflate(const unsigned char *data, size_t len, struct evbuffer *out)
{
    z_stream z = {0};
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    unsigned char chunk[16384];
    int rc;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&z);
            return -1;
        }
        evbuffer_add(out, chunk, sizeof chunk - z.avail_out);
    } while (rc != Z_STREAM_END);
    inflateEnd(&z);
    return 0;
}

static void hex32(const unsigned char *bytes, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* --- serving --------------------------------------------------------- */

/* Sends the artifact in gzip (as stored) or inflated, with its ETag. */
static void send_copy(struct request *r, const struct cache_job *job, const unsigned char *gzip,
                      size_t gzip_len)
{
    char etag[70], hex[65];
    hex32(job->blob, hex);
    snprintf(etag, sizeof etag, "\"%s\"", hex);
    request_add_header(r, "ETag", etag);
    request_add_header(r, "Cache-Control", "public, max-age=31536000, immutable");
    request_add_header(r, "Vary", "Accept-Encoding");
    request_add_header(r, "Content-Type",
                       job->content_type[0] != '\0' ? job->content_type : "text/html");
    const char *inm = request_header(r, "If-None-Match");
    if (inm != NULL && (strstr(inm, hex) != NULL || strcmp(inm, "*") == 0)) {
        request_send(r, 304, NULL);
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (body == NULL)
        abort();
    const char *accept = request_header(r, "Accept-Encoding");
    if (accept != NULL && strstr(accept, "gzip") != NULL) {
        request_add_header(r, "Content-Encoding", "gzip");
        evbuffer_add(body, gzip, gzip_len);
    } else if (gzip_inflate(gzip, gzip_len, body) != 0) {
        evbuffer_free(body);
        reply_error(r, PROXY_ERROR_INTERNAL, "The stored artifact cannot be read", NULL);
        return;
    }
    request_send(r, 200, body);
    evbuffer_free(body);
}

static void reply_lost(struct request *r, const struct cache_job *job)
{
    json_t *details = json_pack("{s:s, s:s}", "id", job->id, "reason", job->note);
    reply_error(r, PROXY_ERROR_ARTIFACT_EXPIRED, NULL, details);
}

/* Answers everyone waiting on a slot, now that it was captured or lost. */
static void answer_waiters(struct job_slot *slot)
{
    struct request *w = slot->waiters;
    slot->waiters = NULL;
    while (w != NULL) {
        struct request *next = w->next_waiter;
        if (w->retry_timer != NULL) {
            event_free(w->retry_timer);
            w->retry_timer = NULL;
        }
        if (slot->job.state == CACHE_JOB_CAPTURED)
            send_copy(w, &slot->job, slot->gzip, slot->gzip_len);
        else
            reply_lost(w, &slot->job);
        w = next;
    }
}

static void on_wait_timeout(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct request *r = arg;
    struct artifacts *a = r->server->artifacts;
    /* Unlink r from whichever slot it waits on. */
    for (size_t i = 0; i < a->count; i++) {
        struct request **link = &a->queue[i]->waiters;
        while (*link != NULL && *link != r)
            link = &(*link)->next_waiter;
        if (*link == r) {
            *link = r->next_waiter;
            break;
        }
    }
    json_t *details = json_pack("{s:s}", "path", r->path);
    reply_error(r, PROXY_ERROR_ARTIFACT_PENDING, NULL, details);
}

/* A page not captured, while the proxy may not fetch it (offline). */
static void offline_miss(struct request *r, const char *id)
{
    r->server->stats.offline_misses++;
    json_t *details = json_pack("{s:s, s:s}", "id", id, "reason",
                                "the page is not captured yet and the proxy is offline");
    reply_error(r, PROXY_ERROR_OFFLINE_CACHE_MISS, NULL, details);
}

/* Whether text (n bytes) has an artifact id's shape: what artifact_urls_id
 * makes ("<uuid>/page-<n>", "x<hex>/page-1") is lowercase letters, digits, '-'
 * and '/'. Anything else (dots, '%', '\\', NUL) is no id: answered 404 before
 * any lookup. */
static bool id_shape(const char *text, size_t n)
{
    if (n == 0 || text[0] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '/'))
            return false;
    }
    return true;
}

void artifacts_serve(struct request *r)
{
    struct server *srv = r->server;
    struct artifacts *a = srv->artifacts;
    const char *rest = r->path + strlen("/_proxy/artifacts/");
    size_t len = strlen(rest);
    char id[CACHE_ARTIFACT_ID_MAX];
    if (a == NULL || srv->store == NULL) {
        reply_error(r, PROXY_ERROR_CACHE_DISABLED, NULL, NULL);
        return;
    }
    if (len < 6 || len - 5 >= sizeof id || strcmp(rest + len - 5, ".html") != 0 ||
        !id_shape(rest, len - 5)) {
        json_t *details = json_pack("{s:s}", "id", r->path);
        reply_error(r, PROXY_ERROR_NOT_FOUND, "No such artifact", details);
        return;
    }
    snprintf(id, sizeof id, "%.*s", (int)(len - 5), rest);

    struct job_slot *slot = find(a, id);
    if (slot != NULL && slot->gzip != NULL) {
        send_copy(r, &slot->job, slot->gzip, slot->gzip_len);
        return;
    }
    struct cache_job job;
    if (slot == NULL) {
        enum cache_get_result got = cache_store_get_job(srv->store, id, &job);
        if (got != CACHE_GET_FOUND) {
            json_t *details = json_pack("{s:s}", "id", id);
            reply_error(r, PROXY_ERROR_NOT_FOUND, "No such artifact", details);
            return;
        }
        if (job.state == CACHE_JOB_LOST) {
            reply_lost(r, &job);
            return;
        }
        if (job.state == CACHE_JOB_CAPTURED) {
            unsigned char *gzip = NULL;
            size_t gzip_len = 0;
            if (cache_store_get_blob(srv->store, job.blob, &gzip, &gzip_len) != CACHE_GET_FOUND) {
                reply_error(r, PROXY_ERROR_INTERNAL, "The stored artifact cannot be read", NULL);
                return;
            }
            send_copy(r, &job, gzip, gzip_len);
            free(gzip);
            return;
        }
        slot = enqueue(a, &job); /* pending in the store, not here yet */
    }
    if (srv->mode == PROXY_MODE_OFFLINE) {
        offline_miss(r, id); /* the job stays queued for when the proxy is back online */
        return;
    }
    /* Still to capture: fetch it now, wait for it (bounded). */
    slot->job.next_attempt_ms = 0;
    r->next_waiter = slot->waiters;
    slot->waiters = r;
    r->retry_timer = evtimer_new(srv->base, on_wait_timeout, r);
    if (r->retry_timer == NULL)
        abort();
    struct timeval tv = {.tv_sec = srv->cfg->artifact_wait_ms / 1000,
                         .tv_usec = (srv->cfg->artifact_wait_ms % 1000) * 1000};
    evtimer_add(r->retry_timer, &tv);
    dispatch(a);
}

/* --- downloading ------------------------------------------------------ */

static void settle_lost(struct artifacts *a, struct job_slot *slot, const char *why)
{
    slot->job.state = CACHE_JOB_LOST;
    snprintf(slot->job.note, sizeof slot->job.note, "%s", why);
    if (a->srv->writer != NULL)
        cache_writer_job(a->srv->writer, &slot->job);
    log_warn("artifact_lost", "id=%s attempts=%u reason=\"%s\"", slot->job.id, slot->job.attempts,
             why);
    answer_waiters(slot);
    drop(a, slot);
}

static void on_fetched(const struct upstream_result *res, void *arg)
{
    struct job_slot *slot = arg;
    struct artifacts *a = slot->owner;
    slot->transfer = NULL;
    slot->fetching = false;
    a->in_flight--;
    int64_t now = clock_wall_ms();
    if (res->outcome == UPSTREAM_TOO_LARGE) {
        a->oversized++;
        settle_lost(a, slot, "larger than max_artifact_bytes");
        dispatch(a);
        return;
    }
    if (res->outcome == UPSTREAM_OK && res->status == 200) {
        size_t len = evbuffer_get_length(res->body);
        const unsigned char *data = len > 0 ? evbuffer_pullup(res->body, -1) : NULL;
        unsigned char *gzip = NULL;
        size_t gzip_len = 0;
        if (gzip_compress(data != NULL ? data : (const unsigned char *)"", len, &gzip, &gzip_len) ==
            0) {
            SHA256(data != NULL ? data : (const unsigned char *)"", len, slot->job.blob);
            slot->job.state = CACHE_JOB_CAPTURED;
            slot->job.size = len;
            slot->job.note[0] = '\0';
            slot->job.content_type[0] = '\0';
            for (size_t i = 0; i < res->header_count; i++)
                if (strcasecmp(res->headers[i].name, "Content-Type") == 0)
                    snprintf(slot->job.content_type, sizeof slot->job.content_type, "%s",
                             res->headers[i].value);
            unsigned char *copy = malloc(gzip_len);
            if (copy == NULL)
                abort();
            memcpy(copy, gzip, gzip_len);
            cache_writer_capture(a->srv->writer, &slot->job, copy, gzip_len);
            slot->gzip = gzip;
            slot->gzip_len = gzip_len;
            slot->captured_at_ms = now;
            answer_waiters(slot);
            dispatch(a);
            return;
        }
        free(gzip);
    }
    /* A failed attempt: again later, while the artifact may still be there. */
    a->failures++;
    char why[24];
    if (res->outcome != UPSTREAM_OK)
        snprintf(why, sizeof why, "%.20s", upstream_outcome_name(res->outcome));
    else
        snprintf(why, sizeof why, "HTTP %ld", res->status);
    /* Doubling backoff scaled to the artifact's lifetime, so even a short
     * window (tests use seconds) leaves room for a dozen attempts. */
    int64_t window = slot->job.expires_ms - slot->job.created_ms;
    int64_t base = window / 40 < BACKOFF_FIRST_MS ? window / 40 : BACKOFF_FIRST_MS;
    base = base < 50 ? 50 : base;
    int64_t cap = window / 10 < BACKOFF_MAX_MS ? window / 10 : BACKOFF_MAX_MS;
    cap = cap < base ? base : cap;
    int64_t backoff = base << (slot->job.attempts < 12 ? slot->job.attempts - 1 : 11);
    if (backoff > cap)
        backoff = cap;
    backoff = backoff / 2 + (int64_t)(ids_random(&a->srv->ids) % (uint64_t)(backoff / 2 + 1));
    if (now + backoff >= slot->job.expires_ms) {
        char lost[64];
        snprintf(lost, sizeof lost, "expired before capture (last: %s)", why);
        settle_lost(a, slot, lost);
    } else {
        a->retries++;
        slot->job.next_attempt_ms = now + backoff;
        snprintf(slot->job.note, sizeof slot->job.note, "%s", why);
        cache_writer_job(a->srv->writer, &slot->job);
    }
    dispatch(a);
}

static void start_fetch(struct artifacts *a, struct job_slot *slot)
{
    struct upstream_call call = {
        .method = "GET",
        .url = slot->job.url,
        .timeout_ms = FETCH_TIMEOUT_MS,
        .max_bytes = a->srv->cfg->max_artifact_bytes,
    };
    slot->job.attempts++;
    a->downloads++;
    slot->transfer = upstream_start(a->srv->upstream, &call, on_fetched, slot);
    if (slot->transfer == NULL) {
        slot->job.next_attempt_ms = clock_wall_ms() + BACKOFF_FIRST_MS;
        return;
    }
    slot->fetching = true;
    a->in_flight++;
}

static void dispatch(struct artifacts *a)
{
    int64_t now = clock_wall_ms();
    int64_t wake = INT64_MAX;
    /* Captured copies the writer has surely committed leave memory. */
    for (size_t i = 0; i < a->count;) {
        struct job_slot *s = a->queue[i];
        if (s->gzip != NULL && now - s->captured_at_ms > RECENT_MS) {
            drop(a, s);
            continue;
        }
        if (s->gzip != NULL && s->captured_at_ms + RECENT_MS + 1 < wake)
            wake = s->captured_at_ms + RECENT_MS + 1;
        i++;
    }
    /* Jobs tried at least once and past their expiry are lost. */
    for (size_t i = 0; i < a->count;) {
        struct job_slot *s = a->queue[i];
        if (!s->fetching && s->gzip == NULL && s->job.attempts > 0 && now >= s->job.expires_ms)
            settle_lost(a, s, "expired before capture"); /* drops it: i now holds another */
        else
            i++;
    }
    while (a->srv->mode != PROXY_MODE_OFFLINE && a->in_flight < a->srv->cfg->artifact_concurrency) {
        struct job_slot *best = NULL;
        for (size_t i = 0; i < a->count; i++) {
            struct job_slot *s = a->queue[i];
            if (s->fetching || s->gzip != NULL)
                continue;
            if (s->job.next_attempt_ms > now) {
                if (s->job.next_attempt_ms < wake)
                    wake = s->job.next_attempt_ms;
                continue;
            }
            if (best == NULL || s->job.expires_ms < best->job.expires_ms)
                best = s;
        }
        if (best == NULL)
            break;
        start_fetch(a, best);
    }
    if (wake != INT64_MAX) {
        int64_t in = wake - now > 0 ? wake - now : 1;
        struct timeval tv = {.tv_sec = in / 1000, .tv_usec = (in % 1000) * 1000};
        evtimer_add(a->timer, &tv);
    }
}

void artifacts_resume(struct artifacts *a)
{
    dispatch(a);
}

void artifacts_tick(struct artifacts *a)
{
    int64_t now = clock_wall_ms();
    if (now - a->rescanned_ms < 30000)
        return;
    a->rescanned_ms = now;
    size_t before = a->count;
    if (cache_store_foreach_job(a->srv->store, load_pending, a) != 0)
        return;
    if (a->count > before) {
        log_info("artifacts", "requeued=%zu", a->count - before);
        dispatch(a);
    }
}

json_t *artifacts_stats(const struct artifacts *a)
{
    struct cache_store_stats st = {0};
    if (a->srv->store != NULL)
        cache_store_stats(a->srv->store, &st);
    json_t *view = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}", "pending",
                             (json_int_t)st.jobs_pending, "captured", (json_int_t)st.jobs_captured,
                             "lost", (json_int_t)st.jobs_lost, "bytes", (json_int_t)st.blob_bytes,
                             "downloads", (json_int_t)a->downloads, "failures",
                             (json_int_t)a->failures, "retries", (json_int_t)a->retries,
                             "oversized", (json_int_t)a->oversized, "in_flight", a->in_flight);
    if (view == NULL)
        abort();
    return view;
}
