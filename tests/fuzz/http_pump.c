/* http_pump.c: see http_pump.h. */
#include "http_pump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

uint16_t http_pump_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0 || a.sin_family != AF_INET)
        return 0;
    return ntohs(a.sin_port);
}

static int connect_loopback(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Loopback: the kernel completes the handshake without the server's loop. */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct reply_head {
    char *text;
    size_t size; /* of text, the terminator included */
    size_t len;
};

/* Reads what is there, keeping the head; false once the server closed (or
 * reset) the connection. */
static bool drain_reply(int fd, struct reply_head *head)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            size_t keep = head->size > head->len + 1 ? head->size - head->len - 1 : 0;
            if (keep > (size_t)n)
                keep = (size_t)n;
            if (keep > 0) {
                memcpy(head->text + head->len, buf, keep);
                head->len += keep;
                head->text[head->len] = '\0';
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return true;
        return false;
    }
}

bool http_pump(struct event_base *base, uint16_t port, const uint8_t *data, size_t size,
               int max_iterations, char *head, size_t head_size)
{
    struct reply_head kept = {.text = head, .size = head != NULL ? head_size : 0};
    if (kept.size > 0)
        head[0] = '\0';
    int fd = connect_loopback(port);
    if (fd < 0)
        return false;
    size_t sent = 0;
    bool shut = false, open = true;
    for (int i = 0; i < max_iterations && open; i++) {
        if (sent < size) {
            ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                sent = size; /* the server closed early: stop writing */
        }
        if (sent == size && !shut) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        open = drain_reply(fd, &kept);
    }
    /* Reset rather than close: no TIME_WAIT left behind, thousands of times a second. */
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(fd);
    return !open;
}
