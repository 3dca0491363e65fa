/*
 * Unit tests for mk_otpstore: the record format (round trip, refusals),
 * sealing (a box opens only for its user and line), hashes, the store's
 * files and locks.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mk_otpstore.h"
#include "mk_test.h"
#include "mk_util.h"

static const char *const good =
    "mailkeep-otp 1\n"
    "user alice@example.com\n"
    "token totp SHA1 6 30 1763900000 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c\n"
    "last 58796666\n"
    "used 1763900100\n"
    "failures 2 1763900200\n"
    "locked 0\n"
    "recovery 00112233445566778899aabbccddeeff "
    "0000000000000000000000000000000000000000000000000000000000000000\n"
    "apppass 3 imap 1763900000 0 - 00112233445566778899aabbccddeeff "
    "1111111111111111111111111111111111111111111111111111111111111111 Thunderbird on my laptop\n"
    "changed 1760000000\n"
    "mustchange reset 1763000000\n"
    "history 1760000000 $y$j9T$abc$def\n";

static int parse_fails(const char *text, const char *why)
{
    struct mk_otp_record r;
    char *error = NULL;
    int ok;

    if (mk_otp_record_parse(text, strlen(text), &r, &error) == 0) {
        mk_otp_record_free(&r);
        printf("  accepted: %s", text);
        return 0;
    }
    ok = strstr(error, why) != NULL;
    if (!ok)
        printf("  error \"%s\", expected \"%s\"\n", error, why);
    free(error);
    return ok;
}

int main(void)
{
    struct mk_otp_record r, r2;
    char *error = NULL, *text;

    test_begin("record: parse, then format gives the same text");
    test_assert_int(mk_otp_record_parse(good, strlen(good), &r, &error), 0);
    test_assert_str(r.user, "alice@example.com");
    test_assert(r.token.present && !r.pending.present);
    test_assert_int(r.token.digits, 6);
    test_assert_int(r.last, 58796666);
    test_assert_int(r.failures, 2);
    test_assert(r.locked && r.locked_until == 0);
    test_assert_int(r.nrecovery, 1);
    test_assert_int(r.napppass, 1);
    test_assert_str(r.apppass[0].label, "Thunderbird on my laptop");
    test_assert_str(r.apppass[0].service, "imap");
    test_assert_str(r.must_change, "reset");
    test_assert_int(r.nhistory, 1);
    text = mk_otp_record_format(&r);
    test_assert_int(mk_otp_record_parse(text, strlen(text), &r2, &error), 0);
    {
        char *again = mk_otp_record_format(&r2);

        test_assert_str(again, text);
        free(again);
    }
    mk_otp_record_free(&r2);
    free(text);
    mk_otp_record_free(&r);
    test_end();

    test_begin("record: what the parser refuses, and says why");
    test_assert(parse_fails("", "empty"));
    test_assert(parse_fails("mailkeep-otp 2\nuser a@b\n", "version 1"));
    test_assert(parse_fails("mailkeep-otp 1\n", "no user"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b", "no newline"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\nuser c@d\n", "twice"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\nfrobnicate 1\n", "unknown keyword"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\nlast 99999999999999999999999\n",
                            "bad number"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\nlast -1\n", "bad number"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\nlast  1\n", "empty field"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a\tb\n", "control"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\ntoken hotp sha256 6 0 1 "
                            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c\n",
                            "algorithm"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\ntoken totp sha1 9 30 1 "
                            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c\n",
                            "digits"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\ntoken totp sha1 6 30 1 00zz\n",
                            "sealed"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\nrecovery 00 11\n", "hex"));
    test_assert(parse_fails("mailkeep-otp 1\nuser a@b\napppass 1 imap 1 0 -\n", "wants"));
    test_end();

    test_begin("sealing: opens for its user and line only");
    {
        char dir[] = "/tmp/mk-otp-XXXXXX";
        struct mk_otp_store *store;
        struct mk_otp_token t, back;
        struct mk_otp_sealed s;
        char *key;

        test_assert(mkdtemp(dir) != NULL);
        chmod(dir, 0700);
        key = mk_xasprintf("%s.key", dir);
        store = mk_otp_store_open(dir, key, false, &error);
        test_assert(store != NULL);
        test_assert_int(mk_otp_store_key(store, false, &error), -1);    /* no key yet */
        free(error);
        error = NULL;
        test_assert_int(mk_otp_store_key(store, true, &error), 0);      /* made */
        memset(&t, 0, sizeof(t));
        t.kind = MK_OTP_TOTP;
        t.digits = 6;
        t.period = 30;
        t.secret_len = 20;
        memcpy(t.secret, "12345678901234567890", 20);
        test_assert_int(mk_otp_seal(store, "alice@example.com", "token", &t, &s), 0);
        test_assert_int(mk_otp_unseal(store, "alice@example.com", "token", &s, &back), 0);
        test_assert(back.secret_len == 20 && memcmp(back.secret, t.secret, 20) == 0);
        test_assert_int(mk_otp_unseal(store, "bob@example.com", "token", &s, &back), -1);
        test_assert_int(mk_otp_unseal(store, "alice@example.com", "pending", &s, &back), -1);
        s.digits = 8;                                       /* parameters are bound too */
        test_assert_int(mk_otp_unseal(store, "alice@example.com", "token", &s, &back), -1);
        s.digits = 6;
        s.box[30] = s.box[30] == '0' ? '1' : '0';           /* and the bytes */
        test_assert_int(mk_otp_unseal(store, "alice@example.com", "token", &s, &back), -1);
        free(s.box);
        test_end();

        test_begin("store: read, lock, write, remove when empty");
        {
            struct mk_otp_lock *lock;
            char **users;
            char *path = mk_xasprintf("%s/alice@example.com", dir);
            struct stat st;

            test_assert_int(mk_otp_store_read(store, "alice@example.com", &r, &error), 0);
            test_assert(mk_otp_record_empty(&r));
            mk_otp_record_free(&r);
            lock = mk_otp_store_lock(store, "alice@example.com", &r, &error);
            test_assert(lock != NULL);
            mk_otp_store_unlock(lock);                      /* nothing written: no file */
            mk_otp_record_free(&r);
            test_assert(stat(path, &st) != 0);
            lock = mk_otp_store_lock(store, "alice@example.com", &r, &error);
            r.failures = 3;
            r.failed = 100;
            test_assert_int(mk_otp_store_write(lock, &r, &error), 0);
            r.last = 7;                                     /* twice under one lock */
            test_assert_int(mk_otp_store_write(lock, &r, &error), 0);
            mk_otp_store_unlock(lock);
            mk_otp_record_free(&r);
            test_assert(stat(path, &st) == 0 && (st.st_mode & 077) == 0);
            test_assert_int(mk_otp_store_read(store, "alice@example.com", &r, &error), 0);
            test_assert_int(r.failures, 3);
            test_assert_int(r.last, 7);
            mk_otp_record_free(&r);
            users = mk_otp_store_users(store, &error);
            test_assert(users != NULL && users[0] != NULL && users[1] == NULL);
            test_assert_str(users[0], "alice@example.com");
            mk_str_array_free(users);
            test_assert_int(mk_otp_store_read(store, "Alice@example.com", &r, &error), -1);
            free(error);
            error = NULL;
            lock = mk_otp_store_lock(store, "alice@example.com", &r, &error);
            mk_otp_record_free(&r);
            mk_otp_record_init(&r, "alice@example.com");
            test_assert_int(mk_otp_store_write(lock, &r, &error), 0);
            mk_otp_store_unlock(lock);
            mk_otp_record_free(&r);
            test_assert(stat(path, &st) != 0);
            /* a file holding someone else's record is refused */
            {
                FILE *fp = fopen(path, "w");

                fputs("mailkeep-otp 1\nuser bob@example.com\n", fp);
                fclose(fp);
                chmod(path, 0600);
            }
            test_assert_int(mk_otp_store_read(store, "alice@example.com", &r, &error), -1);
            test_assert(error != NULL && strstr(error, "bob@example.com") != NULL);
            free(error);
            error = NULL;
            unlink(path);
            free(path);
        }
        mk_otp_store_close(store);
        unlink(key);
        free(key);
        chmod(dir, 0755);                                   /* open to others: refused */
        test_assert(mk_otp_store_open(dir, "x", false, &error) == NULL);
        test_assert(error != NULL && strstr(error, "chmod 700") != NULL);
        free(error);
        rmdir(dir);
        test_end();
    }

    test_begin("hashes and random codes");
    {
        struct mk_otp_hash h;
        char *code = mk_otp_random_code(4);

        test_assert_int(strlen(code), 19);
        test_assert(code[4] == '-' && code[9] == '-' && code[14] == '-');
        mk_otp_hash_make(code, &h);
        test_assert(mk_otp_hash_check(code, &h));
        {
            char upper[32], bare[32];
            size_t n = 0;

            for (size_t i = 0; code[i] != '\0'; i++) {
                upper[i] = (char) (code[i] >= 'a' && code[i] <= 'z' ? code[i] - 32 : code[i]);
                if (code[i] != '-')
                    bare[n++] = code[i];
            }
            upper[strlen(code)] = '\0';
            bare[n] = '\0';
            test_assert(mk_otp_hash_check(upper, &h));      /* case folded */
            test_assert(mk_otp_hash_check(bare, &h));       /* dashes optional */
            bare[0] = bare[0] == 'a' ? 'b' : 'a';
            test_assert(!mk_otp_hash_check(bare, &h));
        }
        free(code);
    }
    test_end();

    return test_done();
}
