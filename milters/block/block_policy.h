/*
 * NAME
 *	block_policy 3h
 * SUMMARY
 *	mailkeep-block's rules, independent of the milter protocol
 * SYNOPSIS
 *	#include "block_policy.h"
 *
 *	struct block_policy *block_policy_load(const struct mk_config *cfg, char **error);
 *	void	block_policy_free(struct block_policy *policy);
 *	const char *block_policy_file(const struct block_policy *policy, int i);
 *
 *	void	block_client_init(struct block_client *client, const struct block_policy *policy,
 *				  const struct mk_origin_policy *origin, const struct mk_ip *ip,
 *				  const char *daemon_name);
 *	void	block_client_authenticated(struct block_client *client,
 *				  const struct block_policy *policy, const char *login);
 *	void	block_check_client(const struct block_policy *policy, struct mk_rate *state,
 *				   const struct block_client *client, time_t now,
 *				   struct block_decision *d);
 *	void	block_check_sender(const struct block_policy *policy, struct mk_rate *state,
 *				   const struct block_client *client, const char *sender,
 *				   time_t now, struct block_decision *d);
 *	void	block_check_recipient(const struct block_policy *policy, struct mk_rate *state,
 *				      struct mk_directory *dir, const struct block_client *client,
 *				      const char *sender, const char *recipient, time_t now,
 *				      struct block_decision *d);
 * DESCRIPTION
 *	The checks run at the SMTP stage where their facts are known:
 *
 *	connect    allow_clients, then trusted origin (if exempt_trusted),
 *		   then a dictionary-attack ban (421, the client is told to
 *		   come back later), then bad_clients (554). Postfix answers a
 *		   refusal at connect with its own "554 ... not accepting
 *		   connections" and logs ours; with delay_client_reject the
 *		   milter gives its reply at HELO, MAIL and RCPT instead, so
 *		   the client sees the reason (as Postfix's own
 *		   smtpd_delay_reject does).
 *	MAIL FROM  the per-login rate limit (450; it applies to every
 *		   authenticated sender, exempt or not: it is what stops a
 *		   stolen account), then for clients that are not exempt the
 *		   ban, the per-client rate limit (450), allow_senders and
 *		   bad_senders (550).
 *	RCPT TO    for a recipient in a local domain: an unknown user is
 *		   refused (550 5.1.1; postmaster@ is never unknown) and
 *		   counted against the client; at
 *		   dictionary_limit within dictionary_window the client is
 *		   banned for dictionary_ban (421). A known user's personal
 *		   allow and block lists (directory attributes allowed_sender
 *		   and blocked_sender, and the file personal_list_dir/ADDRESS)
 *		   refuse the message for that recipient only (550) or, in
 *		   tag mode (the user's block_mode, else personal_action),
 *		   let it through marked for the recipient's Junk folder.
 *
 *	A client is exempt when it is on allow_clients, or its origin is
 *	trusted (network, originating daemon, local submission) and
 *	exempt_trusted is set, or it authenticated and exempt_authenticated
 *	is set. Allow lists always override block lists. Personal lists
 *	apply to everyone: they are the recipient's own choice.
 *
 *	Rates and bans are counted per client address, IPv6 per /64 (one
 *	host usually holds a whole /64), and per SASL login.
 *
 *	Each check fills in a decision: the verdict, the SMTP reply, and the
 *	rule that fired (a list file and line, or a named limit) for the log.
 *	A directory that cannot answer, or a pattern that cannot be
 *	evaluated, gives BLOCK_TEMPFAIL: never a guess.
 */
#ifndef BLOCK_POLICY_H
#define BLOCK_POLICY_H

#include <stdbool.h>
#include <time.h>

#include "mk_addr.h"
#include "mk_config.h"
#include "mk_direction.h"
#include "mk_directory.h"
#include "mk_list.h"
#include "mk_rate.h"

enum block_verdict {
    BLOCK_PASS,
    BLOCK_REJECT,                       /* 5xx */
    BLOCK_TEMPFAIL,                     /* 4xx, this command */
    BLOCK_DISCONNECT,                   /* 421, the session ends */
    BLOCK_TAG,                          /* accept, mark for the recipient's Junk */
};

enum block_action { BLOCK_ACTION_REJECT, BLOCK_ACTION_TAG };

struct block_policy {
    struct mk_list *bad_clients, *allow_clients, *bad_senders, *allow_senders;
    char *files[4];
    bool delay_client_reject;
    bool personal_lists;
    char *personal_list_dir;
    enum block_action personal_action;
    char *tag_header;
    bool reject_unknown;
    long long dict_limit, dict_window, dict_ban;
    long long client_rate_limit, client_rate_window;
    long long sender_rate_limit, sender_rate_window;
    bool exempt_trusted, exempt_authenticated;
};

struct block_client {
    struct mk_ip ip;
    char ip_text[MK_IP_TEXT_MAX];
    char rate_key[MK_IP_TEXT_MAX + 8];  /* the address, IPv6 as its /64 */
    struct mk_origin origin;
    bool allowed;                       /* on allow_clients */
    bool exempt;
    char login[256];                    /* SASL login, or "" */
};

struct block_decision {
    enum block_verdict verdict;
    const char *check;                  /* "bad_clients", "dictionary_limit", ... */
    const struct mk_rule *rule;         /* the list entry, when a list fired */
    const char *rcode, *xcode;
    char text[256];
};

struct block_policy *block_policy_load(const struct mk_config *cfg, char **error);
void block_policy_free(struct block_policy *policy);

void block_client_init(struct block_client *client, const struct block_policy *policy,
                       const struct mk_origin_policy *origin, const struct mk_ip *ip,
                       const char *daemon_name);
void block_client_authenticated(struct block_client *client, const struct block_policy *policy,
                                const char *login);
void block_check_client(const struct block_policy *policy, struct mk_rate *state,
                        const struct block_client *client, time_t now, struct block_decision *d);
void block_check_sender(const struct block_policy *policy, struct mk_rate *state,
                        const struct block_client *client, const char *sender, time_t now,
                        struct block_decision *d);
void block_check_recipient(const struct block_policy *policy, struct mk_rate *state,
                           struct mk_directory *dir, const struct block_client *client,
                           const char *sender, const char *recipient, time_t now,
                           struct block_decision *d);

#endif
