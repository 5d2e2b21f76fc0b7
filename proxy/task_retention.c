/* task_retention.c: the judge of stored task records past task_retention
 * and the hourly start of their prune (task_retention.h). The record layout
 * is tasks.c's: JSON text, then optionally a NUL and a cached answer. */
#include "task_retention.h"

#include "clock.h"
#include "store.h"
#include "writer.h"

#include <jansson.h>
#include <string.h>

/* When the task ended: endedMs, else its creation; -1 when unknown. */
static int64_t ended_ms(const json_t *rec)
{
    const json_t *ended = json_object_get(rec, "endedMs");
    if (json_is_integer(ended))
        return (int64_t)json_integer_value(ended);
    const char *created =
        json_string_value(json_object_get(json_object_get(rec, "task"), "createdAt"));
    int64_t ms;
    return created != NULL && clock_parse_iso8601(created, &ms) == 0 ? ms : -1;
}

/* A webhook the proxy still has to deliver. */
static bool hook_due(const json_t *rec, int64_t max_attempts)
{
    const json_t *hook = json_object_get(rec, "hook");
    const char *mode = json_string_value(json_object_get(hook, "mode"));
    return mode != NULL && strcmp(mode, "proxy") == 0 &&
           !json_is_true(json_object_get(hook, "delivered")) &&
           json_integer_value(json_object_get(hook, "attempts")) < max_attempts;
}

bool task_retention_judge(const unsigned char *key, const unsigned char *data, size_t len,
                          const void *arg, unsigned char linked[][CACHE_KEY_BYTES],
                          size_t *linked_count)
{
    (void)key;
    struct task_retention_rule rule;
    memcpy(&rule, arg, sizeof rule);
    *linked_count = 0;
    const unsigned char *nul = memchr(data, '\0', len);
    size_t json_len = nul != NULL ? (size_t)(nul - data) : len;
    if (json_len == 0 || data[0] != '{')
        return false; /* an index entry (a task id), not a record */
    json_t *rec = json_loadb((const char *)data, json_len, 0, NULL);
    const json_t *task = json_object_get(rec, "task");
    const char *status = json_string_value(json_object_get(task, "status"));
    int64_t ended = ended_ms(rec);
    bool prune = status != NULL &&
                 (strcmp(status, "COMPLETED") == 0 || strcmp(status, "FAILED") == 0) &&
                 !hook_due(rec, rule.max_attempts) && ended >= 0 && ended < rule.cut_ms;
    const char *idem = json_string_value(json_object_get(task, "idempotencyKey"));
    if (prune && idem != NULL) {
        cache_task_key("idem", idem, linked[0]);
        *linked_count = 1;
    }
    json_decref(rec);
    return prune;
}

bool task_retention_tick(struct cache_writer *w, int64_t retention_ms, int64_t max_attempts,
                         int64_t now_ms, int64_t *last_ms)
{
    if (w == NULL || retention_ms <= 0 ||
        (*last_ms != 0 && now_ms - *last_ms < TASK_RETENTION_PRUNE_EVERY_MS))
        return false;
    struct task_retention_rule rule = {now_ms - retention_ms, max_attempts};
    if (!cache_writer_task_prune(w, task_retention_judge, &rule, sizeof rule))
        return false; /* one still under way: tried again at the next tick */
    *last_ms = now_ms;
    return true;
}
