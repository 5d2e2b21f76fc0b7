/* admin.c: /_proxy/healthz and /_proxy/stats. Snapshots of server state,
 * rendered as JSON; never a key, a token or a header value. */
#include "admin.h"
#include "connections.h"
#include "clock.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "tasks.h"
#include "artifacts.h"
#include "limiter.h"
#include "upstream.h"

#include <jansson.h>
#include <stdlib.h>

void admin_healthz(struct request *r)
{
    const struct server *srv = r->server;
    json_t *body = json_pack("{s:s, s:s, s:b}", "status", "ok", "version", CLORO_VERSION,
                             "draining", srv->draining);
    if (body == NULL)
        abort();
    reply_json(r, 200, body);
}

static json_t *limits_view(const struct server *srv)
{
    const struct server_stats *s = &srv->stats;
    struct limiter_stats ls;
    limiter_stats(srv->limiter, &ls);
    json_t *view = json_pack(
        "{s:i, s:i, s:i, s:I, s:{s:f, s:f}, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "max_concurrency", ls.max_concurrency, "concurrency_limit", ls.limit, "in_flight",
        ls.in_flight, "queued", (json_int_t)ls.queued, "queue_wait_ms", "p50",
        (double)histogram_quantile(ls.queue_wait, 0.5) / 1000.0, "p99",
        (double)histogram_quantile(ls.queue_wait, 0.99) / 1000.0, "granted", (json_int_t)ls.granted,
        "rejected", (json_int_t)s->limit_rejections, "queue_overflows", (json_int_t)ls.overflows,
        "queue_timeouts", (json_int_t)ls.timeouts, "retries", (json_int_t)s->retries,
        "upstream_429", (json_int_t)s->upstream_429, "abandoned_in_queue",
        (json_int_t)s->abandoned_in_queue, "abandoned_in_flight",
        (json_int_t)s->abandoned_in_flight, "rate_limit_per_endpoint",
        (json_int_t)srv->cfg->rate_limit_per_endpoint);
    if (view == NULL)
        abort();
    return view;
}

/* {"count", "sum_ms", "p50_ms", "p99_ms"} of a latency histogram (latency.h). */
static json_t *latency_view(const struct latency *l)
{
    json_t *view = json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)l->count, "sum_ms",
                             (double)l->sum_us / 1000.0, "p50_ms",
                             (double)histogram_quantile(&l->q, 0.5) / 1000.0, "p99_ms",
                             (double)histogram_quantile(&l->q, 0.99) / 1000.0);
    if (view == NULL)
        abort();
    return view;
}

void admin_stats(struct request *r)
{
    const struct server *srv = r->server;
    const struct server_stats *s = &srv->stats;
    char started[32];
    clock_format_iso8601(started, sizeof started, srv->started_wall_ms);
    json_t *responses = json_pack(
        "{s:I, s:I, s:I, s:I, s:I}", "1xx", (json_int_t)s->responses_by_class[1], "2xx",
        (json_int_t)s->responses_by_class[2], "3xx", (json_int_t)s->responses_by_class[3], "4xx",
        (json_int_t)s->responses_by_class[4], "5xx", (json_int_t)s->responses_by_class[5]);
    json_t *body = json_pack(
        "{s:s, s:s, s:I, s:b, s:I, s:I, s:o, s:{s:I, s:I, s:I, s:I}, s:I}", "version",
        CLORO_VERSION, "started_at", started, "uptime_s",
        (json_int_t)((clock_wall_ms() - srv->started_wall_ms) / 1000), "draining", srv->draining,
        "requests_total", (json_int_t)s->requests_total, "in_flight", (json_int_t)srv->in_flight,
        "responses", responses, "upstream", "calls", (json_int_t)s->upstream_calls, "in_flight",
        (json_int_t)upstream_active(srv->upstream), "unavailable",
        (json_int_t)s->upstream_unavailable, "timeouts", (json_int_t)s->upstream_timeouts,
        "proxy_errors", (json_int_t)s->proxy_errors);
    if (body == NULL)
        abort();
    char since[32];
    json_object_set_new(body, "mode", json_string(proxy_mode_name(srv->mode)));
    json_object_set_new(body, "mode_since",
                        json_string(clock_format_iso8601(since, sizeof since, srv->mode_since_ms)));
    json_object_set_new(body, "offline_misses", json_integer((json_int_t)s->offline_misses));
    json_object_set_new(body, "limits", limits_view(srv));
    struct connections_stats c = connections_stats(srv->connections);
    json_object_set_new(body, "clients",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "open", (json_int_t)c.open,
                                  "max", (json_int_t)connections_max(srv->connections), "accepted",
                                  (json_int_t)c.accepted, "idle_closed", (json_int_t)c.reaped_idle,
                                  "refused", (json_int_t)c.refused, "request_timeouts",
                                  (json_int_t)c.timed_out, "bad_requests",
                                  (json_int_t)c.bad_requests));
    json_object_set_new(body, "latency",
                        json_pack("{s:o, s:o}", "hit", latency_view(&s->latency_hit), "upstream",
                                  latency_view(&s->latency_upstream)));
    if (srv->artifacts != NULL)
        json_object_set_new(body, "artifacts", artifacts_stats(srv->artifacts));
    if (srv->tasks != NULL)
        json_object_set_new(body, "tasks", tasks_stats_json(srv->tasks));
    reply_json(r, 200, body);
}
