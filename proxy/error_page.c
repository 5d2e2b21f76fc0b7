/* error_page.c: evhttp's own error answers in cloro's envelope.
 *
 * libevent 2.1 answers a request it cannot take (a malformed request line or
 * header, a request line or head over max_header_bytes, a body over its cap,
 * a method it does not know) by calling evhttp_send_error, which writes an
 * HTML page; 2.1 has no hook for that page (evhttp_set_errorcb came in 2.2).
 * So this file defines evhttp_send_error itself. libevent calls it through
 * its PLT and the executable's definition comes first in symbol lookup (ELF
 * interposition, as with malloc), so every such answer becomes the envelope
 * with an X-Request-ID and the precise status: 400, 413, 414 or 431. The
 * proxy never calls evhttp_send_error; test_bad_clients checks the answers,
 * and fails if a libevent update stops routing them here. */
#include "error_page.h"
#include "connections.h"
#include "ids.h"
#include "log.h"
#include "reply.h"
#include "server.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct server *installed;

void error_page_install(struct server *srv)
{
    installed = srv;
}

/* libevent 2.1 says 400 for nearly every failure, size or syntax: the
 * request's state and how much of it arrived tell them apart. */
static enum proxy_error classify(struct evhttp_request *req, int status)
{
    if (status == 404)
        return PROXY_ERROR_NOT_FOUND;
    if (status == 405 || status == 501)
        return PROXY_ERROR_METHOD_NOT_ALLOWED;
    if (installed == NULL)
        return status == 413 ? PROXY_ERROR_PAYLOAD_TOO_LARGE : PROXY_ERROR_BAD_REQUEST;
    const struct config *cfg = installed->cfg;
    size_t received =
        connections_request_bytes(installed->connections, evhttp_request_get_connection(req));
    if (req->type == 0) /* the request line never parsed */
        return received > cfg->max_header_bytes ? PROXY_ERROR_URI_TOO_LONG
                                                : PROXY_ERROR_BAD_REQUEST;
    const char *length =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Length");
    if (status == 413 || (req->chunked && req->body_size > cfg->max_body_bytes) ||
        (length != NULL && strtoull(length, NULL, 10) > cfg->max_body_bytes))
        return PROXY_ERROR_PAYLOAD_TOO_LARGE;
    if (received > cfg->max_header_bytes || req->headers_size > cfg->max_header_bytes)
        return PROXY_ERROR_HEADERS_TOO_LARGE;
    return PROXY_ERROR_BAD_REQUEST;
}

void evhttp_send_error(struct evhttp_request *req, int error, const char *reason)
{
    (void)reason;
    enum proxy_error err = classify(req, error);
    int status = reply_error_status(err);
    json_t *envelope = reply_envelope(err, NULL, NULL);
    char *body = json_dumps(envelope, JSON_COMPACT);
    json_decref(envelope);
    char rid[IDS_UUID_LEN + 1] = "-";
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_clear_headers(out);
    if (installed != NULL) {
        /* Its deadline stops: this answer ends the connection. */
        connections_request_received(installed->connections, req);
        ids_uuid4(&installed->ids, rid);
        evhttp_add_header(out, "X-Request-ID", rid);
        installed->stats.proxy_errors++;
        installed->stats.responses_by_class[status / 100]++;
        connections_count_bad_request(installed->connections);
    }
    evhttp_add_header(out, "Content-Type", "application/json");
    evhttp_add_header(out, "Connection", "close");
    /* A request line that never parsed has no version: answer in HTTP/1.1. */
    if (req->major != 1) {
        req->major = 1;
        req->minor = 1;
    }
    struct evbuffer *buf = evbuffer_new();
    if (buf != NULL && body != NULL)
        evbuffer_add(buf, body, strlen(body));
    char *host = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &host, &port);
    log_info("bad_request", "rid=%s client=%s:%u status=%d error=%s", rid,
             host != NULL ? host : "-", (unsigned)port, status, reply_error_code(err));
    evhttp_send_reply(req, status, reply_reason_phrase(status), buf);
    if (buf != NULL)
        evbuffer_free(buf);
    free(body);
}
