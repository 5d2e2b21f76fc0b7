/* mode.c: the names of the proxy's modes (mode.h). What each mode does lives
 * where it acts: forward.c, task_submit.c, task_follow.c, artifacts.c,
 * cache_io.c, answer.c; switching is admin_mode.c's. */
#include "mode.h"

#include <stddef.h>
#include <string.h>

static const char *const names[PROXY_MODE_COUNT] = {
    [PROXY_MODE_ONLINE] = "online",
    [PROXY_MODE_OFFLINE] = "offline",
    [PROXY_MODE_RECORD] = "record",
    [PROXY_MODE_REFRESH] = "refresh",
};

const char *proxy_mode_name(enum proxy_mode mode)
{
    return (unsigned)mode < PROXY_MODE_COUNT ? names[mode] : "?";
}

int proxy_mode_parse(const char *text, enum proxy_mode *out)
{
    if (text == NULL)
        return -1;
    for (int i = 0; i < PROXY_MODE_COUNT; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (enum proxy_mode)i;
            return 0;
        }
    }
    return -1;
}
