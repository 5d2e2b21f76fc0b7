/* accounting.c: the request_send hook of accounting.h. Credits come from the
 * answer's own headers, set wherever the answer was made: X-Credits-Charged
 * (the upstream's, relayed or replayed as 0 by answer.c, or the task's for
 * the credit saver), X-Credits-Saved with X-Credits-Saved-By (cache, or
 * async for the credit saver; an async batch says no "by": cache). */
#include "accounting.h"
#include "clock.h"
#include "key.h"
#include "metrics.h"
#include "request.h"
#include "router.h"
#include "server.h"
#include "usage.h"

#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *accounting_provider(const char *method, const char *path)
{
    if (strncmp(path, "/v1/async/", 10) == 0)
        return "async";
    const char *provider = cache_key_provider(method, path);
    if (provider == NULL && strncmp(path, "/v1/monitor/", 12) == 0)
        provider = cache_key_provider("POST", path); /* another method: still its provider */
    return provider != NULL ? provider : "other";
}

/* A non-negative integer header of the answer, 0 when absent or not one. */
static uint64_t header_count(const struct request *r, const char *name)
{
    const char *v = evhttp_find_header(evhttp_request_get_output_headers(r->evreq), name);
    if (v == NULL || *v < '0' || *v > '9')
        return 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    return *end == '\0' ? (uint64_t)n : 0;
}

static enum metrics_route route_of(const struct request *r)
{
    switch (router_match(r->method, r->path)) {
    case ROUTE_UPSTREAM:
        return METRICS_ROUTE_UPSTREAM;
    case ROUTE_ARTIFACT:
        return METRICS_ROUTE_ARTIFACT;
    case ROUTE_NOT_FOUND:
        return strncmp(r->path, "/_proxy", 7) == 0 ? METRICS_ROUTE_ADMIN : METRICS_ROUTE_OTHER;
    default:
        return METRICS_ROUTE_ADMIN;
    }
}

void accounting_request_done(struct request *r, int status, size_t bytes_in, size_t bytes_out)
{
    struct server *srv = r->server;
    enum metrics_route route = route_of(r);
    if (srv->metrics != NULL)
        metrics_count(srv->metrics, route, status, r->cache_outcome);
    if (route != METRICS_ROUTE_UPSTREAM)
        return;

    bool hit = r->cache_outcome == CACHE_OUTCOME_HIT || r->cache_outcome == CACHE_OUTCOME_STALE;
    int64_t latency_us = clock_mono_us() - r->started_us;
    if (hit && r->upstream_attempts == 0)
        latency_observe(&srv->stats.latency_hit, latency_us);
    else if (r->upstream_attempts > 0 || r->cache_outcome == CACHE_OUTCOME_COALESCED)
        latency_observe(&srv->stats.latency_upstream, latency_us);

    if (srv->usage == NULL)
        return;
    uint64_t c[USAGE_COUNTERS] = {0};
    c[USAGE_REQUESTS] = 1;
    c[USAGE_HITS] = hit;
    c[USAGE_COALESCED] = r->cache_outcome == CACHE_OUTCOME_COALESCED;
    c[USAGE_UPSTREAM_CALLS] = (uint64_t)r->upstream_attempts;
    c[USAGE_CREDITS_CHARGED] = header_count(r, "X-Credits-Charged");
    const char *by =
        evhttp_find_header(evhttp_request_get_output_headers(r->evreq), "X-Credits-Saved-By");
    uint64_t saved = header_count(r, "X-Credits-Saved");
    if (by != NULL && strcasecmp(by, "async") == 0)
        c[USAGE_CREDITS_SAVED_ASYNC] = saved;
    else
        c[USAGE_CREDITS_SAVED_CACHE] = saved;
    c[USAGE_ERRORS] = status >= 400;
    c[USAGE_BYTES_IN] = bytes_in;
    c[USAGE_BYTES_OUT] = bytes_out;
    usage_add(srv->usage, clock_wall_ms(), r->member, accounting_provider(r->method, r->path), c);
}
