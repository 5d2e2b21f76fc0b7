/* test_cli.c: the cloro-proxy command line as a user meets it: help and
 * version, check-config with line numbers, and the exit statuses (2 for a bad
 * configuration or flag, 1 for a failure at start-up), each run as a real
 * process. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void assert_output_has(const struct cli_result *r, const char *needle)
{
    if (strstr(r->output, needle) == NULL)
        fail_msg("expected '%s' in:\n%s", needle, r->output);
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/cloro-it-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_help_and_version(void **state)
{
    (void)state;
    struct cli_result r;
    cli_run(&r, (const char *[]){"--version", NULL});
    assert_int_equal(r.status, 0);
    assert_output_has(&r, "cloro-proxy " CLORO_VERSION);
    free(r.output);
    cli_run(&r, (const char *[]){"--help", NULL});
    assert_int_equal(r.status, 0);
    const char *flags[] = {"--config",    "--listen",    "--upstream",
                           "--cache-dir", "--log-level", "check-config"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        assert_output_has(&r, flags[i]);
    free(r.output);
}

static void test_bad_flags_exit_2(void **state)
{
    (void)state;
    struct cli_result r;
    cli_run(&r, (const char *[]){"--listen", "no-port-here", NULL});
    assert_int_equal(r.status, 2);
    assert_output_has(&r, "--listen");
    assert_output_has(&r, "HOST:PORT");
    free(r.output);
    cli_run(&r, (const char *[]){"serve", "--upstream", "ftp://example", NULL});
    assert_int_equal(r.status, 2);
    assert_output_has(&r, "--upstream");
    free(r.output);
    cli_run(&r, (const char *[]){"--log-level", "loud", NULL});
    assert_int_equal(r.status, 2);
    assert_output_has(&r, "error, warn, info or debug");
    free(r.output);
    cli_run(&r, (const char *[]){"--no-such-flag", NULL});
    assert_int_equal(r.status, 2);
    assert_output_has(&r, "--help");
    free(r.output);
    cli_run(&r, (const char *[]){"frobnicate", NULL});
    assert_int_equal(r.status, 2);
    assert_output_has(&r, "unknown command");
    free(r.output);
}

static void test_check_config(void **state)
{
    (void)state;
    struct cli_result r;
    cli_run(&r, (const char *[]){"check-config", SOURCE_DIR "/conf/cloro-proxy.conf", NULL});
    assert_int_equal(r.status, 0);
    assert_output_has(&r, "ok");
    free(r.output);

    char *bad = write_temp("listen = 127.0.0.1:8787\n"
                           "max_body_bytes = huge\n"
                           "colour = blue\n"
                           "drain_timeout = 5s\n"
                           "not a pair\n");
    cli_run(&r, (const char *[]){"check-config", bad, NULL});
    assert_int_equal(r.status, 2);
    char line[300];
    snprintf(line, sizeof line, "%s:2: max_body_bytes", bad);
    assert_output_has(&r, line);
    snprintf(line, sizeof line, "%s:3: unknown key 'colour'", bad);
    assert_output_has(&r, line);
    snprintf(line, sizeof line, "%s:5: not a 'key = value' line", bad);
    assert_output_has(&r, line);
    assert_output_has(&r, "3 problems");
    free(r.output);

    /* serve refuses the same file, with the same words. */
    cli_run(&r, (const char *[]){"serve", "--config", bad, NULL});
    assert_int_equal(r.status, 2);
    snprintf(line, sizeof line, "%s:3: unknown key 'colour'", bad);
    assert_output_has(&r, line);
    free(r.output);
    unlink(bad);
    free(bad);
}

static void test_unreadable_key_file_exits_2(void **state)
{
    (void)state;
    struct cli_result r;
    cli_run(&r, (const char *[]){"--api-key-file", "/nonexistent/cloro/key", "--listen",
                                 "127.0.0.1:0", NULL});
    assert_int_equal(r.status, 2);
    assert_output_has(&r, "api_key_file");
    assert_output_has(&r, "/nonexistent/cloro/key");
    free(r.output);
}

static void test_startup_failures_exit_1(void **state)
{
    (void)state;
    /* A port already taken. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 1), 0);
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    char listen_addr[32];
    snprintf(listen_addr, sizeof listen_addr, "127.0.0.1:%u", ntohs(a.sin_port));
    char cache[] = "/tmp/cloro-it-cache-XXXXXX";
    assert_non_null(mkdtemp(cache));
    struct cli_result r;
    cli_run(&r, (const char *[]){"--listen", listen_addr, "--cache-dir", cache, NULL});
    assert_int_equal(r.status, 1);
    assert_output_has(&r, "event=bind_failed");
    free(r.output);
    close(s);

    /* A cache directory that cannot be made: a file stands in its way. */
    char *file = write_temp("not a directory");
    char sub[300];
    snprintf(sub, sizeof sub, "%s/cache", file);
    cli_run(&r, (const char *[]){"--listen", "127.0.0.1:0", "--cache-dir", sub, NULL});
    assert_int_equal(r.status, 1);
    assert_output_has(&r, "event=cache_dir_failed");
    free(r.output);
    unlink(file);
    free(file);
    rmdir(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_bad_flags_exit_2),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_unreadable_key_file_exits_2),
        cmocka_unit_test(test_startup_failures_exit_1),
    };
    return cmocka_run_group_tests_name("integration_cli", tests, NULL, NULL);
}
