/* cli_verify.c: the `cache verify` command (cli_verify.h). A read-only walk
 * of the store in its own read txns (the server may keep writing): entries
 * through cache_entry_decode (magic, version, lengths, SHA-256 checksum),
 * captured artifacts through their blob (gunzip, SHA-256, size), task
 * records by presence. It changes nothing: a corrupt entry is reported, and
 * left for the server's reader to delete. */
#include "cli_verify.h"
#include "entry.h"
#include "key.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define VERIFY_INFLATE_CHUNK 65536

struct verify_counts {
    bool list;
    uint64_t entries, entries_bad;
    uint64_t jobs_captured, jobs_bad;
    uint64_t tasks, tasks_bad;
    struct cache_store *store;
};

static void hex_of(const unsigned char *bytes, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

static int on_entry(const unsigned char *key, const struct cache_meta *meta,
                    const unsigned char *record, size_t len, void *arg)
{
    struct verify_counts *c = arg;
    char hex[CACHE_KEY_HEX_LEN + 1];
    hex_of(key, CACHE_KEY_BYTES, hex);
    c->entries++;
    struct cache_entry e;
    if (cache_entry_decode(record, len, &e) != 0) {
        c->entries_bad++;
        printf("corrupt entry %s: the record does not decode or fails its checksum\n", hex);
        return 0;
    }
    if (meta->size != len) {
        c->entries_bad++;
        printf("corrupt entry %s: its meta says %llu bytes, the record has %zu\n", hex,
               (unsigned long long)meta->size, len);
    } else if (c->list) {
        unsigned char sum[SHA256_DIGEST_LENGTH];
        char sum_hex[2 * SHA256_DIGEST_LENGTH + 1];
        SHA256(e.body != NULL ? e.body : (const unsigned char *)"", e.body_len, sum);
        hex_of(sum, sizeof sum, sum_hex);
        printf("%s %s\n", hex, sum_hex);
    }
    cache_entry_free(&e);
    return 0;
}

/* Inflates a gzip blob into a running SHA-256; the content's size in *size.
 * Returns 0 when the stream is whole. */
static int blob_digest(const unsigned char *gz, size_t len, unsigned char *sum, uint64_t *size)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    unsigned char *out = malloc(VERIFY_INFLATE_CHUNK);
    if (out == NULL) {
        inflateEnd(&z);
        return -1;
    }
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(sha);
        inflateEnd(&z);
        free(out);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)gz;
    z.avail_in = (uInt)len;
    *size = 0;
    int rc;
    do {
        z.next_out = out;
        z.avail_out = VERIFY_INFLATE_CHUNK;
        rc = inflate(&z, Z_NO_FLUSH);
        size_t got = VERIFY_INFLATE_CHUNK - z.avail_out;
        EVP_DigestUpdate(sha, out, got);
        *size += got;
    } while (rc == Z_OK);
    inflateEnd(&z);
    free(out);
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(sha, sum, &n) == 1 && n == SHA256_DIGEST_LENGTH;
    EVP_MD_CTX_free(sha);
    if (!ok)
        return -1;
    return rc == Z_STREAM_END && z.avail_in == 0 ? 0 : -1;
}

static int on_job(const struct cache_job *job, void *arg)
{
    struct verify_counts *c = arg;
    if (job->state != CACHE_JOB_CAPTURED)
        return 0;
    c->jobs_captured++;
    unsigned char *gz = NULL;
    size_t len = 0;
    const char *why = NULL;
    if (cache_store_get_blob(c->store, job->blob, &gz, &len) != CACHE_GET_FOUND) {
        why = "its blob is missing";
    } else {
        unsigned char sum[SHA256_DIGEST_LENGTH];
        uint64_t size;
        if (blob_digest(gz, len, sum, &size) != 0)
            why = "its blob does not inflate";
        else if (size != job->size || memcmp(sum, job->blob, sizeof sum) != 0)
            why = "its blob's content fails its SHA-256 or size";
    }
    free(gz);
    if (why != NULL) {
        c->jobs_bad++;
        printf("corrupt artifact %s: %s\n", job->id, why);
    }
    return 0;
}

static int on_task(const unsigned char *key, const unsigned char *data, size_t len, void *arg)
{
    (void)data;
    struct verify_counts *c = arg;
    c->tasks++;
    if (len == 0) {
        char hex[CACHE_KEY_HEX_LEN + 1];
        hex_of(key, CACHE_KEY_BYTES, hex);
        c->tasks_bad++;
        printf("corrupt task record %s: empty\n", hex);
    }
    return 0;
}

int cli_verify_store(struct cache_store *store, bool list)
{
    struct verify_counts c = {.list = list, .store = store};
    if (cache_store_foreach_entry(store, on_entry, &c) != 0 ||
        cache_store_foreach_job(store, on_job, &c) != 0 ||
        cache_store_foreach_task(store, on_task, &c) != 0) {
        fflush(stdout);
        fprintf(stderr, "cloro-proxy: cannot read the cache store\n");
        return 1;
    }
    fflush(stdout); /* the rows before the summary, also when both go to one pipe */
    fprintf(stderr,
            "verified: %llu entries (%llu corrupt), %llu captured artifacts (%llu corrupt), "
            "%llu task records (%llu corrupt)\n",
            (unsigned long long)c.entries, (unsigned long long)c.entries_bad,
            (unsigned long long)c.jobs_captured, (unsigned long long)c.jobs_bad,
            (unsigned long long)c.tasks, (unsigned long long)c.tasks_bad);
    return c.entries_bad + c.jobs_bad + c.tasks_bad > 0 ? 1 : 0;
}
