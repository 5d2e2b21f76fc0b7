/* config.c: the key table, INI loading with line numbers, value parsing and
 * validation, and the API key's source. libinih (Debian r55) gives its handler
 * no line number and reads at most INI_MAX_LINE bytes a line, so the reader
 * handed to ini_parse_stream counts lines and reports over-long ones. */
#include "config.h"
#include "ini_lines.h"
#include "artifact_urls.h"
#include "mode.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB  (INT64_C(1024))
#define MIB  (KIB * 1024)
#define GIB  (MIB * 1024)
#define SEC  (INT64_C(1000))
#define HOUR (SEC * 3600)

#define KEY(name, type, def, min, max, help)                                                       \
    {                                                                                              \
#name, type, offsetof(struct config, name), def, min, max, help, NULL                      \
    }
/* Durations are stored in milliseconds under a field named <key>_ms. */
#define KEY_MS(name, def, min, max, help)                                                          \
    {                                                                                              \
#name, CONFIG_DURATION, offsetof(struct config, name##_ms), def, min, max, help, NULL      \
    }

#define KEY_CHOICE(name, def, choices, help)                                                       \
    {                                                                                              \
#name, CONFIG_CHOICE, offsetof(struct config, name), def, 0, 0, help, choices              \
    }

static const struct config_key keys[] = {
    KEY(listen, CONFIG_LISTEN, "127.0.0.1:8787", 0, 0,
        "address and port to serve on; keep 127.0.0.1 unless the proxy must be reached remotely"),
    KEY(upstream, CONFIG_URL, "https://api.cloro.dev", 0, 0, "base URL of the cloro API"),
    KEY(api_key_file, CONFIG_PATH, "", 0, 0,
        "file holding the cloro API key (CLORO_API_KEY in the environment wins); empty: "
        "forward each client's own Authorization"),
    KEY(cache_dir, CONFIG_PATH, "./var/cache", 0, 0, "directory of the cache store"),
    KEY(log_level, CONFIG_LOG_LEVEL, "info", 0, 0, "error, warn, info or debug"),
    KEY(access_log, CONFIG_BOOL, "true", 0, 0, "one logfmt line per request on stderr"),
    KEY(max_body_bytes, CONFIG_BYTES, "16MiB", 1, 1 * GIB,
        "largest request body accepted; larger -> 413 PAYLOAD_TOO_LARGE"),
    KEY(max_header_bytes, CONFIG_BYTES, "64KiB", 1 * KIB, 16 * MIB,
        "largest request head (request line and headers) accepted"),
    KEY(max_response_bytes, CONFIG_BYTES, "64MiB", 1 * KIB, 4 * GIB,
        "largest upstream response body relayed; larger -> 502 UPSTREAM_UNAVAILABLE"),
    KEY_MS(upstream_timeout, "300s", 1, 24 * HOUR,
           "whole upstream call, connect to last byte; cloro advises at least 300s for sync calls"),
    KEY_MS(upstream_connect_timeout, "10s", 1, HOUR, "TCP and TLS connect to the upstream"),
    KEY(upstream_max_connections, CONFIG_COUNT, "256", 1, 65536,
        "safety cap on open connections to the upstream"),
    KEY_MS(client_timeout, "60s", SEC, HOUR,
           "idle keep-alive and request read/write timeout for clients"),
    KEY_MS(client_request_timeout, "30s", 100, HOUR,
           "a request's head and body must arrive within this from its first byte; slower "
           "clients get 408 and are closed"),
    KEY(max_connections, CONFIG_COUNT, "1024", 1, 1000000,
        "client connections held at most; when full, the one idle longest is closed for a "
        "newcomer (none idle: the newcomer gets 503)"),
    KEY_MS(drain_timeout, "30s", 0, HOUR,
           "on SIGTERM/SIGINT, how long in-flight requests may take to finish"),
    KEY(cache, CONFIG_BOOL, "true", 0, 0,
        "answer identical requests from the cache (false: pass everything through)"),
    KEY_MS(cache_ttl, "24h", 0, 3650 * 24 * HOUR,
           "how long a stored answer stays fresh; 0: forever; [provider NAME] sections "
           "override it"),
    KEY(max_cache_bytes, CONFIG_BYTES, "1GiB", 1 * MIB, 1024 * GIB,
        "bound on stored answers; least recently used ones are evicted beyond it"),
    KEY_MS(stale_if_error, "168h", 0, 3650 * 24 * HOUR,
           "when the upstream fails, serve an expired answer this recent; 0: never"),
    KEY_CHOICE(mode, "online", PROXY_MODE_CHOICES,
               "online; offline: never contact the upstream, serve only what is stored; record: "
               "stored answers never expire; refresh: always ask upstream and replace; POST "
               "/_proxy/mode switches it"),
    KEY(max_samples, CONFIG_COUNT, "100", 1, 1000000,
        "largest sample number a request may ask for with X-Cache-Sample (1..max_samples); "
        "each sample is cached under its own key"),
    KEY(max_concurrency, CONFIG_COUNT, "10", 1, 100000,
        "monitor calls in flight upstream at most (cloro's plan slots); the upstream's lower "
        "advertised limit wins"),
    KEY(rate_limit_per_endpoint, CONFIG_COUNT, "1000", 0, 1000000,
        "upstream calls per second per endpoint (cloro: 1,000/s per key and endpoint); 0: off"),
    KEY(rate_limit_global, CONFIG_COUNT, "0", 0, 1000000,
        "upstream calls per second across endpoints (500 on older plans); 0: off"),
    KEY(max_queue, CONFIG_COUNT, "10000", 0, 10000000,
        "calls waiting for a slot or a token at most; beyond it -> 429"),
    KEY_MS(queue_timeout, "120s", 1, HOUR, "longest wait in the queue; beyond it -> 429"),
    KEY(max_retries, CONFIG_COUNT, "3", 0, 20,
        "retries of an upstream 429, 503, 502, 504 or connection failure"),
    KEY_MS(retry_base_delay, "200ms", 1, 60 * SEC,
           "first retry backoff (doubling, full jitter); Retry-After wins when given"),
    KEY_MS(retry_max_delay, "5s", 1, 600 * SEC, "longest backoff between two attempts"),
    KEY(artifact_hosts, CONFIG_HOST_LIST, "cdn.cloro.dev, storage.cloro.dev", 0, 0,
        "hosts whose HTML artifact URLs are captured and rewritten; no other URL is fetched"),
    KEY(artifact_concurrency, CONFIG_COUNT, "4", 1, 256, "artifact downloads at once"),
    KEY(max_artifact_bytes, CONFIG_BYTES, "20MiB", 1 * KIB, 1 * GIB,
        "largest artifact stored; larger ones are counted and not kept"),
    KEY_MS(artifact_ttl, "24h", 1, 3650 * 24 * HOUR,
           "how long an artifact URL lives after its answer (cloro: 24 h from generation)"),
    KEY(rewrite_artifact_urls, CONFIG_BOOL, "true", 0, 0,
        "point every html URL in answers at the proxy's stored copy"),
    KEY(public_url, CONFIG_URL, "http://127.0.0.1:8787", 0, 0,
        "base of the rewritten artifact URLs: how clients reach this proxy"),
    KEY_MS(artifact_wait, "10s", 1, 10 * 60 * SEC,
           "how long a request for an artifact not yet captured waits for it"),
    KEY(finish_abandoned_calls, CONFIG_BOOL, "true", 0, 0,
        "a call whose client left runs to its end and is cached (it is paid for); false cancels "
        "it"),
    KEY(async_tasks, CONFIG_BOOL, "true", 0, 0,
        "async submissions are answered from the cache, deduplicated and followed by the proxy; "
        "false passes /v1/async/ through untouched"),
    KEY_MS(poll_initial, "250ms", 10, HOUR,
           "shortest wait between two polls of a task the proxy created"),
    KEY_MS(poll_interval, "5s", 10, HOUR,
           "polls back off (an eighth of the task's age) up to this; clients polling a task "
           "cause at most one upstream poll per interval"),
    KEY_CHOICE(webhook_delivery, "proxy", "proxy|upstream",
               "proxy: the proxy delivers task webhooks itself (it reaches URLs on this "
               "machine); upstream: cloro does"),
    KEY(webhook_secret_file, CONFIG_PATH, "", 0, 0,
        "file holding the secret that signs webhook deliveries (CLORO_WEBHOOK_SECRET wins); "
        "empty: unsigned"),
    KEY(webhook_max_attempts, CONFIG_COUNT, "5", 1, 100, "delivery attempts of one webhook"),
    KEY_MS(webhook_retry_base, "2m", 1, 24 * HOUR,
           "wait after the first failed delivery; doubles after each (2, 4, 8, 16 min)"),
    KEY_MS(webhook_timeout, "10s", 1, HOUR, "one delivery attempt"),
    KEY_CHOICE(upstream_mode, "sync", "sync|async",
               "async: sync monitor calls that miss the cache are asked as async tasks (cheaper) "
               "and answered in the sync shape; [provider NAME] sections and the "
               "X-Proxy-Upstream-Mode header override it"),
    KEY(max_open_tasks, CONFIG_COUNT, "100", 1, 100000,
        "async tasks the credit saver keeps open upstream at once; more calls wait"),
    KEY_MS(async_batch_window, "0", 0, 10 * SEC,
           "credit saver: calls within this window go upstream in one batch (up to 500); 0: "
           "each alone"),
    KEY(sync_surcharge, CONFIG_COUNT, "2", 0, 1000,
        "credits a sync call costs over the same async task (cloro: 2), counted as saved"),
    KEY_MS(task_retention, "30d", 0, 3650 * 24 * HOUR,
           "ended async task records (their webhook delivered or given up) are kept this long "
           "after they end, then deleted with their idempotency index; 0: for good"),
    KEY(usage_retention_days, CONFIG_COUNT, "90", 0, 36500,
        "days of usage counters kept in the store (per member, provider and UTC day); 0: for "
        "good"),
    KEY_CHOICE(auth, "auto", "auto|members|open",
               "members: every /v1/ request needs a member's token (Authorization: Bearer); "
               "open: anyone may call; auto: members once any [member NAME] exists"),
    KEY(members_file, CONFIG_PATH, "", 0, 0,
        "file of more [member NAME] sections, kept by 'cloro-proxy members add|rm'; re-read "
        "when it changes"),
    KEY(admin_token_file, CONFIG_PATH, "", 0, 0,
        "file holding the token of the /_proxy/ admin routes (CLORO_ADMIN_TOKEN wins); "
        "required by them once any member exists"),
};

static const char *const provider_names[CONFIG_PROVIDER_COUNT] = {
    "chatgpt", "gemini", "grok",        "copilot",    "perplexity",
    "aimode",  "google", "google/news", "google/goto"};

static int provider_index(const char *name)
{
    for (int i = 0; i < CONFIG_PROVIDER_COUNT; i++)
        if (strcmp(provider_names[i], name) == 0)
            return i;
    return -1;
}

bool config_upstream_async(const struct config *cfg, const char *provider)
{
    int i = provider != NULL ? provider_index(provider) : -1;
    if (i >= 0 && cfg->providers[i].upstream_async != CONFIG_INHERIT)
        return cfg->providers[i].upstream_async != 0;
    return strcmp(cfg->upstream_mode, "async") == 0;
}

int64_t config_cache_ttl_ms(const struct config *cfg, const char *provider)
{
    int i = provider != NULL ? provider_index(provider) : -1;
    if (i >= 0 && cfg->providers[i].cache_ttl_ms != CONFIG_INHERIT)
        return cfg->providers[i].cache_ttl_ms;
    return cfg->cache_ttl_ms;
}

#define KEY_COUNT (sizeof keys / sizeof keys[0])

const struct config_key *config_keys(size_t *count)
{
    *count = KEY_COUNT;
    return keys;
}

const struct config_key *config_key_find(const char *name)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

void config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char **grown = realloc(errs->lines, (errs->count + 1) * sizeof *grown);
    if (grown == NULL)
        abort();
    errs->lines = grown;
    errs->lines[errs->count++] = line;
}

void config_errors_free(struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->count = 0;
}

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

int config_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Parses "<digits><unit>" where unit is looked up in units; a bare number
 * takes bare_scale. Rejects overflow, negatives and trailing junk. */
struct unit {
    const char *suffix;
    int64_t scale;
};

static int parse_scaled(const char *text, const struct unit *units, size_t unit_count,
                        int64_t bare_scale, int64_t *out)
{
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno != 0 || n > INT64_MAX)
        return -1;
    while (*end == ' ')
        end++;
    int64_t scale = bare_scale;
    if (*end != '\0') {
        scale = 0;
        for (size_t i = 0; i < unit_count; i++) {
            if (strcasecmp(end, units[i].suffix) == 0) {
                scale = units[i].scale;
                break;
            }
        }
        if (scale == 0)
            return -1;
    }
    if (n != 0 && (int64_t)n > INT64_MAX / scale)
        return -1;
    *out = (int64_t)n * scale;
    return 0;
}

int config_parse_bytes(const char *text, int64_t *out)
{
    static const struct unit units[] = {{"b", 1},    {"k", KIB},  {"kb", KIB},  {"kib", KIB},
                                        {"m", MIB},  {"mb", MIB}, {"mib", MIB}, {"g", GIB},
                                        {"gb", GIB}, {"gib", GIB}};
    return parse_scaled(text, units, sizeof units / sizeof units[0], 1, out);
}

int config_parse_duration_ms(const char *text, int64_t *out)
{
    static const struct unit units[] = {
        {"ms", 1}, {"s", SEC}, {"m", 60 * SEC}, {"h", HOUR}, {"d", 24 * HOUR}};
    return parse_scaled(text, units, sizeof units / sizeof units[0], SEC, out);
}

int config_parse_listen(const char *text, char **host, uint16_t *port)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text)
        return -1;
    const char *h = text;
    size_t hlen = (size_t)(colon - text);
    if (h[0] == '[') { /* [::1]:8787 */
        if (hlen < 3 || h[hlen - 1] != ']')
            return -1;
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen) != NULL) {
        return -1; /* bare IPv6 needs brackets */
    }
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return -1;
    for (const char *q = p; *q != '\0'; q++)
        if (!isdigit((unsigned char)*q))
            return -1;
    long n = strtol(p, NULL, 10);
    if (n > 65535)
        return -1;
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)h[i]))
            return -1;
    *host = strndup(h, hlen);
    if (*host == NULL)
        abort();
    *port = (uint16_t)n;
    return 0;
}

static void set_string(struct config *cfg, const struct config_key *k, const char *value)
{
    char **slot = (char **)((char *)cfg + k->offset);
    free(*slot);
    *slot = dup_or_die(value);
}

/* Writes v in the largest unit that divides it ("24h", "16MiB", "250ms"). */
static void format_with_unit(char *out, size_t out_size, int64_t v, const struct unit *units,
                             size_t unit_count)
{
    for (size_t i = unit_count; i-- > 0;) {
        if (v != 0 && v % units[i].scale == 0) {
            snprintf(out, out_size, "%lld%s", (long long)(v / units[i].scale), units[i].suffix);
            return;
        }
    }
    snprintf(out, out_size, "%lld", (long long)v);
}

static int check_bounds(const struct config_key *k, int64_t v, char *err, size_t err_size)
{
    static const struct unit bytes[] = {{"B", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", GIB}};
    static const struct unit times[] = {{"ms", 1}, {"s", SEC}, {"m", 60 * SEC}, {"h", HOUR}};
    if (v >= k->min && v <= k->max)
        return 0;
    char lo[32], hi[32];
    const struct unit *units = k->type == CONFIG_BYTES      ? bytes
                               : k->type == CONFIG_DURATION ? times
                                                            : NULL;
    if (units != NULL) {
        format_with_unit(lo, sizeof lo, k->min, units, 4);
        format_with_unit(hi, sizeof hi, k->max, units, 4);
    } else {
        snprintf(lo, sizeof lo, "%lld", (long long)k->min);
        snprintf(hi, sizeof hi, "%lld", (long long)k->max);
    }
    snprintf(err, err_size, "out of range: must be between %s and %s", lo, hi);
    return -1;
}

int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t err_size)
{
    const struct config_key *k = config_key_find(name);
    if (k == NULL) {
        snprintf(err, err_size, "unknown key");
        return -1;
    }
    void *slot = (char *)cfg + k->offset;
    int64_t n;
    switch (k->type) {
    case CONFIG_HOST_LIST: {
        struct artifact_hosts hosts;
        if (artifact_hosts_parse(value, &hosts, err, err_size) != 0)
            return -1;
        artifact_hosts_free(&hosts);
        set_string(cfg, k, value);
        return 0;
    }
    case CONFIG_STRING:
    case CONFIG_PATH:
        set_string(cfg, k, value);
        if (slot == &cfg->api_key_file)
            cfg->api_key_file_line = 0; /* a flag: no line to name (a file sets it after) */
        if (slot == &cfg->members_file)
            cfg->members_file_line = 0;
        if (slot == &cfg->admin_token_file)
            cfg->admin_token_file_line = 0;
        return 0;
    case CONFIG_LISTEN: {
        char *host;
        uint16_t port;
        if (config_parse_listen(value, &host, &port) != 0) {
            snprintf(err, err_size,
                     "expected HOST:PORT (e.g. 127.0.0.1:8787 or [::1]:8787), got '%s'", value);
            return -1;
        }
        free(cfg->listen_host);
        cfg->listen_host = host;
        cfg->listen_port = port;
        set_string(cfg, k, value);
        return 0;
    }
    case CONFIG_URL: {
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
            snprintf(err, err_size, "expected an http:// or https:// URL, got '%s'", value);
            return -1;
        }
        const char *host = strstr(value, "://") + 3;
        if (*host == '\0' || *host == '/' || strpbrk(value, " \t\r\n?#") != NULL) {
            snprintf(err, err_size, "expected a base URL like https://api.cloro.dev, got '%s'",
                     value);
            return -1;
        }
        set_string(cfg, k, value);
        char *url = *(char **)slot;
        size_t len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
            url[--len] = '\0';
        return 0;
    }
    case CONFIG_BOOL:
        if (config_parse_bool(value, (bool *)slot) != 0) {
            snprintf(err, err_size, "expected true or false, got '%s'", value);
            return -1;
        }
        return 0;
    case CONFIG_CHOICE: {
        size_t len = strlen(value);
        for (const char *c = k->choices; c != NULL && *c != '\0';) {
            const char *end = strchr(c, '|');
            size_t word = end != NULL ? (size_t)(end - c) : strlen(c);
            if (word == len && strncmp(c, value, word) == 0) {
                set_string(cfg, k, value);
                return 0;
            }
            c = end != NULL ? end + 1 : c + word;
        }
        snprintf(err, err_size, "expected one of %s, got '%s'", k->choices, value);
        return -1;
    }
    case CONFIG_LOG_LEVEL:
        if (!log_level_parse(value, (enum log_level *)slot)) {
            snprintf(err, err_size, "expected error, warn, info or debug, got '%s'", value);
            return -1;
        }
        return 0;
    case CONFIG_COUNT: {
        char *end;
        if (!isdigit((unsigned char)value[0]) && value[0] != '-') {
            snprintf(err, err_size, "expected a whole number, got '%s'", value);
            return -1;
        }
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0') {
            snprintf(err, err_size, "expected a whole number, got '%s'", value);
            return -1;
        }
        if (check_bounds(k, v, err, err_size) != 0)
            return -1;
        *(int64_t *)slot = v;
        return 0;
    }
    case CONFIG_BYTES:
        if (config_parse_bytes(value, &n) != 0) {
            snprintf(err, err_size, "expected a size like 512KiB or 16MiB, got '%s'", value);
            return -1;
        }
        if (check_bounds(k, n, err, err_size) != 0)
            return -1;
        *(size_t *)slot = (size_t)n;
        return 0;
    case CONFIG_DURATION:
        if (config_parse_duration_ms(value, &n) != 0) {
            snprintf(err, err_size, "expected a duration like 500ms, 30s, 5m or 1h, got '%s'",
                     value);
            return -1;
        }
        if (check_bounds(k, n, err, err_size) != 0)
            return -1;
        *(int64_t *)slot = n;
        return 0;
    }
    snprintf(err, err_size, "unsupported key type");
    return -1;
}

void config_init(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < CONFIG_PROVIDER_COUNT; i++) {
        cfg->providers[i].name = provider_names[i];
        cfg->providers[i].cache_ttl_ms = CONFIG_INHERIT;
        cfg->providers[i].upstream_async = CONFIG_INHERIT;
    }
    char err[256];
    for (size_t i = 0; i < KEY_COUNT; i++) {
        if (config_set(cfg, keys[i].name, keys[i].default_value, err, sizeof err) != 0)
            abort(); /* a bad default is a bug in the table */
    }
}

void config_deinit(struct config *cfg)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        enum config_type t = keys[i].type;
        if (t == CONFIG_STRING || t == CONFIG_PATH || t == CONFIG_LISTEN || t == CONFIG_URL ||
            t == CONFIG_HOST_LIST || t == CONFIG_CHOICE) {
            char **slot = (char **)((char *)cfg + keys[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
    free(cfg->listen_host);
    free(cfg->config_file);
    if (cfg->api_key != NULL) {
        memset(cfg->api_key, 0, strlen(cfg->api_key));
        free(cfg->api_key);
    }
    if (cfg->webhook_secret != NULL) {
        memset(cfg->webhook_secret, 0, strlen(cfg->webhook_secret));
        free(cfg->webhook_secret);
    }
    if (cfg->admin_token != NULL) {
        memset(cfg->admin_token, 0, strlen(cfg->admin_token));
        free(cfg->admin_token);
    }
    member_list_free(&cfg->members);
    memset(cfg, 0, sizeof *cfg);
}

/* State shared by the line-counting reader and the handler. */
struct load_ctx {
    struct ini_lines in; /* file, path, line the handler is looking at, errors */
    struct config *cfg;
    bool seen[KEY_COUNT];
    struct member *member; /* the [member NAME] being read; NULL: its keys are skipped */
};

/* The only sections are [provider NAME] and [member NAME]; any other is
 * reported here, even an empty one, and on_ini_value skips the keys under
 * it (inih is handed every complete header). */
static bool on_section(void *arg, const char *header, const char *close)
{
    struct load_ctx *ctx = arg;
    ctx->member = NULL;
    if (close == NULL)
        return false;                 /* reported by ini_lines_read */
    char member[MEMBER_NAME_MAX + 2]; /* truncated past the longest: still refused */
    if (ini_lines_member_name(header, close, member, sizeof member)) {
        ctx->member =
            member_list_begin(&ctx->cfg->members, member, ctx->in.path, ctx->in.line, ctx->in.errs);
        return true;
    }
    char name[64] = "";
    int name_len = (int)(close - header - 1);
    if (name_len > 9 && name_len < (int)sizeof name && strncmp(header + 1, "provider ", 9) == 0)
        snprintf(name, sizeof name, "%.*s", name_len - 9, header + 10);
    if (name[0] == '\0' || provider_index(name) < 0)
        config_errors_add(ctx->in.errs,
                          "%s:%d: unknown section %.*s: the sections are [member NAME] "
                          "and [provider NAME] with NAME one of chatgpt, gemini, grok, "
                          "copilot, perplexity, aimode, google, google/news, google/goto",
                          ctx->in.path, ctx->in.line, (int)(close - header + 1), header);
    return true;
}

static char *read_line(char *buf, int size, void *stream)
{
    return ini_lines_read(&((struct load_ctx *)stream)->in, buf, size);
}

/* A key of a [provider NAME] section. Unknown sections were reported by
 * read_line: their keys are skipped. */
static int on_provider_value(struct load_ctx *ctx, const char *section, const char *name,
                             const char *value)
{
    int i = strncmp(section, "provider ", 9) == 0 ? provider_index(section + 9) : -1;
    if (i < 0)
        return 1;
    if (strcmp(name, "upstream_mode") == 0) {
        if (strcmp(value, "sync") != 0 && strcmp(value, "async") != 0) {
            config_errors_add(ctx->in.errs,
                              "%s:%d: upstream_mode in [%s]: expected sync or async, got '%s'",
                              ctx->in.path, ctx->in.line, section, value);
            return 1;
        }
        ctx->cfg->providers[i].upstream_async = strcmp(value, "async") == 0;
        return 1;
    }
    if (strcmp(name, "cache_ttl") != 0) {
        config_errors_add(ctx->in.errs,
                          "%s:%d: unknown key '%s' in [%s]: a provider section takes cache_ttl "
                          "and upstream_mode",
                          ctx->in.path, ctx->in.line, name, section);
        return 1;
    }
    const struct config_key *k = config_key_find("cache_ttl");
    int64_t ms;
    if (config_parse_duration_ms(value, &ms) != 0 || ms < k->min || ms > k->max) {
        config_errors_add(ctx->in.errs,
                          "%s:%d: cache_ttl in [%s]: expected a duration like 1h, or 0 for "
                          "forever, got '%s'",
                          ctx->in.path, ctx->in.line, section, value);
        return 1;
    }
    ctx->cfg->providers[i].cache_ttl_ms = ms;
    return 1;
}

static int on_ini_value(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    if (strncmp(section, "member ", 7) == 0) {
        if (ctx->member != NULL)
            member_set(ctx->member, name, value, ctx->in.path, ctx->in.line, ctx->in.errs);
        return 1;
    }
    if (section[0] != '\0')
        return on_provider_value(ctx, section, name, value);
    const struct config_key *k = config_key_find(name);
    if (k == NULL) {
        config_errors_add(ctx->in.errs, "%s:%d: unknown key '%s' (see conf/cloro-proxy.conf)",
                          ctx->in.path, ctx->in.line, name);
        return 1;
    }
    size_t index = (size_t)(k - keys);
    if (ctx->seen[index])
        config_errors_add(ctx->in.errs, "%s:%d: '%s' is set twice; the last value wins",
                          ctx->in.path, ctx->in.line, name);
    ctx->seen[index] = true;
    char err[512];
    if (config_set(ctx->cfg, name, value, err, sizeof err) != 0) {
        config_errors_add(ctx->in.errs, "%s:%d: %s: %s", ctx->in.path, ctx->in.line, name, err);
        return 1;
    }
    if (strcmp(name, "api_key_file") == 0)
        ctx->cfg->api_key_file_line = ctx->in.line;
    if (strcmp(name, "members_file") == 0)
        ctx->cfg->members_file_line = ctx->in.line;
    if (strcmp(name, "admin_token_file") == 0)
        ctx->cfg->admin_token_file_line = ctx->in.line;
    return 1;
}

size_t config_load_file(struct config *cfg, const char *path, struct config_errors *errs)
{
    size_t before = errs->count;
    struct load_ctx ctx = {.cfg = cfg};
    ctx.in = (struct ini_lines){.file = fopen(path, "r"),
                                .path = path,
                                .errs = errs,
                                .on_section = on_section,
                                .arg = &ctx};
    if (ctx.in.file == NULL) {
        config_errors_add(errs, "%s: cannot read: %s", path, strerror(errno));
        return errs->count - before;
    }
    free(cfg->config_file);
    cfg->config_file = dup_or_die(path);
    size_t first_member = cfg->members.count;
    int rc = ini_parse_stream(read_line, &ctx, on_ini_value, &ctx);
    if (rc > 0) {
        /* What read_line did not catch (an empty key name, say): inih tells
         * only the first such line. */
        config_errors_add(errs, "%s:%d: not a valid 'key = value' line", path, rc);
    } else if (rc < 0) {
        config_errors_add(errs, "%s: read error", path);
    }
    fclose(ctx.in.file);
    member_list_check(&cfg->members, first_member, path, errs);
    cfg->config_member_count = cfg->members.count;
    return errs->count - before;
}

static char *read_key_file(const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_size, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf, f);
    bool too_long = n == sizeof buf;
    fclose(f);
    if (too_long) {
        memset(buf, 0, sizeof buf);
        snprintf(err, err_size, "'%s' is too large for an API key", path);
        return NULL;
    }
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    char *start = buf;
    while (isspace((unsigned char)*start))
        start++;
    char *key = dup_or_die(start);
    memset(buf, 0, sizeof buf);
    return key;
}

/* A key goes into a header: printable ASCII, no spaces, so it cannot split it. */
static bool api_key_valid(const char *key)
{
    if (*key == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    return true;
}

/* A secret from the environment variable env_name, else from the file at
 * path (where: how to name that file's key in messages). what: "API key".
 * Sets *out and *source, or appends the problem to errs. */
static void load_secret(struct config_errors *errs, const char *env_name, const char *path,
                        const char *where, const char *what, char **out, const char **source)
{
    const char *env = getenv(env_name);
    if (env != NULL && env[0] != '\0') {
        if (!api_key_valid(env)) {
            config_errors_add(errs, "%s: not a valid %s (printable characters, no spaces)",
                              env_name, what);
        } else {
            *out = dup_or_die(env);
            *source = "env";
        }
        return;
    }
    if (path[0] == '\0')
        return;
    char err[512];
    char *key = read_key_file(path, err, sizeof err);
    if (key == NULL) {
        config_errors_add(errs, "%s: %s", where, err);
    } else if (!api_key_valid(key)) {
        config_errors_add(errs, "%s: '%s' holds no valid %s (one line, no spaces)", where, path,
                          what);
        free(key);
    } else {
        *out = key;
        *source = "file";
    }
}

/* How messages name a key that came from the file ("FILE:LINE: key") or a flag. */
static void key_where(const struct config *cfg, const char *key, int line, char *out, size_t size)
{
    if (line > 0)
        snprintf(out, size, "%s:%d: %s", cfg->config_file, line, key);
    else
        snprintf(out, size, "%s", key);
}

/* Whether HOST (a listen address) can only be reached from this machine:
 * 127.0.0.0/8, ::1 or the name localhost. 0.0.0.0, :: and any other address
 * or name count as reachable from elsewhere. */
bool config_listen_is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return strcmp(host, "localhost") == 0;
}

size_t config_finish(struct config *cfg, struct config_errors *errs)
{
    size_t before = errs->count;
    char where[512];
    if (cfg->api_key_file_line > 0)
        snprintf(where, sizeof where, "%s:%d: api_key_file", cfg->config_file,
                 cfg->api_key_file_line);
    else
        snprintf(where, sizeof where, "api_key_file");
    load_secret(errs, "CLORO_API_KEY", cfg->api_key_file, where, "API key", &cfg->api_key,
                &cfg->api_key_source);
    load_secret(errs, "CLORO_WEBHOOK_SECRET", cfg->webhook_secret_file, "webhook_secret_file",
                "secret", &cfg->webhook_secret, &cfg->webhook_secret_source);
    key_where(cfg, "admin_token_file", cfg->admin_token_file_line, where, sizeof where);
    load_secret(errs, "CLORO_ADMIN_TOKEN", cfg->admin_token_file, where, "admin token",
                &cfg->admin_token, &cfg->admin_token_source);
    /* Read again by a second config_finish: only the config file's own stay. */
    while (cfg->members.count > cfg->config_member_count)
        free(cfg->members.items[--cfg->members.count].source);
    if (cfg->members_file[0] != '\0') {
        key_where(cfg, "members_file", cfg->members_file_line, where, sizeof where);
        if (access(cfg->members_file, R_OK) != 0)
            config_errors_add(errs,
                              "%s: cannot read '%s': %s (create it with 'cloro-proxy members "
                              "add NAME')",
                              where, cfg->members_file, strerror(errno));
        else
            member_list_load_file(&cfg->members, cfg->members_file, errs);
    }
    bool members = strcmp(cfg->auth, "members") == 0 ||
                   (strcmp(cfg->auth, "auto") == 0 && cfg->members.count > 0);
    if (cfg->listen_host != NULL && !config_listen_is_loopback(cfg->listen_host) && !members)
        config_errors_add(errs,
                          "listen: '%s' is reachable from other machines but auth resolves to "
                          "open: set 'auth = members' (and add members with 'cloro-proxy "
                          "members add NAME'), or listen on 127.0.0.1",
                          cfg->listen);
    return errs->count - before;
}

void config_dump(const struct config *cfg, FILE *out)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct config_key *k = &keys[i];
        const void *slot = (const char *)cfg + k->offset;
        fprintf(out, "%s = ", k->name);
        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
        case CONFIG_LISTEN:
        case CONFIG_URL:
        case CONFIG_HOST_LIST:
        case CONFIG_CHOICE:
            fprintf(out, "%s\n", *(char *const *)slot);
            break;
        case CONFIG_BOOL:
            fprintf(out, "%s\n", *(const bool *)slot ? "true" : "false");
            break;
        case CONFIG_LOG_LEVEL:
            fprintf(out, "%s\n", log_level_name(*(const enum log_level *)slot));
            break;
        case CONFIG_COUNT:
            fprintf(out, "%lld\n", (long long)*(const int64_t *)slot);
            break;
        case CONFIG_BYTES:
            fprintf(out, "%zu\n", *(const size_t *)slot);
            break;
        case CONFIG_DURATION:
            fprintf(out, "%lldms\n", (long long)*(const int64_t *)slot);
            break;
        }
    }
    for (int i = 0; i < CONFIG_PROVIDER_COUNT; i++) {
        if (cfg->providers[i].cache_ttl_ms != CONFIG_INHERIT)
            fprintf(out, "[provider %s] cache_ttl = %lldms\n", cfg->providers[i].name,
                    (long long)cfg->providers[i].cache_ttl_ms);
        if (cfg->providers[i].upstream_async != CONFIG_INHERIT)
            fprintf(out, "[provider %s] upstream_mode = %s\n", cfg->providers[i].name,
                    cfg->providers[i].upstream_async ? "async" : "sync");
    }
    fprintf(out, "# api key: %s\n",
            cfg->api_key == NULL ? "not set (clients' Authorization is forwarded)"
            : strcmp(cfg->api_key_source, "env") == 0 ? "(set) from CLORO_API_KEY"
                                                      : "(set) from api_key_file");
    fprintf(out, "# webhook secret: %s\n",
            cfg->webhook_secret == NULL                      ? "not set (deliveries are unsigned)"
            : strcmp(cfg->webhook_secret_source, "env") == 0 ? "(set) from CLORO_WEBHOOK_SECRET"
                                                             : "(set) from webhook_secret_file");
    fprintf(out, "# admin token: %s\n",
            cfg->admin_token == NULL                      ? "not set"
            : strcmp(cfg->admin_token_source, "env") == 0 ? "(set) from CLORO_ADMIN_TOKEN"
                                                          : "(set) from admin_token_file");
    /* Members with their limits; never a hash (0: none). */
    for (size_t i = 0; i < cfg->members.count; i++) {
        const struct member *m = &cfg->members.items[i];
        fprintf(out,
                "[member %s] rate_limit = %lld, max_concurrency = %lld, daily_credit_budget = "
                "%lld (%s:%d)\n",
                m->name, (long long)m->rate_limit, (long long)m->max_concurrency,
                (long long)m->daily_credit_budget, m->source, m->line);
    }
    bool members = strcmp(cfg->auth, "members") == 0 ||
                   (strcmp(cfg->auth, "auto") == 0 && cfg->members.count > 0);
    fprintf(out, "# auth in force: %s (%zu member%s)\n", members ? "members" : "open",
            cfg->members.count, cfg->members.count == 1 ? "" : "s");
}
