/* fake_envelope: one table of code -> message (§9.2) and the envelope builder. */
#include "fake_envelope.h"

#include <string.h>

#include "fake_util.h"

static const struct {
    const char *code;
    const char *message;
} fake_envelope_codes[] = {
    {"VALIDATION_ERROR", "Request validation failed"},
    {"MISSING_API_KEY", "Missing or invalid API key"},
    {"INVALID_API_KEY_FORMAT", "Invalid API key format"},
    {"INVALID_OR_EXPIRED_API_KEY", "Invalid or expired API key"},
    {"INSUFFICIENT_CREDITS", "Insufficient credits"},
    {"RESOURCE_NOT_FOUND", "Route not found"},
    {"RATE_LIMIT_EXCEEDED", "API key rate limit exceeded"},
    {"CONCURRENCY_LIMIT_EXCEEDED", "Concurrency limit exceeded"},
    {"CONCURRENT_LIMIT_EXCEEDED", "Concurrent limit exceeded"},
    {"REQUEST_CANCELED", "Request was canceled by client"},
    {"INTERNAL_SERVER_ERROR", "Maximum retries exceeded"},
    {"SERVICE_UNAVAILABLE", "Service temporarily unavailable"},
    {"ARTIFACT_EXPIRED", "Artifact expired"},
    {"RESOURCE_ALREADY_EXISTS", "Task already exists"},
    {"QUEUE_LIMIT_EXCEEDED", "Queue limit exceeded"},
};

const char *fake_envelope_message(const char *code)
{
    for (size_t i = 0; i < sizeof(fake_envelope_codes) / sizeof(fake_envelope_codes[0]); i++) {
        if (strcmp(code, fake_envelope_codes[i].code) == 0)
            return fake_envelope_codes[i].message;
    }
    return "Internal server error";
}

json_t *fake_envelope_error(const char *code, const char *message, json_t *details, int64_t real_ms)
{
    char ts[32];
    fake_util_iso8601_ms(real_ms, ts);
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message",
                            message ? message : fake_envelope_message(code));
    if (details != NULL)
        json_object_set_new(err, "details", details);
    json_object_set_new(err, "timestamp", json_string(ts));
    return json_pack("{s:b, s:o}", "success", 0, "error", err);
}
