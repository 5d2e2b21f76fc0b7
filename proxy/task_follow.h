/* task_follow.h: following the tasks the proxy created upstream, and the
 * clients polling them. Each open upstream task is polled (GET
 * /v1/async/task/{id}, through the limiter like any call, with the proxy's
 * key) every eighth of its age, within poll_initial and poll_interval, until
 * it ends, so its result is kept even when no client ever asks. A client's GET is
 * answered from what the proxy knows when that is at most poll_interval old;
 * otherwise it waits for one poll, shared by everyone asking meanwhile.
 * Loop thread only. */
#ifndef CLORO_TASK_FOLLOW_H
#define CLORO_TASK_FOLLOW_H

#include <stdint.h>

struct tasks;
struct task;
struct request;

/* Polls t after delay_ms (sooner if a poll is already due). */
void task_follow_schedule(struct tasks *ts, struct task *t, int64_t delay_ms);
/* Stops following t: timer, queued ticket and poll in flight. */
void task_follow_stop(struct tasks *ts, struct task *t);

/* GET /v1/async/task/{id}: ends r. */
void task_get(struct tasks *ts, struct request *r, const char *id);

#endif
