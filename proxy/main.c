/* main.c: argv -> subcommand. serve (the default), check-config FILE,
 * show-config, --help, --version. Flags are generated from the config key
 * table, so every key X can be given as --X (underscores as dashes) and a
 * flag always beats the file. No logic of its own beyond that. */
#include "cli_artifacts.h"
#include "cli_cache.h"
#include "cli_export.h"
#include "cli_usage.h"
#include "cli_members.h"
#include "config.h"
#include "log.h"
#include "server.h"

#include <curl/curl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

enum { OPT_CONFIG = 'c', OPT_HELP = 'h', OPT_VERSION = 'V', OPT_KEY_BASE = 1000 };

static void print_usage(FILE *out)
{
    fprintf(out,
            "cloro-proxy %s: a caching reverse proxy for the cloro API\n\n"
            "Usage:\n"
            "  cloro-proxy [serve] [--config FILE] [--KEY VALUE ...]\n"
            "  cloro-proxy check-config FILE    report every problem with its line number\n"
            "  cloro-proxy show-config [--config FILE] [--KEY VALUE ...]\n"
            "                                   print the effective configuration\n"
            "  cloro-proxy cache stats|ls|show KEY|purge ... [--cache-dir DIR]\n"
            "                                   look at or purge the cache, server running or "
            "not\n"
            "  cloro-proxy artifacts ls|get ID|retry ... [--cache-dir DIR]\n"
            "                                   the captured HTML artifacts\n"
            "  cloro-proxy export -o FILE [--provider P] [--since TIME] [--match REGEX]\n"
            "                     [--cache-dir DIR]\n"
            "                                   write answers, task results and artifacts\n"
            "                                   to a portable bundle\n"
            "  cloro-proxy import FILE [--overwrite] [--cache-dir DIR]\n"
            "                                   merge a bundle into the cache (one "
            "transaction)\n"
            "  cloro-proxy usage [--member M] [--since YYYY-MM-DD] [--cache-dir DIR]\n"
            "                                   usage per member, provider and day\n"
            "  cloro-proxy members add NAME [--rate-limit N] [--max-concurrency N]\n"
            "                      [--daily-credit-budget N] [--members-file F | --config FILE]\n"
            "                                   add a member; its token is printed once\n"
            "  cloro-proxy members rm NAME | ls [--members-file F | --config FILE]\n"
            "                                   remove or list the members (never their "
            "hashes)\n"
            "  cloro-proxy --help | --version\n\n"
            "Options:\n"
            "  -c, --config FILE                INI configuration file\n",
            CLORO_VERSION);
    size_t count;
    const struct config_key *keys = config_keys(&count);
    for (size_t i = 0; i < count; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", keys[i].name);
        for (char *p = flag; *p != '\0'; p++)
            if (*p == '_')
                *p = '-';
        fprintf(out, "      %-29s%s (default: %s)\n", flag, keys[i].help,
                keys[i].default_value[0] != '\0' ? keys[i].default_value : "none");
    }
    fprintf(out, "\nThe API key is read from CLORO_API_KEY, else from api_key_file; the admin\n"
                 "token from CLORO_ADMIN_TOKEN, else from admin_token_file.\n"
                 "Exit status: 0 ok, 1 runtime failure, 2 bad configuration or usage.\n");
}

static int print_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "cloro-proxy: %s\n", errs->lines[i]);
    return errs->count > 0 ? EXIT_USAGE : 0;
}

static int check_config(const char *path)
{
    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    config_load_file(&cfg, path, &errs);
    config_finish(&cfg, &errs);
    int status = print_errors(&errs);
    if (status == 0)
        printf("%s: ok\n", path);
    else
        fprintf(stderr, "cloro-proxy: %s: %zu problem%s\n", path, errs.count,
                errs.count == 1 ? "" : "s");
    config_errors_free(&errs);
    config_deinit(&cfg);
    return status;
}

/* Builds getopt's table: --config, --help, --version and one per key. */
static struct option *build_options(char ***names_out, size_t *key_count)
{
    const struct config_key *keys = config_keys(key_count);
    struct option *opts = calloc(*key_count + 4, sizeof *opts);
    char **names = calloc(*key_count, sizeof *names);
    if (opts == NULL || names == NULL)
        abort();
    opts[0] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    opts[1] = (struct option){"help", no_argument, NULL, OPT_HELP};
    opts[2] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    for (size_t i = 0; i < *key_count; i++) {
        names[i] = strdup(keys[i].name);
        if (names[i] == NULL)
            abort();
        for (char *p = names[i]; *p != '\0'; p++)
            if (*p == '_')
                *p = '-';
        opts[3 + i] = (struct option){names[i], required_argument, NULL, OPT_KEY_BASE + (int)i};
    }
    *names_out = names;
    return opts;
}

static void free_options(struct option *opts, char **names, size_t key_count)
{
    for (size_t i = 0; i < key_count; i++)
        free(names[i]);
    free(names);
    free(opts);
}

struct flag_value {
    const char *key;
    const char *value;
};

/* Parses argv into cfg: the file first, then every flag over it. Returns 0
 * to go on, or an exit status (help and version print and return 0 via
 * *done). */
static int parse_args(int argc, char **argv, struct config *cfg, int *done)
{
    size_t key_count;
    char **names;
    struct option *opts = build_options(&names, &key_count);
    const struct config_key *keys = config_keys(&key_count);
    struct flag_value *flags = calloc((size_t)argc + 1, sizeof *flags);
    if (flags == NULL)
        abort();
    size_t flag_count = 0;
    const char *config_path = NULL;
    int status = 0;
    *done = 0;

    optind = 1;
    int c;
    while (status == 0 && (c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CONFIG:
            config_path = optarg;
            break;
        case OPT_HELP:
            print_usage(stdout);
            *done = 1;
            break;
        case OPT_VERSION:
            printf("cloro-proxy %s\n", CLORO_VERSION);
            *done = 1;
            break;
        case '?':
            fprintf(stderr, "cloro-proxy: see 'cloro-proxy --help' for the options\n");
            status = EXIT_USAGE;
            break;
        default:
            flags[flag_count].key = keys[c - OPT_KEY_BASE].name;
            flags[flag_count].value = optarg;
            flag_count++;
            break;
        }
    }
    if (status == 0 && !*done && optind < argc) {
        fprintf(stderr, "cloro-proxy: unexpected argument '%s'; see 'cloro-proxy --help'\n",
                argv[optind]);
        status = EXIT_USAGE;
    }
    if (status == 0 && !*done) {
        struct config_errors errs = {0};
        if (config_path != NULL)
            config_load_file(cfg, config_path, &errs);
        for (size_t i = 0; i < flag_count; i++) {
            char err[512];
            if (config_set(cfg, flags[i].key, flags[i].value, err, sizeof err) != 0) {
                char flag[64];
                snprintf(flag, sizeof flag, "%s", flags[i].key);
                for (char *p = flag; *p != '\0'; p++)
                    if (*p == '_')
                        *p = '-';
                config_errors_add(&errs, "--%s: %s", flag, err);
            }
        }
        if (errs.count == 0)
            config_finish(cfg, &errs);
        status = print_errors(&errs);
        config_errors_free(&errs);
    }
    free(flags);
    free_options(opts, names, key_count);
    return status;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "check-config") == 0) {
        if (argc != 3) {
            fprintf(stderr, "cloro-proxy: usage: cloro-proxy check-config FILE\n");
            return EXIT_USAGE;
        }
        return check_config(argv[2]);
    }
    if (argc >= 2 && strcmp(argv[1], "cache") == 0)
        return cli_cache_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "artifacts") == 0)
        return cli_artifacts_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "export") == 0)
        return cli_export_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "import") == 0)
        return cli_import_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "usage") == 0)
        return cli_usage_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "members") == 0)
        return cli_members_main(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "help") == 0)) {
        print_usage(stdout);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "version") == 0)) {
        printf("cloro-proxy %s\n", CLORO_VERSION);
        return 0;
    }
    bool show = false;
    if (argc >= 2 && (strcmp(argv[1], "serve") == 0 || strcmp(argv[1], "show-config") == 0)) {
        show = strcmp(argv[1], "show-config") == 0;
        argv[1] = argv[0];
        argv++;
        argc--;
    } else if (argc >= 2 && argv[1][0] != '-') {
        fprintf(stderr, "cloro-proxy: unknown command '%s'; see 'cloro-proxy --help'\n", argv[1]);
        return EXIT_USAGE;
    }

    struct config cfg;
    config_init(&cfg);
    int done;
    int status = parse_args(argc, argv, &cfg, &done);
    if (status != 0 || done) {
        config_deinit(&cfg);
        return status;
    }
    if (show) {
        config_dump(&cfg, stdout);
        config_deinit(&cfg);
        return 0;
    }

    log_threshold = cfg.log_level;
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("startup_failed", "error=\"libcurl global init failed\"");
        config_deinit(&cfg);
        return 1;
    }
    status = server_run(&cfg);
    curl_global_cleanup();
    config_deinit(&cfg);
    return status;
}
