/* admin_mode.c: GET/POST /_proxy/mode and the switch of modes (admin_mode.h).
 * The mode is one field of the server, read where it acts (forward.c,
 * task_submit.c, task_follow.c, artifacts.c, cache_io.c, answer.c); a switch
 * only has to wake what offline put to sleep. Loop thread only. */
#include "admin_mode.h"
#include "artifacts.h"
#include "clock.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "tasks.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MODE_BODY_MAX 4096

void server_set_mode(struct server *srv, enum proxy_mode mode, const char *source)
{
    enum proxy_mode previous = srv->mode;
    if (previous == mode)
        return;
    srv->mode = mode;
    srv->mode_since_ms = clock_wall_ms();
    log_info("mode_changed", "from=%s to=%s by=%s", proxy_mode_name(previous),
             proxy_mode_name(mode), source);
    if (previous != PROXY_MODE_OFFLINE || mode == PROXY_MODE_OFFLINE)
        return;
    if (srv->artifacts != NULL)
        artifacts_resume(srv->artifacts);
    if (srv->tasks != NULL)
        tasks_resume_following(srv->tasks);
}

static json_t *mode_view(const struct server *srv)
{
    char since[40];
    json_t *view = json_pack("{s:s, s:s}", "mode", proxy_mode_name(srv->mode), "since",
                             clock_format_iso8601(since, sizeof since, srv->mode_since_ms));
    if (view == NULL)
        abort();
    return view;
}

static void invalid(struct request *r, const char *field, const char *message)
{
    json_t *details = json_pack("[{s:s, s:s}]", "field", field, "message", message);
    reply_error(r, PROXY_ERROR_VALIDATION, NULL, details);
}

void admin_mode(struct request *r)
{
    struct server *srv = r->server;
    if (strcmp(r->method, "POST") != 0) {
        reply_json(r, 200, mode_view(srv));
        return;
    }
    struct evbuffer *buf = request_body(r);
    size_t len = evbuffer_get_length(buf);
    json_t *doc = len > 0 && len <= MODE_BODY_MAX
                      ? json_loadb((const char *)evbuffer_pullup(buf, -1), len, 0, NULL)
                      : NULL;
    const char *word = json_string_value(json_object_get(doc, "mode"));
    enum proxy_mode mode;
    if (!json_is_object(doc) || json_object_size(doc) != 1 || word == NULL) {
        json_decref(doc);
        invalid(r, "body", "expected a JSON object such as {\"mode\":\"offline\"}");
        return;
    }
    if (proxy_mode_parse(word, &mode) != 0) {
        json_decref(doc);
        invalid(r, "mode", "must be online, offline, record or refresh");
        return;
    }
    json_decref(doc);
    enum proxy_mode previous = srv->mode;
    server_set_mode(srv, mode, "admin");
    json_t *view = mode_view(srv);
    json_object_set_new(view, "previous", json_string(proxy_mode_name(previous)));
    reply_json(r, 200, view);
}
