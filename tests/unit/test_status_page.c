/* test_status_page.c: the status page compiled into the binary is the whole
 * self-contained document (every number has its id, nothing is loaded from
 * elsewhere), and its Content-Security-Policy hashes exactly its inline
 * <script> and <style> blocks, with no 'unsafe-inline'. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "status_page.h"

#include <stdlib.h>
#include <string.h>

static void test_csp_hashes_inline_blocks(void **state)
{
    (void)state;
    /* SHA-256 of "a" and of "b{}" in base64. */
    const char *html = "<html><style>b{}</style><script>a</script></html>";
    char *csp = status_page_csp(html, strlen(html));
    assert_string_equal(csp, "default-src 'none'; script-src "
                             "'sha256-ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs='; style-src "
                             "'sha256-7yqHVAesot11p6HczDsgKRipvI5UPgs97z80zNXlans='; connect-src "
                             "'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                             "frame-ancestors 'none'");
    free(csp);
}

static void test_embedded_page(void **state)
{
    (void)state;
    const char *page = (const char *)status_page_html;
    assert_true(status_page_html_len > 1000);
    assert_int_equal(strlen(page), status_page_html_len);
    assert_memory_equal(page, "<!DOCTYPE html>", 15);
    const char *ids[] = {"id=\"hit-ratio\"",          "id=\"credits-saved\"",
                         "id=\"in-flight\"",          "id=\"queued\"",
                         "id=\"requests-total\"",     "id=\"artifacts-pending\"",
                         "id=\"artifacts-captured\"", "id=\"artifacts-lost\"",
                         "id=\"recent-requests\"",    "id=\"chart\"",
                         "id=\"usage-status\"",       "id=\"mode\""};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (strstr(page, ids[i]) == NULL)
            fail_msg("the page has no %s", ids[i]);
    /* Self-contained: nothing loaded from elsewhere. */
    assert_null(strstr(page, "src=\""));
    assert_null(strstr(page, "https://"));
    assert_null(strstr(page, "<link rel=\"stylesheet\""));
    assert_null(strstr(page, "@import"));
    char *csp = status_page_csp(page, status_page_html_len);
    assert_non_null(strstr(csp, "script-src 'sha256-"));
    assert_non_null(strstr(csp, "style-src 'sha256-"));
    assert_null(strstr(csp, "unsafe"));
    free(csp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csp_hashes_inline_blocks),
        cmocka_unit_test(test_embedded_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
