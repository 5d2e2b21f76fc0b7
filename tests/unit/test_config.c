/* test_config.c: the config table, value parsers, INI loading with line
 * numbers, the API key's source and the dump. Files are written to /tmp and
 * removed; CLORO_API_KEY is set and cleared by the tests that need it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KIB (INT64_C(1024))
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* ---- helpers ---------------------------------------------------------- */

/* Writes text to a fresh file under /tmp; returns its path (free + unlink). */
static char *write_temp(const char *text)
{
    char tmpl[] = "/tmp/cloro-unit-config-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char *path = strdup(tmpl);
    assert_non_null(path);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

/* Asserts that line starts with "PATH:LINE: " and contains every needle. */
static void assert_problem(const char *line, const char *path, int lineno, const char *needle1,
                           const char *needle2)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, lineno);
    if (strncmp(line, prefix, strlen(prefix)) != 0)
        fail_msg("expected a problem starting with '%s', got '%s'", prefix, line);
    if (needle1 != NULL && strstr(line, needle1) == NULL)
        fail_msg("expected '%s' in '%s'", needle1, line);
    if (needle2 != NULL && strstr(line, needle2) == NULL)
        fail_msg("expected '%s' in '%s'", needle2, line);
}

static void print_problems(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        print_message("  problem %zu: %s\n", i, errs->lines[i]);
}

/* ---- config_parse_bytes ----------------------------------------------- */

static int64_t bytes_ok(const char *text)
{
    int64_t v = -42;
    if (config_parse_bytes(text, &v) != 0)
        fail_msg("config_parse_bytes rejected '%s'", text);
    return v;
}

static void bytes_bad(const char *text)
{
    int64_t v = -42;
    if (config_parse_bytes(text, &v) != -1)
        fail_msg("config_parse_bytes accepted '%s' as %lld", text, (long long)v);
}

static void test_parse_bytes_values(void **state)
{
    (void)state;
    assert_int_equal(bytes_ok("0"), 0);
    assert_int_equal(bytes_ok("1"), 1);
    assert_int_equal(bytes_ok("512"), 512);
    assert_int_equal(bytes_ok("7B"), 7);
    assert_int_equal(bytes_ok("1k"), KIB);
    assert_int_equal(bytes_ok("1KB"), KIB);
    assert_int_equal(bytes_ok("64KiB"), 64 * KIB);
    assert_int_equal(bytes_ok("64kib"), 64 * KIB);
    assert_int_equal(bytes_ok("16MiB"), 16 * MIB);
    assert_int_equal(bytes_ok("16M"), 16 * MIB);
    assert_int_equal(bytes_ok("16mb"), 16 * MIB);
    assert_int_equal(bytes_ok("16 MiB"), 16 * MIB);
    assert_int_equal(bytes_ok("2GiB"), 2 * GIB);
    assert_int_equal(bytes_ok("4g"), 4 * GIB);
}

static void test_parse_bytes_overflow(void **state)
{
    (void)state;
    assert_true(bytes_ok("9223372036854775807") == INT64_MAX);
    bytes_bad("9223372036854775808");  /* INT64_MAX + 1 */
    bytes_bad("18446744073709551616"); /* beyond unsigned long long */
    bytes_bad("99999999999999999999999999");
    /* 2^33 GiB = 2^63 bytes: one past INT64_MAX; one GiB less still fits. */
    bytes_bad("8589934592GiB");
    assert_true(bytes_ok("8589934591GiB") == INT64_C(8589934591) * GIB);
    bytes_bad("9007199254740992KiB"); /* 2^53 KiB = 2^63 */
}

static void test_parse_bytes_junk(void **state)
{
    (void)state;
    bytes_bad("");
    bytes_bad("abc");
    bytes_bad("MiB");
    bytes_bad("16XiB");
    bytes_bad("16MiBs");
    bytes_bad("16MiB16");
    bytes_bad("1.5MiB");
    bytes_bad(" 16MiB");
    bytes_bad("0x10");
    bytes_bad("16 M i B");
    /* Negatives and signs. */
    bytes_bad("-1");
    bytes_bad("-1KiB");
    bytes_bad("+1");
}

/* ---- config_parse_duration_ms ----------------------------------------- */

static int64_t dur_ok(const char *text)
{
    int64_t v = -42;
    if (config_parse_duration_ms(text, &v) != 0)
        fail_msg("config_parse_duration_ms rejected '%s'", text);
    return v;
}

static void dur_bad(const char *text)
{
    int64_t v = -42;
    if (config_parse_duration_ms(text, &v) != -1)
        fail_msg("config_parse_duration_ms accepted '%s' as %lld", text, (long long)v);
}

static void test_parse_duration_values(void **state)
{
    (void)state;
    assert_int_equal(dur_ok("0"), 0);
    assert_int_equal(dur_ok("30"), 30000); /* a bare number is seconds */
    assert_int_equal(dur_ok("500ms"), 500);
    assert_int_equal(dur_ok("500MS"), 500);
    assert_int_equal(dur_ok("30s"), 30000);
    assert_int_equal(dur_ok("30S"), 30000);
    assert_int_equal(dur_ok("5m"), 5 * 60 * 1000);
    assert_int_equal(dur_ok("1h"), 3600 * 1000);
    assert_int_equal(dur_ok("24h"), 24 * 3600 * 1000);
    assert_int_equal(dur_ok("30d"), INT64_C(30) * 24 * 3600 * 1000);
    assert_int_equal(dur_ok("10 s"), 10000);
}

static void test_parse_duration_overflow(void **state)
{
    (void)state;
    assert_true(dur_ok("9223372036854775807ms") == INT64_MAX);
    dur_bad("9223372036854775808ms");
    assert_true(dur_ok("9223372036854775s") == INT64_C(9223372036854775000));
    dur_bad("9223372036854776s");
    dur_bad("9223372036854776"); /* bare: seconds */
    assert_true(dur_ok("2562047788015h") == INT64_C(2562047788015) * 3600000);
    dur_bad("2562047788016h");
    dur_bad("99999999999999999999999s");
}

static void test_parse_duration_junk(void **state)
{
    (void)state;
    dur_bad("");
    dur_bad("s");
    dur_bad("ms");
    dur_bad("5x");
    dur_bad("5sec");
    dur_bad("5w"); /* days are the largest unit */
    dur_bad("1.5s");
    dur_bad("5s5");
    dur_bad("5ms5");
    dur_bad(" 5s");
    dur_bad("-1");
    dur_bad("-1s");
    dur_bad("+1s");
}

/* ---- config_parse_bool ------------------------------------------------ */

static void test_parse_bool(void **state)
{
    (void)state;
    const char *yes[] = {"true", "TRUE", "True", "yes", "YES", "on", "On", "1"};
    const char *no[] = {"false", "FALSE", "no", "No", "off", "OFF", "0"};
    const char *bad[] = {"", "2", "truee", "tru", "y", "n", "enabled", "-1", " true", "01"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool v = false;
        assert_int_equal(config_parse_bool(yes[i], &v), 0);
        if (!v)
            fail_msg("'%s' parsed as false", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        bool v = true;
        assert_int_equal(config_parse_bool(no[i], &v), 0);
        if (v)
            fail_msg("'%s' parsed as true", no[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool v = false;
        if (config_parse_bool(bad[i], &v) != -1)
            fail_msg("'%s' accepted as a bool", bad[i]);
    }
}

/* ---- config_parse_listen ---------------------------------------------- */

static void listen_ok(const char *text, const char *host, uint16_t port)
{
    char *h = NULL;
    uint16_t p = 1;
    if (config_parse_listen(text, &h, &p) != 0)
        fail_msg("config_parse_listen rejected '%s'", text);
    assert_non_null(h);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
    free(h);
}

static void listen_bad(const char *text)
{
    char *h = NULL;
    uint16_t p = 0;
    if (config_parse_listen(text, &h, &p) != -1) {
        free(h);
        fail_msg("config_parse_listen accepted '%s'", text);
    }
}

static void test_parse_listen_good(void **state)
{
    (void)state;
    listen_ok("127.0.0.1:8787", "127.0.0.1", 8787);
    listen_ok("0.0.0.0:0", "0.0.0.0", 0);
    listen_ok("localhost:65535", "localhost", 65535);
    listen_ok("example.org:1", "example.org", 1);
    listen_ok("[::1]:8787", "::1", 8787);
    listen_ok("[::]:80", "::", 80);
    listen_ok("[2001:db8::2]:443", "2001:db8::2", 443);
}

static void test_parse_listen_bad(void **state)
{
    (void)state;
    listen_bad("");
    listen_bad("127.0.0.1");  /* missing port */
    listen_bad("127.0.0.1:"); /* empty port */
    listen_bad(":8787");      /* missing host */
    listen_bad("localhost");
    listen_bad("host:65536"); /* port > 65535 */
    listen_bad("host:99999");
    listen_bad("host:123456");
    listen_bad("host:4294967297"); /* would wrap to 1 in 32 bits */
    listen_bad("host:-1");
    listen_bad("host:+80");
    listen_bad("host:80a");
    listen_bad("host: 80");
    listen_bad("ho st:80");
    listen_bad("::1:8787");  /* IPv6 needs brackets */
    listen_bad("[::1]");     /* missing port */
    listen_bad("[::1]:");    /* empty port */
    listen_bad("[::1:8787"); /* unclosed bracket */
    listen_bad("[]:80");     /* empty host */
    listen_bad("[::1]:70000");
}

/* ---- config_init and the table ---------------------------------------- */

static void test_init_defaults_match_table(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    size_t count = 0;
    const struct config_key *keys = config_keys(&count);
    assert_true(count > 0);
    for (size_t i = 0; i < count; i++) {
        const struct config_key *k = &keys[i];
        const void *slot = (const char *)&cfg + k->offset;
        assert_ptr_equal(config_key_find(k->name), k);
        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
        case CONFIG_LISTEN:
        case CONFIG_URL:
        case CONFIG_HOST_LIST:
            assert_non_null(*(char *const *)slot);
            assert_string_equal(*(char *const *)slot, k->default_value);
            break;
        case CONFIG_CHOICE:
            assert_non_null(k->choices);
            assert_non_null(strstr(k->choices, k->default_value));
            assert_string_equal(*(char *const *)slot, k->default_value);
            break;
        case CONFIG_BOOL: {
            bool want;
            assert_int_equal(config_parse_bool(k->default_value, &want), 0);
            assert_int_equal(*(const bool *)slot, want);
            break;
        }
        case CONFIG_LOG_LEVEL: {
            enum log_level want;
            assert_true(log_level_parse(k->default_value, &want));
            assert_int_equal(*(const enum log_level *)slot, want);
            break;
        }
        case CONFIG_COUNT:
            assert_int_equal(*(const int64_t *)slot, strtoll(k->default_value, NULL, 10));
            assert_in_range(*(const int64_t *)slot, k->min, k->max);
            break;
        case CONFIG_BYTES: {
            int64_t want;
            assert_int_equal(config_parse_bytes(k->default_value, &want), 0);
            assert_int_equal(*(const size_t *)slot, (size_t)want);
            assert_in_range(want, k->min, k->max);
            break;
        }
        case CONFIG_DURATION: {
            int64_t want;
            assert_int_equal(config_parse_duration_ms(k->default_value, &want), 0);
            assert_int_equal(*(const int64_t *)slot, want);
            assert_in_range(want, k->min, k->max);
            break;
        }
        default:
            fail_msg("key %s has an unknown type %d", k->name, (int)k->type);
        }
        assert_non_null(k->help);
        assert_true(k->help[0] != '\0');
    }
    assert_null(config_key_find("no_such_key"));

    /* The documented defaults, spelled out (README and conf/cloro-proxy.conf). */
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8787);
    assert_string_equal(cfg.upstream, "https://api.cloro.dev");
    assert_string_equal(cfg.api_key_file, "");
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_true(cfg.access_log);
    assert_int_equal(cfg.max_body_bytes, 16 * MIB);
    assert_int_equal(cfg.upstream_timeout_ms, 300000);
    assert_int_equal(cfg.drain_timeout_ms, 30000);
    assert_null(cfg.api_key);
    assert_null(cfg.api_key_source);
    assert_null(cfg.config_file);
    assert_int_equal(cfg.api_key_file_line, 0);
    config_deinit(&cfg);
}

/* ---- config_set ------------------------------------------------------- */

/* Expects config_set to fail with a message holding needle (and not the key). */
static void set_bad(struct config *cfg, const char *name, const char *value, const char *needle)
{
    char err[512] = "";
    if (config_set(cfg, name, value, err, sizeof err) != -1)
        fail_msg("config_set(%s, '%s') succeeded", name, value);
    assert_true(err[0] != '\0');
    if (needle != NULL && strstr(err, needle) == NULL)
        fail_msg("config_set(%s, '%s'): expected '%s' in '%s'", name, value, needle, err);
    if (strstr(err, name) != NULL)
        fail_msg("config_set(%s, '%s'): the message names the key: '%s'", name, value, err);
}

static void set_ok(struct config *cfg, const char *name, const char *value)
{
    char err[512] = "";
    if (config_set(cfg, name, value, err, sizeof err) != 0)
        fail_msg("config_set(%s, '%s') failed: %s", name, value, err);
}

static void test_set_unknown_key(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    char err[128] = "";
    assert_int_equal(config_set(&cfg, "listen_addr", "1.2.3.4:5", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown"));
    assert_int_equal(config_set(&cfg, "", "x", err, sizeof err), -1);
    config_deinit(&cfg);
}

static void test_set_listen(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    set_bad(&cfg, "listen", "127.0.0.1", "127.0.0.1");
    set_bad(&cfg, "listen", "host:65536", "host:65536");
    set_bad(&cfg, "listen", "::1:80", NULL);
    /* A failed set leaves the previous value whole. */
    assert_string_equal(cfg.listen, "127.0.0.1:8787");
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8787);
    set_ok(&cfg, "listen", "[::1]:9000");
    assert_string_equal(cfg.listen, "[::1]:9000");
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 9000);
    set_ok(&cfg, "listen", "0.0.0.0:0");
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 0);
    config_deinit(&cfg);
}

static void test_set_url(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    set_bad(&cfg, "upstream", "ftp://api.cloro.dev", "ftp://api.cloro.dev");
    set_bad(&cfg, "upstream", "api.cloro.dev", NULL);
    set_bad(&cfg, "upstream", "http://", NULL);
    set_bad(&cfg, "upstream", "https:///v1", NULL);
    set_bad(&cfg, "upstream", "https://api cloro.dev", NULL);
    set_bad(&cfg, "upstream", "https://api.cloro.dev?x=1", NULL);
    set_bad(&cfg, "upstream", "https://api.cloro.dev#frag", NULL);
    set_bad(&cfg, "upstream", "", NULL);
    assert_string_equal(cfg.upstream, "https://api.cloro.dev");
    set_ok(&cfg, "upstream", "http://127.0.0.1:9999/");
    assert_string_equal(cfg.upstream, "http://127.0.0.1:9999"); /* trailing slash stripped */
    set_ok(&cfg, "upstream", "https://example.org/base//");
    assert_string_equal(cfg.upstream, "https://example.org/base");
    config_deinit(&cfg);
}

static void test_set_bool_and_log_level(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    set_bad(&cfg, "access_log", "maybe", "maybe");
    set_bad(&cfg, "access_log", "", NULL);
    assert_true(cfg.access_log);
    set_ok(&cfg, "access_log", "off");
    assert_false(cfg.access_log);

    set_bad(&cfg, "log_level", "verbose", "verbose");
    set_bad(&cfg, "log_level", "", NULL);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    set_ok(&cfg, "log_level", "debug");
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    set_ok(&cfg, "log_level", "error");
    assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR);
    config_deinit(&cfg);
}

/* A word from a fixed list: whole words only, the list named in the error. */
static void test_set_choice(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    assert_string_equal(cfg.webhook_delivery, "proxy");
    set_bad(&cfg, "webhook_delivery", "cloro", "proxy|upstream");
    set_bad(&cfg, "webhook_delivery", "prox", "prox");
    set_bad(&cfg, "webhook_delivery", "proxy|upstream", NULL);
    set_bad(&cfg, "webhook_delivery", "", NULL);
    assert_string_equal(cfg.webhook_delivery, "proxy");
    set_ok(&cfg, "webhook_delivery", "upstream");
    assert_string_equal(cfg.webhook_delivery, "upstream");
    config_deinit(&cfg);
}

static void test_set_count(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    const char *key = "upstream_max_connections";
    set_bad(&cfg, key, "abc", "abc");
    set_bad(&cfg, key, "", NULL);
    set_bad(&cfg, key, "12x", "12x");
    set_bad(&cfg, key, "1.5", NULL);
    set_bad(&cfg, key, "99999999999999999999", NULL);
    set_bad(&cfg, key, "0", "range");     /* min 1 */
    set_bad(&cfg, key, "-1", "range");    /* negative */
    set_bad(&cfg, key, "65537", "range"); /* max 65536 */
    assert_int_equal(cfg.upstream_max_connections, 256);
    set_ok(&cfg, key, "1");
    assert_int_equal(cfg.upstream_max_connections, 1);
    set_ok(&cfg, key, "65536");
    assert_int_equal(cfg.upstream_max_connections, 65536);
    config_deinit(&cfg);
}

static void test_set_bytes(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    set_bad(&cfg, "max_body_bytes", "lots", "lots");
    set_bad(&cfg, "max_body_bytes", "-1", NULL);
    set_bad(&cfg, "max_body_bytes", "0", "range");       /* min 1 */
    set_bad(&cfg, "max_body_bytes", "1025MiB", "range"); /* max 1GiB */
    set_bad(&cfg, "max_body_bytes", "99999999999GiB", NULL);
    assert_int_equal(cfg.max_body_bytes, 16 * MIB);
    set_ok(&cfg, "max_body_bytes", "1");
    assert_int_equal(cfg.max_body_bytes, 1);
    set_ok(&cfg, "max_body_bytes", "1GiB");
    assert_int_equal(cfg.max_body_bytes, GIB);

    set_bad(&cfg, "max_header_bytes", "1023", "range"); /* min 1KiB */
    set_bad(&cfg, "max_header_bytes", "17MiB", "range");
    set_ok(&cfg, "max_header_bytes", "1KiB");
    assert_int_equal(cfg.max_header_bytes, KIB);

    set_bad(&cfg, "max_response_bytes", "4097MiB", "range"); /* max 4GiB */
    set_ok(&cfg, "max_response_bytes", "4GiB");
    assert_int_equal(cfg.max_response_bytes, 4 * GIB);
    config_deinit(&cfg);
}

static void test_set_duration(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    set_bad(&cfg, "client_timeout", "5x", "5x");
    set_bad(&cfg, "client_timeout", "-1s", NULL);
    set_bad(&cfg, "client_timeout", "999ms", "range"); /* min 1s */
    set_bad(&cfg, "client_timeout", "61m", "range");   /* max 1h */
    assert_int_equal(cfg.client_timeout_ms, 60000);
    set_ok(&cfg, "client_timeout", "1s");
    assert_int_equal(cfg.client_timeout_ms, 1000);
    set_ok(&cfg, "client_timeout", "1h");
    assert_int_equal(cfg.client_timeout_ms, 3600000);

    set_bad(&cfg, "upstream_timeout", "0", "range"); /* min 1ms */
    set_bad(&cfg, "upstream_timeout", "25h", "range");
    set_ok(&cfg, "upstream_timeout", "24h");
    assert_int_equal(cfg.upstream_timeout_ms, 24 * 3600000);
    set_ok(&cfg, "upstream_timeout", "1ms");
    assert_int_equal(cfg.upstream_timeout_ms, 1);

    set_ok(&cfg, "drain_timeout", "0"); /* min 0: stop at once */
    assert_int_equal(cfg.drain_timeout_ms, 0);
    set_bad(&cfg, "drain_timeout", "2h", "range");
    assert_int_equal(cfg.drain_timeout_ms, 0);

    set_bad(&cfg, "upstream_connect_timeout", "0ms", "range");
    set_ok(&cfg, "upstream_connect_timeout", "250ms");
    assert_int_equal(cfg.upstream_connect_timeout_ms, 250);
    config_deinit(&cfg);
}

static void test_set_path(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    set_ok(&cfg, "cache_dir", "/var/lib/cloro-proxy/cache");
    assert_string_equal(cfg.cache_dir, "/var/lib/cloro-proxy/cache");
    set_ok(&cfg, "api_key_file", "/etc/cloro-proxy/key");
    assert_string_equal(cfg.api_key_file, "/etc/cloro-proxy/key");
    config_deinit(&cfg);
}

/* ---- config_load_file ------------------------------------------------- */

struct loaded {
    struct config cfg;
    struct config_errors errs;
    char *path;
    size_t problems;
};

static void load_text(struct loaded *l, const char *text)
{
    memset(l, 0, sizeof *l);
    config_init(&l->cfg);
    l->path = write_temp(text);
    l->problems = config_load_file(&l->cfg, l->path, &l->errs);
    print_problems(&l->errs);
}

static void loaded_free(struct loaded *l)
{
    config_errors_free(&l->errs);
    config_deinit(&l->cfg);
    remove_temp(l->path);
}

static void test_load_valid(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "# a comment\n"
                  "; another comment\n"
                  "\n"
                  "listen = 127.0.0.1:9000\n"
                  "upstream=http://127.0.0.1:9999/\n"
                  "log_level   =   debug  \n"
                  "api_key_file = /etc/key\n"
                  "max_body_bytes = 1MiB\n");
    assert_int_equal(l.problems, 0);
    assert_int_equal(l.errs.count, 0);
    assert_string_equal(l.cfg.listen_host, "127.0.0.1");
    assert_int_equal(l.cfg.listen_port, 9000);
    assert_string_equal(l.cfg.upstream, "http://127.0.0.1:9999");
    assert_int_equal(l.cfg.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(l.cfg.max_body_bytes, MIB);
    assert_string_equal(l.cfg.api_key_file, "/etc/key");
    assert_int_equal(l.cfg.api_key_file_line, 7);
    assert_non_null(l.cfg.config_file);
    assert_string_equal(l.cfg.config_file, l.path);
    loaded_free(&l);
}

static void test_load_unknown_key(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "listen = 127.0.0.1:9001\n"
                  "\n"
                  "# comment\n"
                  "bogus_key = 1\n"
                  "drain_timeout = 5s\n");
    assert_int_equal(l.problems, 1);
    assert_int_equal(l.errs.count, 1);
    assert_problem(l.errs.lines[0], l.path, 4, "bogus_key", "unknown key");
    /* The keys around it still apply. */
    assert_int_equal(l.cfg.listen_port, 9001);
    assert_int_equal(l.cfg.drain_timeout_ms, 5000);
    loaded_free(&l);
}

static void test_load_unknown_section(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "drain_timeout = 5s\n"
                  "[server]\n"
                  "listen = 10.0.0.1:80\n");
    assert_int_equal(l.problems, 1);
    assert_problem(l.errs.lines[0], l.path, 2, "[server]", NULL);
    /* A key under an unknown section is not applied. */
    assert_string_equal(l.cfg.listen, "127.0.0.1:8787");
    assert_int_equal(l.cfg.drain_timeout_ms, 5000);
    loaded_free(&l);
}

static void test_load_bad_value(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "\n"
                  "\n"
                  "max_body_bytes = lots\n"
                  "client_timeout = 10ms\n");
    assert_int_equal(l.problems, 2);
    assert_problem(l.errs.lines[0], l.path, 3, "max_body_bytes", "lots");
    assert_problem(l.errs.lines[1], l.path, 4, "client_timeout", "range");
    assert_int_equal(l.cfg.max_body_bytes, 16 * MIB);
    assert_int_equal(l.cfg.client_timeout_ms, 60000);
    loaded_free(&l);
}

static void test_load_provider_sections(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "cache_ttl = 2h\n"
                  "[provider google/news]\n"
                  "cache_ttl = 15m\n"
                  "[provider chatgpt]\n"
                  "cache_ttl = 0\n"
                  "colour = red\n"
                  "[provider bing]\n"
                  "cache_ttl = 1h\n"
                  "[provider gemini]\n"
                  "cache_ttl = soon\n");
    assert_int_equal(l.problems, 3);
    assert_problem(l.errs.lines[0], l.path, 6, "colour", "provider");
    assert_problem(l.errs.lines[1], l.path, 7, "bing", NULL);
    assert_problem(l.errs.lines[2], l.path, 10, "cache_ttl", "soon");
    assert_int_equal(config_cache_ttl_ms(&l.cfg, "google/news"), 15 * 60 * 1000);
    assert_int_equal(config_cache_ttl_ms(&l.cfg, "chatgpt"), 0);
    assert_int_equal(config_cache_ttl_ms(&l.cfg, "gemini"), 2 * 3600 * 1000);
    assert_int_equal(config_cache_ttl_ms(&l.cfg, "perplexity"), 2 * 3600 * 1000);
    assert_int_equal(config_cache_ttl_ms(&l.cfg, NULL), 2 * 3600 * 1000);
    loaded_free(&l);
}

/* upstream_mode: global, per provider both ways, and a bad value named with
 * its line. */
static void test_load_provider_upstream_mode(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "upstream_mode = async\n"
                  "[provider google]\n"
                  "upstream_mode = sync\n"
                  "[provider gemini]\n"
                  "upstream_mode = later\n");
    assert_int_equal(l.problems, 1);
    assert_problem(l.errs.lines[0], l.path, 5, "upstream_mode", "later");
    assert_true(config_upstream_async(&l.cfg, "chatgpt"));
    assert_false(config_upstream_async(&l.cfg, "google"));
    assert_true(config_upstream_async(&l.cfg, "gemini")); /* the bad line is not applied */
    loaded_free(&l);

    load_text(&l, "[provider perplexity]\nupstream_mode = async\n");
    assert_int_equal(l.problems, 0);
    assert_true(config_upstream_async(&l.cfg, "perplexity"));
    assert_false(config_upstream_async(&l.cfg, "chatgpt"));
    assert_false(config_upstream_async(&l.cfg, NULL));
    loaded_free(&l);
}

static void test_load_duplicate_key(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "drain_timeout = 5s\n"
                  "log_level = warn\n"
                  "drain_timeout = 7s\n");
    assert_int_equal(l.problems, 1);
    assert_problem(l.errs.lines[0], l.path, 3, "drain_timeout", "twice");
    assert_int_equal(l.cfg.drain_timeout_ms, 7000); /* the last value wins */
    assert_int_equal(l.cfg.log_level, LOG_LEVEL_WARN);
    loaded_free(&l);
}

/* Builds "key = " + padding up to len bytes (no newline) into out. */
static void long_line(char *out, size_t len, const char *head, const char *tail_at_199)
{
    size_t o = strlen(head);
    memcpy(out, head, o);
    while (o < len)
        out[o++] = 'a';
    out[o] = '\0';
    if (tail_at_199 != NULL) {
        assert_true(199 + strlen(tail_at_199) <= len);
        memcpy(out + 199, tail_at_199, strlen(tail_at_199));
    }
}

static void test_load_long_line(void **state)
{
    (void)state;
    /* Bytes 199.. of the long line look like a key of their own: if the rest
     * of the line were not skipped, inih would see "nope_key = 1". */
    char long_one[300];
    long_line(long_one, 260, "cache_dir = /", "nope_key = 1");
    char text[1024];
    snprintf(text, sizeof text,
             "access_log = false\n"
             "%s\n"
             "log_level = debug\n"
             "what_key = 1\n",
             long_one);
    struct loaded l;
    load_text(&l, text);
    assert_int_equal(l.problems, 2);
    assert_problem(l.errs.lines[0], l.path, 2, "too long", NULL);
    /* The line after the long one is line 3 and still applies; line 4 is
     * counted right. */
    assert_problem(l.errs.lines[1], l.path, 4, "what_key", NULL);
    assert_string_equal(l.cfg.cache_dir, "./var/cache");
    assert_false(l.cfg.access_log);
    assert_int_equal(l.cfg.log_level, LOG_LEVEL_DEBUG);
    loaded_free(&l);

    /* 198 bytes before the newline is the longest line accepted. */
    char fits[300];
    long_line(fits, 198, "cache_dir = /", NULL);
    snprintf(text, sizeof text, "%s\nlog_level = warn\n", fits);
    load_text(&l, text);
    assert_int_equal(l.problems, 0);
    assert_string_equal(l.cfg.cache_dir, fits + strlen("cache_dir = "));
    assert_int_equal(l.cfg.log_level, LOG_LEVEL_WARN);
    loaded_free(&l);
}

static void test_load_not_a_pair(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "listen = 127.0.0.1:9002\n"
                  "this is not a pair\n"
                  "drain_timeout = 3s\n");
    assert_int_equal(l.problems, 1);
    assert_problem(l.errs.lines[0], l.path, 2, "key = value", NULL);
    assert_int_equal(l.cfg.listen_port, 9002);
    assert_int_equal(l.cfg.drain_timeout_ms, 3000);
    loaded_free(&l);
}

static void test_load_every_malformed_line(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "foo\n"
                  "drain_timeout = 3s\n"
                  "bar baz\n"
                  "[empty]\n"
                  "[unclosed\n");
    assert_int_equal(l.problems, 4);
    assert_problem(l.errs.lines[0], l.path, 1, "key = value", NULL);
    assert_problem(l.errs.lines[1], l.path, 3, "key = value", NULL);
    assert_problem(l.errs.lines[2], l.path, 4, "[empty]", NULL);
    assert_problem(l.errs.lines[3], l.path, 5, "]", NULL);
    assert_int_equal(l.cfg.drain_timeout_ms, 3000);
    loaded_free(&l);
}

static void test_load_indented_key_is_its_own_line(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "listen = 127.0.0.1:9003\n"
                  "   log_level = debug\n"
                  "\taccess_log = false\n");
    assert_int_equal(l.problems, 0);
    assert_int_equal(l.cfg.listen_port, 9003);
    assert_int_equal(l.cfg.log_level, LOG_LEVEL_DEBUG);
    assert_false(l.cfg.access_log);
    loaded_free(&l);
}

static void test_set_count_rejects_signs_and_blanks(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    char err[256];
    assert_int_equal(config_set(&cfg, "upstream_max_connections", " 8", err, sizeof err), -1);
    assert_int_equal(config_set(&cfg, "upstream_max_connections", "+8", err, sizeof err), -1);
    assert_int_equal(config_set(&cfg, "upstream_max_connections", "8", err, sizeof err), 0);
    assert_int_equal(cfg.upstream_max_connections, 8);
    config_deinit(&cfg);
}

static void test_load_missing_file(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    const char *path = "/nonexistent-cloro-dir/cloro-proxy.conf";
    assert_int_equal(config_load_file(&cfg, path, &errs), 1);
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.lines[0], path));
    assert_null(cfg.config_file);
    assert_string_equal(cfg.listen, "127.0.0.1:8787");
    config_errors_free(&errs);
    assert_null(errs.lines);
    assert_int_equal(errs.count, 0);
    config_deinit(&cfg);
}

static void test_load_many_problems(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    config_errors_add(&errs, "earlier: %d", 1);         /* the count returned is this load's */
    char *path = write_temp("listen = 127.0.0.1:9100\n" /* 1 ok */
                            "nope = 1\n"                /* 2 unknown key */
                            "log_level = debug\n"       /* 3 ok */
                            "client_timeout = 1ms\n"    /* 4 out of range */
                            "max_body_bytes = 1MiB\n"   /* 5 ok */
                            "access_log = perhaps\n"    /* 6 bad bool */
                            "drain_timeout = 1s\n"      /* 7 ok */
                            "upstream = gopher://x\n"   /* 8 bad url */
                            "upstream_max_connections = 8\n"); /* 9 ok */
    size_t n = config_load_file(&cfg, path, &errs);
    print_problems(&errs);
    assert_int_equal(n, 4);
    assert_int_equal(errs.count, 5);
    assert_string_equal(errs.lines[0], "earlier: 1");
    assert_problem(errs.lines[1], path, 2, "nope", NULL);
    assert_problem(errs.lines[2], path, 4, "client_timeout", NULL);
    assert_problem(errs.lines[3], path, 6, "access_log", "perhaps");
    assert_problem(errs.lines[4], path, 8, "upstream", "gopher://x");
    /* Every valid key applied, every bad one left at its default. */
    assert_int_equal(cfg.listen_port, 9100);
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(cfg.max_body_bytes, MIB);
    assert_int_equal(cfg.drain_timeout_ms, 1000);
    assert_int_equal(cfg.upstream_max_connections, 8);
    assert_int_equal(cfg.client_timeout_ms, 60000);
    assert_true(cfg.access_log);
    assert_string_equal(cfg.upstream, "https://api.cloro.dev");
    config_errors_free(&errs);
    config_deinit(&cfg);
    remove_temp(path);
}

/* ---- config_finish: a non-loopback listen needs members --------------- */

static void test_listen_loopback(void **state)
{
    (void)state;
    assert_true(config_listen_is_loopback("127.0.0.1"));
    assert_true(config_listen_is_loopback("127.1.2.3"));
    assert_true(config_listen_is_loopback("::1"));
    assert_true(config_listen_is_loopback("localhost"));
    assert_false(config_listen_is_loopback("0.0.0.0"));
    assert_false(config_listen_is_loopback("::"));
    assert_false(config_listen_is_loopback("10.0.0.1"));
    assert_false(config_listen_is_loopback("128.0.0.1"));
    assert_false(config_listen_is_loopback("example.com"));
}

static void test_finish_public_listen_open(void **state)
{
    (void)state;
    const char *open_listens[] = {"0.0.0.0:8787", "[::]:8787", "10.0.0.1:80"};
    for (size_t i = 0; i < sizeof open_listens / sizeof open_listens[0]; i++) {
        struct config cfg;
        struct config_errors errs = {0};
        config_init(&cfg);
        set_ok(&cfg, "listen", open_listens[i]);
        assert_int_equal(config_finish(&cfg, &errs), 1);
        assert_non_null(strstr(errs.lines[0], "listen"));
        assert_non_null(strstr(errs.lines[0], open_listens[i]));
        assert_non_null(strstr(errs.lines[0], "auth = members"));
        config_errors_free(&errs);
        config_deinit(&cfg);
    }
}

static void test_finish_public_listen_members(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    set_ok(&cfg, "listen", "0.0.0.0:8787");
    set_ok(&cfg, "auth", "members");
    assert_int_equal(config_finish(&cfg, &errs), 0);
    config_deinit(&cfg);
    config_init(&cfg);
    set_ok(&cfg, "listen", "[::1]:8787");
    assert_int_equal(config_finish(&cfg, &errs), 0);
    config_deinit(&cfg);
}

/* ---- config_finish: the API key --------------------------------------- */

static int clear_env(void **state)
{
    (void)state;
    unsetenv("CLORO_API_KEY");
    unsetenv("CLORO_ADMIN_TOKEN");
    return 0;
}

static void test_finish_no_key(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    assert_int_equal(config_finish(&cfg, &errs), 0);
    assert_null(cfg.api_key);
    assert_null(cfg.api_key_source);
    config_deinit(&cfg);
}

static void test_finish_env_wins(void **state)
{
    (void)state;
    char *key_file = write_temp("sk_live_from_file\n");
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    set_ok(&cfg, "api_key_file", key_file);
    setenv("CLORO_API_KEY", "sk_live_from_env", 1);
    assert_int_equal(config_finish(&cfg, &errs), 0);
    unsetenv("CLORO_API_KEY");
    assert_non_null(cfg.api_key);
    assert_string_equal(cfg.api_key, "sk_live_from_env");
    assert_string_equal(cfg.api_key_source, "env");
    config_deinit(&cfg);
    remove_temp(key_file);
}

static void test_finish_env_only(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    setenv("CLORO_API_KEY", "sk_live_only_env", 1);
    assert_int_equal(config_finish(&cfg, &errs), 0);
    unsetenv("CLORO_API_KEY");
    assert_string_equal(cfg.api_key, "sk_live_only_env");
    assert_string_equal(cfg.api_key_source, "env");
    config_deinit(&cfg);
}

static void test_finish_file_trimmed(void **state)
{
    (void)state;
    char *key_file = write_temp("  \tsk_live_from_file \r\n\n");
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    set_ok(&cfg, "api_key_file", key_file);
    setenv("CLORO_API_KEY", "", 1); /* empty counts as unset */
    assert_int_equal(config_finish(&cfg, &errs), 0);
    unsetenv("CLORO_API_KEY");
    assert_non_null(cfg.api_key);
    assert_string_equal(cfg.api_key, "sk_live_from_file");
    assert_string_equal(cfg.api_key_source, "file");
    config_deinit(&cfg);
    remove_temp(key_file);
}

static void test_finish_unreadable_file_names_line(void **state)
{
    (void)state;
    const char *missing = "/nonexistent-cloro-dir/api-key";
    char text[256];
    snprintf(text, sizeof text, "# key\nlog_level = info\napi_key_file = %s\n", missing);
    struct loaded l;
    load_text(&l, text);
    assert_int_equal(l.problems, 0);
    assert_int_equal(l.cfg.api_key_file_line, 3);
    size_t n = config_finish(&l.cfg, &l.errs);
    print_problems(&l.errs);
    assert_int_equal(n, 1);
    assert_problem(l.errs.lines[0], l.path, 3, "api_key_file", missing);
    assert_null(l.cfg.api_key);
    assert_null(l.cfg.api_key_source);
    loaded_free(&l);

    /* Set without a file (a flag): no FILE:LINE, still names the path. */
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    set_ok(&cfg, "api_key_file", missing);
    assert_int_equal(config_finish(&cfg, &errs), 1);
    assert_non_null(strstr(errs.lines[0], "api_key_file"));
    assert_non_null(strstr(errs.lines[0], missing));
    config_errors_free(&errs);
    config_deinit(&cfg);
}

static void test_finish_rejects_bad_keys(void **state)
{
    (void)state;
    const char *bad_files[] = {"sk live secretpart\n", "sk_live_a\nsk_live_b\n", "\n\n  \n"};
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        char *key_file = write_temp(bad_files[i]);
        struct config cfg;
        struct config_errors errs = {0};
        config_init(&cfg);
        set_ok(&cfg, "api_key_file", key_file);
        if (config_finish(&cfg, &errs) != 1)
            fail_msg("key file %zu accepted", i);
        assert_null(cfg.api_key);
        assert_null(cfg.api_key_source);
        assert_non_null(strstr(errs.lines[0], key_file));
        /* The message never echoes the file's content. */
        assert_null(strstr(errs.lines[0], "secretpart"));
        assert_null(strstr(errs.lines[0], "sk_live_a"));
        config_errors_free(&errs);
        config_deinit(&cfg);
        remove_temp(key_file);
    }

    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    setenv("CLORO_API_KEY", "sk live secretpart", 1);
    assert_int_equal(config_finish(&cfg, &errs), 1);
    unsetenv("CLORO_API_KEY");
    assert_null(cfg.api_key);
    assert_non_null(strstr(errs.lines[0], "CLORO_API_KEY"));
    assert_null(strstr(errs.lines[0], "secretpart"));
    config_errors_free(&errs);
    config_deinit(&cfg);
}

/* ---- config_dump ------------------------------------------------------ */

static char *dump_to_string(const struct config *cfg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    config_dump(cfg, f);
    long size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    return text;
}

static void test_dump_hides_key(void **state)
{
    (void)state;
    const char *secret = "sk_live_SECRET_dump_7f3a";
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    set_ok(&cfg, "drain_timeout", "12s");
    setenv("CLORO_API_KEY", secret, 1);
    assert_int_equal(config_finish(&cfg, &errs), 0);
    unsetenv("CLORO_API_KEY");
    assert_string_equal(cfg.api_key, secret);

    char *text = dump_to_string(&cfg);
    if (strstr(text, secret) != NULL)
        fail_msg("the dump shows the API key:\n%s", text);
    assert_null(strstr(text, "SECRET_dump"));
    assert_non_null(strstr(text, "(set)"));
    /* Every key is dumped at the start of a line, with its value. */
    char *lines = NULL;
    assert_true(asprintf(&lines, "\n%s", text) > 0);
    size_t count;
    const struct config_key *keys = config_keys(&count);
    for (size_t i = 0; i < count; i++) {
        char needle[128];
        snprintf(needle, sizeof needle, "\n%s = ", keys[i].name);
        if (strstr(lines, needle) == NULL)
            fail_msg("key %s missing from the dump:\n%s", keys[i].name, text);
    }
    assert_non_null(strstr(lines, "\ndrain_timeout = 12000ms\n"));
    assert_non_null(strstr(lines, "\nlisten = 127.0.0.1:8787\n"));
    free(lines);
    free(text);
    config_deinit(&cfg);

    /* Without a key the dump says so and shows no "(set)". */
    config_init(&cfg);
    text = dump_to_string(&cfg);
    assert_null(strstr(text, "(set)"));
    free(text);
    config_deinit(&cfg);
}

/* ---- [member NAME] sections, members_file, the admin token ----------- */

#define HASH_A "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000"
#define HASH_B "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static void test_load_member_sections(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "auth = members\n"
                  "[member alice]\n"
                  "token_sha256 = " HASH_A "\n"
                  "rate_limit = 5\n"
                  "max_concurrency = 2\n"
                  "daily_credit_budget = 1000\n"
                  "[provider chatgpt]\n"
                  "cache_ttl = 1h\n"
                  "[member bob.ci]\n"
                  "token_sha256 = " HASH_B "\n");
    assert_int_equal(l.problems, 0);
    assert_string_equal(l.cfg.auth, "members");
    assert_int_equal(l.cfg.members.count, 2);
    assert_int_equal(l.cfg.config_member_count, 2);
    const struct member *a = member_list_find(&l.cfg.members, "alice");
    assert_non_null(a);
    assert_int_equal(a->rate_limit, 5);
    assert_int_equal(a->max_concurrency, 2);
    assert_int_equal(a->daily_credit_budget, 1000);
    assert_int_equal(a->line, 2);
    assert_int_equal(a->token_sha256[0], 0x0f);
    assert_int_equal(a->token_sha256[31], 0x00);
    const struct member *b = member_list_find(&l.cfg.members, "bob.ci");
    assert_non_null(b);
    assert_int_equal(b->token_sha256[0], 0xaa);
    assert_int_equal(b->rate_limit, 0);
    /* The provider section between them still applies. */
    assert_int_equal(config_cache_ttl_ms(&l.cfg, "chatgpt"), 3600 * 1000);
    loaded_free(&l);
}

static void test_load_member_problems(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "[member alice]\n"                    /* 1 */
                  "token_sha256 = " HASH_A "\n"         /* 2 */
                  "[member alice]\n"                    /* 3: duplicate */
                  "token_sha256 = " HASH_B "\n"         /* 4: skipped */
                  "[member bob]\n"                      /* 5 */
                  "token_sha256 = sk_live_not_a_hash\n" /* 6: bad hash */
                  "[member carol]\n"                    /* 7 */
                  "token_sha256 = " HASH_B "\n"         /* 8 */
                  "max_concurency = 1\n"                /* 9: unknown key */
                  "rate_limit = 2.5\n"                  /* 10: bad value */
                  "[member no/slash]\n"                 /* 11: bad name */
                  "rate_limit = 1\n"                    /* 12: skipped */
                  "[member dave]\n"                     /* 13: no hash */
                  "auth = sometimes\n");                /* 14: unknown key in [member] */
    assert_int_equal(l.problems, 8);
    assert_problem(l.errs.lines[0], l.path, 3, "duplicate member 'alice'", ":1)");
    assert_problem(l.errs.lines[1], l.path, 6, "token_sha256", "64 hexadecimal");
    assert_null(strstr(l.errs.lines[1], "sk_live_not_a_hash"));
    assert_problem(l.errs.lines[2], l.path, 9, "unknown key 'max_concurency'", "[member carol]");
    assert_problem(l.errs.lines[3], l.path, 10, "rate_limit", "2.5");
    assert_problem(l.errs.lines[4], l.path, 11, "[member no/slash]", "name");
    assert_problem(l.errs.lines[5], l.path, 14, "unknown key 'auth'", "[member dave]");
    /* Checked at the end of the file: bob (bad hash) and dave have none. */
    assert_problem(l.errs.lines[6], l.path, 5, "[member bob]", "no token_sha256");
    assert_problem(l.errs.lines[7], l.path, 13, "[member dave]", "no token_sha256");
    loaded_free(&l);
}

static void test_auth_choice(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    assert_string_equal(cfg.auth, "auto");
    set_ok(&cfg, "auth", "open");
    set_ok(&cfg, "auth", "members");
    set_bad(&cfg, "auth", "everyone", "auto|members|open");
    config_deinit(&cfg);
}

static void test_finish_members_file(void **state)
{
    (void)state;
    char *file = write_temp("# the team\n"
                            "[member bob]\n"
                            "token_sha256 = " HASH_B "\n"
                            "max_concurrency = 1\n");
    char text[512];
    snprintf(text, sizeof text,
             "[member alice]\ntoken_sha256 = " HASH_A "\n[provider chatgpt]\ncache_ttl = 1h\n");
    struct loaded l;
    load_text(&l, text);
    assert_int_equal(l.problems, 0);
    set_ok(&l.cfg, "members_file", file);
    assert_int_equal(config_finish(&l.cfg, &l.errs), 0);
    assert_int_equal(l.cfg.members.count, 2);
    assert_int_equal(l.cfg.config_member_count, 1);
    const struct member *b = member_list_find(&l.cfg.members, "bob");
    assert_non_null(b);
    assert_string_equal(b->source, file);
    assert_int_equal(b->line, 2);
    assert_int_equal(b->max_concurrency, 1);
    loaded_free(&l);
    remove_temp(file);

    /* Problems name the members file and its lines; a member of both files
     * is a duplicate. */
    file = write_temp("[member carol]\n"
                      "token_sha256 = " HASH_B "\n"
                      "[member alice]\n"
                      "token_sha256 = " HASH_B "\n"
                      "[member erin]\n"
                      "budget = 5\n");
    load_text(&l, text);
    set_ok(&l.cfg, "members_file", file);
    size_t n = config_finish(&l.cfg, &l.errs);
    print_problems(&l.errs);
    assert_int_equal(n, 3);
    assert_problem(l.errs.lines[0], file, 3, "duplicate member 'alice'", l.path);
    assert_problem(l.errs.lines[1], file, 6, "unknown key 'budget'", NULL);
    assert_problem(l.errs.lines[2], file, 5, "[member erin]", "no token_sha256");
    loaded_free(&l);
    remove_temp(file);

    /* A members_file that cannot be read names the config's line. */
    load_text(&l, "log_level = info\nmembers_file = /nonexistent-cloro/members.ini\n");
    assert_int_equal(l.problems, 0);
    assert_int_equal(l.cfg.members_file_line, 2);
    assert_int_equal(config_finish(&l.cfg, &l.errs), 1);
    assert_problem(l.errs.lines[0], l.path, 2, "members_file", "/nonexistent-cloro/members.ini");
    loaded_free(&l);
}

static void test_finish_admin_token(void **state)
{
    (void)state;
    char *token_file = write_temp(" adm-from-file \n");
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    assert_int_equal(config_finish(&cfg, &errs), 0);
    assert_null(cfg.admin_token);
    config_deinit(&cfg);

    config_init(&cfg);
    set_ok(&cfg, "admin_token_file", token_file);
    assert_int_equal(config_finish(&cfg, &errs), 0);
    assert_string_equal(cfg.admin_token, "adm-from-file");
    assert_string_equal(cfg.admin_token_source, "file");
    config_deinit(&cfg);

    config_init(&cfg);
    set_ok(&cfg, "admin_token_file", token_file);
    setenv("CLORO_ADMIN_TOKEN", "adm-from-env", 1);
    assert_int_equal(config_finish(&cfg, &errs), 0);
    unsetenv("CLORO_ADMIN_TOKEN");
    assert_string_equal(cfg.admin_token, "adm-from-env");
    assert_string_equal(cfg.admin_token_source, "env");
    config_deinit(&cfg);

    config_init(&cfg);
    setenv("CLORO_ADMIN_TOKEN", "two words", 1);
    assert_int_equal(config_finish(&cfg, &errs), 1);
    unsetenv("CLORO_ADMIN_TOKEN");
    assert_non_null(strstr(errs.lines[0], "CLORO_ADMIN_TOKEN"));
    assert_null(strstr(errs.lines[0], "two words"));
    assert_null(cfg.admin_token);
    config_errors_free(&errs);
    config_deinit(&cfg);
    remove_temp(token_file);
}

static void test_dump_lists_members_without_hashes(void **state)
{
    (void)state;
    struct loaded l;
    load_text(&l, "[member alice]\n"
                  "token_sha256 = " HASH_A "\n"
                  "rate_limit = 7\n"
                  "max_concurrency = 3\n");
    assert_int_equal(l.problems, 0);
    setenv("CLORO_ADMIN_TOKEN", "adm-SECRET-dump", 1);
    assert_int_equal(config_finish(&l.cfg, &l.errs), 0);
    unsetenv("CLORO_ADMIN_TOKEN");
    char *text = dump_to_string(&l.cfg);
    assert_non_null(strstr(text, "[member alice] rate_limit = 7, max_concurrency = 3, "
                                 "daily_credit_budget = 0"));
    assert_non_null(strstr(text, "\nauth = auto\n"));
    assert_non_null(strstr(text, "# auth in force: members (1 member)"));
    assert_non_null(strstr(text, "# admin token: (set) from CLORO_ADMIN_TOKEN"));
    assert_null(strstr(text, HASH_A));
    assert_null(strstr(text, "0f0e0d0c"));
    assert_null(strstr(text, "adm-SECRET-dump"));
    free(text);
    loaded_free(&l);
}

/* ---- conf/cloro-proxy.conf -------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static void test_example_conf_lists_every_key(void **state)
{
    (void)state;
    const char *path = SOURCE_DIR "/conf/cloro-proxy.conf";
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    size_t count;
    const struct config_key *keys = config_keys(&count);
    int *seen = calloc(count, sizeof *seen);
    assert_non_null(seen);
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL)
            fail_msg("%s:%d: not 'key = value': %s", path, lineno, s);
        *eq = '\0';
        char *name = trim(s);
        char *value = trim(eq + 1);
        const struct config_key *k = config_key_find(name);
        if (k == NULL)
            fail_msg("%s:%d: '%s' is not a key of the table", path, lineno, name);
        size_t index = (size_t)(k - keys);
        seen[index]++;
        if (seen[index] > 1)
            fail_msg("%s:%d: '%s' listed twice", path, lineno, name);
        if (strcmp(value, k->default_value) != 0)
            fail_msg("%s:%d: %s = '%s', but the default is '%s'", path, lineno, name, value,
                     k->default_value);
    }
    fclose(f);
    for (size_t i = 0; i < count; i++)
        if (seen[i] != 1)
            fail_msg("%s: key '%s' is missing", path, keys[i].name);
    free(seen);

    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    size_t n = config_load_file(&cfg, path, &errs);
    print_problems(&errs);
    assert_int_equal(n, 0);
    assert_int_equal(errs.count, 0);
    config_deinit(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_bytes_values),
        cmocka_unit_test(test_parse_bytes_overflow),
        cmocka_unit_test(test_parse_bytes_junk),
        cmocka_unit_test(test_parse_duration_values),
        cmocka_unit_test(test_parse_duration_overflow),
        cmocka_unit_test(test_parse_duration_junk),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_listen_good),
        cmocka_unit_test(test_parse_listen_bad),
        cmocka_unit_test(test_init_defaults_match_table),
        cmocka_unit_test(test_set_unknown_key),
        cmocka_unit_test(test_set_listen),
        cmocka_unit_test(test_set_url),
        cmocka_unit_test(test_set_bool_and_log_level),
        cmocka_unit_test(test_set_choice),
        cmocka_unit_test(test_set_count),
        cmocka_unit_test(test_set_bytes),
        cmocka_unit_test(test_set_duration),
        cmocka_unit_test(test_set_path),
        cmocka_unit_test(test_load_valid),
        cmocka_unit_test(test_load_unknown_key),
        cmocka_unit_test(test_load_unknown_section),
        cmocka_unit_test(test_load_bad_value),
        cmocka_unit_test(test_load_duplicate_key),
        cmocka_unit_test(test_load_provider_sections),
        cmocka_unit_test(test_load_provider_upstream_mode),
        cmocka_unit_test(test_load_long_line),
        cmocka_unit_test(test_load_not_a_pair),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_load_every_malformed_line),
        cmocka_unit_test(test_load_indented_key_is_its_own_line),
        cmocka_unit_test(test_set_count_rejects_signs_and_blanks),
        cmocka_unit_test(test_load_many_problems),
        cmocka_unit_test(test_listen_loopback),
        cmocka_unit_test_setup(test_finish_public_listen_open, clear_env),
        cmocka_unit_test_setup(test_finish_public_listen_members, clear_env),
        cmocka_unit_test_setup(test_finish_no_key, clear_env),
        cmocka_unit_test_setup(test_finish_env_wins, clear_env),
        cmocka_unit_test_setup(test_finish_env_only, clear_env),
        cmocka_unit_test_setup(test_finish_file_trimmed, clear_env),
        cmocka_unit_test_setup(test_finish_unreadable_file_names_line, clear_env),
        cmocka_unit_test_setup(test_finish_rejects_bad_keys, clear_env),
        cmocka_unit_test_setup(test_dump_hides_key, clear_env),
        cmocka_unit_test(test_load_member_sections),
        cmocka_unit_test(test_load_member_problems),
        cmocka_unit_test(test_auth_choice),
        cmocka_unit_test_setup(test_finish_members_file, clear_env),
        cmocka_unit_test_setup(test_finish_admin_token, clear_env),
        cmocka_unit_test_setup(test_dump_lists_members_without_hashes, clear_env),
        cmocka_unit_test(test_example_conf_lists_every_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
