/*
 * mk_auth - check a password with Dovecot's auth-client protocol. See
 * mk_auth.h.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mk_auth.h"
#include "mk_util.h"

#define MK_AUTH_TIMEOUT_MS	10000
#define MK_AUTH_MAX_REPLY	16384

static char *mk_auth_base64(const unsigned char *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = mk_xmalloc(4 * ((len + 2) / 3) + 1), *w = out;

    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned) in[i] << 16;

        if (i + 1 < len)
            v |= (unsigned) in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *w++ = abc[(v >> 18) & 63];
        *w++ = abc[(v >> 12) & 63];
        *w++ = i + 1 < len ? abc[(v >> 6) & 63] : '=';
        *w++ = i + 2 < len ? abc[v & 63] : '=';
    }
    *w = '\0';
    return out;
}

/* The next whole line from the server into line (without its newline). */
static int mk_auth_read_line(int fd, char *buf, size_t *used, char *line, size_t line_size,
                             char **error)
{
    struct timespec start;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        char *nl = memchr(buf, '\n', *used);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        struct timespec now;
        long waited;
        ssize_t n;

        if (nl != NULL) {
            size_t len = (size_t) (nl - buf);

            if (len >= line_size) {
                *error = mk_xstrdup("Dovecot's auth service sent a line too long");
                return -1;
            }
            memcpy(line, buf, len);
            line[len] = '\0';
            *used -= len + 1;
            memmove(buf, nl + 1, *used);
            return 0;
        }
        if (*used >= MK_AUTH_MAX_REPLY - 1) {
            *error = mk_xstrdup("Dovecot's auth service sent a line too long");
            return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited >= MK_AUTH_TIMEOUT_MS || poll(&pfd, 1, (int) (MK_AUTH_TIMEOUT_MS - waited)) == 0) {
            *error = mk_xstrdup("Dovecot's auth service did not answer");
            return -1;
        }
        n = read(fd, buf + *used, MK_AUTH_MAX_REPLY - 1 - *used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *error = mk_xstrdup("Dovecot's auth service closed the connection");
            return -1;
        }
        *used += (size_t) n;
    }
}

/* The value of KEY=VALUE among the tab-separated fields of line. */
static char *mk_auth_field(const char *line, const char *key)
{
    size_t klen = strlen(key);

    for (const char *f = line; f != NULL; f = strchr(f, '\t') ? strchr(f, '\t') + 1 : NULL) {
        if (strncmp(f, key, klen) == 0 && f[klen] == '=') {
            const char *v = f + klen + 1;

            return mk_xstrndup(v, strcspn(v, "\t"));
        }
    }
    return NULL;
}

int mk_auth_check(const char *socket_path, const char *service, const char *user,
                  const char *password, char **canonical, char **error)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[MK_AUTH_MAX_REPLY], line[MK_AUTH_MAX_REPLY], *plain, *resp, *request;
    size_t used = 0, ulen = strlen(user), plen = strlen(password);
    int fd = -1, rc = -1;

    *error = NULL;
    if (canonical)
        *canonical = NULL;
    if (strpbrk(user, "\t\n\r") || strpbrk(password, "\t\n\r") || ulen == 0) {
        *error = mk_xstrdup("a user name or password with a tab or line break");
        return 0;
    }
    if (strlen(socket_path) >= sizeof(sa.sun_path)) {
        *error = mk_xasprintf("%s: socket path too long", socket_path);
        return -1;
    }
    strcpy(sa.sun_path, socket_path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0
        || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
        *error = mk_xasprintf("%s: %s (is Dovecot running, and [recall] auth_socket right?)",
                              socket_path, strerror(errno));
        goto out;
    }
    /* PLAIN: authorization id (empty), user, password, NUL-separated */
    plain = mk_xmalloc(ulen + plen + 2);
    plain[0] = '\0';
    memcpy(plain + 1, user, ulen);
    plain[ulen + 1] = '\0';
    memcpy(plain + ulen + 2, password, plen);
    resp = mk_auth_base64((const unsigned char *) plain, ulen + plen + 2);
    explicit_bzero(plain, ulen + plen + 2);
    free(plain);
    request = mk_xasprintf("VERSION\t1\t2\nCPID\t%ld\n"
                           "AUTH\t1\tPLAIN\tservice=%s\tsecured\tno-penalty\tresp=%s\n",
                           (long) getpid(), service, resp);
    explicit_bzero(resp, strlen(resp));
    free(resp);
    rc = mk_write_all(fd, request, strlen(request));
    explicit_bzero(request, strlen(request));
    free(request);
    if (rc < 0) {
        *error = mk_xasprintf("%s: %s", socket_path, strerror(errno));
        rc = -1;
        goto out;
    }
    rc = -1;
    /* The handshake (VERSION, MECH..., SPID, CUID, COOKIE, DONE), then our answer. */
    while (mk_auth_read_line(fd, buf, &used, line, sizeof(line), error) == 0) {
        if (strncmp(line, "OK\t1", 4) == 0 && (line[4] == '\0' || line[4] == '\t')) {
            if (canonical && (*canonical = mk_auth_field(line, "user")) == NULL)
                *canonical = mk_xstrdup(user);
            rc = 1;
            break;
        }
        if (strncmp(line, "FAIL\t1", 6) == 0 && (line[6] == '\0' || line[6] == '\t')) {
            char *reason = mk_auth_field(line, "reason");

            *error = reason ? reason : mk_xstrdup("wrong password");
            rc = 0;
            break;
        }
        if (strncmp(line, "CONT\t1", 6) == 0) {
            *error = mk_xstrdup("Dovecot's auth service asked for more than a password");
            rc = 0;
            break;
        }
        if (strncmp(line, "VERSION\t", 8) == 0 && strncmp(line, "VERSION\t1\t", 10) != 0) {
            *error = mk_xstrdup("Dovecot's auth service speaks another protocol version");
            break;
        }
    }
out:
    explicit_bzero(buf, sizeof(buf));
    if (fd >= 0)
        close(fd);
    return rc;
}
