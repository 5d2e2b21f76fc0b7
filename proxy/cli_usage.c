/* cli_usage.c: the usage command. It builds the same report as
 * /_proxy/usage (usage_report), from the store alone, and prints one line
 * per member, provider and day, then the totals; --json prints the report
 * itself. The store is opened like `cache` does. */
#include "cli_usage.h"
#include "admin_usage.h"
#include "clock.h"
#include "cli_store.h"
#include "store.h"
#include "usage.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out, "Usage:\n"
                 "  cloro-proxy usage [--member NAME] [--since YYYY-MM-DD] [--json]\n"
                 "                    [--config FILE | --cache-dir DIR]\n"
                 "  Usage per member, provider and UTC day since --since (default today);\n"
                 "  member - is requests made without a member (auth open).\n");
}

static const enum usage_counter columns[] = {USAGE_REQUESTS,
                                             USAGE_HITS,
                                             USAGE_COALESCED,
                                             USAGE_UPSTREAM_CALLS,
                                             USAGE_CREDITS_CHARGED,
                                             USAGE_CREDITS_SAVED_CACHE,
                                             USAGE_CREDITS_SAVED_ASYNC,
                                             USAGE_ERRORS,
                                             USAGE_BYTES_IN,
                                             USAGE_BYTES_OUT};
static const char *const headings[] = {"REQUESTS", "HITS",        "COALESCED",   "UPSTREAM",
                                       "CHARGED",  "SAVED_CACHE", "SAVED_ASYNC", "ERRORS",
                                       "BYTES_IN", "BYTES_OUT"};
#define COLUMNS (sizeof columns / sizeof columns[0])

static void print_line(const char *day, const char *member, const char *provider,
                       const json_t *counters)
{
    printf("%-10s  %-20s  %-12s", day, member, provider);
    for (size_t i = 0; i < COLUMNS; i++)
        printf("  %*lld", (int)strlen(headings[i]) > 8 ? (int)strlen(headings[i]) : 8,
               (long long)json_integer_value(
                   json_object_get(counters, usage_counter_name(columns[i]))));
    printf("\n");
}

static void print_table(const json_t *report)
{
    printf("%-10s  %-20s  %-12s", "DAY", "MEMBER", "PROVIDER");
    for (size_t i = 0; i < COLUMNS; i++)
        printf("  %*s", (int)strlen(headings[i]) > 8 ? (int)strlen(headings[i]) : 8, headings[i]);
    printf("\n");
    const char *member, *provider, *day;
    json_t *m, *p, *d;
    json_object_foreach(json_object_get(report, "members"), member, m)
    {
        json_object_foreach(json_object_get(m, "providers"), provider, p)
        {
            json_object_foreach(json_object_get(p, "days"), day, d)
            {
                print_line(day, member, provider, d);
            }
        }
    }
    print_line("TOTAL", "", "", json_object_get(report, "totals"));
}

int cli_usage_main(int argc, char **argv)
{
    enum { OPT_CACHE_DIR = 1000, OPT_MEMBER, OPT_SINCE, OPT_JSON };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"member", required_argument, NULL, OPT_MEMBER},
        {"since", required_argument, NULL, OPT_SINCE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *cache_dir = NULL, *member = NULL, *since = NULL;
    bool as_json = false;
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
        case OPT_MEMBER:
            member = optarg;
            break;
        case OPT_SINCE:
            since = optarg;
            break;
        case OPT_JSON:
            as_json = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (member != NULL && !admin_usage_member_valid(member)) {
        fprintf(stderr,
                "cloro-proxy: --member: '%s' is not a member's name (1-63 of A-Z a-z "
                "0-9 . _ -, or - for requests made without one)\n",
                member);
        return EXIT_USAGE;
    }
    if (since != NULL && !usage_day_valid(since)) {
        fprintf(stderr, "cloro-proxy: --since: expected a UTC day as YYYY-MM-DD, got '%s'\n",
                since);
        return EXIT_USAGE;
    }
    int64_t now = clock_wall_ms();
    char today[USAGE_DAY_LEN + 1];
    usage_day(now, today);

    char dir[4096];
    int status;
    struct cache_store *store = cli_store_open(config_path, cache_dir, dir, sizeof dir, &status);
    if (store == NULL)
        return status;
    json_t *report = usage_report(NULL, store, member, since != NULL ? since : today, now);
    cache_store_close(store);
    if (report == NULL) {
        fprintf(stderr, "cloro-proxy: cannot read the usage counters in '%s'\n", dir);
        return 1;
    }
    if (as_json) {
        char *text = json_dumps(report, JSON_INDENT(2));
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        print_table(report);
    }
    json_decref(report);
    return 0;
}
