/* test_cache_store.c: the LMDB store (store.h). Entries survive close and
 * reopen; an unknown format is refused and left intact; put, replace, touch,
 * delete, purge, stats and foreach keep "bytes" and the LRU order right;
 * eviction is least recently used first at the watermarks; a full map
 * (MDB_MAP_FULL) evicts or drops, never fails; a corrupt record is reported
 * and removed; another process (fork) reads what this one committed, and a
 * process killed inside a read leaves a store that opens. Artifact jobs: a
 * PUT creates its jobs only when absent, JOB replaces one and moves the
 * state counts, CAPTURE stores a blob once per content, every field of a
 * job survives the round trip, foreach_job walks in id order, jobs and
 * blobs survive reopening, a store without their databases opens, and a
 * capture that cannot fit is dropped. Async task records: TASK stores,
 * replaces and deletes a record and sets or clears its open mark;
 * foreach_open_task lists the open ones with their records in key order;
 * tasks survive reopening, count in neither bytes nor entries, are never
 * evicted (watermark or MAP_FULL), a task op that cannot fit is dropped,
 * and a store without their databases opens. Usage rows: USAGE stores and
 * replaces, foreach_usage walks from a key in order, USAGE_PRUNE cuts the
 * rows before its key, and they survive reopening. Export and import:
 * foreach_entry and foreach_task lend every record in key order; an import
 * adds, keeps or replaces as asked, never opens a task, only ever upgrades
 * a job to CAPTURED, and is one txn (a bad item or a bundle larger than the
 * map changes nothing). Each test works in
 * a fresh directory under /tmp, removed at the end; tampering goes through
 * the data file's bytes, since only store.c includes lmdb.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "entry.h"
#include "footprint.h"
#include "key.h"
#include "store.h"
#include "store_fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024u
#define MIB (1024u * 1024u)
/* What an entry of an n-byte record counts in the store's bytes. */
#define COST(s, n) cache_store_entry_bytes((s), (n))
/* The same on LMDB's usual 4 KiB pages, for bounds chosen before a store is
 * open (the tests run where pages are 4 KiB, which test_cache_footprint checks). */
#define COST4K(n) cache_footprint_entry(4096, (n))

static struct cache_store *open_store(const char *dir, size_t max_bytes)
{
    return store_fixture_open(dir, max_bytes);
}

static void make_key(unsigned n, unsigned char *key)
{
    store_fixture_key(n, 0xA5, key);
}

/* A valid record of exactly total bytes (at least the empty record's size),
 * its body filled with fill. */
static unsigned char *make_record(const char *provider, int64_t stored_at_ms, size_t total,
                                  unsigned char fill, size_t *len)
{
    struct cache_header h = {"Content-Type", "application/json"};
    struct cache_entry e = {.status = 200,
                            .stored_at_ms = stored_at_ms,
                            .expires_at_ms = stored_at_ms + 3600000,
                            .credits_charged = 3,
                            .provider = (char *)provider,
                            .request_id = "req-test",
                            .headers = &h,
                            .header_count = 1};
    unsigned char *empty = NULL;
    size_t empty_len = 0;
    assert_int_equal(cache_entry_encode(&e, &empty, &empty_len), 0);
    free(empty);
    assert_true(total >= empty_len);
    e.body_len = total - empty_len;
    e.body = malloc(e.body_len ? e.body_len : 1);
    assert_non_null(e.body);
    memset(e.body, fill, e.body_len);
    unsigned char *rec = NULL;
    assert_int_equal(cache_entry_encode(&e, &rec, len), 0);
    assert_int_equal(*len, total);
    free(e.body);
    return rec;
}

static struct cache_apply_result apply1(struct cache_store *s, enum cache_op_kind kind,
                                        const unsigned char *key, const unsigned char *rec,
                                        size_t len, int64_t now_ms)
{
    struct cache_op op = {.kind = kind, .record = rec, .record_len = len, .now_ms = now_ms};
    memcpy(op.key, key, CACHE_KEY_BYTES);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
    return r;
}

/* Puts key n with a record of total bytes stored at now_ms. */
static void put_n(struct cache_store *s, unsigned n, const char *provider, int64_t now_ms,
                  size_t total)
{
    unsigned char key[CACHE_KEY_BYTES];
    make_key(n, key);
    size_t len;
    unsigned char *rec = make_record(provider, now_ms, total, (unsigned char)n, &len);
    struct cache_apply_result r = apply1(s, CACHE_OP_PUT, key, rec, len, now_ms);
    assert_int_equal(r.applied, 1);
    free(rec);
}

static enum cache_get_result get_n(struct cache_store *s, unsigned n, struct cache_meta *meta)
{
    unsigned char key[CACHE_KEY_BYTES];
    make_key(n, key);
    struct cache_entry e;
    enum cache_get_result r = cache_store_get(s, key, &e, meta);
    cache_entry_free(&e);
    return r;
}

static struct cache_store_stats stats_of(struct cache_store *s)
{
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    return st;
}

/* Replaces every occurrence of from (len bytes) in the store's data file by
 * to. Returns how many. The store must be closed. */
static int patch_data_file(const char *dir, const void *from, const void *to, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    assert_true(size > 0);
    unsigned char *buf = malloc((size_t)size);
    assert_non_null(buf);
    rewind(fp);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    int count = 0;
    for (size_t i = 0; i + len <= (size_t)size; i++) {
        if (memcmp(buf + i, from, len) == 0) {
            memcpy(buf + i, to, len);
            count++;
        }
    }
    rewind(fp);
    assert_int_equal(fwrite(buf, 1, (size_t)size, fp), (size_t)size);
    assert_int_equal(fclose(fp), 0);
    free(buf);
    return count;
}

static void test_put_get_round_trip(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    unsigned char key[CACHE_KEY_BYTES];
    make_key(1, key);
    size_t len;
    unsigned char *rec = make_record("google/news", 1767225600123, 500, 'x', &len);
    struct cache_apply_result r = apply1(s, CACHE_OP_PUT, key, rec, len, 1767225600200);
    assert_int_equal(r.applied, 1);
    assert_int_equal(r.dropped, 0);
    assert_int_equal(r.evicted, 0);

    struct cache_entry e;
    struct cache_meta m;
    assert_int_equal(cache_store_get(s, key, &e, &m), CACHE_GET_FOUND);
    assert_int_equal(e.status, 200);
    assert_string_equal(e.provider, "google/news");
    assert_string_equal(e.request_id, "req-test");
    assert_int_equal(e.header_count, 1);
    assert_string_equal(e.headers[0].name, "Content-Type");
    assert_true(e.stored_at_ms == 1767225600123);
    assert_true(e.body_len > 0 && e.body[0] == 'x' && e.body[e.body_len - 1] == 'x');
    cache_entry_free(&e);
    assert_int_equal(m.hits, 0);
    assert_true(m.last_hit_ms == 0);
    assert_true(m.stored_at_ms == 1767225600123);
    assert_true(m.expires_at_ms == 1767225600123 + 3600000);
    assert_int_equal(m.size, len);
    assert_string_equal(m.provider, "google/news");

    /* meta may be NULL; another key is absent. */
    assert_int_equal(cache_store_get(s, key, &e, NULL), CACHE_GET_FOUND);
    cache_entry_free(&e);
    assert_int_equal(get_n(s, 2, NULL), CACHE_GET_ABSENT);

    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, COST(s, len));
    free(rec);
    cache_store_close(s);
}

static void test_reopen_keeps_entries(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    for (unsigned i = 0; i < 20; i++)
        put_n(s, i, "chatgpt", 1000 + i, 300 + i);
    struct cache_store_stats before = stats_of(s);
    cache_store_close(s);

    s = open_store(f->dir, 16 * MIB);
    for (unsigned i = 0; i < 20; i++)
        assert_int_equal(get_n(s, i, NULL), CACHE_GET_FOUND);
    struct cache_store_stats after = stats_of(s);
    assert_int_equal(after.entries, 20);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.max_bytes, 16 * MIB);
    cache_store_close(s);

    /* The CLI (max_bytes 0) adopts the map and reports the recorded bound. */
    s = open_store(f->dir, 0);
    struct cache_store_stats cli = stats_of(s);
    assert_int_equal(cli.entries, 20);
    assert_int_equal(cli.max_bytes, 16 * MIB);
    assert_int_equal(cli.map_bytes, before.map_bytes);
    cache_store_close(s);
}

static void test_map_size(void **state)
{
    struct fixture *f = *state;
    long page = sysconf(_SC_PAGESIZE);
    /* Small bound: bound + 64 MiB; large bound: twice the bound. */
    struct cache_store *s = open_store(f->dir, 1 * MIB + 1);
    struct cache_store_stats st = stats_of(s);
    assert_true(st.map_bytes >= 65 * MIB + 1);
    assert_true(st.map_bytes < 65 * MIB + 1 + (uint64_t)page);
    assert_int_equal(st.map_bytes % (uint64_t)page, 0);
    cache_store_close(s);

    s = open_store(f->dir, 256 * MIB);
    st = stats_of(s);
    assert_int_equal(st.map_bytes, 512 * MIB);
    put_n(s, 1, "chatgpt", 1, 300); /* a commit records the map size in the file */
    cache_store_close(s);

    /* A smaller bound never shrinks the file's map; the CLI adopts it. */
    s = open_store(f->dir, 1 * MIB);
    st = stats_of(s);
    assert_int_equal(st.map_bytes, 512 * MIB);
    assert_int_equal(st.max_bytes, 1 * MIB);
    cache_store_close(s);
    s = open_store(f->dir, 0);
    st = stats_of(s);
    assert_int_equal(st.map_bytes, 512 * MIB);
    assert_int_equal(st.max_bytes, 1 * MIB);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    cache_store_close(s);
}

static void test_format_mismatch_refused(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 8 * MIB);
    put_n(s, 7, "chatgpt", 1000, 200);
    cache_store_close(s);

    const char *good = "cloro-proxy-cache 1", *bad = "cloro-proxy-cache 9";
    assert_true(patch_data_file(f->dir, good, bad, strlen(good)) >= 1);
    struct cache_store_options o = {.dir = f->dir, .max_bytes = 8 * MIB};
    char err[512] = "";
    assert_null(cache_store_open(&o, err, sizeof err));
    if (strstr(err, f->dir) == NULL || strstr(err, bad) == NULL)
        fail_msg("message names neither the directory nor the version: %s", err);
    /* The CLI is refused too. */
    o.max_bytes = 0;
    assert_null(cache_store_open(&o, err, sizeof err));

    /* Nothing was wiped: with the version restored, the entry is there. */
    assert_true(patch_data_file(f->dir, bad, good, strlen(good)) >= 1);
    s = open_store(f->dir, 8 * MIB);
    assert_int_equal(get_n(s, 7, NULL), CACHE_GET_FOUND);
    cache_store_close(s);
}

static void test_open_errors(void **state)
{
    struct fixture *f = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/file", f->base);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    struct cache_store_options o = {.dir = path, .max_bytes = MIB};
    char err[512] = "";
    assert_null(cache_store_open(&o, err, sizeof err));
    assert_non_null(strstr(err, path));

    /* A data file that is not LMDB is refused, not overwritten. */
    assert_int_equal(mkdir(f->dir, 0700), 0);
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    char junk[8192];
    memset(junk, 'J', sizeof junk);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    o.dir = f->dir;
    err[0] = '\0';
    assert_null(cache_store_open(&o, err, sizeof err));
    assert_non_null(strstr(err, f->dir));
}

static void test_replace_adjusts_bytes(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 1000, 1000);
    put_n(s, 2, "chatgpt", 1001, 700);
    put_n(s, 1, "perplexity", 1002, 400); /* replaces */
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, COST(s, 700) + COST(s, 400));
    struct cache_meta m;
    assert_int_equal(get_n(s, 1, &m), CACHE_GET_FOUND);
    assert_int_equal(m.size, 400);
    assert_string_equal(m.provider, "perplexity");
    assert_true(m.stored_at_ms == 1002);
    cache_store_close(s);
}

static void test_touch(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 100, 300);
    unsigned char key[CACHE_KEY_BYTES];
    make_key(1, key);
    struct cache_op ops[2] = {{.kind = CACHE_OP_TOUCH, .now_ms = 200},
                              {.kind = CACHE_OP_TOUCH, .now_ms = 300}};
    memcpy(ops[0].key, key, CACHE_KEY_BYTES);
    memcpy(ops[1].key, key, CACHE_KEY_BYTES);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, ops, 2, &r), 0);
    assert_int_equal(r.applied, 2);
    struct cache_meta m;
    assert_int_equal(get_n(s, 1, &m), CACHE_GET_FOUND);
    assert_int_equal(m.hits, 2);
    assert_true(m.last_hit_ms == 300);
    assert_true(m.stored_at_ms == 100);

    /* One op may stand for many hits. */
    struct cache_op many = {.kind = CACHE_OP_TOUCH, .now_ms = 350, .hits = 40};
    memcpy(many.key, key, CACHE_KEY_BYTES);
    assert_int_equal(cache_store_apply(s, &many, 1, &r), 0);
    assert_int_equal(get_n(s, 1, &m), CACHE_GET_FOUND);
    assert_int_equal(m.hits, 42);
    assert_true(m.last_hit_ms == 350);

    /* Touching an absent key is a no-op. */
    make_key(99, key);
    r = apply1(s, CACHE_OP_TOUCH, key, NULL, 0, 400);
    assert_int_equal(get_n(s, 99, NULL), CACHE_GET_ABSENT);
    assert_int_equal(stats_of(s).entries, 1);

    /* A put resets hits. */
    put_n(s, 1, "chatgpt", 500, 300);
    assert_int_equal(get_n(s, 1, &m), CACHE_GET_FOUND);
    assert_int_equal(m.hits, 0);
    assert_true(m.last_hit_ms == 0);
    cache_store_close(s);
}

static void test_delete(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 100, 300);
    put_n(s, 2, "chatgpt", 101, 400);
    unsigned char key[CACHE_KEY_BYTES];
    make_key(1, key);
    struct cache_apply_result r = apply1(s, CACHE_OP_DELETE, key, NULL, 0, 0);
    assert_int_equal(r.applied, 1);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_ABSENT);
    assert_int_equal(get_n(s, 2, NULL), CACHE_GET_FOUND);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, COST(s, 400));
    /* Deleting what is absent is fine. */
    r = apply1(s, CACHE_OP_DELETE, key, NULL, 0, 0);
    assert_int_equal(r.applied, 1);
    /* Put, delete, put in one batch: the last put wins. */
    size_t len;
    unsigned char *rec = make_record("chatgpt", 5, 250, 'z', &len);
    struct cache_op ops[3] = {
        {.kind = CACHE_OP_PUT, .record = rec, .record_len = len, .now_ms = 5},
        {.kind = CACHE_OP_DELETE},
        {.kind = CACHE_OP_PUT, .record = rec, .record_len = len, .now_ms = 6},
    };
    for (int i = 0; i < 3; i++)
        memcpy(ops[i].key, key, CACHE_KEY_BYTES);
    assert_int_equal(cache_store_apply(s, ops, 3, &r), 0);
    assert_int_equal(r.applied, 3);
    st = stats_of(s);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, COST(s, 400) + COST(s, 250));
    free(rec);
    cache_store_close(s);
}

static void test_undecodable_put_refused(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    unsigned char garbage[100];
    memset(garbage, 'G', sizeof garbage);
    size_t len;
    unsigned char *rec = make_record("chatgpt", 5, 250, 'v', &len);
    struct cache_op ops[2] = {
        {.kind = CACHE_OP_PUT, .record = garbage, .record_len = sizeof garbage, .now_ms = 5},
        {.kind = CACHE_OP_PUT, .record = rec, .record_len = len, .now_ms = 5},
    };
    make_key(1, ops[0].key);
    make_key(2, ops[1].key);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, ops, 2, &r), 0);
    assert_int_equal(r.applied, 1); /* the garbage is neither applied nor dropped */
    assert_int_equal(r.dropped, 0);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_ABSENT);
    assert_int_equal(get_n(s, 2, NULL), CACHE_GET_FOUND);
    assert_int_equal(stats_of(s).bytes, COST(s, len));
    free(rec);
    cache_store_close(s);
}

static void test_corrupt_record_detected_and_removed(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 100, 300);
    put_n(s, 2, "chatgpt", 101, 3000); /* body of 0x02 bytes */
    size_t len2 = 3000;
    cache_store_close(s);

    /* Flip bytes inside record 2's body, behind LMDB's back. */
    unsigned char from[64], to[64];
    memset(from, 0x02, sizeof from);
    memset(to, 0x02, sizeof to);
    to[10] = 0xEE;
    assert_true(patch_data_file(f->dir, from, to, sizeof from) >= 1);

    s = open_store(f->dir, 16 * MIB);
    struct cache_entry e;
    unsigned char key[CACHE_KEY_BYTES];
    make_key(2, key);
    assert_int_equal(cache_store_get(s, key, &e, NULL), CACHE_GET_CORRUPT);
    cache_entry_free(&e); /* empty, safe to free */
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    assert_int_equal(stats_of(s).bytes, COST(s, 300) + COST(s, len2));

    /* A touch leaves it (reads verify); the reader's delete removes it. */
    apply1(s, CACHE_OP_TOUCH, key, NULL, 0, 200);
    assert_int_equal(cache_store_get(s, key, &e, NULL), CACHE_GET_CORRUPT);
    cache_entry_free(&e);
    apply1(s, CACHE_OP_DELETE, key, NULL, 0, 201);
    assert_int_equal(cache_store_get(s, key, &e, NULL), CACHE_GET_ABSENT);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, COST(s, 300));
    cache_store_close(s);
}

static void test_purge(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    /* 2500 entries (more than one purge txn), in one apply. */
    enum { N = 2500 };
    struct cache_op *ops = calloc(N, sizeof *ops);
    unsigned char **recs = calloc(N, sizeof *recs);
    assert_non_null(ops);
    assert_non_null(recs);
    const char *providers[] = {"chatgpt", "google", "perplexity"};
    uint64_t google_bytes = 0;
    for (unsigned i = 0; i < N; i++) {
        size_t len;
        recs[i] = make_record(providers[i % 3], 1000 + i, 200 + i % 7, 'p', &len);
        ops[i] = (struct cache_op){
            .kind = CACHE_OP_PUT, .record = recs[i], .record_len = len, .now_ms = 1000 + i};
        make_key(i, ops[i].key);
        if (i % 3 == 1)
            google_bytes += COST(s, len);
    }
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, ops, N, &r), 0);
    assert_int_equal(r.applied, N);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.entries, N);
    uint64_t total = st.bytes;

    /* By provider (exact match: "google" is not "google/news"). */
    assert_true(cache_store_purge(s, "google/news", 0) == 0);
    int64_t n = cache_store_purge(s, "google", 0);
    assert_true(n == (N + 1) / 3);
    st = stats_of(s);
    assert_int_equal(st.entries, N - (uint64_t)n);
    assert_int_equal(st.bytes, total - google_bytes);
    for (unsigned i = 0; i < 30; i++)
        assert_int_equal(get_n(s, i, NULL), i % 3 == 1 ? CACHE_GET_ABSENT : CACHE_GET_FOUND);

    /* By age: stored_at < 1000 + 1500. */
    int64_t expect = 0;
    for (unsigned i = 0; i < 1500; i++)
        expect += i % 3 != 1;
    n = cache_store_purge(s, NULL, 1000 + 1500);
    assert_true(n == expect);
    assert_int_equal(get_n(s, 1499, NULL), CACHE_GET_ABSENT);
    assert_int_equal(get_n(s, 1500, NULL), CACHE_GET_FOUND);
    /* Provider and age together, then everything. */
    n = cache_store_purge(s, "chatgpt", 1000 + 2000);
    assert_true(n > 0);
    assert_int_equal(get_n(s, 1500, NULL), CACHE_GET_ABSENT); /* 1500 % 3 == 0: chatgpt */
    assert_int_equal(get_n(s, 2001, NULL), CACHE_GET_FOUND);
    uint64_t left = stats_of(s).entries;
    n = cache_store_purge(s, NULL, 0);
    assert_true(n == (int64_t)left);
    st = stats_of(s);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    for (unsigned i = 0; i < N; i++)
        free(recs[i]);
    free(recs);
    free(ops);
    cache_store_close(s);
}

struct visit_log {
    const struct cache_store *s; /* for COST */
    unsigned count;
    unsigned stop_after;
    unsigned char last[CACHE_KEY_BYTES];
    uint64_t bytes;
};

static int on_visit(const unsigned char *key, const struct cache_meta *meta, void *arg)
{
    struct visit_log *v = arg;
    if (v->count > 0 && memcmp(v->last, key, CACHE_KEY_BYTES) >= 0)
        fail_msg("foreach is not in key order");
    memcpy(v->last, key, CACHE_KEY_BYTES);
    v->bytes += COST(v->s, meta->size);
    v->count++;
    return v->stop_after != 0 && v->count == v->stop_after;
}

/* The bound holds on disk: answers of 1.7 to 2.7 KB (most over LMDB's node
 * limit, so each takes a whole overflow page), six times the bound, put
 * four a txn under random keys as the writer does. The pages the file
 * uses (its high-water mark less its free pages) stay within 1.3 times
 * max_bytes; counted by record bytes, the same load took about twice it. */
static void test_file_within_bound(void **state)
{
    struct fixture *f = *state;
    const size_t bound = 1 * MIB;
    struct cache_store *s = open_store(f->dir, bound);
    enum { N = 3000, PER_TXN = 4 };
    uint64_t offered = 0;
    for (unsigned i = 0; i < N; i += PER_TXN) {
        struct cache_op ops[PER_TXN];
        unsigned char *recs[PER_TXN];
        for (unsigned j = 0; j < PER_TXN; j++) {
            size_t len;
            recs[j] = make_record("chatgpt", 1000 + i + j, 1700 + (i + j) * 37 % 1000, 'a', &len);
            offered += len;
            ops[j] = (struct cache_op){
                .kind = CACHE_OP_PUT, .record = recs[j], .record_len = len, .now_ms = 1000 + i};
            store_fixture_key((i + j) * 2654435761u, 0x5A, ops[j].key);
        }
        struct cache_apply_result r;
        assert_int_equal(cache_store_apply(s, ops, PER_TXN, &r), 0);
        assert_int_equal(r.applied, PER_TXN);
        for (unsigned j = 0; j < PER_TXN; j++)
            free(recs[j]);
    }
    struct cache_store_stats st = stats_of(s);
    struct visit_log v = {.s = s};
    assert_int_equal(cache_store_foreach(s, on_visit, &v), 0);
    assert_int_equal(v.bytes, st.bytes);
    assert_true(st.evictions > 0);
    assert_true(st.bytes <= bound);
    assert_true(st.file_bytes <= bound * 13 / 10);
    print_message("file within bound: %llu bytes of answers offered to a %zu-byte bound: %llu "
                  "entries kept, counted %llu bytes, file pages in use %llu bytes (%.2fx the "
                  "bound)\n",
                  (unsigned long long)offered, bound, (unsigned long long)st.entries,
                  (unsigned long long)st.bytes, (unsigned long long)st.file_bytes,
                  (double)st.file_bytes / (double)bound);
    cache_store_close(s);
}

static void test_foreach_and_stats(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct visit_log v = {.s = s};
    assert_int_equal(cache_store_foreach(s, on_visit, &v), 0);
    assert_int_equal(v.count, 0);
    unsigned order[] = {5, 3, 9, 1, 7};
    for (unsigned i = 0; i < 5; i++)
        put_n(s, order[i], "chatgpt", 100 + i, 150 + 10 * order[i]);
    v = (struct visit_log){.s = s};
    assert_int_equal(cache_store_foreach(s, on_visit, &v), 0);
    assert_int_equal(v.count, 5);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.bytes, v.bytes);
    assert_int_equal(st.max_bytes, 16 * MIB);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.dropped, 0);
    /* A visitor stops the walk. */
    v = (struct visit_log){.s = s, .stop_after = 2};
    assert_int_equal(cache_store_foreach(s, on_visit, &v), 0);
    assert_int_equal(v.count, 2);
    cache_store_close(s);
}

static void test_eviction_lru_order(void **state)
{
    struct fixture *f = *state;
    /* A bound of 16 entries of 4 KiB records: above 90% (the 15th record)
     * evict down to 80% (12 records). */
    struct cache_store *s = open_store(f->dir, 16 * COST4K(4 * KIB));
    for (unsigned i = 0; i < 10; i++)
        put_n(s, i, "chatgpt", 1000 + i, 4 * KIB);
    unsigned char key[CACHE_KEY_BYTES];
    make_key(0, key);
    apply1(s, CACHE_OP_TOUCH, key, NULL, 0, 2000); /* the oldest becomes the newest */
    for (unsigned i = 10; i < 14; i++)
        put_n(s, i, "chatgpt", 3000 + i, 4 * KIB);
    assert_int_equal(stats_of(s).evictions, 0); /* 14 of 16: below the high watermark */

    make_key(14, key);
    size_t len;
    unsigned char *rec = make_record("chatgpt", 3014, 4 * KIB, 14, &len);
    struct cache_apply_result r = apply1(s, CACHE_OP_PUT, key, rec, len, 3014);
    free(rec);
    assert_int_equal(r.applied, 1);
    assert_int_equal(r.evicted, 3);
    assert_int_equal(get_n(s, 0, NULL), CACHE_GET_FOUND); /* touched: survives */
    for (unsigned i = 1; i <= 3; i++)
        assert_int_equal(get_n(s, i, NULL), CACHE_GET_ABSENT);
    for (unsigned i = 4; i < 15; i++)
        assert_int_equal(get_n(s, i, NULL), CACHE_GET_FOUND);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.entries, 12);
    assert_int_equal(st.bytes, 12 * COST(s, 4 * KIB));
    assert_int_equal(st.evictions, 3);

    /* The counter persists. */
    cache_store_close(s);
    s = open_store(f->dir, 16 * COST4K(4 * KIB));
    assert_int_equal(stats_of(s).evictions, 3);
    cache_store_close(s);
}

static void test_map_full(void **state)
{
    struct fixture *f = *state;
    /* A new store opened by the CLI keeps LMDB's default map (1 MiB): the
     * only way to a tiny map, since the proxy's map is bound + 64 MiB. */
    struct cache_store *s = open_store(f->dir, 0);
    struct cache_store_stats st = stats_of(s);
    assert_true(st.map_bytes <= 2 * MIB);
    assert_int_equal(st.max_bytes, 0);

    /* Single puts until the map is full many times over: never an error. */
    unsigned n = 0;
    for (; n < 400; n++)
        put_n(s, n, "chatgpt", 1000 + n, 4 * KIB);
    st = stats_of(s);
    assert_true(st.evictions > 0);
    assert_true(st.entries > 0 && st.entries < 400);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(get_n(s, n - 1, NULL), CACHE_GET_FOUND);

    /* Batches that do not fit as a whole. */
    enum { B = 60 };
    struct cache_op ops[B];
    unsigned char *recs[B];
    for (unsigned i = 0; i < B; i++) {
        size_t len;
        recs[i] = make_record("google", 5000 + i, 4 * KIB, 'b', &len);
        ops[i] = (struct cache_op){
            .kind = CACHE_OP_PUT, .record = recs[i], .record_len = len, .now_ms = 5000 + i};
        make_key(10000 + i, ops[i].key);
    }
    struct cache_apply_result r;
    uint64_t dropped = 0;
    for (int round = 0; round < 3; round++) {
        assert_int_equal(cache_store_apply(s, ops, B, &r), 0);
        assert_int_equal(r.applied + r.dropped, B);
        dropped += r.dropped;
    }
    for (unsigned i = 0; i < B; i++)
        free(recs[i]);

    /* Whatever is left reads back with good checksums. */
    struct visit_log v = {.s = s};
    assert_int_equal(cache_store_foreach(s, on_visit, &v), 0);
    st = stats_of(s);
    assert_int_equal(v.count, st.entries);
    assert_int_equal(v.bytes, st.bytes);
    for (unsigned i = 0; i < 400; i++)
        assert_int_not_equal(get_n(s, i, NULL), CACHE_GET_CORRUPT);

    /* A record larger than the map is dropped and counted, not an error. */
    unsigned char key[CACHE_KEY_BYTES];
    make_key(777777, key);
    size_t len;
    unsigned char *big = make_record("chatgpt", 9000, 2 * MIB, 'B', &len);
    r = apply1(s, CACHE_OP_PUT, key, big, len, 9000);
    free(big);
    assert_int_equal(r.applied, 0);
    assert_int_equal(r.dropped, 1);
    assert_int_equal(get_n(s, 777777, NULL), CACHE_GET_ABSENT);
    st = stats_of(s);
    assert_int_equal(st.dropped, dropped + 1);

    /* And the store still takes puts afterwards. */
    put_n(s, 888888, "chatgpt", 9100, 4 * KIB);
    assert_int_equal(get_n(s, 888888, NULL), CACHE_GET_FOUND);
    cache_store_close(s);

    s = open_store(f->dir, 0);
    st = stats_of(s);
    assert_int_equal(st.dropped, dropped + 1);
    assert_true(st.evictions > 0);
    cache_store_close(s);
}

/* --- Artifact jobs and blobs ------------------------------------------------ */

static struct cache_job make_job(const char *id, enum cache_job_state state)
{
    struct cache_job j;
    memset(&j, 0, sizeof j);
    snprintf(j.id, sizeof j.id, "%s", id);
    snprintf(j.url, sizeof j.url, "https://storage.cloro.dev/artifacts/%s.html", id);
    j.state = state;
    j.created_ms = 1767225600000;
    j.expires_ms = 1767225600000 + 86400000;
    j.next_attempt_ms = 1767225600000;
    return j;
}

/* A content hash: fill in all 32 bytes. */
static void make_hash(unsigned char fill, unsigned char *hash)
{
    memset(hash, fill, 32);
}

/* Applies a PUT of key n (a record of total bytes) with jobs. */
static struct cache_apply_result put_with_jobs(struct cache_store *s, unsigned n, size_t total,
                                               const struct cache_job *jobs, size_t job_count)
{
    size_t len;
    unsigned char *rec = make_record("chatgpt", 1000, total, 'r', &len);
    struct cache_op op = {.kind = CACHE_OP_PUT,
                          .record = rec,
                          .record_len = len,
                          .now_ms = 1000,
                          .jobs = jobs,
                          .job_count = job_count};
    make_key(n, op.key);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
    free(rec);
    return r;
}

/* A JOB (gzip NULL) or CAPTURE of job. */
static struct cache_apply_result apply_job(struct cache_store *s, enum cache_op_kind kind,
                                           const struct cache_job *job, const unsigned char *gzip,
                                           size_t gzip_len)
{
    struct cache_op op = {
        .kind = kind, .record = gzip, .record_len = gzip_len, .jobs = job, .job_count = 1};
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
    return r;
}

struct job_tally {
    unsigned count;
    unsigned stop_after;
    uint64_t by_state[3];
    char last[CACHE_ARTIFACT_ID_MAX];
    char ids[8][CACHE_ARTIFACT_ID_MAX]; /* the first eight visited */
};

static int on_job(const struct cache_job *job, void *arg)
{
    struct job_tally *t = arg;
    if (t->count > 0 && strcmp(t->last, job->id) >= 0)
        fail_msg("foreach_job is not in id order: '%s' after '%s'", job->id, t->last);
    snprintf(t->last, sizeof t->last, "%s", job->id);
    if (t->count < 8)
        snprintf(t->ids[t->count], sizeof t->ids[0], "%s", job->id);
    assert_true((unsigned)job->state < 3);
    t->by_state[job->state]++;
    t->count++;
    return t->stop_after != 0 && t->count == t->stop_after;
}

/* The jobs by state, as foreach_job finds them and as the counters say. */
static void assert_jobs(struct cache_store *s, uint64_t pending, uint64_t captured, uint64_t lost)
{
    struct job_tally t = {0};
    assert_int_equal(cache_store_foreach_job(s, on_job, &t), 0);
    assert_int_equal(t.by_state[CACHE_JOB_PENDING], pending);
    assert_int_equal(t.by_state[CACHE_JOB_CAPTURED], captured);
    assert_int_equal(t.by_state[CACHE_JOB_LOST], lost);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.jobs_pending, pending);
    assert_int_equal(st.jobs_captured, captured);
    assert_int_equal(st.jobs_lost, lost);
}

static enum cache_job_state job_state(struct cache_store *s, const char *id)
{
    struct cache_job j;
    assert_int_equal(cache_store_get_job(s, id, &j), CACHE_GET_FOUND);
    assert_string_equal(j.id, id);
    return j.state;
}

static void test_put_creates_jobs_once(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct cache_job jobs[2] = {make_job("u1/page-1", CACHE_JOB_PENDING),
                                make_job("u1/page-2", CACHE_JOB_PENDING)};
    uint64_t empty = stats_of(s).bytes;
    struct cache_apply_result r = put_with_jobs(s, 1, 600, jobs, 2);
    assert_int_equal(r.applied, 1);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    assert_jobs(s, 2, 0, 0);
    struct cache_job got;
    assert_int_equal(cache_store_get_job(s, "u1/page-2", &got), CACHE_GET_FOUND);
    assert_string_equal(got.url, jobs[1].url);
    assert_int_equal(got.state, CACHE_JOB_PENDING);
    assert_int_equal(cache_store_get_job(s, "u1/page-3", &got), CACHE_GET_ABSENT);
    assert_int_equal(cache_store_get_job(s, "", &got), CACHE_GET_ABSENT);
    /* Only the answer counts in bytes (the bound eviction keeps), not its jobs. */
    assert_int_equal(stats_of(s).bytes, empty + COST(s, 600));

    /* page-1 is captured; page-2 failed once. */
    struct cache_job cap = jobs[0];
    cap.state = CACHE_JOB_CAPTURED;
    make_hash(0x11, cap.blob);
    cap.size = 5000;
    snprintf(cap.content_type, sizeof cap.content_type, "text/html");
    const unsigned char gzip[] = {0x1f, 0x8b, 8, 0, 'g', 'z'};
    assert_int_equal(apply_job(s, CACHE_OP_CAPTURE, &cap, gzip, sizeof gzip).applied, 1);
    struct cache_job failed = jobs[1];
    failed.attempts = 1;
    snprintf(failed.note, sizeof failed.note, "HTTP 503");
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &failed, NULL, 0).applied, 1);
    assert_jobs(s, 1, 1, 0);
    assert_int_equal(stats_of(s).blob_bytes, sizeof gzip);
    uint64_t before = stats_of(s).bytes;

    /* The same answer again, naming the same ids as new pending jobs, and a
     * third: the existing two stay as they are, the third is created. */
    struct cache_job again[3] = {make_job("u1/page-1", CACHE_JOB_PENDING),
                                 make_job("u1/page-2", CACHE_JOB_PENDING),
                                 make_job("u1/page-3", CACHE_JOB_PENDING)};
    r = put_with_jobs(s, 1, 600, again, 2);
    assert_int_equal(r.applied, 1);
    assert_int_equal(stats_of(s).bytes, before); /* same record, nothing new */
    assert_int_equal(job_state(s, "u1/page-1"), CACHE_JOB_CAPTURED);
    assert_int_equal(cache_store_get_job(s, "u1/page-2", &got), CACHE_GET_FOUND);
    assert_int_equal(got.attempts, 1);
    assert_string_equal(got.note, "HTTP 503");
    assert_jobs(s, 1, 1, 0);
    r = put_with_jobs(s, 2, 600, again, 3);
    assert_int_equal(r.applied, 1);
    assert_int_equal(job_state(s, "u1/page-1"), CACHE_JOB_CAPTURED);
    assert_jobs(s, 2, 1, 0);

    /* A job without an id is skipped; the entry is stored all the same. */
    struct cache_job no_id = make_job("", CACHE_JOB_PENDING);
    assert_int_equal(put_with_jobs(s, 3, 600, &no_id, 1).applied, 1);
    assert_int_equal(get_n(s, 3, NULL), CACHE_GET_FOUND);
    assert_jobs(s, 2, 1, 0);

    /* Deleting the entries leaves the jobs and the blob. */
    for (unsigned n = 1; n <= 3; n++) {
        unsigned char key[CACHE_KEY_BYTES];
        make_key(n, key);
        apply1(s, CACHE_OP_DELETE, key, NULL, 0, 2000);
    }
    assert_int_equal(stats_of(s).entries, 0);
    assert_jobs(s, 2, 1, 0);
    unsigned char *data;
    size_t len;
    assert_int_equal(cache_store_get_blob(s, cap.blob, &data, &len), CACHE_GET_FOUND);
    free(data);
    cache_store_close(s);
}

static void test_job_replace_moves_counts(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct cache_job jobs[2] = {make_job("u2/page-1", CACHE_JOB_PENDING),
                                make_job("u2/page-2", CACHE_JOB_PENDING)};
    put_with_jobs(s, 1, 500, jobs, 2);
    assert_jobs(s, 2, 0, 0);

    /* A failed attempt: still pending, later. */
    struct cache_job j = jobs[0];
    j.attempts = 1;
    j.next_attempt_ms = j.created_ms + 60000;
    snprintf(j.note, sizeof j.note, "timeout");
    uint64_t b0 = stats_of(s).bytes;
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &j, NULL, 0).applied, 1);
    assert_jobs(s, 2, 0, 0);
    uint64_t b1 = stats_of(s).bytes;
    assert_int_equal(b1, b0); /* job records are not answer bytes */

    /* Lost: pending -> lost. */
    j.attempts = 5;
    j.state = CACHE_JOB_LOST;
    snprintf(j.note, sizeof j.note, "expired");
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &j, NULL, 0).applied, 1);
    assert_jobs(s, 1, 0, 1);
    assert_int_equal(stats_of(s).bytes, b1); /* same lengths: same bytes */
    struct cache_job got;
    assert_int_equal(cache_store_get_job(s, "u2/page-1", &got), CACHE_GET_FOUND);
    assert_int_equal(got.state, CACHE_JOB_LOST);
    assert_int_equal(got.attempts, 5);
    assert_string_equal(got.note, "expired");

    /* A JOB of an id not there creates it. */
    struct cache_job other = make_job("u9/page-1", CACHE_JOB_LOST);
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &other, NULL, 0).applied, 1);
    assert_jobs(s, 1, 0, 2);
    jobs[1].state = CACHE_JOB_LOST;
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &jobs[1], NULL, 0).applied, 1);
    assert_jobs(s, 0, 0, 3);

    /* Malformed ops are not applied: no id, an unknown state, no job. */
    struct cache_job bad = make_job("", CACHE_JOB_PENDING);
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &bad, NULL, 0).applied, 0);
    bad = make_job("u2/page-1", CACHE_JOB_PENDING);
    bad.state = (enum cache_job_state)7;
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &bad, NULL, 0).applied, 0);
    struct cache_op none = {.kind = CACHE_OP_JOB};
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &none, 1, &r), 0);
    assert_int_equal(r.applied, 0);
    assert_int_equal(r.dropped, 0);
    assert_int_equal(job_state(s, "u2/page-1"), CACHE_JOB_LOST);
    assert_jobs(s, 0, 0, 3);
    cache_store_close(s);
}

static void test_capture_stores_blob_once(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct cache_job jobs[2] = {make_job("u3/page-1", CACHE_JOB_PENDING),
                                make_job("u3/page-2", CACHE_JOB_PENDING)};
    put_with_jobs(s, 1, 500, jobs, 2);
    unsigned char hash[32];
    make_hash(0x42, hash);
    unsigned char other[32];
    make_hash(0x43, other);

    /* Two jobs, the same content; the second's gzip bytes differ (another
     * compressor run) and are not stored. */
    unsigned char gz1[3000], gz2[2900];
    for (size_t i = 0; i < sizeof gz1; i++)
        gz1[i] = (unsigned char)(i * 7);
    memset(gz2, 0xEE, sizeof gz2);
    struct cache_job c1 = jobs[0], c2 = jobs[1];
    c1.state = c2.state = CACHE_JOB_CAPTURED;
    memcpy(c1.blob, hash, 32);
    memcpy(c2.blob, hash, 32);
    c1.size = c2.size = 20000;
    snprintf(c1.content_type, sizeof c1.content_type, "text/html; charset=utf-8");
    snprintf(c2.content_type, sizeof c2.content_type, "text/html; charset=utf-8");

    uint64_t b0 = stats_of(s).bytes;
    struct cache_apply_result r = apply_job(s, CACHE_OP_CAPTURE, &c1, gz1, sizeof gz1);
    assert_int_equal(r.applied, 1);
    uint64_t b1 = stats_of(s).bytes;
    r = apply_job(s, CACHE_OP_CAPTURE, &c2, gz2, sizeof gz2);
    assert_int_equal(r.applied, 1);
    uint64_t b2 = stats_of(s).bytes;
    /* Blobs are counted apart (blob_bytes), once: not in the answers' bytes. */
    assert_int_equal(b1, b0);
    assert_int_equal(b2, b1);
    assert_jobs(s, 0, 2, 0);
    assert_int_equal(stats_of(s).blob_bytes, sizeof gz1);

    unsigned char *data = NULL;
    size_t len = 0;
    assert_int_equal(cache_store_get_blob(s, hash, &data, &len), CACHE_GET_FOUND);
    assert_int_equal(len, sizeof gz1);
    assert_memory_equal(data, gz1, sizeof gz1);
    free(data);
    assert_int_equal(cache_store_get_blob(s, other, &data, &len), CACHE_GET_ABSENT);
    assert_null(data);
    assert_int_equal(len, 0);

    struct cache_job got;
    assert_int_equal(cache_store_get_job(s, "u3/page-2", &got), CACHE_GET_FOUND);
    assert_int_equal(got.state, CACHE_JOB_CAPTURED);
    assert_memory_equal(got.blob, hash, 32);
    assert_int_equal(got.size, 20000);
    assert_string_equal(got.content_type, "text/html; charset=utf-8");

    /* A capture and a JOB in one batch, in order; a capture without its
     * bytes is not applied. */
    struct cache_job c3 = make_job("u3/page-3", CACHE_JOB_CAPTURED);
    memcpy(c3.blob, other, 32);
    struct cache_job l3 = make_job("u3/page-3", CACHE_JOB_LOST);
    unsigned char gz3[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct cache_op ops[3] = {
        {.kind = CACHE_OP_CAPTURE,
         .record = gz3,
         .record_len = sizeof gz3,
         .jobs = &c3,
         .job_count = 1},
        {.kind = CACHE_OP_JOB, .jobs = &l3, .job_count = 1},
        {.kind = CACHE_OP_CAPTURE, .record = NULL, .record_len = 0, .jobs = &c3, .job_count = 1},
    };
    assert_int_equal(cache_store_apply(s, ops, 3, &r), 0);
    assert_int_equal(r.applied, 2);
    assert_int_equal(job_state(s, "u3/page-3"), CACHE_JOB_LOST);
    assert_int_equal(cache_store_get_blob(s, other, &data, &len), CACHE_GET_FOUND);
    assert_int_equal(len, sizeof gz3);
    free(data);
    assert_jobs(s, 0, 2, 1);
    assert_int_equal(stats_of(s).blob_bytes, sizeof gz1 + sizeof gz3);
    cache_store_close(s);
}

static void test_job_round_trip(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct cache_job j;
    memset(&j, 0, sizeof j);
    memset(j.id, 'i', sizeof j.id - 1);
    memset(j.url, 'u', sizeof j.url - 1);
    memset(j.content_type, 'c', sizeof j.content_type - 1);
    memset(j.note, 'n', sizeof j.note - 1);
    j.id[0] = '0';
    j.url[sizeof j.url - 2] = '$';
    j.state = CACHE_JOB_CAPTURED;
    j.created_ms = INT64_MIN;
    j.expires_ms = INT64_MAX;
    j.next_attempt_ms = -1;
    j.attempts = UINT32_MAX;
    for (unsigned i = 0; i < sizeof j.blob; i++)
        j.blob[i] = (unsigned char)(0xF0 ^ i);
    j.size = UINT64_MAX;
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &j, NULL, 0).applied, 1);

    struct cache_job got;
    memset(&got, 0x5C, sizeof got);
    assert_int_equal(cache_store_get_job(s, j.id, &got), CACHE_GET_FOUND);
    assert_string_equal(got.id, j.id);
    assert_string_equal(got.url, j.url);
    assert_int_equal(got.state, CACHE_JOB_CAPTURED);
    assert_true(got.created_ms == INT64_MIN);
    assert_true(got.expires_ms == INT64_MAX);
    assert_true(got.next_attempt_ms == -1);
    assert_true(got.attempts == UINT32_MAX);
    assert_memory_equal(got.blob, j.blob, sizeof j.blob);
    assert_true(got.size == UINT64_MAX);
    assert_string_equal(got.content_type, j.content_type);
    assert_string_equal(got.note, j.note);
    assert_int_equal(strlen(got.id), CACHE_ARTIFACT_ID_MAX - 1);
    assert_int_equal(strlen(got.url), CACHE_ARTIFACT_URL_MAX - 1);

    /* Fields without their NUL are cut to the field less one; the empty
     * strings and zeroes of a new job read back as such. */
    struct cache_job full;
    memset(&full, 'z', sizeof full);
    full.state = CACHE_JOB_PENDING;
    full.attempts = 0;
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &full, NULL, 0).applied, 1);
    char id[CACHE_ARTIFACT_ID_MAX];
    memset(id, 'z', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    assert_int_equal(cache_store_get_job(s, id, &got), CACHE_GET_FOUND);
    assert_int_equal(strlen(got.url), CACHE_ARTIFACT_URL_MAX - 1);
    assert_int_equal(strlen(got.content_type), sizeof got.content_type - 1);
    assert_int_equal(strlen(got.note), sizeof got.note - 1);

    struct cache_job small = make_job("u4/page-1", CACHE_JOB_PENDING);
    assert_int_equal(apply_job(s, CACHE_OP_JOB, &small, NULL, 0).applied, 1);
    assert_int_equal(cache_store_get_job(s, "u4/page-1", &got), CACHE_GET_FOUND);
    assert_string_equal(got.url, small.url);
    assert_string_equal(got.content_type, "");
    assert_string_equal(got.note, "");
    assert_int_equal(got.attempts, 0);
    assert_int_equal(got.size, 0);
    assert_true(got.expires_ms == small.expires_ms);
    cache_store_close(s);
}

static void test_foreach_job(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct job_tally t = {0};
    assert_int_equal(cache_store_foreach_job(s, on_job, &t), 0);
    assert_int_equal(t.count, 0);
    const char *ids[] = {"c/page-1", "a/page-2", "b/page-1", "a/page-10", "a/page-1"};
    struct cache_job jobs[5];
    for (unsigned i = 0; i < 5; i++)
        jobs[i] = make_job(ids[i], i == 2 ? CACHE_JOB_LOST : CACHE_JOB_PENDING);
    put_with_jobs(s, 1, 400, jobs, 5);
    put_n(s, 2, "chatgpt", 1000, 400); /* entries do not show up */

    t = (struct job_tally){0};
    assert_int_equal(cache_store_foreach_job(s, on_job, &t), 0);
    assert_int_equal(t.count, 5);
    const char *sorted[] = {"a/page-1", "a/page-10", "a/page-2", "b/page-1", "c/page-1"};
    for (unsigned i = 0; i < 5; i++)
        assert_string_equal(t.ids[i], sorted[i]);
    assert_int_equal(t.by_state[CACHE_JOB_LOST], 1);

    t = (struct job_tally){.stop_after = 2};
    assert_int_equal(cache_store_foreach_job(s, on_job, &t), 0);
    assert_int_equal(t.count, 2);
    cache_store_close(s);
}

static void test_reopen_keeps_jobs_and_blobs(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct cache_job jobs[3] = {make_job("u5/page-1", CACHE_JOB_PENDING),
                                make_job("u5/page-2", CACHE_JOB_PENDING),
                                make_job("u5/page-3", CACHE_JOB_PENDING)};
    put_with_jobs(s, 1, 700, jobs, 3);
    struct cache_job c = jobs[0];
    c.state = CACHE_JOB_CAPTURED;
    make_hash(0x77, c.blob);
    unsigned char gz[777];
    memset(gz, 0x77, sizeof gz);
    apply_job(s, CACHE_OP_CAPTURE, &c, gz, sizeof gz);
    jobs[2].state = CACHE_JOB_LOST;
    apply_job(s, CACHE_OP_JOB, &jobs[2], NULL, 0);
    struct cache_store_stats before = stats_of(s);
    cache_store_close(s);

    for (int cli = 0; cli < 2; cli++) {
        s = open_store(f->dir, cli ? 0 : 16 * MIB);
        assert_jobs(s, 1, 1, 1);
        assert_int_equal(job_state(s, "u5/page-1"), CACHE_JOB_CAPTURED);
        unsigned char *data;
        size_t len;
        assert_int_equal(cache_store_get_blob(s, c.blob, &data, &len), CACHE_GET_FOUND);
        assert_int_equal(len, sizeof gz);
        assert_memory_equal(data, gz, sizeof gz);
        free(data);
        struct cache_store_stats st = stats_of(s);
        assert_int_equal(st.bytes, before.bytes);
        assert_int_equal(st.blob_bytes, sizeof gz);
        assert_int_equal(st.entries, 1);
        cache_store_close(s);
    }
}

/* A store made before jobs and blobs existed has neither database: the
 * data file's names "jobs" and "blobs" (and the job counters' names in
 * "info") are renamed away, same length and same order, and the store must
 * open, keep its entries and take jobs. */
static void test_store_without_job_databases(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct cache_job old = make_job("old/page-1", CACHE_JOB_PENDING);
    put_with_jobs(s, 1, 500, &old, 1);
    cache_store_close(s);
    assert_true(patch_data_file(f->dir, "jobs", "jobz", 4) >= 2);
    assert_true(patch_data_file(f->dir, "blobs", "blobz", 5) >= 1);

    s = open_store(f->dir, 16 * MIB);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    assert_jobs(s, 0, 0, 0); /* a new, empty "jobs" */
    struct cache_job got;
    assert_int_equal(cache_store_get_job(s, "old/page-1", &got), CACHE_GET_ABSENT);
    assert_int_equal(cache_store_get_job(s, "u6/page-1", &got), CACHE_GET_ABSENT);
    struct cache_job j = make_job("u6/page-1", CACHE_JOB_PENDING);
    assert_int_equal(put_with_jobs(s, 2, 500, &j, 1).applied, 1);
    j.state = CACHE_JOB_CAPTURED;
    make_hash(0x66, j.blob);
    unsigned char gz[100];
    memset(gz, 0x66, sizeof gz);
    assert_int_equal(apply_job(s, CACHE_OP_CAPTURE, &j, gz, sizeof gz).applied, 1);
    cache_store_close(s);

    s = open_store(f->dir, 0);
    assert_jobs(s, 0, 1, 0);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    assert_int_equal(get_n(s, 2, NULL), CACHE_GET_FOUND);
    cache_store_close(s);
}

static void test_capture_too_big_dropped(void **state)
{
    struct fixture *f = *state;
    /* The CLI's 1 MiB map (see test_map_full). */
    struct cache_store *s = open_store(f->dir, 0);
    struct cache_job j = make_job("u7/page-1", CACHE_JOB_PENDING);
    assert_int_equal(put_with_jobs(s, 1, 4 * KIB, &j, 1).applied, 1);
    uint64_t bytes = stats_of(s).bytes;

    struct cache_job c = j;
    c.state = CACHE_JOB_CAPTURED;
    make_hash(0x99, c.blob);
    size_t big_len = 2 * MIB;
    unsigned char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 0x99, big_len);
    struct cache_apply_result r = apply_job(s, CACHE_OP_CAPTURE, &c, big, big_len);
    free(big);
    assert_int_equal(r.applied, 0);
    assert_int_equal(r.dropped, 1);
    /* Neither the blob nor the job's change: it stays pending. */
    assert_int_equal(job_state(s, "u7/page-1"), CACHE_JOB_PENDING);
    unsigned char *data;
    size_t len;
    assert_int_equal(cache_store_get_blob(s, c.blob, &data, &len), CACHE_GET_ABSENT);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.blob_bytes, 0);
    assert_true(st.bytes <= bytes); /* the entry may have been evicted for room */

    /* A capture that fits goes in. */
    unsigned char small[64];
    memset(small, 0x99, sizeof small);
    assert_int_equal(apply_job(s, CACHE_OP_CAPTURE, &c, small, sizeof small).applied, 1);
    assert_int_equal(job_state(s, "u7/page-1"), CACHE_JOB_CAPTURED);
    assert_jobs(s, 0, 1, 0);
    assert_int_equal(stats_of(s).blob_bytes, sizeof small);
    cache_store_close(s);
}

/* --- Async task records ----------------------------------------------------- */

/* Task key number n: a fill unlike make_key's, so task and answer keys differ. */
static void task_key(unsigned n, unsigned char *key)
{
    store_fixture_key(n, 0x7E, key);
}

static unsigned task_number(const unsigned char *key)
{
    return (unsigned)key[0] << 24 | (unsigned)key[1] << 16 | (unsigned)key[2] << 8 | key[3];
}

/* A TASK op of key n: record text (NULL deletes), open or not. */
static struct cache_apply_result apply_task(struct cache_store *s, unsigned n, const char *text,
                                            bool open)
{
    struct cache_op op = {.kind = CACHE_OP_TASK,
                          .record = (const unsigned char *)text,
                          .record_len = text != NULL ? strlen(text) : 0,
                          .open = open};
    task_key(n, op.key);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
    return r;
}

/* Task n's record is want (NULL: absent). */
static void assert_task(struct cache_store *s, unsigned n, const char *want)
{
    unsigned char key[CACHE_KEY_BYTES];
    task_key(n, key);
    unsigned char *data = (unsigned char *)"junk";
    size_t len = 99;
    enum cache_get_result r = cache_store_get_task(s, key, &data, &len);
    if (want == NULL) {
        if (r != CACHE_GET_ABSENT)
            fail_msg("task %u: result %d, expected absent", n, (int)r);
        assert_null(data);
        assert_int_equal(len, 0);
        return;
    }
    if (r != CACHE_GET_FOUND)
        fail_msg("task %u: result %d, expected '%.40s'", n, (int)r, want);
    bool same = len == strlen(want) && memcmp(data, want, len) == 0;
    free(data);
    if (!same)
        fail_msg("task %u: %zu bytes, not the %zu of '%.40s'", n, len, strlen(want), want);
}

struct open_tally {
    unsigned count;
    unsigned stop_after;
    unsigned char last[CACHE_KEY_BYTES];
    unsigned ns[16];    /* the first 16 visited, by task number */
    char texts[16][64]; /* and their records (cut to 63 bytes) */
};

static int on_open_task(const unsigned char *key, const unsigned char *data, size_t len, void *arg)
{
    struct open_tally *t = arg;
    if (t->count > 0 && memcmp(t->last, key, CACHE_KEY_BYTES) >= 0)
        fail_msg("foreach_open_task is not in key order");
    memcpy(t->last, key, CACHE_KEY_BYTES);
    if (t->count < 16) {
        t->ns[t->count] = task_number(key);
        snprintf(t->texts[t->count], sizeof t->texts[0], "%.*s", (int)len, (const char *)data);
    }
    t->count++;
    return t->stop_after != 0 && t->count == t->stop_after;
}

/* foreach_open_task visits exactly tasks ns[0..count) (ascending), and
 * stats agree on the open count given. */
static void assert_open_tasks(struct cache_store *s, const unsigned *ns, unsigned count,
                              uint64_t open_keys)
{
    struct open_tally t = {0};
    assert_int_equal(cache_store_foreach_open_task(s, on_open_task, &t), 0);
    assert_int_equal(t.count, count);
    for (unsigned i = 0; i < count && i < 16; i++)
        assert_int_equal(t.ns[i], ns[i]);
    assert_int_equal(stats_of(s).tasks_open, open_keys);
}

static void test_task_put_get_replace_delete(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 1000, 500);
    struct cache_store_stats before = stats_of(s);
    assert_int_equal(before.tasks, 0);
    assert_task(s, 1, NULL);

    const char *t1 = "{\"id\":\"t1\",\"status\":\"PENDING\"}";
    struct cache_apply_result r = apply_task(s, 1, t1, false);
    assert_int_equal(r.applied, 1);
    assert_int_equal(r.dropped, 0);
    assert_int_equal(r.evicted, 0);
    assert_task(s, 1, t1);

    /* Tasks and answers live apart, whatever their keys. */
    unsigned char key[CACHE_KEY_BYTES];
    task_key(1, key);
    struct cache_entry e;
    assert_int_equal(cache_store_get(s, key, &e, NULL), CACHE_GET_ABSENT);
    make_key(1, key);
    unsigned char *data;
    size_t len;
    assert_int_equal(cache_store_get_task(s, key, &data, &len), CACHE_GET_ABSENT);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);

    /* Replaced whole, longer then shorter. */
    const char *t1b =
        "{\"id\":\"t1\",\"status\":\"COMPLETED\",\"result\":{\"text\":\"a longer one\"}}";
    assert_int_equal(apply_task(s, 1, t1b, false).applied, 1);
    assert_task(s, 1, t1b);
    assert_int_equal(apply_task(s, 1, "{}", false).applied, 1);
    assert_task(s, 1, "{}");
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.tasks, 1);
    assert_int_equal(st.tasks_open, 0);
    assert_int_equal(st.entries, before.entries); /* not an answer */
    assert_int_equal(st.bytes, before.bytes);     /* not in the answers' bytes */

    /* A NULL record deletes; deleting what is absent is fine. */
    r = apply_task(s, 1, NULL, false);
    assert_int_equal(r.applied, 1);
    assert_task(s, 1, NULL);
    assert_int_equal(stats_of(s).tasks, 0);
    assert_int_equal(apply_task(s, 1, NULL, false).applied, 1);

    /* In one batch, in order, with an answer among them: the last op of a
     * key wins. An empty (not NULL) record is a record. */
    size_t rec_len;
    unsigned char *rec = make_record("chatgpt", 2000, 400, 'q', &rec_len);
    struct cache_op ops[5] = {
        {.kind = CACHE_OP_TASK, .record = (const unsigned char *)"a", .record_len = 1},
        {.kind = CACHE_OP_TASK, .record = NULL, .record_len = 0},
        {.kind = CACHE_OP_TASK, .record = (const unsigned char *)"c", .record_len = 1},
        {.kind = CACHE_OP_PUT, .record = rec, .record_len = rec_len, .now_ms = 2000},
        {.kind = CACHE_OP_TASK, .record = (const unsigned char *)"", .record_len = 0},
    };
    task_key(2, ops[0].key);
    task_key(2, ops[1].key);
    task_key(2, ops[2].key);
    make_key(2, ops[3].key);
    task_key(3, ops[4].key);
    assert_int_equal(cache_store_apply(s, ops, 5, &r), 0);
    assert_int_equal(r.applied, 5);
    free(rec);
    assert_task(s, 2, "c");
    assert_task(s, 3, "");
    assert_int_equal(get_n(s, 2, NULL), CACHE_GET_FOUND);
    st = stats_of(s);
    assert_int_equal(st.tasks, 2);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, before.bytes + COST(s, rec_len));
    cache_store_close(s);
}

static void test_task_open_index(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    assert_open_tasks(s, NULL, 0, 0);

    assert_int_equal(apply_task(s, 5, "{\"n\":5}", true).applied, 1);
    assert_int_equal(apply_task(s, 3, "{\"n\":3}", true).applied, 1);
    assert_int_equal(apply_task(s, 9, "{\"n\":9}", true).applied, 1);
    assert_int_equal(apply_task(s, 7, "{\"n\":7}", false).applied, 1); /* closed at once */
    put_n(s, 4, "chatgpt", 1000, 300);                                 /* answers do not show up */

    struct open_tally t = {0};
    assert_int_equal(cache_store_foreach_open_task(s, on_open_task, &t), 0);
    assert_int_equal(t.count, 3);
    assert_int_equal(t.ns[0], 3);
    assert_int_equal(t.ns[1], 5);
    assert_int_equal(t.ns[2], 9);
    assert_string_equal(t.texts[0], "{\"n\":3}");
    assert_string_equal(t.texts[1], "{\"n\":5}");
    assert_string_equal(t.texts[2], "{\"n\":9}");
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.tasks, 4);
    assert_int_equal(st.tasks_open, 3);

    /* Closed with its final record: no longer listed, the record stays. */
    assert_int_equal(apply_task(s, 5, "{\"n\":5,\"done\":true}", false).applied, 1);
    assert_open_tasks(s, (const unsigned[]){3, 9}, 2, 2);
    assert_task(s, 5, "{\"n\":5,\"done\":true}");
    /* Opened again (the same record), and the new record is what is listed. */
    assert_int_equal(apply_task(s, 7, "{\"n\":7,\"retry\":1}", true).applied, 1);
    t = (struct open_tally){0};
    assert_int_equal(cache_store_foreach_open_task(s, on_open_task, &t), 0);
    assert_int_equal(t.count, 3);
    assert_int_equal(t.ns[1], 7);
    assert_string_equal(t.texts[1], "{\"n\":7,\"retry\":1}");
    /* Closing what is not open is fine. */
    assert_int_equal(apply_task(s, 5, "{\"n\":5,\"done\":true}", false).applied, 1);
    assert_open_tasks(s, (const unsigned[]){3, 7, 9}, 3, 3);

    /* An open key without a record is counted but not listed. */
    assert_int_equal(apply_task(s, 11, NULL, true).applied, 1);
    assert_open_tasks(s, (const unsigned[]){3, 7, 9}, 3, 4);
    /* A deletion that closes: neither record nor mark left. */
    assert_int_equal(apply_task(s, 9, NULL, false).applied, 1);
    assert_open_tasks(s, (const unsigned[]){3, 7}, 2, 3);
    assert_task(s, 9, NULL);
    st = stats_of(s);
    assert_int_equal(st.tasks, 3); /* 3, 5, 7 */
    assert_int_equal(st.entries, 1);

    /* A visitor stops the walk. */
    t = (struct open_tally){.stop_after = 1};
    assert_int_equal(cache_store_foreach_open_task(s, on_open_task, &t), 0);
    assert_int_equal(t.count, 1);
    cache_store_close(s);
}

static void test_tasks_survive_reopen(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    apply_task(s, 1, "{\"open\":1}", true);
    apply_task(s, 2, "{\"closed\":2}", false);
    apply_task(s, 3, "{\"open\":3}", true);
    apply_task(s, 3, "{\"closed\":3}", false);
    cache_store_close(s);

    for (int cli = 0; cli < 2; cli++) {
        s = open_store(f->dir, cli ? 0 : 16 * MIB);
        assert_task(s, 1, "{\"open\":1}");
        assert_task(s, 2, "{\"closed\":2}");
        assert_task(s, 3, "{\"closed\":3}");
        struct open_tally t = {0};
        assert_int_equal(cache_store_foreach_open_task(s, on_open_task, &t), 0);
        assert_int_equal(t.count, 1);
        assert_int_equal(t.ns[0], 1);
        assert_string_equal(t.texts[0], "{\"open\":1}");
        struct cache_store_stats st = stats_of(s);
        assert_int_equal(st.tasks, 3);
        assert_int_equal(st.tasks_open, 1);
        assert_int_equal(st.entries, 0);
        cache_store_close(s);
    }
}

/* A text record of len bytes: '{', fill, '}'. New string. */
static char *big_text(size_t len, char fill)
{
    char *t = malloc(len + 1);
    assert_non_null(t);
    memset(t, fill, len);
    t[0] = '{';
    t[len - 1] = '}';
    t[len] = '\0';
    return t;
}

/* Writes n (three digits) over text[1..3], so records differ by task. */
static void stamp(char *text, unsigned n)
{
    char digits[4];
    snprintf(digits, sizeof digits, "%03u", n % 1000);
    memcpy(text + 1, digits, 3);
}

static void test_tasks_not_evicted(void **state)
{
    struct fixture *f = *state;
    /* The bound of test_eviction_lru_order: 4 KiB answers are
     * evicted down to 80% once above 90%. Tasks are not answers: an 8 KiB
     * open task and a closed one stay, and leave the answers the whole
     * bound. */
    struct cache_store *s = open_store(f->dir, 16 * COST4K(4 * KIB));
    char *t1 = big_text(8 * KIB, 'o');
    apply_task(s, 1, t1, true);
    apply_task(s, 2, "{\"closed\":2}", false);
    for (unsigned i = 0; i < 40; i++)
        put_n(s, i, "chatgpt", 1000 + i, 4 * KIB);
    struct cache_store_stats st = stats_of(s);
    assert_true(st.evictions > 0);
    assert_int_equal(st.bytes, st.entries * COST(s, 4 * KIB)); /* answers only */
    assert_true(st.bytes <= 16 * COST4K(4 * KIB) * 9 / 10);
    /* 40 puts end 13 answers in (15 -> 12, then 13, 14, 15 -> 12, ...);
     * counted in bytes, the task would have left 10. */
    assert_int_equal(st.entries, 13);
    assert_int_equal(st.tasks, 2);
    assert_int_equal(st.tasks_open, 1);
    assert_task(s, 1, t1);
    assert_task(s, 2, "{\"closed\":2}");
    assert_open_tasks(s, (const unsigned[]){1}, 1, 1);
    free(t1);
    cache_store_close(s);
}

static void test_task_map_full(void **state)
{
    struct fixture *f = *state;
    /* The CLI's 1 MiB map (see test_map_full): answers fill it again and
     * again; the task stored first is never among what MAP_FULL evicts. */
    struct cache_store *s = open_store(f->dir, 0);
    char *t1 = big_text(16 * KIB, 'k');
    assert_int_equal(apply_task(s, 1, t1, true).applied, 1);
    for (unsigned n = 0; n < 400; n++)
        put_n(s, n, "chatgpt", 1000 + n, 4 * KIB);
    struct cache_store_stats st = stats_of(s);
    assert_true(st.evictions > 0);
    assert_int_equal(st.dropped, 0);
    assert_task(s, 1, t1);

    /* 40 closed tasks of 6,000 bytes (two overflow pages each, like the
     * answers) into the full map: answers are evicted for them, none of the
     * tasks, and each is applied. (Records much smaller than a page can use
     * up the very last free page, after which not even an eviction commits:
     * then every op is dropped, tasks as puts or jobs, see store.c.) */
    uint64_t evicted = 0;
    char *small = big_text(6000, 's');
    for (unsigned n = 100; n < 140; n++) {
        stamp(small, n);
        struct cache_apply_result r = apply_task(s, n, small, false);
        assert_int_equal(r.applied, 1);
        assert_int_equal(r.dropped, 0);
        evicted += r.evicted;
    }
    assert_true(evicted > 0);
    for (unsigned n = 100; n < 140; n++) {
        stamp(small, n);
        assert_task(s, n, small);
    }
    free(small);
    assert_task(s, 1, t1);

    /* One larger than the map is dropped and counted, record and mark. */
    char *huge = big_text(2 * MIB, 'h');
    struct cache_apply_result r = apply_task(s, 3, huge, true);
    free(huge);
    assert_int_equal(r.applied, 0);
    assert_int_equal(r.dropped, 1);
    assert_task(s, 3, NULL);
    st = stats_of(s);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.tasks, 41);
    assert_int_equal(st.tasks_open, 1);
    assert_open_tasks(s, (const unsigned[]){1}, 1, 1);
    assert_task(s, 1, t1);

    /* And task ops and puts go on afterwards. */
    assert_int_equal(apply_task(s, 100, NULL, false).applied, 1);
    assert_task(s, 100, NULL);
    assert_int_equal(apply_task(s, 4, "{\"n\":4}", true).applied, 1);
    assert_open_tasks(s, (const unsigned[]){1, 4}, 2, 2);
    put_n(s, 9999, "chatgpt", 9999, 4 * KIB);
    assert_task(s, 1, t1);
    assert_int_equal(stats_of(s).tasks, 41);
    free(t1);
    cache_store_close(s);
}

/* A store made before tasks existed has neither "tasks" nor "task_open":
 * their names in the data file are renamed away (same length, same order,
 * as in test_store_without_job_databases); the store must open, keep its
 * answers, report no task, and take new ones. */
static void test_store_without_task_databases(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 1000, 500);
    apply_task(s, 1, "{\"old\":1}", true);
    cache_store_close(s);
    assert_true(patch_data_file(f->dir, "tasks", "taskz", 5) >= 1);
    assert_true(patch_data_file(f->dir, "task_open", "task_opez", 9) >= 1);

    s = open_store(f->dir, 16 * MIB);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    assert_task(s, 1, NULL); /* a new, empty "tasks" */
    assert_open_tasks(s, NULL, 0, 0);
    assert_int_equal(stats_of(s).tasks, 0);
    assert_int_equal(apply_task(s, 2, "{\"new\":2}", true).applied, 1);
    cache_store_close(s);

    s = open_store(f->dir, 0);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    assert_task(s, 2, "{\"new\":2}");
    assert_open_tasks(s, (const unsigned[]){2}, 1, 1);
    assert_int_equal(stats_of(s).tasks, 1);
    cache_store_close(s);
}

/* The CLI is another process: a forked child opens the same directory (the
 * parent keeps its store open), reads what the parent committed, and writes
 * one entry the parent then reads. */
static void test_second_process(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    for (unsigned i = 0; i < 10; i++)
        put_n(s, i, "chatgpt", 1000 + i, 500);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cache_store_options o = {.dir = f->dir, .max_bytes = 0};
        char err[512];
        struct cache_store *c = cache_store_open(&o, err, sizeof err);
        int code = 0;
        if (c == NULL)
            _exit(10);
        struct cache_store_stats st;
        if (cache_store_stats(c, &st) != 0 || st.entries != 10 || st.max_bytes != 16 * MIB)
            code = 11;
        for (unsigned i = 0; i < 10 && code == 0; i++) {
            unsigned char key[CACHE_KEY_BYTES];
            make_key(i, key);
            struct cache_entry e;
            if (cache_store_get(c, key, &e, NULL) != CACHE_GET_FOUND)
                code = 12;
            cache_entry_free(&e);
        }
        if (code == 0 && cache_store_purge(c, NULL, 1001) != 1)
            code = 13;
        cache_store_close(c);
        _exit(code);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The child's purge is visible here. */
    assert_int_equal(get_n(s, 0, NULL), CACHE_GET_ABSENT);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);
    assert_int_equal(stats_of(s).entries, 9);
    put_n(s, 100, "chatgpt", 2000, 500);
    assert_int_equal(stats_of(s).entries, 10);
    cache_store_close(s);
}

static int on_visit_die(const unsigned char *key, const struct cache_meta *meta, void *arg)
{
    (void)key;
    (void)meta;
    (void)arg;
    raise(SIGKILL); /* inside a read txn: its reader slot is left behind */
    return 1;
}

static void test_killed_reader_process(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 1000, 500);
    cache_store_close(s);
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct cache_store_options o = {.dir = f->dir, .max_bytes = 0};
            char err[512];
            struct cache_store *c = cache_store_open(&o, err, sizeof err);
            if (c != NULL)
                cache_store_foreach(c, on_visit_die, NULL);
            _exit(1);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    s = open_store(f->dir, 16 * MIB);
    for (unsigned i = 2; i < 50; i++)
        put_n(s, i, "chatgpt", 1000 + i, 500);
    assert_int_equal(stats_of(s).entries, 49);
    cache_store_close(s);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Not a check: how fast durable single-op txns and reads are here. */
static void test_timing(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    enum { N = 200 };
    double t0 = now_s();
    for (unsigned i = 0; i < N; i++)
        put_n(s, i, "chatgpt", 1000 + i, 2 * KIB);
    double t1 = now_s();
    for (unsigned round = 0; round < 10; round++)
        for (unsigned i = 0; i < N; i++)
            assert_int_equal(get_n(s, i, NULL), CACHE_GET_FOUND);
    double t2 = now_s();
    print_message("store: %.0f durable single-put txns/s, %.1f us per get (2 KiB records)\n",
                  N / (t1 - t0), (t2 - t1) * 1e6 / (10 * N));
    cache_store_close(s);
}

/* --- Usage rows -------------------------------------------------------------- */

static void apply_usage(struct cache_store *s, enum cache_op_kind kind, const char *name,
                        const char *value)
{
    struct cache_op op = {.kind = kind,
                          .name = (const unsigned char *)name,
                          .name_len = strlen(name),
                          .record = (const unsigned char *)value,
                          .record_len = value != NULL ? strlen(value) : 0};
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
    assert_int_equal(r.applied, 1);
}

struct usage_seen {
    char text[512]; /* "key=value;" for each row visited */
    unsigned count, stop_after;
};

static int on_usage(const unsigned char *key, size_t key_len, const unsigned char *data, size_t len,
                    void *arg)
{
    struct usage_seen *u = arg;
    size_t n = strlen(u->text);
    snprintf(u->text + n, sizeof u->text - n, "%.*s=%.*s;", (int)key_len, (const char *)key,
             (int)len, (const char *)data);
    u->count++;
    return u->stop_after > 0 && u->count == u->stop_after;
}

static const char *usage_rows(struct cache_store *s, const char *from, unsigned stop_after,
                              struct usage_seen *u)
{
    memset(u, 0, sizeof *u);
    u->stop_after = stop_after;
    assert_int_equal(
        cache_store_foreach_usage(s, from, from != NULL ? strlen(from) : 0, on_usage, u), 0);
    return u->text;
}

/* USAGE stores and replaces rows; foreach_usage walks them in key order from
 * a given key; USAGE_PRUNE removes those before its key; they survive
 * reopening and count in neither entries nor bytes. Invalid names are not
 * applied. */
static void test_usage_rows(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    struct usage_seen u;
    assert_string_equal(usage_rows(s, NULL, 0, &u), "");
    apply_usage(s, CACHE_OP_USAGE, "2026-01-02/b", "1");
    apply_usage(s, CACHE_OP_USAGE, "2026-01-01/a", "2");
    apply_usage(s, CACHE_OP_USAGE, "2026-01-03/a", "3");
    apply_usage(s, CACHE_OP_USAGE, "2026-01-02/b", "4"); /* replaces */
    assert_string_equal(usage_rows(s, NULL, 0, &u),
                        "2026-01-01/a=2;2026-01-02/b=4;2026-01-03/a=3;");
    assert_string_equal(usage_rows(s, "2026-01-02", 0, &u), "2026-01-02/b=4;2026-01-03/a=3;");
    assert_string_equal(usage_rows(s, "2026-01-01", 1, &u), "2026-01-01/a=2;");
    assert_string_equal(usage_rows(s, "2027", 0, &u), "");
    assert_int_equal(stats_of(s).entries, 0);
    assert_int_equal(stats_of(s).bytes, 0);

    struct cache_op bad = {.kind = CACHE_OP_USAGE,
                           .name = NULL,
                           .record = (const unsigned char *)"x",
                           .record_len = 1};
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &bad, 1, &r), 0);
    assert_int_equal(r.applied, 0);
    char long_name[CACHE_USAGE_KEY_MAX + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    bad.name = (const unsigned char *)long_name;
    bad.name_len = strlen(long_name);
    assert_int_equal(cache_store_apply(s, &bad, 1, &r), 0);
    assert_int_equal(r.applied, 0);

    apply_usage(s, CACHE_OP_USAGE_PRUNE, "2026-01-02", NULL);
    assert_string_equal(usage_rows(s, NULL, 0, &u), "2026-01-02/b=4;2026-01-03/a=3;");
    cache_store_close(s);

    s = open_store(f->dir, 16 * MIB);
    assert_string_equal(usage_rows(s, NULL, 0, &u), "2026-01-02/b=4;2026-01-03/a=3;");
    apply_usage(s, CACHE_OP_USAGE_PRUNE, "2099-01-01", NULL);
    assert_string_equal(usage_rows(s, NULL, 0, &u), "");
    cache_store_close(s);
}

/* ---- export and import ------------------------------------------------------- */

struct entry_tally {
    unsigned count;
    unsigned char last[CACHE_KEY_BYTES];
    char providers[8][CACHE_PROVIDER_MAX];
    size_t lens[8];
};

static int on_entry(const unsigned char *key, const struct cache_meta *m,
                    const unsigned char *record, size_t len, void *arg)
{
    struct entry_tally *t = arg;
    if (t->count > 0 && memcmp(t->last, key, CACHE_KEY_BYTES) >= 0)
        fail_msg("foreach_entry is not in key order");
    memcpy(t->last, key, CACHE_KEY_BYTES);
    struct cache_entry e;
    assert_int_equal(cache_entry_decode(record, len, &e), 0);
    assert_string_equal(e.provider, m->provider);
    assert_int_equal(m->size, len);
    cache_entry_free(&e);
    if (t->count < 8) {
        snprintf(t->providers[t->count], CACHE_PROVIDER_MAX, "%s", m->provider);
        t->lens[t->count] = len;
    }
    t->count++;
    return 0;
}

static int on_any_task(const unsigned char *key, const unsigned char *data, size_t len, void *arg)
{
    struct open_tally *t = arg;
    return on_open_task(key, data, len, t);
}

/* foreach_entry lends every entry's meta and record in key order;
 * foreach_task every task record, open or not. */
static void test_foreach_entry_and_task(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 3, "google", 1000, 700);
    put_n(s, 1, "chatgpt", 1000, 500);
    put_n(s, 2, "grok", 1000, 600);
    struct entry_tally t = {0};
    assert_int_equal(cache_store_foreach_entry(s, on_entry, &t), 0);
    assert_int_equal(t.count, 3);
    assert_string_equal(t.providers[0], "chatgpt");
    assert_string_equal(t.providers[2], "google");
    assert_int_equal(t.lens[1], 600);

    apply_task(s, 2, "{\"closed\":2}", false);
    apply_task(s, 1, "{\"open\":1}", true);
    struct open_tally all = {0};
    assert_int_equal(cache_store_foreach_task(s, on_any_task, &all), 0);
    assert_int_equal(all.count, 2);
    assert_int_equal(all.ns[0], 1);
    assert_string_equal(all.texts[1], "{\"closed\":2}");
    cache_store_close(s);
}

static struct cache_import_item import_entry(const unsigned char *key, const unsigned char *rec,
                                             size_t len, int64_t stored, const char *provider)
{
    return (struct cache_import_item){.kind = CACHE_IMPORT_ENTRY,
                                      .key = key,
                                      .data = rec,
                                      .len = len,
                                      .stored_at_ms = stored,
                                      .expires_at_ms = 0,
                                      .provider = provider};
}

/* Import adds what is absent, keeps or replaces what is there, never opens
 * a task, upgrades a job only to CAPTURED, stores a blob once, and keeps
 * bytes and the job counts right. */
static void test_import_adds_keeps_replaces(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 16 * MIB);
    put_n(s, 1, "chatgpt", 1000, 500);
    apply_task(s, 1, "{\"mine\":1}", false);
    struct cache_job pending = make_job("a/page-1", CACHE_JOB_PENDING);
    apply_job(s, CACHE_OP_NEW_JOB, &pending, NULL, 0);
    struct cache_job lost_here = make_job("c/page-1", CACHE_JOB_LOST);
    apply_job(s, CACHE_OP_NEW_JOB, &lost_here, NULL, 0);
    struct cache_store_stats before = stats_of(s);
    assert_int_equal(before.jobs_pending, 1);

    unsigned char k1[CACHE_KEY_BYTES], k2[CACHE_KEY_BYTES], t1[CACHE_KEY_BYTES],
        t2[CACHE_KEY_BYTES], hx[32], hy[32];
    make_key(1, k1);
    make_key(2, k2);
    task_key(1, t1);
    task_key(2, t2);
    memset(hx, 0x11, sizeof hx);
    memset(hy, 0x22, sizeof hy);
    size_t len1, len2;
    unsigned char *r1 = make_record("chatgpt", 5000, 900, 'x', &len1);
    unsigned char *r2 = make_record("google", 6000, 800, 'y', &len2);
    struct cache_job captured = make_job("a/page-1", CACHE_JOB_CAPTURED);
    memcpy(captured.blob, hy, 32);
    struct cache_job lost = make_job("b/page-1", CACHE_JOB_LOST);
    struct cache_job pending_c = make_job("c/page-1", CACHE_JOB_PENDING);
    const char *tt1 = "{\"theirs\":1}", *tt2 = "{\"theirs\":2}";
    struct cache_import_item items[] = {
        import_entry(k1, r1, len1, 5000, "chatgpt"),
        import_entry(k2, r2, len2, 6000, ""),
        {.kind = CACHE_IMPORT_TASK, .key = t1, .data = (const unsigned char *)tt1, .len = 12},
        {.kind = CACHE_IMPORT_TASK, .key = t2, .data = (const unsigned char *)tt2, .len = 12},
        {.kind = CACHE_IMPORT_BLOB, .key = hy, .data = (const unsigned char *)"gzY", .len = 3},
        {.kind = CACHE_IMPORT_BLOB, .key = hx, .data = (const unsigned char *)"gzX", .len = 3},
        {.kind = CACHE_IMPORT_JOB, .job = &captured},
        {.kind = CACHE_IMPORT_JOB, .job = &lost},
        {.kind = CACHE_IMPORT_JOB, .job = &pending_c},
    };
    size_t n = sizeof items / sizeof items[0];
    struct cache_import_result res;
    char err[256] = "";
    if (cache_store_import(s, items, n, CACHE_IMPORT_KEEP, 9000, &res, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(res.entries.added, 1);
    assert_int_equal(res.entries.kept, 1);
    assert_int_equal(res.entries.replaced, 0);
    assert_int_equal(res.tasks.added, 1);
    assert_int_equal(res.tasks.kept, 1);
    assert_int_equal(res.blobs.added, 2);
    assert_int_equal(res.jobs.added, 1);    /* b */
    assert_int_equal(res.jobs.replaced, 1); /* a: pending -> captured */
    assert_int_equal(res.jobs.kept, 1);     /* c: lost stays lost */

    struct cache_meta m;
    assert_int_equal(get_n(s, 1, &m), CACHE_GET_FOUND);
    assert_true(m.stored_at_ms == 1000); /* kept */
    assert_int_equal(get_n(s, 2, &m), CACHE_GET_FOUND);
    assert_true(m.stored_at_ms == 6000);
    assert_true(m.expires_at_ms == 0);
    assert_string_equal(m.provider, "google"); /* the record's, the item had none */
    assert_int_equal(m.hits, 0);
    assert_task(s, 1, "{\"mine\":1}");
    assert_task(s, 2, tt2);
    assert_open_tasks(s, NULL, 0, 0);
    struct cache_job got;
    assert_int_equal(cache_store_get_job(s, "a/page-1", &got), CACHE_GET_FOUND);
    assert_int_equal(got.state, CACHE_JOB_CAPTURED);
    assert_int_equal(cache_store_get_job(s, "c/page-1", &got), CACHE_GET_FOUND);
    assert_int_equal(got.state, CACHE_JOB_LOST);
    unsigned char *blob;
    size_t blob_len;
    assert_int_equal(cache_store_get_blob(s, hy, &blob, &blob_len), CACHE_GET_FOUND);
    assert_int_equal(blob_len, 3);
    free(blob);
    struct cache_store_stats after = stats_of(s);
    assert_int_equal(after.entries, 2);
    assert_int_equal(after.bytes, before.bytes + COST(s, len2));
    assert_int_equal(after.jobs_pending, 0);
    assert_int_equal(after.jobs_captured, 1);
    assert_int_equal(after.jobs_lost, 2);
    assert_int_equal(after.blob_bytes, before.blob_bytes + 6);

    /* Again with overwrite: entry 1 and task 1 are the bundle's; the rest is there. */
    if (cache_store_import(s, items, n, CACHE_IMPORT_OVERWRITE, 9500, &res, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(res.entries.replaced, 2);
    assert_int_equal(res.entries.added, 0);
    assert_int_equal(res.tasks.replaced, 2);
    assert_int_equal(res.blobs.kept, 2);
    assert_int_equal(res.jobs.kept, 3);
    assert_int_equal(get_n(s, 1, &m), CACHE_GET_FOUND);
    assert_true(m.stored_at_ms == 5000);
    assert_task(s, 1, tt1);
    after = stats_of(s);
    assert_int_equal(after.entries, 2);
    assert_int_equal(after.bytes, before.bytes - COST(s, 500) + COST(s, len1) + COST(s, len2));
    free(r1);
    free(r2);
    cache_store_close(s);
}

/* All or nothing: an item that is not valid, or a bundle larger than the
 * map, changes nothing; the store's entries stay readable. */
static void test_import_is_one_txn(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 0); /* the CLI's 1 MiB map */
    put_n(s, 1, "chatgpt", 1000, 500);
    struct cache_store_stats before = stats_of(s);

    enum { N = 300 };
    static unsigned char keys[N][CACHE_KEY_BYTES];
    static unsigned char *recs[N];
    static size_t lens[N];
    static struct cache_import_item items[N];
    for (unsigned i = 0; i < N; i++) {
        make_key(100 + i, keys[i]);
        recs[i] = make_record("grok", 2000, 8 * KIB, (unsigned char)i, &lens[i]);
        items[i] = import_entry(keys[i], recs[i], lens[i], 2000, "grok");
    }
    struct cache_import_result res;
    char err[256] = "";
    assert_int_equal(cache_store_import(s, items, N, CACHE_IMPORT_KEEP, 3000, &res, err, 256), -1);
    assert_non_null(strstr(err, "does not fit"));
    assert_non_null(strstr(err, "nothing was imported"));
    struct cache_store_stats after = stats_of(s);
    assert_int_equal(after.entries, before.entries);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(get_n(s, 100, NULL), CACHE_GET_ABSENT);
    assert_int_equal(get_n(s, 1, NULL), CACHE_GET_FOUND);

    /* A few fit; one bad record among them stops all. */
    recs[5][lens[5] - 1] ^= 1;
    err[0] = '\0';
    assert_int_equal(cache_store_import(s, items, 10, CACHE_IMPORT_KEEP, 3000, &res, err, 256), -1);
    assert_non_null(strstr(err, "item 5"));
    assert_int_equal(stats_of(s).entries, before.entries);
    recs[5][lens[5] - 1] ^= 1;
    if (cache_store_import(s, items, 10, CACHE_IMPORT_KEEP, 3000, &res, err, 256) != 0)
        fail_msg("%s", err);
    assert_int_equal(res.entries.added, 10);
    assert_int_equal(stats_of(s).entries, before.entries + 10);
    for (unsigned i = 0; i < N; i++)
        free(recs[i]);
    cache_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_round_trip, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_entries, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_map_size, store_fixture_setup, store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_format_mismatch_refused, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_replace_adjusts_bytes, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_touch, store_fixture_setup, store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_delete, store_fixture_setup, store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_put_refused, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record_detected_and_removed,
                                        store_fixture_setup, store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_purge, store_fixture_setup, store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_foreach_and_stats, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_eviction_lru_order, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_map_full, store_fixture_setup, store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_second_process, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_killed_reader_process, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_timing, store_fixture_setup, store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_put_creates_jobs_once, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_job_replace_moves_counts, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_capture_stores_blob_once, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_job_round_trip, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_foreach_job, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_jobs_and_blobs, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_store_without_job_databases, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_capture_too_big_dropped, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_task_put_get_replace_delete, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_task_open_index, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_survive_reopen, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_file_within_bound, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tasks_not_evicted, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_task_map_full, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_store_without_task_databases, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_foreach_entry_and_task, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_import_adds_keeps_replaces, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_import_is_one_txn, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_usage_rows, store_fixture_setup,
                                        store_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
