/* fuzz_fake_http: the fake cloro upstream's request handling (tests/fake_cloro,
 * fake_server.h) fed raw bytes. One fake runs in this process on 127.0.0.1:0;
 * before each input its knobs are put back to their defaults and its stats
 * and rate limits reset (POST /_fake/config, /_fake/reset), so what an input
 * sets does not stay; every RECREATE_EVERY inputs the fake is freed (with
 * whatever the inputs left pending) and made anew, so its tasks do not pile
 * up. Each input is written on a new connection (http_pump.h), the write
 * side shut, and the loop run until the fake closes the connection or an
 * iteration cap. Webhooks are a stub that never calls out
 * (fake_webhooks_stub.c). */
#include "fake_knobs.h"
#include "fake_log.h"
#include "fake_server.h"
#include "http_pump.h"

#include <event2/event.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITERATIONS 2000
#define RECREATE_EVERY 1000

static struct event_base *base;
static struct fake_server *fake;
static uint16_t port;
static unsigned long inputs;
static char *restore; /* the requests that put the knobs back and reset the stats */
static size_t restore_len;
static const char *const keys[] = {"sk_live_test"};

static void start_fake(void)
{
    struct fake_server_config cfg = {
        .host = "127.0.0.1", .port = 0, .api_keys = keys, .n_api_keys = 1, .seed = 1};
    fake_knobs_init(&cfg.knobs);
    fake = fake_server_new(base, &cfg);
    char addr[128];
    if (fake_server_listen(fake, addr, sizeof addr) != 0)
        abort();
    const char *colon = strrchr(addr, ':');
    port = colon != NULL ? (uint16_t)strtoul(colon + 1, NULL, 10) : 0;
    if (port == 0)
        abort();
}

static void make_restore(void)
{
    struct fake_knobs defaults;
    fake_knobs_init(&defaults);
    json_t *knobs = fake_knobs_to_json(&defaults);
    char *body = json_dumps(knobs, JSON_COMPACT);
    json_decref(knobs);
    if (body == NULL)
        abort();
    int n = asprintf(&restore,
                     "POST /_fake/config HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s"
                     "POST /_fake/reset HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n",
                     strlen(body), body);
    free(body);
    if (n < 0)
        abort();
    restore_len = (size_t)n;
}

static void stop(void)
{
    fake_server_free(fake);
    event_base_free(base);
    libevent_global_shutdown();
    free(restore);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    fake_log_set_level(FAKE_LOG_ERROR);
    base = event_base_new();
    if (base == NULL)
        abort();
    make_restore();
    start_fake();
    atexit(stop);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (++inputs % RECREATE_EVERY == 0) {
        fake_server_free(fake);
        start_fake();
    }
    /* The fake answers its own control requests, whatever the inputs before. */
    char head[64];
    if (!http_pump(base, port, (const uint8_t *)restore, restore_len, MAX_ITERATIONS, head,
                   sizeof head) ||
        strncmp(head, "HTTP/1.1 200 ", 13) != 0)
        abort();
    http_pump(base, port, data, size, MAX_ITERATIONS, NULL, 0);
    return 0;
}
