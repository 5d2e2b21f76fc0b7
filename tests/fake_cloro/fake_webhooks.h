/* fake_webhooks: webhook deliveries of terminal async tasks (cloro-api.md §8, §15
 * items 24-25): a non-blocking evhttp client POST per attempt, any 2xx acks, up to
 * 5 attempts at +2/+4/+8/+16 s times a scale, optional HMAC-SHA256 signing. Knows
 * nothing of tasks: the outcome of every attempt goes back through a callback. */
#ifndef FAKE_WEBHOOKS_H
#define FAKE_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#define FAKE_WEBHOOKS_ATTEMPTS 5

/* Called after every attempt (ok: a 2xx arrived). */
typedef void (*fake_webhooks_result_fn)(void *arg, const char *task_id, int attempt, bool ok);

struct fake_webhooks;

struct fake_webhooks *fake_webhooks_new(struct event_base *base, fake_webhooks_result_fn cb,
                                        void *arg);
/* Cancels pending deliveries and frees everything. */
void fake_webhooks_free(struct fake_webhooks *wh);

/* Starts delivering body (copied) to url; the first attempt goes out from the
 * event loop, not from inside this call. secret "" or NULL: unsigned. Both the
 * secret and time_scale are copied: fixed for the whole delivery. */
void fake_webhooks_send(struct fake_webhooks *wh, const char *task_id, const char *url,
                        const char *body, const char *secret, double time_scale);

/* "v1=" + lowercase hex HMAC-SHA256(secret, ts + "." + body); out holds 3 + 64 + 1. */
void fake_webhooks_signature(const char *secret, const char *ts, const char *body, size_t body_len,
                             char out[68]);
/* True when header (an X-Cloro-Signature value) equals the signature of ts and
 * body under secret; compared in constant time. */
bool fake_webhooks_verify(const char *secret, const char *ts, const char *header, const char *body,
                          size_t body_len);

#endif
