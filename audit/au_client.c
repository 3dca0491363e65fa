/*
 * au_client - send records and usage updates to mailkeep-auditd. See au_client.h.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "au_client.h"
#include "au_proto.h"
#include "mk_util.h"

#define AU_CLIENT_TIMEOUT_MS	30000
#define AU_CLIENT_ANSWER_MAX	4096

struct au_client {
    char *path;
    int fd;
    int timeout_ms;
    unsigned long syncs;
    uint64_t seq;
    char buf[AU_CLIENT_ANSWER_MAX + 1];
    size_t used;
};

static int64_t au_client_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready until deadline: 1, 0 on timeout, -1 on error. */
static int au_client_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int64_t left = deadline - au_client_now_ms();
        int rc;

        if (left <= 0)
            return 0;
        rc = poll(&p, 1, left > 60000 ? 60000 : (int) left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc != 0)
            return rc < 0 ? -1 : 1;
    }
}

struct au_client *au_client_open(const char *socket_path, char **error)
{
    int64_t deadline = au_client_now_ms() + AU_CLIENT_TIMEOUT_MS;
    struct sockaddr_un sun;
    struct au_client *c;
    int fd, err = 0;

    *error = NULL;
    if (strlen(socket_path) >= sizeof(sun.sun_path)) {
        *error = mk_xasprintf("%s: socket path too long", socket_path);
        return NULL;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, socket_path, strlen(socket_path));
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
        *error = mk_xasprintf("socket: %s", strerror(errno));
        return NULL;
    }
    if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
        err = errno;
        if (err == EAGAIN || err == EINPROGRESS) {
            socklen_t len = sizeof(err);

            /* the backlog is full: wait for the daemon to take us */
            if (au_client_wait(fd, POLLOUT, deadline) <= 0)
                err = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        }
    }
    if (err != 0 && err != EISCONN) {
        *error = mk_xasprintf("%s: cannot connect: %s (is mailkeep-auditd running?)",
                              socket_path, strerror(err));
        close(fd);
        return NULL;
    }
    c = mk_xcalloc(1, sizeof(*c));
    c->path = mk_xstrdup(socket_path);
    c->fd = fd;
    c->timeout_ms = AU_CLIENT_TIMEOUT_MS;
    return c;
}

static int au_client_write(struct au_client *c, const char *data, size_t len, char **error)
{
    int64_t deadline = au_client_now_ms() + c->timeout_ms;

    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            /* the daemon reads no more while its disk is full: wait */
            if (au_client_wait(c->fd, POLLOUT, deadline) <= 0) {
                *error = mk_xasprintf("%s: the daemon takes nothing more (a full disk?)",
                                      c->path);
                return -1;
            }
            continue;
        }
        if (n < 0) {
            *error = mk_xasprintf("%s: cannot send: %s", c->path, strerror(errno));
            return -1;
        }
        data += n;
        len -= (size_t) n;
    }
    return 0;
}

int au_client_send(struct au_client *c, char kind, const json_t *obj, char **error)
{
    struct au_proto_line check;
    char *json, *line;
    size_t len;
    int rc;

    *error = NULL;
    if (kind != 'A' && kind != 'U') {
        *error = mk_xasprintf("%s: a line of kind %c is not sent this way", c->path, kind);
        return -1;
    }
    if ((json = json_dumps(obj, JSON_COMPACT)) == NULL) {
        *error = mk_xasprintf("%s: cannot write the %s as JSON", c->path,
                              kind == 'A' ? "record" : "update");
        return -1;
    }
    line = mk_xasprintf("%c %s\n", kind, json);
    free(json);
    len = strlen(line);
    /* what the daemon would refuse is refused here, with its reason */
    if (au_proto_parse(line, len - 1, &check, error) < 0) {
        char *why = mk_xasprintf("%s: not sent: %s", c->path, *error);

        free(*error);
        *error = why;
        free(line);
        return -1;
    }
    au_proto_line_free(&check);
    rc = au_client_write(c, line, len, error);
    free(line);
    return rc;
}

int au_client_sync(struct au_client *c, char **error)
{
    int64_t deadline = au_client_now_ms() + c->timeout_ms;
    char token[AU_PROTO_MAX_TOKEN + 1], ok[64], failed[64], *refused = NULL, line[64];
    size_t ok_len, failed_len;

    *error = NULL;
    snprintf(token, sizeof(token), "mk-%ld-%lu", (long) getpid(), ++c->syncs);
    ok_len = (size_t) snprintf(ok, sizeof(ok), "S %s ok ", token);
    failed_len = (size_t) snprintf(failed, sizeof(failed), "S %s error ", token);
    snprintf(line, sizeof(line), "S %s\n", token);
    if (au_client_write(c, line, strlen(line), error) < 0)
        return -1;
    for (;;) {
        char *nl;
        ssize_t n;

        while ((nl = memchr(c->buf, '\n', c->used)) != NULL) {
            size_t len = (size_t) (nl - c->buf);
            int rc = 1;

            *nl = '\0';
            if (len > 2 && c->buf[0] == 'E' && c->buf[1] == ' ' && refused == NULL)
                refused = mk_xstrdup(c->buf + 2);
            else if (strncmp(c->buf, ok, ok_len) == 0) {
                c->seq = strtoull(c->buf + ok_len, NULL, 10);
                rc = 0;
            } else if (strncmp(c->buf, failed, failed_len) == 0) {
                *error = mk_xasprintf("%s: not kept: %s", c->path, refused ? refused
                                                                           : c->buf + failed_len);
                rc = -1;
            }
            memmove(c->buf, nl + 1, c->used - len - 1);
            c->used -= len + 1;
            if (rc <= 0) {
                if (rc == 0 && refused)     /* cannot happen: the daemon says error */
                    *error = mk_xasprintf("%s: refused: %s", c->path, refused), rc = -1;
                free(refused);
                return rc;
            }
        }
        if (c->used == AU_CLIENT_ANSWER_MAX)
            c->used = 0;                /* an answer too long to be ours */
        n = recv(c->fd, c->buf + c->used, AU_CLIENT_ANSWER_MAX - c->used, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (au_client_wait(c->fd, POLLIN, deadline) <= 0) {
                *error = mk_xasprintf("%s: no answer from mailkeep-auditd in %d seconds (a full "
                                      "disk?)", c->path, c->timeout_ms / 1000);
                free(refused);
                return -1;
            }
            continue;
        }
        if (n <= 0) {
            *error = mk_xasprintf("%s: the daemon closed the connection before answering%s%s",
                                  c->path, refused ? ": refused: " : "", refused ? refused : "");
            free(refused);
            return -1;
        }
        c->used += (size_t) n;
    }
}

uint64_t au_client_seq(const struct au_client *c)
{
    return c->seq;
}

void au_client_close(struct au_client *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c->path);
    free(c);
}

int au_client_record(const char *socket_path, const json_t *record, int timeout_ms,
                     uint64_t *seq, char **error)
{
    struct au_client *c = au_client_open(socket_path, error);
    int rc;

    if (c == NULL)
        return -1;
    if (timeout_ms > 0)
        c->timeout_ms = timeout_ms;
    rc = au_client_send(c, 'A', record, error);
    if (rc == 0)
        rc = au_client_sync(c, error);
    if (rc == 0 && seq)
        *seq = c->seq;
    au_client_close(c);
    return rc;
}
