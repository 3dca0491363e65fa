/*
 * NAME
 *	au_proto 3h
 * SUMMARY
 *	the audit socket's lines: A (audit record), U (usage update), S (sync)
 * SYNOPSIS
 *	#include "au_proto.h"
 *
 *	int	au_proto_parse(const char *line, size_t len, struct au_proto_line *out,
 *			       char **error);
 *	void	au_proto_line_free(struct au_proto_line *l);
 *	bool	au_proto_audit_fast(const char *line, size_t len);
 *	char	*au_proto_members(const json_t *obj, size_t *len);
 *	int	au_proto_check_audit(const json_t *obj, char **error);
 *	bool	au_proto_op_valid(const char *op);
 *	bool	au_proto_token_valid(const char *token, size_t len);
 *	const char *au_proto_str(const json_t *obj, const char *key);
 *	bool	au_proto_int(const json_t *obj, const char *key, long long *value);
 * DESCRIPTION
 *	The contract is docs/audit-protocol.md. A client writes lines of at
 *	most AU_PROTO_MAX_LINE bytes, newline included, each a letter, a
 *	space and the rest:
 *	    A {json object}	an audit record
 *	    U {json object}	a usage update
 *	    S TOKEN		a sync request
 *
 *	au_proto_parse() takes one line without its newline (len bytes, at
 *	most AU_PROTO_MAX_LINE - 1; a NUL byte or a newline in it is
 *	refused) and fills *out: the kind, and for A and U the
 *	parsed object (out->obj, a new reference), for S the token. It
 *	returns 0, or -1 with an allocated one-line reason in *error that
 *	names the offending key or column, fit to send back as "E TEXT"
 *	(it never quotes the client's values). What it refuses:
 *	- A: not one JSON object (syntax, invalid UTF-8, a NUL in a string,
 *	  a key given twice); "op" missing or not 1 to AU_PROTO_MAX_OP
 *	  characters of [a-z-], or "checkpoint" (the daemon's own); "user"
 *	  missing or not a string; a reserved key at the top (seq, time,
 *	  prev, hash, sig, peer); a value, at any depth, that is null or
 *	  a real number; nesting deeper than AU_PROTO_MAX_DEPTH.
 *	- U: "kind" not mailbox, mailbox-delete, login or account; "user" missing or
 *	  empty; for mailbox: "mailbox_guid" (1 to 128 hex digits),
 *	  "mailbox" (a string), "messages" and "vsize" (integers, not
 *	  negative); for mailbox-delete: "mailbox_guid"; for login:
 *	  "service" (1 to 64 characters), "ip" (a string, optional).
 *	  Other keys are ignored.
 *	- S: a token that is not 1 to AU_PROTO_MAX_TOKEN characters of
 *	  [A-Za-z0-9_-].
 *	- any other first letter, or no space after it.
 *	au_proto_line_free() drops out->obj.
 *
 *	au_proto_audit_fast() tells, without allocating, that an A line is
 *	one au_proto_parse() accepts, already compact (its members, between
 *	the braces, are what the log keeps), and not one the usage database
 *	takes (read, copy, move): such a line needs no parsing. It says no
 *	to whatever it does not fully check (white space, \u escapes,
 *	nested objects, long numbers, many keys): the full path decides
 *	those.
 *
 *	For an A line whose object is already written the way
 *	au_proto_members() would write it (compact, integers, the short
 *	escapes: what the plugins send), out->members and out->members_len
 *	point at its members inside line, so that the daemon need not write
 *	the object again; otherwise out->members is NULL.
 *
 *	au_proto_check_audit() applies the A rules to an object built in
 *	memory (what au_client sends).
 *
 *	au_proto_members() writes an object compactly, its members in the
 *	order they were sent, without the enclosing braces: what the log
 *	keeps of a record. It returns an allocated string (its length in
 *	*len), or NULL when the object cannot be written.
 *
 *	au_proto_str() is a member's string value, or NULL when it is absent
 *	or not a string; au_proto_int() sets *value to an integer member and
 *	tells whether there was one.
 */
#ifndef AU_PROTO_H
#define AU_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define AU_PROTO_MAX_LINE	65536   /* bytes, the newline included */
#define AU_PROTO_MAX_TOKEN	32
#define AU_PROTO_MAX_OP		32
#define AU_PROTO_MAX_DEPTH	32
#define AU_PROTO_MAX_GUID	128
#define AU_PROTO_MAX_SERVICE	64

enum au_proto_kind {
    AU_PROTO_AUDIT = 'A',
    AU_PROTO_USAGE = 'U',
    AU_PROTO_SYNC = 'S',
};

struct au_proto_line {
    enum au_proto_kind kind;
    json_t *obj;                        /* A, U */
    const char *members;                /* A: inside the line, when compact */
    size_t members_len;
    char token[AU_PROTO_MAX_TOKEN + 1]; /* S */
};

int au_proto_parse(const char *line, size_t len, struct au_proto_line *out, char **error);
void au_proto_line_free(struct au_proto_line *l);
bool au_proto_audit_fast(const char *line, size_t len);
char *au_proto_members(const json_t *obj, size_t *len);
int au_proto_check_audit(const json_t *obj, char **error);
bool au_proto_op_valid(const char *op);
bool au_proto_token_valid(const char *token, size_t len);
const char *au_proto_str(const json_t *obj, const char *key);
bool au_proto_int(const json_t *obj, const char *key, long long *value);

#endif
