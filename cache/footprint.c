/* footprint.c: the file bytes of LMDB items and cache entries (footprint.h),
 * after LMDB's page layout (mdb.c: PAGEHDRSZ, NODESIZE, me_nodemax,
 * mdb_leaf_size, OVPAGES). */
#include "footprint.h"

#include "key.h"

#define PAGE_DEFAULT 4096
#define PAGE_HEADER  16  /* PAGEHDRSZ */
#define NODE_HEADER  8   /* NODESIZE */
#define NODE_SLOT    2   /* sizeof(indx_t): the node's offset in its page */
#define OVERFLOW_REF 8   /* sizeof(pgno_t): a node's reference to its overflow pages */
#define MIN_KEYS     2   /* MDB_MINKEYS */
#define META_VALUE   100 /* store.c META_BYTES */
#define LRU_KEY      (8 + CACHE_KEY_BYTES) /* store.c LRU_KEY_BYTES */
#define FILL_NUM     3                     /* leaf bytes x 3/2: pages ~2/3 full */
#define FILL_DEN     2

uint64_t cache_footprint_item(size_t page_size, size_t key_len, size_t value_len)
{
    uint64_t page = page_size > 0 ? page_size : PAGE_DEFAULT;
    uint64_t node_max = (((page - PAGE_HEADER) / MIN_KEYS) & ~(uint64_t)1) - NODE_SLOT;
    uint64_t node = NODE_HEADER + (uint64_t)key_len + value_len;
    uint64_t overflow = 0;
    if (node > node_max) {
        node = NODE_HEADER + (uint64_t)key_len + OVERFLOW_REF;
        overflow = ((PAGE_HEADER - 1 + (uint64_t)value_len) / page + 1) * page;
    }
    node = (node + 1) & ~(uint64_t)1; /* EVEN() */
    return overflow + (node + NODE_SLOT) * FILL_NUM / FILL_DEN;
}

uint64_t cache_footprint_entry(size_t page_size, size_t record_len)
{
    return cache_footprint_item(page_size, CACHE_KEY_BYTES, record_len) +
           cache_footprint_item(page_size, CACHE_KEY_BYTES, META_VALUE) +
           cache_footprint_item(page_size, LRU_KEY, 0);
}
