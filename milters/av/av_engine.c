/*
 * av_engine - a compiled ClamAV engine. See av_engine.h.
 */
#include "config.h"

#include <clamav.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "av_engine.h"
#include "mk_log.h"
#include "mk_util.h"

struct av_engine {
    struct cl_engine *cl;
    unsigned signatures;
};

/* What libclamav said during one scan (its message callback gets our context). */
struct av_scan_context {
    bool error;
};

/*
 * libclamav reports some failures only as an error message and a clean
 * verdict (it cannot create its temporary directory, for one). A scan
 * during which it logged an error is a failed scan: tempfail, never a
 * pass.
 */
/*
 * libclamav passes our context only to messages from inside the scan; a
 * failure to set the scan up (its temporary directory) comes without it.
 * The scan is one synchronous call on this thread, so the thread's
 * current scan stands in. (This is not per-message state kept between
 * milter callbacks, which may run on different threads.)
 */
static _Thread_local struct av_scan_context *av_current_scan;

static void av_message(enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
    struct av_scan_context *ctx = context ? context : av_current_scan;

    (void) fullmsg;
    if (severity == CL_MSG_ERROR) {
        if (ctx)
            ctx->error = true;
        mk_log(MK_LOG_ERROR, NULL, "libclamav: %s", msg ? msg : "(no message)");
    }
}

void av_engine_init(void)
{
    cl_set_clcb_msg(av_message);
}

const char *const av_engine_db_suffixes[] = {
    ".cvd", ".cld", ".cud", ".hdb", ".hsb", ".hdu", ".hsu", ".mdb", ".msb", ".mdu", ".msu",
    ".ndb", ".ndu", ".ldb", ".ldu", ".idb", ".cdb", ".cbc", ".pdb", ".gdb", ".wdb", ".ftm",
    ".ign", ".ign2", ".info", ".crb", ".yar", ".yara", ".fp", ".sfp", NULL,
};

/* The database files in the directory, plus the directory itself. */
static char **av_db_files(const char *dir)
{
    size_t n = 0;
    char **files = mk_xcalloc(2, sizeof(char *));
    DIR *d = opendir(dir);
    struct dirent *e;

    files[n++] = mk_xstrdup(dir);
    while (d && (e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');

        if (dot == NULL)
            continue;
        for (size_t i = 0; av_engine_db_suffixes[i]; i++)
            if (strcmp(dot, av_engine_db_suffixes[i]) == 0) {
                files = mk_xrealloc(files, (n + 2) * sizeof(char *));
                files[n++] = mk_xasprintf("%s/%s", dir, e->d_name);
                break;
            }
    }
    if (d)
        closedir(d);
    files[n] = NULL;
    return files;
}

struct av_engine *av_engine_load(const struct mk_config *cfg, char ***files, char **error)
{
    const char *dir = mk_config_str(cfg, "av", "database_dir");
    struct av_engine *e;
    unsigned sigs = 0;
    cl_error_t rc;

    *files = av_db_files(dir);
    if ((*files)[1] == NULL) {
        *error = mk_xasprintf("%s: no virus databases (run freshclam, or add .hdb/.ndb files)", dir);
        return NULL;
    }
    /* libclamav writes temporary files while it unpacks: it must be able to. */
    if (access(mk_config_str(cfg, "av", "temp_dir"), W_OK | X_OK) < 0) {
        *error = mk_xasprintf("[av] temp_dir %s is not a writable directory: %s",
                              mk_config_str(cfg, "av", "temp_dir"), strerror(errno));
        mk_str_array_free(*files);
        *files = NULL;
        return NULL;
    }
    e = mk_xcalloc(1, sizeof(*e));
    if ((e->cl = cl_engine_new()) == NULL) {
        free(e);
        *error = mk_xstrdup("cannot create a ClamAV engine");
        return NULL;
    }
    cl_engine_set_str(e->cl, CL_ENGINE_TMPDIR, mk_config_str(cfg, "av", "temp_dir"));
    cl_engine_set_num(e->cl, CL_ENGINE_MAX_SCANSIZE, mk_config_num(cfg, "av", "max_scansize"));
    cl_engine_set_num(e->cl, CL_ENGINE_MAX_FILESIZE, mk_config_num(cfg, "av", "max_filesize"));
    cl_engine_set_num(e->cl, CL_ENGINE_MAX_RECURSION, mk_config_num(cfg, "av", "max_recursion"));
    cl_engine_set_num(e->cl, CL_ENGINE_MAX_FILES, mk_config_num(cfg, "av", "max_files"));
    cl_engine_set_num(e->cl, CL_ENGINE_MAX_SCANTIME, mk_config_num(cfg, "av", "max_scantime") * 1000);
    if ((rc = cl_load(dir, e->cl, &sigs, CL_DB_STDOPT)) != CL_SUCCESS
        || (rc = cl_engine_compile(e->cl)) != CL_SUCCESS) {
        *error = mk_xasprintf("%s: cannot load the virus databases: %s", dir, cl_strerror(rc));
        av_engine_free(e);
        return NULL;
    }
    e->signatures = sigs;
    return e;
}

void av_engine_free(struct av_engine *e)
{
    if (e == NULL)
        return;
    if (e->cl)
        cl_engine_free(e->cl);
    free(e);
}

unsigned av_engine_signatures(const struct av_engine *e)
{
    return e->signatures;
}

static void av_options(struct cl_scan_options *o)
{
    memset(o, 0, sizeof(*o));
    o->general = CL_SCAN_GENERAL_HEURISTICS;
    o->parse = ~0U;                     /* every format ClamAV knows: mail, archives, documents */
    o->heuristic = CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE | CL_SCAN_HEURISTIC_ENCRYPTED_DOC
        | CL_SCAN_HEURISTIC_EXCEEDS_MAX;
}

static enum av_result av_verdict(cl_error_t rc, const char *name, const char **virus)
{
    *virus = name;
    if (rc == CL_CLEAN)
        return AV_CLEAN;
    if (rc != CL_VIRUS) {
        *virus = cl_strerror(rc);
        return AV_ERROR;
    }
    /*
     * libclamav 1.4 reports a limit the whole message exceeds (it is
     * larger than max_filesize) as a detection without a name: it is a
     * limit, handled as one, never passed.
     */
    if (name == NULL) {
        *virus = "Heuristics.Limits.Exceeded (the whole message)";
        return AV_LIMITS;
    }
    if (strncmp(name, "Heuristics.Encrypted", 20) == 0)
        return AV_ENCRYPTED;
    if (strncmp(name, "Heuristics.Limits.Exceeded", 26) == 0)
        return AV_LIMITS;
    return AV_INFECTED;
}

enum av_result av_engine_scan_memory(const struct av_engine *e, const char *data, size_t len,
                                     const char **virus)
{
    struct cl_scan_options opts;
    struct av_scan_context ctx = {false};
    const char *name = NULL;
    cl_fmap_t *map = cl_fmap_open_memory(data, len);
    cl_error_t rc;

    if (map == NULL) {
        *virus = "out of memory";
        return AV_ERROR;
    }
    av_options(&opts);
    av_current_scan = &ctx;
    rc = cl_scanmap_callback(map, NULL, &name, NULL, e->cl, &opts, &ctx);
    av_current_scan = NULL;
    cl_fmap_close(map);
    if (ctx.error && rc != CL_VIRUS) {
        *virus = "libclamav reported an error during the scan";
        return AV_ERROR;
    }
    return av_verdict(rc, name, virus);
}

/*
 * A message too large for memory sits in a temporary file: map it and
 * scan the mapping the same way, so both paths give the same verdicts
 * (pages are read from the file as the scan needs them).
 */
enum av_result av_engine_scan_fd(const struct av_engine *e, int fd, const char **virus)
{
    struct stat st;
    enum av_result r;
    void *map;

    if (fstat(fd, &st) < 0) {
        *virus = "cannot read the temporary file";
        return AV_ERROR;
    }
    if (st.st_size == 0)
        return av_engine_scan_memory(e, "", 0, virus);
    map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        *virus = "cannot map the temporary file";
        return AV_ERROR;
    }
    r = av_engine_scan_memory(e, map, (size_t) st.st_size, virus);
    munmap(map, (size_t) st.st_size);
    return r;
}
