/* batch_split.h: the pure parts of an async batch (cloro-api.md 7.3) as the
 * proxy answers it (task_submit.c): which items go upstream, in which order
 * (the index map), the upstream's answer matched back to the client's
 * indexes, and the merged answer with its recomputed summary. No server
 * state: the items' kinds are decided by the caller, what each upstream
 * answer does to a task is the caller's (a callback). */
#ifndef CLORO_BATCH_SPLIT_H
#define CLORO_BATCH_SPLIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* How one task of a batch is answered (task_submit.c says when). */
enum batch_item_kind {
    BATCH_ITEM_UPSTREAM,   /* sent upstream */
    BATCH_ITEM_CACHED,     /* answered from the cache: COMPLETED at once */
    BATCH_ITEM_ATTACHED,   /* follows an identical task open upstream */
    BATCH_ITEM_DUPLICATE,  /* follows an identical earlier item of the batch */
    BATCH_ITEM_KEY_REUSED, /* its idempotencyKey is taken */
    BATCH_ITEM_OFFLINE,    /* would go upstream, but the proxy is offline */
};
#define BATCH_ITEM_KINDS (BATCH_ITEM_OFFLINE + 1)

/* Invariants: upstream_count <= added <= count; upstream[] holds distinct
 * client indexes, ascending when items are added in order; kinds[] sums to
 * added. */
struct batch_split {
    size_t count;                   /* items of the client's batch */
    size_t added;                   /* items classified so far */
    size_t *upstream;               /* client index of each item sent, in the order sent */
    size_t upstream_count;          /* items sent upstream */
    size_t kinds[BATCH_ITEM_KINDS]; /* items of each kind */
};

/* For a batch of count items. Pair with batch_split_deinit. */
void batch_split_init(struct batch_split *s, size_t count);
void batch_split_deinit(struct batch_split *s);

/* Records item index as kind (each index once, index < count). */
void batch_split_add(struct batch_split *s, size_t index, enum batch_item_kind kind);

/* Called per item sent upstream: the item as it goes (new reference). */
typedef json_t *(*batch_item_cb)(void *arg, json_t *item);

/* The sub-batch for the upstream: the UPSTREAM items of doc (the client's
 * array), in the order sent, each through item (NULL: as they are). New
 * reference: a JSON array of upstream_count items. */
json_t *batch_split_body(const struct batch_split *s, const json_t *doc, batch_item_cb item,
                         void *arg);

/* Called once per item sent upstream that the upstream answered for:
 * client_index is the item's index in the client's batch, result the
 * upstream's entry (borrowed). */
typedef void (*batch_settle_cb)(void *arg, size_t client_index, const json_t *result);

/* Matches the upstream's results array (any JSON) back to the client's
 * indexes: each entry names the sent item of its "index" (its position
 * when it has no integer "index"); entries naming no sent item or one
 * already answered are skipped. Calls settle at most once per sent item. */
void batch_split_match(const struct batch_split *s, const json_t *results, batch_settle_cb settle,
                       void *arg);

/* The X-Proxy-Batch value: "cached=N; attached=N; duplicate=N; upstream=N;
 * reused=N", then "; offline=N" when there were any. Truncated to size. */
void batch_split_describe(const struct batch_split *s, char *out, size_t size);

/* Result items of the merged answer (new references, never NULL; index is
 * the client's). task and credits are borrowed (NULL: null). */
json_t *batch_item_success(size_t index, const json_t *task, const json_t *credits);
/* An error stamped now; details (may be NULL) is stolen. */
json_t *batch_item_failure(size_t index, const char *code, const char *message, json_t *details);
/* The upstream's entry for the item at index: its own success or error item
 * moved to index, or INTERNAL_SERVER_ERROR when it is neither. */
json_t *batch_item_from_upstream(const json_t *result, size_t index);
/* True when item is a success item. */
bool batch_item_succeeded(const json_t *item);

/* The merged answer {"success":true, "summary":{total, succeeded, failed},
 * "results": results}: the summary counts results' items. Steals results
 * (a JSON array, one item per task in the client's order); new reference. */
json_t *batch_merge(json_t *results);

#endif
