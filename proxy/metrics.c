/* metrics.c: the answer counters and the /_proxy/metrics exposition
 * (metrics.h). Answers are counted in a short list of (route, status, cache)
 * series, searched linearly: a proxy sees a few dozen combinations at most.
 * Every family is written with its HELP and TYPE even when it has no sample
 * yet, so a dashboard finds them all from the first scrape. */
#include "metrics.h"
#include "clock.h"
#include "limiter.h"
#include "prom.h"
#include "reply.h"
#include "server.h"
#include "store.h"
#include "upstream.h"
#include "usage.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
    enum metrics_route route;
    int status;
    enum cache_outcome cache;
    uint64_t count;
};

struct metrics {
    struct series *series;
    size_t count, cap;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    free(m->series);
    free(m);
}

void metrics_count(struct metrics *m, enum metrics_route route, int status,
                   enum cache_outcome cache)
{
    for (size_t i = 0; i < m->count; i++) {
        struct series *s = &m->series[i];
        if (s->route == route && s->status == status && s->cache == cache) {
            s->count++;
            return;
        }
    }
    if (m->count == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 32;
        m->series = realloc(m->series, m->cap * sizeof *m->series);
        if (m->series == NULL)
            abort();
    }
    m->series[m->count++] = (struct series){route, status, cache, 1};
}

void metrics_gather(struct server *srv, struct metrics_snapshot *out)
{
    memset(out, 0, sizeof *out);
    const struct server_stats *s = &srv->stats;
    out->version = CLORO_VERSION;
    out->mode = proxy_mode_name(srv->mode);
    out->uptime_s = (clock_wall_ms() - srv->started_wall_ms) / 1000;
    out->answers = srv->metrics;
    if (srv->connections != NULL) {
        out->clients = true;
        out->client_stats = connections_stats(srv->connections);
        out->max_connections = connections_max(srv->connections);
    }
    out->latency_hit = &s->latency_hit;
    out->latency_upstream = &s->latency_upstream;
    out->in_flight = srv->in_flight;
    out->upstream_in_flight = upstream_active(srv->upstream);
    out->upstream_calls = s->upstream_calls;
    out->upstream_timeouts = s->upstream_timeouts;
    out->upstream_unavailable = s->upstream_unavailable;
    out->retries = s->retries;
    out->upstream_429 = s->upstream_429;
    out->limit_rejections = s->limit_rejections;
    struct limiter_stats ls;
    limiter_stats(srv->limiter, &ls);
    out->max_concurrency = ls.max_concurrency;
    out->concurrency_limit = ls.limit;
    out->concurrency_in_use = ls.in_flight;
    out->queued = ls.queued;
    memcpy(out->cache_by_outcome, s->cache_by_outcome, sizeof out->cache_by_outcome);
    struct cache_store_stats st;
    if (srv->store != NULL && cache_store_stats(srv->store, &st) == 0) {
        out->cache = true;
        out->cache_entries = st.entries;
        out->cache_bytes = st.bytes;
        out->cache_max_bytes = st.max_bytes;
        out->cache_evictions = st.evictions;
        out->tasks_pruned = st.tasks_pruned;
        out->artifacts_pending = st.jobs_pending;
        out->artifacts_captured = st.jobs_captured;
        out->artifacts_lost = st.jobs_lost;
    }
    out->usage = srv->usage;
    if (srv->tasks != NULL) {
        out->tasks = true;
        out->task_counters = *tasks_counters(srv->tasks);
        json_t *ts = tasks_stats_json(srv->tasks);
        out->tasks_live = (uint64_t)json_integer_value(json_object_get(ts, "live"));
        json_decref(ts);
    }
}

/* --- rendering --------------------------------------------------------------- */

static const char *route_name(enum metrics_route r)
{
    static const char *const names[] = {"upstream", "admin", "artifact", "other"};
    return names[r];
}

/* The cache label: the X-Cache value in lower case ("none" with the cache off). */
static const char *cache_name(enum cache_outcome o)
{
    static const char *const names[CACHE_OUTCOME_COUNT] = {
        [CACHE_OUTCOME_NONE] = "none",          [CACHE_OUTCOME_HIT] = "hit",
        [CACHE_OUTCOME_MISS] = "miss",          [CACHE_OUTCOME_STALE] = "stale",
        [CACHE_OUTCOME_BYPASS] = "bypass",      [CACHE_OUTCOME_REFRESH] = "refresh",
        [CACHE_OUTCOME_COALESCED] = "coalesced"};
    return names[o];
}

static void gauge(struct evbuffer *out, const char *name, const char *help, uint64_t value)
{
    prom_family(out, name, "gauge", help);
    prom_sample(out, name, NULL, 0, value);
}

static void counter(struct evbuffer *out, const char *name, const char *help, uint64_t value)
{
    prom_family(out, name, "counter", help);
    prom_sample(out, name, NULL, 0, value);
}

static void render_answers(const struct metrics_snapshot *s, struct evbuffer *out)
{
    const char *name = "cloro_proxy_requests_total";
    prom_family(out, name, "counter",
                "Requests answered, by route (upstream, admin, artifact, other), status and "
                "cache result (X-Cache in lower case, none when the cache is off).");
    for (size_t i = 0; s->answers != NULL && i < s->answers->count; i++) {
        const struct series *x = &s->answers->series[i];
        char status[16];
        snprintf(status, sizeof status, "%d", x->status);
        struct prom_label l[] = {
            {"route", route_name(x->route)}, {"status", status}, {"cache", cache_name(x->cache)}};
        prom_sample(out, name, l, 3, x->count);
    }
    name = "cloro_proxy_request_duration_seconds";
    prom_family(out, name, "histogram",
                "Time from arrival to answer of /v1/ requests: answer=hit for those the cache "
                "answered without the upstream, answer=upstream for those that went upstream "
                "or waited on an identical call (queue waits and retries included).");
    const char *bounds[LATENCY_BOUNDS];
    for (size_t i = 0; i < LATENCY_BOUNDS; i++)
        bounds[i] = latency_bound_text(i);
    const struct latency *lat[2] = {s->latency_hit, s->latency_upstream};
    const char *answer[2] = {"hit", "upstream"};
    for (int k = 0; k < 2; k++) {
        if (lat[k] == NULL)
            continue;
        struct prom_label l = {"answer", answer[k]};
        prom_histogram(out, name, &l, 1, bounds, lat[k]->le, LATENCY_BOUNDS, lat[k]->count,
                       lat[k]->sum_us);
    }
    gauge(out, "cloro_proxy_requests_in_flight", "Requests received and not yet answered.",
          s->in_flight);
}

static void render_upstream(const struct metrics_snapshot *s, struct evbuffer *out)
{
    counter(out, "cloro_proxy_upstream_calls_total",
            "Calls made to the cloro API (retries and task polls included).", s->upstream_calls);
    gauge(out, "cloro_proxy_upstream_in_flight", "Calls to the cloro API under way.",
          s->upstream_in_flight);
    const char *name = "cloro_proxy_upstream_failures_total";
    prom_family(out, name, "counter",
                "Calls to the cloro API that got no answer, by reason (timeout, unavailable).");
    struct prom_label l = {"reason", "timeout"};
    prom_sample(out, name, &l, 1, s->upstream_timeouts);
    l.value = "unavailable";
    prom_sample(out, name, &l, 1, s->upstream_unavailable);
    counter(out, "cloro_proxy_upstream_retries_total", "Upstream attempts after a first.",
            s->retries);
    counter(out, "cloro_proxy_upstream_429_total", "429 answers of the cloro API.",
            s->upstream_429);
    gauge(out, "cloro_proxy_queue_depth", "Calls waiting for a concurrency slot or a rate token.",
          s->queued);
    gauge(out, "cloro_proxy_concurrency_limit",
          "Monitor calls allowed in flight upstream now (max_concurrency, or the upstream's "
          "lower advertised limit).",
          (uint64_t)(s->concurrency_limit > 0 ? s->concurrency_limit : 0));
    gauge(out, "cloro_proxy_concurrency_max", "max_concurrency as configured.",
          (uint64_t)(s->max_concurrency > 0 ? s->max_concurrency : 0));
    gauge(out, "cloro_proxy_concurrency_in_use", "Concurrency slots held by calls in flight.",
          (uint64_t)(s->concurrency_in_use > 0 ? s->concurrency_in_use : 0));
    counter(out, "cloro_proxy_limit_rejections_total",
            "429s the proxy answered itself (queue full or queue timeout).", s->limit_rejections);
}

static void render_cache(const struct metrics_snapshot *s, struct evbuffer *out)
{
    const char *name = "cloro_proxy_cache_outcomes_total";
    prom_family(out, name, "counter",
                "Answers by what the cache did for them (as /_proxy/cache/stats counts them).");
    for (int o = CACHE_OUTCOME_HIT; o < CACHE_OUTCOME_COUNT; o++) {
        struct prom_label l = {"outcome", cache_name((enum cache_outcome)o)};
        prom_sample(out, name, &l, 1, s->cache_by_outcome[o]);
    }
    if (!s->cache)
        return;
    gauge(out, "cloro_proxy_cache_entries", "Answers in the cache store.", s->cache_entries);
    gauge(out, "cloro_proxy_cache_bytes",
          "File bytes the stored answers take (pages, index rows): what max_cache_bytes bounds.",
          s->cache_bytes);
    gauge(out, "cloro_proxy_cache_max_bytes", "max_cache_bytes: the bound eviction keeps.",
          s->cache_max_bytes);
    counter(out, "cloro_proxy_cache_evictions_total",
            "Answers evicted to keep the bound, since the store was created.", s->cache_evictions);
    counter(out, "cloro_proxy_tasks_pruned_total",
            "Ended task records deleted past task_retention, since the store was created.",
            s->tasks_pruned);
    name = "cloro_proxy_artifacts";
    prom_family(out, name, "gauge", "HTML artifacts by state (pending, captured, lost).");
    struct prom_label l = {"state", "pending"};
    prom_sample(out, name, &l, 1, s->artifacts_pending);
    l.value = "captured";
    prom_sample(out, name, &l, 1, s->artifacts_captured);
    l.value = "lost";
    prom_sample(out, name, &l, 1, s->artifacts_lost);
}

struct credits_ctx {
    struct evbuffer *out;
    const char *name;
    int pass; /* which family the members are written for */
    uint64_t total[USAGE_COUNTERS];
};

static void sum_member(const char *member, const uint64_t *c, void *arg)
{
    (void)member;
    struct credits_ctx *ctx = arg;
    for (int i = 0; i < USAGE_COUNTERS; i++)
        ctx->total[i] += c[i];
}

static void member_sample(const char *member, const uint64_t *c, void *arg)
{
    struct credits_ctx *ctx = arg;
    const char *who = member[0] != '\0' ? member : USAGE_ANONYMOUS;
    struct prom_label l[2] = {{"member", who}, {"by", "cache"}};
    switch (ctx->pass) {
    case 0:
        prom_sample(ctx->out, ctx->name, l, 1, c[USAGE_REQUESTS]);
        break;
    case 1:
        prom_sample(ctx->out, ctx->name, l, 1, c[USAGE_CREDITS_CHARGED]);
        break;
    default:
        prom_sample(ctx->out, ctx->name, l, 2, c[USAGE_CREDITS_SAVED_CACHE]);
        l[1].value = "async";
        prom_sample(ctx->out, ctx->name, l, 2, c[USAGE_CREDITS_SAVED_ASYNC]);
        break;
    }
}

static void render_credits(const struct metrics_snapshot *s, struct evbuffer *out)
{
    struct credits_ctx ctx = {.out = out};
    if (s->usage != NULL)
        usage_foreach_member(s->usage, sum_member, &ctx);
    counter(out, "cloro_proxy_credits_charged_total",
            "Credits the cloro API charged for /v1/ answers (X-Credits-Charged), since start.",
            ctx.total[USAGE_CREDITS_CHARGED]);
    const char *name = "cloro_proxy_credits_saved_total";
    prom_family(out, name, "counter",
                "Credits saved since start, by what saved them: by=cache (answers the cache "
                "gave) or by=async (sync calls asked as async tasks).");
    struct prom_label l = {"by", "cache"};
    prom_sample(out, name, &l, 1, ctx.total[USAGE_CREDITS_SAVED_CACHE]);
    l.value = "async";
    prom_sample(out, name, &l, 1, ctx.total[USAGE_CREDITS_SAVED_ASYNC]);

    static const char *const names[3] = {"cloro_proxy_member_requests_total",
                                         "cloro_proxy_member_credits_charged_total",
                                         "cloro_proxy_member_credits_saved_total"};
    static const char *const helps[3] = {
        "/v1/ requests answered per member (member=\"-\" when auth is open), since start.",
        "Credits charged per member (member=\"-\" when auth is open), since start.",
        ("Credits saved per member (member=\"-\" when auth is open) and by what (cache, "
         "async), since start.")};
    for (int pass = 0; pass < 3; pass++) {
        prom_family(out, names[pass], "counter", helps[pass]);
        ctx.name = names[pass];
        ctx.pass = pass;
        if (s->usage != NULL)
            usage_foreach_member(s->usage, member_sample, &ctx);
    }
}

static void render_tasks(const struct metrics_snapshot *s, struct evbuffer *out)
{
    if (!s->tasks)
        return;
    const struct tasks_counters *c = &s->task_counters;
    const char *name = "cloro_proxy_tasks_total";
    prom_family(out, name, "counter",
                "Async tasks by event: submitted by clients, created_upstream, from_cache, "
                "attached (to an identical open task), idempotency_reused, completed, failed, "
                "vanished.");
    const struct {
        const char *event;
        uint64_t value;
    } events[] = {{"submitted", c->submitted},
                  {"created_upstream", c->created_upstream},
                  {"from_cache", c->from_cache},
                  {"attached", c->attached},
                  {"idempotency_reused", c->key_reused},
                  {"completed", c->completed},
                  {"failed", c->failed},
                  {"vanished", c->vanished}};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        struct prom_label l = {"event", events[i].event};
        prom_sample(out, name, &l, 1, events[i].value);
    }
    counter(out, "cloro_proxy_task_polls_total", "Upstream polls of tasks the proxy follows.",
            c->polls);
    gauge(out, "cloro_proxy_tasks_live", "Tasks held in memory (not ended, or a webhook due).",
          s->tasks_live);
}

static void render_clients(const struct metrics_snapshot *s, struct evbuffer *out)
{
    if (!s->clients)
        return;
    const struct connections_stats *c = &s->client_stats;
    gauge(out, "cloro_proxy_client_connections", "Client connections open now.", c->open);
    gauge(out, "cloro_proxy_client_connections_max",
          "Client connections held at most (max_connections, or what the open-files limit "
          "fits).",
          (uint64_t)s->max_connections);
    const char *name = "cloro_proxy_client_connections_total";
    prom_family(out, name, "counter",
                "Client connections by event: accepted, idle_closed (to make room for a "
                "newcomer), refused (full, none idle: 503).");
    struct prom_label l = {"event", "accepted"};
    prom_sample(out, name, &l, 1, c->accepted);
    l.value = "idle_closed";
    prom_sample(out, name, &l, 1, c->reaped_idle);
    l.value = "refused";
    prom_sample(out, name, &l, 1, c->refused);
    name = "cloro_proxy_client_errors_total";
    prom_family(out, name, "counter",
                "Requests refused before routing: request_timeout (not received whole within "
                "client_request_timeout: 408), bad_request (malformed or oversized: 400, 413, "
                "414, 431).");
    l.name = "reason";
    l.value = "request_timeout";
    prom_sample(out, name, &l, 1, c->timed_out);
    l.value = "bad_request";
    prom_sample(out, name, &l, 1, c->bad_requests);
}

/* One sample per mode: 1 for the one in force, 0 for the others. */
static void render_mode(const struct metrics_snapshot *s, struct evbuffer *out)
{
    if (s->mode == NULL)
        return;
    const char *name = "cloro_proxy_mode";
    prom_family(out, name, "gauge",
                "1 for the mode in force (online, offline, record, refresh), 0 for the others.");
    for (int i = 0; i < PROXY_MODE_COUNT; i++) {
        const char *mode = proxy_mode_name((enum proxy_mode)i);
        struct prom_label l = {"mode", mode};
        prom_sample(out, name, &l, 1, strcmp(mode, s->mode) == 0 ? 1 : 0);
    }
}

void metrics_render(const struct metrics_snapshot *s, struct evbuffer *out)
{
    const char *name = "cloro_proxy_build_info";
    prom_family(out, name, "gauge", "Always 1; the version of the running proxy.");
    struct prom_label l = {"version", s->version != NULL ? s->version : ""};
    prom_sample(out, name, &l, 1, 1);
    gauge(out, "cloro_proxy_uptime_seconds", "Seconds since the proxy started.",
          (uint64_t)(s->uptime_s > 0 ? s->uptime_s : 0));
    render_mode(s, out);
    render_answers(s, out);
    render_upstream(s, out);
    render_cache(s, out);
    render_credits(s, out);
    render_tasks(s, out);
    render_clients(s, out);
}

void metrics_serve(struct request *r)
{
    struct metrics_snapshot snap;
    metrics_gather(r->server, &snap);
    struct evbuffer *body = evbuffer_new();
    if (body == NULL)
        abort();
    metrics_render(&snap, body);
    request_add_header(r, "Content-Type", PROM_CONTENT_TYPE);
    request_add_header(r, "Cache-Control", "no-store");
    request_send(r, 200, body);
    evbuffer_free(body);
}
