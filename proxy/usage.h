/* usage.h: usage accounting per (member, provider, UTC day): requests, cache
 * hits, coalesced, upstream calls, credits charged, credits saved by the
 * cache and by async mode, errors, bytes in and out. Counted in memory on
 * the loop thread (accounting.c feeds it from every finished /v1/ request)
 * and handed to the writer once a second (usage_flush), one row per changed
 * (member, provider, day), so the counters survive restarts: today's rows
 * are loaded back at start-up (usage_load). Rows older than
 * usage_retention_days are pruned from the store once a day. A member ""
 * (auth open) is reported as USAGE_ANONYMOUS. Loop thread only; the report
 * and the row codec are also used by the CLI (cli_usage.c), on the store
 * alone. */
#ifndef CLORO_USAGE_H
#define CLORO_USAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_store;
struct cache_writer;
struct usage;

enum usage_counter {
    USAGE_REQUESTS,            /* /v1/ requests answered */
    USAGE_HITS,                /* answered from the store (X-Cache HIT or STALE) */
    USAGE_COALESCED,           /* answered by an identical call in flight */
    USAGE_UPSTREAM_CALLS,      /* upstream attempts made for them (retries included) */
    USAGE_CREDITS_CHARGED,     /* X-Credits-Charged of answers that went upstream */
    USAGE_CREDITS_SAVED_CACHE, /* X-Credits-Saved of answers the cache gave */
    USAGE_CREDITS_SAVED_ASYNC, /* X-Credits-Saved of answers asked as async tasks */
    USAGE_ERRORS,              /* answers with a status >= 400 */
    USAGE_BYTES_IN,            /* request bodies */
    USAGE_BYTES_OUT,           /* response bodies */
};
#define USAGE_COUNTERS (USAGE_BYTES_OUT + 1)

#define USAGE_DAY_LEN      10  /* "YYYY-MM-DD" */
#define USAGE_MEMBER_MAX   64  /* with its NUL, as request->member */
#define USAGE_PROVIDER_MAX 24  /* with its NUL */
#define USAGE_ANONYMOUS    "-" /* how member "" (auth open) is reported */

/* The JSON name of a counter ("requests", "credits_saved_cache", ...). Static. */
const char *usage_counter_name(enum usage_counter c);

/* retention_days: rows of days older than this many are pruned from the
 * store (0: kept for good). Never fails (aborts on OOM). */
struct usage *usage_new(int64_t retention_days);
void usage_free(struct usage *u);

/* Adds counters (USAGE_COUNTERS values) to the row of member ("" when auth
 * is open), provider and the UTC day of now_ms, and to the member's totals
 * since start. */
void usage_add(struct usage *u, int64_t now_ms, const char *member, const char *provider,
               const uint64_t *counters);

/* Loads the store's rows of the UTC day of now_ms and later, so today's
 * counters go on where the last run left them. Returns 0, or -1 on a store
 * error (nothing is loaded). */
int usage_load(struct usage *u, struct cache_store *store, int64_t now_ms);

/* Hands every changed row to w (a row the writer refuses stays changed, for
 * the next flush). On the first flush of a day, prunes the store's rows
 * past retention, and rows of past days leave memory once written. w NULL
 * (cache off): nothing is written, and past days simply leave memory. */
void usage_flush(struct usage *u, struct cache_writer *w, int64_t now_ms);

/* Credits charged to member on the UTC day of now_ms, over all providers. */
uint64_t usage_charged_today(struct usage *u, const char *member, int64_t now_ms);

/* Totals since start, per member (for metrics), in first-seen order. */
typedef void (*usage_member_cb)(const char *member, const uint64_t *counters, void *arg);
void usage_foreach_member(const struct usage *u, usage_member_cb cb, void *arg);

/* The report of GET /_proxy/usage and `cloro-proxy usage`: the rows of
 * store (may be NULL) from since on, overlaid by the live rows of u (may be
 * NULL), of one member (NULL: every member; USAGE_ANONYMOUS or "": the
 * anonymous one):
 *   {"since", "today", "anonymous": "-", "totals": {counters},
 *    "members": {NAME: {"totals", "days": {DAY: {counters}},
 *                       "providers": {P: {"totals", "days": {DAY: {counters}}}}}}}
 * members, providers and days in ascending order. NULL on a store error.
 * New reference. */
json_t *usage_report(const struct usage *u, struct cache_store *store, const char *member,
                     const char *since, int64_t now_ms);

/* --- days and the row codec (tests, CLI) ------------------------------------ */

/* "YYYY-MM-DD" of the UTC day of wall_ms into out (USAGE_DAY_LEN + 1 bytes). */
void usage_day(int64_t wall_ms, char *out);
/* True when text is "YYYY-MM-DD", a real date from 1970 on. */
bool usage_day_valid(const char *text);
/* Milliseconds since the epoch of 00:00 UTC of a valid day; -1 otherwise. */
int64_t usage_day_start_ms(const char *day);

/* The store key of a row: day, NUL, member, NUL, provider. Returns its
 * length, or 0 when it does not fit size (or day is not USAGE_DAY_LEN). */
size_t usage_key_encode(const char *day, const char *member, const char *provider,
                        unsigned char *out, size_t size);
/* Splits a key into its parts (NUL-terminated copies). Returns 0, or -1
 * when it is not a row key. */
int usage_key_decode(const unsigned char *key, size_t len, char *day, char *member, char *provider);
/* The value: u8 version 1, u8 count, count u64 little endian. Returns its
 * length (2 + 8 * USAGE_COUNTERS). */
#define USAGE_VALUE_BYTES (2 + 8 * USAGE_COUNTERS)
size_t usage_value_encode(const uint64_t *counters, unsigned char *out);
/* Reads a value of any count (missing counters are 0, extra ones ignored).
 * Returns 0, or -1 when it is not a value. */
int usage_value_decode(const unsigned char *data, size_t len, uint64_t *counters);

#endif
