/* mode.h: the proxy's operating mode (`mode` in the configuration, --mode,
 * POST /_proxy/mode at run time):
 *   online   as the cache and the pipeline are built: hits from the store,
 *            misses upstream;
 *   offline  the upstream is never contacted (not for /v1/ calls, task
 *            creations or polls, artifact downloads): what the store holds is
 *            served, stale or not, and anything else is 504
 *            OFFLINE_CACHE_MISS naming the key;
 *   record   online, but every answer stored is pinned (never expires): for
 *            building fixtures;
 *   refresh  every cacheable call goes upstream (as with Cache-Control:
 *            no-cache) and replaces the stored answer.
 * Pure: names and parsing, unit-tested in tests/unit/test_mode.c. */
#ifndef CLORO_MODE_H
#define CLORO_MODE_H

enum proxy_mode {
    PROXY_MODE_ONLINE,
    PROXY_MODE_OFFLINE,
    PROXY_MODE_RECORD,
    PROXY_MODE_REFRESH,
};
#define PROXY_MODE_COUNT (PROXY_MODE_REFRESH + 1)

/* The words of the `mode` key, as config.c's choices want them. */
#define PROXY_MODE_CHOICES "online|offline|record|refresh"

/* "online", "offline", "record" or "refresh". Static. */
const char *proxy_mode_name(enum proxy_mode mode);

/* Parses one of the four names (exact, lowercase, as the configuration
 * takes them). Returns 0, or -1 (out untouched) for anything else. */
int proxy_mode_parse(const char *text, enum proxy_mode *out);

#endif
