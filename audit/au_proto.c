/*
 * au_proto - the audit socket's lines. See au_proto.h.
 */
#include "config.h"

#include <stdint.h>
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

/*
 * The fast path: a strict, allocation-free check of an A line that the
 * full path (jansson, then the record rules) would accept, and whose
 * object is already compact. It says yes only to what it fully
 * understands: no white space, no \u escape, no nested object, arrays
 * of scalars only, integers of at most 18 digits and not -0, at most
 * AU_FAST_KEYS keys, each unique. Anything else, valid or not, is left
 * to the full path, which also words the errors.
 */
#define AU_FAST_KEYS	64

struct au_fast {
    const unsigned char *p, *end;
};

/* One UTF-8 character as jansson accepts it: no overlong form, no
   surrogate, nothing above U+10FFFF. */
static bool au_fast_utf8(struct au_fast *f)
{
    const unsigned char *p = f->p;
    unsigned char c = *p;
    size_t n, i;
    uint32_t v;

    if (c >= 0xc2 && c <= 0xdf)
        n = 2, v = c & 0x1fu;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, v = c & 0x0fu;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, v = c & 0x07u;
    else
        return false;
    if ((size_t) (f->end - p) < n)
        return false;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return false;
        v = v << 6 | (p[i] & 0x3fu);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff
        || (v >= 0xd800 && v <= 0xdfff))
        return false;
    f->p += n;
    return true;
}

/* A string; *text and *len are its raw contents. */
static bool au_fast_string(struct au_fast *f, const char **text, size_t *len, bool *escaped)
{
    const unsigned char *start;

    if (f->p == f->end || *f->p != '"')
        return false;
    start = ++f->p;
    *escaped = false;
    while (f->p < f->end && *f->p != '"') {
        unsigned char c = *f->p;

        if (c == '\\') {
            if (f->end - f->p < 2 || strchr("\"\\bfnrt", f->p[1]) == NULL || f->p[1] == '\0')
                return false;           /* \u and \/ (written otherwise), or no escape */
            *escaped = true;
            f->p += 2;
        } else if (c < 0x20)
            return false;
        else if (c < 0x80)
            f->p++;
        else if (!au_fast_utf8(f))
            return false;
    }
    if (f->p == f->end)
        return false;
    *text = (const char *) start;
    *len = (size_t) (f->p - start);
    f->p++;
    return true;
}

static bool au_fast_lit(struct au_fast *f, const char *lit, size_t n)
{
    if ((size_t) (f->end - f->p) < n || memcmp(f->p, lit, n) != 0)
        return false;
    f->p += n;
    return true;
}

/* A value: a string, an integer, true, false, or (when arrays is set)
   an array of those. */
static bool au_fast_value(struct au_fast *f, bool arrays)
{
    const char *text;
    size_t len, digits = 0;
    bool escaped;

    if (f->p == f->end)
        return false;
    switch (*f->p) {
    case '"':
        return au_fast_string(f, &text, &len, &escaped);
    case 't':
        return au_fast_lit(f, "true", 4);
    case 'f':
        return au_fast_lit(f, "false", 5);
    case '[':
        if (!arrays)
            return false;
        f->p++;
        if (f->p < f->end && *f->p == ']') {
            f->p++;
            return true;
        }
        for (;;) {
            if (!au_fast_value(f, false) || f->p == f->end)
                return false;
            if (*f->p == ']') {
                f->p++;
                return true;
            }
            if (*f->p++ != ',')
                return false;
        }
    default:
        if (*f->p == '-')
            f->p++;
        if (f->p == f->end || *f->p < '0' || *f->p > '9')
            return false;
        if (*f->p == '0') {             /* 0 alone: not -0, no leading zero */
            if (f->p[-1] == '-' || (f->p + 1 < f->end && f->p[1] >= '0' && f->p[1] <= '9'))
                return false;
        }
        while (f->p < f->end && *f->p >= '0' && *f->p <= '9' && digits <= 18)
            f->p++, digits++;
        if (digits > 18)
            return false;               /* may not fit: the full path decides */
        return f->p == f->end || *f->p == ',' || *f->p == '}' || *f->p == ']';
    }
}

bool au_proto_audit_fast(const char *line, size_t len)
{
    struct au_fast f = {(const unsigned char *) line + 2, (const unsigned char *) line + len};
    struct {
        const char *text;
        size_t len;
    } keys[AU_FAST_KEYS];
    size_t nkeys = 0;
    const char *op = NULL;
    size_t op_len = 0;
    bool user = false;

    if (len < 4 || len >= AU_PROTO_MAX_LINE || line[0] != 'A' || line[1] != ' '
        || line[2] != '{' || line[len - 1] != '}')
        return false;
    f.p++;
    f.end--;
    if (f.p == f.end)
        return false;                   /* {}: no op */
    for (;;) {
        const char *key, *vtext;
        size_t klen, vlen;
        bool escaped, vescaped;
        const unsigned char *value;

        if (!au_fast_string(&f, &key, &klen, &escaped) || escaped || nkeys == AU_FAST_KEYS
            || f.p == f.end || *f.p++ != ':')
            return false;
        for (size_t i = 0; i < nkeys; i++)
            if (keys[i].len == klen && memcmp(keys[i].text, key, klen) == 0)
                return false;           /* a duplicate: the full path refuses it */
        keys[nkeys].text = key;
        keys[nkeys++].len = klen;
        for (size_t i = 0; i < MK_ARRAY_LEN(au_proto_reserved); i++)
            if (strlen(au_proto_reserved[i]) == klen
                && memcmp(au_proto_reserved[i], key, klen) == 0)
                return false;
        value = f.p;
        if (!au_fast_value(&f, true))
            return false;
        if (klen == 2 && memcmp(key, "op", 2) == 0) {
            f.p = value;
            if (!au_fast_string(&f, &vtext, &vlen, &vescaped) || vescaped)
                return false;
            op = vtext;
            op_len = vlen;
        } else if (klen == 4 && memcmp(key, "user", 4) == 0) {
            if (*value != '"')
                return false;
            user = true;
        }
        if (f.p == f.end)
            break;
        if (*f.p++ != ',')
            return false;
    }
    if (op == NULL || !user || op_len == 0 || op_len > AU_PROTO_MAX_OP)
        return false;
    for (size_t i = 0; i < op_len; i++)
        if (!((op[i] >= 'a' && op[i] <= 'z') || op[i] == '-'))
            return false;
    /* the operations the usage database takes, and the daemon's own */
#define AU_FAST_IS(s) (op_len == sizeof(s) - 1 && memcmp(op, s, op_len) == 0)
    return !(AU_FAST_IS("read") || AU_FAST_IS("copy") || AU_FAST_IS("move")
             || AU_FAST_IS("checkpoint"));
#undef AU_FAST_IS
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
