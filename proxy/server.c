/* server.c: evhttp setup and the process's life. Binds the listener, routes
 * each request, counts what is in flight, and on SIGTERM/SIGINT stops
 * accepting, lets in-flight requests finish within drain_timeout, and exits.
 * A second signal during the drain stops at once. */
#include "server.h"
#include "admin.h"
#include "admin_mode.h"
#include "auth.h"
#include "members.h"
#include "admin_cache.h"
#include "admin_usage.h"
#include "artifacts.h"
#include "cache_dir.h"
#include "clock.h"
#include "coalescer.h"
#include "connections.h"
#include "durable.h"
#include "error_page.h"
#include "forward.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "request.h"
#include "recent.h"
#include "limiter.h"
#include "router.h"
#include "status_page.h"
#include "tasks.h"
#include "touches.h"
#include "store.h"
#include "upstream.h"
#include "usage.h"
#include "writer.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/http.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The drain ends when every request is answered and every answer written:
 * leaving the loop earlier would cut replies still in the socket buffers. */
static void stop_when_drained(struct server *srv)
{
    if (srv->draining && srv->in_flight == 0 && srv->replies_unflushed == 0)
        event_base_loopexit(srv->base, NULL);
}

void server_request_started(struct server *srv, struct request *r)
{
    srv->in_flight++;
    srv->stats.requests_total++;
    r->next = srv->live;
    if (srv->live != NULL)
        srv->live->prev = r;
    srv->live = r;
}

void server_request_finished(struct server *srv, struct request *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        srv->live = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    srv->in_flight--;
    stop_when_drained(srv);
}

void server_reply_flushed(struct server *srv)
{
    srv->replies_unflushed--;
    stop_when_drained(srv);
}

static void on_request(struct evhttp_request *evreq, void *arg)
{
    struct server *srv = arg;
    connections_request_received(srv->connections, evreq);
    struct request *r = request_new(srv, evreq);
    enum route route = router_match(r->method, r->path);
    if (!auth_admit(r, route))
        return;
    switch (route) {
    case ROUTE_UPSTREAM:
        if (srv->tasks != NULL && tasks_route(srv->tasks, r))
            return;
        forward_request(r);
        return;
    case ROUTE_ADMIN_HEALTHZ:
        admin_healthz(r);
        return;
    case ROUTE_ADMIN_STATS:
        admin_stats(r);
        return;
    case ROUTE_CACHE_STATS:
        admin_cache_stats(r);
        return;
    case ROUTE_CACHE_ENTRY:
        admin_cache_entry(r);
        return;
    case ROUTE_CACHE_PURGE:
        admin_cache_purge(r);
        return;
    case ROUTE_ARTIFACT:
        artifacts_serve(r);
        return;
    case ROUTE_STATUS_PAGE:
        status_page_serve(r);
        return;
    case ROUTE_ADMIN_RECENT:
        recent_serve(r);
        return;
    case ROUTE_METHOD_NOT_ALLOWED:
        request_add_header(r, "Allow", router_allowed_methods(r->path));
        reply_error(r, PROXY_ERROR_METHOD_NOT_ALLOWED, NULL, NULL);
        return;
    case ROUTE_ADMIN_METRICS:
        metrics_serve(r);
        return;
    case ROUTE_ADMIN_USAGE:
        admin_usage(r);
        return;
    case ROUTE_ADMIN_MODE:
        admin_mode(r);
        return;
    case ROUTE_NOT_FOUND:
        break;
    }
    json_t *details = json_pack("{s:s}", "id", r->path);
    reply_error(r, PROXY_ERROR_NOT_FOUND,
                "Route not found: the proxy serves /v1/ (cloro's API) and /_proxy/", details);
}

static void on_drain_timeout(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct server *srv = arg;
    log_warn("drain_timeout", "in_flight=%llu drain_timeout_ms=%lld",
             (unsigned long long)srv->in_flight, (long long)srv->cfg->drain_timeout_ms);
    event_base_loopexit(srv->base, NULL);
}

/* Once a second: hits gathered go to the writer (one durable txn at most),
 * and what needs watching but no request reports is checked. Answers the
 * cache could not keep (queue full, map full, store errors) are logged here,
 * once a second with the count, not once per request. */
static void on_tick(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct server *srv = arg;
    forward_sweep_departed(srv);
    members_tick(srv->members);
    if (srv->artifacts != NULL)
        artifacts_tick(srv->artifacts);
    usage_flush(srv->usage, srv->writer, clock_wall_ms());
    if (srv->tasks != NULL)
        tasks_tick(srv->tasks, clock_wall_ms());
    if (srv->writer == NULL)
        return;
    touches_flush(srv->touches, srv->writer);
    struct cache_writer_stats ws;
    cache_writer_stats(srv->writer, &ws);
    uint64_t losses = ws.dropped + ws.failed;
    if (losses > srv->cache_losses_logged) {
        log_warn("cache_not_stored", "new=%llu dropped_total=%llu failed_total=%llu",
                 (unsigned long long)(losses - srv->cache_losses_logged),
                 (unsigned long long)ws.dropped, (unsigned long long)ws.failed);
        srv->cache_losses_logged = losses;
    }
}

static void on_signal(evutil_socket_t sig, short events, void *arg)
{
    (void)events;
    struct server *srv = arg;
    if (srv->draining) {
        if (srv->in_flight > 0)
            log_warn("shutdown_now", "signal=%d in_flight=%llu", (int)sig,
                     (unsigned long long)srv->in_flight);
        event_base_loopexit(srv->base, NULL);
        return;
    }
    srv->draining = true;
    log_info("shutdown", "signal=%d in_flight=%llu drain_timeout_ms=%lld", (int)sig,
             (unsigned long long)srv->in_flight, (long long)srv->cfg->drain_timeout_ms);
    if (srv->bound != NULL) {
        evhttp_del_accept_socket(srv->http, srv->bound);
        srv->bound = NULL;
    }
    stop_when_drained(srv);
    struct timeval tv = {.tv_sec = srv->cfg->drain_timeout_ms / 1000,
                         .tv_usec = (srv->cfg->drain_timeout_ms % 1000) * 1000};
    evtimer_add(srv->drain_timer, &tv);
}

/* Logs the address actually bound (the port may have been 0). */
static void log_listening(struct server *srv)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(srv->bound);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
            log_info("listening", "addr=[%s]:%u upstream=%s", host, port, srv->cfg->upstream);
            return;
        }
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    }
    log_info("listening", "addr=%s:%u upstream=%s", host, port, srv->cfg->upstream);
}

static int setup_http(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    srv->http = evhttp_new(srv->base);
    if (srv->http == NULL)
        return -1;
    /* Each client socket needs an fd; so do upstream calls, artifact
     * downloads, webhook deliveries, the store and the log. */
    int64_t reserve = cfg->upstream_max_connections + cfg->artifact_concurrency + 64;
    int64_t max_connections = connections_fit_fd_limit(cfg->max_connections, reserve);
    if (max_connections < cfg->max_connections)
        log_warn("max_connections_lowered",
                 "max_connections=%lld fits=%lld hint=\"the open-files limit (ulimit -n) is too "
                 "low; raise it\"",
                 (long long)cfg->max_connections, (long long)max_connections);
    srv->connections = connections_new(srv, srv->http, max_connections);
    if (srv->connections == NULL)
        return -1;
    error_page_install(srv);
    evhttp_set_gencb(srv->http, on_request, srv);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    /* Responses without a Content-Type (an upstream's 204, say) stay without. */
    evhttp_set_default_content_type(srv->http, NULL);
    evhttp_set_max_headers_size(srv->http, (ev_ssize_t)cfg->max_header_bytes);
    /* Bodies up to max_body_bytes are served; forward.c answers bodies above it
     * with 413 in cloro's envelope. evhttp itself refuses (a bare 413) only
     * bodies over twice that, so an oversized upload is never buffered whole. */
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)(cfg->max_body_bytes * 2));
    struct timeval tv = {.tv_sec = cfg->client_timeout_ms / 1000,
                         .tv_usec = (cfg->client_timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(srv->http, &tv);
    srv->bound = evhttp_bind_socket_with_handle(srv->http, cfg->listen_host, cfg->listen_port);
    if (srv->bound == NULL) {
        char listen[300];
        log_error("bind_failed",
                  "listen=%s hint=\"address in use, or not an address of this "
                  "machine\"",
                  log_value(listen, sizeof listen, cfg->listen));
        return -1;
    }
    /* Answers go out in several writes (headers, then a body of any size):
     * without TCP_NODELAY, Nagle holds the last segment back until the
     * client's delayed ACK, 40 ms later. Accepted sockets inherit it (Linux). */
    int one = 1;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(srv->bound);
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        log_warn("tcp_nodelay", "errno=%d", errno);
    return 0;
}

static char *make_authorization(const char *key)
{
    if (key == NULL)
        return NULL;
    char *header = NULL;
    if (asprintf(&header, "Bearer %s", key) < 0)
        abort();
    return header;
}

static void teardown(struct server *srv)
{
    /* A request still waiting on an upstream call may hold what its hooks
     * own (an async submission's tasks and batch): they fail now, while the
     * tasks still exist, or it would be abandoned below with them. A hook
     * may end other requests: the walk starts again from the head. */
    for (struct request *r = srv->live; r != NULL;) {
        if (r->hooks == NULL || r->hooks->failed == NULL) {
            r = r->next;
            continue;
        }
        const struct forward_hooks *hooks = r->hooks;
        r->hooks = NULL;
        hooks->failed(r);
        r = srv->live;
    }
    /* Replies still held for the store: their requests are abandoned below. */
    durable_free(srv->durable);
    srv->durable = NULL;
    /* Task polls hold limiter tickets and transfers: they go first. */
    tasks_free(srv->tasks);
    srv->tasks = NULL;
    /* Queued tickets live in their requests: the queue goes first. */
    limiter_free(srv->limiter);
    srv->limiter = NULL;
    members_free(srv->members);
    srv->members = NULL;
    while (srv->live != NULL) {
        struct request *r = srv->live;
        if (r->transfer != NULL)
            upstream_cancel(r->transfer);
        request_abandon(r);
    }
    if (srv->http != NULL)
        evhttp_free(srv->http);
    srv->http = NULL;
    connections_free(srv->connections); /* after evhttp_free: it closed them all */
    srv->connections = NULL;
    artifacts_free(srv->artifacts); /* its downloads go before the upstream */
    upstream_free(srv->upstream);
    coalescer_free(srv->coalescer);
    /* Commits every answer and hit still queued before the store closes. */
    if (srv->writer != NULL) {
        touches_flush(srv->touches, srv->writer);
        usage_flush(srv->usage, srv->writer, clock_wall_ms());
        cache_writer_stop(srv->writer);
    }
    usage_free(srv->usage);
    metrics_free(srv->metrics);
    touches_free(srv->touches);
    if (srv->store != NULL)
        cache_store_close(srv->store);
    if (srv->sigterm != NULL)
        event_free(srv->sigterm);
    if (srv->sigint != NULL)
        event_free(srv->sigint);
    if (srv->drain_timer != NULL)
        event_free(srv->drain_timer);
    if (srv->tick != NULL)
        event_free(srv->tick);
    if (srv->base != NULL)
        event_base_free(srv->base);
    if (srv->authorization != NULL) {
        memset(srv->authorization, 0, strlen(srv->authorization));
        free(srv->authorization);
    }
    recent_free(srv->recent);
}

/* evhttp turns reading and writing on and off several times per request;
 * with the epoll changelist those changes collapse into at most one
 * epoll_ctl per socket per loop iteration. */
static struct event_base *new_event_base(void)
{
    struct event_config *ec = event_config_new();
    if (ec == NULL)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

/* Writer queue bound: far above any burst, a bound on memory all the same. */
#define WRITER_MAX_QUEUE 65536

static int open_cache(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    srv->coalescer = coalescer_new();
    if (!cfg->cache) {
        log_info("cache", "state=off");
        return 0;
    }
    char err[512], msg[600];
    struct cache_store_options opts = {.dir = cfg->cache_dir, .max_bytes = cfg->max_cache_bytes};
    srv->store = cache_store_open(&opts, err, sizeof err);
    if (srv->store == NULL) {
        log_error("cache_open_failed", "dir=%s error=%s", cfg->cache_dir,
                  log_value(msg, sizeof msg, err));
        coalescer_free(srv->coalescer);
        srv->coalescer = NULL;
        return -1;
    }
    srv->touches = touches_new();
    srv->writer = cache_writer_start(srv->store, WRITER_MAX_QUEUE);
    if (srv->writer == NULL) {
        log_error("cache_open_failed", "dir=%s error=\"cannot start the writer thread\"",
                  cfg->cache_dir);
        cache_store_close(srv->store);
        srv->store = NULL;
        touches_free(srv->touches);
        srv->touches = NULL;
        coalescer_free(srv->coalescer);
        srv->coalescer = NULL;
        return -1;
    }
    struct cache_store_stats st;
    if (cache_store_stats(srv->store, &st) == 0)
        log_info("cache", "state=on dir=%s entries=%llu bytes=%llu max_bytes=%llu", cfg->cache_dir,
                 (unsigned long long)st.entries, (unsigned long long)st.bytes,
                 (unsigned long long)st.max_bytes);
    return 0;
}

int server_start(struct server *srv, const struct config *cfg)
{
    *srv = (struct server){.cfg = cfg, .started_wall_ms = clock_wall_ms()};
    /* Before the downloader and the tasks start: offline, neither may call out. */
    if (proxy_mode_parse(cfg->mode, &srv->mode) != 0)
        srv->mode = PROXY_MODE_ONLINE; /* config.c allows only the four words */
    srv->mode_since_ms = srv->started_wall_ms;
    ids_init(&srv->ids);
    char err[512];

    if (cache_dir_prepare(cfg->cache_dir, err, sizeof err) != 0) {
        char msg[600];
        log_error("cache_dir_failed", "error=%s", log_value(msg, sizeof msg, err));
        return -1;
    }
    if (open_cache(srv) != 0)
        return -1;
    srv->recent = recent_new();
    srv->metrics = metrics_new();
    srv->usage = usage_new(cfg->usage_retention_days);
    if (srv->store != NULL && usage_load(srv->usage, srv->store, clock_wall_ms()) != 0)
        log_warn("usage_load_failed", "error=\"cannot read today's usage counters\"");
    srv->base = new_event_base();
    if (srv->base == NULL) {
        log_error("startup_failed", "error=\"cannot create the event base\"");
        goto out;
    }
    struct upstream_options up_opts = {
        .connect_timeout_ms = cfg->upstream_connect_timeout_ms,
        .max_response_bytes = cfg->max_response_bytes,
        .max_connections = (long)cfg->upstream_max_connections,
    };
    srv->upstream = upstream_new(srv->base, &up_opts);
    if (srv->upstream == NULL) {
        log_error("startup_failed", "error=\"cannot set up libcurl\"");
        goto out;
    }
    srv->authorization = make_authorization(cfg->api_key);
    srv->members = members_new(cfg);
    if (!auth_check_startup(srv))
        goto out;
    struct limiter_options lim = {
        .max_concurrency = (int)cfg->max_concurrency,
        .rate_per_endpoint = (double)cfg->rate_limit_per_endpoint,
        .rate_global = (double)cfg->rate_limit_global,
        .max_queue = (size_t)cfg->max_queue,
        .queue_timeout_ms = cfg->queue_timeout_ms,
    };
    srv->limiter = limiter_new(srv->base, &lim, forward_limiter_callbacks());
    if (srv->writer != NULL) {
        srv->durable = durable_new(srv->base, srv->writer);
        if (srv->durable == NULL)
            goto out;
    }
    if (srv->store != NULL) {
        srv->artifacts = artifacts_new(srv);
        if (srv->artifacts == NULL)
            goto out;
        if (cfg->async_tasks)
            srv->tasks = tasks_new(srv);
    }
    srv->sigterm = evsignal_new(srv->base, SIGTERM, on_signal, srv);
    srv->sigint = evsignal_new(srv->base, SIGINT, on_signal, srv);
    srv->drain_timer = evtimer_new(srv->base, on_drain_timeout, srv);
    srv->tick = event_new(srv->base, -1, EV_PERSIST, on_tick, srv);
    struct timeval second = {.tv_sec = 1};
    if (srv->tick == NULL || event_add(srv->tick, &second) != 0 || srv->sigterm == NULL ||
        srv->sigint == NULL || srv->drain_timer == NULL || evsignal_add(srv->sigterm, NULL) != 0 ||
        evsignal_add(srv->sigint, NULL) != 0) {
        log_error("startup_failed", "error=\"cannot install signal handlers\"");
        goto out;
    }
    if (setup_http(srv) != 0)
        goto out;
    log_info("upstream_auth", "mode=%s",
             cfg->api_key == NULL                      ? "unset_forwarding_client_authorization"
             : strcmp(cfg->api_key_source, "env") == 0 ? "set_from_env"
                                                       : "set_from_file");
    log_info("mode", "mode=%s", proxy_mode_name(srv->mode));
    log_listening(srv);
    return 0;
out:
    teardown(srv);
    return -1;
}

void server_stop(struct server *srv)
{
    teardown(srv);
}

int server_run(const struct config *cfg)
{
    struct server srv;
    if (server_start(&srv, cfg) != 0)
        return 1;
    event_base_dispatch(srv.base);
    log_info("stopped", "in_flight=%llu", (unsigned long long)srv.in_flight);
    server_stop(&srv);
    return 0;
}
