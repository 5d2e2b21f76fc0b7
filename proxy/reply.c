/* reply.c: the proxy's own responses. The error table below is the one place
 * where an internal outcome becomes an HTTP status and a cloro error code. */
#include "reply.h"
#include "clock.h"
#include "request.h"
#include "server.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

struct error_row {
    int status;
    const char *code;
    const char *message;
};

static const struct error_row error_table[] = {
    [PROXY_ERROR_NOT_FOUND] = {404, "NOT_FOUND", "Route not found"},
    [PROXY_ERROR_VALIDATION] = {400, "VALIDATION_ERROR", "Request validation failed"},
    [PROXY_ERROR_CACHE_DISABLED] = {404, "CACHE_DISABLED",
                                    "The cache is off in this proxy (cache = false)"},
    [PROXY_ERROR_METHOD_NOT_ALLOWED] = {405, "METHOD_NOT_ALLOWED",
                                        "Method not allowed on this route"},
    [PROXY_ERROR_PAYLOAD_TOO_LARGE] = {413, "PAYLOAD_TOO_LARGE",
                                       "Request body is larger than the proxy accepts"},
    [PROXY_ERROR_UPSTREAM_UNAVAILABLE] = {502, "UPSTREAM_UNAVAILABLE",
                                          "The cloro API could not be reached"},
    [PROXY_ERROR_UPSTREAM_TIMEOUT] = {504, "UPSTREAM_TIMEOUT",
                                      "The cloro API did not answer in time"},
    [PROXY_ERROR_CACHE_MISS] = {504, "CACHE_MISS",
                                "No cached answer, and only-if-cached allows no upstream call"},
    [PROXY_ERROR_CONCURRENCY_LIMIT] = {429, "CONCURRENCY_LIMIT_EXCEEDED",
                                       "Concurrency limit exceeded"},
    [PROXY_ERROR_RATE_LIMIT] = {429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded"},
    [PROXY_ERROR_CLIENT_CLOSED] = {499, "REQUEST_CANCELED", "Request was canceled by client"},
    [PROXY_ERROR_ARTIFACT_EXPIRED] = {410, "ARTIFACT_EXPIRED",
                                      "The artifact expired upstream before it was captured"},
    [PROXY_ERROR_ARTIFACT_PENDING] = {504, "ARTIFACT_PENDING",
                                      "The artifact is not captured yet; try again shortly"},
    [PROXY_ERROR_TASK_EXISTS] = {409, "RESOURCE_ALREADY_EXISTS", "Task already exists"},
    [PROXY_ERROR_TASK_NOT_FOUND] = {404, "RESOURCE_NOT_FOUND", "Task not found"},
    [PROXY_ERROR_MISSING_API_KEY] = {401, "MISSING_API_KEY", "Missing or invalid API key"},
    [PROXY_ERROR_INVALID_API_KEY] = {401, "INVALID_OR_EXPIRED_API_KEY",
                                     "Invalid or expired API key"},
    [PROXY_ERROR_ADMIN_TOKEN_MISSING] = {401, "ADMIN_TOKEN_REQUIRED",
                                         "This route needs the proxy's admin token "
                                         "(Authorization: Bearer <admin token>)"},
    [PROXY_ERROR_ADMIN_TOKEN_WRONG] = {403, "FORBIDDEN", "Invalid admin token"},
    [PROXY_ERROR_ADMIN_TOKEN_UNSET] = {403, "ADMIN_TOKEN_NOT_CONFIGURED",
                                       "Members exist, so the admin routes need an admin token, "
                                       "and this proxy has none: set CLORO_ADMIN_TOKEN or "
                                       "admin_token_file"},
    [PROXY_ERROR_BUDGET_EXCEEDED] = {403, "BUDGET_EXCEEDED",
                                     "The member's daily credit budget is spent"},
    [PROXY_ERROR_OFFLINE_CACHE_MISS] = {504, "OFFLINE_CACHE_MISS",
                                        "The proxy is offline and has no stored answer for "
                                        "this request"},
    [PROXY_ERROR_STORE_BUSY] = {503, "SERVICE_UNAVAILABLE",
                                "The proxy's store is behind; retry shortly"},
    [PROXY_ERROR_BAD_REQUEST] = {400, "BAD_REQUEST", "Malformed HTTP request"},
    [PROXY_ERROR_URI_TOO_LONG] = {414, "URI_TOO_LONG",
                                  "The request line is longer than the proxy accepts "
                                  "(max_header_bytes)"},
    [PROXY_ERROR_HEADERS_TOO_LARGE] = {431, "HEADERS_TOO_LARGE",
                                       "The request headers are larger than the proxy accepts "
                                       "(max_header_bytes)"},
    [PROXY_ERROR_REQUEST_TIMEOUT] = {408, "REQUEST_TIMEOUT",
                                     "The request did not arrive whole in time "
                                     "(client_request_timeout)"},
    [PROXY_ERROR_TOO_MANY_CONNECTIONS] = {503, "SERVICE_UNAVAILABLE",
                                          "The proxy holds max_connections busy connections; "
                                          "retry shortly"},
    [PROXY_ERROR_INTERNAL] = {500, "INTERNAL_SERVER_ERROR", "Internal proxy error"},
};

const char *reply_reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    }
    return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

int reply_error_status(enum proxy_error err)
{
    return error_table[err].status;
}

const char *reply_error_code(enum proxy_error err)
{
    return error_table[err].code;
}

json_t *reply_envelope(enum proxy_error err, const char *message, json_t *details)
{
    char ts[32];
    clock_format_iso8601(ts, sizeof ts, clock_wall_ms());
    json_t *error =
        json_pack("{s:s, s:s, s:s}", "code", error_table[err].code, "message",
                  message != NULL ? message : error_table[err].message, "timestamp", ts);
    if (error == NULL)
        abort();
    if (details != NULL)
        json_object_set_new(error, "details", details);
    json_t *envelope = json_pack("{s:b, s:o}", "success", 0, "error", error);
    if (envelope == NULL)
        abort();
    return envelope;
}

static void free_dumped(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)data);
}

void reply_json(struct request *r, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL)
        abort();
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL)
        abort();
    evbuffer_add_reference(buf, text, strlen(text), free_dumped, NULL);
    request_add_header(r, "Content-Type", "application/json");
    request_send(r, status, buf);
    evbuffer_free(buf);
}

void reply_error(struct request *r, enum proxy_error err, const char *message, json_t *details)
{
    r->error_code = error_table[err].code;
    if (error_table[err].status >= 400)
        r->server->stats.proxy_errors++;
    /* The proxy answered, not cloro: its own id is the request id (a fresh UUID). */
    request_add_header(r, "X-Request-ID", r->id);
    reply_json(r, error_table[err].status, reply_envelope(err, message, details));
}
