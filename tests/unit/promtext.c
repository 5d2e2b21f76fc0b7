/* promtext.c: the strict exposition-format parser of promtext.h. Line by
 * line: comments (HELP, TYPE, others ignored), blank lines, samples; the
 * histogram checks run once everything is read. */
#include "promtext.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct family_state {
    bool has_help, has_type, has_samples, closed;
};

struct parser {
    struct promtext *doc;
    struct family_state *state; /* parallel to doc->families */
    size_t cap_families, cap_samples;
    char **keys;  /* canonical key of each sample, for duplicates */
    long current; /* family whose samples are being read, -1 none */
    int line;
    char *err;
    size_t err_size;
};

static int fail(struct parser *p, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->err_size, "line %d: %s", p->line, msg);
    return -1;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static bool name_start(char c, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static bool name_char(char c, bool colon)
{
    return name_start(c, colon) || (c >= '0' && c <= '9');
}

/* Length of a metric name (colon) or label name at s; 0 when none. */
static size_t name_len(const char *s, bool colon)
{
    if (!name_start(*s, colon))
        return 0;
    size_t n = 1;
    while (name_char(s[n], colon))
        n++;
    return n;
}

static long find_family(const struct promtext *doc, const char *name)
{
    for (size_t i = 0; i < doc->family_count; i++)
        if (strcmp(doc->families[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long add_family(struct parser *p, const char *name)
{
    struct promtext *doc = p->doc;
    if (doc->family_count == p->cap_families) {
        p->cap_families = p->cap_families ? 2 * p->cap_families : 16;
        doc->families = realloc(doc->families, p->cap_families * sizeof *doc->families);
        p->state = realloc(p->state, p->cap_families * sizeof *p->state);
        if (doc->families == NULL || p->state == NULL)
            abort();
    }
    struct promtext_family *f = &doc->families[doc->family_count];
    f->name = dup_n(name, strlen(name));
    f->type = dup_n("untyped", 7);
    f->help = NULL;
    memset(&p->state[doc->family_count], 0, sizeof *p->state);
    return (long)doc->family_count++;
}

/* Unescapes HELP text: only \\ and \n. */
static int unescape_help(struct parser *p, const char *s, char **out)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1), *o = d;
    if (d == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *o++ = s[i];
            continue;
        }
        if (s[i + 1] == '\\')
            *o++ = '\\';
        else if (s[i + 1] == 'n')
            *o++ = '\n';
        else {
            free(d);
            return fail(p, "HELP text has an invalid escape '\\%c'", s[i + 1]);
        }
        i++;
    }
    *o = '\0';
    *out = d;
    return 0;
}

static int parse_comment(struct parser *p, const char *line)
{
    const char *s = line + 1;
    while (*s == ' ' || *s == '\t')
        s++;
    bool help = strncmp(s, "HELP", 4) == 0 && (s[4] == ' ' || s[4] == '\t');
    bool type = strncmp(s, "TYPE", 4) == 0 && (s[4] == ' ' || s[4] == '\t');
    if (!help && !type)
        return 0; /* another comment */
    s += 4;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = name_len(s, true);
    if (n == 0 || (s[n] != ' ' && s[n] != '\t' && s[n] != '\0'))
        return fail(p, "%s names no valid metric", help ? "HELP" : "TYPE");
    char *name = dup_n(s, n);
    s += n;
    if (*s != '\0')
        s++; /* the one separator; HELP text keeps the rest as is */
    long f = find_family(p->doc, name);
    if (f < 0)
        f = add_family(p, name);
    free(name);
    struct family_state *st = &p->state[f];
    struct promtext_family *fam = &p->doc->families[f];
    if (st->has_samples)
        return fail(p, "%s of %s after its samples", help ? "HELP" : "TYPE", fam->name);
    if (help) {
        if (st->has_help)
            return fail(p, "a second HELP for %s", fam->name);
        st->has_help = true;
        return unescape_help(p, s, &fam->help);
    }
    if (st->has_type)
        return fail(p, "a second TYPE for %s", fam->name);
    while (*s == ' ' || *s == '\t')
        s++;
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (size_t i = 0; i < 5; i++) {
        size_t tn = strlen(types[i]);
        if (strncmp(s, types[i], tn) == 0 && strspn(s + tn, " \t") == strlen(s + tn)) {
            st->has_type = true;
            free(fam->type);
            fam->type = dup_n(types[i], tn);
            return 0;
        }
    }
    return fail(p, "TYPE of %s is not a type: '%s'", fam->name, s);
}

/* Go's ParseFloat as the format uses it: a number, NaN, +Inf, -Inf. */
static int parse_value(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "NaN") == 0) {
        *out = NAN;
        return 0;
    }
    if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "Inf") == 0) {
        *out = INFINITY;
        return 0;
    }
    if (strcmp(buf, "-Inf") == 0) {
        *out = -INFINITY;
        return 0;
    }
    if (strpbrk(buf, "nNiIxX") != NULL) /* strtod's other spellings are not the format's */
        return -1;
    char *end;
    *out = strtod(buf, &end);
    return *end == '\0' ? 0 : -1;
}

static int label_cmp(const void *a, const void *b)
{
    const struct promtext_label *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* name{a="1",b="2"} with labels sorted (le included). */
static char *canonical_key(const struct promtext_sample *s)
{
    struct promtext_label sorted[PROMTEXT_MAX_LABELS];
    memcpy(sorted, s->labels, s->label_count * sizeof *sorted);
    qsort(sorted, s->label_count, sizeof *sorted, label_cmp);
    size_t len = strlen(s->name) + 3;
    for (size_t i = 0; i < s->label_count; i++)
        len += strlen(sorted[i].name) + 2 * strlen(sorted[i].value) + 5;
    char *k = malloc(len), *o = k;
    if (k == NULL)
        abort();
    o += sprintf(o, "%s{", s->name);
    for (size_t i = 0; i < s->label_count; i++) {
        o += sprintf(o, "%s=\"", sorted[i].name);
        for (const char *c = sorted[i].value; *c != '\0'; c++) {
            if (*c == '"' || *c == '\\')
                *o++ = '\\';
            *o++ = *c;
        }
        o += sprintf(o, "\",");
    }
    sprintf(o, "}");
    return k;
}

static int parse_labels(struct parser *p, const char **sp, struct promtext_sample *smp)
{
    const char *s = *sp + 1; /* past '{' */
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '}')
            break;
        size_t n = name_len(s, false);
        if (n == 0)
            return fail(p, "a label name is expected at '%.20s'", s);
        if (n >= 2 && s[0] == '_' && s[1] == '_')
            return fail(p, "label names starting with __ are reserved");
        if (smp->label_count == PROMTEXT_MAX_LABELS)
            return fail(p, "too many labels");
        char *lname = dup_n(s, n);
        for (size_t i = 0; i < smp->label_count; i++)
            if (strcmp(smp->labels[i].name, lname) == 0) {
                free(lname);
                return fail(p, "label %.*s given twice", (int)n, s);
            }
        struct promtext_label *l = &smp->labels[smp->label_count++];
        l->name = lname;
        l->value = NULL;
        s += n;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '=')
            return fail(p, "'=' expected after label %s", lname);
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '"')
            return fail(p, "the value of label %s is not quoted", lname);
        s++;
        size_t cap = strlen(s) + 1;
        char *v = malloc(cap), *o = v;
        if (v == NULL)
            abort();
        l->value = v;
        while (*s != '"') {
            if (*s == '\0' || *s == '\n')
                return fail(p, "the value of label %s is not closed", lname);
            if (*s == '\\') {
                if (s[1] == '\\' || s[1] == '"')
                    *o++ = s[1];
                else if (s[1] == 'n')
                    *o++ = '\n';
                else
                    return fail(p, "label %s has an invalid escape '\\%c'", lname, s[1]);
                s += 2;
                continue;
            }
            *o++ = *s++;
        }
        *o = '\0';
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s != '}')
            return fail(p, "',' or '}' expected after label %s", lname);
    }
    *sp = s + 1;
    return 0;
}

static bool has_suffix(const char *s, const char *suffix, size_t *base)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n <= k || strcmp(s + n - k, suffix) != 0)
        return false;
    *base = n - k;
    return true;
}

/* The family a sample name belongs to (created untyped when none). */
static long family_of(struct parser *p, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t base;
        if (!has_suffix(name, suffixes[i], &base))
            continue;
        char *b = dup_n(name, base);
        long f = find_family(p->doc, b);
        free(b);
        if (f >= 0 && (strcmp(p->doc->families[f].type, "histogram") == 0 ||
                       (i > 0 && strcmp(p->doc->families[f].type, "summary") == 0)))
            return f;
    }
    long f = find_family(p->doc, name);
    return f >= 0 ? f : add_family(p, name);
}

static const char *label_value(const struct promtext_sample *s, const char *name)
{
    for (size_t i = 0; i < s->label_count; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return NULL;
}

static int parse_sample(struct parser *p, const char *line)
{
    struct promtext *doc = p->doc;
    if (doc->sample_count == p->cap_samples) {
        p->cap_samples = p->cap_samples ? 2 * p->cap_samples : 64;
        doc->samples = realloc(doc->samples, p->cap_samples * sizeof *doc->samples);
        p->keys = realloc(p->keys, p->cap_samples * sizeof *p->keys);
        if (doc->samples == NULL || p->keys == NULL)
            abort();
    }
    struct promtext_sample *smp = &doc->samples[doc->sample_count];
    memset(smp, 0, sizeof *smp);
    p->keys[doc->sample_count] = NULL;
    doc->sample_count++; /* counted at once, so promtext_free frees what it holds */
    const char *s = line;
    size_t n = name_len(s, true);
    if (n == 0)
        return fail(p, "a metric name is expected at '%.20s'", s);
    smp->name = dup_n(s, n);
    s += n;
    if (*s == '{' && parse_labels(p, &s, smp) != 0)
        return -1;
    if (*s != ' ' && *s != '\t')
        return fail(p, "a space is expected before the value of %s", smp->name);
    while (*s == ' ' || *s == '\t')
        s++;
    n = strcspn(s, " \t");
    if (parse_value(s, n, &smp->value) != 0)
        return fail(p, "'%.*s' is not a value (%s)", (int)n, s, smp->name);
    s += n;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s != '\0') {
        char *end;
        (void)strtoll(s, &end, 10);
        if (end == s || strspn(end, " \t") != strlen(end))
            return fail(p, "'%s' is not a timestamp (%s)", s, smp->name);
    }

    long f = family_of(p, smp->name);
    smp->family = (size_t)f;
    struct family_state *st = &p->state[f];
    const struct promtext_family *fam = &doc->families[f];
    if (p->current != f) {
        if (p->current >= 0)
            p->state[p->current].closed = true;
        if (st->closed)
            return fail(p, "the samples of %s are not together", fam->name);
        p->current = f;
    }
    st->has_samples = true;
    bool histogram = strcmp(fam->type, "histogram") == 0;
    if ((strcmp(fam->type, "counter") == 0 || strcmp(fam->type, "gauge") == 0) &&
        strcmp(smp->name, fam->name) != 0)
        return fail(p, "%s is not a sample of the %s %s", smp->name, fam->type, fam->name);
    if (strcmp(fam->type, "counter") == 0 && !(smp->value >= 0))
        return fail(p, "counter %s is negative or NaN", smp->name);
    if (histogram) {
        size_t base;
        bool bucket = has_suffix(smp->name, "_bucket", &base);
        if (strcmp(smp->name, fam->name) == 0)
            return fail(p, "histogram %s has a sample of its bare name", fam->name);
        if (bucket != (label_value(smp, "le") != NULL))
            return fail(p, "%s: le belongs on the _bucket samples, and only there", smp->name);
    }
    char *key = canonical_key(smp);
    for (size_t i = 0; i + 1 < doc->sample_count; i++)
        if (strcmp(p->keys[i], key) == 0) {
            free(key);
            return fail(p, "sample %s given twice", smp->name);
        }
    p->keys[doc->sample_count - 1] = key;
    return 0;
}

/* The label set of s without le, as a key. */
static char *group_key(const struct promtext_sample *s)
{
    struct promtext_sample copy = *s;
    copy.label_count = 0;
    for (size_t i = 0; i < s->label_count; i++)
        if (strcmp(s->labels[i].name, "le") != 0)
            copy.labels[copy.label_count++] = s->labels[i];
    copy.name = (char *)"";
    return canonical_key(&copy);
}

static int check_histograms(struct parser *p)
{
    struct promtext *doc = p->doc;
    p->line = 0;
    for (size_t f = 0; f < doc->family_count; f++) {
        const struct promtext_family *fam = &doc->families[f];
        if (strcmp(fam->type, "histogram") != 0)
            continue;
        /* Each label set: its buckets in order, then _sum and _count. */
        for (size_t i = 0; i < doc->sample_count; i++) {
            const struct promtext_sample *s = &doc->samples[i];
            size_t base;
            if (s->family != f || !has_suffix(s->name, "_bucket", &base))
                continue;
            char *g = group_key(s);
            bool first = true;
            for (size_t j = 0; j < i; j++) {
                char *h = doc->samples[j].family == f &&
                                  has_suffix(doc->samples[j].name, "_bucket", &base)
                              ? group_key(&doc->samples[j])
                              : NULL;
                if (h != NULL && strcmp(g, h) == 0)
                    first = false;
                free(h);
            }
            if (!first) {
                free(g);
                continue;
            }
            double last_le = -INFINITY, last_count = 0;
            bool any = false;
            double count = NAN;
            bool has_sum = false;
            for (size_t j = i; j < doc->sample_count; j++) {
                const struct promtext_sample *t = &doc->samples[j];
                if (t->family != f)
                    continue;
                char *h = group_key(t);
                bool same = strcmp(g, h) == 0;
                free(h);
                if (!same)
                    continue;
                if (has_suffix(t->name, "_bucket", &base)) {
                    double le;
                    const char *text = label_value(t, "le");
                    if (parse_value(text, strlen(text), &le) != 0 || isnan(le)) {
                        free(g);
                        return fail(p, "%s: le=\"%s\" is not a bound", fam->name, text);
                    }
                    if (any && !(le > last_le)) {
                        free(g);
                        return fail(p, "%s: le %s does not increase", fam->name, text);
                    }
                    if (any && t->value < last_count) {
                        free(g);
                        return fail(p, "%s: bucket le=%s is below the one before: not cumulative",
                                    fam->name, text);
                    }
                    any = true;
                    last_le = le;
                    last_count = t->value;
                } else if (has_suffix(t->name, "_count", &base)) {
                    count = t->value;
                } else if (has_suffix(t->name, "_sum", &base)) {
                    has_sum = true;
                }
            }
            free(g);
            if (!isinf(last_le) || last_le < 0)
                return fail(p, "%s: the last bucket is not le=\"+Inf\"", fam->name);
            if (isnan(count) || count != last_count)
                return fail(p, "%s: _count is missing or differs from the +Inf bucket", fam->name);
            if (!has_sum)
                return fail(p, "%s: _sum is missing", fam->name);
        }
    }
    return 0;
}

int promtext_parse(const char *text, struct promtext *doc, char *err, size_t err_size)
{
    memset(doc, 0, sizeof *doc);
    struct parser p = {.doc = doc, .current = -1, .err = err, .err_size = err_size};
    int rc = 0;
    size_t len = strlen(text);
    if (len > 0 && text[len - 1] != '\n') {
        p.line = 0;
        rc = fail(&p, "the text does not end with a newline");
    }
    const char *s = text;
    while (rc == 0 && *s != '\0') {
        p.line++;
        const char *end = strchr(s, '\n');
        size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
        char *line = dup_n(s, n);
        if (strspn(line, " \t") == n)
            rc = 0; /* blank */
        else if (line[0] == '#')
            rc = parse_comment(&p, line);
        else
            rc = parse_sample(&p, line);
        free(line);
        s += n + (end != NULL);
    }
    if (rc == 0)
        rc = check_histograms(&p);
    for (size_t i = 0; i < doc->sample_count; i++)
        free(p.keys[i]);
    free(p.keys);
    free(p.state);
    return rc;
}

void promtext_free(struct promtext *doc)
{
    for (size_t i = 0; i < doc->family_count; i++) {
        free(doc->families[i].name);
        free(doc->families[i].type);
        free(doc->families[i].help);
    }
    for (size_t i = 0; i < doc->sample_count; i++) {
        free(doc->samples[i].name);
        for (size_t k = 0; k < doc->samples[i].label_count; k++) {
            free(doc->samples[i].labels[k].name);
            free(doc->samples[i].labels[k].value);
        }
    }
    free(doc->families);
    free(doc->samples);
    memset(doc, 0, sizeof *doc);
}

bool promtext_get(const struct promtext *doc, const char *name, const char *const *labels,
                  double *out)
{
    size_t want = 0;
    while (labels != NULL && labels[2 * want] != NULL)
        want++;
    for (size_t i = 0; i < doc->sample_count; i++) {
        const struct promtext_sample *s = &doc->samples[i];
        if (strcmp(s->name, name) != 0 || s->label_count != want)
            continue;
        bool match = true;
        for (size_t k = 0; k < want && match; k++) {
            const char *v = label_value(s, labels[2 * k]);
            match = v != NULL && strcmp(v, labels[2 * k + 1]) == 0;
        }
        if (match) {
            *out = s->value;
            return true;
        }
    }
    return false;
}

const struct promtext_family *promtext_family(const struct promtext *doc, const char *name)
{
    long f = find_family(doc, name);
    return f >= 0 ? &doc->families[f] : NULL;
}

double promtext_sum(const struct promtext *doc, const char *name)
{
    double sum = 0;
    for (size_t i = 0; i < doc->sample_count; i++)
        if (strcmp(doc->samples[i].name, name) == 0)
            sum += doc->samples[i].value;
    return sum;
}
