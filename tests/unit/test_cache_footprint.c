/* test_cache_footprint.c: the file bytes the store counts for an item and
 * an entry (footprint.h), against LMDB's page layout on 4 KiB pages: node
 * header 8, slot 2, page header 16, node limit 2038, leaf bytes x 3/2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "footprint.h"

#include <unistd.h>

/* A small value shares a leaf page: its node (8 + key + value, even) and
 * its slot, times 3/2. */
static void test_small_values(void **state)
{
    (void)state;
    assert_int_equal(cache_footprint_item(4096, 32, 100), (8 + 32 + 100 + 2) * 3 / 2);
    assert_int_equal(cache_footprint_item(4096, 32, 101), (8 + 32 + 102 + 2) * 3 / 2);
    assert_int_equal(cache_footprint_item(4096, 40, 0), (8 + 40 + 2) * 3 / 2);
    /* The largest node that stays in its leaf: 8 + 32 + 1998 = 2038. */
    assert_int_equal(cache_footprint_item(4096, 32, 1998), (2038 + 2) * 3 / 2);
    /* 0 means 4 KiB. */
    assert_int_equal(cache_footprint_item(0, 32, 100), cache_footprint_item(4096, 32, 100));
}

/* Past the node limit a value takes whole overflow pages (16-byte header
 * each run) and leaves a node of 8 + key + an 8-byte page number. */
static void test_overflow_values(void **state)
{
    (void)state;
    const uint64_t node = (8 + 32 + 8 + 2) * 3 / 2;
    assert_int_equal(cache_footprint_item(4096, 32, 1999), 4096 + node);
    assert_int_equal(cache_footprint_item(4096, 32, 2300), 4096 + node);
    assert_int_equal(cache_footprint_item(4096, 32, 4080), 4096 + node);
    assert_int_equal(cache_footprint_item(4096, 32, 4081), 2 * 4096 + node);
    assert_int_equal(cache_footprint_item(4096, 32, 100000), 25 * 4096 + node);
    /* Larger pages: a higher limit (8192: 4078), so 2.3 KB stays in a leaf. */
    assert_int_equal(cache_footprint_item(8192, 32, 2300), (8 + 32 + 2300 + 2) * 3 / 2);
    assert_int_equal(cache_footprint_item(8192, 32, 4100), 8192 + node);
}

/* An entry: its record, its 100-byte meta row and its LRU row (40-byte
 * key, empty value). A typical 2.3 KB answer counts over 4 KiB, never less
 * than its record. */
static void test_entry(void **state)
{
    (void)state;
    uint64_t rows = (8 + 32 + 100 + 2) * 3 / 2 + (8 + 40 + 2) * 3 / 2;
    assert_int_equal(cache_footprint_entry(4096, 2300), 4096 + (8 + 32 + 8 + 2) * 3 / 2 + rows);
    assert_int_equal(cache_footprint_entry(4096, 200), (8 + 32 + 200 + 2) * 3 / 2 + rows);
    for (size_t len = 0; len < 70000; len += 97)
        assert_true(cache_footprint_entry(4096, len) > len);
}

/* The store tests size their bounds on 4 KiB pages. */
static void test_page_size(void **state)
{
    (void)state;
    assert_int_equal(sysconf(_SC_PAGESIZE), 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values),
        cmocka_unit_test(test_overflow_values),
        cmocka_unit_test(test_entry),
        cmocka_unit_test(test_page_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
