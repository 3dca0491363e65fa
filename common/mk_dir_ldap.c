/*
 * mk_dir_ldap - the directory from LDAP. See mk_directory.h.
 *
 * One connection per directory object, shared by all threads under a
 * lock; results are cached by mk_directory.c, so the lock is held only on
 * cache misses. The connection is made on first use and made again after
 * the server goes away; each operation is bounded by [ldap] timeout, and
 * an operation that fails for any reason but "no such entry" is
 * MK_DIR_TEMPFAIL.
 *
 * Filters take %s (the whole address or domain), %u (local part), %d
 * (domain) and %D (the user's DN, for group_filter), each escaped as
 * RFC 4515 requires, and %% for a percent sign.
 */
#include "config.h"

#ifdef HAVE_LDAP

#define LDAP_DEPRECATED 0

#include <errno.h>
#include <ldap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mk_addr.h"
#include "mk_directory.h"
#include "mk_log.h"
#include "mk_util.h"

struct mk_dir_ldap {
    pthread_mutex_t lock;
    LDAP *ld;
    char *uri, *base, *bind_dn, *bind_password;
    char *user_filter, *domain_filter, *group_filter, *group_attr;
    bool starttls;
    long long timeout;
};

static char *mk_ldap_escape(const char *value)
{
    struct berval in, out;

    in.bv_val = (char *) value;
    in.bv_len = strlen(value);
    if (ldap_bv2escaped_filter_value(&in, &out) != 0)
        mk_log_fatal("out of memory");
    return out.bv_val;
}

/* Expand a filter template. Returns NULL for a template with a bad % sequence. */
static char *mk_ldap_expand(const char *tmpl, const char *value, const char *dn)
{
    const char *at = strrchr(value, '@');
    size_t cap = strlen(tmpl) + 1, len = 0;
    char *out = mk_xmalloc(cap);

    for (const char *p = tmpl; *p; p++) {
        char *piece = NULL, *esc;
        size_t n;

        if (*p != '%') {
            piece = mk_xstrndup(p, 1);
        } else {
            switch (*++p) {
            case 's':
                piece = mk_xstrdup(value);
                break;
            case 'u':
                piece = at ? mk_xstrndup(value, (size_t) (at - value)) : mk_xstrdup(value);
                break;
            case 'd':
                piece = mk_xstrdup(at ? at + 1 : value);
                break;
            case 'D':
                piece = mk_xstrdup(dn ? dn : "");
                break;
            case '%':
                piece = mk_xstrdup("%");
                break;
            default:
                free(out);
                return NULL;
            }
            if (*p != '%') {
                esc = mk_ldap_escape(piece);
                free(piece);
                piece = mk_xstrdup(esc);
                ldap_memfree(esc);
            }
        }
        n = strlen(piece);
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            out = mk_xrealloc(out, cap);
        }
        memcpy(out + len, piece, n);
        len += n;
        free(piece);
    }
    out[len] = '\0';
    return out;
}

static void mk_ldap_disconnect(struct mk_dir_ldap *l)
{
    if (l->ld) {
        ldap_unbind_ext_s(l->ld, NULL, NULL);
        l->ld = NULL;
    }
}

static int mk_ldap_connect(struct mk_dir_ldap *l)
{
    struct timeval tv = {(time_t) l->timeout, 0};
    int version = LDAP_VERSION3, rc;
    struct berval cred;

    if (l->ld)
        return 0;
    if ((rc = ldap_initialize(&l->ld, l->uri)) != LDAP_SUCCESS) {
        mk_log(MK_LOG_ERROR, NULL, "ldap %s: %s", l->uri, ldap_err2string(rc));
        l->ld = NULL;
        return -1;
    }
    ldap_set_option(l->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(l->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(l->ld, LDAP_OPT_TIMEOUT, &tv);
    ldap_set_option(l->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    if (l->starttls && (rc = ldap_start_tls_s(l->ld, NULL, NULL)) != LDAP_SUCCESS) {
        mk_log(MK_LOG_ERROR, NULL, "ldap %s: StartTLS: %s", l->uri, ldap_err2string(rc));
        mk_ldap_disconnect(l);
        return -1;
    }
    cred.bv_val = l->bind_password;
    cred.bv_len = strlen(l->bind_password);
    rc = ldap_sasl_bind_s(l->ld, *l->bind_dn ? l->bind_dn : NULL, LDAP_SASL_SIMPLE, &cred,
                          NULL, NULL, NULL);
    if (rc != LDAP_SUCCESS) {
        mk_log(MK_LOG_ERROR, NULL, "ldap %s: bind as '%s': %s", l->uri,
               *l->bind_dn ? l->bind_dn : "(anonymous)", ldap_err2string(rc));
        mk_ldap_disconnect(l);
        return -1;
    }
    return 0;
}

/*
 * Search, connecting first and once more if the server went away.
 * Returns 0 with *res set (possibly no entries), or -1.
 */
static int mk_ldap_search(struct mk_dir_ldap *l, const char *base, int scope,
                          const char *filter, char **attrs, int sizelimit, LDAPMessage **res)
{
    struct timeval tv = {(time_t) l->timeout, 0};
    int rc = LDAP_SERVER_DOWN;

    *res = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (mk_ldap_connect(l) < 0)
            return -1;
        rc = ldap_search_ext_s(l->ld, base, scope, filter, attrs, 0, NULL, NULL, &tv,
                               sizelimit, res);
        if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED)
            return 0;
        if (*res) {
            ldap_msgfree(*res);
            *res = NULL;
        }
        if (rc == LDAP_NO_SUCH_OBJECT)
            return 0;
        mk_ldap_disconnect(l);
        if (rc != LDAP_SERVER_DOWN && rc != LDAP_CONNECT_ERROR && rc != LDAP_UNAVAILABLE)
            break;
    }
    /* The filter holds an address: name the base, never the person. */
    mk_log(MK_LOG_ERROR, NULL, "ldap %s: search under %s: %s", l->uri, base, ldap_err2string(rc));
    return -1;
}

static enum mk_dir_status mk_dir_ldap_domain(void *ctx, const char *domain)
{
    struct mk_dir_ldap *l = ctx;
    char *attrs[] = {(char *) LDAP_NO_ATTRS, NULL};
    char *filter = mk_ldap_expand(l->domain_filter, domain, NULL);
    enum mk_dir_status status = MK_DIR_TEMPFAIL;
    LDAPMessage *res;

    pthread_mutex_lock(&l->lock);
    if (mk_ldap_search(l, l->base, LDAP_SCOPE_SUBTREE, filter, attrs, 1, &res) == 0) {
        status = res && ldap_count_entries(l->ld, res) > 0 ? MK_DIR_FOUND : MK_DIR_NOT_FOUND;
        ldap_msgfree(res);
    }
    pthread_mutex_unlock(&l->lock);
    free(filter);
    return status;
}

static void mk_dir_ldap_read_attrs(struct mk_dir_ldap *l, LDAPMessage *entry,
                                   struct mk_dir_user *user)
{
    for (size_t i = 0; i < mk_dir_attrs_count; i++) {
        struct berval **vals = ldap_get_values_len(l->ld, entry, mk_dir_attrs[i].ldap);

        for (int v = 0; vals && vals[v]; v++) {
            /* Values with NUL bytes are not text; skip them. */
            if (memchr(vals[v]->bv_val, '\0', vals[v]->bv_len) == NULL) {
                char *s = mk_xstrndup(vals[v]->bv_val, vals[v]->bv_len);

                mk_dir_user_add_value(user, mk_dir_attrs[i].name, s);
                free(s);
            }
        }
        ldap_value_free_len(vals);
    }
}

static int mk_dir_ldap_read_groups(struct mk_dir_ldap *l, struct mk_dir_user *user)
{
    char *attrs[] = {l->group_attr, NULL};
    char *filter;
    LDAPMessage *res, *e;
    int rc;

    if (*l->group_filter == '\0')
        return 0;
    filter = mk_ldap_expand(l->group_filter, user->address, user->dn);
    rc = mk_ldap_search(l, l->base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, &res);
    free(filter);
    if (rc < 0)
        return -1;
    for (e = res ? ldap_first_entry(l->ld, res) : NULL; e; e = ldap_next_entry(l->ld, e)) {
        struct berval **vals = ldap_get_values_len(l->ld, e, l->group_attr);

        if (vals && vals[0] && memchr(vals[0]->bv_val, '\0', vals[0]->bv_len) == NULL) {
            char *s = mk_xstrndup(vals[0]->bv_val, vals[0]->bv_len);

            mk_dir_user_add_group(user, s);
            free(s);
        }
        ldap_value_free_len(vals);
    }
    ldap_msgfree(res);
    return 0;
}

static enum mk_dir_status mk_dir_ldap_user(void *ctx, const char *address,
                                           struct mk_dir_user **userp)
{
    struct mk_dir_ldap *l = ctx;
    char **attrs = mk_xcalloc(mk_dir_attrs_count + 1, sizeof(char *));
    char *filter = mk_ldap_expand(l->user_filter, address, NULL);
    enum mk_dir_status status = MK_DIR_TEMPFAIL;
    struct mk_dir_user *user = NULL;
    LDAPMessage *res = NULL, *entry;

    *userp = NULL;
    for (size_t i = 0; i < mk_dir_attrs_count; i++)
        attrs[i] = (char *) mk_dir_attrs[i].ldap;
    pthread_mutex_lock(&l->lock);
    if (mk_ldap_search(l, l->base, LDAP_SCOPE_SUBTREE, filter, attrs, 2, &res) < 0)
        goto out;
    entry = res ? ldap_first_entry(l->ld, res) : NULL;
    if (entry == NULL) {
        status = MK_DIR_NOT_FOUND;
        goto out;
    }
    if (ldap_next_entry(l->ld, entry) != NULL)
        mk_log(MK_LOG_WARNING, NULL, "ldap: more than one entry matches [ldap] user_filter "
               "for one address; using the first");
    user = mk_dir_user_new(address);
    {
        char *dn = ldap_get_dn(l->ld, entry);

        user->dn = mk_xstrdup(dn ? dn : "");
        ldap_memfree(dn);
    }
    mk_dir_ldap_read_attrs(l, entry, user);
    if (mk_dir_ldap_read_groups(l, user) < 0) {
        mk_dir_user_unref(user);
        user = NULL;
        goto out;
    }
    status = MK_DIR_FOUND;
    *userp = user;
out:
    pthread_mutex_unlock(&l->lock);
    if (res)
        ldap_msgfree(res);
    free(filter);
    free(attrs);
    return status;
}

static void mk_dir_ldap_close(void *ctx)
{
    struct mk_dir_ldap *l = ctx;

    mk_ldap_disconnect(l);
    free(l->uri);
    free(l->base);
    free(l->bind_dn);
    if (l->bind_password) {
        explicit_bzero(l->bind_password, strlen(l->bind_password));
        free(l->bind_password);
    }
    free(l->user_filter);
    free(l->domain_filter);
    free(l->group_filter);
    free(l->group_attr);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static char *mk_dir_ldap_read_secret(const char *path, char **error)
{
    FILE *fp = fopen(path, "r");
    char buf[512], *nl;

    if (fp == NULL) {
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fgets(buf, sizeof(buf), fp) == NULL)
        buf[0] = '\0';
    fclose(fp);
    if ((nl = strchr(buf, '\n')) != NULL)
        *nl = '\0';
    return mk_xstrdup(buf);
}

/* One or more ldap://, ldaps:// or ldapi:// URIs, separated by white space. */
static bool mk_dir_ldap_uri_ok(const char *uri)
{
    char **uris = mk_str_split(uri, " \t", NULL);
    bool ok = uris[0] != NULL;

    for (char **u = uris; *u; u++)
        if (strncasecmp(*u, "ldap://", 7) != 0 && strncasecmp(*u, "ldaps://", 8) != 0
            && strncasecmp(*u, "ldapi://", 8) != 0)
            ok = false;
    mk_str_array_free(uris);
    return ok;
}

void *mk_dir_ldap_open(const struct mk_config *cfg, char **error)
{
    struct mk_dir_ldap *l;
    const char *uri = mk_config_str(cfg, "ldap", "uri");
    const char *pwfile = mk_config_str(cfg, "ldap", "bind_password_file");
    const char *filters[] = {"user_filter", "domain_filter", "group_filter"};

    if (!mk_dir_ldap_uri_ok(uri)) {
        *error = mk_xasprintf("%s: [ldap] uri: '%s' is not an LDAP URI (directory = ldap needs one)",
                              mk_config_path(cfg), uri);
        return NULL;
    }
    for (size_t i = 0; i < MK_ARRAY_LEN(filters); i++) {
        char *probe = mk_ldap_expand(mk_config_str(cfg, "ldap", filters[i]), "u@d", "cn=x");

        if (probe == NULL) {
            *error = mk_xasprintf("%s:%d: [ldap] %s: unknown %% sequence (use %%s %%u %%d %%D %%%%)",
                                  mk_config_path(cfg), mk_config_line(cfg, "ldap", filters[i]),
                                  filters[i]);
            return NULL;
        }
        free(probe);
    }
    l = mk_xcalloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    l->uri = mk_xstrdup(uri);
    l->base = mk_xstrdup(mk_config_str(cfg, "ldap", "base"));
    l->bind_dn = mk_xstrdup(mk_config_str(cfg, "ldap", "bind_dn"));
    if (*pwfile) {
        if ((l->bind_password = mk_dir_ldap_read_secret(pwfile, error)) == NULL) {
            mk_dir_ldap_close(l);
            return NULL;
        }
    } else {
        l->bind_password = mk_xstrdup(mk_config_str(cfg, "ldap", "bind_password"));
    }
    l->user_filter = mk_xstrdup(mk_config_str(cfg, "ldap", "user_filter"));
    l->domain_filter = mk_xstrdup(mk_config_str(cfg, "ldap", "domain_filter"));
    l->group_filter = mk_xstrdup(mk_config_str(cfg, "ldap", "group_filter"));
    l->group_attr = mk_xstrdup(mk_config_str(cfg, "ldap", "group_attribute"));
    l->starttls = mk_config_bool(cfg, "ldap", "starttls");
    l->timeout = mk_config_num(cfg, "ldap", "timeout");
    return l;
}

/* Check a user's password: a simple bind as their entry, on a connection of its own. */
static enum mk_dir_status mk_dir_ldap_bind(void *ctx, const struct mk_dir_user *user,
                                           const char *password)
{
    struct mk_dir_ldap *l = ctx;
    struct timeval tv = {(time_t) l->timeout, 0};
    int version = LDAP_VERSION3, rc;
    struct berval cred;
    LDAP *ld;

    /* An empty password would be an unauthenticated bind, which succeeds. */
    if (user->dn == NULL || *password == '\0')
        return MK_DIR_NOT_FOUND;
    if ((rc = ldap_initialize(&ld, l->uri)) != LDAP_SUCCESS) {
        mk_log(MK_LOG_ERROR, NULL, "ldap %s: %s", l->uri, ldap_err2string(rc));
        return MK_DIR_TEMPFAIL;
    }
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    if (l->starttls && (rc = ldap_start_tls_s(ld, NULL, NULL)) != LDAP_SUCCESS) {
        mk_log(MK_LOG_ERROR, NULL, "ldap %s: StartTLS: %s", l->uri, ldap_err2string(rc));
        ldap_unbind_ext_s(ld, NULL, NULL);
        return MK_DIR_TEMPFAIL;
    }
    cred.bv_val = (char *) password;
    cred.bv_len = strlen(password);
    rc = ldap_sasl_bind_s(ld, user->dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
    ldap_unbind_ext_s(ld, NULL, NULL);
    if (rc == LDAP_SUCCESS)
        return MK_DIR_FOUND;
    if (rc == LDAP_INVALID_CREDENTIALS)
        return MK_DIR_NOT_FOUND;
    mk_log(MK_LOG_ERROR, NULL, "ldap %s: bind as '%s': %s", l->uri, user->dn,
           ldap_err2string(rc));
    return MK_DIR_TEMPFAIL;
}

const struct mk_dir_backend mk_dir_ldap_backend = {
    "ldap", mk_dir_ldap_domain, mk_dir_ldap_user, mk_dir_ldap_close, true, mk_dir_ldap_bind,
};

#endif /* HAVE_LDAP */
