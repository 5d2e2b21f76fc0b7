/* connections.h: the client connections evhttp holds for the proxy. Counts
 * them against max_connections (when full, the connection idle longest is
 * closed to make room; with none idle the newcomer gets a 503 and is closed),
 * gives each request client_request_timeout from its first byte to its last
 * (a slow client then gets a 408 and is closed), and tells the server when a
 * reply has left or its connection is gone. libevent 2.1's evhttp has no
 * connection limit and no whole-request deadline of its own. */
#ifndef CLORO_CONNECTIONS_H
#define CLORO_CONNECTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evhttp;
struct evhttp_connection;
struct evhttp_request;
struct server;

/* What /_proxy/stats and /_proxy/metrics show. */
struct connections_stats {
    uint64_t open;         /* client connections now */
    uint64_t accepted;     /* since start */
    uint64_t reaped_idle;  /* idle ones closed to make room for a newcomer */
    uint64_t refused;      /* newcomers closed at once: full, none idle */
    uint64_t timed_out;    /* requests not received whole in time (408) */
    uint64_t bad_requests; /* malformed or oversized requests evhttp refused */
};

struct connections;

/* Installs itself on http (evhttp_set_bevcb), holding at most max
 * connections. srv must outlive it; free it after evhttp_free. */
struct connections *connections_new(struct server *srv, struct evhttp *http, int64_t max);
void connections_free(struct connections *t);

/* A request was received whole and handed to the router. */
void connections_request_received(struct connections *t, struct evhttp_request *evreq);
/* A reply is being written: when it has left, or its connection has gone,
 * server_reply_flushed is called once. False for a connection the table does
 * not know (it could not be tracked): then nothing will be called. */
bool connections_reply_started(struct connections *t, struct evhttp_request *evreq);

/* Bytes received since the request now arriving on evcon began (0 when
 * none is arriving): what error_page.c weighs against max_header_bytes. */
size_t connections_request_bytes(const struct connections *t, struct evhttp_connection *evcon);
void connections_count_bad_request(struct connections *t);
struct connections_stats connections_stats(const struct connections *t);
/* The connections held at most (0 for NULL). */
int64_t connections_max(const struct connections *t);

/* Raises the soft RLIMIT_NOFILE so that max_connections client sockets and
 * reserve others fit; returns the number of client connections that fit
 * (max_connections, or fewer when the hard limit is lower). */
int64_t connections_fit_fd_limit(int64_t max_connections, int64_t reserve);

#endif
