/*
 * NAME
 *	pm 3h
 * SUMMARY
 *	pam_mailkeep: what the auth, account and password parts share
 * SYNOPSIS
 *	#include "pm.h"
 *
 *	int	pm_open(struct pm_ctx *c, pam_handle_t *pamh, int argc, const char **argv);
 *	void	pm_close(struct pm_ctx *c);
 *	int	pm_lookup(struct pm_ctx *c);
 *	int	pm_auth(struct pm_ctx *c);
 *	int	pm_account(struct pm_ctx *c);
 *	int	pm_password(struct pm_ctx *c, int flags);
 * DESCRIPTION
 *	pm_open() reads the module's arguments and mailkeep.conf, gets the
 *	user name (folded to lower case) and opens the second-factor store;
 *	pm_lookup() asks the directory for the user (c->duser stays NULL for
 *	a user it does not know). The configuration and the directory's
 *	answer are kept on the PAM handle for the transaction's later calls
 *	(auth, then account), for the same file and user. Both return PAM_SUCCESS or a PAM error
 *	after logging why; pm_close() frees what they took.
 *
 *	The arguments are:
 *	    config=FILE	mailkeep.conf (default $(sysconfdir)/mailkeep/mailkeep.conf)
 *	    prompt		auth: ask for the code in a second prompt when the
 *			password does not carry it (interactive services)
 *	    record		password: record a change that the module
 *			before made (history, change time)
 *	    debug		log every decision, not only refusals
 *	    bind		auth: check the password too, by an LDAP bind as
 *			the user's entry (the module then decides alone)
 *
 *	pm_auth(), pm_account() and pm_password() are the three management
 *	groups, returning what PAM returns to the application.
 */
#ifndef PM_H
#define PM_H

#include <stdbool.h>
#include <security/pam_modules.h>

#include "mk_config.h"
#include "mk_directory.h"
#include "mk_otpstore.h"

struct pm_ctx {
    pam_handle_t *pamh;
    const char *service;
    char *user;
    const char *config_path;
    struct mk_config *cfg;
    struct mk_directory *dir;
    struct mk_dir_user *duser;
    struct mk_otp_store *store;
    bool prompt;
    bool record;
    bool debug;
    bool bind;
    bool looked_up;                     /* pm_lookup() done (maybe by an earlier call) */
};

int pm_open(struct pm_ctx *c, pam_handle_t *pamh, int argc, const char **argv);
void pm_close(struct pm_ctx *c);
int pm_lookup(struct pm_ctx *c);
int pm_auth(struct pm_ctx *c);
int pm_account(struct pm_ctx *c);
int pm_password(struct pm_ctx *c, int flags);

#endif
