/* gen_bundle: writes the bundle fuzzer's seeds with the project's own
 * writer: <dir>/empty.gz (no records) and <dir>/one.gz (an entry and a
 * job), and the uncompressed stream of each (<name>.raw), which
 * fuzz_bundle feeds to cache_bundle_parse directly. */
#include "bundle.h"
#include "entry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct buf {
    unsigned char *p;
    size_t len;
};

static int sink(const void *data, size_t len, void *arg)
{
    struct buf *b = arg;
    unsigned char *p = realloc(b->p, b->len + len);
    if (!p)
        return -1;
    memcpy(p + b->len, data, len);
    b->p = p;
    b->len += len;
    return 0;
}

static void put(const char *dir, const char *name, const unsigned char *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void gunzip_to(const char *dir, const char *name, const struct buf *gz)
{
    struct cache_bundle b;
    char err[256];
    if (cache_bundle_read(gz->p, gz->len, &b, err, sizeof err) != 0) {
        fprintf(stderr, "gen_bundle: own bundle does not read: %s\n", err);
        exit(1);
    }
    put(dir, name, b.raw, b.raw_len);
    cache_bundle_free(&b);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    char err[256];

    struct buf empty = {0};
    struct cache_bundle_counts none = {0};
    struct cache_bundle_writer *w =
        cache_bundle_writer_new(sink, &empty, &none, NULL, err, sizeof err);
    if (!w || cache_bundle_writer_finish(w, err, sizeof err) != 0) {
        fprintf(stderr, "gen_bundle: %s\n", err);
        return 1;
    }
    cache_bundle_writer_free(w);
    put(dir, "empty.gz", empty.p, empty.len);
    gunzip_to(dir, "empty.raw", &empty);

    struct cache_header hdr[] = {{"Content-Type", "application/json"}, {"X-Request-ID", "req-1"}};
    static const char body[] =
        "{\"success\":true,\"result\":{\"text\":\"hi\",\"html\":"
        "\"https://cdn.cloro.dev/results/0b6f3c1e-1111-4222-8333-444455556666/page-1.html\"}}";
    struct cache_entry e = {
        .status = 200,
        .stored_at_ms = 1700000000000,
        .expires_at_ms = 1700003600000,
        .credits_charged = 5,
        .provider = "chatgpt",
        .request_id = "req-1",
        .headers = hdr,
        .header_count = 2,
        .body = (unsigned char *)body,
        .body_len = sizeof body - 1,
        .sample = 0,
        .request = "POST /v1/monitor/chatgpt {\"country\":\"US\",\"prompt\":\"x\"}",
    };
    unsigned char *rec = NULL;
    size_t rec_len = 0;
    if (cache_entry_encode(&e, &rec, &rec_len) != 0) {
        fprintf(stderr, "gen_bundle: cache_entry_encode failed\n");
        return 1;
    }
    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(i * 7 + 1);
    struct cache_bundle_meta m = {.stored_at_ms = e.stored_at_ms, .expires_at_ms = e.expires_at_ms};
    strcpy(m.provider, "chatgpt");
    struct cache_job job;
    memset(&job, 0, sizeof job);
    strcpy(job.id, "0b6f3c1e-1111-4222-8333-444455556666/page-1");
    strcpy(job.url,
           "https://cdn.cloro.dev/results/0b6f3c1e-1111-4222-8333-444455556666/page-1.html");
    job.state = CACHE_JOB_PENDING;
    job.created_ms = e.stored_at_ms;
    job.expires_ms = e.stored_at_ms + 86400000;
    job.next_attempt_ms = e.stored_at_ms;

    struct buf one = {0};
    struct cache_bundle_counts c = {.entries = 1, .jobs = 1};
    w = cache_bundle_writer_new(sink, &one, &c, NULL, err, sizeof err);
    if (!w || cache_bundle_write_entry(w, key, &m, rec, rec_len) != 0 ||
        cache_bundle_write_job(w, &job) != 0 ||
        cache_bundle_writer_finish(w, err, sizeof err) != 0) {
        fprintf(stderr, "gen_bundle: %s\n", err);
        return 1;
    }
    cache_bundle_writer_free(w);
    free(rec);
    put(dir, "one.gz", one.p, one.len);
    gunzip_to(dir, "one.raw", &one);
    free(empty.p);
    free(one.p);
    return 0;
}
