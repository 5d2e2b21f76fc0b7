/* tasks.h: what the proxy knows about async tasks (cloro-api.md section 7).
 * Every submission that passes through the proxy gets a task record, kept in
 * the cache store for good (past cloro's 24 h retention):
 *   - upstream: the proxy created it upstream (its id is cloro's) and follows
 *     it to its end (task_follow.h);
 *   - cache: answered from the cache, COMPLETED at once, never sent upstream;
 *   - attached: identical to an upstream task still open, it ends when that
 *     one does, with the same response, and costs nothing.
 * An upstream task that completes stores its result under its content key
 * too, as the sync answer it stands for: later identical prompts, sync or
 * async, are hits. Webhooks of tasks are delivered by the proxy (webhooks.h)
 * unless webhook_delivery = upstream.
 *
 * Live tasks (not ended, or a webhook still to deliver) are held in memory;
 * the others are read back from the store on demand. Loop thread only. */
#ifndef CLORO_TASKS_H
#define CLORO_TASKS_H

#include "ids.h"
#include "key.h"
#include "limiter.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct request;
struct tasks;
struct event;
struct upstream_transfer;
struct cache_entry;
struct credit_saver;

enum task_origin { TASK_ORIGIN_UPSTREAM, TASK_ORIGIN_CACHE, TASK_ORIGIN_ATTACHED };

struct task {
    struct tasks *tasks;
    char id[IDS_UUID_LEN + 8]; /* "" while an upstream creation is in flight */
    enum task_origin origin;
    json_t *rec; /* the record (tasks.c): task, credits, response, webhook state */
    bool keyed;  /* key is the content key of its taskType and payload */
    struct cache_key key;
    bool store_result;          /* a COMPLETED result goes into the cache under key */
    bool creating;              /* upstream: the creation call has not answered yet */
    bool by_key;                /* registered as the open task of its key */
    struct task *leader;        /* attached: the upstream task it follows */
    struct task *followers;     /* upstream: its attached tasks */
    struct task *next_follower; /* in the leader's list */
    char *authorization;        /* upstream: to poll with when the proxy holds no key */
    unsigned char *raw_answer;  /* cache: the cached answer's body, its response inside */
    size_t raw_answer_len;

    /* Following (upstream tasks; task_follow.c). */
    struct event *timer;
    int64_t polled_us; /* monotonic time of the last poll answer; 0: none yet */
    bool polling;      /* a poll is queued or in flight */
    struct limiter_ticket ticket;
    struct upstream_transfer *transfer;
    struct request *waiters; /* client GETs waiting for the poll, via next_waiter */
    int64_t created_us;      /* monotonic: when the proxy learnt of it (polls back off by age) */

    /* The credit saver (credit_saver.h). */
    struct request *awaiting; /* sync calls answered when it ends, via next_awaiting */
    bool saver;               /* created by the credit saver: counts in max_open_tasks */
    int failure_status;       /* a failed creation: the status and envelope to answer */
    json_t *failure_body;
    json_t *saver_item;        /* what the saver sends upstream to create it */
    struct task *next_pending; /* in the saver's batch window */
};

/* Loads the live tasks of the store (resuming follow-ups and deliveries).
 * srv's store, writer, upstream and limiter must exist. */
struct tasks *tasks_new(struct server *srv);
void tasks_free(struct tasks *ts);

/* From the proxy's periodic tick: at start and at most once an hour, the
 * cache writer prunes the records of tasks ended more than task_retention
 * ago (task_retention.h). */
void tasks_tick(struct tasks *ts, int64_t now_ms);

/* Handles POST /v1/async/task[/batch] and GET /v1/async/task/{id}; returns
 * false (r untouched) for any other request. */
bool tasks_route(struct tasks *ts, struct request *r);

/* Back online (mode.h): every open upstream task is polled now (offline,
 * task_follow.c put its polls off). */
void tasks_resume_following(struct tasks *ts);

/* --- for task_submit.c and task_follow.c ---------------------------------- */

struct server *tasks_server(struct tasks *ts);
struct credit_saver *tasks_credit_saver(struct tasks *ts);

/* A live task by id, or NULL. */
struct task *tasks_find(struct tasks *ts, const char *id);
/* The open upstream task (creating or following) of a content key, or NULL. */
struct task *tasks_open_for_key(struct tasks *ts, const unsigned char *key);
/* A stored record by id (new reference), or NULL. */
json_t *tasks_load_record(struct tasks *ts, const char *id);

/* True when key is already bound to a task (stored, or a creation in flight). */
bool tasks_idempotency_used(struct tasks *ts, const char *key);
/* Holds key while its creation is in flight; released when it ends. */
void tasks_idempotency_reserve(struct tasks *ts, const char *key);

/* A new upstream task for a submission item (taskType, payload, ...), in
 * creation: registered under its content key (when keyed) so identical
 * submissions attach to it. */
struct task *tasks_begin_upstream(struct tasks *ts, const json_t *item, const struct cache_key *key,
                                  bool store_result);
/* The upstream answered the creation: summary is its "task" object, credits
 * its "credits", rid its X-Request-ID. The task is saved and followed. */
void tasks_created(struct tasks *ts, struct task *t, const json_t *summary, const json_t *credits,
                   const char *rid);
/* The creation failed (error: the error object to give attached tasks, new
 * reference taken; NULL: a generic one). The task is dropped; its attached
 * tasks end FAILED. */
void tasks_creation_failed(struct tasks *ts, struct task *t, json_t *error);

/* A task answered from a cached answer e (COMPLETED at once). */
struct task *tasks_new_cached(struct tasks *ts, const json_t *item, const struct cache_entry *e);
/* The caller is done with t: it leaves memory if it has no work left. */
void tasks_release(struct tasks *ts, struct task *t);
/* A task attached to the open upstream task leader. */
struct task *tasks_new_attached(struct tasks *ts, const json_t *item, struct task *leader);

/* An upstream poll answered 200 with doc (TaskStatusResponse): updates the
 * task and, when it ended, its followers, the cache and webhooks. */
void tasks_update(struct tasks *ts, struct task *t, const json_t *doc);
/* The upstream says the task does not exist (deleted from its queue): the
 * task and its followers are dropped, and answer 404 from now on. */
void tasks_vanished(struct tasks *ts, struct task *t);

/* The creation answer of a task: {"success":true,"task":...,"credits":...}. */
json_t *tasks_creation_view(const json_t *rec);
/* What GET /v1/async/task/{id} answers (with_webhook) or a webhook carries. */
json_t *tasks_view(const json_t *rec, bool with_webhook);
bool tasks_record_terminal(const json_t *rec);
/* tasks_view of a live task (its response read back when kept raw). */
json_t *tasks_task_view(struct task *t, bool with_webhook);

/* Sends view as the 200 answer to r, artifact URLs rewritten; ends r. */
void tasks_reply_view(struct request *r, json_t *view, const char *cache_status);

/* Counters for /_proxy/stats (new reference). */
json_t *tasks_stats_json(struct tasks *ts);

struct tasks_counters {
    uint64_t submitted; /* tasks submitted by clients (batch items included) */
    uint64_t created_upstream;
    uint64_t from_cache;
    uint64_t attached;
    uint64_t key_reused; /* idempotencyKey reuse answered by the proxy */
    uint64_t batches;
    uint64_t upstream_batches;
    uint64_t polls;
    uint64_t client_polls_answered; /* client GETs answered from what the proxy knew */
    uint64_t completed, failed, vanished;
};
struct tasks_counters *tasks_counters(struct tasks *ts);

#endif
