/* test_cache_entry.c: the stored record (entry.h). Every field survives a
 * round trip; the layout is the documented one byte for byte; any flipped
 * bit, truncation, bad magic or version, and any length that disagrees with
 * the bytes present is refused; random and mutated input never reads out of
 * bounds (run under ASan). Randomness comes from a seeded local generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "entry.h"

#include <openssl/sha.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUM_LEN   32
#define FIXED_LEN 34 /* magic 4, version 2, status 2, 3 x i64, header_count 2 */

/* xorshift64*: deterministic, state owned by the caller. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static unsigned char *encode(const struct cache_entry *e, size_t *len)
{
    unsigned char *buf = NULL;
    assert_int_equal(cache_entry_encode(e, &buf, len), 0);
    assert_non_null(buf);
    return buf;
}

/* Recomputes the trailer after a deliberate edit, so that the checks behind
 * the checksum are what the decode meets. */
static void resign(unsigned char *buf, size_t len)
{
    SHA256(buf, len - SUM_LEN, buf + len - SUM_LEN);
}

static void assert_entries_equal(const struct cache_entry *a, const struct cache_entry *b)
{
    assert_int_equal(a->status, b->status);
    assert_true(a->stored_at_ms == b->stored_at_ms);
    assert_true(a->expires_at_ms == b->expires_at_ms);
    assert_true(a->credits_charged == b->credits_charged);
    assert_string_equal(a->provider, b->provider);
    assert_string_equal(a->request_id, b->request_id);
    assert_int_equal(a->header_count, b->header_count);
    for (size_t i = 0; i < a->header_count; i++) {
        assert_string_equal(a->headers[i].name, b->headers[i].name);
        assert_string_equal(a->headers[i].value, b->headers[i].value);
    }
    assert_int_equal(a->body_len, b->body_len);
    if (a->body_len > 0)
        assert_memory_equal(a->body, b->body, a->body_len);
    assert_int_equal(a->sample >= 2 ? a->sample : 0, b->sample);
    if (a->sample >= 2)
        assert_memory_equal(a->base_key, b->base_key, CACHE_ENTRY_KEY_BYTES);
}

static struct cache_header sample_headers[] = {
    {"Content-Type", "application/json"},
    {"X-Request-ID", "req-1"},
    {"X-Empty", ""},
};

static struct cache_entry sample(void)
{
    static unsigned char body[] = "{\"success\":true,\"result\":{\"text\":\"hi\"}}";
    struct cache_entry e = {
        .status = 200,
        .stored_at_ms = 1767225600123,
        .expires_at_ms = 1767229200123,
        .credits_charged = 7,
        .provider = "google/news",
        .request_id = "0b6f3c7e-6d1a-4c53-9c55-1c7b0a1f3e21",
        .headers = sample_headers,
        .header_count = sizeof sample_headers / sizeof sample_headers[0],
        .body = body,
        .body_len = sizeof body - 1,
    };
    return e;
}

static void round_trip(const struct cache_entry *e)
{
    size_t len;
    unsigned char *buf = encode(e, &len);
    struct cache_entry got;
    assert_int_equal(cache_entry_decode(buf, len, &got), 0);
    assert_entries_equal(e, &got);
    /* The body is NUL-terminated past its length, even when empty. */
    assert_non_null(got.body);
    assert_int_equal(got.body[got.body_len], '\0');
    cache_entry_free(&got);
    assert_null(got.body);
    assert_int_equal(got.header_count, 0);
    free(buf);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    round_trip(&e);

    /* Extremes of every number. */
    e.status = 65535;
    e.stored_at_ms = INT64_MIN;
    e.expires_at_ms = INT64_MAX;
    e.credits_charged = -1;
    round_trip(&e);
    e.status = 0;
    e.stored_at_ms = 0;
    e.expires_at_ms = 0;
    e.credits_charged = INT64_MAX;
    round_trip(&e);

    /* Empty body, empty request id, no headers. */
    e = sample();
    e.body = NULL;
    e.body_len = 0;
    e.request_id = "";
    e.headers = NULL;
    e.header_count = 0;
    round_trip(&e);

    /* The body is binary: NUL and high bytes survive. */
    unsigned char binary[256];
    for (size_t i = 0; i < sizeof binary; i++)
        binary[i] = (unsigned char)i;
    e = sample();
    e.body = binary;
    e.body_len = sizeof binary;
    round_trip(&e);
}

static void test_null_strings_encode_as_empty(void **state)
{
    (void)state;
    struct cache_header h[] = {{NULL, NULL}};
    struct cache_entry e = sample();
    e.provider = NULL;
    e.request_id = NULL;
    e.headers = h;
    e.header_count = 1;
    size_t len;
    unsigned char *buf = encode(&e, &len);
    struct cache_entry got;
    assert_int_equal(cache_entry_decode(buf, len, &got), 0);
    assert_string_equal(got.provider, "");
    assert_string_equal(got.request_id, "");
    assert_string_equal(got.headers[0].name, "");
    assert_string_equal(got.headers[0].value, "");
    cache_entry_free(&got);
    free(buf);
}

static void test_header_limit(void **state)
{
    (void)state;
    struct cache_header h[CACHE_ENTRY_MAX_HEADERS + 1];
    char names[CACHE_ENTRY_MAX_HEADERS + 1][16];
    char values[CACHE_ENTRY_MAX_HEADERS + 1][16];
    for (size_t i = 0; i <= CACHE_ENTRY_MAX_HEADERS; i++) {
        snprintf(names[i], sizeof names[i], "X-H%zu", i);
        snprintf(values[i], sizeof values[i], "v%zu", i * 7);
        h[i].name = names[i];
        h[i].value = values[i];
    }
    struct cache_entry e = sample();
    e.headers = h;
    e.header_count = CACHE_ENTRY_MAX_HEADERS;
    round_trip(&e);

    e.header_count = CACHE_ENTRY_MAX_HEADERS + 1;
    unsigned char dummy = 0;
    unsigned char *buf = &dummy;
    size_t len = 99;
    assert_int_equal(cache_entry_encode(&e, &buf, &len), -1);
    assert_null(buf);
    assert_int_equal(len, 0);
}

static void test_encode_refuses_what_the_layout_cannot_carry(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    unsigned char *buf;
    size_t len;
    e.status = -1;
    assert_int_equal(cache_entry_encode(&e, &buf, &len), -1);
    e.status = 65536;
    assert_int_equal(cache_entry_encode(&e, &buf, &len), -1);
    e = sample();
    e.body = NULL; /* with a non-zero length */
    assert_int_equal(cache_entry_encode(&e, &buf, &len), -1);
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The documented layout, written independently of entry.c. */
static void test_layout_is_the_documented_one(void **state)
{
    (void)state;
    struct cache_header h[] = {{"A", "bc"}};
    unsigned char body[] = {'{', '}'};
    struct cache_entry e = {.status = 203,
                            .stored_at_ms = 0x0102030405060708,
                            .expires_at_ms = -2,
                            .credits_charged = 300,
                            .provider = "grok",
                            .request_id = "r",
                            .headers = h,
                            .header_count = 1,
                            .body = body,
                            .body_len = sizeof body};
    unsigned char want[128];
    unsigned char *p = want;
    memcpy(p, "CPE1", 4);
    p += 4;
    put16(p, CACHE_ENTRY_VERSION);
    p += 2;
    put16(p, 203);
    p += 2;
    put64(p, 0x0102030405060708);
    p += 8;
    put64(p, (uint64_t)-2);
    p += 8;
    put64(p, 300);
    p += 8;
    put16(p, 1);
    p += 2;
    const char *strings[] = {"grok", "r", "A", "bc", "{}"};
    for (size_t i = 0; i < 5; i++) {
        put32(p, (uint32_t)strlen(strings[i]));
        memcpy(p + 4, strings[i], strlen(strings[i]));
        p += 4 + strlen(strings[i]);
    }
    SHA256(want, (size_t)(p - want), p);
    p += SUM_LEN;

    size_t len;
    unsigned char *buf = encode(&e, &len);
    assert_int_equal(len, (size_t)(p - want));
    assert_memory_equal(buf, want, len);
    assert_int_equal(buf[8], 0x08); /* little endian */
    free(buf);
}

static void test_every_bit_flip_is_refused(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    size_t len;
    unsigned char *buf = encode(&e, &len);
    size_t refused = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[pos] ^= (unsigned char)(1u << bit);
            struct cache_entry got;
            memset(&got, 0x5a, sizeof got);
            if (cache_entry_decode(buf, len, &got) != 0)
                refused++;
            else
                cache_entry_free(&got);
            /* out is left empty on failure */
            assert_null(got.provider);
            assert_null(got.body);
            assert_int_equal(got.header_count, 0);
            buf[pos] ^= (unsigned char)(1u << bit);
        }
        buf[pos] ^= 0xff;
        struct cache_entry got;
        assert_int_equal(cache_entry_decode(buf, len, &got), -1);
        buf[pos] ^= 0xff;
    }
    assert_int_equal(refused, len * 8);
    struct cache_entry got;
    assert_int_equal(cache_entry_decode(buf, len, &got), 0);
    cache_entry_free(&got);
    free(buf);
}

static void test_truncation_and_extension_are_refused(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    size_t len;
    unsigned char *buf = encode(&e, &len);
    struct cache_entry got;
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past it. */
        unsigned char *cut = malloc(n == 0 ? 1 : n);
        assert_non_null(cut);
        memcpy(cut, buf, n);
        assert_int_equal(cache_entry_decode(cut, n, &got), -1);
        free(cut);
    }
    unsigned char *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(cache_entry_decode(longer, len + 1, &got), -1);
    free(longer);
    assert_int_equal(cache_entry_decode(NULL, 0, &got), -1);
    free(buf);
}

static void test_bad_magic_and_version(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    size_t len;
    unsigned char *buf = encode(&e, &len);
    struct cache_entry got;
    int64_t stored, expires;

    buf[3] = '2'; /* "CPE2", with a valid checksum */
    resign(buf, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    assert_int_equal(cache_entry_peek_times(buf, len, &stored, &expires), -1);
    buf[3] = '1';

    put16(buf + 4, CACHE_ENTRY_VERSION_REQUEST + 1);
    resign(buf, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    assert_int_equal(cache_entry_peek_times(buf, len, &stored, &expires), -1);
    /* A version 1 record relabelled 2 lacks the sample fields. */
    put16(buf + 4, CACHE_ENTRY_VERSION_SAMPLE);
    resign(buf, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    put16(buf + 4, 0);
    resign(buf, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), -1);

    put16(buf + 4, CACHE_ENTRY_VERSION);
    resign(buf, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), 0);
    cache_entry_free(&got);
    free(buf);
}

/* Samples (X-Cache-Sample K >= 2) are version 2: version 1 plus u32 sample
 * and the base key before the checksum. Sample 0 or 1 is version 1, byte for
 * byte what it was before samples existed. */
static void test_sample_records(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    size_t plain_len;
    unsigned char *plain = encode(&e, &plain_len);
    e.sample = 1;
    size_t one_len;
    unsigned char *one = encode(&e, &one_len);
    assert_int_equal(one_len, plain_len);
    assert_memory_equal(one, plain, plain_len);
    assert_int_equal(one[4], CACHE_ENTRY_VERSION);

    e.sample = 3;
    for (int i = 0; i < CACHE_ENTRY_KEY_BYTES; i++)
        e.base_key[i] = (unsigned char)(0xa0 + i);
    round_trip(&e);
    size_t len;
    unsigned char *buf = encode(&e, &len);
    assert_int_equal(len, plain_len + 4 + CACHE_ENTRY_KEY_BYTES);
    assert_int_equal(buf[4], CACHE_ENTRY_VERSION_SAMPLE);
    /* Version 1's bytes up to the body's end, then the sample fields. */
    size_t body_end = plain_len - SUM_LEN;
    assert_memory_equal(buf + 6, plain + 6, body_end - 6);
    unsigned char tail[4 + CACHE_ENTRY_KEY_BYTES];
    put32(tail, 3);
    memcpy(tail + 4, e.base_key, CACHE_ENTRY_KEY_BYTES);
    assert_memory_equal(buf + body_end, tail, sizeof tail);
    int64_t stored, expires;
    assert_int_equal(cache_entry_peek_times(buf, len, &stored, &expires), 0);
    assert_true(stored == e.stored_at_ms && expires == e.expires_at_ms);

    /* A version 2 record must name a sample of 2 or more. */
    put32(buf + body_end, 1);
    resign(buf, len);
    struct cache_entry got;
    assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    /* Truncated sample fields are refused. */
    put32(buf + body_end, 3);
    memmove(buf + body_end + 4, buf + len - SUM_LEN, SUM_LEN);
    resign(buf, body_end + 4 + SUM_LEN);
    assert_int_equal(cache_entry_decode(buf, body_end + 4 + SUM_LEN, &got), -1);
    free(buf);
    free(one);
    free(plain);
}

/* An entry that knows its request is version 3: version 1, then the
 * sample fields (zero when not a sample) and the request text. Without a
 * request nothing changes (version 1 or 2 as before). */
static void test_request_records(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    size_t plain_len;
    unsigned char *plain = encode(&e, &plain_len);
    e.request = "";
    size_t empty_len;
    unsigned char *empty = encode(&e, &empty_len);
    assert_int_equal(empty_len, plain_len);
    assert_memory_equal(empty, plain, plain_len);

    const char *text = "{\"country\":\"US\",\"prompt\":\"best CRM for startups\"}";
    e.request = (char *)text;
    size_t len;
    unsigned char *buf = encode(&e, &len);
    assert_int_equal(buf[4], CACHE_ENTRY_VERSION_REQUEST);
    assert_int_equal(len, plain_len + 4 + CACHE_ENTRY_KEY_BYTES + 4 + strlen(text));
    size_t body_end = plain_len - SUM_LEN;
    assert_memory_equal(buf + 6, plain + 6, body_end - 6);
    unsigned char tail[4 + CACHE_ENTRY_KEY_BYTES + 4];
    memset(tail, 0, sizeof tail);
    put32(tail + 4 + CACHE_ENTRY_KEY_BYTES, (uint32_t)strlen(text));
    assert_memory_equal(buf + body_end, tail, sizeof tail);
    assert_memory_equal(buf + body_end + sizeof tail, text, strlen(text));
    struct cache_entry got;
    assert_int_equal(cache_entry_decode(buf, len, &got), 0);
    assert_string_equal(got.request, text);
    assert_int_equal(got.sample, 0);
    assert_entries_equal(&e, &got);
    cache_entry_free(&got);
    assert_null(got.request);
    int64_t stored, expires;
    assert_int_equal(cache_entry_peek_times(buf, len, &stored, &expires), 0);
    assert_true(stored == e.stored_at_ms);
    /* Every truncation of the tail is refused. */
    for (size_t cut = body_end; cut < len - SUM_LEN; cut++) {
        unsigned char *shorter = malloc(cut + SUM_LEN);
        memcpy(shorter, buf, cut);
        resign(shorter, cut + SUM_LEN);
        assert_int_equal(cache_entry_decode(shorter, cut + SUM_LEN, &got), -1);
        free(shorter);
    }
    /* Sample 1 is not a sample: never written, refused. */
    put32(buf + body_end, 1);
    resign(buf, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    free(buf);

    /* A sample with its request. */
    e.sample = 4;
    for (int i = 0; i < CACHE_ENTRY_KEY_BYTES; i++)
        e.base_key[i] = (unsigned char)(0x40 + i);
    buf = encode(&e, &len);
    assert_int_equal(buf[4], CACHE_ENTRY_VERSION_REQUEST);
    assert_int_equal(cache_entry_decode(buf, len, &got), 0);
    assert_int_equal(got.sample, 4);
    assert_memory_equal(got.base_key, e.base_key, CACHE_ENTRY_KEY_BYTES);
    assert_string_equal(got.request, text);
    cache_entry_free(&got);
    free(buf);
    free(empty);
    free(plain);
}

/* Records whose checksum is valid but whose lengths lie. */
static void test_lying_lengths_are_refused(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    e.headers = NULL;
    e.header_count = 0;
    e.provider = "grok";
    e.request_id = "r";
    static unsigned char body[] = "body";
    e.body = body;
    e.body_len = 4;
    size_t len;
    unsigned char *good = encode(&e, &len);
    unsigned char *buf = malloc(len + 16);
    assert_non_null(buf);
    struct cache_entry got;
    const size_t count_at = FIXED_LEN - 2;
    const size_t provider_at = FIXED_LEN;
    const size_t body_at = FIXED_LEN + 4 + 4 + 4 + 1;

    /* header_count above the maximum, and above what is present. */
    static const unsigned counts[] = {CACHE_ENTRY_MAX_HEADERS + 1, 0xffff, 1, 2};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        memcpy(buf, good, len);
        put16(buf + count_at, counts[i]);
        resign(buf, len);
        assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    }
    /* A string length past the end, huge, or one short (the rest misparses). */
    static const uint32_t provider_lens[] = {0xffffffff, 0x7fffffff, 1000, 5, 3};
    for (size_t i = 0; i < sizeof provider_lens / sizeof provider_lens[0]; i++) {
        memcpy(buf, good, len);
        put32(buf + provider_at, provider_lens[i]);
        resign(buf, len);
        assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    }
    /* The body length too long or too short by one. */
    static const uint32_t body_lens[] = {0xffffffff, 5, 3, 0};
    for (size_t i = 0; i < sizeof body_lens / sizeof body_lens[0]; i++) {
        memcpy(buf, good, len);
        put32(buf + body_at, body_lens[i]);
        resign(buf, len);
        assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    }
    /* Bytes between the body and the checksum. */
    memcpy(buf, good, len - SUM_LEN);
    memset(buf + len - SUM_LEN, 'x', 3);
    resign(buf, len + 3);
    assert_int_equal(cache_entry_decode(buf, len + 3, &got), -1);
    /* A NUL inside a string. */
    memcpy(buf, good, len);
    buf[provider_at + 4 + 1] = '\0';
    resign(buf, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), -1);
    /* Untouched, it decodes. */
    memcpy(buf, good, len);
    assert_int_equal(cache_entry_decode(buf, len, &got), 0);
    assert_string_equal(got.provider, "grok");
    cache_entry_free(&got);
    free(buf);
    free(good);
}

static void test_peek_times(void **state)
{
    (void)state;
    struct cache_entry e = sample();
    e.stored_at_ms = -5;
    e.expires_at_ms = INT64_MAX - 3;
    size_t len;
    unsigned char *buf = encode(&e, &len);
    int64_t stored = 0, expires = 0;
    assert_int_equal(cache_entry_peek_times(buf, len, &stored, &expires), 0);
    assert_true(stored == -5);
    assert_true(expires == INT64_MAX - 3);
    /* Only the fixed head is needed. */
    assert_int_equal(cache_entry_peek_times(buf, FIXED_LEN, &stored, &expires), 0);
    for (size_t n = 0; n < FIXED_LEN; n++) {
        unsigned char *cut = malloc(n == 0 ? 1 : n);
        assert_non_null(cut);
        memcpy(cut, buf, n);
        assert_int_equal(cache_entry_peek_times(cut, n, &stored, &expires), -1);
        free(cut);
    }
    assert_int_equal(cache_entry_peek_times(NULL, 0, &stored, &expires), -1);
    free(buf);
}

static void test_random_input_never_crashes(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    struct cache_entry got;
    /* Pure noise, some of it starting with a valid head. */
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(next_random(&seed) % 200);
        unsigned char *buf = malloc(n == 0 ? 1 : n);
        assert_non_null(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)next_random(&seed);
        if (n >= 6 && round % 2 == 0) {
            memcpy(buf, "CPE1", 4);
            put16(buf + 4, CACHE_ENTRY_VERSION);
        }
        if (n >= SUM_LEN + 6 && round % 4 == 0)
            resign(buf, n);
        if (cache_entry_decode(buf, n, &got) == 0)
            cache_entry_free(&got);
        int64_t a, b;
        (void)cache_entry_peek_times(buf, n, &a, &b);
        free(buf);
    }
    /* Valid records with random bytes changed and a valid checksum again:
     * this reaches the length checks behind the checksum. */
    struct cache_entry e = sample();
    size_t len;
    unsigned char *good = encode(&e, &len);
    size_t decoded = 0;
    for (int round = 0; round < 20000; round++) {
        unsigned char *buf = malloc(len);
        assert_non_null(buf);
        memcpy(buf, good, len);
        int edits = 1 + (int)(next_random(&seed) % 3);
        for (int k = 0; k < edits; k++) {
            size_t pos = 6 + (size_t)(next_random(&seed) % (len - SUM_LEN - 6));
            buf[pos] = (unsigned char)next_random(&seed);
        }
        resign(buf, len);
        if (cache_entry_decode(buf, len, &got) == 0) {
            decoded++;
            assert_true(got.header_count <= CACHE_ENTRY_MAX_HEADERS);
            assert_non_null(got.provider);
            assert_non_null(got.body);
            cache_entry_free(&got);
        }
        free(buf);
    }
    assert_true(decoded > 0); /* edits inside strings and numbers still decode */
    free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_null_strings_encode_as_empty),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_encode_refuses_what_the_layout_cannot_carry),
        cmocka_unit_test(test_layout_is_the_documented_one),
        cmocka_unit_test(test_every_bit_flip_is_refused),
        cmocka_unit_test(test_truncation_and_extension_are_refused),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_request_records),
        cmocka_unit_test(test_lying_lengths_are_refused),
        cmocka_unit_test(test_sample_records),
        cmocka_unit_test(test_peek_times),
        cmocka_unit_test(test_random_input_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
