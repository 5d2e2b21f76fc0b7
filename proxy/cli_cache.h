/* cli_cache.h: `cloro-proxy cache stats|ls|show KEY|purge ...`, on the same
 * LMDB store as a running server (LMDB is multi-process). */
#ifndef CLORO_CLI_CACHE_H
#define CLORO_CLI_CACHE_H

/* argv[0] is "cache". Returns the exit status: 0, 1 (store error, absent
 * entry) or 2 (usage). */
int cli_cache_main(int argc, char **argv);

#endif
