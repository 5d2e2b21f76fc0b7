/* request.h: one client request, from arrival to the one reply it gets.
 * struct request owns everything made for it; request_send() answers, logs
 * the access line and frees it, and is the only way a request ends (but for
 * request_abandon at shutdown). Handlers see struct request, never evhttp. */
#ifndef CLORO_REQUEST_H
#define CLORO_REQUEST_H

#include "ids.h"
#include "key.h"
#include "limiter.h"
#include "policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evhttp_request;
struct evbuffer;
struct server;
struct upstream_transfer;
struct flight;
struct event;
struct forward_hooks;
struct task;

/* What the cache did for a request: X-Cache and the access log's cache=. */
enum cache_outcome {
    CACHE_OUTCOME_NONE, /* the cache is off */
    CACHE_OUTCOME_HIT,
    CACHE_OUTCOME_MISS,
    CACHE_OUTCOME_STALE,
    CACHE_OUTCOME_BYPASS,
    CACHE_OUTCOME_REFRESH,
    CACHE_OUTCOME_COALESCED,
};
#define CACHE_OUTCOME_COUNT (CACHE_OUTCOME_COALESCED + 1)

struct request {
    struct evhttp_request *evreq; /* borrowed from evhttp until the reply */
    struct server *server;
    uint64_t durable_seq;      /* hold the reply until the store settles this (durable.h) */
    char id[IDS_UUID_LEN + 1]; /* X-Proxy-Request-ID, and X-Request-ID of own replies */
    const char *method;        /* static string, e.g. "POST" */
    char *path;                /* owned, without the query string */
    char *query;               /* owned, NULL when absent */
    char client_addr[64];
    char client_ip[48];        /* client_addr without the port: whose turn it is in the queue */
    char *client_request_id;   /* owned, the client's X-Request-ID (bounded), or NULL */
    char *upstream_request_id; /* owned, the upstream's X-Request-ID, or NULL */
    const char *error_code;    /* set when the proxy made the reply itself */
    char member[64];           /* the member its token names (auth.h); "" when auth is open */
    int64_t started_us;
    struct upstream_transfer *transfer; /* the upstream call in flight, if any */

    /* The cache's view (forward.c). */
    enum cache_outcome cache_outcome;
    bool keyed; /* key holds this request's cache key */
    struct cache_key key;
    char *canonical; /* owned: the canonical request text, once an answer is stored (cache_io.c) */
    uint32_t sample; /* X-Cache-Sample (1..max_samples), 0 when absent (key.h) */
    struct cache_directives directives;
    struct flight *flight;       /* the flight this request leads, if any */
    struct request *next_waiter; /* in a flight's waiting list */

    /* Limits and retries (forward.c). */
    struct limiter_ticket ticket;
    int priority;        /* X-Priority, 0 when absent */
    int retries;         /* upstream attempts after the first */
    int64_t deadline_us; /* arrival + upstream_timeout: queue waits and retries included */
    struct event *retry_timer;
    int upstream_attempts; /* upstream calls made for it (accounting.c counts them) */

    /* Set by callers that send something other than the client's own call
     * (async submissions, tasks.h): what goes upstream and who settles it. */
    char *upstream_body; /* owned; NULL: the client's body */
    size_t upstream_body_len;
    const char *upstream_path;         /* static; NULL: the client's path (and query) */
    const struct forward_hooks *hooks; /* NULL: forward.c answers */
    void *hook_arg;

    /* The credit saver (credit_saver.h): the task this call waits on. */
    struct task *awaited;
    struct request *next_awaiting; /* in the task's list */
    bool asked_async;              /* this call created the task */
    struct event *deadline_timer;

    struct request *prev, *next; /* the server's live list */
};

/* Takes a request evhttp has fully read. Never fails (aborts on OOM). */
struct request *request_new(struct server *srv, struct evhttp_request *evreq);

/* The client's header (case-insensitive name), or NULL. Borrowed. */
const char *request_header(const struct request *r, const char *name);

typedef void (*request_header_cb)(const char *name, const char *value, void *arg);
/* Calls cb for every header the client sent, in order. */
void request_foreach_header(const struct request *r, request_header_cb cb, void *arg);

/* True when the client's connection is closed (peeked without reading). */
bool request_client_gone(const struct request *r);

/* The request body; borrowed, alive until the reply. */
struct evbuffer *request_body(const struct request *r);

/* Adds a response header. Names and values are copied. */
void request_add_header(struct request *r, const char *name, const char *value);

/* Sends the reply with the given status and body (its contents are moved
 * out; body may be NULL), adds X-Proxy-Request-ID, writes the access-log
 * line and frees r. r is invalid afterwards. */
void request_send(struct request *r, int status, struct evbuffer *body);

/* "HIT", "MISS", ... ("none" when the cache is off). Static. */
const char *request_cache_outcome_name(enum cache_outcome outcome);

/* Shutdown only: frees r without replying; evhttp frees its side. */
void request_abandon(struct request *r);

#endif
