/*
 * NAME
 *	mk_otppolicy 3h
 * SUMMARY
 *	who must give a second factor, and the state of a password
 * SYNOPSIS
 *	#include "mk_otppolicy.h"
 *
 *	int	mk_otp_policy_of(const struct mk_config *cfg, const struct mk_dir_user *user,
 *				 enum mk_otp_policy *policy, const char **source, char **error);
 *	int	mk_otp_policy_parse(const char *name, enum mk_otp_policy *policy);
 *	const char *mk_otp_policy_name(enum mk_otp_policy policy);
 *	void	mk_password_state(const struct mk_config *cfg, const struct mk_otp_record *r,
 *				  const struct mk_dir_user *user, time_t now,
 *				  struct mk_password_state *state);
 *	int	mk_generalized_time(const char *text, time_t *t);
 * DESCRIPTION
 *	The second-factor policy of a user is, first found: the user's own
 *	otp_policy in the directory (LDAP mailkeepOTPPolicy); the strictest
 *	policy among the groups named in [otp] group_policy (GROUP:POLICY)
 *	that the user belongs to; [otp] policy. *source says which
 *	("user", "group", "default"). user may be NULL (not in the
 *	directory). A value that is not a policy fails with a message.
 *
 *	    required		a second factor at every login
 *	    exempt-trusted	the same, except from [otp] trusted_networks
 *	    optional		a second factor when the user has enrolled one
 *
 *	An application password stands for password and second factor
 *	under every policy.
 *
 *	mk_password_state() puts together what the store (r, may be NULL)
 *	and the directory know of a password: when it was last changed
 *	(the later of the store's "changed" and ppolicy's pwdChangedTime;
 *	0 unknown), whether a change is required and why ("reset": an
 *	administrator reset it, in the store or ppolicy's pwdReset;
 *	"first": [password] must_change_first and no change on record;
 *	"expired": older than [password] max_age), and when it expires
 *	(0: never) and whether that is within [password] warn_age. A reset
 *	recorded in the store is undone by a later change made anywhere.
 *
 *	mk_generalized_time() reads an LDAP GeneralizedTime in UTC
 *	("20261123094500Z", fractions allowed), returning 0 or -1.
 */
#ifndef MK_OTPPOLICY_H
#define MK_OTPPOLICY_H

#include <stdbool.h>
#include <time.h>

#include "mk_config.h"
#include "mk_directory.h"
#include "mk_otpstore.h"

enum mk_otp_policy { MK_OTP_OPTIONAL, MK_OTP_EXEMPT_TRUSTED, MK_OTP_REQUIRED };

struct mk_password_state {
    time_t changed;                     /* 0: unknown */
    bool must_change;
    const char *reason;                 /* "reset", "first", "expired", or NULL */
    time_t expires;                     /* 0: never */
    bool warn;                          /* expires within warn_age */
};

int mk_otp_policy_of(const struct mk_config *cfg, const struct mk_dir_user *user,
                     enum mk_otp_policy *policy, const char **source, char **error);
int mk_otp_policy_parse(const char *name, enum mk_otp_policy *policy);
const char *mk_otp_policy_name(enum mk_otp_policy policy);
void mk_password_state(const struct mk_config *cfg, const struct mk_otp_record *r,
                       const struct mk_dir_user *user, time_t now,
                       struct mk_password_state *state);
int mk_generalized_time(const char *text, time_t *t);

#endif
