/* auth.h: who may use the proxy. With members (auth = members, or auto and
 * at least one member: members.h), every /v1/ request must carry a member's
 * token and learns its member (request->member); the client's Authorization
 * then never goes upstream. Once any member exists (or auth = members, or
 * an admin token is set), every /_proxy/ route but /_proxy/healthz and
 * /_proxy/artifacts/ needs the admin token. With auth open and no member,
 * everyone may, as before. Tokens are compared in constant time and never
 * logged. */
#ifndef CLORO_AUTH_H
#define CLORO_AUTH_H

#include "router.h"

#include <stdbool.h>

struct request;
struct server;

/* Checks r for route. Returns true when it may go on (r->member set when
 * members apply); otherwise r has been answered in cloro's envelope and
 * ended: 401 MISSING_API_KEY / INVALID_OR_EXPIRED_API_KEY on /v1/; 401
 * ADMIN_TOKEN_REQUIRED, 403 FORBIDDEN or 403 ADMIN_TOKEN_NOT_CONFIGURED on
 * admin routes. */
bool auth_admit(struct request *r, enum route route);

/* Start-up: false (logged) when members may apply (auth = members, or auto
 * with members or a members_file) but the proxy holds no cloro API key, so
 * a member's token would be all there is to send upstream. Also logs the
 * auth mode in force. */
bool auth_check_startup(const struct server *srv);

#endif
