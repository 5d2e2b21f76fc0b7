/* batch_split.c: see batch_split.h. Pure: JSON in, JSON out, the clock
 * only for the timestamps of errors made here. */
#include "batch_split.h"
#include "clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

void batch_split_init(struct batch_split *s, size_t count)
{
    *s = (struct batch_split){.count = count};
    s->upstream = calloc(count > 0 ? count : 1, sizeof *s->upstream);
    if (s->upstream == NULL)
        abort();
}

void batch_split_deinit(struct batch_split *s)
{
    free(s->upstream);
    s->upstream = NULL;
}

void batch_split_add(struct batch_split *s, size_t index, enum batch_item_kind kind)
{
    if (index >= s->count || s->added >= s->count || (unsigned)kind >= BATCH_ITEM_KINDS)
        abort(); /* a caller's bug */
    s->added++;
    s->kinds[kind]++;
    if (kind == BATCH_ITEM_UPSTREAM)
        s->upstream[s->upstream_count++] = index;
}

json_t *batch_split_body(const struct batch_split *s, const json_t *doc, batch_item_cb item,
                         void *arg)
{
    json_t *sent = json_array();
    for (size_t j = 0; j < s->upstream_count; j++) {
        json_t *one = json_array_get(doc, s->upstream[j]);
        json_array_append_new(sent, item != NULL ? item(arg, one) : json_incref(one));
    }
    return sent;
}

void batch_split_match(const struct batch_split *s, const json_t *results, batch_settle_cb settle,
                       void *arg)
{
    if (!json_is_array(results) || s->upstream_count == 0)
        return;
    bool *settled = calloc(s->upstream_count, sizeof *settled);
    if (settled == NULL)
        abort();
    size_t position;
    json_t *result;
    json_array_foreach(results, position, result)
    {
        const json_t *index = json_object_get(result, "index");
        json_int_t j = json_is_integer(index) ? json_integer_value(index) : (json_int_t)position;
        if (j < 0 || (size_t)j >= s->upstream_count || settled[j])
            continue;
        settled[j] = true;
        settle(arg, s->upstream[j], result);
    }
    free(settled);
}

void batch_split_describe(const struct batch_split *s, char *out, size_t size)
{
    int n = snprintf(out, size, "cached=%zu; attached=%zu; duplicate=%zu; upstream=%zu; reused=%zu",
                     s->kinds[BATCH_ITEM_CACHED], s->kinds[BATCH_ITEM_ATTACHED],
                     s->kinds[BATCH_ITEM_DUPLICATE], s->kinds[BATCH_ITEM_UPSTREAM],
                     s->kinds[BATCH_ITEM_KEY_REUSED]);
    if (s->kinds[BATCH_ITEM_OFFLINE] > 0 && n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, "; offline=%zu", s->kinds[BATCH_ITEM_OFFLINE]);
}

json_t *batch_item_success(size_t index, const json_t *task, const json_t *credits)
{
    /* Never NULL: a missing part is null, not a lost item. */
    return json_pack("{s:b, s:I, s:O, s:O}", "success", 1, "index", (json_int_t)index, "task",
                     task != NULL ? task : json_null(), "credits",
                     credits != NULL ? credits : json_null());
}

json_t *batch_item_failure(size_t index, const char *code, const char *message, json_t *details)
{
    char ts[40];
    clock_format_iso8601(ts, sizeof ts, clock_wall_ms());
    json_t *error = json_pack("{s:s, s:s, s:s}", "code", code, "message", message, "timestamp", ts);
    if (details != NULL)
        json_object_set_new(error, "details", details);
    return json_pack("{s:b, s:I, s:o}", "success", 0, "index", (json_int_t)index, "error", error);
}

/* The upstream's own item, moved to the client's index. */
static json_t *reindexed(const json_t *item, size_t index)
{
    json_t *copy = json_deep_copy(item);
    json_object_set_new(copy, "index", json_integer((json_int_t)index));
    return copy;
}

json_t *batch_item_from_upstream(const json_t *result, size_t index)
{
    if (json_is_true(json_object_get(result, "success")) &&
        json_is_object(json_object_get(result, "task")))
        return reindexed(result, index);
    if (json_is_object(json_object_get(result, "error")))
        return reindexed(result, index);
    return batch_item_failure(index, "INTERNAL_SERVER_ERROR",
                              "The cloro API gave no answer for this task", NULL);
}

bool batch_item_succeeded(const json_t *item)
{
    return json_is_true(json_object_get(item, "success"));
}

json_t *batch_merge(json_t *results)
{
    size_t total = json_array_size(results), succeeded = 0;
    for (size_t i = 0; i < total; i++)
        if (batch_item_succeeded(json_array_get(results, i)))
            succeeded++;
    return json_pack("{s:b, s:{s:I, s:I, s:I}, s:o}", "success", 1, "summary", "total",
                     (json_int_t)total, "succeeded", (json_int_t)succeeded, "failed",
                     (json_int_t)(total - succeeded), "results", results);
}
