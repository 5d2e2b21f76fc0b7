/* fake_task_script: scripted outcomes of async tasks, read from magic markers in
 * the payload's prompt (or query, or Google url) (cloro-api.md §7.7, §15 item 21).
 * Pure: a string in, a verdict per attempt out.
 *
 *   [task-fail]      the first attempt ends the task FAILED with
 *                    {error:{code:"INTERNAL_SERVER_ERROR", message:"Maximum retries exceeded"}},
 *                    creditsCharged 0 (no retry hops).
 *   [task-retry:N]   attempts 1..N fail; after each the task goes back to QUEUED for
 *                    task_retry_delay_ms (a retry hop), then attempt N+1 runs normally
 *                    (COMPLETED, unless the random task_fail knob strikes). At most
 *                    FAKE_TASK_SCRIPT_MAX_ATTEMPTS attempts are made: N >= 5 ends FAILED
 *                    ("Maximum retries exceeded") after the 5th. N is 0..1000; anything
 *                    else is not a marker.
 * [task-fail] wins when both are present. */
#ifndef FAKE_TASK_SCRIPT_H
#define FAKE_TASK_SCRIPT_H

#include <stdbool.h>

#define FAKE_TASK_SCRIPT_MAX_ATTEMPTS 5

struct fake_task_script {
    bool fail;         /* [task-fail] */
    int fail_attempts; /* [task-retry:N]: N, else 0 */
};

enum fake_task_script_verdict {
    FAKE_TASK_SCRIPT_RUN,   /* no script for this attempt: the normal outcome */
    FAKE_TASK_SCRIPT_RETRY, /* this attempt fails, the task goes back to QUEUED */
    FAKE_TASK_SCRIPT_FAIL,  /* this attempt fails, the task ends FAILED */
};

/* Reads the markers of text (NULL: none). */
void fake_task_script_parse(const char *text, struct fake_task_script *out);
/* The verdict of attempt (1-based). */
enum fake_task_script_verdict fake_task_script_attempt(const struct fake_task_script *s,
                                                       int attempt);

#endif
