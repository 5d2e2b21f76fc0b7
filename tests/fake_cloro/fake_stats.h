/* fake_stats: the counters behind GET /_fake/stats (names are a test contract) and
 * their JSON rendering. Only counts what the server tells it; no libevent. */
#ifndef FAKE_STATS_H
#define FAKE_STATS_H

#include <stdint.h>

#include <jansson.h>

enum fake_fault {
    FAKE_FAULT_NONE,
    FAKE_FAULT_500,
    FAKE_FAULT_503,
    FAKE_FAULT_RESET,
    FAKE_FAULT_RESET_MID_BODY,
    FAKE_FAULT_SLOW,
    FAKE_FAULT_429,       /* injected 429 (fail_429, [fake:429]), not the real limits' */
    FAKE_FAULT_GARBAGE,   /* non-HTTP bytes, then a close (garbage, [fake:garbage]) */
    FAKE_FAULT_STALL,     /* never answered; held until the client leaves (stall, [fake:stall]) */
    FAKE_FAULT_SLOW_DRIP, /* a 200 dripped over slow_drip_ms (slow_drip, [fake:slow-drip]) */
    FAKE_FAULT_COUNT
};

/* batch_sizes keeps the task counts of this many latest batch calls. */
#define FAKE_STATS_BATCH_SIZES_MAX 100

/* The async API (§7, §8), rendered as the "async" object. The request counters
 * (creates, batch_sizes, task_polls, submitted_keys) count calls that passed
 * auth and the rate limit, whatever their answer. */
struct fake_stats_async {
    uint64_t tasks_created;
    uint64_t completed;
    uint64_t failed;
    uint64_t batch_calls;
    uint64_t idempotency_conflicts; /* single 409s and batch items */
    uint64_t webhook_attempts;
    uint64_t webhook_delivered;
    uint64_t creates;        /* POST /v1/async/task calls */
    uint64_t task_polls;     /* GET /v1/async/task/{id} calls (200 or 404) */
    uint64_t submitted_keys; /* tasks (single or batch items) sent with a string idempotencyKey */
    uint64_t retries;        /* failed attempts that went back to QUEUED (retry hops) */
    json_t *batch_sizes;     /* array: element count of each batch body that was an array */
};

struct fake_stats {
    uint64_t requests_total; /* every request to a /v1/ path */
    json_t *requests;        /* path -> count */
    json_t *status;          /* "200" -> count, /v1/ responses actually sent */
    int64_t in_flight;       /* gauge: /v1/ requests not yet answered */
    int64_t max_in_flight;   /* since start or reset */
    json_t *auth;            /* sha256(Authorization value) -> count */
    uint64_t auth_missing;
    uint64_t canceled;
    uint64_t faults[FAKE_FAULT_COUNT];
    uint64_t connections_total; /* TCP connections accepted: keep-alive reuse shows here */
    uint64_t artifact_fetches;
    uint64_t artifact_expired;
    uint64_t artifact_failures; /* injected 500s (artifact_fail) */
    int64_t credits_charged_total;
    struct fake_stats_async async;
    json_t *last; /* snapshot of the last /v1/ request, or NULL */
};

void fake_stats_init(struct fake_stats *s);
void fake_stats_deinit(struct fake_stats *s);
/* Zeroes every counter; in_flight is a live gauge and is kept (max = current). */
void fake_stats_reset(struct fake_stats *s);

void fake_stats_count_request(struct fake_stats *s, const char *path);
void fake_stats_count_status(struct fake_stats *s, int status);
/* auth_sha256 NULL counts auth_missing. */
void fake_stats_count_auth(struct fake_stats *s, const char *auth_sha256);
void fake_stats_in_flight_add(struct fake_stats *s, int64_t delta);
/* Appends n to async.batch_sizes, dropping the oldest beyond the max. */
void fake_stats_count_batch(struct fake_stats *s, size_t n);
/* Takes ownership of last. */
void fake_stats_set_last(struct fake_stats *s, json_t *last);
const char *fake_stats_fault_name(enum fake_fault f);

/* New JSON object in the documented shape. */
json_t *fake_stats_to_json(const struct fake_stats *s, int64_t credits_remaining);

#endif
