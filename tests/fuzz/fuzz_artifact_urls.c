/* fuzz_artifact_urls: finding the HTML artifact URLs of an answer and
 * rewriting them to the proxy's copies (proxy/artifact_urls.c). The rewritten
 * body must still parse as JSON whenever the input did. */
#include "artifact_urls.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_URLS 64

static struct artifact_hosts hosts;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!hosts.count) {
        char err[256];
        if (artifact_hosts_parse("cdn.cloro.dev, storage.cloro.dev 127.0.0.1:8080", &hosts, err,
                                 sizeof err) != 0)
            abort();
    }
    const char *body = (const char *)data;
    struct artifact_url *urls = calloc(MAX_URLS, sizeof *urls);
    if (!urls)
        abort();
    size_t n = artifact_urls_find(body, size, &hosts, urls, MAX_URLS);
    if (n > MAX_URLS)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (strnlen(urls[i].url, sizeof urls[i].url) == sizeof urls[i].url ||
            strnlen(urls[i].id, sizeof urls[i].id) == sizeof urls[i].id)
            abort();
        if (urls[i].allowed != artifact_hosts_allow(&hosts, urls[i].url))
            abort();
    }
    size_t out_len = 0;
    char *out = artifact_urls_rewrite(body, size, urls, n, "http://127.0.0.1:8787", &out_len);
    if (out) {
        json_error_t e;
        json_t *in = json_loadb(body, size, JSON_DECODE_ANY, &e);
        if (in) {
            json_t *o = json_loadb(out, out_len, JSON_DECODE_ANY, &e);
            if (!o)
                abort(); /* the rewrite broke valid JSON */
            json_decref(o);
            json_decref(in);
        }
        free(out);
    }
    free(urls);
    return 0;
}
