/* admin_cache.h: the cache's endpoints under /_proxy/cache/: stats, one
 * entry (look or delete), and purge. Reads go to the store directly; every
 * change goes through the writer thread, so the loop never waits on disk. */
#ifndef CLORO_ADMIN_CACHE_H
#define CLORO_ADMIN_CACHE_H

struct request;

/* GET /_proxy/cache/stats */
void admin_cache_stats(struct request *r);
/* GET|DELETE /_proxy/cache/entries/{key} (key: 64 hex digits) */
void admin_cache_entry(struct request *r);
/* POST /_proxy/cache/purge {"all":true} | {"provider":P, "older_than":"1h"|seconds} */
void admin_cache_purge(struct request *r);

#endif
