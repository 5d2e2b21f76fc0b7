/* usage.c: the usage table (usage.h). Rows live in one array, found by an
 * open-addressing index over (day, member, provider), at most half full; a
 * row carries its counters and whether they changed since the last flush.
 * Counters in memory are the row's whole value (loaded from the store at
 * start-up for today, then counted on), so a flush writes rows whole and a
 * row the writer refused is simply written again at the next flush. The
 * proxy is the only writer of "usage"; the CLI only reads it.
 *
 * Days are UTC. Rows of past days stay in memory until written, then go at
 * the next day change; the store keeps them (until retention). Members'
 * totals since start are kept apart, for the metrics. */
#include "usage.h"
#include "store.h"
#include "writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_MS (INT64_C(86400000))

struct usage_row {
    char day[USAGE_DAY_LEN + 1];
    char member[USAGE_MEMBER_MAX];
    char provider[USAGE_PROVIDER_MAX];
    uint64_t c[USAGE_COUNTERS];
    bool dirty;
};

struct member_total {
    char member[USAGE_MEMBER_MAX];
    uint64_t c[USAGE_COUNTERS];
};

struct usage {
    struct usage_row *rows;
    size_t count, cap;
    uint32_t *index; /* row number + 1, 0: free; index_cap a power of two */
    size_t index_cap;
    struct member_total *totals;
    size_t total_count, total_cap;
    int64_t retention_days;
    char today[USAGE_DAY_LEN + 1];    /* the day of the last flush ("" before the first) */
    int64_t day_start_ms, day_end_ms; /* the day usage_add last computed */
    char day_cached[USAGE_DAY_LEN + 1];
};

static const char *const counter_names[USAGE_COUNTERS] = {
    [USAGE_REQUESTS] = "requests",
    [USAGE_HITS] = "hits",
    [USAGE_COALESCED] = "coalesced",
    [USAGE_UPSTREAM_CALLS] = "upstream_calls",
    [USAGE_CREDITS_CHARGED] = "credits_charged",
    [USAGE_CREDITS_SAVED_CACHE] = "credits_saved_cache",
    [USAGE_CREDITS_SAVED_ASYNC] = "credits_saved_async",
    [USAGE_ERRORS] = "errors",
    [USAGE_BYTES_IN] = "bytes_in",
    [USAGE_BYTES_OUT] = "bytes_out",
};

const char *usage_counter_name(enum usage_counter c)
{
    return counter_names[c];
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        abort();
    return q;
}

/* --- days ------------------------------------------------------------------ */

void usage_day(int64_t wall_ms, char *out)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, USAGE_DAY_LEN + 1, "%Y-%m-%d", &tm) == 0)
        snprintf(out, USAGE_DAY_LEN + 1, "1970-01-01");
}

int64_t usage_day_start_ms(const char *day)
{
    if (day == NULL || strlen(day) != USAGE_DAY_LEN || day[4] != '-' || day[7] != '-')
        return -1;
    for (int i = 0; i < USAGE_DAY_LEN; i++)
        if (i != 4 && i != 7 && (day[i] < '0' || day[i] > '9'))
            return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = atoi(day) - 1900;
    tm.tm_mon = atoi(day + 5) - 1;
    tm.tm_mday = atoi(day + 8);
    if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31)
        return -1;
    time_t t = timegm(&tm);
    char back[USAGE_DAY_LEN + 1];
    usage_day((int64_t)t * 1000, back);
    return strcmp(back, day) == 0 ? (int64_t)t * 1000 : -1; /* 2026-02-30 is no day */
}

bool usage_day_valid(const char *text)
{
    return usage_day_start_ms(text) >= 0;
}

/* --- the row codec ---------------------------------------------------------- */

size_t usage_key_encode(const char *day, const char *member, const char *provider,
                        unsigned char *out, size_t size)
{
    size_t d = strlen(day), m = strlen(member), p = strlen(provider);
    size_t len = d + 1 + m + 1 + p;
    if (d != USAGE_DAY_LEN || len > size)
        return 0;
    memcpy(out, day, d);
    out[d] = '\0';
    memcpy(out + d + 1, member, m);
    out[d + 1 + m] = '\0';
    memcpy(out + d + 1 + m + 1, provider, p);
    return len;
}

int usage_key_decode(const unsigned char *key, size_t len, char *day, char *member, char *provider)
{
    if (len < USAGE_DAY_LEN + 2 || key[USAGE_DAY_LEN] != '\0')
        return -1;
    const unsigned char *m = key + USAGE_DAY_LEN + 1;
    const unsigned char *end = key + len;
    const unsigned char *nul = memchr(m, '\0', (size_t)(end - m));
    if (nul == NULL)
        return -1;
    size_t mlen = (size_t)(nul - m), plen = (size_t)(end - nul - 1);
    if (mlen >= USAGE_MEMBER_MAX || plen == 0 || plen >= USAGE_PROVIDER_MAX ||
        memchr(nul + 1, '\0', plen) != NULL)
        return -1;
    memcpy(day, key, USAGE_DAY_LEN);
    day[USAGE_DAY_LEN] = '\0';
    if (!usage_day_valid(day))
        return -1;
    memcpy(member, m, mlen);
    member[mlen] = '\0';
    memcpy(provider, nul + 1, plen);
    provider[plen] = '\0';
    return 0;
}

size_t usage_value_encode(const uint64_t *counters, unsigned char *out)
{
    out[0] = 1;
    out[1] = USAGE_COUNTERS;
    for (int i = 0; i < USAGE_COUNTERS; i++)
        for (int b = 0; b < 8; b++)
            out[2 + 8 * i + b] = (unsigned char)(counters[i] >> (8 * b));
    return USAGE_VALUE_BYTES;
}

int usage_value_decode(const unsigned char *data, size_t len, uint64_t *counters)
{
    if (len < 2 || data[0] != 1 || len != 2 + 8 * (size_t)data[1])
        return -1;
    memset(counters, 0, USAGE_COUNTERS * sizeof *counters);
    size_t n = data[1] < USAGE_COUNTERS ? data[1] : USAGE_COUNTERS;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        for (int b = 7; b >= 0; b--)
            v = (v << 8) | data[2 + 8 * i + (size_t)b];
        counters[i] = v;
    }
    return 0;
}

/* --- the table -------------------------------------------------------------- */

static uint64_t row_hash(const char *day, const char *member, const char *provider)
{
    uint64_t h = 14695981039346656037ULL;
    for (const char *parts[3] = {day, member, provider}, **p = parts; p < parts + 3; p++) {
        for (const char *c = *p; *c != '\0'; c++)
            h = (h ^ (unsigned char)*c) * 1099511628211ULL;
        h = (h ^ 0xFF) * 1099511628211ULL; /* a separator no name holds */
    }
    return h;
}

static bool row_is(const struct usage_row *r, const char *day, const char *member,
                   const char *provider)
{
    return strcmp(r->day, day) == 0 && strcmp(r->member, member) == 0 &&
           strcmp(r->provider, provider) == 0;
}

/* The index slot of the row, or of the free slot where it would go. */
static size_t slot_of(const struct usage *u, const char *day, const char *member,
                      const char *provider)
{
    size_t mask = u->index_cap - 1;
    size_t i = (size_t)row_hash(day, member, provider) & mask;
    while (u->index[i] != 0 && !row_is(&u->rows[u->index[i] - 1], day, member, provider))
        i = (i + 1) & mask;
    return i;
}

static void reindex(struct usage *u, size_t cap)
{
    free(u->index);
    u->index_cap = cap;
    u->index = xrealloc(NULL, cap * sizeof *u->index);
    memset(u->index, 0, cap * sizeof *u->index);
    for (size_t n = 0; n < u->count; n++) {
        const struct usage_row *r = &u->rows[n];
        u->index[slot_of(u, r->day, r->member, r->provider)] = (uint32_t)(n + 1);
    }
}

/* The row of (day, member, provider), created with zero counters when new.
 * Names too long for a row are cut. */
static struct usage_row *row_get(struct usage *u, const char *day, const char *member,
                                 const char *provider)
{
    char m[USAGE_MEMBER_MAX], p[USAGE_PROVIDER_MAX];
    snprintf(m, sizeof m, "%s", member);
    snprintf(p, sizeof p, "%s", provider);
    if (2 * (u->count + 1) > u->index_cap)
        reindex(u, u->index_cap ? 2 * u->index_cap : 64);
    size_t i = slot_of(u, day, m, p);
    if (u->index[i] != 0)
        return &u->rows[u->index[i] - 1];
    if (u->count == u->cap) {
        u->cap = u->cap ? 2 * u->cap : 32;
        u->rows = xrealloc(u->rows, u->cap * sizeof *u->rows);
    }
    struct usage_row *r = &u->rows[u->count];
    memset(r, 0, sizeof *r);
    snprintf(r->day, sizeof r->day, "%s", day);
    memcpy(r->member, m, sizeof m);
    memcpy(r->provider, p, sizeof p);
    u->index[i] = (uint32_t)(++u->count);
    return r;
}

struct usage *usage_new(int64_t retention_days)
{
    struct usage *u = calloc(1, sizeof *u);
    if (u == NULL)
        abort();
    u->retention_days = retention_days;
    return u;
}

void usage_free(struct usage *u)
{
    if (u == NULL)
        return;
    free(u->rows);
    free(u->index);
    free(u->totals);
    free(u);
}

/* The day of now_ms, cached while now_ms stays inside it. */
static const char *day_of(struct usage *u, int64_t now_ms)
{
    if (now_ms < u->day_start_ms || now_ms >= u->day_end_ms || u->day_cached[0] == '\0') {
        usage_day(now_ms, u->day_cached);
        u->day_start_ms = usage_day_start_ms(u->day_cached);
        u->day_end_ms = u->day_start_ms + DAY_MS;
    }
    return u->day_cached;
}

static struct member_total *total_get(struct usage *u, const char *member)
{
    for (size_t i = 0; i < u->total_count; i++)
        if (strncmp(u->totals[i].member, member, USAGE_MEMBER_MAX - 1) == 0)
            return &u->totals[i];
    if (u->total_count == u->total_cap) {
        u->total_cap = u->total_cap ? 2 * u->total_cap : 8;
        u->totals = xrealloc(u->totals, u->total_cap * sizeof *u->totals);
    }
    struct member_total *t = &u->totals[u->total_count++];
    memset(t, 0, sizeof *t);
    snprintf(t->member, sizeof t->member, "%s", member);
    return t;
}

void usage_add(struct usage *u, int64_t now_ms, const char *member, const char *provider,
               const uint64_t *counters)
{
    struct usage_row *r = row_get(u, day_of(u, now_ms), member, provider);
    struct member_total *t = total_get(u, member);
    for (int i = 0; i < USAGE_COUNTERS; i++) {
        r->c[i] += counters[i];
        t->c[i] += counters[i];
    }
    r->dirty = true;
}

static int on_stored_row(const unsigned char *key, size_t key_len, const unsigned char *data,
                         size_t len, void *arg)
{
    struct usage *u = arg;
    char day[USAGE_DAY_LEN + 1], member[USAGE_MEMBER_MAX], provider[USAGE_PROVIDER_MAX];
    uint64_t c[USAGE_COUNTERS];
    if (usage_key_decode(key, key_len, day, member, provider) != 0 ||
        usage_value_decode(data, len, c) != 0)
        return 0; /* not a row of ours: skipped */
    struct usage_row *r = row_get(u, day, member, provider);
    /* Counted in memory already (loading after requests): the stored value
     * comes first, what memory counted since is added to it. */
    for (int i = 0; i < USAGE_COUNTERS; i++)
        r->c[i] += c[i];
    return 0;
}

int usage_load(struct usage *u, struct cache_store *store, int64_t now_ms)
{
    char today[USAGE_DAY_LEN + 1];
    usage_day(now_ms, today);
    struct usage *tmp = usage_new(0);
    int rc = cache_store_foreach_usage(store, today, USAGE_DAY_LEN, on_stored_row, tmp);
    if (rc == 0)
        for (size_t i = 0; i < tmp->count; i++) {
            const struct usage_row *s = &tmp->rows[i];
            struct usage_row *r = row_get(u, s->day, s->member, s->provider);
            for (int k = 0; k < USAGE_COUNTERS; k++)
                r->c[k] += s->c[k];
        }
    usage_free(tmp);
    return rc == 0 ? 0 : -1;
}

/* Rows of days before today that are written leave memory. */
static void drop_past_days(struct usage *u, const char *today)
{
    size_t kept = 0;
    for (size_t i = 0; i < u->count; i++)
        if (u->rows[i].dirty || strcmp(u->rows[i].day, today) >= 0)
            u->rows[kept++] = u->rows[i];
    if (kept == u->count)
        return;
    u->count = kept;
    reindex(u, u->index_cap);
}

void usage_flush(struct usage *u, struct cache_writer *w, int64_t now_ms)
{
    unsigned char key[CACHE_USAGE_KEY_MAX], value[USAGE_VALUE_BYTES];
    bool past_left = false;
    char today[USAGE_DAY_LEN + 1];
    usage_day(now_ms, today);
    for (size_t i = 0; i < u->count; i++) {
        struct usage_row *r = &u->rows[i];
        if (w == NULL)
            r->dirty = false; /* nowhere to write it: memory only */
        if (r->dirty) {
            size_t klen = usage_key_encode(r->day, r->member, r->provider, key, sizeof key);
            size_t vlen = usage_value_encode(r->c, value);
            if (klen == 0 || cache_writer_usage(w, key, klen, value, vlen))
                r->dirty = false;
        }
        if (strcmp(r->day, today) < 0)
            past_left = true;
    }
    if (strcmp(u->today, today) == 0)
        return;
    /* The first flush of a day (or of the run). */
    if (w != NULL && u->retention_days > 0) {
        char cut[USAGE_DAY_LEN + 1];
        usage_day(now_ms - (u->retention_days - 1) * DAY_MS, cut);
        if (!cache_writer_usage_prune(w, cut, USAGE_DAY_LEN))
            return; /* refused: tried again at the next flush */
    }
    if (past_left)
        drop_past_days(u, today);
    for (size_t i = 0; i < u->count; i++)
        if (strcmp(u->rows[i].day, today) < 0)
            return; /* a past row still unwritten: the day change is retried */
    snprintf(u->today, sizeof u->today, "%s", today);
}

uint64_t usage_charged_today(struct usage *u, const char *member, int64_t now_ms)
{
    const char *today = day_of(u, now_ms);
    uint64_t sum = 0;
    for (size_t i = 0; i < u->count; i++)
        if (strcmp(u->rows[i].day, today) == 0 &&
            strncmp(u->rows[i].member, member, USAGE_MEMBER_MAX - 1) == 0)
            sum += u->rows[i].c[USAGE_CREDITS_CHARGED];
    return sum;
}

void usage_foreach_member(const struct usage *u, usage_member_cb cb, void *arg)
{
    for (size_t i = 0; i < u->total_count; i++)
        cb(u->totals[i].member, u->totals[i].c, arg);
}

/* --- the report ------------------------------------------------------------- */

/* Member, provider, day: the order of the providers' days. */
static int by_provider(const void *a, const void *b)
{
    const struct usage_row *x = a, *y = b;
    int c = strcmp(x->member, y->member);
    if (c == 0)
        c = strcmp(x->provider, y->provider);
    return c != 0 ? c : strcmp(x->day, y->day);
}

/* Member, day, provider: the order of the members' days. */
static int by_day(const void *a, const void *b)
{
    const struct usage_row *x = a, *y = b;
    int c = strcmp(x->member, y->member);
    if (c == 0)
        c = strcmp(x->day, y->day);
    return c != 0 ? c : strcmp(x->provider, y->provider);
}

static json_t *counters_json(const uint64_t *c)
{
    json_t *o = json_object();
    if (o == NULL)
        abort();
    for (int i = 0; i < USAGE_COUNTERS; i++)
        json_object_set_new(o, counter_names[i], json_integer((json_int_t)c[i]));
    return o;
}

/* Adds c into the counters object at parent[name], made when absent. */
static void add_into(json_t *parent, const char *name, const uint64_t *c)
{
    json_t *o = json_object_get(parent, name);
    if (o == NULL) {
        o = counters_json(c);
        json_object_set_new(parent, name, o);
        return;
    }
    for (int i = 0; i < USAGE_COUNTERS; i++) {
        json_t *v = json_object_get(o, counter_names[i]);
        json_integer_set(v, json_integer_value(v) + (json_int_t)c[i]);
    }
}

static json_t *child(json_t *parent, const char *name)
{
    json_t *o = json_object_get(parent, name);
    if (o == NULL) {
        o = json_object();
        if (o == NULL)
            abort();
        json_object_set_new(parent, name, o);
    }
    return o;
}

struct report_ctx {
    struct usage *all;
};

static int on_report_row(const unsigned char *key, size_t key_len, const unsigned char *data,
                         size_t len, void *arg)
{
    return on_stored_row(key, key_len, data, len, ((struct report_ctx *)arg)->all);
}

json_t *usage_report(const struct usage *u, struct cache_store *store, const char *member,
                     const char *since, int64_t now_ms)
{
    struct report_ctx ctx = {.all = usage_new(0)};
    if (store != NULL &&
        cache_store_foreach_usage(store, since, strlen(since), on_report_row, &ctx) != 0) {
        usage_free(ctx.all);
        return NULL;
    }
    /* Live rows are the whole value of theirs: they replace the stored one. */
    for (size_t i = 0; u != NULL && i < u->count; i++) {
        const struct usage_row *l = &u->rows[i];
        if (strcmp(l->day, since) < 0)
            continue;
        struct usage_row *r = row_get(ctx.all, l->day, l->member, l->provider);
        memcpy(r->c, l->c, sizeof r->c);
    }
    const char *wanted = member == NULL ? NULL : strcmp(member, USAGE_ANONYMOUS) == 0 ? "" : member;
    char today[USAGE_DAY_LEN + 1];
    usage_day(now_ms, today);
    json_t *members = json_object();
    if (members == NULL)
        abort();
    uint64_t totals[USAGE_COUNTERS] = {0};
    struct usage_row *rows = ctx.all->rows;
    size_t count = ctx.all->count;
    /* Two passes, each in the order its days are listed in; members come
     * out in the same (ascending) order either way. */
    if (count > 1)
        qsort(rows, count, sizeof *rows, by_day);
    for (size_t i = 0; i < count; i++) {
        const struct usage_row *r = &rows[i];
        if (wanted != NULL && strcmp(r->member, wanted) != 0)
            continue;
        json_t *m = child(members, r->member[0] != '\0' ? r->member : USAGE_ANONYMOUS);
        add_into(m, "totals", r->c);
        add_into(child(m, "days"), r->day, r->c);
        for (int k = 0; k < USAGE_COUNTERS; k++)
            totals[k] += r->c[k];
    }
    if (count > 1)
        qsort(rows, count, sizeof *rows, by_provider);
    for (size_t i = 0; i < count; i++) {
        const struct usage_row *r = &rows[i];
        if (wanted != NULL && strcmp(r->member, wanted) != 0)
            continue;
        json_t *m = child(members, r->member[0] != '\0' ? r->member : USAGE_ANONYMOUS);
        json_t *p = child(child(m, "providers"), r->provider);
        add_into(p, "totals", r->c);
        add_into(child(p, "days"), r->day, r->c);
    }
    usage_free(ctx.all);
    json_t *report =
        json_pack("{s:s, s:s, s:s, s:o, s:o}", "since", since, "today", today, "anonymous",
                  USAGE_ANONYMOUS, "totals", counters_json(totals), "members", members);
    if (report == NULL)
        abort();
    return report;
}
