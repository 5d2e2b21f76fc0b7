/* fake_geo: static reference data — the country codes the fake accepts (ISO 3166-1
 * alpha-2 plus XK, cloro-api.md §4) and the 51 US state codes with names (§6.2).
 * Pure lookups; no allocation. */
#ifndef FAKE_GEO_H
#define FAKE_GEO_H

#include <stdbool.h>
#include <stddef.h>

/* True when code is exactly an uppercase country code of the list. */
bool fake_geo_is_country(const char *code);
size_t fake_geo_country_count(void);
const char *fake_geo_country_at(size_t i);

/* True when code is one of the 51 USPS codes (50 states + DC), uppercase. */
bool fake_geo_is_us_state(const char *code);
size_t fake_geo_state_count(void);
const char *fake_geo_state_code_at(size_t i);
const char *fake_geo_state_name_at(size_t i);

#endif
