/* member.h: one team member's definition and how it is read. A member is a
 * [member NAME] section (in the config file or in members_file) holding the
 * SHA-256 of its token and its own limits. This module parses and validates
 * those sections, with file and line in every problem, and reads a whole
 * members file; it holds no live state (members.h) and writes no files
 * (cli_members.c). Tokens themselves are never stored, only their hashes. */
#ifndef CLORO_MEMBER_H
#define CLORO_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_errors;

#define MEMBER_NAME_MAX    63 /* letters, digits, '-', '_', '.' */
#define MEMBER_HASH_BYTES  32 /* SHA-256 */
#define MEMBER_LIMIT_RATE  1000000
#define MEMBER_LIMIT_CONC  100000
#define MEMBER_LIMIT_CREDS INT64_C(1000000000000)

struct member {
    char name[MEMBER_NAME_MAX + 1];
    unsigned char token_sha256[MEMBER_HASH_BYTES];
    bool has_hash;
    int64_t rate_limit;          /* requests per second; 0: none */
    int64_t max_concurrency;     /* its upstream calls at once; 0: none */
    int64_t daily_credit_budget; /* credits per UTC day; 0: none */
    char *source;                /* owned: the file that declares it */
    int line;                    /* of its [member NAME] header */
    unsigned seen_keys;          /* while parsing: keys already set (duplicates) */
};

/* A growable array of members; zero-initialized is empty. */
struct member_list {
    struct member *items;
    size_t count, cap;
};

/* True when name is 1-63 of [A-Za-z0-9._-]. */
bool member_name_valid(const char *name);

/* Parses 64 hexadecimal digits (either case). Returns 0, or -1. */
int member_parse_hash(const char *hex, unsigned char out[MEMBER_HASH_BYTES]);

/* SHA-256 of a presented token. */
void member_token_hash(const char *token, size_t len, unsigned char out[MEMBER_HASH_BYTES]);

/* Starts a [member NAME] section read at path:line. Appends the problem to
 * errs and returns NULL for a bad name or a name already in l (from any
 * file); otherwise returns the new member (borrowed from l, valid until the
 * next append). */
struct member *member_list_begin(struct member_list *l, const char *name, const char *path,
                                 int line, struct config_errors *errs);

/* Sets one key of m read at path:line (token_sha256, rate_limit,
 * max_concurrency, daily_credit_budget); a problem goes to errs. Returns 0
 * or -1. */
int member_set(struct member *m, const char *key, const char *value, const char *path, int line,
               struct config_errors *errs);

/* After a file is read: every member declared in path since index from
 * must have a token_sha256 (a problem per member without). */
void member_list_check(const struct member_list *l, size_t from, const char *path,
                       struct config_errors *errs);

/* Reads a members file (only [member NAME] sections) into l, after what l
 * already holds (so duplicates across files are found). Every problem goes
 * to errs as "PATH:LINE: what". Returns the number of problems. */
size_t member_list_load_file(struct member_list *l, const char *path, struct config_errors *errs);

/* The member named name, or NULL. Borrowed. */
const struct member *member_list_find(const struct member_list *l, const char *name);

/* Appends a copy of m (its source copied too). */
void member_list_add(struct member_list *l, const struct member *m);

void member_list_free(struct member_list *l);

#endif
