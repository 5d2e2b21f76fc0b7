/* artifact_urls.c: the artifact host allow-list, finding the HTML artifact
 * URLs of an answer (cloro-api.md sections 5 and 12), their ids, and the
 * byte-level rewrite of an answer body to the proxy's copies. Knows nothing
 * of fetching or storing artifacts (artifacts.c) or of HTTP. Pure: no I/O,
 * no state.
 *
 * The rewrite scans the body as JSON tokens rather than parsing and
 * re-serializing it, so every byte but the replaced strings stays as cloro
 * sent it (key order, spacing, number spelling, escapes). */
#include "artifact_urls.h"

#include <jansson.h>
#include <openssl/sha.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest "host:port" compared; longer authorities are never allowed. */
#define HOST_MAX 256

static void set_err(char *err, size_t err_size, const char *fmt, const char *what)
{
    if (err != NULL && err_size > 0)
        snprintf(err, err_size, fmt, what);
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        abort();
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* --- hosts ---------------------------------------------------------------- */

/* Parses "1".."65535" (digits only) into *port. */
static bool parse_port(const char *s, size_t n, unsigned *port)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *port = v;
    return true;
}

/* Splits a lowercase authority "host", "host:port", "[v6]" or "[v6]:port"
 * into its host length and port (0 when absent). False when malformed: an
 * empty host, a bad port, an unbracketed second ':'. */
static bool split_authority(const char *a, size_t n, size_t *host_len, unsigned *port)
{
    size_t colon = n;
    if (n > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (close == NULL || close == a + 1)
            return false;
        colon = (size_t)(close - a) + 1;
        if (colon < n && a[colon] != ':')
            return false;
    } else {
        const char *c = memchr(a, ':', n);
        if (c != NULL) {
            colon = (size_t)(c - a);
            if (memchr(c + 1, ':', n - colon - 1) != NULL)
                return false;
        }
    }
    if (colon == 0)
        return false;
    *host_len = colon;
    *port = 0;
    if (colon == n)
        return true;
    return parse_port(a + colon + 1, n - colon - 1, port);
}

/* Checks one lowercase entry; NULL or what is wrong with it. */
static const char *check_entry(const char *e, size_t n)
{
    if (strstr(e, "://") != NULL)
        return "a scheme";
    if (memchr(e, '/', n) != NULL)
        return "a path";
    if (memchr(e, '@', n) != NULL)
        return "userinfo";
    if (n >= HOST_MAX)
        return "too long";
    size_t host_len;
    unsigned port;
    if (e[0] == ':' || (e[0] == '[' && n > 1 && e[1] == ']'))
        return "an empty host";
    if (!split_authority(e, n, &host_len, &port))
        return "a bad host or port";
    for (size_t i = 0; i < host_len; i++) {
        unsigned char c = (unsigned char)e[i];
        bool ok = isalnum(c) || c == '-' || c == '.' || c == '_' ||
                  (e[0] == '[' && (c == ':' || c == '[' || c == ']'));
        if (!ok)
            return "a character not allowed in a host name";
    }
    return NULL;
}

static int add_entry(struct artifact_hosts *out, size_t *cap, const char *s, size_t n, char *err,
                     size_t err_size)
{
    char *e = xstrndup(s, n);
    for (size_t i = 0; i < n; i++)
        e[i] = (char)tolower((unsigned char)e[i]);
    const char *why = check_entry(e, n);
    if (why != NULL) {
        if (err != NULL && err_size > 0)
            snprintf(err, err_size, "artifact host \"%s\": %s (expected host or host:port)", e,
                     why);
        free(e);
        return -1;
    }
    if (out->count == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        char **grown = realloc(out->hosts, *cap * sizeof *grown);
        if (grown == NULL)
            abort();
        out->hosts = grown;
    }
    out->hosts[out->count++] = e;
    return 0;
}

int artifact_hosts_parse(const char *list, struct artifact_hosts *out, char *err, size_t err_size)
{
    out->hosts = NULL;
    out->count = 0;
    if (list == NULL)
        return 0;
    size_t cap = 0;
    bool blank = true;
    for (const char *p = list; *p != '\0'; p++)
        if (!isspace((unsigned char)*p))
            blank = false;
    if (blank)
        return 0;
    /* Commas separate entries, each one or more space-separated hosts; a
     * comma with nothing before it (",a", "a,,b", "a,") is an empty entry. */
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        bool any = false;
        const char *q = p;
        while (q < end) {
            while (q < end && isspace((unsigned char)*q))
                q++;
            const char *start = q;
            while (q < end && !isspace((unsigned char)*q))
                q++;
            if (q > start) {
                any = true;
                if (add_entry(out, &cap, start, (size_t)(q - start), err, err_size) != 0)
                    goto fail;
            }
        }
        if (!any) {
            set_err(err, err_size, "artifact hosts \"%s\": an empty entry", list);
            goto fail;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
fail:
    artifact_hosts_free(out);
    return -1;
}

void artifact_hosts_free(struct artifact_hosts *h)
{
    for (size_t i = 0; i < h->count; i++)
        free(h->hosts[i]);
    free(h->hosts);
    h->hosts = NULL;
    h->count = 0;
}

bool artifact_hosts_allow(const struct artifact_hosts *h, const char *url)
{
    if (h == NULL || url == NULL)
        return false;
    /* Nothing a fetch could read differently from us: no spaces, no controls. */
    for (const char *p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return false;
    unsigned default_port;
    const char *a;
    if (strncasecmp(url, "https://", 8) == 0) {
        default_port = 443;
        a = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        default_port = 80;
        a = url + 7;
    } else {
        return false;
    }
    size_t n = strcspn(a, "/?#");
    if (n == 0 || n >= HOST_MAX || memchr(a, '@', n) != NULL)
        return false;
    char auth[HOST_MAX];
    for (size_t i = 0; i < n; i++)
        auth[i] = (char)tolower((unsigned char)a[i]);
    auth[n] = '\0';
    size_t host_len;
    unsigned port;
    if (!split_authority(auth, n, &host_len, &port))
        return false;
    if (port == 0)
        port = default_port;
    /* An entry without a port stands for the scheme's default port; one with
     * a port for that port only (also when the URL leaves it implicit). */
    for (size_t i = 0; i < h->count; i++) {
        const char *e = h->hosts[i];
        size_t e_host_len;
        unsigned e_port;
        if (!split_authority(e, strlen(e), &e_host_len, &e_port))
            continue;
        if (e_port == 0)
            e_port = default_port;
        if (e_host_len == host_len && memcmp(e, auth, host_len) == 0 && e_port == port)
            return true;
    }
    return false;
}

/* --- finding -------------------------------------------------------------- */

static void add_url(const struct artifact_hosts *hosts, json_t *v, struct artifact_url *out,
                    size_t max, size_t *count)
{
    const char *s = json_string_value(v);
    if (s == NULL || *count >= max)
        return;
    size_t n = json_string_length(v);
    /* Skip the empty, the too long, and strings with a NUL inside. */
    if (n == 0 || n >= CACHE_ARTIFACT_URL_MAX || strlen(s) != n)
        return;
    struct artifact_url *u = &out[(*count)++];
    memcpy(u->url, s, n + 1);
    artifact_urls_id(u->url, u->id);
    u->allowed = artifact_hosts_allow(hosts, u->url);
}

size_t artifact_urls_find(const char *body, size_t len, const struct artifact_hosts *hosts,
                          struct artifact_url *out, size_t max)
{
    if (body == NULL || max == 0)
        return 0;
    json_error_t error;
    json_t *root = json_loadb(body, len, 0, &error);
    if (root == NULL)
        return 0;
    /* Sync answers carry result.html; task results and webhook payloads the
     * same object as response.html (cloro-api.md sections 7 and 8). */
    json_t *html = json_object_get(json_object_get(root, "result"), "html");
    if (html == NULL)
        html = json_object_get(json_object_get(root, "response"), "html");
    size_t count = 0;
    if (json_is_string(html)) {
        add_url(hosts, html, out, max, &count);
    } else if (json_is_array(html)) {
        size_t i;
        json_t *v;
        json_array_foreach(html, i, v)
        {
            add_url(hosts, v, out, max, &count);
        }
    }
    json_decref(root);
    return count;
}

/* --- ids ------------------------------------------------------------------ */

static bool uuid_shape(const char *s)
{
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* cloro's form: the path ends in /results/<uuid>/page-<n>.html (section 12). */
static bool cloro_id(const char *url, char out[CACHE_ARTIFACT_ID_MAX])
{
    static const char results[] = "/results/";
    static const char suffix[] = ".html";
    const size_t results_len = sizeof results - 1;
    const size_t suffix_len = sizeof suffix - 1;
    size_t end = strcspn(url, "?#");
    if (end < suffix_len || memcmp(url + end - suffix_len, suffix, suffix_len) != 0)
        return false;
    size_t p = end - suffix_len; /* just past the page number */
    size_t digits = 0;
    while (digits < p && digits < 3 && isdigit((unsigned char)url[p - digits - 1]))
        digits++;
    if (digits < 1 || digits > 2 || url[p - digits] == '0')
        return false;
    size_t page_start = p - digits; /* "page-" ends here */
    /* "/results/" + 36 + "/page-" before the digits */
    size_t need = results_len + 36 + 6;
    if (page_start < need || memcmp(url + page_start - 6, "/page-", 6) != 0)
        return false;
    const char *uuid = url + page_start - 6 - 36;
    if (memcmp(uuid - results_len, results, results_len) != 0 || !uuid_shape(uuid))
        return false;
    char lower[37];
    for (int i = 0; i < 36; i++)
        lower[i] = (char)tolower((unsigned char)uuid[i]);
    lower[36] = '\0';
    snprintf(out, CACHE_ARTIFACT_ID_MAX, "%s/page-%.*s", lower, (int)digits, url + page_start);
    return true;
}

void artifact_urls_id(const char *url, char out[CACHE_ARTIFACT_ID_MAX])
{
    if (cloro_id(url, out))
        return;
    unsigned char sum[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)url, strlen(url), sum);
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    *p++ = 'x';
    for (int i = 0; i < 16; i++) {
        *p++ = hex[sum[i] >> 4];
        *p++ = hex[sum[i] & 0xf];
    }
    memcpy(p, "/page-1", sizeof "/page-1");
}

/* --- rewriting ------------------------------------------------------------ */

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (n > cap - b->len)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            abort();
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* Appends s as JSON string content: '"', '\' and controls escaped. */
static void buf_add_escaped(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_add(b, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, (const char *)&c, 1);
        }
    }
}

/* True when a URL's bytes are its own JSON spelling (bar '/' as "\/"). */
static bool plain_json(const char *url)
{
    for (const char *p = url; *p != '\0'; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            return false;
    return true;
}

/* True when the string content s[0..n) spells url, each '/' either as is or
 * escaped as "\/" (jansson's JSON_ESCAPE_SLASH and others). */
static bool spells(const char *s, size_t n, const char *url)
{
    size_t i = 0;
    for (const char *p = url; *p != '\0'; p++) {
        if (*p == '/' && i + 1 < n && s[i] == '\\' && s[i + 1] == '/')
            i += 2;
        else if (i < n && s[i] == *p)
            i++;
        else
            return false;
    }
    return i == n;
}

/* Index just past the closing quote of the string opening at body[start],
 * or 0 when it is unterminated. */
static size_t string_end(const char *body, size_t len, size_t start)
{
    for (size_t i = start + 1; i < len; i++) {
        if (body[i] == '\\')
            i++;
        else if (body[i] == '"')
            return i + 1;
    }
    return 0;
}

char *artifact_urls_rewrite(const char *body, size_t len, const struct artifact_url *urls,
                            size_t count, const char *public_url, size_t *out_len)
{
    if (out_len != NULL)
        *out_len = 0;
    if (body == NULL || urls == NULL || public_url == NULL)
        return NULL;
    size_t base_len = strlen(public_url);
    while (base_len > 0 && public_url[base_len - 1] == '/')
        base_len--;
    struct buf out = {0};
    size_t copied = 0; /* body[0..copied) is already in out */
    size_t replaced = 0;
    size_t i = 0;
    while (i < len) {
        if (body[i] != '"') {
            i++;
            continue;
        }
        size_t end = string_end(body, len, i);
        if (end == 0)
            break; /* not JSON; what is left is copied as is */
        /* A key is followed by ':'; only values are artifact URLs. */
        size_t next = end;
        while (next < len && isspace((unsigned char)body[next]))
            next++;
        const struct artifact_url *hit = NULL;
        if (next >= len || body[next] != ':') {
            for (size_t k = 0; k < count && hit == NULL; k++)
                if (urls[k].allowed && urls[k].url[0] != '\0' && plain_json(urls[k].url) &&
                    spells(body + i + 1, end - i - 2, urls[k].url))
                    hit = &urls[k];
        }
        if (hit != NULL) {
            buf_add(&out, body + copied, i - copied);
            buf_add(&out, "\"", 1);
            buf_add_escaped(&out, public_url, base_len);
            buf_add(&out, "/_proxy/artifacts/", sizeof "/_proxy/artifacts/" - 1);
            buf_add_escaped(&out, hit->id, strlen(hit->id));
            buf_add(&out, ".html\"", sizeof ".html\"" - 1);
            copied = end;
            replaced++;
        }
        i = end;
    }
    if (replaced == 0) {
        free(out.data);
        return NULL;
    }
    buf_add(&out, body + copied, len - copied);
    buf_add(&out, "", 1); /* a NUL past the end, for callers that want one */
    if (out_len != NULL)
        *out_len = out.len - 1;
    return out.data;
}
