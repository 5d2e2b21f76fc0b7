/* fake_pricing: the credit price table (cloro-api.md §11) and the cost of one
 * validated sync monitor request. Pure; the table lives in the knobs. */
#ifndef FAKE_PRICING_H
#define FAKE_PRICING_H

#include <stdint.h>

#include "fake_validate.h"

/* Base prices are the async basis; sync calls add sync_surcharge. Defaults are the
 * cloro.dev pricing column of §11. */
struct fake_prices {
    int64_t chatgpt;        /* 5 */
    int64_t gemini;         /* 4 */
    int64_t grok;           /* 4 */
    int64_t copilot;        /* 5 */
    int64_t perplexity;     /* 4 */
    int64_t aimode;         /* 4 */
    int64_t google;         /* 3 */
    int64_t google_news;    /* 3 */
    int64_t aioverview;     /* +2, flat for aioverview and/or paaAioverview (OAS) */
    int64_t state;          /* +2 */
    int64_t chatgpt_paid;   /* +2 flat for rawResponse/searchQueries/ads/shopping */
    int64_t extra_page;     /* +2 per Google/News page after the first */
    int64_t expand_product; /* +1 per AI Mode product cluster returned */
    int64_t sync_surcharge; /* +2 on every sync monitor call */
};

void fake_pricing_defaults(struct fake_prices *p);

/* Credits a sync 200 for req costs, excluding AI Mode expandProducts clusters
 * (only known once the result exists: add expand_product * clusters). goto: 0. */
int64_t fake_pricing_cost(const struct fake_prices *p, const struct fake_validate_req *req);

#endif
