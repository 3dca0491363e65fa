/*
 * libFuzzer target: one line a client sends mailkeep-auditd (au_proto).
 * What is accepted must obey the contract, and an audit record must come
 * back the same from what the log keeps of it. The daemon's fast path
 * must take nothing the full path refuses, and keep what it takes as the
 * full path would.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "au_db.h"
#include "au_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct au_proto_line l, back;
    char *error = NULL, *members, *line, *again;
    size_t len;

    bool fast = au_proto_audit_fast((const char *) data, size);

    if (au_proto_parse((const char *) data, size, &l, &error) < 0) {
        if (error == NULL || strchr(error, '\n') != NULL)
            abort();                    /* a reason is one line, fit for "E TEXT" */
        if (fast)
            abort();                    /* the fast path took what the full path refuses */
        free(error);
        return 0;
    }
    /* what the fast path takes is compact, as sent, and not for the database */
    if (fast && (l.kind != AU_PROTO_AUDIT || l.members == NULL || l.members_len != size - 4
                 || memcmp(l.members, data + 3, size - 4) != 0 || au_db_wants(l.obj)))
        abort();
    if (size < 2 || data[1] != ' ' || memchr(data, '\n', size) != NULL)
        abort();
    if (l.kind == AU_PROTO_SYNC) {
        if (!au_proto_token_valid(l.token, strlen(l.token)))
            abort();
        return 0;
    }
    if (l.kind != AU_PROTO_AUDIT) {
        au_proto_line_free(&l);
        return 0;
    }
    if (au_proto_check_audit(l.obj, &error) < 0)
        abort();
    if ((members = au_proto_members(l.obj, &len)) == NULL || memchr(members, '\n', len) != NULL
        || len + 4 > size + 2)          /* compact: never longer than what was sent */
        abort();
    /* the members taken as sent are exactly what would be written */
    if (l.members != NULL
        && (l.members_len != len || memcmp(l.members, members, len) != 0))
        abort();
    line = malloc(len + 4);
    memcpy(line, "A {", 3);
    memcpy(line + 3, members, len);
    line[len + 3] = '}';
    if (au_proto_parse(line, len + 4, &back, &error) < 0 || !json_equal(l.obj, back.obj))
        abort();
    again = au_proto_members(back.obj, NULL);
    if (again == NULL || strcmp(again, members) != 0)
        abort();
    free(again);
    au_proto_line_free(&back);
    free(line);
    free(members);
    au_proto_line_free(&l);
    return 0;
}
