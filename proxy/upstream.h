/* upstream.h: HTTP calls to the cloro API through libcurl's multi interface,
 * driven by the proxy's own libevent loop (socket and timer callbacks), so no
 * call ever blocks the loop. Connections are kept alive and reused (HTTP/2
 * multiplexed where the server offers it). This module has no policy: what to
 * send and what to relay is the caller's business (forward.c).
 *
 * Callbacks run on the loop thread, outside any libcurl callback, so they may
 * start or cancel other transfers. */
#ifndef CLORO_UPSTREAM_H
#define CLORO_UPSTREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct upstream;
struct upstream_transfer;

struct upstream_options {
    int64_t connect_timeout_ms;
    size_t max_response_bytes;
    long max_connections;
};

struct upstream_header {
    const char *name;
    const char *value;
};

/* What the caller asks for. Everything is copied by upstream_start except
 * body, which must stay valid until the transfer ends or is cancelled. */
struct upstream_call {
    const char *method; /* "GET", "POST", ... */
    const char *url;
    const struct upstream_header *headers; /* sent as given */
    size_t header_count;
    const void *body;
    size_t body_len;
    int64_t timeout_ms; /* the whole call */
    size_t max_bytes;   /* response body bound; 0: max_response_bytes */
    /* libcurl sends a request again, on a fresh connection, when the reused
     * connection it went out on died before any byte of an answer. That
     * resend is counted (upstream_result.sends); with no_resend it is
     * refused and the call ends UPSTREAM_BROKEN: for requests the upstream
     * may have accepted and that must not be made twice. */
    bool no_resend;
};

enum upstream_outcome {
    UPSTREAM_OK,          /* a complete response, whatever its status */
    UPSTREAM_UNREACHABLE, /* no connection (refused, DNS, TLS, connect timeout) */
    UPSTREAM_BROKEN,      /* connected, but the response was cut or malformed */
    UPSTREAM_TIMEOUT,     /* connected, no complete answer within timeout_ms */
    UPSTREAM_TOO_LARGE,   /* body over max_response_bytes */
};

/* "ok", "unreachable", "broken", "timeout" or "too_large". */
const char *upstream_outcome_name(enum upstream_outcome outcome);

/* Valid only during the completion callback. */
struct upstream_result {
    enum upstream_outcome outcome;
    long status;                           /* HTTP status when outcome is UPSTREAM_OK */
    const struct upstream_header *headers; /* of the final response */
    size_t header_count;
    struct evbuffer *body; /* the caller may move its contents out */
    const char *error;     /* libcurl's message when outcome is not OK */
    int64_t elapsed_us;
    int sends; /* times the request went out: 1, 2 after libcurl's resend, 0 if never */
};

typedef void (*upstream_done_cb)(const struct upstream_result *result, void *arg);

/* A header of the final response (case-insensitive), or NULL. Borrowed. */
const char *upstream_result_header(const struct upstream_result *res, const char *name);
/* The body parsed as JSON (new reference), or NULL: no answer, empty, not JSON. */
json_t *upstream_result_json(const struct upstream_result *res);

/* Returns NULL when libcurl cannot be set up. */
struct upstream *upstream_new(struct event_base *base, const struct upstream_options *opts);
/* Every transfer must have ended or been cancelled. The base must be alive. */
void upstream_free(struct upstream *up);

/* Starts a call; done runs exactly once, later, unless the transfer is
 * cancelled first. Returns NULL (and never calls done) if libcurl refuses. */
struct upstream_transfer *upstream_start(struct upstream *up, const struct upstream_call *call,
                                         upstream_done_cb done, void *arg);
/* Stops a transfer whose callback has not run; done will not run. */
void upstream_cancel(struct upstream_transfer *t);

/* Transfers in flight, for stats. */
size_t upstream_active(const struct upstream *up);

#endif
