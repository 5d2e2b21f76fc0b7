/* forward.h: the /v1/ pipeline. Today: size check, upstream call, relay.
 * The cache, coalescing and limits slot in here, readable top to bottom. */
#ifndef CLORO_FORWARD_H
#define CLORO_FORWARD_H

#include <stdbool.h>

struct request;

struct server;
struct limiter_callbacks;

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
