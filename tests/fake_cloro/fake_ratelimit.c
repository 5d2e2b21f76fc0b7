/* fake_ratelimit: a small array of (sha256(bucket), window, count). When full, a
 * bucket whose window is over is reused, else the oldest window is evicted. */
#include "fake_ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "fake_util.h"

#define FAKE_RATELIMIT_SLOTS 4096

struct fake_ratelimit_slot {
    char key[65];
    int64_t window; /* now_ms / 1000 */
    int64_t count;
};

struct fake_ratelimit {
    struct fake_ratelimit_slot *slots;
    size_t used;
};

struct fake_ratelimit *fake_ratelimit_new(void)
{
    struct fake_ratelimit *rl = fake_xcalloc(1, sizeof(*rl));
    rl->slots = fake_xcalloc(FAKE_RATELIMIT_SLOTS, sizeof(*rl->slots));
    return rl;
}

void fake_ratelimit_free(struct fake_ratelimit *rl)
{
    if (rl == NULL)
        return;
    free(rl->slots);
    free(rl);
}

void fake_ratelimit_reset(struct fake_ratelimit *rl)
{
    rl->used = 0;
}

bool fake_ratelimit_take(struct fake_ratelimit *rl, const char *bucket, int64_t now_ms,
                         int64_t limit, int64_t *remaining)
{
    char key[65];
    fake_util_sha256_hex(bucket, strlen(bucket), key);
    int64_t window = now_ms / 1000;
    struct fake_ratelimit_slot *slot = NULL;
    for (size_t i = 0; i < rl->used; i++) {
        if (strcmp(rl->slots[i].key, key) == 0) {
            slot = &rl->slots[i];
            break;
        }
    }
    if (slot == NULL) {
        if (rl->used < FAKE_RATELIMIT_SLOTS) {
            slot = &rl->slots[rl->used++];
        } else {
            slot = &rl->slots[0];
            for (size_t i = 0; i < rl->used; i++) {
                if (rl->slots[i].window < slot->window)
                    slot = &rl->slots[i];
            }
        }
        memcpy(slot->key, key, sizeof(key));
        slot->window = window;
        slot->count = 0;
    }
    if (slot->window != window) {
        slot->window = window;
        slot->count = 0;
    }
    slot->count++;
    *remaining = limit - slot->count > 0 ? limit - slot->count : 0;
    return slot->count <= limit;
}
