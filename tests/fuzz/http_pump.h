/* http_pump.h: the client side of the raw-HTTP fuzz targets. One input is
 * written on a fresh loopback connection to a server running on the caller's
 * event base; the write side is shut, and the base is run in non-blocking
 * iterations (bounded) while the reply is read and discarded, until the
 * server closes the connection. */
#ifndef CLORO_FUZZ_HTTP_PUMP_H
#define CLORO_FUZZ_HTTP_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* The port a listening socket is bound to (0 when it cannot be read). */
uint16_t http_pump_port(int fd);

/* Sends data to 127.0.0.1:port and pumps base at most max_iterations times.
 * The reply's first head_size - 1 bytes are kept in head, terminated (head
 * may be NULL). Returns true when the server closed the connection within
 * them. */
bool http_pump(struct event_base *base, uint16_t port, const uint8_t *data, size_t size,
               int max_iterations, char *head, size_t head_size);

#endif
