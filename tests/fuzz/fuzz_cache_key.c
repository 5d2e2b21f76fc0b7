/* fuzz_cache_key: the cache-key canonicalizer (cache/key.c). The first byte
 * picks the route (a monitor route or POST /v1/async/task), the rest is the
 * body. Checks: no crash or sanitizer report; the key of one input is the
 * same twice; the canonical text, keyed again, gives the same key and is
 * itself canonical (a fixed point); the hex form parses back; sample keys
 * are derived deterministically from their base. */
#include "key.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const routes[] = {
    "/v1/monitor/chatgpt", "/v1/monitor/gemini",      "/v1/monitor/grok",
    "/v1/monitor/copilot", "/v1/monitor/perplexity",  "/v1/monitor/aimode",
    "/v1/monitor/google",  "/v1/monitor/google/news", "/v1/monitor/google/goto",
    "/v1/async/task",
};
#define NROUTES (sizeof routes / sizeof routes[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *path = routes[data[0] % NROUTES];
    const char *method = (data[0] / NROUTES) % 8 == 7 ? "GET" : "POST";
    const uint8_t *body = data + 1;
    size_t len = size - 1;

    struct cache_key a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    enum cache_key_result ra = cache_key_compute(method, path, body, len, &a);
    enum cache_key_result rb = cache_key_compute(method, path, body, len, &b);
    if (ra != rb)
        abort();
    if (ra != CACHE_KEY_OK)
        return 0;
    if (memcmp(a.bytes, b.bytes, CACHE_KEY_BYTES) != 0 || strcmp(a.hex, b.hex) != 0 ||
        strcmp(a.provider, b.provider) != 0)
        abort();

    char *canon = cache_key_canonical(method, path, body, len);
    if (!canon)
        abort(); /* keyed, so it has a canonical form */
    /* The canonical text of an async task is the sync call's body: re-key it
     * on that sync route. */
    const char *rpath = path;
    char sync_path[64];
    if (strcmp(path, "/v1/async/task") == 0) {
        snprintf(sync_path, sizeof sync_path, "/v1/monitor/%s", a.provider);
        rpath = sync_path;
    }
    struct cache_key c;
    memset(&c, 0, sizeof c);
    if (cache_key_compute(method, rpath, canon, strlen(canon), &c) != CACHE_KEY_OK)
        abort();
    if (memcmp(a.bytes, c.bytes, CACHE_KEY_BYTES) != 0)
        abort();
    char *canon2 = cache_key_canonical(method, rpath, canon, strlen(canon));
    if (!canon2 || strcmp(canon, canon2) != 0)
        abort();
    free(canon2);
    free(canon);

    /* The hex form parses back to the same bytes; a sample key is derived
     * from its base and re-derives the same from a sample key. */
    struct cache_key h;
    memset(&h, 0, sizeof h);
    if (cache_key_parse_hex(a.hex, &h) != 0 || memcmp(h.bytes, a.bytes, CACHE_KEY_BYTES) != 0)
        abort();
    uint32_t k = 2 + (uint32_t)(len ? body[len - 1] : 0) % 5;
    struct cache_key s1 = a, s2 = a;
    cache_key_sample(&s1, k);
    cache_key_sample(&s2, k);
    if (memcmp(s1.bytes, s2.bytes, CACHE_KEY_BYTES) != 0 ||
        memcmp(s1.base, a.bytes, CACHE_KEY_BYTES) != 0 ||
        memcmp(s1.bytes, a.bytes, CACHE_KEY_BYTES) == 0)
        abort();
    cache_key_sample(&s2, k); /* again, from a sample key: re-derived from its base */
    if (memcmp(s1.bytes, s2.bytes, CACHE_KEY_BYTES) != 0)
        abort();
    return 0;
}
