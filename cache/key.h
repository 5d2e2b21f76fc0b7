/* key.h: cache keys. A key is SHA-256 over the key-schema version, the
 * method, the route and a canonical form of the JSON body (jansson, sorted
 * keys, compact), so requests that ask cloro the same question share one key
 * however their JSON is written. Pure: no I/O, no state.
 *
 * Canonical form (cloro-api.md sections 4 and 5):
 *   - defaults the contract states for certain are made explicit by removal:
 *     an include flag the provider documents, when false (an unknown flag
 *     stays: it is cloro's 400 to give), include.aioverview.markdown false, an
 *     empty include, ChatGPT legacy/disableWebSearch false, device "desktop"
 *     (aimode, google, google/news), pages 1 (google, google/news); and the
 *     deprecated include.googleGoto, which cloro ignores;
 *   - disputed defaults (country, section 4) are left as sent: requests that
 *     differ there stay distinct;
 *   - for async submissions (POST /v1/async/task) the key is the one of the
 *     sync call its taskType and payload stand for; idempotencyKey, webhook
 *     and priority do not change the answer and are left out.
 *
 * Task keys (cache_task_key) name the proxy's own async task records and
 * their index entries in the store: another hash input, so they never meet
 * an answer's key.
 *
 * Samples (X-Cache-Sample: K, cache_key_sample): AI answers vary from run to
 * run, so a request may ask for its K-th sample. Sample 1 is the key above,
 * unchanged (turning samples on invalidates nothing); sample K >= 2 is
 * another key, derived from sample 1's (its "base"). */
#ifndef CLORO_CACHE_KEY_H
#define CLORO_CACHE_KEY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever the rules above change: a new version is a clean key space. */
#define CACHE_KEY_SCHEMA   1
#define CACHE_KEY_BYTES    32
#define CACHE_KEY_HEX_LEN  (CACHE_KEY_BYTES * 2)
#define CACHE_PROVIDER_MAX 16

struct cache_key {
    unsigned char bytes[CACHE_KEY_BYTES];
    char hex[CACHE_KEY_HEX_LEN + 1];
    char provider[CACHE_PROVIDER_MAX];   /* "chatgpt", ..., "google/news", "google/goto" */
    uint32_t sample;                     /* 0 or 1: the request's own key; K >= 2: its sample K */
    unsigned char base[CACHE_KEY_BYTES]; /* sample >= 2: the key of sample 1; else zero */
};

enum cache_key_result {
    CACHE_KEY_OK,
    CACHE_KEY_NOT_CACHEABLE, /* a route whose answers are never cached (credits, async status...) */
    CACHE_KEY_INVALID,       /* a cacheable route, but the body is not a JSON object (or has a
                                taskType cloro does not know): pass it through, cache nothing */
};

/* The provider of a cacheable monitor route ("chatgpt" for
 * /v1/monitor/chatgpt), or NULL. Borrowed, static. The providers are those of
 * cloro-api.md section 3. NULL for POST /v1/async/task too: its provider
 * depends on the body, so ask cache_key_compute whether a request is
 * cacheable. */
const char *cache_key_provider(const char *method, const char *path);

/* The async taskType of a provider ("CHATGPT" for "chatgpt"), or NULL (goto
 * has none). Static. */
const char *cache_key_task_type(const char *provider);

/* Computes the key of a request. path is without the query string. */
enum cache_key_result cache_key_compute(const char *method, const char *path, const void *body,
                                        size_t body_len, struct cache_key *out);

/* The same for a body already parsed (not changed). Duplicate names cannot
 * be detected here: the caller parsed with JSON_REJECT_DUPLICATES. */
enum cache_key_result cache_key_compute_doc(const char *method, const char *path,
                                            const json_t *body, struct cache_key *out);

/* The canonical body text the key hashes (for tests and `cache show`), or
 * NULL when the body is not cacheable. New string: the caller frees it. */
char *cache_key_canonical(const char *method, const char *path, const void *body, size_t body_len);

/* Makes key (the key of a request, sample 1) the key of its sample K. K <= 1
 * leaves it unchanged. K >= 2 keeps the key of sample 1 in key->base and sets
 * key->bytes to SHA-256 over
 *   "cloro-proxy-key\n" <CACHE_KEY_SCHEMA, decimal> "\nsample " <K, decimal>
 *   "\n" <the key of sample 1, 64 lowercase hex digits>
 * (no answer's hash input has "sample" there, so the spaces never meet);
 * provider is kept. A key already of a sample is re-derived from its base. */
void cache_key_sample(struct cache_key *key, uint32_t sample);

/* Parses 64 hex digits (either case) into key->bytes and key->hex. Returns 0,
 * or -1 when text is not a key. provider is left empty. */
int cache_key_parse_hex(const char *text, struct cache_key *key);

/* The 32-byte key of a task record or index entry: SHA-256 over
 * "cloro-proxy-task\n" <domain> "\n" <text>. Domains used by the proxy:
 * "id" (text: a task id) and "idem" (text: an idempotencyKey). Never equal
 * to an answer's key (different prefix). domain must not contain a newline
 * (the domains are constants); text may hold anything but a NUL. Aborts
 * when OpenSSL cannot hash (it cannot fail short of running out of memory). */
void cache_task_key(const char *domain, const char *text, unsigned char out[CACHE_KEY_BYTES]);

#endif
