/* retry.h: the retry policy of the proxy's upstream calls. Pure: from one
 * failed attempt (kind of call, transport failure or HTTP status and error
 * code, Retry-After, retries made, time left) it says "retry in N ms" or "give
 * up". It does not sleep, arm timers or read clocks; randomness is passed in. */
#ifndef CLORO_RETRY_H
#define CLORO_RETRY_H

#include <stdint.h>

/* What a repeated call may cost (cloro-api.md 7.8: only async creation has
 * idempotency; a repeated submission that was accepted makes a second task). */
enum retry_call_kind {
    RETRY_CALL_SAFE,       /* monitor calls (sync POST /v1/monitor/...) and GET/HEAD/DELETE: always
                              safe to retry */
    RETRY_CALL_SUBMISSION, /* async submissions (POST /v1/async/task and /batch) without
                              idempotencyKey: retry only when the upstream surely did not
                              accept it */
    RETRY_CALL_IDEMPOTENT_SUBMISSION, /* async submissions that carry an idempotencyKey: safe */
};

enum retry_failure {
    RETRY_FAILURE_NONE,    /* a complete HTTP answer: look at status and code */
    RETRY_FAILURE_CONNECT, /* never connected (refused, DNS, TLS handshake): the upstream saw
                              nothing */
    RETRY_FAILURE_BROKEN,  /* connected, answer cut or malformed: the upstream may have accepted it
                            */
    RETRY_FAILURE_TIMEOUT, /* connected, no answer in time: may have accepted it */
};

/* From the config. max_retries <= 0 means never retry; negative delays count
 * as 0. */
struct retry_policy {
    int max_retries;       /* retries after the first attempt, at most */
    int64_t base_delay_ms; /* backoff ceiling before the first retry */
    int64_t max_delay_ms;  /* the backoff ceiling never grows past this */
};

/* One failed (or answered) attempt, filled by the caller. */
struct retry_attempt {
    enum retry_call_kind kind;
    enum retry_failure failure;
    int status;             /* HTTP status when failure == RETRY_FAILURE_NONE, else ignored */
    const char *error_code; /* the upstream's error.code when known (e.g. "RATE_LIMIT_EXCEEDED"),
                               or NULL; borrowed, only read during the call */
    int64_t retry_after_ms; /* from Retry-After (retry_parse_retry_after_ms), or -1 */
    int retries_done;       /* how many retries already made (0 after the first attempt) */
    int64_t remaining_ms;   /* time left until the request's deadline */
};

/* The answer of retry_parse_retry_after_ms for delta-seconds too large to
 * represent: 2^31 seconds (RFC 9111 section 1.2.2), in ms. */
#define RETRY_AFTER_MAX_MS (INT64_C(2147483648) * 1000)

/* Returns the delay in ms before the next attempt (>= 0), or -1 not to retry.
 *
 * Retryable (cloro-api.md 9.2):
 *   - 429, whatever error_code says: RATE_LIMIT_EXCEEDED, CONCURRENCY_LIMIT_EXCEEDED, the legacy
 *     CONCURRENT_LIMIT_EXCEEDED (9.3), QUEUE_LIMIT_EXCEEDED, and unknown or missing codes alike;
 *   - 502, 503, 504;
 *   - the three transport failures (CONNECT, BROKEN, TIMEOUT).
 * Everything else is final: 1xx-3xx, 2xx, every 4xx but 429, 500, 501, 505...
 * RETRY_CALL_SUBMISSION (no idempotencyKey) is retried only on 429 and on
 * RETRY_FAILURE_CONNECT, the two cases where the upstream surely did not create
 * a task; SAFE and IDEMPOTENT_SUBMISSION take every retryable case.
 *
 * Delay: Retry-After (retry_after_ms >= 0) when the answer is a 503 or a 429
 * (RFC 9110 section 10.2.3, RFC 6585 section 4; cloro sends it on 503 only),
 * even when larger than max_delay_ms. Otherwise full jitter: a whole number of
 * ms drawn uniformly from [0, min(max_delay_ms, base_delay_ms * 2^retries_done)]
 * using random01, a uniform value in [0, 1) from the caller (values outside are
 * clamped into it). The doubling stops at max_delay_ms, so no retries_done
 * overflows.
 *
 * Never retried when retries_done >= max_retries, or when the delay would not
 * leave the deadline room (delay >= remaining_ms; so never once remaining_ms
 * <= 0). p and a are borrowed and not kept. */
int64_t retry_next_delay_ms(const struct retry_policy *p, const struct retry_attempt *a,
                            double random01);

/* Parses a Retry-After header value (RFC 9110 section 10.2.3) into ms from
 * now, surrounding spaces and tabs ignored:
 *   - delta-seconds (1*DIGIT) -> seconds * 1000; values above 2^31 s give
 *     RETRY_AFTER_MAX_MS;
 *   - an HTTP-date (RFC 9110 section 5.6.7: IMF-fixdate, and the obsolete
 *     rfc850-date and asctime-date, names in any case) -> the date minus
 *     now_wall_ms (ms since the Unix epoch), 0 when the date is not in the
 *     future, at most RETRY_AFTER_MAX_MS;
 *   - anything else (NULL, empty, a sign, a fraction, trailing text, an
 *     impossible date) -> -1. */
int64_t retry_parse_retry_after_ms(const char *value, int64_t now_wall_ms);

#endif
