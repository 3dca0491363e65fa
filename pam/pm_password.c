/*
 * pm_password - pam_mailkeep's password part: the new password's quality
 * (libpwquality), its history, and recording a change. See pam_mailkeep(8).
 */
#include "config.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <openssl/crypto.h>
#include <pwquality.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "mk_otpstore.h"
#include "mk_util.h"
#include "pm.h"

static bool pm_in_history(const struct mk_otp_record *r, const char *password, size_t keep)
{
    struct crypt_data *data = mk_xcalloc(1, sizeof(*data));
    bool found = false;

    for (size_t i = 0; i < r->nhistory && i < keep && !found; i++) {
        const char *h = crypt_r(password, r->history[i].crypt, data);

        found = h != NULL && h[0] != '*' && strcmp(h, r->history[i].crypt) == 0;
    }
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return found;
}

/* libpwquality with [password]'s settings: NULL, or why the password is refused. */
static char *pm_quality(struct pm_ctx *c, const char *password, const char *old)
{
    pwquality_settings_t *pwq = pwquality_default_settings();
    char buf[PWQ_MAX_ERROR_MESSAGE_LEN], *local, *at;
    void *aux = NULL;
    int score;

    if (pwq == NULL)
        return mk_xstrdup("libpwquality cannot start");
    pwquality_set_int_value(pwq, PWQ_SETTING_MIN_LENGTH,
                            (int) mk_config_num(c->cfg, "password", "min_length"));
    pwquality_set_int_value(pwq, PWQ_SETTING_MIN_CLASS,
                            (int) mk_config_num(c->cfg, "password", "min_classes"));
    pwquality_set_int_value(pwq, PWQ_SETTING_MAX_REPEAT,
                            (int) mk_config_num(c->cfg, "password", "max_repeat"));
    pwquality_set_int_value(pwq, PWQ_SETTING_DICT_CHECK,
                            mk_config_bool(c->cfg, "password", "dictionary_check"));
    pwquality_set_int_value(pwq, PWQ_SETTING_USER_CHECK,
                            mk_config_bool(c->cfg, "password", "user_check"));
    /* Credits would let a short password pass on its character classes. */
    pwquality_set_int_value(pwq, PWQ_SETTING_DIG_CREDIT, 0);
    pwquality_set_int_value(pwq, PWQ_SETTING_UP_CREDIT, 0);
    pwquality_set_int_value(pwq, PWQ_SETTING_LOW_CREDIT, 0);
    pwquality_set_int_value(pwq, PWQ_SETTING_OTH_CREDIT, 0);
    score = pwquality_check(pwq, password, old, c->user, &aux);
    pwquality_free_settings(pwq);
    if (score < 0)
        return mk_xstrdup(pwquality_strerror(buf, sizeof(buf), score, aux));
    /* pwquality looks for the whole user name; mail logins are addresses. */
    local = mk_xstrdup(c->user);
    if ((at = strchr(local, '@')) != NULL)
        *at = '\0';
    if (mk_config_bool(c->cfg, "password", "user_check") && strlen(local) >= 3
        && strcasestr(password, local) != NULL) {
        free(local);
        return mk_xstrdup("The password contains the user name in some form");
    }
    free(local);
    return NULL;
}

static int pm_check(struct pm_ctx *c)
{
    const void *old = NULL;
    const char *password = NULL;
    struct mk_otp_record r;
    char *error = NULL, *why;
    long long keep = mk_config_num(c->cfg, "password", "history");
    int rc;

    if (mk_otp_store_read(c->store, c->user, &r, &error) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: %s", c->user, error);
        free(error);
        return PAM_AUTHTOK_ERR;
    }
    (void) pam_get_item(c->pamh, PAM_OLDAUTHTOK, &old);
    if ((rc = pam_get_authtok(c->pamh, PAM_AUTHTOK, &password, NULL)) != PAM_SUCCESS
        || password == NULL) {
        mk_otp_record_free(&r);
        return rc != PAM_SUCCESS ? rc : PAM_AUTHTOK_ERR;
    }
    if ((why = pm_quality(c, password, old)) == NULL && keep > 0
        && pm_in_history(&r, password, (size_t) keep))
        why = mk_xasprintf("The password was used before (the last %lld are remembered)", keep);
    mk_otp_record_free(&r);
    if (why != NULL) {
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: new password refused: %s", c->user, why);
        pam_error(c->pamh, "BAD PASSWORD: %s", why);
        free(why);
        pam_set_item(c->pamh, PAM_AUTHTOK, NULL);
        return PAM_AUTHTOK_ERR;
    }
    return PAM_SUCCESS;
}

static int pm_record(struct pm_ctx *c)
{
    const void *password = NULL;
    struct mk_otp_record r;
    struct mk_otp_lock *lock;
    char *error = NULL, *hash = NULL, *salt;
    long long keep = mk_config_num(c->cfg, "password", "history");
    struct crypt_data *data;
    int rc = PAM_SUCCESS;

    if (pam_get_item(c->pamh, PAM_AUTHTOK, &password) != PAM_SUCCESS || password == NULL)
        return PAM_IGNORE;
    if (keep > 0) {
        data = mk_xcalloc(1, sizeof(*data));
        if ((salt = crypt_gensalt_ra("$y$", 0, NULL, 0)) != NULL) {
            const char *h = crypt_r(password, salt, data);

            if (h != NULL && h[0] != '*')
                hash = mk_xstrdup(h);
            free(salt);
        }
        OPENSSL_cleanse(data, sizeof(*data));
        free(data);
        if (hash == NULL) {
            pam_syslog(c->pamh, LOG_ERR, "user %s: crypt(3) cannot hash with yescrypt", c->user);
            return PAM_SYSTEM_ERR;
        }
    }
    if ((lock = mk_otp_store_lock(c->store, c->user, &r, &error)) == NULL) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: %s", c->user, error);
        free(error);
        free(hash);
        return PAM_SYSTEM_ERR;
    }
    r.changed = time(NULL);
    free(r.must_change);
    r.must_change = NULL;
    r.must_changed = 0;
    if (hash != NULL) {
        /* Newest first; drop what falls off the end. */
        r.history = mk_xrealloc(r.history, (r.nhistory + 1) * sizeof(*r.history));
        memmove(r.history + 1, r.history, r.nhistory * sizeof(*r.history));
        r.history[0].changed = r.changed;
        r.history[0].crypt = hash;
        r.nhistory++;
        while (r.nhistory > (size_t) keep || r.nhistory > MK_OTP_MAX_HISTORY)
            free(r.history[--r.nhistory].crypt);
    }
    if (mk_otp_store_write(lock, &r, &error) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: cannot record the change: %s", c->user, error);
        free(error);
        rc = PAM_SYSTEM_ERR;
    } else {
        pam_syslog(c->pamh, LOG_INFO, "user %s: password changed, service %s", c->user,
                   c->service);
    }
    mk_otp_store_unlock(lock);
    mk_otp_record_free(&r);
    return rc;
}

int pm_password(struct pm_ctx *c, int flags)
{
    if (flags & PAM_PRELIM_CHECK)
        return PAM_SUCCESS;
    if (!(flags & PAM_UPDATE_AUTHTOK))
        return PAM_SERVICE_ERR;
    return c->record ? pm_record(c) : pm_check(c);
}
