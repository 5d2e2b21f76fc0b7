/* test_forward_headers.c: which upstream response headers reach the client
 * and which client request headers reach the upstream (forward.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "forward.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Checks name as given, all lower case and all upper case. */
static void check_cases(bool (*pred)(const char *), const char *what, const char *name, bool want)
{
    char lower[128], upper[128];
    size_t n = strlen(name);
    assert_true(n < sizeof lower);
    for (size_t i = 0; i <= n; i++) {
        lower[i] = (char)tolower((unsigned char)name[i]);
        upper[i] = (char)toupper((unsigned char)name[i]);
    }
    const char *forms[] = {name, lower, upper};
    for (size_t i = 0; i < 3; i++)
        if (pred(forms[i]) != want)
            fail_msg("%s(\"%s\") should be %s", what, forms[i], want ? "true" : "false");
}

static void relays(const char *name, bool want)
{
    check_cases(forward_relays_response_header, "forward_relays_response_header", name, want);
}

static void passes(const char *name, bool want)
{
    check_cases(forward_passes_request_header, "forward_passes_request_header", name, want);
}

static void test_response_headers_relayed(void **state)
{
    (void)state;
    const char *yes[] = {
        /* cloro-api.md section 2 */
        "Content-Type",
        "X-Request-ID",
        "X-Request-Id",
        "X-Latency-Ms",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-Concurrency-Limit",
        "X-Concurrency-Current",
        "X-Concurrency-Remaining",
        "X-Concurrent-Limit",
        "X-Concurrent-Current",
        "X-Concurrent-Remaining",
        "X-Credits-Remaining",
        "X-Credits-Charged",
        "Retry-After",
        "Deprecation",
        "Sunset",
        "Link",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        relays(yes[i], true);
}

static void test_response_headers_dropped(void **state)
{
    (void)state;
    const char *no[] = {
        "Server",
        "Set-Cookie",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Date",
        "Content-Encoding",
        "X-Proxy-Anything",
        "X-Proxy-Request-ID",
        "X-Proxy-Cache",
        "Vary",
        "Proxy-Authenticate",
        "Upgrade",
        "Trailer",
        "Linked",
        "Content-Type-X",
        "Sunsets",
        "",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        relays(no[i], false);
}

static void test_request_headers_passed(void **state)
{
    (void)state;
    const char *yes[] = {"Content-Type",    "Accept",   "User-Agent",      "X-Request-ID",
                         "Accept-Language", "X-Custom", "Idempotency-Key", "Cache-Control"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        passes(yes[i], true);
}

static void test_request_headers_dropped(void **state)
{
    (void)state;
    const char *no[] = {/* hop-by-hop, RFC 9110 section 7.6.1 */
                        "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                        "Transfer-Encoding", "Upgrade", "Proxy-Authorization",
                        /* framed by libcurl */
                        "Host", "Content-Length", "Expect", "Accept-Encoding",
                        /* decided separately: the shared key replaces it */
                        "Authorization",
                        /* the proxy's own controls */
                        "X-Proxy-Cache", "X-Proxy-Anything", "X-Proxy-",
                        /* the sample a cached answer is kept under (key.h) */
                        "X-Cache-Sample", "x-cache-sample"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        passes(no[i], false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_headers_relayed),
        cmocka_unit_test(test_response_headers_dropped),
        cmocka_unit_test(test_request_headers_passed),
        cmocka_unit_test(test_request_headers_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
