/* test_fake_validate: cmocka tests of fake_validate (the fake's request schemas):
 * required fields, unknown keys, country case, state rules, gl/country conflict,
 * Google url exclusivity, prompt length bounds, and seed-key determinism; plus the
 * fake's other pure pieces: task scripts, webhook signatures, the new knobs and
 * the batch_sizes window of the stats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_knobs.h"
#include "fake_results.h"
#include "fake_stats.h"
#include "fake_task_script.h"
#include "fake_validate.h"
#include "fake_webhooks.h"

static const struct fake_validate_opts strict_opts = {.country_default_us = false};
static const struct fake_validate_opts default_us_opts = {.country_default_us = true};

/* Validates JSON text; returns the details array (or NULL when valid). */
static json_t *check(enum fake_endpoint ep, const char *text, const struct fake_validate_opts *o,
                     struct fake_validate_req *req, json_t **body_out)
{
    json_error_t jerr;
    json_t *body = json_loads(text, 0, &jerr);
    assert_non_null(body);
    json_t *errs = fake_validate_monitor(ep, body, o, req);
    *body_out = body;
    return errs;
}

/* True when errs has an entry for field. */
static bool has_field(const json_t *errs, const char *field)
{
    size_t i;
    const json_t *e;
    json_array_foreach(errs, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "field")), field) == 0)
            return true;
    }
    return false;
}

static void expect_error(enum fake_endpoint ep, const char *text,
                         const struct fake_validate_opts *o, const char *field)
{
    struct fake_validate_req req;
    json_t *body;
    json_t *errs = check(ep, text, o, &req, &body);
    assert_non_null(errs);
    if (!has_field(errs, field)) {
        char *dump = json_dumps(errs, 0);
        fail_msg("no error for %s in %s (body %s)", field, dump, text);
        free(dump);
    }
    json_decref(errs);
    json_decref(body);
}

static void expect_valid(enum fake_endpoint ep, const char *text,
                         const struct fake_validate_opts *o, struct fake_validate_req *req,
                         json_t **body)
{
    json_t *errs = check(ep, text, o, req, body);
    if (errs != NULL) {
        char *dump = json_dumps(errs, 0);
        fail_msg("unexpected errors %s for %s", dump, text);
        free(dump);
    }
}

static void test_required_fields(void **state)
{
    (void)state;
    expect_error(FAKE_EP_CHATGPT, "{\"country\":\"US\"}", &strict_opts, "prompt");
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\"}", &strict_opts, "country");
    expect_error(FAKE_EP_AIMODE, "{\"prompt\":\"x\"}", &strict_opts, "country");
    expect_error(FAKE_EP_GOOGLE, "{\"country\":\"US\"}", &strict_opts, "query");
    expect_error(FAKE_EP_GOOGLE_NEWS, "{\"query\":\"x\"}", &strict_opts, "country");
    expect_error(FAKE_EP_GOOGLE_GOTO, "{}", &strict_opts, "url");
    expect_error(FAKE_EP_CHATGPT, "[1,2]", &strict_opts, "body");

    struct fake_validate_req req;
    json_t *body;
    expect_valid(FAKE_EP_CHATGPT, "{\"prompt\":\"x\"}", &default_us_opts, &req, &body);
    assert_string_equal(req.country, "US");
    json_decref(body);
    expect_valid(FAKE_EP_AIMODE, "{\"prompt\":\"x\",\"gl\":\"de\"}", &strict_opts, &req, &body);
    assert_string_equal(req.country, "DE");
    json_decref(body);
}

static void test_unknown_fields(void **state)
{
    (void)state;
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"model\":\"gpt\"}",
                 &strict_opts, "model");
    expect_error(FAKE_EP_CHATGPT,
                 "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"bogus\":true}}", &strict_opts,
                 "include.bogus");
    /* include keys of another provider are unknown too */
    expect_error(FAKE_EP_GEMINI,
                 "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"shopping\":true}}",
                 &strict_opts, "include.shopping");
    expect_error(FAKE_EP_CHATGPT,
                 "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"html\":\"yes\"}}",
                 &strict_opts, "include.html");
    expect_error(FAKE_EP_GOOGLE,
                 "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"aioverview\":{\"x\":1}}}",
                 &strict_opts, "include.aioverview.x");
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"gl\":\"us\"}",
                 &strict_opts, "gl");

    struct fake_validate_req req;
    json_t *body;
    expect_valid(FAKE_EP_GOOGLE,
                 "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"html\":true,"
                 "\"aioverview\":{\"markdown\":true}}}",
                 &strict_opts, &req, &body);
    assert_true(req.include & FAKE_INC_AIOVERVIEW);
    assert_true(req.include & FAKE_INC_AIOVERVIEW_MARKDOWN);
    assert_true(req.include & FAKE_INC_HTML);
    json_decref(body);
}

static void test_country_case(void **state)
{
    (void)state;
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"us\"}", &strict_opts, "country");
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"ZZ\"}", &strict_opts, "country");
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":1}", &strict_opts, "country");
    struct fake_validate_req req;
    json_t *body;
    expect_valid(FAKE_EP_PERPLEXITY, "{\"prompt\":\"x\",\"country\":\"XK\"}", &strict_opts, &req,
                 &body);
    assert_string_equal(req.country, "XK");
    json_decref(body);
    /* gl accepts either case */
    expect_valid(FAKE_EP_GOOGLE, "{\"query\":\"x\",\"gl\":\"gb\"}", &strict_opts, &req, &body);
    assert_string_equal(req.country, "GB");
    json_decref(body);
}

static void test_state_only_with_us(void **state)
{
    (void)state;
    struct fake_validate_req req;
    json_t *body;
    expect_valid(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"CA\"}",
                 &strict_opts, &req, &body);
    assert_string_equal(req.state, "CA");
    json_decref(body);
    expect_valid(FAKE_EP_GROK, "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"DC\"}",
                 &strict_opts, &req, &body);
    json_decref(body);
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"DE\",\"state\":\"CA\"}",
                 &strict_opts, "state");
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"ca\"}",
                 &strict_opts, "state");
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"XX\"}",
                 &strict_opts, "state");
    /* AI Mode and the Google family have no state field */
    expect_error(FAKE_EP_AIMODE, "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"CA\"}",
                 &strict_opts, "state");
    expect_error(FAKE_EP_GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"state\":\"CA\"}",
                 &strict_opts, "state");
    assert_true(fake_validate_endpoint_has_state(FAKE_EP_COPILOT));
    assert_false(fake_validate_endpoint_has_state(FAKE_EP_AIMODE));
}

static void test_gl_country_conflict(void **state)
{
    (void)state;
    expect_error(FAKE_EP_GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"gl\":\"de\"}", &strict_opts,
                 "gl");
    expect_error(FAKE_EP_AIMODE, "{\"prompt\":\"x\",\"country\":\"US\",\"gl\":\"xx\"}",
                 &strict_opts, "gl");
    struct fake_validate_req req;
    json_t *body;
    expect_valid(FAKE_EP_GOOGLE_NEWS, "{\"query\":\"x\",\"country\":\"US\",\"gl\":\"us\"}",
                 &strict_opts, &req, &body);
    json_decref(body);
}

static void test_google_url_exclusive(void **state)
{
    (void)state;
    const char *url = "\"https://www.google.co.uk/search?q=coffee&gl=gb&num=20\"";
    char text[512];
    snprintf(text, sizeof(text), "{\"url\":%s}", url);
    struct fake_validate_req req;
    json_t *body;
    expect_valid(FAKE_EP_GOOGLE, text, &strict_opts, &req, &body);
    assert_string_equal(req.country, "GB");
    assert_int_equal(req.pages, 2);
    assert_null(req.text);
    json_decref(body);

    snprintf(text, sizeof(text), "{\"url\":%s,\"query\":\"x\"}", url);
    expect_error(FAKE_EP_GOOGLE, text, &strict_opts, "url");
    snprintf(text, sizeof(text), "{\"url\":%s,\"pages\":2}", url);
    expect_error(FAKE_EP_GOOGLE, text, &strict_opts, "pages");
    snprintf(text, sizeof(text), "{\"url\":%s,\"location\":\"Austin,Texas,United States\"}", url);
    expect_error(FAKE_EP_GOOGLE, text, &strict_opts, "location");
    snprintf(text, sizeof(text), "{\"url\":%s,\"uule\":\"w+CAIQ\"}", url);
    expect_error(FAKE_EP_GOOGLE, text, &strict_opts, "uule");
    expect_error(FAKE_EP_GOOGLE, "{\"url\":\"https://www.google.com/search?q=x&tbm=nws\"}",
                 &strict_opts, "url");
    expect_error(FAKE_EP_GOOGLE, "{\"url\":\"https://example.com/search?q=x\"}", &strict_opts,
                 "url");
    expect_error(FAKE_EP_GOOGLE,
                 "{\"query\":\"x\",\"country\":\"US\",\"location\":\"a\",\"uule\":\"b\"}",
                 &strict_opts, "uule");
    expect_error(FAKE_EP_GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"pages\":11}", &strict_opts,
                 "pages");
    expect_error(FAKE_EP_GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"pages\":0}", &strict_opts,
                 "pages");
    expect_error(FAKE_EP_GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"device\":\"tablet\"}",
                 &strict_opts, "device");
    expect_error(FAKE_EP_AIMODE, "{\"prompt\":\"x\",\"country\":\"US\",\"device\":\"ios\"}",
                 &strict_opts, "device");
    expect_valid(FAKE_EP_GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"device\":\"mobile\"}",
                 &strict_opts, &req, &body);
    assert_string_equal(req.device, "android");
    json_decref(body);
    expect_valid(FAKE_EP_GOOGLE_GOTO, "{\"url\":\"https://www.google.com/url?q=https://a.b/\"}",
                 &strict_opts, &req, &body);
    json_decref(body);
    expect_error(FAKE_EP_GOOGLE_GOTO, "{\"url\":\"https://www.google.de/url?q=x\"}", &strict_opts,
                 "url");
}

static void test_prompt_length(void **state)
{
    (void)state;
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":\"\",\"country\":\"US\"}", &strict_opts, "prompt");
    expect_error(FAKE_EP_CHATGPT, "{\"prompt\":5,\"country\":\"US\"}", &strict_opts, "prompt");

    size_t n = FAKE_VALIDATE_TEXT_MAX;
    char *text = malloc(n + 64);
    strcpy(text, "{\"country\":\"US\",\"prompt\":\"");
    size_t off = strlen(text);
    memset(text + off, 'a', n);
    strcpy(text + off + n, "\"}");
    struct fake_validate_req req;
    json_t *body;
    expect_valid(FAKE_EP_CHATGPT, text, &strict_opts, &req, &body);
    json_decref(body);
    text[off + n] = 'a';
    strcpy(text + off + n + 1, "\"}");
    expect_error(FAKE_EP_CHATGPT, text, &strict_opts, "prompt");
    free(text);

    /* characters, not bytes: 10000 two-byte characters are fine */
    char *wide = malloc(2 * n + 64);
    strcpy(wide, "{\"country\":\"US\",\"prompt\":\"");
    off = strlen(wide);
    for (size_t i = 0; i < n; i++)
        memcpy(wide + off + 2 * i, "\xc3\xa9", 2);
    strcpy(wide + off + 2 * n, "\"}");
    expect_valid(FAKE_EP_CHATGPT, wide, &strict_opts, &req, &body);
    json_decref(body);
    free(wide);
    expect_error(FAKE_EP_GOOGLE, "{\"query\":\"\",\"country\":\"US\"}", &strict_opts, "query");
}

static void test_seed_key_ignores_key_order(void **state)
{
    (void)state;
    struct fake_validate_req a, b;
    json_t *ba, *bb;
    expect_valid(FAKE_EP_CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\"}", &strict_opts, &a, &ba);
    expect_valid(FAKE_EP_CHATGPT, "{ \"country\" : \"US\",\n \"prompt\":\"x\", \"include\":{}}",
                 &strict_opts, &b, &bb);
    char *ka = fake_results_seed_key(&a);
    char *kb = fake_results_seed_key(&b);
    assert_string_equal(ka, kb);
    json_t *ra = fake_results_build(&a, NULL, NULL, NULL);
    json_t *rb = fake_results_build(&b, NULL, NULL, NULL);
    assert_true(json_equal(ra, rb));
    free(ka);
    free(kb);
    json_decref(ra);
    json_decref(rb);
    json_decref(ba);
    json_decref(bb);
}

/* Async task requests (cloro-api.md section 7.2): strict fields, the enum,
 * priority bounds, webhook {url}, and the payload checked as its endpoint. */
static void expect_task(const char *text, const char *field)
{
    const struct fake_validate_opts o = {0};
    json_t *body = json_loads(text, 0, NULL);
    assert_non_null(body);
    struct fake_validate_task task;
    json_t *errs = fake_validate_task(body, &o, &task);
    if (field == NULL) {
        if (errs != NULL) {
            char *dump = json_dumps(errs, 0);
            fail_msg("unexpected errors %s for %s", dump, text);
        }
        assert_string_equal(task.task_type, "CHATGPT");
    } else {
        assert_non_null(errs);
        if (!has_field(errs, field)) {
            char *dump = json_dumps(errs, 0);
            fail_msg("no error for %s in %s (body %s)", field, dump, text);
        }
    }
    json_decref(errs);
    json_decref(body);
}

static void test_task_requests(void **state)
{
    (void)state;
    expect_task("{\"taskType\":\"CHATGPT\",\"priority\":7,\"idempotencyKey\":\"k1\","
                "\"webhook\":{\"url\":\"http://127.0.0.1:9/h\"},"
                "\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}",
                NULL);
    expect_task("{\"taskType\":\"BING\",\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}",
                "taskType");
    expect_task("{\"taskType\":\"CHATGPT\",\"priority\":11,"
                "\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}",
                "priority");
    expect_task("{\"taskType\":\"CHATGPT\",\"extra\":1,"
                "\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}",
                "extra");
    expect_task("{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"x\"}}", "payload.country");
    expect_task("{\"taskType\":\"CHATGPT\",\"webhook\":{},"
                "\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}",
                "webhook.url");
}

static void test_task_script(void **state)
{
    (void)state;
    struct fake_task_script sc;
    fake_task_script_parse(NULL, &sc);
    assert_false(sc.fail);
    assert_int_equal(sc.fail_attempts, 0);
    assert_int_equal(fake_task_script_attempt(&sc, 1), FAKE_TASK_SCRIPT_RUN);

    fake_task_script_parse("weather [task-fail] in NY", &sc);
    assert_true(sc.fail);
    assert_int_equal(fake_task_script_attempt(&sc, 1), FAKE_TASK_SCRIPT_FAIL);

    fake_task_script_parse("q [task-retry:2]", &sc);
    assert_false(sc.fail);
    assert_int_equal(sc.fail_attempts, 2);
    assert_int_equal(fake_task_script_attempt(&sc, 1), FAKE_TASK_SCRIPT_RETRY);
    assert_int_equal(fake_task_script_attempt(&sc, 2), FAKE_TASK_SCRIPT_RETRY);
    assert_int_equal(fake_task_script_attempt(&sc, 3), FAKE_TASK_SCRIPT_RUN);

    /* At most 5 attempts: the 5th failure is final. */
    fake_task_script_parse("[task-retry:7]", &sc);
    assert_int_equal(fake_task_script_attempt(&sc, 4), FAKE_TASK_SCRIPT_RETRY);
    assert_int_equal(fake_task_script_attempt(&sc, 5), FAKE_TASK_SCRIPT_FAIL);

    /* Malformed markers are text; a later good one still counts. */
    fake_task_script_parse("[task-retry:] [task-retry:x] [task-retry:-1] [task-retry:3]", &sc);
    assert_int_equal(sc.fail_attempts, 3);
    fake_task_script_parse("[task-retry:1001]", &sc);
    assert_int_equal(sc.fail_attempts, 0);
    fake_task_script_parse("[task-retry:99999999999999999999]", &sc);
    assert_int_equal(sc.fail_attempts, 0);
    fake_task_script_parse("[task-retry:0]", &sc);
    assert_int_equal(fake_task_script_attempt(&sc, 1), FAKE_TASK_SCRIPT_RUN);
}

static void test_webhook_signature(void **state)
{
    (void)state;
    const char *body = "{\"task\":{\"id\":\"x\"}}";
    char sig[68];
    /* printf '%s' '1748419200.{"task":{"id":"x"}}' | openssl dgst -sha256 -hmac whsec_test */
    fake_webhooks_signature("whsec_test", "1748419200", body, strlen(body), sig);
    assert_string_equal(sig, "v1=9046919bd949f307887021af1d2a6c1092523ef62d59174ac4cc340623374729");
    assert_true(fake_webhooks_verify("whsec_test", "1748419200", sig, body, strlen(body)));
    assert_false(fake_webhooks_verify("whsec_other", "1748419200", sig, body, strlen(body)));
    assert_false(fake_webhooks_verify("whsec_test", "1748419201", sig, body, strlen(body)));
    assert_false(fake_webhooks_verify("whsec_test", "1748419200", sig, body, strlen(body) - 1));
    assert_false(fake_webhooks_verify("whsec_test", "1748419200", sig + 3, body, strlen(body)));
    assert_false(fake_webhooks_verify("whsec_test", "1748419200", "", body, strlen(body)));
}

static void test_async_knobs(void **state)
{
    (void)state;
    struct fake_knobs k;
    fake_knobs_init(&k);
    assert_int_equal(k.async_validation_status, 400);
    assert_string_equal(fake_knobs_enum_name(&k, "idempotency_code"), "RESOURCE_ALREADY_EXISTS");
    assert_string_equal(fake_knobs_enum_name(&k, "batch_error_details"), "errors");
    assert_int_equal(k.task_retry_delay_ms, 200);
    char err[256];
    json_t *ok = json_loads("{\"async_validation_status\":422,\"idempotency_code\":"
                            "\"RESOURCE_CONFLICT\",\"batch_error_details\":\"flat\","
                            "\"task_retry_delay_ms\":50}",
                            0, NULL);
    assert_int_equal(fake_knobs_apply_json(&k, ok, err, sizeof(err)), 0);
    json_decref(ok);
    assert_int_equal(k.async_validation_status, 422);
    assert_int_equal(k.idempotency_code, FAKE_IDEM_CONFLICT);
    assert_int_equal(k.batch_error_details, FAKE_BATCH_DETAILS_FLAT);
    assert_int_equal(k.task_retry_delay_ms, 50);
    json_t *bad = json_loads("{\"async_validation_status\":200}", 0, NULL);
    assert_int_equal(fake_knobs_apply_json(&k, bad, err, sizeof(err)), -1);
    json_decref(bad);
    bad = json_loads("{\"batch_error_details\":\"nested\"}", 0, NULL);
    assert_int_equal(fake_knobs_apply_json(&k, bad, err, sizeof(err)), -1);
    json_decref(bad);
    assert_int_equal(k.async_validation_status, 422);
}

static void test_stats_batch_sizes(void **state)
{
    (void)state;
    struct fake_stats s;
    fake_stats_init(&s);
    for (size_t i = 1; i <= FAKE_STATS_BATCH_SIZES_MAX + 5; i++)
        fake_stats_count_batch(&s, i);
    json_t *j = fake_stats_to_json(&s, 0);
    json_t *sizes = json_object_get(json_object_get(j, "async"), "batch_sizes");
    assert_int_equal(json_array_size(sizes), FAKE_STATS_BATCH_SIZES_MAX);
    assert_int_equal(json_integer_value(json_array_get(sizes, 0)), 6);
    assert_int_equal(json_integer_value(json_array_get(sizes, FAKE_STATS_BATCH_SIZES_MAX - 1)),
                     FAKE_STATS_BATCH_SIZES_MAX + 5);
    json_decref(j);
    fake_stats_reset(&s);
    j = fake_stats_to_json(&s, 0);
    json_t *a = json_object_get(j, "async");
    assert_int_equal(json_array_size(json_object_get(a, "batch_sizes")), 0);
    assert_non_null(json_object_get(a, "task_polls"));
    assert_non_null(json_object_get(a, "creates"));
    assert_non_null(json_object_get(a, "submitted_keys"));
    json_decref(j);
    fake_stats_deinit(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_country_case),
        cmocka_unit_test(test_state_only_with_us),
        cmocka_unit_test(test_gl_country_conflict),
        cmocka_unit_test(test_google_url_exclusive),
        cmocka_unit_test(test_prompt_length),
        cmocka_unit_test(test_seed_key_ignores_key_order),
        cmocka_unit_test(test_task_requests),
        cmocka_unit_test(test_task_script),
        cmocka_unit_test(test_webhook_signature),
        cmocka_unit_test(test_async_knobs),
        cmocka_unit_test(test_stats_batch_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
