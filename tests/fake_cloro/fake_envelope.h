/* fake_envelope: the cloro error envelope (cloro-api.md §9.1) and the table of
 * error codes the fake emits with their default messages. Pure JSON building. */
#ifndef FAKE_ENVELOPE_H
#define FAKE_ENVELOPE_H

#include <stdint.h>

#include <jansson.h>

/* {"success":false,"error":{"code","message","details"?,"timestamp"}}.
 * details is stolen (NULL: omitted). Returns a new reference. */
json_t *fake_envelope_error(const char *code, const char *message, json_t *details,
                            int64_t real_ms);

/* The standard message for a code ("Route not found" for RESOURCE_NOT_FOUND etc.). */
const char *fake_envelope_message(const char *code);

#endif
