/* fuzz_proxy_http: the proxy's request handling fed raw bytes. One proxy
 * (proxy/server.c) is started in this process: listening on 127.0.0.1:0, its
 * cache in a temp directory, offline, its upstream a closed loopback port and
 * webhooks left to the upstream, so no input makes it call out. Each input
 * is written on a fresh connection (http_pump.h), the write side shut, and
 * the loop run until the proxy closes the connection or an iteration cap. */
#include "config.h"
#include "http_pump.h"
#include "log.h"
#include "server.h"

#include <event2/event.h>
#include <event2/http.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ITERATIONS 2000
#define HEALTH_EVERY   100

static struct config cfg;
static struct server srv;
static uint16_t port;
static char cache_dir[] = "/tmp/fuzz_proxy_http.XXXXXX";

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void send_request(const char *method, const char *path, const char *body)
{
    char *text = NULL;
    int n = asprintf(&text,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, strlen(body), body);
    if (n < 0)
        abort();
    http_pump(srv.base, port, (const uint8_t *)text, (size_t)n, MAX_ITERATIONS, NULL, 0);
    free(text);
}

/* Whatever the inputs left in flight is server_stop's to end and free. At
 * the least, every run stops with a batch submission waiting on the closed
 * upstream's retries (a regression: its batch and tasks were leaked). */
static void stop(void)
{
    cfg.max_retries = 3; /* read per call: the batch stays waiting on retries */
    send_request("POST", "/_proxy/mode", "{\"mode\":\"record\"}");
    send_request("POST", "/v1/async/task/batch",
                 "[{\"taskType\":\"CHATGPT\",\"payload\":{\"prompt\":\"stop\",\"country\":\"US\"}},"
                 "{\"taskType\":\"GOOGLE\",\"payload\":{\"query\":\"stop\",\"country\":\"US\"}}]");
    server_stop(&srv);
    config_deinit(&cfg);
    nftw(cache_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void set(const char *name, const char *value)
{
    char err[256];
    if (config_set(&cfg, name, value, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_proxy_http: %s = %s: %s\n", name, value, err);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(cache_dir) == NULL)
        abort();
    config_init(&cfg);
    set("listen", "127.0.0.1:0");
    set("cache_dir", cache_dir);
    set("mode", "offline");
    set("upstream", "http://127.0.0.1:1"); /* closed: a switch to online reaches nothing */
    set("webhook_delivery", "upstream");
    set("max_retries", "0"); /* a refused call ends at once, within its input */
    set("max_cache_bytes", "16MiB");
    set("max_body_bytes", "64KiB");
    set("max_header_bytes", "8KiB");
    set("log_level", "error");
    set("access_log", "false");
    struct config_errors errs = {0};
    if (config_finish(&cfg, &errs) != 0)
        abort();
    config_errors_free(&errs);
    log_threshold = cfg.log_level;
    if (server_start(&srv, &cfg) != 0)
        abort();
    port = http_pump_port(evhttp_bound_socket_get_fd(srv.bound));
    if (port == 0)
        abort();
    atexit(stop);
    return 0;
}

/* Every HEALTH_EVERY inputs the proxy must still answer its health check,
 * whatever the inputs before left behind. */
static void check_health(void)
{
    static const char healthz[] = "GET /_proxy/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Connection: close\r\n\r\n";
    char head[64];
    if (!http_pump(srv.base, port, (const uint8_t *)healthz, sizeof healthz - 1, MAX_ITERATIONS,
                   head, sizeof head) ||
        strncmp(head, "HTTP/1.1 200 ", 13) != 0) {
        fprintf(stderr, "fuzz_proxy_http: the health check got \"%s\"\n", head);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long inputs;
    if (inputs++ % HEALTH_EVERY == 0)
        check_health();
    http_pump(srv.base, port, data, size, MAX_ITERATIONS, NULL, 0);
    return 0;
}
