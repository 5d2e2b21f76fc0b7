/* writer.c: the writer thread of the cache (writer.h): a bounded op queue,
 * the pending map of puts and task records not yet committed, and the
 * counters. It owns the queued records, task records, job arrays and
 * captured blobs; it does not own the store
 * (the caller opens and closes it) and never logs: the proxy reads
 * cache_writer_stats.
 *
 * DESIGN
 *
 *   loop thread                        writer thread
 *   put/touch/delete --lock--> queue --(swap all)--> batches of <= 1024 ops
 *   (and job/capture/task)
 *        |                                             |  cache_store_apply:
 *        +--put, task: pending[key] = (record, seq)    |  one durable txn each
 *        +--delete, task NULL: pending[key] removed    |
 *   pending() --lock--> copy of the record             v
 *                        <--lock-- pending entries of the batch removed
 *                                  (same seq only), records freed
 *
 * One mutex guards the queue, the pending map, the sequence counter and the
 * stats; a condition variable wakes the thread when the queue turns
 * non-empty or stop is asked. The loop holds the mutex only to append or
 * look up, never across I/O; the thread holds it only to swap the queue and
 * to settle a batch, so the loop never waits on LMDB or fsync. A pending
 * entry borrows the record of its queued op (same seq); the thread removes
 * the entry before it frees the record, so a pending record is always
 * alive. It is removed only after its txn committed, so a lookup that tries
 * the pending map and then the store never misses a stored answer. Only
 * PUTs and TASKs with a record enter the pending map: a CAPTURE's record is
 * a blob, and jobs are read from the store. A TASK without a record (a
 * deletion), like a DELETE, removes the key's entry whatever its seq, once
 * it is queued (a refused one leaves it: the queued record will be stored).
 * Answer and task keys share the map; they never collide (key.h). Each op
 * takes one queue slot, however many jobs a PUT carries. A USAGE or
 * USAGE_PRUNE op owns one buffer (its records[i]) holding its key, then its
 * row: op.name and op.record point into it.
 *
 * A task prune (cache_writer_task_prune) is not an op: it is a walk of
 * "tasks" the thread takes one txn at a time after each round of queued
 * ops (prune_step), so it never holds the queue back for long; its fields
 * are the thread's while prune_active, set by the loop only while not. */
#include "writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITER_BATCH_MAX  1024 /* ops per cache_store_apply */
#define PENDING_MIN_SLOTS 64

/* A queue of ops in parallel arrays, so ops can go to cache_store_apply as
 * they are. records[i] is the owned record of a put or a task, or blob of a
 * capture (NULL otherwise), ops[i].record points into it; jobs[i] is the
 * owned job array (a put's, or the one job of a job or capture op; NULL
 * otherwise), ops[i].jobs points to it; seqs[i] is a put's or a task's
 * sequence number. */
struct op_queue {
    struct cache_op *ops;
    unsigned char **records;
    struct cache_job **jobs;
    uint64_t *seqs;
    size_t len;
    size_t cap;
};

/* The pending map: open addressing, linear probing, backward-shift removal.
 * Invariant: count <= cap / 2; cap is a power of two (or 0 before the first
 * insert). */
struct pending_slot {
    bool used;
    uint64_t hash;
    unsigned char key[CACHE_KEY_BYTES];
    const unsigned char *record; /* borrowed from the queued op with this seq */
    size_t record_len;
    uint64_t seq;
};

struct pending_map {
    struct pending_slot *slots;
    size_t cap;
    size_t count;
};

struct cache_writer {
    struct cache_store *store;
    size_t max_queue;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    /* Guarded by mu: */
    bool stopping;
    struct op_queue queue;
    struct pending_map pending;
    uint64_t next_seq;
    uint64_t last_queued_seq; /* of the last put or task record queued */
    uint64_t settled_seq;     /* every op through it applied or given up */
    struct cache_writer_stats stats;
    bool prune_active; /* a task prune is under way: the fields below are the thread's */
    /* Set by cache_writer_task_prune while no prune is under way: */
    cache_task_judge prune_judge;
    unsigned char prune_arg[CACHE_WRITER_PRUNE_ARG_MAX];
    unsigned char prune_resume[CACHE_KEY_BYTES];
    bool prune_resumed;
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        fputs("cloro-proxy: out of memory in the cache writer\n", stderr);
        abort();
    }
    return q;
}

static void queue_push(struct op_queue *q, const struct cache_op *op, unsigned char *record,
                       struct cache_job *jobs, uint64_t seq)
{
    if (q->len == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->ops = xrealloc(q->ops, q->cap * sizeof *q->ops);
        q->records = xrealloc(q->records, q->cap * sizeof *q->records);
        q->jobs = xrealloc(q->jobs, q->cap * sizeof *q->jobs);
        q->seqs = xrealloc(q->seqs, q->cap * sizeof *q->seqs);
    }
    q->ops[q->len] = *op;
    q->records[q->len] = record;
    q->jobs[q->len] = jobs;
    q->seqs[q->len] = seq;
    q->len++;
}

static void queue_free(struct op_queue *q)
{
    for (size_t i = 0; i < q->len; i++) {
        free(q->records[i]);
        free(q->jobs[i]);
    }
    free(q->ops);
    free(q->records);
    free(q->jobs);
    free(q->seqs);
    memset(q, 0, sizeof *q);
}

/* FNV-1a over the whole key: keys are SHA-256 output, but tests and tools
 * may use keys that differ in one byte only. */
static uint64_t key_hash(const unsigned char *key)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < CACHE_KEY_BYTES; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    return h;
}

/* The slot of key, or of the free slot where it would go. */
static size_t pending_find(const struct pending_map *m, const unsigned char *key, uint64_t h)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    while (m->slots[i].used &&
           (m->slots[i].hash != h || memcmp(m->slots[i].key, key, CACHE_KEY_BYTES) != 0))
        i = (i + 1) & mask;
    return i;
}

static void pending_grow(struct pending_map *m)
{
    size_t old_cap = m->cap;
    struct pending_slot *old = m->slots;
    m->cap = old_cap ? 2 * old_cap : PENDING_MIN_SLOTS;
    m->slots = xrealloc(NULL, m->cap * sizeof *m->slots);
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].used)
            m->slots[pending_find(m, old[i].key, old[i].hash)] = old[i];
    free(old);
}

static void pending_set(struct pending_map *m, const unsigned char *key,
                        const unsigned char *record, size_t record_len, uint64_t seq)
{
    if (2 * (m->count + 1) > m->cap)
        pending_grow(m);
    uint64_t h = key_hash(key);
    struct pending_slot *s = &m->slots[pending_find(m, key, h)];
    if (!s->used) {
        s->used = true;
        s->hash = h;
        memcpy(s->key, key, CACHE_KEY_BYTES);
        m->count++;
    }
    s->record = record;
    s->record_len = record_len;
    s->seq = seq;
}

/* Knuth's algorithm R: refill the hole with the next entries of the run
 * that may not stay where they are, so lookups need no tombstones. */
static void pending_remove_at(struct pending_map *m, size_t i)
{
    size_t mask = m->cap - 1;
    size_t j = i;
    m->count--;
    for (;;) {
        m->slots[i].used = false;
        for (;;) {
            j = (j + 1) & mask;
            if (!m->slots[j].used)
                return;
            size_t home = (size_t)m->slots[j].hash & mask;
            /* j stays when its home lies cyclically in (i, j]. */
            bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays)
                break;
        }
        m->slots[i] = m->slots[j];
        i = j;
    }
}

/* Removes key's entry when its seq is seq, or any seq when seq is 0. */
static void pending_remove(struct pending_map *m, const unsigned char *key, uint64_t seq)
{
    if (m->count == 0)
        return;
    size_t i = pending_find(m, key, key_hash(key));
    if (m->slots[i].used && (seq == 0 || m->slots[i].seq == seq))
        pending_remove_at(m, i);
}

/* Appends one op, taking record and jobs; called with mu held. Returns false
 * (counted dropped) when the queue is full: the caller still owns them. */
static bool enqueue_locked(struct cache_writer *w, const struct cache_op *op, unsigned char *record,
                           struct cache_job *jobs, uint64_t seq)
{
    if (w->queue.len >= w->max_queue) {
        w->stats.dropped++;
        return false;
    }
    queue_push(&w->queue, op, record, jobs, seq);
    if (seq != 0)
        w->last_queued_seq = seq;
    w->stats.queued++;
    if (w->queue.len == 1)
        pthread_cond_signal(&w->wake); /* the thread sleeps only on an empty queue */
    return true;
}

void cache_writer_put(struct cache_writer *w, const unsigned char *key, unsigned char *record,
                      size_t record_len, int64_t now_ms, struct cache_job *jobs, size_t job_count)
{
    struct cache_op op = {.kind = CACHE_OP_PUT,
                          .record = record,
                          .record_len = record_len,
                          .now_ms = now_ms,
                          .jobs = jobs,
                          .job_count = jobs != NULL ? job_count : 0};
    memcpy(op.key, key, CACHE_KEY_BYTES);
    pthread_mutex_lock(&w->mu);
    uint64_t seq = ++w->next_seq;
    bool queued = enqueue_locked(w, &op, record, jobs, seq);
    if (queued)
        pending_set(&w->pending, key, record, record_len, seq);
    pthread_mutex_unlock(&w->mu);
    if (!queued) {
        free(record);
        free(jobs);
    }
}

/* Queues a JOB or CAPTURE of a copy of job, taking gzip (CAPTURE). */
static void enqueue_job(struct cache_writer *w, enum cache_op_kind kind,
                        const struct cache_job *job, unsigned char *gzip, size_t gzip_len)
{
    struct cache_job *copy = xrealloc(NULL, sizeof *copy);
    *copy = *job;
    struct cache_op op = {
        .kind = kind, .record = gzip, .record_len = gzip_len, .jobs = copy, .job_count = 1};
    pthread_mutex_lock(&w->mu);
    bool queued = enqueue_locked(w, &op, gzip, copy, 0);
    pthread_mutex_unlock(&w->mu);
    if (!queued) {
        free(gzip);
        free(copy);
    }
}

void cache_writer_new_job(struct cache_writer *w, const struct cache_job *job)
{
    enqueue_job(w, CACHE_OP_NEW_JOB, job, NULL, 0);
}

void cache_writer_job(struct cache_writer *w, const struct cache_job *job)
{
    enqueue_job(w, CACHE_OP_JOB, job, NULL, 0);
}

void cache_writer_capture(struct cache_writer *w, const struct cache_job *job, unsigned char *gzip,
                          size_t gzip_len)
{
    enqueue_job(w, CACHE_OP_CAPTURE, job, gzip, gzip_len);
}

void cache_writer_touch(struct cache_writer *w, const unsigned char *key, int64_t now_ms,
                        uint32_t hits)
{
    struct cache_op op = {.kind = CACHE_OP_TOUCH, .now_ms = now_ms, .hits = hits};
    memcpy(op.key, key, CACHE_KEY_BYTES);
    pthread_mutex_lock(&w->mu);
    enqueue_locked(w, &op, NULL, NULL, 0);
    pthread_mutex_unlock(&w->mu);
}

void cache_writer_delete(struct cache_writer *w, const unsigned char *key)
{
    struct cache_op op = {.kind = CACHE_OP_DELETE};
    memcpy(op.key, key, CACHE_KEY_BYTES);
    pthread_mutex_lock(&w->mu);
    /* A delete that is dropped leaves the pending put alone: that put is
     * still queued and will be stored, so lookups keep agreeing with the
     * store to be. */
    if (enqueue_locked(w, &op, NULL, NULL, 0))
        pending_remove(&w->pending, key, 0);
    pthread_mutex_unlock(&w->mu);
}

void cache_writer_task(struct cache_writer *w, const unsigned char *key, unsigned char *record,
                       size_t record_len, bool open)
{
    struct cache_op op = {.kind = CACHE_OP_TASK,
                          .record = record,
                          .record_len = record != NULL ? record_len : 0,
                          .open = open};
    memcpy(op.key, key, CACHE_KEY_BYTES);
    pthread_mutex_lock(&w->mu);
    uint64_t seq = ++w->next_seq;
    bool queued = enqueue_locked(w, &op, record, NULL, seq);
    if (queued && record != NULL)
        pending_set(&w->pending, key, record, op.record_len, seq);
    else if (queued)
        pending_remove(&w->pending, key, 0); /* deleted: found no more, as by a delete */
    pthread_mutex_unlock(&w->mu);
    if (!queued)
        free(record);
}

/* One owned buffer holds the key, then the value: op.name and op.record
 * point into it, and the queue frees it with the op like any record. */
static bool enqueue_usage(struct cache_writer *w, enum cache_op_kind kind, const void *key,
                          size_t key_len, const void *value, size_t value_len)
{
    if (key_len == 0 || key_len > CACHE_USAGE_KEY_MAX)
        return false;
    unsigned char *buf = xrealloc(NULL, key_len + value_len);
    memcpy(buf, key, key_len);
    if (value_len > 0)
        memcpy(buf + key_len, value, value_len);
    struct cache_op op = {.kind = kind,
                          .name = buf,
                          .name_len = key_len,
                          .record = kind == CACHE_OP_USAGE ? buf + key_len : NULL,
                          .record_len = kind == CACHE_OP_USAGE ? value_len : 0};
    pthread_mutex_lock(&w->mu);
    bool queued = enqueue_locked(w, &op, buf, NULL, 0);
    pthread_mutex_unlock(&w->mu);
    if (!queued)
        free(buf);
    return queued;
}

bool cache_writer_usage(struct cache_writer *w, const void *key, size_t key_len, const void *value,
                        size_t value_len)
{
    return enqueue_usage(w, CACHE_OP_USAGE, key, key_len, value, value_len);
}

bool cache_writer_usage_prune(struct cache_writer *w, const void *key, size_t key_len)
{
    return enqueue_usage(w, CACHE_OP_USAGE_PRUNE, key, key_len, NULL, 0);
}

bool cache_writer_task_prune(struct cache_writer *w, cache_task_judge judge, const void *arg,
                             size_t arg_len)
{
    if (arg_len > CACHE_WRITER_PRUNE_ARG_MAX || judge == NULL)
        return false;
    pthread_mutex_lock(&w->mu);
    bool started = !w->prune_active && !w->stopping;
    if (started) {
        w->prune_judge = judge;
        memset(w->prune_arg, 0, sizeof w->prune_arg);
        if (arg_len > 0)
            memcpy(w->prune_arg, arg, arg_len);
        w->prune_resumed = false;
        w->prune_active = true;
        pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->mu);
    return started;
}

/* One txn of the prune under way (the thread's own fields, see struct
 * cache_writer); it ends at the last record or on a store error. */
static void prune_step(struct cache_writer *w)
{
    uint64_t pruned = 0;
    int rc =
        cache_store_prune_tasks(w->store, w->prune_judge, w->prune_arg, CACHE_WRITER_PRUNE_BATCH,
                                w->prune_resume, &w->prune_resumed, &pruned);
    pthread_mutex_lock(&w->mu);
    if (rc != 0 || !w->prune_resumed)
        w->prune_active = false;
    w->stats.tasks_pruned += pruned;
    pthread_mutex_unlock(&w->mu);
}

bool cache_writer_pending(struct cache_writer *w, const unsigned char *key, unsigned char **record,
                          size_t *record_len)
{
    bool found = false;
    pthread_mutex_lock(&w->mu);
    if (w->pending.count > 0) {
        const struct pending_slot *s =
            &w->pending.slots[pending_find(&w->pending, key, key_hash(key))];
        if (s->used) {
            *record = xrealloc(NULL, s->record_len);
            memcpy(*record, s->record, s->record_len);
            *record_len = s->record_len;
            found = true;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return found;
}

bool cache_writer_has_room(struct cache_writer *w, size_t ops)
{
    pthread_mutex_lock(&w->mu);
    bool room = w->queue.len + ops <= w->max_queue / 2;
    pthread_mutex_unlock(&w->mu);
    return room;
}

uint64_t cache_writer_last_queued(struct cache_writer *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t seq = w->last_queued_seq;
    pthread_mutex_unlock(&w->mu);
    return seq;
}

uint64_t cache_writer_settled(struct cache_writer *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t seq = w->settled_seq;
    pthread_mutex_unlock(&w->mu);
    return seq;
}

void cache_writer_stats(struct cache_writer *w, struct cache_writer_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

/* Applies ops [off, off + n) of work and settles them: counters, pending
 * entries of its puts and tasks (still the same op only), records and jobs
 * freed. */
static void apply_batch(struct cache_writer *w, struct op_queue *work, size_t off, size_t n)
{
    struct cache_apply_result r = {0, 0, 0};
    int rc = cache_store_apply(w->store, work->ops + off, n, &r);
    if (r.applied + r.dropped > n) /* cannot happen; keeps the counters sane */
        r.applied = n - r.dropped;

    pthread_mutex_lock(&w->mu);
    w->stats.committed += r.applied;
    w->stats.dropped += r.dropped;
    /* Neither applied nor dropped: a store error, a record that does not
     * decode, or a touch or delete that did not fit. */
    w->stats.failed += n - r.applied - r.dropped;
    w->stats.evicted += r.evicted;
    if (rc == 0)
        w->stats.batches++;
    for (size_t i = off; i < off + n; i++) {
        if ((work->ops[i].kind == CACHE_OP_PUT || work->ops[i].kind == CACHE_OP_TASK) &&
            work->records[i] != NULL)
            pending_remove(&w->pending, work->ops[i].key, work->seqs[i]);
        /* The queue is in seq order: this op settles every seq before it. */
        if (work->seqs[i] > w->settled_seq)
            w->settled_seq = work->seqs[i];
    }
    pthread_mutex_unlock(&w->mu);

    for (size_t i = off; i < off + n; i++) {
        free(work->records[i]);
        work->records[i] = NULL;
        free(work->jobs[i]);
        work->jobs[i] = NULL;
    }
}

static void *writer_main(void *arg)
{
    struct cache_writer *w = arg;
    struct op_queue work = {0};
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->queue.len == 0 && !w->prune_active && !w->stopping)
            pthread_cond_wait(&w->wake, &w->mu);
        if (w->queue.len == 0 && w->stopping)
            break; /* stopping, and everything queued is applied (a prune is left) */
        struct op_queue taken = w->queue;
        w->queue = work; /* empty, keeps its capacity */
        work = taken;
        bool prune = w->prune_active;
        pthread_mutex_unlock(&w->mu);

        for (size_t off = 0; off < work.len; off += WRITER_BATCH_MAX) {
            size_t n = work.len - off < WRITER_BATCH_MAX ? work.len - off : WRITER_BATCH_MAX;
            apply_batch(w, &work, off, n);
        }
        work.len = 0;
        if (prune)
            prune_step(w); /* one txn of it, then the ops queued meanwhile */
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    queue_free(&work);
    return NULL;
}

struct cache_writer *cache_writer_start(struct cache_store *store, size_t max_queue)
{
    struct cache_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->store = store;
    w->max_queue = max_queue;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->wake, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    /* The thread blocks every signal it can: they are the loop's to handle. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void cache_writer_stop(struct cache_writer *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);

    queue_free(&w->queue); /* empty: the thread drained it */
    free(w->pending.slots);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
