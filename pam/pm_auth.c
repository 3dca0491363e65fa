/*
 * pm_auth - pam_mailkeep's auth part: application passwords, the second
 * factor (in the password or at a second prompt), replay protection and
 * lockout. See pam_mailkeep(8).
 *
 * Returns PAM_SUCCESS when an application password authenticated the
 * user on its own (the stack ends there: success=done), PAM_IGNORE when
 * the second factor is satisfied or not needed and the password is left
 * for the next module (its code removed), and an error otherwise. With
 * the argument bind the module checks the password itself (an LDAP bind)
 * and returns PAM_SUCCESS instead of PAM_IGNORE.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <openssl/crypto.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "mk_addr.h"
#include "mk_otp.h"
#include "mk_otppolicy.h"
#include "mk_otpstore.h"
#include "mk_util.h"
#include "pm.h"

#define PM_RECOVERY_LEN 9               /* "abcd-efgh" */

static const char *pm_rhost(struct pm_ctx *c)
{
    const void *rhost = NULL;

    if (pam_get_item(c->pamh, PAM_RHOST, &rhost) != PAM_SUCCESS || rhost == NULL)
        return NULL;
    return rhost;
}

/* Is the client in [otp] trusted_networks? No address is not trusted. */
static bool pm_trusted(struct pm_ctx *c, const char *rhost)
{
    char **nets = mk_config_list(c->cfg, "otp", "trusted_networks");
    bool trusted = false;
    struct mk_ip ip;

    if (rhost != NULL && mk_ip_parse(rhost, &ip) == 0)
        for (size_t i = 0; nets[i] != NULL && !trusted; i++) {
            struct mk_cidr net;
            const char *why;

            if (mk_cidr_parse(nets[i], &net, &why) != 0)
                pam_syslog(c->pamh, LOG_ERR, "[otp] trusted_networks: %s: %s", nets[i], why);
            else
                trusted = mk_cidr_contains(&net, &ip);
        }
    mk_str_array_free(nets);
    return trusted;
}

/* What the store may keep of the client's address. */
static char *pm_host_field(const char *rhost)
{
    if (rhost == NULL || *rhost == '\0' || strlen(rhost) > 64)
        return mk_xstrdup("-");
    for (const char *p = rhost; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
              || strchr(".:-[]%", *p) != NULL))
            return mk_xstrdup("-");
    return mk_xstrdup(rhost);
}

static bool pm_recovery_syntax(const char *s)
{
    if (strlen(s) != PM_RECOVERY_LEN || s[4] != '-')
        return false;
    for (int i = 0; i < PM_RECOVERY_LEN; i++)
        if (i != 4 && !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
                        || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* A code from the token, or an unused recovery code: 0 and r updated, or -1. */
static int pm_try_code(struct pm_ctx *c, struct mk_otp_record *r, const struct mk_otp_token *t,
                       const char *code, time_t now, const char **what)
{
    uint64_t matched;
    unsigned window = (unsigned) mk_config_num(c->cfg, "otp", t->kind == MK_OTP_TOTP
                                                                 ? "window" : "hotp_window");

    if (mk_otp_code_syntax(code, strlen(code), t->digits)) {
        if (mk_otp_verify(t, code, now, window, t->kind == MK_OTP_TOTP ? r->last : 0,
                          &matched) != 0)
            return -1;
        if (t->kind == MK_OTP_TOTP)
            r->last = matched;
        else
            r->counter = matched + 1;
        r->used = now;
        *what = "code";
        return 0;
    }
    if (!pm_recovery_syntax(code))
        return -1;
    for (size_t i = 0; i < r->nrecovery; i++)
        if (mk_otp_hash_check(code, &r->recovery[i])) {
            r->recovery[i] = r->recovery[--r->nrecovery];
            r->used = now;
            *what = "recovery code";
            return 0;
        }
    return -1;
}

static int pm_save(struct pm_ctx *c, struct mk_otp_lock *lock, struct mk_otp_record *r)
{
    char *error = NULL;

    if (mk_otp_store_write(lock, r, &error) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: cannot update the store: %s", c->user, error);
        free(error);
        return -1;
    }
    return 0;
}

static int pm_fail(struct pm_ctx *c, struct mk_otp_lock *lock, struct mk_otp_record *r,
                   time_t now, const char *why, const char *rhost)
{
    long long max = mk_config_num(c->cfg, "otp", "max_failures");
    long long lockout = mk_config_num(c->cfg, "otp", "lockout");

    r->failures++;
    r->failed = now;
    if (max > 0 && r->failures >= (unsigned long long) max) {
        r->locked = true;
        r->locked_until = lockout > 0 ? now + (time_t) lockout : 0;
    }
    if (max > 0)
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: refused: %s, from %s (failure %u of %lld)%s",
                   c->user, why, rhost != NULL ? rhost : "local", r->failures, max,
                   r->locked ? "; account locked" : "");
    else
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: refused: %s, from %s (failure %u)",
                   c->user, why, rhost != NULL ? rhost : "local", r->failures);
    if (pm_save(c, lock, r) != 0)
        return PAM_AUTHINFO_UNAVAIL;
    return r->locked ? PAM_MAXTRIES : PAM_AUTH_ERR;
}

/* The second factor was given: forward the password alone to the next module.
 * The code is spent either way; the failures start again only when nothing
 * is left to check here (with bind, pm_bind() does it after the password). */
static int pm_pass(struct pm_ctx *c, struct mk_otp_lock *lock, struct mk_otp_record *r,
                   const char *password, const char *what, const char *rhost)
{
    if (!c->bind) {
        r->failures = 0;
        r->failed = 0;
    }
    if (pm_save(c, lock, r) != 0)
        return PAM_AUTHINFO_UNAVAIL;
    if (password != NULL && pam_set_item(c->pamh, PAM_AUTHTOK, password) != PAM_SUCCESS)
        return PAM_AUTHINFO_UNAVAIL;
    pam_syslog(c->pamh, LOG_INFO, "user %s: second factor: %s, from %s", c->user, what,
               rhost != NULL ? rhost : "local");
    return PAM_IGNORE;
}

static int pm_apppass(struct pm_ctx *c, struct mk_otp_lock *lock, struct mk_otp_record *r,
                      const char *password, time_t now, const char *rhost)
{
    for (size_t i = 0; i < r->napppass; i++) {
        struct mk_otp_apppass *a = &r->apppass[i];

        if (strcmp(a->service, "*") != 0 && strcmp(a->service, c->service) != 0)
            continue;
        if (!mk_otp_hash_check(password, &a->hash))
            continue;
        a->used = now;
        free(a->host);
        a->host = pm_host_field(rhost);
        r->failures = 0;
        r->failed = 0;
        if (pm_save(c, lock, r) != 0)
            return PAM_AUTHINFO_UNAVAIL;
        pam_syslog(c->pamh, LOG_INFO, "user %s: application password %u (%s), service %s, "
                   "from %s", c->user, a->id, a->label, c->service,
                   rhost != NULL ? rhost : "local");
        return PAM_SUCCESS;
    }
    return PAM_IGNORE;
}

/* bind: the password itself, by an LDAP bind as the user; a wrong one counts. */
static int pm_bind(struct pm_ctx *c, struct mk_otp_lock *lock, struct mk_otp_record *r,
                   const char *password, time_t now, const char *rhost)
{
    if (c->duser == NULL) {
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: refused: not in the directory, from %s",
                   c->user, rhost != NULL ? rhost : "local");
        return PAM_USER_UNKNOWN;
    }
    switch (mk_directory_bind(c->dir, c->duser, password)) {
    case MK_DIR_FOUND:
        if (r->failures != 0) {
            r->failures = 0;
            r->failed = 0;
            if (pm_save(c, lock, r) != 0)
                return PAM_AUTHINFO_UNAVAIL;
        }
        if (c->debug)
            pam_syslog(c->pamh, LOG_DEBUG, "user %s: password accepted by the directory",
                       c->user);
        return PAM_SUCCESS;
    case MK_DIR_NOT_FOUND:
        return pm_fail(c, lock, r, now, "wrong password", rhost);
    default:
        pam_syslog(c->pamh, LOG_ERR, "user %s: the directory cannot check the password",
                   c->user);
        return PAM_AUTHINFO_UNAVAIL;
    }
}

/* The code in the password or at a second prompt. With optional (a trusted
 * network) a code at the end of the password is used and taken off, but
 * its absence is no failure and nothing is asked. */
static int pm_second_factor(struct pm_ctx *c, struct mk_otp_lock *lock, struct mk_otp_record *r,
                            char *password, time_t now, const char *rhost, bool optional)
{
    struct mk_otp_token t;
    const char *what = NULL, *resp_what = NULL;
    char *resp = NULL, *error = NULL;
    size_t len = strlen(password);
    int rc;

    if (mk_otp_store_key(c->store, false, &error) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: %s", c->user, error);
        free(error);
        return PAM_AUTHINFO_UNAVAIL;
    }
    if (mk_otp_unseal(c->store, c->user, "token", &r->token, &t) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: cannot open the token's secret (key file %s)",
                   c->user, mk_config_str(c->cfg, "otp", "key_file"));
        return PAM_AUTHINFO_UNAVAIL;
    }
    t.counter = r->counter;
    /* The code at the end of the password: IMAP, POP3 and SMTP cannot prompt. */
    if (len > t.digits && pm_try_code(c, r, &t, password + len - t.digits, now, &what) == 0) {
        password[len - t.digits] = '\0';
        rc = pm_pass(c, lock, r, password, what, rhost);
        goto done;
    }
    if (len > PM_RECOVERY_LEN
        && pm_try_code(c, r, &t, password + len - PM_RECOVERY_LEN, now, &what) == 0) {
        password[len - PM_RECOVERY_LEN] = '\0';
        rc = pm_pass(c, lock, r, password, what, rhost);
        goto done;
    }
    if (optional) {
        rc = PAM_IGNORE;
        goto done;
    }
    /* A second prompt, for services that can ask. Dovecot answers every
     * prompt with the password: the same answer again is no code. */
    if (c->prompt
        && pam_prompt(c->pamh, PAM_PROMPT_ECHO_OFF, &resp, "Verification code: ") == PAM_SUCCESS
        && resp != NULL && strcmp(resp, password) != 0
        && pm_try_code(c, r, &t, resp, now, &resp_what) == 0) {
        rc = pm_pass(c, lock, r, NULL, resp_what, rhost);
        goto done;
    }
    rc = pm_fail(c, lock, r, now, "no valid second factor", rhost);
done:
    if (resp != NULL) {
        OPENSSL_cleanse(resp, strlen(resp));
        free(resp);
    }
    OPENSSL_cleanse(&t, sizeof(t));
    return rc;
}

int pm_auth(struct pm_ctx *c)
{
    enum mk_otp_policy policy;
    struct mk_otp_record r;
    struct mk_otp_lock *lock;
    const char *source = NULL, *tok = NULL, *rhost = pm_rhost(c);
    char *error = NULL, *password;
    time_t now = time(NULL);
    bool exempt, need, cleared = false;
    int rc;

    if ((rc = pm_lookup(c)) != PAM_SUCCESS)
        return rc;
    if (mk_otp_policy_of(c->cfg, c->duser, &policy, &source, &error) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "%s", error);
        free(error);
        return PAM_AUTHINFO_UNAVAIL;
    }
    exempt = policy == MK_OTP_EXEMPT_TRUSTED && pm_trusted(c, rhost);
    if ((rc = pam_get_authtok(c->pamh, PAM_AUTHTOK, &tok, NULL)) != PAM_SUCCESS)
        return rc;
    if (tok == NULL)
        return PAM_AUTH_ERR;
    if (mk_otp_store_read(c->store, c->user, &r, &error) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: %s", c->user, error);
        free(error);
        return PAM_AUTHINFO_UNAVAIL;
    }
    if (c->bind && c->duser == NULL && r.napppass == 0) {
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: refused: not in the directory, from %s",
                   c->user, rhost != NULL ? rhost : "local");
        mk_otp_record_free(&r);
        return PAM_USER_UNKNOWN;
    }
    need = !exempt && (r.token.present || policy != MK_OTP_OPTIONAL);
    if (!need && !r.token.present && r.napppass == 0 && !r.locked && !c->bind) {
        if (c->debug)
            pam_syslog(c->pamh, LOG_DEBUG, "user %s: no second factor needed (policy %s, %s)%s",
                       c->user, mk_otp_policy_name(policy), source,
                       exempt ? ", trusted network" : "");
        mk_otp_record_free(&r);
        return PAM_IGNORE;
    }
    mk_otp_record_free(&r);

    /* From here on under the user's lock: two logins take turns. */
    if ((lock = mk_otp_store_lock(c->store, c->user, &r, &error)) == NULL) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: %s", c->user, error);
        free(error);
        return PAM_AUTHINFO_UNAVAIL;
    }
    if (r.locked && r.locked_until != 0 && now >= r.locked_until) {
        cleared = true;
        r.locked = false;
        r.locked_until = 0;
        r.failures = 0;
        r.failed = 0;
    }
    if (r.locked) {
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: refused: account locked %s, from %s",
                   c->user, r.locked_until != 0 ? "for a while" : "until an administrator unlocks it",
                   rhost != NULL ? rhost : "local");
        rc = PAM_MAXTRIES;
        goto out;
    }
    password = mk_xstrdup(tok);
    rc = pm_apppass(c, lock, &r, password, now, rhost);
    if (rc == PAM_IGNORE) {
        need = !exempt && (r.token.present || policy != MK_OTP_OPTIONAL);
        if (!need) {
            /* A lock that ran out was cleared above: keep it so. */
            if (cleared && pm_save(c, lock, &r) != 0)
                rc = PAM_AUTHINFO_UNAVAIL;
            else if (r.token.present)   /* exempt, but used to adding the code */
                rc = pm_second_factor(c, lock, &r, password, now, rhost, true);
            if (rc == PAM_IGNORE && c->bind)
                rc = pm_bind(c, lock, &r, password, now, rhost);
        } else if (!r.token.present) {
            pam_syslog(c->pamh, LOG_NOTICE, "user %s: refused: policy %s (%s) and no second "
                       "factor enrolled, from %s", c->user, mk_otp_policy_name(policy), source,
                       rhost != NULL ? rhost : "local");
            rc = PAM_AUTH_ERR;
        } else {
            rc = pm_second_factor(c, lock, &r, password, now, rhost, false);
            if (rc == PAM_IGNORE && c->bind)
                rc = pm_bind(c, lock, &r, password, now, rhost);
        }
    }
    OPENSSL_cleanse(password, strlen(password));
    free(password);
out:
    mk_otp_store_unlock(lock);
    mk_otp_record_free(&r);
    return rc;
}
