/* retry.c: when to repeat an upstream call and how long to wait first
 * (cloro-api.md 9.2 for what is transient, 7.8 for what is safe to repeat),
 * and the Retry-After parser (RFC 9110 section 10.2.3). Pure functions of their
 * arguments: no clock, no random source, no state (see retry.h). */
#include "retry.h"

#include <float.h>
#include <stdbool.h>
#include <stddef.h>

#define MS_PER_S   1000
#define MS_PER_DAY INT64_C(86400000)
/* RFC 9111 section 1.2.2: delta-seconds too large to represent count as 2^31. */
#define DELTA_SECONDS_MAX INT64_C(2147483648)

enum retry_after_use {
    RETRY_AFTER_IGNORED,
    RETRY_AFTER_HONOURED,
};

/* Whether the attempt may be repeated, and whether its Retry-After counts. */
static bool retryable(const struct retry_attempt *a, enum retry_after_use *use)
{
    /* Without an idempotencyKey a repeated submission that the upstream had
     * accepted creates a second task (cloro-api.md 7.8): only a refusal (429)
     * or a connection that never opened is certain to have created nothing. */
    bool repeatable = a->kind != RETRY_CALL_SUBMISSION;

    *use = RETRY_AFTER_IGNORED;
    switch (a->failure) {
    case RETRY_FAILURE_CONNECT:
        return true;
    case RETRY_FAILURE_BROKEN:
    case RETRY_FAILURE_TIMEOUT:
        return repeatable;
    case RETRY_FAILURE_NONE:
        break;
    default:
        return false;
    }
    switch (a->status) {
    case 429:
        /* RATE_LIMIT_EXCEEDED clears within a second, CONCURRENCY_ (and the
         * legacy CONCURRENT_) LIMIT_EXCEEDED as jobs finish, QUEUE_LIMIT_EXCEEDED
         * as the queue drains (cloro-api.md 9.2, 9.3); a 429 is a refusal
         * whatever its code says, so error_code does not change the answer. */
        *use = RETRY_AFTER_HONOURED;
        return true;
    case 503:
        *use = RETRY_AFTER_HONOURED;
        return repeatable;
    case 502:
    case 504:
        return repeatable;
    default:
        return false;
    }
}

/* min(max_delay_ms, base_delay_ms * 2^retries_done), doubling step by step so
 * that nothing overflows; negative settings count as 0. */
static int64_t backoff_ceiling_ms(const struct retry_policy *p, int retries_done)
{
    int64_t max_ms = p->max_delay_ms > 0 ? p->max_delay_ms : 0;
    int64_t ceiling = p->base_delay_ms > 0 ? p->base_delay_ms : 0;
    for (int i = 0; i < retries_done && ceiling > 0 && ceiling < max_ms; i++)
        ceiling = ceiling > max_ms / 2 ? max_ms : ceiling * 2;
    return ceiling < max_ms ? ceiling : max_ms;
}

/* Full jitter (AWS "Exponential Backoff And Jitter"): uniform in [0, ceiling]. */
static int64_t full_jitter_ms(int64_t ceiling_ms, double random01)
{
    if (!(random01 >= 0.0)) /* also NaN */
        random01 = 0.0;
    if (random01 >= 1.0)
        random01 = 1.0 - DBL_EPSILON / 2;
    int64_t delay = (int64_t)(random01 * ((double)ceiling_ms + 1.0));
    return delay < ceiling_ms ? delay : ceiling_ms;
}

int64_t retry_next_delay_ms(const struct retry_policy *p, const struct retry_attempt *a,
                            double random01)
{
    enum retry_after_use use;
    if (a->retries_done >= p->max_retries || !retryable(a, &use))
        return -1;
    int retries_done = a->retries_done > 0 ? a->retries_done : 0;
    int64_t delay;
    if (use == RETRY_AFTER_HONOURED && a->retry_after_ms >= 0)
        delay = a->retry_after_ms; /* the upstream's word beats max_delay_ms */
    else
        delay = full_jitter_ms(backoff_ceiling_ms(p, retries_done), random01);
    return delay < a->remaining_ms ? delay : -1;
}

/* Retry-After parsing. A cursor over [p, end): every take_* consumes input
 * only on success of the whole call and reports it as a bool. */
struct cursor {
    const char *p;
    const char *end;
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool take_char(struct cursor *c, char want)
{
    if (c->p == c->end || *c->p != want)
        return false;
    c->p++;
    return true;
}

/* Exactly n digits. */
static bool take_digits(struct cursor *c, int n, int *out)
{
    if (c->end - c->p < n)
        return false;
    int v = 0;
    for (int i = 0; i < n; i++) {
        char d = c->p[i];
        if (d < '0' || d > '9')
            return false;
        v = v * 10 + (d - '0');
    }
    c->p += n;
    *out = v;
    return true;
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* A run of letters equal (in any case) to one of names: its index, or -1. */
static int take_name(struct cursor *c, const char *const *names, int count)
{
    size_t len = 0;
    while (c->p + len < c->end && lower(c->p[len]) >= 'a' && lower(c->p[len]) <= 'z')
        len++;
    for (int i = 0; i < count; i++) {
        size_t j = 0;
        while (j < len && names[i][j] != '\0' && lower(c->p[j]) == names[i][j])
            j++;
        if (j == len && names[i][j] == '\0') {
            c->p += len;
            return i;
        }
    }
    return -1;
}

static const char *const short_days[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
static const char *const long_days[] = {"monday", "tuesday",  "wednesday", "thursday",
                                        "friday", "saturday", "sunday"};
static const char *const gmt[] = {"gmt"};
static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};

/* Month 1..12 from its three-letter name, or 0. */
static int take_month(struct cursor *c)
{
    return take_name(c, months, 12) + 1;
}

/* "HH:MM:SS" into seconds of the day; a leap second (60) is accepted. */
static bool take_time(struct cursor *c, int64_t *secs)
{
    int h, m, s;
    if (!take_digits(c, 2, &h) || !take_char(c, ':') || !take_digits(c, 2, &m) ||
        !take_char(c, ':') || !take_digits(c, 2, &s) || h > 23 || m > 59 || s > 60)
        return false;
    *secs = (int64_t)h * 3600 + m * 60 + s;
    return true;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year of a time in ms since the epoch (H. Hinnant's civil_from_days). */
static int64_t year_of_ms(int64_t wall_ms)
{
    int64_t days = wall_ms / MS_PER_DAY - (wall_ms % MS_PER_DAY < 0);
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10);
}

/* RFC 9110 section 5.6.7: a two-digit year that would be more than 50 years
 * in the future is the most recent past year with those digits. */
static int64_t full_year(int yy, int64_t now_wall_ms)
{
    int64_t now_year = year_of_ms(now_wall_ms);
    int64_t y = now_year - now_year % 100 + yy;
    return y > now_year + 50 ? y - 100 : y;
}

/* An HTTP-date in any of its three forms into ms since the epoch. */
static bool parse_http_date(struct cursor *c, int64_t now_wall_ms, int64_t *out_ms)
{
    int day = 0, month = 0, y = 0;
    int64_t year = 0, secs = 0;
    struct cursor at = *c;

    if (take_name(&at, short_days, 7) >= 0) {
        if (take_char(&at, ',')) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
            if (!take_char(&at, ' ') || !take_digits(&at, 2, &day) || !take_char(&at, ' ') ||
                (month = take_month(&at)) == 0 || !take_char(&at, ' ') ||
                !take_digits(&at, 4, &y) || !take_char(&at, ' ') || !take_time(&at, &secs) ||
                !take_char(&at, ' ') || take_name(&at, gmt, 1) != 0)
                return false;
            year = y;
        } else { /* asctime-date: Sun Nov  6 08:49:37 1994 */
            if (!take_char(&at, ' ') || (month = take_month(&at)) == 0 || !take_char(&at, ' '))
                return false;
            if (!(take_char(&at, ' ') ? take_digits(&at, 1, &day) : take_digits(&at, 2, &day)) ||
                !take_char(&at, ' ') || !take_time(&at, &secs) || !take_char(&at, ' ') ||
                !take_digits(&at, 4, &y))
                return false;
            year = y;
        }
    } else if (take_name(&at, long_days, 7) >= 0) { /* rfc850: Sunday, 06-Nov-94 08:49:37 GMT */
        if (!take_char(&at, ',') || !take_char(&at, ' ') || !take_digits(&at, 2, &day) ||
            !take_char(&at, '-') || (month = take_month(&at)) == 0 || !take_char(&at, '-') ||
            !take_digits(&at, 2, &y) || !take_char(&at, ' ') || !take_time(&at, &secs) ||
            !take_char(&at, ' ') || take_name(&at, gmt, 1) != 0)
            return false;
        year = full_year(y, now_wall_ms);
    } else {
        return false;
    }
    if (day < 1 || day > days_in_month(year, month))
        return false;
    *c = at;
    *out_ms = (days_from_civil(year, month, day) * 86400 + secs) * MS_PER_S;
    return true;
}

int64_t retry_parse_retry_after_ms(const char *value, int64_t now_wall_ms)
{
    if (value == NULL)
        return -1;
    struct cursor c = {value, value};
    while (*c.end != '\0')
        c.end++;
    while (c.p < c.end && is_ows(*c.p))
        c.p++;
    while (c.end > c.p && is_ows(c.end[-1]))
        c.end--;
    if (c.p == c.end)
        return -1;

    if (*c.p >= '0' && *c.p <= '9') { /* delta-seconds = 1*DIGIT */
        int64_t secs = 0;
        for (; c.p < c.end; c.p++) {
            if (*c.p < '0' || *c.p > '9')
                return -1;
            if (secs <= DELTA_SECONDS_MAX)
                secs = secs * 10 + (*c.p - '0');
        }
        return secs < DELTA_SECONDS_MAX ? secs * MS_PER_S : RETRY_AFTER_MAX_MS;
    }

    int64_t date_ms;
    if (!parse_http_date(&c, now_wall_ms, &date_ms) || c.p != c.end)
        return -1;
    if (now_wall_ms >= date_ms)
        return 0;
    /* date_ms - now_wall_ms may not fit in an int64_t when now is far back. */
    if (now_wall_ms < date_ms - RETRY_AFTER_MAX_MS)
        return RETRY_AFTER_MAX_MS;
    return date_ms - now_wall_ms;
}
