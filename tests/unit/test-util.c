/* Unit tests for mk_util, mk_hash and mk_lines. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "mk_hash.h"
#include "mk_lines.h"
#include "mk_message.h"
#include "mk_notify.h"
#include "mk_run.h"
#include "mk_test.h"
#include "mk_util.h"

static void test_durations(void)
{
    long long v = -1;

    test_begin("durations: units and bare seconds");
    test_assert(mk_parse_duration("30", &v) == 0 && v == 30);
    test_assert(mk_parse_duration("5m", &v) == 0 && v == 300);
    test_assert(mk_parse_duration("2h", &v) == 0 && v == 7200);
    test_assert(mk_parse_duration("1d", &v) == 0 && v == 86400);
    test_assert(mk_parse_duration("1w", &v) == 0 && v == 604800);
    test_end();

    test_begin("durations: malformed input is refused and leaves the value");
    v = 42;
    test_assert(mk_parse_duration("", &v) < 0);
    test_assert(mk_parse_duration("m", &v) < 0);
    test_assert(mk_parse_duration("5x", &v) < 0);
    test_assert(mk_parse_duration("5mm", &v) < 0);
    test_assert(mk_parse_duration("-5", &v) < 0);
    test_assert(mk_parse_duration(" 5", &v) < 0);
    test_assert(mk_parse_duration("99999999999999999999", &v) < 0);
    test_assert(mk_parse_duration("9999999999999999w", &v) < 0);
    test_assert_int(v, 42);
    test_end();
}

static void test_sizes_bools_ints(void)
{
    long long v;
    bool b = false;

    test_begin("sizes: k, M, G are powers of 1024");
    test_assert(mk_parse_size("10", &v) == 0 && v == 10);
    test_assert(mk_parse_size("10k", &v) == 0 && v == 10240);
    test_assert(mk_parse_size("3M", &v) == 0 && v == 3 * 1024 * 1024);
    test_assert(mk_parse_size("1G", &v) == 0 && v == 1024LL * 1024 * 1024);
    test_assert(mk_parse_size("1.5M", &v) < 0);
    test_end();

    test_begin("booleans: yes/no spellings, anything else refused");
    test_assert(mk_parse_bool("yes", &b) == 0 && b);
    test_assert(mk_parse_bool("Off", &b) == 0 && !b);
    test_assert(mk_parse_bool("TRUE", &b) == 0 && b);
    test_assert(mk_parse_bool("0", &b) == 0 && !b);
    test_assert(mk_parse_bool("y", &b) < 0);
    test_assert(mk_parse_bool("", &b) < 0);
    test_end();

    test_begin("integers: whole, signed, nothing trailing");
    test_assert(mk_parse_int("-12", &v) == 0 && v == -12);
    test_assert(mk_parse_int("12a", &v) < 0);
    test_assert(mk_parse_int("", &v) < 0);
    test_end();
}

static void test_split_trim(void)
{
    size_t n;
    char **v = mk_str_split("  a, b,,c\t d ", " ,\t", &n);
    char buf[] = "  \t hello world \n";

    test_begin("split drops empty fields");
    test_assert_int(n, 4);
    test_assert_str(v[0], "a");
    test_assert_str(v[3], "d");
    test_assert(v[4] == NULL);
    mk_str_array_free(v);
    v = mk_str_split("", ",", &n);
    test_assert(n == 0 && v[0] == NULL);
    mk_str_array_free(v);
    test_end();

    test_begin("trim removes white space at both ends");
    test_assert_str(mk_str_trim(buf), "hello world");
    test_end();
}

static bool keep_even(void *value, void *arg)
{
    (void) arg;
    return (*(int *) value) % 2 == 0;
}

static void test_hash(void)
{
    struct mk_hash *h = mk_hash_create(free);
    char key[32];

    test_begin("hash: set, find, replace, delete over growth");
    for (int i = 0; i < 1000; i++) {
        int *v = mk_xmalloc(sizeof(int));

        *v = i;
        snprintf(key, sizeof(key), "key%d", i);
        mk_hash_set(h, key, strlen(key), v);
    }
    test_assert_int(mk_hash_count(h), 1000);
    test_assert(*(int *) mk_hash_find(h, "key777", 6) == 777);
    test_assert(mk_hash_find(h, "key1000", 7) == NULL);
    test_assert(mk_hash_find(h, "key7", 3) == NULL);     /* a prefix is another key */
    {
        int *v = mk_xmalloc(sizeof(int));

        *v = 2;
        mk_hash_set(h, "key1", 4, v);                   /* replace frees the old value */
    }
    test_assert(*(int *) mk_hash_find(h, "key1", 4) == 2);
    test_assert_int(mk_hash_count(h), 1000);
    test_assert(mk_hash_delete(h, "key5", 4));
    test_assert(!mk_hash_delete(h, "key5", 4));
    test_assert_int(mk_hash_count(h), 999);
    test_end();

    test_begin("hash: walk deletes what keep() refuses");
    mk_hash_walk(h, keep_even, NULL);
    test_assert_int(mk_hash_count(h), 501);             /* 0..998 even, and key1 now 2 */
    test_assert(mk_hash_find(h, "key3", 4) == NULL);
    test_assert(mk_hash_find(h, "key1", 4) != NULL);
    test_end();
    mk_hash_free(h);

    test_begin("hash: binary keys with NUL bytes");
    h = mk_hash_create(NULL);
    mk_hash_set(h, "a\0b", 3, (void *) 1);
    test_assert(mk_hash_find(h, "a\0b", 3) == (void *) 1);
    test_assert(mk_hash_find(h, "a\0c", 3) == NULL);
    test_assert(mk_hash_find(h, "a", 1) == NULL);
    mk_hash_free(h);
    test_end();
}

static void test_files_and_lines(void)
{
    char *error = NULL, *text, *cursor, *line;
    struct stat st;
    size_t len = 0;

    test_begin("file read: whole file, length with NUL bytes, status");
    text = mk_file_read(test_tmpfile("one\ntwo"), &len, &st, &error);
    test_assert(text != NULL && error == NULL);
    test_assert_int(len, 7);
    test_assert_int(st.st_size, 7);
    test_end();

    test_begin("lines: cut in place, last line without newline, then NULL");
    cursor = text;
    line = mk_str_next_line(&cursor);
    test_assert_str(line, "one");
    line = mk_str_next_line(&cursor);
    test_assert_str(line, "two");
    test_assert(mk_str_next_line(&cursor) == NULL);
    free(text);
    test_end();

    test_begin("file read: missing file and directory are errors naming the path");
    test_assert(mk_file_read("/nonexistent/x", &len, NULL, &error) == NULL);
    test_assert(error && strstr(error, "/nonexistent/x: cannot open"));
    free(error);
    test_assert(mk_file_read("/", &len, NULL, &error) == NULL);
    test_assert(error && strstr(error, "not a regular file"));
    free(error);
    test_end();
}

static void test_run(void)
{
    char *cat[] = {"cat", NULL}, *no[] = {"false", NULL}, *none[] = {"/nonexistent/program", NULL};
    char *out = NULL;
    size_t len = 0;

    test_begin("run: feed standard input, read standard output, exit status");
    test_assert_int(mk_run(cat, "one\ntwo\n", 8, &out, &len), 0);
    test_assert_str(out, "one\ntwo\n");
    test_assert_int(len, 8);
    free(out);
    test_assert_int(mk_run(no, NULL, 0, NULL, NULL), 1);
    test_assert_int(mk_run(none, "x", 1, &out, NULL), -1);
    test_assert(out == NULL);
    test_end();
}

static void test_message(void)
{
    struct mk_message m;
    char big[4096];

    memset(&m, 0, sizeof(m));
    m.fd = -1;
    memset(big, 'x', sizeof(big));

    test_begin("message: envelope normalized, headers rebuilt, kept in memory");
    mk_message_start(&m, "<Alice@Example.COM>", "alice", 1024, NULL, 0);
    mk_message_add_rcpt(&m, "<Bob@Example.com>");
    mk_message_add_rcpt(&m, "odd<address");
    mk_message_header(&m, "Subject", "hi");
    mk_message_append(&m, "\r\nbody", 6);
    test_assert_str(m.sender, "alice@example.com");
    test_assert_str(m.rcpts[0], "bob@example.com");
    test_assert_str(m.rcpts[1], "odd<address");
    test_assert(m.nrcpts == 2 && m.rcpts[2] == NULL);
    test_assert(m.len == 19 && memcmp(m.buf, "Subject: hi\r\n\r\nbody", 19) == 0);
    test_assert(!m.spilled && !m.too_big && !m.failed);
    test_end();

    test_begin("message: past the memory limit it moves to an unlinked file, whole");
    mk_message_append(&m, big, sizeof(big));
    test_assert(m.too_big);                     /* no temp_dir: not stored */
    mk_message_start(&m, "<>", NULL, 1024, "/tmp", 0);
    mk_message_append(&m, "head", 4);
    mk_message_append(&m, big, sizeof(big));
    test_assert(m.spilled && m.fd >= 0 && !m.failed);
    test_assert_int(m.len, 4 + sizeof(big));
    {
        struct stat st;

        test_assert(fstat(m.fd, &st) == 0 && st.st_size == (off_t) (4 + sizeof(big)));
        test_assert(st.st_nlink == 0);          /* no name: gone with the descriptor */
    }
    test_end();

    test_begin("message: past max_size storing stops; an unusable temp_dir fails");
    mk_message_start(&m, "<>", NULL, 1024, "/tmp", 2048);
    mk_message_append(&m, big, sizeof(big));
    test_assert(m.too_big && m.buf == NULL && !m.spilled);
    mk_message_start(&m, "<>", NULL, 16, "/nonexistent", 0);
    mk_message_append(&m, big, 100);
    test_assert(m.failed);
    mk_message_reset(&m);
    test_assert(m.rcpts == NULL && m.fd == -1);
    test_end();
}

static void test_notify(void)
{
    char *text, *addrs[] = {"a@x.example", "", "b@y.example"};

    test_begin("notify: headers, an encoded non-ASCII subject, the body after a blank line");
    text = mk_notify_compose("postmaster@x.example", "a@x.example", "病毒已移除 virus removed",
                             "body\n");
    test_assert(strncmp(text, "From: postmaster@x.example\nTo: a@x.example\nSubject: =?UTF-8?B?", 62) == 0);
    test_assert(strstr(text, "=?UTF-8?B?55eF5q+S5bey56e76ZmkIHZpcnVzIHJlbW92ZWQ=?=") != NULL);
    test_assert(strstr(text, "\nAuto-Submitted: auto-generated\n") != NULL);
    test_assert(strstr(text, "charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nbody\n") != NULL);
    free(text);
    text = mk_notify_compose("p", "t", "plain", "");
    test_assert(strstr(text, "\nSubject: plain\n") != NULL);
    free(text);
    text = mk_notify_join(addrs, 3);
    test_assert_str(text, "a@x.example, <>, b@y.example");
    free(text);
    test_end();

    test_begin("notify: the command gets the text with a null sender; a missing one fails");
    {
        char *ok[] = {"/bin/sh", "-c", "test \"$1 $2\" = \"-f <>\" && grep -q '^Subject: s$'",
                      "sh", NULL};
        char *none[] = {NULL};

        text = mk_notify_compose("p", "t", "s", "b\n");
        test_assert_int(mk_notify_send(ok, text), 0);
        test_assert_int(mk_notify_send(none, text), -1);
        free(text);
    }
    test_end();
}

static void test_write_and_sync(void)
{
    char dir[] = "/tmp/test-util.XXXXXX", buf[8] = {0};
    int fds[2], full;

    test_begin("write_all: everything, or -1 with errno; fsync_dir: a directory only");
    test_assert(pipe(fds) == 0);
    test_assert_int(mk_write_all(fds[1], "abcdef", 6), 0);
    test_assert(read(fds[0], buf, sizeof(buf)) == 6 && strcmp(buf, "abcdef") == 0);
    close(fds[0]);
    close(fds[1]);
    full = open("/dev/full", O_WRONLY);
    test_assert(full >= 0 && mk_write_all(full, "x", 1) == -1 && errno == ENOSPC);
    close(full);
    test_assert(mkdtemp(dir) != NULL);
    test_assert_int(mk_fsync_dir(dir), 0);
    test_assert(mk_fsync_dir("/nonexistent-dir") == -1 && errno == ENOENT);
    test_assert(mk_fsync_dir("/etc/hostname") == -1 && errno == ENOTDIR);
    test_assert(rmdir(dir) == 0);
    test_end();

    test_begin("notes_add: notes joined with \"; \"");
    {
        char *notes = NULL;

        mk_notes_add(&notes, "first");
        test_assert_str(notes, "first");
        mk_notes_add(&notes, "second");
        test_assert_str(notes, "first; second");
        free(notes);
    }
    test_end();
}

static void test_line_cursor(void)
{
    const char text[] = "seq=42 t=-7 h=00ff10 x=007 y=18446744073709551616 z=ABCD";
    struct mk_lines_cur c = {text, text + sizeof(text) - 1};
    unsigned char h[3];
    uint64_t u = 0;
    int64_t i = 0;
    const char *at;

    test_begin("mk_lines cursor: literals, numbers and hex, strictly");
    test_assert(MK_LINES_LIT(&c, "seq=") && mk_lines_u64(&c, &u) && u == 42);
    test_assert(MK_LINES_LIT(&c, " t=") && mk_lines_i64(&c, &i) && i == -7);
    test_assert(MK_LINES_LIT(&c, " h=") && mk_lines_hex(&c, h, 3));
    test_assert(h[0] == 0x00 && h[1] == 0xff && h[2] == 0x10);
    at = c.p;
    test_assert(!MK_LINES_LIT(&c, " y=") && c.p == at);
    test_assert(MK_LINES_LIT(&c, " x=") && !mk_lines_u64(&c, &u));     /* leading zero */
    c.p += 3;
    test_assert(MK_LINES_LIT(&c, " y=") && !mk_lines_u64(&c, &u));     /* 2^64 */
    c.p += 20;
    at = c.p;
    test_assert(MK_LINES_LIT(&c, " z=") && !mk_lines_hex(&c, h, 2));   /* upper case */
    c.p = at + 3;
    test_assert(!mk_lines_hex(&c, h, 3));                               /* too short */
    c = (struct mk_lines_cur) {"-", text};
    c.end = c.p + 1;
    test_assert(!mk_lines_i64(&c, &i) && *c.p == '-');
    test_end();
}

static void test_line_numbers(void)
{
    const char *path = test_tmpfile("one\ntwo\nthree\n");
    int fd = open(path, O_RDONLY);
    char *msg;

    test_begin("mk_lines: the line at an offset, and errors that name it");
    test_assert_int(mk_lines_number_at(fd, 0), 1);
    test_assert_int(mk_lines_number_at(fd, 4), 2);
    test_assert_int(mk_lines_number_at(fd, 8), 3);
    msg = mk_lines_error_at("f.log", fd, 8, 0, "bad %s", "hash");
    test_assert_str(msg, "f.log:3: bad hash");
    free(msg);
    msg = mk_lines_error_at("f.log", fd, 8, 17, "x");
    test_assert_str(msg, "f.log:17: x");
    free(msg);
    close(fd);
    msg = mk_lines_error_at("f.log", -1, 8, 0, "gone");
    test_assert_str(msg, "f.log: byte 8: gone");
    free(msg);
    test_end();
}

int main(void)
{
    test_line_cursor();
    test_line_numbers();
    test_write_and_sync();
    test_notify();
    test_message();
    test_run();
    test_files_and_lines();
    test_durations();
    test_sizes_bools_ints();
    test_split_trim();
    test_hash();
    return test_done();
}
