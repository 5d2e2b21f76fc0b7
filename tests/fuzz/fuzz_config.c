/* fuzz_config: the configuration file parser (proxy/config.c over libinih)
 * and its value parsers. The input is written to a temp file and loaded over
 * a default config; then config_dump must not crash either. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char path[64];

static void remove_temp(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz_config.%ld.conf", (long)getpid());
        atexit(remove_temp);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);

    struct config cfg;
    struct config_errors errs = {0};
    config_init(&cfg);
    size_t n = config_load_file(&cfg, path, &errs);
    if (n != errs.count)
        abort();
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        config_dump(&cfg, null);
        fclose(null);
    }
    config_errors_free(&errs);
    config_deinit(&cfg);
    return 0;
}
