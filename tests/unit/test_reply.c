/* test_reply.c: the proxy's own error envelope (cloro-api.md section 9.1)
 * and the error table that maps each proxy error to a status and a code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "reply.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>

static void assert_timestamp(const char *ts)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    int rc = regexec(&re, ts, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("timestamp '%s' is not YYYY-MM-DDTHH:MM:SS.mmmZ", ts);
}

/* Checks the envelope's shape and returns its borrowed "error" object. */
static json_t *check_shape(json_t *env, const char *code, size_t error_keys)
{
    assert_non_null(env);
    assert_true(json_is_object(env));
    assert_int_equal(json_object_size(env), 2);
    json_t *success = json_object_get(env, "success");
    assert_non_null(success);
    assert_true(json_is_false(success));
    json_t *error = json_object_get(env, "error");
    assert_non_null(error);
    assert_true(json_is_object(error));
    assert_int_equal(json_object_size(error), error_keys);
    assert_string_equal(json_string_value(json_object_get(error, "code")), code);
    const char *message = json_string_value(json_object_get(error, "message"));
    assert_non_null(message);
    assert_true(message[0] != '\0');
    const char *ts = json_string_value(json_object_get(error, "timestamp"));
    assert_non_null(ts);
    assert_timestamp(ts);
    return error;
}

static void test_envelope_without_details(void **state)
{
    (void)state;
    char before[32], after[32];
    clock_format_iso8601(before, sizeof before, clock_wall_ms());
    json_t *env = reply_envelope(PROXY_ERROR_NOT_FOUND, NULL, NULL);
    clock_format_iso8601(after, sizeof after, clock_wall_ms());
    json_t *error = check_shape(env, reply_error_code(PROXY_ERROR_NOT_FOUND), 3);
    /* details is omitted, not null (cloro-api.md 9.1). */
    assert_null(json_object_get(error, "details"));
    /* The timestamp is now: the ISO form sorts like the time it shows. */
    const char *ts = json_string_value(json_object_get(error, "timestamp"));
    assert_true(strcmp(before, ts) <= 0);
    assert_true(strcmp(ts, after) <= 0);
    json_decref(env);
}

static void test_envelope_with_details_and_message(void **state)
{
    (void)state;
    json_t *details = json_pack("{s:s}", "id", "/v2/x");
    json_t *env = reply_envelope(PROXY_ERROR_PAYLOAD_TOO_LARGE, "Too big: 20 MiB", details);
    json_t *error = check_shape(env, reply_error_code(PROXY_ERROR_PAYLOAD_TOO_LARGE), 4);
    assert_string_equal(json_string_value(json_object_get(error, "message")), "Too big: 20 MiB");
    json_t *got = json_object_get(error, "details");
    assert_non_null(got);
    assert_ptr_equal(got, details); /* stolen, not copied */
    assert_string_equal(json_string_value(json_object_get(got, "id")), "/v2/x");
    json_decref(env); /* frees details too: ASan reports a leak otherwise */

    /* Details of any JSON type (cloro uses arrays for validation). */
    json_t *array = json_pack("[{s:s}]", "field", "prompt");
    env = reply_envelope(PROXY_ERROR_INTERNAL, NULL, array);
    error = check_shape(env, reply_error_code(PROXY_ERROR_INTERNAL), 4);
    assert_true(json_is_array(json_object_get(error, "details")));
    json_decref(env);
}

static void test_envelope_default_messages_differ(void **state)
{
    (void)state;
    /* NULL message = the table's default for that error, one per row. */
    json_t *a = reply_envelope(PROXY_ERROR_UPSTREAM_TIMEOUT, NULL, NULL);
    json_t *b = reply_envelope(PROXY_ERROR_UPSTREAM_UNAVAILABLE, NULL, NULL);
    const char *ma = json_string_value(json_object_get(json_object_get(a, "error"), "message"));
    const char *mb = json_string_value(json_object_get(json_object_get(b, "error"), "message"));
    assert_non_null(ma);
    assert_non_null(mb);
    assert_string_not_equal(ma, mb);
    json_decref(a);
    json_decref(b);
}

static void test_error_table(void **state)
{
    (void)state;
    static const struct {
        enum proxy_error err;
        int status;
        const char *code;
    } rows[] = {
        {PROXY_ERROR_NOT_FOUND, 404, "NOT_FOUND"},
        {PROXY_ERROR_METHOD_NOT_ALLOWED, 405, "METHOD_NOT_ALLOWED"},
        {PROXY_ERROR_PAYLOAD_TOO_LARGE, 413, "PAYLOAD_TOO_LARGE"},
        {PROXY_ERROR_UPSTREAM_UNAVAILABLE, 502, "UPSTREAM_UNAVAILABLE"},
        {PROXY_ERROR_UPSTREAM_TIMEOUT, 504, "UPSTREAM_TIMEOUT"},
        /* cloro's auth codes for members' tokens (cloro-api.md 9), the proxy's for admin. */
        {PROXY_ERROR_MISSING_API_KEY, 401, "MISSING_API_KEY"},
        {PROXY_ERROR_INVALID_API_KEY, 401, "INVALID_OR_EXPIRED_API_KEY"},
        {PROXY_ERROR_ADMIN_TOKEN_MISSING, 401, "ADMIN_TOKEN_REQUIRED"},
        {PROXY_ERROR_ADMIN_TOKEN_WRONG, 403, "FORBIDDEN"},
        {PROXY_ERROR_ADMIN_TOKEN_UNSET, 403, "ADMIN_TOKEN_NOT_CONFIGURED"},
        {PROXY_ERROR_BUDGET_EXCEEDED, 403, "BUDGET_EXCEEDED"},
        /* offline mode (mode.h): a gateway that may not ask its upstream. */
        {PROXY_ERROR_OFFLINE_CACHE_MISS, 504, "OFFLINE_CACHE_MISS"},
        /* cloro's own code for a 500 (cloro-api.md 9.2). */
        {PROXY_ERROR_INTERNAL, 500, "INTERNAL_SERVER_ERROR"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(reply_error_status(rows[i].err), rows[i].status);
        assert_non_null(reply_error_code(rows[i].err));
        assert_string_equal(reply_error_code(rows[i].err), rows[i].code);
        json_t *env = reply_envelope(rows[i].err, NULL, NULL);
        check_shape(env, rows[i].code, 3);
        json_decref(env);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_without_details),
        cmocka_unit_test(test_envelope_with_details_and_message),
        cmocka_unit_test(test_envelope_default_messages_differ),
        cmocka_unit_test(test_error_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
