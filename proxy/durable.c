/* durable.c: replies held until the store has what they acknowledge
 * (durable.h). The writer thread commits in batches, typically within a
 * millisecond or two; a 1 ms timer, armed only while a reply is held,
 * compares its settled sequence number with what each held reply waits for.
 * Nothing blocks the loop. */
#include "durable.h"
#include "request.h"
#include "writer.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>

struct held {
    struct request *r;
    int status;
    struct evbuffer *body;
    struct held *next;
};

struct durable {
    struct cache_writer *writer;
    struct event *timer;
    struct held *first, *last; /* in order of durable_seq (the order held) */
};

static void arm(struct durable *d)
{
    struct timeval ms = {.tv_sec = 0, .tv_usec = 1000};
    evtimer_add(d->timer, &ms);
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct durable *d = arg;
    uint64_t settled = cache_writer_settled(d->writer);
    while (d->first != NULL && d->first->r->durable_seq <= settled) {
        struct held *h = d->first;
        d->first = h->next;
        if (d->first == NULL)
            d->last = NULL;
        h->r->durable_seq = 0;
        request_send(h->r, h->status, h->body);
        if (h->body != NULL)
            evbuffer_free(h->body);
        free(h);
    }
    if (d->first != NULL)
        arm(d);
}

struct durable *durable_new(struct event_base *base, struct cache_writer *writer)
{
    struct durable *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->writer = writer;
    d->timer = evtimer_new(base, on_timer, d);
    if (d->timer == NULL) {
        free(d);
        return NULL;
    }
    return d;
}

void durable_free(struct durable *d)
{
    if (d == NULL)
        return;
    while (d->first != NULL) {
        struct held *h = d->first;
        d->first = h->next;
        if (h->body != NULL)
            evbuffer_free(h->body);
        free(h);
    }
    event_free(d->timer);
    free(d);
}

bool durable_ready_or_hold(struct durable *d, struct request *r, int status, struct evbuffer *body)
{
    if (d == NULL || r->durable_seq == 0 || cache_writer_settled(d->writer) >= r->durable_seq) {
        r->durable_seq = 0;
        return true;
    }
    struct held *h = calloc(1, sizeof *h);
    struct evbuffer *copy = body != NULL ? evbuffer_new() : NULL;
    if (h == NULL || (body != NULL && (copy == NULL || evbuffer_add_buffer(copy, body) != 0)))
        abort();
    h->r = r;
    h->status = status;
    h->body = copy;
    if (d->last != NULL)
        d->last->next = h;
    else
        d->first = h;
    d->last = h;
    if (!evtimer_pending(d->timer, NULL))
        arm(d);
    return false;
}
