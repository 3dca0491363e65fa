/*
 * mk_util - memory and string helpers. See mk_util.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "mk_util.h"

static void mk_out_of_memory(size_t n)
{
    syslog(LOG_CRIT, "out of memory allocating %zu bytes", n);
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *mk_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        mk_out_of_memory(n);
    return p;
}

void *mk_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);

    if (p == NULL)
        mk_out_of_memory(count * n);
    return p;
}

void *mk_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL)
        mk_out_of_memory(n);
    return q;
}

char *mk_xstrdup(const char *s)
{
    return mk_xstrndup(s, strlen(s));
}

char *mk_xstrndup(const char *s, size_t n)
{
    char *p = mk_xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *mk_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        mk_out_of_memory(strlen(fmt));
    return s;
}

char *mk_str_trim(char *s)
{
    char *end;

    while (isspace((unsigned char) *s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char) end[-1]))
        *--end = '\0';
    return s;
}

void mk_str_lower(char *s)
{
    for (; *s; s++)
        *s = (char) tolower((unsigned char) *s);
}

bool mk_str_iequal(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

char **mk_str_split(const char *s, const char *seps, size_t *count)
{
    size_t n = 0, cap = 4;
    char **v = mk_xmalloc(cap * sizeof(*v));

    while (*s) {
        size_t len;

        s += strspn(s, seps);
        len = strcspn(s, seps);
        if (len == 0)
            break;
        if (n + 2 > cap) {
            cap *= 2;
            v = mk_xrealloc(v, cap * sizeof(*v));
        }
        v[n++] = mk_xstrndup(s, len);
        s += len;
    }
    v[n] = NULL;
    if (count)
        *count = n;
    return v;
}

void mk_str_array_free(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int mk_parse_int(const char *s, long long *value)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0' || isspace((unsigned char) *s))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *value = v;
    return 0;
}

/* A number followed by at most one unit letter; the unit table maps it. */
static int mk_parse_scaled(const char *s, const char *units,
                           const long long *factors, long long *out)
{
    char *end;
    long long v;
    long long factor = 1;

    if (s == NULL || !isdigit((unsigned char) *s))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0)
        return -1;
    if (*end != '\0') {
        const char *u = strchr(units, *end);

        if (u == NULL || end[1] != '\0')
            return -1;
        factor = factors[u - units];
    }
    if (v > LLONG_MAX / factor)
        return -1;
    *out = v * factor;
    return 0;
}

int mk_parse_duration(const char *s, long long *seconds)
{
    static const long long f[] = {1, 60, 3600, 86400, 604800};

    return mk_parse_scaled(s, "smhdw", f, seconds);
}

int mk_parse_size(const char *s, long long *bytes)
{
    static const long long f[] = {1024, 1024, 1024LL * 1024, 1024LL * 1024 * 1024,
                                  1024LL * 1024 * 1024 * 1024};

    return mk_parse_scaled(s, "kKMGT", f, bytes);
}

int mk_parse_bool(const char *s, bool *value)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < MK_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *value = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *value = false;
            return 0;
        }
    }
    return -1;
}

char *mk_file_read(const char *path, size_t *len, struct stat *st, char **error)
{
    struct stat local;
    size_t cap, used = 0;
    char *text;
    ssize_t n;
    int fd;

    if (st == NULL)
        st = &local;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        *error = mk_xasprintf("%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    /* The size is a hint: the file may grow or shrink while we read. */
    cap = (size_t) st->st_size + 1;
    text = mk_xmalloc(cap);
    for (;;) {
        if (used + 1 >= cap) {
            cap *= 2;
            text = mk_xrealloc(text, cap);
        }
        n = read(fd, text + used, cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *error = mk_xasprintf("%s: read error: %s", path, strerror(errno));
            close(fd);
            free(text);
            return NULL;
        }
        if (n == 0)
            break;
        used += (size_t) n;
    }
    close(fd);
    text[used] = '\0';
    if (len)
        *len = used;
    return text;
}

char *mk_str_next_line(char **cursor)
{
    char *line = *cursor, *nl;

    if (line == NULL || *line == '\0')
        return NULL;
    if ((nl = strchr(line, '\n')) != NULL) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = line + strlen(line);
    }
    return line;
}

int mk_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

int mk_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), saved;

    if (fd < 0)
        return -1;
    if (fsync(fd) < 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return close(fd);
}

void mk_notes_add(char **notes, const char *note)
{
    char *joined = *notes ? mk_xasprintf("%s; %s", *notes, note) : mk_xstrdup(note);

    free(*notes);
    *notes = joined;
}

void mk_notes_addf(char **notes, const char *fmt, ...)
{
    va_list ap;
    char *note;

    va_start(ap, fmt);
    if (vasprintf(&note, fmt, ap) < 0)
        mk_out_of_memory(strlen(fmt));
    va_end(ap);
    mk_notes_add(notes, note);
    free(note);
}
