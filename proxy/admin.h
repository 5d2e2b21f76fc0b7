/* admin.h: the proxy's own endpoints under /_proxy/. They read the server's
 * counters; they own none. */
#ifndef CLORO_ADMIN_H
#define CLORO_ADMIN_H

struct request;

/* GET /_proxy/healthz: 200 {"status":"ok",...} while the loop runs. */
void admin_healthz(struct request *r);
/* GET /_proxy/stats: counters as JSON. */
void admin_stats(struct request *r);

#endif
