/* request.c: the per-request context and its one exit. Wraps the evhttp
 * request so handlers never touch evhttp; request_send() is where the reply
 * leaves, the access-log line is written and the context is freed. */
#include "request.h"
#include "reply.h"
#include "accounting.h"
#include "clock.h"
#include "connections.h"
#include "durable.h"
#include "log.h"
#include "recent.h"
#include "server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A client's X-Request-ID longer than this is cut: it is only a label. */
#define CLIENT_REQUEST_ID_MAX 128

static void *zalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL)
        abort();
    return p;
}

static char *dup_n(const char *s, size_t max)
{
    char *d = strndup(s, max);
    if (d == NULL)
        abort();
    return d;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "UNKNOWN";
}

struct request *request_new(struct server *srv, struct evhttp_request *evreq)
{
    struct request *r = zalloc(sizeof *r);
    r->evreq = evreq;
    r->server = srv;
    r->started_us = clock_mono_us();
    ids_uuid4(&srv->ids, r->id);
    r->method = method_name(evhttp_request_get_command(evreq));

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(evreq);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    r->path = dup_n(path != NULL && path[0] != '\0' ? path : "/", SIZE_MAX);
    r->query = query != NULL ? dup_n(query, SIZE_MAX) : NULL;

    const char *client_id = request_header(r, "X-Request-ID");
    if (client_id != NULL)
        r->client_request_id = dup_n(client_id, CLIENT_REQUEST_ID_MAX);

    struct evhttp_connection *conn = evhttp_request_get_connection(evreq);
    char *host = NULL;
    ev_uint16_t port = 0;
    if (conn != NULL)
        evhttp_connection_get_peer(conn, &host, &port);
    snprintf(r->client_addr, sizeof r->client_addr, "%s:%u", host != NULL ? host : "-",
             (unsigned)port);
    snprintf(r->client_ip, sizeof r->client_ip, "%s", host != NULL ? host : "-");

    server_request_started(srv, r);
    return r;
}

bool request_client_gone(const struct request *r)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(r->evreq);
    struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    if (fd < 0)
        return true;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    /* 0: the client shut its side; an error other than "nothing yet": gone. */
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

const char *request_header(const struct request *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->evreq), name);
}

void request_foreach_header(const struct request *r, request_header_cb cb, void *arg)
{
    const struct evkeyvalq *headers = evhttp_request_get_input_headers(r->evreq);
    for (const struct evkeyval *h = headers->tqh_first; h != NULL; h = h->next.tqe_next)
        cb(h->key, h->value, arg);
}

struct evbuffer *request_body(const struct request *r)
{
    return evhttp_request_get_input_buffer(r->evreq);
}

void request_add_header(struct request *r, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(r->evreq), name, value);
}

const char *request_cache_outcome_name(enum cache_outcome outcome)
{
    static const char *const names[] = {"none",   "HIT",     "MISS",     "STALE",
                                        "BYPASS", "REFRESH", "COALESCED"};
    return names[outcome];
}

static void free_request(struct request *r)
{
    if (r->retry_timer != NULL)
        event_free(r->retry_timer);
    if (r->deadline_timer != NULL)
        event_free(r->deadline_timer);
    free(r->path);
    free(r->query);
    free(r->client_request_id);
    free(r->upstream_request_id);
    free(r->upstream_body);
    free(r->canonical);
    free(r);
}

static void log_access(const struct request *r, int status, size_t bytes_in, size_t bytes_out)
{
    int64_t latency_us = clock_mono_us() - r->started_us;
    char path[512], client_rid[160], upstream_rid[160], member[160];
    log_write(LOG_LEVEL_INFO, "access",
              "rid=%s client=%s method=%s path=%s status=%d latency_ms=%lld.%03lld bytes_in=%zu "
              "bytes_out=%zu upstream_rid=%s client_rid=%s cache=%s member=%s%s%s",
              r->id, r->client_addr, r->method, log_value(path, sizeof path, r->path), status,
              (long long)(latency_us / 1000), (long long)(latency_us % 1000), bytes_in, bytes_out,
              log_value(upstream_rid, sizeof upstream_rid,
                        r->upstream_request_id != NULL ? r->upstream_request_id : "-"),
              log_value(client_rid, sizeof client_rid,
                        r->client_request_id != NULL ? r->client_request_id : "-"),
              request_cache_outcome_name(r->cache_outcome),
              r->member[0] != '\0' ? log_value(member, sizeof member, r->member) : "-",
              r->error_code != NULL ? " error=" : "", r->error_code != NULL ? r->error_code : "");
}

void request_send(struct request *r, int status, struct evbuffer *body)
{
    struct server *srv = r->server;
    if (!durable_ready_or_hold(srv->durable, r, status, body))
        return;
    request_add_header(r, "X-Proxy-Request-ID", r->id);
    if (r->retries > 0) {
        char retries[16];
        snprintf(retries, sizeof retries, "%d", r->retries);
        request_add_header(r, "X-Proxy-Retries", retries);
    }
    if (srv->draining)
        request_add_header(r, "Connection", "close");
    size_t bytes_in = evbuffer_get_length(evhttp_request_get_input_buffer(r->evreq));
    size_t bytes_out = body != NULL ? evbuffer_get_length(body) : 0;
    accounting_request_done(r, status, bytes_in, bytes_out);
    /* connections.c tells the server when the reply has left (or its
     * connection has gone): the drain at shutdown waits for that. */
    if (connections_reply_started(srv->connections, r->evreq))
        srv->replies_unflushed++;
    evhttp_send_reply(r->evreq, status, reply_reason_phrase(status), body);
    if (srv->cfg->access_log && log_threshold >= LOG_LEVEL_INFO)
        log_access(r, status, bytes_in, bytes_out);
    srv->stats.responses_by_class[status >= 100 && status < 600 ? status / 100 : 0]++;
    recent_record(srv->recent, r, status, clock_wall_ms());
    server_request_finished(srv, r);
    free_request(r);
}

void request_abandon(struct request *r)
{
    server_request_finished(r->server, r);
    free_request(r);
}
