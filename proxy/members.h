/* members.h: the member table of the running proxy. Built at start-up from
 * the config's [member NAME] sections and members_file (config.h); the file
 * is re-read when it changes (members_tick, once a second), and a bad file
 * keeps the table as it was. Answers "whose token is this" in constant time
 * and "which auth is in force". Loop thread only. Knows nothing of requests
 * or HTTP (auth.c) and writes no file (cli_members.c). */
#ifndef CLORO_MEMBERS_H
#define CLORO_MEMBERS_H

#include "config.h"
#include "member.h"

#include <stdbool.h>
#include <stddef.h>

struct members;

/* Copies cfg's members (cfg must outlive the table: its auth and
 * members_file are read on every tick). Never fails (aborts on OOM). */
struct members *members_new(const struct config *cfg);
void members_free(struct members *m);

/* How many members there are now. */
size_t members_count(const struct members *m);

/* True when every /v1/ request needs a member's token: auth = members, or
 * auth = auto and at least one member exists. */
bool members_required(const struct members *m);

/* The member whose token this is (len bytes), or NULL. The token's SHA-256
 * is compared with every member's hash (CRYPTO_memcmp), with no early exit.
 * Borrowed: valid until the next members_tick. */
const struct member *members_lookup_token(const struct members *m, const char *token, size_t len);

/* The member named name, or NULL. Borrowed, valid until the next members_tick. */
const struct member *members_find(const struct members *m, const char *name);

enum members_reload {
    MEMBERS_UNCHANGED,
    MEMBERS_RELOADED,
    MEMBERS_RELOAD_FAILED, /* the old table stays; logged as a warning */
};

/* Re-reads members_file when its inode, size or mtime changed since last
 * seen. Logs what happened (never a hash). */
enum members_reload members_tick(struct members *m);

#endif
