/* artifacts.h: capture of cloro's expiring HTML artifacts (cloro-api.md
 * section 12). Jobs are recorded durably with the answer that names them
 * (cache_io.c); this module downloads them (libcurl multi on the loop, at
 * most artifact_concurrency at once, earliest expiry first, retrying with
 * backoff until the artifact expires, then "lost"), stores them gzip-
 * compressed through the writer, and serves them at
 * /_proxy/artifacts/<uuid>/page-<n>.html. */
#ifndef CLORO_ARTIFACTS_H
#define CLORO_ARTIFACTS_H

#include "artifact_urls.h"

#include <jansson.h>
#include <stddef.h>

struct server;
struct request;
struct artifacts;

/* Loads the pending jobs of the store and starts downloading. NULL on a
 * configuration it cannot use (logged). */
struct artifacts *artifacts_new(struct server *srv);
/* Cancels downloads in flight; jobs stay pending in the store. */
void artifacts_free(struct artifacts *a);

/* The hosts whose artifacts are captured. Borrowed. */
const struct artifact_hosts *artifacts_hosts(const struct artifacts *a);

/* Jobs just queued for storing with their answer: download them. */
void artifacts_add(struct artifacts *a, const struct cache_job *jobs, size_t count);

/* Back online (mode.h): downloads start again (offline, none starts). */
void artifacts_resume(struct artifacts *a);

/* Once a second (server.c): every 30 s, jobs pending in the store but not
 * here (requeued by `cloro-proxy artifacts retry`) join the queue. */
void artifacts_tick(struct artifacts *a);

/* GET|HEAD /_proxy/artifacts/<uuid>/page-<n>.html; ends r. */
void artifacts_serve(struct request *r);

/* {"pending", "captured", "lost", "bytes", "downloads", "failures",
 * "retries", "oversized", "in_flight"}: new reference. */
json_t *artifacts_stats(const struct artifacts *a);

#endif
