/* task_submit.h: async submissions through the proxy (cloro-api.md 7.2, 7.3,
 * 7.8). Each task is answered from the cache when its prompt is (a task
 * COMPLETED at once), attached to an identical task already open upstream,
 * refused when its idempotencyKey is taken, or sent upstream; a batch is
 * split accordingly, what must go upstream goes in one batch call, and the
 * answers are merged back in the client's order. Loop thread only. */
#ifndef CLORO_TASK_SUBMIT_H
#define CLORO_TASK_SUBMIT_H

struct tasks;
struct request;

/* POST /v1/async/task: ends r. */
void task_submit(struct tasks *ts, struct request *r);
/* POST /v1/async/task/batch: ends r. */
void task_submit_batch(struct tasks *ts, struct request *r);

#endif
