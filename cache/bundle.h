/* bundle.h: the portable export of a cache (`cloro-proxy export` and
 * `import`): the bundle format, its writer and its reader. Pure of the proxy
 * and of LMDB: bytes in, bytes out (zlib, OpenSSL's SHA-256, jansson for the
 * header); the commands (proxy/cli_export.c) choose what goes in and apply
 * what comes out (cache_store_import, store.h).
 *
 * A bundle file is one gzip member (RFC 1952) of this stream:
 *
 *   "cloro-proxy-bundle 1\n"            magic line: the format name, a space,
 *                                       the format version in decimal, "\n"
 *   record*                             each: u8 type, u32 length (big
 *                                       endian), then length bytes of payload
 *
 * Every integer in a payload is big endian; i64 are two's complement.
 * Records, in this order: exactly one header first, then any number of
 * entries, tasks, jobs and blobs (in any order), then exactly one trailer,
 * last; nothing follows it, in the stream or in the file.
 *
 *   'H' header   JSON object (UTF-8 text): "format" ("cloro-proxy-bundle"),
 *                "version" (1), "created_at" (ISO 8601 UTC), "tool"
 *                ("cloro-proxy <version>"), "counts" {"entries", "tasks",
 *                "jobs", "blobs"}, "filters" {"provider", "since",
 *                "match"} (null when not used); other members are ignored.
 *   'E' entry    key[32], i64 stored_at_ms, i64 expires_at_ms (0: never),
 *                u8 provider length, provider, u32 flags (0; readers of
 *                version 1 ignore them), then the rest of the payload: the
 *                entry record exactly as the store keeps it (entry.h), which
 *                carries its own SHA-256.
 *   'T' task     key[32] (cache_task_key), then the rest: the record bytes
 *                as the store keeps them (a task's JSON text, optionally a
 *                NUL and a raw cached answer; or an index entry's text).
 *   'J' job      an artifact job (store.h): u8 state, u32 attempts,
 *                i64 created_ms, i64 expires_ms, i64 next_attempt_ms,
 *                u64 size, blob[32], then u8 + id, u16 + url,
 *                u8 + content_type, u8 + note (length-prefixed, no NULs,
 *                each shorter than its field in struct cache_job).
 *   'B' blob     hash[32] (SHA-256 of the uncompressed content), then the
 *                rest: the content gzip-compressed as the store keeps it.
 *   'Z' trailer  u64 entries, u64 tasks, u64 jobs, u64 blobs, then the
 *                SHA-256 of every byte of the stream before this record
 *                (magic line included).
 *
 * The reader trusts nothing and checks everything before the caller writes
 * anything: the gzip stream (its CRC, no truncation, no trailing bytes),
 * the magic and version, every record's type, length and place, the
 * trailer's hash and its counts against the header's and the records', no
 * key twice, every entry record's own checksum (cache_entry_decode), every
 * job's fields, every blob's content against its hash, and that each
 * captured job's blob is in the bundle. Its first failure is a sentence
 * naming the problem and the byte where it was found. The whole bundle is
 * read into memory. */
#ifndef CLORO_CACHE_BUNDLE_H
#define CLORO_CACHE_BUNDLE_H

#include "key.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_BUNDLE_NAME    "cloro-proxy-bundle"
#define CACHE_BUNDLE_VERSION 1
/* The largest payload a record may declare (an entry is bounded by
 * max_response_bytes, a blob by max_artifact_bytes: far less). */
#define CACHE_BUNDLE_RECORD_MAX ((uint32_t)1 << 30)

enum cache_bundle_type {
    CACHE_BUNDLE_HEADER = 'H',
    CACHE_BUNDLE_ENTRY = 'E',
    CACHE_BUNDLE_TASK = 'T',
    CACHE_BUNDLE_JOB = 'J',
    CACHE_BUNDLE_BLOB = 'B',
    CACHE_BUNDLE_TRAILER = 'Z',
};

struct cache_bundle_counts {
    uint64_t entries;
    uint64_t tasks;
    uint64_t jobs;
    uint64_t blobs;
};

/* The facts of an entry that travel beside its record. */
struct cache_bundle_meta {
    int64_t stored_at_ms;
    int64_t expires_at_ms;
    char provider[CACHE_PROVIDER_MAX];
};

/* --- writing ---------------------------------------------------------------- */

/* Where the compressed bytes go; returns 0, or -1 to fail the writer. */
typedef int (*cache_bundle_sink)(const void *data, size_t len, void *arg);

struct cache_bundle_writer;

/* A writer that will hold exactly the declared counts. Writes the magic
 * line and the header: info (may be NULL) is an object of members for the
 * header (created_at, tool, filters...); "format", "version" and "counts"
 * are set by the writer. NULL on failure (err says why). */
struct cache_bundle_writer *cache_bundle_writer_new(cache_bundle_sink sink, void *arg,
                                                    const struct cache_bundle_counts *declared,
                                                    const json_t *info, char *err, size_t err_size);

/* One record each; 0, or -1 (the writer is then failed: every later call is
 * -1). An entry's record must decode (cache_entry_decode); a job's fields
 * must fit the format (an id, a known state). */
int cache_bundle_write_entry(struct cache_bundle_writer *w, const unsigned char *key,
                             const struct cache_bundle_meta *meta, const unsigned char *record,
                             size_t len);
int cache_bundle_write_task(struct cache_bundle_writer *w, const unsigned char *key,
                            const unsigned char *record, size_t len);
int cache_bundle_write_job(struct cache_bundle_writer *w, const struct cache_job *job);
int cache_bundle_write_blob(struct cache_bundle_writer *w, const unsigned char *hash,
                            const unsigned char *gzip, size_t len);

/* Writes the trailer and ends the gzip stream. -1 (err says why) when a
 * write failed or the records written differ from the declared counts. */
int cache_bundle_writer_finish(struct cache_bundle_writer *w, char *err, size_t err_size);
/* Frees the writer (finished or not). */
void cache_bundle_writer_free(struct cache_bundle_writer *w);

/* --- reading ---------------------------------------------------------------- */

struct cache_bundle_item {
    enum cache_bundle_type type; /* ENTRY, TASK, JOB or BLOB */
    uint64_t offset;             /* of the record in the uncompressed stream */
    const unsigned char *key;    /* ENTRY, TASK: 32 bytes; BLOB: the hash */
    const unsigned char *data;   /* ENTRY: the record; TASK: the record; BLOB: gzip bytes */
    size_t len;
    struct cache_bundle_meta meta; /* ENTRY */
    struct cache_job job;          /* JOB */
};

struct cache_bundle {
    unsigned char *raw; /* the uncompressed stream; items point into it */
    size_t raw_len;
    json_t *header; /* the header object */
    struct cache_bundle_counts counts;
    struct cache_bundle_item *items; /* in bundle order */
    size_t count;
};

/* Validates an uncompressed stream (raw, raw_len) completely. On success
 * (0) out owns raw (freed by cache_bundle_free) and lists the records; on
 * failure (-1) raw is freed, out is empty and err holds the first problem
 * found. */
int cache_bundle_parse(unsigned char *raw, size_t raw_len, struct cache_bundle *out, char *err,
                       size_t err_size);

/* Decompresses a bundle file's bytes and validates it (cache_bundle_parse). */
int cache_bundle_read(const unsigned char *file, size_t len, struct cache_bundle *out, char *err,
                      size_t err_size);

void cache_bundle_free(struct cache_bundle *b);

#endif
