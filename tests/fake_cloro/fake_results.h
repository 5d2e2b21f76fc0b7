/* fake_results: deterministic, provider-shaped 200 bodies (cloro-api.md §5, §15
 * item 10). The seed is derived from the endpoint and the normalized request
 * fields, never from raw bytes, so reordered keys or whitespace give the same
 * result. Pure: no clock, no libevent; html URLs are passed in. */
#ifndef FAKE_RESULTS_H
#define FAKE_RESULTS_H

#include <stdint.h>

#include <jansson.h>

#include "fake_validate.h"

/* Canonical "k=v\n" string of every semantically relevant field of req.
 * Returns a new malloc'd string. */
char *fake_results_seed_key(const struct fake_validate_req *req);

/* Number of HTML pages a response for req has: 1 for AI engines, pages for
 * Google Search and News (0 for goto). */
int fake_results_page_count(const struct fake_validate_req *req);

/* Builds the 200 body. html_base is "<artifact base>/results/<uuid>" when
 * include.html is set (URLs become html_base + "/page-<n>.html"), else NULL.
 * *text_out (if not NULL) receives a new malloc'd plain text of the result for
 * the artifact page; *clusters_out (if not NULL) the number of AI Mode product
 * clusters returned (billed per cluster). Returns a new reference. */
json_t *fake_results_build(const struct fake_validate_req *req, const char *html_base,
                           char **text_out, int *clusters_out);

#endif
