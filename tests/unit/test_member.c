/* test_member.c: members' definitions (member.h: names, hashes, keys,
 * members files with their line numbers) and the live table (members.h:
 * lookup by token, which auth is in force, reload when members_file changes,
 * a bad file keeping the table). Files are written under /tmp and removed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "member.h"
#include "members.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------- */

static char *write_temp(const char *text)
{
    char tmpl[] = "/tmp/cloro-unit-members-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char *path = strdup(tmpl);
    assert_non_null(path);
    return path;
}

/* Replaces path's content through a rename, as 'members add' does. */
static void rewrite(const char *path, const char *text)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

static void sha_hex(const char *token, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* "[member NAME]\ntoken_sha256 = <sha of token>\n" + extra. */
static char *section(const char *name, const char *token, const char *extra)
{
    char hex[65];
    sha_hex(token, hex);
    char *s = NULL;
    assert_true(asprintf(&s, "[member %s]\ntoken_sha256 = %s\n%s", name, hex,
                         extra != NULL ? extra : "") > 0);
    return s;
}

static void assert_line(const struct config_errors *errs, size_t i, const char *path, int line,
                        const char *needle)
{
    if (i >= errs->count)
        fail_msg("expected problem %zu (%s:%d %s), only %zu", i, path, line, needle, errs->count);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    if (strncmp(errs->lines[i], prefix, strlen(prefix)) != 0)
        fail_msg("expected '%s...', got '%s'", prefix, errs->lines[i]);
    if (needle != NULL && strstr(errs->lines[i], needle) == NULL)
        fail_msg("expected '%s' in '%s'", needle, errs->lines[i]);
}

/* ---- member.h ---------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    assert_true(member_name_valid("alice"));
    assert_true(member_name_valid("a"));
    assert_true(member_name_valid("ci-bot_2.eu"));
    char longest[MEMBER_NAME_MAX + 2];
    memset(longest, 'x', MEMBER_NAME_MAX);
    longest[MEMBER_NAME_MAX] = '\0';
    assert_true(member_name_valid(longest));
    longest[MEMBER_NAME_MAX] = 'x';
    longest[MEMBER_NAME_MAX + 1] = '\0';
    assert_false(member_name_valid(longest));
    assert_false(member_name_valid(""));
    assert_false(member_name_valid("two words"));
    assert_false(member_name_valid("a/b"));
    assert_false(member_name_valid("caf\xc3\xa9"));
    assert_false(member_name_valid("x]"));
}

static void test_hashes(void **state)
{
    (void)state;
    unsigned char h[MEMBER_HASH_BYTES];
    char hex[65];
    sha_hex("cpm_token", hex);
    assert_int_equal(member_parse_hash(hex, h), 0);
    unsigned char want[MEMBER_HASH_BYTES];
    member_token_hash("cpm_token", strlen("cpm_token"), want);
    assert_memory_equal(h, want, sizeof h);
    for (char *p = hex; *p != '\0'; p++) /* either case */
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(member_parse_hash(hex, h), 0);
    assert_memory_equal(h, want, sizeof h);
    hex[63] = '\0';
    assert_int_equal(member_parse_hash(hex, h), -1); /* 63 digits */
    assert_int_equal(member_parse_hash("cpm_token", h), -1);
    char bad[65];
    memset(bad, 'g', 64);
    bad[64] = '\0';
    assert_int_equal(member_parse_hash(bad, h), -1);
}

static void test_file_loads_members_and_limits(void **state)
{
    (void)state;
    char *a = section("alice", "tok-a", "rate_limit = 5\nmax_concurrency = 2\n");
    char *b = section("bob", "tok-b", "daily_credit_budget = 1000\n");
    char *text = NULL;
    assert_true(asprintf(&text, "# team\n%s\n  %s", a, b) > 0); /* indented lines too */
    char *path = write_temp(text);
    struct member_list l = {0};
    struct config_errors errs = {0};
    assert_int_equal(member_list_load_file(&l, path, &errs), 0);
    assert_int_equal(l.count, 2);
    const struct member *alice = member_list_find(&l, "alice");
    assert_non_null(alice);
    assert_int_equal(alice->rate_limit, 5);
    assert_int_equal(alice->max_concurrency, 2);
    assert_int_equal(alice->daily_credit_budget, 0);
    assert_int_equal(alice->line, 2);
    assert_string_equal(alice->source, path);
    const struct member *bob = member_list_find(&l, "bob");
    assert_non_null(bob);
    assert_int_equal(bob->daily_credit_budget, 1000);
    assert_int_equal(bob->rate_limit, 0);
    unsigned char want[MEMBER_HASH_BYTES];
    member_token_hash("tok-b", 5, want);
    assert_memory_equal(bob->token_sha256, want, sizeof want);
    assert_null(member_list_find(&l, "carol"));
    member_list_free(&l);
    remove_temp(path);
    free(text);
    free(a);
    free(b);
}

static void test_file_problems_name_file_and_line(void **state)
{
    (void)state;
    char hex[65];
    sha_hex("t", hex);
    char *text = NULL;
    assert_true(asprintf(&text,
                         "stray = 1\n"                            /* 1: outside a section */
                         "[member ok]\n"                          /* 2 */
                         "token_sha256 = %s\n"                    /* 3 */
                         "colour = blue\n"                        /* 4: unknown key */
                         "rate_limit = -1\n"                      /* 5: bad value */
                         "[member ok]\n"                          /* 6: duplicate */
                         "token_sha256 = %s\n"                    /* 7 (skipped) */
                         "[member bad name]\n"                    /* 8: bad name */
                         "[provider chatgpt]\n"                   /* 9: not here */
                         "[member nohash]\n"                      /* 10: no token_sha256 */
                         "max_concurrency = 1\n"                  /* 11 */
                         "[member badhash]\n"                     /* 12 */
                         "token_sha256 = cpm_pasted_token_here\n" /* 13: not a hash */
                         "[member twice]\n"                       /* 14 */
                         "token_sha256 = %s\n"                    /* 15 */
                         "rate_limit = 1\n"                       /* 16 */
                         "rate_limit = 2\n",                      /* 17: set twice */
                         hex, hex, hex) > 0);
    char *path = write_temp(text);
    struct member_list l = {0};
    struct config_errors errs = {0};
    size_t n = member_list_load_file(&l, path, &errs);
    for (size_t i = 0; i < errs.count; i++)
        print_message("  problem %zu: %s\n", i, errs.lines[i]);
    assert_int_equal(n, 10);
    assert_line(&errs, 0, path, 1, "outside any section");
    assert_line(&errs, 1, path, 4, "unknown key 'colour' in [member ok]");
    assert_line(&errs, 2, path, 5, "rate_limit in [member ok]");
    assert_line(&errs, 3, path, 6, "duplicate member 'ok'");
    assert_line(&errs, 4, path, 8, "[member bad name]");
    assert_line(&errs, 5, path, 9, "only [member NAME]");
    assert_line(&errs, 6, path, 13, "64 hexadecimal digits");
    /* A pasted token is not echoed back. */
    assert_null(strstr(errs.lines[6], "cpm_pasted"));
    assert_line(&errs, 7, path, 17, "set twice");
    assert_line(&errs, 8, path, 10, "[member nohash] has no token_sha256");
    assert_line(&errs, 9, path, 12, "[member badhash] has no token_sha256");
    config_errors_free(&errs);
    member_list_free(&l);
    remove_temp(path);
    free(text);
}

static void test_file_missing(void **state)
{
    (void)state;
    struct member_list l = {0};
    struct config_errors errs = {0};
    assert_int_equal(member_list_load_file(&l, "/nonexistent-cloro/members.ini", &errs), 1);
    assert_non_null(strstr(errs.lines[0], "/nonexistent-cloro/members.ini: cannot read"));
    config_errors_free(&errs);
    member_list_free(&l);
}

/* ---- members.h --------------------------------------------------------- */

struct table {
    struct config cfg;
    char *file;
    struct members *m;
};

/* A config with members_file = a file holding text (NULL: no file), and
 * config_text as the config file (NULL: none). */
static void table_open(struct table *t, const char *auth, const char *file_text,
                       const char *config_text)
{
    memset(t, 0, sizeof *t);
    config_init(&t->cfg);
    struct config_errors errs = {0};
    char err[256];
    assert_int_equal(config_set(&t->cfg, "auth", auth, err, sizeof err), 0);
    char *conf = NULL;
    if (config_text != NULL) {
        conf = write_temp(config_text);
        assert_int_equal(config_load_file(&t->cfg, conf, &errs), 0);
    }
    if (file_text != NULL) {
        t->file = write_temp(file_text);
        assert_int_equal(config_set(&t->cfg, "members_file", t->file, err, sizeof err), 0);
    }
    size_t n = config_finish(&t->cfg, &errs);
    for (size_t i = 0; i < errs.count; i++)
        print_message("  problem %zu: %s\n", i, errs.lines[i]);
    assert_int_equal(n, 0);
    config_errors_free(&errs);
    if (conf != NULL)
        remove_temp(conf);
    t->m = members_new(&t->cfg);
}

static void table_close(struct table *t)
{
    members_free(t->m);
    config_deinit(&t->cfg);
    if (t->file != NULL)
        remove_temp(t->file);
}

static const char *lookup(const struct table *t, const char *token)
{
    const struct member *m = members_lookup_token(t->m, token, strlen(token));
    return m != NULL ? m->name : NULL;
}

static void test_lookup_by_token(void **state)
{
    (void)state;
    char *text = NULL;
    char *a = section("alice", "tok-alice", "max_concurrency = 1\n");
    char *b = section("bob", "tok-bob", NULL);
    char *c = section("carol", "tok-carol", NULL);
    assert_true(asprintf(&text, "%s%s%s", a, b, c) > 0);
    struct table t;
    table_open(&t, "auto", text, NULL);
    assert_int_equal(members_count(t.m), 3);
    /* Every member, whatever its place in the table. */
    assert_string_equal(lookup(&t, "tok-alice"), "alice");
    assert_string_equal(lookup(&t, "tok-bob"), "bob");
    assert_string_equal(lookup(&t, "tok-carol"), "carol");
    assert_null(lookup(&t, "tok-dave"));
    assert_null(lookup(&t, "tok-alic"));
    assert_null(lookup(&t, "tok-alicee"));
    assert_null(lookup(&t, ""));
    /* A hash is not a token. */
    char hex[65];
    sha_hex("tok-bob", hex);
    assert_null(lookup(&t, hex));
    assert_int_equal(members_find(t.m, "alice")->max_concurrency, 1);
    assert_null(members_find(t.m, "dave"));
    table_close(&t);
    free(text);
    free(a);
    free(b);
    free(c);
}

static void test_auth_in_force(void **state)
{
    (void)state;
    struct table t;
    char *a = section("alice", "tok-alice", NULL);
    /* auto: members once one exists. */
    table_open(&t, "auto", NULL, NULL);
    assert_int_equal(members_count(t.m), 0);
    assert_false(members_required(t.m));
    table_close(&t);
    table_open(&t, "auto", a, NULL);
    assert_true(members_required(t.m));
    table_close(&t);
    /* open: never, even with members. */
    table_open(&t, "open", a, NULL);
    assert_false(members_required(t.m));
    assert_string_equal(lookup(&t, "tok-alice"), "alice");
    table_close(&t);
    /* members: always, even with none (nobody gets in). */
    table_open(&t, "members", NULL, NULL);
    assert_true(members_required(t.m));
    assert_null(lookup(&t, "tok-alice"));
    table_close(&t);
    free(a);
}

/* The file's mtime must move for a reload: 10 ms in the future is enough
 * on file systems with nanosecond times, rename gives a new inode anyway. */
static void test_reload_on_change(void **state)
{
    (void)state;
    char *a = section("alice", "tok-alice", NULL);
    char *conf = section("frank", "tok-frank", NULL); /* from the config file itself */
    struct table t;
    table_open(&t, "auto", a, conf);
    assert_int_equal(members_count(t.m), 2);
    assert_int_equal(members_tick(t.m), MEMBERS_UNCHANGED);

    char *b = section("bob", "tok-bob", "rate_limit = 3\n");
    char *both = NULL;
    assert_true(asprintf(&both, "%s%s", a, b) > 0);
    rewrite(t.file, both);
    assert_int_equal(members_tick(t.m), MEMBERS_RELOADED);
    assert_int_equal(members_count(t.m), 3);
    assert_string_equal(lookup(&t, "tok-bob"), "bob");
    assert_string_equal(lookup(&t, "tok-alice"), "alice");
    assert_string_equal(lookup(&t, "tok-frank"), "frank"); /* the config's stay */
    assert_int_equal(members_find(t.m, "bob")->rate_limit, 3);
    assert_int_equal(members_tick(t.m), MEMBERS_UNCHANGED);

    /* A bad file keeps the table as it was. */
    char *broken = NULL;
    assert_true(asprintf(&broken, "%s[member carol]\nrate_limit = lots\n", both) > 0);
    rewrite(t.file, broken);
    assert_int_equal(members_tick(t.m), MEMBERS_RELOAD_FAILED);
    assert_int_equal(members_count(t.m), 3);
    assert_string_equal(lookup(&t, "tok-bob"), "bob");
    assert_int_equal(members_tick(t.m), MEMBERS_UNCHANGED); /* read once per version */

    /* A member also in the config file is a duplicate: refused as a whole. */
    char *dup = NULL;
    assert_true(asprintf(&dup, "%s%s", b, conf) > 0);
    rewrite(t.file, dup);
    assert_int_equal(members_tick(t.m), MEMBERS_RELOAD_FAILED);
    assert_int_equal(members_count(t.m), 3);

    /* Removing a member takes its token away. */
    rewrite(t.file, b);
    assert_int_equal(members_tick(t.m), MEMBERS_RELOADED);
    assert_null(lookup(&t, "tok-alice"));
    assert_string_equal(lookup(&t, "tok-bob"), "bob");
    assert_string_equal(lookup(&t, "tok-frank"), "frank");

    /* A file that vanished keeps the table too. */
    unlink(t.file);
    assert_int_equal(members_tick(t.m), MEMBERS_RELOAD_FAILED);
    assert_string_equal(lookup(&t, "tok-bob"), "bob");
    rewrite(t.file, a);
    assert_int_equal(members_tick(t.m), MEMBERS_RELOADED);
    assert_string_equal(lookup(&t, "tok-alice"), "alice");
    assert_null(lookup(&t, "tok-bob"));

    table_close(&t);
    free(a);
    free(b);
    free(conf);
    free(both);
    free(broken);
    free(dup);
}

/* An in-place edit (same inode) is seen through its mtime and size. */
static void test_reload_in_place(void **state)
{
    (void)state;
    char *a = section("alice", "tok-alice", NULL);
    struct table t;
    table_open(&t, "auto", a, NULL);
    char *b = section("bob", "tok-bob", NULL);
    FILE *f = fopen(t.file, "a");
    assert_non_null(f);
    fputs(b, f);
    fclose(f);
    assert_int_equal(members_tick(t.m), MEMBERS_RELOADED);
    assert_string_equal(lookup(&t, "tok-bob"), "bob");
    table_close(&t);
    free(a);
    free(b);
}

int main(void)
{
    log_threshold = LOG_LEVEL_ERROR; /* reload warnings are expected here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_hashes),
        cmocka_unit_test(test_file_loads_members_and_limits),
        cmocka_unit_test(test_file_problems_name_file_and_line),
        cmocka_unit_test(test_file_missing),
        cmocka_unit_test(test_lookup_by_token),
        cmocka_unit_test(test_auth_in_force),
        cmocka_unit_test(test_reload_on_change),
        cmocka_unit_test(test_reload_in_place),
    };
    return cmocka_run_group_tests_name("unit_member", tests, NULL, NULL);
}
