/* fake_stats: counters and the /_fake/stats JSON. Maps keyed by path, status and
 * auth hash are jansson objects so rendering is a deep copy. */
#include "fake_stats.h"

#include <stdio.h>
#include <string.h>

static const char *const fake_stats_fault_names[FAKE_FAULT_COUNT] = {
    "none", "500", "503", "reset", "reset_mid_body", "slow", "429", "garbage", "stall", "slow_drip",
};

const char *fake_stats_fault_name(enum fake_fault f)
{
    return f < FAKE_FAULT_COUNT ? fake_stats_fault_names[f] : "unknown";
}

void fake_stats_init(struct fake_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->requests = json_object();
    s->status = json_object();
    s->auth = json_object();
    s->async.batch_sizes = json_array();
}

void fake_stats_deinit(struct fake_stats *s)
{
    json_decref(s->requests);
    json_decref(s->status);
    json_decref(s->auth);
    json_decref(s->last);
    json_decref(s->async.batch_sizes);
    memset(s, 0, sizeof(*s));
}

void fake_stats_reset(struct fake_stats *s)
{
    int64_t in_flight = s->in_flight;
    fake_stats_deinit(s);
    fake_stats_init(s);
    s->in_flight = in_flight;
    s->max_in_flight = in_flight;
}

static void fake_stats_bump(json_t *map, const char *key)
{
    json_t *v = json_object_get(map, key);
    json_object_set_new(map, key, json_integer(v ? json_integer_value(v) + 1 : 1));
}

void fake_stats_count_request(struct fake_stats *s, const char *path)
{
    s->requests_total++;
    fake_stats_bump(s->requests, path);
}

void fake_stats_count_status(struct fake_stats *s, int status)
{
    char key[16];
    snprintf(key, sizeof(key), "%d", status);
    fake_stats_bump(s->status, key);
}

void fake_stats_count_auth(struct fake_stats *s, const char *auth_sha256)
{
    if (auth_sha256 == NULL)
        s->auth_missing++;
    else
        fake_stats_bump(s->auth, auth_sha256);
}

void fake_stats_in_flight_add(struct fake_stats *s, int64_t delta)
{
    s->in_flight += delta;
    if (s->in_flight > s->max_in_flight)
        s->max_in_flight = s->in_flight;
}

void fake_stats_count_batch(struct fake_stats *s, size_t n)
{
    json_array_append_new(s->async.batch_sizes, json_integer((json_int_t)n));
    while (json_array_size(s->async.batch_sizes) > FAKE_STATS_BATCH_SIZES_MAX)
        json_array_remove(s->async.batch_sizes, 0);
}

void fake_stats_set_last(struct fake_stats *s, json_t *last)
{
    json_decref(s->last);
    s->last = last;
}

json_t *fake_stats_to_json(const struct fake_stats *s, int64_t credits_remaining)
{
    json_t *faults = json_object();
    for (int f = FAKE_FAULT_500; f < FAKE_FAULT_COUNT; f++)
        json_object_set_new(faults, fake_stats_fault_names[f],
                            json_integer((json_int_t)s->faults[f]));
    const struct fake_stats_async *a = &s->async;
    json_t *async = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:O}", "tasks_created",
        (json_int_t)a->tasks_created, "completed", (json_int_t)a->completed, "failed",
        (json_int_t)a->failed, "batch_calls", (json_int_t)a->batch_calls, "idempotency_conflicts",
        (json_int_t)a->idempotency_conflicts, "webhook_attempts", (json_int_t)a->webhook_attempts,
        "webhook_delivered", (json_int_t)a->webhook_delivered, "creates", (json_int_t)a->creates,
        "task_polls", (json_int_t)a->task_polls, "submitted_keys", (json_int_t)a->submitted_keys,
        "retries", (json_int_t)a->retries, "batch_sizes", a->batch_sizes);
    return json_pack(
        "{s:I, s:I, s:O, s:O, s:I, s:I, s:O, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:O}",
        "requests_total", (json_int_t)s->requests_total, "connections_total",
        (json_int_t)s->connections_total, "requests", s->requests, "status", s->status, "in_flight",
        (json_int_t)s->in_flight, "max_in_flight", (json_int_t)s->max_in_flight, "auth", s->auth,
        "auth_missing", (json_int_t)s->auth_missing, "canceled", (json_int_t)s->canceled, "faults",
        faults, "artifact_fetches", (json_int_t)s->artifact_fetches, "artifact_expired",
        (json_int_t)s->artifact_expired, "artifact_failures", (json_int_t)s->artifact_failures,
        "credits_remaining", (json_int_t)credits_remaining, "credits_charged_total",
        (json_int_t)s->credits_charged_total, "async", async, "last",
        s->last ? s->last : json_null());
}
