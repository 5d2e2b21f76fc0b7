/* touches.h: cache hits gathered on the loop thread and handed to the writer
 * once a second, one op per key. Hit counts and LRU order are bookkeeping,
 * not answers: a durable txn per hit would cost a disk sync per hit, and the
 * bench showed it (37 KB written and one fdatasync per hit). */
#ifndef CLORO_TOUCHES_H
#define CLORO_TOUCHES_H

#include <stdbool.h>
#include <stdint.h>

struct touches;
struct cache_writer;

struct touches *touches_new(void);
void touches_free(struct touches *t);

/* Counts a hit of key at now_ms. Returns true when the buffer is full: flush
 * it now. */
bool touches_add(struct touches *t, const unsigned char *key, int64_t now_ms);

/* Hands every gathered hit to the writer and empties the buffer. */
void touches_flush(struct touches *t, struct cache_writer *w);

#endif
