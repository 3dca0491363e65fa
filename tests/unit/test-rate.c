/* Unit tests for mk_rate: sliding windows and bans. */
#include "config.h"

#include "mk_rate.h"
#include "mk_test.h"

int main(void)
{
    struct mk_rate *r = mk_rate_create(1000);
    time_t t0 = 1000020;                /* a multiple of 60: a window boundary */
    double n = 0;

    test_begin("rate: counts within one window");
    for (int i = 0; i < 10; i++)
        n = mk_rate_hit(r, "k", 60, t0 + i);
    test_assert(n == 10);
    test_assert(mk_rate_peek(r, "k", 60, t0 + 10) == 10);
    test_assert(mk_rate_peek(r, "other", 60, t0) == 0);
    test_end();

    test_begin("rate: the previous window fades out linearly");
    test_assert(mk_rate_peek(r, "k", 60, t0 + 60) == 10);   /* all of it still overlaps */
    test_assert(mk_rate_peek(r, "k", 60, t0 + 90) == 5);    /* half */
    n = mk_rate_hit(r, "k", 60, t0 + 90);
    test_assert(n == 6);
    test_assert(mk_rate_peek(r, "k", 60, t0 + 200) == 0);   /* two windows later: gone */
    test_end();

    test_begin("rate: keys are independent");
    mk_rate_hit(r, "a", 60, t0);
    mk_rate_hit(r, "a", 60, t0);
    test_assert(mk_rate_hit(r, "b", 60, t0) == 1);
    test_end();

    test_begin("rate: bans last until their time");
    mk_rate_ban(r, "ban:x", t0, t0 + 100);
    test_assert(mk_rate_banned(r, "ban:x", t0 + 50) == t0 + 100);
    test_assert(mk_rate_banned(r, "ban:x", t0 + 100) == 0);
    test_assert(mk_rate_banned(r, "ban:y", t0) == 0);
    test_end();
    mk_rate_free(r);

    test_begin("rate: the table stays bounded and keeps bans");
    r = mk_rate_create(100);
    mk_rate_ban(r, "ban:keep", t0, t0 + 1000);
    for (int i = 0; i < 1000; i++) {
        char key[32];

        snprintf(key, sizeof(key), "k%d", i);
        mk_rate_hit(r, key, 60, t0 + i / 100);
    }
    test_assert(mk_rate_banned(r, "ban:keep", t0 + 20) == t0 + 1000);
    test_assert(mk_rate_peek(r, "k999", 60, t0 + 9) == 1);
    mk_rate_free(r);
    test_end();
    return test_done();
}
