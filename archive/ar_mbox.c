/*
 * ar_mbox - mbox files. See ar_mbox.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ar_mbox.h"
#include "mk_util.h"

/* Pages already read are given back in steps of this much. */
#define AR_MBOX_RELEASE_STEP	(64u << 20)
/* Only so much of a separator line is looked at for its date. */
#define AR_MBOX_MAX_DATE	200

struct ar_mbox_reader {
    char *name;                         /* path, or "(memory)" */
    const char *data;
    size_t len, pos;
    void *map;                          /* the mapping, NULL for a caller's buffer */
    size_t released;                    /* bytes of the mapping given back */
    bool started;
    char *error;
};

static const char ar_mbox_wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char ar_mbox_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const ar_mbox_month_names[12] = {
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December"};

/* ------------------------------------------------------------ writing */

static bool ar_mbox_is_sender_byte(unsigned char c, bool keep_space)
{
    if (c == ' ' || c == '\t')
        return keep_space;
    return c >= 0x20 && c != 0x7f;
}

/* A copy of at most AR_MBOX_MAX_SENDER bytes with unsafe bytes made '_'. */
static char *ar_mbox_clean_sender(const char *s, size_t n, bool keep_space)
{
    char *out;

    if (n > AR_MBOX_MAX_SENDER)
        n = AR_MBOX_MAX_SENDER;
    out = mk_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = ar_mbox_is_sender_byte((unsigned char) s[i], keep_space) ? s[i] : '_';
    out[n] = '\0';
    return out;
}

/* asctime() form in UTC, with English names whatever the locale. */
static void ar_mbox_format_date(time_t t, char *buf, size_t size)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    snprintf(buf, size, "%s %s %2d %02d:%02d:%02d %lld", ar_mbox_wdays[tm.tm_wday],
             ar_mbox_months[tm.tm_mon], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long long) tm.tm_year + 1900);
}

/* Does the line (n bytes) match ^>*From  ? Gives the number of '>' in *quotes. */
static bool ar_mbox_is_from_line(const char *p, size_t n, size_t *quotes)
{
    size_t q = 0;

    while (q < n && p[q] == '>')
        q++;
    *quotes = q;
    return n - q >= 5 && memcmp(p + q, "From ", 5) == 0;
}

static void ar_mbox_write_line(FILE *out, const char *p, size_t n)
{
    size_t quotes;

    if (ar_mbox_is_from_line(p, n, &quotes))
        putc('>', out);
    fwrite(p, 1, n, out);
    putc('\n', out);
}

int ar_mbox_write(FILE *out, const char *envelope_sender, time_t received, const char *msg,
                  size_t len)
{
    const char *p = msg, *end = msg + len;
    char date[64], *sender;

    ar_mbox_format_date(received, date, sizeof(date));
    if (envelope_sender == NULL || *envelope_sender == '\0')
        sender = mk_xstrdup("MAILER-DAEMON");
    else
        sender = ar_mbox_clean_sender(envelope_sender, strlen(envelope_sender), false);
    fprintf(out, "From %s %s\n", sender, date);
    free(sender);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);

        ar_mbox_write_line(out, p, n);    /* a CR before the LF stays: bytes are kept */
        p += n + (nl != NULL);
    }
    putc('\n', out);
    if (ferror(out)) {
        if (errno == 0)
            errno = EIO;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ dates */

struct ar_mbox_date {
    int year, month, day, hour, min, sec, zone;     /* month 1-12; zone in minutes */
    bool has_time;
};

static bool ar_mbox_all_digits(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return false;
    return n > 0;
}

static int ar_mbox_number(const char *t, size_t n)
{
    int v = 0;

    for (size_t i = 0; i < n; i++)
        v = v * 10 + (t[i] - '0');
    return v;
}

static int ar_mbox_month(const char *t, size_t n)
{
    for (int i = 0; i < 12; i++)
        if ((n == 3 && strncasecmp(t, ar_mbox_months[i], 3) == 0) ||
            (n == strlen(ar_mbox_month_names[i]) && strncasecmp(t, ar_mbox_month_names[i], n) == 0))
            return i + 1;
    return 0;
}

/* hh:mm or hh:mm:ss */
static bool ar_mbox_time(struct ar_mbox_date *d, const char *t, size_t n)
{
    size_t h = 0;
    int hour, min, sec = 0;

    while (h < n && h < 3 && t[h] >= '0' && t[h] <= '9')
        h++;
    if (h < 1 || h > 2 || n < h + 3 || t[h] != ':' || !ar_mbox_all_digits(t + h + 1, 2))
        return false;
    hour = ar_mbox_number(t, h);
    min = ar_mbox_number(t + h + 1, 2);
    if (n == h + 6 && t[h + 3] == ':' && ar_mbox_all_digits(t + h + 4, 2))
        sec = ar_mbox_number(t + h + 4, 2);
    else if (n != h + 3)
        return false;
    if (hour > 23 || min > 59 || sec > 60)
        return false;
    d->hour = hour;
    d->min = min;
    d->sec = sec;
    d->has_time = true;
    return true;
}

static void ar_mbox_date_token(struct ar_mbox_date *d, const char *t, size_t n)
{
    int month;

    if (!d->has_time && ar_mbox_time(d, t, n))
        return;
    if (n == 5 && (t[0] == '+' || t[0] == '-') && ar_mbox_all_digits(t + 1, 4)) {
        int hh = ar_mbox_number(t + 1, 2), mm = ar_mbox_number(t + 3, 2);

        if (hh <= 23 && mm <= 59)
            d->zone = (t[0] == '-' ? -1 : 1) * (hh * 60 + mm);
        return;
    }
    if (ar_mbox_all_digits(t, n)) {
        int v = n <= 4 ? ar_mbox_number(t, n) : -1;

        if (n == 4 && d->year == 0 && v >= 1000)
            d->year = v;
        else if (n <= 2 && d->day == 0 && v >= 1 && v <= 31)
            d->day = v;
        else if (n == 2 && d->year == 0)
            d->year = v < 70 ? 2000 + v : 1900 + v;
        return;
    }
    if (d->month == 0 && (month = ar_mbox_month(t, n)) != 0)
        d->month = month;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long long ar_mbox_days_from_civil(int y, int m, int d)
{
    long long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool ar_mbox_is_date_space(char c)
{
    return c == ' ' || c == '\t' || c == ',';
}

static time_t ar_mbox_parse_date(const char *s, size_t n)
{
    struct ar_mbox_date d = {0};
    size_t i = 0;

    if (n > AR_MBOX_MAX_DATE)
        n = AR_MBOX_MAX_DATE;
    while (i < n) {
        size_t start;

        while (i < n && ar_mbox_is_date_space(s[i]))
            i++;
        start = i;
        while (i < n && !ar_mbox_is_date_space(s[i]))
            i++;
        if (i > start)
            ar_mbox_date_token(&d, s + start, i - start);
    }
    if (d.year == 0 || d.month == 0 || d.day == 0 || !d.has_time)
        return 0;
    return (time_t) (ar_mbox_days_from_civil(d.year, d.month, d.day) * 86400 +
                     d.hour * 3600 + d.min * 60 + d.sec - d.zone * 60);
}

/* ------------------------------------------------------------ reading */

static struct ar_mbox_reader *ar_mbox_new(const char *name, const char *data, size_t len)
{
    struct ar_mbox_reader *r = mk_xcalloc(1, sizeof(*r));

    r->name = mk_xstrdup(name);
    r->data = data;
    r->len = len;
    return r;
}

struct ar_mbox_reader *ar_mbox_open_mem(const char *data, size_t len)
{
    return ar_mbox_new("(memory)", data, len);
}

struct ar_mbox_reader *ar_mbox_open(const char *path, char **error)
{
    struct ar_mbox_reader *r;
    void *map = NULL;
    struct stat st;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        *error = mk_xasprintf("%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((uintmax_t) st.st_size > SIZE_MAX / 2) {
        *error = mk_xasprintf("%s: too large to map", path);
        close(fd);
        return NULL;
    }
    if (st.st_size > 0) {
        map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            *error = mk_xasprintf("%s: cannot map: %s", path, strerror(errno));
            close(fd);
            return NULL;
        }
        (void) madvise(map, (size_t) st.st_size, MADV_SEQUENTIAL);
    }
    close(fd);
    r = ar_mbox_new(path, map, (size_t) st.st_size);
    r->map = map;
    return r;
}

static bool ar_mbox_at_from(const struct ar_mbox_reader *r, size_t pos)
{
    return r->len - pos >= 5 && memcmp(r->data + pos, "From ", 5) == 0;
}

/* Skip empty lines before the first separator; anything else must be one. */
static int ar_mbox_start(struct ar_mbox_reader *r)
{
    r->started = true;
    while (r->pos < r->len) {
        if (r->data[r->pos] == '\n')
            r->pos++;
        else if (r->data[r->pos] == '\r' && r->pos + 1 < r->len && r->data[r->pos + 1] == '\n')
            r->pos += 2;
        else
            break;
    }
    if (r->pos < r->len && !ar_mbox_at_from(r, r->pos)) {
        r->error = mk_xasprintf("%s: not an mbox file (does not begin with a \"From \" line)",
                                r->name);
        return -1;
    }
    return 0;
}

/*
 * Where the next separator line starts, searching from body (just after
 * a separator line): a "From " line whose previous line is empty, LF or
 * CR LF. The empty line may be the body's first line. r->len if none.
 */
static size_t ar_mbox_find_separator(const struct ar_mbox_reader *r, size_t body)
{
    const char *d = r->data;
    size_t i = body;

    while (i < r->len) {
        const char *hit = memmem(d + i, r->len - i, "\nFrom ", 6);
        size_t at;

        if (hit == NULL)
            break;
        at = (size_t) (hit - d);
        if (d[at - 1] == '\n' || (at > body && d[at - 1] == '\r' && d[at - 2] == '\n'))
            return at + 1;
        i = at + 1;
    }
    return r->len;
}

/* Length of a message's text without its last line, if that is empty. */
static size_t ar_mbox_strip_empty_line(const char *p, size_t n)
{
    if (n == 0 || p[n - 1] != '\n')
        return n;
    if (n == 1 || p[n - 2] == '\n')
        return n - 1;
    if (p[n - 2] == '\r' && (n == 2 || p[n - 3] == '\n'))
        return n - 2;
    return n;
}

/* A copy with one '>' taken from each line matching ^>+From . */
static char *ar_mbox_unescape(const char *p, size_t n, size_t *outlen)
{
    char *out = mk_xmalloc(n + 1), *o = out;
    const char *end = p + n;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        size_t len = nl ? (size_t) (nl + 1 - p) : (size_t) (end - p), quotes;

        if (ar_mbox_is_from_line(p, len, &quotes) && quotes > 0) {
            memcpy(o, p + 1, len - 1);
            o += len - 1;
        } else {
            memcpy(o, p, len);
            o += len;
        }
        p += len;
    }
    *o = '\0';
    *outlen = (size_t) (o - out);
    return out;
}

/* The separator line (without its line end): sender and date. */
static void ar_mbox_parse_separator(const char *line, size_t n, char **sender, time_t *received)
{
    size_t start = 5, i = 5;

    if (n > 5 && line[i] == '"') {
        const char *close = memchr(line + i + 1, '"', n - i - 1);

        if (close != NULL)
            i = (size_t) (close - line) + 1;
    }
    while (i < n && line[i] != ' ' && line[i] != '\t')
        i++;
    if (sender)
        *sender = ar_mbox_clean_sender(line + start, i - start, true);
    if (received)
        *received = i < n ? ar_mbox_parse_date(line + i, n - i) : 0;
}

/* Give back mapped pages the reader has moved past (the message was copied). */
static void ar_mbox_release(struct ar_mbox_reader *r)
{
    size_t page = (size_t) sysconf(_SC_PAGESIZE), upto;

    if (r->map == NULL || page == 0)
        return;
    upto = r->pos / page * page;
    if (upto >= r->released + AR_MBOX_RELEASE_STEP) {
        (void) madvise((char *) r->map + r->released, upto - r->released, MADV_DONTNEED);
        r->released = upto;
    }
}

int ar_mbox_next(struct ar_mbox_reader *r, char **msg, size_t *len, char **sender,
                 time_t *received)
{
    const char *line = r->data + r->pos, *nl;
    size_t line_len, body, next;

    if (r->error)
        return -1;
    if (!r->started) {
        if (ar_mbox_start(r) < 0)
            return -1;
        line = r->data + r->pos;
    }
    if (r->pos >= r->len)
        return 0;
    nl = memchr(line, '\n', r->len - r->pos);
    line_len = nl ? (size_t) (nl - line) : r->len - r->pos;
    body = r->pos + line_len + (nl != NULL);
    next = ar_mbox_find_separator(r, body);
    if (line_len > 0 && line[line_len - 1] == '\r')
        line_len--;
    ar_mbox_parse_separator(line, line_len, sender, received);
    *msg = ar_mbox_unescape(r->data + body,
                            ar_mbox_strip_empty_line(r->data + body, next - body), len);
    r->pos = next;
    ar_mbox_release(r);
    return 1;
}

const char *ar_mbox_error(const struct ar_mbox_reader *r)
{
    return r->error;
}

void ar_mbox_close(struct ar_mbox_reader *r)
{
    if (r == NULL)
        return;
    if (r->map)
        munmap(r->map, r->len);
    free(r->error);
    free(r->name);
    free(r);
}
