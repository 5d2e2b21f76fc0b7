/* fake_validate: per-endpoint field tables and the checks of §4-§5: unknown keys,
 * types, prompt/query length, country/gl/state rules, Google url exclusivity,
 * enums. Collects every problem into one details array (§9.1). */
#include "fake_validate.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_geo.h"

enum fake_validate_field {
    FV_PROMPT = 1u << 0,
    FV_QUERY = 1u << 1,
    FV_URL = 1u << 2,
    FV_COUNTRY = 1u << 3,
    FV_GL = 1u << 4,
    FV_HL = 1u << 5,
    FV_STATE = 1u << 6,
    FV_LOCATION = 1u << 7,
    FV_UULE = 1u << 8,
    FV_DEVICE = 1u << 9,
    FV_PAGES = 1u << 10,
    FV_LEGACY = 1u << 11,
    FV_DISABLE_WS = 1u << 12,
    FV_INCLUDE = 1u << 13,
};

static const struct {
    const char *name;
    unsigned bit;
} fake_validate_fields[] = {
    {"prompt", FV_PROMPT},
    {"query", FV_QUERY},
    {"url", FV_URL},
    {"country", FV_COUNTRY},
    {"gl", FV_GL},
    {"hl", FV_HL},
    {"state", FV_STATE},
    {"location", FV_LOCATION},
    {"uule", FV_UULE},
    {"device", FV_DEVICE},
    {"pages", FV_PAGES},
    {"legacy", FV_LEGACY},
    {"disableWebSearch", FV_DISABLE_WS},
    {"include", FV_INCLUDE},
};

static const struct {
    const char *name;
    unsigned bit;
} fake_validate_includes[] = {
    {"html", FAKE_INC_HTML},
    {"markdown", FAKE_INC_MARKDOWN},
    {"rawResponse", FAKE_INC_RAW_RESPONSE},
    {"searchQueries", FAKE_INC_SEARCH_QUERIES},
    {"ads", FAKE_INC_ADS},
    {"shopping", FAKE_INC_SHOPPING},
    {"expandProducts", FAKE_INC_EXPAND_PRODUCTS},
    {"googleGoto", FAKE_INC_GOOGLE_GOTO},
    {"aioverview", FAKE_INC_AIOVERVIEW}, /* an object {markdown: bool}, not a boolean */
    {"paaAioverview", FAKE_INC_PAA_AIOVERVIEW},
};

static const char *const fake_validate_devices_aimode[] = {"desktop", "mobile", NULL};
static const char *const fake_validate_devices_google[] = {"desktop", "mobile", "ios", "android",
                                                           NULL};

#define FV_AI_FIELDS   (FV_PROMPT | FV_COUNTRY | FV_STATE | FV_INCLUDE)
#define FV_AI_INCLUDES (FAKE_INC_HTML | FAKE_INC_MARKDOWN | FAKE_INC_RAW_RESPONSE)

/* Which fields and include keys each endpoint's schema has (OAS,
 * additionalProperties: false everywhere). */
static const struct fake_validate_spec {
    const char *name;
    unsigned fields;
    unsigned includes;
    const char *const *devices;
} fake_validate_specs[FAKE_EP_COUNT] = {
    [FAKE_EP_CHATGPT] = {"chatgpt", FV_AI_FIELDS | FV_LEGACY | FV_DISABLE_WS,
                         FV_AI_INCLUDES | FAKE_INC_SEARCH_QUERIES | FAKE_INC_ADS |
                             FAKE_INC_SHOPPING,
                         NULL},
    [FAKE_EP_GEMINI] = {"gemini", FV_AI_FIELDS, FV_AI_INCLUDES, NULL},
    [FAKE_EP_GROK] = {"grok", FV_AI_FIELDS, FV_AI_INCLUDES, NULL},
    [FAKE_EP_COPILOT] = {"copilot", FV_AI_FIELDS, FV_AI_INCLUDES, NULL},
    [FAKE_EP_PERPLEXITY] = {"perplexity", FV_AI_FIELDS, FV_AI_INCLUDES, NULL},
    [FAKE_EP_AIMODE] = {"aimode",
                        FV_PROMPT | FV_COUNTRY | FV_GL | FV_HL | FV_LOCATION | FV_UULE | FV_DEVICE |
                            FV_INCLUDE,
                        FAKE_INC_HTML | FAKE_INC_MARKDOWN | FAKE_INC_EXPAND_PRODUCTS |
                            FAKE_INC_GOOGLE_GOTO,
                        fake_validate_devices_aimode},
    [FAKE_EP_GOOGLE] = {"google",
                        FV_QUERY | FV_URL | FV_COUNTRY | FV_GL | FV_HL | FV_LOCATION | FV_UULE |
                            FV_DEVICE | FV_PAGES | FV_INCLUDE,
                        FAKE_INC_HTML | FAKE_INC_AIOVERVIEW | FAKE_INC_PAA_AIOVERVIEW |
                            FAKE_INC_GOOGLE_GOTO,
                        fake_validate_devices_google},
    [FAKE_EP_GOOGLE_NEWS] = {"google/news",
                             FV_QUERY | FV_COUNTRY | FV_GL | FV_HL | FV_DEVICE | FV_PAGES |
                                 FV_INCLUDE,
                             FAKE_INC_HTML, fake_validate_devices_google},
    [FAKE_EP_GOOGLE_GOTO] = {"google/goto", FV_URL, 0, NULL},
};

static const char *const fake_validate_models[] = {
    "aimode", "aioverview", "chatgpt", "copilot", "gemini", "google", "grok", "perplexity",
};

const char *fake_validate_endpoint_name(enum fake_endpoint ep)
{
    return ep < FAKE_EP_COUNT ? fake_validate_specs[ep].name : "unknown";
}

bool fake_validate_endpoint_from_name(const char *name, enum fake_endpoint *out)
{
    for (int i = 0; i < FAKE_EP_COUNT; i++) {
        if (strcmp(name, fake_validate_specs[i].name) == 0) {
            *out = (enum fake_endpoint)i;
            return true;
        }
    }
    return false;
}

bool fake_validate_endpoint_has_state(enum fake_endpoint ep)
{
    return (fake_validate_specs[ep].fields & FV_STATE) != 0;
}

bool fake_validate_countries_model(const char *model)
{
    if (model == NULL)
        return true;
    for (size_t i = 0; i < sizeof(fake_validate_models) / sizeof(fake_validate_models[0]); i++) {
        if (strcmp(model, fake_validate_models[i]) == 0)
            return true;
    }
    return false;
}

size_t fake_validate_utf8_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    }
    return n;
}

static void fake_validate_err(json_t *errs, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fake_validate_err(json_t *errs, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(errs, json_pack("{s:s, s:s}", "field", field, "message", msg));
}

static const char *fake_validate_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* Returns the string or NULL (after recording a type error). */
static const char *fake_validate_string(json_t *errs, const json_t *body, const char *field)
{
    const json_t *v = json_object_get(body, field);
    if (v == NULL)
        return NULL;
    if (!json_is_string(v)) {
        fake_validate_err(errs, field, "Expected string, received %s", fake_validate_type_name(v));
        return NULL;
    }
    return json_string_value(v);
}

static void fake_validate_bool(json_t *errs, const json_t *v, const char *field, bool *out)
{
    if (v == NULL)
        return;
    if (!json_is_boolean(v)) {
        fake_validate_err(errs, field, "Expected boolean, received %s", fake_validate_type_name(v));
        return;
    }
    *out = json_is_true(v);
}

/* prompt/query: string of 1..10000 characters. */
static const char *fake_validate_text(json_t *errs, const json_t *body, const char *field)
{
    const json_t *v = json_object_get(body, field);
    if (v == NULL)
        return NULL;
    if (!json_is_string(v)) {
        fake_validate_err(errs, field, "Expected string, received %s", fake_validate_type_name(v));
        return NULL;
    }
    size_t chars = fake_validate_utf8_len(json_string_value(v), json_string_length(v));
    if (chars < 1) {
        fake_validate_err(errs, field, "String must contain at least 1 character(s)");
        return NULL;
    }
    if (chars > FAKE_VALIDATE_TEXT_MAX) {
        fake_validate_err(errs, field, "String must contain at most %d character(s)",
                          FAKE_VALIDATE_TEXT_MAX);
        return NULL;
    }
    return json_string_value(v);
}

/* country: uppercase code only (§4: lowercase "us" fails). */
static bool fake_validate_country(json_t *errs, const char *field, const char *value, char out[3])
{
    if (strlen(value) == 2 && fake_geo_is_country(value)) {
        memcpy(out, value, 3);
        return true;
    }
    fake_validate_err(errs, field,
                      "Invalid enum value. Expected an uppercase ISO 3166-1 alpha-2 country "
                      "code the provider serves, received '%.16s'",
                      value);
    return false;
}

/* gl: same codes, either case (OAS GlParameter). */
static bool fake_validate_gl(json_t *errs, const char *value, char out[3])
{
    if (strlen(value) == 2) {
        char up[3] = {(char)toupper((unsigned char)value[0]),
                      (char)toupper((unsigned char)value[1]), '\0'};
        if (fake_geo_is_country(up)) {
            memcpy(out, up, 3);
            return true;
        }
    }
    fake_validate_err(errs, "gl", "Invalid country code '%.16s'", value);
    return false;
}

static bool fake_validate_nonempty(json_t *errs, const char *field, const char *value, size_t max)
{
    size_t n = strlen(value);
    if (n == 0) {
        fake_validate_err(errs, field, "String must contain at least 1 character(s)");
        return false;
    }
    if (n > max) {
        fake_validate_err(errs, field, "String must contain at most %zu character(s)", max);
        return false;
    }
    return true;
}

/* A URL split into host, path and query (all borrowed spans). */
struct fake_validate_url {
    const char *host;
    size_t host_len;
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
};

static bool fake_validate_split_url(const char *url, struct fake_validate_url *u)
{
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0)
        p = url + 8;
    else if (strncasecmp(url, "http://", 7) == 0)
        p = url + 7;
    else
        return false;
    u->host = p;
    while (*p && *p != '/' && *p != '?' && *p != '#' && *p != ':')
        p++;
    u->host_len = (size_t)(p - u->host);
    if (u->host_len == 0)
        return false;
    if (*p == ':') {
        p++;
        while (isdigit((unsigned char)*p))
            p++;
    }
    u->path = p;
    while (*p && *p != '?' && *p != '#')
        p++;
    u->path_len = (size_t)(p - u->path);
    u->query = *p == '?' ? p + 1 : p;
    const char *q = u->query;
    while (*q && *q != '#')
        q++;
    u->query_len = (size_t)(q - u->query);
    return true;
}

/* Finds query parameter name; returns its value span or NULL. */
static const char *fake_validate_url_param(const struct fake_validate_url *u, const char *name,
                                           size_t *len)
{
    size_t nlen = strlen(name);
    const char *p = u->query;
    const char *end = u->query + u->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        if ((size_t)(seg_end - p) >= nlen && strncmp(p, name, nlen) == 0 &&
            (p + nlen == seg_end || p[nlen] == '=')) {
            const char *v = p + nlen == seg_end ? seg_end : p + nlen + 1;
            *len = (size_t)(seg_end - v);
            return v;
        }
        p = seg_end + 1;
    }
    return NULL;
}

/* Google hosts: a "google" label that is not the last one (www.google.co.uk). */
static bool fake_validate_google_host(const struct fake_validate_url *u)
{
    const char *h = u->host;
    const char *end = u->host + u->host_len;
    while (h < end) {
        const char *dot = memchr(h, '.', (size_t)(end - h));
        if (dot == NULL)
            return false;
        if (dot - h == 6 && strncasecmp(h, "google", 6) == 0)
            return true;
        h = dot + 1;
    }
    return false;
}

/* Google url mode (§5.7): absolute http(s) /search URL with a non-empty q and no tbm. */
static void fake_validate_google_url(json_t *errs, const char *url, char gl_out[3], int *pages_out)
{
    struct fake_validate_url u;
    if (!fake_validate_split_url(url, &u) || !fake_validate_google_host(&u)) {
        fake_validate_err(errs, "url", "Must be an absolute http(s) Google search URL");
        return;
    }
    if (u.path_len != 7 || strncmp(u.path, "/search", 7) != 0) {
        fake_validate_err(errs, "url", "URL path must be /search");
        return;
    }
    size_t len = 0;
    if (fake_validate_url_param(&u, "q", &len) == NULL || len == 0) {
        fake_validate_err(errs, "url", "URL must carry a non-empty q parameter");
        return;
    }
    if (fake_validate_url_param(&u, "tbm", &len) != NULL) {
        fake_validate_err(errs, "url", "URLs with tbm are not supported; use Google News");
        return;
    }
    const char *gl = fake_validate_url_param(&u, "gl", &len);
    if (gl != NULL && len == 2) {
        char up[3] = {(char)toupper((unsigned char)gl[0]), (char)toupper((unsigned char)gl[1]),
                      '\0'};
        if (fake_geo_is_country(up))
            memcpy(gl_out, up, 3);
    }
    const char *num = fake_validate_url_param(&u, "num", &len);
    if (num != NULL && len > 0 && len < 6) {
        char buf[8];
        memcpy(buf, num, len);
        buf[len] = '\0';
        long n = strtol(buf, NULL, 10);
        if (n > 0) {
            long pages = (n + 9) / 10;
            *pages_out = (int)(pages > 10 ? 10 : pages);
        }
    }
}

/* goto (§5.9): google.com or www.google.com with a /goto or /url path. */
static void fake_validate_goto_url(json_t *errs, const char *url)
{
    struct fake_validate_url u;
    if (!fake_validate_split_url(url, &u)) {
        fake_validate_err(errs, "url", "Must be an absolute http(s) URL");
        return;
    }
    bool host_ok = (u.host_len == 10 && strncasecmp(u.host, "google.com", 10) == 0) ||
                   (u.host_len == 14 && strncasecmp(u.host, "www.google.com", 14) == 0);
    bool path_ok = (u.path_len == 5 && strncmp(u.path, "/goto", 5) == 0) ||
                   (u.path_len == 4 && strncmp(u.path, "/url", 4) == 0);
    if (!host_ok || !path_ok)
        fake_validate_err(errs, "url", "Must be a google.com /goto or /url link");
}

static void fake_validate_include(json_t *errs, const json_t *inc, unsigned allowed, unsigned *out)
{
    if (!json_is_object(inc)) {
        fake_validate_err(errs, "include", "Expected object, received %s",
                          fake_validate_type_name(inc));
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)inc, key, v)
    {
        char field[96];
        snprintf(field, sizeof(field), "include.%.80s", key);
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof(fake_validate_includes) / sizeof(fake_validate_includes[0]);
             i++) {
            if (strcmp(key, fake_validate_includes[i].name) == 0)
                bit = fake_validate_includes[i].bit;
        }
        if (bit == 0 || (allowed & bit) == 0) {
            fake_validate_err(errs, field, "Unrecognized key: \"%.80s\"", key);
            continue;
        }
        if (bit == FAKE_INC_AIOVERVIEW) {
            if (!json_is_object(v)) {
                fake_validate_err(errs, field, "Expected object, received %s",
                                  fake_validate_type_name(v));
                continue;
            }
            *out |= FAKE_INC_AIOVERVIEW;
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2)
            {
                if (strcmp(k2, "markdown") != 0) {
                    char f2[200];
                    snprintf(f2, sizeof(f2), "include.aioverview.%.80s", k2);
                    fake_validate_err(errs, f2, "Unrecognized key: \"%.80s\"", k2);
                    continue;
                }
                bool md = false;
                fake_validate_bool(errs, v2, "include.aioverview.markdown", &md);
                if (md)
                    *out |= FAKE_INC_AIOVERVIEW_MARKDOWN;
            }
            continue;
        }
        bool on = false;
        fake_validate_bool(errs, v, field, &on);
        if (on)
            *out |= bit;
    }
}

static const char *fake_validate_device(json_t *errs, const json_t *body,
                                        const char *const *devices)
{
    const char *d = fake_validate_string(errs, body, "device");
    if (d == NULL)
        return "desktop";
    for (size_t i = 0; devices[i] != NULL; i++) {
        if (strcmp(d, devices[i]) == 0)
            return devices[i];
    }
    char allowed[64] = "";
    for (size_t i = 0; devices[i] != NULL; i++) {
        strcat(allowed, i ? " | " : "");
        strcat(allowed, devices[i]);
    }
    fake_validate_err(errs, "device", "Invalid enum value. Expected %s, received '%.16s'", allowed,
                      d);
    return "desktop";
}

/* An optional integer field of 1..10 (pages, priority): stored in *out when
 * present and valid, an error in errs otherwise; *out is left when absent. */
static void fake_validate_int_1_10(const json_t *body, const char *name, json_t *errs, int *out)
{
    const json_t *v = json_object_get(body, name);
    if (v == NULL)
        return;
    if (!json_is_integer(v))
        fake_validate_err(errs, name, "Expected integer, received %s", fake_validate_type_name(v));
    else if (json_integer_value(v) < 1 || json_integer_value(v) > 10)
        fake_validate_err(errs, name, "Number must be between 1 and 10");
    else
        *out = (int)json_integer_value(v);
}

json_t *fake_validate_monitor(enum fake_endpoint ep, const json_t *body,
                              const struct fake_validate_opts *opts, struct fake_validate_req *out)
{
    json_t *errs = json_array();
    memset(out, 0, sizeof(*out));
    out->endpoint = ep;
    out->pages = 1;
    out->device = "desktop";
    if (ep >= FAKE_EP_COUNT) {
        fake_validate_err(errs, "endpoint", "Unknown endpoint");
        return errs;
    }
    const struct fake_validate_spec *spec = &fake_validate_specs[ep];
    if (!json_is_object(body)) {
        fake_validate_err(errs, "body", "Expected object, received %s",
                          body ? fake_validate_type_name(body) : "nothing");
        return errs;
    }

    /* Strict bodies: every unknown top-level key is an error (§4). */
    unsigned present = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof(fake_validate_fields) / sizeof(fake_validate_fields[0]);
             i++) {
            if (strcmp(key, fake_validate_fields[i].name) == 0)
                bit = fake_validate_fields[i].bit;
        }
        if (bit == 0 || (spec->fields & bit) == 0) {
            char field[96];
            snprintf(field, sizeof(field), "%.80s", key);
            fake_validate_err(errs, field, "Unrecognized key: \"%.80s\"", key);
            continue;
        }
        present |= bit;
    }

    if (ep == FAKE_EP_GOOGLE_GOTO) {
        const char *url = fake_validate_string(errs, body, "url");
        if (url != NULL)
            fake_validate_goto_url(errs, url);
        else if (!(present & FV_URL))
            fake_validate_err(errs, "url", "Required");
        out->url = url;
        goto done;
    }

    /* prompt / query / url */
    if (spec->fields & FV_PROMPT) {
        out->text = fake_validate_text(errs, body, "prompt");
        if (!(present & FV_PROMPT))
            fake_validate_err(errs, "prompt", "Required");
    }
    char url_gl[3] = "";
    if (spec->fields & FV_QUERY) {
        out->text = fake_validate_text(errs, body, "query");
        if (present & FV_URL) {
            out->url = fake_validate_string(errs, body, "url");
            if (out->url != NULL)
                fake_validate_google_url(errs, out->url, url_gl, &out->pages);
            if (present & FV_QUERY)
                fake_validate_err(errs, "url", "url and query are mutually exclusive");
            if (present & FV_LOCATION)
                fake_validate_err(errs, "location", "location cannot be combined with url");
            if (present & FV_UULE)
                fake_validate_err(errs, "uule", "uule cannot be combined with url");
            if (present & FV_PAGES)
                fake_validate_err(errs, "pages", "pages cannot be combined with url");
        } else if (!(present & FV_QUERY)) {
            fake_validate_err(errs, "query",
                              (spec->fields & FV_URL) ? "Required (query or url)" : "Required");
        }
    }

    /* country / gl (§4) */
    char country[3] = "";
    char gl[3] = "";
    const char *s;
    if ((s = fake_validate_string(errs, body, "country")) != NULL)
        fake_validate_country(errs, "country", s, country);
    if ((s = fake_validate_string(errs, body, "gl")) != NULL)
        fake_validate_gl(errs, s, gl);
    if (country[0] && gl[0] && strcmp(country, gl) != 0)
        fake_validate_err(errs, "gl", "gl '%s' conflicts with country '%s'", gl, country);
    bool url_mode = (present & FV_URL) != 0;
    if (!(present & (FV_COUNTRY | FV_GL)) && !url_mode && !opts->country_default_us) {
        fake_validate_err(errs, "country",
                          (spec->fields & FV_GL) ? "Required (country or gl)" : "Required");
    }
    if (country[0])
        memcpy(out->country, country, 3);
    else if (gl[0])
        memcpy(out->country, gl, 3);
    else if (url_gl[0])
        memcpy(out->country, url_gl, 3);
    else
        memcpy(out->country, "US", 3);

    /* state: 51 USPS codes, only with US (§4) */
    if ((s = fake_validate_string(errs, body, "state")) != NULL) {
        if (!(strlen(s) == 2 && fake_geo_is_us_state(s)))
            fake_validate_err(errs, "state",
                              "Invalid enum value. Expected a US state code, "
                              "received '%.16s'",
                              s);
        else if (strcmp(out->country, "US") != 0)
            fake_validate_err(errs, "state", "state is only valid with country US");
        else
            memcpy(out->state, s, 3);
    }

    if ((s = fake_validate_string(errs, body, "hl")) != NULL &&
        fake_validate_nonempty(errs, "hl", s, 35))
        out->hl = s;
    if ((s = fake_validate_string(errs, body, "location")) != NULL &&
        fake_validate_nonempty(errs, "location", s, 512))
        out->location = s;
    if ((s = fake_validate_string(errs, body, "uule")) != NULL &&
        fake_validate_nonempty(errs, "uule", s, 512))
        out->uule = s;
    if ((present & FV_LOCATION) && (present & FV_UULE))
        fake_validate_err(errs, "uule", "location and uule are mutually exclusive");

    if (spec->devices != NULL) {
        out->device = fake_validate_device(errs, body, spec->devices);
        /* "mobile" is an alias of "android" for Google Search and News (§5.7). */
        if (ep != FAKE_EP_AIMODE && strcmp(out->device, "mobile") == 0)
            out->device = "android";
    }

    fake_validate_int_1_10(body, "pages", errs, &out->pages);

    fake_validate_bool(errs, json_object_get(body, "legacy"), "legacy", &out->legacy);
    fake_validate_bool(errs, json_object_get(body, "disableWebSearch"), "disableWebSearch",
                       &out->disable_web_search);

    const json_t *inc = json_object_get(body, "include");
    if (inc != NULL)
        fake_validate_include(errs, inc, spec->includes, &out->include);

done:
    if (json_array_size(errs) == 0) {
        json_decref(errs);
        return NULL;
    }
    return errs;
}

static const char *const fake_validate_task_types[FAKE_EP_COUNT] = {
    [FAKE_EP_CHATGPT] = "CHATGPT",
    [FAKE_EP_GEMINI] = "GEMINI",
    [FAKE_EP_GROK] = "GROK",
    [FAKE_EP_COPILOT] = "COPILOT",
    [FAKE_EP_PERPLEXITY] = "PERPLEXITY",
    [FAKE_EP_AIMODE] = "AIMODE",
    [FAKE_EP_GOOGLE] = "GOOGLE",
    [FAKE_EP_GOOGLE_NEWS] = "GOOGLE_NEWS",
};

const char *fake_validate_task_type_name(enum fake_endpoint ep)
{
    return ep < FAKE_EP_COUNT ? fake_validate_task_types[ep] : NULL;
}

json_t *fake_validate_task(const json_t *body, const struct fake_validate_opts *opts,
                           struct fake_validate_task *out)
{
    json_t *errs = json_array();
    memset(out, 0, sizeof(*out));
    out->priority = 1;
    if (!json_is_object(body)) {
        fake_validate_err(errs, "body", "Expected object, received %s",
                          body ? fake_validate_type_name(body) : "nothing");
        return errs;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "taskType") != 0 && strcmp(key, "payload") != 0 &&
            strcmp(key, "priority") != 0 && strcmp(key, "idempotencyKey") != 0 &&
            strcmp(key, "webhook") != 0) {
            char field[96];
            snprintf(field, sizeof(field), "%.80s", key);
            fake_validate_err(errs, field, "Unrecognized key: \"%.80s\"", key);
        }
    }
    int ep = -1;
    const json_t *tt = json_object_get(body, "taskType");
    if (tt == NULL) {
        fake_validate_err(errs, "taskType", "Required");
    } else if (!json_is_string(tt)) {
        fake_validate_err(errs, "taskType", "Expected string, received %s",
                          fake_validate_type_name(tt));
    } else {
        for (int i = 0; i < FAKE_EP_COUNT; i++) {
            if (fake_validate_task_types[i] &&
                strcmp(json_string_value(tt), fake_validate_task_types[i]) == 0)
                ep = i;
        }
        if (ep < 0)
            fake_validate_err(errs, "taskType",
                              "Invalid enum value. Expected AIMODE | GOOGLE | GOOGLE_NEWS | GEMINI "
                              "| CHATGPT | COPILOT | PERPLEXITY | GROK, received '%.32s'",
                              json_string_value(tt));
        else
            out->task_type = fake_validate_task_types[ep];
    }
    fake_validate_int_1_10(body, "priority", errs, &out->priority);
    const json_t *ik = json_object_get(body, "idempotencyKey");
    if (ik != NULL) {
        if (!json_is_string(ik))
            fake_validate_err(errs, "idempotencyKey", "Expected string, received %s",
                              fake_validate_type_name(ik));
        else if (json_string_length(ik) == 0)
            fake_validate_err(errs, "idempotencyKey",
                              "String must contain at least 1 character(s)");
        else
            out->idempotency_key = json_string_value(ik);
    }
    const json_t *wh = json_object_get(body, "webhook");
    if (wh != NULL) {
        if (!json_is_object(wh)) {
            fake_validate_err(errs, "webhook", "Expected object, received %s",
                              fake_validate_type_name(wh));
        } else {
            json_object_foreach((json_t *)wh, key, v)
            {
                if (strcmp(key, "url") != 0) {
                    char field[96];
                    snprintf(field, sizeof(field), "webhook.%.80s", key);
                    fake_validate_err(errs, field, "Unrecognized key: \"%.80s\"", key);
                }
            }
            const json_t *u = json_object_get(wh, "url");
            const char *us = json_is_string(u) ? json_string_value(u) : NULL;
            if (u == NULL)
                fake_validate_err(errs, "webhook.url", "Required");
            else if (us == NULL ||
                     (strncmp(us, "http://", 7) != 0 && strncmp(us, "https://", 8) != 0) ||
                     strlen(us) <= 8)
                fake_validate_err(errs, "webhook.url", "Invalid url");
            else
                out->webhook_url = us;
        }
    }
    const json_t *payload = json_object_get(body, "payload");
    if (payload == NULL) {
        fake_validate_err(errs, "payload", "Required");
    } else if (!json_is_object(payload)) {
        fake_validate_err(errs, "payload", "Expected object, received %s",
                          fake_validate_type_name(payload));
    } else if (ep >= 0) {
        json_t *perrs = fake_validate_monitor((enum fake_endpoint)ep, payload, opts, &out->req);
        size_t i;
        json_array_foreach(perrs, i, v)
        {
            const char *f = json_string_value(json_object_get(v, "field"));
            char field[160];
            snprintf(field, sizeof(field), "payload.%s", f ? f : "");
            fake_validate_err(errs, field, "%s", json_string_value(json_object_get(v, "message")));
        }
        json_decref(perrs);
    }
    if (json_array_size(errs) == 0) {
        json_decref(errs);
        return NULL;
    }
    return errs;
}
