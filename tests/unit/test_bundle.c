/* test_bundle.c: the export bundle (bundle.h). A bundle written in memory
 * reads back with every record, field and header member intact; the writer
 * refuses what it cannot write (a record that does not decode, counts other
 * than declared). Every corruption is rejected with a message naming it: a
 * byte flipped anywhere in the file (but the gzip header's MTIME, XFL and OS,
 * which no check covers, and the odd bit of a Huffman table that decodes to
 * the very same content), truncation at many
 * points of the file and of the stream inside it, a bad magic, another
 * version, a trailer whose hash or counts disagree, and records that lie
 * behind a valid trailer (an entry failing its own checksum, a blob not
 * matching its hash, a key twice, a captured job without its blob, an
 * unknown type, a header not first, bytes after the trailer). Streams are
 * built by hand (raw_*) for the cases the writer cannot produce. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bundle.h"
#include "entry.h"

#include <openssl/evp.h>
#include <zlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (len > 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
}

static int sink(const void *data, size_t len, void *arg)
{
    buf_add(arg, data, len);
    return 0;
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(data, len, out, &n, EVP_sha256(), NULL), 1);
}

static void gzip_bytes(const void *data, size_t len, struct buf *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    unsigned char chunk[4096];
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)len;
    int rc;
    do {
        zs.next_out = chunk;
        zs.avail_out = sizeof chunk;
        rc = deflate(&zs, Z_FINISH);
        buf_add(out, chunk, sizeof chunk - zs.avail_out);
    } while (rc != Z_STREAM_END);
    deflateEnd(&zs);
}

static unsigned char *encode_entry(const char *provider, const char *body, int64_t stored,
                                   size_t *len)
{
    struct cache_header h[] = {{"Content-Type", "application/json"}, {"X-Request-ID", "rid-1"}};
    struct cache_entry e = {.status = 200,
                            .stored_at_ms = stored,
                            .expires_at_ms = stored + 3600000,
                            .credits_charged = 7,
                            .provider = (char *)provider,
                            .request_id = "rid-1",
                            .headers = h,
                            .header_count = 2,
                            .body = (unsigned char *)body,
                            .body_len = strlen(body)};
    unsigned char *rec = NULL;
    assert_int_equal(cache_entry_encode(&e, &rec, len), 0);
    return rec;
}

static void key_of(unsigned n, unsigned char key[32])
{
    memset(key, 0xC3, 32);
    put_be(key, n, 4);
}

static void gzip_page(const char *page, struct buf *gz, unsigned char hash[32])
{
    gzip_bytes(page, strlen(page), gz);
    sha256(page, strlen(page), hash);
}

/* The fixture bundle: 3 entries, 2 tasks, 2 jobs (one captured), 1 blob. */
struct fixture {
    struct buf file;
    unsigned char *records[3];
    size_t record_len[3];
    struct buf blob;
    unsigned char blob_hash[32];
    struct cache_job jobs[2];
};

static const char *const task_texts[2] = {"{\"task\":{\"id\":\"t1\",\"status\":\"COMPLETED\"}}",
                                          "t1"};

static void write_fixture(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    const char *providers[3] = {"chatgpt", "google", "perplexity"};
    for (unsigned i = 0; i < 3; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"success\":true,\"result\":{\"text\":\"answer %u\"}}", i);
        f->records[i] = encode_entry(providers[i], body, 1700000000000 + i, &f->record_len[i]);
    }
    gzip_page("<html><body>page one</body></html>", &f->blob, f->blob_hash);
    struct cache_job *j = &f->jobs[0];
    snprintf(j->id, sizeof j->id, "%s", "0b6f3c7e-6d1a-4c53-9c55-1c7b0a1f3e21/page-1");
    snprintf(j->url, sizeof j->url, "%s",
             "https://cdn.cloro.dev/results/0b6f3c7e-6d1a-4c53-9c55-1c7b0a1f3e21/page-1.html");
    j->state = CACHE_JOB_CAPTURED;
    j->created_ms = 1700000000000;
    j->expires_ms = 1700086400000;
    j->next_attempt_ms = -5;
    j->attempts = 3;
    memcpy(j->blob, f->blob_hash, 32);
    j->size = 35;
    snprintf(j->content_type, sizeof j->content_type, "%s", "text/html; charset=utf-8");
    j = &f->jobs[1];
    snprintf(j->id, sizeof j->id, "%s", "x0123/page-1");
    snprintf(j->url, sizeof j->url, "%s", "https://storage.cloro.dev/x.html");
    j->state = CACHE_JOB_LOST;
    snprintf(j->note, sizeof j->note, "%s", "expired before capture");

    struct cache_bundle_counts counts = {3, 2, 2, 1};
    json_t *info =
        json_pack("{s:s, s:s, s:{s:s, s:n, s:n}}", "created_at", "2026-01-02T03:04:05.000Z", "tool",
                  "cloro-proxy test", "filters", "provider", "chatgpt", "since", "match");
    char err[256] = "";
    struct cache_bundle_writer *w =
        cache_bundle_writer_new(sink, &f->file, &counts, info, err, sizeof err);
    json_decref(info);
    assert_non_null(w);
    for (unsigned i = 0; i < 3; i++) {
        unsigned char key[32];
        key_of(i, key);
        struct cache_bundle_meta m = {.stored_at_ms = 1700000000000 + i,
                                      .expires_at_ms = i == 2 ? 0 : 1700003600000};
        snprintf(m.provider, sizeof m.provider, "%s", providers[i]);
        assert_int_equal(cache_bundle_write_entry(w, key, &m, f->records[i], f->record_len[i]), 0);
    }
    for (unsigned i = 0; i < 2; i++) {
        unsigned char key[32];
        key_of(100 + i, key);
        assert_int_equal(cache_bundle_write_task(w, key, (const unsigned char *)task_texts[i],
                                                 strlen(task_texts[i])),
                         0);
    }
    assert_int_equal(cache_bundle_write_job(w, &f->jobs[0]), 0);
    assert_int_equal(cache_bundle_write_job(w, &f->jobs[1]), 0);
    assert_int_equal(cache_bundle_write_blob(w, f->blob_hash, f->blob.p, f->blob.len), 0);
    assert_int_equal(cache_bundle_writer_finish(w, err, sizeof err), 0);
    cache_bundle_writer_free(w);
}

static void free_fixture(struct fixture *f)
{
    for (int i = 0; i < 3; i++)
        free(f->records[i]);
    free(f->file.p);
    free(f->blob.p);
}

/* The fixture's uncompressed stream (new buffer). */
static unsigned char *inflate_all(const struct buf *file, size_t *len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
    size_t cap = 1 << 20;
    unsigned char *out = malloc(cap);
    zs.next_in = file->p;
    zs.avail_in = (uInt)file->len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    *len = cap - zs.avail_out;
    inflateEnd(&zs);
    return out;
}

/* Reads a file's bytes (copied); asserts it fails with a message containing want. */
static void assert_rejected(const unsigned char *data, size_t len, const char *want)
{
    struct cache_bundle b;
    char err[512] = "";
    int rc = cache_bundle_read(data, len, &b, err, sizeof err);
    if (rc == 0) {
        cache_bundle_free(&b);
        fail_msg("accepted a bad bundle (expected '%s')", want);
    }
    assert_null(b.raw);
    assert_int_equal(b.count, 0);
    if (want != NULL && strstr(err, want) == NULL)
        fail_msg("message '%s' does not say '%s'", err, want);
}

/* Parses a copy of an uncompressed stream; asserts it fails saying want. */
static void assert_raw_rejected(const unsigned char *raw, size_t len, const char *want)
{
    unsigned char *copy = malloc(len ? len : 1);
    memcpy(copy, raw, len);
    struct cache_bundle b;
    char err[512] = "";
    if (cache_bundle_parse(copy, len, &b, err, sizeof err) == 0) {
        cache_bundle_free(&b);
        fail_msg("accepted a bad stream (expected '%s')", want);
    }
    if (want != NULL && strstr(err, want) == NULL)
        fail_msg("message '%s' does not say '%s'", err, want);
}

/* A hand-made stream: magic, records, and a trailer computed (or not) over them. */
static void raw_magic(struct buf *b, const char *line)
{
    buf_add(b, line, strlen(line));
}

static void raw_record(struct buf *b, int type, const void *a, size_t a_len, const void *c,
                       size_t c_len)
{
    unsigned char frame[5];
    frame[0] = (unsigned char)type;
    put_be(frame + 1, a_len + c_len, 4);
    buf_add(b, frame, 5);
    buf_add(b, a, a_len);
    buf_add(b, c, c_len);
}

static void raw_header(struct buf *b, unsigned e, unsigned t, unsigned j, unsigned bl)
{
    char text[256];
    snprintf(text, sizeof text,
             "{\"format\":\"cloro-proxy-bundle\",\"version\":1,\"counts\":{\"entries\":%u,"
             "\"tasks\":%u,\"jobs\":%u,\"blobs\":%u}}",
             e, t, j, bl);
    raw_record(b, 'H', text, strlen(text), NULL, 0);
}

static void raw_trailer(struct buf *b, unsigned e, unsigned t, unsigned j, unsigned bl)
{
    unsigned char tr[64];
    put_be(tr, e, 8);
    put_be(tr + 8, t, 8);
    put_be(tr + 16, j, 8);
    put_be(tr + 24, bl, 8);
    sha256(b->p, b->len, tr + 32);
    raw_record(b, 'Z', tr, sizeof tr, NULL, 0);
}

static void raw_entry(struct buf *b, unsigned n, const unsigned char *rec, size_t len)
{
    unsigned char head[32 + 16 + 1 + 7 + 4];
    key_of(n, head);
    put_be(head + 32, 1700000000000, 8);
    put_be(head + 40, 0, 8);
    head[48] = 7;
    memcpy(head + 49, "chatgpt", 7);
    put_be(head + 56, 0, 4);
    raw_record(b, 'E', head, sizeof head, rec, len);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    struct fixture f;
    write_fixture(&f);
    assert_true(f.file.len > 20);
    assert_int_equal(f.file.p[0], 0x1f);
    assert_int_equal(f.file.p[1], 0x8b);

    size_t raw_len;
    unsigned char *raw = inflate_all(&f.file, &raw_len);
    assert_memory_equal(raw, "cloro-proxy-bundle 1\n", 21);
    free(raw);

    struct cache_bundle b;
    char err[256] = "";
    if (cache_bundle_read(f.file.p, f.file.len, &b, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(b.count, 8);
    assert_true(b.counts.entries == 3 && b.counts.tasks == 2 && b.counts.jobs == 2 &&
                b.counts.blobs == 1);
    assert_string_equal(json_string_value(json_object_get(b.header, "created_at")),
                        "2026-01-02T03:04:05.000Z");
    assert_string_equal(json_string_value(json_object_get(b.header, "format")),
                        "cloro-proxy-bundle");
    assert_int_equal(json_integer_value(json_object_get(b.header, "version")), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(b.header, "filters"), "provider")),
        "chatgpt");
    assert_true(json_is_null(json_object_get(json_object_get(b.header, "filters"), "match")));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(b.header, "counts"), "entries")), 3);

    const char *providers[3] = {"chatgpt", "google", "perplexity"};
    for (unsigned i = 0; i < 3; i++) {
        const struct cache_bundle_item *it = &b.items[i];
        unsigned char key[32];
        key_of(i, key);
        assert_int_equal(it->type, CACHE_BUNDLE_ENTRY);
        assert_memory_equal(it->key, key, 32);
        assert_int_equal(it->len, f.record_len[i]);
        assert_memory_equal(it->data, f.records[i], it->len);
        assert_true(it->meta.stored_at_ms == 1700000000000 + i);
        assert_true(it->meta.expires_at_ms == (i == 2 ? 0 : 1700003600000));
        assert_string_equal(it->meta.provider, providers[i]);
    }
    for (unsigned i = 0; i < 2; i++) {
        const struct cache_bundle_item *it = &b.items[3 + i];
        unsigned char key[32];
        key_of(100 + i, key);
        assert_int_equal(it->type, CACHE_BUNDLE_TASK);
        assert_memory_equal(it->key, key, 32);
        assert_int_equal(it->len, strlen(task_texts[i]));
        assert_memory_equal(it->data, task_texts[i], it->len);
    }
    for (unsigned i = 0; i < 2; i++) {
        const struct cache_job *got = &b.items[5 + i].job, *want = &f.jobs[i];
        assert_int_equal(b.items[5 + i].type, CACHE_BUNDLE_JOB);
        assert_string_equal(got->id, want->id);
        assert_string_equal(got->url, want->url);
        assert_int_equal(got->state, want->state);
        assert_true(got->created_ms == want->created_ms);
        assert_true(got->expires_ms == want->expires_ms);
        assert_true(got->next_attempt_ms == want->next_attempt_ms);
        assert_int_equal(got->attempts, want->attempts);
        assert_memory_equal(got->blob, want->blob, 32);
        assert_true(got->size == want->size);
        assert_string_equal(got->content_type, want->content_type);
        assert_string_equal(got->note, want->note);
    }
    const struct cache_bundle_item *blob = &b.items[7];
    assert_int_equal(blob->type, CACHE_BUNDLE_BLOB);
    assert_memory_equal(blob->key, f.blob_hash, 32);
    assert_int_equal(blob->len, f.blob.len);
    assert_memory_equal(blob->data, f.blob.p, blob->len);
    cache_bundle_free(&b);
    free_fixture(&f);
}

static void test_empty_bundle(void **state)
{
    (void)state;
    struct buf file = {0};
    struct cache_bundle_counts none = {0, 0, 0, 0};
    char err[256];
    struct cache_bundle_writer *w = cache_bundle_writer_new(sink, &file, &none, NULL, err, 256);
    assert_non_null(w);
    assert_int_equal(cache_bundle_writer_finish(w, err, sizeof err), 0);
    cache_bundle_writer_free(w);
    struct cache_bundle b;
    if (cache_bundle_read(file.p, file.len, &b, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(b.count, 0);
    cache_bundle_free(&b);
    free(file.p);
}

static void test_writer_refuses(void **state)
{
    (void)state;
    struct buf file = {0};
    struct cache_bundle_counts one = {1, 0, 0, 0};
    char err[256] = "";
    /* Counts other than declared. */
    struct cache_bundle_writer *w = cache_bundle_writer_new(sink, &file, &one, NULL, err, 256);
    assert_non_null(w);
    assert_int_equal(cache_bundle_writer_finish(w, err, sizeof err), -1);
    assert_non_null(strstr(err, "declared"));
    cache_bundle_writer_free(w);
    /* An entry record that does not decode. */
    file.len = 0;
    w = cache_bundle_writer_new(sink, &file, &one, NULL, err, 256);
    size_t len;
    unsigned char *rec = encode_entry("chatgpt", "{}", 1, &len);
    rec[len / 2] ^= 1;
    unsigned char key[32];
    key_of(1, key);
    struct cache_bundle_meta m = {.stored_at_ms = 1};
    assert_int_equal(cache_bundle_write_entry(w, key, &m, rec, len), -1);
    assert_int_equal(cache_bundle_writer_finish(w, err, sizeof err), -1);
    cache_bundle_writer_free(w);
    free(rec);
    /* A job without an id. */
    file.len = 0;
    struct cache_bundle_counts a_job = {0, 0, 1, 0};
    w = cache_bundle_writer_new(sink, &file, &a_job, NULL, err, 256);
    struct cache_job job;
    memset(&job, 0, sizeof job);
    assert_int_equal(cache_bundle_write_job(w, &job), -1);
    cache_bundle_writer_free(w);
    free(file.p);
}

/* Every byte of the file flipped, one at a time, is rejected (but the gzip
 * header's MTIME, XFL and OS bytes 4..9: no check covers them, and they
 * change nothing of the content). */
static void test_every_flipped_byte_is_rejected(void **state)
{
    (void)state;
    struct fixture f;
    write_fixture(&f);
    size_t raw_len;
    unsigned char *raw = inflate_all(&f.file, &raw_len);
    unsigned char *copy = malloc(f.file.len);
    size_t same = 0;
    for (size_t i = 0; i < f.file.len; i++) {
        if (i >= 4 && i <= 9)
            continue;
        memcpy(copy, f.file.p, f.file.len);
        copy[i] ^= 0x20;
        struct cache_bundle b;
        char err[512] = "";
        if (cache_bundle_read(copy, f.file.len, &b, err, sizeof err) == 0) {
            /* Only a flip that leaves the content as it was may pass: a bit
             * of a Huffman code length no symbol in use depends on. */
            if (b.raw_len != raw_len || memcmp(b.raw, raw, raw_len) != 0)
                fail_msg("a flip at byte %zu of %zu changed the content and was accepted", i,
                         f.file.len);
            cache_bundle_free(&b);
            same++;
            continue;
        }
        assert_true(err[0] != '\0');
    }
    assert_true(same <= 2);
    free(raw);
    /* In the middle: the gzip check or the compressed data says so. */
    memcpy(copy, f.file.p, f.file.len);
    copy[f.file.len / 2] ^= 0xff;
    struct cache_bundle b;
    char err[512] = "";
    assert_int_equal(cache_bundle_read(copy, f.file.len, &b, err, sizeof err), -1);
    if (strstr(err, "checksum mismatch") == NULL && strstr(err, "corrupted at byte") == NULL &&
        strstr(err, "truncated") == NULL)
        fail_msg("unclear message for a flipped byte: %s", err);
    free(copy);
    free_fixture(&f);
}

/* Flips inside the uncompressed stream (as if written wrong, then gzipped
 * right): the trailer's hash, the framing or the magic catches each. */
static void test_every_flipped_stream_byte_is_rejected(void **state)
{
    (void)state;
    struct fixture f;
    write_fixture(&f);
    size_t raw_len;
    unsigned char *raw = inflate_all(&f.file, &raw_len);
    for (size_t i = 0; i < raw_len; i++) {
        raw[i] ^= 0x01;
        struct buf gz = {0};
        gzip_bytes(raw, raw_len, &gz);
        struct cache_bundle b;
        char err[512] = "";
        if (cache_bundle_read(gz.p, gz.len, &b, err, sizeof err) == 0) {
            cache_bundle_free(&b);
            fail_msg("a flip at stream byte %zu of %zu was accepted", i, raw_len);
        }
        free(gz.p);
        raw[i] ^= 0x01;
    }
    /* Inside an entry's payload: the trailer's hash says so. */
    raw[raw_len / 2] ^= 0x01;
    assert_raw_rejected(raw, raw_len, "checksum mismatch");
    free(raw);
    free_fixture(&f);
}

static void test_truncation_is_rejected(void **state)
{
    (void)state;
    struct fixture f;
    write_fixture(&f);
    size_t cuts[] = {0,
                     1,
                     2,
                     5,
                     10,
                     11,
                     30,
                     f.file.len / 3,
                     f.file.len / 2,
                     f.file.len - 9,
                     f.file.len - 8,
                     f.file.len - 4,
                     f.file.len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        assert_rejected(f.file.p, cuts[i], "truncated at byte");
    /* The stream inside, cut anywhere (and gzipped whole). */
    size_t raw_len;
    unsigned char *raw = inflate_all(&f.file, &raw_len);
    for (size_t cut = 0; cut < raw_len; cut += cut < 40 ? 1 : 37) {
        struct buf gz = {0};
        gzip_bytes(raw, cut, &gz);
        assert_rejected(gz.p, gz.len, cut < 19 ? NULL : "truncated at byte");
        free(gz.p);
    }
    assert_raw_rejected(raw, raw_len - 1, "truncated at byte");
    assert_raw_rejected(raw, raw_len - 69, "truncated at byte"); /* the whole trailer gone */
    free(raw);
    free_fixture(&f);
}

static void test_bad_magic_and_version(void **state)
{
    (void)state;
    const unsigned char not_gzip[] = "cloro-proxy-bundle 1\n";
    assert_rejected(not_gzip, sizeof not_gzip - 1, "bad magic");

    struct buf b = {0};
    raw_magic(&b, "cloro-proxy-bundle 2\n");
    raw_header(&b, 0, 0, 0, 0);
    raw_trailer(&b, 0, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "unsupported version 2");
    struct buf gz = {0};
    gzip_bytes(b.p, b.len, &gz);
    assert_rejected(gz.p, gz.len, "unsupported version 2");
    free(gz.p);
    free(b.p);

    const char *bad[] = {"cloro-proxy-bundle x\n", "not-a-bundle 1\n", "cloro-proxy-bundle 1\r\n",
                         "\x1f\x8b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_raw_rejected((const unsigned char *)bad[i], strlen(bad[i]), "bad magic");
    assert_raw_rejected((const unsigned char *)"cloro-proxy-bun", 15, "truncated at byte 15");

    /* The file carries a valid gzip stream, then more bytes. */
    struct fixture f;
    write_fixture(&f);
    struct buf longer = {0};
    buf_add(&longer, f.file.p, f.file.len);
    buf_add(&longer, "junk", 4);
    assert_rejected(longer.p, longer.len, "follow the compressed stream");
    free(longer.p);
    free_fixture(&f);
}

static void test_trailer_mismatch(void **state)
{
    (void)state;
    struct fixture f;
    write_fixture(&f);
    size_t raw_len;
    unsigned char *raw = inflate_all(&f.file, &raw_len);
    /* The hash. */
    raw[raw_len - 1] ^= 0x80;
    assert_raw_rejected(raw, raw_len, "checksum mismatch");
    raw[raw_len - 1] ^= 0x80;
    /* The counts (the hash covers only what is before the trailer). */
    raw[raw_len - 64 + 7] += 1;
    assert_raw_rejected(raw, raw_len, "counts mismatch");
    raw[raw_len - 64 + 7] -= 1;
    /* Header and trailer agree, the records do not. */
    struct buf b = {0};
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 1, 0, 0, 0);
    raw_trailer(&b, 1, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "counts mismatch");
    free(b.p);
    /* A trailer of the wrong size. */
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 0, 0);
    raw_record(&b, 'Z', "short", 5, NULL, 0);
    assert_raw_rejected(b.p, b.len, "bad trailer");
    free(b.p);
    free(raw);
    free_fixture(&f);
}

/* Records that lie behind a valid trailer. */
static void test_bad_records_behind_a_valid_trailer(void **state)
{
    (void)state;
    size_t len;
    unsigned char *rec = encode_entry("chatgpt", "{\"success\":true}", 5, &len);

    /* An entry failing its own checksum. */
    struct buf b = {0};
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 1, 0, 0, 0);
    rec[len - 1] ^= 1;
    raw_entry(&b, 1, rec, len);
    rec[len - 1] ^= 1;
    raw_trailer(&b, 1, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "bad entry at byte");
    free(b.p);

    /* The same key twice. */
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 2, 0, 0, 0);
    raw_entry(&b, 1, rec, len);
    raw_entry(&b, 1, rec, len);
    raw_trailer(&b, 2, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "twice");
    free(b.p);

    /* An entry too short for its fields. */
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 1, 0, 0, 0);
    raw_record(&b, 'E', "short", 5, NULL, 0);
    raw_trailer(&b, 1, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "bad entry at byte");
    free(b.p);

    /* A blob whose content does not match its hash. */
    struct buf gz = {0};
    unsigned char hash[32];
    gzip_page("<html>a</html>", &gz, hash);
    hash[0] ^= 1;
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 0, 1);
    raw_record(&b, 'B', hash, 32, gz.p, gz.len);
    raw_trailer(&b, 0, 0, 0, 1);
    assert_raw_rejected(b.p, b.len, "does not match its hash");
    free(b.p);
    /* ... or is not gzip. */
    hash[0] ^= 1;
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 0, 1);
    raw_record(&b, 'B', hash, 32, "plain", 5);
    raw_trailer(&b, 0, 0, 0, 1);
    assert_raw_rejected(b.p, b.len, "bad blob at byte");
    free(b.p);

    /* A captured job whose blob is not in the bundle. */
    struct buf file = {0};
    struct cache_bundle_counts counts = {0, 0, 1, 0};
    char err[256];
    struct cache_bundle_writer *w = cache_bundle_writer_new(sink, &file, &counts, NULL, err, 256);
    struct cache_job job;
    memset(&job, 0, sizeof job);
    snprintf(job.id, sizeof job.id, "%s", "a/page-1");
    job.state = CACHE_JOB_CAPTURED;
    memcpy(job.blob, hash, 32);
    assert_int_equal(cache_bundle_write_job(w, &job), 0);
    assert_int_equal(cache_bundle_writer_finish(w, err, sizeof err), 0);
    cache_bundle_writer_free(w);
    assert_rejected(file.p, file.len, "which the bundle lacks");
    free(file.p);

    /* A job whose lengths lie. */
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 1, 0);
    unsigned char jp[69 + 2] = {0};
    jp[69] = 40; /* an id of 40 bytes, none present */
    raw_record(&b, 'J', jp, sizeof jp, NULL, 0);
    raw_trailer(&b, 0, 0, 1, 0);
    assert_raw_rejected(b.p, b.len, "bad job at byte");
    free(b.p);

    /* An unknown type; a record before the header; bytes after the trailer;
     * a second header; no trailer at all. */
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 0, 0);
    raw_record(&b, 'Q', "x", 1, NULL, 0);
    raw_trailer(&b, 0, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "unknown type");
    free(b.p);
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_entry(&b, 1, rec, len);
    raw_header(&b, 1, 0, 0, 0);
    raw_trailer(&b, 1, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "not the header");
    free(b.p);
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 0, 0);
    raw_trailer(&b, 0, 0, 0, 0);
    buf_add(&b, "more", 4);
    assert_raw_rejected(b.p, b.len, "follow the trailer");
    free(b.p);
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 0, 0);
    raw_header(&b, 0, 0, 0, 0);
    raw_trailer(&b, 0, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "second header");
    free(b.p);
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_header(&b, 0, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "without its trailer");
    free(b.p);
    /* A header that is not the bundle's JSON. */
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    raw_record(&b, 'H', "{\"format\":\"other\"}", 18, NULL, 0);
    raw_trailer(&b, 0, 0, 0, 0);
    assert_raw_rejected(b.p, b.len, "bad header");
    free(b.p);
    /* A length over the limit. */
    memset(&b, 0, sizeof b);
    raw_magic(&b, "cloro-proxy-bundle 1\n");
    unsigned char frame[5] = {'E', 0x7f, 0xff, 0xff, 0xff};
    buf_add(&b, frame, 5);
    assert_raw_rejected(b.p, b.len, "over the limit");
    free(b.p);

    free(gz.p);
    free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_bundle),
        cmocka_unit_test(test_writer_refuses),
        cmocka_unit_test(test_every_flipped_byte_is_rejected),
        cmocka_unit_test(test_every_flipped_stream_byte_is_rejected),
        cmocka_unit_test(test_truncation_is_rejected),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_trailer_mismatch),
        cmocka_unit_test(test_bad_records_behind_a_valid_trailer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
