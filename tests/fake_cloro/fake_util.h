/* fake_util: small helpers shared by every fake_cloro module: aborting allocators,
 * clocks (monotonic for deadlines, wall for timestamps), UUID v4, SHA-256 hex and a
 * seedable PRNG. Owns no state beyond what callers pass in. */
#ifndef FAKE_UTIL_H
#define FAKE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Allocators that abort the process on OOM; the fake is a test tool. */
void *fake_xmalloc(size_t n);
void *fake_xcalloc(size_t n, size_t size);
char *fake_xstrdup(const char *s);
char *fake_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in ms / us; CLOCK_REALTIME in ms since the epoch. */
int64_t fake_util_mono_ms(void);
int64_t fake_util_mono_us(void);
int64_t fake_util_real_ms(void);

/* "2025-01-15T12:00:00.000Z" (cloro-api.md §9.1). out must hold 32 bytes. */
void fake_util_iso8601_ms(int64_t real_ms, char out[32]);

/* Fresh random UUID v4 in lowercase 8-4-4-4-12 form (OpenSSL RAND_bytes). */
void fake_util_uuid4(char out[37]);
/* True when s is a lowercase or uppercase 8-4-4-4-12 hex UUID. */
bool fake_util_is_uuid(const char *s, size_t len);

/* Lowercase hex SHA-256 of data. */
void fake_util_sha256_hex(const void *data, size_t len, char out[65]);
/* First 8 bytes of SHA-256(data) as a big-endian integer: a stable seed. */
uint64_t fake_util_sha256_u64(const void *data, size_t len);

/* splitmix64: deterministic for a given seed; not for cryptography. */
struct fake_rng {
    uint64_t state;
};
void fake_rng_seed(struct fake_rng *rng, uint64_t seed);
uint64_t fake_rng_next(struct fake_rng *rng);
/* Uniform in [0, 1). */
double fake_rng_unit(struct fake_rng *rng);
/* Uniform in [0, n); n == 0 gives 0. */
uint64_t fake_rng_below(struct fake_rng *rng, uint64_t n);

#endif
