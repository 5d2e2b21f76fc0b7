/* status_page.c: serves the embedded status page of status_page.h. */
#include "status_page.h"
#include "request.h"

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sources {
    char *text;
    size_t len, cap;
};

static void append(struct sources *s, const char *text)
{
    size_t n = strlen(text);
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->text = realloc(s->text, s->cap);
        if (s->text == NULL)
            abort();
    }
    memcpy(s->text + s->len, text, n + 1);
    s->len += n;
}

static const char *find(const char *from, const char *end, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = from; p + n <= end; p++)
        if (memcmp(p, needle, n) == 0)
            return p;
    return NULL;
}

/* Appends " 'sha256-<base64>'" for the body of every <tag ...>...</tag>. */
static void hash_blocks(struct sources *s, const char *html, size_t len, const char *tag)
{
    char open[16], close[16];
    snprintf(open, sizeof open, "<%s", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *end = html + len;
    const char *p = html;
    while ((p = find(p, end, open)) != NULL) {
        const char *body = memchr(p, '>', (size_t)(end - p));
        if (body == NULL)
            return;
        body++;
        const char *stop = find(body, end, close);
        if (stop == NULL)
            return;
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int digest_len = 0;
        if (EVP_Digest(body, (size_t)(stop - body), digest, &digest_len, EVP_sha256(), NULL) != 1)
            abort();
        unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
        EVP_EncodeBlock(b64, digest, (int)digest_len);
        append(s, " 'sha256-");
        append(s, (const char *)b64);
        append(s, "'");
        p = stop + strlen(close);
    }
}

char *status_page_csp(const char *html, size_t len)
{
    struct sources s = {0};
    append(&s, "default-src 'none'; script-src");
    hash_blocks(&s, html, len, "script");
    append(&s, "; style-src");
    hash_blocks(&s, html, len, "style");
    append(&s, "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'");
    return s.text;
}

void status_page_serve(struct request *r)
{
    /* The page never changes while the process runs: its policy is made once. */
    static char *csp;
    if (csp == NULL)
        csp = status_page_csp((const char *)status_page_html, status_page_html_len);
    request_add_header(r, "Content-Type", "text/html; charset=utf-8");
    request_add_header(r, "Cache-Control", "no-store");
    request_add_header(r, "Content-Security-Policy", csp);
    request_add_header(r, "X-Content-Type-Options", "nosniff");
    request_add_header(r, "Referrer-Policy", "no-referrer");
    struct evbuffer *body = evbuffer_new();
    if (body == NULL)
        abort();
    evbuffer_add_reference(body, status_page_html, status_page_html_len, NULL, NULL);
    request_send(r, 200, body);
    evbuffer_free(body);
}
