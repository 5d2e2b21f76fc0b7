/* store.h: the LMDB environment of the cache. The only file that includes
 * lmdb.h is store.c. One environment per process (MDB_NOTLS), opened after
 * any fork; several processes may open it at once (the proxy and its CLI).
 *
 * Databases: "entries" key -> encoded record (entry.h); "meta" key -> small
 * mutable facts (hits, last hit, size, times, provider); "lru" (last_hit_ms
 * big endian ++ key) -> empty, the eviction order; "info" -> the format
 * version, the byte total and persistent counters; "jobs" and "blobs": the
 * artifacts (below); "tasks" key -> the proxy's async task records and their
 * index entries (opaque bytes), and "task_open" key -> empty, the keys of the
 * tasks that still have work (below); "usage": the per member, provider and
 * day usage counters (below). Only "entries" counts in the byte total and is
 * evicted; the other databases are kept for good (but "usage" rows older than
 * a cut-off are pruned by a USAGE_PRUNE op, and ended task records past their
 * retention by cache_store_prune_tasks).
 *
 * Reads: any thread, one short read txn per call, copied out before it ends.
 * Writes: cache_store_apply, one durable txn per batch (the proxy calls it
 * only from the writer thread, writer.h; the CLI calls it directly). */
#ifndef CLORO_CACHE_STORE_H
#define CLORO_CACHE_STORE_H

#include "entry.h"
#include "key.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_store;

struct cache_store_options {
    const char *dir;  /* created if missing (cache_dir.h) */
    size_t max_bytes; /* bound on the entries' file bytes (cache_store_entry_bytes); 0: adopt
                         what the file records (CLI) */
};

/* Opens or creates the store. Clears reader slots left by killed processes.
 * Refuses (NULL, a sentence in err) an unknown format version: paid answers
 * are never wiped. */
struct cache_store *cache_store_open(const struct cache_store_options *opts, char *err,
                                     size_t err_size);
void cache_store_close(struct cache_store *s);

struct cache_meta {
    uint64_t hits;
    int64_t last_hit_ms; /* 0 when never hit */
    int64_t stored_at_ms;
    int64_t expires_at_ms; /* 0: never */
    uint64_t size;         /* bytes of the record */
    char provider[CACHE_PROVIDER_MAX];
    uint32_t sample;                         /* 0 or 1: not a sample; K >= 2 (entry.h) */
    unsigned char base_key[CACHE_KEY_BYTES]; /* sample >= 2: the key of sample 1 */
};

enum cache_get_result {
    CACHE_GET_FOUND,
    CACHE_GET_ABSENT,
    CACHE_GET_CORRUPT, /* present but failed its checksum: never served; the reader treats
                          it as absent and deletes it (CACHE_OP_DELETE) */
    CACHE_GET_ERROR,
};

/* Looks a key up; on FOUND, entry (and meta when not NULL) are filled with
 * new copies (cache_entry_free). */
enum cache_get_result cache_store_get(struct cache_store *s, const unsigned char *key,
                                      struct cache_entry *entry, struct cache_meta *meta);

/* --- HTML artifacts (cloro-api.md section 12) ------------------------------
 * "jobs": artifact id -> one record per artifact URL found in a stored
 * answer, created in the same txn as the answer (a PUT's jobs, created only
 * when absent), so none is lost to a crash or restart. "blobs": SHA-256 of
 * the content -> the content gzip-compressed, stored once however many jobs
 * name it. Neither counts in the answers' byte total that max_bytes bounds
 * and eviction keeps (blob_bytes counts the blobs): a captured artifact is
 * kept for good, and only MDB_MAP_FULL stops new ones (dropped, counted). */
#define CACHE_ARTIFACT_ID_MAX  80  /* "<uuid>/page-<n>" and its NUL */
#define CACHE_ARTIFACT_URL_MAX 512 /* longer URLs are not captured */

enum cache_job_state { CACHE_JOB_PENDING, CACHE_JOB_CAPTURED, CACHE_JOB_LOST };

struct cache_job {
    char id[CACHE_ARTIFACT_ID_MAX];
    char url[CACHE_ARTIFACT_URL_MAX];
    enum cache_job_state state;
    int64_t created_ms;      /* when the answer naming it was stored */
    int64_t expires_ms;      /* the upstream copy is gone after this */
    int64_t next_attempt_ms; /* PENDING: not before */
    uint32_t attempts;
    unsigned char blob[32]; /* CAPTURED: SHA-256 of the (uncompressed) content */
    uint64_t size;          /* CAPTURED: bytes of the content, uncompressed */
    char content_type[64];  /* CAPTURED */
    char note[64];          /* the last failure, or why it was lost */
};

/* --- Async task records ----------------------------------------------------
 * "tasks": a 32-byte key (cache_task_key) -> opaque bytes (the proxy stores
 * JSON text), replaced whole by each CACHE_OP_TASK. "task_open": the keys of
 * tasks that still have work, -> empty; the proxy lists them at start-up
 * (cache_store_foreach_open_task). Neither counts in the answers' byte total
 * nor is ever evicted (only MDB_MAP_FULL stops a new record: dropped,
 * counted); cache_store_prune_tasks (below) deletes the records the proxy
 * judges past their retention. A store made before they existed opens as
 * it is and gains them, empty. */

/* --- Task retention ----------------------------------------------------------
 * The store cannot read task records (opaque bytes): the proxy judges them.
 * A judge is called for a record of "tasks" whose key is not in
 * "task_open", with the record lent for the call and arg (the bytes given
 * to the prune, copied); it returns true to delete the record, and may name
 * up to CACHE_TASK_PRUNE_LINKED more keys of "tasks" deleted with it (its
 * index entries), in linked, counting them in *linked_count. It runs on the
 * thread that prunes (the writer's) and must not touch the store. */
#define CACHE_TASK_PRUNE_LINKED 4

typedef bool (*cache_task_judge)(const unsigned char *key, const unsigned char *data, size_t len,
                                 const void *arg, unsigned char linked[][CACHE_KEY_BYTES],
                                 size_t *linked_count);

/* One txn of a task prune: judges up to batch records of "tasks" from the
 * key *resume (when *resumed; else from the first), deletes those judged
 * so, with their linked keys, counts them in info "tasks_pruned", and
 * commits. Then *resumed and resume name the key to go on from, or *resumed
 * is false when the walk reached the end. *pruned (when not NULL) gets the
 * task records deleted. Returns 0, or -1 on a store error (nothing
 * deleted; a full map or disk is one: the next prune tries again). */
int cache_store_prune_tasks(struct cache_store *s, cache_task_judge judge, const void *arg,
                            size_t batch, unsigned char *resume, bool *resumed, uint64_t *pruned);

/* --- Usage counters ----------------------------------------------------------
 * "usage": a key of 1..CACHE_USAGE_KEY_MAX bytes (the proxy's usage.c writes
 * "YYYY-MM-DD" NUL member NUL provider, so rows sort by day) -> opaque bytes
 * (the counters), replaced whole by each CACHE_OP_USAGE. CACHE_OP_USAGE_PRUNE
 * deletes every row whose key sorts before its key. Neither counts in the
 * answers' byte total nor is ever evicted. A store made before "usage"
 * existed opens as it is and gains it, empty. */
#define CACHE_USAGE_KEY_MAX 256

enum cache_op_kind {
    CACHE_OP_PUT,         /* store record under key (replacing), hits 0, last hit = now_ms */
    CACHE_OP_TOUCH,       /* hits at now_ms (the last of them): hits + count, last hit, LRU */
    CACHE_OP_DELETE,      /* remove key if present */
    CACHE_OP_JOB,         /* replace the job jobs[0] (key unused) */
    CACHE_OP_NEW_JOB,     /* create the job jobs[0] unless its id exists (an answer not stored) */
    CACHE_OP_CAPTURE,     /* jobs[0], now CAPTURED, and its blob: record holds the gzip bytes,
                             stored under jobs[0].blob unless that blob exists */
    CACHE_OP_TASK,        /* store record under key in "tasks" (replacing), or delete key there
                             when record is NULL; then key joins "task_open" (open) or leaves it */
    CACHE_OP_USAGE,       /* store record under name in "usage" (replacing; key unused) */
    CACHE_OP_USAGE_PRUNE, /* delete the "usage" rows whose key sorts before name */
};

struct cache_op {
    enum cache_op_kind kind;
    unsigned char key[CACHE_KEY_BYTES];
    const unsigned char *record; /* PUT: an encoded entry; TASK: the task record, NULL to
                                    delete it; CAPTURE: gzip bytes; USAGE: the row (borrowed) */
    size_t record_len;
    int64_t now_ms;
    uint32_t hits;                /* TOUCH: how many hits the op stands for; 0 counts as 1 */
    const struct cache_job *jobs; /* PUT: jobs to create when absent; JOB, CAPTURE: one */
    size_t job_count;
    bool open;                 /* TASK: true puts key in "task_open", false removes it (if there) */
    const unsigned char *name; /* USAGE, USAGE_PRUNE: a key of "usage" (borrowed) */
    size_t name_len;           /* 1..CACHE_USAGE_KEY_MAX, else the op is not applied */
};

struct cache_apply_result {
    size_t applied;
    size_t dropped; /* puts, captures, task and usage ops that did not fit even after eviction */
    size_t evicted; /* entries removed to make room */
};

/* Applies ops in order in one durable write txn. After the puts, entries are
 * evicted least recently used first while the byte total is above 90% of
 * max_bytes, down to 80%, and also while the filesystem under the store has
 * less room (free space plus the file's free pages) than its reserve (an
 * eighth of it, 256 KiB to 64 MiB), so that a disk smaller than max_bytes,
 * or shared, fills up without ever wedging the store. On MDB_MAP_FULL, or a
 * full disk (ENOSPC, EDQUOT, a short write with no free space left), the
 * txn is aborted, a batch is evicted (on a full disk after removing the
 * 256 KiB file "ballast" the proxy's store keeps next to its own, made again
 * once there is room), and the ops are tried once more; then op by op, each
 * after one more eviction when it does not fit; puts that still do not fit
 * are dropped and counted (task ops too). Returns 0, or -1 on any other
 * store error (nothing applied). */
int cache_store_apply(struct cache_store *s, const struct cache_op *ops, size_t count,
                      struct cache_apply_result *result);

/* Removes entries of provider (NULL: any) stored before stored_before_ms (0:
 * any time). Returns how many, or -1 on error. */
int64_t cache_store_purge(struct cache_store *s, const char *provider, int64_t stored_before_ms);

/* A job by id; FOUND fills out. */
enum cache_get_result cache_store_get_job(struct cache_store *s, const char *id,
                                          struct cache_job *out);
/* A blob's gzip bytes (new copy in *data, the caller frees it). */
enum cache_get_result cache_store_get_blob(struct cache_store *s, const unsigned char *hash,
                                           unsigned char **data, size_t *len);
/* Every job, in id order; visit returns 0 to go on. Returns 0, or -1. */
int cache_store_foreach_job(struct cache_store *s,
                            int (*visit)(const struct cache_job *job, void *arg), void *arg);

/* A task record (new copy in *data, the caller frees it). */
enum cache_get_result cache_store_get_task(struct cache_store *s, const unsigned char *key,
                                           unsigned char **data, size_t *len);
/* Every task whose key is in "task_open", with its record (borrowed for the
 * call only), in key order; visit returns 0 to go on. An open key without a
 * record is skipped. visit may read the store (its own read txns), not
 * write it. Returns 0, or -1 on error. */
int cache_store_foreach_open_task(struct cache_store *s,
                                  int (*visit)(const unsigned char *key, const unsigned char *data,
                                               size_t len, void *arg),
                                  void *arg);

/* Every "usage" row whose key sorts at or after from (from_len bytes; 0:
 * from the first), in key order, lent to visit for the call only; visit
 * returns 0 to go on. One read txn. Returns 0, or -1 on error. */
int cache_store_foreach_usage(struct cache_store *s, const void *from, size_t from_len,
                              int (*visit)(const unsigned char *key, size_t key_len,
                                           const unsigned char *data, size_t len, void *arg),
                              void *arg);

struct cache_store_stats {
    uint64_t entries;
    uint64_t bytes; /* what the entries take in the file: cache_store_entry_bytes of each */
    uint64_t max_bytes;
    uint64_t map_bytes;    /* the LMDB map size */
    uint64_t evictions;    /* since the store was created */
    uint64_t dropped;      /* puts, captures, task ops dropped for lack of room, since created */
    uint64_t jobs_pending; /* artifact jobs by state */
    uint64_t jobs_captured;
    uint64_t jobs_lost;
    uint64_t blob_bytes;   /* gzip bytes of the stored blobs (not in bytes) */
    uint64_t tasks;        /* records in "tasks" (task records and index entries) */
    uint64_t tasks_open;   /* keys in "task_open" */
    uint64_t file_bytes;   /* pages in use in the file: its high-water mark less the free pages */
    uint64_t tasks_pruned; /* task records deleted by cache_store_prune_tasks, since created */
};

int cache_store_stats(struct cache_store *s, struct cache_store_stats *out);

/* What an entry whose record is record_len bytes counts in stats bytes, in
 * max_bytes and in what eviction frees: the file bytes it takes
 * (footprint.h, with this store's page size), not its record's length. */
uint64_t cache_store_entry_bytes(const struct cache_store *s, size_t record_len);

/* Calls visit for every entry's meta (key order); visit returns 0 to go on,
 * anything else to stop. Returns 0, or -1 on error. */
typedef int (*cache_store_visit_cb)(const unsigned char *key, const struct cache_meta *meta,
                                    void *arg);
int cache_store_foreach(struct cache_store *s, cache_store_visit_cb visit, void *arg);

/* --- Export and import (bundle.h, proxy/cli_export.c) ------------------------ */

/* Every entry with its meta and its record (both lent for the call only), in
 * key order, in one read txn; visit returns 0 to go on. The record is not
 * verified: the caller decodes it (cache_entry_decode). An entry without a
 * readable meta is skipped. visit may read the store (its own read txns).
 * Returns 0, or -1 on error. */
int cache_store_foreach_entry(struct cache_store *s,
                              int (*visit)(const unsigned char *key, const struct cache_meta *meta,
                                           const unsigned char *record, size_t len, void *arg),
                              void *arg);

/* Every record of "tasks" (task records and index entries alike), in key
 * order, lent to visit for the call only, in one read txn; visit returns 0
 * to go on. Returns 0, or -1 on error. */
int cache_store_foreach_task(struct cache_store *s,
                             int (*visit)(const unsigned char *key, const unsigned char *data,
                                          size_t len, void *arg),
                             void *arg);

enum cache_import_kind {
    CACHE_IMPORT_ENTRY, /* key, data: an encoded entry; stored_at_ms, expires_at_ms, provider */
    CACHE_IMPORT_TASK,  /* key, data: a task record or index entry, as the proxy keeps them */
    CACHE_IMPORT_JOB,   /* job */
    CACHE_IMPORT_BLOB,  /* key: SHA-256 of the content; data: the content gzip-compressed */
};

/* What an import does with a key the store already has. */
enum cache_import_policy {
    CACHE_IMPORT_KEEP,      /* the store's entry or task stays */
    CACHE_IMPORT_OVERWRITE, /* the bundle's replaces it */
};

struct cache_import_item {
    enum cache_import_kind kind;
    const unsigned char *key; /* 32 bytes (borrowed) */
    const unsigned char *data;
    size_t len;
    int64_t stored_at_ms;  /* ENTRY: its meta */
    int64_t expires_at_ms; /* ENTRY: 0 never */
    const char *provider;  /* ENTRY: NULL or "": the record's */
    const struct cache_job *job;
};

struct cache_import_counts {
    uint64_t added;
    uint64_t kept;
    uint64_t replaced;
};

struct cache_import_result {
    struct cache_import_counts entries, tasks, jobs, blobs;
};

/* Applies items in ONE durable write txn (LMDB makes it wait for the write
 * lock while another process, a running proxy, writes): all of them, or
 * nothing. An entry is put with its meta (hits 0, last used now_ms, so it is
 * the newest in the LRU); a task record is put without an open mark (the
 * importing proxy neither follows it nor delivers its webhook); a blob is
 * added when its hash is absent. Keys already present are kept or replaced
 * as policy says, but jobs: a job is added when its id is absent, and one
 * present is replaced only when the bundle's is CAPTURED and it is not (a
 * captured page is never lost to a pending or lost record). Nothing is
 * evicted: entries over the bound are evicted by the proxy's next write.
 * Returns 0 (result filled), or -1 with a sentence in err (an entry that
 * does not decode or a job that is not valid, a bundle larger than the
 * map's free room, a store error); nothing is then applied. */
int cache_store_import(struct cache_store *s, const struct cache_import_item *items, size_t count,
                       enum cache_import_policy policy, int64_t now_ms,
                       struct cache_import_result *result, char *err, size_t err_size);

#endif
