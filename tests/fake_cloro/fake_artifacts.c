/* fake_artifacts: ring buffer of generated artifacts and the HTML they render to.
 * Linear lookup is fine at test sizes (capacity is a few thousand). */
#include "fake_artifacts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_util.h"

struct fake_artifacts_entry {
    char uuid[37];
    int pages;
    int64_t generated_ms;
    char *title;
    char *text;
};

struct fake_artifacts {
    struct fake_artifacts_entry *entries;
    size_t capacity;
    size_t next; /* ring position of the next insert */
    size_t count;
};

struct fake_artifacts *fake_artifacts_new(size_t capacity)
{
    struct fake_artifacts *a = fake_xcalloc(1, sizeof(*a));
    a->capacity = capacity ? capacity : 1;
    a->entries = fake_xcalloc(a->capacity, sizeof(*a->entries));
    return a;
}

void fake_artifacts_free(struct fake_artifacts *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->capacity; i++) {
        free(a->entries[i].title);
        free(a->entries[i].text);
    }
    free(a->entries);
    free(a);
}

void fake_artifacts_add(struct fake_artifacts *a, const char *uuid, int pages, const char *title,
                        const char *text, int64_t now_ms)
{
    struct fake_artifacts_entry *e = &a->entries[a->next];
    free(e->title);
    free(e->text);
    snprintf(e->uuid, sizeof(e->uuid), "%s", uuid);
    e->pages = pages;
    e->generated_ms = now_ms;
    e->title = fake_xstrdup(title ? title : "");
    e->text = fake_xstrdup(text ? text : "");
    a->next = (a->next + 1) % a->capacity;
    if (a->count < a->capacity)
        a->count++;
}

static void fake_artifacts_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* Writes "<!-- pad ... -->\n" of exactly n bytes (n >= FAKE_ARTIFACTS_PAD_MIN) with
 * alphanumerics from a generator seeded by uuid and page. */
#define FAKE_ARTIFACTS_PAD_MIN 14
static void fake_artifacts_pad(FILE *f, const struct fake_artifacts_entry *e, int page, size_t n)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char key[48];
    snprintf(key, sizeof(key), "%s/%d", e->uuid, page);
    struct fake_rng rng;
    fake_rng_seed(&rng, fake_util_sha256_u64(key, strlen(key)));
    fputs("<!-- pad ", f);
    for (size_t i = 0; i < n - FAKE_ARTIFACTS_PAD_MIN; i++)
        fputc(alnum[fake_rng_below(&rng, sizeof(alnum) - 1)], f);
    fputs(" -->\n", f);
}

static char *fake_artifacts_render(const struct fake_artifacts_entry *e, int page, size_t min_bytes)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        abort();
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    fake_artifacts_escape(f, e->title);
    fprintf(f,
            " - page %d</title>\n</head>\n<body>\n<main data-artifact=\"%s\" data-page=\"%d\">\n"
            "<h1>",
            page, e->uuid, page);
    fake_artifacts_escape(f, e->title);
    fputs("</h1>\n<p>", f);
    fake_artifacts_escape(f, e->text);
    fprintf(f, "</p>\n<p>Page %d of %d.</p>\n</main>\n", page, e->pages);
    static const char tail[] = "</body>\n</html>\n";
    fflush(f);
    size_t total = len + sizeof(tail) - 1;
    if (min_bytes > total)
        fake_artifacts_pad(f, e, page,
                           min_bytes - total < FAKE_ARTIFACTS_PAD_MIN ? FAKE_ARTIFACTS_PAD_MIN
                                                                      : min_bytes - total);
    fputs(tail, f);
    fclose(f);
    return buf;
}

enum fake_artifacts_status fake_artifacts_lookup(struct fake_artifacts *a, const char *path,
                                                 int64_t now_ms, int64_t ttl_ms, size_t min_bytes,
                                                 char **html_out)
{
    *html_out = NULL;
    static const char prefix[] = "/results/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return FAKE_ARTIFACT_UNKNOWN;
    const char *uuid = path + sizeof(prefix) - 1;
    if (strlen(uuid) < 37 || !fake_util_is_uuid(uuid, 36) || uuid[36] != '/')
        return FAKE_ARTIFACT_UNKNOWN;
    int page = 0;
    int consumed = 0;
    if (sscanf(uuid + 37, "page-%d.html%n", &page, &consumed) != 1 || consumed == 0 ||
        uuid[37 + consumed] != '\0' || page < 1)
        return FAKE_ARTIFACT_UNKNOWN;
    for (size_t i = 0; i < a->count; i++) {
        struct fake_artifacts_entry *e = &a->entries[i];
        if (strncasecmp(e->uuid, uuid, 36) != 0)
            continue;
        if (page > e->pages)
            return FAKE_ARTIFACT_UNKNOWN;
        if (now_ms - e->generated_ms >= ttl_ms)
            return FAKE_ARTIFACT_EXPIRED;
        *html_out = fake_artifacts_render(e, page, min_bytes);
        return FAKE_ARTIFACT_FOUND;
    }
    return FAKE_ARTIFACT_UNKNOWN;
}
