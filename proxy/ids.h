/* ids.h: request identifiers. UUID v4 strings, the form cloro uses for
 * X-Request-ID (cloro-api.md section 2), drawn from a fast generator
 * (xoshiro256**) seeded once from OpenSSL's CSPRNG: ids must be unique, not
 * secret, and one is made per request. */
#ifndef CLORO_IDS_H
#define CLORO_IDS_H

#include <stdint.h>

#define IDS_UUID_LEN 36

struct id_source {
    uint64_t state[4];
};

/* Seeds src from RAND_bytes; aborts only if the system CSPRNG is unusable. */
void ids_init(struct id_source *src);

/* 64 random bits (not secret), e.g. for backoff jitter. */
uint64_t ids_random(struct id_source *src);

/* Writes a fresh lowercase UUID v4 and its terminating NUL into out. */
void ids_uuid4(struct id_source *src, char out[IDS_UUID_LEN + 1]);

#endif
