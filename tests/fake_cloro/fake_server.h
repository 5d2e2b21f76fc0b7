/* fake_server: the fake cloro API on an evhttp server — route table, auth, rate
 * limit, concurrency slots, delayed/faulty responses, artifact host and the
 * /_fake/... control endpoints. The only module that serves evhttp requests (the
 * webhook client is fake_webhooks). Single-threaded:
 * everything runs on the event_base given to fake_server_new. */
#ifndef FAKE_SERVER_H
#define FAKE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "fake_knobs.h"

struct fake_server;

struct fake_server_config {
    const char *host;            /* listen address, e.g. "127.0.0.1" */
    uint16_t port;               /* 0: any free port */
    const char *const *api_keys; /* accepted keys (copied) */
    size_t n_api_keys;
    const char *artifact_base; /* NULL: http://<bound addr> */
    uint64_t seed;             /* PRNG seed for jitter and random faults */
    struct fake_knobs knobs;   /* initial knobs (copied) */
};

/* Creates the server on base; does not bind yet. Never returns NULL. */
struct fake_server *fake_server_new(struct event_base *base, const struct fake_server_config *cfg);

/* Binds and starts serving. On success writes the bound "host:port" to addr and
 * returns 0; -1 when the bind fails. */
int fake_server_listen(struct fake_server *srv, char *addr, size_t addrlen);

/* Drops pending responses (their clients see the connection close), closes every
 * connection and frees everything. The event_base must still be alive. */
void fake_server_free(struct fake_server *srv);

#endif
