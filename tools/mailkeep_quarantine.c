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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include "mailkeep.h"
#include "mk_config.h"
#include "mk_queue.h"
#include "mk_run.h"
#include "mk_util.h"

/* The messages in the hold queue (and the others, which are skipped). */
static int mailkeep_queue(const char *pfdir, struct mk_queue_msg **msgs, size_t *n)
{
    char *error = NULL;

    if (mk_queue_list(pfdir, msgs, n, &error) < 0) {
        fprintf(stderr, "mailkeep quarantine: %s\n", error);
        free(error);
        return -1;
    }
    return 0;
}

/* The X-Mailkeep-Quarantine header(s) of a held message: why it is held. */
static char *mailkeep_reason(const char *pfdir, const char *id)
{
    char *reason = mk_queue_header(pfdir, id, "X-Mailkeep-Quarantine");

    return reason ? reason : mk_xstrdup("(held, not by Mailkeep)");
}

static int mailkeep_quarantine_list(const char *pfdir)
{
    struct mk_queue_msg *msgs;
    size_t n, held = 0;

    if (mailkeep_queue(pfdir, &msgs, &n) < 0)
        return EX_UNAVAILABLE;
    for (size_t i = 0; i < n; i++) {
        const struct mk_queue_msg *m = &msgs[i];
        char when[32], *reason, *list = mk_xstrdup("");
        time_t t = (time_t) m->arrival;
        struct tm tm;

        if (strcmp(m->queue, "hold") != 0) {
            free(list);
            continue;
        }
        held++;
        for (size_t k = 0; k < m->nrcpts; k++) {
            char *next = mk_xasprintf("%s%s%s", list, *list ? ", " : "", m->rcpts[k].address);

            free(list);
            list = next;
        }
        reason = mailkeep_reason(pfdir, m->id);
        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
        printf("%s  %s  %lld bytes  from %s to %s\n    %s\n", m->id, when, m->size,
               *m->sender ? m->sender : "<>", list, reason);
        free(reason);
        free(list);
    }
    if (held == 0)
        printf("the quarantine is empty\n");
    mk_queue_free(msgs, n);
    return 0;
}

int mailkeep_quarantine(const char *config_path, int argc, char **argv)
{
    const char *usage = "usage: mailkeep quarantine list | show ID | release ID... | delete ID...\n";
    struct mk_queue_msg *msgs;
    const struct mk_queue_msg *m;
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
    if (mailkeep_queue(pfdir, &msgs, &n) < 0) {
        free(pfdir);
        return EX_UNAVAILABLE;
    }
    for (int i = 1; i < argc; i++) {
        const char *id = argv[i];

        if (!mk_queue_id_valid(id) || (m = mk_queue_find(msgs, n, id)) == NULL
            || strcmp(m->queue, "hold") != 0) {
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
            char *error = NULL;
            int done = release ? mk_queue_release(pfdir, id, &error)
                : mk_queue_delete(pfdir, id, "hold", &error);

            if (done <= 0) {
                fprintf(stderr, "mailkeep quarantine: %s: %s\n", id,
                        done < 0 ? error : "no longer in the quarantine");
                free(error);
                rc = 1;
                continue;
            }
            printf("%s: %s\n", id, release ? "released" : "deleted");
        }
    }
    mk_queue_free(msgs, n);
    free(pfdir);
    return rc;
}
