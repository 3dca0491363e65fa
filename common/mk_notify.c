/*
 * mk_notify - notices about a message. See mk_notify.h.
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mk_notify.h"
#include "mk_run.h"
#include "mk_util.h"

/* RFC 2047 B-encoding in words short enough for a 78-column line. */
static char *mk_notify_encode_subject(const char *s)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    bool ascii = true;
    size_t len = strlen(s), i = 0;
    char *out;

    for (const unsigned char *p = (const unsigned char *) s; *p; p++)
        if (*p >= 0x80 || *p < 0x20)
            ascii = false;
    if (ascii)
        return mk_xstrdup(s);
    out = mk_xstrdup("");
    while (i < len) {
        /* up to 36 bytes a word, never splitting a UTF-8 sequence */
        size_t n = len - i < 36 ? len - i : 36, o = 0;
        char word[64];

        while (n < len - i && n > 0 && ((unsigned char) s[i + n] & 0xC0) == 0x80)
            n--;
        for (size_t k = 0; k < n; k += 3) {
            unsigned v = (unsigned char) s[i + k] << 16;

            if (k + 1 < n)
                v |= (unsigned char) s[i + k + 1] << 8;
            if (k + 2 < n)
                v |= (unsigned char) s[i + k + 2];
            word[o++] = b64[(v >> 18) & 63];
            word[o++] = b64[(v >> 12) & 63];
            word[o++] = k + 1 < n ? b64[(v >> 6) & 63] : '=';
            word[o++] = k + 2 < n ? b64[v & 63] : '=';
        }
        word[o] = '\0';
        char *next = mk_xasprintf("%s%s=?UTF-8?B?%s?=", out, *out ? "\n " : "", word);

        free(out);
        out = next;
        i += n;
    }
    return out;
}

char *mk_notify_compose(const char *from, const char *to, const char *subject, const char *body)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    char *subj = mk_notify_encode_subject(subject), *text;

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    text = mk_xasprintf("From: %s\n"
                        "To: %s\n"
                        "Subject: %s\n"
                        "Date: %s\n"
                        "Auto-Submitted: auto-generated\n"
                        "MIME-Version: 1.0\n"
                        "Content-Type: text/plain; charset=utf-8\n"
                        "Content-Transfer-Encoding: 8bit\n"
                        "\n"
                        "%s",
                        from, to, subj, date, body);
    free(subj);
    return text;
}

int mk_notify_send(char *const *command, const char *text)
{
    size_t argc = 0;
    char **argv;
    int rc;

    while (command && command[argc])
        argc++;
    if (argc == 0)
        return -1;
    argv = mk_xcalloc(argc + 3, sizeof(char *));
    for (size_t i = 0; i < argc; i++)
        argv[i] = command[i];
    argv[argc] = "-f";
    argv[argc + 1] = "<>";
    rc = mk_run(argv, text, strlen(text), NULL, NULL);
    free(argv);
    return rc;
}

char *mk_notify_join(char *const *addresses, size_t count)
{
    char *out = mk_xstrdup("");

    for (size_t i = 0; i < count; i++) {
        char *next = mk_xasprintf("%s%s%s", out, i ? ", " : "",
                                  *addresses[i] ? addresses[i] : "<>");

        free(out);
        out = next;
    }
    return out;
}
