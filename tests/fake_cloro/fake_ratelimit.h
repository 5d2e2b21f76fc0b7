/* fake_ratelimit: fixed 1-second windows per bucket key (cloro-api.md §10.1, §15
 * item 13). Pure: the caller passes the time and builds the key (key + route, or
 * key alone for the shared scope). Bounded table; stale windows are recycled. */
#ifndef FAKE_RATELIMIT_H
#define FAKE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct fake_ratelimit;

struct fake_ratelimit *fake_ratelimit_new(void);
void fake_ratelimit_free(struct fake_ratelimit *rl);
void fake_ratelimit_reset(struct fake_ratelimit *rl);

/* Counts one request in bucket's current window. Returns true when it is within
 * limit; *remaining gets the requests left in the window (>= 0). */
bool fake_ratelimit_take(struct fake_ratelimit *rl, const char *bucket, int64_t now_ms,
                         int64_t limit, int64_t *remaining);

#endif
