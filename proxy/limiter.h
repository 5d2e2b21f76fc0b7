/* limiter.h: client-side limits on upstream calls, and the queue of calls
 * waiting for them. Two limits: concurrency slots for monitor calls (cloro
 * counts those, cloro-api.md section 10.2; the limit in force follows what
 * the upstream advertises, never above max_concurrency) and token buckets
 * per endpoint plus an optional global one (section 10.1). A call that
 * cannot go now waits: higher X-Priority first; at equal priority clients
 * take turns (round robin), so a burst from one cannot starve another; FIFO
 * within a client and endpoint (a client's calls to a rate-limited endpoint
 * do not hold back its calls to another). A client may also have limits of
 * its own (a member's rate_limit and max_concurrency): past them its calls
 * wait in the same queue while others' go. Bounded by max_queue and
 * queue_timeout, past which the caller is told to answer 429. Loop thread
 * only; callbacks run on it. */
#ifndef CLORO_LIMITER_H
#define CLORO_LIMITER_H

#include "histogram.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct event;
struct limiter;
struct limiter_client;
struct limiter_share;
struct limiter_callbacks;

/* "member:" and a 63-character name, or an address, and the NUL. */
#define LIMITER_CLIENT_MAX 72

enum limiter_wait {
    LIMITER_WAIT_NONE,
    LIMITER_WAIT_SLOT,        /* all concurrency slots are busy */
    LIMITER_WAIT_RATE,        /* the endpoint's (or the global) bucket is empty */
    LIMITER_WAIT_CLIENT_SLOT, /* the client has client_max_concurrency calls in flight */
    LIMITER_WAIT_CLIENT_RATE, /* the client's own bucket (client_rate) is empty */
};

enum limiter_refusal {
    LIMITER_REFUSED_QUEUE_FULL,
    LIMITER_REFUSED_TIMEOUT,
};

/* One upstream call's claim on the limits. Embedded in its owner (struct
 * request); the limiter links it while queued or granted. */
struct limiter_ticket {
    bool needs_slot;                 /* a monitor call: takes a concurrency slot */
    int endpoint;                    /* bucket index, from limiter_endpoint() */
    int priority;                    /* 1..10 */
    char client[LIMITER_CLIENT_MAX]; /* whose turn it is: a member, else the address */
    /* The client's own limits, on top of the shared ones; 0: none. Every
     * ticket of one client counts against them (the latest submitted sets
     * them). */
    double client_rate;         /* its upstream calls per second */
    int client_max_concurrency; /* its upstream calls in flight at once (any endpoint) */
    void *owner;                /* handed back to the callbacks */
    /* NULL: the limiter's callbacks (client requests); set by callers whose
     * tickets are not requests (the task follower). */
    const struct limiter_callbacks *callbacks;
    /* Limiter state: */
    struct limiter *limiter;
    bool queued, holds_slot, holds_share;
    struct limiter_share *share; /* the client's own limits' state; NULL: none */
    enum limiter_wait waiting_for;
    int64_t enqueued_us;
    int64_t waited_ms; /* set when granted or refused */
    struct event *timer;
    struct limiter_client *client_queue;
    struct limiter_ticket *next; /* in its client's FIFO */
};

struct limiter_options {
    int max_concurrency;
    double rate_per_endpoint; /* per second; 0: no per-endpoint limit */
    double rate_global;       /* per second; 0: none */
    size_t max_queue;
    int64_t queue_timeout_ms;
};

/* granted: the call may go upstream now. refused: it must not (queue full
 * or queue timeout); the ticket is no longer the limiter's. alive: asked
 * before a queued ticket is granted; false drops it (its client left), and
 * dropped is called instead of granted. */
struct limiter_callbacks {
    void (*granted)(struct limiter_ticket *t);
    void (*refused)(struct limiter_ticket *t, enum limiter_refusal why);
    bool (*alive)(struct limiter_ticket *t);
    void (*dropped)(struct limiter_ticket *t);
};

struct limiter *limiter_new(struct event_base *base, const struct limiter_options *o,
                            const struct limiter_callbacks *cb);
/* Queued tickets are forgotten without callbacks (shutdown). */
void limiter_free(struct limiter *l);

/* The bucket index of an upstream route (its template: /v1/async/task/{id}
 * is one endpoint whatever the id). */
int limiter_endpoint(struct limiter *l, const char *path);

/* Asks for the ticket's limits. Calls granted (possibly before returning) or
 * refused, exactly once, unless withdrawn first. A queued ticket never jumps
 * ahead of those already waiting. */
void limiter_submit(struct limiter *l, struct limiter_ticket *t);
/* A granted call ended: its slot (if any) goes to the next waiter. */
void limiter_release(struct limiter *l, struct limiter_ticket *t);
/* Takes a queued ticket out without any callback (its client left). */
void limiter_withdraw(struct limiter *l, struct limiter_ticket *t);

/* Calls visit for every queued ticket (for the sweep of departed clients);
 * visit must not change the queue. */
void limiter_foreach_queued(struct limiter *l, void (*visit)(struct limiter_ticket *, void *),
                            void *arg);

/* Adopts a concurrency limit advertised by the upstream, capped at
 * max_concurrency. Returns the previous limit when it changed, else 0. */
int limiter_learn_limit(struct limiter *l, int advertised);

struct limiter_stats {
    int max_concurrency;
    int limit; /* in force */
    int in_flight;
    size_t queued;
    uint64_t granted, overflows, timeouts, dropped;
    const struct histogram *queue_wait; /* µs, of granted tickets that waited or not */
};
void limiter_stats(const struct limiter *l, struct limiter_stats *out);

#endif
