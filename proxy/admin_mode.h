/* admin_mode.h: the mode in force (mode.h) and its switch: GET and POST
 * /_proxy/mode (admin routes: the admin token rules of auth.h apply), and
 * what a switch sets going (the artifact downloader, task polls). */
#ifndef CLORO_ADMIN_MODE_H
#define CLORO_ADMIN_MODE_H

#include "mode.h"

struct request;
struct server;

/* GET|HEAD /_proxy/mode: 200 {"mode", "since"}. POST /_proxy/mode with
 * {"mode":"offline"}: switches, 200 {"mode", "previous", "since"}; a body
 * that is not such an object, or another word, is 400 VALIDATION_ERROR. */
void admin_mode(struct request *r);

/* Puts mode in force (logged as event=mode_changed with by=source). Back
 * online (any mode but offline, from offline), the artifact downloader and
 * the task polls resume at once. Calls already upstream finish either way. */
void server_set_mode(struct server *srv, enum proxy_mode mode, const char *source);

#endif
