/*
 * NAME
 *	mk_direction 3h
 * SUMMARY
 *	message origin and direction: inbound, outbound, internal
 * SYNOPSIS
 *	#include "mk_direction.h"
 *
 *	struct mk_origin_policy *mk_origin_policy_create(const struct mk_config *cfg, char **error);
 *	void	mk_origin_policy_free(struct mk_origin_policy *policy);
 *	struct mk_origin mk_origin_classify(const struct mk_origin_policy *policy,
 *					const struct mk_ip *client, const char *sasl_login,
 *					const char *daemon_name);
 *	bool	mk_origin_trusted(const struct mk_origin *origin);
 *	const char *mk_origin_reason(const struct mk_origin *origin);
 *	enum mk_direction mk_direction_of(const struct mk_origin *origin, bool recipient_local);
 *	const char *mk_direction_name(enum mk_direction direction);
 *	int	mk_direction_parse(const char *name, enum mk_direction *direction);
 * DESCRIPTION
 *	The origin of a message is trusted when any of these holds:
 *	the client authenticated with SASL; its address is in
 *	[global] trusted_networks; the MTA's {daemon_name} macro is one of
 *	[global] originating_daemons (Postfix: -o milter_macro_daemon_name=
 *	ORIGINATING on the submission service); or the mail was submitted
 *	locally (Postfix presents non-SMTP mail as coming from 127.0.0.1,
 *	which the default trusted_networks covers; an unknown client address
 *	counts as local submission).
 *
 *	Direction is then decided per recipient:
 *	    untrusted origin			inbound
 *	    trusted origin, local recipient	internal
 *	    trusted origin, other recipient	outbound
 *	"Local" is what the directory says (mk_directory).
 *
 *	mk_origin_reason() names the first reason the origin is trusted
 *	("sasl", "network", "daemon", "local") or "none", for the log.
 */
#ifndef MK_DIRECTION_H
#define MK_DIRECTION_H

#include <stdbool.h>

#include "mk_addr.h"
#include "mk_config.h"

enum mk_direction { MK_INBOUND, MK_OUTBOUND, MK_INTERNAL };

struct mk_origin {
    bool authenticated;
    bool trusted_network;
    bool originating_daemon;
    bool local_submission;
};

struct mk_origin_policy;

struct mk_origin_policy *mk_origin_policy_create(const struct mk_config *cfg, char **error);
void mk_origin_policy_free(struct mk_origin_policy *policy);
struct mk_origin mk_origin_classify(const struct mk_origin_policy *policy,
                                    const struct mk_ip *client, const char *sasl_login,
                                    const char *daemon_name);
bool mk_origin_trusted(const struct mk_origin *origin);
const char *mk_origin_reason(const struct mk_origin *origin);
enum mk_direction mk_direction_of(const struct mk_origin *origin, bool recipient_local);
const char *mk_direction_name(enum mk_direction direction);
int mk_direction_parse(const char *name, enum mk_direction *direction);

#endif
