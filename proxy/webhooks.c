/* webhooks.c: the webhook delivery queue, the attempts and their reports.
 *
 * DESIGN: every delivery held sits in a hash table keyed by task id (for
 * replacement). A delivery waiting for its next attempt also sits in a binary
 * min-heap ordered by (due time, enqueue order); one libevent timer is armed
 * for the head of the heap, so thousands of deliveries cost one timer and
 * O(log n) per change. dispatch() starts due deliveries while fewer than
 * MAX_IN_FLIGHT attempts run; the end of an attempt and the timer call it
 * again. A delivery in flight is out of the heap and owns its transfer.
 *
 * When an attempt ends the delivery is taken out of the table while the
 * report callback runs, so a callback that enqueues the same task creates a
 * fresh delivery that wins over the retry. Afterwards the delivery is freed
 * (final, or replaced) or goes back into the table and the heap.
 *
 * Times are wall-clock milliseconds (clock_wall_ms), as the caller persists
 * them and hands them back after a restart. */
#include "webhooks.h"
#include "clock.h"
#include "log.h"
#include "upstream.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IN_FLIGHT      16          /* attempts on the wire at once */
#define RESPONSE_MAX_BYTES (64 * 1024) /* the receiver's answer is ignored */
#define START_RETRY_MS     1000        /* upstream_start refused: no attempt made, try then */
#define HEAP_NONE          SIZE_MAX
#define ERROR_MAX          256

struct delivery {
    struct webhooks *wh;
    char *task_id;
    char *url;
    unsigned char *body;
    size_t body_len;
    int attempts_done;
    int64_t due_ms;
    uint64_t seq;                       /* enqueue order among equal due times */
    size_t heap_at;                     /* index in wh->heap, HEAP_NONE when not waiting */
    struct upstream_transfer *transfer; /* in flight */
    struct delivery *next_in_bucket;
};

struct webhooks {
    struct event_base *base;
    struct upstream *up;
    char *secret; /* NULL: unsigned */
    int max_attempts;
    int64_t retry_base_ms;
    int64_t timeout_ms;
    size_t max_pending;
    webhooks_report_cb report;
    void *report_arg;

    struct delivery **buckets; /* power-of-two count */
    size_t bucket_count;
    size_t held;                /* in the table, in flight, or being reported */
    struct delivery *reporting; /* out of the table during its report */
    struct delivery **heap;
    size_t heap_len, heap_cap;
    size_t in_flight;
    uint64_t seq;
    struct event *timer;

    uint64_t attempts, delivered, failed_attempts, given_up, rejected, replaced;
};

static void *zalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL)
        abort();
    return p;
}

static char *dup_string(const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL)
        abort();
    return copy;
}

/* --- pure helpers ----------------------------------------------------- */

int64_t webhooks_retry_delay_ms(int64_t retry_base_ms, int attempt)
{
    if (retry_base_ms <= 0)
        return 0;
    int shift = attempt < 1 ? 0 : attempt - 1;
    if (shift >= 63 || retry_base_ms > (INT64_MAX >> shift))
        return INT64_MAX;
    return retry_base_ms << shift;
}

void webhooks_signature(const char *secret, const char *timestamp, const void *body, size_t len,
                        char *out, size_t out_size)
{
    if (out == NULL || out_size == 0)
        return;
    out[0] = '\0';
    if (out_size < 68 || secret == NULL || timestamp == NULL || (body == NULL && len > 0))
        return;
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    /* A zero-length key must still be a valid pointer. */
    static const unsigned char empty_key[1] = {0};
    size_t key_len = strlen(secret);
    const unsigned char *key = key_len > 0 ? (const unsigned char *)secret : empty_key;
    bool ok = ctx != NULL && EVP_MAC_init(ctx, key, key_len, params) == 1 &&
              EVP_MAC_update(ctx, (const unsigned char *)timestamp, strlen(timestamp)) == 1 &&
              EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
              (len == 0 || EVP_MAC_update(ctx, body, len) == 1) &&
              EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) == 1 && mac_len == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    if (!ok)
        return;
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "v1=", 3);
    for (size_t i = 0; i < 32; i++) {
        out[3 + 2 * i] = hex[mac[i] >> 4];
        out[3 + 2 * i + 1] = hex[mac[i] & 0x0f];
    }
    out[67] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
}

/* An absolute http:// or https:// URL with a host, as libcurl parses it. */
static bool is_http_url(const char *url)
{
    if (url == NULL)
        return false;
    CURLU *u = curl_url();
    if (u == NULL)
        abort();
    bool ok = false;
    char *scheme = NULL, *host = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        ok = (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && host[0] != '\0';
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

/* --- the table of held deliveries --------------------------------------- */

static uint64_t hash_id(const char *s)
{
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static struct delivery **bucket_of(const struct webhooks *wh, const char *task_id)
{
    return &wh->buckets[hash_id(task_id) & (wh->bucket_count - 1)];
}

static struct delivery *table_find(const struct webhooks *wh, const char *task_id)
{
    for (struct delivery *d = *bucket_of(wh, task_id); d != NULL; d = d->next_in_bucket)
        if (strcmp(d->task_id, task_id) == 0)
            return d;
    return NULL;
}

static void table_grow(struct webhooks *wh)
{
    size_t old_count = wh->bucket_count;
    struct delivery **old = wh->buckets;
    wh->bucket_count = old_count * 2;
    wh->buckets = zalloc(wh->bucket_count * sizeof *wh->buckets);
    for (size_t i = 0; i < old_count; i++) {
        struct delivery *d = old[i];
        while (d != NULL) {
            struct delivery *next = d->next_in_bucket;
            struct delivery **b = bucket_of(wh, d->task_id);
            d->next_in_bucket = *b;
            *b = d;
            d = next;
        }
    }
    free(old);
}

static void table_insert(struct webhooks *wh, struct delivery *d)
{
    if (wh->held > wh->bucket_count)
        table_grow(wh);
    struct delivery **b = bucket_of(wh, d->task_id);
    d->next_in_bucket = *b;
    *b = d;
}

static void table_remove(struct webhooks *wh, struct delivery *d)
{
    struct delivery **link = bucket_of(wh, d->task_id);
    while (*link != NULL && *link != d)
        link = &(*link)->next_in_bucket;
    if (*link == d)
        *link = d->next_in_bucket;
    d->next_in_bucket = NULL;
}

/* --- the heap of waiting deliveries ------------------------------------ */

static bool earlier(const struct delivery *a, const struct delivery *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_set(struct webhooks *wh, size_t i, struct delivery *d)
{
    wh->heap[i] = d;
    d->heap_at = i;
}

static void heap_up(struct webhooks *wh, size_t i)
{
    struct delivery *d = wh->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(d, wh->heap[parent]))
            break;
        heap_set(wh, i, wh->heap[parent]);
        i = parent;
    }
    heap_set(wh, i, d);
}

static void heap_down(struct webhooks *wh, size_t i)
{
    struct delivery *d = wh->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= wh->heap_len)
            break;
        if (child + 1 < wh->heap_len && earlier(wh->heap[child + 1], wh->heap[child]))
            child++;
        if (!earlier(wh->heap[child], d))
            break;
        heap_set(wh, i, wh->heap[child]);
        i = child;
    }
    heap_set(wh, i, d);
}

static void heap_push(struct webhooks *wh, struct delivery *d)
{
    if (wh->heap_len == wh->heap_cap) {
        wh->heap_cap = wh->heap_cap == 0 ? 64 : wh->heap_cap * 2;
        wh->heap = realloc(wh->heap, wh->heap_cap * sizeof *wh->heap);
        if (wh->heap == NULL)
            abort();
    }
    d->seq = ++wh->seq;
    wh->heap[wh->heap_len++] = d;
    heap_up(wh, wh->heap_len - 1);
}

static void heap_remove(struct webhooks *wh, struct delivery *d)
{
    size_t i = d->heap_at;
    if (i == HEAP_NONE)
        return;
    d->heap_at = HEAP_NONE;
    struct delivery *last = wh->heap[--wh->heap_len];
    if (last == d)
        return;
    heap_set(wh, i, last);
    heap_up(wh, i);
    heap_down(wh, last->heap_at);
}

/* --- deliveries ------------------------------------------------------- */

static void delivery_free(struct delivery *d)
{
    free(d->task_id);
    free(d->url);
    free(d->body);
    free(d);
}

/* Drops a held delivery from every structure, cancelling its attempt. */
static void discard(struct webhooks *wh, struct delivery *d)
{
    if (d->transfer != NULL) {
        upstream_cancel(d->transfer);
        d->transfer = NULL;
        wh->in_flight--;
    }
    heap_remove(wh, d);
    table_remove(wh, d);
    wh->held--;
    delivery_free(d);
}

static void on_attempt_done(const struct upstream_result *res, void *arg);

static void start_attempt(struct webhooks *wh, struct delivery *d, int64_t now)
{
    int attempt = d->attempts_done + 1;
    struct upstream_header headers[5] = {
        {"Content-Type", "application/json"},
        {"User-Agent", "cloro-proxy"},
    };
    size_t count = 2;
    char timestamp[24], signature[68];
    char *webhook_id = NULL;
    if (wh->secret != NULL) {
        snprintf(timestamp, sizeof timestamp, "%" PRId64, now / 1000);
        webhooks_signature(wh->secret, timestamp, d->body, d->body_len, signature,
                           sizeof signature);
        if (asprintf(&webhook_id, "%s-%d", d->task_id, attempt) < 0)
            abort();
        headers[count++] = (struct upstream_header){"X-Cloro-Timestamp", timestamp};
        headers[count++] = (struct upstream_header){"X-Cloro-Signature", signature};
        headers[count++] = (struct upstream_header){"X-Cloro-Webhook-Id", webhook_id};
    }
    struct upstream_call call = {
        .method = "POST",
        .url = d->url,
        .headers = headers,
        .header_count = count,
        .body = d->body,
        .body_len = d->body_len,
        .timeout_ms = wh->timeout_ms,
        .max_bytes = RESPONSE_MAX_BYTES,
    };
    d->transfer = upstream_start(wh->up, &call, on_attempt_done, d);
    free(webhook_id);
    OPENSSL_cleanse(signature, sizeof signature);
    if (d->transfer == NULL) {
        /* Nothing went out: not an attempt. Try again a little later. */
        char task[96];
        log_warn("webhook_not_started", "task=%s attempt=%d retry_in_ms=%d",
                 log_value(task, sizeof task, d->task_id), attempt, START_RETRY_MS);
        d->due_ms = now + START_RETRY_MS;
        heap_push(wh, d);
        return;
    }
    wh->in_flight++;
    wh->attempts++;
}

static void dispatch(struct webhooks *wh)
{
    int64_t now = clock_wall_ms();
    while (wh->in_flight < MAX_IN_FLIGHT && wh->heap_len > 0 && wh->heap[0]->due_ms <= now) {
        struct delivery *d = wh->heap[0];
        heap_remove(wh, d);
        start_attempt(wh, d, now);
    }
    /* Due deliveries beyond the in-flight bound start when an attempt ends. */
    if (wh->heap_len > 0 && wh->heap[0]->due_ms > now) {
        int64_t in = wh->heap[0]->due_ms - now;
        if (in > INT64_C(86400000) * 365)
            in = INT64_C(86400000) * 365;
        struct timeval tv = {.tv_sec = (time_t)(in / 1000),
                             .tv_usec = (suseconds_t)((in % 1000) * 1000)};
        evtimer_add(wh->timer, &tv);
    } else {
        evtimer_del(wh->timer);
    }
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    dispatch(arg);
}

static void on_attempt_done(const struct upstream_result *res, void *arg)
{
    struct delivery *d = arg;
    struct webhooks *wh = d->wh;
    d->transfer = NULL;
    wh->in_flight--;
    int attempt = ++d->attempts_done;
    int64_t now = clock_wall_ms();

    /* The answer's status is what acks; a body past the bound is ignored. */
    bool answered = res->outcome == UPSTREAM_OK || res->outcome == UPSTREAM_TOO_LARGE;
    bool delivered = answered && res->status >= 200 && res->status <= 299;
    char error[ERROR_MAX] = "";
    if (!delivered) {
        if (answered)
            snprintf(error, sizeof error, "status %ld", res->status);
        else if (res->outcome == UPSTREAM_TIMEOUT)
            snprintf(error, sizeof error, "timeout");
        else
            snprintf(error, sizeof error, "%s",
                     res->error != NULL && res->error[0] != '\0'
                         ? res->error
                         : upstream_outcome_name(res->outcome));
    }
    bool final = delivered || attempt >= wh->max_attempts;
    int64_t delay = final ? 0 : webhooks_retry_delay_ms(wh->retry_base_ms, attempt);
    int64_t next = final ? 0 : (delay > INT64_MAX - now ? INT64_MAX : now + delay);

    char task[96], why[ERROR_MAX + 8];
    if (delivered) {
        wh->delivered++;
        log_debug("webhook_delivered", "task=%s attempt=%d status=%ld",
                  log_value(task, sizeof task, d->task_id), attempt, res->status);
    } else {
        wh->failed_attempts++;
        log_value(task, sizeof task, d->task_id);
        log_value(why, sizeof why, error);
        if (final) {
            wh->given_up++;
            log_warn("webhook_given_up", "task=%s attempt=%d status=%ld error=%s", task, attempt,
                     res->status, why);
        } else {
            log_info("webhook_failed",
                     "task=%s attempt=%d status=%ld error=%s retry_in_ms=%" PRId64, task, attempt,
                     res->status, why, delay);
        }
    }

    struct webhooks_report report = {
        .task_id = d->task_id,
        .url = d->url,
        .attempt = attempt,
        .delivered = delivered,
        .final = final,
        .status = res->status,
        .error = delivered ? NULL : error,
        .at_ms = now,
        .next_attempt_ms = next,
    };
    table_remove(wh, d);
    wh->reporting = d;
    if (wh->report != NULL)
        wh->report(&report, wh->report_arg);
    wh->reporting = NULL;

    if (final || table_find(wh, d->task_id) != NULL) {
        wh->held--;
        delivery_free(d);
    } else {
        d->due_ms = next;
        table_insert(wh, d);
        heap_push(wh, d);
    }
    dispatch(wh);
}

/* --- the interface ---------------------------------------------------- */

struct webhooks *webhooks_new(struct event_base *base, struct upstream *up,
                              const struct webhooks_options *o, webhooks_report_cb report,
                              void *arg)
{
    if (base == NULL || up == NULL || o == NULL || o->max_attempts < 1 || o->retry_base_ms < 0 ||
        o->timeout_ms <= 0 || o->max_pending == 0)
        return NULL;
    struct webhooks *wh = zalloc(sizeof *wh);
    wh->base = base;
    wh->up = up;
    wh->secret = o->secret != NULL && o->secret[0] != '\0' ? dup_string(o->secret) : NULL;
    wh->max_attempts = o->max_attempts;
    wh->retry_base_ms = o->retry_base_ms;
    wh->timeout_ms = o->timeout_ms;
    wh->max_pending = o->max_pending;
    wh->report = report;
    wh->report_arg = arg;
    wh->bucket_count = 64;
    wh->buckets = zalloc(wh->bucket_count * sizeof *wh->buckets);
    wh->timer = evtimer_new(base, on_timer, wh);
    if (wh->timer == NULL)
        abort();
    return wh;
}

void webhooks_free(struct webhooks *wh)
{
    if (wh == NULL)
        return;
    for (size_t i = 0; i < wh->bucket_count; i++) {
        while (wh->buckets[i] != NULL)
            discard(wh, wh->buckets[i]);
    }
    event_free(wh->timer);
    if (wh->secret != NULL) {
        OPENSSL_cleanse(wh->secret, strlen(wh->secret));
        free(wh->secret);
    }
    free(wh->buckets);
    free(wh->heap);
    free(wh);
}

int webhooks_enqueue(struct webhooks *wh, const char *task_id, const char *url, const void *body,
                     size_t body_len, int attempts_done, int64_t not_before_ms)
{
    if (task_id == NULL || task_id[0] == '\0' || (body == NULL && body_len > 0) ||
        attempts_done < 0 || attempts_done >= wh->max_attempts || !is_http_url(url)) {
        wh->rejected++;
        return -1;
    }
    struct delivery *old = table_find(wh, task_id);
    bool replacing =
        old != NULL || (wh->reporting != NULL && strcmp(wh->reporting->task_id, task_id) == 0);
    if (!replacing && wh->held >= wh->max_pending) {
        wh->rejected++;
        return -1;
    }
    if (replacing)
        wh->replaced++;
    if (old != NULL)
        discard(wh, old);

    struct delivery *d = zalloc(sizeof *d);
    d->wh = wh;
    d->task_id = dup_string(task_id);
    d->url = dup_string(url);
    d->body = malloc(body_len > 0 ? body_len : 1);
    if (d->body == NULL)
        abort();
    if (body_len > 0)
        memcpy(d->body, body, body_len);
    d->body_len = body_len;
    d->attempts_done = attempts_done;
    d->due_ms = not_before_ms;
    d->heap_at = HEAP_NONE;
    wh->held++;
    table_insert(wh, d);
    heap_push(wh, d);
    dispatch(wh);
    return 0;
}

void webhooks_stats(const struct webhooks *wh, struct webhooks_stats *out)
{
    *out = (struct webhooks_stats){
        .pending = wh->held,
        .in_flight = wh->in_flight,
        .attempts = wh->attempts,
        .delivered = wh->delivered,
        .failed_attempts = wh->failed_attempts,
        .given_up = wh->given_up,
        .rejected = wh->rejected,
        .replaced = wh->replaced,
    };
}
