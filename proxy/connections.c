/* connections.c: the client connection table (connections.h). evhttp makes
 * each connection's bufferevent through our callback; once evhttp has set it
 * up (the same loop iteration, from an activated timer) the connection is
 * adopted: found again by its evhttp_connection, counted, and watched. A
 * connection is NEW, then IDLE (waiting for a request), RECEIVING (a
 * request's first byte has arrived: its deadline runs), HANDLING (received
 * whole, being answered), then IDLE again once the reply has left. Only IDLE
 * and RECEIVING connections are ever closed by the proxy: evhttp still owns
 * everything of theirs, while a HANDLING one has a request the proxy holds. */
#include "connections.h"
#include "ids.h"
#include "log.h"
#include "reply.h"
#include "server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

enum conn_state { CONN_NEW, CONN_IDLE, CONN_RECEIVING, CONN_HANDLING };

struct conn {
    struct connections *owner;
    struct bufferevent *bev;
    struct evbuffer_cb_entry *input_watch;
    struct evhttp_connection *evcon; /* once adopted */
    struct event *timer;             /* adoption, then the request deadline */
    enum conn_state state;
    bool reply_pending;                 /* a reply started and not yet written */
    size_t request_bytes;               /* received since the request began */
    struct conn *idle_prev, *idle_next; /* owner's idle list, while IDLE */
    struct conn *all_prev, *all_next;   /* every connection, for teardown */
    struct conn *hash_next;             /* bucket chain, once adopted */
};

struct connections {
    struct server *srv;
    int64_t max;
    struct timeval request_timeout;
    struct conn **buckets;
    size_t bucket_mask;
    struct conn *idle_head, *idle_tail; /* head: idle the longest */
    struct conn *all;
    struct connections_stats stats;
};

static void on_closed(struct evhttp_connection *evcon, void *arg);

static size_t bucket_of(const struct connections *t, const struct evhttp_connection *evcon)
{
    uintptr_t p = (uintptr_t)evcon;
    return (size_t)((p >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> 20) & t->bucket_mask;
}

static struct conn *find(const struct connections *t, const struct evhttp_connection *evcon)
{
    if (evcon == NULL)
        return NULL;
    for (struct conn *c = t->buckets[bucket_of(t, evcon)]; c != NULL; c = c->hash_next)
        if (c->evcon == evcon)
            return c;
    return NULL;
}

static void hash_remove(struct connections *t, struct conn *c)
{
    struct conn **link = &t->buckets[bucket_of(t, c->evcon)];
    while (*link != NULL && *link != c)
        link = &(*link)->hash_next;
    if (*link == c)
        *link = c->hash_next;
}

static void idle_push(struct connections *t, struct conn *c)
{
    c->state = CONN_IDLE;
    c->idle_next = NULL;
    c->idle_prev = t->idle_tail;
    if (t->idle_tail != NULL)
        t->idle_tail->idle_next = c;
    else
        t->idle_head = c;
    t->idle_tail = c;
}

static void idle_remove(struct connections *t, struct conn *c)
{
    if (c->state != CONN_IDLE)
        return;
    if (c->idle_prev != NULL)
        c->idle_prev->idle_next = c->idle_next;
    else
        t->idle_head = c->idle_next;
    if (c->idle_next != NULL)
        c->idle_next->idle_prev = c->idle_prev;
    else
        t->idle_tail = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
}

static void start_receiving(struct connections *t, struct conn *c)
{
    idle_remove(t, c);
    c->state = CONN_RECEIVING;
    c->request_bytes = evbuffer_get_length(bufferevent_get_input(c->bev));
    evtimer_add(c->timer, &t->request_timeout);
}

/* Writes a whole answer straight to the socket (best effort: the socket
 * buffer of a connection that sent no request, or a stuck one, has room for
 * it), then closes the connection; on_closed frees c. */
static void answer_and_close(struct conn *c, enum proxy_error err, const char *message)
{
    struct connections *t = c->owner;
    json_t *envelope = reply_envelope(err, message, NULL);
    char *body = json_dumps(envelope, JSON_COMPACT);
    json_decref(envelope);
    char rid[IDS_UUID_LEN + 1];
    ids_uuid4(&t->srv->ids, rid);
    int status = reply_error_status(err);
    char head[320];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\nX-Request-ID: %s\r\n%sConnection: close\r\n\r\n",
                     status, reply_reason_phrase(status), body != NULL ? strlen(body) : 0, rid,
                     status == 503 ? "Retry-After: 1\r\n" : "");
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0 && n > 0 && (size_t)n < sizeof head) {
        struct iovec iov[2] = {{head, (size_t)n}, {body, body != NULL ? strlen(body) : 0}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        (void)sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(fd, SHUT_WR);
    }
    free(body);
    t->srv->stats.proxy_errors++;
    t->srv->stats.responses_by_class[status / 100]++;
    evhttp_connection_free(c->evcon);
}

static void log_client(const char *event, struct conn *c)
{
    char *host = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(c->evcon, &host, &port);
    log_info(event, "client=%s:%u open=%llu", host != NULL ? host : "-", (unsigned)port,
             (unsigned long long)c->owner->stats.open);
}

/* A newcomer took the table past max_connections. */
static void make_room(struct connections *t, struct conn *newcomer)
{
    struct conn *victim = t->idle_head != newcomer ? t->idle_head : newcomer->idle_next;
    if (victim != NULL) {
        t->stats.reaped_idle++;
        log_client("client_idle_closed", victim);
        evhttp_connection_free(victim->evcon);
        return;
    }
    t->stats.refused++;
    log_client("client_refused", newcomer);
    answer_and_close(newcomer, PROXY_ERROR_TOO_MANY_CONNECTIONS, NULL);
}

static void adopt(struct connections *t, struct conn *c)
{
    void *evcon = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
    c->evcon = evcon;
    if (c->evcon == NULL) /* evhttp gave up on it: nothing of ours is attached */
        return;
    size_t b = bucket_of(t, c->evcon);
    c->hash_next = t->buckets[b];
    t->buckets[b] = c;
    t->stats.open++;
    t->stats.accepted++;
    idle_push(t, c);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        start_receiving(t, c);
    evhttp_connection_set_closecb(c->evcon, on_closed, c);
    /* Last: it may close c, or another. */
    if ((int64_t)t->stats.open > t->max)
        make_room(t, c);
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct conn *c = arg;
    struct connections *t = c->owner;
    if (c->state == CONN_NEW) {
        adopt(t, c);
        return;
    }
    if (c->state != CONN_RECEIVING)
        return;
    t->stats.timed_out++;
    log_client("client_request_timeout", c);
    answer_and_close(c, PROXY_ERROR_REQUEST_TIMEOUT, NULL);
}

/* Bytes arrived (or evhttp consumed some): an idle connection's request begins. */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    struct conn *c = arg;
    if (info->n_added == 0)
        return;
    if (c->state == CONN_IDLE)
        start_receiving(c->owner, c); /* counts what is in the buffer */
    else if (c->state == CONN_RECEIVING)
        c->request_bytes += info->n_added;
}

static void unlink_all(struct connections *t, struct conn *c)
{
    if (c->all_prev != NULL)
        c->all_prev->all_next = c->all_next;
    else
        t->all = c->all_next;
    if (c->all_next != NULL)
        c->all_next->all_prev = c->all_prev;
}

static void conn_free(struct connections *t, struct conn *c)
{
    unlink_all(t, c);
    if (c->timer != NULL)
        event_free(c->timer);
    free(c);
}

/* evhttp is freeing the connection (the client left, it timed out, a reply
 * asked to close, or the proxy closed it): its bufferevent goes next. */
static void on_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct conn *c = arg;
    struct connections *t = c->owner;
    evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_watch);
    idle_remove(t, c);
    hash_remove(t, c);
    t->stats.open--;
    bool flushed = c->reply_pending;
    conn_free(t, c);
    if (flushed)
        server_reply_flushed(t->srv);
}

static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    struct connections *t = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct conn *c = calloc(1, sizeof *c);
    if (bev == NULL || c == NULL) {
        free(c);
        return bev; /* untracked: evhttp serves it all the same */
    }
    c->owner = t;
    c->bev = bev;
    c->state = CONN_NEW;
    c->timer = evtimer_new(base, on_timer, c);
    c->input_watch = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    if (c->timer == NULL || c->input_watch == NULL) {
        if (c->input_watch != NULL)
            evbuffer_remove_cb_entry(bufferevent_get_input(bev), c->input_watch);
        if (c->timer != NULL)
            event_free(c->timer);
        free(c);
        return bev;
    }
    c->all_next = t->all;
    if (t->all != NULL)
        t->all->all_prev = c;
    t->all = c;
    /* evhttp sets the connection up when we return; adopt it right after,
     * before the loop polls again (no byte can arrive in between). */
    event_active(c->timer, EV_TIMEOUT, 1);
    return bev;
}

struct connections *connections_new(struct server *srv, struct evhttp *http, int64_t max)
{
    struct connections *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->srv = srv;
    t->max = max;
    t->request_timeout.tv_sec = srv->cfg->client_request_timeout_ms / 1000;
    t->request_timeout.tv_usec = (srv->cfg->client_request_timeout_ms % 1000) * 1000;
    size_t n = 64;
    while (n < (size_t)t->max && n < ((size_t)1 << 24))
        n <<= 1;
    t->buckets = calloc(n, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->bucket_mask = n - 1;
    evhttp_set_bevcb(http, on_new_connection, t);
    return t;
}

void connections_free(struct connections *t)
{
    if (t == NULL)
        return;
    /* evhttp_free has closed every adopted connection; what is left was
     * never adopted (its bufferevent went with evhttp). */
    while (t->all != NULL)
        conn_free(t, t->all);
    free(t->buckets);
    free(t);
}

void connections_request_received(struct connections *t, struct evhttp_request *evreq)
{
    struct conn *c = t != NULL ? find(t, evhttp_request_get_connection(evreq)) : NULL;
    if (c == NULL)
        return;
    idle_remove(t, c);
    evtimer_del(c->timer);
    c->state = CONN_HANDLING;
}

static void on_reply_written(struct evhttp_request *evreq, void *arg)
{
    struct conn *c = arg;
    struct connections *t = c->owner;
    (void)evreq;
    c->reply_pending = false;
    idle_push(t, c);
    /* Pipelined bytes of the next request already waiting start its clock. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        start_receiving(t, c);
    server_reply_flushed(t->srv);
}

bool connections_reply_started(struct connections *t, struct evhttp_request *evreq)
{
    struct conn *c = t != NULL ? find(t, evhttp_request_get_connection(evreq)) : NULL;
    if (c == NULL)
        return false;
    c->reply_pending = true;
    evhttp_request_set_on_complete_cb(evreq, on_reply_written, c);
    return true;
}

size_t connections_request_bytes(const struct connections *t, struct evhttp_connection *evcon)
{
    const struct conn *c = t != NULL ? find(t, evcon) : NULL;
    return c != NULL && c->state == CONN_RECEIVING ? c->request_bytes : 0;
}

void connections_count_bad_request(struct connections *t)
{
    if (t != NULL)
        t->stats.bad_requests++;
}

struct connections_stats connections_stats(const struct connections *t)
{
    struct connections_stats none = {0};
    return t != NULL ? t->stats : none;
}

int64_t connections_max(const struct connections *t)
{
    return t != NULL ? t->max : 0;
}

int64_t connections_fit_fd_limit(int64_t max_connections, int64_t reserve)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return max_connections;
    rlim_t need = (rlim_t)(max_connections + reserve);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        struct rlimit raised = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = want;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return max_connections;
    int64_t fit = (int64_t)rl.rlim_cur - reserve;
    return fit < 16 ? 16 : fit;
}
