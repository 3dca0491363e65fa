/* Unit tests for rc_db: the recall database. */
#include "config.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mk_test.h"
#include "mk_util.h"
#include "rc_db.h"

static char tmpdir[64];

static struct rc_message message(const char *msgid, const char *qid, int64_t time,
                                 const char *owner, struct rc_rcpt *rcpts, size_t n)
{
    return (struct rc_message) {
        .message_id = (char *) msgid, .queue_id = (char *) qid, .time = time,
        .sender = (char *) (owner ? owner : "someone@outside.example"),
        .subject = "=?UTF-8?B?5YWs5Y+4?=", .owner = (char *) owner,
        .owner_domain = owner ? strchr(owner, '@') + 1 : NULL,
        .origin = owner ? "sasl" : "none", .rcpts = rcpts, .nrcpts = n,
    };
}

struct writer {
    struct rc_db *db;
    int base, count, failures;
};

static void *write_many(void *arg)
{
    struct writer *w = arg;

    for (int i = 0; i < w->count; i++) {
        char id[64], *error = NULL;
        struct rc_rcpt r = {.address = "bob@example.com", .direction = "internal"};
        struct rc_message m;

        snprintf(id, sizeof(id), "<t%d.%d@example.com>", w->base, i);
        m = message(id, "ABC", 1000 + i, "alice@example.com", &r, 1);
        if (rc_db_add(w->db, &m, &error) < 0) {
            w->failures++;
            free(error);
        }
    }
    return NULL;
}

int main(void)
{
    struct rc_rcpt rcpts[] = {
        {.address = "bob@example.com", .direction = "internal"},
        {.address = "partner@external.example", .direction = "outbound"},
    };
    struct rc_message m, *found;
    struct rc_filter f;
    struct rc_db *db, *ro;
    char path[128], *error = NULL;
    int64_t when, removed;
    size_t n;

    snprintf(tmpdir, sizeof(tmpdir), "%s/mk-rcdb-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
             : "/tmp");
    if (strlen(tmpdir) > 60 || mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/recall.sqlite", tmpdir);

    test_begin("rc_db: a reader refuses a database that does not exist");
    test_assert(rc_db_open(path, false, &error) == NULL && error != NULL);
    free(error);
    error = NULL;
    test_end();

    test_begin("rc_db: add a message and find it by Message-ID");
    db = rc_db_open(path, true, &error);
    test_assert(db != NULL);
    m = message("<one@example.com>", "4Xyz1", 1000, "alice@example.com", rcpts, 2);
    test_assert(rc_db_add(db, &m, &error) == 0);
    test_assert(m.id > 0);
    f = (struct rc_filter) {.message_id = "<one@example.com>"};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0);
    test_assert_int(n, 1);
    if (n == 1) {
        test_assert_int(found[0].id, m.id);
        test_assert_str(found[0].queue_id, "4Xyz1");
        test_assert_str(found[0].owner, "alice@example.com");
        test_assert_str(found[0].owner_domain, "example.com");
        test_assert_str(found[0].subject, "=?UTF-8?B?5YWs5Y+4?=");
        test_assert(found[0].hold_state == NULL && found[0].hold_until == 0);
        test_assert_int(found[0].nrcpts, 2);
        test_assert_str(found[0].rcpts[0].address, "bob@example.com");
        test_assert_str(found[0].rcpts[1].direction, "outbound");
        test_assert(found[0].rcpts[0].status == NULL);
    }
    rc_messages_free(found, n);
    test_end();

    test_begin("rc_db: the filters: owner (any case), domain, since, limit");
    m = message("<two@example.com>", "4Xyz2", 2000, "wei@example.org", rcpts, 1);
    test_assert(rc_db_add(db, &m, &error) == 0);
    m = message("<three@example.com>", "4Xyz3", 3000, NULL, rcpts, 1);
    test_assert(rc_db_add(db, &m, &error) == 0);
    f = (struct rc_filter) {.owner = "ALICE@example.com"};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 1);
    rc_messages_free(found, n);
    f = (struct rc_filter) {.owner_domain = "example.org"};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 1
                && strcmp(found[0].message_id, "<two@example.com>") == 0);
    rc_messages_free(found, n);
    f = (struct rc_filter) {.since = 2000};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 2);
    test_assert(n == 2 && strcmp(found[0].message_id, "<three@example.com>") == 0);
    rc_messages_free(found, n);
    f = (struct rc_filter) {.limit = 1};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 1);
    rc_messages_free(found, n);
    test_end();

    test_begin("rc_db: outcomes per recipient");
    f = (struct rc_filter) {.message_id = "<one@example.com>"};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 1);
    test_assert(rc_db_set_status(db, found[0].id, "bob@example.com", "recalled", 1234,
                                 &error) == 0);
    rc_messages_free(found, n);
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 1);
    test_assert_str(found[0].rcpts[0].status, "recalled");
    test_assert_int(found[0].rcpts[0].status_time, 1234);
    test_assert(found[0].rcpts[1].status == NULL);
    rc_messages_free(found, n);
    test_end();

    test_begin("rc_db: holds fall due, change state, and are never expired while held");
    m = message("<held@example.com>", "4Xyz4", 500, "alice@example.com", rcpts, 2);
    m.hold_until = 560;
    m.hold_state = "held";
    test_assert(rc_db_add(db, &m, &error) == 0);
    test_assert(rc_db_next_release(db, &when, &error) == 0);
    test_assert_int(when, 560);
    f = (struct rc_filter) {.held_due = 559};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 0);
    rc_messages_free(found, n);
    f = (struct rc_filter) {.held_due = 560};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 1);
    rc_messages_free(found, n);
    test_assert(rc_db_expire(db, 100000, &removed, &error) == 0);
    test_assert_int(removed, 3);        /* all but the held one */
    test_assert(rc_db_set_hold(db, m.id, "released", &error) == 0);
    test_assert(rc_db_next_release(db, &when, &error) == 0);
    test_assert_int(when, 0);
    f = (struct rc_filter) {.held_due = 100000};
    test_assert(rc_db_find(db, &f, &found, &n, &error) == 0 && n == 0);
    rc_messages_free(found, n);
    test_assert(rc_db_expire(db, 100000, &removed, &error) == 0);
    test_assert_int(removed, 1);
    test_end();

    test_begin("rc_db: threads share commits and lose nothing");
    {
        struct writer w[4];
        pthread_t t[4];
        int failures = 0;

        for (int i = 0; i < 4; i++) {
            w[i] = (struct writer) {.db = db, .base = i, .count = 200};
            pthread_create(&t[i], NULL, write_many, &w[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            failures += w[i].failures;
        }
        test_assert_int(failures, 0);
        f = (struct rc_filter) {.owner = "alice@example.com"};
        test_assert(rc_db_find(db, &f, &found, &n, &error) == 0);
        test_assert_int(n, 800);
        rc_messages_free(found, n);
    }
    test_end();

    test_begin("rc_db: a reader sees what the writer wrote, and cannot write");
    ro = rc_db_open(path, false, &error);
    test_assert(ro != NULL);
    if (ro != NULL) {
        f = (struct rc_filter) {.limit = 5};
        test_assert(rc_db_find(ro, &f, &found, &n, &error) == 0 && n == 5);
        rc_messages_free(found, n);
        m = message("<ro@example.com>", "X", 1, NULL, rcpts, 1);
        test_assert(rc_db_add(ro, &m, &error) < 0 && error != NULL);
        free(error);
        error = NULL;
        rc_db_close(ro);
    }
    test_end();

    test_begin("rc_db: a newer schema is refused");
    rc_db_close(db);
    {
        sqlite3 *raw;
        char cmd[128];

        test_assert(sqlite3_open(path, &raw) == SQLITE_OK);
        test_assert(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(raw);
        test_assert(rc_db_open(path, true, &error) == NULL);
        test_assert(error != NULL && strstr(error, "newer") != NULL);
        free(error);
        error = NULL;
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        (void) system(cmd);
    }
    test_end();

    return test_done();
}
