/* config.h: the proxy's configuration. One table of keys drives the INI file
 * (libinih), the command-line flags, defaults, check-config and the dump.
 * The struct is filled once at start-up and read-only afterwards. */
#ifndef CLORO_CONFIG_H
#define CLORO_CONFIG_H

#include "log.h"
#include "member.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The providers of cloro's monitor endpoints (cloro-api.md section 3). */
#define CONFIG_PROVIDER_COUNT 9
#define CONFIG_INHERIT        (-1)

struct config {
    char *listen; /* "HOST:PORT" as written; split into the two below */
    char *listen_host;
    uint16_t listen_port;
    char *upstream; /* base URL, no trailing slash */
    char *api_key_file;
    char *cache_dir;
    enum log_level log_level;
    bool access_log;
    size_t max_body_bytes;
    size_t max_header_bytes;
    size_t max_response_bytes;
    int64_t upstream_timeout_ms;
    int64_t upstream_connect_timeout_ms;
    int64_t upstream_max_connections;
    int64_t client_timeout_ms;
    int64_t client_request_timeout_ms;
    int64_t max_connections;
    int64_t drain_timeout_ms;
    bool cache;
    int64_t cache_ttl_ms; /* 0: never expires */
    size_t max_cache_bytes;
    int64_t stale_if_error_ms; /* 0: never serve stale on error */
    char *mode;                /* "online", "offline", "record" or "refresh" (mode.h); the
                                  mode in force is the server's (switchable at run time) */
    int64_t max_samples;       /* X-Cache-Sample: 1..max_samples */
    int64_t max_concurrency;
    int64_t rate_limit_per_endpoint; /* per second; 0: off */
    int64_t rate_limit_global;       /* per second; 0: off */
    int64_t max_queue;
    int64_t queue_timeout_ms;
    int64_t max_retries;
    int64_t retry_base_delay_ms;
    int64_t retry_max_delay_ms;
    bool finish_abandoned_calls;
    char *artifact_hosts; /* validated list: "cdn.cloro.dev, storage.cloro.dev" */
    int64_t artifact_concurrency;
    size_t max_artifact_bytes;
    int64_t artifact_ttl_ms;
    bool rewrite_artifact_urls;
    char *public_url; /* no trailing slash */
    int64_t artifact_wait_ms;
    bool async_tasks;
    int64_t poll_initial_ms;
    int64_t poll_interval_ms;
    char *webhook_delivery; /* "proxy" or "upstream" */
    char *webhook_secret_file;
    int64_t webhook_max_attempts;
    int64_t webhook_retry_base_ms;
    int64_t webhook_timeout_ms;
    char *upstream_mode; /* "sync" or "async" */
    int64_t max_open_tasks;
    int64_t async_batch_window_ms;
    int64_t sync_surcharge;
    int64_t task_retention_ms;    /* 0: ended task records are kept for good */
    int64_t usage_retention_days; /* 0: usage rows are kept for good */
    char *auth;                   /* "auto", "members" or "open" */
    char *members_file;           /* more [member NAME] sections; "" none */
    char *admin_token_file;       /* file holding the admin token; "" none */

    /* [provider NAME] sections: per-provider overrides. */
    struct config_provider {
        const char *name;     /* static: "chatgpt", ..., "google/news" */
        int64_t cache_ttl_ms; /* CONFIG_INHERIT: cache_ttl */
        int upstream_async;   /* 1 async, 0 sync, CONFIG_INHERIT: upstream_mode */
    } providers[CONFIG_PROVIDER_COUNT];

    /* [member NAME] sections: those of the config file first
     * (config_member_count of them), then those of members_file (read by
     * config_finish). Token hashes only: never a token. */
    struct member_list members;
    size_t config_member_count;

    /* Where the values came from, for messages with line numbers. */
    char *config_file;     /* NULL when no file was read */
    int api_key_file_line; /* 0 when api_key_file was not set in the file */
    int members_file_line; /* likewise for members_file and admin_token_file */
    int admin_token_file_line;

    /* Derived by config_finish, not keys of their own. */
    char *api_key;              /* secret: never logged, dumped or echoed */
    const char *api_key_source; /* "env", "file" or NULL when unset */
    char *webhook_secret;       /* secret: CLORO_WEBHOOK_SECRET, else webhook_secret_file */
    const char *webhook_secret_source;
    char *admin_token; /* secret: CLORO_ADMIN_TOKEN, else admin_token_file */
    const char *admin_token_source;
};

enum config_type {
    CONFIG_STRING,
    CONFIG_PATH,
    CONFIG_LISTEN,
    CONFIG_URL,
    CONFIG_BOOL,
    CONFIG_COUNT,
    CONFIG_BYTES,
    CONFIG_DURATION,
    CONFIG_LOG_LEVEL,
    CONFIG_HOST_LIST,
    CONFIG_CHOICE, /* one of the words in choices, stored as a string */
};

struct config_key {
    const char *name;
    enum config_type type;
    size_t offset;
    const char *default_value;
    int64_t min, max; /* bounds for COUNT, BYTES (bytes) and DURATION (ms) */
    const char *help;
    const char *choices; /* CONFIG_CHOICE: "proxy|upstream" */
};

/* Every problem found while loading, as printable lines ("FILE:LINE: what"). */
struct config_errors {
    char **lines;
    size_t count;
};

/* The key table, in the order of conf/cloro-proxy.conf. Borrowed, static. */
const struct config_key *config_keys(size_t *count);
const struct config_key *config_key_find(const char *name);

/* Sets every key to its default. Must be paired with config_deinit. */
void config_init(struct config *cfg);
void config_deinit(struct config *cfg);

/* Reads an INI file over cfg. Each problem (unknown key or section, bad value,
 * line too long, unreadable file) is appended to errs with its line number;
 * valid keys are applied even when others fail. Returns the problem count. */
size_t config_load_file(struct config *cfg, const char *path, struct config_errors *errs);

/* Sets one key from text (a flag or a file value). On failure returns -1 and
 * writes what is wrong, without the key's name, into err. */
int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t err_size);

/* Whether a listen host is loopback only (127.0.0.0/8, ::1, localhost). */
bool config_listen_is_loopback(const char *host);

/* Derives the rest: reads the API key from CLORO_API_KEY, else api_key_file,
 * the webhook secret from CLORO_WEBHOOK_SECRET, else webhook_secret_file, the
 * admin token from CLORO_ADMIN_TOKEN, else admin_token_file, and the members
 * of members_file (problems name that file and line). Problems are appended to errs (file problems
 * name the key's line when the key came from config_file). Returns the problem count. */
size_t config_finish(struct config *cfg, struct config_errors *errs);

/* True when a provider's sync calls go upstream as async tasks (its
 * override, else upstream_mode). */
bool config_upstream_async(const struct config *cfg, const char *provider);

/* The cache TTL in force for a provider (its override, else cache_ttl). */
int64_t config_cache_ttl_ms(const struct config *cfg, const char *provider);

/* Prints "key = value" for every key, secrets shown as "(set)". */
void config_dump(const struct config *cfg, FILE *out);

/* Parsers shared with tests. Return 0, or -1 on bad text. */
int config_parse_bytes(const char *text, int64_t *out);
int config_parse_duration_ms(const char *text, int64_t *out);
int config_parse_bool(const char *text, bool *out);
int config_parse_listen(const char *text, char **host, uint16_t *port);

void config_errors_add(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void config_errors_free(struct config_errors *errs);

#endif
