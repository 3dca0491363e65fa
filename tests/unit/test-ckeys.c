/*
 * Unit tests for mk_ckeys: a key file made, saved, loaded and opened; the
 * sealed private key bound to its user and key; escrow; refusals.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mk_ckeys.h"
#include "mk_mcrypt.h"
#include "mk_test.h"

int main(void)
{
    struct mk_mc_keypair kp, kp2, escrow, got;
    struct mk_ck_file f, g;
    uint8_t server[32], wrong[32];
    char why[256], dir[] = "/tmp/test-ckeys-XXXXXX", *path, *text;

    memset(server, 7, sizeof(server));
    memset(wrong, 8, sizeof(wrong));
    test_assert(mkdtemp(dir) != NULL);
    test_assert(mk_mc_keypair_generate(&kp) == 0 && mk_mc_keypair_generate(&kp2) == 0);
    test_assert(mk_mc_keypair_generate(&escrow) == 0);

    test_begin("ckeys: a file made, saved once, loaded, opened");
    memset(&f, 0, sizeof(f));
    f.active = -1;
    strcpy(f.user, "alice@example.com");
    test_assert(mk_ck_add(&f, &kp, server, &escrow.pub, 1795400000) == 0);
    path = mk_ck_path(dir, "alice@example.com");
    test_assert(mk_ck_load(path, &g, why, sizeof(why)) == 0);       /* none yet */
    test_assert(mk_ck_save(path, &f, true, (uid_t) -1, (gid_t) -1, why, sizeof(why)) == 0);
    test_assert(mk_ck_save(path, &f, true, (uid_t) -1, (gid_t) -1, why, sizeof(why)) == -1 && why[0] == '\0');
    test_assert(mk_ck_load(path, &g, why, sizeof(why)) == 1);
    test_assert_str(g.user, "alice@example.com");
    test_assert(g.nkeys == 1 && mk_ck_active(&g) == &g.keys[0] && g.keys[0].has_escrow);
    test_assert(mk_ck_open(&g, mk_ck_active(&g), server, NULL, &got) == 0);
    test_assert(memcmp(got.priv, kp.priv, 32) == 0 && memcmp(got.pub.id, kp.pub.id, 8) == 0);
    test_assert(mk_ck_open(&g, mk_ck_active(&g), wrong, NULL, &got) == -1);
    test_assert(mk_ck_open_escrow(mk_ck_active(&g), &escrow, &got) == 0);
    test_assert(memcmp(got.priv, kp.priv, 32) == 0);
    test_assert(mk_ck_open_escrow(mk_ck_active(&g), &kp2, &got) == -1);
    {
        struct stat st;

        test_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    }
    test_end();

    test_begin("ckeys: a second key becomes active, the first stays");
    test_assert(mk_ck_add(&g, &kp2, server, NULL, 1795500000) == 0);
    test_assert(mk_ck_add(&g, &kp2, server, NULL, 1795500000) == -1);    /* twice */
    test_assert(mk_ck_save(path, &g, false, (uid_t) -1, (gid_t) -1, why, sizeof(why)) == 0);
    test_assert(mk_ck_load(path, &f, why, sizeof(why)) == 1);
    test_assert(f.nkeys == 2 && f.active == 1 && !f.keys[1].has_escrow);
    test_assert(mk_ck_find(&f, kp.pub.id) == &f.keys[0]);
    test_assert(mk_ck_open(&f, &f.keys[0], server, NULL, &got) == 0);
    test_end();

    test_begin("ckeys: a sealed key moved to another user does not open");
    strcpy(f.user, "mallory@example.com");
    test_assert(mk_ck_open(&f, &f.keys[0], server, NULL, &got) == -1);
    test_end();

    test_begin("ckeys: a key sealed by a password opens with it alone, and back");
    strcpy(f.user, "alice@example.com");
    test_assert(mk_ck_open(&f, &f.keys[1], server, NULL, &got) == 0);
    test_assert(mk_ck_protect(&f, &f.keys[1], &got, NULL, "correct horse") == 0);
    test_assert(f.keys[1].password && f.keys[1].cost == MK_CK_COST_DEFAULT);
    test_assert(mk_ck_save(path, &f, false, (uid_t) -1, (gid_t) -1, why, sizeof(why)) == 0);
    test_assert(mk_ck_load(path, &g, why, sizeof(why)) == 1 && g.keys[1].password);
    test_assert(mk_ck_open(&g, &g.keys[1], server, NULL, &got) == -1);
    test_assert(mk_ck_open(&g, &g.keys[1], server, "wrong horse", &got) == -1);
    test_assert(mk_ck_open(&g, &g.keys[1], NULL, "correct horse", &got) == 0);
    test_assert(memcmp(got.priv, kp2.priv, 32) == 0);
    /* a new password: sealed again */
    test_assert(mk_ck_protect(&g, &g.keys[1], &got, NULL, "battery staple") == 0);
    test_assert(mk_ck_open(&g, &g.keys[1], NULL, "correct horse", &got) == -1);
    test_assert(mk_ck_open(&g, &g.keys[1], NULL, "battery staple", &got) == 0);
    /* and back to the server key */
    test_assert(mk_ck_protect(&g, &g.keys[1], &got, server, NULL) == 0);
    test_assert(!g.keys[1].password && mk_ck_open(&g, &g.keys[1], server, NULL, &got) == 0);
    test_assert(mk_ck_protect(&g, &g.keys[0], &got, server, NULL) == -1);   /* not its key */
    test_end();

    test_begin("ckeys: the parser refuses what is not a key file");
    text = mk_ck_format(&g);
    {
        char *bad = malloc(strlen(text) + 64);
        const char *cases[][2] = {
            {"mailkeep-crypt-keys 1\n", "mailkeep-crypt-keys 2\n"},
            {"user ", "user  "},
            {"active ", "active 0000000000000000\nactive "},
            {" server ", " password "},
        };

        test_assert(mk_ck_parse(text, strlen(text), &f, why, sizeof(why)) == 0);
        test_assert(mk_ck_parse(text, strlen(text) - 1, &f, why, sizeof(why)) == -1
                    && strstr(why, "newline"));
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            char *at = strstr(text, cases[i][0]);

            sprintf(bad, "%.*s%s%s", (int) (at - text), text, cases[i][1],
                    at + strlen(cases[i][0]));
            test_assert(mk_ck_parse(bad, strlen(bad), &f, why, sizeof(why)) == -1);
        }
        /* a key whose id is not its public key's */
        strcpy(bad, text);
        bad[strlen("mailkeep-crypt-keys 1\nuser alice@example.com\nkey ")] ^= 1;
        test_assert(mk_ck_parse(bad, strlen(bad), &f, why, sizeof(why)) == -1);
        free(bad);
    }
    free(text);
    test_end();

    test_begin("ckeys: file names, and key files others may read");
    {
        char *p = mk_ck_path("/k", "Bob/../x y@example.com");

        test_assert_str(p, "/k/%42ob%2F..%2Fx%20y@example.com");
        free(p);
        p = mk_ck_path("/k", "..");
        test_assert_str(p, "/k/%2E");
        free(p);
        test_assert(chmod(path, 0644) == 0);
        test_assert(mk_ck_load(path, &f, why, sizeof(why)) == -1 && strstr(why, "chmod 600"));
    }
    test_end();

    unlink(path);
    rmdir(dir);
    free(path);
    mk_mc_keypair_wipe(&kp);
    mk_mc_keypair_wipe(&kp2);
    mk_mc_keypair_wipe(&escrow);
    mk_mc_forget();
    return test_done();
}
