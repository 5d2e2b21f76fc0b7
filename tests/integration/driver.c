/* driver.c: concurrent calls on one curl multi handle, pumped by the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void driver_init(struct driver *d, int cap)
{
    memset(d, 0, sizeof *d);
    d->multi = curl_multi_init();
    d->calls = calloc((size_t)cap, sizeof *d->calls);
    d->cap = cap;
    d->t0 = now_ms();
}

size_t reply_on_body(char *data, size_t size, size_t n, void *userp)
{
    struct http_reply *r = userp;
    size_t len = size * n;
    r->body = realloc(r->body, r->body_len + len + 1);
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

size_t reply_on_header(char *data, size_t size, size_t n, void *userp)
{
    struct http_reply *r = userp;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new response: start over */
        for (size_t i = 0; i < r->header_count; i++) {
            free(r->headers[i].name);
            free(r->headers[i].value);
        }
        r->header_count = 0;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (colon != NULL && r->header_count < 64) {
        const char *v = colon + 1;
        const char *end = data + len;
        while (v < end && *v == ' ')
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n'))
            end--;
        r->headers[r->header_count].name = strndup(data, (size_t)(colon - data));
        r->headers[r->header_count].value = strndup(v, (size_t)(end - v));
        r->header_count++;
    }
    return len;
}

/* Starts a POST to p's path (a GET when body is NULL). priority 0 sends no X-Priority; iface NULL
 * binds the default source address (127.0.0.1). Returns the call's index. */
int driver_add(struct driver *d, const struct proc *p, const char *path, const char *body,
               int priority, const char *iface, long timeout_ms)
{
    return driver_add_headers(d, p, path, body, priority, iface, timeout_ms, NULL);
}

int driver_add_headers(struct driver *d, const struct proc *p, const char *path, const char *body,
                       int priority, const char *iface, long timeout_ms,
                       const char *const headers[])
{
    assert_true(d->n < d->cap);
    struct call *c = &d->calls[d->n];
    c->body = body != NULL ? strdup(body) : NULL;
    c->reply.body = calloc(1, 1);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");
    if (priority > 0) {
        char line[32];
        snprintf(line, sizeof line, "X-Priority: %d", priority);
        c->headers = curl_slist_append(c->headers, line);
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        c->headers = curl_slist_append(c->headers, headers[i]);
    char *url = proc_url(p, path);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    if (c->body != NULL)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
    else
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, reply_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &c->reply);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, reply_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &c->reply);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
    if (iface != NULL)
        curl_easy_setopt(e, CURLOPT_INTERFACE, iface);
    curl_multi_add_handle(d->multi, e);
    c->easy = e;
    free(url);
    return d->n++;
}

static void driver_collect(struct driver *d)
{
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        struct call *c = (struct call *)priv;
        c->curl_code = (int)m->data.result;
        c->reply.curl_code = c->curl_code;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &c->reply.status);
        c->order = ++d->done;
        c->done_ms = now_ms() - d->t0;
        curl_multi_remove_handle(d->multi, m->easy_handle);
    }
}

/* Drives every running call for about ms milliseconds. */
void driver_pump(struct driver *d, int ms)
{
    long long until = now_ms() + ms;
    for (;;) {
        int running = 0;
        curl_multi_perform(d->multi, &running);
        driver_collect(d);
        long long left = until - now_ms();
        if (left <= 0 || running == 0)
            break;
        curl_multi_poll(d->multi, NULL, 0, left < 10 ? (int)left : 10, NULL);
    }
}

/* Drives until every call completed or timeout_ms passed; true when all did. */
bool driver_finish(struct driver *d, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    while (d->done < d->n && now_ms() < deadline) {
        driver_pump(d, 20);
        if (d->done < d->n)
            sleep_ms(1);
    }
    return d->done == d->n;
}

void driver_free(struct driver *d)
{
    for (int i = 0; i < d->n; i++) {
        struct call *c = &d->calls[i];
        if (c->order == 0)
            curl_multi_remove_handle(d->multi, c->easy);
        curl_easy_cleanup(c->easy);
        curl_slist_free_all(c->headers);
        free(c->body);
        http_reply_free(&c->reply);
    }
    free(d->calls);
    curl_multi_cleanup(d->multi);
    memset(d, 0, sizeof *d);
}
