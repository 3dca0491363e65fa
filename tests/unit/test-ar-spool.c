/* Tests for ar_spool: the journal's envelope text and spool files. */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ar_spool.h"
#include "mk_test.h"
#include "mk_util.h"

static void test_envelope(void)
{
    struct ar_envelope e, back;
    char *text, *again, *error = NULL;
    size_t len;

    test_begin("envelope: every field round-trips, odd bytes percent-encoded");
    memset(&e, 0, sizeof(e));
    e.time = 1763880000;
    e.queue_id = mk_xstrdup("4XyZ12");
    e.sender = mk_xstrdup("");
    e.client = mk_xstrdup("2001:db8::1");
    e.helo = mk_xstrdup("odd helo\twith%stuff");
    e.login = mk_xstrdup("alice");
    e.source = mk_xstrdup("journal");
    ar_envelope_add_rcpt(&e, "bob@example.com", "internal");
    ar_envelope_add_rcpt(&e, "\"a b\"@partner.example", "outbound");
    text = ar_envelope_format(&e, &len);
    test_assert(strstr(text, "version 1\ntime 1763880000\nqueue-id 4XyZ12\nsender \n") == text);
    test_assert(strstr(text, "helo odd%20helo%09with%25stuff\n") != NULL);
    test_assert(strstr(text, "rcpt \"a%20b\"@partner.example outbound\n") != NULL);
    test_assert_int(ar_envelope_parse(text, len, &back, &error), 0);
    test_assert_str(back.helo, "odd helo\twith%stuff");
    test_assert_str(back.sender, "");
    test_assert(back.client_name == NULL && back.nrcpts == 2);
    test_assert_str(back.rcpts[1], "\"a b\"@partner.example");
    again = ar_envelope_format(&back, NULL);
    test_assert_str(again, text);
    test_assert_str(ar_envelope_direction(&back), "outbound");
    free(again);
    free(text);
    ar_envelope_free(&back);
    ar_envelope_free(&e);
    test_end();

    test_begin("envelope: damage is refused, never guessed at");
    {
        static const char *const bad[] = {
            "time 1\nsender a\n",                       /* no version */
            "version 2\ntime 1\nsender a\n",            /* unknown version */
            "version 1\nsender a\n",                    /* no time */
            "version 1\ntime 1\n",                      /* no sender */
            "version 1\ntime x\nsender a\n",
            "version 1\ntime 1\nsender a\nsender b\n",  /* repeated */
            "version 1\ntime 1\nsender a\ncolour red\n",
            "version 1\ntime 1\nsender a%2\n",
            "version 1\ntime 1\nsender a%00b\n",
            "version 1\ntime 1\nsender a b\n",
            "version 1\ntime 1\nsender a\nrcpt b\n",
            "version 1\ntime 1\nsender a",              /* not terminated */
        };

        for (size_t i = 0; i < MK_ARRAY_LEN(bad); i++) {
            error = NULL;
            test_assert(ar_envelope_parse(bad[i], strlen(bad[i]), &back, &error) == -1);
            test_assert(error != NULL);
            free(error);
        }
    }
    test_end();
}

static void test_spool(void)
{
    char dir[] = "/tmp/test-ar-spool.XXXXXX", **names = NULL, *error = NULL, *path;
    struct ar_spool_file f;
    struct ar_spool_item it;
    struct ar_envelope e;
    const char msg[] = "Subject: hi\r\n\r\nbody\r\n";

    test_begin("spool: a committed message is complete in new/ and reads back exactly");
    test_assert(mkdtemp(dir) != NULL);
    test_assert_int(ar_spool_prepare(dir, &error), 0);
    memset(&e, 0, sizeof(e));
    e.time = 42;
    e.sender = mk_xstrdup("a@x.example");
    ar_envelope_add_rcpt(&e, "b@y.example", "inbound");
    test_assert_int(ar_spool_begin(&f, dir, &error), 0);
    ar_spool_write(&f, msg, 13);
    ar_spool_write(&f, msg + 13, sizeof(msg) - 1 - 13);
    test_assert_int(ar_spool_list(dir, &names, &error), 0);
    test_assert(names[0] == NULL);              /* nothing before the commit */
    mk_str_array_free(names);
    test_assert_int(ar_spool_commit(&f, &e, &error), 0);
    test_assert_int(ar_spool_list(dir, &names, &error), 0);
    test_assert(names[0] != NULL && names[1] == NULL);
    test_assert_int(ar_spool_read(dir, names[0], &it, &error), 0);
    test_assert(it.msg_len == sizeof(msg) - 1 && memcmp(it.msg, msg, it.msg_len) == 0);
    test_assert(it.env.time == 42 && it.env.nrcpts == 1);
    test_assert_str(it.env.rcpts[0], "b@y.example");
    ar_spool_item_free(&it);
    test_end();

    test_begin("spool: a damaged file is reported, not half-read; remove and abort");
    path = mk_xasprintf("%s/new/%s", dir, names[0]);
    test_assert(truncate(path, 60) == 0);
    error = NULL;
    test_assert_int(ar_spool_read(dir, names[0], &it, &error), -1);
    test_assert(error && strstr(error, "no valid spool trailer"));
    free(error);
    test_assert_int(ar_spool_remove(dir, names[0], &error), 0);
    test_assert(access(path, F_OK) < 0);
    free(path);
    mk_str_array_free(names);
    test_assert_int(ar_spool_begin(&f, dir, &error), 0);
    path = mk_xstrdup(f.tmp_path);
    ar_spool_write(&f, "x", 1);
    ar_spool_abort(&f);
    test_assert(access(path, F_OK) < 0);
    free(path);
    test_end();

    test_begin("spool: a write error shows at commit, and no file is left");
    test_assert_int(ar_spool_begin(&f, dir, &error), 0);
    close(f.fd);
    f.fd = open("/dev/full", O_WRONLY);
    ar_spool_write(&f, msg, sizeof(msg) - 1);
    error = NULL;
    test_assert_int(ar_spool_commit(&f, &e, &error), -1);
    test_assert(error && strstr(error, "No space left"));
    free(error);
    test_assert_int(ar_spool_list(dir, &names, &error), 0);
    test_assert(names[0] == NULL);
    mk_str_array_free(names);
    ar_envelope_free(&e);
    {
        char *cmd = mk_xasprintf("rm -rf %s", dir);

        test_assert(system(cmd) == 0);
        free(cmd);
    }
    test_end();
}

int main(void)
{
    test_envelope();
    test_spool();
    return test_done();
}
