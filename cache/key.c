/* key.c: cache keys (key.h). Owns which routes are cacheable, the canonical
 * form of a request body (defaults removed, sorted keys, compact) and the
 * SHA-256 over it. Does not judge freshness (policy.c) nor store anything
 * (store.c). Pure: no I/O, no state.
 *
 * Hash input (CACHE_KEY_SCHEMA is part of it, so bumping it is a clean key
 * space):
 *   "cloro-proxy-key\n" <schema, decimal> "\n" "POST /v1/monitor/<provider>\n"
 *   <canonical JSON: jansson JSON_COMPACT | JSON_SORT_KEYS, no trailing newline>
 * An async task is hashed as the sync call its taskType and payload stand for,
 * so both share one key (cloro-api.md section 7.2).
 *
 * Task keys (cache_task_key) hash "cloro-proxy-task\n" <domain> "\n" <text>:
 * no answer's input starts that way, so the two key spaces never meet.
 *
 * Sample keys (cache_key_sample) hash "cloro-proxy-key\n" <schema> "\nsample "
 * <K> "\n" <sample 1's key in hex>: after the schema line an answer's input
 * has "POST ", a sample's "sample ", so neither meets the other. */
#include "key.h"

#include <jansson.h>
#include <openssl/evp.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MONITOR_PREFIX  "/v1/monitor/"
#define ASYNC_TASK_PATH "/v1/async/task"

/* Which default-removal rules apply to a provider (cloro-api.md section 5). */
enum key_rule {
    RULE_CHATGPT_FLAGS = 1 << 0, /* legacy, disableWebSearch false (5.1) */
    RULE_DEVICE = 1 << 1,        /* device "desktop" (5.6, 5.7, 5.8) */
    RULE_PAGES = 1 << 2,         /* pages 1 (5.7, 5.8) */
    RULE_AIOVERVIEW = 1 << 3,    /* include.aioverview is an object (5.7) */
    RULE_GOOGLE_GOTO = 1 << 4,   /* include.googleGoto is accepted and ignored (5.6, 5.7) */
};

/* The include flags each provider documents (cloro-api.md sections 5.1 to
 * 5.8), all false by default. Only these are dropped when false: a flag cloro
 * does not know is a 400 upstream, so it must not share a valid key. */
static const char *const chatgpt_flags[] = {"html", "markdown", "rawResponse", "searchQueries",
                                            "ads",  "shopping", NULL};
static const char *const engine_flags[] = {"html", "markdown", "rawResponse", NULL};
static const char *const aimode_flags[] = {"html", "markdown", "expandProducts", NULL};
static const char *const google_flags[] = {"html", "paaAioverview", NULL};
static const char *const news_flags[] = {"html", NULL};
static const char *const no_flags[] = {NULL};

/* The sync monitor providers of cloro-api.md section 3. */
static const struct {
    const char *name;
    unsigned rules;
    const char *const *flags;
} providers[] = {
    {"chatgpt", RULE_CHATGPT_FLAGS, chatgpt_flags},
    {"gemini", 0, engine_flags},
    {"grok", 0, engine_flags},
    {"copilot", 0, engine_flags},
    {"perplexity", 0, engine_flags},
    {"aimode", RULE_DEVICE | RULE_GOOGLE_GOTO, aimode_flags},
    {"google", RULE_DEVICE | RULE_PAGES | RULE_AIOVERVIEW | RULE_GOOGLE_GOTO, google_flags},
    {"google/news", RULE_DEVICE | RULE_PAGES, news_flags},
    {"google/goto", 0, no_flags},
};

static bool listed(const char *name, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

/* Async taskType -> sync provider (cloro-api.md section 7.2). */
static const struct {
    const char *task_type;
    const char *provider;
} task_types[] = {
    {"CHATGPT", "chatgpt"}, {"GEMINI", "gemini"},           {"GROK", "grok"},
    {"COPILOT", "copilot"}, {"PERPLEXITY", "perplexity"},   {"AIMODE", "aimode"},
    {"GOOGLE", "google"},   {"GOOGLE_NEWS", "google/news"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *cache_key_task_type(const char *provider)
{
    for (size_t i = 0; provider != NULL && i < COUNT(task_types); i++)
        if (strcmp(task_types[i].provider, provider) == 0)
            return task_types[i].task_type;
    return NULL;
}

static int provider_index(const char *name, size_t len)
{
    for (size_t i = 0; i < COUNT(providers); i++) {
        if (strlen(providers[i].name) == len && memcmp(providers[i].name, name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* Only POST reaches an answer worth caching; methods are case-sensitive
 * (RFC 9110 section 9.1). An exact path match: "/v1/monitor/chatgpt/" and
 * other spellings are not cacheable. */
const char *cache_key_provider(const char *method, const char *path)
{
    if (method == NULL || path == NULL || strcmp(method, "POST") != 0)
        return NULL;
    size_t prefix_len = strlen(MONITOR_PREFIX);
    if (strncmp(path, MONITOR_PREFIX, prefix_len) != 0)
        return NULL;
    const char *rest = path + prefix_len;
    int i = provider_index(rest, strlen(rest));
    return i < 0 ? NULL : providers[i].name;
}

static void remove_if_false(json_t *obj, const char *name)
{
    if (json_is_false(json_object_get(obj, name)))
        json_object_del(obj, name);
}

static bool is_name(const char *name, const char *want)
{
    return strcmp(name, want) == 0;
}

/* Makes the defaults key.h lists implicit by removing them. Only removes,
 * and only a value of exactly the default type and value: "pages":"1" or
 * "device":"Desktop" stay (cloro would reject or treat them differently). */
static void remove_defaults(json_t *req, unsigned rules, const char *const *flags)
{
    json_t *include = json_object_get(req, "include");
    if (json_is_object(include)) {
        const char *name;
        json_t *value;
        void *tmp;
        json_object_foreach_safe(include, tmp, name, value)
        {
            if ((rules & RULE_GOOGLE_GOTO) && is_name(name, "googleGoto")) {
                json_object_del(include, name);
            } else if (json_is_false(value) && listed(name, flags)) {
                /* google's aioverview is an object, not a flag: false is
                 * not its default, so it is left for cloro to reject. */
                json_object_del(include, name);
            }
        }
        /* The aioverview object stays even when emptied: its presence is
         * what requests the AI Overview (cloro-api.md section 5.7). */
        json_t *aioverview = json_object_get(include, "aioverview");
        if ((rules & RULE_AIOVERVIEW) && json_is_object(aioverview))
            remove_if_false(aioverview, "markdown");
        if (json_object_size(include) == 0)
            json_object_del(req, "include");
    }
    if (rules & RULE_CHATGPT_FLAGS) {
        remove_if_false(req, "legacy");
        remove_if_false(req, "disableWebSearch");
    }
    if (rules & RULE_DEVICE) {
        json_t *device = json_object_get(req, "device");
        if (json_is_string(device) && json_string_length(device) == strlen("desktop") &&
            strcmp(json_string_value(device), "desktop") == 0)
            json_object_del(req, "device");
    }
    if (rules & RULE_PAGES) {
        json_t *pages = json_object_get(req, "pages");
        if (json_is_integer(pages) && json_integer_value(pages) == 1)
            json_object_del(req, "pages");
    }
}

/* The provider an async task body stands for, or -1. */
static int task_provider(const json_t *task_type)
{
    if (!json_is_string(task_type))
        return -1;
    const char *text = json_string_value(task_type);
    size_t len = json_string_length(task_type);
    for (size_t i = 0; i < COUNT(task_types); i++) {
        if (strlen(task_types[i].task_type) == len &&
            memcmp(task_types[i].task_type, text, len) == 0)
            return provider_index(task_types[i].provider, strlen(task_types[i].provider));
    }
    return -1;
}

/* The route's provider index, or -1 for POST /v1/async/task (the body says),
 * or -2 for a route that is not cacheable. */
static int route_provider(const char *method, const char *path)
{
    const char *sync = cache_key_provider(method, path);
    if (sync != NULL)
        return provider_index(sync, strlen(sync));
    if (method == NULL || path == NULL || strcmp(method, "POST") != 0 ||
        strcmp(path, ASYNC_TASK_PATH) != 0)
        return -2;
    return -1;
}

/* Canonicalizes a parsed body of the route whose provider index is index
 * (-1: an async task), changing root. On OK, *provider is a providers[] name
 * and *text a new string (free). */
static enum cache_key_result canonicalize_doc(int index, json_t *root, const char **provider,
                                              char **text)
{
    if (!json_is_object(root))
        return CACHE_KEY_INVALID;
    json_t *request = root;
    if (index < 0) {
        /* POST /v1/async/task: only taskType and payload decide the answer;
         * idempotencyKey, webhook, priority (and anything else) do not. */
        index = task_provider(json_object_get(root, "taskType"));
        request = json_object_get(root, "payload");
        if (index < 0 || !json_is_object(request))
            return CACHE_KEY_INVALID;
    }
    remove_defaults(request, providers[index].rules, providers[index].flags);
    *text = json_dumps(request, JSON_COMPACT | JSON_SORT_KEYS);
    if (*text == NULL)
        return CACHE_KEY_INVALID;
    *provider = providers[index].name;
    return CACHE_KEY_OK;
}

/* Resolves the route and canonicalizes the body. On OK, *provider is a
 * providers[] name and *text a new string (free). A failure inside jansson
 * (including out of memory) gives INVALID: a key that cannot be computed
 * means the request passes through uncached, never that it fails. */
static enum cache_key_result canonicalize(const char *method, const char *path, const void *body,
                                          size_t body_len, const char **provider, char **text)
{
    *provider = NULL;
    *text = NULL;
    int index = route_provider(method, path);
    if (index == -2)
        return CACHE_KEY_NOT_CACHEABLE;
    if (body == NULL)
        return CACHE_KEY_INVALID;
    /* Duplicate names are rejected: which one cloro would honour is unknown. */
    json_error_t error;
    json_t *root = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &error);
    enum cache_key_result r = canonicalize_doc(index, root, provider, text);
    json_decref(root);
    return r;
}

static int sha256_key(const char *provider, const char *text, unsigned char out[CACHE_KEY_BYTES])
{
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "cloro-proxy-key\n%d\nPOST " MONITOR_PREFIX "%s\n",
                     CACHE_KEY_SCHEMA, provider);
    if (n < 0 || (size_t)n >= sizeof prefix)
        return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return -1;
    unsigned int out_len = 0;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, prefix, (size_t)n) == 1 &&
             EVP_DigestUpdate(ctx, text, strlen(text)) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == CACHE_KEY_BYTES;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

void cache_task_key(const char *domain, const char *text, unsigned char out[CACHE_KEY_BYTES])
{
    static const char prefix[] = "cloro-proxy-task\n";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int out_len = 0;
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, prefix, sizeof prefix - 1) == 1 &&
             EVP_DigestUpdate(ctx, domain, strlen(domain)) == 1 &&
             EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
             EVP_DigestUpdate(ctx, text, strlen(text)) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == CACHE_KEY_BYTES;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        fputs("cloro-proxy: SHA-256 of a task key failed (OpenSSL)\n", stderr);
        abort();
    }
}

static void fill_hex(struct cache_key *key)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < CACHE_KEY_BYTES; i++) {
        key->hex[2 * i] = digits[key->bytes[i] >> 4];
        key->hex[2 * i + 1] = digits[key->bytes[i] & 0x0f];
    }
    key->hex[CACHE_KEY_HEX_LEN] = '\0';
}

/* Hashes canonical text (freed here) into out. */
static enum cache_key_result finish_key(const char *provider, char *text, struct cache_key *out)
{
    int rc = sha256_key(provider, text, out->bytes);
    free(text);
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        return CACHE_KEY_INVALID;
    }
    fill_hex(out);
    snprintf(out->provider, sizeof out->provider, "%s", provider);
    return CACHE_KEY_OK;
}

/* out is zeroed first, so it is empty unless the result is OK. */
enum cache_key_result cache_key_compute(const char *method, const char *path, const void *body,
                                        size_t body_len, struct cache_key *out)
{
    memset(out, 0, sizeof *out);
    const char *provider;
    char *text;
    enum cache_key_result r = canonicalize(method, path, body, body_len, &provider, &text);
    if (r != CACHE_KEY_OK)
        return r;
    return finish_key(provider, text, out);
}

enum cache_key_result cache_key_compute_doc(const char *method, const char *path,
                                            const json_t *body, struct cache_key *out)
{
    memset(out, 0, sizeof *out);
    int index = route_provider(method, path);
    if (index == -2)
        return CACHE_KEY_NOT_CACHEABLE;
    /* Canonicalizing changes the document: work on a copy of it. */
    json_t *copy = json_deep_copy(body);
    const char *provider = NULL;
    char *text = NULL;
    enum cache_key_result r = canonicalize_doc(index, copy, &provider, &text);
    json_decref(copy);
    if (r != CACHE_KEY_OK)
        return r;
    return finish_key(provider, text, out);
}

char *cache_key_canonical(const char *method, const char *path, const void *body, size_t body_len)
{
    const char *provider;
    char *text;
    if (canonicalize(method, path, body, body_len, &provider, &text) != CACHE_KEY_OK)
        return NULL;
    return text;
}

void cache_key_sample(struct cache_key *key, uint32_t sample)
{
    static const unsigned char zero[CACHE_KEY_BYTES];
    if (key->sample >= 2 && memcmp(key->base, zero, sizeof zero) != 0) {
        /* Already a sample: back to sample 1 first. */
        memcpy(key->bytes, key->base, CACHE_KEY_BYTES);
        fill_hex(key);
    }
    key->sample = 0;
    memset(key->base, 0, sizeof key->base);
    if (sample < 2)
        return;
    char input[160];
    int n = snprintf(input, sizeof input, "cloro-proxy-key\n%d\nsample %lu\n%s", CACHE_KEY_SCHEMA,
                     (unsigned long)sample, key->hex);
    unsigned char out[CACHE_KEY_BYTES];
    unsigned int out_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = n > 0 && (size_t)n < sizeof input && ctx != NULL &&
             EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, input, (size_t)n) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == CACHE_KEY_BYTES;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        fputs("cloro-proxy: SHA-256 of a sample key failed (OpenSSL)\n", stderr);
        abort();
    }
    memcpy(key->base, key->bytes, CACHE_KEY_BYTES);
    memcpy(key->bytes, out, CACHE_KEY_BYTES);
    key->sample = sample;
    fill_hex(key);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* key->hex is written in lowercase, as cache_key_compute writes it. On
 * failure key is not modified. */
int cache_key_parse_hex(const char *text, struct cache_key *key)
{
    if (text == NULL)
        return -1;
    unsigned char bytes[CACHE_KEY_BYTES];
    for (size_t i = 0; i < CACHE_KEY_BYTES; i++) {
        /* A NUL ends the text early and fails hex_value: no read past it. */
        int hi = hex_value(text[2 * i]);
        if (hi < 0)
            return -1;
        int lo = hex_value(text[2 * i + 1]);
        if (lo < 0)
            return -1;
        bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    if (text[CACHE_KEY_HEX_LEN] != '\0')
        return -1;
    memset(key, 0, sizeof *key);
    memcpy(key->bytes, bytes, sizeof bytes);
    fill_hex(key);
    return 0;
}
