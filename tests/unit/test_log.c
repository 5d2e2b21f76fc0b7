/* test_log.c: logfmt values and lines, log levels (log.h), request ids
 * (ids.h) and cloro's timestamp form (clock.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "ids.h"
#include "log.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- log_value -------------------------------------------------------- */

static void value_is(const char *text, const char *want)
{
    char out[256];
    const char *got = log_value(out, sizeof out, text);
    assert_ptr_equal(got, out);
    if (strcmp(out, want) != 0)
        fail_msg("log_value(\"%s\") = [%s], want [%s]", text, out, want);
}

static void test_value_bare(void **state)
{
    (void)state;
    value_is("abc", "abc");
    value_is("/v1/monitor/chatgpt", "/v1/monitor/chatgpt");
    value_is("127.0.0.1:8787", "127.0.0.1:8787");
    value_is("b0864943-5d45-4796-bc64-f052661256f0", "b0864943-5d45-4796-bc64-f052661256f0");
    value_is("a,b;c'd", "a,b;c'd");
}

static void test_value_quoted(void **state)
{
    (void)state;
    value_is("", "\"\"");
    value_is("hello world", "\"hello world\"");
    value_is(" lead", "\" lead\"");
    value_is("a=b", "\"a=b\"");
    value_is("say \"hi\"", "\"say \\\"hi\\\"\"");
    value_is("\"", "\"\\\"\"");
    value_is("C:\\dir", "\"C:\\\\dir\"");
    value_is("a\\\"b", "\"a\\\\\\\"b\"");
}

static void test_value_control_bytes(void **state)
{
    (void)state;
    value_is("a\nb", "\"a\\x0ab\"");
    value_is("a\rb", "\"a\\x0db\"");
    value_is("tab\there", "\"tab\\x09here\"");
    value_is("\x01\x1f", "\"\\x01\\x1f\"");
    value_is("del\x7f", "\"del\\x7f\"");
    value_is("line\n\"q\"", "\"line\\x0a\\\"q\\\"\"");
}

/* Writes into the first size bytes of a larger buffer and checks that the
 * bytes after them are untouched. */
static void truncated_is(size_t size, const char *text, const char *want)
{
    char buf[64];
    assert_true(size < sizeof buf);
    memset(buf, 'Z', sizeof buf);
    log_value(buf, size, text);
    for (size_t i = size; i < sizeof buf; i++)
        if (buf[i] != 'Z')
            fail_msg("log_value(size %zu, \"%s\") wrote byte %zu", size, text, i);
    assert_non_null(memchr(buf, '\0', size));
    if (strcmp(buf, want) != 0)
        fail_msg("log_value(size %zu, \"%s\") = [%s], want [%s]", size, text, buf, want);
}

static void test_value_truncation(void **state)
{
    (void)state;
    /* Quoted values stay quoted: both quotes and the NUL always fit. */
    truncated_is(8, "hello world again", "\"hello\"");
    truncated_is(3, "a b", "\"\"");
    truncated_is(4, "a b", "\"a\"");
    truncated_is(5, "a b", "\"a \"");
    truncated_is(6, "a b", "\"a b\"");
    /* An escape is never cut in half. */
    truncated_is(6, "ab\"cd e", "\"ab\"");
    truncated_is(7, "ab\"cd e", "\"ab\\\"\"");
    truncated_is(8, "ab\ncd e", "\"ab\"");
    truncated_is(9, "ab\ncd e", "\"ab\\x0a\"");
    /* Bare values are cut to fit. */
    truncated_is(5, "abcdefghij", "abcd");
    truncated_is(11, "abcdefghij", "abcdefghij");
}

/* ---- log levels and lines --------------------------------------------- */

static void test_level_parse(void **state)
{
    (void)state;
    const struct {
        const char *text;
        enum log_level level;
    } good[] = {{"error", LOG_LEVEL_ERROR},
                {"warn", LOG_LEVEL_WARN},
                {"info", LOG_LEVEL_INFO},
                {"debug", LOG_LEVEL_DEBUG}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        enum log_level level = (enum log_level)99;
        assert_true(log_level_parse(good[i].text, &level));
        assert_int_equal(level, good[i].level);
        assert_string_equal(log_level_name(good[i].level), good[i].text);
    }
    const char *bad[] = {"", "warning", "err", "trace", "infos", "info ", "0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum log_level level = LOG_LEVEL_WARN;
        if (log_level_parse(bad[i], &level))
            fail_msg("log_level_parse accepted '%s'", bad[i]);
        assert_int_equal(level, LOG_LEVEL_WARN);
    }
}

/* Runs the logging calls with stderr redirected to a file; returns its text. */
static char *capture_stderr(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    long size = lseek(fileno(tmp), 0, SEEK_END);
    assert_true(size >= 0);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fileno(tmp), text, (size_t)size, 0), size);
    fclose(tmp);
    return text;
}

static void log_some_lines(void)
{
    log_threshold = LOG_LEVEL_WARN;
    log_warn("upstream_error", "rid=%s status=%d", "abc", 502);
    log_info("hidden", "x=%d", 1); /* above the threshold: not written */
    log_debug("hidden", NULL);
    log_error("no_fields", NULL);
    log_threshold = LOG_LEVEL_INFO;
}

static void test_log_lines(void **state)
{
    (void)state;
    char *text = capture_stderr(log_some_lines);
    regex_t re;
    assert_int_equal(
        regcomp(&re,
                "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                "level=warn event=upstream_error rid=abc status=502\n"
                "ts=[0-9T:.Z-]{24} level=error event=no_fields\n$",
                REG_EXTENDED | REG_NOSUB),
        0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("unexpected log output:\n%s", text);
    assert_null(strstr(text, "hidden"));
    free(text);
}

static void log_long_line(void)
{
    static char big[8192];
    memset(big, 'x', sizeof big - 1);
    log_write(LOG_LEVEL_INFO, "big", "v=%s", big);
}

static void test_log_line_truncated_keeps_newline(void **state)
{
    (void)state;
    char *text = capture_stderr(log_long_line);
    size_t len = strlen(text);
    assert_true(len > 100);
    assert_true(len <= 4096);
    assert_int_equal(text[len - 1], '\n');
    assert_ptr_equal(strchr(text, '\n'), text + len - 1); /* one line */
    free(text);
}

/* ---- ids_uuid4 -------------------------------------------------------- */

static void check_uuid4(const char *id)
{
    assert_int_equal(strlen(id), IDS_UUID_LEN);
    for (size_t i = 0; i < IDS_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (id[i] != '-')
                fail_msg("'%s': no dash at %zu", id, i);
        } else if (strchr("0123456789abcdef", id[i]) == NULL || id[i] == '\0') {
            fail_msg("'%s': byte %zu is not lowercase hex", id, i);
        }
    }
    if (id[14] != '4')
        fail_msg("'%s': version nibble is not 4", id);
    if (strchr("89ab", id[19]) == NULL)
        fail_msg("'%s': variant nibble is not 8, 9, a or b", id);
}

static void test_uuid4(void **state)
{
    (void)state;
    struct id_source src;
    ids_init(&src);
    char a[IDS_UUID_LEN + 1], b[IDS_UUID_LEN + 1];
    ids_uuid4(&src, a);
    ids_uuid4(&src, b);
    check_uuid4(a);
    check_uuid4(b);
    assert_string_not_equal(a, b);
    /* Enough draws that fixed bits set by chance alone would not pass, and
     * that every variant nibble shows up. */
    bool variant_seen[4] = {false};
    for (int i = 0; i < 2000; i++) {
        char id[IDS_UUID_LEN + 2];
        id[IDS_UUID_LEN + 1] = 'Z';
        ids_uuid4(&src, id);
        assert_int_equal(id[IDS_UUID_LEN + 1], 'Z');
        check_uuid4(id);
        variant_seen[strchr("89ab", id[19]) - "89ab"] = true;
    }
    for (int i = 0; i < 4; i++)
        assert_true(variant_seen[i]);
    /* Two sources (two processes) do not repeat each other. */
    struct id_source other;
    ids_init(&other);
    ids_uuid4(&src, a);
    ids_uuid4(&other, b);
    assert_string_not_equal(a, b);
}

/* ---- clock_format_iso8601 --------------------------------------------- */

static void iso_is(int64_t wall_ms, const char *want)
{
    char out[32];
    memset(out, 'Z', sizeof out);
    const char *got = clock_format_iso8601(out, sizeof out, wall_ms);
    assert_ptr_equal(got, out);
    assert_string_equal(out, want);
}

static void test_iso8601(void **state)
{
    (void)state;
    iso_is(0, "1970-01-01T00:00:00.000Z");
    iso_is(INT64_C(1736942400000), "2025-01-15T12:00:00.000Z"); /* cloro-api.md 9.1 */
    iso_is(INT64_C(1736942400123), "2025-01-15T12:00:00.123Z");
    iso_is(INT64_C(1736942400007), "2025-01-15T12:00:00.007Z");
    iso_is(INT64_C(951782399999), "2000-02-28T23:59:59.999Z");
    iso_is(INT64_C(951782400000), "2000-02-29T00:00:00.000Z"); /* leap day */
    iso_is(INT64_C(4102444799999), "2099-12-31T23:59:59.999Z");

    /* The smallest buffer the header allows holds the whole form. */
    char small[25];
    clock_format_iso8601(small, sizeof small, INT64_C(1736942400123));
    assert_string_equal(small, "2025-01-15T12:00:00.123Z");

    /* Wall time is milliseconds since the epoch, today-ish. */
    int64_t now = clock_wall_ms();
    assert_true(now > INT64_C(1700000000000));
    int64_t m1 = clock_mono_us();
    int64_t m2 = clock_mono_us();
    assert_true(m2 >= m1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_bare),
        cmocka_unit_test(test_value_quoted),
        cmocka_unit_test(test_value_control_bytes),
        cmocka_unit_test(test_value_truncation),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_log_line_truncated_keeps_newline),
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_iso8601),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
