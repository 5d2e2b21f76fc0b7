/* budget.c: the daily credit budget check of budget.h. The budget comes
 * from the member table (members.h), the credits charged today from the
 * usage table; the budget resets at 00:00 UTC. */
#include "budget.h"
#include "clock.h"
#include "member.h"
#include "members.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "usage.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

bool budget_allows(int64_t budget, uint64_t charged)
{
    return budget <= 0 || charged < (uint64_t)budget;
}

bool budget_admit(struct request *r)
{
    struct server *srv = r->server;
    if (r->member[0] == '\0' || srv->members == NULL || srv->usage == NULL)
        return true;
    const struct member *m = members_find(srv->members, r->member);
    int64_t budget = m != NULL ? m->daily_credit_budget : 0;
    if (budget <= 0)
        return true;
    int64_t now = clock_wall_ms();
    uint64_t charged = usage_charged_today(srv->usage, r->member, now);
    if (budget_allows(budget, charged))
        return true;
    char today[USAGE_DAY_LEN + 1], resets[32], message[200];
    usage_day(now, today);
    clock_format_iso8601(resets, sizeof resets, usage_day_start_ms(today) + 86400000);
    snprintf(message, sizeof message,
             "Member %s has spent its daily credit budget (%lld credits); it resets at %s",
             r->member, (long long)budget, resets);
    json_t *details = json_pack("{s:I, s:I, s:s}", "budget", (json_int_t)budget, "charged",
                                (json_int_t)charged, "resets_at", resets);
    reply_error(r, PROXY_ERROR_BUDGET_EXCEEDED, message, details);
    return false;
}
