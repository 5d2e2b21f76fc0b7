/* auth.c: the admission check of auth.h: members' tokens on /v1/, the admin
 * token on the admin routes. Tokens are hashed and compared in constant
 * time (CRYPTO_memcmp); none is ever logged or echoed. */
#include "auth.h"
#include "log.h"
#include "member.h"
#include "members.h"
#include "reply.h"
#include "request.h"
#include "server.h"

#include <openssl/crypto.h>
#include <string.h>

/* Longest ?token= read; longer ones are refused like a wrong token. */
#define QUERY_TOKEN_MAX 512

/* The token of "Bearer <token>", or NULL. "Bearer" is matched as written:
 * cloro reads a lowercase "bearer" as no key (cloro-api.md section 1). */
static const char *bearer_token(const char *header, size_t *len)
{
    if (header == NULL || strncmp(header, "Bearer ", 7) != 0)
        return NULL;
    const char *t = header + 7;
    while (*t == ' ' || *t == '\t')
        t++;
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    if (n == 0)
        return NULL;
    *len = n;
    return t;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The percent-decoded value of "token" in the query string, into out.
 * Returns its length, 0 when absent or empty, -1 when malformed or too long. */
static int query_token(const char *query, char *out, size_t size)
{
    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > 6 && strncmp(p, "token=", 6) == 0) {
            size_t n = 0;
            for (size_t i = 6; i < len; i++) {
                char c = p[i];
                if (c == '%') {
                    int hi = i + 2 < len ? hex_value(p[i + 1]) : -1;
                    int lo = i + 2 < len ? hex_value(p[i + 2]) : -1;
                    if (hi < 0 || lo < 0)
                        return -1;
                    c = (char)(hi << 4 | lo);
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (n + 1 >= size)
                    return -1;
                out[n++] = c;
            }
            out[n] = '\0';
            return (int)n;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* The admin routes: all of /_proxy but the health check and the artifacts
 * (their links are handed to clients in answers). */
static bool is_admin_path(const char *path)
{
    if (strcmp(path, "/_proxy") != 0 && strncmp(path, "/_proxy/", 8) != 0)
        return false;
    return strcmp(path, "/_proxy/healthz") != 0 && strncmp(path, "/_proxy/artifacts/", 18) != 0;
}

static bool admin_required(const struct server *srv)
{
    return members_count(srv->members) > 0 || strcmp(srv->cfg->auth, "members") == 0 ||
           srv->cfg->admin_token != NULL;
}

/* Same length and bytes, in time that depends on neither token's content:
 * both are hashed, the digests compared with CRYPTO_memcmp. */
static bool same_token(const char *a, size_t a_len, const char *b, size_t b_len)
{
    unsigned char ha[MEMBER_HASH_BYTES], hb[MEMBER_HASH_BYTES];
    member_token_hash(a, a_len, ha);
    member_token_hash(b, b_len, hb);
    bool same = CRYPTO_memcmp(ha, hb, sizeof ha) == 0;
    OPENSSL_cleanse(ha, sizeof ha);
    OPENSSL_cleanse(hb, sizeof hb);
    return same;
}

static void refuse(struct request *r, enum proxy_error err, bool challenge)
{
    if (challenge)
        request_add_header(r, "WWW-Authenticate", "Bearer realm=\"cloro-proxy\"");
    reply_error(r, err, NULL, NULL);
}

static bool admit_member(struct request *r)
{
    struct server *srv = r->server;
    if (!members_required(srv->members))
        return true;
    size_t len = 0;
    const char *token = bearer_token(request_header(r, "Authorization"), &len);
    if (token == NULL) {
        refuse(r, PROXY_ERROR_MISSING_API_KEY, true);
        return false;
    }
    const struct member *m = members_lookup_token(srv->members, token, len);
    if (m == NULL) {
        refuse(r, PROXY_ERROR_INVALID_API_KEY, true);
        return false;
    }
    snprintf(r->member, sizeof r->member, "%s", m->name);
    return true;
}

static bool admit_admin(struct request *r, enum route route)
{
    struct server *srv = r->server;
    if (!is_admin_path(r->path) || !admin_required(srv))
        return true;
    const char *admin = srv->cfg->admin_token;
    if (admin == NULL) {
        refuse(r, PROXY_ERROR_ADMIN_TOKEN_UNSET, false);
        return false;
    }
    size_t len = 0;
    const char *token = bearer_token(request_header(r, "Authorization"), &len);
    char from_query[QUERY_TOKEN_MAX];
    bool malformed = false;
    if (token == NULL && route == ROUTE_STATUS_PAGE && strcmp(r->method, "GET") == 0) {
        /* A browser opening the status page has no header to send. */
        int n = query_token(r->query, from_query, sizeof from_query);
        malformed = n < 0;
        if (n > 0) {
            token = from_query;
            len = (size_t)n;
        }
    }
    if (token == NULL && !malformed) {
        refuse(r, PROXY_ERROR_ADMIN_TOKEN_MISSING, true);
        return false;
    }
    bool ok = !malformed && same_token(token, len, admin, strlen(admin));
    OPENSSL_cleanse(from_query, sizeof from_query);
    if (!ok) {
        refuse(r, PROXY_ERROR_ADMIN_TOKEN_WRONG, false);
        return false;
    }
    return true;
}

bool auth_admit(struct request *r, enum route route)
{
    if (route == ROUTE_UPSTREAM)
        return admit_member(r);
    return admit_admin(r, route);
}

bool auth_check_startup(const struct server *srv)
{
    const struct config *cfg = srv->cfg;
    size_t count = members_count(srv->members);
    bool possible = strcmp(cfg->auth, "members") == 0 ||
                    (strcmp(cfg->auth, "auto") == 0 && (count > 0 || cfg->members_file[0] != '\0'));
    if (possible && cfg->api_key == NULL) {
        log_error("startup_failed",
                  "error=\"members need the proxy to hold the cloro API key: set CLORO_API_KEY "
                  "or api_key_file (a member's token is never sent to cloro)\" auth=%s "
                  "members=%zu",
                  cfg->auth, count);
        return false;
    }
    char file[600];
    log_info("auth", "mode=%s auth=%s members=%zu members_file=%s admin_token=%s",
             members_required(srv->members) ? "members" : "open", cfg->auth, count,
             log_value(file, sizeof file, cfg->members_file[0] != '\0' ? cfg->members_file : "-"),
             cfg->admin_token != NULL ? "set" : "unset");
    if (count > 0 && cfg->admin_token == NULL)
        log_warn("admin_token_unset", "hint=\"admin routes answer 403 ADMIN_TOKEN_NOT_CONFIGURED "
                                      "until CLORO_ADMIN_TOKEN or admin_token_file is set\"");
    return true;
}
