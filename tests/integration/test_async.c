/* test_async.c: async tasks, batches and webhooks through the proxy, on the
 * wire. A prompt answered once (sync or async) is never paid again: a
 * resubmission is a task COMPLETED at once, an identical task submitted while
 * one is open follows it, a batch is split (cached, duplicates, invalid,
 * reused idempotencyKeys answered or merged locally) and only the rest goes
 * upstream in one call. The proxy follows its tasks by itself, keeps their
 * results past cloro's retention, answers many pollers with few upstream
 * polls, and delivers signed webhooks itself, with retries that survive a
 * restart.
 *
 * Each test starts its own fake upstream, webhook receiver and proxy, so
 * tasks still running from one test never count in another. */
#include "driver.h"
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY    "sk_live_async0001"
#define SECRET "whsec_asynctest"

static struct proc fake, receiver, proxy, second;
static char cache_dir_root[64];
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, "CLORO_WEBHOOK_SECRET=" SECRET, NULL};

/* Fake, receiver and a proxy with fast polls and webhook retries. extra:
 * more proxy flags (NULL-terminated), or NULL. */
static void start_all(const char *task_duration_ms, const char *const extra[])
{
    const char *fake_args[] = {"--api-key",
                               KEY,
                               "--log-level",
                               "warn",
                               "--concurrency-limit",
                               "200",
                               "--task-duration-ms",
                               task_duration_ms,
                               NULL};
    assert_int_equal(proc_start_fake(&fake, fake_args), 0);
    const char *recv_args[] = {WEBHOOK_RECEIVER_BIN, "--port", "0", "--secret", SECRET, NULL};
    assert_int_equal(proc_start(&receiver, "receiver", recv_args, NULL), 0);
    snprintf(cache_dir_root, sizeof cache_dir_root, "/tmp/cloro-it-async-XXXXXX");
    assert_non_null(mkdtemp(cache_dir_root));
    char cache_dir[96];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", cache_dir_root);
    const char *args[24] = {"--cache-dir",       cache_dir, "--poll-initial",       "250ms",
                            "--poll-interval",   "400ms",   "--webhook-retry-base", "300ms",
                            "--webhook-timeout", "2s",      "--max-concurrency",    "50"};
    size_t n = 12;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    assert_int_equal(proc_start_proxy(&proxy, fake.url, args, proxy_env), 0);
}

static int stop_all(void **state)
{
    (void)state;
    struct proc *all[] = {&second, &proxy, &receiver, &fake};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (all[i]->pid > 0 || all[i]->dir[0] != '\0')
            proc_stop(all[i]);
        memset(all[i], 0, sizeof *all[i]);
    }
    if (cache_dir_root[0] != '\0')
        remove_tree(cache_dir_root);
    cache_dir_root[0] = '\0';
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static json_t *dig(json_t *root, const char *dotted)
{
    return json_dig(root, dotted);
}

static const char *dig_str(json_t *root, const char *dotted)
{
    return json_string_value(json_dig(root, dotted));
}

static char *task_body(const char *prompt, const char *extra_fields)
{
    char *body = NULL;
    if (asprintf(&body,
                 "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"%s\",\"country\":\"US\"}%s}",
                 prompt, extra_fields != NULL ? extra_fields : "") < 0)
        abort();
    return body;
}

/* POSTs a task; the parsed answer (new reference) and its reply. */
static json_t *submit(const struct proc *p, const char *body, struct http_reply *reply)
{
    http_post(p, "/v1/async/task", body, NULL, reply);
    return http_json(reply);
}

static json_t *get_task(const struct proc *p, const char *id, long *status)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", id);
    struct http_reply r;
    http_get(p, path, &r);
    *status = r.status;
    json_t *doc = http_json(&r);
    http_reply_free(&r);
    return doc;
}

/* Polls GET /v1/async/task/{id} through p until it reads status; the last
 * answer (new reference). */
static json_t *wait_task(const struct proc *p, const char *id, const char *status, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        long code;
        json_t *doc = get_task(p, id, &code);
        const char *s = dig_str(doc, "task.status");
        if (code == 200 && s != NULL && strcmp(s, status) == 0)
            return doc;
        if (now_ms() > deadline) {
            char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
            print_message("task %s is not %s after %d ms: status %ld, %s\n", id, status, timeout_ms,
                          code, text != NULL ? text : "(no JSON)");
            free(text);
            return doc;
        }
        json_decref(doc);
        sleep_ms(50);
    }
}

static json_t *receiver_deliveries(void)
{
    struct http_reply r;
    http_get(&receiver, "/_recv/deliveries", &r);
    json_t *doc = http_json(&r);
    http_reply_free(&r);
    return doc;
}

static void receiver_configure(const char *json)
{
    struct http_reply r;
    http_post(&receiver, "/_recv/config", json, NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
}

/* Waits until the receiver holds at least n deliveries; the list. */
static json_t *wait_deliveries(size_t n, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        json_t *doc = receiver_deliveries();
        if (json_array_size(json_object_get(doc, "deliveries")) >= n || now_ms() > deadline)
            return doc;
        json_decref(doc);
        sleep_ms(50);
    }
}

static char *hook_field(const char *name)
{
    char *field = NULL;
    if (asprintf(&field, ",\"webhook\":{\"url\":\"%s/hook/%s\"}", receiver.url, name) < 0)
        abort();
    return field;
}

/* ---- tests ------------------------------------------------------------------- */

/* Submit, poll to completion; the same prompt again (written differently) is
 * a task COMPLETED at once with no upstream call, and a sync call for it is a
 * hit too. */
static void test_resubmission_is_answered_from_the_cache(void **state)
{
    (void)state;
    start_all("300", NULL);
    char *body = task_body("async resubmit", NULL);
    struct http_reply r;
    json_t *doc = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "MISS");
    assert_string_equal(dig_str(doc, "task.status"), "QUEUED");
    char id[64];
    snprintf(id, sizeof id, "%s", dig_str(doc, "task.id"));
    assert_true(is_uuid(id));
    json_decref(doc);
    http_reply_free(&r);
    free(body);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);

    json_t *done = wait_task(&proxy, id, "COMPLETED", 5000);
    assert_string_equal(dig_str(done, "task.status"), "COMPLETED");
    json_t *response = dig(done, "response");
    assert_non_null(dig_str(done, "response.text"));
    json_int_t charged = json_integer_value(dig(done, "credits.creditsCharged"));
    assert_true(charged > 0);

    /* Same question, keys in another order, another priority and key. */
    const char *again =
        "{\"priority\":3,\"idempotencyKey\":\"resubmit-2\",\"payload\":{\"country\":"
        "\"US\",\"prompt\":\"async resubmit\"},\"taskType\":\"CHATGPT\"}";
    json_t *hit = submit(&proxy, again, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    char saved[32];
    snprintf(saved, sizeof saved, "%lld", (long long)charged);
    assert_string_equal(http_header(&r, "X-Credits-Saved"), saved);
    assert_string_equal(http_header(&r, "X-Credits-Saved-By"), "cache");
    assert_string_equal(dig_str(hit, "task.status"), "COMPLETED");
    assert_int_equal(json_integer_value(dig(hit, "task.priority")), 3);
    assert_string_equal(dig_str(hit, "task.idempotencyKey"), "resubmit-2");
    assert_int_equal(json_integer_value(dig(hit, "credits.creditsCharged")), 0);
    char id2[64];
    snprintf(id2, sizeof id2, "%s", dig_str(hit, "task.id"));
    assert_string_not_equal(id, id2);
    json_decref(hit);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);

    /* The local task answers polls with the same response. */
    long code;
    json_t *local = get_task(&proxy, id2, &code);
    assert_int_equal(code, 200);
    assert_string_equal(dig_str(local, "task.status"), "COMPLETED");
    assert_true(json_equal(dig(local, "response"), response));
    json_decref(local);

    /* A sync call for the prompt is a hit. */
    http_post(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"async resubmit\",\"country\":\"US\"}",
              NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    json_t *sync = http_json(&r);
    assert_true(json_equal(dig(sync, "result"), response));
    json_decref(sync);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 0);
    json_decref(done);

    /* A reused idempotencyKey is cloro's 409, made by the proxy. */
    json_t *conflict = submit(&proxy, again, &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(http_error_code(&r), "RESOURCE_ALREADY_EXISTS");
    assert_string_equal(dig_str(conflict, "error.details.value"), "resubmit-2");
    json_decref(conflict);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);
}

/* A second identical task while the first runs follows it: one upstream
 * task, two client tasks, the same answer, the follower charged nothing. */
static void test_identical_task_attaches_to_the_open_one(void **state)
{
    (void)state;
    start_all("1200", NULL);
    char *body = task_body("async attach", NULL);
    struct http_reply r;
    json_t *first = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    char *body2 = task_body("async attach", ",\"idempotencyKey\":\"attach-2\"");
    json_t *follower = submit(&proxy, body2, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "COALESCED");
    assert_string_equal(dig_str(follower, "task.status"), "QUEUED");
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);

    json_t *a = wait_task(&proxy, dig_str(first, "task.id"), "COMPLETED", 6000);
    json_t *b = wait_task(&proxy, dig_str(follower, "task.id"), "COMPLETED", 6000);
    assert_string_equal(dig_str(a, "task.status"), "COMPLETED");
    assert_string_equal(dig_str(b, "task.status"), "COMPLETED");
    assert_true(json_equal(dig(a, "response"), dig(b, "response")));
    assert_string_equal(dig_str(b, "task.idempotencyKey"), "attach-2");
    assert_int_equal(json_integer_value(dig(b, "credits.creditsCharged")), 0);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);
    json_decref(a);
    json_decref(b);
    json_decref(first);
    json_decref(follower);
    free(body);
    free(body2);
}

enum kind { K_CACHED, K_DUP, K_INVALID, K_REUSED, K_NEW };

/* 500 tasks: 200 cached, 50 in 25 identical pairs, 10 invalid, 5 with a
 * reused idempotencyKey, 235 new: the fake receives one batch of 270 (the
 * new, one of each pair, the invalid ones for cloro to judge), the client 500
 * results in order with the right codes. */
static void test_batch_is_split_and_merged(void **state)
{
    (void)state;
    start_all("200", NULL);
    /* 200 prompts answered (sync) beforehand. */
    struct driver d;
    driver_init(&d, 200);
    for (int i = 0; i < 200; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"prompt\":\"batch cached %d\",\"country\":\"US\"}", i);
        driver_add(&d, &proxy, "/v1/monitor/chatgpt", body, 0, NULL, 20000);
    }
    assert_true(driver_finish(&d, 30000));
    for (int i = 0; i < 200; i++)
        assert_int_equal(d.calls[i].reply.status, 200);
    driver_free(&d);
    /* 5 idempotencyKeys bound by earlier (cached, local) submissions. */
    for (int i = 0; i < 5; i++) {
        char prompt[64], field[64];
        snprintf(prompt, sizeof prompt, "batch cached %d", i);
        snprintf(field, sizeof field, ",\"idempotencyKey\":\"taken-%d\"", i);
        char *body = task_body(prompt, field);
        struct http_reply r;
        json_t *doc = submit(&proxy, body, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(http_header(&r, "X-Cache"), "HIT");
        json_decref(doc);
        http_reply_free(&r);
        free(body);
    }
    fake_reset(&fake);

    enum kind kinds[500];
    int n = 0;
    for (int i = 0; i < 200; i++)
        kinds[n++] = K_CACHED;
    for (int i = 0; i < 50; i++)
        kinds[n++] = K_DUP;
    for (int i = 0; i < 10; i++)
        kinds[n++] = K_INVALID;
    for (int i = 0; i < 5; i++)
        kinds[n++] = K_REUSED;
    while (n < 500)
        kinds[n++] = K_NEW;
    unsigned seed = 12345;
    for (int i = 499; i > 0; i--) { /* Fisher-Yates with a fixed LCG */
        seed = seed * 1103515245u + 12345u;
        int j = (int)((seed >> 8) % (unsigned)(i + 1));
        enum kind t = kinds[i];
        kinds[i] = kinds[j];
        kinds[j] = t;
    }
    static const char *const invalid[] = {
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"inv0\",\"country\":\"US\"},"
        "\"priority\":11}",
        "{\"taskType\":\"NOPE\",\"payload\":{\"prompt\":\"inv1\",\"country\":\"US\"}}",
        "{\"taskType\":\"CHATGPT\"}",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"country\":\"US\"}}",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"inv4\",\"country\":\"US\"},"
        "\"extra\":1}",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"\",\"country\":\"US\"}}",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"inv6\",\"country\":\"us\"}}",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"inv7\",\"country\":\"US\","
        "\"bogus\":true}}",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"inv8\",\"country\":\"US\"},"
        "\"webhook\":{}}",
        "7",
    };
    json_t *batch = json_array();
    int cached = 0, dup = 0, inv = 0, reused = 0, fresh = 0;
    for (int i = 0; i < 500; i++) {
        char prompt[64], field[64];
        char *body = NULL;
        switch (kinds[i]) {
        case K_CACHED:
            snprintf(prompt, sizeof prompt, "batch cached %d", cached++);
            body = task_body(prompt, NULL);
            break;
        case K_DUP:
            snprintf(prompt, sizeof prompt, "batch pair %d", dup++ / 2);
            body = task_body(prompt, NULL);
            break;
        case K_INVALID:
            body = strdup(invalid[inv++]);
            break;
        case K_REUSED:
            snprintf(prompt, sizeof prompt, "batch reused %d", reused);
            snprintf(field, sizeof field, ",\"idempotencyKey\":\"taken-%d\"", reused++);
            body = task_body(prompt, field);
            break;
        case K_NEW:
            snprintf(prompt, sizeof prompt, "batch new %d", fresh++);
            body = task_body(prompt, NULL);
            break;
        }
        json_error_t err;
        json_t *item = json_loads(body, JSON_DECODE_ANY, &err);
        assert_non_null(item);
        json_array_append_new(batch, item);
        free(body);
    }
    char *text = json_dumps(batch, JSON_COMPACT);
    json_decref(batch);
    struct http_reply r;
    http_post(&proxy, "/v1/async/task/batch", text, NULL, &r);
    free(text);
    assert_int_equal(r.status, 200);
    json_t *doc = http_json(&r);
    http_reply_free(&r);
    assert_true(json_is_true(json_object_get(doc, "success")));
    assert_int_equal(json_integer_value(dig(doc, "summary.total")), 500);
    assert_int_equal(json_integer_value(dig(doc, "summary.succeeded")), 485);
    assert_int_equal(json_integer_value(dig(doc, "summary.failed")), 15);
    json_t *results = json_object_get(doc, "results");
    assert_int_equal(json_array_size(results), 500);
    json_t *ids = json_object();
    for (size_t i = 0; i < 500; i++) {
        json_t *res = json_array_get(results, i);
        assert_int_equal(json_integer_value(json_object_get(res, "index")), (json_int_t)i);
        bool ok = json_is_true(json_object_get(res, "success"));
        const char *code = dig_str(res, "error.code");
        switch (kinds[i]) {
        case K_CACHED:
            assert_true(ok);
            assert_string_equal(dig_str(res, "task.status"), "COMPLETED");
            break;
        case K_DUP:
        case K_NEW:
            assert_true(ok);
            assert_string_equal(dig_str(res, "task.status"), "QUEUED");
            break;
        case K_INVALID:
            assert_false(ok);
            assert_string_equal(code, "VALIDATION_ERROR");
            break;
        case K_REUSED:
            assert_false(ok);
            assert_string_equal(code, "RESOURCE_ALREADY_EXISTS");
            assert_non_null(strstr(dig_str(res, "error.details.value"), "taken-"));
            break;
        }
        if (ok) {
            const char *id = dig_str(res, "task.id");
            assert_true(is_uuid(id));
            assert_null(json_object_get(ids, id)); /* every task its own id */
            json_object_set_new(ids, id, json_true());
        }
    }
    json_decref(ids);
    assert_int_equal(fake_stat(&fake, "async.batch_calls"), 1);
    json_t *fs = fake_stats(&fake);
    json_t *sizes = dig(fs, "async.batch_sizes");
    assert_int_equal(json_array_size(sizes), 1);
    assert_int_equal(json_integer_value(json_array_get(sizes, 0)), 235 + 25 + 10);
    assert_int_equal(json_integer_value(dig(fs, "async.tasks_created")), 235 + 25);
    assert_int_equal(json_integer_value(dig(fs, "async.creates")), 0);
    assert_null(dig(fs, "requests./v1/monitor/chatgpt"));
    json_decref(fs);

    /* Both tasks of a pair end with the same answer. */
    const char *pair_ids[2] = {NULL, NULL};
    for (size_t i = 0, found = 0; i < 500 && found < 2; i++) {
        if (kinds[i] != K_DUP)
            continue;
        /* The first two K_DUP items are pair 0 (prompts are numbered in order). */
        pair_ids[found++] = dig_str(json_array_get(results, i), "task.id");
    }
    json_t *a = wait_task(&proxy, pair_ids[0], "COMPLETED", 10000);
    json_t *b = wait_task(&proxy, pair_ids[1], "COMPLETED", 10000);
    assert_string_equal(dig_str(a, "task.status"), "COMPLETED");
    assert_string_equal(dig_str(b, "task.status"), "COMPLETED");
    assert_true(json_equal(dig(a, "response"), dig(b, "response")));
    json_decref(a);
    json_decref(b);
    json_decref(doc);
}

/* The proxy follows its task to the end without any client polling, and
 * answers for it after the upstream forgot it. */
static void test_result_outlives_upstream_retention(void **state)
{
    (void)state;
    start_all("200", NULL);
    fake_configure(&fake, "{\"task_retention_s\":1}");
    char *body = task_body("async retention", NULL);
    struct http_reply r;
    json_t *doc = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    char id[64];
    snprintf(id, sizeof id, "%s", dig_str(doc, "task.id"));
    json_decref(doc);
    free(body);
    assert_int_equal(proxy_wait_counter(&proxy, "tasks.completed", 1, 5000), 1);
    sleep_ms(1600);
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", id);
    const char *auth[] = {"Authorization: Bearer " KEY, NULL};
    char *url = proc_url(&fake, path);
    http_call("GET", url, NULL, auth, &r);
    free(url);
    assert_int_equal(r.status, 404); /* the upstream forgot it */
    http_reply_free(&r);
    long long polls = fake_stat(&fake, "async.task_polls");
    long code;
    json_t *kept = get_task(&proxy, id, &code);
    assert_int_equal(code, 200);
    assert_string_equal(dig_str(kept, "task.status"), "COMPLETED");
    assert_non_null(dig_str(kept, "response.text"));
    json_decref(kept);
    assert_int_equal(fake_stat(&fake, "async.task_polls"), polls);
    /* And the sync call for the prompt is a hit. */
    http_post(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"async retention\",\"country\":\"US\"}",
              NULL, &r);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    http_reply_free(&r);
}

/* Signed webhooks from the proxy: retried after a receiver failure, never
 * handed to the upstream, and sent for local (cached) completions too. */
static void test_webhook_signed_and_retried(void **state)
{
    (void)state;
    start_all("200", NULL);
    receiver_configure("{\"fail_next\":1,\"status\":503}");
    char *hook = hook_field("first");
    char *body = task_body("async webhook", hook);
    struct http_reply r;
    json_t *doc = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    char id[64];
    snprintf(id, sizeof id, "%s", dig_str(doc, "task.id"));
    json_decref(doc);

    json_t *got = wait_deliveries(2, 8000);
    json_t *list = json_object_get(got, "deliveries");
    assert_int_equal(json_array_size(list), 2);
    json_t *d1 = json_array_get(list, 0), *d2 = json_array_get(list, 1);
    assert_int_equal(json_integer_value(json_object_get(d1, "status")), 503);
    assert_int_equal(json_integer_value(json_object_get(d2, "status")), 200);
    char wid[80];
    snprintf(wid, sizeof wid, "%s-1", id);
    assert_string_equal(dig_str(d1, "webhook_id"), wid);
    snprintf(wid, sizeof wid, "%s-2", id);
    assert_string_equal(dig_str(d2, "webhook_id"), wid);
    assert_true(json_is_true(json_object_get(d1, "verified")));
    assert_true(json_is_true(json_object_get(d2, "verified")));
    assert_string_equal(dig_str(d2, "path"), "/hook/first");
    assert_string_equal(dig_str(d2, "body.task.id"), id);
    assert_string_equal(dig_str(d2, "body.task.status"), "COMPLETED");
    assert_non_null(dig_str(d2, "body.response.text"));
    assert_null(dig(d2, "body.webhook"));
    json_decref(got);
    assert_int_equal(fake_stat(&fake, "async.webhook_attempts"), 0);

    /* The task records the delivery. */
    json_t *task = wait_task(&proxy, id, "COMPLETED", 2000);
    long long deadline = now_ms() + 2000;
    while (!json_is_true(dig(task, "webhook.delivered")) && now_ms() < deadline) {
        json_decref(task);
        sleep_ms(50);
        task = wait_task(&proxy, id, "COMPLETED", 2000);
    }
    assert_true(json_is_true(dig(task, "webhook.delivered")));
    assert_non_null(dig_str(task, "webhook.deliveredAt"));
    json_decref(task);

    /* A cached completion is delivered the same way. */
    char *hook2 = hook_field("cached");
    char *body2 = task_body("async webhook", hook2);
    doc = submit(&proxy, body2, &r);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    http_reply_free(&r);
    got = wait_deliveries(3, 5000);
    json_t *d3 = json_array_get(json_object_get(got, "deliveries"), 2);
    assert_non_null(d3);
    assert_string_equal(dig_str(d3, "path"), "/hook/cached");
    assert_string_equal(dig_str(d3, "body.task.id"), dig_str(doc, "task.id"));
    assert_true(json_is_true(json_object_get(d3, "verified")));
    json_decref(got);
    json_decref(doc);
    free(hook);
    free(body);
    free(hook2);
    free(body2);
}

/* A delivery still owed when the proxy stops is made by the next one. */
static void test_webhook_delivered_after_restart(void **state)
{
    (void)state;
    const char *slow_retry[] = {"--webhook-retry-base", "1500ms", NULL};
    start_all("100", slow_retry);
    receiver_configure("{\"fail_next\":1000,\"status\":500}");
    char *hook = hook_field("restart");
    char *body = task_body("async restart", hook);
    struct http_reply r;
    json_t *doc = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    char id[64];
    snprintf(id, sizeof id, "%s", dig_str(doc, "task.id"));
    json_decref(doc);
    json_decref(wait_deliveries(1, 5000));
    proc_stop(&proxy);
    assert_int_equal(proxy.exit_status, 0);
    receiver_configure("{\"fail_next\":0}");

    char cache_dir[96];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", cache_dir_root);
    const char *args[] = {"--cache-dir", cache_dir, "--webhook-retry-base", "1500ms", NULL};
    assert_int_equal(proc_start_proxy(&second, fake.url, args, proxy_env), 0);
    long long deadline = now_ms() + 8000;
    json_t *ok = NULL;
    while (ok == NULL && now_ms() < deadline) {
        json_t *got = receiver_deliveries();
        size_t i;
        json_t *dv;
        json_array_foreach(json_object_get(got, "deliveries"), i, dv)
        {
            if (json_integer_value(json_object_get(dv, "status")) == 200)
                ok = json_deep_copy(dv);
        }
        json_decref(got);
        if (ok == NULL)
            sleep_ms(100);
    }
    assert_non_null(ok);
    assert_string_equal(dig_str(ok, "body.task.id"), id);
    char wid[80];
    snprintf(wid, sizeof wid, "%s-2", id); /* attempt numbers carry over */
    assert_string_equal(dig_str(ok, "webhook_id"), wid);
    json_decref(ok);
    long code;
    json_t *task = get_task(&second, id, &code);
    assert_int_equal(code, 200);
    assert_true(json_is_true(dig(task, "webhook.delivered")));
    json_decref(task);
    free(hook);
    free(body);
}

/* 50 clients polling one running task cause a handful of upstream polls. */
static void test_many_pollers_few_upstream_polls(void **state)
{
    (void)state;
    const char *slow_polls[] = {"--poll-interval", "1s", NULL};
    start_all("2500", slow_polls);
    char *body = task_body("async pollers", NULL);
    struct http_reply r;
    json_t *doc = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", dig_str(doc, "task.id"));
    json_decref(doc);
    free(body);
    int answered = 0;
    long long until = now_ms() + 2000;
    while (now_ms() < until) {
        struct driver d;
        driver_init(&d, 50);
        for (int i = 0; i < 50; i++)
            driver_add(&d, &proxy, path, NULL, 0, NULL, 10000);
        assert_true(driver_finish(&d, 10000));
        for (int i = 0; i < 50; i++) {
            assert_int_equal(d.calls[i].reply.status, 200);
            answered++;
        }
        driver_free(&d);
        sleep_ms(100);
    }
    long long polls = fake_stat(&fake, "async.task_polls");
    print_message("%d client polls in 2 s -> %lld upstream polls\n", answered, polls);
    /* Hundreds of client polls (about 900 on a quiet machine; fewer rounds
     * fit in the 2 s when the machine is loaded, each still 50 at once). */
    assert_true(answered >= 200);
    /* Its own follow-ups (every 250 ms for the first 2 s, then an eighth
     * of the task's age: about 10 for a 2.5 s task) and at most one a
     * second for the clients. */
    assert_true(polls >= 1);
    assert_true(polls <= 12);
}

/* A task that fails upstream fails for its followers too, and nothing is
 * cached: the same prompt asked again goes upstream again. */
static void test_failed_task_is_not_cached(void **state)
{
    (void)state;
    start_all("600", NULL);
    char *body = task_body("async [task-fail]", NULL);
    struct http_reply r;
    json_t *first = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    json_t *follower = submit(&proxy, body, &r);
    assert_string_equal(http_header(&r, "X-Cache"), "COALESCED");
    http_reply_free(&r);
    json_t *a = wait_task(&proxy, dig_str(first, "task.id"), "FAILED", 6000);
    json_t *b = wait_task(&proxy, dig_str(follower, "task.id"), "FAILED", 6000);
    assert_string_equal(dig_str(a, "task.status"), "FAILED");
    assert_string_equal(dig_str(b, "task.status"), "FAILED");
    assert_string_equal(dig_str(a, "response.error.code"), "INTERNAL_SERVER_ERROR");
    assert_true(json_equal(dig(a, "response"), dig(b, "response")));
    assert_int_equal(json_integer_value(dig(a, "credits.creditsCharged")), 0);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);
    json_t *again = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "MISS");
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 2);
    json_decref(again);
    json_decref(a);
    json_decref(b);
    json_decref(first);
    json_decref(follower);
    free(body);
}

/* A task cleared from cloro's queue (DELETE /v1/async/queue, passed
 * through) is gone for the proxy too, followers included. */
static void test_task_cleared_upstream_is_gone(void **state)
{
    (void)state;
    start_all("5000", NULL);
    fake_configure(&fake, "{\"concurrency_limit\":1}");
    char *busy = task_body("async busy", NULL);
    char *queued = task_body("async queued", NULL);
    struct http_reply r;
    json_t *running = submit(&proxy, busy, &r);
    http_reply_free(&r);
    json_t *waiting = submit(&proxy, queued, &r);
    http_reply_free(&r);
    json_t *follower = submit(&proxy, queued, &r);
    assert_string_equal(http_header(&r, "X-Cache"), "COALESCED");
    http_reply_free(&r);
    char *clear_url = proc_url(&proxy, "/v1/async/queue");
    http_call("DELETE", clear_url, NULL, NULL, &r);
    free(clear_url);
    assert_int_equal(r.status, 200);
    json_t *cleared = http_json(&r);
    assert_int_equal(json_integer_value(json_object_get(cleared, "cleared")), 1);
    json_decref(cleared);
    http_reply_free(&r);
    assert_int_equal(proxy_wait_counter(&proxy, "tasks.vanished", 1, 3000), 1);
    long code;
    json_t *gone = get_task(&proxy, dig_str(waiting, "task.id"), &code);
    assert_int_equal(code, 404);
    assert_string_equal(dig_str(gone, "error.code"), "RESOURCE_NOT_FOUND");
    json_decref(gone);
    gone = get_task(&proxy, dig_str(follower, "task.id"), &code);
    assert_int_equal(code, 404);
    json_decref(gone);
    json_t *still = get_task(&proxy, dig_str(running, "task.id"), &code);
    assert_int_equal(code, 200);
    json_decref(still);
    json_decref(running);
    json_decref(waiting);
    json_decref(follower);
    free(busy);
    free(queued);
}

/* webhook_delivery = upstream: the webhook goes to cloro, which delivers. */
static void test_upstream_webhook_delivery(void **state)
{
    (void)state;
    const char *upstream_hooks[] = {"--webhook-delivery", "upstream", NULL};
    start_all("100", upstream_hooks);
    char *hook = hook_field("via-upstream");
    char *body = task_body("async upstream hook", hook);
    struct http_reply r;
    json_t *doc = submit(&proxy, body, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    assert_true(fake_wait_stat(&fake, "async.webhook_delivered", 1, 5000));
    json_t *got = wait_deliveries(1, 3000);
    json_t *d1 = json_array_get(json_object_get(got, "deliveries"), 0);
    assert_non_null(d1);
    assert_string_equal(dig_str(d1, "path"), "/hook/via-upstream");
    assert_string_equal(dig_str(d1, "body.task.id"), dig_str(doc, "task.id"));
    json_decref(got);
    sleep_ms(300);
    assert_int_equal(proxy_counter(&proxy, "tasks.webhooks.attempts"), 0);
    json_decref(doc);
    free(hook);
    free(body);
}

/* async_tasks = false: /v1/async/ passes through, and a submission's answer
 * (a task) is never cached as the answer to its prompt. */
static void test_async_tasks_off_passes_through(void **state)
{
    (void)state;
    const char *off[] = {"--async-tasks", "false", NULL};
    start_all("100", off);
    char *body = task_body("async off", NULL);
    for (int i = 0; i < 2; i++) {
        struct http_reply r;
        json_t *doc = submit(&proxy, body, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(http_header(&r, "X-Cache"), "BYPASS");
        assert_string_equal(dig_str(doc, "task.status"), "QUEUED");
        json_decref(doc);
        http_reply_free(&r);
    }
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 2);
    struct http_reply r;
    http_post(&proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"async off\",\"country\":\"US\"}", NULL,
              &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "MISS");
    json_t *sync = http_json(&r);
    assert_non_null(dig_str(sync, "result.text"));
    json_decref(sync);
    http_reply_free(&r);
    free(body);
}

/* What the proxy cannot read as a task is cloro's to judge, in its words. */
static void test_malformed_submission_passes_through(void **state)
{
    (void)state;
    start_all("100", NULL);
    struct http_reply r;
    http_post(&proxy, "/v1/async/task", "{\"taskType\":\"CHATGPT\",\"payload\":", NULL, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(http_error_code(&r), "VALIDATION_ERROR");
    http_reply_free(&r);
    http_post(&proxy, "/v1/async/task/batch", "[]", NULL, &r);
    assert_int_equal(r.status, 400);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests_total"), 2);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_resubmission_is_answered_from_the_cache, stop_all),
        cmocka_unit_test_teardown(test_identical_task_attaches_to_the_open_one, stop_all),
        cmocka_unit_test_teardown(test_batch_is_split_and_merged, stop_all),
        cmocka_unit_test_teardown(test_result_outlives_upstream_retention, stop_all),
        cmocka_unit_test_teardown(test_webhook_signed_and_retried, stop_all),
        cmocka_unit_test_teardown(test_webhook_delivered_after_restart, stop_all),
        cmocka_unit_test_teardown(test_many_pollers_few_upstream_polls, stop_all),
        cmocka_unit_test_teardown(test_failed_task_is_not_cached, stop_all),
        cmocka_unit_test_teardown(test_task_cleared_upstream_is_gone, stop_all),
        cmocka_unit_test_teardown(test_upstream_webhook_delivery, stop_all),
        cmocka_unit_test_teardown(test_async_tasks_off_passes_through, stop_all),
        cmocka_unit_test_teardown(test_malformed_submission_passes_through, stop_all),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
