/* test_disk.c: the cache under disk trouble, on the wire. Every client keeps
 * getting its own answer, the proxy never crashes, eviction keeps the newest
 * answers, and what could not be stored is counted.
 *  (a) the smallest bound (max_cache_bytes = 1 MiB, the least accepted; the
 *      LMDB map is then 65 MiB) under three times as many answers: the
 *      store's file stays within 1.3 times the bound;
 *  (b) a cache directory on a 2 MiB tmpfs, most of it taken by another
 *      program's file, with a bound and a map far larger (16 MiB, 80 MiB):
 *      the disk fills, the store keeps its reserve and evicts; then the
 *      other file goes, and the store grows into the room. Needs mount
 *      (root); without it, (b) prints SKIP.
 *  (c) task retention: tasks ended through a proxy are pruned by the next one
 *      started on the store with task_retention 1s, and then asked upstream.
 * Answers are checked against the fake's text, which names the prompt; the
 * ones kept are checked byte for byte with Cache-Control: only-if-cached. */
#include "driver.h"
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define KEY             "sk_live_disk00001"
#define WAVE            32   /* calls in flight at once */
#define TINY_PROMPTS    1600 /* ~2.2 KB answers: about 3.4 MiB through a 1 MiB bound */
#define DISK_PROMPTS    1000 /* about 2.2 MiB through 768 KiB of disk */
#define DISK_TASKS      40
#define DISK_LEFT       (768u << 10) /* bytes another program leaves free */
#define BACK_PROMPTS    400          /* once it has left */
#define LAST_CHECKED    20           /* the newest answers that must be kept */
#define RETENTION_TASKS 4

static struct proc fake, proxy;
static char root[64];
static char mnt[96];
static bool mounted;
static const char *const proxy_env[] = {"CLORO_API_KEY=" KEY, NULL};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    const char *fake_args[] = {"--api-key",
                               KEY,
                               "--log-level",
                               "warn",
                               "--concurrency-limit",
                               "200",
                               "--task-duration-ms",
                               "100",
                               "--artifact-ttl-s",
                               "600",
                               NULL};
    if (proc_start_fake(&fake, fake_args) != 0)
        return -1;
    snprintf(root, sizeof root, "/tmp/cloro-it-disk-XXXXXX");
    return mkdtemp(root) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (proxy.pid > 0 || proxy.dir[0] != '\0')
        proc_stop(&proxy);
    memset(&proxy, 0, sizeof proxy);
    if (mounted && umount2(mnt, MNT_DETACH) != 0)
        fprintf(stderr, "test_disk: umount %s: %s\n", mnt, strerror(errno));
    mounted = false;
    return 0;
}

static int group_teardown(void **state)
{
    teardown(state);
    proc_stop(&fake);
    if (root[0] != '\0')
        nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void body_of(char *body, size_t len, const char *tag, int i, bool html)
{
    snprintf(body, len, "{\"prompt\":\"%s %d\",\"country\":\"US\"%s}", tag, i,
             html ? ",\"include\":{\"html\":true}" : "");
}

static void sha_of(const struct http_reply *r, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)r->body, r->body_len, d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The client got its own answer: a 200 whose text names its prompt. */
static void assert_own_answer(const struct http_reply *r, const char *tag, int i)
{
    char marker[96];
    snprintf(marker, sizeof marker, "answer about \\\"%s %d\\\"", tag, i);
    if (r->curl_code != 0 || r->status != 200 || strstr(r->body, marker) == NULL)
        fail_msg("'%s %d': curl %d, status %ld: %.200s", tag, i, r->curl_code, r->status, r->body);
}

/* Asks prompts tag from..to-1 (every html_every-th names an artifact; 0:
 * none), WAVE at a time; keeps each answer's SHA-256 in shas[i - from]. */
static void ask_all(const char *tag, int from, int to, int html_every, char (*shas)[65])
{
    char body[160];
    for (int start = from; start < to; start += WAVE) {
        int n = to - start < WAVE ? to - start : WAVE;
        struct driver d;
        driver_init(&d, n);
        for (int k = 0; k < n; k++) {
            int i = start + k;
            body_of(body, sizeof body, tag, i, html_every > 0 && i % html_every == 0);
            driver_add(&d, &proxy, "/v1/monitor/chatgpt", body, 0, NULL, 30000);
        }
        assert_true(driver_finish(&d, 60000));
        for (int k = 0; k < n; k++) {
            assert_own_answer(&d.calls[k].reply, tag, start + k);
            if (shas != NULL)
                sha_of(&d.calls[k].reply, shas[start + k - from]);
        }
        driver_free(&d);
    }
}

/* Whether the cache still holds prompt i; when it does, its bytes must be sha. */
static bool kept(const char *tag, int i, bool html, const char *sha)
{
    char body[160];
    body_of(body, sizeof body, tag, i, html);
    const char *headers[] = {"Content-Type: application/json", "Cache-Control: only-if-cached",
                             NULL};
    struct http_reply r;
    http_post(&proxy, "/v1/monitor/chatgpt", body, headers, &r);
    bool found = r.status == 200;
    if (found && sha != NULL) {
        char got[65];
        sha_of(&r, got);
        if (strcmp(got, sha) != 0)
            fail_msg("'%s %d' is kept, but not as its client got it", tag, i);
    }
    if (!found && (r.status != 504 || strcmp(http_error_code(&r), "CACHE_MISS") != 0))
        fail_msg("only-if-cached '%s %d': %ld %.200s", tag, i, r.status, r.body);
    http_reply_free(&r);
    return found;
}

static long long cache_stat(const char *dotted)
{
    struct http_reply r;
    http_get(&proxy, "/_proxy/cache/stats", &r);
    json_t *j = http_json(&r);
    json_t *node = json_dig(j, dotted);
    long long v = json_is_integer(node) ? (long long)json_integer_value(node) : -1;
    json_decref(j);
    http_reply_free(&r);
    return v;
}

/* Waits until the writer has nothing queued: every op committed, dropped
 * or failed. Asserts that they add up. */
static void writer_settled(void)
{
    long long deadline = now_ms() + 20000;
    long long queued, done;
    do {
        queued = cache_stat("writer.queued");
        done = cache_stat("writer.committed") + cache_stat("writer.dropped") +
               cache_stat("writer.failed");
        if (done < queued)
            sleep_ms(50);
    } while (done < queued && now_ms() < deadline);
    assert_int_equal(done, queued);
}

/* task_retention: NULL leaves the default (30d). */
static void start_proxy(const char *cache_dir, const char *max_bytes, const char *task_retention)
{
    const char *args[] = {"--cache-dir",
                          cache_dir,
                          "--max-cache-bytes",
                          max_bytes,
                          "--artifact-hosts",
                          fake.addr,
                          "--max-concurrency",
                          "50",
                          "--poll-initial",
                          "100ms",
                          "--poll-interval",
                          "200ms",
                          task_retention != NULL ? "--task-retention" : NULL,
                          task_retention,
                          NULL};
    if (proc_start_proxy(&proxy, fake.url, args, proxy_env) != 0)
        fail_msg("the proxy did not start (log above)");
}

static void assert_alive(void)
{
    struct http_reply r;
    http_get(&proxy, "/_proxy/healthz", &r);
    assert_int_equal(r.status, 200);
    http_reply_free(&r);
    assert_true(proxy.pid > 0 && !proc_wait_exit(&proxy, 0));
}

/* (a) */
static void test_tiny_bound(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/tiny", root);
    start_proxy(dir, "1MiB", NULL);
    static char shas[TINY_PROMPTS][65];
    ask_all("tiny", 0, TINY_PROMPTS, 0, shas);
    writer_settled();
    long long bytes = cache_stat("bytes"), evictions = cache_stat("evictions");
    long long entries = cache_stat("entries");
    assert_true(evictions > 0);
    assert_true(bytes <= 1 << 20);
    assert_int_equal(cache_stat("dropped"), 0);
    assert_int_equal(cache_stat("store_errors"), 0);
    assert_int_equal(cache_stat("writer.failed"), 0);
    /* The oldest went, the newest stayed, as their clients got them. */
    for (int i = 0; i < LAST_CHECKED; i++) {
        if (kept("tiny", i, false, shas[i]))
            fail_msg("'tiny %d', among the oldest, was not evicted", i);
        int last = TINY_PROMPTS - 1 - i;
        if (!kept("tiny", last, false, shas[last]))
            fail_msg("'tiny %d', among the newest, is not kept", last);
    }
    assert_alive();
    /* The bound holds on disk too: the store counts what each answer takes
     * in the file (an overflow page for a 2.2 KB answer, its rows), not its
     * record's bytes, so the pages its file uses stay near max_cache_bytes
     * (about twice the bound when it counted record bytes). The file itself
     * also holds the pages freed by the last txns, not reusable yet. */
    long long file_bytes = cache_stat("file_bytes");
    if (file_bytes <= 0 || file_bytes > (13 << 20) / 10)
        fail_msg("the store's file uses %lld bytes, over 1.3 times its 1 MiB bound", file_bytes);
    char data[160];
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    struct stat st;
    assert_int_equal(stat(data, &st), 0);
    print_message("tiny bound: 1 MiB, %d answers asked (all 200, right body); %lld entries "
                  "(%lld bytes) kept, %lld evicted, 0 dropped, 0 errors; the file uses %lld bytes "
                  "(%lld with its free pages)\n",
                  TINY_PROMPTS, entries, bytes, evictions, file_bytes, (long long)st.st_size);
}

/* Another program's file, grown until the filesystem has at most leave
 * bytes free; returns its bytes. */
static long long fill_disk(const char *path, unsigned long long leave)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[4096];
    long long total = 0;
    struct statvfs fs;
    while (fstatvfs(fd, &fs) == 0 && (unsigned long long)fs.f_bavail * fs.f_frsize > leave) {
        ssize_t n = write(fd, block, sizeof block);
        if (n <= 0)
            break;
        total += n;
    }
    close(fd);
    return total;
}

static unsigned long long disk_free(void)
{
    struct statvfs fs;
    return statvfs(mnt, &fs) == 0 ? (unsigned long long)fs.f_bavail * fs.f_frsize : 0;
}

/* GET /v1/async/task/{id} through the proxy: true when it is 200 COMPLETED.
 * The reply in r (the caller frees it). */
static bool task_completed(const char *id, struct http_reply *r)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", id);
    http_get(&proxy, path, r);
    json_t *j = http_json(r);
    const char *status = json_string_value(json_dig(j, "task.status"));
    bool done = r->status == 200 && status != NULL && strcmp(status, "COMPLETED") == 0;
    json_decref(j);
    return done;
}

/* n async tasks of prompts "<tag> task <i>" (the first with an
 * idempotencyKey when idem is not NULL): each ends COMPLETED through the
 * proxy. Their ids in ids. */
static void tasks_complete(const char *tag, int n, const char *idem, char (*ids)[64])
{
    for (int i = 0; i < n; i++) {
        char body[224], key[96] = "";
        if (i == 0 && idem != NULL)
            snprintf(key, sizeof key, ",\"idempotencyKey\":\"%s\"", idem);
        snprintf(body, sizeof body,
                 "{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"%s task %d\","
                 "\"country\":\"US\"}%s}",
                 tag, i, key);
        struct http_reply r;
        http_post(&proxy, "/v1/async/task", body, NULL, &r);
        if (r.status != 200)
            fail_msg("task %d: %ld %.200s", i, r.status, r.body);
        json_t *j = http_json(&r);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_dig(j, "task.id")));
        json_decref(j);
        http_reply_free(&r);
    }
    long long deadline = now_ms() + 20000;
    for (int i = 0; i < n; i++) {
        for (;;) {
            struct http_reply r;
            bool done = task_completed(ids[i], &r);
            if (!done && now_ms() > deadline)
                fail_msg("task %s did not complete: %ld %.300s", ids[i], r.status, r.body);
            http_reply_free(&r);
            if (done)
                break;
            sleep_ms(50);
        }
    }
}

/* (b) */
static void test_small_filesystem(void **state)
{
    (void)state;
    snprintf(mnt, sizeof mnt, "%s/mnt", root);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m,mode=0700") != 0) {
        print_message("SKIP test_small_filesystem: cannot mount a tmpfs (%s); run as root\n",
                      strerror(errno));
        skip();
    }
    mounted = true;
    /* Another program holds most of the disk: the store gets what is left. */
    char filler[200];
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    long long taken = fill_disk(filler, DISK_LEFT);
    unsigned long long left = disk_free();
    char dir[160];
    snprintf(dir, sizeof dir, "%s/cache", mnt);
    start_proxy(dir, "16MiB", NULL);

    /* The disk fills: clients get their answers, the store evicts, keeps the
     * newest, and counts what it could not keep; tasks complete. */
    static char ids[DISK_TASKS][64];
    tasks_complete("disk", DISK_TASKS, NULL, ids);
    static char shas[DISK_PROMPTS][65];
    ask_all("disk", 0, DISK_PROMPTS, 10, shas);
    writer_settled();
    assert_int_equal(cache_stat("writer.failed"), 0);
    long long evictions = cache_stat("evictions"), dropped = cache_stat("dropped");
    long long errors = cache_stat("store_errors");
    assert_true(evictions > 0);
    for (int i = 0; i < LAST_CHECKED; i++) {
        int last = DISK_PROMPTS - 1 - i;
        if (!kept("disk", last, last % 10 == 0, shas[last]))
            fail_msg("'disk %d', among the newest, is not kept on the full disk (%lld entries, "
                     "%lld evicted, %lld dropped, %llu bytes free)",
                     last, cache_stat("entries"), cache_stat("evictions"), cache_stat("dropped"),
                     disk_free());
    }
    assert_false(kept("disk", 1, false, shas[1]));
    long long entries = cache_stat("entries"), bytes = cache_stat("bytes");
    long long captured = proxy_counter(&proxy, "artifacts.captured");
    assert_alive();

    /* The other program leaves: the store grows into the room. */
    assert_int_equal(unlink(filler), 0);
    ask_all("back", 0, BACK_PROMPTS, 0, NULL);
    writer_settled();
    assert_int_equal(cache_stat("writer.failed"), 0);
    for (int i = BACK_PROMPTS - LAST_CHECKED; i < BACK_PROMPTS; i++)
        if (!kept("back", i, false, NULL))
            fail_msg("'back %d' is not stored once the disk has room again", i);
    long long entries_back = cache_stat("entries");
    assert_true(entries_back > entries);
    assert_alive();
    proc_stop(&proxy);
    assert_int_equal(proxy.exit_status, 0);
    memset(&proxy, 0, sizeof proxy);

    print_message("small filesystem: 2 MiB tmpfs, another program's file of %lld bytes, %llu "
                  "bytes left to a store with max_cache_bytes 16 MiB (map 80 MiB); %d answers "
                  "and %d tasks all right: %lld entries (%lld bytes) kept, %lld evicted, %lld "
                  "dropped, %lld store errors counted, 0 failed, %lld artifacts captured; the "
                  "file removed: %d answers more, %lld entries kept\n",
                  taken, left, DISK_PROMPTS, DISK_TASKS, entries, bytes, evictions, dropped, errors,
                  captured, BACK_PROMPTS, entries_back);
}

/* A GET of task id through the proxy: 200 COMPLETED. Returns the fake's
 * task polls after it. */
static long long get_completed(const char *id)
{
    struct http_reply r;
    if (!task_completed(id, &r))
        fail_msg("GET task %s: %ld %.300s", id, r.status, r.body);
    http_reply_free(&r);
    return fake_stat(&fake, "async.task_polls");
}

/* (c) */
static void test_task_retention(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/retention", root);
    start_proxy(dir, "16MiB", NULL);
    static char ids[RETENTION_TASKS][64];
    tasks_complete("retention", RETENTION_TASKS, "retention-idem", ids);
    writer_settled();
    /* Ended and kept: answered from the store, upstream not asked. */
    long long polls = fake_stat(&fake, "async.task_polls");
    assert_int_equal(get_completed(ids[1]), polls);
    assert_int_equal(proxy_counter(&proxy, "tasks.pruned"), 0);
    proc_stop(&proxy);
    memset(&proxy, 0, sizeof proxy);

    /* The same store under a retention of 1 s, once they ended longer ago:
     * the prune at start deletes every record, and a GET goes upstream as
     * for a task the proxy never saw. */
    sleep_ms(1100);
    start_proxy(dir, "16MiB", "1s");
    assert_int_equal(proxy_wait_counter(&proxy, "tasks.pruned", RETENTION_TASKS, 20000),
                     RETENTION_TASKS);
    writer_settled();
    polls = fake_stat(&fake, "async.task_polls");
    assert_int_equal(get_completed(ids[1]), polls + 1);
    assert_int_equal(get_completed(ids[0]), polls + 2);
    assert_alive();
    print_message("task retention 1 s: %d ended tasks pruned at start (with the index of their "
                  "idempotencyKey); their GETs go upstream\n",
                  RETENTION_TASKS);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tiny_bound, teardown),
        cmocka_unit_test_teardown(test_small_filesystem, teardown),
        cmocka_unit_test_teardown(test_task_retention, teardown),
    };
    int failed = cmocka_run_group_tests(tests, setup, group_teardown);
    curl_global_cleanup();
    return failed;
}
