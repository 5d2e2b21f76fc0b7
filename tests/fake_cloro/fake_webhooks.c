/* fake_webhooks: one delivery per terminal task, on a doubly linked list; each
 * attempt opens its own evhttp client connection and a timer schedules the next
 * one. A finished attempt's connection cannot be freed inside its own callback,
 * and libevent 2.1 never autofrees one whose connect failed, so finished
 * connections go to a graveyard that a zero timer empties. Only http:// URLs can
 * be reached; anything else fails its attempts like a connection error. */
#include "fake_webhooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fake_log.h"
#include "fake_util.h"

#define FAKE_WEBHOOKS_TIMEOUT_S 10

struct fake_webhooks_delivery {
    struct fake_webhooks *wh;
    char task_id[37];
    char *url;
    char *body;
    char *secret;
    double scale;
    int attempt; /* the last one started, 1-based */
    struct event *timer;
    struct evhttp_connection *conn; /* while an attempt is in flight */
    struct fake_webhooks_delivery *prev, *next;
};

struct fake_webhooks {
    struct event_base *base;
    fake_webhooks_result_fn cb;
    void *arg;
    bool closing;
    struct fake_webhooks_delivery *list;
    struct evhttp_connection **dead; /* graveyard */
    size_t n_dead, cap_dead;
    struct event *reaper;
};

static void fake_webhooks_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fake_webhooks *wh = arg;
    for (size_t i = 0; i < wh->n_dead; i++)
        evhttp_connection_free(wh->dead[i]);
    wh->n_dead = 0;
}

static void fake_webhooks_bury(struct fake_webhooks *wh, struct evhttp_connection *conn)
{
    if (wh->n_dead == wh->cap_dead) {
        size_t cap = wh->cap_dead ? wh->cap_dead * 2 : 8;
        struct evhttp_connection **dead = fake_xcalloc(cap, sizeof(*dead));
        if (wh->n_dead)
            memcpy(dead, wh->dead, wh->n_dead * sizeof(*dead));
        free(wh->dead);
        wh->dead = dead;
        wh->cap_dead = cap;
    }
    wh->dead[wh->n_dead++] = conn;
    struct timeval zero = {0, 0};
    evtimer_add(wh->reaper, &zero);
}

struct fake_webhooks *fake_webhooks_new(struct event_base *base, fake_webhooks_result_fn cb,
                                        void *arg)
{
    struct fake_webhooks *wh = fake_xcalloc(1, sizeof(*wh));
    wh->base = base;
    wh->cb = cb;
    wh->arg = arg;
    wh->reaper = evtimer_new(base, fake_webhooks_reap, wh);
    return wh;
}

static void fake_webhooks_delivery_free(struct fake_webhooks_delivery *d)
{
    struct fake_webhooks *wh = d->wh;
    if (d->prev)
        d->prev->next = d->next;
    else
        wh->list = d->next;
    if (d->next)
        d->next->prev = d->prev;
    if (d->timer)
        event_free(d->timer);
    if (d->conn)
        evhttp_connection_free(d->conn);
    free(d->url);
    free(d->body);
    free(d->secret);
    free(d);
}

void fake_webhooks_free(struct fake_webhooks *wh)
{
    if (wh == NULL)
        return;
    wh->closing = true;
    while (wh->list)
        fake_webhooks_delivery_free(wh->list);
    fake_webhooks_reap(-1, 0, wh);
    event_free(wh->reaper);
    free(wh->dead);
    free(wh);
}

void fake_webhooks_signature(const char *secret, const char *ts, const char *body, size_t body_len,
                             char out[68])
{
    size_t ts_len = strlen(ts);
    unsigned char *msg = fake_xmalloc(ts_len + 1 + body_len);
    memcpy(msg, ts, ts_len);
    msg[ts_len] = '.';
    memcpy(msg + ts_len + 1, body, body_len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, ts_len + 1 + body_len, md, &md_len);
    free(msg);
    memcpy(out, "v1=", 3);
    for (unsigned int i = 0; i < md_len && i < 32; i++)
        snprintf(out + 3 + 2 * i, 3, "%02x", md[i]);
    out[3 + 2 * (md_len < 32 ? md_len : 32)] = '\0';
}

bool fake_webhooks_verify(const char *secret, const char *ts, const char *header, const char *body,
                          size_t body_len)
{
    char want[68];
    fake_webhooks_signature(secret, ts, body, body_len, want);
    size_t n = strlen(want);
    return strlen(header) == n && CRYPTO_memcmp(header, want, n) == 0;
}

static void fake_webhooks_on_timer(evutil_socket_t fd, short what, void *arg);

static void fake_webhooks_arm(struct fake_webhooks_delivery *d, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(d->timer, &tv);
}

/* Reports the attempt; schedules the next one or ends the delivery. */
static void fake_webhooks_outcome(struct fake_webhooks_delivery *d, bool ok, int status)
{
    struct fake_webhooks *wh = d->wh;
    fake_log(FAKE_LOG_INFO, "webhook", "task_id=%s attempt=%d status=%d ok=%d", d->task_id,
             d->attempt, status, ok ? 1 : 0);
    wh->cb(wh->arg, d->task_id, d->attempt, ok);
    if (ok || d->attempt >= FAKE_WEBHOOKS_ATTEMPTS) {
        fake_webhooks_delivery_free(d);
        return;
    }
    /* +2, +4, +8, +16 s after attempts 1..4 failed. */
    double ms = 1000.0 * (double)(2 << (d->attempt - 1)) * d->scale;
    fake_webhooks_arm(d, (int64_t)ms);
}

static void fake_webhooks_on_response(struct evhttp_request *req, void *arg)
{
    struct fake_webhooks_delivery *d = arg;
    if (d->wh->closing)
        return;
    fake_webhooks_bury(d->wh, d->conn);
    d->conn = NULL;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    fake_webhooks_outcome(d, status >= 200 && status < 300, status);
}

static bool fake_webhooks_start(struct fake_webhooks_delivery *d)
{
    struct evhttp_uri *uri = evhttp_uri_parse(d->url);
    const char *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    if (scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL || *host == '\0') {
        evhttp_uri_free(uri);
        return false;
    }
    int port = evhttp_uri_get_port(uri);
    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    char *target =
        fake_xasprintf("%s%s%s", path && *path ? path : "/", query ? "?" : "", query ? query : "");
    char *host_hdr = port > 0 ? fake_xasprintf("%s:%d", host, port) : fake_xstrdup(host);
    struct evhttp_connection *conn =
        evhttp_connection_base_new(d->wh->base, NULL, host, (unsigned short)(port > 0 ? port : 80));
    evhttp_uri_free(uri);
    if (conn == NULL) {
        free(target);
        free(host_hdr);
        return false;
    }
    evhttp_connection_set_timeout(conn, FAKE_WEBHOOKS_TIMEOUT_S);
    struct evhttp_request *req = evhttp_request_new(fake_webhooks_on_response, d);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", host_hdr);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Connection", "close");
    size_t body_len = strlen(d->body);
    if (d->secret && d->secret[0]) {
        char ts[32], sig[68], id[64];
        snprintf(ts, sizeof(ts), "%lld", (long long)(fake_util_real_ms() / 1000));
        fake_webhooks_signature(d->secret, ts, d->body, body_len, sig);
        snprintf(id, sizeof(id), "%s-%d", d->task_id, d->attempt);
        evhttp_add_header(h, "X-Cloro-Timestamp", ts);
        evhttp_add_header(h, "X-Cloro-Signature", sig);
        evhttp_add_header(h, "X-Cloro-Webhook-Id", id);
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), d->body, body_len);
    free(host_hdr);
    int rc = evhttp_make_request(conn, req, EVHTTP_REQ_POST, target);
    free(target);
    if (rc != 0) { /* the request was freed by evhttp_make_request */
        evhttp_connection_free(conn);
        return false;
    }
    d->conn = conn;
    return true;
}

static void fake_webhooks_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fake_webhooks_delivery *d = arg;
    d->attempt++;
    if (!fake_webhooks_start(d))
        fake_webhooks_outcome(d, false, 0);
}

void fake_webhooks_send(struct fake_webhooks *wh, const char *task_id, const char *url,
                        const char *body, const char *secret, double time_scale)
{
    struct fake_webhooks_delivery *d = fake_xcalloc(1, sizeof(*d));
    d->wh = wh;
    snprintf(d->task_id, sizeof(d->task_id), "%s", task_id);
    d->url = fake_xstrdup(url);
    d->body = fake_xstrdup(body);
    d->secret = secret && secret[0] ? fake_xstrdup(secret) : NULL;
    d->scale = time_scale;
    d->timer = evtimer_new(wh->base, fake_webhooks_on_timer, d);
    d->next = wh->list;
    if (wh->list)
        wh->list->prev = d;
    wh->list = d;
    fake_webhooks_arm(d, 0);
}
