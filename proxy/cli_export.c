/* cli_export.c: the export and import commands (cli_export.h). export picks
 * entries (by provider, age, and a regex on the prompt of the request they
 * answer), the finished async tasks whose results they are, and the artifact
 * jobs and blobs their answers link to, and writes a bundle (bundle.h) to a
 * temporary file renamed into place. import reads and validates a whole
 * bundle, then applies it in one txn (cache_store_import). Neither ever
 * carries the API key, a member or admin token, or a usage row: the store
 * holds none but usage rows, which are never read here; entries keep only
 * the answer headers the proxy relays, and are scanned all the same for
 * Authorization, Proxy-Authorization, Cookie and Set-Cookie, dropped if
 * found.
 *
 * An export reads the store twice (what to take, then the records), each
 * pass in one read txn; a running proxy may evict or purge in between, and
 * then the counts promised by the header no longer hold: the export starts
 * over (at most EXPORT_ATTEMPTS times). */
#include "cli_export.h"
#include "artifact_urls.h"
#include "bundle.h"
#include "cli_store.h"
#include "clock.h"
#include "config.h"
#include "entry.h"
#include "key.h"
#include "store.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE           2
#define EXPORT_ATTEMPTS      3
#define ARTIFACTS_PER_ANSWER 16  /* Google: up to 10 pages (cache_io.c) */
#define INDEX_RECORD_MAX     256 /* an idempotency index entry holds a task id */
#define IMPORT_MAP_FACTOR    2   /* a new store's bound: at least twice the bundle */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static void hex_of(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int unhex(const char *hex, unsigned char *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

static bool provider_known(const char *provider)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/monitor/%s", provider);
    return cache_key_provider("POST", path) != NULL;
}

/* --- --since ------------------------------------------------------------------ */

/* A date or time (clock_parse_iso8601), or a duration ago: a number and a unit, ms,
 * s, m, h, d or w ("24h", "7d"). */
static int parse_since(const char *text, int64_t now_ms, int64_t *out_ms)
{
    if (clock_parse_iso8601(text, out_ms) == 0)
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (end == text || errno != 0 || n < 0 || text[0] == '-' || text[0] == '+')
        return -1;
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 7 * 86400000LL}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (n > INT64_MAX / units[i].ms)
                return -1;
            *out_ms = now_ms - n * units[i].ms;
            return 0;
        }
    }
    return -1;
}

/* --- selection (the first pass) --------------------------------------------------- */

struct selection {
    const char *provider; /* NULL: any */
    bool has_since;
    int64_t since_ms;
    const regex_t *match; /* NULL: any */
    bool filtered;        /* any of the three */
    struct cache_store *store;

    json_t *entry_keys;   /* hex -> true: entries taken */
    json_t *task_keys;    /* hex -> true: task records and index entries taken */
    json_t *index_keys;   /* hex -> true: every index entry of "tasks" */
    json_t *idem_wanted;  /* hex -> true: index entries of the tasks taken */
    json_t *artifact_ids; /* id -> true: linked from what is taken */
    json_t *blob_hashes;  /* hex -> true: blobs of the captured jobs taken */
    struct cache_job *jobs;
    size_t job_count;

    uint64_t corrupt;         /* entries that did not decode: never exported */
    uint64_t without_request; /* --match: entries stored before requests were kept */
    uint64_t unfinished;      /* tasks still running: never exported */
    bool failed;              /* a store read failed */
};

static void selection_init(struct selection *sel)
{
    sel->entry_keys = json_object();
    sel->task_keys = json_object();
    sel->index_keys = json_object();
    sel->idem_wanted = json_object();
    sel->artifact_ids = json_object();
    sel->blob_hashes = json_object();
    sel->jobs = NULL;
    sel->job_count = 0;
    sel->corrupt = sel->without_request = sel->unfinished = 0;
    sel->failed = false;
}

static void selection_deinit(struct selection *sel)
{
    json_decref(sel->entry_keys);
    json_decref(sel->task_keys);
    json_decref(sel->index_keys);
    json_decref(sel->idem_wanted);
    json_decref(sel->artifact_ids);
    json_decref(sel->blob_hashes);
    free(sel->jobs);
    sel->jobs = NULL;
}

static void set_add(json_t *set, const char *name)
{
    json_object_set_new(set, name, json_true());
}

static bool set_has(const json_t *set, const char *name)
{
    return json_object_get(set, name) != NULL;
}

/* The artifact ids an answer, a task record or a raw answer links to. */
static void collect_artifacts(struct selection *sel, const unsigned char *text, size_t len)
{
    struct artifact_url urls[ARTIFACTS_PER_ANSWER];
    size_t n = artifact_urls_find((const char *)text, len, NULL, urls, ARTIFACTS_PER_ANSWER);
    for (size_t i = 0; i < n; i++)
        set_add(sel->artifact_ids, urls[i].id);
}

/* The prompt of a canonical request (the query for Google; the whole text
 * when it has neither) against the regex. */
static bool request_matches(const regex_t *re, const char *request)
{
    json_t *doc = json_loads(request, 0, NULL);
    const char *text = json_string_value(json_object_get(doc, "prompt"));
    if (text == NULL)
        text = json_string_value(json_object_get(doc, "query"));
    bool hit = regexec(re, text != NULL ? text : request, 0, NULL, 0) == 0;
    json_decref(doc);
    return hit;
}

static int on_select_entry(const unsigned char *key, const struct cache_meta *m,
                           const unsigned char *record, size_t len, void *arg)
{
    struct selection *sel = arg;
    if (sel->provider != NULL && strcmp(m->provider, sel->provider) != 0)
        return 0;
    if (sel->has_since && m->stored_at_ms < sel->since_ms)
        return 0;
    struct cache_entry e;
    if (cache_entry_decode(record, len, &e) != 0) {
        sel->corrupt++;
        return 0;
    }
    bool take = true;
    if (sel->match != NULL) {
        if (e.request == NULL || e.request[0] == '\0') {
            sel->without_request++;
            take = false;
        } else {
            take = request_matches(sel->match, e.request);
        }
    }
    if (take) {
        char hex[CACHE_KEY_HEX_LEN + 1];
        hex_of(key, CACHE_KEY_BYTES, hex);
        set_add(sel->entry_keys, hex);
        collect_artifacts(sel, e.body, e.body_len);
    }
    cache_entry_free(&e);
    return 0;
}

static bool task_finished(const json_t *rec)
{
    const char *s = json_string_value(json_object_get(json_object_get(rec, "task"), "status"));
    return s != NULL && (strcmp(s, "COMPLETED") == 0 || strcmp(s, "FAILED") == 0);
}

/* A task record is its JSON text, maybe a NUL and a raw cached answer
 * (proxy/tasks.c); anything else in "tasks" is an index entry. */
static int on_select_task(const unsigned char *key, const unsigned char *data, size_t len,
                          void *arg)
{
    struct selection *sel = arg;
    char hex[CACHE_KEY_HEX_LEN + 1];
    hex_of(key, CACHE_KEY_BYTES, hex);
    if (len == 0 || data[0] != '{') {
        set_add(sel->index_keys, hex);
        return 0;
    }
    const unsigned char *nul = memchr(data, '\0', len);
    size_t json_len = nul != NULL ? (size_t)(nul - data) : len;
    json_t *rec = json_loadb((const char *)data, json_len, 0, NULL);
    if (!json_is_object(rec)) {
        json_decref(rec);
        return 0;
    }
    if (!task_finished(rec)) {
        sel->unfinished++;
        json_decref(rec);
        return 0;
    }
    const char *content_key = json_string_value(json_object_get(rec, "key"));
    if (sel->filtered && (content_key == NULL || !set_has(sel->entry_keys, content_key))) {
        json_decref(rec);
        return 0;
    }
    set_add(sel->task_keys, hex);
    const char *idem =
        json_string_value(json_object_get(json_object_get(rec, "task"), "idempotencyKey"));
    if (idem != NULL) {
        unsigned char idem_key[CACHE_KEY_BYTES];
        char idem_hex[CACHE_KEY_HEX_LEN + 1];
        cache_task_key("idem", idem, idem_key);
        hex_of(idem_key, CACHE_KEY_BYTES, idem_hex);
        set_add(sel->idem_wanted, idem_hex);
    }
    collect_artifacts(sel, data, json_len);
    if (nul != NULL)
        collect_artifacts(sel, nul + 1, len - json_len - 1);
    json_decref(rec);
    return 0;
}

/* The first pass: what goes in. */
static int select_all(struct selection *sel)
{
    if (cache_store_foreach_entry(sel->store, on_select_entry, sel) != 0 ||
        cache_store_foreach_task(sel->store, on_select_task, sel) != 0)
        return -1;
    const char *hex;
    json_t *v;
    json_object_foreach(sel->idem_wanted, hex, v)
    {
        if (set_has(sel->index_keys, hex))
            set_add(sel->task_keys, hex);
    }
    size_t cap = json_object_size(sel->artifact_ids);
    sel->jobs = xcalloc(cap, sizeof *sel->jobs);
    const char *id;
    json_object_foreach(sel->artifact_ids, id, v)
    {
        struct cache_job job;
        enum cache_get_result got = cache_store_get_job(sel->store, id, &job);
        if (got == CACHE_GET_ERROR)
            return -1;
        if (got != CACHE_GET_FOUND)
            continue; /* never captured here (another host, or not stored) */
        sel->jobs[sel->job_count++] = job;
        if (job.state == CACHE_JOB_CAPTURED) {
            char blob_hex[2 * sizeof job.blob + 1];
            hex_of(job.blob, sizeof job.blob, blob_hex);
            set_add(sel->blob_hashes, blob_hex);
        }
    }
    return 0;
}

/* --- writing (the second pass) ------------------------------------------------------ */

/* Headers an entry must never carry out of the store. */
static bool secret_header(const char *name)
{
    static const char *const names[] = {"Authorization", "Proxy-Authorization", "Cookie",
                                        "Set-Cookie"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

struct writing {
    struct selection *sel;
    struct cache_bundle_writer *w;
    uint64_t entries;
    uint64_t tasks;
    uint64_t headers_dropped;
    bool failed;  /* a write failed (the file) */
    bool changed; /* a record taken in the first pass is gone or unreadable */
};

static int on_write_entry(const unsigned char *key, const struct cache_meta *m,
                          const unsigned char *record, size_t len, void *arg)
{
    struct writing *wr = arg;
    char hex[CACHE_KEY_HEX_LEN + 1];
    hex_of(key, CACHE_KEY_BYTES, hex);
    if (!set_has(wr->sel->entry_keys, hex))
        return 0;
    struct cache_entry e;
    if (cache_entry_decode(record, len, &e) != 0) {
        wr->changed = true;
        return 1;
    }
    struct cache_bundle_meta bm = {.stored_at_ms = m->stored_at_ms,
                                   .expires_at_ms = m->expires_at_ms};
    snprintf(bm.provider, sizeof bm.provider, "%s", m->provider);
    size_t secrets = 0;
    for (size_t i = 0; i < e.header_count; i++)
        secrets += secret_header(e.headers[i].name);
    int rc;
    if (secrets == 0) {
        rc = cache_bundle_write_entry(wr->w, key, &bm, record, len);
    } else {
        /* Re-encoded without them: a new record with its own checksum. */
        size_t kept = 0;
        for (size_t i = 0; i < e.header_count; i++) {
            if (secret_header(e.headers[i].name)) {
                free(e.headers[i].name);
                free(e.headers[i].value);
            } else {
                e.headers[kept++] = e.headers[i];
            }
        }
        e.header_count = kept;
        unsigned char *clean = NULL;
        size_t clean_len = 0;
        rc = cache_entry_encode(&e, &clean, &clean_len);
        if (rc == 0)
            rc = cache_bundle_write_entry(wr->w, key, &bm, clean, clean_len);
        free(clean);
        wr->headers_dropped += secrets;
    }
    cache_entry_free(&e);
    if (rc != 0) {
        wr->failed = true;
        return 1;
    }
    wr->entries++;
    return 0;
}

static int on_write_task(const unsigned char *key, const unsigned char *data, size_t len, void *arg)
{
    struct writing *wr = arg;
    char hex[CACHE_KEY_HEX_LEN + 1];
    hex_of(key, CACHE_KEY_BYTES, hex);
    if (!set_has(wr->sel->task_keys, hex))
        return 0;
    if (cache_bundle_write_task(wr->w, key, data, len) != 0) {
        wr->failed = true;
        return 1;
    }
    wr->tasks++;
    return 0;
}

static int on_sink(const void *data, size_t len, void *arg)
{
    return fwrite(data, 1, len, arg) == len ? 0 : -1;
}

/* The second pass into fp. Returns 0, 1 (the store changed since the
 * first: start over) or -1 (err says why). */
static int write_all(struct selection *sel, FILE *fp, const json_t *info, struct writing *wr,
                     char *err, size_t err_size)
{
    struct cache_bundle_counts counts = {json_object_size(sel->entry_keys),
                                         json_object_size(sel->task_keys), sel->job_count,
                                         json_object_size(sel->blob_hashes)};
    memset(wr, 0, sizeof *wr);
    wr->sel = sel;
    wr->w = cache_bundle_writer_new(on_sink, fp, &counts, info, err, err_size);
    if (wr->w == NULL)
        return -1;
    int rc = 0;
    if (cache_store_foreach_entry(sel->store, on_write_entry, wr) != 0 ||
        cache_store_foreach_task(sel->store, on_write_task, wr) != 0) {
        snprintf(err, err_size, "cannot read the store");
        rc = -1;
    }
    if (rc == 0 && !wr->failed && !wr->changed &&
        (wr->entries != counts.entries || wr->tasks != counts.tasks))
        wr->changed = true;
    for (size_t i = 0; rc == 0 && !wr->failed && !wr->changed && i < sel->job_count; i++)
        if (cache_bundle_write_job(wr->w, &sel->jobs[i]) != 0)
            wr->failed = true;
    const char *hex;
    json_t *v;
    json_object_foreach(sel->blob_hashes, hex, v)
    {
        if (rc != 0 || wr->failed || wr->changed)
            break;
        unsigned char hash[32], *gzip = NULL;
        size_t gzip_len = 0;
        if (unhex(hex, hash, sizeof hash) != 0 ||
            cache_store_get_blob(sel->store, hash, &gzip, &gzip_len) != CACHE_GET_FOUND) {
            wr->changed = true;
            break;
        }
        if (cache_bundle_write_blob(wr->w, hash, gzip, gzip_len) != 0)
            wr->failed = true;
        free(gzip);
    }
    if (rc == 0 && wr->changed)
        rc = 1;
    if (rc == 0 && wr->failed) {
        snprintf(err, err_size, "cannot write the bundle: %s", strerror(errno ? errno : EIO));
        rc = -1;
    }
    if (rc == 0 && cache_bundle_writer_finish(wr->w, err, err_size) != 0)
        rc = -1;
    cache_bundle_writer_free(wr->w);
    wr->w = NULL;
    return rc;
}

static void export_usage(FILE *out)
{
    fprintf(out, "Usage:\n"
                 "  cloro-proxy export -o FILE [--provider P] [--since TIME] [--match REGEX]\n"
                 "                     [--config FILE | --cache-dir DIR]\n"
                 "    TIME: 2026-11-22, 2026-11-22T10:00:00Z, or a duration ago: 30m, 24h, 7d\n"
                 "    REGEX: POSIX extended, on the prompt (or query) of each cached request\n");
}

static char *iso_or_null(int64_t ms, bool present, char *buf, size_t size)
{
    return present ? (char *)clock_format_iso8601(buf, size, ms) : NULL;
}

int cli_export_main(int argc, char **argv)
{
    enum { OPT_CACHE_DIR = 1000, OPT_PROVIDER, OPT_SINCE, OPT_MATCH };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"output", required_argument, NULL, 'o'},
        {"provider", required_argument, NULL, OPT_PROVIDER},
        {"since", required_argument, NULL, OPT_SINCE},
        {"match", required_argument, NULL, OPT_MATCH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *cache_dir = NULL, *output = NULL, *provider = NULL,
               *since = NULL, *match = NULL;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_CACHE_DIR:
            cache_dir = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case OPT_PROVIDER:
            provider = optarg;
            break;
        case OPT_SINCE:
            since = optarg;
            break;
        case OPT_MATCH:
            match = optarg;
            break;
        case 'h':
            export_usage(stdout);
            return 0;
        default:
            export_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc || output == NULL) {
        if (output == NULL)
            fprintf(stderr, "cloro-proxy: export: say where to write the bundle: -o FILE\n");
        export_usage(stderr);
        return EXIT_USAGE;
    }
    if (provider != NULL && !provider_known(provider)) {
        fprintf(stderr,
                "cloro-proxy: --provider: '%s' is not a provider (chatgpt, gemini, grok, "
                "copilot, perplexity, aimode, google, google/news, google/goto)\n",
                provider);
        return EXIT_USAGE;
    }
    int64_t now = clock_wall_ms(), since_ms = 0;
    if (since != NULL && parse_since(since, now, &since_ms) != 0) {
        fprintf(stderr,
                "cloro-proxy: --since: expected a date or time (2026-11-22, "
                "2026-11-22T10:00:00Z) or a duration ago (30m, 24h, 7d), got '%s'\n",
                since);
        return EXIT_USAGE;
    }
    regex_t re;
    if (match != NULL) {
        int rc = regcomp(&re, match, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[256];
            regerror(rc, &re, why, sizeof why);
            fprintf(stderr, "cloro-proxy: --match: not a POSIX extended regex: %s\n", why);
            return EXIT_USAGE;
        }
    }

    char dir[4096];
    int status;
    struct cache_store *store = cli_store_open(config_path, cache_dir, dir, sizeof dir, &status);
    if (store == NULL) {
        if (match != NULL)
            regfree(&re);
        return status;
    }

    char created[40], since_iso[40], version[64];
    snprintf(version, sizeof version, "cloro-proxy %s", CLORO_VERSION);
    json_t *info = json_pack("{s:s, s:s, s:{s:s?, s:s?, s:s?}}", "created_at",
                             clock_format_iso8601(created, sizeof created, now), "tool", version,
                             "filters", "provider", provider, "since",
                             iso_or_null(since_ms, since != NULL, since_iso, sizeof since_iso),
                             "match", match);

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", output);
    struct selection sel = {.provider = provider,
                            .has_since = since != NULL,
                            .since_ms = since_ms,
                            .match = match != NULL ? &re : NULL,
                            .filtered = provider != NULL || since != NULL || match != NULL,
                            .store = store};
    struct writing wr;
    char err[2 * sizeof tmp + 512] = ""; /* room for two paths */
    status = 1;
    for (int attempt = 0; attempt < EXPORT_ATTEMPTS; attempt++) {
        selection_init(&sel);
        if (select_all(&sel) != 0) {
            snprintf(err, sizeof err, "cannot read the cache at '%s'", dir);
            selection_deinit(&sel);
            break;
        }
        int fd = mkstemp(tmp);
        FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (fp == NULL) {
            snprintf(err, sizeof err, "cannot create '%s': %s", tmp, strerror(errno));
            if (fd >= 0)
                close(fd);
            selection_deinit(&sel);
            break;
        }
        int rc = write_all(&sel, fp, info, &wr, err, sizeof err);
        if (rc == 0 && (fflush(fp) != 0 || fsync(fileno(fp)) != 0)) {
            snprintf(err, sizeof err, "cannot write '%s': %s", tmp, strerror(errno));
            rc = -1;
        }
        if (fclose(fp) != 0 && rc == 0) {
            snprintf(err, sizeof err, "cannot write '%s': %s", tmp, strerror(errno));
            rc = -1;
        }
        if (rc == 0 && rename(tmp, output) != 0) {
            snprintf(err, sizeof err, "cannot rename '%s' to '%s': %s", tmp, output,
                     strerror(errno));
            rc = -1;
        }
        if (rc != 0)
            unlink(tmp);
        if (rc == 0) {
            struct stat st;
            long long bytes = stat(output, &st) == 0 ? (long long)st.st_size : -1;
            printf("exported %zu entries, %zu tasks, %zu artifact jobs and %zu blobs to %s "
                   "(%lld bytes)\n",
                   json_object_size(sel.entry_keys), json_object_size(sel.task_keys), sel.job_count,
                   json_object_size(sel.blob_hashes), output, bytes);
            if (sel.without_request > 0)
                fprintf(stderr,
                        "note: %llu entries were stored before requests were kept with "
                        "answers: --match cannot see them (--provider and --since can)\n",
                        (unsigned long long)sel.without_request);
            if (sel.unfinished > 0)
                fprintf(stderr, "note: %llu async tasks still running were left out\n",
                        (unsigned long long)sel.unfinished);
            if (sel.corrupt > 0)
                fprintf(stderr, "note: %llu entries failing their checksum were left out\n",
                        (unsigned long long)sel.corrupt);
            if (wr.headers_dropped > 0)
                fprintf(stderr,
                        "note: %llu Authorization, Proxy-Authorization, Cookie or Set-Cookie "
                        "headers were dropped from entries\n",
                        (unsigned long long)wr.headers_dropped);
            status = 0;
        }
        selection_deinit(&sel);
        if (rc != 1)
            break;
        snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", output);
        snprintf(err, sizeof err,
                 "the cache kept changing while it was read (a running proxy evicting or "
                 "purging); try again");
    }
    if (status != 0)
        fprintf(stderr, "cloro-proxy: export: %s\n", err);
    json_decref(info);
    cache_store_close(store);
    if (match != NULL)
        regfree(&re);
    return status;
}

/* --- import ------------------------------------------------------------------------- */

static void import_usage(FILE *out)
{
    fprintf(out, "Usage:\n"
                 "  cloro-proxy import FILE [--overwrite] [--config FILE | --cache-dir DIR]\n"
                 "    merges a bundle made by 'cloro-proxy export' into the cache (in one\n"
                 "    transaction; the proxy may be running); keys already there are kept\n"
                 "    unless --overwrite\n");
}

/* The whole file, new buffer. */
static unsigned char *read_file(const char *path, size_t *len, char *err, size_t err_size)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        snprintf(err, err_size, "cannot open it: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, used = 0;
    unsigned char *buf = malloc(cap);
    while (buf != NULL) {
        if (used == cap) {
            unsigned char *grown = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t n = fread(buf + used, 1, cap - used, fp);
        used += n;
        if (n == 0)
            break;
    }
    bool bad = buf == NULL || ferror(fp);
    int saved = errno;
    fclose(fp);
    if (bad) {
        free(buf);
        snprintf(err, err_size, "cannot read it: %s",
                 buf == NULL ? "out of memory" : strerror(saved));
        return NULL;
    }
    *len = used;
    return buf;
}

/* What the proxy will find in a task record (proxy/tasks.c): JSON with a
 * "task" whose id names its key; or an index entry, a task id. */
static int check_task(const struct cache_bundle_item *it, char *err, size_t err_size)
{
    const unsigned char *nul = memchr(it->data, '\0', it->len);
    if (it->data[0] != '{') {
        if (nul == NULL && it->len < INDEX_RECORD_MAX)
            return 0;
        snprintf(err, err_size, "bad task at byte %llu: neither a task record nor an index entry",
                 (unsigned long long)it->offset);
        return -1;
    }
    size_t json_len = nul != NULL ? (size_t)(nul - it->data) : it->len;
    json_t *rec = json_loadb((const char *)it->data, json_len, 0, NULL);
    const char *id = json_string_value(json_object_get(json_object_get(rec, "task"), "id"));
    unsigned char key[CACHE_KEY_BYTES];
    bool ok = id != NULL;
    if (ok) {
        cache_task_key("id", id, key);
        ok = memcmp(key, it->key, CACHE_KEY_BYTES) == 0;
    }
    json_decref(rec);
    if (!ok) {
        snprintf(err, err_size,
                 "bad task at byte %llu: not a task record, or its key is not its task's",
                 (unsigned long long)it->offset);
        return -1;
    }
    return 0;
}

/* Opens the target store; a new one (no data file yet) gets the configured
 * bound, or twice the bundle if larger, as its map. */
static struct cache_store *open_target(const char *config_path, const char *cache_dir,
                                       size_t bundle_bytes, char *dir, size_t dir_size, int *status)
{
    struct config cfg;
    config_init(&cfg);
    struct config_errors errs = {0};
    if (config_path != NULL)
        config_load_file(&cfg, config_path, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "cloro-proxy: %s\n", errs.lines[i]);
    *status = errs.count > 0 ? EXIT_USAGE : 0;
    config_errors_free(&errs);
    snprintf(dir, dir_size, "%s", cache_dir != NULL ? cache_dir : cfg.cache_dir);
    size_t bound = cfg.max_cache_bytes;
    config_deinit(&cfg);
    if (*status != 0)
        return NULL;
    char data[4200];
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    struct stat st;
    bool fresh = stat(data, &st) != 0;
    size_t want =
        bundle_bytes <= SIZE_MAX / IMPORT_MAP_FACTOR ? bundle_bytes * IMPORT_MAP_FACTOR : SIZE_MAX;
    struct cache_store_options so = {.dir = dir,
                                     .max_bytes = !fresh         ? 0
                                                  : want > bound ? want
                                                                 : bound};
    char err[512];
    struct cache_store *store = cache_store_open(&so, err, sizeof err);
    if (store == NULL) {
        fprintf(stderr, "cloro-proxy: %s\n", err);
        *status = 1;
    }
    return store;
}

static void print_counts(const char *what, const struct cache_import_counts *c)
{
    printf("  %-14s %llu added, %llu kept, %llu replaced\n", what, (unsigned long long)c->added,
           (unsigned long long)c->kept, (unsigned long long)c->replaced);
}

int cli_import_main(int argc, char **argv)
{
    enum { OPT_CACHE_DIR = 1000, OPT_OVERWRITE };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"overwrite", no_argument, NULL, OPT_OVERWRITE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *cache_dir = NULL;
    enum cache_import_policy policy = CACHE_IMPORT_KEEP;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_CACHE_DIR:
            cache_dir = optarg;
            break;
        case OPT_OVERWRITE:
            policy = CACHE_IMPORT_OVERWRITE;
            break;
        case 'h':
            import_usage(stdout);
            return 0;
        default:
            import_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "cloro-proxy: import: name one bundle file\n");
        import_usage(stderr);
        return EXIT_USAGE;
    }
    const char *path = argv[optind];

    /* Everything is read and checked before the store is even opened. */
    char err[512] = "";
    size_t len = 0;
    unsigned char *file = read_file(path, &len, err, sizeof err);
    struct cache_bundle b;
    memset(&b, 0, sizeof b);
    int rc = file != NULL ? cache_bundle_read(file, len, &b, err, sizeof err) : -1;
    free(file);
    for (size_t i = 0; rc == 0 && i < b.count; i++)
        if (b.items[i].type == CACHE_BUNDLE_TASK)
            rc = check_task(&b.items[i], err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "cloro-proxy: import: %s: %s; nothing was imported\n", path, err);
        cache_bundle_free(&b);
        return 1;
    }

    char dir[4096];
    int status;
    struct cache_store *store =
        open_target(config_path, cache_dir, b.raw_len, dir, sizeof dir, &status);
    if (store == NULL) {
        cache_bundle_free(&b);
        return status;
    }
    struct cache_import_item *items = xcalloc(b.count, sizeof *items);
    for (size_t i = 0; i < b.count; i++) {
        const struct cache_bundle_item *it = &b.items[i];
        struct cache_import_item *to = &items[i];
        to->key = it->key;
        to->data = it->data;
        to->len = it->len;
        switch (it->type) {
        case CACHE_BUNDLE_ENTRY:
            to->kind = CACHE_IMPORT_ENTRY;
            to->stored_at_ms = it->meta.stored_at_ms;
            to->expires_at_ms = it->meta.expires_at_ms;
            to->provider = it->meta.provider;
            break;
        case CACHE_BUNDLE_TASK:
            to->kind = CACHE_IMPORT_TASK;
            break;
        case CACHE_BUNDLE_JOB:
            to->kind = CACHE_IMPORT_JOB;
            to->job = &it->job;
            break;
        default:
            to->kind = CACHE_IMPORT_BLOB;
            break;
        }
    }
    struct cache_import_result res;
    rc = cache_store_import(store, items, b.count, policy, clock_wall_ms(), &res, err, sizeof err);
    free(items);
    cache_store_close(store);
    if (rc != 0) {
        fprintf(stderr, "cloro-proxy: import: %s into '%s': %s\n", path, dir, err);
        cache_bundle_free(&b);
        return 1;
    }
    const char *created = json_string_value(json_object_get(b.header, "created_at"));
    printf("imported %s (made %s) into %s:\n", path, created != NULL ? created : "(unknown)", dir);
    print_counts("entries:", &res.entries);
    print_counts("tasks:", &res.tasks);
    print_counts("artifact jobs:", &res.jobs);
    print_counts("blobs:", &res.blobs);
    cache_bundle_free(&b);
    return 0;
}
