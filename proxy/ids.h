/* ids.h: request identifiers. A UUID v4 from OpenSSL's CSPRNG, the form cloro
 * uses for X-Request-ID (cloro-api.md section 2). */
#ifndef CLORO_IDS_H
#define CLORO_IDS_H

#define IDS_UUID_LEN 36

/* Writes a fresh lowercase UUID v4 and its terminating NUL into out. */
void ids_uuid4(char out[IDS_UUID_LEN + 1]);

#endif
