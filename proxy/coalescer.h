/* coalescer.h: the table of upstream calls in flight, by cache key. The
 * first request for a key leads (it makes the one upstream call); identical
 * requests that arrive meanwhile wait on its flight and get the same answer.
 * The varnish waiting-list idea: the flight leaves the table before its
 * waiters are answered, so a request arriving during the fan-out starts
 * afresh (and finds the cache). Loop thread only. */
#ifndef CLORO_COALESCER_H
#define CLORO_COALESCER_H

#include <stddef.h>

struct request;
struct coalescer;

struct flight {
    unsigned char key[32];
    struct request *leader;
    struct request *waiters; /* linked through request->next_waiter, oldest first */
    struct request *last_waiter;
    size_t waiter_count;
    struct flight *next; /* hash chain */
};

struct coalescer *coalescer_new(void);
/* Frees the table and any flight still in it (at shutdown; their requests
 * are the server's to abandon). */
void coalescer_free(struct coalescer *c);

/* The flight for key, or NULL. Borrowed. */
struct flight *coalescer_find(struct coalescer *c, const unsigned char *key);
/* Opens a flight led by leader; key must not be in flight. Never fails. */
struct flight *coalescer_begin(struct coalescer *c, const unsigned char *key,
                               struct request *leader);
/* Adds a waiter to a flight. */
void coalescer_join(struct coalescer *c, struct flight *f, struct request *waiter);
/* Takes the flight out of the table; the caller answers its leader and
 * waiters, then frees it with coalescer_flight_free. */
void coalescer_end(struct coalescer *c, struct flight *f);
void coalescer_flight_free(struct flight *f);

/* Flights and waiting requests now, for stats. */
size_t coalescer_flights(const struct coalescer *c);
size_t coalescer_waiting(const struct coalescer *c);

#endif
