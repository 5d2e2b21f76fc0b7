/* cli_artifacts.h: `cloro-proxy artifacts ls|get ID|retry ...`, on the same
 * LMDB store as a running server. */
#ifndef CLORO_CLI_ARTIFACTS_H
#define CLORO_CLI_ARTIFACTS_H

/* argv[0] is "artifacts". Returns the exit status: 0, 1 (store error, no
 * such artifact) or 2 (usage). */
int cli_artifacts_main(int argc, char **argv);

#endif
