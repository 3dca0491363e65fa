/*
 * NAME
 *	av_engine 3h
 * SUMMARY
 *	a compiled ClamAV engine and the verdicts it gives
 * SYNOPSIS
 *	#include "av_engine.h"
 *
 *	struct av_engine *av_engine_load(const struct mk_config *cfg, char ***files, char **error);
 *	void	av_engine_free(struct av_engine *engine);
 *	enum av_result av_engine_scan_memory(const struct av_engine *engine, const char *data,
 *					     size_t len, const char **virus);
 *	enum av_result av_engine_scan_fd(const struct av_engine *engine, int fd, const char **virus);
 *	unsigned av_engine_signatures(const struct av_engine *engine);
void av_engine_init(void);
 *	void	av_engine_init(void);
 * DESCRIPTION
 *	av_engine_load() builds a libclamav engine from [av] database_dir
 *	(official .cvd/.cld databases and local .hdb, .ndb, .ldb, ...
 *	files alike), with the [av] limits on scan size, file size,
 *	recursion, file count and time, and returns the directory and then
 *	the database files it read in *files (for the milter shell to
 *	watch, so that new signatures mean a new engine, compiled in the
 *	background while scans in flight finish on the old one). The
 *	directory is to be watched for entries ending in one of
 *	av_engine_db_suffixes (NULL-terminated), not by its mtime.
 *
 *	A scan returns AV_CLEAN, AV_INFECTED, AV_ENCRYPTED (an encrypted
 *	archive or document that could not be looked into), AV_LIMITS (a
 *	limit stopped the scan) or AV_ERROR. *virus names what was found:
 *	the signature, or ClamAV's heuristic name for the last two.
 *
 *	libclamav reports some failures only as an error message with a
 *	clean verdict (it could not create its temporary directory, say):
 *	av_engine_init(), called once after cl_init(), routes its messages
 *	to our log and a scan during which it logged an error is AV_ERROR,
 *	never AV_CLEAN. Its temporary files go to [av] temp_dir, which must
 *	be writable when the engine is built.
 */
#ifndef AV_ENGINE_H
#define AV_ENGINE_H

#include <stddef.h>

#include "mk_config.h"

enum av_result { AV_CLEAN, AV_INFECTED, AV_ENCRYPTED, AV_LIMITS, AV_ERROR };

struct av_engine;

extern const char *const av_engine_db_suffixes[];

struct av_engine *av_engine_load(const struct mk_config *cfg, char ***files, char **error);
void av_engine_free(struct av_engine *engine);
enum av_result av_engine_scan_memory(const struct av_engine *engine, const char *data,
                                     size_t len, const char **virus);
enum av_result av_engine_scan_fd(const struct av_engine *engine, int fd, const char **virus);
unsigned av_engine_signatures(const struct av_engine *engine);
void av_engine_init(void);

#endif
