/*
 * NAME
 *	mk_list 3h
 * SUMMARY
 *	block and allow lists: client networks, sender addresses and domains
 * SYNOPSIS
 *	#include "mk_list.h"
 *
 *	struct mk_list *mk_list_parse(const char *source, const char *text, size_t len,
 *				      enum mk_list_kind kind, unsigned flags, char **errors);
 *	struct mk_list *mk_list_load(const char *path, enum mk_list_kind kind,
 *				     unsigned flags, char **errors);
 *	struct mk_list *mk_list_from_values(const char *source, char *const *values,
 *					    enum mk_list_kind kind, unsigned flags, char **errors);
 *	const struct mk_rule *mk_list_match_ip(const struct mk_list *list, const struct mk_ip *ip);
 *	const struct mk_rule *mk_list_match_sender(const struct mk_list *list, const char *address);
 *	size_t	mk_list_count(const struct mk_list *list);
 *	void	mk_list_free(struct mk_list *list);
 * DESCRIPTION
 *	A list file has one entry per line; blank lines and comments (from
 *	'#' at the start of a line or after white space) are ignored.
 *
 *	A client list (MK_LIST_CLIENTS) holds IPv4 and IPv6 addresses and
 *	CIDR networks.
 *
 *	A sender list (MK_LIST_SENDERS) holds:
 *	    user@example.com	that address
 *	    @example.com	any address in that domain only
 *	    example.com		that domain and its subdomains
 *	    .example.com	its subdomains only
 *	    postmaster@		that local part in any domain
 *	    <>			the null sender (bounces)
 *	    /pattern/flags	a PCRE2 pattern matched against the whole
 *				lower-cased address; flags i and x; write
 *				white space in a pattern as \s or \x20
 *	Matching is case-insensitive. With MK_LIST_NO_PATTERNS (lists that
 *	end users write) patterns are refused.
 *
 *	Every malformed line is reported as "SOURCE:LINE: problem" in
 *	*errors (allocated, one per line) and the list is not built: a list
 *	with a typo is never half-loaded. With MK_LIST_SKIP_BAD (a user's
 *	own list) the bad entries are reported and skipped instead. Sources of outside origin are
 *	bounded: lines of more than 1000 bytes and lists of more than
 *	MK_LIST_MAX_ENTRIES entries are refused.
 *
 *	The match functions return the rule that matched (its source and
 *	line, for the log), or NULL. A pattern that cannot be evaluated
 *	(its match limit is reached) gives &mk_list_match_failed: the caller
 *	cannot decide and must tempfail, never treat it as no match. They
 *	are safe to call from many threads at once.
 */
#ifndef MK_LIST_H
#define MK_LIST_H

#include <stddef.h>

#include "mk_addr.h"

enum mk_list_kind { MK_LIST_CLIENTS, MK_LIST_SENDERS };

#define MK_LIST_NO_PATTERNS	(1u << 0)
#define MK_LIST_SKIP_BAD	(1u << 1)
#define MK_LIST_MAX_ENTRIES	2000000
#define MK_LIST_MAX_LINE	1000

struct mk_rule {
    const char *source;                 /* file name, or "ldap", ... */
    int line;                           /* 1-based; for values, the index */
};

struct mk_list;

extern const struct mk_rule mk_list_match_failed;

struct mk_list *mk_list_parse(const char *source, const char *text, size_t len,
                              enum mk_list_kind kind, unsigned flags, char **errors);
struct mk_list *mk_list_load(const char *path, enum mk_list_kind kind, unsigned flags,
                             char **errors);
struct mk_list *mk_list_from_values(const char *source, char *const *values,
                                    enum mk_list_kind kind, unsigned flags, char **errors);
const struct mk_rule *mk_list_match_ip(const struct mk_list *list, const struct mk_ip *ip);
const struct mk_rule *mk_list_match_sender(const struct mk_list *list, const char *address);
size_t mk_list_count(const struct mk_list *list);
void mk_list_free(struct mk_list *list);

#endif
