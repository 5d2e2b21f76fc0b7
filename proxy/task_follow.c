/* task_follow.c: polls of open upstream tasks, and client GETs of tasks
 * (task_follow.h). A poll is a background call: its limiter ticket carries
 * callbacks of its own, and its answer updates the task (tasks.c) before the
 * clients that waited on it are answered from the updated record.
 *
 * Offline (mode.h) nothing is polled: a poll that comes due is put off by
 * poll_interval (a timer, no network) and tasks_resume_following starts them
 * again when the proxy is back online; clients' GETs of known tasks are
 * answered from their records, of unknown ones with OFFLINE_CACHE_MISS. */
#include "task_follow.h"
#include "clock.h"
#include "config.h"
#include "forward.h"
#include "limiter.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "tasks.h"
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_TIMEOUT_MS_MAX 60000

static void start_poll(struct task *t);

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    start_poll(arg);
}

void task_follow_schedule(struct tasks *ts, struct task *t, int64_t delay_ms)
{
    struct server *srv = tasks_server(ts);
    if (t->polling)
        return; /* the poll under way schedules the next */
    if (t->timer == NULL)
        t->timer = evtimer_new(srv->base, on_timer, t);
    if (t->timer == NULL)
        abort();
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(t->timer, &tv);
}

void task_follow_stop(struct tasks *ts, struct task *t)
{
    struct server *srv = tasks_server(ts);
    if (t->timer != NULL) {
        event_free(t->timer);
        t->timer = NULL;
    }
    if (t->transfer != NULL) {
        upstream_cancel(t->transfer);
        t->transfer = NULL;
        limiter_release(srv->limiter, &t->ticket);
    } else if (t->ticket.queued) {
        limiter_withdraw(srv->limiter, &t->ticket);
    }
    t->polling = false;
}

/* --- answering clients -------------------------------------------------- */

/* Answers a client's GET from what the proxy knows of its task now. */
static void answer_client(struct tasks *ts, struct request *r, const char *id, const char *how)
{
    struct task *t = tasks_find(ts, id);
    if (t != NULL) {
        tasks_reply_view(r, tasks_task_view(t, true), how);
        return;
    }
    json_t *rec = tasks_load_record(ts, id);
    if (rec != NULL) {
        tasks_reply_view(r, tasks_view(rec, true), how);
        json_decref(rec);
        return;
    }
    json_t *details = json_pack("{s:s}", "id", id);
    reply_error(r, PROXY_ERROR_TASK_NOT_FOUND, NULL, details);
}

static const char *id_of_path(const struct request *r)
{
    return r->path + sizeof "/v1/async/task/" - 1;
}

static void answer_waiters(struct tasks *ts, struct request *waiters)
{
    for (struct request *w = waiters, *next; w != NULL; w = next) {
        next = w->next_waiter;
        w->next_waiter = NULL;
        answer_client(ts, w, id_of_path(w), "MISS");
    }
}

/* --- polls ------------------------------------------------------------------ */

/* Polls back off with the task's age: an eighth of it, within poll_initial
 * and poll_interval. A task ending after T is seen at most T/8 late (or
 * poll_initial), for about 8 polls plus one per poll_interval. */
static int64_t next_delay_ms(const struct config *cfg, const struct task *t)
{
    int64_t delay = (clock_mono_us() - t->created_us) / 8000;
    if (delay < cfg->poll_initial_ms)
        delay = cfg->poll_initial_ms;
    return delay < cfg->poll_interval_ms ? delay : cfg->poll_interval_ms;
}

static void on_poll_done(const struct upstream_result *res, void *arg)
{
    struct task *t = arg;
    struct tasks *ts = t->tasks;
    struct server *srv = tasks_server(ts);
    t->transfer = NULL;
    limiter_release(srv->limiter, &t->ticket);
    t->polling = false;
    t->polled_us = clock_mono_us();
    tasks_counters(ts)->polls++;
    /* libcurl's resend after a reused connection died is a call too (upstream.h). */
    if (res->sends > 1)
        srv->stats.upstream_calls += (uint64_t)(res->sends - 1);
    struct request *waiters = t->waiters;
    t->waiters = NULL;
    char id[sizeof t->id];
    memcpy(id, t->id, sizeof id);

    json_t *doc = NULL;
    bool failed = false;
    if (res->outcome == UPSTREAM_OK && res->status == 200)
        doc = upstream_result_json(res);
    if (json_is_object(doc)) {
        tasks_update(ts, t, doc); /* may end and free t */
    } else if (res->outcome == UPSTREAM_OK && res->status == 404) {
        tasks_vanished(ts, t); /* frees t */
    } else {
        log_info("task_poll_failed", "task=%s outcome=%s status=%ld", id,
                 upstream_outcome_name(res->outcome), res->status);
        failed = true;
    }
    json_decref(doc);
    struct task *still = tasks_find(ts, id);
    if (still != NULL && still->origin == TASK_ORIGIN_UPSTREAM &&
        !tasks_record_terminal(still->rec)) {
        task_follow_schedule(ts, still,
                             failed ? srv->cfg->poll_interval_ms : next_delay_ms(srv->cfg, still));
    } else if (still != NULL) {
        tasks_release(ts, still);
    }
    answer_waiters(ts, waiters);
}

static void on_poll_granted(struct limiter_ticket *ticket)
{
    struct task *t = ticket->owner;
    struct server *srv = tasks_server(t->tasks);
    const struct config *cfg = srv->cfg;
    if (srv->mode == PROXY_MODE_OFFLINE) {
        /* Queued when the proxy went offline: no call; again later. */
        limiter_release(srv->limiter, &t->ticket);
        t->polling = false;
        struct request *waiters = t->waiters;
        t->waiters = NULL;
        task_follow_schedule(t->tasks, t, cfg->poll_interval_ms);
        answer_waiters(t->tasks, waiters);
        return;
    }
    char *url = NULL;
    if (asprintf(&url, "%s/v1/async/task/%s", cfg->upstream, t->id) < 0)
        abort();
    struct upstream_header headers[2];
    size_t count = 0;
    const char *authorization = srv->authorization != NULL ? srv->authorization : t->authorization;
    if (authorization != NULL)
        headers[count++] = (struct upstream_header){"Authorization", authorization};
    headers[count++] = (struct upstream_header){"Accept", "application/json"};
    struct upstream_call call = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .header_count = count,
        .timeout_ms = cfg->upstream_timeout_ms < POLL_TIMEOUT_MS_MAX ? cfg->upstream_timeout_ms
                                                                     : POLL_TIMEOUT_MS_MAX,
    };
    srv->stats.upstream_calls++;
    t->transfer = upstream_start(srv->upstream, &call, on_poll_done, t);
    free(url);
    if (t->transfer != NULL)
        return;
    limiter_release(srv->limiter, &t->ticket);
    t->polling = false;
    struct request *waiters = t->waiters;
    t->waiters = NULL;
    task_follow_schedule(t->tasks, t, cfg->poll_interval_ms);
    answer_waiters(t->tasks, waiters);
}

static void on_poll_refused(struct limiter_ticket *ticket, enum limiter_refusal why)
{
    (void)why;
    struct task *t = ticket->owner;
    struct server *srv = tasks_server(t->tasks);
    t->polling = false;
    struct request *waiters = t->waiters;
    t->waiters = NULL;
    task_follow_schedule(t->tasks, t, srv->cfg->poll_interval_ms);
    answer_waiters(t->tasks, waiters);
}

static const struct limiter_callbacks poll_callbacks = {
    .granted = on_poll_granted, .refused = on_poll_refused, .alive = NULL, .dropped = NULL};

static void start_poll(struct task *t)
{
    if (t->polling || t->creating || t->id[0] == '\0')
        return;
    struct server *srv = tasks_server(t->tasks);
    if (srv->mode == PROXY_MODE_OFFLINE) {
        task_follow_schedule(t->tasks, t, srv->cfg->poll_interval_ms);
        return;
    }
    if (t->timer != NULL)
        evtimer_del(t->timer);
    t->polling = true;
    struct limiter_ticket *ticket = &t->ticket;
    memset(ticket, 0, sizeof *ticket);
    ticket->owner = t;
    ticket->callbacks = &poll_callbacks;
    ticket->needs_slot = false;
    ticket->endpoint = limiter_endpoint(srv->limiter, "/v1/async/task/{id}");
    ticket->priority = 1;
    snprintf(ticket->client, sizeof ticket->client, "%s", "cloro-proxy:follow");
    limiter_submit(srv->limiter, ticket);
}

/* --- client GETs ------------------------------------------------------------ */

void task_get(struct tasks *ts, struct request *r, const char *id)
{
    struct server *srv = tasks_server(ts);
    if (!forward_check_request(r))
        return;
    struct task *t = tasks_find(ts, id);
    if (t == NULL) {
        json_t *rec = tasks_load_record(ts, id);
        if (rec == NULL) {
            /* Not a task of this proxy's: cloro's to answer. */
            r->cache_outcome = CACHE_OUTCOME_BYPASS;
            forward_upstream(r);
            return;
        }
        tasks_counters(ts)->client_polls_answered++;
        tasks_reply_view(r, tasks_view(rec, true), "HIT");
        json_decref(rec);
        return;
    }
    struct task *leader = t->origin == TASK_ORIGIN_ATTACHED   ? t->leader
                          : t->origin == TASK_ORIGIN_UPSTREAM ? t
                                                              : NULL;
    int64_t age_ms = leader != NULL && leader->polled_us != 0
                         ? (clock_mono_us() - leader->polled_us) / 1000
                         : INT64_MAX;
    if (tasks_record_terminal(t->rec) || leader == NULL || leader->creating ||
        age_ms < srv->cfg->poll_interval_ms || srv->mode == PROXY_MODE_OFFLINE) {
        tasks_counters(ts)->client_polls_answered++;
        tasks_reply_view(r, tasks_task_view(t, true), "HIT");
        return;
    }
    r->next_waiter = leader->waiters;
    leader->waiters = r;
    start_poll(leader);
}
