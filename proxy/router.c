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

#define M_GET    (1u << 0)
#define M_HEAD   (1u << 1)
#define M_POST   (1u << 2)
#define M_DELETE (1u << 3)

struct admin_route {
    const char *path;
    bool prefix; /* path is a prefix followed by one more segment */
    unsigned methods;
    const char *allow;
    enum route route;
};

static const struct admin_route admin_routes[] = {
    {"/_proxy/healthz", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_ADMIN_HEALTHZ},
    {"/_proxy/stats", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_ADMIN_STATS},
    {"/_proxy/cache/stats", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_CACHE_STATS},
    {"/_proxy/cache/entries/", true, M_GET | M_HEAD | M_DELETE, "GET, HEAD, DELETE",
     ROUTE_CACHE_ENTRY},
    {"/_proxy/cache/purge", false, M_POST, "POST", ROUTE_CACHE_PURGE},
    {"/_proxy/metrics", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_ADMIN_METRICS},
    {"/_proxy/usage", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_ADMIN_USAGE},
    {"/_proxy/recent", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_ADMIN_RECENT},
    {"/_proxy/mode", false, M_GET | M_HEAD | M_POST, "GET, HEAD, POST", ROUTE_ADMIN_MODE},
    {"/_proxy/", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_STATUS_PAGE},
    {"/_proxy", false, M_GET | M_HEAD, "GET, HEAD", ROUTE_STATUS_PAGE},
};

static unsigned method_bit(const char *method)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "DELETE"};
    for (unsigned i = 0; i < 4; i++)
        if (strcmp(method, names[i]) == 0)
            return 1u << i;
    return 0;
}

static const struct admin_route *find_admin(const char *path)
{
    for (size_t i = 0; i < sizeof admin_routes / sizeof admin_routes[0]; i++) {
        const struct admin_route *a = &admin_routes[i];
        size_t len = strlen(a->path);
        if (!a->prefix && strcmp(path, a->path) == 0)
            return a;
        if (a->prefix && strncmp(path, a->path, len) == 0 && path[len] != '\0' &&
            strchr(path + len, '/') == NULL)
            return a;
    }
    return NULL;
}

const char *router_allowed_methods(const char *path)
{
    if (strncmp(path, "/_proxy/artifacts/", 18) == 0)
        return "GET, HEAD";
    const struct admin_route *a = find_admin(path);
    return a != NULL ? a->allow : "";
}

enum route router_match(const char *method, const char *path)
{
    if (path[0] != '/' || has_dot_segment(path))
        return ROUTE_NOT_FOUND;
    if (strncmp(path, "/v1/", 4) == 0 && path[4] != '\0')
        return ROUTE_UPSTREAM;
    static const char artifacts[] = "/_proxy/artifacts/";
    if (strncmp(path, artifacts, sizeof artifacts - 1) == 0 && path[sizeof artifacts - 1] != '\0')
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ? ROUTE_ARTIFACT
                                                                         : ROUTE_METHOD_NOT_ALLOWED;
    const struct admin_route *a = find_admin(path);
    if (a == NULL)
        return ROUTE_NOT_FOUND;
    return (a->methods & method_bit(method)) != 0 ? a->route : ROUTE_METHOD_NOT_ALLOWED;
}
