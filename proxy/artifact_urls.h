/* artifact_urls.h: the HTML artifact URLs in cloro's answers (cloro-api.md
 * section 12) and their rewriting to the proxy's own copies. Pure: no I/O.
 * AI engines give result.html as one URL, Google and Google News as an
 * array of page URLs; task results and webhook payloads carry the same
 * object as response.html. Only hosts in artifact_hosts are ever fetched or
 * rewritten: other URLs found in an answer are left alone. */
#ifndef CLORO_ARTIFACT_URLS_H
#define CLORO_ARTIFACT_URLS_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>

struct artifact_hosts {
    char **hosts; /* lowercase "host" or "host:port" */
    size_t count;
};

/* Parses a comma- or space-separated list ("cdn.cloro.dev, storage.cloro.dev",
 * "127.0.0.1:8080"). Returns 0, or -1 with a sentence in err (an empty
 * entry, a scheme or a path, a bad port). */
int artifact_hosts_parse(const char *list, struct artifact_hosts *out, char *err, size_t err_size);
void artifact_hosts_free(struct artifact_hosts *h);
/* True for an http:// or https:// URL whose host (or host:port) is listed,
 * case-insensitively; no userinfo allowed. */
bool artifact_hosts_allow(const struct artifact_hosts *h, const char *url);

struct artifact_url {
    char url[CACHE_ARTIFACT_URL_MAX];
    char id[CACHE_ARTIFACT_ID_MAX];
    bool allowed; /* its host is in artifact_hosts */
};

/* The artifact URLs of an answer body (result.html or response.html, a
 * string or an array of strings), in order, at most max. URLs longer than
 * CACHE_ARTIFACT_URL_MAX - 1 are skipped. Returns how many; 0 for a body
 * that is not JSON or has none. */
size_t artifact_urls_find(const char *body, size_t len, const struct artifact_hosts *hosts,
                          struct artifact_url *out, size_t max);

/* The id of an artifact URL: "<uuid>/page-<n>" for cloro's form
 * .../results/<uuid>/page-<n>.html (uuid lowercase hex and dashes, n 1..99);
 * otherwise "x<32 hex digits of SHA-256(url)>/page-1". */
void artifact_urls_id(const char *url, char out[CACHE_ARTIFACT_ID_MAX]);

/* The body with every allowed URL replaced, where it stands as a JSON string
 * (also in its "\/"-escaped spelling), by public_url + "/_proxy/artifacts/"
 * + id + ".html". Other bytes are untouched. Returns a new buffer (*out_len
 * its length), or NULL when nothing was replaced. */
char *artifact_urls_rewrite(const char *body, size_t len, const struct artifact_url *urls,
                            size_t count, const char *public_url, size_t *out_len);

#endif
