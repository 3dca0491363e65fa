/*
 * mk_message - a message as a content milter receives it. See mk_message.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mk_addr.h"
#include "mk_log.h"
#include "mk_message.h"
#include "mk_util.h"

void mk_message_reset(struct mk_message *m)
{
    free(m->sender);
    free(m->login);
    mk_str_array_free(m->rcpts);
    free(m->buf);
    if (m->spilled && m->fd >= 0)
        close(m->fd);
    free(m->temp_dir);
    memset(m, 0, sizeof(*m));
    m->fd = -1;
}

void mk_message_start(struct mk_message *m, const char *sender, const char *login,
                      size_t memory_limit, const char *temp_dir, size_t max_size)
{
    char *norm = mk_addr_normalize(sender);

    mk_message_reset(m);
    /* The MTA accepted the address; what we cannot normalize we only report. */
    m->sender = norm ? norm : mk_xstrdup(sender);
    m->login = login ? mk_xstrdup(login) : NULL;
    m->rcpts = mk_xcalloc(1, sizeof(char *));
    m->memory_limit = memory_limit;
    m->temp_dir = temp_dir ? mk_xstrdup(temp_dir) : NULL;
    m->max_size = max_size;
}

void mk_message_add_rcpt(struct mk_message *m, const char *rcpt)
{
    char *norm = mk_addr_normalize(rcpt);

    m->rcpts = mk_xrealloc(m->rcpts, (m->nrcpts + 2) * sizeof(char *));
    m->rcpts[m->nrcpts++] = norm ? norm : mk_xstrdup(rcpt);
    m->rcpts[m->nrcpts] = NULL;
}

static void mk_message_write(struct mk_message *m, const char *data, size_t len)
{
    while (len > 0 && !m->failed) {
        ssize_t n = write(m->fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            mk_log(MK_LOG_ERROR, NULL, "cannot write a temporary file in %s: %s", m->temp_dir,
                   n < 0 ? strerror(errno) : "short write");
            m->failed = true;
            return;
        }
        data += n;
        len -= (size_t) n;
    }
}

static void mk_message_drop(struct mk_message *m)
{
    m->too_big = true;
    free(m->buf);
    m->buf = NULL;
    m->len = m->cap = 0;
}

void mk_message_append(struct mk_message *m, const char *data, size_t len)
{
    if (m->too_big || m->failed)
        return;
    if (m->max_size && m->len + len > m->max_size) {
        mk_message_drop(m);
        return;
    }
    if (!m->spilled && m->len + len > m->memory_limit) {
        if (m->temp_dir == NULL) {
            mk_message_drop(m);
            return;
        }
        if ((m->fd = open(m->temp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0) {
            mk_log(MK_LOG_ERROR, NULL, "cannot create a temporary file in %s: %s", m->temp_dir,
                   strerror(errno));
            m->failed = true;
            return;
        }
        m->spilled = true;
        mk_message_write(m, m->buf ? m->buf : "", m->len);
        free(m->buf);
        m->buf = NULL;
        m->cap = 0;
    }
    if (m->spilled) {
        mk_message_write(m, data, len);
        m->len += len;
        return;
    }
    if (m->len + len + 1 > m->cap) {
        m->cap = (m->len + len + 1) * 2;
        m->buf = mk_xrealloc(m->buf, m->cap);
    }
    memcpy(m->buf + m->len, data, len);
    m->len += len;
}

void mk_message_header(struct mk_message *m, const char *name, const char *value)
{
    mk_message_append(m, name, strlen(name));
    mk_message_append(m, ": ", 2);
    mk_message_append(m, value, strlen(value));
    mk_message_append(m, "\r\n", 2);
}
