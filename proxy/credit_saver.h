/* credit_saver.h: sync monitor calls answered through the cheaper async API
 * (cloro-api.md section 11: async tasks skip the sync surcharge). In async
 * mode (upstream_mode, a [provider] override, or X-Proxy-Upstream-Mode) a
 * sync call that misses the cache becomes an async task of the matching
 * taskType, with an idempotencyKey made once per submission so a retried
 * creation never pays twice; the client's connection waits while the task
 * is followed (task_follow.h), then gets exactly what the sync endpoint
 * would have answered. Identical sync and async requests share the task.
 * At most max_open_tasks such tasks are open upstream; more calls wait their
 * turn. With async_batch_window, calls within the window are created in one
 * batch call. Loop thread only. */
#ifndef CLORO_CREDIT_SAVER_H
#define CLORO_CREDIT_SAVER_H

#include <jansson.h>
#include <stdbool.h>

struct tasks;
struct task;
struct request;
struct credit_saver;

struct credit_saver *credit_saver_new(struct tasks *ts);
void credit_saver_free(struct credit_saver *cs);

/* True when r (a keyed sync monitor call) is to be asked as an async task:
 * its mode says async and its provider has a taskType. */
bool credit_saver_wanted(const struct request *r);

/* r missed the cache (r->flight is the flight it leads, if any). Ends r
 * later, with its flight's waiters. */
void credit_saver_ask(struct credit_saver *cs, struct request *r);

/* t ended (COMPLETED or FAILED), its creation failed, or it vanished:
 * answers the sync calls waiting on it and frees its open-task place. */
void credit_saver_settle(struct credit_saver *cs, struct task *t);

/* Counters for /_proxy/stats (new reference). */
json_t *credit_saver_stats(const struct credit_saver *cs);

#endif
