/*
 * ar_export - export archived messages. See ar_export.h.
 */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ar_export.h"
#include "ar_mbox.h"
#include "mk_hash.h"
#include "mk_util.h"

#define AR_EXPORT_DIR		"messages"
#define AR_EXPORT_MANIFEST	"MANIFEST.sha256"
#define AR_EXPORT_COPY_BUF	65536

/* A file written under PATH.tmp until it is committed. */
struct ar_export_file {
    char *path, *tmp;
    FILE *fp;
};

struct ar_export {
    enum ar_export_format fmt;
    struct ar_export_file main;         /* the export; an mbox writes it through main.fp */
    struct ar_export_file sums;         /* mbox: PATH.sha256 */
    FILE *manifest;                     /* zip, ISO: the manifest, in an unlinked file */
    struct archive *ar;                 /* zip, ISO */
    struct mk_hash *names;              /* name stem -> how many use it (unsigned *) */
    char *base;                         /* mbox: PATH's last component */
    size_t count;
    time_t started;
    bool aborting;                      /* libarchive's writes now fail, to end it quickly */
    char *failed;                       /* why the export cannot go on */
};

/* ------------------------------------------------------------ files */

static int ar_export_refuse_existing(const char *path, char **error)
{
    struct stat st;

    if (lstat(path, &st) == 0) {
        *error = mk_xasprintf("%s: exists; an export never overwrites a file", path);
        return -1;
    }
    if (errno != ENOENT) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Create PATH.tmp exclusively; fp opened with mode ("w" or "w+"). */
static int ar_export_file_create(struct ar_export_file *f, const char *path, char **error)
{
    int fd;

    if (ar_export_refuse_existing(path, error) < 0)
        return -1;
    f->tmp = mk_xasprintf("%s.tmp", path);
    if ((fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        if (errno == EEXIST)
            *error = mk_xasprintf("%s: exists: an export to %s is running or was interrupted "
                                  "(remove it if none is running)", f->tmp, path);
        else
            *error = mk_xasprintf("%s: cannot create: %s", f->tmp, strerror(errno));
        free(f->tmp);
        f->tmp = NULL;
        return -1;
    }
    if ((f->fp = fdopen(fd, "w")) == NULL) {
        *error = mk_xasprintf("%s: %s", f->tmp, strerror(errno));
        close(fd);
        unlink(f->tmp);
        free(f->tmp);
        f->tmp = NULL;
        return -1;
    }
    f->path = mk_xstrdup(path);
    return 0;
}

/* Flush to disk and close; the file keeps its temporary name. */
static int ar_export_file_finish(struct ar_export_file *f, char **error)
{
    FILE *fp = f->fp;
    int failed;

    f->fp = NULL;
    failed = fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) != 0;
    if (fclose(fp) != 0)
        failed = 1;
    if (failed) {
        *error = mk_xasprintf("%s: cannot write: %s", f->tmp, strerror(errno ? errno : EIO));
        return -1;
    }
    return 0;
}

/* Give the file its final name, never replacing one that appeared meanwhile. */
static int ar_export_file_commit(struct ar_export_file *f, char **error)
{
    if (link(f->tmp, f->path) < 0) {
        if (errno == EEXIST) {
            *error = mk_xasprintf("%s: appeared during the export; not overwritten", f->path);
            return -1;
        }
        /* A file system without hard links: check, then rename. */
        if (ar_export_refuse_existing(f->path, error) < 0)
            return -1;
        if (rename(f->tmp, f->path) < 0) {
            *error = mk_xasprintf("%s: cannot rename %s: %s", f->path, f->tmp, strerror(errno));
            return -1;
        }
    } else {
        unlink(f->tmp);
    }
    free(f->tmp);
    f->tmp = NULL;                      /* nothing left to remove */
    return 0;
}

static void ar_export_file_discard(struct ar_export_file *f)
{
    if (f->fp)
        fclose(f->fp);
    if (f->tmp)
        unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    memset(f, 0, sizeof(*f));
}

static void ar_export_sync_dir(const char *path)
{
    char *dir = mk_xstrdup(path), *slash = strrchr(dir, '/');

    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    (void) mk_fsync_dir(slash ? dir : ".");
    free(dir);
}

/* An unlinked read-write file beside the export, for the manifest. */
static FILE *ar_export_scratch(const char *path, char **error)
{
    char *tmp = mk_xasprintf("%s.manifest.tmp", path);
    FILE *fp = NULL;
    int fd;

    if ((fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        *error = mk_xasprintf("%s: cannot create: %s", tmp, strerror(errno));
    else {
        unlink(tmp);
        if ((fp = fdopen(fd, "w+")) == NULL) {
            *error = mk_xasprintf("%s: %s", tmp, strerror(errno));
            close(fd);
        }
    }
    free(tmp);
    return fp;
}

/* ------------------------------------------------------------ archives */

static void ar_export_fail_archive(struct ar_export *e, const char *what)
{
    const char *why = archive_error_string(e->ar);

    if (e->failed == NULL)
        e->failed = mk_xasprintf("%s: %s: %s", e->main.path, what, why ? why : "libarchive error");
}

/* libarchive writes through here, so that an abort can stop it cleanly. */
static la_ssize_t ar_export_archive_write(struct archive *a, void *arg, const void *buf,
                                          size_t len)
{
    struct ar_export *e = arg;

    if (e->aborting) {
        archive_set_error(a, ECANCELED, "export aborted");
        return -1;
    }
    if (fwrite(buf, 1, len, e->main.fp) != len) {
        int err = errno ? errno : EIO;

        archive_set_error(a, err, "cannot write %s: %s", e->main.tmp, strerror(err));
        return -1;
    }
    return (la_ssize_t) len;
}

static int ar_export_archive_open(struct ar_export *e, char **error)
{
    int rc;

    e->ar = archive_write_new();
    if (e->fmt == AR_EXPORT_ISO) {
        rc = archive_write_set_format_iso9660(e->ar);
        if (rc == ARCHIVE_OK)
            rc = archive_write_set_options(e->ar, "iso9660:volume-id=MAILKEEP_EXPORT,"
                                           "iso9660:iso-level=2,iso9660:rockridge,"
                                           "iso9660:joliet");
    } else {
        rc = archive_write_set_format_zip(e->ar);
    }
    if (rc == ARCHIVE_OK)
        rc = archive_write_set_bytes_in_last_block(e->ar, 1);
    if (rc == ARCHIVE_OK)
        rc = archive_write_open2(e->ar, e, NULL, ar_export_archive_write, NULL, NULL);
    if (rc != ARCHIVE_OK) {
        const char *why = archive_error_string(e->ar);

        *error = mk_xasprintf("%s: %s", e->main.path, why ? why : "cannot set up libarchive");
        return -1;
    }
    e->manifest = ar_export_scratch(e->main.path, error);
    return e->manifest ? 0 : -1;
}

static int ar_export_entry(struct ar_export *e, const char *name, mode_t type, time_t mtime,
                           size_t size)
{
    struct archive_entry *entry = archive_entry_new();
    int rc;

    archive_entry_set_pathname(entry, name);
    archive_entry_set_filetype(entry, type);
    archive_entry_set_perm(entry, type == AE_IFDIR ? 0755 : 0644);
    archive_entry_set_mtime(entry, mtime, 0);
    archive_entry_set_size(entry, type == AE_IFDIR ? 0 : (la_int64_t) size);
    rc = archive_write_header(e->ar, entry);
    archive_entry_free(entry);
    if (rc < ARCHIVE_WARN) {
        ar_export_fail_archive(e, name);
        return -1;
    }
    return 0;
}

static int ar_export_data(struct ar_export *e, const char *data, size_t len)
{
    while (len > 0) {
        la_ssize_t n = archive_write_data(e->ar, data, len);

        if (n <= 0) {
            ar_export_fail_archive(e, "cannot write");
            return -1;
        }
        data += n;
        len -= (size_t) n;
    }
    return 0;
}

static int ar_export_add_file(struct ar_export *e, const char *name, time_t mtime,
                              const char *data, size_t len)
{
    if (ar_export_entry(e, name, AE_IFREG, mtime, len) < 0 || ar_export_data(e, data, len) < 0)
        return -1;
    return 0;
}

static int ar_export_add_manifest(struct ar_export *e)
{
    char *buf;
    off_t size;
    size_t n;
    int rc = 0;

    if (fflush(e->manifest) != 0 || ferror(e->manifest) || (size = ftello(e->manifest)) < 0) {
        e->failed = mk_xasprintf("%s: cannot write the manifest: %s", e->main.path,
                                 strerror(errno ? errno : EIO));
        return -1;
    }
    rewind(e->manifest);
    if (ar_export_entry(e, AR_EXPORT_MANIFEST, AE_IFREG, e->started, (size_t) size) < 0)
        return -1;
    buf = mk_xmalloc(AR_EXPORT_COPY_BUF);
    while (rc == 0 && (n = fread(buf, 1, AR_EXPORT_COPY_BUF, e->manifest)) > 0)
        rc = ar_export_data(e, buf, n);
    free(buf);
    if (rc == 0 && ferror(e->manifest)) {
        e->failed = mk_xasprintf("%s: cannot read the manifest back", e->main.path);
        rc = -1;
    }
    return rc;
}

static int ar_export_archive_close(struct ar_export *e)
{
    int rc;

    if (ar_export_add_manifest(e) < 0)
        return -1;
    rc = archive_write_close(e->ar);
    if (rc != ARCHIVE_OK) {
        ar_export_fail_archive(e, "cannot finish");
        return -1;
    }
    archive_write_free(e->ar);
    e->ar = NULL;
    return 0;
}

/* ------------------------------------------------------------ names and hashes */

static void ar_export_hex(const unsigned char sha256[32], char hex[65])
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[sha256[i] >> 4];
        hex[2 * i + 1] = digits[sha256[i] & 15];
    }
    hex[64] = '\0';
}

/* "YYYYMMDD-HHMMSS-<12 hex>.eml", "-2", "-3"... added to a stem already used. */
static char *ar_export_name(struct ar_export *e, time_t received, const char *hex)
{
    char stem[64];
    unsigned *uses;
    struct tm tm;

    if (received != 0 && gmtime_r(&received, &tm) != NULL)
        snprintf(stem, sizeof(stem), "%04lld%02d%02d-%02d%02d%02d-%.12s",
                 (long long) tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, hex);
    else
        snprintf(stem, sizeof(stem), "undated-%.12s", hex);
    if ((uses = mk_hash_find(e->names, stem, strlen(stem))) != NULL)
        return mk_xasprintf("%s/%s-%u.eml", AR_EXPORT_DIR, stem, ++*uses);
    uses = mk_xmalloc(sizeof(*uses));
    *uses = 1;
    mk_hash_set(e->names, stem, strlen(stem), uses);
    return mk_xasprintf("%s/%s.eml", AR_EXPORT_DIR, stem);
}

static int ar_export_check_hash(const unsigned char sha256[32], const char *msg, size_t len,
                                char *hex, char **error)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char actual[65];

    ar_export_hex(sha256, hex);
    if (EVP_Digest(msg, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        *error = mk_xasprintf("message %s: cannot compute SHA-256", hex);
        return -1;
    }
    if (memcmp(md, sha256, 32) != 0) {
        ar_export_hex(md, actual);
        *error = mk_xasprintf("message %s: content does not match its SHA-256 (it hashes to %s); "
                              "not exported", hex, actual);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ the interface */

struct ar_export *ar_export_open(const char *path, enum ar_export_format fmt, char **error)
{
    struct ar_export *e;
    const char *slash;
    int rc;

    *error = NULL;
    if (fmt != AR_EXPORT_EML_ZIP && fmt != AR_EXPORT_MBOX && fmt != AR_EXPORT_ISO) {
        *error = mk_xasprintf("%s: unknown export format %d", path, (int) fmt);
        return NULL;
    }
    e = mk_xcalloc(1, sizeof(*e));
    e->fmt = fmt;
    e->started = time(NULL);
    e->names = mk_hash_create(free);
    slash = strrchr(path, '/');
    e->base = mk_xstrdup(slash ? slash + 1 : path);
    if (fmt == AR_EXPORT_MBOX) {
        char *sums = mk_xasprintf("%s.sha256", path);

        rc = ar_export_refuse_existing(sums, error);
        if (rc == 0)
            rc = ar_export_file_create(&e->main, path, error);
        if (rc == 0)
            rc = ar_export_file_create(&e->sums, sums, error);
        free(sums);
    } else {
        rc = ar_export_file_create(&e->main, path, error);
        if (rc == 0)
            rc = ar_export_archive_open(e, error);
        if (rc == 0 && ar_export_entry(e, AR_EXPORT_DIR, AE_IFDIR, e->started, 0) < 0) {
            *error = mk_xstrdup(e->failed);
            rc = -1;
        }
    }
    if (rc < 0) {
        ar_export_abort(e);
        return NULL;
    }
    return e;
}

static int ar_export_add_mbox(struct ar_export *e, const char *hex, const char *sender,
                              time_t received, const char *msg, size_t len)
{
    if (ar_mbox_write(e->main.fp, sender, received, msg, len) < 0) {
        e->failed = mk_xasprintf("%s: cannot write: %s", e->main.tmp, strerror(errno));
        return -1;
    }
    if (fprintf(e->sums.fp, "%s  %s#%zu\n", hex, e->base, e->count + 1) < 0) {
        e->failed = mk_xasprintf("%s: cannot write: %s", e->sums.tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static int ar_export_add_eml(struct ar_export *e, const char *hex, time_t received,
                             const char *msg, size_t len)
{
    char *name = ar_export_name(e, received, hex);
    int rc = ar_export_add_file(e, name, received ? received : e->started, msg, len);

    if (rc == 0 && fprintf(e->manifest, "%s  %s\n", hex, name) < 0) {
        e->failed = mk_xasprintf("%s: cannot write the manifest: %s", e->main.path,
                                 strerror(errno));
        rc = -1;
    }
    free(name);
    return rc;
}

int ar_export_add(struct ar_export *e, const unsigned char sha256[32],
                  const char *envelope_sender, time_t received, const char *msg, size_t len,
                  char **error)
{
    char hex[65];
    int rc;

    *error = NULL;
    if (e->failed) {
        *error = mk_xstrdup(e->failed);
        return -1;
    }
    if (ar_export_check_hash(sha256, msg, len, hex, error) < 0)
        return -1;
    if (e->fmt == AR_EXPORT_MBOX)
        rc = ar_export_add_mbox(e, hex, envelope_sender, received, msg, len);
    else
        rc = ar_export_add_eml(e, hex, received, msg, len);
    if (rc < 0) {
        *error = mk_xstrdup(e->failed);
        return -1;
    }
    e->count++;
    return 0;
}

static int ar_export_finish(struct ar_export *e, char **error)
{
    if (e->failed) {
        *error = mk_xstrdup(e->failed);
        return -1;
    }
    if (e->fmt != AR_EXPORT_MBOX && ar_export_archive_close(e) < 0) {
        *error = mk_xstrdup(e->failed);
        return -1;
    }
    if (ar_export_file_finish(&e->main, error) < 0)
        return -1;
    if (e->fmt == AR_EXPORT_MBOX) {
        /* The hashes take their name first: an mbox never appears without them. */
        if (ar_export_file_finish(&e->sums, error) < 0 ||
            ar_export_file_commit(&e->sums, error) < 0)
            return -1;
        if (ar_export_file_commit(&e->main, error) < 0) {
            unlink(e->sums.path);
            return -1;
        }
    } else if (ar_export_file_commit(&e->main, error) < 0) {
        return -1;
    }
    ar_export_sync_dir(e->main.path);
    return 0;
}

int ar_export_close(struct ar_export *e, char **error)
{
    int rc;

    *error = NULL;
    rc = ar_export_finish(e, error);
    ar_export_abort(e);                 /* removes what is left under temporary names */
    return rc;
}

void ar_export_abort(struct ar_export *e)
{
    if (e == NULL)
        return;
    if (e->ar) {
        /*
         * Not archive_write_fail(), which leaks the format's state: the
         * writes fail instead, so free() stops at once rather than
         * writing out an ISO image that is then removed.
         */
        e->aborting = true;
        archive_write_free(e->ar);
    }
    if (e->manifest)
        fclose(e->manifest);
    ar_export_file_discard(&e->main);
    ar_export_file_discard(&e->sums);
    mk_hash_free(e->names);
    free(e->base);
    free(e->failed);
    free(e);
}
