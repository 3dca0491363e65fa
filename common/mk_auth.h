/*
 * NAME
 *	mk_auth 3h
 * SUMMARY
 *	check a user's password with Dovecot's authentication service
 * SYNOPSIS
 *	#include "mk_auth.h"
 *
 *	int	mk_auth_check(const char *socket_path, const char *service,
 *			      const char *user, const char *password,
 *			      char **canonical, char **error);
 * DESCRIPTION
 *	Administration commands that act for a user (mailkeep recall -a)
 *	check who that user is the way the user's mail client would be
 *	checked: Dovecot's auth-client socket (the same passdb, the same
 *	policy, PAM and its second factor included), with the PLAIN
 *	mechanism, as service service, marked as coming from a secure
 *	local connection. The socket must be readable and writable by the
 *	caller (root, or the socket's group).
 *
 *	mk_auth_check() returns 1 when Dovecot accepts the password, and
 *	sets *canonical (when not NULL) to the user name Dovecot answered
 *	with; 0 when it refuses it, with Dovecot's reason, or "wrong
 *	password", in *error; -1 when it could not ask (no socket, a
 *	protocol error, 10 seconds without an answer), with the reason in
 *	*error. A user or password with a tab, newline or NUL is refused
 *	without asking.
 */
#ifndef MK_AUTH_H
#define MK_AUTH_H

int mk_auth_check(const char *socket_path, const char *service, const char *user,
                  const char *password, char **canonical, char **error);

#endif
