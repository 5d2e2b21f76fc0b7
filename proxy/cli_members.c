/* cli_members.c: cloro-proxy members add|rm|ls. The members file is edited
 * as text, so comments and other sections stay as written, and replaced
 * atomically (a temp file in the same directory, mode 0600, fsync, rename):
 * a running server never reads half a file. A new token comes from
 * RAND_bytes, is printed once on stdout and never stored: only its SHA-256
 * goes into the file. */
#include "cli_members.h"
#include "config.h"
#include "member.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_USAGE   2
#define TOKEN_PREFIX "cpm_"
#define TOKEN_BYTES  32 /* 43 characters of base64url */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage:\n"
            "  cloro-proxy members add NAME [--rate-limit N] [--max-concurrency N]\n"
            "                          [--daily-credit-budget N] [--members-file F | --config "
            "FILE]\n"
            "  cloro-proxy members rm NAME [--members-file F | --config FILE]\n"
            "  cloro-proxy members ls [--members-file F | --config FILE]\n"
            "The members file is --members-file, else members_file of --config.\n"
            "NAME: 1 to %d letters, digits, '-', '_' or '.'; limits: 0 means none.\n",
            MEMBER_NAME_MAX);
}

struct options {
    const char *config_path;
    const char *members_file;
    const char *limits[3]; /* rate_limit, max_concurrency, daily_credit_budget as given */
};

static const char *const limit_keys[3] = {"rate_limit", "max_concurrency", "daily_credit_budget"};
static const int64_t limit_max[3] = {MEMBER_LIMIT_RATE, MEMBER_LIMIT_CONC, MEMBER_LIMIT_CREDS};

/* The whole file as a string (NUL-terminated), or NULL with errno set. */
static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *text = malloc(cap);
    if (text == NULL)
        abort();
    size_t got;
    while ((got = fread(text + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            text = realloc(text, cap);
            if (text == NULL)
                abort();
        }
    }
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        free(text);
        errno = EIO;
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
}

/* Replaces path with text: temp file beside it (0600), fsync, rename, and
 * the directory synced so the rename survives a crash. */
static int write_atomic(const char *path, const char *text, size_t len)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        abort();
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "cloro-proxy: cannot write next to '%s': %s\n", path, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = fchmod(fd, 0600);
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (rc == 0)
        rc = fsync(fd);
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc != 0) {
        fprintf(stderr, "cloro-proxy: cannot write '%s': %s\n", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    char *copy = strdup(path);
    if (copy == NULL)
        abort();
    int dir = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    free(copy);
    return 0;
}

static void print_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "cloro-proxy: %s\n", errs->lines[i]);
}

/* "cpm_" + base64url of 32 random bytes, no padding. */
static int make_token(char *out, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char bytes[TOKEN_BYTES + 2] = {0};
    if (RAND_bytes(bytes, TOKEN_BYTES) != 1)
        return -1;
    size_t n = snprintf(out, size, "%s", TOKEN_PREFIX);
    size_t chars = (TOKEN_BYTES * 8 + 5) / 6;
    for (size_t i = 0; i < chars && n + 1 < size; i++) {
        size_t bit = i * 6;
        unsigned v = (unsigned)bytes[bit / 8] << 8 | bytes[bit / 8 + 1];
        out[n++] = alphabet[(v >> (10 - bit % 8)) & 0x3f];
    }
    out[n] = '\0';
    OPENSSL_cleanse(bytes, sizeof bytes);
    return 0;
}

static int parse_limit(const char *text, int64_t max, int64_t *out)
{
    if (text[0] < '0' || text[0] > '9')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The config's own members, then the members file's (if it exists). Returns
 * 0, or an exit status after printing the problems. *exists says whether
 * the file was there. */
static int load_members(const struct config *cfg, const char *file, struct member_list *list,
                        bool *exists)
{
    for (size_t i = 0; i < cfg->members.count; i++)
        member_list_add(list, &cfg->members.items[i]);
    *exists = access(file, F_OK) == 0;
    if (!*exists)
        return 0;
    struct config_errors errs = {0};
    if (member_list_load_file(list, file, &errs) > 0) {
        print_errors(&errs);
        fprintf(stderr, "cloro-proxy: fix %s first (nothing was changed)\n", file);
        config_errors_free(&errs);
        return EXIT_USAGE;
    }
    return 0;
}

static int cmd_add(const struct config *cfg, const char *file, const char *name,
                   const struct options *o)
{
    if (!member_name_valid(name)) {
        fprintf(stderr,
                "cloro-proxy: '%s' is not a member name: 1 to %d letters, digits, '-', "
                "'_' or '.'\n",
                name, MEMBER_NAME_MAX);
        return EXIT_USAGE;
    }
    int64_t limits[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (o->limits[i] != NULL && parse_limit(o->limits[i], limit_max[i], &limits[i]) != 0) {
            char flag[32];
            snprintf(flag, sizeof flag, "%s", limit_keys[i]);
            for (char *p = flag; *p != '\0'; p++)
                if (*p == '_')
                    *p = '-';
            fprintf(stderr,
                    "cloro-proxy: --%s: expected a whole number from 0 (none) to %lld, got "
                    "'%s'\n",
                    flag, (long long)limit_max[i], o->limits[i]);
            return EXIT_USAGE;
        }
    }
    struct member_list list = {0};
    bool exists;
    int status = load_members(cfg, file, &list, &exists);
    const struct member *other = status == 0 ? member_list_find(&list, name) : NULL;
    if (other != NULL) {
        fprintf(stderr,
                "cloro-proxy: member '%s' already exists (%s:%d); 'cloro-proxy members rm %s' "
                "first to give it a new token\n",
                name, other->source, other->line, name);
        status = 1;
    }
    member_list_free(&list);
    if (status != 0)
        return status;

    size_t old_len = 0;
    char *old = exists ? read_text(file, &old_len) : NULL;
    if (exists && old == NULL) {
        fprintf(stderr, "cloro-proxy: cannot read '%s': %s\n", file, strerror(errno));
        return 1;
    }
    char token[sizeof TOKEN_PREFIX + 64];
    if (make_token(token, sizeof token) != 0) {
        fprintf(stderr, "cloro-proxy: no random bytes for a token (RAND_bytes failed)\n");
        free(old);
        return 1;
    }
    unsigned char hash[MEMBER_HASH_BYTES];
    member_token_hash(token, strlen(token), hash);
    char hex[2 * MEMBER_HASH_BYTES + 1];
    for (size_t i = 0; i < MEMBER_HASH_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    char *text = NULL;
    const char *sep = old_len == 0 ? "" : old[old_len - 1] == '\n' ? "\n" : "\n\n";
    int n = asprintf(&text, "%s%s[member %s]\ntoken_sha256 = %s\n", old != NULL ? old : "", sep,
                     name, hex);
    if (n < 0)
        abort();
    for (int i = 0; i < 3; i++) {
        if (o->limits[i] == NULL)
            continue;
        char *more = NULL;
        if (asprintf(&more, "%s%s = %lld\n", text, limit_keys[i], (long long)limits[i]) < 0)
            abort();
        free(text);
        text = more;
    }
    free(old);
    int rc = write_atomic(file, text, strlen(text));
    free(text);
    if (rc != 0) {
        OPENSSL_cleanse(token, sizeof token);
        return 1;
    }
    fprintf(stderr,
            "cloro-proxy: member '%s' added to %s. Its token, shown only this once (it "
            "cannot be shown again: only its SHA-256 is kept):\n",
            name, file);
    printf("%s\n", token);
    fflush(stdout);
    fprintf(stderr, "cloro-proxy: the member sends it as 'Authorization: Bearer <token>'. A "
                    "running proxy with this members_file takes it up within a second or two.\n");
    OPENSSL_cleanse(token, sizeof token);
    return 0;
}

/* The offset of the first byte of line (1-based) in text. */
static size_t line_start(const char *text, int line)
{
    const char *p = text;
    for (int i = 1; i < line && *p != '\0'; i++) {
        const char *nl = strchr(p, '\n');
        p = nl != NULL ? nl + 1 : p + strlen(p);
    }
    return (size_t)(p - text);
}

static bool is_header(const char *line)
{
    line += strspn(line, " \t");
    return *line == '[';
}

static bool is_comment(const char *line)
{
    line += strspn(line, " \t");
    return *line == '#' || *line == ';';
}

static int cmd_rm(const struct config *cfg, const char *file, const char *name)
{
    struct member_list list = {0};
    bool exists;
    int status = load_members(cfg, file, &list, &exists);
    if (status != 0) {
        member_list_free(&list);
        return status;
    }
    const struct member *m = member_list_find(&list, name);
    if (m == NULL || strcmp(m->source, file) != 0) {
        if (m == NULL)
            fprintf(stderr, "cloro-proxy: no member '%s' in %s\n", name, file);
        else
            fprintf(stderr,
                    "cloro-proxy: member '%s' is declared in %s:%d, not in the members file: "
                    "remove it there\n",
                    name, m->source, m->line);
        member_list_free(&list);
        return 1;
    }
    int line = m->line;
    member_list_free(&list);
    size_t len = 0;
    char *text = read_text(file, &len);
    if (text == NULL) {
        fprintf(stderr, "cloro-proxy: cannot read '%s': %s\n", file, strerror(errno));
        return 1;
    }
    /* From its header to the next section's, less the comments just above
     * that one (they describe it). */
    size_t from = line_start(text, line);
    size_t to = from;
    size_t keep_from = len; /* start of the comments right above the next header */
    bool first = true;
    while (to < len) {
        const char *l = text + to;
        if (!first && is_header(l))
            break;
        if (!first && is_comment(l)) {
            if (keep_from == len)
                keep_from = to;
        } else {
            keep_from = len;
        }
        first = false;
        const char *nl = strchr(l, '\n');
        to = nl != NULL ? (size_t)(nl - text) + 1 : len;
    }
    if (keep_from < to)
        to = keep_from;
    memmove(text + from, text + to, len - to + 1);
    len -= to - from;
    int rc = write_atomic(file, text, len);
    free(text);
    if (rc != 0)
        return 1;
    fprintf(stderr, "cloro-proxy: member '%s' removed from %s; its token no longer works\n", name,
            file);
    return 0;
}

static void print_limit(int64_t v, int width)
{
    if (v == 0)
        printf(" %*s", width, "none");
    else
        printf(" %*lld", width, (long long)v);
}

static int cmd_ls(const struct config *cfg, const char *file)
{
    struct member_list list = {0};
    bool exists = false;
    int status = file != NULL ? load_members(cfg, file, &list, &exists) : 0;
    if (file == NULL)
        for (size_t i = 0; i < cfg->members.count; i++)
            member_list_add(&list, &cfg->members.items[i]);
    if (status == 0) {
        printf("%-24s %10s %15s %19s  %s\n", "NAME", "RATE_LIMIT", "MAX_CONCURRENCY",
               "DAILY_CREDIT_BUDGET", "DECLARED IN");
        for (size_t i = 0; i < list.count; i++) {
            const struct member *m = &list.items[i];
            printf("%-24s", m->name);
            print_limit(m->rate_limit, 10);
            print_limit(m->max_concurrency, 15);
            print_limit(m->daily_credit_budget, 19);
            printf("  %s:%d\n", m->source, m->line);
        }
        fprintf(stderr, "%zu member%s%s%s%s\n", list.count, list.count == 1 ? "" : "s",
                file != NULL && !exists ? " (" : "", file != NULL && !exists ? file : "",
                file != NULL && !exists ? " does not exist yet)" : "");
    }
    member_list_free(&list);
    return status;
}

int cli_members_main(int argc, char **argv)
{
    enum { OPT_MEMBERS_FILE = 1000, OPT_RATE, OPT_CONC, OPT_BUDGET };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"members-file", required_argument, NULL, OPT_MEMBERS_FILE},
        {"rate-limit", required_argument, NULL, OPT_RATE},
        {"max-concurrency", required_argument, NULL, OPT_CONC},
        {"daily-credit-budget", required_argument, NULL, OPT_BUDGET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    struct options o = {0};
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.config_path = optarg;
            break;
        case OPT_MEMBERS_FILE:
            o.members_file = optarg;
            break;
        case OPT_RATE:
        case OPT_CONC:
        case OPT_BUDGET:
            o.limits[c - OPT_RATE] = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    bool add = strcmp(sub, "add") == 0, rm = strcmp(sub, "rm") == 0, ls = strcmp(sub, "ls") == 0;
    if (!add && !rm && !ls) {
        fprintf(stderr, "cloro-proxy: unknown members command '%s'\n", sub);
        usage(stderr);
        return EXIT_USAGE;
    }
    if ((ls && optind != argc) || (!ls && optind != argc - 1)) {
        fprintf(stderr,
                ls ? "cloro-proxy: members ls takes no NAME\n"
                   : "cloro-proxy: members %s needs exactly one NAME\n",
                sub);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!add && (o.limits[0] != NULL || o.limits[1] != NULL || o.limits[2] != NULL)) {
        fprintf(stderr, "cloro-proxy: limits are given to 'members add' only\n");
        return EXIT_USAGE;
    }

    struct config cfg;
    config_init(&cfg);
    struct config_errors errs = {0};
    if (o.config_path != NULL)
        config_load_file(&cfg, o.config_path, &errs);
    int status = 0;
    if (errs.count > 0) {
        print_errors(&errs);
        status = EXIT_USAGE;
    }
    config_errors_free(&errs);
    const char *file = o.members_file != NULL        ? o.members_file
                       : cfg.members_file[0] != '\0' ? cfg.members_file
                                                     : NULL;
    if (status == 0 && file == NULL && !ls) {
        fprintf(stderr,
                "cloro-proxy: members %s: no members file: give --members-file FILE, or "
                "--config FILE with members_file set\n",
                sub);
        status = EXIT_USAGE;
    }
    if (status == 0) {
        if (add)
            status = cmd_add(&cfg, file, argv[optind], &o);
        else if (rm)
            status = cmd_rm(&cfg, file, argv[optind]);
        else
            status = cmd_ls(&cfg, file);
    }
    config_deinit(&cfg);
    return status;
}
