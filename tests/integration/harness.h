/* harness.h: what integration tests need to run the real programs: start a
 * process and wait (with a deadline) for its "event=listening addr=" line,
 * stop it with TERM then KILL, read its log, make HTTP calls with libcurl,
 * and read the fake upstream's /_fake/stats. */
#ifndef CLORO_TEST_HARNESS_H
#define CLORO_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct proc {
    pid_t pid;
    char name[32];
    char addr[64];      /* "127.0.0.1:PORT" from its listening line */
    char url[96];       /* "http://" + addr */
    char dir[256];      /* private temp directory, removed at proc_stop */
    char log_path[320]; /* its stderr */
    int exit_status;    /* after proc_wait_exit: the exit code, or 128+signal */
};

/* Starts argv[0] with env_extra ("NAME=value", NULL-terminated, may be NULL)
 * added to the environment, stderr to p->log_path, and waits up to 15 s for
 * its listening line. Returns 0, or -1 (the log is printed). argv may name
 * "{dir}" in an argument; it is replaced by the private directory. */
int proc_start(struct proc *p, const char *name, const char *const argv[],
               const char *const env_extra[]);
/* Starts fake_cloro with its defaults plus extra flags (NULL-terminated). */
int proc_start_fake(struct proc *p, const char *const extra[]);
/* Starts cloro-proxy against upstream with extra flags and environment. */
int proc_start_proxy(struct proc *p, const char *upstream_url, const char *const extra[],
                     const char *const env_extra[]);

/* Waits up to timeout_ms for the process to exit; true when it did. */
bool proc_wait_exit(struct proc *p, int timeout_ms);
/* TERM, up to 10 s, then KILL; removes the private directory. */
void proc_stop(struct proc *p);
/* Removes dir and everything below it (a test's own temp directory);
 * nothing when dir is "" or KEEP_TEST_LOGS is set. */
void remove_tree(const char *dir);
/* The whole log as a new string (caller frees). */
char *proc_log(const struct proc *p);

struct http_header_line {
    char *name;
    char *value;
};

struct http_reply {
    long status;
    char *body;
    size_t body_len;
    struct http_header_line headers[64];
    size_t header_count;
    int curl_code; /* 0 when an HTTP answer arrived */
};

/* One call. headers is NULL-terminated "Name: value" lines (may be NULL).
 * Returns 0 when an HTTP answer arrived. */
int http_call(const char *method, const char *url, const char *body, const char *const headers[],
              struct http_reply *out);
const char *http_header(const struct http_reply *r, const char *name);
/* POSTs body to p's path; headers NULL means just Content-Type: application/json. */
void http_post(const struct proc *p, const char *path, const char *body,
               const char *const headers[], struct http_reply *out);
/* GETs p's path. */
void http_get(const struct proc *p, const char *path, struct http_reply *out);
/* "http://addr" + path, new string. */
char *proc_url(const struct proc *p, const char *path);
/* A raw TCP connection to p (blocking), for what libcurl will not send;
 * fails the test when it cannot connect. */
int proc_connect(const struct proc *p);
/* error.code of an envelope reply, or "(none)". Valid until the next call. */
const char *http_error_code(const struct http_reply *r);
json_t *http_json(const struct http_reply *r); /* new reference, or NULL */
void http_reply_free(struct http_reply *r);

/* The fake's counters and knobs. */
json_t *fake_stats(const struct proc *fake); /* new reference */
void fake_reset(const struct proc *fake);
void fake_configure(const struct proc *fake, const char *json);
/* A counter from /_fake/stats by path ("requests./v1/monitor/chatgpt"). */
long long fake_stat(const struct proc *fake, const char *dotted_path);
/* A counter of the proxy's GET /_proxy/stats ("tasks.completed"), -1 when
 * absent; and a poll until it reaches value (the last value read). */
long long proxy_counter(const struct proc *proxy, const char *dotted_path);
long long proxy_wait_counter(const struct proc *proxy, const char *dotted_path, long long value,
                             int timeout_ms);
/* The node at a dotted path of objects ("error.details.value"), borrowed, or NULL. */
json_t *json_dig(json_t *root, const char *dotted);

/* Polls until fake_stat(path) >= value or timeout; true when reached. */
bool fake_wait_stat(const struct proc *fake, const char *dotted_path, long long value,
                    int timeout_ms);

/* A finished cloro-proxy command: exit status and everything it printed. */
struct cli_result {
    int status;   /* exit code, or 128 + signal */
    char *output; /* stdout and stderr together; the caller frees it */
};

/* Runs the cloro-proxy binary with args (NULL-terminated), CLORO_API_KEY
 * unset, and waits up to 20 s (then kills it). */
void cli_run(struct cli_result *out, const char *const args[]);

/* CLOCK_MONOTONIC in ms, and a sleep, for polls with deadlines. */
long long now_ms(void);
void sleep_ms(int ms);

/* Lowercase hex SHA-256 of text, for matching the fake's "auth" keys. */
void sha256_hex(const char *text, char out[65]);
bool is_uuid(const char *s);

#endif
