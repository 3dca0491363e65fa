/*
 * mk_mime - a message as labelled UTF-8 text. See mk_mime.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <gmime/gmime.h>
#include <iconv.h>
#include <libxml/parser.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mk_extract.h"
#include "mk_mime.h"
#include "mk_util.h"

/*
 * Header values that are 8-bit without a declared charset: the order in
 * which GMime tries charsets, the same as mk_mime_to_utf8() uses for text.
 */
static const char *mk_mime_fallback_charsets[] = {"UTF-8", "CP950", "BIG5-HKSCS", "GB18030",
                                                  NULL};

static pthread_once_t mk_mime_once = PTHREAD_ONCE_INIT;

static void mk_mime_init_once(void)
{
    g_mime_init();
    /* libxml2 must set up its globals before threads parse concurrently. */
    xmlInitParser();
}

void mk_mime_init(void)
{
    pthread_once(&mk_mime_once, mk_mime_init_once);
}

void mk_mime_shutdown(void)
{
    g_mime_shutdown();
    xmlCleanupParser();
}

void mk_mime_limits_default(struct mk_mime_limits *l)
{
    l->max_depth = 8;
    l->max_total = 64 * MK_MIME_MIB;
    l->max_part = 32 * MK_MIME_MIB;
    l->max_ratio = 100;
    l->max_members = 10000;
}

/* ------------------------------------------------------------ budget */

/* Cut text at a character boundary no later than max bytes. */
static size_t mk_mime_utf8_cut(const char *text, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char) text[max] & 0xC0) == 0x80)
        max--;
    return max;
}

static int mk_mime_budget_segment(void *arg, const struct mk_mime_segment *s)
{
    struct mk_mime_budget *b = arg;
    struct mk_mime_segment out = *s;
    char *fixed = NULL;
    bool over = false;
    int stop = 0;

    if (b->stopped)
        return 1;
    /*
     * Detectors may assume UTF-8: a converter or a library that let a bad
     * byte through must not make them read past the end of a sequence.
     */
    if (!g_utf8_validate_len(s->text, s->len, NULL)) {
        fixed = g_utf8_make_valid(s->text, (gssize) s->len);
        out.text = fixed;
        out.len = strlen(fixed);
    }
    if (out.len > b->max_total - b->total) {
        out.len = mk_mime_utf8_cut(out.text, out.len, b->max_total - b->total);
        over = true;
    }
    b->total += out.len;
    if (out.len > 0 && b->user->segment)
        stop = b->user->segment(b->user->arg, &out);
    g_free(fixed);
    if (over) {
        if (b->user->problem) {
            struct mk_mime_problem p = {s->location, "size limit", true};

            b->user->problem(b->user->arg, &p);
        }
        stop = 1;
    }
    if (stop)
        b->stopped = true;
    return stop;
}

static void mk_mime_budget_problem(void *arg, const struct mk_mime_problem *p)
{
    struct mk_mime_budget *b = arg;

    if (b->user->problem)
        b->user->problem(b->user->arg, p);
}

const struct mk_mime_walk_cb *mk_mime_budget_enter(struct mk_mime_budget *b,
                                                   const struct mk_mime_limits *limits,
                                                   const struct mk_mime_walk_cb *cb)
{
    static const struct mk_mime_walk_cb none = {NULL, NULL, NULL};

    if (cb && cb->segment == mk_mime_budget_segment)
        return cb;
    b->cb.segment = mk_mime_budget_segment;
    b->cb.problem = mk_mime_budget_problem;
    b->cb.arg = b;
    b->user = cb ? cb : &none;
    b->total = 0;
    b->max_total = limits->max_total;
    b->stopped = false;
    return &b->cb;
}

int mk_mime_emit(const struct mk_mime_walk_cb *cb, enum mk_mime_where where, const char *location,
                 const char *text, size_t len)
{
    struct mk_mime_segment s = {where, location, text, len};
    size_t i;

    for (i = 0; i < len && isspace((unsigned char) text[i]); i++)
        continue;
    if (i == len)
        return cb->segment == mk_mime_budget_segment
            ? ((struct mk_mime_budget *) cb->arg)->stopped : 0;
    return cb->segment ? cb->segment(cb->arg, &s) : 0;
}

void mk_mime_report(const struct mk_mime_walk_cb *cb, const char *location, const char *reason,
                    bool unscannable)
{
    struct mk_mime_problem p = {location, reason, unscannable};

    if (cb->problem)
        cb->problem(cb->arg, &p);
}

/* ----------------------------------------------------------- charsets */

/*
 * Convert with iconv. Strict: NULL at the first sequence the charset does
 * not have. Lossy: each such byte becomes U+FFFD and is counted in
 * *errors. NULL too when iconv does not know the charset.
 */
static char *mk_mime_iconv(const char *charset, const char *data, size_t len, bool lossy,
                           size_t *out_len, size_t *errors)
{
    iconv_t cd = iconv_open("UTF-8", charset);
    char *in = (char *) data, *out, *buf;
    size_t inleft = len, cap, outleft;

    *errors = 0;
    if (cd == (iconv_t) -1)
        return NULL;
    cap = len + len / 2 + 16;
    buf = mk_xmalloc(cap);
    out = buf;
    outleft = cap - 1;
    while (inleft > 0) {
        if (iconv(cd, &in, &inleft, &out, &outleft) != (size_t) -1)
            break;
        if (errno == E2BIG || outleft < 4) {
            size_t used = (size_t) (out - buf);

            cap = cap * 2;
            buf = mk_xrealloc(buf, cap);
            out = buf + used;
            outleft = cap - used - 1;
            continue;
        }
        /* EILSEQ, or EINVAL: a sequence cut off at the end */
        if (!lossy) {
            free(buf);
            iconv_close(cd);
            return NULL;
        }
        memcpy(out, "\xEF\xBF\xBD", 3);
        out += 3;
        outleft -= 3;
        in++;
        inleft--;
        (*errors)++;
        iconv(cd, NULL, NULL, NULL, NULL);
    }
    /* flush the shift state of stateful charsets (ISO-2022-JP) */
    if (outleft >= 16)
        iconv(cd, NULL, NULL, &out, &outleft);
    iconv_close(cd);
    *out = '\0';
    *out_len = (size_t) (out - buf);
    return buf;
}

/*
 * The name iconv knows a declared charset by, NULL for none. Mail declares the old
 * names of charsets that grew: Big5 mail is written by CP950 encoders,
 * GB2312 mail by GBK ones, ASCII and Latin-1 mail by Windows-1252 ones.
 */
static const char *mk_mime_charset_name(const char *declared, bool *latin)
{
    static const struct {
        const char *declared, *iconv;
        bool latin;
    } aliases[] = {
        {"big5", "CP950", false}, {"big-5", "CP950", false}, {"cn-big5", "CP950", false},
        {"x-x-big5", "CP950", false}, {"cp950", "CP950", false}, {"windows-950", "CP950", false},
        {"big5-hkscs", "BIG5-HKSCS", false}, {"big5hkscs", "BIG5-HKSCS", false},
        {"gb2312", "GB18030", false}, {"gbk", "GB18030", false}, {"x-gbk", "GB18030", false},
        {"cp936", "GB18030", false}, {"windows-936", "GB18030", false},
        {"euc-cn", "GB18030", false}, {"x-euc-cn", "GB18030", false},
        {"csgb2312", "GB18030", false}, {"gb_2312-80", "GB18030", false},
        {"gb18030", "GB18030", false},
        /* 8-bit text declared ASCII declares nothing */
        {"us-ascii", NULL, false}, {"ascii", NULL, false}, {"ansi_x3.4-1968", NULL, false},
        {"iso-8859-1", "WINDOWS-1252", true}, {"iso_8859-1", "WINDOWS-1252", true},
        {"latin1", "WINDOWS-1252", true}, {"windows-1252", "WINDOWS-1252", true},
        {"cp1252", "WINDOWS-1252", true},
        {"ks_c_5601-1987", "CP949", false}, {"euc-kr", "CP949", false},
        {"utf8", "UTF-8", false}, {"unicode", "UTF-16", false},
    };

    *latin = false;
    if (declared == NULL || *declared == '\0' || strlen(declared) > 64)
        return NULL;
    for (size_t i = 0; i < MK_ARRAY_LEN(aliases); i++) {
        if (strcasecmp(declared, aliases[i].declared) == 0) {
            *latin = aliases[i].latin;
            return aliases[i].iconv;
        }
    }
    if (strncasecmp(declared, "iso-8859-", 9) == 0)
        *latin = true;
    return g_mime_charset_iconv_name(declared);
}

static bool mk_mime_has_8bit(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) data[i] >= 0x80)
            return true;
    return false;
}

/*
 * Western text has its accented letters mostly alone between ASCII
 * ones; CJK text has its bytes in pairs, even where a byte is damaged.
 */
static bool mk_mime_looks_western(const char *data, size_t len)
{
    const unsigned char *u = (const unsigned char *) data;
    size_t high = 0, alone = 0;

    for (size_t i = 0; i < len; i++) {
        if (u[i] < 0x80)
            continue;
        high++;
        if ((i == 0 || u[i - 1] < 0x80) && (i + 1 == len || u[i + 1] < 0x80))
            alone++;
    }
    return alone * 2 >= high;
}

char *mk_mime_to_utf8(const char *charset, const char *data, size_t len, size_t *out_len)
{
    static const char *const strict[] = {"UTF-8", "CP950", "BIG5-HKSCS", "GB18030"};
    const unsigned char *u = (const unsigned char *) data;
    const char *declared;
    char *best = NULL, *text;
    size_t best_len = 0, best_errors = SIZE_MAX, errors;
    bool latin;

    if (len > SIZE_MAX / 4) {
        *out_len = 0;
        return mk_xstrdup("");
    }
    if (len >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF) {
        data += 3;
        len -= 3;
        charset = "UTF-8";
    } else if (len >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF))) {
        charset = "UTF-16";
    }
    declared = mk_mime_charset_name(charset, &latin);
    if (declared) {
        if (latin && mk_mime_has_8bit(data, len)
            && (text = mk_mime_iconv("UTF-8", data, len, false, out_len, &errors)))
            return text;
        if ((text = mk_mime_iconv(declared, data, len, false, out_len, &errors)))
            return text;
    }
    for (size_t i = 0; i < MK_ARRAY_LEN(strict); i++)
        if ((text = mk_mime_iconv(strict[i], data, len, false, out_len, &errors)))
            return text;
    if (mk_mime_looks_western(data, len)
        && (text = mk_mime_iconv("WINDOWS-1252", data, len, false, out_len, &errors)))
        return text;
    /* None takes it whole: keep the reading that loses least. */
    for (size_t i = 0; i <= MK_ARRAY_LEN(strict); i++) {
        const char *cs = i < MK_ARRAY_LEN(strict) ? strict[i] : declared;
        size_t n;

        if (cs == NULL || (text = mk_mime_iconv(cs, data, len, true, &n, &errors)) == NULL)
            continue;
        if (errors < best_errors) {
            free(best);
            best = text;
            best_len = n;
            best_errors = errors;
        } else {
            free(text);
        }
    }
    *out_len = best_len;
    return best ? best : mk_xstrdup("");
}

/* --------------------------------------------------------------- walk */

struct mk_mime_walk {
    const struct mk_mime_limits *limits;
    const struct mk_mime_walk_cb *cb;   /* the budget */
    GMimeParserOptions *options;
    const char *name;                   /* "message", or where the message was found */
    bool malformed;                     /* reported once per message */
};

/* Location of a thing inside the message: "body" or "attached message > body". */
static char *mk_mime_loc(const char *prefix, const char *what)
{
    return mk_xasprintf("%s%s", prefix, what);
}

static void mk_mime_warning(gint64 offset, GMimeParserWarning code, const gchar *item,
                            gpointer user_data)
{
    struct mk_mime_walk *w = user_data;

    (void) offset;
    (void) item;
    /*
     * The GMIME_CRIT_* issues are those another reader (the recipient's)
     * may see differently from GMime: text could hide there unscanned.
     */
    switch (code) {
    case GMIME_CRIT_NESTING_OVERFLOW:
        /* GMime stops at 1024 levels; below that, the walk's own limit reports first */
        if (w->limits->max_depth >= 1024)
            mk_mime_report(w->cb, w->name, "depth limit", true);
        break;
    case GMIME_CRIT_INVALID_HEADER_NAME:
    case GMIME_CRIT_CONFLICTING_HEADER:
    case GMIME_CRIT_CONFLICTING_PARAMETER:
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
        if (!w->malformed)
            mk_mime_report(w->cb, w->name, "malformed", true);
        w->malformed = true;
        break;
    default:
        break;
    }
}

static bool mk_mime_header_is(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]);

        /* a trailing '-' names a family: "Content-", "ARC-" */
        if (names[i][len - 1] == '-' ? strncasecmp(name, names[i], len) == 0
            : strcasecmp(name, names[i]) == 0)
            return true;
    }
    return false;
}

/* Display names of an address header, one a line; groups are opened. */
static void mk_mime_address_names(InternetAddressList *list, GString *out, int depth)
{
    int n = list ? internet_address_list_length(list) : 0;

    for (int i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        const char *name = internet_address_get_name(ia);

        if (name && *name)
            g_string_append_printf(out, "%s\n", name);
        if (INTERNET_ADDRESS_IS_GROUP(ia) && depth < 2)
            mk_mime_address_names(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)),
                                  out, depth + 1);
    }
}

static int mk_mime_headers(struct mk_mime_walk *w, GMimeObject *obj, const char *prefix)
{
    static const char *const addresses[] = {
        "From", "To", "Cc", "Bcc", "Reply-To", "Sender", "Resent-From", "Resent-To", "Resent-Cc",
        "Resent-Bcc", "Resent-Sender", "Disposition-Notification-To", "Return-Receipt-To",
        "Errors-To", "Mail-Followup-To", "Mail-Reply-To",
    };
    /* Structured or machine-written: addresses, identifiers, dates, trace, signatures. */
    static const char *const skipped[] = {
        "Received", "Return-Path", "Date", "Message-ID", "Resent-Date", "Resent-Message-ID",
        "References", "In-Reply-To", "MIME-Version", "Content-", "DKIM-", "DomainKey-",
        "ARC-", "Authentication-Results", "Received-SPF", "X-Received", "Delivered-To",
        "X-Original-To", "Envelope-", "List-", "X-Spam-", "X-Virus-", "X-MS-", "X-Microsoft-",
        "X-Forefront-", "X-Google-", "X-Gm-", "Thread-Index", "X-Mailer", "User-Agent",
        "Precedence", "Auto-Submitted", "Importance", "Priority", "X-Priority",
        "X-MSMail-Priority", "X-Originating-IP", "X-Mailkeep-",
    };
    GMimeHeaderList *headers = g_mime_object_get_header_list(obj);
    int n = headers ? g_mime_header_list_get_count(headers) : 0;

    for (int i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(headers, i);
        const char *name = g_mime_header_get_name(h), *value;
        char *loc;
        int stop;

        if (name == NULL || mk_mime_header_is(name, skipped, MK_ARRAY_LEN(skipped)))
            continue;
        if (mk_mime_header_is(name, addresses, MK_ARRAY_LEN(addresses))) {
            const char *raw = g_mime_header_get_raw_value(h);
            InternetAddressList *list = raw ? internet_address_list_parse(w->options, raw) : NULL;
            GString *names = g_string_new(NULL);

            mk_mime_address_names(list, names, 0);
            loc = mk_xasprintf("%sheader %s", prefix, name);
            stop = mk_mime_emit(w->cb, MK_WHERE_HEADER, loc, names->str, names->len);
            free(loc);
            g_string_free(names, TRUE);
            if (list)
                g_object_unref(list);
        } else {
            bool subject = strcasecmp(name, "Subject") == 0;

            if ((value = g_mime_header_get_value(h)) == NULL)
                continue;
            loc = subject ? mk_mime_loc(prefix, "subject")
                : mk_xasprintf("%sheader %s", prefix, name);
            stop = mk_mime_emit(w->cb, subject ? MK_WHERE_SUBJECT : MK_WHERE_HEADER, loc, value,
                                strlen(value));
            free(loc);
        }
        if (stop)
            return 1;
    }
    return 0;
}

/* A part's content with its transfer encoding undone. */
static GByteArray *mk_mime_decode(GMimePart *part)
{
    GMimeDataWrapper *content = g_mime_part_get_content(part);
    GByteArray *bytes = g_byte_array_new();
    GMimeStream *out;

    if (content == NULL)
        return bytes;
    out = g_mime_stream_mem_new_with_byte_array(bytes);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(out), FALSE);
    g_mime_data_wrapper_write_to_stream(content, out);
    g_object_unref(out);
    return bytes;
}

static int mk_mime_object(struct mk_mime_walk *w, GMimeObject *obj, size_t depth,
                          const char *prefix);

static int mk_mime_message(struct mk_mime_walk *w, GMimeMessage *msg, size_t depth,
                           const char *prefix)
{
    GMimeObject *body;

    if (mk_mime_headers(w, GMIME_OBJECT(msg), prefix))
        return 1;
    body = g_mime_message_get_mime_part(msg);
    return body ? mk_mime_object(w, body, depth, prefix) : 0;
}

static int mk_mime_message_part(struct mk_mime_walk *w, GMimeMessagePart *mp, size_t depth,
                                const char *prefix)
{
    const char *filename = g_mime_object_get_content_disposition_parameter(GMIME_OBJECT(mp),
                                                                           "filename");
    char *where = mk_mime_loc(prefix, "attached message");
    GMimeMessage *inner;
    int stop = 0;

    if (filename && *filename)
        stop = mk_mime_emit(w->cb, MK_WHERE_ATTACHMENT_NAME, where, filename, strlen(filename));
    if (!stop && depth + 1 > w->limits->max_depth) {
        mk_mime_report(w->cb, where, "depth limit", true);
    } else if (!stop && (inner = g_mime_message_part_get_message(mp)) != NULL) {
        char *inner_prefix = mk_xasprintf("%s > ", where);

        stop = mk_mime_message(w, inner, depth + 1, inner_prefix);
        free(inner_prefix);
    }
    free(where);
    return stop;
}

static int mk_mime_multipart(struct mk_mime_walk *w, GMimeMultipart *mp, size_t depth,
                             const char *prefix)
{
    const char *prologue = g_mime_multipart_get_prologue(mp);
    const char *epilogue = g_mime_multipart_get_epilogue(mp);
    int n = g_mime_multipart_get_count(mp);
    char *where, *loc;
    int stop = 0;

    if (GMIME_IS_MULTIPART_ENCRYPTED(mp)) {
        where = *prefix ? mk_xstrndup(prefix, strlen(prefix) - 3) : mk_xstrdup(w->name);
        mk_mime_report(w->cb, where, "encrypted message", true);
        free(where);
        return 0;
    }
    if (depth + 1 > w->limits->max_depth) {
        where = *prefix ? mk_xstrndup(prefix, strlen(prefix) - 3) : mk_xstrdup(w->name);
        mk_mime_report(w->cb, where, "depth limit", true);
        free(where);
        return 0;
    }
    /* No client shows them, which makes them a place to hide text in. */
    if (prologue) {
        size_t len;
        char *text = mk_mime_to_utf8(NULL, prologue, strlen(prologue), &len);

        loc = mk_mime_loc(prefix, "body (MIME preamble)");
        stop = mk_mime_emit(w->cb, MK_WHERE_BODY, loc, text, len);
        if (n == 0 && len > 0 && !w->malformed) {
            /* a multipart whose boundary never comes: its parts are unread */
            mk_mime_report(w->cb, loc, "malformed", true);
            w->malformed = true;
        }
        free(loc);
        free(text);
    }
    for (int i = 0; i < n && !stop; i++)
        stop = mk_mime_object(w, g_mime_multipart_get_part(mp, i), depth + 1, prefix);
    if (epilogue && !stop) {
        size_t len;
        char *text = mk_mime_to_utf8(NULL, epilogue, strlen(epilogue), &len);

        loc = mk_mime_loc(prefix, "body (MIME epilogue)");
        stop = mk_mime_emit(w->cb, MK_WHERE_BODY, loc, text, len);
        free(loc);
        free(text);
    }
    return stop;
}

static int mk_mime_leaf(struct mk_mime_walk *w, GMimePart *part, size_t depth, const char *prefix)
{
    GMimeObject *obj = GMIME_OBJECT(part);
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    GMimeContentDisposition *cd = g_mime_object_get_content_disposition(obj);
    const char *filename = g_mime_part_get_filename(part);
    const char *charset = ct ? g_mime_content_type_get_parameter(ct, "charset") : NULL;
    char *type = ct ? g_mime_content_type_get_mime_type(ct) : g_strdup("text/plain");
    bool attachment = (filename && *filename)
        || (cd && g_mime_content_disposition_is_attachment(cd));
    bool text = g_ascii_strncasecmp(type, "text/", 5) == 0;
    GByteArray *bytes;
    char *loc;
    int stop = 0;

    if (g_ascii_strcasecmp(type, "application/pkcs7-mime") == 0
        || g_ascii_strcasecmp(type, "application/x-pkcs7-mime") == 0) {
        const char *smime = g_mime_content_type_get_parameter(ct, "smime-type");

        if (smime == NULL || g_ascii_strcasecmp(smime, "enveloped-data") == 0
            || g_ascii_strcasecmp(smime, "authEnveloped-data") == 0) {
            loc = mk_mime_loc(prefix, "body");
            mk_mime_report(w->cb, loc, "encrypted message", true);
            free(loc);
            g_free(type);
            return 0;
        }
    }
    if (!attachment && text) {
        bool html = g_ascii_strcasecmp(type, "text/html") == 0;

        if (html)
            loc = mk_mime_loc(prefix, "body (html)");
        else if (g_ascii_strcasecmp(type, "text/plain") == 0)
            loc = mk_mime_loc(prefix, "body");
        else
            loc = mk_xasprintf("%sbody (%s)", prefix, type);
        bytes = mk_mime_decode(part);
        if (bytes->len > w->limits->max_part) {
            /* the first max_part bytes are still worth a scan */
            mk_mime_report(w->cb, loc, "size limit", true);
            g_byte_array_set_size(bytes, (guint) w->limits->max_part);
        }
        stop = mk_extract_text(w->cb, MK_WHERE_BODY, loc, charset, html, (const char *) bytes->data,
                               bytes->len);
    } else {
        char *claimed;

        if (filename && *filename)
            loc = mk_xasprintf("%sattachment \"%s\"", prefix, filename);
        else
            loc = mk_xasprintf("%sattachment (%s)", prefix, type);
        if (filename && *filename)
            stop = mk_mime_emit(w->cb, MK_WHERE_ATTACHMENT_NAME, loc, filename, strlen(filename));
        if (stop) {
            free(loc);
            g_free(type);
            return stop;
        }
        bytes = mk_mime_decode(part);
        claimed = charset ? mk_xasprintf("%s; charset=\"%s\"", type, charset) : mk_xstrdup(type);
        stop = mk_extract_file(filename, claimed, (const char *) bytes->data, bytes->len,
                               w->limits, depth, loc, w->cb);
        free(claimed);
    }
    g_byte_array_free(bytes, TRUE);
    free(loc);
    g_free(type);
    return stop;
}

static int mk_mime_object(struct mk_mime_walk *w, GMimeObject *obj, size_t depth,
                          const char *prefix)
{
    if (GMIME_IS_MULTIPART(obj))
        return mk_mime_multipart(w, GMIME_MULTIPART(obj), depth, prefix);
    if (GMIME_IS_MESSAGE_PART(obj))
        return mk_mime_message_part(w, GMIME_MESSAGE_PART(obj), depth, prefix);
    if (GMIME_IS_PART(obj))
        return mk_mime_leaf(w, GMIME_PART(obj), depth, prefix);
    return 0;
}

int mk_mime_walk_at(const char *message, size_t len, const struct mk_mime_limits *limits,
                    size_t depth, const char *location, const struct mk_mime_walk_cb *cb)
{
    struct mk_mime_limits defaults;
    struct mk_mime_budget budget;
    struct mk_mime_walk w;
    GMimeStream *stream;
    GMimeParser *parser;
    GMimeMessage *msg;
    char *prefix;
    int rc = 0;

    mk_mime_init();
    if (limits == NULL) {
        mk_mime_limits_default(&defaults);
        limits = &defaults;
    }
    memset(&w, 0, sizeof(w));
    w.limits = limits;
    w.cb = mk_mime_budget_enter(&budget, limits, cb);
    w.name = location ? location : "message";
    /* Options per walk: the warning callback reports to this walk, and headers decode with them. */
    w.options = g_mime_parser_options_new();
    g_mime_parser_options_set_fallback_charsets(w.options, mk_mime_fallback_charsets);
    g_mime_parser_options_set_rfc2047_compliance_mode(w.options, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(w.options, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_address_compliance_mode(w.options, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_warning_callback(w.options, mk_mime_warning, &w);

    stream = g_mime_stream_mem_new_with_buffer(message, len);
    parser = g_mime_parser_new_with_stream(stream);
    g_object_unref(stream);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    msg = g_mime_parser_construct_message(parser, w.options);
    g_object_unref(parser);
    if (msg == NULL) {
        if (!w.malformed)
            mk_mime_report(w.cb, w.name, "malformed", true);
        rc = -1;
    } else {
        prefix = location ? mk_xasprintf("%s > ", location) : mk_xstrdup("");
        (void) mk_mime_message(&w, msg, depth, prefix);
        free(prefix);
        g_object_unref(msg);
    }
    g_mime_parser_options_free(w.options);
    return rc;
}

int mk_mime_walk(const char *message, size_t len, const struct mk_mime_limits *limits,
                 const struct mk_mime_walk_cb *cb)
{
    return mk_mime_walk_at(message, len, limits, 0, NULL, cb);
}
