/* cli_usage.h: `cloro-proxy usage`, the usage counters (usage.h) as a table
 * in the terminal, read from the store (read-only; works while the server
 * runs, which writes them once a second). */
#ifndef CLORO_CLI_USAGE_H
#define CLORO_CLI_USAGE_H

/* argv[0] is "usage". Returns the exit status: 0, 1 (store error) or 2
 * (usage). */
int cli_usage_main(int argc, char **argv);

#endif
