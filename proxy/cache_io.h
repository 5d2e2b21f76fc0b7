/* cache_io.h: the proxy's side of the cache: looking an answer up (queued
 * writes first, then LMDB), deciding whether an answer is worth keeping,
 * and handing it to the writer thread. */
#ifndef CLORO_CACHE_IO_H
#define CLORO_CACHE_IO_H

#include "entry.h"
#include "key.h"

#include <stdbool.h>

struct server;
struct request;
struct upstream_result;

/* Fills out (cache_entry_free) and returns true when key has an answer. A
 * store failure is counted and reads as a miss; a corrupt record is deleted. */
bool cache_io_lookup(struct server *srv, const struct cache_key *key, struct cache_entry *out);
/* 2xx with "success": true (cloro-api.md section 4), or goto's {"url"}. */
bool cache_io_storable(const struct cache_entry *e);
/* Encodes e and queues it for the writer under key, with download jobs for
 * its artifacts. */
void cache_io_store(struct server *srv, const struct cache_key *key, const struct cache_entry *e);
/* Records download jobs for the artifacts of an answer that is not stored
 * (an async task result, a no-store or uncacheable answer): cloro-api.md
 * section 12 links expire whatever the cache does with the answer. */
void cache_io_capture_artifacts(struct server *srv, const struct cache_entry *e);
/* The upstream's answer as an entry, borrowing from res; headers must hold
 * CACHE_ENTRY_MAX_HEADERS. TTL from the provider's cache_ttl. A successful
 * answer of a keyed call also carries its canonical request text (made once,
 * kept in r->canonical), so an export can match on the prompt. */
void cache_io_entry_from_result(struct request *r, const struct upstream_result *res,
                                struct cache_header *headers, struct cache_entry *e);

#endif
