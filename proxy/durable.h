/* durable.h: replies held until the store has the records they acknowledge.
 * A reply that hands a client an async task cloro has created (and billed)
 * must not leave before the task's record is committed: after a crash the
 * proxy would not know the task, and its result and webhook would be lost.
 * request_send holds a reply whose request has durable_seq set (request.h)
 * until cache_writer_settled reaches it. */
#ifndef CLORO_DURABLE_H
#define CLORO_DURABLE_H

#include <stdbool.h>

struct event_base;
struct cache_writer;
struct evbuffer;
struct request;
struct durable;

struct durable *durable_new(struct event_base *base, struct cache_writer *writer);
/* Frees what is still held without sending it (the requests are the
 * server's to abandon at shutdown). */
void durable_free(struct durable *d);

/* True when r's reply may leave now; else the reply (status, a copy of
 * body) is held, and request_send(r, ...) is called again once the records
 * are settled (with r->durable_seq cleared). */
bool durable_ready_or_hold(struct durable *d, struct request *r, int status, struct evbuffer *body);

#endif
