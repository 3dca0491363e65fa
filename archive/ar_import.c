/*
 * ar_import - walk existing mail for import. See ar_import.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ar_import.h"
#include "ar_mbox.h"
#include "mk_util.h"

struct ar_import_walker {
    int (*cb)(void *arg, const struct ar_import_item *it);
    void *arg;
    int bad;                            /* things reported unreadable */
    char *stopped_at;                   /* origin of the item cb stopped at */
};

/* ------------------------------------------------------------ reporting */

static void ar_import_give(struct ar_import_walker *w, const struct ar_import_item *it)
{
    if (w->cb(w->arg, it) != 0 && w->stopped_at == NULL)
        w->stopped_at = mk_xstrdup(it->origin);
}

/* Something unreadable: told to cb, counted, and the walk goes on. error is taken. */
static void ar_import_report(struct ar_import_walker *w, const char *origin, char *error)
{
    struct ar_import_item it = {NULL, 0, origin, NULL, 0, error};

    w->bad++;
    ar_import_give(w, &it);
    free(error);
}

/* ------------------------------------------------------------ names and files */

static bool ar_import_is_dovecot_file(const char *name)
{
    return strncmp(name, "dovecot.", 8) == 0 || strncmp(name, "dovecot-", 8) == 0 ||
           strcmp(name, "subscriptions") == 0 || strcmp(name, "maildirfolder") == 0;
}

static bool ar_import_has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);

    return n > s && strcasecmp(name + n - s, suffix) == 0;
}

static bool ar_import_is_dir(const char *dir, const char *name)
{
    char *path = mk_xasprintf("%s/%s", dir, name);
    struct stat st;
    bool yes = stat(path, &st) == 0 && S_ISDIR(st.st_mode);

    free(path);
    return yes;
}

static bool ar_import_is_maildir(const char *dir)
{
    return ar_import_is_dir(dir, "cur") || ar_import_is_dir(dir, "new");
}

static int ar_import_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The entries of DIR but . and .., sorted; NULL (reported) if it cannot be read. */
static char **ar_import_list(struct ar_import_walker *w, const char *dir, size_t *count)
{
    size_t n = 0, cap = 16;
    char **names;
    struct dirent *d;
    DIR *dp;

    if ((dp = opendir(dir)) == NULL) {
        ar_import_report(w, dir, mk_xasprintf("%s: cannot read directory: %s", dir,
                                              strerror(errno)));
        return NULL;
    }
    names = mk_xmalloc(cap * sizeof(*names));
    while ((d = readdir(dp)) != NULL) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        if (n + 1 == cap) {
            cap *= 2;
            names = mk_xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = mk_xstrdup(d->d_name);
    }
    closedir(dp);
    names[n] = NULL;
    qsort(names, n, sizeof(*names), ar_import_cmp);
    *count = n;
    return names;
}

/* 1 if the file's first line begins "From ", 0 if not, -1 (reported) if it cannot be read. */
static int ar_import_sniff(struct ar_import_walker *w, const char *path)
{
    char head[5];
    size_t got = 0;
    ssize_t n;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
        ar_import_report(w, path, mk_xasprintf("%s: cannot open: %s", path, strerror(errno)));
        return -1;
    }
    while (got < sizeof(head) && (n = read(fd, head + got, sizeof(head) - got)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ar_import_report(w, path, mk_xasprintf("%s: cannot read: %s", path,
                                                   strerror(errno)));
            close(fd);
            return -1;
        }
        got += (size_t) n;
    }
    close(fd);
    return got == sizeof(head) && memcmp(head, "From ", 5) == 0;
}

/* A Maildir file's name begins with the UNIX time of its delivery. */
static time_t ar_import_name_time(const char *path)
{
    const char *name = strrchr(path, '/');
    long long t = 0;

    name = name ? name + 1 : path;
    for (int i = 0; name[i] >= '0' && name[i] <= '9'; i++) {
        if (i >= 12)
            return 0;
        t = t * 10 + (name[i] - '0');
    }
    return (time_t) t;
}

/* ------------------------------------------------------------ messages */

static void ar_import_mbox(struct ar_import_walker *w, const char *path)
{
    struct ar_mbox_reader *r;
    char *error = NULL, *msg, *sender;
    size_t len, n = 0;
    time_t received;
    int rc = 0;

    if ((r = ar_mbox_open(path, &error)) == NULL) {
        ar_import_report(w, path, error);
        return;
    }
    while (w->stopped_at == NULL && (rc = ar_mbox_next(r, &msg, &len, &sender, &received)) > 0) {
        char *origin = mk_xasprintf("%s#%zu", path, ++n);
        struct ar_import_item it = {msg, len, origin, sender, received, NULL};

        ar_import_give(w, &it);
        free(origin);
        free(msg);
        free(sender);
    }
    if (w->stopped_at == NULL && rc < 0)
        ar_import_report(w, path, mk_xstrdup(ar_mbox_error(r)));
    ar_mbox_close(r);
}

/* One file: an mbox if it begins with "From ", else one message. */
static void ar_import_file(struct ar_import_walker *w, const char *path, bool maildir)
{
    struct ar_import_item it = {NULL, 0, path, NULL, 0, NULL};
    char *error = NULL, *text;
    struct stat st;
    int kind;

    if ((kind = ar_import_sniff(w, path)) < 0)
        return;
    if (kind == 1) {
        ar_import_mbox(w, path);
        return;
    }
    if ((text = mk_file_read(path, &it.len, &st, &error)) == NULL) {
        ar_import_report(w, path, error);
        return;
    }
    if (it.len == 0) {
        ar_import_report(w, path, mk_xasprintf("%s: empty file, not a message", path));
    } else {
        it.msg = text;
        if (maildir)
            it.received = st.st_mtime > 0 ? st.st_mtime : ar_import_name_time(path);
        ar_import_give(w, &it);
    }
    free(text);
}

/* ------------------------------------------------------------ directories */

/* The messages of DIR/cur or DIR/new. */
static void ar_import_maildir_part(struct ar_import_walker *w, const char *dir, const char *part)
{
    char *sub = mk_xasprintf("%s/%s", dir, part), **names;
    size_t n;

    if (ar_import_is_dir(dir, part) && (names = ar_import_list(w, sub, &n)) != NULL) {
        for (size_t i = 0; i < n && w->stopped_at == NULL; i++) {
            if (names[i][0] != '.' && !ar_import_is_dovecot_file(names[i])) {
                char *path = mk_xasprintf("%s/%s", sub, names[i]);
                struct stat st;

                if (lstat(path, &st) == 0 && (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)))
                    ar_import_file(w, path, true);
                free(path);
            }
        }
        mk_str_array_free(names);
    }
    free(sub);
}

static void ar_import_maildir(struct ar_import_walker *w, const char *dir)
{
    char **names;
    size_t n;

    ar_import_maildir_part(w, dir, "cur");
    ar_import_maildir_part(w, dir, "new");
    if (w->stopped_at || (names = ar_import_list(w, dir, &n)) == NULL)
        return;
    for (size_t i = 0; i < n && w->stopped_at == NULL; i++) {
        char *sub = mk_xasprintf("%s/%s", dir, names[i]);
        struct stat st;

        /* Maildir++: every folder is a .NAME directory at the top, nested ones too. */
        if (names[i][0] == '.' && lstat(sub, &st) == 0 && S_ISDIR(st.st_mode) &&
            ar_import_is_maildir(sub)) {
            ar_import_maildir_part(w, sub, "cur");
            ar_import_maildir_part(w, sub, "new");
        }
        free(sub);
    }
    mk_str_array_free(names);
}

static void ar_import_tree(struct ar_import_walker *w, const char *dir, int depth);

static void ar_import_tree_entry(struct ar_import_walker *w, const char *path, const char *name,
                                 int depth)
{
    struct stat st;

    if (name[0] == '.' || ar_import_is_dovecot_file(name) || lstat(path, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        if (ar_import_is_maildir(path))
            ar_import_maildir(w, path);
        else
            ar_import_tree(w, path, depth + 1);
    } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
        if (ar_import_has_suffix(name, ".eml"))
            ar_import_file(w, path, false);
        else if (ar_import_has_suffix(name, ".mbox"))
            ar_import_mbox(w, path);
    }
}

static void ar_import_tree(struct ar_import_walker *w, const char *dir, int depth)
{
    char **names;
    size_t n;

    if (depth > AR_IMPORT_MAX_DEPTH) {
        ar_import_report(w, dir, mk_xasprintf("%s: more than %d directories deep; not read",
                                              dir, AR_IMPORT_MAX_DEPTH));
        return;
    }
    if ((names = ar_import_list(w, dir, &n)) == NULL)
        return;
    for (size_t i = 0; i < n && w->stopped_at == NULL; i++) {
        char *path = mk_xasprintf("%s/%s", dir, names[i]);

        ar_import_tree_entry(w, path, names[i], depth);
        free(path);
    }
    mk_str_array_free(names);
}

int ar_import_walk(const char *path, int (*cb)(void *arg, const struct ar_import_item *it),
                   void *arg, char **error)
{
    struct ar_import_walker w = {cb, arg, 0, NULL};
    struct stat st;

    *error = NULL;
    if (stat(path, &st) < 0) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISREG(st.st_mode))
        ar_import_file(&w, path, false);
    else if (S_ISDIR(st.st_mode) && ar_import_is_maildir(path))
        ar_import_maildir(&w, path);
    else if (S_ISDIR(st.st_mode))
        ar_import_tree(&w, path, 0);
    else {
        *error = mk_xasprintf("%s: not a file or a directory", path);
        return -1;
    }
    if (w.stopped_at) {
        *error = mk_xasprintf("%s: import stopped here", w.stopped_at);
        free(w.stopped_at);
        return -1;
    }
    return w.bad;
}
