/* test_limiter.c: the waiting queue and its limits (limiter.h) on a real
 * event base, no network: grants in priority order, clients taking turns,
 * overflow and timeout refusals, withdrawal, departed clients dropped, the
 * learned limit, and token pacing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "limiter.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENTS 64

/* What the callbacks saw, in order. */
struct log {
    char events[MAX_EVENTS][32];
    size_t count;
    bool dead[MAX_EVENTS]; /* ticket owner index -> client gone */
};

static struct log seen;

struct owner {
    int index;
    char name[16];
};

static void record(const char *what, struct limiter_ticket *t)
{
    const struct owner *o = t->owner;
    if (seen.count < MAX_EVENTS)
        snprintf(seen.events[seen.count++], sizeof seen.events[0], "%s %s", what, o->name);
}

static void on_granted(struct limiter_ticket *t)
{
    record("granted", t);
}

static void on_refused(struct limiter_ticket *t, enum limiter_refusal why)
{
    record(why == LIMITER_REFUSED_QUEUE_FULL ? "full" : "timeout", t);
}

static bool on_alive(struct limiter_ticket *t)
{
    const struct owner *o = t->owner;
    return !seen.dead[o->index];
}

static void on_dropped(struct limiter_ticket *t)
{
    record("dropped", t);
}

static const struct limiter_callbacks callbacks = {on_granted, on_refused, on_alive, on_dropped};

struct world {
    struct event_base *base;
    struct limiter *l;
    struct limiter_ticket tickets[MAX_EVENTS];
    struct owner owners[MAX_EVENTS];
};

static struct world *world_new(int max_concurrency, size_t max_queue, int64_t timeout_ms,
                               double rate)
{
    memset(&seen, 0, sizeof seen);
    struct world *w = calloc(1, sizeof *w);
    w->base = event_base_new();
    struct limiter_options o = {.max_concurrency = max_concurrency,
                                .rate_per_endpoint = rate,
                                .max_queue = max_queue,
                                .queue_timeout_ms = timeout_ms};
    w->l = limiter_new(w->base, &o, &callbacks);
    return w;
}

static void world_free(struct world *w)
{
    limiter_free(w->l);
    event_base_free(w->base);
    free(w);
}

/* Submits ticket i: a monitor call (needs a slot) unless slotless. */
static struct limiter_ticket *submit(struct world *w, int i, const char *client, int priority,
                                     bool slotless)
{
    struct limiter_ticket *t = &w->tickets[i];
    memset(t, 0, sizeof *t);
    w->owners[i].index = i;
    snprintf(w->owners[i].name, sizeof w->owners[i].name, "%s%d", client, i);
    t->owner = &w->owners[i];
    t->needs_slot = !slotless;
    t->endpoint = limiter_endpoint(w->l, "/v1/monitor/chatgpt");
    t->priority = priority;
    snprintf(t->client, sizeof t->client, "%s", client);
    limiter_submit(w->l, t);
    return t;
}

/* Submits ticket i for a client with limits of its own (a member's). */
static struct limiter_ticket *submit_limited(struct world *w, int i, const char *client,
                                             bool slotless, int max_concurrency, double rate)
{
    struct limiter_ticket *t = &w->tickets[i];
    memset(t, 0, sizeof *t);
    w->owners[i].index = i;
    snprintf(w->owners[i].name, sizeof w->owners[i].name, "%s%d", client, i);
    t->owner = &w->owners[i];
    t->needs_slot = !slotless;
    t->endpoint =
        limiter_endpoint(w->l, slotless ? "/v1/monitor/google/goto" : "/v1/monitor/chatgpt");
    t->priority = 1;
    t->client_max_concurrency = max_concurrency;
    t->client_rate = rate;
    snprintf(t->client, sizeof t->client, "%s", client);
    limiter_submit(w->l, t);
    return t;
}

static void assert_seen(size_t at, const char *event)
{
    if (at >= seen.count)
        fail_msg("expected event %zu '%s', only %zu seen", at, event, seen.count);
    assert_string_equal(seen.events[at], event);
}

static void test_grants_and_queues_in_order(void **state)
{
    (void)state;
    struct world *w = world_new(1, 100, 60000, 0);
    submit(w, 0, "a", 1, false);
    submit(w, 1, "a", 1, false);
    submit(w, 2, "a", 1, false);
    assert_int_equal(seen.count, 1);
    assert_seen(0, "granted a0");
    struct limiter_stats st;
    limiter_stats(w->l, &st);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(st.queued, 2);
    limiter_release(w->l, &w->tickets[0]);
    assert_seen(1, "granted a1");
    limiter_release(w->l, &w->tickets[1]);
    assert_seen(2, "granted a2");
    limiter_release(w->l, &w->tickets[2]);
    limiter_stats(w->l, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.granted, 3);
    world_free(w);
}

static void test_higher_priority_goes_first(void **state)
{
    (void)state;
    struct world *w = world_new(1, 100, 60000, 0);
    submit(w, 0, "a", 1, false); /* holds the slot */
    for (int i = 1; i <= 5; i++)
        submit(w, i, "a", 1, false);
    submit(w, 6, "b", 10, false);
    limiter_release(w->l, &w->tickets[0]);
    assert_seen(1, "granted b6");
    limiter_release(w->l, &w->tickets[6]);
    assert_seen(2, "granted a1");
    world_free(w);
}

static void test_clients_take_turns(void **state)
{
    (void)state;
    struct world *w = world_new(1, 100, 60000, 0);
    submit(w, 0, "a", 1, false);
    for (int i = 1; i <= 5; i++)
        submit(w, i, "a", 1, false);
    submit(w, 6, "b", 1, false);
    submit(w, 7, "c", 1, false);
    const char *expected[] = {"granted a1", "granted b6", "granted c7", "granted a2", "granted a3"};
    int holder = 0;
    for (size_t i = 0; i < 5; i++) {
        limiter_release(w->l, &w->tickets[holder]);
        assert_seen(1 + i, expected[i]);
        /* whoever was granted last holds the slot now */
        const char *name = seen.events[seen.count - 1] + strlen("granted ");
        holder = atoi(name + 1);
    }
    world_free(w);
}

static void test_overflow_is_refused(void **state)
{
    (void)state;
    struct world *w = world_new(1, 2, 60000, 0);
    submit(w, 0, "a", 1, false);
    submit(w, 1, "a", 1, false);
    submit(w, 2, "a", 1, false);
    struct limiter_ticket *t = submit(w, 3, "a", 1, false);
    assert_seen(1, "full a3");
    assert_int_equal(t->waiting_for, LIMITER_WAIT_SLOT);
    struct limiter_stats st;
    limiter_stats(w->l, &st);
    assert_int_equal(st.overflows, 1);
    assert_int_equal(st.queued, 2);
    world_free(w);
}

static void test_queue_timeout(void **state)
{
    (void)state;
    struct world *w = world_new(1, 10, 50, 0);
    submit(w, 0, "a", 1, false);
    struct limiter_ticket *t = submit(w, 1, "a", 1, false);
    event_base_dispatch(w->base); /* runs until the timeout fired and nothing is pending */
    assert_seen(1, "timeout a1");
    assert_true(t->waited_ms >= 50);
    struct limiter_stats st;
    limiter_stats(w->l, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.queued, 0);
    world_free(w);
}

static void test_withdraw_and_departed_clients(void **state)
{
    (void)state;
    struct world *w = world_new(1, 10, 60000, 0);
    submit(w, 0, "a", 1, false);
    submit(w, 1, "a", 1, false);
    submit(w, 2, "a", 1, false);
    submit(w, 3, "a", 1, false);
    limiter_withdraw(w->l, &w->tickets[1]); /* no callback */
    seen.dead[2] = true;                    /* found gone at dequeue */
    limiter_release(w->l, &w->tickets[0]);
    assert_seen(1, "dropped a2");
    assert_seen(2, "granted a3");
    assert_int_equal(seen.count, 3);
    world_free(w);
}

static void test_learned_limit(void **state)
{
    (void)state;
    struct world *w = world_new(4, 100, 60000, 0);
    assert_int_equal(limiter_learn_limit(w->l, 2), 4);
    assert_int_equal(limiter_learn_limit(w->l, 2), 0); /* unchanged */
    for (int i = 0; i < 5; i++)
        submit(w, i, "a", 1, false);
    struct limiter_stats st;
    limiter_stats(w->l, &st);
    assert_int_equal(st.limit, 2);
    assert_int_equal(st.in_flight, 2);
    assert_int_equal(st.queued, 3);
    /* Raised again, never above max_concurrency: the waiting go at once. */
    assert_int_equal(limiter_learn_limit(w->l, 50), 2);
    limiter_stats(w->l, &st);
    assert_int_equal(st.limit, 4);
    assert_int_equal(st.in_flight, 4);
    assert_int_equal(limiter_learn_limit(w->l, 0), 0); /* nonsense is ignored */
    world_free(w);
}

static void test_tokens_pace_calls(void **state)
{
    (void)state;
    struct world *w = world_new(100, 100, 60000, 100.0); /* 100/s, burst 1 */
    int64_t start = clock_mono_us();
    for (int i = 0; i < 4; i++)
        submit(w, i, "a", 1, true);
    assert_int_equal(seen.count, 1); /* the first token only */
    event_base_dispatch(w->base);    /* the rate timer grants the rest */
    assert_int_equal(seen.count, 4);
    assert_true(clock_mono_us() - start >= 29000); /* three more tokens at 10 ms each */
    world_free(w);
}

/* A bucket holds 10 ms of its rate: at 1,000/s ten calls go at once, the
 * rest are paced. Slack for a late timer, so the rate is actually reached. */
static void test_bucket_holds_ten_ms(void **state)
{
    (void)state;
    struct world *w = world_new(100, 100, 60000, 1000.0);
    for (int i = 0; i < 15; i++)
        submit(w, i, "a", 1, true);
    assert_int_equal(seen.count, 10);
    event_base_dispatch(w->base);
    assert_int_equal(seen.count, 15);
    world_free(w);
}

/* A member with max_concurrency 1 has one call upstream at a time, its
 * others wait in the queue (not refused), and another client's calls go
 * past them while shared slots are free. */
static void test_client_max_concurrency(void **state)
{
    (void)state;
    struct world *w = world_new(10, 100, 60000, 0);
    submit_limited(w, 0, "a", false, 1, 0);
    submit_limited(w, 1, "a", false, 1, 0);
    struct limiter_ticket *a2 = submit_limited(w, 2, "a", false, 1, 0);
    submit(w, 3, "b", 1, false);
    submit(w, 4, "b", 1, false);
    assert_int_equal(seen.count, 3);
    assert_seen(0, "granted a0");
    assert_seen(1, "granted b3");
    assert_seen(2, "granted b4");
    assert_int_equal(a2->waiting_for, LIMITER_WAIT_CLIENT_SLOT);
    struct limiter_stats st;
    limiter_stats(w->l, &st);
    assert_int_equal(st.in_flight, 3);
    assert_int_equal(st.queued, 2);
    /* b's calls ending frees nothing for a. */
    limiter_release(w->l, &w->tickets[3]);
    limiter_release(w->l, &w->tickets[4]);
    assert_int_equal(seen.count, 3);
    /* a's own call ending lets its next one go, one at a time. */
    limiter_release(w->l, &w->tickets[0]);
    assert_int_equal(seen.count, 4);
    assert_seen(3, "granted a1");
    limiter_release(w->l, &w->tickets[1]);
    assert_seen(4, "granted a2");
    limiter_release(w->l, &w->tickets[2]);
    limiter_stats(w->l, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.timeouts + st.overflows, 0);
    world_free(w);
}

/* The member's share counts every upstream call, slot or not (goto), on
 * every endpoint; two members' shares are their own. */
static void test_client_share_spans_endpoints(void **state)
{
    (void)state;
    struct world *w = world_new(10, 100, 60000, 0);
    submit_limited(w, 0, "a", false, 2, 0);
    submit_limited(w, 1, "a", true, 2, 0);
    submit_limited(w, 2, "a", true, 2, 0); /* a third: waits */
    submit_limited(w, 3, "c", true, 2, 0); /* another member: its own share */
    assert_int_equal(seen.count, 3);
    assert_seen(2, "granted c3");
    limiter_release(w->l, &w->tickets[1]);
    assert_seen(3, "granted a2");
    world_free(w);
}

/* A member's rate_limit paces its calls; another client is not held back. */
static void test_client_rate(void **state)
{
    (void)state;
    struct world *w = world_new(100, 100, 60000, 0);
    int64_t start = clock_mono_us();
    for (int i = 0; i < 4; i++)
        submit_limited(w, i, "a", true, 0, 100.0); /* 100/s: one token each 10 ms */
    submit(w, 4, "b", 1, true);
    assert_int_equal(seen.count, 2);
    assert_seen(0, "granted a0");
    assert_seen(1, "granted b4");
    assert_int_equal(w->tickets[1].waiting_for, LIMITER_WAIT_CLIENT_RATE);
    event_base_dispatch(w->base); /* the rate timer grants the rest */
    assert_int_equal(seen.count, 5);
    assert_true(clock_mono_us() - start >= 29000);
    world_free(w);
}

/* Past queue_timeout, a call held back by its member's share is refused
 * (the caller answers 429), saying what held it. */
static void test_client_share_timeout(void **state)
{
    (void)state;
    struct world *w = world_new(10, 100, 50, 0);
    submit_limited(w, 0, "a", false, 1, 0);
    struct limiter_ticket *t = submit_limited(w, 1, "a", false, 1, 0);
    event_base_dispatch(w->base);
    assert_seen(1, "timeout a1");
    assert_int_equal(t->waiting_for, LIMITER_WAIT_CLIENT_SLOT);
    assert_true(t->waited_ms >= 50);
    world_free(w);
}

/* The latest ticket's limits are the share's: a member raised to 2 while
 * one call waits gets a second call in flight. */
static void test_client_limits_follow_the_member(void **state)
{
    (void)state;
    struct world *w = world_new(10, 100, 60000, 0);
    submit_limited(w, 0, "a", false, 1, 0);
    submit_limited(w, 1, "a", false, 1, 0);
    assert_int_equal(seen.count, 1);
    submit_limited(w, 2, "a", false, 2, 0); /* reloaded: max_concurrency = 2 */
    assert_int_equal(seen.count, 2);
    assert_seen(1, "granted a1");
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grants_and_queues_in_order),
        cmocka_unit_test(test_higher_priority_goes_first),
        cmocka_unit_test(test_clients_take_turns),
        cmocka_unit_test(test_overflow_is_refused),
        cmocka_unit_test(test_queue_timeout),
        cmocka_unit_test(test_withdraw_and_departed_clients),
        cmocka_unit_test(test_learned_limit),
        cmocka_unit_test(test_tokens_pace_calls),
        cmocka_unit_test(test_bucket_holds_ten_ms),
        cmocka_unit_test(test_client_max_concurrency),
        cmocka_unit_test(test_client_share_spans_endpoints),
        cmocka_unit_test(test_client_rate),
        cmocka_unit_test(test_client_share_timeout),
        cmocka_unit_test(test_client_limits_follow_the_member),
    };
    return cmocka_run_group_tests_name("unit_limiter", tests, NULL, NULL);
}
