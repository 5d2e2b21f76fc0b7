/* main: fake_cloro's command line (getopt_long; knob flags come from the knob
 * table), start-up, the "event=listening addr=..." line test harnesses wait for,
 * and a clean exit 0 on SIGTERM/SIGINT. No behaviour of its own. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "fake_knobs.h"
#include "fake_log.h"
#include "fake_server.h"
#include "fake_util.h"

enum {
    FAKE_OPT_LISTEN = 1,
    FAKE_OPT_API_KEY,
    FAKE_OPT_ARTIFACT_BASE,
    FAKE_OPT_SEED,
    FAKE_OPT_LOG_LEVEL,
    FAKE_OPT_HELP,
    FAKE_OPT_KNOB = 1000, /* + index in the knob table */
};

static void fake_main_usage(FILE *f)
{
    size_t n;
    const struct fake_knob_def *defs = fake_knobs_table(&n);
    fprintf(f, "usage: fake_cloro [options]\n"
               "  --listen HOST:PORT        listen address (default 127.0.0.1:0 = free port)\n"
               "  --api-key KEY             accepted API key, repeatable (default sk_live_test)\n"
               "  --artifact-base URL       artifact URL base (default http://<bound addr>)\n"
               "  --seed N                  PRNG seed for jitter and random faults (default 1)\n"
               "  --log-level LEVEL         error|warn|info|debug (default info)\n"
               "  --help                    this text\n"
               "knobs (also GET/POST /_fake/config with underscores):\n");
    for (size_t i = 0; i < n; i++) {
        const char *arg = defs[i].type == FAKE_KNOB_BOOL       ? ""
                          : defs[i].type == FAKE_KNOB_FRACTION ? " FRACTION"
                          : defs[i].type == FAKE_KNOB_ENUM     ? " NAME"
                          : defs[i].type == FAKE_KNOB_REAL     ? " NUMBER"
                          : defs[i].type == FAKE_KNOB_STRING   ? " STRING"
                                                               : " N";
        char opt[64];
        snprintf(opt, sizeof(opt), "--%s%s", defs[i].flag, arg);
        fprintf(f, "  %-30s %s\n", opt, defs[i].help);
    }
    fprintf(f, "markers in a monitor call's prompt/query (win over the random fractions):\n"
               "  [fake:latency=MS]              this call's latency instead of latency_ms\n"
               "  [fake:500] [fake:503]          that error (503 with Retry-After)\n"
               "  [fake:429]                     a 429 at once, without latency\n"
               "  [fake:reset]                   the connection reset, no response\n"
               "  [fake:reset-mid-body]          200 headers and half the body, then a reset\n"
               "  [fake:garbage]                 random non-HTTP bytes, then a close\n"
               "  [fake:stall]                   no answer; held until the client leaves\n"
               "  [fake:slow] [fake:slow-drip]   200 dripped over slow_body_ms (or 1000 ms)\n"
               "                                 / over slow_drip_ms\n"
               "GET /_fake/stats counts each injected fault under faults.<kind>: 500, 503,\n"
               "reset, reset_mid_body, slow, 429, garbage, stall, slow_drip\n");
    fprintf(f, "markers in an async task's payload prompt/query (fake_task_script.h):\n"
               "  [task-fail]                    ends FAILED (INTERNAL_SERVER_ERROR, charged 0)\n"
               "  [fake:reset]                   POST /v1/async/task: the task is created, then\n"
               "                                 the connection is reset instead of the 200\n"
               "  [task-retry:N]                 N failed attempts, each followed by a QUEUED\n"
               "                                 wait of task_retry_delay_ms, then COMPLETED\n"
               "                                 (N >= 5: FAILED after the 5th attempt)\n"
               "a task picked up while credits < its creditsToCharge ends FAILED\n"
               "(INSUFFICIENT_CREDITS, charged 0, latencyMs null on a first pickup)\n");
}

/* Splits "HOST:PORT" or "[V6]:PORT". */
static int fake_main_parse_listen(const char *s, char **host, unsigned *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return -1;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    char *end = NULL;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (hlen == 0 || end == colon + 1 || *end || p > 65535)
        return -1;
    *host = fake_xmalloc(hlen + 1);
    memcpy(*host, h, hlen);
    (*host)[hlen] = '\0';
    *port = (unsigned)p;
    return 0;
}

static void fake_main_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct event_base *base = arg;
    fake_log(FAKE_LOG_INFO, "shutdown", "signal=%d", (int)sig);
    event_base_loopexit(base, NULL);
}

int main(int argc, char **argv)
{
    int rc = 2;
    size_t nknobs;
    const struct fake_knob_def *defs = fake_knobs_table(&nknobs);
    struct option *opts = fake_xcalloc(nknobs + 7, sizeof(*opts));
    size_t o = 0;
    opts[o++] = (struct option){"listen", required_argument, NULL, FAKE_OPT_LISTEN};
    opts[o++] = (struct option){"api-key", required_argument, NULL, FAKE_OPT_API_KEY};
    opts[o++] = (struct option){"artifact-base", required_argument, NULL, FAKE_OPT_ARTIFACT_BASE};
    opts[o++] = (struct option){"seed", required_argument, NULL, FAKE_OPT_SEED};
    opts[o++] = (struct option){"log-level", required_argument, NULL, FAKE_OPT_LOG_LEVEL};
    opts[o++] = (struct option){"help", no_argument, NULL, FAKE_OPT_HELP};
    for (size_t i = 0; i < nknobs; i++) {
        opts[o++] = (struct option){
            defs[i].flag, defs[i].type == FAKE_KNOB_BOOL ? no_argument : required_argument, NULL,
            FAKE_OPT_KNOB + (int)i};
    }

    struct fake_server_config cfg = {.host = NULL, .port = 0, .seed = 1};
    fake_knobs_init(&cfg.knobs);
    const char **keys = fake_xcalloc((size_t)argc + 1, sizeof(char *));
    size_t nkeys = 0;
    char *host = NULL;
    unsigned port = 0;
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    struct fake_server *srv = NULL;

    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char err[256];
        switch (ch) {
        case FAKE_OPT_LISTEN:
            free(host);
            host = NULL;
            if (fake_main_parse_listen(optarg, &host, &port) != 0) {
                fprintf(stderr, "fake_cloro: --listen wants HOST:PORT, got %s\n", optarg);
                goto out;
            }
            break;
        case FAKE_OPT_API_KEY:
            keys[nkeys++] = optarg;
            break;
        case FAKE_OPT_ARTIFACT_BASE:
            cfg.artifact_base = optarg;
            break;
        case FAKE_OPT_SEED:
            cfg.seed = strtoull(optarg, NULL, 10);
            break;
        case FAKE_OPT_LOG_LEVEL: {
            enum fake_log_level level;
            if (fake_log_parse_level(optarg, &level) != 0) {
                fprintf(stderr, "fake_cloro: unknown --log-level %s\n", optarg);
                goto out;
            }
            fake_log_set_level(level);
            break;
        }
        case FAKE_OPT_HELP:
            fake_main_usage(stdout);
            rc = 0;
            goto out;
        default:
            if (ch >= FAKE_OPT_KNOB && (size_t)(ch - FAKE_OPT_KNOB) < nknobs) {
                const struct fake_knob_def *d = &defs[ch - FAKE_OPT_KNOB];
                if (fake_knobs_set_string(&cfg.knobs, d, optarg, err, sizeof(err)) != 0) {
                    fprintf(stderr, "fake_cloro: --%s: %s\n", d->flag, err);
                    goto out;
                }
                break;
            }
            fake_main_usage(stderr);
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fake_cloro: unexpected argument %s\n", argv[optind]);
        goto out;
    }
    if (nkeys == 0)
        keys[nkeys++] = "sk_live_test";
    cfg.api_keys = keys;
    cfg.n_api_keys = nkeys;
    cfg.host = host ? host : "127.0.0.1";
    cfg.port = (uint16_t)port;

    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "fake_cloro: event_base_new failed\n");
        rc = 1;
        goto out;
    }
    srv = fake_server_new(base, &cfg);
    char addr[128];
    if (fake_server_listen(srv, addr, sizeof(addr)) != 0) {
        fake_log(FAKE_LOG_ERROR, "listen_failed", "host=%s port=%u", cfg.host, port);
        rc = 1;
        goto out;
    }
    sigterm = evsignal_new(base, SIGTERM, fake_main_on_signal, base);
    sigint = evsignal_new(base, SIGINT, fake_main_on_signal, base);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    /* The harness contract: exactly one line with event=listening and addr=. */
    fake_log_always(FAKE_LOG_INFO, "listening", "addr=%s", addr);
    event_base_dispatch(base);
    rc = 0;

out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    fake_server_free(srv);
    if (base)
        event_base_free(base);
    libevent_global_shutdown();
    free(keys);
    free(host);
    free(opts);
    return rc;
}
