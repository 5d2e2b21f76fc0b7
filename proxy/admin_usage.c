/* admin_usage.c: the /_proxy/usage endpoint. Parameters: member (one
 * member's usage; "-" the anonymous one) and since (the first UTC day,
 * default today). Anything else, a repeated parameter or a bad value is a
 * 400 in cloro's envelope, with a detail per problem. */
#include "admin_usage.h"
#include "clock.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "usage.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <string.h>
#include <sys/queue.h>

bool admin_usage_member_valid(const char *text)
{
    size_t n = strlen(text);
    if (n == 0 || n >= USAGE_MEMBER_MAX)
        return false;
    for (const char *c = text; *c != '\0'; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            return false;
    return true;
}

static void add_problem(json_t *problems, const char *field, const char *message)
{
    json_array_append_new(problems, json_pack("{s:s, s:s}", "field", field, "message", message));
}

void admin_usage(struct request *r)
{
    struct server *srv = r->server;
    int64_t now = clock_wall_ms();
    char today[USAGE_DAY_LEN + 1];
    usage_day(now, today);
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    json_t *problems = json_array();
    const char *member = NULL, *since = NULL;
    if (r->query != NULL && evhttp_parse_query_str(r->query, &params) != 0)
        add_problem(problems, "query", "is not a valid query string");
    for (struct evkeyval *p = params.tqh_first; p != NULL; p = p->next.tqe_next) {
        const char **slot = strcmp(p->key, "member") == 0  ? &member
                            : strcmp(p->key, "since") == 0 ? &since
                                                           : NULL;
        if (slot == NULL)
            add_problem(problems, p->key, "is not a parameter of /_proxy/usage (member, since)");
        else if (*slot != NULL)
            add_problem(problems, p->key, "is given more than once");
        else
            *slot = p->value;
    }
    if (member != NULL && !admin_usage_member_valid(member))
        add_problem(problems, "member",
                    "must be a member's name (1-63 of A-Z a-z 0-9 . _ -), or - for requests "
                    "made without one");
    if (since != NULL && !usage_day_valid(since))
        add_problem(problems, "since", "must be a UTC day as YYYY-MM-DD");
    if (json_array_size(problems) > 0) {
        evhttp_clear_headers(&params);
        reply_error(r, PROXY_ERROR_VALIDATION, NULL, problems);
        return;
    }
    json_decref(problems);
    json_t *report =
        usage_report(srv->usage, srv->store, member, since != NULL ? since : today, now);
    evhttp_clear_headers(&params);
    if (report == NULL) {
        reply_error(r, PROXY_ERROR_INTERNAL, "The usage counters could not be read", NULL);
        return;
    }
    request_add_header(r, "Cache-Control", "no-store");
    reply_json(r, 200, report);
}
