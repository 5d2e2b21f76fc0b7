/* forward.h: the /v1/ pipeline: size check, cache, coalescing, limits,
 * retries, the upstream call and the relay, readable top to bottom. Async
 * submissions (tasks.h) reuse its limits, retries and upstream call through
 * forward_upstream and settle the answer themselves. */
#ifndef CLORO_FORWARD_H
#define CLORO_FORWARD_H

#include "answer.h"
#include "reply.h"

#include <stdbool.h>

struct request;

struct server;
struct cache_key;
struct limiter_callbacks;
struct upstream_result;

/* How a caller of forward_upstream settles the call. answered runs once with
 * the final outcome (after retries; any status, or a transport failure) and
 * must end r. failed runs when the call never got an answer the proxy could
 * relay (queue full or timed out, client gone, libcurl refused): forward.c
 * then answers r with its own error right after; failed must not end r. */
struct forward_hooks {
    void (*answered)(struct request *r, const struct upstream_result *res);
    void (*failed)(struct request *r);
};

/* Sends r upstream (its path and query) through the limits and retries,
 * with r->upstream_body when set, and hands the outcome to r->hooks. */
void forward_upstream(struct request *r);

/* Ends r and the waiters of its flight with answer: r with ctx, the waiters
 * as coalesced (the credit saver's answers). */
void forward_settle(struct request *r, const struct cache_entry *answer,
                    const struct answer_context *ctx);
/* Ends r and the waiters of its flight with one of the proxy's errors
 * (details stolen). */
void forward_fail(struct request *r, enum proxy_error err, const char *message, json_t *details);

/* Ends r with the proxy's error for a transport failure (502/504 envelope). */
void forward_reply_upstream_failure(struct request *r, const struct upstream_result *res);

/* Ends r with 504 OFFLINE_CACHE_MISS (offline mode, mode.h): details name
 * key and its provider (and X-Cache-Key carries it), or, key NULL, say the
 * request cannot be keyed. */
void forward_reply_offline(struct request *r, const struct cache_key *key);

/* The validated X-Priority of r (1..10) into r->priority and X-Cache-Sample
 * (1..max_samples) into r->sample, or ends r with a 400 and returns false.
 * Checks max_body_bytes the same way (413). */
bool forward_check_request(struct request *r);

/* Handles a /v1/ request; ends r (now or when the upstream answers). */
void forward_request(struct request *r);

/* What the limiter calls back when a queued call may go, must not, or lost
 * its client (struct limiter_callbacks). Static. */
const struct limiter_callbacks *forward_limiter_callbacks(void);

/* Drops queued calls whose clients left (called once a second). */
void forward_sweep_departed(struct server *srv);

/* True for response headers of the upstream that reach the client unchanged:
 * Content-Type, every X-* (but X-Proxy-*, which are the proxy's own),
 * Retry-After, and the deprecation trio of cloro-api.md section 1. */
bool forward_relays_response_header(const char *name);

/* True for client request headers sent on to the upstream: all but the
 * hop-by-hop ones (RFC 9110 section 7.6.1), those libcurl frames itself
 * (Host, Content-Length, Expect, Accept-Encoding) and the X-Proxy-* controls.
 * Authorization is decided separately (the shared key replaces it). */
bool forward_passes_request_header(const char *name);

#endif
