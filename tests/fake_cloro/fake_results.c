/* fake_results: generates plausible provider results from a PRNG seeded with
 * SHA-256(fake_results_seed_key(req)). Shapes follow §5.1-§5.9: ChatGPT 0-based
 * citationPillId, Perplexity snake_case, AI Mode `ads` object, Google `html` array;
 * optional fields are omitted unless requested. */
#include "fake_results.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_util.h"

static const char *const fake_results_words[] = {
    "solar",   "market",  "coffee",  "travel",   "budget",   "garden",  "network", "history",
    "science", "health",  "recipe",  "climate",  "energy",   "startup", "design",  "music",
    "finance", "weather", "fitness", "language", "software", "ocean",   "city",    "museum",
    "review",  "guide",   "price",   "compare",  "local",    "modern",  "classic", "quick",
    "simple",  "annual",  "global",  "urban",    "digital",  "natural", "premium", "daily",
};
#define FAKE_RESULTS_NWORDS (sizeof(fake_results_words) / sizeof(fake_results_words[0]))

static const char *fake_results_word(struct fake_rng *rng)
{
    return fake_results_words[fake_rng_below(rng, FAKE_RESULTS_NWORDS)];
}

/* A growable string; aborts on OOM through fake_xmalloc. */
struct fake_results_buf {
    char *data;
    size_t len;
    size_t cap;
};

static void fake_results_buf_add(struct fake_results_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = fake_xmalloc(cap);
        if (b->data)
            memcpy(p, b->data, b->len);
        free(b->data);
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void fake_results_buf_str(struct fake_results_buf *b, const char *s)
{
    fake_results_buf_add(b, s, strlen(s));
}

static void fake_results_buf_kv(struct fake_results_buf *b, const char *k, const char *v)
{
    fake_results_buf_str(b, k);
    fake_results_buf_str(b, "=");
    fake_results_buf_str(b, v ? v : "");
    fake_results_buf_str(b, "\n");
}

char *fake_results_seed_key(const struct fake_validate_req *req)
{
    struct fake_results_buf b = {0};
    char num[32];
    fake_results_buf_kv(&b, "endpoint", fake_validate_endpoint_name(req->endpoint));
    fake_results_buf_kv(&b, "text", req->text);
    fake_results_buf_kv(&b, "url", req->url);
    fake_results_buf_kv(&b, "country", req->country);
    fake_results_buf_kv(&b, "state", req->state);
    fake_results_buf_kv(&b, "hl", req->hl);
    fake_results_buf_kv(&b, "location", req->location);
    fake_results_buf_kv(&b, "uule", req->uule);
    fake_results_buf_kv(&b, "device", req->device);
    snprintf(num, sizeof(num), "%d", req->pages);
    fake_results_buf_kv(&b, "pages", num);
    snprintf(num, sizeof(num), "%u", req->include);
    fake_results_buf_kv(&b, "include", num);
    fake_results_buf_kv(&b, "legacy", req->legacy ? "1" : "0");
    fake_results_buf_kv(&b, "disableWebSearch", req->disable_web_search ? "1" : "0");
    return b.data;
}

int fake_results_page_count(const struct fake_validate_req *req)
{
    switch (req->endpoint) {
    case FAKE_EP_GOOGLE:
    case FAKE_EP_GOOGLE_NEWS:
        return req->pages;
    case FAKE_EP_GOOGLE_GOTO:
    case FAKE_EP_COUNT:
        return 0;
    default:
        return 1;
    }
}

/* First up to max_bytes of s, cut on a UTF-8 boundary, new malloc'd. */
static char *fake_results_snippet(const char *s, size_t max_bytes)
{
    size_t n = strlen(s);
    if (n > max_bytes) {
        n = max_bytes;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    char *p = fake_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void fake_results_sentence(struct fake_results_buf *b, struct fake_rng *rng)
{
    int words = 8 + (int)fake_rng_below(rng, 7);
    for (int i = 0; i < words; i++) {
        const char *w = fake_results_word(rng);
        if (i == 0) {
            char first[2] = {(char)toupper((unsigned char)w[0]), '\0'};
            fake_results_buf_str(b, first);
            fake_results_buf_str(b, w + 1);
        } else {
            fake_results_buf_str(b, " ");
            fake_results_buf_str(b, w);
        }
    }
    fake_results_buf_str(b, ".");
}

static const char *fake_results_provider_label(enum fake_endpoint ep)
{
    static const char *const labels[FAKE_EP_COUNT] = {
        "ChatGPT", "Gemini", "Grok",        "Copilot",     "Perplexity",
        "AI Mode", "Google", "Google News", "Google goto",
    };
    return ep < FAKE_EP_COUNT ? labels[ep] : "cloro";
}

/* Source list shared by the AI engines: {position, url, label, description}. */
static json_t *fake_results_sources(struct fake_rng *rng, int n, enum fake_endpoint ep)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const char *a = fake_results_word(rng);
        const char *c = fake_results_word(rng);
        char url[160], label[96];
        snprintf(url, sizeof(url), "https://www.%s-%s.example.com/%s/%08llx", a, c,
                 fake_results_word(rng), (unsigned long long)(fake_rng_next(rng) & 0xffffffffu));
        snprintf(label, sizeof(label), "The %s %s guide", a, c);
        struct fake_results_buf desc = {0};
        fake_results_sentence(&desc, rng);
        json_t *src = json_pack("{s:i, s:s, s:s, s:s}", "position", i + 1, "url", url, "label",
                                label, "description", desc.data);
        free(desc.data);
        if (ep == FAKE_EP_CHATGPT)
            json_object_set_new(src, "footnote", json_boolean(i == 0));
        if (ep == FAKE_EP_GROK) {
            char site[64];
            snprintf(site, sizeof(site), "%s-%s.example.com", a, c);
            json_object_set_new(src, "preview", json_string(label));
            json_object_set_new(src, "siteName", json_string(site));
            json_object_set_new(src, "metadataTitle", json_string(label));
        }
        json_array_append_new(arr, src);
    }
    return arr;
}

static const char *fake_results_domain_of(const char *url, char *out, size_t len)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), p);
    return out;
}

/* citationPills pointing at the first sources; base is 0 for ChatGPT, 1 elsewhere. */
static json_t *fake_results_pills(const json_t *sources, int base, bool chatgpt)
{
    json_t *arr = json_array();
    size_t n = json_array_size(sources) < 2 ? json_array_size(sources) : 2;
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(sources, i);
        const char *url = json_string_value(json_object_get(s, "url"));
        char domain[128];
        json_t *pill =
            json_pack("{s:s, s:s, s:s, s:I, s:I}", "url", url, "label",
                      json_string_value(json_object_get(s, "label")), "domain",
                      fake_results_domain_of(url, domain, sizeof(domain)), "citationPillId",
                      (json_int_t)(base + (int)i), "position", (json_int_t)(i + 1));
        if (chatgpt)
            json_object_set_new(pill, "type", json_string("searchResult"));
        json_array_append_new(arr, pill);
    }
    return arr;
}

static json_t *fake_results_queries(struct fake_rng *rng, const char *topic, int n)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        char *q = fake_xasprintf("%s %s", topic, fake_results_word(rng));
        json_array_append_new(arr, json_string(q));
        free(q);
    }
    return arr;
}

static char *fake_results_markdown(const char *title, const char *text, const json_t *sources)
{
    struct fake_results_buf b = {0};
    fake_results_buf_str(&b, "## ");
    fake_results_buf_str(&b, title);
    fake_results_buf_str(&b, "\n\n");
    fake_results_buf_str(&b, text);
    fake_results_buf_str(&b, "\n");
    size_t i;
    const json_t *s;
    json_array_foreach(sources, i, s)
    {
        char *line =
            fake_xasprintf("\n%zu. [%s](%s)", i + 1, json_string_value(json_object_get(s, "label")),
                           json_string_value(json_object_get(s, "url")));
        fake_results_buf_str(&b, line);
        free(line);
    }
    fake_results_buf_str(&b, "\n");
    return b.data;
}

static void fake_results_set_html(json_t *result, const struct fake_validate_req *req,
                                  const char *html_base)
{
    if (html_base == NULL || !(req->include & FAKE_INC_HTML))
        return;
    int pages = fake_results_page_count(req);
    if (req->endpoint == FAKE_EP_GOOGLE || req->endpoint == FAKE_EP_GOOGLE_NEWS) {
        json_t *arr = json_array();
        for (int p = 1; p <= pages; p++) {
            char *u = fake_xasprintf("%s/page-%d.html", html_base, p);
            json_array_append_new(arr, json_string(u));
            free(u);
        }
        json_object_set_new(result, "html", arr);
    } else {
        char *u = fake_xasprintf("%s/page-1.html", html_base);
        json_object_set_new(result, "html", json_string(u));
        free(u);
    }
}

static json_t *fake_results_ai_engine(const struct fake_validate_req *req, struct fake_rng *rng,
                                      const char *text, const char *topic, int *clusters_out)
{
    enum fake_endpoint ep = req->endpoint;
    int nsrc = req->disable_web_search ? 0 : 3 + (int)fake_rng_below(rng, 3);
    json_t *sources = fake_results_sources(rng, nsrc, ep);
    json_t *result = json_pack("{s:s, s:o}", "text", text, "sources", sources);

    switch (ep) {
    case FAKE_EP_CHATGPT:
        if (json_array_size(sources) > 0)
            json_object_set_new(result, "citationPills", fake_results_pills(sources, 0, true));
        json_object_set_new(result, "model",
                            req->legacy ? json_string("gpt-5-3-mini") : json_null());
        json_object_set_new(result, "entities",
                            json_pack("[{s:s, s:s}]", "type", "topic", "name", topic));
        if (req->include & FAKE_INC_SEARCH_QUERIES) {
            json_object_set_new(result, "searchQueries", fake_results_queries(rng, topic, 2));
            json_object_set_new(result, "mapSearchQueries", json_array());
        }
        if (req->include & FAKE_INC_ADS) {
            json_object_set_new(result, "ads",
                                json_pack("[{s:{s:s, s:s}, s:[{s:s, s:s, s:s}], s:s, s:i, s:b}]",
                                          "brand", "name", "Example Brand", "url",
                                          "https://brand.example.com/", "cards", "title",
                                          "Try Example", "body", "A sponsored card.", "url",
                                          "https://brand.example.com/offer", "visibility",
                                          "allowed", "adsResponseIndex", 0, "rendered", 1));
        }
        if (req->include & FAKE_INC_SHOPPING) {
            json_t *product = json_pack(
                "{s:s, s:i, s:s, s:s, s:s, s:s, s:[], s:f, s:i, s:s, s:[]}", "title",
                "Example Product", "position", 1, "url", "https://shop.example.com/p/1", "price",
                "$19.99", "featured_tag", "Popular", "merchant", "Example Shop", "image_urls",
                "rating", 4.5, "num_reviews", 120, "id", "prod-1", "offers");
            json_object_set_new(
                result, "shoppingCards",
                json_pack("[{s:[s], s:[O]}]", "tags", "Top pick", "products", product));
            json_object_set_new(
                result, "inlineProducts",
                json_pack("[{s:o, s:s}]", "product", product, "render_as", "inline"));
        }
        if (req->include & FAKE_INC_RAW_RESPONSE) {
            json_object_set_new(
                result, "rawResponse",
                json_pack("[{s:s, s:s, s:{s:s, s:s, s:s}}, {s:s, s:{s:[{s:s, s:s}]}}]", "type",
                          "message", "conversation_id", "fake-conversation", "message", "id",
                          "fake-message", "role", "assistant", "model", "gpt-5-3-mini", "type",
                          "delta", "delta", "content", "type", "text", "text_delta", text));
        }
        break;
    case FAKE_EP_GEMINI:
    case FAKE_EP_COPILOT:
        if (json_array_size(sources) > 0)
            json_object_set_new(result, "citationPills", fake_results_pills(sources, 1, false));
        if (ep == FAKE_EP_COPILOT)
            json_object_set_new(result, "searchQueries", fake_results_queries(rng, topic, 1));
        break;
    case FAKE_EP_GROK:
        json_object_set_new(result, "searchQueries", fake_results_queries(rng, topic, 2));
        json_object_set_new(result, "model", json_string("grok-4-auto"));
        break;
    case FAKE_EP_PERPLEXITY:
        if (json_array_size(sources) > 0)
            json_object_set_new(result, "citationPills", fake_results_pills(sources, 1, false));
        json_object_set_new(result, "related_queries", fake_results_queries(rng, topic, 3));
        json_object_set_new(result, "search_model_queries", fake_results_queries(rng, topic, 1));
        break;
    case FAKE_EP_AIMODE: {
        if (json_array_size(sources) > 0)
            json_object_set_new(result, "citationPills", fake_results_pills(sources, 1, false));
        /* AI Mode `ads` is an object, not an array (§5.6). */
        json_object_set_new(result, "ads",
                            json_pack("{s:s, s:[{s:s, s:s, s:i, s:s}]}", "title", "Sponsored",
                                      "ads", "title", "Example sponsored result", "url",
                                      "https://ads.example.com/landing", "position", 1, "store",
                                      "Example Store"));
        if (req->include & FAKE_INC_EXPAND_PRODUCTS) {
            int n = 1 + (int)fake_rng_below(rng, 3);
            json_t *products = json_array();
            for (int i = 0; i < n; i++) {
                char *title =
                    fake_xasprintf("%s %s product %d", topic, fake_results_word(rng), i + 1);
                json_array_append_new(products,
                                      json_pack("{s:s, s:[{s:s, s:s, s:{s:f, s:s, s:s}}]}", "title",
                                                title, "stores", "name", "Example Store", "link",
                                                "https://store.example.com/item", "price", "value",
                                                19.99, "currency", "USD", "raw", "$19.99"));
                free(title);
            }
            json_object_set_new(result, "productResults", products);
            if (clusters_out)
                *clusters_out = n;
        }
        break;
    }
    default:
        break;
    }
    return result;
}

static json_t *fake_results_google(const struct fake_validate_req *req, struct fake_rng *rng,
                                   const char *topic, const char *text)
{
    json_t *organic = json_array();
    int position = 1;
    for (int page = 1; page <= req->pages; page++) {
        for (int i = 0; i < 10; i++, position++) {
            const char *a = fake_results_word(rng);
            char link[160], displayed[96], title[96];
            snprintf(link, sizeof(link), "https://www.%s.example.org/%s/%d", a, topic, position);
            snprintf(displayed, sizeof(displayed), "www.%s.example.org", a);
            snprintf(title, sizeof(title), "%s %s - %s", topic, fake_results_word(rng), a);
            struct fake_results_buf snip = {0};
            fake_results_sentence(&snip, rng);
            json_array_append_new(organic,
                                  json_pack("{s:i, s:s, s:s, s:s, s:s, s:i}", "position", position,
                                            "title", title, "link", link, "displayedLink",
                                            displayed, "snippet", snip.data, "page", page));
            free(snip.data);
        }
    }
    json_t *related = json_array();
    for (int i = 0; i < 3; i++) {
        char *q = fake_xasprintf("%s %s", topic, fake_results_word(rng));
        char *link = fake_xasprintf("https://www.google.com/search?q=%s+%d", topic, i);
        json_array_append_new(related, json_pack("{s:s, s:s}", "query", q, "link", link));
        free(q);
        free(link);
    }
    char *question = fake_xasprintf("What is the best %s?", topic);
    json_t *paa =
        json_pack("[{s:s, s:s, s:s, s:s, s:s}]", "question", question, "type", "LINK", "snippet",
                  text, "title", question, "link", "https://www.paa.example.org/answer");
    free(question);
    json_t *result = json_pack("{s:o, s:o, s:o, s:[]}", "organicResults", organic,
                               "relatedSearches", related, "peopleAlsoAsk", paa, "ads");
    if (req->include & FAKE_INC_AIOVERVIEW) {
        json_t *sources = fake_results_sources(rng, 3, FAKE_EP_GOOGLE);
        json_t *aio = json_pack("{s:s, s:O}", "text", text, "sources", sources);
        json_object_set_new(aio, "citationPills", fake_results_pills(sources, 1, false));
        if (req->include & FAKE_INC_AIOVERVIEW_MARKDOWN) {
            char *md = fake_results_markdown("AI Overview", text, sources);
            json_object_set_new(aio, "markdown", json_string(md));
            free(md);
        }
        json_decref(sources);
        json_object_set_new(result, "aioverview", aio);
    }
    return result;
}

static json_t *fake_results_news(const struct fake_validate_req *req, struct fake_rng *rng,
                                 const char *topic)
{
    json_t *news = json_array();
    int position = 1;
    for (int page = 1; page <= req->pages; page++) {
        for (int i = 0; i < 10; i++, position++) {
            const char *src = fake_results_word(rng);
            char link[160], title[128], source[64];
            snprintf(link, sizeof(link), "https://news.%s.example.net/%s-%d", src, topic, position);
            snprintf(title, sizeof(title), "%s: %s %s update", topic, fake_results_word(rng),
                     fake_results_word(rng));
            snprintf(source, sizeof(source), "The %s Times", src);
            struct fake_results_buf snip = {0};
            fake_results_sentence(&snip, rng);
            json_array_append_new(news, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:s}",
                                                  "position", position, "title", title, "link",
                                                  link, "snippet", snip.data, "source", source,
                                                  "date", "2 hours ago", "page", page, "thumbnail",
                                                  "https://img.example.net/thumb.jpg"));
            free(snip.data);
        }
    }
    return json_pack("{s:o}", "newsResults", news);
}

/* Percent-decodes s[0..len) into a new string. */
static char *fake_results_pct_decode(const char *s, size_t len)
{
    char *out = fake_xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* goto destination: the link's url= or q= parameter when it is absolute http(s). */
static json_t *fake_results_goto(const char *url)
{
    const char *q = strchr(url, '?');
    while (q != NULL && *q) {
        q++;
        size_t seg = strcspn(q, "&#");
        const char *val = NULL;
        if (strncmp(q, "url=", 4) == 0)
            val = q + 4;
        else if (strncmp(q, "q=", 2) == 0)
            val = q + 2;
        if (val != NULL) {
            char *dest = fake_results_pct_decode(val, seg - (size_t)(val - q));
            json_t *body = NULL;
            /* json_pack fails (NULL) on invalid UTF-8: fall through to the hash URL. */
            if (strncmp(dest, "https://", 8) == 0 || strncmp(dest, "http://", 7) == 0)
                body = json_pack("{s:s}", "url", dest);
            free(dest);
            if (body != NULL)
                return body;
        }
        q = strchr(q, '&');
    }
    char hex[65];
    fake_util_sha256_hex(url, strlen(url), hex);
    char *dest = fake_xasprintf("https://example.com/goto/%.16s", hex);
    json_t *body = json_pack("{s:s}", "url", dest);
    free(dest);
    return body;
}

json_t *fake_results_build(const struct fake_validate_req *req, const char *html_base,
                           char **text_out, int *clusters_out)
{
    if (clusters_out)
        *clusters_out = 0;
    if (text_out)
        *text_out = NULL;
    if (req->endpoint == FAKE_EP_GOOGLE_GOTO)
        return fake_results_goto(req->url ? req->url : "");

    char *key = fake_results_seed_key(req);
    struct fake_rng rng;
    fake_rng_seed(&rng, fake_util_sha256_u64(key, strlen(key)));
    free(key);

    const char *topic = fake_results_word(&rng);
    char *snippet = fake_results_snippet(req->text ? req->text : (req->url ? req->url : ""), 60);
    struct fake_results_buf text = {0};
    char *intro = fake_xasprintf("Fake %s answer about \"%s\" for %s%s%s.",
                                 fake_results_provider_label(req->endpoint), snippet, req->country,
                                 req->state[0] ? "-" : "", req->state);
    fake_results_buf_str(&text, intro);
    free(intro);
    free(snippet);
    int sentences = 2 + (int)fake_rng_below(&rng, 3);
    for (int i = 0; i < sentences; i++) {
        fake_results_buf_str(&text, " ");
        fake_results_sentence(&text, &rng);
    }

    json_t *result;
    if (req->endpoint == FAKE_EP_GOOGLE)
        result = fake_results_google(req, &rng, topic, text.data);
    else if (req->endpoint == FAKE_EP_GOOGLE_NEWS)
        result = fake_results_news(req, &rng, topic);
    else
        result = fake_results_ai_engine(req, &rng, text.data, topic, clusters_out);

    if (req->include & FAKE_INC_MARKDOWN) {
        const json_t *sources = json_object_get(result, "sources");
        json_t *empty = json_array();
        char *md = fake_results_markdown(fake_results_provider_label(req->endpoint), text.data,
                                         sources ? sources : empty);
        json_decref(empty);
        json_object_set_new(result, "markdown", json_string(md));
        free(md);
    }
    fake_results_set_html(result, req, html_base);

    if (text_out)
        *text_out = text.data;
    else
        free(text.data);
    return json_pack("{s:b, s:o}", "success", 1, "result", result);
}
