/* metrics.h: GET /_proxy/metrics, the proxy's numbers in the Prometheus text
 * exposition format 0.0.4. Owns the answer counters by (route, status, cache
 * result), counted for every request in request_send (accounting.c); every
 * other number is read when scraped from where it lives (the server's
 * counters and latency histograms, the limiter, the store, the tasks, the
 * usage table's members), through a snapshot, so the rendering itself is
 * pure and unit-tested. Loop thread only. */
#ifndef CLORO_METRICS_H
#define CLORO_METRICS_H

#include "connections.h"
#include "latency.h"
#include "request.h"
#include "tasks.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct metrics;
struct server;
struct usage;

/* The route label: /v1/ (upstream), /_proxy/artifacts/ (artifact), the
 * other /_proxy/ endpoints (admin), anything else (other). */
enum metrics_route {
    METRICS_ROUTE_UPSTREAM,
    METRICS_ROUTE_ADMIN,
    METRICS_ROUTE_ARTIFACT,
    METRICS_ROUTE_OTHER,
};

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Counts one answer. */
void metrics_count(struct metrics *m, enum metrics_route route, int status,
                   enum cache_outcome cache);

/* Everything a scrape shows, read at one moment. Pointers are borrowed. */
struct metrics_snapshot {
    const char *version;
    const char *mode; /* mode.h's name of the mode in force; NULL: not shown */
    int64_t uptime_s;
    const struct metrics *answers;
    const struct latency *latency_hit, *latency_upstream;
    uint64_t in_flight;          /* requests not yet answered */
    uint64_t upstream_in_flight; /* upstream transfers running */
    uint64_t upstream_calls, upstream_timeouts, upstream_unavailable, retries, upstream_429;
    uint64_t limit_rejections;
    int max_concurrency, concurrency_limit, concurrency_in_use;
    uint64_t queued;
    bool cache; /* the store is open: the cache and artifact numbers below are set */
    uint64_t cache_entries, cache_bytes, cache_max_bytes, cache_evictions;
    uint64_t tasks_pruned; /* task records deleted past task_retention (store.h) */
    uint64_t cache_by_outcome[CACHE_OUTCOME_COUNT];
    uint64_t artifacts_pending, artifacts_captured, artifacts_lost;
    const struct usage *usage; /* credits per member; NULL: none */
    bool tasks;                /* the async tasks are on: tasks_counters is set */
    struct tasks_counters task_counters;
    uint64_t tasks_live;
    bool clients; /* client connections are tracked: the two below are set */
    struct connections_stats client_stats;
    int64_t max_connections;
};

/* Reads srv's numbers (one read txn of the store). */
void metrics_gather(struct server *srv, struct metrics_snapshot *out);
/* Appends the exposition text of s to out. */
void metrics_render(const struct metrics_snapshot *s, struct evbuffer *out);

/* GET|HEAD /_proxy/metrics; ends r. */
void metrics_serve(struct request *r);

#endif
