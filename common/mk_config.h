/*
 * NAME
 *	mk_config 3h
 * SUMMARY
 *	mailkeep.conf: one INI file, checked against a schema, reference-counted
 * SYNOPSIS
 *	#include "mk_config.h"
 *
 *	struct mk_config *mk_config_load(const char *path, char **errors);
 *	struct mk_config *mk_config_ref(struct mk_config *cfg);
 *	void	mk_config_unref(struct mk_config *cfg);
 *	const char *mk_config_path(const struct mk_config *cfg);
 *	const char *mk_config_str(const struct mk_config *cfg, const char *section, const char *key);
 *	long long mk_config_num(const struct mk_config *cfg, const char *section, const char *key);
 *	bool	mk_config_bool(const struct mk_config *cfg, const char *section, const char *key);
 *	char	**mk_config_list(const struct mk_config *cfg, const char *section, const char *key);
 *	int	mk_config_line(const struct mk_config *cfg, const char *section, const char *key);
 *	char	**mk_config_sections(const struct mk_config *cfg, const char *family);
 *	void	mk_config_print(const struct mk_config *cfg, FILE *fp, bool all);
 * DESCRIPTION
 *	mk_config_load() reads the file and checks every line against the
 *	schema (mk_config_schema.c), which names every section and key, its
 *	type and its default. Unknown sections, unknown keys, keys set twice,
 *	values of the wrong type or out of range, and syntax errors are each
 *	reported as "FILE:LINE: [section] key: problem"; all of them are
 *	collected into *errors (one per line, to be freed by the caller) and
 *	NULL is returned. A long value may continue on following lines that
 *	start with white space.
 *
 *	The accessors return the configured value or the schema's default.
 *	Asking for a key the schema does not have is a programming error and
 *	aborts. mk_config_num() returns integers, durations (in seconds) and
 *	sizes (in bytes). mk_config_list() splits on white space and commas
 *	and returns a NULL-terminated array to free with mk_str_array_free().
 *	mk_config_line() returns the line that set the key, or 0.
 *
 *	Besides fixed sections ([global], [block]), a family of sections
 *	can repeat under different names, e.g. [detector employee_id] and
 *	[detector staff_no]; the schema spells the family "detector *", and
 *	a key whose default is NULL must be set in each. The accessors take
 *	the whole section name ("detector employee_id");
 *	mk_config_sections() lists the sections of a family in file order
 *	(a NULL-terminated array to free with mk_str_array_free()).
 *	mk_config_list() splits MK_CFG_PHRASES keys on commas only, so that
 *	"card number, 卡號" is two phrases.
 *
 *	A loaded configuration never changes. It is reference-counted so that
 *	a reload can replace it while messages in flight keep the one they
 *	started with; mk_config_ref() and mk_config_unref() are thread-safe.
 */
#ifndef MK_CONFIG_H
#define MK_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

enum mk_config_type {
    MK_CFG_STRING,
    MK_CFG_PATH,
    MK_CFG_INT,
    MK_CFG_BOOL,
    MK_CFG_DURATION,
    MK_CFG_SIZE,
    MK_CFG_ENUM,
    MK_CFG_LIST,                        /* words separated by white space or commas */
    MK_CFG_PHRASES,                     /* phrases separated by commas */
    MK_CFG_SOCKET,
    MK_CFG_NETS,                        /* a list of addresses or address/prefix */
    MK_CFG_MAP,                         /* a list of NAME:CHOICE, choices as ENUM */
};

struct mk_config_key {
    const char *section;
    const char *name;
    enum mk_config_type type;
    const char *def;                    /* default, as the file would spell it; NULL: required */
    const char *choices;                /* MK_CFG_ENUM, MK_CFG_MAP: "a|b|c" */
    long long min, max;                 /* numeric types; max 0 = no limit */
};

extern const struct mk_config_key mk_config_schema[];
extern const unsigned mk_config_schema_size;

struct mk_config;

struct mk_config *mk_config_load(const char *path, char **errors);
struct mk_config *mk_config_ref(struct mk_config *cfg);
void mk_config_unref(struct mk_config *cfg);
const char *mk_config_path(const struct mk_config *cfg);
const char *mk_config_str(const struct mk_config *cfg, const char *section, const char *key);
long long mk_config_num(const struct mk_config *cfg, const char *section, const char *key);
bool mk_config_bool(const struct mk_config *cfg, const char *section, const char *key);
char **mk_config_list(const struct mk_config *cfg, const char *section, const char *key);
int mk_config_line(const struct mk_config *cfg, const char *section, const char *key);
char **mk_config_sections(const struct mk_config *cfg, const char *family);
void mk_config_print(const struct mk_config *cfg, FILE *fp, bool all);

#endif
