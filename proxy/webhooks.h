/* webhooks.h: delivery of async-task webhooks by the proxy itself
 * (cloro-api.md section 8). Owns the delivery queue, the POST of each
 * attempt (through upstream.c, on the proxy's event loop), the retry schedule
 * with exponential backoff, the optional HMAC-SHA256 signing and the report
 * after every attempt. It knows nothing of tasks: what to deliver, and the
 * persistence of attempt counts and delivered/deliveredAt, belong to the
 * caller (the async tasks module), which learns each outcome from the report.
 *
 * Each attempt is a POST of the body as is with Content-Type:
 * application/json and User-Agent: cloro-proxy; with a secret, also
 * X-Cloro-Timestamp (unix seconds at send time), X-Cloro-Signature
 * (webhooks_signature, fresh per attempt) and X-Cloro-Webhook-Id
 * (<task_id>-<attempt>). Any 2xx acks; anything else (other statuses,
 * redirects, connection errors, timeouts) is a failed attempt, retried after
 * webhooks_retry_delay_ms while attempts remain. At most a fixed number of
 * attempts (16) are in flight at once; the others wait their turn in due
 * order. Everything runs on the loop thread and never blocks it. */
#ifndef CLORO_WEBHOOKS_H
#define CLORO_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct upstream;
struct webhooks;

struct webhooks_options {
    const char *secret; /* NULL or "": unsigned deliveries (no X-Cloro-* headers). Never logged. */
    int max_attempts;   /* attempts in total, >= 1 (cloro: 5) */
    int64_t retry_base_ms; /* delay after failed attempt n is retry_base_ms * 2^(n-1) (cloro: 120000
                              -> 2, 4, 8, 16 min) */
    int64_t timeout_ms;    /* per attempt */
    size_t max_pending;    /* deliveries held at once; beyond -> webhooks_enqueue returns -1 */
};

/* How one attempt ended, reported after every attempt. The strings are valid
 * only during the callback. */
struct webhooks_report {
    const char *task_id;
    const char *url;
    int attempt;       /* 1-based number of the attempt just made */
    bool delivered;    /* a 2xx came back */
    bool final;        /* delivered, or no attempt is left */
    long status;       /* HTTP status, 0 when none (connection error, timeout) */
    const char *error; /* short reason when not delivered ("status 500", "timeout", curl message) */
    int64_t at_ms;     /* wall clock of the attempt's end */
    int64_t next_attempt_ms; /* wall clock of the next attempt, 0 when final */
};
/* Runs on the loop thread. It may call webhooks_enqueue (even for the task
 * being reported: the new delivery replaces the retry) and webhooks_stats,
 * but must not call webhooks_free. */
typedef void (*webhooks_report_cb)(const struct webhooks_report *report, void *arg);

/* o is copied (the secret too). Returns NULL when an option is out of range
 * (max_attempts < 1, retry_base_ms < 0, timeout_ms <= 0, max_pending 0). up
 * must outlive the webhooks. */
struct webhooks *webhooks_new(struct event_base *base, struct upstream *up,
                              const struct webhooks_options *o, webhooks_report_cb report,
                              void *arg);
/* Stops every timer and cancels transfers in flight (no reports). */
void webhooks_free(struct webhooks *wh);

/* Queues the delivery of body (copied; JSON, sent as is with Content-Type:
 * application/json) to url for task_id. attempts_done: attempts already made
 * (0 for a new delivery; more when resuming after a restart); the next one is
 * attempt attempts_done+1 and is made at not_before_ms (wall clock, <= now:
 * at once). Returns 0, or -1 (nothing queued) when max_pending is reached, url is not an http(s)
 * URL, or attempts_done >= max_attempts. A second enqueue for the same task_id while one is queued
 * replaces it (an attempt of the old one in flight is cancelled, unreported). The attempt is
 * started from this call when it is due and a slot is free; its report always comes later, from the
 * loop. */
int webhooks_enqueue(struct webhooks *wh, const char *task_id, const char *url, const void *body,
                     size_t body_len, int attempts_done, int64_t not_before_ms);

/* Pure: the delay after failed attempt n (1-based): retry_base_ms * 2^(n-1).
 * Saturates at INT64_MAX; attempt < 1 counts as 1. */
int64_t webhooks_retry_delay_ms(int64_t retry_base_ms, int attempt);

/* Pure: "v1=" + lowercase hex HMAC-SHA256(key = secret as-is, msg = timestamp "." body) into out
 * (needs 68 bytes). With a smaller out (or an HMAC failure) out is set to "". */
void webhooks_signature(const char *secret, const char *timestamp, const void *body, size_t len,
                        char *out, size_t out_size);

struct webhooks_stats {
    size_t pending;   /* deliveries held (waiting or in flight), bounded by max_pending */
    size_t in_flight; /* attempts on the wire now */
    uint64_t attempts, delivered, failed_attempts, given_up;
    uint64_t rejected; /* enqueues refused (full, bad URL, no attempt left) */
    uint64_t replaced; /* enqueues that replaced a held delivery of the same task */
};
void webhooks_stats(const struct webhooks *wh, struct webhooks_stats *out);

#endif
