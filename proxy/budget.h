/* budget.h: a member's daily credit budget (daily_credit_budget, member.h).
 * Checked before a paid call goes upstream (forward.c: a monitor call that
 * misses the cache, refreshes or bypasses it): once the credits charged to
 * the member today (UTC, usage.h) reach its budget, the call is answered 403
 * BUDGET_EXCEEDED. Cache hits and calls coalesced onto another's stay free
 * and allowed. Calls already in flight when the budget is reached finish. */
#ifndef CLORO_BUDGET_H
#define CLORO_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

struct request;

/* True when r may go upstream; otherwise r has been answered (403, details
 * {budget, charged, resets_at}) and ended. */
bool budget_admit(struct request *r);

/* The budget decision alone: true when charged credits leave room under
 * budget (0: none). */
bool budget_allows(int64_t budget, uint64_t charged);

#endif
