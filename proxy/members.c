/* members.c: the live member table (members.h). A reload builds a whole new
 * list (the config file's members, then members_file's) and swaps it in
 * only when the file had no problem, so a half-edited file never locks a
 * member out. */
#include "members.h"
#include "log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct members {
    const struct config *cfg;
    struct member_list list;
    bool file_seen; /* stat of members_file below is valid */
    struct stat file_stat;
    bool missing_warned;
};

static void remember_stat(struct members *m)
{
    m->file_seen = stat(m->cfg->members_file, &m->file_stat) == 0;
}

struct members *members_new(const struct config *cfg)
{
    struct members *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    m->cfg = cfg;
    for (size_t i = 0; i < cfg->members.count; i++)
        member_list_add(&m->list, &cfg->members.items[i]);
    if (cfg->members_file[0] != '\0')
        remember_stat(m);
    return m;
}

void members_free(struct members *m)
{
    if (m == NULL)
        return;
    member_list_free(&m->list);
    free(m);
}

size_t members_count(const struct members *m)
{
    return m->list.count;
}

bool members_required(const struct members *m)
{
    if (strcmp(m->cfg->auth, "members") == 0)
        return true;
    return strcmp(m->cfg->auth, "auto") == 0 && m->list.count > 0;
}

const struct member *members_lookup_token(const struct members *m, const char *token, size_t len)
{
    unsigned char hash[MEMBER_HASH_BYTES];
    member_token_hash(token, len, hash);
    /* Every hash is compared, and the match is picked with masks, not a
     * branch on it: the time depends on the member count only. */
    size_t found = 0;
    size_t matched = 0; /* all ones once a member matched */
    for (size_t i = 0; i < m->list.count; i++) {
        size_t eq = (size_t)(CRYPTO_memcmp(hash, m->list.items[i].token_sha256, sizeof hash) == 0);
        size_t take = (size_t)0 - (eq & (matched == 0));
        found = (found & ~take) | (i & take);
        matched |= take;
    }
    OPENSSL_cleanse(hash, sizeof hash);
    return matched != 0 ? &m->list.items[found] : NULL;
}

const struct member *members_find(const struct members *m, const char *name)
{
    return member_list_find(&m->list, name);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

enum members_reload members_tick(struct members *m)
{
    const struct config *cfg = m->cfg;
    if (cfg->members_file[0] == '\0')
        return MEMBERS_UNCHANGED;
    char file[600], msg[600];
    log_value(file, sizeof file, cfg->members_file);
    struct stat st;
    if (stat(cfg->members_file, &st) != 0) {
        if (!m->missing_warned) {
            log_warn("members_reload_failed", "file=%s error=%s members=%zu", file,
                     log_value(msg, sizeof msg, strerror(errno)), m->list.count);
            m->missing_warned = true;
        }
        m->file_seen = false;
        return MEMBERS_RELOAD_FAILED;
    }
    m->missing_warned = false;
    if (m->file_seen && same_file(&st, &m->file_stat))
        return MEMBERS_UNCHANGED;
    /* Whatever comes of it, this version of the file has been read. */
    m->file_stat = st;
    m->file_seen = true;

    struct member_list fresh = {0};
    for (size_t i = 0; i < cfg->config_member_count && i < cfg->members.count; i++)
        member_list_add(&fresh, &cfg->members.items[i]);
    struct config_errors errs = {0};
    member_list_load_file(&fresh, cfg->members_file, &errs);
    if (errs.count > 0) {
        log_warn("members_reload_failed", "file=%s problems=%zu first=%s members=%zu kept=true",
                 file, errs.count, log_value(msg, sizeof msg, errs.lines[0]), m->list.count);
        config_errors_free(&errs);
        member_list_free(&fresh);
        return MEMBERS_RELOAD_FAILED;
    }
    size_t before = m->list.count;
    member_list_free(&m->list);
    m->list = fresh;
    log_info("members_reloaded", "file=%s members=%zu before=%zu", file, m->list.count, before);
    return MEMBERS_RELOADED;
}
