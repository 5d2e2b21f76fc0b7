/* error_page.h: the answers evhttp makes by itself (a request it cannot
 * parse, a head or body over its limits) in cloro's envelope instead of
 * libevent's HTML page. See error_page.c for how. */
#ifndef CLORO_ERROR_PAGE_H
#define CLORO_ERROR_PAGE_H

struct server;

/* Makes srv's counters, ids and log the ones those answers use. */
void error_page_install(struct server *srv);

#endif
