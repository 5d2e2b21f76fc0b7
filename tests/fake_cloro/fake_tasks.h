/* fake_tasks: the async task store and scheduler (cloro-api.md §7, §15 items 17-23):
 * tasks by id and by idempotency key, QUEUED lists per priority (desc, FIFO),
 * retention of terminal tasks, the JSON shapes of a task, and evtimers that move
 * QUEUED -> PROCESSING -> COMPLETED|FAILED, with retry hops back to QUEUED (a
 * failed attempt waits out a delay, visible as QUEUED, then queues again). Slots,
 * the pickup check and outcomes come from hooks, so the org's concurrency pool,
 * balance and the results stay the server's business. */
#ifndef FAKE_TASKS_H
#define FAKE_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

#include "fake_validate.h"

enum fake_task_status {
    FAKE_TASK_QUEUED,
    FAKE_TASK_PROCESSING,
    FAKE_TASK_COMPLETED,
    FAKE_TASK_FAILED,
};

struct fake_task {
    char id[37];
    enum fake_task_status status;
    int priority;
    const char *task_type; /* static */
    int64_t created_real_ms;
    char *idempotency_key; /* NULL when absent */
    char *webhook_url;     /* NULL when absent */
    int64_t credits_to_charge;
    int64_t credits_charged; /* meaningful once terminal */
    int64_t latency_ms;      /* -1: null */
    int attempts;            /* attempts started (pickups), 0 while never picked up */
    int64_t pickup_mono_ms;  /* the first pickup */
    int64_t done_mono_ms;
    json_t *payload; /* owns the strings req borrows */
    struct fake_validate_req req;
    json_t *response; /* terminal tasks only */
    bool webhook_delivered;
    int64_t webhook_delivered_real_ms;
    /* owned by fake_tasks */
    struct fake_tasks *owner;
    struct event *timer;
    struct fake_task *prev, *next;
};

struct fake_tasks_hooks {
    void *arg;
    /* True when a slot was free and is now held by the task. */
    bool (*slot_take)(void *arg);
    void (*slot_release)(void *arg);
    /* How long the next pickup processes, in ms. */
    int64_t (*duration_ms)(void *arg);
    /* Called at each pickup (t->attempts already counts it, t holds a slot).
     * False ends the task at once: the hook set status FAILED, response and
     * credits_charged; latencyMs stays null when it was the first pickup. */
    bool (*pickup)(void *arg, struct fake_task *t);
    /* Decides the outcome of an attempt: sets status COMPLETED or FAILED with
     * response and credits_charged, or status QUEUED for a retry hop. */
    void (*run)(void *arg, struct fake_task *t);
    /* How long a task waits (QUEUED) after a failed attempt, in ms. */
    int64_t (*retry_delay_ms)(void *arg);
    /* Called once the task is terminal (latency set). */
    void (*terminal)(void *arg, struct fake_task *t);
};

struct fake_tasks;

struct fake_tasks *fake_tasks_new(struct event_base *base, const struct fake_tasks_hooks *hooks);
void fake_tasks_free(struct fake_tasks *ts);

/* Deletes terminal tasks done at least retention_ms ago (their keys free up). */
void fake_tasks_expire(struct fake_tasks *ts, int64_t now_mono_ms, int64_t retention_ms);

struct fake_task *fake_tasks_find(struct fake_tasks *ts, const char *id);
bool fake_tasks_key_used(struct fake_tasks *ts, const char *key);

/* Queues a validated task. payload is the object vt was validated from (a new
 * reference is taken). Does not start it: call fake_tasks_pump. */
struct fake_task *fake_tasks_add(struct fake_tasks *ts, const struct fake_validate_task *vt,
                                 json_t *payload, int64_t credits_to_charge);

/* Starts queued tasks while slots are free (priority desc, FIFO; a task back
 * from a retry hop queues at the tail of its priority). */
void fake_tasks_pump(struct fake_tasks *ts);

/* QUEUED tasks, those waiting to retry included. */
size_t fake_tasks_queued(const struct fake_tasks *ts);
size_t fake_tasks_processing(const struct fake_tasks *ts);
/* [{priority, count}] of QUEUED tasks, priority descending, non-zero only. */
json_t *fake_tasks_priority_breakdown(const struct fake_tasks *ts);
/* Deletes every QUEUED task (those waiting to retry too); returns how many. */
size_t fake_tasks_clear_queue(struct fake_tasks *ts);

/* AsyncTaskSummary and AsyncTaskCredits (new references). */
json_t *fake_tasks_summary_json(const struct fake_task *t);
json_t *fake_tasks_credits_json(const struct fake_task *t);
/* TaskStatusResponse; the webhook block only when with_webhook (the delivery
 * body leaves it out). */
json_t *fake_tasks_status_json(const struct fake_task *t, bool with_webhook);

#endif
