/* cli_cache.c: the cache commands of the command line. They open the store
 * without a map size, adopting the one the running server set, and change it
 * only through cache_store_purge (one durable txn; LMDB serializes it with
 * the server's writer). Output is for people: aligned columns, ISO times.
 * `ls` groups the samples of one request (X-Cache-Sample, key.h): sample 1
 * first, then the others indented under it, each with "K of N". */
#include "cli_cache.h"
#include "clock.h"
#include "cli_store.h"
#include "cli_verify.h"
#include "config.h"
#include "entry.h"
#include "key.h"
#include "policy.h"
#include "store.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out, "Usage:\n"
                 "  cloro-proxy cache stats [--config FILE | --cache-dir DIR]\n"
                 "  cloro-proxy cache ls    [--config FILE | --cache-dir DIR] [--provider P]\n"
                 "  cloro-proxy cache show KEY [--config FILE | --cache-dir DIR]\n"
                 "  cloro-proxy cache verify [--list] [--config FILE | --cache-dir DIR]\n"
                 "  cloro-proxy cache purge (--all | --provider P | --older-than DURATION)\n"
                 "                          [--config FILE | --cache-dir DIR]\n");
}

static const char *iso(char *buf, size_t size, int64_t ms)
{
    if (ms == 0)
        return "-";
    return clock_format_iso8601(buf, size, ms);
}

static int cmd_stats(struct cache_store *store, const char *dir)
{
    struct cache_store_stats st;
    if (cache_store_stats(store, &st) != 0) {
        fprintf(stderr, "cloro-proxy: cannot read the cache's stats\n");
        return 1;
    }
    printf("cache:      %s\n"
           "entries:    %llu\n"
           "bytes:      %llu of %llu (%.1f%%)\n"
           "map:        %llu bytes\n"
           "evictions:  %llu\n"
           "dropped:    %llu\n",
           dir, (unsigned long long)st.entries, (unsigned long long)st.bytes,
           (unsigned long long)st.max_bytes,
           st.max_bytes > 0 ? 100.0 * (double)st.bytes / (double)st.max_bytes : 0.0,
           (unsigned long long)st.map_bytes, (unsigned long long)st.evictions,
           (unsigned long long)st.dropped);
    return 0;
}

struct ls_row {
    unsigned char key[CACHE_KEY_BYTES];
    struct cache_meta m;
};

struct ls_ctx {
    const char *provider;
    struct ls_row *rows;
    size_t count, cap;
};

static int on_ls(const unsigned char *key, const struct cache_meta *m, void *arg)
{
    struct ls_ctx *ctx = arg;
    if (ctx->provider != NULL && strcmp(ctx->provider, m->provider) != 0)
        return 0;
    if (ctx->count == ctx->cap) {
        ctx->cap = ctx->cap > 0 ? 2 * ctx->cap : 256;
        ctx->rows = realloc(ctx->rows, ctx->cap * sizeof *ctx->rows);
        if (ctx->rows == NULL)
            abort();
    }
    struct ls_row *row = &ctx->rows[ctx->count++];
    memcpy(row->key, key, CACHE_KEY_BYTES);
    row->m = *m;
    return 0;
}

/* The key a row is grouped under: sample 1's (its own, unless a sample). */
static const unsigned char *group_of(const struct ls_row *row)
{
    return row->m.sample >= 2 ? row->m.base_key : row->key;
}

static uint32_t sample_of(const struct ls_row *row)
{
    return row->m.sample >= 2 ? row->m.sample : 1;
}

/* By group (keys in order, as before samples), then by sample number. */
static int by_group(const void *a, const void *b)
{
    const struct ls_row *ra = a, *rb = b;
    int c = memcmp(group_of(ra), group_of(rb), CACHE_KEY_BYTES);
    if (c != 0)
        return c;
    uint32_t sa = sample_of(ra), sb = sample_of(rb);
    return sa < sb ? -1 : sa > sb;
}

static void print_row(const struct ls_row *row, size_t group_size)
{
    const struct cache_meta *m = &row->m;
    char hex[CACHE_KEY_HEX_LEN + 1];
    for (int i = 0; i < CACHE_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", row->key[i]);
    char sample[48] = "-";
    if (group_size > 1 || m->sample >= 2)
        snprintf(sample, sizeof sample, "%lu of %zu", (unsigned long)sample_of(row), group_size);
    char stored[32], expires[32], last[32];
    printf("%s%-*s  %-12s %-11s %8llu %6llu  %-24s  %-24s  %s\n", m->sample >= 2 ? "  " : "",
           m->sample >= 2 ? CACHE_KEY_HEX_LEN : CACHE_KEY_HEX_LEN + 2, hex, m->provider, sample,
           (unsigned long long)m->size, (unsigned long long)m->hits,
           iso(stored, sizeof stored, m->stored_at_ms),
           m->expires_at_ms == 0 ? "never" : iso(expires, sizeof expires, m->expires_at_ms),
           iso(last, sizeof last, m->last_hit_ms));
}

static int cmd_ls(struct cache_store *store, const char *provider)
{
    struct ls_ctx ctx = {.provider = provider};
    if (cache_store_foreach(store, on_ls, &ctx) != 0) {
        fprintf(stderr, "cloro-proxy: cannot list the cache\n");
        free(ctx.rows);
        return 1;
    }
    if (ctx.count > 1)
        qsort(ctx.rows, ctx.count, sizeof *ctx.rows, by_group);
    printf("%-66s  %-12s %-11s %8s %6s  %-24s  %-24s  %s\n", "KEY", "PROVIDER", "SAMPLE", "BYTES",
           "HITS", "STORED", "EXPIRES", "LAST HIT");
    size_t groups = 0, sampled = 0;
    for (size_t i = 0; i < ctx.count;) {
        size_t n = 1;
        while (i + n < ctx.count &&
               memcmp(group_of(&ctx.rows[i]), group_of(&ctx.rows[i + n]), CACHE_KEY_BYTES) == 0)
            n++;
        if (n > 1 || ctx.rows[i].m.sample >= 2) {
            groups++;
            sampled += n;
        }
        for (size_t j = 0; j < n; j++)
            print_row(&ctx.rows[i + j], n);
        i += n;
    }
    fflush(stdout); /* the rows before the count, also when both go to one pipe */
    fprintf(stderr, "%zu entr%s", ctx.count, ctx.count == 1 ? "y" : "ies");
    if (groups > 0)
        fprintf(stderr, " (%zu of them samples of %zu request%s)", sampled, groups,
                groups == 1 ? "" : "s");
    fprintf(stderr, "\n");
    free(ctx.rows);
    return 0;
}

static int cmd_show(struct cache_store *store, const char *hex)
{
    struct cache_key key;
    if (cache_key_parse_hex(hex, &key) != 0) {
        fprintf(stderr, "cloro-proxy: '%s' is not a cache key (64 hexadecimal digits)\n", hex);
        return EXIT_USAGE;
    }
    struct cache_entry e;
    struct cache_meta m;
    enum cache_get_result got = cache_store_get(store, key.bytes, &e, &m);
    if (got == CACHE_GET_ABSENT) {
        fprintf(stderr, "cloro-proxy: no entry %s\n", key.hex);
        return 1;
    }
    if (got != CACHE_GET_FOUND) {
        fprintf(stderr, "cloro-proxy: entry %s cannot be read (%s)\n", key.hex,
                got == CACHE_GET_CORRUPT ? "checksum mismatch" : "store error");
        return 1;
    }
    int64_t now = clock_wall_ms();
    char stored[32], expires[32], last[32];
    char base[CACHE_KEY_HEX_LEN + 1] = "";
    for (int i = 0; e.sample >= 2 && i < CACHE_KEY_BYTES; i++)
        snprintf(base + 2 * i, 3, "%02x", e.base_key[i]);
    char sample[128];
    if (e.sample >= 2)
        snprintf(sample, sizeof sample, "%lu (sample 1: %s)", (unsigned long)e.sample, base);
    else
        snprintf(sample, sizeof sample, "1");
    printf("key:             %s\n"
           "provider:        %s\n"
           "sample:          %s\n"
           "status:          %d\n"
           "stored at:       %s (age %llds)\n"
           "expires at:      %s\n"
           "hits:            %llu (last %s)\n"
           "credits charged: %lld\n"
           "request id:      %s\n",
           key.hex, e.provider, sample, e.status, iso(stored, sizeof stored, e.stored_at_ms),
           (long long)cache_policy_age_s(e.stored_at_ms, now),
           e.expires_at_ms == 0 ? "never" : iso(expires, sizeof expires, e.expires_at_ms),
           (unsigned long long)m.hits, iso(last, sizeof last, m.last_hit_ms),
           (long long)e.credits_charged, e.request_id[0] != '\0' ? e.request_id : "-");
    if (e.request != NULL && e.request[0] != '\0')
        printf("request:         %s\n", e.request); /* what export --match reads */
    for (size_t i = 0; i < e.header_count; i++)
        printf("header:          %s: %s\n", e.headers[i].name, e.headers[i].value);
    printf("\n");
    fwrite(e.body, 1, e.body_len, stdout);
    printf("\n");
    cache_entry_free(&e);
    return 0;
}

static int cmd_purge(struct cache_store *store, bool all, const char *provider,
                     const char *older_than)
{
    int64_t before = 0;
    if (older_than != NULL) {
        int64_t ms;
        if (config_parse_duration_ms(older_than, &ms) != 0) {
            fprintf(stderr,
                    "cloro-proxy: --older-than: expected a duration like 30m or 7d... "
                    "(ms, s, m, h), got '%s'\n",
                    older_than);
            return EXIT_USAGE;
        }
        before = clock_wall_ms() - ms;
    }
    if (!all && provider == NULL && older_than == NULL) {
        fprintf(stderr, "cloro-proxy: cache purge: say what to purge: --all, --provider P or "
                        "--older-than DURATION\n");
        return EXIT_USAGE;
    }
    int64_t n = cache_store_purge(store, provider, before);
    if (n < 0) {
        fprintf(stderr, "cloro-proxy: purge failed: store error\n");
        return 1;
    }
    printf("purged %lld entr%s\n", (long long)n, n == 1 ? "y" : "ies");
    return 0;
}

int cli_cache_main(int argc, char **argv)
{
    enum { OPT_CACHE_DIR = 1000, OPT_PROVIDER, OPT_OLDER_THAN, OPT_ALL, OPT_LIST };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"provider", required_argument, NULL, OPT_PROVIDER},
        {"older-than", required_argument, NULL, OPT_OLDER_THAN},
        {"all", no_argument, NULL, OPT_ALL},
        {"list", no_argument, NULL, OPT_LIST},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    const char *config_path = NULL, *cache_dir = NULL, *provider = NULL, *older_than = NULL;
    bool all = false, list = false;
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_CACHE_DIR:
            cache_dir = optarg;
            break;
        case OPT_PROVIDER:
            provider = optarg;
            break;
        case OPT_OLDER_THAN:
            older_than = optarg;
            break;
        case OPT_ALL:
            all = true;
            break;
        case OPT_LIST:
            list = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    bool show = strcmp(sub, "show") == 0;
    if ((show && optind != argc - 1) || (!show && optind != argc)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    bool verify = strcmp(sub, "verify") == 0;
    if (strcmp(sub, "stats") != 0 && strcmp(sub, "ls") != 0 && !show && !verify &&
        strcmp(sub, "purge") != 0) {
        fprintf(stderr, "cloro-proxy: unknown cache command '%s'\n", sub);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (provider != NULL) {
        char path[64];
        snprintf(path, sizeof path, "/v1/monitor/%s", provider);
        if (cache_key_provider("POST", path) == NULL) {
            fprintf(stderr,
                    "cloro-proxy: --provider: '%s' is not a provider (chatgpt, gemini, "
                    "grok, copilot, perplexity, aimode, google, google/news, "
                    "google/goto)\n",
                    provider);
            return EXIT_USAGE;
        }
    }

    char dir[4096];
    int status;
    struct cache_store *store = cli_store_open(config_path, cache_dir, dir, sizeof dir, &status);
    if (store != NULL) {
        if (strcmp(sub, "stats") == 0)
            status = cmd_stats(store, dir);
        else if (strcmp(sub, "ls") == 0)
            status = cmd_ls(store, provider);
        else if (show)
            status = cmd_show(store, argv[optind]);
        else if (verify)
            status = cli_verify_store(store, list);
        else
            status = cmd_purge(store, all, provider, older_than);
        cache_store_close(store);
    }
    return status;
}
