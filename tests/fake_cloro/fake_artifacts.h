/* fake_artifacts: the HTML artifact host (cloro-api.md §12, §15 item 26). Remembers
 * (uuid -> generated_at, pages, text) in a bounded ring (oldest evicted) and renders
 * deterministic HTML for /results/<uuid>/page-<n>.html. Pure: time is passed in. */
#ifndef FAKE_ARTIFACTS_H
#define FAKE_ARTIFACTS_H

#include <stddef.h>
#include <stdint.h>

struct fake_artifacts;

enum fake_artifacts_status {
    FAKE_ARTIFACT_FOUND,
    FAKE_ARTIFACT_EXPIRED,
    FAKE_ARTIFACT_UNKNOWN, /* bad path, unknown uuid or page out of range */
};

struct fake_artifacts *fake_artifacts_new(size_t capacity);
void fake_artifacts_free(struct fake_artifacts *a);

/* Registers uuid (36 chars) with pages pages; title and text are copied. */
void fake_artifacts_add(struct fake_artifacts *a, const char *uuid, int pages, const char *title,
                        const char *text, int64_t now_ms);

/* Looks up an artifact path. On FOUND, *html_out is a new malloc'd page, padded
 * with an HTML comment before </body> to at least min_bytes (0: no padding); the
 * padding is pseudo-random (so it does not compress away) but deterministic per
 * uuid and page, so every fetch of a page returns the same bytes. An artifact is
 * expired once now_ms - generated_at >= ttl_ms: the ttl is the caller's current
 * one, so changing it moves the expiry of artifacts already minted as well. */
enum fake_artifacts_status fake_artifacts_lookup(struct fake_artifacts *a, const char *path,
                                                 int64_t now_ms, int64_t ttl_ms, size_t min_bytes,
                                                 char **html_out);

#endif
