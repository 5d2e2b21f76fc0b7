/* store_fixture.h: what the cache store and writer tests share: a fresh
 * temp directory per test (removed after), opening a store in it, and
 * making distinct keys. */
#ifndef CLORO_TEST_STORE_FIXTURE_H
#define CLORO_TEST_STORE_FIXTURE_H

#include "store.h"

#include <stddef.h>

struct fixture {
    char base[64]; /* the temp directory */
    char dir[96];  /* base/cache: created by the store when opened */
};

/* cmocka setup and teardown: *state becomes a struct fixture. */
int store_fixture_setup(void **state);
int store_fixture_teardown(void **state);

/* Opens a store, failing the test with the store's message if it cannot. */
struct cache_store *store_fixture_open(const char *dir, size_t max_bytes);

/* Key number n: n in its first four bytes, fill in the rest. */
void store_fixture_key(unsigned n, unsigned char fill, unsigned char *key);

#endif
