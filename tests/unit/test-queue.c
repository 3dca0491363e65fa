/* Unit tests for mk_queue: reading postqueue -j. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mk_queue.h"
#include "mk_test.h"

int main(void)
{
    struct mk_queue_msg *msgs;
    const struct mk_queue_msg *m;
    size_t n;
    int skipped;

    test_begin("mk_queue_parse: messages, their queue and recipients");
    skipped = mk_queue_parse(
        "{\"queue_name\": \"hold\", \"queue_id\": \"4Xyz12\", \"arrival_time\": 1700000000, "
        "\"message_size\": 512, \"sender\": \"alice@example.com\", \"recipients\": "
        "[{\"address\": \"bob@example.com\"}, {\"address\": \"x@external.example\", "
        "\"delay_reason\": \"connect to x: refused\"}]}\n"
        "{\"queue_name\": \"deferred\", \"queue_id\": \"5A\", \"sender\": \"\"}\n", &msgs, &n);
    test_assert_int(skipped, 0);
    test_assert_int(n, 2);
    m = mk_queue_find(msgs, n, "4Xyz12");
    test_assert(m != NULL);
    if (m != NULL) {
        test_assert_str(m->queue, "hold");
        test_assert_str(m->sender, "alice@example.com");
        test_assert_int(m->arrival, 1700000000);
        test_assert_int(m->size, 512);
        test_assert_int(m->nrcpts, 2);
        test_assert_str(m->rcpts[1].address, "x@external.example");
        test_assert_str(m->rcpts[1].reason, "connect to x: refused");
        test_assert(m->rcpts[0].reason == NULL);
    }
    m = mk_queue_find(msgs, n, "5A");
    test_assert(m != NULL && m->nrcpts == 0 && strcmp(m->sender, "") == 0);
    test_assert(mk_queue_find(msgs, n, "4Xyz1") == NULL);
    mk_queue_free(msgs, n);
    test_end();

    test_begin("mk_queue_parse: what is not a queue entry is skipped and counted");
    skipped = mk_queue_parse("not json\n{\"queue_name\": \"hold\"}\n"
                             "{\"queue_name\": \"hold\", \"queue_id\": \"../../etc\"}\n"
                             "[1, 2]\n\n{\"queue_name\": \"active\", \"queue_id\": \"AB\"}",
                             &msgs, &n);
    test_assert_int(skipped, 4);
    test_assert_int(n, 1);
    mk_queue_free(msgs, n);
    test_end();

    test_begin("mk_queue_id_valid: letters and digits only");
    test_assert(mk_queue_id_valid("4Xyz12"));
    test_assert(mk_queue_id_valid("4dKGrt0ZkWz3xy"));
    test_assert(!mk_queue_id_valid(""));
    test_assert(!mk_queue_id_valid("-d"));
    test_assert(!mk_queue_id_valid("AB CD"));
    test_assert(!mk_queue_id_valid("ALL"));
    test_end();

    return test_done();
}
