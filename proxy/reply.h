/* reply.h: every response the proxy makes itself. One table maps the proxy's
 * own errors to an HTTP status and a cloro error code, and every error goes
 * out in cloro's envelope (cloro-api.md section 9.1) with a fresh UUID in
 * X-Request-ID. */
#ifndef CLORO_REPLY_H
#define CLORO_REPLY_H

#include <jansson.h>

struct request;

enum proxy_error {
    PROXY_ERROR_NOT_FOUND,
    PROXY_ERROR_VALIDATION,
    PROXY_ERROR_CACHE_DISABLED,
    PROXY_ERROR_METHOD_NOT_ALLOWED,
    PROXY_ERROR_PAYLOAD_TOO_LARGE,
    PROXY_ERROR_UPSTREAM_UNAVAILABLE,
    PROXY_ERROR_UPSTREAM_TIMEOUT,
    PROXY_ERROR_CACHE_MISS,
    PROXY_ERROR_CONCURRENCY_LIMIT,
    PROXY_ERROR_RATE_LIMIT,
    PROXY_ERROR_CLIENT_CLOSED,
    PROXY_ERROR_ARTIFACT_EXPIRED,
    PROXY_ERROR_ARTIFACT_PENDING,
    PROXY_ERROR_TASK_EXISTS,    /* an idempotencyKey already used (cloro-api.md 7.8) */
    PROXY_ERROR_TASK_NOT_FOUND, /* a task deleted upstream */
    /* Members and the admin token (auth.h). */
    PROXY_ERROR_MISSING_API_KEY,     /* /v1/ without a member's token (cloro-api.md 9) */
    PROXY_ERROR_INVALID_API_KEY,     /* a token no member holds */
    PROXY_ERROR_ADMIN_TOKEN_MISSING, /* an admin route without the admin token */
    PROXY_ERROR_ADMIN_TOKEN_WRONG,   /* an admin route with another token */
    PROXY_ERROR_ADMIN_TOKEN_UNSET,   /* members exist, but the proxy has no admin token */
    PROXY_ERROR_BUDGET_EXCEEDED,     /* a member's daily_credit_budget is spent (budget.h) */
    PROXY_ERROR_OFFLINE_CACHE_MISS,  /* offline mode (mode.h): nothing stored answers it */
    PROXY_ERROR_STORE_BUSY,          /* the writer is behind: task records would be lost */
    /* Clients the HTTP layer refuses (error_page.c, connections.c). */
    PROXY_ERROR_BAD_REQUEST,          /* not parseable as HTTP */
    PROXY_ERROR_URI_TOO_LONG,         /* request line over max_header_bytes */
    PROXY_ERROR_HEADERS_TOO_LARGE,    /* head over max_header_bytes */
    PROXY_ERROR_REQUEST_TIMEOUT,      /* not received whole within client_request_timeout */
    PROXY_ERROR_TOO_MANY_CONNECTIONS, /* max_connections reached, none idle to close */
    PROXY_ERROR_INTERNAL,
};

/* The reason phrase of a status line ("Not Found"). */
const char *reply_reason_phrase(int status);

/* HTTP status and cloro code of an error, e.g. 404 and "NOT_FOUND". */
int reply_error_status(enum proxy_error err);
const char *reply_error_code(enum proxy_error err);

/* Builds the envelope {"success":false,"error":{code,message,details?,timestamp}}.
 * details is stolen (may be NULL: then omitted, as cloro does). New reference. */
json_t *reply_envelope(enum proxy_error err, const char *message, json_t *details);

/* Sends err in the envelope and ends r. message NULL = the table's default. */
void reply_error(struct request *r, enum proxy_error err, const char *message, json_t *details);

/* Sends body as application/json with status and ends r. body is stolen. */
void reply_json(struct request *r, int status, json_t *body);

#endif
