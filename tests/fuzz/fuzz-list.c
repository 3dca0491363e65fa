/*
 * libFuzzer target: list files (mk_list). The first byte chooses the
 * kind and flags; the rest is the file. Every list that parses is then
 * matched against a few addresses, so matching runs on fuzzed data too.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "mk_list.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const senders[] = {"", "a@b.example", "postmaster@x.y.example",
                                          "\xff@\xfe.example"};
    static const char *const ips[] = {"192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1"};
    enum mk_list_kind kind;
    struct mk_list *list;
    char *errors = NULL;
    unsigned flags;

    if (size < 1)
        return 0;
    kind = data[0] & 1 ? MK_LIST_SENDERS : MK_LIST_CLIENTS;
    flags = (data[0] >> 1) & (MK_LIST_NO_PATTERNS | MK_LIST_SKIP_BAD);
    list = mk_list_parse("fuzz", (const char *) data + 1, size - 1, kind, flags, &errors);
    free(errors);
    if (list) {
        for (size_t i = 0; i < sizeof(senders) / sizeof(senders[0]); i++)
            (void) mk_list_match_sender(list, senders[i]);
        for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
            struct mk_ip ip;

            if (mk_ip_parse(ips[i], &ip) == 0)
                (void) mk_list_match_ip(list, &ip);
        }
        mk_list_free(list);
    }
    return 0;
}
