/* entry.c: the binary record of one cached answer (entry.h): encoding,
 * checksum-verified decoding, and the peek at its times. Owns the byte
 * layout; knows nothing of LMDB (store.c) or HTTP. Pure: no I/O, no state.
 *
 * Every integer is written byte by byte in little endian, never by copying
 * a struct, so the format does not depend on the compiler or the host.
 * decode trusts nothing: the checksum is verified first, and every length is
 * still checked against the bytes that remain, so even a record with a
 * valid checksum but inconsistent lengths is refused without reading out of
 * bounds. */
#include "entry.h"

#include <openssl/sha.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_MAGIC     "CPE1"
#define ENTRY_MAGIC_LEN 4
#define ENTRY_SUM_LEN   SHA256_DIGEST_LENGTH
/* magic, version, status, stored_at, expires_at, credits, header_count */
#define ENTRY_FIXED_LEN (ENTRY_MAGIC_LEN + 2 + 2 + 8 + 8 + 8 + 2)
/* Version 2: u32 sample and the base key, after the body (version 3: then
 * the request, a u32-length-prefixed field). */
#define ENTRY_SAMPLE_LEN (4 + CACHE_ENTRY_KEY_BYTES)
/* Offset of stored_at_ms; expires_at_ms follows it. */
#define ENTRY_TIMES_OFF (ENTRY_MAGIC_LEN + 2 + 2)

/* --- encoding ----------------------------------------------------------- */

static unsigned char *put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xff);
    return p + 4;
}

static unsigned char *put_i64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v; /* two's complement, well defined */
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((u >> (8 * i)) & 0xff);
    return p + 8;
}

static unsigned char *put_bytes(unsigned char *p, const void *data, size_t len)
{
    p = put_u32(p, (uint32_t)len);
    if (len > 0)
        memcpy(p, data, len);
    return p + len;
}

/* NULL strings are encoded as "" (decode then gives ""). */
static const char *or_empty(const char *s)
{
    return s == NULL ? "" : s;
}

/* *total += 4 + len, refusing lengths a u32 cannot carry and size_t overflow. */
static int add_field(size_t *total, size_t len)
{
    if (len > UINT32_MAX || *total > SIZE_MAX - 4 - len)
        return -1;
    *total += 4 + len;
    return 0;
}

/* Also -1 (with *out NULL) for what the layout cannot carry: a status outside
 * 0..65535, a string or body over 4 GiB, a body pointer missing for a
 * non-zero length; and when memory or the hash fails. */
int cache_entry_encode(const struct cache_entry *e, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (e->header_count > CACHE_ENTRY_MAX_HEADERS || (e->header_count > 0 && e->headers == NULL))
        return -1;
    if (e->status < 0 || e->status > UINT16_MAX || (e->body_len > 0 && e->body == NULL))
        return -1;

    size_t total = ENTRY_FIXED_LEN;
    if (add_field(&total, strlen(or_empty(e->provider))) != 0 ||
        add_field(&total, strlen(or_empty(e->request_id))) != 0)
        return -1;
    for (size_t i = 0; i < e->header_count; i++) {
        if (add_field(&total, strlen(or_empty(e->headers[i].name))) != 0 ||
            add_field(&total, strlen(or_empty(e->headers[i].value))) != 0)
            return -1;
    }
    bool sample = e->sample >= 2;
    bool request = e->request != NULL && e->request[0] != '\0';
    if (add_field(&total, e->body_len) != 0 ||
        (request && add_field(&total, strlen(e->request)) != 0) ||
        total > SIZE_MAX - ENTRY_SUM_LEN - ENTRY_SAMPLE_LEN)
        return -1;
    total += ENTRY_SUM_LEN + (sample || request ? ENTRY_SAMPLE_LEN : 0);

    unsigned char *buf = malloc(total);
    if (buf == NULL)
        return -1;
    unsigned char *p = buf;
    memcpy(p, ENTRY_MAGIC, ENTRY_MAGIC_LEN);
    p += ENTRY_MAGIC_LEN;
    p = put_u16(p, request  ? CACHE_ENTRY_VERSION_REQUEST
                   : sample ? CACHE_ENTRY_VERSION_SAMPLE
                            : CACHE_ENTRY_VERSION);
    p = put_u16(p, (uint16_t)e->status);
    p = put_i64(p, e->stored_at_ms);
    p = put_i64(p, e->expires_at_ms);
    p = put_i64(p, e->credits_charged);
    p = put_u16(p, (uint16_t)e->header_count);
    const char *s = or_empty(e->provider);
    p = put_bytes(p, s, strlen(s));
    s = or_empty(e->request_id);
    p = put_bytes(p, s, strlen(s));
    for (size_t i = 0; i < e->header_count; i++) {
        s = or_empty(e->headers[i].name);
        p = put_bytes(p, s, strlen(s));
        s = or_empty(e->headers[i].value);
        p = put_bytes(p, s, strlen(s));
    }
    p = put_bytes(p, e->body, e->body_len);
    if (sample || request) {
        p = put_u32(p, sample ? e->sample : 0);
        if (sample)
            memcpy(p, e->base_key, CACHE_ENTRY_KEY_BYTES);
        else
            memset(p, 0, CACHE_ENTRY_KEY_BYTES);
        p += CACHE_ENTRY_KEY_BYTES;
    }
    if (request)
        p = put_bytes(p, e->request, strlen(e->request));
    if (SHA256(buf, (size_t)(p - buf), p) == NULL) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = total;
    return 0;
}

/* --- decoding ----------------------------------------------------------- */

/* A cursor over the bytes not yet read; every get checks left first. */
struct reader {
    const unsigned char *p;
    size_t left;
};

static int get_u16(struct reader *r, uint16_t *v)
{
    if (r->left < 2)
        return -1;
    *v = (uint16_t)(r->p[0] | (unsigned)r->p[1] << 8);
    r->p += 2;
    r->left -= 2;
    return 0;
}

static int get_u32(struct reader *r, uint32_t *v)
{
    if (r->left < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++)
        *v |= (uint32_t)r->p[i] << (8 * i);
    r->p += 4;
    r->left -= 4;
    return 0;
}

static int64_t i64_of(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)p[i] << (8 * i);
    /* Back from two's complement without implementation-defined casts. */
    if (u <= (uint64_t)INT64_MAX)
        return (int64_t)u;
    return -(int64_t)(~u) - 1;
}

static int get_i64(struct reader *r, int64_t *v)
{
    if (r->left < 8)
        return -1;
    *v = i64_of(r->p);
    r->p += 8;
    r->left -= 8;
    return 0;
}

/* A u32-length-prefixed field copied into a new NUL-terminated buffer.
 * Strings (text) may not contain a NUL: the encoder cannot produce one, and
 * it would silently cut the C string. The body may. */
enum field_kind { FIELD_TEXT, FIELD_BINARY };

static int get_field(struct reader *r, enum field_kind kind, unsigned char **out, size_t *len)
{
    uint32_t n;
    if (get_u32(r, &n) != 0 || n > r->left)
        return -1;
    if (kind == FIELD_TEXT && memchr(r->p, '\0', n) != NULL)
        return -1;
    unsigned char *copy = malloc((size_t)n + 1);
    if (copy == NULL)
        return -1;
    if (n > 0)
        memcpy(copy, r->p, n);
    copy[n] = '\0';
    r->p += n;
    r->left -= n;
    *out = copy;
    if (len != NULL)
        *len = n;
    return 0;
}

static int get_text(struct reader *r, char **out)
{
    unsigned char *s = NULL;
    if (get_field(r, FIELD_TEXT, &s, NULL) != 0)
        return -1;
    *out = (char *)s;
    return 0;
}

/* The record's version (1, 2 or 3), or -1. */
static int check_head(const unsigned char *data, size_t len)
{
    if (data == NULL || len < ENTRY_FIXED_LEN || memcmp(data, ENTRY_MAGIC, ENTRY_MAGIC_LEN) != 0)
        return -1;
    uint16_t version = (uint16_t)(data[ENTRY_MAGIC_LEN] | (unsigned)data[ENTRY_MAGIC_LEN + 1] << 8);
    return version == CACHE_ENTRY_VERSION || version == CACHE_ENTRY_VERSION_SAMPLE ||
                   version == CACHE_ENTRY_VERSION_REQUEST
               ? version
               : -1;
}

/* The body is NUL-terminated one byte past body_len (not counted), so a JSON
 * body can be read as a string; it is allocated even when empty. headers is
 * NULL when header_count is 0. */
int cache_entry_decode(const unsigned char *data, size_t len, struct cache_entry *out)
{
    memset(out, 0, sizeof *out);
    int version = check_head(data, len);
    if (version < 0 || len < ENTRY_FIXED_LEN + ENTRY_SUM_LEN)
        return -1;
    size_t signed_len = len - ENTRY_SUM_LEN;
    unsigned char sum[ENTRY_SUM_LEN];
    if (SHA256(data, signed_len, sum) == NULL || memcmp(sum, data + signed_len, sizeof sum) != 0)
        return -1;

    struct reader r = {data + ENTRY_MAGIC_LEN + 2, signed_len - ENTRY_MAGIC_LEN - 2};
    uint16_t status, header_count;
    if (get_u16(&r, &status) != 0 || get_i64(&r, &out->stored_at_ms) != 0 ||
        get_i64(&r, &out->expires_at_ms) != 0 || get_i64(&r, &out->credits_charged) != 0 ||
        get_u16(&r, &header_count) != 0 || header_count > CACHE_ENTRY_MAX_HEADERS)
        goto fail;
    out->status = status;
    if (get_text(&r, &out->provider) != 0 || get_text(&r, &out->request_id) != 0)
        goto fail;
    if (header_count > 0) {
        out->headers = calloc(header_count, sizeof *out->headers);
        if (out->headers == NULL)
            goto fail;
        /* Counted as each header is read, so free() sees only what exists. */
        for (size_t i = 0; i < header_count; i++) {
            out->header_count = i + 1;
            if (get_text(&r, &out->headers[i].name) != 0 ||
                get_text(&r, &out->headers[i].value) != 0)
                goto fail;
        }
    }
    if (get_field(&r, FIELD_BINARY, &out->body, &out->body_len) != 0)
        goto fail;
    if (version == CACHE_ENTRY_VERSION_SAMPLE) {
        /* A sample's record: written only for K >= 2. */
        if (get_u32(&r, &out->sample) != 0 || out->sample < 2 || r.left < CACHE_ENTRY_KEY_BYTES)
            goto fail;
        memcpy(out->base_key, r.p, CACHE_ENTRY_KEY_BYTES);
        r.p += CACHE_ENTRY_KEY_BYTES;
        r.left -= CACHE_ENTRY_KEY_BYTES;
    }
    if (version == CACHE_ENTRY_VERSION_REQUEST) {
        /* The request, after the sample fields (sample 0: not a sample). */
        if (get_u32(&r, &out->sample) != 0 || out->sample == 1 || r.left < CACHE_ENTRY_KEY_BYTES)
            goto fail;
        memcpy(out->base_key, r.p, CACHE_ENTRY_KEY_BYTES);
        r.p += CACHE_ENTRY_KEY_BYTES;
        r.left -= CACHE_ENTRY_KEY_BYTES;
        if (get_text(&r, &out->request) != 0)
            goto fail;
    }
    if (r.left != 0) /* bytes between the body (or the sample) and the checksum */
        goto fail;
    return 0;

fail:
    cache_entry_free(out);
    return -1;
}

void cache_entry_free(struct cache_entry *e)
{
    if (e == NULL)
        return;
    free(e->provider);
    free(e->request_id);
    free(e->request);
    for (size_t i = 0; i < e->header_count; i++) {
        free(e->headers[i].name);
        free(e->headers[i].value);
    }
    free(e->headers);
    free(e->body);
    memset(e, 0, sizeof *e);
}

/* Also -1 on a bad magic or version: those bytes are not our times. The
 * checksum is not verified (that needs the whole record). */
int cache_entry_peek_times(const unsigned char *data, size_t len, int64_t *stored_at_ms,
                           int64_t *expires_at_ms)
{
    if (check_head(data, len) < 0)
        return -1;
    *stored_at_ms = i64_of(data + ENTRY_TIMES_OFF);
    *expires_at_ms = i64_of(data + ENTRY_TIMES_OFF + 8);
    return 0;
}
