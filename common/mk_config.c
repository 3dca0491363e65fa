/*
 * mk_config - mailkeep.conf reader and checker. See mk_config.h.
 *
 * libinih does the INI syntax. We feed it one line at a time through
 * ini_parse_stream(), so that we know the line number of every key
 * (libinih only reports the first syntax error), catch lines longer than
 * its fixed buffer (which it would silently cut), and can join
 * continuation lines ourselves.
 */
#include "config.h"

#include <ctype.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mk_addr.h"
#include "mk_config.h"
#include "mk_log.h"
#include "mk_util.h"

/* Debian builds libinih with a 200-byte line buffer. */
#define MK_CONFIG_MAX_LINE 199

struct mk_config_value {
    char *raw;                          /* NULL: not set, default applies */
    long long num;
    bool flag;
    int line;
};

/* One [family name] section, e.g. [detector employee_id]. */
struct mk_config_instance {
    char *section;                      /* "detector employee_id" */
    char *family;                       /* "detector" */
    char *name;                         /* "employee_id" */
    int line;
    struct mk_config_value *values;     /* parallel to mk_config_schema */
};

struct mk_config {
    atomic_int refs;
    char *path;
    struct mk_config_value *values;     /* parallel to mk_config_schema */
    struct mk_config_instance *instances;
    size_t ninstances;
};

struct mk_config_parse {
    struct mk_config *cfg;
    const char *text;                   /* the whole file */
    const char *pos;
    int line;                           /* line last handed to libinih */
    bool line_continues;                /* it began with white space */
    int last_key;                       /* schema index set by the previous line */
    char *errors;
    size_t nerrors;
    const char *last_bad_section;
};

#define MK_CONFIG_MAX_ERRORS 50

static void mk_config_error(struct mk_config_parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void mk_config_error(struct mk_config_parse *p, int line, const char *fmt, ...)
{
    va_list ap;
    char *msg, *joined;

    if (++p->nerrors > MK_CONFIG_MAX_ERRORS)
        return;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        mk_log_fatal("out of memory");
    va_end(ap);
    joined = mk_xasprintf("%s%s%s:%d: %s", p->errors ? p->errors : "",
                          p->errors ? "\n" : "", p->cfg->path, line, msg);
    free(msg);
    free(p->errors);
    p->errors = joined;
}

/*
 * A section is either fixed ("block") or one of a family ("detector
 * employee_id"), which the schema spells "detector *". Returns the
 * schema's spelling of the section's kind, or NULL.
 */
static bool mk_config_schema_section_is(const char *schema_section, const char *section)
{
    const char *space = strchr(section, ' ');
    size_t n;

    if (space == NULL)
        return strcasecmp(schema_section, section) == 0;
    n = (size_t) (space - section);
    return strncasecmp(schema_section, section, n) == 0 && strcmp(schema_section + n, " *") == 0;
}

static int mk_config_find(const char *section, const char *key)
{
    for (unsigned i = 0; i < mk_config_schema_size; i++)
        if (mk_config_schema_section_is(mk_config_schema[i].section, section)
            && strcasecmp(mk_config_schema[i].name, key) == 0)
            return (int) i;
    return -1;
}

static bool mk_config_section_known(const char *section)
{
    for (unsigned i = 0; i < mk_config_schema_size; i++)
        if (mk_config_schema_section_is(mk_config_schema[i].section, section))
            return true;
    return false;
}

static bool mk_config_instance_name_ok(const char *name)
{
    if (*name == '\0')
        return false;
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

static struct mk_config_instance *mk_config_instance_find(const struct mk_config *cfg,
                                                          const char *section)
{
    for (size_t i = 0; i < cfg->ninstances; i++)
        if (strcasecmp(cfg->instances[i].section, section) == 0)
            return &cfg->instances[i];
    return NULL;
}

static struct mk_config_instance *mk_config_instance_add(struct mk_config *cfg,
                                                         const char *section, int line)
{
    struct mk_config_instance *in;
    const char *space = strchr(section, ' ');

    cfg->instances = mk_xrealloc(cfg->instances, (cfg->ninstances + 1) * sizeof(*cfg->instances));
    in = &cfg->instances[cfg->ninstances++];
    in->section = mk_xstrdup(section);
    in->family = mk_xstrndup(section, (size_t) (space - section));
    in->name = mk_xstrdup(space + 1);
    in->line = line;
    in->values = mk_xcalloc(mk_config_schema_size, sizeof(*in->values));
    return in;
}

/* Where the value of (section, schema index) lives; NULL for an instance not in the file. */
static struct mk_config_value *mk_config_slot(const struct mk_config *cfg, const char *section,
                                              unsigned idx)
{
    struct mk_config_instance *in;

    if (strchr(section, ' ') == NULL)
        return &cfg->values[idx];
    in = mk_config_instance_find(cfg, section);
    return in ? &in->values[idx] : NULL;
}

static bool mk_config_enum_ok(const char *choices, const char *value)
{
    size_t len = strlen(value);

    for (const char *c = choices; *c;) {
        size_t n = strcspn(c, "|");

        if (n == len && strncasecmp(c, value, n) == 0)
            return true;
        c += n;
        if (*c == '|')
            c++;
    }
    return false;
}

/* Each item of a list of networks or of NAME:CHOICE pairs. */
static char *mk_config_check_list(const struct mk_config_key *k, const char *value)
{
    char **items = mk_str_split(value, " \t,", NULL);
    char *problem = NULL;

    for (size_t i = 0; items[i] != NULL && problem == NULL; i++) {
        if (k->type == MK_CFG_NETS) {
            struct mk_cidr net;
            const char *why;

            if (mk_cidr_parse(items[i], &net, &why) != 0)
                problem = mk_xasprintf("'%s' is not a network: %s", items[i], why);
        } else {
            char *colon = strrchr(items[i], ':');

            if (colon == NULL || colon == items[i])
                problem = mk_xasprintf("'%s' is not NAME:CHOICE (CHOICE one of %s)", items[i],
                                       k->choices);
            else if (!mk_config_enum_ok(k->choices, colon + 1))
                problem = mk_xasprintf("'%s': '%s' is not one of %s", items[i], colon + 1,
                                       k->choices);
        }
    }
    mk_str_array_free(items);
    return problem;
}

/*
 * Check one value against its schema entry and convert it. Returns NULL
 * when it is good, or a description of what is wrong.
 */
static char *mk_config_check(const struct mk_config_key *k, const char *value,
                             struct mk_config_value *out)
{
    long long n = 0;

    switch (k->type) {
    case MK_CFG_STRING:
    case MK_CFG_LIST:
    case MK_CFG_PHRASES:
        return NULL;
    case MK_CFG_PATH:
        if (*value != '\0' && *value != '/')
            return mk_xasprintf("'%s' is not an absolute path", value);
        return NULL;
    case MK_CFG_NETS:
    case MK_CFG_MAP:
        return mk_config_check_list(k, value);
    case MK_CFG_SOCKET:
        if (*value != '\0' && mk_socket_spec_check(value) < 0)
            return mk_xasprintf("'%s' is not a socket (unix:/path, inet:port@host or inet6:port@host)", value);
        return NULL;
    case MK_CFG_BOOL:
        if (mk_parse_bool(value, &out->flag) < 0)
            return mk_xasprintf("'%s' is not yes or no", value);
        return NULL;
    case MK_CFG_ENUM:
        if (!mk_config_enum_ok(k->choices, value))
            return mk_xasprintf("'%s' is not one of %s", value, k->choices);
        return NULL;
    case MK_CFG_INT:
        if (mk_parse_int(value, &n) < 0)
            return mk_xasprintf("'%s' is not a whole number", value);
        break;
    case MK_CFG_DURATION:
        if (mk_parse_duration(value, &n) < 0)
            return mk_xasprintf("'%s' is not a duration (a number with s, m, h, d or w)", value);
        break;
    case MK_CFG_SIZE:
        if (mk_parse_size(value, &n) < 0)
            return mk_xasprintf("'%s' is not a size (a number with k, M or G)", value);
        break;
    }
    if (n < k->min || (k->max != 0 && n > k->max))
        return k->max ? mk_xasprintf("'%s' is out of range (%lld to %lld)", value, k->min, k->max)
                      : mk_xasprintf("'%s' is out of range (at least %lld)", value, k->min);
    out->num = n;
    return NULL;
}

static int mk_config_handler(void *user, const char *section, const char *name,
                             const char *value)
{
    struct mk_config_parse *p = user;
    struct mk_config_value *v;
    char *problem, *joined;
    int idx;

    if (name == NULL)                   /* section header alone (INI_CALL_HANDLER_ON_NEW_SECTION) */
        return 1;
    if (*section == '\0') {
        mk_config_error(p, p->line, "'%s' is outside any section", name);
        return 1;
    }
    if (!mk_config_section_known(section)) {
        if (p->last_bad_section == NULL || strcmp(p->last_bad_section, section) != 0)
            mk_config_error(p, p->line, "unknown section [%s]", section);
        p->last_bad_section = section;
        return 1;
    }
    if (strchr(section, ' ') != NULL) {
        if (!mk_config_instance_name_ok(strchr(section, ' ') + 1)) {
            if (p->last_bad_section == NULL || strcmp(p->last_bad_section, section) != 0)
                mk_config_error(p, p->line, "[%s]: a name is letters, digits, '_', '-' and '.'",
                                section);
            p->last_bad_section = section;
            return 1;
        }
        if (mk_config_instance_find(p->cfg, section) == NULL)
            mk_config_instance_add(p->cfg, section, p->line);
    }
    idx = mk_config_find(section, name);
    if (idx < 0) {
        mk_config_error(p, p->line, "[%s] unknown key '%s'", section, name);
        return 1;
    }
    v = mk_config_slot(p->cfg, section, (unsigned) idx);
    if (p->line_continues && idx == p->last_key && v->raw != NULL) {
        joined = mk_xasprintf("%s %s", v->raw, value);
        free(v->raw);
        v->raw = joined;
    } else if (v->raw != NULL) {
        mk_config_error(p, p->line, "[%s] %s is set twice (first on line %d)",
                        section, name, v->line);
        return 1;
    } else {
        v->raw = mk_xstrdup(value);
        v->line = p->line;
    }
    p->last_key = idx;
    problem = mk_config_check(&mk_config_schema[idx], v->raw, v);
    if (problem) {
        mk_config_error(p, v->line, "[%s] %s: %s", section, name, problem);
        free(problem);
    }
    return 1;
}

/* ini_reader: hand libinih one line at a time, counting and checking. */
static char *mk_config_reader(char *buf, int size, void *stream)
{
    struct mk_config_parse *p = stream;
    size_t len;

    if (*p->pos == '\0')
        return NULL;
    len = strcspn(p->pos, "\n");
    p->line++;
    p->line_continues = (*p->pos == ' ' || *p->pos == '\t');
    if (len > MK_CONFIG_MAX_LINE || len + 2 > (size_t) size) {
        mk_config_error(p, p->line, "line is longer than %d characters; continue a long "
                        "value on lines that start with white space", MK_CONFIG_MAX_LINE);
        buf[0] = '\n';
        buf[1] = '\0';
    } else {
        memcpy(buf, p->pos, len);
        buf[len] = '\0';
        /* libinih strips " ; comment" from the first line of a value only. */
        if (p->line_continues)
            for (char *c = buf + 1; *c; c++)
                if (*c == ';' && (c[-1] == ' ' || c[-1] == '\t')) {
                    *c = '\0';
                    break;
                }
        strcat(buf, "\n");
    }
    p->pos += len;
    if (*p->pos == '\n')
        p->pos++;
    return buf;
}

static char *mk_config_read_file(const char *path, char **errors)
{
    size_t len;
    char *text = mk_file_read(path, &len, NULL, errors);

    if (text && strlen(text) != len) {
        *errors = mk_xasprintf("%s: contains a NUL byte", path);
        free(text);
        return NULL;
    }
    return text;
}

static void mk_config_default(struct mk_config_value *v, unsigned i)
{
    char *problem;

    if (mk_config_schema[i].def == NULL)        /* required: a parse error was reported */
        return;
    problem = mk_config_check(&mk_config_schema[i], mk_config_schema[i].def, v);

    if (problem)
        mk_log_fatal("schema default of [%s] %s: %s", mk_config_schema[i].section,
                     mk_config_schema[i].name, problem);
}

struct mk_config *mk_config_load(const char *path, char **errors)
{
    struct mk_config_parse p;
    struct mk_config *cfg;
    char *text;
    int rc;

    *errors = NULL;
    if ((text = mk_config_read_file(path, errors)) == NULL)
        return NULL;
    cfg = mk_xcalloc(1, sizeof(*cfg));
    atomic_init(&cfg->refs, 1);
    cfg->path = mk_xstrdup(path);
    cfg->values = mk_xcalloc(mk_config_schema_size, sizeof(*cfg->values));

    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.text = p.pos = text;
    p.last_key = -1;
    rc = ini_parse_stream(mk_config_reader, &p, mk_config_handler, &p);
    if (rc > 0)
        mk_config_error(&p, rc, "syntax error: expected [section], key = value, or a comment");
    else if (rc < 0)
        mk_config_error(&p, 0, "cannot parse");
    free(text);
    for (size_t n = 0; n < cfg->ninstances; n++)
        for (unsigned i = 0; i < mk_config_schema_size; i++)
            if (mk_config_schema[i].def == NULL && cfg->instances[n].values[i].raw == NULL
                && mk_config_schema_section_is(mk_config_schema[i].section,
                                               cfg->instances[n].section))
                mk_config_error(&p, cfg->instances[n].line, "[%s] %s is required",
                                cfg->instances[n].section, mk_config_schema[i].name);
    if (p.nerrors > MK_CONFIG_MAX_ERRORS) {
        char *more = mk_xasprintf("%s\n%s: %zu more errors not shown", p.errors, path,
                                  p.nerrors - MK_CONFIG_MAX_ERRORS);
        free(p.errors);
        p.errors = more;
    }
    if (p.errors) {
        *errors = p.errors;
        mk_config_unref(cfg);
        return NULL;
    }
    /* Fill in defaults, converted the same way as configured values. */
    for (unsigned i = 0; i < mk_config_schema_size; i++)
        if (strchr(mk_config_schema[i].section, ' ') == NULL && cfg->values[i].raw == NULL)
            mk_config_default(&cfg->values[i], i);
    for (size_t n = 0; n < cfg->ninstances; n++) {
        struct mk_config_instance *in = &cfg->instances[n];

        for (unsigned i = 0; i < mk_config_schema_size; i++)
            if (mk_config_schema_section_is(mk_config_schema[i].section, in->section)
                && in->values[i].raw == NULL)
                mk_config_default(&in->values[i], i);
    }
    return cfg;
}

struct mk_config *mk_config_ref(struct mk_config *cfg)
{
    atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void mk_config_unref(struct mk_config *cfg)
{
    if (cfg == NULL || atomic_fetch_sub(&cfg->refs, 1) != 1)
        return;
    for (unsigned i = 0; i < mk_config_schema_size; i++)
        free(cfg->values[i].raw);
    free(cfg->values);
    for (size_t n = 0; n < cfg->ninstances; n++) {
        for (unsigned i = 0; i < mk_config_schema_size; i++)
            free(cfg->instances[n].values[i].raw);
        free(cfg->instances[n].values);
        free(cfg->instances[n].section);
        free(cfg->instances[n].family);
        free(cfg->instances[n].name);
    }
    free(cfg->instances);
    free(cfg->path);
    free(cfg);
}

const char *mk_config_path(const struct mk_config *cfg)
{
    return cfg->path;
}

static unsigned mk_config_index(const char *section, const char *key)
{
    int idx = mk_config_find(section, key);

    if (idx < 0)
        mk_log_fatal("internal error: no configuration key [%s] %s", section, key);
    return (unsigned) idx;
}

const char *mk_config_str(const struct mk_config *cfg, const char *section, const char *key)
{
    unsigned i = mk_config_index(section, key);
    const struct mk_config_value *v = mk_config_slot(cfg, section, i);

    if (v && v->raw)
        return v->raw;
    return mk_config_schema[i].def ? mk_config_schema[i].def : "";
}

long long mk_config_num(const struct mk_config *cfg, const char *section, const char *key)
{
    const struct mk_config_value *v = mk_config_slot(cfg, section, mk_config_index(section, key));

    return v ? v->num : 0;
}

bool mk_config_bool(const struct mk_config *cfg, const char *section, const char *key)
{
    const struct mk_config_value *v = mk_config_slot(cfg, section, mk_config_index(section, key));

    return v ? v->flag : false;
}

char **mk_config_list(const struct mk_config *cfg, const char *section, const char *key)
{
    unsigned i = mk_config_index(section, key);

    /* Phrases ("card number") are separated by commas only. */
    return mk_str_split(mk_config_str(cfg, section, key),
                        mk_config_schema[i].type == MK_CFG_PHRASES ? "," : " \t,", NULL);
}

int mk_config_line(const struct mk_config *cfg, const char *section, const char *key)
{
    const struct mk_config_value *v = mk_config_slot(cfg, section, mk_config_index(section, key));

    return v ? v->line : 0;
}

char **mk_config_sections(const struct mk_config *cfg, const char *family)
{
    char **names = mk_xcalloc(cfg->ninstances + 1, sizeof(char *));
    size_t n = 0;

    for (size_t i = 0; i < cfg->ninstances; i++)
        if (strcasecmp(cfg->instances[i].family, family) == 0)
            names[n++] = mk_xstrdup(cfg->instances[i].section);
    return names;
}

void mk_config_print(const struct mk_config *cfg, FILE *fp, bool all)
{
    const char *section = "";

    for (unsigned i = 0; i < mk_config_schema_size; i++) {
        const struct mk_config_key *k = &mk_config_schema[i];
        const char *value = cfg->values[i].raw;

        if (strchr(k->section, ' ') != NULL || (value == NULL && !all))
            continue;
        if (strcmp(section, k->section) != 0) {
            fprintf(fp, "%s[%s]\n", *section ? "\n" : "", k->section);
            section = k->section;
        }
        /* Secrets are shown as set, never printed. */
        if (value && *value && strstr(k->name, "password") && strstr(k->name, "_file") == NULL)
            value = "(set)";
        fprintf(fp, "%s = %s\n", k->name, value ? value : k->def);
    }
    for (size_t n = 0; n < cfg->ninstances; n++) {
        const struct mk_config_instance *in = &cfg->instances[n];

        fprintf(fp, "\n[%s]\n", in->section);
        for (unsigned i = 0; i < mk_config_schema_size; i++)
            if (mk_config_schema_section_is(mk_config_schema[i].section, in->section)
                && (in->values[i].line || all))
                fprintf(fp, "%s = %s\n", mk_config_schema[i].name,
                        in->values[i].raw ? in->values[i].raw : mk_config_schema[i].def);
    }
}
