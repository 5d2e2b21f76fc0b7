/* test_task_retention.c: the prune of task records past task_retention on a
 * real store, with the proxy's own judge (task_retention.h): ended records
 * older than the cut go with their idempotency index entries; open ones,
 * recent ones, unended ones and those with a webhook still due stay; the
 * walk goes in bounded txns (cache_store_prune_tasks) and through the
 * writer thread (cache_writer_task_prune), and counts what it deleted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "key.h"
#include "store.h"
#include "store_fixture.h"
#include "task_retention.h"
#include "writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DAY_MS (INT64_C(86400) * 1000)
#define NOW_MS INT64_C(1795000000000) /* 2026-11-18 */
#define MIB    (1024u * 1024u)

static const struct task_retention_rule rule = {NOW_MS - DAY_MS, 5};

/* A task record as tasks.c stores it: status, createdAt (days ago),
 * endedMs (ms ago; < 0: none), idempotencyKey (NULL: none), hook (NULL:
 * none), and a raw cached answer after a NUL when raw is true. */
static char *record(const char *id, const char *status, int created_days_ago, int64_t ended_ago,
                    const char *idem, const char *hook, bool raw, size_t *len)
{
    char created[32], ended[48] = "", idem_field[96] = "null", hook_field[160] = "";
    time_t t = (time_t)((NOW_MS - created_days_ago * DAY_MS) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    if (ended_ago >= 0)
        snprintf(ended, sizeof ended, ",\"endedMs\":%lld", (long long)(NOW_MS - ended_ago));
    if (idem != NULL)
        snprintf(idem_field, sizeof idem_field, "\"%s\"", idem);
    if (hook != NULL)
        snprintf(hook_field, sizeof hook_field, ",\"hook\":%s", hook);
    char *text = NULL;
    int n = asprintf(&text,
                     "{\"task\":{\"id\":\"%s\",\"status\":\"%s\",\"createdAt\":\"%s\","
                     "\"idempotencyKey\":%s},\"credits\":{},\"origin\":\"upstream\"%s%s}%c%s",
                     id, status, created, idem_field, ended, hook_field, '\0',
                     raw ? "{\"success\":true,\"result\":{}}" : "");
    assert_true(n > 0);
    *len = raw ? (size_t)n : strlen(text);
    return text;
}

static void put_task(struct cache_store *s, const char *id, char *rec, size_t len, bool open)
{
    struct cache_op op = {.kind = CACHE_OP_TASK,
                          .record = (const unsigned char *)rec,
                          .record_len = len,
                          .open = open};
    cache_task_key("id", id, op.key);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
    assert_int_equal(r.applied, 1);
    free(rec);
}

/* The index entry tasks.c writes for an idempotencyKey. */
static void put_index(struct cache_store *s, const char *idem, const char *id)
{
    struct cache_op op = {
        .kind = CACHE_OP_TASK, .record = (const unsigned char *)id, .record_len = strlen(id)};
    cache_task_key("idem", idem, op.key);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
}

static bool has(struct cache_store *s, const char *domain, const char *text)
{
    unsigned char key[CACHE_KEY_BYTES], *data = NULL;
    size_t len = 0;
    cache_task_key(domain, text, key);
    enum cache_get_result got = cache_store_get_task(s, key, &data, &len);
    free(data);
    return got == CACHE_GET_FOUND;
}

static const char *const hook_due = "{\"url\":\"http://127.0.0.1:9/h\",\"mode\":\"proxy\","
                                    "\"attempts\":1,\"delivered\":false}";
static const char *const hook_delivered = "{\"url\":\"http://127.0.0.1:9/h\",\"mode\":\"proxy\","
                                          "\"attempts\":1,\"delivered\":true}";
static const char *const hook_given_up = "{\"url\":\"http://127.0.0.1:9/h\",\"mode\":\"proxy\","
                                         "\"attempts\":5,\"delivered\":false}";

/* Nine records and two index entries; five records and one entry must go. */
static void fill(struct cache_store *s)
{
    const struct { /* not static: the hooks are objects, not constants */
        const char *id, *status;
        int created_days_ago;
        int64_t ended_ago; /* < 0: no endedMs */
        const char *idem, *hook;
        bool raw, open;
    } rows[] = {
        /* Pruned: */
        {"old-done", "COMPLETED", 3, 2 * DAY_MS, "idem-old", NULL, false, false},
        {"old-failed-no-end", "FAILED", 10, -1, NULL, NULL, false, false},
        {"old-raw", "COMPLETED", 3, 3 * DAY_MS, NULL, NULL, true, false},
        {"old-delivered", "COMPLETED", 3, 2 * DAY_MS, NULL, hook_delivered, false, false},
        {"old-given-up", "FAILED", 3, 2 * DAY_MS, NULL, hook_given_up, false, false},
        /* Kept: */
        {"recent", "COMPLETED", 3, DAY_MS / 2, "idem-recent", NULL, false, false},
        {"old-running", "RUNNING", 5, -1, NULL, NULL, false, false},
        {"old-open", "COMPLETED", 3, 2 * DAY_MS, NULL, NULL, false, true},
        {"old-hook-due", "COMPLETED", 3, 2 * DAY_MS, NULL, hook_due, false, false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t len;
        char *r = record(rows[i].id, rows[i].status, rows[i].created_days_ago, rows[i].ended_ago,
                         rows[i].idem, rows[i].hook, rows[i].raw, &len);
        put_task(s, rows[i].id, r, len, rows[i].open);
        if (rows[i].idem != NULL)
            put_index(s, rows[i].idem, rows[i].id);
    }
}

static void assert_pruned(struct cache_store *s, uint64_t more)
{
    static const char *const gone[] = {"old-done", "old-failed-no-end", "old-raw", "old-delivered",
                                       "old-given-up"};
    static const char *const kept[] = {"recent", "old-running", "old-open", "old-hook-due"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        if (has(s, "id", gone[i]))
            fail_msg("'%s' was not pruned", gone[i]);
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        if (!has(s, "id", kept[i]))
            fail_msg("'%s' was pruned", kept[i]);
    assert_false(has(s, "idem", "idem-old"));
    assert_true(has(s, "idem", "idem-recent"));
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.tasks, 5 + more); /* four records and one index entry */
    assert_int_equal(st.tasks_open, 1);   /* old-open */
    assert_int_equal(st.tasks_pruned, 5);
}

/* Two records a txn: the walk resumes where it stopped, over five txns or
 * more for 11 rows. */
static void test_prune_in_batches(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = store_fixture_open(f->dir, 16 * MIB);
    fill(s);
    unsigned char resume[CACHE_KEY_BYTES] = {0};
    bool resumed = false;
    uint64_t pruned = 0, total = 0;
    int txns = 0;
    do {
        assert_int_equal(
            cache_store_prune_tasks(s, task_retention_judge, &rule, 2, resume, &resumed, &pruned),
            0);
        total += pruned;
        txns++;
        assert_true(txns <= 20);
    } while (resumed);
    assert_int_equal(total, 5);
    assert_true(txns >= 5); /* (a deleted index entry ahead is not walked) */
    assert_pruned(s, 0);
    /* Again: nothing more goes, the counter stays. */
    assert_int_equal(
        cache_store_prune_tasks(s, task_retention_judge, &rule, 100, resume, &resumed, &pruned), 0);
    assert_int_equal(pruned, 0);
    assert_false(resumed);
    assert_pruned(s, 0);
    cache_store_close(s);
}

/* Through the writer, as the proxy's tick starts it: at most once an hour,
 * never with retention 0; the walk of more records than one txn takes ends
 * by itself. */
static void test_prune_through_writer(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = store_fixture_open(f->dir, 16 * MIB);
    fill(s);
    enum { MORE = 2 * CACHE_WRITER_PRUNE_BATCH };
    for (unsigned i = 0; i < MORE; i++) { /* recent: kept */
        char id[32];
        size_t len;
        snprintf(id, sizeof id, "recent-%u", i);
        char *r = record(id, "COMPLETED", 0, 1000, NULL, NULL, false, &len);
        put_task(s, id, r, len, false);
    }
    struct cache_writer *w = cache_writer_start(s, 1000);
    assert_non_null(w);
    int64_t last = 0;
    assert_false(task_retention_tick(w, 0, 5, NOW_MS, &last)); /* 0: for good */
    assert_true(last == 0);
    assert_true(task_retention_tick(w, DAY_MS, 5, NOW_MS, &last));
    assert_true(last == NOW_MS);
    assert_false(task_retention_tick(w, DAY_MS, 5, NOW_MS + 1000, &last)); /* within the hour */
    struct cache_writer_stats ws;
    for (int i = 0; i < 2000; i++) { /* the writer's walk ends by itself */
        cache_writer_stats(w, &ws);
        if (ws.tasks_pruned == 5 &&
            cache_writer_task_prune(w, task_retention_judge, &rule, sizeof rule))
            break; /* a new prune can start: the first one ended */
        usleep(5000);
    }
    assert_int_equal(ws.tasks_pruned, 5);
    cache_writer_stop(w);
    assert_pruned(s, MORE);
    cache_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prune_in_batches, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_prune_through_writer, store_fixture_setup,
                                        store_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
