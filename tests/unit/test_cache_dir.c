/* test_cache_dir.c: cache_dir_prepare creates the cache directory and its
 * parents private to the user (0700), accepts one that exists, and refuses a
 * path that is not a directory with a message naming it. Works in a fresh
 * directory under /tmp, removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache_dir.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char base[64];
    mode_t old_umask;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->base, sizeof f->base, "/tmp/cloro-unit-cachedir-XXXXXX");
    if (mkdtemp(f->base) == NULL) {
        free(f);
        return -1;
    }
    /* With no umask the mode on disk is exactly the mode mkdir was given. */
    f->old_umask = umask(0);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    umask(f->old_umask);
    nftw(f->base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static char *join(const struct fixture *f, const char *rel)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", f->base, rel) > 0);
    return path;
}

static void assert_dir_mode(const char *path, mode_t mode)
{
    struct stat st;
    if (stat(path, &st) != 0)
        fail_msg("'%s' does not exist", path);
    assert_true(S_ISDIR(st.st_mode));
    if ((st.st_mode & 07777) != mode)
        fail_msg("'%s' has mode %04o, want %04o", path, (unsigned)(st.st_mode & 07777),
                 (unsigned)mode);
}

static void test_creates_nested_0700(void **state)
{
    struct fixture *f = *state;
    char *path = join(f, "a/b/c");
    char err[512] = "";
    if (cache_dir_prepare(path, err, sizeof err) != 0)
        fail_msg("cache_dir_prepare(%s): %s", path, err);
    char *a = join(f, "a");
    char *ab = join(f, "a/b");
    assert_dir_mode(a, 0700);
    assert_dir_mode(ab, 0700);
    assert_dir_mode(path, 0700);
    /* A second call on the same tree is fine. */
    assert_int_equal(cache_dir_prepare(path, err, sizeof err), 0);
    free(a);
    free(ab);
    free(path);
}

static void test_trailing_slash(void **state)
{
    struct fixture *f = *state;
    char *path = join(f, "x/y/");
    char *y = join(f, "x/y");
    char err[512] = "";
    assert_int_equal(cache_dir_prepare(path, err, sizeof err), 0);
    assert_dir_mode(y, 0700);
    free(y);
    free(path);
}

static void test_existing_dir_ok(void **state)
{
    struct fixture *f = *state;
    char *path = join(f, "existing");
    assert_int_equal(mkdir(path, 0755), 0);
    char *marker = join(f, "existing/entry");
    int fd = open(marker, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    char err[512] = "";
    if (cache_dir_prepare(path, err, sizeof err) != 0)
        fail_msg("cache_dir_prepare(%s): %s", path, err);
    /* Its content is left alone. */
    assert_int_equal(access(marker, F_OK), 0);
    free(marker);
    free(path);
}

static void test_file_in_the_way_fails(void **state)
{
    struct fixture *f = *state;
    char *path = join(f, "plainfile");
    /* Executable, so only the "is it a directory" check can refuse it. */
    int fd = open(path, O_CREAT | O_WRONLY, 0700);
    assert_true(fd >= 0);
    close(fd);
    char err[512] = "";
    assert_int_equal(cache_dir_prepare(path, err, sizeof err), -1);
    if (strstr(err, path) == NULL)
        fail_msg("message does not name '%s': %s", path, err);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode)); /* still the file */

    /* A file as a parent fails too, naming the path. */
    char *below = join(f, "plainfile/cache");
    err[0] = '\0';
    assert_int_equal(cache_dir_prepare(below, err, sizeof err), -1);
    if (strstr(err, f->base) == NULL)
        fail_msg("message does not name the path: %s", err);
    free(below);
    free(path);
}

static void test_empty_or_huge_path_fails(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(cache_dir_prepare("", err, sizeof err), -1);
    assert_true(err[0] != '\0');

    size_t len = 5000;
    char *huge = malloc(len + 1);
    assert_non_null(huge);
    memset(huge, 'd', len);
    huge[0] = '/';
    huge[len] = '\0';
    err[0] = '\0';
    assert_int_equal(cache_dir_prepare(huge, err, sizeof err), -1);
    assert_true(err[0] != '\0');
    free(huge);
}

static void test_relative_path(void **state)
{
    struct fixture *f = *state;
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->base), 0);
    char err[512] = "";
    int rc = cache_dir_prepare("rel/cache", err, sizeof err);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        fail_msg("cache_dir_prepare(rel/cache): %s", err);
    char *path = join(f, "rel/cache");
    assert_dir_mode(path, 0700);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_creates_nested_0700, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_slash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_existing_dir_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_in_the_way_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_or_huge_path_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_path, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
