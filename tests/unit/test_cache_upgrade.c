/* test_cache_upgrade.c: a store written by a version that counted entries
 * by their records' bytes is recounted once at open by the file-bytes rule
 * (footprint.h). The only test that writes the LMDB file itself (with
 * lmdb.h), to make "info" look as the older version left it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "entry.h"
#include "store.h"
#include "store_fixture.h"

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024u * 1024u)

/* Sets info "bytes" to bytes and, with old, removes "bytes_rule", as
 * before the rule. */
static void set_bytes(const char *dir, uint64_t bytes, bool old)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi info;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 12), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "info", 0, &info), 0);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(bytes >> (8 * i));
    MDB_val k = {strlen("bytes"), "bytes"}, v = {sizeof le, le};
    assert_int_equal(mdb_put(txn, info, &k, &v, 0), 0);
    MDB_val rule = {strlen("bytes_rule"), "bytes_rule"};
    if (old)
        assert_int_equal(mdb_del(txn, info, &rule, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void put(struct cache_store *s, unsigned n, size_t body_len)
{
    struct cache_entry e = {.status = 200,
                            .stored_at_ms = 1000,
                            .expires_at_ms = 0,
                            .provider = "chatgpt",
                            .request_id = "req-upgrade"};
    e.body = malloc(body_len);
    assert_non_null(e.body);
    memset(e.body, 'u', body_len);
    e.body_len = body_len;
    struct cache_op op = {.kind = CACHE_OP_PUT, .now_ms = 1000 + n};
    unsigned char *rec = NULL;
    assert_int_equal(cache_entry_encode(&e, &rec, &op.record_len), 0);
    free(e.body);
    op.record = rec;
    store_fixture_key(n, 0x11, op.key);
    struct cache_apply_result r;
    assert_int_equal(cache_store_apply(s, &op, 1, &r), 0);
    assert_int_equal(r.applied, 1);
    free(rec);
}

static int sum_records(const unsigned char *key, const struct cache_meta *meta, void *arg)
{
    (void)key;
    uint64_t *sums = arg;
    sums[0] += meta->size;
    sums[1]++;
    return 0;
}

static void test_old_count_recounted(void **state)
{
    struct fixture *f = *state;
    struct cache_store *s = store_fixture_open(f->dir, 16 * MIB);
    for (unsigned i = 0; i < 20; i++)
        put(s, i, 300 + 200 * i); /* from a leaf node to overflow pages */
    struct cache_store_stats st;
    assert_int_equal(cache_store_stats(s, &st), 0);
    uint64_t honest = st.bytes;
    uint64_t sums[2] = {0, 0};
    assert_int_equal(cache_store_foreach(s, sum_records, sums), 0);
    assert_int_equal(sums[1], 20);
    assert_true(honest > sums[0]); /* every entry costs more than its record */
    cache_store_close(s);

    /* As an older version left it: bytes = the records' lengths, no rule. */
    set_bytes(f->dir, sums[0], true);
    s = store_fixture_open(f->dir, 16 * MIB);
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.bytes, honest);
    cache_store_close(s);

    /* The CLI recounts too. */
    set_bytes(f->dir, sums[0], true);
    s = store_fixture_open(f->dir, 0);
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.bytes, honest);
    cache_store_close(s);

    /* Once recounted, the count is not walked again at each open. */
    set_bytes(f->dir, 12345, false);
    s = store_fixture_open(f->dir, 16 * MIB);
    assert_int_equal(cache_store_stats(s, &st), 0);
    assert_int_equal(st.bytes, 12345);
    cache_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_old_count_recounted, store_fixture_setup,
                                        store_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
