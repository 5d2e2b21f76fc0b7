/* cache_dir.c: creates and checks the cache directory. Private to the user
 * the proxy runs as (0700): cached answers are paid for and may be sensitive. */
#include "cache_dir.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int make_one(const char *path, char *err, size_t err_size)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    snprintf(err, err_size, "cannot create directory '%s': %s", path, strerror(errno));
    return -1;
}

int cache_dir_prepare(const char *path, char *err, size_t err_size)
{
    char buf[4096];
    if (path[0] == '\0' || strlen(path) >= sizeof buf) {
        snprintf(err, err_size, "cache_dir must be a directory path of 1 to %zu bytes",
                 sizeof buf - 1);
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (make_one(buf, err, err_size) != 0)
            return -1;
        *p = '/';
    }
    if (make_one(buf, err, err_size) != 0)
        return -1;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_size, "'%s' exists but is not a directory", path);
        return -1;
    }
    if (access(path, W_OK | X_OK) != 0) {
        snprintf(err, err_size, "directory '%s' is not writable: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
