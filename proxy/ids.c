/* ids.c: UUID v4 from xoshiro256** (Blackman and Vigna), seeded from
 * OpenSSL's RAND_bytes. One source per server, used on the loop thread. */
#include "ids.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next(struct id_source *src)
{
    uint64_t *s = src->state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t ids_random(struct id_source *src)
{
    return next(src);
}

void ids_init(struct id_source *src)
{
    do {
        if (RAND_bytes((unsigned char *)src->state, sizeof src->state) != 1)
            abort();
    } while ((src->state[0] | src->state[1] | src->state[2] | src->state[3]) == 0);
}

void ids_uuid4(struct id_source *src, char out[IDS_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t hi = next(src), lo = next(src);
    memcpy(b, &hi, 8);
    memcpy(b + 8, &lo, 8);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}
