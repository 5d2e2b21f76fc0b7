/* fake_webhooks_stub.c: fake_webhooks.h for fuzz_fake_http. A task's webhook
 * URL comes from the fuzz input: the real client would call any host it
 * names, so here deliveries are only counted, never made. */
#include "fake_webhooks.h"

#include <stdlib.h>

struct fake_webhooks {
    unsigned long sent;
};

struct fake_webhooks *fake_webhooks_new(struct event_base *base, fake_webhooks_result_fn cb,
                                        void *arg)
{
    (void)base;
    (void)cb;
    (void)arg;
    struct fake_webhooks *wh = calloc(1, sizeof *wh);
    if (wh == NULL)
        abort();
    return wh;
}

void fake_webhooks_free(struct fake_webhooks *wh)
{
    free(wh);
}

void fake_webhooks_send(struct fake_webhooks *wh, const char *task_id, const char *url,
                        const char *body, const char *secret, double time_scale)
{
    (void)task_id;
    (void)url;
    (void)body;
    (void)secret;
    (void)time_scale;
    wh->sent++;
}
