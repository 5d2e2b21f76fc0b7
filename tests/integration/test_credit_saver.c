/* test_credit_saver.c: sync monitor calls answered through cloro's cheaper
 * async API, on the wire. In async mode the fake sees task creations and
 * polls instead of sync calls, and the client gets what the sync endpoint
 * would have given (answer, headers, errors), 2 credits cheaper a call. The
 * mode follows the config, a [provider] section and the request's header;
 * identical sync and async requests share one task; a client that leaves
 * does not cancel it; max_open_tasks bounds the tasks open upstream; a batch
 * window creates many tasks in one call.
 *
 * Each test starts its own fake upstream and proxy. */
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

#define KEY "sk_live_saver0001"

static struct proc fake, proxy, other;
static char config_path[64];
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};

static void start_fake(const char *task_duration_ms)
{
    const char *args[] = {"--api-key",
                          KEY,
                          "--log-level",
                          "warn",
                          "--concurrency-limit",
                          "200",
                          "--task-duration-ms",
                          task_duration_ms,
                          NULL};
    assert_int_equal(proc_start_fake(&fake, args), 0);
}

/* A proxy against the fake with fast polls; extra flags NULL-terminated. */
static void start_proxy(struct proc *p, const char *const extra[])
{
    const char *args[24] = {"--poll-initial",    "50ms", "--poll-interval", "500ms",
                            "--max-concurrency", "100"};
    size_t n = 6;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    assert_int_equal(proc_start_proxy(p, fake.url, args, proxy_env), 0);
}

static int stop_all(void **state)
{
    (void)state;
    struct proc *all[] = {&other, &proxy, &fake};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (all[i]->pid > 0 || all[i]->dir[0] != '\0')
            proc_stop(all[i]);
        memset(all[i], 0, sizeof *all[i]);
    }
    if (config_path[0] != '\0')
        unlink(config_path);
    config_path[0] = '\0';
    return 0;
}

static const char *dig_str(json_t *root, const char *dotted)
{
    return json_string_value(json_dig(root, dotted));
}

static char *prompt_body(const char *prompt)
{
    char *body = NULL;
    if (asprintf(&body, "{\"prompt\":\"%s\",\"country\":\"US\"}", prompt) < 0)
        abort();
    return body;
}

/* One sync call; the reply (caller frees) and its parsed body. */
static json_t *ask(const struct proc *p, const char *provider, const char *prompt, const char *mode,
                   struct http_reply *r)
{
    char path[64], mode_line[64];
    snprintf(path, sizeof path, "/v1/monitor/%s", provider);
    snprintf(mode_line, sizeof mode_line, "X-Proxy-Upstream-Mode: %s", mode != NULL ? mode : "");
    const char *headers[] = {"Content-Type: application/json", mode != NULL ? mode_line : NULL,
                             NULL};
    char *body = prompt_body(prompt);
    http_post(p, path, body, headers, r);
    free(body);
    return http_json(r);
}

/* ---- tests ------------------------------------------------------------------- */

/* 100 distinct calls in async mode: 100 sync-shaped answers, no sync call
 * upstream, 100 task creations, and exactly 200 credits less than the same
 * 100 calls in sync mode. The answer is the one the sync endpoint gives. */
static void test_async_mode_saves_two_credits_a_call(void **state)
{
    (void)state;
    start_fake("150");
    const char *async_mode[] = {"--upstream-mode", "async", NULL};
    start_proxy(&proxy, async_mode);
    start_proxy(&other, NULL); /* sync mode, the same fake */

    struct driver d;
    driver_init(&d, 100);
    for (int i = 0; i < 100; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"prompt\":\"saver async %d\",\"country\":\"US\"}", i);
        driver_add(&d, &proxy, "/v1/monitor/chatgpt", body, 0, NULL, 20000);
    }
    assert_true(driver_finish(&d, 30000));
    for (int i = 0; i < 100; i++) {
        struct http_reply *r = &d.calls[i].reply;
        assert_int_equal(r->status, 200);
        assert_string_equal(http_header(r, "X-Proxy-Upstream-Mode"), "async");
        assert_string_equal(http_header(r, "X-Cache"), "MISS");
        assert_string_equal(http_header(r, "X-Credits-Charged"), "5");
        assert_string_equal(http_header(r, "X-Credits-Saved"), "2");
        assert_string_equal(http_header(r, "X-Credits-Saved-By"), "async");
        assert_true(is_uuid(http_header(r, "X-Request-ID")));
        json_t *doc = http_json(r);
        assert_true(json_is_true(json_object_get(doc, "success")));
        assert_non_null(dig_str(doc, "result.text"));
        json_decref(doc);
    }
    driver_free(&d);
    long long async_credits = fake_stat(&fake, "credits_charged_total");
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 0);
    assert_int_equal(fake_stat(&fake, "async.creates"), 100);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 100);
    assert_int_equal(proxy_counter(&proxy, "tasks.credit_saver.credits_saved"), 200);

    fake_reset(&fake);
    driver_init(&d, 100);
    for (int i = 0; i < 100; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"prompt\":\"saver sync %d\",\"country\":\"US\"}", i);
        driver_add(&d, &other, "/v1/monitor/chatgpt", body, 0, NULL, 20000);
    }
    assert_true(driver_finish(&d, 30000));
    for (int i = 0; i < 100; i++)
        assert_int_equal(d.calls[i].reply.status, 200);
    driver_free(&d);
    long long sync_credits = fake_stat(&fake, "credits_charged_total");
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 100);
    print_message("100 calls: %lld credits in sync mode, %lld in async mode\n", sync_credits,
                  async_credits);
    assert_int_equal(sync_credits - async_credits, 200);

    /* The same question both ways: the same result. */
    struct http_reply a, s;
    json_t *via_async = ask(&proxy, "chatgpt", "saver same", NULL, &a);
    json_t *via_sync = ask(&other, "chatgpt", "saver same", NULL, &s);
    assert_int_equal(a.status, 200);
    assert_int_equal(s.status, 200);
    assert_true(
        json_equal(json_object_get(via_async, "result"), json_object_get(via_sync, "result")));
    assert_string_equal(http_header(&a, "Content-Type"), http_header(&s, "Content-Type"));
    json_decref(via_async);
    json_decref(via_sync);
    http_reply_free(&a);
    http_reply_free(&s);
}

/* X-Proxy-Upstream-Mode overrides the config both ways; a bad value is a 400. */
static void test_header_overrides_the_config(void **state)
{
    (void)state;
    start_fake("100");
    const char *async_mode[] = {"--upstream-mode", "async", NULL};
    start_proxy(&proxy, async_mode);
    start_proxy(&other, NULL);
    struct http_reply r;
    json_t *doc = ask(&proxy, "chatgpt", "header sync", "sync", &r);
    assert_int_equal(r.status, 200);
    assert_null(http_header(&r, "X-Proxy-Upstream-Mode"));
    json_decref(doc);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 1);
    assert_int_equal(fake_stat(&fake, "async.creates"), 0);

    doc = ask(&other, "chatgpt", "header async", "async", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Proxy-Upstream-Mode"), "async");
    json_decref(doc);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 1);
    assert_int_equal(fake_stat(&fake, "async.creates"), 1);

    doc = ask(&other, "chatgpt", "header bad", "later", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(http_error_code(&r), "VALIDATION_ERROR");
    json_decref(doc);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 1);
    assert_int_equal(fake_stat(&fake, "async.creates"), 1);
}

/* [provider gemini] upstream_mode = async, the rest sync. */
static void test_provider_section(void **state)
{
    (void)state;
    start_fake("100");
    snprintf(config_path, sizeof config_path, "/tmp/cloro-it-saver-XXXXXX");
    int fd = mkstemp(config_path);
    assert_true(fd >= 0);
    const char *text = "upstream_mode = sync\n[provider gemini]\nupstream_mode = async\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    const char *with_config[] = {"--config", config_path, NULL};
    start_proxy(&proxy, with_config);
    struct http_reply r;
    json_t *doc = ask(&proxy, "gemini", "provider gemini", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Proxy-Upstream-Mode"), "async");
    json_decref(doc);
    http_reply_free(&r);
    doc = ask(&proxy, "chatgpt", "provider chatgpt", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_null(http_header(&r, "X-Proxy-Upstream-Mode"));
    json_decref(doc);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/gemini"), 0);
    assert_int_equal(fake_stat(&fake, "requests./v1/monitor/chatgpt"), 1);
    assert_int_equal(fake_stat(&fake, "async.creates"), 1);

    struct cli_result cli;
    cli_run(&cli, (const char *[]){"check-config", config_path, NULL});
    assert_int_equal(cli.status, 0);
    free(cli.output);
}

/* A task that fails upstream, and a payload cloro rejects: the same status
 * and envelope as the sync endpoint gives. */
static void test_failures_look_like_sync_failures(void **state)
{
    (void)state;
    start_fake("100");
    const char *async_mode[] = {"--upstream-mode", "async", "--max-retries", "0", NULL};
    start_proxy(&proxy, async_mode);
    const char *sync_mode[] = {"--max-retries", "0", NULL};
    start_proxy(&other, sync_mode);

    struct http_reply a, s;
    json_t *failed = ask(&proxy, "chatgpt", "saver [task-fail]", NULL, &a);
    fake_configure(&fake, "{\"fail_500\":1.0}");
    json_t *sync_failed = ask(&other, "chatgpt", "saver fails sync", NULL, &s);
    fake_configure(&fake, "{\"fail_500\":0}");
    assert_int_equal(a.status, 500);
    assert_int_equal(a.status, s.status);
    assert_string_equal(http_error_code(&a), http_error_code(&s));
    assert_string_equal(dig_str(failed, "error.message"), dig_str(sync_failed, "error.message"));
    assert_false(json_is_true(json_object_get(failed, "success")));
    assert_non_null(dig_str(failed, "error.timestamp"));
    assert_string_equal(http_header(&a, "X-Proxy-Upstream-Mode"), "async");
    json_decref(failed);
    json_decref(sync_failed);
    http_reply_free(&a);
    http_reply_free(&s);
    /* Not cached: asked again, it goes upstream again. */
    long long creates = fake_stat(&fake, "async.creates");
    failed = ask(&proxy, "chatgpt", "saver [task-fail]", NULL, &a);
    assert_int_equal(a.status, 500);
    assert_int_equal(fake_stat(&fake, "async.creates"), creates + 1);
    json_decref(failed);
    http_reply_free(&a);

    /* cloro rejects the payload (an unknown field): the sync call's 400. */
    const char *bad = "{\"prompt\":\"saver bad\",\"country\":\"US\",\"bogus\":1}";
    const char *headers[] = {"Content-Type: application/json", NULL};
    http_post(&proxy, "/v1/monitor/chatgpt", bad, headers, &a);
    http_post(&other, "/v1/monitor/chatgpt", bad, headers, &s);
    assert_int_equal(a.status, 400);
    assert_int_equal(s.status, 400);
    json_t *ja = http_json(&a), *js = http_json(&s);
    assert_string_equal(dig_str(ja, "error.code"), "VALIDATION_ERROR");
    assert_true(json_is_array(json_dig(ja, "error.details")));
    assert_true(json_equal(json_dig(ja, "error.details"), json_dig(js, "error.details")));
    json_decref(ja);
    json_decref(js);
    http_reply_free(&a);
    http_reply_free(&s);
}

/* A client that gives up does not cancel the task: its answer is cached
 * when it lands, and the next client gets it as a hit. */
static void test_client_gone_task_still_cached(void **state)
{
    (void)state;
    start_fake("1200");
    const char *async_mode[] = {"--upstream-mode", "async", NULL};
    start_proxy(&proxy, async_mode);
    struct driver d;
    driver_init(&d, 1);
    driver_add(&d, &proxy, "/v1/monitor/chatgpt",
               "{\"prompt\":\"saver leaves\",\"country\":\"US\"}", 0, NULL, 300);
    driver_finish(&d, 2000);
    assert_int_not_equal(d.calls[0].curl_code, 0); /* timed out: the client left */
    driver_free(&d);
    assert_true(fake_wait_stat(&fake, "async.completed", 1, 5000));
    assert_int_equal(proxy_wait_counter(&proxy, "tasks.completed", 1, 3000), 1);
    struct http_reply r;
    json_t *doc = ask(&proxy, "chatgpt", "saver leaves", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    json_decref(doc);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "async.creates"), 1);
}

/* Identical sync (async mode) and async requests share one upstream task. */
static void test_sync_and_async_share_one_task(void **state)
{
    (void)state;
    start_fake("800");
    const char *async_mode[] = {"--upstream-mode", "async", NULL};
    start_proxy(&proxy, async_mode);
    struct driver d;
    driver_init(&d, 2);
    driver_add(&d, &proxy, "/v1/monitor/chatgpt", "{\"prompt\":\"saver share\",\"country\":\"US\"}",
               0, NULL, 10000);
    driver_pump(&d, 200);
    driver_add(&d, &proxy, "/v1/async/task",
               "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"saver share\","
               "\"country\":\"US\"}}",
               0, NULL, 10000);
    assert_true(driver_finish(&d, 10000));
    assert_int_equal(d.calls[0].reply.status, 200);
    assert_int_equal(d.calls[1].reply.status, 200);
    assert_string_equal(http_header(&d.calls[1].reply, "X-Cache"), "COALESCED");
    json_t *task = http_json(&d.calls[1].reply);
    json_t *sync = http_json(&d.calls[0].reply);
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", dig_str(task, "task.id"));
    driver_free(&d);
    struct http_reply r;
    http_get(&proxy, path, &r);
    json_t *done = http_json(&r);
    assert_string_equal(dig_str(done, "task.status"), "COMPLETED");
    assert_true(json_equal(json_object_get(done, "response"), json_object_get(sync, "result")));
    json_decref(done);
    json_decref(task);
    json_decref(sync);
    http_reply_free(&r);
    assert_int_equal(fake_stat(&fake, "async.tasks_created"), 1);
}

/* max_open_tasks: more calls than places wait their turn, all answered. */
static void test_open_tasks_are_bounded(void **state)
{
    (void)state;
    start_fake("400");
    const char *bounded[] = {"--upstream-mode", "async", "--max-open-tasks", "2", NULL};
    start_proxy(&proxy, bounded);
    struct driver d;
    driver_init(&d, 6);
    for (int i = 0; i < 6; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"prompt\":\"saver bounded %d\",\"country\":\"US\"}", i);
        driver_add(&d, &proxy, "/v1/monitor/chatgpt", body, 0, NULL, 20000);
    }
    driver_pump(&d, 150);
    assert_int_equal(proxy_counter(&proxy, "tasks.credit_saver.open"), 2);
    assert_int_equal(proxy_counter(&proxy, "tasks.credit_saver.queued"), 4);
    assert_true(driver_finish(&d, 20000));
    for (int i = 0; i < 6; i++)
        assert_int_equal(d.calls[i].reply.status, 200);
    driver_free(&d);
    assert_int_equal(proxy_counter(&proxy, "tasks.credit_saver.waited_turn"), 4);
    assert_int_equal(fake_stat(&fake, "async.creates"), 6);
}

/* async_batch_window: 50 calls within the window, one batch upstream. */
static void test_batch_window(void **state)
{
    (void)state;
    start_fake("200");
    const char *window[] = {"--upstream-mode", "async", "--async-batch-window", "300ms", NULL};
    start_proxy(&proxy, window);
    struct driver d;
    driver_init(&d, 50);
    for (int i = 0; i < 50; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"prompt\":\"saver window %d\",\"country\":\"US\"}", i);
        driver_add(&d, &proxy, "/v1/monitor/chatgpt", body, 0, NULL, 20000);
    }
    assert_true(driver_finish(&d, 20000));
    for (int i = 0; i < 50; i++) {
        struct http_reply *r = &d.calls[i].reply;
        assert_int_equal(r->status, 200);
        json_t *doc = http_json(r);
        assert_non_null(strstr(dig_str(doc, "result.text"), "saver window"));
        json_decref(doc);
    }
    driver_free(&d);
    assert_int_equal(fake_stat(&fake, "async.batch_calls"), 1);
    assert_int_equal(fake_stat(&fake, "async.creates"), 0);
    json_t *stats = fake_stats(&fake);
    assert_int_equal(json_integer_value(json_array_get(json_dig(stats, "async.batch_sizes"), 0)),
                     50);
    json_decref(stats);
}

/* The client's deadline holds: a task longer than upstream_timeout is a 504
 * for the client, and cached when it lands. */
static void test_deadline_respected(void **state)
{
    (void)state;
    start_fake("2000");
    const char *short_deadline[] = {"--upstream-mode", "async", "--upstream-timeout", "700ms",
                                    NULL};
    start_proxy(&proxy, short_deadline);
    long long t0 = now_ms();
    struct http_reply r;
    json_t *doc = ask(&proxy, "chatgpt", "saver deadline", NULL, &r);
    long long took = now_ms() - t0;
    assert_int_equal(r.status, 504);
    assert_string_equal(http_error_code(&r), "UPSTREAM_TIMEOUT");
    assert_true(took < 1500);
    json_decref(doc);
    http_reply_free(&r);
    assert_int_equal(proxy_wait_counter(&proxy, "tasks.completed", 1, 5000), 1);
    doc = ask(&proxy, "chatgpt", "saver deadline", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "X-Cache"), "HIT");
    json_decref(doc);
    http_reply_free(&r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_async_mode_saves_two_credits_a_call, stop_all),
        cmocka_unit_test_teardown(test_header_overrides_the_config, stop_all),
        cmocka_unit_test_teardown(test_provider_section, stop_all),
        cmocka_unit_test_teardown(test_failures_look_like_sync_failures, stop_all),
        cmocka_unit_test_teardown(test_client_gone_task_still_cached, stop_all),
        cmocka_unit_test_teardown(test_sync_and_async_share_one_task, stop_all),
        cmocka_unit_test_teardown(test_open_tasks_are_bounded, stop_all),
        cmocka_unit_test_teardown(test_batch_window, stop_all),
        cmocka_unit_test_teardown(test_deadline_respected, stop_all),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
