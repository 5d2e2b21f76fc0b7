/* entry.h: the stored form of one cached answer. A versioned binary record
 * with a SHA-256 checksum over everything before it, so a torn or corrupted
 * record is detected on read, never served. Pure: no I/O.
 *
 * Layout (little endian): magic "CPE1", u16 version, u16 status,
 * i64 stored_at_ms, i64 expires_at_ms (0: never), i64 credits_charged,
 * u16 header_count, then strings as u32 length + bytes: provider, request_id,
 * each header's name and value; then u32 body length + body; then 32 bytes
 * of SHA-256 over all the bytes before it.
 *
 * Version 2, written only for a sample K >= 2 (X-Cache-Sample, key.h), is
 * version 1 with, between the body and the checksum, u32 sample and the 32
 * bytes of the key of sample 1 (the base key). Every other entry is still
 * written as version 1, byte for byte as before; both versions are read.
 *
 * Version 3, written for an entry that knows the request it answers (the
 * canonical request text, key.h, used by `cloro-proxy export --match`), is
 * version 1 with, between the body and the checksum, u32 sample (0: not a
 * sample, else 2 or more), the 32 bytes of the base key (zero when not a
 * sample), then u32 length + the request text. All three versions are read;
 * records of versions 1 and 2 have no request. */
#ifndef CLORO_CACHE_ENTRY_H
#define CLORO_CACHE_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#define CACHE_ENTRY_VERSION         1
#define CACHE_ENTRY_VERSION_SAMPLE  2 /* version 1 plus sample and base key */
#define CACHE_ENTRY_VERSION_REQUEST 3 /* version 2's fields (any sample) plus the request */
#define CACHE_ENTRY_MAX_HEADERS     64
#define CACHE_ENTRY_KEY_BYTES       32 /* CACHE_KEY_BYTES (key.h) */

struct cache_header {
    char *name;
    char *value;
};

struct cache_entry {
    int status;
    int64_t stored_at_ms;
    int64_t expires_at_ms; /* 0: never expires */
    int64_t credits_charged;
    char *provider;
    char *request_id; /* the upstream X-Request-ID of the call that was billed; may be "" */
    struct cache_header *headers; /* the mirrored response headers, in order */
    size_t header_count;
    unsigned char *body;
    size_t body_len;
    uint32_t sample; /* 0 or 1: not a sample; K >= 2: sample K of its request (version 2) */
    unsigned char base_key[CACHE_ENTRY_KEY_BYTES]; /* sample >= 2: the key of sample 1 */
    char *request; /* the canonical request text it answers (key.h); NULL or "": unknown */
};

/* Encodes e into a new buffer (*out, *out_len; the caller frees *out).
 * Returns 0, or -1 when e has more than CACHE_ENTRY_MAX_HEADERS headers. */
int cache_entry_encode(const struct cache_entry *e, unsigned char **out, size_t *out_len);

/* Decodes and verifies a record; everything in out is newly allocated (free
 * with cache_entry_free). Returns 0, or -1 on a bad magic, version, length or
 * checksum (out is then empty). */
int cache_entry_decode(const unsigned char *data, size_t len, struct cache_entry *out);

void cache_entry_free(struct cache_entry *e);

/* The stored_at_ms and expires_at_ms of an encoded record without decoding it
 * all (eviction and purge read only these). Returns 0, or -1 when too short. */
int cache_entry_peek_times(const unsigned char *data, size_t len, int64_t *stored_at_ms,
                           int64_t *expires_at_ms);

#endif
