/*
 * mk_queue - a Postfix instance's mail queue, through postqueue, postsuper
 * and postcat. See mk_queue.h.
 */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mk_queue.h"
#include "mk_run.h"
#include "mk_util.h"

bool mk_queue_id_valid(const char *id)
{
    size_t len = strlen(id);

    /* "ALL" means every message to postsuper -d and -H */
    if (len == 0 || len > 64 || strcmp(id, "ALL") == 0)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
            return false;
    return true;
}

static const char *mk_queue_json_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static long long mk_queue_json_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return json_is_integer(v) ? (long long) json_integer_value(v) : 0;
}

int mk_queue_parse(const char *text, struct mk_queue_msg **msgs, size_t *n)
{
    const char *line = text, *nl;
    int skipped = 0;

    *msgs = NULL;
    *n = 0;
    for (; *line; line = nl ? nl + 1 : line + strlen(line)) {
        size_t len;
        json_t *j, *rcpts;
        const char *queue, *id, *sender;
        struct mk_queue_msg *m;

        nl = strchr(line, '\n');
        len = nl ? (size_t) (nl - line) : strlen(line);
        if (len == 0)
            continue;
        j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
        queue = mk_queue_json_str(j, "queue_name");
        id = mk_queue_json_str(j, "queue_id");
        if (!json_is_object(j) || queue == NULL || id == NULL || !mk_queue_id_valid(id)) {
            skipped++;
            json_decref(j);
            continue;
        }
        *msgs = mk_xrealloc(*msgs, (*n + 1) * sizeof(**msgs));
        m = &(*msgs)[(*n)++];
        memset(m, 0, sizeof(*m));
        m->id = mk_xstrdup(id);
        m->queue = mk_xstrdup(queue);
        sender = mk_queue_json_str(j, "sender");
        m->sender = mk_xstrdup(sender ? sender : "");
        m->arrival = mk_queue_json_int(j, "arrival_time");
        m->size = mk_queue_json_int(j, "message_size");
        rcpts = json_object_get(j, "recipients");
        if (json_is_array(rcpts)) {
            size_t i;
            json_t *r;

            m->rcpts = mk_xcalloc(json_array_size(rcpts) + 1, sizeof(*m->rcpts));
            json_array_foreach(rcpts, i, r) {
                const char *addr = mk_queue_json_str(r, "address");
                const char *reason = mk_queue_json_str(r, "delay_reason");

                if (addr == NULL)
                    continue;
                m->rcpts[m->nrcpts].address = mk_xstrdup(addr);
                m->rcpts[m->nrcpts].reason = reason ? mk_xstrdup(reason) : NULL;
                m->nrcpts++;
            }
        }
        json_decref(j);
    }
    return skipped;
}

int mk_queue_list(const char *pfdir, struct mk_queue_msg **msgs, size_t *n, char **error)
{
    char *argv[] = {"postqueue", "-c", (char *) pfdir, "-j", NULL};
    char *out;
    int rc = mk_run(argv, NULL, 0, &out, NULL);

    *msgs = NULL;
    *n = 0;
    if (rc != 0) {
        *error = mk_xasprintf("postqueue -c %s -j failed (%s %d)", pfdir,
                              rc < 0 ? "could not run:" : "exit", rc);
        free(out);
        return -1;
    }
    (void) mk_queue_parse(out, msgs, n);
    free(out);
    return 0;
}

const struct mk_queue_msg *mk_queue_find(const struct mk_queue_msg *msgs, size_t n,
                                         const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(msgs[i].id, id) == 0)
            return &msgs[i];
    return NULL;
}

void mk_queue_free(struct mk_queue_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < msgs[i].nrcpts; k++) {
            free(msgs[i].rcpts[k].address);
            free(msgs[i].rcpts[k].reason);
        }
        free(msgs[i].rcpts);
        free(msgs[i].id);
        free(msgs[i].queue);
        free(msgs[i].sender);
    }
    free(msgs);
}

/* Whether id is in the queue (in queue, when not NULL): 1, 0, or -1. */
static int mk_queue_has(const char *pfdir, const char *id, const char *queue, char **error)
{
    struct mk_queue_msg *msgs;
    const struct mk_queue_msg *m;
    size_t n;
    int found;

    if (mk_queue_list(pfdir, &msgs, &n, error) < 0)
        return -1;
    m = mk_queue_find(msgs, n, id);
    found = m != NULL && (queue == NULL || strcmp(m->queue, queue) == 0);
    mk_queue_free(msgs, n);
    return found;
}

/* postsuper -c DIR OPTION ID [QUEUE] */
static int mk_queue_postsuper(const char *pfdir, const char *option, const char *id,
                              const char *queue, char **error)
{
    char *argv[] = {"postsuper", "-c", (char *) pfdir, (char *) option, (char *) id,
                    (char *) queue, NULL};
    int rc = mk_run(argv, NULL, 0, NULL, NULL);

    if (rc != 0) {
        *error = mk_xasprintf("postsuper -c %s %s %s failed (%s %d)", pfdir, option, id,
                              rc < 0 ? "could not run:" : "exit", rc);
        return -1;
    }
    return 0;
}

int mk_queue_delete(const char *pfdir, const char *id, const char *queue, char **error)
{
    int had;

    if (!mk_queue_id_valid(id)) {
        *error = mk_xstrdup("not a queue ID");
        return -1;
    }
    if ((had = mk_queue_has(pfdir, id, queue, error)) <= 0)
        return had;
    if (mk_queue_postsuper(pfdir, "-d", id, queue, error) < 0)
        return -1;
    switch (mk_queue_has(pfdir, id, queue, error)) {
    case 0:
        return 1;
    case 1:
        *error = mk_xasprintf("%s is still in the queue after postsuper -d", id);
        return -1;
    default:
        return -1;
    }
}

int mk_queue_release(const char *pfdir, const char *id, char **error)
{
    char *flush[] = {"postqueue", "-c", (char *) pfdir, "-i", (char *) id, NULL};
    int had;

    if (!mk_queue_id_valid(id)) {
        *error = mk_xstrdup("not a queue ID");
        return -1;
    }
    if ((had = mk_queue_has(pfdir, id, "hold", error)) <= 0)
        return had;
    if (mk_queue_postsuper(pfdir, "-H", id, NULL, error) < 0)
        return -1;
    /* Released mail goes out now, not at the next queue run; should this
       fail, the queue manager still delivers it at its next run. */
    (void) mk_run(flush, NULL, 0, NULL, NULL);
    return 1;
}

char *mk_queue_header(const char *pfdir, const char *id, const char *name)
{
    char *argv[] = {"postcat", "-c", (char *) pfdir, "-h", "-q", (char *) id, NULL};
    char *out, *cursor, *line, *values = NULL;
    size_t name_len = strlen(name);

    if (!mk_queue_id_valid(id) || mk_run(argv, NULL, 0, &out, NULL) != 0)
        return NULL;
    cursor = out;
    while ((line = mk_str_next_line(&cursor)) != NULL) {
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            char *value = mk_str_trim(line + name_len + 1);
            char *next = mk_xasprintf("%s%s%s", values ? values : "", values ? "; " : "", value);

            free(values);
            values = next;
        }
    }
    free(out);
    return values;
}
