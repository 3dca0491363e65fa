/*
 * mk_extract - the text of an attachment or a file. See mk_extract.h.
 */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <fnmatch.h>
#include <gmime/gmime.h>
#include <libxml/HTMLparser.h>
#include <libxml/xmlreader.h>
#include <limits.h>
#include <locale.h>
#include <poppler.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mk_extract.h"
#include "mk_mime.h"
#include "mk_util.h"

/* Below this a member is not judged by its expansion: small repetitive files compress very well. */
#define MK_EXTRACT_RATIO_FLOOR	MK_MIME_MIB
#define MK_EXTRACT_BLOCK	65536
/* How much of a file is looked at to tell text from binary. */
#define MK_EXTRACT_SNIFF	8192

enum mk_extract_kind {
    MK_EXTRACT_UNKNOWN,
    MK_EXTRACT_TEXT,
    MK_EXTRACT_HTML,
    MK_EXTRACT_PDF,
    MK_EXTRACT_ZIP,             /* zip, or a document that is one */
    MK_EXTRACT_ARCHIVE,         /* other archives and compressed files */
    MK_EXTRACT_MESSAGE,
    MK_EXTRACT_OLE,             /* legacy Office, or encrypted OOXML */
    MK_EXTRACT_DOCUMENT,        /* claimed to be a document, content not one */
    MK_EXTRACT_UNREADABLE,      /* carries text, in a format nothing here reads */
    MK_EXTRACT_BINARY           /* carries no text we know of */
};

struct mk_extract {
    const struct mk_mime_limits *limits;
    const struct mk_mime_walk_cb *cb;   /* the walk's budget */
};

/* A growing text buffer that stops at max bytes. */
struct mk_extract_buf {
    char *p;
    size_t len, cap, max;
};

static void mk_extract_buf_add(struct mk_extract_buf *b, const char *s, size_t n)
{
    if (n > b->max - b->len)
        n = b->max - b->len;
    if (n == 0)
        return;
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap)
            b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = mk_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* A separator: never two in a row, never first; a line break replaces a lesser one. */
static void mk_extract_buf_sep(struct mk_extract_buf *b, char sep)
{
    char last;

    if (b->len == 0)
        return;
    last = b->p[b->len - 1];
    if (last == '\n' || (last == sep))
        return;
    if ((last == ' ' || last == '\t') && sep == '\n') {
        b->p[b->len - 1] = '\n';
        return;
    }
    if (last == ' ' || last == '\t')
        return;
    mk_extract_buf_add(b, &sep, 1);
}

/* Text with runs of white space made one space, as a browser shows it. */
static void mk_extract_buf_collapse(struct mk_extract_buf *b, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t start = i;

        while (i < n && !isspace((unsigned char) s[i]))
            i++;
        mk_extract_buf_add(b, s + start, i - start);
        if (i < n) {
            while (i < n && isspace((unsigned char) s[i]))
                i++;
            mk_extract_buf_sep(b, ' ');
        }
    }
}

static void mk_extract_buf_free(struct mk_extract_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static bool mk_extract_stopped(const struct mk_extract *x)
{
    return ((const struct mk_mime_budget *) x->cb->arg)->stopped;
}

static bool mk_extract_in(const char *name, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(name, *list) == 0)
            return true;
    return false;
}

static bool mk_extract_has_suffix(const char *name, const char *const *suffixes)
{
    size_t len = name ? strlen(name) : 0;

    for (; *suffixes; suffixes++) {
        size_t n = strlen(*suffixes);

        if (len >= n && strcasecmp(name + len - n, *suffixes) == 0)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------- HTML */

struct mk_extract_html_state {
    struct mk_extract_buf b;
    size_t skip;                /* inside this many script, style, template */
};

static const char *const mk_extract_html_skipped[] = {"script", "style", "template", NULL};
static const char *const mk_extract_html_blocks[] = {
    "p", "div", "br", "li", "ul", "ol", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "hr", "section", "article", "header", "footer", "nav", "aside",
    "address", "dl", "dt", "dd", "title", "form", "fieldset", "figure", "figcaption", "main",
    "center", "caption", "tbody", "thead", "tfoot", "option", NULL};
static const char *const mk_extract_html_cells[] = {"td", "th", NULL};

static void mk_extract_html_start(void *arg, const xmlChar *name, const xmlChar **attrs)
{
    struct mk_extract_html_state *h = arg;

    (void) attrs;
    if (mk_extract_in((const char *) name, mk_extract_html_skipped))
        h->skip++;
    else if (mk_extract_in((const char *) name, mk_extract_html_blocks))
        mk_extract_buf_sep(&h->b, '\n');
}

static void mk_extract_html_end(void *arg, const xmlChar *name)
{
    struct mk_extract_html_state *h = arg;

    if (mk_extract_in((const char *) name, mk_extract_html_skipped)) {
        if (h->skip > 0)
            h->skip--;
    } else if (mk_extract_in((const char *) name, mk_extract_html_blocks)) {
        mk_extract_buf_sep(&h->b, '\n');
    } else if (mk_extract_in((const char *) name, mk_extract_html_cells)) {
        mk_extract_buf_sep(&h->b, '\t');
    }
}

static void mk_extract_html_text(void *arg, const xmlChar *text, int len)
{
    struct mk_extract_html_state *h = arg;

    if (h->skip == 0 && len > 0)
        mk_extract_buf_collapse(&h->b, (const char *) text, (size_t) len);
}

/*
 * SAX, not a tree: a page of many small elements would cost many times
 * its size as nodes, and a deep one nothing more than its name stack,
 * so the parser's depth limit can be lifted (text at depth 300 is still
 * text a recipient sees).
 */
char *mk_extract_html(const char *utf8, size_t len, size_t *out_len)
{
    struct mk_extract_html_state h;
    htmlSAXHandler sax;
    htmlParserCtxtPtr ctxt;

    memset(&h, 0, sizeof(h));
    memset(&sax, 0, sizeof(sax));
    h.b.max = len > (SIZE_MAX - 16) / 2 ? len : 2 * len + 16;
    sax.startElement = mk_extract_html_start;
    sax.endElement = mk_extract_html_end;
    sax.characters = mk_extract_html_text;
    sax.cdataBlock = mk_extract_html_text;
    sax.ignorableWhitespace = mk_extract_html_text;
    ctxt = htmlCreatePushParserCtxt(&sax, &h, NULL, 0, NULL, XML_CHAR_ENCODING_UTF8);
    if (ctxt != NULL) {
        htmlCtxtUseOptions(ctxt, HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR
                           | HTML_PARSE_NOWARNING | XML_PARSE_HUGE);
        /* in pieces: the parser's chunk length is an int */
        while (len > 0) {
            int n = len > INT_MAX / 2 ? INT_MAX / 2 : (int) len;

            if (htmlParseChunk(ctxt, utf8, n, 0) != 0 && ctxt->disableSAX)
                break;
            utf8 += n;
            len -= (size_t) n;
        }
        htmlParseChunk(ctxt, NULL, 0, 1);
        if (ctxt->myDoc)
            xmlFreeDoc(ctxt->myDoc);
        htmlFreeParserCtxt(ctxt);
    }
    *out_len = h.b.len;
    return h.b.p ? h.b.p : mk_xstrdup("");
}

/* Lines end in LF, whatever the wire had: detectors and people see one form. */
static size_t mk_extract_lf(char *text, size_t n)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++)
        if (!(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n'))
            text[out++] = text[i];
    text[out] = '\0';
    return out;
}

int mk_extract_text(const struct mk_mime_walk_cb *cb, enum mk_mime_where where,
                    const char *location, const char *charset, bool html, const char *data,
                    size_t len)
{
    size_t n;
    char *text = mk_mime_to_utf8(charset, data, len, &n);
    int stop;

    n = mk_extract_lf(text, n);
    if (html) {
        char *plain = mk_extract_html(text, n, &n);

        free(text);
        text = plain;
    }
    stop = mk_mime_emit(cb, where, location, text, n);
    free(text);
    return stop;
}

/* ----------------------------------------------------------------- XML */

/*
 * How to read the text out of one kind of XML member. Element names are
 * local names: the formats' namespace prefixes vary between writers.
 */
struct mk_extract_xml {
    const char *const *keep;    /* text only inside these; NULL: all text */
    const char *const *blocks;  /* their end ends a line; NULL with all_blocks */
    const char *const *cells;   /* their end is a tab */
    const char *const *tabs;    /* empty elements that stand for a tab */
    const char *const *lines;   /* ... for a line break */
    const char *const *spaces;  /* ... for a space */
    bool all_blocks;            /* every element ends a line (properties) */
    bool sheet;                 /* worksheet: <v> kept unless a shared string, boolean, error */
};

static const char *const mk_extract_t[] = {"t", NULL};

static const struct mk_extract_xml mk_extract_docx = {
    (const char *const[]) {"t", "delText", NULL}, (const char *const[]) {"p", "tr", NULL},
    (const char *const[]) {"tc", NULL}, (const char *const[]) {"tab", NULL},
    (const char *const[]) {"br", "cr", NULL}, NULL, false, false};
static const struct mk_extract_xml mk_extract_xlsx_strings = {
    mk_extract_t, (const char *const[]) {"si", "comment", NULL}, NULL, NULL, NULL, NULL, false,
    false};
static const struct mk_extract_xml mk_extract_xlsx_sheet = {
    mk_extract_t, (const char *const[]) {"row", NULL}, (const char *const[]) {"c", NULL}, NULL,
    NULL, NULL, false, true};
static const struct mk_extract_xml mk_extract_pptx = {
    (const char *const[]) {"t", "text", NULL}, (const char *const[]) {"p", "cm", NULL},
    (const char *const[]) {"tc", NULL}, NULL, (const char *const[]) {"br", NULL}, NULL, false,
    false};
static const struct mk_extract_xml mk_extract_odf = {
    NULL, (const char *const[]) {"p", "h", "table-row", NULL},
    (const char *const[]) {"table-cell", NULL}, (const char *const[]) {"tab", NULL},
    (const char *const[]) {"line-break", NULL}, (const char *const[]) {"s", NULL}, false, false};
static const struct mk_extract_xml mk_extract_props = {
    NULL, NULL, NULL, NULL, NULL, NULL, true, false};

static void mk_extract_xml_quiet(void *arg, const char *msg, xmlParserSeverities severity,
                                 xmlTextReaderLocatorPtr locator)
{
    (void) arg;
    (void) msg;
    (void) severity;
    (void) locator;
}

/*
 * Append the text of one XML member to out. -1 when it is not
 * well-formed (the text before the fault is kept). No network, no DTD,
 * no entity substitution; libxml2's own bounds on depth and on the size
 * of a text node hold, since XML_PARSE_HUGE is not given.
 */
static int mk_extract_xml_text(const struct mk_extract_xml *rules, const char *data, size_t len,
                               struct mk_extract_buf *out)
{
    xmlTextReaderPtr rd;
    int ret, keep_depth = -1;
    bool cell_value = true;

    if (len > INT_MAX)
        return -1;
    rd = xmlReaderForMemory(data, (int) len, NULL, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING
                            | XML_PARSE_NOCDATA);
    if (rd == NULL)
        return -1;
    xmlTextReaderSetErrorHandler(rd, mk_extract_xml_quiet, NULL);
    while ((ret = xmlTextReaderRead(rd)) == 1) {
        int type = xmlTextReaderNodeType(rd), depth = xmlTextReaderDepth(rd);
        const char *name = (const char *) xmlTextReaderConstLocalName(rd);

        if (type == XML_READER_TYPE_ELEMENT && name) {
            bool empty = xmlTextReaderIsEmptyElement(rd) == 1;

            if (mk_extract_in(name, rules->tabs))
                mk_extract_buf_sep(out, '\t');
            else if (mk_extract_in(name, rules->lines))
                mk_extract_buf_sep(out, '\n');
            else if (mk_extract_in(name, rules->spaces))
                mk_extract_buf_add(out, " ", 1);
            if (rules->sheet && strcmp(name, "c") == 0) {
                xmlChar *t = xmlTextReaderGetAttribute(rd, (const xmlChar *) "t");

                /* s: an index into the shared strings, read from sharedStrings.xml */
                cell_value = t == NULL || !(strcmp((char *) t, "s") == 0
                                            || strcmp((char *) t, "b") == 0
                                            || strcmp((char *) t, "e") == 0);
                xmlFree(t);
            }
            if (keep_depth < 0 && !empty
                && (mk_extract_in(name, rules->keep)
                    || (rules->sheet && cell_value && strcmp(name, "v") == 0)))
                keep_depth = depth;
            if (empty && (rules->all_blocks || mk_extract_in(name, rules->blocks)))
                mk_extract_buf_sep(out, '\n');
        } else if (type == XML_READER_TYPE_END_ELEMENT && name) {
            if (depth == keep_depth)
                keep_depth = -1;
            if (rules->all_blocks || mk_extract_in(name, rules->blocks))
                mk_extract_buf_sep(out, '\n');
            else if (mk_extract_in(name, rules->cells))
                mk_extract_buf_sep(out, '\t');
        } else if (type == XML_READER_TYPE_TEXT || type == XML_READER_TYPE_CDATA
                   || type == XML_READER_TYPE_SIGNIFICANT_WHITESPACE) {
            const char *value = (const char *) xmlTextReaderConstValue(rd);

            if (value && (rules->keep == NULL || keep_depth >= 0)) {
                if (rules->keep == NULL)
                    mk_extract_buf_collapse(out, value, strlen(value));
                else
                    mk_extract_buf_add(out, value, strlen(value));
            }
        }
    }
    xmlFreeTextReader(rd);
    mk_extract_buf_sep(out, '\n');
    return ret < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ archives */

static int mk_extract_any(struct mk_extract *x, const char *name, const char *content_type,
                          const char *data, size_t len, size_t depth, const char *location);

/* libarchive reading from memory, formats chosen by what the content was sniffed as. */
static struct archive *mk_extract_archive_open(const char *data, size_t len,
                                               enum mk_extract_kind kind)
{
    struct archive *a = archive_read_new();

    if (kind == MK_EXTRACT_ZIP) {
        archive_read_support_format_zip(a);
    } else {
        archive_read_support_format_7zip(a);
        archive_read_support_format_rar(a);
        archive_read_support_format_rar5(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_cab(a);
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_bzip2(a);
        archive_read_support_filter_xz(a);
        /* a compressed file that is not an archive is one member */
        archive_read_support_format_raw(a);
    }
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* A member's name in UTF-8, allocated: archives store names in many charsets. */
static char *mk_extract_member_name(struct archive_entry *e)
{
    const char *name = archive_entry_pathname_utf8(e);
    size_t n;

    if (name)
        return mk_xstrdup(name);
    name = archive_entry_pathname(e);
    return name ? mk_mime_to_utf8(NULL, name, strlen(name), &n) : mk_xstrdup("(unreadable name)");
}

static pthread_once_t mk_extract_locale_once = PTHREAD_ONCE_INIT;
static locale_t mk_extract_utf8_locale;

static void mk_extract_locale_init(void)
{
    mk_extract_utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
}

/*
 * libarchive converts member names to the charset of the locale, and a
 * daemon runs in the C locale, where a Chinese name has no spelling:
 * read archives in a UTF-8 locale, for this thread only.
 */
static locale_t mk_extract_locale_enter(void)
{
    pthread_once(&mk_extract_locale_once, mk_extract_locale_init);
    return mk_extract_utf8_locale ? uselocale(mk_extract_utf8_locale) : (locale_t) 0;
}

static void mk_extract_locale_leave(locale_t old)
{
    if (old)
        uselocale(old);
}

struct mk_extract_member {
    char *data;
    size_t len;
};

/*
 * Read the current member whole, within max_part and max_ratio. 0 and
 * the member, or -1 after reporting why not; archive_fatal is set when
 * the archive cannot be read further.
 */
static int mk_extract_member_read(struct mk_extract *x, struct archive *a,
                                  struct archive_entry *e, bool per_member_ratio,
                                  const char *location, struct mk_extract_member *m,
                                  bool *archive_fatal)
{
    la_int64_t start = per_member_ratio ? archive_filter_bytes(a, -1) : 0;
    size_t cap = MK_EXTRACT_BLOCK;

    m->data = NULL;
    m->len = 0;
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0
        && (uint64_t) archive_entry_size(e) > x->limits->max_part) {
        mk_mime_report(x->cb, location, "size limit", true);
        return -1;
    }
    m->data = mk_xmalloc(cap);
    for (;;) {
        la_ssize_t n;
        la_int64_t consumed;

        if (cap - m->len < MK_EXTRACT_BLOCK) {
            cap *= 2;
            m->data = mk_xrealloc(m->data, cap);
        }
        n = archive_read_data(a, m->data + m->len, MK_EXTRACT_BLOCK);
        if (n == 0)
            break;
        if (n < 0) {
            *archive_fatal = n == ARCHIVE_FATAL;
            mk_mime_report(x->cb, location,
                           archive_entry_is_encrypted(e) ? "encrypted archive" : "malformed", true);
            goto fail;
        }
        m->len += (size_t) n;
        if (m->len > x->limits->max_part) {
            mk_mime_report(x->cb, location, "size limit", true);
            goto fail;
        }
        /* A bomb is stopped as it inflates, not after. */
        consumed = archive_filter_bytes(a, -1) - start;
        if (m->len > MK_EXTRACT_RATIO_FLOOR
            && (double) m->len > x->limits->max_ratio * (double) (consumed > 0 ? consumed : 1)) {
            mk_mime_report(x->cb, location, "expansion limit", true);
            goto fail;
        }
    }
    return 0;
fail:
    free(m->data);
    m->data = NULL;
    m->len = 0;
    return -1;
}

/* OOXML and ODF: which members hold text, and how to read them. */
struct mk_extract_part {
    const char *pattern;
    const struct mk_extract_xml *rules;     /* NULL: an embedded file, extracted as one */
};

static const struct mk_extract_part mk_extract_docx_parts[] = {
    {"word/document.xml", &mk_extract_docx}, {"word/header*.xml", &mk_extract_docx},
    {"word/footer*.xml", &mk_extract_docx}, {"word/comments.xml", &mk_extract_docx},
    {"word/footnotes.xml", &mk_extract_docx}, {"word/endnotes.xml", &mk_extract_docx},
    {"docProps/core.xml", &mk_extract_props}, {"word/embeddings/*", NULL}, {NULL, NULL}};
static const struct mk_extract_part mk_extract_xlsx_parts[] = {
    {"xl/sharedStrings.xml", &mk_extract_xlsx_strings},
    {"xl/worksheets/sheet*.xml", &mk_extract_xlsx_sheet},
    {"xl/comments*.xml", &mk_extract_xlsx_strings}, {"docProps/core.xml", &mk_extract_props},
    {"xl/embeddings/*", NULL}, {NULL, NULL}};
static const struct mk_extract_part mk_extract_pptx_parts[] = {
    {"ppt/slides/slide*.xml", &mk_extract_pptx},
    {"ppt/notesSlides/notesSlide*.xml", &mk_extract_pptx},
    {"ppt/comments/*.xml", &mk_extract_pptx}, {"docProps/core.xml", &mk_extract_props},
    {"ppt/embeddings/*", NULL}, {NULL, NULL}};
static const struct mk_extract_part mk_extract_odf_parts[] = {
    {"content.xml", &mk_extract_odf}, {"styles.xml", &mk_extract_odf},
    {"meta.xml", &mk_extract_props}, {NULL, NULL}};

static const struct mk_extract_part *mk_extract_part_of(const struct mk_extract_part *parts,
                                                        const char *name)
{
    for (; parts && parts->pattern; parts++)
        if (fnmatch(parts->pattern, name, FNM_PATHNAME) == 0)
            return parts;
    return NULL;
}

/* What a zip holds: a document (its parts) or files (NULL). */
static const struct mk_extract_part *mk_extract_zip_kind(const char *data, size_t len,
                                                         size_t max_members, bool *odf_encrypted)
{
    const struct mk_extract_part *parts = NULL;
    locale_t old = mk_extract_locale_enter();
    struct archive *a = mk_extract_archive_open(data, len, MK_EXTRACT_ZIP);
    struct archive_entry *e;
    bool content = false, manifest = false;
    size_t count = 0;

    *odf_encrypted = false;
    if (a == NULL) {
        mk_extract_locale_leave(old);
        return NULL;
    }
    while (count++ < max_members && archive_read_next_header(a, &e) >= ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(e);

        if (name == NULL)
            continue;
        if (strcmp(name, "word/document.xml") == 0)
            parts = mk_extract_docx_parts;
        else if (strcmp(name, "xl/workbook.xml") == 0)
            parts = mk_extract_xlsx_parts;
        else if (strcmp(name, "ppt/presentation.xml") == 0)
            parts = mk_extract_pptx_parts;
        else if (strcmp(name, "content.xml") == 0)
            content = true;
        else if (strcmp(name, "META-INF/manifest.xml") == 0) {
            struct mk_extract_buf b = {NULL, 0, 0, 0};
            char block[MK_EXTRACT_BLOCK];
            la_ssize_t n;

            manifest = true;
            /* ODF encrypts members, not the zip, and says so in its (small) manifest */
            b.max = MK_MIME_MIB;
            while (b.len < b.max && (n = archive_read_data(a, block, sizeof(block))) > 0)
                mk_extract_buf_add(&b, block, (size_t) n);
            if (b.p && strstr(b.p, "encryption-data"))
                *odf_encrypted = true;
            mk_extract_buf_free(&b);
        }
        if (parts)
            break;
    }
    archive_read_free(a);
    mk_extract_locale_leave(old);
    if (parts == NULL && content && manifest)
        parts = mk_extract_odf_parts;
    return parts;
}

/* The name a member of a compressed single file gets: "a.txt.gz" holds "a.txt". */
static char *mk_extract_raw_name(const char *outer)
{
    static const char *const suffixes[] = {".gz", ".bz2", ".xz", ".gzip", NULL};
    size_t len = outer ? strlen(outer) : 0;

    for (const char *const *s = suffixes; *s; s++) {
        size_t n = strlen(*s);

        if (len > n && strcasecmp(outer + len - n, *s) == 0)
            return mk_xstrndup(outer, len - n);
    }
    return mk_xstrdup("data");
}

/*
 * Every member of an archive, or the text-bearing parts of a document
 * (parts not NULL), each within the limits; a member over a limit is
 * skipped and the next one read.
 */
static int mk_extract_archive(struct mk_extract *x, const char *name, const char *data, size_t len,
                              enum mk_extract_kind kind, const struct mk_extract_part *parts,
                              size_t depth, const char *location)
{
    locale_t old = mk_extract_locale_enter();
    struct archive *a = mk_extract_archive_open(data, len, kind);
    struct archive_entry *e;
    struct mk_extract_buf text = {NULL, 0, 0, 0};
    bool fatal = false, raw;
    size_t count = 0;
    int r, stop = 0;

    if (a == NULL) {
        mk_mime_report(x->cb, location, "malformed", true);
        mk_extract_locale_leave(old);
        return 0;
    }
    text.max = x->limits->max_part;
    while (!stop && !fatal && (r = archive_read_next_header(a, &e)) != ARCHIVE_EOF) {
        struct mk_extract_member m;
        const struct mk_extract_part *part = NULL;
        char *member, *loc;

        if (r < ARCHIVE_WARN) {
            mk_mime_report(x->cb, location,
                           archive_read_has_encrypted_entries(a) > 0 ? "encrypted archive"
                           : "malformed", true);
            break;
        }
        if (++count > x->limits->max_members) {
            mk_mime_report(x->cb, location, "member limit", true);
            break;
        }
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        raw = archive_format(a) == ARCHIVE_FORMAT_RAW;
        member = raw ? mk_extract_raw_name(name) : mk_extract_member_name(e);
        if (parts && (part = mk_extract_part_of(parts, member)) == NULL) {
            free(member);               /* styles, images, relationships */
            continue;
        }
        loc = mk_xasprintf("%s > \"%s\"", location, member);
        if (parts == NULL && !raw)
            stop = mk_mime_emit(x->cb, MK_WHERE_ATTACHMENT_NAME, loc, member, strlen(member));
        if (stop) {
            /* stopped */
        } else if (archive_entry_is_encrypted(e)) {
            mk_mime_report(x->cb, loc, "encrypted archive", true);
        } else if (mk_extract_member_read(x, a, e, kind == MK_EXTRACT_ZIP, loc, &m, &fatal) == 0) {
            if (part && part->rules) {
                if (mk_extract_xml_text(part->rules, m.data, m.len, &text) < 0)
                    mk_mime_report(x->cb, loc, "malformed", true);
                /* one segment per part: a person is told the document, not its XML */
                if (text.len > 0)
                    stop = mk_mime_emit(x->cb, MK_WHERE_ATTACHMENT, location, text.p, text.len);
                text.len = 0;
            } else {
                stop = mk_extract_any(x, member, NULL, m.data, m.len, depth + 1, loc);
            }
            free(m.data);
        }
        free(loc);
        free(member);
    }
    mk_extract_buf_free(&text);
    archive_read_free(a);
    mk_extract_locale_leave(old);
    return stop || mk_extract_stopped(x);
}

/* ----------------------------------------------------------------- PDF */

static pthread_once_t mk_extract_pdf_once = PTHREAD_ONCE_INIT;

/* Poppler sets up its globals at the first document, unguarded: do it once before threads race. */
static void mk_extract_pdf_init(void)
{
    GBytes *empty = g_bytes_new_static("", 0);
    PopplerDocument *doc = poppler_document_new_from_bytes(empty, NULL, NULL);

    if (doc)
        g_object_unref(doc);
    g_bytes_unref(empty);
}

static int mk_extract_pdf(struct mk_extract *x, const char *data, size_t len, const char *location)
{
    gchar *(*const props[])(PopplerDocument *) = {
        poppler_document_get_title, poppler_document_get_author, poppler_document_get_subject,
        poppler_document_get_keywords};
    GBytes *bytes;
    GError *error = NULL;
    PopplerDocument *doc;
    GString *meta;
    int pages, stop;
    bool has_text = false;

    pthread_once(&mk_extract_pdf_once, mk_extract_pdf_init);
    /* From memory: no temporary file with the data in it. */
    bytes = g_bytes_new_static(data, len);
    doc = poppler_document_new_from_bytes(bytes, NULL, &error);
    g_bytes_unref(bytes);
    if (doc == NULL) {
        bool encrypted = error && g_error_matches(error, POPPLER_ERROR, POPPLER_ERROR_ENCRYPTED);

        mk_mime_report(x->cb, location, encrypted ? "encrypted PDF" : "malformed", true);
        if (error)
            g_error_free(error);
        return 0;
    }
    meta = g_string_new(NULL);
    for (size_t i = 0; i < MK_ARRAY_LEN(props); i++) {
        gchar *value = props[i](doc);

        if (value && *value)
            g_string_append_printf(meta, "%s\n", value);
        g_free(value);
    }
    stop = mk_mime_emit(x->cb, MK_WHERE_ATTACHMENT, location, meta->str, meta->len);
    g_string_free(meta, TRUE);
    pages = poppler_document_get_n_pages(doc);
    /* A page at a time: a long document is never held as one string. */
    for (int i = 0; i < pages && !stop; i++) {
        PopplerPage *page = poppler_document_get_page(doc, i);
        gchar *text;

        if (page == NULL)
            continue;
        text = poppler_page_get_text(page);
        if (text) {
            for (const char *c = text; *c && !has_text; c++)
                has_text = !isspace((unsigned char) *c);
            stop = mk_mime_emit(x->cb, MK_WHERE_ATTACHMENT, location, text, strlen(text));
        }
        g_free(text);
        g_object_unref(page);
    }
    /* a scan: its text is in pictures, which no one here reads */
    if (!stop && pages > 0 && !has_text)
        mk_mime_report(x->cb, location, "no text in PDF", false);
    g_object_unref(doc);
    return stop;
}

/* -------------------------------------------------------------- sniffing */

static bool mk_extract_magic(const unsigned char *d, size_t len, size_t at, const char *magic,
                             size_t n)
{
    return len >= at + n && memcmp(d + at, magic, n) == 0;
}

/* What the content says it is; *type names what carries no text. */
static enum mk_extract_kind mk_extract_sniff(const char *data, size_t len, const char **type)
{
    static const struct {
        size_t at;
        const char *magic;
        size_t n;
        enum mk_extract_kind kind;
        const char *type;
    } magics[] = {
        {0, "PK\3\4", 4, MK_EXTRACT_ZIP, NULL},
        {0, "PK\5\6", 4, MK_EXTRACT_ZIP, NULL},
        {0, "PK\7\10", 4, MK_EXTRACT_ZIP, NULL},
        {0, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8, MK_EXTRACT_OLE, NULL},
        {0, "Rar!\x1A\x07", 6, MK_EXTRACT_ARCHIVE, NULL},
        {0, "7z\xBC\xAF\x27\x1C", 6, MK_EXTRACT_ARCHIVE, NULL},
        {0, "\x1F\x8B", 2, MK_EXTRACT_ARCHIVE, NULL},
        {0, "BZh", 3, MK_EXTRACT_ARCHIVE, NULL},
        {0, "\xFD" "7zXZ\0", 6, MK_EXTRACT_ARCHIVE, NULL},
        {0, "MSCF\0\0\0\0", 8, MK_EXTRACT_ARCHIVE, NULL},
        {257, "ustar", 5, MK_EXTRACT_ARCHIVE, NULL},
        /* Outlook's winmail.dat: the real attachments are inside */
        {0, "\x78\x9F\x3E\x22", 4, MK_EXTRACT_UNREADABLE, "application/ms-tnef"},
        {0, "\x89PNG", 4, MK_EXTRACT_BINARY, "image/png"},
        {0, "\xFF\xD8\xFF", 3, MK_EXTRACT_BINARY, "image/jpeg"},
        {0, "GIF8", 4, MK_EXTRACT_BINARY, "image/gif"},
        {0, "II*\0", 4, MK_EXTRACT_BINARY, "image/tiff"},
        {0, "MM\0*", 4, MK_EXTRACT_BINARY, "image/tiff"},
        {8, "WEBP", 4, MK_EXTRACT_BINARY, "image/webp"},
        {8, "WAVE", 4, MK_EXTRACT_BINARY, "audio/wav"},
        {8, "AVI ", 4, MK_EXTRACT_BINARY, "video/avi"},
        {4, "ftyp", 4, MK_EXTRACT_BINARY, "video/mp4"},
        {0, "ID3", 3, MK_EXTRACT_BINARY, "audio/mpeg"},
        {0, "OggS", 4, MK_EXTRACT_BINARY, "audio/ogg"},
        {0, "fLaC", 4, MK_EXTRACT_BINARY, "audio/flac"},
        {0, "MZ", 2, MK_EXTRACT_BINARY, "application/x-msdownload"},
        {0, "\x7F" "ELF", 4, MK_EXTRACT_BINARY, "application/x-executable"},
        {0, "wOFF", 4, MK_EXTRACT_BINARY, "font/woff"},
        {0, "wOF2", 4, MK_EXTRACT_BINARY, "font/woff2"},
        {0, "{\\rtf", 5, MK_EXTRACT_TEXT, NULL},
    };
    const unsigned char *d = (const unsigned char *) data;
    size_t head = len < 1024 ? len : 1024;

    *type = NULL;
    for (size_t i = 0; i < MK_ARRAY_LEN(magics); i++) {
        if (mk_extract_magic(d, len, magics[i].at, magics[i].magic, magics[i].n)) {
            *type = magics[i].type;
            return magics[i].kind;
        }
    }
    /* the header may follow some junk, which readers allow */
    if (memmem(data, head, "%PDF-", 5))
        return MK_EXTRACT_PDF;
    return MK_EXTRACT_UNKNOWN;
}

/* A self-extracting archive: a program with a zip at its end, where the zip's directory ends. */
static bool mk_extract_has_zip_end(const char *data, size_t len)
{
    size_t tail = len < 65536 + 22 ? len : 65536 + 22;

    return memmem(data + len - tail, tail, "PK\5\6", 4) != NULL;
}

/* Content that reads as text: no NUL (but for UTF-16), few control characters. */
static bool mk_extract_looks_text(const char *data, size_t len)
{
    const unsigned char *d = (const unsigned char *) data;
    size_t n = len < MK_EXTRACT_SNIFF ? len : MK_EXTRACT_SNIFF, controls = 0;

    if (len >= 2 && ((d[0] == 0xFF && d[1] == 0xFE) || (d[0] == 0xFE && d[1] == 0xFF)))
        return true;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == 0)
            return false;
        /* ESC starts ISO-2022-JP shifts */
        if (d[i] < 0x20 && !strchr("\t\n\r\f\v\x1B", d[i]))
            controls++;
    }
    return controls * 100 <= n;
}

static bool mk_extract_looks_html(const char *data, size_t len)
{
    size_t i = 0;

    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len && isspace((unsigned char) data[i]))
        i++;
    return (len - i >= 14 && strncasecmp(data + i, "<!doctype html", 14) == 0)
        || (len - i >= 5 && strncasecmp(data + i, "<html", 5) == 0);
}

/* What the claimed type and the name say, when the content does not. */
static enum mk_extract_kind mk_extract_claimed(const char *type, const char *name)
{
    static const char *const html[] = {".html", ".htm", ".xhtml", NULL};
    static const char *const text[] = {".txt", ".csv", ".tsv", ".text", ".log", ".md", ".json",
                                       ".xml", ".ics", ".vcf", ".rtf", ".ini", ".conf", NULL};
    static const char *const documents[] = {
        ".pdf", ".docx", ".xlsx", ".pptx", ".docm", ".xlsm", ".pptm", ".odt", ".ods", ".odp",
        ".zip", ".7z", ".rar", ".gz", ".tgz", ".doc", ".xls", ".ppt", NULL};
    static const char *const messages[] = {".eml", NULL};

    if (type) {
        if (strcasecmp(type, "message/rfc822") == 0)
            return MK_EXTRACT_MESSAGE;
        if (strcasecmp(type, "text/html") == 0 || strcasecmp(type, "application/xhtml+xml") == 0)
            return MK_EXTRACT_HTML;
        if (strncasecmp(type, "text/", 5) == 0 || strcasecmp(type, "application/rtf") == 0
            || strcasecmp(type, "application/json") == 0 || strcasecmp(type, "application/xml") == 0
            || strcasecmp(type, "application/csv") == 0)
            return MK_EXTRACT_TEXT;
        if (strcasecmp(type, "application/pdf") == 0 || strcasecmp(type, "application/zip") == 0
            || strcasecmp(type, "application/msword") == 0
            || strncasecmp(type, "application/vnd.openxmlformats-", 31) == 0
            || strncasecmp(type, "application/vnd.oasis.opendocument.", 35) == 0
            || strncasecmp(type, "application/vnd.ms-", 19) == 0)
            return MK_EXTRACT_DOCUMENT;
    }
    if (name) {
        if (mk_extract_has_suffix(name, messages))
            return MK_EXTRACT_MESSAGE;
        if (mk_extract_has_suffix(name, html))
            return MK_EXTRACT_HTML;
        if (mk_extract_has_suffix(name, text))
            return MK_EXTRACT_TEXT;
        if (mk_extract_has_suffix(name, documents))
            return MK_EXTRACT_DOCUMENT;
    }
    return MK_EXTRACT_UNKNOWN;
}

/* A legacy Office file, or an OOXML one encrypted with a password, which Office stores as OLE2. */
static void mk_extract_ole(struct mk_extract *x, const char *name, const char *type,
                           const char *data, size_t len, const char *location)
{
    static const char encrypted[] = "E\0n\0c\0r\0y\0p\0t\0e\0d\0P\0a\0c\0k\0a\0g\0e\0";
    static const struct {
        const char *suffix, *type;
    } legacy[] = {
        {".doc", "application/msword"}, {".dot", "application/msword"},
        {".xls", "application/vnd.ms-excel"}, {".ppt", "application/vnd.ms-powerpoint"},
        {".msg", "application/vnd.ms-outlook"},
    };
    const char *what = NULL;
    char *reason;

    if (memmem(data, len, encrypted, sizeof(encrypted) - 1)) {
        mk_mime_report(x->cb, location, "encrypted document", true);
        return;
    }
    for (size_t i = 0; name && i < MK_ARRAY_LEN(legacy) && !what; i++) {
        const char *const one[] = {legacy[i].suffix, NULL};

        if (mk_extract_has_suffix(name, one))
            what = legacy[i].type;
    }
    if (what == NULL)
        what = type && strncasecmp(type, "application/", 12) == 0 ? type
            : "application/x-ole-storage";
    reason = mk_xasprintf("unsupported document %s", what);
    mk_mime_report(x->cb, location, reason, true);
    free(reason);
}

static int mk_extract_any(struct mk_extract *x, const char *name, const char *content_type,
                          const char *data, size_t len, size_t depth, const char *location)
{
    GMimeContentType *ct = content_type ? g_mime_content_type_parse(NULL, content_type) : NULL;
    char *type = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
    const char *charset = ct ? g_mime_content_type_get_parameter(ct, "charset") : NULL;
    const char *binary_type = NULL;
    enum mk_extract_kind kind = mk_extract_sniff(data, len, &binary_type);
    bool container;
    int stop = 0;

    if (kind == MK_EXTRACT_BINARY && mk_extract_has_zip_end(data, len))
        kind = MK_EXTRACT_ZIP;
    container = kind == MK_EXTRACT_ZIP || kind == MK_EXTRACT_ARCHIVE;

    if (kind == MK_EXTRACT_UNKNOWN) {
        kind = mk_extract_claimed(type, name);
        if (kind == MK_EXTRACT_MESSAGE)
            container = true;
        else if ((kind == MK_EXTRACT_UNKNOWN || kind == MK_EXTRACT_DOCUMENT)
                 && mk_extract_looks_text(data, len))
            /* a text file renamed is still read */
            kind = MK_EXTRACT_TEXT;
        if (kind == MK_EXTRACT_TEXT && mk_extract_looks_html(data, len))
            kind = MK_EXTRACT_HTML;
    }
    if (container && depth + 1 > x->limits->max_depth) {
        mk_mime_report(x->cb, location, "depth limit", true);
        goto done;
    }
    if (len > x->limits->max_part) {
        mk_mime_report(x->cb, location, "size limit", true);
        /* the first max_part bytes of a text are still worth a scan; of anything else, not */
        if (kind != MK_EXTRACT_TEXT && kind != MK_EXTRACT_HTML)
            goto done;
        len = x->limits->max_part;
    }
    switch (kind) {
    case MK_EXTRACT_TEXT:
    case MK_EXTRACT_HTML:
        stop = mk_extract_text(x->cb, MK_WHERE_ATTACHMENT, location, charset,
                               kind == MK_EXTRACT_HTML, data, len);
        break;
    case MK_EXTRACT_PDF:
        stop = mk_extract_pdf(x, data, len, location);
        break;
    case MK_EXTRACT_ZIP: {
        bool odf_encrypted;
        const struct mk_extract_part *parts = mk_extract_zip_kind(data, len,
                                                                  x->limits->max_members,
                                                                  &odf_encrypted);

        if (odf_encrypted)
            mk_mime_report(x->cb, location, "encrypted document", true);
        else
            stop = mk_extract_archive(x, name, data, len, kind, parts, depth, location);
        break;
    }
    case MK_EXTRACT_ARCHIVE:
        stop = mk_extract_archive(x, name, data, len, kind, NULL, depth, location);
        break;
    case MK_EXTRACT_MESSAGE:
        (void) mk_mime_walk_at(data, len, x->limits, depth + 1, location, x->cb);
        stop = mk_extract_stopped(x);
        break;
    case MK_EXTRACT_OLE:
        mk_extract_ole(x, name, type, data, len, location);
        break;
    case MK_EXTRACT_DOCUMENT:
        /* said to be a document, and neither one nor text */
        mk_mime_report(x->cb, location, "malformed", true);
        break;
    case MK_EXTRACT_UNREADABLE: {
        char *reason = mk_xasprintf("unsupported document %s", binary_type);

        mk_mime_report(x->cb, location, reason, true);
        free(reason);
        break;
    }
    case MK_EXTRACT_BINARY:
    case MK_EXTRACT_UNKNOWN: {
        char *reason = mk_xasprintf("unsupported type %s",
                                    binary_type ? binary_type
                                    : type ? type : "application/octet-stream");

        mk_mime_report(x->cb, location, reason, false);
        free(reason);
        break;
    }
    }
done:
    g_free(type);
    if (ct)
        g_object_unref(ct);
    return stop || mk_extract_stopped(x);
}

int mk_extract_file(const char *name, const char *content_type, const char *data, size_t len,
                    const struct mk_mime_limits *limits, size_t depth, const char *location,
                    const struct mk_mime_walk_cb *cb)
{
    struct mk_mime_limits defaults;
    struct mk_mime_budget budget;
    struct mk_extract x;
    char *own = NULL;
    int stop;

    mk_mime_init();
    if (limits == NULL) {
        mk_mime_limits_default(&defaults);
        limits = &defaults;
    }
    x.limits = limits;
    x.cb = mk_mime_budget_enter(&budget, limits, cb);
    if (location == NULL)
        location = own = name ? mk_xasprintf("\"%s\"", name) : mk_xstrdup("file");
    if (depth > limits->max_depth) {
        mk_mime_report(x.cb, location, "depth limit", true);
        stop = 0;
    } else {
        stop = mk_extract_any(&x, name, content_type, data ? data : "", data ? len : 0, depth,
                              location);
    }
    free(own);
    return stop;
}
