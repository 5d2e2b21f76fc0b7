/* test_mode.c: the proxy's modes (mode.h): the four names and nothing else
 * parse, names and parsing agree, and the configuration's `mode` and
 * `max_samples` keys take what the README says (defaults online and 100;
 * another word, a capitalised one, 0 samples are refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "mode.h"

#include <stdio.h>
#include <string.h>

static void test_names_round_trip(void **state)
{
    (void)state;
    const char *want[PROXY_MODE_COUNT] = {"online", "offline", "record", "refresh"};
    assert_int_equal(PROXY_MODE_COUNT, 4);
    for (int i = 0; i < PROXY_MODE_COUNT; i++) {
        assert_string_equal(proxy_mode_name((enum proxy_mode)i), want[i]);
        enum proxy_mode m = PROXY_MODE_COUNT;
        assert_int_equal(proxy_mode_parse(want[i], &m), 0);
        assert_int_equal(m, i);
    }
    assert_int_equal(PROXY_MODE_ONLINE, 0); /* a zeroed server is online */
    assert_string_equal(proxy_mode_name((enum proxy_mode)PROXY_MODE_COUNT), "?");
    /* The configuration's choices are the same four words. */
    assert_string_equal(PROXY_MODE_CHOICES, "online|offline|record|refresh");
}

static void test_other_words_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",       "Offline",        "OFFLINE",   " offline",  "offline ", "off",
                         "replay", "online|offline", "recording", "refreshed", "0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum proxy_mode m = PROXY_MODE_RECORD;
        if (proxy_mode_parse(bad[i], &m) != -1)
            fail_msg("'%s' parsed as a mode", bad[i]);
        assert_int_equal(m, PROXY_MODE_RECORD); /* untouched */
    }
    enum proxy_mode m = PROXY_MODE_RECORD;
    assert_int_equal(proxy_mode_parse(NULL, &m), -1);
}

static void set_expect(struct config *cfg, const char *name, const char *value, int want)
{
    char err[256] = "";
    int rc = config_set(cfg, name, value, err, sizeof err);
    if (rc != want)
        fail_msg("config_set(%s, '%s') = %d, expected %d (%s)", name, value, rc, want, err);
}

static void test_config_keys(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    assert_string_equal(cfg.mode, "online");
    assert_int_equal(cfg.max_samples, 100);
    const struct config_key *k = config_key_find("mode");
    assert_non_null(k);
    assert_int_equal(k->type, CONFIG_CHOICE);
    assert_string_equal(k->choices, PROXY_MODE_CHOICES);
    for (int i = 0; i < PROXY_MODE_COUNT; i++) {
        set_expect(&cfg, "mode", proxy_mode_name((enum proxy_mode)i), 0);
        assert_string_equal(cfg.mode, proxy_mode_name((enum proxy_mode)i));
    }
    set_expect(&cfg, "mode", "Offline", -1);
    set_expect(&cfg, "mode", "replay", -1);
    assert_string_equal(cfg.mode, "refresh"); /* a failed set changes nothing */

    set_expect(&cfg, "max_samples", "0", -1);
    set_expect(&cfg, "max_samples", "-3", -1);
    set_expect(&cfg, "max_samples", "five", -1);
    set_expect(&cfg, "max_samples", "1", 0);
    assert_int_equal(cfg.max_samples, 1);
    set_expect(&cfg, "max_samples", "1000", 0);
    assert_int_equal(cfg.max_samples, 1000);
    config_deinit(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_other_words_are_refused),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
