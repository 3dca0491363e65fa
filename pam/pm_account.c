/*
 * pm_account - pam_mailkeep's account part: a locked account, a password
 * that must change (expired, reset by an administrator, first login).
 * See pam_mailkeep(8).
 */
#include "config.h"

#include <stdlib.h>
#include <syslog.h>
#include <time.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "mk_otppolicy.h"
#include "mk_otpstore.h"
#include "pm.h"

int pm_account(struct pm_ctx *c)
{
    struct mk_password_state st;
    struct mk_otp_record r;
    char *error = NULL;
    time_t now = time(NULL);
    int rc;

    if (pm_lookup(c) != PAM_SUCCESS)
        return PAM_PERM_DENIED;
    if (mk_otp_store_read(c->store, c->user, &r, &error) != 0) {
        pam_syslog(c->pamh, LOG_ERR, "user %s: %s", c->user, error);
        free(error);
        return PAM_PERM_DENIED;
    }
    if (r.locked && (r.locked_until == 0 || now < r.locked_until)) {
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: account locked", c->user);
        pam_error(c->pamh, "Your account is locked after too many failed logins.");
        rc = PAM_PERM_DENIED;
        goto out;
    }
    mk_password_state(c->cfg, &r, c->duser, now, &st);
    if (st.must_change) {
        pam_syslog(c->pamh, LOG_NOTICE, "user %s: refused until the password is changed (%s), "
                   "service %s", c->user, st.reason, c->service);
        if (st.reason[0] == 'e')
            pam_error(c->pamh, "Your password has expired: choose a new one.");
        else if (st.reason[0] == 'f')
            pam_error(c->pamh, "Choose a new password before your first login.");
        else
            pam_error(c->pamh, "Your password was reset by an administrator: choose a new one.");
        rc = PAM_NEW_AUTHTOK_REQD;
        goto out;
    }
    if (st.warn) {
        long days = (long) ((st.expires - now + 86399) / 86400);

        pam_info(c->pamh, "Your password expires in %ld day%s.", days, days == 1 ? "" : "s");
    }
    if (c->debug)
        pam_syslog(c->pamh, LOG_DEBUG, "user %s: account ok", c->user);
    rc = PAM_SUCCESS;
out:
    mk_otp_record_free(&r);
    return rc;
}
