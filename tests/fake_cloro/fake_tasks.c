/* fake_tasks: each task sits on exactly one list: the QUEUED list of its priority,
 * the retrying list (QUEUED, waiting out the delay after a failed attempt), the
 * running list, or the done list (completion order, so retention expires from
 * the head). Lookups by id and idempotency key go through jansson objects used as
 * hash maps whose values hold the task pointer. */
#include "fake_tasks.h"

#include <stdlib.h>
#include <string.h>

#include "fake_util.h"

#define FAKE_TASKS_PRIORITIES 10

struct fake_tasks_list {
    struct fake_task *head, *tail;
    size_t n;
};

struct fake_tasks {
    struct event_base *base;
    struct fake_tasks_hooks hooks;
    struct fake_tasks_list queued[FAKE_TASKS_PRIORITIES + 1]; /* index = priority */
    struct fake_tasks_list retrying;                          /* each with its timer armed */
    struct fake_tasks_list running;
    struct fake_tasks_list done;
    size_t n_queued; /* the queued lists and retrying */
    json_t *by_id;   /* id -> integer(pointer) */
    json_t *by_key;  /* idempotencyKey -> integer(pointer) */
};

static void fake_tasks_list_push(struct fake_tasks_list *l, struct fake_task *t)
{
    t->next = NULL;
    t->prev = l->tail;
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    l->n++;
}

static void fake_tasks_list_remove(struct fake_tasks_list *l, struct fake_task *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->prev = t->next = NULL;
    l->n--;
}

static json_t *fake_tasks_ptr(struct fake_task *t)
{
    return json_integer((json_int_t)(intptr_t)t);
}

static struct fake_task *fake_tasks_unptr(const json_t *v)
{
    return v ? (struct fake_task *)(intptr_t)json_integer_value(v) : NULL;
}

struct fake_tasks *fake_tasks_new(struct event_base *base, const struct fake_tasks_hooks *hooks)
{
    struct fake_tasks *ts = fake_xcalloc(1, sizeof(*ts));
    ts->base = base;
    ts->hooks = *hooks;
    ts->by_id = json_object();
    ts->by_key = json_object();
    return ts;
}

/* Unlinks t from the maps and frees it; the caller removed it from its list. */
static void fake_tasks_delete(struct fake_tasks *ts, struct fake_task *t)
{
    json_object_del(ts->by_id, t->id);
    if (t->idempotency_key)
        json_object_del(ts->by_key, t->idempotency_key);
    if (t->timer)
        event_free(t->timer);
    json_decref(t->payload);
    json_decref(t->response);
    free(t->idempotency_key);
    free(t->webhook_url);
    free(t);
}

static void fake_tasks_free_list(struct fake_tasks *ts, struct fake_tasks_list *l)
{
    while (l->head) {
        struct fake_task *t = l->head;
        fake_tasks_list_remove(l, t);
        fake_tasks_delete(ts, t);
    }
}

void fake_tasks_free(struct fake_tasks *ts)
{
    if (ts == NULL)
        return;
    for (int p = 0; p <= FAKE_TASKS_PRIORITIES; p++)
        fake_tasks_free_list(ts, &ts->queued[p]);
    fake_tasks_free_list(ts, &ts->retrying);
    fake_tasks_free_list(ts, &ts->running);
    fake_tasks_free_list(ts, &ts->done);
    json_decref(ts->by_id);
    json_decref(ts->by_key);
    free(ts);
}

void fake_tasks_expire(struct fake_tasks *ts, int64_t now_mono_ms, int64_t retention_ms)
{
    while (ts->done.head && now_mono_ms - ts->done.head->done_mono_ms >= retention_ms) {
        struct fake_task *t = ts->done.head;
        fake_tasks_list_remove(&ts->done, t);
        fake_tasks_delete(ts, t);
    }
}

struct fake_task *fake_tasks_find(struct fake_tasks *ts, const char *id)
{
    return fake_tasks_unptr(json_object_get(ts->by_id, id));
}

bool fake_tasks_key_used(struct fake_tasks *ts, const char *key)
{
    return json_object_get(ts->by_key, key) != NULL;
}

struct fake_task *fake_tasks_add(struct fake_tasks *ts, const struct fake_validate_task *vt,
                                 json_t *payload, int64_t credits_to_charge)
{
    struct fake_task *t = fake_xcalloc(1, sizeof(*t));
    t->owner = ts;
    fake_util_uuid4(t->id);
    t->status = FAKE_TASK_QUEUED;
    t->priority = vt->priority >= 1 && vt->priority <= FAKE_TASKS_PRIORITIES ? vt->priority : 1;
    t->task_type = vt->task_type;
    t->created_real_ms = fake_util_real_ms();
    t->idempotency_key = vt->idempotency_key ? fake_xstrdup(vt->idempotency_key) : NULL;
    t->webhook_url = vt->webhook_url ? fake_xstrdup(vt->webhook_url) : NULL;
    t->credits_to_charge = credits_to_charge;
    t->latency_ms = -1;
    t->payload = json_incref(payload);
    t->req = vt->req;
    json_object_set_new(ts->by_id, t->id, fake_tasks_ptr(t));
    if (t->idempotency_key)
        json_object_set_new(ts->by_key, t->idempotency_key, fake_tasks_ptr(t));
    fake_tasks_list_push(&ts->queued[t->priority], t);
    ts->n_queued++;
    return t;
}

/* t (on no list, slot released) is terminal: record it and tell the server. */
static void fake_tasks_finish(struct fake_tasks *ts, struct fake_task *t, bool processed)
{
    if (t->status != FAKE_TASK_COMPLETED && t->status != FAKE_TASK_FAILED)
        t->status = FAKE_TASK_FAILED;
    t->done_mono_ms = fake_util_mono_ms();
    t->latency_ms = processed ? t->done_mono_ms - t->pickup_mono_ms : -1;
    fake_tasks_list_push(&ts->done, t);
    ts->hooks.terminal(ts->hooks.arg, t);
}

static void fake_tasks_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fake_task *t = arg;
    struct fake_tasks *ts = t->owner;
    event_free(t->timer);
    t->timer = NULL;
    fake_tasks_list_remove(&ts->retrying, t);
    fake_tasks_list_push(&ts->queued[t->priority], t); /* still counted in n_queued */
    fake_tasks_pump(ts);
}

static void fake_tasks_arm(struct fake_tasks *ts, struct fake_task *t, int64_t ms,
                           event_callback_fn cb)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    /* Timers count from the loop's cached time, which lags behind by however
     * long the current callback ran: refresh it so durations are real. */
    event_base_update_cache_time(ts->base);
    t->timer = evtimer_new(ts->base, cb, t);
    evtimer_add(t->timer, &tv);
}

static void fake_tasks_on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fake_task *t = arg;
    struct fake_tasks *ts = t->owner;
    event_free(t->timer);
    t->timer = NULL;
    fake_tasks_list_remove(&ts->running, t);
    ts->hooks.run(ts->hooks.arg, t);
    ts->hooks.slot_release(ts->hooks.arg);
    if (t->status == FAKE_TASK_QUEUED) { /* a retry hop */
        json_decref(t->response);
        t->response = NULL;
        fake_tasks_list_push(&ts->retrying, t);
        ts->n_queued++;
        fake_tasks_arm(ts, t, ts->hooks.retry_delay_ms(ts->hooks.arg), fake_tasks_on_retry);
    } else {
        fake_tasks_finish(ts, t, true);
    }
    fake_tasks_pump(ts);
}

void fake_tasks_pump(struct fake_tasks *ts)
{
    for (;;) {
        struct fake_tasks_list *l = NULL;
        for (int p = FAKE_TASKS_PRIORITIES; p >= 1 && l == NULL; p--) {
            if (ts->queued[p].head)
                l = &ts->queued[p];
        }
        if (l == NULL || !ts->hooks.slot_take(ts->hooks.arg))
            return;
        struct fake_task *t = l->head;
        fake_tasks_list_remove(l, t);
        ts->n_queued--;
        t->attempts++;
        if (t->attempts == 1)
            t->pickup_mono_ms = fake_util_mono_ms();
        if (!ts->hooks.pickup(ts->hooks.arg, t)) {
            ts->hooks.slot_release(ts->hooks.arg);
            fake_tasks_finish(ts, t, t->attempts > 1);
            continue;
        }
        t->status = FAKE_TASK_PROCESSING;
        fake_tasks_list_push(&ts->running, t);
        fake_tasks_arm(ts, t, ts->hooks.duration_ms(ts->hooks.arg), fake_tasks_on_done);
    }
}

size_t fake_tasks_queued(const struct fake_tasks *ts)
{
    return ts->n_queued;
}

size_t fake_tasks_processing(const struct fake_tasks *ts)
{
    return ts->running.n;
}

json_t *fake_tasks_priority_breakdown(const struct fake_tasks *ts)
{
    size_t counts[FAKE_TASKS_PRIORITIES + 1];
    for (int p = 0; p <= FAKE_TASKS_PRIORITIES; p++)
        counts[p] = ts->queued[p].n;
    for (const struct fake_task *t = ts->retrying.head; t != NULL; t = t->next)
        counts[t->priority]++;
    json_t *arr = json_array();
    for (int p = FAKE_TASKS_PRIORITIES; p >= 1; p--) {
        if (counts[p] > 0)
            json_array_append_new(
                arr, json_pack("{s:i, s:I}", "priority", p, "count", (json_int_t)counts[p]));
    }
    return arr;
}

size_t fake_tasks_clear_queue(struct fake_tasks *ts)
{
    size_t n = ts->n_queued;
    for (int p = 1; p <= FAKE_TASKS_PRIORITIES; p++)
        fake_tasks_free_list(ts, &ts->queued[p]);
    fake_tasks_free_list(ts, &ts->retrying);
    ts->n_queued = 0;
    return n;
}

static const char *fake_tasks_status_name(enum fake_task_status s)
{
    switch (s) {
    case FAKE_TASK_QUEUED:
        return "QUEUED";
    case FAKE_TASK_PROCESSING:
        return "PROCESSING";
    case FAKE_TASK_COMPLETED:
        return "COMPLETED";
    case FAKE_TASK_FAILED:
        return "FAILED";
    }
    return "FAILED";
}

static bool fake_tasks_terminal(const struct fake_task *t)
{
    return t->status == FAKE_TASK_COMPLETED || t->status == FAKE_TASK_FAILED;
}

json_t *fake_tasks_summary_json(const struct fake_task *t)
{
    char created[32];
    fake_util_iso8601_ms(t->created_real_ms, created);
    return json_pack(
        "{s:s, s:s, s:s, s:i, s:s, s:o, s:o}", "id", t->id, "taskType", t->task_type, "status",
        fake_tasks_status_name(t->status), "priority", t->priority, "createdAt", created,
        "latencyMs", t->latency_ms >= 0 ? json_integer((json_int_t)t->latency_ms) : json_null(),
        "idempotencyKey", t->idempotency_key ? json_string(t->idempotency_key) : json_null());
}

json_t *fake_tasks_credits_json(const struct fake_task *t)
{
    return json_pack(
        "{s:I, s:o}", "creditsToCharge", (json_int_t)t->credits_to_charge, "creditsCharged",
        fake_tasks_terminal(t) ? json_integer((json_int_t)t->credits_charged) : json_null());
}

json_t *fake_tasks_status_json(const struct fake_task *t, bool with_webhook)
{
    json_t *body = json_pack("{s:o, s:o}", "task", fake_tasks_summary_json(t), "credits",
                             fake_tasks_credits_json(t));
    if (!fake_tasks_terminal(t))
        return body;
    if (with_webhook && t->webhook_url) {
        json_t *delivered_at = json_null();
        if (t->webhook_delivered) {
            char at[32];
            fake_util_iso8601_ms(t->webhook_delivered_real_ms, at);
            json_decref(delivered_at);
            delivered_at = json_string(at);
        }
        json_object_set_new(body, "webhook",
                            json_pack("{s:s, s:o, s:b}", "url", t->webhook_url, "deliveredAt",
                                      delivered_at, "delivered", t->webhook_delivered));
    }
    json_object_set(body, "response", t->response ? t->response : json_null());
    return body;
}
