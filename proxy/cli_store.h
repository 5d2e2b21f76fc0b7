/* cli_store.h: how the command line finds and opens the store a server
 * uses: --cache-dir, else cache_dir of --config, else the default; opened
 * without a map size, so it adopts the one the running server set. */
#ifndef CLORO_CLI_STORE_H
#define CLORO_CLI_STORE_H

#include "store.h"

#include <stddef.h>

/* Opens the store. On failure prints why (each config problem with its
 * line) and returns NULL with *status 2 (bad config) or 1 (no store). dir
 * receives the directory used. */
struct cache_store *cli_store_open(const char *config_path, const char *cache_dir, char *dir,
                                   size_t dir_size, int *status);

#endif
