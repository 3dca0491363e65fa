/*
 * NAME
 *	ar_query 3h
 * SUMMARY
 *	the archive search language, compiled to one SQLite statement
 * SYNOPSIS
 *	#include "ar_query.h"
 *
 *	struct ar_query *ar_query_parse(const char *text, char **error);
 *	void	ar_query_free(struct ar_query *q);
 *	int	ar_query_compile(const struct ar_query *q, long utc_offset,
 *				 const char *scope_sql, struct ar_sql *out, char **error);
 *	int	ar_sql_bind(sqlite3_stmt *st, const struct ar_sql *s, int first_index);
 *	void	ar_sql_free(struct ar_sql *s);
 * DESCRIPTION
 *	The language of "mailkeep archive search":
 *
 *	    query   = or
 *	    or	    = and { "OR" and }
 *	    and	    = unary { ["AND"] unary }	(juxtaposition is AND)
 *	    unary   = ("NOT" | "-") unary | "(" or ")" | term
 *	    term    = [field ":"] value ["*"]
 *	    value   = word | '"' phrase '"'
 *
 *	OR, AND and NOT are operators only in upper case; NOT binds
 *	tighter than AND, AND tighter than OR. A word runs to the next
 *	space (U+3000 too), parenthesis or quote. A word or phrase is
 *	searched as a phrase of its tokens (see ar_fts(3h)): alice@example.com
 *	must appear as alice, example, com in a row, 個資法 as 個資 then 資法.
 *	A trailing * makes the last token a prefix (report*). A term that
 *	is one CJK character is searched as the prefix "個" *, which finds
 *	it anywhere (a phrase that mixes it with other words may miss it
 *	where it starts a longer run).
 *
 *	Fields, case-insensitive:
 *	    from:X	envelope sender or From header
 *	    to:X	envelope recipients or To header
 *	    cc:X, bcc:X, subject:X, body:X
 *	    attachment:X  attachment names or their text
 *	    date:2026-03-01, date:2026-03, date:2026	that day, month, year
 *	    date:A..B	from the start of A to the end of B (either may be
 *			left out); '/' may separate the parts of a date
 *	    date:>=A, date:>A, date:<A, date:<=A
 *	    after:A	date:>=A (on or after that day)
 *	    before:A	date:<A (before that day)
 *	    size:>N, size:>=N, size:<N, size:<=N, size:N..M
 *			bytes; suffixes k, M, G (powers of 1024, an
 *			optional B, decimals allowed: 1.5M)
 *	    direction:inbound|outbound|internal|unknown
 *	    has:attachment
 *	Without a field a word searches every text column. Days are local
 *	days at utc_offset seconds east of UTC (28800 for Taiwan).
 *
 *	ar_query_parse() returns the parsed query, or NULL and an
 *	allocated message in *error: "position 12: unknown field \"form\"
 *	(fields: ...)", "position 5: unbalanced parenthesis", "position 6:
 *	date \"2026-13-01\": not a date", "empty query". Positions count
 *	characters from 1. A query is at most AR_QUERY_MAX_LEN bytes,
 *	AR_QUERY_MAX_TERMS terms and AR_QUERY_MAX_DEPTH levels of
 *	parentheses and negations.
 *
 *	ar_query_compile() fills *out with one SELECT statement and its
 *	parameters, or returns -1 with an allocated message in *error. The
 *	statement returns one column, id (messages.id), of the messages
 *	that match and are not hidden, newest first, and ends with
 *	"LIMIT ? OFFSET ?". Its shapes:
 *
 *	At least one conjunct is text (the usual case): FTS5 drives,
 *	walking its doclists newest first and stopping after a page; the
 *	text conjuncts, OR and NOT among them included, make one MATCH.
 *	    SELECT fts.rowid AS id FROM fts CROSS JOIN messages AS m
 *	    ON m.id = fts.rowid WHERE [(scope) AND] fts MATCH ?
 *	    AND m.hidden = 0 [AND fts.rowid >= ? AND fts.rowid < ?] [AND ...]
 *	    ORDER BY fts.rowid DESC LIMIT ? OFFSET ?
 *	No text conjunct: messages are scanned by id, newest first (a date
 *	is a range of ids: time * 2^20):
 *	    SELECT m.id AS id FROM messages AS m WHERE [(scope) AND]
 *	    m.hidden = 0 [AND ...] ORDER BY m.id DESC LIMIT ? OFFSET ?
 *	No text conjunct, but an OR with text alternatives: one arm of the
 *	shapes above (without ORDER BY) per kind of alternative, ANDed
 *	with the other conjuncts, "arm UNION arm ... ORDER BY 1 DESC
 *	LIMIT ? OFFSET ?", which SQLite merges without sorting.
 *	Text elsewhere (under NOT alone, or in a nested OR with other
 *	terms) becomes m.id [NOT] IN (SELECT rowid FROM fts WHERE fts
 *	MATCH ?), which reads every hit of that text: slower for common
 *	words.
 *
 *	Everything the user typed is bound as a parameter, and inside a
 *	MATCH expression is a quoted FTS5 string: no query can inject SQL
 *	or make an FTS5 syntax error. scope_sql, when not NULL, is a
 *	condition written by trusted code on the messages columns (alias
 *	m), ANDed into every arm; its own parameters, if any, must be
 *	numbered ?1 to ?k (it may appear more than once), and the
 *	statement's own parameters then follow from k + 1.
 *
 *	ar_sql_bind() binds the parameters to st from first_index on (1,
 *	or k + 1 after a scope's ?1..?k) and returns the index of the LIMIT
 *	placeholder (OFFSET is the next one), or -1 when SQLite refuses a
 *	binding. ar_sql_free() frees what *s holds and empties it.
 */
#ifndef AR_QUERY_H
#define AR_QUERY_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#define AR_QUERY_MAX_LEN	4096
#define AR_QUERY_MAX_TERMS	64
#define AR_QUERY_MAX_DEPTH	32

struct ar_query;

enum ar_sql_type { AR_SQL_TEXT, AR_SQL_INT };

struct ar_sql_param {
    enum ar_sql_type type;
    char *text;                         /* AR_SQL_TEXT */
    int64_t value;                      /* AR_SQL_INT */
};

struct ar_sql {
    char *sql;
    struct ar_sql_param *params;
    size_t nparams;
};

struct ar_query *ar_query_parse(const char *text, char **error);
void ar_query_free(struct ar_query *q);
int ar_query_compile(const struct ar_query *q, long utc_offset, const char *scope_sql,
                     struct ar_sql *out, char **error);
int ar_sql_bind(sqlite3_stmt *st, const struct ar_sql *s, int first_index);
void ar_sql_free(struct ar_sql *s);

#endif
