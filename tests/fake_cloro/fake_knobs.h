/* fake_knobs: every runtime-tunable behaviour of the fake in one struct, driven by
 * one table (name, flag, type, bounds, help) that serves the command line,
 * GET /_fake/config and the partial updates of POST /_fake/config. */
#ifndef FAKE_KNOBS_H
#define FAKE_KNOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fake_pricing.h"

enum fake_knobs_scope { FAKE_SCOPE_ENDPOINT, FAKE_SCOPE_SHARED };
enum fake_knobs_conc_headers {
    FAKE_CONC_HDR_CONCURRENCY, /* X-Concurrency-* (OAS) */
    FAKE_CONC_HDR_CONCURRENT,  /* X-Concurrent-* (OAS-old) */
    FAKE_CONC_HDR_BOTH
};
enum fake_knobs_conc_code { FAKE_CONC_CODE_CONCURRENCY, FAKE_CONC_CODE_CONCURRENT };
/* error.code of an injected 429 (fail_429, [fake:429]); §9.2 and §9.3. */
enum fake_knobs_429_code {
    FAKE_429_RATE_LIMIT,  /* RATE_LIMIT_EXCEEDED, no details */
    FAKE_429_CONCURRENCY, /* CONCURRENCY_LIMIT_EXCEEDED, details {limit} + X-Concurrency-* */
    FAKE_429_CONCURRENT   /* CONCURRENT_LIMIT_EXCEEDED (legacy spelling), same shape */
};

/* error.code of the single-create idempotency 409 (§7.8, §14 item 9). */
enum fake_knobs_idem_code {
    FAKE_IDEM_ALREADY_EXISTS, /* RESOURCE_ALREADY_EXISTS, details {field, value} (OAS) */
    FAKE_IDEM_CONFLICT        /* RESOURCE_CONFLICT, "Resource conflict", no details (OAS-old) */
};
/* details of a per-task batch VALIDATION_ERROR (§7.3, §14 item 14). */
enum fake_knobs_batch_details {
    FAKE_BATCH_DETAILS_ERRORS, /* {errors: [{field, message}, ...]} (OAS) */
    FAKE_BATCH_DETAILS_FLAT    /* {field, message} of the first error (OAS-old) */
};

#define FAKE_KNOBS_STRING_MAX 256

struct fake_knobs {
    int64_t latency_ms;        /* delay of every monitor response */
    int64_t jitter_ms;         /* + uniform [0, jitter_ms] */
    int64_t concurrency_limit; /* org slots (§10.2) */
    int64_t rate_limit;        /* requests per 1-second window (§10.1) */
    int rate_limit_scope;      /* enum fake_knobs_scope */
    double fail_500;           /* fractions of monitor requests that fail ... */
    double fail_503;
    double reset;          /* ... or get their connection reset */
    double fail_429;       /* ... or are answered 429 at once (never a Retry-After) */
    int fail_429_code;     /* enum fake_knobs_429_code */
    int64_t retry_after_s; /* Retry-After on 503 */
    int64_t slow_body_ms;  /* > 0: 200 bodies dribble out over this long */
    double reset_mid_body; /* fractions of monitor requests whose 200 is cut halfway (RST), */
    double garbage;        /* ... answered with non-HTTP bytes then closed, */
    double stall;          /* ... never answered (held until the client leaves), */
    double slow_drip;      /* ... or whose 200 is dripped over slow_drip_ms */
    int64_t slow_drip_ms;
    int64_t artifact_ttl_s; /* artifact lifetime (§12: 24 h), read at each fetch: a
                             * change applies to artifacts already minted too */
    int64_t artifact_expired_status;
    double artifact_fail;   /* fraction of artifact GETs of a live page answered 500 */
    int64_t artifact_bytes; /* > 0: served pages are padded to at least this size */
    char artifact_redirect[FAKE_KNOBS_STRING_MAX]; /* non-empty: live artifacts answer 302 here */
    int concurrency_headers;                       /* enum fake_knobs_conc_headers */
    int concurrency_code;                          /* enum fake_knobs_conc_code */
    bool country_default_us;                       /* §14 item 5 */
    int64_t credits;                               /* the org's live balance */
    /* async API (§7, §8) */
    int64_t queue_limit;             /* QUEUED tasks the org may hold */
    int64_t task_duration_ms;        /* PROCESSING time of a task */
    double task_fail;                /* fraction of tasks that end FAILED */
    int64_t task_retry_delay_ms;     /* QUEUED wait of a task between two attempts */
    int64_t async_validation_status; /* 400 (OAS) or 422 (legacy, §14 item 4) */
    int idempotency_code;            /* enum fake_knobs_idem_code */
    int batch_error_details;         /* enum fake_knobs_batch_details */
    int64_t task_retention_s;        /* terminal tasks kept this long after completion */
    double webhook_time_scale;       /* webhook retry delays (2/4/8/16 s) are multiplied by it */
    char webhook_secret[FAKE_KNOBS_STRING_MAX]; /* "" = unsigned deliveries */
    struct fake_prices prices;
};

enum fake_knob_type {
    FAKE_KNOB_INT,
    FAKE_KNOB_FRACTION,
    FAKE_KNOB_BOOL,
    FAKE_KNOB_ENUM,
    FAKE_KNOB_REAL,   /* double in [min, max] */
    FAKE_KNOB_STRING, /* char[FAKE_KNOBS_STRING_MAX] */
};

struct fake_knob_def {
    const char *name; /* JSON name: latency_ms */
    const char *flag; /* long option: latency-ms */
    enum fake_knob_type type;
    size_t offset;
    int64_t min, max;              /* FAKE_KNOB_INT */
    const char *const *enum_names; /* FAKE_KNOB_ENUM, NULL-terminated */
    const char *help;
};

void fake_knobs_init(struct fake_knobs *k);
/* The table and its length (borrowed, static). */
const struct fake_knob_def *fake_knobs_table(size_t *count);
/* Sets one knob from a command-line string. 0, or -1 with a message in err. */
int fake_knobs_set_string(struct fake_knobs *k, const struct fake_knob_def *def, const char *value,
                          char *err, size_t errlen);
/* Applies a JSON object of knobs atomically: on any unknown key, bad type or
 * out-of-range value nothing changes and -1 is returned with a message. */
int fake_knobs_apply_json(struct fake_knobs *k, const json_t *obj, char *err, size_t errlen);
/* New JSON object with every knob. */
json_t *fake_knobs_to_json(const struct fake_knobs *k);
/* The name of an enum knob's value (e.g. "X-Concurrency" prefix users). */
const char *fake_knobs_enum_name(const struct fake_knobs *k, const char *knob);

#endif
