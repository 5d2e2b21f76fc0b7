/* fake_util: allocators, clocks, UUIDs, SHA-256 and the PRNG used by the fake.
 * Everything here is stateless except struct fake_rng, which the caller owns. */
#include "fake_util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

static void fake_util_oom(void)
{
    fputs("fake_cloro: out of memory\n", stderr);
    abort();
}

void *fake_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        fake_util_oom();
    return p;
}

void *fake_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        fake_util_oom();
    return p;
}

char *fake_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        fake_util_oom();
    return p;
}

char *fake_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        fake_util_oom();
    char *p = fake_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int64_t fake_util_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t fake_util_mono_ms(void)
{
    return fake_util_mono_us() / 1000;
}

int64_t fake_util_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fake_util_iso8601_ms(int64_t real_ms, char out[32])
{
    time_t secs = (time_t)(real_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", base, (int)(real_ms % 1000));
}

void fake_util_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        /* RAND_bytes failing means a broken OpenSSL; fall back to rand(). */
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)rand();
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

bool fake_util_is_uuid(const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

void fake_util_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

uint64_t fake_util_sha256_u64(const void *data, size_t len)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = (v << 8) | md[i];
    return v;
}

void fake_rng_seed(struct fake_rng *rng, uint64_t seed)
{
    rng->state = seed;
}

uint64_t fake_rng_next(struct fake_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double fake_rng_unit(struct fake_rng *rng)
{
    return (double)(fake_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t fake_rng_below(struct fake_rng *rng, uint64_t n)
{
    return n ? fake_rng_next(rng) % n : 0;
}
