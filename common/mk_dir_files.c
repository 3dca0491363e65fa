/*
 * mk_dir_files - the directory from flat files, for sites without LDAP.
 * See mk_directory.h for the file formats.
 *
 * The files are re-read when their modification time, size or inode
 * changes, checked at most once a second. A file that fails to parse on
 * re-read is logged and the previous contents stay in force; at start,
 * it is an error.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mk_addr.h"
#include "mk_directory.h"
#include "mk_hash.h"
#include "mk_log.h"
#include "mk_util.h"

struct mk_dir_file {
    char *path;                         /* NULL: not configured */
    struct stat st;                     /* as last loaded */
};

struct mk_dir_files {
    pthread_mutex_t lock;
    struct mk_dir_file domains_file, users_file;
    struct mk_hash *domains;            /* domain -> (void *) 1 */
    struct mk_hash *users;              /* address -> struct mk_dir_user */
    time_t checked;
};

static void mk_dir_files_user_free(void *p)
{
    mk_dir_user_unref(p);
}

static struct mk_hash *mk_dir_files_parse_domains(const char *path, char *text, char **error)
{
    struct mk_hash *domains = mk_hash_create(NULL);
    char *cursor = text, *l, *entry;
    int line = 0;

    while ((l = mk_str_next_line(&cursor)) != NULL) {
        line++;
        entry = mk_str_trim(l);
        if (*entry == '\0' || *entry == '#')
            continue;
        mk_str_lower(entry);
        if (!mk_domain_valid(entry)) {
            *error = mk_xasprintf("%s:%d: '%s' is not a valid domain", path, line, entry);
            mk_hash_free(domains);
            return NULL;
        }
        mk_hash_set(domains, entry, strlen(entry), (void *) 1);
    }
    return domains;
}

/* "address key=v1,v2 key=v3 ..." */
static struct mk_dir_user *mk_dir_files_parse_user(const char *path, int line, char *text,
                                                   char **error)
{
    size_t ntok;
    char **tok = mk_str_split(text, " \t\r", &ntok);
    char *address = mk_addr_normalize(tok[0]);
    struct mk_dir_user *user;

    if (address == NULL || mk_addr_domain(address) == NULL) {
        *error = mk_xasprintf("%s:%d: '%s' is not a mail address", path, line, tok[0]);
        free(address);
        mk_str_array_free(tok);
        return NULL;
    }
    user = mk_dir_user_new(address);
    free(address);
    for (size_t i = 1; i < ntok; i++) {
        char *eq = strchr(tok[i], '='), **values;

        if (eq == NULL || eq == tok[i]) {
            *error = mk_xasprintf("%s:%d: '%s' is not attribute=value", path, line, tok[i]);
            break;
        }
        *eq = '\0';
        if (strcmp(tok[i], "group") != 0 && strcmp(tok[i], "groups") != 0
            && !mk_dir_attr_known(tok[i])) {
            *error = mk_xasprintf("%s:%d: unknown attribute '%s'", path, line, tok[i]);
            break;
        }
        values = mk_str_split(eq + 1, ",", NULL);
        for (char **v = values; *v; v++) {
            if (strncmp(tok[i], "group", 5) == 0)
                mk_dir_user_add_group(user, *v);
            else
                mk_dir_user_add_value(user, tok[i], *v);
        }
        mk_str_array_free(values);
    }
    mk_str_array_free(tok);
    if (*error) {
        mk_dir_user_unref(user);
        return NULL;
    }
    return user;
}

static struct mk_hash *mk_dir_files_parse_users(const char *path, char *text, char **error)
{
    struct mk_hash *users = mk_hash_create(mk_dir_files_user_free);
    char *cursor = text, *l, *entry;
    struct mk_dir_user *user;
    int line = 0;

    while ((l = mk_str_next_line(&cursor)) != NULL) {
        line++;
        entry = mk_str_trim(l);
        if (*entry == '\0' || *entry == '#')
            continue;
        if ((user = mk_dir_files_parse_user(path, line, entry, error)) == NULL) {
            mk_hash_free(users);
            return NULL;
        }
        mk_hash_set(users, user->address, strlen(user->address), user);
    }
    return users;
}

static bool mk_dir_file_changed(const struct mk_dir_file *f)
{
    struct stat st;

    if (f->path == NULL)
        return false;
    if (stat(f->path, &st) < 0)
        return true;
    return st.st_mtim.tv_sec != f->st.st_mtim.tv_sec || st.st_mtim.tv_nsec != f->st.st_mtim.tv_nsec
        || st.st_size != f->st.st_size || st.st_ino != f->st.st_ino;
}

/* Load one file into *table with the given parser; on error keep *table. */
static int mk_dir_files_load(struct mk_dir_file *f, struct mk_hash **table,
                             struct mk_hash *(*parse)(const char *, char *, char **),
                             char **error)
{
    struct mk_hash *fresh;
    struct stat st;
    char *text;

    if (f->path == NULL)
        return 0;
    if ((text = mk_file_read(f->path, NULL, &st, error)) == NULL)
        return -1;
    fresh = parse(f->path, text, error);
    free(text);
    if (fresh == NULL)
        return -1;
    mk_hash_free(*table);
    *table = fresh;
    f->st = st;
    return 0;
}

void *mk_dir_files_open(const struct mk_config *cfg, char **error)
{
    struct mk_dir_files *files = mk_xcalloc(1, sizeof(*files));
    const char *domains = mk_config_str(cfg, "global", "directory_domains_file");
    const char *users = mk_config_str(cfg, "global", "directory_users_file");

    pthread_mutex_init(&files->lock, NULL);
    files->domains_file.path = *domains ? mk_xstrdup(domains) : NULL;
    files->users_file.path = *users ? mk_xstrdup(users) : NULL;
    files->domains = mk_hash_create(NULL);
    if (mk_dir_files_load(&files->domains_file, &files->domains, mk_dir_files_parse_domains, error) < 0
        || mk_dir_files_load(&files->users_file, &files->users, mk_dir_files_parse_users, error) < 0) {
        mk_dir_files_backend.close(files);
        return NULL;
    }
    files->checked = time(NULL);
    return files;
}

static void mk_dir_files_refresh(struct mk_dir_files *files)
{
    time_t now = time(NULL);
    char *error = NULL;

    if (now == files->checked)
        return;
    files->checked = now;
    if (mk_dir_file_changed(&files->domains_file)) {
        if (mk_dir_files_load(&files->domains_file, &files->domains,
                              mk_dir_files_parse_domains, &error) < 0) {
            mk_log(MK_LOG_ERROR, NULL, "%s; keeping the previous domains", error);
            free(error);
            error = NULL;
        } else {
            mk_log(MK_LOG_INFO, NULL, "reloaded %s", files->domains_file.path);
        }
    }
    if (mk_dir_file_changed(&files->users_file)) {
        if (mk_dir_files_load(&files->users_file, &files->users,
                              mk_dir_files_parse_users, &error) < 0) {
            mk_log(MK_LOG_ERROR, NULL, "%s; keeping the previous users", error);
            free(error);
        } else {
            mk_log(MK_LOG_INFO, NULL, "reloaded %s", files->users_file.path);
        }
    }
}

static enum mk_dir_status mk_dir_files_domain(void *ctx, const char *domain)
{
    struct mk_dir_files *files = ctx;
    char *lower = mk_xstrdup(domain);
    bool found;

    mk_str_lower(lower);
    pthread_mutex_lock(&files->lock);
    mk_dir_files_refresh(files);
    found = mk_hash_find(files->domains, lower, strlen(lower)) != NULL;
    pthread_mutex_unlock(&files->lock);
    free(lower);
    return found ? MK_DIR_FOUND : MK_DIR_NOT_FOUND;
}

static enum mk_dir_status mk_dir_files_user(void *ctx, const char *address,
                                            struct mk_dir_user **user)
{
    struct mk_dir_files *files = ctx;
    struct mk_dir_user *found;

    *user = NULL;
    pthread_mutex_lock(&files->lock);
    mk_dir_files_refresh(files);
    if (files->users == NULL) {
        pthread_mutex_unlock(&files->lock);
        *user = mk_dir_user_new(address);
        return MK_DIR_FOUND;
    }
    found = mk_hash_find(files->users, address, strlen(address));
    if (found)
        *user = mk_dir_user_ref(found);
    pthread_mutex_unlock(&files->lock);
    return found ? MK_DIR_FOUND : MK_DIR_NOT_FOUND;
}

static void mk_dir_files_close(void *ctx)
{
    struct mk_dir_files *files = ctx;

    mk_hash_free(files->domains);
    mk_hash_free(files->users);
    free(files->domains_file.path);
    free(files->users_file.path);
    pthread_mutex_destroy(&files->lock);
    free(files);
}

const struct mk_dir_backend mk_dir_files_backend = {
    "files", mk_dir_files_domain, mk_dir_files_user, mk_dir_files_close, false, NULL,
};
