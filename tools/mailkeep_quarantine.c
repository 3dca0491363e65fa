/*
 * mailkeep quarantine - the mail that mailkeep-dlp and mailkeep-av hold.
 *
 * Held mail lives in Postfix's hold queue (smfi_quarantine), so this is
 * a view of that queue: postqueue -j lists it, postcat shows a message
 * and the X-Mailkeep-Quarantine header that says why it is held,
 * postsuper releases (-H) or deletes (-d) it. [quarantine]
 * postfix_config names the Postfix instance.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include "mailkeep.h"
#include "mk_config.h"
#include "mk_run.h"
#include "mk_util.h"

struct mailkeep_held {
    char *id;
    long long arrival;
    long long size;
    char *sender;
    char *recipients;
};

/* Queue IDs are [0-9A-Za-z]: anything else never reaches postsuper. */
static bool mailkeep_queue_id_ok(const char *id)
{
    if (*id == '\0' || strlen(id) > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
            return false;
    return true;
}

/* The messages in the hold queue, from postqueue -j (one JSON object per line). */
static int mailkeep_held(const char *pfdir, struct mailkeep_held **held, size_t *n)
{
    char *argv[] = {"postqueue", "-c", (char *) pfdir, "-j", NULL};
    char *out, *cursor, *line;
    int rc = mk_run(argv, NULL, 0, &out, NULL);

    *held = NULL;
    *n = 0;
    if (rc != 0) {
        fprintf(stderr, "mailkeep quarantine: postqueue -c %s -j failed (%d)\n", pfdir, rc);
        if (rc >= 0)
            free(out);
        return -1;
    }
    cursor = out;
    while ((line = mk_str_next_line(&cursor)) != NULL) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err), *rcpts;
        const char *queue = NULL, *id = NULL, *sender = "";
        json_int_t arrival = 0, size = 0;
        char *list = mk_xstrdup("");
        size_t i;
        json_t *r;

        if (j == NULL)
            continue;
        if (json_unpack(j, "{s:s, s:s, s?:s, s?:I, s?:I, s?:o}", "queue_name", &queue, "queue_id",
                        &id, "sender", &sender, "arrival_time", &arrival, "message_size", &size,
                        "recipients", &rcpts) < 0 || strcmp(queue, "hold") != 0) {
            json_decref(j);
            free(list);
            continue;
        }
        json_array_foreach(rcpts, i, r) {
            const char *addr = json_string_value(json_object_get(r, "address"));
            char *next = mk_xasprintf("%s%s%s", list, *list ? ", " : "", addr ? addr : "?");

            free(list);
            list = next;
        }
        *held = mk_xrealloc(*held, (*n + 1) * sizeof(**held));
        (*held)[*n] = (struct mailkeep_held) {mk_xstrdup(id), arrival, size,
                                              mk_xstrdup(*sender ? sender : "<>"), list};
        (*n)++;
        json_decref(j);
    }
    free(out);
    return 0;
}

static void mailkeep_held_free(struct mailkeep_held *held, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(held[i].id);
        free(held[i].sender);
        free(held[i].recipients);
    }
    free(held);
}

/* The X-Mailkeep-Quarantine header(s) of a held message: why it is held. */
static char *mailkeep_reason(const char *pfdir, const char *id)
{
    char *argv[] = {"postcat", "-c", (char *) pfdir, "-h", "-q", (char *) id, NULL};
    char *out, *cursor, *line, *reason = mk_xstrdup("");

    if (mk_run(argv, NULL, 0, &out, NULL) != 0) {
        free(reason);
        return mk_xstrdup("(cannot read the message)");
    }
    cursor = out;
    while ((line = mk_str_next_line(&cursor)) != NULL) {
        if (strncasecmp(line, "X-Mailkeep-Quarantine:", 22) == 0) {
            char *next = mk_xasprintf("%s%s%s", reason, *reason ? "; " : "", mk_str_trim(line + 22));

            free(reason);
            reason = next;
        }
    }
    free(out);
    if (*reason == '\0') {
        free(reason);
        return mk_xstrdup("(held, not by Mailkeep)");
    }
    return reason;
}

static int mailkeep_quarantine_list(const char *pfdir)
{
    struct mailkeep_held *held;
    size_t n;

    if (mailkeep_held(pfdir, &held, &n) < 0)
        return EX_UNAVAILABLE;
    for (size_t i = 0; i < n; i++) {
        char when[32], *reason = mailkeep_reason(pfdir, held[i].id);
        time_t t = (time_t) held[i].arrival;
        struct tm tm;

        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
        printf("%s  %s  %lld bytes  from %s to %s\n    %s\n", held[i].id, when, held[i].size,
               held[i].sender, held[i].recipients, reason);
        free(reason);
    }
    if (n == 0)
        printf("the quarantine is empty\n");
    mailkeep_held_free(held, n);
    return 0;
}

static bool mailkeep_is_held(const struct mailkeep_held *held, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(held[i].id, id) == 0)
            return true;
    return false;
}

int mailkeep_quarantine(const char *config_path, int argc, char **argv)
{
    const char *usage = "usage: mailkeep quarantine list | show ID | release ID... | delete ID...\n";
    struct mailkeep_held *held;
    struct mk_config *cfg;
    char *pfdir;
    size_t n;
    int rc = 0;

    if (argc < 1 || (strcmp(argv[0], "list") == 0 ? argc != 1
                     : strcmp(argv[0], "show") == 0 ? argc != 2
                     : (strcmp(argv[0], "release") != 0 && strcmp(argv[0], "delete") != 0) || argc < 2)) {
        fputs(usage, stderr);
        return EX_USAGE;
    }
    if ((cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    pfdir = mk_xstrdup(mk_config_str(cfg, "quarantine", "postfix_config"));
    mk_config_unref(cfg);
    if (strcmp(argv[0], "list") == 0) {
        rc = mailkeep_quarantine_list(pfdir);
        free(pfdir);
        return rc;
    }
    if (mailkeep_held(pfdir, &held, &n) < 0) {
        free(pfdir);
        return EX_UNAVAILABLE;
    }
    for (int i = 1; i < argc; i++) {
        const char *id = argv[i];

        if (!mailkeep_queue_id_ok(id) || !mailkeep_is_held(held, n, id)) {
            fprintf(stderr, "mailkeep quarantine: %s: no such message in the quarantine\n", id);
            rc = 1;
            continue;
        }
        if (strcmp(argv[0], "show") == 0) {
            char *cat[] = {"postcat", "-c", pfdir, "-e", "-h", "-q", (char *) id, NULL};
            char *out, *reason = mailkeep_reason(pfdir, id);

            printf("held because: %s\n\n", reason);
            free(reason);
            if (mk_run(cat, NULL, 0, &out, NULL) == 0) {
                fputs(out, stdout);
                free(out);
            }
        } else {
            bool release = strcmp(argv[0], "release") == 0;
            char *super[] = {"postsuper", "-c", pfdir, release ? "-H" : "-d", (char *) id,
                             release ? NULL : "hold", NULL};
            char *flush[] = {"postqueue", "-c", pfdir, "-i", (char *) id, NULL};

            if (mk_run(super, NULL, 0, NULL, NULL) != 0) {
                fprintf(stderr, "mailkeep quarantine: postsuper failed for %s\n", id);
                rc = 1;
                continue;
            }
            /* Released mail goes out now, not at the next queue run. */
            if (release)
                (void) mk_run(flush, NULL, 0, NULL, NULL);
            printf("%s: %s\n", id, release ? "released" : "deleted");
        }
    }
    mailkeep_held_free(held, n);
    free(pfdir);
    return rc;
}
