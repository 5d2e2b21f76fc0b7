/* test_batch_split: the split and merge of an async batch (proxy/batch_split.c):
 * the index map, the sub-batch sent, the upstream's answer matched back
 * (reordered, missing, repeated and out-of-range indexes), the result items,
 * the merged answer's summary and the X-Proxy-Batch text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "batch_split.h"

struct settled {
    size_t count;
    size_t index[16];
    json_int_t tag[16]; /* the "tag" of the upstream entry settled */
};

static void on_settle(void *arg, size_t client_index, const json_t *result)
{
    struct settled *s = arg;
    assert_true(s->count < 16);
    s->index[s->count] = client_index;
    s->tag[s->count] = json_integer_value(json_object_get(result, "tag"));
    s->count++;
}

/* A split of 6 items: 0 and 3 and 5 upstream, the rest local. */
static void split_of_six(struct batch_split *s)
{
    static const enum batch_item_kind kinds[6] = {BATCH_ITEM_UPSTREAM,   BATCH_ITEM_CACHED,
                                                  BATCH_ITEM_ATTACHED,   BATCH_ITEM_UPSTREAM,
                                                  BATCH_ITEM_KEY_REUSED, BATCH_ITEM_UPSTREAM};
    batch_split_init(s, 6);
    for (size_t i = 0; i < 6; i++)
        batch_split_add(s, i, kinds[i]);
}

static void index_map_keeps_order(void **state)
{
    (void)state;
    struct batch_split s;
    split_of_six(&s);
    assert_int_equal(s.added, 6);
    assert_int_equal(s.upstream_count, 3);
    assert_int_equal(s.upstream[0], 0);
    assert_int_equal(s.upstream[1], 3);
    assert_int_equal(s.upstream[2], 5);
    assert_int_equal(s.kinds[BATCH_ITEM_UPSTREAM], 3);
    assert_int_equal(s.kinds[BATCH_ITEM_CACHED], 1);
    batch_split_deinit(&s);
}

static json_t *tag_item(void *arg, json_t *item)
{
    (void)arg;
    json_t *copy = json_copy(item);
    json_object_set_new(copy, "sent", json_true());
    return copy;
}

static void body_holds_upstream_items_in_order(void **state)
{
    (void)state;
    struct batch_split s;
    split_of_six(&s);
    json_t *doc =
        json_loads("[{\"n\":0},{\"n\":1},{\"n\":2},{\"n\":3},{\"n\":4},{\"n\":5}]", 0, NULL);
    json_t *sent = batch_split_body(&s, doc, NULL, NULL);
    assert_int_equal(json_array_size(sent), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(sent, 1), "n")), 3);
    assert_ptr_equal(json_array_get(sent, 2), json_array_get(doc, 5)); /* as is */
    json_decref(sent);
    sent = batch_split_body(&s, doc, tag_item, NULL);
    assert_true(json_is_true(json_object_get(json_array_get(sent, 0), "sent")));
    assert_null(json_object_get(json_array_get(doc, 0), "sent")); /* the client's stays */
    json_decref(sent);
    json_decref(doc);
    batch_split_deinit(&s);
}

/* What batch_split_match settles for the upstream's results (JSON text). */
static struct settled match(const struct batch_split *s, const char *results_text)
{
    json_t *results = json_loads(results_text, JSON_DECODE_ANY, NULL);
    assert_non_null(results);
    struct settled got = {0};
    batch_split_match(s, results, on_settle, &got);
    json_decref(results);
    return got;
}

static void match_follows_upstream_index(void **state)
{
    (void)state;
    struct batch_split s;
    split_of_six(&s);
    /* Reordered, one repeated (the second is skipped), one out of range, one
     * negative, one without an index (its position, 4: out of range). */
    struct settled got = match(&s, "[{\"index\":2,\"tag\":10},{\"index\":0,\"tag\":11},"
                                   "{\"index\":2,\"tag\":12},{\"index\":3,\"tag\":13},"
                                   "{\"index\":-1,\"tag\":14},{\"tag\":15}]");
    assert_int_equal(got.count, 2);
    assert_int_equal(got.index[0], 5);
    assert_int_equal(got.tag[0], 10);
    assert_int_equal(got.index[1], 0);
    assert_int_equal(got.tag[1], 11);

    /* No indexes: positions; a non-object entry counts by its position. */
    got = match(&s, "[7,{\"tag\":21},{\"index\":\"0\",\"tag\":22}]");
    assert_int_equal(got.count, 3);
    assert_int_equal(got.index[0], 0);
    assert_int_equal(got.index[1], 3);
    assert_int_equal(got.index[2], 5);
    assert_int_equal(got.tag[2], 22);

    /* Not an array: nothing. */
    assert_int_equal(match(&s, "{\"index\":0}").count, 0);
    assert_int_equal(match(&s, "null").count, 0);
    batch_split_deinit(&s);
}

static void items_from_upstream(void **state)
{
    (void)state;
    json_t *ok = json_loads("{\"success\":true,\"index\":0,\"task\":{\"id\":\"t\"},\"credits\":{}}",
                            0, NULL);
    json_t *item = batch_item_from_upstream(ok, 4);
    assert_true(batch_item_succeeded(item));
    assert_int_equal(json_integer_value(json_object_get(item, "index")), 4);
    assert_int_equal(json_integer_value(json_object_get(ok, "index")), 0); /* a copy */
    json_decref(item);
    json_decref(ok);

    json_t *bad = json_loads(
        "{\"success\":false,\"index\":1,\"error\":{\"code\":\"VALIDATION_ERROR\"}}", 0, NULL);
    item = batch_item_from_upstream(bad, 2);
    assert_false(batch_item_succeeded(item));
    assert_string_equal(json_string_value(json_object_get(json_object_get(item, "error"), "code")),
                        "VALIDATION_ERROR");
    assert_int_equal(json_integer_value(json_object_get(item, "index")), 2);
    json_decref(item);
    json_decref(bad);

    /* success without a task, or neither: the proxy's own error. */
    json_t *odd = json_loads("{\"success\":true}", 0, NULL);
    item = batch_item_from_upstream(odd, 3);
    assert_false(batch_item_succeeded(item));
    json_t *error = json_object_get(item, "error");
    assert_string_equal(json_string_value(json_object_get(error, "code")), "INTERNAL_SERVER_ERROR");
    assert_non_null(json_string_value(json_object_get(error, "timestamp")));
    json_decref(item);
    json_decref(odd);
    item = batch_item_from_upstream(NULL, 0);
    assert_false(batch_item_succeeded(item));
    json_decref(item);
}

static void merge_recomputes_summary(void **state)
{
    (void)state;
    json_t *task = json_pack("{s:s}", "id", "t1");
    json_t *credits = json_pack("{s:i}", "creditsToCharge", 5);
    json_t *results = json_array();
    json_array_append_new(results, batch_item_success(0, task, credits));
    json_array_append_new(results,
                          batch_item_failure(1, "RESOURCE_ALREADY_EXISTS", "Task already exists",
                                             json_pack("{s:s}", "field", "idempotencyKey")));
    json_array_append_new(results, batch_item_success(2, task, credits));
    json_t *doc = batch_merge(results);
    assert_true(json_is_true(json_object_get(doc, "success")));
    json_t *summary = json_object_get(doc, "summary");
    assert_int_equal(json_integer_value(json_object_get(summary, "total")), 3);
    assert_int_equal(json_integer_value(json_object_get(summary, "succeeded")), 2);
    assert_int_equal(json_integer_value(json_object_get(summary, "failed")), 1);
    json_t *merged = json_object_get(doc, "results");
    assert_int_equal(json_array_size(merged), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(merged, i), "index")),
                         i);
    json_t *failure = json_array_get(merged, 1);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(failure, "error"), "details"), "field")),
        "idempotencyKey");
    json_decref(doc);
    json_decref(task);
    json_decref(credits);

    doc = batch_merge(json_array());
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "summary"), "total")),
                     0);
    json_decref(doc);
}

static void describe_names_each_kind(void **state)
{
    (void)state;
    struct batch_split s;
    split_of_six(&s);
    char text[160];
    batch_split_describe(&s, text, sizeof text);
    assert_string_equal(text, "cached=1; attached=1; duplicate=0; upstream=3; reused=1");
    batch_split_deinit(&s);

    batch_split_init(&s, 3);
    batch_split_add(&s, 0, BATCH_ITEM_OFFLINE);
    batch_split_add(&s, 1, BATCH_ITEM_DUPLICATE);
    batch_split_add(&s, 2, BATCH_ITEM_OFFLINE);
    batch_split_describe(&s, text, sizeof text);
    assert_string_equal(text, "cached=0; attached=0; duplicate=1; upstream=0; reused=0; offline=2");
    batch_split_describe(&s, text, 10); /* truncated, terminated */
    assert_string_equal(text, "cached=0;");
    batch_split_deinit(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(index_map_keeps_order),
        cmocka_unit_test(body_holds_upstream_items_in_order),
        cmocka_unit_test(match_follows_upstream_index),
        cmocka_unit_test(items_from_upstream),
        cmocka_unit_test(merge_recomputes_summary),
        cmocka_unit_test(describe_names_each_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
