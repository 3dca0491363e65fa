/*
 * NAME
 *	ar_fts 3h
 * SUMMARY
 *	the archive's full-text tokenizer: words, and CJK text as bigrams
 * SYNOPSIS
 *	#include "ar_fts.h"
 *
 *	int	ar_fts_register(sqlite3 *db, char **error);
 *	void	ar_tokenize(const char *text, size_t len,
 *			    int (*cb)(void *arg, const char *token, size_t len,
 *				      int start, int end),
 *			    void *arg);
 *	bool	ar_fts_cjk(const char *s, size_t len);
 * DESCRIPTION
 *	ar_fts_register() registers the FTS5 tokenizer "mkcjk" with db
 *	(CREATE VIRTUAL TABLE ... USING fts5(..., tokenize='mkcjk')). It
 *	takes no arguments. It returns 0, or -1 with an allocated message
 *	in *error when db has no FTS5. Register it on every connection
 *	that reads or writes the index.
 *
 *	The rules, which the index depends on (changing them means
 *	rebuilding the index):
 *
 *	Runs of CJK characters - ideographs (unified, extensions A to H,
 *	compatibility, radicals, 々 〇), kana, bopomofo, hangul, and the
 *	private use area, where Big5 user-defined characters (造字, often
 *	in people's names) land after conversion - give overlapping
 *	bigrams: 個資法 gives 個資 at position 0 and 資法 at position 1.
 *	So a two-character word is found inside any longer run, and a
 *	longer query string becomes a phrase of bigrams that must be
 *	adjacent. A run of one character gives that character. A run
 *	of two or more ends, in documents (not in queries), with its last
 *	character alone as a synonym of the last bigram (FTS5_TOKEN_-
 *	COLOCATED: same position), so that every character of a run
 *	starts some token.
 *
 *	Everything else is cut into words of letters and digits, any
 *	script, including combining marks. Words are case-folded (ASCII,
 *	Latin-1, Latin Extended-A, Greek, Cyrillic; accents are kept) and
 *	full-width letters and digits become ASCII (Ａ１ -> a1). Any other
 *	character separates: alice@example.com gives alice, example, com;
 *	ID號碼A123 gives id, 號碼, 碼 (document only), a123. Variation
 *	selectors, joiners and the soft hyphen are ignored. A word is cut
 *	at AR_FTS_MAX_TOKEN bytes (the same on both sides, so long words
 *	still match). Invalid UTF-8 bytes separate and are skipped.
 *
 *	A single CJK character cannot be searched as a token (documents
 *	hold bigrams): search it as the prefix query "個" *, which finds
 *	every bigram it starts and, through the run-end synonyms, every
 *	place it ends a run - that is, every occurrence. ar_query does
 *	this for a term that is one CJK character; ar_fts_cjk() tells
 *	whether s is exactly one CJK character.
 *
 *	ar_tokenize() applies the same rules (as for a document, run-end
 *	characters included) without SQLite and calls cb for each token,
 *	in order, with the folded token (not NUL-terminated, valid during
 *	the call) and its byte range [start, end) in text. A run-end
 *	character comes right after the bigram it is a synonym of. cb
 *	returns 0 to go on, anything else to stop. Text longer than
 *	INT_MAX bytes is cut there. Nothing is allocated.
 */
#ifndef AR_FTS_H
#define AR_FTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>

#define AR_FTS_TOKENIZER	"mkcjk"
#define AR_FTS_MAX_TOKEN	64

int ar_fts_register(sqlite3 *db, char **error);
void ar_tokenize(const char *text, size_t len,
                 int (*cb)(void *arg, const char *token, size_t len, int start, int end),
                 void *arg);
bool ar_fts_cjk(const char *s, size_t len);

#endif
