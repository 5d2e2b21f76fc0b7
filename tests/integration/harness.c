/* harness.c: process control and HTTP helpers for the integration tests.
 * Processes are real (fork + exec of the built binaries), on loopback ports
 * they choose themselves (port 0); readiness is their own listening line. */
#include "harness.h"
#include "driver.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <ftw.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *proc_log(const struct proc *p)
{
    FILE *f = fopen(p->log_path, "r");
    if (f == NULL)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    size_t n = fread(text, 1, (size_t)len, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static bool find_listening(struct proc *p)
{
    char *log = proc_log(p);
    const char *line = strstr(log, "event=listening");
    bool found = false;
    if (line != NULL) {
        const char *addr = strstr(line, "addr=");
        const char *eol = strchr(line, '\n');
        if (addr != NULL && eol != NULL && addr < eol) {
            addr += 5;
            size_t len = strcspn(addr, " \n");
            if (len < sizeof p->addr) {
                memcpy(p->addr, addr, len);
                p->addr[len] = '\0';
                snprintf(p->url, sizeof p->url, "http://%s", p->addr);
                found = true;
            }
        }
    }
    free(log);
    return found;
}

static char *substitute_dir(const char *arg, const char *dir)
{
    const char *at = strstr(arg, "{dir}");
    char *out = NULL;
    if (at == NULL)
        return strdup(arg);
    if (asprintf(&out, "%.*s%s%s", (int)(at - arg), arg, dir, at + 5) < 0)
        abort();
    return out;
}

int proc_start(struct proc *p, const char *name, const char *const argv[],
               const char *const env_extra[])
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(p->dir, sizeof p->dir, "%s/cloro-it-%s-XXXXXX", tmp, name);
    if (mkdtemp(p->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(p->log_path, sizeof p->log_path, "%s/%s.log", p->dir, name);

    size_t argc = 0;
    while (argv[argc] != NULL)
        argc++;
    char **args = calloc(argc + 1, sizeof *args);
    for (size_t i = 0; i < argc; i++)
        args[i] = substitute_dir(argv[i], p->dir);

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        /* Only what the test names: a key in the runner's environment must not leak in. */
        unsetenv("CLORO_API_KEY");
        for (size_t i = 0; env_extra != NULL && env_extra[i] != NULL; i++)
            putenv((char *)env_extra[i]);
        execv(args[0], args);
        fprintf(stderr, "exec %s: %s\n", args[0], strerror(errno));
        _exit(127);
    }
    for (size_t i = 0; i < argc; i++)
        free(args[i]);
    free(args);
    p->pid = pid;

    long long deadline = now_ms() + 15000;
    while (now_ms() < deadline) {
        if (find_listening(p))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            p->pid = 0;
            break;
        }
        sleep_ms(10);
    }
    char *log = proc_log(p);
    fprintf(stderr, "harness: %s did not start; its log:\n%s\n", name, log);
    free(log);
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
    return -1;
}

int proc_start_fake(struct proc *p, const char *const extra[])
{
    const char *argv[48] = {FAKE_CLORO_BIN, "--listen", "127.0.0.1:0"};
    size_t n = 3;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 47; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return proc_start(p, "fake", argv, NULL);
}

int proc_start_proxy(struct proc *p, const char *upstream_url, const char *const extra[],
                     const char *const env_extra[])
{
    const char *argv[48] = {CLORO_PROXY_BIN, "serve",      "--listen",    "127.0.0.1:0",
                            "--upstream",    upstream_url, "--cache-dir", "{dir}/cache"};
    size_t n = 8;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 47; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return proc_start(p, "proxy", argv, env_extra);
}

bool proc_wait_exit(struct proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return true;
    long long deadline = now_ms() + timeout_ms;
    do {
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            p->pid = 0;
            return true;
        }
        sleep_ms(10);
    } while (now_ms() < deadline);
    return false;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void remove_tree(const char *dir)
{
    if (dir[0] != '\0' && getenv("KEEP_TEST_LOGS") == NULL)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void proc_stop(struct proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        if (!proc_wait_exit(p, 10000)) {
            kill(p->pid, SIGKILL);
            proc_wait_exit(p, 5000);
        }
    }
    remove_tree(p->dir);
}

int http_call(const char *method, const char *url, const char *body, const char *const headers[],
              struct http_reply *out)
{
    memset(out, 0, sizeof *out);
    out->body = calloc(1, 1);
    CURL *easy = curl_easy_init();
    struct curl_slist *list = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        list = curl_slist_append(list, headers[i]);
    list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, reply_on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, reply_on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, out);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode code = curl_easy_perform(easy);
    out->curl_code = (int)code;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(easy);
    return code == CURLE_OK ? 0 : -1;
}

const char *http_header(const struct http_reply *r, const char *name)
{
    for (size_t i = 0; i < r->header_count; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

char *proc_url(const struct proc *p, const char *path)
{
    char *url = NULL;
    if (asprintf(&url, "%s%s", p->url, path) < 0)
        abort();
    return url;
}

int proc_connect(const struct proc *p)
{
    const char *colon = strrchr(p->addr, ':');
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(colon != NULL ? colon + 1 : "0"))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "cannot connect to %s: %s\n", p->addr, strerror(errno));
        abort();
    }
    return fd;
}

void http_post(const struct proc *p, const char *path, const char *body,
               const char *const headers[], struct http_reply *out)
{
    char *url = proc_url(p, path);
    const char *defaults[] = {"Content-Type: application/json", NULL};
    http_call("POST", url, body, headers != NULL ? headers : defaults, out);
    free(url);
}

void http_get(const struct proc *p, const char *path, struct http_reply *out)
{
    char *url = proc_url(p, path);
    http_call("GET", url, NULL, NULL, out);
    free(url);
}

const char *http_error_code(const struct http_reply *r)
{
    static char code[64];
    json_t *j = http_json(r);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    snprintf(code, sizeof code, "%s", c != NULL ? c : "(none)");
    json_decref(j);
    return code;
}

json_t *http_json(const struct http_reply *r)
{
    return json_loadb(r->body, r->body_len, 0, NULL);
}

void http_reply_free(struct http_reply *r)
{
    free(r->body);
    for (size_t i = 0; i < r->header_count; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    memset(r, 0, sizeof *r);
}

json_t *fake_stats(const struct proc *fake)
{
    char url[160];
    snprintf(url, sizeof url, "%s/_fake/stats", fake->url);
    struct http_reply r;
    http_call("GET", url, NULL, NULL, &r);
    json_t *j = http_json(&r);
    http_reply_free(&r);
    return j;
}

void fake_reset(const struct proc *fake)
{
    char url[160];
    snprintf(url, sizeof url, "%s/_fake/reset", fake->url);
    struct http_reply r;
    http_call("POST", url, "", NULL, &r);
    http_reply_free(&r);
}

void fake_configure(const struct proc *fake, const char *json)
{
    char url[160];
    snprintf(url, sizeof url, "%s/_fake/config", fake->url);
    const char *headers[] = {"Content-Type: application/json", NULL};
    struct http_reply r;
    http_call("POST", url, json, headers, &r);
    if (r.status != 200)
        fprintf(stderr, "harness: /_fake/config %s -> %ld %s\n", json, r.status, r.body);
    http_reply_free(&r);
}

/* Walks "a.b.c" through objects; a segment may contain '/' (paths). */
json_t *json_dig(json_t *root, const char *dotted)
{
    json_t *node = root;
    char *copy = strdup(dotted);
    char *save = NULL;
    for (char *seg = strtok_r(copy, ".", &save); seg != NULL && node != NULL;
         seg = strtok_r(NULL, ".", &save))
        node = json_object_get(node, seg);
    free(copy);
    return node;
}

long long fake_stat(const struct proc *fake, const char *dotted_path)
{
    json_t *stats = fake_stats(fake);
    json_t *node = json_dig(stats, dotted_path);
    long long v = json_is_integer(node) ? (long long)json_integer_value(node) : 0;
    json_decref(stats);
    return v;
}

long long proxy_counter(const struct proc *proxy, const char *dotted_path)
{
    struct http_reply r;
    http_get(proxy, "/_proxy/stats", &r);
    json_t *stats = http_json(&r);
    json_t *node = json_dig(stats, dotted_path);
    long long v = json_is_integer(node) ? (long long)json_integer_value(node) : -1;
    json_decref(stats);
    http_reply_free(&r);
    return v;
}

long long proxy_wait_counter(const struct proc *proxy, const char *dotted_path, long long value,
                             int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    long long v;
    while ((v = proxy_counter(proxy, dotted_path)) < value && now_ms() < deadline)
        sleep_ms(20);
    return v;
}

bool fake_wait_stat(const struct proc *fake, const char *dotted_path, long long value,
                    int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    do {
        if (fake_stat(fake, dotted_path) >= value)
            return true;
        sleep_ms(10);
    } while (now_ms() < deadline);
    return false;
}

void cli_run(struct cli_result *out, const char *const args[])
{
    char path[] = "/tmp/cloro-it-cli-XXXXXX";
    int fd = mkstemp(path);
    const char *argv[32] = {CLORO_PROXY_BIN};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        unsetenv("CLORO_API_KEY");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    struct proc p = {.pid = pid};
    if (!proc_wait_exit(&p, 20000)) {
        kill(pid, SIGKILL);
        proc_wait_exit(&p, 5000);
    }
    out->status = p.exit_status;
    off_t len = lseek(fd, 0, SEEK_END);
    out->output = calloc(1, (size_t)len + 1);
    if (pread(fd, out->output, (size_t)len, 0) != len)
        out->output[0] = '\0';
    close(fd);
    unlink(path);
}

void sha256_hex(const char *text, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, strlen(text), digest);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

bool is_uuid(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
            return false;
    }
    return true;
}
