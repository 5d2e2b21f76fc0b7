/* server.h: the running proxy. Owns the event base, the evhttp listener, the
 * upstream client, the live-request list and the counters; runs until
 * SIGTERM/SIGINT, then drains in-flight requests within drain_timeout. */
#ifndef CLORO_SERVER_H
#define CLORO_SERVER_H

#include "config.h"
#include "ids.h"
#include "latency.h"
#include "mode.h"
#include "request.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct event;
struct upstream;
struct members;
struct request;
struct cache_store;
struct cache_writer;
struct coalescer;
struct limiter;
struct artifacts;
struct touches;
struct tasks;
struct usage;
struct metrics;
struct recent;
struct connections;
struct durable;

/* Counters shown by /_proxy/stats. Only the loop thread touches them. */
struct server_stats {
    uint64_t requests_total;
    uint64_t responses_by_class[6]; /* index status / 100; [0] = other */
    uint64_t upstream_calls;
    uint64_t upstream_unavailable;
    uint64_t upstream_timeouts;
    uint64_t proxy_errors; /* responses the proxy made itself with status >= 400 */
    uint64_t cache_by_outcome[CACHE_OUTCOME_COUNT];
    uint64_t cache_credits_saved;
    uint64_t cache_read_errors;      /* lookups that failed or found a corrupt record */
    uint64_t cache_not_stored;       /* answers that could not be queued for storing */
    uint64_t retries;                /* upstream attempts after a first */
    uint64_t upstream_429;           /* 429s the upstream answered */
    uint64_t limit_rejections;       /* 429s the proxy answered (queue full or timed out) */
    uint64_t abandoned_in_queue;     /* queued calls dropped because their client left */
    uint64_t abandoned_in_flight;    /* calls cancelled because their client left */
    uint64_t store_busy;             /* async submissions refused: the writer was behind */
    uint64_t offline_misses;         /* 504 OFFLINE_CACHE_MISS answers (mode.h) */
    struct latency latency_hit;      /* /v1/ answers the cache gave (accounting.c) */
    struct latency latency_upstream; /* /v1/ answers that went or waited upstream */
};

struct server {
    const struct config *cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct upstream *upstream;
    struct event *sigterm, *sigint, *drain_timer, *tick;
    char *authorization;     /* "Bearer <key>" when the proxy holds a key; secret */
    struct members *members; /* the member table (members.h), for auth and the limiter */
    int64_t started_wall_ms;
    enum proxy_mode mode;  /* in force: the `mode` key at start, then POST /_proxy/mode */
    int64_t mode_since_ms; /* wall clock of the last switch (the start, at first) */
    bool draining;
    uint64_t in_flight;         /* requests not yet answered */
    uint64_t replies_unflushed; /* answered, but not yet fully written to the client */
    struct request *live;       /* every request not yet answered, for shutdown */
    struct server_stats stats;
    struct id_source ids;
    struct cache_store *store;   /* NULL when the cache is off */
    struct cache_writer *writer; /* the store's one write path */
    struct coalescer *coalescer;
    struct limiter *limiter;
    struct artifacts *artifacts;     /* NULL when the cache is off */
    struct touches *touches;         /* hits not yet handed to the writer */
    struct tasks *tasks;             /* async tasks; NULL when the cache or async_tasks is off */
    struct usage *usage;             /* usage per member, provider and day (usage.h) */
    struct metrics *metrics;         /* answers by route, status and cache result (metrics.h) */
    struct connections *connections; /* client connections (connections.h) */
    struct durable *durable;         /* replies held until the store has their records */
    struct recent *recent;           /* the last requests, for /_proxy/recent and the status page */
    uint64_t cache_losses_logged;    /* writer drops and failures already logged */
    int64_t upstream_warned_us;      /* last upstream_error warning, for rate limiting */
    uint64_t upstream_warn_suppressed;
};

/* Serves until a signal and the drain that follows. Returns the process exit
 * status: 0 after a clean stop, 1 when start-up failed (logged). */
int server_run(const struct config *cfg);

/* The steps of server_run, for callers that drive the loop themselves (the
 * fuzz target of raw HTTP): server_start opens the cache, binds the listener
 * and installs the events into srv (cfg must outlive it); returns 0, or -1
 * when start-up failed (logged; nothing left to stop). server_stop frees
 * what server_start made; the loop must not be running. */
int server_start(struct server *srv, const struct config *cfg);
void server_stop(struct server *srv);

/* Called by request.c as requests begin and end, and as replies leave. */
void server_request_started(struct server *srv, struct request *r);
void server_request_finished(struct server *srv, struct request *r);
void server_reply_flushed(struct server *srv);

#endif
