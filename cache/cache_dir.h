/* cache_dir.h: the cache directory on disk: created if missing (mode 0700,
 * parents too) and checked to be a writable directory before anything is
 * stored there. */
#ifndef CLORO_CACHE_DIR_H
#define CLORO_CACHE_DIR_H

#include <stddef.h>

/* Returns 0, or -1 with a sentence naming the path and the cause in err. */
int cache_dir_prepare(const char *path, char *err, size_t err_size);

#endif
