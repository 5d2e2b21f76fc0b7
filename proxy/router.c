/* router.c: the proxy's route table. /v1/ is cloro's API (cloro-api.md
 * section 3), forwarded as is; /_proxy/ is the proxy's own; the rest is 404. */
#include "router.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* True when the path holds a "." or ".." segment, literally or as %2e. */
static bool has_dot_segment(const char *path)
{
    const char *seg = path;
    while (seg != NULL) {
        if (*seg == '/')
            seg++;
        const char *end = strchr(seg, '/');
        size_t len = end != NULL ? (size_t)(end - seg) : strlen(seg);
        size_t dots = 0;
        size_t i = 0;
        bool only_dots = len > 0;
        while (i < len && only_dots) {
            if (seg[i] == '.') {
                dots++;
                i++;
            } else if (len - i >= 3 && strncasecmp(seg + i, "%2e", 3) == 0) {
                dots++;
                i += 3;
            } else {
                only_dots = false;
            }
        }
        if (only_dots && (dots == 1 || dots == 2))
            return true;
        seg = end;
    }
    return false;
}

struct admin_route {
    const char *path;
    enum route route;
};

static const struct admin_route admin_routes[] = {
    {"/_proxy/healthz", ROUTE_ADMIN_HEALTHZ},
    {"/_proxy/stats", ROUTE_ADMIN_STATS},
};

enum route router_match(const char *method, const char *path)
{
    if (path[0] != '/' || has_dot_segment(path))
        return ROUTE_NOT_FOUND;
    if (strncmp(path, "/v1/", 4) == 0 && path[4] != '\0')
        return ROUTE_UPSTREAM;
    for (size_t i = 0; i < sizeof admin_routes / sizeof admin_routes[0]; i++) {
        if (strcmp(path, admin_routes[i].path) != 0)
            continue;
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            return admin_routes[i].route;
        return ROUTE_METHOD_NOT_ALLOWED;
    }
    return ROUTE_NOT_FOUND;
}
