/* Unit tests for au_proto: the lines clients send to mailkeep-auditd. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "au_client.h"
#include "au_proto.h"
#include "mk_test.h"
#include "mk_util.h"

/* Parse a line given as a C string: 0 or -1; *why gets the error (or NULL). */
static int parse(const char *line, struct au_proto_line *out, char **why)
{
    int rc;

    free(*why);
    *why = NULL;
    rc = au_proto_parse(line, strlen(line), out, why);
    if (rc < 0 && getenv("TEST_VERBOSE"))
        printf("    refused: %s\n", *why);
    return rc;
}

static bool refused_with(const char *line, const char *text)
{
    struct au_proto_line l;
    char *why = NULL;
    bool ok = parse(line, &l, &why) < 0 && why != NULL && strstr(why, text) != NULL;

    if (!ok)
        printf("    %s: %s\n", line, why ? why : "accepted");
    if (why == NULL)
        au_proto_line_free(&l);
    free(why);
    return ok;
}

static void test_audit(void)
{
    struct au_proto_line l;
    char *why = NULL, *members;
    size_t len;

    test_begin("A: a record, kept as sent, in the order sent");
    test_assert_int(parse("A {\"op\":\"read\",\"user\":\"bob@example.org\",\"uid\":42,"
                          "\"peek\":false,\"flags\":[\"\\\\Seen\",\"$Label1\"],"
                          "\"mailbox\":\"\xe6\x94\xb6\xe4\xbb\xb6\xe5\x8c\xa3\","
                          "\"extra\":{\"b\":1,\"a\":[true,{\"x\":\"y\"}]},\"size\":-1}",
                          &l, &why), 0);
    test_assert(l.kind == AU_PROTO_AUDIT);
    test_assert_str(au_proto_str(l.obj, "op"), "read");
    members = au_proto_members(l.obj, &len);
    test_assert_str(members, "\"op\":\"read\",\"user\":\"bob@example.org\",\"uid\":42,"
                    "\"peek\":false,\"flags\":[\"\\\\Seen\",\"$Label1\"],"
                    "\"mailbox\":\"\xe6\x94\xb6\xe4\xbb\xb6\xe5\x8c\xa3\","
                    "\"extra\":{\"b\":1,\"a\":[true,{\"x\":\"y\"}]},\"size\":-1");
    test_assert_int(len, strlen(members));
    test_assert(l.members != NULL && l.members_len == len
                && memcmp(l.members, members, len) == 0);
    free(members);
    au_proto_line_free(&l);
    test_end();

    test_begin("A: taken as sent only when it is already what would be written");
    {
        static const char *const rewritten[] = {
            "A {\"op\":\"read\", \"user\":\"b\"}",
            "A {\"op\":\"read\",\"user\":\"b\",\"n\":-0}",
            "A {\"op\":\"read\",\"user\":\"caf\\u00e9\"}",
            "A {\"op\":\"read\",\"user\":\"a\\/b\"}",
            "A {\"op\":\"read\",\"user\":\"b\"}\t",
        };
        for (size_t i = 0; i < sizeof(rewritten) / sizeof(rewritten[0]); i++) {
            test_assert_int(parse(rewritten[i], &l, &why), 0);
            test_assert(l.members == NULL);
            au_proto_line_free(&l);
        }
        test_assert_int(parse("A {\"op\":\"read\",\"user\":\"t\\t\\\"q\\\" -1\","
                              "\"n\":-10}", &l, &why), 0);
        test_assert(l.members != NULL);
        members = au_proto_members(l.obj, &len);
        test_assert(len == l.members_len && memcmp(members, l.members, len) == 0);
        free(members);
        au_proto_line_free(&l);
    }
    test_end();

    test_begin("A: white space goes, escapes are written plainly");
    test_assert(refused_with("A { \"user\" : \"\" ,\n \"op\":\"logout\" }", "newline"));
    test_assert_int(parse("A { \"user\" : \"\" , \"op\":\"logout\", \"note\":\"caf\\u00e9 \\/ \\t\" }",
                          &l, &why), 0);
    members = au_proto_members(l.obj, NULL);
    test_assert_str(members, "\"user\":\"\",\"op\":\"logout\",\"note\":\"caf\xc3\xa9 / \\t\"");
    free(members);
    au_proto_line_free(&l);
    test_end();

    test_begin("A: op and user are required, op is a-z and -");
    test_assert(refused_with("A {\"user\":\"bob\"}", "\"op\" is missing"));
    test_assert(refused_with("A {\"op\":\"read\"}", "\"user\" is missing"));
    test_assert(refused_with("A {\"op\":\"read\",\"user\":7}", "\"user\" is missing or not"));
    test_assert(refused_with("A {\"op\":\"Read\",\"user\":\"b\"}", "\"op\" is not"));
    test_assert(refused_with("A {\"op\":\"\",\"user\":\"b\"}", "\"op\" is not"));
    test_assert(refused_with("A {\"op\":\"a_b\",\"user\":\"b\"}", "\"op\" is not"));
    test_assert(refused_with("A {\"op\":\"abcdefghijklmnopqrstuvwxyzabcdefg\",\"user\":\"b\"}",
                             "\"op\" is not"));
    test_assert_int(parse("A {\"op\":\"abcdefghijklmnopqrstuvwxyzabcdef\",\"user\":\"b\"}", &l,
                          &why), 0);
    au_proto_line_free(&l);
    test_assert_int(parse("A {\"op\":\"mailbox-create\",\"user\":\"\"}", &l, &why), 0);
    au_proto_line_free(&l);
    test_assert(refused_with("A {\"op\":\"checkpoint\",\"user\":\"b\"}", "daemon only"));
    test_end();

    test_begin("A: the daemon's keys are reserved, at the top only");
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"seq\":1}", "\"seq\" is reserved"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"time\":\"t\"}", "\"time\" is"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"prev\":\"\"}", "\"prev\" is"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"hash\":\"\"}", "\"hash\" is"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"sig\":\"\"}", "\"sig\" is"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"peer\":{}}", "\"peer\" is"));
    test_assert_int(parse("A {\"op\":\"x\",\"user\":\"b\",\"n\":{\"peer\":{\"pid\":1},\"seq\":2}}",
                          &l, &why), 0);
    au_proto_line_free(&l);
    test_end();

    test_begin("A: null, reals, duplicate keys and deep nesting are refused");
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"uid\":null}", "\"uid\": null"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"size\":1.5}", "\"size\": a number"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"size\":1e3}", "a number"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"a\":[1,[2,null]]}", "\"a\": null"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"op\":\"y\"}", "a key given twice"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\",\"n\":99999999999999999999}",
                             "out of range"));
    {
        char *deep = mk_xstrdup("A {\"op\":\"x\",\"user\":\"b\",\"d\":"), *line;

        for (int i = 0; i < 40; i++) {
            char *next = mk_xasprintf("%s[", deep);

            free(deep);
            deep = next;
        }
        line = mk_xasprintf("%s%.40s}", deep, "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
        test_assert(refused_with(line, "nested deeper than 32"));
        free(line);
        free(deep);
    }
    test_end();

    test_begin("A: not one JSON object");
    test_assert(refused_with("A [1,2]", "not a JSON object"));
    test_assert(refused_with("A \"x\"", "invalid JSON"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\"", "ends early"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\"} {}", "text after the object"));
    test_assert(refused_with("A {op:1}", "invalid JSON"));
    test_assert(refused_with("A ", "A: "));
    test_end();

    test_begin("A: bad UTF-8 and NUL are refused, the reason quotes no value");
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"b\xff\"}", "invalid UTF-8"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"\xc3\x28\"}", "invalid UTF-8"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"\xed\xa0\x80\"}", "invalid UTF-8"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8"));
    test_assert(refused_with("A {\"op\":\"x\",\"us\xe9r\":\"b\"}", "invalid UTF-8"));
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"a\\u0000b\"}", "NUL"));
    {
        static const char line[] = "A {\"op\":\"x\",\"user\":\"secret\0\"}";
        char *w = NULL;

        test_assert_int(au_proto_parse(line, sizeof(line) - 1, &l, &w), -1);
        test_assert(w && strstr(w, "NUL byte"));
        free(w);
    }
    test_assert(refused_with("A {\"op\":\"x\",\"user\":\"topsecret\",\"q\":nul}", "column"));
    test_assert_int(parse("A {\"op\":\"x\",\"user\":\"topsecret\",\"q\":nul}", &l, &why), -1);
    test_assert(why && strstr(why, "topsecret") == NULL);
    test_end();

    test_begin("A: a line of 65536 bytes with its newline fits, one more does not");
    {
        size_t max = AU_PROTO_MAX_LINE - 1;     /* without the newline */
        char *line = mk_xmalloc(max + 2);
        const char *head = "A {\"op\":\"x\",\"user\":\"b\",\"pad\":\"";
        size_t hl = strlen(head);

        memcpy(line, head, hl);
        memset(line + hl, 'p', max - hl - 2);
        memcpy(line + max - 2, "\"}", 2);
        line[max] = '\0';
        free(why);
        why = NULL;
        test_assert_int(au_proto_parse(line, max, &l, &why), 0);
        au_proto_line_free(&l);
        memset(line + hl, 'p', max + 1 - hl - 2);
        memcpy(line + max + 1 - 2, "\"}", 2);
        test_assert_int(au_proto_parse(line, max + 1, &l, &why), -1);
        test_assert(why && strstr(why, "longer than 65536"));
        free(line);
    }
    test_end();
    free(why);
}

static void test_usage(void)
{
    struct au_proto_line l;
    char *why = NULL;
    long long n;

    test_begin("U: the four kinds");
    test_assert_int(parse("U {\"kind\":\"mailbox\",\"user\":\"bob\",\"mailbox_guid\":"
                          "\"0123456789abcdef0123456789ABCDEF\",\"mailbox\":\"INBOX\","
                          "\"messages\":12,\"vsize\":34567,\"other\":null}", &l, &why), 0);
    test_assert(l.kind == AU_PROTO_USAGE);
    test_assert(au_proto_int(l.obj, "vsize", &n) && n == 34567);
    au_proto_line_free(&l);
    test_assert_int(parse("U {\"kind\":\"mailbox-delete\",\"user\":\"bob\",\"mailbox_guid\":"
                          "\"ab\"}", &l, &why), 0);
    au_proto_line_free(&l);
    test_assert_int(parse("U {\"kind\":\"login\",\"user\":\"bob\",\"service\":\"imap\","
                          "\"ip\":\"192.0.2.1\"}", &l, &why), 0);
    au_proto_line_free(&l);
    test_assert_int(parse("U {\"kind\":\"login\",\"user\":\"bob\",\"service\":\"pop3\"}", &l,
                          &why), 0);
    au_proto_line_free(&l);
    test_assert_int(parse("U {\"kind\":\"account\",\"user\":\"jun\"}", &l, &why), 0);
    au_proto_line_free(&l);
    test_assert(refused_with("U {\"kind\":\"account\",\"user\":\"\"}", "\"user\""));
    test_end();

    test_begin("U: what each kind needs");
    test_assert(refused_with("U {\"user\":\"bob\"}", "\"kind\" is missing"));
    test_assert(refused_with("U {\"kind\":\"quota\",\"user\":\"bob\"}", "\"kind\" is not"));
    test_assert(refused_with("U {\"kind\":\"login\",\"user\":\"\",\"service\":\"imap\"}",
                             "\"user\" is missing, empty"));
    test_assert(refused_with("U {\"kind\":\"login\",\"user\":\"b\"}", "\"service\""));
    test_assert(refused_with("U {\"kind\":\"login\",\"user\":\"b\",\"service\":\"imap\","
                             "\"ip\":4}", "\"ip\" is not a string"));
    test_assert(refused_with("U {\"kind\":\"mailbox\",\"user\":\"b\",\"mailbox_guid\":\"xyz\","
                             "\"mailbox\":\"I\",\"messages\":1,\"vsize\":1}", "hex digits"));
    test_assert(refused_with("U {\"kind\":\"mailbox\",\"user\":\"b\",\"mailbox_guid\":\"ab\","
                             "\"messages\":1,\"vsize\":1}", "\"mailbox\" is missing"));
    test_assert(refused_with("U {\"kind\":\"mailbox\",\"user\":\"b\",\"mailbox_guid\":\"ab\","
                             "\"mailbox\":\"I\",\"messages\":-1,\"vsize\":1}", "\"messages\""));
    test_assert(refused_with("U {\"kind\":\"mailbox\",\"user\":\"b\",\"mailbox_guid\":\"ab\","
                             "\"mailbox\":\"I\",\"messages\":1,\"vsize\":\"1\"}", "\"vsize\""));
    test_assert(refused_with("U {\"kind\":\"mailbox-delete\",\"user\":\"b\"}", "mailbox_guid"));
    test_end();
    free(why);
}

static void test_sync_and_framing(void)
{
    struct au_proto_line l;
    char *why = NULL;

    test_begin("S: tokens of 1 to 32 characters of A-Za-z0-9_-");
    test_assert_int(parse("S t1", &l, &why), 0);
    test_assert(l.kind == AU_PROTO_SYNC);
    test_assert_str(l.token, "t1");
    test_assert_int(parse("S Ab_-09zZabcdefghijklmnopqrstuvw", &l, &why), 0);
    test_assert_str(l.token, "Ab_-09zZabcdefghijklmnopqrstuvw");
    test_assert(refused_with("S ", "token"));
    test_assert(refused_with("S a b", "token"));
    test_assert(refused_with("S abcdefghijklmnopqrstuvwxyzabcdefg", "token"));
    test_assert(refused_with("S t\xc3\xa9", "token"));
    test_end();

    test_begin("lines: a letter, a space and the rest");
    test_assert(refused_with("", "starts with A, U or S"));
    test_assert(refused_with("A", "starts with A, U or S"));
    test_assert(refused_with("A{\"op\":\"x\"}", "starts with A, U or S"));
    test_assert(refused_with("X {}", "starts with A, U or S"));
    test_assert(refused_with("a {}", "starts with A, U or S"));
    test_assert(refused_with("S t1\r", "token"));
    test_end();

    test_begin("check_audit: the same rules for records built in memory");
    {
        json_t *r = json_pack("{s:s, s:s, s:i}", "op", "purge", "user", "", "messages", 3);

        test_assert_int(au_proto_check_audit(r, &why), 0);
        json_object_set_new(r, "ratio", json_real(0.5));
        test_assert_int(au_proto_check_audit(r, &why), -1);
        test_assert(why && strstr(why, "\"ratio\""));
        free(why);
        why = NULL;
        json_decref(r);
        r = json_array();
        test_assert_int(au_proto_check_audit(r, &why), -1);
        json_decref(r);
        free(why);
        why = NULL;
    }
    test_end();
    free(why);
}

/* A daemon of the tests: answers S lines, refuses lines that say "bad". */
struct fake {
    int listen_fd;
    int lines;
    bool silent;                        /* never answers */
};

static void *fake_daemon(void *arg)
{
    struct fake *f = arg;
    int fd = accept(f->listen_fd, NULL, NULL);
    char buf[65536 * 2];
    size_t used = 0;
    int refused = 0;
    ssize_t n;

    while (fd >= 0 && (n = read(fd, buf + used, sizeof(buf) - used)) > 0) {
        char *nl;

        used += (size_t) n;
        while ((nl = memchr(buf, '\n', used)) != NULL) {
            char answer[256];

            *nl = '\0';
            f->lines++;
            answer[0] = '\0';
            if (strstr(buf, "bad")) {
                refused++;
                snprintf(answer, sizeof(answer), "E A: no\n");
            } else if (buf[0] == 'S' && refused)
                snprintf(answer, sizeof(answer), "%.64s error %d line refused\n", buf, refused);
            else if (buf[0] == 'S')
                snprintf(answer, sizeof(answer), "%.64s ok %d\n", buf, 40 + f->lines);
            if (buf[0] == 'S')
                refused = 0;
            if (*answer && !f->silent && write(fd, answer, strlen(answer)) < 0)
                break;
            used -= (size_t) (nl + 1 - buf);
            memmove(buf, nl + 1, used);
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void test_client(void)
{
    char path[64], *error = NULL;
    struct sockaddr_un sun;
    struct fake f;
    pthread_t t;
    struct au_client *c;
    json_t *rec = json_pack("{s:s,s:s,s:s,s:i}", "op", "purge", "user", "bob", "admin", "root",
                            "messages", 2);
    json_t *bad = json_pack("{s:s,s:s}", "op", "bad", "user", "bob");
    json_t *u = json_pack("{s:s,s:s,s:s}", "kind", "mailbox-delete", "user", "bob",
                          "mailbox_guid", "ab");
    uint64_t seq = 0;

    snprintf(path, sizeof(path), "/tmp/mk-au-client-%ld.sock", (long) getpid());
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));
    memset(&f, 0, sizeof(f));
    unlink(path);
    f.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(f.listen_fd, (struct sockaddr *) &sun, sizeof(sun)) < 0 || listen(f.listen_fd, 8) < 0)
        perror("fake daemon");

    test_begin("client: a record and an update, then a sync");
    pthread_create(&t, NULL, fake_daemon, &f);
    c = au_client_open(path, &error);
    test_assert(c != NULL);
    test_assert_int(au_client_send(c, 'A', rec, &error), 0);
    test_assert_int(au_client_send(c, 'U', u, &error), 0);
    test_assert_int(au_client_sync(c, &error), 0);
    test_assert_int(au_client_seq(c), 43);
    test_end();

    test_begin("client: what the daemon would refuse is refused before it is sent");
    json_object_set_new(rec, "seq", json_integer(1));
    test_assert_int(au_client_send(c, 'A', rec, &error), -1);
    test_assert(error && strstr(error, "not sent: A: \"seq\" is reserved"));
    free(error);
    json_object_del(rec, "seq");
    test_assert_int(au_client_send(c, 'U', rec, &error), -1);
    test_assert(error && strstr(error, "\"kind\""));
    free(error);
    test_assert_int(au_client_send(c, 'S', rec, &error), -1);
    free(error);
    test_end();

    test_begin("client: a refusal by the daemon fails the sync");
    test_assert_int(au_client_send(c, 'A', bad, &error), 0);
    test_assert_int(au_client_sync(c, &error), -1);
    test_assert(error && strstr(error, "not kept: A: no"));
    free(error);
    test_assert_int(au_client_sync(c, &error), 0);      /* and the next one is clean */
    au_client_close(c);
    pthread_join(t, NULL);
    test_end();

    test_begin("client: au_client_record waits for the record to be kept");
    pthread_create(&t, NULL, fake_daemon, &f);
    test_assert_int(au_client_record(path, rec, 5000, &seq, &error), 0);
    test_assert(seq > 40);
    pthread_join(t, NULL);
    test_end();

    test_begin("client: a daemon that does not answer, and none at all");
    f.silent = true;
    pthread_create(&t, NULL, fake_daemon, &f);
    test_assert_int(au_client_record(path, rec, 300, &seq, &error), -1);
    test_assert(error && strstr(error, "no answer"));
    free(error);
    pthread_join(t, NULL);
    close(f.listen_fd);
    unlink(path);
    test_assert_int(au_client_record(path, rec, 300, &seq, &error), -1);
    test_assert(error && strstr(error, "cannot connect") && strstr(error, "mailkeep-auditd"));
    free(error);
    test_end();
    json_decref(rec);
    json_decref(bad);
    json_decref(u);
}

static bool fast(const char *line)
{
    return au_proto_audit_fast(line, strlen(line));
}

static void test_fast_path(void)
{
    static const char *const taken[] = {
        "A {\"op\":\"flags\",\"user\":\"bob@example.org\",\"session\":\"a/B+c\",\"uid\":42,"
        "\"flags\":[\"\\\\Seen\",\"$Label1\"],\"keywords\":[],\"mailbox\":\"\xe6\x94\xb6\xe4\xbb"
        "\xb6\xe5\x8c\xa3 \\\"Q4\\\"\",\"size\":-1,\"peek\":false,\"n\":0,\"t\":true}",
        "A {\"user\":\"\",\"op\":\"logout\",\"note\":\"tab\\there\",\"e\":\"\xf0\x9f\x93\xa7\"}",
        "A {\"op\":\"expunge\",\"user\":\"u\",\"big\":999999999999999999}",
    };
    static const char *const left[] = {
        "A {\"op\":\"read\",\"user\":\"u\",\"uid\":1}",             /* the database takes it */
        "A {\"op\":\"copy\",\"user\":\"u\"}",
        "A {\"op\":\"move\",\"user\":\"u\"}",
        "A {\"op\":\"checkpoint\",\"user\":\"u\"}",                 /* the daemon's own */
        "A {\"op\": \"flags\",\"user\":\"u\"}",                     /* white space */
        "A {\"op\":\"flags\",\"user\":\"caf\\u00e9\"}",             /* \u */
        "A {\"op\":\"flags\",\"user\":\"a\\/b\"}",                  /* \/ is written / */
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":{\"a\":1}}",      /* nested object */
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":[[1]]}",
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":null}",
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":1.5}",
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":1e3}",
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":-0}",
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":01}",
        "A {\"op\":\"flags\",\"user\":\"u\",\"x\":1234567890123456789}",
        "A {\"op\":\"flags\",\"user\":\"u\",\"op\":\"x\"}",         /* duplicate */
        "A {\"op\":\"flags\",\"user\":\"u\",\"seq\":1}",            /* reserved */
        "A {\"op\":\"flags\"}",                                     /* no user */
        "A {\"op\":\"flags\",\"user\":7}",
        "A {\"op\":\"Flags\",\"user\":\"u\"}",
        "A {\"op\":7,\"user\":\"u\"}",
        "A {\"op\":\"flags\",\"user\":\"\xc0\xaf\"}",               /* overlong */
        "A {\"op\":\"flags\",\"user\":\"\xed\xa0\x80\"}",           /* surrogate */
        "A {\"op\":\"flags\",\"user\":\"\xf4\x90\x80\x80\"}",       /* above U+10FFFF */
        "A {\"op\":\"flags\",\"user\":\"a\x01\"}",
        "A {\"op\":\"flags\",\"user\":\"u\",}",
        "A {\"op\":\"flags\",\"user\":\"u\"",
        "A {\"op\":\"flags\",\"user\":\"u}",
        "A {}",
        "U {\"op\":\"flags\",\"user\":\"u\"}",
    };
    struct au_proto_line l;
    char *why = NULL;

    test_begin("A: the fast path takes only what the full path takes, as sent");
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        test_assert(fast(taken[i]));
        test_assert_int(parse(taken[i], &l, &why), 0);
        test_assert(l.members != NULL && l.members_len == strlen(taken[i]) - 4);
        au_proto_line_free(&l);
    }
    for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) {
        if (fast(left[i]))
            printf("    taken: %s\n", left[i]);
        test_assert(!fast(left[i]));
    }
    free(why);
    test_end();
}

int main(void)
{
    test_audit();
    test_fast_path();
    test_usage();
    test_sync_and_framing();
    test_client();
    return test_done();
}
