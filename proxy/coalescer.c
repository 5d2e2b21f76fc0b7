/* coalescer.c: a chained hash table of flights keyed by the 32-byte cache
 * key (already a SHA-256, so its first bytes are a fine hash). The table
 * doubles when it holds more flights than buckets. */
#include "coalescer.h"
#include "request.h"

#include <stdlib.h>
#include <string.h>

struct coalescer {
    struct flight **buckets;
    size_t bucket_count; /* a power of two */
    size_t flights;
    size_t waiting;
};

static void *zalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL)
        abort();
    return p;
}

static size_t bucket_of(const unsigned char *key, size_t bucket_count)
{
    size_t h;
    memcpy(&h, key, sizeof h);
    return h & (bucket_count - 1);
}

struct coalescer *coalescer_new(void)
{
    struct coalescer *c = zalloc(sizeof *c);
    c->bucket_count = 64;
    c->buckets = zalloc(c->bucket_count * sizeof *c->buckets);
    return c;
}

void coalescer_free(struct coalescer *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->bucket_count; i++) {
        while (c->buckets[i] != NULL) {
            struct flight *f = c->buckets[i];
            c->buckets[i] = f->next;
            free(f);
        }
    }
    free(c->buckets);
    free(c);
}

struct flight *coalescer_find(struct coalescer *c, const unsigned char *key)
{
    for (struct flight *f = c->buckets[bucket_of(key, c->bucket_count)]; f != NULL; f = f->next)
        if (memcmp(f->key, key, sizeof f->key) == 0)
            return f;
    return NULL;
}

static void grow(struct coalescer *c)
{
    size_t count = c->bucket_count * 2;
    struct flight **buckets = zalloc(count * sizeof *buckets);
    for (size_t i = 0; i < c->bucket_count; i++) {
        struct flight *f = c->buckets[i];
        while (f != NULL) {
            struct flight *next = f->next;
            size_t b = bucket_of(f->key, count);
            f->next = buckets[b];
            buckets[b] = f;
            f = next;
        }
    }
    free(c->buckets);
    c->buckets = buckets;
    c->bucket_count = count;
}

struct flight *coalescer_begin(struct coalescer *c, const unsigned char *key,
                               struct request *leader)
{
    if (c->flights >= c->bucket_count)
        grow(c);
    struct flight *f = zalloc(sizeof *f);
    memcpy(f->key, key, sizeof f->key);
    f->leader = leader;
    size_t b = bucket_of(key, c->bucket_count);
    f->next = c->buckets[b];
    c->buckets[b] = f;
    c->flights++;
    return f;
}

void coalescer_join(struct coalescer *c, struct flight *f, struct request *waiter)
{
    c->waiting++;
    waiter->next_waiter = NULL;
    if (f->last_waiter != NULL)
        f->last_waiter->next_waiter = waiter;
    else
        f->waiters = waiter;
    f->last_waiter = waiter;
    f->waiter_count++;
}

void coalescer_end(struct coalescer *c, struct flight *f)
{
    struct flight **link = &c->buckets[bucket_of(f->key, c->bucket_count)];
    while (*link != NULL && *link != f)
        link = &(*link)->next;
    if (*link == f) {
        *link = f->next;
        c->flights--;
        c->waiting -= f->waiter_count;
    }
    f->next = NULL;
}

void coalescer_flight_free(struct flight *f)
{
    free(f);
}

size_t coalescer_flights(const struct coalescer *c)
{
    return c->flights;
}

size_t coalescer_waiting(const struct coalescer *c)
{
    return c->waiting;
}
