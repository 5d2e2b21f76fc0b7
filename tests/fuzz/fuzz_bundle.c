/* fuzz_bundle: the export-bundle reader (cache/bundle.c), which validates a
 * whole bundle in memory. An input that starts with the gzip magic goes
 * through cache_bundle_read (decompress + validate); any other is taken as
 * the uncompressed stream and goes to cache_bundle_parse directly, so the
 * fuzzer reaches the record parser without fighting deflate; there, the
 * trailer's SHA-256 is recomputed first (fix_checksum), or nearly every
 * mutation would stop at the checksum. */
#include "bundle.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Walks the frames after the magic line (u8 type, u32 big-endian length) and
 * writes SHA-256 of everything before the trailer into the trailer. */
static void fix_checksum(unsigned char *raw, size_t len)
{
    size_t pos = 0;
    while (pos < len && pos < 64 && raw[pos] != '\n')
        pos++;
    if (pos >= len || raw[pos] != '\n')
        return;
    pos++;
    while (len - pos >= 5) {
        size_t n = (size_t)raw[pos + 1] << 24 | (size_t)raw[pos + 2] << 16 |
                   (size_t)raw[pos + 3] << 8 | raw[pos + 4];
        if (n > len - pos - 5)
            return;
        if (raw[pos] == CACHE_BUNDLE_TRAILER && n == 64) {
            unsigned int out = 0;
            EVP_Digest(raw, pos, raw + pos + 5 + 32, &out, EVP_sha256(), NULL);
            return;
        }
        pos += 5 + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cache_bundle b;
    char err[512];
    int rc;
    memset(&b, 0, sizeof b);
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        rc = cache_bundle_read(data, size, &b, err, sizeof err);
    } else {
        unsigned char *raw = malloc(size ? size : 1);
        if (!raw)
            abort();
        memcpy(raw, data, size);
        fix_checksum(raw, size);
        rc = cache_bundle_parse(raw, size, &b, err, sizeof err);
    }
    if (rc == 0) {
        for (size_t i = 0; i < b.count; i++) {
            const struct cache_bundle_item *it = &b.items[i];
            if (it->data && it->len && (it->data < b.raw || it->data + it->len > b.raw + b.raw_len))
                abort(); /* items point into the stream */
        }
        cache_bundle_free(&b);
    } else if (!err[0]) {
        abort(); /* a failure says why */
    }
    return 0;
}
