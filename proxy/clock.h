/* clock.h: the two clocks of the proxy. Monotonic time for deadlines and
 * latencies, wall time only for timestamps shown to people or stored. */
#ifndef CLORO_CLOCK_H
#define CLORO_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in microseconds. */
int64_t clock_mono_us(void);
/* CLOCK_REALTIME in milliseconds since the Unix epoch. */
int64_t clock_wall_ms(void);
/* Writes "2025-01-15T12:00:00.000Z" (cloro's timestamp form, cloro-api.md 9.1).
 * out_size must be at least 25. Returns out. */
const char *clock_format_iso8601(char *out, size_t out_size, int64_t wall_ms);
/* Reads "YYYY-MM-DD", optionally "THH:MM[:SS[.fff]]" (or a space for the
 * T), and "Z" or "+HH:MM" / "-HH:MM" (none: UTC), into wall ms. Returns 0,
 * or -1 when text is not one (2026-02-31 included). */
int clock_parse_iso8601(const char *text, int64_t *out_ms);

#endif
