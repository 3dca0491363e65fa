/*
 * mk_direction - message origin and direction. See mk_direction.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mk_direction.h"
#include "mk_list.h"
#include "mk_util.h"

struct mk_origin_policy {
    struct mk_list *trusted;
    char **daemons;
};

struct mk_origin_policy *mk_origin_policy_create(const struct mk_config *cfg, char **error)
{
    struct mk_origin_policy *policy;
    char **networks = mk_config_list(cfg, "global", "trusted_networks");
    struct mk_list *trusted;
    char *problems;

    *error = NULL;
    trusted = mk_list_from_values("[global] trusted_networks", networks, MK_LIST_CLIENTS, 0, &problems);
    mk_str_array_free(networks);
    if (trusted == NULL) {
        *error = mk_xasprintf("%s: %s", mk_config_path(cfg), problems);
        free(problems);
        return NULL;
    }
    policy = mk_xcalloc(1, sizeof(*policy));
    policy->trusted = trusted;
    policy->daemons = mk_config_list(cfg, "global", "originating_daemons");
    return policy;
}

void mk_origin_policy_free(struct mk_origin_policy *policy)
{
    if (policy == NULL)
        return;
    mk_list_free(policy->trusted);
    mk_str_array_free(policy->daemons);
    free(policy);
}

struct mk_origin mk_origin_classify(const struct mk_origin_policy *policy,
                                    const struct mk_ip *client, const char *sasl_login,
                                    const char *daemon_name)
{
    struct mk_origin origin = {false, false, false, false};

    origin.authenticated = sasl_login != NULL && *sasl_login != '\0';
    if (client == NULL || client->family == 0)
        origin.local_submission = true;
    else
        origin.trusted_network = mk_list_match_ip(policy->trusted, client) != NULL;
    if (daemon_name && *daemon_name)
        for (char **d = policy->daemons; *d; d++)
            if (strcasecmp(*d, daemon_name) == 0)
                origin.originating_daemon = true;
    return origin;
}

bool mk_origin_trusted(const struct mk_origin *origin)
{
    return origin->authenticated || origin->trusted_network || origin->originating_daemon
        || origin->local_submission;
}

const char *mk_origin_reason(const struct mk_origin *origin)
{
    if (origin->authenticated)
        return "sasl";
    if (origin->trusted_network)
        return "network";
    if (origin->originating_daemon)
        return "daemon";
    if (origin->local_submission)
        return "local";
    return "none";
}

enum mk_direction mk_direction_of(const struct mk_origin *origin, bool recipient_local)
{
    if (!mk_origin_trusted(origin))
        return MK_INBOUND;
    return recipient_local ? MK_INTERNAL : MK_OUTBOUND;
}

static const char *const mk_direction_names[] = {"inbound", "outbound", "internal"};

const char *mk_direction_name(enum mk_direction direction)
{
    return mk_direction_names[direction];
}

int mk_direction_parse(const char *name, enum mk_direction *direction)
{
    for (size_t i = 0; i < MK_ARRAY_LEN(mk_direction_names); i++)
        if (strcasecmp(name, mk_direction_names[i]) == 0) {
            *direction = (enum mk_direction) i;
            return 0;
        }
    return -1;
}
