/*
 * NAME
 *	mailkeep-auditd 8
 * SUMMARY
 *	the one writer of the audit log and the usage database
 * DESCRIPTION
 *	Dovecot's imap, pop3, lmtp and doveadm processes (the mailkeep_audit
 *	and mailkeep_usage plugins) and mailkeep usage purge connect to a
 *	unix socket and write lines (docs/audit-protocol.md): A lines are
 *	chained into the audit log (au_log), U lines and the read, copy and
 *	move records go into the usage database (au_db), S lines are
 *	answered once everything the connection sent before is on disk.
 *
 *	One thread, one poll() loop over every client. Each turn reads what
 *	the clients sent and appends the records; they are written and
 *	fdatasynced in one go, and the database batch committed, once
 *	commit_delay has passed since the first of them came, or at once
 *	when a client waits for an S answer or much is pending: the more
 *	clients, the larger the batches. S lines are answered only after.
 *	While records are held and no answer is due, the daemon reads again
 *	at most every AD_PACE_MS, so that one turn takes the writes of many
 *	clients (a turn per write cost three times the CPU under load). A
 *	checkpoint is signed every checkpoint_interval when records came
 *	in, when the day's file changes, and at stop. When the disk is full,
 *	the records stay in memory, in order, and are written again every
 *	second; above max_pending the daemon stops reading from clients, so
 *	that they wait instead of losing records. See mailkeep-auditd(8).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "au_db.h"
#include "au_keys.h"
#include "au_log.h"
#include "au_proto.h"
#include "mk_config.h"
#include "mk_daemon.h"
#include "mk_log.h"
#include "mk_util.h"

#ifndef MK_SYSCONFDIR
#define MK_SYSCONFDIR "/etc"
#endif

#define AD_PROGNAME		"mailkeep-auditd"
#define AD_DEFAULT_CONFIG	MK_SYSCONFDIR "/mailkeep/mailkeep.conf"
#define AD_IN_MAX		AU_PROTO_MAX_LINE       /* a whole line and its newline */
#define AD_IN_START		4096
#define AD_READ_BUDGET		((size_t) 262144)       /* per connection and turn: fairness */
#define AD_MAX_OUT		((size_t) 65536)        /* unread answers: beyond, drop */
#define AD_MAX_ANSWERS		4096    /* queued answers: beyond, stop reading that client */
#define AD_LOG_REFUSED		10      /* refused lines logged per connection */
#define AD_LOG_LINE		200     /* bytes of a refused line in the log */
#define AD_RETRY_MS		1000
#define AD_HOLD_MAX		((size_t) 1048576)      /* pending: write at once beyond */
#define AD_PACE_MS		5       /* records held: read again after this at the soonest */
#define AD_ACCEPT_BATCH		64

/* ------------------------------------------------------------ settings */

struct ad_settings {
    char *socket, *socket_group, *user, *pidfile, *log_dir, *db, *keys_dir;
    mode_t socket_mode;
    gid_t gid;                          /* socket_group's, or -1 */
    int64_t checkpoint_ms;
    int64_t commit_delay_ms;
    size_t max_pending;
};

static void ad_settings_free(struct ad_settings *s)
{
    free(s->socket);
    free(s->socket_group);
    free(s->user);
    free(s->pidfile);
    free(s->log_dir);
    free(s->db);
    free(s->keys_dir);
    memset(s, 0, sizeof(*s));
}

static int ad_parse_mode(const char *text, mode_t *mode)
{
    size_t n = strlen(text);
    unsigned v = 0;

    if (n < 3 || n > 4)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '7')
            return -1;
        v = v * 8 + (unsigned) (text[i] - '0');
    }
    if (v > 0777)
        return -1;
    *mode = (mode_t) v;
    return 0;
}

/* [audit] of cfg, checked; socket overrides [audit] socket when not NULL. */
static int ad_settings_load(const struct mk_config *cfg, const char *socket,
                            struct ad_settings *s, char **error)
{
    const char *mode = mk_config_str(cfg, "audit", "socket_mode");
    struct group *gr;

    memset(s, 0, sizeof(*s));
    s->socket = mk_xstrdup(socket ? socket : mk_config_str(cfg, "audit", "socket"));
    s->socket_group = mk_xstrdup(mk_config_str(cfg, "audit", "socket_group"));
    s->user = mk_xstrdup(mk_config_str(cfg, "audit", "user"));
    s->pidfile = mk_xstrdup(mk_config_str(cfg, "audit", "pidfile"));
    s->log_dir = mk_xstrdup(mk_config_str(cfg, "audit", "log_dir"));
    s->db = mk_xstrdup(mk_config_str(cfg, "audit", "db"));
    s->keys_dir = mk_xstrdup(mk_config_str(cfg, "audit", "keys_dir"));
    s->checkpoint_ms = mk_config_num(cfg, "audit", "checkpoint_interval") * 1000;
    s->max_pending = (size_t) mk_config_num(cfg, "audit", "max_pending");
    s->commit_delay_ms = mk_config_num(cfg, "audit", "commit_delay");
    s->gid = (gid_t) -1;
    if (strncmp(s->socket, "unix:", 5) == 0)
        memmove(s->socket, s->socket + 5, strlen(s->socket + 5) + 1);
    if (*s->socket != '/' || strlen(s->socket) >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
        *error = mk_xasprintf("[audit] socket: '%s' is not an absolute path of at most %zu "
                              "bytes", s->socket, sizeof(((struct sockaddr_un *) 0)->sun_path) - 1);
        return -1;
    }
    if (ad_parse_mode(mode, &s->socket_mode) < 0) {
        *error = mk_xasprintf("[audit] socket_mode: '%s' is not an octal mode like 0660", mode);
        return -1;
    }
    if (*s->socket_group) {
        if ((gr = getgrnam(s->socket_group)) == NULL) {
            *error = mk_xasprintf("[audit] socket_group: no group '%s'", s->socket_group);
            return -1;
        }
        s->gid = gr->gr_gid;
    }
    if (*s->log_dir == '\0' || *s->db == '\0' || *s->keys_dir == '\0') {
        *error = mk_xstrdup("[audit] log_dir, db and keys_dir must be set");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------- the daemon's state */

struct ad_answer {
    struct ad_answer *next;
    bool sync;
    uint64_t need_seq, need_db;         /* sync: what must be durable first */
    unsigned refused;                   /* sync: lines refused since the last one */
    char *text;                         /* E: the line; sync: the token */
    char *reason;                       /* sync: the first refusal's */
};

struct ad_conn {
    int fd;
    unsigned long id;
    int64_t pid, uid;
    char *in;
    size_t in_len, in_cap;
    bool skipping;                      /* inside an over-long line */
    bool eof, broken;
    char *out;
    size_t out_len, out_off, out_cap;
    struct ad_answer *head, *tail;
    size_t nanswers;
    uint64_t last_seq, last_db;         /* its last record in the log, item in the db queue */
    unsigned refused, logged;
    char *reason;
    unsigned long lines, records, refused_total;
};

struct ad_dbitem {
    json_t *obj;
    int64_t time;
    bool usage;
    size_t size;
};

struct ad {
    struct ad_settings set;
    const char *config_path;
    struct au_log *log;
    struct au_db *db;
    int listen_fd;
    ino_t socket_ino;
    struct ad_conn **conns;
    size_t nconns, conns_cap;
    unsigned long next_id;
    struct ad_dbitem *dbq;
    size_t dbq_len, dbq_cap, db_bytes;
    uint64_t db_queued, db_done;        /* db items ever queued, ever committed */
    int64_t log_retry_at, db_retry_at;  /* monotonic ms */
    bool log_failing, db_failing, paused, accept_paused;
    int64_t cp_due;                     /* monotonic ms; 0: no record waits for one */
    int64_t hold_since;                 /* monotonic ms; 0: nothing held back */
    unsigned long long records, refused;
    bool stopping;
};

static int ad_signal_pipe[2] = {-1, -1};

static int64_t ad_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t ad_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void ad_on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char) sig;

    if (write(ad_signal_pipe[1], &c, 1) < 0) {
        /* the pipe is full: a signal of each kind is already waiting */
    }
    errno = saved;
}

static void ad_take_note(struct ad *d)
{
    char *note = au_log_take_note(d->log);

    if (note) {
        mk_log(MK_LOG_WARNING, NULL, "audit log: %s", note);
        free(note);
    }
}

static size_t ad_pending(const struct ad *d)
{
    return au_log_pending_bytes(d->log) + d->db_bytes;
}

/* ------------------------------------------------------------ answers */

static void ad_out(struct ad_conn *c, const char *text, size_t len)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap) {
            c->out_cap = c->out_len + len > 2 * c->out_cap ? c->out_len + len : 2 * c->out_cap;
            c->out = mk_xrealloc(c->out, c->out_cap);
        }
    }
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
}

static void ad_answer_push(struct ad_conn *c, struct ad_answer *a)
{
    if (c->tail)
        c->tail->next = a;
    else
        c->head = a;
    c->tail = a;
    c->nanswers++;
}

static void ad_answer_free(struct ad_answer *a)
{
    free(a->text);
    free(a->reason);
    free(a);
}

/* Move the answers that are due, in order, to the output buffer. */
static void ad_answers_due(struct ad *d, struct ad_conn *c)
{
    uint64_t durable = au_log_last_seq(d->log);

    while (c->head) {
        struct ad_answer *a = c->head;
        char *line;

        if (a->sync && (a->need_seq > durable || a->need_db > d->db_done))
            break;
        if (!a->sync)
            line = mk_xasprintf("E %s\n", a->text);
        else if (a->refused == 0)
            line = mk_xasprintf("S %s ok %" PRIu64 "\n", a->text, durable);
        else
            line = mk_xasprintf("S %s error %u line%s refused since the last sync (the first: "
                                "%s)\n", a->text, a->refused, a->refused == 1 ? "" : "s",
                                a->reason);
        ad_out(c, line, strlen(line));
        free(line);
        c->head = a->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->nanswers--;
        ad_answer_free(a);
    }
}

static void ad_conn_write(struct ad_conn *c)
{
    while (c->out_off < c->out_len && !c->broken) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            c->broken = true;           /* the client went away: its records stay */
            break;
        }
        c->out_off += (size_t) n;
    }
    if (c->out_len - c->out_off > AD_MAX_OUT && !c->broken) {
        mk_log(MK_LOG_WARNING, NULL, "connection %lu (pid %" PRId64 " uid %" PRId64 "): more "
               "than %zu bytes of answers unread: dropped (its records are kept)", c->id,
               c->pid, c->uid, AD_MAX_OUT);
        c->broken = true;
    }
}

/* ---------------------------------------------------------------- lines */

/* The length of the valid UTF-8 character at p (at most n bytes), or 0. */
static size_t ad_utf8_len(const unsigned char *p, size_t n)
{
    size_t len = *p < 0xc2 ? 0 : *p < 0xe0 ? 2 : *p < 0xf0 ? 3 : *p < 0xf5 ? 4 : 0;
    unsigned cp;

    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    cp = len == 2 ? (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu)
        : len == 3 ? (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu)
                   : (p[0] & 0x07u) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6
                         | (p[3] & 0x3fu);
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/*
 * A refused line as it may appear in the log: cut short, valid UTF-8 as
 * it is, every other byte that is not printable ASCII as \xNN.
 */
static void ad_sanitize(const char *line, size_t len, char out[AD_LOG_LINE * 4 + 8])
{
    const unsigned char *p = (const unsigned char *) line;
    size_t o = 0, n = len < AD_LOG_LINE ? len : AD_LOG_LINE;

    for (size_t i = 0; i < n; ) {
        size_t u = p[i] >= 0x80 ? ad_utf8_len(p + i, n - i) : 0;

        if (u > 0) {
            memcpy(out + o, p + i, u);
            o += u;
            i += u;
        } else if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
            out[o++] = (char) p[i++];
        } else
            o += (size_t) snprintf(out + o, 5, "\\x%02x", p[i++]);
    }
    if (len > n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static void ad_refuse(struct ad_conn *c, const char *line, size_t len, const char *why,
                      bool answer)
{
    char shown[AD_LOG_LINE * 4 + 8];

    c->refused_total++;
    if (c->logged < AD_LOG_REFUSED) {
        ad_sanitize(line, len, shown);
        mk_log(MK_LOG_WARNING, NULL, "connection %lu (pid %" PRId64 " uid %" PRId64 "): "
               "refused: %s: %s", c->id, c->pid, c->uid, why, shown);
        if (++c->logged == AD_LOG_REFUSED)
            mk_log(MK_LOG_WARNING, NULL, "connection %lu: further refused lines are counted, "
                   "not logged", c->id);
    }
    if (!answer)
        return;
    if (c->refused++ == 0)
        c->reason = mk_xstrdup(why);
    {
        struct ad_answer *a = mk_xcalloc(1, sizeof(*a));

        a->text = mk_xstrdup(why);
        ad_answer_push(c, a);
    }
}

static void ad_db_queue(struct ad *d, struct ad_conn *c, json_t *obj, int64_t time, bool usage,
                        size_t size)
{
    if (d->dbq_len == d->dbq_cap) {
        d->dbq_cap = d->dbq_cap ? 2 * d->dbq_cap : 256;
        d->dbq = mk_xrealloc(d->dbq, d->dbq_cap * sizeof(*d->dbq));
    }
    d->dbq[d->dbq_len].obj = json_incref(obj);
    d->dbq[d->dbq_len].time = time;
    d->dbq[d->dbq_len].usage = usage;
    d->dbq[d->dbq_len].size = size;
    d->dbq_len++;
    d->db_bytes += size;
    c->last_db = ++d->db_queued;
}

static void ad_took_record(struct ad *d, struct ad_conn *c, uint64_t seq)
{
    c->last_seq = seq;
    c->records++;
    d->records++;
    if (d->cp_due == 0)
        d->cp_due = ad_now_ms() + d->set.checkpoint_ms;
}

static void ad_line(struct ad *d, struct ad_conn *c, const char *line, size_t len)
{
    struct au_proto_line pl;
    char *error = NULL, *written;
    const char *members;
    struct ad_answer *a;
    int64_t now;
    uint64_t seq;
    size_t mlen;

    c->lines++;
    if (au_proto_audit_fast(line, len)) {
        /* most records: checked without parsing, kept as sent */
        now = ad_now_us();
        if (au_log_append(d->log, line + 3, len - 4, c->pid, c->uid, now, &seq, &error) < 0) {
            char *why = mk_xasprintf("A: %s", error);

            ad_refuse(c, line, len, why, true);
            free(why);
            free(error);
            d->refused++;
            return;
        }
        ad_took_record(d, c, seq);
        return;
    }
    if (au_proto_parse(line, len, &pl, &error) < 0) {
        ad_refuse(c, line, len, error, true);
        free(error);
        d->refused++;
        return;
    }
    switch (pl.kind) {
    case AU_PROTO_AUDIT:
        now = ad_now_us();
        written = NULL;
        if ((members = pl.members) != NULL)
            mlen = pl.members_len;
        else
            members = written = au_proto_members(pl.obj, &mlen);
        if (members == NULL)
            error = mk_xstrdup("A: the record cannot be written");
        else if (au_log_append(d->log, members, mlen, c->pid, c->uid, now, &seq, &error) < 0) {
            char *why = mk_xasprintf("A: %s", error);

            free(error);
            error = why;
        }
        free(written);
        if (error) {
            ad_refuse(c, line, len, error, true);
            free(error);
            d->refused++;
            break;
        }
        ad_took_record(d, c, seq);
        if (au_db_wants(pl.obj))
            ad_db_queue(d, c, pl.obj, now, false, len);
        break;
    case AU_PROTO_USAGE:
        ad_db_queue(d, c, pl.obj, ad_now_us(), true, len);
        break;
    case AU_PROTO_SYNC:
        a = mk_xcalloc(1, sizeof(*a));
        a->sync = true;
        a->text = mk_xstrdup(pl.token);
        a->need_seq = c->last_seq;
        a->need_db = c->last_db;
        a->refused = c->refused;
        a->reason = c->reason;
        c->reason = NULL;
        c->refused = 0;
        ad_answer_push(c, a);
        break;
    }
    au_proto_line_free(&pl);
}

/* Take the complete lines of c's input; keep the start of the next one. */
static void ad_conn_lines(struct ad *d, struct ad_conn *c)
{
    size_t start = 0;
    char *nl;

    while ((nl = memchr(c->in + start, '\n', c->in_len - start)) != NULL) {
        size_t len = (size_t) (nl - (c->in + start));

        if (c->skipping)
            c->skipping = false;        /* the end of an over-long line */
        else
            ad_line(d, c, c->in + start, len);
        start += len + 1;
    }
    if (c->skipping)
        start = c->in_len;
    else if (c->in_len - start == AD_IN_MAX) {
        char *why = mk_xasprintf("line longer than %d bytes", AU_PROTO_MAX_LINE);

        ad_refuse(c, c->in + start, c->in_len - start, why, true);
        free(why);
        d->refused++;
        c->skipping = true;
        start = c->in_len;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
}

static void ad_conn_read(struct ad *d, struct ad_conn *c)
{
    size_t budget = AD_READ_BUDGET;

    while (budget > 0 && !c->eof && !c->broken && c->nanswers < AD_MAX_ANSWERS) {
        ssize_t n;

        if (c->in_cap - c->in_len < AD_IN_START && c->in_cap < AD_IN_MAX) {
            c->in_cap = c->in_cap ? 2 * c->in_cap : AD_IN_START;
            if (c->in_cap > AD_IN_MAX)
                c->in_cap = AD_IN_MAX;
            c->in = mk_xrealloc(c->in, c->in_cap);
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            c->broken = true;
            break;
        }
        if (n == 0) {
            c->eof = true;
            if (c->in_len > 0 && !c->skipping) {
                ad_refuse(c, c->in, c->in_len, "the connection closed inside a line", false);
                d->refused++;
            }
            c->in_len = 0;
            break;
        }
        c->in_len += (size_t) n;
        budget -= (size_t) n > budget ? budget : (size_t) n;
        ad_conn_lines(d, c);
    }
}

/* ---------------------------------------------------------- connections */

static void ad_conn_free(struct ad_conn *c)
{
    while (c->head) {
        struct ad_answer *a = c->head;

        c->head = a->next;
        ad_answer_free(a);
    }
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c->reason);
    free(c);
}

static void ad_accept(struct ad *d)
{
    for (int i = 0; i < AD_ACCEPT_BATCH; i++) {
        int fd = accept4(d->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct ucred cred;
        socklen_t len = sizeof(cred);
        struct ad_conn *c;

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                if (!d->accept_paused)
                    mk_log(MK_LOG_WARNING, NULL, "cannot take more connections: %s; waiting "
                           "for one to close", strerror(errno));
                d->accept_paused = true;
            }
            return;
        }
        c = mk_xcalloc(1, sizeof(*c));
        c->fd = fd;
        c->id = ++d->next_id;
        c->pid = c->uid = -1;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            c->pid = cred.pid;
            c->uid = cred.uid;
        }
        if (d->nconns == d->conns_cap) {
            d->conns_cap = d->conns_cap ? 2 * d->conns_cap : 64;
            d->conns = mk_xrealloc(d->conns, d->conns_cap * sizeof(*d->conns));
        }
        d->conns[d->nconns++] = c;
        mk_log(MK_LOG_DEBUG, NULL, "connection %lu: pid %" PRId64 " uid %" PRId64, c->id, c->pid,
               c->uid);
    }
}

/* Close the connections that are done: gone, or closed with every answer out. */
static void ad_reap(struct ad *d, bool all)
{
    size_t kept = 0;

    for (size_t i = 0; i < d->nconns; i++) {
        struct ad_conn *c = d->conns[i];
        bool done = c->broken || (c->eof && c->head == NULL && c->out_off == c->out_len);

        if (!done && !all) {
            d->conns[kept++] = c;
            continue;
        }
        mk_log(MK_LOG_DEBUG, NULL, "connection %lu closed: %lu lines, %lu records, %lu refused",
               c->id, c->lines, c->records, c->refused_total);
        ad_conn_free(c);
        d->accept_paused = false;
    }
    d->nconns = kept;
}

/* --------------------------------------------------------- writing out */

static void ad_db_commit(struct ad *d)
{
    char *error = NULL;
    size_t i;

    if (au_db_begin(d->db, &error) == 0) {
        for (i = 0; i < d->dbq_len && error == NULL; i++) {
            struct ad_dbitem *it = &d->dbq[i];

            if (it->usage)
                au_db_apply_usage(d->db, it->obj, it->time, &error);
            else
                au_db_apply_audit(d->db, it->obj, it->time, &error);
        }
        if (error == NULL)
            au_db_commit(d->db, &error);
        else
            au_db_rollback(d->db);
    }
    if (error != NULL) {
        if (!d->db_failing)
            mk_log(MK_LOG_ERROR, NULL, "usage database: %s; keeping %zu updates in memory and "
                   "trying again every second", error, d->dbq_len);
        d->db_failing = true;
        d->db_retry_at = ad_now_ms() + AD_RETRY_MS;
        free(error);
        return;
    }
    if (d->db_failing)
        mk_log(MK_LOG_INFO, NULL, "usage database: written again");
    d->db_failing = false;
    for (i = 0; i < d->dbq_len; i++)
        json_decref(d->dbq[i].obj);
    d->db_done += d->dbq_len;
    d->dbq_len = 0;
    d->db_bytes = 0;
}

static void ad_log_flush(struct ad *d)
{
    uint64_t first = au_log_last_seq(d->log) + 1, last = au_log_pending_seq(d->log);
    char *error = NULL;

    if (au_log_flush(d->log, &error) < 0) {
        if (!d->log_failing)
            mk_log(MK_LOG_ERROR, NULL, "%s; keeping records %" PRIu64 " to %" PRIu64 " in "
                   "memory and trying again every second", error, first, last);
        d->log_failing = true;
        d->log_retry_at = ad_now_ms() + AD_RETRY_MS;
        free(error);
    } else if (d->log_failing) {
        mk_log(MK_LOG_INFO, NULL, "audit log written again: records up to %" PRIu64 " are on "
               "disk", au_log_last_seq(d->log));
        d->log_failing = false;
    }
    ad_take_note(d);
}

static void ad_checkpoint(struct ad *d)
{
    char *error = NULL;

    if (au_log_checkpoint(d->log, ad_now_us(), &error) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "audit log: %s", error);
        free(error);
        return;
    }
    d->cp_due = 0;
}

/*
 * Whether what is pending is to be written now rather than held back for
 * up to commit_delay, so that the records of many turns share one
 * fdatasync and one database commit: yes when stopping, when a client
 * waits for an answer, when much is pending, or when the time is up.
 */
static bool ad_due(struct ad *d, int64_t now)
{
    if (ad_pending(d) == 0) {
        d->hold_since = 0;
        return false;
    }
    if (d->stopping || d->set.commit_delay_ms == 0 || ad_pending(d) >= AD_HOLD_MAX)
        return true;
    for (size_t i = 0; i < d->nconns; i++)
        if (d->conns[i]->head != NULL)
            return true;
    if (d->hold_since == 0)
        d->hold_since = now;
    return now >= d->hold_since + d->set.commit_delay_ms;
}

/* Write what is pending (when it is time to try), then let the answers out. */
static void ad_commit(struct ad *d)
{
    int64_t now = ad_now_ms();
    bool was_paused = d->paused;

    if (d->cp_due != 0 && now >= d->cp_due)
        ad_checkpoint(d);
    if (ad_due(d, now)) {
        if (au_log_pending_bytes(d->log) > 0 && (!d->log_failing || now >= d->log_retry_at))
            ad_log_flush(d);
        if (d->dbq_len > 0 && (!d->db_failing || now >= d->db_retry_at))
            ad_db_commit(d);
        d->hold_since = ad_pending(d) == 0 ? 0 : now;
    }
    d->paused = ad_pending(d) > d->set.max_pending;
    if (d->paused && !was_paused)
        mk_log(MK_LOG_WARNING, NULL, "%zu bytes wait to be written, more than max_pending "
               "(%zu): reading from clients paused until they are written", ad_pending(d),
               d->set.max_pending);
    else if (!d->paused && was_paused)
        mk_log(MK_LOG_INFO, NULL, "reading from clients again");
    for (size_t i = 0; i < d->nconns; i++) {
        ad_answers_due(d, d->conns[i]);
        ad_conn_write(d->conns[i]);
    }
}

/* ---------------------------------------------------------------- socket */

static int ad_socket_open(struct ad *d, uid_t owner)
{
    const char *path = d->set.socket;
    struct sockaddr_un sun;
    struct stat st;
    char *dir = mk_xstrdup(path), *slash = strrchr(dir, '/');
    mode_t old;
    int fd;

    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            mk_log(MK_LOG_WARNING, NULL, "cannot create %s: %s", dir, strerror(errno));
    }
    free(dir);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            mk_log(MK_LOG_ERROR, NULL, "%s exists and is not a socket", path);
            return -1;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &sun, sizeof(sun)) == 0) {
            mk_log(MK_LOG_ERROR, NULL, "%s: another %s is listening there", path, AD_PROGNAME);
            close(fd);
            return -1;
        }
        if (fd >= 0)
            close(fd);
        unlink(path);                   /* left by a daemon that is gone */
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "socket: %s", strerror(errno));
        return -1;
    }
    old = umask(0177);                  /* no one in until its mode is set */
    if (bind(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "cannot bind %s: %s", path, strerror(errno));
        umask(old);
        close(fd);
        return -1;
    }
    umask(old);
    if ((owner != (uid_t) -1 || d->set.gid != (gid_t) -1)
        && chown(path, owner, d->set.gid) < 0)
        mk_log(MK_LOG_WARNING, NULL, "chown %s: %s", path, strerror(errno));
    if (chmod(path, d->set.socket_mode) < 0 || listen(fd, SOMAXCONN) < 0
        || stat(path, &st) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    d->socket_ino = st.st_ino;
    d->listen_fd = fd;
    return 0;
}

static void ad_socket_close(struct ad *d)
{
    struct stat st;

    if (d->listen_fd < 0)
        return;
    close(d->listen_fd);
    d->listen_fd = -1;
    /* only our own: a daemon started since may have replaced it */
    if (stat(d->set.socket, &st) == 0 && st.st_ino == d->socket_ino)
        unlink(d->set.socket);
}

/* ----------------------------------------------------------------- reload */

static void ad_apply_logging(const struct mk_config *cfg)
{
    enum mk_log_level level = MK_LOG_INFO;

    (void) mk_log_parse_level(mk_config_str(cfg, "global", "log_level"), &level);
    mk_log_set_level(level);
}

static void ad_reload(struct ad *d)
{
    struct ad_settings s;
    struct mk_config *cfg;
    char *error = NULL;
    static const struct {
        const char *key;
        size_t offset;
    } fixed[] = {
        {"socket", offsetof(struct ad_settings, socket)},
        {"log_dir", offsetof(struct ad_settings, log_dir)},
        {"db", offsetof(struct ad_settings, db)},
        {"keys_dir", offsetof(struct ad_settings, keys_dir)},
        {"user", offsetof(struct ad_settings, user)},
        {"socket_group", offsetof(struct ad_settings, socket_group)},
    };

    if ((cfg = mk_config_load(d->config_path, &error)) == NULL) {
        mk_log(MK_LOG_ERROR, NULL, "reload failed, the running configuration stays: %s", error);
        free(error);
        return;
    }
    if (ad_settings_load(cfg, d->set.socket, &s, &error) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "reload failed, the running configuration stays: %s", error);
        free(error);
        ad_settings_free(&s);
        mk_config_unref(cfg);
        return;
    }
    for (size_t i = 0; i < MK_ARRAY_LEN(fixed); i++) {
        const char *was = *(char **) ((char *) &d->set + fixed[i].offset);
        const char *now = *(char **) ((char *) &s + fixed[i].offset);

        if (strcmp(was, now) != 0)
            mk_log(MK_LOG_WARNING, NULL, "reload: [audit] %s changed: it takes effect when the "
                   "daemon is restarted", fixed[i].key);
    }
    d->set.checkpoint_ms = s.checkpoint_ms;
    d->set.commit_delay_ms = s.commit_delay_ms;
    d->set.max_pending = s.max_pending;
    ad_apply_logging(cfg);
    ad_settings_free(&s);
    mk_config_unref(cfg);
    mk_log(MK_LOG_INFO, NULL, "configuration reloaded");
}

/* ------------------------------------------------------------------ loop */

static int ad_poll_timeout(const struct ad *d, int64_t now)
{
    int64_t wake = -1;

    if (d->cp_due != 0)
        wake = d->cp_due;
    if (d->hold_since != 0 && !d->log_failing && !d->db_failing
        && (wake < 0 || d->hold_since + d->set.commit_delay_ms < wake))
        wake = d->hold_since + d->set.commit_delay_ms;
    if (d->log_failing && au_log_pending_bytes(d->log) > 0
        && (wake < 0 || d->log_retry_at < wake))
        wake = d->log_retry_at;
    if (d->db_failing && d->dbq_len > 0 && (wake < 0 || d->db_retry_at < wake))
        wake = d->db_retry_at;
    if (wake < 0)
        return -1;
    return wake <= now ? 0 : wake - now > 60000 ? 60000 : (int) (wake - now);
}

/* The signals that came: 1 stop, 0 otherwise. */
static int ad_signals(struct ad *d)
{
    unsigned char sigs[64];
    ssize_t n;
    int stop = 0;

    while ((n = read(ad_signal_pipe[0], sigs, sizeof(sigs))) > 0)
        for (ssize_t i = 0; i < n; i++) {
            if (sigs[i] == SIGUSR1)
                ad_reload(d);
            else
                stop = 1;
        }
    return stop;
}

/*
 * While records wait for their commit and no client waits for an answer,
 * let more gather in the sockets before reading again: under load, one
 * turn then takes the records of many writes, instead of one each.
 */
static void ad_pace(struct ad *d)
{
    int64_t left;
    struct pollfd p = {ad_signal_pipe[0], POLLIN, 0};

    if (d->hold_since == 0 || d->stopping || d->log_failing || d->db_failing)
        return;
    for (size_t i = 0; i < d->nconns; i++)
        if (d->conns[i]->head != NULL)
            return;
    left = d->hold_since + d->set.commit_delay_ms - ad_now_ms();
    if (left > 0)
        (void) poll(&p, 1, left < AD_PACE_MS ? (int) left : AD_PACE_MS);
}

static void ad_run(struct ad *d)
{
    struct pollfd *pfd = NULL;
    size_t pfd_cap = 0;

    while (!d->stopping) {
        size_t n = 2;
        int rc;

        if (pfd_cap < d->nconns + 2) {
            pfd_cap = 2 * (d->nconns + 2);
            pfd = mk_xrealloc(pfd, pfd_cap * sizeof(*pfd));
        }
        pfd[0] = (struct pollfd) {ad_signal_pipe[0], POLLIN, 0};
        pfd[1] = (struct pollfd) {d->listen_fd, d->accept_paused ? 0 : POLLIN, 0};
        for (size_t i = 0; i < d->nconns; i++) {
            struct ad_conn *c = d->conns[i];
            short ev = 0;

            if (!d->paused && !c->eof && c->nanswers < AD_MAX_ANSWERS)
                ev |= POLLIN;
            if (c->out_off < c->out_len)
                ev |= POLLOUT;
            /* Nothing wanted: not polled at all, so that a peer gone
             * (POLLHUP comes unasked) does not spin the loop while its
             * answers wait for the disk, nor make us read while paused. */
            pfd[n++] = (struct pollfd) {ev ? c->fd : -1, ev, 0};
        }
        rc = poll(pfd, n, ad_poll_timeout(d, ad_now_ms()));
        if (rc < 0 && errno != EINTR) {
            mk_log(MK_LOG_ERROR, NULL, "poll: %s", strerror(errno));
            break;
        }
        if (rc > 0 && (pfd[0].revents & POLLIN) && ad_signals(d))
            d->stopping = true;
        if (rc > 0 && (pfd[1].revents & POLLIN) && !d->stopping)
            ad_accept(d);
        /* the connections accepted just now wait for the next turn */
        for (size_t i = 0; rc > 0 && i + 2 < n; i++) {
            struct ad_conn *c = d->conns[i];

            if (pfd[i + 2].revents & (POLLIN | POLLHUP | POLLERR))
                ad_conn_read(d, c);
            if ((pfd[i + 2].revents & (POLLHUP | POLLERR)) && c->eof)
                c->broken = true;       /* gone both ways: what it sent is taken */
            if (pfd[i + 2].revents & POLLOUT)
                ad_conn_write(c);
        }
        ad_commit(d);
        ad_reap(d, false);
        ad_pace(d);
    }
    free(pfd);
}

/*
 * Stop: take what the clients have already sent, sign it, write it. With
 * a full disk, go on trying until it works or a second stop signal says
 * to give up.
 */
static int ad_stop(struct ad *d)
{
    int64_t next_note = 0;
    int rc = 0;

    ad_socket_close(d);
    d->stopping = true;
    d->paused = false;
    for (size_t i = 0; i < d->nconns; i++)
        ad_conn_read(d, d->conns[i]);
    ad_checkpoint(d);
    d->log_retry_at = d->db_retry_at = 0;
    for (;;) {
        int64_t now = ad_now_ms();
        struct pollfd p = {ad_signal_pipe[0], POLLIN, 0};

        ad_commit(d);
        if (au_log_pending_bytes(d->log) == 0 && d->dbq_len == 0)
            break;
        if (now >= next_note) {
            mk_log(MK_LOG_ERROR, NULL, "stopping, but %zu bytes cannot be written yet: trying "
                   "again every second (a second stop signal gives up and loses them)",
                   ad_pending(d));
            next_note = now + 60000;
        }
        if (poll(&p, 1, AD_RETRY_MS) > 0 && ad_signals(d)) {
            mk_log(MK_LOG_ERROR, NULL, "giving up: records %" PRIu64 " to %" PRIu64 " of the "
                   "audit log and %zu usage updates are LOST", au_log_last_seq(d->log) + 1,
                   au_log_pending_seq(d->log), d->dbq_len);
            rc = EX_IOERR;
            break;
        }
    }
    for (size_t i = 0; i < d->nconns; i++) {
        ad_answers_due(d, d->conns[i]);
        ad_conn_write(d->conns[i]);
    }
    ad_reap(d, true);
    return rc;
}

/* ------------------------------------------------------------------ main */

static void ad_usage(FILE *fp)
{
    fprintf(fp, "usage: %s [-f] [-t] [-V] [-c config] [-p socket] [-u user]\n"
            "  -c FILE    configuration file (default %s)\n"
            "  -p SOCKET  the socket's path, instead of [audit] socket\n"
            "  -f         stay in the foreground and log to standard error\n"
            "  -u USER    run as USER after opening the socket\n"
            "  -t         check the configuration and the keys, then exit\n"
            "  -V         print the version and exit\n", AD_PROGNAME, AD_DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
    const char *socket_arg = NULL, *user_arg = NULL, *user;
    bool foreground = false, check_only = false;
    struct ad d;
    struct mk_config *cfg;
    EVP_PKEY *sign = NULL, *verify = NULL;
    struct sigaction sa;
    enum mk_log_dest dest;
    int facility = 0, ch, ready_fd = -1, rc = 0;
    uid_t owner = (uid_t) -1;
    char *error = NULL;

    memset(&d, 0, sizeof(d));
    d.listen_fd = -1;
    d.config_path = AD_DEFAULT_CONFIG;
    mk_log_open(AD_PROGNAME, MK_LOG_STDERR, 0);
    opterr = 0;
    while ((ch = getopt(argc, argv, "c:p:fu:tVh")) != -1) {
        switch (ch) {
        case 'c':
            d.config_path = optarg;
            break;
        case 'p':
            socket_arg = optarg;
            break;
        case 'f':
            foreground = true;
            break;
        case 'u':
            user_arg = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'V':
            printf("%s %s\n", AD_PROGNAME, PACKAGE_VERSION);
            return 0;
        case 'h':
            ad_usage(stdout);
            return 0;
        default:
            if (optopt == 'c' || optopt == 'p' || optopt == 'u')
                fprintf(stderr, "%s: option -%c needs an argument\n", AD_PROGNAME, optopt);
            else
                fprintf(stderr, "%s: unknown option -%c\n", AD_PROGNAME, optopt);
            ad_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", AD_PROGNAME, argv[optind]);
        ad_usage(stderr);
        return EX_USAGE;
    }
    if ((cfg = mk_config_load(d.config_path, &error)) == NULL) {
        fprintf(stderr, "%s\n", error);
        free(error);
        return EX_CONFIG;
    }
    if (ad_settings_load(cfg, socket_arg, &d.set, &error) < 0) {
        fprintf(stderr, "%s: %s\n", d.config_path, error);
        free(error);
        ad_settings_free(&d.set);
        mk_config_unref(cfg);
        return EX_CONFIG;
    }
    ad_apply_logging(cfg);
    user = user_arg ? user_arg : d.set.user;
    if (*user) {
        struct passwd *pw = getpwnam(user);

        if (pw == NULL) {
            fprintf(stderr, "%s: user %s does not exist\n", AD_PROGNAME, user);
            rc = EX_NOUSER;
            goto out;
        }
        owner = pw->pw_uid;
    }
    /* the private key is read while still root: keys_dir is root's, 0700 */
    if (au_keys_load(d.set.keys_dir, true, &sign, &verify, &error) < 0) {
        fprintf(stderr, "%s: %s (create the keys with: mailkeep audit init)\n", AD_PROGNAME,
                error);
        free(error);
        rc = EX_CONFIG;
        goto out;
    }
    if (check_only) {
        printf("%s: configuration %s is valid; the signing key in %s loads\n", AD_PROGNAME,
               d.config_path, d.set.keys_dir);
        goto out;
    }

    dest = strcasecmp(mk_config_str(cfg, "global", "log"), "stderr") == 0
        || (foreground && mk_config_line(cfg, "global", "log") == 0) ? MK_LOG_STDERR
                                                                      : MK_LOG_SYSLOG;
    (void) mk_log_parse_facility(mk_config_str(cfg, "global", "log_facility"), &facility);
    mk_log_open(AD_PROGNAME, dest, facility);
    umask(027);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);           /* a file size limit is a full disk: EFBIG, kept */
    if (ad_socket_open(&d, owner) < 0) {
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if (!foreground && mk_daemon_detach(&ready_fd) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "cannot detach: %s", strerror(errno));
        rc = EX_OSERR;
        goto out;
    }
    if (*d.set.pidfile && mk_daemon_pidfile(d.set.pidfile, AD_PROGNAME) < 0) {
        rc = EX_CANTCREAT;
        goto out;
    }
    if (mk_daemon_drop_privileges(user, NULL) < 0) {
        rc = EX_NOPERM;
        goto out;
    }
    if ((d.log = au_log_open(d.set.log_dir, sign, verify, &error)) == NULL) {
        mk_log(MK_LOG_ERROR, NULL, "%s", error);
        free(error);
        rc = EX_CANTCREAT;
        goto out;
    }
    ad_take_note(&d);
    if (au_log_unsigned(d.log) > 0) {  /* sign what the last run left unsigned */
        ad_checkpoint(&d);
        if (au_log_flush(d.log, &error) < 0) {
            mk_log(MK_LOG_ERROR, NULL, "%s", error);
            free(error);
            rc = EX_IOERR;
            goto out;
        }
        ad_take_note(&d);
    }
    if ((d.db = au_db_open(d.set.db, true, &error)) == NULL) {
        mk_log(MK_LOG_ERROR, NULL, "%s", error);
        free(error);
        rc = EX_CANTCREAT;
        goto out;
    }
    if (pipe2(ad_signal_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "pipe: %s", strerror(errno));
        rc = EX_OSERR;
        goto out;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ad_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    mk_log(MK_LOG_INFO, NULL, "%s %s listening on %s (log %s, last seq %" PRIu64 ")",
           AD_PROGNAME, PACKAGE_VERSION, d.set.socket, d.set.log_dir, au_log_last_seq(d.log));
    mk_daemon_ready(&ready_fd, 0);

    ad_run(&d);

    rc = ad_stop(&d);
    mk_log(MK_LOG_INFO, NULL, "stopped: %llu records taken, %llu lines refused; last seq %"
           PRIu64, d.records, d.refused, au_log_last_seq(d.log));
    if (*d.set.pidfile && unlink(d.set.pidfile) < 0 && errno != ENOENT)
        mk_log(MK_LOG_WARNING, NULL, "cannot remove pidfile %s: %s", d.set.pidfile,
               strerror(errno));
out:
    mk_daemon_ready(&ready_fd, (char) rc);
    ad_socket_close(&d);
    for (size_t i = 0; i < d.dbq_len; i++)
        json_decref(d.dbq[i].obj);
    free(d.dbq);
    free(d.conns);
    au_log_close(d.log);
    au_db_close(d.db);
    EVP_PKEY_free(sign);
    EVP_PKEY_free(verify);
    ad_settings_free(&d.set);
    mk_config_unref(cfg);
    return rc;
}
