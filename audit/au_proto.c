/*
 * au_proto - the audit socket's lines. See au_proto.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "au_proto.h"
#include "mk_util.h"

static const char *const au_proto_reserved[] = {"seq", "time", "prev", "hash", "sig", "peer"};

bool au_proto_op_valid(const char *op)
{
    size_t n = 0;

    for (; op[n] != '\0'; n++)
        if (n >= AU_PROTO_MAX_OP || !((op[n] >= 'a' && op[n] <= 'z') || op[n] == '-'))
            return false;
    return n > 0;
}

bool au_proto_token_valid(const char *token, size_t len)
{
    if (len == 0 || len > AU_PROTO_MAX_TOKEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = token[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '-'))
            return false;
    }
    return true;
}

const char *au_proto_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool au_proto_int(const json_t *obj, const char *key, long long *value)
{
    const json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v))
        return false;
    *value = (long long) json_integer_value(v);
    return true;
}

/* A key as it may appear in a reason: printable ASCII, at most 40 characters. */
static void au_proto_key_text(const char *key, char out[48])
{
    size_t o = 0;

    for (size_t i = 0; key[i] != '\0' && o < 40; i++)
        out[o++] = key[i] > 0x20 && key[i] < 0x7f ? key[i] : '?';
    if (key[0] != '\0' && strlen(key) > 40)
        out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = '\0';
}

/* Values anywhere in the record: no null, no real, bounded depth. */
static int au_proto_check_value(const json_t *v, const char *top, int depth, char **error)
{
    char key[48];

    au_proto_key_text(top, key);
    if (depth > AU_PROTO_MAX_DEPTH) {
        *error = mk_xasprintf("\"%s\": nested deeper than %d levels", key, AU_PROTO_MAX_DEPTH);
        return -1;
    }
    switch (json_typeof(v)) {
    case JSON_NULL:
        *error = mk_xasprintf("\"%s\": null is not a value a record keeps (leave the key out)",
                              key);
        return -1;
    case JSON_REAL:
        *error = mk_xasprintf("\"%s\": a number with a fraction or an exponent (only integers "
                              "are kept)", key);
        return -1;
    case JSON_ARRAY: {
        size_t i;
        const json_t *item;

        json_array_foreach(v, i, item)
            if (au_proto_check_value(item, top, depth + 1, error) < 0)
                return -1;
        return 0;
    }
    case JSON_OBJECT: {
        const char *k;
        const json_t *item;

        json_object_foreach((json_t *) v, k, item)
            if (au_proto_check_value(item, top, depth + 1, error) < 0)
                return -1;
        return 0;
    }
    default:
        return 0;
    }
}

int au_proto_check_audit(const json_t *obj, char **error)
{
    const char *op, *k;
    const json_t *v;

    *error = NULL;
    if (!json_is_object(obj)) {
        *error = mk_xstrdup("an audit record is a JSON object");
        return -1;
    }
    if ((op = au_proto_str(obj, "op")) == NULL) {
        *error = mk_xstrdup("\"op\" is missing or not a string");
        return -1;
    }
    if (!au_proto_op_valid(op)) {
        *error = mk_xasprintf("\"op\" is not 1 to %d characters of a-z and -", AU_PROTO_MAX_OP);
        return -1;
    }
    if (strcmp(op, "checkpoint") == 0) {
        *error = mk_xstrdup("\"op\": checkpoint records are written by the daemon only");
        return -1;
    }
    if (au_proto_str(obj, "user") == NULL) {
        *error = mk_xstrdup("\"user\" is missing or not a string (\"\" for no user)");
        return -1;
    }
    for (size_t i = 0; i < MK_ARRAY_LEN(au_proto_reserved); i++)
        if (json_object_get(obj, au_proto_reserved[i]) != NULL) {
            *error = mk_xasprintf("\"%s\" is reserved: the daemon writes it",
                                  au_proto_reserved[i]);
            return -1;
        }
    json_object_foreach((json_t *) obj, k, v)
        if (au_proto_check_value(v, k, 1, error) < 0)
            return -1;
    return 0;
}

static bool au_proto_guid_valid(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++)
        if (n >= AU_PROTO_MAX_GUID || !((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')
                                        || (s[n] >= 'A' && s[n] <= 'F')))
            return false;
    return n > 0;
}

static int au_proto_check_usage(const json_t *obj, char **error)
{
    const char *kind = au_proto_str(obj, "kind"), *user = au_proto_str(obj, "user"), *s;
    long long n;

    if (kind == NULL) {
        *error = mk_xstrdup("\"kind\" is missing or not a string");
        return -1;
    }
    if (user == NULL || *user == '\0') {
        *error = mk_xstrdup("\"user\" is missing, empty or not a string");
        return -1;
    }
    if (strcmp(kind, "mailbox") == 0 || strcmp(kind, "mailbox-delete") == 0) {
        if ((s = au_proto_str(obj, "mailbox_guid")) == NULL || !au_proto_guid_valid(s)) {
            *error = mk_xasprintf("\"mailbox_guid\" is missing or not 1 to %d hex digits",
                                  AU_PROTO_MAX_GUID);
            return -1;
        }
        if (strcmp(kind, "mailbox-delete") == 0)
            return 0;
        if (au_proto_str(obj, "mailbox") == NULL) {
            *error = mk_xstrdup("\"mailbox\" is missing or not a string");
            return -1;
        }
        if (!au_proto_int(obj, "messages", &n) || n < 0) {
            *error = mk_xstrdup("\"messages\" is missing or not an integer of at least 0");
            return -1;
        }
        if (!au_proto_int(obj, "vsize", &n) || n < 0) {
            *error = mk_xstrdup("\"vsize\" is missing or not an integer of at least 0");
            return -1;
        }
        return 0;
    }
    if (strcmp(kind, "login") == 0) {
        s = au_proto_str(obj, "service");
        if (s == NULL || *s == '\0' || strlen(s) > AU_PROTO_MAX_SERVICE) {
            *error = mk_xasprintf("\"service\" is missing or not 1 to %d characters",
                                  AU_PROTO_MAX_SERVICE);
            return -1;
        }
        if (json_object_get(obj, "ip") != NULL && au_proto_str(obj, "ip") == NULL) {
            *error = mk_xstrdup("\"ip\" is not a string");
            return -1;
        }
        return 0;
    }
    if (strcmp(kind, "account") == 0)
        return 0;
    *error = mk_xstrdup("\"kind\" is not mailbox, mailbox-delete, login or account");
    return -1;
}

static const char *au_proto_json_problem(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_null_character:
        return "a NUL character";
    case json_error_duplicate_key:
        return "a key given twice";
    case json_error_premature_end_of_input:
        return "the object ends early";
    case json_error_end_of_input_expected:
        return "text after the object";
    case json_error_numeric_overflow:
        return "a number out of range";
    case json_error_stack_overflow:
        return "nesting too deep";
    case json_error_wrong_type:
        return "not an object";
    default:
        return "invalid JSON";
    }
}

static json_t *au_proto_load(const char *text, size_t len, char what, char **error)
{
    json_error_t e;
    json_t *obj;

    /* jansson checks UTF-8, refuses NUL in strings and, asked, duplicate keys */
    obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (obj == NULL) {
        *error = mk_xasprintf("%c: %s at column %d", what, au_proto_json_problem(&e),
                              e.column > 0 ? e.column + 2 : 0);
        return NULL;
    }
    if (!json_is_object(obj)) {
        *error = mk_xasprintf("%c: not a JSON object", what);
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/*
 * Whether the members of a valid JSON object text (its braces stripped)
 * are already what au_proto_members() would write: no white space
 * outside strings, no escape but the short ones jansson writes itself,
 * no -0 (reals are refused). Conservative: a "no" costs one json_dumps().
 */
static bool au_proto_compact(const unsigned char *p, size_t n)
{
    bool in_string = false;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];

        if (in_string) {
            if (c == '"')
                in_string = false;
            else if (c == '\\') {
                if (++i == n || strchr("\"\\bfnrt", p[i]) == NULL || p[i] == '\0')
                    return false;
            }
        } else if (c == '"')
            in_string = true;
        else if (c == ' ' || c == '\t' || c == '\r')
            return false;
        else if (c == '-' && i + 1 < n && p[i + 1] == '0')
            return false;               /* -0 is written 0 */
    }
    return !in_string;
}

int au_proto_parse(const char *line, size_t len, struct au_proto_line *out, char **error)
{
    char *why = NULL;

    *error = NULL;
    memset(out, 0, sizeof(*out));
    if (len >= AU_PROTO_MAX_LINE) {
        *error = mk_xasprintf("line longer than %d bytes", AU_PROTO_MAX_LINE);
        return -1;
    }
    if (len < 2 || line[1] != ' ' || (line[0] != 'A' && line[0] != 'U' && line[0] != 'S')) {
        *error = mk_xstrdup("a line starts with A, U or S and a space");
        return -1;
    }
    if (memchr(line, '\0', len) != NULL) {
        *error = mk_xstrdup("a NUL byte in the line");
        return -1;
    }
    if (memchr(line, '\n', len) != NULL) {
        *error = mk_xstrdup("a newline inside the line");
        return -1;
    }
    out->kind = (enum au_proto_kind) line[0];
    if (out->kind == AU_PROTO_SYNC) {
        if (!au_proto_token_valid(line + 2, len - 2)) {
            *error = mk_xasprintf("S: the token is not 1 to %d characters of A-Z, a-z, 0-9, _ "
                                  "and -", AU_PROTO_MAX_TOKEN);
            return -1;
        }
        memcpy(out->token, line + 2, len - 2);
        out->token[len - 2] = '\0';
        return 0;
    }
    if ((out->obj = au_proto_load(line + 2, len - 2, line[0], error)) == NULL)
        return -1;
    if ((out->kind == AU_PROTO_AUDIT ? au_proto_check_audit(out->obj, &why)
                                     : au_proto_check_usage(out->obj, &why)) < 0) {
        *error = mk_xasprintf("%c: %s", line[0], why);
        free(why);
        au_proto_line_free(out);
        return -1;
    }
    if (out->kind == AU_PROTO_AUDIT && len > 4 && line[2] == '{' && line[len - 1] == '}'
        && au_proto_compact((const unsigned char *) line + 3, len - 4)) {
        out->members = line + 3;
        out->members_len = len - 4;
    }
    return 0;
}

void au_proto_line_free(struct au_proto_line *l)
{
    json_decref(l->obj);
    l->obj = NULL;
}

char *au_proto_members(const json_t *obj, size_t *len)
{
    char *text = json_dumps(obj, JSON_COMPACT), *members;
    size_t n;

    if (text == NULL)
        return NULL;
    n = strlen(text);
    if (n < 2 || text[0] != '{' || text[n - 1] != '}') {
        free(text);
        return NULL;
    }
    members = mk_xstrndup(text + 1, n - 2);
    free(text);
    if (len)
        *len = n - 2;
    return members;
}
