/* accounting.h: what one answered request counts for. Called once per
 * request from request_send, before the reply leaves (its response headers
 * are read there): the answer counters of the metrics (route, status, cache
 * result), the hit and upstream latency histograms of the server, and, for
 * /v1/ requests, the usage row of its member and provider. */
#ifndef CLORO_ACCOUNTING_H
#define CLORO_ACCOUNTING_H

#include <stddef.h>
#include <stdint.h>

struct request;

void accounting_request_done(struct request *r, int status, size_t bytes_in, size_t bytes_out);

/* The provider a /v1/ request is accounted under: its monitor provider
 * ("chatgpt", "google/news", ...), "async" for /v1/async/..., "other" for
 * the rest. Static. */
const char *accounting_provider(const char *method, const char *path);

#endif
