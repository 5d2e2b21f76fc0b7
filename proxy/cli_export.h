/* cli_export.h: `cloro-proxy export` and `cloro-proxy import`, the portable
 * copy of a cache (bundle.h): answers, async task results and captured
 * artifacts out of one store and into another, live or stopped. */
#ifndef CLORO_CLI_EXPORT_H
#define CLORO_CLI_EXPORT_H

/* argv[0] is "export". Returns the exit status: 0, 1 (store or file
 * error) or 2 (usage, bad configuration). */
int cli_export_main(int argc, char **argv);

/* argv[0] is "import". Returns 0, 1 (a bundle that is not valid, nothing
 * imported; a store or file error) or 2 (usage, bad configuration). */
int cli_import_main(int argc, char **argv);

#endif
