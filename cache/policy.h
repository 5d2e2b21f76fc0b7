/* policy.h: freshness decisions, RFC 9111. Request directives, age, what
 * an entry may answer, stale-if-error. Pure: the time is passed in. */
#ifndef CLORO_CACHE_POLICY_H
#define CLORO_CACHE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#define CACHE_POLICY_UNSET (-1)
#define CACHE_POLICY_ANY   (-2) /* max-stale without a value: any staleness */

/* Request Cache-Control directives (RFC 9111 section 5.2.1). */
struct cache_directives {
    bool no_cache;       /* go upstream, store the new answer */
    bool no_store;       /* bypass: read nothing, store nothing */
    bool only_if_cached; /* never go upstream */
    int64_t max_age_s;   /* CACHE_POLICY_UNSET or >= 0 */
    int64_t max_stale_s; /* CACHE_POLICY_UNSET, CACHE_POLICY_ANY or >= 0 */
};

/* Parses a Cache-Control header value (NULL: none). Unknown directives and
 * malformed values are ignored, as RFC 9111 section 5.2 asks. */
void cache_policy_parse(const char *cache_control, struct cache_directives *out);

enum cache_verdict {
    CACHE_VERDICT_FRESH, /* serve it */
    CACHE_VERDICT_STALE, /* expired, but the client's max-stale accepts it: serve as stale */
    CACHE_VERDICT_MISS,  /* do not serve it (too old for max-age, or expired) */
};

/* May an entry stored at stored_at_ms, expiring at expires_at_ms (0: never),
 * answer this request at now_ms? no_cache and no_store give MISS. */
enum cache_verdict cache_policy_judge(const struct cache_directives *d, int64_t stored_at_ms,
                                      int64_t expires_at_ms, int64_t now_ms);

/* Age in whole seconds (RFC 9111 section 4.2.3), never negative. */
int64_t cache_policy_age_s(int64_t stored_at_ms, int64_t now_ms);
/* Seconds of freshness left; negative once expired; INT64_MAX when never. */
int64_t cache_policy_ttl_s(int64_t expires_at_ms, int64_t now_ms);

/* Stale-if-error (RFC 5861): true when an entry expired no longer than
 * stale_if_error_ms ago (a fresh one is true too). */
bool cache_policy_stale_if_error(int64_t expires_at_ms, int64_t now_ms, int64_t stale_if_error_ms);

#endif
