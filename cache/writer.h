/* writer.h: the one write path of the proxy's cache. A thread that takes
 * queued puts, hits, deletes, artifact jobs, async task records and usage
 * rows from the
 * event loop and applies them in batches, one durable txn each (store.h), so
 * the loop never waits on disk or fsync and a committed entry or task
 * survives kill -9.
 *
 * DESIGN: the loop thread calls cache_writer_put/touch/delete/task (and the
 * job calls), which append to a bounded queue under a mutex and signal a
 * condition variable; they never block on I/O. The writer thread takes
 * everything queued, applies it with cache_store_apply, and loops. Until a
 * put or a task record is committed its record is also kept in a pending
 * map, so a lookup right after a store still finds it (cache_writer_pending):
 * nobody pays twice while the disk catches up, and a task just created is
 * there to be polled. Answers and tasks share the map: their keys never meet
 * (key.h). */
#ifndef CLORO_CACHE_WRITER_H
#define CLORO_CACHE_WRITER_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_writer;

/* Starts the thread. max_queue bounds the ops waiting (beyond it they are
 * dropped and counted). Returns NULL if the thread cannot start. */
struct cache_writer *cache_writer_start(struct cache_store *store, size_t max_queue);

/* Takes ownership of record (malloc'd) and of jobs (malloc'd array, may be
 * NULL): the answer and its artifact jobs are committed in one txn. */
void cache_writer_put(struct cache_writer *w, const unsigned char *key, unsigned char *record,
                      size_t record_len, int64_t now_ms, struct cache_job *jobs, size_t job_count);
/* Creates a job unless its id exists: an artifact of an answer that is not
 * stored (an async task result, a no-store answer). */
void cache_writer_new_job(struct cache_writer *w, const struct cache_job *job);
/* Replaces a job (a failed attempt, or lost). */
void cache_writer_job(struct cache_writer *w, const struct cache_job *job);
/* A captured artifact: the job (CAPTURED) and its gzip content, taken over. */
void cache_writer_capture(struct cache_writer *w, const struct cache_job *job, unsigned char *gzip,
                          size_t gzip_len);
/* Records hits of key, the last at now_ms. Callers should gather hits and
 * touch once in a while (each batch is a durable txn). */
void cache_writer_touch(struct cache_writer *w, const unsigned char *key, int64_t now_ms,
                        uint32_t hits);
void cache_writer_delete(struct cache_writer *w, const unsigned char *key);

/* Stores a task record under key (taking record, malloc'd; NULL deletes the
 * key) and marks the key open or not, in the next txn. Like a put, the
 * record is in the pending map until committed: cache_writer_pending finds
 * it (and does not find a deleted one). A task op that does not fit the map
 * is dropped and counted (stats dropped). */
void cache_writer_task(struct cache_writer *w, const unsigned char *key, unsigned char *record,
                       size_t record_len, bool open);

/* Stores a usage row (value) under key in "usage", replacing it, in the
 * next txn. Both are copied. Returns false when the op was refused (queue
 * full, counted dropped, or a key of no 1..CACHE_USAGE_KEY_MAX bytes): the
 * caller keeps the row to write again. Usage rows do not enter the pending
 * map (read them with cache_store_foreach_usage once committed). */
bool cache_writer_usage(struct cache_writer *w, const void *key, size_t key_len, const void *value,
                        size_t value_len);
/* Deletes the usage rows whose key sorts before key (copied). Returns false
 * when refused, as above. */
bool cache_writer_usage_prune(struct cache_writer *w, const void *key, size_t key_len);

/* Starts a prune of task records (store.h, cache_store_prune_tasks): judge
 * is called on the writer thread with a copy of arg (at most
 * CACHE_WRITER_PRUNE_ARG_MAX bytes). The thread walks "tasks" one txn of
 * CACHE_WRITER_PRUNE_BATCH records at a time, between its batches of
 * queued ops, so puts and task records never wait for the whole walk; a
 * store error ends the walk (the next prune starts over). Returns false,
 * starting nothing, while a prune is under way or when arg is too large. */
#define CACHE_WRITER_PRUNE_ARG_MAX 64
#define CACHE_WRITER_PRUNE_BATCH   256
bool cache_writer_task_prune(struct cache_writer *w, cache_task_judge judge, const void *arg,
                             size_t arg_len);

/* When a put or a task record of key is queued but not yet committed (and
 * not deleted since), returns true with a new copy of its record (the caller
 * frees *record). */
bool cache_writer_pending(struct cache_writer *w, const unsigned char *key, unsigned char **record,
                          size_t *record_len);

/* True when ops more ops fit in the first half of the queue: callers about
 * to queue many records they must not lose (task records) check it first
 * and refuse the work while the disk catches up. */
bool cache_writer_has_room(struct cache_writer *w, size_t ops);

/* For callers that must not acknowledge a record before it is durable:
 * the number of the last put or task record queued, and the number through
 * which every queued op has been committed or given up (a store error, no
 * room). Once cache_writer_settled(w) >= a cache_writer_last_queued(w) read,
 * everything queued before that read is settled. Any thread. */
uint64_t cache_writer_last_queued(struct cache_writer *w);
uint64_t cache_writer_settled(struct cache_writer *w);

/* Commits what is queued, then stops the thread and frees w. */
void cache_writer_stop(struct cache_writer *w);

struct cache_writer_stats {
    uint64_t queued;       /* ops accepted */
    uint64_t committed;    /* ops applied in committed txns */
    uint64_t dropped;      /* ops refused (queue full), or puts, captures, task ops that did
                              not fit */
    uint64_t failed;       /* ops lost to a store error */
    uint64_t evicted;      /* entries evicted to make room */
    uint64_t batches;      /* txns committed */
    uint64_t tasks_pruned; /* task records deleted by cache_writer_task_prune */
};

/* A consistent snapshot; any thread. */
void cache_writer_stats(struct cache_writer *w, struct cache_writer_stats *out);

#endif
