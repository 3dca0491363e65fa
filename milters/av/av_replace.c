/*
 * av_replace - cut infected parts out of a message. See av_replace.h.
 */
#include "config.h"

#include <gmime/gmime.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "av_replace.h"
#include "mk_util.h"

#define AV_REPLACE_DEPTH 16

static pthread_once_t av_gmime_once = PTHREAD_ONCE_INIT;

static void av_gmime_init(void)
{
    g_mime_init();
}

void av_replace_init(void)
{
    pthread_once(&av_gmime_once, av_gmime_init);
}

struct av_walk {
    const struct av_engine *engine;
    char *what;
    size_t parts;
    int error;
};

/* The decoded content of a leaf, or an attached message as a whole. */
static GByteArray *av_part_bytes(GMimeObject *obj)
{
    GMimeStream *mem = g_mime_stream_mem_new();
    GByteArray *bytes = NULL;
    int ok = -1;

    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

        if (inner)
            ok = g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, mem) < 0 ? -1 : 0;
    } else if (GMIME_IS_PART(obj)) {
        GMimeDataWrapper *content = g_mime_part_get_content(GMIME_PART(obj));

        ok = content && g_mime_data_wrapper_write_to_stream(content, mem) < 0 ? -1 : 0;
    }
    if (ok == 0) {
        GByteArray *owned = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));

        bytes = g_byte_array_new();
        g_byte_array_append(bytes, owned->data, owned->len);
    }
    g_object_unref(mem);
    return bytes;
}

static const char *av_part_name(GMimeObject *obj)
{
    const char *name = GMIME_IS_PART(obj) ? g_mime_part_get_filename(GMIME_PART(obj)) : NULL;

    if (name == NULL && GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

        name = inner ? g_mime_message_get_subject(inner) : NULL;
    }
    return name ? name : "(unnamed)";
}

static GMimeObject *av_notice_part(const char *name, const char *virus)
{
    GMimeTextPart *part = g_mime_text_part_new_with_subtype("plain");
    char *text = mk_xasprintf(
        "The attachment \"%s\" contained a virus (%s)\r\n"
        "and was removed by the mail system.\r\n"
        "\r\n"
        "附件「%s」含有病毒（%s），已由郵件系統移除。\r\n",
        name, virus, name, virus);

    g_mime_text_part_set_text(part, text);
    g_mime_object_set_disposition(GMIME_OBJECT(part), "inline");
    g_mime_part_set_filename(GMIME_PART(part), "virus-removed.txt");
    free(text);
    return GMIME_OBJECT(part);
}

static void av_walk_multipart(struct av_walk *w, GMimeMultipart *mp, int depth)
{
    int count = g_mime_multipart_get_count(mp);

    for (int i = 0; i < count && !w->error; i++) {
        GMimeObject *child = g_mime_multipart_get_part(mp, i);
        GByteArray *bytes;
        const char *virus = NULL;
        enum av_result r;

        if (GMIME_IS_MULTIPART(child)) {
            if (depth < AV_REPLACE_DEPTH)
                av_walk_multipart(w, GMIME_MULTIPART(child), depth + 1);
            continue;
        }
        if ((bytes = av_part_bytes(child)) == NULL) {
            w->error = 1;
            return;
        }
        r = av_engine_scan_memory(w->engine, (const char *) bytes->data, bytes->len, &virus);
        g_byte_array_unref(bytes);
        if (r == AV_ERROR) {
            w->error = 1;
            return;
        }
        if (r == AV_INFECTED) {
            const char *name = av_part_name(child);
            char *next = mk_xasprintf("%s%s%s in \"%s\"", w->what, *w->what ? ", " : "", virus,
                                      name);
            GMimeObject *notice = av_notice_part(name, virus);
            GMimeObject *old = g_mime_multipart_replace(mp, i, notice);

            free(w->what);
            w->what = next;
            w->parts++;
            g_object_unref(notice);
            if (old)
                g_object_unref(old);
        }
    }
}

/* Where the header block of a serialized object ends (after the blank line). */
static size_t av_header_end(const char *data, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (data[i] == '\n' && data[i + 1] == '\n')
            return i + 2;
        if (i + 3 < len && memcmp(data + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    }
    return len;
}

int av_replace(const struct av_engine *engine, const char *message, size_t len,
               struct av_replaced *out)
{
    GMimeStream *in, *mem, *filtered;
    GMimeFilter *crlf;
    GMimeParser *parser;
    GMimeMessage *msg;
    GMimeObject *root;
    GMimeFormatOptions *opts;
    GByteArray *bytes;
    struct av_walk w = {engine, mk_xstrdup(""), 0, 0};
    int rc = 0;

    memset(out, 0, sizeof(*out));
    av_replace_init();
    in = g_mime_stream_mem_new_with_buffer(message, len);
    parser = g_mime_parser_new_with_stream(in);
    msg = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    g_object_unref(in);
    if (msg == NULL || (root = g_mime_message_get_mime_part(msg)) == NULL
        || !GMIME_IS_MULTIPART(root)) {
        if (msg)
            g_object_unref(msg);
        free(w.what);
        return 0;
    }
    av_walk_multipart(&w, GMIME_MULTIPART(root), 0);
    if (w.error || w.parts == 0) {
        g_object_unref(msg);
        free(w.what);
        return w.error ? -1 : 0;
    }
    mem = g_mime_stream_mem_new();
    filtered = g_mime_stream_filter_new(mem);
    crlf = g_mime_filter_unix2dos_new(FALSE);
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), crlf);
    g_object_unref(crlf);
    opts = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(opts, GMIME_NEWLINE_FORMAT_DOS);
    if (g_mime_object_write_to_stream(root, opts, filtered) >= 0
        && g_mime_stream_flush(filtered) == 0) {
        size_t skip, head = av_header_end(message, len);
        char *check;
        const char *virus = NULL;
        enum av_result r;

        bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
        skip = av_header_end((const char *) bytes->data, bytes->len);
        out->body_len = bytes->len - skip;
        out->body = mk_xmalloc(out->body_len + 1);
        memcpy(out->body, bytes->data + skip, out->body_len);
        out->body[out->body_len] = '\0';
        /* What goes out must itself scan clean: the original headers, the new body. */
        check = mk_xmalloc(head + out->body_len);
        memcpy(check, message, head);
        memcpy(check + head, out->body, out->body_len);
        r = av_engine_scan_memory(engine, check, head + out->body_len, &virus);
        free(check);
        rc = r == AV_CLEAN ? 1 : r == AV_ERROR ? -1 : 0;
    } else {
        rc = -1;
    }
    g_mime_format_options_free(opts);
    g_object_unref(filtered);
    g_object_unref(mem);
    g_object_unref(msg);
    if (rc == 1) {
        out->what = w.what;
        out->parts = w.parts;
    } else {
        free(w.what);
        free(out->body);
        out->body = NULL;
        out->body_len = 0;
    }
    return rc;
}

void av_replaced_free(struct av_replaced *out)
{
    free(out->body);
    free(out->what);
    memset(out, 0, sizeof(*out));
}
