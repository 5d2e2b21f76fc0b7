/* recent.h: what the proxy answered lately, for the status page and for
 * operators: the last RECENT_MAX requests (time, method, path, status, cache
 * outcome, latency, the proxy's and the upstream's request ids, member) and
 * the requests per minute of the last RECENT_MINUTES minutes. Fed once per
 * reply from request_send; served as JSON at GET /_proxy/recent.
 *
 * The proxy's own admin endpoints (/_proxy/..., but for artifact pages) are
 * not recorded: the status page polls them every second and would push
 * everything else out. Never a query string, a token or a header value but
 * the request ids. Only the loop thread touches it. */
#ifndef CLORO_RECENT_H
#define CLORO_RECENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define RECENT_MAX     100
#define RECENT_MINUTES 60

struct recent;
struct request;

struct recent *recent_new(void);
void recent_free(struct recent *rc);

/* True when a request for path is recorded (everything but the admin
 * endpoints and the status page). */
bool recent_records_path(const char *path);

/* Records r, answered with status, at wall time now_ms (latency measured up
 * to now). rc may be NULL (then nothing happens). Copies what it keeps. */
void recent_record(struct recent *rc, const struct request *r, int status, int64_t now_ms);

/* The JSON of GET /_proxy/recent at wall time now_ms (new reference):
 * {"now", "requests_total", "capacity", "requests": [newest first],
 *  "per_minute": [RECENT_MINUTES objects, oldest first, the current minute last]}.
 * A request: {"at", "method", "path", "status", "cache", "latency_ms", "id"
 * (X-Proxy-Request-ID), "upstream_request_id" (cloro's X-Request-ID, also on
 * cached answers), "client_request_id", "member", "error" (the proxy's own
 * error code when it answered itself; its X-Request-ID is then "id")}, null
 * where absent. A minute: {"minute", "requests", "hits", "errors"}. */
json_t *recent_json(const struct recent *rc, int64_t now_ms);

/* GET /_proxy/recent. */
void recent_serve(struct request *r);

#endif
