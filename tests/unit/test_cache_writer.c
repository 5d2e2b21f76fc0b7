/* test_cache_writer.c: the writer thread (writer.h). A put is found in the
 * pending map until its txn commits and in the store after (never in
 * neither: nobody pays twice); the latest put of a key is the one found; a
 * delete removes the pending put; a full queue drops and counts; stop drains
 * everything; readers on another thread race the writer cleanly (ASan, TSan);
 * and a writer process killed with SIGKILL at a random moment leaves a store
 * whose every entry verifies and holds at least what it reported committed.
 * Artifact jobs go through the queue too: a put's jobs are committed with
 * it, a job update and a capture (with its blob) reach the store, and ops
 * refused by a full queue free what they carried (ASan). Async task records
 * too: a task op is found in the pending map until committed and in the
 * store after, a task op without a record takes the key out of the pending
 * map at once, the latest record of a key is the one found, the open marks
 * reach the store, and a refused task op frees its record. Usage rows and
 * prunes reach the store in order, copied. Each test works
 * in a fresh directory under /tmp, removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "entry.h"
#include "key.h"
#include "store.h"
#include "store_fixture.h"
#include "writer.h"

#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

static struct cache_store *open_store(const char *dir, size_t max_bytes)
{
    return store_fixture_open(dir, max_bytes);
}

static void make_key(unsigned n, unsigned char *key)
{
    store_fixture_key(n, 0x5A, key);
}

/* A record whose body is "v<version>" repeated up to body_len bytes. */
static unsigned char *make_record(unsigned version, size_t body_len, size_t *len)
{
    char body[64 * 1024];
    if (body_len > sizeof body)
        body_len = sizeof body;
    char tag[24];
    int n = snprintf(tag, sizeof tag, "v%u;", version);
    for (size_t i = 0; i < body_len; i++)
        body[i] = tag[i % (size_t)n];
    struct cache_entry e = {.status = 200,
                            .stored_at_ms = 1000 + version,
                            .provider = "chatgpt",
                            .request_id = "req",
                            .body = (unsigned char *)body,
                            .body_len = body_len};
    unsigned char *rec = NULL;
    if (cache_entry_encode(&e, &rec, len) != 0)
        return NULL;
    return rec;
}

/* The version a record was made with, or -1 when it does not decode. */
static long record_version(const unsigned char *rec, size_t len)
{
    struct cache_entry e;
    if (cache_entry_decode(rec, len, &e) != 0)
        return -1;
    long v = e.stored_at_ms - 1000;
    cache_entry_free(&e);
    return v;
}

static void put_version(struct cache_writer *w, unsigned n, unsigned version, size_t body_len)
{
    unsigned char key[CACHE_KEY_BYTES];
    make_key(n, key);
    size_t len;
    unsigned char *rec = make_record(version, body_len, &len);
    assert_non_null(rec);
    cache_writer_put(w, key, rec, len, 1000 + version, NULL, 0);
}

/* Where key n can be found: the pending map first, then the store (that
 * order: a pending record leaves the map only after its commit). Returns
 * the version found, or -1. */
static long lookup(struct cache_writer *w, struct cache_store *s, unsigned n)
{
    unsigned char key[CACHE_KEY_BYTES];
    make_key(n, key);
    unsigned char *rec;
    size_t len;
    if (w != NULL && cache_writer_pending(w, key, &rec, &len)) {
        long v = record_version(rec, len);
        free(rec);
        return v;
    }
    struct cache_entry e;
    enum cache_get_result r = cache_store_get(s, key, &e, NULL);
    long v = r == CACHE_GET_FOUND ? e.stored_at_ms - 1000 : -1;
    cache_entry_free(&e);
    return v;
}

static bool is_pending(struct cache_writer *w, unsigned n)
{
    unsigned char key[CACHE_KEY_BYTES];
    make_key(n, key);
    unsigned char *rec;
    size_t len;
    if (!cache_writer_pending(w, key, &rec, &len))
        return false;
    free(rec);
    return true;
}

static void test_put_pending_then_stored(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 10000);
    assert_non_null(w);
    unsigned seen_pending = 0;
    for (unsigned i = 0; i < 200; i++) {
        put_version(w, i, 7, 4096);
        /* Right after the put: pending, or already committed; never lost. */
        if (is_pending(w, i))
            seen_pending++;
        assert_int_equal(lookup(w, s, i), 7);
    }
    /* The writer fsyncs per batch, while puts take microseconds: most of
     * them were seen pending. */
    assert_true(seen_pending > 0);
    cache_writer_stop(w);
    for (unsigned i = 0; i < 200; i++)
        assert_int_equal(lookup(NULL, s, i), 7);
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.entries, 200);
    cache_store_close(s);
}

static void test_latest_put_wins(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 10000);
    assert_non_null(w);
    /* A put committed in one batch must not take a later, still queued put
     * of the same key out of the pending map. */
    for (unsigned v = 1; v <= 300; v++) {
        put_version(w, 1, v, 2048);
        put_version(w, 100 + v % 5, v, 2048); /* some other traffic */
        assert_int_equal(lookup(w, s, 1), v);
    }
    cache_writer_stop(w);
    assert_int_equal(lookup(NULL, s, 1), 300);
    cache_store_close(s);
}

/* has_room: the first half of the queue, for callers that must not lose
 * what they queue. */
static void test_has_room(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 100);
    assert_non_null(w);
    assert_true(cache_writer_has_room(w, 0));
    assert_true(cache_writer_has_room(w, 50));
    assert_false(cache_writer_has_room(w, 51));
    assert_false(cache_writer_has_room(w, 100));
    cache_writer_stop(w);
    cache_store_close(s);
}

static void test_delete_removes_pending(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 10000);
    assert_non_null(w);
    unsigned char key[CACHE_KEY_BYTES];
    for (unsigned i = 0; i < 50; i++) {
        put_version(w, i, 1, 1000);
        make_key(i, key);
        if (i % 2 == 0) {
            cache_writer_delete(w, key);
            assert_false(is_pending(w, i)); /* at once, whatever the thread does */
        }
    }
    /* Put, delete, put again: the second put is pending or stored. */
    put_version(w, 1000, 1, 1000);
    make_key(1000, key);
    cache_writer_delete(w, key);
    put_version(w, 1000, 2, 1000);
    assert_int_equal(lookup(w, s, 1000), 2);
    cache_writer_touch(w, key, 5000, 1);

    struct cache_writer_stats ws;
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.queued, 50 + 25 + 4);
    cache_writer_stop(w);
    for (unsigned i = 0; i < 50; i++)
        assert_int_equal(lookup(NULL, s, i), i % 2 == 0 ? -1 : 1);
    struct cache_meta m;
    struct cache_entry e;
    assert_int_equal(cache_store_get(s, key, &e, &m), CACHE_GET_FOUND);
    cache_entry_free(&e);
    assert_int_equal(m.hits, 1);
    assert_true(m.last_hit_ms == 5000);
    cache_store_close(s);
}

static void test_queue_overflow_dropped(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);

    /* A zero bound refuses everything, and frees the records (ASan). */
    struct cache_writer *w = cache_writer_start(s, 0);
    assert_non_null(w);
    for (unsigned i = 0; i < 10; i++)
        put_version(w, i, 1, 100);
    unsigned char key[CACHE_KEY_BYTES];
    make_key(0, key);
    cache_writer_touch(w, key, 1, 1);
    cache_writer_delete(w, key);
    assert_false(is_pending(w, 0));
    struct cache_writer_stats ws;
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.queued, 0);
    assert_int_equal(ws.dropped, 12);
    cache_writer_stop(w);

    /* A small bound overflows under a burst. */
    w = cache_writer_start(s, 8);
    assert_non_null(w);
    enum { N = 2000 };
    for (unsigned i = 0; i < N; i++)
        put_version(w, 100 + i, 1, 500);
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.queued + ws.dropped, N);
    assert_true(ws.dropped > 0);
    uint64_t queued = ws.queued;
    cache_writer_stop(w);
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.entries, queued);
    cache_store_close(s);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_stop_drains_everything(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 256 * MIB);
    struct cache_writer *w = cache_writer_start(s, 100000);
    assert_non_null(w);
    enum { N = 5000 }; /* several batches of at most 1024 */
    double t0 = now_s();
    for (unsigned i = 0; i < N; i++)
        put_version(w, i, 3, 1024);
    double t1 = now_s();
    struct cache_writer_stats ws;
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.queued, N);
    cache_writer_stop(w); /* at once: the thread still has most of the work */
    double t2 = now_s();
    print_message("writer: %u puts of 1 KiB queued in %.1f ms, all durable %.1f ms later "
                  "(%.0f puts/s)\n",
                  N, (t1 - t0) * 1e3, (t2 - t1) * 1e3, N / (t2 - t0));
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.entries, N);
    for (unsigned i = 0; i < N; i += 97)
        assert_int_equal(lookup(NULL, s, i), 3);
    cache_store_close(s);
}

static void test_stats_counters(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 1000);
    assert_non_null(w);
    put_version(w, 1, 1, 100);
    unsigned char key[CACHE_KEY_BYTES];
    make_key(2, key);
    unsigned char *junk = malloc(50);
    assert_non_null(junk);
    memset(junk, 'J', 50);
    cache_writer_put(w, key, junk, 50, 1, NULL, 0); /* does not decode: failed */
    make_key(1, key);
    cache_writer_touch(w, key, 10, 1);
    /* Wait (bounded) until all three are settled. */
    struct cache_writer_stats ws;
    for (int i = 0; i < 5000; i++) {
        cache_writer_stats(w, &ws);
        if (ws.committed + ws.failed == 3)
            break;
        usleep(1000);
    }
    assert_int_equal(ws.queued, 3);
    assert_int_equal(ws.committed, 2);
    assert_int_equal(ws.failed, 1);
    assert_int_equal(ws.dropped, 0);
    assert_true(ws.batches >= 1 && ws.batches <= 3);
    assert_false(is_pending(w, 2)); /* a failed put leaves the pending map */
    assert_false(is_pending(w, 1));
    cache_writer_stop(w);
    assert_int_equal(lookup(NULL, s, 2), -1);
    cache_store_close(s);
}

/* Readers on another thread while the main thread writes. */
struct race {
    struct cache_writer *w;
    struct cache_store *s;
    atomic_uint published; /* keys 0 .. published-1 have been put */
    atomic_bool done;
    atomic_uint misses;
    atomic_uint lookups;
};

static void *race_reader(void *arg)
{
    struct race *r = arg;
    uint64_t rnd = 88172645463325252ULL;
    while (!atomic_load(&r->done)) {
        unsigned p = atomic_load(&r->published);
        if (p == 0)
            continue;
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        unsigned n = (unsigned)(rnd % p);
        if (lookup(r->w, r->s, n) != 5)
            atomic_fetch_add(&r->misses, 1);
        unsigned lookups = atomic_fetch_add(&r->lookups, 1) + 1;
        struct cache_writer_stats ws;
        cache_writer_stats(r->w, &ws);
        if (lookups % 64 == 0) {
            struct cache_store_stats st;
            cache_store_stats(r->s, &st);
        }
    }
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct race r = {.s = s};
    r.w = cache_writer_start(s, 100000);
    assert_non_null(r.w);
    atomic_init(&r.published, 0);
    atomic_init(&r.done, false);
    atomic_init(&r.misses, 0);
    atomic_init(&r.lookups, 0);
    pthread_t readers[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&readers[i], NULL, race_reader, &r), 0);
    enum { N = 3000 };
    for (unsigned i = 0; i < N; i++) {
        put_version(r.w, i, 5, 512);
        if (i % 3 == 0) {
            unsigned char key[CACHE_KEY_BYTES];
            make_key(i / 2, key);
            cache_writer_touch(r.w, key, 2000 + i, 1);
        }
        atomic_store(&r.published, i + 1);
    }
    /* Let the readers run against the draining writer a little. */
    usleep(50 * 1000);
    atomic_store(&r.done, true);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(readers[i], NULL), 0);
    cache_writer_stop(r.w);
    unsigned misses = atomic_load(&r.misses), lookups = atomic_load(&r.lookups);
    assert_true(lookups > 0);
    if (misses != 0)
        fail_msg("%u of %u lookups found a put key neither pending nor stored", misses, lookups);
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.entries, N);
    cache_store_close(s);
}

/* The child: a writer putting distinct keys in a loop, reporting on the
 * pipe how many puts it knows committed. Never returns (killed). */
static void crash_child(const char *dir, unsigned first, int fd)
{
    struct cache_store_options o = {.dir = dir, .max_bytes = 256 * MIB};
    char err[512];
    struct cache_store *s = cache_store_open(&o, err, sizeof err);
    if (s == NULL)
        _exit(20);
    struct cache_writer *w = cache_writer_start(s, 100000);
    if (w == NULL)
        _exit(21);
    uint64_t reported = 0;
    double deadline = now_s() + 30;
    for (unsigned i = first; now_s() < deadline; i++) {
        unsigned char key[CACHE_KEY_BYTES];
        make_key(i, key);
        size_t len;
        unsigned char *rec = make_record(i, 256 + i % 3000, &len);
        if (rec == NULL)
            _exit(22);
        cache_writer_put(w, key, rec, len, 1000 + i, NULL, 0);
        struct cache_writer_stats ws;
        cache_writer_stats(w, &ws);
        if (ws.dropped != 0 || ws.failed != 0)
            _exit(23);
        if (ws.committed != reported) {
            reported = ws.committed;
            if (write(fd, &reported, sizeof reported) != (ssize_t)sizeof reported)
                _exit(24);
        }
        if (ws.queued - ws.committed > 2000)
            usleep(1000); /* stay well inside the queue bound */
    }
    _exit(25);
}

struct verify {
    struct cache_store *s;
    uint64_t count;
    uint64_t bytes;
    unsigned bad;
};

static int on_verify(const unsigned char *key, const struct cache_meta *meta, void *arg)
{
    struct verify *v = arg;
    struct cache_entry e;
    if (cache_store_get(v->s, key, &e, NULL) != CACHE_GET_FOUND)
        v->bad++;
    cache_entry_free(&e);
    v->count++;
    v->bytes += cache_store_entry_bytes(v->s, meta->size); /* as the store counts it */
    return 0;
}

static void test_kill9_keeps_committed(void **state)
{
    struct fixture *f = *state;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    uint64_t total = 0;
    for (unsigned round = 0; round < 3; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(f->dir, round * 1000000, fds[1]);
        }
        close(fds[1]);
        /* Wait for some commits, then a random moment more. */
        uint64_t last = 0, value;
        uint64_t wanted = 200 + (uint64_t)(rand() % 800);
        while (last < wanted && read(fds[0], &value, sizeof value) == (ssize_t)sizeof value)
            last = value;
        usleep((useconds_t)(rand() % 20000));
        assert_int_equal(kill(pid, SIGKILL), 0);
        while (read(fds[0], &value, sizeof value) == (ssize_t)sizeof value)
            last = value;
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("the writer child exited by itself (status %d)", WEXITSTATUS(status));
        total += last;

        struct cache_store *s = open_store(f->dir, 256 * MIB);
        struct verify v = {.s = s};
        assert_int_equal(cache_store_foreach(s, on_verify, &v), 0);
        struct cache_store_stats st;
        assert_int_equal(cache_store_stats(s, &st), 0);
        print_message("kill -9 round %u: %llu reported committed in total, %llu present\n", round,
                      (unsigned long long)total, (unsigned long long)v.count);
        assert_int_equal(v.bad, 0);
        assert_true(v.count >= total);
        assert_int_equal(st.entries, v.count);
        assert_int_equal(st.bytes, v.bytes); /* the counter commits with the entries */
        total = v.count;
        cache_store_close(s);
    }
}

/* A malloc'd array of count pending jobs "<prefix>/page-<i>". */
static struct cache_job *make_jobs(const char *prefix, size_t count)
{
    struct cache_job *jobs = calloc(count, sizeof *jobs);
    assert_non_null(jobs);
    for (size_t i = 0; i < count; i++) {
        snprintf(jobs[i].id, sizeof jobs[i].id, "%s/page-%zu", prefix, i + 1);
        snprintf(jobs[i].url, sizeof jobs[i].url, "https://storage.cloro.dev/%s/%zu.html", prefix,
                 i + 1);
        jobs[i].state = CACHE_JOB_PENDING;
        jobs[i].created_ms = 1000;
        jobs[i].expires_ms = 1000 + 86400000;
    }
    return jobs;
}

static enum cache_job_state job_state(struct cache_store *s, const char *id)
{
    struct cache_job j;
    assert_int_equal(cache_store_get_job(s, id, &j), CACHE_GET_FOUND);
    return j.state;
}

static void test_put_with_jobs(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 10000);
    assert_non_null(w);
    for (unsigned i = 0; i < 20; i++) {
        unsigned char key[CACHE_KEY_BYTES];
        make_key(i, key);
        size_t len;
        unsigned char *rec = make_record(1, 500, &len);
        assert_non_null(rec);
        char prefix[16];
        snprintf(prefix, sizeof prefix, "k%02u", i);
        cache_writer_put(w, key, rec, len, 1000, make_jobs(prefix, 1 + i % 3), 1 + i % 3);
    }
    cache_writer_stop(w);
    for (unsigned i = 0; i < 20; i++) {
        assert_int_equal(lookup(NULL, s, i), 1);
        for (unsigned p = 1; p <= 1 + i % 3; p++) {
            char id[32];
            snprintf(id, sizeof id, "k%02u/page-%u", i, p);
            assert_int_equal(job_state(s, id), CACHE_JOB_PENDING);
        }
        char id[32];
        snprintf(id, sizeof id, "k%02u/page-%u", i, 2 + i % 3);
        struct cache_job j;
        assert_int_equal(cache_store_get_job(s, id, &j), CACHE_GET_ABSENT);
    }
    cache_store_close(s);
}

static void test_job_and_capture(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 10000);
    assert_non_null(w);
    unsigned char key[CACHE_KEY_BYTES];
    make_key(1, key);
    size_t len;
    unsigned char *rec = make_record(1, 500, &len);
    assert_non_null(rec);
    struct cache_job *jobs = make_jobs("cap", 3);
    struct cache_job captured = jobs[0], lost = jobs[1];
    cache_writer_put(w, key, rec, len, 1000, jobs, 3);

    /* Queued after the put: applied after it, whatever the batching. */
    captured.state = CACHE_JOB_CAPTURED;
    memset(captured.blob, 0xAB, sizeof captured.blob);
    captured.size = 12345;
    snprintf(captured.content_type, sizeof captured.content_type, "text/html");
    unsigned char *gzip = malloc(4096);
    assert_non_null(gzip);
    memset(gzip, 0xAB, 4096);
    cache_writer_capture(w, &captured, gzip, 4096);
    lost.state = CACHE_JOB_LOST;
    snprintf(lost.note, sizeof lost.note, "HTTP 404");
    cache_writer_job(w, &lost);
    /* The pending map holds puts only. */
    assert_int_equal(lookup(w, s, 1), 1);
    cache_writer_stop(w);

    assert_int_equal(job_state(s, "cap/page-1"), CACHE_JOB_CAPTURED);
    assert_int_equal(job_state(s, "cap/page-2"), CACHE_JOB_LOST);
    assert_int_equal(job_state(s, "cap/page-3"), CACHE_JOB_PENDING);
    struct cache_job j;
    assert_int_equal(cache_store_get_job(s, "cap/page-2", &j), CACHE_GET_FOUND);
    assert_string_equal(j.note, "HTTP 404");
    unsigned char *data;
    size_t data_len;
    assert_int_equal(cache_store_get_blob(s, captured.blob, &data, &data_len), CACHE_GET_FOUND);
    assert_int_equal(data_len, 4096);
    assert_int_equal(data[0], 0xAB);
    assert_int_equal(data[4095], 0xAB);
    free(data);

    /* A full queue refuses jobs and captures too, freeing what they carry. */
    w = cache_writer_start(s, 0);
    assert_non_null(w);
    rec = make_record(2, 500, &len);
    assert_non_null(rec);
    cache_writer_put(w, key, rec, len, 2000, make_jobs("drop", 2), 2);
    lost.state = CACHE_JOB_PENDING;
    cache_writer_job(w, &lost);
    gzip = malloc(100);
    assert_non_null(gzip);
    memset(gzip, 1, 100);
    cache_writer_capture(w, &captured, gzip, 100);
    struct cache_writer_stats ws;
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.queued, 0);
    assert_int_equal(ws.dropped, 3);
    cache_writer_stop(w);
    assert_int_equal(cache_store_get_job(s, "drop/page-1", &j), CACHE_GET_ABSENT);
    assert_int_equal(job_state(s, "cap/page-2"), CACHE_JOB_LOST);
    assert_int_equal(lookup(NULL, s, 1), 1);
    cache_store_close(s);
}

/* --- Async task records ----------------------------------------------------- */

static void task_key(unsigned n, unsigned char *key)
{
    store_fixture_key(n, 0x7E, key);
}

/* A malloc'd record {"task":n,"v":version}. */
static unsigned char *task_record(unsigned n, unsigned version, size_t *len)
{
    char text[64];
    int k = snprintf(text, sizeof text, "{\"task\":%u,\"v\":%u}", n, version);
    assert_true(k > 0 && (size_t)k < sizeof text);
    unsigned char *rec = malloc((size_t)k);
    assert_non_null(rec);
    memcpy(rec, text, (size_t)k);
    *len = (size_t)k;
    return rec;
}

static void put_task(struct cache_writer *w, unsigned n, unsigned version, bool open)
{
    unsigned char key[CACHE_KEY_BYTES];
    task_key(n, key);
    size_t len;
    unsigned char *rec = task_record(n, version, &len);
    cache_writer_task(w, key, rec, len, open);
}

static void delete_task(struct cache_writer *w, unsigned n)
{
    unsigned char key[CACHE_KEY_BYTES];
    task_key(n, key);
    cache_writer_task(w, key, NULL, 0, false);
}

/* The version in a record of task n, or -1 (frees rec). */
static long task_version(unsigned n, unsigned char *rec, size_t len)
{
    char text[64];
    unsigned task = 0;
    long v = -1;
    if (len < sizeof text) {
        memcpy(text, rec, len);
        text[len] = '\0';
        if (sscanf(text, "{\"task\":%u,\"v\":%ld}", &task, &v) != 2 || task != n)
            v = -1;
    }
    free(rec);
    return v;
}

/* Task n's version: the pending map first, then the store; -1 if neither. */
static long task_lookup(struct cache_writer *w, struct cache_store *s, unsigned n)
{
    unsigned char key[CACHE_KEY_BYTES];
    task_key(n, key);
    unsigned char *rec;
    size_t len;
    if (w != NULL && cache_writer_pending(w, key, &rec, &len))
        return task_version(n, rec, len);
    if (cache_store_get_task(s, key, &rec, &len) == CACHE_GET_FOUND)
        return task_version(n, rec, len);
    return -1;
}

static bool task_pending(struct cache_writer *w, unsigned n)
{
    unsigned char key[CACHE_KEY_BYTES];
    task_key(n, key);
    unsigned char *rec;
    size_t len;
    if (!cache_writer_pending(w, key, &rec, &len))
        return false;
    free(rec);
    return true;
}

/* Waits (bounded) until every op queued is settled. */
static void wait_settled(struct cache_writer *w)
{
    struct cache_writer_stats ws;
    for (int i = 0; i < 10000; i++) {
        cache_writer_stats(w, &ws);
        if (ws.committed + ws.failed + ws.dropped == ws.queued)
            return;
        usleep(1000);
    }
    fail_msg("the writer did not settle in 10 s");
}

struct open_list {
    unsigned count;
    unsigned ns[256];
};

static int on_open_task(const unsigned char *key, const unsigned char *data, size_t len, void *arg)
{
    struct open_list *l = arg;
    unsigned n = (unsigned)key[0] << 24 | (unsigned)key[1] << 16 | (unsigned)key[2] << 8 | key[3];
    unsigned char *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, data, len);
    assert_int_equal(task_version(n, copy, len), 1);
    if (l->count < 256)
        l->ns[l->count] = n;
    l->count++;
    return 0;
}

static void test_task_pending_then_stored(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 100000);
    assert_non_null(w);
    /* A backlog of answers, so the task ops below mostly wait their turn. */
    for (unsigned i = 0; i < 2000; i++)
        put_version(w, i, 1, 1024);
    unsigned seen_pending = 0, deleted_pending = 0;
    for (unsigned n = 0; n < 200; n++) {
        put_task(w, n, 1, n % 2 == 0);
        /* Right after the op: pending, or already committed; never lost. */
        if (task_pending(w, n))
            seen_pending++;
        assert_int_equal(task_lookup(w, s, n), 1);
        if (n % 4 == 0) {
            bool was_pending = task_pending(w, n);
            delete_task(w, n);
            /* Not pending at once, whatever the thread does. */
            assert_false(task_pending(w, n));
            deleted_pending += was_pending;
        }
    }
    /* The writer fsyncs per batch, while task ops take microseconds: most
     * were seen pending, and deleted while still pending. */
    assert_true(seen_pending > 0);
    assert_true(deleted_pending > 0);
    cache_writer_stop(w);

    for (unsigned n = 0; n < 200; n++)
        assert_int_equal(task_lookup(NULL, s, n), n % 4 == 0 ? -1 : 1);
    /* Open: the even ones, less those deleted (which also closed them). */
    struct open_list l = {0};
    assert_int_equal(cache_store_foreach_open_task(s, on_open_task, &l), 0);
    assert_int_equal(l.count, 50);
    for (unsigned i = 0; i < 50; i++)
        assert_int_equal(l.ns[i], 4 * i + 2);
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.tasks, 150);
    assert_int_equal(st.tasks_open, 50);
    assert_int_equal(st.entries, 2000);
    cache_store_close(s);
}

static void test_task_latest_wins(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 10000);
    assert_non_null(w);
    /* A task op committed in one batch must not take a later, still queued
     * record of the same key out of the pending map. */
    for (unsigned v = 1; v <= 300; v++) {
        put_task(w, 1, v, v < 300);
        put_version(w, 100 + v % 5, v, 1024); /* some other traffic */
        assert_int_equal(task_lookup(w, s, 1), v);
    }
    /* Once committed, a record leaves the pending map. */
    wait_settled(w);
    assert_false(task_pending(w, 1));
    assert_int_equal(task_lookup(w, s, 1), 300);
    /* Deleted, then stored again: the new record is found. */
    delete_task(w, 1);
    put_task(w, 1, 301, true);
    assert_int_equal(task_lookup(w, s, 1), 301);
    struct cache_writer_stats ws;
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.dropped, 0);
    cache_writer_stop(w);
    assert_int_equal(task_lookup(NULL, s, 1), 301);
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.tasks, 1);
    assert_int_equal(st.tasks_open, 1);
    cache_store_close(s);
}

static void test_task_queue_full(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    /* A zero bound refuses task ops, freeing their records (ASan). */
    struct cache_writer *w = cache_writer_start(s, 0);
    assert_non_null(w);
    put_task(w, 1, 1, true);
    assert_false(task_pending(w, 1));
    delete_task(w, 1);
    struct cache_writer_stats ws;
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.queued, 0);
    assert_int_equal(ws.dropped, 2);
    cache_writer_stop(w);
    assert_int_equal(task_lookup(NULL, s, 1), -1);
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.tasks, 0);
    assert_int_equal(st.tasks_open, 0);
    cache_store_close(s);
}

/* Once settled reaches a last_queued read, the record queued before it is
 * committed: a reader outside the writer finds it. Refused ops never hold
 * anyone waiting: last_queued names only what was queued. */
static void test_settled_means_committed(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 100000);
    assert_non_null(w);
    assert_int_equal(cache_writer_last_queued(w), 0);
    for (unsigned i = 0; i < 500; i++)
        put_version(w, i, 1, 1024);
    for (unsigned n = 0; n < 20; n++) {
        put_task(w, n, 1, true);
        uint64_t seq = cache_writer_last_queued(w);
        assert_true(seq > 0);
        int waited = 0;
        while (cache_writer_settled(w) < seq && waited++ < 10000)
            usleep(100);
        assert_true(cache_writer_settled(w) >= seq);
        assert_int_equal(task_lookup(NULL, s, n), 1); /* in the store itself */
    }
    cache_writer_stop(w);
    w = cache_writer_start(s, 0);
    put_task(w, 99, 1, true); /* refused: the queue holds nothing */
    assert_int_equal(cache_writer_last_queued(w), 0);
    assert_true(cache_writer_settled(w) >= cache_writer_last_queued(w));
    cache_writer_stop(w);
    cache_store_close(s);
}

static int count_usage(const unsigned char *key, size_t key_len, const unsigned char *data,
                       size_t len, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%.*s=%.*s;", (int)key_len, (const char *)key, (int)len,
             (const char *)data);
    return 0;
}

/* Usage rows go through the queue (copied: the caller's buffers may go at
 * once), a prune cuts the rows before its key, the latest row of a key
 * wins, and a full queue refuses (false, counted dropped) without leaking. */
static void test_usage_rows(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = open_store(f->dir, 64 * MIB);
    struct cache_writer *w = cache_writer_start(s, 1024);
    assert_non_null(w);
    char key[32], value[32];
    snprintf(key, sizeof key, "2026-01-01/a");
    snprintf(value, sizeof value, "1");
    assert_true(cache_writer_usage(w, key, strlen(key), value, strlen(value)));
    memset(key, 0, sizeof key);
    memset(value, 0, sizeof value);
    assert_true(cache_writer_usage(w, "2026-01-02/a", 12, "2", 1));
    assert_true(cache_writer_usage(w, "2026-01-02/a", 12, "3", 1));
    assert_true(cache_writer_usage_prune(w, "2026-01-02", 10));
    assert_false(cache_writer_usage(w, "", 0, "x", 1));
    cache_writer_stop(w);
    char seen[256] = "";
    assert_int_equal(cache_store_foreach_usage(s, NULL, 0, count_usage, seen), 0);
    assert_string_equal(seen, "2026-01-02/a=3;");

    w = cache_writer_start(s, 0);
    assert_non_null(w);
    assert_false(cache_writer_usage(w, "2026-01-03/a", 12, "4", 1));
    assert_false(cache_writer_usage_prune(w, "2027", 4));
    struct cache_writer_stats ws;
    cache_writer_stats(w, &ws);
    assert_int_equal(ws.dropped, 2);
    cache_writer_stop(w);
    cache_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_pending_then_stored, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_latest_put_wins, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_delete_removes_pending, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_queue_overflow_dropped, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stop_drains_everything, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stats_counters, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_keeps_committed, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_put_with_jobs, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_job_and_capture, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_task_pending_then_stored, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_task_latest_wins, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_settled_means_committed, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_task_queue_full, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_usage_rows, store_fixture_setup,
                                        store_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_has_room, store_fixture_setup, store_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
