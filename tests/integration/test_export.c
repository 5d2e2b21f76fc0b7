/* test_export.c: `cloro-proxy export` and `import` on real caches. A proxy
 * online against the fake fills a cache (three providers, include.html so
 * artifacts are captured, an async task and its result, a team member and an
 * admin token in use), then stops. Its export, imported into an empty cache
 * served offline, replays every answer byte for byte with the original
 * X-Request-ID and headers, every artifact page, the task's result and its
 * idempotencyKey, and the fake sees no request at all. Filtered exports
 * (--provider, --match, --since, combined) hold exactly the expected
 * entries. The bundle holds neither the API key, the member's token, the
 * admin token, a usage row, nor "Authorization". Corrupted bundles (a byte
 * flipped, truncated, an entry failing its checksum behind a valid trailer,
 * another version, not a bundle) are refused with a message naming the
 * problem, and the target cache is left exactly as it was. A bundle imported
 * into the cache of a running proxy is served by it at once.
 *
 * The tests run in order and build on each other: the first fills the
 * source cache and records the original answers. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define KEY         "sk_live_export_9f3a71d2"
#define ADMIN       "adm_export_test_c0ffee42"
#define MEMBER      "cpm_export_alice_4d2b9e17"
#define MEMBER_NAME "alice"
#define IDEM        "export-idem-0001"
#define MAX_LINKS   4
#define LINK_PREFIX "http://127.0.0.1:8787" /* the proxies' default public_url */

static struct proc fake, source, replay, live;
static char root[64];               /* this run's directory */
static char src_dir[128];           /* the source proxy's cache */
static char all_path[128];          /* the export of everything */
static char since_iso[40];          /* between the two batches */
static char task_id[64];            /* the async task */
static struct http_reply task_view; /* its GET on the source */
static const char *const source_env[] = {"CLORO_API_KEY=" KEY, "CLORO_ADMIN_TOKEN=" ADMIN, NULL};

/* The questions: endpoint, body, and what the filters must make of them. */
struct asked {
    const char *endpoint;
    const char *body;
    /* The original answer (a HIT on the source). */
    char key[65];
    char rid[80];
    char content_type[80];
    char saved[16];
    char *body_seen;
    size_t body_len;
    char links[MAX_LINKS][200]; /* proxy paths of its artifact pages */
    int link_count;
    struct http_reply pages[MAX_LINKS];
};

static struct asked asked[] = {
    {.endpoint = "/v1/monitor/chatgpt",
     .body = "{\"prompt\":\"export alpha crm\",\"country\":\"US\",\"include\":{\"html\":true}}"},
    {.endpoint = "/v1/monitor/chatgpt",
     .body = "{\"prompt\":\"export beta weather\",\"country\":\"US\",\"include\":{\"html\":true}}"},
    {.endpoint = "/v1/monitor/perplexity",
     .body = "{\"prompt\":\"export gamma crm\",\"country\":\"US\"}"},
    /* After the --since cut (SINCE_CUT) from here on. */
    {.endpoint = "/v1/monitor/google",
     .body = "{\"query\":\"export delta crm tools\",\"country\":\"US\",\"pages\":2,"
             "\"include\":{\"html\":true}}"},
    /* The result of the async task (submitted, not asked sync). */
    {.endpoint = "/v1/monitor/gemini",
     .body =
         "{\"prompt\":\"export epsilon launch\",\"country\":\"US\",\"include\":{\"html\":true}}"},
    {.endpoint = "/v1/monitor/chatgpt",
     .body = "{\"prompt\":\"export zeta crm\",\"country\":\"US\",\"include\":{\"html\":true}}"},
};
#define ASKED     (sizeof asked / sizeof asked[0])
#define ASYNC_ONE 4
#define SINCE_CUT 3

/* ---- helpers --------------------------------------------------------------------- */

static void path_in_root(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", root, name);
}

/* POST to p with the member's token (member) or none, and optionally a
 * Cache-Control line. */
static void ask(const struct proc *p, const char *endpoint, const char *body, bool member,
                const char *cache_control, struct http_reply *out)
{
    char cc[96];
    const char *headers[4] = {"Content-Type: application/json", NULL, NULL, NULL};
    size_t n = 1;
    if (member)
        headers[n++] = "Authorization: Bearer " MEMBER;
    if (cache_control != NULL) {
        snprintf(cc, sizeof cc, "Cache-Control: %s", cache_control);
        headers[n++] = cc;
    }
    char *url = proc_url(p, endpoint);
    http_call("POST", url, body, headers, out);
    free(url);
}

static void get(const struct proc *p, const char *path, const char *auth_line,
                struct http_reply *out)
{
    const char *headers[2] = {auth_line, NULL};
    char *url = proc_url(p, path);
    http_call("GET", url, NULL, headers, out);
    free(url);
}

/* A counter of the source's /_proxy/stats (admin token), -1 when absent. */
static long long admin_stat(const struct proc *p, const char *dotted)
{
    struct http_reply r;
    get(p, "/_proxy/stats", "Authorization: Bearer " ADMIN, &r);
    json_t *j = http_json(&r);
    json_t *node = json_dig(j, dotted);
    long long v = json_is_integer(node) ? (long long)json_integer_value(node) : -1;
    json_decref(j);
    http_reply_free(&r);
    return v;
}

static void copy_header(const struct http_reply *r, const char *name, char *out, size_t size)
{
    const char *v = http_header(r, name);
    if (v == NULL)
        fail_msg("%s missing (status %ld, body %.200s)", name, r->status, r->body);
    snprintf(out, size, "%s", v);
}

static void assert_header_is(const struct http_reply *r, const char *name, const char *want)
{
    const char *v = http_header(r, name);
    if (v == NULL || strcmp(v, want) != 0)
        fail_msg("%s: expected '%s', got '%s' (status %ld, body %.200s)", name, want,
                 v != NULL ? v : "(absent)", r->status, r->body);
}

/* The proxy paths of an answer's result.html (one string or an array). */
static int links_of(const char *body, size_t len, char out[][200], int max)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *html = json_dig(j, "result.html");
    int n = 0;
    json_t *one[1] = {html};
    size_t count = json_is_array(html) ? json_array_size(html) : json_is_string(html) ? 1 : 0;
    for (size_t i = 0; i < count && n < max; i++) {
        json_t *v = json_is_array(html) ? json_array_get(html, i) : one[0];
        const char *s = json_string_value(v);
        if (s == NULL ||
            strncmp(s, LINK_PREFIX "/_proxy/artifacts/", strlen(LINK_PREFIX "/_proxy/artifacts/")))
            fail_msg("an html link not rewritten to the proxy: %s", s != NULL ? s : "(null)");
        snprintf(out[n++], 200, "%s", s + strlen(LINK_PREFIX));
    }
    json_decref(j);
    return n;
}

static void iso_now(char *out, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%.19s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* The uncompressed stream of a bundle file (zlib here, not the proxy's reader). */
static unsigned char *gunzip_file(const char *path, size_t *out_len)
{
    size_t len;
    unsigned char *gz = read_all(path, &len);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
    size_t cap = len * 8 + 4096, used = 0;
    unsigned char *out = malloc(cap);
    zs.next_in = gz;
    zs.avail_in = (uInt)len;
    int rc;
    do {
        if (used == cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
        zs.next_out = out + used;
        zs.avail_out = (uInt)(cap - used);
        rc = inflate(&zs, Z_NO_FLUSH);
        used = cap - zs.avail_out;
    } while (rc == Z_OK);
    inflateEnd(&zs);
    free(gz);
    if (rc != Z_STREAM_END)
        fail_msg("%s is not a whole gzip stream (%d)", path, rc);
    *out_len = used;
    return out;
}

static void gzip_to(const char *path, const unsigned char *data, size_t len)
{
    uLong cap = compressBound((uLong)len) + 64;
    unsigned char *out = malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    write_all(path, out, cap - zs.avail_out);
    deflateEnd(&zs);
    free(out);
}

/* What a bundle holds, read with the format of bundle.h: the entries' keys
 * and the count of each record type. */
struct contents {
    int entries, tasks, jobs, blobs;
    char keys[16][65];
    size_t first_entry; /* offset of the first entry record */
};

static void read_contents(const char *path, struct contents *c)
{
    memset(c, 0, sizeof *c);
    size_t len;
    unsigned char *raw = gunzip_file(path, &len);
    const char magic[] = "cloro-proxy-bundle 1\n";
    assert_true(len > sizeof magic && memcmp(raw, magic, sizeof magic - 1) == 0);
    size_t pos = sizeof magic - 1;
    bool trailer = false;
    while (pos + 5 <= len) {
        unsigned char type = raw[pos];
        size_t n = (size_t)raw[pos + 1] << 24 | (size_t)raw[pos + 2] << 16 |
                   (size_t)raw[pos + 3] << 8 | raw[pos + 4];
        assert_true(pos + 5 + n <= len);
        if (type == 'E') {
            if (c->entries == 0)
                c->first_entry = pos;
            assert_true(c->entries < 16);
            for (int i = 0; i < 32; i++)
                snprintf(c->keys[c->entries] + 2 * i, 3, "%02x", raw[pos + 5 + i]);
            c->entries++;
        }
        c->tasks += type == 'T';
        c->jobs += type == 'J';
        c->blobs += type == 'B';
        trailer = type == 'Z';
        pos += 5 + n;
    }
    assert_true(trailer);
    assert_int_equal(pos, len);
    free(raw);
}

static bool has_key(const struct contents *c, const char *key)
{
    for (int i = 0; i < c->entries; i++)
        if (strcmp(c->keys[i], key) == 0)
            return true;
    return false;
}

/* The bundle holds exactly the entries of asked[] named by want (indexes,
 * -1 terminated). */
static void assert_entries(const struct contents *c, const int *want, const char *what)
{
    int n = 0;
    for (; want[n] >= 0; n++)
        if (!has_key(c, asked[want[n]].key))
            fail_msg("%s: the answer to %s is missing", what, asked[want[n]].body);
    if (c->entries != n)
        fail_msg("%s: %d entries, expected %d", what, c->entries, n);
}

static void export_to(const char *name, const char *const filters[], struct contents *c)
{
    char path[160];
    path_in_root(path, sizeof path, name);
    const char *args[16] = {"export", "-o", path, "--cache-dir", src_dir};
    size_t n = 5;
    for (size_t i = 0; filters != NULL && filters[i] != NULL; i++)
        args[n++] = filters[i];
    args[n] = NULL;
    struct cli_result r;
    cli_run(&r, args);
    if (r.status != 0)
        fail_msg("export %s: status %d: %s", name, r.status, r.output);
    assert_non_null(strstr(r.output, "exported "));
    free(r.output);
    read_contents(path, c);
}

static void run_cli(struct cli_result *r, const char *const args[], int want_status)
{
    cli_run(r, args);
    if (r->status != want_status)
        fail_msg("cloro-proxy %s %s: status %d, expected %d: %s", args[0], args[1], r->status,
                 want_status, r->output);
}

static long long fake_total(void)
{
    return fake_stat(&fake, "requests_total");
}

/* ---- setup ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    unsetenv("CLORO_ADMIN_TOKEN");
    snprintf(root, sizeof root, "/tmp/cloro-it-export-XXXXXX");
    if (mkdtemp(root) == NULL)
        return -1;
    path_in_root(src_dir, sizeof src_dir, "source");
    path_in_root(all_path, sizeof all_path, "all.bundle");
    const char *fake_args[] = {"--api-key",          KEY,   "--log-level", "warn",
                               "--task-duration-ms", "200", NULL};
    if (proc_start_fake(&fake, fake_args) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    struct proc *all[] = {&live, &replay, &source, &fake};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->pid > 0 || all[i]->dir[0] != '\0')
            proc_stop(all[i]);
    for (size_t i = 0; i < ASKED; i++) {
        free(asked[i].body_seen);
        for (int k = 0; k < asked[i].link_count; k++)
            http_reply_free(&asked[i].pages[k]);
    }
    http_reply_free(&task_view);
    remove_tree(root);
    curl_global_cleanup();
    return 0;
}

/* ---- tests ------------------------------------------------------------------------ */

/* The source: a member asks, an async task runs, artifacts are captured; the
 * original answers (hits) and pages are recorded; the proxy stops. */
static void test_fill_source(void **state)
{
    (void)state;
    char members[160], hash[65], text[256];
    path_in_root(members, sizeof members, "members.ini");
    sha256_hex(MEMBER, hash);
    snprintf(text, sizeof text, "[member %s]\ntoken_sha256 = %s\n", MEMBER_NAME, hash);
    write_all(members, text, strlen(text));
    const char *args[] = {
        "--cache-dir", src_dir,          "--members-file", members,           "--artifact-hosts",
        fake.addr,     "--poll-initial", "100ms",          "--poll-interval", "200ms",
        NULL};
    if (proc_start_proxy(&source, fake.url, args, source_env) != 0)
        fail_msg("the source proxy did not start");

    struct http_reply r;
    for (size_t i = 0; i < ASKED; i++) {
        if (i == SINCE_CUT) {
            /* The --since cut: answers before it, answers after it. */
            sleep_ms(50);
            iso_now(since_iso, sizeof since_iso);
            sleep_ms(50);
        }
        if (i == ASYNC_ONE) {
            char item[256];
            const char *payload = strchr(asked[i].body, '{');
            snprintf(item, sizeof item,
                     "{\"taskType\":\"GEMINI\",\"payload\":%s,\"idempotencyKey\":\"" IDEM "\"}",
                     payload);
            ask(&source, "/v1/async/task", item, true, NULL, &r);
            if (r.status != 200)
                fail_msg("task submission: %ld %.300s", r.status, r.body);
            json_t *j = http_json(&r);
            const char *id = json_string_value(json_dig(j, "task.id"));
            snprintf(task_id, sizeof task_id, "%s", id != NULL ? id : "");
            json_decref(j);
            http_reply_free(&r);
            assert_true(is_uuid(task_id));
            continue;
        }
        ask(&source, asked[i].endpoint, asked[i].body, true, NULL, &r);
        if (r.status != 200)
            fail_msg("%s: %ld %.300s", asked[i].body, r.status, r.body);
        assert_header_is(&r, "X-Cache", "MISS");
        http_reply_free(&r);
    }

    /* The task ends; its result is stored as the answer to the same prompt. */
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", task_id);
    long long deadline = now_ms() + 15000;
    for (;;) {
        get(&source, path, "Authorization: Bearer " MEMBER, &r);
        json_t *j = http_json(&r);
        const char *status = json_string_value(json_dig(j, "task.status"));
        bool done = status != NULL && strcmp(status, "COMPLETED") == 0;
        json_decref(j);
        if (done) {
            task_view = r;
            break;
        }
        http_reply_free(&r);
        if (now_ms() > deadline)
            fail_msg("the async task did not complete");
        sleep_ms(50);
    }
    for (;;) {
        ask(&source, asked[ASYNC_ONE].endpoint, asked[ASYNC_ONE].body, true, "only-if-cached", &r);
        bool hit = r.status == 200;
        http_reply_free(&r);
        if (hit)
            break;
        if (now_ms() > deadline)
            fail_msg("the task's result was not stored");
        sleep_ms(50);
    }

    /* Every page captured: 3 chatgpt, 2 Google, 1 Gemini. */
    deadline = now_ms() + 15000;
    while (admin_stat(&source, "artifacts.captured") < 6 && now_ms() < deadline)
        sleep_ms(50);
    assert_int_equal(admin_stat(&source, "artifacts.captured"), 6);
    assert_int_equal(admin_stat(&source, "artifacts.pending"), 0);

    /* The originals: each answer as a hit, and its pages. */
    for (size_t i = 0; i < ASKED; i++) {
        struct asked *a = &asked[i];
        ask(&source, a->endpoint, a->body, true, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_header_is(&r, "X-Cache", "HIT");
        copy_header(&r, "X-Cache-Key", a->key, sizeof a->key);
        copy_header(&r, "X-Request-ID", a->rid, sizeof a->rid);
        copy_header(&r, "Content-Type", a->content_type, sizeof a->content_type);
        copy_header(&r, "X-Credits-Saved", a->saved, sizeof a->saved);
        a->body_seen = malloc(r.body_len + 1);
        memcpy(a->body_seen, r.body, r.body_len);
        a->body_len = r.body_len;
        a->link_count = links_of(r.body, r.body_len, a->links, MAX_LINKS);
        http_reply_free(&r);
        for (int k = 0; k < a->link_count; k++) {
            get(&source, a->links[k], NULL, &a->pages[k]);
            assert_int_equal(a->pages[k].status, 200);
        }
    }
    assert_int_equal(asked[2].link_count, 0); /* no include.html */
    assert_int_equal(asked[3].link_count, 2);
    /* Usage rows exist (written once a second): the export must leave them. */
    sleep_ms(1200);
    proc_stop(&source);
}

/* Everything exported; nothing secret in the bundle. */
static void test_export_all_without_secrets(void **state)
{
    (void)state;
    struct cli_result r;
    run_cli(&r, (const char *[]){"export", "-o", all_path, "--cache-dir", src_dir, NULL}, 0);
    if (strstr(r.output, "exported 6 entries, 2 tasks, 6 artifact jobs and 6 blobs") == NULL)
        fail_msg("unexpected counts: %s", r.output);
    free(r.output);
    struct stat st;
    assert_int_equal(stat(all_path, &st), 0);
    char tmp_glob[200];
    snprintf(tmp_glob, sizeof tmp_glob, "ls %s | grep -c tmp- > /dev/null", root);
    assert_int_not_equal(system(tmp_glob), 0); /* no temporary file left */

    struct contents c;
    read_contents(all_path, &c);
    assert_entries(&c, (const int[]){0, 1, 2, 3, 4, 5, -1}, "all");
    assert_int_equal(c.tasks, 2); /* the task and its idempotencyKey's index */
    assert_int_equal(c.jobs, 6);
    assert_int_equal(c.blobs, 6);

    size_t len;
    unsigned char *raw = gunzip_file(all_path, &len);
    char member_hash[65];
    sha256_hex(MEMBER, member_hash);
    const char *secrets[] = {KEY,
                             MEMBER,
                             ADMIN,
                             member_hash,
                             "Bearer",
                             "authorization",
                             /* the member's name appears only in usage rows */ MEMBER_NAME};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        size_t n = strlen(secrets[i]);
        for (size_t p = 0; p + n <= len; p++)
            if (strncasecmp((const char *)raw + p, secrets[i], n) == 0)
                fail_msg("the bundle holds '%s' at byte %zu", secrets[i], p);
    }
    /* The answers are in it, so the scan did read them. */
    assert_non_null(memmem(raw, len, "export alpha crm", strlen("export alpha crm")));
    free(raw);
    size_t gz_len;
    unsigned char *gz = read_all(all_path, &gz_len);
    assert_null(memmem(gz, gz_len, KEY, strlen(KEY)));
    free(gz);
}

static void test_filters_export_exactly_the_subset(void **state)
{
    (void)state;
    struct contents c;
    export_to("chatgpt.bundle", (const char *[]){"--provider", "chatgpt", NULL}, &c);
    assert_entries(&c, (const int[]){0, 1, 5, -1}, "--provider chatgpt");
    assert_int_equal(c.tasks, 0);
    assert_int_equal(c.jobs, 3);
    assert_int_equal(c.blobs, 3);

    export_to("crm.bundle", (const char *[]){"--match", "crm", NULL}, &c);
    assert_entries(&c, (const int[]){0, 2, 3, 5, -1}, "--match crm");
    assert_int_equal(c.jobs, 4);

    export_to("since.bundle", (const char *[]){"--since", since_iso, NULL}, &c);
    assert_entries(&c, (const int[]){3, 4, 5, -1}, "--since");
    assert_int_equal(c.tasks, 2);

    export_to("both.bundle", (const char *[]){"--provider", "chatgpt", "--match", "cr[m]$", NULL},
              &c);
    assert_entries(&c, (const int[]){0, 5, -1}, "--provider chatgpt --match");

    export_to("epsilon.bundle", (const char *[]){"--match", "^export epsilon", NULL}, &c);
    assert_entries(&c, (const int[]){4, -1}, "--match epsilon");
    assert_int_equal(c.tasks, 2);
    assert_int_equal(c.jobs, 1);

    export_to("hour.bundle", (const char *[]){"--since", "1h", NULL}, &c);
    assert_int_equal(c.entries, 6);
    export_to("future.bundle", (const char *[]){"--since", "2099-01-01", NULL}, &c);
    assert_int_equal(c.entries, 0);
    assert_int_equal(c.tasks + c.jobs + c.blobs, 0);

    /* Usage errors: exit 2, naming the flag. */
    struct cli_result r;
    char out[160];
    path_in_root(out, sizeof out, "never.bundle");
    run_cli(&r,
            (const char *[]){"export", "-o", out, "--cache-dir", src_dir, "--since", "soon", NULL},
            2);
    assert_non_null(strstr(r.output, "--since"));
    free(r.output);
    run_cli(&r, (const char *[]){"export", "-o", out, "--cache-dir", src_dir, "--match", "(", NULL},
            2);
    assert_non_null(strstr(r.output, "--match"));
    free(r.output);
    run_cli(
        &r,
        (const char *[]){"export", "-o", out, "--cache-dir", src_dir, "--provider", "bing", NULL},
        2);
    free(r.output);
    run_cli(&r, (const char *[]){"export", "--cache-dir", src_dir, NULL}, 2);
    free(r.output);
    assert_int_not_equal(access(out, F_OK), 0);
}

/* Asks p every question as a client would and checks each answer, page and
 * the task against the originals; the fake sees nothing. */
static void assert_replays(const struct proc *p, const int *which)
{
    long long before = fake_total();
    long long fetches = fake_stat(&fake, "artifact_fetches");
    for (size_t w = 0; which[w] >= 0; w++) {
        struct asked *a = &asked[which[w]];
        struct http_reply r;
        ask(p, a->endpoint, a->body, false, NULL, &r);
        if (r.status != 200)
            fail_msg("%s: %ld %.300s", a->body, r.status, r.body);
        assert_header_is(&r, "X-Cache", "HIT");
        assert_header_is(&r, "X-Cache-Key", a->key);
        assert_header_is(&r, "X-Request-ID", a->rid);
        assert_header_is(&r, "Content-Type", a->content_type);
        assert_header_is(&r, "X-Credits-Saved", a->saved);
        if (r.body_len != a->body_len || memcmp(r.body, a->body_seen, a->body_len) != 0)
            fail_msg("%s: the body differs from the original (%zu vs %zu bytes)", a->body,
                     r.body_len, a->body_len);
        http_reply_free(&r);
        for (int k = 0; k < a->link_count; k++) {
            get(p, a->links[k], NULL, &r);
            if (r.status != 200)
                fail_msg("%s: %ld %.200s", a->links[k], r.status, r.body);
            assert_int_equal(r.body_len, a->pages[k].body_len);
            assert_memory_equal(r.body, a->pages[k].body, r.body_len);
            assert_header_is(&r, "Content-Type", http_header(&a->pages[k], "Content-Type"));
            assert_header_is(&r, "ETag", http_header(&a->pages[k], "ETag"));
            http_reply_free(&r);
        }
    }
    assert_int_equal(fake_total(), before);
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), fetches);
}

/* The round trip: import into an empty cache, serve it offline: every
 * answer, page and the task as they were; the fake sees nothing. */
static void test_import_replays_offline(void **state)
{
    (void)state;
    char dir[160];
    path_in_root(dir, sizeof dir, "replay");
    struct cli_result r;
    run_cli(&r, (const char *[]){"import", all_path, "--cache-dir", dir, NULL}, 0);
    if (strstr(r.output, "6 added, 0 kept, 0 replaced") == NULL ||
        strstr(r.output, "2 added") == NULL)
        fail_msg("unexpected counts: %s", r.output);
    free(r.output);

    long long before = fake_total();
    const char *args[] = {"--cache-dir", dir, "--artifact-hosts", fake.addr, "--mode",
                          "offline",     NULL};
    if (proc_start_proxy(&replay, fake.url, args, NULL) != 0)
        fail_msg("the replay proxy did not start");
    assert_replays(&replay, (const int[]){0, 1, 2, 3, 4, 5, -1});

    /* The task: its result as it was, and its idempotencyKey still taken. */
    char path[128];
    snprintf(path, sizeof path, "/v1/async/task/%s", task_id);
    struct http_reply t;
    get(&replay, path, NULL, &t);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.body_len, task_view.body_len);
    assert_memory_equal(t.body, task_view.body, t.body_len);
    http_reply_free(&t);
    char item[256];
    snprintf(item, sizeof item,
             "{\"taskType\":\"GEMINI\",\"payload\":%s,\"idempotencyKey\":\"" IDEM "\"}",
             strchr(asked[ASYNC_ONE].body, '{'));
    ask(&replay, "/v1/async/task", item, false, NULL, &t);
    assert_int_equal(t.status, 409);
    assert_string_equal(http_error_code(&t), "RESOURCE_ALREADY_EXISTS");
    http_reply_free(&t);

    /* What was not exported is a miss, and offline it stays one. */
    ask(&replay, "/v1/monitor/chatgpt", "{\"prompt\":\"export never asked\",\"country\":\"US\"}",
        false, NULL, &t);
    assert_int_equal(t.status, 504);
    assert_string_equal(http_error_code(&t), "OFFLINE_CACHE_MISS");
    http_reply_free(&t);

    assert_int_equal(fake_total(), before);
    assert_int_equal(fake_stat(&fake, "artifact_fetches"), 6); /* the source's, once each */
    proc_stop(&replay);
}

/* The listing, stats and artifacts of a cache, as the CLI prints them. */
static char *snapshot(const char *dir)
{
    char *all = calloc(1, 1);
    size_t len = 0;
    const char *cmds[][3] = {
        {"cache", "ls", NULL}, {"cache", "stats", NULL}, {"artifacts", "ls", NULL}};
    for (size_t i = 0; i < 3; i++) {
        struct cli_result r;
        run_cli(&r, (const char *[]){cmds[i][0], cmds[i][1], "--cache-dir", dir, NULL}, 0);
        size_t n = strlen(r.output);
        all = realloc(all, len + n + 1);
        memcpy(all + len, r.output, n + 1);
        len += n;
        free(r.output);
    }
    return all;
}

static void assert_refused(const char *bundle, const char *dir, const char *want)
{
    struct cli_result r;
    cli_run(&r, (const char *[]){"import", bundle, "--overwrite", "--cache-dir", dir, NULL});
    if (r.status != 1 || strstr(r.output, want) == NULL ||
        strstr(r.output, "nothing was imported") == NULL)
        fail_msg("import of %s: status %d, expected 1 saying '%s': %s", bundle, r.status, want,
                 r.output);
    free(r.output);
}

/* Corrupted bundles change nothing: the target lists, counts and reads as
 * before. The corruptions behind a valid gzip stream are made here from the
 * good bundle's stream. */
static void test_corrupted_bundles_change_nothing(void **state)
{
    (void)state;
    char dir[160], path[160];
    path_in_root(dir, sizeof dir, "target");
    struct cli_result r;
    char chatgpt[160];
    path_in_root(chatgpt, sizeof chatgpt, "chatgpt.bundle");
    run_cli(&r, (const char *[]){"import", chatgpt, "--cache-dir", dir, NULL}, 0);
    free(r.output);
    char *before = snapshot(dir);

    size_t len;
    unsigned char *gz = read_all(all_path, &len);
    /* A byte flipped in the middle of the file. */
    gz[len / 2] ^= 0xff;
    path_in_root(path, sizeof path, "flipped.bundle");
    write_all(path, gz, len);
    gz[len / 2] ^= 0xff;
    cli_run(&r, (const char *[]){"import", path, "--cache-dir", dir, NULL});
    if (r.status != 1 ||
        (strstr(r.output, "checksum mismatch") == NULL && strstr(r.output, "corrupted") == NULL))
        fail_msg("flipped byte: status %d: %s", r.status, r.output);
    free(r.output);
    /* Truncated, at several points. */
    size_t cuts[] = {len / 2, len - 1, 12, 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        path_in_root(path, sizeof path, "truncated.bundle");
        write_all(path, gz, cuts[i]);
        assert_refused(path, dir, "truncated at byte");
    }
    free(gz);
    /* Not a bundle at all. */
    path_in_root(path, sizeof path, "junk.bundle");
    write_all(path, "{\"not\":\"a bundle\"}", 18);
    assert_refused(path, dir, "bad magic");

    /* Behind a valid gzip stream and trailer: an entry failing its own
     * checksum, and another format version. */
    size_t raw_len;
    unsigned char *raw = gunzip_file(all_path, &raw_len);
    struct contents c;
    read_contents(all_path, &c);
    size_t trailer = raw_len - 69;
    assert_int_equal(raw[trailer], 'Z');
    size_t entry_body = c.first_entry + 5 + 32 + 16 + 1 + raw[c.first_entry + 5 + 48] + 4 + 40;
    raw[entry_body] ^= 0x01;
    SHA256(raw, trailer, raw + trailer + 5 + 32);
    path_in_root(path, sizeof path, "bad-entry.bundle");
    gzip_to(path, raw, raw_len);
    assert_refused(path, dir, "bad entry at byte");
    raw[entry_body] ^= 0x01;
    raw[strlen("cloro-proxy-bundle ")] = '2';
    SHA256(raw, trailer, raw + trailer + 5 + 32);
    path_in_root(path, sizeof path, "v2.bundle");
    gzip_to(path, raw, raw_len);
    assert_refused(path, dir, "unsupported version 2");
    /* And the trailer's hash alone wrong. */
    raw[strlen("cloro-proxy-bundle ")] = '1';
    raw[raw_len - 1] ^= 0x01;
    path_in_root(path, sizeof path, "trailer.bundle");
    gzip_to(path, raw, raw_len);
    assert_refused(path, dir, "checksum mismatch");
    free(raw);

    char *after = snapshot(dir);
    assert_string_equal(after, before);
    free(after);
    free(before);
    for (int i = 0; i < 3; i++) {
        int k = (const int[]){0, 1, 5}[i];
        run_cli(&r, (const char *[]){"cache", "show", asked[k].key, "--cache-dir", dir, NULL}, 0);
        /* The request the entry answers came along (what --match reads). */
        const char *prompt = strstr(asked[k].body, "\"prompt\"");
        char want[96];
        snprintf(want, sizeof want,
                 "request:         {\"country\":\"US\",\"include\":{\"html\":"
                 "true},%.*s",
                 (int)(strchr(prompt + 10, '"') - prompt + 1), prompt);
        if (strstr(r.output, want) == NULL)
            fail_msg("cache show: no '%s' in %s", want, r.output);
        free(r.output);
    }
}

/* A proxy running on a cache serves what is imported into it right away. */
static void test_import_into_a_live_proxy(void **state)
{
    (void)state;
    char dir[160], crm[160];
    path_in_root(dir, sizeof dir, "live");
    path_in_root(crm, sizeof crm, "crm.bundle");
    const char *args[] = {"--cache-dir", dir, "--artifact-hosts", fake.addr, NULL};
    if (proc_start_proxy(&live, fake.url, args, NULL) != 0)
        fail_msg("the live proxy did not start");
    struct http_reply r;
    ask(&live, asked[0].endpoint, asked[0].body, false, "only-if-cached", &r);
    assert_int_equal(r.status, 504);
    http_reply_free(&r);

    struct cli_result out;
    run_cli(&out, (const char *[]){"import", crm, "--cache-dir", dir, NULL}, 0);
    assert_non_null(strstr(out.output, "4 added"));
    free(out.output);
    assert_replays(&live, (const int[]){0, 2, 3, 5, -1});
    /* Importing again keeps what is there. */
    run_cli(&out, (const char *[]){"import", crm, "--cache-dir", dir, NULL}, 0);
    assert_non_null(strstr(out.output, "0 added, 4 kept, 0 replaced"));
    free(out.output);
    assert_replays(&live, (const int[]){0, 5, -1});
    proc_stop(&live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_source),
        cmocka_unit_test(test_export_all_without_secrets),
        cmocka_unit_test(test_filters_export_exactly_the_subset),
        cmocka_unit_test(test_import_replays_offline),
        cmocka_unit_test(test_corrupted_bundles_change_nothing),
        cmocka_unit_test(test_import_into_a_live_proxy),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
