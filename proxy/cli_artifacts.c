/* cli_artifacts.c: the artifact commands of the command line. ls lists the
 * download jobs, get writes a captured page (inflated) to stdout, retry puts
 * lost jobs back in the queue (a running server picks them up within its
 * next rescan, at most 30 s). The store is opened like `cache` does. */
#include "cli_artifacts.h"
#include "clock.h"
#include "cli_store.h"
#include "store.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out, "Usage:\n"
                 "  cloro-proxy artifacts ls [--state pending|captured|lost]\n"
                 "  cloro-proxy artifacts get ID          the captured page on stdout\n"
                 "  cloro-proxy artifacts retry (ID | --all-lost)\n"
                 "  each with [--config FILE | --cache-dir DIR]\n");
}

static const char *state_name(enum cache_job_state s)
{
    static const char *const names[] = {"pending", "captured", "lost"};
    return names[s];
}

struct ls_ctx {
    int state; /* -1: any */
    size_t shown;
};

static int on_ls(const struct cache_job *job, void *arg)
{
    struct ls_ctx *ctx = arg;
    if (ctx->state >= 0 && (int)job->state != ctx->state)
        return 0;
    char expires[32];
    clock_format_iso8601(expires, sizeof expires, job->expires_ms);
    printf("%-52s %-9s %8u %10llu  %s  %s\n", job->id, state_name(job->state), job->attempts,
           (unsigned long long)job->size, expires, job->url);
    ctx->shown++;
    return 0;
}

static int cmd_get(struct cache_store *store, const char *id)
{
    struct cache_job job;
    if (cache_store_get_job(store, id, &job) != CACHE_GET_FOUND) {
        fprintf(stderr, "cloro-proxy: no artifact %s\n", id);
        return 1;
    }
    if (job.state != CACHE_JOB_CAPTURED) {
        fprintf(stderr, "cloro-proxy: artifact %s is %s%s%s\n", id, state_name(job.state),
                job.note[0] != '\0' ? ": " : "", job.note);
        return 1;
    }
    unsigned char *gzip = NULL;
    size_t len = 0;
    if (cache_store_get_blob(store, job.blob, &gzip, &len) != CACHE_GET_FOUND) {
        fprintf(stderr, "cloro-proxy: the stored copy of %s cannot be read\n", id);
        return 1;
    }
    z_stream z = {0};
    int rc = inflateInit2(&z, 15 + 16);
    z.next_in = gzip;
    z.avail_in = (uInt)len;
    unsigned char chunk[16384];
    while (rc == Z_OK) {
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_OK || rc == Z_STREAM_END)
            fwrite(chunk, 1, sizeof chunk - z.avail_out, stdout);
    }
    inflateEnd(&z);
    free(gzip);
    if (rc != Z_STREAM_END) {
        fprintf(stderr, "cloro-proxy: the stored copy of %s is damaged\n", id);
        return 1;
    }
    return 0;
}

struct retry_ctx {
    struct cache_job *jobs;
    size_t count, cap;
};

static int on_lost(const struct cache_job *job, void *arg)
{
    struct retry_ctx *ctx = arg;
    if (job->state != CACHE_JOB_LOST)
        return 0;
    if (ctx->count == ctx->cap) {
        ctx->cap = ctx->cap == 0 ? 64 : ctx->cap * 2;
        ctx->jobs = realloc(ctx->jobs, ctx->cap * sizeof *ctx->jobs);
        if (ctx->jobs == NULL)
            abort();
    }
    ctx->jobs[ctx->count++] = *job;
    return 0;
}

static int cmd_retry(struct cache_store *store, const char *id)
{
    struct retry_ctx ctx = {0};
    if (id != NULL) {
        struct cache_job job;
        if (cache_store_get_job(store, id, &job) != CACHE_GET_FOUND) {
            fprintf(stderr, "cloro-proxy: no artifact %s\n", id);
            return 1;
        }
        if (job.state == CACHE_JOB_CAPTURED) {
            printf("%s is captured already\n", id);
            return 0;
        }
        job.state = CACHE_JOB_LOST; /* pending ones too: made due at once */
        on_lost(&job, &ctx);
    } else if (cache_store_foreach_job(store, on_lost, &ctx) != 0) {
        fprintf(stderr, "cloro-proxy: cannot list the artifacts\n");
        return 1;
    }
    int status = 0;
    for (size_t i = 0; i < ctx.count; i++) {
        /* Once more, whatever its age: the upstream may still have it. */
        struct cache_job *j = &ctx.jobs[i];
        j->state = CACHE_JOB_PENDING;
        j->attempts = 0;
        j->next_attempt_ms = 0;
        snprintf(j->note, sizeof j->note, "retry requested");
        struct cache_op op = {.kind = CACHE_OP_JOB, .jobs = j, .job_count = 1};
        struct cache_apply_result res;
        if (cache_store_apply(store, &op, 1, &res) != 0 || res.applied != 1) {
            fprintf(stderr, "cloro-proxy: could not requeue %s\n", j->id);
            status = 1;
        }
    }
    printf("requeued %zu artifact%s\n", ctx.count, ctx.count == 1 ? "" : "s");
    free(ctx.jobs);
    return status;
}

int cli_artifacts_main(int argc, char **argv)
{
    enum { OPT_CACHE_DIR = 1000, OPT_STATE, OPT_ALL_LOST };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"state", required_argument, NULL, OPT_STATE},
        {"all-lost", no_argument, NULL, OPT_ALL_LOST},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    const char *config_path = NULL, *cache_dir = NULL, *state = NULL;
    bool all_lost = false;
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
        case OPT_STATE:
            state = optarg;
            break;
        case OPT_ALL_LOST:
            all_lost = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *arg = optind < argc ? argv[optind] : NULL;
    bool ok = (strcmp(sub, "ls") == 0 && arg == NULL) ||
              (strcmp(sub, "get") == 0 && arg != NULL && optind == argc - 1) ||
              (strcmp(sub, "retry") == 0 && (arg != NULL) != all_lost && optind >= argc - 1);
    int state_filter = -1;
    if (state != NULL) {
        for (int i = 0; i < 3; i++)
            if (strcmp(state, state_name((enum cache_job_state)i)) == 0)
                state_filter = i;
        ok = ok && state_filter >= 0;
    }
    if (!ok) {
        usage(stderr);
        return EXIT_USAGE;
    }

    char dir[4096];
    int status;
    struct cache_store *store = cli_store_open(config_path, cache_dir, dir, sizeof dir, &status);
    if (store != NULL) {
        if (strcmp(sub, "ls") == 0) {
            struct ls_ctx ctx = {.state = state_filter};
            printf("%-52s %-9s %8s %10s  %-24s  %s\n", "ID", "STATE", "ATTEMPTS", "BYTES",
                   "EXPIRES", "URL");
            status = cache_store_foreach_job(store, on_ls, &ctx) == 0 ? 0 : 1;
            fprintf(stderr, "%zu artifact%s\n", ctx.shown, ctx.shown == 1 ? "" : "s");
        } else if (strcmp(sub, "get") == 0) {
            status = cmd_get(store, arg);
        } else {
            status = cmd_retry(store, all_lost ? NULL : arg);
        }
        cache_store_close(store);
    }
    return status;
}
