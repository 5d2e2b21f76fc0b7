/* fake_validate: the strict request schemas of the /v1/monitor/... endpoints
 * (cloro-api.md §4, §5, §15 item 8). Pure: jansson in, a normalized request or a
 * `details` array of {field, message} out. No libevent, no clock, no randomness. */
#ifndef FAKE_VALIDATE_H
#define FAKE_VALIDATE_H

#include <stdbool.h>

#include <jansson.h>

enum fake_endpoint {
    FAKE_EP_CHATGPT,
    FAKE_EP_GEMINI,
    FAKE_EP_GROK,
    FAKE_EP_COPILOT,
    FAKE_EP_PERPLEXITY,
    FAKE_EP_AIMODE,
    FAKE_EP_GOOGLE,
    FAKE_EP_GOOGLE_NEWS,
    FAKE_EP_GOOGLE_GOTO,
    FAKE_EP_COUNT
};

/* include.* flags, as bits of fake_validate_req.include. */
#define FAKE_INC_HTML                (1u << 0)
#define FAKE_INC_MARKDOWN            (1u << 1)
#define FAKE_INC_RAW_RESPONSE        (1u << 2)
#define FAKE_INC_SEARCH_QUERIES      (1u << 3)
#define FAKE_INC_ADS                 (1u << 4)
#define FAKE_INC_SHOPPING            (1u << 5)
#define FAKE_INC_EXPAND_PRODUCTS     (1u << 6)
#define FAKE_INC_GOOGLE_GOTO         (1u << 7)
#define FAKE_INC_AIOVERVIEW          (1u << 8)
#define FAKE_INC_AIOVERVIEW_MARKDOWN (1u << 9)
#define FAKE_INC_PAA_AIOVERVIEW      (1u << 10)

#define FAKE_VALIDATE_TEXT_MAX 10000

/* A validated monitor request. String pointers are borrowed from the body the
 * request was validated from and die with it. */
struct fake_validate_req {
    enum fake_endpoint endpoint;
    const char *text; /* prompt (AI engines) or query (Google family); NULL for url mode/goto */
    const char *url;  /* google url mode, goto url; else NULL */
    char country[3];  /* resolved uppercase country; "" only for goto */
    char state[3];    /* "" when absent */
    const char *hl;   /* NULL when absent */
    const char *location;
    const char *uule;
    const char *device; /* normalized: default "desktop"; google "mobile" -> "android" */
    int pages;          /* 1..10; google url mode derives it from num */
    unsigned include;   /* FAKE_INC_* */
    bool legacy;
    bool disable_web_search;
};

struct fake_validate_opts {
    bool country_default_us; /* §14 item 5: missing country means "US" */
};

/* "chatgpt", ..., "google/news", "google/goto". */
const char *fake_validate_endpoint_name(enum fake_endpoint ep);
/* Looks up the part after "/v1/monitor/"; false when unknown. */
bool fake_validate_endpoint_from_name(const char *name, enum fake_endpoint *out);
/* True for the five AI engines that accept `state`. */
bool fake_validate_endpoint_has_state(enum fake_endpoint ep);

/* Validates body for endpoint ep. Returns NULL and fills *out when valid;
 * otherwise returns a new reference to a non-empty JSON array of
 * {"field","message"} (the caller owns it) and leaves *out unspecified. */
json_t *fake_validate_monitor(enum fake_endpoint ep, const json_t *body,
                              const struct fake_validate_opts *opts, struct fake_validate_req *out);

/* A validated async task request (§7.2 BatchTaskRequest). Strings are borrowed
 * from the body it was validated from. */
struct fake_validate_task {
    const char *task_type;        /* "CHATGPT", ... */
    int priority;                 /* 1..10, default 1 */
    const char *idempotency_key;  /* NULL when absent */
    const char *webhook_url;      /* NULL when absent */
    struct fake_validate_req req; /* the payload, validated as its sync endpoint */
};

/* Validates an async task request: strict top-level fields, taskType enum,
 * priority 1-10, webhook {url}, and payload against the sync schema of the task
 * type (field names prefixed "payload."). Same return contract as
 * fake_validate_monitor. */
json_t *fake_validate_task(const json_t *body, const struct fake_validate_opts *opts,
                           struct fake_validate_task *out);
/* The taskType of a task endpoint ("GOOGLE_NEWS"); NULL for goto. */
const char *fake_validate_task_type_name(enum fake_endpoint ep);

/* GET /v1/countries `model` values (§6.1). NULL model is valid (omitted). */
bool fake_validate_countries_model(const char *model);

/* Counts UTF-8 code points of a len-byte string. */
size_t fake_validate_utf8_len(const char *s, size_t len);

#endif
