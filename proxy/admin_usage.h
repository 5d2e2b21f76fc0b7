/* admin_usage.h: GET /_proxy/usage?member=NAME&since=YYYY-MM-DD, the usage
 * report (usage.h) of the store and the live counters. */
#ifndef CLORO_ADMIN_USAGE_H
#define CLORO_ADMIN_USAGE_H

#include <stdbool.h>
#include <stddef.h>

struct request;

/* Answers the report, or 400 VALIDATION_ERROR for a bad or unknown
 * parameter; ends r. */
void admin_usage(struct request *r);

/* True when text may name a member in a query: 1-63 of [A-Za-z0-9._-]
 * ("-" is the anonymous one). */
bool admin_usage_member_valid(const char *text);

#endif
