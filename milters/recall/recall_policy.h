/*
 * NAME
 *	recall_policy 3h
 * SUMMARY
 *	mailkeep-recall's rules: who owns a message, how long undo-send holds it
 * SYNOPSIS
 *	#include "recall_policy.h"
 *
 *	struct recall_policy *recall_policy_create(const struct mk_config *cfg, char **error);
 *	void	recall_policy_free(struct recall_policy *p);
 *	char	*recall_owner(struct mk_directory *dir, const struct mk_origin *origin,
 *			      const char *sasl_login, const char *sender,
 *			      enum mk_dir_status *status);
 *	enum mk_dir_status recall_undo_delay(const struct recall_policy *p,
 *					     struct mk_directory *dir, const char *owner,
 *					     long long *seconds);
 * DESCRIPTION
 *	recall_policy_create() reads [recall]: the undo-send delays
 *	(undo_send, undo_send_groups, undo_send_max) and the domain of the
 *	Message-IDs it adds; it fails, with a reason, on a group entry that
 *	is not GROUP:DURATION.
 *
 *	recall_owner() names the user who may recall a message as its
 *	sender (lower case), or returns NULL when nobody may: the SASL
 *	login when the client authenticated (the user who sent it, or who
 *	forwarded it: not the header From); otherwise, for mail of trusted
 *	origin (trusted network, originating daemon, local submission), the
 *	envelope sender when its domain is local; otherwise nobody (mail
 *	from outside). *status is MK_DIR_TEMPFAIL when the directory could
 *	not say whether the sender's domain is local.
 *
 *	recall_undo_delay() sets *seconds to how long the owner's mail to
 *	external recipients is held: the owner's own "undo_send=DURATION"
 *	option (directory attribute option) when it has one, else the
 *	longest delay of the groups in undo_send_groups it belongs to, else
 *	undo_send; never more than undo_send_max. It returns
 *	MK_DIR_TEMPFAIL when the directory cannot answer (the message must
 *	then be tempfailed), else MK_DIR_FOUND.
 */
#ifndef RECALL_POLICY_H
#define RECALL_POLICY_H

#include "mk_config.h"
#include "mk_direction.h"
#include "mk_directory.h"

struct recall_group_delay {
    char *group;
    long long seconds;
};

struct recall_policy {
    long long undo_default, undo_max;
    struct recall_group_delay *groups;
    size_t ngroups;
    char *id_domain;                    /* for the Message-IDs it adds */
};

struct recall_policy *recall_policy_create(const struct mk_config *cfg, char **error);
void recall_policy_free(struct recall_policy *p);
char *recall_owner(struct mk_directory *dir, const struct mk_origin *origin,
                   const char *sasl_login, const char *sender, enum mk_dir_status *status);
enum mk_dir_status recall_undo_delay(const struct recall_policy *p, struct mk_directory *dir,
                                     const char *owner, long long *seconds);

#endif
