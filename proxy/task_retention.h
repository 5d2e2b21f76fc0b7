/* task_retention.h: which stored task records are past task_retention, and
 * the prunes that delete them. A record is pruned when its task has ended
 * (COMPLETED or FAILED), no webhook of it is still due, it is not open in
 * the store, and it ended (endedMs; createdAt for records written before
 * endedMs existed) longer ago than the retention; its idempotency index
 * entry goes with it. The judge runs on the cache writer's thread
 * (writer.h, cache_writer_task_prune), never on the event loop's. */
#ifndef CLORO_TASK_RETENTION_H
#define CLORO_TASK_RETENTION_H

#include "key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_writer;

/* What the judge is given (copied into the writer's prune). */
struct task_retention_rule {
    int64_t cut_ms;       /* a task that ended before this goes */
    int64_t max_attempts; /* webhook_max_attempts: a proxy webhook with fewer is still due */
};

/* A cache_task_judge (store.h); arg is a struct task_retention_rule. */
bool task_retention_judge(const unsigned char *key, const unsigned char *data, size_t len,
                          const void *arg, unsigned char linked[][CACHE_KEY_BYTES],
                          size_t *linked_count);

/* Minimum time between two prunes. */
#define TASK_RETENTION_PRUNE_EVERY_MS (3600 * INT64_C(1000))

/* From the proxy's periodic tick: starts a prune of the records that ended
 * more than retention_ms before now_ms, when retention_ms > 0 and none was
 * started since *last_ms + TASK_RETENTION_PRUNE_EVERY_MS (*last_ms 0: never,
 * so the first tick after start prunes). Returns true when one started. */
bool task_retention_tick(struct cache_writer *w, int64_t retention_ms, int64_t max_attempts,
                         int64_t now_ms, int64_t *last_ms);

#endif
