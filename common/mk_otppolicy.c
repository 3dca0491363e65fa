/*
 * mk_otppolicy - second-factor policy and password state. See mk_otppolicy.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mk_otppolicy.h"
#include "mk_util.h"

static const char *const mk_otp_policy_names[] = {"optional", "exempt-trusted", "required"};

int mk_otp_policy_parse(const char *name, enum mk_otp_policy *policy)
{
    for (unsigned i = 0; i < 3; i++)
        if (mk_str_iequal(name, mk_otp_policy_names[i])) {
            *policy = (enum mk_otp_policy) i;
            return 0;
        }
    return -1;
}

const char *mk_otp_policy_name(enum mk_otp_policy policy)
{
    return mk_otp_policy_names[policy <= MK_OTP_REQUIRED ? policy : 0];
}

int mk_otp_policy_of(const struct mk_config *cfg, const struct mk_dir_user *user,
                     enum mk_otp_policy *policy, const char **source, char **error)
{
    const char *own = user != NULL ? mk_dir_user_value(user, "otp_policy") : NULL;
    char **groups;
    bool found = false;

    if (own != NULL) {
        if (mk_otp_policy_parse(own, policy) != 0) {
            *error = mk_xasprintf("%s: otp_policy \"%s\" is not required, optional or "
                                  "exempt-trusted", user->address, own);
            return -1;
        }
        *source = "user";
        return 0;
    }
    groups = mk_config_list(cfg, "otp", "group_policy");
    for (size_t i = 0; groups[i] != NULL; i++) {
        char *colon = strrchr(groups[i], ':');
        enum mk_otp_policy p;

        if (colon == NULL || colon == groups[i] || mk_otp_policy_parse(colon + 1, &p) != 0) {
            *error = mk_xasprintf("[otp] group_policy: \"%s\" is not GROUP:POLICY", groups[i]);
            mk_str_array_free(groups);
            return -1;
        }
        *colon = '\0';
        if (user != NULL && mk_dir_user_in_group(user, groups[i]) && (!found || p > *policy)) {
            *policy = p;
            found = true;
            *source = "group";
        }
    }
    mk_str_array_free(groups);
    if (found)
        return 0;
    if (mk_otp_policy_parse(mk_config_str(cfg, "otp", "policy"), policy) != 0)
        *policy = MK_OTP_OPTIONAL;      /* the schema allows nothing else */
    *source = "default";
    return 0;
}

static int mk_digits(const char **p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

int mk_generalized_time(const char *text, time_t *t)
{
    const char *p = text;
    struct tm tm;
    int year, mon, day, hour, min, sec;
    time_t v;

    memset(&tm, 0, sizeof(tm));
    if ((year = mk_digits(&p, 4)) < 1970 || (mon = mk_digits(&p, 2)) < 1 || mon > 12
        || (day = mk_digits(&p, 2)) < 1 || day > 31 || (hour = mk_digits(&p, 2)) < 0
        || hour > 23 || (min = mk_digits(&p, 2)) < 0 || min > 59 || (sec = mk_digits(&p, 2)) < 0
        || sec > 60)
        return -1;
    if (*p == '.' || *p == ',') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    if ((v = timegm(&tm)) == (time_t) -1)
        return -1;
    *t = v;
    return 0;
}

void mk_password_state(const struct mk_config *cfg, const struct mk_otp_record *r,
                       const struct mk_dir_user *user, time_t now,
                       struct mk_password_state *state)
{
    long long max_age = mk_config_num(cfg, "password", "max_age");
    long long warn_age = mk_config_num(cfg, "password", "warn_age");
    const char *ldap_changed = user != NULL ? mk_dir_user_value(user, "password_changed") : NULL;
    const char *ldap_reset = user != NULL ? mk_dir_user_value(user, "password_reset") : NULL;
    time_t t;

    memset(state, 0, sizeof(*state));
    if (r != NULL)
        state->changed = r->changed;
    if (ldap_changed != NULL && mk_generalized_time(ldap_changed, &t) == 0 && t > state->changed)
        state->changed = t;
    if (ldap_reset != NULL && mk_str_iequal(ldap_reset, "TRUE")) {
        state->must_change = true;
        state->reason = "reset";
    } else if (r != NULL && r->must_change != NULL
               && (r->must_changed == 0 || state->changed <= r->must_changed)) {
        state->must_change = true;
        state->reason = strcmp(r->must_change, "first") == 0 ? "first" : "reset";
    } else if (state->changed == 0 && mk_config_bool(cfg, "password", "must_change_first")) {
        state->must_change = true;
        state->reason = "first";
    }
    if (max_age > 0 && state->changed != 0) {
        state->expires = state->changed + (time_t) max_age;
        if (now >= state->expires && !state->must_change) {
            state->must_change = true;
            state->reason = "expired";
        } else if (now < state->expires && state->expires - now <= warn_age) {
            state->warn = true;
        }
    }
}
