/* fuzz_batch_split: the split and merge of an async batch (proxy/batch_split.c).
 * The input is parsed as a batch body (any JSON; arrays of 1 to 500 items are
 * what the proxy splits); the input's own bytes pick each item's kind and
 * shape the upstream's answer to the sub-batch: entries reordered, missing,
 * repeated, without an index, out of range, failed or not objects. Checked:
 * the sub-batch holds exactly the upstream items in order, each sent item is
 * settled at most once, every client index appears exactly once in the
 * merged answer, in order, and the summary adds up. */
#include "batch_split.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define BATCH_MAX 500 /* cloro-api.md 7.3 */

struct run {
    const struct batch_split *split;
    const enum batch_item_kind *kinds;
    json_t **results; /* per client index */
};

static uint8_t byte_at(const uint8_t *data, size_t size, size_t i)
{
    return size > 0 ? data[i % size] : 0;
}

static void on_settle(void *arg, size_t client_index, const json_t *result)
{
    struct run *run = arg;
    if (client_index >= run->split->count || run->kinds[client_index] != BATCH_ITEM_UPSTREAM ||
        run->results[client_index] != NULL)
        abort(); /* not a sent item, or settled twice */
    run->results[client_index] = batch_item_from_upstream(result, client_index);
}

/* The upstream's answer to sent: entry j shaped by one input byte. */
static json_t *upstream_answer(const json_t *sent, const uint8_t *data, size_t size)
{
    json_t *results = json_array();
    size_t n = json_array_size(sent);
    for (size_t k = 0; k < n; k++) {
        size_t j = (byte_at(data, size, 1) & 1) ? n - 1 - k : k;
        json_t *task = json_pack("{s:s, s:O}", "id", "t", "item", json_array_get(sent, j));
        json_t *entry;
        switch (byte_at(data, size, j * 13 + 5) % 8) {
        case 0: /* missing */
            json_decref(task);
            continue;
        case 1: /* repeated */
            json_array_append_new(results, json_pack("{s:b, s:I, s:O, s:{}}", "success", 1, "index",
                                                     (json_int_t)j, "task", task, "credits"));
            entry =
                json_pack("{s:b, s:I, s:O}", "success", 1, "index", (json_int_t)j, "task", task);
            break;
        case 2: /* no index: its position counts */
            entry = json_pack("{s:b, s:O}", "success", 1, "task", task);
            break;
        case 3: /* out of range */
            entry = json_pack("{s:b, s:I}", "success", 1, "index", (json_int_t)(n + j));
            break;
        case 4:
            entry = json_pack("{s:b, s:I, s:{s:s, s:s}}", "success", 0, "index", (json_int_t)j,
                              "error", "code", "VALIDATION_ERROR", "message", "bad");
            break;
        case 5:
            entry = json_integer((json_int_t)j);
            break;
        default:
            entry = json_pack("{s:b, s:I, s:O, s:{}}", "success", 1, "index", (json_int_t)j, "task",
                              task, "credits");
            break;
        }
        json_decref(task);
        json_array_append_new(results, entry);
    }
    return results;
}

static void check_merged(const json_t *doc, size_t count)
{
    const json_t *summary = json_object_get(doc, "summary");
    const json_t *results = json_object_get(doc, "results");
    if (!json_is_true(json_object_get(doc, "success")) || json_array_size(results) != count)
        abort();
    size_t succeeded = 0;
    for (size_t i = 0; i < count; i++) {
        const json_t *item = json_array_get(results, i);
        if (json_integer_value(json_object_get(item, "index")) != (json_int_t)i)
            abort(); /* every index once, in order */
        if (batch_item_succeeded(item))
            succeeded++;
        else if (!json_is_object(json_object_get(item, "error")))
            abort();
    }
    json_int_t total = json_integer_value(json_object_get(summary, "total"));
    json_int_t ok = json_integer_value(json_object_get(summary, "succeeded"));
    json_int_t failed = json_integer_value(json_object_get(summary, "failed"));
    if (total != (json_int_t)count || ok != (json_int_t)succeeded || ok + failed != total)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (doc == NULL)
        return 0;
    size_t count = json_array_size(doc); /* 0 for anything but an array */
    if (count > BATCH_MAX) {
        json_decref(doc);
        return 0;
    }
    enum batch_item_kind *kinds = calloc(count + 1, sizeof *kinds);
    json_t **results = calloc(count + 1, sizeof *results);
    if (kinds == NULL || results == NULL)
        abort();
    struct batch_split split;
    batch_split_init(&split, count);
    size_t sent_expected = 0;
    for (size_t i = 0; i < count; i++) {
        kinds[i] = (enum batch_item_kind)(byte_at(data, size, i * 7 + 3) % BATCH_ITEM_KINDS);
        batch_split_add(&split, i, kinds[i]);
        if (kinds[i] == BATCH_ITEM_UPSTREAM)
            sent_expected++;
        else if (kinds[i] == BATCH_ITEM_CACHED || kinds[i] == BATCH_ITEM_ATTACHED)
            results[i] = batch_item_success(i, json_array_get(doc, i), NULL); /* null credits */
        else
            results[i] = batch_item_failure(i, "RESOURCE_ALREADY_EXISTS", "local", NULL);
    }
    if (split.upstream_count != sent_expected || split.added != count)
        abort();
    json_t *sent = batch_split_body(&split, doc, NULL, NULL);
    if (json_array_size(sent) != split.upstream_count)
        abort();
    for (size_t j = 0; j < split.upstream_count; j++) {
        if ((j > 0 && split.upstream[j] <= split.upstream[j - 1]) ||
            !json_equal(json_array_get(sent, j), json_array_get(doc, split.upstream[j])))
            abort(); /* the sub-batch is the upstream items, in order */
    }
    json_t *answer = upstream_answer(sent, data, size);
    struct run run = {.split = &split, .kinds = kinds, .results = results};
    batch_split_match(&split, answer, on_settle, &run);
    json_t *merged_results = json_array();
    for (size_t i = 0; i < count; i++) {
        if (results[i] == NULL) /* sent, and not answered for */
            results[i] = batch_item_failure(i, "INTERNAL_SERVER_ERROR", "none", NULL);
        json_array_append_new(merged_results, results[i]);
    }
    json_t *merged = batch_merge(merged_results);
    check_merged(merged, count);
    char text[160];
    batch_split_describe(&split, text, sizeof text);
    json_decref(merged);
    json_decref(answer);
    json_decref(sent);
    batch_split_deinit(&split);
    free(results);
    free(kinds);
    json_decref(doc);
    return 0;
}
