/* member.c: [member NAME] sections and members files (member.h). A members
 * file is INI read with libinih, through a reader that counts lines (inih
 * r55 gives its handler none) so every problem names FILE:LINE. */
#include "member.h"
#include "ini_lines.h"
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum member_key_bit {
    KEY_TOKEN = 1u << 0,
    KEY_RATE = 1u << 1,
    KEY_CONC = 1u << 2,
    KEY_BUDGET = 1u << 3,
};

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

bool member_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > MEMBER_NAME_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        if (!isalnum(*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int member_parse_hash(const char *hex, unsigned char out[MEMBER_HASH_BYTES])
{
    if (strlen(hex) != 2 * MEMBER_HASH_BYTES)
        return -1;
    for (size_t i = 0; i < MEMBER_HASH_BYTES; i++) {
        int hi = hex_digit((unsigned char)hex[2 * i]);
        int lo = hex_digit((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

void member_token_hash(const char *token, size_t len, unsigned char out[MEMBER_HASH_BYTES])
{
    SHA256((const unsigned char *)token, len, out);
}

const struct member *member_list_find(const struct member_list *l, const char *name)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

static struct member *append(struct member_list *l)
{
    if (l->count == l->cap) {
        size_t cap = l->cap == 0 ? 8 : l->cap * 2;
        struct member *grown = realloc(l->items, cap * sizeof *grown);
        if (grown == NULL)
            abort();
        l->items = grown;
        l->cap = cap;
    }
    struct member *m = &l->items[l->count++];
    memset(m, 0, sizeof *m);
    return m;
}

void member_list_add(struct member_list *l, const struct member *m)
{
    struct member *copy = append(l);
    *copy = *m;
    copy->source = dup_or_die(m->source != NULL ? m->source : "");
}

struct member *member_list_begin(struct member_list *l, const char *name, const char *path,
                                 int line, struct config_errors *errs)
{
    if (!member_name_valid(name)) {
        config_errors_add(errs,
                          "%s:%d: [member %s]: a member's name is 1 to %d letters, digits, '-', "
                          "'_' or '.'",
                          path, line, name, MEMBER_NAME_MAX);
        return NULL;
    }
    const struct member *other = member_list_find(l, name);
    if (other != NULL) {
        config_errors_add(errs, "%s:%d: duplicate member '%s' (already declared at %s:%d)", path,
                          line, name, other->source, other->line);
        return NULL;
    }
    struct member *m = append(l);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->source = dup_or_die(path);
    m->line = line;
    return m;
}

/* A whole number in [0, max]; -1 on anything else. */
static int parse_count(const char *value, int64_t max, int64_t *out)
{
    if (!isdigit((unsigned char)value[0]))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

int member_set(struct member *m, const char *key, const char *value, const char *path, int line,
               struct config_errors *errs)
{
    static const struct {
        const char *name;
        unsigned bit;
        int64_t max;
        size_t offset;
        const char *unit;
    } counts[] = {
        {"rate_limit", KEY_RATE, MEMBER_LIMIT_RATE, offsetof(struct member, rate_limit),
         "requests per second"},
        {"max_concurrency", KEY_CONC, MEMBER_LIMIT_CONC, offsetof(struct member, max_concurrency),
         "upstream calls at once"},
        {"daily_credit_budget", KEY_BUDGET, MEMBER_LIMIT_CREDS,
         offsetof(struct member, daily_credit_budget), "credits per UTC day"},
    };
    unsigned bit = 0;
    if (strcmp(key, "token_sha256") == 0) {
        bit = KEY_TOKEN;
        if (member_parse_hash(value, m->token_sha256) != 0) {
            /* The value is not echoed: it may be a token pasted by mistake. */
            config_errors_add(errs,
                              "%s:%d: token_sha256 in [member %s]: expected 64 hexadecimal "
                              "digits (the SHA-256 of the token; 'cloro-proxy members add' "
                              "makes one)",
                              path, line, m->name);
            return -1;
        }
        m->has_hash = true;
    } else {
        size_t i = 0;
        while (i < sizeof counts / sizeof counts[0] && strcmp(counts[i].name, key) != 0)
            i++;
        if (i == sizeof counts / sizeof counts[0]) {
            config_errors_add(errs,
                              "%s:%d: unknown key '%s' in [member %s]: a member section takes "
                              "token_sha256, rate_limit, max_concurrency and daily_credit_budget",
                              path, line, key, m->name);
            return -1;
        }
        bit = counts[i].bit;
        int64_t v;
        if (parse_count(value, counts[i].max, &v) != 0) {
            config_errors_add(errs,
                              "%s:%d: %s in [member %s]: expected a whole number of %s from 0 "
                              "(none) to %lld, got '%s'",
                              path, line, key, m->name, counts[i].unit, (long long)counts[i].max,
                              value);
            return -1;
        }
        *(int64_t *)((char *)m + counts[i].offset) = v;
    }
    if (m->seen_keys & bit) {
        config_errors_add(errs, "%s:%d: '%s' is set twice in [member %s]; the last value wins",
                          path, line, key, m->name);
        return -1;
    }
    m->seen_keys |= bit;
    return 0;
}

void member_list_check(const struct member_list *l, size_t from, const char *path,
                       struct config_errors *errs)
{
    for (size_t i = from; i < l->count; i++) {
        const struct member *m = &l->items[i];
        if (!m->has_hash && strcmp(m->source, path) == 0)
            config_errors_add(errs, "%s:%d: [member %s] has no token_sha256 (required)", path,
                              m->line, m->name);
    }
}

/* --- members files ----------------------------------------------------- */

struct file_ctx {
    struct ini_lines in;
    struct member_list *list;
    struct member *current; /* the section being read; NULL: keys are skipped */
    bool in_section;        /* a section header was seen (good or bad) */
};

/* Section headers are handled here, since inih r55 calls no handler for
 * them: inih never sees one. */
static bool on_section(void *arg, const char *header, const char *close)
{
    struct file_ctx *ctx = arg;
    ctx->in_section = true;
    ctx->current = NULL;
    if (close == NULL)
        return false;               /* reported by ini_lines_read */
    char name[MEMBER_NAME_MAX + 2]; /* truncated past the longest: still refused */
    if (ini_lines_member_name(header, close, name, sizeof name))
        ctx->current = member_list_begin(ctx->list, name, ctx->in.path, ctx->in.line, ctx->in.errs);
    else
        config_errors_add(ctx->in.errs,
                          "%s:%d: unknown section %.*s: a members file holds only "
                          "[member NAME] sections",
                          ctx->in.path, ctx->in.line, (int)(close - header + 1), header);
    return false;
}

static char *read_line(char *buf, int size, void *stream)
{
    struct file_ctx *ctx = stream;
    if (ini_lines_read(&ctx->in, buf, size) == NULL)
        return NULL;
    bool key_line = strchr("\n\r;#", buf[0]) == NULL; /* headers come back blank */
    if (key_line && !ctx->in_section) {
        config_errors_add(ctx->in.errs,
                          "%s:%d: a key outside any section: a members file holds only "
                          "[member NAME] sections",
                          ctx->in.path, ctx->in.line);
        buf[0] = '\n';
        buf[1] = '\0';
    }
    return buf;
}

static int on_value(void *user, const char *section, const char *name, const char *value)
{
    (void)section; /* the reader tracks the section: inih never sees a header */
    struct file_ctx *ctx = user;
    if (ctx->current != NULL)
        member_set(ctx->current, name, value, ctx->in.path, ctx->in.line, ctx->in.errs);
    return 1;
}

size_t member_list_load_file(struct member_list *l, const char *path, struct config_errors *errs)
{
    size_t before = errs->count;
    size_t first = l->count;
    struct file_ctx ctx = {.list = l};
    ctx.in = (struct ini_lines){.file = fopen(path, "r"),
                                .path = path,
                                .errs = errs,
                                .on_section = on_section,
                                .arg = &ctx};
    if (ctx.in.file == NULL) {
        config_errors_add(errs, "%s: cannot read: %s", path, strerror(errno));
        return errs->count - before;
    }
    int rc = ini_parse_stream(read_line, &ctx, on_value, &ctx);
    if (rc > 0)
        config_errors_add(errs, "%s:%d: not a valid 'key = value' line", path, rc);
    else if (rc < 0)
        config_errors_add(errs, "%s: read error", path);
    fclose(ctx.in.file);
    member_list_check(l, first, path, errs);
    return errs->count - before;
}

void member_list_free(struct member_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i].source);
    free(l->items);
    memset(l, 0, sizeof *l);
}
