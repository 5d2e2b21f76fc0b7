/* limiter.c: slots, buckets and the waiting queue.
 *
 * DESIGN: waiting tickets sit in FIFOs, one per (priority, client); the
 * FIFOs of one priority form a ring. dispatch() walks priorities from 10
 * down and, within one, the ring from its cursor: the first head that can go
 * now is granted and the cursor moves past its client, so clients take
 * turns. A head that must wait (no slot, empty bucket) is passed over for
 * the others of its ring and lower priorities (a call that needs no slot
 * may go while slots are full). When only buckets hold everyone back, one
 * timer wakes dispatch() when the first token is due. Each queued ticket has
 * its own queue-timeout timer (libevent keeps them in a heap).
 * A client with limits of its own (a member) has a share: its calls in
 * flight and its own bucket. A head held back by its share is passed over
 * like one held back by a slot or a bucket, so a member over its share
 * waits while everyone else goes. Shares live as long as the limiter (one
 * per limited client: members, not addresses). */
#include "limiter.h"
#include "clock.h"
#include "token_bucket.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRIORITY_MAX   10
#define ENDPOINTS_MAX  32
#define CLIENT_BUCKETS 256
#define SHARE_BUCKETS  64
/* Heads looked at per dispatch round before giving up: bounds the work a
 * release does when many heads are blocked on different buckets. */
#define SCAN_MAX 128

/* One FIFO per (priority, client, endpoint): a client's calls to a
 * rate-limited endpoint never hold back its calls to another. */
struct limiter_client {
    char client[LIMITER_CLIENT_MAX];
    int priority;
    int endpoint;
    struct limiter_ticket *head, *tail;
    struct limiter_client *ring_prev, *ring_next; /* its priority's ring */
    struct limiter_client *hash_next;
};

/* One limited client's own state. Invariant: in_flight counts its granted
 * tickets not yet released (holds_share). */
struct limiter_share {
    char client[LIMITER_CLIENT_MAX];
    int in_flight;
    int max_concurrency; /* 0: none */
    double rate;         /* 0: none; else bucket is in use */
    struct token_bucket bucket;
    struct limiter_share *next;
};

struct limiter {
    struct event_base *base;
    struct limiter_options opts;
    struct limiter_callbacks cb;
    int limit;
    int in_flight;
    size_t queued;
    struct limiter_client *rings[PRIORITY_MAX + 1]; /* cursor of each ring */
    struct limiter_client *clients[CLIENT_BUCKETS];
    struct limiter_share *shares[SHARE_BUCKETS];
    char *endpoint_names[ENDPOINTS_MAX];
    struct token_bucket buckets[ENDPOINTS_MAX];
    int endpoint_count;
    struct token_bucket global;
    struct event *rate_timer;
    bool dispatching, dispatch_again;
    uint64_t granted, overflows, timeouts, dropped;
    struct histogram queue_wait;
};

/* A bucket holds 10 ms of its rate (at least one token). With a burst of
 * one, a timer that fires a few ms late loses those tokens for good: at
 * 1,000/s the loop delivered half the rate. 10 ms of slack keeps the rate and
 * adds at most 1 % to any one-second window upstream (cloro-api.md 10.1). */
static double burst_of(double rate_per_s)
{
    double burst = rate_per_s / 100.0;
    return burst < 1.0 ? 1.0 : burst;
}

static void *zalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL)
        abort();
    return p;
}

static void dispatch(struct limiter *l);

static void on_rate_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    dispatch(arg);
}

/* The ticket's own callbacks (a background call's), else the limiter's. */
static const struct limiter_callbacks *callbacks_of(const struct limiter *l,
                                                    const struct limiter_ticket *t)
{
    return t->callbacks != NULL ? t->callbacks : &l->cb;
}

struct limiter *limiter_new(struct event_base *base, const struct limiter_options *o,
                            const struct limiter_callbacks *cb)
{
    struct limiter *l = zalloc(sizeof *l);
    l->base = base;
    l->opts = *o;
    l->cb = *cb;
    l->limit = o->max_concurrency;
    histogram_init(&l->queue_wait);
    int64_t now = clock_mono_us();
    if (o->rate_global > 0)
        token_bucket_init(&l->global, o->rate_global, burst_of(o->rate_global), now);
    l->rate_timer = evtimer_new(base, on_rate_timer, l);
    if (l->rate_timer == NULL)
        abort();
    return l;
}

static size_t client_hash(const char *client, int priority, int endpoint)
{
    size_t h = (size_t)priority * 31u + (size_t)endpoint * 7919u;
    for (const unsigned char *p = (const unsigned char *)client; *p != '\0'; p++)
        h = h * 131u + *p;
    return h % CLIENT_BUCKETS;
}

void limiter_free(struct limiter *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < CLIENT_BUCKETS; i++) {
        while (l->clients[i] != NULL) {
            struct limiter_client *c = l->clients[i];
            l->clients[i] = c->hash_next;
            for (struct limiter_ticket *t = c->head; t != NULL; t = t->next) {
                if (t->timer != NULL)
                    event_free(t->timer);
                t->timer = NULL;
                t->queued = false;
            }
            free(c);
        }
    }
    for (size_t i = 0; i < SHARE_BUCKETS; i++) {
        while (l->shares[i] != NULL) {
            struct limiter_share *s = l->shares[i];
            l->shares[i] = s->next;
            free(s);
        }
    }
    for (int i = 0; i < l->endpoint_count; i++)
        free(l->endpoint_names[i]);
    event_free(l->rate_timer);
    free(l);
}

/* The route template of a /v1/ path: ids in /v1/async/task/{id} are one
 * endpoint (cloro-api.md section 10.1 leaves it open; per template is the
 * conservative reading). */
static void endpoint_template(const char *path, char *out, size_t size)
{
    static const char task[] = "/v1/async/task/";
    if (strncmp(path, task, sizeof task - 1) == 0 && strcmp(path, "/v1/async/task/batch") != 0)
        snprintf(out, size, "/v1/async/task/{id}");
    else
        snprintf(out, size, "%s", path);
}

int limiter_endpoint(struct limiter *l, const char *path)
{
    char name[128];
    endpoint_template(path, name, sizeof name);
    for (int i = 0; i < l->endpoint_count; i++)
        if (strcmp(l->endpoint_names[i], name) == 0)
            return i;
    if (l->endpoint_count == ENDPOINTS_MAX)
        return ENDPOINTS_MAX - 1; /* odd paths share the last bucket */
    int i = l->endpoint_count++;
    l->endpoint_names[i] = strdup(name);
    if (l->endpoint_names[i] == NULL)
        abort();
    if (l->opts.rate_per_endpoint > 0)
        token_bucket_init(&l->buckets[i], l->opts.rate_per_endpoint,
                          burst_of(l->opts.rate_per_endpoint), clock_mono_us());
    return i;
}

/* The share of a ticket with limits of its own (created on first use, its
 * limits updated to the ticket's), or NULL for a ticket without. */
static struct limiter_share *share_of(struct limiter *l, const struct limiter_ticket *t,
                                      int64_t now)
{
    if (t->client_rate <= 0 && t->client_max_concurrency <= 0)
        return NULL;
    size_t h = client_hash(t->client, 0, 0) % SHARE_BUCKETS;
    struct limiter_share *s = l->shares[h];
    while (s != NULL && strcmp(s->client, t->client) != 0)
        s = s->next;
    if (s == NULL) {
        s = zalloc(sizeof *s);
        snprintf(s->client, sizeof s->client, "%s", t->client);
        s->next = l->shares[h];
        l->shares[h] = s;
    }
    s->max_concurrency = t->client_max_concurrency > 0 ? t->client_max_concurrency : 0;
    double rate = t->client_rate > 0 ? t->client_rate : 0;
    if (rate > 0 && s->rate <= 0)
        token_bucket_init(&s->bucket, rate, burst_of(rate), now);
    else if (rate > 0 && rate != s->rate)
        token_bucket_set_rate(&s->bucket, rate, burst_of(rate), now);
    s->rate = rate;
    return s;
}

/* Why t cannot go now (NONE: it can), and for buckets how long until it can. */
static enum limiter_wait blocked_by(struct limiter *l, const struct limiter_ticket *t, int64_t now,
                                    int64_t *wait_us)
{
    const struct limiter_share *s = t->share;
    if (s != NULL && s->max_concurrency > 0 && s->in_flight >= s->max_concurrency)
        return LIMITER_WAIT_CLIENT_SLOT;
    if (t->needs_slot && l->in_flight >= l->limit)
        return LIMITER_WAIT_SLOT;
    int64_t wait = 0;
    if (l->opts.rate_per_endpoint > 0)
        wait = token_bucket_wait_us(&l->buckets[t->endpoint], now);
    if (l->opts.rate_global > 0) {
        int64_t g = token_bucket_wait_us(&l->global, now);
        wait = g > wait ? g : wait;
    }
    int64_t own = s != NULL && s->rate > 0 ? token_bucket_wait_us(&t->share->bucket, now) : 0;
    *wait_us = own > wait ? own : wait;
    if (own > 0 && own >= wait)
        return LIMITER_WAIT_CLIENT_RATE;
    return wait > 0 ? LIMITER_WAIT_RATE : LIMITER_WAIT_NONE;
}

static void take(struct limiter *l, struct limiter_ticket *t, int64_t now)
{
    if (l->opts.rate_per_endpoint > 0)
        token_bucket_take(&l->buckets[t->endpoint], now);
    if (l->opts.rate_global > 0)
        token_bucket_take(&l->global, now);
    if (t->needs_slot) {
        l->in_flight++;
        t->holds_slot = true;
    }
    if (t->share != NULL) {
        if (t->share->rate > 0)
            token_bucket_take(&t->share->bucket, now);
        t->share->in_flight++;
        t->holds_share = true;
    }
    t->waited_ms = (now - t->enqueued_us) / 1000;
    histogram_record(&l->queue_wait, now - t->enqueued_us);
    l->granted++;
}

static void ring_remove(struct limiter *l, struct limiter_client *c)
{
    struct limiter_client **cursor = &l->rings[c->priority];
    if (c->ring_next == c) {
        *cursor = NULL;
    } else {
        c->ring_prev->ring_next = c->ring_next;
        c->ring_next->ring_prev = c->ring_prev;
        if (*cursor == c)
            *cursor = c->ring_next;
    }
    struct limiter_client **link = &l->clients[client_hash(c->client, c->priority, c->endpoint)];
    while (*link != c)
        link = &(*link)->hash_next;
    *link = c->hash_next;
    free(c);
}

/* Unlinks t from its client's FIFO (t must be queued). */
static void unqueue(struct limiter *l, struct limiter_ticket *t)
{
    struct limiter_client *c = t->client_queue;
    struct limiter_ticket **link = &c->head;
    struct limiter_ticket *prev = NULL;
    while (*link != t) {
        prev = *link;
        link = &(*link)->next;
    }
    *link = t->next;
    if (c->tail == t)
        c->tail = prev;
    t->next = NULL;
    t->queued = false;
    t->client_queue = NULL;
    if (t->timer != NULL) {
        event_free(t->timer);
        t->timer = NULL;
    }
    l->queued--;
    if (c->head == NULL)
        ring_remove(l, c);
}

static struct limiter_client *client_queue_of(struct limiter *l, const struct limiter_ticket *t)
{
    size_t h = client_hash(t->client, t->priority, t->endpoint);
    for (struct limiter_client *c = l->clients[h]; c != NULL; c = c->hash_next)
        if (c->priority == t->priority && c->endpoint == t->endpoint &&
            strcmp(c->client, t->client) == 0)
            return c;
    struct limiter_client *c = zalloc(sizeof *c);
    snprintf(c->client, sizeof c->client, "%s", t->client);
    c->priority = t->priority;
    c->endpoint = t->endpoint;
    c->hash_next = l->clients[h];
    l->clients[h] = c;
    struct limiter_client *cursor = l->rings[t->priority];
    if (cursor == NULL) {
        c->ring_next = c->ring_prev = c;
        l->rings[t->priority] = c;
    } else { /* joins the ring just before the cursor: last in this round */
        c->ring_next = cursor;
        c->ring_prev = cursor->ring_prev;
        cursor->ring_prev->ring_next = c;
        cursor->ring_prev = c;
    }
    return c;
}

static void on_queue_timeout(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct limiter_ticket *t = arg;
    struct limiter *l = t->limiter;
    int64_t now = clock_mono_us();
    /* libevent counts timers from its cached loop time, which may lag the
     * clock enqueued_us was read from: never refuse before the full wait. */
    int64_t left_us = t->enqueued_us + l->opts.queue_timeout_ms * 1000 - now;
    if (left_us > 0) {
        struct timeval tv = {.tv_sec = left_us / 1000000, .tv_usec = left_us % 1000000};
        evtimer_add(t->timer, &tv);
        return;
    }
    int64_t wait_us;
    enum limiter_wait why = blocked_by(l, t, now, &wait_us);
    if (why != LIMITER_WAIT_NONE)
        t->waiting_for = why;
    t->waited_ms = (now - t->enqueued_us) / 1000;
    unqueue(l, t);
    l->timeouts++;
    callbacks_of(l, t)->refused(t, LIMITER_REFUSED_TIMEOUT);
}

static void enqueue(struct limiter *l, struct limiter_ticket *t)
{
    struct limiter_client *c = client_queue_of(l, t);
    t->next = NULL;
    if (c->tail != NULL)
        c->tail->next = t;
    else
        c->head = t;
    c->tail = t;
    t->client_queue = c;
    t->queued = true;
    l->queued++;
    t->timer = evtimer_new(l->base, on_queue_timeout, t);
    if (t->timer == NULL)
        abort();
    struct timeval tv = {.tv_sec = l->opts.queue_timeout_ms / 1000,
                         .tv_usec = (l->opts.queue_timeout_ms % 1000) * 1000};
    evtimer_add(t->timer, &tv);
}

void limiter_submit(struct limiter *l, struct limiter_ticket *t)
{
    t->limiter = l;
    t->queued = false;
    t->holds_slot = false;
    t->holds_share = false;
    t->waiting_for = LIMITER_WAIT_NONE;
    t->waited_ms = 0;
    t->enqueued_us = clock_mono_us();
    t->share = share_of(l, t, t->enqueued_us);
    if (t->priority < 1)
        t->priority = 1;
    if (t->priority > PRIORITY_MAX)
        t->priority = PRIORITY_MAX;
    int64_t wait_us;
    enum limiter_wait why = blocked_by(l, t, t->enqueued_us, &wait_us);
    if (why == LIMITER_WAIT_NONE && l->queued == 0) {
        take(l, t, t->enqueued_us);
        callbacks_of(l, t)->granted(t);
        return;
    }
    /* Behind others, or held back: it waits its turn. */
    t->waiting_for = why != LIMITER_WAIT_NONE ? why
                     : t->needs_slot          ? LIMITER_WAIT_SLOT
                                              : LIMITER_WAIT_RATE;
    if (l->queued >= l->opts.max_queue) {
        l->overflows++;
        callbacks_of(l, t)->refused(t, LIMITER_REFUSED_QUEUE_FULL);
        return;
    }
    enqueue(l, t);
    dispatch(l);
}

/* One pass over the queue: grants the first head that may go. Returns true
 * when it granted (or dropped) one; *wake_us gets the earliest token due. */
static bool dispatch_one(struct limiter *l, int64_t now, int64_t *wake_us)
{
    int scanned = 0;
    for (int p = PRIORITY_MAX; p >= 1; p--) {
        struct limiter_client *start = l->rings[p];
        if (start == NULL)
            continue;
        struct limiter_client *c = start;
        do {
            struct limiter_ticket *t = c->head;
            int64_t wait_us = 0;
            enum limiter_wait why = blocked_by(l, t, now, &wait_us);
            if (why == LIMITER_WAIT_NONE) {
                /* Its client's turn is used: the next client goes next. */
                l->rings[p] = c->ring_next;
                unqueue(l, t);
                if (callbacks_of(l, t)->alive != NULL && !callbacks_of(l, t)->alive(t)) {
                    l->dropped++;
                    callbacks_of(l, t)->dropped(t);
                    return true;
                }
                take(l, t, now);
                callbacks_of(l, t)->granted(t);
                return true;
            }
            t->waiting_for = why;
            if ((why == LIMITER_WAIT_RATE || why == LIMITER_WAIT_CLIENT_RATE) && wait_us < *wake_us)
                *wake_us = wait_us;
            c = c->ring_next;
        } while (c != start && ++scanned < SCAN_MAX);
    }
    return false;
}

static void dispatch(struct limiter *l)
{
    if (l->dispatching) { /* a callback released or submitted: go round again */
        l->dispatch_again = true;
        return;
    }
    l->dispatching = true;
    int64_t wake_us = INT64_MAX;
    do {
        l->dispatch_again = false;
        wake_us = INT64_MAX;
        while (l->queued > 0 && dispatch_one(l, clock_mono_us(), &wake_us))
            wake_us = INT64_MAX;
    } while (l->dispatch_again);
    l->dispatching = false;
    if (l->queued > 0 && wake_us != INT64_MAX) {
        struct timeval tv = {.tv_sec = wake_us / 1000000, .tv_usec = wake_us % 1000000};
        evtimer_add(l->rate_timer, &tv);
    }
}

void limiter_release(struct limiter *l, struct limiter_ticket *t)
{
    if (t->holds_slot) {
        t->holds_slot = false;
        l->in_flight--;
    }
    if (t->holds_share) {
        t->holds_share = false;
        t->share->in_flight--;
    }
    if (l->queued > 0)
        dispatch(l);
}

void limiter_withdraw(struct limiter *l, struct limiter_ticket *t)
{
    if (!t->queued)
        return;
    t->waited_ms = (clock_mono_us() - t->enqueued_us) / 1000;
    unqueue(l, t);
    l->dropped++;
}

void limiter_foreach_queued(struct limiter *l, void (*visit)(struct limiter_ticket *, void *),
                            void *arg)
{
    for (size_t i = 0; i < CLIENT_BUCKETS; i++)
        for (struct limiter_client *c = l->clients[i]; c != NULL; c = c->hash_next)
            for (struct limiter_ticket *t = c->head; t != NULL; t = t->next)
                visit(t, arg);
}

int limiter_learn_limit(struct limiter *l, int advertised)
{
    if (advertised <= 0)
        return 0;
    int limit = advertised < l->opts.max_concurrency ? advertised : l->opts.max_concurrency;
    if (limit == l->limit)
        return 0;
    int previous = l->limit;
    l->limit = limit;
    if (limit > previous && l->queued > 0)
        dispatch(l);
    return previous;
}

void limiter_stats(const struct limiter *l, struct limiter_stats *out)
{
    out->max_concurrency = l->opts.max_concurrency;
    out->limit = l->limit;
    out->in_flight = l->in_flight;
    out->queued = l->queued;
    out->granted = l->granted;
    out->overflows = l->overflows;
    out->timeouts = l->timeouts;
    out->dropped = l->dropped;
    out->queue_wait = &l->queue_wait;
}
