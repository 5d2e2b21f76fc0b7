/* driver.h: many HTTP calls at once from one test thread (curl multi), with
 * each call's reply and its completion rank and time, for tests of limits,
 * queues and coalescing. Also the libcurl callbacks that fill a struct
 * http_reply, shared with harness.c. */
#ifndef CLORO_TEST_DRIVER_H
#define CLORO_TEST_DRIVER_H

#include "harness.h"

#include <curl/curl.h>
#include <stdbool.h>

struct call {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct http_reply reply;
    int order;         /* 1-based rank among completed calls; 0 while running */
    long long done_ms; /* since the driver started */
    int curl_code;
};

struct driver {
    CURLM *multi;
    struct call *calls; /* fixed capacity: curl holds pointers into it */
    int n, cap;
    int done;
    long long t0;
};

void driver_init(struct driver *d, int cap);
/* Starts a POST to p's path (a GET when body is NULL). priority 0 sends no X-Priority; iface NULL
 * binds the default source address (127.0.0.1). Returns the call's index. */
int driver_add(struct driver *d, const struct proc *p, const char *path, const char *body,
               int priority, const char *iface, long timeout_ms);
/* driver_add with more request headers ("Name: value", NULL-terminated; may be NULL). */
int driver_add_headers(struct driver *d, const struct proc *p, const char *path, const char *body,
                       int priority, const char *iface, long timeout_ms,
                       const char *const headers[]);
/* Drives every running call for about ms milliseconds. */
void driver_pump(struct driver *d, int ms);
/* Drives until every call completed or timeout_ms passed; true when all did. */
bool driver_finish(struct driver *d, int timeout_ms);
void driver_free(struct driver *d);

/* CURLOPT_WRITEFUNCTION / HEADERFUNCTION filling a struct http_reply. */
size_t reply_on_body(char *data, size_t size, size_t n, void *userp);
size_t reply_on_header(char *data, size_t size, size_t n, void *userp);

#endif
