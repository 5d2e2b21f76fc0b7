/* router.h: maps a request's method and path to what handles it. Pure: no
 * libevent, no state, unit-tested in tests/unit/test_router.c. */
#ifndef CLORO_ROUTER_H
#define CLORO_ROUTER_H

enum route {
    ROUTE_NOT_FOUND,          /* outside /v1/ and /_proxy/, or an unknown /_proxy/ path */
    ROUTE_METHOD_NOT_ALLOWED, /* a /_proxy/ path that exists, with another method */
    ROUTE_UPSTREAM,           /* /v1/...: forwarded to the cloro API */
    ROUTE_ADMIN_HEALTHZ,      /* GET|HEAD /_proxy/healthz */
    ROUTE_ADMIN_STATS,        /* GET|HEAD /_proxy/stats */
    ROUTE_CACHE_STATS,        /* GET|HEAD /_proxy/cache/stats */
    ROUTE_CACHE_ENTRY,        /* GET|HEAD|DELETE /_proxy/cache/entries/{key} */
    ROUTE_CACHE_PURGE,        /* POST /_proxy/cache/purge */
    ROUTE_ARTIFACT,           /* GET|HEAD /_proxy/artifacts/<uuid>/page-<n>.html */
    ROUTE_ADMIN_METRICS,      /* GET|HEAD /_proxy/metrics (Prometheus text format) */
    ROUTE_ADMIN_USAGE,        /* GET|HEAD /_proxy/usage */
    ROUTE_STATUS_PAGE,        /* GET|HEAD /_proxy/ (and /_proxy): the status page */
    ROUTE_ADMIN_RECENT,       /* GET|HEAD /_proxy/recent: last requests, per-minute counts */
    ROUTE_ADMIN_MODE,         /* GET|HEAD|POST /_proxy/mode: the mode in force, and its switch */
};

/* The methods a /_proxy/ route takes, for the Allow header of a 405. */
const char *router_allowed_methods(const char *path);

/* method is the request method in upper case ("GET"); path is the request
 * path without the query string, as sent (not percent-decoded). Paths with
 * dot segments ("/v1/../x", also percent-encoded) never match: the upstream
 * would resolve them to something other than what the proxy checked. */
enum route router_match(const char *method, const char *path);

#endif
