/*
 * ar_index - the archive's search index. See ar_index.h.
 */
#include "config.h"

#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ar_fts.h"
#include "ar_index.h"
#include "mk_mime.h"
#include "mk_util.h"

#define AR_ID_SHIFT 20                  /* id = time << 20 | counter */
#define AR_INDEX_TEXT_MAX (16 * MK_MIME_MIB)

static int64_t ar_parse_date(const char *value);

/* ------------------------------------------------------------ extraction */

struct ar_buf {
    char *s;
    size_t len, cap;
};

static void ar_buf_add(struct ar_buf *b, const char *s, size_t n)
{
    if (b->len + n + 2 > b->cap) {
        b->cap = (b->len + n + 2) * 2;
        b->s = mk_xrealloc(b->s, b->cap);
    }
    if (b->len)
        b->s[b->len++] = '\n';
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static char *ar_buf_take(struct ar_buf *b, size_t *len)
{
    char *s = b->s ? b->s : mk_xstrdup("");

    if (len)
        *len = b->len;
    memset(b, 0, sizeof(*b));
    return s;
}

struct ar_walk {
    struct ar_buf body, attachment, from, to, cc, subject;
    char **seen;                        /* top-level attachment locations */
    size_t nseen;
};

static bool ar_top_level(const char *location)
{
    return strncmp(location, "attachment", 10) == 0 && strstr(location, " > ") == NULL;
}

static void ar_count_attachment(struct ar_walk *w, const char *location)
{
    if (!ar_top_level(location))
        return;
    for (size_t i = 0; i < w->nseen; i++)
        if (strcmp(w->seen[i], location) == 0)
            return;
    w->seen = mk_xrealloc(w->seen, (w->nseen + 1) * sizeof(char *));
    w->seen[w->nseen++] = mk_xstrdup(location);
}

static int ar_walk_segment(void *arg, const struct mk_mime_segment *s)
{
    struct ar_walk *w = arg;

    switch (s->where) {
    case MK_WHERE_SUBJECT:
        if (strcmp(s->location, "subject") == 0)
            ar_buf_add(&w->subject, s->text, s->len);
        else
            ar_buf_add(&w->attachment, s->text, s->len);    /* an attached message's */
        break;
    case MK_WHERE_HEADER:
        if (strcmp(s->location, "header From") == 0)
            ar_buf_add(&w->from, s->text, s->len);
        else if (strcmp(s->location, "header To") == 0)
            ar_buf_add(&w->to, s->text, s->len);
        else if (strcmp(s->location, "header Cc") == 0)
            ar_buf_add(&w->cc, s->text, s->len);
        else if (strncmp(s->location, "header ", 7) == 0)
            ar_buf_add(&w->body, s->text, s->len);
        else
            ar_buf_add(&w->attachment, s->text, s->len);
        break;
    case MK_WHERE_BODY:
        ar_buf_add(&w->body, s->text, s->len);
        break;
    case MK_WHERE_ATTACHMENT_NAME:
    case MK_WHERE_ATTACHMENT:
        ar_count_attachment(w, s->location);
        ar_buf_add(&w->attachment, s->text, s->len);
        break;
    }
    return 0;
}

static void ar_walk_problem(void *arg, const struct mk_mime_problem *p)
{
    ar_count_attachment(arg, p->location);  /* an image or other part with no text */
}

/* The unfolded value of the first header called name, or NULL. */
char *ar_doc_header(const char *msg, size_t len, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = msg, *end = msg + len;

    while (p < end && *p != '\r' && *p != '\n') {
        const char *eol = memchr(p, '\n', (size_t) (end - p));
        const char *next = eol ? eol + 1 : end;

        while (next < end && (*next == ' ' || *next == '\t')) {
            eol = memchr(next, '\n', (size_t) (end - next));
            next = eol ? eol + 1 : end;
        }
        if ((size_t) (next - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            struct ar_buf b = {0};
            const char *v = p + nlen + 1;

            /* unfold: drop CR and LF, keep the rest */
            for (const char *q = v; q < next; q++)
                if (*q != '\r' && *q != '\n') {
                    if (b.len + 2 > b.cap) {
                        b.cap = b.cap ? b.cap * 2 : 128;
                        b.s = mk_xrealloc(b.s, b.cap);
                    }
                    b.s[b.len++] = *q;
                    b.s[b.len] = '\0';
                }
            if (b.s == NULL)
                return mk_xstrdup("");
            v = mk_str_trim(b.s);
            memmove(b.s, v, strlen(v) + 1);
            return b.s;
        }
        p = next;
    }
    return NULL;
}

/* The addr-specs in a header value, lower-cased, one per line. */
static void ar_addresses(const char *value, struct ar_buf *out)
{
    const char *p = value;

    while (p && *p) {
        const char *at = strchr(p, '@'), *s, *e;
        char *addr;

        if (at == NULL)
            break;
        for (s = at; s > value && !strchr(" \t<>,;:\"()[]", s[-1]); s--)
            ;
        for (e = at + 1; *e && !strchr(" \t<>,;:\"()[]", *e); e++)
            ;
        if (s < at && e > at + 1) {
            addr = mk_xstrndup(s, (size_t) (e - s));
            mk_str_lower(addr);
            ar_buf_add(out, addr, strlen(addr));
            free(addr);
        }
        p = e;
    }
}

char **ar_doc_addresses(const char *value)
{
    struct ar_buf b = {0};
    char **list;

    ar_addresses(value, &b);
    list = mk_str_split(b.s ? b.s : "", "\n", NULL);
    free(b.s);
    return list;
}

int64_t ar_doc_date(const char *value)
{
    return ar_parse_date(value);
}

static int64_t ar_parse_date(const char *value)
{
    GDateTime *dt;
    int64_t t;

    if (value == NULL)
        return 0;
    mk_mime_init();
    if ((dt = g_mime_utils_header_decode_date(value)) == NULL)
        return 0;
    t = (int64_t) g_date_time_to_unix(dt);
    g_date_time_unref(dt);
    return t > 0 ? t : 0;
}

int ar_doc_extract(const char *msg, size_t len, const struct ar_envelope *env, struct ar_doc *doc)
{
    struct ar_walk w;
    struct mk_mime_walk_cb cb = {ar_walk_segment, ar_walk_problem, &w};
    struct mk_mime_limits limits;
    struct ar_buf named = {0};
    char *to = ar_doc_header(msg, len, "To"), *cc = ar_doc_header(msg, len, "Cc");
    char *from = ar_doc_header(msg, len, "From"), *date = ar_doc_header(msg, len, "Date");
    struct ar_buf bcc = {0};
    int rc;

    memset(doc, 0, sizeof(*doc));
    memset(&w, 0, sizeof(w));
    mk_mime_limits_default(&limits);
    limits.max_total = AR_INDEX_TEXT_MAX;
    rc = mk_mime_walk(msg, len, &limits, &cb);
    /* headers: the display names the walk decoded, then the addresses */
    if (from)
        ar_addresses(from, &w.from);
    if (to)
        ar_addresses(to, &w.to);
    if (cc)
        ar_addresses(cc, &w.cc);
    if (to)
        ar_addresses(to, &named);
    if (cc)
        ar_addresses(cc, &named);
    for (size_t i = 0; env && i < env->nrcpts; i++) {
        char *r = mk_xstrdup(env->rcpts[i]);
        bool found = false;

        mk_str_lower(r);
        for (const char *p = named.s; p && (p = strstr(p, r)) != NULL; p++)
            if ((p == named.s || p[-1] == '\n') && (p[strlen(r)] == '\n' || !p[strlen(r)])) {
                found = true;
                break;
            }
        if (!found)
            ar_buf_add(&bcc, r, strlen(r));
        free(r);
    }
    doc->from_hdr = ar_buf_take(&w.from, NULL);
    doc->to_hdr = ar_buf_take(&w.to, NULL);
    doc->cc_hdr = ar_buf_take(&w.cc, NULL);
    doc->subject = ar_buf_take(&w.subject, NULL);
    doc->body = ar_buf_take(&w.body, &doc->body_len);
    doc->attachment = ar_buf_take(&w.attachment, &doc->attachment_len);
    doc->bcc = ar_buf_take(&bcc, NULL);
    doc->message_id = ar_doc_header(msg, len, "Message-ID");
    doc->date = ar_parse_date(date);
    doc->attachments = (int) w.nseen;
    for (size_t i = 0; i < w.nseen; i++)
        free(w.seen[i]);
    free(w.seen);
    free(named.s);
    free(to);
    free(cc);
    free(from);
    free(date);
    return rc;
}

void ar_doc_free(struct ar_doc *doc)
{
    free(doc->from_hdr);
    free(doc->to_hdr);
    free(doc->cc_hdr);
    free(doc->subject);
    free(doc->message_id);
    free(doc->bcc);
    free(doc->body);
    free(doc->attachment);
    memset(doc, 0, sizeof(*doc));
}

/* ------------------------------------------------------------- database */

struct ar_index {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *insert, *insert_fts, *free_id, *has_spool, *get;
    int64_t last_id;                    /* the last id given, to find the next free one fast */
};

static const char ar_schema[] =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, object BLOB NOT NULL,"
    " envelope BLOB NOT NULL, time INTEGER NOT NULL, direction TEXT NOT NULL,"
    " size INTEGER NOT NULL, attachments INTEGER NOT NULL, sender TEXT, recipients TEXT,"
    " from_hdr TEXT, to_hdr TEXT, cc_hdr TEXT, subject TEXT, message_id TEXT, client TEXT,"
    " login TEXT, queue_id TEXT, source TEXT NOT NULL, spool_id TEXT,"
    " hidden INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS messages_object ON messages(object);"
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_spool ON messages(spool_id);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(sender, recipients, from_, to_, cc,"
    " bcc, subject, body, attachment, content='', columnsize=0, tokenize='" AR_FTS_TOKENIZER "');"
    "INSERT OR IGNORE INTO meta VALUES ('schema', '1');"
    "INSERT INTO fts(fts, rank) VALUES ('automerge', 8);"
    "INSERT INTO fts(fts, rank) VALUES ('crisismerge', 64);"
    "INSERT INTO fts(fts, rank) VALUES ('hashsize', 67108864);";

static int ar_index_error(struct ar_index *ix, const char *what, char **error)
{
    *error = mk_xasprintf("%s: %s: %s", ix->path, what, sqlite3_errmsg(ix->db));
    return -1;
}

static int ar_prepare(struct ar_index *ix, const char *sql, sqlite3_stmt **st, char **error)
{
    if (sqlite3_prepare_v3(ix->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return ar_index_error(ix, "prepare", error);
    return 0;
}

struct ar_index *ar_index_open(const char *path, bool create, char **error)
{
    struct ar_index *ix = mk_xcalloc(1, sizeof(*ix));
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    char *msg = NULL;

    ix->path = mk_xstrdup(path);
    if (sqlite3_open_v2(path, &ix->db, flags, NULL) != SQLITE_OK) {
        ar_index_error(ix, "open", error);
        ar_index_close(ix);
        return NULL;
    }
    sqlite3_busy_timeout(ix->db, 10000);
    if (ar_fts_register(ix->db, error) < 0) {
        ar_index_close(ix);
        return NULL;
    }
    if (sqlite3_exec(ix->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     " PRAGMA cache_size=-131072; PRAGMA temp_store=MEMORY;"
                     " PRAGMA wal_autocheckpoint=16384;", NULL, NULL,
                     &msg) != SQLITE_OK
        || sqlite3_exec(ix->db, ar_schema, NULL, NULL, &msg) != SQLITE_OK) {
        *error = mk_xasprintf("%s: %s", path, msg ? msg : "cannot set up the index");
        sqlite3_free(msg);
        ar_index_close(ix);
        return NULL;
    }
    if (ar_prepare(ix, "INSERT INTO messages (id, seq, object, envelope, time, direction, size,"
                   " attachments, sender, recipients, from_hdr, to_hdr, cc_hdr, subject,"
                   " message_id, client, login, queue_id, source, spool_id)"
                   " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", &ix->insert, error) < 0
        || ar_prepare(ix, "INSERT INTO fts (rowid, sender, recipients, from_, to_, cc, bcc,"
                      " subject, body, attachment) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      &ix->insert_fts, error) < 0
        || ar_prepare(ix, "SELECT max(id) FROM messages WHERE id BETWEEN ? AND ?", &ix->free_id,
                      error) < 0
        || ar_prepare(ix, "SELECT 1 FROM messages WHERE spool_id = ?", &ix->has_spool, error) < 0
        || ar_prepare(ix, "SELECT id, seq, time, size, object, envelope, direction, sender,"
                      " recipients, from_hdr, to_hdr, cc_hdr, subject, message_id, client,"
                      " login, queue_id, source, spool_id, attachments, hidden"
                      " FROM messages WHERE id = ?", &ix->get, error) < 0) {
        ar_index_close(ix);
        return NULL;
    }
    return ix;
}

sqlite3 *ar_index_db(struct ar_index *ix)
{
    return ix->db;
}

int ar_index_begin(struct ar_index *ix, char **error)
{
    if (sqlite3_exec(ix->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return ar_index_error(ix, "begin", error);
    return 0;
}

int ar_index_commit(struct ar_index *ix, char **error)
{
    if (sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ar_index_error(ix, "commit", error);
        sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* The smallest free id in the message's second. */
static int ar_index_new_id(struct ar_index *ix, int64_t t, int64_t *id, char **error)
{
    int64_t lo = t << AR_ID_SHIFT, hi = lo + (1 << AR_ID_SHIFT) - 1;

    if (ix->last_id >= lo && ix->last_id < hi) {
        *id = ix->last_id + 1;
    } else {
        sqlite3_reset(ix->free_id);
        sqlite3_bind_int64(ix->free_id, 1, lo);
        sqlite3_bind_int64(ix->free_id, 2, hi);
        if (sqlite3_step(ix->free_id) != SQLITE_ROW)
            return ar_index_error(ix, "find a free id", error);
        *id = sqlite3_column_type(ix->free_id, 0) == SQLITE_NULL
              ? lo : sqlite3_column_int64(ix->free_id, 0) + 1;
        sqlite3_reset(ix->free_id);
    }
    if (*id > hi) {
        *error = mk_xasprintf("%s: more than %d messages in one second", ix->path,
                              1 << AR_ID_SHIFT);
        return -1;
    }
    ix->last_id = *id;
    return 0;
}

static void ar_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int ar_index_add(struct ar_index *ix, const struct ar_index_entry *e, const struct ar_doc *doc,
                 int64_t *out_id, char **error)
{
    const struct ar_envelope *env = e->env;
    struct ar_buf rcpts = {0};
    int64_t id;
    int rc;

    if (ar_index_new_id(ix, e->time, &id, error) < 0)
        return -1;
    for (size_t i = 0; i < env->nrcpts; i++)
        ar_buf_add(&rcpts, env->rcpts[i], strlen(env->rcpts[i]));
    sqlite3_reset(ix->insert);
    sqlite3_bind_int64(ix->insert, 1, id);
    sqlite3_bind_int64(ix->insert, 2, (sqlite3_int64) e->seq);
    sqlite3_bind_blob(ix->insert, 3, e->object, 32, SQLITE_STATIC);
    sqlite3_bind_blob(ix->insert, 4, e->envelope, 32, SQLITE_STATIC);
    sqlite3_bind_int64(ix->insert, 5, e->time);
    ar_bind_text(ix->insert, 6, ar_envelope_direction(env));
    sqlite3_bind_int64(ix->insert, 7, (sqlite3_int64) e->size);
    sqlite3_bind_int(ix->insert, 8, doc->attachments);
    ar_bind_text(ix->insert, 9, env->sender);
    ar_bind_text(ix->insert, 10, rcpts.s ? rcpts.s : "");
    ar_bind_text(ix->insert, 11, doc->from_hdr);
    ar_bind_text(ix->insert, 12, doc->to_hdr);
    ar_bind_text(ix->insert, 13, doc->cc_hdr);
    ar_bind_text(ix->insert, 14, doc->subject);
    ar_bind_text(ix->insert, 15, doc->message_id);
    ar_bind_text(ix->insert, 16, env->client);
    ar_bind_text(ix->insert, 17, env->login);
    ar_bind_text(ix->insert, 18, env->queue_id);
    ar_bind_text(ix->insert, 19, env->source ? env->source : "journal");
    ar_bind_text(ix->insert, 20, e->spool_id);
    rc = sqlite3_step(ix->insert);
    sqlite3_reset(ix->insert);
    if (rc != SQLITE_DONE) {
        free(rcpts.s);
        return ar_index_error(ix, "insert", error);
    }
    sqlite3_reset(ix->insert_fts);
    sqlite3_bind_int64(ix->insert_fts, 1, id);
    ar_bind_text(ix->insert_fts, 2, env->sender);
    ar_bind_text(ix->insert_fts, 3, rcpts.s ? rcpts.s : "");
    ar_bind_text(ix->insert_fts, 4, doc->from_hdr);
    ar_bind_text(ix->insert_fts, 5, doc->to_hdr);
    ar_bind_text(ix->insert_fts, 6, doc->cc_hdr);
    ar_bind_text(ix->insert_fts, 7, doc->bcc);
    ar_bind_text(ix->insert_fts, 8, doc->subject);
    sqlite3_bind_text(ix->insert_fts, 9, doc->body ? doc->body : "", (int) doc->body_len,
                      SQLITE_STATIC);
    sqlite3_bind_text(ix->insert_fts, 10, doc->attachment ? doc->attachment : "",
                      (int) doc->attachment_len, SQLITE_STATIC);
    rc = sqlite3_step(ix->insert_fts);
    sqlite3_reset(ix->insert_fts);
    free(rcpts.s);
    if (rc != SQLITE_DONE)
        return ar_index_error(ix, "insert text", error);
    if (out_id)
        *out_id = id;
    return 0;
}

int64_t ar_index_last_seq(struct ar_index *ix)
{
    sqlite3_stmt *st;
    int64_t seq = 0;

    if (sqlite3_prepare_v2(ix->db, "SELECT max(seq) FROM messages", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        seq = sqlite3_column_int64(st, 0);
    else
        seq = -1;
    sqlite3_finalize(st);
    return seq;
}

int ar_index_has_spool_id(struct ar_index *ix, const char *spool_id)
{
    int rc;

    sqlite3_reset(ix->has_spool);
    sqlite3_bind_text(ix->has_spool, 1, spool_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(ix->has_spool);
    sqlite3_reset(ix->has_spool);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static char *ar_column_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    return s ? mk_xstrdup((const char *) s) : NULL;
}

int ar_index_get(struct ar_index *ix, int64_t id, struct ar_index_row *row, char **error)
{
    sqlite3_stmt *st = ix->get;
    int rc;

    memset(row, 0, sizeof(*row));
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        sqlite3_reset(st);
        if (rc == SQLITE_DONE) {
            *error = mk_xasprintf("no archived message with ID %lld", (long long) id);
            return 0;
        }
        return ar_index_error(ix, "read", error);
    }
    row->id = sqlite3_column_int64(st, 0);
    row->seq = sqlite3_column_int64(st, 1);
    row->time = sqlite3_column_int64(st, 2);
    row->size = sqlite3_column_int64(st, 3);
    if (sqlite3_column_bytes(st, 4) == 32)
        memcpy(row->object, sqlite3_column_blob(st, 4), 32);
    if (sqlite3_column_bytes(st, 5) == 32)
        memcpy(row->envelope, sqlite3_column_blob(st, 5), 32);
    row->direction = ar_column_dup(st, 6);
    row->sender = ar_column_dup(st, 7);
    row->recipients = ar_column_dup(st, 8);
    row->from_hdr = ar_column_dup(st, 9);
    row->to_hdr = ar_column_dup(st, 10);
    row->cc_hdr = ar_column_dup(st, 11);
    row->subject = ar_column_dup(st, 12);
    row->message_id = ar_column_dup(st, 13);
    row->client = ar_column_dup(st, 14);
    row->login = ar_column_dup(st, 15);
    row->queue_id = ar_column_dup(st, 16);
    row->source = ar_column_dup(st, 17);
    row->spool_id = ar_column_dup(st, 18);
    row->attachments = sqlite3_column_int(st, 19);
    row->hidden = sqlite3_column_int(st, 20) != 0;
    sqlite3_reset(st);
    return 1;
}

void ar_index_row_free(struct ar_index_row *row)
{
    free(row->direction);
    free(row->sender);
    free(row->recipients);
    free(row->from_hdr);
    free(row->to_hdr);
    free(row->cc_hdr);
    free(row->subject);
    free(row->message_id);
    free(row->client);
    free(row->login);
    free(row->queue_id);
    free(row->source);
    free(row->spool_id);
    memset(row, 0, sizeof(*row));
}

void ar_index_close(struct ar_index *ix)
{
    if (ix == NULL)
        return;
    sqlite3_finalize(ix->insert);
    sqlite3_finalize(ix->insert_fts);
    sqlite3_finalize(ix->free_id);
    sqlite3_finalize(ix->has_spool);
    sqlite3_finalize(ix->get);
    if (ix->db)
        sqlite3_close(ix->db);
    free(ix->path);
    free(ix);
}
