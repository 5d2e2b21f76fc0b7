/* cli_store.c: the store of the cache and artifacts commands. */
#include "cli_store.h"
#include "config.h"

#include <stdio.h>
#include <sys/stat.h>

struct cache_store *cli_store_open(const char *config_path, const char *cache_dir, char *dir,
                                   size_t dir_size, int *status)
{
    struct config cfg;
    config_init(&cfg);
    struct config_errors errs = {0};
    if (config_path != NULL)
        config_load_file(&cfg, config_path, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "cloro-proxy: %s\n", errs.lines[i]);
    *status = errs.count > 0 ? 2 : 0;
    config_errors_free(&errs);
    snprintf(dir, dir_size, "%s", cache_dir != NULL ? cache_dir : cfg.cache_dir);
    config_deinit(&cfg);
    if (*status != 0)
        return NULL;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "cloro-proxy: no cache at '%s' (see --cache-dir or cache_dir)\n", dir);
        *status = 1;
        return NULL;
    }
    char err[512];
    struct cache_store_options so = {.dir = dir, .max_bytes = 0};
    struct cache_store *store = cache_store_open(&so, err, sizeof err);
    if (store == NULL) {
        fprintf(stderr, "cloro-proxy: %s\n", err);
        *status = 1;
    }
    return store;
}
