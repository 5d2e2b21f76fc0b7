/* fake_knobs: the knob table and its three consumers (flags, JSON dump, JSON
 * partial update). Defaults follow OAS (cloro-api.md §14: every conflict is a knob). */
#include "fake_knobs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fake_knobs_scopes[] = {"endpoint", "shared", NULL};
static const char *const fake_knobs_hdrs[] = {"concurrency", "concurrent", "both", NULL};
static const char *const fake_knobs_codes[] = {"CONCURRENCY_LIMIT_EXCEEDED",
                                               "CONCURRENT_LIMIT_EXCEEDED", NULL};
static const char *const fake_knobs_idem_codes[] = {"RESOURCE_ALREADY_EXISTS", "RESOURCE_CONFLICT",
                                                    NULL};
static const char *const fake_knobs_batch_details[] = {"errors", "flat", NULL};
static const char *const fake_knobs_429_codes[] = {
    "RATE_LIMIT_EXCEEDED", "CONCURRENCY_LIMIT_EXCEEDED", "CONCURRENT_LIMIT_EXCEEDED", NULL};

#define KI(n, f, field, lo, hi, h)                                                                 \
    {                                                                                              \
        n, f, FAKE_KNOB_INT, offsetof(struct fake_knobs, field), lo, hi, NULL, h                   \
    }
#define KF(n, f, field, h)                                                                         \
    {                                                                                              \
        n, f, FAKE_KNOB_FRACTION, offsetof(struct fake_knobs, field), 0, 0, NULL, h                \
    }
#define KB(n, f, field, h)                                                                         \
    {                                                                                              \
        n, f, FAKE_KNOB_BOOL, offsetof(struct fake_knobs, field), 0, 0, NULL, h                    \
    }
#define KE(n, f, field, names, h)                                                                  \
    {                                                                                              \
        n, f, FAKE_KNOB_ENUM, offsetof(struct fake_knobs, field), 0, 0, names, h                   \
    }
#define KR(n, f, field, lo, hi, h)                                                                 \
    {                                                                                              \
        n, f, FAKE_KNOB_REAL, offsetof(struct fake_knobs, field), lo, hi, NULL, h                  \
    }
#define KS(n, f, field, h)                                                                         \
    {                                                                                              \
        n, f, FAKE_KNOB_STRING, offsetof(struct fake_knobs, field), 0, 0, NULL, h                  \
    }
#define KP(n, f, field, h) KI(n, f, prices.field, 0, 1000000, h)

static const struct fake_knob_def fake_knobs_defs[] = {
    KI("latency_ms", "latency-ms", latency_ms, 0, 3600000, "delay of each monitor response"),
    KI("jitter_ms", "jitter-ms", jitter_ms, 0, 3600000, "extra uniform random delay"),
    KI("concurrency_limit", "concurrency-limit", concurrency_limit, 0, 1000000,
       "concurrent monitor requests (org slots)"),
    KI("rate_limit", "rate-limit", rate_limit, 0, 100000000, "requests per second window"),
    KE("rate_limit_scope", "rate-limit-scope", rate_limit_scope, fake_knobs_scopes,
       "endpoint: per (key, route); shared: per key"),
    KF("fail_500", "fail-500", fail_500, "fraction of monitor requests answered 500"),
    KF("fail_503", "fail-503", fail_503, "fraction answered 503 + Retry-After"),
    KI("retry_after_s", "retry-after", retry_after_s, 0, 86400, "Retry-After seconds on 503"),
    KF("reset", "reset", reset, "fraction whose connection is reset without a response"),
    KF("fail_429", "fail-429", fail_429, "fraction answered 429 at once (no Retry-After)"),
    KE("fail_429_code", "fail-429-code", fail_429_code, fake_knobs_429_codes,
       "error code of the injected 429"),
    KI("slow_body_ms", "slow-body-ms", slow_body_ms, 0, 3600000,
       "send 200 bodies in chunks over this many ms"),
    KF("reset_mid_body", "reset-mid-body", reset_mid_body,
       "fraction whose 200 is cut halfway through the body by a reset"),
    KF("garbage", "garbage", garbage, "fraction answered with random non-HTTP bytes, then closed"),
    KF("stall", "stall", stall,
       "fraction never answered: the connection is held until the client leaves"),
    KF("slow_drip", "slow-drip", slow_drip,
       "fraction whose 200 body is dripped in chunks over slow_drip_ms"),
    KI("slow_drip_ms", "slow-drip-ms", slow_drip_ms, 0, 3600000,
       "how long a slow_drip (or [fake:slow-drip]) body takes to arrive"),
    KI("artifact_ttl_s", "artifact-ttl-s", artifact_ttl_s, 0, 100000000,
       "HTML artifact lifetime from generation (applies to already minted ones too)"),
    KI("artifact_expired_status", "artifact-expired-status", artifact_expired_status, 100, 599,
       "status of an expired artifact"),
    KF("artifact_fail", "artifact-fail", artifact_fail,
       "fraction of GETs of a live artifact answered 500"),
    KI("artifact_bytes", "artifact-bytes", artifact_bytes, 0, 64 * 1024 * 1024,
       "pad served artifact pages with a comment to at least this many bytes (0: no padding)"),
    KS("artifact_redirect", "artifact-redirect", artifact_redirect,
       "answer GETs of a live artifact 302 with this Location (empty: serve the page)"),
    KE("concurrency_headers", "concurrency-headers", concurrency_headers, fake_knobs_hdrs,
       "X-Concurrency-* | X-Concurrent-* | both"),
    KE("concurrency_code", "concurrency-code", concurrency_code, fake_knobs_codes,
       "error code of the concurrency 429"),
    KB("country_default_us", "country-default-us", country_default_us,
       "a missing country means US"),
    KI("credits", "credits", credits, 0, INT64_C(1000000000000000), "org credit balance"),
    KI("queue_limit", "queue-limit", queue_limit, 0, 100000000,
       "QUEUED async tasks the org may hold (429 QUEUE_LIMIT_EXCEEDED beyond)"),
    KI("task_duration_ms", "task-duration-ms", task_duration_ms, 0, 3600000,
       "PROCESSING time of an async task"),
    KF("task_fail", "task-fail", task_fail, "fraction of async tasks that end FAILED"),
    KI("task_retry_delay_ms", "task-retry-delay-ms", task_retry_delay_ms, 0, 3600000,
       "QUEUED wait of a task between a failed attempt and the next ([task-retry:N])"),
    KI("async_validation_status", "async-validation-status", async_validation_status, 400, 499,
       "status of an invalid async create/batch body (400 OAS, 422 legacy)"),
    KE("idempotency_code", "idempotency-code", idempotency_code, fake_knobs_idem_codes,
       "error code of the single-create idempotency 409"),
    KE("batch_error_details", "batch-error-details", batch_error_details, fake_knobs_batch_details,
       "per-task batch VALIDATION_ERROR details: errors {errors:[...]} | flat {field,message}"),
    KI("task_retention_s", "task-retention-s", task_retention_s, 0, 100000000,
       "terminal async tasks are kept this long after completion, then 404"),
    KR("webhook_time_scale", "webhook-time-scale", webhook_time_scale, 0, 1000000,
       "multiplier of the webhook retry delays (2, 4, 8, 16 s)"),
    KS("webhook_secret", "webhook-secret", webhook_secret,
       "sign webhook deliveries with this secret (empty: unsigned)"),
    KP("price_chatgpt", "price-chatgpt", chatgpt, "base price"),
    KP("price_gemini", "price-gemini", gemini, "base price"),
    KP("price_grok", "price-grok", grok, "base price"),
    KP("price_copilot", "price-copilot", copilot, "base price"),
    KP("price_perplexity", "price-perplexity", perplexity, "base price"),
    KP("price_aimode", "price-aimode", aimode, "base price"),
    KP("price_google", "price-google", google, "base price"),
    KP("price_google_news", "price-google-news", google_news, "base price"),
    KP("price_aioverview", "price-aioverview", aioverview, "AI Overview add-on"),
    KP("price_state", "price-state", state, "state add-on"),
    KP("price_chatgpt_paid", "price-chatgpt-paid", chatgpt_paid, "ChatGPT paid flags add-on"),
    KP("price_extra_page", "price-extra-page", extra_page, "per Google/News page after the first"),
    KP("price_expand_product", "price-expand-product", expand_product,
       "per AI Mode product cluster"),
    KP("price_sync_surcharge", "price-sync-surcharge", sync_surcharge, "sync call surcharge"),
};

#define FAKE_KNOBS_N (sizeof(fake_knobs_defs) / sizeof(fake_knobs_defs[0]))

void fake_knobs_init(struct fake_knobs *k)
{
    memset(k, 0, sizeof(*k));
    k->concurrency_limit = 10;
    k->rate_limit = 1000;
    k->rate_limit_scope = FAKE_SCOPE_ENDPOINT;
    k->retry_after_s = 2;
    k->slow_drip_ms = 1000;
    k->artifact_ttl_s = 86400;
    k->artifact_expired_status = 404;
    k->concurrency_headers = FAKE_CONC_HDR_CONCURRENCY;
    k->concurrency_code = FAKE_CONC_CODE_CONCURRENCY;
    k->credits = 1000000;
    k->queue_limit = 100000;
    k->task_duration_ms = 200;
    k->task_retry_delay_ms = 200;
    k->async_validation_status = 400;
    k->idempotency_code = FAKE_IDEM_ALREADY_EXISTS;
    k->batch_error_details = FAKE_BATCH_DETAILS_ERRORS;
    k->task_retention_s = 86400;
    k->webhook_time_scale = 1.0;
    fake_pricing_defaults(&k->prices);
}

const struct fake_knob_def *fake_knobs_table(size_t *count)
{
    *count = FAKE_KNOBS_N;
    return fake_knobs_defs;
}

static void *fake_knobs_field(struct fake_knobs *k, const struct fake_knob_def *d)
{
    return (char *)k + d->offset;
}

static const void *fake_knobs_cfield(const struct fake_knobs *k, const struct fake_knob_def *d)
{
    return (const char *)k + d->offset;
}

static int fake_knobs_set_int(struct fake_knobs *k, const struct fake_knob_def *d, int64_t v,
                              char *err, size_t errlen)
{
    if (v < d->min || v > d->max) {
        snprintf(err, errlen, "%s must be between %" PRId64 " and %" PRId64, d->name, d->min,
                 d->max);
        return -1;
    }
    *(int64_t *)fake_knobs_field(k, d) = v;
    return 0;
}

static int fake_knobs_set_fraction(struct fake_knobs *k, const struct fake_knob_def *d, double v,
                                   char *err, size_t errlen)
{
    if (!(v >= 0.0 && v <= 1.0)) {
        snprintf(err, errlen, "%s must be a fraction between 0 and 1", d->name);
        return -1;
    }
    *(double *)fake_knobs_field(k, d) = v;
    return 0;
}

static int fake_knobs_set_enum(struct fake_knobs *k, const struct fake_knob_def *d, const char *v,
                               char *err, size_t errlen)
{
    for (int i = 0; d->enum_names[i] != NULL; i++) {
        if (strcmp(v, d->enum_names[i]) == 0) {
            *(int *)fake_knobs_field(k, d) = i;
            return 0;
        }
    }
    snprintf(err, errlen, "%s must be one of", d->name);
    for (int i = 0; d->enum_names[i] != NULL; i++) {
        size_t used = strlen(err);
        snprintf(err + used, errlen - used, "%s%s", i ? "|" : " ", d->enum_names[i]);
    }
    return -1;
}

static int fake_knobs_set_real(struct fake_knobs *k, const struct fake_knob_def *d, double v,
                               char *err, size_t errlen)
{
    if (!(v >= (double)d->min && v <= (double)d->max)) {
        snprintf(err, errlen, "%s must be between %" PRId64 " and %" PRId64, d->name, d->min,
                 d->max);
        return -1;
    }
    *(double *)fake_knobs_field(k, d) = v;
    return 0;
}

static int fake_knobs_set_str(struct fake_knobs *k, const struct fake_knob_def *d, const char *v,
                              char *err, size_t errlen)
{
    if (strlen(v) >= FAKE_KNOBS_STRING_MAX) {
        snprintf(err, errlen, "%s must be shorter than %d bytes", d->name, FAKE_KNOBS_STRING_MAX);
        return -1;
    }
    snprintf((char *)fake_knobs_field(k, d), FAKE_KNOBS_STRING_MAX, "%s", v);
    return 0;
}

int fake_knobs_set_string(struct fake_knobs *k, const struct fake_knob_def *def, const char *value,
                          char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    switch (def->type) {
    case FAKE_KNOB_INT: {
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end) {
            snprintf(err, errlen, "%s: not an integer: %s", def->flag, value);
            return -1;
        }
        return fake_knobs_set_int(k, def, v, err, errlen);
    }
    case FAKE_KNOB_FRACTION: {
        double v = strtod(value, &end);
        if (errno || end == value || *end) {
            snprintf(err, errlen, "%s: not a number: %s", def->flag, value);
            return -1;
        }
        return fake_knobs_set_fraction(k, def, v, err, errlen);
    }
    case FAKE_KNOB_BOOL:
        if (value == NULL || strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
            *(bool *)fake_knobs_field(k, def) = true;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
            *(bool *)fake_knobs_field(k, def) = false;
        } else {
            snprintf(err, errlen, "%s: not a boolean: %s", def->flag, value);
            return -1;
        }
        return 0;
    case FAKE_KNOB_ENUM:
        return fake_knobs_set_enum(k, def, value, err, errlen);
    case FAKE_KNOB_REAL: {
        double v = strtod(value, &end);
        if (errno || end == value || *end) {
            snprintf(err, errlen, "%s: not a number: %s", def->flag, value);
            return -1;
        }
        return fake_knobs_set_real(k, def, v, err, errlen);
    }
    case FAKE_KNOB_STRING:
        return fake_knobs_set_str(k, def, value, err, errlen);
    }
    return -1;
}

static int fake_knobs_set_json(struct fake_knobs *k, const struct fake_knob_def *d, const json_t *v,
                               char *err, size_t errlen)
{
    switch (d->type) {
    case FAKE_KNOB_INT:
        if (!json_is_integer(v))
            break;
        return fake_knobs_set_int(k, d, json_integer_value(v), err, errlen);
    case FAKE_KNOB_FRACTION:
        if (!json_is_number(v))
            break;
        return fake_knobs_set_fraction(k, d, json_number_value(v), err, errlen);
    case FAKE_KNOB_BOOL:
        if (!json_is_boolean(v))
            break;
        *(bool *)fake_knobs_field(k, d) = json_is_true(v);
        return 0;
    case FAKE_KNOB_ENUM:
        if (!json_is_string(v))
            break;
        return fake_knobs_set_enum(k, d, json_string_value(v), err, errlen);
    case FAKE_KNOB_REAL:
        if (!json_is_number(v))
            break;
        return fake_knobs_set_real(k, d, json_number_value(v), err, errlen);
    case FAKE_KNOB_STRING:
        if (!json_is_string(v))
            break;
        return fake_knobs_set_str(k, d, json_string_value(v), err, errlen);
    }
    static const char *const type_names[] = {"an integer", "a number", "a boolean",
                                             "a string",   "a number", "a string"};
    snprintf(err, errlen, "%s must be %s", d->name, type_names[d->type]);
    return -1;
}

int fake_knobs_apply_json(struct fake_knobs *k, const json_t *obj, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "body must be a JSON object");
        return -1;
    }
    struct fake_knobs next = *k;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        const struct fake_knob_def *d = NULL;
        for (size_t i = 0; i < FAKE_KNOBS_N; i++) {
            if (strcmp(key, fake_knobs_defs[i].name) == 0)
                d = &fake_knobs_defs[i];
        }
        if (d == NULL) {
            snprintf(err, errlen, "unknown knob: %.100s", key);
            return -1;
        }
        if (fake_knobs_set_json(&next, d, v, err, errlen) != 0)
            return -1;
    }
    *k = next;
    return 0;
}

json_t *fake_knobs_to_json(const struct fake_knobs *k)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < FAKE_KNOBS_N; i++) {
        const struct fake_knob_def *d = &fake_knobs_defs[i];
        const void *f = fake_knobs_cfield(k, d);
        json_t *v = NULL;
        switch (d->type) {
        case FAKE_KNOB_INT:
            v = json_integer(*(const int64_t *)f);
            break;
        case FAKE_KNOB_FRACTION:
            v = json_real(*(const double *)f);
            break;
        case FAKE_KNOB_BOOL:
            v = json_boolean(*(const bool *)f);
            break;
        case FAKE_KNOB_ENUM:
            v = json_string(d->enum_names[*(const int *)f]);
            break;
        case FAKE_KNOB_REAL:
            v = json_real(*(const double *)f);
            break;
        case FAKE_KNOB_STRING:
            v = json_string((const char *)f);
            break;
        }
        json_object_set_new(obj, d->name, v);
    }
    return obj;
}

const char *fake_knobs_enum_name(const struct fake_knobs *k, const char *knob)
{
    for (size_t i = 0; i < FAKE_KNOBS_N; i++) {
        const struct fake_knob_def *d = &fake_knobs_defs[i];
        if (d->type == FAKE_KNOB_ENUM && strcmp(d->name, knob) == 0)
            return d->enum_names[*(const int *)fake_knobs_cfield(k, d)];
    }
    return NULL;
}
