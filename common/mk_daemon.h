/*
 * NAME
 *	mk_daemon 3h
 * SUMMARY
 *	the life of a daemon: detach, pidfile, dropping privileges
 * SYNOPSIS
 *	#include "mk_daemon.h"
 *
 *	int	mk_daemon_detach(int *ready_fd);
 *	void	mk_daemon_ready(int *ready_fd, char status);
 *	int	mk_daemon_pidfile(const char *path, const char *progname);
 *	int	mk_daemon_drop_privileges(const char *user, const char *socket_path);
 * DESCRIPTION
 *	What the milters (mk_milter) and mailkeep-auditd share.
 *
 *	mk_daemon_detach() forks; the parent waits until the child reports
 *	with mk_daemon_ready() and exits with the status it reports (0 when
 *	ready, a sysexits(3) code when it failed), so that a start script
 *	that sees success can rely on the socket being open. The child
 *	starts a session, moves to / and points its standard descriptors at
 *	/dev/null; *ready_fd is its end of the pipe. It returns 0, or -1
 *	(errno set). mk_daemon_ready() is harmless when *ready_fd is -1
 *	(in the foreground) and sets it to -1.
 *
 *	mk_daemon_pidfile() writes the process ID into path and keeps the
 *	file open and locked until exit; it fails (-1, logged) when another
 *	process holds the lock.
 *
 *	mk_daemon_drop_privileges() becomes user (nothing to do when it is
 *	empty, or already that user), handing socket_path (when not NULL)
 *	over to it first, and checks that root cannot be regained. It
 *	returns 0, or -1 after logging why.
 */
#ifndef MK_DAEMON_H
#define MK_DAEMON_H

int mk_daemon_detach(int *ready_fd);
void mk_daemon_ready(int *ready_fd, char status);
int mk_daemon_pidfile(const char *path, const char *progname);
int mk_daemon_drop_privileges(const char *user, const char *socket_path);

#endif
