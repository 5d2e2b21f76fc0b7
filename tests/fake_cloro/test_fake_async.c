/* test_fake_async: fake_cloro's async API and webhook_receiver as real processes
 * (started through the integration harness): the [task-retry:N] hop seen as QUEUED
 * by a poller, [task-fail], the balance re-check at pickup, the legacy switches
 * (422, RESOURCE_CONFLICT, flat batch details), the new async counters, and the
 * receiver's record, signature check, scripted failures and delay. */
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

#define SECRET "whsec_selftest"

struct fixture {
    struct proc fake;
    struct proc recv;
};

static struct fixture *fx;

static int setup(void **state)
{
    (void)state;
    fx = calloc(1, sizeof *fx);
    const char *fake_args[] = {"--task-duration-ms",
                               "100",
                               "--task-retry-delay-ms",
                               "300",
                               "--webhook-secret",
                               SECRET,
                               "--webhook-time-scale",
                               "0.01",
                               NULL};
    if (proc_start_fake(&fx->fake, fake_args) != 0)
        return -1;
    const char *recv_argv[] = {WEBHOOK_RECEIVER_BIN, "--port", "0", "--secret", SECRET, NULL};
    if (proc_start(&fx->recv, "recv", recv_argv, NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    proc_stop(&fx->recv);
    proc_stop(&fx->fake);
    int fake_exit = fx->fake.exit_status, recv_exit = fx->recv.exit_status;
    free(fx);
    /* Both exit 0 on SIGTERM. */
    return fake_exit == 0 && recv_exit == 0 ? 0 : -1;
}

/* An authorized call to the fake; the reply's JSON (new reference) or NULL. */
static json_t *api(const char *method, const char *path, const char *body, long *status)
{
    const char *headers[] = {"Authorization: Bearer sk_live_test", "Content-Type: application/json",
                             NULL};
    char *url = proc_url(&fx->fake, path);
    struct http_reply r;
    http_call(method, url, body, headers, &r);
    free(url);
    *status = r.status;
    json_t *j = http_json(&r);
    http_reply_free(&r);
    return j;
}

static char *task_body(const char *prompt, const char *key, const char *hook)
{
    char *out = NULL;
    char keypart[160] = "", hookpart[200] = "";
    if (key)
        snprintf(keypart, sizeof keypart, ",\"idempotencyKey\":\"%s\"", key);
    if (hook)
        snprintf(hookpart, sizeof hookpart, ",\"webhook\":{\"url\":\"%s/hook/%s\"}", fx->recv.url,
                 hook);
    if (asprintf(
            &out,
            "{\"taskType\":\"CHATGPT\"%s%s,\"payload\":{\"prompt\":\"%s\",\"country\":\"US\"}}",
            keypart, hookpart, prompt) < 0)
        abort();
    return out;
}

/* Creates a task; returns its id (caller frees). */
static char *create(const char *prompt, const char *key, const char *hook)
{
    char *body = task_body(prompt, key, hook);
    long status;
    json_t *j = api("POST", "/v1/async/task", body, &status);
    free(body);
    assert_int_equal(status, 200);
    const char *id = json_string_value(json_object_get(json_object_get(j, "task"), "id"));
    assert_non_null(id);
    char *copy = strdup(id);
    json_decref(j);
    return copy;
}

static json_t *get_task(const char *id)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/async/task/%s", id);
    long status;
    json_t *j = api("GET", path, NULL, &status);
    assert_int_equal(status, 200);
    return j;
}

static const char *task_status(const json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "task"), "status"));
}

/* Polls every 20 ms until terminal; seen gets one letter per change of status
 * (Q, P, C, F). Returns the terminal body. */
static json_t *wait_terminal(const char *id, char *seen, size_t seen_len)
{
    long long deadline = now_ms() + 10000;
    size_t n = 0;
    seen[0] = '\0';
    while (now_ms() < deadline) {
        json_t *j = get_task(id);
        char c = task_status(j)[0];
        if (n == 0 || seen[n - 1] != c) {
            if (n + 1 < seen_len) {
                seen[n++] = c;
                seen[n] = '\0';
            }
        }
        if (c == 'C' || c == 'F')
            return j;
        json_decref(j);
        sleep_ms(20);
    }
    fail_msg("task %s never finished (seen %s)", id, seen);
    return NULL;
}

static json_t *deliveries(void)
{
    struct http_reply r;
    http_get(&fx->recv, "/_recv/deliveries", &r);
    assert_int_equal(r.status, 200);
    json_t *j = http_json(&r);
    http_reply_free(&r);
    return j;
}

static json_t *wait_deliveries(size_t count)
{
    long long deadline = now_ms() + 10000;
    for (;;) {
        json_t *j = deliveries();
        if (json_integer_value(json_object_get(j, "count")) >= (json_int_t)count ||
            now_ms() > deadline)
            return j;
        json_decref(j);
        sleep_ms(20);
    }
}

static void test_retry_hop(void **state)
{
    (void)state;
    char *id = create("weather [task-retry:2]", "k-retry", "retry");
    char seen[32];
    long long t0 = now_ms();
    json_t *j = wait_terminal(id, seen, sizeof seen);
    long long took = now_ms() - t0;
    assert_string_equal(task_status(j), "COMPLETED");
    /* PROCESSING, back to QUEUED (the hop), twice, then COMPLETED. */
    assert_non_null(strstr(seen, "PQPQP"));
    json_int_t latency =
        json_integer_value(json_object_get(json_object_get(j, "task"), "latencyMs"));
    /* 3 attempts of 100 ms and 2 waits of 300 ms (less a little ms rounding). */
    if (latency < 3 * 100 + 2 * 300 - 10)
        fail_msg("latencyMs %lld < 890", (long long)latency);
    assert_true(latency <= took + 100);
    json_t *credits = json_object_get(j, "credits");
    assert_true(json_integer_value(json_object_get(credits, "creditsCharged")) > 0);
    json_decref(j);

    assert_int_equal(fake_stat(&fx->fake, "async.retries"), 2);
    assert_int_equal(fake_stat(&fx->fake, "async.completed"), 1);
    assert_int_equal(fake_stat(&fx->fake, "async.creates"), 1);
    assert_int_equal(fake_stat(&fx->fake, "async.submitted_keys"), 1);
    assert_true(fake_stat(&fx->fake, "async.task_polls") >= 5);

    /* One signed delivery of the terminal task. */
    json_t *d = wait_deliveries(1);
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 1);
    json_t *rec = json_array_get(json_object_get(d, "deliveries"), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "path")), "/hook/retry");
    assert_int_equal(json_integer_value(json_object_get(rec, "status")), 200);
    assert_true(json_is_true(json_object_get(rec, "verified")));
    char wid[64];
    snprintf(wid, sizeof wid, "%s-1", id);
    assert_string_equal(json_string_value(json_object_get(rec, "webhook_id")), wid);
    json_t *body_task = json_object_get(json_object_get(rec, "body"), "task");
    assert_string_equal(json_string_value(json_object_get(body_task, "status")), "COMPLETED");
    assert_string_equal(json_string_value(json_object_get(body_task, "id")), id);
    json_decref(d);
    free(id);
}

static void test_task_fail_and_short_balance(void **state)
{
    (void)state;
    char *id = create("[task-fail] x", NULL, NULL);
    char seen[32];
    json_t *j = wait_terminal(id, seen, sizeof seen);
    assert_string_equal(task_status(j), "FAILED");
    json_t *err = json_object_get(json_object_get(j, "response"), "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "INTERNAL_SERVER_ERROR");
    assert_string_equal(json_string_value(json_object_get(err, "message")),
                        "Maximum retries exceeded");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "credits"), "creditsCharged")), 0);
    assert_true(json_is_integer(json_object_get(json_object_get(j, "task"), "latencyMs")));
    json_decref(j);
    free(id);

    /* One slot: a long task holds it while a second one waits; the balance
     * drops to 0 meanwhile, so the second fails at pickup. */
    fake_configure(&fx->fake, "{\"concurrency_limit\":1,\"task_duration_ms\":400}");
    char *first = create("first", NULL, NULL);
    char *second = create("second", NULL, NULL);
    json_t *q = get_task(second);
    assert_string_equal(task_status(q), "QUEUED");
    json_decref(q);
    fake_configure(&fx->fake, "{\"credits\":0}");
    j = wait_terminal(second, seen, sizeof seen);
    assert_string_equal(task_status(j), "FAILED");
    err = json_object_get(json_object_get(j, "response"), "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "INSUFFICIENT_CREDITS");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "credits"), "creditsCharged")), 0);
    /* It never started processing. */
    assert_true(json_is_null(json_object_get(json_object_get(j, "task"), "latencyMs")));
    json_decref(j);
    free(first);
    free(second);
}

static void test_legacy_switches(void **state)
{
    (void)state;
    long status;
    /* Defaults (OAS). */
    json_t *j = api("POST", "/v1/async/task", "{\"taskType\":\"CHATGPT\"}", &status);
    assert_int_equal(status, 400);
    json_decref(j);
    char *body = task_body("dup", "same-key", NULL);
    j = api("POST", "/v1/async/task", body, &status);
    assert_int_equal(status, 200);
    json_decref(j);
    j = api("POST", "/v1/async/task", body, &status);
    assert_int_equal(status, 409);
    json_t *err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "RESOURCE_ALREADY_EXISTS");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(err, "details"), "value")), "same-key");
    json_decref(j);
    const char *batch = "[{\"taskType\":\"CHATGPT\",\"idempotencyKey\":\"b1\","
                        "\"payload\":{\"prompt\":\"a\",\"country\":\"US\"}},"
                        "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"b\"}}]";
    j = api("POST", "/v1/async/task/batch", batch, &status);
    assert_int_equal(status, 200);
    json_t *details = json_object_get(
        json_object_get(json_array_get(json_object_get(j, "results"), 1), "error"), "details");
    assert_true(json_is_array(json_object_get(details, "errors")));
    json_decref(j);

    /* Legacy. */
    fake_configure(&fx->fake, "{\"async_validation_status\":422,"
                              "\"idempotency_code\":\"RESOURCE_CONFLICT\","
                              "\"batch_error_details\":\"flat\"}");
    j = api("POST", "/v1/async/task", "{\"taskType\":\"CHATGPT\"}", &status);
    assert_int_equal(status, 422);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "VALIDATION_ERROR");
    json_decref(j);
    j = api("POST", "/v1/async/task", "not json", &status);
    assert_int_equal(status, 422);
    json_decref(j);
    j = api("POST", "/v1/async/task/batch", "{}", &status);
    assert_int_equal(status, 422);
    json_decref(j);
    j = api("POST", "/v1/async/task", body, &status);
    assert_int_equal(status, 409);
    err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "RESOURCE_CONFLICT");
    assert_string_equal(json_string_value(json_object_get(err, "message")), "Resource conflict");
    assert_null(json_object_get(err, "details"));
    json_decref(j);
    free(body);
    j = api("POST", "/v1/async/task/batch", batch, &status);
    assert_int_equal(status, 200);
    json_t *items = json_object_get(j, "results");
    /* b1 is taken now: per-task codes keep their OAS names. */
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(items, 0), "error"), "code")),
                        "RESOURCE_ALREADY_EXISTS");
    details = json_object_get(json_object_get(json_array_get(items, 1), "error"), "details");
    assert_string_equal(json_string_value(json_object_get(details, "field")), "payload.country");
    assert_non_null(json_object_get(details, "message"));
    assert_null(json_object_get(details, "errors"));
    json_decref(j);

    /* Counters: 6 single creates, batches of 2, 2 (the {} body is no array). */
    assert_int_equal(fake_stat(&fx->fake, "async.creates"), 6);
    json_t *stats = fake_stats(&fx->fake);
    json_t *sizes = json_object_get(json_object_get(stats, "async"), "batch_sizes");
    assert_int_equal(json_array_size(sizes), 2);
    assert_int_equal(json_integer_value(json_array_get(sizes, 0)), 2);
    assert_int_equal(json_integer_value(json_array_get(sizes, 1)), 2);
    /* same-key three times, b1 twice. */
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(stats, "async"), "submitted_keys")), 5);
    json_decref(stats);
}

static void recv_config(const char *json, long want)
{
    struct http_reply r;
    http_post(&fx->recv, "/_recv/config", json, NULL, &r);
    assert_int_equal(r.status, want);
    http_reply_free(&r);
}

static void test_webhook_retries_to_receiver(void **state)
{
    (void)state;
    recv_config("{\"fail_next\":2,\"status\":503}", 200);
    char *id = create("hooked", NULL, "r1");
    json_t *d = wait_deliveries(3);
    json_t *list = json_object_get(d, "deliveries");
    assert_int_equal(json_array_size(list), 3);
    static const int want_status[] = {503, 503, 200};
    for (size_t i = 0; i < 3; i++) {
        json_t *rec = json_array_get(list, i);
        assert_int_equal(json_integer_value(json_object_get(rec, "status")), want_status[i]);
        assert_true(json_is_true(json_object_get(rec, "verified")));
        char wid[64];
        snprintf(wid, sizeof wid, "%s-%zu", id, i + 1);
        assert_string_equal(json_string_value(json_object_get(rec, "webhook_id")), wid);
        assert_non_null(json_string_value(json_object_get(rec, "timestamp")));
        assert_non_null(strstr(json_string_value(json_object_get(rec, "signature")), "v1="));
    }
    json_decref(d);
    assert_true(fake_wait_stat(&fx->fake, "async.webhook_delivered", 1, 5000));
    json_t *j = get_task(id);
    assert_true(json_is_true(json_object_get(json_object_get(j, "webhook"), "delivered")));
    json_decref(j);
    free(id);
}

static void test_receiver_direct(void **state)
{
    (void)state;
    /* Unsigned and not JSON: verified null, body kept as text. */
    struct http_reply r;
    const char *plain[] = {"Content-Type: text/plain", NULL};
    http_post(&fx->recv, "/hook/a/b", "hello", plain, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"ok\":true}");
    http_reply_free(&r);
    /* A wrong signature. */
    const char *bad[] = {"Content-Type: application/json", "X-Cloro-Timestamp: 1748419200",
                         "X-Cloro-Signature: v1=00", "X-Cloro-Webhook-Id: t-1", NULL};
    http_post(&fx->recv, "/hook/x", "{\"a\":1}", bad, &r);
    http_reply_free(&r);
    json_t *d = deliveries();
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 2);
    json_t *first = json_array_get(json_object_get(d, "deliveries"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "path")), "/hook/a/b");
    assert_true(json_is_null(json_object_get(first, "verified")));
    assert_true(json_is_null(json_object_get(first, "timestamp")));
    assert_string_equal(json_string_value(json_object_get(first, "body")), "hello");
    json_t *second = json_array_get(json_object_get(d, "deliveries"), 1);
    assert_true(json_is_false(json_object_get(second, "verified")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(second, "body"), "a")), 1);
    assert_string_equal(json_string_value(json_object_get(second, "webhook_id")), "t-1");
    json_decref(d);

    /* Scripted failure with the default status, then a delay. */
    recv_config("{\"fail_next\":1}", 200);
    http_post(&fx->recv, "/hook/f", "{}", NULL, &r);
    assert_int_equal(r.status, 500);
    assert_string_equal(r.body, "{\"ok\":false}");
    http_reply_free(&r);
    recv_config("{\"delay_ms\":300}", 200);
    long long t0 = now_ms();
    http_post(&fx->recv, "/hook/slow", "{}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(now_ms() - t0 >= 290);
    http_reply_free(&r);
    recv_config("{\"delay_ms\":0}", 200);
    recv_config("{\"bogus\":1}", 400);
    recv_config("{\"status\":99}", 400);

    /* GET /hook is not a delivery; unknown paths 404. */
    http_get(&fx->recv, "/hook/x", &r);
    assert_int_equal(r.status, 405);
    http_reply_free(&r);
    http_get(&fx->recv, "/elsewhere", &r);
    assert_int_equal(r.status, 404);
    http_reply_free(&r);

    http_post(&fx->recv, "/_recv/reset", "", NULL, &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    d = deliveries();
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 0);
    json_decref(d);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retry_hop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_fail_and_short_balance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_switches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_retries_to_receiver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_direct, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
