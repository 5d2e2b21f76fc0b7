/* store_fixture.c: temp directories and stores for the cache unit tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int store_fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->base, sizeof f->base, "/tmp/cloro-unit-cache-XXXXXX");
    if (mkdtemp(f->base) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/cache", f->base);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int store_fixture_teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

struct cache_store *store_fixture_open(const char *dir, size_t max_bytes)
{
    struct cache_store_options o = {.dir = dir, .max_bytes = max_bytes};
    char err[512] = "";
    struct cache_store *s = cache_store_open(&o, err, sizeof err);
    if (s == NULL)
        fail_msg("cache_store_open(%s): %s", dir, err);
    return s;
}

void store_fixture_key(unsigned n, unsigned char fill, unsigned char *key)
{
    memset(key, fill, CACHE_KEY_BYTES);
    key[0] = (unsigned char)(n >> 24);
    key[1] = (unsigned char)(n >> 16);
    key[2] = (unsigned char)(n >> 8);
    key[3] = (unsigned char)n;
}
