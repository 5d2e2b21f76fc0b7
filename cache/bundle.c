/* bundle.c: the export bundle (bundle.h): a writer that frames, hashes and
 * gzip-compresses records as they come, and a reader that inflates a whole
 * file and validates every byte of it before handing out its records. Owns
 * the bundle's byte layout; knows nothing of LMDB (store.c) or of what the
 * proxy keeps in a task record (proxy/tasks.c). No I/O of its own: the
 * writer hands bytes to a sink, the reader takes a buffer.
 *
 * Integers are written byte by byte, big endian, as bundle.h says. The
 * reader checks, in order: the gzip layer (cache_bundle_read), the magic
 * line, the framing of every record (types, lengths, the header first, the
 * trailer last), the trailer's SHA-256, the counts, then each record's
 * content; the first failure is reported with its byte offset (of the file
 * for the gzip layer, of the uncompressed stream after it). */
#include "bundle.h"

#include "entry.h"

#include <openssl/evp.h>
#include <zlib.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHA_LEN           32
#define FRAME_LEN         5 /* u8 type, u32 length */
#define MAGIC_LINE_MAX    64
#define ENTRY_FIXED       (CACHE_KEY_BYTES + 8 + 8 + 1) /* then provider, u32 flags */
#define JOB_FIXED         69                            /* state .. blob, see bundle.h */
#define TRAILER_LEN       (4 * 8 + SHA_LEN)
#define OUT_CHUNK         65536
#define INFLATE_MIN_SIZE  65536
#define INFLATE_MAX_FIRST ((size_t)256 << 20) /* the first buffer; it doubles from there */

/* --- bytes ------------------------------------------------------------------ */

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Two's complement back to int64_t without implementation-defined casts. */
static int64_t i64_of(uint64_t u)
{
    if (u <= (uint64_t)INT64_MAX)
        return (int64_t)u;
    return -(int64_t)(~u) - 1;
}

static void hex_of(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (err == NULL || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static int sha256(const unsigned char *data, size_t len, unsigned char out[SHA_LEN])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == SHA_LEN ? 0 : -1;
}

/* --- job payloads ------------------------------------------------------------- */

/* Appends a length-prefixed string (width 1 or 2 bytes) of at most field - 1 bytes. */
static size_t put_str(unsigned char *p, const char *s, size_t field, int width)
{
    size_t n = strnlen(s, field - 1);
    put_be(p, n, width);
    memcpy(p + width, s, n);
    return (size_t)width + n;
}

#define JOB_MAX_PAYLOAD                                                                            \
    (JOB_FIXED + 1 + CACHE_ARTIFACT_ID_MAX + 2 + CACHE_ARTIFACT_URL_MAX + 1 +                      \
     sizeof(((struct cache_job *)0)->content_type) + 1 + sizeof(((struct cache_job *)0)->note))

static size_t job_encode(const struct cache_job *j, unsigned char *out)
{
    out[0] = (unsigned char)j->state;
    put_be(out + 1, j->attempts, 4);
    put_be(out + 5, (uint64_t)j->created_ms, 8);
    put_be(out + 13, (uint64_t)j->expires_ms, 8);
    put_be(out + 21, (uint64_t)j->next_attempt_ms, 8);
    put_be(out + 29, j->size, 8);
    memcpy(out + 37, j->blob, SHA_LEN);
    size_t n = JOB_FIXED;
    n += put_str(out + n, j->id, sizeof j->id, 1);
    n += put_str(out + n, j->url, sizeof j->url, 2);
    n += put_str(out + n, j->content_type, sizeof j->content_type, 1);
    n += put_str(out + n, j->note, sizeof j->note, 1);
    return n;
}

static bool get_str(const unsigned char *p, size_t len, size_t *pos, int width, char *dst,
                    size_t field, bool required)
{
    if (len - *pos < (size_t)width)
        return false;
    size_t n = (size_t)get_be(p + *pos, width);
    *pos += (size_t)width;
    if (n >= field || len - *pos < n || memchr(p + *pos, '\0', n) != NULL || (required && n == 0))
        return false;
    memcpy(dst, p + *pos, n);
    dst[n] = '\0';
    *pos += n;
    return true;
}

static int job_decode(const unsigned char *p, size_t len, struct cache_job *out)
{
    memset(out, 0, sizeof *out);
    if (len < JOB_FIXED || p[0] > CACHE_JOB_LOST)
        return -1;
    out->state = (enum cache_job_state)p[0];
    out->attempts = (uint32_t)get_be(p + 1, 4);
    out->created_ms = i64_of(get_be(p + 5, 8));
    out->expires_ms = i64_of(get_be(p + 13, 8));
    out->next_attempt_ms = i64_of(get_be(p + 21, 8));
    out->size = get_be(p + 29, 8);
    memcpy(out->blob, p + 37, SHA_LEN);
    size_t pos = JOB_FIXED;
    if (!get_str(p, len, &pos, 1, out->id, sizeof out->id, true) ||
        !get_str(p, len, &pos, 2, out->url, sizeof out->url, false) ||
        !get_str(p, len, &pos, 1, out->content_type, sizeof out->content_type, false) ||
        !get_str(p, len, &pos, 1, out->note, sizeof out->note, false) || pos != len) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

/* --- gzip --------------------------------------------------------------------- */

/* Inflates one whole gzip member. Returns 0; or -1 with *fail_at the input
 * offset and *why one of: 't' (ends early), 'c' (CRC or length check), 'd'
 * (bad data; zmsg), 'x' (bytes after the member), 'm' (memory). */
static int gunzip(const unsigned char *data, size_t len, unsigned char **out, size_t *out_len,
                  size_t *fail_at, char *why, const char **zmsg)
{
    *out = NULL;
    *out_len = 0;
    *fail_at = 0;
    *zmsg = NULL;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        *why = 'm';
        return -1;
    }
    size_t cap = len < INFLATE_MAX_FIRST / 4 ? len * 4 : INFLATE_MAX_FIRST;
    if (cap < INFLATE_MIN_SIZE)
        cap = INFLATE_MIN_SIZE;
    unsigned char *buf = malloc(cap);
    size_t used = 0, in_pos = 0;
    int rc = Z_OK;
    while (buf != NULL) {
        if (used == cap) {
            size_t bigger = cap <= SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
            unsigned char *grown = bigger > cap ? realloc(buf, bigger) : NULL;
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap = bigger;
        }
        size_t in_chunk = len - in_pos > UINT32_MAX ? UINT32_MAX : len - in_pos;
        size_t out_chunk = cap - used > UINT32_MAX ? UINT32_MAX : cap - used;
        zs.next_in = (Bytef *)(uintptr_t)(data + in_pos);
        zs.avail_in = (uInt)in_chunk;
        zs.next_out = buf + used;
        zs.avail_out = (uInt)out_chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        size_t consumed = in_chunk - zs.avail_in, produced = out_chunk - zs.avail_out;
        in_pos += consumed;
        used += produced;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            break; /* the end, or an error */
        if (consumed == 0 && produced == 0) {
            rc = Z_BUF_ERROR; /* no input left, no output pending: it ends early */
            break;
        }
    }
    if (zs.msg != NULL)
        *zmsg = zs.msg;
    inflateEnd(&zs);
    if (buf == NULL || rc == Z_MEM_ERROR) {
        free(buf);
        *why = 'm';
        return -1;
    }
    if (rc == Z_STREAM_END) {
        if (in_pos != len) {
            free(buf);
            *fail_at = in_pos;
            *why = 'x';
            return -1;
        }
        *out = buf;
        *out_len = used;
        return 0;
    }
    free(buf);
    *fail_at = in_pos;
    if (rc == Z_DATA_ERROR && *zmsg != NULL &&
        (strcmp(*zmsg, "incorrect data check") == 0 ||
         strcmp(*zmsg, "incorrect length check") == 0))
        *why = 'c';
    else if (rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR || rc == Z_NEED_DICT)
        *why = 'd';
    else
        *why = 't';
    return -1;
}

/* --- the writer ------------------------------------------------------------------ */

struct cache_bundle_writer {
    cache_bundle_sink sink;
    void *arg;
    z_stream zs;
    bool zs_ready;
    EVP_MD_CTX *md;
    bool failed;
    bool finished;
    struct cache_bundle_counts declared;
    struct cache_bundle_counts written;
    unsigned char out[OUT_CHUNK];
};

/* Feeds bytes to deflate (flush: Z_NO_FLUSH or Z_FINISH) and the sink. */
static int deflate_feed(struct cache_bundle_writer *w, const unsigned char *data, size_t len,
                        int flush)
{
    size_t pos = 0;
    for (;;) {
        size_t chunk = len - pos > UINT32_MAX ? UINT32_MAX : len - pos;
        w->zs.next_in = data ? (Bytef *)(data + pos) : Z_NULL; /* NULL + 0 is undefined */
        w->zs.avail_in = (uInt)chunk;
        bool last = pos + chunk == len;
        int rc;
        do {
            w->zs.next_out = w->out;
            w->zs.avail_out = sizeof w->out;
            rc = deflate(&w->zs, last ? flush : Z_NO_FLUSH);
            if (rc == Z_STREAM_ERROR)
                return -1;
            size_t have = sizeof w->out - w->zs.avail_out;
            if (have > 0 && w->sink(w->out, have, w->arg) != 0)
                return -1;
        } while (w->zs.avail_out == 0 || (last && flush == Z_FINISH && rc != Z_STREAM_END));
        pos += chunk;
        if (last)
            return 0;
    }
}

/* Bytes of the stream: hashed (before the trailer) and compressed. */
static int emit(struct cache_bundle_writer *w, const void *data, size_t len, bool hash)
{
    if (w->failed)
        return -1;
    if ((hash && EVP_DigestUpdate(w->md, data, len) != 1) ||
        deflate_feed(w, data, len, Z_NO_FLUSH) != 0) {
        w->failed = true;
        return -1;
    }
    return 0;
}

/* A record: its frame, then its payload in parts (NULL-terminated pairs). */
static int emit_record(struct cache_bundle_writer *w, enum cache_bundle_type type,
                       const unsigned char *a, size_t a_len, const unsigned char *b, size_t b_len)
{
    if (w->failed || w->finished)
        return -1;
    if (a_len > CACHE_BUNDLE_RECORD_MAX || b_len > CACHE_BUNDLE_RECORD_MAX - a_len) {
        w->failed = true;
        return -1;
    }
    unsigned char frame[FRAME_LEN];
    frame[0] = (unsigned char)type;
    put_be(frame + 1, a_len + b_len, 4);
    if (emit(w, frame, sizeof frame, true) != 0 || (a_len > 0 && emit(w, a, a_len, true) != 0) ||
        (b_len > 0 && emit(w, b, b_len, true) != 0))
        return -1;
    return 0;
}

static json_t *counts_json(const struct cache_bundle_counts *c)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "entries", (json_int_t)c->entries, "tasks",
                     (json_int_t)c->tasks, "jobs", (json_int_t)c->jobs, "blobs",
                     (json_int_t)c->blobs);
}

struct cache_bundle_writer *cache_bundle_writer_new(cache_bundle_sink sink, void *arg,
                                                    const struct cache_bundle_counts *declared,
                                                    const json_t *info, char *err, size_t err_size)
{
    struct cache_bundle_writer *w = calloc(1, sizeof *w);
    if (w == NULL) {
        set_err(err, err_size, "out of memory");
        return NULL;
    }
    w->sink = sink;
    w->arg = arg;
    w->declared = *declared;
    w->md = EVP_MD_CTX_new();
    if (w->md == NULL || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        set_err(err, err_size, "SHA-256 unavailable (OpenSSL)");
        cache_bundle_writer_free(w);
        return NULL;
    }
    if (deflateInit2(&w->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        set_err(err, err_size, "zlib: cannot start a gzip stream");
        cache_bundle_writer_free(w);
        return NULL;
    }
    w->zs_ready = true;

    json_t *header = info != NULL ? json_deep_copy(info) : json_object();
    if (!json_is_object(header)) {
        json_decref(header);
        set_err(err, err_size, "the header info is not a JSON object");
        cache_bundle_writer_free(w);
        return NULL;
    }
    json_object_set_new(header, "format", json_string(CACHE_BUNDLE_NAME));
    json_object_set_new(header, "version", json_integer(CACHE_BUNDLE_VERSION));
    json_object_set_new(header, "counts", counts_json(declared));
    char *text = json_dumps(header, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(header);
    char magic[MAGIC_LINE_MAX];
    int n = snprintf(magic, sizeof magic, "%s %d\n", CACHE_BUNDLE_NAME, CACHE_BUNDLE_VERSION);
    if (text == NULL || emit(w, magic, (size_t)n, true) != 0 ||
        emit_record(w, CACHE_BUNDLE_HEADER, (const unsigned char *)text, strlen(text), NULL, 0) !=
            0) {
        free(text);
        set_err(err, err_size, "cannot write the bundle's header");
        cache_bundle_writer_free(w);
        return NULL;
    }
    free(text);
    return w;
}

int cache_bundle_write_entry(struct cache_bundle_writer *w, const unsigned char *key,
                             const struct cache_bundle_meta *meta, const unsigned char *record,
                             size_t len)
{
    struct cache_entry e;
    if (cache_entry_decode(record, len, &e) != 0) {
        w->failed = true;
        return -1;
    }
    cache_entry_free(&e);
    unsigned char head[ENTRY_FIXED + CACHE_PROVIDER_MAX + 4];
    memcpy(head, key, CACHE_KEY_BYTES);
    put_be(head + CACHE_KEY_BYTES, (uint64_t)meta->stored_at_ms, 8);
    put_be(head + CACHE_KEY_BYTES + 8, (uint64_t)meta->expires_at_ms, 8);
    size_t n = put_str(head + CACHE_KEY_BYTES + 16, meta->provider, sizeof meta->provider, 1);
    size_t head_len = CACHE_KEY_BYTES + 16 + n;
    put_be(head + head_len, 0, 4); /* flags */
    head_len += 4;
    if (emit_record(w, CACHE_BUNDLE_ENTRY, head, head_len, record, len) != 0)
        return -1;
    w->written.entries++;
    return 0;
}

int cache_bundle_write_task(struct cache_bundle_writer *w, const unsigned char *key,
                            const unsigned char *record, size_t len)
{
    if (len == 0) {
        w->failed = true;
        return -1;
    }
    if (emit_record(w, CACHE_BUNDLE_TASK, key, CACHE_KEY_BYTES, record, len) != 0)
        return -1;
    w->written.tasks++;
    return 0;
}

int cache_bundle_write_job(struct cache_bundle_writer *w, const struct cache_job *job)
{
    if (job->id[0] == '\0' || (unsigned)job->state > CACHE_JOB_LOST) {
        w->failed = true;
        return -1;
    }
    unsigned char buf[JOB_MAX_PAYLOAD];
    size_t n = job_encode(job, buf);
    if (emit_record(w, CACHE_BUNDLE_JOB, buf, n, NULL, 0) != 0)
        return -1;
    w->written.jobs++;
    return 0;
}

int cache_bundle_write_blob(struct cache_bundle_writer *w, const unsigned char *hash,
                            const unsigned char *gzip, size_t len)
{
    if (len == 0) {
        w->failed = true;
        return -1;
    }
    if (emit_record(w, CACHE_BUNDLE_BLOB, hash, SHA_LEN, gzip, len) != 0)
        return -1;
    w->written.blobs++;
    return 0;
}

static bool counts_equal(const struct cache_bundle_counts *a, const struct cache_bundle_counts *b)
{
    return a->entries == b->entries && a->tasks == b->tasks && a->jobs == b->jobs &&
           a->blobs == b->blobs;
}

int cache_bundle_writer_finish(struct cache_bundle_writer *w, char *err, size_t err_size)
{
    if (w->failed || w->finished) {
        set_err(err, err_size, "a record could not be written");
        return -1;
    }
    if (!counts_equal(&w->declared, &w->written)) {
        set_err(err, err_size,
                "the records written (%llu entries, %llu tasks, %llu jobs, %llu blobs) are not "
                "the ones declared (%llu, %llu, %llu, %llu)",
                (unsigned long long)w->written.entries, (unsigned long long)w->written.tasks,
                (unsigned long long)w->written.jobs, (unsigned long long)w->written.blobs,
                (unsigned long long)w->declared.entries, (unsigned long long)w->declared.tasks,
                (unsigned long long)w->declared.jobs, (unsigned long long)w->declared.blobs);
        w->failed = true;
        return -1;
    }
    unsigned char frame[FRAME_LEN], trailer[TRAILER_LEN];
    frame[0] = CACHE_BUNDLE_TRAILER;
    put_be(frame + 1, TRAILER_LEN, 4);
    put_be(trailer, w->written.entries, 8);
    put_be(trailer + 8, w->written.tasks, 8);
    put_be(trailer + 16, w->written.jobs, 8);
    put_be(trailer + 24, w->written.blobs, 8);
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(w->md, trailer + 32, &n) != 1 || n != SHA_LEN ||
        emit(w, frame, sizeof frame, false) != 0 || emit(w, trailer, sizeof trailer, false) != 0 ||
        deflate_feed(w, NULL, 0, Z_FINISH) != 0) {
        w->failed = true;
        set_err(err, err_size, "cannot write the bundle's trailer");
        return -1;
    }
    w->finished = true;
    return 0;
}

void cache_bundle_writer_free(struct cache_bundle_writer *w)
{
    if (w == NULL)
        return;
    if (w->zs_ready)
        deflateEnd(&w->zs);
    EVP_MD_CTX_free(w->md);
    free(w);
}

/* --- the reader ----------------------------------------------------------------- */

static const char *type_name(int type)
{
    switch (type) {
    case CACHE_BUNDLE_HEADER:
        return "header";
    case CACHE_BUNDLE_ENTRY:
        return "entry";
    case CACHE_BUNDLE_TASK:
        return "task";
    case CACHE_BUNDLE_JOB:
        return "job";
    case CACHE_BUNDLE_BLOB:
        return "blob";
    case CACHE_BUNDLE_TRAILER:
        return "trailer";
    default:
        return NULL;
    }
}

/* Checks the magic line; returns the offset after it, or 0 (err set). */
static size_t read_magic(const unsigned char *raw, size_t len, char *err, size_t err_size)
{
    static const char name[] = CACHE_BUNDLE_NAME " ";
    size_t name_len = sizeof name - 1;
    size_t cmp = len < name_len ? len : name_len;
    if (memcmp(raw, name, cmp) != 0) {
        set_err(err, err_size, "bad magic: this is not a cloro-proxy bundle");
        return 0;
    }
    if (len <= name_len) {
        set_err(err, err_size, "truncated at byte %zu: the magic line is incomplete", len);
        return 0;
    }
    size_t pos = name_len, limit = len < MAGIC_LINE_MAX ? len : MAGIC_LINE_MAX;
    uint64_t version = 0;
    size_t digits = 0;
    while (pos < limit && raw[pos] >= '0' && raw[pos] <= '9' && digits < 9) {
        version = version * 10 + (uint64_t)(raw[pos] - '0');
        pos++;
        digits++;
    }
    if (pos == len) {
        set_err(err, err_size, "truncated at byte %zu: the magic line is incomplete", len);
        return 0;
    }
    if (digits == 0 || raw[pos] != '\n') {
        set_err(err, err_size, "bad magic: this is not a cloro-proxy bundle");
        return 0;
    }
    if (version != CACHE_BUNDLE_VERSION) {
        set_err(err, err_size,
                "unsupported version %llu: this program reads cloro-proxy bundles of version %d",
                (unsigned long long)version, CACHE_BUNDLE_VERSION);
        return 0;
    }
    return pos + 1;
}

static bool header_count(const json_t *counts, const char *name, uint64_t *out)
{
    const json_t *v = json_object_get(counts, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* The header record's JSON: format, version and counts. */
static int read_header(const unsigned char *p, size_t len, uint64_t at, json_t **out,
                       struct cache_bundle_counts *counts, char *err, size_t err_size)
{
    json_error_t jerr;
    json_t *h = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *format = json_string_value(json_object_get(h, "format"));
    const json_t *version = json_object_get(h, "version");
    const json_t *c = json_object_get(h, "counts");
    if (!json_is_object(h) || format == NULL || strcmp(format, CACHE_BUNDLE_NAME) != 0 ||
        !json_is_integer(version) || json_integer_value(version) != CACHE_BUNDLE_VERSION ||
        !json_is_object(c) || !header_count(c, "entries", &counts->entries) ||
        !header_count(c, "tasks", &counts->tasks) || !header_count(c, "jobs", &counts->jobs) ||
        !header_count(c, "blobs", &counts->blobs)) {
        set_err(err, err_size,
                "bad header at byte %llu: not a JSON object with format \"%s\", version %d and "
                "counts",
                (unsigned long long)at, CACHE_BUNDLE_NAME, CACHE_BUNDLE_VERSION);
        json_decref(h);
        return -1;
    }
    *out = h;
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    const struct cache_bundle_item *x = *(const struct cache_bundle_item *const *)a;
    const struct cache_bundle_item *y = *(const struct cache_bundle_item *const *)b;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    if (x->type == CACHE_BUNDLE_JOB)
        return strcmp(x->job.id, y->job.id);
    return memcmp(x->key, y->key, CACHE_KEY_BYTES);
}

/* No entry, task, blob or job id twice. */
static int check_duplicates(const struct cache_bundle *b, char *err, size_t err_size)
{
    if (b->count < 2)
        return 0;
    const struct cache_bundle_item **sorted = malloc(b->count * sizeof *sorted);
    if (sorted == NULL) {
        set_err(err, err_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < b->count; i++)
        sorted[i] = &b->items[i];
    qsort(sorted, b->count, sizeof *sorted, cmp_key);
    int rc = 0;
    for (size_t i = 1; i < b->count && rc == 0; i++) {
        if (cmp_key(&sorted[i - 1], &sorted[i]) != 0)
            continue;
        const struct cache_bundle_item *dup =
            sorted[i - 1]->offset > sorted[i]->offset ? sorted[i - 1] : sorted[i];
        char name[CACHE_ARTIFACT_ID_MAX + 2 * CACHE_KEY_BYTES];
        if (dup->type == CACHE_BUNDLE_JOB)
            snprintf(name, sizeof name, "%s", dup->job.id);
        else
            hex_of(dup->key, CACHE_KEY_BYTES, name);
        set_err(err, err_size, "bad %s at byte %llu: %s is in the bundle twice",
                type_name(dup->type), (unsigned long long)dup->offset, name);
        rc = -1;
    }
    free(sorted);
    return rc;
}

/* The content of one entry, task, job or blob record (its frame checked). */
static int read_item(struct cache_bundle_item *it, const unsigned char *p, size_t len, char *err,
                     size_t err_size)
{
    char hex[2 * SHA_LEN + 1];
    unsigned long long at = (unsigned long long)it->offset;
    switch (it->type) {
    case CACHE_BUNDLE_ENTRY: {
        size_t plen = len >= ENTRY_FIXED ? p[ENTRY_FIXED - 1] : 0;
        if (len < ENTRY_FIXED || plen >= CACHE_PROVIDER_MAX || len - ENTRY_FIXED < plen + 4 ||
            memchr(p + ENTRY_FIXED, '\0', plen) != NULL) {
            set_err(err, err_size, "bad entry at byte %llu: its fields do not add up", at);
            return -1;
        }
        it->key = p;
        it->meta.stored_at_ms = i64_of(get_be(p + CACHE_KEY_BYTES, 8));
        it->meta.expires_at_ms = i64_of(get_be(p + CACHE_KEY_BYTES + 8, 8));
        memcpy(it->meta.provider, p + ENTRY_FIXED, plen);
        it->meta.provider[plen] = '\0';
        it->data = p + ENTRY_FIXED + plen + 4;
        it->len = len - ENTRY_FIXED - plen - 4;
        struct cache_entry e;
        if (cache_entry_decode(it->data, it->len, &e) != 0) {
            hex_of(it->key, CACHE_KEY_BYTES, hex);
            set_err(err, err_size,
                    "bad entry at byte %llu (key %s): its record fails its own checksum or does "
                    "not decode",
                    at, hex);
            return -1;
        }
        cache_entry_free(&e);
        return 0;
    }
    case CACHE_BUNDLE_TASK:
        if (len <= CACHE_KEY_BYTES) {
            set_err(err, err_size, "bad task at byte %llu: no record after its key", at);
            return -1;
        }
        it->key = p;
        it->data = p + CACHE_KEY_BYTES;
        it->len = len - CACHE_KEY_BYTES;
        return 0;
    case CACHE_BUNDLE_JOB:
        if (job_decode(p, len, &it->job) != 0) {
            set_err(err, err_size, "bad job at byte %llu: its fields do not decode", at);
            return -1;
        }
        return 0;
    case CACHE_BUNDLE_BLOB: {
        if (len <= SHA_LEN) {
            set_err(err, err_size, "bad blob at byte %llu: no content after its hash", at);
            return -1;
        }
        it->key = p;
        it->data = p + SHA_LEN;
        it->len = len - SHA_LEN;
        unsigned char *content = NULL, sum[SHA_LEN];
        size_t content_len = 0, fail_at;
        char why;
        const char *zmsg;
        hex_of(it->key, SHA_LEN, hex);
        if (gunzip(it->data, it->len, &content, &content_len, &fail_at, &why, &zmsg) != 0) {
            set_err(err, err_size, "bad blob at byte %llu (%s): %s", at, hex,
                    why == 'm' ? "out of memory" : "its content is not a whole gzip stream");
            return -1;
        }
        int rc = sha256(content, content_len, sum);
        free(content);
        if (rc != 0 || memcmp(sum, it->key, SHA_LEN) != 0) {
            set_err(err, err_size,
                    "bad blob at byte %llu (%s): checksum mismatch, its content does not match "
                    "its hash",
                    at, hex);
            return -1;
        }
        return 0;
    }
    default:
        return -1;
    }
}

/* Every captured job's blob is in the bundle. */
static int cmp_hash(const void *a, const void *b)
{
    return memcmp(*(const unsigned char *const *)a, *(const unsigned char *const *)b, SHA_LEN);
}

static int check_job_blobs(const struct cache_bundle *b, char *err, size_t err_size)
{
    const unsigned char **hashes = malloc((b->count ? b->count : 1) * sizeof *hashes);
    if (hashes == NULL) {
        set_err(err, err_size, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < b->count; i++)
        if (b->items[i].type == CACHE_BUNDLE_BLOB)
            hashes[n++] = b->items[i].key;
    qsort(hashes, n, sizeof *hashes, cmp_hash);
    int rc = 0;
    for (size_t i = 0; i < b->count && rc == 0; i++) {
        const struct cache_bundle_item *j = &b->items[i];
        if (j->type != CACHE_BUNDLE_JOB || j->job.state != CACHE_JOB_CAPTURED)
            continue;
        const unsigned char *want = j->job.blob;
        if (n == 0 || bsearch(&want, hashes, n, sizeof *hashes, cmp_hash) == NULL) {
            char hex[2 * SHA_LEN + 1];
            hex_of(j->job.blob, SHA_LEN, hex);
            set_err(err, err_size,
                    "bad job at byte %llu: %s is captured as blob %s, which the bundle lacks",
                    (unsigned long long)j->offset, j->job.id, hex);
            rc = -1;
        }
    }
    free(hashes);
    return rc;
}

int cache_bundle_parse(unsigned char *raw, size_t raw_len, struct cache_bundle *out, char *err,
                       size_t err_size)
{
    memset(out, 0, sizeof *out);
    out->raw = raw;
    out->raw_len = raw_len;
    size_t pos = read_magic(raw, raw_len, err, err_size);
    if (pos == 0)
        goto fail;

    /* Framing: types, lengths, the header first and the trailer last. */
    size_t cap = 0, trailer_at = 0;
    const unsigned char *trailer = NULL;
    bool have_header = false;
    while (pos < raw_len) {
        if (trailer != NULL) {
            set_err(err, err_size, "bad bundle: %zu bytes follow the trailer at byte %zu",
                    raw_len - pos, pos);
            goto fail;
        }
        if (raw_len - pos < FRAME_LEN) {
            set_err(err, err_size,
                    "truncated at byte %zu: the record at byte %zu is cut inside its frame",
                    raw_len, pos);
            goto fail;
        }
        int type = raw[pos];
        uint64_t len = get_be(raw + pos + 1, 4);
        const char *name = type_name(type);
        if (name == NULL) {
            set_err(err, err_size, "bad record at byte %zu: unknown type 0x%02x", pos, type);
            goto fail;
        }
        if (len > CACHE_BUNDLE_RECORD_MAX) {
            set_err(err, err_size, "bad %s at byte %zu: length %llu over the limit", name, pos,
                    (unsigned long long)len);
            goto fail;
        }
        if (len > raw_len - pos - FRAME_LEN) {
            set_err(err, err_size,
                    "truncated at byte %zu: the %s at byte %zu declares %llu bytes, %zu remain",
                    raw_len, name, pos, (unsigned long long)len, raw_len - pos - FRAME_LEN);
            goto fail;
        }
        const unsigned char *payload = raw + pos + FRAME_LEN;
        if (!have_header && type != CACHE_BUNDLE_HEADER) {
            set_err(err, err_size,
                    "bad bundle: the first record (byte %zu) is a %s, not the header", pos, name);
            goto fail;
        }
        if (type == CACHE_BUNDLE_HEADER) {
            if (have_header) {
                set_err(err, err_size, "bad bundle: a second header at byte %zu", pos);
                goto fail;
            }
            have_header = true;
            if (read_header(payload, (size_t)len, pos, &out->header, &out->counts, err, err_size) !=
                0)
                goto fail;
        } else if (type == CACHE_BUNDLE_TRAILER) {
            if (len != TRAILER_LEN) {
                set_err(err, err_size, "bad trailer at byte %zu: %llu bytes, not %d", pos,
                        (unsigned long long)len, TRAILER_LEN);
                goto fail;
            }
            trailer = payload;
            trailer_at = pos;
        } else {
            if (out->count == cap) {
                size_t bigger = cap == 0 ? 64 : cap * 2;
                struct cache_bundle_item *grown = realloc(out->items, bigger * sizeof *grown);
                if (grown == NULL) {
                    set_err(err, err_size, "out of memory");
                    goto fail;
                }
                out->items = grown;
                cap = bigger;
            }
            struct cache_bundle_item *it = &out->items[out->count++];
            memset(it, 0, sizeof *it);
            it->type = (enum cache_bundle_type)type;
            it->offset = pos;
            it->data = payload; /* the whole payload until read_item */
            it->len = (size_t)len;
        }
        pos += FRAME_LEN + (size_t)len;
    }
    if (trailer == NULL) {
        set_err(err, err_size, "truncated at byte %zu: the bundle ends without its trailer",
                raw_len);
        goto fail;
    }

    /* The trailer's hash over everything before it. */
    unsigned char sum[SHA_LEN];
    if (sha256(raw, trailer_at, sum) != 0 || memcmp(sum, trailer + 32, SHA_LEN) != 0) {
        set_err(err, err_size,
                "checksum mismatch: the trailer's SHA-256 (byte %zu) does not match the "
                "bundle's content",
                trailer_at);
        goto fail;
    }

    /* Counts: the trailer's, the header's and the records'. */
    struct cache_bundle_counts told = {get_be(trailer, 8), get_be(trailer + 8, 8),
                                       get_be(trailer + 16, 8), get_be(trailer + 24, 8)};
    struct cache_bundle_counts found = {0, 0, 0, 0};
    for (size_t i = 0; i < out->count; i++) {
        switch (out->items[i].type) {
        case CACHE_BUNDLE_ENTRY:
            found.entries++;
            break;
        case CACHE_BUNDLE_TASK:
            found.tasks++;
            break;
        case CACHE_BUNDLE_JOB:
            found.jobs++;
            break;
        default:
            found.blobs++;
            break;
        }
    }
    if (!counts_equal(&told, &found) || !counts_equal(&out->counts, &found)) {
        set_err(err, err_size,
                "counts mismatch: the bundle holds %llu entries, %llu tasks, %llu jobs and "
                "%llu blobs; its trailer says %llu, %llu, %llu, %llu; its header %llu, %llu, "
                "%llu, %llu",
                (unsigned long long)found.entries, (unsigned long long)found.tasks,
                (unsigned long long)found.jobs, (unsigned long long)found.blobs,
                (unsigned long long)told.entries, (unsigned long long)told.tasks,
                (unsigned long long)told.jobs, (unsigned long long)told.blobs,
                (unsigned long long)out->counts.entries, (unsigned long long)out->counts.tasks,
                (unsigned long long)out->counts.jobs, (unsigned long long)out->counts.blobs);
        goto fail;
    }

    /* Each record's content, then what holds between them. */
    for (size_t i = 0; i < out->count; i++) {
        struct cache_bundle_item *it = &out->items[i];
        if (read_item(it, it->data, it->len, err, err_size) != 0)
            goto fail;
    }
    if (check_duplicates(out, err, err_size) != 0 || check_job_blobs(out, err, err_size) != 0)
        goto fail;
    return 0;

fail:
    cache_bundle_free(out);
    return -1;
}

int cache_bundle_read(const unsigned char *file, size_t len, struct cache_bundle *out, char *err,
                      size_t err_size)
{
    memset(out, 0, sizeof *out);
    if (len < 2 || file[0] != 0x1f || file[1] != 0x8b) {
        if (len < 2 && (len == 0 || file[0] == 0x1f))
            set_err(err, err_size,
                    "truncated at byte %zu: the file is empty or cut in its "
                    "first bytes",
                    len);
        else
            set_err(err, err_size, "bad magic: this is not a cloro-proxy bundle (not a gzip file)");
        return -1;
    }
    unsigned char *raw = NULL;
    size_t raw_len = 0, fail_at = 0;
    char why = 0;
    const char *zmsg = NULL;
    if (gunzip(file, len, &raw, &raw_len, &fail_at, &why, &zmsg) != 0) {
        switch (why) {
        case 't':
            set_err(err, err_size,
                    "truncated at byte %zu: the file ends inside the compressed stream", len);
            break;
        case 'c':
            set_err(err, err_size,
                    "checksum mismatch: the gzip check of the file fails (corrupted at or before "
                    "byte %zu)",
                    fail_at);
            break;
        case 'x':
            set_err(err, err_size, "bad bundle: %zu bytes follow the compressed stream at byte %zu",
                    len - fail_at, fail_at);
            break;
        case 'm':
            set_err(err, err_size, "out of memory inflating the bundle");
            break;
        default:
            set_err(err, err_size, "corrupted at byte %zu of the file: bad compressed data (%s)",
                    fail_at, zmsg != NULL ? zmsg : "zlib");
            break;
        }
        return -1;
    }
    return cache_bundle_parse(raw, raw_len, out, err, err_size);
}

void cache_bundle_free(struct cache_bundle *b)
{
    if (b == NULL)
        return;
    free(b->raw);
    free(b->items);
    json_decref(b->header);
    memset(b, 0, sizeof *b);
}
