/* test_cache_key.c: cache keys (key.h). Requests that ask cloro the same
 * question share a key however their JSON is written or whichever defaults
 * they spell out; requests that differ in anything cloro answers differently
 * get different keys; async tasks share the key of their sync call; routes
 * and bodies that must not be cached say so. Also pins the hash input. Task
 * keys are deterministic, differ by domain and text, are pinned too, and
 * never equal an answer's key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "key.h"

#include <openssl/sha.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHATGPT "/v1/monitor/chatgpt"
#define GOOGLE  "/v1/monitor/google"
#define NEWS    "/v1/monitor/google/news"
#define AIMODE  "/v1/monitor/aimode"
#define ASYNC   "/v1/async/task"

static enum cache_key_result compute(const char *method, const char *path, const char *body,
                                     struct cache_key *key)
{
    return cache_key_compute(method, path, body, body == NULL ? 0 : strlen(body), key);
}

/* Also checks that the parsed-document form gives the same key and leaves
 * the document as it was. */
static struct cache_key key_of(const char *path, const char *body)
{
    struct cache_key key;
    assert_int_equal(compute("POST", path, body, &key), CACHE_KEY_OK);
    json_t *doc = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(doc);
    json_t *before = json_deep_copy(doc);
    struct cache_key from_doc;
    assert_int_equal(cache_key_compute_doc("POST", path, doc, &from_doc), CACHE_KEY_OK);
    assert_memory_equal(from_doc.bytes, key.bytes, CACHE_KEY_BYTES);
    assert_string_equal(from_doc.hex, key.hex);
    assert_string_equal(from_doc.provider, key.provider);
    assert_true(json_equal(doc, before));
    json_decref(before);
    json_decref(doc);
    return key;
}

static void assert_same_key(const char *path_a, const char *a, const char *path_b, const char *b)
{
    struct cache_key ka = key_of(path_a, a);
    struct cache_key kb = key_of(path_b, b);
    if (memcmp(ka.bytes, kb.bytes, CACHE_KEY_BYTES) != 0)
        fail_msg("expected one key:\n  %s %s\n  %s %s", path_a, a, path_b, b);
    assert_string_equal(ka.hex, kb.hex);
}

static void assert_other_key(const char *path_a, const char *a, const char *path_b, const char *b)
{
    struct cache_key ka = key_of(path_a, a);
    struct cache_key kb = key_of(path_b, b);
    if (memcmp(ka.bytes, kb.bytes, CACHE_KEY_BYTES) == 0)
        fail_msg("expected two keys:\n  %s %s\n  %s %s", path_a, a, path_b, b);
}

static void assert_canonical(const char *path, const char *body, const char *want)
{
    char *got = cache_key_canonical("POST", path, body, strlen(body));
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_json_spelling_does_not_matter(void **state)
{
    (void)state;
    const char *base = "{\"prompt\":\"x\",\"country\":\"US\"}";
    assert_same_key(CHATGPT, base, CHATGPT, "{\"country\":\"US\",\"prompt\":\"x\"}");
    assert_same_key(CHATGPT, base, CHATGPT, " {\n\t\"prompt\" : \"x\" ,\r\n \"country\":\"US\" } ");
    assert_same_key(CHATGPT, base, CHATGPT, "{\"prompt\":\"\\u0078\",\"country\":\"\\u0055S\"}");
    assert_same_key(CHATGPT, base, CHATGPT,
                    "{ \"include\":{\"markdown\":false}, \"country\":\"US\", \"prompt\":\"x\" }");
    assert_same_key(CHATGPT,
                    "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"html\":true,"
                    "\"markdown\":true}}",
                    CHATGPT,
                    "{\"include\":{\"markdown\":true,\"html\":true},\"country\":\"US\","
                    "\"prompt\":\"x\"}");
    assert_canonical(CHATGPT, " { \"prompt\" : \"x\", \"country\" : \"US\" } ",
                     "{\"country\":\"US\",\"prompt\":\"x\"}");
}

static void test_false_include_flags_are_dropped(void **state)
{
    (void)state;
    const char *base = "{\"prompt\":\"x\",\"country\":\"US\"}";
    assert_same_key(CHATGPT, base, CHATGPT,
                    "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"html\":false,"
                    "\"markdown\":false,\"rawResponse\":false,\"searchQueries\":false,"
                    "\"ads\":false,\"shopping\":false}}");
    assert_same_key(CHATGPT, base, CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{}}");
    assert_same_key(CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"html\":true}}",
                    CHATGPT,
                    "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"html\":true,"
                    "\"markdown\":false}}");
    assert_canonical(CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"markdown\":false,"
                     "\"html\":true}}",
                     "{\"country\":\"US\",\"include\":{\"html\":true},\"prompt\":\"x\"}");
    assert_same_key("/v1/monitor/gemini", "{\"prompt\":\"x\",\"country\":\"US\"}",
                    "/v1/monitor/gemini",
                    "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"rawResponse\":false}}");
    /* Only flags the provider documents: an unknown one is cloro's 400 to give,
     * and must never share the key of a valid request. */
    assert_other_key(CHATGPT, base, CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"bogus\":false}}");
    assert_other_key("/v1/monitor/gemini", base, "/v1/monitor/gemini",
                     "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"shopping\":false}}");
    assert_same_key("/v1/monitor/aimode", base, "/v1/monitor/aimode",
                    "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"expandProducts\":false}}");
}

static void test_true_include_flags_make_other_keys(void **state)
{
    (void)state;
    const char *base = "{\"prompt\":\"x\",\"country\":\"US\"}";
    assert_other_key(CHATGPT, base, CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"markdown\":true}}");
    assert_other_key(CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"markdown\":true}}",
                     CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"html\":true}}");
    /* Not exactly false: left as sent, for cloro to judge. */
    assert_other_key(CHATGPT, base, CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"markdown\":0}}");
    assert_other_key(CHATGPT, base, CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"markdown\":null}}");
}

static void test_question_fields_make_other_keys(void **state)
{
    (void)state;
    const char *base = "{\"prompt\":\"x\",\"country\":\"US\"}";
    assert_other_key(CHATGPT, base, CHATGPT, "{\"prompt\":\"y\",\"country\":\"US\"}");
    assert_other_key(CHATGPT, base, CHATGPT, "{\"prompt\":\"X\",\"country\":\"US\"}");
    assert_other_key(CHATGPT, base, CHATGPT, "{\"prompt\":\"x \",\"country\":\"US\"}");
    assert_other_key(CHATGPT, base, CHATGPT, "{\"prompt\":\"x\",\"country\":\"DE\"}");
    assert_other_key(CHATGPT, base, CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"CA\"}");
    assert_other_key(CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"CA\"}", CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"state\":\"NY\"}");
    /* The same body on another provider is another question. */
    assert_other_key(CHATGPT, base, "/v1/monitor/gemini", base);
    assert_other_key("/v1/monitor/google", "{\"query\":\"x\",\"country\":\"US\"}", NEWS,
                     "{\"query\":\"x\",\"country\":\"US\"}");
    /* Numbers keep their type: 2 and 2.0 are different bodies. */
    assert_other_key(GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"pages\":2}", GOOGLE,
                     "{\"query\":\"x\",\"country\":\"US\",\"pages\":2.0}");
}

static void test_disputed_country_default_is_kept(void **state)
{
    (void)state;
    /* cloro-api.md section 4: "defaults to US" is disputed, so not assumed. */
    assert_other_key(CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\"}", CHATGPT,
                     "{\"prompt\":\"x\"}");
    /* Values are never normalized: "us" is a 400 at cloro, "US" is not. */
    assert_other_key(CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\"}", CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"us\"}");
    assert_other_key(GOOGLE, "{\"query\":\"x\",\"gl\":\"US\"}", GOOGLE,
                     "{\"query\":\"x\",\"gl\":\"us\"}");
    assert_other_key(GOOGLE, "{\"query\":\"x\",\"gl\":\"US\"}", GOOGLE,
                     "{\"query\":\"x\",\"country\":\"US\"}");
    assert_other_key(GOOGLE, "{\"query\":\"x\",\"gl\":\"US\",\"hl\":\"en\"}", GOOGLE,
                     "{\"query\":\"x\",\"gl\":\"US\",\"hl\":\"EN\"}");
}

static void test_chatgpt_flags(void **state)
{
    (void)state;
    const char *base = "{\"prompt\":\"x\",\"country\":\"US\"}";
    assert_same_key(CHATGPT, base, CHATGPT,
                    "{\"prompt\":\"x\",\"country\":\"US\",\"legacy\":false,"
                    "\"disableWebSearch\":false}");
    assert_other_key(CHATGPT, base, CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"legacy\":true}");
    assert_other_key(CHATGPT, base, CHATGPT,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"disableWebSearch\":true}");
    /* Only ChatGPT has these fields; elsewhere they are not defaults. */
    assert_other_key("/v1/monitor/gemini", base, "/v1/monitor/gemini",
                     "{\"prompt\":\"x\",\"country\":\"US\",\"legacy\":false}");
}

static void test_google_pages_and_device(void **state)
{
    (void)state;
    const char *base = "{\"query\":\"x\",\"country\":\"US\"}";
    assert_same_key(GOOGLE, base, GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"pages\":1}");
    assert_same_key(NEWS, base, NEWS, "{\"query\":\"x\",\"country\":\"US\",\"pages\":1}");
    assert_other_key(GOOGLE, base, GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"pages\":2}");
    /* Exactly the integer 1 only. */
    assert_other_key(GOOGLE, base, GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"pages\":\"1\"}");
    assert_other_key(GOOGLE, base, GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"pages\":1.0}");

    assert_same_key(GOOGLE, base, GOOGLE,
                    "{\"query\":\"x\",\"country\":\"US\",\"device\":\"desktop\"}");
    assert_same_key(NEWS, base, NEWS,
                    "{\"query\":\"x\",\"country\":\"US\",\"device\":\"desktop\"}");
    assert_same_key(AIMODE, "{\"prompt\":\"x\",\"country\":\"US\"}", AIMODE,
                    "{\"prompt\":\"x\",\"country\":\"US\",\"device\":\"desktop\"}");
    assert_other_key(GOOGLE, base, GOOGLE,
                     "{\"query\":\"x\",\"country\":\"US\",\"device\":\"mobile\"}");
    assert_other_key(GOOGLE, base, GOOGLE,
                     "{\"query\":\"x\",\"country\":\"US\",\"device\":\"Desktop\"}");
    /* aimode has no pages: a pages field there is not a default. */
    assert_other_key(AIMODE, "{\"prompt\":\"x\",\"country\":\"US\"}", AIMODE,
                     "{\"prompt\":\"x\",\"country\":\"US\",\"pages\":1}");
    assert_canonical(GOOGLE,
                     "{\"pages\":1,\"device\":\"desktop\",\"query\":\"x\",\"country\":\"US\","
                     "\"include\":{\"html\":false}}",
                     "{\"country\":\"US\",\"query\":\"x\"}");
}

static void test_google_aioverview(void **state)
{
    (void)state;
    const char *base = "{\"query\":\"x\",\"country\":\"US\"}";
    const char *empty = "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"aioverview\":{}}}";
    assert_same_key(GOOGLE, empty, GOOGLE,
                    "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"aioverview\":"
                    "{\"markdown\":false}}}");
    assert_other_key(GOOGLE, empty, GOOGLE, base);
    assert_other_key(GOOGLE, empty, GOOGLE,
                     "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"aioverview\":"
                     "{\"markdown\":true}}}");
    /* aioverview is an object, not a flag: false is left for cloro to reject. */
    assert_other_key(GOOGLE, base, GOOGLE,
                     "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"aioverview\":false}}");
    assert_canonical(GOOGLE,
                     "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"html\":false,"
                     "\"aioverview\":{\"markdown\":false}}}",
                     "{\"country\":\"US\",\"include\":{\"aioverview\":{}},\"query\":\"x\"}");
}

static void test_google_goto_flag_is_ignored(void **state)
{
    (void)state;
    const char *base = "{\"query\":\"x\",\"country\":\"US\"}";
    assert_same_key(GOOGLE, base, GOOGLE,
                    "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"googleGoto\":true}}");
    assert_same_key(GOOGLE, "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"html\":true}}",
                    GOOGLE,
                    "{\"query\":\"x\",\"country\":\"US\",\"include\":{\"html\":true,"
                    "\"googleGoto\":false}}");
    assert_same_key(AIMODE, "{\"prompt\":\"x\",\"country\":\"US\"}", AIMODE,
                    "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"googleGoto\":true}}");
}

static void test_async_task_shares_the_sync_key(void **state)
{
    (void)state;
    assert_same_key(CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\"}", ASYNC,
                    "{\"taskType\":\"CHATGPT\",\"priority\":5,\"idempotencyKey\":\"abc-123\","
                    "\"webhook\":{\"url\":\"https://example.com/hook\"},"
                    "\"payload\":{\"country\":\"US\",\"prompt\":\"x\"}}");
    assert_same_key(ASYNC,
                    "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"x\","
                    "\"country\":\"US\"}}",
                    ASYNC,
                    "{\"priority\":9,\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"x\","
                    "\"country\":\"US\",\"include\":{\"html\":false}}}");
    assert_same_key(NEWS, "{\"query\":\"x\",\"country\":\"US\"}", ASYNC,
                    "{\"taskType\":\"GOOGLE_NEWS\",\"payload\":{\"query\":\"x\","
                    "\"country\":\"US\",\"pages\":1}}");
    assert_same_key(GOOGLE, "{\"query\":\"x\",\"country\":\"US\"}", ASYNC,
                    "{\"taskType\":\"GOOGLE\",\"payload\":{\"query\":\"x\",\"country\":\"US\"}}");
    assert_other_key(CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\"}", ASYNC,
                     "{\"taskType\":\"GEMINI\",\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}");

    static const struct {
        const char *task_type;
        const char *provider;
    } map[] = {
        {"CHATGPT", "chatgpt"}, {"GEMINI", "gemini"},           {"GROK", "grok"},
        {"COPILOT", "copilot"}, {"PERPLEXITY", "perplexity"},   {"AIMODE", "aimode"},
        {"GOOGLE", "google"},   {"GOOGLE_NEWS", "google/news"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        char body[160], path[64];
        snprintf(body, sizeof body, "{\"taskType\":\"%s\",\"payload\":{\"q\":1}}",
                 map[i].task_type);
        snprintf(path, sizeof path, "/v1/monitor/%s", map[i].provider);
        struct cache_key key = key_of(ASYNC, body);
        assert_string_equal(key.provider, map[i].provider);
        assert_same_key(path, "{\"q\":1}", ASYNC, body);
    }
    char *text = cache_key_canonical("POST", ASYNC,
                                     "{\"taskType\":\"GROK\",\"priority\":2,"
                                     "\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}",
                                     strlen("{\"taskType\":\"GROK\",\"priority\":2,"
                                            "\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}"));
    assert_non_null(text);
    assert_string_equal(text, "{\"country\":\"US\",\"prompt\":\"x\"}");
    free(text);
}

static void assert_result(const char *method, const char *path, const char *body,
                          enum cache_key_result want)
{
    struct cache_key key;
    memset(&key, 0x5a, sizeof key);
    enum cache_key_result got = compute(method, path, body, &key);
    if (got != want)
        fail_msg("%s %s %s: result %d, want %d", method, path, body ? body : "(null)", (int)got,
                 (int)want);
    if (want != CACHE_KEY_OK) {
        /* out is left empty */
        assert_int_equal(key.hex[0], '\0');
        assert_int_equal(key.provider[0], '\0');
        assert_null(cache_key_canonical(method, path, body, body == NULL ? 0 : strlen(body)));
    }
}

static void test_invalid_bodies(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "",
        " ",
        "{",
        "{\"prompt\":\"x\",}",
        "{\"prompt\":\"x\"} trailing",
        "{\"prompt\":\"x\"}{}",
        "[]",
        "[{\"prompt\":\"x\"}]",
        "\"x\"",
        "1",
        "null",
        "true",
        "{\"prompt\":\"x\",\"prompt\":\"y\"}",
        "{\"prompt\":\"x\",\"country\":\"US\",\"include\":{\"html\":true,\"html\":false}}",
        "{\"prompt\":\"\\u0000\"}",
        "{\"prompt\":\"\xff\xfe\"}",
        "{\"pages\":99999999999999999999999}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        assert_result("POST", CHATGPT, bodies[i], CACHE_KEY_INVALID);
    assert_result("POST", CHATGPT, NULL, CACHE_KEY_INVALID);

    static const char *const tasks[] = {
        "{\"payload\":{\"prompt\":\"x\"}}",
        "{\"taskType\":\"CHATGPT\"}",
        "{\"taskType\":\"CHATGPT\",\"payload\":null}",
        "{\"taskType\":\"CHATGPT\",\"payload\":[]}",
        "{\"taskType\":\"CHATGPT\",\"payload\":\"{}\"}",
        "{\"taskType\":\"chatgpt\",\"payload\":{}}",
        "{\"taskType\":\"GOOGLE_GOTO\",\"payload\":{}}",
        "{\"taskType\":\"UNKNOWN\",\"payload\":{}}",
        "{\"taskType\":1,\"payload\":{}}",
        "{\"taskType\":\"CHATGPT\",\"payload\":{\"a\":1,\"a\":2}}",
        "[{\"taskType\":\"CHATGPT\",\"payload\":{}}]",
    };
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        assert_result("POST", ASYNC, tasks[i], CACHE_KEY_INVALID);

    /* A cacheable route with a body of embedded bytes past body_len. */
    struct cache_key key;
    const char body[] = "{\"prompt\":\"x\"}garbage";
    assert_int_equal(cache_key_compute("POST", CHATGPT, body, 14, &key), CACHE_KEY_OK);
    assert_int_equal(cache_key_compute("POST", CHATGPT, body, 15, &key), CACHE_KEY_INVALID);
}

static void test_not_cacheable_routes(void **state)
{
    (void)state;
    const char *body = "{\"prompt\":\"x\",\"country\":\"US\"}";
    static const char *const paths[] = {
        "/v1/credits",
        "/v1/countries",
        "/v1/states",
        "/v1/async/task/batch",
        "/v1/async/task/123e4567-e89b-12d3-a456-426614174000",
        "/v1/async/task/",
        "/v1/async/status",
        "/v1/async/queue",
        "/v1/monitor",
        "/v1/monitor/",
        "/v1/monitor/chatgpt/",
        "/v1/monitor/ChatGPT",
        "/v1/monitor/google-news",
        "/v1/monitor/google/news/",
        "/v1/monitor/google/",
        "/v1/monitor/chatgptx",
        "/v1/monitor/unknown",
        "/v1/task",
        "/v1/run",
        "/v2/monitor/chatgpt",
        "v1/monitor/chatgpt",
        "/v1//monitor/chatgpt",
        "",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_result("POST", paths[i], body, CACHE_KEY_NOT_CACHEABLE);
        assert_null(cache_key_provider("POST", paths[i]));
    }
    static const char *const methods[] = {"GET", "PUT", "DELETE", "HEAD", "post", ""};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        assert_result(methods[i], CHATGPT, body, CACHE_KEY_NOT_CACHEABLE);
        assert_result(methods[i], ASYNC, "{\"taskType\":\"CHATGPT\",\"payload\":{}}",
                      CACHE_KEY_NOT_CACHEABLE);
        assert_null(cache_key_provider(methods[i], CHATGPT));
    }
    assert_result("GET", "/v1/credits", NULL, CACHE_KEY_NOT_CACHEABLE);
    /* The route decides first: a bad body on a non-cacheable route is not INVALID. */
    assert_result("POST", "/v1/async/task/batch", "[", CACHE_KEY_NOT_CACHEABLE);
    assert_null(cache_key_provider(NULL, CHATGPT));
    assert_null(cache_key_provider("POST", NULL));
}

static void test_providers(void **state)
{
    (void)state;
    static const char *const names[] = {"chatgpt", "gemini",      "grok",
                                        "copilot", "perplexity",  "aimode",
                                        "google",  "google/news", "google/goto"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/monitor/%s", names[i]);
        const char *p = cache_key_provider("POST", path);
        assert_non_null(p);
        assert_string_equal(p, names[i]);
        struct cache_key key = key_of(path, "{\"url\":\"https://www.google.com/url?q=x\"}");
        assert_string_equal(key.provider, names[i]);
    }
    /* The async route's provider depends on the body: none from the path. */
    assert_null(cache_key_provider("POST", ASYNC));
}

static void test_hash_input_is_pinned(void **state)
{
    (void)state;
    const char *canonical = "{\"country\":\"US\",\"prompt\":\"x\"}";
    char input[256];
    snprintf(input, sizeof input, "cloro-proxy-key\n%d\nPOST /v1/monitor/chatgpt\n%s",
             CACHE_KEY_SCHEMA, canonical);
    unsigned char want[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)input, strlen(input), want);

    struct cache_key key = key_of(CHATGPT, "{\"prompt\":\"x\", \"country\":\"US\"}");
    assert_memory_equal(key.bytes, want, CACHE_KEY_BYTES);
    struct cache_key task = key_of(ASYNC, "{\"taskType\":\"CHATGPT\",\"payload\":"
                                          "{\"prompt\":\"x\",\"country\":\"US\"}}");
    assert_memory_equal(task.bytes, want, CACHE_KEY_BYTES);

    /* The schema version is in the input: another version, another key. */
    snprintf(input, sizeof input, "cloro-proxy-key\n%d\nPOST /v1/monitor/chatgpt\n%s",
             CACHE_KEY_SCHEMA + 1, canonical);
    unsigned char other[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)input, strlen(input), other);
    assert_memory_not_equal(key.bytes, other, CACHE_KEY_BYTES);

    /* With the version pinned too: schema 1's key for this body. */
    if (CACHE_KEY_SCHEMA == 1) {
        snprintf(input, sizeof input, "cloro-proxy-key\n1\nPOST /v1/monitor/google/news\n{}");
        SHA256((const unsigned char *)input, strlen(input), want);
        key = key_of(NEWS, "{\"pages\":1,\"device\":\"desktop\",\"include\":{\"html\":false}}");
        assert_memory_equal(key.bytes, want, CACHE_KEY_BYTES);
    }
}

/* X-Cache-Sample: sample 1 is the key without samples (nothing stored is
 * invalidated), K >= 2 another key, pinned, and the same for the sync call
 * and the async task that stand for one question. */
static void test_sample_keys(void **state)
{
    (void)state;
    const char *body = "{\"prompt\":\"x\", \"country\":\"US\"}";
    struct cache_key plain = key_of(CHATGPT, body);
    assert_int_equal(plain.sample, 0);

    struct cache_key one = plain;
    cache_key_sample(&one, 1);
    assert_memory_equal(one.bytes, plain.bytes, CACHE_KEY_BYTES);
    assert_string_equal(one.hex, plain.hex);
    assert_int_equal(one.sample, 0);
    struct cache_key zero = plain;
    cache_key_sample(&zero, 0);
    assert_memory_equal(zero.bytes, plain.bytes, CACHE_KEY_BYTES);

    struct cache_key two = plain;
    cache_key_sample(&two, 2);
    assert_memory_not_equal(two.bytes, plain.bytes, CACHE_KEY_BYTES);
    assert_int_equal(two.sample, 2);
    assert_memory_equal(two.base, plain.bytes, CACHE_KEY_BYTES);
    assert_string_equal(two.provider, "chatgpt");
    for (size_t i = 0; i < CACHE_KEY_BYTES; i++) {
        char pair[3];
        snprintf(pair, sizeof pair, "%02x", two.bytes[i]);
        assert_memory_equal(two.hex + 2 * i, pair, 2);
    }
    /* Pinned: the hash input of key.h, computed here on its own. */
    char input[256];
    snprintf(input, sizeof input, "cloro-proxy-key\n%d\nsample 2\n%s", CACHE_KEY_SCHEMA, plain.hex);
    unsigned char want[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)input, strlen(input), want);
    assert_memory_equal(two.bytes, want, CACHE_KEY_BYTES);

    /* Stable: the same question, spelled otherwise, gives the same sample key. */
    struct cache_key again = key_of(CHATGPT, "{\"country\":\"US\",\"prompt\":\"x\"}");
    cache_key_sample(&again, 2);
    assert_memory_equal(again.bytes, two.bytes, CACHE_KEY_BYTES);
    struct cache_key task = key_of(
        ASYNC, "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"x\",\"country\":\"US\"}}");
    cache_key_sample(&task, 2);
    assert_memory_equal(task.bytes, two.bytes, CACHE_KEY_BYTES);

    /* Every sample its own key; re-deriving a sample's key starts from its base. */
    struct cache_key three = plain;
    cache_key_sample(&three, 3);
    assert_memory_not_equal(three.bytes, two.bytes, CACHE_KEY_BYTES);
    assert_memory_not_equal(three.bytes, plain.bytes, CACHE_KEY_BYTES);
    struct cache_key moved = two;
    cache_key_sample(&moved, 3);
    assert_memory_equal(moved.bytes, three.bytes, CACHE_KEY_BYTES);
    cache_key_sample(&moved, 1);
    assert_memory_equal(moved.bytes, plain.bytes, CACHE_KEY_BYTES);
    assert_int_equal(moved.sample, 0);
    /* Another question's sample 2 is another key. */
    struct cache_key other = key_of(CHATGPT, "{\"prompt\":\"y\",\"country\":\"US\"}");
    cache_key_sample(&other, 2);
    assert_memory_not_equal(other.bytes, two.bytes, CACHE_KEY_BYTES);
}

static void test_hex_matches_bytes(void **state)
{
    (void)state;
    struct cache_key key = key_of(CHATGPT, "{\"prompt\":\"x\",\"country\":\"US\"}");
    assert_int_equal(strlen(key.hex), CACHE_KEY_HEX_LEN);
    for (size_t i = 0; i < CACHE_KEY_BYTES; i++) {
        char pair[3];
        snprintf(pair, sizeof pair, "%02x", key.bytes[i]);
        assert_int_equal(key.hex[2 * i], pair[0]);
        assert_int_equal(key.hex[2 * i + 1], pair[1]);
    }
}

static void test_parse_hex(void **state)
{
    (void)state;
    struct cache_key key = key_of(GOOGLE, "{\"query\":\"x\",\"country\":\"US\"}");
    struct cache_key parsed;
    memset(&parsed, 0x5a, sizeof parsed);
    assert_int_equal(cache_key_parse_hex(key.hex, &parsed), 0);
    assert_memory_equal(parsed.bytes, key.bytes, CACHE_KEY_BYTES);
    assert_string_equal(parsed.hex, key.hex);
    assert_string_equal(parsed.provider, "");

    char upper[CACHE_KEY_HEX_LEN + 1];
    for (size_t i = 0; i <= CACHE_KEY_HEX_LEN; i++)
        upper[i] = (key.hex[i] >= 'a' && key.hex[i] <= 'f') ? (char)(key.hex[i] - 32) : key.hex[i];
    assert_int_equal(cache_key_parse_hex(upper, &parsed), 0);
    assert_memory_equal(parsed.bytes, key.bytes, CACHE_KEY_BYTES);
    assert_string_equal(parsed.hex, key.hex); /* written lowercase */

    char bad[CACHE_KEY_HEX_LEN + 2];
    memcpy(bad, key.hex, sizeof key.hex);
    struct cache_key untouched = parsed;
    assert_int_equal(cache_key_parse_hex(NULL, &parsed), -1);
    assert_int_equal(cache_key_parse_hex("", &parsed), -1);
    bad[CACHE_KEY_HEX_LEN - 1] = '\0'; /* 63 digits */
    assert_int_equal(cache_key_parse_hex(bad, &parsed), -1);
    memcpy(bad, key.hex, sizeof key.hex);
    bad[CACHE_KEY_HEX_LEN] = '0'; /* 65 digits */
    bad[CACHE_KEY_HEX_LEN + 1] = '\0';
    assert_int_equal(cache_key_parse_hex(bad, &parsed), -1);
    for (size_t pos = 0; pos < CACHE_KEY_HEX_LEN; pos += 7) {
        static const char junk[] = {'g', 'G', 'x', ' ', '-', ':', '/', '@', '`'};
        for (size_t j = 0; j < sizeof junk; j++) {
            memcpy(bad, key.hex, sizeof key.hex);
            bad[pos] = junk[j];
            assert_int_equal(cache_key_parse_hex(bad, &parsed), -1);
        }
    }
    assert_int_equal(cache_key_parse_hex(" 0123456789abcdef0123456789abcdef0123456789abcdef0123456"
                                         "789abcde",
                                         &parsed),
                     -1);
    assert_memory_equal(&parsed, &untouched, sizeof parsed);
}

static void task_key_pinned(const char *domain, const char *text,
                            const unsigned char key[CACHE_KEY_BYTES])
{
    char input[512];
    int n = snprintf(input, sizeof input, "cloro-proxy-task\n%s\n%s", domain, text);
    assert_true(n > 0 && (size_t)n < sizeof input);
    unsigned char want[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)input, (size_t)n, want);
    assert_memory_equal(key, want, CACHE_KEY_BYTES);
}

static void test_task_key(void **state)
{
    (void)state;
    const char *id = "3f9b2c1e-8a47-4d6b-9e0f-5c2a7b1d4e68";
    unsigned char a[CACHE_KEY_BYTES], b[CACHE_KEY_BYTES], other[CACHE_KEY_BYTES];
    memset(a, 0, sizeof a);
    memset(b, 0xFF, sizeof b);
    cache_task_key("id", id, a);
    cache_task_key("id", id, b);
    assert_memory_equal(a, b, CACHE_KEY_BYTES); /* deterministic */
    task_key_pinned("id", id, a);

    /* The domain is in the input: the same text in another domain, another key. */
    cache_task_key("idem", id, other);
    assert_memory_not_equal(a, other, CACHE_KEY_BYTES);
    task_key_pinned("idem", id, other);
    /* So is the text, all of it. */
    cache_task_key("id", "3f9b2c1e-8a47-4d6b-9e0f-5c2a7b1d4e69", other);
    assert_memory_not_equal(a, other, CACHE_KEY_BYTES);
    cache_task_key("id", "", other);
    assert_memory_not_equal(a, other, CACHE_KEY_BYTES);
    task_key_pinned("id", "", other);

    /* Never an answer's key: not for the answer's canonical body, nor its
     * text as sent, nor its hex key, in either domain. */
    const char *body = "{\"prompt\":\"x\",\"country\":\"US\"}";
    struct cache_key answer = key_of(CHATGPT, body);
    char *canonical = cache_key_canonical("POST", CHATGPT, body, strlen(body));
    assert_non_null(canonical);
    const char *domains[] = {"id", "idem", ""};
    const char *texts[] = {canonical, body, answer.hex, ""};
    for (size_t d = 0; d < sizeof domains / sizeof domains[0]; d++) {
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
            cache_task_key(domains[d], texts[t], other);
            assert_memory_not_equal(other, answer.bytes, CACHE_KEY_BYTES);
        }
    }
    free(canonical);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_spelling_does_not_matter),
        cmocka_unit_test(test_false_include_flags_are_dropped),
        cmocka_unit_test(test_true_include_flags_make_other_keys),
        cmocka_unit_test(test_question_fields_make_other_keys),
        cmocka_unit_test(test_disputed_country_default_is_kept),
        cmocka_unit_test(test_chatgpt_flags),
        cmocka_unit_test(test_google_pages_and_device),
        cmocka_unit_test(test_google_aioverview),
        cmocka_unit_test(test_google_goto_flag_is_ignored),
        cmocka_unit_test(test_async_task_shares_the_sync_key),
        cmocka_unit_test(test_invalid_bodies),
        cmocka_unit_test(test_not_cacheable_routes),
        cmocka_unit_test(test_providers),
        cmocka_unit_test(test_hash_input_is_pinned),
        cmocka_unit_test(test_sample_keys),
        cmocka_unit_test(test_hex_matches_bytes),
        cmocka_unit_test(test_parse_hex),
        cmocka_unit_test(test_task_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
