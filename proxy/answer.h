/* answer.h: how an answer leaves the proxy, fresh from the upstream or
 * replayed from the cache: the headers its cache outcome calls for
 * (X-Cache, Cache-Status per RFC 9211, Age, X-Credits-Charged/-Saved,
 * X-Cache-Key) and which upstream headers are not replayed. */
#ifndef CLORO_ANSWER_H
#define CLORO_ANSWER_H

#include "entry.h"
#include "request.h"

#include <stdbool.h>

struct evbuffer;
struct server;

/* How an answer reached the client. */
struct answer_context {
    enum cache_outcome outcome;
    bool stored;         /* the answer was queued for storing */
    bool after_error;    /* stale-if-error: the upstream failed */
    int upstream_status; /* fwd-status, 0 when not forwarded */
};

/* Sends e to r with the headers ctx calls for and ends r. body, when not
 * NULL, is moved out in place of a copy of e->body (the leader's own
 * upstream buffer). */
void answer_send(struct request *r, const struct cache_entry *e, const struct answer_context *ctx,
                 struct evbuffer *body);

/* body with its artifact URLs pointing at the proxy's copies (a new buffer,
 * *out_len its length), or NULL when there is nothing to rewrite (or
 * rewriting is off). */
char *answer_rewrite_artifacts(struct server *srv, const void *body, size_t body_len,
                               size_t *out_len);

#endif
