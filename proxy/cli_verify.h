/* cli_verify.h: `cloro-proxy cache verify [--list]`: reads back every record
 * of a store and checks it (entries, captured artifacts, task records). */
#ifndef CLORO_CLI_VERIFY_H
#define CLORO_CLI_VERIFY_H

#include "store.h"

#include <stdbool.h>

/* Verifies the open store: every entry decodes and passes its checksum and
 * its meta's size is the record's; every captured artifact job has its blob,
 * which inflates to content of the job's size and SHA-256; every task record
 * is not empty. With list, prints one line per intact entry:
 * "<key hex> <SHA-256 hex of the body>". Prints a summary; returns 0 when
 * everything is intact, 1 otherwise (or on a store error). */
int cli_verify_store(struct cache_store *store, bool list);

#endif
