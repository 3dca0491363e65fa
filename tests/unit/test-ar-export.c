/* Unit tests for ar_mbox, ar_export and ar_import: the archive's container formats. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "ar_export.h"
#include "ar_import.h"
#include "ar_mbox.h"
#include "mk_test.h"
#include "mk_util.h"

static char tmpdir[64];
static bool have_tools;                 /* bsdtar and sha256sum, for the outside checks */

/* ------------------------------------------------------------ helpers */

static void sha256(const char *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;

    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static void sha256_hex(const char *data, size_t len, char hex[65])
{
    unsigned char md[32];

    sha256(data, len, md);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static char *path_in(const char *name)
{
    return mk_xasprintf("%s/%s", tmpdir, name);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "w");

    if (fp == NULL || fwrite(text, 1, len, fp) != len || fclose(fp) != 0) {
        perror(path);
        exit(2);
    }
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0700) < 0) {
        perror(path);
        exit(2);
    }
}

static bool exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Does PATH with SUFFIX added exist? */
static bool exists_with(const char *path, const char *suffix)
{
    char *full = mk_xasprintf("%s%s", path, suffix);
    bool yes = exists(full);

    free(full);
    return yes;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* What ar_mbox_write keeps of a message: CR LF made LF, a final LF on a non-empty one. */
static char *mbox_form(const char *msg, size_t len, size_t *outlen)
{
    char *out = mk_xmalloc(len + 2);
    size_t n = 0;

    memcpy(out, msg, len);
    n = len;
    if (n > 0 && out[n - 1] != '\n')
        out[n++] = '\n';
    out[n] = '\0';
    *outlen = n;
    return out;
}

struct entry {
    char *name;
    char *data;
    size_t len;
};

/* Every file of an archive, read with libarchive; returns how many. */
static size_t read_archive(const char *path, const char *options, struct entry *out, size_t max)
{
    struct archive *a = archive_read_new();
    struct archive_entry *ae;
    size_t n = 0;

    archive_read_support_format_all(a);
    if (options)
        archive_read_set_options(a, options);
    if (archive_read_open_filename(a, path, 10240) != ARCHIVE_OK) {
        printf("  %s: %s\n", path, archive_error_string(a));
        archive_read_free(a);
        return 0;
    }
    while (n < max && archive_read_next_header(a, &ae) == ARCHIVE_OK) {
        char buf[8192];
        la_ssize_t got;

        if (archive_entry_filetype(ae) != AE_IFREG)
            continue;
        out[n].name = mk_xstrdup(archive_entry_pathname(ae));
        out[n].data = NULL;
        out[n].len = 0;
        while ((got = archive_read_data(a, buf, sizeof(buf))) > 0) {
            out[n].data = mk_xrealloc(out[n].data, out[n].len + (size_t) got + 1);
            memcpy(out[n].data + out[n].len, buf, (size_t) got);
            out[n].len += (size_t) got;
        }
        if (out[n].data == NULL)
            out[n].data = mk_xstrdup("");
        out[n].data[out[n].len] = '\0';
        n++;
    }
    archive_read_free(a);
    return n;
}

static void free_entries(struct entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].data);
    }
}

static const struct entry *find_entry(const struct entry *e, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0)
            return &e[i];
    return NULL;
}

/* Does the manifest list each message file with its right hash, and nothing else? */
static bool manifest_right(const struct entry *e, size_t n)
{
    const struct entry *m = find_entry(e, n, "MANIFEST.sha256");
    char *copy, *cursor, *line;
    size_t lines = 0;
    bool ok = m != NULL;

    if (!ok)
        return false;
    cursor = copy = mk_xstrdup(m->data);
    while (ok && (line = mk_str_next_line(&cursor)) != NULL) {
        const struct entry *f;
        char hex[65];

        if (strlen(line) < 67 || line[64] != ' ' || line[65] != ' ' ||
            (f = find_entry(e, n, line + 66)) == NULL) {
            ok = false;
            break;
        }
        sha256_hex(f->data, f->len, hex);
        ok = strncmp(line, hex, 64) == 0;
        lines++;
    }
    free(copy);
    return ok && lines == n - 1;
}

/* The lines a command prints, joined; NULL if it fails. */
static char *run(const char *cmd)
{
    FILE *fp = popen(cmd, "r");
    char buf[4096];
    size_t n;
    char *out;

    if (fp == NULL)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    out = mk_xstrdup(buf);
    if (pclose(fp) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------ mbox */

static const char *const tricky[] = {
    "From: a@example.com\nSubject: tricky\n\nFrom x\n>From y\n>>From z\nFromage\n>From\n",
    "Subject: no final newline\n\nlast line",
    "",
    "Subject: crlf\r\n\r\nFrom the top\r\n\r\nFrom again after a blank line\r\nend\r\n",
    "\n",
    "Subject: ends in blank lines\n\nbody\n\n\n",
    "From x",
    "Subject: lone CR\r\n\rx\r",
    "Subject: nul\n\nbefore\0after\n",
};
static const size_t tricky_len[] = {0, 0, 0, 0, 0, 0, 0, 0, 27};

static size_t tricky_size(size_t i)
{
    return tricky_len[i] ? tricky_len[i] : strlen(tricky[i]);
}

static void test_mbox_round_trip(void)
{
    const size_t n = MK_ARRAY_LEN(tricky);
    struct ar_mbox_reader *r;
    char *buf = NULL, *msg, *sender;
    size_t size = 0, len, count = 0;
    time_t received;
    FILE *fp = open_memstream(&buf, &size);

    test_begin("mbox: write and read back, tricky From lines, CRLF, empty message");
    for (size_t i = 0; i < n; i++)
        test_assert_int(ar_mbox_write(fp, i % 3 ? "user@example.com" : "",
                                      (time_t) (1700000000 + 86400 * i), tricky[i],
                                      tricky_size(i)), 0);
    fclose(fp);
    r = ar_mbox_open_mem(buf, size);
    while (ar_mbox_next(r, &msg, &len, &sender, &received) == 1) {
        size_t want_len;
        char *want = count < n ? mbox_form(tricky[count], tricky_size(count), &want_len) : NULL;

        test_assert(want != NULL && len == want_len && memcmp(msg, want, len) == 0);
        if (want && (len != want_len || memcmp(msg, want, len) != 0))
            printf("  message %zu: got \"%s\"\n", count, msg);
        test_assert_str(sender, count % 3 ? "user@example.com" : "MAILER-DAEMON");
        test_assert_int(received, 1700000000 + 86400 * (long long) count);
        free(want);
        free(msg);
        free(sender);
        count++;
    }
    test_assert(ar_mbox_error(r) == NULL);
    test_assert_int(count, n);
    ar_mbox_close(r);
    free(buf);
    test_end();

    test_begin("mbox: the separator and the escaping as written");
    buf = NULL;
    fp = open_memstream(&buf, &size);
    ar_mbox_write(fp, "a b@example.com", 0, "From x\r\n>From y\r\n>>From z", 25);
    fclose(fp);
    test_assert_str(buf, "From a_b@example.com Thu Jan  1 00:00:00 1970\n"
                    ">From x\r\n>>From y\r\n>>>From z\n\n");
    free(buf);
    test_end();
}

struct mbox_want {
    const char *msg, *sender;
    time_t received;
};

static void check_mbox(const char *text, const struct mbox_want *want, size_t n)
{
    struct ar_mbox_reader *r = ar_mbox_open_mem(text, strlen(text));
    char *msg, *sender;
    size_t len, count = 0;
    time_t received;

    while (ar_mbox_next(r, &msg, &len, &sender, &received) == 1) {
        if (count < n) {
            test_assert_str(msg, want[count].msg);
            test_assert_int(len, strlen(want[count].msg));
            test_assert_str(sender, want[count].sender);
            test_assert_int(received, want[count].received);
        }
        free(msg);
        free(sender);
        count++;
    }
    test_assert(ar_mbox_error(r) == NULL);
    test_assert_int(count, n);
    ar_mbox_close(r);
}

static void test_mbox_wild(void)
{
    static const struct mbox_want crlf[] = {
        {"Subject: x\r\n\r\nbody\r\nFrom here\r\nFrom inside, not after a blank line\r\n",
         "a@example.com", 1420280507},
        {"Subject: y\r\n\r\nbody2\r\n", "c@example.com", 1420416000},
    };
    static const struct mbox_want no_blank[] = {
        {"A\n", "a", 978307200},
        {"B\n", "b", 978307200},
    };
    static const struct mbox_want no_newline[] = {{"A\n", "a", 0}, {"B", "b", 0}};
    static const struct mbox_want dates[] = {
        {"1\n", "1590000000000000000@xxx", 1420280507},
        {"2\n", "-", 978307200},
        {"3\n", "x@example.com", 1420482107},
        {"4\n", "x", 0},
        {"5\n", "", 978307200},
        {"6\n", "\"a b\"@example.com", 978307200},
        {"7\n", "y", 978307260},
        {"8\n", "z", 946684800},
    };

    test_begin("mbox: a CR LF mboxo file (Thunderbird style)");
    check_mbox("From a@example.com Sat Jan  3 10:21:47 2015\r\n"
               "Subject: x\r\n\r\nbody\r\n>From here\r\nFrom inside, not after a blank line\r\n"
               "\r\n"
               "From c@example.com Mon Jan  5 00:00:00 2015\r\n"
               "Subject: y\r\n\r\nbody2\r\n\r\n", crlf, 2);
    test_end();

    test_begin("mbox: missing final blank line, missing final newline");
    check_mbox("From a Mon Jan  1 00:00:00 2001\nA\n\nFrom b Mon Jan  1 00:00:00 2001\nB\n",
               no_blank, 2);
    check_mbox("\n\nFrom a\nA\n\nFrom b\nB", no_newline, 2);
    test_end();

    test_begin("mbox: separator dates in the forms found in the wild");
    check_mbox("From 1590000000000000000@xxx Sat Jan 03 10:21:47 +0000 2015\n1\n\n"
               "From - Mon Jan  1 00:00:00 2001\n2\n\n"
               "From x@example.com Mon, 5 Jan 2015 10:21:47 -0800\n3\n\n"
               "From x yesterday at noon\n4\n\n"
               "From  Mon Jan  1 00:00:00 2001\n5\n\n"
               "From \"a b\"@example.com Mon Jan  1 00:00:00 2001\n6\n\n"
               "From y Mon Jan 1 00:01 2001 remote from uucp\n7\n\n"
               "From z Sat Jan  1 00:00:00 GMT 2000\n8\n\n", dates, 8);
    test_end();

    test_begin("mbox: not an mbox; an empty file");
    {
        struct ar_mbox_reader *r = ar_mbox_open_mem("Subject: x\n\nFrom y\n", 19);
        char *msg, *sender;
        size_t len;
        time_t received;

        test_assert_int(ar_mbox_next(r, &msg, &len, &sender, &received), -1);
        test_assert(ar_mbox_error(r) && strstr(ar_mbox_error(r), "(memory): not an mbox"));
        ar_mbox_close(r);
        r = ar_mbox_open_mem("", 0);
        test_assert_int(ar_mbox_next(r, &msg, &len, NULL, NULL), 0);
        ar_mbox_close(r);
    }
    test_end();
}

static void test_mbox_file(void)
{
    char *path = path_in("file.mbox"), *error = NULL, *msg, *missing = path_in("missing");
    struct ar_mbox_reader *r;
    size_t len;

    test_begin("mbox: a file is mapped; a missing one is an error");
    write_file(path, "From a Mon Jan  1 00:00:00 2001\n>From A\n\n", 41);
    r = ar_mbox_open(path, &error);
    test_assert(r != NULL);
    test_assert_int(ar_mbox_next(r, &msg, &len, NULL, NULL), 1);
    test_assert_str(msg, "From A\n");
    free(msg);
    test_assert_int(ar_mbox_next(r, &msg, &len, NULL, NULL), 0);
    ar_mbox_close(r);
    test_assert(ar_mbox_open(missing, &error) == NULL);
    test_assert(error && strstr(error, "/missing: cannot open: "));
    free(error);
    test_end();
    unlink(path);
    free(path);
    free(missing);
}

/* ------------------------------------------------------------ export */

static const char *const export_msgs[] = {
    "Subject: one\r\n\r\nFrom the start\r\n",
    "Subject: two\n\nno final newline",
    "Subject: one\r\n\r\nFrom the start\r\n",
    "Subject: undated\n\n>From\n",
};
static const time_t export_times[] = {1700000000, 1700000001, 1700000000, 0};

static int export_all(const char *path, enum ar_export_format fmt)
{
    char *error = NULL;
    struct ar_export *e = ar_export_open(path, fmt, &error);
    int failures = 0;

    if (e == NULL) {
        printf("  %s\n", error);
        free(error);
        return -1;
    }
    for (size_t i = 0; i < MK_ARRAY_LEN(export_msgs); i++) {
        unsigned char md[32];

        sha256(export_msgs[i], strlen(export_msgs[i]), md);
        if (ar_export_add(e, md, i ? "sender@example.com" : "", export_times[i],
                          export_msgs[i], strlen(export_msgs[i]), &error) < 0) {
            printf("  %s\n", error);
            free(error);
            failures++;
        }
    }
    if (ar_export_close(e, &error) < 0) {
        printf("  %s\n", error);
        free(error);
        failures++;
    }
    return failures ? -1 : 0;
}

static char *eml_name(size_t i, const char *suffix)
{
    char hex[65], stamp[32];
    struct tm tm;

    sha256_hex(export_msgs[i], strlen(export_msgs[i]), hex);
    if (export_times[i] == 0)
        return mk_xasprintf("messages/undated-%.12s%s.eml", hex, suffix);
    gmtime_r(&export_times[i], &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    return mk_xasprintf("messages/%s-%.12s%s.eml", stamp, hex, suffix);
}

static void check_eml_layout(const struct entry *e, size_t n)
{
    test_assert_int(n, MK_ARRAY_LEN(export_msgs) + 1);
    for (size_t i = 0; i < MK_ARRAY_LEN(export_msgs); i++) {
        char *name = eml_name(i, i == 2 ? "-2" : "");
        const struct entry *f = find_entry(e, n, name);

        test_assert(f != NULL);
        if (f == NULL)
            printf("  missing %s\n", name);
        else
            test_assert(f->len == strlen(export_msgs[i]) &&
                        memcmp(f->data, export_msgs[i], f->len) == 0);
        free(name);
    }
    test_assert(manifest_right(e, n));
}

/* Unpack with bsdtar and let sha256sum check the manifest. */
static bool sha256sum_checks(const char *archive)
{
    if (!have_tools)
        return true;

    char *dir = path_in("unpacked");
    char *cmd = mk_xasprintf("mkdir %s && bsdtar -xf %s -C %s && cd %s && "
                             "sha256sum --quiet --strict -c MANIFEST.sha256", dir, archive,
                             dir, dir);
    char *out = run(cmd);
    bool ok = out != NULL;

    free(out);
    free(cmd);
    rm_tree(dir);
    free(dir);
    return ok;
}

static void test_export_zip(void)
{
    char *path = path_in("export.zip"), *cmd, *out, *name = eml_name(0, "");
    struct entry e[16];
    size_t n;

    test_begin("export: zip of .eml files, names, bytes, manifest");
    test_assert_int(export_all(path, AR_EXPORT_EML_ZIP), 0);
    n = read_archive(path, NULL, e, 16);
    check_eml_layout(e, n);
    test_assert(strncmp(name, "messages/20231114-221320-", 25) == 0 && strlen(name) == 25 + 12 + 4);
    test_assert(!exists_with(path, ".tmp") && !exists_with(path, ".manifest.tmp"));
    free_entries(e, n);
    cmd = mk_xasprintf("bsdtar -xOf %s %s", path, name);
    out = have_tools ? run(cmd) : mk_xstrdup(export_msgs[0]);
    test_assert_str(out, export_msgs[0]);
    free(out);
    free(cmd);
    test_assert(sha256sum_checks(path));
    test_end();
    unlink(path);
    free(name);
    free(path);
}

/* The primary volume descriptor's id, and is there a Joliet one? */
static void check_iso_descriptors(const char *path)
{
    unsigned char vd[2048];
    bool joliet = false;
    FILE *fp = fopen(path, "r");

    test_assert(fp != NULL);
    if (fp == NULL)
        return;
    for (int sector = 16; sector < 32; sector++) {
        if (fseek(fp, sector * 2048L, SEEK_SET) != 0 || fread(vd, 1, sizeof(vd), fp) != sizeof(vd))
            break;
        if (vd[0] == 1)
            test_assert(memcmp(vd + 40, "MAILKEEP_EXPORT ", 16) == 0);
        if (vd[0] == 2 && vd[88] == '%' && vd[89] == '/')
            joliet = true;
        if (vd[0] == 255)
            break;
    }
    fclose(fp);
    test_assert(joliet);
}

static void test_export_iso(void)
{
    char *path = path_in("export.iso"), *cmd, *out, *name = eml_name(1, "");
    struct entry e[16];
    size_t n;

    test_begin("export: ISO 9660 with Rock Ridge and Joliet");
    test_assert_int(export_all(path, AR_EXPORT_ISO), 0);
    /* Without Joliet, the long names can only come from Rock Ridge. */
    n = read_archive(path, "iso9660:!joliet", e, 16);
    check_eml_layout(e, n);
    free_entries(e, n);
    n = read_archive(path, "iso9660:!rockridge", e, 16);
    check_eml_layout(e, n);
    free_entries(e, n);
    check_iso_descriptors(path);
    cmd = mk_xasprintf("bsdtar -tf %s", path);
    out = have_tools ? run(cmd) : mk_xasprintf("%s\nMANIFEST.sha256\n", name);
    test_assert(out && strstr(out, name + strlen("messages/")) && strstr(out, "MANIFEST.sha256"));
    free(out);
    free(cmd);
    cmd = mk_xasprintf("bsdtar -xOf %s %s", path, name);
    out = have_tools ? run(cmd) : mk_xstrdup(export_msgs[1]);
    test_assert_str(out, export_msgs[1]);
    free(out);
    free(cmd);
    test_assert(sha256sum_checks(path));
    test_end();
    unlink(path);
    free(name);
    free(path);
}

static void test_export_mbox(void)
{
    char *path = path_in("export.mbox"), *sums = path_in("export.mbox.sha256");
    char *error = NULL, *msg, *sender, *text, *cursor, *line;
    struct ar_mbox_reader *r;
    size_t len, count = 0;
    time_t received;

    test_begin("export: mbox and its .sha256");
    test_assert_int(export_all(path, AR_EXPORT_MBOX), 0);
    r = ar_mbox_open(path, &error);
    test_assert(r != NULL);
    while (r && ar_mbox_next(r, &msg, &len, &sender, &received) == 1) {
        size_t want_len;
        char *want = mbox_form(export_msgs[count], strlen(export_msgs[count]), &want_len);

        test_assert(len == want_len && memcmp(msg, want, len) == 0);
        test_assert_str(sender, count ? "sender@example.com" : "MAILER-DAEMON");
        test_assert_int(received, export_times[count]);
        free(want);
        free(msg);
        free(sender);
        if (++count == MK_ARRAY_LEN(export_msgs))
            break;
    }
    test_assert_int(count, MK_ARRAY_LEN(export_msgs));
    test_assert(r && ar_mbox_next(r, &msg, &len, NULL, NULL) == 0);
    ar_mbox_close(r);
    text = mk_file_read(sums, &len, NULL, &error);
    test_assert(text != NULL);
    count = 0;
    for (cursor = text; text && (line = mk_str_next_line(&cursor)) != NULL; count++) {
        char hex[65], *want;

        if (count >= MK_ARRAY_LEN(export_msgs))
            continue;
        sha256_hex(export_msgs[count], strlen(export_msgs[count]), hex);
        want = mk_xasprintf("%s  export.mbox#%zu", hex, count + 1);
        test_assert_str(line, want);
        free(want);
    }
    test_assert_int(count, MK_ARRAY_LEN(export_msgs));
    free(text);
    test_end();
    unlink(path);
    unlink(sums);
    free(path);
    free(sums);
}

static void test_export_refusals(void)
{
    char *path = path_in("taken.zip"), *tmp = path_in("taken.zip.tmp"), *error = NULL;
    char *mbox = path_in("x.mbox"), *mbox_sums = path_in("x.mbox.sha256");
    unsigned char md[32], wrong[32] = {0};
    struct ar_export *e;
    const char *msg = "Subject: s\n\nbody\n";

    test_begin("export: never overwrites, leaves nothing after abort");
    write_file(path, "keep", 4);
    test_assert(ar_export_open(path, AR_EXPORT_EML_ZIP, &error) == NULL);
    test_assert(error && strstr(error, "taken.zip: exists"));
    free(error);
    unlink(path);
    write_file(mbox_sums, "keep", 4);
    test_assert(ar_export_open(mbox, AR_EXPORT_MBOX, &error) == NULL);
    test_assert(error && strstr(error, "x.mbox.sha256: exists"));
    test_assert(!exists(mbox) && !exists_with(mbox, ".tmp"));
    free(error);
    unlink(mbox_sums);
    write_file(tmp, "", 0);
    test_assert(ar_export_open(path, AR_EXPORT_ISO, &error) == NULL);
    test_assert(error && strstr(error, "taken.zip.tmp: exists: an export"));
    free(error);
    unlink(tmp);
    for (int fmt = AR_EXPORT_EML_ZIP; fmt <= AR_EXPORT_ISO; fmt++) {
        e = ar_export_open(path, (enum ar_export_format) fmt, &error);
        test_assert(e != NULL);
        if (e == NULL)
            continue;
        sha256(msg, strlen(msg), md);
        test_assert_int(ar_export_add(e, md, "a@b", 1, msg, strlen(msg), &error), 0);
        test_assert_int(ar_export_add(e, wrong, "a@b", 1, msg, strlen(msg), &error), -1);
        test_assert(error && strstr(error, "does not match its SHA-256"));
        free(error);
        test_assert(exists(tmp) && !exists(path));
        ar_export_abort(e);
        test_assert(!exists(tmp) && !exists(path));
        test_assert(!exists_with(path, ".sha256.tmp") && !exists_with(path, ".sha256"));
    }
    test_end();
    free(path);
    free(tmp);
    free(mbox);
    free(mbox_sums);
}

/* ------------------------------------------------------------ import */

struct seen {
    size_t messages, errors;
    char origins[4096];
    time_t received[32];
    char *senders[32];
    int stop_after;
};

static int collect(void *arg, const struct ar_import_item *it)
{
    struct seen *s = arg;
    size_t used = strlen(s->origins);
    const char *origin = it->origin + strlen(tmpdir) + 1;

    if (it->error) {
        s->errors++;
        snprintf(s->origins + used, sizeof(s->origins) - used, "!%s\n", origin);
        return 0;
    }
    if (s->messages < 32) {
        s->received[s->messages] = it->received;
        s->senders[s->messages] = it->sender ? mk_xstrdup(it->sender) : NULL;
    }
    s->messages++;
    snprintf(s->origins + used, sizeof(s->origins) - used, "%s %zu\n", origin, it->len);
    return s->stop_after && (int) s->messages >= s->stop_after;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->messages && i < 32; i++)
        free(s->senders[i]);
}

static void put(const char *name, const char *text)
{
    char *path = path_in(name);

    write_file(path, text, strlen(text));
    free(path);
}

static void mkdirs(const char *const *names)
{
    for (; *names; names++) {
        char *path = path_in(*names);

        make_dir(path);
        free(path);
    }
}

static void set_mtime(const char *name, time_t t)
{
    char *path = path_in(name);
    struct timeval tv[2] = {{t, 0}, {t, 0}};

    utimes(path, tv);
    free(path);
}

static void test_import_maildir(void)
{
    static const char *const dirs[] = {"md", "md/cur", "md/new", "md/tmp", "md/.Sent",
                                       "md/.Sent/cur", "md/.Sent/new", "md/.Notafolder", NULL};
    struct seen s = {0};
    char *path = path_in("md"), *error = NULL;

    mkdirs(dirs);
    put("md/cur/1700000000.M1P1.host:2,S", "Subject: a\n\nA\n");
    put("md/cur/1600000000.M2P2.host:2,", "Subject: b\n\nB\n");
    put("md/new/1700000100.M3P3.host",
        "From x@example.com Mon Jan  1 00:00:00 2001\nSubject: c\n\nC\n");
    put("md/tmp/1700000200.M4P4.host", "Subject: in delivery\n\n");
    put("md/.Sent/cur/1700000300.M5P5.host:2,S", "Subject: sent\n\nS\n");
    put("md/.Notafolder/x.eml", "Subject: not read\n\n");
    put("md/dovecot.index", "x");
    put("md/dovecot-uidlist", "x");
    put("md/dovecot-keywords", "x");
    put("md/subscriptions", "Sent\n");
    put("md/.Sent/maildirfolder", "");
    put("md/cur/.hidden", "x");
    set_mtime("md/cur/1700000000.M1P1.host:2,S", 1500000000);
    set_mtime("md/cur/1600000000.M2P2.host:2,", 0);

    test_begin("import: a Maildir with a Maildir++ subfolder");
    test_assert_int(ar_import_walk(path, collect, &s, &error), 0);
    test_assert(error == NULL);
    test_assert_int(s.messages, 4);
    test_assert_str(s.origins, "md/cur/1600000000.M2P2.host:2, 14\n"
                    "md/cur/1700000000.M1P1.host:2,S 14\n"
                    "md/new/1700000100.M3P3.host#1 14\n"
                    "md/.Sent/cur/1700000300.M5P5.host:2,S 17\n");
    test_assert_int(s.received[0], 1600000000);     /* mtime 0: the name's time */
    test_assert_int(s.received[1], 1500000000);     /* the mtime */
    test_assert_int(s.received[2], 978307200);      /* the From line */
    test_assert_str(s.senders[2], "x@example.com");
    test_assert(s.senders[0] == NULL);
    test_end();
    seen_free(&s);
    free(path);
}

static void test_import_tree(void)
{
    static const char *const dirs[] = {"tree", "tree/2023", "tree/2023/q4", "tree/.git",
                                       "tree/md", "tree/md/new", NULL};
    struct seen s = {0};
    char *path = path_in("tree"), *error = NULL, *dangling = path_in("tree/bad.eml");
    int rc;

    mkdirs(dirs);
    put("tree/a.eml", "Subject: a\r\n\r\nA\r\n");
    put("tree/notes.txt", "not mail");
    put("tree/2023/B.EML", "Subject: b\n\nB\n");
    put("tree/2023/q4/c.eml", "Subject: c\n\nC\n");
    put("tree/2023/q4/empty.eml", "");
    put("tree/.git/d.eml", "Subject: hidden\n\n");
    put("tree/md/new/1700000000.M1.host", "Subject: m\n\nM\n");
    put("tree/box.mbox",
        "From a Mon Jan  1 00:00:00 2001\nX\n\nFrom b Mon Jan  1 00:00:00 2001\nY\n\n");
    put("tree/plain.mbox", "Subject: not an mbox\n");
    if (symlink("/nonexistent/mailkeep-test", dangling) < 0)
        perror("symlink");

    test_begin("import: a tree of .eml files, bad files counted and reported");
    rc = ar_import_walk(path, collect, &s, &error);
    test_assert_int(rc, 3);
    test_assert(error == NULL);
    test_assert_int(s.messages, 6);
    test_assert_int(s.errors, 3);
    test_assert_str(s.origins, "tree/2023/B.EML 14\n"
                    "tree/2023/q4/c.eml 14\n"
                    "!tree/2023/q4/empty.eml\n"
                    "tree/a.eml 17\n"
                    "!tree/bad.eml\n"
                    "tree/box.mbox#1 2\n"
                    "tree/box.mbox#2 2\n"
                    "tree/md/new/1700000000.M1.host 14\n"
                    "!tree/plain.mbox\n");
    test_end();
    seen_free(&s);
    free(dangling);
    free(path);
}

static void test_import_files(void)
{
    struct seen s = {0};
    char *path = path_in("single.eml"), *mbox = path_in("all.mbox"), *error = NULL;
    char *missing = path_in("missing");

    put("single.eml", "Subject: one\n\nFrom me\n");
    put("all.mbox", "From a@example.com Sat Jan 03 10:21:47 +0000 2015\r\nSubject: 1\r\n\r\n"
        ">From x\r\n\r\nFrom b Sat Jan 03 10:21:47 +0000 2015\r\nSubject: 2\r\n\r\n"
        "From c Sat Jan 03 10:21:47 +0000 2015\r\nSubject: 3\r\n");

    test_begin("import: one .eml file, one mbox, a stop, a missing path");
    test_assert_int(ar_import_walk(path, collect, &s, &error), 0);
    test_assert_str(s.origins, "single.eml 22\n");
    seen_free(&s);
    memset(&s, 0, sizeof(s));
    test_assert_int(ar_import_walk(mbox, collect, &s, &error), 0);
    test_assert_str(s.origins, "all.mbox#1 22\nall.mbox#2 12\nall.mbox#3 12\n");
    test_assert_str(s.senders[0], "a@example.com");
    test_assert_int(s.received[2], 1420280507);
    seen_free(&s);
    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    test_assert_int(ar_import_walk(mbox, collect, &s, &error), -1);
    test_assert(error && strstr(error, "all.mbox#2: import stopped"));
    test_assert_int(s.messages, 2);
    free(error);
    seen_free(&s);
    test_assert_int(ar_import_walk(missing, collect, &s, &error), -1);
    test_assert(error && strstr(error, "/missing: No such file"));
    free(error);
    test_end();
    free(path);
    free(mbox);
    free(missing);
}

int main(void)
{
    int rc;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mk-ar-export-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    have_tools = system("bsdtar --version >/dev/null 2>&1 && "
                        "sha256sum --version >/dev/null 2>&1") == 0;
    if (!have_tools)
        printf("bsdtar or sha256sum not found: archives checked with libarchive only\n");
    test_mbox_round_trip();
    test_mbox_wild();
    test_mbox_file();
    test_export_zip();
    test_export_iso();
    test_export_mbox();
    test_export_refusals();
    test_import_maildir();
    test_import_tree();
    test_import_files();
    rc = test_done();
    rm_tree(tmpdir);
    return rc;
}
