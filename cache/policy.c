/* policy.c: freshness (policy.h). Owns the parsing of request Cache-Control
 * (RFC 9111 section 5.2.1), the age and TTL arithmetic, and the verdict on
 * whether a stored entry may answer a request. Knows nothing of where
 * entries live or how they are served. Pure: the time is passed in, and
 * every subtraction saturates instead of overflowing. */
#include "policy.h"

#include <stddef.h>
#include <string.h>

/* delta-seconds beyond this are clamped (RFC 9111 section 1.2.2 allows "the
 * greatest positive integer it can conveniently represent"): small enough
 * that seconds * 1000 still fits an int64_t millisecond value. */
#define DELTA_SECONDS_MAX (INT64_MAX / 1000)

/* a - b, saturated to the int64_t range. */
static int64_t sat_sub(int64_t a, int64_t b)
{
    if (b < 0 && a > INT64_MAX + b)
        return INT64_MAX;
    if (b > 0 && a < INT64_MIN + b)
        return INT64_MIN;
    return a - b;
}

/* --- parsing ------------------------------------------------------------ */

/* tchar of RFC 9110 section 5.6.2. */
static bool is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* ASCII only: directive names are tokens, and locale case rules (Turkish
 * dotless i) must not apply. */
static bool name_is(const char *name, size_t len, const char *want)
{
    if (strlen(want) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != want[i])
            return false;
    }
    return true;
}

/* A directive argument read as delta-seconds (RFC 9111 section 1.2.2:
 * 1*DIGIT), clamped at DELTA_SECONDS_MAX; fed one character at a time. */
struct delta {
    int64_t seconds;
    bool digits; /* at least one digit seen */
    bool bad;    /* a character that is not a digit */
};

static void delta_feed(struct delta *d, char c)
{
    if (c < '0' || c > '9') {
        d->bad = true;
        return;
    }
    d->digits = true;
    int digit = c - '0';
    if (d->seconds > (DELTA_SECONDS_MAX - digit) / 10)
        d->seconds = DELTA_SECONDS_MAX;
    else
        d->seconds = d->seconds * 10 + digit;
}

static bool delta_valid(const struct delta *d)
{
    return d->digits && !d->bad;
}

/* Skips to the next comma that is not inside a quoted-string, or to the end:
 * the recovery after a malformed directive. */
static const char *skip_element(const char *p)
{
    bool quoted = false;
    for (; *p != '\0'; p++) {
        if (quoted && *p == '\\' && p[1] != '\0')
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == ',' && !quoted)
            break;
    }
    return p;
}

/* Reads an argument (token or quoted-string, RFC 9111 section 5.2: both
 * forms are accepted for every directive) into d. Returns the position after
 * it, or NULL when it is malformed (an unterminated quoted-string). */
static const char *read_argument(const char *p, struct delta *d)
{
    if (*p != '"') {
        while (is_tchar(*p))
            delta_feed(d, *p++);
        return p;
    }
    for (p++; *p != '"'; p++) {
        if (*p == '\0')
            return NULL;
        if (*p == '\\') {
            if (p[1] == '\0')
                return NULL;
            p++;
        }
        delta_feed(d, *p);
    }
    return p + 1;
}

/* Later duplicates of max-age or max-stale are ignored: the first valid
 * occurrence wins (the rule RFC 9111 section 4.2.1 gives for responses). */
static void apply(struct cache_directives *out, const char *name, size_t len, bool has_arg,
                  const struct delta *arg)
{
    if (name_is(name, len, "no-cache")) {
        out->no_cache = true;
    } else if (name_is(name, len, "no-store")) {
        out->no_store = true;
    } else if (name_is(name, len, "only-if-cached")) {
        out->only_if_cached = true;
    } else if (name_is(name, len, "max-age")) {
        if (has_arg && delta_valid(arg) && out->max_age_s == CACHE_POLICY_UNSET)
            out->max_age_s = arg->seconds;
    } else if (name_is(name, len, "max-stale")) {
        if (out->max_stale_s != CACHE_POLICY_UNSET)
            return;
        if (!has_arg)
            out->max_stale_s = CACHE_POLICY_ANY;
        else if (delta_valid(arg))
            out->max_stale_s = arg->seconds;
    }
    /* Anything else (min-fresh, no-transform, extensions) is ignored. */
}

/* Cache-Control = #( token [ "=" ( token / quoted-string ) ] ), RFC 9111
 * section 5.2. Lenient where it costs nothing: whitespace around "=", empty
 * list elements. A malformed element is skipped up to the next comma outside
 * quotes; the rest of the list still counts. */
void cache_policy_parse(const char *cache_control, struct cache_directives *out)
{
    out->no_cache = false;
    out->no_store = false;
    out->only_if_cached = false;
    out->max_age_s = CACHE_POLICY_UNSET;
    out->max_stale_s = CACHE_POLICY_UNSET;
    if (cache_control == NULL)
        return;

    const char *p = cache_control;
    while (*p != '\0') {
        p = skip_ows(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\0')
            break;
        const char *name = p;
        while (is_tchar(*p))
            p++;
        size_t name_len = (size_t)(p - name);
        p = skip_ows(p);
        bool has_arg = false;
        struct delta arg = {0, false, false};
        if (name_len > 0 && *p == '=') {
            has_arg = true;
            p = read_argument(skip_ows(p + 1), &arg);
            if (p != NULL)
                p = skip_ows(p);
        }
        if (name_len == 0 || p == NULL || (*p != ',' && *p != '\0')) {
            p = skip_element(p == NULL ? name : p);
            continue;
        }
        apply(out, name, name_len, has_arg, &arg);
    }
}

/* --- judging ------------------------------------------------------------ */

/* d may be NULL: no directives. Order: no-cache/no-store, then the client's
 * max-age against the age (RFC 9111 section 5.2.1.1), then freshness, then
 * the client's max-stale for an expired entry (section 5.2.1.2). */
enum cache_verdict cache_policy_judge(const struct cache_directives *d, int64_t stored_at_ms,
                                      int64_t expires_at_ms, int64_t now_ms)
{
    if (d != NULL && (d->no_cache || d->no_store))
        return CACHE_VERDICT_MISS;
    if (d != NULL && d->max_age_s >= 0 && cache_policy_age_s(stored_at_ms, now_ms) > d->max_age_s)
        return CACHE_VERDICT_MISS;
    if (expires_at_ms == 0 || now_ms < expires_at_ms)
        return CACHE_VERDICT_FRESH;
    if (d == NULL || d->max_stale_s == CACHE_POLICY_UNSET)
        return CACHE_VERDICT_MISS;
    if (d->max_stale_s == CACHE_POLICY_ANY)
        return CACHE_VERDICT_STALE;
    /* Staleness in whole seconds, rounded down like the age. */
    int64_t stale_s = sat_sub(now_ms, expires_at_ms) / 1000;
    return d->max_stale_s >= 0 && stale_s <= d->max_stale_s ? CACHE_VERDICT_STALE
                                                            : CACHE_VERDICT_MISS;
}

/* Rounded down; 0 when the clock says the entry is from the future. */
int64_t cache_policy_age_s(int64_t stored_at_ms, int64_t now_ms)
{
    int64_t age_ms = sat_sub(now_ms, stored_at_ms);
    return age_ms <= 0 ? 0 : age_ms / 1000;
}

/* The sign follows freshness exactly (fresh iff now < expires): with r ms
 * left, r > 0 gives floor(r / 1000) (0: under a second left) and r <= 0
 * gives -(floor(-r / 1000) + 1) (-1: expired under a second ago, or just
 * now). */
int64_t cache_policy_ttl_s(int64_t expires_at_ms, int64_t now_ms)
{
    if (expires_at_ms == 0)
        return INT64_MAX;
    int64_t left_ms = sat_sub(expires_at_ms, now_ms);
    if (left_ms > 0)
        return left_ms / 1000;
    int64_t over_ms = sat_sub(0, left_ms); /* saturates for INT64_MIN */
    return -(over_ms / 1000) - 1;
}

bool cache_policy_stale_if_error(int64_t expires_at_ms, int64_t now_ms, int64_t stale_if_error_ms)
{
    if (expires_at_ms == 0 || now_ms < expires_at_ms)
        return true;
    return sat_sub(now_ms, expires_at_ms) <= stale_if_error_ms;
}
