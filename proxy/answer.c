/* answer.c: the headers of an answer by cache outcome. A replay (hit, stale,
 * coalesced) costs nothing and says so (X-Credits-Charged: 0, X-Credits-Saved),
 * carries the billed call's X-Request-ID, and drops the headers of the moment
 * the original call carried (rate-limit and concurrency counters, balance).
 * Out of online mode (mode.h) Cache-Status names the mode in its detail
 * (stale-if-error keeps its own). */
#include "answer.h"
#include "artifacts.h"
#include "clock.h"
#include "policy.h"
#include "server.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Headers of the moment: true of the call that made them, not of a replay. */
static bool volatile_header(const char *name)
{
    static const char *const prefixes[] = {"X-RateLimit-", "X-Concurrency-", "X-Concurrent-"};
    static const char *const names[] = {"X-Credits-Remaining", "X-Latency-Ms", "Retry-After",
                                        "X-Credits-Charged"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncasecmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

static bool replayed(enum cache_outcome o)
{
    return o == CACHE_OUTCOME_HIT || o == CACHE_OUTCOME_STALE || o == CACHE_OUTCOME_COALESCED;
}

static void format_status(char *out, size_t size, const struct answer_context *ctx,
                          const struct cache_entry *e, int64_t now_ms)
{
    int64_t ttl = cache_policy_ttl_s(e->expires_at_ms, now_ms);
    char ttl_part[40] = "";
    if (e->expires_at_ms != 0)
        snprintf(ttl_part, sizeof ttl_part, "; ttl=%lld", (long long)ttl);
    char fwd_status[32] = "";
    if (ctx->upstream_status > 0)
        snprintf(fwd_status, sizeof fwd_status, "; fwd-status=%d", ctx->upstream_status);
    const char *stored = ctx->stored ? "; stored" : "";
    switch (ctx->outcome) {
    case CACHE_OUTCOME_HIT:
    case CACHE_OUTCOME_STALE:
        if (ctx->after_error)
            snprintf(out, size, "cloro-proxy; fwd=miss%s%s; detail=stale-if-error", fwd_status,
                     ttl_part);
        else
            snprintf(out, size, "cloro-proxy; hit%s", ttl_part);
        return;
    case CACHE_OUTCOME_COALESCED:
        snprintf(out, size, "cloro-proxy; fwd=miss%s; collapsed", fwd_status);
        return;
    case CACHE_OUTCOME_REFRESH:
        snprintf(out, size, "cloro-proxy; fwd=request%s%s", fwd_status, stored);
        return;
    case CACHE_OUTCOME_BYPASS:
        snprintf(out, size, "cloro-proxy; fwd=bypass%s", fwd_status);
        return;
    case CACHE_OUTCOME_MISS:
    case CACHE_OUTCOME_NONE:
        snprintf(out, size, "cloro-proxy; fwd=miss%s%s", fwd_status, stored);
        return;
    }
}

static void format_cache_status(char *out, size_t size, const struct answer_context *ctx,
                                const struct cache_entry *e, int64_t now_ms, enum proxy_mode mode)
{
    format_status(out, size, ctx, e, now_ms);
    size_t len = strlen(out);
    if (mode != PROXY_MODE_ONLINE && !ctx->after_error && len < size)
        snprintf(out + len, size - len, "; detail=%s", proxy_mode_name(mode));
}

/* Sends e's body with its artifact URLs pointing at the proxy's copies
 * (cloro-api.md section 12: the originals expire in 24 h). Returns false,
 * sending nothing, when the body names no artifact of an allowed host. */
char *answer_rewrite_artifacts(struct server *srv, const void *body, size_t body_len,
                               size_t *out_len)
{
    if (srv->artifacts == NULL || !srv->cfg->rewrite_artifact_urls)
        return NULL;
    /* Most answers have no html: a byte search keeps them off the JSON parser. */
    if (body_len < 8 || memmem(body, body_len, "\"html\"", 6) == NULL)
        return NULL;
    struct artifact_url urls[16];
    size_t n =
        artifact_urls_find((const char *)body, body_len, artifacts_hosts(srv->artifacts), urls, 16);
    return n > 0 ? artifact_urls_rewrite((const char *)body, body_len, urls, n,
                                         srv->cfg->public_url, out_len)
                 : NULL;
}

static bool send_rewritten(struct request *r, const struct cache_entry *e)
{
    size_t len = 0;
    char *rewritten = answer_rewrite_artifacts(r->server, e->body, e->body_len, &len);
    if (rewritten == NULL)
        return false;
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL || evbuffer_add(buf, rewritten, len) != 0)
        abort();
    free(rewritten);
    request_send(r, e->status, buf);
    evbuffer_free(buf);
    return true;
}

/* Sends an answer (fresh from the upstream or replayed from the cache) with
 * the headers its outcome calls for. body, when not NULL, is moved out and
 * replaces e->body (the leader's own upstream buffer, saving a copy). */
void answer_send(struct request *r, const struct cache_entry *e, const struct answer_context *ctx,
                 struct evbuffer *body)
{
    struct server *srv = r->server;
    int64_t now = clock_wall_ms();
    bool replay = replayed(ctx->outcome);
    r->cache_outcome = ctx->outcome;
    for (size_t i = 0; i < e->header_count; i++) {
        const struct cache_header *h = &e->headers[i];
        if (replay ? volatile_header(h->name) : strcasecmp(h->name, "X-Credits-Charged") == 0)
            continue;
        request_add_header(r, h->name, h->value);
    }
    if (e->request_id != NULL && e->request_id[0] != '\0' && r->upstream_request_id == NULL) {
        r->upstream_request_id = strdup(e->request_id);
        if (r->upstream_request_id == NULL)
            abort();
    }
    char number[32];
    if (replay) {
        /* Nobody pays for a replay; what the stored answer cost is saved. */
        request_add_header(r, "X-Credits-Charged", "0");
        if (e->status >= 200 && e->status < 300) {
            snprintf(number, sizeof number, "%lld", (long long)e->credits_charged);
            request_add_header(r, "X-Credits-Saved", number);
            request_add_header(r, "X-Credits-Saved-By", "cache");
            srv->stats.cache_credits_saved += (uint64_t)e->credits_charged;
        }
        if (ctx->outcome != CACHE_OUTCOME_COALESCED) {
            snprintf(number, sizeof number, "%lld",
                     (long long)cache_policy_age_s(e->stored_at_ms, now));
            request_add_header(r, "Age", number);
        }
    } else {
        for (size_t i = 0; i < e->header_count; i++)
            if (strcasecmp(e->headers[i].name, "X-Credits-Charged") == 0)
                request_add_header(r, "X-Credits-Charged", e->headers[i].value);
    }
    if (r->keyed)
        request_add_header(r, "X-Cache-Key", r->key.hex);
    if (ctx->outcome != CACHE_OUTCOME_NONE) {
        char status[160];
        format_cache_status(status, sizeof status, ctx, e, now, srv->mode);
        request_add_header(r, "X-Cache", request_cache_outcome_name(ctx->outcome));
        request_add_header(r, "Cache-Status", status);
    }
    srv->stats.cache_by_outcome[ctx->outcome]++;
    if (send_rewritten(r, e))
        return;
    if (body != NULL) {
        request_send(r, e->status, body);
        return;
    }
    struct evbuffer *copy = evbuffer_new();
    if (copy == NULL || evbuffer_add(copy, e->body, e->body_len) != 0)
        abort();
    request_send(r, e->status, copy);
    evbuffer_free(copy);
}
