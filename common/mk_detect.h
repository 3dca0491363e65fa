/*
 * NAME
 *	mk_detect 3h
 * SUMMARY
 *	personal data detection: Taiwanese IDs and phones, cards, IBANs, mail
 * SYNOPSIS
 *	#include "mk_detect.h"
 *
 *	struct mk_detect *mk_detect_create(const struct mk_detector_spec *custom, size_t ncustom,
 *					   const char *const *only, char **error);
 *	void	mk_detect_free(struct mk_detect *d);
 *	size_t	mk_detect_count(const struct mk_detect *d);
 *	const char *mk_detect_name(const struct mk_detect *d, unsigned i);
 *	int	mk_detect_min_count(const struct mk_detect *d, unsigned i);
 *	const char *mk_detect_engine(const struct mk_detect *d);
 *
 *	struct mk_detect_scratch *mk_detect_scratch_new(const struct mk_detect *d);
 *	void	mk_detect_scratch_free(struct mk_detect_scratch *s);
 *	int	mk_detect_scan(const struct mk_detect *d, struct mk_detect_scratch *s,
 *			       const char *utf8, size_t len,
 *			       int (*cb)(void *arg, const struct mk_detect_match *m), void *arg);
 *
 *	void	mk_detect_mask(const char *match, size_t len, char *out, size_t outlen);
 *	const char *const *mk_detect_validators(void);
 *	mk_detect_validator_fn mk_detect_validator(const char *name);
 *	size_t	mk_detect_validate(const char *validator, const char *text, size_t len);
 *	const char *mk_confidence_name(enum mk_confidence c);
 *	int	mk_confidence_parse(const char *name, enum mk_confidence *c);
 * DESCRIPTION
 *	A detector is a PCRE2 pattern, an optional validator (a checksum or
 *	a structure check) and optional keywords. mk_detect_create()
 *	builds a set of detectors: the built-in ones named in only (NULL:
 *	all of them; an empty list: none), in the order listed below, then
 *	the ncustom custom ones in their order. Detector i is reported as
 *	index i. On failure it returns NULL and an allocated message in
 *	*error that names the detector ("detector 'x': ..."). A custom
 *	pattern is refused when it does not compile, can match an empty
 *	string, or uses \G, \K or (*...) verbs: with those, where a search
 *	starts would change what it finds. The set is read-only afterwards and may
 *	be shared by any number of threads.
 *
 *	Built-in detectors:
 *	    tw_national_id	letter, 1 or 2, 8 digits; checksum (tw_id)
 *	    tw_resident_cert	letter, A-D, 8 digits (before 2021) or
 *				letter, 8 or 9, 8 digits; checksum (tw_resident)
 *	    tw_passport		9 digits; only next to a keyword
 *	    tw_phone		mobile and landline numbers, 0 or +886,
 *				with ( ), spaces or dashes (tw_phone)
 *	    payment_card	13-19 digits, contiguous or in groups;
 *				Luhn, issuer prefix and length (luhn_card)
 *	    iban		country, check digits, up to 30 letters and
 *				digits, spaces every 4 (iban)
 *	    email		a conservative address (email)
 *	A number is only found on its own: a letter or digit right before
 *	or after it (an ID inside a longer code, a card number inside 25
 *	digits) means no match.
 *
 *	Text is folded first (mk_text_fold(3)): full-width letters and
 *	digits, Unicode spaces and dashes match as their ASCII forms.
 *	Patterns run in UTF mode on the folded text; \d, \w and \b are
 *	ASCII. Invalid UTF-8 never matches a pattern item and never stops
 *	the scan.
 *
 *	Confidence: a pattern match alone is MK_CONF_LOW; a validator that
 *	accepts it raises it to MK_CONF_MEDIUM; one of the detector's
 *	keywords within the window raises it one more level. A match the
 *	validator rejects is not a match at all. Keywords are compared
 *	case-insensitively for ASCII letters, after folding; a keyword
 *	that begins with a letter must not follow a letter, one that
 *	begins with a digit not a digit, and the same at its end ("tel" is
 *	found in "Tel:" and "tel1", not in "hotel"). The window is the
 *	window characters (code points) before the match and the window
 *	characters after it; the keyword must lie wholly inside one of the
 *	two. With keyword_required a match without a keyword is not
 *	reported.
 *
 *	Matches of one detector do not overlap: after a match the search
 *	resumes at its end, as with repeated pcre2_match() calls, and a
 *	match the validator rejects still ends where it ends.
 *
 *	mk_detect_scratch_new() allocates the per-thread state a scan
 *	needs (NULL only if Hyperscan cannot allocate its scratch); it
 *	keeps a buffer as large as the largest folded text scanned with it.
 *	mk_detect_scan() scans len bytes of text and calls cb once per
 *	match, in order of position (of two matches that overlap, either
 *	may come first). The match text is in the folded text and valid
 *	only during the call.
 *	A nonzero return from cb stops the scan. mk_detect_scan() returns
 *	0, or -1 when a pattern could not be evaluated (its match limit
 *	was reached, or an engine failed): then the text was not fully
 *	scanned and the caller must not treat it as clean.
 *
 *	Engines: built with HAVE_HYPERSCAN on a CPU Hyperscan supports, one
 *	Hyperscan database holds prefilter patterns for every detector -
 *	for the built-ins, short patterns each of their matches ends (or
 *	starts) with; custom patterns in Hyperscan's prefilter mode. The
 *	folded text is scanned once; each candidate is confirmed by the
 *	detector's PCRE2 pattern (JIT), searching only the start offsets
 *	the candidate allows, then by its validator. A custom pattern
 *	Hyperscan cannot take, or that can match more than 4096 bytes, is
 *	run by PCRE2 over the text instead (write bounded repeats such as
 *	{1,40}, not +, to stay fast). Without Hyperscan every detector's
 *	pattern is run by PCRE2 over the text. Keywords are looked for in
 *	the windows of confirmed matches only, the same way by both
 *	engines. Both engines report the same matches, in the same order.
 *	Should Hyperscan refuse the built-in set, a warning is logged and
 *	the set uses PCRE2.
 *	The environment variable MK_DETECT_ENGINE=pcre2, read by
 *	mk_detect_create(), forces the PCRE2 engine (for tests, and as a
 *	way out should Hyperscan misbehave); mk_detect_engine() says which
 *	engine a set uses: "hyperscan" or "pcre2-jit" ("pcre2" when JIT is
 *	not available).
 *
 *	mk_detect_mask() writes a loggable form of a match into out (always
 *	NUL-terminated, truncated at a character boundary): the first 3 and
 *	last 2 characters kept and the rest replaced by one '*' each, fewer
 *	kept for short matches so that never more than half is shown;
 *	bytes that are not UTF-8 show as '?'.
 *
 *	Validators, usable by custom detectors: none, luhn (plain Luhn),
 *	luhn_card, tw_id, tw_resident, tw_phone, iban, email.
 *	mk_detect_validators() lists the names (NULL-terminated),
 *	mk_detect_validator() gives the function for a name (NULL if
 *	unknown) and mk_detect_validate() runs one by name. A validator
 *	ignores white space and the separators - . / ( ) + between the
 *	characters it checks, and returns how many leading bytes of the
 *	text it accepts: all of them, 0 to reject, or for iban possibly
 *	fewer - an IBAN followed by a word in capitals ("BE68 5390 0754 7034
 *	BIC") is accepted up to the last group that makes it valid.
 *
 *	mk_confidence_name() gives "none", "low", "medium" or "high";
 *	mk_confidence_parse() reads those (any case) and returns 0, or -1.
 */
#ifndef MK_DETECT_H
#define MK_DETECT_H

#include <stdbool.h>
#include <stddef.h>

enum mk_confidence { MK_CONF_NONE, MK_CONF_LOW, MK_CONF_MEDIUM, MK_CONF_HIGH };

#define MK_DETECT_DEFAULT_WINDOW	50
#define MK_DETECT_MAX_WINDOW		10000
#define MK_DETECT_MAX_KEYWORD		256     /* bytes */

struct mk_detector_spec {               /* a custom detector, from mailkeep.conf */
    const char *name;                   /* [a-z0-9_]+ */
    const char *pattern;                /* PCRE2, UTF mode, matched against folded text */
    const char *validator;              /* NULL or one of the built-in validator names */
    char *const *keywords;              /* NULL-terminated or NULL */
    int window;                         /* keyword window in characters; 0 = default 50 */
    int min_count;                      /* matches needed before the detector counts; 0 = 1 */
    bool keyword_required;              /* no match at all without a keyword in the window */
};

struct mk_detect_match {
    unsigned detector;
    enum mk_confidence confidence;
    const char *text;                   /* the match, in folded text, valid during the callback */
    size_t len;
};

typedef size_t (*mk_detect_validator_fn)(const char *text, size_t len);

struct mk_detect;
struct mk_detect_scratch;

struct mk_detect *mk_detect_create(const struct mk_detector_spec *custom, size_t ncustom,
                                   const char *const *only, char **error);
void mk_detect_free(struct mk_detect *d);
size_t mk_detect_count(const struct mk_detect *d);
const char *mk_detect_name(const struct mk_detect *d, unsigned i);
int mk_detect_min_count(const struct mk_detect *d, unsigned i);
const char *mk_detect_engine(const struct mk_detect *d);

struct mk_detect_scratch *mk_detect_scratch_new(const struct mk_detect *d);
void mk_detect_scratch_free(struct mk_detect_scratch *s);
int mk_detect_scan(const struct mk_detect *d, struct mk_detect_scratch *s, const char *utf8,
                   size_t len, int (*cb)(void *arg, const struct mk_detect_match *m), void *arg);

void mk_detect_mask(const char *match, size_t len, char *out, size_t outlen);
const char *const *mk_detect_validators(void);
mk_detect_validator_fn mk_detect_validator(const char *name);
size_t mk_detect_validate(const char *validator, const char *text, size_t len);
const char *mk_confidence_name(enum mk_confidence c);
int mk_confidence_parse(const char *name, enum mk_confidence *c);

#endif
