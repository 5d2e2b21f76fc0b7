/* fake_pricing: base price per provider plus the add-ons of §11 (state, ChatGPT paid
 * flags, AI Overview, extra pages) and the sync surcharge. */
#include "fake_pricing.h"

void fake_pricing_defaults(struct fake_prices *p)
{
    p->chatgpt = 5;
    p->gemini = 4;
    p->grok = 4;
    p->copilot = 5;
    p->perplexity = 4;
    p->aimode = 4;
    p->google = 3;
    p->google_news = 3;
    p->aioverview = 2;
    p->state = 2;
    p->chatgpt_paid = 2;
    p->extra_page = 2;
    p->expand_product = 1;
    p->sync_surcharge = 2;
}

int64_t fake_pricing_cost(const struct fake_prices *p, const struct fake_validate_req *req)
{
    int64_t cost = 0;
    switch (req->endpoint) {
    case FAKE_EP_CHATGPT:
        cost = p->chatgpt;
        if (req->include &
            (FAKE_INC_RAW_RESPONSE | FAKE_INC_SEARCH_QUERIES | FAKE_INC_ADS | FAKE_INC_SHOPPING))
            cost += p->chatgpt_paid;
        break;
    case FAKE_EP_GEMINI:
        cost = p->gemini;
        break;
    case FAKE_EP_GROK:
        cost = p->grok;
        break;
    case FAKE_EP_COPILOT:
        cost = p->copilot;
        break;
    case FAKE_EP_PERPLEXITY:
        cost = p->perplexity;
        break;
    case FAKE_EP_AIMODE:
        cost = p->aimode;
        break;
    case FAKE_EP_GOOGLE:
        cost = p->google;
        if (req->include & (FAKE_INC_AIOVERVIEW | FAKE_INC_PAA_AIOVERVIEW))
            cost += p->aioverview;
        cost += p->extra_page * (req->pages - 1);
        break;
    case FAKE_EP_GOOGLE_NEWS:
        cost = p->google_news + p->extra_page * (req->pages - 1);
        break;
    case FAKE_EP_GOOGLE_GOTO:
    case FAKE_EP_COUNT:
        return 0;
    }
    if (req->state[0])
        cost += p->state;
    return cost + p->sync_surcharge;
}
