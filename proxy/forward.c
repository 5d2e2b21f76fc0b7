/* forward.c: the /v1/ pipeline. Builds the upstream call from the client's
 * request (the proxy's key replacing the client's Authorization when it holds
 * one), starts it, and relays status, body and the mirrored headers. Errors
 * of the transport become the proxy's own envelope (reply.c). */
#include "forward.h"
#include "clock.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "upstream.h"

#include <event2/buffer.h>
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
                                          "Authorization"};
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

static void on_upstream_done(const struct upstream_result *res, void *arg)
{
    struct request *r = arg;
    struct server *srv = r->server;
    r->transfer = NULL;

    if (res->outcome != UPSTREAM_OK) {
        warn_upstream_failure(srv, r, res);
        json_t *details = json_pack("{s:s}", "reason", res->error);
        if (res->outcome == UPSTREAM_TIMEOUT) {
            srv->stats.upstream_timeouts++;
            char message[128];
            snprintf(message, sizeof message, "The cloro API did not answer within %lld ms",
                     (long long)srv->cfg->upstream_timeout_ms);
            reply_error(r, PROXY_ERROR_UPSTREAM_TIMEOUT, message, details);
            return;
        }
        srv->stats.upstream_unavailable++;
        const char *message = res->outcome == UPSTREAM_UNREACHABLE
                                  ? "The cloro API could not be reached"
                              : res->outcome == UPSTREAM_TOO_LARGE
                                  ? "The cloro API's response is larger than max_response_bytes"
                                  : "The cloro API's response was cut off or malformed";
        reply_error(r, PROXY_ERROR_UPSTREAM_UNAVAILABLE, message, details);
        return;
    }

    for (size_t i = 0; i < res->header_count; i++) {
        const struct upstream_header *h = &res->headers[i];
        if (!forward_relays_response_header(h->name))
            continue;
        request_add_header(r, h->name, h->value);
        if (strcasecmp(h->name, "X-Request-ID") == 0 && r->upstream_request_id == NULL) {
            r->upstream_request_id = strndup(h->value, 128);
            if (r->upstream_request_id == NULL)
                abort();
        }
    }
    request_send(r, (int)res->status, res->body);
}

void forward_request(struct request *r)
{
    struct server *srv = r->server;
    const struct config *cfg = srv->cfg;

    struct evbuffer *body = request_body(r);
    size_t body_len = evbuffer_get_length(body);
    if (body_len > cfg->max_body_bytes) {
        json_t *details = json_pack("{s:I, s:I}", "limit", (json_int_t)cfg->max_body_bytes,
                                    "received", (json_int_t)body_len);
        reply_error(r, PROXY_ERROR_PAYLOAD_TOO_LARGE, NULL, details);
        return;
    }

    char *url = NULL;
    if (asprintf(&url, "%s%s%s%s", cfg->upstream, r->path, r->query != NULL ? "?" : "",
                 r->query != NULL ? r->query : "") < 0)
        abort();

    struct header_list headers = {.connection = request_header(r, "Connection")};
    request_foreach_header(r, collect_header, &headers);
    const char *authorization = srv->authorization;
    if (authorization == NULL)
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
        .body = body_len > 0 ? evbuffer_pullup(body, -1) : NULL,
        .body_len = body_len,
        .timeout_ms = cfg->upstream_timeout_ms,
    };
    srv->stats.upstream_calls++;
    r->transfer = upstream_start(srv->upstream, &call, on_upstream_done, r);
    free(url);
    if (r->transfer == NULL)
        reply_error(r, PROXY_ERROR_INTERNAL, "Could not start the upstream call", NULL);
}
