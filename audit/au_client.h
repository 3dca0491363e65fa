/*
 * NAME
 *	au_client 3h
 * SUMMARY
 *	send records and usage updates to mailkeep-auditd, and wait until they are kept
 * SYNOPSIS
 *	#include "au_client.h"
 *
 *	struct au_client *au_client_open(const char *socket_path, char **error);
 *	int	au_client_send(struct au_client *c, char kind, const json_t *obj,
 *			       char **error);
 *	int	au_client_sync(struct au_client *c, char **error);
 *	uint64_t au_client_seq(const struct au_client *c);
 *	void	au_client_close(struct au_client *c);
 *
 *	int	au_client_record(const char *socket_path, const json_t *record,
 *				 int timeout_ms, uint64_t *seq, char **error);
 * DESCRIPTION
 *	For the programs other than the Dovecot plugins that feed the
 *	daemon (mailkeep usage purge and scan). The protocol is
 *	docs/audit-protocol.md.
 *
 *	au_client_open() connects to the daemon's socket. au_client_send()
 *	checks obj as the daemon will (au_proto_parse(): for kind 'A' an
 *	audit record, "op", "user", no reserved key, no null or real; for
 *	'U' a usage update) and sends it as one line; nothing is waited
 *	for. au_client_sync() sends an S line and waits for its answer: when
 *	it returns 0, everything sent on this connection before is on disk,
 *	and au_client_seq() is the log's last sequence number then (the
 *	last record's, or a later one). It fails when the daemon refused a
 *	line sent since the last sync, could not keep it, closed the
 *	connection or did not answer in 30 seconds; a caller that must not
 *	act without its record should not act then. au_client_close()
 *	closes the connection (what was sent is kept all the same).
 *
 *	au_client_record() does all of it for one audit record, waiting at
 *	most timeout_ms (0: 30 seconds), and sets *seq (when seq is not
 *	NULL).
 *
 *	The functions that take error return -1 (or NULL) with an allocated
 *	reason in *error, fit for a person: the socket and what went wrong
 *	("is mailkeep-auditd running?", "refused: ...").
 */
#ifndef AU_CLIENT_H
#define AU_CLIENT_H

#include <stdint.h>

#include <jansson.h>

struct au_client;

struct au_client *au_client_open(const char *socket_path, char **error);
int au_client_send(struct au_client *c, char kind, const json_t *obj, char **error);
int au_client_sync(struct au_client *c, char **error);
uint64_t au_client_seq(const struct au_client *c);
void au_client_close(struct au_client *c);

int au_client_record(const char *socket_path, const json_t *record, int timeout_ms,
                     uint64_t *seq, char **error);

#endif
