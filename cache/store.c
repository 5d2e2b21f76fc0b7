/* store.c: the LMDB environment of the cache (store.h): open, map sizing,
 * the format record, reads, batched durable writes with LRU eviction, purge,
 * stats. The only file that includes lmdb.h. It owns no thread and no queue
 * (writer.c does) and never logs: errors are return codes and counters.
 *
 * Every write txn is committed with LMDB's default durable commit (no
 * NOSYNC, NOMETASYNC or WRITEMAP), so a committed op survives kill -9 and
 * power loss, and a store killed mid-txn reopens at its last commit.
 *
 * Counters live in "info" and are read and written inside each write txn,
 * never cached in memory, so the proxy and its CLI (another process) can
 * both write without losing each other's updates.
 *
 * Artifacts: "jobs" (id bytes, no NUL -> job record, below) and "blobs"
 * (SHA-256 -> gzip bytes as given). A PUT creates its jobs only when absent
 * (a captured or lost job is never reset by a later identical answer), JOB
 * replaces one, CAPTURE stores the blob unless present, then replaces the
 * job. "bytes" counts the entries only, each as what it takes in the file
 * (cache_footprint_entry of its record's length: overflow pages, meta and
 * LRU rows), not its record's length; "bytes_rule" records that rule, and
 * a file counted by the older rule (record bytes) is recounted at open;
 * "jobs_pending", "jobs_captured", "jobs_lost" count jobs by state and
 * "blob_bytes" the blobs. Eviction removes entries only: jobs and blobs stay.
 *
 * Async tasks: "tasks" (32-byte key -> the record as given) and "task_open"
 * (32-byte key -> empty). TASK replaces or deletes the record, then adds
 * the key to "task_open" or removes it, in the op's txn. No counter in
 * "info": stats count both with mdb_stat. Like jobs and blobs, neither is
 * in "bytes" nor ever evicted; a TASK that does not fit after the MAP_FULL
 * eviction is dropped and counted like a put. cache_store_prune_tasks walks
 * "tasks" in bounded txns and deletes what the proxy's judge says (records
 * past their retention, their index entries), never a key in "task_open";
 * info "tasks_pruned" counts the records.
 *
 * Usage counters: "usage" (key as given, 1..CACHE_USAGE_KEY_MAX bytes ->
 * the row as given). USAGE replaces a row; USAGE_PRUNE deletes the rows
 * before its key (a cursor from the first row). Not in "bytes", never
 * evicted; a USAGE that does not fit is dropped and counted like a put.
 *
 * A full disk is treated like a full map (no_room), and kept from wedging
 * the store: batches evict to keep a reserve of the filesystem free
 * (disk_shortfall), and a ballast file is given up when not even an
 * eviction can commit (ballast_make). */
#include "store.h"

#include "cache_dir.h"
#include "footprint.h"

#include <lmdb.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define STORE_FORMAT        "cloro-proxy-cache 1"
#define STORE_MAX_DBS       12 /* the 9 named databases below, and room for 3 more */
#define STORE_MAX_READERS   126
#define STORE_HEADROOM      ((size_t)64 << 20) /* map bytes beyond max_bytes, at least */
#define STORE_HIGH_PERCENT  90                 /* evict when bytes exceed this share... */
#define STORE_LOW_PERCENT   80                 /* ...down to this one */
#define STORE_PURGE_CHUNK   1024               /* deletes per purge txn */
#define STORE_EVICT_PERCENT 10                 /* share of entries a MAP_FULL eviction frees */
/* Free disk below which an EIO is a full disk (no_room), and the free disk
 * the store keeps on its filesystem (disk_reserve). */
#define STORE_FULL_DISK_BYTES   ((uint64_t)64 << 10)
#define STORE_DISK_RESERVE_MIN  ((uint64_t)256 << 10)
#define STORE_DISK_RESERVE_MAX  ((uint64_t)64 << 20)
#define STORE_DISK_WRITE_FACTOR 3
#define STORE_BALLAST_BYTES     ((uint64_t)256 << 10)

/* The meta value, 100 bytes, little endian:
 *   0 u64 hits           8 i64 last_hit_ms (0: never hit)   16 i64 stored_at_ms
 *  24 i64 expires_at_ms 32 u64 size (record bytes)          40 i64 lru_ms
 *  48 char provider[16], NUL padded;
 *  64 u32 sample (0: not a sample)  68 base key[32] (the key of sample 1).
 * Metas written before samples existed are 64 bytes and read as sample 0;
 * the sample fields are copied from the record at each put (entry.h).
 * lru_ms is the entry's position in "lru": the put's now_ms, then each hit's.
 * Invariant: an entry has exactly one row in each of entries, meta and lru,
 * and the lru row is lru_key(lru_ms, key); info "bytes" is the sum of the
 * size fields. */
#define META_BYTES    100
#define META_V1_BYTES 64 /* before samples: no sample fields */
#define LRU_KEY_BYTES (8 + CACHE_KEY_BYTES)

/* The job value, little endian, version 1 (the id is the key):
 *   0 u8 version  1 u8 state  2 u32 attempts  6 i64 created_ms
 *  14 i64 expires_ms  22 i64 next_attempt_ms  30 u64 size  38 u8 blob[32]
 *  70 u16 url length, url; u8 content_type length, content_type;
 *     u8 note length, note (no NULs; each shorter than its field).
 * A record of another version, or whose lengths do not add up, does not
 * decode: it is skipped by foreach_job and reported CORRUPT by get_job. */
#define JOB_VERSION     1
#define JOB_FIXED_BYTES 70
#define JOB_CT_MAX      64 /* sizeof cache_job.content_type */
#define JOB_NOTE_MAX    64 /* sizeof cache_job.note */
#define JOB_MAX_BYTES   (JOB_FIXED_BYTES + 2 + CACHE_ARTIFACT_URL_MAX - 1 + JOB_CT_MAX + JOB_NOTE_MAX)
#define BLOB_KEY_BYTES  32
#define JOB_STATES      3 /* CACHE_JOB_PENDING, CAPTURED, LOST */

_Static_assert(sizeof(((struct cache_job *)0)->content_type) == JOB_CT_MAX, "content_type");
_Static_assert(sizeof(((struct cache_job *)0)->note) == JOB_NOTE_MAX, "note");
_Static_assert(CACHE_ARTIFACT_URL_MAX - 1 <= 0xFFFF, "a url length fits in a u16");
_Static_assert(JOB_CT_MAX - 1 <= 0xFF && JOB_NOTE_MAX - 1 <= 0xFF, "lengths fit in a u8");
_Static_assert(CACHE_JOB_LOST == JOB_STATES - 1, "job states");

struct cache_store {
    MDB_env *env;
    MDB_dbi entries;
    MDB_dbi meta;
    MDB_dbi lru;
    MDB_dbi info;
    MDB_dbi jobs;
    MDB_dbi blobs;
    MDB_dbi tasks;
    MDB_dbi task_open;
    MDB_dbi usage;
    bool cli;           /* opened with max_bytes 0: adopts the file's map and bound */
    uint64_t max_bytes; /* configured, or (cli) the bound the file records; 0: none */
    char *ballast_path; /* <dir>/ballast (not for the CLI), see ballast_make */
    bool ballast_held;
    size_t page_size; /* LMDB's, for cache_footprint_entry */
};

/* One write txn and the counters it carries from "info" to its commit. */
struct wtxn {
    struct cache_store *s;
    MDB_txn *txn;
    uint64_t bytes;
    uint64_t evictions;
    uint64_t dropped;
    uint64_t jobs[JOB_STATES]; /* jobs by state */
    uint64_t blob_bytes;
    bool counters_dirty;
    size_t applied;
    size_t evicted;
};

/* The meta of a put, decoded once per apply from its record; for a JOB, a
 * CAPTURE or a TASK only valid is used. */
struct put_meta {
    bool valid; /* the record decoded (PUT), the op is well formed (JOB, CAPTURE; a TASK
                   always is); an invalid op is neither applied nor dropped */
    int64_t stored_at_ms;
    int64_t expires_at_ms;
    char provider[CACHE_PROVIDER_MAX];
    uint32_t sample;
    unsigned char base_key[CACHE_KEY_BYTES];
};

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void meta_encode(const struct cache_meta *m, int64_t lru_ms, unsigned char *out)
{
    put_le64(out + 0, m->hits);
    put_le64(out + 8, (uint64_t)m->last_hit_ms);
    put_le64(out + 16, (uint64_t)m->stored_at_ms);
    put_le64(out + 24, (uint64_t)m->expires_at_ms);
    put_le64(out + 32, m->size);
    put_le64(out + 40, (uint64_t)lru_ms);
    memset(out + 48, 0, CACHE_PROVIDER_MAX);
    memcpy(out + 48, m->provider, strnlen(m->provider, CACHE_PROVIDER_MAX - 1));
    for (int i = 0; i < 4; i++)
        out[64 + i] = (unsigned char)(m->sample >> (8 * i));
    memcpy(out + 68, m->base_key, CACHE_KEY_BYTES);
}

static int meta_decode(const MDB_val *v, struct cache_meta *m, int64_t *lru_ms)
{
    if (v->mv_size < META_V1_BYTES)
        return -1;
    const unsigned char *p = v->mv_data;
    m->hits = get_le64(p + 0);
    m->last_hit_ms = (int64_t)get_le64(p + 8);
    m->stored_at_ms = (int64_t)get_le64(p + 16);
    m->expires_at_ms = (int64_t)get_le64(p + 24);
    m->size = get_le64(p + 32);
    if (lru_ms != NULL)
        *lru_ms = (int64_t)get_le64(p + 40);
    memcpy(m->provider, p + 48, CACHE_PROVIDER_MAX);
    m->provider[CACHE_PROVIDER_MAX - 1] = '\0';
    m->sample = 0;
    memset(m->base_key, 0, CACHE_KEY_BYTES);
    if (v->mv_size >= META_BYTES) {
        m->sample =
            (uint32_t)p[64] | (uint32_t)p[65] << 8 | (uint32_t)p[66] << 16 | (uint32_t)p[67] << 24;
        memcpy(m->base_key, p + 68, CACHE_KEY_BYTES);
    }
    return 0;
}

/* Big endian so that LMDB's byte order is time order. */
static void lru_key(int64_t lru_ms, const unsigned char *key, unsigned char *out)
{
    uint64_t t = lru_ms < 0 ? 0 : (uint64_t)lru_ms;
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(t >> (8 * (7 - i)));
    memcpy(out + 8, key, CACHE_KEY_BYTES);
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A job's id as its key: the bytes before the NUL (at most the field less
 * one). 0 when empty. */
static size_t job_id_len(const struct cache_job *j)
{
    return strnlen(j->id, sizeof j->id - 1);
}

/* A job that can be stored: an id and a known state. */
static bool job_valid(const struct cache_job *j)
{
    return job_id_len(j) > 0 && (unsigned)j->state < JOB_STATES;
}

/* Writes a string field as len (width 1 or 2 bytes) + bytes; returns the
 * bytes written. */
static size_t put_str(unsigned char *p, const char *s, size_t field, int width)
{
    size_t n = strnlen(s, field - 1);
    p[0] = (unsigned char)n;
    if (width == 2)
        p[1] = (unsigned char)(n >> 8);
    memcpy(p + width, s, n);
    return (size_t)width + n;
}

/* Encodes a valid job (job_valid) into out (JOB_MAX_BYTES); returns the length. */
static size_t job_encode(const struct cache_job *j, unsigned char *out)
{
    out[0] = JOB_VERSION;
    out[1] = (unsigned char)j->state;
    put_le32(out + 2, j->attempts);
    put_le64(out + 6, (uint64_t)j->created_ms);
    put_le64(out + 14, (uint64_t)j->expires_ms);
    put_le64(out + 22, (uint64_t)j->next_attempt_ms);
    put_le64(out + 30, j->size);
    memcpy(out + 38, j->blob, sizeof j->blob);
    size_t n = JOB_FIXED_BYTES;
    n += put_str(out + n, j->url, sizeof j->url, 2);
    n += put_str(out + n, j->content_type, sizeof j->content_type, 1);
    n += put_str(out + n, j->note, sizeof j->note, 1);
    return n;
}

/* Reads a string field written by put_str at *pos of p (len bytes); false
 * when it runs past the end or does not fit the field. */
static bool get_str(const unsigned char *p, size_t len, size_t *pos, int width, char *dst,
                    size_t field)
{
    if (len - *pos < (size_t)width)
        return false;
    size_t n = p[*pos];
    if (width == 2)
        n |= (size_t)p[*pos + 1] << 8;
    *pos += (size_t)width;
    if (n >= field || len - *pos < n || memchr(p + *pos, '\0', n) != NULL)
        return false;
    memcpy(dst, p + *pos, n);
    dst[n] = '\0';
    *pos += n;
    return true;
}

/* Decodes the job under key k (value v) into out. Returns 0, or -1 when it
 * is not a record of this version. */
static int job_decode(const MDB_val *k, const MDB_val *v, struct cache_job *out)
{
    memset(out, 0, sizeof *out);
    const unsigned char *p = v->mv_data;
    if (k->mv_size == 0 || k->mv_size >= sizeof out->id ||
        memchr(k->mv_data, '\0', k->mv_size) != NULL || v->mv_size < JOB_FIXED_BYTES ||
        p[0] != JOB_VERSION || p[1] >= JOB_STATES)
        return -1;
    memcpy(out->id, k->mv_data, k->mv_size);
    out->state = (enum cache_job_state)p[1];
    out->attempts = get_le32(p + 2);
    out->created_ms = (int64_t)get_le64(p + 6);
    out->expires_ms = (int64_t)get_le64(p + 14);
    out->next_attempt_ms = (int64_t)get_le64(p + 22);
    out->size = get_le64(p + 30);
    memcpy(out->blob, p + 38, sizeof out->blob);
    size_t pos = JOB_FIXED_BYTES;
    if (!get_str(p, v->mv_size, &pos, 2, out->url, sizeof out->url) ||
        !get_str(p, v->mv_size, &pos, 1, out->content_type, sizeof out->content_type) ||
        !get_str(p, v->mv_size, &pos, 1, out->note, sizeof out->note) || pos != v->mv_size) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

static MDB_val val(const void *data, size_t size)
{
    MDB_val v = {size, (void *)data};
    return v;
}

/* Deleting what is already gone is not an error. */
static int del_quiet(MDB_txn *txn, MDB_dbi dbi, MDB_val *k)
{
    int rc = mdb_del(txn, dbi, k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int info_get_u64(MDB_txn *txn, MDB_dbi info, const char *name, uint64_t *out)
{
    MDB_val k = val(name, strlen(name)), v;
    int rc = mdb_get(txn, info, &k, &v);
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (v.mv_size == 8)
        *out = get_le64(v.mv_data);
    return 0;
}

static int info_put_u64(MDB_txn *txn, MDB_dbi info, const char *name, uint64_t value)
{
    unsigned char buf[8];
    put_le64(buf, value);
    MDB_val k = val(name, strlen(name)), v = val(buf, sizeof buf);
    return mdb_put(txn, info, &k, &v, 0);
}

/* A CLI process (max_bytes 0) may find the map grown by the proxy since it
 * opened: it adopts the new size. Only the CLI does, because remapping needs
 * every txn of the process closed, which the proxy's threads cannot promise
 * (and the proxy's map is the one that grows, at its own start). */
static int txn_begin(struct cache_store *s, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(s->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED && s->cli) {
        rc = mdb_env_set_mapsize(s->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(s->env, NULL, flags, txn);
    }
    return rc;
}

/* The names of the job counters in "info", by state. */
static const char *const job_counter[JOB_STATES] = {"jobs_pending", "jobs_captured", "jobs_lost"};

static int wtxn_begin(struct cache_store *s, struct wtxn *w)
{
    memset(w, 0, sizeof *w);
    w->s = s;
    int rc = txn_begin(s, 0, &w->txn);
    if (rc != 0)
        return rc;
    if ((rc = info_get_u64(w->txn, s->info, "bytes", &w->bytes)) != 0 ||
        (rc = info_get_u64(w->txn, s->info, "evictions", &w->evictions)) != 0 ||
        (rc = info_get_u64(w->txn, s->info, "dropped", &w->dropped)) != 0 ||
        (rc = info_get_u64(w->txn, s->info, "blob_bytes", &w->blob_bytes)) != 0) {
        mdb_txn_abort(w->txn);
        w->txn = NULL;
        return rc;
    }
    for (int i = 0; i < JOB_STATES && rc == 0; i++)
        rc = info_get_u64(w->txn, s->info, job_counter[i], &w->jobs[i]);
    if (rc != 0) {
        mdb_txn_abort(w->txn);
        w->txn = NULL;
    }
    return rc;
}

/* Writes the counters and commits; the txn is gone either way. */
static int wtxn_commit(struct wtxn *w)
{
    int rc = 0;
    if (w->counters_dirty) {
        if ((rc = info_put_u64(w->txn, w->s->info, "bytes", w->bytes)) != 0 ||
            (rc = info_put_u64(w->txn, w->s->info, "evictions", w->evictions)) != 0 ||
            (rc = info_put_u64(w->txn, w->s->info, "dropped", w->dropped)) != 0 ||
            (rc = info_put_u64(w->txn, w->s->info, "blob_bytes", w->blob_bytes)) != 0) {
            mdb_txn_abort(w->txn);
            w->txn = NULL;
            return rc;
        }
        for (int i = 0; i < JOB_STATES && rc == 0; i++)
            rc = info_put_u64(w->txn, w->s->info, job_counter[i], w->jobs[i]);
        if (rc != 0) {
            mdb_txn_abort(w->txn);
            w->txn = NULL;
            return rc;
        }
    }
    rc = mdb_txn_commit(w->txn);
    w->txn = NULL;
    return rc;
}

static void wtxn_abort(struct wtxn *w)
{
    mdb_txn_abort(w->txn);
    w->txn = NULL;
}

/* What an entry of a record_len-byte record counts in "bytes". */
static uint64_t entry_cost(const struct cache_store *s, uint64_t record_len)
{
    return cache_footprint_entry(s->page_size, (size_t)record_len);
}

uint64_t cache_store_entry_bytes(const struct cache_store *s, size_t record_len)
{
    return entry_cost(s, record_len);
}

/* Removes one entry whose meta is m (entries, meta, lru rows; bytes). */
static int remove_entry(struct wtxn *w, const unsigned char *key, const struct cache_meta *m,
                        int64_t lru_ms)
{
    unsigned char lk[LRU_KEY_BYTES];
    lru_key(lru_ms, key, lk);
    MDB_val k = val(key, CACHE_KEY_BYTES), l = val(lk, sizeof lk);
    int rc;
    if ((rc = del_quiet(w->txn, w->s->entries, &k)) != 0 ||
        (rc = del_quiet(w->txn, w->s->meta, &k)) != 0 ||
        (rc = del_quiet(w->txn, w->s->lru, &l)) != 0)
        return rc;
    uint64_t cost = entry_cost(w->s, m->size);
    w->bytes = w->bytes >= cost ? w->bytes - cost : 0;
    w->counters_dirty = true;
    return 0;
}

/* The meta of key, when present. Returns 0 (found), MDB_NOTFOUND, or an error. */
static int meta_lookup(struct wtxn *w, const unsigned char *key, struct cache_meta *m,
                       int64_t *lru_ms)
{
    MDB_val k = val(key, CACHE_KEY_BYTES), v;
    int rc = mdb_get(w->txn, w->s->meta, &k, &v);
    if (rc != 0)
        return rc;
    if (meta_decode(&v, m, lru_ms) != 0) {
        /* A meta we cannot read: treat the entry as gone (its lru row, if
         * any, is orphaned and will be skipped by eviction). */
        memset(m, 0, sizeof *m);
        *lru_ms = 0;
    }
    return 0;
}

static int apply_put(struct wtxn *w, const struct cache_op *op, const struct put_meta *pm)
{
    struct cache_meta m;
    int64_t lru_ms;
    int rc = meta_lookup(w, op->key, &m, &lru_ms);
    if (rc == 0)
        rc = remove_entry(w, op->key, &m, lru_ms);
    else if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc != 0)
        return rc;

    memset(&m, 0, sizeof m);
    m.hits = 0;
    m.last_hit_ms = 0; /* never hit; its lru position is the put's now_ms */
    m.stored_at_ms = pm->stored_at_ms;
    m.expires_at_ms = pm->expires_at_ms;
    m.size = op->record_len;
    memcpy(m.provider, pm->provider, sizeof m.provider);
    m.sample = pm->sample;
    memcpy(m.base_key, pm->base_key, sizeof m.base_key);

    unsigned char mb[META_BYTES], lk[LRU_KEY_BYTES];
    meta_encode(&m, op->now_ms, mb);
    lru_key(op->now_ms, op->key, lk);
    MDB_val k = val(op->key, CACHE_KEY_BYTES), rec = val(op->record, op->record_len);
    MDB_val mv = val(mb, sizeof mb), l = val(lk, sizeof lk), empty = val(NULL, 0);
    if ((rc = mdb_put(w->txn, w->s->entries, &k, &rec, 0)) != 0 ||
        (rc = mdb_put(w->txn, w->s->meta, &k, &mv, 0)) != 0 ||
        (rc = mdb_put(w->txn, w->s->lru, &l, &empty, 0)) != 0)
        return rc;
    w->bytes += entry_cost(w->s, op->record_len);
    w->counters_dirty = true;
    return 0;
}

static uint64_t sub_floor(uint64_t a, uint64_t b)
{
    return a >= b ? a - b : 0;
}

/* Stores job (valid): when absent only (create), or replacing what is there.
 * Keeps the state counters and bytes: the old record's state and size, if
 * it decodes, leave them; the new one's join. */
static int put_job(struct wtxn *w, const struct cache_job *job, bool create)
{
    unsigned char buf[JOB_MAX_BYTES];
    size_t len = job_encode(job, buf);
    MDB_val k = val(job->id, job_id_len(job)), v;
    bool had_old = false;
    struct cache_job old;
    int rc;
    if (!create) {
        rc = mdb_get(w->txn, w->s->jobs, &k, &v);
        if (rc == 0) {
            had_old = job_decode(&k, &v, &old) == 0;
        } else if (rc != MDB_NOTFOUND) {
            return rc;
        }
    }
    v = val(buf, len);
    rc = mdb_put(w->txn, w->s->jobs, &k, &v, create ? MDB_NOOVERWRITE : 0);
    if (rc == MDB_KEYEXIST && create)
        return 0; /* there already: left as it is */
    if (rc != 0)
        return rc;
    if (had_old)
        w->jobs[old.state] = sub_floor(w->jobs[old.state], 1);
    w->jobs[job->state]++;
    w->counters_dirty = true;
    return 0;
}

/* A PUT's jobs, after its entry; an invalid one is skipped. */
static int put_jobs(struct wtxn *w, const struct cache_op *op)
{
    for (size_t i = 0; op->jobs != NULL && i < op->job_count; i++) {
        if (!job_valid(&op->jobs[i]))
            continue;
        int rc = put_job(w, &op->jobs[i], true);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The blob (unless one with its hash exists), then the job. */
static int apply_capture(struct wtxn *w, const struct cache_op *op)
{
    const struct cache_job *job = &op->jobs[0];
    MDB_val k = val(job->blob, BLOB_KEY_BYTES), v = val(op->record, op->record_len);
    int rc = mdb_put(w->txn, w->s->blobs, &k, &v, MDB_NOOVERWRITE);
    if (rc == 0) {
        w->blob_bytes += op->record_len;
        w->counters_dirty = true;
    } else if (rc != MDB_KEYEXIST) {
        return rc;
    }
    return put_job(w, job, false);
}

/* The record (replaced, or deleted when NULL), then the open mark. Neither
 * is in "bytes". */
static int apply_task(struct wtxn *w, const struct cache_op *op)
{
    MDB_val k = val(op->key, CACHE_KEY_BYTES);
    int rc;
    if (op->record != NULL) {
        MDB_val v = val(op->record, op->record_len);
        rc = mdb_put(w->txn, w->s->tasks, &k, &v, 0);
    } else {
        rc = del_quiet(w->txn, w->s->tasks, &k);
    }
    if (rc != 0)
        return rc;
    if (op->open) {
        MDB_val empty = val(NULL, 0);
        return mdb_put(w->txn, w->s->task_open, &k, &empty, 0);
    }
    return del_quiet(w->txn, w->s->task_open, &k);
}

/* A usage row, replaced whole. */
static int apply_usage(struct wtxn *w, const struct cache_op *op)
{
    MDB_val k = val(op->name, op->name_len), v = val(op->record, op->record_len);
    return mdb_put(w->txn, w->s->usage, &k, &v, 0);
}

/* Deletes the usage rows whose key sorts before op->name. */
static int apply_usage_prune(struct wtxn *w, const struct cache_op *op)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->s->usage, &cur);
    if (rc != 0)
        return rc;
    MDB_val k, v, cut = val(op->name, op->name_len);
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && mdb_cmp(w->txn, w->s->usage, &k, &cut) < 0) {
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        /* After a cursor delete, MDB_NEXT yields the item that followed. */
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int apply_touch(struct wtxn *w, const struct cache_op *op)
{
    struct cache_meta m;
    int64_t lru_ms;
    int rc = meta_lookup(w, op->key, &m, &lru_ms);
    if (rc == MDB_NOTFOUND)
        return 0; /* absent: a no-op */
    if (rc != 0)
        return rc;
    /* A touch only moves the entry in the LRU: checksums are verified by
     * every read, and a reader that finds a corrupt record deletes it. */
    unsigned char lk[LRU_KEY_BYTES];
    lru_key(lru_ms, op->key, lk);
    MDB_val l = val(lk, sizeof lk);
    if ((rc = del_quiet(w->txn, w->s->lru, &l)) != 0)
        return rc;
    m.hits += op->hits > 0 ? op->hits : 1;
    m.last_hit_ms = op->now_ms;
    unsigned char mb[META_BYTES];
    meta_encode(&m, op->now_ms, mb);
    lru_key(op->now_ms, op->key, lk);
    MDB_val k = val(op->key, CACHE_KEY_BYTES), mv = val(mb, sizeof mb), empty = val(NULL, 0);
    if ((rc = mdb_put(w->txn, w->s->meta, &k, &mv, 0)) != 0 ||
        (rc = mdb_put(w->txn, w->s->lru, &l, &empty, 0)) != 0)
        return rc;
    return 0;
}

static int apply_delete(struct wtxn *w, const struct cache_op *op)
{
    struct cache_meta m;
    int64_t lru_ms;
    int rc = meta_lookup(w, op->key, &m, &lru_ms);
    if (rc == 0)
        return remove_entry(w, op->key, &m, lru_ms);
    if (rc != MDB_NOTFOUND)
        return rc;
    MDB_val k = val(op->key, CACHE_KEY_BYTES);
    return del_quiet(w->txn, w->s->entries, &k); /* a record without meta, if any */
}

/* Evicts least recently used first while bytes > target_bytes, or fewer than
 * min_count entries or min_free bytes have been evicted; stops when "lru" is
 * empty. */
static int evict(struct wtxn *w, uint64_t target_bytes, size_t min_count, uint64_t min_free)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->s->lru, &cur);
    if (rc != 0)
        return rc;
    size_t count = 0;
    uint64_t freed = 0;
    while (w->bytes > target_bytes || count < min_count || freed < min_free) {
        MDB_val k, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        unsigned char key[CACHE_KEY_BYTES];
        if (k.mv_size != LRU_KEY_BYTES) {
            rc = mdb_cursor_del(cur, 0); /* not ours: drop the row */
            if (rc != 0)
                break;
            continue;
        }
        memcpy(key, (const unsigned char *)k.mv_data + 8, CACHE_KEY_BYTES);
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        struct cache_meta m;
        int64_t lru_ms;
        rc = meta_lookup(w, key, &m, &lru_ms);
        if (rc == MDB_NOTFOUND) {
            rc = 0; /* an orphaned row */
            continue;
        }
        if (rc != 0 || (rc = remove_entry(w, key, &m, lru_ms)) != 0)
            break;
        count++;
        freed += entry_cost(w->s, m.size);
        w->evicted++;
        w->evictions++;
        w->counters_dirty = true;
    }
    mdb_cursor_close(cur);
    return rc;
}

static uint64_t percent_of(uint64_t n, unsigned pct)
{
    return n / 100 * pct + n % 100 * pct / 100;
}

/* No room for the txn: the map is full, or the filesystem under it is. LMDB
 * writes the new pages of a commit past the file's end, which fails with
 * ENOSPC or EDQUOT on a full disk (pages freed inside the file can still be
 * reused), or with EIO when the write stopped short as the disk filled up:
 * an EIO counts as no room only when the filesystem has (almost) no free
 * space left, else it stays a store error. Both get the same remedy: evict,
 * then retry. */
static bool no_room(struct cache_store *s, int rc)
{
    if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT)
        return true;
    if (rc != EIO)
        return false;
    mdb_filehandle_t fd;
    struct statvfs fs;
    return mdb_env_get_fd(s->env, &fd) == 0 && fstatvfs(fd, &fs) == 0 &&
           (uint64_t)fs.f_bavail * fs.f_frsize < STORE_FULL_DISK_BYTES;
}

/* The disk reserve: free space the store keeps on its filesystem, so that an
 * eviction can always commit. A txn needs fresh pages (copy on write), and
 * pages an eviction frees are reused only two txns later, so a store whose
 * file filled the disk could no longer commit anything, not even the
 * eviction that would make room; max_bytes does not prevent it when the
 * disk is smaller than the bound, or shared. An eighth of the filesystem,
 * between STORE_DISK_RESERVE_MIN and STORE_DISK_RESERVE_MAX. */
static uint64_t disk_reserve(const struct statvfs *fs)
{
    uint64_t size = (uint64_t)fs->f_blocks * fs->f_frsize;
    uint64_t reserve = size / 8;
    if (reserve < STORE_DISK_RESERVE_MIN)
        reserve = STORE_DISK_RESERVE_MIN;
    return reserve < STORE_DISK_RESERVE_MAX ? reserve : STORE_DISK_RESERVE_MAX;
}

/* Bytes of the pages LMDB's freelist holds (reusable without growing the
 * file) at the last commit, as mdb_stat -f reads them: each record of the
 * free DBI (0) is a page list whose first word is its length. A read txn of
 * its own: a write txn takes freelist records out of the DBI as it reuses
 * them. 0 on an error. */
static uint64_t freelist_bytes(struct cache_store *s)
{
    MDB_stat st;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_env_stat(s->env, &st) != 0 || txn_begin(s, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, 0, &cur) != 0) {
        mdb_txn_abort(txn);
        return 0;
    }
    uint64_t pages = 0;
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        size_t n;
        if (v.mv_size >= sizeof n) {
            memcpy(&n, v.mv_data, sizeof n);
            pages += n;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return pages * st.ms_psize;
}

/* The bytes a batch of ops should evict to keep the disk reserve: 0 while
 * the filesystem's free space and the file's free pages together exceed the
 * reserve plus what the ops will take (their records, times
 * STORE_DISK_WRITE_FACTOR for the pages copied on write and those freed too
 * recently to be reused), else what is missing (so the file stops growing
 * before the disk is full). 0 when the filesystem cannot be read. */
static uint64_t disk_shortfall(struct cache_store *s, const struct cache_op *ops, size_t count)
{
    mdb_filehandle_t fd;
    struct statvfs fs;
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &fs) != 0 || fs.f_blocks == 0)
        return 0;
    uint64_t written = 0;
    for (size_t i = 0; i < count; i++)
        written += ops[i].record != NULL
                       ? cache_footprint_item(s->page_size, CACHE_KEY_BYTES, ops[i].record_len)
                       : 0;
    uint64_t room = (uint64_t)fs.f_bavail * fs.f_frsize;
    uint64_t need = disk_reserve(&fs) + STORE_DISK_WRITE_FACTOR * written;
    if (room >= need || (room += freelist_bytes(s)) >= need)
        return 0;
    return need - room;
}

/* The ballast: a file of STORE_BALLAST_BYTES next to the store's, made at
 * open (not by the CLI). When the disk is so full that not even an eviction
 * can commit (every txn needs fresh pages, and the pages the last commit
 * freed are not reusable yet), it is removed, so the evictions that make
 * room can commit; it is made again once the disk has room for it twice. */
static void ballast_make(struct cache_store *s)
{
    struct statvfs fs;
    if (s->ballast_path == NULL || s->ballast_held || statvfs(s->ballast_path, &fs) != 0 ||
        (uint64_t)fs.f_bavail * fs.f_frsize < 2 * STORE_BALLAST_BYTES)
        return;
    int fd = open(s->ballast_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    s->ballast_held = posix_fallocate(fd, 0, (off_t)STORE_BALLAST_BYTES) == 0;
    close(fd);
    if (!s->ballast_held)
        unlink(s->ballast_path);
}

/* Frees the ballast's room; true when there was one. */
static bool ballast_release(struct cache_store *s)
{
    if (s->ballast_path == NULL || !s->ballast_held)
        return false;
    s->ballast_held = false;
    return unlink(s->ballast_path) == 0;
}

/* One write txn: ops in order, then the watermark eviction (and at least
 * shortfall bytes of entries, disk_shortfall), then commit. extra_dropped
 * is added to info "dropped" in the same txn. Returns 0 (and
 * adds to res), MDB_MAP_FULL, or another LMDB error; nothing is applied
 * unless it returns 0. */
static int run_txn(struct cache_store *s, const struct cache_op *ops, const struct put_meta *pms,
                   size_t count, uint64_t extra_dropped, uint64_t shortfall,
                   struct cache_apply_result *res)
{
    struct wtxn w;
    int rc = wtxn_begin(s, &w);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < count; i++) {
        const struct cache_op *op = &ops[i];
        switch (op->kind) {
        case CACHE_OP_PUT:
            if (!pms[i].valid)
                continue; /* refused: not applied, not dropped (the caller counts it failed) */
            rc = apply_put(&w, op, &pms[i]);
            if (rc == 0)
                rc = put_jobs(&w, op);
            break;
        case CACHE_OP_TOUCH:
            rc = apply_touch(&w, op);
            break;
        case CACHE_OP_DELETE:
            rc = apply_delete(&w, op);
            break;
        case CACHE_OP_JOB:
        case CACHE_OP_NEW_JOB:
            if (!pms[i].valid)
                continue;
            rc = put_job(&w, &op->jobs[0], op->kind == CACHE_OP_JOB ? false : true);
            break;
        case CACHE_OP_CAPTURE:
            if (!pms[i].valid)
                continue;
            rc = apply_capture(&w, op);
            break;
        case CACHE_OP_TASK:
            rc = apply_task(&w, op);
            break;
        case CACHE_OP_USAGE:
        case CACHE_OP_USAGE_PRUNE:
            if (!pms[i].valid)
                continue;
            rc = op->kind == CACHE_OP_USAGE ? apply_usage(&w, op) : apply_usage_prune(&w, op);
            break;
        default:
            continue; /* an unknown kind is not applied */
        }
        if (rc != 0) {
            wtxn_abort(&w);
            return rc;
        }
        w.applied++;
    }
    if ((s->max_bytes > 0 && w.bytes > percent_of(s->max_bytes, STORE_HIGH_PERCENT)) ||
        shortfall > 0) {
        uint64_t target = s->max_bytes > 0 && w.bytes > percent_of(s->max_bytes, STORE_HIGH_PERCENT)
                              ? percent_of(s->max_bytes, STORE_LOW_PERCENT)
                              : UINT64_MAX;
        rc = evict(&w, target, 0, shortfall);
        if (rc != 0) {
            wtxn_abort(&w);
            return rc;
        }
    }
    if (extra_dropped > 0) {
        w.dropped += extra_dropped;
        w.counters_dirty = true;
    }
    size_t applied = w.applied, evicted = w.evicted;
    rc = wtxn_commit(&w);
    if (rc != 0)
        return rc;
    res->applied += applied;
    res->evicted += evicted;
    return 0;
}

/* One eviction txn (see evict_batch). */
static int evict_txn(struct cache_store *s, size_t min_count, uint64_t min_free,
                     struct cache_apply_result *res)
{
    struct wtxn w;
    int rc = wtxn_begin(s, &w);
    if (rc != 0)
        return rc;
    if ((rc = evict(&w, UINT64_MAX, min_count, min_free)) != 0) {
        wtxn_abort(&w);
        return rc;
    }
    size_t evicted = w.evicted;
    rc = wtxn_commit(&w);
    if (rc == 0)
        res->evicted += evicted;
    return rc;
}

/* A small txn that commits for sure when anything can: it counts a MAP_FULL
 * event in info "map_full". Its only purpose is to be a commit (below). */
static int advance_txn(struct cache_store *s)
{
    MDB_txn *txn;
    uint64_t n;
    int rc = txn_begin(s, 0, &txn);
    if (rc != 0)
        return rc;
    if ((rc = info_get_u64(txn, s->info, "map_full", &n)) != 0 ||
        (rc = info_put_u64(txn, s->info, "map_full", n + 1)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* The MAP_FULL remedy. LMDB reuses a freed page only from the second txn
 * after the one that freed it (the previous snapshot stays intact for crash
 * safety), and a delete needs fresh pages too (copy on write). So: evict a
 * tenth of the entries and at least twice the largest pending record's bytes
 * in one txn; if that does not fit, commit a tiny txn (which makes the pages
 * of the txn before it reusable) and try again, the last time evicting a
 * single entry; then commit one tiny txn more, so that the retry after it
 * can use the pages the eviction freed. Returns 0, or an error other than
 * MDB_MAP_FULL.
 * Limit: records much smaller than a page (job records, small task records)
 * can fill the map to its very last free page; then not even an eviction
 * can commit, and every op is dropped or lost until the map grows (a larger
 * max_bytes at the next start). On a full disk, the ballast's room is given
 * up first (cache_store_apply), which lets the eviction commit. Answers and larger records, which
 * need overflow pages, meet MAP_FULL while a few single pages are still free. */
static int evict_batch(struct cache_store *s, uint64_t largest, struct cache_apply_result *res)
{
    MDB_txn *txn;
    MDB_stat st;
    int rc = txn_begin(s, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_stat(txn, s->entries, &st);
    mdb_txn_abort(txn);
    if (rc != 0)
        return rc;
    size_t min_count = st.ms_entries * STORE_EVICT_PERCENT / 100;
    if (min_count == 0)
        min_count = 1;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt > 0 && (rc = advance_txn(s)) != 0 && !no_room(s, rc))
            return rc;
        if (attempt == 2) {
            min_count = 1;
            largest = 0;
        }
        rc = evict_txn(s, min_count, 2 * largest, res);
        if (!no_room(s, rc))
            break;
    }
    if (rc != 0 && !no_room(s, rc))
        return rc;
    rc = advance_txn(s);
    return no_room(s, rc) ? 0 : rc;
}

/* Room for one record of len bytes that did not fit: evicts entries worth
 * twice its size (at least one), then commits two tiny txns so that the
 * pages freed are reusable (see evict_batch). True when an entry was
 * evicted. */
static bool make_room(struct cache_store *s, size_t len, struct cache_apply_result *res)
{
    size_t before = res->evicted;
    if (evict_txn(s, 1, 2 * (uint64_t)len, res) != 0)
        return false;
    for (int i = 0; i < 2; i++)
        if (advance_txn(s) != 0)
            break;
    return res->evicted > before;
}

int cache_store_apply(struct cache_store *s, const struct cache_op *ops, size_t count,
                      struct cache_apply_result *result)
{
    struct cache_apply_result res = {0, 0, 0};
    struct put_meta *pms = calloc(count ? count : 1, sizeof *pms);
    if (pms == NULL)
        return -1;
    uint64_t largest = 0;
    for (size_t i = 0; i < count; i++) {
        if (ops[i].kind == CACHE_OP_USAGE || ops[i].kind == CACHE_OP_USAGE_PRUNE) {
            pms[i].valid = ops[i].name != NULL && ops[i].name_len >= 1 &&
                           ops[i].name_len <= CACHE_USAGE_KEY_MAX &&
                           (ops[i].kind == CACHE_OP_USAGE_PRUNE || ops[i].record != NULL);
            continue;
        }
        if (ops[i].kind == CACHE_OP_TASK) {
            pms[i].valid = true;
            if (ops[i].record != NULL && ops[i].record_len > largest)
                largest = ops[i].record_len;
            continue;
        }
        if (ops[i].kind == CACHE_OP_JOB || ops[i].kind == CACHE_OP_NEW_JOB ||
            ops[i].kind == CACHE_OP_CAPTURE) {
            pms[i].valid = ops[i].jobs != NULL && ops[i].job_count >= 1 &&
                           job_valid(&ops[i].jobs[0]) &&
                           (ops[i].kind != CACHE_OP_CAPTURE || ops[i].record != NULL);
            if (pms[i].valid && ops[i].kind == CACHE_OP_CAPTURE && ops[i].record_len > largest)
                largest = ops[i].record_len;
            continue;
        }
        if (ops[i].kind != CACHE_OP_PUT || ops[i].record == NULL)
            continue;
        struct cache_entry e;
        memset(&e, 0, sizeof e);
        if (cache_entry_decode(ops[i].record, ops[i].record_len, &e) == 0) {
            pms[i].valid = true;
            pms[i].stored_at_ms = e.stored_at_ms;
            pms[i].expires_at_ms = e.expires_at_ms;
            snprintf(pms[i].provider, sizeof pms[i].provider, "%s",
                     e.provider != NULL ? e.provider : "");
            pms[i].sample = e.sample;
            memcpy(pms[i].base_key, e.base_key, sizeof pms[i].base_key);
            if (ops[i].record_len > largest)
                largest = ops[i].record_len;
        }
        cache_entry_free(&e);
    }

    uint64_t shortfall = disk_shortfall(s, ops, count);
    int rc = run_txn(s, ops, pms, count, 0, shortfall, &res);
    if (no_room(s, rc)) {
        if (rc != MDB_MAP_FULL)
            ballast_release(s);
        rc = evict_batch(s, largest, &res);
        if (rc == 0)
            rc = run_txn(s, ops, pms, count, 0, shortfall, &res);
    }
    if (no_room(s, rc)) {
        /* Still full: op by op, each in its own txn; a put, capture or
         * task op that does not fit is dropped, and counted in the next txn
         * that commits. */
        uint64_t unrecorded = 0;
        rc = 0;
        for (size_t i = 0; i < count && rc == 0; i++) {
            rc = run_txn(s, &ops[i], &pms[i], 1, unrecorded, 0, &res);
            if (no_room(s, rc) && ops[i].record != NULL && make_room(s, ops[i].record_len, &res))
                rc = run_txn(s, &ops[i], &pms[i], 1, unrecorded, 0, &res);
            if (rc == 0) {
                unrecorded = 0;
            } else if (no_room(s, rc)) {
                rc = 0;
                if ((ops[i].kind == CACHE_OP_PUT || ops[i].kind == CACHE_OP_CAPTURE ||
                     ops[i].kind == CACHE_OP_TASK || ops[i].kind == CACHE_OP_USAGE) &&
                    pms[i].valid) {
                    res.dropped++;
                    unrecorded++;
                }
                /* A touch, delete, job or usage prune that does not fit is lost: the
                 * caller sees it as neither applied nor dropped. */
            }
        }
        if (rc == 0 && unrecorded > 0)
            (void)run_txn(s, NULL, NULL, 0, unrecorded, 0, &res); /* best effort */
    }
    free(pms);
    ballast_make(s);
    if (result != NULL)
        *result = res;
    /* Ambiguity: when the op-by-op path meets another error, the ops before
     * it are already committed; -1 is returned all the same and result says
     * how many were. */
    return rc == 0 ? 0 : -1;
}

static void set_err(char *err, size_t err_size, const char *fmt, const char *dir, const char *what)
{
    if (err != NULL && err_size > 0)
        snprintf(err, err_size, fmt, dir, what);
}

static size_t round_up(size_t n, size_t unit)
{
    return (n + unit - 1) / unit * unit;
}

/* info "bytes" of a file counted by an older rule (the records' lengths,
 * before "bytes_rule" existed) is recounted once, in the first txn: every
 * meta's record length as cache_footprint_entry counts it. One pass over
 * "meta" (100 bytes a row), at the first open by this version only. */
#define STORE_BYTES_RULE 1

static int recount_bytes(struct cache_store *s, MDB_txn *txn)
{
    uint64_t rule;
    int rc = info_get_u64(txn, s->info, "bytes_rule", &rule);
    if (rc != 0 || rule == STORE_BYTES_RULE)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, s->meta, &cur)) != 0)
        return rc;
    uint64_t bytes = 0;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        struct cache_meta m;
        if (k.mv_size == CACHE_KEY_BYTES && meta_decode(&v, &m, NULL) == 0)
            bytes += entry_cost(s, m.size);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = info_put_u64(txn, s->info, "bytes", bytes)) != 0)
        return rc;
    return info_put_u64(txn, s->info, "bytes_rule", STORE_BYTES_RULE);
}

/* The first txn: every DBI opened once, the format record checked (or
 * written), the configured bound recorded. */
static int first_txn(struct cache_store *s, const char *dir, char *err, size_t err_size)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        set_err(err, err_size, "cache store '%s': cannot begin a txn: %s", dir, mdb_strerror(rc));
        return -1;
    }
    if ((rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &s->entries)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0 ||
        (rc = mdb_dbi_open(txn, "lru", MDB_CREATE, &s->lru)) != 0 ||
        (rc = mdb_dbi_open(txn, "info", MDB_CREATE, &s->info)) != 0 ||
        (rc = mdb_dbi_open(txn, "jobs", MDB_CREATE, &s->jobs)) != 0 ||
        (rc = mdb_dbi_open(txn, "blobs", MDB_CREATE, &s->blobs)) != 0 ||
        (rc = mdb_dbi_open(txn, "tasks", MDB_CREATE, &s->tasks)) != 0 ||
        (rc = mdb_dbi_open(txn, "task_open", MDB_CREATE, &s->task_open)) != 0 ||
        (rc = mdb_dbi_open(txn, "usage", MDB_CREATE, &s->usage)) != 0) {
        set_err(err, err_size, "cache store '%s': cannot open its databases: %s", dir,
                mdb_strerror(rc));
        goto fail;
    }
    MDB_val k = val("format", strlen("format")), v;
    rc = mdb_get(txn, s->info, &k, &v);
    if (rc == 0) {
        if (v.mv_size != strlen(STORE_FORMAT) || memcmp(v.mv_data, STORE_FORMAT, v.mv_size) != 0) {
            char found[128];
            size_t n = v.mv_size < sizeof found - 1 ? v.mv_size : sizeof found - 1;
            memcpy(found, v.mv_data, n);
            found[n] = '\0';
            if (err != NULL && err_size > 0)
                snprintf(err, err_size,
                         "cache store '%s' has format '%s', this program reads '%s'; "
                         "refusing to open it (nothing was changed)",
                         dir, found, STORE_FORMAT);
            goto fail;
        }
    } else if (rc == MDB_NOTFOUND) {
        MDB_stat st;
        if ((rc = mdb_stat(txn, s->entries, &st)) != 0) {
            set_err(err, err_size, "cache store '%s': %s", dir, mdb_strerror(rc));
            goto fail;
        }
        if (st.ms_entries > 0) {
            if (err != NULL && err_size > 0)
                snprintf(err, err_size,
                         "cache store '%s' holds entries but no format record; refusing to open "
                         "it (nothing was changed)",
                         dir);
            goto fail;
        }
        v = val(STORE_FORMAT, strlen(STORE_FORMAT));
        if ((rc = mdb_put(txn, s->info, &k, &v, 0)) != 0) {
            set_err(err, err_size, "cache store '%s': cannot write its format record: %s", dir,
                    mdb_strerror(rc));
            goto fail;
        }
    } else {
        set_err(err, err_size, "cache store '%s': cannot read its format record: %s", dir,
                mdb_strerror(rc));
        goto fail;
    }

    uint64_t recorded;
    if ((rc = info_get_u64(txn, s->info, "max_bytes", &recorded)) != 0) {
        set_err(err, err_size, "cache store '%s': %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if (s->cli) {
        s->max_bytes = recorded;
    } else if (recorded != s->max_bytes &&
               (rc = info_put_u64(txn, s->info, "max_bytes", s->max_bytes)) != 0) {
        set_err(err, err_size, "cache store '%s': cannot record max_bytes: %s", dir,
                mdb_strerror(rc));
        goto fail;
    }
    if ((rc = recount_bytes(s, txn)) != 0) {
        set_err(err, err_size, "cache store '%s': cannot count its bytes: %s", dir,
                mdb_strerror(rc));
        goto fail;
    }
    /* A commit with nothing written writes nothing; otherwise it also
     * records the map size chosen at open in the file. */
    if ((rc = mdb_txn_commit(txn)) != 0) {
        set_err(err, err_size, "cache store '%s': cannot commit its first txn: %s", dir,
                mdb_strerror(rc));
        return -1;
    }
    return 0;
fail:
    mdb_txn_abort(txn);
    return -1;
}

struct cache_store *cache_store_open(const struct cache_store_options *opts, char *err,
                                     size_t err_size)
{
    if (cache_dir_prepare(opts->dir, err, err_size) != 0)
        return NULL;
    struct cache_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(err, err_size, "cache store '%s': %s", opts->dir, strerror(ENOMEM));
        return NULL;
    }
    s->cli = opts->max_bytes == 0;
    s->max_bytes = opts->max_bytes;

    int rc = mdb_env_create(&s->env);
    if (rc != 0) {
        set_err(err, err_size, "cache store '%s': %s", opts->dir, mdb_strerror(rc));
        free(s);
        return NULL;
    }
    if ((rc = mdb_env_set_maxdbs(s->env, STORE_MAX_DBS)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) != 0) {
        set_err(err, err_size, "cache store '%s': %s", opts->dir, mdb_strerror(rc));
        goto fail;
    }
    /* No map size before open: LMDB then adopts the one the file records
     * (or its 1 MiB default for a new file), which is all the CLI wants. */
    if ((rc = mdb_env_open(s->env, opts->dir, MDB_NOTLS, 0600)) != 0) {
        set_err(err, err_size, "cannot open cache store '%s': %s", opts->dir, mdb_strerror(rc));
        goto fail;
    }
    MDB_stat env_stat;
    s->page_size = mdb_env_stat(s->env, &env_stat) == 0 ? env_stat.ms_psize : 0;
    int dead = 0;
    if ((rc = mdb_reader_check(s->env, &dead)) != 0) {
        set_err(err, err_size, "cache store '%s': reader check failed: %s", opts->dir,
                mdb_strerror(rc));
        goto fail;
    }
    if (opts->max_bytes > 0) {
        /* max(2 x bound, bound + 64 MiB) of address space, page rounded;
         * but never below what the file records (another process may have
         * mapped it larger: never shrink a live file). Set after open, with
         * no txn in this process yet, as mdb_env_set_mapsize allows. */
        size_t max = opts->max_bytes;
        size_t want = max > SIZE_MAX / 2 ? SIZE_MAX / 2 : 2 * max;
        if (max <= SIZE_MAX - STORE_HEADROOM && max + STORE_HEADROOM > want)
            want = max + STORE_HEADROOM;
        long page = sysconf(_SC_PAGESIZE);
        want = round_up(want, page > 0 ? (size_t)page : 4096);
        MDB_envinfo info;
        if ((rc = mdb_env_info(s->env, &info)) != 0) {
            set_err(err, err_size, "cache store '%s': %s", opts->dir, mdb_strerror(rc));
            goto fail;
        }
        if (want > info.me_mapsize && (rc = mdb_env_set_mapsize(s->env, want)) != 0) {
            set_err(err, err_size, "cache store '%s': cannot set the map size: %s", opts->dir,
                    mdb_strerror(rc));
            goto fail;
        }
    }
    if (first_txn(s, opts->dir, err, err_size) != 0)
        goto fail;
    if (!s->cli && asprintf(&s->ballast_path, "%s/ballast", opts->dir) < 0)
        s->ballast_path = NULL;
    ballast_make(s);
    return s;
fail:
    mdb_env_close(s->env);
    free(s);
    return NULL;
}

void cache_store_close(struct cache_store *s)
{
    if (s == NULL)
        return;
    mdb_env_close(s->env);
    free(s->ballast_path);
    free(s);
}

enum cache_get_result cache_store_get(struct cache_store *s, const unsigned char *key,
                                      struct cache_entry *entry, struct cache_meta *meta)
{
    memset(entry, 0, sizeof *entry);
    MDB_txn *txn;
    if (txn_begin(s, MDB_RDONLY, &txn) != 0)
        return CACHE_GET_ERROR;
    enum cache_get_result result;
    MDB_val k = val(key, CACHE_KEY_BYTES), v;
    int rc = mdb_get(txn, s->entries, &k, &v);
    if (rc == MDB_NOTFOUND) {
        result = CACHE_GET_ABSENT;
    } else if (rc != 0) {
        result = CACHE_GET_ERROR;
    } else if (cache_entry_decode(v.mv_data, v.mv_size, entry) != 0) {
        memset(entry, 0, sizeof *entry);
        result = CACHE_GET_CORRUPT;
    } else {
        size_t record_len = v.mv_size;
        result = CACHE_GET_FOUND;
        if (meta != NULL) {
            memset(meta, 0, sizeof *meta);
            if (mdb_get(txn, s->meta, &k, &v) != 0 || meta_decode(&v, meta, NULL) != 0) {
                /* No readable meta: what the record itself says. */
                memset(meta, 0, sizeof *meta);
                meta->stored_at_ms = entry->stored_at_ms;
                meta->expires_at_ms = entry->expires_at_ms;
                meta->size = record_len;
                snprintf(meta->provider, sizeof meta->provider, "%s",
                         entry->provider != NULL ? entry->provider : "");
            }
            /* The record is the truth about its sample (a meta written by an
             * older version has none). */
            meta->sample = entry->sample;
            memcpy(meta->base_key, entry->base_key, sizeof meta->base_key);
        }
    }
    mdb_txn_abort(txn);
    return result;
}

static bool purge_matches(const struct cache_meta *m, const char *provider,
                          int64_t stored_before_ms)
{
    if (provider != NULL && strcmp(m->provider, provider) != 0)
        return false;
    return stored_before_ms == 0 || m->stored_at_ms < stored_before_ms;
}

/* Purges in txns of at most STORE_PURGE_CHUNK deletes, so a large purge by
 * the CLI never holds LMDB's write lock (and so the proxy's writer) for long. */
int64_t cache_store_purge(struct cache_store *s, const char *provider, int64_t stored_before_ms)
{
    int64_t total = 0;
    unsigned char resume[CACHE_KEY_BYTES];
    bool has_resume = false;
    for (;;) {
        struct wtxn w;
        if (wtxn_begin(s, &w) != 0)
            return -1;
        MDB_cursor *cur;
        if (mdb_cursor_open(w.txn, s->meta, &cur) != 0) {
            wtxn_abort(&w);
            return -1;
        }
        MDB_val k, v;
        int rc;
        if (has_resume) {
            k = val(resume, CACHE_KEY_BYTES);
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        } else {
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        }
        size_t removed = 0;
        bool done = false;
        while (rc == 0) {
            if (removed == STORE_PURGE_CHUNK) {
                if (k.mv_size == CACHE_KEY_BYTES) {
                    memcpy(resume, k.mv_data, CACHE_KEY_BYTES);
                    has_resume = true;
                }
                break;
            }
            struct cache_meta m;
            int64_t lru_ms;
            if (k.mv_size == CACHE_KEY_BYTES && meta_decode(&v, &m, &lru_ms) == 0 &&
                purge_matches(&m, provider, stored_before_ms)) {
                unsigned char key[CACHE_KEY_BYTES], lk[LRU_KEY_BYTES];
                memcpy(key, k.mv_data, CACHE_KEY_BYTES);
                lru_key(lru_ms, key, lk);
                MDB_val ek = val(key, CACHE_KEY_BYTES), l = val(lk, sizeof lk);
                if ((rc = mdb_cursor_del(cur, 0)) != 0 ||
                    (rc = del_quiet(w.txn, s->entries, &ek)) != 0 ||
                    (rc = del_quiet(w.txn, s->lru, &l)) != 0)
                    break;
                uint64_t cost = entry_cost(s, m.size);
                w.bytes = w.bytes >= cost ? w.bytes - cost : 0;
                w.counters_dirty = true;
                removed++;
            }
            /* After a cursor delete, MDB_NEXT yields the item that followed. */
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            done = true;
        }
        mdb_cursor_close(cur);
        if (rc != 0) {
            wtxn_abort(&w);
            return -1;
        }
        if (removed == 0) {
            wtxn_abort(&w);
        } else if (wtxn_commit(&w) != 0) {
            return -1;
        }
        total += (int64_t)removed;
        if (done)
            return total;
    }
}

int cache_store_stats(struct cache_store *s, struct cache_store_stats *out)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    if (txn_begin(s, MDB_RDONLY, &txn) != 0)
        return -1;
    MDB_stat st, tasks, task_open;
    MDB_envinfo info;
    uint64_t recorded_max;
    int rc;
    if ((rc = mdb_stat(txn, s->entries, &st)) != 0 || (rc = mdb_stat(txn, s->tasks, &tasks)) != 0 ||
        (rc = mdb_stat(txn, s->task_open, &task_open)) != 0 ||
        (rc = info_get_u64(txn, s->info, "bytes", &out->bytes)) != 0 ||
        (rc = info_get_u64(txn, s->info, "evictions", &out->evictions)) != 0 ||
        (rc = info_get_u64(txn, s->info, "dropped", &out->dropped)) != 0 ||
        (rc = info_get_u64(txn, s->info, "jobs_pending", &out->jobs_pending)) != 0 ||
        (rc = info_get_u64(txn, s->info, "jobs_captured", &out->jobs_captured)) != 0 ||
        (rc = info_get_u64(txn, s->info, "jobs_lost", &out->jobs_lost)) != 0 ||
        (rc = info_get_u64(txn, s->info, "blob_bytes", &out->blob_bytes)) != 0 ||
        (rc = info_get_u64(txn, s->info, "max_bytes", &recorded_max)) != 0 ||
        (rc = info_get_u64(txn, s->info, "tasks_pruned", &out->tasks_pruned)) != 0 ||
        (rc = mdb_env_info(s->env, &info)) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    mdb_txn_abort(txn);
    out->entries = st.ms_entries;
    out->tasks = tasks.ms_entries;
    out->tasks_open = task_open.ms_entries;
    out->max_bytes = s->cli ? recorded_max : s->max_bytes;
    out->map_bytes = info.me_mapsize;
    out->file_bytes =
        sub_floor((uint64_t)(info.me_last_pgno + 1) * s->page_size, freelist_bytes(s));
    return 0;
}

/* --- task retention ------------------------------------------------------------- */

/* The keys a prune txn deletes, gathered while its cursor walks "tasks" and
 * deleted once the cursor is closed. */
struct prune_batch {
    unsigned char (*keys)[CACHE_KEY_BYTES];
    size_t count;
    size_t cap;
    uint64_t records; /* task records among them (not linked keys) */
};

static int prune_add(struct prune_batch *b, const unsigned char *key)
{
    if (b->count == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        void *keys = realloc(b->keys, cap * CACHE_KEY_BYTES);
        if (keys == NULL)
            return ENOMEM;
        b->keys = keys;
        b->cap = cap;
    }
    memcpy(b->keys[b->count++], key, CACHE_KEY_BYTES);
    return 0;
}

/* Walks up to batch records from the resume point, judging those not open. */
static int prune_walk(struct wtxn *w, cache_task_judge judge, const void *arg, size_t batch,
                      unsigned char *resume, bool *resumed, struct prune_batch *b)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->s->tasks, &cur);
    if (rc != 0)
        return rc;
    MDB_val k = val(resume, CACHE_KEY_BYTES), v;
    rc = mdb_cursor_get(cur, &k, &v, *resumed ? MDB_SET_RANGE : MDB_FIRST);
    for (size_t seen = 0; rc == 0; seen++) {
        if (seen == batch) {
            memcpy(resume, k.mv_data, CACHE_KEY_BYTES);
            break;
        }
        MDB_val open;
        unsigned char linked[CACHE_TASK_PRUNE_LINKED][CACHE_KEY_BYTES];
        size_t linked_count = 0;
        if (k.mv_size == CACHE_KEY_BYTES &&
            mdb_get(w->txn, w->s->task_open, &k, &open) == MDB_NOTFOUND &&
            judge(k.mv_data, v.mv_data, v.mv_size, arg, linked, &linked_count)) {
            if ((rc = prune_add(b, k.mv_data)) != 0)
                break;
            b->records++;
            for (size_t i = 0; i < linked_count && i < CACHE_TASK_PRUNE_LINKED && rc == 0; i++)
                rc = prune_add(b, linked[i]);
            if (rc != 0)
                break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        *resumed = false;
        return 0;
    }
    if (rc == 0)
        *resumed = true;
    return rc;
}

int cache_store_prune_tasks(struct cache_store *s, cache_task_judge judge, const void *arg,
                            size_t batch, unsigned char *resume, bool *resumed, uint64_t *pruned)
{
    if (pruned != NULL)
        *pruned = 0;
    struct wtxn w;
    if (wtxn_begin(s, &w) != 0)
        return -1;
    struct prune_batch b = {NULL, 0, 0, 0};
    bool next = *resumed;
    unsigned char from[CACHE_KEY_BYTES];
    memcpy(from, resume, CACHE_KEY_BYTES);
    int rc = prune_walk(&w, judge, arg, batch > 0 ? batch : 1, from, &next, &b);
    for (size_t i = 0; i < b.count && rc == 0; i++) {
        MDB_val k = val(b.keys[i], CACHE_KEY_BYTES);
        if ((rc = del_quiet(w.txn, s->tasks, &k)) == 0)
            rc = del_quiet(w.txn, s->task_open, &k);
    }
    uint64_t total = 0;
    if (rc == 0 && b.records > 0 &&
        (rc = info_get_u64(w.txn, s->info, "tasks_pruned", &total)) == 0)
        rc = info_put_u64(w.txn, s->info, "tasks_pruned", total + b.records);
    free(b.keys);
    if (rc != 0) {
        wtxn_abort(&w);
        return -1;
    }
    if (b.records == 0)
        wtxn_abort(&w); /* nothing to write: no commit (no fsync) */
    else if (wtxn_commit(&w) != 0)
        return -1;
    memcpy(resume, from, CACHE_KEY_BYTES);
    *resumed = next;
    if (pruned != NULL)
        *pruned = b.records;
    return 0;
}

/* --- read-only scans ------------------------------------------------------------ */

/* What a scan's row callback tells scan() to do next. */
enum scan_step { SCAN_NEXT, SCAN_STOP, SCAN_ERROR };

typedef enum scan_step (*scan_row_cb)(MDB_txn *txn, const MDB_val *k, const MDB_val *v, void *ctx);

/* The skeleton of every read-only scan: one read txn, a cursor over dbi from
 * its first row (or, with from_len > 0, the first row at or after from), each
 * row lent to row (which may look up other databases in txn) until the end,
 * SCAN_STOP or SCAN_ERROR. Returns 0 at the end or on a stop, -1 on an error. */
static int scan(struct cache_store *s, MDB_dbi dbi, const void *from, size_t from_len,
                scan_row_cb row, void *ctx)
{
    MDB_txn *txn;
    if (txn_begin(s, MDB_RDONLY, &txn) != 0)
        return -1;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, dbi, &cur) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    MDB_val k = val(from, from_len), v;
    int rc = mdb_cursor_get(cur, &k, &v, from_len > 0 ? MDB_SET_RANGE : MDB_FIRST);
    bool failed = false;
    while (rc == 0) {
        enum scan_step step = row(txn, &k, &v, ctx);
        if (step != SCAN_NEXT) {
            failed = step == SCAN_ERROR;
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return failed || (rc != 0 && rc != MDB_NOTFOUND) ? -1 : 0;
}

/* A visitor's answer as a scan step: 0 goes on, anything else stops. */
static enum scan_step step_of(int visited)
{
    return visited != 0 ? SCAN_STOP : SCAN_NEXT;
}

/* A lookup of k in dbi within the scan's txn: SCAN_NEXT when found (rec
 * filled), absent rows are skipped by the caller (*found false), other
 * errors end the scan. */
static enum scan_step scan_lookup(MDB_txn *txn, MDB_dbi dbi, const MDB_val *k, MDB_val *rec,
                                  bool *found)
{
    int got = mdb_get(txn, dbi, (MDB_val *)k, rec);
    *found = got == 0;
    return got == 0 || got == MDB_NOTFOUND ? SCAN_NEXT : SCAN_ERROR;
}

struct meta_scan {
    struct cache_store *s;
    cache_store_visit_cb visit;
    int (*visit_entry)(const unsigned char *key, const struct cache_meta *meta,
                       const unsigned char *record, size_t len, void *arg);
    void *arg;
};

static enum scan_step meta_row(MDB_txn *txn, const MDB_val *k, const MDB_val *v, void *ctx)
{
    (void)txn;
    struct meta_scan *ms = ctx;
    struct cache_meta m;
    if (k->mv_size != CACHE_KEY_BYTES || meta_decode(v, &m, NULL) != 0)
        return SCAN_NEXT;
    return step_of(ms->visit(k->mv_data, &m, ms->arg));
}

int cache_store_foreach(struct cache_store *s, cache_store_visit_cb visit, void *arg)
{
    struct meta_scan ms = {.s = s, .visit = visit, .arg = arg};
    return scan(s, s->meta, NULL, 0, meta_row, &ms);
}

enum cache_get_result cache_store_get_job(struct cache_store *s, const char *id,
                                          struct cache_job *out)
{
    memset(out, 0, sizeof *out);
    size_t n = strnlen(id, CACHE_ARTIFACT_ID_MAX - 1);
    if (n == 0)
        return CACHE_GET_ABSENT;
    MDB_txn *txn;
    if (txn_begin(s, MDB_RDONLY, &txn) != 0)
        return CACHE_GET_ERROR;
    enum cache_get_result result;
    MDB_val k = val(id, n), v;
    int rc = mdb_get(txn, s->jobs, &k, &v);
    if (rc == MDB_NOTFOUND)
        result = CACHE_GET_ABSENT;
    else if (rc != 0)
        result = CACHE_GET_ERROR;
    else if (job_decode(&k, &v, out) != 0)
        result = CACHE_GET_CORRUPT;
    else
        result = CACHE_GET_FOUND;
    mdb_txn_abort(txn);
    return result;
}

/* A copy of the value of key (key_len bytes) in dbi: a blob or a task. */
static enum cache_get_result get_copy(struct cache_store *s, MDB_dbi dbi, const unsigned char *key,
                                      size_t key_len, unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    MDB_txn *txn;
    if (txn_begin(s, MDB_RDONLY, &txn) != 0)
        return CACHE_GET_ERROR;
    enum cache_get_result result;
    MDB_val k = val(key, key_len), v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        result = CACHE_GET_ABSENT;
    } else if (rc != 0) {
        result = CACHE_GET_ERROR;
    } else if ((*data = malloc(v.mv_size ? v.mv_size : 1)) == NULL) {
        result = CACHE_GET_ERROR;
    } else {
        if (v.mv_size > 0)
            memcpy(*data, v.mv_data, v.mv_size);
        *len = v.mv_size;
        result = CACHE_GET_FOUND;
    }
    mdb_txn_abort(txn);
    return result;
}

enum cache_get_result cache_store_get_blob(struct cache_store *s, const unsigned char *hash,
                                           unsigned char **data, size_t *len)
{
    return get_copy(s, s->blobs, hash, BLOB_KEY_BYTES, data, len);
}

enum cache_get_result cache_store_get_task(struct cache_store *s, const unsigned char *key,
                                           unsigned char **data, size_t *len)
{
    return get_copy(s, s->tasks, key, CACHE_KEY_BYTES, data, len);
}

struct job_scan {
    int (*visit)(const struct cache_job *job, void *arg);
    void *arg;
};

static enum scan_step job_row(MDB_txn *txn, const MDB_val *k, const MDB_val *v, void *ctx)
{
    (void)txn;
    struct job_scan *js = ctx;
    struct cache_job job;
    if (job_decode(k, v, &job) != 0)
        return SCAN_NEXT;
    return step_of(js->visit(&job, js->arg));
}

int cache_store_foreach_job(struct cache_store *s,
                            int (*visit)(const struct cache_job *job, void *arg), void *arg)
{
    struct job_scan js = {visit, arg};
    return scan(s, s->jobs, NULL, 0, job_row, &js);
}

/* A scan of "tasks", or of "task_open" with each key's record looked up in
 * "tasks" (lookup true). */
struct task_scan {
    MDB_dbi tasks;
    bool lookup;
    int (*visit)(const unsigned char *key, const unsigned char *data, size_t len, void *arg);
    void *arg;
};

static enum scan_step task_row(MDB_txn *txn, const MDB_val *k, const MDB_val *v, void *ctx)
{
    struct task_scan *ts = ctx;
    if (k->mv_size != CACHE_KEY_BYTES)
        return SCAN_NEXT;
    MDB_val rec = *v;
    bool found = true;
    if (ts->lookup) {
        enum scan_step step = scan_lookup(txn, ts->tasks, k, &rec, &found);
        if (step != SCAN_NEXT || !found)
            return step; /* a read error; an open key without a record is skipped */
    }
    return step_of(ts->visit(k->mv_data, rec.mv_data, rec.mv_size, ts->arg));
}

/* "task_open", each key's record looked up in "tasks" and lent to visit
 * until the txn ends. */
int cache_store_foreach_open_task(struct cache_store *s,
                                  int (*visit)(const unsigned char *key, const unsigned char *data,
                                               size_t len, void *arg),
                                  void *arg)
{
    struct task_scan ts = {s->tasks, true, visit, arg};
    return scan(s, s->task_open, NULL, 0, task_row, &ts);
}

struct usage_scan {
    int (*visit)(const unsigned char *key, size_t key_len, const unsigned char *data, size_t len,
                 void *arg);
    void *arg;
};

static enum scan_step usage_row(MDB_txn *txn, const MDB_val *k, const MDB_val *v, void *ctx)
{
    (void)txn;
    struct usage_scan *us = ctx;
    return step_of(us->visit(k->mv_data, k->mv_size, v->mv_data, v->mv_size, us->arg));
}

int cache_store_foreach_usage(struct cache_store *s, const void *from, size_t from_len,
                              int (*visit)(const unsigned char *key, size_t key_len,
                                           const unsigned char *data, size_t len, void *arg),
                              void *arg)
{
    struct usage_scan us = {visit, arg};
    return scan(s, s->usage, from, from_len, usage_row, &us);
}

/* --- export and import ---------------------------------------------------------- */

static enum scan_step entry_row(MDB_txn *txn, const MDB_val *k, const MDB_val *v, void *ctx)
{
    struct meta_scan *ms = ctx;
    struct cache_meta m;
    if (k->mv_size != CACHE_KEY_BYTES || meta_decode(v, &m, NULL) != 0)
        return SCAN_NEXT;
    MDB_val rec;
    bool found;
    enum scan_step step = scan_lookup(txn, ms->s->entries, k, &rec, &found);
    if (step != SCAN_NEXT || !found)
        return step;
    return step_of(ms->visit_entry(k->mv_data, &m, rec.mv_data, rec.mv_size, ms->arg));
}

int cache_store_foreach_entry(struct cache_store *s,
                              int (*visit)(const unsigned char *key, const struct cache_meta *meta,
                                           const unsigned char *record, size_t len, void *arg),
                              void *arg)
{
    struct meta_scan ms = {.s = s, .visit_entry = visit, .arg = arg};
    return scan(s, s->meta, NULL, 0, entry_row, &ms);
}

int cache_store_foreach_task(struct cache_store *s,
                             int (*visit)(const unsigned char *key, const unsigned char *data,
                                          size_t len, void *arg),
                             void *arg)
{
    struct task_scan ts = {s->tasks, false, visit, arg};
    return scan(s, s->tasks, NULL, 0, task_row, &ts);
}

/* The put_meta of an imported entry: its record decoded (which also checks
 * it), the bundle's times and provider. -1 when the record does not decode. */
static int import_meta(const struct cache_import_item *it, struct put_meta *pm)
{
    struct cache_entry e;
    memset(pm, 0, sizeof *pm);
    if (it->key == NULL || cache_entry_decode(it->data, it->len, &e) != 0)
        return -1;
    pm->valid = true;
    pm->stored_at_ms = it->stored_at_ms;
    pm->expires_at_ms = it->expires_at_ms;
    const char *provider =
        it->provider != NULL && it->provider[0] != '\0' ? it->provider : e.provider;
    snprintf(pm->provider, sizeof pm->provider, "%s", provider != NULL ? provider : "");
    pm->sample = e.sample;
    memcpy(pm->base_key, e.base_key, sizeof pm->base_key);
    cache_entry_free(&e);
    return 0;
}

/* One item inside the import's txn; counts what it did. */
static int import_item(struct wtxn *w, const struct cache_import_item *it,
                       const struct put_meta *pm, enum cache_import_policy policy, int64_t now_ms,
                       struct cache_import_result *res)
{
    MDB_val k, v;
    int rc;
    switch (it->kind) {
    case CACHE_IMPORT_ENTRY: {
        struct cache_meta m;
        int64_t lru_ms;
        rc = meta_lookup(w, it->key, &m, &lru_ms);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        bool present = rc == 0;
        if (present && policy == CACHE_IMPORT_KEEP) {
            res->entries.kept++;
            return 0;
        }
        struct cache_op op;
        memset(&op, 0, sizeof op);
        op.kind = CACHE_OP_PUT;
        memcpy(op.key, it->key, CACHE_KEY_BYTES);
        op.record = it->data;
        op.record_len = it->len;
        op.now_ms = now_ms;
        if ((rc = apply_put(w, &op, pm)) != 0)
            return rc;
        if (present)
            res->entries.replaced++;
        else
            res->entries.added++;
        return 0;
    }
    case CACHE_IMPORT_TASK: {
        k = val(it->key, CACHE_KEY_BYTES);
        rc = mdb_get(w->txn, w->s->tasks, &k, &v);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        bool present = rc == 0;
        if (present && policy == CACHE_IMPORT_KEEP) {
            res->tasks.kept++;
            return 0;
        }
        v = val(it->data, it->len);
        if ((rc = mdb_put(w->txn, w->s->tasks, &k, &v, 0)) != 0)
            return rc;
        if (present)
            res->tasks.replaced++;
        else
            res->tasks.added++;
        return 0;
    }
    case CACHE_IMPORT_JOB: {
        const struct cache_job *job = it->job;
        k = val(job->id, job_id_len(job));
        rc = mdb_get(w->txn, w->s->jobs, &k, &v);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        if (rc == MDB_NOTFOUND) {
            if ((rc = put_job(w, job, true)) != 0)
                return rc;
            res->jobs.added++;
            return 0;
        }
        struct cache_job old;
        bool readable = job_decode(&k, &v, &old) == 0;
        if (readable && (old.state == CACHE_JOB_CAPTURED || job->state != CACHE_JOB_CAPTURED)) {
            res->jobs.kept++;
            return 0;
        }
        if ((rc = put_job(w, job, false)) != 0)
            return rc;
        res->jobs.replaced++;
        return 0;
    }
    case CACHE_IMPORT_BLOB:
        k = val(it->key, BLOB_KEY_BYTES);
        v = val(it->data, it->len);
        rc = mdb_put(w->txn, w->s->blobs, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
            res->blobs.kept++;
            return 0;
        }
        if (rc != 0)
            return rc;
        w->blob_bytes += it->len;
        w->counters_dirty = true;
        res->blobs.added++;
        return 0;
    }
    return 0;
}

int cache_store_import(struct cache_store *s, const struct cache_import_item *items, size_t count,
                       enum cache_import_policy policy, int64_t now_ms,
                       struct cache_import_result *result, char *err, size_t err_size)
{
    struct cache_import_result res;
    memset(&res, 0, sizeof res);
    if (result != NULL)
        *result = res;
    /* Everything checked before the write lock is taken. */
    struct put_meta *pms = calloc(count ? count : 1, sizeof *pms);
    if (pms == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const struct cache_import_item *it = &items[i];
        bool ok;
        switch (it->kind) {
        case CACHE_IMPORT_ENTRY:
            ok = import_meta(it, &pms[i]) == 0;
            break;
        case CACHE_IMPORT_JOB:
            ok = it->job != NULL && job_valid(it->job);
            break;
        case CACHE_IMPORT_TASK:
        case CACHE_IMPORT_BLOB:
            ok = it->key != NULL && it->data != NULL && it->len > 0;
            break;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            snprintf(err, err_size,
                     "item %zu of the import is not valid (%s); nothing was imported", i,
                     it->kind == CACHE_IMPORT_ENTRY ? "an entry record that does not decode"
                     : it->kind == CACHE_IMPORT_JOB ? "a job without an id or state"
                                                    : "an empty record");
            free(pms);
            return -1;
        }
    }

    struct wtxn w;
    int rc = wtxn_begin(s, &w);
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = import_item(&w, &items[i], &pms[i], policy, now_ms, &res);
    free(pms);
    if (rc == 0) {
        rc = wtxn_commit(&w);
    } else if (w.txn != NULL) {
        wtxn_abort(&w);
    }
    if (rc == MDB_MAP_FULL) {
        MDB_envinfo info;
        unsigned long long map = mdb_env_info(s->env, &info) == 0 ? info.me_mapsize : 0;
        snprintf(err, err_size,
                 "the bundle does not fit in the store's map (%llu MiB); nothing was imported "
                 "(start the proxy once with a larger max_cache_bytes to grow it)",
                 map >> 20);
        return -1;
    }
    if (rc != 0) {
        snprintf(err, err_size, "store error: %s; nothing was imported", mdb_strerror(rc));
        return -1;
    }
    if (result != NULL)
        *result = res;
    return 0;
}
