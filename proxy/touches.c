/* touches.c: an open-addressing table of (key -> hits, last hit), at most
 * half full, with the list of used slots so a flush touches only those. */
#include "touches.h"
#include "writer.h"

#include <stdlib.h>
#include <string.h>

#define TOUCH_SLOTS 8192              /* a power of two */
#define TOUCH_MAX   (TOUCH_SLOTS / 2) /* keys gathered before a forced flush */

struct touch {
    unsigned char key[32];
    uint32_t hits;
    int64_t last_ms;
};

struct touches {
    struct touch slots[TOUCH_SLOTS];
    uint16_t used[TOUCH_MAX]; /* indexes of the occupied slots */
    size_t count;
};

struct touches *touches_new(void)
{
    struct touches *t = calloc(1, sizeof *t);
    if (t == NULL)
        abort();
    return t;
}

void touches_free(struct touches *t)
{
    free(t);
}

bool touches_add(struct touches *t, const unsigned char *key, int64_t now_ms)
{
    size_t i;
    memcpy(&i, key, sizeof i); /* the key is a SHA-256: any bytes hash well */
    for (i &= TOUCH_SLOTS - 1;; i = (i + 1) & (TOUCH_SLOTS - 1)) {
        struct touch *s = &t->slots[i];
        if (s->hits == 0) {
            memcpy(s->key, key, sizeof s->key);
            s->hits = 1;
            s->last_ms = now_ms;
            t->used[t->count++] = (uint16_t)i;
            break;
        }
        if (memcmp(s->key, key, sizeof s->key) == 0) {
            if (s->hits < UINT32_MAX)
                s->hits++;
            s->last_ms = now_ms;
            break;
        }
    }
    return t->count >= TOUCH_MAX;
}

void touches_flush(struct touches *t, struct cache_writer *w)
{
    for (size_t n = 0; n < t->count; n++) {
        struct touch *s = &t->slots[t->used[n]];
        cache_writer_touch(w, s->key, s->last_ms, s->hits);
        s->hits = 0;
    }
    t->count = 0;
}
