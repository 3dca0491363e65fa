/*
 * libFuzzer target: what mailkeep-recall and mailkeep recall read from
 * outside: Message-ID header values (from any sender, and typed by
 * people) with rc_msgid_parse, and the Postfix queue listing
 * (postqueue -j) with mk_queue_parse. A Message-ID that parses must
 * parse again to itself, so that the milter, the command and doveadm's
 * answers always agree.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mk_queue.h"
#include "rc_msgid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *id;
    struct mk_queue_msg *msgs;
    size_t n;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if ((id = rc_msgid_parse((const char *) data, size)) != NULL) {
        size_t len = strlen(id);
        char *again = rc_msgid_parse(id, len);

        if (len < 5 || id[0] != '<' || id[len - 1] != '>' || strchr(id, '@') == NULL
            || strpbrk(id, " \t\r\n") != NULL || len > RC_MSGID_MAX || again == NULL
            || strcmp(again, id) != 0)
            abort();
        free(again);
        free(id);
    }
    (void) mk_queue_parse(text, &msgs, &n);
    for (size_t i = 0; i < n; i++)
        if (!mk_queue_id_valid(msgs[i].id))
            abort();
    mk_queue_free(msgs, n);
    free(text);
    return 0;
}
