/* upstream.c: libcurl multi_socket on the libevent loop (the pattern of
 * curl's docs/examples/multi-event.c). libcurl tells us which sockets to
 * watch (on_curl_socket) and when to wake it (on_curl_timer); we call
 * curl_multi_socket_action when they fire and then reap finished transfers
 * in reap_finished(), outside every libcurl callback. Easy handles are kept
 * in a small pool; connections live in the multi handle's cache. */
#include "upstream.h"

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EASY_POOL_MAX        64
#define RESPONSE_HEADERS_MAX 128

struct socket_watch {
    struct event ev;
    curl_socket_t fd;
    struct upstream *up;
    struct socket_watch *prev, *next;
};

struct upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct upstream_options opts;
    CURL *pool[EASY_POOL_MAX];
    size_t pool_count;
    size_t active;
    struct socket_watch *watches; /* freed at upstream_free if libcurl did not */
};

struct upstream_transfer {
    struct upstream *up;
    CURL *easy;
    struct curl_slist *headers;
    struct evbuffer *body;
    struct upstream_header resp_headers[RESPONSE_HEADERS_MAX];
    size_t resp_header_count;
    bool too_large;
    bool no_resend;
    bool resend_refused;
    int sends;
    size_t max_bytes;
    upstream_done_cb done;
    void *arg;
    char error[CURL_ERROR_SIZE];
};

static void *zalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL)
        abort();
    return p;
}

static void clear_response_headers(struct upstream_transfer *t)
{
    for (size_t i = 0; i < t->resp_header_count; i++) {
        free((char *)t->resp_headers[i].name);
        free((char *)t->resp_headers[i].value);
    }
    t->resp_header_count = 0;
}

static void reap_finished(struct upstream *up);

static void on_socket_ready(evutil_socket_t fd, short events, void *arg)
{
    struct upstream *up = arg;
    int flags =
        ((events & EV_READ) ? CURL_CSELECT_IN : 0) | ((events & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    curl_multi_socket_action(up->multi, fd, flags, &running);
    reap_finished(up);
}

static void on_timeout(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct upstream *up = arg;
    int running = 0;
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    reap_finished(up);
}

/* CURLMOPT_SOCKETFUNCTION: watch, re-watch or forget a socket. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct upstream *up = userp;
    struct socket_watch *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) {
            event_del(&w->ev);
            if (w->prev != NULL)
                w->prev->next = w->next;
            else
                up->watches = w->next;
            if (w->next != NULL)
                w->next->prev = w->prev;
            free(w);
            curl_multi_assign(up->multi, fd, NULL);
        }
        return 0;
    }
    if (w == NULL) {
        w = zalloc(sizeof *w);
        w->fd = fd;
        w->up = up;
        w->next = up->watches;
        if (up->watches != NULL)
            up->watches->prev = w;
        up->watches = w;
        curl_multi_assign(up->multi, fd, w);
    } else {
        event_del(&w->ev);
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    event_assign(&w->ev, up->base, fd, kind, on_socket_ready, up);
    event_add(&w->ev, NULL);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 deletes the timer, anything else (0 too) arms it.
 * libcurl must not be called from here. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct upstream *up = userp;
    if (timeout_ms < 0) {
        evtimer_del(up->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    evtimer_add(up->timer, &tv);
    return 0;
}

struct upstream *upstream_new(struct event_base *base, const struct upstream_options *opts)
{
    struct upstream *up = zalloc(sizeof *up);
    up->base = base;
    up->opts = *opts;
    up->multi = curl_multi_init();
    up->timer = evtimer_new(base, on_timeout, up);
    if (up->multi == NULL || up->timer == NULL) {
        if (up->multi != NULL)
            curl_multi_cleanup(up->multi);
        if (up->timer != NULL)
            event_free(up->timer);
        free(up);
        return NULL;
    }
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* A safety net only: the proxy's own limits decide what goes upstream. */
    curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, opts->max_connections);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, opts->max_connections);
    return up;
}

void upstream_free(struct upstream *up)
{
    if (up == NULL)
        return;
    for (size_t i = 0; i < up->pool_count; i++)
        curl_easy_cleanup(up->pool[i]);
    curl_multi_cleanup(up->multi); /* may still call on_curl_socket */
    while (up->watches != NULL) {
        struct socket_watch *w = up->watches;
        up->watches = w->next;
        event_del(&w->ev);
        free(w);
    }
    event_free(up->timer);
    free(up);
}

size_t upstream_active(const struct upstream *up)
{
    return up->active;
}

/* CURLOPT_HEADERFUNCTION: keeps the headers of the final response. */
static size_t on_header(char *data, size_t size, size_t count, void *userp)
{
    struct upstream_transfer *t = userp;
    size_t len = size * count;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        clear_response_headers(t); /* a new response (after 100 Continue, say) */
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL || t->resp_header_count == RESPONSE_HEADERS_MAX)
        return len;
    const char *value = colon + 1;
    const char *end = data + len;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    char *name = strndup(data, (size_t)(colon - data));
    char *copy = strndup(value, (size_t)(end - value));
    if (name == NULL || copy == NULL)
        abort();
    t->resp_headers[t->resp_header_count].name = name;
    t->resp_headers[t->resp_header_count].value = copy;
    t->resp_header_count++;
    return len;
}

/* CURLOPT_WRITEFUNCTION: appends to a bounded buffer; a short count stops
 * the transfer with CURLE_WRITE_ERROR. */
static size_t on_body(char *data, size_t size, size_t count, void *userp)
{
    struct upstream_transfer *t = userp;
    size_t len = size * count;
    if (evbuffer_get_length(t->body) + len > t->max_bytes) {
        t->too_large = true;
        return 0;
    }
    if (evbuffer_add(t->body, data, len) != 0)
        abort();
    return len;
}

/* CURLOPT_PREREQFUNCTION: runs each time the request is about to go out,
 * so a second run is libcurl's resend after a reused connection died. */
static int on_prereq(void *userp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    struct upstream_transfer *t = userp;
    if (t->sends > 0 && t->no_resend) {
        t->resend_refused = true;
        return CURL_PREREQFUNC_ABORT;
    }
    t->sends++;
    return CURL_PREREQFUNC_OK;
}

static CURL *take_easy(struct upstream *up)
{
    if (up->pool_count > 0) {
        CURL *easy = up->pool[--up->pool_count];
        curl_easy_reset(easy);
        return easy;
    }
    return curl_easy_init();
}

static void release_transfer(struct upstream_transfer *t)
{
    struct upstream *up = t->up;
    if (up->pool_count < EASY_POOL_MAX)
        up->pool[up->pool_count++] = t->easy;
    else
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    evbuffer_free(t->body);
    clear_response_headers(t);
    up->active--;
    free(t);
}

struct upstream_transfer *upstream_start(struct upstream *up, const struct upstream_call *call,
                                         upstream_done_cb done, void *arg)
{
    CURL *easy = take_easy(up);
    if (easy == NULL)
        return NULL;
    struct upstream_transfer *t = zalloc(sizeof *t);
    t->up = up;
    t->easy = easy;
    t->done = done;
    t->arg = arg;
    t->max_bytes = call->max_bytes > 0 ? call->max_bytes : up->opts.max_response_bytes;
    t->no_resend = call->no_resend;
    t->body = evbuffer_new();
    if (t->body == NULL)
        abort();

    for (size_t i = 0; i < call->header_count; i++) {
        char *line = NULL;
        if (asprintf(&line, "%s: %s", call->headers[i].name, call->headers[i].value) < 0)
            abort();
        struct curl_slist *grown = curl_slist_append(t->headers, line);
        free(line);
        if (grown == NULL)
            abort();
        t->headers = grown;
    }
    /* No "Expect: 100-continue" round trip before bodies. */
    t->headers = curl_slist_append(t->headers, "Expect:");

    curl_easy_setopt(easy, CURLOPT_URL, call->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
    /* Every transfer (cloro calls, artifact downloads, webhook deliveries)
     * goes to the URL it was given and nowhere else: http or https only and
     * no redirect followed (a 3xx is the answer, which callers treat as a
     * failure), so a Location cannot point one at another host or scheme. */
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 0L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Over TLS, ALPN says at handshake whether the connection multiplexes
     * (HTTP/2), so waiting for it is cheap. Over cleartext the answer comes
     * only with the first response: waiting would serialize every call. */
    if (strncmp(call->url, "https://", 8) == 0)
        curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""); /* decoded before relaying */
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)up->opts.connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)call->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, t);

    if (strcmp(call->method, "GET") == 0) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(call->method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else {
        /* POST framing carries the body (if any); the verb is set as sent. */
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body_len > 0 ? call->body : "");
        if (strcmp(call->method, "POST") != 0)
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, call->method);
    }

    up->active++;
    if (curl_multi_add_handle(up->multi, easy) != CURLM_OK) {
        release_transfer(t);
        return NULL;
    }
    return t;
}

void upstream_cancel(struct upstream_transfer *t)
{
    curl_multi_remove_handle(t->up->multi, t->easy);
    release_transfer(t);
}

const char *upstream_outcome_name(enum upstream_outcome outcome)
{
    static const char *const names[] = {"ok", "unreachable", "broken", "timeout", "too_large"};
    return names[outcome];
}

static enum upstream_outcome classify(const struct upstream_transfer *t, CURLcode code)
{
    if (code == CURLE_OK)
        return UPSTREAM_OK;
    if (t->too_large)
        return UPSTREAM_TOO_LARGE;
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        /* Never connected: the upstream is unreachable, not slow. The request
         * went out once a connection was there, new or reused (whose connect
         * time libcurl reports as 0). */
        return t->sends > 0 ? UPSTREAM_TIMEOUT : UPSTREAM_UNREACHABLE;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return UPSTREAM_UNREACHABLE;
    default:
        return UPSTREAM_BROKEN;
    }
}

static void reap_finished(struct upstream *up)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result; /* msg dies with remove_handle */
        struct upstream_transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        struct upstream_result result = {
            .outcome = classify(t, code),
            .headers = t->resp_headers,
            .header_count = t->resp_header_count,
            .body = t->body,
            .error = t->resend_refused
                         ? "the connection died before any answer; the request is not sent again"
                     : t->error[0] != '\0' ? t->error
                                           : curl_easy_strerror(code),
            .sends = t->sends,
        };
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &result.status);
        curl_off_t total_us = 0;
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
        result.elapsed_us = (int64_t)total_us;
        curl_multi_remove_handle(up->multi, easy);
        t->done(&result, t->arg);
        release_transfer(t);
    }
}

const char *upstream_result_header(const struct upstream_result *res, const char *name)
{
    for (size_t i = 0; i < res->header_count; i++)
        if (strcasecmp(res->headers[i].name, name) == 0)
            return res->headers[i].value;
    return NULL;
}

json_t *upstream_result_json(const struct upstream_result *res)
{
    if (res->outcome != UPSTREAM_OK)
        return NULL;
    size_t len = evbuffer_get_length(res->body);
    return len > 0 ? json_loadb((const char *)evbuffer_pullup(res->body, -1), len, 0, NULL) : NULL;
}
