/*
 * NAME
 *	ar_spool 3h
 * SUMMARY
 *	the journal spool: captured messages with their envelopes, durable before acknowledged
 * SYNOPSIS
 *	#include "ar_spool.h"
 *
 *	char	*ar_envelope_format(const struct ar_envelope *e, size_t *len);
 *	int	ar_envelope_parse(const char *text, size_t len, struct ar_envelope *e,
 *				  char **error);
 *	void	ar_envelope_add_rcpt(struct ar_envelope *e, const char *rcpt,
 *				     const char *direction);
 *	const char *ar_envelope_direction(const struct ar_envelope *e);
 *	void	ar_envelope_free(struct ar_envelope *e);
 *
 *	int	ar_spool_prepare(const char *dir, char **error);
 *	int	ar_spool_begin(struct ar_spool_file *f, const char *dir, char **error);
 *	void	ar_spool_write(struct ar_spool_file *f, const void *data, size_t len);
 *	int	ar_spool_commit(struct ar_spool_file *f, const struct ar_envelope *e,
 *				char **error);
 *	void	ar_spool_abort(struct ar_spool_file *f);
 *
 *	int	ar_spool_list(const char *dir, char ***names, char **error);
 *	int	ar_spool_read(const char *dir, const char *name, struct ar_spool_item *it,
 *			      char **error);
 *	void	ar_spool_item_free(struct ar_spool_item *it);
 *	int	ar_spool_remove(const char *dir, const char *name, char **error);
 * DESCRIPTION
 *	The journal milter (mailkeep-journal) writes each message it sees
 *	into DIR/tmp/NAME as the bytes arrive, and at the end of the
 *	message appends its envelope and a fixed-size trailer, fsyncs the
 *	file, renames it into DIR/new/ and fsyncs that directory; only then
 *	does it let the MTA accept the message. A file in new/ is therefore
 *	always complete. NAME, the spool ID, is unique across hosts and
 *	time ("HOST.SECONDS.MICROS.PID.COUNT") and sorts in the order of
 *	capture; the archive records it, so an ingest interrupted after
 *	recording but before removing the file does not archive it twice.
 *
 *	A spool file is the message, exactly as received (headers as the
 *	MTA passed them, CRLF line ends), then the envelope text, then the
 *	trailer "\nMKJ1 " MESSAGE-LENGTH " " ENVELOPE-LENGTH "\n", both
 *	lengths as 20 decimal digits (48 bytes in all).
 *
 *	The envelope text is one "key value" line per field, values
 *	percent-encoded where a byte is a control character, a space, '%'
 *	or DEL: version, time (UNIX seconds), queue-id, sender (empty for
 *	the null sender), client (address, or "local"), client-name, helo,
 *	login (SASL), daemon, source ("journal" or "import"), origin (what
 *	an import came from) and one "rcpt ADDRESS DIRECTION" line per
 *	recipient, BCC recipients included. Unknown keys are an error, as
 *	is a missing version, time or sender, so a damaged envelope is
 *	never guessed at. The text is also what the archive stores as the
 *	envelope object: ar_envelope_format() always writes the same text
 *	for the same envelope.
 *
 *	ar_envelope_direction() is the message's direction for the index:
 *	"outbound" when any recipient is outbound (the message leaves the
 *	organisation), else that of the first recipient, "unknown" without
 *	recipients.
 *
 *	ar_spool_write() remembers the first error; ar_spool_commit()
 *	reports it (and removes the file), so a full disk or an I/O error
 *	shows at the end of the message, where the MTA can be told to try
 *	again. Every function returns 0 or -1 with an allocated
 *	"PATH: problem" in *error.
 *
 *	ar_spool_list() returns the names in new/, sorted, NULL-terminated
 *	(names of other shapes are left alone). ar_spool_read() maps a
 *	file and checks its trailer and envelope: a file that fails is
 *	reported, never half-read.
 */
#ifndef AR_SPOOL_H
#define AR_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ar_envelope {
    int64_t time;
    char *queue_id, *sender, *client, *client_name, *helo, *login, *daemon, *source, *origin;
    char **rcpts, **directions;         /* parallel, nrcpts each */
    size_t nrcpts;
};

struct ar_spool_file {
    int fd;
    char *dir, *name, *tmp_path;
    int error;                          /* first errno of a write, 0 */
    size_t len;                         /* message bytes written */
};

struct ar_spool_item {
    char *name;
    const char *msg;                    /* inside the mapping */
    size_t msg_len;
    struct ar_envelope env;
    void *map;
    size_t map_len;
};

char *ar_envelope_format(const struct ar_envelope *e, size_t *len);
int ar_envelope_parse(const char *text, size_t len, struct ar_envelope *e, char **error);
void ar_envelope_add_rcpt(struct ar_envelope *e, const char *rcpt, const char *direction);
const char *ar_envelope_direction(const struct ar_envelope *e);
void ar_envelope_free(struct ar_envelope *e);

int ar_spool_prepare(const char *dir, char **error);
int ar_spool_begin(struct ar_spool_file *f, const char *dir, char **error);
void ar_spool_write(struct ar_spool_file *f, const void *data, size_t len);
int ar_spool_commit(struct ar_spool_file *f, const struct ar_envelope *e, char **error);
void ar_spool_abort(struct ar_spool_file *f);

int ar_spool_list(const char *dir, char ***names, char **error);
int ar_spool_read(const char *dir, const char *name, struct ar_spool_item *it, char **error);
void ar_spool_item_free(struct ar_spool_item *it);
int ar_spool_remove(const char *dir, const char *name, char **error);

#endif
