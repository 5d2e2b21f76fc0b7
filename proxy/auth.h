/* auth.h: who may use the proxy. With members (auth = members), every /v1/
 * request must carry a member's token and every /_proxy/ admin route the
 * admin token; the request learns its member (request->member). With auth
 * open, everyone may, as before. */
#ifndef CLORO_AUTH_H
#define CLORO_AUTH_H

#include "router.h"

#include <stdbool.h>

struct request;

/* Checks r for route. Returns true when it may go on (r->member set when
 * members apply); otherwise r has been answered (401/403) and ended. */
bool auth_admit(struct request *r, enum route route);

#endif
