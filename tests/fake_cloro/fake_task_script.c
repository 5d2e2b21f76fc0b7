/* fake_task_script: the [task-fail] / [task-retry:N] markers and the verdict of
 * each attempt (see fake_task_script.h for the rules). */
#include "fake_task_script.h"

#include <stddef.h>
#include <string.h>

#define FAKE_TASK_SCRIPT_RETRY_MAX 1000

void fake_task_script_parse(const char *text, struct fake_task_script *out)
{
    out->fail = false;
    out->fail_attempts = 0;
    if (text == NULL)
        return;
    out->fail = strstr(text, "[task-fail]") != NULL;
    static const char marker[] = "[task-retry:";
    for (const char *p = strstr(text, marker); p != NULL; p = strstr(p + 1, marker)) {
        const char *d = p + sizeof(marker) - 1;
        int n = 0;
        size_t digits = 0;
        while (d[digits] >= '0' && d[digits] <= '9' && n <= FAKE_TASK_SCRIPT_RETRY_MAX) {
            n = n * 10 + (d[digits] - '0');
            digits++;
        }
        if (digits > 0 && d[digits] == ']' && n <= FAKE_TASK_SCRIPT_RETRY_MAX) {
            out->fail_attempts = n;
            return;
        }
    }
}

enum fake_task_script_verdict fake_task_script_attempt(const struct fake_task_script *s,
                                                       int attempt)
{
    if (s->fail)
        return FAKE_TASK_SCRIPT_FAIL;
    if (attempt <= s->fail_attempts)
        return attempt >= FAKE_TASK_SCRIPT_MAX_ATTEMPTS ? FAKE_TASK_SCRIPT_FAIL
                                                        : FAKE_TASK_SCRIPT_RETRY;
    return FAKE_TASK_SCRIPT_RUN;
}
