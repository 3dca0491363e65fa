/*
 * recall_policy - who owns a message, how long undo-send holds it. See
 * recall_policy.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mk_addr.h"
#include "mk_util.h"
#include "recall_policy.h"

void recall_policy_free(struct recall_policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->ngroups; i++)
        free(p->groups[i].group);
    free(p->groups);
    free(p->id_domain);
    free(p);
}

struct recall_policy *recall_policy_create(const struct mk_config *cfg, char **error)
{
    struct recall_policy *p = mk_xcalloc(1, sizeof(*p));
    char **groups = mk_config_list(cfg, "recall", "undo_send_groups");
    const char *domain = mk_config_str(cfg, "recall", "message_id_domain");

    *error = NULL;
    p->undo_default = mk_config_num(cfg, "recall", "undo_send");
    p->undo_max = mk_config_num(cfg, "recall", "undo_send_max");
    for (size_t i = 0; groups[i] != NULL; i++) {
        char *colon = strrchr(groups[i], ':');
        long long seconds;

        if (colon == NULL || colon == groups[i] || mk_parse_duration(colon + 1, &seconds) != 0
            || seconds < 0) {
            *error = mk_xasprintf("[recall] undo_send_groups: \"%s\" is not GROUP:DURATION "
                                  "(sales:60s)", groups[i]);
            mk_str_array_free(groups);
            recall_policy_free(p);
            return NULL;
        }
        p->groups = mk_xrealloc(p->groups, (p->ngroups + 1) * sizeof(*p->groups));
        p->groups[p->ngroups].group = mk_xstrndup(groups[i], (size_t) (colon - groups[i]));
        p->groups[p->ngroups++].seconds = seconds;
    }
    mk_str_array_free(groups);
    if (*domain == '\0') {
        char host[256];

        if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        p->id_domain = mk_xstrdup(host);
    } else {
        p->id_domain = mk_xstrdup(domain);
    }
    return p;
}

char *recall_owner(struct mk_directory *dir, const struct mk_origin *origin,
                   const char *sasl_login, const char *sender, enum mk_dir_status *status)
{
    const char *domain;
    char *owner;

    *status = MK_DIR_FOUND;
    if (sasl_login != NULL && *sasl_login != '\0') {
        owner = mk_xstrdup(sasl_login);
        mk_str_lower(owner);
        return owner;
    }
    if (!mk_origin_trusted(origin) || sender == NULL || *sender == '\0'
        || (domain = mk_addr_domain(sender)) == NULL)
        return NULL;
    *status = mk_directory_domain(dir, domain);
    if (*status != MK_DIR_FOUND)
        return NULL;
    owner = mk_xstrdup(sender);
    mk_str_lower(owner);
    return owner;
}

enum mk_dir_status recall_undo_delay(const struct recall_policy *p, struct mk_directory *dir,
                                     const char *owner, long long *seconds)
{
    struct mk_dir_user *user = NULL;
    enum mk_dir_status st;
    bool own = false;

    *seconds = p->undo_default;
    if (owner == NULL || strchr(owner, '@') == NULL)
        return MK_DIR_FOUND;
    st = mk_directory_user(dir, owner, &user);
    if (st == MK_DIR_TEMPFAIL)
        return st;
    if (st == MK_DIR_FOUND) {
        char *const *options = mk_dir_user_values(user, "option");
        long long best = -1;

        for (size_t i = 0; options[i] != NULL; i++) {
            long long v;

            if (strncmp(options[i], "undo_send=", 10) == 0
                && mk_parse_duration(options[i] + 10, &v) == 0 && v >= 0) {
                *seconds = v;
                own = true;
            }
        }
        for (size_t i = 0; i < p->ngroups && !own; i++)
            if (mk_dir_user_in_group(user, p->groups[i].group) && p->groups[i].seconds > best)
                best = p->groups[i].seconds;
        if (!own && best >= 0)
            *seconds = best;
        mk_dir_user_unref(user);
    }
    if (*seconds > p->undo_max)
        *seconds = p->undo_max;
    return MK_DIR_FOUND;
}
