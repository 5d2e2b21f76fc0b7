/* footprint.h: what a record costs in the LMDB file, as the store counts it
 * against max_cache_bytes. LMDB keeps a value larger than its node limit
 * (about half a page) in whole overflow pages of its own, and smaller ones
 * in shared leaf pages that B-tree splits leave a third empty on average;
 * counting record bytes alone under-counted a 2.3 KB answer about twice.
 * Pure arithmetic: no LMDB, no I/O. */
#ifndef CLORO_CACHE_FOOTPRINT_H
#define CLORO_CACHE_FOOTPRINT_H

#include <stddef.h>
#include <stdint.h>

/* Bytes one item (key_len-byte key, value_len-byte value) takes in a
 * database of an environment of page_size-byte pages (4096 when 0): a value
 * over the node limit costs its overflow pages, whole, plus its leaf node;
 * a leaf node costs its bytes and its slot, times 3/2 for the leaf pages'
 * average fill. */
uint64_t cache_footprint_item(size_t page_size, size_t key_len, size_t value_len);

/* Bytes a cache entry takes: its record under its 32-byte key in
 * "entries", its meta row and its LRU row (store.c). */
uint64_t cache_footprint_entry(size_t page_size, size_t record_len);

#endif
