/* test_artifact_urls.c: the artifact host list (good and bad lists), the
 * allow check (schemes, ports, case, userinfo, lookalike hosts, path
 * tricks), finding URLs in chatgpt-, google- and task-shaped answers, ids
 * for cloro's URLs and the SHA-256 fallback, and the byte-level rewrite
 * (both slash spellings, repeats, disallowed URLs, untouched bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "artifact_urls.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UUID1  "c45a5081-808d-4ed3-9c86-e4baf16c8ab8"
#define UUID2  "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
#define CDN    "https://cdn.cloro.dev/results/"
#define URL1   CDN UUID1 "/page-1.html"
#define URL2   CDN UUID2 "/page-2.html"
#define PUBLIC "http://proxy.local:8080"

static struct artifact_hosts hosts_of(const char *list)
{
    struct artifact_hosts h;
    char err[256] = "";
    if (artifact_hosts_parse(list, &h, err, sizeof err) != 0)
        fail_msg("parse \"%s\": %s", list, err);
    return h;
}

/* --- hosts ---------------------------------------------------------------- */

static void test_hosts_parse_good(void **state)
{
    (void)state;
    struct artifact_hosts h = hosts_of("cdn.cloro.dev, Storage.Cloro.DEV");
    assert_int_equal(h.count, 2);
    assert_string_equal(h.hosts[0], "cdn.cloro.dev");
    assert_string_equal(h.hosts[1], "storage.cloro.dev");
    artifact_hosts_free(&h);
    assert_null(h.hosts);
    assert_int_equal(h.count, 0);

    h = hosts_of("127.0.0.1:8080");
    assert_int_equal(h.count, 1);
    assert_string_equal(h.hosts[0], "127.0.0.1:8080");
    artifact_hosts_free(&h);

    h = hosts_of("  a.example\tb.example:443 ,c.example  ");
    assert_int_equal(h.count, 3);
    assert_string_equal(h.hosts[1], "b.example:443");
    assert_string_equal(h.hosts[2], "c.example");
    artifact_hosts_free(&h);

    h = hosts_of("[::1]:9000");
    assert_int_equal(h.count, 1);
    artifact_hosts_free(&h);

    /* An empty list allows nothing. */
    h = hosts_of("");
    assert_int_equal(h.count, 0);
    assert_false(artifact_hosts_allow(&h, URL1));
    artifact_hosts_free(&h);
    h = hosts_of("   ");
    assert_int_equal(h.count, 0);
    artifact_hosts_free(&h);
}

static void test_hosts_parse_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {"https://cdn.cloro.dev",
                                      "cdn.cloro.dev/results",
                                      "user@cdn.cloro.dev",
                                      "cdn.cloro.dev,,storage.cloro.dev",
                                      "cdn.cloro.dev,",
                                      ",cdn.cloro.dev",
                                      ":8080",
                                      "cdn.cloro.dev:",
                                      "cdn.cloro.dev:0",
                                      "cdn.cloro.dev:65536",
                                      "cdn.cloro.dev:80a",
                                      "cdn.cloro.dev:1:2",
                                      "cdn?x",
                                      "[]:80",
                                      "[::1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct artifact_hosts h = {(char **)1, 99};
        char err[256] = "";
        if (artifact_hosts_parse(bad[i], &h, err, sizeof err) != -1)
            fail_msg("\"%s\" was accepted", bad[i]);
        if (err[0] == '\0')
            fail_msg("\"%s\": no error message", bad[i]);
        assert_null(h.hosts);
        assert_int_equal(h.count, 0);
    }
    /* A port of 65535 is fine; err may be NULL. */
    struct artifact_hosts h;
    assert_int_equal(artifact_hosts_parse("a.example:65535", &h, NULL, 0), 0);
    artifact_hosts_free(&h);
    assert_int_equal(artifact_hosts_parse("a.example:65536", &h, NULL, 0), -1);
}

static void expect_allow(const struct artifact_hosts *h, const char *url, bool want)
{
    if (artifact_hosts_allow(h, url) != want)
        fail_msg("%s: expected %s", url, want ? "allowed" : "refused");
}

static void test_hosts_allow(void **state)
{
    (void)state;
    struct artifact_hosts h = hosts_of("cdn.cloro.dev 127.0.0.1:8080 plain.example");
    /* schemes and case */
    expect_allow(&h, URL1, true);
    expect_allow(&h, "HTTPS://CDN.Cloro.Dev/results/x/page-1.html", true);
    expect_allow(&h, "http://cdn.cloro.dev/x", true);
    expect_allow(&h, "ftp://cdn.cloro.dev/x", false);
    expect_allow(&h, "//cdn.cloro.dev/x", false);
    expect_allow(&h, "cdn.cloro.dev/x", false);
    expect_allow(&h, "https:/cdn.cloro.dev/x", false);
    expect_allow(&h, "", false);
    expect_allow(&h, "https://", false);
    expect_allow(NULL, URL1, false);
    /* ports: no port in the entry means the scheme's default */
    expect_allow(&h, "https://cdn.cloro.dev:443/x", true);
    expect_allow(&h, "http://cdn.cloro.dev:80/x", true);
    expect_allow(&h, "https://cdn.cloro.dev:80/x", false);
    expect_allow(&h, "https://cdn.cloro.dev:8443/x", false);
    expect_allow(&h, "https://cdn.cloro.dev:/x", false);
    expect_allow(&h, "http://127.0.0.1:8080/results/a.html", true);
    expect_allow(&h, "http://127.0.0.1/results/a.html", false);
    expect_allow(&h, "http://127.0.0.1:8081/results/a.html", false);
    expect_allow(&h, "http://127.0.0.1:80/results/a.html", false);
    expect_allow(&h, "http://plain.example?q=1", true);
    expect_allow(&h, "http://plain.example#frag", true);
    expect_allow(&h, "http://plain.example", true);
    /* userinfo and lookalikes */
    expect_allow(&h, "https://user@cdn.cloro.dev/x", false);
    expect_allow(&h, "https://cdn.cloro.dev@evil.com/x", false);
    expect_allow(&h, "https://cdn.cloro.dev:443@evil.com/x", false);
    expect_allow(&h, "https://cdn.cloro.dev.evil.com/x", false);
    expect_allow(&h, "https://evilcdn.cloro.dev/x", false);
    expect_allow(&h, "https://xcdn.cloro.dev/x", false);
    expect_allow(&h, "https://cdn.cloro.de/x", false);
    /* path tricks */
    expect_allow(&h, "https://evil.com/cdn.cloro.dev/x", false);
    expect_allow(&h, "https://evil.com/?u=https://cdn.cloro.dev/x", false);
    expect_allow(&h, "https://evil.com#@cdn.cloro.dev/x", false);
    expect_allow(&h, "https://evil.com\\@cdn.cloro.dev/x", false);
    expect_allow(&h, "https://cdn.cloro.dev\\.evil.com/x", false);
    expect_allow(&h, "https://cdn.cloro.dev%2f@evil.com/x", false);
    expect_allow(&h, "https://cdn.cloro.dev /x", false);
    expect_allow(&h, "https://cdn.cloro.dev/x y", false);
    artifact_hosts_free(&h);

    /* An entry with a port allows that port only, implicit or explicit. */
    h = hosts_of("secure.example:443");
    expect_allow(&h, "https://secure.example/x", true);
    expect_allow(&h, "https://secure.example:443/x", true);
    expect_allow(&h, "http://secure.example/x", false);
    artifact_hosts_free(&h);
}

/* --- find ------------------------------------------------------------------ */

static struct artifact_hosts cloro_hosts(void)
{
    return hosts_of("cdn.cloro.dev,storage.cloro.dev");
}

static size_t find(const char *body, const struct artifact_hosts *h, struct artifact_url *out,
                   size_t max)
{
    return artifact_urls_find(body, strlen(body), h, out, max);
}

static void test_find_chatgpt_string(void **state)
{
    (void)state;
    struct artifact_hosts h = cloro_hosts();
    struct artifact_url u[4];
    const char *body = "{\"success\":true,\"result\":{\"text\":\"hi\",\"sources\":[],"
                       "\"html\":\"" URL1 "\",\"markdown\":\"# hi\"}}";
    assert_int_equal(find(body, &h, u, 4), 1);
    assert_string_equal(u[0].url, URL1);
    assert_string_equal(u[0].id, UUID1 "/page-1");
    assert_true(u[0].allowed);
    artifact_hosts_free(&h);
}

static void test_find_google_array(void **state)
{
    (void)state;
    struct artifact_hosts h = cloro_hosts();
    struct artifact_url u[4];
    const char *body = "{\"success\":true,\"result\":{\"organicResults\":[],\"html\":["
                       "\"" CDN UUID1 "/page-1.html\",\"" CDN UUID1 "/page-2.html\","
                       "\"https://storage.cloro.dev/results/" UUID1 "/page-3.html\"]}}";
    assert_int_equal(find(body, &h, u, 4), 3);
    assert_string_equal(u[0].id, UUID1 "/page-1");
    assert_string_equal(u[1].id, UUID1 "/page-2");
    assert_string_equal(u[2].id, UUID1 "/page-3");
    assert_string_equal(u[2].url, "https://storage.cloro.dev/results/" UUID1 "/page-3.html");
    for (int i = 0; i < 3; i++)
        assert_true(u[i].allowed);
    /* at most max */
    assert_int_equal(find(body, &h, u, 2), 2);
    assert_int_equal(find(body, &h, u, 0), 0);
    artifact_hosts_free(&h);
}

static void test_find_task_shape(void **state)
{
    (void)state;
    struct artifact_hosts h = cloro_hosts();
    struct artifact_url u[4];
    const char *body = "{\"task\":{\"id\":\"t1\",\"status\":\"COMPLETED\"},"
                       "\"response\":{\"text\":\"x\",\"html\":\"" URL2 "\"}}";
    assert_int_equal(find(body, &h, u, 4), 1);
    assert_string_equal(u[0].id, UUID2 "/page-2");
    /* result without html falls back to response.html */
    const char *both = "{\"result\":{\"text\":\"x\"},\"response\":{\"html\":\"" URL2 "\"}}";
    assert_int_equal(find(both, &h, u, 4), 1);
    assert_string_equal(u[0].url, URL2);
    artifact_hosts_free(&h);
}

static void test_find_none(void **state)
{
    (void)state;
    struct artifact_hosts h = cloro_hosts();
    struct artifact_url u[4];
    assert_int_equal(find("{\"success\":true,\"result\":{\"text\":\"hi\"}}", &h, u, 4), 0);
    assert_int_equal(find("{\"result\":{\"html\":null}}", &h, u, 4), 0);
    assert_int_equal(find("{\"result\":{\"html\":{\"url\":\"" URL1 "\"}}}", &h, u, 4), 0);
    assert_int_equal(find("{\"result\":\"" URL1 "\"}", &h, u, 4), 0);
    assert_int_equal(find("[\"" URL1 "\"]", &h, u, 4), 0);
    assert_int_equal(find("{\"result\":{\"html\":\"" URL1 "\"", &h, u, 4), 0);
    assert_int_equal(find("not json", &h, u, 4), 0);
    assert_int_equal(find("", &h, u, 4), 0);
    assert_int_equal(artifact_urls_find(NULL, 0, &h, u, 4), 0);
    /* the length given is respected: a valid prefix of a longer buffer */
    const char *body = "{\"result\":{\"html\":\"" URL1 "\"}}garbage";
    assert_int_equal(artifact_urls_find(body, strlen(body) - 7, &h, u, 4), 1);
    artifact_hosts_free(&h);
}

static void test_find_skips(void **state)
{
    (void)state;
    struct artifact_hosts h = cloro_hosts();
    struct artifact_url u[8];
    char longurl[CACHE_ARTIFACT_URL_MAX + 16];
    memset(longurl, 'a', sizeof longurl - 1);
    memcpy(longurl, "https://cdn.cloro.dev/", 22);
    longurl[CACHE_ARTIFACT_URL_MAX] = '\0'; /* 512 chars: one too many */
    char body[2048];
    snprintf(body, sizeof body,
             "{\"result\":{\"html\":[1,null,\"" URL1 "\",{\"a\":1},[\"x\"],\"%s\",\"\","
             "\"https://evil.example/results/" UUID2 "/page-1.html\",true]}}",
             longurl);
    assert_int_equal(find(body, &h, u, 8), 2);
    assert_string_equal(u[0].url, URL1);
    assert_true(u[0].allowed);
    assert_string_equal(u[1].url, "https://evil.example/results/" UUID2 "/page-1.html");
    assert_false(u[1].allowed);

    /* exactly CACHE_ARTIFACT_URL_MAX - 1 is kept */
    longurl[CACHE_ARTIFACT_URL_MAX - 1] = '\0';
    snprintf(body, sizeof body, "{\"result\":{\"html\":\"%s\"}}", longurl);
    assert_int_equal(find(body, &h, u, 8), 1);
    assert_int_equal(strlen(u[0].url), CACHE_ARTIFACT_URL_MAX - 1);
    assert_true(u[0].allowed);
    assert_int_equal(u[0].id[0], 'x');
    artifact_hosts_free(&h);
}

/* --- ids -------------------------------------------------------------------- */

static void expect_id(const char *url, const char *want)
{
    char id[CACHE_ARTIFACT_ID_MAX];
    artifact_urls_id(url, id);
    if (strcmp(id, want) != 0)
        fail_msg("%s: expected id %s, got %s", url, want, id);
}

static bool fallback(const char *id)
{
    if (strlen(id) != 1 + 32 + 7 || id[0] != 'x' || strcmp(id + 33, "/page-1") != 0)
        return false;
    for (int i = 1; i < 33; i++)
        if (!strchr("0123456789abcdef", id[i]))
            return false;
    return true;
}

static void test_ids_cloro(void **state)
{
    (void)state;
    expect_id(URL1, UUID1 "/page-1");
    expect_id(URL2, UUID2 "/page-2");
    expect_id("https://storage.cloro.dev/results/" UUID1 "/page-99.html", UUID1 "/page-99");
    expect_id(CDN UUID1 "/page-10.html?X-Amz-Signature=abc&e=1", UUID1 "/page-10");
    expect_id(CDN UUID1 "/page-3.html#top", UUID1 "/page-3");
    expect_id(CDN "C45A5081-808D-4ED3-9C86-E4BAF16C8AB8/page-1.html", UUID1 "/page-1");
    expect_id("http://127.0.0.1:8080/v2/results/" UUID1 "/page-4.html", UUID1 "/page-4");
}

static void test_ids_fallback(void **state)
{
    (void)state;
    static const char *const other[] = {
        CDN UUID1 "/page-0.html",
        CDN UUID1 "/page-100.html",
        CDN UUID1 "/page-01.html",
        CDN UUID1 "/page-.html",
        CDN UUID1 "/page-1.htm",
        CDN UUID1 "/page-1.html/x",
        CDN UUID1 "/page-1.htmlx",
        CDN "c45a5081-808d-4ed3-9c86-e4baf16c8ab/page-1.html",
        CDN "c45a5081-808d-4ed3-9c86-e4baf16c8ab8x/page-1.html",
        CDN "c45a5081x808d-4ed3-9c86-e4baf16c8ab8/page-1.html",
        CDN "g45a5081-808d-4ed3-9c86-e4baf16c8ab8/page-1.html",
        "https://cdn.cloro.dev/outputs/" UUID1 "/page-1.html",
        "https://cdn.cloro.dev/xresults/" UUID1 "/page-1.html",
        "https://cdn.cloro.dev/a.html",
        UUID1 "/page-1.html",
        "",
    };
    size_t n = sizeof other / sizeof other[0];
    char ids[sizeof other / sizeof other[0]][CACHE_ARTIFACT_ID_MAX];
    for (size_t i = 0; i < n; i++) {
        artifact_urls_id(other[i], ids[i]);
        if (!fallback(ids[i]))
            fail_msg("%s: expected a fallback id, got %s", other[i], ids[i]);
        char again[CACHE_ARTIFACT_ID_MAX];
        artifact_urls_id(other[i], again);
        assert_string_equal(again, ids[i]); /* stable */
        for (size_t j = 0; j < i; j++)
            if (strcmp(ids[i], ids[j]) == 0)
                fail_msg("%s and %s share id %s", other[i], other[j], ids[i]);
    }
    /* SHA-256("") starts e3b0c44298fc1c149afbf4c8996fb924 */
    expect_id("", "xe3b0c44298fc1c149afbf4c8996fb924/page-1");
}

/* --- rewrite ---------------------------------------------------------------- */

static struct artifact_url url_of(const char *url, bool allowed)
{
    struct artifact_url u;
    memset(&u, 0, sizeof u);
    strcpy(u.url, url);
    artifact_urls_id(url, u.id);
    u.allowed = allowed;
    return u;
}

static char *rewrite(const char *body, const struct artifact_url *u, size_t n, const char *pub,
                     size_t *len)
{
    return artifact_urls_rewrite(body, strlen(body), u, n, pub, len);
}

static void expect_rewrite(const char *body, const struct artifact_url *u, size_t n,
                           const char *pub, const char *want)
{
    size_t len = 12345;
    char *got = rewrite(body, u, n, pub, &len);
    if (got == NULL)
        fail_msg("nothing rewritten in %s", body);
    if (len != strlen(want) || memcmp(got, want, len) != 0)
        fail_msg("rewrite of %s\n  expected %s\n  got      %.*s", body, want, (int)len, got);
    free(got);
}

#define LOCAL1 "\"" PUBLIC "/_proxy/artifacts/" UUID1 "/page-1.html\""
#define LOCAL2 "\"" PUBLIC "/_proxy/artifacts/" UUID2 "/page-2.html\""
#define ESC1   "https:\\/\\/cdn.cloro.dev\\/results\\/" UUID1 "\\/page-1.html"

static void test_rewrite_spellings(void **state)
{
    (void)state;
    struct artifact_url u[2] = {url_of(URL1, true), url_of(URL2, true)};
    expect_rewrite("{\"result\":{\"html\":\"" URL1 "\"}}", u, 2, PUBLIC,
                   "{\"result\":{\"html\":" LOCAL1 "}}");
    expect_rewrite("{\"result\":{\"html\":\"" ESC1 "\"}}", u, 2, PUBLIC,
                   "{\"result\":{\"html\":" LOCAL1 "}}");
    /* an array with both spellings and spaces kept */
    expect_rewrite("{ \"result\" : { \"html\" : [ \"" ESC1 "\" , \"" URL2 "\" ] } }", u, 2, PUBLIC,
                   "{ \"result\" : { \"html\" : [ " LOCAL1 " , " LOCAL2 " ] } }");
    /* a trailing '/' on public_url is dropped */
    expect_rewrite("{\"html\":\"" URL1 "\"}", u, 1, PUBLIC "/", "{\"html\":" LOCAL1 "}");
    expect_rewrite("{\"html\":\"" URL1 "\"}", u, 1, PUBLIC "//", "{\"html\":" LOCAL1 "}");
    /* a fallback id */
    struct artifact_url f = url_of("https://cdn.cloro.dev/a.html", true);
    char want[256];
    snprintf(want, sizeof want, "[\"%s/_proxy/artifacts/%s.html\"]", PUBLIC, f.id);
    expect_rewrite("[\"https://cdn.cloro.dev/a.html\"]", &f, 1, PUBLIC, want);
}

static void test_rewrite_twice_and_disallowed(void **state)
{
    (void)state;
    struct artifact_url u[2] = {url_of(URL1, true), url_of(URL2, false)};
    /* The URL twice (result and an echo elsewhere); the disallowed one stays. */
    expect_rewrite("{\"result\":{\"html\":\"" URL1 "\",\"other\":\"" URL2 "\"},"
                   "\"copy\":[\"" URL1 "\"]}",
                   u, 2, PUBLIC,
                   "{\"result\":{\"html\":" LOCAL1 ",\"other\":\"" URL2 "\"},"
                   "\"copy\":[" LOCAL1 "]}");
}

static void test_rewrite_bytes_elsewhere(void **state)
{
    (void)state;
    struct artifact_url u = url_of(URL1, true);
    const char *prefix = "{\"success\":true,\"result\":{\"text\":\"caf\\u00e9 \\\"q\\\" 1.50e+2\","
                         "\"n\":1.0,  \"esc\":\"a\\/b\",\n\t\"html\":";
    const char *suffix = ",\"markdown\":\"" URL1 " inside text\",\"z\":[\"" URL1 "x\"]}}  \n";
    char body[1024];
    snprintf(body, sizeof body, "%s\"%s\"%s", prefix, URL1, suffix);
    size_t len;
    char *got = rewrite(body, &u, 1, PUBLIC, &len);
    assert_non_null(got);
    size_t pl = strlen(prefix);
    size_t sl = strlen(suffix);
    assert_int_equal(len, pl + strlen(LOCAL1) + sl);
    assert_memory_equal(got, prefix, pl);
    assert_memory_equal(got + pl, LOCAL1, strlen(LOCAL1));
    assert_memory_equal(got + len - sl, suffix, sl);
    assert_int_equal(got[len], '\0');
    free(got);
}

static void test_rewrite_nothing(void **state)
{
    (void)state;
    struct artifact_url u[2] = {url_of(URL1, true), url_of(URL2, false)};
    size_t len = 7;
    const char *body = "{\"result\":{\"text\":\"see " URL1 "\"}}";
    assert_null(rewrite(body, u, 2, PUBLIC, &len));
    assert_int_equal(len, 0);
    /* only the disallowed URL present */
    assert_null(rewrite("{\"html\":\"" URL2 "\"}", u, 2, PUBLIC, &len));
    /* part of a string, quoted inside a string, a key, not a whole string */
    assert_null(rewrite("{\"t\":\"say \\\"" URL1 "\\\"\"}", u, 1, PUBLIC, &len));
    assert_null(rewrite("{\"t\":\"x\\\"" URL1 "\"}", u, 1, PUBLIC, &len));
    assert_null(rewrite("{\"" URL1 "\":1}", u, 1, PUBLIC, &len));
    assert_null(rewrite("{\"html\":\"" URL1 "?\"}", u, 1, PUBLIC, &len));
    /* no URLs, empty body, unterminated string */
    assert_null(rewrite("{\"html\":\"" URL1 "\"}", u, 0, PUBLIC, &len));
    assert_null(rewrite("", u, 1, PUBLIC, &len));
    assert_null(rewrite("{\"html\":\"" URL1, u, 1, PUBLIC, &len));
    assert_null(rewrite("{\"html\":\"" URL1 "\\\"}", u, 1, PUBLIC, &len));
}

static void test_rewrite_find_round_trip(void **state)
{
    (void)state;
    struct artifact_hosts h = cloro_hosts();
    struct artifact_url u[4];
    const char *body = "{\"result\":{\"html\":[\"" ESC1 "\",\"" URL2 "\","
                       "\"https://evil.example/results/" UUID1 "/page-1.html\"]}}";
    size_t n = find(body, &h, u, 4);
    assert_int_equal(n, 3);
    assert_string_equal(u[0].url, URL1);
    assert_false(u[2].allowed);
    expect_rewrite(body, u, n, PUBLIC,
                   "{\"result\":{\"html\":[" LOCAL1 "," LOCAL2
                   ",\"https://evil.example/results/" UUID1 "/page-1.html\"]}}");
    artifact_hosts_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_parse_good),
        cmocka_unit_test(test_hosts_parse_bad),
        cmocka_unit_test(test_hosts_allow),
        cmocka_unit_test(test_find_chatgpt_string),
        cmocka_unit_test(test_find_google_array),
        cmocka_unit_test(test_find_task_shape),
        cmocka_unit_test(test_find_none),
        cmocka_unit_test(test_find_skips),
        cmocka_unit_test(test_ids_cloro),
        cmocka_unit_test(test_ids_fallback),
        cmocka_unit_test(test_rewrite_spellings),
        cmocka_unit_test(test_rewrite_twice_and_disallowed),
        cmocka_unit_test(test_rewrite_bytes_elsewhere),
        cmocka_unit_test(test_rewrite_nothing),
        cmocka_unit_test(test_rewrite_find_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
