/*
 * pam_mailkeep - second factor, lockout and password policy for any PAM
 * service. See pam_mailkeep(8); the parts are in pm_auth.c, pm_account.c
 * and pm_password.c.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "mk_log.h"
#include "mk_util.h"
#include "pm.h"

#ifndef MK_SYSCONFDIR
#define MK_SYSCONFDIR "/etc"
#endif

#define PM_EXPORT __attribute__((visibility("default")))

/*
 * What one PAM transaction's calls share (auth, then account, maybe a
 * password change): the configuration, the directory's connection and its
 * answer for the user, kept on the handle so that the account check does
 * not read the file and ask LDAP again.
 */
#define PM_SHARED "pam_mailkeep:shared"

struct pm_shared {
    char *config_path;
    char *user;
    struct mk_config *cfg;
    struct mk_directory *dir;
    struct mk_dir_user *duser;
    bool looked_up;
};

static void pm_shared_free(pam_handle_t *pamh, void *data, int status)
{
    struct pm_shared *sh = data;

    (void) pamh;
    (void) status;
    if (sh->duser != NULL)
        mk_dir_user_unref(sh->duser);
    if (sh->dir != NULL)
        mk_directory_unref(sh->dir);
    if (sh->cfg != NULL)
        mk_config_unref(sh->cfg);
    free(sh->config_path);
    free(sh->user);
    free(sh);
}

static struct pm_shared *pm_shared_get(struct pm_ctx *c)
{
    const void *data = NULL;
    const struct pm_shared *sh;

    if (pam_get_data(c->pamh, PM_SHARED, &data) != PAM_SUCCESS || data == NULL)
        return NULL;
    sh = data;
    if (strcmp(sh->config_path, c->config_path) != 0 || strcmp(sh->user, c->user) != 0)
        return NULL;
    return (struct pm_shared *) sh;
}

int pm_open(struct pm_ctx *c, pam_handle_t *pamh, int argc, const char **argv)
{
    const char *user = NULL;
    const void *service = NULL;
    struct pm_shared *sh;
    char *error = NULL;
    int rc;

    memset(c, 0, sizeof(*c));
    c->pamh = pamh;
    /* What the common code logs (the directory's errors above all) goes to
     * syslog under the program's own name, not to its standard error. */
    mk_log_open("pam_mailkeep", MK_LOG_HOST, LOG_AUTHPRIV);
    c->config_path = MK_SYSCONFDIR "/mailkeep/mailkeep.conf";
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "config=", 7) == 0)
            c->config_path = argv[i] + 7;
        else if (strcmp(argv[i], "prompt") == 0)
            c->prompt = true;
        else if (strcmp(argv[i], "record") == 0)
            c->record = true;
        else if (strcmp(argv[i], "debug") == 0)
            c->debug = true;
        else if (strcmp(argv[i], "bind") == 0)
            c->bind = true;
        else {
            pam_syslog(pamh, LOG_ERR, "unknown argument \"%s\"", argv[i]);
            return PAM_SERVICE_ERR;
        }
    }
    if (pam_get_item(pamh, PAM_SERVICE, &service) != PAM_SUCCESS || service == NULL)
        service = "";
    c->service = service;
    if ((rc = pam_get_user(pamh, &user, NULL)) != PAM_SUCCESS || user == NULL || *user == '\0') {
        pam_syslog(pamh, LOG_NOTICE, "cannot get the user name");
        return rc == PAM_SUCCESS ? PAM_USER_UNKNOWN : rc;
    }
    c->user = mk_xstrdup(user);
    mk_str_lower(c->user);
    if ((sh = pm_shared_get(c)) != NULL) {
        c->cfg = mk_config_ref(sh->cfg);
        if (sh->looked_up) {
            c->dir = sh->dir != NULL ? mk_directory_ref(sh->dir) : NULL;
            c->duser = sh->duser != NULL ? mk_dir_user_ref(sh->duser) : NULL;
            c->looked_up = true;
        }
    } else if ((c->cfg = mk_config_load(c->config_path, &error)) == NULL) {
        pam_syslog(pamh, LOG_ERR, "%s", error);
        free(error);
        return PAM_AUTHINFO_UNAVAIL;
    } else {
        sh = mk_xcalloc(1, sizeof(*sh));
        sh->config_path = mk_xstrdup(c->config_path);
        sh->user = mk_xstrdup(c->user);
        sh->cfg = mk_config_ref(c->cfg);
        if (pam_set_data(pamh, PM_SHARED, sh, pm_shared_free) != PAM_SUCCESS)
            pm_shared_free(pamh, sh, 0);
    }
    c->store = mk_otp_store_open(mk_config_str(c->cfg, "otp", "store"),
                                 mk_config_str(c->cfg, "otp", "key_file"), false, &error);
    if (c->store == NULL) {
        pam_syslog(pamh, LOG_ERR, "second-factor store: %s", error);
        free(error);
        return PAM_AUTHINFO_UNAVAIL;
    }
    return PAM_SUCCESS;
}

int pm_lookup(struct pm_ctx *c)
{
    struct pm_shared *sh;
    char *error = NULL;

    if (c->looked_up)
        return PAM_SUCCESS;
    /* The directory holds mail addresses: a name without '@' (root, a
     * system account at the console or over SSH) is not looked for there,
     * so a dead LDAP server does not lock local accounts out. */
    if (strchr(c->user, '@') == NULL) {
        c->duser = NULL;
        return PAM_SUCCESS;
    }
    if ((c->dir = mk_directory_open(c->cfg, &error)) == NULL) {
        pam_syslog(c->pamh, LOG_ERR, "directory: %s", error);
        free(error);
        return PAM_AUTHINFO_UNAVAIL;
    }
    switch (mk_directory_user(c->dir, c->user, &c->duser)) {
    case MK_DIR_NOT_FOUND:
        c->duser = NULL;
        /* fall through */
    case MK_DIR_FOUND:
        c->looked_up = true;
        if ((sh = pm_shared_get(c)) != NULL && !sh->looked_up) {
            sh->dir = mk_directory_ref(c->dir);
            sh->duser = c->duser != NULL ? mk_dir_user_ref(c->duser) : NULL;
            sh->looked_up = true;
        }
        return PAM_SUCCESS;
    default:
        pam_syslog(c->pamh, LOG_ERR, "user %s: the directory does not answer", c->user);
        return PAM_AUTHINFO_UNAVAIL;
    }
}

void pm_close(struct pm_ctx *c)
{
    if (c->duser != NULL)
        mk_dir_user_unref(c->duser);
    if (c->dir != NULL)
        mk_directory_unref(c->dir);
    mk_otp_store_close(c->store);
    if (c->cfg != NULL)
        mk_config_unref(c->cfg);
    free(c->user);
    memset(c, 0, sizeof(*c));
}

PM_EXPORT int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct pm_ctx c;
    int rc;

    (void) flags;
    if ((rc = pm_open(&c, pamh, argc, argv)) == PAM_SUCCESS)
        rc = pm_auth(&c);
    pm_close(&c);
    return rc;
}

PM_EXPORT int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void) pamh;
    (void) flags;
    (void) argc;
    (void) argv;
    return PAM_SUCCESS;
}

PM_EXPORT int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct pm_ctx c;
    int rc;

    (void) flags;
    if ((rc = pm_open(&c, pamh, argc, argv)) == PAM_SUCCESS)
        rc = pm_account(&c);
    else if (rc == PAM_AUTHINFO_UNAVAIL)
        rc = PAM_PERM_DENIED;           /* not a code pam_acct_mgmt() may return */
    pm_close(&c);
    return rc;
}

PM_EXPORT int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct pm_ctx c;
    int rc;

    if ((rc = pm_open(&c, pamh, argc, argv)) == PAM_SUCCESS)
        rc = pm_password(&c, flags);
    else if (rc == PAM_AUTHINFO_UNAVAIL)
        rc = PAM_AUTHTOK_ERR;
    pm_close(&c);
    return rc;
}
